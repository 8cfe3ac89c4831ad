"""Keys of Slack requests already acted on (see `SeenSubmission`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Draft, SeenSubmission


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


async def first_seen(session: AsyncSession, key: str) -> datetime | None:
    """When `key` was recorded; None when it is not (forgotten meanwhile)."""
    return await session.scalar(select(SeenSubmission.seen_at).where(SeenSubmission.key == key))


async def kept_as_draft(session: AsyncSession, key: str) -> bool:
    """Did the request with `key` get as far as keeping its draft?"""
    return await session.scalar(select(Draft.id).where(Draft.submission_key == key).limit(1)) is not None


async def take_over(session: AsyncSession, key: str, *, seen_at: datetime, now: datetime) -> bool:
    """Compare-and-set on when it was seen: of several presses acting on an abandoned key,
    exactly one wins. Commits, like `remember`."""
    moved = await session.execute(
        update(SeenSubmission).where(SeenSubmission.key == key, SeenSubmission.seen_at == seen_at).values(seen_at=now)
    )
    await session.commit()
    return moved.rowcount == 1


async def forget(session: AsyncSession, key: str) -> None:
    """A request that was answered without acting (a form shown again with errors) may come again."""
    await session.execute(delete(SeenSubmission).where(SeenSubmission.key == key))
    await session.commit()


async def prune(session: AsyncSession, before: datetime) -> None:
    """Slack refuses a signature older than five minutes, so a day-old key guards nothing."""
    await session.execute(delete(SeenSubmission).where(SeenSubmission.seen_at < before))
    await session.commit()
