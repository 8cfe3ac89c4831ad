"""Async client for the status-page API (seed 004: incidents, seed 000: maintenance).

The models mirror the seed documents field for field: snake_case in Python,
PascalCase on the wire.  Every reply is reduced to either a plain value or one
of the typed errors in :mod:`bot.errors`, so handlers never see raw HTTP.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

import httpx
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_serializer,
    field_validator,
)
from pydantic.alias_generators import to_pascal

from bot.clients.http import UpstreamClient, decode, observed
from bot.errors import AlreadyResolved, OutcomeUnknown, UpstreamRejected, UpstreamUnavailable

__all__ = [
    "SERVICE",
    "IncidentCreateModel",
    "MaintenanceCreateModel",
    "IncidentUpdateModel",
    "ResolveIncidentModel",
    "ApiResponse",
    "OngoingMaintenance",
    "StatusPageClient",
    "format_wire_datetime",
]

SERVICE = "status page"
URL_SETTING = "STATUSPAGE_URL"  # named when the API is not where it points

# Status and impact are the status page's own words: the seed shows only `Investigating`,
# `Identified` and `Major Outage`, so the client sends what the operator configured
# (SITREP_INCIDENT_STATUSES / _IMPACTS) and the status page's 400 Message says if it differs.
IncidentWord = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]

_INCIDENT_PATH = "api/admin/Incident"
_RESOLVE_PATH = "api/admin/Incident/ResolveIncident"
_ONGOING_PATH = "api/maintenance/status"

T = TypeVar("T")


def format_wire_datetime(value: datetime) -> str:
    """Render as the seed does (``2023-11-01T02:00:00Z``): always UTC, whole seconds."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: the status page needs an unambiguous UTC time")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _WireModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True, alias_generator=to_pascal)

    def to_wire(self) -> dict[str, Any]:
        """The JSON body exactly as the seed spells it."""
        return self.model_dump(mode="json", by_alias=True)


class IncidentCreateModel(_WireModel):
    """Body of ``POST /api/admin/Incident`` for an incident (seed 004).

    ``title`` may be empty here on purpose: the status page owns that rule and
    answers ``Title is required.``, which the bot shows verbatim.
    """

    title: str
    description: str = ""
    status: IncidentWord
    impact: IncidentWord
    affected_components: list[str] = Field(default_factory=list)
    # Defaults to False: forgetting the flag must not e-mail every subscriber.
    is_notify: bool = False


class MaintenanceCreateModel(_WireModel):
    """Body of ``POST /api/admin/Incident`` with ``Type: "Maintenance"`` (seed 000).

    The end-after-start rule is left to the server so its message reaches the user.
    """

    title: str
    type: Literal["Maintenance"] = "Maintenance"
    description: str = ""
    start_date: AwareDatetime
    end_date: AwareDatetime
    affected_components: list[str] = Field(default_factory=list)

    @field_serializer("start_date", "end_date")
    def _serialize_date(self, value: datetime) -> str:
        return format_wire_datetime(value)


class IncidentUpdateModel(_WireModel):
    """Body of ``PUT /api/admin/Incident`` (seed 004)."""

    incident_id: str
    description: str
    status: IncidentWord


class ResolveIncidentModel(_WireModel):
    """Body of ``POST /api/admin/Incident/ResolveIncident`` (seed 004)."""

    incident_id: str


class ApiResponse(_WireModel, Generic[T]):
    """The ``{Success, Result, Message}`` envelope; update/resolve replies omit ``Result``."""

    success: bool
    result: T | None = None
    message: str | None = None


class OngoingMaintenance(_WireModel):
    """One item of ``GET /api/maintenance/status`` (seed 000).

    assumption: the seed's items have no ``EndDate``; one that does (the create model's
    field) is read, so a window extended on the status page is followed. Never required.
    """

    incident_id: str
    title: str
    status: str
    start_date: datetime
    end_date: datetime | None = None

    @field_validator("start_date", "end_date")
    @classmethod
    def _as_utc(cls, value: datetime | None) -> datetime | None:
        # The seed shows a trailing "Z"; a .NET backend may also omit it.
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


_ONGOING_LIST = TypeAdapter(list[OngoingMaintenance])


