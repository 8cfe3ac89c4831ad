"""Runs the real bot over HTTP (uvicorn, its own thread and loop) and speaks to it the way
Slack does: signed slash commands, block actions and view submissions."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx
import uvicorn

from bot.app import Sitrep
from bot.context import build_context
from bot.inbound.answered import current_answer
from bot.settings import Settings
from tests.support.dates import T0
from tests.support.fakes.signing import (
    command_body,
    interaction_body,
    new_trigger_id,
    slack_signature_headers,
)
from tests.support.fakes.slack_api import WAIT_BOUND
from tests.support.slack_limits import ack_problems

SIGNING_SECRET = "test-signing-secret-0123456789"
CHANNEL = "C0SITREP"
COMPONENTS = "API=3fa85f64-5717-4562-b3fc-2c963f66afa0,Website=3fa85f64-5717-4562-b3fc-2c963f66afa1"


class FakeClock:
    """An injected clock: tests move time instead of waiting for it. `advance` is time
    passing (the wall clock and the monotonic one move together); `step` moves only the wall
    clock, as NTP or a resumed VM does."""

    def __init__(self, now: datetime | None = None):
        self.now = now or T0
        self.elapsed = 0.0  # seconds on the monotonic clock
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def monotonic(self) -> float:
        with self._lock:
            return self.elapsed

    def advance(self, **delta: float) -> datetime:
        with self._lock:
            self.now += timedelta(**delta)
            self.elapsed += timedelta(**delta).total_seconds()
            return self.now

    def set(self, moment: datetime) -> None:
        """Time passes (or runs back) to `moment`, the monotonic clock with it."""
        with self._lock:
            self.elapsed += (moment - self.now).total_seconds()
            self.now = moment

    def step(self, **delta: float) -> datetime:
        """The wall clock steps; no time passes."""
        with self._lock:
            self.now += timedelta(**delta)
            return self.now


class PromptServer(uvicorn.Server):
    """uvicorn as the harness runs it: it stops when told (`request_stop`), not at its next
    0.1 s tick, and its shutdown looks at what it waits for every 5 ms instead of sleeping
    0.1 s first. The same steps as uvicorn's (0.55), ~0.17 s less per bot stopped, and a
    thousand tests stop one."""

    def __init__(self, config: uvicorn.Config):
        super().__init__(config)
        self.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._stop = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def request_stop(self) -> None:
        """From any thread."""
        self.should_exit = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)

    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.on_tick(0)  # the default headers
        if not self.should_exit:
            await self._stop.wait()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        while (self.server_state.connections or self.server_state.tasks) and not self.force_exit:
            await asyncio.sleep(0.005)
        for server in self.servers:
            await server.wait_closed()
        if not self.force_exit:
            await self.lifespan.shutdown()


# Ports for the bot processes a test starts, below Linux's ephemeral range (32768 and up), so
# no outgoing connection is handed one between the check here and the process binding it; each
# pytest-xdist worker its own block, so two workers never pick the same port.
_PORTS_FROM, _PORTS_PER_WORKER = 20000, 1500


def _worker_ports() -> Iterator[int]:
    """This worker's block, round and round. Another test run on the machine (another
    worktree) uses the same blocks: start somewhere else in ours; `free_port` skips a port
    that is taken."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    block = _PORTS_FROM + (int(worker) if worker.isdigit() else 0) % 8 * _PORTS_PER_WORKER
    start = random.randrange(_PORTS_PER_WORKER)
    return (block + (start + i) % _PORTS_PER_WORKER for i in itertools.count())


_ports = _worker_ports()


def free_port() -> int:
    """A port nothing listens on now, for a process that binds it itself."""
    for _ in range(_PORTS_PER_WORKER):
        port = next(_ports)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in this worker's block")


