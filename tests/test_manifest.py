"""`manifest.yml` is what a user pastes into Slack: it must be a valid v1 manifest, every slash
command in it must reach a listener, and its bot scopes must be exactly what the code calls."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import jsonschema
import pytest
import yaml

from bot.slack.canvases import CANVAS_SCOPE
from bot.slack.manifest import PLACEHOLDER_URL, build_manifest, required_scopes
from bot.slack.rooms import SCOPE_PRIVATE, SCOPE_PUBLIC
from tests.support.fakes.slack_api import EXTRA_METHOD_DOCS, EXTRA_METHOD_SCOPES, default_shared_dir
from tests.support.manifests import WITH_CHANNELS, load_manifest
from tests.support.process import sitrep

REPO = Path(__file__).resolve().parents[1]
SOURCE_PACKAGES = ("bot", "handlers", "scheduler", "store")
EVENTS_PATH = "/slack/events"

# Where a method's bot scope depends on the conversation type (conversations.replies wants
# channels:history, groups:history, im:history or mpim:history), the kinds sitrep needs:
# it only reads SITREP_CHANNEL, a public (C…) or private (G…/C…) channel, never DMs.
CONVERSATION_KINDS = ("channels", "groups")

# Sub-commands of SPEC's "Commands", which each usage hint must mention.
SUBCOMMANDS = {
    "/incident": ("declare", "update", "resolve", "list", "help"),
    "/maintenance": ("schedule", "list", "status", "edit", "cancel", "help"),
}


@cache
def shared_dir() -> Path:
    path = default_shared_dir()  # repo_root.parent / "shared", or $SITREP_SHARED_DIR
    assert (path / "slack").is_dir(), f"Slack's documents are not at {path / 'slack'} (set SITREP_SHARED_DIR)"
    return path


@cache
def manifest() -> dict:
    return yaml.safe_load((REPO / "manifest.yml").read_text(encoding="utf-8"))


@cache
def method_docs() -> dict[str, dict]:
    docs = {}
    for path in sorted((shared_dir() / "slack" / "docs_slack_dev_methods").glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(doc, dict) and "args" in doc:
            docs[path.stem] = doc
    assert docs, "no Slack method documents found"
    # Methods the shared documents lack, described in the fake from Slack's pages.
    for method, scopes in EXTRA_METHOD_SCOPES.items():
        docs.setdefault(method, {"args": EXTRA_METHOD_DOCS[method], "scope": {"bot": sorted(scopes)}})
    return docs


# The modules that open, join and archive an incident's own channel and write its canvas:
# their calls' scopes are asked for only by manifest.channels.yml (SITREP_INCIDENT_CHANNELS=on).
ROOMS_MODULES = (REPO / "bot" / "slack" / "rooms.py", REPO / "bot" / "slack" / "canvases.py")
ROOM_METHODS = {"conversations.create", "conversations.invite", "conversations.archive"}
#: The canvas's methods (conversations.info, which finds it, needs the base manifest's channels:read).
CANVAS_METHODS = {"conversations.canvases.create", "canvases.edit", "conversations.info"}


def source_text(*, rooms: bool = False) -> str:
    """The product's source; without the room modules unless `rooms`."""
    files = [p for pkg in SOURCE_PACKAGES for p in sorted((REPO / pkg).rglob("*.py")) if rooms or p not in ROOMS_MODULES]
    assert files
    return "\n".join(p.read_text(encoding="utf-8") for p in files)


def manifest_commands() -> dict[str, dict]:
    return {c["command"]: c for c in manifest()["features"]["slash_commands"]}


def bot_scopes() -> list[str]:
    return manifest()["oauth_config"]["scopes"]["bot"]


# --- the manifest itself ---------------------------------------------------------------------


def test_manifest_is_valid_against_slacks_v1_schema():
    schema = json.loads((shared_dir() / "slack" / "slack_app_manifest.schema.1.0.0.json").read_text(encoding="utf-8"))
    jsonschema.validate(manifest(), schema)
    assert "_metadata" not in manifest(), "a v1 manifest has no _metadata"


