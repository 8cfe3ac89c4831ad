"""The weekly digest: what a week of incidents and maintenance came to, read from the store
(the record of what sitrep declared and announced), and when each week's digest is due.

Weeks are counted on the wall clock of `SITREP_DIGEST`'s time zone, so `mon 09:00
Europe/Berlin` is 09:00 in Berlin in summer and in winter: the week across a daylight-saving
change is an hour shorter or longer, never shifted."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError

from bot.context import AppContext
from bot.messages.digest import weekly_digest
from bot.settings import DigestSchedule
from bot.slack.channel import Posted
from bot.slack.posts import Post, PostTag
from store import incidents as incident_store
from store import maintenance as window_store
from store.digest import WEEK, WeekDigest, summarize
from store.models import Reminder, WeeklyDigest
from store.states import ReminderKind

log = logging.getLogger(__name__)

#: Windows the digest links (one chat.getPermalink each); the rest are listed without a link.
MAX_WINDOW_LINKS = 40
#: A digest posted later than this after its time says it is late (sitrep was not running).
LATE_AFTER = timedelta(minutes=5)


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

    # --- the weekly post (a `Reminder` row of kind `digest`, through the engine) -------------
    async def plan_next(self) -> datetime | None:
        """Plan the next digest (its row), once across replicas: the `WeeklyDigest` row's key
        is the digest time, so a second replica's plan of the same week finds it taken. Planned
        one ahead: a digest whose time passed while sitrep was down is still pending and is
        posted late when it comes back; a new install posts nothing for weeks before it ran."""
        schedule = self.ctx.settings.sitrep_digest
        if schedule is None:
            return None
        due = due_after(schedule, self.ctx.clock())
        try:
            async with self.ctx.db.session() as session, session.begin():
                if await session.get(WeeklyDigest, due) is not None:
                    return due
                row = Reminder(kind=ReminderKind.DIGEST, due_at=due)
                session.add(row)
                await session.flush()
                session.add(WeeklyDigest(due_at=due, reminder_id=row.id))
        except IntegrityError:
            return due  # another replica planned it first
        await self.ctx.wake()
        return due

    async def post_for(self, due_at: datetime, *, late: bool) -> Post:
        """The digest due at `due_at`: the week before it, read (with its threads' links) before
        the post is queued. The links are Slack calls paced in the same channel's queue, so
        they cannot be asked from inside the post's own turn there."""
        schedule = self.ctx.settings.sitrep_digest
        start, end = week_before(schedule, due_at) if schedule else (due_at - WEEK, due_at)
        message = weekly_digest(await self.week(start, end), late_since=due_at if late else None)
        return Post(PostTag.DIGEST, {"due": due_at.isoformat()}, message, thread=None)
