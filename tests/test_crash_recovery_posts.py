"""What a crash between storing and telling must not lose (issue #10): `sitrep run` as a real
process killed with SIGKILL after the status page made the incident and sitrep stored it, but
before its announcement reached Slack; restarted, the bot announces it once and tells the
person it was declared (not "outcome unknown"). And a Submit pressed again because the first
press died with its process before Slack had the ack is acted on, not swallowed as a replay."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta

import pytest

from bot.inbound import replays
from bot.inbound.replays import TAKEOVER_AFTER, submission_key
from bot.services.recovery import RECOVERED_NOTE
from handlers.maintenance.ids import Action as WindowAction
from handlers.maintenance.ids import Block as WindowBlock
from store.models import SeenSubmission
from tests.support.fakes.signing import interaction_body
from tests.support.fakes.slack_api import WAIT_BOUND
from tests.support.harness import CHANNEL, free_port, last_view, submission_payload, typed
from tests.support.incidents import declare_values, resolve_values
from tests.support.maintenance import schedule_values
from tests.support.process import command_modal, kill, signed_post, start_sitrep, stop, wait_healthy, wait_until
from tests.test_kill_mid_declare import HEARTBEAT

HELD = 30  # Slack's Retry-After on the announcement: the kill comes while it is held


@pytest.fixture
def bot_env(full_env) -> dict[str, str]:
    return full_env | {"PORT": str(free_port()), "SITREP_HEARTBEAT": str(HEARTBEAT)}


def stored(tmp_path, sql: str) -> list[tuple]:
    with sqlite3.connect(tmp_path / "sitrep.db") as db:
        return db.execute(sql).fetchall()


def after_two_more_beats(tmp_path) -> None:
    """Until the running instance has beaten twice more: a recovery pass follows each beat
    in the same loop, so a whole pass has run between the two. What a pass would post again
    has been posted by then: the later event that proves it did not (never a sleep)."""
    beats = []

    def beaten() -> bool:
        [(at,)] = stored(tmp_path, "SELECT max(heartbeat_at) FROM instances")
        if at is not None and (not beats or at != beats[-1]):
            beats.append(at)
        return len(beats) >= 3

    wait_until(beaten, 30, "two more heartbeats")


def announcements(slack, title: str) -> list[dict]:
    return [m for m in slack.messages(CHANNEL) if not m.get("thread_ts") and title in (m.get("text") or "")]


def test_kill_9_between_storing_and_announcing_then_restart_announces_once_and_tells(bot_env, tmp_path, slack, statuspage):
    base = f"http://127.0.0.1:{bot_env['PORT']}"
    first = start_sitrep(bot_env, tmp_path)
    try:
        wait_healthy(base, first)
        view = command_modal(base, slack, "/incident", "declare DB down")
        # Slack rate-limits the announcement: the outbox holds it for Retry-After seconds.
        slack.fail_next("chat.postMessage", status=429, retry_after=HELD)
        assert signed_post(base, interaction_body(submission_payload(view, declare_values()))).status_code == 200
        wait_until(lambda: slack.calls_to("chat.postMessage"), WAIT_BOUND, "the announcement to be refused with 429")
        kill(first)  # SIGKILL while the announcement waits
    finally:
        kill(first)
    [(number, claimed_by, ts, draft_id)] = stored(tmp_path, "SELECT id, announce_claimed_by, message_ts, draft_id FROM incidents")
    assert claimed_by and ts is None and draft_id  # stored, claimed by the dead process, never posted
    assert announcements(slack, "DB down") == [] and slack.ephemerals() == []

    second = start_sitrep(bot_env, tmp_path)
    try:
        wait_healthy(base, second)
        told = wait_until(lambda: [m for m in slack.ephemerals() if m["user"] == "U123"], WAIT_BOUND, "the person to be told")
        [posted] = announcements(slack, "DB down")
        assert (posted.get("metadata") or {}).get("event_type") == "sitrep_incident_announcement"
        text = str(told[0]["blocks"])
        assert RECOVERED_NOTE.split(";")[0] in text and "Outcome unknown" not in text
        assert f"#{number}" in text or str(number) in told[0]["text"]
        wait_until(lambda: stored(tmp_path, "SELECT state FROM drafts") == [("done",)], WAIT_BOUND, "the draft to be done")
        [(ts,)] = stored(tmp_path, "SELECT message_ts FROM incidents")
        assert ts == posted["ts"]
    finally:
        output = stop(second)
    assert second.returncode == 0, output
    assert "Traceback" not in output
    assert len(statuspage.incidents) == 1 and len(announcements(slack, "DB down")) == 1
    assert len([m for m in slack.ephemerals() if m["user"] == "U123"]) == 1


def test_kill_9_while_the_announcement_is_in_flight_then_restart_finds_it_and_does_not_post_again(
    bot_env, tmp_path, slack, statuspage
):
    base = f"http://127.0.0.1:{bot_env['PORT']}"
    held = threading.Event()  # Slack takes the post once its sender is dead: it never hears where it is
    first = start_sitrep(bot_env, tmp_path)
    try:
        wait_healthy(base, first)
        view = command_modal(base, slack, "/incident", "declare DB down")
        slack.delay_next("chat.postMessage", held)
        assert signed_post(base, interaction_body(submission_payload(view, declare_values()))).status_code == 200
        wait_until(lambda: slack.held == 1, WAIT_BOUND, "the announcement to reach Slack")
        kill(first)  # the post is on its way
    finally:
        kill(first)
        held.set()
    slack.wait_for(lambda: announcements(slack, "DB down"))
    [(ts,)] = stored(tmp_path, "SELECT message_ts FROM incidents")
    assert ts is None

    second = start_sitrep(bot_env, tmp_path)
    try:
        wait_healthy(base, second)
        wait_until(lambda: [m for m in slack.ephemerals() if m["user"] == "U123"], WAIT_BOUND, "the person to be told")
        [posted] = announcements(slack, "DB down")  # the one the dead process sent, found, not posted again
        [(ts,)] = stored(tmp_path, "SELECT message_ts FROM incidents")
        assert ts == posted["ts"]
    finally:
        output = stop(second)
    assert second.returncode == 0, output
    assert len(announcements(slack, "DB down")) == 1


def test_a_submit_pressed_again_after_the_first_press_died_unanswered_is_acted_on(bot, slack, statuspage, monkeypatch):
    monkeypatch.setattr(replays, "RECORD_TIMEOUT", WAIT_BOUND)  # the takeover's reads must be answered, however slow the machine
    bot.command("declare DB down")
    view = slack.wait_for(lambda: slack.calls_to("views.open") and last_view(slack))
    payload = submission_payload(view, declare_values())
    # What a process killed after recording the key, before its ack, leaves: the key, no draft.
    key = submission_key(payload)

    async def left_by_the_dead() -> None:
        async with bot.ctx.db.session() as session, session.begin():
            seen = bot.ctx.clock() - timedelta(seconds=TAKEOVER_AFTER + 1)
            session.add(SeenSubmission(key=key, seen_at=seen))

    bot.run(left_by_the_dead())
    answer = bot.post(interaction_body(payload))  # Slack showed an error; the person presses Submit again
    assert answer.status_code == 200
    slack.wait_for(lambda: announcements(slack, "DB down"))
    told = slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))
    assert "DB down" in str(told[0]) and len(statuspage.incidents) == 1

    again = bot.post(interaction_body(payload))  # a true replay now: its draft exists
    assert again.status_code == 200 and again.content in (b"", b"null")
    bot.settle()  # anything the replay started has reached the fakes by now
    assert len(statuspage.incidents) == 1 and len(announcements(slack, "DB down")) == 1


def test_kill_9_between_resolving_and_its_notice_then_restart_posts_the_notice_once(bot_env, tmp_path, slack, statuspage):
    base = f"http://127.0.0.1:{bot_env['PORT']}"
    first = start_sitrep(bot_env, tmp_path)
    try:
        wait_healthy(base, first)
        view = command_modal(base, slack, "/incident", "declare DB down")
        assert signed_post(base, interaction_body(submission_payload(view, declare_values()))).status_code == 200
        wait_until(lambda: slack.ephemerals(), WAIT_BOUND, "the declarer's answer")
        [(number, parent)] = stored(tmp_path, "SELECT id, message_ts FROM incidents")
        slack.forget_calls()
        view = command_modal(base, slack, "/incident", f"resolve {number}")
        slack.fail_next("chat.postMessage", status=429, retry_after=HELD)  # the notice is held…
        assert signed_post(base, interaction_body(submission_payload(view, resolve_values(number)))).status_code == 200
        wait_until(lambda: slack.calls_to("chat.postMessage"), WAIT_BOUND, "the notice to be refused with 429")
        kill(first)  # …and the process dies with it
    finally:
        kill(first)
    assert stored(tmp_path, "SELECT resolved_by IS NOT NULL FROM incidents") == [(1,)]
    assert stored(tmp_path, "SELECT state FROM reminders WHERE kind = 'resolved'") == [("claimed",)]
    assert slack.thread(CHANNEL, parent) == []

    second = start_sitrep(bot_env, tmp_path)
    try:
        wait_healthy(base, second)
        [notice] = wait_until(lambda: _posts(slack.thread(CHANNEL, parent)), WAIT_BOUND, "the resolve notice")
        assert "Index rebuilt" in str(notice) and notice.get("reply_broadcast") in (True, "true", None)
        assert (notice.get("metadata") or {}).get("event_type") == "sitrep_notice"
        wait_until(
            lambda: stored(tmp_path, "SELECT message_ts FROM incident_events WHERE kind = 'resolved'") == [(notice["ts"],)],
            WAIT_BOUND,
            "the notice to be recorded",
        )
        after_two_more_beats(tmp_path)  # a second pass would have posted it again by then
    finally:
        output = stop(second)
    assert second.returncode == 0, output
    assert len(_posts(slack.thread(CHANNEL, parent))) == 1
    assert stored(tmp_path, "SELECT state FROM reminders WHERE kind = 'resolved'") == [("posted",)]
    # The postmortem draft's share, written with the resolution, was left too: shared once.
    [draft] = slack.shared_files(CHANNEL)
    assert draft["thread_ts"] == parent and draft["name"] == f"incident-{number}-postmortem.md"
    assert stored(tmp_path, "SELECT state FROM reminders WHERE kind = 'postmortem'") == [("posted",)]


def _posts(thread: list[dict]) -> list[dict]:
    """A thread's messages, without the ones sharing a file (the postmortem draft)."""
    return [m for m in thread if not m.get("files")]


