"""The HTTP edge and redaction: hostile bodies are refused before they are read, malformed
requests get one log line and no traceback, and no piece of a secret an upstream echoes
reaches Slack or the log.

The size tests run `sitrep run` as a real process and read its peak memory from /proc; the
rest drive the in-process bot over HTTP (`tests/support/harness.py`) with the fakes.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from bot.errors import UpstreamRejected
from bot.inbound.drain import Drain
from bot.inbound.edge import SlackEdge, payload_problem
from bot.inbound.guard import SlowClientLog
from bot.ops.redaction import escape_controls, scrub, upstream_text
from bot.settings import Settings
from store.models import Draft
from tests.support.fakes.signing import (
    command_body,
    interaction_body,
    slack_signature_headers,
)
from tests.support.fakes.slack_api import WAIT_BOUND
from tests.support.harness import CHANNEL, SIGNING_SECRET, BotUnderTest, free_port
from tests.support.incidents import declare_values, open_declare_modal
from tests.support.maintenance import open_modal, schedule_values, wait_answer
from tests.support.process import SPEC_VARIABLES, start_sitrep

MiB = 1024 * 1024
FORM = "application/x-www-form-urlencoded"


# --- helpers --------------------------------------------------------------------------------------


def pieces(secret: str, text: str, size: int = 8) -> list[str]:
    """Every `size`-character piece of `secret` found in `text`, ignoring case."""
    folded = text.lower()
    return [secret[i : i + size] for i in range(len(secret) - size + 1) if secret[i : i + size].lower() in folded]


@pytest.fixture
def server_log(caplog):
    """Log records of the bot's side only (not this test's HTTP client), uvicorn's included:
    uvicorn's loggers do not propagate, and an unhandled error is logged there."""
    uvicorn_logger = logging.getLogger("uvicorn")
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.INFO, logger="sitrep.bolt")
    caplog.set_level(logging.INFO, logger="slack_bolt")
    attached: list[logging.Logger] = []

    def records() -> list[logging.LogRecord]:
        if not attached:  # uvicorn configures its loggers when the bot starts; attach after
            uvicorn_logger.addHandler(caplog.handler)
            attached.append(uvicorn_logger)
        # the test's own HTTP client, and timers that run whenever they like
        return [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore", "apscheduler", "scheduler"))]

    records()
    caplog.clear()
    yield records
    for logger in attached:
        logger.removeHandler(caplog.handler)


def one_line(records: list[logging.LogRecord], caplog) -> str:
    messages = [r.getMessage() for r in records]
    assert len(messages) == 1, messages
    assert "\n" not in messages[0], messages[0]
    assert not any(r.exc_info for r in records), "a traceback was logged"
    assert "Traceback" not in caplog.text
    return messages[0]


def post_raw(bot: BotUnderTest, body: str | bytes, headers: dict[str, str]) -> httpx.Response:
    return bot.http.post("/slack/events", content=body, headers=headers)


def signed(body: str | bytes, content_type: str = FORM) -> dict[str, str]:
    """Slack's signature over the exact bytes (the shared helper wants text; some bodies are not)."""
    raw = body.encode() if isinstance(body, str) else body
    timestamp = str(int(time.time()))
    digest = hmac.new(SIGNING_SECRET.encode(), b"v0:" + timestamp.encode() + b":" + raw, hashlib.sha256).hexdigest()
    return {"Content-Type": content_type, "X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": f"v0={digest}"}


@pytest.fixture(scope="module")
def edge_bot(tmp_path_factory, slack_server, statuspage_server):
    """One bot for the many request-shape tests (each starts from a fresh fake Slack); its
    body limit is 64 KiB so the limit tests stay small."""
    settings = Settings(
        _env_file=None,
        slack_bot_token="xoxb-test-token",
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=slack_server.url,
        sitrep_channel=CHANNEL,
        statuspage_url=statuspage_server.url,
        statuspage_api_key=statuspage_server.api_key,
        database_url=f"sqlite:///{tmp_path_factory.mktemp('edge') / 'sitrep.db'}",
        sitrep_max_body=64 * 1024,
    )
    with BotUnderTest(settings) as running:
        yield running


# --- redaction (unit: bot.errors) -----------------------------------------------------------------

KEY = "AFk7Q2mZ9xLw4RtB8nVc"


def test_scrub_hides_the_whole_secret_and_any_case_of_it():
    assert scrub(f"key {KEY} refused", [KEY]) == "key [redacted] refused"
    assert scrub(f"KEY {KEY.upper()} / {KEY.lower()}", [KEY]) == "KEY [redacted] / [redacted]"


@pytest.mark.parametrize("piece", [KEY[:8], KEY[:9], KEY[-8:], KEY[5:14], KEY[3:11].swapcase()])
def test_scrub_hides_any_piece_of_eight_or_more_characters(piece):
    text = f"the server said {piece}, and more"
    assert scrub(text, [KEY]) == "the server said [redacted], and more"


def test_scrub_keeps_pieces_shorter_than_eight_characters():
    text = f"id {KEY[:7]} and {KEY[-7:]}"
    assert scrub(text, [KEY]) == text


def test_scrub_joins_overlapping_and_adjacent_hits_into_one():
    assert scrub(f"<{KEY}{KEY[:10]}>", [KEY]) == "<[redacted]>"


def test_scrub_hides_short_secrets_only_whole_ignoring_case():
    assert scrub("token ABC123x and abc123 and abc12", ["abc123"]) == "token [redacted]x and [redacted] and abc12"


def test_scrub_hides_names_only_whole():
    text = "No account OPS@example.com; see https://docs.example.com/api"
    assert scrub(text, [], whole=["ops@example.com"]) == "No account [redacted]; see https://docs.example.com/api"


def grouped(secret: str, separator: str, size: int = 4) -> str:
    """The secret as an upstream may echo it: in groups of `size` with `separator` between."""
    return separator.join(secret[i : i + size] for i in range(0, len(secret), size))


def alnum_pieces(secret: str, text: str, size: int = 8) -> list[str]:
    """`pieces`, blind to whatever stands between letters and digits."""
    compact = "".join(c for c in text if c.isalnum())
    return pieces("".join(c for c in secret if c.isalnum()), compact, size)


@pytest.mark.parametrize("separator", [" ", "-", " - ", ".", "_", "\u00a0", ":", "/"])
def test_scrub_hides_a_secret_echoed_in_groups_with_separators(separator):
    text = f"key {grouped(KEY, separator)} is revoked"
    assert scrub(text, [KEY]) == "key [redacted] is revoked"
    assert scrub(f"x {grouped(KEY[2:12], separator, 3)} y", [KEY]) == "x [redacted] y"  # a piece of it too


def test_scrub_hides_a_secret_whose_own_dashes_were_dropped_or_changed():
    secret = "sp-live-4f9a-77c2-9b1e"
    assert scrub("sent sp live 4f9a 77c2 9b1e", [secret]) == "sent [redacted]"
    assert scrub("sent splive4f9a77c29b1e!", [secret]) == "sent [redacted]!"


def test_scrub_by_groups_keeps_ordinary_words_around_the_secret():
    text = f"Key: {grouped(KEY, ' ')}. Try again later."
    assert scrub(text, [KEY]) == "Key: [redacted]. Try again later."


def test_upstream_text_redacts_before_the_cut():
    message = "v" * 291 + KEY + " (echoed)"  # the key straddles character 300
    cut = upstream_text(message, [KEY], 300)
    assert len(cut) <= 300 and cut.endswith("…")
    assert pieces(KEY, cut) == []
    # what the old order (cut, then an exact match) let through:
    assert pieces(KEY, message[:299].replace(KEY, "[redacted]")) == [KEY[:8]]


def test_control_characters_are_escaped():
    assert escape_controls("a\nb\r\tc\x1b[31md\x00e\u2028f\u202eg\x85") == "a\\nb\\r\\tc\\x1b[31md\\x00e\\u2028f\\u202eg\\x85"
    assert escape_controls("Zurück, ça va — ok") == "Zurück, ça va — ok"


def test_upstream_errors_are_one_line_whoever_built_them():
    err = UpstreamRejected("AppFirst", "Bad\nERROR forged line")
    assert err.message == "Bad\\nERROR forged line"
    assert "\n" not in str(err) and "\n" not in repr(err)


# --- redaction end to end: AppFirst's message carries the key --------------------------------------

AF_KEY = "AFk7Q2mZ9xLw4RtB8nVcJ5pD"


@pytest.fixture
def af_bot(appfirst_settings, appfirst, upstream_clock):
    appfirst.api_key = AF_KEY  # a switch: reset() restores the default
    settings = appfirst_settings.model_copy(update={"appfirst_api_key": SecretStr(AF_KEY)})
    # The injected clock: the form's times (December 2026) stay in the future on any date.
    with BotUnderTest(settings, clock=upstream_clock) as bot:
        yield bot


def drafts(bot: BotUnderTest) -> list[Draft]:
    async def read():
        async with bot.ctx.db.session() as session:
            return list((await session.execute(select(Draft))).scalars())

    return bot.run(read())


# 290 characters, then the key: the old 300-character cut kept its first 9 characters.
ACROSS_THE_CUT = ("Invalid servers for this account " + "." * 300)[:285] + " key=" + AF_KEY


@pytest.mark.parametrize("status", [400, 500])
@pytest.mark.parametrize(
    "message",
    [ACROSS_THE_CUT, f"Account {AF_KEY.upper()} is over its limit.", f"Account {AF_KEY[:12]}… is over its limit."],
    ids=["across-the-cut", "upper-case", "prefix"],
)
def test_no_piece_of_the_appfirst_key_reaches_slack_or_the_log(af_bot, slack, appfirst, caplog, status, message):
    appfirst.failure_message = message
    appfirst.fail_times(1, status=status)
    caplog.set_level(logging.INFO)
    view = open_modal(af_bot, slack)
    af_bot.submit(view, schedule_values("Kernel updates", description=None, servers="1, 2"))
    answer = wait_answer(slack)
    assert "redacted" in json.dumps(answer["blocks"])  # the message was shown, minus the key
    everything_slack_saw = json.dumps([call.args for call in slack.calls])
    assert pieces(AF_KEY, everything_slack_saw) == []
    assert any("did not take" in r.getMessage() for r in caplog.records)  # the failure was logged...
    assert pieces(AF_KEY, caplog.text) == []  # ...without the key
    assert all(pieces(AF_KEY, d.error or "") == [] for d in drafts(af_bot))


def test_an_upstream_newline_cannot_forge_a_log_line(af_bot, slack, appfirst, caplog):
    forged = "2026-11-25 12:00:00,000 ERROR sitrep: admin token rotated"
    appfirst.failure_message = f"Bad server id.\n{forged}\r\n\x1b[2K"
    appfirst.fail_times(1, status=400)
    caplog.set_level(logging.INFO)
    view = open_modal(af_bot, slack)
    af_bot.submit(view, schedule_values("Kernel updates", description=None, servers="1"))
    answer = json.dumps(wait_answer(slack)["blocks"])
    assert "Bad server id.\\\\n2026" in answer  # shown, escaped (JSON doubles the backslash)
    logged = [r.getMessage() for r in caplog.records if "Bad server id." in r.getMessage()]
    assert logged, "the refusal was not logged"
    for line in logged:
        assert "\n" not in line and "\r" not in line and "\x1b" not in line
        assert "Bad server id.\\n" + forged in line


def test_a_long_status_page_message_is_cut_after_redaction(bot, slack, statuspage):

    key = statuspage.api_key
    statuspage.failure_message = "Z" * 295 + key + " and more " * 400  # 4,000+ characters
    statuspage.fail_times(1, status=400)
    view = open_declare_modal(bot, slack)
    bot.submit(view, declare_values())
    answer = slack.wait_for(lambda: slack.ephemerals()[0] if slack.ephemerals() else None)
    shown = json.dumps(answer)
    assert "ZZZZ" in shown and " and more" not in shown  # cut to 300, so it fits a section
    assert pieces(key, shown) == []


def declare_refused_with_the_secret_echoed(bot, slack, statuspage, caplog, secret: str) -> None:
    """The status page refuses a declare, echoing `secret` in groups of 4 with spaces and of 5
    with dashes: the person sees the refusal, and neither Slack nor the log any piece of it."""
    statuspage.failure_message = f"Refused: credential {grouped(secret, ' ')} / {grouped(secret, '-', 5)} is not valid here."
    statuspage.fail_times(1, status=400)
    caplog.set_level(logging.DEBUG)
    view = open_declare_modal(bot, slack)
    bot.submit(view, declare_values())
    answer = slack.wait_for(lambda: slack.ephemerals()[0] if slack.ephemerals() else None)
    shown = json.dumps(answer)
    assert "Refused: credential [redacted]" in shown
    assert alnum_pieces(secret, shown) == []
    assert alnum_pieces(secret, json.dumps([call.args for call in slack.calls])) == []
    assert all(alnum_pieces(secret, r.getMessage()) == [] for r in caplog.records)


@pytest.mark.parametrize("which", ["bot token", "signing secret", "status page key"])
def test_any_secret_sitrep_holds_echoed_in_groups_by_the_status_page_is_scrubbed(bot, slack, statuspage, caplog, which):
    secret = {
        "bot token": bot.ctx.settings.slack_bot_token,
        "signing secret": bot.ctx.settings.slack_signing_secret,
        "status page key": bot.ctx.settings.statuspage_api_key,
    }[which].get_secret_value()
    declare_refused_with_the_secret_echoed(bot, slack, statuspage, caplog, secret)


#: Secrets the HTTP tests' bot does not hold otherwise: Socket Mode's app-level token, and the
#: other upstream's key (a status page echoing AppFirst's).
OTHER_SECRETS = {
    "app token": ("slack_app_token", "xapp-1-A0SITREP7-7301234567890-5f2c9a8e1b7d4c3a9e0f6b2d8c1a7e5f"),
    "AppFirst key": ("appfirst_api_key", AF_KEY),
}


@pytest.mark.parametrize("which", sorted(OTHER_SECRETS))
def test_the_app_token_and_the_other_upstreams_key_echoed_in_groups_are_scrubbed_too(settings, slack, statuspage, caplog, which):
    field, secret = OTHER_SECRETS[which]
    with BotUnderTest(settings.model_copy(update={field: SecretStr(secret)})) as bot:
        declare_refused_with_the_secret_echoed(bot, slack, statuspage, caplog, secret)


# --- malformed headers: 401, one line, no traceback ----------------------------------------------


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "v0=" + "0" * 64}, "Timestamp is not a number"),
        ({"X-Slack-Request-Timestamp": "1e9", "X-Slack-Signature": "v0=" + "0" * 64}, "Timestamp is not a number"),
        ({"X-Slack-Request-Timestamp": "-5", "X-Slack-Signature": "v0=" + "0" * 64}, "Timestamp is not a number"),
        ({"X-Slack-Request-Timestamp": "9" * 40, "X-Slack-Signature": "v0=" + "0" * 64}, "Timestamp is not a number"),
        ({"X-Slack-Request-Timestamp": "NOW", "X-Slack-Signature": "garbage"}, "Timestamp is not a number"),
        ({"X-Slack-Request-Timestamp": "{now}", "X-Slack-Signature": "garbage"}, "Signature is not a v0 signature"),
        ({"X-Slack-Request-Timestamp": "{now}", "X-Slack-Signature": "v0=" + "Z" * 64}, "Signature is not a v0"),
        ({"X-Slack-Request-Timestamp": "{now}"}, "not signed"),
        ({"X-Slack-Signature": "v0=" + "0" * 64}, "not signed"),
        ({}, "not signed"),
        ({"X-Slack-Request-Timestamp": "1000000000", "X-Slack-Signature": "v0=" + "0" * 64}, "five minutes"),
    ],
)
def test_malformed_signature_headers_are_401_with_one_line(edge_bot, server_log, caplog, headers, reason):
    headers = {k: v.replace("{now}", str(int(time.time()))) for k, v in headers.items()}
    body = "token=x&command=%2Fincident&text=help\n2026-11-25 ERROR forged"
    answer = post_raw(edge_bot, body, {"Content-Type": FORM, **headers})
    assert answer.status_code == 401
    line = one_line(server_log(), caplog)
    assert reason in line and "(HTTP 401)" in line
    assert "forged" not in caplog.text  # the sender's body is never quoted


