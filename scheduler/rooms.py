"""Archiving an incident's own channel SITREP_ARCHIVE_AFTER hours after its resolution
(planned by `bot.services.rooms`). The row was claimed by `scheduler.reminders`, so one
process archives it; archiving twice is harmless anyway (`already_archived` counts as done),
so a stale claim simply archives again. Slack refusing is told to the declarer, privately,
and the row is closed: asking again would be refused again."""

from __future__ import annotations

import logging

from bot.clients.slack import tell_user
from bot.context import AppContext
from bot.messages import incident as messages
from bot.slack.posts import RowClaim
from bot.slack.rooms import TRANSIENT, Rooms
from store import incidents as incident_store
from store.models import Reminder
from store.reminders import Claim

log = logging.getLogger(__name__)


async def deliver_archive(ctx: AppContext, reminder: Reminder, claim: Claim) -> int:
    """Archive the room; 1 when it is archived now, 0 when there was nothing to do or Slack refused."""
    async with ctx.db.session() as session:
        incident = await incident_store.get_incident(session, reminder.incident_id)
    if incident is None or not incident.room_channel_id:
        await RowClaim(ctx, reminder.id, claim).skip()
        return 0
    try:
        refused = await Rooms(ctx.slack).archive(incident.room_channel_id)
    except Exception:
        # Slack did not answer: give the claim back, the next pass archives it.
        await RowClaim(ctx, reminder.id, claim).release(posted_maybe=True)
        raise
    if refused in TRANSIENT:
        # Slack could not do it just now: give the claim back, the next pass asks again.
        await RowClaim(ctx, reminder.id, claim).release(posted_maybe=False)
        return 0
    if refused is None:
        await RowClaim(ctx, reminder.id, claim).record(None)
        log.info("incident #%s: archived its channel %s", incident.id, incident.room_channel_id)
        return 1
    await RowClaim(ctx, reminder.id, claim).skip()
    text, blocks = messages.room_archive_refused(incident, refused)
    await tell_user(
        ctx.slack,
        user_id=incident.declared_by,
        channel_id=incident.room_channel_id,
        text=text,
        blocks=blocks,
        sandbox=ctx.settings.sitrep_sandbox,
    )
    return 0
