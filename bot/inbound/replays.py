"""A request Slack already sent us does nothing the second time.

A signed body can be replayed within its five minutes, and Slack sends a request again
(with ``X-Slack-Retry-Num``) when our answer did not reach it. Either would declare a
second incident. So before a request acts, its key is inserted into ``seen_submissions``,
whose primary key lets exactly one insert win, in this process or any replica sharing the
database; the loser is answered with a plain ack and nothing else. A button that acts has its
key written before its listener runs. A form's Submit writes its key with its first write
(`FormKey`): in the transaction that keeps its draft, so the Submit writes once before
Slack's ack; until then its listener only reads and checks what was typed, which two
deliveries may both do.

The key of a form submission is its view id and hash (Slack's identity of that submit) plus
a digest of what was typed, so a form sent back with errors and corrected is a new key; the
key of a slash command or button click is its ``trigger_id``, which Slack makes per action
and repeats on a retry. A form answered with errors records no key, so submitting the same
values once more shows the same errors rather than silently closing the modal.

A form whose key is known but which never got as far as its draft was pressed again because
the first press died with its process (killed after recording the key, before Slack had the
ack: Slack showed an error and kept the modal open; a key written with its draft is never
left so, but one written at the ack is). Swallowing it would leave the person
with a closed modal and no answer, so once the first press is `TAKEOVER_AFTER` old and still
has no draft, one press (compare-and-set on the key's age) takes the key over and is acted on.
A live first press acks at once and keeps its draft within milliseconds, so a replay of a
submission that is being handled still finds the draft and is swallowed.

Keys' ages (this one, and the day after which a key is dropped) are stamped and compared on
the database's clock (`store.submissions`): a step of a host's clock (NTP, a resumed VM)
neither drops a key a replay would find nor keeps an abandoned one young.

Only a request that acts needs that write. One that cannot act twice — a slash command
(each answers the person or opens a form), a button or shortcut that opens a form — is
remembered in this process only (`RecentKeys`), so its ack waits on no database: a second
delivery to another replica answers the person again or asks Slack to open a form with a
trigger Slack already spent, which Slack refuses (`exchanged_trigger_id`) and nobody sees.
Which requests those are is the handlers' knowledge, passed in as `repeatable`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Protocol, TypeVar

from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from bot.context import ACK_DEADLINE, FORM_KEY, SUBMISSION_KEY, AppContext
from bot.errors import Replayed
from store import submissions
from store.db import bounded

log = logging.getLogger(__name__)

T = TypeVar("T")

# Recording the key sits on the path to Slack's 3-second ack: a database that does not answer
# within this bound is not allowed to cost the person their request (it is acted on). Half
# the ack budget, so the listener's own reads keep the other half.
RECORD_TIMEOUT = 1.0
# A known form key this old without a draft was abandoned by a process that died (see above).
TAKEOVER_AFTER = 1.0
# Keys older than this are dropped (`forget_old`).
FORGET_AFTER = timedelta(days=1)
# How often a press waiting for that age looks again.
TAKEOVER_POLL = 0.1
# How long, and how many, keys of requests that cannot act twice this process remembers: a
# signed body is accepted for five minutes (bot/inbound/edge.py), a Slack retry comes sooner.
RECENT_FOR = 10 * 60.0
RECENT_MAX = 50_000


class Parsed(Protocol):
    """What the guard reads of `handlers.payload.Interaction` (bot/inbound does not import handlers)."""

    type: str
    trigger_id: str | None
    view_id: str | None
    view_hash: str | None
    values: dict


def submission_key(body: dict[str, Any]) -> str | None:
    """The identity of a request that acts, or None for one that only reads (options, a closed view)."""
    kind = "command" if "command" in body else body.get("type")
    view = body.get("view") or {}
    return _key(kind, body.get("trigger_id"), view.get("id"), view.get("hash"), (view.get("state") or {}).get("values") or {})


def interaction_key(it: Parsed) -> str | None:
    """`submission_key` of the request the interaction was parsed from."""
    return _key(it.type, it.trigger_id, it.view_id, it.view_hash, it.values)


def _key(kind: str | None, trigger_id: str | None, view_id: str | None, view_hash: str | None, values: dict) -> str | None:
    if kind == "view_submission":
        typed = json.dumps(values, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(typed.encode()).hexdigest()[:32]
        return f"view:{view_id}:{view_hash}:{digest}"[:200]
    if kind in ("command", "block_actions", "message_action") and trigger_id:
        return f"trigger:{trigger_id}"[:200]
    return None


async def forget_old(ctx: AppContext) -> None:
    """Drop the keys of requests seen over a day ago (on the database's clock): Slack refuses
    a signature older than five minutes, so they guard nothing. Run by the scheduler's pass."""
    async with ctx.db.session() as session:
        await submissions.prune(session, FORGET_AFTER)


class RecentKeys:
    """Keys this process saw lately, oldest first, bounded in age and number (on the
    monotonic clock: a step of the wall clock neither forgets them early nor keeps them)."""

    def __init__(self, *, keep_for: float = RECENT_FOR, most: int = RECENT_MAX, clock: Callable[[], float] = time.monotonic):
        self._seen: OrderedDict[str, float] = OrderedDict()
        self.keep_for = keep_for
        self.most = most
        self._clock = clock

    def first(self, key: str) -> bool:
        """True the first time `key` is offered (within `keep_for`), False after."""
        now = self._clock()
        seen = self._seen
        while seen and (len(seen) >= self.most or next(iter(seen.values())) < now - self.keep_for):
            seen.popitem(last=False)
        if key in seen:
            return False
        seen[key] = now
        return True


class ReplayGuard:
    """Before any listener: record the request's key, or stop a replay with a plain ack.

    `repeatable(it)` says whether a request cannot act twice (see the module's docstring):
    those are remembered in memory only, and no database is touched before their ack. A
    form's Submit records its key with its draft (`FormKey`)."""

    def __init__(self, ctx: AppContext, *, repeatable: Callable[[Any], bool]) -> None:
        self.ctx = ctx
        self.repeatable = repeatable
        self.recent = RecentKeys()

    async def check(self, req: AsyncBoltRequest, it: Parsed, next: Callable[[], Awaitable[Any]]) -> BoltResponse | None:  # noqa: A002 - Bolt's name
        key = interaction_key(it)
        if key is None:
            return await next()
        if self.repeatable(it):
            if self.recent.first(key):
                return await next()
            return _ignored(req, key)
        deadline = req.context.get(ACK_DEADLINE)
        SUBMISSION_KEY.set(key)  # the listener's task copies this context: its draft records the key
        if key.startswith("view:"):
            form = FormKey(self.ctx, key, deadline)
            FORM_KEY.set(form)
            req.context["ack"].before = form.before_ack  # `bot.app.TimedAck`
            return await next()
        if not await _record(self.ctx, key, deadline):
            return _ignored(req, key)
        return await next()


class FormKey:
    """A form's Submit, whose key is written with what it does first: in the transaction that
    keeps its draft (`record_with`, one write before Slack's ack), or, for a listener that
    keeps none before its ack, just before the ack (`before_ack`). A form answered with errors
    records nothing, so the same values sent again show the same errors."""

    def __init__(self, ctx: AppContext, key: str, deadline: float | None) -> None:
        self.ctx = ctx
        self.key = key
        self.deadline = deadline
        self.settled = False  # recorded, taken over, or acted on unguarded: nothing left to write
        # A transaction writing the key with its draft is under way (the ack did not wait for
        # it): the ack writes no key of its own, which would find this one and call the
        # Submit a replay of itself.
        self.writing = False

    async def record_with(self, write: Callable[[Any], Awaitable[T]]) -> T:
        if not self.settled:
            self.writing = True
            try:
                async with self.ctx.db.session() as session, session.begin():
                    submissions.add(session, self.key)
                    result = await write(session)
            except IntegrityError:
                # Settled only once answered: given up on meanwhile, the ack asks again.
                taken = await _abandoned(self.ctx, self.key, self.deadline)
                self.settled = True
                if not taken:
                    log.info("ignored a form's Submit already acted on")
                    raise Replayed from None
                log.warning("a form pressed again after its first press was lost with its process; acting on it")
            else:
                self.settled = True
                return result
            finally:
                self.writing = False
        async with self.ctx.db.session() as session, session.begin():
            return await write(session)

    async def before_ack(self, answer: dict[str, Any]) -> None:
        """Called by the ack with its arguments: raises `Replayed` when the key is known."""
        if self.settled or self.writing or answer.get("response_action") == "errors":
            return
        self.settled = True
        if not await _record(self.ctx, self.key, self.deadline):
            log.info("ignored a form's Submit already acted on")
            raise Replayed


async def _record(ctx: AppContext, key: str, deadline: float | None) -> bool:
    """Record `key` within the ack's budget: False for a replay. A database that does not
    answer in time is acted on unguarded (True)."""
    bound = RECORD_TIMEOUT if deadline is None else min(RECORD_TIMEOUT, deadline - asyncio.get_running_loop().time())
    try:
        # Not `asyncio.wait_for`: it would wait for the cancelled insert's rollback, which
        # queues behind the lock it is waiting for (see `store.db.bounded`).
        first = await bounded(_remember(ctx, key), max(bound, 0.1))
    except (TimeoutError, SQLAlchemyError, OSError) as exc:
        log.warning("could not record a request's key (%s); acting on it unguarded", type(exc).__name__)
        return True
    if not first and key.startswith("view:") and await _abandoned(ctx, key, deadline):
        log.warning("a form pressed again after its first press was lost with its process; acting on it")
        return True
    return first


def _ignored(req: AsyncBoltRequest, key: str) -> BoltResponse:
    retry = (req.headers.get("x-slack-retry-num") or [None])[0]
    log.info("ignored a request already acted on (%s)%s", key.split(":")[0], f", Slack retry {retry}" if retry else "")
    return BoltResponse(status=200, body="")


async def _abandoned(ctx: AppContext, key: str, deadline: float | None) -> bool:
    """Was the first press of this form lost (no draft, `TAKEOVER_AFTER` old)? Waits for that
    age within the ack budget; True only for the one press that took the key over. Any doubt
    (a draft appears, the database fails, the budget runs out) is False: a replay is ignored."""
    loop = asyncio.get_running_loop()
    until = (loop.time() + RECORD_TIMEOUT) if deadline is None else deadline - TAKEOVER_POLL
    try:
        while True:
            async with ctx.db.session() as session:
                if await bounded(submissions.kept_as_draft(session, key), RECORD_TIMEOUT):
                    return False
                if not await bounded(submissions.known(session, key), RECORD_TIMEOUT):
                    return await submissions.remember(session, key)  # forgotten meanwhile (shown again with errors): a new press
                if await submissions.take_over(session, key, older_than=timedelta(seconds=TAKEOVER_AFTER)):
                    return True
            if loop.time() + TAKEOVER_POLL > until:
                return False
            await asyncio.sleep(TAKEOVER_POLL)
    except (TimeoutError, SQLAlchemyError, OSError) as exc:
        log.warning("could not tell whether a form pressed again was lost (%s); ignoring it", type(exc).__name__)
        return False


async def _remember(ctx: AppContext, key: str) -> bool:
    async with ctx.db.session() as session:
        return await submissions.remember(session, key)
