"""Slack listener for the home tab: someone opened it → read what is open → publish it."""

from __future__ import annotations

import logging

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError

from bot.clients.slack import slack_error
from bot.context import AppContext
from bot.errors import DatabaseBusy
from bot.services.home import HomeService
from handlers.errors import renders_errors
from handlers.home import views
from handlers.home.ids import HOME_TAB, Event
from handlers.payload import Interaction

log = logging.getLogger(__name__)

#: What the operator should do when Slack refuses the home view for a reason they can fix.
HINTS = {
    "not_enabled": "turn the Home tab on (manifest.yml: features.app_home.home_tab_enabled: true)",
}


class HomeHandlers:
    def __init__(self, ctx: AppContext, service: HomeService):
        self.ctx = ctx
        self.service = service

    async def opened(self, ack, it: Interaction) -> None:
        """Publish a fresh home view each time the Home tab is opened (the Messages tab
        sends the same event: nothing to do then). Bolt has acknowledged the event already."""
        if it.tab != HOME_TAB or not it.user_id:
            return
        try:
            view = views.home_view(await self.service.overview(links_for=views.MAX_WINDOWS_SHOWN, user_id=it.user_id))
        except DatabaseBusy as exc:  # the tab says so, instead of keeping a view that may be stale
            view = views.unavailable_view(str(exc), self.ctx.clock())
        try:
            await self.ctx.outbox.call("views.publish", lambda: self.ctx.sender.views_publish(user_id=it.user_id, view=view))
        except SlackApiError as exc:
            # Nobody asked for anything, so nobody is told: the tab keeps its last view.
            error = slack_error(exc)
            hint = HINTS.get(str(error))
            log.warning("Slack refused the home tab of %s (%s)%s", it.user_id, error, f": {hint}" if hint else "")


def register(app: AsyncApp, ctx: AppContext) -> HomeHandlers:
    handlers = HomeHandlers(ctx, HomeService(ctx))
    app.event(Event.HOME_OPENED.value)(renders_errors(ctx, handlers.opened))
    return handlers
