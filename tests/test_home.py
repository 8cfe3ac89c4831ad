"""The home tab end to end: a signed `app_home_opened` event → one read of the store →
`views.publish` (checked by the fake Slack against Slack's method document and Block Kit's
limits) → its buttons open the existing forms; Slack refusing the view is logged, nothing
else breaks."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import update

from bot.services.home import HomeOverview
from bot.services.maintenance import MaintenanceService
from bot.services.maintenance_forms import ScheduleForm
from bot.slack.members import MEMBERS_TTL
from handlers.home import views
from handlers.home.ids import Callback
from handlers.incident.ids import Action as IncidentAction
from handlers.incident.ids import Callback as IncidentCallback
from handlers.maintenance.ids import Action as MaintenanceAction
from handlers.maintenance.ids import Callback as MaintenanceCallback
from store.models import Incident, MaintenanceWindow
from store.states import DraftKind, WindowState
from tests.support.fakes.signing import slack_signature_headers
from tests.support.harness import CHANNEL, BotUnderTest, FakeClock, home_opened, last_view
from tests.support.incidents import declare, resolve_values
from tests.support.outage import database_gone
from tests.support.slack_limits import MAX_MODAL_BLOCKS, view_problems

#: Who is in SITREP_CHANNEL in these tests (a private channel, as many keep it).
READERS = ("UBOT", "U123")


@pytest.fixture(autouse=True)
def sitrep_channel(slack):
    """The fake knows SITREP_CHANNEL and its members: the home tab shows a person only the
    incidents of channels they are in, and asks Slack who that is."""
    slack.add_channel("incidents", private=True, members=READERS, channel_id=CHANNEL)


def open_home(bot, slack, user: str = "U123") -> dict:
    """Open the Home tab as `user`; the view Slack was given."""
    before = len(slack.calls_to("views.publish"))
    response = bot.event(home_opened(user))
    assert response.status_code == 200
    calls = slack.wait_for(lambda: slack.calls_to("views.publish")[before:])
    assert calls[-1]["user_id"] == user
    return calls[-1]["view"]


def published(slack, user: str = "U123") -> dict:
    """The home view as the fake Slack keeps it (with its id), for clicking its buttons."""
    return next(v for v in slack.views.values() if v["type"] == "home")


def buttons(view: dict) -> list[tuple[str, str, str]]:
    """(text, action_id, value) of every button, in order."""
    found = []
    for block in view["blocks"]:
        elements = block.get("elements", []) if block["type"] == "actions" else [block.get("accessory") or {}]
        found += [(e["text"]["text"], e["action_id"], e["value"]) for e in elements if e.get("type") == "button"]
    return found


def schedule(bot, title: str, start: datetime, minutes: int = 60) -> MaintenanceWindow:
    form = ScheduleForm(title=title, start=start, end=start + timedelta(minutes=minutes))
    return bot.run(MaintenanceService(bot.ctx).submit(DraftKind.SCHEDULE, form, user_id="U123", channel_id="C123")).record


def test_an_empty_home_has_the_two_buttons_and_says_nothing_is_open(bot, slack):
    view = open_home(bot, slack)
    assert view["type"] == "home" and view["callback_id"] == Callback.HOME
    text = json.dumps(view["blocks"])
    assert "No open incidents in the channels you are in" in text and "No maintenance running or planned" in text
    assert [b[:2] for b in buttons(view)] == [
        ("Declare incident", IncidentAction.DECLARE),
        ("Schedule maintenance", MaintenanceAction.SCHEDULE),
    ]


def test_home_lists_open_incidents_and_windows_with_links_times_and_buttons(bot, slack):
    incident = declare(bot, slack, title="Checkout <down> & @here")
    start = datetime.now(timezone.utc) + timedelta(hours=2)
    window = schedule(bot, "DB upgrade", start)
    slack.forget_calls()

    view = open_home(bot, slack)
    text = json.dumps(view["blocks"])
    assert f"<{incident.permalink}|Checkout &lt;down&gt; &amp; @here>" in text  # escaped, linked to its thread
    assert "Investigating" in text and "Major Outage" in text and "open less than a minute" in text
    window_link = f"https://example.slack.com/archives/{CHANNEL}/p{window.message_ts.replace('.', '')}"
    assert f"<{window_link}|DB upgrade>" in text and "Upcoming" in text
    for moment in (window.start, window.end):
        assert f"<!date^{int(moment.timestamp())}^" in text  # each reader's own time zone
    assert [b for b in buttons(view) if b[1].startswith("incident_") and b[2] == str(incident.id)] == [
        ("Post update", IncidentAction.POST_UPDATE, str(incident.id)),
        ("Resolve", IncidentAction.RESOLVE, str(incident.id)),
    ]
    assert ("Cancel", MaintenanceAction.CANCEL, str(window.id)) in buttons(view)


@pytest.mark.parametrize(
    "action_id, value, callback_id",
    [
        (IncidentAction.DECLARE, "home", IncidentCallback.DECLARE),
        (MaintenanceAction.SCHEDULE, "home", MaintenanceCallback.SCHEDULE),
        (IncidentAction.POST_UPDATE, "{incident}", IncidentCallback.UPDATE),
        (IncidentAction.RESOLVE, "{incident}", IncidentCallback.RESOLVE),
        (MaintenanceAction.CANCEL, "{window}", MaintenanceCallback.CANCEL),
    ],
)
def test_each_home_button_opens_the_existing_form(bot, slack, action_id, value, callback_id):
    incident = declare(bot, slack)
    window = schedule(bot, "DB upgrade", datetime.now(timezone.utc) + timedelta(hours=2))
    open_home(bot, slack)
    slack.forget_calls()
    home = published(slack)
    bot.click_in_home(home, action_id, value.format(incident=incident.id, window=window.id))
    slack.wait_for(lambda: slack.calls_to("views.open"))
    assert last_view(slack)["callback_id"] == callback_id


def test_a_form_opened_from_home_answers_the_person_privately(bot, slack):
    """The home tab is no channel: the answer after the form goes to the person's DM."""
    incident = declare(bot, slack)
    open_home(bot, slack)
    slack.forget_calls()
    bot.click_in_home(published(slack), IncidentAction.RESOLVE, str(incident.id))
    view = slack.wait_for(lambda: slack.calls_to("views.open")) and last_view(slack)
    bot.submit(view, resolve_values(incident.id))
    slack.wait_for(lambda: slack.messages("U123"))
    assert "Resolved incident" in slack.messages("U123")[-1]["text"]


