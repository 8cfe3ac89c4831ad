"""At Slack's pace: the fake Slack enforces the rate tiers (scaled up so tests take
seconds) and the bot's outbox runs just under them; reminders go through the real stack."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from slack_sdk.errors import SlackApiError
from sqlalchemy import select, update

from bot.context import shared_pace
from bot.services.maintenance import MaintenanceService
from bot.services.maintenance_forms import ScheduleForm
from bot.slack import outbox as outbox_module
from bot.slack.channel import Channel, Posted
from bot.slack.outbox import SLACK_RATES, Outbox, Rate, TokenBucket, scaled_rates
from bot.slack.posts import PostTag
from scheduler.reminders import FRESH_WINDOW, RECORD_AFTER, run_due_reminders
from store.models import MaintenanceWindow, Reminder
from store.states import DraftKind
from tests.support.dates import T0
from tests.support.fakes.slack_api import (
    EXTRA_METHOD_TIERS,
    TIER_PER_MINUTE,
    WAIT_BOUND,
    Tiers,
    default_shared_dir,
    load_method_tiers,
)
from tests.support.harness import CHANNEL, BotUnderTest, FakeClock
from tests.support.lockstep import LockstepClock

#: Slack's tiers sped up 20×: postMessage 20/s per channel (burst 3), update 10/s (burst 3).
FAST = Tiers(post_per_second=20, post_burst=3, update_per_minute=600, update_burst=3, speedup=20)
#: The bot's buckets, a little under those.
UNDER = {"chat.postMessage": Rate(per_second=18, burst=2), "chat.update": Rate(per_second=9, burst=2)}


@pytest.fixture
def clock():
    return FakeClock(T0)


@pytest.fixture
def pace():
    """The outbox's and the fake's meters' clock where a test asserts no 429 at all."""
    return LockstepClock()


def lockstep_outbox(bot, pace: LockstepClock, rates: dict[str, Rate], **kwargs) -> Outbox:
    """An outbox on `pace`, with the bot's Slack calls held in flight on it."""
    pace.watch(bot.ctx.sender)
    pace.watch(bot.ctx.slack)
    return Outbox(rates, monotonic=pace.monotonic, sleep=pace.sleep, **kwargs)


@pytest.fixture
def bot(settings, clock):
    with BotUnderTest(settings.model_copy(update={"sitrep_reminder_lead": 0}), clock=clock) as running:
        running.ctx.outbox = Outbox(UNDER)
        yield running


def schedule(bot, *, start_in=30, minutes=60, title="DB upgrade"):
    now = bot.ctx.clock()
    form = ScheduleForm(title=title, start=now + timedelta(minutes=start_in), end=now + timedelta(minutes=start_in + minutes))
    return bot.run(MaintenanceService(bot.ctx).submit(DraftKind.SCHEDULE, form, user_id="U123", channel_id="C123")).record


def reminder_kind(args) -> str | None:
    meta = args.get("metadata") or {}
    if isinstance(meta, str):
        meta = json.loads(meta)
    return (meta.get("event_payload") or {}).get("kind") if meta.get("event_type") == PostTag.REMINDER else None


def test_a_burst_of_windows_is_paced_under_the_tiers_and_every_parent_ends_current(bot, slack, clock, pace):
    windows = [schedule(bot, title=f"Window {i}") for i in range(20)]
    bot.ctx.outbox = lockstep_outbox(bot, pace, UNDER)
    slack.forget_calls()
    slack.enforce(FAST, clock=pace.monotonic)
    clock.advance(minutes=30)
    assert bot.run(run_due_reminders(bot.ctx)) == 20
    assert slack.rate_limited == 0  # paced ahead of the limits: no 429 at all
    started = [args for _, method, args in slack.accepted if method == "chat.postMessage" and reminder_kind(args)]
    assert len(started) == 20
    for window in windows:  # no parent left showing an old state
        parent = slack.message(CHANNEL, window.message_ts)
        assert "In progress" in json.dumps(parent["blocks"]), window.id


