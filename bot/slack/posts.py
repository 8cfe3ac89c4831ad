"""The exactly-once engine: every claimed post to Slack goes through here, once.

A post that must appear exactly once across crashes and replicas (an announcement, a
resolve or cancel notice, a reminder, a nudge) is owned by a row in the store. Whoever posts
it first *claims* the row (a compare-and-set that bumps a fencing token), then:

1. a claim taken over from a process now gone (`stale`) may already have posted, so Slack is
   read first for a message carrying the post's metadata tag (`PostTag` + key); found, it is
   recorded and nothing is posted;
2. the post is sent only while the claim is still ours: the check runs just before the
   request leaves (fencing), so a process whose claim was taken over never posts;
3. the post's ts is recorded under the same token (ending the claim);
4. a failure goes down one ladder: claim lost → logged, nothing to undo; rate limited or the
   parent busy → the claim handed back with a "not before"; not worth posting any more
   (`Skip`) → recorded as skipped; anything else → the claim released (made stale when the
   post may have reached Slack, so the next claimant looks first) and the error raised.

Callers say *what* to post; the engine does the claiming, fencing and recording. Three shapes:

A row's one top-level message (`announce` with a `Subject`); store the row with
`**claimed_as_stored(ctx)` so the crash recovery posts it if this process dies first::

    subject = Subject(Incident, incident.id, PostTag.INCIDENT_ANNOUNCEMENT,
                      build=messages.announcement, reload=lambda: reload(incident.id))
    incident = await posts.announce(ctx, subject)   # None: another process is posting it

A post owned by a `Reminder` row that falls due (a reminder, a nudge, a weekly digest): the
scheduler claims due rows and hands each to its kind's entry in
`scheduler.reminders.DELIVERY`, which says what to post::

    async def deliver_digest(ctx, due: Due, records) -> int:
        post = Post(PostTag.DIGEST, {"week": week}, message=build_digest, thread=None)
        return (await posts.post_once(ctx, post, due.held(ctx))).posted

A post made at once for a person's change (a resolve notice, a timeline entry): its row is
written claimed (`held_row`) in the change's own transaction, then posted under `HELD`; if
the process dies first, the scheduler posts it through the row's `DELIVERY` entry::

    session.add(row := posts.held_row(ctx, incident_id=incident.id, kind=ReminderKind.TIMELINE))
    ...
    post = Post(PostTag.TIMELINE, {"incident_id": incident.id, "event": event.id}, message, thread=at)
    ts = (await posts.post_once(ctx, post, RowClaim(ctx, row.id, HELD))).ts

A new feature adds a `PostTag` member (the metadata event type, stored in Slack: never
renamed or reused), a `ReminderKind` with its `DELIVERY` entry, and writes the row that owns
the post in the same transaction as the change that calls for it. `PostTag.DIGEST` and
`ReminderKind.TIMELINE` above are examples, not members yet.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from slack_sdk.errors import SlackApiError

from bot.errors import AnnouncementBusy, ClaimLost, RateLimited, Skip
from bot.slack.channel import Message, Posted
from bot.slack.outbox import Priority
from store import announcements as announcement_store
from store import reminders as reminder_store
from store.dbclock import db_utc_now
from store.models import Incident, MaintenanceWindow, Reminder
from store.reminders import Claim, Outcome
from store.states import ClaimResult, ReminderState

if TYPE_CHECKING:  # annotations only: the context is built above this floor
    from bot.context import AppContext

log = logging.getLogger(__name__)

ANNOUNCEMENT_BUSY_RETRY = 15
"""Seconds a reply waits when its parent's announcement is being posted by another process."""
FRESH_CLAIM_SHARE = 4
"""A claim younger than stale_claim / this is certainly still ours (see `RowClaim.still_ours`)."""


