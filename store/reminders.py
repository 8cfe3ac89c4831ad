"""Reminder rows: the truth about what is due and what was posted. Claims are atomic
compare-and-set updates, so two processes sharing one database never both post; each claim
bumps a fencing token that every later write (and the check just before a post) compares,
so a process whose claim was taken over can neither post nor record. Claim ages are read
on the database's clock; due times on the bot's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import case, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from store.dbclock import db_utc_now
from store.instances import live_ids
from store.models import MaintenanceWindow, Reminder
from store.states import ClaimResult, ReminderKind, ReminderState, WindowState

STALE_CLAIM = timedelta(minutes=2)
"""A claim older than this (on the database's clock) belongs to a process presumed dead and
may be taken over. Every Slack call has a shorter timeout, and a claim is renewed just
before its post, so a live process never loses a claim mid-post."""

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
    rows = await session.execute(select(Reminder).where(Reminder.incident_id == incident_id, Reminder.kind == ReminderKind.NUDGE))
    return rows.scalars().first()


async def row_of(session: AsyncSession, incident_id: int, kind: str) -> Reminder | None:
    """An incident's one row of `kind` (its postmortem share), if it has one."""
    rows = await session.execute(select(Reminder).where(Reminder.incident_id == incident_id, Reminder.kind == kind))
    return rows.scalars().first()


async def expire_claims_of_gone(session: AsyncSession, *, live_since: datetime) -> int:
    """Claims held by instances with no heartbeat since `live_since` are stale at once: the
    next pass takes them over (looking in Slack first) instead of waiting `STALE_CLAIM`."""
    done = await session.execute(
        update(Reminder)
        .where(Reminder.state == CLAIMED, Reminder.claimed_by.not_in(live_ids(live_since)), Reminder.claimed_at > LONG_AGO)
        .execution_options(synchronize_session=False)
        .values(claimed_at=LONG_AGO)
    )
    return done.rowcount


#: The compare-and-set UPDATEs below run in short sessions holding no objects they would
#: change, so they are Core statements on the tables: the ORM's bulk-update path (evaluating
#: the WHERE against the session) was a tenth of a reminder's CPU.
#: The reminder path runs them on a bare connection (`Executor`), without a session at all.
Executor = AsyncSession | AsyncConnection
_rows = Reminder.__table__
_windows = MaintenanceWindow.__table__


async def get_window(session: AsyncSession, window_id: int) -> MaintenanceWindow | None:
    return await session.get(MaintenanceWindow, window_id)


async def read_window(session: Executor, window_id: int) -> MaintenanceWindow | None:
    """The window as a detached copy (changing it changes nothing), read with one Core
    statement: the reminder path only reads it, and the ORM's loading and identity map
    cost more than the read itself."""
    row = (await session.execute(select(_windows).where(_windows.c.id == window_id))).first()
    return MaintenanceWindow(**row._mapping) if row is not None else None


async def change_if_state(session: AsyncSession, reminder_id: int, *, seen_state: str, **values) -> bool:
    """Compare-and-set: change a reminder only if nobody moved it on since we read it
    (a claim taken meanwhile by another process wins)."""
    done = await session.execute(
        update(Reminder).where(Reminder.id == reminder_id, Reminder.state == seen_state).values(**values)
    )
    return done.rowcount == 1


async def due(session: AsyncSession, now: datetime, *, stale_after: timedelta) -> list[Reminder]:
    """Pending reminders that are due (and past any "not before" a 429 set), and claims
    never completed: older than `stale_after` on the database's clock."""
    query = (
        select(Reminder)
        .where(
            or_(
                (Reminder.state == PENDING)
                & (Reminder.due_at <= now)
                & (Reminder.not_before.is_(None) | (Reminder.not_before <= now)),
                (Reminder.state == CLAIMED) & (Reminder.claimed_at < db_utc_now(-stale_after)),
            )
        )
        .order_by(Reminder.due_at, Reminder.id)
    )
    return list((await session.execute(query)).scalars())


async def overdue_count(session: AsyncSession, *, due_before: datetime) -> int:
    """Reminders not yet posted (pending, or claimed and not finished) whose due time is
    before `due_before`: what an operator alerts on when no replica delivers."""
    query = select(func.count()).where(Reminder.state.in_((PENDING, CLAIMED)), Reminder.due_at < due_before)
    return int((await session.execute(query)).scalar() or 0)


async def next_due_at(session: AsyncSession, *, stale_claim: timedelta | None = None) -> datetime | None:
    """When the earliest pending reminder may go (its due time, or its "not before"); with
    `stale_claim`, also when the oldest claim a process holds now would go stale (a claim
    given back after a failed post is left to the sweep, so a Slack that keeps refusing is
    not retried in a tight loop). Claim times are on the database's clock, due times on the
    bot's: close enough to plan a wake-up."""
    wake_at = func.coalesce(Reminder.not_before, Reminder.due_at)
    pending = _aware((await session.execute(select(func.min(wake_at)).where(Reminder.state == PENDING))).scalar())
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


def _aware(value: datetime | str | None) -> datetime | None:
    """Aggregates bypass the column type: SQLite hands back text or a naive UTC datetime."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


@dataclass(frozen=True)
class Claim:
    """A reminder taken by this process: `token` fences every later write and post."""

    result: ClaimResult
    token: int

    def __bool__(self) -> bool:
        return self.result != ClaimResult.NONE


async def claim(session: Executor, reminder: Reminder, *, instance: str, stale_after: timedelta) -> Claim:
    """Take a reminder as read by `due` (compare-and-set on its token): a pending one, or a
    claim older than `stale_after` on the database's clock (STALE: it may be in Slack
    already). Each claim bumps the token, so the process it was taken from is fenced off."""
    token = reminder.claim_token + 1
    claimed = {"state": CLAIMED, "claimed_by": instance, "claimed_at": db_utc_now(), "claim_token": token}
    # The due time too: a window edited meanwhile moves its pending reminders (same token,
    # still pending); a pass that read them due before the edit must not post them now.
    mine = (_rows.c.id == reminder.id) & (_rows.c.claim_token == reminder.claim_token) & (_rows.c.due_at == reminder.due_at)
    taken = await session.execute(update(_rows).where(mine, _rows.c.state == PENDING).values(**claimed))
    if taken.rowcount == 1:
        return Claim(ClaimResult.FRESH, token)
    taken = await session.execute(
        update(_rows).where(mine, _rows.c.state == CLAIMED, _rows.c.claimed_at < db_utc_now(-stale_after)).values(**claimed)
    )
    return Claim(ClaimResult.STALE if taken.rowcount == 1 else ClaimResult.NONE, token)


async def claim_pending(session: Executor, ids: list[int], *, instance: str, now: datetime) -> list[tuple[int, int, datetime]]:
    """Take, in one statement, those of `ids` that are still pending and due (and past any
    "not before"): (id, token, due_at) of each taken. The condition is the due query's, so a
    row claimed, finished or moved to a later time since it was read is left alone, on
    PostgreSQL too (a row another replica changed first is checked again as it now is)."""
    taken = await session.execute(
        update(_rows)
        .where(
            _rows.c.id.in_(ids),
            _rows.c.state == PENDING,
            _rows.c.due_at <= now,
            _rows.c.not_before.is_(None) | (_rows.c.not_before <= now),
        )
        .values(state=CLAIMED, claimed_by=instance, claimed_at=db_utc_now(), claim_token=_rows.c.claim_token + 1)
        .returning(_rows.c.id, _rows.c.claim_token, _rows.c.due_at)
    )
    return [(row.id, row.claim_token, row.due_at) for row in taken]


async def read_windows(session: Executor, ids: list[int]) -> dict[int, MaintenanceWindow]:
    """Several windows as detached copies, in one statement (see `read_window`)."""
    rows = await session.execute(select(_windows).where(_windows.c.id.in_(ids)))
    return {row.id: MaintenanceWindow(**row._mapping) for row in rows}


@dataclass(frozen=True)
class Outcome:
    """What became of one claimed reminder, to be recorded with others (`finish_many`)."""

    reminder_id: int
    token: int
    state: str
    message_ts: str | None = None
    late: bool = False


async def finish_many(session: Executor, outcomes: list[Outcome], *, now: datetime) -> set[int]:
    """`finish` for several claims in one statement; returns the ids that were still ours
    (the others were taken over meanwhile and are left to their new claimant)."""
    if not outcomes:
        return set()

    def per_row(column, value):  # typed, so PostgreSQL is told each value's type
        return case({o.reminder_id: literal(value(o), type_=column.type) for o in outcomes}, value=_rows.c.id)

    done = await session.execute(
        update(_rows)
        .where(or_(*(_ours(o.reminder_id, o.token) for o in outcomes)))
        .values(
            state=per_row(_rows.c.state, lambda o: o.state),
            posted_at=per_row(_rows.c.posted_at, lambda o: now if o.state == POSTED else None),
            message_ts=per_row(_rows.c.message_ts, lambda o: o.message_ts),
            late=per_row(_rows.c.late, lambda o: o.late),
            not_before=None,
        )
        .returning(_rows.c.id)
    )
    return {row.id for row in done}


async def move_windows(session: Executor, ids: list[int], *, to: WindowState, now: datetime) -> list[MaintenanceWindow]:
    """Compare-and-set the windows' state along their allowed moves, without loading them
    first; returns each window moved, as this statement left it (for the parents' edits)."""
    allowed_from = [state for state in WindowState if state.can_become(to)]
    done = await session.execute(
        update(_windows)
        .where(_windows.c.id.in_(ids), _windows.c.state.in_(allowed_from))
        .values(state=to, updated_at=now)
        .returning(*_windows.c)
    )
    return [MaintenanceWindow(**row._mapping) for row in done]


async def release_unattempted(session: Executor, claims: list[tuple[int, int]]) -> None:
    """Give back claims whose posts were never attempted (the pass stopped first): pending
    again at once, as if never claimed."""
    if claims:
        await session.execute(
            update(_rows)
            .where(or_(*(_ours(reminder_id, token) for reminder_id, token in claims)))
            .values(state=PENDING, claimed_by=None, claimed_at=None)
        )


def _ours(reminder_id: int, token: int):
    return (_rows.c.id == reminder_id) & (_rows.c.state == CLAIMED) & (_rows.c.claim_token == token)


async def confirm(session: AsyncSession, reminder_id: int, *, token: int) -> bool:
    """Just before a post: is the claim still ours? If so it is renewed (stamped now on the
    database's clock), so nobody can take it over while the post is under way."""
    done = await session.execute(update(_rows).where(_ours(reminder_id, token)).values(claimed_at=db_utc_now()))
    return done.rowcount == 1


async def finish(
    session: Executor,
    reminder_id: int,
    *,
    token: int,
    state: str,
    now: datetime,
    message_ts: str | None = None,
    late: bool = False,
) -> bool:
    """Complete our own claim; False if it was taken over meanwhile."""
    done = await session.execute(
        update(_rows)
        .where(_ours(reminder_id, token))
        .values(state=state, posted_at=now if state == POSTED else None, message_ts=message_ts, late=late, not_before=None)
    )
    return done.rowcount == 1


async def rearm(
    session: AsyncSession, reminder_id: int, *, token: int, due_at: datetime, now: datetime, message_ts: str | None
) -> bool:
    """Complete our own claim of a repeating reminder (a nudge) by making it pending again
    at its next due time, in one write: a crash can never leave it posted but not re-armed."""
    done = await session.execute(
        update(_rows)
        .where(_ours(reminder_id, token))
        .values(
            state=PENDING, due_at=due_at, posted_at=now, message_ts=message_ts, claimed_by=None, claimed_at=None, not_before=None
        )
    )
    return done.rowcount == 1


async def pull_in(session: AsyncSession, kind: str, *, latest: datetime) -> int:
    """Pending reminders of `kind` due after `latest` become due at `latest` (nudges planned
    while the clock ran ahead: a quiet interval is a duration, never a day)."""
    done = await session.execute(
        update(_rows).where(_rows.c.kind == kind, _rows.c.state == PENDING, _rows.c.due_at > latest).values(due_at=latest)
    )
    return done.rowcount


async def release(session: AsyncSession, reminder_id: int, *, token: int) -> None:
    """Give a claim back after a post that may have reached Slack (a timeout, a dropped
    connection). It stays a claim, but one already stale, so the next run looks in the
    thread first."""
    await session.execute(update(_rows).where(_ours(reminder_id, token)).values(claimed_by=None, claimed_at=LONG_AGO))


async def release_until(session: AsyncSession, reminder_id: int, *, token: int, not_before: datetime) -> bool:
    """Give a claim back that certainly did not post (Slack answered 429): pending again,
    not before `not_before`, so the next wake-up after it posts it and nothing holds the
    claim through the wait (where another replica would take it over and post twice)."""
    done = await session.execute(
        update(_rows)
        .where(_ours(reminder_id, token))
        .values(state=PENDING, not_before=not_before, claimed_by=None, claimed_at=None)
    )
    return done.rowcount == 1


LONG_AGO = datetime(2000, 1, 1, tzinfo=timezone.utc)
