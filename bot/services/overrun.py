"""The overrun prompt's buttons (*Extend* and *End now*, posted in a running window's
thread SITREP_OVERRUN_WARNING minutes before its end), as part of `MaintenanceService`:
each changes the end of a running window through the service (an edit, or on the status page a resolve)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bot.backends.base import end_now_for
from bot.errors import NotSupported
from bot.messages import maintenance as messages
from bot.services import reminders
from bot.services.maintenance_forms import ScheduleForm
from bot.services.outcomes import Outcome
from store import maintenance as window_store
from store.models import MaintenanceWindow
from store.states import DraftKind


class OverrunButtons:
    """Mixed into `MaintenanceService` (`bot.services.maintenance`), whose guards, lookups,
    backend and draft flow these use: `require_allowed`, `_find_active`, `backend`, `submit`,
    `windows`, `_slack_step`, `get`, `_permalink`."""

    def form_of(self, window: MaintenanceWindow, **changes: Any) -> ScheduleForm:
        """The window as the schedule/edit form would show it, with `changes` applied."""
        fields: dict[str, Any] = {
            "title": window.title,
            "description": window.description,
            "start": window.start,
            "end": window.end,
            "component_ids": tuple(c.id for c in self.ctx.settings.sitrep_components if c.name in window.components),
            "servers_text": ", ".join(str(s) for s in window.servers),
            "window_id": window.id,
        }
        fields.update(changes)
        return ScheduleForm(**fields)

    async def extend(self, window_id: int, minutes: int, *, user_id: str, channel_id: str | None) -> Outcome:
        """Move a running window's end later: an edit of its end (PUT on AppFirst, with the
        server's time offset compensated), so reminders and the announcement follow. The
        status page cannot move a window: `NotSupported`, and the person is offered a
        follow-on window instead."""
        self.require_allowed(user_id)
        window = await self._find_active(f"#{window_id}")
        if not self.backend.can_edit:
            raise NotSupported(
                f"{self.backend.display_name} cannot move a maintenance window's end once it is scheduled. "
                "You can schedule a follow-on window that starts when this one ends."
            )
        end = max(window.end or self.ctx.clock(), self.ctx.clock()) + timedelta(minutes=minutes)
        return await self.submit(DraftKind.EDIT, self.form_of(window, end=end), user_id=user_id, channel_id=channel_id)

    async def end_now(self, window_id: int, *, user_id: str, channel_id: str | None) -> Outcome:
        """End a running window now: AppFirst is sent end = now (an edit); the status page
        resolves the window's incident. Either way the "ended" reminder comes due now."""
        self.require_allowed(user_id)
        window = await self._find_active(f"#{window_id}")
        now = self.ctx.clock()
        if self.backend.can_edit:
            end = end_now_for(now, window.start, self.backend.time_step)
            return await self.submit(DraftKind.EDIT, self.form_of(window, end=end), user_id=user_id, channel_id=channel_id)
        await self.backend.cancel(window.upstream_id)  # resolves the incident on the status page
        async with self.ctx.db.session() as session, session.begin():
            stored = await window_store.get_window(session, window.id)
            stored.end = now
            stored.updated_at = now
            window = stored
        await reminders.schedule_window_reminders(self.ctx, window.id)
        reply = messages.ended_early_reply(window, user_id, now)

        async def publish() -> None:
            await self.windows.post_in_thread(window.id, reply)
            await self.windows.refresh_announcement(window.id)

        warning = await self._slack_step(window.id, publish)
        return Outcome(DraftKind.EDIT, await self.get(window.id), permalink=await self._permalink(window), warning=warning)
