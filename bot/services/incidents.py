"""The incident lifecycle: declare, update, resolve. Business rules live here, not in
handlers; every submission is kept as a draft until the status page accepted it."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.backends.statuspage import StatusPageMaintenance
from bot.clients.slack import slack_error
from bot.clients.statuspage import IncidentCreateModel, IncidentUpdateModel
from bot.errors import (
    AlreadyResolved,
    AnnouncementBusy,
    FeatureDisabled,
    NotAllowed,
    NotFound,
    SitrepError,
    UpstreamError,
)
from bot.messages import incident as messages
from bot.messages.format import escape, truncate
from bot.services import drafts, incident_forms, notices, nudges
from bot.services.base import FeatureService
from bot.services.drafts import SENDING_DRAFT, UnknownChoices
from bot.services.incident_forms import DeclareForm, ResolveForm, UpdateForm
from bot.services.outcomes import Outcome
from bot.services.postmortem import PostmortemService, resolve_warning
from bot.services.rooms import IncidentRooms
from bot.slack import posts
from bot.slack.channel import Message, Posted
from bot.slack.posts import Post, PostTag, RowClaim, Subject
from store import ids
from store import incidents as incident_store
from store import maintenance as window_store
from store.models import Incident, IncidentEvent, MaintenanceWindow, Reminder
from store.states import RESOLVED_STATUS, DraftKind, IncidentEventKind, ReminderKind

log = logging.getLogger(__name__)

#: Overlapping windows an announcement names at most (the rest are counted).
MAX_OVERLAPS = 5

#: How long the link form waits for the status page's list of windows in progress.
WINDOW_CHECK_SECONDS = 1.0


def _joined(*warnings: str | None) -> str | None:
    """Several warnings for one answer, as one paragraph."""
    return " ".join(w for w in warnings if w) or None


class IncidentService(FeatureService):
    FORMS = incident_forms.FORMS
    NUMBER_OF = "an incident"
    form_from_payload = staticmethod(incident_forms.form_from_payload)

    def __init__(self, ctx):
        super().__init__(ctx)
        self.rooms = IncidentRooms(ctx)

    # --- guards ----------------------------------------------------------------------
    def _client(self):
        if self.ctx.statuspage is None:
            raise FeatureDisabled(
                "Incidents are turned off: STATUSPAGE_URL is not set. Ask whoever runs sitrep to configure the status page."
            )
        return self.ctx.statuspage

    def require_enabled(self) -> None:
        self._client()

    def require_allowed(self, user_id: str | None) -> None:
        if not self.ctx.settings.is_admin(user_id or ""):
            raise NotAllowed("Only the people listed in SITREP_ADMINS can change incidents.")

    # --- reads -----------------------------------------------------------------------
    async def open_page(self, page: int, per_page: int) -> tuple[list[Incident], int]:
        """One page of the open incidents, newest first, and how many are open: two bounded
        queries, however many there are."""
        async with self.ctx.db.session() as session:
            incidents = await incident_store.open_incidents(session, limit=per_page, offset=(page - 1) * per_page)
            return incidents, await incident_store.count_open(session)

    async def only_open(self) -> Incident | None:
        """The one open incident when exactly one is open (to preselect it); None otherwise."""
        async with self.ctx.db.session() as session:
            incidents = await incident_store.open_incidents(session, limit=2)
        if not incidents:
            raise NotFound("There are no open incidents. Declare one with `/incident declare`.")
        return incidents[0] if len(incidents) == 1 else None

    async def suggest_open(self, number: str | None, words: list[str], limit: int) -> list[Incident]:
        """The picker's type-ahead: at most `limit` matching open incidents."""
        async with self.ctx.db.session() as session:
            return await incident_store.search_open(session, number=number, words=words, limit=limit)

    async def find_any(self, ref: str) -> Incident:
        """An incident, open or resolved, by short number or upstream ID."""
        async with self.ctx.db.session() as session:
            incident = await incident_store.find_incident(session, ref)
        if incident is None:
            raise NotFound(f"I don't know an incident `{escape(truncate(ref.strip(), 40))}`. Try `/incident list`.")
        return incident

    async def find_open(self, ref: str) -> Incident:
        """An open incident by short number or upstream ID, or a plain answer why not."""
        async with self.ctx.db.session() as session:
            incident = await incident_store.find_incident(session, ref)
            window = await self._window_named(session, ref) if incident is None else None
        if incident is None:
            shown = escape(truncate(ref.strip(), 40))
            if ids.too_large(ref):
                raise NotFound(f"`{shown}` is not an incident number: sitrep's are the short ones it shows, like `#12`.")
            if window is not None:
                raise NotFound(f"`{shown}` is maintenance #{window.id}, a maintenance window, not an incident.")
            raise NotFound(f"I don't know an incident `{shown}`. Try `/incident list`.")
        if not incident.is_open:
            raise NotFound(messages.already_resolved(incident))
        return incident

    # --- writes ----------------------------------------------------------------------
    async def _send(self, kind: DraftKind, form: Any, user_id: str) -> Outcome:
        if kind == DraftKind.DECLARE:
            return await self._declare(form, user_id)
        if kind == DraftKind.UPDATE:
            return await self._update(form, user_id)
        return await self._resolve(form, user_id)

    def unknown_choices(self, kind: DraftKind) -> UnknownChoices:
        """The status page has no call that lists or reads incidents: it cannot be checked,
        only linked (the person pastes the ID they see there)."""
        return UnknownChoices(service="the status page", can_check=False, can_link=kind == DraftKind.DECLARE)

    async def _known_as(self, upstream_id: str) -> str | None:
        async with self.ctx.db.session() as session:
            found = await incident_store.by_upstream(session, upstream_id)
        return f"incident #{found.id}" if found is not None else None

    @staticmethod
    async def _window_named(session, ref: str) -> MaintenanceWindow | None:
        """The status page's window with this GUID, in any spelling (its windows and incidents
        share one ID space); None for anything else (AppFirst's IDs are numbers)."""
        if ids.guid(ref) is None:
            return None
        return await window_store.by_upstream(session, StatusPageMaintenance.name, ref)

    async def _other_kind(self, upstream_id: str) -> str | None:
        """A maintenance window's ID, which the status page would let an incident's calls
        act on (resolving it ends the window). Its windows and incidents are made by the
        same call and share one ID space (seeds 000, 004); the only read is the list of
        windows in progress, so the store (windows sitrep made or synced) is asked first,
        then that list."""
        async with self.ctx.db.session() as session:
            window = await self._window_named(session, upstream_id)
        if window is not None:
            return f"That is the ID of maintenance #{window.id}, a maintenance window, not an incident. Paste the incident's ID."
        try:
            # Asked before the modal's answer (Slack waits 3 s for it): bounded well inside that.
            async with asyncio.timeout(WINDOW_CHECK_SECONDS):
                ongoing = await self._client().ongoing_maintenance()
        except (UpstreamError, TimeoutError) as exc:
            # Not knowing is no reason to refuse: a window not in progress is not listed anyway.
            log.warning("could not ask the status page whether %s is a maintenance window: %r", upstream_id, exc)
            return None
        if any(ids.guid(item.incident_id) == upstream_id for item in ongoing):
            return (
                "That is the ID of a maintenance window in progress on the status page, not an incident. Paste the incident's ID."
            )
        return None

    async def _adopt(self, kind: DraftKind, form: Any, upstream_id: str, user_id: str) -> Outcome:
        outcome = await self._store_declared(form, upstream_id, user_id)
        note = "Linked to the incident that already exists on the status page; nothing was created twice."
        outcome.warning = f"{note} {outcome.warning}" if outcome.warning else note
        return outcome

    async def _declare(self, form: DeclareForm, user_id: str) -> Outcome:
        upstream_id = await self._client().create_incident(
            IncidentCreateModel(
                Title=form.title,
                Description=form.description,
                Status=form.status,
                Impact=form.impact,
                AffectedComponents=list(form.component_ids),
                IsNotify=form.notify,
            )
        )
        return await self._store_declared(form, upstream_id, user_id)

    async def _store_declared(self, form: DeclareForm, upstream_id: str, user_id: str) -> Outcome:
        """Keep and announce an incident the status page has under `upstream_id`."""
        now = self.ctx.clock()
        channel = self.ctx.settings.sitrep_channel
        source_link, source_warning = await self._source_link(form)
        components = self.ctx.settings.component_names(form.component_ids)
        # Read (with their threads' links) before the announcement is queued: a link asked
        # from inside the post's own turn in the channel's queue would wait on itself.
        overlaps = await self._overlaps(components, now)
        async with self.ctx.db.session() as session, session.begin():
            incident = await incident_store.add_incident(
                session,
                Incident(
                    upstream_id=upstream_id,
                    title=form.title,
                    description=form.description,
                    status=form.status,
                    impact=form.impact,
                    components=components,
                    overlaps=overlaps or None,
                    notify=form.notify,
                    channel_id=channel,
                    declared_by=user_id,
                    lead_id=form.lead or user_id,
                    declared_at=now,
                    updated_at=now,
                    source_link=source_link,
                    draft_id=SENDING_DRAFT.get(),
                    # Claimed for its announcement as it is stored: if this process dies
                    # before posting, the crash recovery posts it (`recover_announcement`).
                    **posts.claimed_as_stored(self.ctx),
                ),
            )
            await incident_store.add_event(
                session,
                incident,
                kind=IncidentEventKind.DECLARED,
                status=form.status,
                text=form.description,
                user_id=user_id,
                at=now,
            )
            for window in overlaps:
                await incident_store.add_overlap(session, incident, window, at=now)
        warning = await self._publish(incident)
        room_warnings = await self.rooms.open(await self._reload(incident.id))
        incident = await self._reload(incident.id)
        return Outcome(
            DraftKind.DECLARE, incident, permalink=incident.permalink, warning=_joined(warning, source_warning, *room_warnings)
        )

    async def _overlaps(self, components: list[str], now) -> list[dict]:
        """Maintenance running now or ended less than SITREP_CHANGE_LOOKBACK minutes ago, as
        the announcement names it; windows on the incident's components first."""
        since = now - timedelta(minutes=self.ctx.settings.sitrep_change_lookback)
        async with self.ctx.db.session() as session:
            windows = await window_store.overlapping(session, now=now, ended_since=since, limit=MAX_OVERLAPS)
        affected = set(components)
        windows.sort(key=lambda w: not (affected & set(w.components)))  # stable: latest first within each
        found = []
        for window in windows:
            at = Posted(window.channel_id, window.message_ts) if window.channel_id and window.message_ts else None
            found.append(
                {
                    "id": window.id,
                    "title": window.title,
                    "where": messages.window_scope(window.components, window.servers),
                    "link": await self.ctx.channel.permalink(at) if at else None,
                    "ended": window.end.isoformat() if window.end is not None and window.end <= now else None,
                    "shared": sorted(affected & set(window.components)),
                }
            )
        return found

    async def _source_link(self, form: DeclareForm) -> tuple[str | None, str | None]:
        """The permalink of the message it is declared from, and a note when Slack gives none
        (a conversation the bot cannot see): the declaration goes on without the link."""
        if not form.from_message:
            return None, None
        link = await self.ctx.channel.permalink(Posted(form.source_channel, form.source_ts))
        if link is None:
            return (
                None,
                "Slack would not give a link to the message you declared it from, so the announcement does not link to it.",
            )
        return link, None

    async def _update(self, form: UpdateForm, user_id: str) -> Outcome:
        incident = await self.find_open(str(form.incident_id))
        await self._client().update_incident(
            IncidentUpdateModel(IncidentId=incident.upstream_id, Description=form.text, Status=form.status)
        )
        now = self.ctx.clock()
        async with self.ctx.db.session() as session, session.begin():
            incident = await incident_store.get_incident(session, incident.id)
            incident.status = form.status
            incident.updated_at = now
            incident.update_count += 1
            event = await incident_store.add_event(
                session, incident, kind=IncidentEventKind.UPDATE, status=form.status, text=form.text, user_id=user_id, at=now
            )
        warning = await self._publish(incident, event.id, messages.update_reply(incident, event))
        incident = await self._reload(incident.id)
        return Outcome(DraftKind.UPDATE, incident, permalink=incident.permalink, warning=warning)

    async def _resolve(self, form: ResolveForm, user_id: str) -> Outcome:
        incident = await self.find_open(str(form.incident_id))
        try:
            await self._client().resolve_incident(incident.upstream_id)
        except AlreadyResolved:
            # The status page says it is resolved already: the store follows it, and the
            # person still sees the upstream Message verbatim.
            await self._close(incident, user_id=user_id, note=form.note, announce=False)
            winner = await drafts.rival_outcome(
                self.ctx, DraftKind.RESOLVE, "incident_id", incident.id, _resolver_named(incident.id)
            )
            if winner is not None:
                raise NotFound(messages.already_resolved(winner)) from None
            raise
        incident, warning = await self._close(incident, user_id=user_id, note=form.note, announce=True)
        return Outcome(DraftKind.RESOLVE, incident, permalink=incident.permalink, warning=warning)

    async def _close(self, incident: Incident, *, user_id: str, note: str, announce: bool) -> tuple[Incident, str | None]:
        """Record the resolution if nobody did meanwhile (compare-and-set on `resolved_at`):
        the one winner posts; whoever lost hears who did and when, and the stored resolver
        stays. `announce=False`: the status page refused the resolve (resolved already), so
        the store only follows it, naming nobody; the person whose resolve it took replaces
        that record when theirs lands second, and posts *Resolved* then."""
        now = self.ctx.clock()
        by = user_id if announce else None
        event = notice = None
        drafts: list[int] = []
        async with self.ctx.db.session() as session, session.begin():
            followed = (await incident_store.get_incident(session, incident.id)).resolved_at is not None
            won = await incident_store.resolve_if_open(session, incident.id, by=by, now=now)
            if won:
                incident = await incident_store.get_incident(session, incident.id)
            if won and announce:
                event = await incident_store.add_event(
                    session, incident, kind=IncidentEventKind.RESOLVED, status=RESOLVED_STATUS, text=note, user_id=user_id, at=now
                )
                # The notice waits in a row written with the resolution: a crash before
                # the post leaves it for the scheduler, never lost (`bot.services.notices`).
                notice = posts.held_row(self.ctx, incident_id=incident.id, kind=ReminderKind.RESOLVED)
                session.add(notice)
                await session.flush()
                # The postmortem draft's share, written with the resolution too (unless
                # `/incident postmortem` shared it already).
                drafts = await PostmortemService.plan(self.ctx, session, incident)
        if not won:
            raise NotFound(messages.already_resolved(await self._reload(incident.id)))
        reply = messages.resolved_reply(incident, event) if announce else None
        warning = await self._publish(
            incident, event.id if event else None, reply, broadcast=True, notice=notice.id if notice else None
        )
        if not followed:  # a record taken over from a refused resolve planned it already
            await self.rooms.plan_archive(incident)
        postmortems = PostmortemService(self.ctx)
        for row_id in drafts:
            warning = _joined(warning, resolve_warning(await postmortems.deliver(row_id, posts.HELD)))
        return await self._reload(incident.id), warning

    async def change_lead(self, ref: str, lead: str, user_id: str) -> tuple[Incident, str | None]:
        """Hand an open incident to `lead`: stored with its timeline event and the row that
        posts the reply (one transaction, so a crash leaves the reply to the scheduler), then
        the reply posted in the thread, the announcement and the channel's summary edited."""
        incident = await self.find_open(ref)
        if lead == incident.lead:
            raise SitrepError(f"<@{lead}> already leads incident #{incident.id}.")
        now = self.ctx.clock()
        async with self.ctx.db.session() as session, session.begin():
            incident = await incident_store.get_incident(session, incident.id)
            incident.lead_id = lead
            # No incident_id on the row: (incident_id, kind) is one row each, and an incident
            # may change lead many times; the event names its row (`post_id`).
            row = posts.held_row(self.ctx, kind=ReminderKind.LEAD)
            session.add(row)
            await session.flush()
            event = await incident_store.add_event(
                session, incident, kind=IncidentEventKind.LEAD, status=incident.status, text=lead, user_id=user_id, at=now
            )
            event.post_id = row.id
        warning = await self._publish(incident, event.id, messages.lead_reply(incident, event), lead_post=row.id)
        return await self._reload(incident.id), warning

    async def deliver_lead(self, row_id: int, claim) -> int:
        """The scheduler's side of a lead-change reply whose changer died before posting it."""
        async with self.ctx.db.session() as session:
            event = await incident_store.event_posted_by(session, row_id)
            incident = await incident_store.get_incident(session, event.incident_id) if event is not None else None
        if incident is None or event is None:
            await RowClaim(self.ctx, row_id, claim).skip()
            return 0
        if incident.message_ts is None:
            incident = await self._announce(incident)
        result = await self._post_lead(
            self._at(incident), incident.id, event.id, row_id, messages.lead_reply(incident, event), claim
        )
        if result.ts is not None:
            await self._record_reply(event.id, result.ts)
        return result.posted

    async def _post_lead(self, at: Posted, incident_id: int, event_id: int, row_id: int, reply: Message, claim) -> posts.Result:
        post = Post(PostTag.LEAD, {"incident_id": incident_id, "event": event_id}, reply, thread=at)
        return await posts.post_once(self.ctx, post, RowClaim(self.ctx, row_id, claim))

    async def _reload(self, incident_id: int) -> Incident:
        async with self.ctx.db.session() as session:
            return await incident_store.get_incident(session, incident_id)

    def _at(self, incident: Incident) -> Posted | None:
        return Posted(incident.channel_id, incident.message_ts) if incident.message_ts else None

    async def _publish(
        self,
        incident: Incident,
        event_id: int | None = None,
        reply: Message | None = None,
        *,
        broadcast: bool = False,
        notice: int | None = None,
        lead_post: int | None = None,
    ) -> str | None:
        """Bring Slack up to date: the announcement (posted now if it never was), the
        thread reply, the parent edited. The status page already took the change, so Slack
        trouble is reported back as a warning, never as a failed submission to retry."""
        channel = self.ctx.channel
        # Every declaration, update and resolution passes here: the nudge restarts or stops.
        await nudges.plan_nudge(self.ctx, incident.id)

        async def step() -> None:
            at = self._at(incident)
            if at is None and reply is None:  # just declared: under the claim taken as it was stored
                await self._announce(incident, held=True)
                return
            at = at or self._at(await self._announce(incident))
            if reply is not None:
                if notice is not None:
                    ts = await self._post_notice(at, incident.id, notice, reply)
                elif lead_post is not None:
                    ts = (await self._post_lead(at, incident.id, event_id, lead_post, reply, posts.HELD)).ts
                else:
                    ts = await channel.reply(at, reply, broadcast=broadcast)
                if ts is not None:
                    await self._record_reply(event_id, ts)
            await channel.refresh(at, messages.announcement(incident))

        warning = await channel.after_upstream(
            step,
            what=f"incident #{incident.id}",
            upstream="the status page",
            then="The next update posts it again.",
        )
        # The incident's own channel, when it has one, hears the same.
        return _joined(warning, await self.rooms.mirror(incident, reply))

    async def _post_notice(self, at: Posted, incident_id: int, row_id: int, reply: Message) -> str | None:
        """The resolve notice, under the claim its row was written with."""
        tag = notices.notice_tag(incident_id=incident_id, kind=ReminderKind.RESOLVED)
        return await notices.post_notice(self.ctx, row_id, posts.HELD, at, reply, tag)

    async def _record_reply(self, event_id: int, ts: str) -> None:
        async with self.ctx.db.session() as session, session.begin():
            event = await session.get(IncidentEvent, event_id)
            event.message_ts = ts

    async def deliver_notice(self, row_id: int, claim) -> int:
        """The scheduler's side of a resolve notice it claimed (the resolver died before
        posting it): post it in the thread, announcing the incident first if it never was."""
        async with self.ctx.db.session() as session:
            row = await session.get(Reminder, row_id)
            incident = await incident_store.get_incident(session, row.incident_id)
            event = await incident_store.resolved_event(session, row.incident_id)
        if incident is None or event is None:
            await RowClaim(self.ctx, row_id, claim).skip()
            return 0
        if incident.message_ts is None:
            incident = await self._announce(incident)
        at = self._at(incident)
        tag = notices.notice_tag(incident_id=incident.id, kind=ReminderKind.RESOLVED)
        ts = await notices.post_notice(self.ctx, row_id, claim, at, messages.resolved_reply(incident, event), tag)
        if ts is None:
            return 0
        await self._record_reply(event.id, ts)
        self.ctx.channel.refresh_later(at, self._current_announcement(incident.id), what=f"incident #{incident.id}")
        return 1

    def _current_announcement(self, incident_id: int):
        async def build() -> Message | None:
            incident = await self._reload(incident_id)
            return messages.announcement(incident) if incident is not None else None

        return build

    async def _announce(self, incident: Incident, *, held: bool = False, live_since=None) -> Incident:
        """Post the incident's one parent message and remember where it is (and its link),
        exactly once (`bot.slack.posts`): under the claim taken when it was stored (`held`),
        or one taken now (Slack refused it before; with `live_since`, the crash recovery,
        its claimant is gone). `AnnouncementBusy` when another process holds the claim."""
        subject = Subject(
            Incident,
            incident.id,
            PostTag.INCIDENT_ANNOUNCEMENT,
            build=messages.announcement,
            reload=lambda: self._reload(incident.id),
            permalink=True,
        )
        announced = await posts.announce(self.ctx, subject, held=held, live_since=live_since)
        if announced is None:
            raise AnnouncementBusy(f"incident {incident.id}")
        return announced

    # --- crash recovery ------------------------------------------------------------------
    async def recover_announcement(self, incident_id: int, *, live_since) -> Incident | None:
        """Announce an incident whose announcement was claimed by a process now gone (it died
        between storing and posting); None when another instance has it. Slack trouble is
        logged: the next pass tries again."""
        incident = await self._reload(incident_id)
        if incident is None or incident.message_ts:
            return incident
        try:
            incident = await self._announce(incident, live_since=live_since)
        except AnnouncementBusy:
            return None
        except SlackApiError as exc:
            log.warning("could not announce incident %s after a crash: %s", incident_id, slack_error(exc))
            return None
        await self.rooms.open(incident)
        return await self._reload(incident_id)

    async def made_by_draft(self, draft_id: int) -> Incident | None:
        """The incident a draft's send stored before its process died, if it got that far."""
        async with self.ctx.db.session() as session:
            return await incident_store.by_draft(session, draft_id)


def _resolver_named(incident_id: int):
    """The incident once a person's resolve of it is recorded (`drafts.rival_outcome`)."""

    async def landed(session) -> Incident | None:
        incident = await incident_store.get_incident(session, incident_id)
        return incident if incident.resolved_by is not None else None

    return landed
