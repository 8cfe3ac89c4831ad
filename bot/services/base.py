"""The surface every feature's service offers the handlers, written once: guards, then the
draft flow (`bot.services.drafts`) around the feature's own `_send`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from bot.context import AppContext
from bot.errors import NotSupported, SitrepError
from bot.services.drafts import SENDING_DRAFT, DraftFlow, UnknownChoices
from bot.services.outcomes import Outcome
from store import ids
from store.states import DraftKind, DraftState

FAILED, UNKNOWN = DraftState.FAILED, DraftState.UNKNOWN
EXAMPLE_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"  # seed 004's


class FeatureService:
    """Subclasses set `FORMS` and `form_from_payload` (a staticmethod), and implement the guards and `_send`."""

    FORMS: Mapping[DraftKind, type]
    NUMBER_OF: str  # "an incident": what sitrep's short numbers count here
    form_from_payload: Callable[[DraftKind, dict[str, Any]], Any]

    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        self.drafts = DraftFlow(ctx, self.FORMS, self.form_from_payload, self.unknown_choices)

    def require_enabled(self) -> Any:
        raise NotImplementedError

    def require_allowed(self, user_id: str | None) -> None:
        raise NotImplementedError

    async def keep_first(
        self, kind: DraftKind, form: Any, *, user_id: str, channel_id: str | None
    ) -> int | asyncio.Task[int] | None:
        """The draft kept before Slack's ack when the person may submit: its id, or the keep
        still running when the database takes longer than `PRE_ACK_KEEP_SECONDS` (`submit`
        waits for it); None otherwise (`submit` keeps it after)."""
        try:
            self.require_allowed(user_id)
            self.require_enabled()
        except SitrepError:
            return None  # `submit` says why, after the ack
        return await self.drafts.keep_now(kind, form, user_id=user_id, channel_id=channel_id)

    async def submit(
        self, kind: DraftKind, form: Any, *, user_id: str, channel_id: str | None, kept: int | asyncio.Task[int] | None = None
    ) -> Outcome:
        """Keep the draft (unless `kept` already), then send it; a failure leaves the draft for Retry."""
        self.require_allowed(user_id)
        self.require_enabled()
        return await self.drafts.submit(kind, form, user_id=user_id, channel_id=channel_id, send=self._send, kept=kept)

    async def retry(self, draft_id: int, *, user_id: str) -> Outcome:
        """Send a kept draft again, once however often Retry is clicked. A create whose
        outcome is unknown is not sent blindly: that is *Check and retry* or *Create anyway*."""
        return await self._send_kept(draft_id, user_id=user_id, states=(FAILED,), send=self._send_again)

    # --- a create whose outcome is unknown (bot.errors.SubmissionUnknown) -------------
    def unknown_choices(self, kind: DraftKind) -> UnknownChoices:
        """Whether this feature's upstream can be asked what it has (check) or not (link)."""
        raise NotImplementedError

    async def check_and_retry(self, draft_id: int, *, user_id: str) -> Outcome:
        """Look upstream for what the lost send made and adopt it; create it only if absent."""
        self.require_allowed(user_id)
        self.require_enabled()
        kind, form = await self.reopen(draft_id)
        if not self.unknown_choices(kind).can_check:
            service = self.unknown_choices(kind).service
            raise NotSupported(
                f"{service[:1].upper()}{service[1:]} cannot be asked what it has. "
                "Use *It exists: link it* if you can see it there, or *Create anyway* if not."
            )
        return await self.drafts.retry(draft_id, kind, form, user_id=user_id, send=self._send_again, states=(FAILED, UNKNOWN))

    async def create_anyway(self, draft_id: int, *, user_id: str) -> Outcome:
        """Send it again without looking: the person says the lost one does not exist."""
        return await self._send_kept(draft_id, user_id=user_id, states=(FAILED, UNKNOWN), send=self._send)

    async def _send_kept(
        self, draft_id: int, *, user_id: str, states: tuple[DraftState, ...], send: Callable[..., Awaitable[Outcome]]
    ) -> Outcome:
        """Claim a kept draft in one of `states` and send it with `send` (*Retry*, *Create
        anyway*). Only a create is held to `states`: an edit whose outcome is unknown changes
        what exists, so sending it again is always safe."""
        self.require_allowed(user_id)
        self.require_enabled()
        kind, form = await self.reopen(draft_id)
        self._check_retry(kind, form)
        claimable = states if kind.creates else (FAILED, UNKNOWN)
        return await self.drafts.retry(draft_id, kind, form, user_id=user_id, send=send, states=claimable)

    def link_problems(self, upstream_id: str) -> dict[str, str]:
        """What is wrong with a pasted upstream ID as such (`upstream_id` → a sentence)."""
        text = upstream_id.strip()
        if not text:
            return {"upstream_id": "Paste the ID from the status page."}
        if ids.too_large(text):
            return {
                "upstream_id": f"That is not {self.NUMBER_OF} number (sitrep's are short, like #12), nor a status-page ID: "
                f"paste the ID as the status page shows it, like {EXAMPLE_ID}."
            }
        if ids.guid(text) is None:
            return {
                "upstream_id": f"That is not a status-page ID: it looks like `{EXAMPLE_ID}` "
                "(32 hexadecimal digits and four dashes)."
            }
        return {}

    async def link_known_problems(self, draft_id: int, upstream_id: str) -> dict[str, str]:
        """The same, once the store is asked: the draft still unknown, the ID (in any spelling)
        neither taken nor the other kind of thing."""
        problems = self.link_problems(upstream_id)
        if problems:
            return problems
        if await self.drafts.state_of(draft_id) != UNKNOWN:
            return {"upstream_id": "That submission is settled already (linked, created, or sent again)."}
        canonical = ids.guid(upstream_id)
        taken = await self._known_as(canonical)
        if taken:
            return {"upstream_id": f"sitrep already knows that ID as {taken}."}
        other = await self._other_kind(canonical)
        if other:
            return {"upstream_id": other}
        return {}

    async def link(self, draft_id: int, upstream_id: str, *, user_id: str) -> Outcome:
        """Adopt what the lost send made, by the ID the person pasted: stored, announced,
        threaded from now on, exactly as if the reply had arrived."""
        self.require_allowed(user_id)
        self.require_enabled()
        kind, form = await self.reopen(draft_id)
        if not self.unknown_choices(kind).can_link:
            raise NotSupported("Linking is for the status page only; use *Check and retry*.")
        await self.drafts.claim(draft_id, (UNKNOWN,))
        sending = SENDING_DRAFT.set(draft_id)  # what it stores names the draft (crash recovery)
        try:
            outcome = await self._adopt(kind, form, ids.guid(upstream_id) or upstream_id.strip(), user_id)
        except BaseException:
            await self.drafts.put_back_unknown(draft_id)
            raise
        finally:
            SENDING_DRAFT.reset(sending)
        await self.drafts.settle(draft_id, result=outcome, user_id=user_id, kind=kind)
        return outcome

    async def _known_as(self, upstream_id: str) -> str | None:
        """How sitrep already knows this upstream ID (`incident #3`), or None."""
        raise NotImplementedError

    async def _other_kind(self, upstream_id: str) -> str | None:
        """Why this ID names the other kind of thing (a window pasted for an incident, or
        back), as a sentence for the person; None when nothing says so."""
        return None

    async def _adopt(self, kind: DraftKind, form: Any, upstream_id: str, user_id: str) -> Outcome:
        """Store and announce what exists upstream under `upstream_id`, as `form` described it."""
        raise NotImplementedError

    async def reopen(self, draft_id: int) -> tuple[DraftKind, Any]:
        """A kept draft's kind and form, to open the modal again with what was typed."""
        return await self.drafts.form_of(draft_id)

    def _check_retry(self, kind: DraftKind, form: Any) -> None:
        """Raise when a kept draft can no longer be sent as it is (before it is claimed)."""

    async def _send_again(self, kind: DraftKind, form: Any, user_id: str) -> Outcome:
        return await self._send(kind, form, user_id)

    async def _send(self, kind: DraftKind, form: Any, user_id: str) -> Outcome:
        raise NotImplementedError
