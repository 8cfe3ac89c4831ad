"""Recurring maintenance: a series keeps its rule, and its occurrences are created upstream
ahead of time (within `SITREP_ANNOUNCE_HORIZON` days, rolled forward by the scheduler), each
an ordinary window with its announcement and reminders.

Each occurrence is created once however many replicas roll the series: its creation is
claimed by inserting its row (`store.series.claim`, first insert wins). A claim left by a
replica that died mid-create is taken over once that replica misses its heartbeats; the
new holder first looks in the store, then (AppFirst, which lists every window) upstream at
the occurrence's times, shift-aware, and creates only what is not there (meanwhile the sync
leaves such a window alone, `store.series.titles_being_created`, so it is stored and
announced as the series' occurrence, never adopted as made outside Slack). The status page
cannot be asked: such an occurrence is marked unknown and shown as "check the status page"
in `/maintenance list`, never sent twice blindly."""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from bot.backends.base import BackendWindow, MaintenanceBackend
from bot.context import AppContext
from bot.errors import NotSupported, OutcomeUnknown, UpstreamError
from bot.services import server_times
from bot.services.maintenance_forms import ScheduleForm, format_servers, valid_zone
from bot.services.outcomes import Outcome
from bot.services.recurrence import Occurrence, Recurrence, Repeat, describe
from store import instances
from store import maintenance as window_store
from store import series as series_store
from store.models import MaintenanceSeries, MaintenanceWindow, SeriesOccurrence
from store.states import OccurrenceState

log = logging.getLogger(__name__)

#: The next dates `/maintenance list` and an announcement show for a series.
NEXT_SHOWN = 3


def rule_of(series: MaintenanceSeries) -> Recurrence:
    return Recurrence(
        repeat=Repeat(series.repeat),
        zone=series.zone,
        first=date.fromisoformat(series.first_date),
        at=time.fromisoformat(series.at_time),
        length=timedelta(minutes=series.length_minutes),
        weekdays=tuple(series.weekdays),
        until=date.fromisoformat(series.until_date) if series.until_date else None,
        count=series.count,
    )


