"""App wiring: the Bolt app, the ASGI app that serves it, and the process's start and stop."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime, timedelta

from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import handlers
from bot.context import ACK_DEADLINE, AppContext
from bot.errors import Replayed
from bot.inbound.answered import acked, after_answer
from bot.inbound.drain import Drain, draining_server
from bot.inbound.edge import SlackEdge
from bot.inbound.guard import AcceptFailures, ConnectionGuard, SlowClientLog, accept_backlog
from bot.inbound.replays import ReplayGuard
from bot.messages.sandbox import answer_in_sandbox
from bot.ops import logs
from bot.ops.metrics import CONTENT_TYPE_LATEST, Metrics
from handlers.payload import INTERACTION, Interaction
from scheduler.runner import ReminderScheduler

log = logging.getLogger(__name__)

#: How long /readyz trusts a good answer about SITREP_CHANNEL before asking Slack again.
CHANNEL_RECHECK = timedelta(seconds=60)
#: How long it keeps a bad one: an `/invite` shows within this, and probes every few seconds
#: from each replica do not each spend a Tier 3 request while the channel is lost.
CHANNEL_RECHECK_BAD = timedelta(seconds=10)


def build_bolt_app(ctx: AppContext, identity: SlackIdentity | None = None) -> AsyncApp:
    settings = ctx.settings
    # Bolt gets a token-less twin of our client: the token comes from `authorize`, so
    # Bolt neither warns about two sources nor keeps a second copy of the secret.
    bolt_client = AsyncWebClient(
        base_url=ctx.slack.base_url, timeout=ctx.slack.timeout, retry_handlers=ctx.slack.retry_handlers, session=ctx.slack.session
    )
    ctx.metrics.instrument_slack(bolt_client)
    bolt_logger = logging.getLogger("sitrep.bolt")
    if not any(isinstance(f, _NoTokenFromEnvironmentWarning) for f in bolt_logger.filters):
        bolt_logger.addFilter(_NoTokenFromEnvironmentWarning())
    app = AsyncApp(
        client=bolt_client,
        signing_secret=settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None,
        request_verification_enabled=not settings.socket_mode,
        # Bolt answers when the listener function returns; sitrep's one listener wrapper
        # returns at the ack, the rest of the work going on in a task of its own (answered.py).
        process_before_response=True,
        authorize=(identity or SlackIdentity(ctx)).bolt_authorize(),
        logger=bolt_logger,
    )
    # Before any listener: the payload parsed once, the log context, the ack's deadline and
    # timer, and the replay guard (a replayed or retried request is acked, not acted on again).
    app.use(FirstMiddleware(ctx, ReplayGuard(ctx, repeatable=handlers.repeatable)))
    handlers.register(app, ctx)
    return app


class FirstMiddleware(AsyncMiddleware):
    """Every Slack request's first step: its `Interaction`, parsed once and put on Bolt's
    context (`INTERACTION`) for every later reader; the log context (who, which command or
    action); the ack's deadline and the timer from here to the ack; then the replay guard.
    One middleware of Bolt's own kind, not `app.use(function)`: Bolt inspects a function's
    arguments on every request, and that is most of what a middleware costs."""

    def __init__(self, ctx: AppContext, guard: ReplayGuard) -> None:
        self.metrics = ctx.metrics
        self.sandbox = ctx.settings.sitrep_sandbox
        self.ack_budget = ctx.ack_budget
        self.guard = guard

    async def async_process(self, *, req: AsyncBoltRequest, resp: BoltResponse, next):  # noqa: A002 - Bolt's name
        it = Interaction.from_body(req.body)
        req.context[INTERACTION] = it
        kind, name = it.what
        logs.clear()
        logs.bind(user=it.user_id, **{kind: name})
        req.context[ACK_DEADLINE] = asyncio.get_running_loop().time() + self.ack_budget
        req.context["ack"] = TimedAck(self.metrics, kind, name, sandbox=self.sandbox)
        return await self.guard.check(req, it, next)


class TimedAck(AsyncAck):
    """Bolt's ack, observing the time from the request reaching Bolt to its first ack, waking
    the request's task to send the answer (`acked`), and, for a bare ack, returning only once
    that answer is written (`after_answer`), so the listener's work after it never holds the
    answer up. In the sandbox a private answer in the ack (help, a list, an error) says
    sandbox too. `before`, when the replay guard sets it (`FormKey.before_ack`), runs first
    with the ack's arguments: a form's key not written with a draft is written then, and a
    replay is acked plainly and stopped (`Replayed` raised to the listener)."""

    def __init__(self, metrics: Metrics, kind: str, name: str, *, sandbox: bool = False) -> None:
        super().__init__()
        self._observe = (metrics, kind, name, time.perf_counter())
        self._sandbox = sandbox
        self.before: Callable[[dict], Awaitable[None]] | None = None

    async def __call__(self, *args, **kwargs):
        if self.before is not None:
            before, self.before = self.before, None
            try:
                await before(kwargs)
            except Replayed:
                await self._answer()
                raise
        if self._sandbox and not args and (kwargs.get("text") or kwargs.get("blocks")):
            kwargs["text"], kwargs["blocks"] = answer_in_sandbox(kwargs.get("text") or "", kwargs.get("blocks"))
        answer = await self._answer(*args, **kwargs)
        if self._observe is not None:
            metrics, kind, name, started = self._observe
            self._observe = None
            metrics.observe_ack(kind, name, time.perf_counter() - started)
        if not args and not kwargs:
            # Work follows a bare ack: it must not delay the answer. An ack that carries the
            # answer (text, errors, options) is a listener's last step: not waited for.
            await after_answer()
        return answer

    async def _answer(self, *args, **kwargs):
        """Bolt's ack (it sets the response), then the request's task is woken to send it."""
        response = await super().__call__(*args, **kwargs)
        acked()
        return response


class _NoTokenFromEnvironmentWarning(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN from the environment by itself when no `token` is passed,
    then warns that the client we gave wins and the token is unused. That is our design
    (the token comes from `authorize`), so the warning only misleads the operator."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()


class SlackIdentity:
    """One workspace, one bot token: ask `auth.test` once (as documented, no extra
    arguments) and reuse the answer for every request; readiness asks the same cache."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        self.known: AuthorizeResult | None = None

    def bolt_authorize(self):
        """Bolt reads the names of an authorize function's parameters: give it only `**kwargs`."""

        async def authorize(**_kwargs) -> AuthorizeResult:
            return await self.authorize()

        return authorize

    async def authorize(self) -> AuthorizeResult:
        if self.known is None:
            answer = await self.ctx.slack.auth_test()
            self.known = AuthorizeResult(
                enterprise_id=answer.get("enterprise_id"),
                team_id=answer.get("team_id"),
                bot_token=self.ctx.settings.slack_bot_token.get_secret_value(),
                bot_id=answer.get("bot_id"),
                bot_user_id=answer.get("user_id"),
            )
        return self.known


