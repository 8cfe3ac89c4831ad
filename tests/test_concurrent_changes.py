"""Two people changing the same thing at once (issue #10): one winner posts in the thread,
the other is told who did it and when; a resolve the status page refused never overwrites
who resolved it. Each test runs on a SQLite file and on PostgreSQL."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from bot.errors import NotFound
from bot.services import drafts as draft_flow
from bot.services.incidents import IncidentService
from bot.services.maintenance import MaintenanceService
from bot.services.maintenance_forms import ScheduleForm
from store.states import DraftKind
from tests.support.dates import T0
from tests.support.fakes.slack_api import WAIT_BOUND
from tests.support.harness import CHANNEL, BotUnderTest, at_once
from tests.support.incidents import declare, incidents_in_store, resolve_values, thread_replies
from tests.support.incidents import open_modal as open_incident_modal
from tests.support.maintenance import cancel_twice_at_once, wait_announcement, windows
from tests.support.maintenance import open_modal as open_window_modal

pytestmark = pytest.mark.both_databases


@pytest.fixture
def clock(upstream_clock):
    upstream_clock.set(T0)
    return upstream_clock


@pytest.fixture
def sp_bot(settings, clock):
    with BotUnderTest(settings, clock=clock) as bot:
        yield bot


def test_two_cancels_at_once_post_one_cancelled_and_tell_the_other_who(sp_bot, slack):
    parent = cancel_twice_at_once(sp_bot, sp_bot, slack)

    answers = slack.wait_for(lambda: len(slack.ephemerals()) >= 2 and slack.ephemerals())
    stored = windows(sp_bot)[0]
    assert stored.state == "cancelled" and stored.cancelled_by in ("UA", "UB")
    loser = "UB" if stored.cancelled_by == "UA" else "UA"
    told = " ".join(str(e) for e in answers if e.get("user") == loser)
    assert f"already cancelled by <@{stored.cancelled_by}> at <!date^" in told
    replies = [r for r in slack.thread(CHANNEL, parent["ts"]) if "Cancelled" in str(r.get("blocks"))]
    assert len(replies) == 1


def test_a_cancel_the_status_page_refused_never_names_its_sender(sp_bot, slack, statuspage, caplog):
    """UA's cancel reaches the status page first, but its answer is slow; UB's comes after and
    is refused ("already resolved"). UB is not recorded as the canceller: UB's answer waits for
    UA's record and names UA, and *Cancelled* is posted once, naming UA."""
    caplog.set_level(logging.INFO, logger="bot.services.drafts")
    form = ScheduleForm(title="Race", start=T0 + timedelta(days=1), end=T0 + timedelta(days=1, hours=1))
    window = sp_bot.run(MaintenanceService(sp_bot.ctx).submit(DraftKind.SCHEDULE, form, user_id="U1", channel_id="C1")).record
    parent = wait_announcement(slack)
    first = open_window_modal(sp_bot, slack, text=f"cancel {window.id}")
    second = {**open_window_modal(sp_bot, slack, text=f"cancel {window.id}"), "id": "V2"}
    answer_ua = statuspage.pause_reply("/Incident/ResolveIncident")
    sp_bot.submit(first, {}, user="UA")
    slack.wait_for(lambda: statuspage.incidents[window.upstream_id]["Resolved"])  # taken, not yet answered
    sp_bot.submit(second, {}, user="UB")
    slack.wait_for(lambda: "waiting for a rival one" in caplog.text)  # UB's refused, UA's not recorded yet
    answer_ua.set()
    told_ub = slack.wait_for(lambda: [e for e in slack.ephemerals() if e.get("user") == "UB"])
    slack.wait_for(lambda: [e for e in slack.ephemerals() if e.get("user") == "UA"])
    stored = windows(sp_bot)[0]
    assert stored.state == "cancelled" and stored.cancelled_by == "UA"
    assert "already cancelled by <@UA> at <!date^" in str(told_ub)
    replies = [r for r in slack.thread(CHANNEL, parent["ts"]) if "Cancelled" in str(r.get("blocks"))]
    assert len(replies) == 1 and "<@UA>" in str(replies[0]["blocks"])


