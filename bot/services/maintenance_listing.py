"""`/maintenance list` and `/maintenance status`: what the maintenance API lists, merged
with the store, and the store's record (saying so) when the API does not answer."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.backends.base import BackendWindow, MaintenanceBackend
from bot.context import AppContext
from bot.errors import UpstreamError, UpstreamUnavailable
from bot.services.recurrence import describe
from bot.services.series import rule_of
from bot.services.windows import Windows
from store import maintenance as window_store
from store import series as series_store
from store.models import MaintenanceWindow
from store.states import WindowState

log = logging.getLogger(__name__)

#: `/maintenance list` is answered after the ack; past this the answer comes from the store.
LIST_DEADLINE_SECONDS = 30


@dataclass(frozen=True)
class ListedWindow:
    """One line of `/maintenance list`: what the API says, with our number if we know it."""

    backend: str
    upstream_id: str
    title: str
    start: datetime
    end: datetime | None
    state: str
    servers: tuple[int, ...] = ()
    components: tuple[str, ...] = ()
    #: Our short number; None for a window made upstream that the sync has not announced yet.
    number: int | None = None
    #: The recurring series it belongs to (`Listing.series` says how it repeats).
    series_id: int | None = None


@dataclass(frozen=True)
class Listing:
    """The answer to `/maintenance list`, and where it comes from."""

    windows: list[ListedWindow]
    service: str  # "AppFirst", "the status page"
    now: datetime
    sync_interval: int  # seconds: when a window not announced yet will be
    #: Why the API did not answer; set ⇒ `windows` is only the bot's own record.
    problem: str | None = None
    #: When the API last answered a list (the sync's or a person's); None: never.
    checked_at: datetime | None = None
    #: How each listed series repeats, in words, by series id.
    series: dict[int, str] = field(default_factory=dict)


def _soonest(window: ListedWindow) -> tuple:
    return window.start, window.number is None, window.number or 0, window.upstream_id


def _listed_from_row(row: MaintenanceWindow, now: datetime) -> ListedWindow:
    return ListedWindow(
        backend=row.backend,
        upstream_id=row.upstream_id,
        title=row.title,
        start=row.start,
        end=row.end,
        state=WindowState.at(row.start, row.end, now, row.state == WindowState.IN_PROGRESS),
        servers=tuple(row.servers),
        components=tuple(row.components),
        number=row.id,
        series_id=row.series_id,
    )


def _listed_from_api(bw: BackendWindow, row: MaintenanceWindow | None, backend: str, now: datetime) -> ListedWindow:
    """The API's version; where the API leaves something out (the status page's end and
    components), our record fills it in."""
    start = bw.start or (row.start if row is not None else now)
    end = bw.end if bw.end is not None else (row.end if row is not None else None)
    return ListedWindow(
        backend=backend,
        upstream_id=bw.upstream_id,
        title=bw.title,
        start=start,
        end=end,
        state=WindowState.at(start, end, now, bw.in_progress),
        servers=tuple(bw.servers),
        components=tuple(bw.components) or (tuple(row.components) if row is not None else ()),
        number=row.id if row is not None else None,
        series_id=row.series_id if row is not None else None,
    )


class WindowListing:
    """The listing of one backend's windows (the feature's service hands in the backend)."""

    def __init__(self, ctx: AppContext, backend: MaintenanceBackend, windows: Windows):
        self.ctx, self.backend, self.windows = ctx, backend, windows

    async def listing(self) -> Listing:
        """Upcoming and ongoing windows as the maintenance API lists them, merged with the
        store, soonest first. AppFirst lists every window (so it alone decides what exists);
        the status page lists only what is in progress (so the store adds what is scheduled).
        When the API does not answer, the store's record, saying so and how old it is."""
        backend = self.backend
        now = self.ctx.clock()
        async with self.ctx.db.session() as session:
            stored = await window_store.upcoming_windows(session, backend.name, now)
        try:
            async with asyncio.timeout(LIST_DEADLINE_SECONDS):
                live = await backend.list_windows()
        except (UpstreamError, TimeoutError) as exc:
            if isinstance(exc, TimeoutError):
                exc = UpstreamUnavailable(
                    backend.service, f"it took more than {LIST_DEADLINE_SECONDS:g} seconds to list its windows"
                )
            log.warning("/maintenance list: %s did not answer (%s); answering from the store", backend.service, exc)
            return await self._listing(
                [_listed_from_row(row, now) for row in stored],
                now,
                problem=str(exc),
                checked_at=await self.windows.last_listed(),
            )
        await self.windows.note_listed()
        async with self.ctx.db.session() as session:
            known = await window_store.by_upstream_ids(session, backend.name, [w.upstream_id for w in live])
        merged: dict[str, ListedWindow] = {}
        if not backend.lists_all:
            # Only windows in progress are listed: the store knows the scheduled ones.
            merged = {row.upstream_id: _listed_from_row(row, now) for row in stored}
        for bw in live:
            if bw.end is not None and bw.end <= now:
                continue  # history
            row = known.get(bw.upstream_id)
            merged[bw.upstream_id] = _listed_from_api(bw, row, backend.name, now)
        return await self._listing(sorted(merged.values(), key=_soonest), now)

    async def _listing(self, windows: list[ListedWindow], now: datetime, **kwargs: Any) -> Listing:
        return Listing(
            series=await self._series_described({w.series_id for w in windows if w.series_id is not None}),
            windows=windows,
            service=self.backend.service,
            now=now,
            sync_interval=self.ctx.settings.sitrep_sync_interval,
            **kwargs,
        )

    async def _series_described(self, series_ids: set[int]) -> dict[int, str]:
        """How each listed series repeats, in words: a series is listed once, with its dates."""
        if not series_ids:
            return {}
        async with self.ctx.db.session() as session:
            found = await series_store.series_by_id(session, series_ids)
        return {sid: describe(rule_of(series)) for sid, series in found.items()}

    async def status(self) -> list[tuple[BackendWindow, MaintenanceWindow | None]]:
        """Windows in progress now, as the API says, each with our record of it if we have one."""
        backend = self.backend
        live = await backend.in_progress()
        async with self.ctx.db.session() as session:
            known = await window_store.by_upstream_ids(session, backend.name, [w.upstream_id for w in live])
        return [(w, known.get(w.upstream_id)) for w in live]