def test_a_wrong_signature_is_401_and_the_body_is_not_logged(edge_bot, server_log, caplog):
    body = command_body("/incident", "help") + "&x=%0Aforged"
    headers = {"Content-Type": FORM, **slack_signature_headers("not-the-signing-secret", body)}
    answer = post_raw(edge_bot, body, headers)
    assert answer.status_code == 401
    assert "does not match" in one_line(server_log(), caplog)
    assert "forged" not in caplog.text


def test_a_changed_body_breaks_the_signature(edge_bot, server_log, caplog):
    body = command_body("/incident", "help")
    headers = signed(body)
    answer = post_raw(edge_bot, body.replace("help", "list"), headers)
    assert answer.status_code == 401
    assert "does not match" in one_line(server_log(), caplog)


def test_a_signed_request_still_reaches_the_listeners(edge_bot, server_log, caplog):
    answer = edge_bot.command("help")
    assert answer.status_code == 200 and "/incident" in answer.text
    assert [r.getMessage() for r in server_log() if r.name == "bot.inbound.edge"] == []


# --- signed but malformed payloads: 400, one line ------------------------------------------------

MALFORMED_PAYLOADS = [
    ("payload=notjson", FORM, "not JSON"),
    ('{"type": ', "application/json", "not JSON"),
    ("payload=%5B1%2C2%5D", FORM, "not a Slack command"),
    ("payload=%22text%22", FORM, "not a Slack command"),
    ("payload=%7B%7D", FORM, "not a Slack command"),
    ("", FORM, "not a Slack command"),
    ("hello=world", FORM, "no type"),
    (interaction_body({"type": 5}), FORM, "no type"),
    (interaction_body({"type": "view_submission", "user": {"id": "U1"}}), FORM, "no view id and callback_id"),
    (interaction_body({"type": "view_submission", "view": {"id": "V1", "callback_id": "x"}}), FORM, "no user id"),
    (
        interaction_body(
            {"type": "view_submission", "user": {"id": "U1"}, "view": {"id": "V1", "callback_id": "c", "state": {"values": []}}}
        ),
        FORM,
        "not a set of values",
    ),
    (interaction_body({"type": "block_actions", "user": {"id": "U1"}, "trigger_id": "1.2.3"}), FORM, "no actions"),
    (
        interaction_body({"type": "block_actions", "user": {"id": "U1"}, "trigger_id": "1.2", "actions": [{"value": "1"}]}),
        FORM,
        "without an action_id",
    ),
    (interaction_body({"type": "block_actions", "user": {"id": "U1"}, "actions": [{"action_id": "a"}]}), FORM, "no trigger_id"),
    ("command=%2Fincident", FORM, "no user_id"),
    ("command=%2Fincident&user_id=U1&channel_id=C1", FORM, "no trigger_id"),
    ("command=incident&user_id=U1&channel_id=C1&trigger_id=1.2.3", FORM, "not a slash command"),
    (b"payload=\xff\xfe", FORM, "not UTF-8"),
]


