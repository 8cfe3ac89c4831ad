"""The surface every feature's service offers the handlers, written once: guards, then the
draft flow (`bot.services.drafts`) around the feature's own `_send`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bot.context import AppContext
from bot.services.drafts import DraftFlow
from bot.services.outcomes import Outcome
from store.states import DraftKind


class FeatureService:
    """Subclasses set `FORMS` and `form_from_payload` (a staticmethod), and implement the guards and `_send`."""

    FORMS: Mapping[DraftKind, type]
    form_from_payload: Callable[[DraftKind, dict[str, Any]], Any]

    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        self.drafts = DraftFlow(ctx, self.FORMS, self.form_from_payload)

    def require_enabled(self) -> Any:
        raise NotImplementedError

    def require_allowed(self, user_id: str | None) -> None:
        raise NotImplementedError

    async def submit(self, kind: DraftKind, form: Any, *, user_id: str, channel_id: str | None) -> Outcome:
        """Keep the draft, then send it; a failure leaves the draft for Retry."""
        self.require_allowed(user_id)
        self.require_enabled()
        return await self.drafts.submit(kind, form, user_id=user_id, channel_id=channel_id, send=self._send)

    async def retry(self, draft_id: int, *, user_id: str) -> Outcome:
        """Send a kept draft again, once however often Retry is clicked."""
        self.require_allowed(user_id)
        self.require_enabled()
        kind, form = await self.reopen(draft_id)
        self._check_retry(kind, form)
        return await self.drafts.retry(draft_id, kind, form, user_id=user_id, send=self._send_again)

    async def reopen(self, draft_id: int) -> tuple[DraftKind, Any]:
        """A kept draft's kind and form, to open the modal again with what was typed."""
        return await self.drafts.form_of(draft_id)

    def _check_retry(self, kind: DraftKind, form: Any) -> None:
        """Raise when a kept draft can no longer be sent as it is (before it is claimed)."""

    async def _send_again(self, kind: DraftKind, form: Any, user_id: str) -> Outcome:
        return await self._send(kind, form, user_id)

    async def _send(self, kind: DraftKind, form: Any, user_id: str) -> Outcome:
        raise NotImplementedError
