"""StatusPageClient against FakeStatusPage over real HTTP (seeds 004 and 000)."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from bot.clients.statuspage import (
    ApiResponse,
    IncidentCreateModel,
    IncidentUpdateModel,
    MaintenanceCreateModel,
    OngoingMaintenance,
    StatusPageClient,
)
from bot.errors import (
    OutcomeUnknown,
    UpstreamError,
    UpstreamRejected,
    UpstreamUnauthorized,
    UpstreamUnavailable,
    UpstreamWrongURL,
)
from tests.support.fakes.statuspage import FakeStatusPage

KEY = FakeStatusPage.DEFAULT_API_KEY
COMPONENT = "3fa85f64-5717-4562-b3fc-2c963f66afa0"
NOW = datetime(2023, 11, 1, 3, 0, tzinfo=UTC)


@pytest.fixture
def sp() -> Iterator[FakeStatusPage]:
    with FakeStatusPage() as server:
        yield server


@pytest.fixture
async def client(sp: FakeStatusPage) -> AsyncIterator[StatusPageClient]:
    async with StatusPageClient(sp.url, KEY, timeout=2.0) as c:
        yield c


def seed_incident(**overrides: Any) -> IncidentCreateModel:
    values: dict[str, Any] = {
        "title": "Database Connectivity Issues",
        "description": "We are investigating reports of database timeouts.",
        "status": "Investigating",
        "impact": "Major Outage",
        "affected_components": [COMPONENT],
        "is_notify": True,
    }
    values.update(overrides)
    return IncidentCreateModel(**values)


def seed_maintenance(**overrides: Any) -> MaintenanceCreateModel:
    values: dict[str, Any] = {
        "title": "Scheduled Database Maintenance",
        "description": "We will be performing routine database optimizations.",
        "start_date": datetime(2023, 11, 1, 2, 0, tzinfo=UTC),
        "end_date": datetime(2023, 11, 1, 4, 0, tzinfo=UTC),
        "affected_components": [COMPONENT],
    }
    values.update(overrides)
    return MaintenanceCreateModel(**values)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def assert_no_secret(err: BaseException, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in str(err)
        assert secret not in repr(err)
        if isinstance(err, UpstreamError):
            assert secret not in err.message


# -- models -------------------------------------------------------------------


def test_status_and_impact_are_sent_as_configured() -> None:
    """The seed lists no vocabulary: the client sends the operator's words (settings decide
    what the forms offer) and leaves it to the status page to refuse them."""
    body = seed_incident(status="Postmortem", impact="Cosmetic").to_wire()
    assert (body["Status"], body["Impact"]) == ("Postmortem", "Cosmetic")


def test_models_populate_by_name_and_by_alias() -> None:
    by_alias = IncidentUpdateModel.model_validate({"IncidentId": "x", "Description": "d", "Status": "Monitoring"})
    assert by_alias == IncidentUpdateModel(incident_id="x", description="d", status="Monitoring")


def test_empty_status_or_impact_is_refused_before_sending() -> None:
    with pytest.raises(ValidationError):
        seed_incident(status=" ")
    with pytest.raises(ValidationError):
        seed_incident(impact="")
    with pytest.raises(ValidationError):
        IncidentUpdateModel(incident_id="x", description="d", status="")


def test_maintenance_dates_must_be_aware() -> None:
    with pytest.raises(ValidationError):
        seed_maintenance(start_date=datetime(2023, 11, 1, 2, 0))


def test_envelope_without_result_parses() -> None:
    envelope = ApiResponse[str].model_validate({"Success": True, "Message": "ok"})
    assert envelope.result is None and envelope.message == "ok"


def test_ongoing_maintenance_end_date_is_optional_and_utc() -> None:
    base = {"IncidentId": "i", "Title": "t", "Status": "In Progress", "StartDate": "2023-11-01T02:00:00Z"}
    assert OngoingMaintenance.model_validate(base).end_date is None
    assert OngoingMaintenance.model_validate({**base, "EndDate": None}).end_date is None
    item = OngoingMaintenance.model_validate({**base, "EndDate": "2023-11-01T04:00:00"})
    assert item.end_date == datetime(2023, 11, 1, 4, 0, tzinfo=UTC)


def test_ongoing_maintenance_naive_start_is_utc() -> None:
    item = OngoingMaintenance.model_validate(
        {
            "IncidentId": "i",
            "Title": "t",
            "Status": "In Progress",
            "StartDate": "2023-11-01T02:00:00",
        }
    )
    assert item.start_date == datetime(2023, 11, 1, 2, 0, tzinfo=UTC)


# -- create -------------------------------------------------------------------


async def test_create_incident_sends_the_seed_body(sp: FakeStatusPage, client: StatusPageClient) -> None:
    incident_id = await client.create_incident(seed_incident())

    uuid.UUID(incident_id)
    [request] = sp.requests
    assert (request.method, request.path) == ("POST", "/api/admin/Incident")
    assert request.headers["X-API-KEY"] == KEY
    assert request.headers["Content-Type"].startswith("application/json")
    assert request.json == {
        "Title": "Database Connectivity Issues",
        "Description": "We are investigating reports of database timeouts.",
        "Status": "Investigating",
        "Impact": "Major Outage",
        "AffectedComponents": [COMPONENT],
        "IsNotify": True,
    }
    assert sp.incidents[incident_id]["Title"] == "Database Connectivity Issues"
    assert sp.incidents[incident_id]["Resolved"] is False


@pytest.mark.parametrize("title", ["", "   "])
async def test_create_incident_without_title_is_rejected_verbatim(
    sp: FakeStatusPage, client: StatusPageClient, title: str
) -> None:
    with pytest.raises(UpstreamRejected) as caught:
        await client.create_incident(seed_incident(title=title))
    assert caught.value.message == "Title is required."
    assert caught.value.status == 400
    assert caught.value.service == "status page"
    assert "Title is required." in str(caught.value)
    assert sp.incidents == {}


async def test_create_maintenance_sends_the_seed_body(sp: FakeStatusPage, client: StatusPageClient) -> None:
    # An aware non-UTC time must go out as the same instant in UTC with "Z".
    plus_two = timezone(timedelta(hours=2))
    model = seed_maintenance(start_date=datetime(2023, 11, 1, 4, 0, tzinfo=plus_two))

    maintenance_id = await client.create_maintenance(model)

    uuid.UUID(maintenance_id)
    assert sp.requests[0].json == {
        "Title": "Scheduled Database Maintenance",
        "Type": "Maintenance",
        "Description": "We will be performing routine database optimizations.",
        "StartDate": "2023-11-01T02:00:00Z",
        "EndDate": "2023-11-01T04:00:00Z",
        "AffectedComponents": [COMPONENT],
    }
    assert sp.requests[0].headers["X-API-KEY"] == KEY
    assert sp.incidents[maintenance_id]["Type"] == "Maintenance"


@pytest.mark.parametrize("end_offset", [timedelta(0), timedelta(hours=-1)])
async def test_maintenance_end_not_after_start_is_rejected(client: StatusPageClient, end_offset: timedelta) -> None:
    start = datetime(2023, 11, 1, 2, 0, tzinfo=UTC)
    with pytest.raises(UpstreamRejected) as caught:
        await client.create_maintenance(seed_maintenance(start_date=start, end_date=start + end_offset))
    assert caught.value.message == "End date must be after start date."


# -- update / resolve -----------------------------------------------------------


async def test_update_incident_returns_message(sp: FakeStatusPage, client: StatusPageClient) -> None:
    incident_id = await client.create_incident(seed_incident())
    update = IncidentUpdateModel(
        incident_id=incident_id,
        description="We have identified the root cause and are applying a fix.",
        status="Identified",
    )

    message = await client.update_incident(update)

    assert message == "Incident updated successfully"
    request = sp.requests[-1]
    assert (request.method, request.path) == ("PUT", "/api/admin/Incident")
    assert request.headers["X-API-KEY"] == KEY
    assert request.json == {
        "IncidentId": incident_id,
        "Description": "We have identified the root cause and are applying a fix.",
        "Status": "Identified",
    }
    assert sp.incidents[incident_id]["Status"] == "Identified"
    assert len(sp.incidents[incident_id]["Updates"]) == 1


async def test_update_unknown_incident_is_rejected(client: StatusPageClient) -> None:
    update = IncidentUpdateModel(incident_id=str(uuid.uuid4()), description="x", status="Monitoring")
    with pytest.raises(UpstreamRejected) as caught:
        await client.update_incident(update)
    assert caught.value.message == "Incident ID not found."


async def test_resolve_incident_then_again(sp: FakeStatusPage, client: StatusPageClient) -> None:
    incident_id = await client.create_incident(seed_incident())

    assert await client.resolve_incident(incident_id) == "Incident resolved successfully"
    request = sp.requests[-1]
    assert (request.method, request.path) == ("POST", "/api/admin/Incident/ResolveIncident")
    assert request.json == {"IncidentId": incident_id}
    assert request.headers["X-API-KEY"] == KEY
    assert sp.incidents[incident_id]["Resolved"] is True

    with pytest.raises(UpstreamRejected) as caught:
        await client.resolve_incident(incident_id)
    assert caught.value.message == "Incident already resolved."
    assert caught.value.status == 400


async def test_resolve_unknown_incident_is_rejected(client: StatusPageClient) -> None:
    with pytest.raises(UpstreamRejected) as caught:
        await client.resolve_incident(str(uuid.uuid4()))
    assert caught.value.message == "Incident ID not found."


# -- ongoing maintenance / ping ---------------------------------------------------


async def test_ongoing_maintenance_lists_the_windows_marked_in_progress(sp: FakeStatusPage, client: StatusPageClient) -> None:
    current = sp.add_maintenance("Now", NOW - timedelta(hours=1), NOW + timedelta(hours=1), in_progress=True)
    sp.add_maintenance("Not marked", NOW - timedelta(hours=1), NOW + timedelta(hours=1))
    resolved = sp.add_maintenance("Cancelled", NOW - timedelta(hours=1), NOW + timedelta(hours=1), in_progress=True)
    await client.resolve_incident(resolved)
    await client.create_incident(seed_incident())  # not a maintenance
    made_by_bot = await client.create_maintenance(seed_maintenance())
    sp.start_maintenance(made_by_bot)

    ongoing = await client.ongoing_maintenance()

    assert [item.incident_id for item in ongoing] == [current, made_by_bot]
    by_id = {item.incident_id: item for item in ongoing}
    assert by_id[current].title == "Now"
    assert by_id[current].status == "In Progress"
    assert by_id[current].start_date == NOW - timedelta(hours=1)
    assert by_id[current].end_date is None  # seed 000's items carry no EndDate
    assert by_id[made_by_bot].start_date == datetime(2023, 11, 1, 2, 0, tzinfo=UTC)
    request = sp.requests[-1]
    assert (request.method, request.path) == ("GET", "/api/maintenance/status")
    assert request.headers["X-API-KEY"] == KEY


async def test_ongoing_maintenance_reads_an_end_date_when_the_server_sends_one(
    sp: FakeStatusPage, client: StatusPageClient
) -> None:
    sp.list_end_dates = True
    made = await client.create_maintenance(seed_maintenance())
    sp.start_maintenance(made)
    [item] = await client.ongoing_maintenance()
    assert item.end_date == datetime(2023, 11, 1, 4, 0, tzinfo=UTC)


async def test_ongoing_maintenance_empty(client: StatusPageClient) -> None:
    assert await client.ongoing_maintenance() == []


async def test_ping_is_an_authenticated_get(sp: FakeStatusPage, client: StatusPageClient) -> None:
    await client.ping()
    [request] = sp.requests
    assert (request.method, request.path) == ("GET", "/api/maintenance/status")
    assert request.headers["X-API-KEY"] == KEY


async def test_base_url_with_trailing_slash(sp: FakeStatusPage) -> None:
    async with StatusPageClient(sp.url + "/", KEY) as c:
        await c.ping()
    assert sp.requests[0].path == "/api/maintenance/status"


@pytest.mark.parametrize("suffix", ["/api", "/api/"])
async def test_base_url_ending_in_api_is_not_doubled(sp: FakeStatusPage, suffix: str) -> None:
    async with StatusPageClient(sp.url + suffix, KEY) as c:
        await c.ping()
    assert sp.requests[0].path == "/api/maintenance/status"


# -- error forms ------------------------------------------------------------------

Call = Callable[[StatusPageClient], Any]

ALL_CALLS: dict[str, Call] = {
    "create_incident": lambda c: c.create_incident(seed_incident()),
    "create_maintenance": lambda c: c.create_maintenance(seed_maintenance()),
    "update_incident": lambda c: c.update_incident(IncidentUpdateModel(incident_id="x", description="d", status="Monitoring")),
    "resolve_incident": lambda c: c.resolve_incident("x"),
    "ongoing_maintenance": lambda c: c.ongoing_maintenance(),
    "ping": lambda c: c.ping(),
}


@pytest.mark.parametrize("call", ALL_CALLS.values(), ids=ALL_CALLS.keys())
async def test_wrong_key_is_unauthorized_everywhere(sp: FakeStatusPage, call: Call) -> None:
    secret = "wrong-key-that-must-not-leak"
    async with StatusPageClient(sp.url, secret) as c:
        with pytest.raises(UpstreamUnauthorized) as caught:
            await call(c)
    assert caught.value.message == "Invalid or missing API key."
    assert caught.value.status == 401
    assert_no_secret(caught.value, secret, KEY)
    assert sp.requests[0].headers["X-API-KEY"] == secret


@pytest.mark.parametrize("call", ALL_CALLS.values(), ids=ALL_CALLS.keys())
async def test_server_error_is_unavailable_everywhere(sp: FakeStatusPage, client: StatusPageClient, call: Call) -> None:
    sp.fail_status = 500
    with pytest.raises(UpstreamUnavailable) as caught:
        await call(client)
    assert caught.value.message == "An unexpected error occurred."
    assert caught.value.status == 500
    assert_no_secret(caught.value, KEY)


async def test_fail_times_then_recovers(sp: FakeStatusPage, client: StatusPageClient) -> None:
    sp.fail_times(2, status=503)
    for _ in range(2):
        with pytest.raises(UpstreamUnavailable) as caught:
            await client.ping()
        assert caught.value.status == 503
    await client.ping()


async def test_timeout_is_unavailable(sp: FakeStatusPage) -> None:
    sp.latency = 2.0
    async with StatusPageClient(sp.url, KEY, timeout=0.2) as c:
        began = time.monotonic()
        with pytest.raises(UpstreamUnavailable) as caught:
            await c.create_incident(seed_incident())
    assert time.monotonic() - began < 1.5
    assert "0.2 seconds" in str(caught.value)
    assert_no_secret(caught.value, KEY)


async def test_connection_refused_is_unavailable() -> None:
    async with StatusPageClient(closed_port_url(), KEY, timeout=2.0) as c:
        with pytest.raises(UpstreamUnavailable) as caught:
            await c.ping()
    assert caught.value.status is None
    assert_no_secret(caught.value, KEY)


@pytest.mark.parametrize("call", ALL_CALLS.values(), ids=ALL_CALLS.keys())
async def test_malformed_body_is_unavailable(sp: FakeStatusPage, client: StatusPageClient, call: Call) -> None:
    sp.malformed = True
    with pytest.raises(UpstreamUnavailable):
        await call(client)


def mock_client(status: int, body: Any) -> StatusPageClient:
    """For reply shapes the seeds allow but the fake never produces."""

    def handler(request: httpx.Request) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.Response(status, content=content, headers={"Content-Type": "application/json"})

    return StatusPageClient("http://status.test", KEY, transport=httpx.MockTransport(handler))


async def test_200_with_success_false_is_rejected() -> None:
    async with mock_client(200, {"Success": False, "Result": None, "Message": "Component unknown."}) as c:
        with pytest.raises(UpstreamRejected) as caught:
            await c.create_incident(seed_incident())
    assert caught.value.message == "Component unknown."
    assert caught.value.status == 200


@pytest.mark.parametrize("body", [{"Id": "3fa85f64-5717-4562-b3fc-2c963f66afa6"}, ["not", "an", "envelope"]])
async def test_create_with_wrong_shaped_body_is_unavailable(body: Any) -> None:
    async with mock_client(200, body) as c:
        with pytest.raises(UpstreamUnavailable) as caught:
            await c.create_incident(seed_incident())
    assert not isinstance(caught.value, OutcomeUnknown)  # nothing says it was done: safe to retry


@pytest.mark.parametrize(
    "body",
    [
        {"Success": True, "Message": "Incident created successfully"},
        {"Success": True, "Result": None, "Message": "Incident created successfully"},
        {"Success": True, "Result": ""},
        {"Success": True, "Result": 42},
    ],
)
async def test_a_create_said_done_without_its_id_is_outcome_unknown(body: Any) -> None:
    # It exists upstream and we cannot tell which it is: a Retry could make a second one.
    async with mock_client(200, body) as c:
        with pytest.raises(OutcomeUnknown):
            await c.create_incident(seed_incident())
        with pytest.raises(OutcomeUnknown):
            await c.create_maintenance(seed_maintenance())


@pytest.mark.parametrize("body", [{"Success": True}, [{"IncidentId": "x"}], {"Success": True, "Result": []}])
async def test_ongoing_with_wrong_shaped_body_is_unavailable(body: Any) -> None:
    async with mock_client(200, body) as c:
        with pytest.raises(UpstreamUnavailable):
            await c.ongoing_maintenance()


async def test_400_without_message_still_explains() -> None:
    async with mock_client(400, b"") as c:
        with pytest.raises(UpstreamRejected) as caught:
            await c.create_incident(seed_incident())
    assert "400" in caught.value.message


async def test_echoed_key_is_scrubbed() -> None:
    body = {"Success": False, "Result": None, "Message": f"Key {KEY} is revoked."}
    async with mock_client(401, body) as c:
        with pytest.raises(UpstreamUnauthorized) as caught:
            await c.ping()
    assert_no_secret(caught.value, KEY)
    assert "revoked" in caught.value.message


async def test_client_repr_hides_key(sp: FakeStatusPage) -> None:
    async with StatusPageClient(sp.url, KEY) as c:
        assert KEY not in repr(c)


# -- the fake itself ----------------------------------------------------------------


def test_fake_refuses_status_get_without_key(sp: FakeStatusPage) -> None:
    reply = httpx.get(f"{sp.url}/api/maintenance/status")
    assert reply.status_code == 401
    assert reply.json() == {
        "Success": False,
        "Result": None,
        "Message": "Invalid or missing API key.",
    }


def _listed(sp: FakeStatusPage) -> list[dict[str, Any]]:
    reply = httpx.get(f"{sp.url}/api/maintenance/status", headers={"X-API-KEY": KEY})
    assert reply.status_code == 200
    return reply.json()


def test_fake_lists_a_window_past_its_start_only_once_marked_in_progress(sp: FakeStatusPage) -> None:
    """Seed 000 lists the windows "currently active", not every window between its dates:
    the fake lists one only once someone marks it, maybe long after its StartDate."""
    sp.clock = lambda: NOW
    window = sp.add_maintenance("Late", NOW - timedelta(minutes=30), NOW + timedelta(hours=1))
    assert _listed(sp) == []
    sp.clock = lambda: NOW + timedelta(minutes=20)
    assert _listed(sp) == []  # time alone never lists it

    sp.start_maintenance(window)
    assert _listed(sp) == [
        {
            "IncidentId": window,
            "Title": "Late",
            "Status": "In Progress",
            "StartDate": "2023-11-01T02:30:00Z",
        }
    ]


def test_fake_keeps_listing_a_window_until_it_is_marked_done_or_resolved(sp: FakeStatusPage) -> None:
    sp.clock = lambda: NOW
    done = sp.add_maintenance("Done early", NOW - timedelta(hours=1), NOW + timedelta(hours=1), in_progress=True)
    resolved = sp.add_maintenance("Resolved", NOW - timedelta(hours=1), NOW + timedelta(hours=1), in_progress=True)
    over = sp.add_maintenance("Overrun", NOW - timedelta(hours=2), NOW - timedelta(hours=1), in_progress=True)
    sp.clock = lambda: NOW + timedelta(days=1)
    assert [i["IncidentId"] for i in _listed(sp)] == [done, resolved, over]  # its EndDate does not unlist it

    sp.finish_maintenance(done)
    reply = httpx.post(f"{sp.url}/api/admin/Incident/ResolveIncident", headers={"X-API-KEY": KEY}, json={"IncidentId": resolved})
    assert reply.json()["Success"] is True
    assert [i["IncidentId"] for i in _listed(sp)] == [over]
    # Marked done on the status page is resolved there: resolving it again is refused.
    again = httpx.post(f"{sp.url}/api/admin/Incident/ResolveIncident", headers={"X-API-KEY": KEY}, json={"IncidentId": done})
    assert (again.status_code, again.json()["Message"]) == (400, "Incident already resolved.")
    with pytest.raises(ValueError):
        sp.start_maintenance(done)


def test_fake_marks_only_maintenance_windows(sp: FakeStatusPage) -> None:
    incident = httpx.post(
        f"{sp.url}/api/admin/Incident",
        headers={"X-API-KEY": KEY},
        json={"Title": "T", "Description": "", "Status": "Investigating", "Impact": "Major Outage"},
    ).json()["Result"]
    with pytest.raises(KeyError):
        sp.start_maintenance(incident)
    with pytest.raises(KeyError):
        sp.start_maintenance(str(uuid.uuid4()))


def test_fake_lists_no_end_date_unless_told(sp: FakeStatusPage) -> None:
    window = sp.add_maintenance("x", NOW, NOW + timedelta(hours=1), in_progress=True)
    assert "EndDate" not in _listed(sp)[0]
    sp.list_end_dates = True
    assert _listed(sp)[0]["EndDate"] == "2023-11-01T04:00:00Z"
    sp.reset()
    assert sp.list_end_dates is False and window not in sp.incidents


def test_fake_update_reply_has_no_result(sp: FakeStatusPage) -> None:
    headers = {"X-API-KEY": KEY}
    created = httpx.post(
        f"{sp.url}/api/admin/Incident",
        headers=headers,
        json={
            "Title": "T",
            "Description": "",
            "Status": "Investigating",
            "Impact": "Partial Outage",
        },
    ).json()
    assert created["Success"] is True and created["Message"] == "Incident created successfully"
    reply = httpx.put(
        f"{sp.url}/api/admin/Incident",
        headers=headers,
        json={"IncidentId": created["Result"], "Description": "d", "Status": "Monitoring"},
    )
    assert reply.status_code == 200
    assert reply.json() == {"Success": True, "Message": "Incident updated successfully"}


def test_fake_answers_a_create_without_its_result_when_told_and_still_makes_it(sp: FakeStatusPage) -> None:
    sp.answer_without_result(1)
    body = {"Title": "T", "Description": "", "Status": "Investigating", "Impact": "Partial Outage"}
    bare = httpx.post(f"{sp.url}/api/admin/Incident", headers={"X-API-KEY": KEY}, json=body)
    assert bare.status_code == 200 and bare.json() == {"Success": True, "Message": "Incident created successfully"}
    assert len(sp.incidents) == 1  # made, all the same
    refused = httpx.post(f"{sp.url}/api/admin/Incident", headers={"X-API-KEY": KEY}, json={**body, "Title": ""})
    assert refused.json()["Success"] is False  # the switch does not turn a refusal into a success
    normal = httpx.post(f"{sp.url}/api/admin/Incident", headers={"X-API-KEY": KEY}, json=body).json()
    assert normal["Result"] in sp.incidents and len(sp.incidents) == 2


def test_fake_missing_title_and_500_envelope(sp: FakeStatusPage) -> None:
    headers = {"X-API-KEY": KEY}
    reply = httpx.post(f"{sp.url}/api/admin/Incident", headers=headers, json={"Status": "Investigating"})
    assert (reply.status_code, reply.json()["Message"]) == (400, "Title is required.")
    sp.fail_status = 500
    reply = httpx.post(f"{sp.url}/api/admin/Incident", headers=headers, json={})
    assert reply.status_code == 500
    assert reply.json() == {
        "Success": False,
        "Result": None,
        "Message": "An unexpected error occurred.",
    }


def test_fake_reset_restores_defaults(sp: FakeStatusPage) -> None:
    httpx.get(f"{sp.url}/api/maintenance/status")
    sp.add_maintenance("x", NOW, NOW + timedelta(hours=1), in_progress=True)
    sp.api_key = "other"
    sp.fail_status = 500
    sp.latency = 1.0
    sp.malformed = True
    sp.fail_times(3)
    sp.clock = lambda: NOW

    sp.reset()

    assert sp.api_key == KEY and sp.fail_status is None
    assert sp.latency == 0.0 and sp.malformed is False
    assert sp.incidents == {} and sp.requests == []
    assert httpx.get(f"{sp.url}/api/maintenance/status", headers={"X-API-KEY": KEY}).json() == []


@pytest.mark.parametrize("call", ALL_CALLS.values(), ids=ALL_CALLS.keys())
async def test_a_404_names_the_url_tried_and_the_setting(sp: FakeStatusPage, call: Call) -> None:
    async with StatusPageClient(sp.url + "/v2", KEY) as c:
        with pytest.raises(UpstreamWrongURL) as caught:
            await call(c)
    err = caught.value
    assert err.url.startswith(f"{sp.url}/v2/api/") and err.setting == "STATUSPAGE_URL" and err.status == 404
    assert err.url in str(err) and "STATUSPAGE_URL" in str(err) and "try again" not in str(err).lower()
    assert err.url not in err.message  # what a person may see leaves the address out
    assert KEY not in str(err) + repr(err)


async def test_a_url_with_credentials_is_shown_without_them(sp: FakeStatusPage) -> None:
    with_userinfo = sp.url.replace("http://", "http://someone:pa55word-9@") + "/v2"
    async with StatusPageClient(with_userinfo, KEY) as c:
        with pytest.raises(UpstreamWrongURL) as caught:
            await c.ping()
        assert "pa55word-9" not in c.ping_url
    assert "pa55word-9" not in str(caught.value) and "someone" not in str(caught.value)


def test_fake_takes_any_vocabulary_unless_told_otherwise(sp: FakeStatusPage) -> None:
    headers = {"X-API-KEY": KEY}
    body = seed_incident(status="Postmortem", impact="Cosmetic").to_wire()
    assert httpx.post(f"{sp.url}/api/admin/Incident", json=body, headers=headers).json()["Success"] is True
    sp.accepted_statuses = ("Investigating", "Identified")
    sp.accepted_impacts = ("Major Outage",)
    refused = httpx.post(f"{sp.url}/api/admin/Incident", json=body, headers=headers)
    assert (refused.status_code, refused.json()) == (
        400,
        {"Success": False, "Result": None, "Message": "Status 'Postmortem' is not valid."},
    )
    body["Status"] = "Identified"
    refused = httpx.post(f"{sp.url}/api/admin/Incident", json=body, headers=headers)
    assert (refused.status_code, refused.json()["Message"]) == (400, "Impact 'Cosmetic' is not valid.")
    incident_id = next(iter(sp.incidents))
    update = {"IncidentId": incident_id, "Description": "d", "Status": "Monitoring"}
    refused = httpx.put(f"{sp.url}/api/admin/Incident", json=update, headers=headers)
    assert (refused.status_code, refused.json()["Message"]) == (400, "Status 'Monitoring' is not valid.")
    sp.reset()
    assert sp.accepted_statuses is None and sp.accepted_impacts is None
