"""An incident's postmortem as its own channel's canvas (SITREP_INCIDENT_CHANNELS=on), through
the real bot over HTTP against the fake Slack and status page, on SQLite and PostgreSQL: made
once by `/incident postmortem` or the resolve, replaced by the final version at the resolve,
found (not made again) after a crash, skipped with one plain warning when the token lacks
canvases:write (the file still goes in the thread), and a person's own canvas left alone."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from scheduler.reminders import run_due_reminders
from store.models import Reminder
from store.states import ReminderKind, ReminderState
from tests.support.harness import CHANNEL, BotUnderTest
from tests.support.incidents import declare, open_modal, resolve_values
from tests.support.manifests import WITH_CHANNELS, bot_scopes
from tests.support.reminders import planned_then_died, record_lost

pytestmark = pytest.mark.both_databases

SHARES = (ReminderKind.POSTMORTEM, ReminderKind.CANVAS, ReminderKind.POSTMORTEM_FINAL, ReminderKind.CANVAS_FINAL)


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={"sitrep_incident_channels": True})


def rows(bot, *kinds) -> list[Reminder]:
    async def read():
        async with bot.ctx.db.session() as session:
            query = select(Reminder).where(Reminder.kind.in_(kinds or SHARES)).order_by(Reminder.id)
            return list((await session.execute(query)).scalars())

    return bot.run(read())


def settled(bot, count: int) -> bool:
    """`count` share rows, each ended (posted or skipped)."""
    found = rows(bot)
    return len(found) == count and all(r.state in (ReminderState.POSTED, ReminderState.SKIPPED) for r in found)


def answer(slack) -> str:
    """The person's private answer: its text and its blocks' (a warning is a block of its own)."""
    sent = slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))[-1]
    return "\n".join([sent["text"], *(b["text"]["text"] for b in sent.get("blocks") or [] if b.get("text"))])


def postmortem(bot, slack, incident, count: int) -> str:
    """`/incident postmortem` and the private answer, once `count` share rows have ended."""
    slack.forget_calls()
    bot.command(f"postmortem #{incident.id}")
    text = answer(slack)
    slack.wait_for(lambda: settled(bot, count))
    return text


def resolve(bot, slack, incident, count: int) -> tuple[dict, str]:
    slack.forget_calls()
    view = open_modal(bot, slack, lambda: bot.command(f"resolve {incident.id}"))
    bot.submit(view, resolve_values(incident.id))
    text = answer(slack)
    slack.wait_for(lambda: settled(bot, count))
    return view, text


def test_the_command_makes_the_draft_the_rooms_canvas_once(bot, slack, statuspage):
    incident = declare(bot, slack)
    room = incident.room_channel_id
    text = postmortem(bot, slack, incident, 2)
    assert f"It is <#{room}>'s canvas too." in text
    canvas = slack.canvas_of(room)
    assert canvas["markdown"].startswith(f"# Postmortem: incident #{incident.id} DB down")
    assert "still open" in canvas["markdown"] and canvas["title"] == f"Postmortem draft for #{incident.id}"
    [row] = rows(bot, ReminderKind.CANVAS)
    assert (row.state, row.message_ts) == (ReminderState.POSTED, canvas["id"])
    assert len(slack.shared_files(CHANNEL)) == 1  # the file in the thread as before

    # Asked again: said so, never a second create (a channel holds one canvas).
    text = postmortem(bot, slack, incident, 2)
    assert f"It is <#{room}>'s canvas already; resolving the incident replaces it" in text
    assert slack.calls_to("conversations.canvases.create") == []


def test_the_resolve_makes_the_canvas_of_the_final_version(bot, slack, statuspage):
    incident = declare(bot, slack)
    resolve(bot, slack, incident, 2)
    canvas = slack.canvas_of(incident.room_channel_id)
    assert "Time to resolve:** " in canvas["markdown"] and "still open" not in canvas["markdown"]
    assert len(slack.calls_to("conversations.canvases.create")) == 1
    assert slack.calls_to("canvases.edit") == [] and canvas["edits"] == 0


def test_a_canvas_made_before_the_resolve_is_replaced_by_the_final_version_once(bot, slack, statuspage):
    incident = declare(bot, slack)
    postmortem(bot, slack, incident, 2)
    made = slack.canvas_of(incident.room_channel_id)
    view, _ = resolve(bot, slack, incident, 4)
    canvas = slack.canvas_of(incident.room_channel_id)
    assert canvas["id"] == made["id"] and canvas["edits"] == 1
    assert "Time to resolve:** " in canvas["markdown"] and "still open" not in canvas["markdown"]
    [edit] = slack.calls_to("canvases.edit")
    assert edit["canvas_id"] == made["id"] and edit["changes"][0]["operation"] == "replace"
    assert slack.calls_to("conversations.canvases.create") == []
    # Once: a replayed resolve and the scheduler change nothing more.
    slack.forget_calls()
    assert bot.submit(view, resolve_values(incident.id)).status_code == 200
    bot.run(bot.ctx.channel.settle())
    assert bot.run(run_due_reminders(bot.ctx)) == 0
    assert slack.calls_to("canvases.edit") == [] and slack.canvas_of(incident.room_channel_id)["edits"] == 1
    text = postmortem(bot, slack, incident, 4)
    assert f"It is <#{incident.room_channel_id}>'s canvas already, as resolved." in text
    assert slack.calls_to("canvases.edit") == [] and slack.calls_to("conversations.canvases.create") == []


@pytest.mark.parametrize("look", ["read", "unreadable"])
def test_a_canvas_made_before_a_crash_is_found_not_made_again(bot, slack, statuspage, look):
    incident = declare(bot, slack)
    postmortem(bot, slack, incident, 2)
    made = slack.canvas_of(incident.room_channel_id)
    record_lost(bot, ReminderKind.CANVAS)
    slack.forget_calls()
    if look == "unreadable":  # the look fails: Slack's `channel_canvas_already_exists` tells instead
        slack.fail_next("conversations.info", "internal_error")
    assert bot.run(run_due_reminders(bot.ctx)) == 0
    creates = slack.calls_to("conversations.canvases.create")
    assert creates == ([] if look == "read" else [creates[0]])
    [row] = rows(bot, ReminderKind.CANVAS)
    assert row.state == ReminderState.POSTED
    assert row.message_ts == made["id"]  # looked up again after the create's answer
    assert slack.canvas_of(incident.room_channel_id) == made
    assert slack.calls_to("chat.postEphemeral") == [] and slack.calls_to("chat.postMessage") == []


def test_a_canvas_left_by_a_dead_process_before_the_create_is_made_once(bot, slack, statuspage):
    incident = declare(bot, slack)
    planned_then_died(bot, incident.id, ReminderKind.CANVAS)
    assert bot.run(run_due_reminders(bot.ctx)) == 1
    assert len(slack.calls_to("conversations.canvases.create")) == 1
    assert bot.run(run_due_reminders(bot.ctx)) == 0
    assert len(slack.calls_to("conversations.canvases.create")) == 1


def test_without_canvases_write_the_draft_is_in_the_thread_and_the_scope_is_named_once(bot, slack, statuspage, caplog):
    slack.grant(bot_scopes(WITH_CHANNELS) - {"canvases:write"})
    incident = declare(bot, slack)
    caplog.clear()
    text = postmortem(bot, slack, incident, 2)
    assert "|its thread>." in text and len(slack.shared_files(CHANNEL)) == 1
    assert f"It is not <#{incident.room_channel_id}>'s canvas" in text
    assert "`canvases:write`" in text and "manifest.channels.yml" in text
    assert slack.canvas_of(incident.room_channel_id) is None
    assert [r.state for r in rows(bot, ReminderKind.CANVAS)] == [ReminderState.SKIPPED]
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING and "canvas" in r.getMessage()]
    assert len(warned) == 1 and "canvases:write" in warned[0].getMessage()
    assert warned[0].exc_info is None and "xoxb" not in warned[0].getMessage()

    # Resolved: the final file goes in the thread; the canvas is not tried nor warned of again.
    caplog.clear()
    _, text = resolve(bot, slack, incident, 4)
    assert "canvas" not in text
    assert len(slack.shared_files(CHANNEL)) == 2 and slack.calls_to("canvases.edit") == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "canvas" in r.getMessage()]


def test_without_canvases_write_the_resolver_hears_it(bot, slack, statuspage):
    slack.grant(bot_scopes(WITH_CHANNELS) - {"canvases:write"})
    incident = declare(bot, slack)
    _, text = resolve(bot, slack, incident, 2)
    assert "not its channel's canvas" in text and "`canvases:write`" in text
    assert len(slack.shared_files(CHANNEL)) == 1


def test_a_canvas_a_person_made_first_is_left_alone(bot, slack, statuspage):
    incident = declare(bot, slack)
    slack.person_adds_canvas(incident.room_channel_id, "Our own notes")
    text = postmortem(bot, slack, incident, 2)
    assert "has a canvas of its own already" in text
    resolve(bot, slack, incident, 4)
    assert slack.canvas_of(incident.room_channel_id)["markdown"] == "Our own notes"
    assert slack.calls_to("canvases.edit") == []


def test_in_the_sandbox_the_canvas_says_so(settings, slack, statuspage):
    """Everything the sandbox posts says sandbox: the room's canvas is titled so, as the file is."""
    with BotUnderTest(settings.model_copy(update={"sitrep_sandbox": True})) as bot:
        incident = declare(bot, slack)
        postmortem(bot, slack, incident, 2)
        canvas = slack.canvas_of(incident.room_channel_id)
    assert canvas["title"] == f"[sandbox] Postmortem draft for #{incident.id}"
