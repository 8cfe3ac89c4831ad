"""APScheduler on the bot's own loop. It holds no state of its own: it only wakes the bot
at the next due time from the store, sweeps once a minute in case another process changed
the rows, and runs the periodic sync.

Due times are read on the bot's clock (`ctx.clock`), which tests replace; APScheduler
runs on the machine's clock. So a wake-up is planned as a delay (due − ctx.clock()) from
the machine's now, never as the due time itself: the two clocks may be years apart."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta, timezone

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.context import AppContext
from bot.services import recovery
from bot.services.digest import DigestService
from scheduler.reminders import run_due_reminders, stale_claim
from scheduler.series import roll_series
from scheduler.sync import sync_windows
from store import reminders as reminder_store
from store import submissions as submission_store

log = logging.getLogger(__name__)

NEXT_JOB = "sitrep-reminders-next"
SWEEP_JOB = "sitrep-reminders-sweep"
SYNC_JOB = "sitrep-maintenance-sync"
SERIES_JOB = "sitrep-maintenance-series"
SWEEP_EVERY = timedelta(seconds=60)
FIRST_SYNC_AFTER = timedelta(seconds=5)


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
        self._running: set[asyncio.Task] = set()
        self._next_due: datetime | None = None
        self._heartbeat: asyncio.Task | None = None

    async def start(self) -> None:
        # Alive before any work: drafts this instance sends name it, and its beats say it lives.
        try:
            await recovery.beat(self.ctx)
        except Exception:  # noqa: BLE001 - a sick database is /readyz's to report; beats retry
            log.exception("could not write this instance's heartbeat; the next beat tries again")
        self.scheduler.start(paused=not self.timers)
        self.ctx.wake_reminders.connect(self.wake)
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
        self._heartbeat = asyncio.create_task(self._beat_and_recover())

    def background(self) -> set[asyncio.Task]:
        """Tasks that run for as long as the instance does (not work a drain waits for)."""
        return {self._heartbeat} if self._heartbeat is not None else set()

    async def stop_heartbeat(self) -> None:
        """After the drain: stop beating and remove this instance's row, so whatever it still
        had in hand is recovered by the next instance at once. Beats go on during the drain:
        sends finishing then are still this instance's."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
            self._heartbeat = None
        try:
            await recovery.stop_beating(self.ctx)
        except Exception:  # noqa: BLE001 - stopping; a silent row means the same, later
            log.warning("could not remove this instance's heartbeat row; it ages out instead")

    async def _beat_and_recover(self) -> None:
        """Every SITREP_HEARTBEAT seconds: say this instance lives, then settle drafts whose
        sender is gone (at start too: the last run may have died mid-send)."""
        while True:
            try:
                await recovery.beat(self.ctx)
                await recovery.recover_orphans(self.ctx)
                await recovery.recover_announcements(self.ctx)
                if await recovery.expire_gone_claims(self.ctx):
                    asyncio.create_task(self._run_due())  # not in the beat: a long pass must not delay it
            except Exception:  # noqa: BLE001 - the next beat tries again
                log.exception("heartbeat or draft recovery failed; trying again at the next beat")
            await asyncio.sleep(self.ctx.settings.sitrep_heartbeat)

    async def stop(self, timeout: float = 10) -> None:
        """Stop taking new work, and let a delivery under way finish (its claim protects it).
        Paused first, shut down after: APScheduler's shutdown cancels the coroutine jobs
        still running, which would drop a reminder mid-post and leave its claim held."""
        self.ctx.wake_reminders.disconnect()
        if self.scheduler.running:
            self.scheduler.pause()
        if self._running:
            await asyncio.wait(self._running, timeout=timeout)
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)  # cancels only what outlived the grace

    async def wake(self) -> None:
        """Re-plan the one-off job for the earliest pending reminder, or the moment a claim
        held now goes stale: a replica that dies holding one has it taken over then."""
        async with self.ctx.db.session() as session:
            next_due = await reminder_store.next_due_at(session, stale_claim=stale_claim(self.ctx))
        if not self.scheduler.running:
            return
        self._next_due = next_due
        if next_due is None:
            if self.scheduler.get_job(NEXT_JOB):
                self.scheduler.remove_job(NEXT_JOB)
            return
        delay = max(next_due - self.ctx.clock(), timedelta(0))
        run_date = _machine_now() + delay
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

    async def _run_due(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._track(task)
        async with self._lock:
            try:
                await run_due_reminders(self.ctx)
                async with self.ctx.db.session() as session:  # replays older than a day guard nothing
                    await submission_store.prune(session, self.ctx.clock() - timedelta(days=1))
            except Exception:  # noqa: BLE001 - the scheduler must keep running
                log.exception("running due reminders failed; the next sweep retries")
        await self.wake()

    async def _sync(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._track(task)
        started, outcome = time.perf_counter(), "failed"
        try:
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
            await roll_series(self.ctx)
        except Exception:  # noqa: BLE001 - a failing roll never stops the bot; the next pass retries
            log.exception("rolling recurring maintenance forward failed; retrying at the next interval")

    def _track(self, task: asyncio.Task) -> None:
        self._running.add(task)
        task.add_done_callback(self._running.discard)
