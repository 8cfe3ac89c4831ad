"""Exactly once, even when a post stalls (issue #10 item 4, #14's first announcements): a
429 hands a reminder back with "not before" instead of holding its claim through the wait;
a claim taken over never posts (fencing); first announcements and cancel notices are
posted once when two instances on one database race them. Each test runs on a SQLite file
and on PostgreSQL; time is an injected clock."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

import bot.slack.posts as posts_module
import scheduler.reminders as reminders_module
from bot.context import shared_pace
from bot.services.maintenance import MaintenanceService
from bot.services.maintenance_forms import ScheduleForm
from bot.services.windows import Windows
from bot.slack import outbox as outbox_module
from bot.slack.outbox import Outbox, Rate
from bot.slack.posts import PostTag
from scheduler.reminders import run_due_reminders
from scheduler.sync import sync_windows
from store import reminders as reminder_store
from store.dbclock import db_utc_now
from store.models import MaintenanceWindow, Reminder
from store.reminders import LONG_AGO
from store.states import DraftKind
from tests.support.dates import T0
from tests.support.fakes.slack_api import WAIT_BOUND, Tiers
from tests.support.harness import CHANNEL, BotUnderTest, FakeClock
from tests.support.maintenance import announcements, cancel_twice_at_once
from tests.support.reminders import reminders

pytestmark = pytest.mark.both_databases


@pytest.fixture
def settings(settings):
    """A window's "started" and "ended" only: the 429 below lands on a "started" reply."""
    return settings.model_copy(update={"sitrep_reminder_lead": 0, "sitrep_overrun_warning": 0})


@pytest.fixture
def clock():
    return FakeClock(T0)


def schedule(bot, *, start_in=30, title="DB upgrade") -> MaintenanceWindow:
    now = bot.ctx.clock()
    form = ScheduleForm(title=title, start=now + timedelta(minutes=start_in), end=now + timedelta(minutes=start_in + 60))
    return bot.run(MaintenanceService(bot.ctx).submit(DraftKind.SCHEDULE, form, user_id="U123", channel_id="C123")).record


def run_due(bot) -> int:
    return bot.run(run_due_reminders(bot.ctx))


def in_thread(slack, window, kind) -> list[dict]:
    """The reminder replies of this kind that Slack holds in the window's thread."""
    found = []
    for message in slack.thread(CHANNEL, window.message_ts):
        meta = message.get("metadata") or {}
        payload = meta.get("event_payload") or {}
        if meta.get("event_type") == PostTag.REMINDER and payload.get("kind") == kind:
            found.append(message)
    return found


def make_stale(bot, window_id, kind) -> None:
    """What two minutes on the database's clock do to a claim: it becomes stale."""

    async def go():
        async with bot.ctx.db.session() as session, session.begin():
            await session.execute(
                update(Reminder)
                .where(Reminder.window_id == window_id, Reminder.kind == kind, Reminder.state == "claimed")
                .values(claimed_at=LONG_AGO)
            )

    bot.run(go())


def test_a_long_429_hands_the_reminder_back_others_post_on_time_and_it_posts_once_after(settings, slack, clock):
    with BotUnderTest(settings, clock=clock) as one, BotUnderTest(settings, clock=clock) as two:
        windows = [schedule(one, title=f"Window {n}") for n in range(3)]
        clock.advance(minutes=30)  # all three start now
        slack.fail_next("chat.postMessage", status=429, retry_after=200)  # the first "started" reply
        assert run_due(one) == 2  # a pass held by the 429's 200 s would outlast `run`'s bound and fail

        refused, *others = windows
        for window in others:  # posted in the same pass, on time, not held by the 429
            assert len(in_thread(slack, window, "started")) == 1
            assert reminders(one, window.id)["started"].late is False
        row = reminders(one, refused.id)["started"]
        assert in_thread(slack, refused, "started") == []
        # Handed back, not held: pending, no claim, not before now + Retry-After.
        assert (row.state, row.claimed_by, row.not_before) == ("pending", None, clock() + timedelta(seconds=200))
        one.run(one.bot.scheduler.wake())  # as the scheduler does after each pass
        assert one.bot.scheduler.next_wake() == row.not_before  # the next wake-up is for it

        clock.advance(seconds=100)  # another instance meanwhile: nothing to take over
        assert run_due(two) == 0
        clock.advance(seconds=99)
        assert run_due(one) == 0 and run_due(two) == 0
        clock.advance(seconds=1)
        assert run_due(two) + run_due(one) == 1
        assert len(in_thread(slack, refused, "started")) == 1
        row = reminders(one, refused.id)["started"]
        assert (row.state, row.late, row.not_before) == ("posted", True, None)  # 200 s after its time
        assert run_due(one) == 0 and run_due(two) == 0
        assert len(in_thread(slack, refused, "started")) == 1


