"""Socket Mode end to end: the real bot (Bolt's AsyncSocketModeHandler on slack_sdk's aiohttp
client) connects to a fake Socket Mode server it found through `apps.connections.open`, gets
slash commands, clicks and submissions as envelopes, acknowledges each within 3 s, and keeps
working when Slack refreshes or drops the connection."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time

import httpx
import pytest
from pydantic import SecretStr
from slack_sdk.web.async_client import AsyncWebClient
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from handlers.incident.ids import Action, Block
from handlers.incident.ids import Callback as IncidentCallback
from tests.support.fakes import socket_mode
from tests.support.fakes.slack_api import APP_TOKEN, WAIT_BOUND
from tests.support.fakes.socket_mode import ACK_DEADLINE, FakeSocketMode
from tests.support.harness import (
    CHANNEL,
    ONE_MOMENT,
    BotUnderTest,
    FakeClock,
    Probe,
    free_port,
    home_opened,
    last_view,
    said,
)
from tests.support.incidents import (
    assert_update_landed,
    declare,
    declare_values,
    incidents_in_store,
    open_modal,
    resolve_values,
    update_values,
)
from tests.support.socket_mode import SocketModeBotUnderTest


@pytest.fixture
def socket(slack):
    with FakeSocketMode(slack, refresh_grace=30) as server:
        yield server
    assert server.violations == [], server.violations


@pytest.fixture
def socket_settings(settings):
    """The same bot as the HTTP tests' but in Socket Mode: app token set, no signing secret."""
    return settings.model_copy(
        update={"slack_app_token": SecretStr(APP_TOKEN), "slack_signing_secret": None, "metrics_port": free_port()}
    )


@pytest.fixture
def sbot(socket_settings, socket, caplog):
    with SocketModeBotUnderTest(socket_settings, socket) as running:
        yield running
    unexpected = [r.getMessage() for r in caplog.records if r.name == "handlers.errors" and r.levelname == "ERROR"]
    assert unexpected == [], unexpected


def connections_opened(slack) -> list:
    return [call for call in slack.calls if call.method == "apps.connections.open"]


def assert_all_acked_in_time(socket: FakeSocketMode) -> None:
    latencies = {e.envelope_id: e.ack_latency for e in socket.envelopes}
    assert latencies and all(lat is not None and lat < ACK_DEADLINE for lat in latencies.values()), latencies


# --- connecting ---------------------------------------------------------------------------------


def test_connects_with_the_app_token_and_stops_cleanly(sbot, slack, socket):
    [opened] = connections_opened(slack)
    assert opened.token == APP_TOKEN  # in the Authorization header: the fake refuses it in the body
    assert socket.refused == [] and socket.connection_count == 1
    bot = sbot.bot
    sbot.stop()
    assert not bot.started and not bot.scheduler.scheduler.running
    slack.wait_for(lambda: socket.live_connections == 0)


def test_a_listeners_ack_returns_once_the_ack_went_back_over_the_websocket(sbot, slack, socket):
    probe = Probe(sbot)
    sbot.command("now", command="/probe")
    assert slack.wait_for(lambda: probe.seen) == [True]


def test_the_ack_goes_back_over_the_websocket_while_the_listener_goes_on(sbot, slack, socket):
    probe = Probe(sbot)
    assert sbot.command("hold", command="/probe").status_code == 200  # acked, the body still held
    assert slack.wait_for(lambda: probe.held and sbot.bot.drain.in_flight == 1)
    probe.release()
    assert slack.wait_for(lambda: not probe.held and sbot.bot.drain.in_flight == 0)


def test_a_help_command_is_answered_in_the_ack(sbot, socket):
    ack = sbot.command("help")
    assert ack.json()["response_type"] == "ephemeral"
    assert "/incident declare [title]" in ack.text
    assert_all_acked_in_time(socket)


# --- the same story as over HTTP ---------------------------------------------------------------


