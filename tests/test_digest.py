"""The weekly digest: when it is due (a wall-clock time that stays put across daylight-saving
changes), the figures of a fixture week read from the store, and `/incident digest` answering
them privately through the real stack (signed command → ephemeral, checked by the fake Slack)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta

import pytest
from sqlalchemy import select

from bot.messages.digest import MAX_LINES, weekly_digest
from bot.services.digest import due_after, due_at_or_before, week_before
from bot.settings import DigestSchedule, SettingsError, load_settings
from scheduler.reminders import run_due_reminders
from store.digest import WindowOutcome, summarize
from store.models import Incident, MaintenanceWindow, Reminder
from store.states import ReminderKind, ReminderState, WindowState
from tests.support.harness import CHANNEL, BotUnderTest, FakeClock, at_once
from tests.support.slack_limits import check_message

pytestmark = pytest.mark.both_databases

BERLIN_MONDAY_9 = DigestSchedule(weekday=0, at=time(9, 0), zone="Europe/Berlin")
# A week that is not today's: the digest is computed on the injected clock only.
WEEK_END = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # Monday 09:00 in Berlin (CET)
WEEK_START = WEEK_END - timedelta(days=7)


# --- when a digest is due ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "due", "hours"),
    [
        # Spring forward (2027-03-28): the week before Monday 29 March has 167 hours.
        (datetime(2027, 3, 29, 12, 0, tzinfo=UTC), datetime(2027, 3, 29, 7, 0, tzinfo=UTC), 167),
        # Fall back (2027-10-31): the week before Monday 1 November has 169 hours.
        (datetime(2027, 11, 1, 8, 30, tzinfo=UTC), datetime(2027, 11, 1, 8, 0, tzinfo=UTC), 169),
        # An ordinary winter week, asked a minute before its due time: last week's.
        (datetime(2026, 11, 23, 7, 59, tzinfo=UTC), datetime(2026, 11, 16, 8, 0, tzinfo=UTC), 168),
    ],
)
def test_the_digest_keeps_its_local_time_across_daylight_saving(database_url, now, due, hours):
    assert due_at_or_before(BERLIN_MONDAY_9, now) == due
    start, end = week_before(BERLIN_MONDAY_9, due)
    assert end == due and (end - start) == timedelta(hours=hours)
    assert start.astimezone(BERLIN_MONDAY_9.tz).time() == time(9, 0)
    nxt = due_after(BERLIN_MONDAY_9, now)
    assert nxt > now and nxt.astimezone(BERLIN_MONDAY_9.tz).time() == time(9, 0)
    assert nxt.astimezone(BERLIN_MONDAY_9.tz).weekday() == 0


def test_sitrep_digest_is_read_once_and_a_bad_one_names_the_variable(database_url, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    base = {"slack_bot_token": "xoxb-1", "slack_signing_secret": "s", "sitrep_channel": "C0123"}
    assert load_settings(**base).sitrep_digest is None
    assert load_settings(**base, sitrep_digest="Monday 9:30").sitrep_digest == DigestSchedule(0, time(9, 30), "UTC")
    assert str(load_settings(**base, sitrep_digest="fri 17:00 America/New_York").sitrep_digest) == "fri 17:00 America/New_York"
    for bad in ("someday 09:00", "mon 25:00", "mon 09:00 Mars/Olympus", "09:00"):
        with pytest.raises(SettingsError) as caught:
            load_settings(**base, sitrep_digest=bad)
        assert caught.value.variable == "SITREP_DIGEST" and "mon 09:00 Europe/Berlin" in str(caught.value)


# --- a fixture week --------------------------------------------------------------------------


def incident(n: int, impact: str, declared: timedelta, resolved: timedelta | None) -> Incident:
    """Incident #n, declared `declared` after the week's start, resolved `resolved` after that."""
    at = WEEK_START + declared
    return Incident(
        id=n,
        upstream_id=f"up-{n}",
        title=f"Incident {n} <b>",
        status="Investigating",
        impact=impact,
        channel_id="C0SITREP",
        permalink=f"https://example.slack.com/archives/C0SITREP/p{n}",
        declared_by="U1",
        declared_at=at,
        updated_at=at,
        resolved_at=None if resolved is None else at + resolved,
        resolved_by=None if resolved is None else "U2",
    )


