"""A maintenance window's life after it is recorded, shared by the person-facing service,
the reminders and the sync: adopting one made outside Slack, announcing it, replying in its
thread, refreshing its announcement, and when the API last answered a list."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from slack_sdk.errors import SlackApiError
from sqlalchemy.exc import IntegrityError

from bot.backends import backend_named
from bot.backends.base import BackendWindow
from bot.clients.slack import slack_error
from bot.context import AppContext
from bot.errors import AnnouncementBusy, NotFound
from bot.messages import maintenance as messages
from bot.services import notices, reminders
from bot.slack import posts
from bot.slack.channel import Message, Posted
from bot.slack.posts import PostTag, RowClaim, Subject
from store import facts
from store import maintenance as window_store
from store.db import STORE_FAILURES, bounded
from store.models import MaintenanceWindow
from store.states import ReminderKind, WindowState

log = logging.getLogger(__name__)

ANNOUNCE_WAIT = 5.0
"""Seconds to wait for another replica's announcement of the same window before giving up."""

NOTE_BOUND_SECONDS = 1.0  # a person is waiting for the list this note rides along with


def posted_at(window: MaintenanceWindow) -> Posted | None:
    """Where the window's announcement is; None when it was never posted."""
    return Posted(window.channel_id, window.message_ts) if window.message_ts else None


def announcement(window: MaintenanceWindow) -> Message:
    return messages.announcement(window, backend_named(window.backend))


