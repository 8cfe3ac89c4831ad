"""Text from a person or an upstream, at any length, through the real bot: fitted to the
Slack field it lands in, visibly (… or "and N more"), and never cut in what is saved.
The `slack` fixture fails any test whose bot sends what Slack refuses (fields over 2000,
chat.update text over 4000, an input's initial value past its max_length, ...)."""

from __future__ import annotations

import html
import json
from datetime import timedelta

import pytest

from bot.settings import Component
from handlers.incident.ids import Action as IncidentAction
from handlers.incident.ids import Block as IncidentBlock
from handlers.maintenance.ids import Block
from scheduler.reminders import run_due_reminders
from scheduler.sync import sync_windows
from tests.support.dates import T0, WINTER_END, WINTER_START
from tests.support.harness import (
    CHANNEL,
    BotUnderTest,
    checked,
    chose,
    chose_external,
    chose_many,
    last_view,
    typed,
)
from tests.support.incidents import declare, incidents_in_store, thread_replies
from tests.support.maintenance import (
    block,
    list_answer,
    open_modal,
    schedule_values,
    wait_answer,
    windows,
)
from tests.support.reminders import reminder_posts

#: Upstream text that is long *and* grows when escaped (each & becomes &amp;).
REASON = "Rack & power work <phase 2>: " + " ".join(f"step {n} & check" for n in range(600))


@pytest.fixture
def clock(upstream_clock):
    upstream_clock.set(T0)
    return upstream_clock


@pytest.fixture
def af_bot(appfirst_settings, appfirst, clock):
    appfirst.shift_minutes = 0  # these tests are about text, not the server's clock
    with BotUnderTest(appfirst_settings, clock=clock) as bot:
        yield bot


def shown(blocks: list[dict]) -> str:
    """What a reader sees: every text in the blocks, entities decoded."""
    return html.unescape(json.dumps(blocks, ensure_ascii=False))


# --- incidents ---------------------------------------------------------------------------------


def test_an_incident_with_120_components_is_announced_with_and_n_more_and_keeps_them_all(settings, slack, statuspage):
    components = tuple(Component(name=f"Regional checkout service {n:03d} & friends", id=f"guid-{n:03d}") for n in range(120))
    with BotUnderTest(settings.model_copy(update={"sitrep_components": components})) as bot:
        bot.command("declare Everything is down")
        view = slack.wait_for(lambda: slack.calls_to("views.open") and last_view(slack))
        picker = block(view, IncidentBlock.COMPONENTS)["element"]
        assert [len(g["options"]) for g in picker["option_groups"]] == [100, 20]  # every one can be picked
        bot.submit(
            view,
            {
                IncidentBlock.TITLE: {IncidentAction.TITLE: typed("Everything is down")},
                IncidentBlock.STATUS: {IncidentAction.STATUS: chose("Investigating")},
                IncidentBlock.IMPACT: {IncidentAction.IMPACT: chose("Major Outage")},
                IncidentBlock.COMPONENTS: {IncidentAction.COMPONENTS: chose_many([c.id for c in components])},
                IncidentBlock.NOTIFY: {IncidentAction.NOTIFY: checked([])},
            },
        )
        posted = slack.wait_for(lambda: slack.calls_to("chat.postMessage"))[0]
        fields = next(b["fields"] for b in posted["blocks"] if "fields" in b)
        listed = next(f["text"] for f in fields if f["text"].startswith("*Components*"))
        assert len(listed) <= 2000 and listed.endswith(" more")
        assert "Regional checkout service 000 &amp; friends" in listed
        more = int(listed.rsplit(" and ", 1)[1].split()[0])
        assert listed.count("Regional checkout") + more == 120
        # What is saved and sent upstream is everything that was picked.
        [incident] = incidents_in_store(bot)
        assert len(incident.components) == 120
        create = [r for r in statuspage.requests if r.method == "POST"][0]
        assert create.json["AffectedComponents"] == [c.id for c in components]

        # The announcement is kept current with chat.update, within its limits too.
        view = slack.wait_for(lambda: slack.calls_to("chat.postEphemeral")) and None
        bot.command(f"resolve {incident.id}")
        view = slack.wait_for(lambda: len(slack.calls_to("views.open")) == 2 and last_view(slack))
        bot.submit(view, {IncidentBlock.INCIDENT: {IncidentAction.INCIDENT: chose_external(str(incident.id))}})
        updated = slack.wait_for(lambda: slack.calls_to("chat.update"))[-1]
        assert "Resolved" in json.dumps(updated["blocks"]) and len(updated["text"]) <= 4000


