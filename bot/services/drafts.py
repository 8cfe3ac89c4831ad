"""Every submission goes through here: kept as a draft first, sent, and each attempt
recorded, so nothing anyone typed is lost and Retry sends it once, however often clicked."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from datetime import timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from bot.context import AppContext
from bot.errors import DatabaseBusy, NotFound, NotStored, SubmissionFailed, UpstreamError
from bot.logs import audit
from bot.metrics import upstream_outcome
from store import drafts as draft_store
from store.db import STORE_FAILURES, bounded
from store.models import Incident
from store.states import DraftKind

log = logging.getLogger(__name__)

T = TypeVar("T")

# A draft still "sending" after this long was left by a process that died mid-send.
STUCK_AFTER = timedelta(minutes=2)
# How long a submission waits to be kept before the person is told and given it back. The form
# is already closed (Slack had its ack): this bounds their wait, not Slack's.
KEEP_BOUND_SECONDS = 5.0


class Form(Protocol):
    def to_payload(self) -> dict[str, Any]: ...

    def summary(self) -> str: ...


Send = Callable[[DraftKind, Any, str], Awaitable[T]]  # (kind, form, user_id) -> result


class DraftFlow:
    def __init__(self, ctx: AppContext, kinds: Collection[DraftKind], from_payload: Callable[[DraftKind, dict[str, Any]], Any]):
        self.ctx = ctx
        self.kinds = frozenset(kinds)
        self.from_payload = from_payload

    async def submit(self, kind: DraftKind, form: Form, *, user_id: str, channel_id: str | None, send: Send[T]) -> T:
        """Keep the draft, then send it. A draft the database will not take is never sent (what
        the upstream took and we could not record would be an orphan): `NotStored` gives the
        person what they typed instead."""

        async def keep() -> int:
            async with self.ctx.db.session() as session, session.begin():
                draft = await draft_store.keep_draft(
                    session, kind=kind, user_id=user_id, channel_id=channel_id, payload=form.to_payload(), now=self.ctx.clock()
                )
                return draft.id

        try:
            draft_id = await bounded(keep(), KEEP_BOUND_SECONDS)
        except STORE_FAILURES as exc:
            log.error("could not keep %s from %s, nothing sent: %s", kind, user_id, store_reason(exc))
            raise NotStored(kind=kind, summary=form.summary(), reason=store_reason(exc)) from exc
        return await self._attempt(draft_id, kind, form, user_id, send)

    async def retry(self, draft_id: int, kind: DraftKind, form: Form, *, user_id: str, send: Send[T]) -> T:
        """Claim the kept draft (`form_of` read it) and send it again."""

        async def claim() -> bool:
            async with self.ctx.db.session() as session, session.begin():
                now = self.ctx.clock()
                return await draft_store.claim_for_retry(session, draft_id, now=now, stuck_before=now - STUCK_AFTER)

        try:
            claimed = await bounded(claim(), KEEP_BOUND_SECONDS)
        except STORE_FAILURES as exc:
            log.error("could not claim draft %s for Retry: %s", draft_id, store_reason(exc))
            raise DatabaseBusy(
                f"I could not send it again: {store_reason(exc)}. What you typed is still kept; "
                "press *Retry* again in a minute."
            ) from exc
        if not claimed:
            raise NotFound("That submission already went through, or is being sent right now.")
        return await self._attempt(draft_id, kind, form, user_id, send)

    async def form_of(self, draft_id: int) -> tuple[DraftKind, Any]:
        async with self.ctx.db.session() as session:
            draft = await draft_store.get_draft(session, draft_id)
        if draft is None or draft.kind not in self.kinds:
            raise NotFound("That submission is no longer kept.")
        return DraftKind(draft.kind), self.from_payload(DraftKind(draft.kind), draft.payload)

    async def _attempt(self, draft_id: int, kind: DraftKind, form: Form, user_id: str, send: Send[T]) -> T:
        try:
            result = await send(kind, form, user_id)
        except UpstreamError as exc:
            log.warning("%s did not take %s: %s", exc.service, kind, exc)
            audit(kind, user=user_id, outcome=f"{upstream_outcome(exc)}: {exc}", draft_id=draft_id, **_target(form))
            await self._record(draft_id, str(exc))
            raise SubmissionFailed(draft_id=draft_id, kind=kind, cause=exc, summary=form.summary()) from exc
        except SQLAlchemyError as exc:
            # The database failed under the send: the upstream may have the change already,
            # so the person hears that, with what they typed, rather than "try again".
            log.error("the database failed while sending %s (draft %s): %s", kind, draft_id, store_reason(exc))
            await self._record(draft_id, "interrupted")
            raise NotStored(kind=kind, summary=form.summary(), reason=store_reason(exc), sent=True) from exc
        except BaseException:
            await self._record(draft_id, "interrupted")
            raise
        audit(kind, user=user_id, outcome="ok", draft_id=draft_id, **_target(result))
        await self._record(draft_id, None)
        return result

    async def _record(self, draft_id: int, error: str | None) -> None:
        """The attempt's end on the draft. Bounded and never raised: the person's answer (the
        outcome or the upstream's reason) matters more than the draft's bookkeeping."""

        async def record() -> None:
            async with self.ctx.db.session() as session, session.begin():
                await draft_store.record_attempt(session, draft_id, error=error, now=self.ctx.clock())

        try:
            await bounded(record(), KEEP_BOUND_SECONDS)
        except STORE_FAILURES as exc:
            log.error("could not record the end of draft %s's attempt: %s", draft_id, store_reason(exc))


def store_reason(exc: BaseException) -> str:
    """Why the database refused, in words for the person and the operator (no URL, no secret)."""
    text = str(getattr(exc, "orig", None) or exc).lower()
    if isinstance(exc, TimeoutError) or "locked" in text or "busy" in text:
        return "the database is locked by another process"
    if "readonly" in text or "read-only" in text or "read only" in text:
        return "the database is read-only"
    if "i/o error" in text:
        return "the database cannot be written (disk I/O error)"
    if "disk is full" in text or "no space" in text:
        return "the database's disk is full"
    return f"the database failed ({type(getattr(exc, 'orig', None) or exc).__name__})"


def _target(thing: Any) -> dict[str, Any]:
    """The incident or window (ours and the upstream's id) a form or an outcome is about."""
    record = getattr(thing, "record", None)
    if record is not None:
        name = "incident" if isinstance(record, Incident) else "window"
        return {f"{name}_id": record.id, "upstream_id": getattr(record, "upstream_id", None)}
    return {k: getattr(thing, k) for k in ("incident_id", "window_id") if getattr(thing, k, None) is not None}


async def draft_kind(ctx: AppContext, draft_id: int) -> DraftKind | None:
    """What a kept draft is (`DraftKind.feature` says whose); None when it is gone or unknown."""
    async with ctx.db.session() as session:
        draft = await draft_store.get_draft(session, draft_id)
    if draft is None or draft.kind not in DraftKind.__members__.values():
        return None
    return DraftKind(draft.kind)
