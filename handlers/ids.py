"""IDs shared by every feature: the buttons on a kept submission (Retry / Edit after a
failure; Check and retry / Create anyway / It exists: link it after an unknown outcome) and
the link modal."""

from enum import StrEnum


class DraftAction(StrEnum):
    RETRY = "draft_retry"
    EDIT = "draft_edit"
    CHECK = "draft_check"
    """Look upstream for what the lost send made; adopt it, else create it."""
    ANYWAY = "draft_create_anyway"
    """Send it again without looking."""
    LINK = "draft_link"
    """Open the modal where the person pastes the ID of the one that exists."""


class DraftCallback(StrEnum):
    LINK = "draft_link_submit"


class DraftBlock(StrEnum):
    UPSTREAM_ID = "draft_link_id"


class DraftInput(StrEnum):
    UPSTREAM_ID = "upstream_id"