def test_a_long_update_is_shown_whole_in_the_thread(bot, slack, statuspage):
    incident = declare(bot, slack)
    text = "Findings & next steps <see runbook>:\n" + "a&b " * 740  # 3,000 characters, 5x when escaped in parts
    assert len(text) <= 3000
    view_response = bot.command(f"update {incident.id}")
    assert view_response.status_code == 200
    view = slack.wait_for(lambda: slack.calls_to("views.open") and last_view(slack))
    bot.submit(
        view,
        {
            IncidentBlock.INCIDENT: {IncidentAction.INCIDENT: chose_external(str(incident.id))},
            IncidentBlock.STATUS: {IncidentAction.STATUS: chose("Identified")},
            IncidentBlock.UPDATE_TEXT: {IncidentAction.UPDATE_TEXT: typed(text)},
        },
    )
    reply = slack.wait_for(lambda: thread_replies(slack, incident))[-1]
    bodies = [b["text"]["text"] for b in reply["blocks"][1:]]
    assert len(bodies) >= 2 and all(len(b) <= 3000 for b in bodies)
    assert " ".join(html.unescape(b) for b in bodies).split() == text.split()  # every word, none cut
    assert "<see runbook>" not in json.dumps(reply["blocks"])  # escaped, never a link


# --- maintenance windows made outside Slack ---------------------------------------------------


def test_a_window_made_in_appfirst_with_a_very_long_reason(af_bot, slack, appfirst, clock):
    assert len(REASON) > 3000 and len(html.escape(REASON)) > 4000
    upstream = appfirst.add_window(T0 + timedelta(hours=1), T0 + timedelta(hours=2), reason=REASON, servers=[7])
    assert af_bot.run(sync_windows(af_bot.ctx)).adopted == 1
    [window] = windows(af_bot)
    assert window.title == REASON  # stored whole

    parent = slack.message(CHANNEL, window.message_ts)
    assert len(parent["text"]) <= 4000 and parent["text"].count("…") == 1
    headline = parent["blocks"][0]["text"]["text"]
    assert headline.startswith(":wrench: *Maintenance #1: Rack &amp; power work &lt;phase 2&gt;") and headline.endswith("…*")

    clock.advance(hours=1)
    af_bot.run(run_due_reminders(af_bot.ctx))
    [started] = reminder_posts(slack, window, "started")
    assert "has started" in shown(started["blocks"])  # the sentence survives the long title
    assert "maintenance #1" in shown(started["blocks"])

    # Edit (the reason cannot be shown in a field of 3000): the form quotes it, leaves the field
    # empty, and an empty field keeps it. The end moves; the reason is sent back whole.
    view = open_modal(af_bot, slack, text=f"edit {window.id}")
    assert "initial_value" not in block(view, Block.TITLE)["element"]
    assert "more than a form field holds" in json.dumps(view["blocks"])
    assert json.loads(view["private_metadata"])["keep"] == ["title"]
    new_end = T0 + timedelta(hours=3)
    response = af_bot.submit(view, schedule_values("", description=None, servers="7", start=window.start, end=new_end))
    assert response.content in (b"", b"null"), response.text
    put = slack.wait_for(lambda: [r for r in appfirst.requests if r.method == "PUT"])[0]
    assert put.form["reason"] == REASON
    assert appfirst.windows[upstream]["reason"] == REASON
    updated = slack.wait_for(lambda: [c for c in slack.calls_to("chat.update") if "(2h)" in c["text"]])[-1]
    assert len(updated["text"]) <= 4000  # chat.update refuses more (msg_too_long)
    edited = slack.wait_for(lambda: [m for m in slack.thread(CHANNEL, window.message_ts) if "Edited" in json.dumps(m["blocks"])])
    assert "Reason" not in shown(edited[0]["blocks"])  # nothing but the end changed
    assert windows(af_bot)[0].title == REASON

    # Listing and cancelling it fit too.
    listing = list_answer(af_bot, slack)
    assert "Rack &amp; power work &lt;phase 2&gt;" in listing
    view = open_modal(af_bot, slack, text=f"cancel {window.id}")
    assert "…" in view["blocks"][0]["text"]["text"]


