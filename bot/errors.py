"""Every error sitrep raises on purpose, and who reads it.

Upstream errors come from ``bot/clients`` (one mapping in ``bot/clients/http.py``);
``str(err)`` is a sentence that can be posted to Slack as-is and ``err.message`` keeps the
upstream's own wording (``Title is required.``), already scrubbed of credentials and control
characters. Sitrep errors come from the services and are rendered by ``handlers/errors.py``.

    UpstreamError            base; `service`, `message`, `status`
    ├── UpstreamRejected     person: "The status page rejected the request: …" — change what you asked
    │   ├── AlreadyResolved  person: the upstream's "Incident already resolved."; the store follows it
    │   └── UpstreamNotFound person: "AppFirst reported: Maintenance window 7 was not found."
    ├── UpstreamUnauthorized operator: credentials refused; person: sitrep is misconfigured, nothing lost
    ├── UpstreamWrongURL     operator: log line with the URL tried and the setting to fix
    └── UpstreamUnavailable  person: "… is not available right now … Please try again later"
        └── OutcomeUnknown   person: "… may or may not have done it": the request was sent and no
                             answer came (timeout after sending, reset, gateway timeout)

    SitrepError              base; `str(err)` is a sentence for the person in Slack
    ├── InputInvalid         person: shown inside the modal, keyed by block ID
    ├── NotFound             person: no such incident or window (or not open any more)
    ├── NotAllowed           person: not in SITREP_ADMINS
    ├── FeatureDisabled      person: the feature's API is not configured; operator: which setting
    ├── NotSupported         person: this backend cannot do that (edit on the status page)
    ├── SubmissionFailed     person: the upstream's reason with Retry / Edit; the draft keeps the input
    ├── SubmissionUnknown    person: "outcome unknown" with Check and retry / Create anyway / Link it
    ├── DatabaseBusy         person: the store did not answer in time (locked, read-only); try again
    └── NotStored            person: a submission could not be kept, with what they typed quoted
                             back; operator: a log line with the database's reason

The redaction helpers (``scrub``, ``upstream_text``, ``escape_controls``, ``public_url``)
live here because the errors themselves use them as a backstop.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

import httpx

__all__ = [
    "UpstreamError",
    "UpstreamRejected",
    "AlreadyResolved",
    "UpstreamNotFound",
    "UpstreamUnauthorized",
    "UpstreamUnavailable",
    "UpstreamWrongURL",
    "OutcomeUnknown",
    "public_url",
    "scrub",
    "escape_controls",
    "upstream_text",
    "SitrepError",
    "InputInvalid",
    "NotFound",
    "NotAllowed",
    "FeatureDisabled",
    "NotSupported",
    "SubmissionFailed",
    "SubmissionUnknown",
    "DatabaseBusy",
    "NotStored",
]

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

    Case is ignored and any piece of 8 or more characters of a secret counts, so this must
    run before the text is cut short: a cut through a secret leaves a piece that an exact
    match would miss. ``whole`` are names worth hiding that are not secrets (an account
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
    # Every 8-character window of the secret; a window of the text found among them is part
    # of a match, and consecutive windows join into the longest piece. One regular expression
    # finds them all, overlapping ones too: every log line passes here, so it runs in C.
    for found in _windows(wanted).finditer(folded):
        start = found.start()
        hidden[start : start + _MIN_FRAGMENT] = b"\x01" * _MIN_FRAGMENT


@lru_cache(maxsize=64)
def _windows(wanted: str) -> re.Pattern[str]:
    """A pattern matching, at each position, any 8-character window of `wanted`."""
    windows = sorted({wanted[i : i + _MIN_FRAGMENT] for i in range(len(wanted) - _MIN_FRAGMENT + 1)})
    return re.compile("(?=(?:" + "|".join(map(re.escape, windows)) + "))")


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


def _subject(service: str) -> str:
    # "status page" reads as "The status page ...", a product name stays bare.
    return f"The {service}" if service[:1].islower() else service


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return text
    return text if text[-1] in ".!?" else text + "."


class UpstreamError(Exception):
    """Base class: an upstream call did not do what was asked."""

    def __init__(self, service: str, message: str, status: int | None = None) -> None:
        self.service = service
        # Backstop: whatever built the message, it stays one line in logs and in Slack.
        self.message = escape_controls(message)
        self.status = status
        super().__init__(self.message)

    def __str__(self) -> str:
        return _sentence(f"{_subject(self.service)} returned an error: {self.message}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(service={self.service!r}, message={self.message!r}, status={self.status!r})"


class UpstreamRejected(UpstreamError):
    """The upstream understood the request and refused it (HTTP 400, or 200 with Success=false).

    Not worth retrying: the user has to change what they asked for.
    """

    def __str__(self) -> str:
        return _sentence(f"{_subject(self.service)} rejected the request: {self.message}")


class AlreadyResolved(UpstreamRejected):
    """The status page has resolved this incident or window already (seed 004's
    ``Incident already resolved.``, kept in ``message``): callers close their record too."""


class UpstreamNotFound(UpstreamRejected):
    """The object named in the request does not exist upstream (HTTP 404)."""

    def __str__(self) -> str:
        return _sentence(f"{_subject(self.service)} reported: {self.message}")


class UpstreamUnauthorized(UpstreamError):
    """The configured credentials were refused (HTTP 401/403): an operator must fix config."""

    def __str__(self) -> str:
        return _sentence(
            f"{_subject(self.service)} refused the configured credentials: "
            f"{_sentence(self.message)} Check the bot's configuration"
        )


class UpstreamWrongURL(UpstreamError):
    """Nothing answers the seed's path at the configured address (HTTP 404/405 on a path every
    such API has): the base URL is wrong. An operator must fix `setting`; retrying is no use.

    ``url`` is the address that was tried, without credentials, so the operator sees it.
    """

    def __init__(self, service: str, *, url: str, setting: str, status: int) -> None:
        self.url = url
        self.setting = setting
        # `message` is what a person may see; the URL and the setting are for the operator.
        super().__init__(service, f"its API was not found at the configured URL (HTTP {status})", status)

    def __str__(self) -> str:
        return _sentence(
            f"{_subject(self.service)} API was not found at the configured URL "
            f"(HTTP {self.status} from {self.url}). Check {self.setting}"
        )


class UpstreamUnavailable(UpstreamError):
    """The upstream could not answer usefully (5xx, timeout, no connection, bad body).

    Usually transient: the action may be retried later.
    """

    def __str__(self) -> str:
        return _sentence(f"{_subject(self.service)} is not available right now: {_sentence(self.message)} Please try again later")


class OutcomeUnknown(UpstreamUnavailable):
    """The request left sitrep and no answer came back (a timeout after it was sent, the
    connection reset mid-call, a gateway timeout): the upstream may have acted on it.

    Not "failed" for a create: sending it again could make a second one, so the drafts turn
    it into `SubmissionUnknown`. A change to one thing (an update, a resolve) may simply be
    retried, and reads the same as its base class. "Could not connect" is a plain
    `UpstreamUnavailable` (nothing was sent, safe to retry).
    """


# --- errors meant for the person at the keyboard (rendered by handlers/errors.py) ---
class SitrepError(Exception):
    """Base: `str(err)` is a sentence the user can read."""


class InputInvalid(SitrepError):
    """Modal input problems, keyed by block ID, shown inside the modal so nothing is lost."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(errors.values()))


