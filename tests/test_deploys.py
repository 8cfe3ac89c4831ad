"""A deploy's SIGTERM loses nothing: `sitrep run` as a real process, stopped while a declare
waits on the status page, still creates, stores and announces the incident and tells the
person; what arrives after the signal is answered 503 so Slack tries elsewhere."""

from __future__ import annotations

import signal
import sqlite3

import httpx
import pytest

from handlers.incident.ids import NOTIFY_VALUE, Action, Block
from tests.support.fakes.signing import command_body, interaction_body
from tests.support.harness import (
    CHANNEL,
    checked,
    chose,
    chose_many,
    free_port,
    submission_payload,
    typed,
)
from tests.support.process import command_modal, signed_post, start_sitrep, wait_healthy, wait_until

API = "3fa85f64-5717-4562-b3fc-2c963f66afa0"


@pytest.fixture
def bot_env(full_env) -> dict[str, str]:
    return full_env | {"PORT": str(free_port())}


def declare_values() -> dict:
    return {
        Block.TITLE: {Action.TITLE: typed("DB down")},
        Block.DESCRIPTION: {Action.DESCRIPTION: typed("Timeouts on checkout")},
        Block.STATUS: {Action.STATUS: chose("Investigating")},
        Block.IMPACT: {Action.IMPACT: chose("Major Outage")},
        Block.COMPONENTS: {Action.COMPONENTS: chose_many([API])},
        Block.NOTIFY: {Action.NOTIFY: checked([NOTIFY_VALUE])},
    }


def test_sigterm_mid_declare_finishes_it_and_refuses_new_requests(bot_env, tmp_path, slack, statuspage):
    base = f"http://127.0.0.1:{bot_env['PORT']}"
    process = start_sitrep(bot_env, tmp_path)
    try:
        wait_healthy(base, process)
        view = command_modal(base, slack, "/incident", "declare DB down")

        statuspage.latency = 3.0
        answer = signed_post(base, interaction_body(submission_payload(view, declare_values())))
        assert answer.status_code == 200  # the modal closes; the status page is still thinking
        wait_until(lambda: [r for r in statuspage.requests if r.method == "POST"], 30, "the create at the status page")
        process.send_signal(signal.SIGTERM)
        wait_until(lambda: "draining" in httpx.get(f"{base}/readyz", timeout=5).text, 30, "the drain to begin")

        # Draining: a new Slack request is refused so Slack retries it elsewhere; liveness holds.
        late = signed_post(base, command_body("/incident", "help"))
        assert late.status_code == 503
        assert httpx.get(f"{base}/healthz", timeout=2).status_code == 200

        output, _ = process.communicate(timeout=40)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    assert "Traceback" not in output

    # Created upstream once, announced, the person told, and stored with its announcement.
    assert len(statuspage.incidents) == 1
    announcements = [c for c in slack.calls_to("chat.postMessage") if c["channel"] == CHANNEL]
    assert len(announcements) == 1 and "DB down" in announcements[0]["text"]
    told = slack.calls_to("chat.postEphemeral")
    assert told and told[0]["user"] == "U123"
    with sqlite3.connect(tmp_path / "sitrep.db") as db:
        rows = db.execute("SELECT upstream_id, message_ts FROM incidents").fetchall()
        drafts = db.execute("SELECT state FROM drafts").fetchall()
    assert len(rows) == 1 and rows[0][0] == next(iter(statuspage.incidents)) and rows[0][1] is not None
    assert all(state == "done" for (state,) in drafts), drafts
