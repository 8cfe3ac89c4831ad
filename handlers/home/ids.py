"""Every callback and block ID of the home tab, named once. Its buttons are the incident and
maintenance features' own (`handlers/incident/ids.py`, `handlers/maintenance/ids.py`), so the
listeners that answer them on announcements answer them here too."""

from enum import StrEnum


class Callback(StrEnum):
    HOME = "sitrep_home"


class Block(StrEnum):
    ACTIONS = "home_actions"
    INCIDENTS = "home_incidents"
    WINDOWS = "home_windows"


class Event(StrEnum):
    """Events API subscriptions (manifest.yml `settings.event_subscriptions.bot_events`)."""

    HOME_OPENED = "app_home_opened"


HOME_TAB = "home"  # app_home_opened's `tab` when the Home tab (not Messages) was opened
