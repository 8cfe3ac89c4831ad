"""What ships in deploy/: the Prometheus alert rules, checked and unit-tested by promtool and
held to the metrics a running bot really exports; the Kubernetes manifests, validated
against Kubernetes' own schema and held to the bot's ports, probes and drain."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bot.settings import Settings
from tests.support.fakes.slack_api import default_shared_dir
from tests.support.harness import BotUnderTest
from tests.support.image import exec_form, instructions, one_of
from tests.support.process import SPEC_VARIABLES

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS = ROOT / "deploy" / "prometheus"
KUBERNETES = ROOT / "deploy" / "kubernetes"


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


# --- Kubernetes ------------------------------------------------------------------------------


def rendered() -> list[dict]:
    """The base as `kubectl kustomize` renders it: every document of every listed resource
    (the base uses nothing but `resources`, so no transformer changes them)."""
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text(encoding="utf-8"))
    assert set(kustomization) == {"apiVersion", "kind", "resources"}, "a transformer here needs a real kustomize in the test"
    objects = []
    for resource in kustomization["resources"]:
        objects += [o for o in yaml.safe_load_all((KUBERNETES / resource).read_text(encoding="utf-8")) if o]
    listed = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == set(kustomization["resources"]), "a manifest that kustomization.yaml does not list"
    return objects


def the(kind: str, objects: list[dict] | None = None) -> dict:
    found = [o for o in (objects or rendered()) if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl here to compare with its own kustomize")
def test_kubectl_kustomize_renders_the_same_objects():
    built = subprocess.run(["kubectl", "kustomize", str(KUBERNETES)], capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
    assert sorted((o for o in yaml.safe_load_all(built.stdout) if o), key=key) == sorted(rendered(), key=key)


@pytest.mark.parametrize("version", ["1.29.0", kubernetes_validate.latest_version()])
def test_every_object_is_valid_against_the_kubernetes_schema(version):
    """Strict: an unknown or misspelled field is an error, as `kubectl apply` would make it."""
    objects = rendered()
    assert {o["kind"] for o in objects} == {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "Job"}
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}") from exc


def _settings_known() -> set[str]:
    """SPEC.md's settings table and the ones sitrep adds (tests/support/process.py)."""
    table = (default_shared_dir() / "SPEC.md").read_text(encoding="utf-8").split("## Settings", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table)) | set(SPEC_VARIABLES)


def _config() -> dict[str, str]:
    return the("ConfigMap")["data"]


def _container(kind: str) -> dict:
    spec = the(kind)["spec"]["template"]["spec"]
    [container] = spec["containers"]
    return container


def test_the_deployment_runs_two_replicas_of_the_image_command_with_settings_from_configmap_and_secret():
    deployment = the("Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0  # a rollout never drops below two
    container = _container("Deployment")
    assert container["command"] + container["args"] == exec_form(one_of("CMD"))  # the image's `sitrep run`
    sources = container["envFrom"]
    assert {"configMapRef": {"name": the("ConfigMap")["metadata"]["name"]}} in sources
    assert {"secretRef": {"name": "sitrep"}} in sources  # the Secret the docs tell how to create
    assert set(_config()) <= _settings_known(), set(_config()) - _settings_known()
    secrets = {
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "SLACK_APP_TOKEN",
        "STATUSPAGE_API_KEY",
        "APPFIRST_API_KEY",
        "DATABASE_URL",
    }
    assert not secrets & set(_config()), "a secret in the ConfigMap"


def test_the_ports_and_probes_are_the_ones_the_bot_serves():
    container = _container("Deployment")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    config = _config()
    assert ports == {"http": int(config.get("PORT", Settings.model_fields["port"].default)),
                     "metrics": int(config.get("METRICS_PORT", Settings.model_fields["metrics_port"].default))}  # fmt: skip
    # Probes on METRICS_PORT, which serves /healthz and /readyz in both modes.
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    service = the("Service")
    pod_labels = the("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports)


def test_the_grace_period_covers_the_prestop_and_the_drain():
    """SIGTERM comes after the preStop; then the bot serves for SITREP_DRAIN_DELAY and lets
    work finish for SITREP_SHUTDOWN_GRACE: the kubelet must not kill it before."""
    pod = the("Deployment")["spec"]["template"]["spec"]
    pre_stop = _container("Deployment")["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep" and len(pre_stop) == 2
    config = _config()
    drain = float(config.get("SITREP_DRAIN_DELAY", Settings.model_fields["sitrep_drain_delay"].default))
    grace = float(config.get("SITREP_SHUTDOWN_GRACE", Settings.model_fields["sitrep_shutdown_grace"].default))
    assert pod["terminationGracePeriodSeconds"] > float(pre_stop[1]) + drain + grace


def test_every_pod_runs_as_the_image_user_without_privileges_and_with_resources():
    uid = int(re.search(r"--uid (\d+)", " ".join(r for w, r in instructions() if w == "RUN")).group(1))
    for kind in ("Deployment", "Job"):
        pod = the(kind)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == uid, kind
        container = _container(kind)
        assert container["securityContext"]["allowPrivilegeEscalation"] is False, kind
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], kind
        assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"], kind
        assert container["image"] == _container("Deployment")["image"], kind


def test_a_disruption_leaves_one_replica_and_the_job_migrates():
    budget, deployment = the("PodDisruptionBudget"), the("Deployment")
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    assert 1 <= budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    job = the("Job")
    assert _container("Job")["command"] + _container("Job")["args"] == ["sitrep", "migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert {"secretRef": {"name": "sitrep"}} in _container("Job")["envFrom"]  # DATABASE_URL
