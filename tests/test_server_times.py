"""The rule for servers that keep other times than they are sent (bot.services.server_times),
and the store row that keeps what was learned."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bot.backends.base import BackendWindow
from bot.services.server_times import find_lost_write, offset_seen, to_send
from store.db import Database
from store.facts import get_fact, put_fact

T0 = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)
H = timedelta(hours=1)


@pytest.mark.parametrize(
    ("kept", "offset"),
    [
        ((T0 + 5 * H, T1 + 5 * H), 5 * H),  # the seed: 14:00 sent, 19:00 kept
        ((T0, T1), timedelta(0)),
        ((T0 - timedelta(hours=9, minutes=30), T1 - timedelta(hours=9, minutes=30)), -timedelta(hours=9, minutes=30)),
        ((T0 + 14 * H, T1 + 14 * H), 14 * H),
        ((T0 + 15 * H, T1 + 15 * H), None),  # no time zone is that far
        ((T0 + timedelta(minutes=7), T1 + timedelta(minutes=7)), None),  # not a zone: rounding, a bug
        ((T0 + 5 * H, T1 + 6 * H), None),  # start and end moved differently
        ((T0, None), None),
    ],
)
def test_offset_seen(kept, offset):
    assert offset_seen((T0, T1), kept) == offset


def test_offset_seen_compares_what_went_on_the_wire():
    assert offset_seen((T0 + timedelta(seconds=59), T1), (T0 + 5 * H, T1 + 5 * H)) == 5 * H


def test_to_send_moves_back_by_the_offset():
    assert to_send((T0, T1), 5 * H) == (T0 - 5 * H, T1 - 5 * H)


def window(upstream_id: str, shift: timedelta) -> BackendWindow:
    return BackendWindow(upstream_id, "r", T0 + shift, T1 + shift)


def test_find_lost_write_prefers_exact_then_the_known_offset_then_a_unique_other():
    exact, known, other = window("exact", timedelta(0)), window("known", 5 * H), window("other", 3 * H)
    assert find_lost_write([other, known, exact], (T0, T1), 5 * H) is exact
    assert find_lost_write([other, known], (T0, T1), 5 * H) is known
    assert find_lost_write([other], (T0, T1), 5 * H) is other
    assert find_lost_write([other, window("another", 2 * H)], (T0, T1), timedelta(0)) is None  # ambiguous
    assert find_lost_write([window("odd", timedelta(minutes=7))], (T0, T1), timedelta(0)) is None
    assert find_lost_write([], (T0, T1), timedelta(0)) is None


def test_put_fact_inserts_then_replaces(tmp_path):
    async def go():
        db = Database(f"sqlite:///{tmp_path / 'facts.db'}")
        await db.upgrade()
        try:
            async with db.session() as session, session.begin():
                await put_fact(session, "appfirst.offset", {"seconds": 18000}, now=T0)
            async with db.session() as session, session.begin():
                await put_fact(session, "appfirst.offset", {"seconds": 14400}, now=T1)
            async with db.session() as session:
                fact = await get_fact(session, "appfirst.offset")
                return fact.value, fact.updated_at, await get_fact(session, "missing")
        finally:
            await db.dispose()

    assert asyncio.run(go()) == ({"seconds": 14400}, T1, None)
