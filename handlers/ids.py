"""IDs shared by every feature: the Retry / Edit buttons on a kept submission."""

from enum import StrEnum


class DraftAction(StrEnum):
    RETRY = "draft_retry"
    EDIT = "draft_edit"
