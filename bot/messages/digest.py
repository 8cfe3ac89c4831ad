"""The weekly digest as Block Kit: the same blocks post in the channel and answer
`/incident digest` privately. Pure: data in, dicts out; every line fitted to Slack's limits
(at most `MAX_LINES` rows a list, then "and N more")."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.messages.format import context, duration, escape, fit, section, slack_date, split_markup
from bot.messages.incident import IMPACT_EMOJI
from store.digest import WeekDigest, WindowOutcome
from store.models import Incident, MaintenanceWindow

#: Rows one list shows (incidents, windows ran, windows coming); the rest are counted.
MAX_LINES = 15
TITLE_SHOWN = 80
OUTCOME_WORDS = {WindowOutcome.ON_TIME: "on time", WindowOutcome.EXTENDED: "extended", WindowOutcome.CANCELLED: "cancelled"}

Message = tuple[str, list[dict]]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _linked(title: str, link: str | None) -> str:
    shown = fit(title, TITLE_SHOWN)
    return f"<{link}|{shown}>" if link else shown


def _incident_line(incident: Incident, digest: WeekDigest) -> str:
    title = _linked(incident.title, digest.links.get(("incident", incident.id)))
    if incident.resolved_at is not None and incident.resolved_at < digest.end:
        state = f"resolved in {duration(incident.resolved_at - incident.declared_at)}"
    else:
        state = f"open for {duration(digest.end - incident.declared_at)} · {escape(incident.status)}"
    return f"{IMPACT_EMOJI.get(incident.impact, '•')} *#{incident.id}* {title} · {escape(incident.impact)} · {state}"


def _window_line(window: MaintenanceWindow, digest: WeekDigest, outcome: WindowOutcome | None = None) -> str:
    title = _linked(window.title or f"Maintenance #{window.id}", digest.links.get(("window", window.id)))
    when = slack_date(window.start)
    if outcome is None:
        return f"• *#{window.id}* {title} · {when}"
    return f"• *#{window.id}* {title} · {when} · {OUTCOME_WORDS[outcome]}"


def _listed(lines: list[str]) -> list[dict]:
    """Lines in as few sections as fit, at most `MAX_LINES` of them, then how many more."""
    shown, more = lines[:MAX_LINES], len(lines) - MAX_LINES
    blocks = [section(piece) for piece in split_markup("\n".join(shown))] if shown else []
    if more > 0:
        blocks.append(context(f"…and {more} more."))
    return blocks


def _resolve_times(digest: WeekDigest) -> str:
    if digest.resolve_median is None or digest.resolve_longest is None:
        return "Time to resolve: nothing was resolved this week."
    longest = digest.resolve_longest
    took: timedelta = longest.resolved_at - longest.declared_at  # type: ignore[operator]
    return f"Time to resolve: median {duration(digest.resolve_median)}, longest {duration(took)} (*#{longest.id}*)."


def weekly_digest(digest: WeekDigest, *, so_far: bool = False, late_since: datetime | None = None) -> Message:
    """The digest of one week. `so_far`: the week is not over (the private answer);
    `late_since`: posted late, sitrep was not running when it was due."""
    period = f"{slack_date(digest.start, '{date_short_pretty}')} – {slack_date(digest.end, '{date_short_pretty}')}"
    heading = "This week so far" if so_far else "Weekly digest"
    incident_counts = (
        f"{_plural(len(digest.declared), 'incident')} declared, {len(digest.resolved)} resolved, "
        f"{len(digest.still_open)} still open."
    )
    blocks: list[dict] = [section(f":bar_chart: *{heading}* · {period}")]
    if late_since is not None:
        blocks.append(context(f":hourglass: Posted late: it was due {slack_date(late_since)}, when sitrep was not running."))
    blocks.append(section(f"*Incidents* · {incident_counts}\n{_resolve_times(digest)}"))
    if digest.by_impact:
        blocks.append(
            context("By impact: " + " · ".join(f"{escape(impact)} {count}" for impact, count in digest.by_impact.items()))
        )
    week_incidents = sorted({i.id: i for i in digest.declared + digest.resolved + digest.still_open}.values(), key=lambda i: i.id)
    blocks += _listed([_incident_line(i, digest) for i in week_incidents])
    counts = {o: sum(1 for _, got in digest.ran if got is o) for o in WindowOutcome}
    ran = ", ".join(f"{counts[o]} {OUTCOME_WORDS[o]}" for o in WindowOutcome)
    blocks.append(section(f"*Maintenance* · {_plural(len(digest.ran), 'window')} this week ({ran})."))
    blocks += _listed([_window_line(w, digest, outcome) for w, outcome in digest.ran])
    blocks.append(section(f"*Coming next week* · {_plural(len(digest.coming), 'window')}."))
    blocks += _listed([_window_line(w, digest) for w in digest.coming])
    text = f"{heading}: {incident_counts} {_plural(len(digest.ran), 'maintenance window')}, {len(digest.coming)} coming."
    return text, blocks
