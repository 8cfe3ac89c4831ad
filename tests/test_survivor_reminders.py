"""A reminder is on time whichever replica lives: two `sitrep run` processes on one database,
one plans two windows from Slack and is killed with `kill -9` before they start; the other
posts both "started" replies at their time, not at its once-a-minute sweep. On a SQLite file
and on PostgreSQL.

The processes run on real time, so the windows start at a whole minute (Slack's picker picks
minutes) 25 s or more ahead; each reply's delay is the fake Slack's receipt time minus the
window's start."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from bot.slack.posts import PostTag
from scheduler.runner import SWEEP_EVERY
from tests.support.harness import CHANNEL
from tests.support.process import migrated_appfirst_env
from tests.support.replicas import Replicas, next_minute, query, schedule_from_slack

pytestmark = [pytest.mark.both_databases, pytest.mark.slow(seconds=55)]  # 40 to 100 s per database

#: SPEC: "within a few seconds"; the issue's bound is 2 s. The test allows more, so that it
#: passes beside two CPU-bound processes; the measured delays are printed (`-s`).
BOUND = timedelta(seconds=8)
#: How many windows the planner has announced and stored the announcement of.
ANNOUNCED = "SELECT count(*) FROM maintenance_windows WHERE message_ts IS NOT NULL"
#: The longest the two replicas may take to start here (see `sweeps_clear_of`).
BOOT = timedelta(seconds=20)


def utcnow() -> datetime:
    return datetime.now(UTC)


def started_receipts(slack) -> list[tuple[float, int]]:
    """(wall-clock time the fake Slack took it, window id) of every "started" reply."""
    to_wall = time.time() - time.monotonic()  # the fake runs in this process: one clock pair
    found = []
    for at, method, args in list(slack.accepted):
        meta = args.get("metadata") or {}
        meta = json.loads(meta) if isinstance(meta, str) else meta
        payload = meta.get("event_payload") or {}
        if method == "chat.postMessage" and meta.get("event_type") == PostTag.REMINDER and payload.get("kind") == "started":
            found.append((at + to_wall, payload.get("window_id")))
    return found


def await_a_clear_phase() -> None:
    """Before the survivor starts: wait, if need be, until a start now puts its once-a-minute
    sweep (60 s apart from its scheduler's start, within `BOOT`) clear of the BOUND after a
    whole minute, where the windows start. Otherwise a bot that only sweeps would pass by
    luck, and this test must fail without the fix. Alignment only: nothing is proven by it."""
    phase = utcnow().second + utcnow().microsecond / 1e6
    first_clear = BOUND.total_seconds() + 1
    if phase < first_clear or phase > 60 - 1 - BOOT.total_seconds():
        time.sleep((first_clear - phase) % 60 + 0.1)


def sweeps_clear_of(start: datetime, low: datetime, high: datetime) -> bool:
    """Whether no sweep of a replica whose scheduler started between `low` and `high` can
    fall from 1 s before `start` to 1 s past the BOUND after it."""
    return not any(
        low + k * SWEEP_EVERY <= start + BOUND + timedelta(seconds=1) and high + k * SWEEP_EVERY >= start - timedelta(seconds=1)
        for k in range(1, 5)
    )


def test_the_survivor_posts_on_time_the_reminders_a_killed_replica_planned(full_env, database_url, tmp_path, slack, appfirst):
    appfirst.shift = timedelta(0)  # the time-shift learning has its own tests
    env = migrated_appfirst_env(
        full_env,
        database_url,
        tmp_path,
        SITREP_REMINDER_LEAD="0",
        SITREP_OVERRUN_WARNING="0",
        SITREP_UPDATE_NUDGE="0",
        SITREP_SYNC_INTERVAL="3600",  # the first sync only, before anything is planned
    )
    await_a_clear_phase()
    spawned = utcnow()
    with Replicas(env, tmp_path, 2) as replicas:
        planner, survivor = replicas.replicas
        start = next_minute(utcnow(), at_least=timedelta(seconds=25))
        assert sweeps_clear_of(start, spawned, utcnow()), "the replicas took too long to start for this test's alignment"
        for title in ("Primary failover", "Cache flush"):
            schedule_from_slack(replicas, slack, title=title, start=start, end=start + timedelta(hours=1), via=planner)
        slack.wait_for(lambda: len([m for m in slack.messages(CHANNEL) if not m.get("thread_ts")]) == 2, timeout=15)
        # And stored: killed between Slack taking an announcement and its ts being written, the
        # planner would hold that post's claim, and the survivor would rightly wait until the
        # planner counts as gone (three heartbeats) before posting into its thread (a loaded
        # machine once made that 20 s). This test is of a planner killed after its work.
        slack.wait_for(lambda: query(database_url, ANNOUNCED) == [(2,)], timeout=15)
        assert utcnow() < start - timedelta(seconds=5), "planned too close to the start: the setup is too slow here"
        planner.kill()

        wait = (start - utcnow() + SWEEP_EVERY).total_seconds()  # at worst, the sweep after the start
        receipts = slack.wait_for(lambda: len(started_receipts(slack)) >= 2 and started_receipts(slack), timeout=wait)
        output = survivor.output()
    delays = sorted(at - start.timestamp() for at, _ in receipts)
    print(f"\n{database_url.split(':')[0]}: started replies {', '.join(f'{d:.2f}' for d in delays)} s after their time")
    assert len(receipts) == 2 and len({window for _, window in receipts}) == 2, receipts
    assert all(-0.5 <= d <= BOUND.total_seconds() for d in delays), (delays, output[-6000:])
    assert "Traceback" not in output, output
