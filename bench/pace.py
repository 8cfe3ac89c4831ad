"""At Slack's pace, run by hand: `python bench/pace.py [--scale 10] [--runs 3]` (`--only-429
--seeds 0,1,2 --trace`: the 429 case alone, for the seeds given, with each post the outbox sent).

A fake Slack enforcing the documented tiers (chat.postMessage 1/s per channel, burst 5;
chat.update 50/min, burst 10), then 100 windows starting within one minute in one channel,
with and without 10% of calls answered 429. Reports the lateness of the last "started"
reply and the share tagged "posted late", against the floor the tiers impose (the least
time any sender could take: a token bucket over the due times). `--scale k` runs the tiers,
the bot's buckets and the clock k× faster and reports in Slack seconds. Then the cost of
one reminder from due to posted, against its two Slack calls, with no pacing.

The fake's Retry-After is whole seconds of real time (HTTP allows no less), so at `--scale k`
each 429 costs k times more Slack time than it would: measure the 429 case at scale 1."""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.services.maintenance import MaintenanceService  # noqa: E402
from bot.services.maintenance_forms import ScheduleForm  # noqa: E402
from bot.settings import Settings  # noqa: E402
from bot.slack.channel import unpaced_client  # noqa: E402
from bot.slack.outbox import SLACK_RATES, Outbox, Rate  # noqa: E402
from scheduler.reminders import LATE_AFTER, run_due_reminders  # noqa: E402
from store.states import DraftKind  # noqa: E402
from tests.support.fakes.slack_api import FakeSlack, Tiers  # noqa: E402
from tests.support.fakes.statuspage import FakeStatusPage  # noqa: E402
from tests.support.harness import SIGNING_SECRET, BotUnderTest, FakeClock  # noqa: E402

T0 = datetime(2031, 1, 1, tzinfo=timezone.utc)
N = 100
CHANNEL = "C0SITREP"


def floor(due: list[float], per_second: float, burst: int) -> list[float]:
    """The earliest each post could land under a token bucket (seconds after T0+30 min)."""
    tokens, last, out = float(burst), 0.0, []
    for d in sorted(due):
        t = max(d, last)
        tokens = min(burst, tokens + (t - last) * per_second)
        if tokens < 1:
            t += (1 - tokens) / per_second
            tokens = 1.0
        tokens -= 1
        last = t
        out.append(t)
    return out


class RealClock:
    """T0 + elapsed machine time × scale: lateness is measured, not simulated."""

    def __init__(self, scale: float):
        self.scale, self.base, self.offset = scale, time.monotonic(), timedelta(0)

    def __call__(self) -> datetime:
        return T0 + self.offset + timedelta(seconds=(time.monotonic() - self.base) * self.scale)


class TracedOutbox(Outbox):
    """The bot's outbox, noting each send (`--trace`): when, which method, the answer, the
    tokens its bucket had left, how long the method was then paused, and how many posts
    waited in the queue."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.trace: list[tuple[float, str, int, bool, float, float, int]] = []

    async def _send(self, channel, job):  # noqa: ANN001 - bench only
        sent_at, refused = self.monotonic(), self.rate_limited
        bucket = self._buckets.get((channel, job.method))
        tokens = bucket.tokens if bucket is not None else float("nan")
        waiting = sum(1 for j in self._queues.get(channel, []) if j.method == "chat.postMessage")
        await super()._send(channel, job)
        paused = self._paused.get((channel, job.method), 0.0) - self.monotonic()
        self.trace.append((sent_at, job.method, job.attempts, self.rate_limited > refused, tokens, paused, waiting))


def print_trace(outbox: TracedOutbox, m0: float, scale: float, dues: list[float]) -> None:
    """postMessage sends, one a line, next to the floor's schedule; and a summary of updates."""
    posts = [t for t in outbox.trace if t[1] == "chat.postMessage"]
    accepted = 0
    fl = floor(dues, 1.0, 5)
    for at, _, attempts, refused, tokens, paused, waiting in posts:
        when = (at - m0) * scale
        mark = "429" if refused else "ok "
        ahead = f"floor #{accepted}: {fl[accepted]:6.2f}" if not refused and accepted < len(fl) else ""
        print(
            f"    {when:7.2f} {mark} try {attempts} tokens left {tokens:5.2f} paused {max(paused, 0):4.2f}"
            f" queued {waiting} {ahead}"
        )
        accepted += not refused
    updates = [t for t in outbox.trace if t[1] == "chat.update"]
    print(f"    chat.update: {len(updates)} sends, {sum(t[3] for t in updates)} answered 429")