def test_two_resolves_at_once_post_one_resolved(bot, slack, statuspage):
    incident = declare(bot, slack)
    first = open_incident_modal(bot, slack, lambda: bot.command(f"resolve {incident.id}"))
    second = {**open_incident_modal(bot, slack, lambda: bot.command(f"resolve {incident.id}")), "id": "V2"}
    at_once(
        lambda: bot.submit(first, resolve_values(incident.id), user="UA"),
        lambda: bot.submit(second, resolve_values(incident.id), user="UB"),
    )

    answers = slack.wait_for(lambda: len(slack.ephemerals()) >= 2 and slack.ephemerals())
    stored = incidents_in_store(bot)[0]
    assert not stored.is_open and stored.resolved_by in ("UA", "UB")
    loser = "UB" if stored.resolved_by == "UA" else "UA"
    told = " ".join(str(e) for e in answers if e.get("user") == loser)
    assert f"already resolved by <@{stored.resolved_by}> at <!date^" in told
    resolved = [r for r in thread_replies(slack, incident) if "Resolved" in str(r.get("blocks"))]
    assert len(resolved) == 1


def test_a_resolve_the_status_page_refused_never_wins_over_the_one_it_took(
    settings, clock, slack, statuspage, caplog, monkeypatch
):
    """UA's resolve reaches the status page first, but its answer is slow; UB's comes after,
    is refused ("already resolved") and reaches the store first. The store follows the status
    page without naming UB, UA's lands second and is recorded, *Resolved* is posted once, and
    UB (whose refusal waited for UA's record) hears who resolved it and when."""
    caplog.set_level(logging.INFO, logger="bot.services.drafts")
    # UA's answer is held across several steps of the test: neither its client nor UB's wait
    # for the rival may run out first, however slow the machine.
    monkeypatch.setattr(draft_flow, "RIVAL_WAIT_SECONDS", 4 * WAIT_BOUND)
    with BotUnderTest(settings, clock=clock, http_timeout=4 * WAIT_BOUND) as bot:
        incident = declare(bot, slack)
        first = open_incident_modal(bot, slack, lambda: bot.command(f"resolve {incident.id}"))
        second = {**open_incident_modal(bot, slack, lambda: bot.command(f"resolve {incident.id}")), "id": "V2"}
        answer_ua = statuspage.pause_reply("/Incident/ResolveIncident", seconds=4 * WAIT_BOUND)
        bot.submit(first, resolve_values(incident.id), user="UA")
        slack.wait_for(lambda: statuspage.incidents[incident.upstream_id]["Resolved"])  # taken, not yet answered
        bot.submit(second, resolve_values(incident.id), user="UB")
        slack.wait_for(lambda: "waiting for a rival one" in caplog.text)  # UB's refused, UA's not recorded yet
        followed = slack.wait_for(lambda: (stored := incidents_in_store(bot)[0]).resolved_at is not None and stored)
        assert followed.resolved_by is None  # followed, nobody named
        answer_ua.set()
        told_ub = slack.wait_for(lambda: [e for e in slack.ephemerals() if e.get("user") == "UB"])
        slack.wait_for(lambda: [e for e in slack.ephemerals() if e.get("user") == "UA"])
        stored = incidents_in_store(bot)[0]
        assert not stored.is_open and stored.resolved_by == "UA"
        assert "already resolved by <@UA> at <!date^" in str(told_ub)
        resolved = [r for r in thread_replies(slack, incident) if "Resolved" in str(r.get("blocks"))]
        assert len(resolved) == 1 and "<@UA>" in str(resolved[0]["blocks"])


def test_a_resolve_refused_upstream_after_another_keeps_the_stored_resolver(bot, slack, statuspage):
    incident = declare(bot, slack)
    view = open_incident_modal(bot, slack, lambda: bot.command(f"resolve {incident.id}"))
    bot.submit(view, resolve_values(incident.id), user="UA")
    slack.wait_for(lambda: slack.ephemerals())  # UA's resolve is done, Slack side too
    before = incidents_in_store(bot)[0]
    slack.forget_calls()

    # UB read it open just before UA's resolve landed; the status page now refuses UB's.
    service = IncidentService(bot.ctx)
    with pytest.raises(NotFound, match="already resolved by <@UA>"):
        bot.run(service._close(incident, user_id="UB", note="", announce=False))
    after = incidents_in_store(bot)[0]
    assert (after.resolved_by, after.resolved_at) == ("UA", before.resolved_at)
    assert slack.calls_to("chat.postMessage") == []
