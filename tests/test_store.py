"""The store itself on both databases: times come back as the same UTC instant, JSON as
written, and a claim is taken by exactly one of two sessions racing for it."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from store.db import Database
from store.facts import get_fact, put_fact
from store.models import MaintenanceWindow, Reminder
from store.reminders import claim, due, next_due_at, release
from store.states import ClaimResult

pytestmark = pytest.mark.both_databases

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
BERLIN = timezone(timedelta(hours=1))


def run(database_url, body):
    async def go():
        db = Database(database_url)
        await db.prepare()
        try:
            return await body(db)
        finally:
            await db.dispose()

    return asyncio.run(go())


async def a_window_with_reminders(db, *due_ats) -> list[int]:
    async with db.session() as session, session.begin():
        window = MaintenanceWindow(
            backend="appfirst", upstream_id="42", title="Ünïcode ✓", start=T0, end=T0 + timedelta(hours=1),
            servers=[1, 2], components=["API"], created_at=T0, updated_at=T0,
        )
        session.add(window)
        await session.flush()
        reminders = [Reminder(window_id=window.id, kind=f"k{i}", due_at=at) for i, at in enumerate(due_ats)]
        session.add_all(reminders)
        await session.flush()
        return [r.id for r in reminders]


def test_times_come_back_as_the_same_utc_instant_and_json_as_written(database_url):
    async def body(db):
        async with db.session() as session, session.begin():
            await put_fact(session, "k", {"nested": {"list": [1, "ü"]}, "none": None}, now=T0.astimezone(BERLIN))
        async with db.session() as session:
            fact = await get_fact(session, "k")
            return fact.value, fact.updated_at

    value, at = run(database_url, body)
    assert value == {"nested": {"list": [1, "ü"]}, "none": None}
    assert at == T0 and at.tzinfo == timezone.utc


def test_due_and_next_due_read_times_in_utc(database_url):
    async def body(db):
        await a_window_with_reminders(db, T0 + timedelta(minutes=5), T0 - timedelta(minutes=1))
        async with db.session() as session:
            return [r.kind for r in await due(session, T0, T0 - timedelta(minutes=10))], await next_due_at(session)

    kinds, next_at = run(database_url, body)
    assert kinds == ["k1"]
    assert next_at == T0 - timedelta(minutes=1) and next_at.tzinfo == timezone.utc


def test_next_due_includes_when_a_held_claim_goes_stale_but_not_a_released_one(database_url):
    """A replica killed holding a claim: the others wake when it goes stale, not at a sweep
    minutes later. A claim given back after a failed post waits for the sweep."""
    stale = timedelta(minutes=2)

    async def body(db):
        held, released, later = await a_window_with_reminders(
            db, T0, T0 + timedelta(minutes=1), T0 + timedelta(hours=1)
        )
        async with db.session() as session, session.begin():
            assert await claim(session, held, instance="dead", now=T0 + timedelta(seconds=30), stale_before=T0 - stale)
            assert await claim(session, released, instance="alive", now=T0, stale_before=T0 - stale)
            await release(session, released, instance="alive")
        async with db.session() as session:
            with_claims = await next_due_at(session, stale_claim=stale)
            pending_only = await next_due_at(session)
        return with_claims, pending_only

    with_claims, pending_only = run(database_url, body)
    assert with_claims == T0 + timedelta(seconds=30) + stale and with_claims.tzinfo == timezone.utc
    assert pending_only == T0 + timedelta(hours=1)


def test_of_five_sessions_racing_for_a_claim_exactly_one_wins(database_url):
    async def body(db):
        (reminder_id,) = await a_window_with_reminders(db, T0)

        async def take(instance):
            async with db.session() as session, session.begin():
                return await claim(session, reminder_id, instance=instance, now=T0, stale_before=T0 - timedelta(minutes=10))

        return await asyncio.gather(*(take(f"replica-{i}") for i in range(5)))

    outcomes = run(database_url, body)
    assert outcomes.count(ClaimResult.FRESH) == 1 and outcomes.count(ClaimResult.NONE) == 4, outcomes