def test_started_replies_go_before_heads_ups_and_replies_before_edits(settings, slack, clock, pace):
    with BotUnderTest(settings.model_copy(update={"sitrep_reminder_lead": 15}), clock=clock) as bot:
        bot.ctx.outbox = lockstep_outbox(bot, pace, UNDER)
        for i in range(3):
            schedule(bot, start_in=20, title=f"Soon {i}")
        for i in range(3):
            schedule(bot, start_in=5, title=f"Now {i}")
        clock.advance(minutes=5)  # the first three need a heads-up, the rest have started
        slack.forget_calls()
        slack.enforce(FAST, clock=pace.monotonic)
        bot.run(run_due_reminders(bot.ctx))
    sent = [(method, reminder_kind(args)) for _, method, args in slack.accepted]
    kinds = [kind for method, kind in sent if method == "chat.postMessage"]
    assert kinds[:3] == ["started"] * 3 and kinds[3:] == ["heads_up"] * 3
    assert sent[0][0] == "chat.postMessage"  # a reply before any edit


def test_a_429_pauses_only_its_method_and_the_final_state_lands(bot, slack, clock, pace):
    first, second = schedule(bot, title="First"), schedule(bot, title="Second")
    bot.ctx.outbox = lockstep_outbox(bot, pace, UNDER)
    slack.forget_calls()
    slack.enforce(FAST, clock=pace.monotonic)
    slack.fail_next("chat.update", status=429, retry_after=1)
    clock.advance(minutes=30)
    assert bot.run(run_due_reminders(bot.ctx)) == 2
    log = [(at, method, args) for at, method, args in slack.accepted]
    replies = [at for at, method, args in log if method == "chat.postMessage"]
    edits = [at for at, method, args in log if method == "chat.update"]
    # the second window's reply did not wait for the first one's paused edit
    assert len(replies) == 2 and len(edits) == 2
    assert replies[1] < max(edits)
    assert max(edits) - replies[0] >= 1  # the paused edit waited for Retry-After
    for window in (first, second):
        assert "In progress" in json.dumps(slack.message(CHANNEL, window.message_ts)["blocks"])


def test_edits_of_one_parent_queued_together_become_one_update_with_the_latest(bot, slack):
    window = schedule(bot)
    at = Posted(CHANNEL, window.message_ts)
    slack.forget_calls()
    bot.ctx.outbox = Outbox({"chat.update": Rate(per_second=2, burst=1)})

    async def three_changes():
        channel = bot.ctx.channel
        await channel.refresh(at, ("one", [{"type": "section", "text": {"type": "mrkdwn", "text": "one"}}]))
        for text in ("two", "three"):
            message = (text, [{"type": "section", "text": {"type": "mrkdwn", "text": text}}])

            async def build(message=message):
                return message

            channel.refresh_later(at, build, what="test")
        await channel.settle()

    bot.run(three_changes())
    updates = slack.calls_to("chat.update")
    assert [u["text"] for u in updates] == ["one", "three"]  # two and three merged
    assert slack.message(CHANNEL, window.message_ts)["text"] == "three"


class VirtualTime:
    """The outbox's clock, advanced only by its own sleeps: the schedule of sends is exact."""

    def __init__(self):
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def replies_sent(
    bot, slack, *, replies: int = 6, burst: int = 2, refuse=(), behind: int = 0, slack_rate: float = 1, then=(0, 0.0)
) -> list[tuple[float, bool]]:
    """`replies` queued at once in one thread, the outbox's postMessage at 1/s with `burst`:
    each attempt, when (outbox time) and whether Slack took it. The attempts numbered in
    `refuse` are answered 429 (Retry-After: 1 s), as a loaded Slack does. With `behind`,
    Slack enforces 1/s with the same burst on the outbox's clock, and another sender has
    just spent `behind` of its tokens: Slack's bucket is behind ours (`slack_rate`: Slack's
    pace for us, when slower than the outbox's). `then` = (more replies, after a quiet gap of
    so many seconds) once the first have all gone."""
    window = schedule(bot)
    at = Posted(CHANNEL, window.message_ts)
    time_ = VirtualTime()
    bot.ctx.outbox = Outbox({"chat.postMessage": Rate(per_second=1, burst=burst)}, monotonic=time_.monotonic, sleep=time_.sleep)
    sent: list[tuple[float, bool]] = []
    sender = bot.ctx.channel.sender
    post = sender.chat_postMessage

    async def timed(**kwargs):
        if len(sent) in refuse:
            slack.fail_next("chat.postMessage", status=429, retry_after=1)
        try:
            answer = await post(**kwargs)
        except SlackApiError:
            sent.append((time_.now, False))
            raise
        sent.append((time_.now, True))
        return answer

    async def run():
        if behind:
            slack.enforce(Tiers(post_per_second=slack_rate, post_burst=burst), clock=time_.monotonic)
            for _ in range(behind):
                await post(channel=CHANNEL, text="another sender")
        sender.chat_postMessage = timed
        try:
            message = ("hello", [{"type": "section", "text": {"type": "mrkdwn", "text": "hello"}}])
            await asyncio.gather(*(bot.ctx.channel.reply(at, message) for _ in range(replies)))
            more, gap = then
            if more:
                await time_.sleep(gap)
                await asyncio.gather(*(bot.ctx.channel.reply(at, message) for _ in range(more)))
        finally:
            del sender.chat_postMessage

    bot.run(run())
    return sent


