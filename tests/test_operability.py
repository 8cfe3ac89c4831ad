"""What an SRE scrapes and probes: /metrics after real work, /readyz when the store or the
scheduler fails, and JSON logs from a real process that never carry a secret."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sqlite3
import subprocess
import sys
from datetime import timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from bot.app import Sitrep
from bot.clients.slack import make_slack_client
from bot.context import build_context
from bot.ops.logs import NOISY, audit_log
from bot.ops.logs import configure as configure_logs
from bot.services import windows as windows_service
from bot.services.maintenance import MaintenanceService
from bot.services.maintenance_forms import ScheduleForm
from scheduler.reminders import run_due_reminders
from scheduler.sync import sync_windows
from store.states import DraftKind
from tests.support.dates import T0
from tests.support.fakes.signing import command_body, interaction_body
from tests.support.fakes.slack_api import WAIT_BOUND
from tests.support.harness import CHANNEL, SIGNING_SECRET, BotUnderTest, FakeClock, free_port, last_view, submission_payload
from tests.support.incidents import declare_values, open_declare_modal
from tests.support.process import kill, signed_post, wait_healthy

#: The standard collectors' families beside sitrep's own.
STANDARD = ("process_", "python_")


def parse(text: str) -> dict[tuple[str, tuple], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        assert family.name.startswith(("sitrep_", *STANDARD)), family.name
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def scrape(bot: BotUnderTest) -> dict[tuple[str, tuple], float]:
    """`/metrics` as Prometheus reads it, on METRICS_PORT."""
    answer = bot.operator_http.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return parse(answer.text)


def value(samples, metric: str, **labels: str) -> float:
    """The sum over the samples of `name` whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items() if n == metric and set(labels.items()) <= set(ls))


def test_metrics_move_after_a_declare_and_a_reminder(settings, slack, statuspage):
    clock = FakeClock(T0)
    # Without update nudges: the incident declared here would be nudged in the same run.
    with BotUnderTest(settings.model_copy(update={"sitrep_update_nudge": 0}), clock=clock) as bot:
        before = scrape(bot)
        assert value(before, "sitrep_build_info") == 1
        assert value(before, "sitrep_upstream_request_seconds_count") == 0

        view = open_declare_modal(bot, slack)
        bot.submit(view, declare_values())
        slack.wait_for(lambda: [c for c in slack.calls_to("chat.postMessage") if c["channel"] == CHANNEL])
        form = ScheduleForm(title="DB upgrade", start=T0 + timedelta(minutes=30), end=T0 + timedelta(minutes=90))
        bot.run(MaintenanceService(bot.ctx).submit(DraftKind.SCHEDULE, form, user_id="U123", channel_id="C123"))
        clock.advance(minutes=32)  # the heads-up is skipped, the start is posted two minutes late
        assert bot.run(run_due_reminders(bot.ctx)) == 1

        after = scrape(bot)
    ack = dict(kind="command", name="/incident")
    assert value(after, "sitrep_ack_seconds_count", **ack) >= 1
    assert value(after, "sitrep_ack_seconds_count", kind="view") >= 1
    assert (
        value(after, "sitrep_upstream_request_seconds_count", service="statuspage", operation="create_incident", outcome="ok")
        == 1
    )
    assert value(after, "sitrep_slack_api_calls_total", method="views.open", error="ok") >= 1
    assert value(after, "sitrep_slack_api_calls_total", method="chat.postMessage", error="ok") >= 2
    assert value(after, "sitrep_reminders_total", outcome="skipped") == 1
    assert value(after, "sitrep_reminders_total", outcome="late") == 1
    assert value(after, "sitrep_reminder_lateness_seconds_sum") == 120
    assert value(after, "sitrep_drafts", state="done") == 2


def test_upstream_outcomes_are_told_apart(settings, slack, statuspage):
    with BotUnderTest(settings) as bot:
        statuspage.fail_times(1, 400)
        view = open_declare_modal(bot, slack)
        bot.submit(view, declare_values())
        slack.wait_for(lambda: slack.calls_to("chat.postEphemeral") or slack.calls_to("views.update"))
        samples = scrape(bot)
    assert value(samples, "sitrep_upstream_request_seconds_count", operation="create_incident", outcome="rejected") == 1
    assert value(samples, "sitrep_drafts", state="failed") == 1


