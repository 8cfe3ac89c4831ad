"""Virtual time for pacing tests that send many Slack calls at once.

The outbox decides *when* to send on its clock; the fake Slack meters each call on its clock
when the request arrives. On the machine's clock the two instants differ by however long the
request took to reach the fake, and on a loaded machine those delays vary: two calls sent 30 ms
apart may arrive 5 ms apart and the second is refused, though the outbox kept the pace (the
failure CI saw on `test_home_tab_views_and_permalinks_are_paced_per_workspace`).

`LockstepClock` is one clock for both, which moves only when nothing is in flight: every
watched Slack call has been answered and every task woken by the last move has run to its next
wait. Then it jumps to the earliest sleeper's due time. So each call reaches the fake at the
very instant the outbox chose, whatever the machine's load, and the tests' "no 429" is exact.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable
from typing import Any


class LockstepClock:
    """A monotonic clock (`monotonic`, `sleep`) for the outbox and the fake's meters."""

    #: Loop turns given to woken tasks before the next move: each reaches its next wait (a
    #: sleep, or a watched call that marks itself in flight) within one; the rest is margin.
    SETTLE = 5

    def __init__(self, start: float = 1000.0):
        self.now = start
        self._sleepers: list[tuple[float, int, asyncio.Future]] = []
        self._seq = itertools.count()
        self._in_flight = 0
        self._changed: asyncio.Event | None = None
        self._driver: asyncio.Task | None = None

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        woken = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._seq), woken))
        if self._driver is None or self._driver.done():
            self._driver = asyncio.get_running_loop().create_task(self._drive(), name="lockstep clock")
        await woken  # a cancelled sleep cancels `woken`: the driver skips it

    def watch(self, client: Any) -> None:
        """Count each of `client`'s Web API calls as in flight until it is answered (every
        slack_sdk method goes through `api_call`); once per client."""
        if getattr(client, "_lockstep", None) is not self:
            client.api_call = self.in_flight(client.api_call)
            client._lockstep = self

    def in_flight(self, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        """`call`, with the clock held still while it runs (a Slack call, a shared-pace booking)."""

        async def held(*args: Any, **kwargs: Any) -> Any:
            self._in_flight += 1
            try:
                return await call(*args, **kwargs)
            finally:
                self._in_flight -= 1
                if self._in_flight == 0 and self._changed is not None:
                    self._changed.set()

        return held

    async def _drive(self) -> None:
        self._changed = asyncio.Event()
        while self._sleepers:
            for _ in range(self.SETTLE):
                await asyncio.sleep(0)
            if self._in_flight:
                self._changed.clear()
                await self._changed.wait()
                continue
            due, _, woken = heapq.heappop(self._sleepers)
            if woken.done():
                continue
            self.now = max(self.now, due)
            woken.set_result(None)
