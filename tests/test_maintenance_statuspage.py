"""`/maintenance` end to end on the status-page backend (seed 000): signed request → modal →
status page → one announcement, list, status, edit (not supported), cancel (resolve)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.services.maintenance import MaintenanceService
from bot.services.maintenance_forms import ScheduleForm
from handlers.ids import DraftAction
from handlers.maintenance.ids import Action, Block, Callback
from store.states import DraftKind
from tests.support.dates import SUMMER_END, SUMMER_START, T0, WINTER_END, WINTER_START, YEAR
from tests.support.harness import CHANNEL, PAST_IMPATIENT, BotUnderTest, last_view, said
from tests.support.maintenance import (
    API,
    ack_text,
    announcements,
    block,
    date_token,
    drafts,
    hold_live_sync,
    list_answer,
    open_modal,
    schedule_values,
    wait_announcement,
    wait_answer,
    windows,
)


@pytest.fixture
def clock(upstream_clock):
    upstream_clock.set(T0)
    return upstream_clock


@pytest.fixture
def sp_bot(settings, clock, upstream_timeout):
    with BotUnderTest(settings, clock=clock, http_timeout=upstream_timeout) as bot:
        yield bot


def creates(statuspage):
    return [r for r in statuspage.requests if r.method == "POST" and r.path == "/api/admin/Incident"]


def schedule_directly(bot, title, start, end):
    form = ScheduleForm(title=title, start=start, end=end)
    return bot.run(MaintenanceService(bot.ctx).submit(DraftKind.SCHEDULE, form, user_id="U123", channel_id="C123")).record


# --- schedule -------------------------------------------------------------------------------


def test_schedule_modal_has_the_status_page_fields(sp_bot, slack):
    view = open_modal(sp_bot, slack)
    assert view["callback_id"] == Callback.SCHEDULE
    title = block(view, Block.TITLE)
    assert title["label"]["text"] == "Title" and title["element"]["initial_value"] == "DB upgrade"
    assert block(view, Block.DESCRIPTION) is not None
    assert block(view, Block.START)["element"]["type"] == "datetimepicker"
    assert block(view, Block.END)["element"]["type"] == "datetimepicker"
    options = block(view, Block.COMPONENTS)["element"]["options"]
    assert [o["value"] for o in options][0] == API
    assert block(view, Block.SERVERS) is None


def test_plain_maintenance_command_opens_the_schedule_modal(sp_bot, slack):
    view = open_modal(sp_bot, slack, text="")
    assert view["callback_id"] == Callback.SCHEDULE
    assert "initial_value" not in block(view, Block.TITLE)["element"]


def test_schedule_winter_new_york_morning_reaches_the_status_page_as_14_utc(sp_bot, slack, statuspage):
    view = open_modal(sp_bot, slack)
    response = sp_bot.submit(view, schedule_values(components=[API]))
    assert response.status_code == 200 and response.content in (b"", b"null")

    posted = wait_announcement(slack)
    [create] = creates(statuspage)
    assert create.headers["X-API-KEY"] == statuspage.api_key
    assert create.json == {
        "Title": "DB upgrade",
        "Type": "Maintenance",
        "Description": "Routine optimisation",
        "StartDate": f"{YEAR}-12-01T14:00:00Z",
        "EndDate": f"{YEAR}-12-01T16:00:00Z",
        "AffectedComponents": [API],
    }
    body = posted["text"] + str(posted["blocks"])
    assert date_token(WINTER_START) in body and date_token(WINTER_END) in body
    assert "DB upgrade" in body and "Routine optimisation" in body
    assert "2h" in body and "API" in body and "<@U123>" in body and "Scheduled" in body
    assert len(announcements(slack)) == 1

    [window] = slack.wait_for(lambda: [w for w in windows(sp_bot) if w.message_ts])
    assert window.backend == "statuspage"
    assert window.upstream_id == next(iter(statuspage.incidents))
    assert window.start == WINTER_START and window.end == WINTER_END
    assert window.components == ["API"] and window.state == "scheduled" and window.created_by == "U123"
    assert window.message_ts == posted["ts"] and window.channel_id == CHANNEL

    answer = wait_answer(slack)
    assert answer["user"] == "U123" and "is scheduled" in answer["text"]
    assert "https://example.slack.com/archives/" in str(answer["blocks"])
    assert "stored the window" not in str(answer["blocks"])  # the status page keeps what it was sent


def test_schedule_summer_new_york_morning_is_13_utc(sp_bot, slack, statuspage):
    view = open_modal(sp_bot, slack)
    sp_bot.submit(view, schedule_values(start=SUMMER_START, end=SUMMER_END))
    posted = wait_announcement(slack)
    [create] = creates(statuspage)
    assert create.json["StartDate"] == f"{YEAR + 1}-07-01T13:00:00Z"
    assert create.json["EndDate"] == f"{YEAR + 1}-07-01T15:00:00Z"
    assert date_token(SUMMER_START) in str(posted["blocks"])


# --- modal validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "errors"),
    [
        (schedule_values(title="  "), {Block.TITLE: "Give the maintenance a title."}),
        (schedule_values(title="x" * 151), {Block.TITLE: "Keep the title under 150 characters."}),
        (schedule_values(end=WINTER_START), {Block.END: "The end must be after the start."}),
        (
            schedule_values(start=WINTER_END, end=WINTER_START),
            {Block.END: "The end must be after the start."},
        ),
        (
            schedule_values(start=T0 - timedelta(hours=1), end=T0 + timedelta(hours=1)),
            {Block.START: "The start is in the past. Pick a time from now on."},
        ),
        (schedule_values(start=None), {Block.START: "Pick when the maintenance starts."}),
        (schedule_values(end=None), {Block.END: "Pick when the maintenance ends."}),
    ],
    ids=["empty-title", "long-title", "end-equals-start", "end-before-start", "start-in-past", "no-start", "no-end"],
)
def test_modal_errors_come_back_inside_the_modal(sp_bot, slack, statuspage, values, errors):
    view = open_modal(sp_bot, slack)
    response = sp_bot.submit(view, values)
    assert response.json() == {"response_action": "errors", "errors": errors}
    sp_bot.settle()
    assert statuspage.requests == []
    assert slack.messages(CHANNEL) == []


def test_start_in_the_current_minute_is_not_the_past(sp_bot, slack, statuspage, clock):
    clock.set(T0 + timedelta(seconds=40))
    view = open_modal(sp_bot, slack)
    sp_bot.submit(view, schedule_values(start=T0, end=T0 + timedelta(hours=1)))
    wait_announcement(slack)
    assert len(creates(statuspage)) == 1


# --- list and status -----------------------------------------------------------------------


def test_list_shows_upcoming_and_ongoing_soonest_first(sp_bot, slack, clock):
    later = schedule_directly(sp_bot, "Later one", T0 + timedelta(days=3), T0 + timedelta(days=3, hours=1))
    sooner = schedule_directly(sp_bot, "Sooner one", T0 + timedelta(days=1), T0 + timedelta(days=1, hours=2))
    past = schedule_directly(sp_bot, "Past one", T0 + timedelta(minutes=5), T0 + timedelta(minutes=30))
    clock.advance(hours=1)  # "Past one" has ended

    text = list_answer(sp_bot, slack)
    assert "Sooner one" in text and "Later one" in text and "Past one" not in text
    assert text.index("Sooner one") < text.index("Later one")
    assert f"#{sooner.id}" in text and f"#{later.id}" in text and past.id not in (sooner.id, later.id)
    assert date_token(T0 + timedelta(days=1)) in text


def test_list_when_nothing_is_planned(sp_bot, slack):
    assert "No maintenance scheduled" in list_answer(sp_bot, slack)


def test_list_adds_what_the_status_page_lists_in_progress_to_the_store(sp_bot, slack, statuspage, clock):
    hold_live_sync(sp_bot)
    ours = schedule_directly(sp_bot, "Ours tomorrow", T0 + timedelta(days=1), T0 + timedelta(days=1, hours=1))
    statuspage.add_maintenance("Made on the status page", T0 - timedelta(minutes=5), T0 + timedelta(hours=1), in_progress=True)
    statuspage.requests.clear()
    text = list_answer(sp_bot, slack)
    assert [r.path for r in statuspage.requests] == ["/api/maintenance/status"]
    assert "2 upcoming or ongoing maintenance windows* (checked with the status page just now)" in text
    assert text.index("Made on the status page") < text.index(f"*#{ours.id}* Ours tomorrow")
    assert "_not announced yet_" in text and "made on the status page directly" in text
    assert len(windows(sp_bot)) == 1


@pytest.mark.upstream_times_out
@pytest.mark.parametrize("failure", ["500", "timeout", "401", "malformed"])
def test_list_when_the_status_page_does_not_answer_is_the_bots_own_record(sp_bot, slack, statuspage, failure):
    hold_live_sync(sp_bot)
    ours = schedule_directly(sp_bot, "Ours tomorrow", T0 + timedelta(days=1), T0 + timedelta(days=1, hours=1))
    if failure == "500":
        statuspage.fail_status = 500
    elif failure == "timeout":
        statuspage.latency = PAST_IMPATIENT
    elif failure == "malformed":
        statuspage.malformed = True
    else:
        statuspage.api_key = "rotated"
    text = list_answer(sp_bot, slack)
    statuspage.latency = 0
    assert f"*#{ours.id}* Ours tomorrow" in text and "(sitrep's own record)" in text
    assert "sitrep has not reached the status page since it started using this database" in text
    assert "sp-test-key" not in text and "rotated" not in text


def test_status_asks_the_status_page_what_is_in_progress(sp_bot, slack, statuspage, clock):
    ours = schedule_directly(sp_bot, "Ours", T0 + timedelta(minutes=10), T0 + timedelta(hours=2))
    made_there = statuspage.add_maintenance("Made on the status page", T0 - timedelta(minutes=5), T0 + timedelta(hours=1))
    statuspage.start_maintenance(made_there)
    statuspage.add_maintenance("Tomorrow", T0 + timedelta(days=1), T0 + timedelta(days=1, hours=1))
    statuspage.add_maintenance("Not marked yet", T0 - timedelta(minutes=5), T0 + timedelta(hours=1))
    clock.advance(minutes=15)
    statuspage.start_maintenance(ours.upstream_id)
    statuspage.requests.clear()

    response = sp_bot.command("status", command="/maintenance")
    assert response.status_code == 200 and response.content in (b"", b"null")  # acked first
    answer = wait_answer(slack)
    text = str(answer["blocks"])
    assert "2 maintenance windows in progress now" in text
    assert f"#{ours.id}* Ours" in text and "Made on the status page" in text
    assert "Tomorrow" not in text and "Not marked yet" not in text  # what the status page lists, no more
    [call] = [r for r in statuspage.requests if r.path == "/api/maintenance/status"]
    assert call.method == "GET" and call.headers["X-API-KEY"] == statuspage.api_key


def test_status_when_nothing_is_in_progress(sp_bot, slack, statuspage):
    sp_bot.command("status", command="/maintenance")
    answer = wait_answer(slack)
    assert "No maintenance in progress right now, according to the status page" in answer["text"]


@pytest.mark.upstream_times_out
@pytest.mark.parametrize("failure", ["401", "500", "timeout", "malformed"])
def test_status_when_the_status_page_fails_says_so(sp_bot, slack, statuspage, failure):
    if failure == "401":
        statuspage.api_key = "rotated"
    elif failure == "500":
        statuspage.fail_status = 500
    elif failure == "timeout":
        statuspage.latency = PAST_IMPATIENT
    else:
        statuspage.malformed = True
    response = sp_bot.command("status", command="/maintenance")
    assert response.status_code == 200  # the ack never waits for the status page
    text = str(wait_answer(slack)["blocks"])
    assert ("misconfigured" in text) if failure == "401" else ("not available right now" in text)
    assert "rotated" not in text and "sp-test-key" not in text
    statuspage.latency = 0


# --- edit: not on this backend --------------------------------------------------------------


def test_edit_is_not_supported_on_the_status_page(sp_bot, slack, statuspage):
    schedule_directly(sp_bot, "Fixed", T0 + timedelta(days=1), T0 + timedelta(days=1, hours=1))
    statuspage.requests.clear()
    response = sp_bot.command("edit 1", command="/maintenance")
    text = ack_text(response)
    assert "not supported on this backend" in text and "/maintenance cancel" in text
    assert slack.calls_to("views.open") == []
    assert statuspage.requests == []


# --- cancel = resolve -----------------------------------------------------------------------


def test_cancel_resolves_the_maintenance_and_updates_the_thread(sp_bot, slack, statuspage):
    view = open_modal(sp_bot, slack)
    sp_bot.submit(view, schedule_values(components=[API]))
    parent = wait_announcement(slack)
    [window] = slack.wait_for(lambda: [w for w in windows(sp_bot) if w.message_ts])

    view = open_modal(sp_bot, slack, text=f"cancel #{window.id}")
    assert view["callback_id"] == Callback.CANCEL
    assert "resolve" in str(view["blocks"]) and "DB upgrade" in str(view["blocks"])
    sp_bot.submit(view, {Block.NOTE: {Action.NOTE: {"type": "plain_text_input", "value": "Vendor postponed"}}})

    reply = slack.wait_for(lambda: slack.thread(CHANNEL, parent["ts"]))[0]
    resolve = [r for r in statuspage.requests if r.path == "/api/admin/Incident/ResolveIncident"]
    assert resolve[0].json == {"IncidentId": window.upstream_id}
    assert resolve[0].headers["X-API-KEY"] == statuspage.api_key
    assert "Cancelled" in str(reply["blocks"]) and "Vendor postponed" in str(reply["blocks"])
    assert reply["reply_broadcast"] is True
    updated = slack.wait_for(lambda: slack.message(CHANNEL, parent["ts"]).get("edited") and slack.message(CHANNEL, parent["ts"]))
    assert "Cancelled" in str(updated["blocks"]) and Action.CANCEL not in str(updated["blocks"])
    assert slack.wait_for(lambda: windows(sp_bot)[0].state == "cancelled")
    assert statuspage.incidents[window.upstream_id]["Resolved"] is True
    # Cancelled windows leave the list, and cannot be cancelled twice.
    assert "No maintenance scheduled" in list_answer(sp_bot, slack)
    assert "already cancelled" in said(sp_bot, slack, f"cancel {window.id}", command="/maintenance")


def test_cancel_button_on_the_announcement_opens_the_confirmation(sp_bot, slack):
    window = schedule_directly(sp_bot, "Buttoned", T0 + timedelta(days=1), T0 + timedelta(days=1, hours=1))
    parent = wait_announcement(slack)
    assert Action.CANCEL in str(parent["blocks"])
    sp_bot.click(Action.CANCEL, str(window.id), channel=CHANNEL, message_ts=parent["ts"])
    slack.wait_for(lambda: slack.calls_to("views.open"))
    assert last_view(slack)["callback_id"] == Callback.CANCEL


def test_cancel_by_upstream_id_and_unknown_ids(sp_bot, slack, statuspage):
    window = schedule_directly(sp_bot, "By GUID", T0 + timedelta(days=1), T0 + timedelta(days=1, hours=1))
    view = open_modal(sp_bot, slack, text=f"cancel {window.upstream_id}")
    assert f"#{window.id}" in str(view["blocks"])
    assert "I don't know a maintenance window `42`" in said(sp_bot, slack, "cancel 42", command="/maintenance")
    assert "Say which window" in said(sp_bot, slack, "cancel", command="/maintenance")


def test_already_resolved_upstream_still_cancels_here_and_shows_the_message(sp_bot, slack, statuspage):
    window = schedule_directly(sp_bot, "Gone", T0 + timedelta(days=1), T0 + timedelta(days=1, hours=1))
    statuspage.incidents[window.upstream_id]["Resolved"] = True
    view = open_modal(sp_bot, slack, text=f"cancel {window.id}")
    sp_bot.submit(view, {})
    answer = wait_answer(slack)
    assert "The status page said “Incident already resolved.”" in str(answer["blocks"])
    assert slack.wait_for(lambda: windows(sp_bot)[0].state == "cancelled")


# --- failures -------------------------------------------------------------------------------


def test_500_keeps_the_draft_and_retry_schedules_it(sp_bot, slack, statuspage):
    statuspage.fail_times(1, status=500)
    view = open_modal(sp_bot, slack)
    sp_bot.submit(view, schedule_values())
    answer = wait_answer(slack)
    text = str(answer["blocks"])
    assert DraftAction.RETRY in text and "DB upgrade" in text and f"{YEAR}-12-01 14:00 UTC" in text
    [draft] = drafts(sp_bot)
    assert draft.kind == "maintenance.schedule" and draft.state == "failed"
    assert slack.messages(CHANNEL) == []

    sp_bot.click(DraftAction.RETRY, str(draft.id))
    posted = wait_announcement(slack)
    assert date_token(WINTER_START) in str(posted["blocks"])
    assert len(statuspage.incidents) == 1
    assert slack.wait_for(lambda: drafts(sp_bot)[0].state == "done")
    assert "is scheduled" in wait_answer(slack, 2)["text"]


def test_edit_button_of_a_failed_submission_reopens_the_form_as_typed(sp_bot, slack, statuspage):
    statuspage.fail_times(1, status=500)
    view = open_modal(sp_bot, slack)
    sp_bot.submit(view, schedule_values(title="Keep me", components=[API]))
    wait_answer(slack)
    [draft] = drafts(sp_bot)
    sp_bot.click(DraftAction.EDIT, str(draft.id))
    slack.wait_for(lambda: len(slack.calls_to("views.open")) == 2)
    reopened = last_view(slack)
    assert block(reopened, Block.TITLE)["element"]["initial_value"] == "Keep me"
    assert block(reopened, Block.START)["element"]["initial_date_time"] == int(WINTER_START.timestamp())
    assert block(reopened, Block.COMPONENTS)["element"]["initial_options"][0]["value"] == API


# --- help, admins, disabled, escaping -------------------------------------------------------


def test_help_and_unknown_subcommands(sp_bot, slack):
    assert "/maintenance schedule [title]" in ack_text(sp_bot.command("help", command="/maintenance"))
    text = ack_text(sp_bot.command("reboot", command="/maintenance"))
    assert "I don't know `reboot`" in text and "/maintenance cancel <id>" in text


def test_only_admins_may_schedule(settings, slack, clock):
    settings = settings.model_copy(update={"sitrep_admins": frozenset({"UADMIN"})})
    with BotUnderTest(settings, clock=clock) as bot:
        assert "SITREP_ADMINS" in ack_text(bot.command("schedule x", command="/maintenance", user="U123"))
        assert slack.calls_to("views.open") == []
        response = bot.command("schedule x", command="/maintenance", user="UADMIN")
        assert response.status_code == 200
        slack.wait_for(lambda: slack.calls_to("views.open"))


def test_maintenance_disabled_without_its_backend(settings, slack, clock):
    settings = settings.model_copy(update={"statuspage_url": None, "statuspage_api_key": None})
    with BotUnderTest(settings, clock=clock) as bot:
        text = ack_text(bot.command("schedule", command="/maintenance"))
        assert "Maintenance is turned off" in text and "STATUSPAGE_URL" in text
        assert slack.calls_to("views.open") == []


def test_mentions_in_the_title_are_escaped(sp_bot, slack, statuspage):
    view = open_modal(sp_bot, slack)
    sp_bot.submit(view, schedule_values(title="<!channel> db <@U1>"))
    posted = wait_announcement(slack)
    everything = posted["text"] + str(posted["blocks"])
    assert "<!channel>" not in everything and "<@U1>" not in everything
    assert "&lt;!channel&gt; db &lt;@U1&gt;" in everything
    assert statuspage.incidents[next(iter(statuspage.incidents))]["Title"] == "<!channel> db <@U1>"
