"""A Slack request's answer goes out the moment its listener acks, and work after an ack
starts once that answer is written.

Bolt, left to itself (``process_before_response=False``), runs a listener in a task of its
own and learns of its ``ack()`` by polling from the request's task every 10 ms: every answer
waited for the next poll (a bare Bolt app's median was 12.5 ms on loopback, almost all of it
that wait), and whatever step of the listener's later work ran when the poll came due held
the answer up further (a Submit's status-page call: steps of 5–7 ms). So sitrep runs Bolt
with ``process_before_response=True`` (Bolt returns its answer when the listener function
returns) and its one listener wrapper (``handlers/errors.py::renders_errors``) starts the
listener's body in a task of its own (`start_listener`) and returns as soon as that body
acks (`until_acked`): the ack wakes the request's task (`acked`), no poll. The work after a
bare ack then waits, in the listener's task, until the answer is written (`after_answer`).

The edge serves each HTTP request under ``answering()``, Socket Mode each envelope; the
listener's task inherits the ``Answer`` (a task copies its creator's context). The drain
is told of each listener task (`track`): it outlives the request it answered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

#: Past this the answer is moot (Slack gives up at 3 s): the work after the ack goes on, and
#: a request whose listener has not acked by then is answered without it.
ANSWER_WAIT_SECONDS = 3.0

log = logging.getLogger(__name__)

Track = Callable[[asyncio.Task], None]


class Answer:
    """One request's answer: acked or not yet, sent or not yet, and the task serving the
    request. Bare futures and timers rather than `asyncio.Event` under `asyncio.timeout`:
    this is on every request's path, and a wait costs 12 µs instead of 19 (measured on the
    2-core machine)."""

    __slots__ = ("is_acked", "is_sent", "task", "track", "_acked", "_waiters")

    def __init__(self, track: Track | None = None) -> None:
        self.is_acked = False
        self.is_sent = False
        self.task = asyncio.current_task()
        self.track = track
        self._acked: asyncio.Future[None] | None = None
        self._waiters: list[asyncio.Future[None]] = []

    def acked(self) -> None:
        """The listener's ack has set Bolt's response: the request's task may return it."""
        self.is_acked = True
        if self._acked is not None:
            _settle(self._acked)

    def sent(self) -> None:
        self.is_sent = True
        for waiter in self._waiters:
            _settle(waiter)

    async def until_acked(self, work: asyncio.Task, timeout: float) -> None:
        """Until the listener acked, its task ended, or `timeout` seconds."""
        if self.is_acked or work.done():
            return
        waiter = self._acked = asyncio.get_running_loop().create_future()
        work.add_done_callback(lambda _task: _settle(waiter))
        await _within(waiter, timeout)

    async def wait(self, timeout: float) -> None:
        """Until the answer is sent, or `timeout` seconds. A future of its own per wait: a
        waiter cancelled (the process stopping) cancels only its own."""
        if self.is_sent:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await _within(waiter, timeout)


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def _within(waiter: asyncio.Future[None], timeout: float) -> None:
    """Until `waiter` is settled, or `timeout` seconds settle it."""
    bound = asyncio.get_running_loop().call_later(timeout, _settle, waiter)
    try:
        await waiter
    finally:
        bound.cancel()


_ANSWER: ContextVar[Answer | None] = ContextVar("sitrep_answer", default=None)


@contextmanager
def answering(track: Track | None = None) -> Iterator[Answer]:
    """Serve one request: its `Answer` is what `until_acked` and `after_answer` wait on.
    Marked sent on the way out whatever happened, so nothing waits past the request.
    `track` is told of the listener task the request starts (the drain waits for it)."""
    answer = Answer(track)
    token = _ANSWER.set(answer)
    try:
        yield answer
    finally:
        answer.sent()
        _ANSWER.reset(token)


def current_answer() -> Answer | None:
    return _ANSWER.get()


def start_listener(body: Coroutine[Any, Any, None]) -> asyncio.Task:
    """The listener's body in a task of its own (it goes on after the answer), told to the
    request's `track`."""
    task = asyncio.ensure_future(body)
    task.add_done_callback(_log_failure)
    answer = _ANSWER.get()
    if answer is not None and answer.track is not None:
        answer.track(task)
    return task


def _log_failure(task: asyncio.Task) -> None:
    """What Bolt's runner did with a listener's exception: logged (sitrep's listeners render
    their own errors, so only a failure to render one reaches here)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("a listener failed: %s", type(task.exception()).__name__, exc_info=task.exception())


async def until_acked(work: asyncio.Task, timeout: float = ANSWER_WAIT_SECONDS) -> None:
    """Return once the listener running in `work` acked (or ended, or `timeout` passed), so
    Bolt can send its answer. Where no request is being answered (a test dispatching to Bolt
    itself) nothing would say it acked: the listener is waited for to its end."""
    answer = _ANSWER.get()
    if answer is None:
        await asyncio.wait([work], timeout=timeout)
        return
    await answer.until_acked(work, timeout)


def acked() -> None:
    """Called by the ack once Bolt's response is set (bot/app.py `TimedAck`)."""
    answer = _ANSWER.get()
    if answer is not None:
        answer.acked()


async def after_answer(timeout: float = ANSWER_WAIT_SECONDS) -> None:
    """Return once the request this task works for has its answer written. At once where no
    request is being answered (a job, a test calling a service) or in the request's own task
    (an ack Bolt or a middleware makes there, before the answer can be written at all)."""
    answer = _ANSWER.get()
    if answer is None or answer.is_sent or answer.task is asyncio.current_task():
        return
    await answer.wait(timeout)
