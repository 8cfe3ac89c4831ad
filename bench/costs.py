"""Costs that must not grow with history, run by hand: `python bench/costs.py [--runs 3] [what ...]`.

* `sync`: one sync pass over 1k / 10k / 50k AppFirst windows with nothing changed (half
  history, half stored future windows), against the raw page fetch (the same GETs, JSON
  decoded, nothing else), and the longest event-loop stall while it runs. The fake AppFirst
  runs in a process of its own so its JSON encoding does not hold this process's GIL.
* `picker`: the ack of `/incident update` (the modal with its type-ahead picker) and of a
  type-ahead request, at 10 / 1k / 10k open incidents.
* `ack`: ack p99 of `/incident help`, and of `/incident declare` (whose modal opens after the
  ack; the bare app opens the same modal), against a bare Bolt app answering the same signed request, at each `--concurrency`
  (1, 10, 50 requests sent at once, the two apps taking turns batch by batch, each batch's
  modals opened before the next batch goes, at least 20 batches each), and the
  sustained commands per second of each with 50 connections kept busy. Each app runs as a
  process of its own (`sitrep run` with its production logging; the bare app under
  uvicorn), so neither shares a GIL with the load, which this process makes over raw
  keep-alive connections. The load average before and after is printed: the machine is shared.
* `submit`: the ack of a declare's view submission (Submit on the modal: its replay key and
  draft are kept before the ack, in one transaction), as a signed HTTP request and the time
  to its whole answer, against the same bare Bolt app acking a submission, both apps as
  processes as above.
  Each submission is let finish (status page, announcement, answer) before the next.

The reminder path from "due" to "posted" against its two Slack calls is in
`bench/pace.py --cost-only`.

Each figure is min/median/max over `--runs` runs. Loopback fakes only; nothing is asserted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import multiprocessing
import os
import re
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
from pydantic import SecretStr  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from bot.context import build_context  # noqa: E402
from bot.settings import Settings  # noqa: E402
from scheduler.sync import sync_windows  # noqa: E402
from store.models import Incident, MaintenanceWindow  # noqa: E402
from store.states import WindowState  # noqa: E402
from tests.support.harness import SIGNING_SECRET  # noqa: E402

CHANNEL = "C0SITREP"


def p99(samples: list[float]) -> float:
    """The 99th percentile of sorted samples."""
    return samples[int(len(samples) * 0.99) - 1]


def mmm(samples: list[float], unit: float = 1000.0, fmt: str = "{:.1f}") -> str:
    return "/".join(fmt.format(x * unit) for x in (min(samples), statistics.median(samples), max(samples)))


# --- sync ---------------------------------------------------------------------------------


def _serve_appfirst(count: int, now: datetime, pipe) -> None:
    from tests.support.fakes.appfirst import FakeAppFirst  # noqa: PLC0415 - in the child process only

    with FakeAppFirst() as fa:
        fa.clock = lambda: now
        for n in range(count):
            if n % 2:  # history: ended long ago
                start = now - timedelta(days=30, hours=n)
            else:  # planned, beyond the announcement horizon
                start = now + timedelta(days=8, minutes=n)
            fa.add_window(start, start + timedelta(minutes=30), reason=f"w{n}")
        pipe.send((fa.url, fa.email, fa.api_key, {w["id"]: (w["start"], w["end"], w["reason"]) for w in fa.windows.values()}))
        pipe.recv()


class StallMeter:
    """The longest time the loop did not get back to a 1 ms sleep: what other users' acks wait."""

    def __init__(self):
        self.longest = 0.0
        self._stop = False

    async def run(self) -> None:
        while not self._stop:
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            self.longest = max(self.longest, time.perf_counter() - before - 0.001)

    def stop(self) -> None:
        self._stop = True


class StepMeter:
    """The longest single step of the loop (one callback, one task step) in this thread's CPU
    time: the stall an idle machine would show. On a shared machine the wall-clock stall
    also counts the time the process waited for a core; CPU time does not."""

    def __init__(self):
        self.longest = 0.0
        self.where = None  # the step that took longest
        self._original = asyncio.events.Handle._run

    def __enter__(self) -> StepMeter:
        original, meter = self._original, self

        def _run(handle) -> None:
            started = time.thread_time()
            original(handle)
            took = time.thread_time() - started
            if took > meter.longest:
                meter.longest, meter.where = took, handle

        asyncio.events.Handle._run = _run
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.events.Handle._run = self._original