def test_a_lone_429_gives_its_token_back_and_the_wait_is_caught_up_in_a_burst(bot, slack):
    # 0: refused (the token comes back); 1: the retry and the next together; then one a second.
    assert replies_sent(bot, slack, refuse={0}) == [(0, False), (1, True), (1, True), (2, True), (3, True), (4, True), (5, True)]


def test_429s_in_a_row_from_slacks_load_cost_only_their_pause(bot, slack):
    # Burst 4, then one a second; the sends due at 2 and 3 are refused one after the other.
    # Slack's word covers the retry at 3 and at 4; what accrued meanwhile goes in a burst,
    # and the last reply lands at 4, as it would with no 429 at all.
    sent = replies_sent(bot, slack, replies=8, burst=4, refuse={5, 6})
    assert sent == [(0, True)] * 4 + [(1, True), (2, False), (3, False)] + [(4, True)] * 3
    assert replies_sent(bot, slack, replies=8, burst=4) == [(0, True)] * 4 + [(1, True), (2, True), (3, True), (4, True)]


def test_slacks_bucket_behind_ours_settles_after_two_lost_bets_and_the_pace_grows_back(bot, slack):
    # Another sender has just emptied Slack's bucket (1/s, burst 2); ours is full. After each
    # pause Slack takes the call it promised; the one sent beyond it on our count is refused,
    # twice running: the bucket restarts from Slack's promise (the next call at 3, when Slack
    # said) at half the pace, which grows back with each call taken; no 429 follows.
    sent = replies_sent(bot, slack, behind=2)
    assert sent[:6] == [(0, False), (1, True), (1, False), (2, True), (2, False), (3, True)]
    assert all(ok for _, ok in sent[6:]) and slack.rate_limited == 3
    gaps = [later - earlier for (earlier, _), (later, _) in zip(sent[5:], sent[6:], strict=False)]
    assert gaps[0] == pytest.approx(1 / (0.5 * (1 + TokenBucket.MIN_SHARE)))  # half the pace, and one call's growth
    assert all(later < earlier for earlier, later in zip(gaps, gaps[1:], strict=False))  # growing back


def test_a_bet_slack_takes_ends_the_doubt(bot, slack):
    # After the refusal at 2, the retry at 3 goes on Slack's word and the send beyond it is
    # refused (a lost bet). At 4 the retry goes, and the next, a bet, is taken: the doubt
    # ends, so the refusal at 5 is no second lost bet (which would restart the bucket and
    # push the last reply to 7); its token comes back and both go at 6.
    sent = replies_sent(bot, slack, replies=10, burst=4, refuse={5, 7, 10})
    assert sent == [(0, True)] * 4 + [
        (1, True),
        (2, False),
        (3, True),
        (3, False),
        (4, True),
        (4, True),
        (5, False),
        (6, True),
        (6, True),
    ]


def test_a_bet_lost_long_ago_is_forgotten_once_slacks_word_covers_our_bucket_again(bot, slack):
    # A bet lost at 3 and no call after it a bet; after 20 quiet seconds both buckets are
    # full again and the doubt is gone, so the bet lost at 25 is the first of a new doubt,
    # not the second running (which would restart the bucket at half pace).
    sent = replies_sent(bot, slack, replies=7, burst=4, refuse={5, 7, 9, 11}, then=(8, 20.0))
    assert sent[:9] == [(0, True)] * 4 + [(1, True), (2, False), (3, True), (3, False), (4, True)]
    assert sent[9:] == [(24, False), (25, True), (25, False)] + [(26, True)] * 4 + [(27, True), (28, True), (29, True)]


