"""APScheduler on the bot's own loop. It holds no state of its own: it only wakes the bot
at the next due time from the store, sweeps once a minute in case another process changed
the rows, and runs the periodic sync."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.context import AppContext
from scheduler.reminders import run_due_reminders
from store import reminders as reminder_store

log = logging.getLogger(__name__)

NEXT_JOB = "sitrep-reminders-next"
SWEEP_JOB = "sitrep-reminders-sweep"
SYNC_JOB = "sitrep-maintenance-sync"
SWEEP_EVERY = timedelta(seconds=60)
FIRST_SYNC_AFTER = timedelta(seconds=5)


class ReminderScheduler:
    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        self.scheduler = AsyncIOScheduler(
            timezone=timezone.utc, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        )
        self._lock = asyncio.Lock()
        self._running: set[asyncio.Task] = set()

    async def start(self) -> None:
        self.scheduler.start()
        self.ctx.wake_reminders = self.wake
        self.scheduler.add_job(self._run_due, "interval", seconds=SWEEP_EVERY.total_seconds(), id=SWEEP_JOB)
        if self.ctx.maintenance is not None:
            self.scheduler.add_job(
                self._sync,
                "interval",
                seconds=self.ctx.settings.sitrep_sync_interval,
                id=SYNC_JOB,
                next_run_time=datetime.now(timezone.utc) + FIRST_SYNC_AFTER,
            )
        # Catch up on whatever fell due while the bot was down, then plan the next wake-up.
        self._track(asyncio.create_task(self._run_due()))

    async def stop(self) -> None:
        """Stop taking new work, and let a delivery under way finish (its claim protects it)."""
        self.ctx.wake_reminders = None
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self._running:
            await asyncio.wait(self._running, timeout=10)

    async def wake(self) -> None:
        """Re-plan the one-off job for the earliest pending reminder."""
        async with self.ctx.db.session() as session:
            next_due = await reminder_store.next_due_at(session)
        if not self.scheduler.running:
            return
        if next_due is None:
            if self.scheduler.get_job(NEXT_JOB):
                self.scheduler.remove_job(NEXT_JOB)
            return
        run_date = max(next_due, datetime.now(timezone.utc))
        self.scheduler.add_job(self._run_due, "date", run_date=run_date, id=NEXT_JOB, replace_existing=True)

    def next_wake(self) -> datetime | None:
        job = self.scheduler.get_job(NEXT_JOB)
        return job.next_run_time if job else None

    async def _run_due(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._track(task)
        async with self._lock:
            try:
                await run_due_reminders(self.ctx)
            except Exception:  # noqa: BLE001 - the scheduler must keep running
                log.exception("running due reminders failed; the next sweep retries")
        await self.wake()

    async def _sync(self) -> None:
        from scheduler.sync import sync_windows

        task = asyncio.current_task()
        if task is not None:
            self._track(task)
        try:
            await sync_windows(self.ctx)
        except Exception:  # noqa: BLE001 - a failing sync never stops the bot
            log.exception("maintenance sync failed; retrying at the next interval")

    def _track(self, task: asyncio.Task) -> None:
        self._running.add(task)
        task.add_done_callback(self._running.discard)
