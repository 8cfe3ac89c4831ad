"""Maintenance windows as people ask for them: schedule, edit, cancel, list, status, on
whichever backend is configured. Business rules live here, not in handlers; every
submission is kept as a draft until the upstream accepted it. Split by concern: listing
(`bot.services.maintenance_listing`), the server's time offset (`bot.services.server_times`),
the overrun prompt's buttons (`bot.services.overrun`); what the scheduler and the sync share
with it (adopting, announcing, threads) is in `bot.services.windows`."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from bot.backends.base import BackendWindow, MaintenanceBackend
from bot.context import AppContext
from bot.errors import (
    AlreadyResolved,
    FeatureDisabled,
    NotAllowed,
    NotFound,
    NotSupported,
    UpstreamError,
)
from bot.messages import maintenance as messages
from bot.messages.format import escape, truncate
from bot.services import drafts, maintenance_forms, reminders, server_times
from bot.services.base import FeatureService
from bot.services.drafts import SENDING_DRAFT, UnknownChoices
from bot.services.maintenance_forms import CancelForm, ScheduleForm
from bot.services.maintenance_listing import Listing, WindowListing
from bot.services.outcomes import Change, Outcome
from bot.services.overrun import OverrunButtons
from bot.services.series import SeriesService, new_series
from bot.services.windows import Windows, posted_at
from bot.slack import posts
from store import ids
from store import incidents as incident_store
from store import maintenance as window_store
from store import series as series_store
from store.models import MaintenanceWindow
from store.states import DraftKind, ReminderKind, WindowState

log = logging.getLogger(__name__)


def _same_minute(a: datetime | None, b: datetime | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.replace(second=0, microsecond=0) == b.replace(second=0, microsecond=0)


class MaintenanceService(OverrunButtons, FeatureService):
    FORMS = maintenance_forms.FORMS
    NUMBER_OF = "a maintenance"
    form_from_payload = staticmethod(maintenance_forms.form_from_payload)

    def __init__(self, ctx: AppContext):
        super().__init__(ctx)
        self.windows = Windows(ctx)
        self.series = SeriesService(ctx, self)

    # --- guards ----------------------------------------------------------------------
    @property
    def backend(self) -> MaintenanceBackend:
        if self.ctx.maintenance is None:
            settings = self.ctx.settings
            if settings.maintenance_backend == "appfirst":
                missing = "APPFIRST_URL, APPFIRST_EMAIL and APPFIRST_API_KEY are"
            else:
                missing = "STATUSPAGE_URL and STATUSPAGE_API_KEY are"
            raise FeatureDisabled(
                f"Maintenance is turned off: MAINTENANCE_BACKEND is {settings.maintenance_backend} but {missing} not all set. "
                "Ask whoever runs sitrep to configure it."
            )
        return self.ctx.maintenance

    def require_enabled(self) -> MaintenanceBackend:
        return self.backend

    def require_allowed(self, user_id: str | None) -> None:
        if not self.ctx.settings.is_admin(user_id or ""):
            raise NotAllowed("Only the people listed in SITREP_ADMINS can change maintenance windows.")

    def problems(self, form: ScheduleForm, *, original: MaintenanceWindow | None = None) -> dict[str, str]:
        """The modal's rules, with this backend's field names and the injected clock."""
        backend = self.backend
        return form.problems(
            now=self.ctx.clock(),
            title_label=backend.title_label,
            uses_servers=backend.uses_servers,
            original_start=original.start if original is not None else None,
            original_title=original.title if original is not None else None,
        )

    # --- reads -----------------------------------------------------------------------
    async def listing(self) -> Listing:
        """`/maintenance list` (`bot.services.maintenance_listing`)."""
        return await WindowListing(self.ctx, self.backend, self.windows).listing()

    async def status(self) -> list[tuple[BackendWindow, MaintenanceWindow | None]]:
        """`/maintenance status` (`bot.services.maintenance_listing`)."""
        return await WindowListing(self.ctx, self.backend, self.windows).status()

    async def get(self, window_id: int) -> MaintenanceWindow | None:
        return await self.windows.get(window_id)

    async def find(self, ref: str) -> MaintenanceWindow:
        """A window by short number or upstream ID, or a plain answer why not."""
        ref = (ref or "").strip()
        if not ref:
            raise NotFound("Say which window, e.g. `/maintenance cancel 3`. `/maintenance list` shows the numbers.")
        async with self.ctx.db.session() as session:
            window = await window_store.find_window(session, ref, self.backend.name)
            incident = await incident_store.by_upstream(session, ref) if window is None and ids.guid(ref) else None
        shown = escape(truncate(ref, 40))
        if incident is not None:
            raise NotFound(f"`{shown}` is incident #{incident.id}, not a maintenance window.")
        if window is None:
            raise NotFound(f"I don't know a maintenance window `{shown}`. Try `/maintenance list`.")
        return window

    async def _find_active(self, ref: str) -> MaintenanceWindow:
        window = await self.find(ref)
        if window.state == WindowState.CANCELLED:
            raise NotFound(messages.already_cancelled(window))
        if window.state == WindowState.COMPLETED or (window.end is not None and window.end <= self.ctx.clock()):
            raise NotFound(f"Maintenance #{window.id} has already ended.")
        return window

    async def find_editable(self, ref: str) -> MaintenanceWindow:
        if not self.backend.can_edit:
            raise NotSupported(
                "Editing maintenance windows is not supported on this backend: the status page cannot change a "
                "window once it is scheduled. Cancel it with `/maintenance cancel <id>` and schedule a new one."
            )
        return await self._find_active(ref)

    async def find_cancellable(self, ref: str) -> MaintenanceWindow:
        """Every backend can call a window off (`cancel_effect` says how)."""
        return await self._find_active(ref)

    async def _permalink(self, window: MaintenanceWindow) -> str | None:
        return await self.ctx.channel.permalink(posted_at(window))

    # --- writes ----------------------------------------------------------------------
    # --- the server's time offset (bot.services.server_times) -------------------------
    @property
    def offset(self) -> server_times.ServerOffset:
        return server_times.ServerOffset(self.ctx, self.backend)

    async def server_offset(self) -> timedelta:
        """What this backend adds to the times it is sent, as last learned (0 until then)."""
        return await self.offset.current()

    # --- a schedule whose outcome is unknown (FeatureService.check_and_retry, link) ----
    def unknown_choices(self, kind: DraftKind) -> UnknownChoices:
        """AppFirst lists every window: look for it (shift-aware) before sending again. The
        status page lists only windows in progress: the person links the one they see."""
        backend = self.backend
        creates = kind == DraftKind.SCHEDULE
        return UnknownChoices(
            service=backend.service, can_check=creates and backend.lists_all, can_link=creates and not backend.lists_all
        )

    async def _known_as(self, upstream_id: str) -> str | None:
        async with self.ctx.db.session() as session:
            found = await window_store.by_upstream(session, self.backend.name, upstream_id)
        return f"maintenance #{found.id}" if found is not None else None

    async def _other_kind(self, upstream_id: str) -> str | None:
        """An incident's ID: the status page's windows and incidents share one ID space, and
        cancelling this "window" would resolve the incident. The status page cannot list its
        incidents: the store (every incident sitrep opened or linked) is what knows them."""
        async with self.ctx.db.session() as session:
            incident = await incident_store.by_upstream(session, upstream_id)
        if incident is not None:
            return f"That is the ID of incident #{incident.id}, not a maintenance window. Paste the window's ID."
        return None

    async def _adopt(self, kind: DraftKind, form: Any, upstream_id: str, user_id: str) -> Outcome:
        """The status page keeps the times it was sent (it does not shift them), so the
        window is recorded as the form had it."""
        bw = BackendWindow(upstream_id=upstream_id, title=form.title, start=form.start, end=form.end, servers=tuple(form.servers))
        outcome = await self._store_scheduled(form, bw, user_id)
        note = f"Linked to the window that already exists on {self.backend.service}; nothing was created twice."
        outcome.warning = f"{note} {outcome.warning}" if outcome.warning else note
        return outcome

    def _check_retry(self, kind: DraftKind, form: Any) -> None:
        if kind == DraftKind.SCHEDULE and form.start is not None and form.start < self.ctx.clock():
            raise NotSupported("The start you picked has passed meanwhile. Use *Edit* to pick new times.")

    async def _send_again(self, kind: DraftKind, form: Any, user_id: str) -> Outcome:
        if kind == DraftKind.SCHEDULE:
            # The last try may have reached the backend before it timed out.
            found = await self._already_created(form, user_id)
            if found is not None:
                return found
        return await self._send(kind, form, user_id)

    async def _already_created(self, form: ScheduleForm, user_id: str) -> Outcome | None:
        """A window upstream that the lost try made, so a Retry does not create it twice:
        same title or reason (and servers), times as `server_times.find_lost_write` allows.
        Only windows nobody in Slack scheduled qualify. Only a backend that lists every
        window can answer."""
        backend = self.backend
        if not backend.lists_all:
            return None
        offset = await self.server_offset()
        listed = await backend.list_windows()
        async with self.ctx.db.session() as session:
            known = await window_store.by_upstream_ids(session, backend.name, [w.upstream_id for w in listed])

        def could_be_ours(bw: BackendWindow) -> bool:
            row = known.get(bw.upstream_id)
            return (
                bw.title == form.title
                and (not backend.uses_servers or tuple(bw.servers) == tuple(form.servers))
                and (row is None or (row.created_by is None and WindowState(row.state).active))
            )

        bw = server_times.find_lost_write(filter(could_be_ours, listed), (form.start, form.end), offset)
        if bw is None:
            return None
        window = await self.windows.adopt_external(bw)
        async with self.ctx.db.session() as session, session.begin():
            stored = await window_store.get_window(session, window.id)
            stored.created_by = stored.created_by or user_id
        await self._slack_step(window.id, lambda: self.windows.refresh_announcement(window.id))
        window = await self.get(window.id)
        permalink = await self._permalink(window)
        note = f"It had reached {backend.service} after all, so I did not create it twice."
        return Outcome(
            kind=DraftKind.SCHEDULE,
            record=window,
            permalink=permalink,
            entered=self._entered_if_shifted(form, window),
            warning=note,
        )

    async def _send(self, kind: DraftKind, form: Any, user_id: str) -> Outcome:
        if kind == DraftKind.SCHEDULE:
            return await self._schedule(form, user_id)
        if kind == DraftKind.EDIT:
            return await self._edit(form, user_id)
        return await self._cancel(form, user_id)

    @staticmethod
    def _entered_if_shifted(form: ScheduleForm, window: MaintenanceWindow) -> tuple[datetime, datetime] | None:
        """What the person entered, when the server stored other times (seeds README)."""
        if _same_minute(form.start, window.start) and _same_minute(form.end, window.end):
            return None
        log.info(
            "%s stored window %s as %s–%s, not the %s–%s asked for",
            window.backend,
            window.upstream_id,
            window.start,
            window.end,
            form.start,
            form.end,
        )
        return (form.start, form.end)

    def _backend_fields(self, form: ScheduleForm, offset: timedelta = server_times.NO_OFFSET) -> dict[str, Any]:
        """What the backend is sent: each takes only the fields it has; times moved back by
        the server's offset so it keeps the ones in the form (`server_times`, rule 3)."""
        backend = self.backend
        start, end = server_times.to_send((form.start, form.end), offset)
        return {
            "title": form.title,
            "description": form.description if backend.has_description else "",
            "start": start,
            "end": end,
            "components": () if backend.uses_servers else form.component_ids,
            "servers": form.servers if backend.uses_servers else (),
        }

    async def _schedule(self, form: ScheduleForm, user_id: str, occurrence: tuple[int, int] | None = None) -> Outcome:
        """Create the window upstream and keep it. A form that repeats starts a series (the
        window is its first occurrence) and creates the next ones within the horizon."""
        if form.repeats and not form.zone.strip():
            form = replace(form, zone=await self.series.zone_of(user_id))
        backend = self.backend
        offset = await self.server_offset()
        fields = self._backend_fields(form, offset)
        bw = await backend.create(**fields)
        await self.offset.learn(fields, bw, offset)
        outcome = await self._store_scheduled(form, bw, user_id, occurrence=occurrence)
        if occurrence is None and outcome.record.series_id is not None:
            await self.series.roll_forward(only=outcome.record.series_id)
        return outcome

    async def create_occurrence(self, form: ScheduleForm, user_id: str, occurrence: tuple[int, int]) -> Outcome:
        """One occurrence of a series (`(series id, index)`), created upstream and kept."""
        return await self._schedule(form, user_id, occurrence)

    async def store_occurrence(self, form: ScheduleForm, bw: BackendWindow, user_id: str, occurrence: tuple[int, int]) -> Outcome:
        """An occurrence found upstream after its creator died: kept and announced as if created."""
        return await self._store_scheduled(form, bw, user_id, occurrence=occurrence)

    async def _store_scheduled(
        self, form: ScheduleForm, bw: BackendWindow, user_id: str, *, occurrence: tuple[int, int] | None = None
    ) -> Outcome:
        """Keep a window the backend has (as `bw`), plan its reminders, announce it. A window
        of a series (`occurrence`, or a form that repeats: a new series) is linked to it in
        the same transaction, so its claim is never left without the window."""
        backend = self.backend
        now = self.ctx.clock()
        start = bw.start or form.start
        end = bw.end or form.end
        async with self.ctx.db.session() as session, session.begin():
            window = await window_store.add_window(
                session,
                MaintenanceWindow(
                    backend=backend.name,
                    upstream_id=bw.upstream_id,
                    title=bw.title or form.title,
                    description=form.description if backend.has_description else "",
                    start=start,
                    end=end,
                    components=[] if backend.uses_servers else self.ctx.settings.component_names(form.component_ids),
                    servers=list(bw.servers) if backend.uses_servers else [],
                    state=WindowState.SCHEDULED,  # the scheduler moves it on at the start and the end
                    channel_id=self.ctx.settings.sitrep_channel,
                    created_by=user_id,
                    created_at=now,
                    updated_at=now,
                    draft_id=SENDING_DRAFT.get(),
                ),
            )
            if occurrence is None and form.repeats:
                channel = self.ctx.settings.sitrep_channel
                series = await series_store.add_series(
                    session, new_series(form, backend=backend.name, user_id=user_id, channel_id=channel, now=now)
                )
                occurrence = (series.id, 0)
            if occurrence is not None:
                series = await series_store.get_series(session, occurrence[0])
                window.series_id, window.series_index = occurrence
                window.series_rule, window.series_next = self.series.rule_and_next(series, occurrence[1])
                await session.flush()
                await series_store.record_created(session, occurrence[0], occurrence[1], window.id)
        # Reminders first: they must not depend on Slack taking the announcement.
        await reminders.schedule_window_reminders(self.ctx, window.id)
        warning = await self._slack_step(window.id, lambda: self.windows.announce(window.id))
        window = await self.get(window.id)
        permalink = await self._permalink(window)
        return Outcome(
            kind=DraftKind.SCHEDULE,
            record=window,
            permalink=permalink,
            entered=self._entered_if_shifted(form, window),
            warning=warning,
        )

    async def _edit(self, form: ScheduleForm, user_id: str) -> Outcome:
        backend = self.backend
        window = await self.find_editable(str(form.window_id))
        if form.following and window.series_id is not None and window.series_index is not None:
            return await self._edit_following(window, form, user_id)
        bw = await self._update_upstream(window.upstream_id, form)
        now = self.ctx.clock()
        new = {
            "title": bw.title or form.title,
            "description": form.description if backend.has_description else window.description,
            "start": bw.start or form.start,
            "end": bw.end or form.end,
            "servers": list(bw.servers) if backend.uses_servers else window.servers,
            "components": window.components if backend.uses_servers else self.ctx.settings.component_names(form.component_ids),
        }
        async with self.ctx.db.session() as session, session.begin():
            stored = await window_store.get_window(session, window.id)
            changes = [Change(key, getattr(stored, key), value) for key, value in new.items() if getattr(stored, key) != value]
            for key, value in new.items():
                setattr(stored, key, value)
            stored.updated_at = now
            window = stored
        await reminders.schedule_window_reminders(self.ctx, window.id)
        reply = messages.edited_reply(window, changes, user_id, now)

        async def publish() -> None:
            await self.windows.post_in_thread(window.id, reply)
            await self.windows.refresh_announcement(window.id)

        warning = await self._slack_step(window.id, publish)
        window = await self.get(window.id)
        permalink = await self._permalink(window)
        return Outcome(
            kind=DraftKind.EDIT,
            record=window,
            permalink=permalink,
            entered=self._entered_if_shifted(form, window),
            changes=changes,
            warning=warning,
        )

    async def _edit_following(self, window: MaintenanceWindow, form: ScheduleForm, user_id: str) -> Outcome:
        """This occurrence and every later one: the series' template takes the new title,
        description, targets, local start time and length (so occurrences not created yet
        follow), then this window and each later one already created is edited the same way
        (its start moved by the same wall-clock shift). Only this one's failure fails the
        whole; a later one that fails is named in the answer (edit it by itself)."""
        async with self.ctx.db.session() as session:
            series = await series_store.get_series(session, window.series_id)
            ahead = await series_store.active_windows_from(session, window.series_id, window.series_index + 1)
        shift, length = self.series.template_change(series, window, form)
        async with self.ctx.db.session() as session, session.begin():
            await series_store.retemplate(
                session,
                series.id,
                now=self.ctx.clock(),
                title=form.title,
                description=form.description,
                components=list(form.component_ids),
                servers=list(form.servers),
                at_time=self.series.shifted_time(series, shift),
                length_minutes=int(length.total_seconds() // 60),
            )
        outcome = await self._edit(replace(form, following=False), user_id)
        done, failed = [], []
        for later in ahead:
            start = self.series.shifted(later.start, series.zone, shift)
            edit = replace(form, window_id=later.id, start=start, end=start + length, following=False)
            try:
                await self._edit(edit, user_id)
            except (UpstreamError, NotFound) as exc:
                log.warning("editing maintenance #%s (a later occurrence of series %s): %s", later.id, series.id, exc)
                failed.append(later.id)
            else:
                done.append(later.id)
        notes = ["The series' windows not created yet will follow."]
        if done:
            notes.insert(0, "Also changed the ones after it: " + ", ".join(f"#{n}" for n in done) + ".")
        if failed:
            notes.append("Not changed (edit each by itself): " + ", ".join(f"#{n}" for n in failed) + ".")
        outcome.warning = " ".join(filter(None, [outcome.warning, *notes]))
        return outcome

    async def _update_upstream(self, upstream_id: str, form: ScheduleForm) -> BackendWindow:
        """Send an edit; if the server kept other times under an offset it had not shown
        before, send it once more with that offset (`server_times`, rule 4)."""
        backend = self.backend
        offset = await self.server_offset()
        fields = self._backend_fields(form, offset)
        bw = await backend.update(upstream_id, **fields)
        learned = await self.offset.learn(fields, bw, offset)
        if learned is None or learned == offset:
            return bw
        again = self._backend_fields(form, learned)
        try:
            corrected = await backend.update(upstream_id, **again)
        except UpstreamError as exc:
            # It has the first version: that stands, and the person is told it differs.
            log.warning("%s did not take the corrected times of window %s: %s", backend.service, upstream_id, exc)
            return bw
        await self.offset.learn(again, corrected, learned)
        return corrected

    async def _cancel(self, form: CancelForm, user_id: str) -> Outcome:
        window = await self.find_cancellable(str(form.window_id))
        if form.following and window.series_id is not None and window.series_index is not None:
            return await self._cancel_following(window, form, user_id)
        try:
            await self.backend.cancel(window.upstream_id)
        except AlreadyResolved:
            # Someone here cancelled it at the same moment and the status page took theirs
            # first: this person hears who and when, and is never recorded as the canceller.
            rival = await drafts.rival_outcome(self.ctx, DraftKind.CANCEL, "window_id", window.id, _cancelled(window.id))
            if rival is not None:
                raise NotFound(messages.already_cancelled(rival)) from None
            # Closed on the status page itself: the store follows, and the person still sees
            # the upstream Message verbatim (unless someone here cancelled it first).
            await self._close(window.id, user_id=user_id, note=form.note)
            raise
        window, warning = await self._close(window.id, user_id=user_id, note=form.note)
        permalink = await self._permalink(window)
        return Outcome(DraftKind.CANCEL, window, permalink=permalink, warning=warning)

    async def _cancel_following(self, window: MaintenanceWindow, form: CancelForm, user_id: str) -> Outcome:
        """This occurrence and every later one: the series stops creating them first (so a
        roll does not add one behind the cancel), then each window ahead is deleted upstream
        and closed here, this one first. Only this one's failure fails the whole; a later
        one that fails is named in the answer (cancel it by itself)."""
        async with self.ctx.db.session() as session, session.begin():
            await series_store.end_before(session, window.series_id, window.series_index, now=self.ctx.clock())
            ahead = await series_store.active_windows_from(session, window.series_id, window.series_index + 1)
        outcome = await self._cancel(CancelForm(window_id=window.id, note=form.note), user_id)
        done, failed = [], []
        for later in ahead:
            try:
                await self._cancel(CancelForm(window_id=later.id, note=form.note), user_id)
            except AlreadyResolved:
                done.append(later.id)
            except (UpstreamError, NotFound) as exc:
                log.warning("cancelling maintenance #%s (a later occurrence of series %s): %s", later.id, window.series_id, exc)
                failed.append(later.id)
            else:
                done.append(later.id)
        notes = []
        if done:
            notes.append("Also cancelled the ones after it: " + ", ".join(f"#{n}" for n in done) + ".")
        if failed:
            notes.append("Not cancelled (try each by itself): " + ", ".join(f"#{n}" for n in failed) + ".")
        notes.append("The series creates no more windows.")
        outcome.warning = " ".join(filter(None, [outcome.warning, *notes]))
        return outcome

    async def _close(self, window_id: int, *, user_id: str, note: str) -> tuple[MaintenanceWindow, str | None]:
        """Cancel in the store if nobody did meanwhile (compare-and-set): only the winner
        tells the channel; the other person hears who cancelled it and when."""
        now = self.ctx.clock()
        async with self.ctx.db.session() as session, session.begin():
            won = await window_store.cancel_if_active(session, window_id, now=now, by=user_id)
            announced = won and (await window_store.get_window(session, window_id)).message_ts is not None
            if announced:
                # The notice waits in a row written with the cancellation: a crash before the
                # post leaves it for the scheduler, never lost (`bot.services.notices`).
                notice = posts.held_row(self.ctx, window_id=window_id, kind=ReminderKind.CANCELLED)
                session.add(notice)
                await session.flush()
        window = await self.get(window_id)
        if not won:
            raise NotFound(messages.already_cancelled(window))
        await reminders.cancel_window_reminders(self.ctx, window.id)
        reply = messages.cancelled_reply(window, user_id, now, note)

        async def publish() -> None:
            if announced:
                await self.windows.post_notice(window.id, notice.id, reply)
            await self.windows.refresh_announcement(window.id)

        return window, await self._slack_step(window.id, publish)

    async def _slack_step(self, window_id: int, step) -> str | None:
        """The Slack side of a change the backend already took (`Channel.after_upstream`)."""
        return await self.ctx.channel.after_upstream(
            step, what=f"maintenance #{window_id}", upstream=self.backend.service, then="Reminders still follow the window."
        )


def _cancelled(window_id: int):
    """The window once someone's cancel of it is recorded (`drafts.rival_outcome`)."""

    async def landed(session) -> MaintenanceWindow | None:
        window = await window_store.get_window(session, window_id)
        return window if window.state == WindowState.CANCELLED else None

    return landed
