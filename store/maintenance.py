"""Queries on maintenance windows. Plain data in, models out; no Slack here."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store import ids
from store.models import MaintenanceWindow
from store.states import ACTIVE_WINDOW_STATES, WindowState

#: States in which a window still matters to people (not cancelled, not over).
ACTIVE_STATES = ACTIVE_WINDOW_STATES
#: Rows converted between two returns to the event loop when a read is large: 1,000 stored
#: windows (two times parsed each) held the loop ~20 ms of CPU, over the sync's 20 ms budget.
READ_SLICE = 250


async def add_window(session: AsyncSession, window: MaintenanceWindow) -> MaintenanceWindow:
    if window.planned_end is None:
        window.planned_end = window.end
    session.add(window)
    await session.flush()
    return window


async def get_window(session: AsyncSession, window_id: int) -> MaintenanceWindow | None:
    return await session.get(MaintenanceWindow, window_id)


async def by_draft(session: AsyncSession, draft_id: int) -> MaintenanceWindow | None:
    """The window stored from this draft's send (`MaintenanceWindow.draft_id`), if any."""
    return await session.scalar(select(MaintenanceWindow).where(MaintenanceWindow.draft_id == draft_id).limit(1))


async def by_upstream(session: AsyncSession, backend: str, upstream_id: str) -> MaintenanceWindow | None:
    """The window `backend` knows as `upstream_id`; a status-page GUID in any spelling."""
    upstream_id = str(upstream_id).strip()
    canonical = ids.guid(upstream_id)
    of_backend = select(MaintenanceWindow).where(MaintenanceWindow.backend == backend)
    found = await session.scalar(of_backend.where(MaintenanceWindow.upstream_id == (canonical or upstream_id)).limit(1))
    if found is None and canonical is not None:  # kept in another spelling (before IDs were normalized)
        query = of_backend.where(ids.spelled_as_guid(MaintenanceWindow.upstream_id) == ids.bare(canonical))
        found = await session.scalar(query.order_by(MaintenanceWindow.id).limit(1))
    return found


async def overlapping(session: AsyncSession, *, now: datetime, ended_since: datetime, limit: int) -> list[MaintenanceWindow]:
    """Windows running at `now` (started, not cancelled, not ended) or ended since
    `ended_since`, the latest started first; at most `limit`."""
    query = (
        select(MaintenanceWindow)
        .where(
            MaintenanceWindow.state != WindowState.CANCELLED,
            MaintenanceWindow.start <= now,
            or_(MaintenanceWindow.end.is_(None), MaintenanceWindow.end >= ended_since),
        )
        .order_by(MaintenanceWindow.start.desc(), MaintenanceWindow.id.desc())
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())


async def by_upstream_ids(session: AsyncSession, backend: str, upstream_ids: Iterable[str]) -> dict[str, MaintenanceWindow]:
    ids = [str(i) for i in upstream_ids]
    found: dict[str, MaintenanceWindow] = {}
    for chunk in range(0, len(ids), 500):  # under every database's bound-parameter limit (50k IDs broke it)
        query = select(MaintenanceWindow).where(
            MaintenanceWindow.backend == backend, MaintenanceWindow.upstream_id.in_(ids[chunk : chunk + 500])
        )
        found.update((w.upstream_id, w) for w in (await session.execute(query)).scalars())
    return found


async def find_window(session: AsyncSession, ref: str, backend: str) -> MaintenanceWindow | None:
    """`ref` is the short number people see (`3`, `#3`) or the backend's upstream ID.

    A bare number is the short number first (as the bot shows it), then an upstream ID;
    `#3` is only ever the short number.
    """
    ref = ref.strip()
    hashed = ref.startswith("#")
    number = ids.number(ref)  # none for a number too large for any row (AppFirst's IDs are short too)
    if number is not None:
        found = await session.get(MaintenanceWindow, number)
        if found is not None and found.backend == backend:
            return found
    if hashed:
        return None
    return await by_upstream(session, backend, ref)


async def upcoming_windows(session: AsyncSession, backend: str, now: datetime) -> list[MaintenanceWindow]:
    """Scheduled and ongoing windows of one backend that have not ended, soonest first."""
    query = (
        select(MaintenanceWindow)
        .where(
            MaintenanceWindow.backend == backend,
            MaintenanceWindow.state.in_(ACTIVE_STATES),
            or_(MaintenanceWindow.end.is_(None), MaintenanceWindow.end > now),
        )
        .order_by(MaintenanceWindow.start, MaintenanceWindow.id)
    )
    return list((await session.execute(query)).scalars())


async def unannounced_external(session: AsyncSession, backend: str, until: datetime) -> list[MaintenanceWindow]:
    """Active windows made outside Slack, never announced, starting by `until`, soonest first."""
    query = (
        select(MaintenanceWindow)
        .where(
            MaintenanceWindow.backend == backend,
            MaintenanceWindow.state.in_(ACTIVE_STATES),
            MaintenanceWindow.message_ts.is_(None),
            MaintenanceWindow.created_by.is_(None),
            MaintenanceWindow.start <= until,
        )
        .order_by(MaintenanceWindow.start, MaintenanceWindow.id)
    )
    return list((await session.execute(query)).scalars())


