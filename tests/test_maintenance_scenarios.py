"""The maintenance scenarios that read the same on both backends, run on each: an upstream
that refuses, refuses the credentials or does not answer in time. What differs per backend
(fields, times, edit, list sources) stays in `test_maintenance_statuspage.py` and
`test_maintenance_appfirst.py`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from handlers.ids import DraftAction
from tests.support.dates import T0
from tests.support.harness import CHANNEL, BotUnderTest
from tests.support.maintenance import (
    drafts,
    open_modal,
    schedule_values,
    wait_answer,
    windows,
)


@dataclass
class Backend:
    """One backend as a scenario sees it: the running bot, its fake API and what differs."""

    name: str
    bot: BotUnderTest
    upstream: Any  # FakeStatusPage or FakeAppFirst: the same switches (fail_times, latency, api_key)
    values: dict
    typed: tuple[str, ...]  # what the person typed, shown back to them when it failed
    said_400: str  # how the person sees the fake's 400 Message
    refused: str  # how the person sees refused credentials


@pytest.fixture
def clock(upstream_clock):
    upstream_clock.set(T0)
    return upstream_clock


@pytest.fixture(params=["statuspage", "appfirst"])
def backend(request, settings, appfirst_settings, statuspage, appfirst, clock, upstream_timeout):
    if request.param == "statuspage":
        with BotUnderTest(settings, clock=clock, http_timeout=upstream_timeout) as bot:
            yield Backend(
                "statuspage",
                bot,
                statuspage,
                schedule_values(),
                typed=("DB upgrade", "Routine optimisation"),
                said_400="The status page said “An unexpected error occurred.”",
                refused="sitrep is misconfigured: the status page refused its credentials",
            )
    else:
        with BotUnderTest(appfirst_settings, clock=clock, http_timeout=upstream_timeout) as bot:
            yield Backend(
                "appfirst",
                bot,
                appfirst,
                schedule_values("Kernel updates", description=None, servers="1, 2"),
                typed=("Kernel updates",),
                said_400="AppFirst said “Internal server error.”",
                refused="sitrep is misconfigured: AppFirst refused its credentials",
            )


def test_upstream_400_message_is_shown_verbatim(backend, slack):
    backend.upstream.fail_times(1, status=400)
    view = open_modal(backend.bot, slack)
    backend.bot.submit(view, backend.values)
    text = str(wait_answer(slack)["blocks"])
    assert backend.said_400 in text
    assert DraftAction.EDIT in text and DraftAction.RETRY not in text
    assert slack.messages(CHANNEL) == [] and windows(backend.bot) == []


def test_401_says_misconfigured_and_keeps_the_text(backend, slack):
    backend.upstream.api_key = "rotated"
    view = open_modal(backend.bot, slack)
    backend.bot.submit(view, backend.values)
    text = str(wait_answer(slack)["blocks"])
    assert backend.refused in text
    assert all(typed in text for typed in backend.typed) and "rotated" not in text
    assert slack.messages(CHANNEL) == []
    assert drafts(backend.bot)[0].state == "failed"


@pytest.mark.upstream_times_out
def test_timeout_keeps_the_draft_and_says_the_outcome_is_unknown(backend, slack):
    view = open_modal(backend.bot, slack)
    with backend.upstream.hold_requests():  # no answer at all: the bot's client gives up after 2 s in tests
        response = backend.bot.submit(view, backend.values)
        assert response.status_code == 200  # acked while the API has not answered
        text = str(wait_answer(slack)["blocks"])
    # Sent, no answer: it may exist. AppFirst can be asked (check), the status page cannot (link).
    looks = DraftAction.CHECK if backend.name == "appfirst" else DraftAction.LINK
    assert "reply within 2 seconds" in text and "Outcome unknown" in text
    assert looks in text and DraftAction.ANYWAY in text and DraftAction.RETRY not in text
    assert drafts(backend.bot)[0].state == "unknown" and slack.messages(CHANNEL) == []
