"""Every submission goes through here: kept as a draft first, sent, and each attempt
recorded, so nothing anyone typed is lost and Retry sends it once, however often clicked.

A send that got no answer is "unknown", never "failed": the upstream may have acted on it,
so the person chooses (check and retry, create anyway, link the one that exists) instead of
a Retry that could make a second one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.context import FORM_KEY, SUBMISSION_KEY, AppContext
from bot.errors import (
    DatabaseBusy,
    NotFound,
    NotStored,
    OutcomeUnknown,
    SitrepError,
    SubmissionFailed,
    SubmissionUnknown,
    UpstreamError,
)
from bot.ops.logs import audit
from bot.ops.metrics import upstream_outcome
from store import drafts as draft_store
from store import ids
from store.db import STORE_FAILURES, StoreTimeout, bounded, store_reason, waited
from store.models import Incident
from store.states import DraftKind, DraftState

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long a submission waits to be kept before the person is told and given it back. The form
# is already closed (Slack had its ack): this bounds their wait, not Slack's.
KEEP_BOUND_SECONDS = 5.0
# How long a submission's draft may hold up Slack's ack (3 s, of which the replay guard may
# take 1): kept before the ack, a kill right after the ack still leaves it for the recovery.
PRE_ACK_KEEP_SECONDS = 0.5

#: The draft whose send is under way in this task: the incident or window it makes records
#: it, so the crash recovery tells that draft's person what was made, not "outcome unknown".
SENDING_DRAFT: ContextVar[int | None] = ContextVar("sitrep_sending_draft", default=None)

#: How long a change the upstream refused as done already waits for a rival submission of
#: ours (sent at the same moment, taken first) to be recorded, and how often it looks. Its
#: answer comes after Slack's ack, so the wait costs no ack.
RIVAL_WAIT_SECONDS = 15.0
RIVAL_POLL_SECONDS = 0.05


class Form(Protocol):
    def to_payload(self) -> dict[str, Any]: ...

    def summary(self) -> str: ...


Send = Callable[[DraftKind, Any, str], Awaitable[T]]  # (kind, form, user_id) -> result


@dataclass(frozen=True)
class UnknownChoices:
    """What the person can do about a draft whose outcome is unknown, for its kind."""

    service: str  # "the status page", "AppFirst"
    can_check: bool  # the upstream lists what it has: look before sending again
    can_link: bool  # it cannot be asked: the person pastes the ID of the one that exists


class DraftFlow:
    def __init__(
        self,
        ctx: AppContext,
        kinds: Collection[DraftKind],
        from_payload: Callable[[DraftKind, dict[str, Any]], Any],
        choices: Callable[[DraftKind], UnknownChoices],
    ):
        self.ctx = ctx
        self.kinds = frozenset(kinds)
        self.from_payload = from_payload
        self.choices = choices
        # Writes that undo a keep or a claim which ended after its caller gave up (held
        # here until they end: the loop keeps only weak references to tasks).
        self._undoing: set[asyncio.Task] = set()

    async def keep_now(
        self, kind: DraftKind, form: Form, *, user_id: str, channel_id: str | None
    ) -> int | asyncio.Task[int] | None:
        """The draft's id when it is kept within `PRE_ACK_KEEP_SECONDS` (before Slack's ack);
        the keep itself, still running, when the database is slower (`submit` waits for it
        after the ack); None when the database refused it (`submit` keeps it again after).

        A slow keep is never cancelled: a cancel can reach the database after it took the
        COMMIT, and a draft (with the Submit's replay key) kept by an insert given up on would
        be a second draft, never sent, or would make the Submit a replay of itself."""
        keeping = asyncio.ensure_future(self._keep(kind, form, user_id, channel_id))
        done, _ = await asyncio.wait({keeping}, timeout=PRE_ACK_KEEP_SECONDS)
        if not done:
            log.info("keeping %s takes longer than the ack can wait; it is waited for after the ack", kind)
            return keeping
        try:
            return keeping.result()
        except STORE_FAILURES as exc:
            log.info("could not keep %s before the ack (%s); keeping it after", kind, type(exc).__name__)
            return None

    async def _keep(self, kind: DraftKind, form: Form, user_id: str, channel_id: str | None) -> int:
        """The draft's id; a form's Submit keeps it with its replay key, in one transaction
        (`FORM_KEY`: `Replayed` when an earlier delivery of the Submit has the key)."""

        async def keep(session) -> int:
            draft = await draft_store.keep_draft(
                session,
                kind=kind,
                user_id=user_id,
                channel_id=channel_id,
                payload=form.to_payload(),
                now=self.ctx.clock(),
                sent_by=self.ctx.instance_id,
                submission_key=SUBMISSION_KEY.get(),
            )
            return draft.id

        form_key = FORM_KEY.get()
        if form_key is not None:
            return await form_key.record_with(keep)
        async with self.ctx.db.session() as session, session.begin():
            return await keep(session)

    async def submit(
        self,
        kind: DraftKind,
        form: Form,
        *,
        user_id: str,
        channel_id: str | None,
        send: Send[T],
        kept: int | asyncio.Task[int] | None = None,
    ) -> T:
        """Keep the draft (unless `kept` is its id already, or the keep begun before the ack,
        which is waited for), then send it. A draft the database
        will not take is never sent (what the upstream took and we could not record would be
        an orphan): `NotStored` gives the person what they typed instead."""
        try:
            if isinstance(kept, asyncio.Future):
                try:
                    kept = await waited(kept, KEEP_BOUND_SECONDS, late=self._kept_too_late)
                except StoreTimeout:
                    raise
                except STORE_FAILURES as exc:  # refused, so nothing was kept: keep it again
                    log.info("could not keep %s before the ack (%s); keeping it again", kind, type(exc).__name__)
                    kept = None
            draft_id = (
                kept
                if kept is not None
                else await waited(self._keep(kind, form, user_id, channel_id), KEEP_BOUND_SECONDS, late=self._kept_too_late)
            )
        except STORE_FAILURES as exc:
            log.error("could not keep %s from %s, nothing sent: %s", kind, user_id, store_reason(exc))
            raise NotStored(kind=kind, summary=form.summary(), reason=store_reason(exc)) from exc
        return await self._attempt(draft_id, kind, form, user_id, send)

    async def retry(
        self,
        draft_id: int,
        kind: DraftKind,
        form: Form,
        *,
        user_id: str,
        send: Send[T],
        states: Collection[DraftState] = (DraftState.FAILED,),
    ) -> T:
        """Claim the kept draft (`form_of` read it) if it is in one of `states`, and send it again."""
        await self.claim(draft_id, states)
        return await self._attempt(draft_id, kind, form, user_id, send)

    async def claim(self, draft_id: int, states: Collection[DraftState]) -> None:
        """Compare-and-set: one click of many takes the draft; the others hear it is taken."""

        async def take() -> bool:
            async with self.ctx.db.session() as session, session.begin():
                return await draft_store.claim_for_retry(
                    session, draft_id, now=self.ctx.clock(), sent_by=self.ctx.instance_id, states=states
                )

        def claimed_too_late(claimed: bool) -> None:
            if claimed:  # the person was told to press Retry again: the draft is put back
                put_back = DraftState.UNKNOWN if DraftState.UNKNOWN in states else DraftState.FAILED
                self._undo(
                    draft_id,
                    f"claimed for a Retry after its click was answered; put back {put_back}",
                    self._unclaim(draft_id, put_back),
                )

        await write_unsettled(self.ctx, draft_id)
        try:
            claimed = await waited(take(), KEEP_BOUND_SECONDS, late=claimed_too_late)
        except STORE_FAILURES as exc:
            log.error("could not claim draft %s for Retry: %s", draft_id, store_reason(exc))
            raise DatabaseBusy(
                f"I could not send it again: {store_reason(exc)}. What you typed is still kept; press *Retry* again in a minute."
            ) from exc
        if not claimed:
            raise NotFound("That submission already went through, or is being sent right now.")

    async def state_of(self, draft_id: int) -> DraftState | None:
        await write_unsettled(self.ctx, draft_id)
        async with self.ctx.db.session() as session:
            draft = await draft_store.get_draft(session, draft_id)
        return None if draft is None else DraftState(draft.state)

    async def form_of(self, draft_id: int) -> tuple[DraftKind, Any]:
        async with self.ctx.db.session() as session:
            draft = await draft_store.get_draft(session, draft_id)
        if draft is None or draft.kind not in self.kinds:
            raise NotFound("That submission is no longer kept.")
        return DraftKind(draft.kind), self.from_payload(DraftKind(draft.kind), draft.payload)

    async def settle(self, draft_id: int, *, result: Any = None, user_id: str, kind: DraftKind) -> None:
        """A claimed draft was settled another way (the person linked what exists): done."""
        audit(kind, user=user_id, outcome="linked", draft_id=draft_id, **(_target(result) if result is not None else {}))
        await self._record(draft_id, None)

    async def put_back_unknown(self, draft_id: int) -> None:
        """A link that failed half-way: the choices stay open."""
        await self._record(draft_id, "linking failed", DraftState.UNKNOWN)

    def unknown(self, draft_id: int, kind: DraftKind, summary: str, reason: str) -> SubmissionUnknown:
        choices = self.choices(kind)
        return SubmissionUnknown(
            draft_id=draft_id,
            kind=kind,
            service=choices.service,
            summary=summary,
            can_check=choices.can_check,
            can_link=choices.can_link,
            reason=reason,
        )

    async def _attempt(self, draft_id: int, kind: DraftKind, form: Form, user_id: str, send: Send[T]) -> T:
        sending = SENDING_DRAFT.set(draft_id)
        try:
            result = await send(kind, form, user_id)
        except UpstreamError as exc:
            if isinstance(exc, OutcomeUnknown) and kind.creates:
                log.warning("%s may or may not have taken %s: %s", exc.service, kind, exc.message)
                audit(kind, user=user_id, outcome="unknown", reason=str(exc), draft_id=draft_id, **_target(form))
                await self._record(draft_id, str(exc), DraftState.UNKNOWN)
                raise self.unknown(draft_id, kind, form.summary(), exc.message) from exc
            # A change to one thing (update, resolve, edit, cancel) sent twice changes it
            # once: a plain failure with Retry, as before.
            log.warning("%s did not take %s: %s", exc.service, kind, exc)
            audit(kind, user=user_id, outcome=upstream_outcome(exc), reason=str(exc), draft_id=draft_id, **_target(form))
            await self._record(draft_id, str(exc))
            raise SubmissionFailed(draft_id=draft_id, kind=kind, cause=exc, summary=form.summary()) from exc
        except SitrepError:
            # Refused on our side (no such incident any more, someone else won): said as is.
            await self._record(draft_id, "refused")
            raise
        except SQLAlchemyError as exc:
            # The database failed under the send: the upstream may have the change already,
            # so the person hears that, with what they typed, rather than "try again".
            log.error("the database failed while sending %s (draft %s): %s", kind, draft_id, store_reason(exc))
            await self._record(draft_id, "interrupted", DraftState.UNKNOWN if kind.creates else None)
            raise NotStored(kind=kind, summary=form.summary(), reason=store_reason(exc), sent=True) from exc
        except Exception as exc:
            if not kind.creates:
                await self._record(draft_id, "interrupted")
                raise
            # Our own trouble mid-send (a bug): whether the upstream has it is unknown, and
            # the person is asked, not guessed for.
            log.exception("sending %s (draft %s) broke off; its outcome is unknown", kind, draft_id)
            audit(kind, user=user_id, outcome="unknown", reason="broke off", draft_id=draft_id, **_target(form))
            await self._record(draft_id, "broke off mid-send", DraftState.UNKNOWN)
            raise self.unknown(draft_id, kind, form.summary(), "sitrep broke off while sending it") from exc
        except BaseException:
            # Cancelled (the process is stopping): nobody sends it now. The heartbeat recovery
            # makes it "unknown" and tells the person; it is never left "sending".
            await asyncio.shield(self._release(draft_id))
            raise
        finally:
            SENDING_DRAFT.reset(sending)
        audit(kind, user=user_id, outcome="ok", draft_id=draft_id, **_target(result))
        await self._record(draft_id, None)
        return result

    async def _record(self, draft_id: int, error: str | None, state: DraftState | None = None) -> None:
        """The attempt's end on the draft. Bounded and never raised: the person's answer (the
        outcome or the upstream's reason) matters more than the draft's bookkeeping. When
        the database is out, the write waits in `AppContext.unsettled` for it to come back:
        the draft is still "sending" by this live process, which nobody else recovers."""

        async def record() -> None:
            async with self.ctx.db.session() as session, session.begin():
                await draft_store.record_attempt(session, draft_id, error=error, now=self.ctx.clock(), state=state)

        await self._write_or_defer(draft_id, record, f"record the end of draft {draft_id}'s attempt")

    async def _write_or_defer(self, draft_id: int, write: Callable[[], Awaitable[None]], what: str) -> None:
        """`write` within `KEEP_BOUND_SECONDS`, or left in `AppContext.unsettled` for when the
        database is back (`write_unsettled`); never raised."""
        try:
            await bounded(write(), KEEP_BOUND_SECONDS)
        except STORE_FAILURES as exc:
            log.error("could not %s (%s); writing it when the database is back", what, store_reason(exc))
            self.ctx.unsettled[draft_id] = write

    def _kept_too_late(self, draft_id: int) -> None:
        """A keep that ended after the person was given what they typed back (`NotStored`):
        failed, never sent, so no draft stays "sending" by this live process."""
        self._undo(
            draft_id,
            "kept after its person was told it was not; marked failed, never sent",
            self._record(draft_id, "kept too late: never sent"),
        )

    def _undo(self, draft_id: int, what: str, write: Awaitable[Any]) -> None:
        log.warning("draft %s was %s", draft_id, what)
        task = asyncio.ensure_future(write)
        self._undoing.add(task)
        task.add_done_callback(self._undoing.discard)

    async def _unclaim(self, draft_id: int, state: DraftState) -> None:
        async def put_back() -> None:
            async with self.ctx.db.session() as session, session.begin():
                await draft_store.unclaim(session, draft_id, state=state, sent_by=self.ctx.instance_id, now=self.ctx.clock())

        await self._write_or_defer(draft_id, put_back, f"put draft {draft_id} back after a late claim")

    async def _release(self, draft_id: int) -> None:
        try:
            async with self.ctx.db.session() as session, session.begin():
                await draft_store.release(session, draft_id, now=self.ctx.clock())
        except Exception:  # noqa: BLE001 - stopping; the heartbeat's absence says the same
            log.warning("could not release draft %s while stopping", draft_id)


async def rival_outcome(
    ctx: AppContext, kind: DraftKind, field: str, value: Any, landed: Callable[[AsyncSession], Awaitable[T | None]]
) -> T | None:
    """What a rival submission of `kind` on the same thing (its payload's `field` is `value`)
    recorded, once `landed` finds it; None when no rival is being sent (the change was made
    outside sitrep) or it has not landed within `RIVAL_WAIT_SECONDS` of loop time. Two people
    pressing Submit at once: the upstream's refusal of the second can reach the store before
    the first's success, and the person refused should hear who won and when."""
    loop = asyncio.get_running_loop()
    deadline, waited = loop.time() + RIVAL_WAIT_SECONDS, False
    while True:
        async with ctx.db.session() as session:
            found = await landed(session)
            if found is not None:
                return found
            rivals = await draft_store.being_sent(session, kind, besides=SENDING_DRAFT.get())
        if not any(d.payload.get(field) == value for d in rivals) or loop.time() >= deadline:
            return None
        if not waited:
            log.info("%s with %s %s was refused as done already; waiting for a rival one to be recorded", kind, field, value)
            waited = True
        await asyncio.sleep(RIVAL_POLL_SECONDS)


async def write_unsettled(ctx: AppContext, draft_id: int | None = None) -> int:
    """Write the ends of sends the database missed (all, or only `draft_id`'s); how many
    were written. Each is taken out while it is written, so two callers never write one
    twice; a failed write goes back for the next try."""
    written = 0
    for key in [draft_id] if draft_id is not None else list(ctx.unsettled):
        write = ctx.unsettled.pop(key, None)
        if write is None:
            continue
        try:
            await bounded(write(), KEEP_BOUND_SECONDS)
        except STORE_FAILURES as exc:
            ctx.unsettled.setdefault(key, write)
            log.warning("the end of draft %s's attempt is still not written: %s", key, store_reason(exc))
            return written
        log.info("wrote the end of draft %s's attempt, missed while the database was out", key)
        written += 1
    return written


def _target(thing: Any) -> dict[str, Any]:
    """The incident or window (ours and the upstream's id) a form or an outcome is about."""
    record = getattr(thing, "record", None)
    if record is not None:
        name = "incident" if isinstance(record, Incident) else "window"
        return {f"{name}_id": record.id, "upstream_id": getattr(record, "upstream_id", None)}
    return {k: getattr(thing, k) for k in ("incident_id", "window_id") if getattr(thing, k, None) is not None}


async def draft_kind(ctx: AppContext, draft_id: int) -> DraftKind | None:
    """What a kept draft is (`DraftKind.feature` says whose); None when it is gone or unknown."""
    if not 0 < draft_id <= ids.MAX_NUMBER:
        return None  # no row has it, and the database's driver would refuse the number
    async with ctx.db.session() as session:
        draft = await draft_store.get_draft(session, draft_id)
    if draft is None or draft.kind not in DraftKind.__members__.values():
        return None
    return DraftKind(draft.kind)
