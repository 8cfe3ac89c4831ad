"""A series' occurrence is created once however many replicas roll it forward, through two
real `sitrep run` processes on one database (a SQLite file, PostgreSQL) and the fake
AppFirst: a daily series whose next occurrence has entered the horizon is rolled by both at
once; the one that claims the occurrence is caught mid-create and killed with `kill -9`.
The survivor takes the stale claim over, looks for the window upstream before creating
anything, and the occurrence ends as one window upstream, one stored (linked to its series)
and one announcement naming the series: whether the killed create had reached AppFirst
(carried out, its reply never sent: found and adopted) or not (stalled before AppFirst acted
on it: created once, by the survivor).

The processes run on real time. Each rolls every `SITREP_SYNC_INTERVAL` (10 s, the least)
from 5 s after its start, and a replica silent for three heartbeats (`SITREP_HEARTBEAT`,
1 s here) is gone: the survivor takes the claim over at its first roll after that. Nothing
is waited for but what the test looks for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot.services.maintenance_forms import ScheduleForm
from bot.services.recurrence import Repeat
from bot.services.series import new_series
from store import series as series_store
from store.models import MaintenanceWindow, SeriesOccurrence
from store.states import OccurrenceState
from tests.support.harness import CHANNEL
from tests.support.maintenance import announcements
from tests.support.process import in_store, migrated_appfirst_env, wait_until
from tests.support.replicas import Replicas, next_minute

pytestmark = [pytest.mark.both_databases, pytest.mark.slow(seconds=20)]  # 20 to 40 s per case

TITLE = "Kernel patching"
#: The occurrence rolled: the series began two days ago, at today's time.
INDEX = 2


def add_daily_series(database_url: str, start: datetime) -> int:
    """A daily series, as the schedule form stores one, begun two days before `start`: its
    occurrence at `start` is within the horizon (1 day) and not created yet, the next one is
    beyond it."""
    first = start - timedelta(days=INDEX)
    form = ScheduleForm(
        title=TITLE,
        start=first,
        end=first + timedelta(hours=1),
        servers_text="1",
        repeat=Repeat.DAILY,
        times_text="10",
        zone="UTC",
    )
    series = new_series(form, backend="appfirst", user_id="U123", channel_id=CHANNEL, now=datetime.now(UTC))
    return in_store(database_url, lambda session: _added(session, series))


async def _added(session, series) -> int:
    return (await series_store.add_series(session, series)).id


def claims(database_url: str) -> list[tuple[int, str, str | None, int | None]]:
    """(index, state, claimed_by, window id) of every occurrence claim."""

    async def read(session):
        rows = await session.scalars(select(SeriesOccurrence).order_by(SeriesOccurrence.index))
        return [(r.index, r.state, r.claimed_by, r.window_id) for r in rows]

    return in_store(database_url, read)


def stored(database_url: str) -> list[MaintenanceWindow]:
    async def read(session):
        return list((await session.scalars(select(MaintenanceWindow).order_by(MaintenanceWindow.id))).all())

    return in_store(database_url, read)


def creates(appfirst) -> list:
    return [r for r in appfirst.requests if r.method == "POST" and r.path.rstrip("/").endswith("/maintenance_windows")]


@pytest.mark.parametrize("reached", [True, False], ids=["create-carried-out", "create-not-carried-out"])
def test_a_replica_killed_mid_create_leaves_the_occurrence_to_the_survivor_once(
    reached, full_env, database_url, tmp_path, slack, appfirst
):
    appfirst.shift = timedelta(0)  # the time-shift learning has its own tests
    env = migrated_appfirst_env(
        full_env, database_url, tmp_path, SITREP_ANNOUNCE_HORIZON="1", SITREP_SYNC_INTERVAL="10", SITREP_HEARTBEAT="1"
    )
    start = next_minute(datetime.now(UTC), at_least=timedelta(hours=2))
    series_id = add_daily_series(database_url, start)
    if reached:
        appfirst.hold_replies(1, seconds=120)  # carried out; the reply waits past any client's patience
    else:
        appfirst.stall_creates(1)  # recorded, never carried out, never answered

    with Replicas(env, tmp_path, 2) as replicas:
        # Both roll at once; the one whose claim won sends the create, and hears nothing back.
        wait_until(lambda: creates(appfirst), 60, "the first create")
        [(index, state, holder, _)] = wait_until(lambda: claims(database_url), 10, "the claim")
        assert (index, state) == (INDEX, OccurrenceState.CREATING) and holder is not None
        victim = replicas.by_instance(holder)
        victim.kill()
        [survivor] = replicas.alive()
        # Killed holding its claim, mid-create (the claim would be given back on a timeout).
        assert claims(database_url) == [(INDEX, OccurrenceState.CREATING, victim.instance_id, None)]
        assert stored(database_url) == []  # the sync leaves an occurrence mid-create to its claim
        assert len(appfirst.windows) == (1 if reached else 0)

        def done():
            rows = claims(database_url)
            return rows and rows[0][1] == OccurrenceState.CREATED and all(w.message_ts for w in stored(database_url))

        wait_until(done, 90, "the survivor to settle the occurrence")
        assert survivor.stop() == 0  # a clean stop lets any pass under way finish
        output = survivor.output()

    # One window upstream, created once: by the killed replica (and found), or by the survivor.
    [upstream] = appfirst.windows.values()
    assert (upstream["reason"], upstream["start"], upstream["end"], upstream["servers"]) == (
        TITLE,
        start,
        start + timedelta(hours=1),
        [1],
    )
    assert len(creates(appfirst)) == (1 if reached else 2)
    # One window stored, as the occurrence of its series, by the person who scheduled it.
    [window] = stored(database_url)
    assert (window.upstream_id, window.series_id, window.series_index, window.created_by) == (
        str(upstream["id"]),
        series_id,
        INDEX,
        "U123",
    )
    assert claims(database_url) == [(INDEX, OccurrenceState.CREATED, None, window.id)]
    # Announced once, naming the series.
    [announcement] = announcements(slack)
    assert announcement["ts"] == window.message_ts
    assert "Repeats every day at" in str(announcement["blocks"]), announcement
    # The survivor took the claim over and looked upstream first.
    looked = "was found upstream" if reached else "is not upstream; creating it"
    assert f"maintenance series {series_id}: occurrence {INDEX}, left by a replica now gone, {looked}" in output, output
    assert "Traceback" not in output, output