class PostTag(StrEnum):
    """The message-metadata event type of every post sitrep makes exactly once: a process
    taking over a stale claim finds the post by it. Stored in Slack, so never renamed."""

    WINDOW_ANNOUNCEMENT = "sitrep_announcement"
    """A maintenance window's parent message (key: window_id)."""
    INCIDENT_ANNOUNCEMENT = "sitrep_incident_announcement"
    """An incident's parent message (key: incident_id)."""
    NOTICE = "sitrep_notice"
    """A resolve or cancel notice in the thread (key: incident_id or window_id, kind)."""
    REMINDER = "sitrep_reminder"
    """A window's heads-up, started, overrun or ended reply (key: window_id, kind)."""
    NUDGE = "sitrep_nudge"
    """An incident's update nudge, one per quiet interval (key: incident_id, due)."""
    DIGEST = "sitrep_digest"
    """The weekly digest in the channel (key: due, the digest time it is for)."""


class Sent(StrEnum):
    """How a claimed post ended."""

    POSTED = "posted"
    """Sent now and recorded."""
    FOUND = "found"
    """Already in Slack (a stale claim's post did get there): recorded, not sent again."""
    LOST = "lost"
    """The claim was taken over before the post: nothing sent, the new holder posts it."""
    LATER = "later"
    """Rate limited, or its parent is being announced elsewhere: handed back with a "not before"."""
    SKIPPED = "skipped"
    """Not worth posting any more: recorded as skipped."""


@dataclass(frozen=True)
class Result:
    how: Sent
    ts: str | None = None

    @property
    def posted(self) -> int:
        """1 when this call sent the post (for the pass's count), else 0."""
        return int(self.how == Sent.POSTED)


@dataclass(frozen=True)
class Post:
    """What to post: the tag and key that find it again, the message (or a builder run
    when its turn in the channel's queue comes, which may raise `Skip`), and where."""

    tag: PostTag
    key: dict[str, Any]
    message: Message | Callable[[], Awaitable[Message]]
    thread: Posted | Callable[[], Awaitable[Posted]] | None = None
    """The parent to reply under (or how to get it: announcing it first); None: top level."""
    broadcast: bool = False
    priority: Priority = Priority.REPLY
    hand_back: bool = False
    """A 429 hands the claim back with "not before" instead of holding it through the wait."""

    @property
    def metadata(self) -> dict[str, Any]:
        return {"event_type": str(self.tag), "event_payload": self.key}


# --- claims --------------------------------------------------------------------------------
class Held:
    """A claim this process holds on one post; the writes that end it. Subclasses say
    which row; the engine calls these, callers never do."""

    def __init__(self, ctx: AppContext, token: int, stale: bool):
        self.ctx, self.token, self.stale = ctx, token, stale

    async def still_ours(self) -> bool:
        raise NotImplementedError

    async def record(self, ts: str | None, *, channel: str | None = None) -> bool:
        """Store the post's ts (and the channel Slack named, for a top-level post); False
        when the claim was taken over meanwhile."""
        raise NotImplementedError

    async def skip(self) -> None:
        raise NotImplementedError

    async def release(self, *, posted_maybe: bool) -> None:
        raise NotImplementedError

    async def release_until(self, not_before: datetime) -> None:
        await self.release(posted_maybe=False)

    async def give_back(self) -> None:
        """Never attempted (stopped before its turn): as if never claimed."""
        await self.release(posted_maybe=False)


Announceable = type[MaintenanceWindow] | type[Incident]