def test_a_claim_taken_over_while_its_post_waits_never_posts(settings, slack, clock, caplog):
    with BotUnderTest(settings, clock=clock) as first, BotUnderTest(settings, clock=clock) as second:
        window = schedule(first)
        # The first instance waits out short 429s in its queue (up to 5 s here).
        first.ctx.outbox = Outbox(pause_cap=5)
        clock.advance(minutes=30)
        slack.fail_next("chat.postMessage", status=429, retry_after=4)
        before = len(slack.calls_to("chat.postMessage"))
        pending = asyncio.run_coroutine_threadsafe(run_due_reminders(first.ctx), first.loop)
        slack.wait_for(lambda: len(slack.calls_to("chat.postMessage")) > before)  # refused; retrying in 4 s
        row = reminders(first, window.id)["started"]
        assert (row.state, row.claimed_by) == ("claimed", first.ctx.instance_id)

        make_stale(first, window.id, "started")  # as if the first instance had hung for minutes
        with caplog.at_level(logging.WARNING, logger="scheduler.reminders"):
            assert run_due(second) == 1  # taken over: the thread has nothing, so it posts
            assert pending.result(30) == 0  # the first one's retry finds the claim gone: no post
        assert len(in_thread(slack, window, "started")) == 1
        row = reminders(first, window.id)["started"]
        assert (row.state, row.claimed_by, row.claim_token) == ("posted", second.ctx.instance_id, 2)
        assert "taken over by another process before its post" in caplog.text
        assert window_state(first, window.id) == "in_progress"


def window_state(bot, window_id) -> str:
    async def read():
        async with bot.ctx.db.session() as session:
            return (await session.get(MaintenanceWindow, window_id)).state

    return bot.run(read())


def tagged_announcements(slack, window_id) -> list[dict]:
    return [
        m
        for m in announcements(slack)
        if (m.get("metadata") or {}).get("event_type") == PostTag.WINDOW_ANNOUNCEMENT
        and m["metadata"]["event_payload"]["window_id"] == window_id
    ]


def test_an_announcement_that_reached_slack_before_a_crash_is_adopted_not_posted_again(settings, slack, clock):
    with BotUnderTest(settings, clock=clock) as bot:
        window = schedule(bot)

        async def crashed_mid_announcement():
            """A window whose announcement a killed process posted but never recorded."""
            async with bot.ctx.db.session() as session, session.begin():
                await session.execute(
                    update(MaintenanceWindow)
                    .where(MaintenanceWindow.id == window.id)
                    .values(message_ts=None, announce_token=7, announce_claimed_by="killed", announce_claimed_at=LONG_AGO)
                )

        bot.run(crashed_mid_announcement())
        ghost = slack.messages(CHANNEL)[0]["ts"]  # its post, tagged, is what reached Slack
        assert tagged_announcements(slack, window.id)[0]["ts"] == ghost
        clock.advance(minutes=30)
        assert run_due(bot) == 1
        assert len(tagged_announcements(slack, window.id)) == 1  # no second parent
        adopted = bot.run(Windows(bot.ctx).get(window.id))
        assert adopted.message_ts == ghost and adopted.announce_claimed_at is None
        assert len(in_thread(slack, adopted, "started")) == 1  # the reminder went into its thread


