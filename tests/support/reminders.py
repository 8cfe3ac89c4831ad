"""Reading reminders back: the rows in the store and the posts that reached the fake Slack."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import select, update

from bot.slack.posts import PostTag, held_row
from store.models import Reminder
from store.states import ReminderState


def reminders(bot, window_id) -> dict[str, Reminder]:
    async def read():
        async with bot.ctx.db.session() as session:
            rows = await session.execute(select(Reminder).where(Reminder.window_id == window_id))
            return {r.kind: r for r in rows.scalars()}

    return bot.run(read())


def reminder_posts(slack, window=None, kind=None):
    posts = []
    for call in slack.calls_to("chat.postMessage"):
        meta = call.get("metadata") or {}
        if isinstance(meta, str):
            meta = json.loads(meta)
        payload = meta.get("event_payload") or {}
        if meta.get("event_type") != PostTag.REMINDER:
            continue
        if window is not None and payload.get("window_id") != window.id:
            continue
        if kind is not None and payload.get("kind") != kind:
            continue
        posts.append(call)
    return posts


#: When a dead process claimed what it left behind: long past any claim's stale age.
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


def record_lost(bot, kind: str) -> None:
    """The rows of `kind` as a process leaves them that made their post and died before
    recording it: claimed by a process gone, long ago, with nothing recorded."""

    async def lost() -> None:
        async with bot.ctx.db.session() as session, session.begin():
            await session.execute(
                update(Reminder)
                .where(Reminder.kind == kind)
                .values(state=ReminderState.CLAIMED, claimed_by="killed", claimed_at=LONG_AGO, message_ts=None)
            )

    bot.run(lost())


def planned_then_died(bot, incident_id: int, kind: str) -> None:
    """An incident's row of `kind` as a process leaves it that wrote it claimed (with the
    change calling for it) and died before posting."""

    async def died() -> None:
        async with bot.ctx.db.session() as session, session.begin():
            row = held_row(bot.ctx, incident_id=incident_id, kind=kind)
            row.claimed_by, row.claimed_at = "killed", LONG_AGO
            session.add(row)

    bot.run(died())