def listening_socket(port: int = 0) -> socket.socket:
    """A socket bound here and handed to the server: no other process can take its port
    between choosing it and listening on it."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    return s


# --- view state as Slack submits it ------------------------------------------------------


def typed(value: str) -> dict:
    return {"type": "plain_text_input", "value": value}


def chose(value: str | None) -> dict:
    return {"type": "static_select", "selected_option": {"value": value} if value else None}


def chose_external(value: str | None) -> dict:
    """An external_select's state: the option picked from what the options listener offered."""
    return {"type": "external_select", "selected_option": {"value": value} if value else None}


def picked_user(user_id: str | None) -> dict:
    """A users_select's state: the person picked."""
    return {"type": "users_select", "selected_user": user_id}


def chose_many(values: list[str]) -> dict:
    return {"type": "multi_static_select", "selected_options": [{"value": v} for v in values]}


def checked(values: list[str]) -> dict:
    return {"type": "checkboxes", "selected_options": [{"value": v} for v in values]}


def picked_time(moment: datetime | None) -> dict:
    return {"type": "datetimepicker", "selected_date_time": int(moment.timestamp()) if moment else None}


#: The bot's status page and AppFirst clients in tests: patient, so a healthy call on a loaded
#: machine never times out. A test of the timeout itself gives an answer that never comes in
#: time (a gate, or a latency past it) and the short bound below (`upstream_times_out`).
UPSTREAM_TIMEOUT = 10.0
IMPATIENT_UPSTREAM = 2.0
#: A fake's latency no impatient client waits out, however the machine stalls: the client gives
#: up at 2 s and closes the connection, and the fakes cancel a handler whose client is gone
#: (`handler_cancellation`), so the request is never carried out, then or in a later test.
PAST_IMPATIENT = IMPATIENT_UPSTREAM + WAIT_BOUND


