"""Recurring maintenance through the real stack, on both databases and both backends: a
weekly series scheduled from the form keeps its local time across a daylight-saving change,
occurrences are created ahead of time as the horizon moves (each once, also with two
replicas rolling at once, and after a replica died mid-create), and "cancel this and the
following" deletes upstream only those."""

from __future__ import annotations

import concurrent.futures
import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.backends.statuspage import StatusPageMaintenance
from bot.services.maintenance_forms import ScheduleForm
from bot.services.recurrence import Repeat
from handlers.maintenance.ids import Action, Block, Scope
from handlers.maintenance.views import cancel_modal, schedule_modal
from scheduler.series import roll_series
from store import series as series_store
from store.models import MaintenanceWindow, SeriesOccurrence
from store.states import OccurrenceState, WindowState
from tests.support.harness import BotUnderTest, FakeClock, chose, chose_many, picked_time, typed
from tests.support.maintenance import list_answer, open_modal, schedule_values, wait_answer, windows
from tests.support.process import died_holding
from tests.support.slack_limits import check_modal

pytestmark = pytest.mark.both_databases

BERLIN = ZoneInfo("Europe/Berlin")
# Injected clock: a Tuesday in March 2027, three weeks before Berlin moves to summer time.
NOW = datetime(2027, 3, 9, 12, 0, tzinfo=UTC)
FIRST_START = datetime(2027, 3, 16, 2, 0, tzinfo=BERLIN)  # next Tuesday 02:00 in Berlin


def series_values(
    backend: str, *, until: str | None = None, times: str | None = None, zone: str | None = "Europe/Berlin"
) -> dict:
    values = schedule_values(
        "Kernel patching",
        description=None if backend == "appfirst" else "Routine patching",
        start=FIRST_START,
        end=FIRST_START + timedelta(hours=2),
        servers="1, 2" if backend == "appfirst" else None,
    )
    values[Block.REPEAT] = {Action.REPEAT: chose(Repeat.WEEKLY)}
    values[Block.WEEKDAYS] = {Action.WEEKDAYS: chose_many([])}
    if until is not None:
        values[Block.UNTIL] = {Action.UNTIL: {"type": "datepicker", "selected_date": until}}
    if times is not None:
        values[Block.TIMES] = {Action.TIMES: typed(times)}
    if zone is not None:
        values[Block.ZONE] = {Action.ZONE: typed(zone)}
    return values


@pytest.fixture(params=["statuspage", "appfirst"])
def backend_settings(request, settings, appfirst_settings, appfirst):
    if request.param == "appfirst":
        appfirst.shift = timedelta(0)  # the shift has its own tests; here the local times are the point
        return request.param, appfirst_settings
    return request.param, settings


def local_starts(rows) -> list[str]:
    return [w.start.astimezone(BERLIN).strftime("%a %d %b %H:%M") for w in rows]


def test_a_weekly_series_keeps_its_local_time_across_daylight_saving(backend_settings, slack, database_url):
    backend, settings = backend_settings
    clock = FakeClock(NOW)
    with BotUnderTest(settings, clock=clock) as bot:
        view = open_modal(bot, slack)
        assert {b.get("block_id") for b in view["blocks"]} >= {Block.REPEAT, Block.WEEKDAYS, Block.UNTIL, Block.TIMES, Block.ZONE}
        bot.submit(view, series_values(backend, times="5"))
        answer = wait_answer(slack)
        assert "is scheduled" in answer["text"], answer
        # Within the 7-day horizon only the first occurrence exists.
        assert local_starts(windows(bot)) == ["Tue 16 Mar 02:00"]
        # A week later the horizon holds the second one; after the change to summer time
        # (28 March) the series is still at 02:00 in Berlin, an hour earlier in UTC.
        for days in (7, 14, 21, 28):
            clock.set(NOW + timedelta(days=days))
            bot.run(roll_series(bot.ctx))
        rows = windows(bot)
        assert local_starts(rows) == [
            "Tue 16 Mar 02:00",
            "Tue 23 Mar 02:00",
            "Tue 30 Mar 02:00",
            "Tue 06 Apr 02:00",
            "Tue 13 Apr 02:00",
        ]
        assert [w.start.hour for w in rows] == [1, 1, 0, 0, 0]
        assert [w.series_index for w in rows] == [0, 1, 2, 3, 4]
        assert len({w.series_id for w in rows}) == 1
        # Five times, as asked: the roll makes no sixth.
        clock.set(NOW + timedelta(days=60))
        assert bot.run(roll_series(bot.ctx)) == 0
        # Each occurrence is a normal window: announced in the channel.
        announced = [m for m in slack.messages(settings.sitrep_channel) if not m.get("thread_ts")]
        assert len(announced) == 5


