"""Heartbeats of the running sitrep processes, on the database's clock.

Every instance refreshes its row every few seconds; one whose row is older than a few
beats (or gone: a clean stop deletes it) is gone, and the drafts it was sending are left to
the others to settle. Times come from the database (`db_now`), never a host: two hosts'
clocks may disagree by more than a beat."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from store.models import Instance, UTCDateTime


class utc_now(FunctionElement):  # noqa: N801 - an SQL function, named like one
    """The database's current time in UTC (`CURRENT_TIMESTAMP` is UTC on SQLite; on
    PostgreSQL `now()` is converted from the session's zone)."""

    type = UTCDateTime()
    inherit_cache = True


@compiles(utc_now)
def _utc_now_default(_element, _compiler, **_kw) -> str:
    return "CURRENT_TIMESTAMP"


@compiles(utc_now, "postgresql")
def _utc_now_postgresql(_element, _compiler, **_kw) -> str:
    return "(now() AT TIME ZONE 'utc')"


async def db_now(session: AsyncSession) -> datetime:
    """The database's clock, as an aware UTC datetime."""
    return (await session.execute(select(utc_now()))).scalar_one()


async def beat(session: AsyncSession, instance_id: str) -> None:
    """Say this instance is alive now (creating its row on the first beat)."""
    refreshed = await session.execute(update(Instance).where(Instance.id == instance_id).values(heartbeat_at=utc_now()))
    if refreshed.rowcount == 0:
        now = await db_now(session)
        session.add(Instance(id=instance_id, started_at=now, heartbeat_at=now))
        await session.flush()


async def forget(session: AsyncSession, instance_id: str) -> None:
    """A clean stop: whatever this instance still had in hand is for the others now."""
    await session.execute(delete(Instance).where(Instance.id == instance_id))


#: Beats an instance may miss before it counts as gone (one late beat is not a death).
HEARTBEAT_MISSES = 3


def gone_after(heartbeat_seconds: float) -> timedelta:
    """How long without a beat before an instance counts as gone."""
    return timedelta(seconds=heartbeat_seconds * HEARTBEAT_MISSES)


async def live_cutoff(session: AsyncSession, stale_after: timedelta) -> datetime:
    """Heartbeats older than this (database clock) belong to instances that are gone."""
    return await db_now(session) - stale_after


async def prune(session: AsyncSession, older_than: timedelta) -> None:
    """Rows of instances long gone guard nothing."""
    cutoff = await db_now(session) - older_than
    await session.execute(delete(Instance).where(Instance.heartbeat_at < cutoff))


def live_ids(cutoff: datetime):
    """The ids of instances with a heartbeat since `cutoff` (a subquery)."""
    return select(Instance.id).where(Instance.heartbeat_at >= cutoff)