def new_series(form: ScheduleForm, *, backend: str, user_id: str, channel_id: str, now: datetime) -> MaintenanceSeries:
    """The series a schedule form asks for (its zone already resolved)."""
    rule = form.recurrence(form.zone)
    return MaintenanceSeries(
        backend=backend,
        title=form.title,
        description=form.description,
        components=list(form.component_ids),
        servers=list(form.servers),
        repeat=rule.repeat,
        zone=rule.zone,
        first_date=rule.first.isoformat(),
        at_time=rule.at.strftime("%H:%M"),
        length_minutes=int(rule.length.total_seconds() // 60),
        weekdays=list(rule.weekdays),
        until_date=rule.until.isoformat() if rule.until else None,
        count=rule.count,
        created_by=user_id,
        channel_id=channel_id,
        created_at=now,
        updated_at=now,
    )


def form_for(series: MaintenanceSeries, occurrence: Occurrence) -> ScheduleForm:
    """What one occurrence is created with: the series' template at the occurrence's times."""
    return ScheduleForm(
        title=series.title,
        description=series.description,
        start=occurrence.start,
        end=occurrence.end,
        component_ids=tuple(series.components),
        servers_text=format_servers(series.servers),
    )


class OccurrenceMaker(Protocol):
    """What a series needs of the maintenance service (`MaintenanceService`): its backend,
    the server's time offset, and creating or keeping one occurrence."""

    @property
    def backend(self) -> MaintenanceBackend: ...

    async def server_offset(self) -> timedelta: ...

    async def create_occurrence(self, form: ScheduleForm, user_id: str, occurrence: tuple[int, int]) -> Outcome: ...

    async def store_occurrence(
        self, form: ScheduleForm, bw: BackendWindow, user_id: str, occurrence: tuple[int, int]
    ) -> Outcome: ...


class SeriesService:
    def __init__(self, ctx: AppContext, maintenance: OccurrenceMaker):
        self.ctx = ctx
        self.maintenance = maintenance

    async def zone_of(self, user_id: str) -> str:
        """The person's time zone from their Slack profile (`users.info`), UTC when Slack
        does not say: the default zone of a series they schedule."""
        try:
            answer = await self.ctx.slack.users_info(user=user_id)
            zone = (answer.get("user") or {}).get("tz")
        except Exception as exc:  # noqa: BLE001 - any failure falls back to UTC, logged
            log.warning("users.info for %s did not give a time zone (%s); the series uses UTC", user_id, type(exc).__name__)
            return "UTC"
        return zone if isinstance(zone, str) and valid_zone(zone) else "UTC"

    @staticmethod
    def template_change(series: MaintenanceSeries, window: MaintenanceWindow, form: ScheduleForm) -> tuple[timedelta, timedelta]:
        """(the wall-clock shift of the start, the new length) an edit of `window` asks for
        the series; a shift that moves it to another day is refused (the weekdays or day of
        the month would no longer be the series')."""
        assert form.start is not None and form.end is not None
        tz = rule_of(series).tz
        old = window.start.astimezone(tz).replace(tzinfo=None)
        new = form.start.astimezone(tz).replace(tzinfo=None)
        if old.date() != new.date():
            raise NotSupported(
                "A change for this and the following windows keeps them on their days: change the times within "
                "the day, or cancel this and the following and schedule a new series."
            )
        return new - old, form.end - form.start

    @staticmethod
    def shifted_time(series: MaintenanceSeries, shift: timedelta) -> str:
        start = datetime.combine(date.fromisoformat(series.first_date), time.fromisoformat(series.at_time)) + shift
        return start.strftime("%H:%M")

    @staticmethod
    def shifted(start: datetime, zone: str, shift: timedelta) -> datetime:
        """`start` moved by `shift` on the zone's wall clock (02:00 → 03:00 stays 03:00 local)."""
        tz = ZoneInfo(zone)
        local = start.astimezone(tz).replace(tzinfo=None) + shift
        return local.replace(tzinfo=tz).astimezone(start.tzinfo)

    @classmethod
    def rule_and_next(cls, series: MaintenanceSeries, index: int) -> tuple[str, datetime | None]:
        """What an occurrence's announcement says of its series: how it repeats, and when
        the next one starts (None: it is the last)."""
        return describe(rule_of(series)), cls._after(series, index)

    @staticmethod
    def _after(series: MaintenanceSeries, index: int) -> datetime | None:
        for occurrence in rule_of(series).occurrences():
            if series.ends_before is not None and occurrence.index >= series.ends_before:
                return None
            if occurrence.index > index:
                return occurrence.start
        return None

    async def roll_forward(self, only: int | None = None) -> int:
        """Create every occurrence due within the horizon that is not created yet (of series
        `only`, or of all); how many this replica created."""
        backend = self.ctx.maintenance
        if backend is None:
            return 0
        async with self.ctx.db.session() as session:
            every = await series_store.series_on(session, backend.name)
        made = 0
        for series in every:
            if only is None or series.id == only:
                made += await self._roll(series)
        return made

    async def _roll(self, series: MaintenanceSeries) -> int:
        now = self.ctx.clock()
        horizon = now + timedelta(days=self.ctx.settings.sitrep_announce_horizon)
        async with self.ctx.db.session() as session:
            known = await series_store.occurrences_of(session, series.id)
        made = 0
        for occurrence in rule_of(series).occurrences(starting_before=horizon):
            if series.ends_before is not None and occurrence.index >= series.ends_before:
                break
            if occurrence.start <= now:
                continue
            have = known.get(occurrence.index)
            if have is None:
                async with self.ctx.db.session() as session, session.begin():
                    won = await series_store.claim(session, series.id, occurrence.index, instance=self.ctx.instance_id)
                if won:
                    made += await self._create(series, occurrence)
            elif have.state == OccurrenceState.CREATING and await self._take_over(have):
                made += await self._recover(series, occurrence)
        return made

    async def _take_over(self, claim: SeriesOccurrence) -> bool:
        async with self.ctx.db.session() as session, session.begin():
            live_since = await instances.live_cutoff(session, instances.gone_after(self.ctx.settings.sitrep_heartbeat))
            return await series_store.take_over_stale(
                session, claim.series_id, claim.index, instance=self.ctx.instance_id, live_since=live_since
            )

    async def _create(self, series: MaintenanceSeries, occurrence: Occurrence) -> int:
        form = form_for(series, occurrence)
        try:
            await self.maintenance.create_occurrence(form, series.created_by, (series.id, occurrence.index))
        except OutcomeUnknown as exc:
            log.warning("maintenance series %s: occurrence %s got no answer (%s)", series.id, occurrence.index, exc)
            if self.maintenance.backend.lists_all:
                # Left claimed by nobody: the next roll takes it over and looks before creating.
                async with self.ctx.db.session() as session, session.begin():
                    await series_store.unclaim(session, series.id, occurrence.index, instance=self.ctx.instance_id)
            else:
                await self._unknown(series, occurrence)
            return 0
        except UpstreamError as exc:
            log.warning(
                "maintenance series %s: occurrence %s was not created (%s); retried at the next roll",
                series.id,
                occurrence.index,
                exc,
            )
            async with self.ctx.db.session() as session, session.begin():
                await series_store.release(session, series.id, occurrence.index, instance=self.ctx.instance_id)
            return 0
        return 1

    async def _recover(self, series: MaintenanceSeries, occurrence: Occurrence) -> int:
        """A claim taken over from a replica that died mid-create: what it made is found
        before anything is created again."""
        async with self.ctx.db.session() as session, session.begin():
            stored = await series_store.window_of(session, series.id, occurrence.index)
            if stored is not None:
                await series_store.settle(
                    session, series.id, occurrence.index, state=OccurrenceState.CREATED, window_id=stored.id
                )
                return 0
        backend = self.maintenance.backend
        if not backend.lists_all:
            await self._unknown(series, occurrence)
            return 0
        form = form_for(series, occurrence)
        offset = await self.maintenance.server_offset()
        listed = await backend.list_windows()
        async with self.ctx.db.session() as session:
            known = await window_store.by_upstream_ids(session, backend.name, [w.upstream_id for w in listed])

        def could_be_it(bw) -> bool:
            row = known.get(bw.upstream_id)
            same = bw.title == form.title and (not backend.uses_servers or tuple(bw.servers) == tuple(form.servers))
            return same and (row is None or (row.created_by is None and row.series_id is None))

        found = server_times.find_lost_write(filter(could_be_it, listed), (form.start, form.end), offset)
        if found is None:
            log.info(
                "maintenance series %s: occurrence %s, left by a replica now gone, is not upstream; creating it",
                series.id,
                occurrence.index,
            )
            return await self._create(series, occurrence)
        log.info(
            "maintenance series %s: occurrence %s, left by a replica now gone, was found upstream (%s); not creating it again",
            series.id,
            occurrence.index,
            found.upstream_id,
        )
        row = known.get(found.upstream_id)
        if row is None:
            await self.maintenance.store_occurrence(form, found, series.created_by, (series.id, occurrence.index))
        else:  # the sync adopted it meanwhile, as a window made outside Slack
            async with self.ctx.db.session() as session, session.begin():
                await series_store.link(session, row.id, series.id, occurrence.index, created_by=series.created_by)
        return 1

    async def _unknown(self, series: MaintenanceSeries, occurrence: Occurrence) -> None:
        async with self.ctx.db.session() as session, session.begin():
            await series_store.settle(session, series.id, occurrence.index, state=OccurrenceState.UNKNOWN, window_id=None)
