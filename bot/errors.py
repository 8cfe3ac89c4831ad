"""Every error sitrep raises on purpose descends from `SitrepException`; here is who reads each.

Upstream errors come from ``bot/clients`` (one mapping in ``bot/clients/http.py``);
``str(err)`` is a sentence that can be posted to Slack as-is and ``err.message`` keeps the
upstream's own wording (``Title is required.``), already scrubbed of credentials and control
characters. Sitrep errors come from the services and are rendered by ``handlers/errors.py``.

    SitrepException             the root
    │
    ├── UpstreamError            base; `service`, `message`, `status`
    │   ├── UpstreamRejected     person: "The status page rejected the request: …" — change what you asked
    │   │   ├── AlreadyResolved  person: the upstream's "Incident already resolved."; the store follows it
    │   │   └── UpstreamNotFound person: "AppFirst reported: Maintenance window 7 was not found."
    │   ├── UpstreamUnauthorized operator: credentials refused; person: sitrep is misconfigured, nothing lost
    │   ├── UpstreamWrongURL     operator: log line with the URL tried and the setting to fix
    │   └── UpstreamUnavailable  person: "… is not available right now … Please try again later"
    │       └── OutcomeUnknown   person: "… may or may not have done it": the request was sent and no
    │                            answer came (timeout after sending, reset, gateway timeout)
    │
    ├── SitrepError              base; `str(err)` is a sentence for the person in Slack
    │   ├── InputInvalid         person: shown inside the modal, keyed by block ID
    │   ├── NotFound             person: no such incident or window (or not open any more)
    │   ├── NotAllowed           person: not in SITREP_ADMINS
    │   ├── FeatureDisabled      person: the feature's API is not configured; operator: which setting
    │   ├── NotSupported         person: this backend cannot do that (edit on the status page)
    │   ├── SubmissionFailed     person: the upstream's reason with Retry / Edit; the draft keeps the input
    │   ├── SubmissionUnknown    person: "outcome unknown" with Check and retry / Create anyway / Link it
    │   ├── DatabaseBusy         person: the store did not answer in time (locked, read-only); try again
    │   └── NotStored            person: a submission could not be kept, with what they typed quoted
    │                            back; operator: a log line with the database's reason
    │
    └── Signal                   internal: read by no one, caught by the exactly-once engine
        ├── ClaimLost            (`bot.slack.posts`) a claimed post's claim was taken over: not sent
        ├── RateLimited          Slack answered 429 to a post that hands its claim back
        ├── AnnouncementBusy     another replica is posting the parent message right now
        ├── Skip                 a post no longer worth sending: recorded as skipped
        └── Replayed             (`bot.inbound.replays`) a form's Submit already acted on: a plain ack

The store's own `store.db.StoreTimeout` stays below this floor (the store imports nothing of
the bot); the drafts turn it into `DatabaseBusy` or `NotStored`. The redaction helpers
(``scrub``, ``upstream_text``, ``escape_controls``, ``public_url``) live apart, in
``bot/ops/redaction.py``; the errors use them as a backstop.
"""

from __future__ import annotations

from bot.ops.redaction import escape_controls

__all__ = [
    "SitrepException",
    "UpstreamError",
    "UpstreamRejected",
    "AlreadyResolved",
    "UpstreamNotFound",
    "UpstreamUnauthorized",
    "UpstreamUnavailable",
    "UpstreamWrongURL",
    "OutcomeUnknown",
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
    "Signal",
    "ClaimLost",
    "RateLimited",
    "AnnouncementBusy",
    "Skip",
    "Replayed",
]


def _subject(service: str) -> str:
    # "status page" reads as "The status page ...", a product name stays bare.
    return f"The {service}" if service[:1].islower() else service


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return text
    return text if text[-1] in ".!?" else text + "."


class SitrepException(Exception):
    """The root of every error sitrep raises on purpose (see the tree above)."""


class UpstreamError(SitrepException):
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
class SitrepError(SitrepException):
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

    @classmethod
    def failed(cls, reason: str) -> DatabaseBusy:
        """The database failed (gone, read-only, full: `store.db.store_reason` says which)."""
        return cls(
            f"sitrep's database is not working right now: {reason}. Nothing was changed; please try again in a few minutes."
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


# --- internal signals: never shown to anyone, caught by the exactly-once engine -----------
class Signal(SitrepException):
    """Base: a post did not go out for a reason its claim's owner handles (`bot.slack.posts`)."""


class ClaimLost(Signal):
    """A claimed post was not sent: its claim was taken over (another replica has it)."""


class RateLimited(Signal):
    """Slack answered 429 to a call sent with `hand_back`: nothing was posted; try again
    after `retry_after` seconds."""

    def __init__(self, method: str, retry_after: float):
        super().__init__(f"Slack rate-limited {method}; retry after {retry_after:.0f} s")
        self.method = method
        self.retry_after = retry_after


class AnnouncementBusy(Signal):
    """Another replica is posting this window's or incident's first announcement right now."""


class Skip(Signal):
    """Raised by a message builder: the post is not worth sending any more (its window
    ended or was cancelled meanwhile); the claim is recorded as skipped."""


class Replayed(Signal):
    """A form's Submit found its key recorded by an earlier delivery (a replay, a Slack retry)
    when it went to keep its draft or to ack: answered with a plain ack, and nothing else."""
