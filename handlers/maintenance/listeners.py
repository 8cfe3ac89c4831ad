"""Slack listeners for `/maintenance`: parse the payload, call the service, render."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from slack_bolt.async_app import AsyncApp

import handlers.payload as payload
from bot.clients.slack import tell_user
from bot.context import AppContext
from bot.errors import InputInvalid, NotFound, NotSupported
from bot.messages.format import section
from bot.messages.maintenance import EXTEND_MINUTES, OverrunId
from bot.services.maintenance import Done, MaintenanceService
from bot.services.maintenance_forms import (
    DRAFT_CANCEL,
    DRAFT_EDIT,
    CancelForm,
    ScheduleForm,
    format_servers,
)
from handlers.errors import renders_errors, who_and_where
from handlers.maintenance import views
from handlers.maintenance.ids import Action, Block, Callback
from store.models import MaintenanceWindow

# Which block shows the error for each form field.
FIELD_BLOCKS = {
    "title": Block.TITLE,
    "start": Block.START,
    "end": Block.END,
    "servers": Block.SERVERS,
}


def _check(problems: dict[str, str]) -> None:
    if problems:
        raise InputInvalid({FIELD_BLOCKS[field]: message for field, message in problems.items()})


def parse_schedule(values: dict, window_id: int | None = None) -> ScheduleForm:
    return ScheduleForm(
        title=payload.text(values, Block.TITLE, Action.TITLE),
        description=payload.text(values, Block.DESCRIPTION, Action.DESCRIPTION),
        start=payload.date_time(values, Block.START, Action.START),
        end=payload.date_time(values, Block.END, Action.END),
        component_ids=tuple(payload.selected_many(values, Block.COMPONENTS, Action.COMPONENTS)),
        servers_text=payload.text(values, Block.SERVERS, Action.SERVERS),
        window_id=window_id,
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


def _window_of(body: dict) -> int:
    window_id = payload.metadata(body).get("window")
    if not isinstance(window_id, int):
        raise NotFound("That form no longer says which window it was for. Open it again with `/maintenance`.")
    return window_id


class MaintenanceHandlers:
    def __init__(self, ctx: AppContext, service: MaintenanceService):
        self.ctx = ctx
        self.service = service

    # --- /maintenance ------------------------------------------------------------------
    async def command(self, ack, body: dict) -> None:
        sub, rest = payload.split_command(body.get("text"))
        if sub in ("", "schedule"):
            await self.open_schedule(ack, body, ScheduleForm(title=rest))
        elif sub == "list":
            self.service.ensure_enabled()
            await ack()  # the API may be slow: answer Slack first
            text, blocks = views.window_list(await self.service.listing())
            user_id, channel_id = who_and_where(body)
            await tell_user(self.ctx.slack, user_id=user_id, channel_id=channel_id, text=text, blocks=blocks)
        elif sub == "status":
            backend = self.service.ensure_enabled()
            await ack()  # the API may be slow: answer Slack first
            live = await self.service.status()
            text, blocks = views.status_answer(live, backend.service)
            user_id, channel_id = who_and_where(body)
            await tell_user(self.ctx.slack, user_id=user_id, channel_id=channel_id, text=text, blocks=blocks)
        elif sub == "edit":
            await self.open_edit(ack, body, ref=rest)
        elif sub == "cancel":
            await self.open_cancel(ack, body, ref=rest)
        elif sub == "help":
            text, blocks = views.help_answer()
            await ack(text=text, blocks=blocks, response_type="ephemeral")
        else:
            text, blocks = views.help_answer(f"I don't know `{sub}`. Here is what `/maintenance` can do:")
            await ack(text=text, blocks=blocks, response_type="ephemeral")

    async def open_schedule(self, ack, body: dict, form: ScheduleForm) -> None:
        backend = self.service.ensure_enabled()
        self.service.ensure_allowed(who_and_where(body)[0])
        await ack()
        view = views.schedule_modal(form, backend, self.ctx.settings.sitrep_components, channel_id=who_and_where(body)[1])
        await self.ctx.slack.views_open(trigger_id=body["trigger_id"], view=view)

    async def open_edit(self, ack, body: dict, ref: str, form: ScheduleForm | None = None) -> None:
        backend = self.service.ensure_enabled()
        self.service.ensure_allowed(who_and_where(body)[0])
        window = await self.service.find_editable(ref)
        await ack()
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
        view = views.schedule_modal(
            form, backend, self.ctx.settings.sitrep_components, channel_id=who_and_where(body)[1], window=window
        )
        await self.ctx.slack.views_open(trigger_id=body["trigger_id"], view=view)

    async def open_cancel(self, ack, body: dict, ref: str, note: str = "") -> None:
        self.service.ensure_enabled()
        self.service.ensure_allowed(who_and_where(body)[0])
        window = await self.service.find_cancellable(ref)
        await ack()
        view = views.cancel_modal(window, note=note, channel_id=who_and_where(body)[1])
        await self.ctx.slack.views_open(trigger_id=body["trigger_id"], view=view)

    # --- the button on the announcement ------------------------------------------------
    async def button_cancel(self, ack, body: dict) -> None:
        await self.open_cancel(ack, body, ref="#" + payload.action_value(body))

    # --- modal submissions -------------------------------------------------------------
    async def submit_schedule(self, ack, body: dict) -> None:
        form = parse_schedule(payload.view_values(body))
        _check(self.service.problems(form))
        await ack()
        user_id, channel_id = who_and_where(body)
        done = await self.service.schedule(form, user_id=user_id, channel_id=channel_id)
        await self._tell_done(user_id, channel_id, done)

    async def submit_edit(self, ack, body: dict) -> None:
        window_id = _window_of(body)
        original = await self.service.get(window_id)
        form = keep_unshown(parse_schedule(payload.view_values(body), window_id=window_id), payload.metadata(body), original)
        _check(self.service.problems(form, original=original))
        await ack()
        user_id, channel_id = who_and_where(body)
        done = await self.service.edit(form, user_id=user_id, channel_id=channel_id)
        await self._tell_done(user_id, channel_id, done)

    async def submit_cancel(self, ack, body: dict) -> None:
        form = CancelForm(window_id=_window_of(body), note=payload.text(payload.view_values(body), Block.NOTE, Action.NOTE))
        await ack()
        user_id, channel_id = who_and_where(body)
        done = await self.service.cancel(form, user_id=user_id, channel_id=channel_id)
        await self._tell_done(user_id, channel_id, done)

    async def _tell_done(self, user_id: str, channel_id: str | None, done: Done) -> None:
        text, blocks = views.done_answer(done)
        if done.warning:
            blocks = blocks + [section(f":warning: {done.warning}")]
        await tell_user(self.ctx.slack, user_id=user_id, channel_id=channel_id, text=text, blocks=blocks)

    # --- kept drafts (Retry / Edit) ----------------------------------------------------
    async def retry_draft(self, draft_id: int, body: dict) -> None:
        user_id, channel_id = who_and_where(body)
        done = await self.service.retry(draft_id, user_id=user_id)
        await self._tell_done(user_id, channel_id, done)

    async def reopen_draft(self, ack, draft_id: int, body: dict) -> None:
        kind, form = await self.service.draft_form(draft_id)
        if kind == DRAFT_EDIT:
            await self.open_edit(ack, body, ref=f"#{form.window_id}", form=form)
        elif kind == DRAFT_CANCEL:
            await self.open_cancel(ack, body, ref=f"#{form.window_id}", note=form.note)
        else:
            await self.open_schedule(ack, body, form)


    # --- the overrun prompt's buttons (bot.messages.maintenance.overrun_prompt) -----------
    async def button_extend(self, ack, body: dict) -> None:
        await ack()
        user_id, channel_id = who_and_where(body)
        minutes = EXTEND_MINUTES[OverrunId(body["actions"][0]["action_id"])]
        window_id = int(payload.action_value(body))
        try:
            done = await self.service.extend(window_id, minutes, user_id=user_id, channel_id=channel_id)
        except NotSupported as exc:
            text, blocks = views.follow_on_offer(str(exc), window_id)
            await tell_user(self.ctx.slack, user_id=user_id, channel_id=channel_id, text=text, blocks=blocks)
            return
        await self._tell_done(user_id, channel_id, done)

    async def button_end_now(self, ack, body: dict) -> None:
        await ack()
        user_id, channel_id = who_and_where(body)
        done = await self.service.end_now(int(payload.action_value(body)), user_id=user_id, channel_id=channel_id)
        await self._tell_done(user_id, channel_id, done)

    async def button_follow_on(self, ack, body: dict) -> None:
        """The schedule modal for a window that starts when this one ends."""
        window = await self.service.find(f"#{payload.action_value(body)}")
        start = max(window.end or self.ctx.clock(), self.ctx.clock())
        form = replace(
            self.service.form_of(window, start=start, end=start + timedelta(minutes=30)), window_id=None
        )
        await self.open_schedule(ack, body, form)


def register(app: AsyncApp, ctx: AppContext) -> MaintenanceHandlers:
    """Wire the feature's listeners; returns what reopens and retries its kept drafts."""
    handlers = MaintenanceHandlers(ctx, MaintenanceService(ctx))
    app.command("/maintenance")(renders_errors(ctx, handlers.command))
    app.view(Callback.SCHEDULE)(renders_errors(ctx, handlers.submit_schedule))
    app.view(Callback.EDIT)(renders_errors(ctx, handlers.submit_edit))
    app.view(Callback.CANCEL)(renders_errors(ctx, handlers.submit_cancel))
    app.action(Action.CANCEL)(renders_errors(ctx, handlers.button_cancel))
    app.action(OverrunId.EXTEND_30)(renders_errors(ctx, handlers.button_extend))
    app.action(OverrunId.EXTEND_60)(renders_errors(ctx, handlers.button_extend))
    app.action(OverrunId.END_NOW)(renders_errors(ctx, handlers.button_end_now))
    app.action(OverrunId.FOLLOW_ON)(renders_errors(ctx, handlers.button_follow_on))
    return handlers