def test_declare_update_resolve_over_socket_mode(sbot, slack, statuspage, socket):
    """The HTTP tests' helpers and expectations, unchanged, with envelopes instead of posts."""
    incident = declare(sbot, slack)
    assert incident.upstream_id in statuspage.incidents

    view = open_modal(sbot, slack, lambda: sbot.command(f"update #{incident.id}"))
    sbot.submit(view, update_values(incident.id))
    assert_update_landed(sbot, slack, statuspage, incident)

    slack.forget_calls()
    view = open_modal(sbot, slack, lambda: sbot.click(Action.RESOLVE, str(incident.id), channel=CHANNEL))
    sbot.submit(view, resolve_values(incident.id))
    slack.wait_for(lambda: not incidents_in_store(sbot)[0].is_open)
    resolves = [r for r in statuspage.requests if r.path == "/api/admin/Incident/ResolveIncident"]
    assert [r.json for r in resolves] == [{"IncidentId": incident.upstream_id}]

    def replies():  # the postmortem draft, a file in the thread too, is not a reply
        return [m for m in slack.thread(CHANNEL, incident.message_ts) if not m.get("files")]

    reply = slack.wait_for(lambda: len(replies()) == 2 and replies())
    assert "Resolved" in str(reply[-1]["blocks"]) and "Index rebuilt" in str(reply[-1]["blocks"])

    assert "already resolved" in said(sbot, slack, f"resolve {incident.id}")
    assert_all_acked_in_time(socket)
    assert socket.connection_count == 1


def test_home_tab_and_message_shortcut_over_socket_mode(sbot, slack, socket):
    sbot.event(home_opened("U123"))
    [publish] = slack.wait_for(lambda: slack.calls_to("views.publish"))
    assert publish["user_id"] == "U123" and publish["view"]["type"] == "home"
    ts = slack.person_posts("C0ONCALL", "checkout &amp; login are down")
    sbot.message_shortcut(
        IncidentCallback.DECLARE_FROM_MESSAGE, "checkout &amp; login are down", message_ts=ts, channel="C0ONCALL"
    )
    view = slack.wait_for(lambda: slack.calls_to("views.open")) and last_view(slack)
    assert json.loads(view["private_metadata"])["source"] == ["C0ONCALL", ts]
    assert_all_acked_in_time(socket)


def test_form_errors_come_back_in_the_ack(sbot, slack, statuspage):
    sbot.command("declare DB down")
    view = slack.wait_for(lambda: slack.calls_to("views.open") and last_view(slack))
    ack = sbot.submit(view, declare_values(title="   "))
    assert ack.json() == {"response_action": "errors", "errors": {Block.TITLE: "Give the incident a title."}}
    sbot.settle()
    assert statuspage.requests == [] and slack.messages(CHANNEL) == []


def _lifecycle_transcript(bot, slack, statuspage) -> str:
    """Declare → update → resolve; every call Slack and the status page got, in order, with the
    ids that differ between runs (upstream ids, trigger ids) taken out."""

    def step(send, answers: int) -> None:
        send()
        slack.wait_for(lambda: len(slack.calls_to("chat.postEphemeral")) == answers)  # the person was told

    def modal(send, opened: int) -> dict:
        send()
        slack.wait_for(lambda: len(slack.calls_to("views.open")) == opened)
        return last_view(slack)

    view = modal(lambda: bot.command("declare DB down"), 1)
    step(lambda: bot.submit(view, declare_values()), 1)
    [incident] = incidents_in_store(bot)
    view = modal(lambda: bot.command(f"update {incident.id}"), 2)
    step(lambda: bot.submit(view, update_values(incident.id)), 2)
    view = modal(lambda: bot.command(f"resolve {incident.id}"), 3)
    step(lambda: bot.submit(view, resolve_values(incident.id)), 3)
    slack.wait_for(lambda: not incidents_in_store(bot)[0].is_open)

    calls = _as_opened([(c.method, {k: v for k, v in c.args.items() if k != "trigger_id"}) for c in slack.calls])
    upstream = [(r.method, r.path, r.json) for r in statuspage.requests]
    text = json.dumps({"slack": calls, "upstream": upstream, "channel": slack.messages(CHANNEL)}, sort_keys=True)
    for n, upstream_id in enumerate(statuspage.incidents):
        text = text.replace(upstream_id, f"<incident-{n}>")
    return text


