"""The test harness's own promises, which other tests stand on: `settle` waits for work the bot
has acknowledged but not finished (the "nothing happened" assertions rest on it), the suite's
calendar keeps its shape in every year, and each pytest-xdist worker gets its own ports."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.dates import NY, first_year_ahead
from tests.support.fakes.slack_api import WAIT_BOUND
from tests.support.harness import (
    _PORTS_FROM,
    _PORTS_PER_WORKER,
    CHANNEL,
    ONE_MOMENT,
    BotUnderTest,
    _worker_ports,
    free_port,
    said,
)
from tests.support.incidents import declare, declare_values, open_declare_modal, open_modal


def test_settle_waits_for_a_listener_still_at_work(settings, slack, statuspage):
    statuspage.latency = 0.5  # the status page answers the create late: the listener is still at it
    with BotUnderTest(settings, http_timeout=WAIT_BOUND) as bot:  # patient: late is not lost under load
        view = open_declare_modal(bot, slack)
        slack.forget_calls()
        assert bot.submit(view, declare_values(title="Slow page")).status_code == 200
        bot.settle()
        assert len(statuspage.incidents) == 1  # before the bot stops (its stop would wait too)
        assert [m for m in slack.messages(CHANNEL) if "Slow page" in (m.get("text") or "")]
        assert slack.calls_to("chat.postEphemeral")  # the person told: the listener ran to its end


def test_a_form_whose_read_outlived_read_before_open_is_what_the_helpers_give_back(settings, slack, statuspage):
    """On a loaded machine a form's read can outlive `read_before_open`: the "one moment"
    modal opens and the form, or the refusal, fills it. The helpers give the test what the
    person sees either way, so no test depends on the machine's pace."""
    with BotUnderTest(settings, read_before_open=0.0) as bot:  # every such read outlives it
        incident = declare(bot, slack)
        view = open_modal(bot, slack, lambda: bot.command(f"update {incident.id}"))
        assert ONE_MOMENT in str(slack.calls_to("views.open")[-1]["view"])  # it went the slow way
        assert "submit" in view and f"#{incident.id}" in str(view["blocks"])
        assert "I don't know an incident `#99`" in said(bot, slack, "update #99")
        assert "I don't know an incident `#99`" not in str(slack.calls_to("views.open")[-1]["view"])


@pytest.mark.parametrize("year", range(2026, 2037))
@pytest.mark.parametrize("month, day", [(1, 1), (6, 30), (11, 25), (11, 26), (12, 31)])
def test_the_calendar_is_ahead_of_the_clock_and_keeps_winter_and_summer_time(year, month, day):
    now = datetime(year, month, day, 12, 0, tzinfo=UTC)
    ahead = first_year_ahead(now)
    t0 = datetime(ahead, 11, 25, 12, 0, tzinfo=UTC)
    winter, summer = datetime(ahead, 12, 1, 9, 0, tzinfo=NY), datetime(ahead + 1, 7, 1, 9, 0, tzinfo=NY)
    assert now < t0 <= now + timedelta(days=366)
    assert winter - t0 == timedelta(days=6, hours=2)  # 09:00 EST is 14:00 UTC
    assert winter.utcoffset() == timedelta(hours=-5) and summer.utcoffset() == timedelta(hours=-4)


def test_ports_for_processes_come_from_the_workers_own_block_below_the_ephemeral_range(monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    ports = [next(block) for block in [_worker_ports()] for _ in range(2 * _PORTS_PER_WORKER)]
    assert set(ports) == set(range(_PORTS_FROM + 3 * _PORTS_PER_WORKER, _PORTS_FROM + 4 * _PORTS_PER_WORKER))  # round and round
    assert _PORTS_FROM + 8 * _PORTS_PER_WORKER <= 32768  # below Linux's default ephemeral range
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # nothing listens there