@pytest.mark.parametrize(("body", "content_type", "reason"), MALFORMED_PAYLOADS)
def test_signed_malformed_payloads_are_400_with_one_line(edge_bot, server_log, caplog, slack, body, content_type, reason):
    answer = post_raw(edge_bot, body, signed(body, content_type))
    assert answer.status_code == 400
    line = one_line(server_log(), caplog)
    assert reason in line and "(HTTP 400)" in line
    assert [c.method for c in slack.calls if c.method != "auth.test"] == []  # no listener ran


def test_payload_check_lets_every_kind_the_harness_sends_through():
    """Only what a listener could not answer is refused; kinds nobody listens to are Bolt's."""
    assert payload_problem(command_body("/incident", "").encode(), FORM) is None
    assert payload_problem(b"ssl_check=1&token=x", FORM) is None
    assert payload_problem(json.dumps({"type": "url_verification", "challenge": "c"}).encode(), "application/json") is None
    assert payload_problem(interaction_body({"type": "shortcut", "user": {"id": "U1"}}).encode(), FORM) is None
    view_closed = {"type": "view_closed", "user": {"id": "U1"}, "view": {"id": "V1", "callback_id": "c"}}
    assert payload_problem(interaction_body(view_closed).encode(), FORM) is None


# --- body size, in process: the limit is exact, both with and without Content-Length ---------------


