"""What ships in deploy/: the Prometheus alert rules, checked and unit-tested by promtool and
held to the metrics a running bot really exports; the Kubernetes manifests, validated
against Kubernetes' own schema and held to the bot's ports, probes and drain."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.harness import BotUnderTest

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS = ROOT / "deploy" / "prometheus"


# --- Prometheus ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    """Prometheus's own checker: on PATH, in $PROMTOOL, or fetched from Debian's prometheus
    package by scripts/fetch-promtool. Under CI it must be had: a skip would hide the rules."""
    found = subprocess.run(
        ["bash", str(ROOT / "scripts" / "fetch-promtool")], capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL
    )
    if found.returncode != 0:
        reason = f"promtool cannot be had on this machine: {found.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found.stdout.strip()


def test_the_alert_rules_pass_promtool_check(promtool):
    checked = subprocess.run([promtool, "check", "rules", "alerts.yml"], cwd=PROMETHEUS, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def test_the_alerts_fire_when_their_unit_tests_say_and_only_then(promtool):
    tested = subprocess.run([promtool, "test", "rules", "alerts.test.yml"], cwd=PROMETHEUS, capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def rules() -> list[dict]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_every_alert_says_how_bad_and_what_happened():
    for rule in rules():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names))
    # The three the issue asks for are among them.
    exprs = " ".join(rule["expr"] for rule in rules())
    for metric in ("sitrep_reminders_overdue", "sitrep_last_sync_success_timestamp_seconds", "sitrep_channel_reachable"):
        assert metric in exprs


_SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def test_every_metric_the_alerts_name_is_one_the_bot_exports(settings):
    """A renamed metric would leave an alert that can never fire: each name in an expression
    is in a real scrape of the bot (families with no sample yet included)."""
    with BotUnderTest(settings) as bot:
        text = bot.scrape()
    families, samples = set(), set()
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        samples |= {sample.name for sample in family.samples}
    named = {m for rule in rules() for m in re.findall(r"\b((?:sitrep|process)_[a-z_]+)\b", rule["expr"])}
    assert named
    for metric in sorted(named):
        base = next((metric.removesuffix(s) for s in _SUFFIXES if metric.endswith(s)), metric)
        assert metric in samples or base in families, f"{metric} is not exported"
