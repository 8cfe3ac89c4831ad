"""Retry and Edit on a kept submission, for every feature: the draft's kind says whose it is."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slack_bolt.async_app import AsyncApp

import handlers.payload as payload
from bot.context import AppContext
from bot.errors import NotFound
from bot.services.drafts import draft_kind
from handlers.errors import renders_errors
from handlers.ids import DraftAction
from store.states import DraftKind


def register(app: AsyncApp, ctx: AppContext, owners: Mapping[str, Any]) -> None:
    """`owners` maps a feature (`DraftKind.feature`: `incident`) to its draft handlers."""

    async def owner_of(body: dict):
        value = payload.action_value(body)
        kind = await draft_kind(ctx, int(value)) if value.isdigit() else None
        if kind in {k.value for k in DraftKind} and DraftKind(kind).feature in owners:
            return int(value), owners[DraftKind(kind).feature]
        raise NotFound("That submission is no longer kept.")

    async def retry(ack, body: dict) -> None:
        await ack()
        draft_id, handlers = await owner_of(body)
        await handlers.retry_draft(draft_id, body)

    async def edit(ack, body: dict) -> None:
        draft_id, handlers = await owner_of(body)
        await handlers.reopen_draft(ack, draft_id, body)

    app.action(DraftAction.RETRY)(renders_errors(ctx, retry))
    app.action(DraftAction.EDIT)(renders_errors(ctx, edit))
