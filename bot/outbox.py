"""One outbound queue per channel, paced ahead of Slack's rate limits.

Slack limits `chat.postMessage` to about one message per second per channel (short bursts
allowed) and `chat.update` to Tier 3 (about 50 a minute). Sending as fast as work arrives
hits those limits and every 429 then stalls whatever waits behind it. Here each channel
has one queue, sent in `Priority` order, each method metered by its own token bucket so a
429 is the exception; a 429 pauses only that channel and method for its Retry-After, and
the call goes back to the front of its queue (never a sleep that holds other work).

Edits of one parent that are still queued are coalesced: the newest message replaces the
queued one, so a burst of changes becomes one `chat.update` carrying the latest state.

Across replicas the buckets are per process: the reminder claim in the database decides
which replica posts a reminder, but two replicas posting at once in one channel could
together exceed the per-channel rate (Slack's 429 then paces them). A per-channel lease
in the database would close that gap; it is not built yet.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from slack_sdk.errors import SlackApiError

log = logging.getLogger(__name__)


class Priority(IntEnum):
    """Lower goes first when several sends wait in one channel."""

    NOW = 0
    """A window's "started"/"ended" reply: late is worse than for anything else."""
    REPLY = 1
    """Announcements and other thread replies."""
    HEADS_UP = 2
    """A heads-up before a window: it has minutes to spare."""
    EDIT = 3
    """A parent's refresh: coalesced, so it goes last and carries the latest state."""


@dataclass(frozen=True)
class Rate:
    """A token bucket: `per_second` sustained, `burst` at once."""

    per_second: float
    burst: int


#: Slack's documented limits, kept just under: chat.postMessage ~1/s per channel with short
#: bursts (special tier), chat.update Tier 3 (50+/min).
SLACK_RATES: dict[str, Rate] = {
    "chat.postMessage": Rate(per_second=1.0, burst=4),
    "chat.update": Rate(per_second=50 / 60, burst=8),
}


def scaled_rates(speedup: float) -> dict[str, Rate]:
    """Slack's limits `speedup` times faster (the `SITREP_TEST_SPEEDUP` test hook)."""
    return {method: Rate(rate.per_second * speedup, rate.burst) for method, rate in SLACK_RATES.items()}


DEFAULT_RETRY_AFTER = 1.0
MAX_ATTEMPTS = 5


class TokenBucket:
    def __init__(self, rate: Rate, now: float):
        self.rate = rate
        self.tokens = float(rate.burst)
        self.updated = now
        self.paused_until = 0.0

    def wait(self, now: float) -> float:
        """Seconds until one token is available (0: send now)."""
        self.tokens = min(self.rate.burst, self.tokens + (now - self.updated) * self.rate.per_second)
        self.updated = now
        if now < self.paused_until:
            return self.paused_until - now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate.per_second

    def take(self) -> None:
        self.tokens -= 1

    def pause(self, until: float) -> None:
        """A 429: nothing of this method in this channel until `until`; the bucket restarts empty."""
        self.paused_until = max(self.paused_until, until)
        self.tokens = 0.0


@dataclass(order=True)
class _Job:
    priority: int
    seq: int
    method: str = field(compare=False)
    call: Callable[[], Awaitable[Any]] = field(compare=False)
    future: asyncio.Future = field(compare=False)
    key: Any = field(compare=False, default=None)
    attempts: int = field(compare=False, default=0)


