from __future__ import annotations

import asyncio
import itertools
import os
import shutil
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.settings import Settings
from store.db import Database
from tests.support.fakes.appfirst import FakeAppFirst
from tests.support.fakes.slack_api import FakeSlack
from tests.support.fakes.statuspage import FakeStatusPage
from tests.support.harness import (
    CHANNEL,
    COMPONENTS,
    IMPATIENT_UPSTREAM,
    SIGNING_SECRET,
    UPSTREAM_TIMEOUT,
    BotUnderTest,
    FakeClock,
    free_port,
)
from tests.support.postgres import PostgresDatabases, unreachable
from tests.support.process import SPEC_VARIABLES

#: `web_slack` and `web_client`: a fake Slack of a test's own, for the fake's own tests.
pytest_plugins = ["tests.support.fake_web"]

TEST_SPEEDUP = 10


@pytest.fixture(scope="session")
def slack_server():
    with FakeSlack() as server:
        yield server


@pytest.fixture
def slack(slack_server):
    slack_server.reset()
    yield slack_server
    slack_server.release_delays()  # a test that failed while a call was held lets it go
    assert slack_server.violations == [], slack_server.violations


@pytest.fixture(scope="session")
def statuspage_server():
    with FakeStatusPage() as server:
        yield server


@pytest.fixture
def statuspage(statuspage_server):
    statuspage_server.reset()
    return statuspage_server


@pytest.fixture(scope="session")
def appfirst_server():
    with FakeAppFirst() as server:
        yield server


@pytest.fixture
def appfirst(appfirst_server):
    appfirst_server.reset()
    return appfirst_server


#: What a `slow` test is expected to take when its marker does not say (`slow(seconds=…)`).
SLOW_SECONDS = 10


def _expected_seconds(item) -> float:
    return item.get_closest_marker("slow").kwargs.get("seconds", SLOW_SECONDS)


def pytest_collection_modifyitems(items):
    """The `slow` tests first, and under pytest-xdist spread over the workers: its work-stealing
    scheduler first hands each worker the next 1/n of the list, in order, and later steals
    from the ends of those shares. With every slow test at the head of the list, one worker
    got them all (two minutes of them after the others had finished). So each share begins
    with its part of the slow tests, longest first, parted so their expected times are even;
    the rest of the share is the next fast tests in their order."""
    slow = sorted((item for item in items if item.get_closest_marker("slow")), key=_expected_seconds, reverse=True)
    fast = [item for item in items if not item.get_closest_marker("slow")]
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    shares = [[] for _ in range(max(workers, 1))]
    loads = [0.0] * len(shares)
    for item in slow:
        lightest = loads.index(min(loads))
        shares[lightest].append(item)
        loads[lightest] += _expected_seconds(item)
    ordered, left, rest = [], len(items), iter(fast)
    for k, share in enumerate(shares):
        size = left // (len(shares) - k)  # as xdist's worksteal sizes its first hand-out
        if len(share) > size:  # a handful of tests picked out of the suite: slow first will do
            items[:] = slow + fast
            return
        ordered += share + [next(rest) for _ in range(size - len(share))]
        left -= size
    items[:] = ordered


def pytest_generate_tests(metafunc):
    """A module marked `both_databases` runs each test on SQLite and on PostgreSQL."""
    if "database_url" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_databases"):
        metafunc.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture(scope="session")
def postgres():
    """Databases on the local PostgreSQL for this run. Without a server the tests that need
    it skip, saying why; under CI (`CI=true`) a missing server fails them instead."""
    reason = unreachable()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI must run the PostgreSQL half of the suite")
        pytest.skip(reason)
    databases = PostgresDatabases()
    yield databases
    databases.drop_all()


@pytest.fixture(scope="session")
def shared_postgres_url(postgres) -> str:
    """One database for the parametrized suites, emptied before each test."""
    return postgres.create()


_fresh = itertools.count(1)


@pytest.fixture
def fresh_database_url(request, tmp_path) -> str:
    """An empty database of the kind asked (`sqlite` or `postgresql`), for migration tests."""
    if getattr(request, "param", "sqlite") == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    return request.getfixturevalue("postgres").create(f"_{next(_fresh)}")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """A SQLite file migrated to head once per worker: each test gets a copy (a file copy
    costs ~1 ms, running the migrations ~150 ms), as the PostgreSQL half shares one migrated
    database emptied before each test."""
    path = tmp_path_factory.mktemp("template") / "sitrep.db"

    async def migrate() -> None:
        db = Database(f"sqlite:///{path}")
        try:
            await db.upgrade()
        finally:
            await db.dispose()

    asyncio.run(migrate())
    return path


