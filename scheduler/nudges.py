"""Delivering an incident's update nudge (planned by `bot.services.nudges`). The row was
claimed by `scheduler.reminders`; here it is posted in the thread and re-armed for the next
quiet interval in the same write, or closed once the incident is resolved."""

from __future__ import annotations

import logging

from bot.channel import Posted
from bot.context import AppContext
from bot.messages import incident as messages
from bot.outbox import Priority
from bot.services.nudges import next_nudge_at
from store import incidents as incident_store
from store import reminders as reminder_store
from store.models import Reminder
from store.states import ClaimResult, ReminderState

log = logging.getLogger(__name__)

METADATA_EVENT = "sitrep_nudge"


def _tag(reminder: Reminder) -> dict:
    """One tag per interval: a retry finds this interval's nudge, not the last one."""
    return {"incident_id": reminder.incident_id, "due": reminder.due_at.isoformat()}


async def deliver_nudge(ctx: AppContext, reminder: Reminder, claim: ClaimResult) -> int:
    """Post this interval's nudge (unless a stale claim already did), then re-arm."""
    now = ctx.clock()
    async with ctx.db.session() as session:
        incident = await incident_store.get_incident(session, reminder.incident_id)
        # The last person who updated it, else the declarer.
        who = await incident_store.last_updater(session, reminder.incident_id) if incident is not None else None
    minutes = ctx.settings.sitrep_update_nudge
    next_at = next_nudge_at(incident, minutes=minutes, now=now) if incident is not None else None
    if next_at is None or incident.message_ts is None:
        # Resolved, nudges turned off, or never announced: nothing to nudge in.
        await _close(ctx, reminder.id, ReminderState.SKIPPED)
        return 0
    at = Posted(incident.channel_id, incident.message_ts)
    if reminder.due_at <= incident.updated_at:
        # An update landed after the claim: the quiet interval it was for never ended.
        await _rearm(ctx, reminder.id, next_at, None)
        return 0
    ts = None
    if claim == ClaimResult.STALE:
        ts = await ctx.channel.find_reply(at, METADATA_EVENT, _tag(reminder))
    posted = 0
    if ts is None:
        message = messages.nudge(incident, who or incident.declared_by, now - incident.updated_at)
        try:
            ts = await ctx.channel.reply(
                at,
                message,
                metadata={"event_type": METADATA_EVENT, "event_payload": _tag(reminder)},
                priority=Priority.HEADS_UP,  # minutes to spare, like a heads-up
            )
        except Exception:
            async with ctx.db.session() as session, session.begin():
                await reminder_store.release(session, reminder.id, instance=ctx.instance_id)
            raise
        posted = 1
    await _rearm(ctx, reminder.id, next_at, ts)
    return posted


async def _rearm(ctx: AppContext, reminder_id: int, due_at, ts: str | None) -> None:
    async with ctx.db.session() as session, session.begin():
        await reminder_store.rearm(
            session, reminder_id, instance=ctx.instance_id, due_at=due_at, now=ctx.clock(), message_ts=ts
        )


async def _close(ctx: AppContext, reminder_id: int, state: str) -> None:
    async with ctx.db.session() as session, session.begin():
        await reminder_store.finish(session, reminder_id, instance=ctx.instance_id, state=state, now=ctx.clock())
