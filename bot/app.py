"""App wiring: the Bolt app, the ASGI app that serves it, and the process's start and stop."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import handlers
from bot.context import AppContext
from bot.edge import SlackEdge
from bot.lifecycle import Drain, TrackListenerTask, draining_server
from bot.replays import ForgetShownAgain, replay_guard
from scheduler.runner import ReminderScheduler

log = logging.getLogger(__name__)


def build_bolt_app(ctx: AppContext) -> AsyncApp:
    settings = ctx.settings
    # Bolt gets a token-less twin of our client: the token comes from `authorize`, so
    # Bolt neither warns about two sources nor keeps a second copy of the secret.
    bolt_client = AsyncWebClient(
        base_url=ctx.slack.base_url, timeout=ctx.slack.timeout, retry_handlers=ctx.slack.retry_handlers
    )
    bolt_logger = logging.getLogger("sitrep.bolt")
    if not any(isinstance(f, _NoTokenFromEnvironmentWarning) for f in bolt_logger.filters):
        bolt_logger.addFilter(_NoTokenFromEnvironmentWarning())
    app = AsyncApp(
        client=bolt_client,
        signing_secret=settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None,
        request_verification_enabled=not settings.socket_mode,
        process_before_response=False,
        authorize=_single_workspace_authorize(ctx),
        logger=bolt_logger,
    )
    # Before any listener: a replayed or retried request is acked and not acted on again.
    app.use(replay_guard(ctx))
    app.listener_runner.listener_completion_handler = ForgetShownAgain(ctx)
    handlers.register(app, ctx)
    return app


class _NoTokenFromEnvironmentWarning(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN from the environment by itself when no `token` is passed,
    then warns that the client we gave wins and the token is unused. That is our design
    (the token comes from `authorize`), so the warning only misleads the operator."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()


def _single_workspace_authorize(ctx: AppContext):
    """One workspace, one bot token: ask `auth.test` once (as documented, no extra
    arguments) and reuse the answer for every request."""
    from slack_bolt.authorization import AuthorizeResult

    cached: list[AuthorizeResult] = []

    async def authorize(**_kwargs) -> AuthorizeResult:
        if not cached:
            answer = await ctx.slack.auth_test()
            cached.append(
                AuthorizeResult(
                    enterprise_id=answer.get("enterprise_id"),
                    team_id=answer.get("team_id"),
                    bot_token=ctx.settings.slack_bot_token.get_secret_value(),
                    bot_id=answer.get("bot_id"),
                    bot_user_id=answer.get("user_id"),
                )
            )
        return cached[0]

    return authorize


class Sitrep:
    """One running bot: the context, the Bolt app and the reminder scheduler.

    `timers=False` keeps the scheduler from firing anything on its own (tests that move an
    injected clock run the reminders themselves); a real bot always runs with timers."""

    def __init__(self, ctx: AppContext, *, timers: bool = True):
        self.ctx = ctx
        self.bolt = build_bolt_app(ctx)
        self.drain = Drain()
        # Bolt calls this first inside every listener's background task: the drain waits on them.
        self.bolt.listener_runner.listener_start_handler = TrackListenerTask(self.drain)
        self.scheduler = ReminderScheduler(ctx, timers=timers)
        self.started = False

    async def start(self) -> None:
        await self.ctx.db.upgrade()  # a no-op when `sitrep run` already did it
        await self.scheduler.start()
        self.started = True
        log.info("sitrep started (instance %s)", self.ctx.instance_id)

    async def finish_work(self) -> None:
        """Take no new work and let what is under way finish (bounded by
        `SITREP_SHUTDOWN_GRACE`): listeners Slack already has its answer from, and
        reminders being delivered. Safe to call twice."""
        grace = self.ctx.settings.sitrep_shutdown_grace
        self.drain.begin()
        await asyncio.gather(self.drain.wait(grace), self.scheduler.stop(timeout=grace))

    async def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        await self.finish_work()
        await self.ctx.aclose()
        log.info("sitrep stopped")

    def asgi(self) -> Starlette:
        handler = AsyncSlackRequestHandler(self.bolt)

        async def events(request: Request):
            return await handler.handle(request)

        async def healthz(_request: Request):
            return JSONResponse({"ok": True})

        @asynccontextmanager
        async def lifespan(_app):
            await self.start()
            try:
                yield
            finally:
                await self.stop()

        return Starlette(
            routes=[Route("/slack/events", events, methods=["POST"]), Route("/healthz", healthz, methods=["GET"])],
            middleware=[self._edge()],
            lifespan=lifespan,
        )

    def _edge(self) -> Middleware:
        """Size, signature and payload checks before Bolt reads a byte (see bot/edge.py)."""
        secret = self.ctx.settings.slack_signing_secret
        return Middleware(
            SlackEdge,
            signing_secret=secret.get_secret_value() if secret else None,
            max_body=self.ctx.settings.sitrep_max_body,
            drain=self.drain,
        )

    async def serve_http(self, host: str = "0.0.0.0") -> None:
        import uvicorn

        grace = self.ctx.settings.sitrep_shutdown_grace
        config = uvicorn.Config(
            self.asgi(),
            host=host,
            port=self.ctx.settings.port,
            log_level="info",
            lifespan="on",
            timeout_graceful_shutdown=max(grace, 1),
        )
        await draining_server(config, self.finish_work).serve()

    async def serve_socket_mode(self, stop: asyncio.Event | None = None) -> None:
        """Connect to Slack's websocket (slack_sdk reconnects on its own) until SIGTERM/SIGINT,
        or until `stop` is set by whoever runs it off the main thread."""
        # Only Socket Mode needs these: an HTTP deployment never loads the websocket stack.
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        from bot.socket_mode import first_connection_url  # loaded when used (start-up cost)

        app_token = self.ctx.settings.slack_app_token.get_secret_value()
        await self.start()
        handler = AsyncSocketModeHandler(self.bolt, app_token)
        if stop is None:
            stop = asyncio.Event()
            _stop_on_signals(stop)
        try:
            # A refused token stops start-up here (slack_sdk would retry it forever).
            handler.client.wss_uri = await first_connection_url(self.bolt.client, app_token)
            await handler.connect_async()
            await stop.wait()
        finally:
            await handler.close_async()
            await _finish_acknowledged_work(timeout=self.ctx.settings.sitrep_shutdown_grace)
            await self.stop()


async def _finish_acknowledged_work(timeout: float) -> None:
    """Let listeners that already acknowledged Slack finish before the store closes: Slack does
    not send an acknowledged command again, so stopping them would lose it. Bounded: an
    orchestrator kills the process 10 s after SIGTERM by default."""
    current = asyncio.current_task()
    running = [task for task in asyncio.all_tasks() if task is not current and not task.done()]
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