def test_the_persons_own_time_zone_is_the_default(settings, slack, database_url):
    slack.set_user("U123", tz="America/New_York")
    clock = FakeClock(NOW)
    with BotUnderTest(settings, clock=clock) as bot:
        view = open_modal(bot, slack)
        bot.submit(view, series_values("statuspage", times="2", zone=None))
        wait_answer(slack)
        [series] = bot.run(_all_series(bot))
        assert series.zone == "America/New_York" and series.at_time == FIRST_START.astimezone(
            ZoneInfo("America/New_York")
        ).strftime("%H:%M")


def test_series_form_problems_come_back_inside_the_modal(settings, slack, database_url):
    clock = FakeClock(NOW)
    with BotUnderTest(settings, clock=clock) as bot:
        view = open_modal(bot, slack)
        response = bot.submit(view, series_values("statuspage", zone="Mars/Olympus"))
        errors = response.json()["errors"]
        assert "time zone" in errors[Block.ZONE] and "ends" in errors[Block.UNTIL]
        response = bot.submit(view, series_values("statuspage", times="1"))
        assert "2 to 1000" in response.json()["errors"][Block.TIMES]
        assert windows(bot) == []


def test_two_replicas_rolling_at_once_create_each_occurrence_once(settings, slack, statuspage, database_url):
    clock = FakeClock(NOW)
    settings = settings.model_copy(update={"sitrep_announce_horizon": 21})
    with BotUnderTest(settings, clock=clock) as one, BotUnderTest(settings, clock=clock) as two:
        view = open_modal(one, slack)
        one.submit(view, series_values("statuspage", times="6"))
        wait_answer(slack)
        clock.set(NOW + timedelta(days=21))
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            made = list(pool.map(lambda bot: bot.run(roll_series(bot.ctx)), (one, two)))
        # The submission made occurrences 0–2 (21 days ahead); three weeks on, 3–5 entered the
        # horizon: between them the two replicas made each once.
        assert sum(made) == 3
        creates = [r for r in statuspage.requests if r.method == "POST" and r.path.endswith("/Incident")]
        assert len(creates) == 6
        # Each once; which replica stored which first is theirs to race (ids in store order).
        assert sorted(w.series_index for w in windows(one)) == [0, 1, 2, 3, 4, 5]


