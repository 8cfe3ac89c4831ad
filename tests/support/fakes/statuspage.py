"""A fake status-page API (seeds 004 and 000) served over real HTTP.

The server runs in its own thread with its own event loop, so it keeps
answering while a test's loop is blocked, and sync tests can use it too::

    with FakeStatusPage() as sp:
        client = StatusPageClient(sp.url, sp.api_key)

It answers with the seed envelopes and messages verbatim: its rules are the sandbox's
stand-in (``bot.sandbox.statuspage``), written from the seeds and deliberately independent
of ``bot.clients.statuspage`` so a bug in the client cannot hide itself.

The threading plumbing (:class:`BackgroundServer`, :class:`RecordedRequest`)
is shared with ``tests/support/fakes/appfirst.py``.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl

from aiohttp import web

from bot.sandbox.statuspage import MSG_SERVER_ERROR, StatusPageStandIn, envelope

__all__ = [
    "BackgroundServer",
    "CaseInsensitiveDict",
    "FakeStatusPage",
    "RecordedRequest",
    "utcnow",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def utcnow() -> datetime:
    return datetime.now(UTC)


class CaseInsensitiveDict(dict[str, str]):
    """A plain dict of headers whose lookups ignore case, as HTTP does."""

    def __init__(self, items: Any = ()) -> None:
        super().__init__({k.lower(): v for k, v in dict(items).items()})

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


@dataclass
class RecordedRequest:
    """One request as the fake received it, for asserting on the exact wire format."""

    method: str
    path: str
    headers: CaseInsensitiveDict
    json: Any | None
    body: bytes
    query: dict[str, str] = field(default_factory=dict)
    form: dict[str, str] | None = None


class BackgroundServer:
    """An aiohttp app on 127.0.0.1 (random port) in a private thread and loop.

    Subclasses add routes and say how a forced failure looks; this class owns
    the switches every fake shares (latency, forced failures, malformed body)
    and the request log.
    """

    name = "fake"

    def __init__(self, *, mount: str = "") -> None:
        # `mount` serves the seed paths under a prefix (`/sp` → `/sp/api/...`), as a real
        # API behind a shared host may be; `url` then ends with it, and any other path is a
        # plain 404, as a web server answers for a path nothing serves.
        self.mount = "/" + mount.strip("/") if mount.strip("/") else ""
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.requests: list[RecordedRequest] = []
        self._reset_switches()

    def _reset_switches(self) -> None:
        self.latency: float = 0.0
        self.fail_status: int | None = None
        self.malformed: bool = False
        self.clock: Callable[[], datetime] = utcnow
        self._fail_remaining = 0
        self._fail_remaining_status = 500
        # Creates carried out whose reply is then held back (seconds; None: dropped; an
        # Event: dropped once it is set).
        self._held_replies: list[float | threading.Event | None] = []
        # Creates to be recorded and then neither carried out nor answered (`stall_creates`).
        self._stalled_creates = 0
        # While cleared, every request waits here before it is handled (`hold_requests`).
        self._open = threading.Event()
        self._open.set()
        # Path endings whose next request is carried out, then answered once its event is set.
        self._paused: dict[str, threading.Event] = {}
        self._pause_seconds = 30.0
        # What a forced failure's body says instead of the usual text (an echo of anything a
        # test chooses: a key, a newline, 500 characters).
        self.failure_message: str | None = None

    # -- lifecycle --------------------------------------------------------

    def start(self) -> Self:
        if self._thread is not None:
            return self
        ready = threading.Event()
        problems: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:  # surface bind errors to start()
                problems.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                assert self._runner is not None
                loop.run_until_complete(self._runner.cleanup())
                loop.close()

        self._thread = threading.Thread(target=run, name=f"{self.name}-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"{self.name} did not start within 10 seconds")
        if problems:
            self._thread = None
            raise problems[0]
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None
        self._loop = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def _serve(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        self._add_routes(app)
        if self.mount:
            root = web.Application()
            root.add_subapp(self.mount, app)
            app = root
        # handler_cancellation: a client that timed out should not keep a
        # latency sleep alive; short shutdown: stop() must not wait on it.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.25)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        port = runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}{self.mount}"

    # -- switches ---------------------------------------------------------

    def fail_times(self, n: int, status: int = 500) -> None:
        """The next ``n`` requests fail with ``status``, then the server recovers."""
        with self._lock:
            self._fail_remaining = n
            self._fail_remaining_status = status

    def hold_replies(self, n: int = 1, seconds: float = 30.0) -> None:
        """The next ``n`` creates are carried out, then their reply waits ``seconds`` before
        it is sent: longer than a client's timeout, it is a reply lost after the request
        reached the server (or a server that crashes before answering)."""
        with self._lock:
            self._held_replies = [seconds] * n

    @contextmanager
    def hold_requests(self) -> Iterator[None]:
        """Inside the block every request is recorded, then waits, unanswered and not carried
        out, until the block ends: an API that answers as late as the test likes, with no
        clock involved (a test proves its ack did not wait by getting it inside the block)."""
        self._open.clear()
        try:
            yield
        finally:
            self._open.set()

    def pause_reply(self, path_end: str, *, seconds: float = 30.0) -> threading.Event:
        """The next request whose path ends with ``path_end`` is carried out, then its reply
        waits until the returned event is set (at most ``seconds``): a slow answer to a call
        the server already acted on, so a test can order what others do meanwhile."""
        answer = threading.Event()
        with self._lock:
            self._paused[path_end] = answer
        self._pause_seconds = seconds
        return answer

    def _take_paused(self, path: str) -> threading.Event | None:
        with self._lock:
            for end in list(self._paused):
                if path.rstrip("/").endswith(end):
                    return self._paused.pop(end)
        return None

    def stall_creates(self, n: int = 1) -> None:
        """The next ``n`` creates are recorded, then neither carried out nor answered: each
        waits until its caller goes away (a process killed mid-call) or the server stops.
        Nothing was made, and no reply ever comes: what a create lost on its way looks like to
        whoever takes the caller's work over."""
        with self._lock:
            self._stalled_creates = n

    def _count_down(self, switch: str) -> bool:
        """Whether the switch `switch` (a count of requests still to treat so) applies to this
        request, one fewer left if so."""
        with self._lock:
            left = getattr(self, switch)
            if left > 0:
                setattr(self, switch, left - 1)
            return left > 0

    def drop_replies(self, n: int = 1) -> None:
        """The next ``n`` creates are carried out, then the connection is cut without a
        reply (a reset mid-call): the client's "no answer" at once, with no timeout to wait
        out (a loaded machine cannot make it come early or late)."""
        with self._lock:
            self._held_replies = [None] * n

    def drop_reply_when(self, cut: threading.Event) -> None:
        """The next create is carried out, its reply held until the test sets ``cut``, then
        the connection is cut without a reply: the test orders what happens while the
        create is in flight (a database outage, say) and says when the answer is lost."""
        with self._lock:
            self._held_replies = [cut]

    def _take_held(self) -> tuple[bool, float | threading.Event | None]:
        with self._lock:
            if self._held_replies:
                return True, self._held_replies.pop(0)
            return False, None

    def _is_create(self, request: web.Request) -> bool:
        """Whether a request makes something new (what `hold_replies` applies to)."""
        return False

    def reset(self) -> None:
        """Forget all requests and state, and restore every switch to its default."""
        with self._lock:
            self.requests.clear()
            self._reset_switches()
            self._reset_state()

    def _take_failure(self) -> int | None:
        with self._lock:
            if self._fail_remaining > 0:
                self._fail_remaining -= 1
                return self._fail_remaining_status
            return self.fail_status

    # -- hooks for subclasses ---------------------------------------------

    def _add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def _reset_state(self) -> None:
        raise NotImplementedError

    def _failure_response(self, status: int) -> web.StreamResponse:
        raise NotImplementedError

    def _check_auth(self, request: web.Request) -> web.StreamResponse | None:
        """Return a response to refuse the request, or None to let it through."""
        return None

    # -- middleware ---------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body = await request.read()
        self._record(request, body)
        while not self._open.is_set():
            await asyncio.sleep(0.01)
        if self._is_create(request) and self._count_down("_stalled_creates"):
            await asyncio.Event().wait()  # cancelled when the caller goes away (handler_cancellation)
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        status = self._take_failure()
        if status is not None:
            return self._failure_response(status)
        if self.malformed:
            return web.Response(
                status=200,
                text="<html><body>Gateway says hello</body></html>",
                content_type="text/html",
            )
        refusal = self._check_auth(request)
        if refusal is not None:
            return refusal
        response = await handler(request)
        paused = self._take_paused(request.path)
        if paused is not None:
            await asyncio.get_running_loop().run_in_executor(None, paused.wait, self._pause_seconds)
        if self._is_create(request) and response.status < 300:
            held, hold = self._take_held()
            if isinstance(hold, threading.Event):
                await asyncio.get_running_loop().run_in_executor(None, hold.wait, 60)
                hold = None
            if held and hold is None:
                assert request.transport is not None
                request.transport.abort()  # the create is done; the client hears a reset
            elif held:
                await asyncio.sleep(hold)
        return response

    def _record(self, request: web.Request, body: bytes) -> None:
        parsed_json: Any | None = None
        form: dict[str, str] | None = None
        if body and request.content_type == "application/json":
            try:
                parsed_json = json.loads(body)
            except ValueError:
                parsed_json = None
        elif body and request.content_type == "application/x-www-form-urlencoded":
            form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            headers=CaseInsensitiveDict(request.headers),
            json=parsed_json,
            body=body,
            query=dict(request.query),
            form=form,
        )
        with self._lock:
            self.requests.append(recorded)


