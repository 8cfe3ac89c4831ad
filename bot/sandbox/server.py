"""What every stand-in shares: its lock and clock, and serving it on loopback in the bot's own
event loop (`sitrep run --sandbox`). The tests' fakes serve the same stand-ins from a thread of
their own, with switches to make them misbehave (tests/support/fakes/)."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def utcnow() -> datetime:
    return datetime.now(UTC)


class StandIn:
    """One seed's API: its state, its routes (`_add_routes`) and its credential check
    (`_check_auth`). A subclass keeps its state under `_lock`: the tests' fakes read it from
    another thread."""

    name = "stand-in"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.clock: Callable[[], datetime] = utcnow
        self.url = ""

    def _add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def _check_auth(self, request: web.Request) -> web.StreamResponse | None:
        """A response refusing the request, or None to let it through."""
        return None


class LoopbackServer:
    """Serves a stand-in at `http://127.0.0.1:<free port>` on the running loop until `stop`."""

    def __init__(self, stand_in: StandIn) -> None:
        self.stand_in = stand_in
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        stand_in = self.stand_in

        @web.middleware
        async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
            refusal = stand_in._check_auth(request)
            return refusal if refusal is not None else await handler(request)

        app = web.Application(middlewares=[authenticate])
        stand_in._add_routes(app)
        # Short shutdown: stopping the bot must not wait on a client's idle keep-alive.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.25)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self._runner = runner
        stand_in.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        return stand_in.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
