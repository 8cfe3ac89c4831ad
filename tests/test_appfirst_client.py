"""AppFirstClient against FakeAppFirst over real HTTP (seed 003)."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

import bot.clients.appfirst
from bot.clients.appfirst import AppFirstClient, MaintenanceWindow, format_servers
from bot.errors import (
    UpstreamError,
    UpstreamNotFound,
    UpstreamRejected,
    UpstreamUnauthorized,
    UpstreamUnavailable,
    UpstreamWrongURL,
)
from tests.support.fakes.appfirst import SEED_SHIFT, FakeAppFirst

EMAIL = FakeAppFirst.DEFAULT_EMAIL
KEY = FakeAppFirst.DEFAULT_API_KEY
START = datetime(2012, 10, 20, 14, 0, tzinfo=UTC)
END = datetime(2012, 10, 20, 15, 0, tzinfo=UTC)
BASIC = "Basic " + base64.b64encode(f"{EMAIL}:{KEY}".encode()).decode()


@pytest.fixture
def fa() -> Iterator[FakeAppFirst]:
    with FakeAppFirst() as server:
        yield server


@pytest.fixture
async def client(fa: FakeAppFirst) -> AsyncIterator[AppFirstClient]:
    async with AppFirstClient(fa.url, EMAIL, KEY, timeout=5.0) as c:
        yield c


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


async def create_seed_window(client: AppFirstClient) -> MaintenanceWindow:
    return await client.create_window(start=START, end=END, reason="server updates", servers=[1, 2, 3])


# -- model ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        1350745200,
        1350745200.0,
        "1350745200",
        "2012-10-20 15:00:00",
        "2012-10-20 15:00",
        "2012-10-20T15:00:00Z",
    ],
)
def test_window_accepts_every_time_form_as_utc(value: Any) -> None:
    window = MaintenanceWindow.model_validate({"id": 1, "start": value, "end": value, "servers": []})
    assert window.start == datetime(2012, 10, 20, 15, 0, tzinfo=UTC)
    assert window.start.tzinfo is not None and window.end.utcoffset() == timedelta(0)


@pytest.mark.parametrize("value", ["20/10/2012", True, None, "soon"])
def test_window_refuses_nonsense_times(value: Any) -> None:
    with pytest.raises(ValueError):
        MaintenanceWindow.model_validate({"id": 1, "start": value, "end": 0, "servers": []})


def test_servers_form_value() -> None:
    assert format_servers([1, 2, 3]) == "[1,2,3]"
    assert format_servers([]) == "[]"


def test_page_size_is_bounded() -> None:
    with pytest.raises(ValueError):
        AppFirstClient("http://af.test", EMAIL, KEY, page_size=2501)
    with pytest.raises(ValueError):
        AppFirstClient("http://af.test", EMAIL, KEY, page_size=0)


# -- create / update ---------------------------------------------------------------


async def test_create_window_sends_the_seed_form(fa: FakeAppFirst, client: AppFirstClient) -> None:
    fa.shift = timedelta(0)  # a server that keeps what it is sent: the reply is parsed as is
    window = await create_seed_window(client)

    [request] = fa.requests
    assert (request.method, request.path) == ("POST", "/api/maintenance_windows/")
    assert request.headers["Authorization"] == BASIC
    assert request.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert request.form == {
        "start": "2012-10-20 14:00",
        "end": "2012-10-20 15:00",
        "reason": "server updates",
        "servers": "[1,2,3]",
    }
    assert window.id in fa.windows
    assert (window.start, window.end) == (START, END)
    assert window.reason == "server updates"
    assert window.servers == [1, 2, 3]
    assert window.url == f"/api/v5/maintenance_windows/{window.id}/"
    assert window.started is None and window.ended is None  # POST reply omits them


async def test_create_window_converts_to_utc_and_drops_seconds(fa: FakeAppFirst, client: AppFirstClient) -> None:
    minus_five = timezone(timedelta(hours=-5))
    await client.create_window(
        start=datetime(2012, 10, 20, 9, 0, 59, tzinfo=minus_five),
        end=datetime(2012, 10, 20, 10, 0, tzinfo=minus_five),
        reason="",
        servers=[],
    )
    assert fa.requests[0].form == {
        "start": "2012-10-20 14:00",
        "end": "2012-10-20 15:00",
        "reason": "",
        "servers": "[]",
    }


async def test_naive_datetime_is_refused_before_sending(fa: FakeAppFirst, client: AppFirstClient) -> None:
    with pytest.raises(ValueError):
        await client.create_window(start=START.replace(tzinfo=None), end=END, reason="", servers=[1])
    assert fa.requests == []


async def test_server_shifted_time_is_returned_as_truth(fa: FakeAppFirst, client: AppFirstClient) -> None:
    assert fa.shift == timedelta(hours=5)  # the fake's default is the seed: 14:00 sent, 19:00 kept

    window = await create_seed_window(client)

    assert window.start == datetime(2012, 10, 20, 19, 0, tzinfo=UTC)
    assert window.end == datetime(2012, 10, 20, 20, 0, tzinfo=UTC)
    assert fa.requests[0].form is not None and fa.requests[0].form["start"] == "2012-10-20 14:00"
    fetched = await client.get_window(window.id)
    assert (fetched.start, fetched.end) == (window.start, window.end)


async def test_update_window_sends_put_form_and_returns_reply(fa: FakeAppFirst, client: AppFirstClient) -> None:
    window_id = fa.add_window(START, END, reason="old", servers=[9])
    fa.shift = timedelta(hours=1)  # not the default, so the reply cannot be the default by chance

    updated = await client.update_window(
        window_id,
        start=START + timedelta(days=1),
        end=END + timedelta(days=1),
        reason="new",
        servers=[4, 5],
    )

    request = fa.requests[-1]
    assert (request.method, request.path) == ("PUT", f"/api/maintenance_windows/{window_id}/")
    assert request.headers["Authorization"] == BASIC
    assert request.form == {
        "start": "2012-10-21 14:00",
        "end": "2012-10-21 15:00",
        "reason": "new",
        "servers": "[4,5]",
    }
    assert updated.id == window_id
    assert updated.start == datetime(2012, 10, 21, 15, 0, tzinfo=UTC)  # server's shifted value
    assert updated.servers == [4, 5]
    assert updated.reason == "new"  # the seed's PUT reply omits it; kept from the request
    assert fa.windows[window_id]["reason"] == "new"


async def test_update_unknown_window_is_not_found(client: AppFirstClient) -> None:
    with pytest.raises(UpstreamNotFound) as caught:
        await client.update_window(123, start=START, end=END, reason="", servers=[1])
    assert caught.value.message == "Maintenance window 123 was not found."
    assert caught.value.status == 404
    assert isinstance(caught.value, UpstreamRejected)


async def test_end_not_after_start_is_rejected_with_server_message(client: AppFirstClient) -> None:
    with pytest.raises(UpstreamRejected) as caught:
        await client.create_window(start=END, end=START, reason="", servers=[1])
    assert caught.value.message == "end must be after start."
    assert caught.value.status == 400
    assert "end must be after start." in str(caught.value)


# -- get / delete ---------------------------------------------------------------------


async def test_get_window_reads_epoch_numbers(fa: FakeAppFirst, client: AppFirstClient) -> None:
    fa.clock = lambda: START + timedelta(minutes=30)
    window_id = fa.add_window(START, END, reason="db", servers=[7])

    window = await client.get_window(window_id)

    raw = httpx.get(f"{fa.url}/api/maintenance_windows/{window_id}/", auth=(EMAIL, KEY)).json()
    assert raw["start"] == int(START.timestamp()) and isinstance(raw["end"], int)
    assert window == MaintenanceWindow(
        id=window_id,
        reason="db",
        start=START,
        end=END,
        started=True,
        ended=False,
        servers=[7],
        url=f"/api/v5/maintenance_windows/{window_id}/",
    )
    assert fa.requests[0].headers["Authorization"] == BASIC


async def test_get_unknown_window_is_not_found(client: AppFirstClient) -> None:
    with pytest.raises(UpstreamNotFound) as caught:
        await client.get_window(123)
    assert str(caught.value) == "AppFirst reported: Maintenance window 123 was not found."


@pytest.mark.parametrize("status", [204, 200])
async def test_delete_window(fa: FakeAppFirst, client: AppFirstClient, status: int) -> None:
    fa.delete_status = status
    window_id = fa.add_window(START, END)

    await client.delete_window(window_id)

    request = fa.requests[-1]
    assert (request.method, request.path) == ("DELETE", f"/api/maintenance_windows/{window_id}/")
    assert request.headers["Authorization"] == BASIC
    assert window_id not in fa.windows
    with pytest.raises(UpstreamNotFound):
        await client.delete_window(window_id)


# -- list -------------------------------------------------------------------------------


async def test_list_windows_follows_pages(fa: FakeAppFirst) -> None:
    for i in range(3000):
        fa.add_window(START + timedelta(hours=i), START + timedelta(hours=i, minutes=30), servers=[i])

    async with AppFirstClient(fa.url, EMAIL, KEY, page_size=1000) as c:
        windows = await c.list_windows()

    assert len(windows) == 3000
    assert {w.id for w in windows} == set(fa.windows)
    assert [(r.query["limit"], r.query["page"]) for r in fa.requests] == [
        ("1000", "0"),
        ("1000", "1"),
        ("1000", "2"),
    ]
    assert all(r.headers["Authorization"] == BASIC for r in fa.requests)
    first = next(w for w in windows if w.id == 1)
    assert (first.start, first.end) == (START, START + timedelta(minutes=30))
    # Its speed is `bench/run.py`'s to measure (AppFirst paging over 3,000 windows), not a test's.


async def test_list_windows_default_page_size(fa: FakeAppFirst, client: AppFirstClient) -> None:
    for _ in range(3000):
        fa.add_window(START, END)
    windows = await client.list_windows()
    assert len(windows) == 3000
    assert [r.query["limit"] for r in fa.requests] == ["2500", "2500"]


async def test_list_windows_empty(fa: FakeAppFirst, client: AppFirstClient) -> None:
    assert await client.list_windows() == []
    assert len(fa.requests) == 1


async def test_list_page_carries_pagination(fa: FakeAppFirst, client: AppFirstClient) -> None:
    for _ in range(5):
        fa.add_window(START, END)
    page = await client.list_page(1, 2)
    assert page.pagination.count == 5
    assert page.pagination.next is not None and "page=2" in page.pagination.next
    assert page.pagination.previous is not None and "page=0" in page.pagination.previous
    assert [w.id for w in page.data] == [3, 2]  # newest first, as the seed lists
    last = await client.list_page(2, 2)
    assert last.pagination.next is None and len(last.data) == 1


async def test_seed_trailing_comma_body_is_unavailable_not_empty(fa: FakeAppFirst, client: AppFirstClient) -> None:
    fa.seed_trailing_comma = True
    with pytest.raises(UpstreamUnavailable):
        await client.list_windows()


async def test_ping_lists_one_item(fa: FakeAppFirst, client: AppFirstClient) -> None:
    await client.ping()
    [request] = fa.requests
    assert (request.method, request.path) == ("GET", "/api/maintenance_windows/")
    assert request.query == {"limit": "1", "page": "0"}
    assert request.headers["Authorization"] == BASIC


async def test_base_url_with_trailing_slash(fa: FakeAppFirst) -> None:
    async with AppFirstClient(fa.url + "/", EMAIL, KEY) as c:
        await c.ping()
    assert fa.requests[0].path == "/api/maintenance_windows/"


@pytest.mark.parametrize("suffix", ["/api", "/api/"])
async def test_base_url_ending_in_api_is_not_doubled(fa: FakeAppFirst, suffix: str) -> None:
    async with AppFirstClient(fa.url + suffix, EMAIL, KEY) as c:
        await c.ping()
    assert fa.requests[0].path == "/api/maintenance_windows/"


def paged_mock(pages: Callable[[int], dict[str, Any]]) -> tuple[AppFirstClient, list[int]]:
    seen: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        seen.append(page)
        return httpx.Response(200, json=pages(page))

    client = AppFirstClient("http://af.test", EMAIL, KEY, page_size=2, transport=httpx.MockTransport(handler))
    return client, seen


def item(window_id: int) -> dict[str, Any]:
    return {"id": window_id, "start": 0, "end": 60, "servers": []}


async def test_list_windows_stops_when_count_reached_even_if_next_set() -> None:
    client, seen = paged_mock(
        lambda p: {
            "pagination": {"count": 4, "next": "x", "previous": None},
            "data": [item(2 * p), item(2 * p + 1)],
        }
    )
    async with client:
        windows = await client.list_windows()
    assert len(windows) == 4 and seen == [0, 1]


async def test_list_windows_stops_on_empty_page() -> None:
    client, seen = paged_mock(
        lambda p: {
            "pagination": {"count": 99, "next": "x", "previous": None},
            "data": [item(p)] if p < 2 else [],
        }
    )
    async with client:
        windows = await client.list_windows()
    assert [w.id for w in windows] == [0, 1] and seen == [0, 1, 2]


async def test_list_windows_has_a_page_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bot.clients.appfirst, "MAX_PAGES", 5)
    client, seen = paged_mock(lambda p: {"pagination": {"count": 10**9, "next": "x", "previous": None}, "data": [item(p)]})
    async with client:
        with pytest.raises(UpstreamUnavailable):
            await client.list_windows()
    assert seen == [0, 1, 2, 3, 4]


async def test_list_windows_deduplicates_shifted_pages() -> None:
    client, _ = paged_mock(
        lambda p: {
            "pagination": {"count": 3, "next": "x" if p == 0 else None, "previous": None},
            "data": [item(1), item(2)] if p == 0 else [item(2), item(3)],
        }
    )
    async with client:
        windows = await client.list_windows()
    assert [w.id for w in windows] == [1, 2, 3]


# -- error forms --------------------------------------------------------------------------

Call = Callable[[AppFirstClient], Any]

ALL_CALLS: dict[str, Call] = {
    "list_page": lambda c: c.list_page(0, 10),
    "list_windows": lambda c: c.list_windows(),
    "get_window": lambda c: c.get_window(1),
    "create_window": lambda c: c.create_window(start=START, end=END, reason="", servers=[1]),
    "update_window": lambda c: c.update_window(1, start=START, end=END, reason="", servers=[1]),
    "delete_window": lambda c: c.delete_window(1),
    "ping": lambda c: c.ping(),
}


@pytest.mark.parametrize("call", ALL_CALLS.values(), ids=ALL_CALLS.keys())
@pytest.mark.parametrize(
    ("email", "key"),
    [("ops@example.com", "wrong-key-must-not-leak"), ("intruder@example.org", KEY)],
    ids=["bad-key", "bad-email"],
)
async def test_bad_credentials_are_unauthorized(fa: FakeAppFirst, call: Call, email: str, key: str) -> None:
    fa.add_window(START, END)
    async with AppFirstClient(fa.url, email, key) as c:
        with pytest.raises(UpstreamUnauthorized) as caught:
            await call(c)
    assert caught.value.status == 401
    assert caught.value.service == "AppFirst"
    assert_no_secret(caught.value, key, email, KEY, EMAIL)


@pytest.mark.parametrize("call", ALL_CALLS.values(), ids=ALL_CALLS.keys())
async def test_server_error_is_unavailable(fa: FakeAppFirst, client: AppFirstClient, call: Call) -> None:
    fa.fail_status = 500
    with pytest.raises(UpstreamUnavailable) as caught:
        await call(client)
    assert caught.value.status == 500
    assert_no_secret(caught.value, KEY, EMAIL)


@pytest.mark.parametrize("call", [c for n, c in ALL_CALLS.items() if n != "delete_window"])
async def test_malformed_body_is_unavailable(fa: FakeAppFirst, client: AppFirstClient, call: Call) -> None:
    fa.add_window(START, END)
    fa.malformed = True
    with pytest.raises(UpstreamUnavailable):
        await call(client)


async def test_fail_times_then_recovers(fa: FakeAppFirst, client: AppFirstClient) -> None:
    fa.fail_times(1, status=502)
    with pytest.raises(UpstreamUnavailable) as caught:
        await client.ping()
    assert caught.value.status == 502
    await client.ping()


async def test_timeout_is_unavailable(fa: FakeAppFirst) -> None:
    fa.latency = 2.0
    async with AppFirstClient(fa.url, EMAIL, KEY, timeout=0.2) as c:
        with pytest.raises(UpstreamUnavailable) as caught:
            await c.list_windows()
    assert_no_secret(caught.value, KEY, EMAIL)


async def test_connection_refused_is_unavailable() -> None:
    async with AppFirstClient(closed_port_url(), EMAIL, KEY, timeout=2.0) as c:
        with pytest.raises(UpstreamUnavailable) as caught:
            await c.ping()
    assert_no_secret(caught.value, KEY, EMAIL)


def replying(status: int, content: bytes, content_type: str = "application/json") -> AppFirstClient:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=content, headers={"Content-Type": content_type})

    return AppFirstClient("http://af.test", EMAIL, KEY, transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("content", "content_type", "expected"),
    [
        (b'{"message": "Bad server id."}', "application/json", "Bad server id."),
        (b'{"detail": "Bad start."}', "application/json", "Bad start."),
        (b'{"error": "Bad end."}', "application/json", "Bad end."),
        (b'{"servers": ["Invalid pk \\"99\\"."]}', "application/json", 'servers: Invalid pk "99".'),
        (b"servers is required", "text/plain", "servers is required"),
    ],
)
async def test_400_message_forms(content: bytes, content_type: str, expected: str) -> None:
    async with replying(400, content, content_type) as c:
        with pytest.raises(UpstreamRejected) as caught:
            await c.create_window(start=START, end=END, reason="", servers=[99])
    assert caught.value.message == expected


async def test_400_html_page_is_not_shown_to_users() -> None:
    async with replying(400, b"<html><body>Bad Request</body></html>", "text/html") as c:
        with pytest.raises(UpstreamRejected) as caught:
            await c.create_window(start=START, end=END, reason="", servers=[1])
    assert "<html>" not in caught.value.message and "400" in caught.value.message


async def test_echoed_credentials_are_scrubbed() -> None:
    body = json.dumps({"message": f"No account {EMAIL} with key {KEY}."}).encode()
    async with replying(403, body) as c:
        with pytest.raises(UpstreamUnauthorized) as caught:
            await c.ping()
    assert_no_secret(caught.value, KEY, EMAIL)
    assert caught.value.message.startswith("No account")


async def test_reply_missing_fields_is_unavailable() -> None:
    async with replying(200, b'{"id": 5}') as c:
        with pytest.raises(UpstreamUnavailable):
            await c.get_window(5)


async def test_client_repr_hides_credentials(fa: FakeAppFirst) -> None:
    async with AppFirstClient(fa.url, EMAIL, KEY) as c:
        assert KEY not in repr(c) and EMAIL not in repr(c)


# -- the fake itself ------------------------------------------------------------------------


def test_fake_post_reply_matches_seed_shape(fa: FakeAppFirst) -> None:
    """By default the fake keeps other times than it is sent, exactly as the seed's POST."""
    reply = httpx.post(
        f"{fa.url}/api/maintenance_windows/",
        auth=(EMAIL, KEY),
        data={
            "start": "2012-10-20 14:00",
            "end": "2012-10-20 15:00",
            "reason": "server updates",
            "servers": "[1,2,3]",
        },
    )
    assert reply.status_code == 200
    assert reply.json() == {
        "id": 1,
        "url": "/api/v5/maintenance_windows/1/",
        "start": "2012-10-20 19:00:00",
        "end": "2012-10-20 20:00:00",
        "reason": "server updates",
        "servers": [1, 2, 3],
    }


