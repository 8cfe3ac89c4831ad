"""What every feature's listeners share: send a form through the feature's service, answer
the person who sent it, Retry a kept draft, and turn a form's problems into modal errors."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import handlers.payload as payload
from bot.clients.slack import tell_user
from bot.context import AppContext
from bot.errors import InputInvalid
from bot.services.base import FeatureService
from bot.services.outcomes import Outcome
from handlers.draft_views import link_modal
from handlers.ids import DraftAction, DraftBlock, DraftInput
from handlers.payload import Interaction
from store.states import DraftKind

Answer = tuple[str, list[dict]]


def modal_errors(problems: Mapping[str, str], field_blocks: Mapping[str, str]) -> None:
    """A form's problems, keyed by field, shown inside the modal next to their blocks."""
    if problems:
        raise InputInvalid({field_blocks[field]: message for field, message in problems.items()})


class FeatureHandlers:
    """Base of `IncidentHandlers` and `MaintenanceHandlers`; `done_answer` renders an outcome."""

    done_answer: Callable[[Outcome], Answer]

    def __init__(self, ctx: AppContext, service: FeatureService, done_answer: Callable[[Outcome], Answer]):
        self.ctx = ctx
        self.service = service
        self.done_answer = done_answer

    async def _submit(self, it: Interaction, kind: DraftKind, form: Any, *, ack) -> None:
        """Keep the draft before the ack when the database answers at once, so a process
        killed right after the ack leaves a draft for the recovery (the person is told);
        a slow database is not waited for (`keep_first` gives up) and keeps it after."""
        kept = await self.service.keep_first(kind, form, user_id=it.user_id, channel_id=it.channel_id)
        await ack()
        outcome = await self.service.submit(kind, form, user_id=it.user_id, channel_id=it.channel_id, kept=kept)
        await self._tell(it, self.done_answer(outcome))

    async def _tell(self, it: Interaction, answer: Answer) -> None:
        text, blocks = answer
        await tell_user(
            self.ctx.slack,
            user_id=it.user_id,
            channel_id=it.channel_id,
            text=text,
            blocks=blocks,
            sandbox=self.ctx.settings.sitrep_sandbox,
        )

    async def send_kept(self, action: DraftAction, draft_id: int, it: Interaction) -> None:
        """*Retry*, or after an unknown outcome *Check and retry* / *Create anyway*, as the
        clicked button says; the person is answered as for a submission."""
        sends = {
            DraftAction.RETRY: self.service.retry,
            DraftAction.CHECK: self.service.check_and_retry,
            DraftAction.ANYWAY: self.service.create_anyway,
        }
        await self._tell(it, self.done_answer(await sends[action](draft_id, user_id=it.user_id)))

    # --- an unknown outcome's link --------------------------------------------------------

    async def draft_view(self, draft_id: int, it: Interaction) -> dict:
        """The form of a kept draft, with what was typed (*Edit*)."""
        raise NotImplementedError

    async def link_view(self, draft_id: int, it: Interaction) -> dict:
        self.service.require_enabled()
        self.service.require_allowed(it.user_id)
        kind, form = await self.service.reopen(draft_id)
        choices = self.service.unknown_choices(kind)
        return link_modal(draft_id, kind=kind, service=choices.service, summary=form.summary(), channel_id=it.channel_id)

    async def submit_link(self, ack, draft_id: int, it: Interaction) -> None:
        """The ID's problems come back inside the modal (what was pasted stays); then the
        modal closes and the adoption is answered like a submission."""
        pasted = payload.text(it.values, DraftBlock.UPSTREAM_ID, DraftInput.UPSTREAM_ID)
        problems = await self.service.link_known_problems(draft_id, pasted)
        modal_errors(problems, {"upstream_id": DraftBlock.UPSTREAM_ID})
        await ack()
        await self._tell(it, self.done_answer(await self.service.link(draft_id, pasted, user_id=it.user_id)))
