"""Reading reminders back: the rows in the store and the posts that reached the fake Slack."""

from __future__ import annotations

import json

from sqlalchemy import select

from bot.slack.posts import PostTag
from store.models import Reminder


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
