"""A request Slack already sent us does nothing the second time.

A signed body can be replayed within its five minutes, and Slack sends a request again
(with ``X-Slack-Retry-Num``) when our answer did not reach it. Either would declare a
second incident. So before any listener acts, the request's key is inserted into
``seen_submissions``, whose primary key lets exactly one insert win, in this process or
any replica sharing the database; the loser is answered with a plain ack and nothing else.

The key of a form submission is its view id and hash (Slack's identity of that submit) plus
a digest of what was typed, so a form sent back with errors and corrected is a new key; the
key of a slash command or button click is its ``trigger_id``, which Slack makes per action
and repeats on a retry. A form answered with errors is forgotten again, so submitting the
same values once more shows the same errors rather than silently closing the modal.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.listener.async_listener_completion_handler import AsyncListenerCompletionHandler
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from sqlalchemy.exc import SQLAlchemyError

from bot.context import ACK_DEADLINE, AppContext
from store import submissions
from store.db import bounded

log = logging.getLogger(__name__)

KEY = "sitrep_submission_key"  # where the key waits on Bolt's request context
# Recording the key sits on the path to Slack's 3-second ack: a database that does not answer
# within this bound is not allowed to cost the person their request (it is acted on). Half
# the ack budget, so the listener's own reads keep the other half.
RECORD_TIMEOUT = 1.0


def submission_key(body: dict[str, Any]) -> str | None:
    """The identity of a request that acts, or None for one that only reads (options, a closed view)."""
    if body.get("type") == "view_submission":
        view = body.get("view") or {}
        values = json.dumps((view.get("state") or {}).get("values") or {}, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(values.encode()).hexdigest()[:32]
        return f"view:{view.get('id')}:{view.get('hash')}:{digest}"[:200]
    if ("command" in body or body.get("type") in ("block_actions", "message_action")) and body.get("trigger_id"):
        return f"trigger:{body['trigger_id']}"[:200]
    return None


def replay_guard(ctx: AppContext) -> Callable[..., Awaitable[BoltResponse | None]]:
    """A Bolt global middleware: record the request's key, or stop a replay with a plain ack."""

    async def guard(req: AsyncBoltRequest, resp: BoltResponse, next: Callable[[], Awaitable[None]]):
        key = submission_key(req.body if isinstance(req.body, dict) else {})
        if key is None:
            return await next()
        deadline = req.context.get(ACK_DEADLINE)
        bound = RECORD_TIMEOUT if deadline is None else min(RECORD_TIMEOUT, deadline - asyncio.get_running_loop().time())
        try:
            # Not `asyncio.wait_for`: it would wait for the cancelled insert's rollback, which
            # queues behind the lock it is waiting for (see `store.db.bounded`).
            first = await bounded(_remember(ctx, key), max(bound, 0.1))
        except (TimeoutError, SQLAlchemyError, OSError) as exc:
            log.warning("could not record a request's key (%s); acting on it unguarded", type(exc).__name__)
            return await next()
        if not first:
            retry = (req.headers.get("x-slack-retry-num") or [None])[0]
            log.info("ignored a request already acted on (%s)%s", key.split(":")[0], f", Slack retry {retry}" if retry else "")
            return BoltResponse(status=200, body="")
        req.context[KEY] = key
        return await next()

    return guard


async def _remember(ctx: AppContext, key: str) -> bool:
    async with ctx.db.session() as session:
        return await submissions.remember(session, key, now=ctx.clock())


class ForgetShownAgain(AsyncListenerCompletionHandler):
    """Bolt's hook after every listener: a form answered with errors was not acted on."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    async def handle(self, request: AsyncBoltRequest, response: BoltResponse | None) -> None:
        key = request.context.get(KEY)
        answer = request.context.ack.response if request.context.ack is not None else None
        if not key or not key.startswith("view:") or answer is None or '"errors"' not in (answer.body or ""):
            return
        try:
            async with self.ctx.db.session() as session:
                await submissions.forget(session, key)
        except SQLAlchemyError as exc:
            log.warning("could not forget a form shown again with errors (%s)", type(exc).__name__)