def window(n: int, start: timedelta, hours: int, *, extended: int = 0, cancelled: timedelta | None = None) -> MaintenanceWindow:
    begin = WEEK_START + start
    planned = begin + timedelta(hours=hours)
    return MaintenanceWindow(
        id=n,
        backend="statuspage",
        upstream_id=f"w-{n}",
        title=f"Window {n}",
        start=begin,
        end=planned + timedelta(minutes=extended),
        planned_end=planned,
        state=WindowState.CANCELLED if cancelled is not None else WindowState.COMPLETED,
        cancelled_at=None if cancelled is None else WEEK_START + cancelled,
        channel_id="C0SITREP",
        message_ts=f"1700000000.00000{n}",
        created_at=WEEK_START,
        updated_at=WEEK_START,
    )


def fixture_week() -> tuple[list[Incident], list[MaintenanceWindow]]:
    day = timedelta(days=1)
    incidents = [
        incident(1, "Major Outage", day, timedelta(hours=2)),
        incident(2, "Partial Outage", 2 * day, timedelta(minutes=30)),
        incident(3, "Partial Outage", 3 * day, None),  # still open at the week's end
        incident(4, "Degraded Performance", -day, 3 * day),  # declared the week before
        incident(5, "Major Outage", -3 * day, day),  # over before the week began
        incident(6, "Major Outage", 8 * day, None),  # declared after the week
    ]
    windows = [
        window(1, day, 2),
        window(2, 2 * day, 2, extended=45),
        window(3, 4 * day, 2, cancelled=3 * day),
        window(4, 9 * day, 1),  # next week
        window(5, 16 * day, 1),  # the week after: not "coming"
    ]
    windows[3].state = WindowState.SCHEDULED
    windows[4].state = WindowState.SCHEDULED
    return incidents, windows


def test_the_figures_of_a_fixture_week(database_url):
    incidents, windows = fixture_week()
    digest = summarize(WEEK_START, WEEK_END, incidents, windows)
    assert [i.id for i in digest.declared] == [1, 2, 3]
    assert [i.id for i in digest.resolved] == [1, 2, 4]
    assert [i.id for i in digest.still_open] == [3]
    assert digest.by_impact == {"Partial Outage": 2, "Major Outage": 1}
    assert digest.resolve_median == timedelta(hours=2)
    assert digest.resolve_longest is not None and digest.resolve_longest.id == 4
    assert [(w.id, o) for w, o in digest.ran] == [
        (1, WindowOutcome.ON_TIME),
        (2, WindowOutcome.EXTENDED),
        (3, WindowOutcome.CANCELLED),
    ]
    assert [w.id for w in digest.coming] == [4]


def test_the_digest_message_fits_slack_and_escapes_titles(database_url):
    incidents, windows = fixture_week()
    text, blocks = weekly_digest(summarize(WEEK_START, WEEK_END, incidents, windows), late_since=WEEK_END)
    check_message(blocks, text)
    shown = json.dumps(blocks, ensure_ascii=False)
    assert "<b>" not in shown and "&lt;b&gt;" in shown
    assert "Posted late" in shown and "median 2h, longest 3d (*#4*)" in shown
    assert "1 on time, 1 extended, 1 cancelled" in shown


def test_a_storm_week_is_fitted_to_slacks_limits(database_url):
    storm = [incident(n, "Major Outage", timedelta(minutes=n), timedelta(minutes=5)) for n in range(1, 501)]
    storm = [i for i in storm if i.declared_at < WEEK_END]
    for i in storm:
        i.title = "x" * 500
    windows = [window(n, timedelta(minutes=n * 10), 1) for n in range(1, 201)]
    text, blocks = weekly_digest(summarize(WEEK_START, WEEK_END, storm, windows))
    check_message(blocks, text)
    assert f"…and {len(storm) - MAX_LINES} more." in json.dumps(blocks, ensure_ascii=False)


# --- /incident digest, through the real stack ---------------------------------------------


