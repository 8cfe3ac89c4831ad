"""Socket Mode as an operator runs it: `sitrep run` as a real process with SLACK_APP_TOKEN set,
talking to the fake Socket Mode server over a real websocket, and `sitrep check` reporting it."""

from __future__ import annotations

import json
import signal
import subprocess

import httpx
import pytest

from handlers.incident.ids import Action
from tests.support.fakes.slack_api import APP_TOKEN, WAIT_BOUND
from tests.support.fakes.socket_mode import ACK_DEADLINE, FakeSocketMode
from tests.support.harness import CHANNEL, free_port, opened_form
from tests.support.incidents import declare_values, resolve_values, update_values
from tests.support.process import kill, lines_starting, sitrep, start_sitrep, wait_healthy, wait_until
from tests.support.socket_mode import SocketModeDriver


@pytest.fixture
def socket(slack):
    with FakeSocketMode(slack, refresh_grace=30) as server:
        yield server
    assert server.violations == [], server.violations


@pytest.fixture
def socket_env(full_env) -> dict[str, str]:  # noqa: F811
    env = {k: v for k, v in full_env.items() if k != "SLACK_SIGNING_SECRET"}
    return env | {"SLACK_APP_TOKEN": APP_TOKEN, "METRICS_PORT": str(free_port())}


def secrets(env: dict[str, str]) -> list[str]:
    return [env[k] for k in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "STATUSPAGE_API_KEY", "APPFIRST_API_KEY")]


# --- sitrep check -------------------------------------------------------------------------------


