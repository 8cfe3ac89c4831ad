"""The fake Slack's external file upload (files.getUploadURLExternal, the upload URL,
files.completeUploadExternal) refuses what Slack refuses, driven by the real slack_sdk client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.support.fakes.slack_api import FakeSlack

TOKEN = "xoxb-test-token"


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(token=TOKEN) as fake:
        yield fake


@pytest.fixture
async def client(slack: FakeSlack) -> AsyncIterator[AsyncWebClient]:
    yield AsyncWebClient(token=TOKEN, base_url=slack.url)


async def _upload(client: AsyncWebClient, data: bytes, *, length: int | None = None) -> str:
    got = await client.files_getUploadURLExternal(filename="draft.md", length=len(data) if length is None else length)
    async with httpx.AsyncClient(timeout=5) as http:
        answer = await http.post(got["upload_url"], content=data)
    assert answer.status_code == 200, answer.text
    return got["file_id"]


async def test_a_file_uploaded_and_completed_is_shared_in_the_thread(slack: FakeSlack, client: AsyncWebClient):
    parent = await client.chat_postMessage(channel="C1", text="parent")
    file_id = await _upload(client, b"# Draft\n")
    done = await client.files_completeUploadExternal(
        files=[{"id": file_id, "title": "Postmortem"}], channel_id="C1", thread_ts=parent["ts"]
    )
    assert done["files"][0]["id"] == file_id
    [shared] = slack.shared_files("C1")
    assert (shared["title"], shared["thread_ts"], shared["content"]) == ("Postmortem", parent["ts"], b"# Draft\n")
    replies = (await client.conversations_replies(channel="C1", ts=parent["ts"]))["messages"]
    assert replies[-1]["files"][0]["id"] == file_id
    assert slack.violations == []


@pytest.mark.parametrize("missing", ["filename", "length"])
async def test_getting_an_upload_url_without_filename_or_length_is_refused(slack: FakeSlack, client: AsyncWebClient, missing):
    args = {"filename": "draft.md", "length": 10}
    del args[missing]
    with pytest.raises(SlackApiError) as refused:
        await client.api_call("files.getUploadURLExternal", params=args)
    assert refused.value.response["error"] == "invalid_arguments"
    assert any(f"missing required argument {missing!r}" in v for v in slack.violations)


async def test_a_zero_length_is_refused_as_missing(client: AsyncWebClient):
    with pytest.raises(SlackApiError) as refused:
        await client.files_getUploadURLExternal(filename="draft.md", length=0)
    assert refused.value.response["error"] == "missing_argument"


async def test_completing_an_unknown_file_is_refused(slack: FakeSlack, client: AsyncWebClient):
    with pytest.raises(SlackApiError) as refused:
        await client.files_completeUploadExternal(files=[{"id": "F404", "title": "x"}], channel_id="C1")
    assert refused.value.response["error"] == "file_not_found"
    assert slack.shared_files() == []


async def test_completing_a_file_never_uploaded_is_refused(slack: FakeSlack, client: AsyncWebClient):
    got = await client.files_getUploadURLExternal(filename="draft.md", length=5)
    with pytest.raises(SlackApiError) as refused:
        await client.files_completeUploadExternal(files=[{"id": got["file_id"]}], channel_id="C1")
    assert refused.value.response["error"] == "file_not_found"
    assert slack.shared_files() == []


async def test_an_upload_whose_size_differs_from_the_length_given_is_refused(slack: FakeSlack, client: AsyncWebClient):
    got = await client.files_getUploadURLExternal(filename="draft.md", length=5)
    async with httpx.AsyncClient(timeout=5) as http:
        answer = await http.post(got["upload_url"], content=b"longer than five")
    assert answer.status_code == 400
    assert slack.file(got["file_id"])["content"] is None
    slack.forget_calls()


async def test_an_upload_failure_takes_nothing(slack: FakeSlack, client: AsyncWebClient):
    got = await client.files_getUploadURLExternal(filename="draft.md", length=3)
    slack.fail_next_upload(500)
    async with httpx.AsyncClient(timeout=5) as http:
        assert (await http.post(got["upload_url"], content=b"abc")).status_code == 500
        assert (await http.post(got["upload_url"], content=b"abc")).status_code == 200


async def test_the_upload_needs_files_write(slack: FakeSlack, client: AsyncWebClient):
    slack.grant({"chat:write"})
    with pytest.raises(SlackApiError) as refused:
        await client.files_getUploadURLExternal(filename="draft.md", length=3)
    assert refused.value.response["error"] == "missing_scope"
    assert refused.value.response["needed"] == "files:write"
