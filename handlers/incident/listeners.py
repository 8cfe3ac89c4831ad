"""Slack listeners for `/incident`: parse the payload, call the service, render."""

from __future__ import annotations

import re
from dataclasses import replace

from slack_bolt.async_app import AsyncApp

import handlers.payload as payload
from bot.context import AppContext
from bot.errors import InputInvalid, NotFound
from bot.services.digest import DigestService
from bot.services.incident_forms import DeclareForm, ResolveForm, UpdateForm
from bot.services.incidents import IncidentService
from bot.services.postmortem import PostmortemService
from bot.services.timeline import PIN, TimelineService
from handlers.errors import renders_errors
from handlers.feature import FeatureHandlers, modal_errors
from handlers.incident import views
from handlers.incident.ids import NOTIFY_VALUE, Action, Block, Callback
from handlers.opening import open_form
from handlers.payload import Interaction
from store.models import Incident
from store.states import DraftKind

# Which block shows the error for each form field.
FIELD_BLOCKS = {
    "title": Block.TITLE,
    "status": Block.STATUS,
    "impact": Block.IMPACT,
    "text": Block.UPDATE_TEXT,
    "incident": Block.INCIDENT,
}


#: Buttons that only open a form: Slack spends their trigger once, so a second delivery
#: cannot act, and the replay guard keeps no database key for them (`handlers.repeatable`).
OPENS_A_FORM = frozenset({Action.POST_UPDATE, Action.RESOLVE, Action.DECLARE})

# The titles of the modals opened before what they show is read (`handlers.opening`).
UPDATE_TITLE, RESOLVE_TITLE = "Post an update", "Resolve incident"

MAX_LIST_PAGE = 1_000_000  # far past any real list; keeps the OFFSET a plain integer


def list_page(text: str) -> int | None:
    """`/incident list [page]`: the page asked for, from 1; None when it is not a page number."""
    text = text.strip()
    if not text:
        return 1
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIST_PAGE:
        return None
    return int(text)


MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")


def parse_lead(text: str) -> tuple[str | None, str | None]:
    """`/incident lead [ref] @person`: the reference (None: the only one open) and the
    person's user ID (Slack sends `<@U123|name>`, or `<@U123>`); None when nobody is named."""
    found = MENTION.search(text)
    if found is None:
        return None, None
    ref = (text[: found.start()] + text[found.end() :]).strip()
    return ref or None, found.group(1)


LEAD_USAGE = "Name the new lead: `/incident lead [ref] @person`, like `/incident lead #12 @dana`."


def parse_declare(values: dict) -> DeclareForm:
    return DeclareForm(
        title=payload.text(values, Block.TITLE, Action.TITLE),
        description=payload.text(values, Block.DESCRIPTION, Action.DESCRIPTION),
        status=payload.selected(values, Block.STATUS, Action.STATUS) or "",
        impact=payload.selected(values, Block.IMPACT, Action.IMPACT) or "",
        component_ids=tuple(payload.selected_many(values, Block.COMPONENTS, Action.COMPONENTS)),
        notify=NOTIFY_VALUE in payload.selected_many(values, Block.NOTIFY, Action.NOTIFY),
        lead=payload.selected_user(values, Block.LEAD, Action.LEAD) or "",
    )


def _incident_choice(values: dict) -> int:
    chosen = payload.selected(values, Block.INCIDENT, Action.INCIDENT)
    if not chosen or not chosen.isdigit():
        raise InputInvalid({Block.INCIDENT: "Pick an incident."})
    return int(chosen)


