"""Slack text helpers shared by every view: escaping, fitting text to Slack's limits, time
tokens, durations.

Text from a person or an upstream API is fitted to the field it lands in *visibly* — an
ellipsis (…) or "and 12 more" — and only ever for display: what is stored and sent upstream
is never cut here. Slack refuses a message or view that breaks a limit, so these are the only
places text is shortened."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone

ELLIPSIS = "…"
#: Slack's limits (Block Kit reference; ../shared/slack/README.md).
MAX_SECTION_TEXT = 3000
MAX_FIELD_TEXT = 2000
MAX_MESSAGE_TEXT = 4000  # top-level `text` on chat.update (msg_too_long past it)
MAX_PLAIN_TEXT = 75  # button and option text
MAX_OPTION_VALUE = 150
#: How much of a title a one-line mention shows (lists, replies, answers); the announcement
#: shows it whole.
SHORT_TITLE = 200


def escape(text: str | None) -> str:
    """Escape user text so it can never become a mention, `@channel` or a link."""
    if not text:
        return ""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_SLACK_TOKEN = re.compile(r"<([^<>]*)>")


def _token_text(inner: str) -> str:
    """One `<…>` token of Slack's message format as a reader sees it."""
    target, _, label = inner.partition("|")
    if target.startswith("@"):  # a person: <@U123> or the old <@U123|name>
        return "@" + (label or target[1:])
    if target.startswith("#"):  # a channel: <#C123|general>
        return "#" + (label or target[1:])
    if target.startswith("!"):  # <!here>, <!subteam^S1|@team>, <!date^…|fallback>
        return label or "@" + target[1:].split("^", 1)[0]
    return f"{label} ({target})" if label and label != target else target  # a link


def plain_text(message_text: str | None) -> str:
    """A Slack message's `text` (its own format: `&amp;`, `<@U1>`, `<!here>`, `<url|label>`)
    as the plain words a reader sees, for a form field and the status page. It is plain
    text from then on: wherever it is shown again it is escaped (`escape`), so `@here` in it
    never notifies anyone."""
    if not message_text:
        return ""
    words = _SLACK_TOKEN.sub(lambda m: _token_text(m.group(1)), message_text)
    return words.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def truncate(text: str, limit: int) -> str:
    """Plain text (no entities, no tokens) cut to `limit` with a visible ellipsis."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + ELLIPSIS


def clip(markup: str, limit: int) -> str:
    """Already-escaped mrkdwn cut to `limit` with an ellipsis, never inside an entity
    (`&amp;`) or a `<…>` token (mention, link, date), which would show as garbage."""
    if len(markup) <= limit:
        return markup
    cut = markup[: max(limit - 1, 0)]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    token = cut.rfind("<")
    if token != -1 and ">" not in cut[token:]:
        cut = cut[:token]
    return cut + ELLIPSIS


def fit(text: str | None, limit: int) -> str:
    """Escape person or upstream text and fit it in `limit` characters."""
    return clip(escape(text), limit)


def fit_list(items: Iterable[object], limit: int, *, none: str = "None listed") -> str:
    """Escaped items, comma-separated, as many as fit in `limit`, then "and N more"."""
    names = [escape(str(item)) for item in items]
    if not names:
        return none
    whole = ", ".join(names)
    if len(whole) <= limit:
        return whole
    shown: list[str] = []
    for i, name in enumerate(names):
        rest = len(names) - i - 1
        candidate = ", ".join(shown + [name]) + f" and {rest} more"
        if len(candidate) > limit:
            break
        shown.append(name)
    if not shown:  # not even the first one fits whole
        suffix = f" and {len(names) - 1} more"
        return clip(names[0], limit - len(suffix)) + suffix
    return ", ".join(shown) + f" and {len(names) - len(shown)} more"


def split_markup(markup: str, limit: int = MAX_SECTION_TEXT) -> list[str]:
    """Escaped text in pieces of at most `limit`, split at a line break or a space where
    one is near, never inside an entity or a `<…>` token."""
    pieces: list[str] = []
    rest = markup
    while len(rest) > limit:
        at = max(rest.rfind("\n", 0, limit + 1), rest.rfind(" ", 0, limit + 1))
        if at < limit // 2:
            at = limit
        amp = rest.rfind("&", 0, at)
        if amp != -1 and ";" not in rest[amp:at]:
            at = amp
        token = rest.rfind("<", 0, at)
        if token != -1 and ">" not in rest[token:at]:
            at = token
        if at <= 0:  # one token longer than a piece: cut it anyway
            at = limit
        pieces.append(rest[:at].rstrip())
        rest = rest[at:].lstrip("\n ")
    pieces.append(rest)
    return [p for p in pieces if p]


def text_sections(text: str | None, *, max_blocks: int = 5) -> list[dict]:
    """Long person or upstream text, escaped, as consecutive sections so none of it is cut
    (up to `max_blocks`; past that the last one ends with an ellipsis)."""
    pieces = split_markup(escape(text), MAX_SECTION_TEXT)
    if len(pieces) > max_blocks:
        pieces = pieces[: max_blocks - 1] + [clip(pieces[max_blocks - 1] + " " + ELLIPSIS, MAX_SECTION_TEXT)]
    return [section(p) for p in pieces]


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


def plain(text: str, limit: int = MAX_PLAIN_TEXT) -> dict:
    return {"type": "plain_text", "text": truncate(text, limit), "emoji": True}


def section(text: str) -> dict:
    return {"type": "section", "text": mrkdwn(clip(text, MAX_SECTION_TEXT))}


def field(label: str, value: str) -> dict:
    """One of a section's `fields`: `*label*` over an already-escaped value, within 2000."""
    head = f"*{label}*\n"
    return mrkdwn(head + clip(value, MAX_FIELD_TEXT - len(head)))


def context(text: str) -> dict:
    return {"type": "context", "elements": [mrkdwn(clip(text, MAX_SECTION_TEXT))]}


def button(text: str, action_id: str, value: str, style: str | None = None) -> dict:
    element = {"type": "button", "text": plain(text), "action_id": action_id, "value": value}
    if style:
        element["style"] = style
    return element
