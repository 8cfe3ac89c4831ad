"""The store itself on both databases: times come back as the same UTC instant, JSON as
written, and a claim is taken by exactly one of two sessions racing for it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select, text, update

from store import drafts as draft_store
from store import incidents as incident_store
from store.db import Database
from store.dbclock import db_utc_now
from store.facts import get_fact, put_fact
from store.models import Incident, MaintenanceWindow, Reminder
from store.reminders import (
    Outcome,
    claim,
    claim_pending,
    confirm,
    due,
    finish,
    finish_many,
    next_due_at,
    release,
    release_unattempted,
)
from store.states import ClaimResult, DraftState
from tests.support.dates import T0

pytestmark = pytest.mark.both_databases

BERLIN = timezone(timedelta(hours=1))


async def database_now(db: Database) -> datetime:
    """The database server's clock, in UTC: what claims are stamped with."""
    async with db.session() as session:
        return (await session.execute(select(db_utc_now()))).scalar_one()


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
            backend="appfirst",
            upstream_id="42",
            title="Ünïcode ✓",
            start=T0,
            end=T0 + timedelta(hours=1),
            servers=[1, 2],
            components=["API"],
            created_at=T0,
            updated_at=T0,
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
            return [r.kind for r in await due(session, T0, stale_after=timedelta(minutes=10))], await next_due_at(session)

    kinds, next_at = run(database_url, body)
    assert kinds == ["k1"]
    assert next_at == T0 - timedelta(minutes=1) and next_at.tzinfo == timezone.utc


def test_next_due_includes_when_a_held_claim_goes_stale_but_not_a_released_one(database_url):
    """A replica killed holding a claim: the others wake when it goes stale, not at a sweep
    minutes later. A claim given back after a failed post waits for the sweep. Claims are
    stamped on the database's clock, due times on the bot's. Both ends are read on the
    database's clock too: a PostgreSQL server's clock is not the test process's (which
    `faketime` may have moved)."""
    stale = timedelta(minutes=2)

    async def body(db):
        soon = await database_now(db) + timedelta(minutes=30)  # pending, later than the stale time
        held, released, later = await a_window_with_reminders(db, T0, T0 + timedelta(minutes=1), soon)
        async with db.session() as session:
            rows = {r.id: r for r in await due(session, T0 + timedelta(minutes=1), stale_after=stale)}
        before = await database_now(db)
        async with db.session() as session, session.begin():
            assert await claim(session, rows[held], instance="dead", stale_after=stale)
            taken = await claim(session, rows[released], instance="alive", stale_after=stale)
            await release(session, released, token=taken.token)
        after = await database_now(db)
        async with db.session() as session:
            with_claims = await next_due_at(session, stale_claim=stale)
            pending_only = await next_due_at(session)
        return soon, before, after, with_claims, pending_only

    soon, before, after, with_claims, pending_only = run(database_url, body)
    assert with_claims.tzinfo == timezone.utc
    assert before + stale <= with_claims <= after + stale
    assert abs(pending_only - soon) < timedelta(seconds=1)


def test_of_five_sessions_racing_for_a_claim_exactly_one_wins(database_url):
    async def body(db):
        (reminder_id,) = await a_window_with_reminders(db, T0)

        async with db.session() as session:
            (seen,) = await due(session, T0, stale_after=timedelta(minutes=10))

        async def take(instance):
            async with db.session() as session, session.begin():
                return (await claim(session, seen, instance=instance, stale_after=timedelta(minutes=10))).result

        return await asyncio.gather(*(take(f"replica-{i}") for i in range(5)))

    outcomes = run(database_url, body)
    assert outcomes.count(ClaimResult.FRESH) == 1 and outcomes.count(ClaimResult.NONE) == 4, outcomes


