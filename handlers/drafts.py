"""Retry and Edit on a kept submission, for every feature: the draft's kind says whose it is."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.context import AppContext
from bot.errors import NotFound
from bot.services.drafts import draft_kind
from handlers import payload
from handlers.errors import renders_errors
from handlers.ids import DraftAction


def register(app: AsyncApp, ctx: AppContext, owners: dict) -> None:
    """`owners` maps a draft-kind prefix (`incident.`) to the feature's handlers."""

    async def owner_of(body: dict):
        value = payload.action_value(body)
        kind = await draft_kind(ctx, int(value)) if value.isdigit() else None
        for prefix, handlers in owners.items():
            if kind is not None and kind.startswith(prefix):
                return int(value), handlers
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
