"""Planning a window's reminders: which are due when, kept in step with its times. The
scheduler (`scheduler/reminders.py`) delivers them; this side only writes rows and asks the
context to wake the scheduler."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.context import AppContext
from store import reminders as reminder_store
from store.models import MaintenanceWindow, Reminder
from store.states import ReminderKind, ReminderState, WindowState


def desired_due_times(
    window: MaintenanceWindow, *, lead_minutes: int, now: datetime, overrun_minutes: int = 0
) -> dict[ReminderKind, datetime]:
    """When each reminder of a window is due. No heads-up when the lead is 0 or when the
    window was scheduled inside the lead (the announcement itself is the heads-up). The
    overrun prompt only for a window longer than its warning, so it asks while it runs."""
    due = {ReminderKind.STARTED: window.start}
    if window.end is not None:  # the status page's in-progress list has no end
        due[ReminderKind.ENDED] = window.end
        overrun = window.end - timedelta(minutes=overrun_minutes)
        if overrun_minutes > 0 and overrun > window.start:
            due[ReminderKind.OVERRUN] = overrun
    if lead_minutes > 0:
        heads_up = window.start - timedelta(minutes=lead_minutes)
        if heads_up > now:
            due[ReminderKind.HEADS_UP] = heads_up
    return due


async def schedule_window_reminders(ctx: AppContext, window_id: int) -> None:
    """Create or move a window's reminders to match its (possibly edited) times.
    Every change to an existing row is a compare-and-set on the state we read, so a
    reminder being posted by another process at this moment is never reset."""
    now = ctx.clock()
    async with ctx.db.session() as session, session.begin():
        window = await reminder_store.get_window(session, window_id)
        if window is None:
            return
        existing = await reminder_store.reminders_of(session, window_id)
        state = WindowState(window.state)
        if state.rescheduled(window.start, now) != state:
            window.state = state.rescheduled(window.start, now)
        wanted = (
            desired_due_times(
                window,
                lead_minutes=ctx.settings.sitrep_reminder_lead,
                now=now,
                overrun_minutes=ctx.settings.sitrep_overrun_warning,
            )
            if WindowState(window.state).active
            else {}
        )
        for kind in filter(lambda k: k.of_window, ReminderKind):
            row, due_at = existing.get(kind), wanted.get(kind)
            if row is None:
                if due_at is not None:
                    session.add(Reminder(window_id=window_id, kind=kind, due_at=due_at))
                continue
            change = _change_for(row, due_at, now)
            if change:
                await reminder_store.change_if_state(session, row.id, seen_state=row.state, **change)
    await ctx.wake()


def _change_for(row: Reminder, due_at: datetime | None, now: datetime) -> dict:
    """What to write to one reminder row so it matches the window's times."""
    if due_at is None:
        return {"state": ReminderState.CANCELLED} if row.state == ReminderState.PENDING else {}
    if row.due_at == due_at:
        return {"state": ReminderState.PENDING} if row.state == ReminderState.CANCELLED else {}
    if row.state == ReminderState.CLAIMED:
        return {"due_at": due_at, "not_before": None}
    if row.state in (ReminderState.PENDING, ReminderState.CANCELLED) or due_at > now:
        # A window moved later is announced again at its new times.
        return {
            "due_at": due_at,
            "state": ReminderState.PENDING,
            "message_ts": None,
            "posted_at": None,
            "late": False,
            "not_before": None,  # a 429's wait was for the old time
        }
    return {}


async def cancel_window_reminders(ctx: AppContext, window_id: int) -> None:
    async with ctx.db.session() as session, session.begin():
        for row in (await reminder_store.reminders_of(session, window_id)).values():
            if not ReminderKind(row.kind).of_window:
                continue  # its cancel notice stays due
            await reminder_store.change_if_state(session, row.id, seen_state=ReminderState.PENDING, state=ReminderState.CANCELLED)
    await ctx.wake()
