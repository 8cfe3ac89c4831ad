"""The one place that writes to SITREP_CHANNEL: announce, refresh an announcement, reply in
its thread, fetch a permalink, read a thread for a tagged reply. Services and the scheduler
call it; only it handles `SlackApiError` for channel posts.

It also holds the rule for a change the upstream already took: Slack trouble afterwards is a
warning for the person, never a failed submission they would send a second time.

Posts, edits, permalinks and reads go through `bot.slack.outbox.Outbox` (one paced queue per
channel, each method metered in the scope Slack limits it over, edits of one parent coalesced),
with a client of their own that does not sleep through a 429: the outbox pauses only that
method's bucket and retries, so one 429 never holds other work."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.clients.http import tls_context
from bot.clients.slack import slack_error
from bot.errors import AnnouncementBusy, ClaimLost
from bot.messages.sandbox import SANDBOX_PREFIX, in_sandbox
from bot.slack.outbox import Outbox, Priority

log = logging.getLogger(__name__)

#: (fallback text, blocks), as every builder in `bot.messages` returns it.
Message = tuple[str, list[dict]]
#: Asked just before a claimed post goes out: is the claim still ours (and renewed)?
Guard = Callable[[], Awaitable[bool]]
#: How far back `find_message` reads the channel for a tagged post (newest first).
HISTORY_SEARCH_LIMIT = 1000


class UploadFailed(Exception):
    """The file's bytes did not reach Slack: nothing was shared."""


@dataclass(frozen=True)
class Posted:
    """Where a parent message is: its channel and ts (the thread's key)."""

    channel: str
    ts: str


def unpaced_client(slack: AsyncWebClient) -> AsyncWebClient:
    """The same client without slack_sdk's 429 handler, which sleeps through Retry-After
    while everything queued behind waits; the outbox handles 429s instead."""
    return AsyncWebClient(token=slack.token, base_url=slack.base_url, timeout=slack.timeout, session=slack.session)


