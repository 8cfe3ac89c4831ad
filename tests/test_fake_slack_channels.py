"""The fake Slack's channels: conversations.create, .invite and .archive answer as Slack's
method documents say (arguments, name rules, errors), scopes are enforced when the fake is
given a set, and an archived channel takes no more posts. Driven by the real slack_sdk client."""

from __future__ import annotations

import asyncio

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.support.fakes.slack_api import BOT_USER_ID, channel_name_error

TOKEN = "xoxb-test-token"


async def api_error(awaitable) -> SlackApiError:
    with pytest.raises(SlackApiError) as info:
        await awaitable
    return info.value


async def test_create_gives_a_conversation_the_bot_is_in(web_slack, web_client):
    answer = await web_client.conversations_create(name="inc-1-db-down", is_private=True)
    channel = answer["channel"]
    assert channel["name"] == "inc-1-db-down" and channel["is_private"] is True and channel["is_member"] is True
    assert channel["id"].startswith("C")
    assert web_slack.channel(channel["id"])["members"] == [BOT_USER_ID]
    assert web_slack.violations == []


@pytest.mark.parametrize(
    "name, error",
    [
        ("", "invalid_name_required"),
        ("x" * 81, "invalid_name_maxlength"),
        ("Inc-1", "invalid_name_specials"),
        ("inc 1", "invalid_name_specials"),
        ("inc#1", "invalid_name_specials"),
        ("café", "invalid_name_specials"),
        ("--__", "invalid_name_punctuation"),
    ],
)
def test_names_slack_refuses(name, error):
    assert channel_name_error(name) == error


def test_names_slack_takes():
    for name in ("inc-1-db-down", "x" * 80, "a_b-9"):
        assert channel_name_error(name) is None


async def test_create_refuses_a_bad_or_taken_name(web_slack, web_client):
    assert (await api_error(web_client.conversations_create(name="Bad Name"))).response["error"] == "invalid_name_specials"
    web_slack.add_channel("inc-1-db-down")
    assert (await api_error(web_client.conversations_create(name="inc-1-db-down"))).response["error"] == "name_taken"
    # An archived channel keeps its name.
    made = (await web_client.conversations_create(name="inc-2-x"))["channel"]["id"]
    await web_client.conversations_archive(channel=made)
    assert (await api_error(web_client.conversations_create(name="inc-2-x"))).response["error"] == "name_taken"


async def test_create_without_its_required_name_is_a_violation(web_slack, web_client):
    error = await api_error(web_client.api_call("conversations.create", json={"is_private": False}))
    assert error.response["error"] == "invalid_arguments"
    assert any("missing required argument 'name'" in v for v in web_slack.violations)


async def test_invite_adds_people_and_refuses_as_slack_does(web_slack, web_client):
    made = (await web_client.conversations_create(name="inc-3-x"))["channel"]["id"]
    answer = await web_client.conversations_invite(channel=made, users="U1,U2")
    assert answer["channel"]["id"] == made
    assert web_slack.channel(made)["members"] == sorted([BOT_USER_ID, "U1", "U2"])
    assert (await api_error(web_client.conversations_invite(channel=made, users="U1"))).response["error"] == "already_in_channel"
    assert (await api_error(web_client.conversations_invite(channel=made, users=BOT_USER_ID))).response[
        "error"
    ] == "cant_invite_self"
    assert (await api_error(web_client.conversations_invite(channel="C404", users="U1"))).response["error"] == "channel_not_found"
    theirs = web_slack.add_channel("someone-elses", members=("UHUMAN",))
    assert (await api_error(web_client.conversations_invite(channel=theirs, users="U1"))).response["error"] == "not_in_channel"


async def test_archive_once_and_then_no_more_posts(web_slack, web_client):
    made = (await web_client.conversations_create(name="inc-4-x"))["channel"]["id"]
    posted = await web_client.chat_postMessage(channel=made, text="hello")
    assert (await web_client.conversations_archive(channel=made))["ok"] is True
    assert web_slack.channel(made)["is_archived"] is True
    assert (await api_error(web_client.conversations_archive(channel=made))).response["error"] == "already_archived"
    assert (await api_error(web_client.chat_postMessage(channel=made, text="again"))).response["error"] == "is_archived"
    assert (await api_error(web_client.chat_update(channel=made, ts=posted["ts"], text="x"))).response["error"] == "is_archived"
    assert (await api_error(web_client.conversations_invite(channel=made, users="U1"))).response["error"] == "is_archived"
    assert (await api_error(web_client.conversations_archive(channel="C404"))).response["error"] == "channel_not_found"


async def test_posting_in_a_known_channel_the_bot_is_not_in_is_refused(web_slack, web_client):
    theirs = web_slack.add_channel("someone-elses", members=("UHUMAN",))
    assert (await api_error(web_client.chat_postMessage(channel=theirs, text="hi"))).response["error"] == "not_in_channel"