async def _raw_fetch(url: str, email: str, key: str) -> float:
    async with httpx.AsyncClient(base_url=url, auth=(email, key), timeout=60) as client:
        started = time.perf_counter()
        page = 0
        while True:
            body = (await client.get("/api/maintenance_windows/", params={"limit": 2500, "page": page})).json()
            if body["pagination"]["next"] is None:
                return time.perf_counter() - started
            page += 1


async def _sync_runs(settings: Settings, now: datetime, windows: dict, runs: int) -> tuple[list[float], ...]:
    ctx = build_context(settings, clock=lambda: now)
    await ctx.db.prepare()
    rows = [
        dict(
            backend="appfirst",
            upstream_id=str(wid),
            title=reason,
            description="",
            start=start,
            end=end,
            components=[],
            servers=[],
            state=WindowState.SCHEDULED,
            channel_id=CHANNEL,
            created_at=now,
            updated_at=now,
        )
        for wid, (start, end, reason) in windows.items()
        if end > now
    ]
    async with ctx.db.session() as session, session.begin():
        for chunk in range(0, len(rows), 1000):
            await session.execute(insert(MaintenanceWindow), rows[chunk : chunk + 1000])
    raws, syncs, stalls, steps = [], [], [], []
    try:
        await sync_windows(ctx)  # warm: connections, caches
        gc.collect()
        gc.freeze()  # as `sitrep run` does once started (bot/cli.py)
        for _ in range(runs):
            raws.append(
                await _raw_fetch(settings.appfirst_url, settings.appfirst_email, settings.appfirst_api_key.get_secret_value())
            )
            meter = StallMeter()
            watching = asyncio.create_task(meter.run())
            await asyncio.sleep(0.01)
            started = time.perf_counter()
            with StepMeter() as step:
                report = await sync_windows(ctx)
            syncs.append(time.perf_counter() - started)
            meter.stop()
            await watching
            stalls.append(meter.longest)
            steps.append(step.longest)
            assert not (report.adopted or report.moved or report.vanished or report.announced or report.failed), report
    finally:
        await ctx.aclose()
        await ctx.db.dispose()
    return raws, syncs, stalls, steps


def bench_sync(runs: int, sizes: list[int]) -> None:
    now = datetime(2031, 1, 1, tzinfo=UTC)
    for count in sizes:
        parent, child = multiprocessing.Pipe()
        server = multiprocessing.Process(target=_serve_appfirst, args=(count, now, child), daemon=True)
        server.start()
        url, email, key, windows = parent.recv()
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(
                slack_bot_token="xoxb-test-token",
                slack_signing_secret=SIGNING_SECRET,
                slack_api_url="http://127.0.0.1:9/",
                sitrep_channel=CHANNEL,
                appfirst_url=url,
                appfirst_email=email,
                appfirst_api_key=SecretStr(key),
                maintenance_backend="appfirst",
                database_url=f"sqlite:///{tmp}/bench.db",
            )
            raws, syncs, stalls, steps = asyncio.run(_sync_runs(settings, now, windows, runs))
        parent.send("stop")
        server.join(10)
        ratios = [s / r for s, r in zip(syncs, raws, strict=True)]
        print(
            f"sync, {count:>6,} windows, nothing changed: {mmm(syncs)} ms; raw fetch {mmm(raws)} ms; "
            f"ratio {mmm(ratios, 1, '{:.2f}')}×; longest loop stall {mmm(stalls)} ms "
            f"(longest step in CPU time {mmm(steps)} ms; load average {os.getloadavg()[0]:.1f})"
        )


# --- the picker -----------------------------------------------------------------------------