@pytest.fixture
def appfirst_clock(upstream_clock):
    upstream_clock.set(T0)
    return upstream_clock


def test_two_instances_announcing_windows_that_entered_the_horizon_post_each_once(
    appfirst_settings, appfirst, slack, appfirst_clock
):
    clock = appfirst_clock
    for day in range(8, 14):  # beyond the 7-day horizon at first
        appfirst.add_window(T0 + timedelta(days=day), T0 + timedelta(days=day, hours=1), reason=f"Planned {day}")
    with BotUnderTest(appfirst_settings, clock=clock) as one, BotUnderTest(appfirst_settings, clock=clock) as two:
        for bot in (one, two):
            bot.run(bot.bot.scheduler.stop())  # the test drives the sync itself
        report = one.run(sync_windows(one.ctx))
        assert report.adopted == 6 and announcements(slack) == []
        clock.advance(days=7)  # all six are within the horizon now

        async def announce(bot):
            return await Windows(bot.ctx).announce_entered_horizon()

        futures = [asyncio.run_coroutine_threadsafe(announce(b), b.loop) for b in (one, two)]
        counts = [f.result(60) for f in futures]
        assert sum(counts) == 6, counts
        stored = one.run(_windows(one))
        assert len(stored) == 6 and all(w.message_ts for w in stored)
        for w in stored:
            assert [m["ts"] for m in tagged_announcements(slack, w.id)] == [w.message_ts]
        assert len(announcements(slack)) == 6


async def _windows(bot) -> list[MaintenanceWindow]:
    async with bot.ctx.db.session() as session:
        return list((await session.execute(select(MaintenanceWindow).order_by(MaintenanceWindow.id))).scalars())


def test_two_instances_cancelling_one_window_at_once_post_one_notice(settings, slack, upstream_clock):
    upstream_clock.set(T0)
    with BotUnderTest(settings, clock=upstream_clock) as one, BotUnderTest(settings, clock=upstream_clock) as two:
        parent = cancel_twice_at_once(one, two, slack)
        slack.wait_for(lambda: len(slack.ephemerals()) >= 2)
        cancelled = [r for r in slack.thread(CHANNEL, parent["ts"]) if "Cancelled" in json.dumps(r.get("blocks"))]
        assert len(cancelled) == 1


#: The bot's buckets for the pacing tests, and Slack's tier a little above them (sped up).
PACED = {"chat.postMessage": Rate(per_second=8, burst=2)}
SLACK_TIER = Tiers(post_per_second=12, post_burst=2, update_per_minute=6000, update_burst=100, speedup=100)


def note(text: str):
    return text, [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]


def test_two_instances_posting_in_one_channel_keep_its_pace_together(settings, slack, clock, monkeypatch):
    # Twenty bookings in one database at once: on a loaded machine some wait longer than the
    # 2 s after which a replica paces alone (as it does when the database fails, below).
    monkeypatch.setattr(outbox_module, "RESERVE_TIMEOUT", WAIT_BOUND)
    with BotUnderTest(settings, clock=clock) as one, BotUnderTest(settings, clock=clock) as two:
        for bot in (one, two):  # each alone would send at 8/s: together 16/s, over Slack's 12/s
            bot.ctx.outbox = Outbox(PACED, reserve=shared_pace(bot.ctx.db))
        slack.forget_calls()
        slack.enforce(SLACK_TIER)

        async def burst(bot, name):
            return await asyncio.gather(*(bot.ctx.channel.announce(note(f"{name} {i}")) for i in range(10)))

        sending = [asyncio.run_coroutine_threadsafe(burst(b, n), b.loop) for b, n in ((one, "one"), (two, "two"))]
        assert all(len(f.result(120)) == 10 for f in sending)
        # Together they kept the one pace: 20 posts at 8/s take at least their slots' length
        # (a load on the machine can only stretch it). Each alone would have finished 10 in
        # about a second. How many the tier refused is not asserted: on a loaded machine two
        # sends booked 1/8 s apart can reach Slack closer together than that, and a 429 is
        # retried (every post still lands once).
        sent = sorted(at for at, method, _ in slack.accepted if method == "chat.postMessage")
        assert len(sent) == 20
        floor = (20 - PACED["chat.postMessage"].burst) / PACED["chat.postMessage"].per_second
        assert sent[-1] - sent[0] >= floor * 0.9, (sent[-1] - sent[0], floor)


