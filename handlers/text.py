"""Slack text helpers shared by every view: escaping, time tokens, durations."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone


def escape(text: str | None) -> str:
    """Escape user text so it can never become a mention, `@channel` or a link."""
    if not text:
        return ""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def slack_date(moment: datetime, fmt: str = "{date_short_pretty} at {time}") -> str:
    """A `<!date^…>` token, so every reader sees their own time zone; UTC fallback."""
    utc = moment.astimezone(timezone.utc)
    fallback = utc.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(utc.timestamp())}^{fmt}|{fallback}>"


def duration(delta: timedelta) -> str:
    """`2h 5m`, `45m`, `3d 4h`: how long, the way people say it."""
    minutes = max(int(delta.total_seconds() // 60), 0)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {mins}m" if mins else f"{hours}h"
    return f"{mins}m" if mins else "less than a minute"


def user(user_id: str | None) -> str:
    return f"<@{user_id}>" if user_id else "someone outside Slack"


def mrkdwn(text: str) -> dict:
    return {"type": "mrkdwn", "text": text}


def plain(text: str, limit: int = 75) -> dict:
    return {"type": "plain_text", "text": truncate(text, limit), "emoji": True}


def section(text: str) -> dict:
    return {"type": "section", "text": mrkdwn(truncate(text, 3000))}


def context(text: str) -> dict:
    return {"type": "context", "elements": [mrkdwn(truncate(text, 3000))]}


def button(text: str, action_id: str, value: str, style: str | None = None) -> dict:
    element = {"type": "button", "text": plain(text), "action_id": action_id, "value": value}
    if style:
        element["style"] = style
    return element
