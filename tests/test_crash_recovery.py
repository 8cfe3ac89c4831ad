"""No draft stays "sending": one whose sender has no heartbeat any more becomes "outcome
unknown" and its person is told, once, with the same choices as a lost reply — on SQLite
and PostgreSQL, through the real bot and the fake Slack. (The real-process version, kill -9
mid-declare and restart, is in tests/test_kill_mid_declare.py.)"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot.services.recovery import beat, recover_orphans, stale_after
from handlers.ids import DraftAction, DraftBlock, DraftInput
from store import instances
from store.models import Draft, Instance
from tests.support.harness import BotUnderTest, FakeClock, last_view, typed
from tests.support.incidents import incidents_in_store

pytestmark = pytest.mark.both_databases

DECLARE = {
    "title": "DB down",
    "description": "Timeouts on checkout",
    "status": "Investigating",
    "impact": "Major Outage",
    "component_ids": [],
    "notify": True,
}


@pytest.fixture
def quiet_bot(settings):
    """The bot with its timers off: the test runs the recovery itself, nothing races it."""
    with BotUnderTest(settings, clock=FakeClock()) as bot:
        yield bot


def left_sending(bot, *, sent_by: str | None, heartbeat_age: timedelta | None, channel: str | None = "C123") -> int:
    """A declare some instance was sending, and that instance's last heartbeat (None: no row)."""

    async def make() -> int:
        async with bot.ctx.db.session() as session, session.begin():
            if sent_by is not None and heartbeat_age is not None:
                now = await instances.db_now(session)
                session.add(Instance(id=sent_by, started_at=now - heartbeat_age, heartbeat_at=now - heartbeat_age))
            now = datetime.now(UTC)
            draft = Draft(
                kind="incident.declare",
                user_id="U123",
                channel_id=channel,
                payload=DECLARE,
                state="sending",
                created_at=now,
                updated_at=now,
                sent_by=sent_by,
            )
            session.add(draft)
            await session.flush()
            return draft.id

    return bot.run(make())


def draft_state(bot, draft_id: int) -> str:
    async def read():
        async with bot.ctx.db.session() as session:
            return (await session.execute(select(Draft.state).where(Draft.id == draft_id))).scalar_one()

    return bot.run(read())


def told(slack) -> list[dict]:
    return [m for m in slack.ephemerals() if "Outcome unknown" in m["text"]]


def test_a_draft_of_a_gone_instance_becomes_unknown_and_its_person_is_told_once(quiet_bot, slack, statuspage):
    dead = left_sending(quiet_bot, sent_by="dead-instance", heartbeat_age=timedelta(hours=1))
    assert quiet_bot.run(recover_orphans(quiet_bot.ctx)) == 1
    assert draft_state(quiet_bot, dead) == "unknown"
    [notice] = slack.wait_for(lambda: told(slack))
    assert notice["channel"] == "C123" and notice["user"] == "U123"
    blocks = str(notice["blocks"])
    assert "stopped while it was sending" in blocks and "DB down" in blocks
    assert DraftAction.LINK in blocks and DraftAction.ANYWAY in blocks and DraftAction.EDIT in blocks
    # The next beat finds nothing more to do: told once.
    assert quiet_bot.run(recover_orphans(quiet_bot.ctx)) == 0
    assert len(told(slack)) == 1
    # And the choices work from that notice: link the incident the dead process made.
    made = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
    slack.forget_calls()
    quiet_bot.click(DraftAction.LINK, str(dead))
    view = slack.wait_for(lambda: slack.calls_to("views.open") and last_view(slack))
    quiet_bot.submit(view, {DraftBlock.UPSTREAM_ID: {DraftInput.UPSTREAM_ID: typed(made)}})
    slack.wait_for(lambda: [i for i in incidents_in_store(quiet_bot) if i.upstream_id == made and i.message_ts])
    slack.wait_for(lambda: draft_state(quiet_bot, dead) == "done")


def test_a_draft_of_a_live_instance_is_left_alone(quiet_bot, slack):
    mine = left_sending(quiet_bot, sent_by=quiet_bot.ctx.instance_id, heartbeat_age=None)
    other = left_sending(quiet_bot, sent_by="other-replica", heartbeat_age=timedelta(seconds=1))
    assert quiet_bot.run(recover_orphans(quiet_bot.ctx)) == 0
    assert (draft_state(quiet_bot, mine), draft_state(quiet_bot, other)) == ("sending", "sending")
    assert told(slack) == []


def test_a_silent_instance_counts_as_gone_only_after_three_beats(quiet_bot, slack):
    beats = stale_after(quiet_bot.ctx)
    assert beats == timedelta(seconds=3 * quiet_bot.ctx.settings.sitrep_heartbeat)
    late = left_sending(quiet_bot, sent_by="late", heartbeat_age=beats - timedelta(seconds=5))
    gone = left_sending(quiet_bot, sent_by="gone", heartbeat_age=beats + timedelta(seconds=5))
    assert quiet_bot.run(recover_orphans(quiet_bot.ctx)) == 1
    assert (draft_state(quiet_bot, late), draft_state(quiet_bot, gone)) == ("sending", "unknown")


def test_a_draft_nobody_holds_is_recovered_at_once(quiet_bot, slack):
    """Released while stopping (or kept by a version without heartbeats): no sender at all."""
    released = left_sending(quiet_bot, sent_by=None, heartbeat_age=None)
    assert quiet_bot.run(recover_orphans(quiet_bot.ctx)) == 1
    assert draft_state(quiet_bot, released) == "unknown"


def test_two_replicas_recovering_at_once_tell_the_person_once(quiet_bot, slack):
    left_sending(quiet_bot, sent_by="dead", heartbeat_age=timedelta(hours=1))

    async def both():
        return await asyncio.gather(recover_orphans(quiet_bot.ctx), recover_orphans(quiet_bot.ctx))

    assert sorted(quiet_bot.run(both())) == [0, 1]
    slack.wait_for(lambda: told(slack))
    assert len(told(slack)) == 1


def test_when_the_channel_refuses_the_person_gets_a_direct_message(quiet_bot, slack):
    slack.fail_next("chat.postEphemeral", "channel_not_found")
    left_sending(quiet_bot, sent_by="dead", heartbeat_age=timedelta(hours=1))
    assert quiet_bot.run(recover_orphans(quiet_bot.ctx)) == 1
    dm = slack.wait_for(lambda: [c for c in slack.calls_to("chat.postMessage") if c["channel"] == "U123"])[0]
    assert "Outcome unknown" in dm["text"] and DraftAction.ANYWAY in str(dm["blocks"])


def test_the_heartbeat_is_on_the_database_clock_and_a_clean_stop_removes_it(quiet_bot):
    async def row():
        async with quiet_bot.ctx.db.session() as session:
            found = await session.get(Instance, quiet_bot.ctx.instance_id)
            return found, await instances.db_now(session)

    quiet_bot.ctx.clock = lambda: datetime(1999, 1, 1, tzinfo=UTC)  # the host's clock is not asked
    quiet_bot.run(beat(quiet_bot.ctx))
    found, now = quiet_bot.run(row())
    assert found is not None and abs(found.heartbeat_at - now) < timedelta(seconds=5)
    quiet_bot.run(quiet_bot.bot.scheduler.stop_heartbeat())
    assert quiet_bot.run(row())[0] is None
