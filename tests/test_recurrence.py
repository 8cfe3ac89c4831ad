"""Recurring maintenance: a rule in a time zone expands to occurrences on that zone's wall
clock, so 02:00 stays 02:00 across daylight-saving changes; each occurrence keeps its index."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.services.recurrence import MAX_OCCURRENCES, Recurrence, Repeat, describe

BERLIN = ZoneInfo("Europe/Berlin")


def local(occurrence, zone=BERLIN) -> tuple[str, str]:
    return occurrence.start.astimezone(zone).strftime("%a %Y-%m-%d %H:%M"), occurrence.end.astimezone(zone).strftime("%H:%M")


def test_a_weekly_series_keeps_its_local_time_across_daylight_saving():
    rule = Recurrence(Repeat.WEEKLY, "Europe/Berlin", date(2027, 3, 16), time(2, 0), timedelta(hours=2), count=4)
    got = list(rule.occurrences())
    assert [local(o) for o in got] == [
        ("Tue 2027-03-16 02:00", "04:00"),
        ("Tue 2027-03-23 02:00", "04:00"),
        ("Tue 2027-03-30 02:00", "04:00"),  # after the change to summer time (28 March)
        ("Tue 2027-04-06 02:00", "04:00"),
    ]
    # In UTC the window moved an hour earlier, as a wall clock in Berlin does.
    assert [o.start.hour for o in got] == [1, 1, 0, 0]
    assert [o.index for o in got] == [0, 1, 2, 3]


def test_weekly_on_chosen_weekdays_and_every_other_week():
    weekly = Recurrence(Repeat.WEEKLY, "UTC", date(2027, 1, 6), time(22, 0), timedelta(hours=1), weekdays=(0, 2), count=4)
    assert [o.start.date() for o in weekly.occurrences()] == [
        date(2027, 1, 6),
        date(2027, 1, 11),
        date(2027, 1, 13),
        date(2027, 1, 18),
    ]
    biweekly = Recurrence(Repeat.BIWEEKLY, "UTC", date(2027, 1, 5), time(2, 0), timedelta(hours=1), until=date(2027, 2, 2))
    assert [o.start.date() for o in biweekly.occurrences()] == [date(2027, 1, 5), date(2027, 1, 19), date(2027, 2, 2)]


def test_monthly_on_the_nth_weekday_and_the_last_one():
    first_sunday = Recurrence(Repeat.MONTHLY_WEEKDAY, "Europe/Berlin", date(2027, 1, 3), time(2, 0), timedelta(hours=2), count=4)
    assert [o.start.astimezone(BERLIN).date() for o in first_sunday.occurrences()] == [
        date(2027, 1, 3),
        date(2027, 2, 7),
        date(2027, 3, 7),
        date(2027, 4, 4),
    ]
    last_friday = Recurrence(Repeat.MONTHLY_WEEKDAY, "UTC", date(2027, 1, 29), time(18, 0), timedelta(hours=1), count=3)
    assert [o.start.date() for o in last_friday.occurrences()] == [date(2027, 1, 29), date(2027, 2, 26), date(2027, 3, 26)]
    assert describe(last_friday) == "the last Friday of every month at 18:00 UTC, 3 times"


def test_monthly_on_a_day_skips_months_without_it():
    rule = Recurrence(Repeat.MONTHLY_DAY, "UTC", date(2027, 1, 31), time(3, 0), timedelta(hours=1), count=4)
    assert [o.start.date() for o in rule.occurrences()] == [
        date(2027, 1, 31),
        date(2027, 3, 31),
        date(2027, 5, 31),
        date(2027, 7, 31),
    ]
    assert [o.index for o in rule.occurrences()] == [0, 1, 2, 3]


def test_a_local_time_skipped_by_spring_forward_is_taken_an_hour_later():
    rule = Recurrence(Repeat.DAILY, "Europe/Berlin", date(2027, 3, 27), time(2, 30), timedelta(minutes=30), count=3)
    assert [local(o)[0] for o in rule.occurrences()] == ["Sat 2027-03-27 02:30", "Sun 2027-03-28 03:30", "Mon 2027-03-29 02:30"]


def test_the_series_ends_by_count_until_or_the_bound_and_can_be_cut_at_a_time():
    daily = Recurrence(Repeat.DAILY, "UTC", date(2027, 1, 1), time(0, 0), timedelta(hours=1))
    assert sum(1 for _ in daily.occurrences()) == MAX_OCCURRENCES
    horizon = datetime(2027, 1, 8, tzinfo=UTC)
    assert [o.index for o in daily.occurrences(starting_before=horizon)] == list(range(7))
    until = Recurrence(Repeat.DAILY, "UTC", date(2027, 1, 1), time(0, 0), timedelta(hours=1), until=date(2027, 1, 3), count=10)
    assert len(list(until.occurrences())) == 3


@pytest.mark.parametrize(
    ("rule", "words"),
    [
        (
            Recurrence(Repeat.WEEKLY, "Europe/Berlin", date(2027, 3, 16), time(2, 0), timedelta(hours=2)),
            "every Tuesday at 02:00 Europe/Berlin",
        ),
        (
            Recurrence(
                Repeat.BIWEEKLY, "UTC", date(2027, 1, 5), time(2, 0), timedelta(hours=1), weekdays=(1, 3), until=date(2027, 6, 1)
            ),
            "every other Tuesday and Thursday at 02:00 UTC, until 2027-06-01",
        ),
        (
            Recurrence(Repeat.DAILY, "UTC", date(2027, 1, 5), time(2, 0), timedelta(hours=1), count=5),
            "every day at 02:00 UTC, 5 times",
        ),
        (
            Recurrence(Repeat.MONTHLY_DAY, "UTC", date(2027, 1, 15), time(2, 0), timedelta(hours=1)),
            "day 15 of every month at 02:00 UTC",
        ),
    ],
)
def test_a_rule_in_words(rule, words):
    assert describe(rule) == words