def padded_command(size: int) -> str:
    body = command_body("/incident", "help") + "&pad="
    return body + "p" * (size - len(body))


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_at_the_limit_passes_and_one_byte_more_is_413(edge_bot, server_log, caplog, chunked):
    def send(body: str) -> httpx.Response:
        content = iter([body.encode()[i : i + 4096] for i in range(0, len(body), 4096)]) if chunked else body
        return edge_bot.http.post("/slack/events", content=content, headers=signed(body))

    assert send(padded_command(64 * 1024)).status_code == 200
    caplog.clear()
    refused = send(padded_command(64 * 1024 + 1))
    assert refused.status_code == 413
    assert refused.headers["connection"] == "close"
    line = one_line(server_log(), caplog)
    assert ("chunked" in line) is chunked and "65536-byte limit" in line


def test_healthz_is_not_affected(edge_bot):
    assert edge_bot.http.get("/healthz").json() == {"ok": True}


def test_slack_s_path_takes_only_post(edge_bot, server_log):
    answer = edge_bot.http.get("/slack/events")
    assert answer.status_code == 405 and answer.headers["allow"] == "POST"
    assert [r for r in server_log() if r.levelno >= logging.ERROR] == []


# --- the middleware alone (unit): a trickled body, a sender that hangs up --------------------------