def one_run(scale: float, random_429: float, seed: int, trace: bool = False) -> tuple[float, float, float, float, int]:
    tiers = Tiers(
        post_per_second=1.0 * scale,
        post_burst=5,
        update_per_minute=50 * scale,
        update_burst=10,
        speedup=scale,
        random_429=random_429,
        seed=seed,
    )
    with FakeSlack() as slack, FakeStatusPage() as sp, tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            slack_bot_token="xoxb-test-token",
            slack_signing_secret=SIGNING_SECRET,
            slack_api_url=slack.url,
            sitrep_channel=CHANNEL,
            statuspage_url=sp.url,
            statuspage_api_key=sp.api_key,
            sitrep_reminder_lead=0,
            database_url=f"sqlite:///{tmp}/bench.db",
        )
        clock = RealClock(scale)
        with BotUnderTest(settings, clock=clock) as bot:
            bot.ctx.outbox = Outbox(rates={})  # the announcements, half an hour before: not measured
            service = MaintenanceService(bot.ctx)
            start0 = T0 + timedelta(minutes=30)
            dues = [i * 60 / N for i in range(N)]  # starts spread over one minute
            for i, d in enumerate(dues):
                start = start0 + timedelta(seconds=d)
                bot.run(
                    service.submit(
                        DraftKind.SCHEDULE,
                        ScheduleForm(title=f"W{i}", start=start, end=start + timedelta(hours=1)),
                        user_id="U1",
                        channel_id=None,
                    )
                )
            slack.forget_calls()
            # Slack's meters and the bot's buckets both start rested, as half an hour after the
            # announcements they would be (the bot's used to start drained by them: ~5 s lost).
            slack.enforce(tiers)
            bot.ctx.outbox = (TracedOutbox if trace else Outbox)(
                {m: Rate(r.per_second * scale, r.burst) for m, r in SLACK_RATES.items()}
            )
            clock.offset += start0 - clock()  # jump to the first start; time runs on from there
            m0 = time.monotonic()

            async def drive():  # the scheduler's job, woken every 0.2 Slack-seconds
                while sum(1 for _, m, a in slack.accepted if m == "chat.postMessage") < N:
                    await run_due_reminders(bot.ctx)
                    await asyncio.sleep(0.2 / scale)
                await bot.ctx.channel.settle()

            # Not `bot.run`, whose 30 s bound is shorter than a burst at Slack's real pace
            # (--scale 1: 100 posts at one a second).
            asyncio.run_coroutine_threadsafe(drive(), bot.loop).result(30 + 600 / scale)
            if trace:
                print(f"  seed {seed}, {random_429:.0%} random 429s:")
                print_trace(bot.ctx.outbox, m0, scale, dues)
            posts = sorted((at - m0) * scale for at, m, _ in slack.accepted if m == "chat.postMessage")
            late = sum(1 for r in bot.run(_late_flags(bot))) / N
            fl = floor(dues, 1.0, 5)
            forced = sum(1 for f, d in zip(fl, dues, strict=True) if f - d > LATE_AFTER.total_seconds()) / N
            return posts[-1] - dues[-1], fl[-1] - dues[-1], late, forced, slack.rate_limited


async def _late_flags(bot):
    from sqlalchemy import select  # noqa: PLC0415 - bench only

    from store.models import Reminder  # noqa: PLC0415

    async with bot.ctx.db.session() as session:
        return [r for r in (await session.execute(select(Reminder).where(Reminder.late.is_(True)))).scalars()]