def test_slack_429s_show_in_metrics_by_method_with_the_time_waited(settings, slack, statuspage):
    """Both ways sitrep meets a 429: slack_sdk sleeping through Retry-After (views.open, on
    the request's own client) and the outbox pausing the channel's method (the announcement)."""
    with BotUnderTest(settings.model_copy(update={"sitrep_update_nudge": 0})) as bot:
        before = scrape(bot)
        assert value(before, "sitrep_slack_rate_limited_total") == 0
        slack.fail_next("views.open", status=429, retry_after=1)
        slack.fail_next("chat.postMessage", status=429, retry_after=1)
        open_declare_modal(bot, slack)
        slack.wait_for(lambda: len(slack.calls_to("views.open")) == 2)  # refused, then slept and sent again
        bot.submit(last_view(slack), declare_values())
        slack.wait_for(lambda: [c for c in slack.calls_to("chat.postMessage") if c["channel"] == CHANNEL])
        slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))
        after = scrape(bot)
    assert value(after, "sitrep_slack_rate_limited_total", method="views.open") == 1
    assert value(after, "sitrep_slack_rate_limited_total", method="chat.postMessage") == 1
    # One second slept by slack_sdk, one second the channel's chat.postMessage was paused.
    assert 2 <= value(after, "sitrep_slack_rate_limit_sleep_seconds_total") < 4
    # The refused call is counted by its error; the retries that went through as ok.
    assert value(after, "sitrep_slack_api_calls_total", method="chat.postMessage", error="ratelimited") == 1
    assert value(after, "sitrep_slack_api_calls_total", method="chat.postMessage", error="ok") >= 1
    assert value(after, "sitrep_slack_api_calls_total", method="views.open", error="ok") == 1


def test_readyz_is_ok_when_everything_is(bot):
    answer = bot.http.get("/readyz")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"ok": True, "checks": {"database": "ok", "scheduler": "ok", "slack": "ok", "channel": "ok"}}
    assert bot.http.get("/healthz").json() == {"ok": True}


def test_readyz_fails_while_the_database_is_locked(bot, settings):
    path = settings.database_url.removeprefix("sqlite:///")
    holder = sqlite3.connect(path)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        answer = bot.http.get("/readyz")
    finally:
        holder.rollback()
        holder.close()
    assert answer.status_code == 503
    assert answer.json()["checks"]["database"].startswith("not writable")
    assert answer.json()["checks"]["scheduler"] == "ok"
    assert bot.http.get("/readyz").status_code == 200  # and it recovers


def test_readyz_fails_when_the_scheduler_stopped(bot):
    bot.run(bot.bot.scheduler.stop())
    answer = bot.http.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["checks"]["scheduler"] == "not running"
    assert bot.http.get("/healthz").status_code == 200  # alive, not ready


def test_readyz_fails_while_slack_refuses_the_token(settings, slack):
    with BotUnderTest(settings.model_copy(update={"slack_bot_token": SecretStr("xoxb-revoked")})) as bot:
        answer = bot.http.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["checks"]["slack"].startswith("auth.test failed")


def test_readyz_reports_a_channel_the_bot_lost(settings, slack):
    """Reported, not gating: a forgotten /invite is named where the operator looks."""
    channel = slack.add_channel("ops-announcements", members=("UHUMAN",))
    clock = FakeClock()
    with BotUnderTest(settings.model_copy(update={"sitrep_channel": channel}), clock=clock, live_scheduler=True) as bot:
        answer = bot.http.get("/readyz")
        assert answer.status_code == 200
        assert "not_in_channel" in answer.json()["checks"]["channel"] and "/invite @sitrep" in answer.json()["checks"]["channel"]
        asked = len(slack.calls_to("conversations.history"))
        for _ in range(5):  # probes every few seconds: a bad answer is kept for 10 s, not asked again
            assert "not_in_channel" in bot.http.get("/readyz").json()["checks"]["channel"]
        assert len(slack.calls_to("conversations.history")) == asked
        slack.set_member(channel, True)  # someone invites the bot: seen within 10 s
        assert "not_in_channel" in bot.http.get("/readyz").json()["checks"]["channel"]
        clock.advance(seconds=11)
        assert bot.http.get("/readyz").json()["checks"]["channel"] == "ok"
        slack.set_member(channel, False)  # removed again: a good answer is trusted for a minute
        assert bot.http.get("/readyz").json()["checks"]["channel"] == "ok"
        clock.advance(seconds=61)
        assert "not_in_channel" in bot.http.get("/readyz").json()["checks"]["channel"]


