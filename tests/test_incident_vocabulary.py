"""Incident statuses and impacts are the status page's words, set by the operator
(SITREP_INCIDENT_STATUSES / SITREP_INCIDENT_IMPACTS): the forms offer exactly those, the
status page gets them verbatim, and its refusal reaches the person in its own words."""

from __future__ import annotations

import pytest

from handlers.ids import DraftAction
from handlers.incident.ids import Action, Block
from tests.support.harness import CHANNEL, BotUnderTest, chose
from tests.support.incidents import (
    declare,
    declare_values,
    drafts_in_store,
    incidents_in_store,
    open_declare_modal,
    open_modal,
    update_values,
)

STATUSES = ("Investigating", "Fix deployed", "Watching")
IMPACTS = ("None", "Minor", "Major", "Critical")


def options(view: dict, block_id: str) -> list[str]:
    block = next(b for b in view["blocks"] if b.get("block_id") == block_id)
    return [o["value"] for o in block["element"]["options"]]


@pytest.fixture
def own_words_bot(settings):
    configured = settings.model_copy(update={"sitrep_incident_statuses": STATUSES, "sitrep_incident_impacts": IMPACTS})
    with BotUnderTest(configured) as bot:
        yield bot


def test_the_defaults_are_offered_and_resolved_is_not_a_status(bot, slack):
    view = open_declare_modal(bot, slack)
    assert options(view, Block.STATUS) == ["Investigating", "Identified", "Monitoring"]
    assert options(view, Block.IMPACT) == ["Degraded Performance", "Partial Outage", "Major Outage"]
    incident = declare(bot, slack)
    update = open_modal(bot, slack, lambda: bot.command(f"update {incident.id}"))
    assert options(update, Block.STATUS) == ["Investigating", "Identified", "Monitoring"]  # resolve is its own action


def test_the_forms_offer_the_configured_words_and_send_them_verbatim(own_words_bot, slack, statuspage):
    bot = own_words_bot
    view = open_declare_modal(bot, slack)
    assert options(view, Block.STATUS) == list(STATUSES)
    assert options(view, Block.IMPACT) == list(IMPACTS)
    values = declare_values()
    values[Block.IMPACT] = {Action.IMPACT: chose("Minor")}
    bot.submit(view, values)
    slack.wait_for(lambda: [c for c in slack.calls_to("chat.postMessage") if c["channel"] == CHANNEL])
    [create] = [r for r in statuspage.requests if r.method == "POST"]
    assert (create.json["Status"], create.json["Impact"]) == ("Investigating", "Minor")
    announcement = slack.messages(CHANNEL)[0]
    assert "Minor" in str(announcement["blocks"])

    incident = slack.wait_for(lambda: [i for i in incidents_in_store(bot) if i.message_ts])[0]
    update = open_modal(bot, slack, lambda: bot.command(f"update {incident.id}"))
    assert options(update, Block.STATUS) == list(STATUSES)
    bot.submit(update, update_values(incident.id, status="Fix deployed"))
    slack.wait_for(lambda: [r for r in statuspage.requests if r.method == "PUT"])
    [put] = [r for r in statuspage.requests if r.method == "PUT"]
    assert put.json["Status"] == "Fix deployed"


def test_a_word_outside_the_settings_comes_back_inside_the_modal(own_words_bot, slack, statuspage):
    view = open_declare_modal(own_words_bot, slack)
    values = declare_values()  # status Investigating (configured), impact "Major Outage" (not configured)
    response = own_words_bot.submit(view, values)
    assert response.json() == {"response_action": "errors", "errors": {Block.IMPACT: "Pick an impact."}}
    assert statuspage.requests == []


def test_a_word_the_status_page_refuses_reaches_the_person_in_its_own_words(own_words_bot, slack, statuspage):
    statuspage.accepted_statuses = ("Investigating", "Identified", "Monitoring")  # the status page's real list
    view = open_declare_modal(own_words_bot, slack)
    values = declare_values()
    values[Block.STATUS] = {Action.STATUS: chose("Watching")}
    values[Block.IMPACT] = {Action.IMPACT: chose("Critical")}
    own_words_bot.submit(view, values)
    answer = slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))
    said = str(answer[0]["blocks"])
    assert "The status page said “Status 'Watching' is not valid.”" in said, said
    assert DraftAction.EDIT in said and "DB down" in said  # edit what was typed, nothing lost
    assert statuspage.incidents == {}
    [draft] = drafts_in_store(own_words_bot)
    assert draft.state == "failed" and draft.payload["status"] == "Watching"
