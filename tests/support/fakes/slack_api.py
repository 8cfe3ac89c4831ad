"""A fake Slack Web API served over real HTTP, for tests.

The bot talks to Slack only through ``slack_sdk``'s ``AsyncWebClient``; pointing that
client at this server (``AsyncWebClient(base_url=slack.url)``) exercises the real
request encoding, retries and error handling instead of a mocked method call.

Every call is checked against Slack's own method documents
(``shared/slack/docs_slack_dev_methods/*.json``) and against limits Slack enforces but
``slack_sdk`` does not check for plain dicts, so a test fails on the kind of mistake
that would only show up against the real Slack. Problems are collected in
``violations`` (tests end with ``assert slack.violations == []``, the ``slack`` fixture
does it) and the call is answered with Slack's own error: ``invalid_arguments`` for an
argument Slack does not know or a view it refuses (``views.*``), ``invalid_blocks`` for
message blocks, ``msg_too_long`` for ``chat.update`` text past 4,000 characters,
``view_too_large`` — each with ``response_metadata.messages`` worded like Slack's. The
Block Kit rules live in ``tests/support/slack_limits.py``; ``tests/support/harness.py`` holds the bot's
HTTP answers (slash-command acks, ``response_action`` views, options) to the same rules.

The server runs in its own thread with its own event loop, so it can be used from
sync tests and from async tests alike (it never shares the test's loop).
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
import os
import random
import socket
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from tests.support import slack_limits as limits
from tests.support.fakes.signing import trigger_issued_at

__all__ = ["FakeSlack", "Malformed", "SlackCall", "Tiers", "load_method_docs", "default_shared_dir"]

T = TypeVar("T")

#: How long `wait_for` waits for what a test expects before failing it. Only a failing test ever
#: waits this long (a passing one returns as soon as it sees the event), so it is generous: a
#: loaded machine (pytest-xdist beside other work) must never turn a slow pass into a failure.
WAIT_BOUND = 30.0
Json = dict[str, Any]


class Malformed(Enum):
    """An answer that is not Slack's: what a proxy or a cut connection in front of Slack can
    give (``fail_next(method, malformed=...)``), with HTTP 200 as such pages often have."""

    HTML = ("text/html", "<html><body>Gateway says hello</body></html>")
    TRUNCATED = ("application/json", '{"ok": true, "channel": {"id": "C0')
    NO_OK = ("application/json", '{"warning": "missing_charset"}')

    def __init__(self, content_type: str, body: str):
        self.content_type = content_type
        self.body = body


_Answer = tuple[int, Json | Malformed, dict[str, str]]

#: Arguments Slack takes as JSON-encoded strings in form bodies.
JSON_STRING_ARGS = frozenset(
    {"files", "blocks", "attachments", "view", "metadata", "unfurls", "user_auth_blocks", "chunks", "document_content", "changes"}
)
#: Methods whose ``blocks`` argument is a message's blocks.
MESSAGE_METHODS = frozenset({"chat.postMessage", "chat.postEphemeral", "chat.update", "chat.scheduleMessage"})
VIEW_METHODS = frozenset({"views.open", "views.update", "views.push", "views.publish"})

TEAM_ID = "T1"
TEAM_NAME = "Example"
WORKSPACE_URL = "https://example.slack.com/"
BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
APP_ID = "ABOT"
DEFAULT_TZ = "America/New_York"
_FIRST_TS_SECONDS = 1_700_000_000
#: A trigger_id is "valid for 3 s and once" (../shared/slack/README.md); views.open's document
#: names the two refusals: `expired_trigger_id` and `exchanged_trigger_id`.
TRIGGER_LIFETIME = 3.0

APP_TOKEN = "xapp-1-ABOT-1-test-app-token"
#: Methods that take the app-level token (``xapp-``) and no other.
APP_TOKEN_METHODS = frozenset({"apps.connections.open"})
#: The shared method documents have no ``apps.connections.open``; this is its public reference
#: page (docs.slack.dev/reference/methods/apps.connections.open) in the same shape: POST, one
#: argument, the token, which "you will need to pass ... in the HTTP Authorization header".
EXTRA_METHOD_DOCS: dict[str, Json] = {
    "apps.connections.open": {"type": "object", "required": ["token"], "properties": {"token": {"type": "string"}}},
}
#: The shared documents have no per-method files for the external upload; described from
#: Slack's public pages (docs.slack.dev/reference/methods/files.getUploadURLExternal and
#: /files.completeUploadExternal): getUploadURLExternal requires `filename` and `length`
#: ("Size in bytes of the file being uploaded"), optional `alt_txt`, `snippet_type`;
#: completeUploadExternal requires `files` ("Array of file ids and their corresponding
#: (optional) titles"), optional `channel_id`, `channels`, `thread_ts` ("Never use a reply's
#: ts value; use its parent instead"), `initial_comment`, `blocks`. Both Tier 4, scope
#: `files:write`.
EXTRA_METHOD_DOCS.update(
    {
        "files.getUploadURLExternal": {
            "type": "object",
            "required": ["token", "filename", "length"],
            "properties": {k: {} for k in ("token", "filename", "length", "alt_txt", "snippet_type")},
        },
        "files.completeUploadExternal": {
            "type": "object",
            "required": ["token", "files"],
            "properties": {k: {} for k in ("token", "files", "channel_id", "channels", "thread_ts", "initial_comment", "blocks")},
        },
    }
)
#: The shared documents have conversations.canvases.create (checked like every method, from
#: its own document) but no canvases.edit; described from Slack's page
#: (docs.slack.dev/reference/methods/canvases.edit): requires `canvas_id` ("Encoded ID of the
#: canvas") and `changes` ("List of changes to apply on the specified canvas"), each change an
#: `operation` (insert_after, insert_before, insert_at_start, insert_at_end, replace, delete)
#: with `document_content` ("it works the same" as in canvases.create) and, for some, a
#: `section_id`; replace "requires providing a document_content argument. You can optionally
#: specify a section_id or omit it to replace the entire canvas"; "Only one operation per API
#: call is currently supported". Tier 3, scope `canvases:write`.
EXTRA_METHOD_DOCS["canvases.edit"] = {
    "type": "object",
    "required": ["token", "canvas_id", "changes"],
    "properties": {k: {} for k in ("token", "canvas_id", "changes")},
}
EXTRA_METHOD_SCOPES: dict[str, frozenset[str]] = {
    "files.getUploadURLExternal": frozenset({"files:write"}),
    "files.completeUploadExternal": frozenset({"files:write"}),
    "canvases.edit": frozenset({"canvases:write"}),
}
EXTRA_METHOD_TIERS = {"files.getUploadURLExternal": "t4", "files.completeUploadExternal": "t4", "canvases.edit": "t3"}
#: canvases.edit's operations (its page), and the ones that need a `section_id`.
CANVAS_OPERATIONS = frozenset({"insert_after", "insert_before", "insert_at_start", "insert_at_end", "replace", "delete"})
CANVAS_SECTION_OPERATIONS = frozenset({"insert_after", "insert_before", "delete"})
#: conversations.canvases.create's document: "The markdown content is limited to 1 MiB
#: (1,048,576 characters)."
CANVAS_MARKDOWN_MAX = 1_048_576
#: Where the fake's upload URLs point (``upload_url`` of files.getUploadURLExternal).
UPLOAD_PATH = "/upload/{file_id}"
#: Where ``apps.connections.open`` points when no fake Socket Mode server is attached.
NO_SOCKET_SERVER_URL = "wss://wss-primary.slack.invalid/link/"


@dataclass(frozen=True)
class SlackCall:
    """One HTTP request the fake received, with its arguments decoded."""

    method: str
    args: dict[str, Any]
    token: str | None


@dataclass(frozen=True)
class _Failure:
    error: str
    status: int
    retry_after: int | None
    malformed: Malformed | None = None


#: Slack's rate tiers (its rate-limits page): calls a minute, per app and workspace.
TIER_PER_MINUTE = {"t1": 1.0, "t2": 20.0, "t3": 50.0, "t4": 100.0}


@dataclass(frozen=True)
class Tiers:
    """Slack's rate limits as the fake enforces them (opt-in: ``FakeSlack(tiers=Tiers())``),
    each method at the tier its document gives (``rate_limits``).

    chat.postMessage: about one a second *per channel* with a short burst (its special tier);
    every other method: its tier's rate *per app and workspace*, whichever channel it names
    (chat.update: Tier 3, about 50 a minute, given apart as the tests push it hardest).
    ``speedup`` runs the tiers (not the two given apart) that many times faster. Over the
    limit the call is answered 429 with ``Retry-After``; ``random_429`` answers that share
    of the other calls 429 too (``Retry-After: 1``), as a loaded Slack does.

    assumption: Slack publishes no number for the special tier of methods other than
    chat.postMessage (chat.getPermalink, auth.test) nor the bursts of any tier; the fake
    allows the special ones Tier 4's rate, and every tier a burst of `burst`."""

    post_per_second: float = 1.0
    post_burst: int = 5
    update_per_minute: float = 50.0
    update_burst: int = 10
    burst: int = 10
    special_per_minute: float = 100.0
    speedup: float = 1.0
    random_429: float = 0.0
    seed: int = 0

    def per_second(self, method: str, tier: str | None) -> float | None:
        """The workspace-wide rate of `method` (of rate tier `tier`); None: not limited."""
        if method == "chat.update":
            return self.update_per_minute / 60
        per_minute = TIER_PER_MINUTE.get(tier or "", self.special_per_minute if tier == "t5" else None)
        return None if per_minute is None else per_minute * self.speedup / 60


