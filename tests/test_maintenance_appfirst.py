"""`/maintenance` end to end on the AppFirst backend (seed 003): form fields in UTC, basic
auth, the server's reply as the truth, edit (PUT), cancel (DELETE), list, status."""

from __future__ import annotations

import base64
import time
from datetime import timedelta

import pytest

from bot.services.maintenance import MaintenanceService
from bot.services.maintenance_forms import ScheduleForm
from handlers.ids import DraftAction
from handlers.maintenance.ids import Block, Callback
from tests.conftest import CHANNEL
from tests.harness import BotUnderTest, last_view
from tests.maintenance_support import (
    SUMMER_END,
    SUMMER_START,
    T0,
    WINTER_END,
    WINTER_START,
    ack_text,
    block,
    date_token,
    drafts,
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
def af_bot(appfirst_settings, clock):
    with BotUnderTest(appfirst_settings, clock=clock) as bot:
        yield bot


def af_values(reason="Kernel updates", servers="1, 2", **kw):
    return schedule_values(reason, description=None, servers=servers, **kw)


def basic_auth(appfirst) -> str:
    return "Basic " + base64.b64encode(f"{appfirst.email}:{appfirst.api_key}".encode()).decode()


def writes(appfirst, method):
    return [r for r in appfirst.requests if r.method == method]


def scheduled(bot, slack):
    return slack.wait_for(lambda: [w for w in windows(bot) if w.message_ts])[0]


# --- schedule -------------------------------------------------------------------------------


def test_schedule_modal_has_the_appfirst_fields(af_bot, slack):
    view = open_modal(af_bot, slack, text="schedule Kernel updates")
    title = block(view, Block.TITLE)
    assert title["label"]["text"] == "Reason" and title["element"]["initial_value"] == "Kernel updates"
    assert block(view, Block.DESCRIPTION) is None and block(view, Block.COMPONENTS) is None
    assert block(view, Block.SERVERS)["element"]["type"] == "plain_text_input"
    assert block(view, Block.START)["element"]["type"] == "datetimepicker"


def test_schedule_sends_utc_form_fields_with_basic_auth(af_bot, slack, appfirst):
    view = open_modal(af_bot, slack)
    response = af_bot.submit(view, af_values())
    assert response.status_code == 200 and response.content in (b"", b"null")

    posted = wait_announcement(slack)
    [create] = writes(appfirst, "POST")
    assert create.path == "/api/maintenance_windows/"
    assert create.headers["Authorization"] == basic_auth(appfirst)
    assert create.form == {
        "start": "2026-12-01 14:00",
        "end": "2026-12-01 16:00",
        "reason": "Kernel updates",
        "servers": "[1,2]",
    }
    body = posted["text"] + str(posted["blocks"])
    assert date_token(WINTER_START) in body and date_token(WINTER_END) in body
    assert "Kernel updates" in body and "Servers" in body and "1, 2" in body and "2h" in body
    assert "<@U123>" in body and "Scheduled" in body and "AppFirst ID `1`" in body

    window = scheduled(af_bot, slack)
    assert (window.backend, window.upstream_id, window.servers) == ("appfirst", "1", [1, 2])
    assert window.start == WINTER_START and window.end == WINTER_END
    assert window.message_ts == posted["ts"]
    answer = wait_answer(slack)
    assert "is scheduled" in answer["text"] and "stored the window" not in str(answer["blocks"])


def test_summer_morning_in_new_york_is_13_utc(af_bot, slack, appfirst):
    view = open_modal(af_bot, slack)
    af_bot.submit(view, af_values(start=SUMMER_START, end=SUMMER_END))
    posted = wait_announcement(slack)
    [create] = writes(appfirst, "POST")
    assert (create.form["start"], create.form["end"]) == ("2027-07-01 13:00", "2027-07-01 15:00")
    assert date_token(SUMMER_START) in str(posted["blocks"])


def test_server_shifted_times_are_stored_announced_and_told(af_bot, slack, appfirst):
    appfirst.shift_minutes = 300  # the seed's 14:00 → 19:00
    view = open_modal(af_bot, slack)
    af_bot.submit(view, af_values())
    posted = wait_announcement(slack)
    stored_start, stored_end = WINTER_START + timedelta(hours=5), WINTER_END + timedelta(hours=5)
    assert date_token(stored_start) in str(posted["blocks"]) and date_token(WINTER_START) not in str(posted["blocks"])
    window = scheduled(af_bot, slack)
    assert window.start == stored_start and window.end == stored_end
    answer = str(wait_answer(slack)["blocks"])
    assert "AppFirst stored the window as" in answer
    assert date_token(stored_start) in answer and date_token(WINTER_START) in answer and "as you entered" in answer


@pytest.mark.parametrize(
    ("values", "errors"),
    [
        (af_values(reason=" "), {Block.TITLE: "Give the maintenance a reason."}),
        (af_values(servers="web1, 2"), {Block.SERVERS: "Server IDs are numbers, separated by commas, like `1, 2, 3`."}),
        (af_values(servers=""), {Block.SERVERS: "List at least one server ID, like `1, 2, 3`."}),
        (
            af_values(start=T0 - timedelta(minutes=1), end=T0 + timedelta(hours=1)),
            {Block.START: "The start is in the past. Pick a time from now on."},
        ),
        (af_values(start=WINTER_END, end=WINTER_START), {Block.END: "The end must be after the start."}),
    ],
    ids=["no-reason", "bad-servers", "no-servers", "start-in-past", "end-before-start"],
)
def test_modal_errors_come_back_inside_the_modal(af_bot, slack, appfirst, values, errors):
    view = open_modal(af_bot, slack)
    response = af_bot.submit(view, values)
    assert response.json() == {"response_action": "errors", "errors": errors}
    time.sleep(0.2)
    assert writes(appfirst, "POST") == []
    assert slack.messages(CHANNEL) == []


def test_servers_in_the_seeds_bracket_form_are_accepted(af_bot, slack, appfirst):
    view = open_modal(af_bot, slack)
    af_bot.submit(view, af_values(servers="[3,1,3]"))
    wait_announcement(slack)
    assert writes(appfirst, "POST")[0].form["servers"] == "[3,1]"


# --- list and status -----------------------------------------------------------------------


def test_list_shows_upcoming_windows_soonest_first(af_bot, slack):
    service = MaintenanceService(af_bot.ctx)
    for title, days in (("Third", 3), ("First", 1), ("Second", 2)):
        form = ScheduleForm(title=title, start=T0 + timedelta(days=days), end=T0 + timedelta(days=days, hours=1), servers_text="7")
        af_bot.run(service.schedule(form, user_id="U123", channel_id="C123"))
    text = ack_text(af_bot.command("list", command="/maintenance"))
    assert text.index("First") < text.index("Second") < text.index("Third")
    assert "servers: 7" in text


def test_status_lists_windows_in_progress_from_the_api(af_bot, slack, appfirst):
    appfirst.add_window(T0 - timedelta(minutes=30), T0 + timedelta(minutes=30), reason="Now", servers=[5])
    appfirst.add_window(T0 + timedelta(days=1), T0 + timedelta(days=1, hours=1), reason="Tomorrow", servers=[6])
    appfirst.add_window(T0 - timedelta(days=1), T0 - timedelta(hours=23), reason="Yesterday", servers=[7])
    appfirst.requests.clear()
    af_bot.command("status", command="/maintenance")
    text = str(wait_answer(slack)["blocks"])
    assert "1 maintenance window in progress now* (from AppFirst)" in text
    assert "Now" in text and "servers: 5" in text and "Tomorrow" not in text and "Yesterday" not in text
    listing = [r for r in appfirst.requests if r.method == "GET"]
    assert listing and listing[0].path == "/api/maintenance_windows/"
    assert listing[0].query == {"limit": "2500", "page": "0"}
    assert listing[0].headers["Authorization"] == basic_auth(appfirst)


def test_status_reports_a_malformed_list_as_an_upstream_error(af_bot, slack, appfirst):
    appfirst.seed_trailing_comma = True
    af_bot.command("status", command="/maintenance")
    text = wait_answer(slack)["text"]
    assert "AppFirst is not available right now" in text and "No maintenance" not in text


# --- edit (PUT) -----------------------------------------------------------------------------


def test_edit_opens_prefilled_puts_and_tells_the_thread(af_bot, slack, appfirst):
    view = open_modal(af_bot, slack)
    af_bot.submit(view, af_values())
    parent = wait_announcement(slack)
    window = scheduled(af_bot, slack)
    wait_answer(slack)

    view = open_modal(af_bot, slack, text=f"edit #{window.id}")
    assert view["callback_id"] == Callback.EDIT
    assert block(view, Block.TITLE)["element"]["initial_value"] == "Kernel updates"
    assert block(view, Block.START)["element"]["initial_date_time"] == int(WINTER_START.timestamp())
    assert block(view, Block.END)["element"]["initial_date_time"] == int(WINTER_END.timestamp())
    assert block(view, Block.SERVERS)["element"]["initial_value"] == "1, 2"

    new_end = WINTER_END + timedelta(hours=1)
    af_bot.submit(view, af_values(end=new_end, servers="1, 2, 3"))
    reply = slack.wait_for(lambda: slack.thread(CHANNEL, parent["ts"]))[0]
    [put] = writes(appfirst, "PUT")
    assert put.path == f"/api/maintenance_windows/{window.upstream_id}/"
    assert put.headers["Authorization"] == basic_auth(appfirst)
    assert put.form == {"start": "2026-12-01 14:00", "end": "2026-12-01 17:00", "reason": "Kernel updates", "servers": "[1,2,3]"}
    replied = str(reply["blocks"])
    assert "Edited" in replied and "<@U123>" in replied
    assert f"*End*: {date_token(WINTER_END)}" in replied and date_token(new_end) in replied
    assert "*Servers*: 1, 2 → 1, 2, 3" in replied and "*Start*" not in replied
    updated = slack.wait_for(lambda: slack.message(CHANNEL, parent["ts"]).get("edited") and slack.message(CHANNEL, parent["ts"]))
    assert date_token(new_end) in str(updated["blocks"]) and "3h" in str(updated["blocks"])
    stored = slack.wait_for(lambda: [w for w in windows(af_bot) if w.end == new_end])[0]
    assert stored.servers == [1, 2, 3]
    assert "Saved maintenance" in wait_answer(slack, 2)["text"]


def test_edit_reports_server_shifted_times(af_bot, slack, appfirst):
    form = ScheduleForm(title="Patch", start=WINTER_START, end=WINTER_END, servers_text="4")
    window = af_bot.run(MaintenanceService(af_bot.ctx).schedule(form, user_id="U123", channel_id="C123")).window
    appfirst.shift_minutes = 60
    view = open_modal(af_bot, slack, text=f"edit {window.id}")
    af_bot.submit(view, af_values(reason="Patch", servers="4", end=WINTER_END + timedelta(hours=1)))
    answer = str(wait_answer(slack)["blocks"])
    assert "AppFirst stored the window as" in answer
    stored = slack.wait_for(lambda: [w for w in windows(af_bot) if w.start == WINTER_START + timedelta(hours=1)])[0]
    assert stored.end == WINTER_END + timedelta(hours=2)


def test_edit_keeps_a_start_that_has_already_passed(af_bot, slack, appfirst, clock):
    form = ScheduleForm(title="Running", start=T0 + timedelta(minutes=5), end=T0 + timedelta(hours=2), servers_text="1")
    window = af_bot.run(MaintenanceService(af_bot.ctx).schedule(form, user_id="U123", channel_id="C123")).window
    clock.advance(minutes=30)  # now in progress
    view = open_modal(af_bot, slack, text=f"edit {window.id}")
    response = af_bot.submit(view, af_values(reason="Running", servers="1", start=window.start, end=T0 + timedelta(hours=3)))
    assert response.content in (b"", b"null")
    slack.wait_for(lambda: writes(appfirst, "PUT"))


# --- cancel (DELETE) ------------------------------------------------------------------------


def test_cancel_deletes_the_window_and_updates_the_thread(af_bot, slack, appfirst):
    view = open_modal(af_bot, slack)
    af_bot.submit(view, af_values())
    parent = wait_announcement(slack)
    window = scheduled(af_bot, slack)

    view = open_modal(af_bot, slack, text=f"cancel {window.id}")
    assert "AppFirst will delete the window" in str(view["blocks"])
    af_bot.submit(view, {})
    reply = slack.wait_for(lambda: slack.thread(CHANNEL, parent["ts"]))[0]
    [delete] = writes(appfirst, "DELETE")
    assert delete.path == "/api/maintenance_windows/1/" and delete.headers["Authorization"] == basic_auth(appfirst)
    assert appfirst.windows == {}
    assert "Cancelled" in str(reply["blocks"])
    updated = slack.wait_for(lambda: slack.message(CHANNEL, parent["ts"]).get("edited") and slack.message(CHANNEL, parent["ts"]))
    assert "Cancelled" in str(updated["blocks"])
    assert slack.wait_for(lambda: windows(af_bot)[0].state == "cancelled")
    assert "Cancelled maintenance" in wait_answer(slack, 2)["text"]


def test_cancel_of_a_window_already_deleted_upstream_still_cancels(af_bot, slack, appfirst):
    form = ScheduleForm(title="Vanishing", start=WINTER_START, end=WINTER_END, servers_text="1")
    window = af_bot.run(MaintenanceService(af_bot.ctx).schedule(form, user_id="U123", channel_id="C123")).window
    appfirst.windows.clear()
    view = open_modal(af_bot, slack, text=f"cancel {window.id}")
    af_bot.submit(view, {})
    assert "Cancelled maintenance" in wait_answer(slack)["text"]


# --- failures -------------------------------------------------------------------------------


def test_400_message_is_shown_verbatim(af_bot, slack, appfirst):
    appfirst.fail_times(1, status=400)
    view = open_modal(af_bot, slack)
    af_bot.submit(view, af_values())
    text = str(wait_answer(slack)["blocks"])
    assert "AppFirst said “Internal server error.”" in text
    assert DraftAction.EDIT in text and DraftAction.RETRY not in text
    assert windows(af_bot) == [] and slack.messages(CHANNEL) == []


def test_401_says_misconfigured(af_bot, slack, appfirst):
    appfirst.api_key = "rotated"
    view = open_modal(af_bot, slack)
    af_bot.submit(view, af_values())
    text = str(wait_answer(slack)["blocks"])
    assert "sitrep is misconfigured: AppFirst refused its credentials" in text
    assert "Kernel updates" in text and "rotated" not in text
    assert drafts(af_bot)[0].state == "failed"


def test_500_keeps_the_draft_and_edit_reopens_it(af_bot, slack, appfirst):
    appfirst.fail_times(1, status=500)
    view = open_modal(af_bot, slack)
    af_bot.submit(view, af_values(servers="9, 8"))
    text = str(wait_answer(slack)["blocks"])
    assert DraftAction.RETRY in text and "Servers: 9, 8" in text
    [draft] = drafts(af_bot)
    af_bot.click(DraftAction.EDIT, str(draft.id))
    slack.wait_for(lambda: len(slack.calls_to("views.open")) == 2)
    assert block(last_view(slack), Block.SERVERS)["element"]["initial_value"] == "9, 8"
    af_bot.click(DraftAction.RETRY, str(draft.id))
    wait_announcement(slack)
    assert [w["servers"] for w in appfirst.windows.values()] == [[9, 8]]


def test_timeout_keeps_the_draft(af_bot, slack, appfirst):
    appfirst.latency = 3.0
    view = open_modal(af_bot, slack)
    af_bot.submit(view, af_values())
    text = str(wait_answer(slack)["blocks"])
    assert "reply within 2 seconds" in text and DraftAction.RETRY in text
    assert drafts(af_bot)[0].state == "failed"
    appfirst.latency = 0


def test_edit_of_unknown_or_finished_windows(af_bot, slack, clock):
    assert "I don't know a maintenance window `#9`" in ack_text(af_bot.command("edit #9", command="/maintenance"))
    form = ScheduleForm(title="Short", start=T0 + timedelta(minutes=1), end=T0 + timedelta(minutes=10), servers_text="1")
    window = af_bot.run(MaintenanceService(af_bot.ctx).schedule(form, user_id="U123", channel_id="C123")).window
    clock.advance(hours=1)
    assert "has already ended" in ack_text(af_bot.command(f"edit {window.id}", command="/maintenance"))


def _break(appfirst, failure):
    if failure == "401":
        appfirst.api_key = "rotated"
    elif failure == "timeout":
        appfirst.latency = 3.0
    elif failure == "malformed":
        appfirst.malformed = True
    else:
        appfirst.fail_times(1, status=int(failure))


@pytest.mark.parametrize("failure", ["400", "401", "500", "timeout", "malformed"])
def test_edit_failures_keep_the_window_and_what_was_typed(af_bot, slack, appfirst, failure):
    form = ScheduleForm(title="Patch", start=WINTER_START, end=WINTER_END, servers_text="4")
    window = af_bot.run(MaintenanceService(af_bot.ctx).schedule(form, user_id="U123", channel_id="C123")).window
    view = open_modal(af_bot, slack, text=f"edit {window.id}")
    _break(appfirst, failure)
    af_bot.submit(view, af_values(reason="Patch v2", servers="4, 5"))
    text = str(wait_answer(slack)["blocks"])
    assert "Patch v2" in text and "4, 5" in text  # what they typed, given back
    assert (DraftAction.RETRY in text) is (failure != "400")
    stored = windows(af_bot)[0]
    assert stored.title == "Patch" and stored.servers == [4] and stored.end == WINTER_END
    assert slack.thread(CHANNEL, window.message_ts) == []
    appfirst.latency = 0


@pytest.mark.parametrize("failure", ["401", "500", "timeout"])
def test_cancel_failures_leave_the_window_scheduled(af_bot, slack, appfirst, failure):
    form = ScheduleForm(title="Keep me", start=WINTER_START, end=WINTER_END, servers_text="1")
    window = af_bot.run(MaintenanceService(af_bot.ctx).schedule(form, user_id="U123", channel_id="C123")).window
    view = open_modal(af_bot, slack, text=f"cancel {window.id}")
    _break(appfirst, failure)
    af_bot.submit(view, {})
    text = str(wait_answer(slack)["blocks"])
    assert DraftAction.RETRY in text
    assert windows(af_bot)[0].state == "scheduled"
    assert slack.thread(CHANNEL, window.message_ts) == []
    appfirst.latency = 0
    appfirst.api_key = "af-test-key"
    appfirst.fail_status = None
    [draft] = [d for d in drafts(af_bot) if d.kind == "maintenance.cancel"]
    af_bot.click(DraftAction.RETRY, str(draft.id))
    slack.wait_for(lambda: windows(af_bot)[0].state == "cancelled")
    assert appfirst.windows == {}


def test_retry_after_a_lost_reply_does_not_create_the_window_twice(af_bot, slack, appfirst):
    appfirst.fail_times(1, status=504)
    view = open_modal(af_bot, slack)
    af_bot.submit(view, af_values())
    assert DraftAction.RETRY in str(wait_answer(slack)["blocks"])
    # The request had reached AppFirst before the gateway gave up on the reply.
    appfirst.add_window(WINTER_START, WINTER_END, reason="Kernel updates", servers=[1, 2])
    [draft] = drafts(af_bot)
    af_bot.click(DraftAction.RETRY, str(draft.id))
    answer = str(wait_answer(slack, 2)["blocks"])
    assert "reached AppFirst after all" in answer
    assert len(writes(appfirst, "POST")) == 1  # only the first, failed one
    assert len(appfirst.windows) == 1
    [window] = windows(af_bot)
    assert window.created_by == "U123" and window.message_ts
    assert "<@U123>" in str(slack.message(CHANNEL, window.message_ts)["blocks"])


def test_retry_of_a_schedule_whose_start_has_passed_asks_for_edit(af_bot, slack, appfirst, clock):
    appfirst.fail_times(1, status=500)
    view = open_modal(af_bot, slack)
    af_bot.submit(view, af_values())
    wait_answer(slack)
    clock.set(WINTER_START + timedelta(minutes=5))
    af_bot.click(DraftAction.RETRY, str(drafts(af_bot)[0].id))
    assert "has passed meanwhile" in str(wait_answer(slack, 2)["blocks"])
    assert appfirst.windows == {}
