"""Reminder rows: the truth about what is due and what was posted. Claims are atomic
compare-and-set updates, so two processes sharing one database never both post."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import MaintenanceWindow, Reminder
from store.states import ClaimResult, ReminderKind, ReminderState, WindowState

PENDING, CLAIMED, POSTED, SKIPPED, CANCELLED = (
    ReminderState.PENDING,
    ReminderState.CLAIMED,
    ReminderState.POSTED,
    ReminderState.SKIPPED,
    ReminderState.CANCELLED,
)


async def reminders_of(session: AsyncSession, window_id: int) -> dict[str, Reminder]:
    rows = await session.execute(select(Reminder).where(Reminder.window_id == window_id))
    return {r.kind: r for r in rows.scalars()}


async def nudge_of(session: AsyncSession, incident_id: int) -> Reminder | None:
    """An incident's update-nudge row, if it has one."""
    rows = await session.execute(
        select(Reminder).where(Reminder.incident_id == incident_id, Reminder.kind == ReminderKind.NUDGE)
    )
    return rows.scalars().first()


async def get_window(session: AsyncSession, window_id: int) -> MaintenanceWindow | None:
    return await session.get(MaintenanceWindow, window_id)


async def move_window(session: AsyncSession, window_id: int, *, to: WindowState, now: datetime) -> bool:
    """Compare-and-set the window's state along its allowed moves, without loading it."""
    allowed_from = [state for state in WindowState if state.can_become(to)]
    done = await session.execute(
        update(MaintenanceWindow)
        .where(MaintenanceWindow.id == window_id, MaintenanceWindow.state.in_(allowed_from))
        .values(state=to, updated_at=now)
    )
    return done.rowcount == 1


async def change_if_state(session: AsyncSession, reminder_id: int, *, seen_state: str, **values) -> bool:
    """Compare-and-set: change a reminder only if nobody moved it on since we read it
    (a claim taken meanwhile by another process wins)."""
    done = await session.execute(
        update(Reminder).where(Reminder.id == reminder_id, Reminder.state == seen_state).values(**values)
    )
    return done.rowcount == 1


async def due(session: AsyncSession, now: datetime, stale_before: datetime) -> list[Reminder]:
    """Pending reminders that are due, and claims that were never completed."""
    query = (
        select(Reminder)
        .where(
            or_(
                (Reminder.state == PENDING) & (Reminder.due_at <= now),
                (Reminder.state == CLAIMED) & (Reminder.claimed_at < stale_before),
            )
        )
        .order_by(Reminder.due_at, Reminder.id)
    )
    return list((await session.execute(query)).scalars())


async def next_due_at(session: AsyncSession, *, stale_claim: timedelta | None = None) -> datetime | None:
    """The earliest pending due time; with `stale_claim`, also when the oldest claim a process
    holds now would go stale (a claim given back after a failed post is left to the sweep,
    so a Slack that keeps refusing is not retried in a tight loop)."""
    pending = _aware((await session.execute(select(func.min(Reminder.due_at)).where(Reminder.state == PENDING))).scalar())
    if stale_claim is None:
        return pending
    held = _aware(
        (
            await session.execute(
                select(func.min(Reminder.claimed_at)).where(Reminder.state == CLAIMED, Reminder.claimed_by.is_not(None))
            )
        ).scalar()
    )
    times = [t for t in (pending, held + stale_claim if held is not None else None) if t is not None]
    return min(times, default=None)


def _aware(value: datetime | None) -> datetime | None:
    """Aggregates bypass the column type: SQLite hands back a naive UTC datetime."""
    return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


async def claim(
    session: AsyncSession, reminder_id: int, *, instance: str, now: datetime, stale_before: datetime
) -> ClaimResult:
    """Take a reminder for this process (`ClaimResult`: a stale one may be in Slack already)."""
    taken = await session.execute(
        update(Reminder)
        .where(Reminder.id == reminder_id, Reminder.state == PENDING)
        .values(state=CLAIMED, claimed_by=instance, claimed_at=now)
    )
    if taken.rowcount == 1:
        return ClaimResult.FRESH
    taken = await session.execute(
        update(Reminder)
        .where(Reminder.id == reminder_id, Reminder.state == CLAIMED, Reminder.claimed_at < stale_before)
        .values(state=CLAIMED, claimed_by=instance, claimed_at=now)
    )
    return ClaimResult.STALE if taken.rowcount == 1 else ClaimResult.NONE


async def finish(
    session: AsyncSession,
    reminder_id: int,
    *,
    instance: str,
    state: str,
    now: datetime,
    message_ts: str | None = None,
    late: bool = False,
) -> bool:
    """Complete our own claim; False if it was taken over meanwhile."""
    done = await session.execute(
        update(Reminder)
        .where(Reminder.id == reminder_id, Reminder.state == CLAIMED, Reminder.claimed_by == instance)
        .values(state=state, posted_at=now if state == POSTED else None, message_ts=message_ts, late=late)
    )
    return done.rowcount == 1


async def rearm(
    session: AsyncSession, reminder_id: int, *, instance: str, due_at: datetime, now: datetime, message_ts: str | None
) -> bool:
    """Complete our own claim of a repeating reminder (a nudge) by making it pending again
    at its next due time, in one write: a crash can never leave it posted but not re-armed."""
    done = await session.execute(
        update(Reminder)
        .where(Reminder.id == reminder_id, Reminder.state == CLAIMED, Reminder.claimed_by == instance)
        .values(state=PENDING, due_at=due_at, posted_at=now, message_ts=message_ts, claimed_by=None, claimed_at=None)
    )
    return done.rowcount == 1


async def release(session: AsyncSession, reminder_id: int, *, instance: str) -> None:
    """Give a claim back after a failed post. It stays a claim, but one already stale, so
    the next run looks in the thread first: the post may have reached Slack anyway."""
    await session.execute(
        update(Reminder)
        .where(Reminder.id == reminder_id, Reminder.state == CLAIMED, Reminder.claimed_by == instance)
        .values(claimed_by=None, claimed_at=LONG_AGO)
    )


LONG_AGO = datetime(2000, 1, 1, tzinfo=timezone.utc)
