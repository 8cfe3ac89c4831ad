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
    REPEAT = "maintenance_repeat"
    WEEKDAYS = "maintenance_weekdays"
    UNTIL = "maintenance_until"
    TIMES = "maintenance_times"
    ZONE = "maintenance_zone"
    SCOPE = "maintenance_scope"
    ACTIONS = AnnouncementId.ACTIONS.value


class Action(StrEnum):
    TITLE = "title"
    DESCRIPTION = "description"
    START = "start"
    END = "end"
    COMPONENTS = "components"
    SERVERS = "servers"
    NOTE = "note"
    REPEAT = "repeat"
    WEEKDAYS = "weekdays"
    UNTIL = "until"
    TIMES = "times"
    ZONE = "zone"
    SCOPE = "scope"
    CANCEL = AnnouncementId.CANCEL.value
    #: *Schedule maintenance* on the home tab: opens the schedule form.
    SCHEDULE = "maintenance_schedule_button"


class Scope(StrEnum):
    """What a cancel of one occurrence of a series applies to."""

    THIS = "this"
    FOLLOWING = "following"
