"""An incident's postmortem draft as Markdown: a pure function from the stored incident and
its timeline, ready for a file in the thread or a channel canvas. Kept within what a canvas
takes (conversations.canvases.create: markdown "limited to 1 MiB (1,048,576 characters)")."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from bot.messages.format import duration, plain_text
from store.models import Incident, IncidentEvent

#: conversations.canvases.create's `document_content` limit (../shared/slack/ method docs).
MAX_MARKDOWN = 1_048_576
#: Characters of one timeline entry's words (a pinned message can be 40,000).
ENTRY_TEXT = 500
#: Entries the draft lists whole; past that the rest are counted (the thread has them all).
MAX_ENTRIES = 1000

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|~])")


def md(text: str | None, limit: int = ENTRY_TEXT) -> str:
    """Person-written words as one line of literal Markdown text, cut visibly at `limit`."""
    words = " ".join((text or "").split())
    if len(words) > limit:
        words = words[: limit - 1] + "…"
    return _MARKDOWN_SPECIAL.sub(r"\\\1", words)


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")


def _who(user_id: str | None, names: dict[str, str]) -> str:
    if not user_id:
        return "someone outside Slack"
    return md(names.get(user_id) or user_id, 100)


def _entry(event: IncidentEvent, names: dict[str, str]) -> str:
    who = _who(event.user_id, names)
    if event.kind == "declared":
        what = f"Declared by {who} ({md(event.status, 50)})"
    elif event.kind == "update":
        what = f"**{md(event.status, 50)}** from {who}: {md(event.text)}"
    elif event.kind == "lead":
        what = f"Lead → {_who(event.text, names)} (set by {who})"
    elif event.kind == "pinned":
        words = md(plain_text(event.text)) or "(no text)"
        what = f"Pinned from {who}: {words}" + (f" ([message]({event.link}))" if event.link else "")
    elif event.kind == "overlap":
        what = f"Maintenance overlapping the start: {md(event.text)}" + (f" ([thread]({event.link}))" if event.link else "")
    elif event.kind == "resolved":
        what = f"Resolved by {who}" + (f": {md(event.text)}" if event.text else "")
    else:
        what = f"{md(event.kind, 50)} by {who}: {md(event.text)}"
    return f"- {_when(event.at)} — {what}"


def people(incident: Incident, events: Sequence[IncidentEvent]) -> set[str]:
    """Every user ID the draft names: the lead, the declarer, each event's author and each new lead."""
    found = {incident.lead, incident.declared_by}
    found |= {e.user_id for e in events}
    found |= {e.text for e in events if e.kind == "lead"}
    return {user for user in found if user}


def postmortem(incident: Incident, events: Sequence[IncidentEvent], *, names: dict[str, str] | None = None) -> str:
    """The draft: title, lead, impact, components, time to resolve and to the first
    `Identified`, the overlapping maintenance, the timeline, and empty sections for the
    cause and the follow-ups. `names`: display names by user ID, where known."""
    names = names or {}
    identified = next((e.at for e in events if e.kind == "update" and e.status == "Identified"), None)
    lines = [
        f"# Postmortem: incident #{incident.id} {md(incident.title, 500)}",
        "",
        f"- **Lead:** {_who(incident.lead, names)}",
        f"- **Declared:** {_when(incident.declared_at)} by {_who(incident.declared_by, names)}",
        f"- **Impact:** {md(incident.impact, 100)}",
        f"- **Components:** {', '.join(md(c, 200) for c in incident.components) or 'None listed'}",
        "- **Time to resolve:** "
        + (duration(incident.resolved_at - incident.declared_at) if incident.resolved_at else "still open"),
        "- **Time to the first Identified:** "
        + (duration(identified - incident.declared_at) if identified else "never marked Identified"),
        "",
        "## Maintenance that overlapped",
        "",
    ]
    overlaps = incident.overlaps or []
    for window in overlaps:
        title = md(window.get("title") or "Maintenance", 300)
        linked = f"[{title}]({window['link']})" if window.get("link") else title
        where = f" on {md(window['where'], 300)}" if window.get("where") else ""
        lines.append(f"- {linked} ({'ended shortly before' if window.get('ended') else 'running'}){where}")
    if not overlaps:
        lines.append("None: no maintenance window was running or had just ended when it was declared.")
    lines += ["", "## Timeline", ""]
    lines += [_entry(e, names) for e in events[:MAX_ENTRIES]]
    if len(events) > MAX_ENTRIES:
        lines.append(f"- …and {len(events) - MAX_ENTRIES} more (see `/incident timeline {incident.id}`)")
    lines += [
        "",
        "## What caused it",
        "",
        "_To be written._",
        "",
        "## Follow-ups",
        "",
        "- [ ] _To be written._",
        "",
    ]
    return "\n".join(lines)
