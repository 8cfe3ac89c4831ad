"""Heads-up, started and ended reminders for maintenance windows, each posted exactly once.

The store holds one row per reminder; APScheduler only wakes the bot at due times. A row
is claimed atomically before posting; a claim whose process died is taken over after
`STALE_CLAIM`, and the thread is searched for the reminder's metadata tag first so a post
that did reach Slack is not repeated."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from bot.channel import Message, Posted
from bot.context import AppContext
from bot.messages import maintenance as messages
from bot.services.windows import Windows
from store import reminders as reminder_store
from store.models import MaintenanceWindow, Reminder
from store.states import ClaimResult, Delivery, ReminderKind, ReminderState, WindowState

log = logging.getLogger(__name__)

STALE_CLAIM = timedelta(minutes=2)
LATE_AFTER = timedelta(minutes=1)  # posted later than this after its due time: say so
LATE_END_LIMIT = timedelta(hours=1)  # a missed "ended" older than this is only recorded
METADATA_EVENT = "sitrep_reminder"


async def run_due_reminders(ctx: AppContext) -> int:
    """Post every due reminder this process can claim; returns how many were posted."""
    now = ctx.clock()
    async with ctx.db.session() as session:
        due = await reminder_store.due(session, now, now - STALE_CLAIM)
    posted = 0
    for reminder in due:
        try:
            posted += await _deliver(ctx, reminder.id)
        except Exception:  # noqa: BLE001 - one bad reminder must not stop the others
            log.exception("reminder %s could not be delivered; it will be retried", reminder.id)
    return posted


async def _deliver(ctx: AppContext, reminder_id: int) -> int:
    now = ctx.clock()
    async with ctx.db.session() as session, session.begin():
        claim = await reminder_store.claim(
            session, reminder_id, instance=ctx.instance_id, now=now, stale_before=now - STALE_CLAIM
        )
    if claim == ClaimResult.NONE:
        return 0  # another process has it
    async with ctx.db.session() as session:
        reminder = await session.get(Reminder, reminder_id)
        window = await reminder_store.get_window(session, reminder.window_id)

    if claim == ClaimResult.STALE:
        found = await _find_posted(ctx, window, reminder.kind)
        if found is not None:
            log.info("reminder %s was already in Slack (%s); not posting it again", reminder_id, found)
            await _finish(ctx, reminder_id, ReminderState.POSTED, message_ts=found)
            await _apply_state(ctx, window, reminder.kind)
            return 0

    decision = decide(window, reminder.kind, due_at=reminder.due_at, now=now)
    if decision == Delivery.SKIP:
        log.info("reminder %s (%s of window %s) skipped: too late to matter", reminder_id, reminder.kind, window.id)
        await _finish(ctx, reminder_id, ReminderState.SKIPPED)
        await _apply_state(ctx, window, reminder.kind)
        return 0

    late = decision == Delivery.LATE
    message = messages.reminder(
        window, reminder.kind, lead_minutes=ctx.settings.sitrep_reminder_lead, late_since=reminder.due_at if late else None
    )
    try:
        ts = await _post(ctx, window, reminder.kind, message)
    except Exception:
        async with ctx.db.session() as session, session.begin():
            await reminder_store.release(session, reminder_id, instance=ctx.instance_id)
        raise
    await _finish(ctx, reminder_id, ReminderState.POSTED, message_ts=ts, late=late)
    await _apply_state(ctx, window, reminder.kind)
    return 1


def decide(window: MaintenanceWindow, kind: str, *, due_at: datetime, now: datetime) -> Delivery:
    """Post it, post it saying it is late, or only record it."""
    if not WindowState(window.state).active:
        return Delivery.SKIP
    if now - due_at <= LATE_AFTER:
        return Delivery.POST
    if kind == ReminderKind.HEADS_UP:
        return Delivery.SKIP if now >= window.start else Delivery.LATE
    if kind == ReminderKind.STARTED:
        return Delivery.LATE if window.end is None or now < window.end else Delivery.SKIP
    return Delivery.LATE if now - window.end < LATE_END_LIMIT else Delivery.SKIP


async def _post(ctx: AppContext, window: MaintenanceWindow, kind: str, message: Message) -> str:
    """In the window's thread (announcing the window first if that never worked), broadcast,
    tagged so a retry can tell it already reached Slack."""
    return await Windows(ctx).post_in_thread(
        window.id,
        message,
        broadcast=True,
        metadata={"event_type": METADATA_EVENT, "event_payload": {"window_id": window.id, "kind": kind}},
    )


async def _find_posted(ctx: AppContext, window: MaintenanceWindow, kind: str) -> str | None:
    """The ts of this reminder if it is already in the window's thread (tagged by metadata)."""
    if not window.message_ts:
        return None
    at = Posted(window.channel_id or ctx.settings.sitrep_channel, window.message_ts)
    return await ctx.channel.find_reply(at, METADATA_EVENT, {"window_id": window.id, "kind": kind})


async def _finish(ctx: AppContext, reminder_id: int, state: str, *, message_ts: str | None = None, late: bool = False) -> None:
    async with ctx.db.session() as session, session.begin():
        await reminder_store.finish(
            session, reminder_id, instance=ctx.instance_id, state=state, now=ctx.clock(), message_ts=message_ts, late=late
        )


async def _apply_state(ctx: AppContext, window: MaintenanceWindow, kind: str) -> None:
    """Scheduled → In progress → Completed, shown on the announcement."""
    new_state = ReminderKind(kind).moves_window_to
    if new_state is None:
        return
    async with ctx.db.session() as session, session.begin():
        stored = await reminder_store.get_window(session, window.id)
        if stored is None or not WindowState(stored.state).can_become(new_state):
            return
        stored.state = new_state
        stored.updated_at = ctx.clock()
    await ctx.channel.quietly(
        lambda: Windows(ctx).refresh_announcement(window.id),
        what=f"could not refresh the announcement of window {window.id}",
    )