def test_claim_ages_are_read_on_the_database_clock_and_a_taken_over_claim_is_fenced(database_url):
    """The bot's clock (here a year ahead) never makes a fresh claim look stale; the
    database's does, whatever the server's time zone; the replaced claim can no longer
    confirm or finish."""

    async def body(db):
        (reminder_id,) = await a_window_with_reminders(db, T0)
        async with db.session() as session, session.begin():
            if session.get_bind().dialect.name == "postgresql":
                await session.execute(text("SET LOCAL TIME ZONE 'America/New_York'"))
            (seen,) = await due(session, T0, stale_after=timedelta(minutes=2))
            before = await database_now(db)
            first = await claim(session, seen, instance="a", stale_after=timedelta(minutes=2))
        after = await database_now(db)
        async with db.session() as session:
            claimed = await session.get(Reminder, reminder_id)
            a_year_on = await due(session, T0 + timedelta(days=365), stale_after=timedelta(minutes=2))
        async with db.session() as session, session.begin():  # three minutes pass on the database's clock
            await session.execute(update(Reminder).values(claimed_at=db_utc_now(-timedelta(minutes=3))))
        async with db.session() as session, session.begin():
            (stale,) = await due(session, T0, stale_after=timedelta(minutes=2))
            second = await claim(session, stale, instance="b", stale_after=timedelta(minutes=2))
        async with db.session() as session, session.begin():
            fenced = (
                await confirm(session, reminder_id, token=first.token),
                await finish(session, reminder_id, token=first.token, state="posted", now=T0),
            )
            won = await finish(session, reminder_id, token=second.token, state="posted", now=T0)
        return first, claimed.claimed_at, a_year_on, second, fenced, won, before, after

    first, claimed_at, a_year_on, second, fenced, won, before, after = run(database_url, body)
    assert first.result == ClaimResult.FRESH and first.token == 1
    assert claimed_at.tzinfo == timezone.utc
    assert before <= claimed_at <= after  # the database's now, in UTC
    assert a_year_on == []  # not stale: the bot's clock does not age claims
    assert (second.result, second.token) == (ClaimResult.STALE, 2)
    assert fenced == (False, False) and won is True


def test_a_reminder_moved_after_it_was_read_due_is_not_claimed(database_url):
    """A pass reads its due reminders once and may post them over minutes (Slack's pace);
    a window edited meanwhile moves its reminders (still pending, same token): the claim,
    made with the old due time, must fail, and the moved reminder waits for its new one."""

    async def body(db):
        (reminder_id,) = await a_window_with_reminders(db, T0)
        async with db.session() as session:
            (seen,) = await due(session, T0, stale_after=timedelta(minutes=2))
        async with db.session() as session, session.begin():  # the window moved an hour later
            await session.execute(update(Reminder).values(due_at=T0 + timedelta(hours=1)))
        async with db.session() as session, session.begin():
            stale_read = await claim(session, seen, instance="a", stale_after=timedelta(minutes=2))
        async with db.session() as session:
            now_due = await due(session, T0, stale_after=timedelta(minutes=2))
            later = await due(session, T0 + timedelta(hours=1), stale_after=timedelta(minutes=2))
        async with db.session() as session, session.begin():
            fresh_read = await claim(session, later[0], instance="a", stale_after=timedelta(minutes=2))
        return stale_read, now_due, [r.id for r in later], fresh_read

    stale_read, now_due, later, fresh_read = run(database_url, body)
    assert stale_read.result == ClaimResult.NONE
    assert now_due == [] and len(later) == 1
    assert fresh_read.result == ClaimResult.FRESH


def test_a_batch_claim_takes_only_what_is_still_pending_and_due(database_url):
    """The reminder path claims a run of due reminders in one statement: one claimed by
    another replica, one moved later by a window edit, one a 429 put off are all left alone."""

    async def body(db):
        ids = await a_window_with_reminders(db, T0, T0, T0, T0)
        async with db.session() as session:
            seen = await due(session, T0, stale_after=timedelta(minutes=2))
        async with db.session() as session, session.begin():
            await claim(session, seen[1], instance="other", stale_after=timedelta(minutes=2))
            await session.execute(update(Reminder).where(Reminder.id == ids[2]).values(due_at=T0 + timedelta(hours=1)))
            await session.execute(update(Reminder).where(Reminder.id == ids[3]).values(not_before=T0 + timedelta(seconds=30)))
        async with db.engine.begin() as conn:
            taken = await claim_pending(conn, ids, instance="me", now=T0)
        async with db.session() as session:
            rows = {r.id: r for r in (await session.execute(select(Reminder))).scalars()}
        return ids, taken, rows

    ids, taken, rows = run(database_url, body)
    assert taken == [(ids[0], 1, T0)]
    assert (rows[ids[0]].state, rows[ids[0]].claimed_by, rows[ids[0]].claim_token) == ("claimed", "me", 1)
    assert rows[ids[1]].claimed_by == "other"
    assert [rows[i].state for i in ids[2:]] == ["pending", "pending"]


