"""An incident's lead, through the real bot over HTTP against the fake Slack and status
page, on SQLite and PostgreSQL: chosen in the declare form (the declarer unless changed),
changed with `/incident lead` or the announcement's *Lead* button; the change is a reply in
the thread (exactly once, through the engine) and a timeline event, and the announcement,
`/incident list` and nudges name the lead."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.messages import incident as messages
from bot.services.incident_forms import DeclareForm
from bot.slack import posts
from handlers.incident import views
from handlers.incident.ids import Action, Block, Callback
from handlers.incident.listeners import parse_lead
from scheduler.reminders import run_due_reminders
from store import incidents as incident_store
from store.models import IncidentEvent, Reminder
from store.states import IncidentEventKind, ReminderKind, ReminderState
from tests.support.dates import T0
from tests.support.harness import CHANNEL, home_opened, picked_user
from tests.support.incidents import (
    declare_values,
    event_kinds,
    incidents_in_store,
    open_declare_modal,
    open_modal,
    thread_replies,
)
from tests.support.process import died_before_recording, died_holding
from tests.support.slack_limits import check_message, check_modal
from tests.test_incident_views import HOSTILE, incident

pytestmark = pytest.mark.both_databases

DANA = "U0DANA"


def declare_led_by(bot, slack, lead):
    view = open_declare_modal(bot, slack)
    slack.forget_calls()
    bot.submit(view, {**declare_values(), Block.LEAD: {Action.LEAD: picked_user(lead)}})
    slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))
    incident = slack.wait_for(lambda: [i for i in incidents_in_store(bot) if i.message_ts])[-1]
    slack.forget_calls()
    return incident


def lead_field(blocks) -> str:
    fields = [f["text"] for b in blocks if b["type"] == "section" for f in b.get("fields", [])]
    return next(f for f in fields if f.startswith("*Lead*"))


def test_the_declare_form_offers_the_declarer_as_lead_and_keeps_whom_they_pick(bot, slack, statuspage):
    view = open_declare_modal(bot, slack)
    element = next(b for b in view["blocks"] if b.get("block_id") == Block.LEAD)["element"]
    assert element["type"] == "users_select" and element["initial_user"] == "U123"
    slack.forget_calls()
    bot.submit(view, {**declare_values(), Block.LEAD: {Action.LEAD: picked_user(DANA)}})
    announcement = slack.wait_for(lambda: slack.messages(CHANNEL))[0]
    assert lead_field(announcement["blocks"]) == f"*Lead*\n<@{DANA}>"
    assert incidents_in_store(bot)[0].lead_id == DANA


def test_lead_command_replies_in_the_thread_records_it_and_edits_the_announcement(bot, slack, statuspage):
    incident = declare_led_by(bot, slack, "U123")
    bot.command(f"lead #{incident.id} <@{DANA}|dana>")
    reply = slack.wait_for(lambda: thread_replies(slack, incident))[-1]
    assert f"<@{DANA}> now leads incident #{incident.id}" in json.dumps(reply["blocks"])
    assert reply["metadata"]["event_type"] == "sitrep_lead_change"
    edited = slack.wait_for(lambda: slack.calls_to("chat.update"))[-1]
    assert lead_field(edited["blocks"]) == f"*Lead*\n<@{DANA}>"
    answer = slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))[-1]
    assert f"<@{DANA}> now leads" in answer["text"]
    assert event_kinds(bot, incident.id) == ["declared", "lead"]
    assert incidents_in_store(bot)[0].lead_id == DANA
    listed = json.dumps(bot.command("list").json()["blocks"])
    assert f"led by <@{DANA}>" in listed

    # A bare mention (no name) is taken too; with one incident open the reference is optional.
    slack.forget_calls()
    bot.command("lead <@U0EVE>")
    slack.wait_for(lambda: len(thread_replies(slack, incident)) == 2)
    assert incidents_in_store(bot)[0].lead_id == "U0EVE"
    rows = slack.wait_for(lambda: [r for r in bot.run(_rows(bot)) if r.state == ReminderState.POSTED][1:] and bot.run(_rows(bot)))
    assert [r.state for r in rows] == [ReminderState.POSTED, ReminderState.POSTED]


def test_lead_command_refuses_plainly(bot, slack, statuspage):
    incident = declare_led_by(bot, slack, DANA)
    assert "Name the new lead" in bot.command(f"lead #{incident.id}").text
    assert "already leads" in bot.command(f"lead #{incident.id} <@{DANA}>").text
    assert "I don't know an incident `#99`" in bot.command(f"lead #99 <@{DANA}>").text
    assert thread_replies(slack, incident) == []
    assert event_kinds(bot, incident.id) == ["declared"]


def test_the_lead_button_opens_a_modal_whose_submission_changes_the_lead(bot, slack, statuspage):
    incident = declare_led_by(bot, slack, "U123")
    announcement = slack.messages(CHANNEL)[0]
    buttons = [e["action_id"] for b in announcement["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert Action.LEAD_BUTTON in buttons
    view = open_modal(bot, slack, lambda: bot.click(Action.LEAD_BUTTON, str(incident.id), channel=CHANNEL))
    assert view["callback_id"] == Callback.LEAD
    element = next(b for b in view["blocks"] if b.get("block_id") == Block.LEAD)["element"]
    assert element["initial_user"] == "U123"
    assert bot.submit(view, {Block.LEAD: {Action.LEAD: picked_user(None)}}).json()["errors"] == {Block.LEAD: "Pick the new lead."}
    bot.submit(view, {Block.LEAD: {Action.LEAD: picked_user(DANA)}})
    reply = slack.wait_for(lambda: thread_replies(slack, incident))[-1]
    assert f"<@{DANA}> now leads" in json.dumps(reply["blocks"])
    assert event_kinds(bot, incident.id) == ["declared", "lead"]


def test_a_lead_reply_left_by_a_dead_process_is_posted_once_by_the_scheduler(bot, slack, statuspage):
    """The change and its row are written together: a process that died before posting
    leaves the row claimed; the scheduler takes the stale claim over and posts it, once."""
    incident = declare_led_by(bot, slack, "U123")

    async def changed_then_died() -> None:
        async with bot.ctx.db.session() as session, session.begin():
            stored = await incident_store.get_incident(session, incident.id)
            stored.lead_id = DANA
            row = died_holding(posts.held_row(bot.ctx, kind=ReminderKind.LEAD))
            session.add(row)
            await session.flush()
            event = await incident_store.add_event(
                session, stored, kind=IncidentEventKind.LEAD, status=stored.status, text=DANA, user_id="U123", at=T0
            )
            event.post_id = row.id

    bot.run(changed_then_died())
    assert bot.run(run_due_reminders(bot.ctx)) == 1
    [reply] = thread_replies(slack, incident)
    assert f"<@{DANA}> now leads" in json.dumps(reply["blocks"])
    assert bot.run(run_due_reminders(bot.ctx)) == 0
    assert len(thread_replies(slack, incident)) == 1


def test_a_lead_reply_that_reached_slack_before_the_crash_is_found_not_posted_again(bot, slack, statuspage):
    incident = declare_led_by(bot, slack, "U123")
    bot.command(f"lead #{incident.id} <@{DANA}>")
    slack.wait_for(lambda: bot.run(_rows(bot)) and bot.run(_rows(bot))[0].state == ReminderState.POSTED)

    bot.run(died_before_recording(bot.ctx.db, ReminderKind.LEAD))  # posted, then the process died
    slack.forget_calls()
    assert bot.run(run_due_reminders(bot.ctx)) == 0
    assert slack.calls_to("chat.postMessage") == []  # found in the thread by its tag
    assert len(thread_replies(slack, incident)) == 1
    assert bot.run(_rows(bot))[0].state == ReminderState.POSTED


def _rows(bot):
    async def read():
        async with bot.ctx.db.session() as session:
            query = select(Reminder).where(Reminder.kind == ReminderKind.LEAD).order_by(Reminder.id)
            return list((await session.execute(query)).scalars())

    return read()


def test_lead_mentions_are_parsed_as_slack_sends_them():
    assert parse_lead("#12 <@U0DANA|dana>") == ("#12", "U0DANA")
    assert parse_lead("<@U0DANA>") == (None, "U0DANA")
    assert parse_lead("12 <@W0ENT|ent>") == ("12", "W0ENT")
    assert parse_lead("#12 dana") == (None, None)


def test_every_message_and_view_naming_the_lead_fits_slacks_limits():
    led = incident(title=HOSTILE[:150], lead_id=DANA, room_channel_id="C0ROOM")
    for text, blocks in (messages.announcement(led), messages.room_summary(led)):
        check_message(blocks, text)
        assert f"<@{DANA}>" in json.dumps(blocks)
    change = IncidentEvent(kind="lead", status="Identified", text=DANA, user_id="U123", at=T0)
    text, blocks = messages.lead_reply(led, change)
    check_message(blocks, text)
    check_modal(views.lead_modal(led, channel_id="C123"))
    check_modal(
        views.declare_modal(
            DeclareForm(title="x"), (), statuses=("Investigating",), impacts=("Major Outage",), channel_id=None, declarer="U123"
        )
    )
    text, blocks = views.incident_list([led] * 20, T0, {}, total=20)
    check_message(blocks, text)
    assert json.dumps(blocks).count(f"led by <@{DANA}>") == 20


def test_nudges_name_the_lead_and_the_last_updater():
    led = incident(lead_id=DANA)
    _, blocks = messages.nudge(led, "U0UPD", timedelta(minutes=30))
    assert f"<@{DANA}> (lead), <@U0UPD>" in json.dumps(blocks)
    _, blocks = messages.nudge(led, DANA, timedelta(minutes=30))
    assert json.dumps(blocks).count(f"<@{DANA}>") == 1
    # Incidents stored before the lead existed are led by their declarer.
    assert incident().lead == "U123"


def test_the_home_tab_shows_the_lead(bot, slack, statuspage):
    slack.add_channel("incidents", private=True, members=("UBOT", "U123"), channel_id=CHANNEL)
    declare_led_by(bot, slack, DANA)
    assert bot.event(home_opened("U123")).status_code == 200
    view = slack.wait_for(lambda: slack.calls_to("views.publish"))[-1]["view"]
    assert f"led by <@{DANA}>" in json.dumps(view)