@pytest.fixture
def database_url(request, tmp_path) -> str:
    """SQLite in the test's own folder (a copy of the migrated template); `postgresql` (see
    `both_databases`) the run's database, emptied. Either is at the head revision, empty; a
    test of migrating from nothing takes `fresh_database_url`."""
    if getattr(request, "param", "sqlite") == "sqlite":
        shutil.copyfile(request.getfixturevalue("sqlite_template"), tmp_path / "sitrep.db")
        return f"sqlite:///{tmp_path / 'sitrep.db'}"
    url = request.getfixturevalue("shared_postgres_url")
    request.getfixturevalue("postgres").empty(url)
    return url


@pytest.fixture
def settings(tmp_path, slack, statuspage, monkeypatch, database_url) -> Settings:
    monkeypatch.chdir(tmp_path)  # no stray .env is read
    return Settings(
        slack_bot_token="xoxb-test-token",
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=slack.url,
        sitrep_channel=CHANNEL,
        statuspage_url=statuspage.url,
        statuspage_api_key=statuspage.api_key,
        sitrep_components=COMPONENTS,
        database_url=database_url,
        # Slack's pace ten times faster (a dead instance's claim goes stale in 12 s, not 2
        # minutes): a test posting twenty messages in one channel waits 2 s for its turns, not
        # 20. Tests of the pace itself give the outbox their own rates.
        sitrep_test_speedup=TEST_SPEEDUP,
    )


@pytest.fixture
def appfirst_settings(settings, appfirst) -> Settings:
    """The same bot with AppFirst configured and chosen as the maintenance backend."""
    return settings.model_copy(
        update={
            "appfirst_url": appfirst.url,
            "appfirst_email": appfirst.email,
            "appfirst_api_key": SecretStr(appfirst.api_key),
            "maintenance_backend": "appfirst",
        }
    )


@pytest.fixture
def upstream_timeout(request) -> float:
    """The bound the test's bot gives each status page and AppFirst call: patient, unless the
    test is about that bound running out (`@pytest.mark.upstream_times_out`)."""
    return IMPATIENT_UPSTREAM if request.node.get_closest_marker("upstream_times_out") else UPSTREAM_TIMEOUT


@pytest.fixture
def bot(settings, caplog, upstream_timeout):
    with BotUnderTest(settings, http_timeout=upstream_timeout) as running:
        yield running
    unexpected = [r.getMessage() for r in caplog.records if r.name == "handlers.errors" and r.levelname == "ERROR"]
    assert unexpected == [], unexpected


@pytest.fixture
def upstream_clock(statuspage, appfirst) -> FakeClock:
    """One injected clock that the bot and both fake APIs follow (tests set `T0` via `clock`)."""
    clock = FakeClock()
    statuspage.clock = clock
    appfirst.clock = clock
    return clock


@pytest.fixture
def base_env(tmp_path) -> dict[str, str]:
    """The process environment without any SPEC variable (so nothing leaks in from outside)."""
    env = {k: v for k, v in os.environ.items() if k not in SPEC_VARIABLES}
    env["PYTHONUNBUFFERED"] = "1"
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'sitrep.db'}"
    # Not the default 9090: processes of tests running side by side would share it.
    env["METRICS_PORT"] = str(free_port())
    # A stopped process closes its listener at once (no load balancer in tests); the tests
    # of the drain set their own delay.
    env["SITREP_DRAIN_DELAY"] = "0"
    return env


@pytest.fixture
def full_env(base_env, slack, statuspage, appfirst) -> dict[str, str]:
    return base_env | {
        "SLACK_BOT_TOKEN": slack.token,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.url,
        "SITREP_CHANNEL": CHANNEL,
        "STATUSPAGE_URL": statuspage.url,
        "STATUSPAGE_API_KEY": statuspage.api_key,
        "APPFIRST_URL": appfirst.url,
        "APPFIRST_EMAIL": appfirst.email,
        "APPFIRST_API_KEY": appfirst.api_key,
    }
