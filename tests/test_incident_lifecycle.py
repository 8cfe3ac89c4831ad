"""The rest of an incident's life from Slack: update, resolve, buttons, list, help, retry."""

from __future__ import annotations

import json
from datetime import UTC

import pytest

from handlers.ids import DraftAction
from handlers.incident.ids import Action, Block
from handlers.incident.views import MAX_MESSAGE_BLOCKS
from tests.support.fakes.slack_api import WAIT_BOUND
from tests.support.harness import CHANNEL, PAST_IMPATIENT, BotUnderTest, last_view, said
from tests.support.incidents import (
    assert_update_landed,
    declare,
    declare_values,
    drafts_in_store,
    incidents_in_store,
    open_modal,
    resolve_values,
    thread_replies,
    update_values,
)


def test_update_from_the_command(bot, slack, statuspage):
    incident = declare(bot, slack)
    view = open_modal(bot, slack, lambda: bot.command(f"update #{incident.id}"))
    selected = next(b for b in view["blocks"] if b.get("block_id") == Block.INCIDENT)["element"]["initial_option"]
    assert selected["value"] == str(incident.id)
    bot.submit(view, update_values(incident.id))
    assert_update_landed(bot, slack, statuspage, incident)


def test_update_from_the_announcement_button(bot, slack, statuspage):
    incident = declare(bot, slack)
    view = open_modal(bot, slack, lambda: bot.click(Action.POST_UPDATE, str(incident.id), channel=CHANNEL))
    bot.submit(view, update_values(incident.id))
    assert_update_landed(bot, slack, statuspage, incident)


def test_update_by_upstream_id(bot, slack, statuspage):
    incident = declare(bot, slack)
    view = open_modal(bot, slack, lambda: bot.command(f"update {incident.upstream_id}"))
    assert str(incident.id) in json.dumps(view)


def test_update_text_is_required_in_the_modal(bot, slack, statuspage):
    incident = declare(bot, slack)
    view = open_modal(bot, slack, lambda: bot.command("update"))
    response = bot.submit(view, update_values(incident.id, text=" "))
    assert response.json()["errors"] == {Block.UPDATE_TEXT: "Say what changed."}


def test_resolve_broadcasts_and_removes_buttons_then_again_says_already_resolved(bot, slack, statuspage):
    incident = declare(bot, slack)
    view = open_modal(bot, slack, lambda: bot.command(f"resolve {incident.id}"))
    assert view["submit"]["text"] == "Resolve"
    bot.submit(view, resolve_values(incident.id))
    reply = slack.wait_for(lambda: thread_replies(slack, incident))[-1]
    slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))
    assert reply["reply_broadcast"] in (True, "true", "1", 1)
    assert "Resolved" in str(reply["blocks"]) and "Index rebuilt" in str(reply["blocks"])
    resolves = [r for r in statuspage.requests if r.path == "/api/admin/Incident/ResolveIncident"]
    assert resolves[-1].json == {"IncidentId": incident.upstream_id}
    parent = slack.wait_for(lambda: slack.calls_to("chat.update"))[-1]
    assert all(b["type"] != "actions" for b in parent["blocks"])
    assert "Resolved" in json.dumps(parent["blocks"])

    slack.forget_calls()
    assert "already resolved" in said(bot, slack, f"resolve {incident.id}")  # and no form opened
    assert slack.calls_to("chat.postMessage") == []


def test_resolve_when_the_status_page_says_already_resolved(bot, slack, statuspage):
    incident = declare(bot, slack)
    statuspage.incidents[incident.upstream_id]["Resolved"] = True  # resolved on the status page directly
    view = open_modal(bot, slack, lambda: bot.command(f"resolve {incident.id}"))
    bot.submit(view, resolve_values(incident.id))
    answer = slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))
    assert "“Incident already resolved.”" in json.dumps(answer[-1]["blocks"], ensure_ascii=False)
    assert slack.calls_to("chat.postMessage") == []  # nothing new in the channel
    slack.wait_for(lambda: not incidents_in_store(bot)[0].is_open)


