"""The real bot in Socket Mode (its own thread and loop, as `Sitrep.serve_socket_mode` runs it),
driven through the fake Socket Mode server the way Slack drives it: the same slash commands,
clicks and submissions as `BotUnderTest`, sent as envelopes instead of signed HTTP posts."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

from bot.app import Sitrep
from bot.context import build_context
from bot.settings import Settings
from tests.support.fakes.signing import command_fields
from tests.support.fakes.slack_api import WAIT_BOUND
from tests.support.fakes.socket_mode import Envelope, FakeSocketMode
from tests.support.harness import (
    UPSTREAM_TIMEOUT,
    FakeClock,
    click_payload,
    event_envelope,
    message_shortcut_payload,
    settle,
    submission_payload,
)


class Ack:
    """An envelope's acknowledgement, read like the HTTP response `BotUnderTest` returns, so the
    HTTP tests' helpers and expectations apply unchanged."""

    def __init__(self, envelope: Envelope):
        self.envelope = envelope
        self.status_code = 200 if envelope.acked_at is not None else 0
        self.payload = envelope.ack_payload

    def json(self) -> Any:
        return self.payload

    @property
    def text(self) -> str:
        """What an HTTP body would hold: plain text as it is, anything else as JSON."""
        if self.payload is None:
            return ""
        if set(self.payload) == {"text"}:
            return self.payload["text"]
        return json.dumps(self.payload)

    @property
    def content(self) -> bytes:
        return self.text.encode()


class SocketModeDriver:
    """What people do in Slack, sent as envelopes on the fake Socket Mode server; each call waits
    for the bot's acknowledgement. Drives an in-thread bot or a real `sitrep run` process alike."""

    def __init__(self, socket: FakeSocketMode):
        self.socket = socket

    def command(
        self, text: str, *, command: str = "/incident", user: str = "U123", channel: str = "C123", trigger_id: str | None = None
    ) -> Ack:
        fields = command_fields(command, text, user_id=user, channel_id=channel, trigger_id=trigger_id)
        return Ack(self.socket.request("slash_commands", fields))

    def submit(self, view: dict, values: dict, *, user: str = "U123") -> Ack:
        return Ack(self.socket.request("interactive", submission_payload(view, values, user=user)))

    def click(self, action_id: str, value: str, *, user: str = "U123", channel: str = "C123", message_ts: str = "1.0") -> Ack:
        payload = click_payload(action_id, value, user=user, channel=channel, message_ts=message_ts)
        return Ack(self.socket.request("interactive", payload))

    def message_shortcut(self, callback_id: str, text: str, *, message_ts: str, user: str = "U123", channel: str = "C123") -> Ack:
        payload = message_shortcut_payload(callback_id, text, message_ts=message_ts, user=user, channel=channel)
        return Ack(self.socket.request("interactive", payload))

    def event(self, event: dict) -> Ack:
        """An Events API event: over Socket Mode its envelope is `events_api`, its payload the
        same outer envelope as over HTTP; Slack takes no payload in its ack."""
        envelope_id = self.socket.send("events_api", event_envelope(event), accepts_response_payload=False)
        return Ack(self.socket.wait_ack(envelope_id))


class SocketModeBotUnderTest(SocketModeDriver):
    """The real bot in Socket Mode on its own thread and loop; `run` reads its store."""

    def __init__(
        self,
        settings: Settings,
        socket: FakeSocketMode,
        *,
        clock: FakeClock | None = None,
        http_timeout: float = UPSTREAM_TIMEOUT,
    ):
        super().__init__(socket)
        self.settings = settings
        self.clock = clock
        self.http_timeout = http_timeout
        self.loop: asyncio.AbstractEventLoop | None = None
        self.bot: Sitrep | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    # --- life ----------------------------------------------------------------------------
    def start(self) -> SocketModeBotUnderTest:
        def run() -> None:
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            kwargs: dict[str, Any] = {"http_timeout": self.http_timeout}
            if self.clock is not None:
                kwargs["clock"], kwargs["monotonic"] = self.clock, self.clock.monotonic
            self.bot = Sitrep(build_context(self.settings, **kwargs))
            self._stop = asyncio.Event()
            try:
                self.loop.run_until_complete(self.bot.serve_socket_mode(stop=self._stop))
            except BaseException as exc:  # reported by stop()
                self.error = exc
            finally:  # as asyncio.run ends: what is still running is cancelled, then the loop closes
                pending = asyncio.all_tasks(self.loop)
                for task in pending:
                    task.cancel()
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
                self.loop.close()

        before = self.socket.connection_count
        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + WAIT_BOUND
        while True:
            try:
                self.socket.wait_connected(before + 1, timeout=0.1)
                return self
            except AssertionError:
                if not self._thread.is_alive():
                    raise RuntimeError("the bot stopped before it connected") from self.error
                if time.monotonic() > deadline:
                    raise

    def stop(self) -> None:
        if self._thread is None:
            return
        assert self.loop is not None and self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
        assert not self._thread.is_alive(), "the bot did not stop"
        self._thread = None
        if self.error is not None:
            raise self.error

    def __enter__(self) -> SocketModeBotUnderTest:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def settle(self) -> None:
        """As `BotUnderTest.settle`: every request taken has been handled to its end."""
        settle(self)

    def run(self, coro) -> Any:
        """Run a coroutine on the bot's own loop (to read its store)."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(4 * WAIT_BOUND)

    @property
    def ctx(self):
        assert self.bot is not None
        return self.bot.ctx