class _Meter:
    def __init__(self, per_second: float, burst: int, now: float):
        self.per_second, self.burst, self.tokens, self.updated = per_second, burst, float(burst), now

    def take(self, now: float) -> float:
        """0 when a call may go now (and counts it), else seconds until one may."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.per_second


def default_shared_dir() -> Path:
    """``shared/`` sits beside the repo (locally and in CI); SITREP_SHARED_DIR overrides."""
    env = os.environ.get("SITREP_SHARED_DIR")
    if env:
        return Path(env)
    repo_root = Path(__file__).resolve().parents[3]
    return repo_root.parent / "shared"


@lru_cache(maxsize=8)
def load_method_tiers(docs_dir: Path) -> dict[str, str]:
    """Map method name -> its rate tier as its document gives it (``t1`` … ``t4``; ``t5`` is
    Slack's "special" tier)."""
    tiers: dict[str, str] = {}
    for path in sorted(docs_dir.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(doc, dict) and isinstance(doc.get("rate_limits"), str):
            tiers[path.stem] = doc["rate_limits"]
    return tiers


@lru_cache(maxsize=8)
def load_method_scopes(docs_dir: Path) -> dict[str, frozenset[str]]:
    """Map method name -> the bot scopes its document lists (any one of them will do,
    except where ``_room_scopes`` says which); methods needing none are left out."""
    scopes: dict[str, frozenset[str]] = {}
    for path in sorted(docs_dir.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(doc, dict) and "args" in doc and not doc.get("no_scope_required"):
            bot = (doc.get("scope") or {}).get("bot") or []
            if bot:
                scopes[path.stem] = frozenset(bot)
    return scopes


#: Slack's rule for channel names (its conversations.create and "create a channel" pages:
#: lowercase letters, numbers, hyphens and underscores, at most 80 characters).
CHANNEL_NAME_MAX = 80
_CHANNEL_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
#: The methods that open, join and close channels, whose scope depends on the kind of channel.
ROOM_METHODS = frozenset({"conversations.create", "conversations.invite", "conversations.archive"})
#: Methods reading a channel, whose scope depends on its kind too (channels:* or groups:*).
READ_METHODS = {"conversations.members": "read", "conversations.info": "read"}
#: assumption: Slack's pagination page says a `limit` above 1,000 is refused; the method's own
#: document gives no bound.
MAX_PAGE_LIMIT = 1000


def channel_name_error(name: str) -> str | None:
    """The error conversations.create gives for a name that breaks Slack's rules, else None."""
    if not name:
        return "invalid_name_required"
    if len(name) > CHANNEL_NAME_MAX:
        return "invalid_name_maxlength"
    if not set(name) <= _CHANNEL_NAME_CHARS:
        return "invalid_name_specials"
    if set(name) <= {"-", "_"}:
        return "invalid_name_punctuation"
    return None


def _room_scopes(method: str, private: bool) -> frozenset[str]:
    """assumption: Slack's documents list every bot scope of conversations.create, .invite and
    .archive without saying which goes with which kind of channel; the scopes' own names do
    (channels:* public channels, groups:* private ones), and so does the fake."""
    if method == "conversations.invite":
        return frozenset({"groups:write", "groups:write.invites"} if private else {"channels:manage", "channels:write.invites"})
    return frozenset({"groups:write"} if private else {"channels:manage"})


@lru_cache(maxsize=8)
def load_method_docs(docs_dir: Path) -> dict[str, Json]:
    """Map method name -> its ``args`` schema; cached because every test makes a fake."""
    docs: dict[str, Json] = {}
    for path in sorted(docs_dir.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or "args" not in doc:
            continue  # methods.json is an index, not a method document
        docs[path.stem] = doc["args"]
    if not docs:
        raise FileNotFoundError(f"no Slack method documents found in {docs_dir}")
    return docs


def _truthy(value: Any) -> bool:
    """Slack booleans arrive as JSON bools, "true"/"false", or "1"/"0" (slack_sdk's GET params)."""
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes"}
    return bool(value)


def _error(error: str, status: int = 200, headers: dict[str, str] | None = None, messages: list[str] | None = None) -> _Answer:
    body: Json = {"ok": False, "error": error}
    if messages:
        body["response_metadata"] = {"messages": messages}
    return status, body, headers or {}


def _slack_messages(method: str, problems: list[str]) -> list[str]:
    """Slack's ``response_metadata.messages``: the problems without our ``method:`` prefix."""
    return [p.removeprefix(f"{method}: ") for p in problems]


def _posted_text(args: Json) -> str:
    """chat.postMessage (and, assumption: chat.postEphemeral, whose document gives no number)
    do not refuse a long top-level text: Slack keeps the first 40,000 characters."""
    text = args.get("text") or ""
    return str(text)[: limits.POST_TEXT_TRUNCATED_AT]


def _public(message: Json, include_metadata: bool = True) -> Json:
    """A stored message as Slack would show it: no internal keys, no null fields."""
    out = {k: copy.deepcopy(v) for k, v in message.items() if v is not None and k != "channel"}
    if not include_metadata:
        out.pop("metadata", None)
    return out


class FakeSlack:
    """In-memory Slack workspace behind a real HTTP server on 127.0.0.1.

    Use as ``with FakeSlack() as slack:`` (or ``start()``/``stop()``) and give
    ``slack.url`` to ``AsyncWebClient(base_url=...)``.
    """

    def __init__(
        self,
        token: str = "xoxb-test-token",
        shared_dir: Path | str | None = None,
        app_token: str = APP_TOKEN,
        tiers: Tiers | None = None,
        scopes: frozenset[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.token = token
        self.tiers = tiers
        #: The clock triggers age on, in seconds since the epoch (`new_trigger_id(issued_at=)`
        #: stamps them on the same scale); a test that moves time gives its own.
        self.clock = clock
        #: The app's Home tab (manifest `features.app_home.home_tab_enabled`); off, views.publish
        #: of a home view answers `not_enabled`, as its document says.
        self.home_tab_enabled = True
        self.app_token = app_token
        #: The bot token's scopes; None grants every scope (tests not about scopes). With a
        #: set, a call needing a scope outside it is answered ``missing_scope`` as Slack does.
        self.scopes = scopes
        shared = Path(shared_dir) if shared_dir is not None else default_shared_dir()
        docs_dir = (shared / "slack" / "docs_slack_dev_methods").resolve()
        self._docs = {**load_method_docs(docs_dir), **EXTRA_METHOD_DOCS}
        self._scopes_needed = {**load_method_scopes(docs_dir), **EXTRA_METHOD_SCOPES}
        self._tiers = {**load_method_tiers(docs_dir), **EXTRA_METHOD_TIERS}
        # Socket Mode: tickets handed out by apps.connections.open, redeemed by the websocket server.
        self.socket_mode_url = NO_SOCKET_SERVER_URL
        self._lock = threading.Lock()
        self._failures: defaultdict[str, deque[_Failure]] = defaultdict(deque)
        self._delays: defaultdict[str, deque[float | threading.Event]] = defaultdict(deque)
        self.held = 0  # calls arrived and held by an Event given to `delay_next`
        self._holding: list[threading.Event] = []  # the Events those calls wait on
        self._users: dict[str, Json] = {}
        self._handlers: dict[str, Callable[[Json], Json]] = {
            "auth.test": self._auth_test,
            "apps.connections.open": self._apps_connections_open,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "conversations.replies": self._conversations_replies,
            "conversations.history": self._conversations_history,
            "conversations.open": self._conversations_open,
            "conversations.create": self._conversations_create,
            "conversations.invite": self._conversations_invite,
            "conversations.archive": self._conversations_archive,
            "conversations.members": self._conversations_members,
            "views.open": self._views_open,
            "views.push": self._views_open,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "users.info": self._users_info,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
            "conversations.info": self._conversations_info,
            "conversations.canvases.create": self._conversations_canvases_create,
            "canvases.edit": self._canvases_edit,
        }
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._reset_state()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeSlack:
        """Bind a free port and serve from a background thread; returns self."""
        if self._thread is not None:
            raise RuntimeError("FakeSlack already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        startup_error: list[BaseException] = []

        def serve() -> None:
            asyncio.set_event_loop(loop)
            # Bodies up to a canvas's 1 MiB of markdown and its JSON around it (aiohttp's default is 1 MiB).
            app = web.Application(client_max_size=4 * CANVAS_MARKDOWN_MAX)
            app.router.add_route("*", "/api/{method}", self._handle)
            app.router.add_route("POST", UPLOAD_PATH, self._handle_upload)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
            try:
                loop.run_until_complete(runner.setup())
                loop.run_until_complete(web.SockSite(runner, sock).start())
            except BaseException as exc:  # surfaced to start()'s caller
                startup_error.append(exc)
                ready.set()
                loop.close()
                sock.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(runner.cleanup())
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=serve, name="FakeSlack", daemon=True)
        self._thread.start()
        ready.wait()
        if startup_error:
            self._thread.join()
            self._thread = self._loop = None
            raise RuntimeError("FakeSlack failed to start") from startup_error[0]
        return self

    def stop(self) -> None:
        """Stop serving and join the thread; safe to call twice."""
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = self._loop = None

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL for ``AsyncWebClient(base_url=...)``; ends with ``/api/``."""
        if self._port is None:
            raise RuntimeError("FakeSlack is not started")
        return f"http://127.0.0.1:{self._port}/api/"

    # ------------------------------------------------------------ test helpers

    @property
    def calls(self) -> list[SlackCall]:
        """Snapshot of every request received, in arrival order."""
        with self._lock:
            return list(self._calls)

    @property
    def violations(self) -> list[str]:
        """Snapshot of every rule a call broke (doc mismatch, Slack limits)."""
        with self._lock:
            return list(self._violations)

    @property
    def views(self) -> dict[str, Json]:
        """Snapshot of views opened/pushed/published, by view id."""
        with self._lock:
            return copy.deepcopy(self._views)

    def calls_to(self, method: str) -> list[Json]:
        """The args of each call to ``method``, in order."""
        with self._lock:
            return [copy.deepcopy(c.args) for c in self._calls if c.method == method]

    def count(self, method: str) -> int:
        """How many calls to ``method`` came (no copies: cheap enough to poll)."""
        with self._lock:
            return sum(1 for c in self._calls if c.method == method)

    def connections(self, method: str) -> set[Any]:
        """The distinct TCP connections calls to ``method`` came on (each client's address)."""
        with self._lock:
            return {peer for called, peer in self._connections if called == method}

    def reset(self) -> None:
        """Forget calls, messages, views, channels and violations, stop enforcing tiers, grant
        every scope again, turn the Home tab back on, put triggers back on the machine's
        clock, let go of held calls and drop delays no call met; keep queued failures and users."""
        self.release_delays()
        with self._lock:
            self.tiers = None
            self.scopes = None
            self.home_tab_enabled = True
            self.clock = time.time
            self._reset_state()

    def grant(self, scopes: set[str] | frozenset[str] | None) -> None:
        """Give the bot token exactly these scopes from now on (None: every scope)."""
        with self._lock:
            self.scopes = frozenset(scopes) if scopes is not None else None

    def add_channel(
        self, name: str, *, private: bool = False, members: tuple[str, ...] = (BOT_USER_ID,), channel_id: str | None = None
    ) -> str:
        """A channel that exists already (made by a person): its ID (`channel_id` when given)."""
        with self._lock:
            return self._new_channel(name, private=private, creator="UHUMAN", members=set(members), channel_id=channel_id)["id"]

    def set_members(self, channel_id: str, members: set[str] | frozenset[str]) -> None:
        """Who is in a channel from now on (people joining and leaving)."""
        with self._lock:
            self._channels[channel_id]["members"] = sorted(members)

    def set_member(self, channel_id: str, member: bool, user: str = BOT_USER_ID) -> None:
        """Someone invites `user` to the channel, or removes them (`/invite`, `/remove`)."""
        with self._lock:
            channel = self._channels[channel_id]
            channel["members"] = sorted((set(channel["members"]) | {user}) if member else (set(channel["members"]) - {user}))

    def channel(self, channel_id: str) -> Json | None:
        """A channel conversations.create made (or ``add_channel``), with its ``members``."""
        with self._lock:
            found = self._channels.get(channel_id)
            return copy.deepcopy(found) if found is not None else None

    def channel_named(self, name: str) -> Json | None:
        with self._lock:
            found = next((c for c in self._channels.values() if c["name"] == name), None)
            return copy.deepcopy(found) if found is not None else None

    def forget_calls(self) -> None:
        """Forget calls, ephemerals and violations, but keep the channel's messages and views,
        so a test can look at what one step did without breaking later updates."""
        with self._lock:
            self._calls = []
            self._connections = []
            self._violations = []
            self._ephemerals = []
            self.accepted = []

    def fail_next(
        self,
        method: str,
        error: str = "ratelimited",
        status: int = 200,
        retry_after: int | None = None,
        *,
        malformed: Malformed | None = None,
    ) -> None:
        """Make the next call to ``method`` fail; calls queue up, one failure each.

        ``status=429`` answers like Slack's rate limiter (HTTP 429 with ``Retry-After``);
        ``malformed`` answers that body instead of Slack's JSON (``error`` is then unused).
        Either way the call takes no effect.
        """
        if method not in self._docs:
            raise ValueError(f"{method} is not a documented Slack method")
        with self._lock:
            self._failures[method].append(_Failure(error, status, retry_after, malformed))

    def delay_next(self, method: str, seconds: float | threading.Event) -> None:
        """Make the next call to ``method`` wait ``seconds`` before it is handled (as a Slack
        that does not answer in time); the call still takes effect afterwards, as it may in Slack.
        An `Event` instead of seconds holds the call until the test sets it: as late as the test
        needs, on no clock."""
        if method not in self._docs:
            raise ValueError(f"{method} is not a documented Slack method")
        with self._lock:
            self._delays[method].append(seconds)

    def release_delays(self) -> None:
        """Let every call held by an `Event` go, and drop the delays no call has met yet: a
        test that ends early (an assertion failed while a call was held) leaves nothing that
        holds a later test's call."""
        with self._lock:
            events = [d for queue in self._delays.values() for d in queue if isinstance(d, threading.Event)]
            events += self._holding
            self._delays.clear()
        for event in events:
            event.set()

    def fail_next_upload(self, status: int = 500) -> None:
        """Make the next POST to an upload URL answer this HTTP status, taking nothing."""
        with self._lock:
            self._upload_failures.append(status)

    def file(self, file_id: str) -> Json | None:
        """A file as the fake holds it (``content`` the bytes uploaded, ``shares`` where)."""
        with self._lock:
            found = self._files.get(file_id)
            return copy.deepcopy(found) if found is not None else None

    def shared_files(self, channel: str | None = None) -> list[Json]:
        """Files completed into a channel (each with ``channel`` and ``thread_ts``), in order."""
        with self._lock:
            return [
                {**copy.deepcopy(f), **share}
                for f in self._files.values()
                for share in f["shares"]
                if channel is None or share["channel"] == channel
            ]

    def canvas_of(self, channel: str) -> Json | None:
        """The channel's canvas (``id``, ``channel``, ``title``, ``markdown``, ``edits``), if it has one."""
        with self._lock:
            known = self._channels.get(channel) or {}
            found = self._canvases.get(known.get("canvas") or "")
            return copy.deepcopy(found) if found is not None else None

    def person_adds_canvas(self, channel: str, markdown: str = "Our notes") -> str:
        """A person gave the channel its canvas (not the bot); returns its ID."""
        with self._lock:
            return self._new_canvas(self._channels[channel], markdown, None)

    def person_posts(self, channel: str, text: str, user: str = "U999") -> str:
        """A message a person posted (not the bot), for shortcuts on it; returns its ts."""
        with self._lock:
            ts = self._next_ts()
            message: Json = {
                "type": "message",
                "channel": channel,
                "ts": ts,
                "user": user,
                "text": text,
                "blocks": None,
                "attachments": None,
                "thread_ts": None,
                "reply_broadcast": None,
                "metadata": None,
            }
            self._messages.append(message)
            self._by_key[(channel, ts)] = message
            return ts

    def react(self, channel: str, ts: str, name: str, user: str = "U999", *, remove: bool = False) -> Json:
        """A person adds (or with `remove`, takes off) a reaction on a message: the message's
        `reactions` change as conversations.replies/history then show them, and the event
        Slack sends the app (`reaction_added` / `reaction_removed`, its documented shape:
        https://docs.slack.dev/reference/events/reaction_added, not in ../shared/slack/) is
        returned for the test to deliver."""
        with self._lock:
            message = self._by_key.get((channel, ts))
            if message is None:
                raise ValueError(f"no message {ts} in {channel}")
            reactions = [dict(r, users=list(r["users"])) for r in message.get("reactions") or []]
            entry = next((r for r in reactions if r["name"] == name), None)
            if remove:
                if entry is None or user not in entry["users"]:
                    raise ValueError(f"{user} has no :{name}: on {ts} (Slack answers no_reaction)")
                entry["users"].remove(user)
            else:
                if entry is not None and user in entry["users"]:
                    raise ValueError(f"{user} reacted :{name}: on {ts} already (Slack answers already_reacted)")
                if entry is None:
                    reactions.append(entry := {"name": name, "users": [], "count": 0})
                entry["users"].append(user)
            entry["count"] = len(entry["users"])
            message["reactions"] = [r for r in reactions if r["count"]] or None
            event: Json = {
                "type": "reaction_removed" if remove else "reaction_added",
                "user": user,
                "reaction": name,
                "item": {"type": "message", "channel": channel, "ts": ts},
                "event_ts": self._next_ts(),
            }
            author = message.get("user")
            if author:  # messages not authored by a user (a bot's, a webhook's) carry no item_user
                event["item_user"] = author
            return event

    def person_replies(self, channel: str, thread_ts: str, text: str, user: str = "U999") -> str:
        """A person's reply in a thread; returns its ts."""
        ts = self.person_posts(channel, text, user)
        with self._lock:
            self._by_key[(channel, ts)]["thread_ts"] = thread_ts
        return ts

    def set_user(self, user_id: str, **fields: Any) -> None:
        """Override fields of the user ``users.info`` returns (e.g. ``tz=...``)."""
        with self._lock:
            self._users.setdefault(user_id, {}).update(fields)

    def messages(self, channel: str) -> list[Json]:
        """Messages in ``channel`` (top-level and replies), in post order."""
        channel = self._channel_id(channel)
        with self._lock:
            return [copy.deepcopy(m) for m in self._messages if m["channel"] == channel]

    def thread(self, channel: str, ts: str) -> list[Json]:
        """Replies to the message ``ts`` (without the parent), in post order."""
        channel = self._channel_id(channel)
        with self._lock:
            return [copy.deepcopy(m) for m in self._messages if m["channel"] == channel and m["thread_ts"] == ts]

    def message(self, channel: str, ts: str) -> Json | None:
        """The stored message, or None."""
        with self._lock:
            found = self._by_key.get((self._channel_id(channel), ts))
            return copy.deepcopy(found) if found is not None else None

    def ephemerals(self, channel: str | None = None) -> list[Json]:
        """Ephemeral messages sent (optionally only to ``channel``), in order."""
        with self._lock:
            return [copy.deepcopy(e) for e in self._ephemerals if channel is None or e["channel"] == self._channel_id(channel)]

    def wait_for(self, predicate: Callable[[], T], timeout: float = WAIT_BOUND) -> T:
        """Poll until ``predicate()`` is truthy and return it.

        Blocks the calling thread: from an async test whose bot runs on the same
        loop, use ``await_for`` instead or the bot never gets to run.
        """
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise AssertionError(self._timeout_report(predicate, timeout, value))
            time.sleep(0.01)

    async def await_for(self, predicate: Callable[[], T], timeout: float = WAIT_BOUND) -> T:
        """Like ``wait_for`` but yields to the event loop between polls."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise AssertionError(self._timeout_report(predicate, timeout, value))
            await asyncio.sleep(0.01)

    def dump(self, max_arg_chars: int = 300) -> str:
        """Human-readable record of calls and violations, for failure messages."""
        with self._lock:
            calls = list(self._calls)
            violations = list(self._violations)
        lines = [f"{len(calls)} call(s):"]
        for i, call in enumerate(calls):
            args = json.dumps(call.args, default=str, ensure_ascii=False)
            if len(args) > max_arg_chars:
                args = args[:max_arg_chars] + "..."
            lines.append(f"  {i}: {call.method} {args}")
        lines.append(f"{len(violations)} violation(s):")
        lines.extend(f"  - {v}" for v in violations)
        return "\n".join(lines)

    def _timeout_report(self, predicate: Callable[..., Any], timeout: float, value: Any) -> str:
        name = getattr(predicate, "__qualname__", repr(predicate))
        return f"timed out after {timeout}s waiting for {name} (last value: {value!r})\n{self.dump()}"

    # ------------------------------------------------------------- HTTP layer

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args, problems = await self._read_args(request)
        token = None
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            token = auth[len("Bearer ") :].strip() or None
        body_token = args.pop("token", None)
        if token is None and isinstance(body_token, str):
            if method in APP_TOKEN_METHODS:
                # assumption: Slack says a POST parameter "will result in an error" without naming
                # it; the fake answers as if no token came, and records the mistake.
                problems = [*problems, f"{method}: the app-level token must be sent in the Authorization header"]
            else:
                token = body_token
        with self._lock:
            delays = self._delays.get(method)
            delay = delays.popleft() if delays else 0.0
        if isinstance(delay, threading.Event):
            with self._lock:
                self.held += 1
                self._holding.append(delay)
            while not delay.is_set():
                await asyncio.sleep(0.01)
            with self._lock:
                self.held -= 1
                self._holding.remove(delay)
        elif delay:
            await asyncio.sleep(delay)
        with self._lock:
            # Which TCP connection the call came on (the client's address and port).
            self._connections.append((method, request.transport.get_extra_info("peername") if request.transport else None))
            status, body, headers = self._dispatch(method, args, token, problems)
        if method == "chat.postMessage" and self.post_latency:
            # Taken (a success is in the channel already), answered late: a sender that dies
            # meanwhile never learns its post landed.
            await asyncio.sleep(self.post_latency)
        if isinstance(body, Malformed):
            answer = web.Response(status=status, text=body.body, content_type=body.content_type, headers=headers)
        else:
            answer = web.json_response(body, status=status, headers=headers)
        if self.close_connections:
            answer.force_close()  # `Connection: close`, as a server ending a kept-alive connection says
        return answer

    @staticmethod
    async def _read_args(request: web.Request) -> tuple[Json, list[str]]:
        """Merge query string and body; slack_sdk uses all three encodings."""
        method = request.match_info["method"]
        problems: list[str] = []
        args: Json = dict(request.query.items())
        if request.can_read_body:
            ctype = request.content_type
            if ctype == "application/json":
                raw = await request.text()
                try:
                    body = json.loads(raw) if raw.strip() else {}
                except json.JSONDecodeError as exc:
                    body = {}
                    problems.append(f"{method}: request body is not valid JSON ({exc})")
                if isinstance(body, dict):
                    args.update(body)
                else:
                    problems.append(f"{method}: JSON body must be an object, got {type(body).__name__}")
            elif ctype in {"application/x-www-form-urlencoded", "multipart/form-data"}:
                form = await request.post()
                for key, value in form.items():
                    args[key] = value if isinstance(value, str) else f"<file {value.filename}>"
            else:
                problems.append(f"{method}: unsupported Content-Type {ctype!r}")
        for key in JSON_STRING_ARGS & args.keys():
            value = args[key]
            if isinstance(value, str):
                try:
                    args[key] = json.loads(value)
                except json.JSONDecodeError:
                    problems.append(f"{method}: argument {key!r} is not valid JSON: {value[:80]!r}")
        return args, problems

    def _dispatch(self, method: str, args: Json, token: str | None, problems: list[str]) -> _Answer:
        """Record, validate, then answer. Runs under the lock."""
        self._calls.append(SlackCall(method, copy.deepcopy(args), token))
        schema = self._docs.get(method)
        if schema is None:
            self._violations.append(f"{method}: not a documented Slack method")
            return _error("unknown_method")

        problems = problems + self._check_args(method, schema, args, token)
        block_problems = self._check_blocks(method, args)
        text_problems = [f"{method}: {p}" for p in limits.message_text_problems(method, args.get("text"))]
        too_large = method in VIEW_METHODS and limits.view_too_large(args.get("view"))
        if too_large:
            text_problems.append(f"{method}: view is larger than {limits.MAX_VIEW_BYTES} bytes")
        metadata_problems = self._check_metadata(method, args)
        self._violations.extend(problems + block_problems + text_problems + metadata_problems)

        queue = self._failures.get(method)
        if queue:
            failure = queue.popleft()
            if failure.malformed is not None:
                return failure.status, failure.malformed, {}
            headers = {}
            if failure.retry_after is not None or failure.status == 429:
                headers["Retry-After"] = str(failure.retry_after if failure.retry_after is not None else 1)
            if failure.status == 429:
                return _error("ratelimited", 429, headers)
            return _error(failure.error, failure.status, headers)

        paced = self._over_tier(method, args)
        if paced is not None:
            self.rate_limited += 1
            return _error("ratelimited", 429, {"Retry-After": str(paced)})

        if token is None:
            return _error("not_authed")
        # assumption: the wrong kind of token gets `not_allowed_token_type` (Slack's error for it on
        # other methods; the apps.connections.open page lists only generic errors).
        if method in APP_TOKEN_METHODS:
            if token == self.token or not token.startswith("xapp-"):
                return _error("not_allowed_token_type")
            if token != self.app_token:
                return _error("invalid_auth")
        elif token == self.app_token:
            return _error("not_allowed_token_type")
        elif token != self.token:
            return _error("invalid_auth")
        missing = self._missing_scope(method, args)
        if missing is not None:
            return 200, missing, self._scopes_header()
        if problems:
            return _error("invalid_arguments", messages=_slack_messages(method, problems))
        if too_large:
            return _error("view_too_large")
        if block_problems:
            # Views answer invalid_arguments (views.open's documented example); messages invalid_blocks.
            error = "invalid_arguments" if method in VIEW_METHODS else "invalid_blocks"
            return _error(error, messages=_slack_messages(method, block_problems))
        if text_problems:
            return _error("msg_too_long")
        if metadata_problems:
            return _error("invalid_metadata_format")
        handler = self._handlers.get(method)
        if handler is None:
            return 200, {"ok": True}, {}
        try:
            answer = handler(args)
            if method in ("chat.postMessage", "chat.update"):
                self.accepted.append((self._meter_clock(), method, copy.deepcopy(args)))
            return 200, answer, self._scopes_header()
        except Exception as exc:  # a bug in the fake, or args it cannot make sense of
            self._violations.append(f"{method}: fake could not handle {args!r}: {exc!r}")
            return _error("internal_error", 500)

    def _scopes_header(self) -> dict[str, str]:
        """Slack names the token's scopes on its answers (`X-OAuth-Scopes`, comma-separated);
        the fake does once a test has `grant`ed some (every scope, the default, names none)."""
        return {} if self.scopes is None else {"X-OAuth-Scopes": ",".join(sorted(self.scopes))}

    def _missing_scope(self, method: str, args: Json) -> Json | None:
        """Slack's ``missing_scope`` answer (with ``needed`` and ``provided``) when the token
        lacks every scope that would allow this call, else None."""
        if self.scopes is None:
            return None
        if method in ROOM_METHODS:
            if method == "conversations.create":
                private = _truthy(args.get("is_private"))
            else:
                private = bool(self._channels.get(str(args.get("channel")), {}).get("is_private"))
            allowed = _room_scopes(method, private)
        elif method in READ_METHODS:
            # assumption (as `_room_scopes`): channels:read for a public channel, groups:read
            # for a private one; the document lists both without saying which is which.
            private = bool(self._channels.get(str(args.get("channel")), {}).get("is_private"))
            allowed = frozenset({f"{'groups' if private else 'channels'}:{READ_METHODS[method]}"})
        else:
            allowed = self._scopes_needed.get(method, frozenset())
        if not allowed or allowed & self.scopes:
            return None
        return {"ok": False, "error": "missing_scope", "needed": sorted(allowed)[0], "provided": ",".join(sorted(self.scopes))}

    def _over_tier(self, method: str, args: Json) -> int | None:
        """Seconds to wait (Retry-After) when the tiers refuse this call, else None: the
        channel's meter for chat.postMessage, the workspace's for any other method."""
        tiers = self.tiers
        if tiers is None:
            return None
        if method == "chat.postMessage":
            per_second, burst, where = tiers.post_per_second, tiers.post_burst, str(args.get("channel"))
        else:
            per_second = tiers.per_second(method, self._tiers.get(method))
            burst = tiers.update_burst if method == "chat.update" else tiers.burst
            where = ""  # the workspace: one meter whatever the channel
        if per_second is None:
            return None
        if tiers.random_429 and method in ("chat.postMessage", "chat.update") and self._random.random() < tiers.random_429:
            return 1
        now = self._meter_clock()
        meter = self._meters.setdefault((method, where), _Meter(per_second, burst, now))
        wait = meter.take(now)
        return max(1, math.ceil(wait)) if wait > 0 else None

    # ------------------------------------------------------------- validation

    @staticmethod
    def _check_args(method: str, schema: Json, args: Json, token: str | None) -> list[str]:
        props = schema.get("properties", {})
        problems: list[str] = []
        for name in schema.get("required", []):
            if name == "token":
                if token is None:
                    problems.append(f"{method}: no token (Authorization header or token argument)")
            elif args.get(name) in (None, ""):
                problems.append(f"{method}: missing required argument {name!r}")
        for name in args:
            if name not in props:
                problems.append(f"{method}: unknown argument {name!r} (not in Slack's docs)")
        if "link_names" in args:
            problems.append(f"{method}: link_names must not be passed (mention with <@U…>/<!subteam^…>)")
        if method in {"views.open", "views.push"} and not (args.get("trigger_id") or args.get("interactivity_pointer")):
            problems.append(f"{method}: trigger_id is required")
        if method == "views.update" and not (args.get("view_id") or args.get("external_id")):
            problems.append(f"{method}: view_id or external_id is required")
        return problems

    @staticmethod
    def _check_blocks(method: str, args: Json) -> list[str]:
        """Block Kit rules (``tests/support/slack_limits.py``), each worded like Slack's own message."""
        problems: list[str] = []
        if method in MESSAGE_METHODS and "blocks" in args:
            problems += limits.message_problems(args["blocks"])
        if method in VIEW_METHODS and "view" in args:
            kind = "home" if method == "views.publish" else "modal"
            problems += limits.view_problems(args["view"], kind=kind)
        return [f"{method}: {p}" for p in problems]

    @staticmethod
    def _check_metadata(method: str, args: Json) -> list[str]:
        """Message metadata needs event_type + event_payload (or Work Object entities)."""
        if method not in MESSAGE_METHODS or "metadata" not in args:
            return []
        metadata = args["metadata"]
        if not isinstance(metadata, dict):
            return [f"{method}: metadata must be a JSON object, got {type(metadata).__name__}"]
        if "entities" in metadata:
            return []
        problems = []
        if not isinstance(metadata.get("event_type"), str) or not metadata.get("event_type"):
            problems.append(f"{method}: metadata.event_type must be a non-empty string")
        if not isinstance(metadata.get("event_payload"), dict):
            problems.append(f"{method}: metadata.event_payload must be an object")
        return problems

    # ------------------------------------------------------------- state

    def enforce(self, tiers: Tiers | None, *, clock: Callable[[], float] = time.monotonic) -> None:
        """Enforce Slack's rate tiers from now on (None: stop); ``reset`` stops it too. The
        meters refill on ``clock`` (a test's virtual time makes refusals exact)."""
        with self._lock:
            self.tiers = tiers
            self._meter_clock = clock
            self._meters = {}
            self._random = random.Random(tiers.seed if tiers else 0)

    def _reset_state(self) -> None:
        self._meters: dict[tuple[str, str], _Meter] = {}
        self._meter_clock: Callable[[], float] = time.monotonic
        self._random = random.Random(self.tiers.seed if self.tiers else 0)
        #: (time on the meters' clock, method, args) of each chat.postMessage / chat.update Slack took.
        self.accepted: list[tuple[float, str, Json]] = []
        self.rate_limited = 0  # calls answered 429 by the tiers
        self.post_latency = 0.0  # seconds each chat.postMessage answer takes, after it is taken
        self.close_connections = False  # close each connection after its answer (no keep-alive)
        self._calls: list[SlackCall] = []
        self._connections: list[tuple[str, Any]] = []
        self._violations: list[str] = []
        self._messages: list[Json] = []
        self._by_key: dict[tuple[str, str], Json] = {}
        self._ephemerals: list[Json] = []
        self._views: dict[str, Json] = {}
        self._home_views: dict[str, str] = {}  # user id -> view id
        #: Conversations the bot cannot see (a private channel it is not in, someone's DM):
        #: chat.getPermalink answers `channel_not_found` there.
        self.hidden_channels: set[str] = set()
        self._used_triggers: set[str] = set()
        self._tickets: set[str] = set()
        self._channels: dict[str, Json] = {}  # the ones the fake knows: created, or add_channel
        #: Files by ID: filename, declared length, the bytes once uploaded, where shared.
        self._files: dict[str, Json] = {}
        self._upload_failures: deque[int] = deque()
        #: Canvases by ID: the channel whose canvas it is, its title and markdown, its edits.
        self._canvases: dict[str, Json] = {}
        self._ts_counter = 0
        self._id_counter = 0

    def _next_ts(self) -> str:
        """Unique, increasing Slack-style timestamps: 1700000000.000100, .000200, ..."""
        self._ts_counter += 1
        micros = self._ts_counter * 100
        return f"{_FIRST_TS_SECONDS + micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _next_id(self, prefix: str) -> str:
        self._id_counter += 1
        return f"{prefix}{self._id_counter:08d}"

    @staticmethod
    def _channel_id(channel: str) -> str:
        """Posting to a user ID lands in the DM with that user."""
        return f"D{channel}" if channel.startswith(("U", "W")) else channel

    def _replies_of(self, channel: str, ts: str) -> list[Json]:
        return [m for m in self._messages if m["channel"] == channel and m["thread_ts"] == ts]

    def _render(self, message: Json, include_metadata: bool) -> Json:
        """Add the thread summary Slack shows on a parent message."""
        out = _public(message, include_metadata)
        if message["thread_ts"] is None:
            replies = self._replies_of(message["channel"], message["ts"])
            if replies:
                out["thread_ts"] = message["ts"]
                out["reply_count"] = len(replies)
                out["latest_reply"] = replies[-1]["ts"]
        return out

    @staticmethod
    def _page(items: list[Any], args: Json, key: str = "messages") -> Json | None:
        """Offset pagination with Slack's cursor fields, the page under `key`; None means a
        bad cursor."""
        cursor = args.get("cursor") or ""
        try:
            start = int(cursor) if cursor else 0
            limit = int(args.get("limit") or 100)
        except (TypeError, ValueError):
            return None
        limit = max(1, min(limit, 1000))
        page = items[start : start + limit]
        more = start + limit < len(items)
        return {
            "ok": True,
            key: page,
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    # ------------------------------------------------------------- methods

    def _auth_test(self, args: Json) -> Json:
        return {
            "ok": True,
            "url": WORKSPACE_URL,
            "team": TEAM_NAME,
            "user": "sitrep",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _apps_connections_open(self, args: Json) -> Json:
        """A fresh websocket URL with a one-time ticket, shaped like Slack's
        (``wss://…/link/?ticket=…&app_id=…``)."""
        ticket = uuid.uuid4().hex
        self._tickets.add(ticket)
        return {"ok": True, "url": f"{self.socket_mode_url}?ticket={ticket}&app_id={APP_ID}"}

    def redeem_socket_ticket(self, ticket: str) -> bool:
        """True once per ticket apps.connections.open issued.

        assumption: a ticket opens one connection (every reconnect asks apps.connections.open
        again, as slack_sdk does); Slack's pages say only that the URL is temporary."""
        with self._lock:
            if ticket in self._tickets:
                self._tickets.discard(ticket)
                return True
            return False

    def _chat_post_message(self, args: Json) -> Json:
        if not any(args.get(k) for k in ("text", "blocks", "attachments", "markdown_text")):
            return {"ok": False, "error": "no_text"}
        channel = self._channel_id(str(args["channel"]))
        known = self._channels.get(channel)
        if known is not None and known["is_archived"]:
            return {"ok": False, "error": "is_archived"}
        if known is not None and BOT_USER_ID not in known["members"]:
            return {"ok": False, "error": "not_in_channel"}
        thread_ts = args.get("thread_ts") or None
        if thread_ts is not None:
            parent = self._by_key.get((channel, str(thread_ts)))
            # A reply to a reply joins the parent's thread, as in Slack.
            thread_ts = parent["thread_ts"] if parent and parent["thread_ts"] else str(thread_ts)
        message = self._add_bot_message(
            channel,
            thread_ts,
            text=_posted_text(args),
            blocks=copy.deepcopy(args.get("blocks")),
            attachments=copy.deepcopy(args.get("attachments")),
            reply_broadcast=_truthy(args.get("reply_broadcast")) if thread_ts else None,
            metadata=copy.deepcopy(args.get("metadata")),
        )
        return {"ok": True, "channel": channel, "ts": message["ts"], "message": _public(message)}

    def _add_bot_message(self, channel: str, thread_ts: str | None, **fields: Any) -> Json:
        """A message from the bot, stored in `channel` (in the thread at `thread_ts`, if any)."""
        message: Json = {
            "type": "message",
            "channel": channel,
            "ts": self._next_ts(),
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            **fields,
            "thread_ts": thread_ts,
        }
        self._messages.append(message)
        self._by_key[(channel, message["ts"])] = message
        return message

    def _chat_update(self, args: Json) -> Json:
        channel = self._channel_id(str(args["channel"]))
        if self._channels.get(channel, {}).get("is_archived"):
            return {"ok": False, "error": "is_archived"}
        message = self._by_key.get((channel, str(args["ts"])))
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        for key in ("text", "blocks", "attachments", "metadata"):
            if key in args:
                message[key] = copy.deepcopy(args[key])
        message["edited"] = {"user": BOT_USER_ID, "ts": self._next_ts()}
        return {
            "ok": True,
            "channel": channel,
            "ts": message["ts"],
            "text": message["text"],
            "message": _public(message),
        }

    def _chat_delete(self, args: Json) -> Json:
        channel = self._channel_id(str(args["channel"]))
        message = self._by_key.pop((channel, str(args["ts"])), None)
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        self._messages.remove(message)
        return {"ok": True, "channel": channel, "ts": message["ts"]}

    def _chat_post_ephemeral(self, args: Json) -> Json:
        ephemeral = {
            "channel": self._channel_id(str(args["channel"])),
            "user": args["user"],
            "text": _posted_text(args),
            "blocks": copy.deepcopy(args.get("blocks")),
            "thread_ts": args.get("thread_ts"),
            "message_ts": self._next_ts(),
        }
        self._ephemerals.append(ephemeral)
        return {"ok": True, "message_ts": ephemeral["message_ts"]}

    def _chat_get_permalink(self, args: Json) -> Json:
        channel = self._channel_id(str(args["channel"]))
        ts = str(args["message_ts"])
        if channel in self.hidden_channels:
            return {"ok": False, "error": "channel_not_found"}
        if (channel, ts) not in self._by_key:
            return {"ok": False, "error": "message_not_found"}
        return {
            "ok": True,
            "channel": channel,
            "permalink": f"{WORKSPACE_URL}archives/{channel}/p{ts.replace('.', '')}",
        }

    def _conversations_replies(self, args: Json) -> Json:
        channel = self._channel_id(str(args["channel"]))
        parent = self._by_key.get((channel, str(args["ts"])))
        if parent is None:
            return {"ok": False, "error": "thread_not_found"}
        with_metadata = _truthy(args.get("include_all_metadata"))
        thread = [parent, *self._replies_of(channel, parent["ts"])]
        page = self._page([self._render(m, with_metadata) for m in thread], args)
        return page if page is not None else {"ok": False, "error": "invalid_cursor"}

    def _conversations_history(self, args: Json) -> Json:
        channel = self._channel_id(str(args["channel"]))
        refused = self._not_readable(channel)
        if refused is not None:
            return {"ok": False, "error": refused}
        with_metadata = _truthy(args.get("include_all_metadata"))
        oldest = float(args.get("oldest") or 0)
        latest = float(args.get("latest") or "inf")
        inclusive = _truthy(args.get("inclusive"))
        visible = []
        for m in reversed(self._messages):
            if m["channel"] != channel or (m["thread_ts"] and not m["reply_broadcast"]):
                continue
            ts = float(m["ts"])
            if oldest < ts < latest or (inclusive and ts in (oldest, latest)):
                visible.append(self._render(m, with_metadata))
        page = self._page(visible, args)
        return page if page is not None else {"ok": False, "error": "invalid_cursor"}

    def _not_readable(self, channel: str) -> str | None:
        """Why the bot cannot read a channel's history, in conversations.history's words:
        a channel it cannot see (`hidden_channels`) is `channel_not_found`; one it is not in,
        `not_in_channel` ("only user tokens can access public channels they are not in").
        assumption: a private channel the bot is not in answers `channel_not_found`, as
        it is invisible to the bot (the document does not say which of the two it is)."""
        known = self._channels.get(channel)
        if channel in self.hidden_channels or (known is not None and known["is_private"] and BOT_USER_ID not in known["members"]):
            return "channel_not_found"
        if known is not None and BOT_USER_ID not in known["members"]:
            return "not_in_channel"
        return None

    def _conversations_open(self, args: Json) -> Json:
        users = str(args.get("users") or "").split(",")
        if args.get("channel"):
            return {"ok": True, "channel": {"id": str(args["channel"])}}
        return {"ok": True, "channel": {"id": self._channel_id(users[0])}}

    def _new_channel(self, name: str, *, private: bool, creator: str, members: set[str], channel_id: str | None = None) -> Json:
        channel = {
            "id": channel_id or self._next_id("C"),
            "name": name,
            "is_channel": True,
            "is_group": False,
            "is_private": private,
            "is_archived": False,
            "creator": creator,
            "created": int(time.time()),
            "members": sorted(members),
        }
        self._channels[channel["id"]] = channel
        return channel

    @staticmethod
    def _conversation(channel: Json) -> Json:
        """A channel as Slack's conversation object shows it to the bot (no member list)."""
        out = {k: copy.deepcopy(v) for k, v in channel.items() if k not in ("members", "canvas")}
        out["name_normalized"] = channel["name"]
        out["is_member"] = BOT_USER_ID in channel["members"]
        return out

    def _conversations_create(self, args: Json) -> Json:
        name = str(args.get("name") or "")
        error = channel_name_error(name)
        if error is None and any(c["name"] == name for c in self._channels.values()):
            error = "name_taken"  # archived channels keep their names, as in Slack
        if error is not None:
            return {"ok": False, "error": error}
        channel = self._new_channel(name, private=_truthy(args.get("is_private")), creator=BOT_USER_ID, members={BOT_USER_ID})
        return {"ok": True, "channel": self._conversation(channel)}

    def _conversations_invite(self, args: Json) -> Json:
        channel = self._channels.get(str(args["channel"]))
        users = [u.strip() for u in str(args.get("users") or "").split(",") if u.strip()]
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        if not users:
            return {"ok": False, "error": "no_user"}
        if channel["is_archived"]:
            return {"ok": False, "error": "is_archived"}
        if BOT_USER_ID not in channel["members"]:
            return {"ok": False, "error": "not_in_channel"}
        if BOT_USER_ID in users:
            return {"ok": False, "error": "cant_invite_self"}
        if any(not u.startswith(("U", "W")) for u in users):
            return {"ok": False, "error": "user_not_found"}
        if all(u in channel["members"] for u in users):
            return {"ok": False, "error": "already_in_channel"}
        channel["members"] = sorted(set(channel["members"]) | set(users))
        return {"ok": True, "channel": self._conversation(channel)}

    def _conversations_members(self, args: Json) -> Json:
        """A channel's members, paginated. A private channel the bot is not in is not found,
        as Slack shows the bot nothing of it; a channel the fake never heard of neither."""
        channel = self._channels.get(str(args["channel"]))
        if channel is None or (channel["is_private"] and BOT_USER_ID not in channel["members"]):
            return {"ok": False, "error": "channel_not_found"}
        if not str(args.get("limit") or 100).isdigit() or not 1 <= int(args.get("limit") or 100) <= MAX_PAGE_LIMIT:
            return {"ok": False, "error": "invalid_limit"}
        page = self._page(list(channel["members"]), args, key="members")
        if page is None:
            return {"ok": False, "error": "invalid_cursor"}
        del page["has_more"]  # not in conversations.members' answer
        return page

    def _conversations_archive(self, args: Json) -> Json:
        channel = self._channels.get(str(args["channel"]))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        if channel["is_archived"]:
            return {"ok": False, "error": "already_archived"}
        if BOT_USER_ID not in channel["members"]:
            return {"ok": False, "error": "not_in_channel"}
        channel["is_archived"] = True
        return {"ok": True}

    def _new_view(self, view: Json, view_id: str, root_view_id: str | None = None) -> Json:
        return {
            "type": view.get("type"),
            "blocks": [],
            "private_metadata": "",
            "callback_id": "",
            "external_id": "",
            **copy.deepcopy(view),
            "id": view_id,
            "team_id": TEAM_ID,
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{uuid.uuid4().hex[:8]}",
            "root_view_id": root_view_id or view_id,
            "previous_view_id": None,
            "app_id": APP_ID,
            "bot_id": BOT_ID,
        }

    def _external_id_taken(self, external_id: str, except_id: str | None = None) -> bool:
        return bool(external_id) and any(
            v.get("external_id") == external_id and vid != except_id for vid, v in self._views.items()
        )

    def _views_open(self, args: Json) -> Json:
        """views.open and views.push: a trigger works once (`exchanged_trigger_id` after) and
        for `TRIGGER_LIFETIME` seconds (`expired_trigger_id` after), as in Slack."""
        trigger_id = args.get("trigger_id")
        if trigger_id is not None:
            issued = trigger_issued_at(str(trigger_id))
            if issued is None:
                return {"ok": False, "error": "invalid_trigger_id"}
            if trigger_id in self._used_triggers:
                return {"ok": False, "error": "exchanged_trigger_id"}
            if self.clock() - issued > TRIGGER_LIFETIME:
                return {"ok": False, "error": "expired_trigger_id"}
            self._used_triggers.add(trigger_id)
        if self._external_id_taken(args["view"].get("external_id", "")):
            return {"ok": False, "error": "duplicate_external_id"}
        view = self._new_view(args["view"], self._next_id("V"))
        self._views[view["id"]] = view
        return {"ok": True, "view": copy.deepcopy(view)}

    def _find_view(self, args: Json) -> Json | None:
        if args.get("view_id"):
            return self._views.get(str(args["view_id"]))
        external_id = args.get("external_id")
        return next((v for v in self._views.values() if v.get("external_id") == external_id), None)

    def _views_update(self, args: Json) -> Json:
        current = self._find_view(args)
        if current is None:
            return {"ok": False, "error": "not_found"}
        if args.get("hash") and args["hash"] != current["hash"]:
            return {"ok": False, "error": "hash_conflict"}
        if self._external_id_taken(args["view"].get("external_id", ""), current["id"]):
            return {"ok": False, "error": "duplicate_external_id"}
        view = self._new_view(args["view"], current["id"], current["root_view_id"])
        self._views[view["id"]] = view
        return {"ok": True, "view": copy.deepcopy(view)}

    def _views_publish(self, args: Json) -> Json:
        user_id = str(args["user_id"])
        if args["view"].get("type") == "home" and not self.home_tab_enabled:
            return {"ok": False, "error": "not_enabled"}
        if not user_id.startswith(("U", "W")):
            # As the document's error example answers a user_id that names no user.
            return {"ok": False, "error": "invalid_arguments", "response_metadata": {"messages": ["invalid `user_id`"]}}
        view_id = self._home_views.get(user_id)
        current = self._views.get(view_id) if view_id else None
        if current is not None and args.get("hash") and args["hash"] != current["hash"]:
            return {"ok": False, "error": "hash_conflict"}
        view = self._new_view(args["view"], view_id or self._next_id("V"))
        self._views[view["id"]] = view
        self._home_views[user_id] = view["id"]
        return {"ok": True, "view": copy.deepcopy(view)}

    # --- files: the external upload (described from Slack's pages, see EXTRA_METHOD_DOCS) ---

    def _files_get_upload_url(self, args: Json) -> Json:
        """assumption (from the page's `missing_argument`: "Typically only occurs when the
        `length` provided is 0"): a length that is not a positive integer is refused so."""
        try:
            length = int(args["length"])
        except (TypeError, ValueError):
            return {"ok": False, "error": "invalid_arguments"}
        if length <= 0:
            return {"ok": False, "error": "missing_argument"}
        file_id = self._next_id("F")
        self._files[file_id] = {
            "id": file_id,
            "name": str(args["filename"]),
            "length": length,
            "content": None,
            "title": None,
            "shares": [],
        }
        return {
            "ok": True,
            "upload_url": f"{self.url.removesuffix('/api/')}{UPLOAD_PATH.format(file_id=file_id)}",
            "file_id": file_id,
        }

    async def _handle_upload(self, request: web.Request) -> web.Response:
        """The upload URL: the file's bytes, raw or multipart. assumption: Slack's page says
        only that it answers HTTP 200 when the upload succeeds; the fake answers 404 for a
        file it never handed a URL for and 400 for bytes whose size differs from `length`."""
        file_id = request.match_info["file_id"]
        if request.content_type == "multipart/form-data":
            form = await request.post()
            part = form.get("file") or form.get("filename")
            data = part.file.read() if hasattr(part, "file") else str(part or "").encode()
        else:
            data = await request.read()
        with self._lock:
            self._calls.append(SlackCall("upload", {"file_id": file_id, "length": len(data)}, None))
            if self._upload_failures:
                return web.Response(status=self._upload_failures.popleft(), text="upload failed")
            found = self._files.get(file_id)
            if found is None:
                return web.Response(status=404, text="no such upload")
            if len(data) != found["length"]:
                self._violations.append(f"upload {file_id}: {len(data)} bytes sent, {found['length']} declared")
                return web.Response(status=400, text="length mismatch")
            found["content"] = data
        return web.Response(status=200, text=f"OK - {len(data)}")

    def _files_complete_upload(self, args: Json) -> Json:
        """assumption: an ID Slack never handed out, or one whose bytes never arrived, is
        answered `file_not_found` (the pages list the error without saying when)."""
        files = args["files"]
        if not isinstance(files, list) or not files or not all(isinstance(f, dict) and f.get("id") for f in files):
            return {"ok": False, "error": "invalid_arguments"}
        found = [self._files.get(str(f["id"])) for f in files]
        if any(f is None or f["content"] is None for f in found):
            return {"ok": False, "error": "file_not_found"}
        channel = args.get("channel_id") or None
        thread_ts = args.get("thread_ts") or None
        if thread_ts is not None and channel is None:
            return {"ok": False, "error": "invalid_arguments"}
        if channel is not None:
            known = self._channels.get(channel)
            if known is not None and (known["is_archived"] or BOT_USER_ID not in known["members"]):
                return {"ok": False, "error": "not_in_channel"}
            if thread_ts is not None:
                parent = self._by_key.get((channel, str(thread_ts)))
                if parent is None:
                    return {"ok": False, "error": "invalid_thread_ts"}  # assumption: the name
                if parent["thread_ts"]:
                    thread_ts = parent["thread_ts"]  # a reply's ts: the file joins its parent's thread
        shown = []
        for given, stored in zip(files, found, strict=True):
            stored["title"] = given.get("title") or stored["name"]
            shown.append({"id": stored["id"], "name": stored["name"], "title": stored["title"]})
        if channel is not None:
            # Shared: a message from the bot carrying the files, in the channel or the thread.
            message = self._add_bot_message(channel, thread_ts, text=str(args.get("initial_comment") or ""), files=shown)
            for stored in found:
                stored["shares"].append({"channel": channel, "thread_ts": thread_ts, "ts": message["ts"]})
        return {"ok": True, "files": shown}

    # --- channel canvases (conversations.canvases.create from the shared documents; canvases.edit
    # described from Slack's page, see EXTRA_METHOD_DOCS; conversations.info shows the canvas) ---

    def _conversations_info(self, args: Json) -> Json:
        """A channel as the bot sees it. Slack's conversations.canvases.create page: "You can find
        the ID of the canvas in the channel.properties.canvas section in the response of a
        conversations.info request". assumption: that section holds `file_id` (the canvas ID)
        and `is_empty`, as Slack's answers carry; the pages show no example of it."""
        channel = self._channels.get(str(args["channel"]))
        if channel is None or (channel["is_private"] and BOT_USER_ID not in channel["members"]):
            return {"ok": False, "error": "channel_not_found"}
        shown = self._conversation(channel)
        canvas = self._canvases.get(channel.get("canvas") or "")
        if canvas is not None:
            shown["properties"] = {"canvas": {"file_id": canvas["id"], "is_empty": not canvas["markdown"]}}
        return {"ok": True, "channel": shown}

    @staticmethod
    def _document_problem(content: Any) -> str | None:
        """Why `document_content` is refused, else None. The documents give its shape ({"type":
        "markdown", "markdown": "..."}) and the 1 MiB limit, not the errors. assumption: a value
        that is not that shape is `invalid_arguments` (Slack's answer to an argument it cannot
        read), and markdown past the limit is `canvas_creation_failed` ("Canvas was unable to
        be created", the only content error conversations.canvases.create's document lists)."""
        if not isinstance(content, dict) or content.get("type") != "markdown" or not isinstance(content.get("markdown"), str):
            return "invalid_arguments"
        if len(content["markdown"]) > CANVAS_MARKDOWN_MAX:
            return "canvas_creation_failed"
        return None

    def _new_canvas(self, channel: Json, markdown: str, title: str | None) -> str:
        canvas_id = self._next_id("F")
        self._canvases[canvas_id] = {"id": canvas_id, "channel": channel["id"], "title": title, "markdown": markdown, "edits": 0}
        channel["canvas"] = canvas_id
        return canvas_id

    def _conversations_canvases_create(self, args: Json) -> Json:
        """One canvas per channel: a second create is `channel_canvas_already_exists` (its
        document). assumption: a channel the bot cannot see (unknown, or private without the
        bot) is `channel_not_found`, Slack's answer for a `channel` it cannot resolve (the
        method's own document lists no such error); a public one it is not in is allowed ("The
        channel must be public, or if it is private the app/user must be invited")."""
        channel = self._channels.get(str(args["channel_id"]))
        if channel is None or (channel["is_private"] and BOT_USER_ID not in channel["members"]):
            return {"ok": False, "error": "channel_not_found"}
        content = args.get("document_content")
        problem = self._document_problem(content) if content is not None else None
        if problem is not None:
            return {"ok": False, "error": problem}
        if channel["is_archived"]:
            return {"ok": False, "error": "channel_canvas_creation_failed"}  # assumption: the name
        if channel.get("canvas") in self._canvases:
            return {"ok": False, "error": "channel_canvas_already_exists"}
        markdown = content["markdown"] if content is not None else ""
        title = args.get("title")
        return {"ok": True, "canvas_id": self._new_canvas(channel, markdown, str(title) if title else None)}

    def _canvases_edit(self, args: Json) -> Json:
        """Only `replace` of the whole canvas changes the fake's text; the other operations are
        checked and answered, not applied. assumption: an unknown canvas is `canvas_not_found`
        and a change that breaks the page's rules `invalid_arguments` (the page lists no errors)."""
        canvas = self._canvases.get(str(args["canvas_id"]))
        if canvas is None:
            return {"ok": False, "error": "canvas_not_found"}
        changes = args["changes"]
        if not isinstance(changes, list) or len(changes) != 1 or not isinstance(changes[0], dict):
            return {"ok": False, "error": "invalid_arguments"}  # "Only one operation per API call"
        change = changes[0]
        operation = change.get("operation")
        if operation not in CANVAS_OPERATIONS or (operation in CANVAS_SECTION_OPERATIONS and not change.get("section_id")):
            return {"ok": False, "error": "invalid_arguments"}
        if operation != "delete":
            problem = self._document_problem(change.get("document_content"))
            if problem is not None:
                return {"ok": False, "error": "invalid_arguments" if problem == "invalid_arguments" else "canvas_editing_failed"}
        if operation == "replace" and not change.get("section_id"):
            canvas["markdown"] = change["document_content"]["markdown"]
        canvas["edits"] += 1
        return {"ok": True}

    def _users_info(self, args: Json) -> Json:
        user_id = str(args["user"])
        overrides = self._users.get(user_id, {})
        tz = overrides.get("tz", DEFAULT_TZ)
        real_name = overrides.get("real_name", f"User {user_id}")
        user: Json = {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": user_id.lower(),
            "real_name": real_name,
            "tz": tz,
            "tz_label": tz,
            "tz_offset": _tz_offset(tz),
            "is_bot": user_id == BOT_USER_ID,
            "deleted": False,
            "profile": {"real_name": real_name, "display_name": real_name},
        }
        user.update(overrides)
        return {"ok": True, "user": user}


def _tz_offset(tz: str) -> int:
    """Current UTC offset in seconds, as Slack reports it (DST-aware)."""
    try:
        from zoneinfo import ZoneInfo

        offset = datetime.now(ZoneInfo(tz)).utcoffset()
    except Exception:  # no tz database on this machine
        return -18000 if tz == DEFAULT_TZ else 0
    return int(offset.total_seconds()) if offset is not None else 0