def _as_opened(calls: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """A form opened as the "one moment" modal and then filled (its read outlived
    `read_before_open`, as on a loaded machine) written as the `views.open` of the form: the
    transcript does not depend on the machine's pace."""
    written: list[tuple[str, dict]] = []
    filling = False
    for method, args in calls:
        if method == "views.open" and ONE_MOMENT in json.dumps(args.get("view")):
            filling = True
        elif method == "views.update" and filling:
            filling = False
            written.append(("views.open", {"view": args["view"]}))
        else:
            written.append((method, args))
    return written


def test_same_upstream_calls_and_posts_as_over_http(settings, socket_settings, slack, statuspage, tmp_path):
    clock = FakeClock()
    statuspage.clock = clock
    with BotUnderTest(settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'http.db'}"}), clock=clock) as bot:
        over_http = _lifecycle_transcript(bot, slack, statuspage)
    slack.reset()
    statuspage.reset()
    statuspage.clock = clock
    with FakeSocketMode(slack) as socket:
        settings = socket_settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'socket.db'}"})
        with SocketModeBotUnderTest(settings, socket, clock=clock) as sbot:
            slack.forget_calls()  # apps.connections.open: Socket Mode's own
            over_socket = _lifecycle_transcript(sbot, slack, statuspage)
        assert socket.violations == []
    for expected in ("chat.postMessage", "chat.update", "ResolveIncident", "Index rebuilt", "bad index"):
        assert expected in over_http
    assert over_socket == over_http


# --- when Slack refreshes or drops the connection ----------------------------------------------


def test_refresh_requested_reconnects_and_the_next_command_works(sbot, slack, statuspage, socket):
    incident = declare(sbot, slack)
    socket.disconnect("refresh_requested")
    socket.wait_connected(2)
    assert len(connections_opened(slack)) == 1  # a new URL for the new connection (declare forgot the first)
    slack.wait_for(lambda: socket.live_connections == 1)  # the bot closed the old one itself

    view = open_modal(sbot, slack, lambda: sbot.command(f"update {incident.id}"))
    sbot.submit(view, update_values(incident.id))
    assert_update_landed(sbot, slack, statuspage, incident)
    assert {e.connection for e in socket.envelopes} == {1, 2}
    assert_all_acked_in_time(socket)


@pytest.mark.parametrize("abrupt", [False, True], ids=["close-frame", "connection-cut"])
def test_a_dropped_connection_loses_nothing_acknowledged_and_reconnects(
    socket_settings, slack, statuspage, socket, caplog, abrupt
):
    # The declaration waits at the status page (held, not a latency) until the line has dropped,
    # and the bot's client is patient: no real-time race between the two under a loaded machine.
    with SocketModeBotUnderTest(socket_settings, socket, http_timeout=WAIT_BOUND) as sbot:
        sbot.command("declare DB down")
        view = slack.wait_for(lambda: slack.calls_to("views.open") and last_view(slack))
        with statuspage.hold_requests():  # the declaration is on its way to the status page when the line drops
            ack = sbot.submit(view, declare_values())
            assert ack.status_code == 200 and ack.envelope.ack_latency < ACK_DEADLINE
            slack.wait_for(lambda: any(r.method == "POST" and r.path.endswith("/Incident") for r in statuspage.requests))
            socket.drop(abrupt=abrupt)
            assert statuspage.incidents == {}  # acknowledged, not yet done

        announced = slack.wait_for(lambda: [i for i in incidents_in_store(sbot) if i.message_ts])
        assert len(statuspage.incidents) == 1 and len(slack.messages(CHANNEL)) == 1
        slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))  # and the declarer was told

        socket.wait_connected(2, timeout=30)  # a cut is noticed at the next ping (slack_sdk: every 10 s)
        assert len(connections_opened(slack)) == 2  # a new URL for the new connection
        view = open_modal(sbot, slack, lambda: sbot.command(f"update {announced[0].id}"))
        sbot.submit(view, update_values(announced[0].id))
        assert_update_landed(sbot, slack, statuspage, announced[0])
        assert_all_acked_in_time(socket)
    assert [r.getMessage() for r in caplog.records if r.name == "handlers.errors" and r.levelname == "ERROR"] == []


def test_only_a_url_from_apps_connections_open_connects(socket, slack):
    """The fake is as strict as Slack: no ticket, a made-up one or a used one is refused."""

    async def attempt(url: str) -> str:
        try:
            async with connect(url) as ws:
                return json.loads(await ws.recv())["type"]
        except InvalidStatus as exc:
            return str(exc.response.status_code)

    async def scenario():
        client = AsyncWebClient(base_url=slack.url)
        url = (await client.apps_connections_open(app_token=APP_TOKEN))["url"]
        assert re.fullmatch(r"ws://127\.0\.0\.1:\d+/link/\?ticket=\w+&app_id=ABOT", url)
        base = url.split("?")[0]
        return [await attempt(url), await attempt(url), await attempt(base), await attempt(base + "?ticket=made-up")]

    assert asyncio.run(scenario()) == ["hello", "401", "401", "401"]
    assert len(socket.refused) == 3


