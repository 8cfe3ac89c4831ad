"""An incident's timeline through the real bot over HTTP against the fake Slack and status
page, on SQLite and PostgreSQL: a :pushpin: on a reply in the incident's thread adds it (its
text, author and permalink read fresh from Slack), taking it off removes it (unless someone
else's pin remains), and `/incident timeline` shows every event privately within Slack's
limits."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.services.timeline import PIN
from handlers.incident import views
from store.models import IncidentEvent
from tests.support.dates import T0
from tests.support.harness import CHANNEL, BotUnderTest
from tests.support.incidents import declare, event_kinds, incidents_in_store
from tests.support.slack_limits import check_message
from tests.test_incident_views import HOSTILE, incident

pytestmark = pytest.mark.both_databases


def pinned(bot, incident_id) -> list[IncidentEvent]:
    async def read():
        async with bot.ctx.db.session() as session:
            query = select(IncidentEvent).where(IncidentEvent.incident_id == incident_id, IncidentEvent.kind == "pinned")
            return list((await session.execute(query)).scalars())

    return bot.run(read())


def test_a_pushpin_on_a_reply_in_the_thread_joins_the_timeline_and_leaves_with_it(bot, slack, statuspage):
    declared = declare(bot, slack)
    ts = slack.person_replies(CHANNEL, declared.message_ts, "Rolled back &lt;deploy 42&gt; &amp; restarted", user="U0ANA")
    slack.forget_calls()
    assert bot.event(slack.react(CHANNEL, ts, PIN, user="U0BOB")).status_code == 200
    [entry] = slack.wait_for(lambda: pinned(bot, declared.id))
    # As Slack has it (its own escaping), shown escaped once.
    assert (entry.text, entry.user_id, entry.message_ts) == ("Rolled back &lt;deploy 42&gt; &amp; restarted", "U0ANA", ts)
    assert entry.link and entry.link.endswith(f"p{ts.replace('.', '')}")
    assert [c["ts"] for c in slack.calls_to("conversations.replies")] == [ts]  # read fresh, by its ts
    assert [c["message_ts"] for c in slack.calls_to("chat.getPermalink")] == [ts]

    # A second pin (another person, or Slack retrying the event) adds nothing.
    bot.event(slack.react(CHANNEL, ts, PIN, user="U0CAT"))
    slack.wait_for(lambda: len(slack.calls_to("conversations.replies")) == 2)
    assert len(pinned(bot, declared.id)) == 1

    # /incident timeline: privately, every event, the pinned one escaped and linked.
    slack.forget_calls()
    bot.command(f"timeline #{declared.id}")
    answer = slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))[-1]
    text = json.dumps(answer["blocks"])
    assert "declared by <@U123>" in text and "Rolled back &lt;deploy 42&gt; &amp; restarted" in text
    assert entry.link in text and "<@U0ANA>" in text

    # One pin taken off while another remains: it stays; the last one off: it leaves.
    bot.event(slack.react(CHANNEL, ts, PIN, user="U0BOB", remove=True))
    slack.wait_for(lambda: len(slack.calls_to("conversations.replies")) == 1)
    assert len(pinned(bot, declared.id)) == 1
    bot.event(slack.react(CHANNEL, ts, PIN, user="U0CAT", remove=True))
    slack.wait_for(lambda: not pinned(bot, declared.id))
    assert event_kinds(bot, declared.id) == ["declared"]


def test_other_reactions_and_messages_outside_an_incident_are_left_alone(bot, slack, statuspage):
    declared = declare(bot, slack)
    reply = slack.person_replies(CHANNEL, declared.message_ts, "looking", user="U0ANA")
    elsewhere = slack.person_posts(CHANNEL, "lunch?", user="U0ANA")
    slack.forget_calls()
    bot.event(slack.react(CHANNEL, reply, "eyes"))
    bot.event(slack.react(CHANNEL, elsewhere, PIN))
    bot.event(slack.react("C0OTHER", slack.person_posts("C0OTHER", "hi"), PIN))
    slack.wait_for(lambda: slack.calls_to("conversations.replies"))  # the pin in SITREP_CHANNEL is read…
    bot.command(f"timeline {declared.id}")
    slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))
    assert pinned(bot, declared.id) == []  # …and belongs to no incident
    assert [c["ts"] for c in slack.calls_to("conversations.replies")] == [elsewhere]  # other channels not read


def test_timeline_refuses_plainly(bot, slack, statuspage):
    assert "no open incidents" in bot.command("timeline").text.lower()
    assert "I don't know an incident `#99`" in bot.command("timeline #99").text


def test_the_fake_refuses_reads_slack_refuses(slack):
    with pytest.raises(ValueError, match="no message"):
        slack.react(CHANNEL, "1.000001", PIN)
    ts = slack.person_posts(CHANNEL, "x")
    slack.react(CHANNEL, ts, PIN)
    with pytest.raises(ValueError, match="already_reacted"):
        slack.react(CHANNEL, ts, PIN)
    with pytest.raises(ValueError, match="no_reaction"):
        slack.react(CHANNEL, ts, "eyes", remove=True)


@pytest.mark.parametrize("count", [200, 2000])
def test_a_timeline_of_many_events_fits_one_private_answer(count):
    led = incident(title=HOSTILE[:150])
    events = [
        IncidentEvent(
            kind="pinned",
            status="Identified",
            text=HOSTILE,
            user_id="U0ANA",
            at=T0 + timedelta(minutes=i),
            link="https://x.slack.com/archives/C1/p1",
        )
        for i in range(count)
    ]
    text, blocks = views.timeline_answer(led, events)
    check_message(blocks, text)
    shown = json.dumps(blocks).count(":pushpin:")
    if shown < count:
        assert blocks[-1]["elements"][0]["text"] == f"…and {count - shown} more, the newest."
    assert shown == count if count == 200 else shown < count


def test_a_pushpin_in_the_incidents_own_channel_joins_its_timeline(settings, slack, statuspage):
    room_settings = settings.model_copy(update={"sitrep_incident_channels": True, "sitrep_archive_after": 24})
    with BotUnderTest(room_settings) as bot:
        declared = declare(bot, slack)
        room = slack.wait_for(lambda: [i for i in incidents_in_store(bot) if i.room_channel_id])[0].room_channel_id
        ts = slack.person_posts(room, "CPU at 100% on db-2", user="U0ANA")
        bot.event(slack.react(room, ts, PIN, user="U0BOB"))
        [entry] = slack.wait_for(lambda: pinned(bot, declared.id))
        assert (entry.text, entry.user_id) == ("CPU at 100% on db-2", "U0ANA")
        assert room in entry.link
