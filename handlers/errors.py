"""The one place typed errors become something a person sees: an error inside the modal,
an ephemeral answer, or a reply in a thread."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.clients.slack import tell_user
from bot.context import AppContext
from bot.errors import (
    InputInvalid,
    SitrepError,
    SubmissionFailed,
    SubmissionUnknown,
    UpstreamError,
    UpstreamRejected,
    UpstreamUnauthorized,
    UpstreamWrongURL,
)
from bot.messages.format import button, escape, section, truncate
from handlers.draft_views import unknown_answer
from handlers.ids import DraftAction
from handlers.payload import Interaction

log = logging.getLogger(__name__)

Listener = Callable[..., Awaitable[None]]

MISCONFIGURED = (
    "sitrep is misconfigured: {service} refused its credentials. "
    "The operator has been told (it is in the bot's log); nothing you typed is lost."
)
WRONG_URL = (
    "sitrep is misconfigured: it cannot find {service} at the address it was given. "
    "The operator has been told (it is in the bot's log); nothing you typed is lost."
)


class TrackedAck:
    """Remembers whether Slack was already answered, so the error handler knows what it may do."""

    def __init__(self, ack: Callable[..., Awaitable[None]]):
        self._ack = ack
        self.done = False

    async def __call__(self, *args: Any, **kwargs: Any) -> None:
        if not self.done:
            self.done = True
            await self._ack(*args, **kwargs)


def failure_answer(err: SubmissionFailed) -> tuple[str, list[dict]]:
    """The upstream's Message verbatim, what was typed, and Retry / Edit."""
    cause = err.cause
    head = ":warning: That didn't go through. " + upstream_sentence(cause)
    retryable = not isinstance(cause, UpstreamRejected)
    head += "\n*Retry* sends it again; *Edit* reopens the form with what you typed." if retryable else (
        "\n*Edit* reopens the form with what you typed."
    )
    quoted = "\n".join("> " + escape(line) for line in truncate(err.summary, 2500).splitlines()) or "> (empty)"
    buttons = [button("Edit", DraftAction.EDIT, str(err.draft_id))]
    if retryable:
        buttons.insert(0, button("Retry", DraftAction.RETRY, str(err.draft_id), "primary"))
    blocks = [section(head), section(quoted), {"type": "actions", "elements": buttons}]
    return f"That didn't go through: {escape(cause.message)}", blocks


def _named(service: str) -> str:
    """`status page` reads as "the status page"; a product name (`AppFirst`) stays bare."""
    return f"the {service}" if service[:1].islower() else service


def upstream_sentence(exc: UpstreamError) -> str:
    """Rejections quote the upstream Message verbatim; the rest say what happened."""
    if isinstance(exc, UpstreamUnauthorized):
        log.error("%s refused the credentials (401): check the configuration", exc.service)
        return MISCONFIGURED.format(service=_named(exc.service))
    if isinstance(exc, UpstreamWrongURL):
        log.error("%s", exc)  # names the URL tried and the setting to fix
        return WRONG_URL.format(service=_named(exc.service))
    if isinstance(exc, UpstreamRejected):
        named = _named(exc.service)
        return f"{named[:1].upper()}{named[1:]} said “{escape(exc.message)}”"
    return escape(str(exc))


def plain_answer(exc: Exception) -> str:
    if isinstance(exc, UpstreamError):
        return ":warning: " + upstream_sentence(exc)
    if isinstance(exc, SlackApiError):
        error = exc.response.get("error") if exc.response is not None else "unknown"
        log.warning("Slack refused a call: %s", error)
        if error == "expired_trigger_id":
            return ":hourglass: Slack took too long to open the form. Please run the command again."
        return f":warning: Slack refused that (`{escape(str(error))}`). Please try again."
    if isinstance(exc, SitrepError):
        return f":information_source: {exc}"
    return ":warning: Something went wrong on our side; it has been logged. Please try again."


async def render_error(ctx: AppContext, exc: Exception, ack: TrackedAck, it: Interaction) -> None:
    if isinstance(exc, InputInvalid) and not ack.done and it.type == "view_submission":
        await ack(response_action="errors", errors=exc.errors)
        return
    if not isinstance(exc, (SitrepError, UpstreamError, SlackApiError)):
        log.exception("unexpected error in a listener", exc_info=exc)
    if isinstance(exc, SubmissionFailed):
        text, blocks = failure_answer(exc)
    elif isinstance(exc, SubmissionUnknown):
        text, blocks = unknown_answer(exc)
    else:
        text = plain_answer(exc)
        blocks = [section(text)]
    if not ack.done and it.is_command:
        await ack(text=text, blocks=blocks, response_type="ephemeral")
        return
    await ack()
    if it.user_id is None or it.type == "event":
        return  # an event (the home tab opened) asked nothing of anyone: the log has it
    try:
        await tell_user(ctx.slack, user_id=it.user_id, channel_id=it.channel_id, text=text, blocks=blocks)
    except SlackApiError as slack_error:
        log.error("could not tell %s about an error: %s", it.user_id, slack_error.response.get("error"))


def renders_errors(ctx: AppContext, fn: Listener) -> Listener:
    """Wrap a listener `(ack, it)` so the payload is parsed once (`Interaction`) and every
    error it raises is rendered in one place. Bolt passes arguments by name: `ack`, `body`."""

    async def listener(ack, body) -> None:
        tracked = TrackedAck(ack)
        it = Interaction.from_body(body)
        try:
            await fn(tracked, it)
        except Exception as exc:  # noqa: BLE001 - this is the one error handler
            await render_error(ctx, exc, tracked, it)

    listener.__name__ = getattr(fn, "__name__", "listener")
    return listener
