"""Claims on a window's or an incident's first announcement, like a reminder's: two replicas
(the horizon sync on one, a reminder on the other) or a process killed mid-post never leave
two parent messages. The claim is a fencing token on the window row, bumped by each claim, stamped on
the database's clock; the post is sent only while the token is still ours, and its `ts` is
stored only by the holder of the current token."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.dbclock import db_utc_now
from store.instances import live_ids
from store.models import Incident, MaintenanceWindow
from store.reminders import LONG_AGO, Claim
from store.states import ClaimResult

Announced = type[MaintenanceWindow] | type[Incident]


async def claim_announcement(
    session: AsyncSession,
    window_id: int,
    *,
    instance: str,
    stale_after: timedelta,
    live_since: datetime | None = None,
    W: Announced = MaintenanceWindow,
) -> Claim:
    """Take the first announcement of window (or incident, `W=Incident`) `window_id`: FRESH
    when nobody claimed it, STALE when the claim of a process now gone (older than
    `stale_after`, or with `live_since`: held by an instance with no heartbeat since) is
    taken over — that one may have posted — NONE when it is announced already or another
    process is announcing it."""
    row = (
        await session.execute(select(W.announce_token, W.announce_claimed_at, W.message_ts).where(W.id == window_id))
    ).one_or_none()
    if row is None or row.message_ts is not None:
        return Claim(ClaimResult.NONE, 0)
    token = row.announce_token + 1
    takeable = W.announce_claimed_at.is_(None) | (W.announce_claimed_at < db_utc_now(-stale_after))
    if live_since is not None:
        takeable = takeable | W.announce_claimed_by.not_in(live_ids(live_since))
    taken = await session.execute(
        update(W)
        .where(W.id == window_id, W.message_ts.is_(None), W.announce_token == row.announce_token, takeable)
        .values(announce_token=token, announce_claimed_by=instance, announce_claimed_at=db_utc_now())
    )
    if taken.rowcount != 1:
        return Claim(ClaimResult.NONE, token)
    return Claim(ClaimResult.FRESH if row.announce_claimed_at is None else ClaimResult.STALE, token)


def _ours(window_id: int, token: int, W: Announced = MaintenanceWindow):
    return (W.id == window_id) & (W.message_ts.is_(None)) & (W.announce_token == token)


async def confirm_announcement(session: AsyncSession, window_id: int, *, token: int, W: Announced = MaintenanceWindow) -> bool:
    """Just before the post: still ours (renewed on the database's clock)?"""
    done = await session.execute(update(W).where(_ours(window_id, token, W)).values(announce_claimed_at=db_utc_now()))
    return done.rowcount == 1


async def record_announcement(
    session: AsyncSession,
    window_id: int,
    *,
    token: int,
    channel_id: str,
    ts: str,
    W: Announced = MaintenanceWindow,
    **more,
) -> bool:
    """Store where the announcement is (and `more` columns), if the claim is still ours; the claim ends."""
    done = await session.execute(
        update(W)
        .where(_ours(window_id, token, W))
        .values(channel_id=channel_id, message_ts=ts, announce_claimed_by=None, announce_claimed_at=None, **more)
    )
    return done.rowcount == 1


async def release_announcement(
    session: AsyncSession, window_id: int, *, token: int, posted_maybe: bool, W: Announced = MaintenanceWindow
) -> None:
    """Give the claim back after a failed post: at once stale when the post may have reached
    Slack (the next claimant searches the channel first), else as if never claimed."""
    await session.execute(
        update(W)
        .where(_ours(window_id, token, W))
        .values(announce_claimed_by=None, announce_claimed_at=LONG_AGO if posted_maybe else None)
    )


def unannounced_by_gone(W: Announced, *, live_since: datetime, limit: int = 50):
    """Rows stored and claimed for their first announcement by an instance with no heartbeat
    since `live_since`, never announced: the process died between storing and posting."""
    return (
        select(W.id)
        .where(W.message_ts.is_(None), W.announce_claimed_by.is_not(None), W.announce_claimed_by.not_in(live_ids(live_since)))
        .order_by(W.id)
        .limit(limit)
    )
