"""A step of the wall clock (+26 h or -2 h, as NTP or a resumed VM makes) is not time passing:
it neither re-opens the replay window, nor skips a reminder it made due, nor holds back one
that was due, nor pushes a nudge out. The injected clock steps (`FakeClock.step`: the wall
clock moves, the monotonic one does not); the real bot over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot.context import StepAwareClock
from bot.inbound import replays
from bot.inbound.replays import TAKEOVER_AFTER, submission_key
from scheduler.reminders import run_due_reminders
from store.instances import db_now
from store.models import SeenSubmission
from tests.support.fakes.signing import interaction_body
from tests.support.fakes.slack_api import WAIT_BOUND
from tests.support.harness import BotUnderTest, FakeClock, last_view, submission_payload
from tests.support.incidents import declare, declare_values, drafts_in_store, incidents_in_store, update_values
from tests.support.reminders import reminder_posts, reminders
from tests.test_nudges import nudges
from tests.test_reminders import schedule

pytestmark = pytest.mark.both_databases  # claims, keys and their ages on SQLite and PostgreSQL


@pytest.fixture
def settings(settings):
    """A window's heads-up, started and ended reminders (the overrun prompt has its own file)."""
    return settings.model_copy(update={"sitrep_overrun_warning": 0})


@pytest.fixture
def clock():
    """The real date (the fakes and the signatures run on it), minutes to the minute."""
    return FakeClock(datetime.now(UTC).replace(second=0, microsecond=0))


@pytest.fixture
def bot(settings, clock):
    with BotUnderTest(settings, clock=clock) as running:
        yield running


def run_due(bot) -> int:
    return bot.run(run_due_reminders(bot.ctx))


def states(bot, window_id) -> dict[str, str]:
    return {kind: row.state for kind, row in reminders(bot, window_id).items()}


# --- the replay window -------------------------------------------------------------------------


def test_a_step_forward_then_the_sweep_does_not_let_a_replayed_declare_make_a_second_incident(bot, slack, statuspage, clock):
    bot.command("declare DB down")
    view = slack.wait_for(lambda: slack.calls_to("views.open") and last_view(slack))
    body = interaction_body(submission_payload(view, declare_values()))
    assert bot.post(body).status_code == 200
    slack.wait_for(lambda: [i for i in incidents_in_store(bot) if i.message_ts])
    clock.step(hours=26)
    bot.run(bot.bot.scheduler.sweep())  # what the minute's sweep does: drops keys a day old
    replay = bot.post(body)  # a Slack retry of the same submission, minutes later in truth
    assert replay.status_code == 200
    # A request acted on keeps its draft before Slack has the answer: a swallowed one has none.
    assert len(drafts_in_store(bot)) == 1
    assert len(statuspage.incidents) == 1 and len(incidents_in_store(bot)) == 1


def test_a_submit_pressed_again_after_a_step_back_is_still_taken_over(bot, slack, statuspage, clock, monkeypatch):
    """The first press died after recording its key, before its draft; the clock then stepped
    back two hours. The key is old on the database's clock, which no host's step moves."""
    monkeypatch.setattr(replays, "RECORD_TIMEOUT", WAIT_BOUND)  # the takeover's reads must be answered, however slow the machine
    bot.command("declare DB down")
    view = slack.wait_for(lambda: slack.calls_to("views.open") and last_view(slack))
    payload = submission_payload(view, declare_values())

    async def left_by_the_dead() -> None:
        async with bot.ctx.db.session() as session, session.begin():
            # Stamped on the database's own clock, as the guard stamps it (a PostgreSQL server's
            # clock is not the process's: faketime moves only the latter).
            seen = await db_now(session) - timedelta(seconds=TAKEOVER_AFTER + 1)
            session.add(SeenSubmission(key=submission_key(payload), seen_at=seen))

    bot.run(left_by_the_dead())
    clock.step(hours=-2)
    assert bot.post(interaction_body(payload)).status_code == 200
    slack.wait_for(lambda: [i for i in incidents_in_store(bot) if i.message_ts])
    assert len(statuspage.incidents) == 1 and len(drafts_in_store(bot)) == 1


# --- reminders ---------------------------------------------------------------------------------


