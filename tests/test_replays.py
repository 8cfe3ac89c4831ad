"""A request Slack already sent does nothing the second time: a replayed signed form, the
same form signed afresh, a Slack retry of a slash command — one incident, one announcement."""

from __future__ import annotations

import asyncio
import threading

import pytest
from sqlalchemy.exc import OperationalError

from bot.services import drafts as draft_flow
from handlers.incident.ids import NOTIFY_VALUE, Action, Block
from store import drafts as draft_store
from tests.support.fakes.signing import command_body, interaction_body, slack_signature_headers
from tests.support.harness import (
    CHANNEL,
    SIGNING_SECRET,
    checked,
    chose,
    chose_many,
    last_view,
    submission_payload,
    typed,
)
from tests.support.incidents import drafts_in_store, incidents_in_store
from tests.support.outage import committing_slowly

API = "3fa85f64-5717-4562-b3fc-2c963f66afa0"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def declare_values(title: str = "DB down") -> dict:
    return {
        Block.TITLE: {Action.TITLE: typed(title)},
        Block.DESCRIPTION: {Action.DESCRIPTION: typed("Timeouts on checkout")},
        Block.STATUS: {Action.STATUS: chose("Investigating")},
        Block.IMPACT: {Action.IMPACT: chose("Major Outage")},
        Block.COMPONENTS: {Action.COMPONENTS: chose_many([API])},
        Block.NOTIFY: {Action.NOTIFY: checked([NOTIFY_VALUE])},
    }


def creates(statuspage) -> list:
    return [r for r in statuspage.requests if r.method == "POST" and r.path == "/api/admin/Incident"]


def test_a_replayed_declare_creates_one_incident(bot, slack, statuspage):
    bot.command("declare DB down")
    slack.wait_for(lambda: slack.calls_to("views.open"))
    body = interaction_body(submission_payload(last_view(slack), declare_values()))
    signed = FORM | slack_signature_headers(SIGNING_SECRET, body)

    first = bot.http.post("/slack/events", content=body, headers=signed)
    replay = bot.http.post("/slack/events", content=body, headers=signed)  # the very same bytes
    # A freshly signed copy of the same submission: a new timestamp (a second on; Slack's
    # check allows five minutes either way), so a new signature.
    later = int(signed["X-Slack-Request-Timestamp"]) + 1
    resigned = bot.http.post("/slack/events", content=body, headers=FORM | slack_signature_headers(SIGNING_SECRET, body, later))
    assert [r.status_code for r in (first, replay, resigned)] == [200, 200, 200]
    assert replay.content in (b"", b"null") and resigned.content in (b"", b"null")

    slack.wait_for(lambda: [c for c in slack.calls_to("chat.postMessage") if c["channel"] == CHANNEL])
    slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))
    bot.settle()  # anything a replay started has reached the fakes by now
    assert len(creates(statuspage)) == 1 and len(statuspage.incidents) == 1
    assert len([c for c in slack.calls_to("chat.postMessage") if c["channel"] == CHANNEL]) == 1