def test_without_the_database_the_pace_is_kept_locally_and_posts_still_go(settings, slack, clock, caplog):
    async def sick(channel, method, rate):
        raise OSError("database unreachable")

    with BotUnderTest(settings, clock=clock) as bot:
        bot.ctx.outbox = Outbox(PACED, reserve=sick)
        with caplog.at_level(logging.WARNING, logger="bot.slack.outbox"):
            posted = bot.run(bot.ctx.channel.announce(note("still goes")))
        assert slack.message(CHANNEL, posted.ts)["text"] == "still goes"
        assert "shared pacing unavailable (OSError)" in caplog.text


def test_a_reminder_finding_another_replica_announcing_its_window_waits_and_then_replies_there(
    settings, slack, clock, monkeypatch
):
    monkeypatch.setattr("bot.services.windows.ANNOUNCE_WAIT", 0.3)  # the real wait is 5 s
    with BotUnderTest(settings, clock=clock) as bot:
        window = schedule(bot)
        parent = window.message_ts

        async def held_elsewhere(**values):
            """Another replica claimed the first announcement just now (and is posting it)."""
            async with bot.ctx.db.session() as session, session.begin():
                await session.execute(update(MaintenanceWindow).where(MaintenanceWindow.id == window.id).values(**values))

        bot.run(held_elsewhere(message_ts=None, announce_token=1, announce_claimed_by="other", announce_claimed_at=T0))
        bot.run(held_elsewhere(announce_claimed_at=db_utc_now()))
        clock.advance(minutes=30)
        assert run_due(bot) == 0  # no second parent, no reply without one
        assert len(tagged_announcements(slack, window.id)) == 1
        row = reminders(bot, window.id)["started"]
        assert (row.state, row.not_before) == ("pending", clock() + timedelta(seconds=15))

        bot.run(held_elsewhere(message_ts=parent, announce_claimed_by=None, announce_claimed_at=None))  # it landed
        clock.advance(seconds=15)
        assert run_due(bot) == 1
        assert len(in_thread(slack, window, "started")) == 1
        assert len(tagged_announcements(slack, window.id)) == 1


def test_a_person_ending_a_window_another_replica_is_announcing_is_told_so(settings, slack, clock, monkeypatch):
    monkeypatch.setattr("bot.services.windows.ANNOUNCE_WAIT", 0.3)
    with BotUnderTest(settings, clock=clock) as bot:
        window = schedule(bot)

        async def held_elsewhere():
            async with bot.ctx.db.session() as session, session.begin():
                await session.execute(
                    update(MaintenanceWindow)
                    .where(MaintenanceWindow.id == window.id)
                    .values(message_ts=None, announce_token=1, announce_claimed_by="other", announce_claimed_at=db_utc_now())
                )

        bot.run(held_elsewhere())
        clock.advance(minutes=31)
        slack.forget_calls()
        outcome = bot.run(MaintenanceService(bot.ctx).end_now(window.id, user_id="U123", channel_id="C123"))
        assert "another sitrep replica is posting its announcement" in outcome.warning
        assert slack.calls_to("chat.postMessage") == []  # no second parent


