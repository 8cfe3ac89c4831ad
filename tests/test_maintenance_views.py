"""The maintenance Block Kit builders stay within Slack's limits, whatever the data."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from bot.backends import (
    AppFirstMaintenance,
    BackendWindow,
    StatusPageMaintenance,
    backend_named,
)
from bot.messages import maintenance as messages
from bot.services.maintenance_forms import ScheduleForm, parse_servers
from bot.services.maintenance_listing import ListedWindow, Listing
from bot.services.outcomes import Change, Outcome
from bot.settings import Component
from handlers.maintenance import views
from handlers.maintenance.ids import Block
from store.models import MaintenanceWindow
from store.states import DraftKind
from tests.support.dates import T0
from tests.support.slack_limits import check_message, check_modal


def window(n: int = 1, *, title: str = "DB upgrade", backend: str = "appfirst", **kw) -> MaintenanceWindow:
    fields = dict(
        id=n,
        backend=backend,
        upstream_id=str(n),
        title=title,
        description="",
        start=T0 + timedelta(hours=n),
        end=T0 + timedelta(hours=n + 2),
        components=[],
        servers=[1, 2],
        state="scheduled",
        channel_id="C1",
        message_ts="1.1",
        created_by="U1",
        created_at=T0,
        updated_at=T0,
    )
    fields.update(kw)
    return MaintenanceWindow(**fields)


@pytest.mark.parametrize("backend", [StatusPageMaintenance(None), AppFirstMaintenance(None)], ids=["statuspage", "appfirst"])
def test_schedule_and_edit_modals_fit(backend):
    components = [Component(name=f"Component {i} " + "x" * 60, id=f"id-{i}") for i in range(150)]
    form = ScheduleForm(title="t" * 500, description="d" * 5000, start=T0, end=T0 + timedelta(hours=1), servers_text="1," * 400)
    check_modal(views.schedule_modal(form, backend, components, channel_id="C1"))
    edit = views.schedule_modal(form, backend, components, channel_id="C1", window=window(99999, title="<!here>" * 100))
    check_modal(edit)
    # The 5000-character description fits no text field: shown read-only, kept unless replaced.
    kept = ["description"] if backend.has_description else []
    assert json.loads(edit["private_metadata"]) == {"channel": "C1", "window": 99999, **({"keep": kept} if kept else {})}
    assert "<!here>" not in json.dumps(edit)


def test_cancel_modal_fits_and_escapes():
    view = views.cancel_modal(window(title="<!channel> " * 400), channel_id="C1")
    check_modal(view)
    assert "<!channel>" not in json.dumps(view)


def test_announcement_fits_with_huge_fields():
    w = window(title="<@U9> " * 2000, description="d" * 10000, servers=list(range(3000)))
    text, blocks = messages.announcement(w, backend_named(w.backend))
    check_message(blocks, text)
    assert "more" in json.dumps(blocks) and "…" in text
    assert "<@U9>" not in text + json.dumps(blocks)
    sp = window(backend="statuspage", servers=[], components=["API " * 1000], end=None, created_by=None)
    _, blocks = messages.announcement(sp, backend_named(sp.backend))
    check_message(blocks)
    assert "outside Slack, on the status page" in json.dumps(blocks) and "Not given" in json.dumps(blocks)


@pytest.mark.parametrize("state", ["scheduled", "in_progress", "completed", "cancelled"])
def test_announcement_shows_state_and_offers_cancel_only_while_active(state):
    _, blocks = messages.announcement(window(state=state), AppFirstMaintenance)
    body = json.dumps(blocks)
    assert messages.STATE_LABEL[state] in body
    assert ("maintenance_cancel_button" in body) == (state in ("scheduled", "in_progress"))


def listed(n: int, *, number: int | None = None, **kw) -> ListedWindow:
    fields = dict(
        backend="appfirst",
        upstream_id=str(n),
        title="w" * 100,
        start=T0 + timedelta(hours=n),
        end=T0 + timedelta(hours=n + 1),
        state="scheduled",
        servers=tuple(range(50)),
        number=number,
    )
    fields.update(kw)
    return ListedWindow(**fields)


def listing(windows, **kw) -> Listing:
    return Listing(windows=windows, service="AppFirst", now=T0, sync_interval=300, **kw)


@pytest.mark.parametrize("stale", [False, True], ids=["live", "from-the-store"])
def test_list_and_status_stay_within_50_blocks_and_count_what_is_left_out(stale):
    many = [listed(i, number=i if i % 2 else None, title="<!here> " * 40) for i in range(1, 1500)]
    extra = {"problem": "AppFirst is not available right now. " * 50, "checked_at": T0} if stale else {}
    text, blocks = views.window_list(listing(many, **extra))
    check_message(blocks)
    body = json.dumps(blocks, ensure_ascii=False)
    shown = body.count("servers: 0, 1")
    assert shown > 10 and f"…and {1499 - shown} more, not shown" in body
    assert "<!here>" not in body + text
    assert ("sitrep's own record" in body) is stale
    live = [(BackendWindow(str(i), "t" * 100, T0, None, servers=tuple(range(20)), in_progress=True), None) for i in range(1500)]
    _, blocks = views.status_answer(live, "AppFirst")
    check_message(blocks)


def test_list_says_how_old_the_record_is_when_the_api_did_not_answer():
    stale = listing([listed(1, number=7)], problem="AppFirst is not available right now.", checked_at=T0 - timedelta(hours=2))
    body = json.dumps(views.window_list(stale)[1])
    assert "last checked with AppFirst 2h ago" in body and f"<!date^{int((T0 - timedelta(hours=2)).timestamp())}^" in body
    never = listing([], problem="AppFirst is not available right now.")
    body = json.dumps(views.window_list(never)[1])
    assert "has not reached AppFirst" in body and "No maintenance scheduled" in body
    fresh = json.dumps(views.window_list(listing([listed(1, number=7)]))[1])
    assert "own record" not in fresh and "checked with AppFirst just now" in fresh and "not announced" not in fresh
    live = [(BackendWindow(str(i), "t" * 100, T0, None, servers=tuple(range(20)), in_progress=True), None) for i in range(1500)]
    _, blocks = views.status_answer(live, "AppFirst")
    check_message(blocks)


def test_edited_reply_and_shift_note_use_date_tokens():
    w = window()
    old = T0 + timedelta(hours=1)
    _, blocks = messages.edited_reply(w, [Change("start", old, w.start), Change("title", "<!here>", "b")], "U1", T0)
    body = json.dumps(blocks)
    assert f"<!date^{int(old.timestamp())}^" in body and "&lt;!here&gt;" in body
    text, blocks = views.done_answer(Outcome(kind=DraftKind.SCHEDULE, record=w, entered=(T0, T0 + timedelta(hours=1))))
    assert "AppFirst stored the window as" in json.dumps(blocks)


def test_servers_parse():
    assert parse_servers("1, 2 3") == (1, 2, 3)
    assert parse_servers("[1,2,3]") == (1, 2, 3)
    assert parse_servers("") == ()
    assert parse_servers("1, web") is None
    assert parse_servers("-1") is None


def test_blocks_of_errors_exist_in_the_modals():
    view = views.schedule_modal(ScheduleForm(title=""), AppFirstMaintenance(None), [], channel_id=None)
    ids = {b.get("block_id") for b in view["blocks"]}
    assert {Block.TITLE, Block.START, Block.END, Block.SERVERS} <= ids


def test_edit_modal_never_prefills_a_cut_value():
    """A stored value that fits no field (> 3000) is quoted read-only; the field is left empty
    and the metadata says an empty field keeps the stored value."""
    long_reason = "r" * 3500
    form = ScheduleForm(title=long_reason, start=T0, end=T0 + timedelta(hours=1), servers_text="1, 2")
    edit = views.schedule_modal(form, AppFirstMaintenance(None), [], channel_id="C1", window=window(7, title=long_reason))
    check_modal(edit)
    field = next(b for b in edit["blocks"] if b.get("block_id") == Block.TITLE)
    assert "initial_value" not in field["element"] and field["optional"] is True
    assert json.loads(edit["private_metadata"])["keep"] == ["title"]
    assert "3,500 characters" in json.dumps(edit["blocks"])
    # Scheduling (nothing stored yet) shows what was typed, cut visibly.
    fresh = views.schedule_modal(form, AppFirstMaintenance(None), [], channel_id="C1")
    check_modal(fresh)
    assert next(b for b in fresh["blocks"] if b.get("block_id") == Block.TITLE)["element"]["initial_value"].endswith("…")


def test_reminders_keep_their_sentence_with_a_huge_title():
    w = window(title="<!channel> " * 1000)
    for kind in ("heads_up", "started", "ended"):
        text, blocks = messages.reminder(w, kind, lead_minutes=15, late_since=T0)
        check_message(blocks, text)
        assert f"(maintenance #{w.id})" in blocks[0]["text"]["text"] and "<!channel>" not in json.dumps(blocks)
    text, blocks = messages.moved_outside(w, before=(T0, T0), service="AppFirst")
    check_message(blocks, text)
    assert "Reminders follow the new times." in blocks[0]["text"]["text"]
