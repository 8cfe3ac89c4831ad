"""Placeholder until the reminders issue: the scheduler that wakes the bot at due times."""

from __future__ import annotations

from bot.context import AppContext


class ReminderScheduler:
    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