class AnnouncementClaim(Held):
    """The claim on a window's or an incident's first announcement (columns on its row)."""

    def __init__(self, ctx: AppContext, model: Announceable, row_id: int, token: int, stale: bool, *, permalink: bool):
        super().__init__(ctx, token, stale)
        self.model, self.row_id, self.permalink = model, row_id, permalink

    async def still_ours(self) -> bool:
        async with self.ctx.db.session() as session, session.begin():
            return await announcement_store.confirm_announcement(session, self.row_id, token=self.token, W=self.model)

    async def record(self, ts: str | None, *, channel: str | None = None) -> bool:
        posted = Posted(channel or self.ctx.settings.sitrep_channel, ts)
        more = {"permalink": await self.ctx.channel.permalink(posted)} if self.permalink else {}
        async with self.ctx.db.session() as session, session.begin():
            return await announcement_store.record_announcement(
                session, self.row_id, token=self.token, channel_id=posted.channel, ts=ts, W=self.model, **more
            )

    async def skip(self) -> None:
        await self.release(posted_maybe=False)

    async def release(self, *, posted_maybe: bool) -> None:
        async with self.ctx.db.session() as session, session.begin():
            await announcement_store.release_announcement(
                session, self.row_id, token=self.token, posted_maybe=posted_maybe, W=self.model
            )


#: Where a batch of reminder outcomes is written (the scheduler's `Records`); None: at once.
Recorder = Callable[[Outcome], None]


class RowClaim(Held):
    """The claim on a `Reminder` row (a reminder, a notice, a nudge).

    `rearm_at`: a repeating row (a nudge) is made pending again at that time in the write
    that records the post. `recorder`: outcomes are handed to it (the scheduler writes
    several in one statement) instead of written here. `claimed_before` (`elapsed()` read
    before the claim): see `still_ours`."""

    def __init__(
        self,
        ctx: AppContext,
        row_id: int,
        claim: Claim,
        *,
        rearm_at: datetime | None = None,
        recorder: Recorder | None = None,
        claimed_before: float | None = None,
        late: Callable[[], bool] = lambda: False,
    ):
        super().__init__(ctx, claim.token, claim.result == ClaimResult.STALE)
        self.row_id, self.rearm_at, self.recorder, self.late = row_id, rearm_at, recorder, late
        self.claimed_before = claimed_before
        self._asked = False

    async def still_ours(self) -> bool:
        """A first attempt leaving within `fresh_claim_seconds` of the claim skips the
        database: nobody can have taken it over, as that needs it `stale_claim` old on the
        database's clock, four times longer. `elapsed` counts time suspended too, so a host
        asleep meanwhile asks the database. Retries always ask; a yes renews the claim."""
        first, self._asked = not self._asked, True
        if first and self.claimed_before is not None and elapsed() - self.claimed_before < fresh_claim_seconds(self.ctx):
            return True
        async with self.ctx.db.session() as session, session.begin():
            return await reminder_store.confirm(session, self.row_id, token=self.token)

    async def record(self, ts: str | None, *, channel: str | None = None) -> bool:
        """Posted (or done, for a row that posts nothing: an archive)."""
        return await self._end(ReminderState.POSTED, ts)

    async def skip(self) -> None:
        await self._end(ReminderState.SKIPPED, None)

    async def _end(self, state: ReminderState, ts: str | None) -> bool:
        if self.rearm_at is not None:
            async with self.ctx.db.session() as session, session.begin():
                return await reminder_store.rearm(
                    session, self.row_id, token=self.token, due_at=self.rearm_at, now=self.ctx.clock(), message_ts=ts
                )
        outcome = Outcome(self.row_id, self.token, state, message_ts=ts, late=self.late() and ts is not None)
        if self.recorder is not None:
            self.recorder(outcome)
            return True
        async with self.ctx.db.engine.begin() as conn:
            return await reminder_store.finish(
                conn, self.row_id, token=self.token, state=state, now=self.ctx.clock(), message_ts=ts, late=outcome.late
            )

    async def release(self, *, posted_maybe: bool) -> None:
        """Made stale at once either way: the next pass takes it, looking in Slack first."""
        async with self.ctx.db.session() as session, session.begin():
            await reminder_store.release(session, self.row_id, token=self.token)

    async def release_until(self, not_before: datetime) -> None:
        async with self.ctx.db.session() as session, session.begin():
            await reminder_store.release_until(session, self.row_id, token=self.token, not_before=not_before)
        await self.ctx.wake()

    async def give_back(self) -> None:
        await give_back(self.ctx, [(self.row_id, self.token)])


