"""Queries on recurring maintenance series and the claims on creating their occurrences.
Plain data in, models out; no Slack, no upstream."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from store.dbclock import db_utc_now
from store.models import Instance, MaintenanceSeries, MaintenanceWindow, SeriesOccurrence
from store.states import ACTIVE_WINDOW_STATES, OccurrenceState


async def add_series(session: AsyncSession, series: MaintenanceSeries) -> MaintenanceSeries:
    session.add(series)
    await session.flush()
    return series


async def get_series(session: AsyncSession, series_id: int) -> MaintenanceSeries | None:
    return await session.get(MaintenanceSeries, series_id)


async def series_on(session: AsyncSession, backend: str) -> list[MaintenanceSeries]:
    """Every series of a backend, oldest first (whether one still has occurrences ahead is
    the rule's to say)."""
    query = select(MaintenanceSeries).where(MaintenanceSeries.backend == backend).order_by(MaintenanceSeries.id)
    return list((await session.scalars(query)).all())


async def series_by_id(session: AsyncSession, ids: Iterable[int]) -> dict[int, MaintenanceSeries]:
    wanted = set(ids)
    if not wanted:
        return {}
    rows = await session.scalars(select(MaintenanceSeries).where(MaintenanceSeries.id.in_(wanted)))
    return {row.id: row for row in rows}


async def occurrences_of(session: AsyncSession, series_id: int) -> dict[int, SeriesOccurrence]:
    rows = await session.scalars(select(SeriesOccurrence).where(SeriesOccurrence.series_id == series_id))
    return {row.index: row for row in rows}


async def titles_being_created(session: AsyncSession, backend: str) -> set[str]:
    """The titles of the series with an occurrence being created (claimed, not settled).

    The sync leaves a listed window with one of these titles alone: it may be that
    occurrence, made upstream by a replica not yet answered (or killed mid-create), and the
    claim's holder, or whoever takes the claim over, stores and announces it as the series'.
    Adopted instead, it would be announced as a window made outside Slack, and a roll storing
    it meanwhile would collide with the adoption and strand its claim. Read after the list:
    a window listed was made after its claim was written, so its claim is then either still
    being created or settled with the window stored."""
    query = (
        select(MaintenanceSeries.title)
        .join(SeriesOccurrence, SeriesOccurrence.series_id == MaintenanceSeries.id)
        .where(MaintenanceSeries.backend == backend, SeriesOccurrence.state == OccurrenceState.CREATING)
        .distinct()
    )
    return set((await session.scalars(query)).all())


async def claim(session: AsyncSession, series_id: int, index: int, *, instance: str) -> bool:
    """Claim the creation of one occurrence: the first insert wins, on every replica."""
    try:
        async with session.begin_nested():
            session.add(
                SeriesOccurrence(
                    series_id=series_id,
                    index=index,
                    state=OccurrenceState.CREATING,
                    claimed_by=instance,
                    claimed_at=db_utc_now(),
                )
            )
    except IntegrityError:
        return False
    return True


async def take_over_stale(session: AsyncSession, series_id: int, index: int, *, instance: str, live_since: datetime) -> bool:
    """Take a claim whose instance is gone (no heartbeat since `live_since`, database clock),
    compare-and-set: of two replicas noticing at once, one wins."""
    alive = select(Instance.id).where(Instance.heartbeat_at >= live_since)
    result = await session.execute(
        update(SeriesOccurrence)
        .where(
            SeriesOccurrence.series_id == series_id,
            SeriesOccurrence.index == index,
            SeriesOccurrence.state == OccurrenceState.CREATING,
            or_(SeriesOccurrence.claimed_by.is_(None), SeriesOccurrence.claimed_by.not_in(alive)),
        )
        .values(claimed_by=instance, claimed_at=db_utc_now())
    )
    return result.rowcount == 1


async def settle(session: AsyncSession, series_id: int, index: int, *, state: OccurrenceState, window_id: int | None) -> None:
    await session.execute(
        update(SeriesOccurrence)
        .where(SeriesOccurrence.series_id == series_id, SeriesOccurrence.index == index)
        .values(state=state, window_id=window_id, claimed_by=None)
    )


async def release(session: AsyncSession, series_id: int, index: int, *, instance: str) -> None:
    """Give a claim back after a plain failure: the next roll tries again."""
    await session.execute(
        delete(SeriesOccurrence).where(
            SeriesOccurrence.series_id == series_id,
            SeriesOccurrence.index == index,
            SeriesOccurrence.state == OccurrenceState.CREATING,
            SeriesOccurrence.claimed_by == instance,
        )
    )


async def unclaim(session: AsyncSession, series_id: int, index: int, *, instance: str) -> None:
    """Leave a claim to whoever rolls next (it takes it over and looks before creating)."""
    await session.execute(
        update(SeriesOccurrence)
        .where(SeriesOccurrence.series_id == series_id, SeriesOccurrence.index == index, SeriesOccurrence.claimed_by == instance)
        .values(claimed_by=None)
    )


async def record_created(session: AsyncSession, series_id: int, index: int, window_id: int) -> None:
    """The occurrence's window is stored: its claim row says so (the first occurrence, made
    by the person's own submission, has no claim row yet)."""
    done = await session.execute(
        update(SeriesOccurrence)
        .where(SeriesOccurrence.series_id == series_id, SeriesOccurrence.index == index)
        .values(state=OccurrenceState.CREATED, window_id=window_id, claimed_by=None)
    )
    if done.rowcount == 0:
        session.add(SeriesOccurrence(series_id=series_id, index=index, state=OccurrenceState.CREATED, window_id=window_id))
        await session.flush()


async def link(session: AsyncSession, window_id: int, series_id: int, index: int, *, created_by: str) -> None:
    """A stored window is the occurrence (the sync adopted it before its creator recorded it)."""
    await session.execute(
        update(MaintenanceWindow)
        .where(MaintenanceWindow.id == window_id)
        .values(series_id=series_id, series_index=index, created_by=created_by)
    )
    await record_created(session, series_id, index, window_id)


async def window_of(session: AsyncSession, series_id: int, index: int) -> MaintenanceWindow | None:
    query = select(MaintenanceWindow).where(MaintenanceWindow.series_id == series_id, MaintenanceWindow.series_index == index)
    return (await session.scalars(query)).first()


async def active_windows_from(session: AsyncSession, series_id: int, index: int) -> list[MaintenanceWindow]:
    """The series' windows still ahead or running, from occurrence `index` on, in order."""
    query = (
        select(MaintenanceWindow)
        .where(
            MaintenanceWindow.series_id == series_id,
            MaintenanceWindow.series_index >= index,
            MaintenanceWindow.state.in_(ACTIVE_WINDOW_STATES),
        )
        .order_by(MaintenanceWindow.series_index)
    )
    return list((await session.scalars(query)).all())


async def end_before(session: AsyncSession, series_id: int, index: int, *, now: datetime) -> None:
    """Call off the occurrences from `index` on (keeping the earliest cut if two people cut)."""
    await session.execute(
        update(MaintenanceSeries)
        .where(
            MaintenanceSeries.id == series_id,
            or_(MaintenanceSeries.ends_before.is_(None), MaintenanceSeries.ends_before > index),
        )
        .values(ends_before=index, updated_at=now)
    )
    # The window before the cut is now the last: its announcement names no next one.
    await session.execute(
        update(MaintenanceWindow)
        .where(MaintenanceWindow.series_id == series_id, MaintenanceWindow.series_index == index - 1)
        .values(series_next=None)
    )


async def retemplate(session: AsyncSession, series_id: int, *, now: datetime, **template) -> None:
    """What the series' occurrences not created yet are created with (an edit of "this and
    the following")."""
    await session.execute(update(MaintenanceSeries).where(MaintenanceSeries.id == series_id).values(**template, updated_at=now))


async def next_windows(
    session: AsyncSession, series_ids: Iterable[int], now: datetime, per_series: int
) -> dict[int, list[MaintenanceWindow]]:
    """The next `per_series` active windows of each series, soonest first."""
    wanted = set(series_ids)
    if not wanted:
        return {}
    ranked = (
        select(
            MaintenanceWindow.id,
            func.row_number().over(partition_by=MaintenanceWindow.series_id, order_by=MaintenanceWindow.start).label("rank"),
        )
        .where(
            MaintenanceWindow.series_id.in_(wanted),
            MaintenanceWindow.state.in_(ACTIVE_WINDOW_STATES),
            or_(MaintenanceWindow.end.is_(None), MaintenanceWindow.end > now),
        )
        .subquery()
    )
    query = (
        select(MaintenanceWindow)
        .join(ranked, and_(ranked.c.id == MaintenanceWindow.id, ranked.c.rank <= per_series))
        .order_by(MaintenanceWindow.start)
    )
    out: dict[int, list[MaintenanceWindow]] = {}
    for row in await session.scalars(query):
        out.setdefault(row.series_id, []).append(row)
    return out
