"""What a successful submission produced, for the handler to render: one type for every
feature, so listeners, Retry and the renderers read it the same way."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from store.models import Incident, MaintenanceWindow
from store.states import DraftKind


@dataclass(frozen=True)
class Change:
    """One field an edit changed, old and new value as stored."""

    field: str  # title, description, start, end, servers, components
    old: Any
    new: Any


@dataclass
class Outcome:
    """The record as stored after the change, where it is announced, and what to add."""

    kind: DraftKind
    record: Incident | MaintenanceWindow
    permalink: str | None = None
    warning: str | None = None  # the upstream took it, but Slack did not (or a note on how)
    #: The times the person entered, when the server stored different ones (maintenance).
    entered: tuple[datetime, datetime] | None = None
    #: What an edit changed (maintenance).
    changes: list[Change] = field(default_factory=list)
