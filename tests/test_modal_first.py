"""A form that shows what the store holds opens before any read that may wait (#22): a trigger
works once and for 3 s. With the database holding every session the bot opens, each such
form opens with its trigger (a modal saying it is being read), Slack has its ack, and the
form itself replaces it once the database answers. Every statement the database then runs
costs 3 s on the fake Slack's clock (the trigger's clock): a form opened after any statement
would find its trigger expired."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import event

from bot.context import READ_BEFORE_OPEN
from bot.messages.maintenance import OverrunId
from bot.services.maintenance import MaintenanceService
from bot.services.maintenance_forms import ScheduleForm
from bot.services.outcomes import Outcome
from handlers.incident.ids import Action as IncidentAction
from handlers.incident.ids import Callback as IncidentCallback
from handlers.maintenance.ids import Callback as MaintenanceCallback
from store.states import DraftKind
from tests.support.fakes.signing import new_trigger_id
from tests.support.harness import BotUnderTest, FakeClock
from tests.support.incidents import declare

pytestmark = pytest.mark.both_databases  # a database that holds, of either kind


async def _gate() -> asyncio.Event:
    return asyncio.Event()


@contextmanager
def database_held(bot: BotUnderTest):
    """Every session the bot opens in the block waits for its end: a database that does not
    answer (locked by another process, failing over), on either kind of database."""
    gate = bot.run(_gate())
    db = bot.ctx.db
    opened = db.session

    @asynccontextmanager
    async def held(*args, **kwargs):
        await gate.wait()
        async with opened(*args, **kwargs) as session:
            yield session

    db.session = held
    try:
        yield
    finally:
        db.session = opened
        bot.loop.call_soon_threadsafe(gate.set)


def opens_first(bot: BotUnderTest, slack, send: Callable[[str], object], callback_id: str, shows: str) -> None:
    now = [time.time()]
    slack.clock = lambda: now[0]

    def three_seconds(*_args) -> None:
        now[0] += 3.0

    slack.forget_calls()
    event.listen(bot.ctx.db.engine.sync_engine, "before_cursor_execute", three_seconds)
    try:
        with database_held(bot):
            trigger = new_trigger_id(issued_at=now[0])
            assert send(trigger).status_code == 200  # Slack has its ack while the database holds
            [opening] = slack.wait_for(lambda: slack.calls_to("views.open"))
            assert opening["trigger_id"] == trigger and "callback_id" not in opening["view"]
        [filled] = slack.wait_for(lambda: slack.calls_to("views.update"))
    finally:
        event.remove(bot.ctx.db.engine.sync_engine, "before_cursor_execute", three_seconds)
    view = slack.views[filled["view_id"]]
    assert view["callback_id"] == callback_id and shows in json.dumps(view)
    assert slack.calls_to("chat.postEphemeral") == []


@pytest.fixture
def quiet_bot(settings):
    """An injected clock: no timers, so every statement comes from a request."""
    with BotUnderTest(settings, clock=FakeClock(), read_before_open=READ_BEFORE_OPEN) as bot:
        yield bot


@pytest.mark.parametrize(
    ("how", "callback_id"),
    [
        ("update", IncidentCallback.UPDATE),
        ("resolve", IncidentCallback.RESOLVE),
        ("post-update-button", IncidentCallback.UPDATE),
        ("resolve-button", IncidentCallback.RESOLVE),
        ("lead-button", IncidentCallback.LEAD),
    ],
)
def test_an_incident_form_opens_while_the_database_holds(quiet_bot, slack, how, callback_id):
    bot = quiet_bot
    incident = declare(bot, slack, title="Checkout down")
    buttons = {
        "post-update-button": IncidentAction.POST_UPDATE,
        "resolve-button": IncidentAction.RESOLVE,
        "lead-button": IncidentAction.LEAD_BUTTON,
    }

    def send(trigger: str):
        if how in buttons:
            return bot.click(buttons[how], str(incident.id), trigger_id=trigger)
        return bot.command(f"{how} #{incident.id}", trigger_id=trigger)

    opens_first(bot, slack, send, callback_id, "Checkout down")


@pytest.fixture
def quiet_af_bot(appfirst_settings):
    with BotUnderTest(appfirst_settings, clock=FakeClock(), read_before_open=READ_BEFORE_OPEN) as bot:
        yield bot


def schedule(bot: BotUnderTest, title: str) -> Outcome:
    start = bot.ctx.clock() + timedelta(days=1)
    form = ScheduleForm(title=title, start=start, end=start + timedelta(hours=1), servers_text="1")
    return bot.run(MaintenanceService(bot.ctx).submit(DraftKind.SCHEDULE, form, user_id="U123", channel_id="C123"))


@pytest.mark.parametrize(
    ("how", "callback_id"),
    [
        ("edit", MaintenanceCallback.EDIT),
        ("cancel", MaintenanceCallback.CANCEL),
        ("follow-on-button", MaintenanceCallback.SCHEDULE),
    ],
)
def test_a_maintenance_form_opens_while_the_database_holds(quiet_af_bot, slack, how, callback_id):
    bot = quiet_af_bot
    window = schedule(bot, "Kernel updates").record

    def send(trigger: str):
        if how == "follow-on-button":
            return bot.click(OverrunId.FOLLOW_ON, str(window.id), trigger_id=trigger)
        return bot.command(f"{how} #{window.id}", command="/maintenance", trigger_id=trigger)

    opens_first(bot, slack, send, callback_id, "Kernel updates")


def test_a_refusal_found_after_the_form_opened_is_said_inside_it(quiet_bot, slack):
    bot = quiet_bot
    with database_held(bot):
        assert bot.command("update #99").status_code == 200
        slack.wait_for(lambda: slack.calls_to("views.open"))
    [filled] = slack.wait_for(lambda: slack.calls_to("views.update"))
    assert "I don't know an incident `#99`" in json.dumps(filled["view"])
    assert slack.calls_to("chat.postEphemeral") == []
