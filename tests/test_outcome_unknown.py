"""A create that reached the upstream but whose answer never came is "outcome unknown":
the person is told exactly that and chooses — Check and retry (AppFirst looks first, shift-
aware), Create anyway, It exists: link it (the status page) — through the real bot, the
fake Slack and the fake upstreams, each path ending with exactly one of each thing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.errors import SubmissionUnknown
from handlers.draft_views import link_modal, unknown_answer
from handlers.ids import DraftAction, DraftBlock, DraftCallback, DraftInput
from store.states import DraftKind
from tests.support.dates import T0, WINTER_START
from tests.support.harness import CHANNEL, BotUnderTest, last_view, typed
from tests.support.incidents import (
    answers_with,
    declare_values,
    drafts_in_store,
    incidents_in_store,
    open_declare_modal,
    unknown_declare,
    update_values,
)
from tests.support.maintenance import open_modal, schedule_values, windows
from tests.support.slack_limits import check_message, view_problems


def top_level(slack) -> list[dict]:
    return [m for m in slack.messages(CHANNEL) if not m.get("thread_ts")]


def buttons(answer: dict) -> list[str]:
    return [e["action_id"] for b in answer["blocks"] if b["type"] == "actions" for e in b["elements"]]


# --- the views --------------------------------------------------------------------------------


@pytest.mark.parametrize("can_check", [True, False])
def test_the_unknown_answer_and_the_link_modal_fit_slack(can_check):
    err = SubmissionUnknown(
        draft_id=7,
        kind=DraftKind.DECLARE,
        service="the status page",
        summary="<@U1> & <!channel>\n" + "x" * 5000,
        can_check=can_check,
        can_link=not can_check,
        reason="no reply within 10 seconds",
    )
    text, blocks = unknown_answer(err)
    check_message(blocks, text)
    assert "<!channel>" not in str(blocks) and "&lt;!channel&gt;" in str(blocks)
    actions = [e["action_id"] for e in blocks[-1]["elements"]]
    assert (DraftAction.CHECK in actions) is can_check and (DraftAction.LINK in actions) is not can_check
    assert DraftAction.RETRY not in actions and DraftAction.ANYWAY in actions
    view = link_modal(7, kind=DraftKind.DECLARE, service="the status page", summary="a\nb", channel_id="C1")
    assert view_problems(view) == []


# --- the status page: cannot be asked, so link it or create anyway ------------------------------


def test_a_declare_whose_reply_is_lost_is_outcome_unknown_not_failed(bot, slack, statuspage):
    answer, draft_id = unknown_declare(bot, slack, statuspage)
    assert buttons(answer) == [DraftAction.LINK, DraftAction.ANYWAY, DraftAction.EDIT]
    assert "may or may not" in str(answer["blocks"]) and "DB down" in str(answer["blocks"])
    assert len(statuspage.incidents) == 1  # it exists upstream...
    assert incidents_in_store(bot) == [] and top_level(slack) == []  # ...and nothing was guessed
    [draft] = drafts_in_store(bot)
    assert draft.state == "unknown" and draft.sent_by is None
    # The plain Retry of a failure cannot send it blindly.
    bot.click(DraftAction.RETRY, str(draft_id))
    slack.wait_for(lambda: answers_with(slack, "already went through"))
    assert len(statuspage.incidents) == 1


def answered_without_its_id_then_retried(bot, slack, statuspage, view, values, stored) -> None:
    """Submit `view` while the status page answers `Success: true` with no `Result`: the person
    is told the outcome is unknown, nothing is stored (`stored()` stays empty), and a plain
    Retry sends nothing: the status page holds the one it made."""
    statuspage.answer_without_result(1)
    before = {d.id for d in drafts_in_store(bot)}
    bot.submit(view, values)
    answer = slack.wait_for(lambda: answers_with(slack, "Outcome unknown"), timeout=10)[0]
    assert buttons(answer) == [DraftAction.LINK, DraftAction.ANYWAY, DraftAction.EDIT]
    assert "did not return its ID" in str(answer["blocks"])
    assert len(statuspage.incidents) == 1 and stored() == []
    [draft] = [d for d in drafts_in_store(bot) if d.id not in before]  # this submission's, one
    assert draft.state == "unknown"
    bot.click(DraftAction.RETRY, str(draft.id))
    slack.wait_for(lambda: answers_with(slack, "already went through"))
    assert len(statuspage.incidents) == 1  # Retry did not make a second one


def test_a_declare_answered_success_without_its_id_is_outcome_unknown_and_retry_sends_nothing(bot, slack, statuspage):
    view = open_declare_modal(bot, slack)
    answered_without_its_id_then_retried(bot, slack, statuspage, view, declare_values(), lambda: incidents_in_store(bot))


def test_create_anyway_creates_it_once_however_often_clicked(bot, slack, statuspage):
    _answer, draft_id = unknown_declare(bot, slack, statuspage)
    bot.click(DraftAction.ANYWAY, str(draft_id))
    slack.wait_for(lambda: answers_with(slack, "is declared"))
    bot.click(DraftAction.ANYWAY, str(draft_id))
    slack.wait_for(lambda: answers_with(slack, "already went through"))
    assert len(statuspage.incidents) == 2  # the person said the first does not exist
    [incident] = incidents_in_store(bot)
    assert len(top_level(slack)) == 1 and incident.message_ts
    assert drafts_in_store(bot)[0].state == "done"


def test_it_exists_link_it_adopts_the_incident_announces_it_and_threads_after(bot, slack, statuspage):
    _answer, draft_id = unknown_declare(bot, slack, statuspage)
    [made] = statuspage.incidents
    slack.forget_calls()
    bot.click(DraftAction.LINK, str(draft_id))
    view = slack.wait_for(lambda: slack.calls_to("views.open") and last_view(slack))
    assert view["callback_id"] == DraftCallback.LINK
    response = bot.submit(view, {DraftBlock.UPSTREAM_ID: {DraftInput.UPSTREAM_ID: typed(f"  {made} ")}})
    assert response.status_code == 200 and not response.content  # the modal closes
    answer = slack.wait_for(lambda: answers_with(slack, "is declared"))[0]
    assert "nothing was created twice" in str(answer["blocks"])
    [incident] = incidents_in_store(bot)
    assert incident.upstream_id == made and incident.title == "DB down" and incident.declared_by == "U123"
    [announcement] = top_level(slack)
    assert "DB down" in announcement["text"] and incident.message_ts == announcement["ts"]
    assert len(statuspage.incidents) == 1 and drafts_in_store(bot)[0].state == "done"
    # From now on it is an incident like any other: an update goes to it, in its thread.
    slack.forget_calls()
    bot.command(f"update {incident.id}")
    update_view = slack.wait_for(lambda: slack.calls_to("views.open") and last_view(slack))
    bot.submit(update_view, update_values(incident.id))
    reply = slack.wait_for(lambda: [m for m in slack.thread(CHANNEL, incident.message_ts) if m.get("thread_ts")])[-1]
    assert "bad index" in str(reply["blocks"]) and reply["thread_ts"] == incident.message_ts
    assert statuspage.incidents[made]["Updates"][0]["IncidentId"] == made


@pytest.mark.parametrize(
    ("pasted", "problem"),
    [("not-an-id", "is not a status-page ID"), ("", "Paste the ID"), ("known", "already knows that ID as incident #1")],
)
def test_a_bad_link_is_a_modal_error_and_keeps_the_draft(bot, slack, statuspage, pasted, problem):
    if pasted == "known":
        statuspage_ok = open_declare_modal(bot, slack)
        bot.submit(statuspage_ok, declare_values(title="Earlier"))
        slack.wait_for(lambda: [i for i in incidents_in_store(bot) if i.message_ts])
        pasted = incidents_in_store(bot)[0].upstream_id
        slack.forget_calls()
    _answer, draft_id = unknown_declare(bot, slack, statuspage)
    slack.forget_calls()  # the declare modal's views.open: the next one is the link modal
    bot.click(DraftAction.LINK, str(draft_id))
    view = slack.wait_for(lambda: slack.calls_to("views.open") and last_view(slack))
    assert view["callback_id"] == DraftCallback.LINK
    response = bot.submit(view, {DraftBlock.UPSTREAM_ID: {DraftInput.UPSTREAM_ID: typed(pasted)}})
    body = response.json()
    assert body["response_action"] == "errors" and problem in body["errors"][DraftBlock.UPSTREAM_ID.value]
    assert [d.state for d in drafts_in_store(bot) if d.id == draft_id] == ["unknown"]
    before = len(incidents_in_store(bot))
    # Still all three choices: create anyway works afterwards.
    bot.click(DraftAction.ANYWAY, str(draft_id))
    slack.wait_for(lambda: len(incidents_in_store(bot)) == before + 1)


# --- AppFirst: look first (shift-aware), create only what is not there --------------------------


@pytest.fixture
def af_bot(appfirst_settings, upstream_clock):
    upstream_clock.set(T0)
    with BotUnderTest(appfirst_settings, clock=upstream_clock) as bot:
        yield bot


def unknown_schedule(bot, slack, appfirst) -> tuple[dict, int]:
    appfirst.drop_replies(1)  # AppFirst stores it (5 h late, its shift) and cuts the connection
    view = open_modal(bot, slack, text="schedule Kernel updates")
    bot.submit(view, schedule_values("Kernel updates", description=None, servers="1, 2"))
    answer = slack.wait_for(lambda: answers_with(slack, "Outcome unknown"))[0]
    [draft] = drafts_in_store(bot)
    return answer, draft.id


def posts(appfirst) -> list:
    return [r for r in appfirst.requests if r.method == "POST"]


def test_check_and_retry_finds_the_window_under_the_servers_shift_and_adopts_it(af_bot, slack, appfirst):
    answer, draft_id = unknown_schedule(af_bot, slack, appfirst)
    assert buttons(answer) == [DraftAction.CHECK, DraftAction.ANYWAY, DraftAction.EDIT]
    [kept] = appfirst.windows.values()
    assert kept["start"] == WINTER_START + timedelta(hours=5)
    af_bot.click(DraftAction.CHECK, str(draft_id))
    done = slack.wait_for(lambda: answers_with(slack, "Scheduled") or answers_with(slack, "scheduled"))[0]
    assert "after all" in str(done["blocks"])
    assert len(posts(appfirst)) == 1 and len(appfirst.windows) == 1
    [window] = windows(af_bot)
    assert window.created_by == "U123" and window.upstream_id == str(kept["id"])
    assert len(top_level(slack)) == 1 and drafts_in_store(af_bot)[0].state == "done"


def test_check_and_retry_creates_it_once_when_it_is_not_there(af_bot, slack, appfirst):
    _answer, draft_id = unknown_schedule(af_bot, slack, appfirst)
    appfirst.windows.clear()  # it never landed after all (or someone removed it)
    af_bot.click(DraftAction.CHECK, str(draft_id))
    slack.wait_for(lambda: [w for w in windows(af_bot) if w.message_ts])
    af_bot.click(DraftAction.CHECK, str(draft_id))
    slack.wait_for(lambda: answers_with(slack, "already went through"))
    assert len(posts(appfirst)) == 2 and len(appfirst.windows) == 1 and len(windows(af_bot)) == 1
    assert len(top_level(slack)) == 1


def test_create_anyway_on_appfirst_does_not_look(af_bot, slack, appfirst):
    _answer, draft_id = unknown_schedule(af_bot, slack, appfirst)
    af_bot.click(DraftAction.ANYWAY, str(draft_id))
    slack.wait_for(lambda: [w for w in windows(af_bot) if w.message_ts])
    assert len(posts(appfirst)) == 2 and len(appfirst.windows) == 2  # as the person chose
    assert not [r for r in appfirst.requests if r.method == "GET"][1:]  # no look before it


# --- maintenance on the status page: it lists only windows in progress, so link it ---------------


def test_a_status_page_window_whose_reply_is_lost_is_linked_with_its_reminders(bot, slack, statuspage):
    from tests.support.reminders import reminders

    statuspage.drop_replies(1)
    view = open_modal(bot, slack)
    bot.submit(view, schedule_values())
    answer = slack.wait_for(lambda: answers_with(slack, "Outcome unknown"))[0]
    assert buttons(answer) == [DraftAction.LINK, DraftAction.ANYWAY, DraftAction.EDIT]
    [made] = statuspage.incidents
    assert windows(bot) == []
    draft_id = max(d.id for d in drafts_in_store(bot))
    slack.forget_calls()
    bot.click(DraftAction.LINK, str(draft_id))
    link = slack.wait_for(lambda: slack.calls_to("views.open") and last_view(slack))
    bot.submit(link, {DraftBlock.UPSTREAM_ID: {DraftInput.UPSTREAM_ID: typed(made)}})
    [window] = slack.wait_for(lambda: [w for w in windows(bot) if w.message_ts])
    assert window.upstream_id == made and window.title == "DB upgrade" and window.created_by == "U123"
    assert window.start == WINTER_START
    assert set(reminders(bot, window.id)) >= {"started", "ended"}  # reminders follow it like any window
    assert len(top_level(slack)) == 1 and len(statuspage.incidents) == 1
    done = slack.wait_for(lambda: [m for m in slack.ephemerals() if "nothing was created twice" in str(m["blocks"])])
    assert done and drafts_in_store(bot)[-1].state == "done"


def test_a_status_page_window_answered_success_without_its_id_is_outcome_unknown_and_retry_sends_nothing(bot, slack, statuspage):
    view = open_modal(bot, slack)
    answered_without_its_id_then_retried(bot, slack, statuspage, view, schedule_values(), lambda: windows(bot))