# ---------------------------------------------------------------------------
# The status page itself: the sandbox's stand-in, served from a thread with switches
# ---------------------------------------------------------------------------


class FakeStatusPage(StatusPageStandIn, BackgroundServer):
    """The status-page API of seeds 004/000 (the rules of `bot.sandbox.statuspage`, written
    from the seeds and independent of `bot.clients.statuspage`), with switches to make it
    misbehave: latency, forced failures, malformed bodies, another key, a vocabulary.

    Unlike the sandbox it ties ``GET /api/maintenance/status`` to no clock
    (``progress_by_clock`` stays off): a window is listed once a test marks it in progress
    (:meth:`start_maintenance`) and leaves when marked done (:meth:`finish_maintenance`) or
    resolved through the API.
    """

    name = "fake-statuspage"
    DEFAULT_API_KEY = "sp-test-key"

    def __init__(self, api_key: str = DEFAULT_API_KEY, *, mount: str = "") -> None:
        self._initial_api_key = api_key
        StatusPageStandIn.__init__(self, api_key)
        BackgroundServer.__init__(self, mount=mount)

    def _reset_switches(self) -> None:
        super()._reset_switches()
        self.api_key = self._initial_api_key
        self._bare_replies = 0
        self.reset_rules()

    def _reset_state(self) -> None:
        self.incidents.clear()

    def answer_without_result(self, n: int = 1) -> None:
        """The next ``n`` creates are carried out and answered ``Success: true`` with their
        Message but no ``Result`` (a status page that forgets the new ID): it exists, and the
        client cannot know which it is."""
        with self._lock:
            self._bare_replies = n

    async def _create(self, request: web.Request) -> web.StreamResponse:
        response = await super()._create(request)
        with self._lock:
            bare = response.status < 300 and self._bare_replies > 0
            if bare:
                self._bare_replies -= 1
        if not bare:
            return response
        said = json.loads(response.body)  # the envelope the stand-in made, minus its Result
        return web.json_response({"Success": True, "Message": said["Message"]})

    def _is_create(self, request: web.Request) -> bool:
        return request.method == "POST" and request.path.rstrip("/").endswith("/api/admin/Incident")

    def _failure_response(self, status: int) -> web.StreamResponse:
        return envelope(False, self.failure_message or MSG_SERVER_ERROR, status=status)
