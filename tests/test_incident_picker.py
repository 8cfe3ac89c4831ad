"""The incident picker in `/incident update` and `/incident resolve` is a type-ahead
(external_select): it works with any number of open incidents, where a static select holds
100 options and Slack refuses an `initial_option` that is not among them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from handlers.incident.ids import Action, Block
from store.models import Incident
from tests.support.harness import CHANNEL, BotUnderTest, FakeClock, chose, chose_external, typed
from tests.support.incidents import declare, incidents_in_store, open_modal, thread_replies
from tests.support.queries import recorded_statements

LONG = "Checkout is failing for customers in the EU region after the payment provider changed " + "x" * 64


def add_open_incidents(bot, count: int, title: str = LONG, *, first: int = 0) -> None:
    """Open incidents the bot knows from before (its store is their record)."""

    async def add():
        now = datetime.now(UTC)
        async with bot.ctx.db.session() as session, session.begin():
            for n in range(first, first + count):
                session.add(
                    Incident(
                        upstream_id=f"old-{n}",
                        title=f"{title} {n}",
                        status="Investigating",
                        impact="Partial Outage",
                        channel_id=CHANNEL,
                        message_ts=f"1.{n}",
                        declared_by="U1",
                        declared_at=now,
                        updated_at=now,
                    )
                )

    bot.run(add())


def picker(view: dict) -> dict:
    return next(b for b in view["blocks"] if b.get("block_id") == Block.INCIDENT)["element"]


def suggestions(bot, view: dict, typed_so_far: str) -> list[dict]:
    response = bot.suggest(view, block_id=Block.INCIDENT, action_id=Action.INCIDENT, value=typed_so_far)
    assert response.status_code == 200, response.text
    return response.json()["options"]


@pytest.mark.both_databases  # the type-ahead's matching is SQL
def test_update_with_150_open_incidents_preselects_and_types_ahead(bot, slack, statuspage):
    add_open_incidents(bot, 150)
    real = declare(bot, slack, title="Payments & refunds <delayed>")
    view = open_modal(bot, slack, lambda: bot.command(f"update #{real.id}"))
    element = picker(view)
    assert element["type"] == "external_select" and element["min_query_length"] == 0
    assert element["initial_option"] == {
        "text": {"type": "plain_text", "text": f"#{real.id} Payments & refunds <delayed>", "emoji": True},
        "value": str(real.id),
    }
    assert "options" not in element  # Slack asks the bot as the person types

    everything = suggestions(bot, view, "")
    assert len(everything) == 100  # the most Slack shows; typing narrows it down
    assert everything[0]["value"] == str(real.id)  # newest first
    assert all(len(o["text"]["text"]) <= 75 for o in everything)
    assert everything[1]["text"]["text"].endswith("…")  # a long title, cut visibly

    by_number = [o["value"] for o in suggestions(bot, view, "#12")]
    assert by_number[0] == "12" and set(by_number) == {"12", "120", "121", "122", "123", "124", "125", "126", "127", "128", "129"}
    assert [o["value"] for o in suggestions(bot, view, "REFUNDS delayed")] == [str(real.id)]
    assert [o["value"] for o in suggestions(bot, view, "old-149")] == ["150"]  # the status page's ID
    assert suggestions(bot, view, "nothing like this") == []
    assert len(suggestions(bot, view, "#")) == 100  # just started typing a number

    bot.submit(
        view,
        {
            Block.INCIDENT: {Action.INCIDENT: chose_external(str(real.id))},
            Block.STATUS: {Action.STATUS: chose("Identified")},
            Block.UPDATE_TEXT: {Action.UPDATE_TEXT: typed("Root cause found: a bad index")},
        },
    )
    reply = slack.wait_for(lambda: thread_replies(slack, real))[-1]
    assert "bad index" in json.dumps(reply["blocks"])
    puts = [r for r in statuspage.requests if r.method == "PUT"]
    assert puts[-1].json["IncidentId"] == real.upstream_id


def test_resolve_with_many_open_incidents_has_no_preselection_and_resolves_the_pick(bot, slack, statuspage):
    add_open_incidents(bot, 120)
    real = declare(bot, slack, title="DB down")
    view = open_modal(bot, slack, lambda: bot.command("resolve"))
    element = picker(view)
    assert element["type"] == "external_select" and "initial_option" not in element
    assert "Resolve an incident?" in json.dumps(view["blocks"])
    assert suggestions(bot, view, "db down") == [
        {"text": {"type": "plain_text", "text": f"#{real.id} DB down", "emoji": True}, "value": str(real.id)}
    ]
    bot.submit(view, {Block.INCIDENT: {Action.INCIDENT: chose_external(str(real.id))}, Block.NOTE: {Action.NOTE: typed("Fixed")}})
    slack.wait_for(lambda: not next(i for i in incidents_in_store(bot) if i.id == real.id).is_open)


def test_the_only_open_incident_is_preselected_and_no_pick_is_an_error_in_the_form(bot, slack, statuspage):
    only = declare(bot, slack, title="Search is slow")
    view = open_modal(bot, slack, lambda: bot.command("update"))
    assert picker(view)["initial_option"]["value"] == str(only.id)
    response = bot.submit(
        view,
        {
            Block.INCIDENT: {Action.INCIDENT: chose_external(None)},
            Block.STATUS: {Action.STATUS: chose("Identified")},
            Block.UPDATE_TEXT: {Action.UPDATE_TEXT: typed("x")},
        },
    )
    assert response.json() == {"response_action": "errors", "errors": {Block.INCIDENT: "Pick an incident."}}


def test_suggestions_when_nothing_is_open(bot, slack, statuspage):
    view = {"callback_id": "incident_update", "blocks": []}
    assert suggestions(bot, view, "") == []


@pytest.mark.both_databases  # the paging and the type-ahead's LIKE are SQL on both
def test_list_with_many_open_incidents_shows_the_newest_page_and_how_to_see_the_rest(bot, slack, statuspage):
    add_open_incidents(bot, 230)
    answer = bot.command("list").json()
    shown = json.dumps(answer["blocks"], ensure_ascii=False)
    assert answer["text"] == "230 open incidents" and "1–20 shown" in shown
    assert "*#230*" in shown and "*#211*" in shown and "*#210*" not in shown
    assert "…and 210 more: `/incident list 2` shows the next 20" in shown

    shown = json.dumps(bot.command("list 2").json()["blocks"], ensure_ascii=False)
    assert "21–40 shown" in shown and "*#210*" in shown and "*#191*" in shown and "*#211*" not in shown
    assert bot.command("list 12").json()["text"] == "230 open incidents"  # the last page: 221–230
    assert "*#1*" in json.dumps(bot.command("list 12").json()["blocks"])
    assert bot.command("list 13").json()["text"] == "There are 230 open incidents, on pages 1–12; page 13 is past the end."
    assert "takes a page number" in bot.command("list two").json()["text"]


@pytest.fixture
def quiet_bot(settings):
    """The bot on an injected clock, so without live timers: no heartbeat, sweep or sync runs
    beside the test, and every statement recorded in a step is the step's own. (Its start
    has finished its one look at the due reminders before the bot answers.)"""
    with BotUnderTest(settings, clock=FakeClock(datetime.now(UTC))) as running:
        yield running


@pytest.mark.both_databases
def test_list_update_and_type_ahead_cost_the_same_with_20_or_600_open_incidents(quiet_bot, slack, statuspage):
    """Bounded queries (a LIMIT and a COUNT), never every open incident loaded: the same
    statements, whatever the number open."""
    bot = quiet_bot

    def statements_of(step) -> list[str]:
        with recorded_statements(bot.ctx.db.engine) as seen:
            step()
        return list(seen)

    view = {"callback_id": "incident_update", "blocks": []}
    costs = []
    for total in (20, 600):
        known = len(incidents_in_store(bot))
        add_open_incidents(bot, total - known, first=known)
        listed = statements_of(lambda: bot.command("list"))
        opened = statements_of(lambda: open_modal(bot, slack, lambda: bot.command("update")))
        typed_ahead = statements_of(lambda: suggestions(bot, view, "checkout"))
        assert len(suggestions(bot, view, "checkout")) == 100 if total > 100 else total
        for sql in listed + opened + typed_ahead:
            if "FROM incidents" in sql:
                assert "LIMIT" in sql or "count(" in sql.lower(), sql
        costs.append((listed, opened, typed_ahead))
    assert costs[0] == costs[1]
