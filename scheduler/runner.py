"""APScheduler on the bot's own loop. It holds no state of its own: it only wakes the bot
at the earliest due time in the store, whichever replica planned it (looked up after each
write of this process and at each heartbeat), sweeps once a minute as a backstop, and runs
the periodic sync.

Due times are read on the bot's clock (`ctx.clock`), which tests replace; APScheduler
runs on the machine's clock. So a wake-up is planned as a delay (due − the bot's now) from
the machine's now, never as the due time itself: the two clocks may be years apart. The
bot's now is read step-aware (`ctx.due_clock`), and a step of either clock is looked for
every second on the monotonic clock: a pass runs at once and the timers are planned again
(`_watch_steps`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.context import AppContext
from bot.inbound import replays
from bot.services import recovery
from bot.services.digest import DigestService
from scheduler.reminders import run_due_reminders, stale_claim
from scheduler.series import roll_series
from scheduler.sync import sync_windows
from store import reminders as reminder_store
from store.db import STORE_FAILURES

log = logging.getLogger(__name__)

NEXT_JOB = "sitrep-reminders-next"
SWEEP_JOB = "sitrep-reminders-sweep"
#: PostgreSQL's LISTEN/NOTIFY channel on which a replica says it changed reminder rows.
CHANGED = "sitrep_reminders"
SYNC_JOB = "sitrep-maintenance-sync"
SERIES_JOB = "sitrep-maintenance-series"
SWEEP_EVERY = timedelta(seconds=60)
#: How long stopping waits for a heartbeat under way to finish before cancelling it.
HEARTBEAT_STOP_WAIT = 5.0
#: How long stopping waits for cancelled work to unwind (roll back, release its locks).
UNWIND_WAIT = 5.0
STEP_CHECK = 1.0  # seconds on the monotonic clock between looks for a step of the clock
FIRST_SYNC_AFTER = timedelta(seconds=5)
#: A wake-up planned within this of the one asked for is left as it is (on a real clock the
#: same due time gives the same run date to microseconds; an injected clock moves it more).
REPLAN_SLACK = timedelta(milliseconds=1)


def _machine_now() -> datetime:
    """APScheduler's own time base; used only to turn a delay into a run date."""
    return datetime.now(timezone.utc)


