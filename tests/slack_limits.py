"""Slack's limits on what we send, checked on plain dicts (slack_sdk checks only its models).
Numbers from ../shared/slack/README.md and Block Kit's reference."""

from __future__ import annotations

MAX_MESSAGE_BLOCKS = 50
MAX_MODAL_BLOCKS = 100
MAX_MODAL_BUTTON_TEXT = 24
MAX_SECTION_TEXT = 3000
MAX_FIELD_TEXT = 2000
MAX_FIELDS = 10
MAX_PRIVATE_METADATA = 3000
MAX_INPUT_LENGTH = 3000
MAX_OPTIONS = 100
MAX_OPTION_TEXT = 75
MAX_BUTTON_TEXT = 75
MAX_HEADER_TEXT = 150


def check_blocks(blocks: list[dict]) -> None:
    for b in blocks:
        if b["type"] in ("section", "context") or "text" in b:
            text = b.get("text")
            if isinstance(text, dict):
                assert len(text["text"]) <= MAX_SECTION_TEXT, b
        if b["type"] == "header":
            assert len(b["text"]["text"]) <= MAX_HEADER_TEXT
        for f in b.get("fields", []):
            assert len(f["text"]) <= MAX_FIELD_TEXT
        assert len(b.get("fields", [])) <= MAX_FIELDS
        for element in b.get("elements", []) + ([b["element"]] if "element" in b else []):
            if element.get("type") == "plain_text_input":
                assert element["max_length"] <= MAX_INPUT_LENGTH
            if element.get("type") == "button":
                assert len(element["text"]["text"]) <= MAX_BUTTON_TEXT
                assert len(element.get("value", "")) <= 2000
            if element.get("type") == "mrkdwn":
                assert len(element["text"]) <= MAX_SECTION_TEXT
            options = element.get("options", [])
            assert len(options) <= MAX_OPTIONS
            for option in options + element.get("initial_options", []):
                assert len(option["text"]["text"]) <= MAX_OPTION_TEXT


def check_message(blocks: list[dict]) -> None:
    assert len(blocks) <= MAX_MESSAGE_BLOCKS
    check_blocks(blocks)


def check_modal(view: dict) -> None:
    assert len(view["blocks"]) <= MAX_MODAL_BLOCKS
    for key in ("title", "submit", "close"):
        assert len(view[key]["text"]) <= MAX_MODAL_BUTTON_TEXT
    assert len(view["private_metadata"]) <= MAX_PRIVATE_METADATA
    check_blocks(view["blocks"])
