"""Update nudges: an open incident quiet for SITREP_UPDATE_NUDGE minutes is nudged in its
thread, again after each further quiet interval, never after resolve. Each incident has one
`Reminder` row of kind `nudge`: the scheduler claims it like a window's reminder (so each
interval is nudged exactly once across replicas and restarts) and re-arms it for the next
interval in the same write that records the post. This side only moves the row."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.context import AppContext
from store import incidents as incident_store
from store import reminders as reminder_store
from store.models import Incident, Reminder
from store.states import ReminderKind, ReminderState


def next_nudge_at(incident: Incident, *, minutes: int, now: datetime) -> datetime | None:
    """The first end of a quiet interval after `now`, counted from the last update
    (or the declaration); None when nudges are off or the incident is resolved. A last update
    later than `now` (the clock stepped back since) counts from `now`: the quiet interval is
    a duration, never pushed out by the step."""
    if minutes <= 0 or not incident.is_open:
        return None
    interval = timedelta(minutes=minutes)
    due = min(incident.updated_at, now) + interval
    if due <= now:
        due += interval * ((now - due) // interval + 1)
    return due


async def plan_nudge(ctx: AppContext, incident_id: int) -> None:
    """After a declaration, an update or the resolution: the nudge counts from now, or
    stops. Compare-and-set on the state read, so a nudge being posted is never reset."""
    now = ctx.clock()
    async with ctx.db.session() as session, session.begin():
        incident = await incident_store.get_incident(session, incident_id)
        if incident is None:
            return
        due_at = next_nudge_at(incident, minutes=ctx.settings.sitrep_update_nudge, now=now)
        row = await reminder_store.nudge_of(session, incident_id)
        if row is None:
            if due_at is not None:
                session.add(Reminder(incident_id=incident_id, kind=ReminderKind.NUDGE, due_at=due_at))
        elif due_at is None:
            if row.state == ReminderState.PENDING:
                await reminder_store.change_if_state(session, row.id, seen_state=row.state, state=ReminderState.CANCELLED)
        elif row.state == ReminderState.CLAIMED:
            await reminder_store.change_if_state(session, row.id, seen_state=row.state, due_at=due_at, not_before=None)
        else:
            await reminder_store.change_if_state(
                session, row.id, seen_state=row.state, due_at=due_at, state=ReminderState.PENDING, not_before=None
            )
    await ctx.wake()
