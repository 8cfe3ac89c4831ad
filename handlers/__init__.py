"""Slack listeners, one sub-package per feature, wired the same way from one table."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.context import AppContext
from handlers import drafts
from handlers.home import listeners as home
from handlers.incident import listeners as incident
from handlers.maintenance import listeners as maintenance
from handlers.payload import Interaction

#: Each feature (`DraftKind.feature`) and the function wiring its listeners; what that
#: returns reopens and retries the feature's kept drafts.
FEATURES = {
    "incident": incident.register,
    "maintenance": maintenance.register,
}


_OPENS_A_FORM = incident.OPENS_A_FORM | maintenance.OPENS_A_FORM | drafts.OPENS_A_FORM


def repeatable(it: Interaction) -> bool:
    """Whether a request cannot act twice, so the replay guard keeps no database key for it
    (`bot/inbound/replays.py`): every slash command answers the person or opens a form, a
    message shortcut opens one, and so do the buttons in `_OPENS_A_FORM`. A form's Submit
    and every other button act."""
    if it.type in ("command", "message_action"):
        return True
    return it.type == "block_actions" and it.action_id in _OPENS_A_FORM


def register(app: AsyncApp, ctx: AppContext) -> None:
    owners = {feature: wire(app, ctx) for feature, wire in FEATURES.items()}
    drafts.register(app, ctx, owners)
    home.register(app, ctx)  # the home tab: no drafts of its own
