"""Block Kit building blocks for modals, shared by every feature's views. Pure functions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.messages.format import MAX_OPTION_VALUE, plain, truncate

MAX_OPTIONS = 100  # options in one select, and option groups in one select
MAX_INPUT_LENGTH = 3000  # the most a plain_text_input can hold


def option(text: str, value: str) -> dict:
    """Option text is cut visibly to 75; a value past Slack's 150 is a bug, not something to cut."""
    if len(value) > MAX_OPTION_VALUE:
        raise ValueError(f"an option value may hold {MAX_OPTION_VALUE} characters, not {len(value)}")
    return {"text": plain(text), "value": value}


def with_options(element: dict, options: Sequence[dict], *, group_label: str = "Options") -> dict:
    """Put `options` on a select: as they are up to 100, in groups of 100 beyond, so every
    one can be picked and every initial option is among them (up to 10,000)."""
    if len(options) <= MAX_OPTIONS:
        element["options"] = list(options)
        return element
    chunks = [options[i : i + MAX_OPTIONS] for i in range(0, len(options), MAX_OPTIONS)][:MAX_OPTIONS]
    element["option_groups"] = [
        {"label": plain(f"{group_label} {n * MAX_OPTIONS + 1}–{n * MAX_OPTIONS + len(chunk)}"), "options": list(chunk)}
        for n, chunk in enumerate(chunks)
    ]
    return element


def select(action_id: str, options: Sequence[tuple[str, str]], initial: str | None, placeholder: str) -> dict:
    element: dict = {"type": "static_select", "action_id": action_id, "placeholder": plain(placeholder)}
    with_options(element, [option(label, value) for label, value in options])
    chosen = next(((label, value) for label, value in options if value == initial), None)
    if chosen:
        element["initial_option"] = option(*chosen)
    return element


def multi_select(
    action_id: str, options: Sequence[tuple[str, str]], initial: Sequence[str], placeholder: str, *, group_label: str
) -> dict:
    element: dict = {"type": "multi_static_select", "action_id": action_id, "placeholder": plain(placeholder)}
    with_options(element, [option(label, value) for label, value in options], group_label=group_label)
    chosen = [option(label, value) for label, value in options if value in initial]
    if chosen:
        element["initial_options"] = chosen
    return element


def external_select(action_id: str, initial: tuple[str, str] | None, placeholder: str) -> dict:
    """Type-ahead: Slack asks the bot's options listener (`block_suggestion`) as the person
    types, so there is no limit on how many there are to pick from; `min_query_length: 0`
    lists some as soon as the menu opens. The initial option need not be among any list."""
    element: dict = {
        "type": "external_select",
        "action_id": action_id,
        "placeholder": plain(placeholder),
        "min_query_length": 0,
    }
    if initial is not None:
        element["initial_option"] = option(*initial)
    return element


def person_select(action_id: str, initial: str | None, placeholder: str) -> dict:
    """Pick one person of the workspace; `initial` preselects them (a user ID)."""
    element: dict = {"type": "users_select", "action_id": action_id, "placeholder": plain(placeholder)}
    if initial:
        element["initial_user"] = initial
    return element


def input_block(block_id: str, label: str, element: dict, *, optional: bool = False, hint: str | None = None) -> dict:
    block = {"type": "input", "block_id": block_id, "label": plain(label), "element": element, "optional": optional}
    if hint:
        block["hint"] = plain(hint, 150)
    return block


def fits_input(value: str) -> bool:
    """Whether a stored value can be prefilled into a text field whole."""
    return len(value) <= MAX_INPUT_LENGTH


def typed(value: str) -> str:
    """What the person just typed (a command's words) for a field: cut visibly if longer than
    any field holds, which they see in the form before anything is saved."""
    return truncate(value, MAX_INPUT_LENGTH)


def text_input(action_id: str, *, initial: str = "", multiline: bool = False, max_length: int, placeholder: str) -> dict:
    """A text field whose `max_length` grows to hold `initial` whole (up to Slack's 3000):
    a prefilled value cut to the field would be saved back cut. A value longer than any
    field is the caller's to show another way (see `fits_input`); here it is refused."""
    if not fits_input(initial):
        raise ValueError(f"a text field holds {MAX_INPUT_LENGTH} characters; this value has {len(initial)}")
    element = {
        "type": "plain_text_input",
        "action_id": action_id,
        "multiline": multiline,
        "max_length": min(max(max_length, len(initial)), MAX_INPUT_LENGTH),
        "placeholder": plain(placeholder, 150),
    }
    if initial:
        element["initial_value"] = initial
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