def test_the_home_is_refreshed_each_time_it_is_opened(bot, slack):
    first = open_home(bot, slack)
    assert "No open incidents" in json.dumps(first["blocks"])
    declare(bot, slack, title="Late arrival")
    second = open_home(bot, slack)
    assert "Late arrival" in json.dumps(second["blocks"])
    assert len({v["id"] for v in slack.views.values() if v["type"] == "home"}) == 1  # the same tab, republished


def test_a_windows_permalink_is_asked_of_slack_once_not_on_every_open(bot, slack):
    start = datetime.now(timezone.utc) + timedelta(hours=2)
    windows = [schedule(bot, f"Window {i}", start + timedelta(hours=i)) for i in range(3)]
    slack.forget_calls()
    links = [f"/archives/{CHANNEL}/p{w.message_ts.replace('.', '')}|Window {i}>" for i, w in enumerate(windows)]
    open_home(bot, slack)
    assert len(slack.calls_to("chat.getPermalink")) == 3
    for user in ("U123", "U124", "U125"):  # opened again, by the same person and by others
        text = json.dumps(open_home(bot, slack, user=user)["blocks"])
        assert all(link in text for link in links)  # each still linked to its thread
    assert len(slack.calls_to("chat.getPermalink")) == 3


def test_an_incidents_permalink_is_not_asked_of_slack_when_the_home_tab_opens(bot, slack):
    """Each incident keeps the link to its thread from its announcement: up to 25 incidents on
    a tab opened by many people cost no chat.getPermalink (a Tier 4 workspace limit)."""
    incidents = [declare(bot, slack, title=f"Outage {i}") for i in range(3)]
    assert all(incident.permalink for incident in incidents)
    slack.forget_calls()
    for _ in range(3):
        text = json.dumps(open_home(bot, slack)["blocks"])
        assert all(f"<{incident.permalink}|Outage {i}>" in text for i, incident in enumerate(incidents))
    assert slack.calls_to("chat.getPermalink") == []


def test_the_messages_tab_publishes_nothing(bot, slack):
    assert bot.event(home_opened("U7", tab="messages")).status_code == 200
    open_home(bot, slack, user="U8")  # handled after it: by then U7's event is long done
    assert [c["user_id"] for c in slack.calls_to("views.publish")] == ["U8"]


