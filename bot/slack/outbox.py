"""One outbound queue per channel, paced ahead of Slack's rate limits, each in its scope.

Slack limits `chat.postMessage` to about one message per second *per channel* (its special
tier, short bursts allowed); every other method's tier (`chat.update` Tier 3, about 50 a
minute; `views.publish` Tier 4) is per app *per workspace*, whatever the channel. Sending as
fast as work arrives hits those limits and every 429 then stalls whatever waits behind it.
Here each channel has one queue, sent in `Priority` order, each method metered by its own
token bucket in the scope Slack counts it over (the channel's bucket for `chat.postMessage`, one
bucket for the whole workspace otherwise: edits of an incident's two channels draw on one),
so a 429 is the exception; a 429 pauses only that bucket for its Retry-After, and the call
goes back to the front of its queue (never a sleep that holds other work). Reads,
permalinks and home views (`Outbox.call`) are paced by the same buckets but not queued: each
waits for its token and goes, as a post being built may need one.

Edits of one parent that are still queued are coalesced: the newest message replaces the
queued one, so a burst of changes becomes one `chat.update` carrying the latest state.

A long Retry-After never holds other work: the channel and method pause for at most
`PAUSE_CAP` seconds; only the call that was refused waits its whole Retry-After, and a call
sent with `hand_back=True` (a claimed reminder) is not kept through a longer one but fails
at once with `RateLimited`, so its owner can give the claim back with a "not before" instead of holding
it through the wait (where another replica would take it over and post it twice).

Across replicas the buckets alone would be per process, and two replicas posting in one
channel could together exceed its rate. With `reserve` (wired to the database by
`bot.context`), each send first books its slot in a limiter every replica shares, and waits
for it: replicas together keep the channel's pace. A database that does not answer within
`RESERVE_TIMEOUT` leaves the local buckets alone in charge, so posts never stop for it.
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

from bot.errors import RateLimited

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


#: The bucket key of a workspace-wide limit; no Slack ID contains "*".
WORKSPACE = "*"
#: The methods Slack limits per channel (chat.postMessage's special tier); every tier is per
#: app and workspace, whichever channel a call names.
PER_CHANNEL = frozenset({"chat.postMessage"})


@dataclass(frozen=True)
class Rate:
    """A token bucket: `per_second` sustained, `burst` at once (over the channel for a method
    in `PER_CHANNEL`, over the workspace for any other)."""

    per_second: float
    burst: int


#: Slack's documented limits (each method's `rate_limits` in its document), kept just under:
#: chat.postMessage ~1/s per channel with short bursts (special tier); Tier 3 (50+/min) and
#: Tier 4 (100+/min) per workspace. assumption: chat.getPermalink's document gives the special
#: tier with no number; it is paced as Tier 4, per workspace.
TIER_2, TIER_3, TIER_4 = 20 / 60, 50 / 60, 100 / 60
SLACK_RATES: dict[str, Rate] = {
    "conversations.canvases.create": Rate(per_second=TIER_2, burst=4),
    "canvases.edit": Rate(per_second=TIER_3, burst=8),
    "conversations.info": Rate(per_second=TIER_3, burst=8),
    "users.info": Rate(per_second=TIER_4, burst=8),
    "chat.postMessage": Rate(per_second=1.0, burst=4),
    "chat.update": Rate(per_second=TIER_3, burst=8),
    "conversations.history": Rate(per_second=TIER_3, burst=8),
    "conversations.replies": Rate(per_second=TIER_3, burst=8),
    "users.conversations": Rate(per_second=TIER_3, burst=8),
    "conversations.members": Rate(per_second=TIER_4, burst=8),
    "views.publish": Rate(per_second=TIER_4, burst=8),
    "chat.getPermalink": Rate(per_second=TIER_4, burst=8),
    # Not in ../shared/slack: Slack's method pages give both file-upload steps Tier 4 (the
    # fake meters them so too, `EXTRA_METHOD_TIERS`).
    "files.getUploadURLExternal": Rate(per_second=TIER_4, burst=8),
    "files.completeUploadExternal": Rate(per_second=TIER_4, burst=8),
}


def scaled_rates(speedup: float) -> dict[str, Rate]:
    """Slack's limits `speedup` times faster (the `SITREP_TEST_SPEEDUP` test hook)."""
    return {method: Rate(rate.per_second * speedup, rate.burst) for method, rate in SLACK_RATES.items()}