class IncidentHandlers(FeatureHandlers):
    service: IncidentService

    def __init__(self, ctx: AppContext, service: IncidentService, digests: DigestService, timeline: TimelineService):
        super().__init__(ctx, service, views.done_answer)
        self.digests = digests
        self.timeline = timeline
        self.postmortems = PostmortemService(ctx)

    # --- :pushpin: reactions (the Events API) ------------------------------------------
    async def reaction_added(self, ack, it: Interaction) -> None:
        """Bolt has acknowledged the event; a pin on a message of an incident joins its timeline."""
        if it.reaction == PIN and it.channel_id and it.message_ts:
            await self.timeline.pinned(it.channel_id, it.message_ts)

    async def reaction_removed(self, ack, it: Interaction) -> None:
        if it.reaction == PIN and it.channel_id and it.message_ts:
            await self.timeline.unpinned(it.channel_id, it.message_ts)

    # --- /incident ---------------------------------------------------------------------
    async def command(self, ack, it: Interaction) -> None:
        sub, rest = it.command
        if sub in ("", "declare"):
            await self.open_declare(ack, it, DeclareForm(title=rest))
        elif sub == "update":
            await self.open_update(ack, it, ref=rest or None)
        elif sub == "resolve":
            await self.open_resolve(ack, it, ref=rest or None)
        elif sub == "lead":
            ref, lead = parse_lead(rest)
            if lead is None:
                await ack(text=LEAD_USAGE, response_type="ephemeral")
                return
            await self.change_lead(ack, it, ref, lead)
        elif sub == "timeline":
            self.service.require_enabled()
            incident = await self.service.find_any(rest) if rest else await self._open_choice(it, None)
            if incident is None:
                raise NotFound("Several incidents are open: say which, like `/incident timeline #12`.")
            await ack()  # the timeline can be long: answered after the ack
            incident, events = await self.timeline.events(str(incident.id))
            await self._tell(it, views.timeline_answer(incident, events))
        elif sub == "postmortem":
            self.service.require_enabled()
            self.service.require_allowed(it.user_id)
            incident = await self.postmortems.choose(rest or None)
            await ack()  # the upload takes three Slack calls: answered after the ack
            share = await self.postmortems.share(incident)
            await self._tell(it, views.postmortem_answer(share, incident.permalink))
        elif sub == "list":
            page = list_page(rest)
            if page is None:
                text, blocks = views.help_answer("`/incident list` takes a page number, like `/incident list 2`.")
                await ack(text=text, blocks=blocks, response_type="ephemeral")
                return
            incidents, total = await self.service.open_page(page, views.LIST_PAGE)
            permalinks = {i.id: i.permalink for i in incidents if i.permalink}
            text, blocks = views.incident_list(incidents, self.ctx.clock(), permalinks, total=total, page=page)
            await ack(text=text, blocks=blocks, response_type="ephemeral")
        elif sub == "digest":
            await ack()  # the week's links take Slack calls: answered after the ack
            start, end = self.digests.current_week()
            await self._tell(it, views.digest_answer(await self.digests.week(start, end)))
        elif sub == "help":
            text, blocks = views.help_answer()
            await ack(text=text, blocks=blocks, response_type="ephemeral")
        else:
            text, blocks = views.help_answer(f"I don't know `{sub}`. Here is what `/incident` can do:")
            await ack(text=text, blocks=blocks, response_type="ephemeral")

    async def open_declare(self, ack, it: Interaction, form: DeclareForm) -> None:
        """A new form, which reads nothing first: a refusal is the ack's answer, the form is
        built after the ack (when fifty people declare at once, each ack waits on no form)."""
        self._require_may_declare(it)
        await ack()
        await self.ctx.slack.views_open(trigger_id=it.trigger_id, view=self._declare_view(it, form, fresh=True))

    def _require_may_declare(self, it: Interaction) -> None:
        """Declaring is on and the person may: raises the refusal the error handler renders."""
        self.service.require_enabled()
        self.service.require_allowed(it.user_id)

    def _declare_view(self, it: Interaction, form: DeclareForm, *, fresh: bool) -> dict:
        """`fresh`: a new form, which gets the operator's defaults; a kept draft shows what its
        person chose. Whether the person may declare is checked by the caller."""
        settings = self.ctx.settings
        if fresh:
            form = replace(
                form,
                impact=form.impact or settings.sitrep_default_impact or "",
                notify=form.notify or settings.sitrep_notify_default,
            )
        return views.declare_modal(
            form,
            settings.sitrep_components,
            statuses=settings.sitrep_incident_statuses,
            impacts=settings.sitrep_incident_impacts,
            channel_id=it.channel_id,
            declarer=it.user_id,
        )

    async def change_lead(self, ack, it: Interaction, ref: str | None, lead: str) -> None:
        """Checked before the ack (a refusal is the answer); the posts after it."""
        incident = await self._open_choice(it, ref)
        if incident is None:
            raise NotFound("Several incidents are open: say which, like `/incident lead #12 @dana`.")
        if incident.lead == lead:
            raise NotFound(f"<@{lead}> already leads incident #{incident.id}.")
        await ack()
        incident, warning = await self.service.change_lead(str(incident.id), lead, it.user_id)
        await self._tell(it, views.lead_answer(incident, incident.permalink, warning))

    async def _open_choice(self, it: Interaction, ref: str | None) -> Incident | None:
        """The incident to preselect: the one named, else the only one open, else none."""
        self.service.require_enabled()
        self.service.require_allowed(it.user_id)
        if ref:
            return await self.service.find_open(ref)
        return await self.service.only_open()

    async def open_update(self, ack, it: Interaction, ref: str | None) -> None:
        await open_form(self.ctx, ack, it, self._update_view(it, ref), title=UPDATE_TITLE)

    async def _update_view(self, it: Interaction, ref: str | None, text: str = "", status: str | None = None) -> dict:
        chosen = await self._open_choice(it, ref)
        return views.update_modal(
            chosen,
            status=status,
            statuses=self.ctx.settings.sitrep_incident_statuses,
            text=text,
            channel_id=it.channel_id,
        )

    async def open_resolve(self, ack, it: Interaction, ref: str | None) -> None:
        await open_form(self.ctx, ack, it, self._resolve_view(it, ref), title=RESOLVE_TITLE)

    async def _resolve_view(self, it: Interaction, ref: str | None, note: str = "") -> dict:
        chosen = await self._open_choice(it, ref)
        return views.resolve_modal(chosen, note=note, channel_id=it.channel_id)

    # --- the *Declare incident* message shortcut, and the home tab's button ------------
    async def shortcut_declare(self, ack, it: Interaction) -> None:
        await self.open_declare(ack, it, views.declare_from_message(it.message_text, it.channel_id or "", it.message_ts))

    async def button_declare(self, ack, it: Interaction) -> None:
        await self.open_declare(ack, it, DeclareForm(title=""))

    # --- the incident picker's type-ahead (block_suggestion) ---------------------------
    async def suggest_incidents(self, ack, it: Interaction) -> None:
        number, words = views.picker_query(it.action_value)
        incidents = await self.service.suggest_open(number, words, views.MAX_SUGGESTIONS)
        await ack(options=views.incident_options(incidents, it.action_value))

    # --- buttons on the announcement ---------------------------------------------------
    async def button_update(self, ack, it: Interaction) -> None:
        await self.open_update(ack, it, ref=it.action_value)

    async def button_resolve(self, ack, it: Interaction) -> None:
        await self.open_resolve(ack, it, ref=it.action_value)

    async def button_lead(self, ack, it: Interaction) -> None:
        async def lead_view() -> dict:
            return views.lead_modal(await self._open_choice(it, it.action_value), channel_id=it.channel_id)

        await open_form(self.ctx, ack, it, lead_view(), title="Incident lead")

    async def submit_lead(self, ack, it: Interaction) -> None:
        lead = payload.selected_user(it.values, Block.LEAD, Action.LEAD)
        if not lead:
            raise InputInvalid({Block.LEAD: "Pick the new lead."})
        ref = str(it.metadata.get("incident", ""))
        self.service.require_allowed(it.user_id)
        await ack()
        incident, warning = await self.service.change_lead(ref, lead, it.user_id)
        await self._tell(it, views.lead_answer(incident, incident.permalink, warning))

    # --- modal submissions -------------------------------------------------------------
    async def submit_declare(self, ack, it: Interaction) -> None:
        form = replace(parse_declare(it.values), **views.source_of(it.metadata))
        settings = self.ctx.settings
        modal_errors(
            form.problems(statuses=settings.sitrep_incident_statuses, impacts=settings.sitrep_incident_impacts), FIELD_BLOCKS
        )
        await self._submit(it, DraftKind.DECLARE, form, ack=ack)

    async def submit_update(self, ack, it: Interaction) -> None:
        form = UpdateForm(
            incident_id=_incident_choice(it.values),
            status=payload.selected(it.values, Block.STATUS, Action.STATUS) or "",
            text=payload.text(it.values, Block.UPDATE_TEXT, Action.UPDATE_TEXT),
        )
        modal_errors(form.problems(statuses=self.ctx.settings.sitrep_incident_statuses), FIELD_BLOCKS)
        await self._submit(it, DraftKind.UPDATE, form, ack=ack)

    async def submit_resolve(self, ack, it: Interaction) -> None:
        form = ResolveForm(incident_id=_incident_choice(it.values), note=payload.text(it.values, Block.NOTE, Action.NOTE))
        await self._submit(it, DraftKind.RESOLVE, form, ack=ack)

    # --- kept drafts (Retry / Edit) ----------------------------------------------------
    async def draft_view(self, draft_id: int, it: Interaction) -> dict:
        kind, form = await self.service.reopen(draft_id)
        if kind == DraftKind.DECLARE:
            self._require_may_declare(it)
            return self._declare_view(it, form, fresh=False)
        if kind == DraftKind.UPDATE:
            return await self._update_view(it, str(form.incident_id), text=form.text, status=form.status)
        return await self._resolve_view(it, str(form.incident_id), note=form.note)


