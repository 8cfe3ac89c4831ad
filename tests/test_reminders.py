"""Reminders: on time, exactly once, across restarts and processes. Time is an injected
clock; the bot's own loop runs the jobs."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from apscheduler.schedulers.base import STATE_PAUSED
from sqlalchemy import select

from bot.services.maintenance import MaintenanceService
from bot.services.maintenance_forms import ScheduleForm
from bot.services.reminders import cancel_window_reminders, schedule_window_reminders
from bot.slack.posts import PostTag
from scheduler import runner
from scheduler.reminders import run_due_reminders
from store.models import MaintenanceWindow, Reminder
from store.reminders import LONG_AGO
from store.states import DraftKind
from tests.support.dates import T0
from tests.support.fakes.slack_api import WAIT_BOUND
from tests.support.harness import CHANNEL, BotUnderTest, FakeClock
from tests.support.reminders import reminder_posts, reminders

pytestmark = pytest.mark.both_databases  # claims and compare-and-set on SQLite and PostgreSQL


@pytest.fixture
def settings(settings):
    """These scenarios count a window's heads-up, started and ended reminders; the overrun
    prompt, a fourth kind, has its own file (`test_overrun.py`)."""
    return settings.model_copy(update={"sitrep_overrun_warning": 0})


@pytest.fixture
def clock():
    return FakeClock(T0)


@pytest.fixture
def bot(settings, clock):
    with BotUnderTest(settings, clock=clock) as running:
        yield running


def schedule(bot, *, start_in=30, minutes=60, title="DB upgrade") -> MaintenanceWindow:
    now = bot.ctx.clock()
    form = ScheduleForm(title=title, start=now + timedelta(minutes=start_in), end=now + timedelta(minutes=start_in + minutes))
    done = bot.run(MaintenanceService(bot.ctx).submit(DraftKind.SCHEDULE, form, user_id="U123", channel_id="C123"))
    return done.record


def window_row(bot, window_id) -> MaintenanceWindow:
    async def read():
        async with bot.ctx.db.session() as session:
            return await session.get(MaintenanceWindow, window_id)

    return bot.run(read())


def run_due(bot) -> int:
    return bot.run(run_due_reminders(bot.ctx))


def test_each_kind_fires_at_its_time_once(bot, slack, clock):
    window = schedule(bot)
    assert set(reminders(bot, window.id)) == {"heads_up", "started", "ended"}
    assert run_due(bot) == 0

    clock.advance(minutes=14, seconds=59)
    assert run_due(bot) == 0
    clock.advance(seconds=1)  # start - 15 min
    assert run_due(bot) == 1
    heads_up = reminder_posts(slack, window, "heads_up")
    assert len(heads_up) == 1 and heads_up[0]["thread_ts"] == window.message_ts
    assert heads_up[0]["reply_broadcast"] is True and "<!date^" in json.dumps(heads_up[0]["blocks"])
    assert run_due(bot) == 0

    clock.advance(minutes=15)  # the start
    assert run_due(bot) == 1
    assert len(reminder_posts(slack, window, "started")) == 1
    assert window_row(bot, window.id).state == "in_progress"
    assert "In progress" in json.dumps(slack.calls_to("chat.update")[-1]["blocks"])

    clock.advance(minutes=60)  # the end
    assert run_due(bot) == 1
    assert run_due(bot) == 0
    assert len(reminder_posts(slack, window, "ended")) == 1
    assert window_row(bot, window.id).state == "completed"
    assert "Completed" in json.dumps(slack.calls_to("chat.update")[-1]["blocks"])
    assert {r.state for r in reminders(bot, window.id).values()} == {"posted"}
    assert all(not r.late for r in reminders(bot, window.id).values())


def test_lead_zero_has_no_heads_up(settings, slack, clock):
    with BotUnderTest(settings.model_copy(update={"sitrep_reminder_lead": 0}), clock=clock) as bot:
        window = schedule(bot)
        assert set(reminders(bot, window.id)) == {"started", "ended"}


def test_window_scheduled_inside_the_lead_has_no_heads_up(bot, slack, clock):
    window = schedule(bot, start_in=10)
    assert set(reminders(bot, window.id)) == {"started", "ended"}


def test_restart_between_scheduling_and_start_posts_each_once(settings, slack, clock):
    with BotUnderTest(settings, clock=clock) as first:
        window = schedule(first)
    clock.advance(minutes=30)  # down across the heads-up and the start
    # The live scheduler's catch-up at start posts what fell due meanwhile.
    with BotUnderTest(settings, clock=clock, live_scheduler=True) as second:
        slack.wait_for(lambda: reminder_posts(slack, window, "started"))
        run_due(second)
        clock.advance(minutes=60)
        run_due(second)
        run_due(second)
    assert len(reminder_posts(slack, window, "started")) == 1
    assert len(reminder_posts(slack, window, "ended")) == 1
    assert reminder_posts(slack, window, "heads_up") == []  # the start had come: skipped


def test_two_instances_on_one_database_post_once(settings, slack, clock):
    with BotUnderTest(settings, clock=clock) as one, BotUnderTest(settings, clock=clock) as two:
        windows = [schedule(one, title=f"Window {n}") for n in range(5)]
        for minutes in (15, 15, 60):
            clock.advance(minutes=minutes)
            barrier = threading.Barrier(2)
            results: list[int] = []

            def race(bot, barrier: threading.Barrier, results: list[int]) -> None:
                barrier.wait()
                results.append(run_due(bot))

            threads = [threading.Thread(target=race, args=(b, barrier, results)) for b in (one, two)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        for window in windows:
            for kind in ("heads_up", "started", "ended"):
                assert len(reminder_posts(slack, window, kind)) == 1, (window.id, kind)


def test_each_heartbeat_plans_the_wake_up_another_instance_made(settings, slack, clock):
    """Instance two never hears of the window instance one scheduled: its heartbeat finds the
    earliest due time in the database, so it wakes then even if instance one dies."""
    beating = settings.model_copy(update={"sitrep_heartbeat": 0.5})
    with BotUnderTest(beating, clock=clock) as one, BotUnderTest(beating, clock=clock, live_scheduler=True) as two:
        assert two.bot.scheduler.next_wake() is None
        window = schedule(one)
        heads_up = reminders(one, window.id)["heads_up"].due_at
        slack.wait_for(lambda: two.bot.scheduler.next_wake() == heads_up, timeout=10)


def test_on_postgresql_another_instance_hears_of_a_new_reminder_at_once(settings, slack, clock):
    """LISTEN/NOTIFY: with heartbeats ten minutes apart, instance two still re-plans its
    wake-up as soon as instance one schedules a window (a planner that dies right after
    planning leaves nothing late)."""
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's; SQLite replicas look up at each heartbeat")
    slow_beats = settings.model_copy(update={"sitrep_heartbeat": 600})
    with BotUnderTest(slow_beats, clock=clock) as one, BotUnderTest(slow_beats, clock=clock, live_scheduler=True) as two:
        slack.wait_for(lambda: two.bot.scheduler.listening)
        assert two.bot.scheduler.next_wake() is None
        window = schedule(one)
        heads_up = reminders(one, window.id)["heads_up"].due_at
        slack.wait_for(lambda: two.bot.scheduler.next_wake() == heads_up, timeout=10)


def _stale_claim(bot, window, kind, clock):
    async def claim():
        async with bot.ctx.db.session() as session, session.begin():
            row = (
                await session.execute(select(Reminder).where(Reminder.window_id == window.id, Reminder.kind == kind))
            ).scalar_one()
            row.state = "claimed"
            row.claimed_by = "dead-process"
            row.claimed_at = LONG_AGO  # stale on any clock

    bot.run(claim())


def test_stale_claim_already_in_slack_is_not_posted_again(bot, slack, clock):
    window = schedule(bot)
    clock.advance(minutes=30)
    _stale_claim(bot, window, "started", clock)
    # The dead process had posted it before dying.
    bot.run(
        bot.ctx.slack.chat_postMessage(
            channel=CHANNEL,
            thread_ts=window.message_ts,
            text="started",
            metadata={"event_type": PostTag.REMINDER, "event_payload": {"window_id": window.id, "kind": "started"}},
        )
    )
    slack.forget_calls()
    run_due(bot)
    assert reminder_posts(slack, window, "started") == []
    assert reminders(bot, window.id)["started"].state == "posted"
    assert window_row(bot, window.id).state == "in_progress"


def test_stale_claim_not_in_slack_is_posted(bot, slack, clock):
    window = schedule(bot)
    clock.advance(minutes=30)
    _stale_claim(bot, window, "started", clock)
    run_due(bot)
    assert len(reminder_posts(slack, window, "started")) == 1
    assert [c for c in slack.calls_to("conversations.replies") if c["ts"] == window.message_ts]


def test_a_failed_post_is_retried_once_without_doubling(bot, slack, clock):
    window = schedule(bot)
    clock.advance(minutes=30)
    slack.fail_next("chat.postMessage", error="internal_error")
    run_due(bot)
    assert reminders(bot, window.id)["started"].state == "claimed"
    run_due(bot)
    assert reminders(bot, window.id)["started"].state == "posted"
    assert len(reminder_posts(slack, window, "started")) == 2  # one refused, one posted
    posted = [
        m
        for m in slack.thread(CHANNEL, window.message_ts)
        if (m.get("metadata") or {}).get("event_payload", {}).get("kind") == "started"
    ]
    assert len(posted) == 1


def test_late_start_is_posted_marked_late(bot, slack, clock):
    window = schedule(bot)
    clock.advance(minutes=50)  # 20 minutes into the window
    run_due(bot)
    started = reminder_posts(slack, window, "started")
    assert len(started) == 1 and "late" in json.dumps(started[0]["blocks"]).lower()
    assert reminder_posts(slack, window, "heads_up") == []
    assert reminders(bot, window.id)["heads_up"].state == "skipped"
    assert reminders(bot, window.id)["started"].late is True


def test_late_end_within_the_hour_is_posted(bot, slack, clock):
    window = schedule(bot)
    clock.advance(minutes=30 + 60 + 30)
    run_due(bot)
    assert reminder_posts(slack, window, "started") == []  # the window is over
    ended = reminder_posts(slack, window, "ended")
    assert len(ended) == 1 and "late" in json.dumps(ended[0]["blocks"]).lower()
    assert window_row(bot, window.id).state == "completed"


def test_late_end_beyond_the_hour_is_recorded_as_skipped(bot, slack, clock):
    window = schedule(bot)
    clock.advance(minutes=30 + 60 + 61)
    run_due(bot)
    assert reminder_posts(slack, window) == []
    assert {r.state for r in reminders(bot, window.id).values()} == {"skipped"}


def test_editing_times_reschedules(bot, slack, clock):
    window = schedule(bot)

    async def move():
        async with bot.ctx.db.session() as session, session.begin():
            row = await session.get(MaintenanceWindow, window.id)
            row.start = row.start + timedelta(hours=2)
            row.end = row.end + timedelta(hours=2)
        await schedule_window_reminders(bot.ctx, window.id)

    bot.run(move())
    clock.advance(minutes=30)
    run_due(bot)
    assert reminder_posts(slack, window) == []
    clock.advance(hours=2)
    run_due(bot)
    assert len(reminder_posts(slack, window, "started")) == 1


def test_cancel_removes_reminders(bot, slack, clock):
    window = schedule(bot)

    async def cancel():
        async with bot.ctx.db.session() as session, session.begin():
            row = await session.get(MaintenanceWindow, window.id)
            row.state = "cancelled"
        await cancel_window_reminders(bot.ctx, window.id)

    bot.run(cancel())
    clock.advance(hours=3)
    run_due(bot)
    assert reminder_posts(slack, window) == []
    assert {r.state for r in reminders(bot, window.id).values()} == {"cancelled"}


def test_the_scheduler_plans_its_wake_up_at_the_next_due_time(bot, slack, clock):
    clock.set(T0 + timedelta(days=5 * 366))  # years ahead of the real time APScheduler uses
    window = schedule(bot)
    assert bot.bot.scheduler.next_wake() == reminders(bot, window.id)["heads_up"].due_at
    # APScheduler fires on the machine's clock: as far ahead of it as the due time is of the bot's.
    before = datetime.now(UTC)
    bot.run(bot.bot.scheduler.wake())
    after = datetime.now(UTC)
    run_at = bot.bot.scheduler.next_run_time()
    assert before + timedelta(minutes=15) <= run_at <= after + timedelta(minutes=15)
    clock.advance(minutes=15)
    run_due(bot)
    bot.run(bot.bot.scheduler.wake())
    assert bot.bot.scheduler.next_wake() == reminders(bot, window.id)["started"].due_at


def test_a_look_up_that_began_before_a_change_does_not_undo_the_change_s_plan(bot, monkeypatch):
    """A heartbeat's look-up that read the rows before a window was scheduled, and finishes
    after the schedule's own re-plan, must not remove the wake-up that re-plan made (CI saw
    `next_wake()` None right after a schedule, on a loaded machine)."""
    scheduler = bot.bot.scheduler
    window = schedule(bot)
    planned = reminders(bot, window.id)["heads_up"].due_at
    assert scheduler.next_wake() == planned
    read_fresh = runner.reminder_store.next_due_at
    stale_read_may_finish = asyncio.Event()
    calls = []

    async def first_read_is_stale(session, **kwargs):
        calls.append(len(calls))
        if len(calls) == 1:
            await stale_read_may_finish.wait()
            return None  # what it read before the window's reminders were written
        return await read_fresh(session, **kwargs)

    monkeypatch.setattr(runner.reminder_store, "next_due_at", first_read_is_stale)

    async def race():
        heartbeat = asyncio.create_task(scheduler.wake())
        while not calls:
            await asyncio.sleep(0)  # the heartbeat's read is under way
        change = asyncio.create_task(scheduler.wake())
        # Unplanned, the change's plan is made now and then undone by the stale read; planned
        # one at a time, the change's look-up waits for the heartbeat's and reads after it.
        await asyncio.wait([change], timeout=0.2)
        stale_read_may_finish.set()
        await asyncio.gather(heartbeat, change)

    bot.run(race())
    assert calls == [0, 1]
    assert scheduler.next_wake() == planned


def test_real_time_reminders_are_posted_by_the_scheduler(settings, slack):
    """No injected clock: APScheduler itself wakes the bot (seconds, not minutes)."""
    with BotUnderTest(settings.model_copy(update={"sitrep_reminder_lead": 0})) as bot:
        now = datetime.now(UTC)
        # Ends 6 s after it starts: a machine stalled for seconds still finds "started" before the end.
        form = ScheduleForm(title="Quick one", start=now + timedelta(seconds=2), end=now + timedelta(seconds=8))
        window = bot.run(MaintenanceService(bot.ctx).submit(DraftKind.SCHEDULE, form, user_id="U123", channel_id="C123")).record
        slack.wait_for(lambda: reminder_posts(slack, window, "ended"))
        slack.wait_for(lambda: all(r.state == "posted" for r in reminders(bot, window.id).values()))
        rows = reminders(bot, window.id)
        lateness = {kind: (row.posted_at - row.due_at).total_seconds() for kind, row in rows.items()}
        print(f"reminder lateness in seconds: {lateness}")
        assert all(row.state == "posted" for row in rows.values())
        assert len(reminder_posts(slack, window, "started")) == 1


@contextmanager
def a_reminder_post_held(bot, slack, title: str) -> Iterator[MaintenanceWindow]:
    """A window starting in a second, whose "started" reminder is claimed and its post held at
    Slack until the block ends. The delays are queued before anything is posted, so no pace of
    the machine decides which post they meet: the announcement goes through, the reminder's
    post is held."""
    held = threading.Event()
    try:
        slack.delay_next("chat.postMessage", 0)
        slack.delay_next("chat.postMessage", held)
        now = datetime.now(UTC)
        form = ScheduleForm(title=title, start=now + timedelta(seconds=1), end=now + timedelta(hours=1))
        window = bot.run(MaintenanceService(bot.ctx).submit(DraftKind.SCHEDULE, form, user_id="U123", channel_id="C123")).record
        slack.wait_for(lambda: slack.held == 1 and reminders(bot, window.id)["started"].state == "claimed")
        yield window
    finally:
        held.set()


def test_stopping_lets_a_reminder_being_posted_finish(settings, slack):
    """SIGTERM while a reminder waits on Slack (429, Retry-After 2 s): the stop waits for it,
    so it is posted and recorded, not cancelled mid-post with its claim left held."""
    with BotUnderTest(settings.model_copy(update={"sitrep_reminder_lead": 0})) as bot:
        with a_reminder_post_held(bot, slack, "Stop mid-post") as window:
            slack.fail_next("chat.postMessage", status=429, retry_after=2)  # met by the held post, once let go
            # The stop begins (the scheduler pauses) while the post is still held: only then is
            # it let go, so the 429 and its retry happen during the stop on any machine.
            stopping = asyncio.run_coroutine_threadsafe(bot.bot.scheduler.stop(timeout=WAIT_BOUND), bot.loop)
            slack.wait_for(lambda: bot.bot.scheduler.scheduler.state == STATE_PAUSED)
        stopping.result(2 * WAIT_BOUND)
        assert reminders(bot, window.id)["started"].state == "posted"
        assert len([m for m in slack.messages(CHANNEL) if (m.get("metadata") or {}).get("event_type") == PostTag.REMINDER]) == 1


def test_a_reminder_pass_that_outlives_the_shutdown_grace_is_stopped_in_one_line(settings, slack, caplog):
    """SIGTERM while a reminder's post is held past the grace: the pass is stopped (its claim
    is taken over once stale), and the log says so in one warning, not as a failed job with a
    traceback (APScheduler's own line for any exception, a cancellation included)."""
    with BotUnderTest(settings.model_copy(update={"sitrep_reminder_lead": 0})) as bot:
        with a_reminder_post_held(bot, slack, "Stop past the grace"):
            bot.run(bot.bot.scheduler.stop(timeout=0))  # no grace at all: the pass outlives it
    assert "a reminder pass was still running when the shutdown grace ran out: stopped" in caplog.text
    failed_jobs = [r.getMessage() for r in caplog.records if r.name.startswith("apscheduler") and r.levelname == "ERROR"]
    assert failed_jobs == []


@pytest.mark.parametrize("days", [-400, 0, 400])
def test_the_live_scheduler_follows_the_injected_clock_at_any_date(settings, slack, days):
    """The bot's clock set far from the machine's: the live timers still fire each reminder
    when the bot's clock reaches it, never earlier, never never."""
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0) + timedelta(days=days))
    with BotUnderTest(settings, clock=clock, live_scheduler=True) as bot:
        scheduler = bot.bot.scheduler
        window = schedule(bot)
        due = reminders(bot, window.id)
        assert scheduler.next_wake() == due["heads_up"].due_at
        wait = (scheduler.next_run_time() - datetime.now(UTC)).total_seconds()
        assert 14 * 60 < wait <= 15 * 60  # planned 15 minutes out on the machine's clock too
        assert reminder_posts(slack, window) == []

        for kind, minutes in (("heads_up", 15), ("started", 15), ("ended", 60)):
            clock.advance(minutes=minutes)
            bot.run(scheduler.wake())  # what a sweep does: re-plan from the store and the clock
            slack.wait_for(lambda kind=kind: reminder_posts(slack, window, kind))
        slack.wait_for(lambda: all(r.state == "posted" for r in reminders(bot, window.id).values()))
        slack.wait_for(lambda: window_row(bot, window.id).state == "completed")
        for kind in ("heads_up", "started", "ended"):
            assert len(reminder_posts(slack, window, kind)) == 1, kind


