"""Socket Mode's first step, `apps.connections.open`, asked once by sitrep itself.

slack_sdk's client retries a refused `apps.connections.open` forever, so a wrong or revoked
app-level token would leave the bot running, connected to nothing, logging a traceback every
ten seconds. Asking once before connecting turns Slack's refusal into one clear line; the URL
it hands out is the one the client then connects to, so Slack is not asked twice (the method
is rate-limited to Tier 1).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.inbound.answered import Track, answering

log = logging.getLogger(__name__)


class SocketModeRefused(Exception):
    """Slack said no to the app-level token; says why in Slack's words, never with the token."""

    def __init__(self, error: str, status: int = 200):
        self.error = error
        self.status = status
        super().__init__(
            f"Slack refused SLACK_APP_TOKEN for Socket Mode ({error}); "
            "expected an app-level token with the connections:write scope"
        )

    @property
    def lasting(self) -> bool:
        """A refusal of the token itself, not Slack having a bad moment."""
        return self.status < 500 and self.error != "ratelimited"


async def open_connection_url(client: AsyncWebClient, app_token: str) -> str:
    """A fresh websocket URL for this app; `SocketModeRefused` if Slack says no."""
    try:
        answer = await client.apps_connections_open(app_token=app_token)
    except SlackApiError as exc:
        error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
        raise SocketModeRefused(str(error or f"HTTP {exc.response.status_code}"), exc.response.status_code) from None
    return str(answer["url"])


async def first_connection_url(client: AsyncWebClient, app_token: str) -> str | None:
    """The URL to connect to first, or None when Slack did not answer or had a bad moment: then
    slack_sdk's client asks again on its own. A refused token is raised: retrying cannot fix it."""
    try:
        return await open_connection_url(client, app_token)
    except SocketModeRefused as exc:
        if exc.lasting:
            raise
        log.warning("apps.connections.open failed (%s); retrying", exc.error)
    except (TimeoutError, aiohttp.ClientError) as exc:
        log.warning("Slack did not answer apps.connections.open (%s); retrying", type(exc).__name__)
    return None


#: The `disconnect` reason Slack sends when Socket Mode was turned off for the app: no new
#: connection will be accepted, so reconnecting (what slack_sdk does on every disconnect)
#: would retry forever.
# assumption: the shared Slack documents do not list disconnect reasons; `link_disabled` is
# the one Slack's Socket Mode page names for this.
LINK_DISABLED = "link_disabled"


class SocketModeDisabled(Exception):
    """Slack turned Socket Mode off for the app: `sitrep run` stops with this line (exit 1)."""

    def __init__(self) -> None:
        super().__init__(
            f"Slack disconnected Socket Mode ({LINK_DISABLED}): Socket Mode is off for this app. Turn it on in the "
            "app's settings (Socket Mode), or unset SLACK_APP_TOKEN to serve HTTP"
        )


def stop_on_link_disabled(client, disabled: Callable[[], None]) -> None:
    """Make slack_sdk's Socket Mode client call `disabled` on a `link_disabled` disconnect
    instead of asking for a new connection. slack_sdk reconnects on every `disconnect`
    whatever its reason, and offers no hook before it: its message dispatch is wrapped."""
    dispatch = client.run_message_listeners

    async def run_message_listeners(message: dict, raw_message: str) -> None:
        if message.get("type") == "disconnect" and message.get("reason") == LINK_DISABLED:
            log.error("Slack disconnected Socket Mode (%s); stopping", LINK_DISABLED)
            disabled()
            return
        await dispatch(message, raw_message)

    client.run_message_listeners = run_message_listeners


def answer_each_envelope(handler, track: Track | None = None) -> None:
    """Serve each envelope Bolt's Socket Mode handler takes under `answering()`, as over
    HTTP (answered.py): the ack goes back over the websocket as the listener acks, its work
    after a bare ack waits until it went, and `track` (the drain) is told of the listener's
    task. Bolt's handler registers its `handle` with the client; it is wrapped there."""
    listeners = handler.client.socket_mode_request_listeners
    handle = handler.handle

    async def handle_answering(client, req) -> None:
        with answering(track):
            await handle(client, req)

    listeners[listeners.index(handle)] = handle_answering
