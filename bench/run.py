"""Benchmarks, run by hand: `python bench/run.py`. Reported in the closing notes, never
asserted in the test suite. Everything runs on loopback against the test fakes."""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydantic import SecretStr  # noqa: E402

from bot.clients.appfirst import AppFirstClient  # noqa: E402
from bot.services.maintenance import MaintenanceService  # noqa: E402
from bot.services.maintenance_forms import ScheduleForm  # noqa: E402
from bot.settings import Settings  # noqa: E402
from bot.slack.outbox import Outbox  # noqa: E402
from scheduler.reminders import run_due_reminders  # noqa: E402
from store.models import Incident  # noqa: E402
from store.states import DraftKind  # noqa: E402
from tests.support.fakes.appfirst import FakeAppFirst  # noqa: E402
from tests.support.fakes.slack_api import FakeSlack  # noqa: E402
from tests.support.fakes.statuspage import FakeStatusPage  # noqa: E402
from tests.support.harness import SIGNING_SECRET, BotUnderTest, FakeClock, home_opened  # noqa: E402


def report(name: str, samples: list[float]) -> None:
    samples = sorted(samples)
    p95 = samples[int(len(samples) * 0.95) - 1] if len(samples) >= 20 else samples[-1]
    print(f"{name:<48} n={len(samples):<4} median={statistics.median(samples) * 1000:8.1f} ms  p95={p95 * 1000:8.1f} ms")


def main() -> None:
    with FakeSlack() as slack, FakeStatusPage() as sp, FakeAppFirst() as fa, tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            slack_bot_token="xoxb-test-token",
            slack_signing_secret=SIGNING_SECRET,
            slack_api_url=slack.url,
            sitrep_channel="C0SITREP",
            statuspage_url=sp.url,
            statuspage_api_key=sp.api_key,
            database_url=f"sqlite:///{tmp}/bench.db",
        )
        clock = FakeClock(datetime(2031, 1, 1, tzinfo=timezone.utc))
        with BotUnderTest(settings, clock=clock) as bot:
            # 1. Slash-command ack: opening the declare modal (includes views.open to the fake).
            samples = []
            for _ in range(50):
                started = time.perf_counter()
                bot.command("declare DB down")
                samples.append(time.perf_counter() - started)
            report("ack: /incident declare (modal opened)", samples)

            # 2. `/incident list` answered in the ack with 400 open incidents.
            async def many():
                now = clock()
                async with bot.ctx.db.session() as session, session.begin():
                    for n in range(400):
                        session.add(
                            Incident(
                                upstream_id=f"b-{n}",
                                title=f"Incident {n}",
                                status="Investigating",
                                impact="Partial Outage",
                                channel_id="C0SITREP",
                                declared_by="U1",
                                declared_at=now,
                                updated_at=now,
                            )
                        )

            bot.run(many())
            samples = []
            for _ in range(30):
                started = time.perf_counter()
                bot.command("list")
                samples.append(time.perf_counter() - started)
            report("ack: /incident list (400 open incidents)", samples)

            service = MaintenanceService(bot.ctx)
            for n in range(40):
                start = clock() + timedelta(hours=n + 1)
                bot.run(
                    service.submit(
                        DraftKind.SCHEDULE,
                        ScheduleForm(title=f"H{n}", start=start, end=start + timedelta(hours=1)),
                        user_id="U1",
                        channel_id=None,
                    )
                )
            # 3. The home tab with those 400 open incidents and 40 windows: event → views.publish.
            samples, sizes = [], []
            for _ in range(20):
                before = len(slack.calls_to("views.publish"))
                started = time.perf_counter()
                bot.event(home_opened("U1"))
                slack.wait_for(lambda before=before: len(slack.calls_to("views.publish")) > before, timeout=30)
                samples.append(time.perf_counter() - started)
                view = slack.calls_to("views.publish")[-1]["view"]
                sizes.append((len(view["blocks"]), len(json.dumps(view).encode())))
            report("home tab: published (400 incidents, 40 windows)", samples)
            print(f"{'home tab: blocks, bytes (limits 100, 250 kB)':<48} {sizes[-1][0]} blocks, {sizes[-1][1]} bytes")

            # 4. Reminders: 200 windows whose "started" falls due at once. Unpaced: the outbox
            # sends one post a second per channel (Slack's pace), so 200 posts would take over
            # 200 s, past `bot.run`'s 30 s; this measures the bot's own cost per reminder
            # (`bench/pace.py` measures the paced burst).
            bot.ctx.outbox = Outbox(rates={})
            service = MaintenanceService(bot.ctx)
            for n in range(200):
                start = clock() + timedelta(minutes=30)
                bot.run(
                    service.submit(
                        DraftKind.SCHEDULE,
                        ScheduleForm(title=f"W{n}", start=start, end=start + timedelta(hours=1)),
                        user_id="U1",
                        channel_id=None,
                    )
                )
            clock.advance(minutes=30)
            started = time.perf_counter()
            posted = bot.run(run_due_reminders(bot.ctx))
            elapsed = time.perf_counter() - started
            print(
                f"{'reminders: 400 due at once (200 late heads-ups skipped)':<48} posted={posted} in {elapsed:.2f} s "
                f"({elapsed / max(posted, 1) * 1000:.1f} ms each)"
            )

        # 5. AppFirst: listing 3,000 windows across pages.
        now = datetime.now(timezone.utc)
        for n in range(3000):
            fa.add_window(now + timedelta(hours=n), now + timedelta(hours=n, minutes=30), reason=f"w{n}")

        async def listing(page_size: int) -> float:
            async with AppFirstClient(fa.url, fa.email, fa.api_key, page_size=page_size) as client:
                started = time.perf_counter()
                windows = await client.list_windows()
                assert len(windows) == 3000
                return time.perf_counter() - started

        for page_size in (2500, 500):
            samples = [asyncio.run(listing(page_size)) for _ in range(5)]
            report(f"appfirst: list 3,000 windows (page size {page_size})", samples)

        # 6. `/maintenance list` on AppFirst with those 3,000 windows: the ack, and the answer.
        af_settings = settings.model_copy(
            update={
                "appfirst_url": fa.url,
                "appfirst_email": fa.email,
                "appfirst_api_key": SecretStr(fa.api_key),
                "maintenance_backend": "appfirst",
                "database_url": f"sqlite:///{tmp}/bench-af.db",
            }
        )
        fa.clock = clock = FakeClock(now)
        with BotUnderTest(af_settings, clock=clock) as bot:
            acks, answers = [], []
            for _ in range(10):
                before = len(slack.ephemerals())
                started = time.perf_counter()
                bot.command("list", command="/maintenance")
                acks.append(time.perf_counter() - started)
                slack.wait_for(lambda before=before: len(slack.ephemerals()) > before, timeout=30)
                answers.append(time.perf_counter() - started)
            report("ack: /maintenance list (AppFirst, 3,000 windows)", acks)
            report("answer: /maintenance list (AppFirst, 3,000)", answers)


if __name__ == "__main__":
    main()