def test_the_outbox_says_how_many_sends_could_go_now():
    time_ = VirtualTime()
    outbox = Outbox({"chat.postMessage": Rate(per_second=1, burst=3)}, monotonic=time_.monotonic, sleep=time_.sleep)
    assert outbox.ready(CHANNEL, "chat.update") is None  # unmetered
    assert outbox.ready(CHANNEL, "chat.postMessage") == 3
    bucket = outbox._bucket(CHANNEL, "chat.postMessage", time_.now)  # noqa: SLF001 - two sends taken
    bucket.take()
    bucket.take()
    assert outbox.ready(CHANNEL, "chat.postMessage") == 1
    outbox._paused[(CHANNEL, "chat.postMessage")] = time_.now + 1  # noqa: SLF001 - a 429's pause
    assert outbox.ready(CHANNEL, "chat.postMessage") == 0


def started_replies(slack) -> list[tuple[float, dict]]:
    return [
        (at, args) for at, method, args in slack.accepted if method == "chat.postMessage" and reminder_kind(args) == "started"
    ]


def test_a_reminder_coming_due_while_a_pass_waits_for_its_edits_is_posted_at_once(bot, slack, clock):
    """The parent edits are paced slower than replies: a pass waiting for them to land still
    posts a window's "started" the moment it comes due, not after the backlog."""
    for i in range(4):
        schedule(bot, title=f"Now {i}")
    later = schedule(bot, start_in=31, title="A minute later")
    # Edits at one every 2 s: the test's next step has seconds to spare on a loaded machine (an
    # edit held at Slack instead would hold the replies behind it: one channel, one call at a time).
    bot.ctx.outbox = Outbox({"chat.postMessage": Rate(per_second=18, burst=2), "chat.update": Rate(per_second=0.5, burst=1)})
    slack.forget_calls()
    clock.advance(minutes=30)
    pass_ = asyncio.run_coroutine_threadsafe(run_due_reminders(bot.ctx), bot.loop)
    slack.wait_for(lambda: len(started_replies(slack)) == 4)
    clock.advance(minutes=1)  # the last window starts while three edits (6 s) still wait
    assert pass_.result(30) == 5
    last_reply = max(at for at, _ in started_replies(slack))
    assert last_reply < max(at for at, method, _ in slack.accepted if method == "chat.update")
    assert "In progress" in json.dumps(slack.message(CHANNEL, later.message_ts)["blocks"])


def test_an_edit_that_waited_in_the_queue_carries_what_changed_meanwhile(bot, slack, clock):
    """A parent's edit that goes at once is built from the reminder's own write; one that
    waited behind Slack's pace reads the window again, so a change made meanwhile (here by
    another replica, straight in the database) is not overwritten by an older state."""
    first, second = schedule(bot, title="First"), schedule(bot, title="Second")
    bot.ctx.outbox = Outbox({"chat.postMessage": Rate(per_second=18, burst=2), "chat.update": Rate(per_second=0.4, burst=1)})
    slack.forget_calls()
    held = threading.Event()  # the first edit is held at Slack until the rename is in: no race with the pace
    slack.delay_next("chat.update", held)
    clock.advance(minutes=30)
    pass_ = asyncio.run_coroutine_threadsafe(run_due_reminders(bot.ctx), bot.loop)
    try:
        slack.wait_for(lambda: slack.held == 1)  # the second edit waits behind it, then 2.5 s for its turn

        async def rename():
            async with bot.ctx.db.session() as session, session.begin():
                await session.execute(
                    update(MaintenanceWindow).where(MaintenanceWindow.id == second.id).values(title="Second, renamed")
                )

        bot.run(rename())
    finally:
        held.set()
    assert pass_.result(30) == 2
    assert [json.dumps(u["blocks"]).count("renamed") > 0 for u in slack.calls_to("chat.update")] == [False, True]
    for window in (first, second):
        assert "In progress" in json.dumps(slack.message(CHANNEL, window.message_ts)["blocks"])


def reminder_rows(bot, kind="started") -> dict[int, Reminder]:
    """Each window's reminder of one kind, by window id."""

    async def read():
        async with bot.ctx.db.session() as session:
            return {r.window_id: r for r in (await session.execute(select(Reminder).where(Reminder.kind == kind))).scalars()}

    return bot.run(read())


