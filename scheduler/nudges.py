"""Delivering an incident's update nudge (planned by `bot.services.nudges`). The row was
claimed by `scheduler.reminders`; here it is posted in the thread and re-armed for the next
quiet interval in the same write, or closed once the incident is resolved."""

from __future__ import annotations

import logging
from datetime import timedelta

from bot.context import AppContext
from bot.messages import incident as messages
from bot.services.nudges import next_nudge_at
from bot.slack.channel import ClaimLost, Posted
from bot.slack.outbox import Priority, RateLimited
from store import incidents as incident_store
from store import reminders as reminder_store
from store.models import Reminder
from store.reminders import Claim
from store.states import ClaimResult, ReminderKind, ReminderState

log = logging.getLogger(__name__)

METADATA_EVENT = "sitrep_nudge"


def _tag(reminder: Reminder) -> dict:
    """One tag per interval: a retry finds this interval's nudge, not the last one."""
    return {"incident_id": reminder.incident_id, "due": reminder.due_at.isoformat()}


async def deliver_nudge(ctx: AppContext, reminder: Reminder, claim: Claim) -> int:
    """Post this interval's nudge (unless a stale claim already did), then re-arm."""
    now = ctx.clock()
    judged = ctx.due_clock.reading().judged_at(reminder.due_at)  # the quiet time passed, not stepped
    async with ctx.db.session() as session:
        incident = await incident_store.get_incident(session, reminder.incident_id)
        # The last person who updated it, else the declarer.
        who = await incident_store.last_updater(session, reminder.incident_id) if incident is not None else None
    minutes = ctx.settings.sitrep_update_nudge
    next_at = next_nudge_at(incident, minutes=minutes, now=now) if incident is not None else None
    if next_at is None or incident.message_ts is None:
        # Resolved, nudges turned off, or never announced: nothing to nudge in.
        await _close(ctx, reminder.id, claim, ReminderState.SKIPPED)
        return 0
    at = Posted(incident.channel_id, incident.message_ts)
    if reminder.due_at <= incident.updated_at <= ctx.clock():
        # An update landed after the claim: the quiet interval it was for never ended. (One
        # stamped later than now was made before the clock stepped back, not after the claim.)
        await _rearm(ctx, reminder.id, claim, next_at, None)
        return 0
    ts = None
    if claim.result == ClaimResult.STALE:
        ts = await ctx.channel.find_reply(at, METADATA_EVENT, _tag(reminder))
    posted = 0
    if ts is None:

        async def guard() -> bool:  # fencing: only while the claim is still ours
            async with ctx.db.session() as session, session.begin():
                return await reminder_store.confirm(session, reminder.id, token=claim.token)

        # At least the interval: a last update stamped while the clock ran ahead is no younger.
        quiet = max(judged - incident.updated_at, timedelta(minutes=minutes))
        message = messages.nudge(incident, who or incident.declared_by, quiet)
        try:
            ts = await ctx.channel.reply(
                at,
                message,
                metadata={"event_type": METADATA_EVENT, "event_payload": _tag(reminder)},
                priority=Priority.HEADS_UP,  # minutes to spare, like a heads-up
                guard=guard,
                hand_back=True,
            )
        except RateLimited as exc:
            # Nothing posted: pending again, not before Retry-After, the claim not held meanwhile.
            async with ctx.db.session() as session, session.begin():
                await reminder_store.release_until(
                    session, reminder.id, token=claim.token, not_before=ctx.clock() + timedelta(seconds=exc.retry_after)
                )
            await ctx.wake()
            return 0
        except ClaimLost:
            log.warning("nudge %s was taken over by another process before its post; not posting it", reminder.id)
            return 0
        except Exception:
            async with ctx.db.session() as session, session.begin():
                await reminder_store.release(session, reminder.id, token=claim.token)
            raise
        posted = 1
    await _rearm(ctx, reminder.id, claim, next_at, ts)
    return posted


async def after_step_back(ctx: AppContext) -> None:
    """The clock stepped back: nudges planned on it as it read before (an update stamped
    while it ran a day ahead) are due within one quiet interval of now, not a day out."""
    minutes = ctx.settings.sitrep_update_nudge
    if minutes <= 0:
        return
    async with ctx.db.session() as session, session.begin():
        moved = await reminder_store.pull_in(session, ReminderKind.NUDGE, latest=ctx.clock() + timedelta(minutes=minutes))
    if moved:
        log.info("the clock stepped back: %s nudges planned before the step come within %s minutes", moved, minutes)


async def _rearm(ctx: AppContext, reminder_id: int, claim: Claim, due_at, ts: str | None) -> None:
    async with ctx.db.session() as session, session.begin():
        await reminder_store.rearm(session, reminder_id, token=claim.token, due_at=due_at, now=ctx.clock(), message_ts=ts)


async def _close(ctx: AppContext, reminder_id: int, claim: Claim, state: str) -> None:
    async with ctx.db.session() as session, session.begin():
        await reminder_store.finish(session, reminder_id, token=claim.token, state=state, now=ctx.clock())
