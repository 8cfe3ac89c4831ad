"""The home tab: a pure function from `HomeOverview` to the view `views.publish` takes.

A home view holds at most 100 blocks. Each incident takes two (its line, and *Post update* /
*Resolve*), each window one (its line with *Cancel* beside it); past the numbers below the
rest are counted ("… and 12 more") and `/incident list` or `/maintenance list` shows them
all. Top, headings and footers take at most 10 more: 90 at most, however many there are."""

from __future__ import annotations

from datetime import datetime

from bot.messages.format import (
    button,
    context,
    duration,
    escape,
    fit,
    plain,
    section,
    slack_date,
)
from bot.messages.incident import IMPACT_EMOJI, STATUS_EMOJI
from bot.services.home import MAX_INCIDENTS_SHOWN, HomeOverview
from handlers.home.ids import Block, Callback
from handlers.incident.ids import Action as IncidentAction
from handlers.maintenance.ids import Action as MaintenanceAction
from store.models import Incident, MaintenanceWindow
from store.states import WindowState

MAX_HOME_BLOCKS = 100  # Slack's limit for a home view; tests/test_home.py holds the view to it
MAX_WINDOWS_SHOWN = 30  # one block each
TITLE_SHOWN = 200


def _header(text: str) -> dict:
    return {"type": "header", "text": plain(text, 150)}


def _linked(title: str, link: str | None) -> str:
    shown = fit(title, TITLE_SHOWN) or "(untitled)"
    return f"<{link}|{shown}>" if link else shown


def _incident_blocks(incident: Incident, overview: HomeOverview) -> list[dict]:
    line = (
        f"{IMPACT_EMOJI.get(incident.impact, ':red_circle:')} *#{incident.id}* {_linked(incident.title, incident.permalink)}\n"
        f"{STATUS_EMOJI.get(incident.status, '')} {fit(incident.status, 100)} · {fit(incident.impact, 100)} · "
        f"open {duration(overview.now - incident.declared_at)} (since {slack_date(incident.declared_at)})"
    )
    return [
        section(line),
        {
            "type": "actions",
            "elements": [
                button("Post update", IncidentAction.POST_UPDATE, str(incident.id), "primary"),
                button("Resolve", IncidentAction.RESOLVE, str(incident.id), "danger"),
            ],
        },
    ]


def _window_block(window: MaintenanceWindow, overview: HomeOverview) -> dict:
    running = window.state == WindowState.IN_PROGRESS or window.start <= overview.now
    until = slack_date(window.end) if window.end is not None else "its end is not known yet"
    when = f"{'Running' if running else 'Upcoming'} · {slack_date(window.start)} – {until}"
    link = overview.window_links.get(window.id)
    note = "" if window.message_ts else " · _not announced yet_"
    icon = ":construction:" if running else ":calendar:"
    block = section(f"{icon} *#{window.id}* {_linked(window.title, link)}\n{when}{note}")
    block["accessory"] = button("Cancel", MaintenanceAction.CANCEL, str(window.id), "danger")
    return block


def _more(count: int, command: str) -> dict:
    return context(f"… and {count} more: `{command}` shows them all.")


def unavailable_view(reason: str, now: datetime) -> dict:
    """The home tab when sitrep cannot read what is open: why, and when that was."""
    blocks = [
        _header("sitrep"),
        section(f":hourglass: {escape(reason)}"),
        context(f"As of {slack_date(now)} · open this tab again to refresh it"),
    ]
    return {"type": "home", "callback_id": Callback.HOME, "blocks": blocks}


def home_view(overview: HomeOverview) -> dict:
    """The whole home tab for one person, as of `overview.now`."""
    buttons = []
    if overview.incidents is not None:
        buttons.append(button("Declare incident", IncidentAction.DECLARE, "home", "danger"))
    if overview.windows is not None:
        buttons.append(button("Schedule maintenance", MaintenanceAction.SCHEDULE, "home", "primary"))
    blocks: list[dict] = [_header("sitrep"), context(f"As of {slack_date(overview.now)} · refreshed each time you open this tab")]
    if buttons:
        blocks.append({"type": "actions", "block_id": Block.ACTIONS, "elements": buttons})

    blocks += [{"type": "divider"}, {**section("*Open incidents*"), "block_id": Block.INCIDENTS}]
    if overview.incidents is None:
        blocks.append(context("Incidents are turned off: STATUSPAGE_URL is not set."))
    elif not overview.incidents:
        blocks.append(section(":sunny: No open incidents in the channels you are in."))
    else:
        for incident in overview.incidents[:MAX_INCIDENTS_SHOWN]:
            blocks += _incident_blocks(incident, overview)
        hidden = max(overview.open_incidents, len(overview.incidents)) - min(len(overview.incidents), MAX_INCIDENTS_SHOWN)
        if hidden > 0:
            blocks.append(_more(hidden, "/incident list"))

    blocks += [{"type": "divider"}, {**section("*Maintenance windows*, running and upcoming"), "block_id": Block.WINDOWS}]
    if overview.windows is None:
        blocks.append(context("Maintenance is turned off: neither APPFIRST_URL nor STATUSPAGE_URL is set."))
    elif not overview.windows:
        blocks.append(section(":white_check_mark: No maintenance running or planned."))
    else:
        blocks += [_window_block(window, overview) for window in overview.windows[:MAX_WINDOWS_SHOWN]]
        if len(overview.windows) > MAX_WINDOWS_SHOWN:
            blocks.append(_more(len(overview.windows) - MAX_WINDOWS_SHOWN, "/maintenance list"))
    service = f" (from {overview.maintenance_service})" if overview.maintenance_service else ""
    blocks.append(
        context(
            f"Times are shown in your own time zone. Windows{service} and incidents as sitrep knows them; "
            "incidents only where you can read them (their channel, or sitrep's, with you in it)."
        )
    )
    return {"type": "home", "callback_id": Callback.HOME, "blocks": blocks}