def bench_picker(runs: int, sizes: list[int]) -> None:
    from tests.support.fakes.slack_api import FakeSlack  # noqa: PLC0415
    from tests.support.fakes.statuspage import FakeStatusPage  # noqa: PLC0415
    from tests.support.harness import BotUnderTest  # noqa: PLC0415

    with FakeSlack() as slack, FakeStatusPage() as sp, tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            slack_bot_token="xoxb-test-token",
            slack_signing_secret=SIGNING_SECRET,
            slack_api_url=slack.url,
            sitrep_channel=CHANNEL,
            statuspage_url=sp.url,
            statuspage_api_key=sp.api_key,
            database_url=f"sqlite:///{tmp}/bench.db",
        )
        with BotUnderTest(settings) as bot:
            have = 0
            results = {}
            for count in sizes:

                async def add(first=have, count=count):
                    now = datetime.now(UTC)
                    rows = [
                        dict(
                            upstream_id=f"b-{n}",
                            title=f"Checkout failing in region {n}",
                            description="",
                            status="Investigating",
                            impact="Partial Outage",
                            components=[],
                            notify=True,
                            channel_id=CHANNEL,
                            declared_by="U1",
                            declared_at=now,
                            updated_at=now,
                            update_count=0,
                        )
                        for n in range(first, count)
                    ]
                    async with bot.ctx.db.session() as session, session.begin():
                        for chunk in range(0, len(rows), 1000):
                            await session.execute(insert(Incident), rows[chunk : chunk + 1000])

                bot.run(add())
                have = count
                opens, suggests, lists = [], [], []
                for _ in range(runs):
                    inner_open, inner_suggest, inner_list = [], [], []
                    for _ in range(20):
                        started = time.perf_counter()
                        bot.command("list")
                        inner_list.append(time.perf_counter() - started)
                        started = time.perf_counter()
                        bot.command("update")
                        inner_open.append(time.perf_counter() - started)
                        started = time.perf_counter()
                        bot.suggest(
                            {"callback_id": "incident_update", "blocks": []},
                            block_id="incident",
                            action_id="incident",
                            value="region 1",
                        )
                        inner_suggest.append(time.perf_counter() - started)
                    opens.append(statistics.median(inner_open))
                    suggests.append(statistics.median(inner_suggest))
                    lists.append(statistics.median(inner_list))
                results[count] = (opens, suggests, lists)
                print(
                    f"picker, {count:>6,} open incidents: /incident update ack {mmm(opens)} ms; "
                    f"type-ahead answer {mmm(suggests)} ms; /incident list ack {mmm(lists)} ms "
                    f"(medians of 20, min/median/max of {runs} runs)"
                )
            low, high = results[sizes[0]], results[sizes[-1]]
            print(
                f"picker ack at {sizes[-1]:,} ÷ at {sizes[0]:,}: "
                f"{statistics.median(high[0]) / statistics.median(low[0]):.2f}× (update), "
                f"{statistics.median(high[1]) / statistics.median(low[1]):.2f}× (type-ahead), "
                f"{statistics.median(high[2]) / statistics.median(low[2]):.2f}× (list)"
            )


# --- ack p99 against a bare Bolt app --------------------------------------------------------


def _bare_app(slack_url: str):
    """The plainest Bolt app, as an ASGI app: a fixed authorization (sitrep caches its
    auth.test the same way), its client on the same fake Slack, one ack."""
    from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler  # noqa: PLC0415
    from slack_bolt.async_app import AsyncApp  # noqa: PLC0415
    from slack_bolt.authorization import AuthorizeResult  # noqa: PLC0415
    from slack_sdk.web.async_client import AsyncWebClient  # noqa: PLC0415
    from starlette.applications import Starlette  # noqa: PLC0415
    from starlette.requests import Request  # noqa: PLC0415
    from starlette.routing import Route  # noqa: PLC0415

    async def authorize(**_kwargs) -> AuthorizeResult:
        return AuthorizeResult(enterprise_id=None, team_id="T1", bot_token="xoxb-test-token", bot_user_id="UBOT", bot_id="BBOT")

    app = AsyncApp(client=AsyncWebClient(base_url=slack_url), signing_secret=SIGNING_SECRET, authorize=authorize)

    # The same modal sitrep's `/incident declare` opens (its builder's output, made once here):
    # the floor for "ack, then open the form with the trigger".
    from bot.services.incident_forms import DeclareForm  # noqa: PLC0415
    from bot.settings import DEFAULT_INCIDENT_IMPACTS, DEFAULT_INCIDENT_STATUSES  # noqa: PLC0415
    from handlers.incident.views import declare_modal, help_answer  # noqa: PLC0415

    form = declare_modal(
        DeclareForm(title="DB down"), (), statuses=DEFAULT_INCIDENT_STATUSES, impacts=DEFAULT_INCIDENT_IMPACTS, channel_id="C1"
    )

    # And the same help answer: the floor for answering `/incident help` is sending its text.
    help_text, help_blocks = help_answer()
    # A client of its own, as sitrep's: Bolt's per-request client adds `team_id`, which
    # views.open does not take (the fake Slack refuses it, as its spec does).
    client = AsyncWebClient(base_url=slack_url, token="xoxb-test-token")

    @app.command("/incident")
    async def answer(ack, body):
        if body.get("text", "").startswith("declare"):
            await ack()
            await client.views_open(trigger_id=body["trigger_id"], view=form)
            return
        await ack(text=help_text, blocks=help_blocks, response_type="ephemeral")

    @app.view(re.compile(".*"))
    async def submitted(ack):
        await ack()

    handler = AsyncSlackRequestHandler(app)

    async def events(request: Request):
        return await handler.handle(request)

    return Starlette(routes=[Route("/slack/events", events, methods=["POST"])])


