"""Prove FakeSlack and the signer behave like Slack, driven by the real slack_sdk client."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from urllib.parse import parse_qs

import httpx
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from tests.support.fakes.signing import (
    command_body,
    interaction_body,
    new_trigger_id,
    slack_signature_headers,
)
from tests.support.fakes.slack_api import WAIT_BOUND, FakeSlack, Malformed, SlackCall, Tiers
from tests.support.slack_limits import ack_problems

TOKEN = "xoxb-test-token"


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


async def test_post_update_replies_round_trip_metadata(web_slack: FakeSlack, web_client: AsyncWebClient):
    metadata = {"event_type": "incident_opened", "event_payload": {"id": "INC-1"}}
    parent = await web_client.chat_postMessage(
        channel="C1", text="Incident INC-1", blocks=[section("*INC-1*")], metadata=metadata
    )
    assert parent["ok"] and parent["channel"] == "C1"
    assert parent["message"]["metadata"] == metadata
    reply = await web_client.chat_postMessage(
        channel="C1",
        thread_ts=parent["ts"],
        text="update 1",
        metadata={"event_type": "incident_update", "event_payload": {"n": 1}},
    )
    assert float(reply["ts"]) > float(parent["ts"])

    updated = await web_client.chat_update(
        channel="C1", ts=parent["ts"], text="Incident INC-1 (resolved)", blocks=[section("done")]
    )
    assert updated["ts"] == parent["ts"] and updated["text"] == "Incident INC-1 (resolved)"

    replies = await web_client.conversations_replies(channel="C1", ts=parent["ts"], include_all_metadata=True)
    assert [m["ts"] for m in replies["messages"]] == [parent["ts"], reply["ts"]]
    assert replies["messages"][0]["metadata"] == metadata
    assert replies["messages"][0]["text"] == "Incident INC-1 (resolved)"
    assert replies["messages"][0]["reply_count"] == 1
    assert replies["messages"][1]["metadata"]["event_payload"] == {"n": 1}
    assert replies["has_more"] is False
    assert replies["response_metadata"]["next_cursor"] == ""

    without = await web_client.conversations_replies(channel="C1", ts=parent["ts"])
    assert all("metadata" not in m for m in without["messages"])

    assert [m["ts"] for m in web_slack.messages("C1")] == [parent["ts"], reply["ts"]]
    assert [m["ts"] for m in web_slack.thread("C1", parent["ts"])] == [reply["ts"]]
    assert web_slack.message("C1", parent["ts"])["blocks"] == [section("done")]
    assert web_slack.calls_to("chat.update")[0]["blocks"] == [section("done")]
    assert web_slack.violations == []


async def test_ts_format_is_slack_like_and_increasing(web_client: AsyncWebClient):
    stamps = [(await web_client.chat_postMessage(channel="C1", text=str(i)))["ts"] for i in range(3)]
    assert stamps == sorted(stamps, key=float) and len(set(stamps)) == 3
    seconds, micros = stamps[0].split(".")
    assert len(seconds) == 10 and len(micros) == 6


async def test_history_hides_replies_unless_broadcast(web_slack: FakeSlack, web_client: AsyncWebClient):
    parent = await web_client.chat_postMessage(channel="C1", text="parent")
    await web_client.chat_postMessage(channel="C1", thread_ts=parent["ts"], text="quiet")
    loud = await web_client.chat_postMessage(channel="C1", thread_ts=parent["ts"], text="loud", reply_broadcast=True)
    history = await web_client.conversations_history(channel="C1")
    assert [m["ts"] for m in history["messages"]] == [loud["ts"], parent["ts"]]
    assert len(web_slack.messages("C1")) == 3


async def test_update_and_replies_of_unknown_message(web_client: AsyncWebClient):
    assert await api_error(web_client.chat_update(channel="C1", ts="1.000001", text="x")) == "message_not_found"
    assert await api_error(web_client.conversations_replies(channel="C1", ts="1.000001")) == "thread_not_found"


async def test_post_to_user_lands_in_dm(web_slack: FakeSlack, web_client: AsyncWebClient):
    resp = await web_client.chat_postMessage(channel="U42", text="psst")
    assert resp["channel"] == "DU42"
    assert web_slack.messages("U42")[0]["text"] == "psst"


async def test_ephemeral_permalink_and_user(web_slack: FakeSlack, web_client: AsyncWebClient):
    eph = await web_client.chat_postEphemeral(channel="C1", user="U1", text="only you")
    assert eph["message_ts"]
    assert web_slack.ephemerals("C1")[0]["user"] == "U1"
    ts = web_slack.person_posts("C1", "someone said this")
    link = await web_client.chat_getPermalink(channel="C1", message_ts=ts)
    assert link["permalink"] == f"https://example.slack.com/archives/C1/p{ts.replace('.', '')}"
    user = await web_client.users_info(user="U1")
    assert user["user"]["tz"] == "America/New_York"
    assert isinstance(user["user"]["tz_offset"], int) and user["user"]["real_name"]


async def test_permalink_of_a_message_slack_does_not_have_or_the_bot_cannot_see_is_refused(
    web_slack: FakeSlack, web_client: AsyncWebClient
):
    assert await api_error(web_client.chat_getPermalink(channel="C1", message_ts="1699999999.000001")) == "message_not_found"
    ts = web_slack.person_posts("G1", "in a private channel the bot is not in")
    web_slack.hidden_channels.add("G1")
    assert await api_error(web_client.chat_getPermalink(channel="G1", message_ts=ts)) == "channel_not_found"
    assert web_slack.violations == []


async def test_form_encoded_and_query_args_are_parsed(web_slack: FakeSlack, web_client: AsyncWebClient):
    """slack_sdk sends `data=` as a form body and POST `params=` in the query string."""
    blocks = [section("from a form")]
    resp = await web_client.api_call("chat.postMessage", data={"channel": "C9", "text": "t", "blocks": json.dumps(blocks)})
    assert resp["ok"]
    assert web_slack.calls_to("chat.postMessage")[0]["blocks"] == blocks
    await web_client.chat_meMessage(channel="C9", text="waves")
    assert web_slack.calls_to("chat.meMessage") == [{"channel": "C9", "text": "waves"}]
    assert web_slack.calls[-1] == SlackCall("chat.meMessage", {"channel": "C9", "text": "waves"}, TOKEN)
    assert web_slack.violations == []


# --------------------------------------------------------------- validation


async def test_unknown_argument_is_a_violation(web_slack: FakeSlack, web_client: AsyncWebClient):
    error = await api_error(web_client.chat_postMessage(channel="C1", text="hi", colour="red"))
    assert error == "invalid_arguments"
    assert any("'colour'" in v for v in web_slack.violations)
    assert web_slack.messages("C1") == []


async def test_unknown_method(web_slack: FakeSlack, web_client: AsyncWebClient):
    assert await api_error(web_client.api_call("chat.shout", json={"channel": "C1"})) == "unknown_method"
    assert web_slack.violations == ["chat.shout: not a documented Slack method"]


async def test_missing_required_argument(web_slack: FakeSlack, web_client: AsyncWebClient):
    error = await api_error(web_client.api_call("chat.update", json={"channel": "C1", "text": "x"}))
    assert error == "invalid_arguments"
    assert web_slack.violations == ["chat.update: missing required argument 'ts'"]


async def test_link_names_is_refused(web_slack: FakeSlack, web_client: AsyncWebClient):
    assert await api_error(web_client.chat_postMessage(channel="C1", text="@here", link_names=True)) == ("invalid_arguments")
    assert any("link_names" in v for v in web_slack.violations)


async def test_bad_metadata_shape(web_slack: FakeSlack, web_client: AsyncWebClient):
    error = await api_error(web_client.chat_postMessage(channel="C1", text="x", metadata={"id": 1}))
    assert error == "invalid_metadata_format"
    assert len(web_slack.violations) == 2


async def test_wrong_token(web_slack: FakeSlack):
    other = AsyncWebClient(token="xoxb-wrong", base_url=web_slack.url)
    assert await api_error(other.auth_test()) == "invalid_auth"
    assert await api_error(other.chat_postMessage(channel="C1", text="x")) == "invalid_auth"


async def test_auth_test(web_client: AsyncWebClient):
    resp = await web_client.auth_test()
    assert (resp["user_id"], resp["bot_id"], resp["team"]) == ("UBOT", "BBOT", "Example")
    assert resp["url"].startswith("https://")


# ---------------------------------------------------------------- failures


async def test_a_call_held_by_an_event_is_carried_out_only_once_it_is_set(web_slack: FakeSlack, web_client: AsyncWebClient):
    released = threading.Event()
    web_slack.delay_next("chat.postMessage", released)
    sending = asyncio.ensure_future(web_client.chat_postMessage(channel="C1", text="held"))
    await web_slack.await_for(lambda: web_slack.held == 1)  # it arrived
    assert web_slack.messages("C1") == [] and web_slack.calls_to("chat.postMessage") == [] and not sending.done()
    released.set()
    assert (await sending)["ok"] and web_slack.messages("C1")[0]["text"] == "held"


async def test_release_delays_lets_a_held_call_go_and_drops_the_unmet_ones(web_slack: FakeSlack, web_client: AsyncWebClient):
    """What a test that ended early leaves (a held call, delays no call met) holds nothing of
    the next test's: the fixture lets it go at teardown, and reset() does too."""
    web_slack.delay_next("chat.postMessage", threading.Event())  # never set by anyone
    web_slack.delay_next("chat.update", threading.Event())  # never met
    sending = asyncio.ensure_future(web_client.chat_postMessage(channel="C1", text="held"))
    await web_slack.await_for(lambda: web_slack.held == 1)
    web_slack.release_delays()
    assert (await sending)["ok"] and web_slack.held == 0
    posted = web_slack.messages("C1")[0]
    # The queued chat.update delay is gone: the next update is answered at once.
    assert (await asyncio.wait_for(web_client.chat_update(channel="C1", ts=posted["ts"], text="edited"), WAIT_BOUND))["ok"]


