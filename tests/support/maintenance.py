"""Helpers shared by the /maintenance end-to-end tests (both backends)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from bot.services.maintenance import MaintenanceService
from bot.services.maintenance_forms import ScheduleForm
from handlers.maintenance.ids import Action, Block
from store.models import Draft, MaintenanceWindow
from store.states import DraftKind
from tests.support.dates import T0, WINTER_END, WINTER_START
from tests.support.harness import (
    CHANNEL,
    BotUnderTest,
    at_once,
    chose_many,
    last_view,
    picked_time,
    typed,
)

API = "3fa85f64-5717-4562-b3fc-2c963f66afa0"


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def date_token(moment: datetime) -> str:
    return f"<!date^{epoch(moment)}^"


def schedule_values(
    title: str = "DB upgrade",
    *,
    description: str | None = "Routine optimisation",
    start: datetime | None = WINTER_START,
    end: datetime | None = WINTER_END,
    components: list[str] | None = None,
    servers: str | None = None,
) -> dict:
    values: dict = {
        Block.TITLE: {Action.TITLE: typed(title)},
        Block.START: {Action.START: picked_time(start)},
        Block.END: {Action.END: picked_time(end)},
    }
    if description is not None:
        values[Block.DESCRIPTION] = {Action.DESCRIPTION: typed(description)}
    if components is not None:
        values[Block.COMPONENTS] = {Action.COMPONENTS: chose_many(components)}
    if servers is not None:
        values[Block.SERVERS] = {Action.SERVERS: typed(servers)}
    return values


def open_modal(bot: BotUnderTest, slack, text: str = "schedule DB upgrade") -> dict:
    before = len(slack.calls_to("views.open"))
    response = bot.command(text, command="/maintenance")
    assert response.status_code == 200, response.text
    slack.wait_for(lambda: len(slack.calls_to("views.open")) > before)
    return last_view(slack)


def cancel_twice_at_once(one: BotUnderTest, two: BotUnderTest, slack) -> dict:
    """Two people cancelling one window at the same moment: a window scheduled through `one`
    (its clock at T0), a cancel modal opened on `one` for UA and on `two` for UB (the same
    bot, or a second instance on the same database), both submitted together. Returns the
    window's announcement; who won is the test's to look at."""
    form = ScheduleForm(title="Race", start=T0 + timedelta(days=1), end=T0 + timedelta(days=1, hours=1))
    window = one.run(MaintenanceService(one.ctx).submit(DraftKind.SCHEDULE, form, user_id="U1", channel_id="C1")).record
    parent = wait_announcement(slack)
    first = open_modal(one, slack, text=f"cancel {window.id}")
    second = {**open_modal(two, slack, text=f"cancel {window.id}"), "id": "V2"}  # two people, two modals
    at_once(lambda: one.submit(first, {}, user="UA"), lambda: two.submit(second, {}, user="UB"))
    return parent


def block(view: dict, block_id: str) -> dict | None:
    return next((b for b in view["blocks"] if b.get("block_id") == block_id), None)


def announcements(slack) -> list[dict]:
    """Top-level messages in the channel."""
    return [m for m in slack.messages(CHANNEL) if not m.get("thread_ts")]


def wait_announcement(slack) -> dict:
    return slack.wait_for(lambda: announcements(slack))[0]


def wait_answer(slack, count: int = 1) -> dict:
    """The n-th ephemeral answer to the person (1-based)."""
    return slack.wait_for(lambda: slack.ephemerals()[count - 1] if len(slack.ephemerals()) >= count else None)


def windows(bot: BotUnderTest) -> list[MaintenanceWindow]:
    async def read():
        async with bot.ctx.db.session() as session:
            return list((await session.execute(select(MaintenanceWindow).order_by(MaintenanceWindow.id))).scalars())

    return bot.run(read())


def drafts(bot: BotUnderTest) -> list[Draft]:
    async def read():
        async with bot.ctx.db.session() as session:
            return list((await session.execute(select(Draft).order_by(Draft.id))).scalars())

    return bot.run(read())


def list_answer(bot: BotUnderTest, slack) -> str:
    """`/maintenance list`: acked at once, answered privately once the API has answered."""
    before = len(slack.ephemerals())
    response = bot.command("list", command="/maintenance")
    assert response.status_code == 200 and response.content in (b"", b"null")

    def listed():  # not an earlier answer that arrives late
        return [m for m in slack.ephemerals()[before:] if "maintenance window" in m["text"] or "No maintenance" in m["text"]]

    answer = slack.wait_for(listed)[0]
    return answer["text"] + str(answer["blocks"])


def hold_live_sync(bot: BotUnderTest) -> None:
    """For tests of what is seen before the sync adopts a window, or of when it last ran: the
    live sync job wakes on the real clock (5 s after start), so a slow machine would run it
    mid-test. The test calls `sync_windows` itself where it wants one."""
    from scheduler.runner import SYNC_JOB

    async def hold() -> None:
        scheduler = bot.bot.scheduler.scheduler
        if scheduler.get_job(SYNC_JOB) is not None:
            scheduler.remove_job(SYNC_JOB)

    bot.run(hold())


def ack_text(response) -> str:
    body = response.json()
    return body.get("text", "") + str(body.get("blocks", ""))
