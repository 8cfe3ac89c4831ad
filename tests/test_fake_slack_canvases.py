"""The fake Slack's channel canvases (conversations.canvases.create from the shared method
documents, canvases.edit described from Slack's page, conversations.info showing the canvas)
refuse what Slack refuses, driven by the real slack_sdk client."""

from __future__ import annotations

import pytest
from slack_sdk.errors import SlackApiError

from tests.support.fakes.slack_api import (
    CANVAS_MARKDOWN_MAX,
    EXTRA_METHOD_DOCS,
    FakeSlack,
    default_shared_dir,
    load_method_docs,
)


def markdown(text: str) -> dict:
    return {"type": "markdown", "markdown": text}


@pytest.fixture
def room(web_slack: FakeSlack) -> str:
    return web_slack.add_channel("inc-1-db-down")


async def refused(call) -> dict:
    with pytest.raises(SlackApiError) as caught:
        await call
    return caught.value.response.data


def test_create_is_checked_against_slacks_own_document_and_edit_against_its_page():
    docs = load_method_docs((default_shared_dir() / "slack" / "docs_slack_dev_methods").resolve())
    assert docs["conversations.canvases.create"]["required"] == ["token", "channel_id"]
    assert "conversations.canvases.create" not in EXTRA_METHOD_DOCS  # the shared document is the source
    assert EXTRA_METHOD_DOCS["canvases.edit"]["required"] == ["token", "canvas_id", "changes"]


async def test_a_canvas_is_created_shown_by_conversations_info_and_replaced(web_slack: FakeSlack, web_client, room):
    assert "properties" not in (await web_client.conversations_info(channel=room))["channel"]
    made = await web_client.conversations_canvases_create(channel_id=room, title="Postmortem", document_content=markdown("# One"))
    info = (await web_client.conversations_info(channel=room))["channel"]
    assert info["properties"]["canvas"]["file_id"] == made["canvas_id"]
    await web_client.canvases_edit(
        canvas_id=made["canvas_id"], changes=[{"operation": "replace", "document_content": markdown("# Two")}]
    )
    canvas = web_slack.canvas_of(room)
    assert (canvas["id"], canvas["title"], canvas["markdown"], canvas["edits"]) == (made["canvas_id"], "Postmortem", "# Two", 1)
    assert web_slack.violations == []


async def test_a_second_canvas_in_a_channel_is_refused(web_slack: FakeSlack, web_client, room):
    web_slack.person_adds_canvas(room)
    answer = await refused(web_client.conversations_canvases_create(channel_id=room, document_content=markdown("# Mine")))
    assert answer["error"] == "channel_canvas_already_exists"
    assert web_slack.canvas_of(room)["markdown"] == "Our notes"


@pytest.mark.parametrize("where", ["unknown", "private without the bot"])
async def test_a_channel_the_bot_cannot_see_is_not_found(web_slack: FakeSlack, web_client, where):
    channel = "C404" if where == "unknown" else web_slack.add_channel("secret", private=True, members=("U1",))
    answer = await refused(web_client.conversations_canvases_create(channel_id=channel, document_content=markdown("x")))
    assert answer["error"] == "channel_not_found"
    assert (await refused(web_client.conversations_info(channel=channel)))["error"] == "channel_not_found"


@pytest.mark.parametrize(
    "content",
    [{"type": "html", "markdown": "x"}, {"type": "markdown"}, {"type": "markdown", "markdown": 3}, ["markdown"]],
    ids=["not markdown", "no text", "text not a string", "not an object"],
)
async def test_a_document_content_of_the_wrong_shape_is_refused(web_slack: FakeSlack, web_client, room, content):
    answer = await refused(web_client.conversations_canvases_create(channel_id=room, document_content=content))
    assert answer["error"] == "invalid_arguments"
    assert web_slack.canvas_of(room) is None


async def test_markdown_past_the_documented_mebibyte_is_refused(web_slack: FakeSlack, web_client, room):
    too_long = markdown("x" * (CANVAS_MARKDOWN_MAX + 1))
    answer = await refused(web_client.conversations_canvases_create(channel_id=room, document_content=too_long))
    assert answer["error"] == "canvas_creation_failed"
    await web_client.conversations_canvases_create(channel_id=room, document_content=markdown("x" * CANVAS_MARKDOWN_MAX))


async def test_creating_and_editing_need_canvases_write(web_slack: FakeSlack, web_client, room):
    canvas_id = web_slack.person_adds_canvas(room)
    web_slack.grant({"chat:write", "channels:read"})
    answer = await refused(web_client.conversations_canvases_create(channel_id=room, document_content=markdown("x")))
    assert (answer["error"], answer["needed"]) == ("missing_scope", "canvases:write")
    replace = [{"operation": "replace", "document_content": markdown("y")}]
    answer = await refused(web_client.canvases_edit(canvas_id=canvas_id, changes=replace))
    assert (answer["error"], answer["needed"]) == ("missing_scope", "canvases:write")
    assert web_slack.canvas_of(room)["markdown"] == "Our notes"


async def test_arguments_outside_the_documents_are_refused_and_recorded(web_slack: FakeSlack, web_client, room):
    answer = await refused(web_client.api_call("conversations.canvases.create", json={"channel_id": room, "markdown": "# x"}))
    assert answer["error"] == "invalid_arguments"
    answer = await refused(web_client.api_call("conversations.canvases.create", json={"document_content": markdown("x")}))
    assert answer["error"] == "invalid_arguments"
    assert any("unknown argument 'markdown'" in v for v in web_slack.violations)
    assert any("missing required argument 'channel_id'" in v for v in web_slack.violations)
    web_slack.forget_calls()


@pytest.mark.parametrize(
    "changes",
    [
        [],
        [
            {"operation": "replace", "document_content": markdown("a")},
            {"operation": "replace", "document_content": markdown("b")},
        ],
        [{"operation": "rewrite", "document_content": markdown("a")}],
        [{"operation": "insert_after", "document_content": markdown("a")}],
        [{"operation": "replace"}],
    ],
    ids=["none", "two at once", "unknown operation", "insert_after without section_id", "replace without content"],
)
async def test_an_edit_the_page_rules_out_is_refused(web_slack: FakeSlack, web_client, room, changes):
    canvas_id = web_slack.person_adds_canvas(room)
    answer = await refused(web_client.canvases_edit(canvas_id=canvas_id, changes=changes))
    assert answer["error"] == "invalid_arguments"
    assert web_slack.canvas_of(room)["markdown"] == "Our notes"
    web_slack.forget_calls()


async def test_editing_an_unknown_canvas_is_refused(web_client):
    replace = [{"operation": "replace", "document_content": markdown("y")}]
    assert (await refused(web_client.canvases_edit(canvas_id="F404", changes=replace)))["error"] == "canvas_not_found"
