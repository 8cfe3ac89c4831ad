"""Slack's limits on what we send, checked on plain dicts (slack_sdk checks only its models).

One rule book for the fake Slack Web API (``tests/support/fakes/slack_api.py``), for what the bot
answers in an HTTP ack (``tests/support/harness.py``) and for unit tests of the Block Kit builders.
Numbers come from ``../shared/slack/README.md`` and Block Kit's reference; each problem is
worded like Slack's own ``response_metadata.messages`` (``[ERROR] … [json-pointer:/…]``).

Every ``*_problems`` function returns a list of problems (empty when Slack would accept);
``check_message`` / ``check_modal`` assert there are none.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

Json = dict[str, Any]

# --- messages, views ---------------------------------------------------------------------
MAX_MESSAGE_BLOCKS = 50
MAX_MODAL_BLOCKS = 100  # modal and home views alike
MAX_MODAL_BUTTON_TEXT = 24  # modal title, submit, close
MAX_PRIVATE_METADATA = 3000
MAX_CALLBACK_ID = 255
MAX_EXTERNAL_ID = 255
MAX_VIEW_BYTES = 250_000  # views.* answer view_too_large above this
#: chat.update refuses longer top-level text (msg_too_long); chat.postMessage and
#: chat.postEphemeral do not refuse it: Slack cuts the text past 40,000 characters.
MAX_UPDATE_TEXT = 4000
POST_TEXT_TRUNCATED_AT = 40_000
# --- blocks ------------------------------------------------------------------------------
MAX_BLOCK_ID = 255
MAX_ACTION_ID = 255
MAX_TEXT = 3000  # any text object
MAX_SECTION_TEXT = 3000
MAX_FIELD_TEXT = 2000
MAX_FIELDS = 10
MAX_HEADER_TEXT = 150
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS_ELEMENTS = 25
MAX_LABEL = 2000  # input label and hint
MAX_PLACEHOLDER = 150
# --- elements ----------------------------------------------------------------------------
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_URL = 3000
MAX_OPTIONS = 100  # in a select, and option groups per select
MAX_CHOICE_OPTIONS = 10  # checkboxes, radio buttons
MAX_OVERFLOW_OPTIONS = 5
MAX_OPTION_TEXT = 75
MAX_OPTION_VALUE = 150
MAX_OPTION_DESCRIPTION = 75
MAX_GROUP_LABEL = 75
MAX_INPUT_LENGTH = 3000  # plain_text_input max_length / min_length
SELECTS_WITH_OPTIONS = {"static_select", "multi_static_select"}
CHOICES = {"checkboxes", "radio_buttons"}
EXTERNAL_SELECTS = {"external_select", "multi_external_select"}
TEXT_TYPES = {"plain_text", "mrkdwn"}


def _error(pointer: str, message: str) -> str:
    return f"[ERROR] {message} [json-pointer:{pointer}]"


def _too_long(pointer: str, value: str, limit: int) -> list[str]:
    if len(value) > limit:
        return [_error(pointer, f"must be less than {limit + 1} characters (is {len(value)})")]
    return []


def _text_object(node: Any, pointer: str, limit: int, *, plain_only: bool = False, required: bool = True) -> list[str]:
    """A text object `{type, text}` within `limit` characters (and plain_text where Slack insists)."""
    if node is None:
        return [_error(pointer, "is required")] if required else []
    if not isinstance(node, dict) or node.get("type") not in TEXT_TYPES or not isinstance(node.get("text"), str):
        return [_error(pointer, "must be a text object {type: plain_text|mrkdwn, text}")]
    problems = []
    if plain_only and node["type"] != "plain_text":
        problems.append(_error(f"{pointer}/type", "must be plain_text"))
    return problems + _too_long(f"{pointer}/text", node["text"], limit)


def _option_key(option: Any) -> tuple[Any, Any]:
    """Block Kit: an initial option must *exactly* match one of the options; compared here on
    the parts that differ in practice, its text and its value."""
    if not isinstance(option, dict):
        return None, None
    text = option.get("text")
    return (text.get("text") if isinstance(text, dict) else text), option.get("value")


def _option(option: Any, pointer: str, *, plain_only: bool) -> list[str]:
    if not isinstance(option, dict):
        return [_error(pointer, "must be an option object")]
    problems = _text_object(option.get("text"), f"{pointer}/text", MAX_OPTION_TEXT, plain_only=plain_only)
    value = option.get("value")
    if value is not None:
        problems += _too_long(f"{pointer}/value", str(value), MAX_OPTION_VALUE)
    if "description" in option:
        problems += _text_object(option["description"], f"{pointer}/description", MAX_OPTION_DESCRIPTION, plain_only=plain_only)
    if isinstance(option.get("url"), str):
        problems += _too_long(f"{pointer}/url", option["url"], MAX_URL)
    return problems


def _options_list(options: Any, pointer: str, limit: int, *, plain_only: bool) -> list[str]:
    if not isinstance(options, list):
        return [_error(pointer, "must be an array of options")]
    problems = []
    if len(options) > limit:
        problems.append(_error(pointer, f"must provide no more than {limit} items (has {len(options)})"))
    for i, option in enumerate(options):
        problems += _option(option, f"{pointer}/{i}", plain_only=plain_only)
    return problems


def _all_options(element: Json) -> list[Any]:
    found = list(element.get("options") or [])
    for group in element.get("option_groups") or []:
        if isinstance(group, dict):
            found.extend(group.get("options") or [])
    return found


def _initial_options(element: Json, pointer: str, kind: str) -> list[str]:
    """`initial_option(s)` must be among the options given (an external select has none to
    compare with, so any option is accepted there)."""
    initial: list[tuple[str, Any]] = []
    if "initial_option" in element:
        initial.append(("initial_option", element["initial_option"]))
    if "initial_options" in element:
        if not isinstance(element["initial_options"], list):
            return [_error(f"{pointer}/initial_options", "must be an array of options")]
        initial += [(f"initial_options/{i}", o) for i, o in enumerate(element["initial_options"])]
    problems = []
    for where, option in initial:
        problems += _option(option, f"{pointer}/{where}", plain_only=kind not in CHOICES)
    if kind in EXTERNAL_SELECTS:
        return problems
    known = {_option_key(o) for o in _all_options(element)}
    for where, option in initial:
        if _option_key(option) not in known:
            problems.append(_error(f"{pointer}/{where}", "must match one of the provided options"))
    return problems


def element_problems(element: Any, pointer: str) -> list[str]:
    """One interactive element (button, select, input, ...)."""
    if not isinstance(element, dict):
        return [_error(pointer, "must be an element object")]
    kind = element.get("type")
    problems: list[str] = []
    if isinstance(element.get("action_id"), str):
        problems += _too_long(f"{pointer}/action_id", element["action_id"], MAX_ACTION_ID)
    if "placeholder" in element:
        problems += _text_object(element["placeholder"], f"{pointer}/placeholder", MAX_PLACEHOLDER, plain_only=True)
    if kind == "button":
        problems += _text_object(element.get("text"), f"{pointer}/text", MAX_BUTTON_TEXT, plain_only=True)
        if "value" in element:
            problems += _too_long(f"{pointer}/value", str(element["value"]), MAX_BUTTON_VALUE)
        if isinstance(element.get("url"), str):
            problems += _too_long(f"{pointer}/url", element["url"], MAX_URL)
    elif kind in SELECTS_WITH_OPTIONS:
        has_options, has_groups = "options" in element, "option_groups" in element
        if has_options == has_groups:
            problems.append(_error(pointer, "must provide exactly one of options or option_groups"))
        if has_options:
            problems += _options_list(element["options"], f"{pointer}/options", MAX_OPTIONS, plain_only=True)
        if has_groups:
            groups = element["option_groups"]
            if not isinstance(groups, list):
                problems.append(_error(f"{pointer}/option_groups", "must be an array"))
            else:
                if len(groups) > MAX_OPTIONS:
                    problems.append(
                        _error(f"{pointer}/option_groups", f"must provide no more than {MAX_OPTIONS} items (has {len(groups)})")
                    )
                for i, group in enumerate(groups):
                    where = f"{pointer}/option_groups/{i}"
                    if not isinstance(group, dict):
                        problems.append(_error(where, "must be an option group"))
                        continue
                    problems += _text_object(group.get("label"), f"{where}/label", MAX_GROUP_LABEL, plain_only=True)
                    problems += _options_list(group.get("options"), f"{where}/options", MAX_OPTIONS, plain_only=True)
        problems += _initial_options(element, pointer, kind)
    elif kind in CHOICES:
        problems += _options_list(element.get("options"), f"{pointer}/options", MAX_CHOICE_OPTIONS, plain_only=False)
        problems += _initial_options(element, pointer, kind)
    elif kind == "overflow":
        problems += _options_list(element.get("options"), f"{pointer}/options", MAX_OVERFLOW_OPTIONS, plain_only=True)
    elif kind in EXTERNAL_SELECTS:
        problems += _initial_options(element, pointer, kind)
    elif kind == "users_select":
        if "initial_user" in element and not (isinstance(element["initial_user"], str) and element["initial_user"]):
            problems.append(_error(f"{pointer}/initial_user", "must be a user ID"))
    elif kind == "plain_text_input":
        max_length = element.get("max_length")
        min_length = element.get("min_length")
        for name, value in (("max_length", max_length), ("min_length", min_length)):
            if value is not None and (not isinstance(value, int) or not 0 <= value <= MAX_INPUT_LENGTH):
                problems.append(_error(f"{pointer}/{name}", f"must be an integer from 0 to {MAX_INPUT_LENGTH} (is {value!r})"))
        initial = element.get("initial_value")
        if isinstance(initial, str):
            cap = max_length if isinstance(max_length, int) and max_length <= MAX_INPUT_LENGTH else MAX_INPUT_LENGTH
            problems += _too_long(f"{pointer}/initial_value", initial, cap)
    return problems


def block_problems(block: Any, pointer: str) -> list[str]:
    """One layout block and everything inside it."""
    if not isinstance(block, dict):
        return [_error(pointer, "must be a block object")]
    kind = block.get("type")
    problems: list[str] = []
    if isinstance(block.get("block_id"), str):
        problems += _too_long(f"{pointer}/block_id", block["block_id"], MAX_BLOCK_ID)
    if kind == "section":
        if "text" not in block and "fields" not in block:
            problems.append(_error(pointer, "must provide either text or fields"))
        if "text" in block:
            problems += _text_object(block["text"], f"{pointer}/text", MAX_SECTION_TEXT)
        if "fields" in block:
            fields = block["fields"]
            if not isinstance(fields, list):
                problems.append(_error(f"{pointer}/fields", "must be an array of text objects"))
            else:
                if len(fields) > MAX_FIELDS:
                    problems.append(
                        _error(f"{pointer}/fields", f"must provide no more than {MAX_FIELDS} items (has {len(fields)})")
                    )
                for i, field in enumerate(fields):
                    problems += _text_object(field, f"{pointer}/fields/{i}", MAX_FIELD_TEXT)
        if "accessory" in block:
            problems += element_problems(block["accessory"], f"{pointer}/accessory")
    elif kind == "header":
        problems += _text_object(block.get("text"), f"{pointer}/text", MAX_HEADER_TEXT, plain_only=True)
    elif kind == "context":
        elements = block.get("elements")
        if not isinstance(elements, list) or not elements:
            problems.append(_error(f"{pointer}/elements", "must provide at least 1 item"))
        else:
            if len(elements) > MAX_CONTEXT_ELEMENTS:
                problems.append(
                    _error(f"{pointer}/elements", f"must provide no more than {MAX_CONTEXT_ELEMENTS} items (has {len(elements)})")
                )
            for i, element in enumerate(elements):
                if isinstance(element, dict) and element.get("type") in TEXT_TYPES:
                    problems += _text_object(element, f"{pointer}/elements/{i}", MAX_TEXT)
    elif kind == "actions":
        elements = block.get("elements")
        if not isinstance(elements, list) or not elements:
            problems.append(_error(f"{pointer}/elements", "must provide at least 1 item"))
        else:
            if len(elements) > MAX_ACTIONS_ELEMENTS:
                problems.append(
                    _error(f"{pointer}/elements", f"must provide no more than {MAX_ACTIONS_ELEMENTS} items (has {len(elements)})")
                )
            for i, element in enumerate(elements):
                problems += element_problems(element, f"{pointer}/elements/{i}")
    elif kind == "input":
        problems += _text_object(block.get("label"), f"{pointer}/label", MAX_LABEL, plain_only=True)
        if "hint" in block:
            problems += _text_object(block["hint"], f"{pointer}/hint", MAX_LABEL, plain_only=True)
        problems += element_problems(block.get("element"), f"{pointer}/element")
    problems += _empty_texts(block, pointer)
    return problems


def _empty_texts(node: Any, pointer: str) -> list[str]:
    """Slack refuses a text object with no characters, wherever it sits."""
    problems = []
    if isinstance(node, dict):
        if node.get("type") in TEXT_TYPES and node.get("text") == "":
            problems.append(_error(f"{pointer}/text", "must be more than 0 characters"))
        for key, value in node.items():
            problems += _empty_texts(value, f"{pointer}/{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            problems += _empty_texts(item, f"{pointer}/{i}")
    return problems


def blocks_problems(blocks: Any, pointer: str, limit: int) -> list[str]:
    if not isinstance(blocks, list):
        return [_error(pointer, "must be an array of blocks")]
    problems = []
    if len(blocks) > limit:
        problems.append(_error(pointer, f"must provide no more than {limit} items (has {len(blocks)})"))
    for i, block in enumerate(blocks):
        problems += block_problems(block, f"{pointer}/{i}")
    return problems


def message_problems(blocks: Any, pointer: str = "/blocks") -> list[str]:
    """A message's blocks (chat.postMessage / chat.update / a slash-command answer)."""
    return blocks_problems(blocks, pointer, MAX_MESSAGE_BLOCKS)