DEFAULT_RETRY_AFTER = 1.0
MAX_ATTEMPTS = 5
PAUSE_CAP = 2.0
"""Longest a 429 pauses a whole channel and method; a longer Retry-After is waited out by
the refused call alone (or handed back to its owner)."""


RESERVE_TIMEOUT = 2.0
#: Books a send slot shared with other replicas: (bucket key: a channel or `WORKSPACE`, method,
#: rate) → seconds to wait.
Reserve = Callable[[str, str, "Rate"], Awaitable[float]]


class TokenBucket:
    """Our copy of Slack's bucket for one channel and method, counting only the calls Slack
    took (a refused call posted nothing, so its token comes back).

    A 429 with Retry-After R is Slack's statement that its bucket has a token again in R
    seconds. It does not say why: Slack's load (the token we count is really there) or our
    pace (Slack's bucket is behind ours: another sender, a restart). So after the pause the
    first call goes on Slack's word, and anything more in that burst is a *bet* on load:
    `promised` is the bucket Slack's statement alone vouches for (one token at the end of the
    pause), and a call sent while it is under one token is a bet. A bet Slack takes clears
    the doubt; two bets lost running mean the pace is ours, and the bucket restarts from what
    Slack promised. Random 429s so cost only their pause (the tokens accrued meanwhile go in
    a burst after it), and a sender behind Slack's bucket settles after a few.

    A restart also halves our pace (`share`, down to `MIN_SHARE` of the rate), which then
    grows back by `MIN_SHARE` with each call Slack takes: a Slack that keeps us slower than
    the documented rate for a while (its own load, a degraded workspace) is met at its pace
    within a few restarts instead of refusing a call every time our bucket runs ahead."""

    LOST_BETS = 2
    MIN_SHARE = 1 / 16

    def __init__(self, rate: Rate, now: float):
        self.rate = rate
        self.tokens = float(rate.burst)
        self.updated = now
        self.paused_until = 0.0
        self.promised: float | None = None  # None: no 429 in doubt
        self.lost_bets = 0
        self.betting = False  # the call in flight went beyond Slack's promise
        self.share = 1.0  # of `rate`: halved by each restart, grown back by each call taken

    @property
    def per_second(self) -> float:
        return self.rate.per_second * self.share

    def wait(self, now: float) -> float:
        """Seconds until one token is available (0: send now)."""
        gained = (now - self.updated) * self.per_second
        self.tokens = min(self.rate.burst, self.tokens + gained)
        if self.promised is not None:
            self.promised = min(self.rate.burst, self.promised + gained)
            if self.promised >= self.tokens:  # Slack's word covers all we count: no doubt left
                self.promised, self.lost_bets = None, 0
        self.updated = now
        if now < self.paused_until:
            return self.paused_until - now
        missing = 1 - self.tokens
        return 0.0 if missing <= 1e-9 else missing / self.per_second  # not a rounding error's nap

    def take(self) -> None:
        self.tokens -= 1
        self.betting = self.promised is not None and self.promised < 1
        if self.promised is not None:
            self.promised -= 1

    def taken(self) -> None:
        """Slack took the call: a bet won means the last 429 was Slack's load."""
        if self.betting:
            self.promised, self.lost_bets = None, 0
        self.betting = False
        self.share = min(1.0, self.share * (1 + self.MIN_SHARE))

    def refused(self, pause: float, retry_after: float) -> None:
        """A 429: nothing of this method until `pause` seconds from the last `wait` (the
        Retry-After, capped). The refused call's token comes back; Slack promises one token
        when its Retry-After ends, not when our capped pause does: a call sent between the two
        is a bet too."""
        self.paused_until = max(self.paused_until, self.updated + pause)
        self.tokens = min(float(self.rate.burst), self.tokens + 1)
        if self.betting:
            self.lost_bets += 1
        self.betting = False
        restart = self.lost_bets >= self.LOST_BETS  # our pace, not Slack's load
        if restart:
            self.share, self.lost_bets = max(self.MIN_SHARE, self.share / 2), 0
        self.promised = min(self.tokens, 1 - max(pause, retry_after) * self.per_second)
        if restart:
            self.tokens = self.promised


