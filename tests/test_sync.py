"""The periodic sync: windows made, moved or deleted outside Slack."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from bot.services import windows as windows_service
from scheduler.reminders import run_due_reminders
from scheduler.sync import SYNC_LOCK, SyncReport, sync_windows
from store.db import Database
from store.models import MaintenanceWindow
from tests.support.dates import T0, WINTER_END, WINTER_START, YEAR
from tests.support.fakes.slack_api import WAIT_BOUND
from tests.support.harness import CHANNEL, PAST_IMPATIENT, BotUnderTest
from tests.support.maintenance import (
    announcements,
    list_answer,
    open_modal,
    schedule_values,
    wait_announcement,
    wait_answer,
)
from tests.support.queries import recorded_statements
from tests.support.reminders import reminder_posts

pytestmark = pytest.mark.both_databases  # claims and compare-and-set on SQLite and PostgreSQL


@pytest.fixture
def clock(upstream_clock):
    upstream_clock.set(T0)
    return upstream_clock


@pytest.fixture
def appfirst_bot(appfirst_settings, clock, upstream_timeout):
    with BotUnderTest(appfirst_settings, clock=clock, http_timeout=upstream_timeout) as bot:
        yield bot


@pytest.fixture
def statuspage_bot(settings, clock, upstream_timeout):
    with BotUnderTest(settings, clock=clock, http_timeout=upstream_timeout) as bot:
        # These tests drive the sync and the reminders on the fake clock themselves; the live
        # timers wake on the real clock and would race them.
        bot.run(bot.bot.scheduler.stop())
        yield bot


def windows(bot) -> list[MaintenanceWindow]:
    async def read():
        async with bot.ctx.db.session() as session:
            return list((await session.execute(select(MaintenanceWindow).order_by(MaintenanceWindow.id))).scalars())

    return bot.run(read())


def sync(bot):
    return bot.run(sync_windows(bot.ctx))


def test_a_new_appfirst_window_is_announced_and_gets_reminders(appfirst_bot, appfirst, slack, clock):
    appfirst.add_window(T0 + timedelta(hours=1), T0 + timedelta(hours=2), reason="Kernel patching", servers=[7])
    appfirst.add_window(T0 - timedelta(days=30), T0 - timedelta(days=29), reason="Old history")
    report = sync(appfirst_bot)
    assert report.adopted == 1
    [window] = [w for w in windows(appfirst_bot) if w.state != "completed"]
    assert window.title == "Kernel patching" and window.created_by is None and window.servers == [7]
    parent = slack.message(CHANNEL, window.message_ts)
    assert "Kernel patching" in json.dumps(parent["blocks"])
    assert sync(appfirst_bot).adopted == 0  # idempotent
    assert len([m for m in slack.messages(CHANNEL) if "Old history" in json.dumps(m.get("blocks"))]) == 0

    clock.advance(hours=1)
    appfirst_bot.run(run_due_reminders(appfirst_bot.ctx))
    assert len(reminder_posts(slack, window, "started")) == 1


def test_a_window_moved_on_appfirst_is_rescheduled(appfirst_bot, appfirst, slack, clock):
    upstream = appfirst.add_window(T0 + timedelta(hours=1), T0 + timedelta(hours=2), reason="Move me")
    sync(appfirst_bot)
    appfirst.windows[upstream]["start"] = T0 + timedelta(hours=3)
    appfirst.windows[upstream]["end"] = T0 + timedelta(hours=4)
    assert sync(appfirst_bot).moved == 1
    [window] = windows(appfirst_bot)
    assert window.start == T0 + timedelta(hours=3)
    thread = slack.thread(CHANNEL, window.message_ts)
    assert "changed on" in json.dumps(thread[-1]["blocks"])

    clock.advance(hours=1)
    appfirst_bot.run(run_due_reminders(appfirst_bot.ctx))
    assert reminder_posts(slack, window, "started") == []
    clock.advance(hours=2)
    appfirst_bot.run(run_due_reminders(appfirst_bot.ctx))
    assert len(reminder_posts(slack, window, "started")) == 1


def test_a_window_deleted_on_appfirst_is_cancelled_in_its_thread(appfirst_bot, appfirst, slack, clock):
    upstream = appfirst.add_window(T0 + timedelta(hours=1), T0 + timedelta(hours=2), reason="Delete me")
    sync(appfirst_bot)
    del appfirst.windows[upstream]
    assert sync(appfirst_bot).vanished == 1
    [window] = windows(appfirst_bot)
    assert window.state == "cancelled"
    assert "no longer on" in json.dumps(slack.thread(CHANNEL, window.message_ts)[-1]["blocks"])
    assert "Cancelled" in json.dumps(slack.calls_to("chat.update")[-1]["blocks"])
    clock.advance(hours=2)
    appfirst_bot.run(run_due_reminders(appfirst_bot.ctx))
    assert reminder_posts(slack, window) == []


# --- the status page: it lists only what someone marked in progress, maybe late ---------------


def run_reminders(bot) -> None:
    bot.run(run_due_reminders(bot.ctx))


def test_an_unknown_window_listed_after_its_start_is_announced_as_started_once(statuspage_bot, statuspage, slack, clock):
    upstream = statuspage.add_maintenance("Made outside", T0 - timedelta(minutes=20), T0 + timedelta(hours=1))
    assert sync(statuspage_bot).adopted == 0  # past its start, but nobody marked it in progress yet
    assert windows(statuspage_bot) == []

    statuspage.start_maintenance(upstream)  # marked 20 minutes after its StartDate
    assert sync(statuspage_bot).adopted == 1
    [window] = windows(statuspage_bot)
    assert window.state == "in_progress" and window.created_by is None
    assert window.start == T0 - timedelta(minutes=20) and window.end is None  # the list gives no end
    run_reminders(statuspage_bot)
    [started] = reminder_posts(slack, window, "started")
    assert "Posted late" in json.dumps(started["blocks"])  # it was due at the StartDate

    clock.advance(minutes=5)
    assert sync(statuspage_bot).adopted == 0  # still listed: known, not adopted twice
    run_reminders(statuspage_bot)
    assert len(reminder_posts(slack, window, "started")) == 1
    assert len([m for m in slack.messages(CHANNEL) if not m.get("thread_ts")]) == 1

    # It had no end but the list: leaving the list (marked done there) is its end, posted once.
    clock.advance(hours=2)
    statuspage.finish_maintenance(upstream)
    assert sync(statuspage_bot).ended == 1
    run_reminders(statuspage_bot)
    assert sync(statuspage_bot).ended == 0
    run_reminders(statuspage_bot)
    assert len(reminder_posts(slack, window, "ended")) == 1
    slack.wait_for(lambda: windows(statuspage_bot)[0].state == "completed")


def schedule_from_slack(bot, slack) -> MaintenanceWindow:
    """Through the real modal: 14:00-16:00 UTC on 1 December (T0 is 25 November)."""
    view = open_modal(bot, slack)
    bot.submit(view, schedule_values())
    wait_announcement(slack)
    [window] = slack.wait_for(lambda: [w for w in windows(bot) if w.message_ts])
    assert (window.start, window.end) == (WINTER_START, WINTER_END)
    return window


@pytest.mark.parametrize("after_listing", ["stays listed", "leaves the list early"])
def test_a_window_listed_late_is_never_ended_early_and_ends_once_at_its_scheduled_end(
    statuspage_bot, statuspage, slack, clock, after_listing
):
    window = schedule_from_slack(statuspage_bot, slack)
    clock.set(WINTER_START)
    run_reminders(statuspage_bot)
    assert len(reminder_posts(slack, window, "started")) == 1

    # Nobody has marked it in progress on the status page yet: that says nothing about its end.
    clock.advance(minutes=3)
    report = sync(statuspage_bot)
    assert (report.ended, report.adopted, report.moved) == (0, 0, 0)
    run_reminders(statuspage_bot)
    assert windows(statuspage_bot)[0].state == "in_progress"
    assert reminder_posts(slack, window, "ended") == []

    # Listed ten minutes late: the bot's own window, not a new one.
    clock.advance(minutes=7)
    statuspage.start_maintenance(window.upstream_id)
    report = sync(statuspage_bot)
    assert (report.ended, report.adopted, report.moved) == (0, 0, 0)
    assert len(windows(statuspage_bot)) == 1
    assert len([m for m in slack.messages(CHANNEL) if not m.get("thread_ts")]) == 1

    if after_listing == "leaves the list early":
        clock.advance(minutes=30)
        statuspage.finish_maintenance(window.upstream_id)
        assert sync(statuspage_bot).ended == 0
    clock.set(WINTER_END - timedelta(minutes=1))
    sync(statuspage_bot)
    run_reminders(statuspage_bot)
    assert reminder_posts(slack, window, "ended") == []
    assert windows(statuspage_bot)[0].state == "in_progress"

    clock.set(WINTER_END)
    run_reminders(statuspage_bot)
    for _ in range(2):
        clock.advance(minutes=5)
        sync(statuspage_bot)
        run_reminders(statuspage_bot)
    [ended] = reminder_posts(slack, window, "ended")
    assert "Posted late" not in json.dumps(ended["blocks"])
    assert len(reminder_posts(slack, window, "started")) == 1
    [stored] = windows(statuspage_bot)
    assert stored.state == "completed" and stored.end == WINTER_END
    assert "Completed" in json.dumps(slack.message(CHANNEL, window.message_ts)["blocks"])


@pytest.mark.parametrize("on_the_status_page", ["in progress", "marked done already"])
def test_cancel_from_slack_ends_a_running_window(statuspage_bot, statuspage, slack, clock, on_the_status_page):
    """Resolving is the one way the bot sees a window resolved: it has no read of one window."""
    window = schedule_from_slack(statuspage_bot, slack)
    clock.set(WINTER_START + timedelta(minutes=5))
    run_reminders(statuspage_bot)
    statuspage.start_maintenance(window.upstream_id)
    sync(statuspage_bot)
    if on_the_status_page == "marked done already":
        statuspage.finish_maintenance(window.upstream_id)
        assert sync(statuspage_bot).ended == 0

    view = open_modal(statuspage_bot, slack, text=f"cancel {window.id}")
    statuspage_bot.submit(view, {})
    assert slack.wait_for(lambda: windows(statuspage_bot)[0].state == "cancelled")
    if on_the_status_page == "marked done already":
        assert "Incident already resolved." in json.dumps(wait_answer(slack, 2)["blocks"])
    assert statuspage.incidents[window.upstream_id]["Resolved"] is True
    assert slack.wait_for(lambda: "Cancelled" in json.dumps(slack.message(CHANNEL, window.message_ts)["blocks"]))

    clock.set(WINTER_END + timedelta(minutes=1))
    assert sync(statuspage_bot) == SyncReport()
    run_reminders(statuspage_bot)
    assert reminder_posts(slack, window, "ended") == []
    assert windows(statuspage_bot)[0].state == "cancelled"


def test_a_window_extended_on_the_status_page_ends_at_its_new_end(statuspage_bot, statuspage, slack, clock):
    """assumption: seed 000's list has no EndDate; a server that adds one is followed."""
    statuspage.list_end_dates = True
    window = schedule_from_slack(statuspage_bot, slack)
    clock.set(WINTER_START)
    run_reminders(statuspage_bot)
    statuspage.start_maintenance(window.upstream_id)
    assert sync(statuspage_bot).moved == 0  # listed with the end it was sent

    statuspage.incidents[window.upstream_id]["EndDate"] = f"{YEAR}-12-01T17:00:00Z"
    assert sync(statuspage_bot).moved == 1
    assert sync(statuspage_bot).moved == 0
    [stored] = windows(statuspage_bot)
    assert stored.end == WINTER_END + timedelta(hours=1) and stored.state == "in_progress"
    assert "was changed on" in json.dumps(slack.thread(CHANNEL, window.message_ts)[-1]["blocks"])

    clock.set(WINTER_END)
    run_reminders(statuspage_bot)
    assert reminder_posts(slack, window, "ended") == []
    clock.set(WINTER_END + timedelta(hours=1))
    run_reminders(statuspage_bot)
    assert len(reminder_posts(slack, window, "ended")) == 1


