"""People's names as Slack shows them (`users.info`), for text that cannot carry a mention: a
Markdown file or canvas shows `<@U123>` as typed, so the postmortem names people instead.

One paced call per person (users.info is Tier 4, per workspace) through the outbox, and each
name kept for `NAMES_TTL` on the bot's clock, so a postmortem shared twice (the draft, then the
final one at the resolve) asks Slack once. A person Slack will not describe (`user_not_found`,
the token without users:read, no answer in time) is left out, so the text shows their ID;
that is logged, never raised: a name is a courtesy, the postmortem goes out either way."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.clients.slack import slack_error
from bot.slack.outbox import Outbox

log = logging.getLogger(__name__)

#: How long a name is trusted: someone renamed shows their new name so late at worst.
NAMES_TTL = timedelta(hours=1)
#: Names kept in memory: far more than the people of one incident.
MAX_NAMES = 5000


def display_name(user: dict) -> str | None:
    """The name Slack shows for a person: their display name, else their full name."""
    profile = user.get("profile") or {}
    for name in (profile.get("display_name"), profile.get("real_name"), user.get("real_name"), user.get("name")):
        if isinstance(name, str) and name.strip():
            return name.strip()
    return None


class Names:
    """Display names by user ID, fetched when missing or stale, shared by this process."""

    def __init__(self, sender: Callable[[], AsyncWebClient], outbox: Callable[[], Outbox], clock: Callable[[], datetime]):
        # Getters, not the objects: the context's sender and outbox are made late (as `Memberships`).
        self._sender, self._outbox, self._clock = sender, outbox, clock
        self._known: dict[str, tuple[datetime, str]] = {}

    async def of(self, user_ids: Iterable[str | None]) -> dict[str, str]:
        """The names Slack gave for `user_ids` (those it would not are left out)."""
        wanted = sorted({u for u in user_ids if u})
        found = await asyncio.gather(*(self._name(u) for u in wanted))
        return {user: name for user, name in zip(wanted, found, strict=True) if name}

    async def _name(self, user_id: str) -> str | None:
        known = self._known.get(user_id)
        if known is not None and self._clock() - known[0] < NAMES_TTL:
            return known[1]
        try:
            answer = await self._outbox().call("users.info", lambda: self._sender().users_info(user=user_id))
        except SlackApiError as exc:
            log.warning("users.info refused %s (%s): shown by ID", user_id, slack_error(exc))
            return None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log.warning("users.info for %s did not answer (%s): shown by ID", user_id, type(exc).__name__)
            return None
        name = display_name(answer.get("user") or {})
        if name is not None:
            self._known[user_id] = (self._clock(), name)
            while len(self._known) > MAX_NAMES:
                del self._known[next(iter(self._known))]  # the oldest first
        return name
