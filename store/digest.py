"""The weekly digest's figures, summed from the store's rows: plain data in, plain data out,
no Slack (the service adds the thread links, `bot.messages.digest` renders it)."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from store.models import Incident, MaintenanceWindow
from store.states import WindowState

WEEK = timedelta(days=7)


class WindowOutcome(StrEnum):
    """How a window of the week went, as the digest counts it."""

    ON_TIME = "on_time"
    """Ran (or is running) within its first planned end."""
    EXTENDED = "extended"
    """Its end was moved past the one first planned."""
    CANCELLED = "cancelled"
    """Called off (from Slack or upstream) before or while it ran."""


@dataclass(frozen=True)
class WeekDigest:
    """A week's figures and the rows behind them; links by ("incident"|"window", id)."""

    start: datetime
    end: datetime
    declared: list[Incident]
    resolved: list[Incident]
    still_open: list[Incident]
    #: How many of the incidents declared this week had each impact.
    by_impact: dict[str, int]
    #: Time to resolve of the incidents resolved this week.
    resolve_median: timedelta | None
    resolve_longest: Incident | None
    ran: list[tuple[MaintenanceWindow, WindowOutcome]]
    coming: list[MaintenanceWindow]
    links: dict[tuple[str, int], str] = field(default_factory=dict)


def summarize(
    start: datetime,
    end: datetime,
    incidents: list[Incident],
    windows: list[MaintenanceWindow],
    *,
    links: dict[tuple[str, int], str] | None = None,
) -> WeekDigest:
    """The digest of [start, end) from the incidents open at some moment of it and the windows
    that started (or were called off) between `start` and a week after `end`."""

    def within(moment: datetime | None) -> bool:
        return moment is not None and start <= moment < end

    declared = [i for i in incidents if within(i.declared_at)]
    resolved = [i for i in incidents if within(i.resolved_at)]
    still_open = [i for i in incidents if i.declared_at < end and (i.resolved_at is None or i.resolved_at >= end)]
    took = {i.id: i.resolved_at - i.declared_at for i in resolved}
    longest = max(resolved, key=lambda i: (took[i.id], -i.id)) if resolved else None
    ran: list[tuple[MaintenanceWindow, WindowOutcome]] = []
    coming: list[MaintenanceWindow] = []
    for window in windows:
        cancelled = window.state == WindowState.CANCELLED
        if within(window.start) or (cancelled and within(window.cancelled_at)):
            ran.append((window, _outcome(window)))
        elif end <= window.start < end + WEEK and not cancelled:
            coming.append(window)
    return WeekDigest(
        start=start,
        end=end,
        declared=declared,
        resolved=resolved,
        still_open=still_open,
        by_impact=dict(Counter(i.impact for i in declared).most_common()),
        resolve_median=statistics.median(took.values()) if took else None,
        resolve_longest=longest,
        ran=ran,
        coming=coming,
        links=links or {},
    )


def _outcome(window: MaintenanceWindow) -> WindowOutcome:
    if window.state == WindowState.CANCELLED:
        return WindowOutcome.CANCELLED
    if window.planned_end is not None and window.end is not None and window.end > window.planned_end:
        return WindowOutcome.EXTENDED
    return WindowOutcome.ON_TIME