def test_incident_digest_answers_the_week_so_far_privately(settings, slack, database_url):
    clock = FakeClock(WEEK_END)
    with BotUnderTest(settings.model_copy(update={"sitrep_digest": BERLIN_MONDAY_9}), clock=clock) as bot:
        incidents, windows = fixture_week()

        async def store() -> None:
            async with bot.ctx.db.session() as session, session.begin():
                session.add_all(incidents + windows)

        bot.run(store())
        clock.set(WEEK_END + timedelta(days=2))  # Wednesday: the week so far began on Monday
        response = bot.command("digest")
        assert response.status_code == 200
        [answer] = slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))
        shown = json.dumps(answer["blocks"], ensure_ascii=False)
        # This week so far (Monday 09:00 → Wednesday): #6 declared on Tuesday, #3 still open.
        assert "This week so far" in shown
        assert "1 incident declared, 0 resolved, 2 still open." in shown
        assert "*#3*" in shown and "https://example.slack.com/archives/C0SITREP/p3" in shown
        # Window 4 starts as this week's view ends; Slack was asked for its thread's link
        # (the fake has no such message, so it is listed without one).
        assert "*Coming next week* · 1 window." in shown and "*#4* Window 4" in shown
        assert [c["message_ts"] for c in slack.calls_to("chat.getPermalink")] == [windows[3].message_ts]


# --- the weekly post: planned once, posted once, late when sitrep was down -----------------


def digest_rows(bot) -> list[tuple[datetime, str]]:
    async def read():
        async with bot.ctx.db.session() as session:
            rows = await session.scalars(select(Reminder).where(Reminder.kind == ReminderKind.DIGEST).order_by(Reminder.due_at))
            return [(r.due_at, r.state) for r in rows]

    return bot.run(read())


def posted_digests(slack) -> list[str]:
    return [
        json.dumps(m["blocks"], ensure_ascii=False)
        for m in slack.messages(CHANNEL)
        if not m.get("thread_ts") and "Weekly digest" in json.dumps(m.get("blocks"), ensure_ascii=False)
    ]


def store_fixture_week(bot) -> None:
    incidents, windows = fixture_week()

    async def store() -> None:
        async with bot.ctx.db.session() as session, session.begin():
            session.add_all(incidents + windows)

    bot.run(store())


def test_the_weekly_digest_is_posted_once_by_two_replicas_and_the_next_week_planned(settings, slack, database_url):
    clock = FakeClock(WEEK_END - timedelta(hours=1))
    digest_settings = settings.model_copy(update={"sitrep_digest": BERLIN_MONDAY_9})
    with BotUnderTest(digest_settings, clock=clock) as one, BotUnderTest(digest_settings, clock=clock) as two:
        assert digest_rows(one) == [(WEEK_END, ReminderState.PENDING)]  # both planned it: one row
        store_fixture_week(one)
        clock.set(WEEK_END)
        at_once(lambda: one.run(run_due_reminders(one.ctx)), lambda: two.run(run_due_reminders(two.ctx)))
        [digest] = posted_digests(slack)
        assert "3 incidents declared, 3 resolved, 1 still open." in digest and "Posted late" not in digest
        assert "1 on time, 1 extended, 1 cancelled" in digest
        assert digest_rows(one) == [(WEEK_END, ReminderState.POSTED), (WEEK_END + timedelta(days=7), ReminderState.PENDING)]
        assert one.run(run_due_reminders(one.ctx)) == 0 and two.run(run_due_reminders(two.ctx)) == 0
        assert len(posted_digests(slack)) == 1
    # A restart plans nothing twice.
    with BotUnderTest(digest_settings, clock=clock) as again:
        assert len(digest_rows(again)) == 2


def test_a_digest_due_while_sitrep_was_down_is_posted_late_and_says_so(settings, slack, database_url):
    clock = FakeClock(WEEK_END - timedelta(days=1))
    digest_settings = settings.model_copy(update={"sitrep_digest": BERLIN_MONDAY_9})
    with BotUnderTest(digest_settings, clock=clock) as bot:
        assert digest_rows(bot) == [(WEEK_END, ReminderState.PENDING)]
    clock.set(WEEK_END + timedelta(hours=3))  # down over the digest's time
    with BotUnderTest(digest_settings, clock=clock) as bot:
        bot.run(run_due_reminders(bot.ctx))
        [digest] = posted_digests(slack)
        assert "Posted late" in digest
        # Planned one ahead: the week after, not a second one for the week missed.
        assert [due for due, _ in digest_rows(bot)] == [WEEK_END, WEEK_END + timedelta(days=7)]


def test_no_digest_is_planned_without_sitrep_digest(settings, slack, database_url):
    with BotUnderTest(settings, clock=FakeClock(WEEK_END)) as bot:
        assert digest_rows(bot) == []