def test_update_of_an_incident_the_status_page_lost_shows_its_message(bot, slack, statuspage):
    incident = declare(bot, slack)
    del statuspage.incidents[incident.upstream_id]
    view = open_modal(bot, slack, lambda: bot.command(f"update {incident.id}"))
    bot.submit(view, update_values(incident.id))
    answer = slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))
    assert "“Incident ID not found.”" in json.dumps(answer[-1]["blocks"], ensure_ascii=False)
    assert thread_replies(slack, incident) == []


def test_unknown_references_are_answered_plainly(bot, slack, statuspage):
    assert "no open incidents" in said(bot, slack, "update").lower()
    declare(bot, slack)
    assert "I don't know an incident `#99`" in said(bot, slack, "update #99")
    assert "I don't know an incident `nope`" in said(bot, slack, "resolve nope")


def test_list_with_zero_one_and_many(bot, slack, statuspage):
    assert "No open incidents" in bot.command("list").text
    first = declare(bot, slack, title="Checkout <slow>")
    answer = bot.command("list").json()
    assert answer["response_type"] == "ephemeral"
    text = json.dumps(answer["blocks"])
    assert f"#{first.id}" in text and "Checkout &lt;slow&gt;" in text and "Investigating" in text
    assert "Major Outage" in text and "open " in text and first.permalink in text


def test_list_of_more_incidents_than_one_message_holds(bot, slack, statuspage):
    from datetime import datetime

    from store.models import Incident

    async def many():
        now = datetime.now(UTC)
        async with bot.ctx.db.session() as session, session.begin():
            for n in range(400):
                session.add(
                    Incident(
                        upstream_id=f"id-{n}",
                        title=f"Incident with a rather long title number {n} " + "x" * 60,
                        status="Investigating",
                        impact="Partial Outage",
                        channel_id=CHANNEL,
                        message_ts=f"1.{n}",
                        permalink=f"https://example.slack.com/archives/{CHANNEL}/p{n}",
                        declared_by="U1",
                        declared_at=now,
                        updated_at=now,
                    )
                )

    bot.run(many())
    answer = bot.command("list").json()
    assert len(answer["blocks"]) <= MAX_MESSAGE_BLOCKS
    assert all(len(b["text"]["text"]) <= 3000 for b in answer["blocks"] if b["type"] == "section")
    assert "400 open incidents" in json.dumps(answer["blocks"])


def test_help_and_unknown_subcommand(bot):
    assert "/incident declare [title]" in bot.command("help").text
    unknown = bot.command("frobnicate now").text
    assert "I don't know `frobnicate`" in unknown and "/incident resolve [ref]" in unknown


def _failing_update(bot, slack, statuspage, status):
    incident = declare(bot, slack)
    view = open_modal(bot, slack, lambda: bot.command(f"update {incident.id}"))
    statuspage.fail_times(1, status=status)
    bot.submit(view, update_values(incident.id))
    answer = slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))[-1]
    assert thread_replies(slack, incident) == []
    return incident, json.dumps(answer["blocks"], ensure_ascii=False)


def test_update_500_keeps_the_update_and_retry_sends_it_after_recovery(bot, slack, statuspage):
    incident, answer = _failing_update(bot, slack, statuspage, 500)
    assert "Root cause found: a bad index" in answer and DraftAction.RETRY in answer
    draft = drafts_in_store(bot)[-1]
    assert draft.state == "failed" and draft.payload["text"] == "Root cause found: a bad index"
    slack.forget_calls()
    bot.click(DraftAction.RETRY, str(draft.id))
    assert_update_landed(bot, slack, statuspage, incident)
    slack.wait_for(lambda: drafts_in_store(bot)[-1].state == "done")


