"""A sick database is visible and loses nothing (#10, item 6): with the SQLite file locked by
another process or made read-only under the running bot, every Slack request is still answered
in time (while the database is still sick), and a submission the database cannot keep comes back to the person
with what they typed, never silence and never half-sent."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import event

from bot.context import ACK_BUDGET_SECONDS
from bot.errors import DatabaseBusy, NotStored
from bot.services import drafts as draft_flow
from handlers.errors import busy_answer, not_stored_answer
from handlers.ids import DraftAction
from handlers.incident.ids import Action as IncidentAction
from handlers.incident.ids import Callback
from handlers.payload import Interaction
from store import drafts as draft_store
from store.states import DraftKind
from tests.support.fakes.signing import command_body, interaction_body, new_trigger_id
from tests.support.fakes.slack_api import WAIT_BOUND
from tests.support.harness import BotUnderTest, FakeClock, free_port, last_view, said, submission_payload, texts
from tests.support.incidents import (
    declare,
    declare_values,
    drafts_in_store,
    incidents_in_store,
    open_declare_modal,
    open_modal,
    update_values,
)
from tests.support.maintenance import schedule_values
from tests.support.outage import committing_slowly, database_gone, locked, sqlite_path
from tests.support.process import command_modal, signed_post, start_sitrep, wait_healthy
from tests.support.slack_limits import check_message

# "In time" is proven without a stopwatch: every answer must arrive while the database is still
# sick. A locked file is held by another process until the block ends, and the bot's SQLite
# connections wait out a 30-second busy timeout, so a listener that waited on the database
# could answer only after the test's HTTP client (15 s) has given up. The bot's own bound on
# that wait is `ACK_BUDGET_SECONDS` (2 s of Slack's 3).
BUSY = "database is busy"
DESCRIPTION = "Checkout times out for EU customers since 09:12 & the retries pile up <@U999>"


@contextmanager
def read_only(settings):
    """The database file and its write-ahead log made unwritable under the running bot, as a
    file system remounted read-only does: the bot's open connections fail every write (chmod
    does not stop root, so the immutable attribute is used; `-shm` is left alone, as SQLite
    maps it into memory)."""
    files = [sqlite_path(settings), sqlite_path(settings) + "-wal"]
    for name in files:
        Path(name).touch(exist_ok=True)
    made = subprocess.run(["chattr", "+i", *files], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot make the database file read-only here (chattr: {made.stderr.strip()})")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *files], check=True)


SICKNESSES = {"locked": locked, "read-only": read_only}


@pytest.fixture
def bot(settings, caplog):
    """The bot with production's ack budget: here the database is held, and "busy" is the answer."""
    with BotUnderTest(settings, ack_budget=ACK_BUDGET_SECONDS) as running:
        yield running
    unexpected = [r.getMessage() for r in caplog.records if r.name == "handlers.errors" and r.levelname == "ERROR"]
    assert unexpected == [], unexpected


def ephemeral_texts(slack, user="U123") -> list[str]:
    return [str(e.get("blocks")) + e.get("text", "") for e in slack.calls_to("chat.postEphemeral") if e["user"] == user]


# --- commands are answered in time ------------------------------------------------------


@pytest.mark.parametrize("sickness", SICKNESSES)
def test_every_command_is_answered_within_slacks_deadline(bot, settings, slack, sickness):
    incident = declare(bot, slack)
    with SICKNESSES[sickness](settings):
        for command, text, answer in [
            ("/incident", "list", "open incident"),
            ("/incident", "update", "views.open"),
            ("/incident", f"update #{incident.id}", "views.open"),
            ("/incident", "resolve", "views.open"),
            ("/incident", "declare Disk full", "views.open"),
            ("/maintenance", "list", "chat.postEphemeral"),
            ("/maintenance", "schedule", "views.open"),
            ("/maintenance", "cancel #7", "I don't know a maintenance window"),
        ]:
            slack.forget_calls()
            if answer in ("views.open", "chat.postEphemeral"):
                response = bot.command(text, command=command)
                assert response.status_code == 200, (command, text, response.text)
                slack.wait_for(lambda a=answer: slack.calls_to(a))
            else:
                told = said(bot, slack, text, command=command)  # in the ack, or in the modal it opened
                assert answer in told, (command, text, told)