def test_a_step_forward_posts_the_reminders_it_passed_over_instead_of_skipping_them(bot, slack, clock):
    window = schedule(bot, start_in=30, minutes=60)
    clock.step(hours=26)
    assert run_due(bot) == 3
    assert states(bot, window.id) == {"heads_up": "posted", "started": "posted", "ended": "posted"}
    for kind in ("heads_up", "started", "ended"):
        [post] = reminder_posts(slack, window, kind)
        assert "late" not in json.dumps(post["blocks"]).lower(), kind  # on time: only the clock moved


def test_a_step_back_holds_back_no_reminder_that_fell_due(bot, slack, clock):
    window = schedule(bot, start_in=30, minutes=60)
    clock.advance(minutes=15)  # the heads-up falls due...
    clock.step(hours=-2)  # ...and the clock steps back before the pass
    assert run_due(bot) == 1
    assert len(reminder_posts(slack, window, "heads_up")) == 1
    assert states(bot, window.id)["started"] == "pending"


def test_a_step_of_the_clock_is_noticed_within_seconds_not_at_the_next_wake_up(settings, slack, clock):
    with BotUnderTest(settings, clock=clock, live_scheduler=True) as bot:
        window = schedule(bot, start_in=30, minutes=60)
        assert bot.bot.scheduler.next_run_time() > datetime.now(UTC) + timedelta(minutes=14)  # the planned wake-up
        clock.step(hours=26)
        slack.wait_for(lambda: reminder_posts(slack, window, "ended"), timeout=WAIT_BOUND)
        slack.wait_for(lambda: set(states(bot, window.id).values()) == {"posted"})


# --- nudges ------------------------------------------------------------------------------------


def test_a_step_back_does_not_push_a_nudge_out(bot, slack, clock):
    incident = declare(bot, slack)
    clock.step(hours=-2)
    clock.advance(minutes=30)  # quiet for 30 minutes, as time passed
    assert run_due(bot) == 1
    [nudge] = nudges(slack)
    assert nudge["thread_ts"] == incident.message_ts and "30m" in json.dumps(nudge["blocks"])
    clock.advance(minutes=30)  # and the next quiet interval counts on the clock as it now reads
    assert run_due(bot) == 1 and len(nudges(slack)) == 2


def test_an_update_made_while_the_clock_ran_a_day_ahead_is_nudged_after_one_interval(bot, slack, clock):
    incident = declare(bot, slack)
    clock.step(hours=26)
    run_due(bot)  # the pass after the step (a nudge it made due goes out)
    slack.forget_calls()
    bot.command(f"update {incident.id}")
    view = slack.wait_for(lambda: slack.calls_to("views.open") and last_view(slack))
    bot.submit(view, update_values(incident.id))
    slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))
    clock.step(hours=-26)  # NTP puts it right
    assert run_due(bot) == 0  # the pass after that step
    slack.forget_calls()
    clock.advance(minutes=30)
    assert run_due(bot) == 1
    assert len(nudges(slack)) == 1


def test_the_step_aware_clock_tells_a_step_from_time_passing():
    clock = FakeClock(datetime(2030, 1, 1, tzinfo=UTC))
    due = StepAwareClock(clock, clock.monotonic)
    clock.advance(hours=1)
    assert due.reading().stepped is None and due.settle() is None
    clock.step(hours=-2)
    reading = due.reading()
    assert reading.stepped == timedelta(hours=-2) and reading.due_by == datetime(2030, 1, 1, 1, tzinfo=UTC)
    assert due.settle() == timedelta(hours=-2) and due.reading().stepped is None
    clock.step(hours=26)
    reading = due.reading()
    assert reading.due_by == reading.wall and reading.judged_at(reading.wall - timedelta(hours=1)) == reading.wall - timedelta(
        hours=1
    )


def test_no_seen_key_is_dropped_by_a_step_of_the_bots_clock(bot, slack, clock):
    declare(bot, slack)  # a form Submit keeps its key (commands are remembered in memory only, #22)
    clock.step(hours=48)
    bot.run(bot.bot.scheduler.sweep())

    async def keys() -> int:
        async with bot.ctx.db.session() as session:
            return len(list((await session.execute(select(SeenSubmission.key))).scalars()))

    assert bot.run(keys()) == 1
