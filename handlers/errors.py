"""The one place typed errors become something a person sees: an error inside the modal,
an ephemeral answer, or a reply in a thread."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.clients.slack import slack_error, tell_user
from bot.context import ACK_DEADLINE, AppContext
from bot.errors import (
    DatabaseBusy,
    InputInvalid,
    NotStored,
    Replayed,
    SitrepError,
    SubmissionFailed,
    SubmissionUnknown,
    UpstreamError,
    UpstreamRejected,
    UpstreamUnauthorized,
    UpstreamWrongURL,
)
from bot.inbound.answered import ANSWER_WAIT_SECONDS, start_listener, until_acked
from bot.messages.format import MAX_SECTION_TEXT, button, escape, section, split_markup, truncate
from handlers.draft_views import unknown_answer
from handlers.ids import DraftAction
from handlers.payload import INTERACTION, Interaction, typed_summary
from store.db import is_store_failure, store_reason

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


# Slack shows the person an error when a request is not acked within 3 seconds. The work a
# listener does before its ack is reading the database; if that has not answered by the
# request's `ACK_DEADLINE`, the person is told the database is busy instead. A listener gets
# at least this long, even when the replay guard used the whole budget.
MIN_ACK_WAIT = 0.3


class TrackedAck:
    """Remembers whether Slack was already answered, so the error handler knows what it may do."""

    def __init__(self, ack: Callable[..., Awaitable[None]]):
        self._ack = ack
        self.done = False

    async def __call__(self, *args: Any, **kwargs: Any) -> None:
        if not self.done:
            self.done = True
            await self._ack(*args, **kwargs)


# The words for a kept submission's kind in "I could not keep your …".
_KIND_WORDS = {
    "incident.declare": "incident declaration",
    "incident.update": "incident update",
    "incident.resolve": "resolution",
    "maintenance.schedule": "maintenance window",
    "maintenance.edit": "change to the maintenance window",
    "maintenance.cancel": "cancellation",
}
_MAX_QUOTE_BLOCKS = 45  # of Slack's 50 blocks a message may carry


def quoted_sections(text: str) -> list[dict]:
    """What the person typed, escaped and quoted, whole: as many sections as it takes (it is
    kept nowhere else, so nothing of it may be cut)."""
    limit = MAX_SECTION_TEXT - 10
    # Every piece of every line quoted on its own, so a block boundary never ends a quote.
    lines = ["> " + piece for line in text.splitlines() for piece in split_markup(escape(line), limit) or [""]]
    chunks: list[str] = []
    for line in lines or ["> (empty)"]:
        if chunks and len(chunks[-1]) + 1 + len(line) <= limit:
            chunks[-1] += "\n" + line
        else:
            chunks.append(line)
    return [section(chunk) for chunk in chunks[:_MAX_QUOTE_BLOCKS]]


def not_stored_answer(err: NotStored) -> tuple[str, list[dict]]:
    """A submission the database would not keep: why, whether it went anywhere, and what was typed."""
    what = _KIND_WORDS.get(str(err.kind), "submission")
    if err.sent:
        head = (
            f":warning: While I was sending your {what}, {escape(err.reason)}, so I could not record the outcome. "
            "It may have gone through: check before you send it again. What you typed:"
        )
    else:
        head = (
            f":warning: I could not keep your {what}: {escape(err.reason)}. Nothing was sent. "
            "Here is what you typed, to send again in a minute (whoever runs sitrep has been told):"
        )
    return f"I could not keep your {what}: {escape(err.reason)}", [section(head), *quoted_sections(err.summary)]


def busy_answer(exc: DatabaseBusy, it: Interaction) -> tuple[str, list[dict]]:
    """The database did not answer before Slack's deadline; a submitted form's values come back."""
    text = f":hourglass: {exc}"
    blocks = [section(text)]
    typed = typed_summary(it.values) if it.type == "view_submission" else ""
    if typed:
        blocks = [section(text + " Here is what you typed:"), *quoted_sections(typed)]
    return text, blocks


def failure_answer(err: SubmissionFailed) -> tuple[str, list[dict]]:
    """The upstream's Message verbatim, what was typed, and Retry / Edit."""
    cause = err.cause
    head = ":warning: That didn't go through. " + upstream_sentence(cause)
    retryable = not isinstance(cause, UpstreamRejected)
    head += (
        "\n*Retry* sends it again; *Edit* reopens the form with what you typed."
        if retryable
        else ("\n*Edit* reopens the form with what you typed.")
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
        error = slack_error(exc)
        log.warning("Slack refused a call: %s", error)
        if error == "expired_trigger_id":
            return ":hourglass: Slack took too long to open the form. Please run the command again."
        return f":warning: Slack refused that (`{escape(str(error))}`). Please try again."
    if isinstance(exc, SitrepError):
        return f":information_source: {exc}"
    return ":warning: Something went wrong on our side; it has been logged. Please try again."


def error_answer(exc: Exception, it: Interaction) -> tuple[str, list[dict]]:
    """What the person reads about `exc` (and the operator's log line, when it is theirs)."""
    if is_store_failure(exc):
        # The database failing is no bug in sitrep: one line for the operator, its reason for
        # the person, no traceback (an outage would write one per request).
        reason = store_reason(exc)
        log.warning(
            "the database failed under a Slack request (%s %s): %s", it.type, it.action_id or it.event_type or it.text, reason
        )
        exc = DatabaseBusy.failed(reason)  # a form's values come back with it (`busy_answer`)
    elif not isinstance(exc, (SitrepError, UpstreamError, SlackApiError)):
        log.exception("unexpected error in a listener", exc_info=exc)
    if isinstance(exc, SubmissionFailed):
        return failure_answer(exc)
    if isinstance(exc, SubmissionUnknown):
        return unknown_answer(exc)
    if isinstance(exc, NotStored):
        return not_stored_answer(exc)
    if isinstance(exc, DatabaseBusy):
        return busy_answer(exc, it)
    text = plain_answer(exc)
    return text, [section(text)]


async def render_error(ctx: AppContext, exc: Exception, ack: TrackedAck, it: Interaction) -> None:
    if isinstance(exc, Replayed):
        await ack()  # an earlier delivery of this Submit acts on it: a plain ack, nothing said
        return
    if isinstance(exc, InputInvalid) and not ack.done and it.type == "view_submission":
        await ack(response_action="errors", errors=exc.errors)
        return
    if isinstance(exc, SlackApiError) and slack_error(exc) == "exchanged_trigger_id":
        # Slack spends a trigger once: an earlier delivery of this very request (a retry, or a
        # replay another replica took) opened the form already. The person has it: say nothing.
        log.info("the form was opened already by an earlier delivery of this request")
        await ack()
        return
    text, blocks = error_answer(exc, it)
    if not ack.done and it.is_command:
        await ack(text=text, blocks=blocks, response_type="ephemeral")
        return
    if not ack.done and it.type == "block_suggestion":
        await ack(options=[])
        return
    await ack()
    if it.user_id is None or it.type == "event":
        return  # an event (the home tab opened) asked nothing of anyone: the log has it
    try:
        await tell_user(
            ctx.slack, user_id=it.user_id, channel_id=it.channel_id, text=text, blocks=blocks, sandbox=ctx.settings.sitrep_sandbox
        )
    except SlackApiError as exc:
        log.error("could not tell %s about an error: %s", it.user_id, slack_error(exc))


async def _rendering_errors(ctx: AppContext, fn: Listener, tracked: TrackedAck, it: Interaction) -> None:
    try:
        await fn(tracked, it)
    except Exception as exc:  # noqa: BLE001 - this is the one error handler
        await render_error(ctx, exc, tracked, it)


def _stop_stuck(work: asyncio.Task, wait: float, it: Interaction) -> None:
    if work.done():
        return
    told = "" if it.type == "event" else "; told the person it is busy"
    log.warning("the database did not answer within %.1f s of a Slack request%s", wait, told)
    work.cancel()


def renders_errors(ctx: AppContext, fn: Listener) -> Listener:
    """Wrap a listener `(ack, it)` so it reads the request's `Interaction` (parsed once, by
    the first middleware), every error it raises is rendered in one place, Slack has its
    answer the moment the listener acks (its body runs in a task of its own that goes on
    after the answer, bot/inbound/answered.py), and Slack has an ack by the request's
    `ACK_DEADLINE` whatever the database does. Bolt passes arguments by name: `ack`,
    `context`."""

    async def listener(ack, context) -> None:
        tracked = TrackedAck(ack)
        it: Interaction = context[INTERACTION]
        work = start_listener(_rendering_errors(ctx, fn, tracked, it))
        deadline = context.get(ACK_DEADLINE)
        loop = asyncio.get_running_loop()
        wait = ANSWER_WAIT_SECONDS if deadline is None else max(deadline - loop.time(), MIN_ACK_WAIT)
        if it.type == "event":
            # Bolt acks an event itself as soon as this returns. A body still waiting on the
            # database at the deadline is stopped all the same: it holds a connection.
            loop.call_later(wait, _stop_stuck, work, wait, it)
            return
        await until_acked(work, wait)
        if tracked.done or work.done():
            # Acked (or acking: a form's key being written first, itself bounded by the
            # deadline), or ended without an ack (Bolt then answers 404: said here too).
            if not work.done():
                await until_acked(work, max(ANSWER_WAIT_SECONDS - wait, MIN_ACK_WAIT))
            if not tracked.done:
                log.warning("a listener (%s %s) ended without answering Slack", *it.what)
            return
        # Nothing answered Slack yet, and all a listener does before its ack is read the
        # store: it is stuck on the database. Stop it (nothing was changed yet) and say so, in
        # a task of its own: the answer (its ack) must not wait for the Slack call after it.
        _stop_stuck(work, wait, it)
        telling = start_listener(render_error(ctx, DatabaseBusy(), tracked, it))
        await until_acked(telling, max(ANSWER_WAIT_SECONDS - wait, MIN_ACK_WAIT))

    listener.__name__ = getattr(fn, "__name__", "listener")
    return listener
