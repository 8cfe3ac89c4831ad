"""The ack path does only what the ack needs (#22): a request that cannot act twice (a slash
command, a button or shortcut that only opens a form) writes nothing to the database before
Slack has its answer; a form's Submit still keeps its replay key."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from bot.inbound.replays import RecentKeys
from handlers.incident.ids import Callback
from tests.support.harness import BotUnderTest, FakeClock, last_view
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
