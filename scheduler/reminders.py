"""Heads-up, started, overrun and ended reminders for maintenance windows, each posted
exactly once; the same rows and claims carry incidents' update nudges (`scheduler.nudges`).

The store holds one row per reminder; APScheduler only wakes the bot at due times. A row
is claimed atomically before posting (a run of due ones in one statement, see
`run_due_reminders`); a claim whose process died is taken over after
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
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.backends import backend_named
from bot.context import AppContext
from bot.messages import maintenance as messages
from bot.services.incidents import IncidentService
from bot.services.windows import Windows
from bot.slack.channel import AnnouncementBusy, ClaimLost, Guard, Message, Posted
from bot.slack.outbox import Priority, RateLimited
from scheduler.nudges import after_step_back, deliver_nudge
from scheduler.rooms import deliver_archive
from store import reminders as reminder_store
from store.models import MaintenanceWindow, Reminder
from store.reminders import Claim, Outcome
from store.states import ClaimResult, Delivery, ReminderKind, ReminderState, WindowState

log = logging.getLogger(__name__)

ANNOUNCEMENT_BUSY_RETRY = 15  # seconds: another replica is announcing the window; try after it
SETTLE_CHECK = 0.25  # seconds between looks for due reminders while a pass waits for its edits
FRESH_EDIT = 1.0  # seconds: a parent's edit queued longer than this reads the window again
CLAIM_BATCH = 16  # window reminders claimed, with their windows, in one statement at most
FRESH_WINDOW = 1.0  # seconds: a window read longer ago (its post waited its turn) is read again
RECORD_BATCH = 16  # posted reminders recorded in one statement at most
RECORD_AFTER = 0.5  # seconds: a posted reminder waits no longer than this to be recorded
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
    while it waits for them (paced slower than replies), reminders coming due are posted.

    Window reminders are claimed `CLAIM_BATCH` at a time, their windows read with them, and
    recorded together (`Records`): the database round trips, not the two Slack calls, were
    most of a reminder's cost."""
    posted = 0
    tried: set[int] = set()  # a failed one waits for the next pass, as before
    records = Records(ctx)
    try:
        while True:
            due = await _due(ctx, tried)
            if not due:
                await records.flush()  # their parents' edits are queued by the flush
                if await _settled_unless_due(ctx, tried):
                    break
                continue
            due.sort(key=lambda r: (_priority(r.kind), r.due_at, r.id))
            tried.update(r.id for r in due)
            for batch in _batches(due, size=lambda: _claim_batch(ctx)):
                try:
                    if len(batch) == 1 and not _batchable(batch[0]):
                        posted += await _deliver(ctx, batch[0], records)
                    else:
                        posted += await _deliver_batch(ctx, batch, records)
                except Exception:  # noqa: BLE001 - one bad reminder must not stop the others
                    log.exception("reminders %s could not be delivered; they will be retried", [r.id for r in batch])
    finally:
        await asyncio.shield(records.close())  # even when stopped: what was posted is recorded
        await asyncio.shield(_absorb_step(ctx))
    return posted


async def _absorb_step(ctx: AppContext) -> None:
    """After the pass that posted what a step of the clock made due: settle on the clock as
    it now reads (`StepAwareClock`); after a step back, bring in the nudges planned ahead."""
    step = ctx.due_clock.settle()
    if step is not None and step < timedelta(0):
        try:
            await after_step_back(ctx)
        except Exception:  # noqa: BLE001 - a sick database: the nudges keep their planned times
            log.exception("could not bring in the nudges planned before the clock stepped back")


def _batchable(reminder: Reminder) -> bool:
    """A pending reminder of a window; a stale claim (look in Slack first) and an incident's
    reminders go one by one."""
    return reminder.incident_id is None and reminder.state == ReminderState.PENDING


def _batches(due: list[Reminder], *, size: Callable[[], int]) -> Iterator[list[Reminder]]:
    """Runs of batchable reminders, in the order given, each as long as `size()` says when
    it is taken (so after the run before it went out); each other reminder alone."""
    run: list[Reminder] = []
    limit = 0
    for reminder in due:
        if run and (not _batchable(reminder) or len(run) >= limit):
            yield run
            run = []
        if not _batchable(reminder):
            yield [reminder]
            continue
        if not run:
            limit = size()
        run.append(reminder)
    if run:
        yield run


def _claim_batch(ctx: AppContext) -> int:
    """How many reminders to claim at once: as many as the channel could post now, and one
    more to wait its turn, up to `CLAIM_BATCH`. Under Slack's pace few claims are held ahead
    of their turn (a replica killed holding them delays only those until its claims are
    recovered); unpaced, the cost of claiming is shared by `CLAIM_BATCH` reminders."""
    ready = ctx.outbox.ready(ctx.settings.sitrep_channel, "chat.postMessage")
    return CLAIM_BATCH if ready is None else max(1, min(CLAIM_BATCH, ready + 1))


