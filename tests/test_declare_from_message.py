"""The *Declare incident* message shortcut end to end: a signed `message_action` → the declare
form with the message's words as the description → the status page → an announcement that
links to the message."""

from __future__ import annotations

import json

from bot.messages.format import plain_text
from bot.services.incident_forms import TEXT_MAX
from handlers.incident import views
from handlers.incident.ids import Action, Block, Callback
from tests.support.fakes.signing import interaction_body
from tests.support.harness import CHANNEL, last_view, message_shortcut_payload
from tests.support.incidents import declare_values, incidents_in_store, update_values
from tests.support.slack_limits import check_modal

SOURCE = "C0ONCALL"


def description_of(view: dict) -> str | None:
    block = next(b for b in view["blocks"] if b.get("block_id") == Block.DESCRIPTION)
    return block["element"].get("initial_value")


def shortcut(bot, slack, text: str, *, channel: str = SOURCE) -> tuple[str, dict]:
    ts = slack.person_posts(channel, text)
    response = bot.message_shortcut(Callback.DECLARE_FROM_MESSAGE, text, message_ts=ts, channel=channel)
    assert response.status_code == 200, response.text
    slack.wait_for(lambda: slack.calls_to("views.open"))
    return ts, last_view(slack)


def test_the_shortcut_opens_the_declare_form_with_the_message_and_the_announcement_links_to_it(bot, slack, statuspage):
    text = "<!here> checkout &amp; login fail for <@U42> — see <https://grafana.example.com/d/1|the dashboard> &lt;500s&gt;"
    ts, view = shortcut(bot, slack, text)
    assert view["callback_id"] == Callback.DECLARE
    assert (
        description_of(view)
        == "@here checkout & login fail for @U42 — see the dashboard (https://grafana.example.com/d/1) <500s>"
    )
    title = next(b for b in view["blocks"] if b.get("block_id") == Block.TITLE)
    assert "initial_value" not in title["element"]  # the title is the person's to write
    assert f"<#{SOURCE}>" in json.dumps(view["blocks"])  # the form says where it comes from

    values = declare_values(title="Checkout failing", description=description_of(view))
    bot.submit(view, values)
    posted = slack.wait_for(lambda: [c for c in slack.calls_to("chat.postMessage") if c["channel"] == CHANNEL])
    link = f"https://example.slack.com/archives/{SOURCE}/p{ts.replace('.', '')}"
    announcement = json.dumps(posted[0]["blocks"])
    assert f"<{link}|this message>" in announcement
    # The words reach the status page as plain text, and are shown escaped: nobody is pinged.
    [create] = [r for r in statuspage.requests if r.method == "POST"]
    assert create.json["Description"].startswith("@here checkout & login")
    assert "<!here>" not in announcement and "&lt;500s&gt;" in announcement
    assert incidents_in_store(bot)[0].source_link == link

    # Every later refresh of the announcement keeps the link (it is stored with the incident).
    incident = incidents_in_store(bot)[0]
    slack.forget_calls()
    bot.click(Action.POST_UPDATE, str(incident.id), channel=CHANNEL)
    update_view = slack.wait_for(lambda: slack.calls_to("views.open")) and last_view(slack)
    bot.submit(update_view, update_values(incident.id))
    [edit] = slack.wait_for(lambda: slack.calls_to("chat.update"))
    assert f"<{link}|this message>" in json.dumps(edit["blocks"])


def test_a_message_longer_than_the_field_is_cut_visibly_to_it(bot, slack):
    _ts, view = shortcut(bot, slack, "x" * 5000)
    prefilled = description_of(view)
    assert len(prefilled) == TEXT_MAX and prefilled.endswith("…")
    check_modal(view)


def test_an_empty_message_opens_an_empty_description(bot, slack):
    _ts, view = shortcut(bot, slack, "")
    assert description_of(view) is None
    check_modal(view)