def test_manifest_is_ready_to_paste_for_http_mode():
    m = manifest()
    assert m["display_information"]["name"] == "sitrep"
    assert m["display_information"].get("description")
    assert m["features"]["bot_user"]["display_name"]
    settings = m["settings"]
    assert settings["socket_mode_enabled"] is False
    assert settings["org_deploy_enabled"] is False
    assert settings["token_rotation_enabled"] is False
    # The schema does not catch interactivity without a request URL in HTTP mode.
    assert settings["interactivity"]["is_enabled"] is True
    interactivity = settings["interactivity"]
    # The incident picker is an external_select: without an options URL Slack has nowhere to ask.
    assert interactivity.get("message_menu_options_url"), "external selects need settings.interactivity.message_menu_options_url"
    urls = {interactivity.get("request_url"), interactivity.get("message_menu_options_url")}
    urls |= {c.get("url") for c in manifest_commands().values()}
    urls.add(settings["event_subscriptions"]["request_url"])  # events come to the same endpoint
    assert len(urls) == 1, f"every Slack request goes to the one endpoint, got {urls}"
    (url,) = urls
    assert url and url.startswith("https://") and url.endswith(EVENTS_PATH)
    assert not settings["event_subscriptions"].get("user_events"), "sitrep listens to no user events"
    assert not m["oauth_config"]["scopes"].get("user"), "sitrep acts as its bot user only"


def test_the_ready_to_paste_text_counts_its_urls_right():
    """The comments tell the person how many URLs to replace (or delete for Socket Mode)."""
    text = (REPO / "manifest.yml").read_text(encoding="utf-8")
    count = text.count("https://your-host.example.com/slack/events")
    words = {4: "four", 5: "five", 6: "six"}
    assert f"; {words[count]} places" in text and f"delete the {words[count]} `url:`" in text


def test_manifest_explains_socket_mode():
    text = (REPO / "manifest.yml").read_text(encoding="utf-8")
    comments = " ".join(line.strip() for line in text.splitlines() if line.strip().startswith("#"))
    for needle in ("socket_mode_enabled", "connections:write", "SLACK_APP_TOKEN"):
        assert needle in comments, f"the Socket Mode comment should mention {needle}"


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_slash_command_has_description_and_usage_hint(command):
    entry = manifest_commands().get(command)
    assert entry is not None, f"{command} is missing from the manifest"
    assert entry["description"]
    for sub in SUBCOMMANDS[command]:
        assert sub in entry["usage_hint"], f"{command}'s usage hint does not mention {sub}"


# --- every command reaches a listener, every listener is reachable -----------------------------


class _Recorder:
    """Stands in for the Bolt app during `handlers.register`, noting what is registered."""

    def __init__(self) -> None:
        self.registered: list[tuple[str, object]] = []

    def __getattr__(self, kind: str):
        def register(constraint=None, *args, **kwargs):
            self.registered.append((kind, constraint))
            return lambda fn: fn

        return register

    def of(self, kind: str) -> set[str]:
        return {str(c) for k, c in self.registered if k == kind}


@pytest.fixture
def registered(settings) -> _Recorder:
    import handlers
    from bot.app import build_bolt_app
    from bot.context import build_context

    ctx = build_context(settings)
    recorder = _Recorder()
    handlers.register(recorder, ctx)
    # The recorder saw what the real app gets: same number of listeners.
    assert len(build_bolt_app(build_context(settings))._async_listeners) == len(recorder.registered)
    assert {k for k, _ in recorder.registered} <= {"command", "view", "action", "options", "shortcut", "event"}, (
        recorder.registered
    )
    return recorder


def manifest_shortcuts() -> dict[str, dict]:
    return {s["callback_id"]: s for s in manifest()["features"].get("shortcuts") or []}