def test_an_adopted_window_learns_its_end_quietly_and_then_keeps_it(statuspage_bot, statuspage, slack, clock):
    upstream = statuspage.add_maintenance("Outside", T0 - timedelta(minutes=5), T0 + timedelta(hours=1))
    statuspage.start_maintenance(upstream)
    sync(statuspage_bot)
    statuspage.list_end_dates = True
    assert sync(statuspage_bot).moved == 1
    [window] = windows(statuspage_bot)
    assert window.end == T0 + timedelta(hours=1)
    assert slack.thread(CHANNEL, window.message_ts) == []  # nothing moved: it only learned its end
    assert "end not given" not in slack.message(CHANNEL, window.message_ts)["text"]

    # With an end known, leaving the list early no longer ends it.
    clock.advance(minutes=10)
    statuspage.finish_maintenance(upstream)
    assert sync(statuspage_bot).ended == 0
    run_reminders(statuspage_bot)
    assert reminder_posts(slack, window, "ended") == []
    clock.set(T0 + timedelta(hours=1))
    run_reminders(statuspage_bot)
    assert len(reminder_posts(slack, window, "ended")) == 1


@pytest.mark.upstream_times_out
@pytest.mark.parametrize("failure", ["500", "timeout", "malformed", "trailing-comma", "401"])
def test_a_failing_sync_keeps_the_bot_running(appfirst_bot, appfirst, slack, failure, caplog):
    appfirst.add_window(T0 + timedelta(hours=1), T0 + timedelta(hours=2), reason="Kept")
    sync(appfirst_bot)
    if failure == "500":
        appfirst.fail_status = 500
    elif failure == "timeout":
        appfirst.latency = PAST_IMPATIENT
    elif failure == "malformed":
        appfirst.malformed = True
    elif failure == "trailing-comma":
        appfirst.seed_trailing_comma = True
    else:
        appfirst.api_key = "rotated"
    report = sync(appfirst_bot)
    assert report.failed
    assert [w.state for w in windows(appfirst_bot)] == ["scheduled"]  # a failure is never "all deleted"
    assert appfirst_bot.http.get("/healthz").json() == {"ok": True}
    assert any("sync failed" in r.getMessage() for r in caplog.records)
    configured = appfirst_bot.settings.appfirst_api_key.get_secret_value()
    assert configured not in caplog.text and appfirst_bot.settings.appfirst_email not in caplog.text


