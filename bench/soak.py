"""Soak under crashes, run by hand: `.venv/bin/python bench/soak.py [--declares 30] [--windows 6]`.

`sitrep run` as a real process against the fake Slack and the fake status page (the test
suite's fakes, on loopback), while people declare incidents and schedule maintenance windows
whose reminders fall due during the run, and the bot is killed with SIGKILL and started again
at random moments. The people act as Slack's users do: a slash command or a form Slack could
not deliver (the bot was down) is shown to them as an error, so they try again; a form Slack
delivered (HTTP 200, the modal closed) is theirs to hear about.

At the end it counts, and exits 1 if any is above 0:

* **orphans upstream**: incidents and windows on the status page that sitrep neither stored
  nor told their author about as "outcome unknown";
* **duplicates in Slack**: an announcement, or a reminder (heads-up, started, ended) of one
  window, posted more than once;
* **people never told**: a submission Slack delivered whose author got no answer at all
  (success, failure or "outcome unknown"; ephemeral or DM).

Each person is a distinct Slack user, so any private answer to them is about their one
submission. The bot's output is kept in the run's folder (printed at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.slack.posts import PostTag  # noqa: E402
from handlers.incident.ids import Action as IncidentAction  # noqa: E402
from handlers.incident.ids import Block as IncidentBlock  # noqa: E402
from handlers.maintenance.ids import Action as WindowAction  # noqa: E402
from handlers.maintenance.ids import Block as WindowBlock  # noqa: E402
from tests.support.fakes.signing import command_body, interaction_body, new_trigger_id, slack_signature_headers  # noqa: E402
from tests.support.fakes.slack_api import FakeSlack  # noqa: E402
from tests.support.fakes.statuspage import FakeStatusPage  # noqa: E402
from tests.support.harness import (  # noqa: E402
    SIGNING_SECRET,
    chose,
    free_port,
    picked_time,
    submission_payload,
    typed,
)
from tests.support.process import SPEC_VARIABLES, poll, start_sitrep, wait_healthy  # noqa: E402

CHANNEL = "C0SITREP"
UNKNOWN_WORDS = ("outcome unknown", "outcome is unknown", "may have gone through", "may have reached")


class CommittingStatusPage(FakeStatusPage):
    """The fake status page, whose changes take effect before its slow answer: a real server
    that has committed a create keeps it when the client vanishes while the answer is on its
    way (the base fake's `latency` comes before the change, so a killed bot creates nothing).
    The answer's wait is cancelled with the client; the change stands."""

    answer_latency = 0.0

    @web.middleware
    async def _middleware(self, request, handler):
        response = await super()._middleware(request, handler)
        if self.answer_latency > 0:
            await asyncio.sleep(self.answer_latency)
        return response


@dataclass
class Submission:
    """One person's form, as Slack delivered it (or never could)."""

    user: str
    title: str
    kind: str  # "declare" or "schedule"
    delivered: bool = False
    attempts: int = 0
    window_end: datetime | None = None


class Bot:
    """The bot process, killed and restarted by `chaos`; its output goes to `log`."""

    def __init__(self, env: dict[str, str], cwd: Path, log: Path):
        self.env, self.cwd, self.log = env, cwd, log
        self.base = f"http://127.0.0.1:{env['PORT']}"
        self.process: subprocess.Popen | None = None
        self.kills = 0
        self.lock = threading.Lock()

    def start(self) -> None:
        process = start_sitrep(self.env, self.cwd)
        threading.Thread(target=self._drain, args=(process,), daemon=True).start()
        self.process = process
        try:
            wait_healthy(self.base, process, timeout=30)
        except AssertionError:
            raise SystemExit(f"the bot did not start (exit {process.poll()}); see {self.log}") from None

    def _drain(self, process: subprocess.Popen) -> None:
        """Read the process's output as it comes (a full pipe would stall the bot)."""
        with self.log.open("a") as out:
            out.write(f"--- started pid {process.pid} at {datetime.now(UTC):%H:%M:%S.%f}\n")
            for line in process.stdout:
                out.write(line)

    def kill(self) -> None:
        with self.lock:
            if self.process is not None and self.process.poll() is None:
                self.process.send_signal(signal.SIGKILL)
                self.process.wait()
                self.kills += 1

    def restart(self) -> None:
        with self.lock:
            self.start()

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def post(self, body: str) -> httpx.Response | None:
        """What Slack does with a request: None when the bot did not answer (Slack shows the
        person an error after 3 s)."""
        headers = {"Content-Type": "application/x-www-form-urlencoded"} | slack_signature_headers(SIGNING_SECRET, body)
        try:
            answer = httpx.post(f"{self.base}/slack/events", content=body, headers=headers, timeout=3)
        except httpx.TransportError:
            return None
        return answer if answer.status_code == 200 else None


def declare_values(title: str) -> dict:
    return {
        IncidentBlock.TITLE: {IncidentAction.TITLE: typed(title)},
        IncidentBlock.DESCRIPTION: {IncidentAction.DESCRIPTION: typed(f"soak: {title}")},
        IncidentBlock.STATUS: {IncidentAction.STATUS: chose("Investigating")},
        IncidentBlock.IMPACT: {IncidentAction.IMPACT: chose("Major Outage")},
    }


def schedule_values(title: str, start: datetime, end: datetime) -> dict:
    return {
        WindowBlock.TITLE: {WindowAction.TITLE: typed(title)},
        WindowBlock.DESCRIPTION: {WindowAction.DESCRIPTION: typed(f"soak: {title}")},
        WindowBlock.START: {WindowAction.START: picked_time(start)},
        WindowBlock.END: {WindowAction.END: picked_time(end)},
    }


def act(bot: Bot, slack: FakeSlack, sub: Submission, values, give_up: float) -> None:
    """One person: the command until the form opens, then Submit until Slack delivers it."""
    command = "/incident" if sub.kind == "declare" else "/maintenance"
    while time.monotonic() < give_up:
        trigger = new_trigger_id()
        if bot.post(command_body(command, f"{sub.kind} {sub.title}", user_id=sub.user, trigger_id=trigger)) is None:
            time.sleep(0.3)
            continue
        view = poll(lambda t=trigger: [c["view"] for c in slack.calls_to("views.open") if c["trigger_id"] == t], 3)
        if not view:
            continue  # killed between the ack and the form: the person runs the command again
        view = view[0] if isinstance(view[0], dict) else json.loads(view[0])
        body = interaction_body(submission_payload(view, values(), user=sub.user))
        while time.monotonic() < give_up:
            sub.attempts += 1
            answer = bot.post(body)
            if answer is not None:
                if '"errors"' in answer.text:
                    raise SystemExit(f"the form was refused, the soak's values are wrong: {answer.text}")
                sub.delivered = True
                return
            time.sleep(0.3)  # Slack showed an error in the form; the person presses Submit again
        return


def chaos(bot: Bot, until: threading.Event, rng: random.Random, low: float, high: float) -> None:
    """SIGKILL after a random uptime, start again at once, until `until` is set."""
    while not until.wait(rng.uniform(low, high)):
        bot.kill()
        bot.restart()


def answers_to(slack: FakeSlack, user: str) -> list[str]:
    private = [e for e in slack.calls_to("chat.postEphemeral") if e.get("user") == user]
    direct = [m for m in slack.calls_to("chat.postMessage") if m.get("channel") == user]
    return [f"{m.get('text')} {m.get('blocks')}" for m in private + direct]


def report(subs: list[Submission], slack: FakeSlack, statuspage: FakeStatusPage, db: Path) -> dict[str, int]:
    by_title = {s.title: s for s in subs}
    with sqlite3.connect(db) as conn:
        rows = list(
            conn.execute("SELECT upstream_id, title FROM incidents UNION ALL SELECT upstream_id, title FROM maintenance_windows")
        )
        stored_titles = {title for _guid, title in rows}
        stored = {guid for guid, _title in rows}
        drafts = Counter(state for (state,) in conn.execute("SELECT state FROM drafts"))

    orphans = []
    for guid, body in dict(statuspage.incidents).items():
        if guid in stored:
            continue
        author = by_title.get(body.get("Title"))
        told = answers_to(slack, author.user) if author else []
        if not any(word in text.lower() for text in told for word in UNKNOWN_WORDS):
            orphans.append(body.get("Title"))

    top_level = [m for m in slack.messages(CHANNEL) if not m.get("thread_ts")]
    announced = Counter(t for m in top_level for t in by_title if t in (m.get("text") or ""))
    reminders = Counter(
        (str(m["metadata"]["event_payload"].get("window_id")), m["metadata"]["event_payload"].get("kind"))
        for m in slack.messages(CHANNEL)
        if (m.get("metadata") or {}).get("event_type") == PostTag.REMINDER
    )
    duplicates = sum(n - 1 for n in announced.values() if n > 1) + sum(n - 1 for n in reminders.values() if n > 1)

    never_told = [s.title for s in subs if s.delivered and not answers_to(slack, s.user)]
    unannounced = sorted(t for t in stored_titles if t in by_title and t not in announced)

    print(
        f"submissions delivered: {sum(s.delivered for s in subs)} of {len(subs)} "
        f"(Submit pressed {sum(s.attempts for s in subs)} times)"
    )
    print(f"on the status page: {len(statuspage.incidents)}; stored by sitrep: {len(stored)}; drafts: {dict(drafts)}")
    print(
        f"announcements: {sum(announced.values())} for {len(announced)} titles; reminders posted: "
        f"{sum(reminders.values())} ({dict(Counter(kind for _w, kind in reminders))})"
    )
    print(f"stored but never announced (not counted): {len(unannounced)} {unannounced[:10]}")
    print(f"orphans upstream: {len(orphans)} {orphans[:10]}")
    print(
        f"duplicates in Slack: {duplicates} "
        f"{[t for t, n in announced.items() if n > 1][:5]} {[k for k, n in reminders.items() if n > 1][:5]}"
    )
    print(f"people never told: {len(never_told)} {never_told[:10]}")
    return {"orphans": len(orphans), "duplicates": duplicates, "never_told": len(never_told)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--declares", type=int, default=30, help="incident declarations (default 30)")
    parser.add_argument("--windows", type=int, default=6, help="maintenance windows with reminders due (default 6)")
    parser.add_argument("--people", type=int, default=4, help="people acting at once (default 4)")
    parser.add_argument(
        "--uptime",
        type=float,
        nargs=2,
        default=(1.0, 4.0),
        metavar=("MIN", "MAX"),
        help="seconds the bot runs between two kills, drawn uniformly (default 1 4)",
    )
    parser.add_argument(
        "--latency", type=float, default=0.2, help="seconds the status page waits before acting on a call (default 0.2)"
    )
    parser.add_argument(
        "--answer-latency", type=float, default=0.4, help="seconds it waits after acting, before answering (default 0.4)"
    )
    parser.add_argument("--settle", type=float, default=20.0, help="seconds after the last kill for recovery (default 20)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (printed, to repeat a run)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    workdir = Path(tempfile.mkdtemp(prefix="sitrep-soak-"))
    print(f"seed {seed}; folder {workdir}")

    with FakeSlack() as slack, CommittingStatusPage() as statuspage:
        statuspage.latency = args.latency
        statuspage.answer_latency = args.answer_latency
        env = {k: v for k, v in os.environ.items() if k not in SPEC_VARIABLES} | {
            "PYTHONUNBUFFERED": "1",
            "SLACK_BOT_TOKEN": slack.token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.url,
            "SITREP_CHANNEL": CHANNEL,
            "STATUSPAGE_URL": statuspage.url,
            "STATUSPAGE_API_KEY": statuspage.api_key,
            "DATABASE_URL": f"sqlite:///{workdir / 'sitrep.db'}",
            "PORT": str(free_port()),
            "SITREP_REMINDER_LEAD": "1",
            "SITREP_UPDATE_NUDGE": "0",
            "SITREP_OVERRUN_WARNING": "0",
            "SITREP_SHUTDOWN_GRACE": "5",
            "LOG_LEVEL": "WARNING",
        }
        bot = Bot(env, workdir, workdir / "bot.log")
        bot.start()

        now = datetime.now(UTC)
        subs: list[tuple[Submission, object]] = []
        for i in range(args.windows):
            # Heads-up (1 minute before) 15-45 s from now, started at 75-105 s, ended 30 s later.
            start = now + timedelta(seconds=75 + 30 * i / max(args.windows, 1))
            end = start + timedelta(seconds=30)
            sub = Submission(user=f"UW{i:05d}", title=f"soak-window-{i:03d}", kind="schedule", window_end=end)
            subs.append((sub, lambda t=sub.title, s=start, e=end: schedule_values(t, s, e)))
        for i in range(args.declares):
            sub = Submission(user=f"UD{i:05d}", title=f"soak-incident-{i:03d}", kind="declare")
            subs.append((sub, lambda t=sub.title: declare_values(t)))

        stop_chaos = threading.Event()
        killer = threading.Thread(target=chaos, args=(bot, stop_chaos, rng, *args.uptime), daemon=True)
        started = time.monotonic()
        killer.start()
        give_up = time.monotonic() + 300
        with ThreadPoolExecutor(args.people) as pool:
            list(pool.map(lambda pair: act(bot, slack, pair[0], pair[1], give_up), subs))
        # Keep killing until every reminder has fallen due, so reminders meet the kills too.
        last_end = max((s.window_end for s, _ in subs if s.window_end), default=datetime.now(UTC))
        while datetime.now(UTC) < last_end + timedelta(seconds=5):
            time.sleep(0.5)
        stop_chaos.set()
        killer.join()
        print(f"chaos: {bot.kills} kills in {time.monotonic() - started:.0f} s; settling {args.settle:g} s")
        with bot.lock:
            if bot.process is None or bot.process.poll() is not None:
                bot.start()
        time.sleep(args.settle)
        code = bot.stop()
        print(f"final SIGTERM: exit {code}; bot output in {bot.log}")
        counts = report([s for s, _ in subs], slack, statuspage, workdir / "sitrep.db")
    bad = {k: v for k, v in counts.items() if v > 0}
    print("OK: nothing orphaned, nothing twice, everyone told" if not bad else f"FAILED: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
