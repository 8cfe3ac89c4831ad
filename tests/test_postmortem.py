"""The postmortem draft's Markdown (a pure function): every section the issue asks for, and
within a canvas's limit however long the timeline."""

from __future__ import annotations

from datetime import timedelta

from bot.messages.postmortem import MAX_MARKDOWN, md, postmortem
from store.models import IncidentEvent
from tests.support.dates import T0
from tests.test_incident_views import HOSTILE, incident


def events(count: int) -> list[IncidentEvent]:
    out = [IncidentEvent(kind="declared", status="Investigating", text="", user_id="U123", at=T0)]
    out.append(
        IncidentEvent(kind="update", status="Identified", text="bad index", user_id="U0ANA", at=T0 + timedelta(minutes=25))
    )
    out += [
        IncidentEvent(
            kind="pinned",
            status="Identified",
            text=HOSTILE * 10,
            user_id="U0ANA",
            at=T0 + timedelta(minutes=30 + i),
            link="https://x.slack.com/archives/C1/p1",
        )
        for i in range(count - 3)
    ]
    out.append(
        IncidentEvent(kind="resolved", status="Resolved", text="Index rebuilt", user_id="U123", at=T0 + timedelta(hours=2))
    )
    return out


def test_the_draft_has_every_section():
    led = incident(
        resolved=True,
        lead_id="U0DANA",
        overlaps=[{"title": "Kernel [patch]", "where": "servers 12", "link": "https://x/p1", "ended": None}],
    )
    text = postmortem(led, events(5), names={"U0DANA": "dana"})
    assert text.startswith("# Postmortem: incident #12 DB down")
    for needed in (
        "**Lead:** dana",
        "**Impact:** Major Outage",
        "**Components:** API",
        "**Time to resolve:** 2h",
        "**Time to the first Identified:** 25m",
        "## Maintenance that overlapped",
        "[Kernel \\[patch\\]](https://x/p1) (running) on servers 12",
        "## Timeline",
        "## What caused it",
        "## Follow-ups",
    ):
        assert needed in text, needed


def test_a_postmortem_of_200_timeline_entries_stays_within_slacks_limit():
    text = postmortem(incident(title=HOSTILE[:150], resolved=True), events(200))
    assert len(text) <= MAX_MARKDOWN
    assert text.count("\n- 20") == 200  # every entry, one line each
    assert all(len(line) < 1500 for line in text.splitlines())


def test_person_text_is_literal_markdown():
    assert md("# **hi** [x](y) <!here>") == "\\# \\*\\*hi\\*\\* \\[x\\]\\(y\\) \\<\\!here\\>"
    assert md("a\n\nb") == "a b"