def test_a_claim_left_by_a_dead_replica_is_found_before_anything_is_created_again(
    appfirst_settings, appfirst, slack, database_url
):
    appfirst.shift = timedelta(0)
    clock = FakeClock(NOW)
    with BotUnderTest(appfirst_settings, clock=clock) as bot:
        view = open_modal(bot, slack)
        bot.submit(view, series_values("appfirst", times="3"))
        wait_answer(slack)
        [series] = bot.run(_all_series(bot))

        # A replica claimed occurrence 1, created it upstream and died before storing it.
        second = FIRST_START + timedelta(days=7)
        appfirst.add_window(
            reason="Kernel patching",
            start=second.astimezone(UTC),
            end=(second + timedelta(hours=2)).astimezone(UTC),
            servers=[1, 2],
        )

        async def dead_claim() -> None:
            async with bot.ctx.db.session() as session, session.begin():
                session.add(died_holding(SeriesOccurrence(series_id=series.id, index=1, state=OccurrenceState.CREATING)))

        bot.run(dead_claim())
        posts_before = len([r for r in appfirst.requests if r.method == "POST"])
        clock.set(NOW + timedelta(days=7))
        bot.run(roll_series(bot.ctx))
        assert len([r for r in appfirst.requests if r.method == "POST"]) == posts_before  # found, not made again
        rows = windows(bot)
        assert [w.series_index for w in rows] == [0, 1]
        assert rows[1].created_by == "U123"


def test_cancel_this_and_the_following_deletes_upstream_only_those(appfirst_settings, appfirst, slack, database_url):
    appfirst.shift = timedelta(0)
    clock = FakeClock(NOW)
    with BotUnderTest(appfirst_settings.model_copy(update={"sitrep_announce_horizon": 30}), clock=clock) as bot:
        view = open_modal(bot, slack)
        bot.submit(view, series_values("appfirst", times="4"))
        wait_answer(slack)
        rows = windows(bot)
        assert [w.series_index for w in rows] == [0, 1, 2, 3]
        cancel = open_modal(bot, slack, text=f"cancel {rows[1].id}")
        assert any(b.get("block_id") == Block.SCOPE for b in cancel["blocks"])
        bot.submit(cancel, {Block.SCOPE: {Action.SCOPE: chose(Scope.FOLLOWING)}})
        answer = wait_answer(slack, 2)
        assert "Also cancelled the ones after it" in json.dumps(answer)
        deleted = {r.path.rstrip("/").rsplit("/", 1)[-1] for r in appfirst.requests if r.method == "DELETE"}
        assert deleted == {rows[1].upstream_id, rows[2].upstream_id, rows[3].upstream_id}
        states = [w.state for w in windows(bot)]
        assert states == [WindowState.SCHEDULED, WindowState.CANCELLED, WindowState.CANCELLED, WindowState.CANCELLED]
        # The series makes no more, however far the horizon moves.
        clock.set(NOW + timedelta(days=60))
        assert bot.run(roll_series(bot.ctx)) == 0


async def _all_series_query(bot):
    async with bot.ctx.db.session() as session:
        return await series_store.series_on(session, bot.ctx.maintenance.name)


def _all_series(bot):
    return _all_series_query(bot)


def test_the_announcement_of_an_occurrence_names_its_series_and_the_next_one(settings, slack, database_url):
    clock = FakeClock(NOW)
    with BotUnderTest(settings.model_copy(update={"sitrep_announce_horizon": 30}), clock=clock) as bot:
        view = open_modal(bot, slack)
        bot.submit(view, series_values("statuspage", times="3"))
        wait_answer(slack)
        rows = windows(bot)
        assert [w.series_next for w in rows] == [rows[1].start, rows[2].start, None]
        parents = [m for m in slack.messages(settings.sitrep_channel) if not m.get("thread_ts")]
        first = json.dumps(parents[0]["blocks"], ensure_ascii=False)
        assert "Repeats every Tuesday at 02:00 Europe/Berlin, 3 times" in first
        assert f"next one <!date^{int(rows[1].start.timestamp())}^" in first
        assert "the last one" in json.dumps(parents[2]["blocks"], ensure_ascii=False)
        # "/maintenance list" shows the series once, with its later dates.
        text = list_answer(bot, slack)
        assert text.count("Kernel patching") == 1 and "repeats every Tuesday" in text and "then" in text