async def give_back(ctx: AppContext, claims: list[tuple[int, int]]) -> None:
    """Row claims whose posts were never attempted: pending again at once, in one statement."""
    async with ctx.db.engine.begin() as conn:
        await reminder_store.release_unattempted(conn, claims)


def fresh_claim_seconds(ctx: AppContext) -> float:
    """How long after its claim a first attempt may post without asking the database: well
    inside the claim's stale age, and inside one heartbeat (the crash recovery takes over the
    claims of an instance silent for several beats)."""
    return min((ctx.stale_claim / FRESH_CLAIM_SHARE).total_seconds(), ctx.settings.sitrep_heartbeat)


def elapsed() -> float:
    """Seconds on a clock that never jumps and keeps counting while the host is suspended."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


# --- the engine --------------------------------------------------------------------------
async def post_once(ctx: AppContext, post: Post, claim: Held) -> Result:
    """Post `post` under `claim` (held by the caller's claim of its row), exactly once.

    Stopped (cancelled) before its turn in the channel's queue, it was never sent: the claim
    is given back at once. Stopped once built (perhaps on its way), it is let finish, bounded
    by Slack's timeout, and recorded; if that fails too, the claim goes stale and whoever
    takes it over looks in Slack first."""
    turn_came = False

    async def build() -> Message:
        nonlocal turn_came
        turn_came = True
        return await post.message() if callable(post.message) else post.message

    sending = asyncio.ensure_future(_attempt(ctx, post, claim, build))
    try:
        return await asyncio.shield(sending)
    except asyncio.CancelledError:
        if not sending.done():
            await asyncio.shield(_stopped(sending, claim, turn_came=turn_came))
        raise


async def _stopped(sending: asyncio.Future, claim: Held, *, turn_came: bool) -> None:
    if not turn_came:
        sending.cancel()
        await claim.give_back()
        return
    try:
        await sending
    except Exception:  # noqa: BLE001 - not known to have reached Slack: left to go stale
        return


async def _attempt(ctx: AppContext, post: Post, claim: Held, build: Callable[[], Awaitable[Message]]) -> Result:
    """Look (a stale claim), fence, post, record; or go down the ladder."""
    channel = ctx.channel
    try:
        thread = await post.thread() if callable(post.thread) else post.thread
        if claim.stale:
            found = await _find(ctx, post, thread)
            if found is not None:
                log.info("%s %s was already in Slack (%s); not posting it again", post.tag, post.key, found)
                await _record(claim, post, found)
                return Result(Sent.FOUND, found)
        channel_id = None
        if thread is None:
            posted = await channel.announce(
                build, metadata=post.metadata, guard=claim.still_ours, priority=post.priority, hand_back=post.hand_back
            )
            ts, channel_id = posted.ts, posted.channel
        else:
            ts = await channel.reply(
                thread,
                build,
                broadcast=post.broadcast,
                metadata=post.metadata,
                priority=post.priority,
                guard=claim.still_ours,
                hand_back=post.hand_back,
            )
    except ClaimLost:
        log.warning("%s %s was taken over by another process before its post; not posting it", post.tag, post.key)
        return Result(Sent.LOST)
    except (RateLimited, AnnouncementBusy) as exc:
        # Nothing was posted: hand the claim back with a "not before", never hold it through
        # the wait (another replica would take it over as stale and post it too).
        wait = exc.retry_after if isinstance(exc, RateLimited) else ANNOUNCEMENT_BUSY_RETRY
        not_before = ctx.clock() + timedelta(seconds=wait)
        log.info("%s %s waits: %s; not before %s", post.tag, post.key, exc, not_before)
        await claim.release_until(not_before)
        return Result(Sent.LATER)
    except Skip:
        await claim.skip()
        return Result(Sent.SKIPPED)
    except Exception as exc:
        # Slack answering with an error posted nothing; a timeout or a broken connection may have.
        await claim.release(posted_maybe=not isinstance(exc, SlackApiError))
        raise
    await _record(claim, post, ts, channel_id)
    return Result(Sent.POSTED, ts)


async def _find(ctx: AppContext, post: Post, thread: Posted | None) -> str | None:
    if thread is None:
        return await ctx.channel.find_message(post.tag, post.key)
    return await ctx.channel.find_reply(thread, post.tag, post.key)


async def _record(claim: Held, post: Post, ts: str, channel: str | None = None) -> None:
    if not await claim.record(ts, channel=channel):
        log.warning("%s %s: posted (%s) after the claim was taken over; the new holder finds it", post.tag, post.key, ts)


# --- a row's one top-level message ---------------------------------------------------------
R = TypeVar("R", MaintenanceWindow, Incident)


@dataclass(frozen=True)
class Subject(Generic[R]):
    """A window or an incident whose one parent message the engine posts: the row, its
    tag, how to build the message from it, and how to read it again."""

    model: type[R]
    row_id: int
    tag: PostTag
    build: Callable[[R], Message]
    reload: Callable[[], Awaitable[R | None]]
    permalink: bool = False
    """Store the message's link with it (answers to the person show it)."""
    key: dict[str, Any] = field(default_factory=dict)

    def post_key(self) -> dict[str, Any]:
        return self.key or {f"{'incident' if self.model is Incident else 'window'}_id": self.row_id}


def claimed_as_stored(ctx: AppContext) -> dict[str, Any]:
    """The announcement's claim, for a row to be stored with (its columns): if this process
    dies before posting, the crash recovery posts it (`announce` with `live_since`)."""
    return {"announce_token": 1, "announce_claimed_by": ctx.instance_id, "announce_claimed_at": db_utc_now()}


def held_row(ctx: AppContext, **row) -> Reminder:
    """A `Reminder` row that owns a post this process makes at once (a notice), claimed as
    it is written, in the same transaction as the change that calls for it: no scheduler
    pass takes it meanwhile, and if this process dies first, the recovery makes the claim
    stale and the scheduler posts it. Post it with `post_once(ctx, post, RowClaim(ctx, id, HELD))`."""
    return Reminder(
        **row,
        due_at=ctx.clock(),
        state=ReminderState.CLAIMED,
        claimed_by=ctx.instance_id,
        claimed_at=db_utc_now(),
        claim_token=HELD.token,
    )


HELD = Claim(ClaimResult.FRESH, 1)
"""The claim of a row written claimed (`held_row`, `claimed_as_stored`)."""


async def announce(ctx: AppContext, subject: Subject[R], *, held: bool = False, live_since: datetime | None = None) -> R | None:
    """Post the row's parent message and store where it is, exactly once whoever calls
    (a person, the sync, a reminder, the crash recovery, on any replica). `held`: under the
    claim the row was stored with (`claimed_as_stored`), if it is still this process's.
    `live_since`: a claim of an instance with no heartbeat since then is taken over at once.
    Returns the row as stored after; None when another process holds the claim (or took it
    over mid-post)."""
    row = await subject.reload() if held else None
    if row is not None and row.message_ts is None and row.announce_claimed_by == ctx.instance_id:
        claim = AnnouncementClaim(ctx, subject.model, subject.row_id, row.announce_token, False, permalink=subject.permalink)
    else:
        async with ctx.db.session() as session, session.begin():
            taken = await announcement_store.claim_announcement(
                session,
                subject.row_id,
                instance=ctx.instance_id,
                stale_after=ctx.stale_claim,
                live_since=live_since,
                W=subject.model,
            )
        if not taken:
            return None
        claim = AnnouncementClaim(
            ctx, subject.model, subject.row_id, taken.token, taken.result == ClaimResult.STALE, permalink=subject.permalink
        )
    row = await subject.reload()

    async def message() -> Message:
        return subject.build(row)

    result = await post_once(ctx, Post(subject.tag, subject.post_key(), message), claim)
    return None if result.how == Sent.LOST else await subject.reload()
