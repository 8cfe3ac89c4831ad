"""The line every announcement carries when sitrep runs in the sandbox (`sitrep run
--sandbox`), so nobody in the channel takes a tried-out incident for a real one."""

from __future__ import annotations

from bot.messages.format import MAX_MESSAGE_TEXT, MAX_SECTION_TEXT, clip, context, section

SANDBOX_NOTE = (
    ":test_tube: *Sandbox:* sitrep is running with stand-ins for the status page and AppFirst "
    "(`sitrep run --sandbox`). Nothing here reached a real status page, and it is all forgotten "
    "when sitrep stops."
)
SANDBOX_PREFIX = "[sandbox] "


def in_sandbox(message: tuple[str, list[dict]]) -> tuple[str, list[dict]]:
    """An announcement (fallback text, blocks) marked as the sandbox's: a context line last,
    and the fallback text (what notifications show) prefixed."""
    text, blocks = message
    return clip(SANDBOX_PREFIX + text, MAX_MESSAGE_TEXT), [*blocks, context(SANDBOX_NOTE)]


def answer_in_sandbox(text: str, blocks: list[dict] | None) -> tuple[str, list[dict]]:
    """A private answer marked the same way. A text-only answer gets its text as a block
    first: with blocks, Slack shows them and keeps the text for notifications only."""
    return in_sandbox((text, list(blocks) if blocks else [section(clip(text, MAX_SECTION_TEXT))]))
