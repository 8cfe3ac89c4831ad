"""The periodic sync: windows made, moved or deleted outside Slack."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from scheduler.reminders import run_due_reminders
from scheduler.sync import sync_windows
from store.models import MaintenanceWindow
from tests.conftest import CHANNEL
from tests.harness import BotUnderTest
from tests.test_reminders import reminder_posts

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def clock(upstream_clock):
    upstream_clock.set(T0)
    return upstream_clock


@pytest.fixture
def appfirst_bot(appfirst_settings, clock):
    with BotUnderTest(appfirst_settings, clock=clock) as bot:
        yield bot


@pytest.fixture
def statuspage_bot(settings, clock):
    with BotUnderTest(settings, clock=clock) as bot:
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


def test_an_unknown_in_progress_status_page_window_is_announced_as_started(statuspage_bot, statuspage, slack, clock):
    statuspage.add_maintenance("Made on the status page", T0 - timedelta(minutes=5), T0 + timedelta(hours=1))
    assert sync(statuspage_bot).adopted == 1
    [window] = windows(statuspage_bot)
    assert window.state == "in_progress" and window.created_by is None
    statuspage_bot.run(run_due_reminders(statuspage_bot.ctx))
    # The bot's own scheduler, woken by the sync, may be the one that claimed and is posting it.
    slack.wait_for(lambda: reminder_posts(slack, window, "started"))
    assert len(reminder_posts(slack, window, "started")) == 1

    # Once it leaves the in-progress list it has ended: "ended" is posted once.
    clock.advance(hours=2)
    assert sync(statuspage_bot).ended == 1
    statuspage_bot.run(run_due_reminders(statuspage_bot.ctx))
    sync(statuspage_bot)
    statuspage_bot.run(run_due_reminders(statuspage_bot.ctx))
    slack.wait_for(lambda: reminder_posts(slack, window, "ended"))
    assert len(reminder_posts(slack, window, "ended")) == 1
    slack.wait_for(lambda: windows(statuspage_bot)[0].state == "completed")


@pytest.mark.parametrize("failure", ["500", "timeout", "malformed", "trailing-comma", "401"])
def test_a_failing_sync_keeps_the_bot_running(appfirst_bot, appfirst, slack, failure, caplog):
    appfirst.add_window(T0 + timedelta(hours=1), T0 + timedelta(hours=2), reason="Kept")
    sync(appfirst_bot)
    if failure == "500":
        appfirst.fail_status = 500
    elif failure == "timeout":
        appfirst.latency = 3.0
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

    backend = appfirst_bot.ctx.maintenance
    real_list = backend.list_windows

    async def slow_list():
        listed = await real_list()  # the list is read first ...
        form = ScheduleForm(title="Made meanwhile", start=T0 + timedelta(hours=1), end=T0 + timedelta(hours=2), servers_text="1")
        await MaintenanceService(appfirst_bot.ctx).schedule(form, user_id="U123", channel_id=None)  # ... then this lands
        return listed

    monkeypatch.setattr(backend, "list_windows", slow_list)
    report = sync(appfirst_bot)
    assert report.vanished == 0
    assert [w.state for w in windows(appfirst_bot)] == ["scheduled"]
