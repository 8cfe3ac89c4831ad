"""A channel per incident (SITREP_INCIDENT_CHANNELS=on): declared, updated and resolved
through the real bot over HTTP against the fake Slack and status page. The room is created
with a name Slack takes, the declarer invited, the summary posted and kept current, updates
and the resolution posted in both places, the room archived SITREP_ARCHIVE_AFTER hours
after the resolution (injected clock; the test runs the due reminders itself), and every
Slack refusal is a warning to the declarer, never a failed declaration."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.clients.slack import UNREADABLE_ANSWER
from bot.messages.incident import AnnouncementId
from bot.slack.rooms import NAME_MAX, room_name
from handlers.incident.ids import NOTIFY_VALUE, Action, Block
from scheduler.reminders import run_due_reminders
from store.models import Incident, Reminder
from store.states import ReminderKind, ReminderState
from tests.support.dates import T0
from tests.support.fakes.slack_api import Malformed, channel_name_error
from tests.support.harness import CHANNEL, BotUnderTest, FakeClock, checked, chose, chose_many, last_view, typed
from tests.support.manifests import WITH_CHANNELS, bot_scopes

DECLARER = "U_DECL"


@pytest.fixture
def clock():
    return FakeClock(T0)


@pytest.fixture
def room_settings(settings):
    return settings.model_copy(update={"sitrep_incident_channels": True, "sitrep_archive_after": 24})


@pytest.fixture
def bot(room_settings, clock):
    with BotUnderTest(room_settings, clock=clock) as running:
        yield running


def incidents(bot) -> list[Incident]:
    async def read():
        async with bot.ctx.db.session() as session:
            return list((await session.execute(select(Incident).order_by(Incident.id))).scalars())

    return bot.run(read())


def archive_rows(bot) -> list[Reminder]:
    async def read():
        async with bot.ctx.db.session() as session:
            rows = await session.execute(select(Reminder).where(Reminder.kind == ReminderKind.ARCHIVE))
            return list(rows.scalars())

    return bot.run(read())


def modal(bot, slack, send) -> dict:
    slack.forget_calls()
    send()
    return slack.wait_for(lambda: slack.calls_to("views.open") and last_view(slack))


def declare(bot, slack, title="DB down: EU checkout", user=DECLARER) -> tuple[Incident, dict]:
    """Declare through the modal; the incident as stored and the declarer's private answer."""
    view = modal(bot, slack, lambda: bot.command(f"declare {title}", user=user, channel=CHANNEL))
    slack.forget_calls()
    bot.submit(
        view,
        {
            Block.TITLE: {Action.TITLE: typed(title)},
            Block.DESCRIPTION: {Action.DESCRIPTION: typed("Timeouts")},
            Block.STATUS: {Action.STATUS: chose("Investigating")},
            Block.IMPACT: {Action.IMPACT: chose("Major Outage")},
            Block.COMPONENTS: {Action.COMPONENTS: chose_many([])},
            Block.NOTIFY: {Action.NOTIFY: checked([NOTIFY_VALUE])},
        },
        user=user,
    )
    answer = slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))[-1]
    assert answer["user"] == user
    return incidents(bot)[-1], answer


def update(bot, slack, incident, text="Found it"):
    view = modal(bot, slack, lambda: bot.click(AnnouncementId.POST_UPDATE, str(incident.id), user=DECLARER, channel=CHANNEL))
    slack.forget_calls()
    bot.submit(
        view,
        {
            Block.INCIDENT: {Action.INCIDENT: chose(str(incident.id))},
            Block.STATUS: {Action.STATUS: chose("Identified")},
            Block.UPDATE_TEXT: {Action.UPDATE_TEXT: typed(text)},
        },
        user=DECLARER,
    )
    return slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))[-1]


def resolve(bot, slack, incident):
    view = modal(bot, slack, lambda: bot.click(AnnouncementId.RESOLVE, str(incident.id), user=DECLARER, channel=CHANNEL))
    slack.forget_calls()
    bot.submit(
        view,
        {Block.INCIDENT: {Action.INCIDENT: chose(str(incident.id))}, Block.NOTE: {Action.NOTE: typed("Index rebuilt")}},
        user=DECLARER,
    )
    return slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))[-1]


def run_due(bot) -> int:
    return bot.run(run_due_reminders(bot.ctx))


def settle(bot):
    bot.run(bot.ctx.channel.settle())


def top_level(slack, channel) -> list[dict]:
    return [m for m in slack.messages(channel) if not m.get("thread_ts")]


def answer_text(answer) -> str:
    return json.dumps(answer["blocks"])


