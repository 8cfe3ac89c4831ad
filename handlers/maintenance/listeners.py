"""Slack listeners for `/maintenance`: parse the payload, call the service, render."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from slack_bolt.async_app import AsyncApp

import handlers.payload as payload
from bot.context import AppContext
from bot.errors import NotFound, NotSupported
from bot.messages.maintenance import EXTEND_MINUTES, OverrunId
from bot.services.maintenance import MaintenanceService
from bot.services.maintenance_forms import CancelForm, ScheduleForm, format_servers
from bot.services.recurrence import Repeat
from handlers.errors import renders_errors
from handlers.feature import FeatureHandlers, modal_errors
from handlers.maintenance import views
from handlers.maintenance.ids import Action, Block, Callback, Scope
from handlers.opening import open_form
from handlers.payload import Interaction
from store.models import MaintenanceWindow
from store.states import DraftKind

# Which block shows the error for each form field.
FIELD_BLOCKS = {
    "title": Block.TITLE,
    "start": Block.START,
    "end": Block.END,
    "servers": Block.SERVERS,
    "repeat": Block.REPEAT,
    "until": Block.UNTIL,
    "times": Block.TIMES,
    "zone": Block.ZONE,
}


def parse_schedule(values: dict, window_id: int | None = None) -> ScheduleForm:
    repeat = {}
    if window_id is None:
        repeat = {
            "repeat": payload.selected(values, Block.REPEAT, Action.REPEAT) or Repeat.NONE,
            "weekdays": tuple(int(d) for d in payload.selected_many(values, Block.WEEKDAYS, Action.WEEKDAYS) if d.isdigit()),
            "until": payload.picked_date(values, Block.UNTIL, Action.UNTIL),
            "times_text": payload.text(values, Block.TIMES, Action.TIMES),
            "zone": payload.text(values, Block.ZONE, Action.ZONE),
        }
    return ScheduleForm(
        title=payload.text(values, Block.TITLE, Action.TITLE),
        description=payload.text(values, Block.DESCRIPTION, Action.DESCRIPTION),
        start=payload.date_time(values, Block.START, Action.START),
        end=payload.date_time(values, Block.END, Action.END),
        component_ids=tuple(payload.selected_many(values, Block.COMPONENTS, Action.COMPONENTS)),
        servers_text=payload.text(values, Block.SERVERS, Action.SERVERS),
        window_id=window_id,
        following=window_id is not None and payload.selected(values, Block.SCOPE, Action.SCOPE) == Scope.FOLLOWING,
        **repeat,
    )


def keep_unshown(form: ScheduleForm, metadata: dict, original: MaintenanceWindow | None) -> ScheduleForm:
    """A field whose stored value was too long to show in the form (views.KEEP_KEY), left
    empty, keeps the stored value: nothing is cut or lost by saving the form."""
    kept = metadata.get(views.KEEP_KEY) or []
    if original is None or not kept:
        return form
    unchanged = {
        "title": ("title", original.title),
        "description": ("description", original.description),
        "servers": ("servers_text", format_servers(original.servers)),
    }
    changes = {attr: value for name, (attr, value) in unchanged.items() if name in kept and not getattr(form, attr)}
    return replace(form, **changes)


# The titles of the modals opened before what they show is read (`handlers.opening`).
EDIT_TITLE, CANCEL_TITLE = "Edit maintenance", "Cancel maintenance"

#: Buttons that only open a form (see `handlers.incident.listeners.OPENS_A_FORM`).
OPENS_A_FORM = frozenset({Action.CANCEL, Action.SCHEDULE, OverrunId.FOLLOW_ON})


def _window_of(it: Interaction) -> int:
    window_id = it.metadata.get("window")
    if not isinstance(window_id, int):
        raise NotFound("That form no longer says which window it was for. Open it again with `/maintenance`.")
    return window_id


class MaintenanceHandlers(FeatureHandlers):
    service: MaintenanceService

    def __init__(self, ctx: AppContext, service: MaintenanceService):
        super().__init__(ctx, service, views.done_answer)

    # --- /maintenance ------------------------------------------------------------------
    async def command(self, ack, it: Interaction) -> None:
        sub, rest = it.command
        if sub in ("", "schedule"):
            await self.open_schedule(ack, it, ScheduleForm(title=rest))
        elif sub == "list":
            self.service.require_enabled()
            await ack()  # the API may be slow: answer Slack first
            await self._tell(it, views.window_list(await self.service.listing()))
        elif sub == "status":
            backend = self.service.require_enabled()
            await ack()  # the API may be slow: answer Slack first
            live = await self.service.status()
            await self._tell(it, views.status_answer(live, backend.service))
        elif sub == "edit":
            await self.open_edit(ack, it, ref=rest)
        elif sub == "cancel":
            await self.open_cancel(ack, it, ref=rest)
        elif sub == "help":
            text, blocks = views.help_answer()
            await ack(text=text, blocks=blocks, response_type="ephemeral")
        else:
            text, blocks = views.help_answer(f"I don't know `{sub}`. Here is what `/maintenance` can do:")
            await ack(text=text, blocks=blocks, response_type="ephemeral")

    async def open_schedule(self, ack, it: Interaction, form: ScheduleForm) -> None:
        """A new form, which reads nothing first: opened at once."""
        view = self._schedule_view(it, form)
        await ack()
        await self.ctx.slack.views_open(trigger_id=it.trigger_id, view=view)

    def _schedule_view(self, it: Interaction, form: ScheduleForm) -> dict:
        backend = self.service.require_enabled()
        self.service.require_allowed(it.user_id)
        return views.schedule_modal(form, backend, self.ctx.settings.sitrep_components, channel_id=it.channel_id)

    async def open_edit(self, ack, it: Interaction, ref: str) -> None:
        await open_form(self.ctx, ack, it, self._edit_view(it, ref), title=EDIT_TITLE)

    async def _edit_view(self, it: Interaction, ref: str, form: ScheduleForm | None = None) -> dict:
        backend = self.service.require_enabled()
        self.service.require_allowed(it.user_id)
        window = await self.service.find_editable(ref)
        if form is None:
            form = ScheduleForm(
                title=window.title,
                description=window.description,
                start=window.start,
                end=window.end,
                component_ids=tuple(c.id for c in self.ctx.settings.sitrep_components if c.name in window.components),
                servers_text=format_servers(window.servers),
                window_id=window.id,
            )
        return views.schedule_modal(form, backend, self.ctx.settings.sitrep_components, channel_id=it.channel_id, window=window)

    async def open_cancel(self, ack, it: Interaction, ref: str) -> None:
        await open_form(self.ctx, ack, it, self._cancel_view(it, ref), title=CANCEL_TITLE)

    async def _cancel_view(self, it: Interaction, ref: str, note: str = "") -> dict:
        self.service.require_enabled()
        self.service.require_allowed(it.user_id)
        window = await self.service.find_cancellable(ref)
        return views.cancel_modal(window, note=note, channel_id=it.channel_id)

    # --- the button on the announcement (and the home tab) ------------------------------
    async def button_cancel(self, ack, it: Interaction) -> None:
        await self.open_cancel(ack, it, ref="#" + it.action_value)

    async def button_schedule(self, ack, it: Interaction) -> None:
        """*Schedule maintenance* on the home tab."""
        await self.open_schedule(ack, it, ScheduleForm(title=""))

    # --- modal submissions -------------------------------------------------------------
    async def submit_schedule(self, ack, it: Interaction) -> None:
        form = parse_schedule(it.values)
        modal_errors(self.service.problems(form), FIELD_BLOCKS)
        await self._submit(it, DraftKind.SCHEDULE, form, ack=ack)

    async def submit_edit(self, ack, it: Interaction) -> None:
        window_id = _window_of(it)
        original = await self.service.get(window_id)
        form = keep_unshown(parse_schedule(it.values, window_id=window_id), it.metadata, original)
        modal_errors(self.service.problems(form, original=original), FIELD_BLOCKS)
        await self._submit(it, DraftKind.EDIT, form, ack=ack)

    async def submit_cancel(self, ack, it: Interaction) -> None:
        form = CancelForm(
            window_id=_window_of(it),
            note=payload.text(it.values, Block.NOTE, Action.NOTE),
            following=payload.selected(it.values, Block.SCOPE, Action.SCOPE) == Scope.FOLLOWING,
        )
        await self._submit(it, DraftKind.CANCEL, form, ack=ack)

    # --- kept drafts (Retry / Edit) ----------------------------------------------------
    async def draft_view(self, draft_id: int, it: Interaction) -> dict:
        kind, form = await self.service.reopen(draft_id)
        if kind == DraftKind.EDIT:
            return await self._edit_view(it, f"#{form.window_id}", form=form)
        if kind == DraftKind.CANCEL:
            return await self._cancel_view(it, f"#{form.window_id}", note=form.note)
        return self._schedule_view(it, form)

    # --- the overrun prompt's buttons (bot.messages.maintenance.overrun_prompt) -----------
    async def button_extend(self, ack, it: Interaction) -> None:
        await ack()
        window_id = int(it.action_value)
        try:
            outcome = await self.service.extend(
                window_id, EXTEND_MINUTES[OverrunId(it.action_id)], user_id=it.user_id, channel_id=it.channel_id
            )
        except NotSupported as exc:
            await self._tell(it, views.follow_on_offer(str(exc), window_id))
            return
        await self._tell(it, views.done_answer(outcome))

    async def button_end_now(self, ack, it: Interaction) -> None:
        await ack()
        outcome = await self.service.end_now(int(it.action_value), user_id=it.user_id, channel_id=it.channel_id)
        await self._tell(it, views.done_answer(outcome))

    async def button_follow_on(self, ack, it: Interaction) -> None:
        """The schedule modal for a window that starts when this one ends."""

        async def follow_on_view() -> dict:
            window = await self.service.find(f"#{it.action_value}")
            start = max(window.end or self.ctx.clock(), self.ctx.clock())
            form = replace(self.service.form_of(window, start=start, end=start + timedelta(minutes=30)), window_id=None)
            return self._schedule_view(it, form)

        await open_form(self.ctx, ack, it, follow_on_view(), title="Schedule maintenance")


def register(app: AsyncApp, ctx: AppContext) -> MaintenanceHandlers:
    """Wire the feature's listeners; returns what reopens and retries its kept drafts."""
    handlers = MaintenanceHandlers(ctx, MaintenanceService(ctx))
    listeners = [
        (app.command, "/maintenance", handlers.command),
        (app.view, Callback.SCHEDULE, handlers.submit_schedule),
        (app.view, Callback.EDIT, handlers.submit_edit),
        (app.view, Callback.CANCEL, handlers.submit_cancel),
        (app.action, Action.CANCEL, handlers.button_cancel),
        (app.action, Action.SCHEDULE, handlers.button_schedule),
        (app.action, OverrunId.EXTEND_30, handlers.button_extend),
        (app.action, OverrunId.EXTEND_60, handlers.button_extend),
        (app.action, OverrunId.END_NOW, handlers.button_end_now),
        (app.action, OverrunId.FOLLOW_ON, handlers.button_follow_on),
    ]
    for kind, key, listener in listeners:
        kind(key)(renders_errors(ctx, listener))
    return handlers
