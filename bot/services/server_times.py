"""Servers that keep other times than they were sent (seed 003: sent 14:00, kept 19:00).

The rule, in order:

1. The server's reply is the truth (seeds README). The bot stores, announces, lists and
   reminds at the times the server keeps, and tells the person when those differ from what
   they entered.
2. Each reply teaches the server's offset: kept − sent. It is learned only when start and
   end moved alike by a whole number of quarter hours within ±14 h, which is what a time-zone
   mix-up produces. Assumption: the seed shows one example (+5 h) and documents nothing else;
   any other difference is reported to the person, never learned. The offset is kept in the
   store (it survives restarts) and a reply that shows another offset replaces it.
3. Every write sends wanted − offset, so the server keeps the wanted times. "Wanted" is what
   the form says when it is submitted: the times entered for a new window; for an edit, the
   form's times, which are prefilled with the times the server keeps, so a time nobody
   touched goes back to where it already is and an edit of the reason alone moves nothing.
4. When a reply still differs from what was wanted (the first write, before any offset was
   known, or the server changed its offset): a new window keeps the server's times and the
   person is told. An edit is sent once more with the offset just learned, because an edit
   must never move what the person did not move; if that still differs, the server's times
   stand and the person is told.
5. Retry after a lost reply looks for the window the lost write may have made: same reason
   and servers, and the wanted times moved alike by 0 (the lost write was compensated), by
   the known offset (it went out before the offset was known), or else by one zone-like
   amount that exactly one listed window shows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot.context import AppContext
from store import facts

if TYPE_CHECKING:
    from bot.backends.base import BackendWindow, MaintenanceBackend

log = logging.getLogger(__name__)

#: Time zones run from UTC−12 to UTC+14, in whole quarter hours.
MAX_OFFSET = timedelta(hours=14)
OFFSET_STEP = timedelta(minutes=15)
NO_OFFSET = timedelta(0)

Times = tuple[datetime, datetime]


def to_minute(moment: datetime) -> datetime:
    """What goes on the wire: AppFirst's form takes `yyyy-mm-dd HH:MM`."""
    return moment.replace(second=0, microsecond=0)


def offset_seen(sent: Times, kept: tuple[datetime | None, datetime | None]) -> timedelta | None:
    """kept − sent when start and end moved alike by a zone-like amount (0 included); else None."""
    kept_start, kept_end = kept
    if kept_start is None or kept_end is None:
        return None
    moved = kept_start - to_minute(sent[0])
    if moved != kept_end - to_minute(sent[1]):
        return None
    if abs(moved) > MAX_OFFSET or moved % OFFSET_STEP:
        return None
    return moved


def to_send(wanted: Times, offset: timedelta) -> Times:
    """The times to send so that a server adding `offset` keeps the wanted ones."""
    return wanted[0] - offset, wanted[1] - offset


def find_lost_write(candidates: Iterable[BackendWindow], wanted: Times, offset: timedelta) -> BackendWindow | None:
    """Rule 5: among windows with the right reason and servers, the one a lost write made."""
    by_shift: dict[timedelta, list[BackendWindow]] = {}
    for window in candidates:
        shift = offset_seen(wanted, (window.start, window.end))
        if shift is not None:
            by_shift.setdefault(shift, []).append(window)
    for expected in (NO_OFFSET, offset):
        if by_shift.get(expected):
            return by_shift[expected][0]
    others = [window for group in by_shift.values() for window in group]
    return others[0] if len(others) == 1 else None


class ServerOffset:
    """One backend's offset as learned from its replies (rule 2), kept in the store's facts
    so it survives restarts."""

    def __init__(self, ctx: AppContext, backend: MaintenanceBackend):
        self.ctx, self.backend = ctx, backend

    def _key(self) -> str:
        return f"{self.backend.name}.offset"

    async def current(self) -> timedelta:
        """What this backend adds to the times it is sent, as last learned (0 until then)."""
        if not self.backend.replies_with_times:
            return NO_OFFSET
        async with self.ctx.db.session() as session:
            fact = await facts.get_fact(session, self._key())
        return timedelta(seconds=fact.value["seconds"]) if fact is not None else NO_OFFSET

    async def learn(self, fields: dict[str, Any], bw: BackendWindow, known: timedelta) -> timedelta | None:
        """Rule 2: the offset this reply shows, stored when it is new; None when the reply
        moved the times in a way no offset explains (reported, never learned)."""
        if not self.backend.replies_with_times:
            return None
        seen = offset_seen((fields["start"], fields["end"]), (bw.start, bw.end))
        if seen is None:
            log.warning("%s kept window %s at times no fixed offset explains", self.backend.service, bw.upstream_id)
            return None
        if seen != known:
            log.info("%s adds %s to the times it is sent (was %s)", self.backend.service, seen, known)
            async with self.ctx.db.session() as session, session.begin():
                await facts.put_fact(session, self._key(), {"seconds": int(seen.total_seconds())}, now=self.ctx.clock())
        return seen
