"""A stand-in for the status-page API of seeds 004 (incidents) and 000 (maintenance).

It answers with the seed envelopes and messages verbatim and is written from the seeds, not
from `bot.clients.statuspage`, so a bug in the client cannot hide itself. `sitrep run
--sandbox` serves it on loopback; the tests' `FakeStatusPage` serves the same rules with
switches to make it misbehave.

Rules the seeds do not state, each marked "assumption:" where it is made: the key is checked
on every call; ResolveIncident closes a maintenance window too; an unknown ``IncidentId`` or
a second resolve get seed 004's messages on every call.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bot.sandbox.server import StandIn

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


def envelope(success: bool, message: str, result: Any = None, *, status: int = 200) -> web.Response:
    """Seed 004's `ApiResponse`: `{Success, Result, Message}`."""
    return web.json_response({"Success": success, "Result": result, "Message": message}, status=status)


def _rejected(message: str) -> web.Response:
    return envelope(False, message, status=400)


def wire_date(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_date(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


class StatusPageStandIn(StandIn):
    """The status-page API of seeds 004/000.

    ``incidents`` maps each GUID to the create body plus ``"Resolved"``, ``"Updates"`` (the
    update bodies, oldest first) and, for maintenance, ``"InProgress"``.

    Seed 000 says only that ``GET /api/maintenance/status`` returns the windows "currently
    active", not what makes one active. A window is listed once someone marks it in progress
    on the status page (:meth:`start_maintenance`), which may be minutes after its StartDate,
    and leaves the list when someone marks it done (:meth:`finish_maintenance`) or it is
    resolved through the API. Nobody marks windows in the sandbox, so there
    ``progress_by_clock`` lists a window from its StartDate until its EndDate as well; the
    tests' fake keeps it off, so code that reads the list as "started at StartDate, ended at
    EndDate" fails against it, as it would in production.
    """

    name = "statuspage"

    def __init__(self, api_key: str) -> None:
        super().__init__()
        self.incidents: dict[str, dict[str, Any]] = {}
        self.api_key = api_key
        self.reset_rules()

    def reset_rules(self) -> None:
        """The switches of the seed's open questions, at their defaults."""
        # assumption: seed 000's list items carry no EndDate. On, each item also has the
        # window's EndDate (the create model's field), for the client's tolerance of it.
        self.list_end_dates = False
        # The seed names no vocabulary, so by default any non-empty status and impact is
        # taken. Set these to refuse other values (with a 400 `Message`).
        self.accepted_statuses: tuple[str, ...] | None = None
        self.accepted_impacts: tuple[str, ...] | None = None
        self.progress_by_clock = False

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
            "StartDate": wire_date(start if start.tzinfo else start.replace(tzinfo=UTC)),
            "EndDate": wire_date(end if end.tzinfo else end.replace(tzinfo=UTC)),
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
            raise KeyError(f"no maintenance window {incident_id} on the status page")
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

    def _check_auth(self, request: web.Request) -> web.StreamResponse | None:
        # assumption: seed 000's status GET and seed 004's PUT/ResolveIncident show no
        # X-API-KEY but list a 401: the key is asked for on every call (the bot sends it).
        if request.headers.get("X-API-KEY") != self.api_key:
            return envelope(False, MSG_UNAUTHORIZED, status=401)
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
            start, end = parse_date(body.get("StartDate")), parse_date(body.get("EndDate"))
            # assumption: both dates are required (the seed sends both, names no error).
            if start is None or end is None:
                return _rejected(MSG_INVALID_SCHEDULE)
            if end <= start:
                return _rejected(MSG_END_BEFORE_START)
            return envelope(True, MSG_SCHEDULED, self._store(body))
        refusal = self._unknown_word(body.get("Status"), self.accepted_statuses, MSG_UNKNOWN_STATUS) or (
            self._unknown_word(body.get("Impact"), self.accepted_impacts, MSG_UNKNOWN_IMPACT)
        )
        if refusal is not None:
            return refusal
        return envelope(True, MSG_CREATED, self._store(body))

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

    def _active(self, incident: dict[str, Any], now: datetime) -> bool:
        if incident.get("Type") != "Maintenance" or incident["Resolved"]:
            return False
        if incident["InProgress"]:
            return True
        if not self.progress_by_clock:
            return False
        start, end = parse_date(incident["StartDate"]), parse_date(incident["EndDate"])
        return start is not None and end is not None and start <= now < end

    async def _ongoing(self, request: web.Request) -> web.StreamResponse:
        """Seed 000: the windows in progress and not yet done, as a bare list.
        assumption: StartDate is the window's scheduled start (the seed does not say whether
        it is that or the moment it was marked); the order is unstated, the stand-in keeps the
        order the windows were created in."""
        now = self.clock()
        active: list[dict[str, Any]] = []
        with self._lock:
            for incident_id, incident in self.incidents.items():
                if not self._active(incident, now):
                    continue
                item = {
                    "IncidentId": incident_id,
                    "Title": incident["Title"],
                    "Status": "In Progress",
                    "StartDate": wire_date(parse_date(incident["StartDate"])),
                }
                if self.list_end_dates:
                    item["EndDate"] = wire_date(parse_date(incident["EndDate"]))
                active.append(item)
        return web.json_response(active)
