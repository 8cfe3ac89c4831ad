"""Errors meant for the person at the keyboard. One error handler renders them all
(`handlers/errors.py`): inside the modal, as an ephemeral answer, or in a thread."""

from __future__ import annotations

from bot.errors import UpstreamError


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
