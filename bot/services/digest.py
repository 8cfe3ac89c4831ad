"""The weekly digest: what a week of incidents and maintenance came to, read from the store
(the record of what sitrep declared and announced), and when each week's digest is due.

Weeks are counted on the wall clock of `SITREP_DIGEST`'s time zone, so `mon 09:00
Europe/Berlin` is 09:00 in Berlin in summer and in winter: the week across a daylight-saving
change is an hour shorter or longer, never shifted."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from bot.context import AppContext
from bot.settings import DigestSchedule
from bot.slack.channel import Posted
from store import incidents as incident_store
from store import maintenance as window_store
from store.digest import WEEK, WeekDigest, summarize

#: Windows the digest links (one chat.getPermalink each); the rest are listed without a link.
MAX_WINDOW_LINKS = 40


def due_at_or_before(schedule: DigestSchedule, moment: datetime) -> datetime:
    """The latest digest time at or before `moment` (UTC)."""
    local = moment.astimezone(schedule.tz)
    day = local.date() - timedelta(days=(local.weekday() - schedule.weekday) % 7)
    due = _at(schedule, day)
    if due > moment:
        due = _at(schedule, day - WEEK)
    return due


def due_after(schedule: DigestSchedule, moment: datetime) -> datetime:
    """The first digest time after `moment` (UTC)."""
    last = due_at_or_before(schedule, moment)
    return _at(schedule, last.astimezone(schedule.tz).date() + WEEK)


def week_before(schedule: DigestSchedule, due: datetime) -> tuple[datetime, datetime]:
    """The week a digest due at `due` reports: from the digest time a week earlier (same wall
    time) up to `due`."""
    return _at(schedule, due.astimezone(schedule.tz).date() - WEEK), due


def _at(schedule: DigestSchedule, day) -> datetime:
    # A wall time that does not exist that day (skipped by a spring-forward) is read with the
    # offset before the change, i.e. an hour later on the new clock (zoneinfo's fold=0).
    return datetime.combine(day, schedule.at, tzinfo=schedule.tz).astimezone(UTC)


class DigestService:
    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    def current_week(self) -> tuple[datetime, datetime]:
        """The week so far: since the last digest time (or the last 7 days without one)."""
        now = self.ctx.clock()
        schedule = self.ctx.settings.sitrep_digest
        return (due_at_or_before(schedule, now) if schedule else now - WEEK), now

    async def week(self, start: datetime, end: datetime) -> WeekDigest:
        """One read of the store, then the windows' thread links (incidents keep theirs)."""
        backend = self.ctx.maintenance
        async with self.ctx.db.session() as session:
            incidents = await incident_store.incidents_touching(session, start, end) if self.ctx.statuspage else []
            windows = await window_store.windows_touching(session, backend.name, start, end + WEEK) if backend else []
        digest = summarize(start, end, incidents, windows)
        links = {("incident", i.id): i.permalink for i in incidents if i.permalink}
        shown = [w for w, _ in digest.ran] + digest.coming
        shown = [w for w in shown if w.channel_id and w.message_ts][:MAX_WINDOW_LINKS]
        found = await asyncio.gather(*(self.ctx.channel.permalink(Posted(w.channel_id, w.message_ts)) for w in shown))
        links.update({("window", w.id): link for w, link in zip(shown, found, strict=True) if link})
        digest.links.update(links)
        return digest