def test_many_incidents_and_windows_fit_slacks_100_blocks_with_and_n_more(bot, slack):
    now = datetime.now(timezone.utc)

    async def fill() -> None:
        async with bot.ctx.db.session() as session, session.begin():
            for n in range(60):
                session.add(
                    Incident(
                        upstream_id=f"up-{n}",
                        title=f"Incident {n} " + "t" * 480,
                        status="Investigating",
                        impact="Major Outage",
                        channel_id=CHANNEL,
                        declared_by="U1",
                        declared_at=now,
                        updated_at=now,
                    )
                )
            for n in range(80):
                session.add(
                    MaintenanceWindow(
                        backend="statuspage",
                        upstream_id=f"w-{n}",
                        title="w" * 500,
                        start=now + timedelta(hours=n + 1),
                        end=now + timedelta(hours=n + 2),
                        state=WindowState.SCHEDULED,
                        created_at=now,
                        updated_at=now,
                    )
                )

    bot.run(fill())
    view = open_home(bot, slack)
    assert len(view["blocks"]) <= MAX_MODAL_BLOCKS
    text = json.dumps(view["blocks"])
    assert "and 35 more: `/incident list`" in text and "and 50 more: `/maintenance list`" in text
    assert "not announced yet" in text
    assert view_problems(view, kind="home") == []  # and the fake Slack took it (its violations are checked)


def test_slack_refusing_the_home_view_is_logged_and_nothing_else_breaks(bot, slack, caplog):
    slack.home_tab_enabled = False  # the app's Home tab was never turned on
    caplog.set_level(logging.WARNING, logger="handlers.home.listeners")
    assert bot.event(home_opened("U123")).status_code == 200
    slack.wait_for(lambda: slack.calls_to("views.publish"))
    record = slack.wait_for(lambda: [r for r in caplog.records if r.name == "handlers.home.listeners"])[0]
    assert "not_enabled" in record.getMessage() and "home_tab_enabled" in record.getMessage()
    assert slack.calls_to("chat.postMessage") == [] and slack.calls_to("chat.postEphemeral") == []  # nobody is bothered
    # The bot goes on: a command is answered, and once the tab is on it is published.
    assert "/incident declare" in bot.command("help").text
    slack.home_tab_enabled = True
    assert open_home(bot, slack)["type"] == "home"


def test_slack_failing_the_publish_is_logged_too(bot, slack, caplog):
    slack.fail_next("views.publish", "internal_error")
    caplog.set_level(logging.WARNING, logger="handlers.home.listeners")
    bot.event(home_opened("U123"))
    record = slack.wait_for(lambda: [r for r in caplog.records if r.name == "handlers.home.listeners"])[0]
    assert "internal_error" in record.getMessage()
    assert open_home(bot, slack)["type"] == "home"


def test_an_unsigned_or_malformed_event_is_refused_at_the_edge(bot, slack):
    assert bot.event(home_opened("U123"), secret="not-the-secret").status_code == 401
    assert bot.post_json({"type": "event_callback", "event": {"type": "app_home_opened", "tab": "home"}}).status_code == 400
    assert bot.post_json({"type": "event_callback"}).status_code == 400
    assert slack.calls_to("views.publish") == []


def test_slacks_url_check_of_the_events_url_is_answered(bot):
    """Slack checks the Events URL (`url_verification`) when the manifest is saved."""
    body = json.dumps(
        {
            "token": "verification-token",
            "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
            "type": "url_verification",
        }
    )
    headers = {"Content-Type": "application/json", **slack_signature_headers("test-signing-secret-0123456789", body)}
    response = bot.http.post("/slack/events", content=body, headers=headers)
    assert response.status_code == 200
    assert "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" in response.text


def test_the_view_says_which_features_are_off_and_offers_no_button_for_them():
    overview = HomeOverview(now=datetime(2026, 11, 25, 12, tzinfo=timezone.utc), incidents=None, windows=None)
    view = views.home_view(overview)
    assert view_problems(view, kind="home") == []
    text = json.dumps(view["blocks"])
    assert "STATUSPAGE_URL is not set" in text and "Maintenance is turned off" in text
    assert buttons(view) == []


