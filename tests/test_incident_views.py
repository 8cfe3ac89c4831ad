"""Incident views and forms as pure functions: every modal, message and answer fits Slack's
limits and escapes what people typed; the forms' rules hold without a bot running."""

from __future__ import annotations

import json
from datetime import timedelta

from bot.messages import incident as messages
from bot.services.incident_forms import (
    TITLE_MAX,
    DeclareForm,
    ResolveForm,
    UpdateForm,
    form_from_payload,
)
from bot.services.outcomes import Outcome
from bot.settings import Component
from handlers.incident import views
from handlers.incident.ids import Block
from store.models import Incident, IncidentEvent
from store.states import DraftKind
from tests.support.dates import T0
from tests.support.slack_limits import check_message, check_modal

STATUSES = ("Investigating", "Identified", "Monitoring")
IMPACTS = ("Degraded Performance", "Partial Outage", "Major Outage")
HOSTILE = "<!channel> & <@U999> " + "x" * 5000


def incident(n: int = 12, *, title: str = "DB down", resolved: bool = False, **kw) -> Incident:
    return Incident(
        id=n,
        upstream_id=f"3fa85f64-5717-4562-b3fc-{n:012d}",
        title=title,
        description=kw.pop("description", "Timeouts on checkout"),
        status=kw.pop("status", "Investigating"),
        impact=kw.pop("impact", "Major Outage"),
        components=kw.pop("components", ["API"]),
        channel_id="C123",
        declared_by="U123",
        declared_at=T0,
        updated_at=T0,
        update_count=kw.pop("update_count", 0),
        resolved_at=T0 + timedelta(hours=2) if resolved else None,
        resolved_by="U456" if resolved else None,
        **kw,
    )


def event(text: str = "Root cause found", status: str = "Identified") -> IncidentEvent:
    return IncidentEvent(kind="update", status=status, text=text, user_id="U123", at=T0 + timedelta(minutes=5))


def blocks_of(view: dict) -> dict[str, dict]:
    return {b.get("block_id"): b for b in view["blocks"]}


def test_declare_modal_fits_and_prefills_with_many_components():
    form = DeclareForm(title=HOSTILE[:TITLE_MAX], description=HOSTILE[:3000], component_ids=("c7",), notify=False)
    components = [Component(name=f"Component {n}", id=f"c{n}") for n in range(150)]
    view = views.declare_modal(form, components, statuses=STATUSES, impacts=IMPACTS, channel_id="C123")
    check_modal(view)
    by_id = blocks_of(view)
    assert by_id[Block.TITLE]["element"]["initial_value"] == form.title
    assert "initial_options" not in by_id[Block.NOTIFY]["element"]
    assert json.loads(view["private_metadata"]) == {"channel": "C123"}


def test_declare_modal_without_components_has_no_component_field():
    view = views.declare_modal(DeclareForm(title=""), [], statuses=STATUSES, impacts=IMPACTS, channel_id=None)
    check_modal(view)
    assert Block.COMPONENTS not in blocks_of(view)


def test_update_and_resolve_modals_fit_with_or_without_a_chosen_incident():
    for chosen in (None, incident(title=HOSTILE)):
        check_modal(views.update_modal(chosen, status=None, statuses=STATUSES, text="x" * 3000, channel_id="C1"))
        check_modal(views.resolve_modal(chosen, note="y" * 3000, channel_id="C1"))
    question = views.resolve_modal(incident(title="<b>&"), channel_id=None)["blocks"][0]["text"]["text"]
    assert "&lt;b&gt;&amp;" in question


def test_incident_options_match_number_or_words_newest_first_at_most_100():
    many = [incident(n, title=f"Outage {n}") for n in range(1, 251)]
    assert len(views.incident_options(many, "outage")) == 100
    found = views.incident_options(many, "#12")
    assert found[0]["value"] == "12" and {o["value"] for o in found} <= {"12", *(str(n) for n in range(120, 130))}
    assert views.incident_options(many, "nothing like it") == []


