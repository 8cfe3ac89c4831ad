"""A form that shows what the store holds (the incident to preselect, the window to edit, a
kept draft) opens before any read that may wait: Slack's trigger works once and for 3 s.

The read gets `AppContext.read_before_open` (`READ_BEFORE_OPEN`, 0.25 s). Answered by then, the form opens whole, and a refusal (no
such incident, several open) is the command's answer, as for any command. Not answered, Slack
has its ack, a modal saying the form is being read opens with the trigger, and the form (or
why it cannot be shown) replaces it by `views.update` once the read is done."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from slack_sdk.errors import SlackApiError

from bot.clients.slack import slack_error
from bot.context import AppContext
from bot.messages.format import plain, section
from handlers.errors import error_answer
from handlers.payload import Interaction

log = logging.getLogger(__name__)


def notice_modal(title: str, blocks: list[dict]) -> dict:
    """A modal with nothing to submit: the form being read, or why it cannot open."""
    return {"type": "modal", "title": plain(title, 24), "close": plain("Close", 24), "blocks": blocks}


async def open_form(ctx: AppContext, ack, it: Interaction, form: Awaitable[dict], *, title: str) -> None:
    """Open the modal `form` builds (it reads the store), with `it`'s trigger, within the
    trigger's life whatever the database does (see the module's docstring)."""
    reading = asyncio.ensure_future(form)
    try:
        await asyncio.wait({reading}, timeout=ctx.read_before_open)
        if reading.done():
            view = reading.result()  # a refusal raised here is the command's answer
            await ack()
            await ctx.slack.views_open(trigger_id=it.trigger_id, view=view)
            return
        await ack()
        opened = await ctx.slack.views_open(
            trigger_id=it.trigger_id, view=notice_modal(title, [section(":hourglass: One moment: reading what sitrep has…")])
        )
        try:
            view = await reading
        except Exception as exc:  # noqa: BLE001 - said inside the modal the person is looking at
            view = notice_modal(title, error_answer(exc, it)[1])
        try:
            await ctx.slack.views_update(view_id=opened["view"]["id"], hash=opened["view"]["hash"], view=view)
        except SlackApiError as exc:  # closed or changed meanwhile: nobody waits for it
            log.info("could not fill a form opened before its read: %s", slack_error(exc))
    finally:
        reading.cancel()  # nothing to read for any more (a no-op once done)
