"""Everything a handler or job needs, built once at start-up and passed down."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol

from slack_sdk.web.async_client import AsyncWebClient

from bot.backends import make_backend
from bot.clients.appfirst import AppFirstClient
from bot.clients.slack import SLACK_TIMEOUT_SECONDS, SlackConnections, make_slack_client
from bot.clients.statuspage import StatusPageClient
from bot.errors import SubmissionUnknown
from bot.ops.metrics import Metrics
from bot.settings import Settings
from bot.slack.channel import Channel, unpaced_client
from bot.slack.members import Memberships
from bot.slack.outbox import Outbox, Rate, Reserve, scaled_rates
from bot.slack.people import Names
from store.db import Database
from store.pace import reserve_slot
from store.reminders import STALE_CLAIM

if TYPE_CHECKING:
    from bot.backends.base import MaintenanceBackend


#: Key on Bolt's request context: the loop time by which Slack must have its ack. Slack allows
#: 3 s; the budget leaves room for the network and Bolt. The replay guard's write and each
#: listener's reads before its ack stay within it (`handlers.errors.renders_errors`).
ACK_DEADLINE = "sitrep_ack_deadline"
ACK_BUDGET_SECONDS = 2.0
#: Permalinks kept in memory: far more than a home tab shows.
MAX_PERMALINKS = 2000

#: How long a form's opening waits for the store before it opens a "one moment" modal with
#: the trigger instead (`handlers.opening`): a healthy database answers in milliseconds, and
#: Slack's trigger lives 3 s.
READ_BEFORE_OPEN = 0.25

#: The key (`bot.inbound.replays.submission_key`) of the Slack request being handled, set by the
#: replay guard for the listener it runs: a draft kept by that listener records it, so a
#: Submit pressed again after a crash is told apart from a replay.
SUBMISSION_KEY: ContextVar[str | None] = ContextVar("sitrep_submission_key", default=None)


class FormKey(Protocol):
    """A form Submit's key, not recorded yet (`bot.inbound.replays.FormKey`)."""

    async def record_with(self, write: Callable[[Any], Awaitable[Any]]) -> Any:
        """`write(session)`'s result, committed in one transaction with the key; raises
        `bot.errors.Replayed` when an earlier delivery of the Submit has the key."""


#: Set by the replay guard for a form's Submit: the listener's draft is kept in the same
#: transaction as the key (one write before the ack); a listener that keeps none before its
#: ack has the key recorded then (`bot.app.TimedAck`).
FORM_KEY: ContextVar[FormKey | None] = ContextVar("sitrep_form_key", default=None)


log = logging.getLogger(__name__)

#: How far the wall clock may move from the monotonic one between two readings before it
#: counts as a step (NTP slews at most 0.5 ms a second: far less between passes a minute apart).
STEP_TOLERANCE = timedelta(seconds=2)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Reading:
    """The wall clock, and where it would be had it not stepped since the last settled reading
    (`steady`: the wall clock then, plus monotonic time since). Equal unless it stepped."""

    wall: datetime
    steady: datetime

    @property
    def stepped(self) -> timedelta | None:
        """How far the wall clock stepped since the last settled reading, if it did."""
        return self.wall - self.steady if self.wall != self.steady else None

    @property
    def due_by(self) -> datetime:
        """Reminders due at or before this are due: after a step back, what was due is
        still due (not held back by the step); after a step forward, what it passed over."""
        return max(self.wall, self.steady)

    def judged_at(self, due_at: datetime) -> datetime:
        """The moment a due reminder's lateness is judged from: no later than either clock,
        so a step forward makes nothing late (or skipped), and never before its due time."""
        return max(due_at, min(self.wall, self.steady))


class StepAwareClock:
    """When reminders and nudges fall due. Due times are instants on the bot's clock (the wall
    clock, or the tests' `clock`), but the time *between* passes is measured on the monotonic
    clock, so a step of the wall clock (NTP, a resumed VM; +26 h or -2 h) is seen as such: the
    first pass after it posts whatever either clock says is due, judges none late because of
    the step, and then settles on the wall clock as it now reads."""

    def __init__(self, wall: Callable[[], datetime], monotonic: Callable[[], float]):
        self.wall = wall
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._anchor = (wall(), monotonic())

    def reading(self) -> Reading:
        with self._lock:
            wall, now = self.wall(), self.monotonic()
            then, since = self._anchor
            steady = then + timedelta(seconds=now - since)
            if abs(wall - steady) <= STEP_TOLERANCE:
                steady = wall
            return Reading(wall, steady)

    def settle(self) -> timedelta | None:
        """Take the wall clock as it reads now as the base from here on; returns the step
        absorbed, if there was one (logged once: an operator wants to know)."""
        with self._lock:
            wall, now = self.wall(), self.monotonic()
            then, since = self._anchor
            step = wall - (then + timedelta(seconds=now - since))
            self._anchor = (wall, now)
        if abs(step) <= STEP_TOLERANCE:
            return None
        log.warning(
            "the clock stepped by %+.0f s; reminders due across the step are posted now, none judged late", step.total_seconds()
        )
        return step


