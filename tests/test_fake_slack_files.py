"""The fake Slack's external file upload (files.getUploadURLExternal, the upload URL,
files.completeUploadExternal) refuses what Slack refuses, driven by the real slack_sdk client."""

from __future__ import annotations

import httpx
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.support.fakes.slack_api import FakeSlack

TOKEN = "xoxb-test-token"


async def _upload(web_client: AsyncWebClient, data: bytes, *, length: int | None = None) -> str:
    got = await web_client.files_getUploadURLExternal(filename="draft.md", length=len(data) if length is None else length)
    async with httpx.AsyncClient(timeout=5) as http:
        answer = await http.post(got["upload_url"], content=data)
    assert answer.status_code == 200, answer.text
    return got["file_id"]


async def test_a_file_uploaded_and_completed_is_shared_in_the_thread(web_slack: FakeSlack, web_client: AsyncWebClient):
    parent = await web_client.chat_postMessage(channel="C1", text="parent")
    file_id = await _upload(web_client, b"# Draft\n")
    done = await web_client.files_completeUploadExternal(
        files=[{"id": file_id, "title": "Postmortem"}], channel_id="C1", thread_ts=parent["ts"]
    )
    assert done["files"][0]["id"] == file_id
    [shared] = web_slack.shared_files("C1")
    assert (shared["title"], shared["thread_ts"], shared["content"]) == ("Postmortem", parent["ts"], b"# Draft\n")
    replies = (await web_client.conversations_replies(channel="C1", ts=parent["ts"]))["messages"]
    assert replies[-1]["files"][0]["id"] == file_id
    assert web_slack.violations == []


@pytest.mark.parametrize("missing", ["filename", "length"])
async def test_getting_an_upload_url_without_filename_or_length_is_refused(
    web_slack: FakeSlack, web_client: AsyncWebClient, missing
):
    args = {"filename": "draft.md", "length": 10}
    del args[missing]
    with pytest.raises(SlackApiError) as refused:
        await web_client.api_call("files.getUploadURLExternal", params=args)
    assert refused.value.response["error"] == "invalid_arguments"
    assert any(f"missing required argument {missing!r}" in v for v in web_slack.violations)


async def test_a_zero_length_is_refused_as_missing(web_client: AsyncWebClient):
    with pytest.raises(SlackApiError) as refused:
        await web_client.files_getUploadURLExternal(filename="draft.md", length=0)
    assert refused.value.response["error"] == "missing_argument"


async def test_completing_an_unknown_file_is_refused(web_slack: FakeSlack, web_client: AsyncWebClient):
    with pytest.raises(SlackApiError) as refused:
        await web_client.files_completeUploadExternal(files=[{"id": "F404", "title": "x"}], channel_id="C1")
    assert refused.value.response["error"] == "file_not_found"
    assert web_slack.shared_files() == []


async def test_completing_a_file_never_uploaded_is_refused(web_slack: FakeSlack, web_client: AsyncWebClient):
    got = await web_client.files_getUploadURLExternal(filename="draft.md", length=5)
    with pytest.raises(SlackApiError) as refused:
        await web_client.files_completeUploadExternal(files=[{"id": got["file_id"]}], channel_id="C1")
    assert refused.value.response["error"] == "file_not_found"
    assert web_slack.shared_files() == []


async def test_an_upload_whose_size_differs_from_the_length_given_is_refused(web_slack: FakeSlack, web_client: AsyncWebClient):
    got = await web_client.files_getUploadURLExternal(filename="draft.md", length=5)
    async with httpx.AsyncClient(timeout=5) as http:
        answer = await http.post(got["upload_url"], content=b"longer than five")
    assert answer.status_code == 400
    assert web_slack.file(got["file_id"])["content"] is None
    web_slack.forget_calls()


async def test_an_upload_failure_takes_nothing(web_slack: FakeSlack, web_client: AsyncWebClient):
    got = await web_client.files_getUploadURLExternal(filename="draft.md", length=3)
    web_slack.fail_next_upload(500)
    async with httpx.AsyncClient(timeout=5) as http:
        assert (await http.post(got["upload_url"], content=b"abc")).status_code == 500
        assert (await http.post(got["upload_url"], content=b"abc")).status_code == 200


async def test_the_upload_needs_files_write(web_slack: FakeSlack, web_client: AsyncWebClient):
    web_slack.grant({"chat:write"})
    with pytest.raises(SlackApiError) as refused:
        await web_client.files_getUploadURLExternal(filename="draft.md", length=3)
    assert refused.value.response["error"] == "missing_scope"
    assert refused.value.response["needed"] == "files:write"