def test_when_reads_cannot_be_had_the_person_hears_the_database_is_busy(bot, settings, slack):
    """A write lock held for long exhausts the connection pool: every insert waits out SQLite's
    busy timeout on its own connection. Twenty forms submitted at once (each keeps its replay
    key and its draft before the ack: inserts) take the pool; twenty people then typing
    `/incident list` (which writes nothing) still get an answer in time, each either what they
    asked for or a plain "the database is busy"."""
    declare(bot, slack)
    view = open_declare_modal(bot, slack)
    with locked(settings), ThreadPoolExecutor(20) as pool:
        submitted = list(pool.map(lambda n: bot.submit({**view, "id": f"VSICK{n}"}, declare_values(title=f"T{n}")), range(20)))
        assert all(response.status_code == 200 for response in submitted)
        results = list(pool.map(lambda _: bot.command("list"), range(20)))  # all answered while locked
    answers = [response.text for response in results]
    assert all(response.status_code == 200 for response in results), answers
    assert all("open incident" in a or BUSY in a for a in answers), answers
    assert any(BUSY in a for a in answers), "the pool was never exhausted: the test proves nothing"
    assert "open incident" in bot.command("list").text  # and it recovers
    # Every form submitted is answered once the lock is gone (declared, or given back): the
    # test ends with nothing of its own still in flight.
    slack.wait_for(lambda: len(ephemeral_texts(slack)) >= 20, timeout=120)  # paced: one announcement a second


# --- submissions the database cannot keep come back ----------------------------------------


@pytest.mark.parametrize("sickness", SICKNESSES)
def test_a_declare_that_cannot_be_kept_comes_back_with_what_was_typed(bot, settings, slack, statuspage, sickness):
    view = open_declare_modal(bot, slack)
    slack.forget_calls()
    with SICKNESSES[sickness](settings):
        response = bot.submit(view, declare_values(title="Payments down", description=DESCRIPTION))
        assert response.status_code == 200, response.text
        told = slack.wait_for(lambda: ephemeral_texts(slack))
    answer = told[-1]
    assert "could not keep your incident declaration" in answer
    assert "Nothing was sent" in answer
    assert "Payments down" in answer
    assert "Checkout times out for EU customers since 09:12 &amp; the retries pile up &lt;@U999&gt;" in answer
    assert "<@U999>" not in answer  # what they typed is escaped, never a mention
    assert statuspage.incidents == {}, "sent to the status page without a draft: an orphan if storing fails"
    # The insert the person stopped waiting for is let finish (it may be past its COMMIT):
    # a refused one keeps nothing; one that waited out the lock lands once the lock is gone,
    # marked failed and never sent, so no draft is left "sending" by this live process.
    landed = 1 if sickness == "locked" else 0
    slack.wait_for(
        lambda: (
            [(d.state, d.sent_by, d.error) for d in drafts_in_store(bot)]
            == [("failed", None, "kept too late: never sent")] * landed
        )
    )
    slack.wait_for(lambda: bot.ctx.db.engine.sync_engine.pool.checkedout() == 0)
    assert incidents_in_store(bot) == [] and statuspage.incidents == {}
    assert slack.calls_to("chat.postMessage") == []  # nothing announced


def test_an_update_that_cannot_be_kept_comes_back_with_what_was_typed(bot, settings, slack, statuspage):
    incident = declare(bot, slack)
    view = open_modal(bot, slack, lambda: bot.command(f"update #{incident.id}"))
    slack.forget_calls()
    with locked(settings):
        response = bot.submit(view, update_values(incident.id, text="Rolled back the deploy"))
        assert response.status_code == 200
        told = slack.wait_for(lambda: ephemeral_texts(slack))
    assert "could not keep your incident update" in told[-1] and "Rolled back the deploy" in told[-1]
    assert statuspage.incidents[incident.upstream_id]["Updates"] == []


def test_a_schedule_that_cannot_be_kept_comes_back_as_a_direct_message_when_no_ephemeral_can_be_sent(bot, settings, slack):
    bot.command("schedule", command="/maintenance")
    view = slack.wait_for(lambda: slack.calls_to("views.open") and last_view(slack))
    slack.forget_calls()
    slack.fail_next("chat.postEphemeral", "channel_not_found")  # the bot is not in that channel
    with read_only(settings):
        response = bot.submit(view, schedule_values(title="Kernel upgrade", description="Reboot db-1 and db-2"))
        assert response.status_code == 200
        dm = slack.wait_for(lambda: [m for m in slack.calls_to("chat.postMessage") if m["channel"] == "U123"])
    assert "could not keep your maintenance window" in str(dm[-1])
    assert "Kernel upgrade" in str(dm[-1]) and "Reboot db-1 and db-2" in str(dm[-1])