class BotUnderTest:
    """The real bot on a loopback port. With an injected `clock` the live scheduler's
    timers are off unless `live_scheduler=True`: such tests move the clock and run the
    reminders themselves, and a timer firing on the machine's clock would race them."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: FakeClock | None = None,
        http_timeout: float = UPSTREAM_TIMEOUT,
        live_scheduler: bool | None = None,
        read_before_open: float = 2.0,
        ack_budget: float = 8.0,
        slack_timeout: float = 10.0,
    ):
        # Slack's port and METRICS_PORT, bound here and handed to the servers.
        self._sockets: list[socket.socket] | None = [listening_socket(), listening_socket()]
        ports = [s.getsockname()[1] for s in self._sockets]
        self.settings = settings.model_copy(update={"port": ports[0], "metrics_port": ports[1]})
        self.clock = clock
        self.live_scheduler = clock is None if live_scheduler is None else live_scheduler
        self.http_timeout = http_timeout
        # Longer than production's 0.25 s: a form's read on a loaded machine still answers the
        # command itself (tests of the modal-first path hold the database and pass 0.25).
        self.read_before_open = read_before_open
        # Longer than production's 2 s for the same reason: a healthy request on a loaded
        # machine is never told "the database is busy" (the sick-database tests pass 2 s).
        self.ack_budget = ack_budget
        self.slack_timeout = slack_timeout
        self.loop: asyncio.AbstractEventLoop | None = None
        self.bot: Sitrep | None = None
        self._server: PromptServer | None = None
        self._operator: PromptServer | None = None
        self._thread: threading.Thread | None = None
        # Plain HTTP on loopback: no TLS context to build (~25 ms of CPU each, per test).
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.settings.port}", timeout=15, verify=False)
        # METRICS_PORT: /metrics (not on the Slack port), /healthz and /readyz.
        self.operator_http = httpx.Client(base_url=f"http://127.0.0.1:{self.settings.metrics_port}", timeout=15, verify=False)
        self.ack_violations: list[str] = []  # Slack limits the bot's HTTP answers broke

    # --- life ----------------------------------------------------------------------------
    def start(self) -> BotUnderTest:
        ready = threading.Event()
        if self._sockets is None:  # started again after a stop: the same ports
            self._sockets = [listening_socket(self.settings.port), listening_socket(self.settings.metrics_port)]
        slack_socket, operator_socket = self._sockets

        def run() -> None:
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            kwargs: dict[str, Any] = {
                "http_timeout": self.http_timeout,
                "read_before_open": self.read_before_open,
                "ack_budget": self.ack_budget,
                "slack_timeout": self.slack_timeout,
            }
            if self.clock is not None:
                kwargs["clock"], kwargs["monotonic"] = self.clock, self.clock.monotonic
            self.bot = Sitrep(build_context(self.settings, **kwargs), timers=self.live_scheduler)
            config = uvicorn.Config(
                self.bot.asgi(), host="127.0.0.1", port=self.settings.port, log_level="warning", lifespan="on"
            )
            self._server = PromptServer(config)
            operator_config = uvicorn.Config(
                self.bot.operator_asgi(), host="127.0.0.1", port=self.settings.metrics_port, log_level="warning", lifespan="off"
            )
            self._operator = PromptServer(operator_config)
            ready.set()
            try:
                self.loop.run_until_complete(
                    asyncio.gather(self._server.serve(sockets=[slack_socket]), self._operator.serve(sockets=[operator_socket]))
                )
            finally:
                close_loop(self.loop)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(WAIT_BOUND)
        deadline = time.monotonic() + WAIT_BOUND
        while time.monotonic() < deadline:
            if self._server is not None and self._server.started and self._operator is not None and self._operator.started:
                return self
            time.sleep(0.01)
        raise RuntimeError("the bot did not start")

    def stop(self) -> None:
        for server in (self._server, self._operator):
            if server is not None:
                server.request_stop()
        if self._thread is not None:
            self._thread.join(15)
        self._server = self._operator = None
        self._thread = None
        for sock in self._sockets or []:
            sock.close()
        self._sockets = None

    def __enter__(self) -> BotUnderTest:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if exc[0] is None:
            assert self.ack_violations == [], self.ack_violations

    def scrape(self) -> str:
        """`GET /metrics` on METRICS_PORT, as Prometheus asks it."""
        answer = self.operator_http.get("/metrics")
        assert answer.status_code == 200, answer.text
        return answer.text

    def run(self, coro) -> Any:
        """Run a coroutine on the bot's own loop (to read its store, or drive its jobs)."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(4 * WAIT_BOUND)

    def settle(self) -> None:
        """Wait until the bot has finished every Slack request it took and sent what it queued
        in the channel. A test that must show something did *not* happen asserts after this:
        whatever those requests were going to do has been done by then (never a sleep)."""
        settle(self)

    @property
    def ctx(self):
        assert self.bot is not None
        return self.bot.ctx

    # --- requests, signed as Slack signs them ---------------------------------------------
    def post(self, body: str, *, secret: str = SIGNING_SECRET, timestamp: int | None = None) -> httpx.Response:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        headers.update(slack_signature_headers(secret, body, timestamp))
        response = self.http.post("/slack/events", content=body, headers=headers)
        self.check_answer(body, response)
        return response

    def check_answer(self, body: str, response: httpx.Response) -> None:
        """Hold what the bot answers over HTTP to Slack's limits, as the Web API calls are:
        Slack would refuse (and show the person an error for) a slash-command answer, a
        `response_action: update/push` view or an options list that breaks them."""
        if response.status_code != 200 or not response.content or "json" not in response.headers.get("content-type", ""):
            return
        form = parse_qs(body)
        kind = "command" if "command" in form else json.loads(form["payload"][0]).get("type", "") if "payload" in form else ""
        problems = [f"{kind} answer: {p}" for p in ack_problems(kind, response.json())]
        if problems:
            self.ack_violations.extend(problems)
            raise AssertionError("the bot answered Slack with something Slack refuses:\n" + "\n".join(problems))

    def command(
        self, text: str, *, command: str = "/incident", user: str = "U123", channel: str = "C123", trigger_id: str | None = None
    ) -> httpx.Response:
        return self.post(command_body(command, text, user_id=user, channel_id=channel, trigger_id=trigger_id))

    def submit(self, view: dict, values: dict, *, user: str = "U123") -> httpx.Response:
        return self.post(interaction_body(submission_payload(view, values, user=user)))

    def click(
        self,
        action_id: str,
        value: str,
        *,
        user: str = "U123",
        channel: str = "C123",
        message_ts: str = "1.0",
        trigger_id: str | None = None,
    ) -> httpx.Response:
        payload = click_payload(action_id, value, user=user, channel=channel, message_ts=message_ts)
        return self.post(interaction_body(payload | ({"trigger_id": trigger_id} if trigger_id else {})))

    def click_in_home(self, view: dict, action_id: str, value: str, *, user: str = "U123") -> httpx.Response:
        """A button clicked on the home tab `view` (as views.publish stored it)."""
        return self.post(interaction_body(home_click_payload(view, action_id, value, user=user)))

    def message_shortcut(
        self, callback_id: str, text: str, *, message_ts: str = "1700000000.000100", user: str = "U123", channel: str = "C123"
    ) -> httpx.Response:
        """A message shortcut chosen on a message (Slack's `message_action` payload)."""
        return self.post(
            interaction_body(message_shortcut_payload(callback_id, text, message_ts=message_ts, user=user, channel=channel))
        )

    def event(self, event: dict, *, secret: str = SIGNING_SECRET) -> httpx.Response:
        """An Events API request: the event in its envelope, JSON, signed as Slack signs it."""
        return self.post_json(event_envelope(event), secret=secret)

    def post_json(self, payload: dict, *, secret: str = SIGNING_SECRET) -> httpx.Response:
        body = json.dumps(payload, separators=(",", ":"))
        headers = {"Content-Type": "application/json"}
        headers.update(slack_signature_headers(secret, body))
        return self.http.post("/slack/events", content=body, headers=headers)

    def suggest(self, view: dict, *, block_id: str, action_id: str, value: str = "", user: str = "U123") -> httpx.Response:
        """A `block_suggestion`: Slack asking an external select's options as the person types."""
        payload = {
            "type": "block_suggestion",
            "team": {"id": "T1", "domain": "example"},
            "user": {"id": user, "username": user.lower(), "team_id": "T1"},
            "api_app_id": "ABOT",
            "token": "verification-token",
            "container": {"type": "view", "view_id": view.get("id", "V1")},
            "action_id": action_id,
            "block_id": block_id,
            "value": value,
            "view": {
                "id": view.get("id", "V1"),
                "type": "modal",
                "callback_id": view.get("callback_id", ""),
                "private_metadata": view.get("private_metadata", ""),
                "state": {"values": {}},
                "blocks": view.get("blocks", []),
            },
        }
        return self.post(interaction_body(payload))


