"""Several `sitrep run` processes on one database, as a deployment runs them: each on its
own port, Slack's requests signed and sent to the next replica in turn (round-robin, as a
load balancer spreads them), each process's log in a file (read for its instance id)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path

import httpx

from handlers.maintenance.ids import Action, Block
from tests.support.fakes.signing import command_body, interaction_body, slack_signature_headers
from tests.support.fakes.slack_api import WAIT_BOUND
from tests.support.harness import SIGNING_SECRET, free_port, picked_time, submission_payload, typed
from tests.support.postgres import connect_kwargs

_STARTED = re.compile(r"sitrep started \(instance (\w+)\)")


class Replica:
    def __init__(self, env: dict[str, str], cwd: Path, log: Path):
        self.port = int(env["PORT"])
        env = env | {"METRICS_PORT": str(free_port())}  # each its own, as each pod has
        # On PostgreSQL each replica's connections carry its name (`application_name`): a test
        # can tell from pg_stat_activity what the server is still doing for it, and when it is
        # done with a killed one. The port makes the name the server's only one of its kind.
        self.name = f"sitrep-{log.stem}-{self.port}"
        if env.get("DATABASE_URL", "").startswith(("postgresql", "postgres:")):
            url = env["DATABASE_URL"]
            env["DATABASE_URL"] = f"{url}{'&' if '?' in url else '?'}application_name={self.name}"
        self.metrics_port = int(env["METRICS_PORT"])
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._log_file = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot", "run"],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.instance_id: str | None = None
        self.http = httpx.Client(base_url=self.base, timeout=15)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30) -> None:
        """`/healthz` answers and the log names the instance (the `claimed_by` in the store)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"replica on {self.port} exited {self.process.returncode}:\n{self.output()}")
            found = _STARTED.search(self.output())
            if found:
                try:
                    if self.http.get("/healthz", timeout=1).status_code == 200:
                        self.instance_id = found.group(1)
                        return
                except httpx.TransportError:
                    pass
            time.sleep(0.05)
        raise AssertionError(f"replica on {self.port} not ready within {timeout} s:\n{self.output()}")

    def post(self, body: str) -> httpx.Response:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        headers |= slack_signature_headers(SIGNING_SECRET, body)
        return self.http.post("/slack/events", content=body, headers=headers)

    def stop(self, timeout: float = 40) -> int:
        """SIGTERM, as a deploy stops it; returns its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._close()
        return self.process.returncode

    def kill(self) -> None:
        """`kill -9`: no handler runs, nothing is flushed, held claims stay held."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(WAIT_BOUND)
        self._close()

    def connections(self, url: str) -> list[str]:
        """The state of each of this replica's connections on the PostgreSQL server
        (`active` while the server carries out a statement it sent)."""
        sql = (
            "SELECT coalesce(state, '') FROM pg_stat_activity"
            f" WHERE application_name = '{self.name}' AND datname = current_database()"
        )
        return [state for (state,) in query(url, sql)]

    def gone_from(self, url: str) -> bool:
        """Whether the PostgreSQL server has no connection of this (killed) replica left: it has
        then read everything the replica sent before it died (a COMMIT on its way landed)."""
        return self.connections(url) == []

    def _close(self) -> None:
        self.http.close()
        self._log_file.close()


class Replicas:
    """N replicas; `next()` is the round-robin a load balancer does."""

    def __init__(self, env: dict[str, str], cwd: Path, n: int):
        self.replicas = [Replica(env | {"PORT": str(free_port())}, cwd, cwd / f"replica-{i}.log") for i in range(n)]
        self._turn = 0

    def __enter__(self) -> Replicas:
        try:
            for replica in self.replicas:
                replica.wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for replica in self.replicas:
            if replica.process.poll() is None:
                replica.process.kill()
                replica.process.wait()
            if not replica._log_file.closed:
                replica._close()

    def alive(self) -> list[Replica]:
        return [r for r in self.replicas if r.process.poll() is None]

    def next(self) -> Replica:
        """The next live replica in turn."""
        live = self.alive()
        replica = live[self._turn % len(live)]
        self._turn += 1
        return replica

    def by_instance(self, instance_id: str) -> Replica:
        return next(r for r in self.replicas if r.instance_id == instance_id)


def schedule_from_slack(
    replicas: Replicas, slack, *, title: str, start: datetime, end: datetime, servers: str = "1", via: Replica | None = None
) -> None:
    """`/maintenance schedule` to one replica, the form submitted to the next, as Slack
    delivers a command and then its modal's submission through a load balancer; with `via`,
    both to that replica (it plans the window's reminders)."""
    trigger = f"{time.monotonic_ns()}.{os.getpid()}.t"
    answer = (via or replicas.next()).post(command_body("/maintenance", f"schedule {title}", trigger_id=trigger))
    assert answer.status_code == 200, answer.text
    calls = slack.wait_for(lambda: [c for c in slack.calls_to("views.open") if c.get("trigger_id") == trigger])
    view = calls[0]["view"]
    view = view if isinstance(view, dict) else json.loads(view)
    values = {
        Block.TITLE: {Action.TITLE: typed(title)},
        Block.START: {Action.START: picked_time(start)},
        Block.END: {Action.END: picked_time(end)},
        Block.SERVERS: {Action.SERVERS: typed(servers)},
    }
    answer = (via or replicas.next()).post(interaction_body(submission_payload(view, values)))
    assert answer.status_code == 200 and "errors" not in answer.text, answer.text


def next_minute(after: datetime, *, at_least: timedelta) -> datetime:
    """The first whole minute at least `at_least` after `after`: AppFirst keeps minutes, and
    a Slack date-time picker picks them."""
    earliest = after + at_least
    whole = earliest.replace(second=0, microsecond=0)
    return whole if whole >= earliest else whole + timedelta(minutes=1)


def query(url: str, sql: str) -> list[tuple]:
    """Rows of `sql` on the replicas' database, read from outside them (SQLite or PostgreSQL)."""
    if url.startswith("sqlite"):
        # closing(): sqlite3's own `with` commits but leaves the file open (tests poll this).
        with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
            return db.execute(sql).fetchall()

    async def go() -> list[tuple]:
        import asyncpg  # noqa: PLC0415 - the PostgreSQL half's test dependency

        conn = await asyncpg.connect(**connect_kwargs(url), timeout=5)
        try:
            return [tuple(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()

    return asyncio.run(go())