def run_edge(
    messages: list[dict] | None, headers=(), path: str = "/other", secret: str | None = SIGNING_SECRET, **options
) -> tuple[list[dict], list[bytes]]:
    """Drive SlackEdge around a recording app and dispatch with the given receive messages
    (None: never): what reached the app (its body) or the dispatch (the parsed body)."""
    reached: list[bytes | dict] = []
    sent: list[dict] = []

    async def app(scope, receive, send):
        reached.append((await receive())["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def dispatch(parsed, _headers):
        reached.append(parsed)
        return 200, {"content-type": ["application/json;charset=utf-8"], "X-Slack-No-Retry": ["1", "2"]}, '{"text": "ok"}'

    async def main():
        queue = list(messages or [])

        async def receive():
            if messages is None:
                await asyncio.sleep(3600)
            return queue.pop(0)

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": path, "headers": list(headers), "client": ("127.0.0.1", 1)}
        await SlackEdge(app, dispatch=dispatch, signing_secret=secret, **options)(scope, receive, send)

    asyncio.run(main())
    return sent, reached


def test_a_trickled_body_is_408_after_the_bound():
    sent, reached = run_edge(None, body_timeout=0.05)
    assert sent[0]["status"] == 408 and reached == []


def test_a_trickled_body_is_counted_with_the_slow_clients_not_logged_each(caplog):
    slow = SlowClientLog()
    with caplog.at_level(logging.WARNING, logger="bot.inbound.edge"):
        sent, _ = run_edge(None, body_timeout=0.05, slow_clients=slow)
    assert sent[0]["status"] == 408 and slow.total == 1
    assert [r for r in caplog.records if r.name == "bot.inbound.edge"] == []


def test_slack_requests_are_served_during_the_drain_delay_and_refused_once_the_listener_closed():
    body = command_body("/incident", "help").encode()
    headers = [(k.lower().encode(), v.encode()) for k, v in signed(body).items()]
    request = [{"type": "http.request", "body": body}]
    drain = Drain()
    drain.begin()  # SIGTERM: /readyz fails, Slack is still answered
    sent, reached = run_edge(request, headers, path="/slack/events", drain=drain)
    assert sent[0]["status"] == 200 and [r["command"] for r in reached] == ["/incident"]
    drain.close()  # the delay is over: a kept-alive connection's request is refused unread
    sent, reached = run_edge(request, headers, path="/slack/events", drain=drain)
    assert sent[0]["status"] == 503 and reached == []


def test_a_verified_slack_request_goes_to_the_dispatch_and_its_answer_is_written_whole():
    body = command_body("/incident", "help").encode()
    headers = [(k.lower().encode(), v.encode()) for k, v in signed(body).items()]
    sent, reached = run_edge([{"type": "http.request", "body": body}], headers, path="/slack/events")
    assert [r["text"] for r in reached] == ["help"]  # parsed once, by the edge
    start, answer = sent
    assert start["status"] == 200
    # as Bolt's Starlette adapter sent them: the first value of each header
    assert start["headers"] == [
        (b"content-length", b"14"),
        (b"content-type", b"application/json;charset=utf-8"),
        (b"x-slack-no-retry", b"1"),
    ]
    assert answer == {"type": "http.response.body", "body": b'{"text": "ok"}'}


def test_a_content_length_that_is_not_a_number_is_400():
    # h11 (uvicorn's parser) refuses these itself; the edge does not rely on it
    sent, reached = run_edge([], headers=[(b"content-length", b"12abc")])
    assert sent[0]["status"] == 400 and reached == []


def test_a_body_refused_on_its_content_length_is_read_and_dropped_up_to_the_limit_before_the_413():
    # Closing a socket with unread bytes resets it, and the reset can destroy the 413 first.
    chunks = [{"type": "http.request", "body": b"x" * 10, "more_body": True} for _ in range(5)]
    left = list(chunks)
    sent: list[dict] = []

    async def receive():
        return left.pop(0)

    async def send(message):
        sent.append(message)

    async def main():
        scope = {"type": "http", "method": "POST", "path": "/other", "headers": [(b"content-length", b"50")], "client": None}
        await SlackEdge(None, dispatch=None, signing_secret=None, max_body=16)(scope, receive, send)

    asyncio.run(main())
    assert sent[0]["status"] == 413
    assert len(left) == 3  # 20 bytes read and dropped: more than the limit, then no more


def test_a_sender_waiting_for_100_continue_is_refused_at_once_with_nothing_read():
    left = [{"type": "http.request", "body": b"x" * 10, "more_body": True}]
    sent: list[dict] = []

    async def receive():  # uvicorn sends "100 Continue" at the first receive: the body would follow
        return left.pop(0)

    async def send(message):
        sent.append(message)

    async def main():
        headers = [(b"content-length", b"50"), (b"expect", b"100-continue")]
        scope = {"type": "http", "method": "POST", "path": "/other", "headers": headers, "client": None}
        await SlackEdge(None, dispatch=None, signing_secret=None, max_body=16)(scope, receive, send)

    asyncio.run(main())
    assert sent[0]["status"] == 413 and len(left) == 1


def test_without_a_signing_secret_slack_requests_are_refused():
    # Socket Mode has no signing secret and no HTTP Slack traffic: nothing unsigned gets in.
    body = command_body("/incident", "help").encode()
    headers = [(k.lower().encode(), v.encode()) for k, v in signed(body).items()]
    sent, reached = run_edge([{"type": "http.request", "body": body}], headers, path="/slack/events", secret=None)
    assert sent[0]["status"] == 401 and reached == []


def test_a_sender_that_hangs_up_gets_no_answer():
    sent, reached = run_edge([{"type": "http.request", "body": b"ab", "more_body": True}, {"type": "http.disconnect"}])
    assert sent == [] and reached == []


def test_other_routes_get_the_body_replayed_whole():
    sent, reached = run_edge(
        [{"type": "http.request", "body": b"ab", "more_body": True}, {"type": "http.request", "body": b"c", "more_body": False}]
    )
    assert reached == [b"abc"] and sent[0]["status"] == 200


# --- body size against a real `sitrep run`: refused before it is read ------------------------------


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident memory (VmHWM): a body read whole would show here."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


@pytest.fixture
def sitrep_process(tmp_path, slack, statuspage) -> Iterator[tuple[int, subprocess.Popen]]:
    env = {k: v for k, v in os.environ.items() if k not in SPEC_VARIABLES}
    port = free_port()
    env |= {
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'sitrep.db'}",
        "SLACK_BOT_TOKEN": slack.token,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.url,
        "SITREP_CHANNEL": CHANNEL,
        "STATUSPAGE_URL": statuspage.url,
        "STATUSPAGE_API_KEY": statuspage.api_key,
        "PORT": str(port),
    }
    process = start_sitrep(env, tmp_path)
    try:
        deadline = time.monotonic() + WAIT_BOUND  # only a start that never comes reaches it
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise AssertionError("sitrep run did not answer /healthz")
        yield port, process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def stop_and_read_output(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=15)
    assert process.returncode == 0, output
    return output


class RawUpload:
    """Streams a body over a raw socket while another thread waits for the answer, so a server
    that answers early is seen to do so (an HTTP client would insist on sending it all first)."""

    def __init__(self, port: int, head: str):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=2)
        self.sock.sendall(head.encode())
        self.answer = bytearray()
        self.answered = threading.Event()
        self.sent = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        deadline = time.monotonic() + 30
        while b"\r\n\r\n" not in self.answer and time.monotonic() < deadline:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            self.answer += data
        self.answered.set()

    def stream(self, chunk: bytes, up_to: int, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        try:
            while not self.answered.is_set() and self.sent < up_to and time.monotonic() < deadline:
                self.sock.sendall(chunk)
                self.sent += len(chunk)
        except OSError:  # the server answered and closed: the rest is never sent
            pass
        self.answered.wait(seconds)
        self.sock.close()

    @property
    def status(self) -> int | None:
        first = bytes(self.answer).split(b"\r\n", 1)[0].split()
        return int(first[1]) if len(first) > 1 and first[1].isdigit() else None


HEAD = "POST /slack/events HTTP/1.1\r\nHost: sitrep\r\nContent-Type: application/x-www-form-urlencoded\r\n"


def test_hostile_requests_against_a_real_process(sitrep_process):
    """The table's rows, against `sitrep run`: an unsigned 400 MB POST and an endless chunked
    one are refused with no more than the limit read (peak memory stays put), and garbage signature
    headers cost one log line each, no traceback."""
    port, process = sitrep_process
    before = peak_rss_kib(process.pid)

    declared = RawUpload(port, HEAD + f"Content-Length: {400 * MiB}\r\n\r\n")
    declared.stream(b"0" * 65536, up_to=400 * MiB, seconds=20)
    chunk = b"%x\r\n%s\r\n" % (65536, b"0" * 65536)
    # Well-formed signature headers get a body read, but never past the limit; without
    # them a chunked body is not read at all.
    looks_signed = f"X-Slack-Request-Timestamp: {int(time.time())}\r\nX-Slack-Signature: v0={'0' * 64}\r\n"
    chunked = RawUpload(port, HEAD + looks_signed + "Transfer-Encoding: chunked\r\n\r\n")
    chunked.stream(chunk, up_to=400 * MiB, seconds=20)
    unsigned_chunked = RawUpload(port, HEAD + "Transfer-Encoding: chunked\r\n\r\n")
    unsigned_chunked.stream(chunk, up_to=400 * MiB, seconds=20)

    grown_mib = (peak_rss_kib(process.pid) - before) / 1024
    sent = {
        u: (upload.status, round(upload.sent / MiB, 1))
        for u, upload in (("400 MB", declared), ("chunked", chunked), ("unsigned chunked", unsigned_chunked))
    }
    print(f"status and MiB sent before the answer: {sent}; peak RSS +{grown_mib:.1f} MiB")
    assert [status for status, _ in sent.values()] == [413, 413, 401]
    assert all(mib < 64 for _, mib in sent.values())  # the rest sat in socket buffers, unread
    assert grown_mib < 50

    for timestamp in ("abc", "1.5", "0x10"):
        answer = httpx.post(
            f"http://127.0.0.1:{port}/slack/events",
            content="a=1",
            headers={"Content-Type": FORM, "X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": "v0=00"},
        )
        assert answer.status_code == 401

    output = stop_and_read_output(process)
    refusals = [line for line in output.splitlines() if "refused POST /slack/events" in line]
    assert len(refusals) == 6, output
    assert "a body of 419430400 bytes is over the 1048576-byte limit (HTTP 413)" in refusals[0]
    assert "chunked body went over the 1048576-byte limit (HTTP 413)" in refusals[1]
    assert "not signed" in refusals[2]
    assert all("X-Slack-Request-Timestamp is not a number" in line for line in refusals[3:])
    assert "Traceback" not in output and "Failed to run a middleware" not in output
