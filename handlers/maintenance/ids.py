"""Every callback, block and action ID of the maintenance feature, named once."""

from enum import StrEnum

from bot.messages.maintenance import AnnouncementId


class Callback(StrEnum):
    SCHEDULE = "maintenance_schedule"
    EDIT = "maintenance_edit"
    CANCEL = "maintenance_cancel"


class Block(StrEnum):
    TITLE = "maintenance_title"
    DESCRIPTION = "maintenance_description"
    START = "maintenance_start"
    END = "maintenance_end"
    COMPONENTS = "maintenance_components"
    SERVERS = "maintenance_servers"
    NOTE = "maintenance_cancel_note"
    ACTIONS = AnnouncementId.ACTIONS.value


class Action(StrEnum):
    TITLE = "title"
    DESCRIPTION = "description"
    START = "start"
    END = "end"
    COMPONENTS = "components"
    SERVERS = "servers"
    NOTE = "note"
    CANCEL = AnnouncementId.CANCEL.value
    #: *Schedule maintenance* on the home tab: opens the schedule form.
    SCHEDULE = "maintenance_schedule_button"
