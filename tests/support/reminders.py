"""Reading reminders back: the rows in the store and the posts that reached the fake Slack."""

from __future__ import annotations

import json

from sqlalchemy import select

from bot.slack.posts import PostTag, held_row
from store.models import Reminder
from tests.support.process import died_before_recording, died_holding


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


def record_lost(bot, kind: str) -> None:
    """The rows of `kind` as a process leaves them that made their post and died before
    recording it (`died_before_recording`)."""
    bot.run(died_before_recording(bot.ctx.db, kind))


def planned_then_died(bot, incident_id: int, kind: str) -> None:
    """An incident's row of `kind` as a process leaves it that wrote it claimed (with the
    change calling for it) and died before posting (`died_holding`)."""

    async def died() -> None:
        async with bot.ctx.db.session() as session, session.begin():
            session.add(died_holding(held_row(bot.ctx, incident_id=incident_id, kind=kind)))

    bot.run(died())
