"""The incident's channel messages: the announcement (kept current) and its thread replies.
Pure functions from stored rows to Block Kit; the buttons they carry are named here, and the
handlers listen on these names."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from bot.messages.format import (
    SHORT_TITLE,
    button,
    clip,
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
from store.models import Incident, IncidentEvent

STATUS_EMOJI = {
    "Investigating": ":mag:",
    "Identified": ":bulb:",
    "Monitoring": ":eyes:",
    "Resolved": ":white_check_mark:",
}
IMPACT_EMOJI = {
    "Degraded Performance": ":large_yellow_circle:",
    "Partial Outage": ":large_orange_circle:",
    "Major Outage": ":red_circle:",
}


class AnnouncementId(StrEnum):
    """The block and buttons on the announcement, which `handlers/incident` listens on."""

    ACTIONS = "incident_actions"
    POST_UPDATE = "incident_post_update"
    RESOLVE = "incident_resolve_button"
    LEAD = "incident_lead_button"


def short_title(incident: Incident) -> str:
    return fit(incident.title, SHORT_TITLE)


def _headline(incident: Incident) -> str:
    status = "Resolved" if not incident.is_open else incident.status
    return f"{STATUS_EMOJI.get(status, '')} *Incident #{incident.id}: {fit(incident.title, 2900)}*"


def announcement(incident: Incident) -> tuple[str, list[dict]]:
    """The parent message, kept current: every field a reader needs at a glance."""
    return _summary(incident, footer=f"Status page ID `{fit(incident.upstream_id, 200)}` · updates in the thread")


def room_summary(incident: Incident) -> tuple[str, list[dict]]:
    """The same summary at the top of the incident's own channel, kept current too; it
    points back to the announcement, where the status page's readers' updates also go."""
    where = f"<{incident.permalink}|the announcement>" if incident.permalink else "the announcement"
    footer = f"Status page ID `{fit(incident.upstream_id, 200)}` · {where} in <#{incident.channel_id}> gets every update too"
    return _summary(incident, footer=footer)


def _summary(incident: Incident, *, footer: str) -> tuple[str, list[dict]]:
    status = "Resolved" if not incident.is_open else incident.status
    fields = [
        field("Status", f"{STATUS_EMOJI.get(status, '')} {fit(status, 200)}"),
        field("Impact", f"{IMPACT_EMOJI.get(incident.impact, '')} {fit(incident.impact, 200)}"),
        field("Components", fit_list(incident.components, 1900)),
        field("Lead", user(incident.lead)),
        field("Declared by", user(incident.declared_by)),
        field("Declared", slack_date(incident.declared_at)),
    ]
    if incident.room_channel_id:
        fields.append(field("Channel", f"<#{incident.room_channel_id}>"))
    if incident.update_count:
        noun = "update" if incident.update_count == 1 else "updates"
        fields.append(field("Last update", f"{slack_date(incident.updated_at)} ({incident.update_count} {noun})"))
    blocks: list[dict] = [section(_headline(incident))]
    if incident.description:
        blocks.extend(text_sections(incident.description))
    blocks.append({"type": "section", "fields": fields})
    overlap = overlap_lines(incident)
    if overlap:
        blocks.append(section(overlap))
    if incident.is_open:
        blocks.append(
            {
                "type": "actions",
                "block_id": AnnouncementId.ACTIONS,
                "elements": [
                    button("Post update", AnnouncementId.POST_UPDATE, str(incident.id), "primary"),
                    button("Resolve", AnnouncementId.RESOLVE, str(incident.id), "danger"),
                    button("Lead", AnnouncementId.LEAD, str(incident.id)),
                ],
            }
        )
    else:
        lasted = duration(incident.resolved_at - incident.declared_at)
        blocks.append(
            context(
                f":white_check_mark: Resolved {slack_date(incident.resolved_at)} by {user(incident.resolved_by)} after {lasted}"
            )
        )
    source = f" · declared from <{escape(incident.source_link)}|this message>" if incident.source_link else ""
    blocks.append(context(f"{footer}{source}"))
    text = f"Incident #{incident.id}: {short_title(incident)} ({fit(status, 100)}, {fit(incident.impact, 100)})"
    return text, blocks


def window_scope(components: list[str], servers: list[int]) -> str:
    """What a maintenance window touches, as plain words (escaped where shown)."""
    if components:
        return ", ".join(components)
    if servers:
        return "servers " + ", ".join(str(s) for s in servers)
    return ""


def overlap_lines(incident: Incident) -> str | None:
    """The maintenance that was running (or had just ended) when it was declared; None if none.
    Windows on the incident's own components come first (as stored)."""
    if not incident.overlaps:
        return None
    lines = []
    for window in incident.overlaps:
        title = fit(window.get("title") or "Maintenance", 200)
        title = f"<{escape(window['link'])}|{title}>" if window.get("link") else title
        when = "ended shortly before" if window.get("ended") else "running"
        where = f" on {fit(window['where'], 300)}" if window.get("where") else ""
        shared = " · :warning: same components" if window.get("shared") else ""
        lines.append(f":construction: {title} ({when}){where}{shared}")
    return clip("*Maintenance overlapping the start:*\n" + "\n".join(lines), 2900)


