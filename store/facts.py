"""Small facts about the upstreams, one row per key (see `UpstreamFact`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import UpstreamFact


def synced_key(backend: str) -> str:
    """The fact whose `updated_at` is when a sync with `backend` last got its list (a sync's
    only way to fail), by any replica."""
    return f"{backend}.synced"


async def get_fact(session: AsyncSession, key: str) -> UpstreamFact | None:
    return await session.get(UpstreamFact, key)


async def put_fact(session: AsyncSession, key: str, value: dict[str, Any], *, now: datetime) -> None:
    """Insert or replace; portable across SQLite and PostgreSQL, and safe when two
    processes write the same key at once (the last write wins)."""
    query = update(UpstreamFact).where(UpstreamFact.key == key).values(value=value, updated_at=now)
    if (await session.execute(query)).rowcount == 1:
        return
    try:
        async with session.begin_nested():
            session.add(UpstreamFact(key=key, value=value, updated_at=now))
    except IntegrityError:
        await session.execute(query)
