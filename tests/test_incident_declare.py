"""`/incident declare` end to end: signed request → modal → status page → announcement."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from handlers.ids import DraftAction
from handlers.incident.ids import Block
from tests.support.fakes.signing import new_trigger_id
from tests.support.harness import CHANNEL, PAST_IMPATIENT, BotUnderTest
from tests.support.incidents import declare_values, drafts_in_store, incidents_in_store, open_declare_modal

API = "3fa85f64-5717-4562-b3fc-2c963f66afa0"


def test_declare_opens_prefilled_modal_and_announces(bot, slack, statuspage):
    view = open_declare_modal(bot, slack)
    title_block = next(b for b in view["blocks"] if b.get("block_id") == Block.TITLE)
    assert title_block["element"]["initial_value"] == "DB down"
    assert any(b.get("block_id") == Block.COMPONENTS for b in view["blocks"])

    response = bot.submit(view, declare_values())
    assert response.status_code == 200
    assert response.content in (b"", b"null") or response.json() in (None, {})

    posted = slack.wait_for(lambda: [c for c in slack.calls_to("chat.postMessage") if c["channel"] == CHANNEL])
    create = [r for r in statuspage.requests if r.method == "POST" and r.path == "/api/admin/Incident"]
    assert len(create) == 1
    assert create[0].headers["X-API-KEY"] == statuspage.api_key
    assert create[0].json == {
        "Title": "DB down",
        "Description": "Timeouts on checkout",
        "Status": "Investigating",
        "Impact": "Major Outage",
        "AffectedComponents": [API],
        "IsNotify": True,
    }
    announcement = posted[0]
    assert "DB down" in announcement["text"]
    body = str(announcement["blocks"])
    assert "Investigating" in body and "Major Outage" in body and "API" in body and "<@U123>" in body
    assert "<!date^" in body

    incidents = slack.wait_for(lambda: [i for i in incidents_in_store(bot) if i.message_ts])
    upstream_id = next(iter(statuspage.incidents))
    assert incidents[0].upstream_id == upstream_id
    assert incidents[0].message_ts == slack.messages(CHANNEL)[0]["ts"]
    # The declarer gets a link to the announcement.
    answer = slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))
    assert answer[0]["user"] == "U123" and "https://example.slack.com/archives/" in str(answer[0]["blocks"])


def test_plain_incident_command_opens_the_declare_modal(bot, slack):
    view = open_declare_modal(bot, slack, text="")
    assert view["callback_id"] == "incident_declare"


def test_empty_title_comes_back_inside_the_modal(bot, slack, statuspage):
    view = open_declare_modal(bot, slack)
    response = bot.submit(view, declare_values(title="   "))
    assert response.json() == {"response_action": "errors", "errors": {Block.TITLE: "Give the incident a title."}}
    bot.settle()
    assert statuspage.requests == []
    assert slack.messages(CHANNEL) == []


def test_upstream_400_message_is_shown_verbatim(bot, slack, statuspage):
    statuspage.fail_times(1, status=400)
    view = open_declare_modal(bot, slack)
    bot.submit(view, declare_values())
    answer = slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))
    text = str(answer[0]["blocks"])
    assert "The status page said “An unexpected error occurred.”" in text
    assert DraftAction.EDIT in text and DraftAction.RETRY not in text  # a rejection is edited, not retried
    assert slack.messages(CHANNEL) == []


def _assert_told_and_kept(bot, slack, statuspage, expected_words):
    answer = slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))
    blocks = str(answer[0]["blocks"])
    assert any(word in blocks for word in expected_words), blocks
    assert "DB down" in blocks and "Timeouts on checkout" in blocks  # what they typed, given back
    assert DraftAction.RETRY in blocks
    assert slack.messages(CHANNEL) == []
    drafts = drafts_in_store(bot)
    assert drafts[0].state == "failed" and drafts[0].payload["title"] == "DB down"
    return drafts[0]


def test_upstream_500_tells_user_and_keeps_text_and_retry_succeeds(bot, slack, statuspage):
    statuspage.fail_times(1, status=500)
    view = open_declare_modal(bot, slack)
    bot.submit(view, declare_values())
    draft = _assert_told_and_kept(bot, slack, statuspage, ["An unexpected error occurred."])

    slack.forget_calls()
    bot.click(DraftAction.RETRY, str(draft.id))
    slack.wait_for(lambda: [c for c in slack.calls_to("chat.postMessage") if c["channel"] == CHANNEL])
    assert len(statuspage.incidents) == 1
    slack.wait_for(lambda: drafts_in_store(bot)[0].state == "done")
    slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))


@pytest.mark.upstream_times_out
def test_upstream_timeout_tells_user_and_announces_nothing(bot, slack, statuspage):
    statuspage.latency = PAST_IMPATIENT  # the bot's client here gives up after 2 s
    view = open_declare_modal(bot, slack)
    bot.submit(view, declare_values())
    # Sent, no answer: the status page may have it, so this is "outcome unknown", not a
    # failure to Retry (tests/test_outcome_unknown.py follows each choice).
    answer = slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))
    blocks = str(answer[0]["blocks"])
    assert "Outcome unknown" in blocks and "DB down" in blocks and "Timeouts on checkout" in blocks
    assert DraftAction.ANYWAY in blocks and DraftAction.RETRY not in blocks
    assert slack.messages(CHANNEL) == []
    [draft] = drafts_in_store(bot)
    assert draft.state == "unknown" and draft.payload["title"] == "DB down"


def test_slow_upstream_does_not_delay_the_ack(settings, slack, statuspage):
    """The ack comes while the status page has not answered at all (it holds every request
    until the block ends): an ack that waited for it could not come before."""
    with BotUnderTest(settings, http_timeout=10.0) as bot:
        view = open_declare_modal(bot, slack)
        with statuspage.hold_requests():
            response = bot.submit(view, declare_values())
            assert response.status_code == 200
            slack.wait_for(lambda: [r for r in statuspage.requests if r.method == "POST"])  # the create, held
            assert statuspage.incidents == {}
        # The slow answer still arrives, and the incident is announced after it.
        slack.wait_for(lambda: [c for c in slack.calls_to("chat.postMessage") if c["channel"] == CHANNEL])
        slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))


def test_mentions_in_title_are_escaped(bot, slack, statuspage):
    view = open_declare_modal(bot, slack)
    bot.submit(view, declare_values(title="<!channel> hi <@U1>"))
    posted = slack.wait_for(lambda: [c for c in slack.calls_to("chat.postMessage") if c["channel"] == CHANNEL])
    everything = posted[0]["text"] + str(posted[0]["blocks"])
    assert "<!channel>" not in everything and "<@U1>" not in everything
    assert "&lt;!channel&gt; hi &lt;@U1&gt;" in everything
    assert statuspage.incidents[next(iter(statuspage.incidents))]["Title"] == "<!channel> hi <@U1>"


def test_bad_signature_is_refused(bot, slack):
    from tests.support.fakes.signing import command_body

    response = bot.post(command_body("/incident", "declare x"), secret="wrong")
    assert response.status_code == 401
    assert slack.calls_to("views.open") == []


def test_incidents_disabled_without_statuspage(settings, slack):
    settings = settings.model_copy(update={"statuspage_url": None, "statuspage_api_key": None})
    with BotUnderTest(settings) as bot:
        response = bot.command("declare x")
        assert "STATUSPAGE_URL" in response.text
        assert slack.calls_to("views.open") == []


def test_healthz(bot):
    assert bot.http.get("/healthz").json() == {"ok": True}


def test_an_expired_trigger_is_explained(bot, slack):
    # Issued 4 s ago on the fake's clock (the machine's): Slack's 3 s are over.
    response = bot.command("declare DB down", trigger_id=new_trigger_id(issued_at=slack.clock() - 4))
    assert response.status_code == 200
    answer = slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))
    assert "run the command again" in json.dumps(answer[0]["blocks"])


def test_help_and_list_answer_without_any_upstream_call(bot, slack, statuspage):
    assert bot.command("help").json()["response_type"] == "ephemeral"
    assert statuspage.requests == []


def test_a_form_another_delivery_opened_already_tells_nobody(bot, slack, caplog):
    """Slack spends a trigger once: when an earlier delivery of the same command (a retry that
    reached another replica) opened the form, views.open answers `exchanged_trigger_id`, and
    the person, who has the form, is told nothing."""
    caplog.set_level(logging.INFO, logger="handlers.errors")
    trigger = new_trigger_id()
    other_replica = httpx.post(
        f"{slack.url}views.open",
        data={"trigger_id": trigger, "view": json.dumps(declare_modal_of_another_replica())},
        headers={"Authorization": f"Bearer {slack.token}"},
    )
    assert other_replica.json()["ok"]
    assert bot.command("declare DB down", trigger_id=trigger).status_code == 200
    slack.wait_for(lambda: [r for r in caplog.records if "opened already" in r.getMessage()])
    assert len(slack.calls_to("views.open")) == 2 and len(slack.views) == 1
    assert slack.calls_to("chat.postEphemeral") == [] and slack.calls_to("chat.postMessage") == []


def declare_modal_of_another_replica() -> dict:
    return {"type": "modal", "callback_id": "incident_declare", "title": {"type": "plain_text", "text": "Declare incident"}}


def _element(view: dict, block_id: str) -> dict:
    return next(b for b in view["blocks"] if b.get("block_id") == block_id)["element"]


def test_the_declare_form_preselects_no_impact_and_notifies_nobody(bot, slack, statuspage):
    """A hasty Declare must not tell every subscriber of a major outage nobody chose."""
    view = open_declare_modal(bot, slack)
    assert "initial_option" not in _element(view, Block.IMPACT)
    assert "initial_options" not in _element(view, Block.NOTIFY)
    # Submitted as it opened (Slack sends no impact): the person is asked inside the form.
    values = declare_values()
    values[Block.IMPACT] = {next(iter(values[Block.IMPACT])): {"type": "static_select", "selected_option": None}}
    response = bot.submit(view, values)
    assert response.json() == {"response_action": "errors", "errors": {Block.IMPACT: "Pick an impact."}}
    assert statuspage.requests == []


def test_the_operator_can_choose_the_declare_forms_defaults(settings, slack, statuspage):
    settings = settings.model_copy(update={"sitrep_default_impact": "Partial Outage", "sitrep_notify_default": True})
    with BotUnderTest(settings) as bot:
        view = open_declare_modal(bot, slack)
    assert _element(view, Block.IMPACT)["initial_option"]["value"] == "Partial Outage"
    assert [o["value"] for o in _element(view, Block.NOTIFY)["initial_options"]] == ["notify"]
