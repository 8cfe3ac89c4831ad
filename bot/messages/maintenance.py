"""A maintenance window's channel messages: the announcement (kept current), its thread
replies, the reminders and the notes on changes made outside Slack. Pure functions from
stored rows to Block Kit; facts about the backend come from the backend passed in."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from bot.messages.format import (
    SHORT_TITLE,
    button,
    context,
    duration,
    escape,
    field,
    fit,
    fit_list,
    section,
    slack_date,
    text_sections,
    user,
)
from store.models import MaintenanceWindow
from store.states import ReminderKind, WindowState

FIELD_MAX = 1900  # a section field may hold 2000 characters

STATE_LABEL = {
    WindowState.SCHEDULED: ":calendar: Scheduled",
    WindowState.IN_PROGRESS: ":construction: In progress",
    WindowState.COMPLETED: ":white_check_mark: Completed",
    WindowState.CANCELLED: ":no_entry_sign: Cancelled",
}


class AnnouncementId(StrEnum):
    """The block and button on the announcement, which `handlers/maintenance` listens on."""

    ACTIONS = "maintenance_actions"
    CANCEL = "maintenance_cancel_button"


class BackendFacts(Protocol):
    """What a message needs to know of a backend (see `MaintenanceBackend`)."""

    display_name: str
    origin: str
    uses_servers: bool


class FieldChange(Protocol):
    """One field an edit changed (`bot.services` `Change`)."""

    field: str
    old: Any
    new: Any


def title_of(window: Any, limit: int = SHORT_TITLE) -> str:
    """The title (AppFirst: reason), which may come from outside Slack at any length."""
    return fit(window.title, limit) if window.title.strip() else "(no reason given)"


def state_label(window: Any) -> str:
    return STATE_LABEL.get(window.state, window.state)


def when(start: datetime | None, end: datetime | None) -> str:
    left = slack_date(start) if start else "not given"
    right = slack_date(end) if end else "end not given"
    lasted = f" ({duration(end - start)})" if start and end else ""
    return f"{left} → {right}{lasted}"


def targets(window: MaintenanceWindow, backend: BackendFacts, limit: int = FIELD_MAX) -> tuple[str, str]:
    """(label, text) for what the window affects, "and N more" past `limit`."""
    if window.servers or backend.uses_servers:
        return "Servers", fit_list(window.servers, limit)
    return "Components", fit_list(window.components, limit)


def window_name(window: MaintenanceWindow) -> str:
    title = fit(window.title, SHORT_TITLE) if (window.title or "").strip() else "Maintenance"
    return f"*{title}* (maintenance #{window.id})"


def reminder(
    window: MaintenanceWindow, kind: str, *, lead_minutes: int, late_since: datetime | None = None
) -> tuple[str, list[dict]]:
    """`late_since` is the due time a late reminder missed."""
    name = window_name(window)
    if kind == ReminderKind.HEADS_UP:
        head = f":hourglass_flowing_sand: Heads-up: {name} starts {slack_date(window.start)} (in about {lead_minutes} minutes)."
        text = f"Heads-up: maintenance #{window.id} starts soon"
    elif kind == ReminderKind.STARTED:
        until = f" Planned end: {slack_date(window.end)}." if window.end else ""
        head = f":construction: {name} has started.{until}"
        text = f"Maintenance #{window.id} has started"
    else:
        head = f":white_check_mark: {name} has ended."
        text = f"Maintenance #{window.id} has ended"
    blocks = [section(head)]
    if late_since is not None:
        blocks.append(context(f":warning: Posted late: this was due {slack_date(late_since)}."))
        text += " (posted late)"
    return text, blocks


def moved_outside(window: MaintenanceWindow, *, before: tuple[datetime, datetime], service: str) -> tuple[str, list[dict]]:
    old_start, old_end = before
    head = (
        f":arrows_counterclockwise: {window_name(window)} was changed on {escape(service)}: "
        f"now {slack_date(window.start)} to {slack_date(window.end)} "
        f"(was {slack_date(old_start)} to {slack_date(old_end)}). Reminders follow the new times."
    )
    return f"Maintenance #{window.id} was rescheduled", [section(head)]


def vanished(window: MaintenanceWindow, *, service: str) -> tuple[str, list[dict]]:
    head = f":no_entry_sign: {window_name(window)} is no longer on {escape(service)}: it is cancelled here too."
    return f"Maintenance #{window.id} was cancelled", [section(head)]


def announcement(window: MaintenanceWindow, backend: BackendFacts) -> tuple[str, list[dict]]:
    """The parent message, kept current: every field a reader needs at a glance."""
    target_label, affected = targets(window, backend)
    fields = [
        field("State", state_label(window)),
        field("Start", slack_date(window.start)),
        field("End", slack_date(window.end) if window.end else "Not given"),
        field("Duration", duration(window.end - window.start) if window.end else "Unknown"),
        field(target_label, affected),
        field("Scheduled by", user(window.created_by))
        if window.created_by
        else field("Scheduled", f"outside Slack, {backend.origin}"),
    ]
    # The announcement is where the whole title is shown; everywhere else a short form.
    blocks: list[dict] = [section(f":wrench: *Maintenance #{window.id}: {title_of(window, 2900)}*")]
    if window.description:
        blocks.extend(text_sections(window.description, max_blocks=3))
    blocks.append({"type": "section", "fields": fields})
    if WindowState(window.state).active:
        blocks.append(
            {
                "type": "actions",
                "block_id": AnnouncementId.ACTIONS,
                "elements": [button("Cancel window", AnnouncementId.CANCEL, str(window.id), "danger")],
            }
        )
    if window.series_rule:
        after = f" · next one {slack_date(window.series_next)}" if window.series_next else " · the last one"
        blocks.append(context(f":repeat: Repeats {fit(window.series_rule, 300)}{after}"))
    blocks.append(context(f"{backend.display_name} ID `{fit(window.upstream_id, 200)}` · updates in the thread"))
    state = STATE_LABEL.get(window.state, window.state).split(" ", 1)[-1]
    text = f"Maintenance #{window.id}: {title_of(window)} ({state}, {when(window.start, window.end)})"
    return text, blocks


FIELD_NAMES = {
    "title": "Title",
    "description": "Description",
    "start": "Start",
    "end": "End",
    "servers": "Servers",
    "components": "Components",
}


def _value(field: str, value: Any) -> str:
    if value is None or value == "" or value == []:
        return "_none_"
    if isinstance(value, datetime):
        return slack_date(value)
    if isinstance(value, list):
        return fit_list(value, 400, none="_none_")
    return fit(str(value), 400)


def edited_reply(
    window: MaintenanceWindow, changes: Sequence[FieldChange], user_id: str | None, at: datetime
) -> tuple[str, list[dict]]:
    head = f":pencil2: *Edited* by {user(user_id)} · {slack_date(at)}"
    if changes:
        lines = [f"• *{FIELD_NAMES.get(c.field, c.field)}*: {_value(c.field, c.old)} → {_value(c.field, c.new)}" for c in changes]
        body = "\n".join(lines)
    else:
        body = "Saved with no changes."
    what = ", ".join(FIELD_NAMES.get(c.field, c.field).lower() for c in changes) or "nothing"
    return f"Maintenance #{window.id} edited ({what} changed)", [section(head), section(body)]


def cancelled_reply(window: MaintenanceWindow, user_id: str | None, at: datetime, note: str = "") -> tuple[str, list[dict]]:
    head = f":no_entry_sign: *Cancelled* · maintenance #{window.id} *{title_of(window)}* cancelled by {user(user_id)} · {slack_date(at)}"
    blocks = [section(head), *text_sections(note)]
    return f"Cancelled: maintenance #{window.id} {title_of(window)}", blocks


class OverrunId(StrEnum):
    """The overrun prompt's buttons (value: the window's number), which `handlers/maintenance` listens on."""

    ACTIONS = "maintenance_overrun_actions"
    EXTEND_30 = "maintenance_extend_30"
    EXTEND_60 = "maintenance_extend_60"
    END_NOW = "maintenance_end_now"
    FOLLOW_ON = "maintenance_follow_on"


#: Minutes each extend button adds to the end.
EXTEND_MINUTES = {OverrunId.EXTEND_30: 30, OverrunId.EXTEND_60: 60}


def overrun_prompt(window: MaintenanceWindow) -> tuple[str, list[dict]]:
    """SITREP_OVERRUN_WARNING minutes before the end of a running window: still working?"""
    head = f":hourglass: {window_name(window)} ends at {slack_date(window.end)} — still working?"
    blocks = [
        section(head),
        {
            "type": "actions",
            "block_id": OverrunId.ACTIONS,
            "elements": [
                button("Extend 30 min", OverrunId.EXTEND_30, str(window.id)),
                button("Extend 1 h", OverrunId.EXTEND_60, str(window.id)),
                button("End now", OverrunId.END_NOW, str(window.id), "danger"),
            ],
        },
    ]
    return f"Maintenance #{window.id} ends soon: still working?", blocks


def ended_early_reply(window: MaintenanceWindow, user_id: str | None, at: datetime) -> tuple[str, list[dict]]:
    head = f":checkered_flag: {window_name(window)} ended now by {user(user_id)} · {slack_date(at)}"
    return f"Maintenance #{window.id} ended early", [section(head)]


def already_cancelled(window: MaintenanceWindow) -> str:
    """The answer to whoever lost a race to cancel (or came late): who won, and when."""
    who = f" by {user(window.cancelled_by)}" if window.cancelled_by else ""
    when = f" at {slack_date(window.cancelled_at)}" if window.cancelled_at else ""
    return f"Maintenance #{window.id} is already cancelled{who}{when}."