# --- the room's name -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "title",
    [
        "DB down: EU checkout",
        "Über-Störung im Zahlungsverkehr!!",
        "!!!",
        "x" * 300,
        "Payments " * 40,
        "UPPER_case  Mixed--dashes",
    ],
)
def test_room_names_are_names_slack_takes(title):
    for attempt in (1, 2, 3):
        name = room_name(12345, title, attempt)
        assert channel_name_error(name) is None, name
        assert name.startswith("inc-12345") and len(name) <= NAME_MAX
        assert name.endswith(f"-{attempt}") or attempt == 1


def test_room_name_reads_like_the_title():
    assert room_name(7, "DB down: EU checkout") == "inc-7-db-down-eu-checkout"
    assert room_name(7, "Über-Störung") == "inc-7-uber-storung"
    assert room_name(7, "!!!") == "inc-7"
    assert room_name(7, "DB down", 2) == "inc-7-db-down-2"
    long = room_name(7, "Payments " * 40)
    assert long.endswith("payments") and len(long) <= NAME_MAX  # cut between words


# --- the whole life ------------------------------------------------------------------------------


@pytest.mark.both_databases
def test_declare_opens_the_room_and_everything_reaches_both_places(bot, slack, clock):
    slack.grant(bot_scopes(WITH_CHANNELS))  # installed from manifest.channels.yml
    incident, answer = declare(bot, slack)
    [create] = slack.calls_to("conversations.create")
    assert create["name"] == "inc-1-db-down-eu-checkout"
    assert create.get("is_private") in (None, False, "false", "0")
    room = slack.channel_named("inc-1-db-down-eu-checkout")
    assert room is not None and room["is_private"] is False
    assert incident.room_channel_id == room["id"]
    [invite] = slack.calls_to("conversations.invite")
    assert invite == {"channel": room["id"], "users": DECLARER}
    assert DECLARER in slack.channel(room["id"])["members"]
    assert ":warning:" not in answer_text(answer)  # all went through

    # The summary is in the room, pointing back to the announcement; the announcement shows the room.
    settle(bot)
    [summary] = top_level(slack, room["id"])
    assert incident.room_message_ts == summary["ts"]
    assert "Incident #1" in json.dumps(summary["blocks"]) and incident.permalink in json.dumps(summary["blocks"])
    announcement = slack.message(CHANNEL, incident.message_ts)
    assert f"<#{room['id']}>" in json.dumps(announcement["blocks"])

    # An update: in the announcement's thread and in the room; the room's summary follows.
    clock.advance(minutes=5)
    answer = update(bot, slack, incident, text="Root cause: a bad index")
    assert ":warning:" not in answer_text(answer)
    settle(bot)
    assert "bad index" in json.dumps(slack.thread(CHANNEL, incident.message_ts)[-1]["blocks"])
    posts = top_level(slack, room["id"])
    assert len(posts) == 2 and "bad index" in json.dumps(posts[-1]["blocks"])
    assert "Identified" in json.dumps(slack.message(room["id"], summary["ts"])["blocks"])

    # Resolved: both places; the archive is planned, not done.
    clock.advance(minutes=5)
    resolve(bot, slack, incident)
    settle(bot)
    notices = [m for m in slack.thread(CHANNEL, incident.message_ts) if not m.get("files")]  # the draft is a file there too
    assert "Resolved" in json.dumps(notices[-1]["blocks"])
    posts = top_level(slack, room["id"])
    assert len(posts) == 3 and "Index rebuilt" in json.dumps(posts[-1]["blocks"])
    assert "Resolved" in json.dumps(slack.message(room["id"], summary["ts"])["blocks"])
    [row] = archive_rows(bot)
    assert row.due_at == T0 + timedelta(days=1, minutes=10)  # resolved at 12:10, + 24 h
    assert not slack.channel(room["id"])["is_archived"]

    # Archived after SITREP_ARCHIVE_AFTER hours, exactly once.
    slack.forget_calls()
    clock.advance(hours=23, minutes=59)
    assert run_due(bot) == 0
    assert slack.calls_to("conversations.archive") == []
    clock.advance(minutes=1)
    assert run_due(bot) == 1
    assert run_due(bot) == 0
    assert slack.calls_to("conversations.archive") == [{"channel": room["id"]}]
    assert slack.channel(room["id"])["is_archived"] is True
    assert archive_rows(bot)[0].state == ReminderState.POSTED


@pytest.mark.both_databases
def test_two_processes_archive_once(bot, room_settings, slack, clock):
    incident, _ = declare(bot, slack)
    resolve(bot, slack, incident)
    clock.advance(hours=24)
    with BotUnderTest(room_settings, clock=clock) as other:  # a second replica on the same database
        assert other.ctx.instance_id != bot.ctx.instance_id
        runs = [asyncio.run_coroutine_threadsafe(run_due_reminders(b.ctx), b.loop) for b in (bot, other)]
        assert sum(r.result(30) for r in runs) == 1
    assert len(slack.calls_to("conversations.archive")) == 1
    assert slack.channel(incident.room_channel_id)["is_archived"] is True