def test_without_live_timers_nothing_fires_on_its_own(bot, slack, clock):
    """The harness default with an injected clock: wake-ups are planned, never fired."""
    window = schedule(bot, start_in=0)  # "started" is due right now
    assert bot.bot.scheduler.next_wake() == window.start
    assert bot.bot.scheduler.scheduler.running
    assert reminder_posts(slack, window) == []
    assert run_due(bot) == 1  # the test decides when reminders run
    assert len(reminder_posts(slack, window, "started")) == 1


def test_a_window_whose_announcement_slack_refused_still_gets_its_reminders(bot, slack, clock):
    slack.fail_next("chat.postMessage", error="not_in_channel")
    done_window = schedule(bot)
    assert done_window.message_ts is None
    assert set(reminders(bot, done_window.id)) == {"heads_up", "started", "ended"}
    clock.advance(minutes=15)
    run_due(bot)
    # The heads-up announces the window first, then replies in its new thread.
    window = window_row(bot, done_window.id)
    assert window.message_ts is not None
    heads_up = reminder_posts(slack, window, "heads_up")
    assert len(heads_up) == 1 and heads_up[0]["thread_ts"] == window.message_ts


def test_the_schedule_answer_warns_when_slack_refused_the_announcement(bot, slack, clock):
    now = bot.ctx.clock()
    form = ScheduleForm(title="DB upgrade", start=now + timedelta(minutes=30), end=now + timedelta(minutes=90))
    slack.fail_next("chat.postMessage", error="not_in_channel")
    done = bot.run(MaintenanceService(bot.ctx).submit(DraftKind.SCHEDULE, form, user_id="U123", channel_id="C123"))
    assert "not_in_channel" in done.warning and "Reminders still follow" in done.warning


def test_stopping_the_bot_loses_nothing_that_falls_due_meanwhile(settings, slack, clock):
    with BotUnderTest(settings, clock=clock) as bot:
        window = schedule(bot)
        scheduler = bot.bot.scheduler
    assert not scheduler.scheduler.running  # stopped cleanly with the app
    clock.advance(minutes=31)  # heads-up and start fall due while nothing runs
    with BotUnderTest(settings, clock=clock, live_scheduler=True) as bot:
        slack.wait_for(lambda: reminder_posts(slack, window, "started"))
    assert len(reminder_posts(slack, window, "started")) == 1