def test_registered_shortcuts_are_exactly_the_manifests(registered):
    assert registered.of("shortcut") == set(manifest_shortcuts())
    for shortcut in manifest_shortcuts().values():
        # Message shortcuts only: a global one has no message (and no channel) to act on.
        assert shortcut["type"] == "message" and shortcut["name"] and shortcut["description"]


def test_subscribed_events_are_exactly_the_ones_listened_to(registered):
    assert registered.of("event") == set(manifest()["settings"]["event_subscriptions"]["bot_events"])


def test_the_home_tab_is_enabled_because_the_bot_publishes_it(registered):
    """views.publish answers `not_enabled` for an app whose Home tab is off."""
    assert "views.publish" in called_methods() and "app_home_opened" in registered.of("event")
    app_home = manifest()["features"]["app_home"]
    assert app_home["home_tab_enabled"] is True
    # Its Messages tab carries the bot's private answers (the DM fallback); the bot reads no DMs.
    assert app_home["messages_tab_enabled"] is True and app_home["messages_tab_read_only_enabled"] is True


def test_registered_commands_are_exactly_the_manifests(registered):
    assert registered.of("command") == set(manifest_commands())


def test_every_manifest_command_is_answered(bot):
    for command in manifest_commands():
        response = bot.command("help", command=command)
        assert response.status_code == 200, f"{command} help → {response.status_code} {response.text}"
        assert "unhandled" not in response.text.lower()
        assert response.text, f"{command} help answered nothing"


def test_every_view_callback_action_and_options_listener_is_dispatched(bot, registered):
    """Interactivity and options loads reach the same URL; Bolt answers 404 for a payload
    nobody listens to."""
    assert registered.of("view") and registered.of("action") and registered.of("options")
    for callback_id in sorted(registered.of("view")):
        response = bot.submit({"callback_id": callback_id}, {})
        assert response.status_code == 200, f"view {callback_id} → {response.status_code} {response.text}"
    for action_id in sorted(registered.of("action")):
        response = bot.click(action_id, "0")
        assert response.status_code == 200, f"action {action_id} → {response.status_code} {response.text}"
    assert bot.click("no_such_action", "0").status_code == 404  # the check above can fail
    for action_id in sorted(registered.of("options")):
        response = bot.suggest({"callback_id": "any"}, block_id="b", action_id=action_id)
        assert response.status_code == 200, f"options {action_id} → {response.status_code} {response.text}"
        assert "options" in response.json()
    assert bot.suggest({"callback_id": "any"}, block_id="b", action_id="no_such_menu").status_code == 404
    for callback_id in sorted(registered.of("shortcut")):
        response = bot.message_shortcut(callback_id, "text", message_ts="1.0")
        assert response.status_code == 200, f"shortcut {callback_id} → {response.status_code} {response.text}"
    assert bot.message_shortcut("no_such_shortcut", "text", message_ts="1.0").status_code == 404
    for event in sorted(registered.of("event")):
        response = bot.event({"type": event, "user": "U123", "tab": "messages", "channel": "D1", "event_ts": "1.0"})
        assert response.status_code == 200, f"event {event} → {response.status_code} {response.text}"


# --- scopes: exactly what the code calls --------------------------------------------------------

_SDK_CALL = re.compile(
    r"\.((?:auth|chat|conversations|canvases|views|users|reactions|pins|files|usergroups|team|bots|dnd)_\w+)\("
)
_API_CALL = re.compile(r"api_call\(\s*[\"']([\w.]+)[\"']")


def called_methods(*, rooms: bool = False) -> set[str]:
    """Slack methods the code calls: `client.chat_postMessage(` → chat.postMessage."""
    text = source_text(rooms=rooms)
    found = {name.replace("_", ".") for name in _SDK_CALL.findall(text)} | set(_API_CALL.findall(text))
    return found


def scopes_for(method: str) -> set[str]:
    doc = method_docs()[method]
    bot = list((doc.get("scope") or {}).get("bot") or [])
    if doc.get("no_scope_required") or not bot:
        return set()
    if len(bot) == 1:
        return set(bot)
    # Alternatives by conversation type: keep the kinds sitrep talks in.
    chosen = {s for s in bot if s.split(":", 1)[0] in CONVERSATION_KINDS}
    assert chosen, f"{method} needs one of {bot}; none fits {CONVERSATION_KINDS}"
    return chosen


