"""Who can read a channel, as Slack says (`conversations.members`), for the home tab: it shows a
person only the incidents announced where they can read them.

Membership, not visibility: a person sees a channel's incidents when they are in it. A public
channel can be read by anyone in the workspace but a guest, and telling guests apart would take
another scope and another call per person; so sitrep does not guess, and joining the channel is
what shows its incidents. A channel Slack will not list (a private one the bot is not in, a
scope missing) counts as read by nobody: the home tab fails closed.

Members are kept per channel for `MEMBERS_TTL` (on the bot's clock), so opening the home tab
costs no call while they are fresh; each page is one paced call (`conversations.members` is
Tier 4, per workspace) through the outbox."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.clients.slack import slack_error
from bot.slack.outbox import Outbox

log = logging.getLogger(__name__)

#: How long a channel's member list is trusted: someone who just joined or left is seen so late
#: at worst, and a person opening the tab again and again costs Slack nothing meanwhile.
MEMBERS_TTL = timedelta(minutes=2)
#: A page of conversations.members: the most Slack's pagination page recommends asking at once.
PAGE_SIZE = 200
#: Errors that mean the bot may not list this channel's members (not a passing fault): logged
#: with what to do, once per fetch.
HINTS = {
    "missing_scope": "add the channels:read and groups:read bot scopes (manifest.yml) and reinstall",
    "channel_not_found": "invite sitrep to the channel (/invite @sitrep)",
}


class Memberships:
    """Member sets of channels, fetched from Slack when missing or stale, shared by every
    request of this process (one fetch at a time per channel)."""

    def __init__(self, sender: Callable[[], AsyncWebClient], outbox: Callable[[], Outbox], clock: Callable[[], datetime]):
        # Getters, not the objects: the context's sender and outbox are made late (and tests
        # swap the outbox).
        self._sender = sender
        self._outbox = outbox
        self._clock = clock
        self._known: dict[str, tuple[datetime, frozenset[str]]] = {}
        self._fetching: dict[str, asyncio.Future] = {}

    async def readable(self, user_id: str, channels: Iterable[str]) -> set[str]:
        """Those of `channels` that `user_id` is a member of."""
        wanted = sorted(set(channels))
        members = await asyncio.gather(*(self.members(channel) for channel in wanted))
        return {channel for channel, found in zip(wanted, members, strict=True) if user_id in found}

    async def members(self, channel: str) -> frozenset[str]:
        """The channel's members (empty when Slack will not say)."""
        known = self._known.get(channel)
        if known is not None and self._clock() - known[0] < MEMBERS_TTL:
            return known[1]
        running = self._fetching.get(channel)
        if running is None:
            running = self._fetching[channel] = asyncio.ensure_future(self._fetch(channel))
            running.add_done_callback(lambda _f: self._fetching.pop(channel, None))
        return await asyncio.shield(running)

    async def _fetch(self, channel: str) -> frozenset[str]:
        found: set[str] = set()
        cursor: str | None = None
        try:
            while True:
                page = await self._outbox().call(
                    "conversations.members",
                    lambda cursor=cursor: self._sender().conversations_members(channel=channel, limit=PAGE_SIZE, cursor=cursor),
                    channel=channel,
                )
                found.update(page.get("members") or [])
                cursor = (page.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    break
        except SlackApiError as exc:
            error = str(slack_error(exc))
            hint = HINTS.get(error)
            log.warning("could not list the members of %s (%s)%s", channel, error, f": {hint}" if hint else "")
            return frozenset()  # not kept: asked again at the next open
        members = frozenset(found)
        self._known[channel] = (self._clock(), members)
        return members
