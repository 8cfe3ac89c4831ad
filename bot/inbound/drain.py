"""Stopping without losing work: the drain that a deploy's SIGTERM starts.

Slack never sends a slash command, click or submission again, and a load balancer keeps
sending to a stopping replica until its endpoints catch up (Kubernetes: seconds after the
SIGTERM). So the drain has three steps. First `/readyz` fails while Slack requests are still
served normally, for ``SITREP_DRAIN_DELAY`` seconds: the balancer stops sending. Then the
listener closes (a request that still arrives on a kept-alive connection is answered 503).
Last, every request and listener already inside finishes, bounded by
``SITREP_SHUTDOWN_GRACE`` from the close, and only then does the process close its clients
and store.

Slack has its answer at a listener's ack, and the listener goes on in a task of its own
(bot/inbound/answered.py): the request that started it tells the drain of that task
(`Drain.track`), so work Slack already has its answer for is waited on too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import uvicorn

log = logging.getLogger(__name__)


class Drain:
    """The work under way in this process, and whether it still takes new work."""

    def __init__(self) -> None:
        #: SIGTERM came: readiness fails; Slack requests are still served until `closed`.
        self.draining = False
        #: The listener is closed: what still reaches the edge is answered 503.
        self.closed = False
        self._closed_at: float | None = None
        self._tasks: set[asyncio.Task] = set()
        self._requests = 0

    def track(self, task: asyncio.Task) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @contextmanager
    def request(self) -> Iterator[None]:
        """An HTTP request that passed the edge: counted until its answer is sent, which
        covers the moment before its listener's task is started and told to the drain."""
        self._requests += 1
        try:
            yield
        finally:
            self._requests -= 1

    @property
    def in_flight(self) -> int:
        return self._requests + sum(1 for t in self._tasks if not t.done())

    def begin(self) -> None:
        """Out of rotation: `/readyz` fails from now on."""
        if not self.draining:
            self.draining = True
            log.info("stopping: /readyz answers 503 from now on; %d request(s) or listener(s) in flight", self.in_flight)

    def close(self) -> None:
        """No new Slack requests: the grace for what is inside counts from here."""
        self.begin()
        if not self.closed:
            self.closed = True
            self._closed_at = time.monotonic()
            log.info("closing the listener; finishing %d request(s) or listener(s) in flight", self.in_flight)

    def grace_left(self, grace: float) -> float:
        """What remains of `grace` seconds counted from the close (all of it before one)."""
        if self._closed_at is None:
            return grace
        return max(grace - (time.monotonic() - self._closed_at), 0.0)

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


def draining_server(config: uvicorn.Config, drain: Drain, delay: float) -> uvicorn.Server:
    """uvicorn, but SIGTERM first takes the replica out of rotation, then stops.

    uvicorn's own shutdown closes the listening socket at once: a request the balancer still
    sends meets a refused connection (a 502 in front of a person). Here the first SIGTERM or
    SIGINT only begins the drain (`/readyz` fails) and keeps serving for `delay` seconds;
    then uvicorn's shutdown follows: listener closed, responses under way sent, and the
    app's shutdown (which waits for the listeners, see `Sitrep.finish_work`). A second
    signal ends the delay at once; work in flight still gets its grace.
    """
    return _DrainingServer(config, drain, delay)


class _DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain: Drain, delay: float) -> None:
        super().__init__(config)
        self._drain = drain
        self._delay = delay
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Task | None = None
        self._skip = asyncio.Event()

    async def startup(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Called from a signal handler: hand the work to the loop, which the call wakes.
        if self._loop is None or self.should_exit:
            super().handle_exit(sig, frame)
            return
        self._loop.call_soon_threadsafe(self._signalled, sig, frame)

    def _signalled(self, sig: int, frame: FrameType | None) -> None:
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._delay_then_close(sig, frame))
        else:  # a second signal during the delay: close the listener now
            self._skip.set()

    async def _delay_then_close(self, sig: int, frame: FrameType | None) -> None:
        self._drain.begin()
        log.info("Slack requests are still served for %g s while the load balancer stops sending", self._delay)
        try:
            async with asyncio.timeout(self._delay):
                await self._skip.wait()
        except TimeoutError:
            pass
        self._drain.close()
        super().handle_exit(sig, frame)
