"""Reminder rows for a maintenance window (heads-up, started, ended).

Contract used by the maintenance service: call `schedule_window_reminders` after a window
is created or its times change, and `cancel_window_reminders` when it is cancelled.
(Full implementation arrives with the reminders issue.)"""

from __future__ import annotations

from bot.context import AppContext


async def schedule_window_reminders(ctx: AppContext, window_id: int) -> None:
    return None


async def cancel_window_reminders(ctx: AppContext, window_id: int) -> None:
    return None
