"""The Slack Web API client, configured once: base URL, timeout, retries."""

from __future__ import annotations

import logging

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.messages.sandbox import answer_in_sandbox
from bot.settings import Settings

log = logging.getLogger(__name__)


#: How long a Slack Web API call may take before it counts as not answered.
SLACK_TIMEOUT_SECONDS = 10.0


def make_slack_client(settings: Settings, *, timeout: float = SLACK_TIMEOUT_SECONDS) -> AsyncWebClient:
    """Honour a 429's `Retry-After` (off by default in slack_sdk). No automatic retry on a
    dropped connection: Slack may have taken the message already, and a reminder must not
    be posted twice; the reminder's stale-claim path looks in the thread and retries."""
    return AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url,
        timeout=timeout,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=3)],
    )


#: How long an idle connection to Slack is kept for the next call. An assumption, not a
#: documented fact: Slack's edge keeps an idle connection open longer than this, so the
#: client, not the server, closes it and a call never goes out on a connection being closed.
SLACK_KEEPALIVE_SECONDS = 15.0


class SlackConnections:
    """One pool of keep-alive connections to Slack for every Web API client of the process.
    slack_sdk opens a new session, so a new TCP (and TLS) connection, for each call made by a
    client given none; under fifty commands at once that is most of what a `views.open`
    costs. Opened in the running loop at start-up (aiohttp binds a session to its loop; the
    context is built with no loop and no network) and closed at shutdown, after which the
    clients go back to a session per call."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._clients: list[AsyncWebClient] = []

    @property
    def session(self) -> aiohttp.ClientSession | None:
        return self._session

    async def open(self, clients: list[AsyncWebClient]) -> None:
        """Share one session between `clients`, whose timeout it takes (slack_sdk's per-call
        timeout applies only to the sessions it opens itself)."""
        if self._session is None or self._session.closed:
            timeout = max(client.timeout for client in clients)
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=timeout),
                connector=aiohttp.TCPConnector(keepalive_timeout=SLACK_KEEPALIVE_SECONDS),
            )
        for client in clients:
            client.session = self._session
            self._clients.append(client)

    async def close(self) -> None:
        session, self._session = self._session, None
        for client in self._clients:
            client.session = None
        self._clients.clear()
        if session is not None:
            await session.close()


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