async def test_reading_a_channel_the_bot_is_not_in_is_refused_as_slack_documents(web_slack, web_client):
    public = web_slack.add_channel("ops-public", members=("UHUMAN",))
    private = web_slack.add_channel("ops-private", private=True, members=("UHUMAN",))
    assert (await api_error(web_client.conversations_history(channel=public, limit=1))).response["error"] == "not_in_channel"
    assert (await api_error(web_client.conversations_history(channel=private, limit=1))).response["error"] == "channel_not_found"
    web_slack.hidden_channels.add("C0HIDDEN")
    assert (await api_error(web_client.conversations_history(channel="C0HIDDEN", limit=1))).response[
        "error"
    ] == "channel_not_found"
    web_slack.set_member(public, True)  # /invite @sitrep
    assert (await web_client.conversations_history(channel=public, limit=1))["ok"] is True
    web_slack.set_member(public, False)
    assert (await api_error(web_client.conversations_history(channel=public, limit=1))).response["error"] == "not_in_channel"


async def test_scopes_are_enforced_when_given(web_slack, web_client):
    web_slack.grant({"commands", "chat:write"})
    error = await api_error(web_client.conversations_create(name="inc-5-x"))
    assert error.response["error"] == "missing_scope" and error.response["needed"] == "channels:manage"
    assert "chat:write" in error.response["provided"]
    # Public and private channels need different scopes.
    web_slack.grant({"chat:write", "channels:manage"})
    public = (await web_client.conversations_create(name="inc-5-x"))["channel"]["id"]
    assert (await api_error(web_client.conversations_create(name="inc-6-x", is_private=True))).response[
        "needed"
    ] == "groups:write"
    await web_client.conversations_invite(channel=public, users="U1")
    await web_client.conversations_archive(channel=public)
    web_slack.grant({"chat:write", "groups:write"})
    private = (await web_client.conversations_create(name="inc-6-x", is_private=True))["channel"]["id"]
    await web_client.conversations_invite(channel=private, users="U1")
    await web_client.conversations_archive(channel=private)
    # Every other method needs one of the scopes its document lists.
    web_slack.grant({"commands"})
    assert (await api_error(web_client.chat_postMessage(channel="C1", text="hi"))).response["error"] == "missing_scope"
    assert (await web_client.auth_test())["ok"] is True  # needs no scope
    web_slack.grant(None)
    assert (await web_client.chat_postMessage(channel="C1", text="hi"))["ok"] is True
    assert web_slack.violations == []


async def test_a_delayed_call_times_the_client_out_and_still_happens(web_slack, web_client):
    web_slack.delay_next("conversations.create", 1.0)
    with pytest.raises(asyncio.TimeoutError):  # the web_client gave up before the fake answered
        await AsyncWebClient(token=TOKEN, base_url=web_slack.url, timeout=0.2).conversations_create(name="inc-7-x")
    assert await web_slack.await_for(lambda: web_slack.channel_named("inc-7-x"))  # Slack may well have done it
    assert (await web_client.conversations_create(name="inc-8-x"))["ok"] is True  # only the next call waited


# --- conversations.members: who is in a channel, as the home tab asks it -----------------------


async def test_members_come_in_pages_as_slack_pages_them(web_slack, web_client):
    people = tuple(f"U{i:03d}" for i in range(5))
    channel = web_slack.add_channel("ops", members=(BOT_USER_ID, *people))
    first = await web_client.conversations_members(channel=channel, limit=4)
    assert first["members"] == sorted((BOT_USER_ID, *people))[:4]
    cursor = first["response_metadata"]["next_cursor"]
    assert cursor
    rest = await web_client.conversations_members(channel=channel, limit=4, cursor=cursor)
    assert rest["members"] == sorted((BOT_USER_ID, *people))[4:] and rest["response_metadata"]["next_cursor"] == ""


async def test_members_of_a_public_channel_the_bot_is_not_in_are_listed(web_slack, web_client):
    channel = web_slack.add_channel("general", members=("U1", "U2"))
    assert (await web_client.conversations_members(channel=channel))["members"] == ["U1", "U2"]


async def test_members_of_a_private_channel_the_bot_is_not_in_or_of_no_channel_are_not_found(web_slack, web_client):
    hidden = web_slack.add_channel("secret", private=True, members=("U1",))
    assert (await api_error(web_client.conversations_members(channel=hidden))).response["error"] == "channel_not_found"
    assert (await api_error(web_client.conversations_members(channel="C0NOWHERE"))).response["error"] == "channel_not_found"


async def test_members_need_the_read_scope_of_the_channels_kind(web_slack, web_client):
    public = web_slack.add_channel("ops", members=(BOT_USER_ID, "U1"))
    private = web_slack.add_channel("sec", private=True, members=(BOT_USER_ID, "U1"))
    web_slack.grant({"chat:write", "channels:read"})
    assert (await web_client.conversations_members(channel=public))["members"]
    refused = (await api_error(web_client.conversations_members(channel=private))).response
    assert refused["error"] == "missing_scope" and refused["needed"] == "groups:read"
    web_slack.grant({"chat:write", "groups:read"})
    assert (await web_client.conversations_members(channel=private))["members"]
    assert (await api_error(web_client.conversations_members(channel=public))).response["needed"] == "channels:read"


@pytest.mark.parametrize("limit", [0, 1001])
async def test_members_refuse_a_limit_out_of_bounds(web_slack, web_client, limit):
    channel = web_slack.add_channel("ops")
    assert (await api_error(web_client.conversations_members(channel=channel, limit=limit))).response["error"] == "invalid_limit"
