"""The Slack app sitrep needs, as a manifest (v1): the one source of `sitrep manifest`, of the
bot scopes start-up asks the token for, and (through tests/test_manifest.py) of `manifest.yml`
and `manifest.channels.yml`, which a test keeps equal to what this builds."""

from __future__ import annotations

from bot.slack.canvases import CANVAS_SCOPE
from bot.slack.rooms import SCOPE_PRIVATE, SCOPE_PUBLIC

#: Where sitrep answers every Slack request in HTTP mode (bot/app.py).
EVENTS_PATH = "/slack/events"
#: The address the committed manifest.yml carries, for the person to replace.
PLACEHOLDER_URL = "https://your-host.example.com"

#: Exactly what the code calls (tests/test_manifest.py scans for it): the slash commands,
#: chat.postMessage/update/postEphemeral, conversations.replies/history in a public or a
#: private SITREP_CHANNEL, conversations.members (the home tab shows a person the incidents
#: of channels they are in) and users.info (a recurring window's time zone).
#: reactions:read: the reaction_added / reaction_removed events (a :pushpin: adds a message
#: to an incident's timeline).
BOT_SCOPES = (
    "commands",
    "chat:write",
    "channels:history",
    "groups:history",
    "channels:read",
    "groups:read",
    "users:read",
    "reactions:read",
    "files:write",
)
#: A channel per incident (bot/slack/rooms.py): public ones, and private ones; and its canvas
#: (bot/slack/canvases.py: the postmortem draft). Only `manifest.channels.yml` asks for these.
ROOM_SCOPES = (SCOPE_PUBLIC, SCOPE_PRIVATE, CANVAS_SCOPE)

SLASH_COMMANDS = (
    {
        "command": "/incident",
        "description": "Declare, update, resolve and list incidents on the status page",
        "usage_hint": "[declare [title] | update [ref] | resolve [ref] | lead [ref] @person | timeline [ref] | postmortem [ref] | list | digest | help]",
    },
    {
        "command": "/maintenance",
        "description": "Schedule, list, edit and cancel maintenance windows",
        "usage_hint": "[schedule [title] | list | status | edit <id> | cancel <id> | help]",
    },
)
SHORTCUTS = (
    {
        "name": "Declare incident",
        "type": "message",
        "callback_id": "incident_declare_from_message",
        "description": "Declare an incident from this message (its text becomes the description)",
    },
)
BOT_EVENTS = ("app_home_opened", "reaction_added", "reaction_removed")


class ManifestError(ValueError):
    """A `sitrep manifest` request that cannot make a working app; says what to give instead."""


def required_scopes(*, incident_channels: bool = False, private_rooms: bool = False) -> tuple[str, ...]:
    """The bot scopes the enabled features need: what start-up asks the token for.
    `canvases:write` is not among them: the canvas is the postmortem's second home (the
    thread has the file), so a token without it still runs and the canvas is skipped with a
    warning naming the scope (`bot.services.postmortem`), never a refused start-up for an
    install made before the canvas existed."""
    extra = (SCOPE_PRIVATE if private_rooms else SCOPE_PUBLIC,) if incident_channels else ()
    return BOT_SCOPES + extra


def build_manifest(*, url: str | None = None, socket_mode: bool = False, incident_channels: bool = False) -> dict:
    """A ready manifest: Socket Mode (no public address), or HTTP with every request URL at
    `url` + /slack/events. `incident_channels` adds both room scopes (either setting of
    SITREP_INCIDENT_CHANNEL_PRIVATE then works) and the canvas's."""
    if socket_mode == (url is not None):
        raise ManifestError("give either --socket-mode (no public address needed) or --url https://… (HTTP mode)")
    endpoint = None
    if url is not None:
        if not url.lower().startswith("https://") or len(url) <= len("https://"):
            raise ManifestError("--url must be the public https:// address that reaches `sitrep run`")
        endpoint = url.rstrip("/") + EVENTS_PATH
    commands = [{**c, "should_escape": False} for c in SLASH_COMMANDS]
    if endpoint:
        commands = [{"command": c["command"], "url": endpoint, **c} for c in commands]
    interactivity: dict = {"is_enabled": True}
    events: dict = {"bot_events": list(BOT_EVENTS)}
    if endpoint:
        # message_menu_options_url: the incident picker is a type-ahead (external_select).
        interactivity |= {"request_url": endpoint, "message_menu_options_url": endpoint}
        events = {"request_url": endpoint, **events}
    return {
        "display_information": {
            "name": "sitrep",
            "description": "Declare incidents and schedule maintenance for your status page from Slack.",
            "background_color": "#1d3557",
        },
        "features": {
            "bot_user": {"display_name": "sitrep", "always_online": True},
            "app_home": {"home_tab_enabled": True, "messages_tab_enabled": True, "messages_tab_read_only_enabled": True},
            "shortcuts": [dict(s) for s in SHORTCUTS],
            "slash_commands": commands,
        },
        "oauth_config": {"scopes": {"bot": list(BOT_SCOPES + (ROOM_SCOPES if incident_channels else ()))}},
        "settings": {
            "interactivity": interactivity,
            "event_subscriptions": events,
            "org_deploy_enabled": False,
            "socket_mode_enabled": socket_mode,
            "token_rotation_enabled": False,
        },
    }


def manifest_hint(*, socket_mode: bool) -> str:
    """The line `sitrep manifest` prints beside the manifest (on stderr, so stdout is the
    manifest alone, ready to paste or to save)."""
    then = (
        "then create an app-level token with connections:write (Basic Information) for SLACK_APP_TOKEN"
        if socket_mode
        else "Slack checks the events URL once, so start sitrep there first"
    )
    return f"Paste it at https://api.slack.com/apps -> Create New App -> From an app manifest (JSON); {then}."
