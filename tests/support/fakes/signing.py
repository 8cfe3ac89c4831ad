"""Build signed Slack requests (slash commands, interactions) for tests.

Bolt rejects any request without a valid ``X-Slack-Signature``, so tests that drive the
bot's HTTP endpoint must sign their bodies exactly as Slack does:
``v0=`` + hex HMAC-SHA256(signing_secret, ``v0:{timestamp}:{body}``).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import time
import uuid
from typing import Any
from urllib.parse import urlencode

__all__ = ["slack_signature_headers", "command_body", "command_fields", "interaction_body", "new_trigger_id", "trigger_issued_at"]

RESPONSE_URL = "http://127.0.0.1:9/resp"  # port 9 (discard): nothing should really post here

_trigger_counter = itertools.count(1)


def slack_signature_headers(signing_secret: str, body: bytes | str, timestamp: int | None = None) -> dict[str, str]:
    """Headers Slack would send with ``body``; ``timestamp`` defaults to now (Bolt rejects >5 min old)."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    base = f"v0:{ts}:{text}".encode()
    digest = hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": f"v0={digest}"}


def new_trigger_id(issued_at: float | None = None) -> str:
    """A never-repeated trigger id shaped like Slack's (``123.456.hex``), since the fake allows
    one use each, stamped with when it was issued (`issued_at`, seconds since the epoch; now
    by default) in milliseconds as its middle number, which the fake reads to expire it.
    assumption: Slack documents no meaning for a trigger's parts; the fake needs one to know a
    trigger's age, and only the tests (which make the triggers) and the fake read it."""
    issued = time.time() if issued_at is None else issued_at
    return f"{next(_trigger_counter)}.{int(issued * 1000)}.{uuid.uuid4().hex}"


_TRIGGER = re.compile(r"[0-9]+\.([0-9]+)\.[0-9a-f]+")


def trigger_issued_at(trigger_id: str) -> float | None:
    """When `new_trigger_id` issued this trigger (seconds since the epoch); None for a string
    not shaped like Slack's trigger ids."""
    match = _TRIGGER.fullmatch(trigger_id)
    return int(match[1]) / 1000 if match else None


def command_body(
    command: str,
    text: str,
    user_id: str = "U123",
    channel_id: str = "C123",
    trigger_id: str | None = None,
    team_id: str = "T1",
) -> str:
    """Form-encoded body of a slash command invocation, with the fields Slack sends."""
    return urlencode(command_fields(command, text, user_id, channel_id, trigger_id, team_id))


def command_fields(
    command: str,
    text: str,
    user_id: str = "U123",
    channel_id: str = "C123",
    trigger_id: str | None = None,
    team_id: str = "T1",
) -> dict[str, str]:
    """The fields of a slash command; over Socket Mode they are the envelope's payload as they are."""
    return {
        "token": "verification-token-unused",
        "team_id": team_id,
        "team_domain": "example",
        "channel_id": channel_id,
        "channel_name": "general",
        "user_id": user_id,
        "user_name": user_id.lower(),
        "command": command,
        "text": text,
        "api_app_id": "ABOT",
        "is_enterprise_install": "false",
        "response_url": RESPONSE_URL,
        "trigger_id": trigger_id if trigger_id is not None else new_trigger_id(),
    }


def interaction_body(payload: dict[str, Any]) -> str:
    """Form-encoded body of an interaction (block action, view submission, shortcut)."""
    return urlencode({"payload": json.dumps(payload, separators=(",", ":"))})
