"""STATUSPAGE_URL and APPFIRST_URL as operators write them: with or without the `/api` the
seeds show in every path, with or without a trailing slash, under a path prefix. The fakes
here are mounted under a prefix, so only the right full path reaches them."""

from __future__ import annotations

import logging

import httpx
import pytest
from pydantic import SecretStr

from bot.clients.http import api_path, api_root
from tests.support.fakes.appfirst import FakeAppFirst
from tests.support.fakes.statuspage import FakeStatusPage
from tests.support.harness import CHANNEL, BotUnderTest
from tests.support.incidents import declare_values, incidents_in_store, open_declare_modal
from tests.support.maintenance import (
    open_modal,
    schedule_values,
    wait_announcement,
    wait_answer,
)

SPELLINGS = ["", "/", "/api", "/api/"]


@pytest.fixture(scope="module")
def mounted_statuspage_server():
    with FakeStatusPage(mount="/status") as server:
        yield server


@pytest.fixture
def mounted_statuspage(mounted_statuspage_server):
    mounted_statuspage_server.reset()
    return mounted_statuspage_server


@pytest.fixture(scope="module")
def mounted_appfirst_server():
    with FakeAppFirst(mount="/appfirst") as server:
        yield server


@pytest.fixture
def mounted_appfirst(mounted_appfirst_server, upstream_clock):
    mounted_appfirst_server.reset()
    mounted_appfirst_server.clock = upstream_clock
    return mounted_appfirst_server


@pytest.mark.parametrize(
    ("configured", "root"),
    [
        ("https://status.example.com", "https://status.example.com/"),
        ("https://status.example.com/", "https://status.example.com/"),
        ("https://status.example.com/api", "https://status.example.com/"),
        ("https://status.example.com/api/", "https://status.example.com/"),
        ("https://status.example.com/API//", "https://status.example.com/"),
        ("https://example.com/status/api", "https://example.com/status/"),
        ("https://example.com/apis", "https://example.com/apis/"),
        ("https://api.example.com", "https://api.example.com/"),
    ],
)
def test_api_root_drops_only_a_last_api_segment(configured, root):
    assert api_root(configured) == root


def test_a_mounted_fake_serves_the_seed_paths_only_under_its_mount(mounted_statuspage):
    headers = {"X-API-KEY": mounted_statuspage.api_key}
    assert httpx.get(f"{mounted_statuspage.url}/api/maintenance/status", headers=headers).status_code == 200
    bare = mounted_statuspage.url.removesuffix("/status")
    assert httpx.get(f"{bare}/api/maintenance/status", headers=headers).status_code == 404
    doubled = httpx.get(f"{mounted_statuspage.url}/api/api/maintenance/status", headers=headers)
    assert doubled.status_code == 404  # what every call got when `/api` was added twice


@pytest.mark.parametrize("suffix", SPELLINGS)
def test_an_incident_is_declared_whichever_way_statuspage_url_is_written(settings, slack, mounted_statuspage, suffix):
    configured = settings.model_copy(update={"statuspage_url": mounted_statuspage.url + suffix})
    with BotUnderTest(configured) as bot:
        view = open_declare_modal(bot, slack)
        bot.submit(view, declare_values())
        slack.wait_for(lambda: [i for i in incidents_in_store(bot) if i.message_ts])
    [create] = [r for r in mounted_statuspage.requests if r.method == "POST"]
    assert create.path == "/status/api/admin/Incident"
    assert len(mounted_statuspage.incidents) == 1


def schedule_at(appfirst_settings, slack, appfirst, clock, url: str) -> None:
    """Schedule one window through the bot with APPFIRST_URL set to `url`."""
    configured = appfirst_settings.model_copy(
        update={"appfirst_url": url, "appfirst_email": appfirst.email, "appfirst_api_key": SecretStr(appfirst.api_key)}
    )
    with BotUnderTest(configured, clock=clock) as bot:
        view = open_modal(bot, slack)
        bot.submit(view, schedule_values("Kernel updates", description=None, servers="1, 2"))
        wait_announcement(slack)


@pytest.mark.parametrize("suffix", SPELLINGS)
def test_a_window_is_scheduled_whichever_way_appfirst_url_is_written(
    appfirst_settings, slack, mounted_appfirst, upstream_clock, suffix
):
    schedule_at(appfirst_settings, slack, mounted_appfirst, upstream_clock, mounted_appfirst.url + suffix)
    [create] = [r for r in mounted_appfirst.requests if r.method == "POST"]
    assert create.path == "/appfirst/api/maintenance_windows/"
    assert len(mounted_appfirst.windows) == 1


@pytest.mark.parametrize("suffix", ["/api/v5", "/api/v5/", "/API/V5"])
def test_appfirst_url_may_carry_the_versioned_prefix_of_the_seeds_url_fields(
    appfirst_settings, slack, mounted_appfirst, upstream_clock, suffix
):
    """Seed 003's windows point at `/api/v5/maintenance_windows/…`: an operator copying that
    prefix gets every call under it, never `/api/v5/api/…`."""
    schedule_at(appfirst_settings, slack, mounted_appfirst, upstream_clock, mounted_appfirst.url + suffix)
    assert {r.path for r in mounted_appfirst.requests} <= {
        "/appfirst/api/v5/maintenance_windows/",
        *(f"/appfirst/api/v5/maintenance_windows/{i}/" for i in mounted_appfirst.windows),
    }
    [create] = [r for r in mounted_appfirst.requests if r.method == "POST"]
    assert create.path == "/appfirst/api/v5/maintenance_windows/"
    assert len(mounted_appfirst.windows) == 1


def test_api_path_follows_only_an_api_version():
    assert api_path("https://af.example.com/api/v5", "api/maintenance_windows/") == "api/v5/maintenance_windows/"
    assert api_path("https://af.example.com/api", "api/maintenance_windows/") == "api/maintenance_windows/"
    assert api_path("https://af.example.com/v5", "api/maintenance_windows/") == "api/maintenance_windows/"
    assert api_root("https://af.example.com/tools/api/v12/") == "https://af.example.com/tools/"


def test_a_wrong_statuspage_url_tells_the_person_the_bot_is_misconfigured(settings, slack, mounted_statuspage, caplog):
    wrong = mounted_statuspage.url + "/v2/api"
    configured = settings.model_copy(update={"statuspage_url": wrong})
    with caplog.at_level(logging.ERROR), BotUnderTest(configured) as bot:
        view = open_declare_modal(bot, slack)
        bot.submit(view, declare_values(title="Checkout down"))
        answer = wait_answer(slack)
    said = answer["text"] + str(answer["blocks"])
    assert "misconfigured" in said and "cannot find the status page" in said
    assert "try again" not in said.lower()
    assert "Checkout down" in said  # what was typed is kept and shown
    tried = f"{mounted_statuspage.url}/v2/api/admin/Incident"
    assert tried not in said  # the address is for the operator ...
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(tried in line and "STATUSPAGE_URL" in line for line in logged), logged  # ... in the log
    assert mounted_statuspage.incidents == {}
    assert all(m["channel"] != CHANNEL for m in slack.calls_to("chat.postMessage"))