# --- interaction payloads as Slack builds them (posted over HTTP, or sent over Socket Mode) ---------


def submission_payload(view: dict, values: dict, *, user: str = "U123") -> dict:
    return {
        "type": "view_submission",
        "team": {"id": "T1", "domain": "example"},
        "user": {"id": user, "username": user.lower(), "team_id": "T1"},
        "api_app_id": "ABOT",
        "trigger_id": new_trigger_id(),
        "view": {
            "id": view.get("id", "V1"),
            "type": "modal",
            "callback_id": view["callback_id"],
            "private_metadata": view.get("private_metadata", ""),
            "state": {"values": values},
            "hash": "h",
            "blocks": view.get("blocks", []),
        },
        "response_urls": [],
    }


def click_payload(action_id: str, value: str, *, user: str = "U123", channel: str = "C123", message_ts: str = "1.0") -> dict:
    return {
        "type": "block_actions",
        "team": {"id": "T1", "domain": "example"},
        "user": {"id": user, "username": user.lower(), "team_id": "T1"},
        "api_app_id": "ABOT",
        "trigger_id": new_trigger_id(),
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False},
        "channel": {"id": channel, "name": "general"},
        "message": {"ts": message_ts, "type": "message", "text": ""},
        "actions": [{"type": "button", "action_id": action_id, "block_id": "b", "value": value, "action_ts": "1"}],
        "response_url": "http://127.0.0.1:9/resp",
    }


