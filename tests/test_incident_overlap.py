"""Maintenance that overlapped an incident's start, through the real bot over HTTP against
the fake Slack and status page, on SQLite and PostgreSQL (injected clock): windows running
when it is declared, or ended less than SITREP_CHANGE_LOOKBACK minutes before, are named in
the announcement (title, components or servers, a link to the window's thread read before
the post) and recorded in the timeline; those on the incident's components come first."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from store.models import MaintenanceWindow
from store.states import WindowState
from tests.support.dates import T0
from tests.support.harness import CHANNEL, BotUnderTest, FakeClock
from tests.support.incidents import declare, event_kinds

pytestmark = pytest.mark.both_databases


def window(slack, n, title, start, end, *, components=(), servers=(), state=WindowState.IN_PROGRESS):
    ts = slack.person_posts(CHANNEL, f"window {n}", user="UBOT")  # its announcement, whose thread is linked
    return MaintenanceWindow(
        backend="statuspage",
        upstream_id=f"w-{n}",
        title=title,
        start=start,
        end=end,
        components=list(components),
        servers=list(servers),
        state=state,
        channel_id=CHANNEL,
        message_ts=ts,
        created_at=T0 - timedelta(days=1),
        updated_at=T0 - timedelta(days=1),
    )


def test_windows_overlapping_the_start_are_announced_and_recorded(settings, slack, statuspage):
    with BotUnderTest(settings, clock=FakeClock(T0)) as bot:
        rows = [
            window(slack, 1, "Kernel patch", T0 - timedelta(minutes=30), T0 + timedelta(minutes=30), servers=[12, 14]),
            window(slack, 2, "API <rollout>", T0 - timedelta(minutes=90), T0 - timedelta(minutes=50), components=["API"]),
            window(slack, 3, "Long ago", T0 - timedelta(hours=5), T0 - timedelta(minutes=61), components=["API"]),
            window(slack, 4, "Called off", T0 - timedelta(minutes=10), T0 + timedelta(hours=1), state=WindowState.CANCELLED),
            window(slack, 5, "Tomorrow", T0 + timedelta(days=1), T0 + timedelta(days=1, hours=1), state=WindowState.SCHEDULED),
        ]

        async def store():
            async with bot.ctx.db.session() as session, session.begin():
                session.add_all(rows)

        bot.run(store())
        threads = {r.title: r.message_ts for r in rows}
        slack.forget_calls()
        incident = declare(bot, slack)  # on API

        announcement = slack.message(CHANNEL, incident.message_ts)
        text = json.dumps(announcement["blocks"])
        assert "Maintenance overlapping the start" in text
        # The window on the incident's component first, though it ended 50 minutes ago; then the running one.
        assert text.index("API &lt;rollout&gt;") < text.index("Kernel patch")
        assert "(ended shortly before) on API" in text and "(running) on servers 12, 14" in text
        assert "Long ago" not in text and "Called off" not in text and "Tomorrow" not in text
        assert threads["API <rollout>"].replace(".", "") in text and threads["Kernel patch"].replace(".", "") in text
        assert event_kinds(bot, incident.id) == ["declared", "overlap", "overlap"]

        slack.forget_calls()
        bot.command(f"timeline {incident.id}")
        answer = json.dumps(slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))[-1]["blocks"])
        assert "maintenance overlapping the start" in answer and "Kernel patch (servers 12, 14)" in answer


def test_without_overlapping_maintenance_the_announcement_says_nothing_of_it(settings, slack, statuspage):
    with BotUnderTest(settings.model_copy(update={"sitrep_change_lookback": 0}), clock=FakeClock(T0)) as bot:
        row = window(slack, 1, "Just ended", T0 - timedelta(hours=1), T0 - timedelta(minutes=1), components=["API"])

        async def store():
            async with bot.ctx.db.session() as session, session.begin():
                session.add(row)

        bot.run(store())
        incident = declare(bot, slack)
        assert "Maintenance overlapping" not in json.dumps(slack.message(CHANNEL, incident.message_ts)["blocks"])
        assert event_kinds(bot, incident.id) == ["declared"]
