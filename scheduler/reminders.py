"""The pass over due `Reminder` rows: heads-up, started, overrun and ended replies of
maintenance windows, resolve and cancel notices, incidents' update nudges and channel
archives, each done exactly once.

The store holds one row per post; APScheduler only wakes the bot at due times. The pass
claims due rows (a run of a window's pending reminders in one statement, see
`run_due_reminders`) and hands each to its kind's entry in `DELIVERY`, which says what to
post; the claim, the look in Slack for a stale claim's post, the fencing and the recording
are the engine's (`bot.slack.posts`). A claim whose process died is taken over after
`stale_claim` (on the database's clock). A 429 hands the row back with "not before" = now +
Retry-After; the next wake-up after that posts it, and nothing else waits for it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.backends import backend_named
from bot.context import AppContext
from bot.errors import Skip
from bot.messages import maintenance as messages
from bot.services.digest import LATE_AFTER as DIGEST_LATE_AFTER
from bot.services.digest import DigestService
from bot.services.incidents import IncidentService
from bot.services.postmortem import PostmortemService, Shared
from bot.services.windows import Windows
from bot.slack import posts
from bot.slack.channel import Message, Posted
from bot.slack.outbox import Priority
from bot.slack.posts import Post, PostTag, RowClaim, Sent
from scheduler.nudges import after_step_back, deliver_nudge
from scheduler.rooms import deliver_archive
from store import reminders as reminder_store
from store.models import MaintenanceWindow, Reminder
from store.reminders import Claim, Outcome
from store.states import ClaimResult, Delivery, ReminderKind, ReminderState, WindowState

log = logging.getLogger(__name__)

SETTLE_CHECK = 0.25  # seconds between looks for due reminders while a pass waits for its edits
FRESH_EDIT = 1.0  # seconds: a parent's edit queued longer than this reads the window again
CLAIM_BATCH = 16  # window reminders claimed, with their windows, in one statement at most
FRESH_WINDOW = 1.0  # seconds: a window read longer ago (its post waited its turn) is read again
RECORD_BATCH = 16  # posted reminders recorded in one statement at most
RECORD_AFTER = 0.5  # seconds: a posted reminder waits no longer than this to be recorded
LATE_AFTER = timedelta(minutes=1)  # posted later than this after its due time: say so
LATE_END_LIMIT = timedelta(hours=1)  # a missed "ended" older than this is only recorded


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
    return reminder.window_id is not None and reminder.state == ReminderState.PENDING


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
class Due:
    """A reminder row this process holds, as its claim left it (a window's is read with it)."""

    reminder_id: int
    kind: ReminderKind
    window_id: int | None
    due_at: datetime
    claim: Claim
    claimed_before: float  # `posts.elapsed()` just before the claim (and the window's read)
    window: MaintenanceWindow | None = None

    def held(self, ctx: AppContext, **how) -> RowClaim:
        """The engine's handle on this claim."""
        return RowClaim(ctx, self.reminder_id, self.claim, claimed_before=self.claimed_before, **how)


#: What to post for a claimed row, by its kind: (ctx, due, records) → how many were posted.
Deliver = Callable[[AppContext, Due, "Records"], Awaitable[int]]


async def _deliver(ctx: AppContext, reminder: Reminder, records: Records) -> int:
    """One reminder alone (an incident's, or a stale claim of a window's): claimed, then
    handed to its kind's entry in `DELIVERY`."""
    claimed_before = posts.elapsed()
    async with ctx.db.engine.begin() as conn:  # Core statements only: a connection, no ORM session
        claim = await reminder_store.claim(conn, reminder, instance=ctx.instance_id, stale_after=stale_claim(ctx))
        if not claim:
            return 0  # another process has it
        window = await reminder_store.read_window(conn, reminder.window_id) if reminder.window_id is not None else None
    due = Due(reminder.id, ReminderKind(reminder.kind), reminder.window_id, reminder.due_at, claim, claimed_before, window)
    return await DELIVERY[due.kind](ctx, due, records)


async def _deliver_batch(ctx: AppContext, batch: list[Reminder], records: Records) -> int:
    """Claim a run of pending window reminders and read their windows in one transaction,
    then deliver them one by one, in order. Claims whose post was never attempted (the pass
    was stopped, the database failed) are given back."""
    now = ctx.due_clock.reading().due_by  # as `_due` read them
    claimed_before = posts.elapsed()
    async with ctx.db.engine.begin() as conn:
        taken = await reminder_store.claim_pending(conn, [r.id for r in batch], instance=ctx.instance_id, now=now)
        windows = await reminder_store.read_windows(conn, list({r.window_id for r in batch})) if taken else {}
    tokens = {reminder_id: (token, due_at) for reminder_id, token, due_at in taken}
    waiting = [
        Due(
            r.id,
            ReminderKind(r.kind),
            r.window_id,
            tokens[r.id][1],
            Claim(ClaimResult.FRESH, tokens[r.id][0]),
            claimed_before,
            windows.get(r.window_id),
        )
        for r in batch
        if r.id in tokens
    ]
    posted = 0
    try:
        while waiting:
            due = waiting.pop(0)
            try:
                posted += await DELIVERY[due.kind](ctx, due, records)
            except Exception:  # noqa: BLE001 - one bad reminder must not stop the others
                log.exception("reminder %s could not be delivered; it will be retried", due.reminder_id)
    finally:
        if waiting:
            await asyncio.shield(posts.give_back(ctx, [(d.reminder_id, d.claim.token) for d in waiting]))
    return posted


async def _window_reminder(ctx: AppContext, due: Due, records: Records) -> int:
    """A window's heads-up, started, overrun or ended reply: decided (post, post late, or
    only record), posted through the engine, its outcome left to `records`."""
    reply = _Reply(ctx, due, due.window)
    kind = due.kind
    claim = due.held(ctx, recorder=lambda outcome: records.add(outcome, window=reply.window, kind=kind), late=lambda: reply.late)
    if due.window is None:
        return await _skipped(ctx, due, claim)
    if not claim.stale:  # before queueing: a skipped one waits for no turn (a stale one looks first)
        try:
            reply.decide(due.window)
        except Skip:
            return await _skipped(ctx, due, claim)

    async def thread() -> Posted:
        # A window whose announcement never worked is announced first (claimed like this row).
        if not reply.window.message_ts:
            reply.window = await Windows(ctx).announced(reply.window.id)
        return _at(ctx, reply.window)

    post = Post(
        PostTag.REMINDER,
        {"window_id": due.window_id, "kind": str(kind)},
        reply,
        thread=thread,
        broadcast=kind != ReminderKind.OVERRUN,  # the overrun question is for those at work, in the thread
        priority=_priority(kind),
        hand_back=True,
    )
    result = await posts.post_once(ctx, post, claim)
    if result.how == Sent.SKIPPED:
        _log_skipped(ctx, due)
    elif result.how == Sent.POSTED:
        ctx.metrics.reminder("late" if reply.late else "posted", lateness=(reply.sent_at - due.due_at).total_seconds())
    return result.posted


async def _skipped(ctx: AppContext, due: Due, claim: RowClaim) -> int:
    await claim.skip()
    _log_skipped(ctx, due)
    return 0


def _log_skipped(ctx: AppContext, due: Due) -> None:
    log.info("reminder %s (%s of window %s) skipped: too late to matter", due.reminder_id, due.kind, due.window_id)
    ctx.metrics.reminder("skipped")


async def _cancel_notice(ctx: AppContext, due: Due, records: Records) -> int:
    return await Windows(ctx).deliver_notice(due.reminder_id, due.window_id, due.claim)


async def _resolve_notice(ctx: AppContext, due: Due, records: Records) -> int:
    return await IncidentService(ctx).deliver_notice(due.reminder_id, due.claim)


async def _lead_reply(ctx: AppContext, due: Due, records: Records) -> int:
    return await IncidentService(ctx).deliver_lead(due.reminder_id, due.claim)


async def _postmortem(ctx: AppContext, due: Due, records: Records) -> int:
    return int((await PostmortemService(ctx).deliver(due.reminder_id, due.claim)).how == Shared.SHARED)


async def _nudge(ctx: AppContext, due: Due, records: Records) -> int:
    return await deliver_nudge(ctx, await _as_claimed(ctx, due), due.claim)


async def _archive(ctx: AppContext, due: Due, records: Records) -> int:
    return await deliver_archive(ctx, await _as_claimed(ctx, due), due.claim)


async def _digest(ctx: AppContext, due: Due, records: Records) -> int:
    """The weekly digest: posted once, then the next week's planned."""
    digests = DigestService(ctx)
    late = ctx.due_clock.reading().judged_at(due.due_at) - due.due_at > DIGEST_LATE_AFTER  # a step is not lateness
    post = await digests.post_for(due.due_at, late=late)
    result = await posts.post_once(ctx, post, due.held(ctx, late=lambda: late))
    await digests.plan_next()
    return result.posted


async def _as_claimed(ctx: AppContext, due: Due) -> Reminder:
    """The row as claimed: a re-arm may have moved its due time since it was read."""
    async with ctx.db.session() as session:
        return await session.get(Reminder, due.reminder_id)


DELIVERY: dict[ReminderKind, Deliver] = {
    ReminderKind.HEADS_UP: _window_reminder,
    ReminderKind.STARTED: _window_reminder,
    ReminderKind.OVERRUN: _window_reminder,
    ReminderKind.ENDED: _window_reminder,
    ReminderKind.CANCELLED: _cancel_notice,
    ReminderKind.RESOLVED: _resolve_notice,
    ReminderKind.LEAD: _lead_reply,
    ReminderKind.POSTMORTEM: _postmortem,
    ReminderKind.POSTMORTEM_FINAL: _postmortem,
    ReminderKind.CANVAS: _postmortem,
    ReminderKind.CANVAS_FINAL: _postmortem,
    ReminderKind.DIGEST: _digest,
    ReminderKind.NUDGE: _nudge,
    ReminderKind.ARCHIVE: _archive,
}
"""Who posts each kind of row once the pass has claimed it; a new kind adds its entry."""


class _Reply:
    """A reminder's reply, built when its turn comes (Slack's pace may hold it for a while):
    from the window as claimed if that was read within `FRESH_WINDOW`, else as the store
    has it then, so a window renamed, cancelled or ended meanwhile is not misreported."""

    def __init__(self, ctx: AppContext, due: Due, window: MaintenanceWindow | None):
        self.ctx, self.due, self.window = ctx, due, window
        self.late = False
        self.sent_at = ctx.clock()

    def decide(self, window: MaintenanceWindow) -> None:
        # Lateness as time has passed, not as the clock stepped (`StepAwareClock`).
        self.window, self.sent_at = window, self.ctx.due_clock.reading().judged_at(self.due.due_at)
        decision = decide(window, self.due.kind, due_at=self.due.due_at, now=self.sent_at)
        if decision == Delivery.SKIP:
            raise Skip
        self.late = decision == Delivery.LATE

    async def __call__(self) -> Message:
        window = self.window
        if posts.elapsed() - self.due.claimed_before > FRESH_WINDOW:
            async with self.ctx.db.engine.connect() as conn:
                window = await reminder_store.read_window(conn, self.due.window_id)
            if window is None:
                raise Skip
        self.decide(window)
        if self.due.kind == ReminderKind.OVERRUN:
            return messages.overrun_prompt(window)
        late_since = self.due.due_at if self.late else None
        return messages.reminder(
            window, self.due.kind, lead_minutes=self.ctx.settings.sitrep_reminder_lead, late_since=late_since
        )


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


def _at(ctx: AppContext, window: MaintenanceWindow) -> Posted | None:
    return Posted(window.channel_id or ctx.settings.sitrep_channel, window.message_ts) if window.message_ts else None


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
                            _announcement(ctx, moved, committed, queued_at=posts.elapsed()),
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
        if posts.elapsed() - queued_at > FRESH_EDIT:
            async with ctx.db.engine.connect() as conn:
                window = await reminder_store.read_window(conn, moved.id)
        return messages.announcement(window, backend_named(window.backend)) if window is not None else None

    return build