def test_kill_9_between_cancelling_and_its_notice_then_restart_posts_the_notice_once(bot_env, tmp_path, slack, statuspage):
    base = f"http://127.0.0.1:{bot_env['PORT']}"
    start = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(hours=2)
    first = start_sitrep(bot_env, tmp_path)
    try:
        wait_healthy(base, first)
        view = command_modal(base, slack, "/maintenance", "schedule DB upgrade")
        values = schedule_values(start=start, end=start + timedelta(hours=1))
        assert signed_post(base, interaction_body(submission_payload(view, values))).status_code == 200
        wait_until(lambda: slack.ephemerals(), WAIT_BOUND, "the answer to the person")
        [(number, parent)] = stored(tmp_path, "SELECT id, message_ts FROM maintenance_windows")
        assert parent
        slack.forget_calls()
        view = command_modal(base, slack, "/maintenance", f"cancel {number}")
        slack.fail_next("chat.postMessage", status=429, retry_after=HELD)  # the notice is held…
        note = {WindowBlock.NOTE: {WindowAction.NOTE: typed("Postponed")}}
        assert signed_post(base, interaction_body(submission_payload(view, note))).status_code == 200
        wait_until(lambda: slack.calls_to("chat.postMessage"), WAIT_BOUND, "the notice to be refused with 429")
        kill(first)  # …and the process dies with it
    finally:
        kill(first)
    assert stored(tmp_path, "SELECT state FROM maintenance_windows") == [("cancelled",)]
    assert stored(tmp_path, "SELECT state FROM reminders WHERE kind = 'cancelled'") == [("claimed",)]
    assert slack.thread(CHANNEL, parent) == []

    second = start_sitrep(bot_env, tmp_path)
    try:
        wait_healthy(base, second)
        [notice] = wait_until(lambda: slack.thread(CHANNEL, parent), WAIT_BOUND, "the cancel notice")
        assert "Cancelled" in notice["text"] and (notice.get("metadata") or {}).get("event_type") == "sitrep_notice"
        wait_until(
            lambda: stored(tmp_path, "SELECT state FROM reminders WHERE kind = 'cancelled'") == [("posted",)],
            WAIT_BOUND,
            "the notice to be recorded",
        )
        after_two_more_beats(tmp_path)  # a second pass would have posted it again by then
    finally:
        output = stop(second)
    assert second.returncode == 0, output
    assert len(slack.thread(CHANNEL, parent)) == 1