#: The scope each subscribed event needs. Slack's event pages are not in ../shared/slack/;
#: this is from https://docs.slack.dev/reference/scopes/reactions.read ("Compatible events:
#: reaction_added, reaction_removed"); app_home_opened needs none.
EVENT_SCOPES = {"app_home_opened": None, "reaction_added": "reactions:read", "reaction_removed": "reactions:read"}


def needed_scopes() -> dict[str, set[str]]:
    """scope → the methods (or features, or events) that need it."""
    needs: dict[str, set[str]] = {}
    if manifest()["features"].get("slash_commands"):
        needs["commands"] = {"slash commands"}
    for event in manifest()["settings"]["event_subscriptions"]["bot_events"]:
        if EVENT_SCOPES[event]:
            needs.setdefault(EVENT_SCOPES[event], set()).add(f"event {event}")
    for method in called_methods():
        for scope in scopes_for(method):
            needs.setdefault(scope, set()).add(method)
    return needs


def test_the_scan_finds_the_calls_we_know_about():
    methods = called_methods()
    assert {"auth.test", "chat.postMessage", "views.open", "conversations.replies"} <= methods, methods


def test_every_called_method_is_a_documented_slack_method():
    unknown = sorted(called_methods() - set(method_docs()))
    assert not unknown, f"not in Slack's method documents: {unknown}"


def test_scopes_cover_every_call():
    missing = {scope: sorted(methods) for scope, methods in needed_scopes().items() if scope not in bot_scopes()}
    assert not missing, f"manifest.yml lacks bot scopes the code needs: {missing}"


def test_no_scope_is_requested_without_a_call_needing_it():
    extra = sorted(set(bot_scopes()) - set(needed_scopes()))
    assert not extra, f"manifest.yml asks for scopes nothing uses: {extra}"
    assert len(bot_scopes()) == len(set(bot_scopes())), "a scope is listed twice"


# --- manifest.channels.yml: the same app, plus what a channel per incident calls -----------------


def test_only_the_room_modules_call_the_channel_and_canvas_methods():
    assert called_methods(rooms=True) - called_methods() == ROOM_METHODS | CANVAS_METHODS
    assert not ROOM_METHODS & called_methods(), "conversations.create/invite/archive belong in bot/slack/rooms.py"
    assert not CANVAS_METHODS & called_methods(), "the canvas's calls belong in bot/slack/canvases.py"


def test_the_channels_manifest_covers_every_call_of_the_room_modules():
    """Every scope the room modules' calls need is in manifest.channels.yml (with a room
    scope for the channel methods, whose scope depends on the kind of channel)."""
    scopes = set(load_manifest(WITH_CHANNELS)["oauth_config"]["scopes"]["bot"])
    for method in (called_methods(rooms=True) - called_methods()) - ROOM_METHODS:
        assert scopes_for(method) <= scopes, f"{method} needs {scopes_for(method) - scopes}"
    assert scopes_for("conversations.canvases.create") == {CANVAS_SCOPE}  # from Slack's own document
    assert scopes_for("canvases.edit") == {CANVAS_SCOPE}  # described in the fake from Slack's page


@pytest.mark.parametrize("scope", [SCOPE_PUBLIC, SCOPE_PRIVATE])
def test_the_room_scopes_are_documented_for_every_room_call(scope):
    for method in ROOM_METHODS:
        assert scope in method_docs()[method]["scope"]["bot"], f"{method} does not list {scope}"


