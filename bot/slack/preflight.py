"""What sitrep asks Slack before it serves (and `sitrep check`, and `/readyz`): is the bot token
one Slack takes, does it carry the scopes the enabled features need, and can the bot read and
post in SITREP_CHANNEL. Each answer is one line for the operator, never the token."""

from __future__ import annotations

from dataclasses import dataclass

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.clients.slack import slack_error

#: auth.test's answers for a token Slack will never take (a placeholder, a revoked token, a
#: deactivated bot): retrying cannot help, so `sitrep run` stops.
REFUSED_TOKEN = frozenset({"invalid_auth", "token_revoked", "account_inactive", "not_authed"})
#: conversations.history's answers for a channel the bot is not in (a private one it is not
#: in is hidden from it: channel_not_found).
NOT_IN_CHANNEL = frozenset({"not_in_channel", "channel_not_found"})

INVITE = "invite the bot: `/invite @sitrep` in that channel"


class BotTokenRefused(Exception):
    """Slack refused SLACK_BOT_TOKEN itself: `sitrep run` stops with this line (exit 1)."""

    def __init__(self, error: str):
        self.error = error
        super().__init__(
            f"Slack refused SLACK_BOT_TOKEN ({error}): copy the Bot User OAuth Token (xoxb-…) from the app's "
            "OAuth & Permissions page after installing the app to the workspace"
        )


class ScopesMissing(Exception):
    """The token lacks scopes the enabled features need: `sitrep run` stops (exit 1)."""

    def __init__(self, missing: list[str]):
        self.missing = missing
        super().__init__(
            f"SLACK_BOT_TOKEN lacks the scope{'s' if len(missing) > 1 else ''} {', '.join(missing)} that sitrep "
            "needs: add them under OAuth & Permissions (or create the app from `sitrep manifest`) and reinstall the app"
        )


@dataclass(frozen=True)
class ChannelState:
    """Whether the bot can read and post in the channel; `problem` says why not, in one line."""

    channel: str
    problem: str | None = None
    missing_scopes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class Token:
    """auth.test's answer, and the scopes Slack says the token carries (`None`: not said)."""

    answer: dict
    scopes: frozenset[str] | None


#: The header in which Slack names a token's scopes on every Web API answer. assumption: the
#: shared method documents do not list response headers; Slack's OAuth pages and its SDKs
#: (Node's `response_metadata.scopes`) read it from `X-OAuth-Scopes`, comma-separated.
SCOPES_HEADER = "x-oauth-scopes"


def granted_scopes(headers) -> frozenset[str] | None:
    """The scopes named in an answer's `X-OAuth-Scopes` header (any case), or None."""
    value = next((v for k, v in dict(headers or {}).items() if str(k).lower() == SCOPES_HEADER), None)
    if value is None:
        return None
    return frozenset(s.strip() for s in str(value).split(",") if s.strip())


async def check_token(slack: AsyncWebClient) -> Token:
    """auth.test's answer and the token's scopes; `BotTokenRefused` for a token Slack will
    never take. Any other failure (Slack unreachable, a bad moment) is raised as it came."""
    try:
        response = await slack.auth_test()
    except SlackApiError as exc:
        error = slack_error(exc)
        if error in REFUSED_TOKEN:
            raise BotTokenRefused(error) from None
        raise
    return Token(response.data if isinstance(response.data, dict) else {}, granted_scopes(response.headers))


async def check_channel(
    slack: AsyncWebClient, channel: str, needed_scopes: tuple[str, ...], granted: frozenset[str] | None = None
) -> ChannelState:
    """Read the newest message of `channel` (`conversations.history`, limit 1), which needs
    the bot in the channel and a history scope, as posting and reminders do.

    Every scope of `needed_scopes` the token lacks is named: from `granted` (the scopes
    auth.test's answer named) before anything is read, so a token that may read the channel
    but not post in it is caught too; else from a `missing_scope` answer, which lists the
    token's scopes (`provided`, as Slack documents it)."""
    if granted is not None:
        missing = tuple(s for s in needed_scopes if s not in granted)
        if missing:
            return ChannelState(channel, str(ScopesMissing(list(missing))), missing)
    try:
        await slack.conversations_history(channel=channel, limit=1)
    except SlackApiError as exc:
        error = slack_error(exc)
        if error == "missing_scope":
            answer = exc.response.data if isinstance(exc.response.data, dict) else {}
            provided = {s.strip() for s in str(answer.get("provided") or "").split(",") if s.strip()}
            missing = tuple(s for s in needed_scopes if s not in provided) or (str(answer.get("needed") or "?"),)
            return ChannelState(channel, str(ScopesMissing(list(missing))), missing)
        if error in NOT_IN_CHANNEL:
            return ChannelState(channel, f"the bot is not in SITREP_CHANNEL {channel} ({error}): {INVITE}")
        return ChannelState(channel, f"Slack refused reading SITREP_CHANNEL {channel} ({error})")
    return ChannelState(channel)
