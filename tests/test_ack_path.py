"""The ack path does only what the ack needs (#22): a request that cannot act twice (a slash
command, a button or shortcut that only opens a form) writes nothing to the database before
Slack has its answer; a form's Submit still keeps its replay key; and a listener's work
after its ack starts once the answer is written, never holding it up."""

from __future__ import annotations

import asyncio
import threading

import pytest
from sqlalchemy import event

from bot.inbound.answered import after_answer, answering
from bot.inbound.replays import RecentKeys
from handlers.incident.ids import Callback
from tests.support.harness import PROBE_STUCK, BotUnderTest, FakeClock, Probe, last_view
from tests.support.incidents import declare_values

WRITES = ("INSERT", "UPDATE", "DELETE")


@pytest.fixture
def quiet_bot(settings):
    """The bot with an injected clock: no timers, so every statement comes from a request."""
    with BotUnderTest(settings, clock=FakeClock()) as bot:
        yield bot


def watch_writes(bot) -> list[str]:
    writes: list[str] = []

    def note(_conn, _cursor, statement: str, *_args) -> None:
        if statement.lstrip().upper().startswith(WRITES):
            writes.append(statement)

    event.listen(bot.ctx.db.engine.sync_engine, "before_cursor_execute", note)
    return writes


def test_commands_and_forms_opened_write_nothing_and_a_submit_keeps_its_key(quiet_bot, slack):
    bot = quiet_bot
    writes = watch_writes(bot)
    assert "/incident" in bot.command("help").text
    assert "open incident" in bot.command("list").text
    assert bot.command("declare DB down").status_code == 200
    assert bot.message_shortcut(Callback.DECLARE_FROM_MESSAGE, "Checkout is down").status_code == 200
    slack.wait_for(lambda: len(slack.views) == 2)
    assert writes == []

    assert bot.submit(last_view(slack), declare_values()).status_code == 200
    slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))
    assert any("seen_submissions" in w for w in writes), writes


def test_recent_keys_are_remembered_for_a_while_and_a_bounded_number():
    now = [0.0]
    recent = RecentKeys(keep_for=10, most=3, clock=lambda: now[0])
    assert recent.first("a") and not recent.first("a")
    assert recent.first("b") and recent.first("c") and recent.first("d")  # "a" made room
    assert recent.first("a")
    now[0] += 11  # all of them too old to matter
    assert recent.first("d")


# --- the work after an ack waits for the answer (bot/inbound/answered.py) ------------------


def test_over_http_a_listeners_ack_returns_once_its_answer_is_written(quiet_bot, slack):
    probe = Probe(quiet_bot)
    assert quiet_bot.command("now", command="/probe").status_code == 200
    assert slack.wait_for(lambda: probe.seen) == [True]
    assert "probed" in quiet_bot.command("answer", command="/probe").text
    assert slack.wait_for(lambda: len(probe.seen) == 2 and probe.seen) == [True, False]


def test_the_answer_goes_out_at_the_ack_while_the_listener_goes_on_and_the_drain_waits_for_it(quiet_bot, slack):
    """Bolt answers when the listener function returns (process_before_response): the one
    listener wrapper returns at the ack, and the body it started is the drain's to wait on."""
    bot = quiet_bot
    probe = Probe(bot)
    assert bot.command("hold", command="/probe").status_code == 200  # answered, the body still held
    drain = bot.bot.drain
    assert slack.wait_for(lambda: probe.held and drain.in_flight == 1)
    probe.release()
    assert slack.wait_for(lambda: not probe.held and drain.in_flight == 0)


def test_no_answer_waits_for_a_poll(quiet_bot, slack, monkeypatch):
    """Bolt left to itself looks for the ack every 10 ms (`asyncio.sleep(0.01)` in its
    listener runner): every answer waited for the next look. A spy on that module's sleeps
    sees none, for an answer in the ack, a bare ack and a form's Submit."""
    from slack_bolt.listener import asyncio_runner  # noqa: PLC0415 - the module spied on

    polls: list[float] = []

    class SleepSpy:
        def __getattr__(self, name: str):
            return getattr(asyncio, name)

        async def sleep(self, delay: float, *args):
            polls.append(delay)
            return await asyncio.sleep(delay, *args)

    monkeypatch.setattr(asyncio_runner, "asyncio", SleepSpy())
    bot = quiet_bot
    assert "/incident" in bot.command("help").text
    assert bot.command("declare DB down").status_code == 200
    view = slack.wait_for(lambda: slack.views and last_view(slack))
    assert bot.submit(view, declare_values()).status_code == 200
    slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))
    assert polls == []


def test_a_listener_stuck_at_the_deadline_is_stopped_and_the_answer_does_not_wait_for_saying_so(settings, slack):
    """The click is answered (a bare ack) at its deadline; the "database is busy" message
    after it is a Slack call of its own, held here until the click has its answer."""
    with BotUnderTest(settings, clock=FakeClock(), ack_budget=0.0) as bot:  # the shortest deadline there is
        probe = Probe(bot)
        held = threading.Event()
        slack.delay_next("chat.postEphemeral", held)
        try:
            assert bot.click(PROBE_STUCK, "1").status_code == 200
            assert slack.wait_for(lambda: probe.stopped)
        finally:
            held.set()
        told = slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))
    assert "database is busy" in str(told[-1])


def test_a_listener_that_ends_without_an_ack_is_named_in_the_log(quiet_bot, caplog):
    """Bolt answers such a request 404 ("unhandled request"); the wrapper says which listener."""
    Probe(quiet_bot)
    assert quiet_bot.command("silent", command="/probe").status_code == 404
    assert "a listener (command /probe) ended without answering Slack" in caplog.text


def test_a_declare_submit_whose_ack_waits_for_its_answer_still_does_its_work(quiet_bot, slack, statuspage):
    """The declare's own path: its Submit's bare ack is the TimedAck the probe used (which
    waits for the answer), and the work after it (status page, answer) still happens."""
    bot = quiet_bot
    assert bot.command("declare DB down").status_code == 200
    view = slack.wait_for(lambda: slack.views and last_view(slack))
    assert bot.submit(view, declare_values()).status_code == 200
    slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))
    assert len(statuspage.incidents) == 1


def test_after_answer_waits_for_the_answer_in_a_listeners_task_only():
    async def scenario() -> list[str]:
        happened: list[str] = []
        await after_answer()  # no request being answered: at once
        with answering() as answer:
            await after_answer(timeout=60)  # the request's own task: at once, though not sent
            happened.append("own task went on")

            async def listener() -> None:
                await after_answer(timeout=60)
                happened.append("listener went on")

            task = asyncio.ensure_future(listener())  # inherits the answer, as Bolt's does
            for _ in range(5):
                await asyncio.sleep(0)
            happened.append("answer written")
            answer.sent()
            await task
        return happened

    assert asyncio.run(scenario()) == ["own task went on", "answer written", "listener went on"]


def test_after_answer_gives_up_at_its_bound_and_answering_marks_the_answer_sent_on_the_way_out():
    async def scenario() -> tuple[bool, bool]:
        with answering() as answer:

            async def listener() -> bool:
                await after_answer(timeout=0.01)  # never written: goes on after the bound
                return answer.is_sent

            sent_when_given_up = await asyncio.ensure_future(listener())
        return sent_when_given_up, answer.is_sent

    assert asyncio.run(scenario()) == (False, True)
