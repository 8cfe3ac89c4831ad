"""Heads-up, started and ended reminders for maintenance windows, each posted exactly once.

The store holds one row per reminder; APScheduler only wakes the bot at due times. A row
is claimed atomically before posting; a claim whose process died is taken over after
`STALE_CLAIM`, and the thread is searched for the reminder's metadata tag first so a post
that did reach Slack is not repeated."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from slack_sdk.errors import SlackApiError

from bot.context import AppContext
from bot.messages import maintenance as messages
from store import reminders as reminder_store
from store.models import MaintenanceWindow, Reminder

log = logging.getLogger(__name__)

HEADS_UP, STARTED, ENDED = "heads_up", "started", "ended"
KINDS = (HEADS_UP, STARTED, ENDED)
STALE_CLAIM = timedelta(minutes=2)
LATE_AFTER = timedelta(minutes=1)  # posted later than this after its due time: say so
LATE_END_LIMIT = timedelta(hours=1)  # a missed "ended" older than this is only recorded
METADATA_EVENT = "sitrep_reminder"
ACTIVE_STATES = ("scheduled", "in_progress")


def desired_due_times(window: MaintenanceWindow, *, lead_minutes: int, now: datetime) -> dict[str, datetime]:
    """When each reminder of a window is due. No heads-up when the lead is 0 or when the
    window was scheduled inside the lead (the announcement itself is the heads-up)."""
    due = {STARTED: window.start}
    if window.end is not None:  # the status page's in-progress list has no end
        due[ENDED] = window.end
    if lead_minutes > 0:
        heads_up = window.start - timedelta(minutes=lead_minutes)
        if heads_up > now:
            due[HEADS_UP] = heads_up
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
        if window.state == "in_progress" and window.start > now:
            window.state = "scheduled"  # moved into the future: it has not started after all
        wanted = (
            desired_due_times(window, lead_minutes=ctx.settings.sitrep_reminder_lead, now=now)
            if window.state in ACTIVE_STATES
            else {}
        )
        for kind in KINDS:
            row, due_at = existing.get(kind), wanted.get(kind)
            if row is None:
                if due_at is not None:
                    session.add(Reminder(window_id=window_id, kind=kind, due_at=due_at))
                continue
            change = _change_for(row, due_at, now)
            if change:
                await reminder_store.change_if_state(session, row.id, seen_state=row.state, **change)
    await _wake(ctx)


def _change_for(row: Reminder, due_at: datetime | None, now: datetime) -> dict:
    """What to write to one reminder row so it matches the window's times."""
    if due_at is None:
        return {"state": reminder_store.CANCELLED} if row.state == reminder_store.PENDING else {}
    if row.due_at == due_at:
        return {"state": reminder_store.PENDING} if row.state == reminder_store.CANCELLED else {}
    if row.state == reminder_store.CLAIMED:
        return {"due_at": due_at}
    if row.state in (reminder_store.PENDING, reminder_store.CANCELLED) or due_at > now:
        # A window moved later is announced again at its new times.
        return {"due_at": due_at, "state": reminder_store.PENDING, "message_ts": None, "posted_at": None, "late": False}
    return {}


async def cancel_window_reminders(ctx: AppContext, window_id: int) -> None:
    async with ctx.db.session() as session, session.begin():
        for row in (await reminder_store.reminders_of(session, window_id)).values():
            await reminder_store.change_if_state(
                session, row.id, seen_state=reminder_store.PENDING, state=reminder_store.CANCELLED
            )
    await _wake(ctx)


