"""The app manifests as a test reads them: the bot scopes a workspace grants when the app is
installed from one (for the fake Slack's `grant`)."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
BASE = "manifest.yml"
WITH_CHANNELS = "manifest.channels.yml"  # SITREP_INCIDENT_CHANNELS=on


def load_manifest(name: str = BASE) -> dict:
    return yaml.safe_load((REPO / name).read_text(encoding="utf-8"))


def bot_scopes(name: str = BASE) -> frozenset[str]:
    return frozenset(load_manifest(name)["oauth_config"]["scopes"]["bot"])
