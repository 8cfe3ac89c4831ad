"""Driving an incident through the real bot, and reading what it stored: shared by every
incident suite (HTTP and Socket Mode alike)."""

from __future__ import annotations

from sqlalchemy import select

from handlers.incident.ids import NOTIFY_VALUE, Action, Block
from store.models import Draft, Incident, IncidentEvent
from tests.support.harness import CHANNEL, BotUnderTest, checked, chose, chose_many, last_view, opened_form, typed

API = "3fa85f64-5717-4562-b3fc-2c963f66afa0"  # a component GUID of the harness's settings


def declare_values(title="DB down", description="Timeouts on checkout", components=(API,), notify=True):
    return {
        Block.TITLE: {Action.TITLE: typed(title)},
        Block.DESCRIPTION: {Action.DESCRIPTION: typed(description)},
        Block.STATUS: {Action.STATUS: chose("Investigating")},
        Block.IMPACT: {Action.IMPACT: chose("Major Outage")},
        Block.COMPONENTS: {Action.COMPONENTS: chose_many(list(components))},
        Block.NOTIFY: {Action.NOTIFY: checked([NOTIFY_VALUE] if notify else [])},
    }


def incidents_in_store(bot: BotUnderTest) -> list[Incident]:
    async def read():
        async with bot.ctx.db.session() as session:
            return list((await session.execute(select(Incident))).scalars())

    return bot.run(read())


def drafts_in_store(bot: BotUnderTest) -> list[Draft]:
    async def read():
        async with bot.ctx.db.session() as session:
            return list((await session.execute(select(Draft))).scalars())

    return bot.run(read())


def event_kinds(bot: BotUnderTest, incident_id: int) -> list[str]:
    """The incident's timeline as stored, oldest first."""

    async def read():
        async with bot.ctx.db.session() as session:
            query = select(IncidentEvent.kind).where(IncidentEvent.incident_id == incident_id).order_by(IncidentEvent.id)
            return list((await session.execute(query)).scalars())

    return bot.run(read())


def open_declare_modal(bot, slack, text="declare DB down") -> dict:
    opened = slack.count("views.open")
    response = bot.command(text)
    assert response.status_code == 200
    return opened_form(slack, opened=opened)


def declare(bot, slack, title="DB down"):
    before = len(incidents_in_store(bot))
    opened = slack.count("views.open")
    bot.command(f"declare {title}")
    view = opened_form(slack, opened=opened)
    slack.forget_calls()
    answer = bot.submit(view, declare_values(title=title))
    assert answer.status_code == 200 and "errors" not in answer.text, answer.text  # a refused form says why here
    slack.wait_for(lambda: len([i for i in incidents_in_store(bot) if i.message_ts]) > before)
    slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))  # the declarer's answer: all done
    slack.forget_calls()
    return max(incidents_in_store(bot), key=lambda i: i.id)


def update_values(incident_id, status="Identified", text="Root cause found: a bad index"):
    return {
        Block.INCIDENT: {Action.INCIDENT: chose(str(incident_id))},
        Block.STATUS: {Action.STATUS: chose(status)},
        Block.UPDATE_TEXT: {Action.UPDATE_TEXT: typed(text)},
    }


def resolve_values(incident_id, note="Index rebuilt"):
    return {Block.INCIDENT: {Action.INCIDENT: chose(str(incident_id))}, Block.NOTE: {Action.NOTE: typed(note)}}


def open_modal(bot, slack, send):
    slack.forget_calls()
    response = send()
    assert response.status_code == 200, response.text
    slack.wait_for(lambda: slack.calls_to("views.open"))
    return last_view(slack)


def thread_replies(slack, incident):
    return slack.thread(CHANNEL, incident.message_ts)


def assert_update_landed(bot, slack, statuspage, incident, *, replies=1):
    reply = slack.wait_for(lambda: len(thread_replies(slack, incident)) >= replies and thread_replies(slack, incident))[-1]
    puts = [r for r in statuspage.requests if r.method == "PUT" and r.path == "/api/admin/Incident"]
    assert puts[-1].json == {
        "IncidentId": incident.upstream_id,
        "Description": "Root cause found: a bad index",
        "Status": "Identified",
    }
    assert puts[-1].headers["X-API-KEY"] == statuspage.api_key
    assert reply["thread_ts"] == incident.message_ts
    assert "Identified" in str(reply["blocks"]) and "bad index" in str(reply["blocks"]) and "<@U123>" in str(reply["blocks"])
    update = slack.wait_for(lambda: slack.calls_to("chat.update"))[-1]
    assert update["ts"] == incident.message_ts
    assert "Identified" in str(update["blocks"]) and "update" in str(update["blocks"]).lower()
    stored = slack.wait_for(lambda: [i for i in incidents_in_store(bot) if i.id == incident.id and i.update_count == replies])[0]
    assert stored.status == "Identified"
    assert event_kinds(bot, incident.id) == ["declared"] + ["update"] * replies


def answers_with(slack, words: str) -> list[dict]:
    """The ephemeral answers whose text has `words`."""
    return [m for m in slack.ephemerals() if words in m["text"]]


def unknown_declare(bot, slack, statuspage) -> tuple[dict, int]:
    """Declare with the status page cutting the connection after it made the incident: made
    upstream, the bot never hears (at once: no client timeout waited out). Returns the
    "Outcome unknown" answer and the draft's ID."""
    statuspage.drop_replies(1)
    view = open_declare_modal(bot, slack)
    bot.submit(view, declare_values())
    answer = slack.wait_for(lambda: answers_with(slack, "Outcome unknown"))[0]
    return answer, max(d.id for d in drafts_in_store(bot))