def test_a_database_that_goes_read_only_while_the_status_page_creates_is_not_silence(settings, slack, statuspage):
    """The draft was kept, the status page took the incident, then the store refused it: the
    person hears that it may have gone through (never "try again", which would make two)."""
    # The status page's answer waits for the test (no latency raced against the client's
    # timeout): a patient client, and the reply let go once the store is read-only.
    with BotUnderTest(settings, http_timeout=WAIT_BOUND) as bot:
        view = open_declare_modal(bot, slack)
        slack.forget_calls()
        answer = statuspage.pause_reply("/Incident")
        bot.submit(view, declare_values(title="Login loops", description=DESCRIPTION))
        slack.wait_for(lambda: statuspage.incidents)  # made upstream; its answer is on hold
        with read_only(settings):
            answer.set()
            told = slack.wait_for(lambda: ephemeral_texts(slack))
    assert "may have gone through" in told[-1] and "check before you send it again" in told[-1]
    assert "Login loops" in told[-1] and "Checkout times out for EU customers" in told[-1]
    assert len(statuspage.incidents) == 1


def test_retry_while_the_database_is_locked_says_so_and_the_draft_stays_for_later(bot, settings, slack, statuspage, caplog):
    statuspage.fail_times(1, status=500)
    view = open_declare_modal(bot, slack)
    bot.submit(view, declare_values(title="Search slow"))
    slack.wait_for(lambda: ephemeral_texts(slack))
    (draft,) = drafts_in_store(bot)
    slack.forget_calls()
    with locked(settings):
        response = bot.click(DraftAction.RETRY, str(draft.id))
        assert response.status_code == 200
        told = slack.wait_for(lambda: ephemeral_texts(slack))
    assert "the database is locked by another process" in told[-1] and "press *Retry* again" in told[-1]
    assert statuspage.incidents == {}
    # The claim waited out the lock and lands once it is gone; it is put back, so the draft
    # is still there for the next Retry.
    slack.wait_for(lambda: f"draft {draft.id} was claimed for a Retry after its click was answered" in caplog.text)
    slack.wait_for(lambda: [(d.state, d.sent_by) for d in drafts_in_store(bot)] == [("failed", None)])
    slack.forget_calls()
    bot.click(DraftAction.RETRY, str(draft.id))
    slack.wait_for(lambda: len(statuspage.incidents) == 1 and ephemeral_texts(slack))


def test_a_retry_whose_claim_lands_after_its_click_was_answered_is_put_back(bot, slack, statuspage, monkeypatch, caplog):
    """The Retry's claim (a compare-and-set) is not cancelled when the click's wait is over:
    the person hears "press Retry again", and when the claim lands after all the draft is put
    back as it was, so that the next Retry sends it. Before, the claim was cancelled, went on
    to commit, and the draft stayed "sending" by this live process: every Retry after it
    answered that it was being sent."""
    statuspage.fail_times(1, status=500)
    view = open_declare_modal(bot, slack)
    bot.submit(view, declare_values(title="Search slow"))
    slack.wait_for(lambda: ephemeral_texts(slack))
    (draft,) = drafts_in_store(bot)
    real_claim = draft_store.claim_for_retry
    gate = threading.Event()
    cancels: list[str] = []

    monkeypatch.setattr(draft_store, "claim_for_retry", committing_slowly(real_claim, gate, cancels))
    keep_bound = draft_flow.KEEP_BOUND_SECONDS
    monkeypatch.setattr(draft_flow, "KEEP_BOUND_SECONDS", 0.2)  # the person's wait, short here
    slack.forget_calls()
    try:
        bot.click(DraftAction.RETRY, str(draft.id))
        told = slack.wait_for(lambda: ephemeral_texts(slack))
    finally:
        # Short only for the click above: the put-back and the next Retry's claim get the real
        # bound, so a loaded machine cannot turn them into "press Retry again" too.
        monkeypatch.setattr(draft_flow, "KEEP_BOUND_SECONDS", keep_bound)
        gate.set()
    assert "press *Retry* again" in told[-1], told[-1]
    slack.wait_for(lambda: f"draft {draft.id} was claimed for a Retry after its click was answered" in caplog.text)
    slack.wait_for(lambda: [(d.state, d.sent_by) for d in drafts_in_store(bot)] == [("failed", None)])
    assert cancels == [], "the claim was given up on: whether it committed is not known"
    assert statuspage.incidents == {}
    monkeypatch.setattr(draft_store, "claim_for_retry", real_claim)
    slack.forget_calls()
    bot.click(DraftAction.RETRY, str(draft.id))
    slack.wait_for(lambda: len(statuspage.incidents) == 1 and ephemeral_texts(slack))
    slack.wait_for(lambda: [d.state for d in drafts_in_store(bot)] == ["done"])