def serve_bare(port: int, slack_url: str) -> None:
    """The bare Bolt app as a process of its own (one replica, as `sitrep run` is)."""
    import uvicorn  # noqa: PLC0415

    gc.collect()
    gc.freeze()  # as `sitrep run` does: neither app pays for full passes over its libraries
    uvicorn.run(_bare_app(slack_url), host="127.0.0.1", port=port, log_level="warning")


@dataclass
class Replicas:
    sitrep_port: int
    bare_port: int
    sitrep_pid: int
    bare_pid: int
    slack: Any
    sp: Any


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _serve_slack(pipe) -> None:
    from tests.support.fakes.slack_api import FakeSlack  # noqa: PLC0415 - in the child process only

    with FakeSlack() as slack:
        pipe.send(slack.url)
        while pipe.recv() != "stop":  # "views.open": how many came
            pipe.send(slack.count("views.open"))
        pipe.send(slack.violations)


class SlackInAChild:
    """The fake Slack in a process of its own: its work (each `views.open` checked against
    Slack's spec) must not hold the GIL of the process that times the acks."""

    def __init__(self):
        self._pipe, child = multiprocessing.Pipe()
        self._process = multiprocessing.Process(target=_serve_slack, args=(child,), daemon=True)

    def __enter__(self) -> SlackInAChild:
        self._process.start()
        self.url = self._pipe.recv()
        return self

    def views_opened(self) -> int:
        self._pipe.send("views.open")
        return self._pipe.recv()

    @property
    def violations(self) -> list:
        self._pipe.send("stop")
        return self._pipe.recv()

    def __exit__(self, *exc: object) -> None:
        self._process.terminate()
        self._process.join(5)