async def active_windows(session: AsyncSession, backend: str) -> list[MaintenanceWindow]:
    """Every window of one backend still scheduled or in progress (for the sync)."""
    query = select(MaintenanceWindow).where(MaintenanceWindow.backend == backend, MaintenanceWindow.state.in_(ACTIVE_STATES))
    return list((await session.execute(query)).scalars())


class WindowTimes(NamedTuple):
    """What the sync compares of a stored window: no ORM object, no JSON columns."""

    id: int
    upstream_id: str
    state: str
    start: datetime
    end: datetime | None
    message_ts: str | None


async def active_times(session: AsyncSession, backend: str) -> dict[str, WindowTimes]:
    """The active windows of one backend by upstream ID, as plain tuples: one query, and
    the cheapest read of them there is (the sync reads it on every pass)."""
    query = select(
        MaintenanceWindow.id,
        MaintenanceWindow.upstream_id,
        MaintenanceWindow.state,
        MaintenanceWindow.start,
        MaintenanceWindow.end,
        MaintenanceWindow.message_ts,
    ).where(MaintenanceWindow.backend == backend, MaintenanceWindow.state.in_(ACTIVE_STATES))
    found: dict[str, WindowTimes] = {}
    # Streamed in slices: 10,000 rows converted at once hold the event loop ~30 ms.
    result = await session.stream(query.execution_options(yield_per=READ_SLICE))
    async for rows in result.partitions(READ_SLICE):
        found.update((row[1], WindowTimes(*row)) for row in rows)
    return found


async def active_upstream_ids(session: AsyncSession, backend: str) -> set[str]:
    """The upstream IDs of one backend's active windows (the sync's snapshot before it lists)."""
    query = select(MaintenanceWindow.upstream_id).where(
        MaintenanceWindow.backend == backend, MaintenanceWindow.state.in_(ACTIVE_STATES)
    )
    found: set[str] = set()
    result = await session.stream(query.execution_options(yield_per=READ_SLICE))
    async for rows in result.partitions(READ_SLICE):
        found.update(row[0] for row in rows)
    return found


async def known_upstream_ids(session: AsyncSession, backend: str, upstream_ids: Iterable[str]) -> set[str]:
    """Which of these upstream IDs the store has, in any state."""
    ids = [str(i) for i in upstream_ids]
    found: set[str] = set()
    for chunk in range(0, len(ids), 500):  # under every database's bound-parameter limit
        query = select(MaintenanceWindow.upstream_id).where(
            MaintenanceWindow.backend == backend, MaintenanceWindow.upstream_id.in_(ids[chunk : chunk + 500])
        )
        found.update((await session.execute(query)).scalars())
    return found


async def cancel_if_active(session: AsyncSession, window_id: int, *, now: datetime, by: str | None = None) -> bool:
    """Compare-and-set: True for the one caller that moved the window to cancelled."""
    done = await session.execute(
        update(MaintenanceWindow)
        .where(MaintenanceWindow.id == window_id, MaintenanceWindow.state.in_(ACTIVE_STATES))
        .values(state=WindowState.CANCELLED, updated_at=now, cancelled_by=by, cancelled_at=now)
    )
    return done.rowcount == 1


async def move_if_unchanged(
    session: AsyncSession,
    window_id: int,
    *,
    seen: tuple[datetime | None, datetime | None],
    new: tuple[datetime | None, datetime | None],
    now: datetime,
) -> bool:
    """Compare-and-set on the times, so two processes syncing at once announce a move once."""
    old_start, old_end = seen
    start, end = new
    query = update(MaintenanceWindow).where(
        MaintenanceWindow.id == window_id,
        MaintenanceWindow.state.in_(ACTIVE_STATES),
        MaintenanceWindow.start == old_start,
        MaintenanceWindow.end.is_(None) if old_end is None else MaintenanceWindow.end == old_end,
    )
    values: dict = {"start": start, "end": end, "updated_at": now}
    if start is not None and start > now:
        values["state"] = WindowState.SCHEDULED  # moved into the future (`WindowState.rescheduled`)
    done = await session.execute(query.values(**values))
    return done.rowcount == 1


async def windows_touching(session: AsyncSession, backend: str, start: datetime, end: datetime) -> list[MaintenanceWindow]:
    """Windows that started in [start, end), or were called off in it, by start: what the
    weekly digest reports as run, extended or cancelled, and as coming."""
    query = (
        select(MaintenanceWindow)
        .where(
            MaintenanceWindow.backend == backend,
            or_(
                and_(MaintenanceWindow.start >= start, MaintenanceWindow.start < end),
                and_(MaintenanceWindow.cancelled_at >= start, MaintenanceWindow.cancelled_at < end),
            ),
        )
        .order_by(MaintenanceWindow.start, MaintenanceWindow.id)
    )
    return list((await session.scalars(query)).all())
