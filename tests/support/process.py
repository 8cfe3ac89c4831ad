"""Running `sitrep` as a real process, as an operator does, with only the SPEC's variables set;
and what a process killed mid-work leaves in the store, for tests that stand in for the kill."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from store.db import Database
from store.models import Reminder
from store.reminders import LONG_AGO
from store.states import ReminderKind, ReminderState
from tests.support.fakes.signing import command_body, slack_signature_headers
from tests.support.fakes.slack_api import WAIT_BOUND
from tests.support.harness import SIGNING_SECRET, opened_form

T = TypeVar("T")
R = TypeVar("R")

#: The instance id of a process a test says was killed: no heartbeat row names it.
DEAD = "killed"

SPEC_VARIABLES = (
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
    "SLACK_API_URL",
    "SITREP_CHANNEL",
    "STATUSPAGE_URL",
    "STATUSPAGE_API_KEY",
    "APPFIRST_URL",
    "APPFIRST_EMAIL",
    "APPFIRST_API_KEY",
    "MAINTENANCE_BACKEND",
    "SITREP_COMPONENTS",
    "SITREP_REMINDER_LEAD",
    "SITREP_SYNC_INTERVAL",
    "SITREP_UPDATE_NUDGE",
    "SITREP_CHANGE_LOOKBACK",
    "SITREP_OVERRUN_WARNING",
    "SITREP_ANNOUNCE_HORIZON",
    "SITREP_INCIDENT_CHANNELS",
    "SITREP_INCIDENT_CHANNEL_PRIVATE",
    "SITREP_ARCHIVE_AFTER",
    "SITREP_DIGEST",
    "SITREP_ADMINS",
    "DATABASE_URL",
    "PORT",
    "SITREP_INCIDENT_STATUSES",
    "SITREP_INCIDENT_IMPACTS",
    "SITREP_DEFAULT_IMPACT",
    "SITREP_NOTIFY_DEFAULT",
    "SITREP_MAX_BODY",
    "SITREP_SHUTDOWN_GRACE",
    "SITREP_DRAIN_DELAY",
    "SITREP_HEARTBEAT",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "METRICS_PORT",
    "SITREP_SANDBOX",
    "SITREP_TEST_SPEEDUP",
)


SITREP = Path(sys.executable).with_name("sitrep")


def sitrep(*args: str, env: dict[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def migrated_appfirst_env(full_env: dict[str, str], database_url: str, cwd: Path, **settings: str) -> dict[str, str]:
    """The environment of `sitrep run` processes sharing `database_url`, AppFirst their
    maintenance backend, with `settings` on top; the schema migrated first, as a deploy's
    release step does, so that no process waits on another's migration."""
    env = full_env | {"DATABASE_URL": database_url, "MAINTENANCE_BACKEND": "appfirst"} | settings
    migrated = sitrep("migrate", env=env, cwd=cwd)
    assert migrated.returncode == 0, migrated.stderr
    return env


def in_store(database_url: str, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """`work(session)` in one transaction on the database the processes share, over a
    connection of the test's own (opened and closed here)."""

    async def go() -> T:
        db = Database(database_url)
        try:
            async with db.session() as session, session.begin():
                return await work(session)
        finally:
            await db.dispose()

    return asyncio.run(go())


def lines_starting(output: str, prefix: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(prefix)]


def start_sitrep(env: dict[str, str], cwd: Path, *args: str) -> subprocess.Popen:
    """`sitrep run [args]` as a real process (stdout and stderr together, as text), for tests
    that signal it, scrape it or read what it logged."""
    return subprocess.Popen(
        [sys.executable, "-m", "bot", "run", *args],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def kill(process: subprocess.Popen) -> None:
    """SIGKILL and reap, if it still runs: the crash a test stands for (no drain, no goodbye)."""
    if process.poll() is None:
        process.kill()
        process.communicate(timeout=10)


def signed_post(base: str, body: str, *, timeout: float = 10) -> httpx.Response:
    """A form-encoded body posted to a running sitrep's `/slack/events`, signed as Slack signs."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"} | slack_signature_headers(SIGNING_SECRET, body)
    return httpx.post(f"{base}/slack/events", content=body, headers=headers, timeout=timeout)


def wait_healthy(base: str, process: subprocess.Popen, *, path: str = "/healthz", timeout: float = 60) -> None:
    """Until `path` answers 200 (the process is up), or fail, also when the process exits. A
    loaded machine (xdist workers starting processes beside other work) can take many seconds
    to import and migrate: the bound is only ever reached by a process that never comes up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{base}{path}", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"GET {path} did not answer within {timeout:g} s")


def command_modal(base: str, slack, command: str, text: str, *, user_id: str = "U123", timeout: float = WAIT_BOUND) -> dict:
    """`command text` typed into a running sitrep, and the modal it opens (`views.open` on the
    fake Slack), for a test that then fills it in; fails when the command is not acked."""
    opened = slack.count("views.open")
    answer = signed_post(base, command_body(command, text, user_id=user_id))
    assert answer.status_code == 200, answer.text
    return opened_form(slack, opened=opened, timeout=timeout)


def poll(predicate: Callable[[], T], timeout: float) -> T | None:
    """Poll `predicate` until it is truthy and return it; None after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return None


def wait_until(predicate: Callable[[], T], timeout: float, what: str) -> T:
    """`poll`, failing the test naming `what` when it times out."""
    value = poll(predicate, timeout)
    if not value:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")
    return value


def stop(process: subprocess.Popen) -> str:
    """SIGTERM (a deploy's stop) and everything the process wrote; killed if it will not go."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return output


# -- what a killed process leaves ------------------------------------------------------------


def died_holding(row: R) -> R:
    """`row` (a reminder, a series occurrence) as a process killed holding its claim left it:
    claimed by a dead instance, long ago (stale on any clock)."""
    row.claimed_by, row.claimed_at = DEAD, LONG_AGO
    return row


async def died_before_recording(db: Database, kind: ReminderKind) -> None:
    """The posts of every row of `kind` reached Slack, then their process was killed before
    recording them: each row claimed by a dead instance, with no ts."""
    async with db.session() as session, session.begin():
        await session.execute(
            update(Reminder)
            .where(Reminder.kind == kind)
            .values(state=ReminderState.CLAIMED, claimed_by=DEAD, claimed_at=LONG_AGO, message_ts=None)
        )