def message_text_problems(method: str, text: Any) -> list[str]:
    """The top-level `text`: only chat.update refuses a long one (postMessage cuts it)."""
    if method == "chat.update" and isinstance(text, str) and len(text) > MAX_UPDATE_TEXT:
        return [_error("/text", f"must be less than {MAX_UPDATE_TEXT + 1} characters (is {len(text)})")]
    return []


def view_problems(view: Any, *, kind: str = "modal", pointer: str = "/view") -> list[str]:
    """A modal (views.open/push/update, `response_action: update/push`) or a home tab."""
    if not isinstance(view, dict):
        return [_error(pointer, "must be a view object")]
    problems: list[str] = []
    if view.get("type") != kind:
        problems.append(_error(f"{pointer}/type", f"must be {kind!r} (is {view.get('type')!r})"))
    for name in ("title", "submit", "close"):
        required = name == "title" and kind == "modal"
        if name in view or required:
            problems += _text_object(view.get(name), f"{pointer}/{name}", MAX_MODAL_BUTTON_TEXT, plain_only=True)
    blocks = view.get("blocks", [])
    if kind == "modal" and "submit" not in view and isinstance(blocks, list):
        if any(isinstance(b, dict) and b.get("type") == "input" for b in blocks):
            problems.append(_error(f"{pointer}/submit", "is required when blocks contain an input block"))
    for name, limit in (
        ("private_metadata", MAX_PRIVATE_METADATA),
        ("callback_id", MAX_CALLBACK_ID),
        ("external_id", MAX_EXTERNAL_ID),
    ):
        if isinstance(view.get(name), str):
            problems += _too_long(f"{pointer}/{name}", view[name], limit)
    problems += blocks_problems(blocks, f"{pointer}/blocks", MAX_MODAL_BLOCKS)
    return problems