def test_update_401_says_misconfigured_and_logs(bot, slack, statuspage, caplog):
    statuspage_key = statuspage.api_key
    incident = declare(bot, slack)
    view = open_modal(bot, slack, lambda: bot.command(f"update {incident.id}"))
    statuspage.api_key = "rotated"
    bot.submit(view, update_values(incident.id))
    answer = json.dumps(slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))[-1]["blocks"])
    assert "misconfigured" in answer
    assert statuspage_key not in answer
    assert any("STATUSPAGE_API_KEY" in r.getMessage() or "401" in r.getMessage() for r in caplog.records)


def test_update_malformed_body_keeps_the_update(bot, slack, statuspage):
    incident = declare(bot, slack)
    view = open_modal(bot, slack, lambda: bot.command(f"update {incident.id}"))
    statuspage.malformed = True
    bot.submit(view, update_values(incident.id))
    answer = json.dumps(slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))[-1]["blocks"])
    assert DraftAction.RETRY in answer and "bad index" in answer


@pytest.mark.upstream_times_out
def test_update_timeout_keeps_the_update(bot, slack, statuspage):
    incident = declare(bot, slack)
    view = open_modal(bot, slack, lambda: bot.command(f"update {incident.id}"))
    statuspage.latency = PAST_IMPATIENT
    bot.submit(view, update_values(incident.id))
    answer = json.dumps(slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))[-1]["blocks"])
    assert DraftAction.RETRY in answer
    statuspage.latency = 0


def test_resolve_500_then_retry(bot, slack, statuspage):
    incident = declare(bot, slack)
    view = open_modal(bot, slack, lambda: bot.command(f"resolve {incident.id}"))
    statuspage.fail_times(1, status=503)
    bot.submit(view, resolve_values(incident.id))
    answer = json.dumps(slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))[-1]["blocks"])
    assert "Index rebuilt" in answer and DraftAction.RETRY in answer
    assert incidents_in_store(bot)[0].is_open
    slack.forget_calls()
    bot.click(DraftAction.RETRY, str(drafts_in_store(bot)[-1].id))
    slack.wait_for(lambda: thread_replies(slack, incident))
    slack.wait_for(lambda: not incidents_in_store(bot)[0].is_open)


def test_edit_reopens_the_form_with_what_was_typed(bot, slack, statuspage):
    incident, _ = _failing_update(bot, slack, statuspage, 500)
    view = open_modal(bot, slack, lambda: bot.click(DraftAction.EDIT, str(drafts_in_store(bot)[-1].id)))
    assert "Root cause found: a bad index" in json.dumps(view)


def test_a_restart_between_declare_and_update_keeps_the_thread(settings, slack, statuspage):
    with BotUnderTest(settings) as bot:
        incident = declare(bot, slack)
    with BotUnderTest(settings) as bot:
        view = open_modal(bot, slack, lambda: bot.command(f"update {incident.id}"))
        bot.submit(view, update_values(incident.id))
        reply = slack.wait_for(lambda: slack.calls_to("chat.postMessage"))[-1]
        assert reply["thread_ts"] == incident.message_ts and reply["channel"] == CHANNEL


def test_retry_clicked_twice_sends_once(settings, slack, statuspage):
    import threading

    def puts():
        return [r for r in statuspage.requests if r.method == "PUT"]

    with BotUnderTest(settings, http_timeout=WAIT_BOUND) as bot:  # patient: the held PUT is not a timeout
        incident, _ = _failing_update(bot, slack, statuspage, 500)
        draft_id = str(drafts_in_store(bot)[-1].id)
        slack.forget_calls()
        with statuspage.hold_requests():  # both clicks arrive while the first is still being sent
            clicks = [threading.Thread(target=bot.click, args=(DraftAction.RETRY, draft_id)) for _ in range(2)]
            for click in clicks:
                click.start()
            for click in clicks:
                click.join()
            slack.wait_for(lambda: len(puts()) == 2 and slack.calls_to("chat.postEphemeral"))
        slack.wait_for(lambda: thread_replies(slack, incident))
        answers = slack.wait_for(lambda: len(slack.calls_to("chat.postEphemeral")) >= 2 and slack.calls_to("chat.postEphemeral"))
        assert len(puts()) == 2  # the failed one, and exactly one retry
        assert len(thread_replies(slack, incident)) == 1
        assert any("already went through, or is being sent" in json.dumps(a["blocks"]) for a in answers)