def test_a_window_changed_after_its_batch_was_claimed_is_read_again_before_its_post(bot, slack, clock):
    """Reminders are claimed a run at a time with their windows; one whose post waited its
    turn longer than `FRESH_WINDOW` reads its window again, so a rename (here by another
    replica, straight in the database) or a cancellation made meanwhile is what is posted."""
    first, renamed, cancelled = schedule(bot, title="First"), schedule(bot, title="Second"), schedule(bot, title="Third")
    bot.ctx.outbox = Outbox({"chat.postMessage": Rate(per_second=1 / (FRESH_WINDOW + 0.5), burst=1)})
    slack.forget_calls()
    held = threading.Event()  # the first reply is held at Slack until the change is in: no race with the pace
    slack.delay_next("chat.postMessage", held)
    clock.advance(minutes=30)
    pass_ = asyncio.run_coroutine_threadsafe(run_due_reminders(bot.ctx), bot.loop)
    try:
        slack.wait_for(lambda: slack.held == 1)

        async def change():
            async with bot.ctx.db.session() as session, session.begin():
                await session.execute(
                    update(MaintenanceWindow).where(MaintenanceWindow.id == renamed.id).values(title="Second, renamed")
                )
                await session.execute(
                    update(MaintenanceWindow).where(MaintenanceWindow.id == cancelled.id).values(state="cancelled")
                )

        bot.run(change())
    finally:
        held.set()
    assert pass_.result(30) == 2
    replies = [json.dumps(args["blocks"]) for _, args in started_replies(slack)]
    assert len(replies) == 2 and "First" in replies[0] and "Second, renamed" in replies[1]
    rows = reminder_rows(bot)
    assert (rows[renamed.id].state, rows[cancelled.id].state) == ("posted", "skipped")
    assert rows[first.id].state == "posted"


def test_a_posted_reminder_is_recorded_while_the_next_post_still_waits_its_turn(bot, slack, clock):
    """Outcomes are written together, but none waits for the posts after it: the first
    window is "In progress" in the store (and its parent edited) while the second reply,
    past its turn, is still held at Slack."""
    first, second = schedule(bot, title="First"), schedule(bot, title="Second")
    # The parent's edit must be queued before the second reply's turn comes (the channel's
    # calls go one at a time, and that reply is held): the turn comes 8 s after the record.
    bot.ctx.outbox = Outbox({"chat.postMessage": Rate(per_second=1 / (RECORD_AFTER + 8), burst=1)})
    slack.forget_calls()
    held = threading.Event()  # the second reply, once its turn comes, is held at Slack until the test lets it go
    slack.delay_next("chat.postMessage", 0)
    slack.delay_next("chat.postMessage", held)
    clock.advance(minutes=30)
    pass_ = asyncio.run_coroutine_threadsafe(run_due_reminders(bot.ctx), bot.loop)
    try:
        slack.wait_for(lambda: reminder_rows(bot)[first.id].state == "posted")
        assert len(started_replies(slack)) == 1  # the second is not in Slack yet
        slack.wait_for(lambda: "In progress" in json.dumps(slack.message(CHANNEL, first.message_ts)["blocks"]))
    finally:
        held.set()
    assert pass_.result(30) == 2
    assert reminder_rows(bot)[second.id].state == "posted"


