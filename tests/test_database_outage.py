"""A database outage (not a crash) under a living bot loses no draft (#19): a send cut off
by it becomes "outcome unknown" in the same process once the database is back, and the
choices the person was given work then, with no restart. On SQLite (its file locked by
another process) and on PostgreSQL (its connections cut and refused)."""

from __future__ import annotations

import threading

import pytest

from handlers.ids import DraftAction, DraftBlock, DraftInput
from tests.support.fakes.slack_api import WAIT_BOUND
from tests.support.harness import BotUnderTest, last_view, typed
from tests.support.incidents import answers_with, declare_values, drafts_in_store, incidents_in_store, open_declare_modal
from tests.support.outage import database_down

pytestmark = pytest.mark.both_databases


def draft_state(bot, draft_id: int) -> str | None:
    """As stored; None while the database still refuses (the pool's first use after it came back)."""
    try:
        return next(d.state for d in drafts_in_store(bot) if d.id == draft_id)
    except Exception:  # noqa: BLE001 - a refused read is "not yet"
        return None


def test_a_declare_cut_off_by_a_database_outage_becomes_unknown_and_create_anyway_works_after(settings, slack, statuspage):
    with BotUnderTest(settings.model_copy(update={"sitrep_heartbeat": 0.5})) as bot:
        cut = threading.Event()
        statuspage.drop_reply_when(cut)  # made upstream; the reply is lost once the database is down
        bot.submit(open_declare_modal(bot, slack), declare_values(title="Login loops"))
        slack.wait_for(lambda: [r for r in statuspage.requests if r.method == "POST"])  # the create is on its way
        (draft,) = drafts_in_store(bot)
        with database_down(settings):
            cut.set()
            answer = slack.wait_for(lambda: answers_with(slack, "Outcome unknown"), timeout=WAIT_BOUND)[0]
        assert DraftAction.ANYWAY in str(answer["blocks"]) and DraftAction.LINK in str(answer["blocks"])

        # The database is back: this process writes what it missed, without a restart.
        slack.wait_for(lambda: draft_state(bot, draft.id) == "unknown", timeout=WAIT_BOUND)
        bot.click(DraftAction.ANYWAY, str(draft.id))
        slack.wait_for(lambda: answers_with(slack, "is declared"), timeout=WAIT_BOUND)
        assert len(statuspage.incidents) == 2  # the person said the first does not exist
        [incident] = incidents_in_store(bot)
        assert incident.title == "Login loops" and incident.message_ts
        assert draft_state(bot, draft.id) == "done"


def test_the_link_choice_works_at_once_when_the_database_is_back(settings, slack, statuspage):
    """Clicked before any heartbeat wrote what the outage missed: the click writes it first."""
    with BotUnderTest(settings.model_copy(update={"sitrep_heartbeat": 600})) as bot:
        cut = threading.Event()
        statuspage.drop_reply_when(cut)  # made upstream; the reply is lost once the database is down
        bot.submit(open_declare_modal(bot, slack), declare_values(title="Login loops"))
        slack.wait_for(lambda: [r for r in statuspage.requests if r.method == "POST"])
        (draft,) = drafts_in_store(bot)
        with database_down(settings):
            cut.set()
            slack.wait_for(lambda: answers_with(slack, "Outcome unknown"), timeout=WAIT_BOUND)
        slack.wait_for(lambda: draft_state(bot, draft.id) is not None, timeout=WAIT_BOUND)  # answering again
        slack.forget_calls()
        bot.click(DraftAction.LINK, str(draft.id))
        view = slack.wait_for(lambda: slack.calls_to("views.open") and last_view(slack), timeout=WAIT_BOUND)
        (upstream_id,) = statuspage.incidents
        response = bot.submit(view, {DraftBlock.UPSTREAM_ID: {DraftInput.UPSTREAM_ID: typed(upstream_id)}})
        assert response.status_code == 200 and not response.content  # no "settled already" error: the modal closes
        slack.wait_for(lambda: answers_with(slack, "is declared"), timeout=WAIT_BOUND)
        [incident] = incidents_in_store(bot)
        assert incident.upstream_id == upstream_id and len(statuspage.incidents) == 1
        assert draft_state(bot, draft.id) == "done"