def test_check_reports_socket_mode_ok(socket_env, slack, tmp_path):
    result = sitrep("check", env=socket_env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines_starting(result.stdout, "socket mode: ok")
    [opened] = [c for c in slack.calls if c.method == "apps.connections.open"]
    assert opened.token == APP_TOKEN


def test_check_reports_slacks_refusal_of_the_app_token(socket_env, tmp_path):
    token = "xapp-1-A0-1-revoked-secret"
    result = sitrep("check", env=socket_env | {"SLACK_APP_TOKEN": token}, cwd=tmp_path)
    assert result.returncode == 1
    (line,) = lines_starting(result.stdout, "socket mode:")
    assert line == "socket mode: FAILED (invalid_auth)"
    assert lines_starting(result.stdout, "slack: ok")
    assert token not in result.stdout + result.stderr and "Traceback" not in result.stderr


def test_check_in_http_mode_says_socket_mode_is_not_configured(full_env, slack, tmp_path):  # noqa: F811
    result = sitrep("check", env=full_env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines_starting(result.stdout, "socket mode: not configured")
    assert not [c for c in slack.calls if c.method == "apps.connections.open"]


# --- sitrep run ---------------------------------------------------------------------------------


def test_run_with_a_refused_app_token_stops_with_one_line(socket_env, socket, tmp_path):
    token = "xapp-1-A0-1-revoked-secret"
    result = sitrep("run", env=socket_env | {"SLACK_APP_TOKEN": token}, cwd=tmp_path, timeout=30)
    assert result.returncode == 1
    assert "SLACK_APP_TOKEN" in result.stderr and "invalid_auth" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert token not in result.stderr + result.stdout
    assert socket.connection_count == 0


def test_run_stops_in_one_line_when_slack_disables_socket_mode(socket_env, socket, tmp_path):
    """A `link_disabled` disconnect: reconnecting cannot work, so sitrep stops instead of
    retrying forever (slack_sdk on its own asks for a new connection at every disconnect)."""
    process = start_sitrep(socket_env, tmp_path)
    try:
        socket.wait_connected(1, timeout=20)
        socket.disconnect("link_disabled")
        output = process.communicate(timeout=30)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 1, output
    lines = [line for line in output.splitlines() if line.startswith("sitrep:")]
    assert lines == [
        "sitrep: Slack disconnected Socket Mode (link_disabled): Socket Mode is off for this app. Turn it on in the "
        "app's settings (Socket Mode), or unset SLACK_APP_TOKEN to serve HTTP"
    ], output
    assert "Traceback" not in output and socket.connection_count == 1


def test_the_fake_refuses_every_connection_once_socket_mode_is_disabled(socket, slack):
    """The fake, strict: after `link_disabled` no handshake is accepted, even with a ticket."""
    import asyncio  # noqa: PLC0415 - this test alone drives a websocket by hand

    from slack_sdk.web.async_client import AsyncWebClient  # noqa: PLC0415 - (same reason)
    from websockets.asyncio.client import connect  # noqa: PLC0415 - (same reason)
    from websockets.exceptions import InvalidStatus  # noqa: PLC0415 - (same reason)

    async def handshake() -> str:
        return (await AsyncWebClient(base_url=slack.url).apps_connections_open(app_token=APP_TOKEN))["url"]

    async def scenario() -> tuple[dict, int]:
        async with connect(await handshake()) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
            await asyncio.to_thread(socket.wait_connected, 1)  # the fake counts it just after hello
            socket.disconnect("link_disabled")  # on the fake's own loop; returns once sent
            told = json.loads(await ws.recv())
        try:
            async with connect(await handshake()):
                return told, 101
        except InvalidStatus as refused:
            return told, refused.response.status_code

    told, status = asyncio.run(scenario())
    assert told["type"] == "disconnect" and told["reason"] == "link_disabled"
    assert status == 403 and any("disabled" in why for why in socket.refused)


def stop_sitrep(process: subprocess.Popen) -> str:
    """SIGTERM, then its output once it exited on its own (a failure if it takes over 15 s)."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.communicate(timeout=15)[0]
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("sitrep did not stop within 15 s of SIGTERM:\n" + process.communicate()[0])


def test_run_in_socket_mode_through_a_refresh_and_a_drop_then_stop_on_sigterm(socket_env, slack, statuspage, socket, tmp_path):
    process = start_sitrep(socket_env, tmp_path)
    person = SocketModeDriver(socket)
    try:
        socket.wait_connected(1, timeout=20)
        assert "/incident declare [title]" in person.command("help").text

        # Declare: the modal, the status page, the announcement, the answer.
        person.command("declare DB down")
        view = opened_form(slack)
        person.submit(view, declare_values())
        [announcement] = slack.wait_for(lambda: slack.messages(CHANNEL))
        assert len(statuspage.incidents) == 1
        slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))

        # Slack refreshes the connection; the next command goes over the new one.
        socket.disconnect("refresh_requested")
        socket.wait_connected(2)
        slack.forget_calls()
        person.command("update #1")
        view = opened_form(slack)
        person.submit(view, update_values(1))
        slack.wait_for(lambda: slack.thread(CHANNEL, announcement["ts"]))
        puts = [r.json for r in statuspage.requests if r.method == "PUT"]
        assert puts == [
            {
                "IncidentId": next(iter(statuspage.incidents)),
                "Description": "Root cause found: a bad index",
                "Status": "Identified",
            }
        ]

        # The connection drops; the bot comes back and resolves from the announcement's button.
        socket.drop()
        socket.wait_connected(3)
        slack.forget_calls()
        person.click(Action.RESOLVE, "1", channel=CHANNEL, message_ts=announcement["ts"])
        view = opened_form(slack)
        person.submit(view, resolve_values(1))
        replies = slack.wait_for(
            lambda: len(slack.thread(CHANNEL, announcement["ts"])) == 2 and slack.thread(CHANNEL, announcement["ts"])
        )
        assert "Resolved" in json.dumps(replies[-1]["blocks"])
        assert [r.path for r in statuspage.requests if r.method == "POST"][-1] == "/api/admin/Incident/ResolveIncident"

        output = stop_sitrep(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    assert "Traceback" not in output, output
    for secret in secrets(socket_env):
        assert secret not in output
    slack.wait_for(lambda: socket.live_connections == 0)  # it closed its websocket on the way out
    assert {e.connection for e in socket.envelopes} == {1, 2, 3}
    assert all(e.ack_latency is not None and e.ack_latency < ACK_DEADLINE for e in socket.envelopes)


def test_sigterm_closes_the_websocket_and_fails_readyz_first_then_work_in_flight_finishes(
    socket_env, slack, statuspage, socket, tmp_path
):
    """No balancer in Socket Mode: the websocket closes at once, so Slack sends what comes next
    to the other replicas' connections, and `/readyz` fails while the declare still runs; Slack
    never sends an acknowledged submission again, so that declare still finishes."""
    probes = f"http://127.0.0.1:{socket_env['METRICS_PORT']}"
    process = start_sitrep(socket_env, tmp_path)
    person = SocketModeDriver(socket)
    try:
        socket.wait_connected(1, timeout=20)
        wait_healthy(probes, process, path="/readyz")
        person.command("declare DB down")
        view = opened_form(slack)
        release = statuspage.pause_reply("/api/admin/Incident")  # the create
        person.submit(view, declare_values())
        wait_until(lambda: [r for r in statuspage.requests if r.method == "POST"], WAIT_BOUND, "the create at the status page")

        process.send_signal(signal.SIGTERM)
        wait_until(lambda: socket.live_connections == 0, WAIT_BOUND, "the websocket to close")
        wait_until(lambda: httpx.get(f"{probes}/readyz", timeout=5).status_code == 503, WAIT_BOUND, "/readyz to fail")
        assert process.poll() is None  # the declare still waits on the status page
        release.set()
        output = process.communicate(timeout=40)[0]
    finally:
        kill(process)
    assert process.returncode == 0 and "Traceback" not in output, output
    assert len(statuspage.incidents) == 1
    [announcement] = slack.messages(CHANNEL)
    assert "DB down" in announcement["text"]
    assert slack.calls_to("chat.postEphemeral")
