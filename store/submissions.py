"""Keys of Slack requests already acted on (see `SeenSubmission`). Their ages are stamped and
read on the database's clock: a step of a host's clock (NTP, a resumed VM) neither ages a key
early (a replay acted on again) nor keeps an abandoned one young."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from store.dbclock import db_utc_now
from store.models import Draft, SeenSubmission


def add(session: AsyncSession, key: str) -> None:
    """Record `key` in the caller's transaction (with the draft it keeps): its commit raises
    `IntegrityError` when the key was there already (a replay)."""
    session.add(SeenSubmission(key=key, seen_at=db_utc_now()))


async def remember(session: AsyncSession, key: str) -> bool:
    """Record `key`; False when it was already there (a replay). Commits: the key must be
    visible to every other process before anyone acts on the request."""
    add(session, key)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        return False
    return True


async def known(session: AsyncSession, key: str) -> bool:
    """Is `key` recorded (not forgotten meanwhile)?"""
    return await session.scalar(select(SeenSubmission.key).where(SeenSubmission.key == key)) is not None


async def kept_as_draft(session: AsyncSession, key: str) -> bool:
    """Did the request with `key` get as far as keeping its draft?"""
    return await session.scalar(select(Draft.id).where(Draft.submission_key == key).limit(1)) is not None


async def take_over(session: AsyncSession, key: str, *, older_than: timedelta) -> bool:
    """Compare-and-set on the key's age: of several presses acting on an abandoned key (one
    recorded `older_than` ago), exactly one wins, and the key is young again. Commits, like
    `remember`."""
    moved = await session.execute(
        update(SeenSubmission)
        .where(SeenSubmission.key == key, SeenSubmission.seen_at <= db_utc_now(-older_than))
        .values(seen_at=db_utc_now())
    )
    await session.commit()
    return moved.rowcount == 1


async def forget(session: AsyncSession, key: str) -> None:
    """A request that was answered without acting (a form shown again with errors) may come again."""
    await session.execute(delete(SeenSubmission).where(SeenSubmission.key == key))
    await session.commit()


async def prune(session: AsyncSession, older_than: timedelta) -> None:
    """Slack refuses a signature older than five minutes, so a day-old key guards nothing."""
    await session.execute(delete(SeenSubmission).where(SeenSubmission.seen_at < db_utc_now(-older_than)))
    await session.commit()
