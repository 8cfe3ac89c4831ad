"""Drafts: a person's submission kept until the upstream took it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Draft
from store.states import DraftState

SENDING, FAILED, DONE = DraftState.SENDING, DraftState.FAILED, DraftState.DONE


async def keep_draft(
    session: AsyncSession, *, kind: str, user_id: str, channel_id: str | None, payload: dict[str, Any], now: datetime
) -> Draft:
    """A new draft, already marked as being sent by the caller."""
    draft = Draft(
        kind=kind, user_id=user_id, channel_id=channel_id, payload=payload, state=SENDING, created_at=now, updated_at=now
    )
    session.add(draft)
    await session.flush()
    return draft


async def get_draft(session: AsyncSession, draft_id: int) -> Draft | None:
    return await session.get(Draft, draft_id)


async def claim_for_retry(session: AsyncSession, draft_id: int, *, now: datetime, stuck_before: datetime) -> bool:
    """Only a failed draft can be sent again, and only by one click at a time; a send
    that never finished (the process died) counts as failed once it is old enough."""
    claimed = await session.execute(
        update(Draft)
        .where(
            Draft.id == draft_id,
            or_(Draft.state == FAILED, (Draft.state == SENDING) & (Draft.updated_at < stuck_before)),
        )
        .values(state=SENDING, updated_at=now)
    )
    return claimed.rowcount == 1


async def record_attempt(session: AsyncSession, draft_id: int, *, error: str | None, now: datetime) -> None:
    draft = await session.get(Draft, draft_id)
    if draft is not None:
        draft.attempts += 1
        draft.state = FAILED if error else DONE
        draft.error = error
        draft.updated_at = now


async def count_by_state(session: AsyncSession) -> dict[str, int]:
    """How many drafts are in each state (for the metrics scrape)."""
    rows = await session.execute(select(Draft.state, func.count()).group_by(Draft.state))
    return {state: count for state, count in rows.all()}
