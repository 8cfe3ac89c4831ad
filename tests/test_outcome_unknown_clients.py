"""A create whose reply never came is "outcome unknown", one that never left is a plain
failure: the clients tell the two apart, and the fakes can be made to lose a reply after
they carried the create out (tested here too, so the fakes are not trusted blindly)."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from bot.clients.appfirst import AppFirstClient
from bot.clients.statuspage import IncidentCreateModel, StatusPageClient
from bot.errors import OutcomeUnknown, UpstreamUnavailable
from bot.ops.metrics import upstream_outcome
from tests.support.fakes.appfirst import FakeAppFirst
from tests.support.fakes.statuspage import FakeStatusPage
from tests.support.process import wait_until


def incident() -> IncidentCreateModel:
    return IncidentCreateModel(
        Title="DB down", Description="", Status="Investigating", Impact="Major Outage", AffectedComponents=[], IsNotify=True
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the fakes ------------------------------------------------------------------------------


def test_fake_status_page_holds_a_create_reply_after_carrying_it_out():
    with FakeStatusPage() as sp:
        sp.hold_replies(1, seconds=5)
        body = incident().to_wire()
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{sp.url}/api/admin/Incident", json=body, headers={"X-API-KEY": sp.api_key}, timeout=2)
        assert len(sp.incidents) == 1  # made, though nobody heard about it
        # Only the next create was held: the one after answers at once.
        again = httpx.post(f"{sp.url}/api/admin/Incident", json=body, headers={"X-API-KEY": sp.api_key}, timeout=2)
        assert again.json()["Success"] is True and len(sp.incidents) == 2


def test_fake_status_page_holds_every_request_unanswered_and_not_carried_out_until_released():
    with FakeStatusPage() as sp, ThreadPoolExecutor(1) as pool:
        body = incident().to_wire()
        with sp.hold_requests():
            sent = pool.submit(
                httpx.post, f"{sp.url}/api/admin/Incident", json=body, headers={"X-API-KEY": sp.api_key}, timeout=30
            )
            wait_until(lambda: sp.requests, 30, "the create at the fake")
            assert not sent.done() and sp.incidents == {}  # arrived, not answered, not made
        assert sent.result().json()["Success"] is True and len(sp.incidents) == 1


def test_fake_status_page_drops_a_create_reply_and_holds_nothing_but_creates():
    with FakeStatusPage() as sp:
        sp.drop_replies(1)
        # An update is not a create: it answers (refused: no such incident), and the drop waits.
        update = httpx.put(
            f"{sp.url}/api/admin/Incident",
            json={"IncidentId": "nope", "Description": "x", "Status": "Identified"},
            headers={"X-API-KEY": sp.api_key},
            timeout=2,
        )
        assert update.status_code == 400
        with pytest.raises(httpx.TransportError):
            httpx.post(f"{sp.url}/api/admin/Incident", json=incident().to_wire(), headers={"X-API-KEY": sp.api_key}, timeout=2)
        assert len(sp.incidents) == 1


def test_fake_status_page_refuses_a_held_create_it_would_refuse_anyway():
    with FakeStatusPage() as sp:
        sp.hold_replies(1, seconds=5)
        refused = httpx.post(f"{sp.url}/api/admin/Incident", json={"Title": ""}, headers={"X-API-KEY": sp.api_key}, timeout=2)
        assert refused.status_code == 400 and sp.incidents == {}


def test_fake_appfirst_holds_a_create_reply_after_carrying_it_out():
    with FakeAppFirst() as af:
        af.hold_replies(1, seconds=5)
        form = {"start": "2030-01-01 10:00", "end": "2030-01-01 11:00", "reason": "Patch", "servers": "[1]"}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{af.url}/api/maintenance_windows/", data=form, auth=(af.email, af.api_key), timeout=2)
        assert len(af.windows) == 1


# --- the clients ----------------------------------------------------------------------------


async def test_a_create_whose_reply_is_held_past_the_timeout_is_outcome_unknown():
    with FakeStatusPage() as sp:
        sp.hold_replies(1, seconds=5)
        async with StatusPageClient(sp.url, sp.api_key, timeout=2) as client:  # room to reach the fake when loaded
            with pytest.raises(OutcomeUnknown) as caught:
                await client.create_incident(incident())
    assert "no reply within 2 seconds" in str(caught.value)
    assert upstream_outcome(caught.value) == "unknown"
    assert len(sp.incidents) == 1


async def test_a_connection_reset_mid_create_is_outcome_unknown():
    with FakeStatusPage() as sp:
        sp.drop_replies(1)
        async with StatusPageClient(sp.url, sp.api_key, timeout=2) as client:
            with pytest.raises(OutcomeUnknown):
                await client.create_incident(incident())


async def test_a_gateway_timeout_is_outcome_unknown():
    with FakeAppFirst() as af:
        af.lose_replies(1)  # carried out, answered 504 by the gateway
        async with AppFirstClient(af.url, af.email, af.api_key, timeout=2) as client:
            with pytest.raises(OutcomeUnknown):
                start = datetime(2030, 1, 1, 10, tzinfo=UTC)
                await client.create_window(start=start, end=start + timedelta(hours=1), reason="Patch", servers=[1])


async def test_could_not_connect_is_a_plain_failure_safe_to_retry():
    async with StatusPageClient(f"http://127.0.0.1:{closed_port()}", "key", timeout=2) as client:
        with pytest.raises(UpstreamUnavailable) as caught:
            await client.create_incident(incident())
    assert not isinstance(caught.value, OutcomeUnknown)
    assert "could not connect" in str(caught.value)
    assert upstream_outcome(caught.value) == "unavailable"
