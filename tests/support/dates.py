"""The suite's calendar, placed ahead of the machine's clock.

A bot without an injected clock reads the real one and refuses a window that starts in the
past, so fixed dates turned the suite red once the calendar passed them (2026-12-01). The
dates keep the shape the tests were written for (25 Nov 12:00 UTC; 09:00 New York on 1 Dec,
EST = UTC-5, and on 1 Jul, EDT = UTC-4) in the first year whose 25 Nov is still ahead.
Daylight saving time ends by 7 Nov and starts after 7 Mar in every year, so the winter and
summer offsets hold in any year. Weekdays differ from year to year; nothing in the bot reads them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

NY = ZoneInfo("America/New_York")


def first_year_ahead(now: datetime) -> int:
    """The first year whose 25 Nov 12:00 UTC is after `now`."""
    year = now.year
    while datetime(year, 11, 25, 12, 0, tzinfo=UTC) <= now:
        year += 1
    return year


#: Read once, when the tests are collected: every date below comes from it.
YEAR = first_year_ahead(datetime.now(UTC))
#: Where an injected clock starts.
T0 = datetime(YEAR, 11, 25, 12, 0, tzinfo=UTC)
#: 09:00 to 11:00 in New York on a winter date (EST, UTC-5): 14:00 to 16:00 UTC, six days after T0.
WINTER_START = datetime(YEAR, 12, 1, 9, 0, tzinfo=NY)
WINTER_END = datetime(YEAR, 12, 1, 11, 0, tzinfo=NY)
#: The same hours on a summer date (EDT, UTC-4): 13:00 to 15:00 UTC.
SUMMER_START = datetime(YEAR + 1, 7, 1, 9, 0, tzinfo=NY)
SUMMER_END = datetime(YEAR + 1, 7, 1, 11, 0, tzinfo=NY)
