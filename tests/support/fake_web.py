"""Fixtures for tests of the fake Slack itself (registered in tests/conftest.py): a fresh
`FakeSlack` of its own (`web_slack`, every scope granted, not the session's shared one) and
the real slack_sdk client pointed at it (`web_client`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from tests.support.fakes.slack_api import FakeSlack

TOKEN = "xoxb-test-token"


@pytest.fixture
def web_slack() -> Iterator[FakeSlack]:
    with FakeSlack(token=TOKEN) as fake:
        yield fake


@pytest.fixture
async def web_client(web_slack: FakeSlack) -> AsyncIterator[AsyncWebClient]:
    yield AsyncWebClient(token=TOKEN, base_url=web_slack.url)