def test_a_claim_posted_at_once_is_not_confirmed_again_but_one_that_waited_is(settings, slack, clock, monkeypatch):
    """Fencing at the cost of a round trip only where it can matter: a post leaving within
    `FRESH_CLAIM` of its claim cannot find it taken over (that needs `STALE_CLAIM` on the
    database's clock); one that waited longer asks, and a claim taken over meanwhile never
    posts."""
    confirmed = []
    confirm = reminder_store.confirm

    async def counted(session, reminder_id, *, token):
        confirmed.append(reminder_id)
        return await confirm(session, reminder_id, token=token)

    monkeypatch.setattr(reminder_store, "confirm", counted)
    # Slack's own pace and claim ages: the elapsed-time clock below runs 100× faster, and a
    # claim gone stale within the sped-up 12 s would be confirmed as well.
    real_pace = settings.model_copy(update={"sitrep_test_speedup": 1})
    with BotUnderTest(real_pace, clock=clock) as bot:
        quick = schedule(bot, title="Quick")
        clock.advance(minutes=30)
        assert run_due(bot) == 1 and confirmed == []
        assert len(in_thread(slack, quick, "started")) == 1

        # The elapsed-time clock in the test's hands: it stands still until the first reply is
        # in, then jumps past the fresh share while the second waits its turn (5 s behind the
        # first in the channel's queue). Never the machine's speed: a real clock sped up
        # 100× made a loaded machine's first post "old" too.
        since_boot = [0.0]
        monkeypatch.setattr(posts_module, "elapsed", lambda: since_boot[0])
        first, second = schedule(bot, title="First"), schedule(bot, title="Second")
        bot.ctx.outbox = Outbox({"chat.postMessage": Rate(per_second=0.2, burst=1)})
        clock.advance(minutes=30)
        pending = asyncio.run_coroutine_threadsafe(run_due_reminders(bot.ctx), bot.loop)
        slack.wait_for(lambda: in_thread(slack, first, "started"))
        assert reminders(bot, second.id)["started"].state == "claimed"  # its reply queued
        since_boot[0] += 2 * posts_module.fresh_claim_seconds(bot.ctx)

        async def take_over():  # what another replica's takeover does to the second claim
            async with bot.ctx.db.session() as session, session.begin():
                await session.execute(
                    update(Reminder)
                    .where(Reminder.window_id == second.id, Reminder.kind == "started")
                    .values(claim_token=Reminder.claim_token + 1, claimed_by="another")
                )

        bot.run(take_over())
        assert pending.result(30) == 1
        assert len(in_thread(slack, first, "started")) == 1
        assert in_thread(slack, second, "started") == []  # fenced off: asked, and not ours
        assert len(confirmed) == 1


def test_a_reply_built_at_its_turn_is_fenced_after_it_is_built(settings, slack, clock, monkeypatch):
    """The fence is the last thing before the request: a reply whose turn came late reads
    its window again, and the claim is checked after that read, not before it. Here the read
    hangs for longer than a claim's stale age, and another replica takes the claim over
    meanwhile (finding nothing in the thread, it posts): this one must post nothing."""
    with BotUnderTest(settings, clock=clock) as bot:
        window = schedule(bot)
        fresh = posts_module.fresh_claim_seconds(bot.ctx)
        assert fresh > reminders_module.FRESH_WINDOW
        elapsed = [1000.0]
        monkeypatch.setattr(posts_module, "elapsed", lambda: elapsed[0])
        read_windows, read_window = reminder_store.read_windows, reminder_store.read_window

        async def turn_came_late(conn, ids):  # stale enough to read again, fresh enough to skip asking
            found = await read_windows(conn, ids)
            elapsed[0] += (reminders_module.FRESH_WINDOW + fresh) / 2
            return found

        async def hung_read(conn, window_id):  # meanwhile another replica takes the claim over
            async with bot.ctx.db.session() as session, session.begin():
                await session.execute(
                    update(Reminder)
                    .where(Reminder.window_id == window_id, Reminder.kind == "started")
                    .values(claim_token=Reminder.claim_token + 1, claimed_by="another")
                )
            elapsed[0] += bot.ctx.stale_claim.total_seconds() + 1
            return await read_window(conn, window_id)

        monkeypatch.setattr(reminder_store, "read_windows", turn_came_late)
        monkeypatch.setattr(reminder_store, "read_window", hung_read)
        clock.advance(minutes=30)
        assert run_due(bot) == 0
        assert in_thread(slack, window, "started") == []
        assert reminders(bot, window.id)["started"].claimed_by == "another"


