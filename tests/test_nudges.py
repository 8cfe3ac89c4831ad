"""Update nudges: an open incident quiet for SITREP_UPDATE_NUDGE minutes is nudged once per
quiet interval in its thread, naming the last updater, never after resolve; exactly once
across processes. Declared, updated and resolved through the real bot over HTTP; time is
an injected clock and the test runs the due reminders itself."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.messages.incident import AnnouncementId
from bot.slack.posts import PostTag
from handlers.incident.ids import NOTIFY_VALUE, Action, Block
from scheduler.reminders import run_due_reminders
from store.models import Incident, Reminder
from store.states import ReminderKind, ReminderState
from tests.support.dates import T0
from tests.support.harness import CHANNEL, BotUnderTest, FakeClock, checked, chose, chose_many, last_view, typed


@pytest.fixture
def clock():
    return FakeClock(T0)


@pytest.fixture
def bot(settings, clock):
    with BotUnderTest(settings, clock=clock) as running:
        yield running


def incidents(bot) -> list[Incident]:
    async def read():
        async with bot.ctx.db.session() as session:
            return list((await session.execute(select(Incident))).scalars())

    return bot.run(read())


def nudge_rows(bot) -> list[Reminder]:
    async def read():
        async with bot.ctx.db.session() as session:
            rows = await session.execute(select(Reminder).where(Reminder.kind == ReminderKind.NUDGE))
            return list(rows.scalars())

    return bot.run(read())


def modal(bot, slack, send) -> dict:
    slack.forget_calls()
    send()
    return slack.wait_for(lambda: slack.calls_to("views.open") and last_view(slack))


def declare(bot, slack, *, user="U123") -> Incident:
    view = modal(bot, slack, lambda: bot.command("declare DB down", user=user))
    slack.forget_calls()
    bot.submit(
        view,
        {
            Block.TITLE: {Action.TITLE: typed("DB down")},
            Block.DESCRIPTION: {Action.DESCRIPTION: typed("Timeouts")},
            Block.STATUS: {Action.STATUS: chose("Investigating")},
            Block.IMPACT: {Action.IMPACT: chose("Major Outage")},
            Block.COMPONENTS: {Action.COMPONENTS: chose_many([])},
            Block.NOTIFY: {Action.NOTIFY: checked([NOTIFY_VALUE])},
        },
        user=user,
    )
    slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))
    return incidents(bot)[-1]


def update(bot, slack, incident, *, user):
    view = modal(bot, slack, lambda: bot.click(AnnouncementId.POST_UPDATE, str(incident.id), user=user, channel=CHANNEL))
    slack.forget_calls()
    bot.submit(
        view,
        {
            Block.INCIDENT: {Action.INCIDENT: chose(str(incident.id))},
            Block.STATUS: {Action.STATUS: chose("Identified")},
            Block.UPDATE_TEXT: {Action.UPDATE_TEXT: typed("Found it")},
        },
        user=user,
    )
    slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))


def resolve(bot, slack, incident):
    view = modal(bot, slack, lambda: bot.click(AnnouncementId.RESOLVE, str(incident.id), channel=CHANNEL))
    slack.forget_calls()
    bot.submit(view, {Block.INCIDENT: {Action.INCIDENT: chose(str(incident.id))}, Block.NOTE: {Action.NOTE: typed("ok")}})
    slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))


def nudges(slack) -> list[dict]:
    out = []
    for call in slack.calls_to("chat.postMessage"):
        meta = call.get("metadata") or {}
        if isinstance(meta, str):
            meta = json.loads(meta)
        if meta.get("event_type") == PostTag.NUDGE:
            out.append(call)
    return out


def run_due(bot) -> int:
    return bot.run(run_due_reminders(bot.ctx))


def test_quiet_incident_is_nudged_once_per_interval_naming_the_last_updater(bot, slack, clock):
    incident = declare(bot, slack, user="U_DECL")
    slack.forget_calls()
    clock.advance(minutes=29)
    assert run_due(bot) == 0
    clock.advance(minutes=1)
    assert run_due(bot) == 1
    assert run_due(bot) == 0  # exactly once for this interval
    [first] = nudges(slack)
    assert first["thread_ts"] == incident.message_ts and first["channel"] == CHANNEL
    text = json.dumps(first["blocks"])
    assert "<@U_DECL>" in text and "30m" in text
    buttons = [e for b in first["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert [b["action_id"] for b in buttons] == [AnnouncementId.POST_UPDATE, AnnouncementId.RESOLVE]
    assert all(b["value"] == str(incident.id) for b in buttons)

    clock.advance(minutes=30)  # another quiet interval
    assert run_due(bot) == 1
    assert len(nudges(slack)) == 2

    # An update restarts the count, and the updater is named next time.
    clock.advance(minutes=10)
    update(bot, slack, incident, user="U_UPD")
    slack.forget_calls()
    clock.advance(minutes=29)
    assert run_due(bot) == 0
    clock.advance(minutes=1)
    assert run_due(bot) == 1
    assert "<@U_UPD>" in json.dumps(nudges(slack)[0]["blocks"])

    # Resolved: never again.
    resolve(bot, slack, incident)
    slack.forget_calls()
    clock.advance(hours=5)
    assert run_due(bot) == 0
    assert nudges(slack) == []
    assert [r.state for r in nudge_rows(bot)] == [ReminderState.CANCELLED]


def test_two_processes_post_one_nudge(bot, slack, clock):
    declare(bot, slack)
    slack.forget_calls()
    clock.advance(minutes=30)

    async def both():
        return await asyncio.gather(run_due_reminders(bot.ctx), run_due_reminders(bot.ctx))

    assert sum(bot.run(both())) == 1
    assert len(nudges(slack)) == 1


def test_a_failed_nudge_is_posted_by_the_next_run_and_only_once(bot, slack, clock):
    declare(bot, slack)
    slack.forget_calls()
    clock.advance(minutes=30)
    slack.fail_next("chat.postMessage", error="internal_error")
    assert run_due(bot) == 0  # logged; the claim is given back
    slack.forget_calls()  # the refused call
    clock.advance(seconds=30)
    assert run_due(bot) == 1  # the thread is searched first, then it is posted
    assert run_due(bot) == 0
    assert len(nudges(slack)) == 1
    [row] = nudge_rows(bot)
    assert row.state == ReminderState.PENDING and row.due_at > clock()


def test_a_rate_limited_nudge_waits_unclaimed_and_is_posted_once_after_retry_after(bot, slack, clock):
    declare(bot, slack)
    slack.forget_calls()
    clock.advance(minutes=30)
    slack.fail_next("chat.postMessage", status=429, retry_after=200)
    assert run_due(bot) == 0
    [row] = nudge_rows(bot)  # handed back: pending, nobody's claim, not before Retry-After
    assert (row.state, row.claimed_by, row.not_before) == (ReminderState.PENDING, None, clock() + timedelta(seconds=200))
    slack.forget_calls()  # the refused call
    clock.advance(seconds=199)
    assert run_due(bot) == 0
    clock.advance(seconds=1)
    assert run_due(bot) == 1
    assert run_due(bot) == 0
    assert len(nudges(slack)) == 1
    [row] = nudge_rows(bot)
    assert row.state == ReminderState.PENDING and row.not_before is None and row.due_at > clock()


def test_off_when_zero(settings, slack, clock):
    with BotUnderTest(settings.model_copy(update={"sitrep_update_nudge": 0}), clock=clock) as bot:
        declare(bot, slack)
        clock.advance(hours=3)
        assert run_due(bot) == 0
        assert nudges(slack) == []
