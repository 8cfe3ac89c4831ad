"""Resolve and cancel notices, posted exactly once even when the process dies between the
state write and the post. The notice is a `Reminder` row (kind `resolved` of an incident,
`cancelled` of a window) written in the same transaction as the resolution or cancellation, so the post is never lost with the process: the resolver
claims it and posts at once; a claim left by a process now gone is taken over by the
scheduler (the recovery pass makes such claims stale), which first looks in the thread for
the tagged post that may have reached Slack. The row is written with `posts.held_row`; the
post is the engine's (`bot.slack.posts`)."""

from __future__ import annotations

from bot.context import AppContext
from bot.slack import posts
from bot.slack.channel import Message, Posted
from bot.slack.posts import Post, PostTag, RowClaim
from store.reminders import Claim


def notice_tag(*, kind: str, incident_id: int | None = None, window_id: int | None = None) -> dict:
    """The metadata key that finds this notice in the thread again."""
    owner = {"incident_id": incident_id} if incident_id is not None else {"window_id": window_id}
    return owner | {"kind": str(kind)}


async def post_notice(ctx: AppContext, reminder_id: int, claim: Claim, at: Posted, message: Message, tag: dict) -> str | None:
    """Post the claimed notice in the thread (broadcast) through the engine; its ts, or None
    when the claim was taken over before the post."""
    post = Post(PostTag.NOTICE, tag, message, thread=at, broadcast=True)
    return (await posts.post_once(ctx, post, RowClaim(ctx, reminder_id, claim))).ts
