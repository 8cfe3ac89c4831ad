"""A fake of Slack's Socket Mode side: a real websocket server on 127.0.0.1 (``websockets``).

The bot gets the server's URL the way it gets Slack's: ``apps.connections.open`` on the fake
Web API (``FakeSlack``) hands out ``ws://127.0.0.1:<port>/link/?ticket=…&app_id=…``, and only
a ticket that call issued opens a connection. On each connection the server sends ``hello``,
then whatever the test sends: envelopes for slash commands and interactions, shaped as Slack
documents them (``envelope_id``, ``type``, ``payload``, ``accepts_response_payload``), and
``disconnect`` messages. It records every acknowledgement with its latency, and collects in
``violations`` what Slack would hold against the app: an ack later than 3 s, an ack for an
envelope never sent or acked twice, anything else the app sends.

Like ``FakeSlack`` it serves from its own thread and loop, so sync tests can drive it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tests.support.fakes.slack_api import APP_ID, FakeSlack

__all__ = ["FakeSocketMode", "Envelope", "ACK_DEADLINE"]

Json = dict[str, Any]

#: Slack shows the person an error when an envelope is not acknowledged within 3 seconds.
ACK_DEADLINE = 3.0


@dataclass
class Envelope:
    """One envelope the server sent, and the app's acknowledgement once it came."""

    envelope_id: str
    type: str
    payload: Json
    accepts_response_payload: bool
    connection: int
    sent_at: float
    acked_at: float | None = None
    ack_payload: Json | None = None

    @property
    def ack_latency(self) -> float | None:
        return None if self.acked_at is None else self.acked_at - self.sent_at


@dataclass
class _Connection:
    number: int
    ws: ServerConnection
    retiring: bool = False  # told to go away (disconnect): gets no new envelopes
    closed: bool = False
    received: list[str] = field(default_factory=list)


