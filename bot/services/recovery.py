"""Crash recovery: no draft stays "sending".

Every instance beats a heartbeat row on the database's clock. A draft records which
instance sends it; when that instance is gone (no heartbeat for `HEARTBEAT_MISSES` beats,
or it stopped cleanly with the send unfinished) the draft becomes "outcome unknown" — the
process may have died before or after the upstream acted on it — and its person is told,
with the same choices as a lost reply (`bot.errors.SubmissionUnknown`). The move is a
compare-and-set, so with several replicas exactly one tells the person."""

from __future__ import annotations

import logging
from datetime import timedelta

from bot.context import AppContext
from bot.errors import FeatureDisabled, SubmissionUnknown
from bot.services.base import FeatureService
from bot.services.drafts import UnknownChoices
from bot.services.incidents import IncidentService
from bot.services.maintenance import MaintenanceService
from store import drafts as draft_store
from store import instances
from store.models import Draft
from store.states import DraftKind

log = logging.getLogger(__name__)

#: Beats an instance may miss before it counts as gone (one late beat is not a death).
HEARTBEAT_MISSES = 3
#: Rows of instances silent this long are deleted.
FORGET_AFTER = timedelta(days=1)


def stale_after(ctx: AppContext) -> timedelta:
    return timedelta(seconds=ctx.settings.sitrep_heartbeat * HEARTBEAT_MISSES)


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
    number of drafts this instance took over."""
    async with ctx.db.session() as session:
        cutoff = await instances.live_cutoff(session, stale_after(ctx))
        orphans = await draft_store.orphaned(session, live_since=cutoff)
    taken = 0
    for draft in orphans:
        async with ctx.db.session() as session, session.begin():
            won = await draft_store.mark_unknown(session, draft, now=ctx.clock())
        if not won:
            continue  # another replica took it
        taken += 1
        log.warning("draft %s (%s) was left sending by instance %s, which is gone: outcome unknown",
                    draft.id, draft.kind, draft.sent_by or "(none)")
        await _tell(ctx, draft)
    async with ctx.db.session() as session, session.begin():
        await instances.prune(session, FORGET_AFTER)
    return taken


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
    if ctx.notify_unknown is None:
        log.error("draft %s is outcome unknown, but nothing is wired to tell %s", draft.id, draft.user_id)
        return
    try:
        await ctx.notify_unknown(unknown_error(ctx, draft), draft.user_id, draft.channel_id)
    except Exception:  # noqa: BLE001 - one person's notice must not stop the others'
        log.exception("could not tell %s that draft %s is outcome unknown", draft.user_id, draft.id)
