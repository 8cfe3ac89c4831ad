"""Queries on maintenance windows. Plain data in, models out; no Slack here."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import MaintenanceWindow
from store.states import ACTIVE_WINDOW_STATES, WindowState

#: States in which a window still matters to people (not cancelled, not over).
ACTIVE_STATES = ACTIVE_WINDOW_STATES


async def add_window(session: AsyncSession, window: MaintenanceWindow) -> MaintenanceWindow:
    session.add(window)
    await session.flush()
    return window


async def get_window(session: AsyncSession, window_id: int) -> MaintenanceWindow | None:
    return await session.get(MaintenanceWindow, window_id)


async def by_upstream(session: AsyncSession, backend: str, upstream_id: str) -> MaintenanceWindow | None:
    query = select(MaintenanceWindow).where(
        MaintenanceWindow.backend == backend, MaintenanceWindow.upstream_id == str(upstream_id)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def by_upstream_ids(session: AsyncSession, backend: str, upstream_ids: Iterable[str]) -> dict[str, MaintenanceWindow]:
    ids = [str(i) for i in upstream_ids]
    if not ids:
        return {}
    query = select(MaintenanceWindow).where(MaintenanceWindow.backend == backend, MaintenanceWindow.upstream_id.in_(ids))
    return {w.upstream_id: w for w in (await session.execute(query)).scalars()}


async def find_window(session: AsyncSession, ref: str, backend: str) -> MaintenanceWindow | None:
    """`ref` is the short number people see (`3`, `#3`) or the backend's upstream ID.

    A bare number is the short number first (as the bot shows it), then an upstream ID;
    `#3` is only ever the short number.
    """
    ref = ref.strip()
    hashed = ref.startswith("#")
    number = ref[1:].strip() if hashed else ref
    if number.isdigit():
        found = await session.get(MaintenanceWindow, int(number))
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
    query = select(MaintenanceWindow).where(
        MaintenanceWindow.backend == backend, MaintenanceWindow.state.in_(ACTIVE_STATES)
    )
    return list((await session.execute(query)).scalars())


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