def test_channels_manifest_is_the_base_one_plus_the_room_scopes():
    variant = load_manifest(WITH_CHANNELS)
    schema = json.loads((shared_dir() / "slack" / "slack_app_manifest.schema.1.0.0.json").read_text(encoding="utf-8"))
    jsonschema.validate(variant, schema)
    scopes = variant["oauth_config"]["scopes"]["bot"]
    assert scopes == bot_scopes() + [SCOPE_PUBLIC, SCOPE_PRIVATE, CANVAS_SCOPE]
    assert CANVAS_SCOPE not in bot_scopes(), "canvases:write is asked for only with incident channels"
    # Everything else is manifest.yml's: a change there must be made here too.
    same = json.loads(json.dumps(variant))
    same["oauth_config"]["scopes"]["bot"] = bot_scopes()
    assert same == manifest(), "manifest.channels.yml must be manifest.yml plus the room and canvas scopes"
    comments = (REPO / WITH_CHANNELS).read_text(encoding="utf-8")
    for needle in ("SITREP_INCIDENT_CHANNELS", SCOPE_PUBLIC, SCOPE_PRIVATE, "SITREP_INCIDENT_CHANNEL_PRIVATE", CANVAS_SCOPE):
        assert needle in comments


# --- `sitrep manifest`: one source for every manifest -------------------------------------------


def schema() -> dict:
    return json.loads((shared_dir() / "slack" / "slack_app_manifest.schema.1.0.0.json").read_text(encoding="utf-8"))


def test_manifest_yml_is_what_the_code_builds():
    """The committed files are the generated ones (with comments for the reader)."""
    assert build_manifest(url=PLACEHOLDER_URL) == manifest()
    assert build_manifest(url=PLACEHOLDER_URL, incident_channels=True) == load_manifest(WITH_CHANNELS)


def test_required_scopes_are_the_manifests():
    assert set(required_scopes()) == set(bot_scopes())
    assert set(required_scopes(incident_channels=True)) == set(bot_scopes()) | {SCOPE_PUBLIC}
    assert set(required_scopes(incident_channels=True, private_rooms=True)) == set(bot_scopes()) | {SCOPE_PRIVATE}


@pytest.mark.parametrize("channels", [False, True])
def test_sitrep_manifest_prints_a_ready_socket_mode_manifest(channels, base_env, tmp_path):
    args = ["manifest", "--socket-mode"] + (["--incident-channels"] if channels else [])
    done = sitrep(*args, env=base_env, cwd=tmp_path)  # no setting needed: there is no app yet
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    jsonschema.validate(printed, schema())
    assert printed["settings"]["socket_mode_enabled"] is True
    # No URL anywhere: Socket Mode needs no public address, and none is left to replace.
    assert "http" not in json.dumps(printed["features"]) + json.dumps(printed["settings"])
    assert printed["oauth_config"]["scopes"]["bot"] == bot_scopes() + (
        [SCOPE_PUBLIC, SCOPE_PRIVATE, CANVAS_SCOPE] if channels else []
    )
    # Everything else is the HTTP one's (commands, shortcut, events, home tab).
    assert printed["features"]["shortcuts"] == manifest()["features"]["shortcuts"]
    assert [c["command"] for c in printed["features"]["slash_commands"]] == list(manifest_commands())
    assert printed["settings"]["event_subscriptions"]["bot_events"] == manifest()["settings"]["event_subscriptions"]["bot_events"]
    assert "connections:write" in done.stderr and "SLACK_APP_TOKEN" in done.stderr


def test_sitrep_manifest_with_a_url_points_every_request_there(base_env, tmp_path):
    done = sitrep("manifest", "--url", "https://sitrep.example.org/", env=base_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    jsonschema.validate(printed, schema())
    expected = json.loads(json.dumps(manifest()).replace(PLACEHOLDER_URL, "https://sitrep.example.org"))
    assert printed == expected


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["manifest"], "--socket-mode"),
        (["manifest", "--url", "http://plain.example.org"], "https://"),
        (["manifest", "--socket-mode", "--url", "https://x.example.org"], "not allowed with"),
    ],
)
def test_sitrep_manifest_refuses_what_cannot_work(args, says, base_env, tmp_path):
    done = sitrep(*args, env=base_env, cwd=tmp_path)
    assert done.returncode == 2 and says in done.stderr and done.stdout == ""