async def _due(ctx: AppContext, tried: set[int]) -> list[Reminder]:
    async with ctx.db.session() as session:
        due_by = ctx.due_clock.reading().due_by  # a step back holds back nothing that was due
        return [r for r in await reminder_store.due(session, due_by, stale_after=stale_claim(ctx)) if r.id not in tried]


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


@dataclass(frozen=True)
class Claimed:
    """A window reminder this process holds, as its claim left it."""

    reminder_id: int
    kind: str
    window_id: int
    due_at: datetime
    claim: Claim
    claimed_before: float  # `_elapsed()` just before the claim (and the window's read)


async def _deliver(ctx: AppContext, reminder: Reminder, records: Records) -> int:
    """One reminder alone: an incident's (its nudge, resolve notice or channel archive, each
    handed to its own module once claimed), or a stale claim of a window's, looked for in
    the thread first in case the process that held it did post it."""
    reminder_id, kind = reminder.id, reminder.kind
    claimed_before = _elapsed()
    if reminder.incident_id is not None:
        async with ctx.db.session() as session, session.begin():
            claim = await reminder_store.claim(session, reminder, instance=ctx.instance_id, stale_after=stale_claim(ctx))
            if not claim:
                return 0  # another process has it
            nudge = await session.get(Reminder, reminder_id)  # as claimed: a re-arm may have moved it
        if kind == ReminderKind.RESOLVED:
            return await IncidentService(ctx).deliver_notice(reminder_id, claim)
        deliver = deliver_archive if kind == ReminderKind.ARCHIVE else deliver_nudge
        return await deliver(ctx, nudge, claim)

    async with ctx.db.engine.begin() as conn:  # Core statements only: a connection, no ORM session
        claim = await reminder_store.claim(conn, reminder, instance=ctx.instance_id, stale_after=stale_claim(ctx))
        if not claim:
            return 0  # another process has it
        window = await reminder_store.read_window(conn, reminder.window_id)
    claimed = Claimed(reminder_id, kind, reminder.window_id, reminder.due_at, claim, claimed_before)
    if claim.result == ClaimResult.STALE and kind != ReminderKind.CANCELLED and window is not None:
        found = await _find_posted(ctx, window, kind)
        if found is not None:
            log.info("reminder %s was already in Slack (%s); not posting it again", reminder_id, found)
            records.add(Outcome(reminder_id, claim.token, ReminderState.POSTED, message_ts=found), window=window, kind=kind)
            return 0
    return await _deliver_claimed(ctx, claimed, window, records)


async def _deliver_batch(ctx: AppContext, batch: list[Reminder], records: Records) -> int:
    """Claim a run of pending window reminders and read their windows in one transaction,
    then post them one by one, in order. Claims whose post was never attempted (the pass was
    stopped, the database failed) are given back."""
    now = ctx.due_clock.reading().due_by  # as `_due` read them
    claimed_before = _elapsed()
    async with ctx.db.engine.begin() as conn:
        taken = await reminder_store.claim_pending(conn, [r.id for r in batch], instance=ctx.instance_id, now=now)
        windows = await reminder_store.read_windows(conn, list({r.window_id for r in batch})) if taken else {}
    tokens = {reminder_id: (token, due_at) for reminder_id, token, due_at in taken}
    waiting = [
        Claimed(r.id, r.kind, r.window_id, tokens[r.id][1], Claim(ClaimResult.FRESH, tokens[r.id][0]), claimed_before)
        for r in batch
        if r.id in tokens
    ]
    posted = 0
    try:
        while waiting:
            claimed = waiting.pop(0)
            try:
                posted += await _deliver_claimed(ctx, claimed, windows.get(claimed.window_id), records)
            except Exception:  # noqa: BLE001 - one bad reminder must not stop the others
                log.exception("reminder %s could not be delivered; it will be retried", claimed.reminder_id)
    finally:
        if waiting:
            await asyncio.shield(_give_back(ctx, [(c.reminder_id, c.claim.token) for c in waiting]))
    return posted


async def _give_back(ctx: AppContext, claims: list[tuple[int, int]]) -> None:
    """Claims whose posts were never sent: pending again at once, not held until stale."""
    async with ctx.db.engine.begin() as conn:
        await reminder_store.release_unattempted(conn, claims)


