"""What people type into the maintenance modals, and the rules it must meet."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

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
        if uses_servers:
            parsed = parse_servers(self.servers_text)
            if parsed is None:
                out["servers"] = "Server IDs are numbers, separated by commas, like `1, 2, 3`."
            elif not parsed:
                out["servers"] = "List at least one server ID, like `1, 2, 3`."
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
        if self.window_id is not None:
            lines.insert(0, f"Maintenance #{self.window_id}")
        return "\n".join(lines)

    def to_payload(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("start", "end"):
            data[key] = data[key].isoformat() if data[key] is not None else None
        data["component_ids"] = list(self.component_ids)
        return data


@dataclass(frozen=True)
class CancelForm:
    window_id: int
    note: str = ""

    def problems(self, **_kw: Any) -> dict[str, str]:
        return {}

    def summary(self) -> str:
        return f"Cancel maintenance #{self.window_id}" + (f"\nNote: {self.note}" if self.note else "")

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)


FORMS: dict[DraftKind, type] = {DraftKind.SCHEDULE: ScheduleForm, DraftKind.EDIT: ScheduleForm, DraftKind.CANCEL: CancelForm}


def form_from_payload(kind: DraftKind, payload: dict[str, Any]) -> ScheduleForm | CancelForm:
    data = dict(payload)
    if FORMS[kind] is ScheduleForm:
        for key in ("start", "end"):
            if data.get(key):
                data[key] = datetime.fromisoformat(data[key])
        data["component_ids"] = tuple(data.get("component_ids") or ())
    return FORMS[kind](**data)