@contextlib.contextmanager
def two_replicas(*, slack_in_a_child: bool = False):
    """`sitrep run` and the bare Bolt app, each a process of its own on a loopback port (one
    replica each, nothing else in its process), on one fake Slack and status page: their
    ports. The load comes from this process, so neither app shares a GIL with its client;
    nor with the fake Slack, `slack_in_a_child`, where the bench reads nothing from it."""
    import subprocess  # noqa: PLC0415

    from tests.support.fakes.slack_api import FakeSlack  # noqa: PLC0415
    from tests.support.fakes.statuspage import FakeStatusPage  # noqa: PLC0415
    from tests.support.harness import free_port  # noqa: PLC0415
    from tests.support.process import wait_healthy  # noqa: PLC0415

    root = Path(__file__).resolve().parents[1]
    # On a machine of two or more cores, the apps share the last core and the load (this
    # process, the fakes) has the others: the two apps take turns, so neither waits for the
    # other, and no batch is slowed by the scheduler moving an app onto the client's core
    # (unpinned, a p99 fifty at once swung 0.9-1.5× from run to run on two cores).
    cores = sorted(os.sched_getaffinity(0))
    pinned = len(cores) >= 2
    apps_core, load_cores = {cores[-1]}, set(cores[:-1])
    if pinned:
        os.sched_setaffinity(0, load_cores)

    def on_apps_core() -> None:
        os.sched_setaffinity(0, apps_core)

    fake_slack = SlackInAChild() if slack_in_a_child else FakeSlack()
    with fake_slack as slack, FakeStatusPage() as sp, tempfile.TemporaryDirectory() as tmp:
        sitrep_port, bare_port = free_port(), free_port()
        env = {
            "PATH": "/usr/bin:/bin",
            "SLACK_BOT_TOKEN": "xoxb-test-token",
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.url,
            "SITREP_CHANNEL": CHANNEL,
            "STATUSPAGE_URL": sp.url,
            "STATUSPAGE_API_KEY": sp.api_key,
            "DATABASE_URL": f"sqlite:///{tmp}/bench.db",
            "PORT": str(sitrep_port),
        }
        with open(Path(tmp) / "sitrep.log", "w") as out:
            pin = on_apps_core if pinned else None
            sitrep = subprocess.Popen(
                [sys.executable, "-m", "bot", "run"], env=env, cwd=root, stdout=out, stderr=out, preexec_fn=pin
            )
            bare = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "serve-bare", "--port", str(bare_port), "--slack-url", slack.url],
                cwd=root,
                stdout=out,
                stderr=out,
                preexec_fn=pin,
            )
            try:
                wait_healthy(f"http://127.0.0.1:{sitrep_port}", sitrep)
                deadline = time.monotonic() + 20
                while bare.poll() is None and time.monotonic() < deadline:
                    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", bare_port), 0.5):
                        break
                    time.sleep(0.05)
                yield Replicas(sitrep_port, bare_port, sitrep.pid, bare.pid, slack, sp)
            finally:
                if pinned:
                    os.sched_setaffinity(0, set(cores))
                for process in (sitrep, bare):
                    process.terminate()
                for process in (sitrep, bare):
                    try:
                        process.wait(30)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()


class Connections:
    """`size` keep-alive HTTP/1.1 connections to one app, spoken by hand: an HTTP client
    library would cost this process more CPU per request than the apps spend answering."""

    def __init__(self, port: int, size: int):
        self.port = port
        self.size = size
        self.pairs: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def __aenter__(self) -> Connections:
        self.pairs = [await asyncio.open_connection("127.0.0.1", self.port) for _ in range(self.size)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for _reader, writer in self.pairs:
            writer.close()

    async def post(self, index: int, body: str) -> float:
        """One signed slash command on connection `index`: seconds to its whole answer."""
        reader, writer = self.pairs[index]
        data = body.encode()
        headers = slack_headers(body)
        request = (
            f"POST /slack/events HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/x-www-form-urlencoded\r\n"
            f"content-length: {len(data)}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        ).encode() + data
        started = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *([0-9]+)", head).group(1))
        await reader.readexactly(length)
        took = time.perf_counter() - started
        if not head.startswith(b"HTTP/1.1 200"):
            raise AssertionError(head.split(b"\r\n", 1)[0].decode())
        return took


def slack_headers(body: str) -> dict[str, str]:
    from tests.support.fakes.signing import slack_signature_headers  # noqa: PLC0415

    return slack_signature_headers(SIGNING_SECRET, body, None)


def help_body() -> str:
    from tests.support.fakes.signing import command_body, new_trigger_id  # noqa: PLC0415

    # A new trigger each time, as Slack makes one per command: none is a replay.
    return command_body("/incident", "help", user_id="U1", channel_id="C1", trigger_id=new_trigger_id())


def declare_body() -> str:
    from tests.support.fakes.signing import command_body, new_trigger_id  # noqa: PLC0415

    return command_body("/incident", "declare DB down", user_id="U1", channel_id="C1", trigger_id=new_trigger_id())


async def _batches(
    apps: list[tuple[Connections, Callable[[], str]]], n: int, settle: Callable[[], Awaitable[None]] | None = None
) -> list[list[float]]:
    """`n` requests to each app in batches of its connections' size sent at once, the apps
    taking turns batch by batch, so the machine's load hits them alike: sorted latencies.
    `settle` is awaited after each batch: the work an app does after its acks (a declare's
    `views.open`) must not fall on the next batch, the other app's."""
    samples: list[list[float]] = [[] for _ in apps]
    while len(samples[0]) < n:
        for (connections, body), into in zip(apps, samples, strict=True):
            bodies = [body() for _ in range(connections.size)]
            into += await asyncio.gather(*(connections.post(i, b) for i, b in enumerate(bodies)))
            if settle is not None:
                await settle()
    return [sorted(x) for x in samples]


async def _sustained(port: int, size: int, body: Callable[[], str], total: int) -> float:
    """Commands per second with `size` connections kept busy until `total` were answered
    (connections of its own: the server closes one left idle for 5 s)."""
    left = total

    async def worker(index: int) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await connections.post(index, body())

    async with Connections(port, size) as connections:
        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(size)))
        return total / (time.perf_counter() - started)


