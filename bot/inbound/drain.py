"""Stopping without losing work: the drain that a deploy's SIGTERM starts.

Bolt acknowledges Slack first and runs the listener afterwards as a background task
(``process_before_response=False``); Slack never sends an acknowledged request again. So a
process that closes its HTTP clients and database on SIGTERM while such a task waits on the
status page loses what the person submitted. The drain closes the door first (the edge
answers new Slack requests 503, so Slack or the load balancer tries elsewhere), waits —
bounded by ``SITREP_SHUTDOWN_GRACE`` — for every request and listener already inside, and
only then lets the process close its clients and store.

Listener tasks are tracked explicitly: Bolt's listener runner calls its start handler as the
first thing inside each background task, so that handler registers the current task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from types import FrameType

import uvicorn
from slack_bolt.listener.async_listener_start_handler import AsyncListenerStartHandler
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

log = logging.getLogger(__name__)


class Drain:
    """The work under way in this process, and whether it still takes new work."""

    def __init__(self) -> None:
        self.draining = False
        self._tasks: set[asyncio.Task] = set()
        self._requests = 0

    def track(self, task: asyncio.Task) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @contextmanager
    def request(self) -> Iterator[None]:
        """An HTTP request that passed the edge: counted until its answer is sent, which
        covers the moment before Bolt has started its listener task."""
        self._requests += 1
        try:
            yield
        finally:
            self._requests -= 1

    @property
    def in_flight(self) -> int:
        return self._requests + sum(1 for t in self._tasks if not t.done())

    def begin(self) -> None:
        if not self.draining:
            self.draining = True
            log.info("draining: new Slack requests are answered 503; finishing %d in flight", self.in_flight)

    async def wait(self, timeout: float) -> int:
        """Wait until nothing is in flight or `timeout` seconds passed; the number left."""
        deadline = time.monotonic() + timeout
        current = asyncio.current_task()
        while True:
            tasks = [t for t in self._tasks if not t.done() and t is not current]
            if not tasks and self._requests == 0:
                return 0
            left = deadline - time.monotonic()
            if left <= 0:
                count = len(tasks) + self._requests
                log.warning("stopped with %d request(s) or listener(s) unfinished after %g s", count, timeout)
                return count
            if tasks:
                await asyncio.wait(tasks, timeout=min(left, 0.5))
            else:
                await asyncio.sleep(min(left, 0.05))


class TrackListenerTask(AsyncListenerStartHandler):
    """Bolt's hook at the start of every listener run: register the task it runs in."""

    def __init__(self, drain: Drain) -> None:
        self.drain = drain

    async def handle(self, request: AsyncBoltRequest, response: BoltResponse | None) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.drain.track(task)


def draining_server(config: uvicorn.Config, finish_work: Callable[[], Awaitable[None]]) -> uvicorn.Server:
    """uvicorn, but SIGTERM first drains, then stops.

    uvicorn's own shutdown closes the listening socket at once (a request then meets a refused
    connection, which a load balancer turns into a 502) and runs the app's shutdown while
    background listeners still work. Here the first SIGTERM or SIGINT only runs `finish_work`
    with the socket still open (new Slack requests get 503 from the edge); when it returns,
    uvicorn's shutdown follows. A second signal stops waiting.
    """
    return _DrainingServer(config, finish_work)


class _DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, finish_work: Callable[[], Awaitable[None]]) -> None:
        super().__init__(config)
        self._finish_work = finish_work
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining: asyncio.Task | None = None

    async def startup(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Called from a signal handler: hand the work to the loop, which the call wakes.
        if self._loop is None or self._draining is not None or self.should_exit:
            super().handle_exit(sig, frame)
            return
        self._loop.call_soon_threadsafe(self._begin, sig, frame)

    def _begin(self, sig: int, frame: FrameType | None) -> None:
        if self._draining is not None:  # a second signal while draining: stop waiting
            super().handle_exit(sig, frame)
            return
        self._draining = asyncio.ensure_future(self._drain_then_exit(sig, frame))

    async def _drain_then_exit(self, sig: int, frame: FrameType | None) -> None:
        try:
            await self._finish_work()
        except Exception:  # noqa: BLE001 - stopping must go on whatever happened
            log.exception("finishing work before the stop failed")
        super().handle_exit(sig, frame)
