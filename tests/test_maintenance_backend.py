"""The backend interface over both fakes: capabilities, shapes, paging, bad bodies."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from bot.backends import (
    AppFirstMaintenance,
    BackendWindow,
    MaintenanceBackend,
    StatusPageMaintenance,
    make_backend,
)
from bot.clients.appfirst import AppFirstClient
from bot.clients.statuspage import StatusPageClient
from bot.errors import NotSupported, UpstreamUnavailable
from tests.support.dates import T0


def run(coro):
    return asyncio.run(coro)


def test_make_backend_picks_by_setting(settings, appfirst_settings, appfirst, statuspage):
    sp = StatusPageClient(statuspage.url, statuspage.api_key)
    af = AppFirstClient(appfirst.url, appfirst.email, appfirst.api_key)
    assert isinstance(make_backend(settings, statuspage=sp, appfirst=af), StatusPageMaintenance)
    assert isinstance(make_backend(appfirst_settings, statuspage=sp, appfirst=af), AppFirstMaintenance)
    assert make_backend(appfirst_settings, statuspage=sp, appfirst=None) is None
    assert make_backend(settings, statuspage=None, appfirst=af) is None
    for backend in (StatusPageMaintenance(sp), AppFirstMaintenance(af)):
        assert isinstance(backend, MaintenanceBackend)


def test_capabilities():
    sp, af = StatusPageMaintenance(None), AppFirstMaintenance(None)
    assert (sp.can_edit, sp.lists_all, sp.uses_servers) == (False, False, False)
    assert (af.can_edit, af.lists_all, af.uses_servers) == (True, True, True)
    with pytest.raises(NotSupported, match="not supported on this backend"):
        run(sp.update("x", title="t", description="", start=T0, end=T0))


def test_statuspage_create_cancel_and_list(statuspage):
    async def go():
        async with StatusPageClient(statuspage.url, statuspage.api_key) as client:
            backend = StatusPageMaintenance(client)
            made = await backend.create(title="DB", description="d", start=T0, end=T0 + timedelta(hours=1), components=["c1"])
            statuspage.start_maintenance(made.upstream_id)  # someone marks it in progress there
            listed = await backend.list_windows()
            await backend.cancel(made.upstream_id)
            return made, listed, await backend.in_progress()

    made, listed, after = run(go())
    assert made == BackendWindow(made.upstream_id, "DB", T0, T0 + timedelta(hours=1), (), ("c1",), None)
    assert listed == [BackendWindow(made.upstream_id, "DB", T0, None, in_progress=True)]
    assert after == []
    assert statuspage.incidents[made.upstream_id]["Resolved"] is True


def test_appfirst_reply_times_are_the_truth_and_both_forms_agree(appfirst):
    # The fake's default shift is the seed's: 14:00 sent, 19:00 kept.
    appfirst.clock = lambda: T0

    async def go():
        async with AppFirstClient(appfirst.url, appfirst.email, appfirst.api_key) as client:
            backend = AppFirstMaintenance(client)
            made = await backend.create(
                title="r", description="", start=T0 + timedelta(hours=1), end=T0 + timedelta(hours=2), servers=[1]
            )
            moved = await backend.update(
                made.upstream_id,
                title="r2",
                description="",
                start=T0 + timedelta(hours=2),
                end=T0 + timedelta(hours=3),
                servers=[1, 2],
            )
            listed = await backend.list_windows()
            await backend.cancel(made.upstream_id)
            await backend.cancel(made.upstream_id)  # already gone: still cancelled
            return made, moved, listed

    made, moved, listed = run(go())
    assert made.start == T0 + timedelta(hours=6) and made.end == T0 + timedelta(hours=7)  # POST reply strings
    assert moved.title == "r2" and moved.servers == (1, 2) and moved.start == T0 + timedelta(hours=7)
    assert listed == [BackendWindow(made.upstream_id, "r2", moved.start, moved.end, (1, 2), (), False)]  # epochs
    assert appfirst.windows == {}


def test_appfirst_lists_every_page_of_3000_windows(appfirst):
    appfirst.clock = lambda: T0
    for i in range(3000):
        appfirst.add_window(T0 + timedelta(minutes=i - 10), T0 + timedelta(minutes=i + 10), reason=f"w{i}")

    async def go():
        async with AppFirstClient(appfirst.url, appfirst.email, appfirst.api_key) as client:
            backend = AppFirstMaintenance(client)
            return await backend.list_windows(), await backend.in_progress()

    listed, live = run(go())
    assert len(listed) == 3000 and len({w.upstream_id for w in listed}) == 3000
    assert {w.title for w in live} == {f"w{i}" for i in range(11)}  # w10 starts exactly now
    pages = [r.query.get("page") for r in appfirst.requests if r.method == "GET"]
    assert pages[:2] == ["0", "1"]


def test_appfirst_trailing_comma_body_is_an_error_not_an_empty_list(appfirst):
    appfirst.seed_trailing_comma = True

    async def go():
        async with AppFirstClient(appfirst.url, appfirst.email, appfirst.api_key) as client:
            return await AppFirstMaintenance(client).list_windows()

    with pytest.raises(UpstreamUnavailable):
        run(go())