def test_replicas_claiming_the_same_batch_at_once_take_each_reminder_exactly_once(database_url):
    async def body(db):
        ids = await a_window_with_reminders(db, *[T0] * 12)

        async def take(instance):
            async with db.engine.begin() as conn:
                return [reminder_id for reminder_id, _, _ in await claim_pending(conn, ids, instance=instance, now=T0)]

        return ids, await asyncio.gather(*(take(f"replica-{i}") for i in range(5)))

    ids, taken = run(database_url, body)
    everything = [reminder_id for claimed in taken for reminder_id in claimed]
    assert sorted(everything) == sorted(ids), taken  # all taken, none twice


def test_outcomes_recorded_together_each_keep_their_own_values_and_skip_a_claim_taken_over(database_url):
    """One statement records several claims (typed per row: PostgreSQL must be told each
    value's type); a claim taken over meanwhile is left to its new holder; a claim never
    attempted goes back to pending."""

    async def body(db):
        ids = await a_window_with_reminders(db, T0, T0, T0, T0)
        async with db.engine.begin() as conn:
            taken = {reminder_id: token for reminder_id, token, _ in await claim_pending(conn, ids, instance="me", now=T0)}
        async with db.session() as session, session.begin():  # ids[2] went stale and another replica took it
            await session.execute(update(Reminder).where(Reminder.id == ids[2]).values(claim_token=Reminder.claim_token + 1))
        outcomes = [
            Outcome(ids[0], taken[ids[0]], "posted", message_ts="111.1"),
            Outcome(ids[1], taken[ids[1]], "posted", message_ts="222.2", late=True),
            Outcome(ids[2], taken[ids[2]], "posted", message_ts="333.3"),
        ]
        async with db.engine.begin() as conn:
            mine = await finish_many(conn, outcomes, now=T0 + timedelta(minutes=1))
            await finish_many(conn, [Outcome(ids[3], taken[ids[3]], "skipped")], now=T0)
        async with db.engine.begin() as conn:
            await claim_pending(conn, ids, instance="me", now=T0)  # nothing left pending: claims nothing
            await release_unattempted(conn, [(ids[3], taken[ids[3]])])  # already recorded: not ours to give back
        async with db.session() as session:
            rows = {r.id: r for r in (await session.execute(select(Reminder))).scalars()}
        return ids, mine, rows

    ids, mine, rows = run(database_url, body)
    assert mine == {ids[0], ids[1]}
    first, second, taken_over, skipped = (rows[i] for i in ids)
    assert (first.state, first.message_ts, first.late, first.posted_at) == ("posted", "111.1", False, T0 + timedelta(minutes=1))
    assert (second.state, second.message_ts, second.late) == ("posted", "222.2", True)
    assert (taken_over.state, taken_over.message_ts) == ("claimed", None)
    assert (skipped.state, skipped.posted_at, skipped.message_ts) == ("skipped", None, None)


def test_claims_never_attempted_go_back_to_pending_at_once(database_url):
    async def body(db):
        ids = await a_window_with_reminders(db, T0, T0)
        async with db.engine.begin() as conn:
            taken = await claim_pending(conn, ids, instance="me", now=T0)
            await release_unattempted(conn, [(reminder_id, token) for reminder_id, token, _ in taken])
        async with db.session() as session:
            return [(r.state, r.claimed_by, r.claimed_at) for r in await due(session, T0, stale_after=timedelta(minutes=2))]

    assert run(database_url, body) == [("pending", None, None)] * 2


def test_the_database_clock_is_cached_per_offset_never_shared_between_offsets(database_url):
    """`db_utc_now` is cacheable (a claim's statement is compiled once), keyed on its offset:
    two offsets in statements otherwise alike must not reuse each other's SQL."""

    async def body(db):
        async with db.engine.connect() as conn:
            read = []
            for offset in (timedelta(0), timedelta(days=-1), timedelta(0), timedelta(days=-1)):
                result = await conn.execute(select(db_utc_now(offset)))
                read.append((result.scalar(), result.context.cache_hit.name))
            return read

    (now, first), (yesterday, _), (again, cached), (yesterday_again, cached_too) = run(database_url, body)
    assert timedelta(hours=23) < now - yesterday < timedelta(hours=25)
    assert timedelta(hours=23) < again - yesterday_again < timedelta(hours=25)
    assert first == "CACHE_MISS" and cached == "CACHE_HIT" and cached_too == "CACHE_HIT"


