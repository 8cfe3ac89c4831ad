"""`/maintenance` end to end on the AppFirst backend (seed 003): form fields in UTC, basic
auth, the server's reply as the truth, edit (PUT), cancel (DELETE), list, status."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest

from bot.services import maintenance_listing
from bot.services import windows as windows_service
from bot.services.maintenance import MaintenanceService
from bot.services.maintenance_forms import ScheduleForm
from handlers.ids import DraftAction
from handlers.maintenance.ids import Block, Callback
from scheduler.sync import sync_windows
from store.states import DraftKind
from tests.support.dates import SUMMER_END, SUMMER_START, T0, WINTER_END, WINTER_START, YEAR
from tests.support.fakes.slack_api import WAIT_BOUND
from tests.support.harness import CHANNEL, PAST_IMPATIENT, BotUnderTest, last_view, said
from tests.support.maintenance import (
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
from tests.support.reminders import reminders


@pytest.fixture
def clock(upstream_clock):
    upstream_clock.set(T0)
    return upstream_clock


@pytest.fixture
def af_bot(appfirst_settings, clock, upstream_timeout):
    with BotUnderTest(appfirst_settings, clock=clock, http_timeout=upstream_timeout) as bot:
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
    appfirst.shift = timedelta(0)  # a server that keeps what it is sent: this is about the wire form
    view = open_modal(af_bot, slack)
    response = af_bot.submit(view, af_values())
    assert response.status_code == 200 and response.content in (b"", b"null")

    posted = wait_announcement(slack)
    [create] = writes(appfirst, "POST")
    assert create.path == "/api/maintenance_windows/"
    assert create.headers["Authorization"] == basic_auth(appfirst)
    assert create.form == {
        "start": f"{YEAR}-12-01 14:00",
        "end": f"{YEAR}-12-01 16:00",
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
    appfirst.shift = timedelta(0)  # about the wire form and the announced time, not the seed's shift
    view = open_modal(af_bot, slack)
    af_bot.submit(view, af_values(start=SUMMER_START, end=SUMMER_END))
    posted = wait_announcement(slack)
    [create] = writes(appfirst, "POST")
    assert (create.form["start"], create.form["end"]) == (f"{YEAR + 1}-07-01 13:00", f"{YEAR + 1}-07-01 15:00")
    assert date_token(SUMMER_START) in str(posted["blocks"])


def test_server_shifted_times_are_stored_announced_and_told(af_bot, slack, appfirst):
    # The fake's default is the seed's server: 14:00 sent, 19:00 kept. Nothing is known yet.
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


# --- a server that keeps other times than it is sent (seed 003; server_times' rule) ---------


def offset_of(bot) -> timedelta:
    return bot.run(MaintenanceService(bot.ctx).server_offset())


def due_times(bot, window_id) -> dict:
    return {kind: row.due_at for kind, row in reminders(bot, window_id).items()}


def schedule_first(bot) -> object:
    """One window scheduled from Slack's side: the bot learns the server's offset from it."""
    form = ScheduleForm(title="First", start=WINTER_START, end=WINTER_END, servers_text="1")
    return bot.run(MaintenanceService(bot.ctx).submit(DraftKind.SCHEDULE, form, user_id="U123", channel_id="C123")).record


def test_after_one_write_a_schedule_lands_where_the_person_asked(af_bot, slack, appfirst):
    schedule_first(af_bot)
    assert offset_of(af_bot) == timedelta(hours=5)
    view = open_modal(af_bot, slack)
    start, end = WINTER_START + timedelta(days=1), WINTER_END + timedelta(days=1)
    af_bot.submit(view, af_values(reason="Second", start=start, end=end))
    answer = slack.wait_for(lambda: [m for m in slack.ephemerals() if "Second" in m["text"]])[0]
    [create] = [r for r in writes(appfirst, "POST") if r.form["reason"] == "Second"]
    assert (create.form["start"], create.form["end"]) == (f"{YEAR}-12-02 09:00", f"{YEAR}-12-02 11:00")  # 14:00 − 5 h
    [kept] = [w for w in appfirst.windows.values() if w["reason"] == "Second"]
    assert (kept["start"], kept["end"]) == (start, end)
    assert "stored the window" not in str(answer["blocks"]) and date_token(start) in answer["text"]
    assert {w.start for w in windows(af_bot) if w.title == "Second"} == {start}


def test_the_learned_offset_survives_a_restart(appfirst_settings, appfirst, slack, clock):
    with BotUnderTest(appfirst_settings, clock=clock) as first:
        schedule_first(first)
    with BotUnderTest(appfirst_settings, clock=clock) as second:
        assert offset_of(second) == timedelta(hours=5)
        form = ScheduleForm(title="After restart", start=WINTER_START, end=WINTER_END, servers_text="1")
        done = second.run(MaintenanceService(second.ctx).submit(DraftKind.SCHEDULE, form, user_id="U123", channel_id="C123"))
    assert (done.record.start, done.record.end, done.entered) == (WINTER_START, WINTER_END, None)


def test_an_edit_of_the_reason_only_moves_nothing(af_bot, slack, appfirst):
    window = schedule_first(af_bot)  # kept 5 h after what was entered: the person was told
    assert window.start == WINTER_START + timedelta(hours=5)
    before = due_times(af_bot, window.id)
    view = open_modal(af_bot, slack, text=f"edit {window.id}")
    prefilled = block(view, Block.START)["element"]["initial_date_time"], block(view, Block.END)["element"]["initial_date_time"]
    assert prefilled == (int(window.start.timestamp()), int(window.end.timestamp()))  # the times the server keeps
    af_bot.submit(view, af_values(reason="First, reworded", servers="1", start=window.start, end=window.end))
    reply = slack.wait_for(lambda: slack.thread(CHANNEL, window.message_ts))[0]
    [put] = writes(appfirst, "PUT")
    assert (put.form["start"], put.form["end"]) == (f"{YEAR}-12-01 14:00", f"{YEAR}-12-01 16:00")
    [kept] = appfirst.windows.values()
    assert (kept["start"], kept["end"]) == (window.start, window.end)
    stored = slack.wait_for(lambda: [w for w in windows(af_bot) if w.title == "First, reworded"])[0]
    assert (stored.start, stored.end) == (window.start, window.end)
    assert due_times(af_bot, window.id) == before
    assert "*Title*" in str(reply["blocks"]) and "*Start*" not in str(reply["blocks"]) and "*End*" not in str(reply["blocks"])
    answer = str(slack.wait_for(lambda: [m for m in slack.ephemerals() if "Saved" in m["text"]])[0]["blocks"])
    assert "stored the window" not in answer and "1 change" in answer


def test_an_edit_of_a_window_made_in_appfirst_moves_nothing_before_any_offset_is_known(af_bot, slack, appfirst):
    hold_live_sync(af_bot)
    start, end = T0 + timedelta(days=2), T0 + timedelta(days=2, hours=1)
    upstream = appfirst.add_window(start, end, reason="Made in AppFirst", servers=[3])
    af_bot.run(sync_windows(af_bot.ctx))
    [window] = windows(af_bot)
    before = due_times(af_bot, window.id)
    assert offset_of(af_bot) == timedelta(0)
    view = open_modal(af_bot, slack, text=f"edit {window.id}")
    af_bot.submit(view, af_values(reason="Made in AppFirst, v2", servers="3", start=start, end=end))
    slack.wait_for(lambda: [m for m in slack.ephemerals() if "Saved" in m["text"]])
    first, second = writes(appfirst, "PUT")  # the first landed 5 h late; the second put it back
    assert first.form["start"] == f"{YEAR}-11-27 12:00" and second.form["start"] == f"{YEAR}-11-27 07:00"
    assert (appfirst.windows[upstream]["start"], appfirst.windows[upstream]["end"]) == (start, end)
    [stored] = windows(af_bot)
    assert (stored.title, stored.start, stored.end) == ("Made in AppFirst, v2", start, end)
    assert due_times(af_bot, window.id) == before
    assert offset_of(af_bot) == timedelta(hours=5)
    answer = str(slack.ephemerals()[-1]["blocks"])
    assert "stored the window" not in answer


def test_an_edit_that_moves_the_times_lands_where_the_person_asked(af_bot, slack, appfirst):
    window = schedule_first(af_bot)
    new_start, new_end = window.start + timedelta(hours=1), window.end + timedelta(hours=3)
    view = open_modal(af_bot, slack, text=f"edit {window.id}")
    af_bot.submit(view, af_values(reason="First", servers="1", start=new_start, end=new_end))
    reply = slack.wait_for(lambda: slack.thread(CHANNEL, window.message_ts))[0]
    [put] = writes(appfirst, "PUT")
    assert (put.form["start"], put.form["end"]) == (f"{YEAR}-12-01 15:00", f"{YEAR}-12-01 19:00")  # wanted − 5 h
    stored = slack.wait_for(lambda: [w for w in windows(af_bot) if w.end == new_end])[0]
    assert stored.start == new_start
    assert due_times(af_bot, window.id)["started"] == new_start
    replied = str(reply["blocks"])
    assert f"{date_token(window.start)}" in replied and date_token(new_start) in replied and date_token(new_end) in replied
    answer = str(slack.wait_for(lambda: [m for m in slack.ephemerals() if "Saved" in m["text"]])[0]["blocks"])
    assert "stored the window" not in answer and "2 changes" in answer


def test_when_the_server_changes_its_offset_an_edit_still_lands_where_asked(af_bot, slack, appfirst):
    window = schedule_first(af_bot)
    appfirst.shift = timedelta(hours=4)  # e.g. the server's zone left daylight saving time
    view = open_modal(af_bot, slack, text=f"edit {window.id}")
    af_bot.submit(view, af_values(reason="First", servers="1, 2", start=window.start, end=window.end))
    slack.wait_for(lambda: [m for m in slack.ephemerals() if "Saved" in m["text"]])
    assert len(writes(appfirst, "PUT")) == 2
    [kept] = appfirst.windows.values()
    assert (kept["start"], kept["end"], kept["servers"]) == (window.start, window.end, [1, 2])
    assert offset_of(af_bot) == timedelta(hours=4)


@pytest.mark.parametrize("sync_between", [False, True], ids=["retry-at-once", "sync-adopted-it-first"])
def test_retry_after_a_lost_reply_finds_the_window_under_shifted_times(af_bot, slack, appfirst, sync_between):
    appfirst.lose_replies(1)  # AppFirst makes the window (5 h late), the reply never arrives
    view = open_modal(af_bot, slack)
    af_bot.submit(view, af_values())
    # A 504 is "outcome unknown", not a failure to Retry: the person is offered a check first.
    answer = str(wait_answer(slack)["blocks"])
    assert DraftAction.CHECK in answer and DraftAction.RETRY not in answer
    [kept] = appfirst.windows.values()
    assert kept["start"] == WINTER_START + timedelta(hours=5)
    if sync_between:
        assert af_bot.run(sync_windows(af_bot.ctx)).adopted == 1
    [draft] = drafts(af_bot)
    af_bot.click(DraftAction.CHECK, str(draft.id))
    answer = str(wait_answer(slack, 2)["blocks"])
    assert "reached AppFirst after all" in answer
    assert "AppFirst stored the window as" in answer and date_token(WINTER_START) in answer
    assert len(writes(appfirst, "POST")) == 1 and len(appfirst.windows) == 1
    [window] = windows(af_bot)
    assert window.created_by == "U123" and window.start == WINTER_START + timedelta(hours=5)
    assert len([m for m in slack.messages(CHANNEL) if not m.get("thread_ts")]) == 1


def test_retry_does_not_take_a_window_someone_scheduled_from_slack(af_bot, slack, appfirst):
    schedule_first(af_bot)  # "First", 09:00–11:00 New York entered, kept 5 h later
    appfirst.fail_times(1, status=500)  # this one never reaches AppFirst
    view = open_modal(af_bot, slack)
    af_bot.submit(view, af_values(reason="First", servers="1"))
    assert DraftAction.RETRY in str(wait_answer(slack)["blocks"])
    [draft] = [d for d in drafts(af_bot) if d.state == "failed"]
    af_bot.click(DraftAction.RETRY, str(draft.id))
    slack.wait_for(lambda: len(writes(appfirst, "POST")) == 3)
    assert len(appfirst.windows) == 2


def test_sync_sees_no_move_after_writes_to_a_shifting_server(af_bot, slack, appfirst):
    hold_live_sync(af_bot)
    window = schedule_first(af_bot)
    view = open_modal(af_bot, slack, text=f"edit {window.id}")
    af_bot.submit(view, af_values(reason="Edited", servers="1", start=window.start, end=window.end + timedelta(hours=1)))
    slack.wait_for(lambda: [w for w in windows(af_bot) if w.title == "Edited"])
    report = af_bot.run(sync_windows(af_bot.ctx))
    assert (report.moved, report.adopted, report.vanished) == (0, 0, 0)
    assert "changed on" not in str([m.get("blocks") for m in slack.messages(CHANNEL)])


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
    af_bot.settle()
    assert writes(appfirst, "POST") == []
    assert slack.messages(CHANNEL) == []


def test_servers_in_the_seeds_bracket_form_are_accepted(af_bot, slack, appfirst):
    view = open_modal(af_bot, slack)
    af_bot.submit(view, af_values(servers="[3,1,3]"))
    wait_announcement(slack)
    assert writes(appfirst, "POST")[0].form["servers"] == "[3,1]"


# --- list and status -----------------------------------------------------------------------


def test_list_shows_upcoming_windows_soonest_first(af_bot, slack, appfirst):
    appfirst.shift = timedelta(0)  # about order and fields; the shift has its own tests
    service = MaintenanceService(af_bot.ctx)
    for title, days in (("Third", 3), ("First", 1), ("Second", 2)):
        form = ScheduleForm(
            title=title, start=T0 + timedelta(days=days), end=T0 + timedelta(days=days, hours=1), servers_text="7"
        )
        af_bot.run(service.submit(DraftKind.SCHEDULE, form, user_id="U123", channel_id="C123"))
    text = list_answer(af_bot, slack)
    assert text.index("First") < text.index("Second") < text.index("Third")
    assert "servers: 7" in text and "checked with AppFirst just now" in text and "not announced yet" not in text


@pytest.fixture
def af_bot_reading_history(appfirst_settings, clock):
    """A bot that waits out a loaded machine for two pages of 2,500 windows: the fake builds
    each page in Python and the bot parses it, which took over the 2-s client timeout of the
    other tests on a loaded CI machine (the listing then fell back to the store, as it should).
    The timeout has its own tests; here it would only make the test depend on the machine."""
    with BotUnderTest(appfirst_settings, clock=clock, http_timeout=WAIT_BOUND) as bot:
        yield bot


def test_list_answers_from_appfirst_itself_every_page_merged_with_the_store(af_bot_reading_history, slack, appfirst, clock):
    af_bot = af_bot_reading_history
    hold_live_sync(af_bot)
    ours = schedule_first(af_bot)  # kept at 14:00–16:00 UTC on 1 December
    made_there = appfirst.add_window(
        T0 + timedelta(days=1), T0 + timedelta(days=1, hours=1), reason="Made <b> in AppFirst", servers=[8]
    )
    running = appfirst.add_window(T0 - timedelta(minutes=10), T0 + timedelta(minutes=50), reason="Running now", servers=[9])
    for i in range(2600):  # years of history: the new windows are on the second page, newest first
        appfirst.add_window(T0 - timedelta(days=400 - i / 10), T0 - timedelta(days=400 - i / 10, hours=-1), reason="Old")
    appfirst.requests.clear()

    text = list_answer(af_bot, slack)
    pages = [r.query for r in appfirst.requests if r.method == "GET"]
    assert pages == [{"limit": "2500", "page": "0"}, {"limit": "2500", "page": "1"}]
    assert "3 upcoming or ongoing maintenance windows* (checked with AppFirst just now)" in text
    assert text.index("Running now") < text.index("Made &lt;b&gt; in AppFirst") < text.index(f"*#{ours.id}* First")
    assert "Old" not in text
    assert f"*#{ours.id}* First" in text and date_token(ours.start) in text
    assert f"AppFirst ID `{made_there}`, _not announced yet_" in text and f"AppFirst ID `{running}`" in text
    assert ":construction: In progress" in text and "every 5m" in text
    assert len(windows(af_bot)) == 1 and announcements_count(slack) == 1  # a list posts nothing


def announcements_count(slack) -> int:
    return len([m for m in slack.messages(CHANNEL) if not m.get("thread_ts")])


def test_list_shows_appfirst_s_times_and_leaves_out_what_it_deleted(af_bot, slack, appfirst):
    moved, deleted = schedule_first(af_bot), schedule_first(af_bot)
    appfirst.windows[int(moved.upstream_id)]["start"] += timedelta(hours=2)
    appfirst.windows[int(moved.upstream_id)]["end"] += timedelta(hours=2)
    del appfirst.windows[int(deleted.upstream_id)]
    text = list_answer(af_bot, slack)
    assert f"#{moved.id}*" in text and date_token(moved.start + timedelta(hours=2)) in text
    assert f"#{deleted.id}*" not in text and "1 upcoming or ongoing maintenance window*" in text


@pytest.mark.upstream_times_out
@pytest.mark.parametrize("failure", ["500", "timeout", "401", "malformed", "trailing-comma"])
def test_list_when_appfirst_does_not_answer_says_it_is_the_bots_record_and_how_old(
    af_bot, slack, appfirst, clock, failure, monkeypatch
):
    monkeypatch.setattr(windows_service, "NOTE_BOUND_SECONDS", WAIT_BOUND)  # each note must land, however slow the machine
    hold_live_sync(af_bot)
    window = schedule_first(af_bot)
    assert af_bot.run(sync_windows(af_bot.ctx)).failed is False  # AppFirst answered at T0
    clock.advance(minutes=42)
    if failure == "trailing-comma":
        appfirst.seed_trailing_comma = True
    elif failure == "500":
        appfirst.fail_status = 500
    else:
        _break(appfirst, failure)
    text = list_answer(af_bot, slack)
    appfirst.latency = 0
    assert "sitrep's own record*, last checked with AppFirst 42m ago" in text and date_token(T0) in text
    assert f"*#{window.id}* First" in text and "(sitrep's own record)" in text
    expected = {
        "500": "AppFirst is not available right now",
        "timeout": "no reply within 2 seconds",
        "401": "AppFirst refused the configured credentials",
        "malformed": "AppFirst is not available right now",
        "trailing-comma": "AppFirst is not available right now",
    }[failure]
    assert expected in text and "af-test-key" not in text and "rotated" not in text


def test_list_gives_up_on_a_slow_list(af_bot, slack, appfirst, monkeypatch):
    monkeypatch.setattr(maintenance_listing, "LIST_DEADLINE_SECONDS", 0.5)
    schedule_first(af_bot)
    with appfirst.hold_requests():  # no page answers before the list's deadline
        text = list_answer(af_bot, slack)
    assert "took more than 0.5 seconds to list its windows" in text and "sitrep's own record" in text


def test_list_when_appfirst_was_never_reached(af_bot, slack, appfirst):
    hold_live_sync(af_bot)
    appfirst.fail_status = 503
    text = list_answer(af_bot, slack)
    assert "sitrep has not reached AppFirst since it started using this database" in text
    assert "No maintenance scheduled" in text


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
    appfirst.shift = timedelta(0)  # the prefilled form and the PUT form as sent; the shift has its own tests
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
    assert put.form == {
        "start": f"{YEAR}-12-01 14:00",
        "end": f"{YEAR}-12-01 17:00",
        "reason": "Kernel updates",
        "servers": "[1,2,3]",
    }
    replied = str(reply["blocks"])
    assert "Edited" in replied and "<@U123>" in replied
    assert f"*End*: {date_token(WINTER_END)}" in replied and date_token(new_end) in replied
    assert "*Servers*: 1, 2 → 1, 2, 3" in replied and "*Start*" not in replied
    updated = slack.wait_for(lambda: slack.message(CHANNEL, parent["ts"]).get("edited") and slack.message(CHANNEL, parent["ts"]))
    assert date_token(new_end) in str(updated["blocks"]) and "3h" in str(updated["blocks"])
    stored = slack.wait_for(lambda: [w for w in windows(af_bot) if w.end == new_end])[0]
    assert stored.servers == [1, 2, 3]
    assert "Saved maintenance" in wait_answer(slack, 2)["text"]


def test_edit_reports_times_no_offset_explains_and_does_not_learn_them(af_bot, slack, appfirst):
    form = ScheduleForm(title="Patch", start=WINTER_START, end=WINTER_END, servers_text="4")
    service = MaintenanceService(af_bot.ctx)
    window = af_bot.run(service.submit(DraftKind.SCHEDULE, form, user_id="U123", channel_id="C123")).record
    assert af_bot.run(service.server_offset()) == timedelta(hours=5)
    appfirst.shift = timedelta(hours=5, minutes=7)  # no time zone does that: reported, not learned
    view = open_modal(af_bot, slack, text=f"edit {window.id}")
    new_end = window.end + timedelta(hours=1)
    af_bot.submit(view, af_values(reason="Patch", servers="4", start=window.start, end=new_end))
    answer = str(wait_answer(slack)["blocks"])
    assert "AppFirst stored the window as" in answer and "as you entered" in answer
    assert date_token(new_end + timedelta(minutes=7)) in answer and date_token(new_end) in answer
    stored = slack.wait_for(lambda: [w for w in windows(af_bot) if w.end == new_end + timedelta(minutes=7)])[0]
    assert stored.start == window.start + timedelta(minutes=7)
    assert len(writes(appfirst, "PUT")) == 1  # nothing learned, so nothing sent again
    assert af_bot.run(service.server_offset()) == timedelta(hours=5)


def test_edit_keeps_a_start_that_has_already_passed(af_bot, slack, appfirst, clock):
    appfirst.shift = timedelta(0)  # the first write would land 5 h later, and its start would not have passed
    form = ScheduleForm(title="Running", start=T0 + timedelta(minutes=5), end=T0 + timedelta(hours=2), servers_text="1")
    window = af_bot.run(MaintenanceService(af_bot.ctx).submit(DraftKind.SCHEDULE, form, user_id="U123", channel_id="C123")).record
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
    window = af_bot.run(MaintenanceService(af_bot.ctx).submit(DraftKind.SCHEDULE, form, user_id="U123", channel_id="C123")).record
    appfirst.windows.clear()
    view = open_modal(af_bot, slack, text=f"cancel {window.id}")
    af_bot.submit(view, {})
    assert "Cancelled maintenance" in wait_answer(slack)["text"]


# --- failures -------------------------------------------------------------------------------


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


def test_edit_of_unknown_or_finished_windows(af_bot, slack, appfirst, clock):
    appfirst.shift = timedelta(0)  # the window must have ended an hour later
    assert "I don't know a maintenance window `#9`" in said(af_bot, slack, "edit #9", command="/maintenance")
    form = ScheduleForm(title="Short", start=T0 + timedelta(minutes=1), end=T0 + timedelta(minutes=10), servers_text="1")
    window = af_bot.run(MaintenanceService(af_bot.ctx).submit(DraftKind.SCHEDULE, form, user_id="U123", channel_id="C123")).record
    clock.advance(hours=1)
    assert "has already ended" in said(af_bot, slack, f"edit {window.id}", command="/maintenance")


def _break(appfirst, failure):
    if failure == "401":
        appfirst.api_key = "rotated"
    elif failure == "timeout":
        appfirst.latency = PAST_IMPATIENT
    elif failure == "malformed":
        appfirst.malformed = True
    else:
        appfirst.fail_times(1, status=int(failure))


@pytest.mark.upstream_times_out
@pytest.mark.parametrize("failure", ["400", "401", "500", "timeout", "malformed"])
def test_edit_failures_keep_the_window_and_what_was_typed(af_bot, slack, appfirst, failure):
    form = ScheduleForm(title="Patch", start=WINTER_START, end=WINTER_END, servers_text="4")
    window = af_bot.run(MaintenanceService(af_bot.ctx).submit(DraftKind.SCHEDULE, form, user_id="U123", channel_id="C123")).record
    view = open_modal(af_bot, slack, text=f"edit {window.id}")
    _break(appfirst, failure)
    af_bot.submit(view, af_values(reason="Patch v2", servers="4, 5"))
    text = str(wait_answer(slack)["blocks"])
    assert "Patch v2" in text and "4, 5" in text  # what they typed, given back
    assert (DraftAction.RETRY in text) is (failure != "400")
    stored = windows(af_bot)[0]
    assert stored.title == "Patch" and stored.servers == [4] and stored.end == window.end
    assert slack.thread(CHANNEL, window.message_ts) == []
    appfirst.latency = 0


@pytest.mark.upstream_times_out
@pytest.mark.parametrize("failure", ["401", "500", "timeout"])
def test_cancel_failures_leave_the_window_scheduled(af_bot, slack, appfirst, failure):
    form = ScheduleForm(title="Keep me", start=WINTER_START, end=WINTER_END, servers_text="1")
    window = af_bot.run(MaintenanceService(af_bot.ctx).submit(DraftKind.SCHEDULE, form, user_id="U123", channel_id="C123")).record
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
    assert DraftAction.CHECK in str(wait_answer(slack)["blocks"])  # a 504: outcome unknown
    # The request had reached AppFirst before the gateway gave up on the reply.
    appfirst.add_window(WINTER_START, WINTER_END, reason="Kernel updates", servers=[1, 2])
    [draft] = drafts(af_bot)
    af_bot.click(DraftAction.CHECK, str(draft.id))
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
