"""kill -9 while the status page holds a declare's reply: `sitrep run` as a real process is
killed after the status page made the incident and before the bot heard of it. Restarted,
the bot finds the draft its dead predecessor left "sending", tells the person "outcome
unknown" with the choices, and the person links the incident that exists: stored once,
announced once, nothing created twice, no draft stuck."""

from __future__ import annotations

import sqlite3

import pytest

from handlers.ids import DraftAction, DraftBlock, DraftInput
from tests.support.fakes.signing import interaction_body
from tests.support.fakes.slack_api import WAIT_BOUND
from tests.support.harness import CHANNEL, click_payload, free_port, last_view, submission_payload, typed
from tests.support.incidents import declare_values
from tests.support.process import command_modal, kill, signed_post, start_sitrep, stop, wait_healthy, wait_until

HEARTBEAT = 1  # seconds: an instance silent for 3 is gone


@pytest.fixture
def bot_env(full_env) -> dict[str, str]:
    return full_env | {"PORT": str(free_port()), "SITREP_HEARTBEAT": str(HEARTBEAT)}


def drafts(tmp_path) -> list[tuple[str, str | None]]:
    with sqlite3.connect(tmp_path / "sitrep.db") as db:
        return db.execute("SELECT state, sent_by FROM drafts").fetchall()


def test_kill_9_while_the_status_page_holds_a_declare_then_restart_tells_and_links(bot_env, tmp_path, slack, statuspage):
    base = f"http://127.0.0.1:{bot_env['PORT']}"
    first = start_sitrep(bot_env, tmp_path)
    try:
        wait_healthy(base, first)
        view = command_modal(base, slack, "/incident", "declare DB down")
        statuspage.hold_replies(1, seconds=60)  # made upstream; the answer never comes in time
        assert signed_post(base, interaction_body(submission_payload(view, declare_values()))).status_code == 200
        wait_until(lambda: statuspage.incidents, WAIT_BOUND, "the status page to make the incident")
        kill(first)  # SIGKILL: no drain, no goodbye
    finally:
        kill(first)
    [(state, sender)] = drafts(tmp_path)
    assert state == "sending" and sender  # what the dead process left
    assert slack.ephemerals() == []  # nobody was told anything yet
    [made] = statuspage.incidents

    second = start_sitrep(bot_env, tmp_path)
    try:
        wait_healthy(base, second)
        # Within a few heartbeats the dead sender counts as gone: the person is told.
        notice = wait_until(
            lambda: [m for m in slack.ephemerals() if "Outcome unknown" in m["text"]], WAIT_BOUND, "the outcome-unknown notice"
        )[0]
        assert notice["user"] == "U123" and notice["channel"] == "C123"
        blocks = str(notice["blocks"])
        assert "DB down" in blocks and DraftAction.LINK in blocks and DraftAction.ANYWAY in blocks
        # The person is told first, then the draft is settled (a crash in between tells twice,
        # never not at all): not stuck "sending".
        wait_until(lambda: drafts(tmp_path) == [("unknown", None)], WAIT_BOUND, "the draft to be unknown")

        # The person links the incident they see on the status page.
        draft_id = next(e["value"] for b in notice["blocks"] if b["type"] == "actions" for e in b["elements"])
        slack.forget_calls()
        assert signed_post(base, interaction_body(click_payload(DraftAction.LINK, draft_id))).status_code == 200
        link_view = wait_until(lambda: slack.calls_to("views.open") and last_view(slack), WAIT_BOUND, "the link modal")
        values = {DraftBlock.UPSTREAM_ID: {DraftInput.UPSTREAM_ID: typed(made)}}
        assert signed_post(base, interaction_body(submission_payload(link_view, values))).status_code == 200
        announced = wait_until(
            lambda: [c for c in slack.calls_to("chat.postMessage") if c["channel"] == CHANNEL], WAIT_BOUND, "the announcement"
        )
        assert len(announced) == 1 and "DB down" in announced[0]["text"]
        wait_until(lambda: drafts(tmp_path) == [("done", None)], WAIT_BOUND, "the draft to be done")
    finally:
        output = stop(second)
    assert second.returncode == 0, output
    assert "Traceback" not in output
    assert len(statuspage.incidents) == 1  # nothing created twice
    with sqlite3.connect(tmp_path / "sitrep.db") as db:
        rows = db.execute("SELECT upstream_id, message_ts FROM incidents").fetchall()
        instances = db.execute("SELECT count(*) FROM instances").fetchone()[0]
    assert len(rows) == 1 and rows[0][0] == made and rows[0][1] is not None
    assert instances == 1  # the dead one's row is left to age out; the clean stop removed its own
