"""Drafts: a person's submission kept until the upstream took it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Draft


async def keep_draft(
    session: AsyncSession, *, kind: str, user_id: str, channel_id: str | None, payload: dict[str, Any], now: datetime
) -> Draft:
    draft = Draft(kind=kind, user_id=user_id, channel_id=channel_id, payload=payload, created_at=now, updated_at=now)
    session.add(draft)
    await session.flush()
    return draft


async def get_draft(session: AsyncSession, draft_id: int) -> Draft | None:
    return await session.get(Draft, draft_id)


def mark_attempt(draft: Draft, *, error: str | None, now: datetime) -> None:
    draft.attempts += 1
    draft.state = "failed" if error else "done"
    draft.error = error
    draft.updated_at = now