def test_json_logs_carry_context_and_audit_and_never_a_secret(full_env, slack, statuspage, tmp_path):
    port = free_port()
    env = full_env | {"PORT": str(port), "LOG_FORMAT": "json", "LOG_LEVEL": "info"}
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "run"],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    operator = f"http://127.0.0.1:{env['METRICS_PORT']}"
    try:
        wait_healthy(base, process, path="/readyz")
        # Prometheus reads METRICS_PORT; the Slack port, published to the internet, has no /metrics.
        assert httpx.get(f"{operator}/metrics", timeout=5).status_code == 200
        assert httpx.get(f"{base}/metrics", timeout=5).status_code == 404
        assert httpx.get(f"{operator}/readyz", timeout=5).status_code == 200
        for echo in (None, f"key {statuspage.api_key} refused\n\x1b[31mFAKE LINE"):
            statuspage.failure_message = echo
            if echo is not None:
                statuspage.fail_times(1, 400)
            opened = len(slack.calls_to("views.open"))
            assert signed_post(base, command_body("/incident", "declare DB down")).status_code == 200
            slack.wait_for(lambda opened=opened: len(slack.calls_to("views.open")) > opened)
            # A new modal each time (the replay guard keys a submission by its view's id).
            view = last_view(slack) | {"id": f"V{opened}"}
            assert signed_post(base, interaction_body(submission_payload(view, declare_values()))).status_code == 200
            posts = 2 if echo else 1
            slack.wait_for(lambda posts=posts: len([r for r in statuspage.requests if r.method == "POST"]) >= posts)
            slack.wait_for(lambda posts=posts: len(slack.calls_to("chat.postEphemeral")) >= posts)  # the person told
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=WAIT_BOUND)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    lines = [line for line in stderr.splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    audits = [e for e in entries if e["logger"] == "sitrep.audit"]
    assert len(audits) == 2, audits
    declared, refused = audits
    assert declared["user"] == "U123" and declared["view"] and declared["incident_id"]
    assert "incident.declare" in declared["message"] and "ok" in declared["message"]
    assert "incident.declare" in refused["message"] and "rejected" in refused["message"]
    # What was done and how it went are keys of their own, not only words in `message`.
    assert (declared["action"], declared["outcome"], declared["draft_id"]) == ("incident.declare", "ok", declared["draft_id"])
    assert (refused["action"], refused["outcome"], refused["user"]) == ("incident.declare", "rejected", "U123")
    assert "refused" in refused["reason"] and "reason" not in declared
    # The access log (probes, scrapes and Slack's requests alike) is DEBUG only: it sat on the
    # path to Slack's 3-second answer (#22); sitrep_ack_seconds and the audit line cover requests.
    access = [e["message"] for e in entries if e["logger"] == "uvicorn.access"]
    assert access == [], access
    for secret in (env["SLACK_BOT_TOKEN"], SIGNING_SECRET, env["STATUSPAGE_API_KEY"], env["APPFIRST_API_KEY"]):
        assert secret[:8] not in stderr
    assert "\x1b" not in stderr and "\nFAKE LINE" not in stderr


# --- what operators alert on ---------------------------------------------------------------


def test_metrics_carry_the_standard_process_and_platform_collectors(bot):
    samples = scrape(bot)
    names = {name for name, _labels in samples}
    # Memory, CPU, descriptors (a leak of sockets), restarts; the Python running.
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds", "process_max_fds"):
        assert name in names, sorted(names)
    assert value(samples, "process_start_time_seconds") > 0
    assert value(samples, "python_info", major="3") == 1
    assert any(name.startswith("python_gc_") for name in names)


def test_metrics_are_served_on_metrics_port_and_not_on_the_slack_port(bot):
    assert bot.http.get("/metrics").status_code == 404  # the port published to the internet
    assert bot.operator_http.get("/metrics").status_code == 200
    for probe in ("/healthz", "/readyz"):  # the probes answer on both
        assert bot.http.get(probe).status_code == 200
        assert bot.operator_http.get(probe).status_code == 200


def test_metrics_share_the_slack_port_only_when_the_operator_says_so(settings):
    """METRICS_PORT set to PORT: one server, /metrics beside /slack/events."""
    same = settings.model_copy(update={"port": 3000, "metrics_port": 3000})
    ctx = build_context(same)
    try:
        paths = {route.path for route in Sitrep(ctx).asgi().routes}
    finally:
        asyncio.run(ctx.aclose())
    assert {"/slack/events", "/metrics", "/healthz", "/readyz"} <= paths
    ctx = build_context(settings.model_copy(update={"port": 3000, "metrics_port": 9090}))
    try:
        assert "/metrics" not in {route.path for route in Sitrep(ctx).asgi().routes}
    finally:
        asyncio.run(ctx.aclose())


def test_reminders_overdue_counts_what_no_replica_posted_a_minute_after_its_time(settings, slack, statuspage):
    clock = FakeClock(T0)
    with BotUnderTest(settings, clock=clock) as bot:
        form = ScheduleForm(title="DB upgrade", start=T0 + timedelta(minutes=30), end=T0 + timedelta(minutes=90))
        bot.run(MaintenanceService(bot.ctx).submit(DraftKind.SCHEDULE, form, user_id="U123", channel_id="C123"))
        assert value(scrape(bot), "sitrep_reminders_overdue") == 0
        clock.advance(minutes=30, seconds=59)  # heads-up (T+15) and start (T+30) due, start not a minute late
        assert value(scrape(bot), "sitrep_reminders_overdue") == 1
        clock.advance(seconds=2)  # the start is now more than a minute past due too
        assert value(scrape(bot), "sitrep_reminders_overdue") == 2
        assert bot.run(run_due_reminders(bot.ctx)) >= 1  # delivered (the heads-up skipped as too late)
        assert value(scrape(bot), "sitrep_reminders_overdue") == 0


def test_last_sync_success_is_when_a_sync_pass_last_completed(settings, statuspage, monkeypatch):
    monkeypatch.setattr(windows_service, "NOTE_BOUND_SECONDS", WAIT_BOUND)  # each note must land, however slow the machine
    clock = FakeClock(T0)
    with BotUnderTest(settings, clock=clock) as bot:
        bot.run(bot.bot.scheduler.stop())  # the sync is driven here, on the injected clock
        never = scrape(bot)
        assert ("sitrep_last_sync_success_timestamp_seconds", (("backend", "statuspage"),)) in never
        assert value(never, "sitrep_last_sync_success_timestamp_seconds", backend="statuspage") == 0
        assert not bot.run(sync_windows(bot.ctx)).failed
        assert value(scrape(bot), "sitrep_last_sync_success_timestamp_seconds", backend="statuspage") == T0.timestamp()
        clock.advance(minutes=10)
        statuspage.fail_times(1, 500)
        assert bot.run(sync_windows(bot.ctx)).failed
        assert (
            value(scrape(bot), "sitrep_last_sync_success_timestamp_seconds", backend="statuspage") == T0.timestamp()
        )  # still the last good one
        assert not bot.run(sync_windows(bot.ctx)).failed
        assert (
            value(scrape(bot), "sitrep_last_sync_success_timestamp_seconds", backend="statuspage")
            == (T0 + timedelta(minutes=10)).timestamp()
        )


def test_channel_reachable_follows_what_slack_says_about_posts_to_the_channel(settings, slack, statuspage):
    with BotUnderTest(settings.model_copy(update={"sitrep_update_nudge": 0})) as bot:
        assert not [k for k in scrape(bot) if k[0] == "sitrep_channel_reachable"]  # nothing known before the first post
        slack.fail_next("chat.postMessage", error="not_in_channel")
        bot.submit(open_declare_modal(bot, slack), declare_values())
        slack.wait_for(lambda: [c for c in slack.calls_to("chat.postMessage") if c["channel"] == CHANNEL])
        slack.wait_for(lambda: [k for k in scrape(bot) if k[0] == "sitrep_channel_reachable"])
        assert value(scrape(bot), "sitrep_channel_reachable", channel=CHANNEL) == 0

        bot.submit(open_declare_modal(bot, slack) | {"id": "V-second"}, declare_values())
        slack.wait_for(lambda: value(scrape(bot), "sitrep_channel_reachable", channel=CHANNEL) == 1)


def _logs_of_one_declare(env: dict[str, str], slack, statuspage, cwd) -> list[dict]:
    """A real `sitrep run` (JSON logs): probed and scraped, one incident declared, stopped."""
    base, operator = f"http://127.0.0.1:{env['PORT']}", f"http://127.0.0.1:{env['METRICS_PORT']}"
    log = cwd / "sitrep.log"  # a file, not a pipe: at DEBUG a full pipe would stall the bot
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "bot", "run"], env=env | {"LOG_FORMAT": "json"}, cwd=cwd,
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_healthy(base, process, path="/readyz")
        assert httpx.get(f"{operator}/metrics", timeout=5).status_code == 200
        opened = len(slack.calls_to("views.open"))
        assert signed_post(base, command_body("/incident", "declare DB down")).status_code == 200
        slack.wait_for(lambda: len(slack.calls_to("views.open")) > opened)
        assert signed_post(base, interaction_body(submission_payload(last_view(slack), declare_values()))).status_code == 200
        slack.wait_for(lambda: [c for c in slack.calls_to("chat.postMessage") if c["channel"] == CHANNEL])
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        kill(process)
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("level", ["WARNING", "DEBUG"])
def test_audit_lines_survive_any_log_level_and_probes_show_only_at_debug(level, full_env, slack, statuspage, tmp_path):
    entries = _logs_of_one_declare(full_env | {"PORT": str(free_port()), "LOG_LEVEL": level}, slack, statuspage, tmp_path)
    [declared] = [e for e in entries if e["logger"] == "sitrep.audit"]
    assert (declared["action"], declared["outcome"], declared["user"], declared["level"]) == (
        "incident.declare",
        "ok",
        "U123",
        "INFO",
    )
    assert declared["incident_id"] and declared["draft_id"]
    probes = [e for e in entries if e["logger"] == "uvicorn.access" and ("/readyz" in e["message"] or "/metrics" in e["message"])]
    if level == "WARNING":
        assert {e["level"] for e in entries if e["logger"] != "sitrep.audit"} <= {"WARNING", "ERROR", "CRITICAL"}
        assert probes == []
    else:
        assert probes and {e["level"] for e in probes} == {"DEBUG"}


