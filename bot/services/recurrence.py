"""When the windows of a recurring series fall: a rule in a time zone, expanded to
occurrences on the wall clock of that zone, so 02:00 stays 02:00 across a daylight-saving
change (the window is then an hour earlier or later in UTC, as people expect).

Neither maintenance API knows recurrence: sitrep keeps the rule and creates each occurrence
as an ordinary window ahead of time. An occurrence is named by its index in the rule (0 for
the first), which never changes for a given rule: the key that makes each one created once.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

#: Occurrences a series may have at most (a daily series for about 3 years): a rule is
#: expanded from its first occurrence each time, and a bound keeps that cheap.
MAX_OCCURRENCES = 1000


class Repeat(StrEnum):
    """How a series repeats."""

    NONE = "none"
    """One window, no series."""
    DAILY = "daily"
    """Every day at the same local time."""
    WEEKLY = "weekly"
    """On the chosen weekdays of every week."""
    BIWEEKLY = "biweekly"
    """On the chosen weekdays of every other week (the first occurrence's week and every second one after it)."""
    MONTHLY_WEEKDAY = "monthly_weekday"
    """On the nth weekday of every month, as the first occurrence is (the 1st Sunday; a 5th one means the last)."""
    MONTHLY_DAY = "monthly_day"
    """On the same day of every month; months without that day (the 31st in April) are skipped."""


@dataclass(frozen=True)
class Occurrence:
    index: int
    start: datetime  # UTC
    end: datetime  # UTC


@dataclass(frozen=True)
class Recurrence:
    """A series' rule. `first` is the first occurrence's local date and `at` its local start
    time in `zone`; `length` is wall-clock time (02:00 + 2 h ends at 04:00 local). It ends
    after `count` occurrences or on `until` (a local date, inclusive), whichever comes first;
    with neither, at `MAX_OCCURRENCES`."""

    repeat: Repeat
    zone: str
    first: date
    at: time
    length: timedelta
    weekdays: tuple[int, ...] = ()  # 0 = Monday; WEEKLY/BIWEEKLY (empty: the first date's weekday)
    until: date | None = None
    count: int | None = None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.zone)

    def occurrences(self, *, starting_before: datetime | None = None) -> Iterator[Occurrence]:
        """Every occurrence in order, the first included, up to (not including) a start at or
        after `starting_before`."""
        for index, day in enumerate(self._dates()):
            if index >= min(self.count or MAX_OCCURRENCES, MAX_OCCURRENCES):
                return
            if self.until is not None and day > self.until:
                return
            start = self._utc(day, self.at)
            if starting_before is not None and start >= starting_before:
                return
            local = datetime.combine(day, self.at)
            end_local = local + self.length
            yield Occurrence(index, start, self._utc(end_local.date(), end_local.time()))

    def _utc(self, day: date, at: time) -> datetime:
        # A local time skipped by a spring-forward (02:30 that night) is read with the offset
        # before the change, i.e. an hour later on the new clock (zoneinfo's fold=0).
        return datetime.combine(day, at, tzinfo=self.tz).astimezone(UTC)

    def _dates(self) -> Iterator[date]:
        first = self.first
        if self.repeat is Repeat.NONE:
            yield first
        elif self.repeat is Repeat.DAILY:
            day = first
            while True:
                yield day
                day += timedelta(days=1)
        elif self.repeat in (Repeat.WEEKLY, Repeat.BIWEEKLY):
            step = timedelta(weeks=1 if self.repeat is Repeat.WEEKLY else 2)
            days = sorted(set(self.weekdays or (first.weekday(),)))
            monday = first - timedelta(days=first.weekday())
            while True:
                for weekday in days:
                    day = monday + timedelta(days=weekday)
                    if day >= first:
                        yield day
                monday += step
        elif self.repeat is Repeat.MONTHLY_WEEKDAY:
            nth = (first.day - 1) // 7 + 1  # 5 means the last
            for year, month in _months(first):
                yield _nth_weekday(year, month, first.weekday(), nth)
        else:  # MONTHLY_DAY
            for year, month in _months(first):
                if first.day <= calendar.monthrange(year, month)[1]:
                    yield date(year, month, first.day)


def _months(first: date) -> Iterator[tuple[int, int]]:
    year, month = first.year, first.month
    while True:
        yield year, month
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def _nth_weekday(year: int, month: int, weekday: int, nth: int) -> date:
    """The nth `weekday` of the month (1–4), or the last one for 5."""
    days = [d for d in range(1, calendar.monthrange(year, month)[1] + 1) if date(year, month, d).weekday() == weekday]
    return date(year, month, days[nth - 1] if nth < 5 else days[-1])


def describe(rule: Recurrence) -> str:
    """The rule in words, for the announcement and the list ("every Tuesday at 02:00 Europe/Berlin")."""
    names = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
    at = f"at {rule.at:%H:%M} {rule.zone}"
    if rule.repeat is Repeat.DAILY:
        what = "every day"
    elif rule.repeat in (Repeat.WEEKLY, Repeat.BIWEEKLY):
        days = " and ".join(names[d] for d in sorted(set(rule.weekdays or (rule.first.weekday(),))))
        what = f"every {'other ' if rule.repeat is Repeat.BIWEEKLY else ''}{days}"
    elif rule.repeat is Repeat.MONTHLY_WEEKDAY:
        nth = (rule.first.day - 1) // 7 + 1
        what = f"the {('first', 'second', 'third', 'fourth', 'last')[nth - 1]} {names[rule.first.weekday()]} of every month"
    elif rule.repeat is Repeat.MONTHLY_DAY:
        what = f"day {rule.first.day} of every month"
    else:
        return f"once, {at}"
    ends = f", {rule.count} times" if rule.count else f", until {rule.until:%Y-%m-%d}" if rule.until else ""
    return f"{what} {at}{ends}"