def test_private_rooms_when_asked(room_settings, slack, clock):
    slack.grant(bot_scopes(WITH_CHANNELS) - {"channels:manage"})  # private rooms need only groups:write
    with BotUnderTest(room_settings.model_copy(update={"sitrep_incident_channel_private": True}), clock=clock) as bot:
        incident, answer = declare(bot, slack)
    [create] = slack.calls_to("conversations.create")
    assert create["is_private"] in (True, "true", "1")
    assert slack.channel(incident.room_channel_id)["is_private"] is True
    assert ":warning:" not in answer_text(answer)


def test_archive_after_zero_never_archives(room_settings, slack, clock):
    with BotUnderTest(room_settings.model_copy(update={"sitrep_archive_after": 0}), clock=clock) as bot:
        incident, _ = declare(bot, slack)
        resolve(bot, slack, incident)
        clock.advance(days=400)
        run_due(bot)
        assert archive_rows(bot) == []
    assert slack.calls_to("conversations.archive") == []
    assert slack.channel(incident.room_channel_id)["is_archived"] is False


# --- refusals: a warning to the declarer, never a failed declaration ------------------------------


def assert_declared_without_room(bot, slack, incident):
    assert incident.message_ts and incident.room_channel_id is None
    assert incident.upstream_id
    announcement = slack.message(CHANNEL, incident.message_ts)
    assert "Incident #" in json.dumps(announcement["blocks"]) and "Channel" not in json.dumps(announcement["blocks"])


def test_a_taken_name_gets_a_suffix(bot, slack):
    slack.add_channel("inc-1-db-down-eu-checkout")
    incident, answer = declare(bot, slack)
    names = [c["name"] for c in slack.calls_to("conversations.create")]
    assert names == ["inc-1-db-down-eu-checkout", "inc-1-db-down-eu-checkout-2"]
    assert slack.channel(incident.room_channel_id)["name"] == "inc-1-db-down-eu-checkout-2"
    assert ":warning:" not in answer_text(answer)


def test_every_name_taken_is_a_warning(bot, slack):
    for name in ("inc-1-db-down-eu-checkout", "inc-1-db-down-eu-checkout-2", "inc-1-db-down-eu-checkout-3"):
        slack.add_channel(name)
    incident, answer = declare(bot, slack)
    assert len(slack.calls_to("conversations.create")) == 3
    assert_declared_without_room(bot, slack, incident)
    text = answer_text(answer)
    assert "is declared" in text and ":warning:" in text and "#inc-1-db-down-eu-checkout-3" in text and "taken" in text
    assert slack.calls_to("conversations.invite") == []


def test_without_the_scope_the_declarer_hears_which_one(bot, slack):
    slack.grant(bot_scopes())  # installed from manifest.yml, not manifest.channels.yml
    incident, answer = declare(bot, slack)
    assert len(slack.calls_to("conversations.create")) == 1  # no point trying other names
    assert_declared_without_room(bot, slack, incident)
    text = answer_text(answer)
    assert "channels:manage" in text and "manifest.channels.yml" in text


def test_a_workspace_that_forbids_it_is_a_warning(bot, slack):
    slack.fail_next("conversations.create", "restricted_action")
    incident, answer = declare(bot, slack)
    assert_declared_without_room(bot, slack, incident)
    assert "restricted_action" in answer_text(answer)


def test_slack_down_while_opening_is_a_warning(bot, slack):
    slack.fail_next("conversations.create", "internal_error", status=500)
    incident, answer = declare(bot, slack)
    assert_declared_without_room(bot, slack, incident)
    assert ":warning:" in answer_text(answer)


def test_slack_not_answering_while_opening_is_a_warning(room_settings, clock, slack):
    # Production waits 10 s; the point is the same. Given at start-up: every Slack client
    # shares one session, which carries the timeout.
    # 5 s, not 0.5: the timeout is every Slack call's (views.open, the announcement...), and
    # those must not time out on a loaded machine; the create is held until the test lets it go.
    with BotUnderTest(room_settings, clock=clock, slack_timeout=5.0) as bot:
        held = threading.Event()
        try:
            slack.delay_next("conversations.create", held)
            incident, answer = declare(bot, slack)
            assert_declared_without_room(bot, slack, incident)
            assert "did not answer" in answer_text(answer)
        finally:
            held.set()
        # The late call lands in this test, not the next one's workspace.
        slack.wait_for(lambda: slack.channel_named("inc-1-db-down-eu-checkout"))


