"""Heads-up, started, overrun and ended reminders for maintenance windows, each posted
exactly once; the same rows and claims carry incidents' update nudges (`scheduler.nudges`).

The store holds one row per reminder; APScheduler only wakes the bot at due times. A row
is claimed atomically before posting; a claim whose process died is taken over after
`stale_claim` (on the database's clock; every process wakes then, not only at its next
sweep), and the thread is searched for the reminder's metadata tag first so a post that did
reach Slack is not repeated. Each claim carries a
fencing token, checked just before the post leaves: a process whose claim was taken over
never posts. A 429 hands the reminder back with "not before" = now + Retry-After; the next
wake-up after that posts it, and nothing else waits for it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from bot.backends import backend_named
from bot.channel import AnnouncementBusy, ClaimLost, Guard, Message, Posted
from bot.context import AppContext
from bot.messages import maintenance as messages
from bot.outbox import Priority, RateLimited
from bot.services.incidents import IncidentService
from bot.services.windows import Windows
from scheduler.nudges import deliver_nudge
from scheduler.rooms import deliver_archive
from store import reminders as reminder_store
from store.models import MaintenanceWindow, Reminder
from store.reminders import Claim
from store.states import ClaimResult, Delivery, ReminderKind, ReminderState, WindowState

log = logging.getLogger(__name__)

ANNOUNCEMENT_BUSY_RETRY = 15  # seconds: another replica is announcing the window; try after it
SETTLE_CHECK = 0.25  # seconds between looks for due reminders while a pass waits for its edits
FRESH_EDIT = 1.0  # seconds: a parent's edit queued longer than this reads the window again
FRESH_CLAIM_SHARE = 4  # a claim younger than stale_claim / this is certainly still ours (see still_ours)
LATE_AFTER = timedelta(minutes=1)  # posted later than this after its due time: say so
LATE_END_LIMIT = timedelta(hours=1)  # a missed "ended" older than this is only recorded
METADATA_EVENT = "sitrep_reminder"


def stale_claim(ctx: AppContext) -> timedelta:
    """See `AppContext.stale_claim`."""
    return ctx.stale_claim


async def run_due_reminders(ctx: AppContext) -> int:
    """Post every due reminder this process can claim; returns how many were posted.

    Reminders that come due while a long pass runs (a burst paced at Slack's rate) are
    taken in the same pass; "started"/"ended" go before heads-ups. The pass ends once the
    announcement edits it queued have landed, so no parent is left showing an old state;
    while it waits for them (paced slower than replies), reminders coming due are posted."""
    posted = 0
    tried: set[int] = set()  # a failed one waits for the next pass, as before
    while True:
        due = await _due(ctx, tried)
        if not due:
            if await _settled_unless_due(ctx, tried):
                break
            continue
        due.sort(key=lambda r: (_priority(r.kind), r.due_at, r.id))
        for reminder in due:
            tried.add(reminder.id)
            try:
                posted += await _deliver(ctx, reminder)
            except Exception:  # noqa: BLE001 - one bad reminder must not stop the others
                log.exception("reminder %s could not be delivered; it will be retried", reminder.id)
    return posted


async def _due(ctx: AppContext, tried: set[int]) -> list[Reminder]:
    async with ctx.db.session() as session:
        return [r for r in await reminder_store.due(session, ctx.clock(), stale_after=stale_claim(ctx)) if r.id not in tried]


async def _settled_unless_due(ctx: AppContext, tried: set[int]) -> bool:
    """Wait for the channel's queued posts and edits to land (True), looking every
    `SETTLE_CHECK` seconds for a reminder come due meanwhile (False: post it first, rather
    than hold a "started" reply behind a backlog of parent edits)."""
    settling = asyncio.ensure_future(ctx.channel.settle())
    try:
        while True:
            done, _ = await asyncio.wait({settling}, timeout=SETTLE_CHECK)
            if done:
                settling.result()
                return True
            if await _due(ctx, tried):
                return False
    finally:
        settling.cancel()  # the sends go on in the outbox: only this wait for them stops


def _priority(kind: str) -> Priority:
    """Started and ended first; heads-ups, overrun prompts and nudges have minutes to spare."""
    return Priority.NOW if kind in (ReminderKind.STARTED, ReminderKind.ENDED) else Priority.HEADS_UP


async def _deliver(ctx: AppContext, reminder: Reminder) -> int:
    """Claim, read the window once, post, record, queue the parent's edit. An incident's
    nudge is claimed the same way and then handed to `scheduler.nudges`, the archiving of
    its channel to `scheduler.rooms`."""
    reminder_id, kind = reminder.id, reminder.kind
    now = ctx.clock()
    claimed_before = _elapsed()
    if reminder.incident_id is None:  # Core statements only: a connection, no ORM session
        async with ctx.db.engine.begin() as conn:
            claim = await reminder_store.claim(conn, reminder, instance=ctx.instance_id, stale_after=stale_claim(ctx))
            if not claim:
                return 0  # another process has it
            window = await reminder_store.read_window(conn, reminder.window_id)
    else:
        async with ctx.db.session() as session, session.begin():
            claim = await reminder_store.claim(session, reminder, instance=ctx.instance_id, stale_after=stale_claim(ctx))
            if not claim:
                return 0  # another process has it
            nudge = await session.get(Reminder, reminder_id)  # as claimed: a re-arm may have moved it

    if reminder.incident_id is not None:
        if kind == ReminderKind.RESOLVED:
            return await IncidentService(ctx).deliver_notice(reminder_id, claim)
        deliver = deliver_archive if kind == ReminderKind.ARCHIVE else deliver_nudge
        return await deliver(ctx, nudge, claim)

    if kind == ReminderKind.CANCELLED:
        return await Windows(ctx).deliver_notice(reminder_id, window.id, claim)

    if claim.result == ClaimResult.STALE:
        found = await _find_posted(ctx, window, kind)
        if found is not None:
            log.info("reminder %s was already in Slack (%s); not posting it again", reminder_id, found)
            await _finish(ctx, reminder_id, claim, ReminderState.POSTED, message_ts=found, window=window, kind=kind)
            return 0

    decision = decide(window, kind, due_at=reminder.due_at, now=now)
    if decision == Delivery.SKIP:
        log.info("reminder %s (%s of window %s) skipped: too late to matter", reminder_id, kind, window.id)
        await _finish(ctx, reminder_id, claim, ReminderState.SKIPPED, window=window, kind=kind)
        ctx.metrics.reminder("skipped")
        return 0

    late = decision == Delivery.LATE
    if kind == ReminderKind.OVERRUN:
        message = messages.overrun_prompt(window)
    else:
        message = messages.reminder(
            window, kind, lead_minutes=ctx.settings.sitrep_reminder_lead, late_since=reminder.due_at if late else None
        )
    try:
        ts, window = await _post(ctx, window, kind, message, guard=still_ours(ctx, reminder_id, claim, claimed_before=claimed_before))
    except (RateLimited, AnnouncementBusy) as exc:
        # Nothing was posted: hand the claim back with a "not before", never hold it through
        # the wait (another replica would take it over as stale and post it too).
        wait = exc.retry_after if isinstance(exc, RateLimited) else ANNOUNCEMENT_BUSY_RETRY
        not_before = ctx.clock() + timedelta(seconds=wait)
        async with ctx.db.session() as session, session.begin():
            await reminder_store.release_until(session, reminder_id, token=claim.token, not_before=not_before)
        log.info("reminder %s (%s of window %s) waits: %s; not before %s", reminder_id, kind, window.id, exc, not_before)
        await ctx.wake()
        return 0
    except ClaimLost:
        log.warning("reminder %s was taken over by another process before its post; not posting it", reminder_id)
        return 0
    except Exception:
        async with ctx.db.session() as session, session.begin():
            await reminder_store.release(session, reminder_id, token=claim.token)
        raise
    await _finish(ctx, reminder_id, claim, ReminderState.POSTED, message_ts=ts, late=late, window=window, kind=kind)
    ctx.metrics.reminder("late" if late else "posted", lateness=(now - reminder.due_at).total_seconds())
    return 1


def still_ours(ctx: AppContext, reminder_id: int, claim: Claim, *, claimed_before: float | None = None) -> Guard:
    """The check run just before the post leaves (fencing): is the claim still ours? It
    is renewed on the database's clock if so.

    With `claimed_before` (`_elapsed()` read before the claim was taken), a first attempt
    leaving within `_fresh_claim_seconds` of it skips the database: nobody can have taken the claim
    over, as that needs it `STALE_CLAIM` old on the database's clock, four times longer (and
    nothing else moves a claimed reminder of a window). `_elapsed` counts time suspended
    too, so a host asleep meanwhile asks the database. Retries always ask."""
    asked = False

    async def check() -> bool:
        nonlocal asked
        if not asked and claimed_before is not None and _elapsed() - claimed_before < _fresh_claim_seconds(ctx):
            asked = True
            return True
        asked = True
        async with ctx.db.session() as session, session.begin():
            return await reminder_store.confirm(session, reminder_id, token=claim.token)

    return check


def _fresh_claim_seconds(ctx: AppContext) -> float:
    """How long after its claim a first attempt may post without asking the database: well
    inside the claim's stale age, and inside one heartbeat (the crash recovery takes over the
    claims of an instance silent for several beats)."""
    return min((stale_claim(ctx) / FRESH_CLAIM_SHARE).total_seconds(), ctx.settings.sitrep_heartbeat)


def _elapsed() -> float:
    """Seconds on a clock that never jumps and keeps counting while the host is suspended."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def decide(window: MaintenanceWindow, kind: str, *, due_at: datetime, now: datetime) -> Delivery:
    """Post it, post it saying it is late, or only record it."""
    if not WindowState(window.state).active:
        return Delivery.SKIP
    if kind == ReminderKind.OVERRUN:
        # Only worth asking while the window still runs; late or early it is the same question.
        return Delivery.POST if window.end is not None and window.start <= now < window.end else Delivery.SKIP
    if now - due_at <= LATE_AFTER:
        return Delivery.POST
    if kind == ReminderKind.HEADS_UP:
        return Delivery.SKIP if now >= window.start else Delivery.LATE
    if kind == ReminderKind.STARTED:
        return Delivery.LATE if window.end is None or now < window.end else Delivery.SKIP
    return Delivery.LATE if now - window.end < LATE_END_LIMIT else Delivery.SKIP