def test_a_message_the_bot_cannot_link_still_declares_and_says_why_there_is_no_link(bot, slack, statuspage):
    slack.hidden_channels.add("G0SECRET")  # a private channel the bot is not in
    _ts, view = shortcut(bot, slack, "db is down", channel="G0SECRET")
    bot.submit(view, declare_values(title="DB down", description=description_of(view)))
    answer = slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))[-1]
    assert "would not give a link to the message" in json.dumps(answer["blocks"])
    [incident] = incidents_in_store(bot)
    assert incident.message_ts and incident.source_link is None
    assert "this message>" not in json.dumps(slack.messages(CHANNEL)[0]["blocks"])


def test_retry_after_the_status_page_failed_keeps_the_link(bot, slack, statuspage):
    statuspage.fail_times(1, status=503)
    ts, view = shortcut(bot, slack, "db is down")
    bot.submit(view, declare_values(title="DB down", description=description_of(view)))
    failed = slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))[-1]
    retry = next(e for b in failed["blocks"] if b["type"] == "actions" for e in b["elements"] if e["text"]["text"] == "Retry")
    slack.forget_calls()
    bot.click(retry["action_id"], retry["value"])
    slack.wait_for(lambda: [c for c in slack.calls_to("chat.postMessage") if c["channel"] == CHANNEL])
    assert incidents_in_store(bot)[0].source_link.endswith(f"/archives/{SOURCE}/p{ts.replace('.', '')}")


def test_someone_not_in_sitrep_admins_is_told_and_no_form_opens(bot, slack):
    bot.ctx.settings.sitrep_admins = ["UADMIN"]
    ts = slack.person_posts(SOURCE, "db is down")
    bot.message_shortcut(Callback.DECLARE_FROM_MESSAGE, "db is down", message_ts=ts, channel=SOURCE)
    answer = slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))[-1]
    assert "SITREP_ADMINS" in answer["text"]
    assert slack.calls_to("views.open") == []


def test_a_shortcut_without_its_message_is_refused_at_the_edge(bot, slack):
    payload = message_shortcut_payload(Callback.DECLARE_FROM_MESSAGE, "x", message_ts="1.0")
    del payload["message"]
    assert bot.post(interaction_body(payload)).status_code == 400
    assert slack.calls_to("views.open") == []


def test_plain_text_undoes_slacks_format_and_nothing_else():
    assert plain_text("a &amp;lt; b") == "a &lt; b"  # one level of Slack's escaping, no more
    assert plain_text("<#C1|ops> <#C2> <!subteam^S1|@oncall> <!channel> <mailto:a@b.c|a@b.c>") == (
        "#ops #C2 @oncall @channel a@b.c (mailto:a@b.c)"
    )
    assert plain_text("<!date^1700000000^{date}|Nov 14> <https://x.example>") == "Nov 14 https://x.example"
    assert plain_text(None) == ""


def test_the_form_from_a_message_keeps_its_source_through_private_metadata():
    form = views.declare_from_message("hello", "C1", "1.2")
    view = views.declare_modal(form, [], statuses=["Investigating"], impacts=["Major Outage"], channel_id="C1")
    check_modal(view)
    assert views.source_of(json.loads(view["private_metadata"])) == {"source_channel": "C1", "source_ts": "1.2"}
    assert views.source_of({"source": ["C1"]}) == {} and views.source_of({}) == {}


def test_help_names_the_shortcut_and_the_home_tab(bot):
    for command in ("/incident", "/maintenance"):
        answer = bot.command("help", command=command).json()["text"]
        assert "*Home* tab" in answer, command
    assert "*Declare incident* in a message's" in bot.command("help").json()["text"]


def test_a_replayed_shortcut_opens_no_second_form(bot, slack):
    ts = slack.person_posts(SOURCE, "db is down")
    body = interaction_body(message_shortcut_payload(Callback.DECLARE_FROM_MESSAGE, "db is down", message_ts=ts, channel=SOURCE))
    assert bot.post(body).status_code == 200
    slack.wait_for(lambda: slack.calls_to("views.open"))
    assert bot.post(body).status_code == 200  # Slack's retry, or a replay of the signed body
    assert bot.command("help").status_code == 200  # handled after it
    assert len(slack.calls_to("views.open")) == 1
    assert 'sitrep_ack_seconds_count{kind="shortcut",name="incident_declare_from_message"} 1.0' in bot.scrape()
