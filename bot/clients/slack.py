"""The Slack Web API client, configured once: base URL, timeout, retries."""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.messages.sandbox import answer_in_sandbox
from bot.settings import Settings

log = logging.getLogger(__name__)


def make_slack_client(settings: Settings, *, timeout: int = 10) -> AsyncWebClient:
    """Honour a 429's `Retry-After` (off by default in slack_sdk). No automatic retry on a
    dropped connection: Slack may have taken the message already, and a reminder must not
    be posted twice; the reminder's stale-claim path looks in the thread and retries."""
    return AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url,
        timeout=timeout,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=3)],
    )


async def tell_user(
    client: AsyncWebClient,
    *,
    user_id: str,
    channel_id: str | None,
    text: str,
    blocks: list[dict] | None = None,
    sandbox: bool = False,
) -> None:
    """Answer one person: ephemeral where they were, or a DM when the bot can't post there.
    In the sandbox (`sandbox`) the answer says so."""
    if sandbox:
        text, blocks = answer_in_sandbox(text, blocks)
    if channel_id:
        try:
            await client.chat_postEphemeral(channel=channel_id, user=user_id, text=text, blocks=blocks)
            return
        except SlackApiError as exc:
            log.info("ephemeral answer failed (%s); sending a DM instead", slack_error(exc))
    await client.chat_postMessage(channel=user_id, text=text, blocks=blocks)


#: What `slack_error` says for an answer with no error code to read: not JSON (a proxy's
#: page, a body cut off) or JSON without `ok` and `error`.
UNREADABLE_ANSWER = "unreadable_answer"


def slack_error(exc: SlackApiError) -> str:
    """Slack's error code (`channel_not_found`), never the request. slack_sdk hands over the
    raw HTTP response, not Slack's answer, when the body was not JSON."""
    if exc.response is None:
        return "unknown"
    answer = getattr(exc.response, "data", None)
    error = answer.get("error") if isinstance(answer, dict) else None
    return error if isinstance(error, str) and error else UNREADABLE_ANSWER