P = ParamSpec("P")


class Port(Generic[P]):
    """A call the services make into a layer above them (the scheduler, the Slack handlers).
    The context holds the port from its construction; the layer that answers it connects
    when it starts and disconnects when it stops, so the context itself is never changed
    after it is built. Called while unconnected, it does nothing and says so (False)."""

    def __init__(self, what: str):
        self.what = what
        self._target: Callable[P, Awaitable[Any]] | None = None

    def connect(self, target: Callable[P, Awaitable[Any]]) -> None:
        self._target = target

    def disconnect(self) -> None:
        self._target = None

    @property
    def connected(self) -> bool:
        return self._target is not None

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        if self._target is None:
            return False
        await self._target(*args, **kwargs)
        return True


@dataclass
class AppContext:
    settings: Settings
    db: Database
    slack: AsyncWebClient
    statuspage: StatusPageClient | None = None
    appfirst: AppFirstClient | None = None
    maintenance: MaintenanceBackend | None = None
    clock: Callable[[], datetime] = utcnow
    #: The same clock read with its steps told apart, for what falls due (`StepAwareClock`).
    due_clock: StepAwareClock = field(default_factory=lambda: StepAwareClock(utcnow, time.monotonic))
    instance_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    #: Wake the running scheduler when reminder rows change, so it re-plans its wake-up
    #: (connected by `scheduler.runner` while it runs; unconnected, a no-op).
    wake_reminders: Port[[]] = field(default_factory=lambda: Port("wake the reminders"))
    #: Tell a person (user, channel) that a draft's outcome is unknown, with its choices —
    #: used by the crash recovery, which has no Slack request (connected by `handlers.drafts`).
    notify_unknown: Port[[SubmissionUnknown, str, str | None]] = field(default_factory=lambda: Port("tell outcome unknown"))
    #: Tell a person their submission went through (an `Outcome`; the crash recovery).
    notify_done: Port[[Any, str, str | None]] = field(default_factory=lambda: Port("tell it went through"))
    # This bot's own registry (never the process-global one: tests run several bots at once).
    metrics: Metrics = field(default_factory=Metrics)
    # One outbox per process: every post and edit to a channel is paced through it.
    outbox: Outbox = field(default_factory=Outbox)
    #: The ends of sends this process could not write (the database was out): draft id → the
    #: write, retried at each heartbeat and before the draft is claimed again, so a draft
    #: never stays "sending" in a process that lives on (`bot.services.drafts`).
    unsettled: dict[int, Callable[[], Awaitable[None]]] = field(default_factory=dict)
    _sender: AsyncWebClient | None = field(default=None, repr=False)
    #: The keep-alive connections every Slack client shares while the bot runs (`Sitrep.start`).
    slack_connections: SlackConnections = field(default_factory=SlackConnections, repr=False)
    #: Permalinks Slack gave, by (channel, ts): a message's link never changes, so the home
    #: tab asks once per message, not once per open (`remember_permalink` bounds it).
    permalinks: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)
    _memberships: Memberships | None = field(default=None, repr=False)
    #: `READ_BEFORE_OPEN`; tests that do not hold the database give the read longer, so a
    #: loaded machine cannot turn a command's answer into a modal's.
    read_before_open: float = READ_BEFORE_OPEN
    #: `ACK_BUDGET_SECONDS`; tests that do not hold the database give it longer, so a loaded
    #: machine cannot turn a healthy request's answer into "the database is busy".
    ack_budget: float = ACK_BUDGET_SECONDS
    _names: Names | None = field(default=None, repr=False)

    @property
    def memberships(self) -> Memberships:
        """Who is in which channel, as Slack says (the home tab shows each person their own)."""
        if self._memberships is None:
            self._memberships = Memberships(lambda: self.sender, lambda: self.outbox, lambda: self.clock())
        return self._memberships

    @property
    def names(self) -> Names:
        """People's display names, as Slack gives them (text that cannot carry a mention)."""
        if self._names is None:
            self._names = Names(lambda: self.sender, lambda: self.outbox, lambda: self.clock())
        return self._names

    def remember_permalink(self, channel: str, ts: str, link: str) -> None:
        self.permalinks[(channel, ts)] = link
        while len(self.permalinks) > MAX_PERMALINKS:
            del self.permalinks[next(iter(self.permalinks))]  # the oldest first

    @property
    def stale_claim(self) -> timedelta:
        """How long a claim may stay unfinished before another process takes it over: longer
        than a post can wait in the channel's queue, so only a dead process's claim goes stale.
        The `SITREP_TEST_SPEEDUP` test hook shortens it as much as it speeds up that queue."""
        return STALE_CLAIM / self.settings.sitrep_test_speedup

    @property
    def channel(self) -> Channel:
        """SITREP_CHANNEL, where every announcement and thread lives."""
        return self.channel_in(self.settings.sitrep_channel)

    def channel_in(self, channel_id: str) -> Channel:
        """Another channel the bot writes to (an incident's own), paced by the same outbox."""
        return Channel(self.slack, channel_id, self.outbox, self.sender, sandbox=self.settings.sitrep_sandbox)

    @property
    def sender(self) -> AsyncWebClient:
        """The Slack client for calls paced by `outbox` (it handles their 429s, not slack_sdk)."""
        if self._sender is None:
            self._sender = self.metrics.instrument_slack(unpaced_client(self.slack))
        return self._sender

    async def wake(self) -> None:
        """Tell the running scheduler that reminder rows changed (no-op without one)."""
        await self.wake_reminders()

    async def aclose(self) -> None:
        await self.slack_connections.close()
        for client in (self.statuspage, self.appfirst):
            if client is not None:
                await client.aclose()
        await self.db.dispose()


