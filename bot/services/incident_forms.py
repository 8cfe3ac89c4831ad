"""What people type into the incident modals, and the rules it must meet."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from store.states import DraftKind

TITLE_MAX = 150
TEXT_MAX = 3000


@dataclass(frozen=True)
class DeclareForm:
    title: str
    description: str = ""
    status: str = "Investigating"
    #: None preselected (a hasty Declare must not announce an outage nobody chose), and
    #: subscribers not notified, unless SITREP_DEFAULT_IMPACT / SITREP_NOTIFY_DEFAULT say so.
    impact: str = ""
    component_ids: tuple[str, ...] = ()
    notify: bool = False
    #: The message it was declared from (the *Declare incident* message shortcut): its
    #: channel and ts, so the announcement can link to it. Empty for `/incident declare`.
    source_channel: str = ""
    source_ts: str = ""

    @property
    def from_message(self) -> bool:
        return bool(self.source_channel and self.source_ts)

    def problems(self, *, statuses: Sequence[str], impacts: Sequence[str]) -> dict[str, str]:
        """`statuses`/`impacts`: the words the status page accepts (settings)."""
        out: dict[str, str] = {}
        if not self.title.strip():
            out["title"] = "Give the incident a title."
        elif len(self.title) > TITLE_MAX:
            out["title"] = f"Keep the title under {TITLE_MAX} characters."
        if self.status not in statuses:
            out["status"] = "Pick a status."
        if self.impact not in impacts:
            out["impact"] = "Pick an impact."
        return out

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        lines = [f"Title: {self.title}", f"Status: {self.status}", f"Impact: {self.impact}"]
        if self.description:
            lines.append(f"Description: {self.description}")
        return "\n".join(lines)


@dataclass(frozen=True)
class UpdateForm:
    incident_id: int
    status: str
    text: str

    def problems(self, *, statuses: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.status not in statuses:
            out["status"] = "Pick a status."
        if not self.text.strip():
            out["text"] = "Say what changed."
        return out

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return f"Incident #{self.incident_id} → {self.status}\n{self.text}"


@dataclass(frozen=True)
class ResolveForm:
    incident_id: int
    note: str = ""

    def problems(self) -> dict[str, str]:
        return {}

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return f"Resolve incident #{self.incident_id}" + (f"\nNote: {self.note}" if self.note else "")


FORMS: dict[DraftKind, type] = {DraftKind.DECLARE: DeclareForm, DraftKind.UPDATE: UpdateForm, DraftKind.RESOLVE: ResolveForm}


def form_from_payload(kind: DraftKind, payload: dict[str, Any]) -> DeclareForm | UpdateForm | ResolveForm:
    data = dict(payload)
    if "component_ids" in data:
        data["component_ids"] = tuple(data["component_ids"])
    return FORMS[kind](**data)
