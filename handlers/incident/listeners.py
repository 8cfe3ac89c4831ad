"""Slack listeners for `/incident`: parse the payload, call the service, render."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

import handlers.payload as payload
from bot.clients.slack import tell_user
from bot.context import AppContext
from bot.errors import InputInvalid, NotFound
from bot.messages.format import section
from bot.services.incident_forms import (
    DRAFT_DECLARE,
    DRAFT_RESOLVE,
    DRAFT_UPDATE,
    DeclareForm,
    ResolveForm,
    UpdateForm,
)
from bot.services.incidents import IncidentService, Submitted
from handlers.errors import renders_errors, who_and_where
from handlers.incident import views
from handlers.incident.ids import NOTIFY_VALUE, Action, Block, Callback
from store.models import Incident

# Which block shows the error for each form field.
FIELD_BLOCKS = {
    "title": Block.TITLE,
    "status": Block.STATUS,
    "impact": Block.IMPACT,
    "text": Block.UPDATE_TEXT,
    "incident": Block.INCIDENT,
}


def _check(problems: dict[str, str]) -> None:
    if problems:
        raise InputInvalid({FIELD_BLOCKS[field]: message for field, message in problems.items()})


def parse_declare(values: dict) -> DeclareForm:
    return DeclareForm(
        title=payload.text(values, Block.TITLE, Action.TITLE),
        description=payload.text(values, Block.DESCRIPTION, Action.DESCRIPTION),
        status=payload.selected(values, Block.STATUS, Action.STATUS) or "",
        impact=payload.selected(values, Block.IMPACT, Action.IMPACT) or "",
        component_ids=tuple(payload.selected_many(values, Block.COMPONENTS, Action.COMPONENTS)),
        notify=NOTIFY_VALUE in payload.selected_many(values, Block.NOTIFY, Action.NOTIFY),
    )


def _incident_choice(values: dict) -> int:
    chosen = payload.selected(values, Block.INCIDENT, Action.INCIDENT)
    if not chosen or not chosen.isdigit():
        raise InputInvalid({Block.INCIDENT: "Pick an incident."})
    return int(chosen)


class IncidentHandlers:
    def __init__(self, ctx: AppContext, service: IncidentService):
        self.ctx = ctx
        self.service = service

    # --- /incident ---------------------------------------------------------------------
    async def command(self, ack, body: dict) -> None:
        sub, rest = payload.split_command(body.get("text"))
        if sub in ("", "declare"):
            await self.open_declare(ack, body, DeclareForm(title=rest))
        elif sub == "update":
            await self.open_update(ack, body, ref=rest or None)
        elif sub == "resolve":
            await self.open_resolve(ack, body, ref=rest or None)
        elif sub == "list":
            incidents = await self.service.open_incidents()
            text, blocks = views.incident_list(incidents, self.ctx.clock(), {i.id: i.permalink for i in incidents if i.permalink})
            await ack(text=text, blocks=blocks, response_type="ephemeral")
        elif sub == "help":
            text, blocks = views.help_answer()
            await ack(text=text, blocks=blocks, response_type="ephemeral")
        else:
            text, blocks = views.help_answer(f"I don't know `{sub}`. Here is what `/incident` can do:")
            await ack(text=text, blocks=blocks, response_type="ephemeral")

    async def open_declare(self, ack, body: dict, form: DeclareForm) -> None:
        self.service.ensure_enabled()
        self.service.ensure_allowed(who_and_where(body)[0])
        await ack()
        settings = self.ctx.settings
        view = views.declare_modal(
            form,
            settings.sitrep_components,
            statuses=settings.sitrep_incident_statuses,
            impacts=settings.sitrep_incident_impacts,
            channel_id=who_and_where(body)[1],
        )
        await self.ctx.slack.views_open(trigger_id=body["trigger_id"], view=view)

    async def _open_choice(self, body: dict, ref: str | None) -> Incident | None:
        """The incident to preselect: the one named, else the only one open, else none."""
        self.service.ensure_enabled()
        self.service.ensure_allowed(who_and_where(body)[0])
        if ref:
            return await self.service.find_open(ref)
        incidents = await self.service.open_incidents()
        if not incidents:
            raise NotFound("There are no open incidents. Declare one with `/incident declare`.")
        return incidents[0] if len(incidents) == 1 else None

    async def open_update(self, ack, body: dict, ref: str | None, text: str = "", status: str | None = None) -> None:
        chosen = await self._open_choice(body, ref)
        await ack()
        view = views.update_modal(
            chosen,
            status=status,
            statuses=self.ctx.settings.sitrep_incident_statuses,
            text=text,
            channel_id=who_and_where(body)[1],
        )
        await self.ctx.slack.views_open(trigger_id=body["trigger_id"], view=view)

    async def open_resolve(self, ack, body: dict, ref: str | None, note: str = "") -> None:
        chosen = await self._open_choice(body, ref)
        await ack()
        view = views.resolve_modal(chosen, note=note, channel_id=who_and_where(body)[1])
        await self.ctx.slack.views_open(trigger_id=body["trigger_id"], view=view)

    # --- the incident picker's type-ahead (block_suggestion) ---------------------------
    async def suggest_incidents(self, ack, body: dict) -> None:
        incidents = await self.service.open_incidents()
        await ack(options=views.incident_options(incidents, body.get("value") or ""))

    # --- buttons on the announcement ---------------------------------------------------
    async def button_update(self, ack, body: dict) -> None:
        await self.open_update(ack, body, ref=payload.action_value(body))

    async def button_resolve(self, ack, body: dict) -> None:
        await self.open_resolve(ack, body, ref=payload.action_value(body))

    # --- modal submissions -------------------------------------------------------------
    async def submit_declare(self, ack, body: dict) -> None:
        form = parse_declare(payload.view_values(body))
        settings = self.ctx.settings
        _check(form.problems(statuses=settings.sitrep_incident_statuses, impacts=settings.sitrep_incident_impacts))
        await ack()
        await self._submit(body, DRAFT_DECLARE, form)

    async def submit_update(self, ack, body: dict) -> None:
        values = payload.view_values(body)
        form = UpdateForm(
            incident_id=_incident_choice(values),
            status=payload.selected(values, Block.STATUS, Action.STATUS) or "",
            text=payload.text(values, Block.UPDATE_TEXT, Action.UPDATE_TEXT),
        )
        _check(form.problems(statuses=self.ctx.settings.sitrep_incident_statuses))
        await ack()
        await self._submit(body, DRAFT_UPDATE, form)

    async def submit_resolve(self, ack, body: dict) -> None:
        values = payload.view_values(body)
        form = ResolveForm(incident_id=_incident_choice(values), note=payload.text(values, Block.NOTE, Action.NOTE))
        await ack()
        await self._submit(body, DRAFT_RESOLVE, form)

    async def _submit(self, body: dict, kind: str, form) -> None:
        user_id, channel_id = who_and_where(body)
        result = await self.service.submit(kind, form, user_id=user_id, channel_id=channel_id)
        await self._tell_done(user_id, channel_id, kind, result)

    async def _tell_done(self, user_id: str, channel_id: str | None, kind: str, result: Submitted) -> None:
        if kind == DRAFT_DECLARE:
            text, blocks = views.declared_answer(result.incident, result.permalink)
        else:
            verb = "Posted an update to" if kind == DRAFT_UPDATE else "Resolved"
            text, blocks = views.done_answer(verb, result.incident, result.permalink)
        if result.warning:
            blocks = blocks + [section(f":warning: {result.warning}")]
        await tell_user(self.ctx.slack, user_id=user_id, channel_id=channel_id, text=text, blocks=blocks)

    # --- kept drafts (Retry / Edit) ----------------------------------------------------
    async def retry_draft(self, draft_id: int, body: dict) -> None:
        user_id, channel_id = who_and_where(body)
        kind, result = await self.service.retry(draft_id, user_id=user_id)
        await self._tell_done(user_id, channel_id, kind, result)

    async def reopen_draft(self, ack, draft_id: int, body: dict) -> None:
        kind, form = await self.service.draft_form(draft_id)
        if kind == DRAFT_DECLARE:
            await self.open_declare(ack, body, form)
        elif kind == DRAFT_UPDATE:
            await self.open_update(ack, body, ref=str(form.incident_id), text=form.text, status=form.status)
        else:
            await self.open_resolve(ack, body, ref=str(form.incident_id), note=form.note)


def register(app: AsyncApp, ctx: AppContext) -> IncidentHandlers:
    """Wire the feature's listeners; returns what reopens and retries its kept drafts."""
    handlers = IncidentHandlers(ctx, IncidentService(ctx))
    app.command("/incident")(renders_errors(ctx, handlers.command))
    app.view(Callback.DECLARE)(renders_errors(ctx, handlers.submit_declare))
    app.view(Callback.UPDATE)(renders_errors(ctx, handlers.submit_update))
    app.view(Callback.RESOLVE)(renders_errors(ctx, handlers.submit_resolve))
    app.action(Action.POST_UPDATE)(renders_errors(ctx, handlers.button_update))
    app.action(Action.RESOLVE)(renders_errors(ctx, handlers.button_resolve))
    app.options(Action.INCIDENT)(renders_errors(ctx, handlers.suggest_incidents))
    return handlers
