"""Socket Mode wiring. The websocket itself is Slack's (no fake speaks it), so this one test
stands in for the connection and checks what sitrep does around it."""

from __future__ import annotations

import asyncio
import os
import signal

from pydantic import SecretStr

from bot.app import Sitrep
from bot.context import build_context


def test_socket_mode_connects_with_the_app_token_and_stops_cleanly_on_sigterm(settings, monkeypatch):
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

    settings = settings.model_copy(update={"slack_app_token": SecretStr("xapp-1-test"), "slack_signing_secret": None})
    seen: dict = {}

    async def connect(self):
        seen["token"] = self.app_token
        seen["app"] = self.app
        asyncio.get_running_loop().call_later(0.2, os.kill, os.getpid(), signal.SIGTERM)

    async def close(self):
        seen["closed"] = True

    monkeypatch.setattr(AsyncSocketModeHandler, "connect_async", connect)
    monkeypatch.setattr(AsyncSocketModeHandler, "close_async", close)

    async def run():
        bot = Sitrep(build_context(settings))
        await asyncio.wait_for(bot.serve_socket_mode(), timeout=10)
        return bot

    bot = asyncio.run(run())
    assert seen["token"] == "xapp-1-test" and seen["app"] is bot.bolt
    assert seen["closed"] is True
    assert not bot.started and not bot.scheduler.scheduler.running
