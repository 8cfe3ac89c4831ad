"""Crash recovery: no draft stays "sending", nothing stored stays unannounced.

Every instance beats a heartbeat row on the database's clock. A draft records which
instance sends it; when that instance is gone (no heartbeat for `HEARTBEAT_MISSES` beats,
or it stopped cleanly with the send unfinished) the draft becomes "outcome unknown" — the
process may have died before or after the upstream acted on it — and its person is told,
with the same choices as a lost reply (`bot.errors.SubmissionUnknown`). The move is a
compare-and-set, so with several replicas exactly one tells the person.

A draft whose send got as far as storing its incident or window (the record names the draft)
is not "unknown": it is done. The record is announced if its process died before posting,
and the person is told what was made, as if the answer had come. Incidents and windows whose
first announcement was claimed by an instance now gone are announced by the next pass
(claimed, so exactly once across replicas; the channel is searched first for a post that
did reach Slack)."""

from __future__ import annotations

import logging
from datetime import timedelta

from bot.context import AppContext
from bot.errors import FeatureDisabled, SubmissionUnknown
from bot.services.base import FeatureService
from bot.services.drafts import UnknownChoices, write_unsettled
from bot.services.incidents import IncidentService
from bot.services.maintenance import MaintenanceService
from bot.services.outcomes import Outcome
from bot.services.windows import Windows
from bot.slack.channel import Posted
from store import drafts as draft_store
from store import instances
from store import reminders as reminder_store
from store.announcements import unannounced_by_gone
from store.models import Draft, Incident, MaintenanceWindow
from store.states import DraftKind

log = logging.getLogger(__name__)

HEARTBEAT_MISSES = instances.HEARTBEAT_MISSES
#: Rows of instances silent this long are deleted.
FORGET_AFTER = timedelta(days=1)


def stale_after(ctx: AppContext) -> timedelta:
    return instances.gone_after(ctx.settings.sitrep_heartbeat)


async def beat(ctx: AppContext) -> None:
    """This instance is alive (database clock)."""
    async with ctx.db.session() as session, session.begin():
        await instances.beat(session, ctx.instance_id)


async def stop_beating(ctx: AppContext) -> None:
    """A clean stop, after the drain: what this instance still had is for the others now."""
    async with ctx.db.session() as session, session.begin():
        await instances.forget(session, ctx.instance_id)


async def recover_orphans(ctx: AppContext) -> int:
    """Turn drafts whose sender is gone into "outcome unknown" and tell their people; the
    number of drafts this instance took over. First, the ends of this instance's own sends
    that the database missed while it was out (`drafts.write_unsettled`)."""
    await write_unsettled(ctx)
    async with ctx.db.session() as session:
        cutoff = await instances.live_cutoff(session, stale_after(ctx))
        orphans = await draft_store.orphaned(session, live_since=cutoff)
    taken = 0
    for draft in orphans:
        gone = draft.sent_by
        async with ctx.db.session() as session, session.begin():
            won = await draft_store.take_over(session, draft, instance=ctx.instance_id, now=ctx.clock())
        if not won:
            continue  # another replica took it
        taken += 1
        # Ours now, still "sending": the person is told first, the state moves after, so a
        # crash in between leaves it to the next recovery (told twice, never not at all).
        draft.sent_by = ctx.instance_id
        if draft.kind in DraftKind.__members__.values() and await _finish_made(ctx, draft, gone=gone, live_since=cutoff):
            continue
        log.warning(
            "draft %s (%s) was left sending by instance %s, which is gone: outcome unknown",
            draft.id,
            draft.kind,
            gone or "(none)",
        )
        await _tell(ctx, draft)
        async with ctx.db.session() as session, session.begin():
            await draft_store.mark_unknown(session, draft, now=ctx.clock())
    async with ctx.db.session() as session, session.begin():
        await instances.prune(session, FORGET_AFTER)
    return taken


RECOVERED_NOTE = "sitrep restarted while it was finishing this; it went through, and this is its answer."


