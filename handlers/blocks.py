"""Block Kit building blocks for modals, shared by every feature's views. Pure functions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from handlers.text import plain

MAX_OPTIONS = 100  # options in one select


def option(text: str, value: str) -> dict:
    return {"text": plain(text), "value": value}


def select(action_id: str, options: Sequence[tuple[str, str]], initial: str | None, placeholder: str) -> dict:
    element: dict = {
        "type": "static_select",
        "action_id": action_id,
        "placeholder": plain(placeholder),
        "options": [option(label, value) for label, value in options][:MAX_OPTIONS],
    }
    chosen = next(((label, value) for label, value in options if value == initial), None)
    if chosen:
        element["initial_option"] = option(*chosen)
    return element


def input(block_id: str, label: str, element: dict, *, optional: bool = False, hint: str | None = None) -> dict:
    block = {"type": "input", "block_id": block_id, "label": plain(label), "element": element, "optional": optional}
    if hint:
        block["hint"] = plain(hint, 150)
    return block


def text_input(action_id: str, *, initial: str = "", multiline: bool = False, max_length: int, placeholder: str) -> dict:
    element = {
        "type": "plain_text_input",
        "action_id": action_id,
        "multiline": multiline,
        "max_length": max_length,
        "placeholder": plain(placeholder, 150),
    }
    if initial:
        element["initial_value"] = initial[:max_length]
    return element


def date_time(action_id: str, initial: datetime | None) -> dict:
    element: dict[str, Any] = {"type": "datetimepicker", "action_id": action_id}
    if initial is not None:
        element["initial_date_time"] = int(initial.timestamp())
    return element


def modal(callback_id: str, title: str, submit: str, blocks: list[dict], metadata: dict) -> dict:
    return {
        "type": "modal",
        "callback_id": callback_id,
        "title": plain(title, 24),
        "submit": plain(submit, 24),
        "close": plain("Cancel", 24),
        "private_metadata": json.dumps(metadata),
        "blocks": blocks,
    }