def bench_ack(runs: int, concurrencies: list[int], n: int = 600, sustained: int = 3000) -> None:
    """Ack p99 of `/incident help` (and `/incident declare`, whose modal opens after the ack)
    at each concurrency, and sustained commands per second at the highest, sitrep against
    the bare Bolt app, both apps in every run. At least 40 batches and 600 requests each
    (2,000 fifty at once): with 300, a p99 fifty at once was the third slowest of six batches
    and moved ±20% from run to run; with 20 batches a run's p99 was still its slowest batch."""
    load_before = os.getloadavg()

    def requests(c: int) -> int:
        return max(n, 40 * c)

    results: dict[int, list[tuple[float, float, float, float]]] = {c: [] for c in concurrencies}
    rates: list[tuple[float, float]] = []
    cpu: list[tuple[float, float]] = []
    with two_replicas(slack_in_a_child=True) as apps:
        sitrep_port, bare_port, slack = apps.sitrep_port, apps.bare_port, apps.slack
        declares = 0

        def declare() -> str:
            nonlocal declares
            declares += 1
            return declare_body()

        async def settled() -> None:
            """Every declare sent so far has had its modal opened (both apps open the same one).
            Without this the app that went second met the other's `views.open` calls (and the
            fake Slack checking each) in its own batch: sitrep's declare did, at 50 at once."""
            deadline = time.monotonic() + 30
            while slack.views_opened() < declares:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{declares - slack.views_opened()} declare modals never opened")
                await asyncio.sleep(0.002)

        async def one_run() -> None:
            for c in concurrencies:
                async with Connections(bare_port, c) as bare, Connections(sitrep_port, c) as sitrep:
                    await _batches([(bare, help_body), (sitrep, help_body)], 50)  # warm both
                    bare_s, help_s, bare_declare_s, declare_s = await _batches(
                        [(bare, help_body), (sitrep, help_body), (bare, declare), (sitrep, declare)], requests(c), settled
                    )
                    results[c].append((p99(bare_s), p99(help_s), p99(bare_declare_s), p99(declare_s)))
            top = max(concurrencies)
            bare_cpu, sitrep_cpu = cpu_seconds(apps.bare_pid), cpu_seconds(apps.sitrep_pid)
            first = await _sustained(bare_port, top, help_body, sustained // 2)
            mine = await _sustained(sitrep_port, top, help_body, sustained)
            second = await _sustained(bare_port, top, help_body, sustained // 2)
            rates.append(((first + second) / 2, mine))
            bare_cpu = (cpu_seconds(apps.bare_pid) - bare_cpu) / (sustained // 2 * 2)
            cpu.append((bare_cpu, (cpu_seconds(apps.sitrep_pid) - sitrep_cpu) / sustained))

        for _ in range(runs):
            asyncio.run(one_run())
        problems = slack.violations
    load_after = os.getloadavg()
    for c in concurrencies:
        rows = results[c]
        print(
            f"ack p99, {c:>2} at once, {requests(c)} each: bare Bolt {mmm([r[0] for r in rows])} ms; "
            f"sitrep /incident help {mmm([r[1] for r in rows])} ms, ratio {mmm([r[1] / r[0] for r in rows], 1, '{:.2f}')}×; "
            f"/incident declare (its modal opened after the ack): bare Bolt {mmm([r[2] for r in rows])} ms, "
            f"sitrep {mmm([r[3] for r in rows])} ms, ratio {mmm([r[3] / r[2] for r in rows], 1, '{:.2f}')}×"
        )
    print(
        f"sustained, {max(concurrencies)} connections: bare Bolt {mmm([r[0] for r in rates], 1, '{:.0f}')} commands/s; "
        f"sitrep {mmm([r[1] for r in rates], 1, '{:.0f}')} commands/s, "
        f"ratio {mmm([r[1] / r[0] for r in rates], 1, '{:.2f}')}×"
    )
    print(
        f"  CPU per command (the app's process, user+system): bare Bolt {mmm([c[0] for c in cpu], 1e6, '{:.0f}')} µs; "
        f"sitrep {mmm([c[1] for c in cpu], 1e6, '{:.0f}')} µs, ratio {mmm([c[1] / c[0] for c in cpu], 1, '{:.2f}')}×"
    )
    print(f"  load average (1/5/15 min) before {load_before}, after {load_after}; fake Slack violations: {problems or 'none'}")


def bench_submit(runs: int, n: int = 100) -> None:
    """The ack of a declare's Submit, one at a time, each let finish before the next (its
    announcement paced at Slack's 1 per second per channel: 300 each took 14 minutes)."""
    from tests.support.fakes.signing import interaction_body  # noqa: PLC0415
    from tests.support.harness import last_view, submission_payload  # noqa: PLC0415
    from tests.support.incidents import declare_values  # noqa: PLC0415

    load_before = os.getloadavg()
    with two_replicas() as apps:
        sitrep_port, bare_port, slack, sp = apps.sitrep_port, apps.bare_port, apps.slack, apps.sp

        async def measure() -> list[tuple[list[float], list[float]]]:
            async with Connections(sitrep_port, 1) as sitrep, Connections(bare_port, 1) as bare:
                await sitrep.post(0, declare_body())
                modal = slack.wait_for(lambda: slack.calls_to("views.open") and last_view(slack))
                made, results = 0, []

                def submission(i: int) -> str:
                    """Another person's Submit each time: its own view ID and title (not a replay)."""
                    return interaction_body(submission_payload({**modal, "id": f"VB{i}"}, declare_values(title=f"Outage {i}")))

                for _ in range(runs):
                    bare_s, submit_s = [], []
                    for _ in range(n):
                        bare_s.append(await bare.post(0, submission(made)))
                        submit_s.append(await sitrep.post(0, submission(made)))
                        made += 1
                        slack.wait_for(
                            lambda made=made: len(sp.incidents) >= made and len(slack.ephemerals()) >= made, timeout=15
                        )
                    results.append((sorted(bare_s), sorted(submit_s)))
                return results

        results = asyncio.run(measure())
    load_after = os.getloadavg()
    bares = [p99(b) for b, _ in results]
    submits = [p99(s) for _, s in results]
    medians = [(statistics.median(b), statistics.median(s)) for b, s in results]
    print(
        f"submit ack over {n} declare submissions, p99: bare Bolt {mmm(bares)} ms; sitrep (draft kept before the ack) "
        f"{mmm(submits)} ms, ratio {mmm([s / b for b, s in zip(bares, submits, strict=True)], 1, '{:.2f}')}×"
    )
    print(
        f"  medians: bare Bolt {mmm([m[0] for m in medians])} ms; sitrep {mmm([m[1] for m in medians])} ms, "
        f"ratio {mmm([m[1] / m[0] for m in medians], 1, '{:.2f}')}×; load average before {load_before}, after {load_after}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=None)
    parser.add_argument(
        "--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 10, 50], help="requests at once (ack)"
    )
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--slack-url", help=argparse.SUPPRESS)
    parser.add_argument("what", nargs="*", default=["sync", "picker", "ack", "submit"])
    args = parser.parse_args()
    if args.what == ["serve-bare"]:  # the bench's own child process
        serve_bare(args.port, args.slack_url)
        return
    if "sync" in args.what:
        bench_sync(args.runs, args.sizes or [1000, 10000, 50000])
    if "picker" in args.what:
        bench_picker(args.runs, args.sizes or [10, 1000, 10000])
    if "ack" in args.what:
        bench_ack(args.runs, args.concurrency)
    if "submit" in args.what:
        bench_submit(args.runs)


if __name__ == "__main__":
    main()