def test_announcement_fits_escapes_and_follows_the_incident():
    big = incident(title=HOSTILE, description=HOSTILE * 3, components=[f"C{n}" for n in range(500)], update_count=3)
    text, blocks = messages.announcement(big)
    check_message(blocks, text)
    assert "<!channel>" not in json.dumps(blocks) and "<!channel>" not in text
    assert any(b["type"] == "actions" for b in blocks)

    text, blocks = messages.announcement(incident(resolved=True))
    check_message(blocks, text)
    assert not any(b["type"] == "actions" for b in blocks) and "Resolved" in text


def test_thread_replies_and_answers_fit_and_escape():
    for text, blocks in (
        messages.update_reply(incident(), event(text=HOSTILE * 4)),
        messages.resolved_reply(incident(title=HOSTILE, resolved=True), event(text=HOSTILE)),
        views.declared_answer(incident(title=HOSTILE), "https://slack.example/p1"),
        views.declared_answer(incident(), None),
        views.done_answer(Outcome(DraftKind.UPDATE, incident(title=HOSTILE))),
        views.done_answer(Outcome(DraftKind.RESOLVE, incident(title=HOSTILE), warning="Slack did not take the thread reply.")),
        views.help_answer("I don't know `reboot`."),
    ):
        check_message(blocks, text)
        assert "<!channel>" not in json.dumps(blocks)


def test_incident_list_shows_one_page_and_says_how_many_more_and_how_to_see_them():
    text, blocks = views.incident_list([], T0, {}, total=0)
    assert "No open incidents" in text
    page = [incident(n, title="<b>" + "t" * 500) for n in range(2000, 2000 - views.LIST_PAGE, -1)]
    text, blocks = views.incident_list(page, T0 + timedelta(hours=1), {2000: "https://slack.example/p1"}, total=2000)
    check_message(blocks, text)
    assert text == "2000 open incidents"
    shown = json.dumps(blocks, ensure_ascii=False)
    assert "1–20 shown" in shown and "&lt;b&gt;" in shown and "<b>" not in shown
    assert "…and 1980 more: `/incident list 2` shows the next 20" in shown
    text, blocks = views.incident_list(page[:5], T0, {}, total=45, page=3)
    check_message(blocks, text)
    assert "41–45 shown" in json.dumps(blocks, ensure_ascii=False) and "more:" not in json.dumps(blocks)
    text, blocks = views.incident_list([], T0, {}, total=45, page=9)
    check_message(blocks, text)
    assert text == "There are 45 open incidents, on pages 1–3; page 9 is past the end."
    text, blocks = views.incident_list(page[:1], T0, {}, total=1)
    assert text == "1 open incident" and "shown" not in json.dumps(blocks)


def test_forms_state_their_rules_and_survive_a_draft_round_trip():
    assert DeclareForm(title=" ", impact="Major Outage").problems(statuses=STATUSES, impacts=IMPACTS) == {
        "title": "Give the incident a title."
    }
    too_long = DeclareForm(title="t" * (TITLE_MAX + 1), status="Nope", impact="Nope")
    assert set(too_long.problems(statuses=STATUSES, impacts=IMPACTS)) == {"title", "status", "impact"}
    assert UpdateForm(incident_id=1, status="Nope", text=" ").problems(statuses=STATUSES) == {
        "status": "Pick a status.",
        "text": "Say what changed.",
    }
    assert ResolveForm(incident_id=1).problems() == {}
    for kind, form in (
        (DraftKind.DECLARE, DeclareForm(title="DB down", component_ids=("a", "b"))),
        (DraftKind.UPDATE, UpdateForm(incident_id=3, status="Identified", text="found it")),
        (DraftKind.RESOLVE, ResolveForm(incident_id=3, note="fixed")),
    ):
        again = form_from_payload(kind, json.loads(json.dumps(form.to_payload())))
        assert again == form and again.summary() == form.summary()
