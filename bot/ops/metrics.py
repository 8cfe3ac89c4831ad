"""Prometheus metrics, sitrep's own named `sitrep_…`, in one registry per running bot.

A registry of its own (not prometheus_client's global one) so that several bots in one
process (the tests) never clash, and so that `/metrics` shows exactly this bot; the standard
process, platform and garbage-collector collectors are registered in it too, so memory, file
descriptors and restarts can be alerted on as for any other service. Everything
else reports through small hooks: clients get an `observe` callable (they stay free of
prometheus), the Slack client's `api_call` and rate-limit handler are wrapped here, the
scheduler calls one method per event."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.clients.slack import slack_error
from bot.errors import OutcomeUnknown, UpstreamError, UpstreamRejected, UpstreamUnauthorized, UpstreamUnavailable
from store import drafts as draft_store
from store import facts
from store import reminders as reminder_store

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "upstream_outcome"]

# Slack wants an ack within 3 s: the buckets are dense below that.
_ACK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)
_UPSTREAM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_LATENESS_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 900, 3600)
_SYNC_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# Transport failures after the request left: the upstream may have acted on it.
_MAYBE_SENT = ("ReadTimeout", "WriteTimeout", "TimeoutError", "ReadError", "WriteError", "RemoteProtocolError")

#: A reminder still unposted this long after its due time counts as overdue: the sweep posts
#: within seconds, so a minute means no replica is delivering.
OVERDUE_AFTER = timedelta(minutes=1)

#: Calls that need the bot in a channel (its posts, edits, and the history /readyz reads), and
#: the errors that mean it cannot work there (not a passing fault): `sitrep_channel_reachable`
#: follows them for SITREP_CHANNEL.
_CHANNEL_CALLS = frozenset({"chat.postMessage", "chat.update", "chat.delete", "chat.scheduleMessage", "conversations.history"})
_CHANNEL_UNREACHABLE = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "channel_is_archived",
        "restricted_action",
        "restricted_action_read_only_channel",
        "restricted_action_thread_only_channel",
        "restricted_action_non_threadable_channel",
        "team_access_not_granted",
        "ekm_access_denied",
        "missing_scope",
        "not_authed",
        "invalid_auth",
        "account_inactive",
        "token_revoked",
        "token_expired",
    }
)


def upstream_outcome(exc: BaseException | None) -> str:
    """`ok`, `rejected`, `unauthorized`, `unavailable` or `unknown` (sent, no answer: the
    upstream may or may not have acted on it)."""
    if exc is None:
        return "ok"
    if isinstance(exc, UpstreamRejected):  # includes "not found"
        return "rejected"
    if isinstance(exc, UpstreamUnauthorized):
        return "unauthorized"
    if isinstance(exc, OutcomeUnknown):
        return "unknown"
    if isinstance(exc, UpstreamUnavailable):
        cause = exc.__cause__
        return "unknown" if cause is not None and type(cause).__name__ in _MAYBE_SENT else "unavailable"
    if isinstance(exc, UpstreamError):  # a wrong URL: nothing there to answer
        return "unavailable"
    return "unknown"


def installed_version() -> str:
    """The installed distribution's version (what an image or a wheel holds)."""
    from importlib.metadata import PackageNotFoundError, version  # only at start-up

    try:
        return version("sitrep")
    except PackageNotFoundError:
        return "unknown"


def _channel_of(kwargs: dict[str, Any]) -> str | None:
    """The `channel` argument of a Web API call, wherever slack_sdk put it."""
    for part in ("json", "data", "params"):
        body = kwargs.get(part)
        if isinstance(body, dict) and isinstance(body.get("channel"), str):
            return body["channel"]
    return None