async def _deliver_claimed(ctx: AppContext, claimed: Claimed, window: MaintenanceWindow | None, records: Records) -> int:
    """Decide, post, and leave the outcome to `records` (a cancel notice has its own path)."""
    reminder_id, kind, claim = claimed.reminder_id, claimed.kind, claimed.claim
    if kind == ReminderKind.CANCELLED:
        return await Windows(ctx).deliver_notice(reminder_id, claimed.window_id, claim)
    reply = _Reply(ctx, claimed, window)
    try:
        if window is None:
            raise NotWorthPosting
        reply.decide(window)  # before queueing: a skipped one waits for no turn
        guard = still_ours(ctx, reminder_id, claim, claimed_before=claimed.claimed_before)
        posting = asyncio.ensure_future(_post(ctx, window, kind, reply, guard=guard))
        try:
            ts = await asyncio.shield(posting)
        except asyncio.CancelledError:
            await asyncio.shield(_settle_stopped(ctx, posting, reply, claimed, records))
            raise
    except NotWorthPosting:
        log.info("reminder %s (%s of window %s) skipped: too late to matter", reminder_id, kind, claimed.window_id)
        records.add(Outcome(reminder_id, claim.token, ReminderState.SKIPPED), window=reply.window, kind=kind)
        ctx.metrics.reminder("skipped")
        return 0
    except (RateLimited, AnnouncementBusy) as exc:
        # Nothing was posted: hand the claim back with a "not before", never hold it through
        # the wait (another replica would take it over as stale and post it too).
        wait = exc.retry_after if isinstance(exc, RateLimited) else ANNOUNCEMENT_BUSY_RETRY
        not_before = ctx.clock() + timedelta(seconds=wait)
        async with ctx.db.session() as session, session.begin():
            await reminder_store.release_until(session, reminder_id, token=claim.token, not_before=not_before)
        log.info("reminder %s (%s of window %s) waits: %s; not before %s", reminder_id, kind, claimed.window_id, exc, not_before)
        await ctx.wake()
        return 0
    except ClaimLost:
        log.warning("reminder %s was taken over by another process before its post; not posting it", reminder_id)
        return 0
    except Exception:
        async with ctx.db.session() as session, session.begin():
            await reminder_store.release(session, reminder_id, token=claim.token)
        raise
    records.add(
        Outcome(reminder_id, claim.token, ReminderState.POSTED, message_ts=ts, late=reply.late), window=reply.window, kind=kind
    )
    ctx.metrics.reminder("late" if reply.late else "posted", lateness=(reply.sent_at - claimed.due_at).total_seconds())
    return 1


async def _settle_stopped(ctx: AppContext, posting: asyncio.Future, reply: _Reply, claimed: Claimed, records: Records) -> None:
    """The pass was stopped while this reply waited or went out. Not yet built, it was never
    sent: withdrawn, and its claim given back at once. Built, it may be on its way: let it
    finish (Slack's timeout bounds it) and record it; if that fails too, the claim is left to
    go stale, and whoever takes it over looks in the thread first."""
    if not reply.turn_came:
        posting.cancel()
        await _give_back(ctx, [(claimed.reminder_id, claimed.claim.token)])
        return
    try:
        ts = await posting
    except Exception:  # noqa: BLE001 - not known to have reached Slack: see above
        return
    outcome = Outcome(claimed.reminder_id, claimed.claim.token, ReminderState.POSTED, message_ts=ts, late=reply.late)
    records.add(outcome, window=reply.window, kind=claimed.kind)


class NotWorthPosting(Exception):
    """The window ended, was cancelled or moved on: the reminder is only recorded."""


class _Reply:
    """A reminder's reply, built when its turn comes (Slack's pace may hold it for a while):
    from the window as claimed if that was read within `FRESH_WINDOW`, else as the store
    has it then, so a window renamed, cancelled or ended meanwhile is not misreported."""

    def __init__(self, ctx: AppContext, claimed: Claimed, window: MaintenanceWindow | None):
        self.ctx, self.claimed, self.window = ctx, claimed, window
        self.late = False
        self.sent_at = ctx.clock()
        self.turn_came = False  # built (so perhaps sent): from then on only Slack can tell

    def decide(self, window: MaintenanceWindow) -> None:
        # Lateness as time has passed, not as the clock stepped (`StepAwareClock`).
        self.window, self.sent_at = window, self.ctx.due_clock.reading().judged_at(self.claimed.due_at)
        decision = decide(window, self.claimed.kind, due_at=self.claimed.due_at, now=self.sent_at)
        if decision == Delivery.SKIP:
            raise NotWorthPosting
        self.late = decision == Delivery.LATE

    async def __call__(self) -> Message:
        self.turn_came = True
        window = self.window
        if _elapsed() - self.claimed.claimed_before > FRESH_WINDOW:
            async with self.ctx.db.engine.connect() as conn:
                window = await reminder_store.read_window(conn, self.claimed.window_id)
            if window is None:
                raise NotWorthPosting
        self.decide(window)
        if self.claimed.kind == ReminderKind.OVERRUN:
            return messages.overrun_prompt(window)
        late_since = self.claimed.due_at if self.late else None
        return messages.reminder(
            window, self.claimed.kind, lead_minutes=self.ctx.settings.sitrep_reminder_lead, late_since=late_since
        )


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