async def test_rate_limit_honours_retry_after(web_slack: FakeSlack, web_client: AsyncWebClient):
    web_client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=1))
    web_slack.fail_next("chat.postMessage", status=429, retry_after=1)
    started = time.monotonic()
    resp = await web_client.chat_postMessage(channel="C1", text="eventually")
    assert resp["ok"]
    assert time.monotonic() - started >= 1.0
    assert len(web_slack.calls_to("chat.postMessage")) == 2
    assert len(web_slack.messages("C1")) == 1


async def test_rate_limit_without_retry_handler_surfaces(web_slack: FakeSlack, web_client: AsyncWebClient):
    web_slack.fail_next("chat.postMessage", status=429, retry_after=7)
    with pytest.raises(SlackApiError) as info:
        await web_client.chat_postMessage(channel="C1", text="x")
    assert info.value.response.status_code == 429
    assert info.value.response.headers["Retry-After"] == "7"
    assert info.value.response["error"] == "ratelimited"


class Seconds:
    """The tiers' meters on a clock the test moves: refusals are exact, no waiting."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def refused(call) -> str | None:
    """Retry-After of a 429, or None when Slack took the call."""
    try:
        await call
    except SlackApiError as exc:
        assert exc.response.status_code == 429 and exc.response["error"] == "ratelimited"
        return exc.response.headers["Retry-After"]
    return None


async def test_tiers_meter_chat_update_per_workspace_and_chat_post_message_per_channel(web_slack: FakeSlack, web_client):
    clock = Seconds()
    parents = {c: (await web_client.chat_postMessage(channel=c, text="parent"))["ts"] for c in ("C1", "C2", "C3")}
    web_slack.enforce(Tiers(post_per_second=1, post_burst=2, update_per_minute=60, update_burst=3), clock=clock)
    # Tier 3 counts the app's edits in the whole workspace: three channels share one meter.
    edits = [refused(web_client.chat_update(channel=c, ts=ts, text="edit")) for c, ts in parents.items()]
    assert [await e for e in edits] == [None, None, None]
    assert await refused(web_client.chat_update(channel="C1", ts=parents["C1"], text="edit")) == "1"
    # chat.postMessage's own limit is per channel: C1 full does not stop C2.
    assert [await refused(web_client.chat_postMessage(channel="C1", text="x")) for _ in range(3)] == [None, None, "1"]
    assert await refused(web_client.chat_postMessage(channel="C2", text="x")) is None
    clock.now += 1
    assert await refused(web_client.chat_update(channel="C2", ts=parents["C2"], text="edit")) is None


@pytest.mark.parametrize(
    ("method", "per_minute"),
    [("views.publish", 100), ("chat.getPermalink", 100), ("conversations.history", 50), ("conversations.members", 100)],
)
async def test_tiers_meter_every_method_at_its_documented_tier_across_channels(
    web_slack: FakeSlack, web_client, method, per_minute
):
    # views.publish and conversations.members are Tier 4, conversations.history Tier 3 in their
    # documents; chat.getPermalink is "special" (paced as Tier 4, see Tiers).
    clock = Seconds()
    ts = (await web_client.chat_postMessage(channel="C1", text="parent"))["ts"]
    rooms = [web_slack.add_channel(f"room-{i}") for i in range(6)]
    web_slack.enforce(Tiers(burst=2), clock=clock)
    calls = {
        "views.publish": lambda i: web_client.views_publish(user_id=f"U{i}", view={"type": "home", "blocks": []}),
        "chat.getPermalink": lambda i: web_client.chat_getPermalink(channel="C1", message_ts=ts),
        "conversations.history": lambda i: web_client.conversations_history(channel=rooms[i]),
        "conversations.members": lambda i: web_client.conversations_members(channel=rooms[i]),
    }[method]
    wait = str(math.ceil(60 / per_minute))  # Retry-After: whole seconds until the next call may go
    assert [await refused(calls(i)) for i in range(3)] == [None, None, wait]  # other users and channels alike
    clock.now += 60 / per_minute
    assert await refused(calls(4)) is None
    assert await refused(calls(5)) is not None


async def test_fail_next_queues_per_method(web_slack: FakeSlack, web_client: AsyncWebClient):
    web_slack.fail_next("chat.update", error="message_not_found")
    web_slack.fail_next("chat.postMessage", error="channel_not_found")
    web_slack.fail_next("chat.postMessage", error="not_in_channel", status=200)
    assert await api_error(web_client.chat_postMessage(channel="C1", text="a")) == "channel_not_found"
    assert await api_error(web_client.chat_postMessage(channel="C1", text="b")) == "not_in_channel"
    assert (await web_client.chat_postMessage(channel="C1", text="c"))["ok"]
    web_slack.reset()
    assert web_slack.calls == [] and web_slack.messages("C1") == []
    assert await api_error(web_client.chat_update(channel="C1", ts="1.1", text="x")) == "message_not_found"


@pytest.mark.parametrize("malformed", list(Malformed), ids=lambda m: m.name.lower())
def test_fail_next_can_answer_a_body_that_is_not_slacks(web_slack: FakeSlack, malformed: Malformed):
    web_slack.fail_next("conversations.create", malformed=malformed)
    headers = {"Authorization": f"Bearer {web_slack.token}"}
    answer = httpx.post(f"{web_slack.url}conversations.create", data={"name": "inc-1"}, headers=headers)
    assert answer.status_code == 200 and answer.text == malformed.body
    assert answer.headers["Content-Type"].startswith(malformed.content_type)
    assert web_slack.channel_named("inc-1") is None  # it took no effect
    again = httpx.post(f"{web_slack.url}conversations.create", data={"name": "inc-1"}, headers=headers)
    assert again.json()["ok"] and web_slack.channel_named("inc-1")


# ------------------------------------------------------------------- views


async def test_trigger_id_is_single_use(web_slack: FakeSlack, web_client: AsyncWebClient):
    trigger = new_trigger_id()
    opened = await web_client.views_open(trigger_id=trigger, view=modal())
    view = opened["view"]
    assert view["id"].startswith("V") and view["hash"] and view["state"] == {"values": {}}
    assert view["title"]["text"] == "Declare incident"
    assert await api_error(web_client.views_open(trigger_id=trigger, view=modal())) == "exchanged_trigger_id"
    assert await api_error(web_client.views_push(trigger_id=trigger, view=modal())) == "exchanged_trigger_id"
    assert await api_error(web_client.views_open(view=modal())) == "invalid_arguments"

    updated = await web_client.views_update(view_id=view["id"], view=modal(title="Updated"), hash=view["hash"])
    assert updated["view"]["id"] == view["id"]
    assert web_slack.views[view["id"]]["title"]["text"] == "Updated"
    stale = web_client.views_update(view_id=view["id"], view=modal(), hash=view["hash"])
    assert await api_error(stale) == "hash_conflict"
    assert await api_error(web_client.views_update(view_id="VNOPE", view=modal())) == "not_found"


async def test_a_trigger_lives_three_seconds_on_the_fakes_clock(web_slack: FakeSlack, web_client: AsyncWebClient):
    now = [1_900_000_000.0]  # the fake's own clock, moved by hand
    web_slack.clock = lambda: now[0]
    on_time, late = new_trigger_id(issued_at=now[0]), new_trigger_id(issued_at=now[0])
    now[0] += 3.0
    assert (await web_client.views_open(trigger_id=on_time, view=modal()))["ok"]
    now[0] += 0.001
    assert await api_error(web_client.views_open(trigger_id=late, view=modal())) == "expired_trigger_id"
    assert await api_error(web_client.views_push(trigger_id=new_trigger_id(issued_at=now[0] - 10), view=modal())) == (
        "expired_trigger_id"
    )
    assert (await web_client.views_push(trigger_id=new_trigger_id(issued_at=now[0]), view=modal()))["ok"]
    assert len(web_slack.views) == 2


async def test_a_trigger_not_shaped_like_slacks_is_invalid(web_slack: FakeSlack, web_client: AsyncWebClient):
    for made_up in ("trig-1", "expired", "1.2.xyz"):
        assert await api_error(web_client.views_open(trigger_id=made_up, view=modal())) == "invalid_trigger_id"
    assert web_slack.views == {}


# --------------------------------------------------------- Block Kit limits


def plain(text: str) -> dict:
    return {"type": "plain_text", "text": text}


def mrkdwn(text: str) -> dict:
    return {"type": "mrkdwn", "text": text}


def opt(text: str = "Option", value: str = "v") -> dict:
    return {"text": plain(text), "value": value}


def select(options: list[dict] | None = None, kind: str = "static_select", **extra: object) -> dict:
    element: dict = {"type": kind, "action_id": "pick", "placeholder": plain("Pick")}
    if options is not None:
        element["options"] = options
    element.update(extra)
    return element


def with_accessory(element: dict) -> list[dict]:
    return [{"type": "section", "text": mrkdwn("pick one"), "accessory": element}]


def actions(*elements: dict) -> list[dict]:
    return [{"type": "actions", "elements": list(elements)}]


def button(text: str = "Go", value: str = "1", action_id: str = "go") -> dict:
    return {"type": "button", "text": plain(text), "action_id": action_id, "value": value}


def text_input(**extra: object) -> dict:
    return {"type": "plain_text_input", "action_id": "why", **extra}


def input_block(element: dict, label: str = "Why", **extra: object) -> dict:
    return {"type": "input", "block_id": "b", "label": plain(label), "element": element, **extra}


def groups(*option_lists: list[dict]) -> list[dict]:
    return [{"label": plain(f"Group {i}"), "options": options} for i, options in enumerate(option_lists)]


# (what, blocks, a pointer the refusal must name). Each is refused by Slack with invalid_blocks.
MESSAGE_REFUSALS = [
    ("51 blocks", [section("b")] * 51, "/blocks]"),
    ("section text over 3000", [section("a" * 3001)], "/blocks/0/text/text]"),
    ("section with neither text nor fields", [{"type": "section"}], "/blocks/0]"),
    ("11 section fields", [{"type": "section", "fields": [mrkdwn("f")] * 11}], "/blocks/0/fields]"),
    ("a section field over 2000", [{"type": "section", "fields": [mrkdwn("f" * 2001)]}], "/blocks/0/fields/0/text]"),
    ("header over 150", [{"type": "header", "text": plain("h" * 151)}], "/blocks/0/text/text]"),
    ("header in mrkdwn", [{"type": "header", "text": mrkdwn("h")}], "/blocks/0/text/type]"),
    ("11 context elements", [{"type": "context", "elements": [mrkdwn("c")] * 11}], "/blocks/0/elements]"),
    ("context text over 3000", [{"type": "context", "elements": [mrkdwn("c" * 3001)]}], "/blocks/0/elements/0/text]"),
    ("an empty text", [section("")], "/blocks/0/text/text]"),
    ("block_id over 255", [{**section("x"), "block_id": "b" * 256}], "/blocks/0/block_id]"),
    ("26 action elements", actions(*[button(action_id=f"a{i}") for i in range(26)]), "/blocks/0/elements]"),
    ("button text over 75", actions(button(text="b" * 76)), "/blocks/0/elements/0/text/text]"),
    ("button value over 2000", actions(button(value="v" * 2001)), "/blocks/0/elements/0/value]"),
    ("action_id over 255", actions(button(action_id="a" * 256)), "/blocks/0/elements/0/action_id]"),
    ("option text over 75", with_accessory(select([opt("o" * 76)])), "/accessory/options/0/text/text]"),
    ("option value over 150", with_accessory(select([opt(value="v" * 151)])), "/accessory/options/0/value]"),
    ("101 options", with_accessory(select([opt(value=str(i)) for i in range(101)])), "/accessory/options]"),
    ("a select without options", with_accessory(select()), "/blocks/0/accessory]"),
    ("101 option groups", with_accessory(select(option_groups=groups(*[[opt()]] * 101))), "/accessory/option_groups]"),
    (
        "group label over 75",
        with_accessory(select(option_groups=[{"label": plain("g" * 76), "options": [opt()]}])),
        "/label/text]",
    ),
    (
        "initial_option not among the options",
        with_accessory(select([opt("A", "a")], initial_option=opt("B", "b"))),
        "/accessory/initial_option]",
    ),
    (
        "initial_option with the right value but other text",
        with_accessory(select([opt("A", "a")], initial_option=opt("A (renamed)", "a"))),
        "/accessory/initial_option]",
    ),
    (
        "initial_option not in any option group",
        with_accessory(select(option_groups=groups([opt("A", "a")], [opt("B", "b")]), initial_option=opt("C", "c"))),
        "/accessory/initial_option]",
    ),
    (
        "initial_options not among a multi select's options",
        with_accessory(select([opt("A", "a")], kind="multi_static_select", initial_options=[opt("A", "a"), opt("B", "b")])),
        "/accessory/initial_options/1]",
    ),
    (
        "11 checkboxes",
        actions({"type": "checkboxes", "action_id": "c", "options": [opt(value=str(i)) for i in range(11)]}),
        "/options]",
    ),
    (
        "a checkbox initial option not among the options",
        actions({"type": "checkboxes", "action_id": "c", "options": [opt("A", "a")], "initial_options": [opt("Z", "z")]}),
        "/initial_options/0]",
    ),
    (
        "6 overflow options",
        actions({"type": "overflow", "action_id": "o", "options": [opt(value=str(i)) for i in range(6)]}),
        "/options]",
    ),
    ("placeholder over 150", with_accessory(select([opt()], placeholder=plain("p" * 151))), "/accessory/placeholder/text]"),
]


@pytest.mark.parametrize("what, blocks, pointer", MESSAGE_REFUSALS, ids=[r[0] for r in MESSAGE_REFUSALS])
async def test_message_blocks_slack_refuses_are_refused(web_slack: FakeSlack, web_client: AsyncWebClient, what, blocks, pointer):
    with pytest.raises(SlackApiError) as info:
        await web_client.chat_postMessage(channel="C1", text="x", blocks=blocks)
    assert info.value.response["error"] == "invalid_blocks"
    messages = info.value.response["response_metadata"]["messages"]
    assert any(m.startswith("[ERROR] ") and pointer in m for m in messages), messages
    assert web_slack.violations and all(v.startswith("chat.postMessage: [ERROR]") for v in web_slack.violations)
    assert web_slack.messages("C1") == []
    # chat.update and chat.postEphemeral check the same blocks.
    posted = await web_client.chat_postMessage(channel="C1", text="x")
    assert await api_error(web_client.chat_update(channel="C1", ts=posted["ts"], text="x", blocks=blocks)) == "invalid_blocks"
    assert await api_error(web_client.chat_postEphemeral(channel="C1", user="U1", text="x", blocks=blocks)) == "invalid_blocks"


# Right at each limit, or allowed by Slack although it looks odd: accepted.
MESSAGE_ACCEPTED = [
    ("50 blocks", [section("b")] * 50),
    ("section text of 3000", [section("a" * 3000)]),
    ("10 fields of 2000", [{"type": "section", "fields": [mrkdwn("f" * 2000)] * 10}]),
    ("header of 150", [{"type": "header", "text": plain("h" * 150)}]),
    ("10 context elements", [{"type": "context", "elements": [mrkdwn("c")] * 10}]),
    ("button text of 75, value of 2000", actions(button(text="b" * 75, value="v" * 2000))),
    ("100 options of 75/150", with_accessory(select([opt("o" * 75, f"{i:03d}" + "v" * 147) for i in range(100)]))),
    ("initial_option among the options", with_accessory(select([opt("A", "a"), opt("B", "b")], initial_option=opt("B", "b")))),
    (
        "initial_option inside an option group",
        with_accessory(select(option_groups=groups([opt("A", "a")], [opt("B", "b")]), initial_option=opt("B", "b"))),
    ),
    (
        "external_select: initial_option without options",
        with_accessory(select(None, kind="external_select", initial_option=opt("#12 DB", "12"))),
    ),
]


@pytest.mark.parametrize("what, blocks", MESSAGE_ACCEPTED, ids=[r[0] for r in MESSAGE_ACCEPTED])
async def test_message_blocks_slack_accepts_are_accepted(web_slack: FakeSlack, web_client: AsyncWebClient, what, blocks):
    assert (await web_client.chat_postMessage(channel="C1", text="x", blocks=blocks))["ok"]
    assert web_slack.violations == []


# (what, view, a pointer the refusal must name). views.open answers invalid_arguments.
VIEW_REFUSALS = [
    ("title over 24", modal(title="x" * 25), "/view/title/text]"),
    ("submit over 24", modal(submit=plain("s" * 25)), "/view/submit/text]"),
    ("close over 24", modal(close=plain("c" * 25)), "/view/close/text]"),
    ("no title", {k: v for k, v in modal().items() if k != "title"}, "/view/title]"),
    ("private_metadata over 3000", modal(private_metadata="m" * 3001), "/view/private_metadata]"),
    ("callback_id over 255", modal(callback_id="c" * 256), "/view/callback_id]"),
    ("101 blocks", modal(blocks=[section("b")] * 101), "/view/blocks]"),
    ("input max_length over 3000", modal(blocks=[input_block(text_input(max_length=5000))]), "/element/max_length]"),
    (
        "initial_value longer than max_length",
        modal(blocks=[input_block(text_input(max_length=150, initial_value="r" * 151))]),
        "/element/initial_value]",
    ),
    ("initial_value over 3000", modal(blocks=[input_block(text_input(initial_value="r" * 3001))]), "/element/initial_value]"),
    ("label over 2000", modal(blocks=[input_block(text_input(), label="l" * 2001)]), "/view/blocks/0/label/text]"),
    ("hint over 2000", modal(blocks=[input_block(text_input(), hint=plain("h" * 2001))]), "/view/blocks/0/hint/text]"),
    (
        "an input without a submit button",
        {k: v for k, v in modal(blocks=[input_block(text_input())]).items() if k != "submit"},
        "/view/submit]",
    ),
    (
        "an external select's option text over 75",
        modal(blocks=[input_block(select(None, kind="external_select", initial_option=opt("o" * 76)))]),
        "/element/initial_option/text/text]",
    ),
]


@pytest.mark.parametrize("what, view, pointer", VIEW_REFUSALS, ids=[r[0] for r in VIEW_REFUSALS])
async def test_views_slack_refuses_are_refused(web_slack: FakeSlack, web_client: AsyncWebClient, what, view, pointer):
    with pytest.raises(SlackApiError) as info:
        await web_client.views_open(trigger_id=new_trigger_id(), view=view)
    assert info.value.response["error"] == "invalid_arguments"  # as views.open's document shows
    messages = info.value.response["response_metadata"]["messages"]
    assert any(pointer in m for m in messages), messages
    assert web_slack.views == {}
    assert all(v.startswith("views.open: [ERROR]") for v in web_slack.violations) and web_slack.violations


async def test_views_at_the_limits_are_accepted(web_slack: FakeSlack, web_client: AsyncWebClient):
    field = input_block(text_input(max_length=3000, initial_value="r" * 3000), label="l" * 2000)
    view = modal(title="t" * 24, submit=plain("s" * 24), close=plain("c" * 24), private_metadata="m" * 3000)
    view["blocks"] = [field] + [section("b")] * 99
    assert (await web_client.views_open(trigger_id=new_trigger_id(), view=view))["ok"]
    home = {"type": "home", "blocks": [section("b")] * 100}
    assert (await web_client.views_publish(user_id="U1", view=home))["ok"]
    assert web_slack.violations == []


async def test_a_home_view_over_100_blocks_and_a_view_over_250kb(web_slack: FakeSlack, web_client: AsyncWebClient):
    home = {"type": "home", "blocks": [section("b")] * 101}
    assert await api_error(web_client.views_publish(user_id="U1", view=home)) == "invalid_arguments"
    huge = modal(blocks=[section("h" * 3000)] * 90)
    assert await api_error(web_client.views_open(trigger_id=new_trigger_id(), view=huge)) == "view_too_large"
    assert len(web_slack.violations) == 2


async def test_views_publish_keeps_one_home_view_per_person_and_refuses_as_slack_does(
    web_slack: FakeSlack, web_client: AsyncWebClient
):
    first = (await web_client.views_publish(user_id="U1", view={"type": "home", "blocks": [section("one")]}))["view"]
    again = (await web_client.views_publish(user_id="U1", view={"type": "home", "blocks": [section("two")]}))["view"]
    assert again["id"] == first["id"] and web_slack.views[first["id"]]["blocks"] == [section("two")]
    assert (
        await api_error(web_client.views_publish(user_id="U1", view={"type": "home", "blocks": []}, hash="stale"))
        == "hash_conflict"
    )
    assert await api_error(web_client.views_publish(user_id="C1", view={"type": "home", "blocks": []})) == "invalid_arguments"
    assert await api_error(web_client.views_publish(user_id="U2", view={"type": "modal", "blocks": []})) == "invalid_arguments"
    web_slack.home_tab_enabled = False  # the app's Home tab is off
    assert await api_error(web_client.views_publish(user_id="U1", view={"type": "home", "blocks": []})) == "not_enabled"
    assert web_slack.views[first["id"]]["blocks"] == [section("two")]
    assert len(web_slack.violations) == 1  # the modal: a home view's type must be "home"


async def test_views_update_and_push_are_held_to_the_same_rules(web_slack: FakeSlack, web_client: AsyncWebClient):
    opened = (await web_client.views_open(trigger_id=new_trigger_id(), view=modal()))["view"]
    bad = modal(blocks=[input_block(text_input(max_length=10, initial_value="eleven char"))])
    assert await api_error(web_client.views_update(view_id=opened["id"], view=bad)) == "invalid_arguments"
    assert await api_error(web_client.views_push(trigger_id=new_trigger_id(), view=bad)) == "invalid_arguments"
    assert web_slack.views[opened["id"]]["blocks"] == [section("hello")]  # unchanged
    assert len(web_slack.violations) == 2


async def test_chat_update_text_over_4000_is_msg_too_long(web_slack: FakeSlack, web_client: AsyncWebClient):
    posted = await web_client.chat_postMessage(channel="C1", text="short")
    assert await api_error(web_client.chat_update(channel="C1", ts=posted["ts"], text="t" * 4001)) == "msg_too_long"
    assert web_slack.message("C1", posted["ts"])["text"] == "short"
    assert web_slack.violations == ["chat.update: [ERROR] must be less than 4001 characters (is 4001) [json-pointer:/text]"]
    web_slack.reset()
    posted = await web_client.chat_postMessage(channel="C1", text="short")
    assert (await web_client.chat_update(channel="C1", ts=posted["ts"], text="t" * 4000))["ok"]
    assert web_slack.violations == []


async def test_post_message_text_is_cut_at_40000_not_refused(web_slack: FakeSlack, web_client: AsyncWebClient):
    """Slack does not refuse a long text on chat.postMessage; it keeps the first 40,000."""
    posted = await web_client.chat_postMessage(channel="C1", text="p" * 40_001)
    assert posted["ok"] and len(web_slack.message("C1", posted["ts"])["text"]) == 40_000
    await web_client.chat_postEphemeral(channel="C1", user="U1", text="e" * 40_001)
    assert len(web_slack.ephemerals("C1")[0]["text"]) == 40_000
    assert web_slack.violations == []


# ------------------------------------------------------------------ waiting


def test_wait_for_from_sync_code(web_slack: FakeSlack):
    """Sync tests can drive the fake while another thread (here: a bot) calls it."""

    def bot() -> None:
        import asyncio

        async def post() -> None:
            await AsyncWebClient(token=TOKEN, base_url=web_slack.url).chat_postMessage(channel="C5", text="hi")

        time.sleep(0.05)
        asyncio.run(post())

    worker = threading.Thread(target=bot)
    worker.start()
    messages = web_slack.wait_for(lambda: web_slack.messages("C5"))
    worker.join()
    assert messages[0]["text"] == "hi"


async def test_await_for_times_out_with_dump(web_slack: FakeSlack, web_client: AsyncWebClient):
    await web_client.chat_postMessage(channel="C1", text="noise")
    with pytest.raises(AssertionError, match="chat.postMessage"):
        await web_slack.await_for(lambda: web_slack.messages("C404"), timeout=0.05)


async def test_post_latency_answers_late_with_the_message_already_in_the_channel(
    web_slack: FakeSlack, web_client: AsyncWebClient
):
    """`post_latency`: Slack has the post before its answer arrives (what a sender killed in
    between never learns)."""
    import asyncio

    web_slack.post_latency = 0.5
    started = time.monotonic()
    sending = asyncio.ensure_future(web_client.chat_postMessage(channel="C1", text="landed"))
    seen = await web_slack.await_for(lambda: web_slack.messages("C1"))
    assert seen[0]["text"] == "landed" and not sending.done()
    assert (await sending)["ok"] and time.monotonic() - started >= 0.5
    web_slack.reset()
    assert web_slack.post_latency == 0.0


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


# ------------------------------------------------- the bot's HTTP answers (harness)


def test_ack_problems_hold_http_answers_to_the_same_limits():
    assert ack_problems("command", {"text": "ok", "blocks": [section("ok")], "response_type": "ephemeral"}) == []
    assert ack_problems("command", None) == [] and ack_problems("block_actions", {}) == []
    too_many = ack_problems("command", {"text": "x", "blocks": [section("b")] * 51})
    assert too_many and "/blocks]" in too_many[0]
    assert ack_problems("command", {"response_type": "ephemeral"})  # no text at all
    assert ack_problems("command", {"text": "x", "blocks": [section("a" * 3001)]})
    update = {"response_action": "update", "view": modal(title="x" * 25)}
    assert any("/view/title/text]" in p for p in ack_problems("view_submission", update))
    assert ack_problems("view_submission", {"response_action": "push", "view": modal()}) == []
    assert ack_problems("view_submission", {"response_action": "errors", "errors": {"b": "Say why."}}) == []
    assert ack_problems("view_submission", {"response_action": "errors", "errors": {}})
    options = {"options": [opt(f"#{i}", str(i)) for i in range(101)]}
    assert any("/options]" in p for p in ack_problems("block_suggestion", options))
    assert ack_problems("block_suggestion", {"options": [opt("o" * 76)]})
    assert ack_problems("block_suggestion", {"options": [opt(value="v" * 151)]})
    assert ack_problems("block_suggestion", {"options": []}) == []


def test_the_harness_fails_a_test_whose_bot_answers_what_slack_refuses():
    import httpx

    from tests.support.fakes.signing import command_body
    from tests.support.harness import BotUnderTest

    class Recorder:
        ack_violations: list[str] = []

    bad = httpx.Response(200, json={"text": "x", "blocks": [section("b")] * 51})
    with pytest.raises(AssertionError, match="Slack refuses"):
        BotUnderTest.check_answer(Recorder, command_body("/incident", "list"), bad)
    assert Recorder.ack_violations and Recorder.ack_violations[0].startswith("command answer: [ERROR]")
    fine = httpx.Response(200, json={"text": "x", "blocks": [section("b")]})
    BotUnderTest.check_answer(Recorder, command_body("/incident", "list"), fine)
    suggestion = interaction_body({"type": "block_suggestion", "action_id": "a", "value": ""})
    with pytest.raises(AssertionError):
        BotUnderTest.check_answer(Recorder, suggestion, httpx.Response(200, json={"options": [opt("o" * 80)]}))