async def _finish_made(ctx: AppContext, draft: Draft, *, gone: str | None, live_since) -> bool:
    """The draft's incident or window was stored before its process died: announce it if it
    never was, mark the draft done and tell the person. False when nothing was stored."""
    kind = DraftKind(draft.kind)
    if kind.feature == "incident":
        service = IncidentService(ctx)
        made = await service.made_by_draft(draft.id)
        announce = service.recover_announcement
    else:
        windows = Windows(ctx)
        made = await windows.made_by_draft(draft.id)
        announce = windows.recover_announcement
    if made is None:
        return False
    log.warning(
        "draft %s (%s) was left sending by instance %s, which is gone; it had made %s #%s: done",
        draft.id,
        draft.kind,
        gone or "(none)",
        kind.feature,
        made.id,
    )
    record = await announce(made.id, live_since=live_since) or made
    permalink = getattr(record, "permalink", None)
    if permalink is None and record.message_ts:
        permalink = await ctx.channel.permalink(Posted(record.channel_id, record.message_ts))
    outcome = Outcome(kind, record, permalink=permalink, warning=RECOVERED_NOTE)
    try:
        if not await ctx.notify_done(outcome, draft.user_id, draft.channel_id):
            log.error("draft %s is done, but nothing is wired to tell %s", draft.id, draft.user_id)
    except Exception:  # noqa: BLE001 - one person's notice must not stop the others'
        log.exception("could not tell %s that draft %s went through", draft.user_id, draft.id)
    async with ctx.db.session() as session, session.begin():
        await draft_store.mark_done_recovered(session, draft, now=ctx.clock())
    return True


async def recover_announcements(ctx: AppContext) -> int:
    """Announce incidents and windows whose announcement was claimed by an instance now gone
    (it died between storing and posting); the number this instance announced."""
    async with ctx.db.session() as session:
        cutoff = await instances.live_cutoff(session, stale_after(ctx))
        incident_ids = list((await session.execute(unannounced_by_gone(Incident, live_since=cutoff))).scalars())
        window_ids = list((await session.execute(unannounced_by_gone(MaintenanceWindow, live_since=cutoff))).scalars())
    announced = 0
    incidents = IncidentService(ctx)
    for incident_id in incident_ids:
        done = await incidents.recover_announcement(incident_id, live_since=cutoff)
        announced += done is not None and done.message_ts is not None
    windows = Windows(ctx)
    for window_id in window_ids:
        done = await windows.recover_announcement(window_id, live_since=cutoff)
        announced += done is not None and done.message_ts is not None
    if announced:
        log.warning("announced %s incident(s) or window(s) whose process died before posting", announced)
    return announced


async def expire_gone_claims(ctx: AppContext) -> int:
    """Reminders and notices claimed by an instance now gone are made stale at once, for the
    reminder pass to take over (after looking in Slack) without waiting `STALE_CLAIM`; how many."""
    async with ctx.db.session() as session, session.begin():
        cutoff = await instances.live_cutoff(session, stale_after(ctx))
        expired = await reminder_store.expire_claims_of_gone(session, live_since=cutoff)
    if expired:
        log.warning("%s reminder(s) or notice(s) were claimed by an instance now gone; posting them", expired)
    return expired


def _service(ctx: AppContext, kind: DraftKind) -> FeatureService:
    return IncidentService(ctx) if kind.feature == "incident" else MaintenanceService(ctx)


def unknown_error(ctx: AppContext, draft: Draft) -> SubmissionUnknown:
    """The same choices the person gets for a lost reply, for this draft's kind."""
    kind = DraftKind(draft.kind)
    service = _service(ctx, kind)
    try:
        choices = service.unknown_choices(kind)
        summary = service.form_from_payload(kind, draft.payload).summary()
    except FeatureDisabled:  # its API was unconfigured meanwhile: only Edit can help
        choices, summary = UnknownChoices(service="the upstream", can_check=False, can_link=False), ""
    return SubmissionUnknown(
        draft_id=draft.id,
        kind=kind,
        service=choices.service,
        summary=summary,
        can_check=choices.can_check,
        can_link=choices.can_link,
        reason="sitrep stopped mid-call",
    )


async def _tell(ctx: AppContext, draft: Draft) -> None:
    if draft.kind not in DraftKind.__members__.values():
        return
    try:
        if not await ctx.notify_unknown(unknown_error(ctx, draft), draft.user_id, draft.channel_id):
            log.error("draft %s is outcome unknown, but nothing is wired to tell %s", draft.id, draft.user_id)
    except Exception:  # noqa: BLE001 - one person's notice must not stop the others'
        log.exception("could not tell %s that draft %s is outcome unknown", draft.user_id, draft.id)