def hold_first_write(monkeypatch) -> tuple[threading.Event, threading.Event]:
    """The pass's first write of outcomes waits, once begun (`writing`), until `may_write`
    is set: a slow database under a write the timer started."""
    writing, may_write = threading.Event(), threading.Event()
    finish_many = reminder_store.finish_many

    async def first_write_slow(conn, outcomes, *, now):
        if not writing.is_set():
            writing.set()
            while not may_write.is_set():
                await asyncio.sleep(0.01)
        return await finish_many(conn, outcomes, now=now)

    monkeypatch.setattr(reminder_store, "finish_many", first_write_slow)
    return writing, may_write


def test_a_pass_stopped_while_its_outcomes_are_written_still_records_them(settings, slack, clock, monkeypatch):
    """Outcomes are written on a timer while the pass goes on. A pass stopped during that
    write (a deploy's grace ran out) must let it finish: cancelled, it would roll back, and
    the posted reminder would stay claimed, its window "Scheduled", until the claim went
    stale."""
    with BotUnderTest(settings, clock=clock) as bot:
        first, second = schedule(bot, title="First"), schedule(bot, title="Second")
        # The second waits 8 s: the stop below comes well within that on a loaded machine (a reply
        # held at Slack instead would be in flight, and a stop lets those finish).
        slow = bot.ctx.outbox = Outbox({"chat.postMessage": Rate(per_second=0.125, burst=1)})
        writing, may_write = hold_first_write(monkeypatch)
        clock.advance(minutes=30)
        pass_ = asyncio.run_coroutine_threadsafe(run_due_reminders(bot.ctx), bot.loop)
        assert writing.wait(WAIT_BOUND)  # the first reply's outcome, written while the second waits its turn
        assert len(in_thread(slack, first, "started")) == 1 and in_thread(slack, second, "started") == []
        bot.loop.call_soon_threadsafe(pass_.cancel)
        slack.wait_for(lambda: pass_.done())
        may_write.set()
        slack.wait_for(lambda: reminders(bot, first.id)["started"].state == "posted")
        assert window_state(bot, first.id) == "in_progress"
        bot.run(slow.drain(CHANNEL))  # the stopped reply's turn comes, and nothing is sent
        assert in_thread(slack, second, "started") == []


def test_an_outcome_posted_while_others_are_written_waits_no_longer_than_record_after(settings, slack, clock, monkeypatch):
    """A reply that lands while the outcomes before it are being written gets its own wait of
    `RECORD_AFTER`: it is not left until the next reply lands (here held by Slack until the
    test lets it go), with its claim held and its window's parent showing the old state."""
    with BotUnderTest(settings, clock=clock) as bot:
        first, second, third = (schedule(bot, title=title) for title in ("First", "Second", "Third"))
        bot.ctx.outbox = Outbox({"chat.postMessage": Rate(per_second=0.5, burst=1)})  # one reply each 2 s
        third_answered = threading.Event()
        for delay in (0, 0, third_answered):  # the third reply is held by Slack until released
            slack.delay_next("chat.postMessage", delay)
        writing, may_write = hold_first_write(monkeypatch)
        clock.advance(minutes=30)
        pass_ = asyncio.run_coroutine_threadsafe(run_due_reminders(bot.ctx), bot.loop)
        assert writing.wait(WAIT_BOUND)  # the first outcome's write
        slack.wait_for(lambda: len(in_thread(slack, second, "started")) == 1)  # landed during it
        may_write.set()
        slack.wait_for(lambda: reminders(bot, second.id)["started"].state == "posted")  # recorded...
        assert in_thread(slack, third, "started") == []  # ...while the next reply is still held
        third_answered.set()
        assert pass_.result(2 * WAIT_BOUND) == 3
        assert window_state(bot, second.id) == "in_progress"