class NotFound(SitrepError):
    pass


class NotAllowed(SitrepError):
    pass


class FeatureDisabled(SitrepError):
    pass


class NotSupported(SitrepError):
    """The configured backend cannot do this; said plainly instead of failing."""


class SubmissionFailed(SitrepError):
    """The upstream did not take a submission; the draft keeps what was typed."""

    def __init__(self, *, draft_id: int, kind: str, cause: UpstreamError, summary: str):
        self.draft_id = draft_id
        self.kind = kind
        self.cause = cause
        self.summary = summary
        super().__init__(str(cause))


class SubmissionUnknown(SitrepError):
    """A create was sent and no answer came: it may exist upstream. The draft keeps what was
    typed (state "unknown"); the person chooses: look for it and retry (`can_check`: the
    upstream can list what it has), create it anyway, or link the one that exists
    (`can_link`: the status page, which cannot be asked)."""

    def __init__(
        self, *, draft_id: int, kind: str, service: str, summary: str, can_check: bool, can_link: bool, reason: str = ""
    ):
        self.draft_id = draft_id
        self.kind = kind
        self.service = service
        self.summary = summary
        self.can_check = can_check
        self.can_link = can_link
        self.reason = reason
        super().__init__(f"{_subject(service)} may or may not have done it: {reason or 'no answer came back'}")


class DatabaseBusy(SitrepError):
    """The database did not answer within the bound an answer to Slack allows (locked by
    another process, read-only, gone): said plainly instead of Slack's "operation timed out"."""

    def __init__(self, message: str = ""):
        super().__init__(
            message
            or "sitrep's database is busy right now, so I could not look that up. Nothing was changed; "
            "please try again in a minute."
        )


class NotStored(SitrepError):
    """A submission that could not be written to the database, so it was not kept as a draft.
    `sent` says whether the upstream may already have it (the store failed after the call);
    `summary` is what the person typed, given back to them so it is not lost."""

    def __init__(self, *, kind: str, summary: str, reason: str, sent: bool = False):
        self.kind = kind
        self.summary = summary
        self.reason = reason
        self.sent = sent
        super().__init__(f"the database could not keep a {kind} ({reason})")