def register(app: AsyncApp, ctx: AppContext) -> IncidentHandlers:
    """Wire the feature's listeners; returns what reopens and retries its kept drafts."""
    handlers = IncidentHandlers(ctx, IncidentService(ctx), DigestService(ctx), TimelineService(ctx))
    listeners = [
        (app.command, "/incident", handlers.command),
        (app.view, Callback.DECLARE, handlers.submit_declare),
        (app.view, Callback.UPDATE, handlers.submit_update),
        (app.view, Callback.RESOLVE, handlers.submit_resolve),
        (app.action, Action.POST_UPDATE, handlers.button_update),
        (app.action, Action.RESOLVE, handlers.button_resolve),
        (app.action, Action.LEAD_BUTTON, handlers.button_lead),
        (app.view, Callback.LEAD, handlers.submit_lead),
        (app.action, Action.DECLARE, handlers.button_declare),
        (app.shortcut, Callback.DECLARE_FROM_MESSAGE, handlers.shortcut_declare),
        (app.options, Action.INCIDENT, handlers.suggest_incidents),
        (app.event, "reaction_added", handlers.reaction_added),
        (app.event, "reaction_removed", handlers.reaction_removed),
    ]
    for kind, key, listener in listeners:
        kind(key)(renders_errors(ctx, listener))
    return handlers