def test_a_sqlite_file_syncs_normal_under_wal_and_an_in_memory_one_keeps_full(tmp_path):
    async def pragmas(url):
        db = Database(url)
        try:
            async with db.engine.connect() as conn:
                journal = (await conn.execute(text("PRAGMA journal_mode"))).scalar()
                return journal, (await conn.execute(text("PRAGMA synchronous"))).scalar()
        finally:
            await db.dispose()

    assert asyncio.run(pragmas(f"sqlite:///{tmp_path}/file.db")) == ("wal", 1)  # NORMAL
    assert asyncio.run(pragmas("sqlite://")) == ("memory", 2)  # FULL: no WAL, no NORMAL


_COMMIT_THEN_SIGKILL = """
import asyncio, os, signal, sys
from sqlalchemy import text
from store.db import Database

async def main():
    db = Database(sys.argv[1])
    async with db.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (x INTEGER)"))
    async with db.engine.begin() as conn:
        await conn.execute(text("INSERT INTO t VALUES (42)"))
    os.kill(os.getpid(), signal.SIGKILL)  # no checkpoint, no clean close

asyncio.run(main())
"""


def test_a_commit_under_synchronous_normal_survives_the_process_being_killed(tmp_path):
    """What NORMAL gives up is only an OS crash or power loss; a process killed right after
    its commit (the bot's crash case) leaves the row in the WAL for the next process."""
    url = f"sqlite:///{tmp_path}/killed.db"
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", _COMMIT_THEN_SIGKILL, url], cwd=root, timeout=60, check=False)
    assert done.returncode == -9
    assert (tmp_path / "killed.db-wal").stat().st_size > 0  # the commit is in the WAL, not checkpointed

    async def read():
        db = Database(url)
        try:
            async with db.engine.connect() as conn:
                return (await conn.execute(text("SELECT x FROM t"))).scalars().all()
        finally:
            await db.dispose()

    assert asyncio.run(read()) == [42]


def test_where_open_incidents_were_announced_is_read_without_loading_them(database_url):
    same = {"status": "Investigating", "impact": "Major Outage", "declared_by": "U1", "declared_at": T0, "updated_at": T0}

    def incident(number: int, channel: str, room: str | None = None, resolved: bool = False) -> Incident:
        where = {"channel_id": channel, "room_channel_id": room, "resolved_at": T0 if resolved else None}
        return Incident(upstream_id=f"up-{number}", title=f"Incident {number}", **where, **same)

    async def body(db):
        async with db.session() as session, session.begin():
            session.add_all([incident(1, "C1"), incident(2, "C1", "C9"), incident(3, "C1", resolved=True), incident(4, "C2")])
        async with db.session() as session:
            places = await incident_store.open_places(session)
            loaded = await incident_store.open_by_ids(session, [2, 3, 4])
            none = await incident_store.open_by_ids(session, [])
        return places, [i.id for i in loaded], none

    places, loaded, none = run(database_url, body)
    assert places == [(4, "C2", None), (2, "C1", "C9"), (1, "C1", None)]  # newest first, the resolved left out
    assert loaded == [4, 2] and none == []


def test_a_claimed_draft_is_put_back_only_by_its_claimer_and_only_while_it_is_sending(database_url):
    """`unclaim` undoes a Retry's claim its caller gave up waiting for: the draft is in the
    state it was claimed from again, its attempts unchanged; a claim held by another
    instance, or a draft no longer sending, is left alone."""

    async def body(db):
        async with db.session() as session, session.begin():
            draft = await draft_store.keep_draft(
                session, kind="incident.declare", user_id="U1", channel_id="C1", payload={"title": "t"}, now=T0, sent_by="a"
            )
            await draft_store.record_attempt(session, draft.id, error="HTTP 500", now=T0)
        async with db.session() as session, session.begin():
            assert await draft_store.claim_for_retry(session, draft.id, now=T0, sent_by="b")
        async with db.session() as session, session.begin():
            assert not await draft_store.unclaim(session, draft.id, state=DraftState.FAILED, sent_by="a", now=T0)
            assert await draft_store.unclaim(session, draft.id, state=DraftState.FAILED, sent_by="b", now=T0)
            assert not await draft_store.unclaim(session, draft.id, state=DraftState.FAILED, sent_by="b", now=T0)
        async with db.session() as session:
            kept = await draft_store.get_draft(session, draft.id)
        return kept.state, kept.sent_by, kept.attempts, kept.error

    assert run(database_url, body) == ("failed", None, 1, "HTTP 500")