def build_upstreams(settings: Settings, *, http_timeout: float = 10.0) -> tuple[StatusPageClient | None, AppFirstClient | None]:
    """The configured API clients (None where not configured); no network, no database."""
    statuspage = appfirst = None
    hide = tuple(settings.secret_values())  # an upstream may echo any of them, not only its own
    if settings.statuspage_url and settings.statuspage_api_key:
        statuspage = StatusPageClient(
            settings.statuspage_url, settings.statuspage_api_key.get_secret_value(), timeout=http_timeout, hide=hide
        )
    if settings.appfirst_url and settings.appfirst_email and settings.appfirst_api_key:
        appfirst = AppFirstClient(
            settings.appfirst_url,
            settings.appfirst_email,
            settings.appfirst_api_key.get_secret_value(),
            timeout=http_timeout,
            hide=hide,
        )
    return statuspage, appfirst


def shared_pace(db: Database, *, now: Callable[[], float] | None = None) -> Reserve:
    """The outbox's send slots booked in the database, so replicas share each channel's (and
    the workspace's) pace; on the database's clock unless a test gives the outbox's (`now`)."""

    async def reserve(where: str, method: str, rate: Rate) -> float:
        async with db.session() as session, session.begin():
            at = None if now is None else now()
            return await reserve_slot(session, where, method, interval=1 / rate.per_second, burst=rate.burst, now=at)

    return reserve


def build_context(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utcnow,
    monotonic: Callable[[], float] = time.monotonic,
    http_timeout: float = 10.0,
    read_before_open: float = READ_BEFORE_OPEN,
    ack_budget: float = ACK_BUDGET_SECONDS,
    slack_timeout: float = SLACK_TIMEOUT_SECONDS,
) -> AppContext:
    """Wire the clients from settings; nothing here talks to the network. Raises
    `store.db.DatabaseUnusable` when `DATABASE_URL` cannot even be turned into an engine.
    `clock` and `monotonic` are injected together by tests: moving only the first is a step."""
    db = Database(settings.database_url)
    # SITREP_TEST_SPEEDUP is a test hook (see Settings): Slack's pace, sped up; 1 in production.
    rates = scaled_rates(settings.sitrep_test_speedup) if settings.sitrep_test_speedup != 1 else None
    metrics = Metrics()
    metrics.watch_channel(settings.sitrep_channel)
    statuspage, appfirst = build_upstreams(settings, http_timeout=http_timeout)
    for service, client in (("statuspage", statuspage), ("appfirst", appfirst)):
        if client is not None:
            client.observe = metrics.upstream_observer(service)
    slack = make_slack_client(settings, timeout=slack_timeout)
    metrics.instrument_slack(slack)
    ctx = AppContext(
        settings=settings,
        db=db,
        slack=slack,
        statuspage=statuspage,
        appfirst=appfirst,
        maintenance=make_backend(settings, statuspage=statuspage, appfirst=appfirst),
        clock=clock,
        due_clock=StepAwareClock(clock, monotonic),
        metrics=metrics,
        outbox=Outbox(rates=rates, reserve=shared_pace(db), on_rate_limited=metrics.slack_paced),
        read_before_open=read_before_open,
        ack_budget=ack_budget,
    )
    return ctx
