"""Two real `sitrep run` processes on one database race the same first announcements
(stored windows that came within the horizon, announced by each one's first sync) and the
same "started" reminders, which for a window never announced announce it first: each
window has one announcement and one "started" reply. On a SQLite file and on PostgreSQL."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select

from store.models import MaintenanceWindow, Reminder
from store.states import ReminderKind
from tests.support.harness import CHANNEL, free_port
from tests.support.maintenance import announcements
from tests.support.process import in_store, migrated_appfirst_env, start_sitrep, wait_healthy

pytestmark = pytest.mark.both_databases


def stored_unannounced(database_url: str, windows: list[tuple[int, datetime]]) -> None:
    """Windows made in AppFirst, stored by an earlier sync beyond the horizon: no
    announcement yet, their "started" and "ended" reminders planned."""

    async def store(session) -> None:
        now = datetime.now(UTC)
        for upstream_id, start in windows:
            window = MaintenanceWindow(
                backend="appfirst", upstream_id=str(upstream_id), title=f"Planned {upstream_id}", start=start,
                end=start + timedelta(hours=1), servers=[1], channel_id=CHANNEL, created_at=now, updated_at=now,
            )  # fmt: skip
            session.add(window)
            await session.flush()
            session.add(Reminder(window_id=window.id, kind=ReminderKind.STARTED, due_at=start))
            session.add(Reminder(window_id=window.id, kind=ReminderKind.ENDED, due_at=window.end))

    in_store(database_url, store)


def started_replies(slack) -> list[dict]:
    return [m for m in slack.messages(CHANNEL) if ((m.get("metadata") or {}).get("event_payload") or {}).get("kind") == "started"]


def first_sync_done(port: str) -> bool:
    """Whether the process whose METRICS_PORT is `port` has counted a sync run (any outcome)."""
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return re.search(r'^sitrep_sync_seconds_count\{outcome="\w+"\} [1-9]', metrics, re.M) is not None


def all_recorded(database_url: str) -> bool:
    """Every window's announcement and every "started" reply due so far stored as posted."""

    async def read(session) -> bool:
        unannounced = await session.scalar(
            select(func.count()).select_from(MaintenanceWindow).where(MaintenanceWindow.message_ts.is_(None))
        )
        started = (await session.execute(select(Reminder.state).where(Reminder.kind == ReminderKind.STARTED))).scalars()
        return unannounced == 0 and sorted(started) == ["pending", "pending", "posted", "posted"]

    return in_store(database_url, read)


def test_two_processes_announce_and_remind_each_window_once(full_env, database_url, tmp_path, slack, appfirst):
    env = migrated_appfirst_env(full_env, database_url, tmp_path, SITREP_REMINDER_LEAD="0", SITREP_OVERRUN_WARNING="0")
    now = datetime.now(UTC).replace(microsecond=0)
    soon, later = now + timedelta(seconds=12), now + timedelta(days=2)  # a start during the test; one ahead
    windows = [(appfirst.add_window(start, start + timedelta(hours=1), reason=f"Planned {n}", servers=[1]), start)
               for n, start in enumerate((soon, soon, later, later))]  # fmt: skip
    stored_unannounced(database_url, windows)

    ports = [str(free_port()), str(free_port())]
    metrics_ports = [str(free_port()), str(free_port())]  # /metrics is served on METRICS_PORT
    processes = [
        start_sitrep(env | {"PORT": port, "METRICS_PORT": metrics}, tmp_path)
        for port, metrics in zip(ports, metrics_ports, strict=True)
    ]
    try:
        for port, process in zip(ports, processes, strict=True):
            wait_healthy(f"http://127.0.0.1:{port}", process)
        # Both first syncs (5 s after start) find four windows to announce; at `soon` two
        # "started" reminders are due on both.
        slack.wait_for(lambda: len(announcements(slack)) >= 4 and len(started_replies(slack)) >= 2, timeout=40)
        # Room for a second post, were there one: each process has finished its first sync (or
        # skipped it, another one syncing), and every post is recorded, so no claim is left
        # for a late pass to win.
        slack.wait_for(lambda: all(first_sync_done(port) for port in metrics_ports) and all_recorded(database_url), timeout=40)
    finally:
        outputs = []
        for process in processes:
            process.terminate()
            try:
                outputs.append(process.communicate(timeout=40)[0])
            except subprocess.TimeoutExpired:
                process.kill()
                outputs.append(process.communicate()[0])
    for output in outputs:
        assert "Traceback" not in output, output
    assert len(announcements(slack)) == 4, slack.dump()
    assert sorted(m["metadata"]["event_payload"]["window_id"] for m in announcements(slack)) == [1, 2, 3, 4]
    assert len(started_replies(slack)) == 2, slack.dump()