def test_the_scheduled_sync_job_swallows_failures(appfirst_bot, appfirst):
    appfirst.fail_status = 500
    appfirst_bot.run(appfirst_bot.bot.scheduler._sync())
    assert appfirst_bot.bot.scheduler.scheduler.running


def test_two_instances_syncing_at_once_announce_a_change_once(appfirst_settings, appfirst, slack, clock):
    import threading

    upstream = appfirst.add_window(T0 + timedelta(hours=1), T0 + timedelta(hours=2), reason="Shared")
    gone = appfirst.add_window(T0 + timedelta(hours=5), T0 + timedelta(hours=6), reason="Going")
    with BotUnderTest(appfirst_settings, clock=clock) as one, BotUnderTest(appfirst_settings, clock=clock) as two:
        sync(one)
        appfirst.windows[upstream]["start"] = T0 + timedelta(hours=3)
        appfirst.windows[upstream]["end"] = T0 + timedelta(hours=4)
        del appfirst.windows[gone]
        barrier = threading.Barrier(2)
        reports = []

        def race(bot):
            barrier.wait()
            reports.append(sync(bot))

        threads = [threading.Thread(target=race, args=(b,)) for b in (one, two)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(r.moved for r in reports) == 1
        assert sum(r.vanished for r in reports) == 1
        posts = json.dumps([c["blocks"] for c in slack.calls_to("chat.postMessage")])
        assert posts.count("was changed on") == 1 and posts.count("is no longer on") == 1


def test_a_window_missing_from_a_shifted_page_is_not_cancelled(appfirst_bot, appfirst, slack, monkeypatch):
    """Pages can shift while they are read: a window missing from the list is looked up
    on its own before it is called cancelled."""
    upstream = appfirst.add_window(T0 + timedelta(hours=1), T0 + timedelta(hours=2), reason="Still here")
    sync(appfirst_bot)
    backend = appfirst_bot.ctx.maintenance
    real_list = backend.list_windows

    async def list_missing_one():
        return [w for w in await real_list() if w.upstream_id != str(upstream)]

    monkeypatch.setattr(backend, "list_windows", list_missing_one)
    assert sync(appfirst_bot).vanished == 0
    assert [w.state for w in windows(appfirst_bot)] == ["scheduled"]
    assert any(r.path == f"/api/maintenance_windows/{upstream}/" and r.method == "GET" for r in appfirst.requests)


def test_a_window_scheduled_from_slack_during_a_sync_is_not_cancelled(appfirst_bot, appfirst, slack, clock, monkeypatch):
    from bot.services.maintenance import MaintenanceService
    from bot.services.maintenance_forms import ScheduleForm
    from store.states import DraftKind

    backend = appfirst_bot.ctx.maintenance
    real_list = backend.list_windows

    async def slow_list():
        listed = await real_list()  # the list is read first ...
        form = ScheduleForm(title="Made meanwhile", start=T0 + timedelta(hours=1), end=T0 + timedelta(hours=2), servers_text="1")
        await MaintenanceService(appfirst_bot.ctx).submit(
            DraftKind.SCHEDULE, form, user_id="U123", channel_id=None
        )  # ... then this lands
        return listed

    monkeypatch.setattr(backend, "list_windows", slow_list)
    report = sync(appfirst_bot)
    assert report.vanished == 0
    assert [w.state for w in windows(appfirst_bot)] == ["scheduled"]


# --- the announcement horizon: a year of planned windows must not flood the channel --------------


def test_a_first_sync_announces_only_the_windows_inside_the_horizon_and_later_ones_once_they_enter(
    appfirst_settings, appfirst, slack, clock
):
    # 60 windows, one every 8 h 45 min: 19 inside the horizon, 8 more entering it in 3 days,
    # the rest beyond. The property needs windows on both sides of the horizon, not a year of
    # them: adopting one costs a few transactions (stored, then its reminders planned), so
    # 1,000 took ~13 s per database. What a sync costs as the windows grow is
    # `test_a_sync_with_nothing_changed_writes_nothing_and_costs_the_same_however_many_windows`.
    total = 60
    spacing = timedelta(hours=8, minutes=45)
    for i in range(1, total + 1):
        appfirst.add_window(T0 + i * spacing, T0 + i * spacing + timedelta(hours=1), reason=f"Planned {i}")
    horizon = timedelta(days=appfirst_settings.sitrep_announce_horizon)
    assert horizon == timedelta(days=7)  # the default
    with BotUnderTest(appfirst_settings, clock=clock) as bot:
        bot.run(bot.bot.scheduler.stop())  # the test drives the sync on the fake clock itself

        report = sync(bot)
        assert report.adopted == total and report.announced == 0
        inside = [i for i in range(1, total + 1) if i * spacing <= horizon]
        assert len(inside) == 19
        assert len(announcements(slack)) == 19
        stored = windows(bot)
        assert len(stored) == total and all(w.state == "scheduled" for w in stored)
        assert {w.title for w in stored if w.message_ts} == {f"Planned {i}" for i in inside}

        later = next(w for w in stored if w.title == "Planned 50")
        assert later.message_ts is None
        text = list_answer(bot, slack)
        assert f"{total} upcoming or ongoing maintenance windows" in text
        first_beyond = next(w for w in stored if w.title == "Planned 20")  # stored, not announced
        assert first_beyond.message_ts is None
        assert f"*#{first_beyond.id}* Planned 20 " in text and "not announced yet" not in text

        clock.advance(days=3)
        report = sync(bot)
        assert report.adopted == 0
        entered = [i for i in range(1, total + 1) if horizon < i * spacing <= horizon + timedelta(days=3)]
        assert report.announced == len(entered) == 8
        assert len(announcements(slack)) == 27
        announced = {w.title: w.message_ts for w in windows(bot) if w.message_ts}
        assert set(announced) == {f"Planned {i}" for i in inside + entered}
        assert len(set(announced.values())) == 27  # one announcement each
        assert sync(bot).announced == 0  # once
        assert len(announcements(slack)) == 27


def test_a_window_beyond_the_horizon_moved_upstream_is_followed_quietly(appfirst_bot, appfirst, slack, clock):
    appfirst_bot.run(appfirst_bot.bot.scheduler.stop())
    upstream = appfirst.add_window(T0 + timedelta(days=10), T0 + timedelta(days=10, hours=1), reason="Far off")
    assert sync(appfirst_bot).adopted == 1
    appfirst.windows[upstream]["start"] = T0 + timedelta(days=9)
    appfirst.windows[upstream]["end"] = T0 + timedelta(days=9, hours=1)
    assert sync(appfirst_bot).moved == 1
    [window] = windows(appfirst_bot)
    assert window.start == T0 + timedelta(days=9) and window.message_ts is None
    assert announcements(slack) == [] and slack.calls_to("chat.postMessage") == []

    clock.advance(days=2, hours=1)  # now 7 days before its start, less an hour
    assert sync(appfirst_bot).announced == 1
    [window] = windows(appfirst_bot)
    assert "Far off" in json.dumps(slack.message(CHANNEL, window.message_ts)["blocks"])
    assert sync(appfirst_bot).announced == 0 and len(announcements(slack)) == 1


def test_a_sync_with_nothing_changed_writes_nothing_and_costs_the_same_however_many_windows(
    appfirst_bot, appfirst, clock, monkeypatch
):
    """Work follows what changed: the stored side is read whole in fixed queries (never one
    per window) and nothing is written but the time the API last answered a list (what
    `/maintenance list` shows when the API is later down)."""
    monkeypatch.setattr(windows_service, "NOTE_BOUND_SECONDS", WAIT_BOUND)  # each note must land, however slow the machine
    bot = appfirst_bot
    bot.run(bot.bot.scheduler.stop())  # the test drives the sync on the fake clock itself

    def add(first: int, count: int) -> None:
        for i in range(first, first + count):
            appfirst.add_window(T0 - timedelta(days=30, hours=i), T0 - timedelta(days=30, hours=i - 1), reason=f"Old {i}")
            appfirst.add_window(T0 + timedelta(days=30, hours=i), T0 + timedelta(days=30, hours=i + 1), reason=f"Later {i}")

    costs = []
    for first, count in ((0, 20), (20, 180)):
        add(first, count)
        assert sync(bot).adopted == count  # the later ones, stored quietly beyond the horizon
        with recorded_statements(bot.ctx.db.engine) as seen:
            report = sync(bot)
        assert report == SyncReport()
        assert [s.split()[:2] for s in seen.writes()] == [["UPDATE", "upstream_facts"]]
        assert not [s for s in seen if "maintenance_windows.id =" in s]  # no window read one by one
        costs.append(list(seen))
    assert len(windows(bot)) == 200
    assert costs[0] == costs[1]


def test_only_one_instance_syncs_at_a_time_the_other_skips(appfirst_settings, appfirst, slack, clock):
    """Two replicas whose sync timers fire together: one pass reads AppFirst and adopts, the
    other finds the sync lock held and skips at once, reading nothing."""
    import threading

    for hour in range(1, 4):
        appfirst.add_window(T0 + timedelta(hours=hour), T0 + timedelta(hours=hour, minutes=30), reason=f"W{hour}")
    # Patient clients and a held list (not a latency raced against the client's timeout): the
    # pass that took the lock waits at AppFirst until the other has skipped.
    patient = {"clock": clock, "http_timeout": WAIT_BOUND}
    with BotUnderTest(appfirst_settings, **patient) as one, BotUnderTest(appfirst_settings, **patient) as two:
        appfirst.requests.clear()
        barrier = threading.Barrier(2)
        reports = {}

        def race(name, bot):
            barrier.wait()
            reports[name] = sync(bot)

        threads = [threading.Thread(target=race, args=item) for item in (("one", one), ("two", two))]
        with appfirst.hold_requests():  # the first pass is still reading the list when the second starts
            for t in threads:
                t.start()
            slack.wait_for(lambda: len(reports) == 1)  # the one that skipped, at once
        for t in threads:
            t.join()
        ran = [r for r in reports.values() if not r.skipped]
        skipped = [r for r in reports.values() if r.skipped]
        assert len(ran) == 1 and len(skipped) == 1, reports
        assert ran[0].adopted == 3 and skipped[0].adopted == 0
        lists = [r for r in appfirst.requests if r.method == "GET" and r.path.endswith("/maintenance_windows/")]
        assert len(lists) == 1  # one pass read the API, once
        assert len(announcements(slack)) == 3

        # The lock is given back: the next pass runs (and finds nothing new).
        again = sync(two)
        assert not again.skipped and again.adopted == 0


def test_the_sync_lock_is_held_by_one_holder_and_given_back(appfirst_bot):
    """`Database.exclusive` itself: a second holder is refused while the first holds it,
    then gets it, including after the first holder's work raised."""
    db = appfirst_bot.ctx.db

    async def nested():
        async with db.exclusive("x") as first:
            async with db.exclusive("x") as second:
                inner = second
            async with db.exclusive("y") as other:  # another name is another lock
                assert other
        return first, inner

    assert appfirst_bot.run(nested()) == (True, False)

    async def raising():
        async with db.exclusive("x") as held:
            assert held
            raise RuntimeError("the pass failed")

    with pytest.raises(RuntimeError):
        appfirst_bot.run(raising())

    async def again():
        async with db.exclusive("x") as held:
            return held

    assert appfirst_bot.run(again()) is True


def test_a_sync_under_way_when_the_bot_stops_gives_its_connection_and_lock_back(appfirst_settings, appfirst, slack, clock):
    """Stopping past the grace cancels the work still under way and waits for it to unwind,
    before the pool is closed: a pass left pending when the loop ends keeps its connection
    (on PostgreSQL idle, maybe in a transaction, holding the sync lock; on SQLite the lock
    file held), which `dispose` never sees and the next process's sync would skip on."""
    settings = appfirst_settings.model_copy(update={"sitrep_shutdown_grace": 0})
    bot = BotUnderTest(settings, clock=clock).start()
    with appfirst.hold_requests():  # the pass sits in AppFirst's list, its lock held
        # A pass started beside the timers, as the heartbeat starts one after a claim expires.
        bot.loop.call_soon_threadsafe(lambda: bot.loop.create_task(bot.bot.scheduler._sync()))
        slack.wait_for(lambda: appfirst.requests)
        bot.stop()

    async def after_the_stop() -> tuple[bool, int]:
        db = Database(settings.database_url)
        try:
            async with db.exclusive(SYNC_LOCK) as held:
                pass
            if not db.notifies:
                return held, 0
            async with db.engine.connect() as conn:
                others = await conn.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
                )
                return held, others.scalar_one()
        finally:
            await db.dispose()

    assert asyncio.run(after_the_stop()) == (True, 0)  # the lock free, no connection of the bot's left
