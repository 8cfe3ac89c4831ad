"""The HTTP edge: what a request must be before Bolt, or anything else, reads it.

A hostile body is cheap to send and dear to read, so every check that needs no body comes
first: the size from ``Content-Length`` (413 before a byte is kept: at most as much again is
read and dropped first, so the answer is not lost to a reset, and nothing when the sender
waits for "100 Continue"), then the shape and age
of Slack's signature headers (401). Only then is the body read, stopping at the cap when it
is chunked, and its signature (401) and shape (400) checked. Each refusal is one log line,
no traceback, quoting nothing the sender chose except an escaped, shortened path.

A request that passes is Bolt's at once: the body parsed here is handed to it and its answer
written here, so the path Slack times has no router, request or response object on it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import nullcontext
from typing import Any

from slack_bolt.request.internals import parse_body

from bot.inbound.answered import answering
from bot.inbound.drain import Drain
from bot.inbound.guard import SlowClientLog
from bot.ops.redaction import escape_controls

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: A signed Slack request's answer: status, headers (as Bolt gives them: each name with its
#: values) and body text, from its parsed body and its headers (lower-case names).
Dispatch = Callable[[dict[str, Any], dict[bytes, bytes]], Awaitable[tuple[int, dict[str, list[str]], str]]]

DEFAULT_MAX_BODY = 1024 * 1024
SLACK_PATH = "/slack/events"
# Slack's own rule (and Bolt's): a signature older or newer than five minutes is a replay.
MAX_SIGNATURE_AGE = 5 * 60
# Slack sends its whole request at once; a sender that trickles a body holds a connection
# (and a graceful shutdown) hostage, so reading one is bounded too.
DEFAULT_BODY_TIMEOUT = 10.0

_TIMESTAMP = re.compile(rb"[0-9]{1,12}")
_SIGNATURE = re.compile(rb"v0=[0-9a-f]{64}")


class Refused(Exception):
    """A request the edge answers itself: the status and a reason for the log."""

    def __init__(self, status: int, reason: str, *, unread: bool = False):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        #: Refused before its body was read (`Content-Length` over the limit).
        self.unread = unread


class _Gone(Exception):
    """The sender hung up while we read its body: there is no one to answer."""


class SlackEdge:
    """Pure ASGI middleware around the whole app: body cap on every route, signature and
    payload checks on ``POST /slack/events``. A Slack request that passes goes straight to
    `dispatch` (Bolt, handed the body parsed here) and its answer is written here: no router,
    request or response object of the app's framework on the path Slack times (three seconds,
    also fifty at once). Every other request is replayed to the app unchanged."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        dispatch: Dispatch,
        signing_secret: str | None,
        max_body: int = DEFAULT_MAX_BODY,
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
        now: Callable[[], float] = time.time,
        drain: Drain | None = None,
        slow_clients: SlowClientLog | None = None,
    ) -> None:
        self.app = app
        self._dispatch = dispatch
        self._drain = drain
        self._slow_clients = slow_clients
        self._secret = signing_secret.encode() if signing_secret else None
        self.max_body = max_body
        self.body_timeout = body_timeout
        self._now = now

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        is_slack = scope["method"] == "POST" and scope["path"] == SLACK_PATH
        try:
            if is_slack and self._drain is not None and self._drain.closed:
                # Past the drain delay (a kept-alive connection): the balancer tries elsewhere.
                raise Refused(503, "the bot is stopping (its listener is closed); nothing was read")
            self._check_length(headers)
            if is_slack:
                self._check_signature_headers(headers)
            body = await self._read_body(receive)
            if is_slack:
                self._check_signature(headers, body)
                parsed, problem = parse_payload(body, headers.get(b"content-type", b"").decode("latin-1"))
                if problem:
                    raise Refused(400, problem)
        except _Gone:
            return
        except Refused as refused:
            if refused.status == 408 and self._slow_clients is not None:
                # A trickled body is a slow client: counted with the others, a line a second at most.
                self._slow_clients.closed("a body not sent within the time", _address(scope))
                await _answer(send, refused.status)
                return
            if refused.unread and headers.get(b"expect", b"").lower() != b"100-continue":
                # A sender waiting for "100 Continue" has sent nothing: answered at once.
                await self._discard_rest(receive, more=True)
            log.warning(
                "refused %s %s from %s: %s (HTTP %s)",
                scope["method"],
                escape_controls(scope["path"][:100]),
                _client(scope),
                refused.reason,
                refused.status,
            )
            await _answer(send, refused.status)
            return
        if not is_slack:
            await self._serve(scope, body, receive, send)
            return
        # The answer goes out at the listener's ack; its work after a bare ack waits until the
        # answer is written, in a task the drain is told of (answered.py).
        drain = self._drain
        counted = drain.request() if drain is not None else nullcontext()
        with answering(drain.track if drain is not None else None) as answer, counted:
            status, answer_headers, content = await self._dispatch(parsed, headers)
            await _respond(send, status, answer_headers, content)
            answer.sent()

    async def _serve(self, scope: Scope, body: bytes, receive: Receive, send: Send) -> None:
        if self._drain is None:
            await self.app(scope, _replay(body, receive), send)
            return
        with self._drain.request():
            await self.app(scope, _replay(body, receive), send)

    # -- checks, cheapest first --------------------------------------------------------------

    def _check_length(self, headers: dict[bytes, bytes]) -> None:
        declared = headers.get(b"content-length")
        if declared is None:
            return  # chunked (or no body): the cap applies while reading
        if not declared.isdigit():  # h11 refuses these already; this is for other servers
            raise Refused(400, "its Content-Length is not a number")
        if int(declared) > self.max_body:
            raise Refused(413, f"a body of {int(declared)} bytes is over the {self.max_body}-byte limit", unread=True)

    def _check_signature_headers(self, headers: dict[bytes, bytes]) -> None:
        if self._secret is None:
            raise Refused(401, "Slack requests over HTTP need SLACK_SIGNING_SECRET")
        timestamp = headers.get(b"x-slack-request-timestamp", b"")
        signature = headers.get(b"x-slack-signature", b"")
        if not timestamp or not signature:
            raise Refused(401, "it is not signed (no Slack signature headers)")
        if not _TIMESTAMP.fullmatch(timestamp):
            raise Refused(401, "its X-Slack-Request-Timestamp is not a number of seconds")
        if not _SIGNATURE.fullmatch(signature):
            raise Refused(401, "its X-Slack-Signature is not a v0 signature")
        if abs(self._now() - int(timestamp)) > MAX_SIGNATURE_AGE:
            raise Refused(401, "its signature is more than five minutes from now")

    def _check_signature(self, headers: dict[bytes, bytes], body: bytes) -> None:
        assert self._secret is not None  # _check_signature_headers refused otherwise
        timestamp = headers[b"x-slack-request-timestamp"]
        expected = b"v0=" + hmac.new(self._secret, b"v0:" + timestamp + b":" + body, hashlib.sha256).hexdigest().encode()
        if not hmac.compare_digest(expected, headers[b"x-slack-signature"]):
            raise Refused(401, "its signature does not match (wrong signing secret, or a changed body)")

    async def _read_body(self, receive: Receive) -> bytes:
        """The whole body, never more than ``max_body`` bytes of it in memory."""
        body = bytearray()
        try:
            async with asyncio.timeout(self.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _Gone
                    body += message.get("body", b"")
                    if len(body) > self.max_body:
                        break
                    if not message.get("more_body", False):
                        return bytes(body)
        except TimeoutError:
            raise Refused(408, f"its body did not arrive within {self.body_timeout:g} seconds") from None
        await self._discard_rest(receive, more=message.get("more_body", False))
        raise Refused(413, f"its chunked body went over the {self.max_body}-byte limit")

    async def _discard_rest(self, receive: Receive, *, more: bool) -> None:
        """Read and drop what the sender still sends of a body over the limit (at most as much
        again, within the body timeout) before the 413 goes out: a socket closed with unread
        bytes in it is reset, and the reset can destroy the 413 before the sender reads it
        (seen on loopback: a 64 KiB + 1 body refused on its Content-Length, unread)."""
        dropped = 0
        try:
            async with asyncio.timeout(self.body_timeout):
                while more and dropped <= self.max_body:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    dropped += len(message.get("body", b""))
                    more = message.get("more_body", False)
        except TimeoutError:
            return


def payload_problem(body: bytes, content_type: str) -> str | None:
    """Why a signed body is not a request the listeners can answer, or None when it is."""
    return parse_payload(body, content_type)[1]


def parse_payload(body: bytes, content_type: str) -> tuple[dict[str, Any], str | None]:
    """The body as Bolt reads it, and why it is not a request the listeners can answer (None
    when it is).

    Parsed with Bolt's own parser, so this judges exactly what Bolt will see (and Bolt is
    handed this dict rather than parsing it again). The fields required are the ones every
    listener reads; anything else is left to Bolt, which answers kinds nobody listens to
    with a 404 and one line.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {}, "its body is not UTF-8"
    try:
        parsed = parse_body(text, content_type.split(";")[0].strip() or None)
    except ValueError:  # json.JSONDecodeError included
        return {}, "its payload is not JSON"
    if not isinstance(parsed, dict) or not parsed:
        return {}, "its body is not a Slack command, interaction or event"
    return parsed, _problem(parsed)


def _problem(parsed: dict[str, Any]) -> str | None:
    if "ssl_check" in parsed:
        return None
    if "command" in parsed:
        return _command_problem(parsed)
    kind = parsed.get("type")
    if not isinstance(kind, str) or not kind:
        return "its payload has no type"
    if kind in ("block_actions", "view_submission", "view_closed"):
        return _interaction_problem(kind, parsed)
    if kind == "message_action":
        return _shortcut_problem(parsed)
    if kind == "event_callback":
        return _event_problem(parsed)
    return None


def _shortcut_problem(payload: dict[str, Any]) -> str | None:
    # As Slack documents the message shortcut payload: the person, the trigger that opens the
    # form, the shortcut's callback_id, the channel and the message (its ts at least).
    if not isinstance(payload.get("user"), dict) or not _text(payload["user"].get("id")):
        return "its message_action payload has no user id"
    for field in ("trigger_id", "callback_id"):
        if not _text(payload.get(field)):
            return f"its message_action payload has no {field}"
    if not isinstance(payload.get("channel"), dict) or not _text(payload["channel"].get("id")):
        return "its message_action payload has no channel id"
    if not isinstance(payload.get("message"), dict) or not _text(payload["message"].get("ts")):
        return "its message_action payload has no message ts"
    if not isinstance(payload["message"].get("text", ""), str):
        return "its message_action message text is not text"
    return None


def _event_problem(envelope: dict[str, Any]) -> str | None:
    # The Events API envelope wraps one event object with its type; app_home_opened names
    # the person whose home tab it is (the one event sitrep subscribes to).
    event = envelope.get("event")
    if not isinstance(event, dict) or not _text(event.get("type")):
        return "its event_callback has no event with a type"
    if event["type"] == "app_home_opened" and not _text(event.get("user")):
        return "its app_home_opened event has no user"
    return None


def _command_problem(command: dict[str, Any]) -> str | None:
    # assumption: Slack sends all of these with every slash command (its docs list them,
    # and the harness sends what they list); the listeners need each one.
    name = command.get("command")
    if not isinstance(name, str) or not name.startswith("/"):
        return "its command is not a slash command"
    for field in ("user_id", "channel_id", "trigger_id"):
        if not _text(command.get(field)):
            return f"its slash command has no {field}"
    if not isinstance(command.get("text", ""), str):
        return "its slash command text is not text"
    return None


def _interaction_problem(kind: str, payload: dict[str, Any]) -> str | None:
    # assumption: as Slack documents these payloads, each carries the person (user.id); a
    # button click carries its trigger_id and actions, a modal its view id and callback_id.
    if not isinstance(payload.get("user"), dict) or not _text(payload["user"].get("id")):
        return f"its {kind} payload has no user id"
    if kind == "block_actions":
        actions = payload.get("actions")
        if not isinstance(actions, list) or not actions:
            return "its block_actions payload has no actions"
        if not all(isinstance(a, dict) and _text(a.get("action_id")) for a in actions):
            return "its block_actions payload has an action without an action_id"
        if not _text(payload.get("trigger_id")):
            return "its block_actions payload has no trigger_id"
        return None
    view = payload.get("view")
    if not isinstance(view, dict) or not _text(view.get("id")) or not _text(view.get("callback_id")):
        return f"its {kind} payload has no view id and callback_id"
    if kind == "view_submission" and not isinstance((view.get("state") or {}).get("values", {}), dict):
        return "its view_submission state is not a set of values"
    return None


def _text(value: object) -> bool:
    return isinstance(value, str) and bool(value)


def _headers(scope: Scope) -> dict[bytes, bytes]:
    # Header names arrive lower-cased from every ASGI server; a repeated header keeps its first.
    found: dict[bytes, bytes] = {}
    for name, value in scope.get("headers", []):
        found.setdefault(name.lower(), value)
    return found


def _address(scope: Scope) -> str | None:
    client = scope.get("client")
    return client[0] if client else None


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "an unknown address"


def _replay(body: bytes, receive: Receive) -> Receive:
    """Hand the app the body already read, then the server's own messages (disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


_REASONS = {
    400: "bad request",
    401: "invalid request",
    408: "request timeout",
    413: "request too large",
    503: "service unavailable",
}


async def _respond(send: Send, status: int, headers: dict[str, list[str]], content: str) -> None:
    """A dispatched request's answer: its status, the first value of each of Bolt's headers
    (as Bolt's Starlette adapter sends them) and the body, with its length. Bolt answers a
    request with 200, 404 or 500 and a content type; sitrep sets no cookie (Bolt's OAuth flow,
    the only one that does, is not used)."""
    body = content.encode()
    raw = [(b"content-length", str(len(body)).encode())]
    raw += [
        (name.lower().encode("latin-1"), values[0].encode("latin-1"))
        for name, values in headers.items()
        if values and name.lower() != "content-length"
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _answer(send: Send, status: int) -> None:
    # Connection: close, so the server drops the rest of a body nobody will read instead of
    # draining it to keep the connection alive.
    content = json.dumps({"error": _REASONS[status]}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(content)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})