def test_fake_put_reply_matches_seed_shape(fa: FakeAppFirst) -> None:
    """PUT shifts as POST does (the seed's PUT example: 14:00 sent, 19:00 back, no reason)."""
    window_id = fa.add_window(START, END, reason="server updates", servers=[1])
    reply = httpx.put(
        f"{fa.url}/api/maintenance_windows/{window_id}/",
        auth=(EMAIL, KEY),
        data={"start": "2012-10-20 14:00", "end": "2012-10-20 15:00", "servers": "[1,2,3]"},
    )
    assert reply.status_code == 200
    assert reply.json() == {
        "id": window_id,
        "url": f"/api/v5/maintenance_windows/{window_id}/",
        "start": "2012-10-20 19:00:00",
        "end": "2012-10-20 20:00:00",
        "servers": [1, 2, 3],
    }
    listed = httpx.get(f"{fa.url}/api/maintenance_windows/{window_id}/", auth=(EMAIL, KEY)).json()
    assert listed["start"] == int(datetime(2012, 10, 20, 19, 0, tzinfo=UTC).timestamp())


@pytest.mark.parametrize("missing", ["start", "end", "servers"])
def test_fake_requires_fields(fa: FakeAppFirst, missing: str) -> None:
    form = {"start": "2012-10-20 14:00", "end": "2012-10-20 15:00", "servers": "[1]"}
    del form[missing]
    reply = httpx.post(f"{fa.url}/api/maintenance_windows/", auth=(EMAIL, KEY), data=form)
    assert reply.status_code == 400
    assert missing in reply.json()["message"]
    assert fa.windows == {}


