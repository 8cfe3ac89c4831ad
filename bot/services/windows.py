"""A maintenance window's life after it is recorded, shared by the person-facing service,
the reminders and the sync: adopting one made outside Slack, announcing it, replying in its
thread, refreshing its announcement, and when the API last answered a list."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError

from bot.backends import backend_named
from bot.backends.base import BackendWindow
from bot.channel import Message, Posted
from bot.context import AppContext
from bot.errors import NotFound
from bot.messages import maintenance as messages
from bot.services import reminders
from store import facts
from store import maintenance as window_store
from store.models import MaintenanceWindow
from store.states import WindowState

log = logging.getLogger(__name__)

#: The metadata event type of a window's announcement (its payload: `window_id`).
ANNOUNCEMENT_EVENT = "sitrep_window"


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
        """Remember that the API just answered a list (shown when it later does not)."""
        async with self.ctx.db.session() as session, session.begin():
            await facts.put_fact(session, self._listed_key(), {}, now=self.ctx.clock())

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
            refused = await self.ctx.channel.after_upstream(
                lambda window_id=window.id: self.announce(window_id, look_first=True),
                what=f"announcing maintenance #{window.id}",
                upstream=backend.service,
                then="The next sync tries again.",
            )
            announced += refused is None  # Slack refusing one must not stop the sync
        return announced

    # --- the channel ------------------------------------------------------------------
    async def announce(self, window_id: int, *, look_first: bool = False) -> MaintenanceWindow:
        """Post the window's one parent message, tagged with its id, and store where it is.
        `look_first`: a window that should have been announced already (by a process that may
        have died between Slack taking the post and storing it) is looked for in the channel
        first, so it is never announced twice."""
        window = await self.get(window_id)
        tag = {"event_type": ANNOUNCEMENT_EVENT, "event_payload": {"window_id": window_id}}
        if look_first:
            found = await self.ctx.channel.find_announcement(ANNOUNCEMENT_EVENT, tag["event_payload"])
            if found is not None:
                log.info("maintenance #%s was already announced (%s); storing it", window_id, found.ts)
                return await self._remember(window_id, found)
        posted = await self.ctx.channel.announce(announcement(window), metadata=tag)
        return await self._remember(window_id, posted)

    async def _remember(self, window_id: int, posted: Posted) -> MaintenanceWindow:
        async with self.ctx.db.session() as session, session.begin():
            stored = await window_store.get_window(session, window_id)
            stored.channel_id = posted.channel
            stored.message_ts = posted.ts
        return stored

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
        window = await self.get(window_id)
        if window is None:
            raise NotFound(f"Maintenance #{window_id} is not in the store.")
        at = posted_at(window)
        if at is None:  # Slack refused it then, or its process died before storing it
            at = posted_at(await self.announce(window_id, look_first=True))
        return await self.ctx.channel.reply(at, message, broadcast=broadcast, metadata=metadata)
