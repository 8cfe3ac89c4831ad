"""The periodic sync: windows made, moved or deleted outside Slack get the same treatment
as ours. A failing API is logged and tried again at the next interval.

The status page lists only the windows someone marked in progress, maybe minutes after their
start, so absence from that list never ends a window early: it ends at its scheduled end,
when cancelled from Slack, or (one adopted from the list, whose end it never gave) when it
leaves the list."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from bot.backends.base import BackendWindow, MaintenanceBackend
from bot.context import AppContext
from bot.errors import UpstreamError
from bot.messages import maintenance as messages
from bot.services.reminders import cancel_window_reminders, schedule_window_reminders
from bot.services.windows import Windows
from store import maintenance as window_store
from store import series as series_store
from store.maintenance import WindowTimes
from store.states import WindowState

log = logging.getLogger(__name__)

#: Listed windows compared between two yields to the event loop (~1 ms of work at most).
YIELD_EVERY = 500


@dataclass
class SyncReport:
    adopted: int = 0
    announced: int = 0  # stored earlier beyond the horizon, announced now it is within
    moved: int = 0
    vanished: int = 0
    ended: int = 0
    failed: bool = False
    skipped: bool = False  # another replica was syncing: its pass covers this interval


#: The lock (`Database.exclusive`) that keeps the sync to one replica at a time.
SYNC_LOCK = "maintenance-sync"


async def sync_windows(ctx: AppContext) -> SyncReport:
    """One pass, by one replica at a time: a replica that finds another syncing skips its
    turn (the other's pass sees the same API), so N replicas never read every page N times
    nor race each other to adopt the same window. Its cost follows what changed: the stored side is read in one query of plain
    tuples (active windows only, after a snapshot of their IDs) and compared in memory; only
    new, moved or vanished windows cost more. AppFirst documents no order for its list (the
    seed's example happens to be newest first), so every page is read: stopping early on an
    assumed order could miss a window. The loop yields every `YIELD_EVERY` windows so no
    step holds it long."""
    backend = ctx.maintenance
    report = SyncReport()
    if backend is None:
        return report
    async with ctx.db.exclusive(SYNC_LOCK) as held:
        if not held:
            log.debug("maintenance sync skipped: another replica is syncing")
            report.skipped = True
            return report
        with _collector_paused():
            return await _sync_pass(ctx, backend, report)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a pass runs. A pass holds every listed window
    and every active one as named tuples, which the collector keeps tracking (it lets go
    only of plain tuples), so each automatic full collection during a pass over 50,000
    windows walks them all: 8–20 ms each, several a pass, with the loop held. Reference
    counting frees them at the pass's end (`_release`); what anything made cyclic meanwhile
    (a second or so) is collected by the first collection after."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


async def _sync_pass(ctx: AppContext, backend: MaintenanceBackend, report: SyncReport) -> SyncReport:
    # What we knew before asking: a window scheduled from Slack while the pages are being
    # read must not look as if it had vanished upstream.
    async with ctx.db.session() as session:
        active = await window_store.active_upstream_ids(session, backend.name)
    try:
        listed = await backend.list_windows()
    except UpstreamError as exc:
        log.warning("maintenance sync failed (%s); trying again at the next interval", exc)
        report.failed = True
        return report

    now = ctx.clock()
    windows = Windows(ctx)
    # The sync succeeded (its only failure is the list's), and `/maintenance list` says how
    # old its record is when the API is later down.
    await windows.note_synced()
    async with ctx.db.session() as session:
        known = await window_store.active_times(session, backend.name)
        being_created = await series_store.titles_being_created(session, backend.name)
    listed_ids, unknown = await _listed_and_unknown(listed, known, now)
    over: set[str] = set()
    if unknown:  # known and over: one bulk lookup of these few, never of every listed window
        async with ctx.db.session() as session:
            over = await window_store.known_upstream_ids(session, backend.name, unknown)

    for n, upstream in enumerate(listed):
        if n % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)  # let acks in between
        row = known.get(upstream.upstream_id)
        if row is None:
            if _history(upstream, now) or upstream.upstream_id in over:
                continue  # history, not news; or a window we know that is over
            if upstream.title in being_created:
                continue  # maybe a series' occurrence mid-create: its claim stores it (`titles_being_created`)
            await windows.adopt_external(upstream, within_horizon=True)
            report.adopted += 1
            continue
        if not backend.lists_all:
            report.moved += await _follow_listed_end(ctx, windows, row, upstream, now=now)
            continue
        if upstream.start and upstream.end and (upstream.start != row.start or upstream.end != row.end):
            async with ctx.db.session() as session, session.begin():
                moved = await window_store.move_if_unchanged(
                    session, row.id, seen=(row.start, row.end), new=(upstream.start, upstream.end), now=now
                )
            if not moved:
                continue  # another process saw it first
            await schedule_window_reminders(ctx, row.id)
            async with ctx.db.session() as session:
                stored = await window_store.get_window(session, row.id)
            report.moved += 1
            if row.message_ts is None and stored.start > windows.horizon_end():
                continue  # not announced yet, still beyond the horizon: its announcement will show the new times
            await windows.post_in_thread(
                row.id, messages.moved_outside(stored, before=(row.start, row.end), service=backend.service)
            )
            await windows.refresh_announcement(row.id)

    report.announced = await windows.announce_entered_horizon()

    # Active before the pages were read and still active now (one that ended or was cancelled
    # meanwhile is not ours to touch), oldest first.
    gone = await _not_in(active, listed_ids)
    missing = sorted((known[u] for u in gone if u in known), key=lambda row: row.id)
    for row in missing:
        if backend.lists_all:
            try:
                if await backend.exists(row.upstream_id):
                    continue  # the pages shifted under us; it is still there
            except UpstreamError as exc:
                log.warning("maintenance sync could not confirm window %s is gone (%s)", row.id, exc)
                continue
            async with ctx.db.session() as session, session.begin():
                cancelled = await window_store.cancel_if_active(session, row.id, now=now)
            if not cancelled:
                continue
            await cancel_window_reminders(ctx, row.id)
            async with ctx.db.session() as session:
                stored = await window_store.get_window(session, row.id)
            await windows.post_in_thread(row.id, messages.vanished(stored, service=backend.service), broadcast=True)
            await windows.refresh_announcement(row.id)
            report.vanished += 1
        elif row.state == WindowState.IN_PROGRESS and row.end is None:
            # Adopted from the status page's in-progress list, which gave no end: leaving the
            # list is the only end the status page tells. Its "ended" reminder, due now, is
            # posted once like any other. A window with an end is not touched here: it is
            # listed only once someone marks it in progress, maybe late, so its absence says
            # nothing and it ends at its scheduled end (or when cancelled from Slack).
            async with ctx.db.session() as session, session.begin():
                ended = await window_store.move_if_unchanged(
                    session, row.id, seen=(row.start, row.end), new=(row.start, now), now=now
                )
            if ended:
                await schedule_window_reminders(ctx, row.id)
                report.ended += 1
    if report.adopted or report.announced or report.moved or report.vanished or report.ended:
        log.info("maintenance sync: %s", report)
    await _release(listed, known)
    return report


async def _release(listed: list, known: dict) -> None:
    """Free what the pass read a slice at a time: 50,000 windows freed at once on return
    hold the event loop ~30 ms."""
    while listed:
        del listed[-YIELD_EVERY * 4 :]
        await asyncio.sleep(0)
    while known:
        for _ in range(min(len(known), YIELD_EVERY * 4)):
            known.popitem()
        await asyncio.sleep(0)


async def _listed_and_unknown(
    listed: list[BackendWindow], known: dict[str, WindowTimes], now: datetime
) -> tuple[set[str], list[str]]:
    """Every listed ID, and those listed, not history and not active here (new, or known and
    over), a slice at a time: 50,000 windows compared in one go hold the loop ~10 ms."""
    listed_ids: set[str] = set()
    unknown: list[str] = []
    step = YIELD_EVERY * 4
    for first in range(0, len(listed), step):
        if first:
            await asyncio.sleep(0)
        part = listed[first : first + step]
        listed_ids.update(w.upstream_id for w in part)
        unknown.extend(w.upstream_id for w in part if w.upstream_id not in known and not _history(w, now))
    return listed_ids, unknown


async def _not_in(ids: set[str], listed_ids: set[str]) -> list[str]:
    """`ids - listed_ids`, a slice at a time (see `_listed_and_unknown`)."""
    every = list(ids)
    gone: list[str] = []
    step = YIELD_EVERY * 4
    for first in range(0, len(every), step):
        if first:
            await asyncio.sleep(0)
        gone.extend(u for u in every[first : first + step] if u not in listed_ids)
    return gone


def _history(window: BackendWindow, now: datetime) -> bool:
    return window.end is not None and window.end <= now


async def _follow_listed_end(
    ctx: AppContext, windows: Windows, row: WindowTimes, upstream: BackendWindow, *, now: datetime
) -> int:
    """A status-page window we know, seen in the in-progress list: follow its EndDate if the
    list gives one (assumption: seed 000's items have none; some servers add it) and it differs,
    so a window extended there ends at its new end. Its StartDate, the planned start, is not
    followed. Returns 1 if the window moved."""
    if upstream.end is None or upstream.end == row.end:
        return 0
    async with ctx.db.session() as session, session.begin():
        moved = await window_store.move_if_unchanged(
            session, row.id, seen=(row.start, row.end), new=(row.start, upstream.end), now=now
        )
    if not moved:
        return 0  # another process saw it first
    await schedule_window_reminders(ctx, row.id)
    if row.end is not None:  # one adopted without an end only learned it: no news in the thread
        async with ctx.db.session() as session:
            stored = await window_store.get_window(session, row.id)
        moved = messages.moved_outside(stored, before=(row.start, row.end), service=ctx.maintenance.service)
        await windows.post_in_thread(row.id, moved)
    await windows.refresh_announcement(row.id)
    return 1
