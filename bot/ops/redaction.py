"""Redaction: what keeps a secret or a control character out of a log line, a message to
Slack or an exception. The errors in `bot.errors` use these as a backstop; the log
formatter (`bot.ops.logs`) and the HTTP edge use them first-hand."""

from __future__ import annotations

from collections.abc import Iterable

import httpx

__all__ = ["escape_controls", "public_url", "scrub", "upstream_text"]

_REDACTED = "[redacted]"
# A secret's piece this long is as good as a leak (a 9-character prefix of a key narrows a
# guess enormously); shorter secrets are hidden only whole.
_MIN_FRAGMENT = 8
# Line and paragraph separators and bidirectional overrides: invisible, yet they break or
# reorder a log line, so they are shown as escapes like the C0/C1 control characters.
_INVISIBLE = {"\u2028", "\u2029", *map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))}
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _fold(text: str) -> str:
    """Lower-case character by character, keeping positions (``"İ".lower()`` is two characters)."""
    if text.isascii():  # the usual log line: one character each, lowered at C speed
        return text.lower()
    return "".join(low if len(low := c.lower()) == 1 else c for c in text)


def scrub(text: str, secrets: Iterable[str], *, whole: Iterable[str] = ()) -> str:
    """Blank out any secret an upstream echoed back, so it never reaches Slack or logs.

    Case is ignored and any piece of 8 or more letters and digits of a secret counts, whatever
    stands between them (a key echoed in groups, `ab12 cd34-ef56`, or with its dashes
    dropped), so this must run before the text is cut short: a cut through a secret leaves a
    piece that an exact match would miss. ``whole`` are names worth hiding that are not secrets (an account
    e-mail): only they themselves are hidden, so a domain in a message survives. Adjacent
    or overlapping hits become one ``[redacted]``.
    """
    folded = _fold(text)
    hidden = bytearray(len(text))
    for secret in secrets:
        _mark(folded, hidden, secret, pieces=True)
    for name in whole:
        _mark(folded, hidden, name, pieces=False)
    if not any(hidden):
        return text
    out: list[str] = []
    for i, char in enumerate(text):
        if not hidden[i]:
            out.append(char)
        elif i == 0 or not hidden[i - 1]:
            out.append(_REDACTED)
    return "".join(out)


def _mark(folded: str, hidden: bytearray, secret: str, *, pieces: bool) -> None:
    if not secret or len(secret) < 3:
        return
    wanted = _fold(secret)
    if not pieces or len(wanted) < _MIN_FRAGMENT:
        start = folded.find(wanted)
        while start != -1:
            hidden[start : start + len(wanted)] = b"\x01" * len(wanted)
            start = folded.find(wanted, start + 1)
        return
    # Letters and digits only, on both sides: separators an upstream put between a secret's
    # groups (or took out) do not hide it. Every 8-character window of the secret; a window
    # of the text found among them is part of a match (with what stands between its
    # characters), and consecutive windows join into the longest piece: O(len(text)) lookups.
    compact = "".join(c for c in wanted if c.isalnum())
    if len(compact) < _MIN_FRAGMENT:
        _mark(folded, hidden, secret, pieces=False)
        return
    windows = {compact[i : i + _MIN_FRAGMENT] for i in range(len(compact) - _MIN_FRAGMENT + 1)}
    where = [i for i, c in enumerate(folded) if c.isalnum()]
    text = "".join(folded[i] for i in where)
    for i in range(len(text) - _MIN_FRAGMENT + 1):
        if text[i : i + _MIN_FRAGMENT] in windows:
            first, last = where[i], where[i + _MIN_FRAGMENT - 1]
            hidden[first : last + 1] = b"\x01" * (last + 1 - first)


def escape_controls(text: str) -> str:
    """Show control characters as escapes (``\\n``, ``\\x1b``, ``\\u2028``), so upstream text
    is one line that cannot forge a log entry or repaint a terminal."""
    if text.isprintable():  # the usual case; note a space is printable, a newline is not
        return text
    out: list[str] = []
    for char in text:
        code = ord(char)
        if char in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[char])
        elif code < 0x20 or 0x7F <= code < 0xA0:
            out.append(f"\\x{code:02x}")
        elif char in _INVISIBLE:
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


def upstream_text(text: str, secrets: Iterable[str], limit: int | None = None, *, whole: Iterable[str] = ()) -> str:
    """An upstream's message made safe to show and log: secrets out first, then control
    characters escaped, and only then cut to ``limit`` characters (with an ellipsis)."""
    text = escape_controls(scrub(text, secrets, whole=whole))
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def public_url(url: httpx.URL | str) -> str:
    """A URL fit for a message or a log line: no user:password part, no query."""
    parsed = httpx.URL(str(url))
    return str(parsed.copy_with(username=None, password=None, query=None, fragment=None))
