"""An incident channel's canvas on Slack's side: find it, create it, replace its text
(conversations.info, conversations.canvases.create, canvases.edit).

Only this module and `bot/slack/rooms.py` call methods whose scope only
`manifest.channels.yml` asks for (here `canvases:write`; tests/test_manifest.py holds the
manifests to that): a canvas is made only in an incident's own channel. Every call is paced
through the outbox (conversations.canvases.create is Tier 2, canvases.edit Tier 3); a claimed
write is sent only while its guard says the claim is still ours. Slack refusing is raised as
`SlackApiError` for the service to judge (`PERMANENT` says which refusals a retry cannot help)."""

from __future__ import annotations

from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.channel import Guard, fence
from bot.slack.outbox import Outbox

#: The scope a bot token needs to create and edit canvases (conversations.canvases.create's
#: document; canvases.edit's page).
CANVAS_SCOPE = "canvases:write"
#: "Channel canvas for the specified channel already exists": a channel holds one.
ALREADY_EXISTS = "channel_canvas_already_exists"
#: Refusals no retry can help: the scope, the workspace's plan or settings, a channel gone or
#: closed to the bot, a canvas deleted, content Slack will not take.
PERMANENT = frozenset(
    {
        "missing_scope",
        "not_allowed_token_type",
        "restricted_action",
        "canvas_disabled_user_team",
        "team_tier_cannot_create_channel_canvases",
        "free_team_canvas_tab_already_exists",
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "channel_canvas_creation_failed",
        "canvas_creation_failed",
        "canvas_not_found",
        "canvas_editing_failed",
        "invalid_arguments",
    }
)


def markdown_content(markdown: str) -> dict:
    """`document_content` as both methods take it."""
    return {"type": "markdown", "markdown": markdown}


class Canvases:
    def __init__(self, sender: AsyncWebClient, outbox: Outbox):
        self.sender, self.outbox = sender, outbox

    async def find(self, channel: str) -> str | None:
        """The channel's canvas ID, or None when it has none. conversations.canvases.create's
        page: "You can find the ID of the canvas in the channel.properties.canvas section in
        the response of a conversations.info request" (its `file_id`)."""
        answer = await self.outbox.call(
            "conversations.info", lambda: self.sender.conversations_info(channel=channel), channel=channel
        )
        canvas = ((answer.get("channel") or {}).get("properties") or {}).get("canvas") or {}
        return canvas.get("file_id") or None

    async def create(self, channel: str, title: str, markdown: str, *, guard: Guard | None = None) -> str:
        """Give the channel its canvas (`ALREADY_EXISTS` when it has one): its ID."""

        async def create() -> dict:
            await fence(guard)
            return await self.sender.conversations_canvases_create(
                channel_id=channel, title=title, document_content=markdown_content(markdown)
            )

        answer = await self.outbox.call("conversations.canvases.create", create, channel=channel)
        return answer["canvas_id"]

    async def replace(self, canvas_id: str, markdown: str, *, guard: Guard | None = None) -> None:
        """Replace the whole canvas's text (the same call twice leaves the same canvas)."""

        async def edit() -> dict:
            await fence(guard)
            return await self.sender.canvases_edit(
                canvas_id=canvas_id, changes=[{"operation": "replace", "document_content": markdown_content(markdown)}]
            )

        await self.outbox.call("canvases.edit", edit)