def test_a_pass_stopped_mid_batch_records_what_it_posted_and_gives_the_rest_back(bot, slack, clock):
    """Stopped while a claimed run waits for Slack's pace: what reached Slack is recorded;
    a reply the stop caught between Slack taking it and its outcome being noted is let finish
    and recorded; the reply waiting in the queue and those never tried are pending again at
    once, not held until their claims go stale. Afterwards each window has one reply."""
    windows = [schedule(bot, title=f"Window {i}") for i in range(4)]
    # The third reply's turn is 8 s after the second's: the stop comes well before it on a
    # loaded machine (one held at Slack instead would be in flight, and a stop lets those finish).
    slow = bot.ctx.outbox = Outbox({"chat.postMessage": Rate(per_second=0.125, burst=2)})
    slack.forget_calls()
    clock.advance(minutes=30)
    pass_ = asyncio.run_coroutine_threadsafe(run_due_reminders(bot.ctx), bot.loop)
    slack.wait_for(lambda: len(started_replies(slack)) == 2)
    bot.loop.call_soon_threadsafe(pass_.cancel)
    states = lambda: [reminder_rows(bot)[w.id].state for w in windows]  # noqa: E731
    slack.wait_for(lambda: states() == ["posted", "posted", "pending", "pending"])
    assert all(reminder_rows(bot)[w.id].claimed_by is None for w in windows[2:])
    # Claimed a run at a time, only as many as could go then and one more to wait its turn
    # (a burst of 2: three): the fourth was never taken in hand.
    assert [reminder_rows(bot)[w.id].claim_token for w in windows] == [1, 1, 1, 0]
    bot.run(slow.drain(CHANNEL))  # the stopped reply's turn comes, and nothing is sent
    assert len(started_replies(slack)) == 2
    bot.ctx.outbox = Outbox(UNDER)
    bot.run(run_due_reminders(bot.ctx))
    assert states() == ["posted"] * 4
    for window in windows:
        assert len([a for _, a in started_replies(slack) if f"#{window.id} " in a["text"]]) == 1, window.id


def test_a_slack_slower_than_our_pace_is_met_at_its_pace_within_a_few_restarts(bot, slack):
    """Slack's bucket is behind ours and refills at a quarter of our pace: its Retry-After
    (4 s) outlasts our 2 s pause, and a call sent between the two is a bet too. Each restart
    halves the pace; after a few the bot sends at Slack's pace and 429s stop (the rule that
    counted 429s in a row, and the first cut of this one, got one or two for every post)."""
    sent = replies_sent(bot, slack, replies=16, behind=2, slack_rate=0.25)
    assert slack.rate_limited == 9
    settled = sent[-9:]
    assert all(ok for _, ok in settled)
    assert all(later - earlier >= 3 for (earlier, _), (later, _) in zip(settled, settled[1:], strict=False))


#: Slack's own limits and the bot's production rates, both 20× faster: the scopes are what matter.
SPEEDUP = 20
SLACK_AS_DOCUMENTED = Tiers(post_per_second=SPEEDUP, post_burst=5, update_per_minute=50 * SPEEDUP, speedup=SPEEDUP)


def edits_over_channels(bot, slack, pace: LockstepClock, channels: int, edits: int) -> int:
    """`edits` parents spread over `channels` channels, each edited once, all at once (an
    incident's change edits the announcement and its own channel's summary): the 429s Slack gave."""
    bot.ctx.outbox = lockstep_outbox(bot, pace, scaled_rates(SPEEDUP))
    names = [f"C0ROOM{i}" for i in range(channels)]
    message = ("v1", [{"type": "section", "text": {"type": "mrkdwn", "text": "v1"}}])
    edited = ("v2", [{"type": "section", "text": {"type": "mrkdwn", "text": "v2"}}])

    async def run():
        parents = [await bot.ctx.channel_in(names[i % channels]).announce(message) for i in range(edits)]
        slack.enforce(SLACK_AS_DOCUMENTED, clock=pace.monotonic)
        await asyncio.gather(*(bot.ctx.channel_in(at.channel).refresh(at, edited) for at in parents))
        return parents

    parents = bot.run(run())
    assert all(slack.message(at.channel, at.ts)["text"] == "v2" for at in parents)  # every edit landed
    return slack.rate_limited


def test_twelve_edits_over_three_channels_draw_no_429_as_chat_update_is_paced_per_workspace(bot, slack, pace):
    refused = edits_over_channels(bot, slack, pace, channels=3, edits=12)
    print(f"\n12 edits over 3 channels: {refused} answered 429 ({len(slack.calls_to('chat.update'))} chat.update calls)")  # `-s`
    assert refused == 0


def test_home_tab_views_and_permalinks_are_paced_per_workspace(bot, slack, pace):
    """views.publish (Tier 4) for many people at once, each with a permalink: no 429."""
    bot.ctx.outbox = lockstep_outbox(bot, pace, scaled_rates(SPEEDUP))
    message = ("v1", [{"type": "section", "text": {"type": "mrkdwn", "text": "v1"}}])

    async def run():
        at = await bot.ctx.channel.announce(message)
        slack.enforce(SLACK_AS_DOCUMENTED, clock=pace.monotonic)
        links = [bot.ctx.channel.permalink(at) for _ in range(15)]
        views = [
            bot.ctx.outbox.call(
                "views.publish", lambda u=u: bot.ctx.sender.views_publish(user_id=u, view={"type": "home", "blocks": []})
            )
            for u in (f"U{i}" for i in range(15))
        ]
        return await asyncio.gather(*links, *views)

    answers = bot.run(run())
    assert all(answers[:15]) and slack.rate_limited == 0