class StatusPageClient(UpstreamClient):
    """Talks to one status page with one API key; every call sends ``X-API-KEY``."""

    service = SERVICE
    url_setting = URL_SETTING
    credentials = "the API key"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        hide: tuple[str, ...] = (),
    ) -> None:
        super().__init__(
            base_url, timeout=timeout, transport=transport, headers={"X-API-KEY": api_key}, secrets=(api_key,), hide=hide
        )

    # -- operations -------------------------------------------------------

    @observed
    async def create_incident(self, model: IncidentCreateModel) -> str:
        """Open an incident; returns the new incident's GUID."""
        payload = await self._call("POST", _INCIDENT_PATH, model.to_wire())
        return self._new_id(payload, "incident")

    @observed
    async def create_maintenance(self, model: MaintenanceCreateModel) -> str:
        """Schedule a maintenance window; returns its GUID (an incident ID)."""
        payload = await self._call("POST", _INCIDENT_PATH, model.to_wire())
        return self._new_id(payload, "maintenance")

    @observed
    async def update_incident(self, model: IncidentUpdateModel) -> str:
        """Post an update; returns the upstream ``Message`` (the seed's reply has no ``Result``)."""
        payload = await self._call("PUT", _INCIDENT_PATH, model.to_wire())
        return self._envelope(payload).message or ""

    @observed
    async def resolve_incident(self, incident_id: str) -> str:
        """Resolve an incident; returns the upstream ``Message``."""
        body = ResolveIncidentModel(incident_id=incident_id).to_wire()
        try:
            payload = await self._call("POST", _RESOLVE_PATH, body)
        except UpstreamRejected as exc:
            # Seed 004 answers a second resolve with this Message; callers follow it instead
            # of failing, and the person still reads the upstream's own words.
            if type(exc) is UpstreamRejected and "already resolved" in exc.message.lower():
                raise AlreadyResolved(SERVICE, exc.message, exc.status) from None
            raise
        return self._envelope(payload).message or ""

    @observed
    async def ongoing_maintenance(self) -> list[OngoingMaintenance]:
        """Windows in progress now, as the status page sees them."""
        payload = await self._call("GET", _ONGOING_PATH)
        if not isinstance(payload, list):
            raise UpstreamUnavailable(SERVICE, "its maintenance status reply was not a list")
        try:
            return _ONGOING_LIST.validate_python(payload)
        except ValidationError:
            raise UpstreamUnavailable(SERVICE, "its maintenance status reply did not have the documented fields") from None

    async def ping(self) -> None:
        """Cheap authenticated call for a config check; raises the typed error on failure.
        The seeds have no read-only incident call, so this reads the maintenance list:
        harmless, and it proves the URL and the key."""
        await self.ongoing_maintenance()

    @property
    def ping_url(self) -> str:
        return self.url_of(_ONGOING_PATH)

    # -- plumbing ---------------------------------------------------------

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        kwargs: dict[str, Any] = {} if body is None else {"json": body}
        return await self._request(method, path, **kwargs)

    def _check_success(self, payload: Any, status: int) -> None:
        # Seed 004's quirk: a 2xx whose envelope says `Success: false` is a refusal.
        if isinstance(payload, dict) and payload.get("Success") is False:
            message = self._safe(self._message_of(payload))
            raise UpstreamRejected(SERVICE, message or "it did not accept the request", status)

    def _message_in(self, response: httpx.Response) -> str | None:
        return self._message_of(decode(response))

    @staticmethod
    def _message_of(payload: Any) -> str | None:
        if isinstance(payload, dict):
            message = payload.get("Message")
            if isinstance(message, str) and message.strip():
                return message.strip()
        return None

    @staticmethod
    def _envelope(payload: Any) -> ApiResponse[Any]:
        try:
            return ApiResponse[Any].model_validate(payload)
        except ValidationError:
            raise UpstreamUnavailable(SERVICE, "its reply was not the documented {Success, Result, Message} envelope") from None

    def _new_id(self, payload: Any, what: str) -> str:
        """The new object's GUID from a create's envelope. `Success: true` without a usable one
        says the status page did it and not what it made: the create may exist, so sending it
        again could make a second one (outcome unknown, never a failure to retry)."""
        envelope = self._envelope(payload)
        if isinstance(envelope.result, str) and envelope.result.strip():
            return envelope.result.strip()
        if envelope.success:
            raise OutcomeUnknown(SERVICE, f"it said the {what} was created but did not return its ID")
        raise UpstreamUnavailable(SERVICE, f"it did not return the new {what}'s ID")
