"""Every callback, block and action ID of the incident feature, named once."""

from enum import StrEnum

from bot.messages.incident import AnnouncementId


class Callback(StrEnum):
    DECLARE = "incident_declare"
    UPDATE = "incident_update"
    RESOLVE = "incident_resolve"
    #: The message shortcut *Declare incident* (manifest.yml `features.shortcuts`).
    DECLARE_FROM_MESSAGE = "incident_declare_from_message"
    LEAD = "incident_lead"


class Block(StrEnum):
    TITLE = "incident_title"
    DESCRIPTION = "incident_description"
    STATUS = "incident_status"
    IMPACT = "incident_impact"
    COMPONENTS = "incident_components"
    NOTIFY = "incident_notify"
    INCIDENT = "incident_select"
    UPDATE_TEXT = "incident_update_text"
    NOTE = "incident_resolve_note"
    SOURCE = "incident_source"
    LEAD = "incident_lead"
    ACTIONS = AnnouncementId.ACTIONS.value


class Action(StrEnum):
    TITLE = "title"
    DESCRIPTION = "description"
    STATUS = "status"
    IMPACT = "impact"
    COMPONENTS = "components"
    NOTIFY = "notify"
    INCIDENT = "incident"
    UPDATE_TEXT = "text"
    NOTE = "note"
    LEAD = "lead"
    #: *Lead* on the announcement: opens the small lead modal.
    LEAD_BUTTON = AnnouncementId.LEAD.value
    POST_UPDATE = AnnouncementId.POST_UPDATE.value
    RESOLVE = AnnouncementId.RESOLVE.value
    #: *Declare incident* on the home tab: opens the declare form.
    DECLARE = "incident_declare_button"


NOTIFY_VALUE = "notify"