class Windows:
    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    async def get(self, window_id: int) -> MaintenanceWindow | None:
        async with self.ctx.db.session() as session:
            return await window_store.get_window(session, window_id)

    # --- when the API last answered a list --------------------------------------------
    def _listed_key(self) -> str:
        return f"{self.ctx.maintenance.name}.listed"

    async def note_listed(self) -> None:
        """Remember that the API just answered a list (shown when it later does not).
        Bookkeeping: a busy or read-only database skips it rather than hold up the answer."""

        async def note() -> None:
            async with self.ctx.db.session() as session, session.begin():
                await facts.put_fact(session, self._listed_key(), {}, now=self.ctx.clock())

        try:
            await bounded(note(), NOTE_BOUND_SECONDS)
        except STORE_FAILURES as exc:
            log.warning("could not note that the maintenance API answered a list (%s)", type(exc).__name__)

    async def last_listed(self) -> datetime | None:
        """When the API last answered a list (the sync's or a person's); None: never."""
        async with self.ctx.db.session() as session:
            fact = await facts.get_fact(session, self._listed_key())
        return fact.updated_at if fact is not None else None

    # --- windows made outside Slack ----------------------------------------------------
    def horizon_end(self) -> datetime:
        """Windows made elsewhere that start after this wait, stored, to be announced later:
        a first sync over a year of planned windows must not flood the channel."""
        return self.ctx.clock() + timedelta(days=self.ctx.settings.sitrep_announce_horizon)

    async def adopt_external(self, bw: BackendWindow, *, within_horizon: bool = False) -> MaintenanceWindow:
        """Record a window made outside Slack, announce it and schedule its reminders.

        Idempotent on (backend, upstream_id): a window already known is returned as is.
        A window that has already ended is recorded as `completed`, without announcement
        or reminders, so a first sync over years of history posts nothing. With
        `within_horizon` (the sync), one starting beyond `horizon_end` is stored and its
        reminders planned, but its announcement waits for `announce_entered_horizon`.
        """
        backend = self.ctx.maintenance
        async with self.ctx.db.session() as session:
            known = await window_store.by_upstream(session, backend.name, bw.upstream_id)
        if known is not None:
            return known
        now = self.ctx.clock()
        start = bw.start or now
        state = WindowState.at(start, bw.end, now, bw.in_progress)
        try:
            async with self.ctx.db.session() as session, session.begin():
                window = await window_store.add_window(
                    session,
                    MaintenanceWindow(
                        backend=backend.name,
                        upstream_id=bw.upstream_id,
                        title=bw.title,
                        start=start,
                        end=bw.end,
                        components=list(bw.components),
                        servers=list(bw.servers),
                        state=state,
                        channel_id=self.ctx.settings.sitrep_channel,
                        created_by=None,
                        created_at=now,
                        updated_at=now,
                    ),
                )
        except IntegrityError:
            # Another instance adopted it first.
            async with self.ctx.db.session() as session:
                return await window_store.by_upstream(session, backend.name, bw.upstream_id)
        if state == WindowState.COMPLETED:
            return window
        if not within_horizon or start <= self.horizon_end():
            window = await self.announce(window.id)
        await reminders.schedule_window_reminders(self.ctx, window.id)
        return window

    async def announce_entered_horizon(self) -> int:
        """Announce the stored windows made elsewhere that have come within the horizon and
        were never announced; returns how many. Reminders announce one first anyway."""
        backend = self.ctx.maintenance
        async with self.ctx.db.session() as session:
            due = await window_store.unannounced_external(session, backend.name, self.horizon_end())
        announced = 0
        for window in due:
            current = await self.get(window.id)
            if current is None or current.message_ts:
                continue  # a reminder announced it meanwhile
            posted: list[bool] = []

            async def step(window_id: int = window.id, posted: list[bool] = posted) -> None:
                posted.append((await self._announce(window_id))[1])

            await self.ctx.channel.after_upstream(
                step, what=f"announcing maintenance #{window.id}", upstream=backend.service, then="The next sync tries again."
            )
            announced += posted == [True]  # not: Slack refused it, or another replica did it
        return announced

    # --- the channel ------------------------------------------------------------------
    async def announce(self, window_id: int) -> MaintenanceWindow:
        """Post the window's one parent message and store where it is, exactly once whoever
        gets here (a person, the sync, a reminder, on any replica): the post is claimed like
        a reminder, tagged so a replica taking over a stale claim finds a post that did
        reach Slack, and sent only while the claim is still ours (fencing)."""
        return (await self._announce(window_id))[0]

    async def _announce(self, window_id: int, *, live_since: datetime | None = None) -> tuple[MaintenanceWindow, bool]:
        """The window announced, and whether this call posted (or adopted) its announcement.
        With `live_since` (the crash recovery), a claim held by an instance with no heartbeat
        since then is taken over at once."""
        window = await posts.announce(self.ctx, self._subject(window_id), live_since=live_since)
        if window is None:
            return await self._announced_elsewhere(window_id), False
        return window, True

    def _subject(self, window_id: int) -> Subject[MaintenanceWindow]:
        return Subject(
            MaintenanceWindow, window_id, PostTag.WINDOW_ANNOUNCEMENT, build=announcement, reload=lambda: self.get(window_id)
        )

    async def recover_announcement(self, window_id: int, *, live_since: datetime) -> MaintenanceWindow | None:
        """Announce a window whose process died before its announcement was posted; None
        when another instance has it or Slack refused (the next pass tries again)."""
        window = await self.get(window_id)
        if window is None or window.message_ts or window.state in (WindowState.CANCELLED, WindowState.COMPLETED):
            return window
        try:
            return (await self._announce(window_id, live_since=live_since))[0]
        except AnnouncementBusy:
            return None
        except SlackApiError as exc:
            log.warning("could not announce window %s after a crash: %s", window_id, slack_error(exc))
            return None

    async def post_notice(self, window_id: int, row_id: int, message: Message) -> str | None:
        """The cancel notice, under the claim its row was written with."""
        window = await self.announced(window_id)
        tag = notices.notice_tag(kind=ReminderKind.CANCELLED, window_id=window_id)
        return await notices.post_notice(self.ctx, row_id, posts.HELD, posted_at(window), message, tag)

    async def deliver_notice(self, row_id: int, window_id: int, claim) -> int:
        """The scheduler's side of a cancel notice it claimed (the canceller died before
        posting it); the note typed with the cancellation was not kept and is left out."""
        window = await self.get(window_id)
        if window is None or not window.message_ts:
            await RowClaim(self.ctx, row_id, claim).skip()
            return 0
        message = messages.cancelled_reply(window, window.cancelled_by, window.cancelled_at or self.ctx.clock())
        tag = notices.notice_tag(kind=ReminderKind.CANCELLED, window_id=window_id)
        ts = await notices.post_notice(self.ctx, row_id, claim, posted_at(window), message, tag)
        if ts is None:
            return 0
        await self.refresh_announcement(window_id)
        return 1

    async def made_by_draft(self, draft_id: int) -> MaintenanceWindow | None:
        """The window a draft's send stored before its process died, if it got that far."""
        async with self.ctx.db.session() as session:
            return await window_store.by_draft(session, draft_id)

    async def _announced_elsewhere(self, window_id: int) -> MaintenanceWindow:
        """Another process holds the claim: its post is usually seconds away. Wait for it a
        little; still nothing: `AnnouncementBusy` (a reminder retries shortly)."""
        deadline = asyncio.get_running_loop().time() + ANNOUNCE_WAIT
        while True:
            window = await self.get(window_id)
            if window is None:
                raise NotFound(f"Maintenance #{window_id} is not in the store.")
            if window.message_ts:
                return window
            if asyncio.get_running_loop().time() >= deadline:
                raise AnnouncementBusy(f"window {window_id}")
            await asyncio.sleep(0.1)

    async def refresh_announcement(self, window_id: int) -> None:
        """Make the parent message show the stored window (after a state or time change)."""
        window = await self.get(window_id)
        if window is None or not window.message_ts:
            return
        await self.ctx.channel.refresh(posted_at(window), announcement(window))

    async def post_in_thread(
        self,
        window_id: int,
        message: Message,
        *,
        broadcast: bool = False,
        metadata: dict | None = None,
    ) -> str:
        """Reply in the window's thread (announcing it first if it never was); returns the reply's ts.

        Does not refresh the parent: call `refresh_announcement` after changing the window.
        """
        window = await self.announced(window_id)
        return await self.ctx.channel.reply(posted_at(window), message, broadcast=broadcast, metadata=metadata)

    async def announced(self, window_id: int) -> MaintenanceWindow:
        """The window, announced: as stored, or announced now (Slack refused it before)."""
        window = await self.get(window_id)
        if window is None:
            raise NotFound(f"Maintenance #{window_id} is not in the store.")
        return window if window.message_ts else await self.announce(window_id)
