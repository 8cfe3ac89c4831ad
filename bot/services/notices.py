"""Resolve and cancel notices, posted exactly once even when the process dies between the
state write and the post. The notice is a `Reminder` row (kind `resolved` of an incident,
`cancelled` of a window) written in the same transaction as the resolution or cancellation, so the post is never lost with the process: the resolver
claims it and posts at once; a claim left by a process now gone is taken over by the
scheduler (the recovery pass makes such claims stale), which first looks in the thread for
the tagged post that may have reached Slack."""

from __future__ import annotations

import logging

from bot.context import AppContext
from bot.slack.channel import ClaimLost, Message, Posted
from store import reminders as reminder_store
from store.dbclock import db_utc_now
from store.models import Reminder
from store.reminders import Claim
from store.states import ClaimResult, ReminderState

log = logging.getLogger(__name__)

NOTICE_EVENT = "sitrep_notice"


def notice_tag(*, kind: str, incident_id: int | None = None, window_id: int | None = None) -> dict:
    """The metadata payload that finds this notice in the thread again."""
    owner = {"incident_id": incident_id} if incident_id is not None else {"window_id": window_id}
    return owner | {"kind": str(kind)}


async def post_notice(ctx: AppContext, reminder_id: int, claim: Claim, at: Posted, message: Message, tag: dict) -> str | None:
    """Post the claimed notice in the thread (broadcast), unless a stale claim's post is
    already there; record it. None when the claim was taken over before the post."""
    ts = None
    if claim.result == ClaimResult.STALE:
        ts = await ctx.channel.find_reply(at, NOTICE_EVENT, tag)
        if ts is not None:
            log.info("notice %s was already in Slack (%s); not posting it again", reminder_id, ts)
    if ts is None:

        async def guard() -> bool:  # fencing: only while the claim is still ours
            async with ctx.db.session() as session, session.begin():
                return await reminder_store.confirm(session, reminder_id, token=claim.token)

        try:
            ts = await ctx.channel.reply(
                at, message, broadcast=True, metadata={"event_type": NOTICE_EVENT, "event_payload": tag}, guard=guard
            )
        except ClaimLost:
            log.warning("notice %s was taken over by another process before its post; not posting it", reminder_id)
            return None
        except BaseException:
            async with ctx.db.session() as session, session.begin():
                await reminder_store.release(session, reminder_id, token=claim.token)
            raise
    async with ctx.db.session() as session, session.begin():
        await reminder_store.finish(
            session, reminder_id, token=claim.token, state=ReminderState.POSTED, now=ctx.clock(), message_ts=ts
        )
    return ts


def held_notice(ctx: AppContext, **owner) -> Reminder:
    """The notice row to add with the resolution or cancellation, claimed by this process
    already (token 1), so it posts it at once and no scheduler pass takes it meanwhile; if
    this process dies first, the recovery makes the claim stale and the scheduler posts it."""
    return Reminder(
        **owner,
        due_at=ctx.clock(),
        state=ReminderState.CLAIMED,
        claimed_by=ctx.instance_id,
        claimed_at=db_utc_now(),
        claim_token=HELD_TOKEN,
    )


HELD_TOKEN = 1
HELD = Claim(ClaimResult.FRESH, HELD_TOKEN)
