"""The overrun prompt: SITREP_OVERRUN_WARNING minutes before a running window's end, a
thread reply asks "still working?"; Extend moves the end upstream (AppFirst PUT) and the
reminders and announcement follow; upstream down → the person is told, nothing changes;
the status page answers plainly that it cannot move a window and offers a follow-on."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from bot.messages.maintenance import OverrunId
from bot.services.maintenance import MaintenanceService
from bot.services.maintenance_forms import ScheduleForm
from bot.slack.posts import PostTag
from scheduler.reminders import run_due_reminders
from store.models import MaintenanceWindow
from store.states import DraftKind
from tests.support.dates import T0
from tests.support.harness import CHANNEL, BotUnderTest, FakeClock, last_view


@pytest.fixture
def clock():
    return FakeClock(T0)


def schedule(bot) -> MaintenanceWindow:
    now = bot.ctx.clock()
    form = ScheduleForm(title="DB upgrade", start=now + timedelta(minutes=5), end=now + timedelta(minutes=65), servers_text="1")
    return bot.run(MaintenanceService(bot.ctx).submit(DraftKind.SCHEDULE, form, user_id="U123", channel_id="C123")).record


def prompts(slack) -> list[dict]:
    out = []
    for call in slack.calls_to("chat.postMessage"):
        meta = call.get("metadata") or {}
        meta = json.loads(meta) if isinstance(meta, str) else meta
        if meta.get("event_type") == PostTag.REMINDER and meta["event_payload"]["kind"] == "overrun":
            out.append(call)
    return out


def reach_prompt(bot, slack, clock, window) -> dict:
    clock.set(window.start)
    bot.run(run_due_reminders(bot.ctx))
    slack.forget_calls()
    clock.set(window.end - timedelta(minutes=10))
    bot.run(run_due_reminders(bot.ctx))
    [prompt] = prompts(slack)
    return prompt


def test_prompt_then_extend_moves_the_end_on_appfirst(appfirst_settings, appfirst, slack, clock):
    with BotUnderTest(appfirst_settings, clock=clock) as bot:
        window = schedule(bot)
        prompt = reach_prompt(bot, slack, clock, window)
        assert prompt["thread_ts"] == window.message_ts
        assert "still working?" in json.dumps(prompt["blocks"])
        actions = [e["action_id"] for b in prompt["blocks"] if b["type"] == "actions" for e in b["elements"]]
        assert actions == [OverrunId.EXTEND_30, OverrunId.EXTEND_60, OverrunId.END_NOW]
        assert bot.run(run_due_reminders(bot.ctx)) == 0  # asked once

        slack.forget_calls()
        appfirst.requests.clear() if hasattr(appfirst.requests, "clear") else None
        bot.click(OverrunId.EXTEND_30, str(window.id), channel=CHANNEL)
        slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))
        moved = bot.run(MaintenanceService(bot.ctx).get(window.id))
        assert moved.end == window.end + timedelta(minutes=30)
        assert [r.method for r in appfirst.requests if r.method == "PUT"]
        assert slack.calls_to("chat.update")  # the announcement shows the new end

        slack.forget_calls()
        clock.set(window.end + timedelta(minutes=1))
        bot.run(run_due_reminders(bot.ctx))
        assert not [c for c in slack.calls_to("chat.postMessage") if "has ended" in c.get("text", "")]
        clock.set(moved.end)
        bot.run(run_due_reminders(bot.ctx))
        assert [c for c in slack.calls_to("chat.postMessage") if "has ended" in c.get("text", "")]


def test_extend_with_appfirst_down_tells_the_person_and_changes_nothing(appfirst_settings, appfirst, slack, clock):
    with BotUnderTest(appfirst_settings, clock=clock) as bot:
        window = schedule(bot)
        reach_prompt(bot, slack, clock, window)
        slack.forget_calls()
        appfirst.fail_times(5, status=503)
        bot.click(OverrunId.EXTEND_60, str(window.id), channel=CHANNEL)
        answer = slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))[-1]
        assert "AppFirst" in json.dumps(answer)
        assert bot.run(MaintenanceService(bot.ctx).get(window.id)).end == window.end


def test_status_page_cannot_extend_but_offers_a_follow_on_and_ends_now(settings, statuspage, slack, clock):
    with BotUnderTest(settings, clock=clock) as bot:
        window = schedule(bot)
        reach_prompt(bot, slack, clock, window)
        slack.forget_calls()
        bot.click(OverrunId.EXTEND_30, str(window.id), channel=CHANNEL)
        answer = slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))[-1]
        assert "cannot move" in json.dumps(answer) and OverrunId.FOLLOW_ON in json.dumps(answer)
        assert bot.run(MaintenanceService(bot.ctx).get(window.id)).end == window.end

        slack.forget_calls()
        bot.click(OverrunId.FOLLOW_ON, str(window.id), channel=CHANNEL)
        slack.wait_for(lambda: slack.calls_to("views.open"))
        assert "DB upgrade" in json.dumps(last_view(slack))

        slack.forget_calls()
        bot.click(OverrunId.END_NOW, str(window.id), channel=CHANNEL)
        slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))
        assert any(r.path.endswith("ResolveIncident") for r in statuspage.requests)
        bot.run(run_due_reminders(bot.ctx))
        assert [c for c in slack.calls_to("chat.postMessage") if "has ended" in c.get("text", "")]


def test_end_now_with_the_status_page_down_tells_the_person_and_changes_nothing(settings, statuspage, slack, clock):
    with BotUnderTest(settings, clock=clock) as bot:
        window = schedule(bot)
        reach_prompt(bot, slack, clock, window)
        before = bot.run(MaintenanceService(bot.ctx).get(window.id))
        slack.forget_calls()
        statuspage.fail_times(5, status=503)
        bot.click(OverrunId.END_NOW, str(window.id), channel=CHANNEL)
        answer = slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))[-1]
        assert answer["user"] == "U123" and "status page is not available right now" in answer["text"].lower()
        after = bot.run(MaintenanceService(bot.ctx).get(window.id))
        assert (after.state, after.end, after.updated_at) == (before.state, before.end, before.updated_at)
        assert statuspage.incidents[window.upstream_id]["Resolved"] is False  # the status page kept it open
        # Nothing was posted in the thread, and the "ended" reminder still waits for the planned end.
        assert not slack.calls_to("chat.postMessage")
        assert bot.run(run_due_reminders(bot.ctx)) == 0


@pytest.mark.parametrize("into", [timedelta(seconds=0), timedelta(seconds=20), timedelta(seconds=59)])
def test_end_now_in_an_appfirst_windows_first_minute_ends_it(appfirst_settings, appfirst, slack, clock, into):
    """AppFirst takes times to the minute: ending a window in its first minute must not send
    an end equal to its start (which AppFirst refuses)."""
    with BotUnderTest(appfirst_settings, clock=clock) as bot:
        window = schedule(bot)
        clock.set(window.start)
        bot.run(run_due_reminders(bot.ctx))  # "started"
        clock.set(window.start + into)
        slack.forget_calls()
        bot.click(OverrunId.END_NOW, str(window.id), channel=CHANNEL)
        answer = slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))[-1]
        ended = bot.run(MaintenanceService(bot.ctx).get(window.id))
        assert ended.end is not None and window.start < ended.end <= window.start + timedelta(minutes=1), json.dumps(answer)
        clock.set(ended.end)
        bot.run(run_due_reminders(bot.ctx))
        assert [c for c in slack.calls_to("chat.postMessage") if "has ended" in c.get("text", "")]
