"""Replicas on PostgreSQL, run by hand: `python bench/replicas.py [--reminders 300] [--runs 3]`.

For 1, 2 and 3 `sitrep run` processes on one fresh PostgreSQL database (127.0.0.1:5432, as the
suite uses): N maintenance windows, already announced, whose "started" reminders all fall due
at the same instant; the processes post them against the fake Slack. Reports the throughput
(reminders from the due time until the last is in the channel), the share each process took,
and duplicates (a reminder in the channel more than once). Then the same with 3 processes
and one killed with `kill -9` a third of the way in: duplicates, missing, and the time until
the last is in. Pacing: `SITREP_TEST_SPEEDUP` (100 for the throughput runs, so the channel's
pace is not what is measured; 20 for the kill runs, so a claim goes stale after 6 s as in
tests/test_replicas.py). min/median/max of `--runs` runs each."""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slack_sdk import WebClient  # noqa: E402

from bot.slack.posts import PostTag  # noqa: E402
from store.db import Database  # noqa: E402
from store.models import MaintenanceWindow, Reminder  # noqa: E402
from store.states import ReminderKind, WindowState  # noqa: E402
from tests.support.fakes.slack_api import FakeSlack  # noqa: E402
from tests.support.fakes.statuspage import FakeStatusPage  # noqa: E402
from tests.support.harness import SIGNING_SECRET  # noqa: E402
from tests.support.postgres import PostgresDatabases, unreachable  # noqa: E402
from tests.support.process import SPEC_VARIABLES  # noqa: E402
from tests.support.replicas import Replicas  # noqa: E402

CHANNEL = "C0SITREP"
START_AHEAD = timedelta(seconds=12)  # time for the processes to start before the reminders fall due


async def seed(url: str, slack: FakeSlack, n: int, due: datetime) -> None:
    """N windows announced in the channel (posted straight to the fake), each with its
    "started" reminder due at `due`."""
    web = WebClient(token=slack.token, base_url=slack.url)
    db = Database(url)
    await db.prepare()
    try:
        async with db.session() as session, session.begin():
            for i in range(n):
                ts = web.chat_postMessage(channel=CHANNEL, text=f"Maintenance {i}")["ts"]
                window = MaintenanceWindow(
                    backend="statuspage",
                    upstream_id=f"bench-{i}",
                    title=f"Bench {i}",
                    start=due,
                    end=due + timedelta(hours=1),
                    state=WindowState.SCHEDULED,
                    channel_id=CHANNEL,
                    message_ts=ts,
                    created_by="U1",
                    created_at=due - timedelta(hours=1),
                    updated_at=due - timedelta(hours=1),
                )
                session.add(window)
                await session.flush()
                session.add(Reminder(window_id=window.id, kind=ReminderKind.STARTED, due_at=due))
    finally:
        await db.dispose()


def posted(slack: FakeSlack) -> list[tuple[float, int]]:
    """(monotonic time Slack took it, window id) of each reminder in the channel."""
    out = []
    for at, method, args in slack.accepted:
        meta = args.get("metadata") or {}
        if isinstance(meta, str):
            import json  # noqa: PLC0415 - bench only

            meta = json.loads(meta)
        if method == "chat.postMessage" and meta.get("event_type") == PostTag.REMINDER:
            out.append((at, meta["event_payload"]["window_id"]))
    return out


def one_run(databases: PostgresDatabases, processes: int, n: int, *, kill: bool, speedup: int) -> dict:
    url = databases.create(f"_{processes}{'k' if kill else ''}_{time.monotonic_ns() % 10**6}")
    with FakeSlack() as slack, FakeStatusPage() as sp, tempfile.TemporaryDirectory() as tmp:
        due = datetime.now(UTC) + START_AHEAD
        asyncio.run(seed(url, slack, n, due))
        env = {k: v for k, v in os.environ.items() if k not in SPEC_VARIABLES} | {
            "PYTHONUNBUFFERED": "1",
            "SLACK_BOT_TOKEN": slack.token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.url,
            "SITREP_CHANNEL": CHANNEL,
            "STATUSPAGE_URL": sp.url,
            "STATUSPAGE_API_KEY": sp.api_key,
            "DATABASE_URL": url,
            "SITREP_REMINDER_LEAD": "0",
            "SITREP_OVERRUN_WARNING": "0",
            "SITREP_UPDATE_NUDGE": "0",
            "SITREP_SYNC_INTERVAL": "300",
            "SITREP_TEST_SPEEDUP": str(speedup),
            "LOG_LEVEL": "INFO",
        }
        slack.accepted.clear()
        with Replicas(env, Path(tmp), processes) as replicas:
            if datetime.now(UTC) >= due:
                raise SystemExit("the processes took longer to start than START_AHEAD; raise it")
            due_mono = time.monotonic() + (due - datetime.now(UTC)).total_seconds()
            killed = None
            deadline = time.monotonic() + 120
            while len({w for _, w in posted(slack)}) < n and time.monotonic() < deadline:
                if kill and killed is None and len(posted(slack)) >= n // 3:
                    killed = replicas.alive()[0]
                    killed.kill()
                time.sleep(0.02)
            done = posted(slack)
            for replica in replicas.alive():
                replica.stop()
        counts = collections.Counter(w for _, w in done)
        last = max((at for at, _ in done), default=due_mono)
        shares = sorted((count for _, count in asyncio.run(_shares(url))), reverse=True)
    return {
        "seconds": last - due_mono,
        "per_second": len(counts) / max(last - due_mono, 1e-9),
        "duplicates": sum(c - 1 for c in counts.values()),
        "missing": n - len(counts),
        "shares": shares,
    }


async def _shares(url: str) -> list[tuple[str, int]]:
    from sqlalchemy import func, select  # noqa: PLC0415 - bench only

    db = Database(url)
    try:
        async with db.session() as session:
            rows = await session.execute(select(Reminder.claimed_by, func.count()).group_by(Reminder.claimed_by))
            return [(who, count) for who, count in rows]
    finally:
        await db.dispose()


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    return "/".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reminders", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    reason = unreachable()
    if reason:
        raise SystemExit(reason)
    databases = PostgresDatabases()
    try:
        print(f"{args.reminders} reminders due at once on PostgreSQL, min/median/max of {args.runs} runs:")
        for processes in (1, 2, 3):
            runs = [one_run(databases, processes, args.reminders, kill=False, speedup=100) for _ in range(args.runs)]
            print(
                f"  {processes} process(es): {spread([r['per_second'] for r in runs])} reminders/s, "
                f"all in {spread([r['seconds'] for r in runs])} s, duplicates {[r['duplicates'] for r in runs]}, "
                f"missing {[r['missing'] for r in runs]}, shares {[r['shares'] for r in runs]}"
            )
        runs = [one_run(databases, 3, args.reminders, kill=True, speedup=20) for _ in range(args.runs)]
        print(
            f"  3 processes, one killed with kill -9 a third of the way in: all in {spread([r['seconds'] for r in runs])} s, "
            f"duplicates {[r['duplicates'] for r in runs]}, missing {[r['missing'] for r in runs]}"
        )
    finally:
        databases.drop_all()


if __name__ == "__main__":
    main()
