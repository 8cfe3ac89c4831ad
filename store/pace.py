"""Send slots per channel (or per workspace: `bot.slack.outbox.WORKSPACE`) and method, shared by
every replica through the database (see `ChannelPace`): "no replica sends faster because another
exists"."""

from __future__ import annotations

from sqlalchemy import Float, case, literal, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.dbclock import db_epoch_now
from store.models import ChannelPace


async def reserve_slot(
    session: AsyncSession, channel: str, method: str, *, interval: float, burst: int, now: float | None = None
) -> float:
    """Take the next send slot of `method` in `channel` (a channel ID, or "*" for a limit over
    the whole workspace); returns the seconds to wait before
    sending (0: now). A generic cell-rate limiter: one send per `interval` seconds on
    average, up to `burst` at once after a quiet spell; one atomic update per send. Slots are on
    the database's clock, which every replica shares; `now` (epoch seconds) replaces it where a
    test drives the outbox's time."""
    insert = _upsert_for(session.get_bind().dialect.name)
    await session.execute(insert(ChannelPace).values(channel=channel, method=method, next_slot=0.0).on_conflict_do_nothing())
    now = db_epoch_now() if now is None else literal(now, Float)
    start = case((ChannelPace.next_slot > now, ChannelPace.next_slot), else_=now)
    row = (
        await session.execute(
            update(ChannelPace)
            .where(ChannelPace.channel == channel, ChannelPace.method == method)
            .values(next_slot=start + interval)
            .returning(ChannelPace.next_slot, now)
        )
    ).one()
    next_slot, at = row
    tolerance = (burst - 1) * interval  # how far ahead of now a burst may book
    return max(0.0, next_slot - interval - tolerance - at)


def _upsert_for(dialect: str):
    """The dialect's own INSERT (the one with ON CONFLICT DO NOTHING)."""
    if dialect == "postgresql":
        # Loaded when used: the PostgreSQL dialect is a tenth of a SQLite process's start-up.
        from sqlalchemy.dialects.postgresql import insert  # noqa: PLC0415 - loaded when used (start-up cost)

        return insert
    from sqlalchemy.dialects.sqlite import insert  # noqa: PLC0415 - (same reason; loaded anyway by a SQLite engine)

    return insert