def test_a_running_window_without_an_end_reads_as_such():
    now = datetime(2026, 11, 25, 12, tzinfo=timezone.utc)
    window = MaintenanceWindow(
        id=3,
        backend="statuspage",
        upstream_id="w",
        title="Failover",
        start=now - timedelta(minutes=5),
        end=None,
        state=WindowState.IN_PROGRESS,
        channel_id=CHANNEL,
        message_ts="1.0",
        created_at=now,
        updated_at=now,
    )
    view = views.home_view(HomeOverview(now=now, incidents=[], windows=[window], window_links={3: "https://example.slack.com/x"}))
    text = json.dumps(view["blocks"])
    assert "Running" in text and "its end is not known yet" in text and "<https://example.slack.com/x|Failover>" in text
    assert view_problems(view, kind="home") == []


def test_the_event_is_timed_and_logged_as_the_home_tab(bot, slack):
    open_home(bot, slack)
    metrics = bot.scrape()
    assert 'sitrep_ack_seconds_count{kind="event",name="app_home_opened"} 1.0' in metrics


# --- whose incidents: only those announced where the person can read them ------------------------


def incident_numbers(view: dict) -> set[int]:
    """The incidents a home view shows (by their *Post update* buttons)."""
    return {int(value) for _text, action, value in buttons(view) if action == IncidentAction.POST_UPDATE}


def give_own_channel(bot, incident, channel: str) -> None:
    """The incident has its own channel (SITREP_INCIDENT_CHANNELS), as the store records it."""

    async def go():
        async with bot.ctx.db.session() as session, session.begin():
            await session.execute(update(Incident).where(Incident.id == incident.id).values(room_channel_id=channel))

    bot.run(go())


def test_a_person_sees_only_the_incidents_of_channels_they_are_in(bot, slack):
    room = slack.add_channel("inc-2-payments", private=True, members=("UBOT", "U200"))
    announced = declare(bot, slack, title="Checkout down")
    with_room = declare(bot, slack, title="Payments down")
    give_own_channel(bot, with_room, room)

    assert incident_numbers(open_home(bot, slack, user="U123")) == {announced.id, with_room.id}  # in SITREP_CHANNEL
    only_room = open_home(bot, slack, user="U200")  # in the incident's own channel only
    assert incident_numbers(only_room) == {with_room.id} and "Checkout down" not in json.dumps(only_room)
    outsider = open_home(bot, slack, user="U300")  # in neither: nothing, not even how many
    text = json.dumps(outsider["blocks"])
    assert incident_numbers(outsider) == set() and "Checkout" not in text and "Payments" not in text
    assert "No open incidents in the channels you are in" in text and "more" not in text
    assert [b[:2] for b in buttons(outsider)][:1] == [("Declare incident", IncidentAction.DECLARE)]


def test_members_are_asked_of_slack_once_per_channel_and_again_when_stale(settings, slack):
    clock = FakeClock()
    with BotUnderTest(settings, clock=clock) as bot:
        incident = declare(bot, slack)
        slack.forget_calls()
        for user in ("U123", "U123", "U300", "U123"):
            open_home(bot, slack, user=user)
        assert [c["channel"] for c in slack.calls_to("conversations.members")] == [CHANNEL]  # kept, not asked per open
        slack.set_members(CHANNEL, {"UBOT", "U300"})  # U123 leaves, U300 joins
        assert incident_numbers(open_home(bot, slack, user="U123")) == {incident.id}  # still fresh: as it was
        clock.advance(seconds=MEMBERS_TTL.total_seconds() + 1)
        assert incident_numbers(open_home(bot, slack, user="U123")) == set()
        assert incident_numbers(open_home(bot, slack, user="U300")) == {incident.id}
        assert len(slack.calls_to("conversations.members")) == 2


def test_a_channel_slack_will_not_list_shows_its_incidents_to_nobody(bot, slack, caplog):
    declare(bot, slack, title="Checkout down")
    slack.grant({"commands", "chat:write", "channels:history", "groups:history", "channels:read"})  # no groups:read
    caplog.set_level(logging.WARNING)
    view = open_home(bot, slack)
    assert incident_numbers(view) == set() and "Checkout" not in json.dumps(view)
    assert any("groups:read" in r.getMessage() for r in caplog.records)  # the operator is told what to add


def test_the_home_tab_says_the_database_is_not_working_instead_of_going_quiet(bot, slack, tmp_path, caplog):
    with database_gone(bot, f"sqlite:///{tmp_path / 'moved-away' / 'sitrep.db'}"):
        view = open_home(bot, slack)
    assert "database is not working right now" in json.dumps(view["blocks"])
    assert view_problems(view, kind="home") == []
    assert not [r for r in caplog.records if r.exc_info and not r.name.startswith("scheduler")]