def home_click_payload(view: dict, action_id: str, value: str, *, user: str = "U123") -> dict:
    """A `block_actions` payload from a home tab: its container is the view, there is no channel."""
    return {
        "type": "block_actions",
        "team": {"id": "T1", "domain": "example"},
        "user": {"id": user, "username": user.lower(), "team_id": "T1"},
        "api_app_id": "ABOT",
        "token": "verification-token",
        "trigger_id": new_trigger_id(),
        "container": {"type": "view", "view_id": view["id"]},
        "view": {
            "id": view["id"],
            "type": "home",
            "callback_id": view.get("callback_id", ""),
            "private_metadata": view.get("private_metadata", ""),
            "state": {"values": {}},
            "hash": view.get("hash", "h"),
            "blocks": view.get("blocks", []),
        },
        "actions": [{"type": "button", "action_id": action_id, "block_id": "b", "value": value, "action_ts": "1"}],
    }


def message_shortcut_payload(
    callback_id: str, text: str, *, message_ts: str, user: str = "U123", channel: str = "C123", author: str = "U999"
) -> dict:
    """Slack's `message_action` payload (Shortcuts interaction payloads: type, callback_id,
    trigger_id, response_url, user, channel, team, the whole message, message_ts)."""
    return {
        "type": "message_action",
        "token": "verification-token",
        "action_ts": f"{int(time.time())}.000001",
        "team": {"id": "T1", "domain": "example"},
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T1"},
        "channel": {"id": channel, "name": "general"},
        "is_enterprise_install": False,
        "enterprise": None,
        "callback_id": callback_id,
        "trigger_id": new_trigger_id(),
        "response_url": "http://127.0.0.1:9/resp",
        "message_ts": message_ts,
        "message": {"type": "message", "user": author, "ts": message_ts, "text": text, "team": "T1"},
    }


_event_ids = itertools.count(1)


def event_envelope(event: dict) -> dict:
    """The Events API's outer envelope (`event_callback`) around one event, as Slack posts it."""
    number = next(_event_ids)
    return {
        "token": "verification-token",
        "team_id": "T1",
        "api_app_id": "ABOT",
        "event": event,
        "type": "event_callback",
        "event_id": f"Ev{number:08d}",
        "event_time": int(time.time()),
        "authorizations": [
            {"enterprise_id": None, "team_id": "T1", "user_id": "UBOT", "is_bot": True, "is_enterprise_install": False}
        ],
        "is_ext_shared_channel": False,
    }


def home_opened(user: str = "U123", *, tab: str = "home", view: dict | None = None) -> dict:
    """Slack's `app_home_opened` event: `view` (the current home view) only once one was published."""
    event = {"type": "app_home_opened", "user": user, "channel": f"D{user}", "tab": tab, "event_ts": f"{time.time():.6f}"}
    if view is not None:
        event["view"] = view
    return event


#: What the modal says that `handlers/opening.py` opens when the store has not answered
#: within `read_before_open`; the form then replaces it by `views.update`.
ONE_MOMENT = "One moment: reading what sitrep has"


def _view(args: dict) -> dict:
    view = args["view"]
    return view if isinstance(view, dict) else json.loads(view)


def last_view(slack, method: str = "views.open") -> dict:
    """The view of the last `method` call. For `views.open`, the form the person sees: when
    that opened the "one moment" modal (the store answered after `read_before_open`, as on a
    loaded machine), the `views.update` that filled it, waited for."""
    calls = slack.calls_to(method)
    assert calls, f"no {method} call"
    view = _view(calls[-1])
    if method == "views.open" and ONE_MOMENT in json.dumps(view):
        return slack.wait_for(lambda: _filled_after_last_open(slack))
    return view


def _filled_after_last_open(slack) -> dict | None:
    calls = slack.calls
    opened = max(i for i, call in enumerate(calls) if call.method == "views.open")
    filled = [call for call in calls[opened + 1 :] if call.method == "views.update"]
    return _view(filled[0].args) if filled else None


def opened_form(slack, *, opened: int = 0, timeout: float | None = None) -> dict:
    """The form a command or button opened after `opened` views.open calls (`last_view`)."""
    slack.wait_for(lambda: slack.count("views.open") > opened, **({} if timeout is None else {"timeout": timeout}))
    return last_view(slack)


