"""A deploy's SIGTERM loses nothing: `sitrep run` as a real process goes out of rotation
(`/readyz` 503) but still answers Slack during `SITREP_DRAIN_DELAY` (a load balancer keeps
sending for a while, and Slack never sends a command again); then its listener closes, and a
declare still waiting on the status page is created, stored and announced, and its person
told."""

from __future__ import annotations

import signal
import sqlite3
import time

import httpx
import pytest

from handlers.incident.ids import NOTIFY_VALUE, Action, Block
from tests.support.fakes.signing import command_body, interaction_body
from tests.support.fakes.slack_api import WAIT_BOUND
from tests.support.harness import (
    CHANNEL,
    checked,
    chose,
    chose_many,
    free_port,
    submission_payload,
    typed,
)
from tests.support.process import command_modal, kill, signed_post, start_sitrep, stop, wait_healthy, wait_until

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


def refused(base: str) -> bool:
    """Whether the port no longer takes connections (the listener is closed)."""
    try:
        httpx.get(f"{base}/healthz", timeout=2)
    except httpx.ConnectError:
        return True
    except httpx.TransportError:
        return False
    return False


def test_a_command_during_the_drain_delay_is_answered_and_work_in_flight_finishes(bot_env, tmp_path, slack, statuspage):
    # A delay far longer than the test: the second SIGTERM ends it, so no step races a timer.
    env = bot_env | {"SITREP_DRAIN_DELAY": "300"}
    base = f"http://127.0.0.1:{env['PORT']}"
    process = start_sitrep(env, tmp_path)
    try:
        wait_healthy(base, process, path="/readyz")
        view = command_modal(base, slack, "/incident", "declare DB down")
        release = statuspage.pause_reply("/api/admin/Incident")  # the create
        answer = signed_post(base, interaction_body(submission_payload(view, declare_values())))
        assert answer.status_code == 200  # the modal closes; the status page is still thinking
        wait_until(lambda: [r for r in statuspage.requests if r.method == "POST"], WAIT_BOUND, "the create at the status page")

        process.send_signal(signal.SIGTERM)
        wait_until(lambda: httpx.get(f"{base}/readyz", timeout=5).status_code == 503, WAIT_BOUND, "/readyz to fail")
        # Out of rotation, yet a request the balancer still sends is answered as ever.
        sent = time.monotonic()
        during = signed_post(base, command_body("/incident", "help"))
        took = time.monotonic() - sent
        assert during.status_code == 200, during.text
        assert "/incident declare" in during.json()["text"]
        assert httpx.get(f"{base}/healthz", timeout=2).status_code == 200

        process.send_signal(signal.SIGTERM)  # a second signal ends the delay: the listener closes
        wait_until(lambda: refused(base), WAIT_BOUND, "the listener to close")
        assert process.poll() is None  # the declare still waits on the status page, and so does the process
        release.set()
        output, _ = process.communicate(timeout=40)
    finally:
        kill(process)
    assert process.returncode == 0, output
    assert "Traceback" not in output
    assert output.index("stopping: /readyz answers 503") < output.index("closing the listener; finishing 1 ")
    print(  # `-s`: the figure for the record, not a bound
        f"\nduring the drain delay: /readyz 503, /incident help answered {during.status_code} in {took:.2f} s; "
        f"the declare held at the status page finished after the listener closed; exit {process.returncode}"
    )

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


def test_the_listener_closes_by_itself_when_the_drain_delay_is_over(bot_env, tmp_path, slack):
    env = bot_env | {"SITREP_DRAIN_DELAY": "1"}
    process = start_sitrep(env, tmp_path)
    try:
        wait_healthy(f"http://127.0.0.1:{env['PORT']}", process, path="/readyz")
        output = stop(process)  # one SIGTERM only: the delay runs out on its own
    finally:
        kill(process)
    assert process.returncode == 0 and "Traceback" not in output, output
    assert output.index("still served for 1 s") < output.index("closing the listener")