def test_apps_connections_open_takes_only_the_app_token_in_the_header(slack):
    def call(**kwargs) -> dict:
        return httpx.post(f"{slack.url}apps.connections.open", **kwargs).json()

    assert call(headers={"Authorization": f"Bearer {APP_TOKEN}"})["ok"] is True
    assert call(headers={"Authorization": f"Bearer {slack.token}"})["error"] == "not_allowed_token_type"
    assert call(headers={"Authorization": "Bearer xapp-1-wrong"})["error"] == "invalid_auth"
    assert call(data={"token": APP_TOKEN})["error"] == "not_authed"
    assert "apps.connections.open: the app-level token must be sent in the Authorization header" in slack.violations
    slack.reset()  # the violation was the point
    chat = httpx.post(
        f"{slack.url}chat.postMessage", headers={"Authorization": f"Bearer {APP_TOKEN}"}, data={"channel": CHANNEL, "text": "x"}
    )
    assert chat.json()["error"] == "not_allowed_token_type"


def test_slack_failing_apps_connections_open_once_is_retried(socket_settings, slack, socket):
    """Slack having a bad moment is not a refused token: the client asks again and connects."""
    slack.fail_next("apps.connections.open", error="internal_error", status=500)
    with SocketModeBotUnderTest(socket_settings, socket) as sbot:
        assert len(connections_opened(slack)) == 2
        assert "/incident declare [title]" in sbot.command("help").text


def test_the_fake_holds_acknowledgements_to_slacks_rules(slack, monkeypatch):
    """Late, repeated, unknown or unasked-for acknowledgements are what Slack holds against an app."""
    # A deadline the on-time ack meets on a loaded machine too; the late one is sent after it
    # has passed (a lower bound), and the app stays connected until the fake has read it all.
    monkeypatch.setattr(socket_mode, "ACK_DEADLINE", 2.0)
    with FakeSocketMode(slack) as server:

        async def app():
            url = (await AsyncWebClient(base_url=slack.url).apps_connections_open(app_token=APP_TOKEN))["url"]
            async with connect(url) as ws:
                assert json.loads(await ws.recv())["type"] == "hello"
                first, second = [json.loads(await ws.recv()) for _ in range(2)]
                await ws.send(json.dumps({"envelope_id": first["envelope_id"]}))
                await ws.send(json.dumps({"envelope_id": first["envelope_id"]}))  # twice
                await asyncio.sleep(2.1)
                await ws.send(json.dumps({"envelope_id": second["envelope_id"], "payload": {"text": "hi"}}))  # late, and unasked
                await ws.send(json.dumps({"envelope_id": "never-sent"}))
                deadline = time.monotonic() + WAIT_BOUND
                while len(server.violations) < 4 and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)

        thread = threading.Thread(target=lambda: asyncio.run(app()))
        thread.start()
        server.wait_connected(1)
        server.send("slash_commands", {"command": "/incident", "text": "help"})
        server.send("interactive", {"type": "block_actions"}, accepts_response_payload=False)
        thread.join(WAIT_BOUND)
        problems = server.violations
    assert len(problems) == 4, problems
    assert "acknowledged twice" in problems[0]
    assert "a payload in the ack" in problems[1] and "acked after" in problems[2]
    assert "not an ack of a sent envelope" in problems[3]


def test_probes_and_metrics_answer_on_metrics_port(sbot, socket_settings):
    """Socket Mode has no HTTP server for Slack: the operator's three paths are on METRICS_PORT."""
    assert "/incident declare [title]" in sbot.command("help").text
    base = f"http://127.0.0.1:{socket_settings.metrics_port}"
    deadline = time.monotonic() + WAIT_BOUND
    while True:
        try:
            ready = httpx.get(f"{base}/readyz", timeout=5)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "METRICS_PORT did not answer within 10 s"
            time.sleep(0.1)
    assert ready.status_code == 200, ready.text
    assert httpx.get(f"{base}/healthz", timeout=5).json() == {"ok": True}
    metrics = httpx.get(f"{base}/metrics", timeout=5).text
    assert 'sitrep_ack_seconds_count{kind="command",name="/incident"} 1.0' in metrics