def test_editing_a_reason_and_servers_longer_than_the_form_allows_keeps_them_whole(af_bot, slack, appfirst):
    reason = "Firmware rollout for the storage fleet" + " and its controllers" * 20  # 438 > our 150
    servers = list(range(1000, 1300))  # "1000, 1001, …" is 1,798 characters > our 500
    appfirst.add_window(WINTER_START, WINTER_END, reason=reason, servers=servers)
    af_bot.run(sync_windows(af_bot.ctx))
    [window] = windows(af_bot)

    view = open_modal(af_bot, slack, text=f"edit {window.id}")
    title = block(view, Block.TITLE)["element"]
    assert title["initial_value"] == reason and title["max_length"] >= len(reason)
    listed = block(view, Block.SERVERS)["element"]
    assert listed["initial_value"] == ", ".join(map(str, servers)) and listed["max_length"] >= len(listed["initial_value"])

    # Saved as it was shown (only the end moved): no "keep it under 150", nothing cut.
    values = schedule_values(reason, description=None, servers=listed["initial_value"], end=WINTER_END + timedelta(hours=1))
    response = af_bot.submit(view, values)
    assert response.content in (b"", b"null"), response.text
    put = slack.wait_for(lambda: [r for r in appfirst.requests if r.method == "PUT"])[0]
    assert put.form["reason"] == reason and json.loads(put.form["servers"]) == servers
    assert "Saved maintenance" in wait_answer(slack)["text"]

    # A *new* reason is held to our own limit, inside the form.
    view = open_modal(af_bot, slack, text=f"edit {window.id}")
    response = af_bot.submit(view, schedule_values(reason + " v2", description=None, servers="1"))
    assert response.json() == {"response_action": "errors", "errors": {Block.TITLE: "Keep the reason under 150 characters."}}


def test_a_status_page_window_with_a_long_description_and_150_components(settings, slack, statuspage, clock):
    components = tuple(Component(name=f"Storage node {n:03d} & co", id=f"guid-{n:03d}") for n in range(150))
    description = "What customers see & do: " + "wait <then> retry & " * 140  # 2,825 characters, longer escaped
    with BotUnderTest(settings.model_copy(update={"sitrep_components": components}), clock=clock) as bot:
        view = open_modal(bot, slack, text="schedule Storage migration")
        assert [len(g["options"]) for g in block(view, Block.COMPONENTS)["element"]["option_groups"]] == [100, 50]
        values = schedule_values("Storage migration", description=description, components=[c.id for c in components])
        bot.submit(view, values)
        parent = slack.wait_for(lambda: [m for m in slack.messages(CHANNEL) if not m.get("thread_ts")])[0]
        fields = next(b["fields"] for b in parent["blocks"] if "fields" in b)
        listed = next(f["text"] for f in fields if f["text"].startswith("*Components*"))
        assert len(listed) <= 2000 and listed.endswith(" more") and "Storage node 000 &amp; co" in listed
        bodies = [b["text"]["text"] for b in parent["blocks"][1:] if b["type"] == "section" and "text" in b]
        assert " ".join(html.unescape(b) for b in bodies).split() == description.split()  # shown whole
        [window] = windows(bot)
        assert window.description == description.strip() and len(window.components) == 150  # as typed (trimmed)

        # Kept current with chat.update when it is cancelled, within the same limits.
        view = open_modal(bot, slack, text=f"cancel {window.id}")
        bot.submit(view, {})
        updated = slack.wait_for(lambda: slack.calls_to("chat.update"))[-1]
        assert "Cancelled" in json.dumps(updated["blocks"])
