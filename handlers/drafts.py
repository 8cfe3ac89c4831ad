"""The buttons on a kept submission, for every feature (the draft's kind says whose it is):
Retry and Edit after a failure; Check and retry, Create anyway and It exists: link it (with
its modal) after an unknown outcome."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.clients.slack import tell_user
from bot.context import AppContext
from bot.errors import NotFound, SubmissionUnknown
from bot.services.drafts import draft_kind
from bot.services.outcomes import Outcome
from handlers.draft_views import unknown_answer
from handlers.errors import renders_errors
from handlers.ids import DraftAction, DraftCallback
from handlers.opening import open_form
from handlers.payload import Interaction

#: Edit and It exists: link it only open a form (see `handlers.incident.listeners.OPENS_A_FORM`).
OPENS_A_FORM = frozenset({DraftAction.EDIT, DraftAction.LINK})


def unknown_notifier(ctx: AppContext):
    """How the crash recovery tells a person: the outcome-unknown answer with its choices,
    ephemeral in the channel they submitted from, else a direct message."""

    async def notify(err: SubmissionUnknown, user_id: str, channel_id: str | None) -> None:
        text, blocks = unknown_answer(err, recovered=True)
        await tell_user(
            ctx.slack, user_id=user_id, channel_id=channel_id, text=text, blocks=blocks, sandbox=ctx.settings.sitrep_sandbox
        )

    return notify


def done_notifier(ctx: AppContext, owners: Mapping[str, Any]):
    """How the crash recovery tells a person a submission went through: the feature's own
    answer for it (with the outcome's note), ephemeral where they submitted, else a DM."""

    async def notify(outcome: Outcome, user_id: str, channel_id: str | None) -> None:
        owner = owners.get(outcome.kind.feature)
        if owner is None:
            return
        text, blocks = owner.done_answer(outcome)
        await tell_user(
            ctx.slack, user_id=user_id, channel_id=channel_id, text=text, blocks=blocks, sandbox=ctx.settings.sitrep_sandbox
        )

    return notify


def register(app: AsyncApp, ctx: AppContext, owners: Mapping[str, Any]) -> None:
    """`owners` maps a feature (`DraftKind.feature`: `incident`) to its draft handlers."""

    async def owner_of(it: Interaction):
        value = it.action_value
        kind = await draft_kind(ctx, int(value)) if value.isdigit() else None
        if kind is not None and kind.feature in owners:
            return int(value), owners[kind.feature]
        raise NotFound("That submission is no longer kept.")

    async def send_kept(ack, it: Interaction) -> None:
        """Retry, Check and retry, Create anyway: the button's action ID says which."""
        await ack()
        draft_id, handlers = await owner_of(it)
        await handlers.send_kept(DraftAction(it.action_id), draft_id, it)

    async def edit(ack, it: Interaction) -> None:
        async def draft_view() -> dict:
            draft_id, handlers = await owner_of(it)
            return await handlers.draft_view(draft_id, it)

        await open_form(ctx, ack, it, draft_view(), title="Edit what you typed")

    async def link(ack, it: Interaction) -> None:
        async def link_view() -> dict:
            draft_id, handlers = await owner_of(it)
            return await handlers.link_view(draft_id, it)

        await open_form(ctx, ack, it, link_view(), title="It exists: link it")

    async def submit_link(ack, it: Interaction) -> None:
        draft = it.metadata.get("draft")
        kind = await draft_kind(ctx, draft) if isinstance(draft, int) else None
        if kind is None or kind.feature not in owners:
            raise NotFound("That submission is no longer kept.")
        await owners[kind.feature].submit_link(ack, draft, it)

    for action in (DraftAction.RETRY, DraftAction.CHECK, DraftAction.ANYWAY):
        app.action(action)(renders_errors(ctx, send_kept))
    app.action(DraftAction.EDIT)(renders_errors(ctx, edit))
    app.action(DraftAction.LINK)(renders_errors(ctx, link))
    app.view(DraftCallback.LINK)(renders_errors(ctx, submit_link))
    ctx.notify_unknown.connect(unknown_notifier(ctx))
    ctx.notify_done.connect(done_notifier(ctx, owners))
