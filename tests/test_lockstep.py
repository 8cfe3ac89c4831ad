"""The pacing tests' virtual clock: it moves only to the earliest sleeper, and never while a
watched call is in flight (the instant a call is metered is the instant it was sent)."""

from __future__ import annotations

import asyncio

from tests.support.lockstep import LockstepClock


def test_time_moves_to_each_sleeper_in_turn_and_never_while_a_call_is_in_flight():
    clock = LockstepClock(start=0.0)
    woke: list[tuple[str, float]] = []
    answered = asyncio.Event()

    async def slack_call() -> float:
        await answered.wait()  # however long the fake takes, on any machine
        return clock.monotonic()

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.monotonic()))

    async def main() -> None:
        call = asyncio.ensure_future(clock.in_flight(slack_call)())
        await asyncio.sleep(0)
        sleepers = [asyncio.ensure_future(sleeper("later", 2.0)), asyncio.ensure_future(sleeper("sooner", 0.5))]
        for _ in range(100):
            await asyncio.sleep(0)
        assert woke == [] and clock.monotonic() == 0.0  # held by the call in flight
        answered.set()
        assert await call == 0.0
        await asyncio.gather(*sleepers)
        assert woke == [("sooner", 0.5), ("later", 2.0)]

    asyncio.run(main())


def test_a_cancelled_sleep_is_passed_over():
    """The outbox cancels a nap when new work arrives: the sleeper after it still wakes on time."""
    clock = LockstepClock(start=0.0)

    async def main() -> None:
        nap = asyncio.ensure_future(clock.sleep(0.5))
        await asyncio.sleep(0)
        nap.cancel()
        await clock.sleep(1.0)
        assert clock.monotonic() == 1.0
        await clock.sleep(0.0)  # no wait at all
        assert clock.monotonic() == 1.0

    asyncio.run(main())