async def _post(
    ctx: AppContext, window: MaintenanceWindow, kind: str, message: Message, *, guard: Guard
) -> tuple[str, MaintenanceWindow]:
    """In the window's thread, tagged so a retry can tell it already reached Slack; broadcast
    except the overrun prompt (the question is for those at work, in the thread). A window
    whose announcement never worked is announced first (claimed like the reminder itself).
    A 429 is handed back at once (`RateLimited`) rather than waited out here."""
    metadata = {"event_type": METADATA_EVENT, "event_payload": {"window_id": window.id, "kind": kind}}
    if not window.message_ts:
        window = await Windows(ctx).announced(window.id)
    return (
        await ctx.channel.reply(
            _at(ctx, window),
            message,
            broadcast=kind != ReminderKind.OVERRUN,
            metadata=metadata,
            priority=_priority(kind),
            guard=guard,
            hand_back=True,
        ),
        window,
    )


def _at(ctx: AppContext, window: MaintenanceWindow) -> Posted | None:
    return Posted(window.channel_id or ctx.settings.sitrep_channel, window.message_ts) if window.message_ts else None


async def _find_posted(ctx: AppContext, window: MaintenanceWindow, kind: str) -> str | None:
    """The ts of this reminder if it is already in the window's thread (tagged by metadata)."""
    at = _at(ctx, window)
    if at is None:
        return None
    return await ctx.channel.find_reply(at, METADATA_EVENT, {"window_id": window.id, "kind": kind})


