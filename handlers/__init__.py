"""Slack listeners, one sub-package per feature; `register` wires them onto the Bolt app."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.context import AppContext


def register(app: AsyncApp, ctx: AppContext) -> None:
    from handlers import drafts
    from handlers.incident import listeners as incident
    from handlers.maintenance import listeners as maintenance

    owners: dict = {}
    incident.register(app, ctx, owners)
    maintenance.register(app, ctx, owners)
    drafts.register(app, ctx, owners)