def test_fake_limits_and_auth(fa: FakeAppFirst) -> None:
    url = f"{fa.url}/api/maintenance_windows/"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, auth=(EMAIL, KEY), params={"limit": 2501}).status_code == 400
    body = httpx.get(url, auth=(EMAIL, KEY)).json()
    assert body == {"pagination": {"count": 0, "next": None, "previous": None}, "data": []}


def test_fake_trailing_comma_is_the_seed_text(fa: FakeAppFirst) -> None:
    fa.seed_trailing_comma = True
    reply = httpx.get(f"{fa.url}/api/maintenance_windows/", auth=(EMAIL, KEY))
    assert '"url": "/api/v5/maintenance_windows/39/"\n        }, \n    ]' in reply.text
    with pytest.raises(ValueError):
        reply.json()


def test_fake_can_lose_a_reply_after_doing_the_write(fa: FakeAppFirst) -> None:
    fa.lose_replies(1)
    form = {"start": "2012-10-20 14:00", "end": "2012-10-20 15:00", "servers": "[1]"}
    lost = httpx.post(f"{fa.url}/api/maintenance_windows/", auth=(EMAIL, KEY), data=form)
    assert lost.status_code == 504
    assert [w["start"] for w in fa.windows.values()] == [START + SEED_SHIFT]  # it was done anyway
    again = httpx.post(f"{fa.url}/api/maintenance_windows/", auth=(EMAIL, KEY), data=form)
    assert again.status_code == 200 and len(fa.windows) == 2