def said(bot, slack, text: str, **kwargs) -> str:
    """The text a command that reads before it opens its form (`handlers/opening.py`)
    answers with when it refuses: in its ack when the read answered within
    `read_before_open`, else in the "one moment" modal that the answer fills (as on a loaded
    machine). Either way no form was opened."""
    opened = slack.count("views.open")
    response = bot.command(text, **kwargs)
    assert response.status_code == 200, response.text
    if response.content not in (b"", b"null"):
        return "\n".join(texts(response.json()))
    view = opened_form(slack, opened=opened)
    assert "submit" not in view, view
    return "\n".join(texts(view["blocks"]))


def texts(node: Any) -> list[str]:
    """Every `text` string in a message or view (its mrkdwn and plain text, in order)."""
    if isinstance(node, list):
        return [t for item in node for t in texts(item)]
    if not isinstance(node, dict):
        return []
    found = [node["text"]] if isinstance(node.get("text"), str) else []
    return found + [t for key, value in node.items() if not (key == "text" and isinstance(value, str)) for t in texts(value)]


def at_once(*sends: Callable[[], Any]) -> None:
    """Run the sends in threads released together by a barrier (two people racing)."""
    barrier = threading.Barrier(len(sends))

    def go(send) -> None:
        barrier.wait()
        send()

    threads = [threading.Thread(target=go, args=(send,)) for send in sends]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Close a loop as `asyncio.run` does: what is still running is cancelled and let finish
    first. A task left pending would be destroyed with the loop, and an aiosqlite thread still
    answering one of its queries would answer into a closed loop ("Event loop is closed")."""
    try:
        left = asyncio.all_tasks(loop)
        for task in left:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()


def settle(bot) -> None:
    """`BotUnderTest.settle`, for any bot under test with a `run` and a running `Sitrep`."""

    async def quiet() -> int:
        left = await bot.bot.drain.wait(WAIT_BOUND)
        await bot.ctx.channel.settle()
        return left

    left = bot.run(quiet())
    assert left == 0, f"{left} Slack request(s) still being handled after {WAIT_BOUND:g} s"


PROBE_STUCK = "probe_stuck"


class Probe:
    """A `/probe` listener on the production app, wrapped as every sitrep listener is
    (`renders_errors`), that tells whether its answer was written by the time its `await
    ack()` returned (`seen`), and, for `/probe hold`, keeps its body running after the ack
    until `release()`: the answer must not wait for it. `/probe answer` acks with its answer
    (text), which sitrep's listeners only do as their last step: that ack is not waited for.
    `/probe silent` returns without an ack.
    A click on `PROBE_STUCK` waits before its ack for what never comes (a store read the
    database does not answer): the deadline stops it (`stopped`)."""

    def __init__(self, bot) -> None:
        """`bot`: a running bot under test, over HTTP or Socket Mode."""
        from handlers.errors import renders_errors  # noqa: PLC0415 - the harness imports no handler at load

        self.bot = bot
        self.seen: list[bool] = []
        self.held = False
        self.stopped = False
        self._release: asyncio.Event | None = None

        async def probe(ack, it) -> None:
            if it.text == "silent":
                return  # a listener that never acks (none of sitrep's does)
            if it.text == "answer":
                await ack(text="probed")
            else:
                await ack()
            answer = current_answer()
            self.seen.append(answer is not None and answer.is_sent)
            if it.text == "hold":
                self._release = asyncio.Event()
                self.held = True
                await self._release.wait()
                self.held = False

        async def stuck(ack, it) -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.stopped = True
                raise

        bot.bot.bolt.command("/probe")(renders_errors(bot.bot.ctx, probe))
        bot.bot.bolt.action(PROBE_STUCK)(renders_errors(bot.bot.ctx, stuck))

    def release(self) -> None:
        assert self._release is not None
        self.bot.run(_set(self._release))


async def _set(event: asyncio.Event) -> None:
    event.set()