def test_two_replicas_editing_in_different_channels_keep_one_workspace_pace(bot, slack, pace, monkeypatch):
    """Each replica's outbox books its edits in the database under the workspace's key, so two
    replicas editing different channels together stay under chat.update's one Tier 3 limit
    (each replica alone within its own burst, 4 × 429 without the shared booking)."""
    # Thirty-two bookings in one database at once: on a loaded machine some wait longer than
    # the 2 s after which a replica paces alone (as it does when the database fails: test_claims.py).
    monkeypatch.setattr(outbox_module, "RESERVE_TIMEOUT", WAIT_BOUND)
    reserve = pace.in_flight(shared_pace(bot.ctx.db, now=pace.monotonic))
    replicas = [lockstep_outbox(bot, pace, scaled_rates(SPEEDUP), reserve=reserve) for _ in range(2)]
    message = ("v1", [{"type": "section", "text": {"type": "mrkdwn", "text": "v1"}}])
    edited = ("v2", [{"type": "section", "text": {"type": "mrkdwn", "text": "v2"}}])

    def channel(replica: int, at_channel: str) -> Channel:
        return Channel(bot.ctx.slack, at_channel, replicas[replica], bot.ctx.sender)

    async def run():
        parents = [await bot.ctx.channel_in(f"C0ROOM{i % 4}").announce(message) for i in range(16)]
        slack.enforce(SLACK_AS_DOCUMENTED, clock=pace.monotonic)
        # Replica 0 edits rooms 0 and 1, replica 1 rooms 2 and 3.
        await asyncio.gather(*(channel(int(at.channel[-1]) // 2, at.channel).refresh(at, edited) for at in parents))
        return parents

    parents = bot.run(run())
    assert all(slack.message(at.channel, at.ts)["text"] == "v2" for at in parents)
    assert slack.rate_limited == 0


def test_a_paced_read_refused_429_waits_its_retry_after_and_is_sent_again(bot, slack):
    window = schedule(bot)
    time_ = VirtualTime()
    outbox = Outbox(scaled_rates(1), monotonic=time_.monotonic, sleep=time_.sleep)
    slack.forget_calls()
    slack.fail_next("chat.getPermalink", status=429, retry_after=3)

    async def link():
        call = lambda: bot.ctx.sender.chat_getPermalink(channel=CHANNEL, message_ts=window.message_ts)  # noqa: E731
        return await outbox.call("chat.getPermalink", call, channel=CHANNEL)

    answer = bot.run(link())
    assert answer["permalink"].endswith(window.message_ts.replace(".", ""))
    assert outbox.rate_limited == 1 and time_.now == 3  # waited its Retry-After, on the outbox's clock
    assert len(slack.calls_to("chat.getPermalink")) == 2


def test_every_method_sent_through_the_outbox_has_its_documented_pace():
    """A read or upload sent with `Outbox.call` is paced only if its method has a rate here:
    one missing would be sent unpaced until Slack answers 429. The fake meters each of these
    at its documented tier (``EXTRA_METHOD_TIERS`` for the ones not in ../shared/slack)."""
    source = "\n".join(p.read_text() for p in (Path(__file__).parents[1] / "bot").rglob("*.py"))
    called = set(re.findall(r'outbox\.call\(\s*"([a-z]+\.[A-Za-z.]+)"', source))
    assert {"files.getUploadURLExternal", "files.completeUploadExternal", "conversations.replies"} <= called
    assert called - set(SLACK_RATES) == set()
    tiers = {**load_method_tiers(default_shared_dir() / "slack" / "docs_slack_dev_methods"), **EXTRA_METHOD_TIERS}
    assert all(tiers.get(method) in ("t2", "t3", "t4", "t5") for method in called)
    # Never faster than the documented tier (conversations.canvases.create is Tier 2: 20 a minute).
    for method in called:
        if tiers[method] in TIER_PER_MINUTE:
            assert SLACK_RATES[method].per_second <= TIER_PER_MINUTE[tiers[method]] / 60, method
