"""A fake status-page API (seeds 004 and 000) served over real HTTP.

The server runs in its own thread with its own event loop, so it keeps
answering while a test's loop is blocked, and sync tests can use it too::

    with FakeStatusPage() as sp:
        client = StatusPageClient(sp.url, sp.api_key)

It answers with the seed envelopes and messages verbatim, and is deliberately
independent of ``bot.clients.statuspage`` so a bug in the client cannot hide itself.

The threading plumbing (:class:`BackgroundServer`, :class:`RecordedRequest`)
is shared with ``tests/support/fakes/appfirst.py``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl

from aiohttp import web

__all__ = [
    "BackgroundServer",
    "CaseInsensitiveDict",
    "FakeStatusPage",
    "RecordedRequest",
    "utcnow",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def utcnow() -> datetime:
    return datetime.now(UTC)


class CaseInsensitiveDict(dict[str, str]):
    """A plain dict of headers whose lookups ignore case, as HTTP does."""

    def __init__(self, items: Any = ()) -> None:
        super().__init__({k.lower(): v for k, v in dict(items).items()})

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


@dataclass
class RecordedRequest:
    """One request as the fake received it, for asserting on the exact wire format."""

    method: str
    path: str
    headers: CaseInsensitiveDict
    json: Any | None
    body: bytes
    query: dict[str, str] = field(default_factory=dict)
    form: dict[str, str] | None = None


class BackgroundServer:
    """An aiohttp app on 127.0.0.1 (random port) in a private thread and loop.

    Subclasses add routes and say how a forced failure looks; this class owns
    the switches every fake shares (latency, forced failures, malformed body)
    and the request log.
    """

    name = "fake"

    def __init__(self, *, mount: str = "") -> None:
        # `mount` serves the seed paths under a prefix (`/sp` → `/sp/api/...`), as a real
        # API behind a shared host may be; `url` then ends with it, and any other path is a
        # plain 404, as a web server answers for a path nothing serves.
        self.mount = "/" + mount.strip("/") if mount.strip("/") else ""
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.requests: list[RecordedRequest] = []
        self._reset_switches()

    def _reset_switches(self) -> None:
        self.latency: float = 0.0
        self.fail_status: int | None = None
        self.malformed: bool = False
        self.clock: Callable[[], datetime] = utcnow
        self._fail_remaining = 0
        self._fail_remaining_status = 500
        # Creates carried out whose reply is then held back (seconds; None: dropped).
        self._held_replies: list[float | None] = []
        # What a forced failure's body says instead of the usual text (an echo of anything a
        # test chooses: a key, a newline, 500 characters).
        self.failure_message: str | None = None

    # -- lifecycle --------------------------------------------------------

    def start(self) -> Self:
        if self._thread is not None:
            return self
        ready = threading.Event()
        problems: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:  # surface bind errors to start()
                problems.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                assert self._runner is not None
                loop.run_until_complete(self._runner.cleanup())
                loop.close()

        self._thread = threading.Thread(target=run, name=f"{self.name}-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"{self.name} did not start within 10 seconds")
        if problems:
            self._thread = None
            raise problems[0]
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None
        self._loop = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def _serve(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        self._add_routes(app)
        if self.mount:
            root = web.Application()
            root.add_subapp(self.mount, app)
            app = root
        # handler_cancellation: a client that timed out should not keep a
        # latency sleep alive; short shutdown: stop() must not wait on it.
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=0.25
        )
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        port = runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}{self.mount}"

    # -- switches ---------------------------------------------------------

    def fail_times(self, n: int, status: int = 500) -> None:
        """The next ``n`` requests fail with ``status``, then the server recovers."""
        with self._lock:
            self._fail_remaining = n
            self._fail_remaining_status = status

    def hold_replies(self, n: int = 1, seconds: float = 30.0) -> None:
        """The next ``n`` creates are carried out, then their reply waits ``seconds`` before
        it is sent: longer than a client's timeout, it is a reply lost after the request
        reached the server (or a server that crashes before answering)."""
        with self._lock:
            self._held_replies = [seconds] * n

    def drop_replies(self, n: int = 1) -> None:
        """The next ``n`` creates are carried out, then the connection is cut without a
        reply (a reset mid-call)."""
        with self._lock:
            self._held_replies = [None] * n

    def _take_held(self) -> tuple[bool, float | None]:
        with self._lock:
            if self._held_replies:
                return True, self._held_replies.pop(0)
            return False, None

    def _is_create(self, request: web.Request) -> bool:
        """Whether a request makes something new (what `hold_replies` applies to)."""
        return False

    def reset(self) -> None:
        """Forget all requests and state, and restore every switch to its default."""
        with self._lock:
            self.requests.clear()
            self._reset_switches()
            self._reset_state()

    def _take_failure(self) -> int | None:
        with self._lock:
            if self._fail_remaining > 0:
                self._fail_remaining -= 1
                return self._fail_remaining_status
            return self.fail_status

    # -- hooks for subclasses ---------------------------------------------

    def _add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def _reset_state(self) -> None:
        raise NotImplementedError

    def _failure_response(self, status: int) -> web.StreamResponse:
        raise NotImplementedError

    def _check_auth(self, request: web.Request) -> web.StreamResponse | None:
        """Return a response to refuse the request, or None to let it through."""
        return None

    # -- middleware ---------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body = await request.read()
        self._record(request, body)
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        status = self._take_failure()
        if status is not None:
            return self._failure_response(status)
        if self.malformed:
            return web.Response(
                status=200,
                text="<html><body>Gateway says hello</body></html>",
                content_type="text/html",
            )
        refusal = self._check_auth(request)
        if refusal is not None:
            return refusal
        response = await handler(request)
        if self._is_create(request) and response.status < 300:
            held, seconds = self._take_held()
            if held and seconds is None:
                assert request.transport is not None
                request.transport.abort()  # the create is done; the client hears a reset
            elif held:
                await asyncio.sleep(seconds)
        return response

    def _record(self, request: web.Request, body: bytes) -> None:
        parsed_json: Any | None = None
        form: dict[str, str] | None = None
        if body and request.content_type == "application/json":
            try:
                parsed_json = json.loads(body)
            except ValueError:
                parsed_json = None
        elif body and request.content_type == "application/x-www-form-urlencoded":
            form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            headers=CaseInsensitiveDict(request.headers),
            json=parsed_json,
            body=body,
            query=dict(request.query),
            form=form,
        )
        with self._lock:
            self.requests.append(recorded)


# ---------------------------------------------------------------------------
# The status page itself
# ---------------------------------------------------------------------------

MSG_CREATED = "Incident created successfully"
MSG_SCHEDULED = "Maintenance scheduled"
MSG_UPDATED = "Incident updated successfully"
MSG_RESOLVED = "Incident resolved successfully"
MSG_TITLE_REQUIRED = "Title is required."
MSG_END_BEFORE_START = "End date must be after start date."
MSG_NOT_FOUND = "Incident ID not found."
MSG_ALREADY_RESOLVED = "Incident already resolved."
MSG_UNAUTHORIZED = "Invalid or missing API key."
MSG_SERVER_ERROR = "An unexpected error occurred."
# Not in the seeds (they only name the case): used for bodies they do not cover.
MSG_INVALID_INCIDENT = "Invalid incident data."
MSG_INVALID_SCHEDULE = "Invalid schedule."
MSG_INVALID_UPDATE = "Invalid update data."
MSG_INVALID_REQUEST = "Invalid request."
# Assumption: the seeds list no status or impact values beyond their examples and no
# message for an unknown one. A status page that refuses one answers like its other 400s.
MSG_UNKNOWN_STATUS = "Status '{}' is not valid."
MSG_UNKNOWN_IMPACT = "Impact '{}' is not valid."


def _envelope(
    success: bool, message: str, result: Any = None, *, status: int = 200
) -> web.Response:
    return web.json_response(
        {"Success": success, "Result": result, "Message": message}, status=status
    )


def _rejected(message: str) -> web.Response:
    return _envelope(False, message, status=400)


def _wire_date(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_date(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


class FakeStatusPage(BackgroundServer):
    """The status-page API of seeds 004/000, with switches to make it misbehave.

    ``incidents`` maps each GUID to the create body plus ``"Resolved"``, ``"Updates"`` (the
    update bodies, oldest first) and, for maintenance, ``"InProgress"``.

    Seed 000 says only that ``GET /api/maintenance/status`` returns the windows "currently
    active", not what makes one active. So the fake ties it to no clock: a window is listed
    once someone marks it in progress on the status page (:meth:`start_maintenance`), which
    may be minutes after its StartDate, and leaves the list only when someone marks it done
    (:meth:`finish_maintenance`) or it is resolved through the API. Code that reads the list
    as "started at StartDate, ended at EndDate" fails against it, as it would in production.

    Rules the seeds do not state, each marked "assumption:" where it is made:
    the key is checked on every call; ResolveIncident closes a maintenance window too; an
    unknown ``IncidentId`` or a second resolve get seed 004's messages on every call.
    """

    name = "fake-statuspage"
    DEFAULT_API_KEY = "sp-test-key"

    def __init__(self, api_key: str = DEFAULT_API_KEY, *, mount: str = "") -> None:
        self.incidents: dict[str, dict[str, Any]] = {}
        self._initial_api_key = api_key
        super().__init__(mount=mount)

    def _reset_switches(self) -> None:
        super()._reset_switches()
        self.api_key = self._initial_api_key
        # assumption: seed 000's list items carry no EndDate. On, each item also has the
        # window's EndDate (the create model's field), for the client's tolerance of it.
        self.list_end_dates = False
        # The seed names no vocabulary, so by default any non-empty status and impact is
        # taken. Set these to make the fake refuse other values (with a 400 `Message`).
        self.accepted_statuses: tuple[str, ...] | None = None
        self.accepted_impacts: tuple[str, ...] | None = None

    def _reset_state(self) -> None:
        self.incidents.clear()

    def add_maintenance(
        self,
        title: str,
        start: datetime,
        end: datetime,
        *,
        description: str = "",
        affected_components: tuple[str, ...] | list[str] = (),
        in_progress: bool = False,
    ) -> str:
        """Seed a window as if someone scheduled it on the status page directly
        (``in_progress``: and already marked it in progress)."""
        body = {
            "Title": title,
            "Type": "Maintenance",
            "Description": description,
            "StartDate": _wire_date(start if start.tzinfo else start.replace(tzinfo=UTC)),
            "EndDate": _wire_date(end if end.tzinfo else end.replace(tzinfo=UTC)),
            "AffectedComponents": list(affected_components),
        }
        incident_id = self._store(body)
        if in_progress:
            self.start_maintenance(incident_id)
        return incident_id

    def start_maintenance(self, incident_id: str) -> None:
        """Someone marks the window in progress on the status page: from now on it is listed
        by ``GET /api/maintenance/status``, whatever its StartDate says."""
        with self._lock:
            window = self._maintenance(incident_id)
            if window["Resolved"]:
                raise ValueError(f"maintenance {incident_id} is already resolved")
            window["InProgress"] = True

    def finish_maintenance(self, incident_id: str) -> None:
        """Someone marks the window done on the status page: it leaves the list, and a
        later ResolveIncident is answered "Incident already resolved."."""
        with self._lock:
            window = self._maintenance(incident_id)
            window["InProgress"] = False
            window["Resolved"] = True

    def _maintenance(self, incident_id: str) -> dict[str, Any]:
        window = self.incidents.get(incident_id)
        if window is None or window.get("Type") != "Maintenance":
            raise KeyError(f"no maintenance window {incident_id} on the fake status page")
        return window

    def _store(self, body: dict[str, Any]) -> str:
        incident_id = str(uuid.uuid4())
        with self._lock:
            self.incidents[incident_id] = {**body, "Resolved": False, "Updates": []}
            if body.get("Type") == "Maintenance":
                self.incidents[incident_id]["InProgress"] = False
        return incident_id

    # -- HTTP ---------------------------------------------------------------

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_post("/api/admin/Incident", self._create)
        app.router.add_put("/api/admin/Incident", self._update)
        app.router.add_post("/api/admin/Incident/ResolveIncident", self._resolve)
        app.router.add_get("/api/maintenance/status", self._ongoing)

    def _is_create(self, request: web.Request) -> bool:
        return request.method == "POST" and request.path.rstrip("/").endswith("/api/admin/Incident")

    def _failure_response(self, status: int) -> web.StreamResponse:
        return _envelope(False, self.failure_message or MSG_SERVER_ERROR, status=status)

    def _check_auth(self, request: web.Request) -> web.StreamResponse | None:
        # assumption: seed 000's status GET and seed 004's PUT/ResolveIncident show no
        # X-API-KEY but list a 401: the fake asks for the key on every call (the bot sends it).
        if request.headers.get("X-API-KEY") != self.api_key:
            return _envelope(False, MSG_UNAUTHORIZED, status=401)
        return None

    @staticmethod
    async def _json_object(request: web.Request) -> dict[str, Any] | None:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    async def _create(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_object(request)
        if body is None:
            return _rejected(MSG_INVALID_INCIDENT)
        title = body.get("Title")
        if not isinstance(title, str) or not title.strip():
            return _rejected(MSG_TITLE_REQUIRED)
        if body.get("Type") == "Maintenance":
            start, end = _parse_date(body.get("StartDate")), _parse_date(body.get("EndDate"))
            # assumption: both dates are required (the seed sends both, names no error).
            if start is None or end is None:
                return _rejected(MSG_INVALID_SCHEDULE)
            if end <= start:
                return _rejected(MSG_END_BEFORE_START)
            return _envelope(True, MSG_SCHEDULED, self._store(body))
        refusal = self._unknown_word(body.get("Status"), self.accepted_statuses, MSG_UNKNOWN_STATUS) or (
            self._unknown_word(body.get("Impact"), self.accepted_impacts, MSG_UNKNOWN_IMPACT)
        )
        if refusal is not None:
            return refusal
        return _envelope(True, MSG_CREATED, self._store(body))

    @staticmethod
    def _unknown_word(
        value: Any, accepted: tuple[str, ...] | None, message: str, missing: str = MSG_INVALID_INCIDENT
    ) -> web.Response | None:
        if not isinstance(value, str) or not value.strip():
            return _rejected(missing)
        if accepted is not None and value not in accepted:
            return _rejected(message.format(value))
        return None

    async def _update(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_object(request)
        if body is None:
            return _rejected(MSG_INVALID_UPDATE)
        refusal = self._unknown_word(body.get("Status"), self.accepted_statuses, MSG_UNKNOWN_STATUS, MSG_INVALID_UPDATE)
        if refusal is not None:
            return refusal
        with self._lock:
            incident = self.incidents.get(str(body.get("IncidentId")))
            if incident is None:
                return _rejected(MSG_NOT_FOUND)
            # assumption: seed 004 names "Incident already resolved." for resolve only.
            if incident["Resolved"]:
                return _rejected(MSG_ALREADY_RESOLVED)
            incident["Updates"].append(body)
            incident["Status"] = body["Status"]
        # Seed 004: the update reply has no "Result" at all.
        return web.json_response({"Success": True, "Message": MSG_UPDATED})

    async def _resolve(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_object(request)
        if body is None:
            return _rejected(MSG_INVALID_REQUEST)
        with self._lock:
            incident = self.incidents.get(str(body.get("IncidentId")))
            # assumption: seed 004 names "Incident ID not found." for update only.
            if incident is None:
                return _rejected(MSG_NOT_FOUND)
            if incident["Resolved"]:
                return _rejected(MSG_ALREADY_RESOLVED)
            # assumption: resolving a maintenance window ends it (sitrep's "cancel").
            incident["Resolved"] = True
            if "InProgress" in incident:
                incident["InProgress"] = False
        return web.json_response({"Success": True, "Message": MSG_RESOLVED})

    async def _ongoing(self, request: web.Request) -> web.StreamResponse:
        """Seed 000: the windows marked in progress and not yet done, as a bare list.
        assumption: StartDate is the window's scheduled start (the seed does not say whether
        it is that or the moment it was marked); the order is unstated, the fake keeps the
        order the windows were created in."""
        active: list[dict[str, Any]] = []
        with self._lock:
            for incident_id, incident in self.incidents.items():
                if incident.get("Type") != "Maintenance" or incident["Resolved"] or not incident["InProgress"]:
                    continue
                item = {
                    "IncidentId": incident_id,
                    "Title": incident["Title"],
                    "Status": "In Progress",
                    "StartDate": _wire_date(_parse_date(incident["StartDate"])),
                }
                if self.list_end_dates:
                    item["EndDate"] = _wire_date(_parse_date(incident["EndDate"]))
                active.append(item)
        return web.json_response(active)
