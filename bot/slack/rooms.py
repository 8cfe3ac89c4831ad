"""An incident's own channel ("room") on Slack's side: its name, and the three calls that
open, join and close it (conversations.create, conversations.invite, conversations.archive).

Only this module calls those methods, so the scopes they need (`channels:manage` for a
public room, `groups:write` for a private one) are asked for only by `manifest.channels.yml`
(tests/test_manifest.py holds the two manifests to that). Slack refusing is never raised:
each call answers with Slack's error code for the service to turn into a warning.
Posting in the room goes through `bot.slack.channel.Channel`, as everywhere else."""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.clients.slack import slack_error

log = logging.getLogger(__name__)

#: Slack's rules for a channel name: lowercase letters, digits, `-` and `_`, at most 80.
NAME_MAX = 80
_NOT_ALLOWED = re.compile(r"[^a-z0-9_-]+")
#: `#inc-12-db-down`, then `-2`, `-3` when a name is taken; then the declarer is told.
EXTRA_NAMES = 2

#: Errors that mean the app may not do this at all, whatever the name (the scope, a workspace
#: setting): trying another name would only be refused again.
NOT_ALLOWED = frozenset({"missing_scope", "restricted_action", "no_permission", "cannot_create_channel"})

#: Errors that say Slack could not do it just now: worth asking again later.
TRANSIENT = frozenset({"internal_error", "fatal_error", "ratelimited", "service_unavailable", "request_timeout"})

#: Scope each kind of room needs for all three calls (each is among the bot scopes Slack's
#: documents list for conversations.create, .invite and .archive).
SCOPE_PUBLIC = "channels:manage"
SCOPE_PRIVATE = "groups:write"


def scope_for(private: bool) -> str:
    return SCOPE_PRIVATE if private else SCOPE_PUBLIC


def slug(title: str) -> str:
    """The title as channel-name characters: accents dropped, lowercase, every run of
    anything else one hyphen (`Checkout: 5xx in EU!` → `checkout-5xx-in-eu`)."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii")
    return _NOT_ALLOWED.sub("-", ascii_title.lower()).strip("-_")


def room_name(number: int, title: str, attempt: int = 1) -> str:
    """`inc-<number>-<slug>`, cut to Slack's 80 characters on a word boundary where it can
    be, with `-<attempt>` after the first try. A title with no usable letters: `inc-<number>`."""
    head = f"inc-{number}"
    tail = f"-{attempt}" if attempt > 1 else ""
    room = slug(title)
    room_max = NAME_MAX - len(head) - len(tail) - 1
    if len(room) > room_max:
        cut = room[:room_max]
        room = (cut.rsplit("-", 1)[0] if "-" in cut[room_max // 2 :] else cut).strip("-_")
    return f"{head}-{room}{tail}" if room else f"{head}{tail}"


@dataclass(frozen=True)
class Opened:
    """What opening a room gave: its ID and name, or Slack's error (and the names tried)."""

    channel_id: str | None = None
    name: str | None = None
    error: str | None = None
    tried: tuple[str, ...] = ()


class Rooms:
    def __init__(self, slack: AsyncWebClient):
        self.slack = slack

    async def open(self, number: int, title: str, *, private: bool) -> Opened:
        """Create the room, trying `EXTRA_NAMES` suffixed names after a `name_taken`."""
        tried: list[str] = []
        error = None
        for attempt in range(1, EXTRA_NAMES + 2):
            name = room_name(number, title, attempt)
            tried.append(name)
            try:
                answer = await self.slack.conversations_create(name=name, is_private=private)
            except SlackApiError as exc:
                error = slack_error(exc)
                log.warning("incident #%s: Slack refused to create #%s (%s)", number, name, error)
                if error == "name_taken":
                    continue
                break
            channel = answer.get("channel") or {}
            return Opened(channel_id=channel.get("id"), name=channel.get("name", name), tried=tuple(tried))
        return Opened(error=error, tried=tuple(tried))

    async def invite(self, channel_id: str, user_id: str) -> str | None:
        """Add the person; None when they are in (`already_in_channel` included), else Slack's error."""
        try:
            await self.slack.conversations_invite(channel=channel_id, users=user_id)
        except SlackApiError as exc:
            error = slack_error(exc)
            if error == "already_in_channel":
                return None
            log.warning("could not invite %s to %s (%s)", user_id, channel_id, error)
            return error
        return None

    async def archive(self, channel_id: str) -> str | None:
        """Archive the room; None when it is archived (`already_archived` included), else Slack's error."""
        try:
            await self.slack.conversations_archive(channel=channel_id)
        except SlackApiError as exc:
            error = slack_error(exc)
            if error == "already_archived":
                return None
            log.warning("could not archive %s (%s)", channel_id, error)
            return error
        return None