async def _wake(ctx: AppContext) -> None:
    if ctx.wake_reminders is not None:
        await ctx.wake_reminders()


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
    if claim is None:
        return 0  # another process has it
    async with ctx.db.session() as session:
        reminder = await session.get(Reminder, reminder_id)
        window = await reminder_store.get_window(session, reminder.window_id)

    if claim == "stale":
        found = await _find_posted(ctx, window, reminder.kind)
        if found is not None:
            log.info("reminder %s was already in Slack (%s); not posting it again", reminder_id, found)
            await _finish(ctx, reminder_id, reminder_store.POSTED, message_ts=found)
            await _apply_state(ctx, window, reminder.kind)
            return 0

    decision = decide(window, reminder.kind, due_at=reminder.due_at, now=now)
    if decision == "skip":
        log.info("reminder %s (%s of window %s) skipped: too late to matter", reminder_id, reminder.kind, window.id)
        await _finish(ctx, reminder_id, reminder_store.SKIPPED)
        ctx.metrics.reminder("skipped")
        await _apply_state(ctx, window, reminder.kind)
        return 0

    late = decision == "late"
    text, blocks = messages.reminder(
        window, reminder.kind, lead_minutes=ctx.settings.sitrep_reminder_lead, late_since=reminder.due_at if late else None
    )
    try:
        ts = await _post(ctx, window, reminder.kind, text, blocks)
    except Exception:
        async with ctx.db.session() as session, session.begin():
            await reminder_store.release(session, reminder_id, instance=ctx.instance_id)
        raise
    await _finish(ctx, reminder_id, reminder_store.POSTED, message_ts=ts, late=late)
    ctx.metrics.reminder(decision if late else "posted", lateness=(now - reminder.due_at).total_seconds())
    await _apply_state(ctx, window, reminder.kind)
    return 1


def decide(window: MaintenanceWindow, kind: str, *, due_at: datetime, now: datetime) -> str:
    """`post`, `late` (post, saying it is late) or `skip` (record only)."""
    if window.state not in ACTIVE_STATES:
        return "skip"
    if now - due_at <= LATE_AFTER:
        return "post"
    if kind == HEADS_UP:
        return "skip" if now >= window.start else "late"
    if kind == STARTED:
        return "late" if window.end is None or now < window.end else "skip"
    return "late" if now - window.end < LATE_END_LIMIT else "skip"


async def _post(ctx: AppContext, window: MaintenanceWindow, kind: str, text: str, blocks: list[dict]) -> str:
    """In the window's thread (announcing the window first if that never worked), broadcast,
    tagged so a retry can tell it already reached Slack."""
    return await _maintenance(ctx).post_in_thread(
        window.id,
        text,
        blocks,
        broadcast=True,
        metadata={"event_type": METADATA_EVENT, "event_payload": {"window_id": window.id, "kind": kind}},
    )


def _maintenance(ctx: AppContext):
    # Imported here: the maintenance service schedules reminders, so it imports this module.
    from bot.services.maintenance import MaintenanceService

    return MaintenanceService(ctx)


async def _find_posted(ctx: AppContext, window: MaintenanceWindow, kind: str) -> str | None:
    """The ts of this reminder if it is already in the window's thread (tagged by metadata)."""
    if not window.message_ts:
        return None
    channel = window.channel_id or ctx.settings.sitrep_channel
    cursor = None
    try:
        while True:
            page = await ctx.slack.conversations_replies(
                channel=channel, ts=window.message_ts, include_all_metadata=True, limit=200, cursor=cursor
            )
            for message in page.get("messages", []):
                meta = message.get("metadata") or {}
                payload = meta.get("event_payload") or {}
                if (
                    meta.get("event_type") == METADATA_EVENT
                    and payload.get("window_id") == window.id
                    and payload.get("kind") == kind
                ):
                    return message.get("ts")
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None
    except SlackApiError as exc:
        # Without the thread we cannot know; posting twice is better than never.
        log.warning("could not read the thread of window %s: %s", window.id, exc.response.get("error"))
        return None


async def _finish(ctx: AppContext, reminder_id: int, state: str, *, message_ts: str | None = None, late: bool = False) -> None:
    async with ctx.db.session() as session, session.begin():
        await reminder_store.finish(
            session, reminder_id, instance=ctx.instance_id, state=state, now=ctx.clock(), message_ts=message_ts, late=late
        )


async def _apply_state(ctx: AppContext, window: MaintenanceWindow, kind: str) -> None:
    """Scheduled → In progress → Completed, shown on the announcement."""
    new_state = {STARTED: "in_progress", ENDED: "completed"}.get(kind)
    if new_state is None:
        return
    async with ctx.db.session() as session, session.begin():
        stored = await reminder_store.get_window(session, window.id)
        if stored is None or stored.state not in ACTIVE_STATES or stored.state == new_state:
            return
        if new_state == "in_progress" and stored.state != "scheduled":
            return
        stored.state = new_state
        stored.updated_at = ctx.clock()
    try:
        await _maintenance(ctx).refresh_announcement(window.id)
    except SlackApiError as exc:
        log.warning("could not refresh the announcement of window %s: %s", window.id, exc.response.get("error"))
