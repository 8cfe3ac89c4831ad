"""Retry and Edit on a kept submission, for every feature: the draft's kind says whose it is."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.context import AppContext
from bot.errors import NotFound
from bot.services.drafts import draft_kind
from handlers.errors import renders_errors
from handlers.ids import DraftAction
from handlers.payload import Interaction


def register(app: AsyncApp, ctx: AppContext, owners: Mapping[str, Any]) -> None:
    """`owners` maps a feature (`DraftKind.feature`: `incident`) to its draft handlers."""

    async def owner_of(it: Interaction):
        value = it.action_value
        kind = await draft_kind(ctx, int(value)) if value.isdigit() else None
        if kind is not None and kind.feature in owners:
            return int(value), owners[kind.feature]
        raise NotFound("That submission is no longer kept.")

    async def retry(ack, it: Interaction) -> None:
        await ack()
        draft_id, handlers = await owner_of(it)
        await handlers.retry_draft(draft_id, it)

    async def edit(ack, it: Interaction) -> None:
        draft_id, handlers = await owner_of(it)
        await handlers.reopen_draft(ack, draft_id, it)

    app.action(DraftAction.RETRY)(renders_errors(ctx, retry))
    app.action(DraftAction.EDIT)(renders_errors(ctx, edit))
