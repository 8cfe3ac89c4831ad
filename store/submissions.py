"""Keys of Slack requests already acted on (see `SeenSubmission`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import SeenSubmission


async def remember(session: AsyncSession, key: str, *, now: datetime) -> bool:
    """Record `key`; False when it was already there (a replay). Commits: the key must be
    visible to every other process before anyone acts on the request."""
    session.add(SeenSubmission(key=key, seen_at=now))
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        return False
    return True


async def forget(session: AsyncSession, key: str) -> None:
    """A request that was answered without acting (a form shown again with errors) may come again."""
    await session.execute(delete(SeenSubmission).where(SeenSubmission.key == key))
    await session.commit()


async def prune(session: AsyncSession, before: datetime) -> None:
    """Slack refuses a signature older than five minutes, so a day-old key guards nothing."""
    await session.execute(delete(SeenSubmission).where(SeenSubmission.seen_at < before))
    await session.commit()