class FakeSocketMode:
    """Slack's Socket Mode endpoint for one app; attach it to a ``FakeSlack``.

    Use as ``with FakeSocketMode(slack) as socket:``; it sets ``slack.socket_mode_url`` so the
    bot's ``apps.connections.open`` points here, and puts it back on exit.
    """

    def __init__(self, slack: FakeSlack, *, refresh_grace: float = 10.0):
        self.slack = slack
        # assumption: after `disconnect` Slack closes the old connection about 10 s later if the
        # app has not (its pages speak of a warning "about 10 seconds" before a refresh).
        self.refresh_grace = refresh_grace
        self._lock = threading.Condition()
        self._connections: list[_Connection] = []
        self._envelopes: dict[str, Envelope] = {}
        self._violations: list[str] = []
        self._refused: list[str] = []
        #: Socket Mode turned off for the app (`disconnect("link_disabled")`): no more connections.
        self.link_disabled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._previous_url: str | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeSocketMode:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                self._server = loop.run_until_complete(self._serve())
            except BaseException as exc:  # surfaced to start()'s caller
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                self._server.close()
                loop.run_until_complete(self._server.wait_closed())
                loop.close()

        self._thread = threading.Thread(target=run, name="FakeSocketMode", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise RuntimeError("FakeSocketMode failed to start") from failure[0]
        self._previous_url = self.slack.socket_mode_url
        self.slack.socket_mode_url = f"ws://127.0.0.1:{self._port}/link/"
        return self

    async def _serve(self) -> Server:
        server = await serve(self._session, "127.0.0.1", 0, process_request=self._check_ticket)
        self._port = server.sockets[0].getsockname()[1]
        return server

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        if self._previous_url is not None:
            self.slack.socket_mode_url = self._previous_url
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = self._loop = None

    def __enter__(self) -> FakeSocketMode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ what happened

    @property
    def violations(self) -> list[str]:
        with self._lock:
            return list(self._violations)

    @property
    def refused(self) -> list[str]:
        """Why each refused handshake was refused (no ticket, a ticket used twice, …)."""
        with self._lock:
            return list(self._refused)

    @property
    def connection_count(self) -> int:
        """Connections ever accepted (each got a hello)."""
        with self._lock:
            return len(self._connections)

    @property
    def live_connections(self) -> int:
        with self._lock:
            return sum(1 for c in self._connections if not c.closed)

    def envelope(self, envelope_id: str) -> Envelope:
        with self._lock:
            return self._envelopes[envelope_id]

    @property
    def envelopes(self) -> list[Envelope]:
        with self._lock:
            return list(self._envelopes.values())

    def wait_connected(self, count: int = 1, timeout: float = 10.0) -> None:
        """Wait until ``count`` connections were accepted in all and one is open to take envelopes."""
        with self._lock:
            ok = self._lock.wait_for(lambda: len(self._connections) >= count and self._usable() is not None, timeout)
        if not ok:
            raise AssertionError(
                f"no usable Socket Mode connection #{count} within {timeout}s "
                f"(accepted {self.connection_count}, refused {self.refused})"
            )

    # ------------------------------------------------------------------ sending

    def send(self, type_: str, payload: Json, *, accepts_response_payload: bool = True) -> str:
        """Send one envelope on the newest usable connection; returns its envelope_id."""
        envelope_id = str(uuid.uuid4())
        message = {
            "envelope_id": envelope_id,
            "type": type_,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
        }
        with self._lock:
            connection = self._usable()
            if connection is None:
                raise AssertionError("no open Socket Mode connection to send on (Slack would fail the request)")
            self._envelopes[envelope_id] = Envelope(
                envelope_id, type_, payload, accepts_response_payload, connection.number, time.monotonic()
            )
        self._call(connection.ws.send(json.dumps(message)))
        return envelope_id

    def wait_ack(self, envelope_id: str, timeout: float = 10.0) -> Envelope:
        with self._lock:
            if not self._lock.wait_for(lambda: self._envelopes[envelope_id].acked_at is not None, timeout):
                raise AssertionError(f"envelope {envelope_id} was not acknowledged within {timeout}s")
            return self._envelopes[envelope_id]

    def request(self, type_: str, payload: Json, *, timeout: float = 10.0) -> Envelope:
        """Send an envelope and wait for its acknowledgement."""
        return self.wait_ack(self.send(type_, payload), timeout)

    def disconnect(self, reason: str = "refresh_requested") -> None:
        """Tell the newest connection to go away, as Slack does before it refreshes one.

        `link_disabled`: Socket Mode was turned off for the app. assumption (not in the shared
        Slack documents): Slack then closes the connection at once and opens no new one for
        the app, so every later handshake is refused."""
        with self._lock:
            connection = self._usable()
            assert connection is not None, "no connection to disconnect"
            connection.retiring = True
            if reason == "link_disabled":
                self.link_disabled = True
        message = {"type": "disconnect", "reason": reason, "debug_info": {"host": "fake-applink"}}
        self._call(connection.ws.send(json.dumps(message)))
        assert self._loop is not None
        grace = 0.0 if reason == "link_disabled" else self.refresh_grace
        self._loop.call_soon_threadsafe(
            lambda: self._loop.call_later(grace, lambda: asyncio.ensure_future(self._close(connection)))
        )

    def drop(self, *, abrupt: bool = False) -> None:
        """End every open connection: with a close frame, or (``abrupt``) by cutting the TCP
        connection as a network failure would."""
        with self._lock:
            connections = [c for c in self._connections if not c.closed]
        for connection in connections:
            if abrupt:
                assert self._loop is not None
                self._loop.call_soon_threadsafe(connection.ws.transport.abort)
            else:
                self._call(self._close(connection))

    # ------------------------------------------------------------------ server side

    def _usable(self) -> _Connection | None:
        for connection in reversed(self._connections):
            if not connection.closed and not connection.retiring:
                return connection
        return None

    def _call(self, coro) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _close(self, connection: _Connection) -> None:
        if not connection.closed:
            await connection.ws.close(code=1001, reason="going away")

    def _check_ticket(self, ws: ServerConnection, request):
        """Only a URL from apps.connections.open opens a connection, once."""
        parts = urlsplit(request.path)
        tickets = parse_qs(parts.query).get("ticket", [])
        if self.link_disabled:
            with self._lock:
                self._refused.append(f"{request.path}: Socket Mode is disabled for the app")
            return ws.respond(HTTPStatus.FORBIDDEN, "link disabled\n")
        # assumption: Slack refuses a bad ticket at the handshake; the exact status is not documented.
        if parts.path != "/link/" or len(tickets) != 1 or not self.slack.redeem_socket_ticket(tickets[0]):
            with self._lock:
                self._refused.append(f"{request.path}: no valid ticket")
            return ws.respond(HTTPStatus.UNAUTHORIZED, "invalid ticket\n")
        return None

    async def _session(self, ws: ServerConnection) -> None:
        with self._lock:
            connection = _Connection(len(self._connections) + 1, ws)
            num_connections = 1 + sum(1 for c in self._connections if not c.closed)
        hello = {
            "type": "hello",
            "num_connections": num_connections,
            "debug_info": {"host": "fake-applink", "build_number": 1, "approximate_connection_time": 18060},
            "connection_info": {"app_id": APP_ID},
        }
        await ws.send(json.dumps(hello))
        with self._lock:
            self._connections.append(connection)  # usable only once hello is out
            self._lock.notify_all()
        try:
            async for raw in ws:
                self._receive(connection, raw)
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                connection.closed = True
                self._lock.notify_all()

    def _receive(self, connection: _Connection, raw: str | bytes) -> None:
        now = time.monotonic()
        with self._lock:
            connection.received.append(raw if isinstance(raw, str) else raw.decode("utf-8", "replace"))
            try:
                message = json.loads(raw)
            except ValueError:
                self._violations.append(f"connection {connection.number}: not JSON: {raw!r:.200}")
                return
            envelope_id = message.get("envelope_id") if isinstance(message, dict) else None
            envelope = self._envelopes.get(envelope_id) if isinstance(envelope_id, str) else None
            if envelope is None:
                self._violations.append(f"connection {connection.number}: not an ack of a sent envelope: {message!r:.200}")
                return
            if envelope.acked_at is not None:
                self._violations.append(f"envelope {envelope_id} acknowledged twice")
                return
            extra = set(message) - {"envelope_id", "payload"}
            if extra:
                self._violations.append(f"envelope {envelope_id}: unknown ack fields {sorted(extra)}")
            payload = message.get("payload")
            if payload is not None and not envelope.accepts_response_payload:
                self._violations.append(f"envelope {envelope_id}: a payload in the ack, but the envelope takes none")
            envelope.acked_at, envelope.ack_payload = now, payload
            if envelope.ack_latency > ACK_DEADLINE:
                self._violations.append(
                    f"envelope {envelope_id} ({envelope.type}) acked after {envelope.ack_latency:.2f}s > {ACK_DEADLINE}s"
                )
            self._lock.notify_all()