@pytest.mark.parametrize("malformed", list(Malformed), ids=lambda m: m.name.lower())
def test_a_malformed_answer_while_opening_is_a_warning(bot, slack, malformed):
    slack.fail_next("conversations.create", malformed=malformed)
    incident, answer = declare(bot, slack)
    assert_declared_without_room(bot, slack, incident)
    text = answer_text(answer)
    assert ":warning:" in text and "could not open its own channel" in text and UNREADABLE_ANSWER in text
    assert f"may exist anyway. Look for `#inc-{incident.id}-" in text  # only the answer was lost
    assert len(slack.calls_to("conversations.create")) == 1  # another name would not help


def test_an_invite_refused_is_a_warning_and_the_room_still_works(bot, slack, clock):
    slack.fail_next("conversations.invite", "user_is_restricted")
    incident, answer = declare(bot, slack)
    assert incident.room_channel_id and incident.room_message_ts
    text = answer_text(answer)
    assert "could not add you" in text and "user_is_restricted" in text and f"<#{incident.room_channel_id}>" in text


@pytest.mark.parametrize("malformed", list(Malformed), ids=lambda m: m.name.lower())
def test_a_malformed_answer_to_the_invite_is_a_warning_and_the_room_still_works(bot, slack, malformed):
    slack.fail_next("conversations.invite", malformed=malformed)
    incident, answer = declare(bot, slack)
    assert incident.room_channel_id and incident.room_message_ts
    text = answer_text(answer)
    assert "could not add you" in text and UNREADABLE_ANSWER in text and f"<#{incident.room_channel_id}>" in text


def test_the_summary_refused_is_posted_with_the_next_update(bot, slack, clock):
    # Slack refuses both posts: the announcement and the room's summary.
    slack.fail_next("chat.postMessage", "internal_error")
    slack.fail_next("chat.postMessage", "internal_error")
    incident, answer = declare(bot, slack)
    assert ":warning:" in answer_text(answer)
    incident = incidents(bot)[-1]
    assert incident.room_channel_id is not None
    clock.advance(minutes=1)
    update(bot, slack, incident)
    settle(bot)
    incident = incidents(bot)[-1]
    assert incident.message_ts and incident.room_message_ts
    assert len(top_level(slack, incident.room_channel_id)) == 2  # the summary, then the update


def test_archive_refused_tells_the_declarer_once(bot, slack, clock):
    incident, _ = declare(bot, slack)
    resolve(bot, slack, incident)
    slack.fail_next("conversations.archive", "restricted_action")
    slack.forget_calls()
    clock.advance(hours=24)
    assert run_due(bot) == 0
    [warning] = slack.calls_to("chat.postEphemeral")
    assert warning["user"] == DECLARER and warning["channel"] == incident.room_channel_id
    assert "restricted_action" in warning["text"] and "archive" in warning["text"]
    assert archive_rows(bot)[0].state == ReminderState.SKIPPED
    clock.advance(hours=24)
    assert run_due(bot) == 0
    assert len(slack.calls_to("conversations.archive")) == 1


@pytest.mark.parametrize("malformed", list(Malformed), ids=lambda m: m.name.lower())
def test_a_malformed_answer_to_the_archive_tells_the_declarer_once(bot, slack, clock, malformed):
    incident, _ = declare(bot, slack)
    resolve(bot, slack, incident)
    slack.fail_next("conversations.archive", malformed=malformed)
    slack.forget_calls()
    clock.advance(hours=24)
    assert run_due(bot) == 0
    [warning] = slack.calls_to("chat.postEphemeral")
    assert warning["user"] == DECLARER and warning["channel"] == incident.room_channel_id
    assert "archive" in warning["text"] and UNREADABLE_ANSWER in warning["text"]
    assert archive_rows(bot)[0].state == ReminderState.SKIPPED
    clock.advance(hours=24)
    assert run_due(bot) == 0
    assert len(slack.calls_to("conversations.archive")) == 1


def test_archive_when_slack_does_not_answer_is_retried(bot, slack, clock):
    incident, _ = declare(bot, slack)
    resolve(bot, slack, incident)
    slack.fail_next("conversations.archive", "internal_error", status=500)
    clock.advance(hours=24)
    assert run_due(bot) == 0
    assert not slack.channel(incident.room_channel_id)["is_archived"]
    clock.advance(minutes=3)  # the claim given back is taken again
    assert run_due(bot) == 1
    assert slack.channel(incident.room_channel_id)["is_archived"]


# --- off -------------------------------------------------------------------------------------------


def test_setting_off_opens_nothing(settings, slack, clock):
    with BotUnderTest(settings, clock=clock) as bot:
        incident, answer = declare(bot, slack)
        update(bot, slack, incident)
        resolve(bot, slack, incident)
        clock.advance(days=30)
        run_due(bot)
        assert archive_rows(bot) == []
    assert incident.room_channel_id is None
    methods = {c.method for c in slack.calls}
    assert not {m for m in methods if m.startswith("conversations.") and m != "conversations.replies"}
    assert ":warning:" not in answer_text(answer)
