"""Delivering an incident's update nudge (planned by `bot.services.nudges`). The row was
claimed by `scheduler.reminders`; here it is posted in the thread and re-armed for the next
quiet interval in the same write, or closed once the incident is resolved."""

from __future__ import annotations

import logging
from datetime import timedelta

from bot.context import AppContext
from bot.messages import incident as messages
from bot.services.nudges import next_nudge_at
from bot.slack import posts
from bot.slack.channel import Posted
from bot.slack.outbox import Priority
from bot.slack.posts import Post, PostTag, RowClaim
from store import incidents as incident_store
from store import reminders as reminder_store
from store.models import Reminder
from store.reminders import Claim
from store.states import ReminderKind

log = logging.getLogger(__name__)


def _tag(reminder: Reminder) -> dict:
    """One tag per interval: a retry finds this interval's nudge, not the last one."""
    return {"incident_id": reminder.incident_id, "due": reminder.due_at.isoformat()}


async def deliver_nudge(ctx: AppContext, reminder: Reminder, claim: Claim) -> int:
    """Post this interval's nudge (unless a stale claim already did), re-armed for the next
    interval in the write that records it; a 429 hands it back with a "not before"."""
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
        await RowClaim(ctx, reminder.id, claim).skip()
        return 0
    at = Posted(incident.channel_id, incident.message_ts)
    if reminder.due_at <= incident.updated_at <= ctx.clock():
        # An update landed after the claim: the quiet interval it was for never ended. (One
        # stamped later than now was made before the clock stepped back, not after the claim.)
        await RowClaim(ctx, reminder.id, claim, rearm_at=next_at).skip()
        return 0
    # At least the interval: a last update stamped while the clock ran ahead is no younger.
    quiet = max(judged - incident.updated_at, timedelta(minutes=minutes))
    message = messages.nudge(incident, who or incident.declared_by, quiet)
    post = Post(PostTag.NUDGE, _tag(reminder), message, thread=at, priority=Priority.HEADS_UP, hand_back=True)
    return (await posts.post_once(ctx, post, RowClaim(ctx, reminder.id, claim, rearm_at=next_at))).posted


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
