"""Every Slack payload parsed once into an `Interaction`, and readers for a submitted view's
state. Read as plain dicts: slack_sdk's View model raises on datetimepicker values, so
nothing here builds one."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

#: Where the first middleware (`bot/app.py`) puts the request's `Interaction` on Bolt's
#: context; the replay guard, the ack timer, the log context and the listeners read it there.
INTERACTION = "sitrep_interaction"


def _value(values: dict, block_id: str, action_id: str) -> dict:
    return (values.get(block_id) or {}).get(action_id) or {}


def text(values: dict, block_id: str, action_id: str) -> str:
    return (_value(values, block_id, action_id).get("value") or "").strip()


def selected(values: dict, block_id: str, action_id: str) -> str | None:
    option = _value(values, block_id, action_id).get("selected_option")
    return option.get("value") if option else None


def selected_user(values: dict, block_id: str, action_id: str) -> str | None:
    """A `users_select`'s pick (a user ID)."""
    return _value(values, block_id, action_id).get("selected_user") or None


def selected_many(values: dict, block_id: str, action_id: str) -> list[str]:
    return [o["value"] for o in _value(values, block_id, action_id).get("selected_options") or []]


def date_time(values: dict, block_id: str, action_id: str) -> datetime | None:
    epoch = _value(values, block_id, action_id).get("selected_date_time")
    return datetime.fromtimestamp(int(epoch), tz=timezone.utc) if epoch is not None else None


def picked_date(values: dict, block_id: str, action_id: str) -> date | None:
    """A datepicker's `selected_date` (`YYYY-MM-DD`); None when none is picked or it is not a date."""
    picked = _value(values, block_id, action_id).get("selected_date")
    try:
        return date.fromisoformat(picked) if picked else None
    except (TypeError, ValueError):
        return None


def split_command(text: str | None) -> tuple[str, str]:
    """`update #12` → (`update`, `#12`); the sub-command is case-insensitive."""
    words = (text or "").strip().split(maxsplit=1)
    if not words:
        return "", ""
    return words[0].lower(), words[1].strip() if len(words) > 1 else ""


def _json_object(text: str | None) -> dict:
    try:
        data = json.loads(text or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class Interaction:
    """What listeners and the error renderer need from a payload, whatever its kind:
    a slash command, a button, a modal submission, a type-ahead query."""

    type: str  # "command", "block_actions", "view_submission", "block_suggestion", "message_action", "event"
    user_id: str | None
    #: Where to answer the person: the command's or button's channel, else the one the modal
    #: was opened from (its private_metadata `channel`).
    channel_id: str | None
    trigger_id: str | None = None
    #: A submitted view's state values (read them with `text`, `selected`, ...).
    values: dict = field(default_factory=dict)
    #: A view's private_metadata as JSON ({} when absent or unreadable).
    metadata: dict = field(default_factory=dict)
    #: The clicked button's value, or a type-ahead's query.
    action_value: str = ""
    #: The clicked element's action_id (one listener can serve several buttons).
    action_id: str = ""
    #: A slash command's text after the command.
    text: str = ""
    view_id: str | None = None
    view_hash: str | None = None
    #: A message shortcut's message: its ts and its text (in Slack's own format).
    message_ts: str = ""
    message_text: str = ""
    #: An Events API event's type (`app_home_opened`) and, for that one, the tab opened.
    event_type: str = ""
    tab: str = ""
    #: A reaction event's emoji name (`pushpin`); its message is `channel_id` + `message_ts`.
    reaction: str = ""
    #: What was asked, for logs and metrics: the slash command (`/incident`), or the view's,
    #: shortcut's or suggestion's own name (its callback_id, or action_id for a type-ahead).
    name: str = ""

    @property
    def what(self) -> tuple[str, str]:
        """(kind, name) for the log context and the ack metric: `("command", "/incident")`,
        `("action", <action_id>)`, `("view", <callback_id>)`, ..."""
        kind = _KINDS.get(self.type)
        if kind is None:
            return self.type or "unknown", "-"
        name = self.action_id if kind == "action" else self.event_type if kind == "event" else self.name
        return kind, name or "unknown"

    @property
    def is_command(self) -> bool:
        return self.type == "command"

    @property
    def command(self) -> tuple[str, str]:
        """The sub-command and the rest (`split_command`)."""
        return split_command(self.text)

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Interaction:
        if "command" in body:
            return cls(
                type="command",
                user_id=body.get("user_id"),
                channel_id=body.get("channel_id"),
                trigger_id=body.get("trigger_id"),
                text=body.get("text") or "",
                name=str(body["command"]),
            )
        if body.get("type") == "event_callback":
            event = body.get("event") or {}
            user = event.get("user")
            tab = event.get("tab")
            item = event.get("item") if isinstance(event.get("item"), dict) else {}
            message = item.get("type") == "message"
            return cls(
                type="event",
                user_id=user if isinstance(user, str) else None,
                channel_id=str(item.get("channel") or "") or None if message else None,
                event_type=str(event.get("type") or ""),
                tab=tab if isinstance(tab, str) else "",
                reaction=str(event.get("reaction") or ""),
                message_ts=str(item.get("ts") or "") if message else "",
            )
        view = body.get("view") or {}
        message = body.get("message") if body.get("type") == "message_action" else None
        message = message if isinstance(message, dict) else {}
        metadata = _json_object(view.get("private_metadata"))
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
        if channel is None and view:
            channel = metadata.get("channel")
        if body.get("type") == "block_suggestion":
            value, action_id = body.get("value") or "", body.get("action_id") or ""
            name = action_id
        else:
            name = str(view.get("callback_id") or body.get("callback_id") or "")
            action = (body.get("actions") or [{}])[0]
            value, action_id = action.get("value") or "", action.get("action_id") or ""
        return cls(
            type=body.get("type") or "",
            user_id=(body.get("user") or {}).get("id"),
            channel_id=channel,
            trigger_id=body.get("trigger_id"),
            values=(view.get("state") or {}).get("values") or {},
            metadata=metadata,
            action_value=value,
            action_id=action_id,
            view_id=view.get("id"),
            view_hash=view.get("hash"),
            message_ts=str(message.get("ts") or ""),
            message_text=str(message.get("text") or ""),
            name=name,
        )


# An interaction's type → the kind its log lines and ack metric name it by.
_KINDS = {
    "command": "command",
    "block_actions": "action",
    "view_submission": "view",
    "view_closed": "view",
    "block_suggestion": "suggestion",
    "message_action": "shortcut",
    "shortcut": "shortcut",
    "event": "event",
}


def typed_summary(values: dict) -> str:
    """Everything a submitted form holds, one `field: value` line each (the action id names the
    field), for giving a person back what they typed when it could not be kept."""
    lines: list[str] = []
    for actions in values.values():
        for action_id, state in (actions or {}).items():
            state = state or {}
            if state.get("value"):
                shown = state["value"]
            elif state.get("selected_option"):
                shown = state["selected_option"].get("value") or ""
            elif state.get("selected_options"):
                shown = ", ".join(o.get("value") or "" for o in state["selected_options"])
            elif state.get("selected_date_time") is not None:
                moment = datetime.fromtimestamp(int(state["selected_date_time"]), tz=timezone.utc)
                shown = moment.strftime("%Y-%m-%d %H:%M UTC")
            else:
                continue
            lines.append(f"{action_id}: {shown}")
    return "\n".join(lines)
