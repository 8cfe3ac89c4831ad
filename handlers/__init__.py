"""Slack listeners, one sub-package per feature, wired the same way from one table."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.context import AppContext
from handlers import drafts
from handlers.home import listeners as home
from handlers.incident import listeners as incident
from handlers.maintenance import listeners as maintenance

#: Each feature (`DraftKind.feature`) and the function wiring its listeners; what that
#: returns reopens and retries the feature's kept drafts.
FEATURES = {
    "incident": incident.register,
    "maintenance": maintenance.register,
}


def register(app: AsyncApp, ctx: AppContext) -> None:
    owners = {feature: wire(app, ctx) for feature, wire in FEATURES.items()}
    drafts.register(app, ctx, owners)
    home.register(app, ctx)  # the home tab: no drafts of its own