# --- the answers themselves --------------------------------------------------------------


def test_the_answers_fit_slack_and_give_back_every_character():
    long = "\n".join(f"line {n}: " + "x" * 90 for n in range(120))  # about 12,000 characters
    text, blocks = not_stored_answer(NotStored(kind=DraftKind.SCHEDULE, summary=long, reason="the database is read-only"))
    check_message(blocks, text)
    shown = [line for b in blocks[1:] for line in b["text"]["text"].split("\n")]
    assert shown == ["> " + line for line in long.splitlines()]  # whole, and every line quoted

    sent, _ = not_stored_answer(NotStored(kind=DraftKind.DECLARE, summary="t", reason="r", sent=True))
    assert "could not keep" in sent

    it = Interaction.from_body({"type": "view_submission", "user": {"id": "U1"}, "view": {"state": {"values": declare_values()}}})
    text, blocks = busy_answer(DatabaseBusy(), it)
    check_message(blocks, text)
    assert BUSY in text and "DB down" in str(blocks) and "Timeouts on checkout" in str(blocks)


@contextmanager
def small_disk(tmp_path):
    """A 4 MB file system of its own (tmpfs), unmounted at the end; skipped where mounting
    is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small file system here (mount: {made.stderr.strip()})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


@contextmanager
def full(disk: Path):
    """Every byte of `disk` taken by another file, as a log or a backup filling the volume
    does; given back when the block ends."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 16, 1):
            try:
                while True:
                    os.write(fd, b"x" * size)
            except OSError:  # no space left on device: the next, smaller writes take the rest
                pass
    finally:
        os.close(fd)
    try:
        yield
    finally:
        filler.unlink()


def test_readyz_fails_while_the_disk_is_full_and_the_person_hears_why(settings, slack, statuspage, tmp_path):
    with small_disk(tmp_path) as disk:
        on_disk = settings.model_copy(update={"database_url": f"sqlite:///{disk / 'sitrep.db'}"})
        with BotUnderTest(on_disk, ack_budget=ACK_BUDGET_SECONDS) as bot:
            assert bot.http.get("/readyz").status_code == 200
            view = open_declare_modal(bot, slack)
            with full(disk):
                answer = bot.http.get("/readyz")
                assert answer.status_code == 503 and answer.json()["checks"]["database"].startswith("not writable"), answer.text
                assert bot.http.get("/healthz").status_code == 200
                bot.submit(view, declare_values(title="Disk trouble"))
                told = slack.wait_for(lambda: ephemeral_texts(slack), timeout=10)[-1]
            assert "disk is full" in told and "Disk trouble" in told  # said, and what was typed comes back
            assert bot.http.get("/readyz").status_code == 200  # and it recovers


def traceback_lines(caplog) -> list[str]:
    """Records of the Slack-facing side that carry a traceback (the scheduler's own retries,
    which no person waits on, aside)."""
    return [r.getMessage() for r in caplog.records if (r.exc_info or r.exc_text) and not r.name.startswith("scheduler")]


def test_a_reminder_pass_on_a_database_gone_away_ends_quietly(bot, tmp_path, caplog):
    """A pass runs as a task of its own (at start, after a heartbeat, after a clock step):
    whatever its last look-up raises would end as asyncio's "exception never retrieved"
    (CI saw one in the middle of a home-tab test)."""
    caplog.set_level(logging.WARNING)
    with database_gone(bot, f"sqlite:///{tmp_path / 'moved-away' / 'sitrep.db'}"):
        assert bot.run(bot.bot.scheduler.sweep()) is None  # raises here without the guard
    said = [r.getMessage() for r in caplog.records if r.name == "scheduler.runner" and not r.exc_info]
    assert "could not look up the next due reminder; the next heartbeat does" in said


def told_after(slack, response) -> str:
    """The answer to a request (Slack's calls forgotten before it) while the database fails: in
    the ack; privately right after an ack sent before the store was read (a list); or in the
    "one moment" modal a form's read fills (a read that outlived `read_before_open`)."""
    if response.content not in (b"", b"null"):
        return response.text

    def seen() -> str | None:
        if ephemeral_texts(slack):
            return ephemeral_texts(slack)[-1]
        if slack.calls_to("views.open"):
            return "\n".join(texts(last_view(slack)["blocks"]))
        return None

    return slack.wait_for(seen)