class ReminderScheduler:
    """`timers=False` plans every wake-up but never fires one (the APScheduler is started
    paused and nothing is caught up at start): for tests that move an injected clock and
    drive `run_due_reminders` themselves, so no timer races them."""

    def __init__(self, ctx: AppContext, *, timers: bool = True):
        self.ctx = ctx
        self.timers = timers
        self.scheduler = AsyncIOScheduler(
            timezone=timezone.utc, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        )
        self._lock = asyncio.Lock()
        #: One plan at a time: a look-up that began before a change (a heartbeat's) must not
        #: finish after the change's own and plan from what it read before it.
        self._planning = asyncio.Lock()
        self._running: set[asyncio.Task] = set()
        #: `stop` is cancelling what outlived its grace (`_stopped_quietly`).
        self._cutting_short = False
        self._next_due: datetime | None = None
        self._heartbeat: asyncio.Task | None = None
        self._stop_beating = asyncio.Event()
        self._step_watch: asyncio.Task | None = None
        self._listener: asyncio.Task | None = None
        #: Whether another replica's NOTIFY reaches this one now (PostgreSQL).
        self.listening = False
        self._stop_listening = asyncio.Event()
        self._others_changed = False
        self._rewaking: asyncio.Task | None = None

    async def start(self) -> None:
        # Alive before any work: drafts this instance sends name it, and its beats say it lives.
        try:
            await recovery.beat(self.ctx)
        except Exception:  # noqa: BLE001 - a sick database is /readyz's to report; beats retry
            log.exception("could not write this instance's heartbeat; the next beat tries again")
        self._cutting_short = False
        self.scheduler.start(paused=not self.timers)
        self.ctx.wake_reminders.connect(self.changed)
        try:
            await DigestService(self.ctx).plan_next()  # the next weekly digest, if none is planned yet
        except Exception:  # noqa: BLE001 - the next start or digest plans it; nothing else waits on it
            log.exception("could not plan the next weekly digest")
        self.scheduler.add_job(self._run_due, "interval", seconds=SWEEP_EVERY.total_seconds(), id=SWEEP_JOB)
        if self.ctx.maintenance is not None:
            self.scheduler.add_job(
                self._sync,
                "interval",
                seconds=self.ctx.settings.sitrep_sync_interval,
                id=SYNC_JOB,
                next_run_time=_machine_now() + FIRST_SYNC_AFTER,
            )
            # The horizon moves on all the time: occurrences that entered it are created at
            # the next pass (so at most a sync interval after they enter it).
            self.scheduler.add_job(
                self._roll_series,
                "interval",
                seconds=self.ctx.settings.sitrep_sync_interval,
                id=SERIES_JOB,
                next_run_time=_machine_now() + FIRST_SYNC_AFTER,
            )
        if not self.timers:
            await self.wake()
            return
        # Catch up on whatever fell due while the bot was down, then plan the next wake-up.
        self._track(asyncio.create_task(self._run_due()))
        self._stop_beating.clear()
        self._heartbeat = asyncio.create_task(self._beat_and_recover())
        self._step_watch = asyncio.create_task(self._watch_steps())
        if self.ctx.db.notifies:
            self._listener = asyncio.create_task(self._listen_for_changes())

    def background(self) -> set[asyncio.Task]:
        """Tasks that run for as long as the instance does (not work a drain waits for)."""
        return {task for task in (self._heartbeat, self._step_watch, self._listener) if task is not None}

    async def changed(self) -> None:
        """This process changed reminder rows: re-plan its own wake-up, and (PostgreSQL) tell
        the other replicas to re-plan theirs, so whichever lives wakes at the due time."""
        await self.wake()
        try:
            await self.ctx.db.notify(CHANGED, self.ctx.instance_id)
        except STORE_FAILURES:
            log.warning("could not tell the other replicas of a reminder change; they look it up at their next heartbeat")

    async def _listen_for_changes(self) -> None:
        """Re-plan when another replica says it changed reminder rows; a lost connection is
        opened again after a heartbeat (meanwhile each heartbeat looks the due time up)."""
        while not self._stop_listening.is_set():
            try:
                await self.ctx.db.listen(CHANGED, self._heard, until=self._stop_listening, listening=self._listening)
            except (*STORE_FAILURES, ConnectionError) as exc:
                log.warning("not listening for other replicas' reminder changes (%s); trying again", type(exc).__name__)
                await asyncio.sleep(self.ctx.settings.sitrep_heartbeat)

    def _listening(self, on: bool) -> None:
        self.listening = on

    def _heard(self, sender: str) -> None:
        if sender == self.ctx.instance_id:
            return
        # A burst of changes (a sync adopting many windows) is one look-up, plus one more for
        # a change heard while a look-up runs: it may have read the rows before that change.
        self._others_changed = True
        if self._rewaking is None or self._rewaking.done():
            self._rewaking = asyncio.create_task(self._rewake())

    async def _rewake(self) -> None:
        while self._others_changed:
            self._others_changed = False
            try:
                await self.wake()
            except STORE_FAILURES:
                log.warning("could not look up the next due reminder; the next heartbeat does")
                return

    async def _watch_steps(self) -> None:
        """A step of the clock (NTP, a resumed VM) makes reminders due at once (forward), and
        leaves APScheduler's timers planned on the machine's clock as it read before (back: a
        sweep two hours away). Either way: a pass now, and the timers planned afresh, rather
        than at the next sweep or a wake-up planned before the step. Slept on the monotonic
        clock, which no step moves."""
        while True:
            await asyncio.sleep(STEP_CHECK)
            step = self.ctx.due_clock.reading().stepped
            if step is None or not self.scheduler.running:
                continue
            log.info("the clock stepped by %s; running the reminders now and planning the timers again", step)
            every = {SWEEP_JOB: SWEEP_EVERY.total_seconds()} | dict.fromkeys(
                (SYNC_JOB, SERIES_JOB), self.ctx.settings.sitrep_sync_interval
            )
            for job, seconds in every.items():
                if self.scheduler.get_job(job):
                    self.scheduler.reschedule_job(job, trigger="interval", seconds=seconds)
            await self._run_due()  # settles the clock (`run_due_reminders`), then plans the wake-up

    async def stop_heartbeat(self) -> None:
        """After the drain: stop beating and remove this instance's row, so whatever it still
        had in hand is recovered by the next instance at once. Beats go on during the drain:
        sends finishing then are still this instance's."""
        if self._heartbeat is not None:
            # A beat under way is let finish (bounded): cancelled mid-statement, the pool's
            # reset of its connection fails too and logs a traceback at every such stop.
            self._stop_beating.set()
            await asyncio.wait([self._heartbeat], timeout=HEARTBEAT_STOP_WAIT)
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
            self._heartbeat = None
        if self._listener is not None:
            self._stop_listening.set()
            await asyncio.wait([self._listener], timeout=5)
            self._listener.cancel()
            self._listener = None
        try:
            await recovery.stop_beating(self.ctx)
        except Exception:  # noqa: BLE001 - stopping; a silent row means the same, later
            log.warning("could not remove this instance's heartbeat row; it ages out instead")

    async def _beat_and_recover(self) -> None:
        """Every SITREP_HEARTBEAT seconds: say this instance lives, re-plan the wake-up from
        the earliest due time in the database (another replica may have planned a reminder
        and died: this one must wake at its time, not at the next sweep), then settle drafts
        whose sender is gone (at start too: the last run may have died mid-send)."""
        while not self._stop_beating.is_set():
            try:
                await recovery.beat(self.ctx)
                await self.wake()
                await recovery.recover_orphans(self.ctx)
                await recovery.recover_announcements(self.ctx)
                if await recovery.expire_gone_claims(self.ctx):
                    asyncio.create_task(self._run_due())  # not in the beat: a long pass must not delay it
            except Exception:  # noqa: BLE001 - the next beat tries again
                log.exception("heartbeat or draft recovery failed; trying again at the next beat")
            # `asyncio.timeout`, not `wait_for`: the latter runs the wait as a task of its own,
            # which a Socket Mode stop (it waits for every task but the heartbeat) then waited
            # out, a whole heartbeat, at every stop.
            try:
                async with asyncio.timeout(self.ctx.settings.sitrep_heartbeat):
                    await self._stop_beating.wait()
            except TimeoutError:
                pass

    async def stop(self, timeout: float = 10) -> None:
        """Stop taking new work, and let a delivery under way finish (its claim protects it).
        Paused first, shut down after: APScheduler's shutdown cancels the coroutine jobs
        still running, which would drop a reminder mid-post and leave its claim held."""
        self.ctx.wake_reminders.disconnect()
        if self._step_watch is not None:
            self._step_watch.cancel()
        if self.scheduler.running:
            self.scheduler.pause()
        if self._running:
            await asyncio.wait(self._running, timeout=timeout)
        self._cutting_short = True
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)  # cancels only what outlived the grace
        # Whatever outlived the grace (APScheduler's jobs, a pass the heartbeat started) is
        # cancelled and waited for as it unwinds: its sessions roll back and give their
        # connections back, its locks are released. Left pending, it would end with the loop
        # still holding a connection (idle, maybe in a transaction, the sync lock held) that
        # the pool's dispose never sees.
        left = [task for task in self._running if task is not asyncio.current_task()]
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left, timeout=UNWIND_WAIT)

    async def wake(self) -> None:
        """Re-plan the one-off job for the earliest pending reminder, or the moment a claim
        held now goes stale: a replica that dies holding one has it taken over then."""
        async with self._planning:
            async with self.ctx.db.session() as session:
                next_due = await reminder_store.next_due_at(session, stale_claim=stale_claim(self.ctx))
            self._plan(next_due)

    def _plan(self, next_due: datetime | None) -> None:
        """The one-off job at `next_due` (on the bot's clock), or none."""
        if not self.scheduler.running:
            return
        self._next_due = next_due
        if next_due is None:
            if self.scheduler.get_job(NEXT_JOB):
                self.scheduler.remove_job(NEXT_JOB)
            return
        # Counted from where the due times stand (a step back delays nothing already due).
        delay = max(next_due - self.ctx.due_clock.reading().due_by, timedelta(0))
        run_date = _machine_now() + delay
        planned = self.scheduler.get_job(NEXT_JOB)
        if planned is not None and planned.next_run_time and abs(planned.next_run_time - run_date) < REPLAN_SLACK:
            return  # planned already (each heartbeat asks): APScheduler logs every re-plan
        # Two instances: a wake-up planned from inside a run (the next reminder is already
        # due) must wait on the lock, not be skipped as "already running" and lost.
        self.scheduler.add_job(self._run_due, "date", run_date=run_date, id=NEXT_JOB, replace_existing=True, max_instances=2)

    def next_wake(self) -> datetime | None:
        """The due time (on the bot's clock) of the planned wake-up, if any."""
        return self._next_due if self.scheduler.get_job(NEXT_JOB) else None

    def next_run_time(self) -> datetime | None:
        """When APScheduler will fire the planned wake-up (on the machine's clock)."""
        job = self.scheduler.get_job(NEXT_JOB)
        return job.next_run_time if job else None

    async def sweep(self) -> None:
        """What the minute's timer runs: due reminders, old replay keys dropped, the next
        wake-up planned."""
        await self._run_due()

    async def _run_due(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._track(task)
        with self._stopped_quietly("a reminder pass", "what it posted is recorded; a claim it held is taken over once stale"):
            await self._run_due_and_plan()

    async def _run_due_and_plan(self) -> None:
        async with self._lock:
            try:
                await run_due_reminders(self.ctx)
                await replays.forget_old(self.ctx)
            except Exception:  # noqa: BLE001 - the scheduler must keep running
                log.exception("running due reminders failed; the next sweep retries")
        # A pass is often a task of its own (at start, after a heartbeat, after a step):
        # raised out of it, a store failure would end as asyncio's "exception never retrieved".
        try:
            await self.wake()
        except STORE_FAILURES:
            log.warning("could not look up the next due reminder; the next heartbeat does")

    async def _sync(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._track(task)
        started, outcome = time.perf_counter(), "failed"
        try:
            with self._stopped_quietly("the maintenance sync", "the next sync starts over"):
                report = await sync_windows(self.ctx)
                outcome = "failed" if report.failed else "skipped" if report.skipped else "ok"
        except Exception:  # noqa: BLE001 - a failing sync never stops the bot
            log.exception("maintenance sync failed; retrying at the next interval")
        finally:
            self.ctx.metrics.sync(outcome, time.perf_counter() - started)

    async def _roll_series(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._track(task)
        try:
            with self._stopped_quietly("rolling recurring maintenance forward", "the next pass rolls it"):
                await roll_series(self.ctx)
        except Exception:  # noqa: BLE001 - a failing roll never stops the bot; the next pass retries
            log.exception("rolling recurring maintenance forward failed; retrying at the next interval")

    @contextmanager
    def _stopped_quietly(self, what: str, after: str) -> Iterator[None]:
        """A job `stop` cancels because it outlived the shutdown grace: the designed end of
        such work, said in one line. Left to APScheduler, it is logged as a failed job with a
        traceback (it catches the cancellation as any other exception)."""
        try:
            yield
        except asyncio.CancelledError:
            if not self._cutting_short:
                raise
            log.warning("%s was still running when the shutdown grace ran out: stopped (%s)", what, after)

    def _track(self, task: asyncio.Task) -> None:
        self._running.add(task)
        task.add_done_callback(self._running.discard)
