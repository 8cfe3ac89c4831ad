"""Drafts: a person's submission kept until the upstream took it."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.instances import live_ids
from store.models import Draft
from store.states import DraftState

SENDING, FAILED, DONE, UNKNOWN = DraftState.SENDING, DraftState.FAILED, DraftState.DONE, DraftState.UNKNOWN


async def keep_draft(
    session: AsyncSession,
    *,
    kind: str,
    user_id: str,
    channel_id: str | None,
    payload: dict[str, Any],
    now: datetime,
    sent_by: str | None = None,
    submission_key: str | None = None,
) -> Draft:
    """A new draft, already marked as being sent by the caller (instance `sent_by`)."""
    draft = Draft(
        kind=kind,
        user_id=user_id,
        channel_id=channel_id,
        payload=payload,
        state=SENDING,
        created_at=now,
        updated_at=now,
        sent_by=sent_by,
        submission_key=submission_key,
    )
    session.add(draft)
    await session.flush()
    return draft


async def get_draft(session: AsyncSession, draft_id: int) -> Draft | None:
    return await session.get(Draft, draft_id)


async def being_sent(session: AsyncSession, kind: str, *, besides: int | None = None) -> list[Draft]:
    """Drafts of `kind` some process is sending now (a few at most: one per Submit in flight)."""
    query = select(Draft).where(Draft.kind == kind, Draft.state == SENDING, Draft.sent_by.is_not(None))
    if besides is not None:
        query = query.where(Draft.id != besides)
    return list((await session.scalars(query)).all())


async def claim_for_retry(
    session: AsyncSession,
    draft_id: int,
    *,
    now: datetime,
    sent_by: str | None = None,
    states: Collection[DraftState] = (FAILED,),
) -> bool:
    """Only a draft in one of `states` can be sent again, and only by one click at a time
    (compare-and-set). A send that never finished is not among them: the heartbeat
    recovery turns it into "unknown" once its sender is gone."""
    claimed = await session.execute(
        update(Draft)
        .where(Draft.id == draft_id, Draft.state.in_([DraftState(s).value for s in states]))
        .values(state=SENDING, updated_at=now, sent_by=sent_by)
    )
    return claimed.rowcount == 1


async def unclaim(session: AsyncSession, draft_id: int, *, state: DraftState, sent_by: str | None, now: datetime) -> bool:
    """Undo `claim_for_retry` by `sent_by` (whose caller gave up waiting for it): the draft is
    in `state` again, nothing sent, its attempts unchanged."""
    put_back = await session.execute(
        update(Draft)
        .where(Draft.id == draft_id, Draft.state == SENDING, Draft.sent_by == sent_by)
        .values(state=DraftState(state).value, updated_at=now, sent_by=None)
    )
    return put_back.rowcount == 1


async def record_attempt(
    session: AsyncSession, draft_id: int, *, error: str | None, now: datetime, state: DraftState | None = None
) -> None:
    """The end of one send: done, failed (`error`), or `state` when given (unknown)."""
    draft = await session.get(Draft, draft_id)
    if draft is not None:
        draft.attempts += 1
        draft.state = state or (FAILED if error else DONE)
        draft.error = error
        draft.updated_at = now
        draft.sent_by = None


async def release(session: AsyncSession, draft_id: int, *, now: datetime) -> None:
    """Nobody is sending it any more, and nobody knows how the send ended (this process
    was stopped mid-call): the recovery makes it "unknown" and tells the person."""
    await session.execute(update(Draft).where(Draft.id == draft_id, Draft.state == SENDING).values(sent_by=None, updated_at=now))


async def orphaned(session: AsyncSession, *, live_since: datetime, limit: int = 100) -> list[Draft]:
    """Drafts left "sending" by an instance with no heartbeat since `live_since`, or by none."""
    rows = await session.execute(
        select(Draft)
        .where(Draft.state == SENDING, or_(Draft.sent_by.is_(None), Draft.sent_by.not_in(live_ids(live_since))))
        .order_by(Draft.id)
        .limit(limit)
    )
    return list(rows.scalars())


async def mark_unknown(session: AsyncSession, draft: Draft, *, now: datetime) -> bool:
    """Compare-and-set: only the instance that moves it from the same "sending" tells the person."""
    moved = await session.execute(
        update(Draft)
        .where(Draft.id == draft.id, Draft.state == SENDING, _same_sender(draft.sent_by))
        .values(state=UNKNOWN, updated_at=now, sent_by=None, error="the process sending it stopped mid-call")
    )
    return moved.rowcount == 1


async def take_over(session: AsyncSession, draft: Draft, *, instance: str, now: datetime) -> bool:
    """Compare-and-set: the recovering instance becomes the draft's sender while it tells
    the person (still "sending"), so dying mid-notice leaves it to the next recovery, and
    exactly one replica takes it."""
    moved = await session.execute(
        update(Draft)
        .where(Draft.id == draft.id, Draft.state == SENDING, _same_sender(draft.sent_by))
        .values(sent_by=instance, updated_at=now)
    )
    return moved.rowcount == 1


async def mark_done_recovered(session: AsyncSession, draft: Draft, *, now: datetime) -> bool:
    """Compare-and-set, like `mark_unknown`, for a draft whose send is known to have been
    stored (its incident or window names it): done, and only the winner tells the person."""
    moved = await session.execute(
        update(Draft)
        .where(Draft.id == draft.id, Draft.state == SENDING, _same_sender(draft.sent_by))
        .values(state=DONE, updated_at=now, sent_by=None, attempts=Draft.attempts + 1, error=None)
    )
    return moved.rowcount == 1


def _same_sender(sent_by: str | None):
    return Draft.sent_by.is_(None) if sent_by is None else Draft.sent_by == sent_by


async def count_by_state(session: AsyncSession) -> dict[str, int]:
    """How many drafts are in each state (for the metrics scrape)."""
    rows = await session.execute(select(Draft.state, func.count()).group_by(Draft.state))
    return {state: count for state, count in rows.all()}
