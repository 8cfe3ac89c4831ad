"""What a person's home tab shows: the open incidents and the windows running and coming, read
from the store (the home tab must open fast, and the store is the record of what sitrep
announced), with a link to each thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.context import AppContext
from bot.errors import DatabaseBusy
from bot.slack.channel import Posted
from store import incidents as incident_store
from store import maintenance as window_store
from store.db import STORE_FAILURES, is_store_failure, store_reason
from store.models import Incident, MaintenanceWindow

#: At most this many chat.getPermalink calls for one home tab: one per window shown the first
#: time it is (the view shows no more than this; a link once given is kept in
#: `AppContext.permalinks`; incidents keep their link in the store).
MAX_WINDOW_LINKS = 30
#: The open incidents the view shows (two blocks each); the rest are only counted.
MAX_INCIDENTS_SHOWN = 25

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HomeOverview:
    """Everything the home view shows; None where the feature is not configured."""

    now: datetime
    incidents: list[Incident] | None
    windows: list[MaintenanceWindow] | None
    #: The window's thread, by window id, for the first windows (those the view can show).
    window_links: dict[int, str] = field(default_factory=dict)
    #: How many open incidents this person may see (`incidents` holds the newest of them).
    open_incidents: int = 0
    #: How the maintenance API is called ("the status page", "AppFirst").
    maintenance_service: str | None = None


class HomeService:
    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncSession]:
        """A session whose failure (the database gone, locked, full) is `DatabaseBusy` with its
        reason, which the home tab shows instead of its view."""
        try:
            async with self.ctx.db.session() as session:
                yield session
        except STORE_FAILURES as exc:
            if not is_store_failure(exc):
                raise
            log.warning("home tab: the database failed: %s", store_reason(exc))
            raise DatabaseBusy.failed(store_reason(exc)) from None

    async def overview(self, *, user_id: str, links_for: int = MAX_WINDOW_LINKS) -> HomeOverview:
        """What `user_id` may see: where each open incident was announced is read first, and
        only those in a channel the person is in (`bot.slack.members`) are loaded and counted.
        Then links to the threads of the first `links_for` windows (those not known yet asked
        of Slack at once, paced; a window Slack gives no link for is shown without one)."""
        now = self.ctx.clock()
        backend = self.ctx.maintenance
        async with self._reading() as session:
            places = await incident_store.open_places(session) if self.ctx.statuspage is not None else None
            windows = await window_store.upcoming_windows(session, backend.name, now) if backend is not None else None
        incidents, open_count = None, 0
        if places is not None:
            readable = await self.ctx.memberships.readable(user_id, {c for _, *where in places for c in where if c})
            visible = [number for number, *where in places if readable.intersection(where)]
            open_count = len(visible)
            async with self._reading() as session:
                incidents = await incident_store.open_by_ids(session, visible[:MAX_INCIDENTS_SHOWN])
        links: dict[int, str] = {}
        if windows:
            shown = [w for w in windows[: min(links_for, MAX_WINDOW_LINKS)] if w.message_ts and w.channel_id]
            known = self.ctx.permalinks
            links = {w.id: known[(w.channel_id, w.message_ts)] for w in shown if (w.channel_id, w.message_ts) in known}
            asked = [w for w in shown if w.id not in links]
            found = await asyncio.gather(*(self.ctx.channel.permalink(Posted(w.channel_id, w.message_ts)) for w in asked))
            for window, link in zip(asked, found, strict=True):
                if link:
                    links[window.id] = link
                    self.ctx.remember_permalink(window.channel_id, window.message_ts, link)
        return HomeOverview(
            now=now,
            incidents=incidents,
            open_incidents=open_count,
            windows=windows,
            window_links=links,
            maintenance_service=backend.service if backend is not None else None,
        )