async def _finish(
    ctx: AppContext,
    reminder_id: int,
    claim: Claim,
    state: str,
    *,
    window: MaintenanceWindow,
    kind: str,
    message_ts: str | None = None,
    late: bool = False,
) -> None:
    """Record the reminder and move the window on (Scheduled → In progress → Completed) in
    one transaction, then queue the announcement's edit."""
    new_state = ReminderKind(kind).moves_window_to
    at = _at(ctx, window)
    committed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    try:
        async with ctx.db.engine.begin() as conn:
            mine = await reminder_store.finish(
                conn, reminder_id, token=claim.token, state=state, now=ctx.clock(), message_ts=message_ts, late=late
            )
            moved = None
            if mine and new_state is not None:
                moved = await reminder_store.move_window(conn, window.id, to=new_state, now=ctx.clock())
            if moved is not None and at is not None:
                # Queued before the commit: a change committed after this one queues its edit
                # after this one, and so replaces it (coalesced) or follows it.
                ctx.channel.refresh_later(
                    at,
                    _announcement(ctx, moved, committed, queued_at=_elapsed()),
                    what=f"could not refresh the announcement of window {window.id}",
                )
    except BaseException:
        committed.set_result(False)  # rolled back: the queued edit sends nothing
        raise
    committed.set_result(True)
    if not mine:
        log.warning("reminder %s: another process took the claim over before it was recorded", reminder_id)


def _announcement(
    ctx: AppContext, moved: MaintenanceWindow, committed: asyncio.Future[bool], *, queued_at: float
) -> Callable[[], Awaitable[Message | None]]:
    """The parent's edit, built when it goes out: from the window as the reminder's own
    statement left it (no read) when it goes within `FRESH_EDIT`; after a longer wait in the
    queue (Slack's pace), as the store has it then, so it carries what changed meanwhile,
    from this replica or another. Nothing if the reminder's transaction did not commit."""

    async def build() -> Message | None:
        if not await committed:
            return None
        window: MaintenanceWindow | None = moved
        if _elapsed() - queued_at > FRESH_EDIT:
            async with ctx.db.engine.connect() as conn:
                window = await reminder_store.read_window(conn, moved.id)
        return messages.announcement(window, backend_named(window.backend)) if window is not None else None

    return build