async def _post(ctx: AppContext, window: MaintenanceWindow, kind: str, reply: _Reply, *, guard: Guard) -> str:
    """In the window's thread, tagged so a retry can tell it already reached Slack; broadcast
    except the overrun prompt (the question is for those at work, in the thread). A window
    whose announcement never worked is announced first (claimed like the reminder itself).
    A 429 is handed back at once (`RateLimited`) rather than waited out here."""
    metadata = {"event_type": METADATA_EVENT, "event_payload": {"window_id": window.id, "kind": kind}}
    if not window.message_ts:
        reply.window = window = await Windows(ctx).announced(window.id)
    return await ctx.channel.reply(
        _at(ctx, window),
        reply,
        broadcast=kind != ReminderKind.OVERRUN,
        metadata=metadata,
        priority=_priority(kind),
        guard=guard,
        hand_back=True,
    )


def _at(ctx: AppContext, window: MaintenanceWindow) -> Posted | None:
    return Posted(window.channel_id or ctx.settings.sitrep_channel, window.message_ts) if window.message_ts else None


async def _find_posted(ctx: AppContext, window: MaintenanceWindow, kind: str) -> str | None:
    """The ts of this reminder if it is already in the window's thread (tagged by metadata)."""
    at = _at(ctx, window)
    if at is None:
        return None
    return await ctx.channel.find_reply(at, METADATA_EVENT, {"window_id": window.id, "kind": kind})


class Records:
    """The pass's outcomes not yet written: several are recorded in one transaction, each
    moving its window on (Scheduled → In progress → Completed) and queueing the parent's
    edit. One waits at most `RECORD_AFTER` (or until `RECORD_BATCH` are waiting).

    Recording later is safe: until it is written the reminder stays claimed by us, and a
    process taking the claim over after a crash finds the tagged post in the thread."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        self.waiting: list[tuple[Outcome, MaintenanceWindow | None, str]] = []
        self.lock = asyncio.Lock()  # one write at a time, in order: the parents' edits follow it
        self.timer: asyncio.Task | None = None  # the wait of the oldest outcome not yet written
        self.tasks: set[asyncio.Task] = set()  # held here: the loop keeps only weak references

    def add(self, outcome: Outcome, *, window: MaintenanceWindow | None, kind: str) -> None:
        self.waiting.append((outcome, window, kind))
        if len(self.waiting) >= RECORD_BATCH:
            self._spawn(self.flush())
        elif self.timer is None:
            self.timer = self._spawn(self._flush_after(RECORD_AFTER))

    async def _flush_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self.timer = None  # waited: an outcome added during the write starts its own wait
        await asyncio.shield(self.flush())  # `close` cancels the wait, never a write under way

    def _spawn(self, work: Awaitable[None]) -> asyncio.Task:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        task.add_done_callback(_log_failure)
        return task

    async def flush(self) -> None:
        async with self.lock:
            taken, self.waiting = self.waiting, []
            if taken:
                await _record(self.ctx, taken)

    async def close(self) -> None:
        """Write what is left; a write under way finishes first (the lock)."""
        if self.timer is not None:
            self.timer.cancel()
        await self.flush()


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("reminders could not be recorded; their claims go stale and are checked in Slack", exc_info=task.exception())


async def _record(ctx: AppContext, taken: list[tuple[Outcome, MaintenanceWindow | None, str]]) -> None:
    """Write outcomes and move their windows on in one transaction, then queue the parents'
    edits (queued before the commit: a change committed after this one queues its edit after
    this one, and so replaces it or follows it)."""
    committed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    try:
        async with ctx.db.engine.begin() as conn:
            now = ctx.clock()
            mine = await reminder_store.finish_many(conn, [outcome for outcome, _, _ in taken], now=now)
            moves: dict[WindowState, list[int]] = {}
            for outcome, window, kind in taken:
                to = ReminderKind(kind).moves_window_to
                if outcome.reminder_id in mine and to is not None and window is not None:
                    moves.setdefault(to, []).append(window.id)
            announced = {window.id: window for _, window, _ in taken if window is not None and window.message_ts}
            for to, ids in moves.items():
                for moved in await reminder_store.move_windows(conn, ids, to=to, now=now):
                    if moved.id in announced:
                        ctx.channel.refresh_later(
                            _at(ctx, announced[moved.id]),
                            _announcement(ctx, moved, committed, queued_at=_elapsed()),
                            what=f"could not refresh the announcement of window {moved.id}",
                        )
    except BaseException:
        committed.set_result(False)  # rolled back: the queued edits send nothing
        raise
    committed.set_result(True)
    for outcome, _, _ in taken:
        if outcome.reminder_id not in mine:
            log.warning("reminder %s: another process took the claim over before it was recorded", outcome.reminder_id)


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