def test_fake_reset(fa: FakeAppFirst) -> None:
    fa.add_window(START, END)
    fa.shift = timedelta(minutes=5)
    fa.seed_trailing_comma = True
    fa.api_key = "x"
    fa.reset()
    assert fa.windows == {} and fa.requests == []
    assert (fa.shift, fa.seed_trailing_comma, fa.api_key) == (SEED_SHIFT, False, KEY)
    assert fa.add_window(START, END) == 1


# The calls on the list path: a 404 there can only mean the base URL is wrong. On an item
# path it means the window is gone (UpstreamNotFound) — assumption: the seed does not say
# what a missing window answers, and a 404 is what a REST API answers.
@pytest.mark.parametrize("name", ["list_page", "list_windows", "create_window", "ping"])
async def test_a_404_on_the_list_path_names_the_url_and_the_setting(fa: FakeAppFirst, name: str) -> None:
    async with AppFirstClient(fa.url + "/v5", EMAIL, KEY) as c:
        with pytest.raises(UpstreamWrongURL) as caught:
            await ALL_CALLS[name](c)
    err = caught.value
    assert err.url == f"{fa.url}/v5/api/maintenance_windows/" and err.setting == "APPFIRST_URL"
    assert err.url in str(err) and "APPFIRST_URL" in str(err) and "try again" not in str(err).lower()
    assert err.url not in err.message  # what a person may see leaves the address out
    assert KEY not in str(err) + repr(err) and EMAIL not in str(err) + repr(err)


