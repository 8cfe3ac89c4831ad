"""When a Slack request's answer has gone out, so that work after an ack never delays it.

Bolt (``process_before_response=False``) runs a listener in a task of its own and learns of
its ``ack()`` by polling from the request's task every 10 ms. The listener goes straight on
with the work after its ack (a Submit's status-page call, a command's modal) while the poll
is asleep: whatever step of that work runs when the poll comes due delays the answer by the
rest of its length. Measured on a declare's Submit: steps of 5–7 ms, on one Submit in fifty.
So the ack waits, in the listener's task, until the answer is written (``after_answer``), and
the work starts after it: 10 ms later at most, far inside what Slack gives it.

The edge serves each HTTP request under ``answering()``, Socket Mode each envelope; the
listener's task inherits the ``Answer`` (a task copies its creator's context).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

#: Past this the answer is moot (Slack gives up at 3 s): the work after the ack goes on.
ANSWER_WAIT_SECONDS = 3.0


class Answer:
    """One request's answer: sent or not yet, and the task serving the request. Bare futures
    and a timer rather than an `asyncio.Event` under `asyncio.timeout`: this is on every
    request's path, and a wait costs 12 µs instead of 19 (measured on the 2-core machine)."""

    __slots__ = ("is_sent", "task", "_waiters")

    def __init__(self) -> None:
        self.is_sent = False
        self.task = asyncio.current_task()
        self._waiters: list[asyncio.Future[None]] = []

    def sent(self) -> None:
        self.is_sent = True
        for waiter in self._waiters:
            _settle(waiter)

    async def wait(self, timeout: float) -> None:
        """Until the answer is sent, or `timeout` seconds. A future of its own per wait: a
        waiter cancelled (the process stopping) cancels only its own."""
        if self.is_sent:
            return
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiters.append(waiter)
        bound = loop.call_later(timeout, _settle, waiter)
        try:
            await waiter
        finally:
            bound.cancel()


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


_ANSWER: ContextVar[Answer | None] = ContextVar("sitrep_answer", default=None)


@contextmanager
def answering() -> Iterator[Answer]:
    """Serve one request: its `Answer` is what `after_answer` waits for in the listener's
    task. Marked sent on the way out whatever happened, so nothing waits past the request."""
    answer = Answer()
    token = _ANSWER.set(answer)
    try:
        yield answer
    finally:
        answer.sent()
        _ANSWER.reset(token)


def current_answer() -> Answer | None:
    return _ANSWER.get()


async def after_answer(timeout: float = ANSWER_WAIT_SECONDS) -> None:
    """Return once the request this task works for has its answer written. At once where no
    request is being answered (a job, a test calling a service) or in the request's own task
    (an ack Bolt or a middleware makes there, before the answer can be written at all)."""
    answer = _ANSWER.get()
    if answer is None or answer.is_sent or answer.task is asyncio.current_task():
        return
    await answer.wait(timeout)
