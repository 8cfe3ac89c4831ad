"""What people type into the maintenance modals, and the rules it must meet."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.services.recurrence import MAX_OCCURRENCES, Recurrence, Repeat
from store.states import DraftKind

TITLE_MAX = 150
TEXT_MAX = 3000
SERVERS_MAX = 500  # characters of the servers field


_SERVER_SPLIT = re.compile(r"[\s,;]+")


def parse_servers(text: str) -> tuple[int, ...] | None:
    """`1, 2 3` or `[1,2,3]` → (1, 2, 3); None when anything is not a server ID."""
    body = text.strip()
    if body.startswith("[") and body.endswith("]"):
        body = body[1:-1]
    parts = [p for p in _SERVER_SPLIT.split(body) if p]
    if not all(p.isdigit() for p in parts):
        return None
    seen: dict[int, None] = {}
    for part in parts:
        seen.setdefault(int(part), None)
    return tuple(seen)


def format_servers(servers: tuple[int, ...] | list[int]) -> str:
    """Server IDs as the form field shows them (`1, 2, 3`)."""
    return ", ".join(str(s) for s in servers)


#: The longest window each way of repeating allows: occurrences must not overlap.
_LONGEST = {
    Repeat.NONE: timedelta.max,
    Repeat.DAILY: timedelta(days=1),
    Repeat.WEEKLY: timedelta(days=1),  # weekdays may be a day apart
    Repeat.BIWEEKLY: timedelta(days=1),
    Repeat.MONTHLY_WEEKDAY: timedelta(days=7),
    Repeat.MONTHLY_DAY: timedelta(days=7),
}


def valid_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


@dataclass(frozen=True)
class ScheduleForm:
    """A new window, or the new version of one (`window_id` set, for edit)."""

    title: str
    description: str = ""
    start: datetime | None = None
    end: datetime | None = None
    component_ids: tuple[str, ...] = ()
    servers_text: str = ""  # as typed, so a bad entry is given back unchanged
    window_id: int | None = None
    #: A new window may repeat (a series): how, on which weekdays, until a date or how many
    #: times (as typed), and in which time zone (as typed; empty: the person's own in Slack).
    repeat: str = Repeat.NONE
    weekdays: tuple[int, ...] = ()
    until: date | None = None
    times_text: str = ""
    zone: str = ""
    #: An edit of one occurrence of a series: this one and every one after it.
    following: bool = False

    @property
    def repeats(self) -> bool:
        return self.window_id is None and self.repeat != Repeat.NONE

    @property
    def times(self) -> int | None:
        text = self.times_text.strip()
        return int(text) if text.isdigit() and len(text) <= 6 else None

    def recurrence(self, zone: str) -> Recurrence:
        """The series this form asks for, its first occurrence being the form's own times, on
        the wall clock of `zone` (a valid zone name: `problems` checked the typed one)."""
        assert self.start is not None and self.end is not None
        tz = ZoneInfo(zone)
        local_start, local_end = self.start.astimezone(tz), self.end.astimezone(tz)
        return Recurrence(
            repeat=Repeat(self.repeat),
            zone=zone,
            first=local_start.date(),
            at=local_start.time().replace(second=0, microsecond=0),
            length=local_end.replace(tzinfo=None) - local_start.replace(tzinfo=None),
            weekdays=self.weekdays,
            until=self.until,
            count=self.times,
        )

    @property
    def servers(self) -> tuple[int, ...]:
        return parse_servers(self.servers_text) or ()

    def problems(
        self,
        *,
        now: datetime,
        title_label: str = "Title",
        uses_servers: bool = False,
        original_start: datetime | None = None,
        original_title: str | None = None,
    ) -> dict[str, str]:
        """Field → sentence. An edit may keep a start that has passed (`original_start`) and a
        title longer than ours that was made outside Slack (`original_title`)."""
        out: dict[str, str] = {}
        noun = title_label.lower()
        if not self.title.strip():
            out["title"] = f"Give the maintenance a {noun}."
        elif len(self.title) > TITLE_MAX and self.title.strip() != (original_title or "").strip():
            out["title"] = f"Keep the {noun} under {TITLE_MAX} characters."
        if self.start is None:
            out["start"] = "Pick when the maintenance starts."
        elif self.start < _minute(now) and (original_start is None or self.start != original_start):
            out["start"] = "The start is in the past. Pick a time from now on."
        if self.end is None:
            out["end"] = "Pick when the maintenance ends."
        elif self.start is not None and self.end <= self.start:
            out["end"] = "The end must be after the start."
        elif self.end < _minute(now):
            out["end"] = "The end is in the past."
        if self.repeats:
            out.update(self._series_problems())
        if uses_servers:
            parsed = parse_servers(self.servers_text)
            if parsed is None:
                out["servers"] = "Server IDs are numbers, separated by commas, like `1, 2, 3`."
            elif not parsed:
                out["servers"] = "List at least one server ID, like `1, 2, 3`."
        return out

    def _series_problems(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.repeat not in set(Repeat):
            out["repeat"] = "Pick how the window repeats."
            return out
        if self.zone.strip() and not valid_zone(self.zone.strip()):
            out["zone"] = "That is not a time zone I know: use a name like Europe/Berlin or America/New_York."
        if self.times_text.strip() and (self.times is None or not 2 <= self.times <= MAX_OCCURRENCES):
            out["times"] = f"How many times: a whole number from 2 to {MAX_OCCURRENCES}."
        elif self.until is None and not self.times_text.strip():
            out["until"] = "Say when the series ends: pick a last day, or say how many times."
        elif self.until is not None and self.start is not None and self.until < self.start.date() - timedelta(days=1):
            out["until"] = "The last day must not be before the first window."
        if self.start is not None and self.end is not None and self.end - self.start > _LONGEST[self.repeat]:
            out["end"] = "Each window must end before the next one starts: make it shorter, or repeat less often."
        return out

    def summary(self) -> str:
        lines = [f"Title: {self.title}"]
        if self.description:
            lines.append(f"Description: {self.description}")
        if self.start is not None:
            lines.append(f"Start: {self.start:%Y-%m-%d %H:%M} UTC")
        if self.end is not None:
            lines.append(f"End: {self.end:%Y-%m-%d %H:%M} UTC")
        if self.servers_text:
            lines.append(f"Servers: {self.servers_text}")
        if self.repeats:
            ends = f"until {self.until:%Y-%m-%d}" if self.until else f"{self.times_text} times"
            lines.append(f"Repeats: {self.repeat}, {ends}" + (f", in {self.zone}" if self.zone else ""))
        if self.window_id is not None:
            lines.insert(0, f"Maintenance #{self.window_id}")
        return "\n".join(lines)

    def to_payload(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("start", "end", "until"):
            data[key] = data[key].isoformat() if data[key] is not None else None
        data["component_ids"] = list(self.component_ids)
        data["weekdays"] = list(self.weekdays)
        return data


@dataclass(frozen=True)
class CancelForm:
    window_id: int
    note: str = ""
    #: The window is an occurrence of a series: this one and every one after it.
    following: bool = False

    def problems(self, **_kw: Any) -> dict[str, str]:
        return {}

    def summary(self) -> str:
        scope = " and the ones after it in its series" if self.following else ""
        return f"Cancel maintenance #{self.window_id}{scope}" + (f"\nNote: {self.note}" if self.note else "")

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)


FORMS: dict[DraftKind, type] = {DraftKind.SCHEDULE: ScheduleForm, DraftKind.EDIT: ScheduleForm, DraftKind.CANCEL: CancelForm}


def form_from_payload(kind: DraftKind, payload: dict[str, Any]) -> ScheduleForm | CancelForm:
    data = dict(payload)
    if FORMS[kind] is ScheduleForm:
        for key in ("start", "end"):
            if data.get(key):
                data[key] = datetime.fromisoformat(data[key])
        if data.get("until"):
            data["until"] = date.fromisoformat(data["until"])
        data["component_ids"] = tuple(data.get("component_ids") or ())
        data["weekdays"] = tuple(data.get("weekdays") or ())
    return FORMS[kind](**data)