def reminder_cost(runs: int, n: int = 50, database_url: str | None = None) -> None:
    """#14 item 4: the reminder path from "due" to "posted" (claim, read the window, post,
    record, refresh the parent) with no pacing, against the two Slack calls it makes (the
    same requests, replayed with the same client): per reminder, min/median/max of `runs`."""
    with FakeSlack() as slack, FakeStatusPage() as sp, tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            slack_bot_token="xoxb-test-token",
            slack_signing_secret=SIGNING_SECRET,
            slack_api_url=slack.url,
            sitrep_channel=CHANNEL,
            statuspage_url=sp.url,
            statuspage_api_key=sp.api_key,
            sitrep_reminder_lead=0,
            database_url=database_url or f"sqlite:///{tmp}/bench.db",
        )
        clock = FakeClock(T0)
        with BotUnderTest(settings, clock=clock) as bot:
            bot.ctx.outbox = Outbox(rates={})  # no pacing: the bot's own cost
            client = unpaced_client(bot.ctx.slack)
            service = MaintenanceService(bot.ctx)
            paths, calls, cpus, fakes = [], [], [], []
            for run in range(runs + 1):  # the first pass warms caches and connections
                start = clock() + timedelta(minutes=30)
                for i in range(n):
                    bot.run(
                        service.submit(
                            DraftKind.SCHEDULE,
                            ScheduleForm(title=f"R{run}-{i}", start=start, end=start + timedelta(hours=1)),
                            user_id="U1",
                            channel_id=None,
                        )
                    )
                clock.set(start)
                slack.forget_calls()
                started, cpu, fake_cpu = time.perf_counter(), time.process_time(), _thread_cpu(slack)
                posted = bot.run(run_due_reminders(bot.ctx))
                path, path_cpu = (time.perf_counter() - started) / n, (time.process_time() - cpu) / n
                path_fake = (_thread_cpu(slack) - fake_cpu) / n
                assert posted == n, posted
                made = [(m, a) for _, m, a in slack.accepted if m in ("chat.postMessage", "chat.update")]
                assert len(made) == 2 * n, [m for m, _ in made]

                async def replay(made=made):
                    began = time.perf_counter()
                    for method, args in made:
                        await client.api_call(method, json=args)
                    return time.perf_counter() - began

                cpu, fake_cpu = time.process_time(), _thread_cpu(slack)
                direct = bot.run(replay()) / n
                direct_cpu = (time.process_time() - cpu) / n
                direct_fake = (_thread_cpu(slack) - fake_cpu) / n
                if run:
                    paths.append(path)
                    calls.append(direct)
                    cpus.append((path_cpu, direct_cpu))
                    fakes.append((path_fake, direct_fake))
                clock.advance(hours=2)  # past their ends; the ended reminders are not measured
                bot.run(run_due_reminders(bot.ctx))
    ratios = [p / c for p, c in zip(paths, calls, strict=True)]
    fmt = lambda xs, k=1000: "/".join(f"{x * k:.2f}" for x in (min(xs), statistics.median(xs), max(xs)))  # noqa: E731
    print(
        f"reminder due → posted, no pacing, {n} a run ({runs} runs): {fmt(paths)} ms each; "
        f"its two Slack calls alone {fmt(calls)} ms; ratio {fmt(ratios, 1)}×"
    )
    # CPU of the whole process (the fake Slack's thread included, on both sides): steadier
    # than wall time on a shared machine.
    print(
        f"  the same in CPU time: {fmt([c[0] for c in cpus])} ms vs {fmt([c[1] for c in cpus])} ms; "
        f"ratio {fmt([a / b for a, b in cpus], 1)}×"
    )
    # The fake Slack serves in this process (one thread, sharing the GIL): its CPU counts on
    # both sides, and the parent's edit it serves while the next reminder is claimed holds
    # that claim up (out of process, on another core, the two would overlap). The bot's
    # side alone: the process's CPU less the fake's thread, against the client's for the calls.
    own = [(p - fp, d - fd) for (p, d), (fp, fd) in zip(cpus, fakes, strict=True)]
    print(
        f"  the fake Slack's thread: {fmt([f[0] for f in fakes])} ms of the path's CPU, "
        f"{fmt([f[1] for f in fakes])} ms of the calls'; without it {fmt([o[0] for o in own])} ms vs "
        f"{fmt([o[1] for o in own])} ms; ratio {fmt([a / b for a, b in own], 1)}×"
    )


def _thread_cpu(slack: FakeSlack) -> float:
    """CPU seconds the fake Slack's server thread has used (Linux: /proc), 0 elsewhere."""
    thread = slack._thread  # noqa: SLF001 - bench only: the one thread the fake serves on
    try:
        fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)[1].split()
    except (AttributeError, OSError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cost-only", action="store_true", help="only the reminder path's cost (#14 item 4)")
    parser.add_argument("--only-429", action="store_true", help="only the case with 10%% random 429s")
    parser.add_argument(
        "--seeds", type=lambda s: [int(x) for x in s.split(",")], help="the fake's seeds, comma-separated (default: 0..runs-1)"
    )
    parser.add_argument("--trace", action="store_true", help="print every post the outbox sent, and when")
    parser.add_argument(
        "--cost-database",
        default=None,
        help="DATABASE_URL for the reminder cost (an empty database; default: a fresh SQLite file)",
    )
    args = parser.parse_args()
    seeds = args.seeds if args.seeds is not None else list(range(args.runs))
    if not args.only_429:
        reminder_cost(args.runs, database_url=args.cost_database)
    if args.cost_only:
        return
    for share in (0.1,) if args.only_429 else (0.0, 0.1):
        results = [one_run(args.scale, share, seed, args.trace) for seed in seeds]
        last = [r[0] for r in results]
        print(f"{N} windows in one minute, {share:.0%} random 429s, scale {args.scale:g} (seeds {seeds}):")
        print(
            f"  last 'started' reply late by min/median/max {min(last):.1f}/{statistics.median(last):.1f}/{max(last):.1f} s"
            f"; floor {results[0][1]:.1f} s; ratio {max(last) / max(results[0][1], 1e-9):.2f}×"
            f" (each seed: {', '.join(f'{x / max(results[0][1], 1e-9):.2f}×' for x in last)})"
        )
        span = 60 * (N - 1) / N  # the last due time, seconds after the first (dues are i·60/N)
        done = [(r[0] + span) / (r[1] + span) for r in results]
        print(
            f"  all posted ÷ the floor's all-posted (both from the first start) min/median/max "
            f"{min(done):.3f}/{statistics.median(done):.3f}/{max(done):.3f}"
        )
        print(
            f"  tagged late {[f'{r[2]:.0%}' for r in results]}; forced by the floor {results[0][3]:.0%};"
            f" 429s answered {[r[4] for r in results]}"
        )


if __name__ == "__main__":
    main()