class Channel:
    def __init__(
        self,
        slack: AsyncWebClient,
        channel_id: str,
        outbox: Outbox | None = None,
        sender: AsyncWebClient | None = None,
        *,
        sandbox: bool = False,
    ):
        self.slack = slack
        # In the sandbox every announcement, as posted and as edited, and every reply in its
        # thread (updates, reminders, nudges) says so.
        self._mark = in_sandbox if sandbox else (lambda message: message)
        # A file shared there (the postmortem draft) is titled so.
        self._title_prefix = SANDBOX_PREFIX if sandbox else ""
        self.channel_id = channel_id
        self.outbox = outbox if outbox is not None else Outbox()
        self.sender = sender if sender is not None else unpaced_client(slack)

    async def announce(
        self,
        message: Message | Callable[[], Awaitable[Message]],
        *,
        metadata: dict | None = None,
        guard: Guard | None = None,
        priority: int = Priority.REPLY,
        hand_back: bool = False,
    ) -> Posted:
        """Post a parent message (tagged with `metadata`, so a replica taking over a stale
        claim can find it; sent only while `guard` says the claim is still ours). A callable
        `message` is built when the post's turn comes, and `hand_back` is kept, as in `reply`."""
        kwargs: dict[str, Any] = {} if metadata is None else {"metadata": metadata}

        async def post() -> Any:
            text, blocks = self._mark(await message() if callable(message) else message)
            await fence(guard)
            return await self.sender.chat_postMessage(
                channel=self.channel_id, text=text, blocks=blocks, unfurl_links=False, **kwargs
            )

        posted = await self.outbox.send(self.channel_id, "chat.postMessage", post, priority=priority, hand_back=hand_back)
        return Posted(posted.get("channel", self.channel_id), posted["ts"])

    async def announced(
        self,
        at: Posted | None,
        message: Callable[[], Message],
        remember: Callable[[Posted], Awaitable[Any]],
    ) -> Posted:
        """Where the announcement is: `at`, or, when it never was posted (Slack refused it
        then), posted now and handed to `remember` to be stored, so a thread always has a parent."""
        if at is not None:
            return at
        posted = await self.announce(message())
        await remember(posted)
        return posted

    async def refresh(self, at: Posted, message: Message) -> None:
        """Make an announcement show the stored state (waits until Slack has it)."""
        await self._edit(at, message)

    def refresh_later(self, at: Posted, build: Callable[[], Awaitable[Message | None]], *, what: str) -> None:
        """Queue the edit and return: it goes after the replies, merged with any other edit
        of this parent still queued, and `build` makes the message when it goes out (so it
        shows the state of that moment; None: nothing to show). Slack refusing it is only
        logged. `settle` waits for it."""
        future = self._edit(at, build)

        def done(f) -> None:
            if not f.cancelled() and isinstance(f.exception(), SlackApiError):
                log.warning("%s: %s", what, slack_error(f.exception()))
            elif not f.cancelled() and f.exception() is not None:
                log.warning("%s: %s", what, type(f.exception()).__name__)

        future.add_done_callback(done)

    def _edit(self, at: Posted, message: Message | Callable[[], Awaitable[Message | None]]):
        async def send() -> Any:
            built = await message() if callable(message) else message
            if built is None:
                return None
            text, blocks = self._mark(built)
            return await self.sender.chat_update(channel=at.channel, ts=at.ts, text=text, blocks=blocks)

        return self.outbox.send(
            at.channel,
            "chat.update",
            send,
            priority=Priority.EDIT,
            key=("edit", at.channel, at.ts),
        )

    async def settle(self) -> None:
        """Wait until every queued post and edit in the channel has gone out."""
        await self.outbox.drain(self.channel_id)

    async def reply(
        self,
        at: Posted,
        message: Message | Callable[[], Awaitable[Message]],
        *,
        broadcast: bool = False,
        metadata: dict | None = None,
        priority: int = Priority.REPLY,
        guard: Guard | None = None,
        hand_back: bool = False,
    ) -> str:
        """Reply in the announcement's thread; returns the reply's ts. With `guard`, sent
        only if it still says yes just before the request (else `ClaimLost`); with
        `hand_back`, a 429 raises `bot.errors.RateLimited` at once instead of waiting.
        A callable `message` is built when the reply's turn comes (what it raises is raised
        here, and nothing is sent), before the guard: its build may wait on the database, and
        a claim taken over meanwhile must still stop the post."""
        kwargs: dict[str, Any] = {}
        if metadata is not None:
            kwargs["metadata"] = metadata

        async def post() -> Any:
            text, blocks = self._mark(await message() if callable(message) else message)
            await fence(guard)
            return await self.sender.chat_postMessage(
                channel=at.channel,
                thread_ts=at.ts,
                reply_broadcast=broadcast,
                text=text,
                blocks=blocks,
                unfurl_links=False,
                **kwargs,
            )

        reply = await self.outbox.send(at.channel, "chat.postMessage", post, priority=priority, hand_back=hand_back)
        return reply["ts"]

    async def permalink(self, at: Posted | None) -> str | None:
        """A link to the message, or None when there is none or Slack will not say."""
        if at is None:
            return None
        try:
            answer = await self.outbox.call(
                "chat.getPermalink",
                lambda: self.sender.chat_getPermalink(channel=at.channel, message_ts=at.ts),
                channel=at.channel,
            )
            return answer.get("permalink")
        except SlackApiError:
            return None

    async def read_message(self, at: Posted) -> dict | None:
        """The message at `at` as Slack has it now (a thread reply or a top-level message:
        conversations.replies with its ts answers it first), or None when Slack will not say."""
        try:
            page = await self.outbox.call(
                "conversations.replies",
                lambda: self.sender.conversations_replies(channel=at.channel, ts=at.ts, limit=1),
                channel=at.channel,
            )
        except SlackApiError as exc:
            log.warning("could not read the message %s: %s", at.ts, slack_error(exc))
            return None
        messages = [m for m in page.get("messages", []) if m.get("ts") == at.ts]
        return messages[0] if messages else None

    async def find_reply(self, at: Posted, event_type: str, payload: dict) -> str | None:
        """The ts of a reply in the thread tagged with this metadata, or None. Unreadable
        thread: None too, as posting twice is better than never."""
        return await self._find_in_thread(at, lambda m: _carries(m, event_type, payload), metadata=True)

    async def _find_in_thread(self, at: Posted, match: Callable[[dict], bool], *, metadata: bool = False) -> str | None:
        """The ts of the first message in the thread at `at` that `match`es, page by page;
        None when none does or the thread cannot be read (the callers post rather than skip)."""
        cursor = None
        try:
            while True:
                page = await self.outbox.call(
                    "conversations.replies",
                    lambda cursor=cursor: self.sender.conversations_replies(
                        channel=at.channel,
                        ts=at.ts,
                        limit=200,
                        cursor=cursor,
                        **({"include_all_metadata": True} if metadata else {}),
                    ),
                    channel=at.channel,
                )
                for message in page.get("messages", []):
                    if match(message):
                        return message.get("ts")
                cursor = (page.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    return None
        except SlackApiError as exc:
            log.warning("could not read the thread %s: %s", at.ts, slack_error(exc))
            return None

    async def find_message(self, event_type: str, payload: dict) -> str | None:
        """The ts of a top-level message in the channel tagged with this metadata, among
        the newest `HISTORY_SEARCH_LIMIT`; None when absent or unreadable (posting twice is
        better than never)."""
        cursor, read = None, 0
        try:
            while read < HISTORY_SEARCH_LIMIT:
                page = await self.outbox.call(
                    "conversations.history",
                    lambda cursor=cursor: self.sender.conversations_history(
                        channel=self.channel_id, include_all_metadata=True, limit=200, cursor=cursor
                    ),
                    channel=self.channel_id,
                )
                for message in page.get("messages", []):
                    if _carries(message, event_type, payload):
                        return message.get("ts")
                read += len(page.get("messages", []))
                cursor = (page.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    return None
        except SlackApiError as exc:
            log.warning("could not read the channel's history: %s", slack_error(exc))
        return None

    # --- files: the external upload (files.getUploadURLExternal, the upload, completeUploadExternal)
    async def upload_file(self, filename: str, content: bytes) -> str:
        """Upload `content` as a file nobody can see yet (not shared anywhere): its file ID.
        Repeating it after a failure leaves at most an unshared file behind, never a second
        share. `UploadFailed` when the upload URL refuses the bytes or does not answer in time."""
        answer = await self.outbox.call(
            "files.getUploadURLExternal",
            lambda: self.sender.files_getUploadURLExternal(filename=filename, length=len(content)),
        )
        try:
            # The upload URL is signed for this one file: no token goes with the bytes.
            async with httpx.AsyncClient(timeout=self.sender.timeout, verify=tls_context()) as http:
                sent = await http.post(answer["upload_url"], content=content)
        except httpx.HTTPError as exc:
            raise UploadFailed(f"the upload did not go through ({type(exc).__name__})") from exc
        if sent.status_code != 200:
            raise UploadFailed(f"Slack's file upload answered HTTP {sent.status_code}")
        return answer["file_id"]

    async def share_file(self, at: Posted, file_id: str, title: str, *, guard: Guard | None = None) -> None:
        """Share an uploaded file in the thread at `at` (files.completeUploadExternal), only
        while `guard` says the claim is still ours (checked just before the request leaves)."""

        async def complete() -> Any:
            await fence(guard)
            return await self.sender.files_completeUploadExternal(
                files=[{"id": file_id, "title": self._title_prefix + title}], channel_id=at.channel, thread_ts=at.ts
            )

        await self.outbox.call("files.completeUploadExternal", complete, channel=at.channel)

    async def find_file(self, at: Posted, filename: str) -> str | None:
        """The ts of a message of the bot's in the thread sharing a file named `filename`, or
        None (also when the thread is unreadable: sharing twice is better than never)."""
        return await self._find_in_thread(at, lambda m: any(f.get("name") == filename for f in m.get("files") or []))

    async def after_upstream(self, step: Callable[[], Awaitable[Any]], *, what: str, upstream: str, then: str) -> str | None:
        """Run the Slack side of a change `upstream` already took. Slack refusing it is
        logged and returned as a warning for the person (`then`: what happens next), never
        raised, so nobody submits the change a second time."""
        try:
            await step()
        except AnnouncementBusy:
            log.info("%s: another replica is announcing it; it posts the rest", what)
            return (
                f"{upstream[:1].upper()}{upstream[1:]} has it; another sitrep replica is posting its "
                f"announcement in <#{self.channel_id}> right now. {then}"
            )
        except SlackApiError as exc:
            error = slack_error(exc)
            log.warning("%s: Slack refused a post (%s)", what, error)
            return (
                f"{upstream[:1].upper()}{upstream[1:]} has it, but Slack refused the post in "
                f"<#{self.channel_id}> (`{error}`). {then}"
            )
        return None

    async def quietly(self, step: Callable[[], Awaitable[Any]], *, what: str) -> None:
        """Run a Slack step whose failure only matters to the log (a refresh the next change
        repeats)."""
        try:
            await step()
        except SlackApiError as exc:
            log.warning("%s: %s", what, slack_error(exc))


async def fence(guard: Guard | None) -> None:
    """Run just before the request leaves: a claim taken over meanwhile sends nothing."""
    if guard is not None and not await guard():
        raise ClaimLost("the claim was taken over before the post")


def _carries(message: dict, event_type: str, payload: dict) -> bool:
    """The message's metadata is this tag, with every key of `payload` as given."""
    meta = message.get("metadata") or {}
    found = meta.get("event_payload") or {}
    return meta.get("event_type") == event_type and all(found.get(k) == v for k, v in payload.items())