@dataclass(order=True)
class _Job:
    priority: int
    seq: int
    method: str = field(compare=False)
    call: Callable[[], Awaitable[Any]] = field(compare=False)
    future: asyncio.Future = field(compare=False)
    key: Any = field(compare=False, default=None)
    attempts: int = field(compare=False, default=0)
    hand_back: bool = field(compare=False, default=False)
    not_before: float = field(compare=False, default=0.0)  # its own Retry-After, on `monotonic`


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
        pause_cap: float = PAUSE_CAP,
        reserve: Reserve | None = None,
        on_rate_limited: Callable[[str, float], None] | None = None,
    ):
        self.rates = SLACK_RATES if rates is None else rates
        self.monotonic = monotonic
        self.sleep = sleep
        self.max_attempts = max_attempts
        self.pause_cap = pause_cap
        self.reserve = reserve
        self._queues: dict[str, list[_Job]] = {}
        self._buckets: dict[tuple[str, str], TokenBucket] = {}  # (`_where`, method)
        self._workers: dict[str, asyncio.Task] = {}
        self._paused: dict[tuple[str, str], float] = {}  # 429: (`_where`, method) -> until
        self._wake: dict[str, asyncio.Event] = {}
        self._seq = itertools.count()
        self.rate_limited = 0  # 429s seen, for logs and the bench
        # Told of each 429 (method, seconds the method is paused for): the wiring counts it in
        # /metrics next to the 429s slack_sdk sleeps through on the other clients.
        self.on_rate_limited = on_rate_limited

    def send(
        self,
        channel: str,
        method: str,
        call: Callable[[], Awaitable[Any]],
        *,
        priority: int,
        key: Any = None,
        hand_back: bool = False,
    ) -> asyncio.Future:
        """Queue `call` (one Slack request) and return a future of its answer. With `key`, a
        queued job with the same key takes the newer `call` instead (coalescing). With
        `hand_back`, a 429 whose Retry-After exceeds `pause_cap` (or the last attempt's)
        fails the future with `RateLimited` instead of waiting."""
        queue = self._queues.setdefault(channel, [])
        if key is not None:
            for job in queue:
                if job.key == key:
                    job.call = call
                    return job.future
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(queue, _Job(priority, next(self._seq), method, call, future, key, hand_back=hand_back))
        self._wake.setdefault(channel, asyncio.Event()).set()
        worker = self._workers.get(channel)
        if worker is None or worker.done():
            self._workers[channel] = asyncio.create_task(self._run(channel), name=f"outbox {channel}")
        return future

    async def call(self, method: str, call: Callable[[], Awaitable[Any]], *, channel: str = WORKSPACE) -> Any:
        """One paced request that is not a post (a read, a permalink, a home view), sent by
        its caller as soon as its method's bucket (in `channel`'s scope) has a token, not
        queued behind the channel's posts: a post's message may be built while its turn has
        come (a digest reading permalinks), and a queued read would wait for that post, which
        waits for it. A 429 pauses the bucket as for a post, and the call is sent again after
        its Retry-After, up to `max_attempts` times."""
        attempts = 0
        while True:
            await self._token(channel, method)
            await self._shared_slot(channel, method)
            try:
                answer = await call()
            except SlackApiError as exc:
                if _status(exc) != 429 or attempts + 1 >= self.max_attempts:
                    raise
                retry_after = self._refused(channel, method, exc)
                log.info("Slack paced %s in %s: retrying in %.0f s", method, channel, retry_after)
                attempts += 1
                await self.sleep(retry_after)
                continue
            bucket = self._buckets.get(self._where(channel, method))
            if bucket is not None:
                bucket.taken()
            return answer

    async def _token(self, channel: str, method: str) -> None:
        """Wait until `method`'s bucket in `channel`'s scope has a token (and no 429 pause), and take it."""
        while True:
            now = self.monotonic()
            bucket = self._bucket(channel, method, now)
            wait = max(0.0, self._paused.get(self._where(channel, method), 0.0) - now)
            if bucket is not None:
                wait = max(wait, bucket.wait(now))
            if wait <= 0:
                if bucket is not None:
                    bucket.take()
                return
            await self.sleep(wait)

    async def drain(self, channel: str) -> None:
        """Wait until everything queued for `channel` has been sent (or has failed)."""
        while self._queues.get(channel) or not self._idle(channel):
            worker = self._workers.get(channel)
            if worker is None:
                return
            await asyncio.shield(worker)

    def ready(self, channel: str, method: str) -> int | None:
        """How many sends of `method` could go to `channel` now without waiting (None:
        unmetered), so work is not taken in hand far ahead of its turn."""
        if method not in self.rates:
            return None
        now = self.monotonic()
        bucket = self._bucket(channel, method, now)
        if bucket.wait(now) > 0 or self._paused.get(self._where(channel, method), 0.0) > now:
            return 0
        return int(bucket.tokens)

    def _idle(self, channel: str) -> bool:
        worker = self._workers.get(channel)
        return worker is None or worker.done()

    def _where(self, channel: str, method: str) -> tuple[str, str]:
        """The key of the bucket (and 429 pause) a send of `method` in `channel` draws on: the
        channel's own for a per-channel limit, the workspace's otherwise (unmetered ones too)."""
        return (channel if method in PER_CHANNEL else WORKSPACE), method

    def _bucket(self, channel: str, method: str, now: float) -> TokenBucket | None:
        rate = self.rates.get(method)
        if rate is None:
            return None
        return self._buckets.setdefault(self._where(channel, method), TokenBucket(rate, now))

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
            if job.not_before > now:  # waiting out its own Retry-After; the others go on
                shortest = min(shortest, job.not_before - now)
                continue
            bucket = self._bucket(channel, job.method, now)
            wait = max(0.0, self._paused.get(self._where(channel, job.method), 0.0) - now)
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
        await self._shared_slot(channel, job.method)
        try:
            answer = await job.call()
        except SlackApiError as exc:
            if _status(exc) == 429:
                retry_after = self._refused(channel, job.method, exc)
                now = self.monotonic()
                if job.hand_back and (retry_after > self.pause_cap or job.attempts + 1 >= self.max_attempts):
                    log.info("Slack paced %s in %s: handed back, not before %.0f s", job.method, channel, retry_after)
                    job.future.set_exception(RateLimited(job.method, retry_after))
                    return
                if job.attempts + 1 < self.max_attempts:
                    log.info("Slack paced %s in %s: retrying in %.0f s", job.method, channel, retry_after)
                    job.attempts += 1
                    job.not_before = now + retry_after
                    heapq.heappush(self._queues[channel], job)  # same priority and seq: front of its line
                    return
            job.future.set_exception(exc)
        except Exception as exc:  # noqa: BLE001 - handed to whoever awaits the send
            job.future.set_exception(exc)
        else:
            bucket = self._buckets.get(self._where(channel, job.method))
            if bucket is not None:
                bucket.taken()
            job.future.set_result(answer)

    def _refused(self, channel: str, method: str, exc: SlackApiError) -> float:
        """Count a 429 and pause its bucket (for at most `pause_cap`); its Retry-After."""
        self.rate_limited += 1
        retry_after = _retry_after(exc)
        if self.on_rate_limited is not None:
            self.on_rate_limited(method, retry_after)
        now = self.monotonic()
        pause = min(retry_after, self.pause_cap)
        where = self._where(channel, method)
        self._paused[where] = max(self._paused.get(where, 0.0), now + pause)
        bucket = self._bucket(channel, method, now)
        if bucket is not None:
            bucket.wait(now)  # brought up to now, so the pause counts from the answer
            bucket.refused(pause, retry_after)
        return retry_after

    async def _shared_slot(self, channel: str, method: str) -> None:
        """Wait for this send's slot in the pace shared with other replicas (in the method's
        scope: the channel's, or the workspace's), if any."""
        rate = self.rates.get(method)
        if self.reserve is None or rate is None:
            return
        try:
            wait = await asyncio.wait_for(self.reserve(self._where(channel, method)[0], method, rate), RESERVE_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - a sick database must not stop posts
            log.warning("shared pacing unavailable (%s); pacing %s in %s locally", type(exc).__name__, method, channel)
            return
        if wait > 0:
            await self.sleep(wait)


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