@pytest.mark.upstream_times_out
@pytest.mark.parametrize("failure", ["401", "timeout", "malformed"])
def test_resolve_failures_keep_the_incident_open_and_the_note(bot, slack, statuspage, failure):
    incident = declare(bot, slack)
    view = open_modal(bot, slack, lambda: bot.command(f"resolve {incident.id}"))
    if failure == "401":
        statuspage.api_key = "rotated"
    elif failure == "timeout":
        statuspage.latency = PAST_IMPATIENT
    else:
        statuspage.malformed = True
    bot.submit(view, resolve_values(incident.id))
    answer = json.dumps(slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))[-1]["blocks"])
    assert "Index rebuilt" in answer
    assert ("misconfigured" in answer) if failure == "401" else ("not available right now" in answer)
    assert incidents_in_store(bot)[0].is_open
    assert thread_replies(slack, incident) == []
    statuspage.latency = 0


def test_slack_refusing_the_announcement_is_a_warning_not_a_retry(bot, slack, statuspage):
    bot.command("declare DB down")
    view = slack.wait_for(lambda: slack.calls_to("views.open") and last_view(slack))
    slack.fail_next("chat.postMessage", error="not_in_channel")
    bot.submit(view, declare_values())
    answer = json.dumps(slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))[-1]["blocks"])
    assert "is declared" in answer and "not_in_channel" in answer and DraftAction.RETRY not in answer
    assert len(statuspage.incidents) == 1  # declared once upstream, nothing to send again
    slack.wait_for(lambda: drafts_in_store(bot)[-1].state == "done")
    [incident] = incidents_in_store(bot)
    assert incident.message_ts is None

    # The next update announces it first, then replies in the new thread.
    slack.forget_calls()
    view = open_modal(bot, slack, lambda: bot.command(f"update {incident.id}"))
    bot.submit(view, update_values(incident.id))
    posts = slack.wait_for(lambda: len(slack.calls_to("chat.postMessage")) >= 2 and slack.calls_to("chat.postMessage"))
    assert "thread_ts" not in posts[0] and posts[1]["thread_ts"] == slack.messages(CHANNEL)[0]["ts"]


def test_a_draft_left_sending_by_a_dead_process_can_be_retried(bot, slack, statuspage):
    from datetime import datetime, timedelta

    from bot.services.recovery import recover_orphans
    from store.models import Draft

    incident = declare(bot, slack)

    async def stuck():
        long_ago = datetime.now(UTC) - timedelta(minutes=10)
        async with bot.ctx.db.session() as session, session.begin():
            draft = Draft(
                kind="incident.update",
                user_id="U123",
                channel_id="C123",
                state="sending",
                payload={"incident_id": incident.id, "status": "Identified", "text": "Root cause found: a bad index"},
                created_at=long_ago,
                updated_at=long_ago,
            )
            session.add(draft)
            await session.flush()
            return draft.id

    draft_id = bot.run(stuck())
    # No sender (a process from before heartbeats, or one that let it go while stopping):
    # the recovery makes it "outcome unknown" and tells the person, who sends it again.
    bot.run(recover_orphans(bot.ctx))
    told = slack.wait_for(lambda: [m for m in slack.ephemerals() if "Outcome unknown" in m["text"]])[0]
    assert DraftAction.ANYWAY in str(told["blocks"]) and "bad index" in str(told["blocks"])
    bot.click(DraftAction.RETRY, str(draft_id))
    assert_update_landed(bot, slack, statuspage, incident)