@pytest.mark.both_databases
def test_a_database_outage_is_named_to_the_person_with_no_traceback_in_the_log(bot, settings, slack, caplog, tmp_path):
    incident = declare(bot, slack)
    if settings.database_url.startswith("postgresql"):
        gone = f"postgresql://postgres@127.0.0.1:{free_port()}/test"  # the server is down: nothing listens
    else:
        gone = f"sqlite:///{tmp_path / 'moved-away' / 'sitrep.db'}"  # the volume is gone
    caplog.clear()
    caplog.set_level(logging.INFO)
    with database_gone(bot, gone):
        for command, text in [("/incident", "list"), ("/maintenance", "list"), ("/incident", f"update {incident.id}")]:
            slack.forget_calls()
            response = bot.command(text, command=command)
            assert response.status_code == 200
            told = told_after(slack, response)
            assert "database is not working right now" in told, (command, text, told)
            assert "Something went wrong" not in told
        slack.forget_calls()
        told = told_after(slack, bot.click(IncidentAction.RESOLVE, str(incident.id)))
        assert "database is not working right now" in told
        bot.settle()
    assert traceback_lines(caplog) == []
    said = [r.getMessage() for r in caplog.records if r.name == "handlers.errors"]
    assert len(said) == 4 and all("the database failed under a Slack request" in line for line in said), said


def test_readyz_says_not_ready_while_the_file_is_read_only_and_healthz_stays_alive(bot, settings):
    with read_only(settings):
        answer = bot.http.get("/readyz")
        alive = bot.http.get("/healthz")
    assert answer.status_code == 503 and answer.json()["checks"]["database"].startswith("not writable"), answer.text
    assert alive.status_code == 200
    assert bot.http.get("/readyz").status_code == 200  # and it recovers


# --- the same, against `sitrep run` as an operator runs it ----------------------------------


def test_a_running_sitrep_with_its_database_locked_answers_in_time_and_gives_the_form_back(full_env, tmp_path, slack):
    port = free_port()
    env = full_env | {"PORT": str(port)}
    base = f"http://127.0.0.1:{port}"
    process = start_sitrep(env, tmp_path)
    try:
        wait_healthy(base, process, path="/readyz")
        view = command_modal(base, slack, "/incident", "declare", user_id="U777")
        submission = interaction_body(
            submission_payload(view, declare_values(title="Queue stuck", description=DESCRIPTION), user="U777")
        )
        with locked(Path(env["DATABASE_URL"].removeprefix("sqlite:///"))):
            listed = signed_post(base, command_body("/incident", "list", user_id="U777"), timeout=15)
            sent = signed_post(base, submission, timeout=15)
            told = slack.wait_for(lambda: ephemeral_texts(slack, "U777"))
            ready = httpx.get(f"{base}/readyz", timeout=5)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=40)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert listed.status_code == 200, listed.text
    assert sent.status_code == 200, sent.text
    assert "Queue stuck" in told[-1] and "Checkout times out for EU customers" in told[-1]
    assert ready.status_code == 503
    assert process.returncode == 0 and "Traceback" not in output, output
    assert "could not keep incident.declare from U777, nothing sent: the database is locked by another process" in output


# --- a form opens before anything that may wait ---------------------------------------------


def test_declare_opens_its_form_while_the_database_is_held(settings, slack):
    """A trigger lives 3 s and works once, so `/incident declare` opens its form before
    anything that may wait on the database. Here another process holds the database's write
    lock, and every statement the bot sends it costs 3 s on the fake Slack's clock (the
    trigger's clock): a form opened after any statement would find its trigger expired."""
    now = [time.time()]
    slack.clock = lambda: now[0]

    def three_seconds(*_args) -> None:
        now[0] += 3.0

    # An injected clock: no timers, so every statement the database sees comes from the request.
    with BotUnderTest(settings, clock=FakeClock(), ack_budget=ACK_BUDGET_SECONDS) as bot:
        event.listen(bot.ctx.db.engine.sync_engine, "before_cursor_execute", three_seconds)
        with locked(settings):
            trigger = new_trigger_id(issued_at=now[0])
            assert bot.command("declare Disk full", trigger_id=trigger).status_code == 200
            [opened] = slack.wait_for(lambda: list(slack.views.values()))
        assert opened["callback_id"] == Callback.DECLARE and "Disk full" in json.dumps(opened)
        assert [c["trigger_id"] for c in slack.calls_to("views.open")] == [trigger]
        assert slack.calls_to("chat.postEphemeral") == []