class Metrics:
    def __init__(self, *, version: str | None = None) -> None:
        self.registry = r = CollectorRegistry()
        self._ack_children: dict[tuple[str, str], Any] = {}
        # The standard collectors the global registry would have: process_* (memory, CPU,
        # open file descriptors, start time), python_info, python_gc_*.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.ack_seconds = Histogram(
            "sitrep_ack_seconds",
            "From a Slack request reaching Bolt to its ack.",
            ["kind", "name"],
            buckets=_ACK_BUCKETS,
            registry=r,
        )
        self.upstream_seconds = Histogram(
            "sitrep_upstream_request_seconds",
            "Status page / AppFirst calls by operation and outcome.",
            ["service", "operation", "outcome"],
            buckets=_UPSTREAM_BUCKETS,
            registry=r,
        )
        self.slack_calls = Counter(
            "sitrep_slack_api_calls",
            "Slack Web API calls by method and error (`ok` when none).",
            ["method", "error"],
            registry=r,
        )
        self.slack_rate_limited = Counter(
            "sitrep_slack_rate_limited", "HTTP 429 answers from Slack, by method.", ["method"], registry=r
        )
        self.slack_rate_limit_sleep = Counter(
            "sitrep_slack_rate_limit_sleep_seconds",
            "Time slept (or a channel's method paused, in the outbox) honouring Slack's Retry-After.",
            registry=r,
        )
        self.reminders = Counter(
            "sitrep_reminders", "Maintenance reminders by outcome (posted, late, skipped).", ["outcome"], registry=r
        )
        self.reminder_lateness = Histogram(
            "sitrep_reminder_lateness_seconds",
            "How long after its due time a reminder was posted.",
            buckets=_LATENESS_BUCKETS,
            registry=r,
        )
        self.sync_seconds = Histogram(
            "sitrep_sync_seconds",
            "Maintenance sync runs by outcome (ok, failed, skipped: another replica was syncing).",
            ["outcome"],
            buckets=_SYNC_BUCKETS,
            registry=r,
        )
        self.drafts = Gauge("sitrep_drafts", "Kept drafts by state, read from the store at scrape time.", ["state"], registry=r)
        self.reminders_overdue = Gauge(
            "sitrep_reminders_overdue",
            "Reminders and nudges not yet posted more than a minute after their due time (read from the store at scrape time).",
            registry=r,
        )
        self.last_sync_success = Gauge(
            "sitrep_last_sync_success_timestamp_seconds",
            "When a sync with the maintenance backend last completed, by any replica (read from the store; "
            "0: never; no sample without a backend).",
            ["backend"],
            registry=r,
        )
        self.channel_reachable = Gauge(
            "sitrep_channel_reachable",
            "1 when this replica's last post, edit or read in the channel went through, 0 when Slack refused it "
            "for a reason that means the bot cannot work there (no sample before the first).",
            ["channel"],
            registry=r,
        )
        self._watched: str | None = None
        Info("sitrep_build", "The running version.", registry=r).info({"version": version or installed_version()})

    # -- hooks ------------------------------------------------------------

    def observe_ack(self, kind: str, name: str, seconds: float) -> None:
        # The labelled child kept: `labels()` validates and locks at every call, on the ack path.
        child = self._ack_children.get((kind, name))
        if child is None:
            child = self._ack_children[(kind, name)] = self.ack_seconds.labels(kind, name)
        child.observe(seconds)

    def observe_upstream(self, service: str, operation: str, exc: BaseException | None, seconds: float) -> None:
        self.upstream_seconds.labels(service, operation, upstream_outcome(exc)).observe(seconds)

    def upstream_observer(self, service: str) -> Callable[[str, BaseException | None, float], None]:
        """The `observe` callable an upstream client is given (see bot/clients/http.py)."""
        return lambda operation, exc, seconds: self.observe_upstream(service, operation, exc, seconds)

    def reminder(self, outcome: str, *, lateness: float | None = None) -> None:
        self.reminders.labels(outcome).inc()
        if lateness is not None:
            self.reminder_lateness.observe(max(lateness, 0.0))

    def sync(self, outcome: str, seconds: float) -> None:
        self.sync_seconds.labels(outcome).observe(seconds)

    def watch_channel(self, channel: str) -> None:
        """Follow whether the bot can write to `channel` (SITREP_CHANNEL)."""
        self._watched = channel

    def _channel_outcome(self, method: str, kwargs: dict[str, Any], error: str) -> None:
        if self._watched is None or method not in _CHANNEL_CALLS or _channel_of(kwargs) != self._watched:
            return
        if error == "ok":
            self.channel_reachable.labels(self._watched).set(1)
        elif error in _CHANNEL_UNREACHABLE:
            self.channel_reachable.labels(self._watched).set(0)

    def instrument_slack(self, client: AsyncWebClient) -> AsyncWebClient:
        """Count every Web API call by method and error, the 429s with the time slept, and
        whether writes to the watched channel go through."""
        if getattr(client, "_sitrep_metrics", None) is self:
            return client
        original = client.api_call
        calls = self.slack_calls

        async def api_call(api_method: str, *args: Any, **kwargs: Any):
            try:
                response = await original(api_method, *args, **kwargs)
            except SlackApiError as exc:
                error = slack_error(exc)
                calls.labels(api_method, error).inc()
                self._channel_outcome(api_method, kwargs, error)
                raise
            except Exception as exc:
                calls.labels(api_method, type(exc).__name__).inc()
                raise
            calls.labels(api_method, "ok").inc()
            self._channel_outcome(api_method, kwargs, "ok")
            return response

        client.api_call = api_call  # type: ignore[method-assign]
        client._sitrep_metrics = self  # type: ignore[attr-defined]
        for handler in client.retry_handlers or []:
            if isinstance(handler, AsyncRateLimitErrorRetryHandler):
                self._time_rate_limit(handler)
        return client

    def slack_paced(self, method: str, seconds: float) -> None:
        """A 429 the outbox took: it pauses that channel's method for `seconds` (Retry-After)
        instead of sleeping, so the pause is the time counted."""
        self.slack_rate_limited.labels(method).inc()
        self.slack_rate_limit_sleep.inc(seconds)

    def _time_rate_limit(self, handler: AsyncRateLimitErrorRetryHandler) -> None:
        """The one place slack_sdk sleeps on a 429: count it and add up the sleep."""
        if getattr(handler, "_sitrep_timed", False):
            return
        prepare: Callable[..., Awaitable[None]] = handler.prepare_for_next_attempt_async

        async def timed(**kwargs: Any) -> None:
            request = kwargs.get("request")
            url = getattr(request, "url", "") or ""
            self.slack_rate_limited.labels(url.rsplit("/", 1)[-1] or "unknown").inc()
            started = time.perf_counter()
            try:
                await prepare(**kwargs)
            finally:
                self.slack_rate_limit_sleep.inc(time.perf_counter() - started)

        handler.prepare_for_next_attempt_async = timed  # type: ignore[method-assign]
        handler._sitrep_timed = True  # type: ignore[attr-defined]

    # -- scrape -----------------------------------------------------------

    async def render(self, db: Any, *, now: datetime, backend: str | None = None) -> bytes:
        """The exposition text. Drafts, overdue reminders and the last good sync with `backend`
        (the maintenance backend, if any) are read from the store now (`now` on the bot's
        clock), so every replica reports the same; a failed read keeps the last values."""
        try:
            async with db.session() as session:
                counts = await draft_store.count_by_state(session)
                overdue = await reminder_store.overdue_count(session, due_before=now - OVERDUE_AFTER)
                synced = await facts.get_fact(session, facts.synced_key(backend)) if backend is not None else None
        except Exception:  # noqa: BLE001 - a scrape must not fail because the store hiccups
            counts = None
        if counts is not None:
            for state in set(counts) | {draft_store.SENDING, draft_store.FAILED, draft_store.DONE}:
                self.drafts.labels(state).set(counts.get(state, 0))
            self.reminders_overdue.set(overdue)
            if backend is not None:
                self.last_sync_success.labels(backend).set(synced.updated_at.timestamp() if synced is not None else 0)
        return generate_latest(self.registry)