def test_the_series_fields_and_the_cancel_scope_fit_slacks_limits(database_url):
    form = ScheduleForm(title="x", repeat=Repeat.WEEKLY, weekdays=(0, 6), times_text="5", zone="Europe/Berlin")
    check_modal(schedule_modal(form, StatusPageMaintenance, (), channel_id="C1"))
    window = MaintenanceWindow(
        id=3,
        backend="statuspage",
        upstream_id="u",
        title="t",
        start=NOW,
        end=NOW + timedelta(hours=1),
        series_id=1,
        series_index=2,
    )
    view = cancel_modal(window, channel_id="C1")
    check_modal(view)
    assert any(b.get("block_id") == Block.SCOPE for b in view["blocks"])


def test_edit_this_and_the_following_changes_only_those_and_the_ones_to_come(appfirst_settings, appfirst, slack, database_url):
    appfirst.shift = timedelta(0)
    clock = FakeClock(NOW)
    with BotUnderTest(appfirst_settings.model_copy(update={"sitrep_announce_horizon": 21}), clock=clock) as bot:
        view = open_modal(bot, slack)
        bot.submit(view, series_values("appfirst", times="4"))
        wait_answer(slack)
        rows = windows(bot)
        assert [w.series_index for w in rows] == [0, 1, 2]  # the fourth is past the horizon
        edit = open_modal(bot, slack, text=f"edit {rows[1].id}")
        assert any(b.get("block_id") == Block.SCOPE for b in edit["blocks"])
        moved = series_values("appfirst")
        moved[Block.TITLE] = {Action.TITLE: typed("Kernel and firmware")}
        start = rows[1].start.astimezone(BERLIN).replace(hour=3)
        moved[Block.START] = {Action.START: picked_time(start)}
        moved[Block.END] = {Action.END: picked_time(start + timedelta(hours=1))}
        moved[Block.SCOPE] = {Action.SCOPE: chose(Scope.FOLLOWING)}
        for block in (Block.REPEAT, Block.WEEKDAYS, Block.TIMES, Block.ZONE):
            moved.pop(block, None)
        bot.submit(edit, moved)
        answer = wait_answer(slack, 2)
        assert "Also changed the ones after it" in json.dumps(answer), answer
        puts = {r.path.rstrip("/").rsplit("/", 1)[-1] for r in appfirst.requests if r.method == "PUT"}
        assert puts == {rows[1].upstream_id, rows[2].upstream_id}
        after = windows(bot)
        assert [w.title for w in after] == ["Kernel patching", "Kernel and firmware", "Kernel and firmware"]
        assert local_starts(after) == ["Tue 16 Mar 02:00", "Tue 23 Mar 03:00", "Tue 30 Mar 03:00"]
        # The occurrence not created yet follows the new template.
        clock.set(NOW + timedelta(days=14))
        bot.run(roll_series(bot.ctx))
        last = windows(bot)[-1]
        assert (last.series_index, last.title, local_starts([last])) == (3, "Kernel and firmware", ["Tue 06 Apr 03:00"])
        assert last.end - last.start == timedelta(hours=1)


def test_appfirsts_time_shift_is_compensated_for_the_occurrences_as_for_any_window(
    appfirst_settings, appfirst, slack, database_url
):
    """AppFirst stores times shifted (seed 003): the person's first window teaches sitrep the
    offset (and they are told, as for any window); every occurrence after it is sent moved back
    so AppFirst keeps the series' local time."""
    assert appfirst.shift != timedelta(0)
    clock = FakeClock(NOW)
    with BotUnderTest(appfirst_settings.model_copy(update={"sitrep_announce_horizon": 21}), clock=clock) as bot:
        view = open_modal(bot, slack)
        bot.submit(view, series_values("appfirst", times="3"))
        answer = wait_answer(slack)
        assert "as you entered" in json.dumps(answer)  # the first one: stored shifted, the person told
        rows = windows(bot)
        assert [w.series_index for w in rows] == [0, 1, 2]
        assert local_starts(rows[1:]) == ["Tue 23 Mar 02:00", "Tue 30 Mar 02:00"]