def test_channel_reachable_is_kept_fresh_by_the_readiness_probe(settings, slack):
    """A replica that posts nothing still reports: /readyz reads the channel, so the value is
    as fresh as the probe (a minute at most while it is fine, 10 s while it is not)."""
    channel = slack.add_channel("ops-announcements", members=("UHUMAN",))
    clock = FakeClock()
    with BotUnderTest(settings.model_copy(update={"sitrep_channel": channel}), clock=clock, live_scheduler=True) as bot:
        bot.operator_http.get("/readyz")  # the orchestrator's probe
        assert value(scrape(bot), "sitrep_channel_reachable", channel=channel) == 0
        slack.set_member(channel, True)  # /invite @sitrep
        clock.advance(seconds=11)
        bot.operator_http.get("/readyz")
        assert value(scrape(bot), "sitrep_channel_reachable", channel=channel) == 1


class _Counted(str):
    """Text that counts how often it is put into a log message (`repr`); JSON sends its value."""

    reprs = 0

    def __repr__(self) -> str:
        type(self).reprs += 1
        return super().__repr__()


@pytest.fixture
def logging_restored():
    """`configure` sets the process's logging; put pytest's back after the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    loggers = {name: logging.getLogger(name).level for name in (*NOISY, audit_log.name)}
    yield
    root.handlers[:], root.level = handlers, level
    for name, was in loggers.items():
        logging.getLogger(name).setLevel(was)


@pytest.mark.parametrize(("level", "formatted"), [("INFO", False), ("WARNING", False), ("DEBUG", True)])
def test_a_slack_call_formats_no_debug_line_unless_log_level_is_debug(level, formatted, settings, slack, logging_restored):
    """slack_sdk builds each call's debug lines when its logger's own level lets it (not
    whether DEBUG is on): with a modal, the biggest share of a declare's CPU after the ack."""
    configure_logs(level=level)
    _Counted.reprs = 0

    async def post() -> None:
        client = make_slack_client(settings)
        await client.chat_postMessage(channel=CHANNEL, text=_Counted("Checkout down"))

    asyncio.run(post())
    assert [m["text"] for m in slack.messages(CHANNEL)] == ["Checkout down"]
    assert (_Counted.reprs > 0) is formatted, _Counted.reprs
