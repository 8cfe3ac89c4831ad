"""Reading a submitted view's state. Read as plain dicts: slack_sdk's View model raises on
datetimepicker values, so nothing here builds one."""

from __future__ import annotations

import json
from datetime import datetime, timezone


def _value(values: dict, block_id: str, action_id: str) -> dict:
    return (values.get(block_id) or {}).get(action_id) or {}


def text(values: dict, block_id: str, action_id: str) -> str:
    return (_value(values, block_id, action_id).get("value") or "").strip()


def selected(values: dict, block_id: str, action_id: str) -> str | None:
    option = _value(values, block_id, action_id).get("selected_option")
    return option.get("value") if option else None


def selected_many(values: dict, block_id: str, action_id: str) -> list[str]:
    return [o["value"] for o in _value(values, block_id, action_id).get("selected_options") or []]


def date_time(values: dict, block_id: str, action_id: str) -> datetime | None:
    epoch = _value(values, block_id, action_id).get("selected_date_time")
    return datetime.fromtimestamp(int(epoch), tz=timezone.utc) if epoch is not None else None


def view_values(body: dict) -> dict:
    return ((body.get("view") or {}).get("state") or {}).get("values") or {}


def metadata(body: dict) -> dict:
    try:
        return json.loads((body.get("view") or {}).get("private_metadata") or "{}")
    except ValueError:
        return {}


def action_value(body: dict) -> str:
    return (body.get("actions") or [{}])[0].get("value") or ""


def split_command(text: str | None) -> tuple[str, str]:
    """`update #12` → (`update`, `#12`); the sub-command is case-insensitive."""
    words = (text or "").strip().split(maxsplit=1)
    if not words:
        return "", ""
    return words[0].lower(), words[1].strip() if len(words) > 1 else ""