def update_reply(incident: Incident, event: IncidentEvent) -> tuple[str, list[dict]]:
    head = f"{STATUS_EMOJI.get(event.status, '')} *{event.status}* · update from {user(event.user_id)} · {slack_date(event.at)}"
    blocks = [section(head), *text_sections(event.text)]
    return f"Incident #{incident.id} update ({fit(event.status, 100)}): {fit(event.text, 200)}", blocks


def resolved_reply(incident: Incident, event: IncidentEvent) -> tuple[str, list[dict]]:
    lasted = duration(incident.resolved_at - incident.declared_at)
    head = (
        f":white_check_mark: *Resolved* · incident #{incident.id} *{short_title(incident)}* "
        f"resolved by {user(event.user_id)} · {slack_date(event.at)} · lasted {lasted}"
    )
    blocks = [section(head), *text_sections(event.text)]
    return f"Resolved: incident #{incident.id} {short_title(incident)} (lasted {lasted})", blocks


def lead_reply(incident: Incident, event: IncidentEvent) -> tuple[str, list[dict]]:
    """A lead change, in the thread: the new lead is mentioned (they should hear)."""
    head = (
        f":busts_in_silhouette: {user(event.text)} now leads incident #{incident.id} *{short_title(incident)}* "
        f"· set by {user(event.user_id)} · {slack_date(event.at)}"
    )
    return f"Incident #{incident.id} is now led by {user(event.text)}", [section(head)]


class NudgeId(StrEnum):
    """The nudge's actions block; its buttons are the announcement's, so the same listeners answer."""

    ACTIONS = "incident_nudge_actions"


def nudge(incident: Incident, who: str, quiet: timedelta) -> tuple[str, list[dict]]:
    """A reply in the thread when an open incident has had no update for a while. `who`
    is the last updater (a user ID, shown as a mention: they should hear); the lead is
    named too, once when they are the same person."""
    whom = user(incident.lead) if who == incident.lead else f"{user(incident.lead)} (lead), {user(who)}"
    head = (
        f":bell: {whom}: incident #{incident.id} *{short_title(incident)}* has had no update for "
        f"{duration(quiet)}. Readers of the status page are waiting: post an update, or resolve it."
    )
    blocks = [
        section(head),
        {
            "type": "actions",
            "block_id": NudgeId.ACTIONS,
            "elements": [
                button("Post update", AnnouncementId.POST_UPDATE, str(incident.id), "primary"),
                button("Resolve", AnnouncementId.RESOLVE, str(incident.id), "danger"),
            ],
        },
    ]
    return f"Incident #{incident.id} has had no update for {duration(quiet)}", blocks


def already_resolved(incident: Incident) -> str:
    """The answer to whoever lost a race to resolve (or came late): who won, and when."""
    who = f" by {user(incident.resolved_by)}" if incident.resolved_by else ""
    when = f" at {slack_date(incident.resolved_at)}" if incident.resolved_at else ""
    return f"Incident #{incident.id} is already resolved{who}{when}."


def room_archive_refused(incident: Incident, error: str) -> tuple[str, list[dict]]:
    """To the declarer, privately: the incident's channel stays open, and why."""
    text = (
        f":warning: Incident #{incident.id} was resolved, but Slack refused to archive its channel "
        f"<#{incident.room_channel_id}> (`{fit(error, 100)}`). Archive it by hand when you are done with it."
    )
    return text, [section(text)]