def test_a_slack_retry_of_a_command_does_nothing_again(bot, slack):
    body = command_body("/incident", "declare DB down")
    assert (
        bot.http.post("/slack/events", content=body, headers=FORM | slack_signature_headers(SIGNING_SECRET, body)).status_code
        == 200
    )
    slack.wait_for(lambda: slack.calls_to("views.open"))
    retry = (
        FORM | slack_signature_headers(SIGNING_SECRET, body) | {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    )
    assert bot.http.post("/slack/events", content=body, headers=retry).status_code == 200
    bot.settle()
    assert len(slack.calls_to("views.open")) == 1


def test_a_form_shown_again_with_errors_can_be_sent_again(bot, slack, statuspage):
    bot.command("declare")
    slack.wait_for(lambda: slack.calls_to("views.open"))
    view = last_view(slack)
    for _ in range(2):  # the same empty title twice: the same errors twice, never a silent close
        answer = bot.submit(view, declare_values(title=""))
        assert answer.status_code == 200 and answer.json()["response_action"] == "errors"
    assert bot.submit(view, declare_values()).status_code == 200
    slack.wait_for(lambda: statuspage.incidents)
    assert len(creates(statuspage)) == 1


@pytest.mark.both_databases
def test_a_draft_kept_after_its_ack_was_sent_is_the_one_declared_once(bot, slack, statuspage, monkeypatch):
    """The draft is kept before the ack only while the database answers at once. When its
    insert takes longer, the ack goes first and the same insert is waited for after it: it is
    never given up on. A keep given up on (cancelled) can still commit, because the cancel may
    reach the database after it took the COMMIT; its replay key then stopped the Submit as a
    replay of itself, and the person heard nothing (seen under load on PostgreSQL). Here the
    keep's commit waits on a gate the test opens after the ack, and ignores a cancel, as a
    COMMIT the database already has does."""
    real_keep = draft_store.keep_draft
    gate = threading.Event()
    cancels: list[str] = []

    monkeypatch.setattr(draft_store, "keep_draft", committing_slowly(real_keep, gate, cancels))
    declare_with_the_keep_held(bot, slack, gate)
    assert cancels == [], "the keep was given up on: whether it committed is not known"
    assert_declared_once(bot, statuspage)
    assert len([c for c in slack.calls_to("chat.postMessage") if c["channel"] == CHANNEL]) == 1
    assert "declared" in str(slack.calls_to("chat.postEphemeral")[-1]).lower()


@pytest.mark.both_databases
def test_a_slow_keep_the_database_then_refuses_is_kept_again_after_the_ack(bot, slack, statuspage, monkeypatch):
    """The keep the ack did not wait for fails (rolled back, so nothing was kept): the
    submission is kept again after the ack and declared once, never lost."""
    real_keep = draft_store.keep_draft
    gate = threading.Event()
    calls: list[int] = []

    async def first_keep_slow_then_refused(session, **fields):
        calls.append(1)
        if len(calls) == 1:
            await asyncio.to_thread(gate.wait, 60)
            raise OperationalError("INSERT INTO drafts", {}, Exception("server closed the connection unexpectedly"))
        return await real_keep(session, **fields)

    monkeypatch.setattr(draft_store, "keep_draft", first_keep_slow_then_refused)
    declare_with_the_keep_held(bot, slack, gate)
    assert len(calls) == 2
    assert_declared_once(bot, statuspage)
    assert "declared" in str(slack.calls_to("chat.postEphemeral")[-1]).lower()


@pytest.mark.both_databases
def test_a_keep_that_outlasts_the_persons_wait_is_never_cancelled_and_lands_as_failed(bot, slack, statuspage, monkeypatch):
    """Past `KEEP_BOUND_SECONDS` after the ack the person is given what they typed back. The
    keep is still not cancelled (a cancel can come after the database took the COMMIT):
    when it lands after all, its draft is marked failed and never sent. Before, it was
    cancelled, went on to commit, and stayed "sending" by this live process (which nobody
    recovers) until a restart."""
    real_keep = draft_store.keep_draft
    gate = threading.Event()
    cancels: list[str] = []

    keep_bound = draft_flow.KEEP_BOUND_SECONDS
    monkeypatch.setattr(draft_store, "keep_draft", committing_slowly(real_keep, gate, cancels))
    monkeypatch.setattr(draft_flow, "KEEP_BOUND_SECONDS", 0.2)  # the person's wait, short here
    bot.command("declare DB down")
    view = slack.wait_for(lambda: slack.calls_to("views.open") and last_view(slack))
    try:
        answer = bot.submit(view, declare_values(title="Checkout down"))
        assert answer.status_code == 200 and "errors" not in answer.text, answer.text
        told = slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))
    finally:
        monkeypatch.setattr(draft_flow, "KEEP_BOUND_SECONDS", keep_bound)  # the late write's own bound: the real one
        gate.set()
    assert "could not keep your incident" in str(told[-1]) and "Checkout down" in str(told[-1]), told[-1]
    slack.wait_for(lambda: [(d.state, d.sent_by) for d in drafts_in_store(bot)] == [("failed", None)])
    assert cancels == [], "the keep was given up on: whether it committed is not known"
    assert creates(statuspage) == [] and incidents_in_store(bot) == []
    assert drafts_in_store(bot)[0].error == "kept too late: never sent"


def declare_with_the_keep_held(bot, slack, gate: threading.Event) -> None:
    """Submit a declare while its draft's keep waits on `gate`; the ack must come first (the
    gate opens after it), then wait until the person is answered and the bot is idle."""
    bot.command("declare DB down")
    view = slack.wait_for(lambda: slack.calls_to("views.open") and last_view(slack))
    try:
        answer = bot.submit(view, declare_values())
        assert answer.status_code == 200 and "errors" not in answer.text, answer.text  # acked with the keep still open
    finally:
        gate.set()
    slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))
    bot.settle()


def assert_declared_once(bot, statuspage) -> None:
    drafts = drafts_in_store(bot)
    assert len(drafts) == 1 and drafts[0].state != "sending", [(d.id, d.state) for d in drafts]
    assert len(creates(statuspage)) == 1 and len(incidents_in_store(bot)) == 1