class Sitrep:
    """One running bot: the context, the Bolt app and the reminder scheduler.

    `timers=False` keeps the scheduler from firing anything on its own (tests that move an
    injected clock run the reminders themselves); a real bot always runs with timers."""

    def __init__(self, ctx: AppContext, *, timers: bool = True):
        self.ctx = ctx
        self.identity = SlackIdentity(ctx)
        self.bolt = build_bolt_app(ctx, self.identity)
        self.drain = Drain()
        # One count of slow clients for the whole process: its log is a line a second at most.
        self.slow_clients = SlowClientLog()
        self.scheduler = ReminderScheduler(ctx, timers=timers)
        self.started = False
        #: The last answer about SITREP_CHANNEL and when it came (`_channel_state`).
        self._channel_known: tuple[str, datetime] | None = None

    async def start(self) -> None:
        await self.ctx.db.upgrade()  # a no-op when `sitrep run` already did it
        # Bolt copies its client's session into the client it gives each request.
        await self.ctx.slack_connections.open([self.ctx.slack, self.ctx.sender, self.bolt.client])
        await self.scheduler.start()
        self.started = True
        log.info("sitrep started (instance %s)", self.ctx.instance_id)

    async def finish_work(self) -> None:
        """Take no new work and let what is under way finish (bounded by
        `SITREP_SHUTDOWN_GRACE`, counted from the listener's close): listeners Slack already
        has its answer from, and reminders being delivered. Safe to call twice."""
        grace = self.drain.grace_left(self.ctx.settings.sitrep_shutdown_grace)
        self.drain.close()
        await asyncio.gather(self.drain.wait(grace), self.scheduler.stop(timeout=grace))

    async def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        await self.finish_work()
        await self.scheduler.stop_heartbeat()
        await self.ctx.aclose()
        log.info("sitrep stopped")

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        """Database writable, scheduler running, Slack auth known good (and not draining): each
        "ok" or why not."""
        checks: dict[str, str] = {}
        try:
            await self.ctx.db.check_writable()
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            checks["database"] = f"not writable ({type(exc).__name__})"
        checks["scheduler"] = "ok" if self.started and self.scheduler.scheduler.running else "not running"
        try:
            async with asyncio.timeout(5):
                await self.identity.authorize()
            checks["slack"] = "ok"
        except Exception as exc:  # noqa: BLE001
            error = getattr(getattr(exc, "response", None), "get", lambda _k: None)("error")
            checks["slack"] = f"auth.test failed ({error or type(exc).__name__})"
        if self.drain.draining:  # SIGTERM: out of rotation, so the balancer stops sending
            checks["shutdown"] = "draining"
        ready = all(v == "ok" for v in checks.values())
        # Reported, not gating: a replica taken out of rotation could not even tell people
        # why their announcement failed, and every replica would be out alike.
        checks["channel"] = await self._channel_state()
        return ready, checks

    async def _channel_state(self) -> str:
        """ "ok", or why the bot cannot post in SITREP_CHANNEL (removed from it, say). A good
        answer is kept for `CHANNEL_RECHECK`, a bad one for `CHANNEL_RECHECK_BAD`, and the read
        (conversations.history, Tier 3) goes through the outbox's workspace pace: probes every
        few seconds must not spend what the announcements need."""
        from bot.slack.preflight import check_channel  # noqa: PLC0415 - loaded when used (start-up cost)

        now = self.ctx.clock()
        if self._channel_known is not None:
            state, at = self._channel_known
            if now - at < (CHANNEL_RECHECK if state == "ok" else CHANNEL_RECHECK_BAD):
                return state
        channel = self.ctx.settings.sitrep_channel
        try:
            async with asyncio.timeout(5):
                answer = await self.ctx.outbox.call("conversations.history", lambda: check_channel(self.ctx.slack, channel, ()))
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            return f"not checked ({type(exc).__name__})"
        state = "ok" if answer.ok else str(answer.problem)
        self._channel_known = (state, now)
        return state

    def operator_routes(self) -> list[Route]:
        """/healthz (the process answers), /readyz (it can do its work), /metrics."""

        async def healthz(_request: Request):
            return JSONResponse({"ok": True})

        async def readyz(_request: Request):
            ready, checks = await self.readiness()
            return JSONResponse({"ok": ready, "checks": checks}, status_code=200 if ready else 503)

        async def metrics(_request: Request):
            backend = self.ctx.maintenance.name if self.ctx.maintenance is not None else None
            text = await self.ctx.metrics.render(self.ctx.db, now=self.ctx.clock(), backend=backend)
            return Response(text, media_type=CONTENT_TYPE_LATEST)

        return [
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ]

    @property
    def metrics_on_slack_port(self) -> bool:
        """Only when the operator set METRICS_PORT to PORT: /metrics is for Prometheus, and
        the Slack port is the one published to the internet."""
        return self.ctx.settings.metrics_port == self.ctx.settings.port

    def operator_asgi(self) -> Starlette:
        """What METRICS_PORT serves: /healthz, /readyz and /metrics."""
        return Starlette(routes=self.operator_routes())

    def asgi(self) -> Starlette:
        async def events(_request: Request):
            # The route gives other methods their 405. A POST is the edge's: it dispatches every
            # one it verified and refuses the rest. One that got past it (a path the edge reads
            # differently) is not Slack's to answer.
            return JSONResponse({"error": "not found"}, status_code=404)

        @asynccontextmanager
        async def lifespan(_app):
            await self.start()
            try:
                yield
            finally:
                await self.stop()

        probes = [r for r in self.operator_routes() if r.path != "/metrics" or self.metrics_on_slack_port]
        return Starlette(
            routes=[Route("/slack/events", events, methods=["POST"]), *probes],
            middleware=[self._edge()],
            lifespan=lifespan,
        )

    def _edge(self) -> Middleware:
        """Size, signature and payload checks before Bolt reads a byte (see bot/inbound/edge.py)."""
        secret = self.ctx.settings.slack_signing_secret
        return Middleware(
            SlackEdge,
            dispatch=self.dispatch,
            signing_secret=secret.get_secret_value() if secret else None,
            max_body=self.ctx.settings.sitrep_max_body,
            drain=self.drain,
            slow_clients=self.slow_clients,
        )

    async def dispatch(self, body: dict, headers: dict[bytes, bytes]) -> tuple[int, dict, str]:
        """A request the edge verified and parsed (Bolt's own parser, its v0 signature check),
        handed to Bolt as that dict: Bolt takes a parsed body only as a Socket Mode request,
        which it does not verify again."""
        names = {name.decode("latin-1"): value.decode("latin-1") for name, value in headers.items()}
        response = await self.bolt.async_dispatch(AsyncBoltRequest(body=body, headers=names, mode="socket_mode"))
        return response.status, response.headers, response.body

    async def serve_http(self, host: str = "0.0.0.0") -> None:
        import uvicorn

        grace = self.ctx.settings.sitrep_shutdown_grace
        # log_config=None: uvicorn's lines go through our handler (format, redaction) too.
        config = uvicorn.Config(
            self.asgi(),
            host=host,
            port=self.ctx.settings.port,
            log_config=None,
            lifespan="on",
            timeout_graceful_shutdown=max(grace, 1),
            # Header deadline and connection limit: slow clients cannot starve Slack's requests.
            http=ConnectionGuard(self.slow_clients).protocol(),
            backlog=accept_backlog(),
        )
        self._count_failed_accepts()
        stopped = asyncio.Event()
        operator = None if self.metrics_on_slack_port else asyncio.create_task(self._serve_operator_routes(host, stopped))
        try:
            await draining_server(config, self.drain, self.ctx.settings.sitrep_drain_delay).serve()
        finally:
            stopped.set()
            if operator is not None:
                await asyncio.wait([operator], timeout=5)

    def _count_failed_accepts(self) -> None:
        """asyncio logs each failed accept with a traceback: counted with the slow clients."""
        failures = logging.getLogger("asyncio")
        if not any(isinstance(f, AcceptFailures) for f in failures.filters):
            failures.addFilter(AcceptFailures(self.slow_clients))

    async def _serve_operator_routes(self, host: str, done: asyncio.Event) -> None:
        """/metrics, /healthz and /readyz on METRICS_PORT until `done`, in both modes (Socket
        Mode has no other HTTP server). A port in use is logged, never fatal to the bot."""
        import uvicorn  # only when serving

        class Server(uvicorn.Server):
            @contextmanager
            def capture_signals(self):  # the bot's own handlers stop the process
                yield

            async def on_tick(self, counter: int) -> bool:
                # Checked every 0.1 s: no task of its own that a drain would wait on.
                return done.is_set() or await super().on_tick(counter)

        config = uvicorn.Config(
            self.operator_asgi(),
            host=host,
            port=self.ctx.settings.metrics_port,
            log_config=None,
            lifespan="off",
            http=ConnectionGuard(self.slow_clients).protocol(),
            backlog=accept_backlog(),
        )
        self._count_failed_accepts()
        try:
            await Server(config).serve()
        except SystemExit:  # uvicorn's answer to a port it cannot bind
            log.error("metrics server could not listen on METRICS_PORT %s", self.ctx.settings.metrics_port)

    async def serve_socket_mode(self, stop: asyncio.Event | None = None, host: str = "0.0.0.0") -> None:
        """Connect to Slack's websocket (slack_sdk reconnects on its own) until SIGTERM/SIGINT,
        or until `stop` is set by whoever runs it off the main thread."""
        # Only Socket Mode needs these: an HTTP deployment never loads the websocket stack.
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        from bot.inbound.socket_mode import (  # loaded when used (start-up cost)
            SocketModeDisabled,
            answer_each_envelope,
            first_connection_url,
            stop_on_link_disabled,
        )

        app_token = self.ctx.settings.slack_app_token.get_secret_value()
        await self.start()
        handler = AsyncSocketModeHandler(self.bolt, app_token)
        answer_each_envelope(handler, self.drain.track)
        if stop is None:
            stop = asyncio.Event()
            _stop_on_signals(stop)
        disabled = asyncio.Event()

        def link_disabled() -> None:
            disabled.set()
            stop.set()

        stop_on_link_disabled(handler.client, link_disabled)
        stopped = asyncio.Event()
        operator = asyncio.create_task(self._serve_operator_routes(host, stopped))
        try:
            # A refused token stops start-up here (slack_sdk would retry it forever).
            handler.client.wss_uri = await first_connection_url(self.bolt.client, app_token)
            await handler.connect_async()
            await stop.wait()
        finally:
            try:
                # Out of rotation at once, and the websocket closed first: Slack sends what
                # comes next to the other replicas' connections (no balancer to wait for).
                self.drain.begin()
                await handler.close_async()
                # /healthz keeps answering while acknowledged work finishes (busy, not dead).
                # The heartbeat beats on while work finishes; it is not work to wait for.
                keep = {operator, *self.scheduler.background()}
                await _finish_acknowledged_work(timeout=self.ctx.settings.sitrep_shutdown_grace, keep=keep)
                await self.stop()
            finally:
                stopped.set()
                await asyncio.wait([operator], timeout=5)
        if disabled.is_set():
            raise SocketModeDisabled


async def _finish_acknowledged_work(timeout: float, keep: set[asyncio.Task] | frozenset = frozenset()) -> None:
    """Let listeners that already acknowledged Slack finish before the store closes: Slack does
    not send an acknowledged command again, so stopping them would lose it. Bounded by
    `SITREP_SHUTDOWN_GRACE`. Tasks in `keep` (the probe server) are not waited for."""
    current = asyncio.current_task()
    running = [task for task in asyncio.all_tasks() if task is not current and task not in keep and not task.done()]
    if running:
        log.info("finishing %d task(s) in flight", len(running))
        _done, left = await asyncio.wait(running, timeout=timeout)
        if left:
            log.warning("stopped with %d task(s) unfinished after %s s", len(left), timeout)


def _stop_on_signals(event: asyncio.Event) -> None:
    import signal

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, event.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix
            pass
