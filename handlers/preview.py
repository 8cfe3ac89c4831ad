"""`sitrep preview`: what sitrep looks like in Slack, as links to Slack's Block Kit Builder.

Each link is built by the same pure builders that build the real messages and forms, from
made-up sample data, so a preview never drifts from what Slack is sent. The docs link them
(tests/test_docs.py checks the links there are what this prints)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from bot.backends import backend_named
from bot.messages import incident as incident_messages
from bot.messages import maintenance as maintenance_messages
from bot.services.home import HomeOverview
from bot.services.incident_forms import DeclareForm
from bot.settings import DEFAULT_INCIDENT_IMPACTS, DEFAULT_INCIDENT_STATUSES, Component
from handlers.home.views import home_view
from handlers.incident.views import declare_modal
from store.models import Incident, IncidentEvent, MaintenanceWindow
from store.states import ReminderKind, WindowState

#: Slack's Block Kit Builder opens the payload after `#`, URL-encoded: `{"blocks": [...]}` for
#: a message, the view itself for a modal or a home tab.
# assumption: no Slack document here describes the Builder's URL; this is the form its own
# "Copy link" produces, which opens without a workspace chosen.
BUILDER = "https://app.slack.com/block-kit-builder/#"

# A fixed moment, so the links are the same from one run to the next (the docs hold them).
_AT = datetime(2026, 3, 2, 14, 5, tzinfo=timezone.utc)
_COMPONENTS = (
    Component("API", "3fa85f64-5717-4562-b3fc-2c963f66afa0"),
    Component("Website", "3fa85f64-5717-4562-b3fc-2c963f66afa1"),
)


@dataclass(frozen=True)
class Preview:
    name: str
    what: str
    payload: dict

    @property
    def url(self) -> str:
        return BUILDER + quote(json.dumps(self.payload, separators=(",", ":"), ensure_ascii=False), safe="")


def _incident() -> Incident:
    return Incident(
        id=12,
        upstream_id="8d3c1f2e-5a8b-4c1d-9e3f-2b7a6c5d4e3f",
        title="Checkout is failing for EU users",
        description="Payments time out after 30 s for about a third of EU customers.",
        status="Identified",
        impact="Partial Outage",
        components=["API"],
        notify=False,
        channel_id="C0123456789",
        declared_by="U0123ABCD",
        declared_at=_AT,
        updated_at=_AT + timedelta(minutes=20),
        update_count=1,
    )


def _update(incident: Incident) -> IncidentEvent:
    return IncidentEvent(
        incident_id=incident.id,
        kind="update",
        status="Identified",
        text="A certificate expired on the EU payment gateway; renewing it now.",
        user_id="U0456EFGH",
        at=_AT + timedelta(minutes=20),
    )


def _window() -> MaintenanceWindow:
    return MaintenanceWindow(
        id=4,
        backend="statuspage",
        upstream_id="5b1e2c3d-4f5a-6b7c-8d9e-0f1a2b3c4d5e",
        title="Database upgrade",
        description="PostgreSQL 15 to 16; writes pause for about ten minutes.",
        start=_AT + timedelta(days=1),
        end=_AT + timedelta(days=1, hours=1),
        components=["API"],
        servers=[],
        state=WindowState.SCHEDULED,
        created_by="U0123ABCD",
        created_at=_AT,
        updated_at=_AT,
    )


def previews() -> list[Preview]:
    """The messages and forms a newcomer meets first, in the order they meet them."""
    incident, window = _incident(), _window()
    _text, announcement = incident_messages.announcement(incident)
    _text, update = incident_messages.update_reply(incident, _update(incident))
    _text, window_announcement = maintenance_messages.announcement(window, backend_named(window.backend))
    _text, heads_up = maintenance_messages.reminder(window, ReminderKind.HEADS_UP, lead_minutes=15)
    form = DeclareForm(title="Checkout is failing for EU users")
    declare = declare_modal(
        form, _COMPONENTS, statuses=DEFAULT_INCIDENT_STATUSES, impacts=DEFAULT_INCIDENT_IMPACTS, channel_id="C0123456789"
    )
    home = home_view(
        HomeOverview(now=_AT, incidents=[incident], windows=[window], open_incidents=1, maintenance_service="the status page")
    )
    return [
        Preview("declare-form", "the declare form (/incident)", declare),
        Preview("incident-announcement", "an incident's announcement in SITREP_CHANNEL", {"blocks": announcement}),
        Preview("incident-update", "an update, in the announcement's thread", {"blocks": update}),
        Preview("maintenance-announcement", "a maintenance window's announcement", {"blocks": window_announcement}),
        Preview("maintenance-reminder", "the heads-up reminder, in the window's thread", {"blocks": heads_up}),
        Preview("home-tab", "the home tab", home),
    ]


def preview_lines() -> list[str]:
    """What `sitrep preview` prints: a name, what it shows, and the link, per preview."""
    return [f"{p.name} ({p.what}):\n  {p.url}" for p in previews()]