class Outbox:
    """Per-channel queues and buckets. `monotonic` and `sleep` are injectable so tests and
    the bench can drive time; methods without a rate are sent in order, unmetered."""

    def __init__(
        self,
        rates: dict[str, Rate] | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        max_attempts: int = MAX_ATTEMPTS,
    ):
        self.rates = SLACK_RATES if rates is None else rates
        self.monotonic = monotonic
        self.sleep = sleep
        self.max_attempts = max_attempts
        self._queues: dict[str, list[_Job]] = {}
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._workers: dict[str, asyncio.Task] = {}
        self._paused: dict[tuple[str, str], float] = {}  # 429: (channel, method) -> until
        self._wake: dict[str, asyncio.Event] = {}
        self._seq = itertools.count()
        self.rate_limited = 0  # 429s seen, for logs and the bench

    def send(
        self, channel: str, method: str, call: Callable[[], Awaitable[Any]], *, priority: int, key: Any = None
    ) -> asyncio.Future:
        """Queue `call` (one Slack request) and return a future of its answer. With `key`, a
        queued job with the same key takes the newer `call` instead (coalescing)."""
        queue = self._queues.setdefault(channel, [])
        if key is not None:
            for job in queue:
                if job.key == key:
                    job.call = call
                    return job.future
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(queue, _Job(priority, next(self._seq), method, call, future, key))
        self._wake.setdefault(channel, asyncio.Event()).set()
        worker = self._workers.get(channel)
        if worker is None or worker.done():
            self._workers[channel] = asyncio.create_task(self._run(channel), name=f"outbox {channel}")
        return future

    async def drain(self, channel: str) -> None:
        """Wait until everything queued for `channel` has been sent (or has failed)."""
        while self._queues.get(channel) or not self._idle(channel):
            worker = self._workers.get(channel)
            if worker is None:
                return
            await asyncio.shield(worker)

    def _idle(self, channel: str) -> bool:
        worker = self._workers.get(channel)
        return worker is None or worker.done()

    def _bucket(self, channel: str, method: str, now: float) -> TokenBucket | None:
        rate = self.rates.get(method)
        if rate is None:
            return None
        return self._buckets.setdefault((channel, method), TokenBucket(rate, now))

    async def _run(self, channel: str) -> None:
        queue = self._queues[channel]
        wake = self._wake[channel]
        while queue:
            wake.clear()
            job, wait = self._pick(channel, queue)
            if job is None:
                await self._nap(wait, wake)
                continue
            queue.remove(job)
            heapq.heapify(queue)
            await self._send(channel, job)

    def _pick(self, channel: str, queue: list[_Job]) -> tuple[_Job | None, float]:
        """The first job in priority order whose method may send now, else the shortest wait."""
        now = self.monotonic()
        shortest = float("inf")
        for job in sorted(queue):
            bucket = self._bucket(channel, job.method, now)
            wait = max(0.0, self._paused.get((channel, job.method), 0.0) - now)
            if bucket is not None:
                wait = max(wait, bucket.wait(now))
            if wait <= 0:
                if bucket is not None:
                    bucket.take()
                return job, 0.0
            shortest = min(shortest, wait)
        return None, shortest

    async def _nap(self, seconds: float, wake: asyncio.Event) -> None:
        """Sleep until a token is due, or until new work arrives (it may go first)."""
        nap = asyncio.ensure_future(self.sleep(seconds))
        woken = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait({nap, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            nap.cancel()
            woken.cancel()

    async def _send(self, channel: str, job: _Job) -> None:
        if job.future.done():  # its caller went away
            return
        try:
            answer = await job.call()
        except SlackApiError as exc:
            if _status(exc) == 429 and job.attempts + 1 < self.max_attempts:
                self.rate_limited += 1
                retry_after = _retry_after(exc)
                log.info("Slack paced %s in %s: retrying in %.0f s", job.method, channel, retry_after)
                until = self.monotonic() + retry_after
                self._paused[(channel, job.method)] = until
                bucket = self._bucket(channel, job.method, self.monotonic())
                if bucket is not None:
                    bucket.pause(until)
                job.attempts += 1
                heapq.heappush(self._queues[channel], job)  # same priority and seq: front of its line
                return
            job.future.set_exception(exc)
        except Exception as exc:  # noqa: BLE001 - handed to whoever awaits the send
            job.future.set_exception(exc)
        else:
            job.future.set_result(answer)


def _status(exc: SlackApiError) -> int | None:
    return getattr(exc.response, "status_code", None) if exc.response is not None else None


def _retry_after(exc: SlackApiError) -> float:
    headers = getattr(exc.response, "headers", None) or {}
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return max(0.0, float(value[0] if isinstance(value, list) else value))
            except (TypeError, ValueError):
                break
    return DEFAULT_RETRY_AFTER
