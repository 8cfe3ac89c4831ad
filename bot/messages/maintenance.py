"""Block Kit for the reminders the bot posts on its own: pure functions from data."""

from __future__ import annotations

from datetime import datetime

from bot.messages.format import SHORT_TITLE, context, escape, fit, section, slack_date
from store.models import MaintenanceWindow


def window_name(window: MaintenanceWindow) -> str:
    title = fit(window.title, SHORT_TITLE) if (window.title or "").strip() else "Maintenance"
    return f"*{title}* (maintenance #{window.id})"


def reminder(
    window: MaintenanceWindow, kind: str, *, lead_minutes: int, late_since: datetime | None = None
) -> tuple[str, list[dict]]:
    """`late_since` is the due time a late reminder missed."""
    name = window_name(window)
    if kind == "heads_up":
        head = f":hourglass_flowing_sand: Heads-up: {name} starts {slack_date(window.start)} (in about {lead_minutes} minutes)."
        text = f"Heads-up: maintenance #{window.id} starts soon"
    elif kind == "started":
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


def moved_outside(
    window: MaintenanceWindow, *, before: tuple[datetime, datetime], service: str
) -> tuple[str, list[dict]]:
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
