"""Prove FakeSlack and the signer behave like Slack, driven by the real slack_sdk client."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qs

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.signing import command_body, interaction_body, slack_signature_headers
from tests.fakes.slack_api import FakeSlack, SlackCall

TOKEN = "xoxb-test-token"


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(token=TOKEN) as fake:
        yield fake


@pytest.fixture
async def client(slack: FakeSlack) -> AsyncIterator[AsyncWebClient]:
    yield AsyncWebClient(token=TOKEN, base_url=slack.url)


def section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def modal(title: str = "Declare incident", **extra: object) -> dict:
    return {
        "type": "modal",
        "callback_id": "declare",
        "title": {"type": "plain_text", "text": title},
        "submit": {"type": "plain_text", "text": "Declare"},
        "blocks": [section("hello")],
        **extra,
    }


async def api_error(awaitable) -> str:
    with pytest.raises(SlackApiError) as info:
        await awaitable
    return info.value.response["error"]


# ----------------------------------------------------------------- messages


async def test_post_update_replies_round_trip_metadata(slack: FakeSlack, client: AsyncWebClient):
    metadata = {"event_type": "incident_opened", "event_payload": {"id": "INC-1"}}
    parent = await client.chat_postMessage(
        channel="C1", text="Incident INC-1", blocks=[section("*INC-1*")], metadata=metadata
    )
    assert parent["ok"] and parent["channel"] == "C1"
    assert parent["message"]["metadata"] == metadata
    reply = await client.chat_postMessage(
        channel="C1",
        thread_ts=parent["ts"],
        text="update 1",
        metadata={"event_type": "incident_update", "event_payload": {"n": 1}},
    )
    assert float(reply["ts"]) > float(parent["ts"])

    updated = await client.chat_update(
        channel="C1", ts=parent["ts"], text="Incident INC-1 (resolved)", blocks=[section("done")]
    )
    assert updated["ts"] == parent["ts"] and updated["text"] == "Incident INC-1 (resolved)"

    replies = await client.conversations_replies(channel="C1", ts=parent["ts"], include_all_metadata=True)
    assert [m["ts"] for m in replies["messages"]] == [parent["ts"], reply["ts"]]
    assert replies["messages"][0]["metadata"] == metadata
    assert replies["messages"][0]["text"] == "Incident INC-1 (resolved)"
    assert replies["messages"][0]["reply_count"] == 1
    assert replies["messages"][1]["metadata"]["event_payload"] == {"n": 1}
    assert replies["has_more"] is False
    assert replies["response_metadata"]["next_cursor"] == ""

    without = await client.conversations_replies(channel="C1", ts=parent["ts"])
    assert all("metadata" not in m for m in without["messages"])

    assert [m["ts"] for m in slack.messages("C1")] == [parent["ts"], reply["ts"]]
    assert [m["ts"] for m in slack.thread("C1", parent["ts"])] == [reply["ts"]]
    assert slack.message("C1", parent["ts"])["blocks"] == [section("done")]
    assert slack.calls_to("chat.update")[0]["blocks"] == [section("done")]
    assert slack.violations == []


async def test_ts_format_is_slack_like_and_increasing(client: AsyncWebClient):
    stamps = [(await client.chat_postMessage(channel="C1", text=str(i)))["ts"] for i in range(3)]
    assert stamps == sorted(stamps, key=float) and len(set(stamps)) == 3
    seconds, micros = stamps[0].split(".")
    assert len(seconds) == 10 and len(micros) == 6


async def test_history_hides_replies_unless_broadcast(slack: FakeSlack, client: AsyncWebClient):
    parent = await client.chat_postMessage(channel="C1", text="parent")
    await client.chat_postMessage(channel="C1", thread_ts=parent["ts"], text="quiet")
    loud = await client.chat_postMessage(
        channel="C1", thread_ts=parent["ts"], text="loud", reply_broadcast=True
    )
    history = await client.conversations_history(channel="C1")
    assert [m["ts"] for m in history["messages"]] == [loud["ts"], parent["ts"]]
    assert len(slack.messages("C1")) == 3


async def test_update_and_replies_of_unknown_message(client: AsyncWebClient):
    assert await api_error(client.chat_update(channel="C1", ts="1.000001", text="x")) == "message_not_found"
    assert await api_error(client.conversations_replies(channel="C1", ts="1.000001")) == "thread_not_found"


async def test_post_to_user_lands_in_dm(slack: FakeSlack, client: AsyncWebClient):
    resp = await client.chat_postMessage(channel="U42", text="psst")
    assert resp["channel"] == "DU42"
    assert slack.messages("U42")[0]["text"] == "psst"


async def test_ephemeral_permalink_and_user(slack: FakeSlack, client: AsyncWebClient):
    eph = await client.chat_postEphemeral(channel="C1", user="U1", text="only you")
    assert eph["message_ts"]
    assert slack.ephemerals("C1")[0]["user"] == "U1"
    link = await client.chat_getPermalink(channel="C1", message_ts="1700000000.000100")
    assert link["permalink"] == "https://example.slack.com/archives/C1/p1700000000000100"
    user = await client.users_info(user="U1")
    assert user["user"]["tz"] == "America/New_York"
    assert isinstance(user["user"]["tz_offset"], int) and user["user"]["real_name"]


async def test_form_encoded_and_query_args_are_parsed(slack: FakeSlack, client: AsyncWebClient):
    """slack_sdk sends `data=` as a form body and POST `params=` in the query string."""
    blocks = [section("from a form")]
    resp = await client.api_call(
        "chat.postMessage", data={"channel": "C9", "text": "t", "blocks": json.dumps(blocks)}
    )
    assert resp["ok"]
    assert slack.calls_to("chat.postMessage")[0]["blocks"] == blocks
    await client.chat_meMessage(channel="C9", text="waves")
    assert slack.calls_to("chat.meMessage") == [{"channel": "C9", "text": "waves"}]
    assert slack.calls[-1] == SlackCall("chat.meMessage", {"channel": "C9", "text": "waves"}, TOKEN)
    assert slack.violations == []


# --------------------------------------------------------------- validation


async def test_unknown_argument_is_a_violation(slack: FakeSlack, client: AsyncWebClient):
    error = await api_error(client.chat_postMessage(channel="C1", text="hi", colour="red"))
    assert error == "invalid_arguments"
    assert any("'colour'" in v for v in slack.violations)
    assert slack.messages("C1") == []


async def test_unknown_method(slack: FakeSlack, client: AsyncWebClient):
    assert await api_error(client.api_call("chat.shout", json={"channel": "C1"})) == "unknown_method"
    assert slack.violations == ["chat.shout: not a documented Slack method"]


async def test_missing_required_argument(slack: FakeSlack, client: AsyncWebClient):
    error = await api_error(client.api_call("chat.update", json={"channel": "C1", "text": "x"}))
    assert error == "invalid_arguments"
    assert slack.violations == ["chat.update: missing required argument 'ts'"]


async def test_link_names_is_refused(slack: FakeSlack, client: AsyncWebClient):
    assert await api_error(client.chat_postMessage(channel="C1", text="@here", link_names=True)) == (
        "invalid_arguments"
    )
    assert any("link_names" in v for v in slack.violations)


async def test_too_many_message_blocks(slack: FakeSlack, client: AsyncWebClient):
    error = await api_error(client.chat_postMessage(channel="C1", text="x", blocks=[section("b")] * 51))
    assert error == "invalid_blocks"
    assert slack.violations == ["chat.postMessage: 51 blocks > 50 allowed in a message"]


async def test_long_section_text_and_input_max_length(slack: FakeSlack, client: AsyncWebClient):
    await api_error(client.chat_postMessage(channel="C1", text="x", blocks=[section("a" * 3001)]))
    field = {
        "type": "input",
        "label": {"type": "plain_text", "text": "Why"},
        "element": {"type": "plain_text_input", "action_id": "why", "max_length": 5000},
    }
    view = modal(blocks=[field])
    assert await api_error(client.views_open(trigger_id="t-1", view=view)) == "invalid_blocks"
    assert len(slack.violations) == 2
    assert "section text is 3001 chars" in slack.violations[0]
    assert "max_length 5000" in slack.violations[1]


async def test_bad_metadata_shape(slack: FakeSlack, client: AsyncWebClient):
    error = await api_error(client.chat_postMessage(channel="C1", text="x", metadata={"id": 1}))
    assert error == "invalid_metadata_format"
    assert len(slack.violations) == 2


async def test_wrong_token(slack: FakeSlack):
    other = AsyncWebClient(token="xoxb-wrong", base_url=slack.url)
    assert await api_error(other.auth_test()) == "invalid_auth"
    assert await api_error(other.chat_postMessage(channel="C1", text="x")) == "invalid_auth"


async def test_auth_test(client: AsyncWebClient):
    resp = await client.auth_test()
    assert (resp["user_id"], resp["bot_id"], resp["team"]) == ("UBOT", "BBOT", "Example")
    assert resp["url"].startswith("https://")


# ---------------------------------------------------------------- failures


async def test_rate_limit_honours_retry_after(slack: FakeSlack, client: AsyncWebClient):
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=1))
    slack.fail_next("chat.postMessage", status=429, retry_after=1)
    started = time.monotonic()
    resp = await client.chat_postMessage(channel="C1", text="eventually")
    assert resp["ok"]
    assert time.monotonic() - started >= 1.0
    assert len(slack.calls_to("chat.postMessage")) == 2
    assert len(slack.messages("C1")) == 1


async def test_rate_limit_without_retry_handler_surfaces(slack: FakeSlack, client: AsyncWebClient):
    slack.fail_next("chat.postMessage", status=429, retry_after=7)
    with pytest.raises(SlackApiError) as info:
        await client.chat_postMessage(channel="C1", text="x")
    assert info.value.response.status_code == 429
    assert info.value.response.headers["Retry-After"] == "7"
    assert info.value.response["error"] == "ratelimited"


async def test_fail_next_queues_per_method(slack: FakeSlack, client: AsyncWebClient):
    slack.fail_next("chat.update", error="message_not_found")
    slack.fail_next("chat.postMessage", error="channel_not_found")
    slack.fail_next("chat.postMessage", error="not_in_channel", status=200)
    assert await api_error(client.chat_postMessage(channel="C1", text="a")) == "channel_not_found"
    assert await api_error(client.chat_postMessage(channel="C1", text="b")) == "not_in_channel"
    assert (await client.chat_postMessage(channel="C1", text="c"))["ok"]
    slack.reset()
    assert slack.calls == [] and slack.messages("C1") == []
    assert await api_error(client.chat_update(channel="C1", ts="1.1", text="x")) == "message_not_found"


# ------------------------------------------------------------------- views


async def test_trigger_id_is_single_use(slack: FakeSlack, client: AsyncWebClient):
    opened = await client.views_open(trigger_id="trig-1", view=modal())
    view = opened["view"]
    assert view["id"].startswith("V") and view["hash"] and view["state"] == {"values": {}}
    assert view["title"]["text"] == "Declare incident"
    assert await api_error(client.views_open(trigger_id="trig-1", view=modal())) == "expired_trigger_id"
    assert await api_error(client.views_push(trigger_id="expired", view=modal())) == "expired_trigger_id"
    assert await api_error(client.views_open(view=modal())) == "invalid_arguments"

    updated = await client.views_update(view_id=view["id"], view=modal(title="Updated"), hash=view["hash"])
    assert updated["view"]["id"] == view["id"]
    assert slack.views[view["id"]]["title"]["text"] == "Updated"
    stale = client.views_update(view_id=view["id"], view=modal(), hash=view["hash"])
    assert await api_error(stale) == "hash_conflict"
    assert await api_error(client.views_update(view_id="VNOPE", view=modal())) == "not_found"


async def test_view_title_over_24_chars(slack: FakeSlack, client: AsyncWebClient):
    title = "x" * 25
    assert await api_error(client.views_open(trigger_id="t-2", view=modal(title=title))) == "invalid_blocks"
    assert slack.violations == [f"views.open: view title {title!r} is 25 chars > 24"]


async def test_view_private_metadata_limit(slack: FakeSlack, client: AsyncWebClient):
    view = modal(private_metadata="m" * 3001)
    assert await api_error(client.views_open(trigger_id="t-3", view=view)) == "invalid_blocks"
    assert "private_metadata is 3001 chars" in slack.violations[0]


# ------------------------------------------------------------------ waiting


def test_wait_for_from_sync_code(slack: FakeSlack):
    """Sync tests can drive the fake while another thread (here: a bot) calls it."""

    def bot() -> None:
        import asyncio

        async def post() -> None:
            await AsyncWebClient(token=TOKEN, base_url=slack.url).chat_postMessage(channel="C5", text="hi")

        time.sleep(0.05)
        asyncio.run(post())

    worker = threading.Thread(target=bot)
    worker.start()
    messages = slack.wait_for(lambda: slack.messages("C5"))
    worker.join()
    assert messages[0]["text"] == "hi"


async def test_await_for_times_out_with_dump(slack: FakeSlack, client: AsyncWebClient):
    await client.chat_postMessage(channel="C1", text="noise")
    with pytest.raises(AssertionError, match="chat.postMessage"):
        await slack.await_for(lambda: slack.messages("C404"), timeout=0.05)


# ------------------------------------------------------------------ signing


def test_signature_is_accepted_by_slack_sdk():
    secret = "8f742231b10e8888abcd99yyyzzz85a5"
    body = command_body("/incident", "declare db down")
    headers = slack_signature_headers(secret, body)
    verifier = SignatureVerifier(secret)
    assert verifier.is_valid_request(body, headers)
    assert verifier.is_valid_request(body.encode(), slack_signature_headers(secret, body.encode()))
    assert not verifier.is_valid_request(body + "x", headers)
    stale = slack_signature_headers(secret, body, timestamp=int(time.time()) - 600)
    assert not verifier.is_valid_request(body, stale)


def test_command_and_interaction_bodies():
    first = parse_qs(command_body("/incident", "declare x", user_id="U9"))
    second = parse_qs(command_body("/incident", "declare x"))
    assert first["command"] == ["/incident"] and first["text"] == ["declare x"]
    assert first["user_id"] == ["U9"] and first["response_url"] == ["http://127.0.0.1:9/resp"]
    assert first["trigger_id"] != second["trigger_id"]
    assert parse_qs(command_body("/x", "", trigger_id="trig"))["trigger_id"] == ["trig"]
    payload = {"type": "view_submission", "view": {"id": "V1"}}
    assert json.loads(parse_qs(interaction_body(payload))["payload"][0]) == payload
