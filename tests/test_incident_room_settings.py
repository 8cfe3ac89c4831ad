"""The settings of a channel per incident: off by default, `on`/`off` read from the
environment, and a bad value stops start-up with one line naming the variable."""

from __future__ import annotations

import pytest

from bot.settings import SettingsError, load_settings
from tests.support.process import SPEC_VARIABLES

MINIMAL = {
    "SLACK_BOT_TOKEN": "xoxb-1-good-token",
    "SLACK_SIGNING_SECRET": "signing-secret-value",
    "SITREP_CHANNEL": "C0123456789",
}


@pytest.fixture
def env(monkeypatch, tmp_path):
    for name in SPEC_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    for name, value in MINIMAL.items():
        monkeypatch.setenv(name, value)
    return monkeypatch.setenv


def test_off_by_default(env):
    s = load_settings()
    assert s.sitrep_incident_channels is False
    assert s.sitrep_incident_channel_private is False
    assert s.sitrep_archive_after == 24


@pytest.mark.parametrize("word, on", [("on", True), ("ON", True), ("true", True), ("1", True), ("off", False), ("0", False)])
def test_on_and_off(env, word, on):
    env("SITREP_INCIDENT_CHANNELS", word)
    env("SITREP_INCIDENT_CHANNEL_PRIVATE", word)
    s = load_settings()
    assert s.sitrep_incident_channels is on and s.sitrep_incident_channel_private is on


@pytest.mark.parametrize(
    "variable, value",
    [
        ("SITREP_INCIDENT_CHANNELS", "maybe"),
        ("SITREP_INCIDENT_CHANNEL_PRIVATE", "sometimes"),
        ("SITREP_ARCHIVE_AFTER", "-1"),
        ("SITREP_ARCHIVE_AFTER", "2.5"),
        ("SITREP_ARCHIVE_AFTER", "soon"),
    ],
)
def test_a_bad_value_is_one_line_naming_it(env, variable, value):
    env(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert caught.value.variable == variable and message.startswith(variable) and "\n" not in message
    assert "expected" in message and value not in message


def test_archive_after_zero_means_never(env):
    env("SITREP_ARCHIVE_AFTER", "0")
    assert load_settings().sitrep_archive_after == 0