def view_too_large(view: Any) -> bool:
    return len(json.dumps(view, ensure_ascii=False).encode()) > MAX_VIEW_BYTES


def options_response_problems(answer: Any) -> list[str]:
    """The answer to a `block_suggestion` (an external select's options load)."""
    if not isinstance(answer, dict) or not ("options" in answer or "option_groups" in answer):
        return [_error("", "must provide options or option_groups")]
    problems = []
    if "options" in answer:
        problems += _options_list(answer["options"], "/options", MAX_OPTIONS, plain_only=True)
    for i, group in enumerate(answer.get("option_groups") or []):
        problems += _text_object(group.get("label"), f"/option_groups/{i}/label", MAX_GROUP_LABEL, plain_only=True)
        problems += _options_list(group.get("options"), f"/option_groups/{i}/options", MAX_OPTIONS, plain_only=True)
    return problems


def ack_problems(payload_type: str, answer: Any) -> list[str]:
    """What the bot answered in the HTTP response to a Slack request, held to the same rules
    as the Web API: a slash command's message, a view_submission's `update`/`push` view, a
    block_suggestion's options."""
    if answer is None or answer == {}:
        return []
    if not isinstance(answer, dict):
        return [_error("", f"the answer must be a JSON object, got {type(answer).__name__}")]
    if payload_type == "block_suggestion":
        return options_response_problems(answer)
    problems: list[str] = []
    if payload_type == "view_submission":
        action = answer.get("response_action")
        if action in ("update", "push"):
            problems += view_problems(answer.get("view"))
        elif action == "errors":
            errors = answer.get("errors")
            if not isinstance(errors, dict) or not errors:
                problems.append(_error("/errors", "must be an object of block_id → message"))
        elif action not in ("clear",):
            problems.append(_error("/response_action", f"unknown response_action {action!r}"))
        return problems
    if "blocks" in answer:
        problems += message_problems(answer["blocks"])
    if not any(answer.get(k) for k in ("text", "blocks", "attachments")):
        problems.append(_error("", "no_text: a message needs text, blocks or attachments"))
    return problems


# --- assertions for unit tests of the builders -------------------------------------------


def _assert_none(problems: Iterable[str]) -> None:
    problems = list(problems)
    assert not problems, "Slack would refuse this:\n" + "\n".join(problems)


def check_message(blocks: list[dict], text: str | None = None) -> None:
    """`text` is held to chat.update's limit: announcements are kept current with it."""
    _assert_none(message_problems(blocks) + message_text_problems("chat.update", text))


def check_modal(view: dict) -> None:
    _assert_none(view_problems(view))
