"""Slow clients cannot starve the server.

Slack sends a whole request within milliseconds. Under uvicorn's defaults a client that opens
a connection and sends nothing, or trickles its headers, holds a descriptor for as long as it
likes: 1,100 of them from one client, under the common 1,024-descriptor limit, stopped every
Slack request for 40 s (accepts failing, and every failure logged). So here:

- a connection must finish a request's headers within `HEADER_TIMEOUT` of opening, or of its
  last answer (a body has the edge's own timeout, `bot.inbound.edge`);
- at most `connection_limit()` connections are open, well below the descriptor limit; a new
  one at the limit closes the oldest connection still waiting for its headers (a real request
  is never waiting: its headers came with it), and is itself refused only when every open one
  is busy with a request;
- every connection closed for this is counted, and logged at most once a second in all.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import resource
from collections import Counter

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

#: Seconds a connection has to send a request's headers. Slack's arrive at once; a client
#: across a slow mobile link still needs well under a second.
HEADER_TIMEOUT = 10.0
#: A process whose descriptor limit is unlimited still needs a bound on connections.
MAX_CONNECTIONS = 10_000
#: The least limit, for a process started with very few descriptors.
MIN_CONNECTIONS = 16
#: uvicorn's own default listen queue.
MAX_BACKLOG = 2048


def _descriptors() -> int | None:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def connection_limit() -> int:
    """Half of this process's descriptor limit (512 under the common 1,024): a quarter more
    is for what asyncio accepts before the limit is applied (`accept_backlog`, and as many
    closing), the rest for the database pool, the API clients, Slack's websocket and the log."""
    soft = _descriptors()
    return MAX_CONNECTIONS if soft is None else max(MIN_CONNECTIONS, min(soft // 2, MAX_CONNECTIONS))


def accept_backlog() -> int:
    """uvicorn's `backlog`: the listen queue, and also how many connections asyncio accepts
    in one go before any of them meets the limit. An eighth of the descriptor limit (128
    under 1,024), so a flood never runs the process out of descriptors (asyncio then logs
    every failed accept with its traceback: most of the incident's 74.5 MB)."""
    soft = _descriptors()
    return MAX_BACKLOG if soft is None else max(MIN_CONNECTIONS, min(soft // 8, MAX_BACKLOG))


class AcceptFailures(logging.Filter):
    """On asyncio's logger: a failed accept (descriptors exhausted all the same, by other
    work) is counted with the slow clients, a line a second at most, never a traceback each."""

    def __init__(self, report: SlowClientLog) -> None:
        super().__init__()
        self.report = report

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("socket.accept() out of system resource"):
            self.report.closed("not accepted: the process is out of descriptors", None)
            return False
        return True


class SlowClientLog:
    """Connections closed as slow, logged at most once a `interval` in all: the first at once,
    the ones after it counted and summed in the next line, so a flood is a line a second."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.total = 0
        self._pending: Counter[str] = Counter()
        self._clients: set[str] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._last: float | None = None

    def closed(self, reason: str, client: str | None) -> None:
        self.total += 1
        self._pending[reason] += 1
        if client:
            self._clients.add(client)
        if self._timer is None:
            loop = asyncio.get_running_loop()
            wait = 0.0 if self._last is None else max(self._last + self.interval - loop.time(), 0.0)
            self._timer = loop.call_later(wait, self._flush)

    def _flush(self) -> None:
        self._timer = None
        self._last = asyncio.get_running_loop().time()
        count = sum(self._pending.values())
        reasons = "; ".join(f"{n} {reason}" for reason, n in self._pending.most_common())
        clients = sorted(self._clients)
        log.warning(
            "closed %d slow HTTP connection(s) from %d address(es) (%s%s): %s",
            count,
            len(clients),
            ", ".join(clients[:3]),
            ", ..." if len(clients) > 3 else "",
            reasons,
        )
        self._pending.clear()
        self._clients.clear()


class ConnectionGuard:
    """The open connections of one server, oldest first, and the limit on them."""

    def __init__(self, report: SlowClientLog, *, limit: int | None = None, header_timeout: float = HEADER_TIMEOUT):
        self.report = report
        self.limit = limit if limit is not None else connection_limit()
        self.header_timeout = header_timeout
        self._open: dict[GuardedH11Protocol, None] = {}  # insertion order: oldest first

    def protocol(self) -> functools.partial:
        """What uvicorn's `http` setting takes: the protocol class, bound to this guard."""
        return functools.partial(GuardedH11Protocol, guard=self)

    def admit(self, connection: GuardedH11Protocol) -> bool:
        """Room for a new connection: at the limit, the oldest one still waiting for its
        headers is closed; when every one is busy with a request, the new one is refused."""
        if len(self._open) >= self.limit:
            waiting = next((c for c in self._open if not c.busy), None)
            if waiting is None:
                self.report.closed("refused: every connection busy", _address(connection.client))
                return False
            waiting.close("closed at the connection limit, waiting for headers")
        self._open[connection] = None
        return True

    def forget(self, connection: GuardedH11Protocol) -> None:
        self._open.pop(connection, None)


def _address(client: tuple[str, int] | None) -> str | None:
    return client[0] if client else None


class GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for headers and a place under the limit."""

    def __init__(self, *args, guard: ConnectionGuard, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._guard = guard
        self._deadline: asyncio.TimerHandle | None = None

    @property
    def busy(self) -> bool:
        """A request's headers arrived and its answer is not finished."""
        return self.cycle is not None and not self.cycle.response_complete

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self._guard.admit(self):
            self.transport.close()
            return
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard.forget(self)
        self._stop_waiting()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.busy:
            self._stop_waiting()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.busy:
            self._await_headers()

    def close(self, reason: str) -> None:
        """Close a connection that is slow (not one busy with a request), counted in the log."""
        self._stop_waiting()
        self._guard.forget(self)
        if not self.transport.is_closing():
            self._guard.report.closed(reason, _address(self.client))
            self.transport.close()

    def _await_headers(self) -> None:
        self._stop_waiting()
        self._deadline = self.loop.call_later(self._guard.header_timeout, self._headers_late)

    def _stop_waiting(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_late(self) -> None:
        self._deadline = None
        if not self.busy:
            self.close(f"no request headers within {self._guard.header_timeout:g} s")