def _list_body(items: list[Any], pagination: Any = None) -> bytes:
    pagination = {"count": len(items), "next": None, "previous": None} if pagination is None else pagination
    return json.dumps({"pagination": pagination, "data": items}).encode()


async def test_a_long_page_is_read_whole_in_order_across_its_parse_slices() -> None:
    items = [{"id": n, "reason": f"w{n}", "start": 1297821600 + n, "end": 1297824300 + n} for n in range(1000)]
    async with replying(200, _list_body(items)) as c:
        page = await c.list_page(0, 2500)
    assert [w.id for w in page.data] == list(range(1000)) and page.pagination.count == 1000
    assert page.data[999].start == datetime.fromtimestamp(1297821600 + 999, UTC)


@pytest.mark.parametrize(
    "body",
    [
        _list_body([{"id": n, "start": 1297821600, "end": 1297824300} for n in range(900)] + [{"id": "x", "start": "soon"}]),
        _list_body([{"id": 1, "start": 1297821600, "end": 1297824300}], pagination="none"),
        _list_body([{"id": 1, "start": 1297821600, "end": 1297824300}], pagination={"next": None}),
        json.dumps({"pagination": {"count": 1}, "data": "nothing"}).encode(),
    ],
    ids=["bad window after the first slices", "pagination not an object", "pagination without count", "data not a list"],
)
async def test_a_malformed_page_is_unavailable_never_partial(body: bytes) -> None:
    async with replying(200, body) as c:
        with pytest.raises(UpstreamUnavailable):
            await c.list_page(0, 2500)
