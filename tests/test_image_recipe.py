"""The container recipe, kept honest without a container engine: the Dockerfile's claims are
read and checked, and what it does — copy the files it names, `pip install .`, start
`sitrep run`, probe with its HEALTHCHECK — is done in a fresh virtual environment."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.support.harness import CHANNEL, SIGNING_SECRET, free_port
from tests.support.image import ROOT, all_of, exec_form, instructions, one_of
from tests.support.process import SPEC_VARIABLES


def healthcheck_command() -> list[str]:
    """The HEALTHCHECK's command, in exec form (no shell in the way)."""
    arguments = one_of("HEALTHCHECK")
    options, _, command = arguments.partition("CMD ")
    assert command, arguments
    assert all(o.startswith("--") for o in options.split()), options
    return exec_form(command)


def copied_sources() -> list[str]:
    """Every path the Dockerfile copies from the build context."""
    sources = []
    for arguments in all_of("COPY"):
        parts = [p for p in shlex.split(arguments) if not p.startswith("--")]
        sources += parts[:-1]
    return sources


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


# --- what the Dockerfile claims -----------------------------------------------------------------


def test_the_image_starts_from_a_versioned_slim_python_3_11():
    """A full version and the Debian release: a rebuild next month gets the same base."""
    assert instructions()[0][0] == "FROM"
    base = one_of("FROM")
    assert re.fullmatch(r"python:3\.11\.\d+-slim-(bookworm|trixie)(@sha256:[0-9a-f]{64})?", base), base


def test_the_image_runs_sitrep_as_a_user_that_is_not_root():
    words = [word for word, _ in instructions()]
    user = one_of("USER")
    assert user.split(":")[0] not in {"root", "0"}, user
    at = words.index("USER")
    assert "RUN" not in words[at:], "everything after USER runs as that user: install before it"
    assert words.index("CMD") > at
    assert exec_form(one_of("CMD")) == ["sitrep", "run"]


RUNTIME_LOCK = "requirements/runtime.lock"
DEV_LOCK = "requirements/dev.lock"
PIP_LOCK = "requirements/pip.lock"


def pip_installs() -> list[list[str]]:
    return [shlex.split(run.split("pip install", 1)[1].split("&&", 1)[0]) for run in all_of("RUN") if "pip install" in run]


def test_the_image_installs_the_locked_dependencies_in_a_layer_of_their_own_then_the_project_alone():
    """First the pinned, hash-checked dependencies from a COPY of the lock alone (a change to
    the code does not reinstall them), then `.` with nothing more: no extras, not editable."""
    dependencies, project = pip_installs()
    assert dependencies[dependencies.index("-r") + 1].endswith(RUNTIME_LOCK)
    assert {"--require-hashes", "--no-deps"} <= set(dependencies)
    assert [a for a in project if not a.startswith("-")] == ["."]
    assert {"--no-deps", "--no-build-isolation"} <= set(project)
    assert not {"-e", "--editable", "-r", "--requirement"} & set(project)
    steps = [(word, rest) for word, rest in instructions() if word in ("COPY", "RUN")]
    first_copy = next(rest for word, rest in steps if word == "COPY")
    assert shlex.split(first_copy)[:-1] == [RUNTIME_LOCK], "the dependency layer must not depend on the code"
    layer = next(i for i, (word, rest) in enumerate(steps) if word == "RUN" and RUNTIME_LOCK in rest)
    assert all(word == "COPY" and RUNTIME_LOCK in rest for word, rest in steps[:layer])


def test_the_image_copies_exactly_what_pip_install_reads():
    sources = copied_sources()
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
    packages = {pattern.rstrip("*") for pattern in pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert set(sources) == {RUNTIME_LOCK, "pyproject.toml", pyproject()["project"]["readme"], *packages}


def pins(lock: str) -> dict[str, Version]:
    """name -> pinned version; every pin carries its hashes."""
    text = (ROOT / lock).read_text(encoding="utf-8")
    found = {}
    for entry in re.split(r"\n(?=\S)", text):
        match = re.match(r"([A-Za-z0-9_.\-\[\]]+)==([^\s;\\]+)", entry)
        if match is None:
            continue
        assert "--hash=sha256:" in entry, f"{lock}: {match.group(0)} has no hash"
        found[canonicalize_name(match.group(1).split("[")[0])] = Version(match.group(2))
    return found


def test_the_locks_pin_every_dependency_within_pyproject_bounds():
    """pyproject.toml keeps lower bounds, the locks pin: a dependency added without
    `scripts/dev lock`, or a bound the pin does not meet, fails here."""
    project = pyproject()
    wanted = {
        RUNTIME_LOCK: [*project["project"]["dependencies"], *project["build-system"]["requires"]],
        DEV_LOCK: [*project["project"]["dependencies"], *project["build-system"]["requires"],
                   *project["project"]["optional-dependencies"]["test"]],
    }  # fmt: skip
    for lock, requirements in wanted.items():
        pinned = pins(lock)
        for line in requirements:
            requirement = Requirement(line)
            name = canonicalize_name(requirement.name)
            assert name in pinned, f"{name} is not in {lock}: run `scripts/dev lock`"
            assert requirement.specifier.contains(pinned[name], prereleases=True), (
                f"{lock}: {name}=={pinned[name]} not {requirement}"
            )
    runtime, dev = pins(RUNTIME_LOCK), pins(DEV_LOCK)
    assert all(dev[name] == version for name, version in runtime.items()), "the two locks disagree: run `scripts/dev lock`"
    assert "pytest" not in runtime  # the image stays without the test dependencies


def test_the_healthcheck_asks_healthz_with_python_on_the_exposed_port():
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"] and "urllib.request" in command[2] and "/healthz" in command[2]
    assert "PORT" in command[2] and "METRICS_PORT" in command[2]  # HTTP mode, Socket Mode
    assert one_of("EXPOSE").split() == ["3000", "9090"]
    assert "PORT=3000" in " ".join(all_of("ENV"))


def test_dockerignore_keeps_secrets_and_local_state_out():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()}
    assert {".env", ".venv", "*.db", ".git", "tests"} <= ignored
    assert not set(copied_sources()) & ignored


def test_compose_runs_two_replicas_on_one_postgresql():
    compose = yaml.safe_load((ROOT / "compose.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    database = [name for name, s in services.items() if str(s.get("image", "")).startswith("postgres:")]
    assert len(database) == 1
    replicas = {name: s for name, s in services.items() if s.get("build") == "."}
    assert len(replicas) == 2, sorted(services)
    urls = {s["environment"]["DATABASE_URL"] for s in replicas.values()}
    assert len(urls) == 1 and next(iter(urls)).startswith("postgresql://sitrep:${POSTGRES_PASSWORD")
    assert all(s["depends_on"][database[0]]["condition"] == "service_healthy" for s in replicas.values())
    assert "healthcheck" in services[database[0]]
    host_ports = [p.split(":")[0] for s in replicas.values() for p in s["ports"]]
    assert len(set(host_ports)) == 2
    assert all(s["env_file"] == ".env" for s in replicas.values())  # secrets stay out of the file


# --- what the Dockerfile does, done in a fresh virtual environment -----------------------------


def _wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow(seconds=25)
def test_the_recipe_installs_and_runs_in_a_fresh_environment(tmp_path, slack):
    # The build context: only what the Dockerfile copies.
    context = tmp_path / "src"
    context.mkdir()
    for source in copied_sources():
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, context / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (context / source).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / source, context / source)

    # A fresh environment that sees none of this one's packages; this pip installs into it.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in SPEC_VARIABLES and k != "PYTHONPATH"}
    # The Dockerfile's two installs, in its order: the locked dependencies, then the project.
    for arguments in pip_installs():
        install = subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-compile", *arguments],
            cwd=context,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert install.returncode == 0, install.stdout + install.stderr
    check = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "check"], env=env, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr  # the lock left nothing out

    workdir = tmp_path / "var-lib-sitrep"
    workdir.mkdir()

    def run(*args: str, **extra) -> subprocess.CompletedProcess:
        return subprocess.run([*args], cwd=workdir, env=env | extra, capture_output=True, text=True, timeout=60)

    version = run(str(venv / "bin" / "sitrep"), "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"sitrep {pyproject()['project']['version']}", version
    help_text = run(str(venv / "bin" / "sitrep"), "check", "--help")
    assert help_text.returncode == 0 and help_text.stdout.startswith("usage: sitrep check"), help_text
    assert run(str(python), "-c", "import pytest").returncode != 0, "a test dependency was installed"
    imported = run(str(python), "-c", "import bot; print(bot.__file__)")
    assert str(venv) in imported.stdout, imported  # the installed copy, not the repository

    # CMD, then the HEALTHCHECK against it: unhealthy before it listens, healthy after.
    port = str(free_port())
    settings = {
        "SLACK_BOT_TOKEN": slack.token,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.url,
        "SITREP_CHANNEL": CHANNEL,
        "PORT": port,
    }
    probe = [str(python), *healthcheck_command()[1:]]
    assert run(*probe, PORT=port).returncode != 0
    cmd = exec_form(one_of("CMD"))
    process = subprocess.Popen(
        [str(venv / "bin" / cmd[0]), *cmd[1:]],
        cwd=workdir,
        env=env | settings,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # A bound only a process that never comes up reaches (a loaded machine takes a while).
        healthy = _wait_until(lambda: run(*probe, PORT=port).returncode == 0, timeout=90)
        assert healthy, "the HEALTHCHECK never passed"
        # In Socket Mode the probe asks METRICS_PORT instead, whatever PORT says.
        assert run(*probe, PORT=port, SLACK_APP_TOKEN="xapp-1-x", METRICS_PORT=str(free_port())).returncode != 0
        assert run(*probe, PORT=str(free_port()), SLACK_APP_TOKEN="xapp-1-x", METRICS_PORT=port).returncode == 0
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert healthy, output
    assert process.returncode == 0, output
    assert (workdir / "sitrep.db").exists()  # the default store lands in WORKDIR


# --- CI installs from the lock too ---------------------------------------------------------------


def test_scripts_dev_and_so_ci_install_the_locked_versions_before_the_project(tmp_path):
    """`.ci/run` installs only through `scripts/dev`, which installs its pinned pip, then the
    hash-checked dev lock, then the project on top (nothing left for pip to choose), and again
    when either lock changes. Run for real against a `.venv` whose python, ruff and sitrep
    only record."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install" not in ci and "bash scripts/dev lint" in ci
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    (root / "requirements").mkdir()
    shutil.copy(ROOT / "scripts" / "dev", root / "scripts" / "dev")
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    shutil.copy(ROOT / DEV_LOCK, root / DEV_LOCK)
    shutil.copy(ROOT / PIP_LOCK, root / PIP_LOCK)
    calls = tmp_path / "calls"
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("python", "ruff", "sitrep"):
        tool = bin_dir / name
        tool.write_text(f'#!/bin/sh\necho "{name} $*" >>"{calls}"\n')
        tool.chmod(0o755)

    def lint() -> list[str]:
        calls.unlink(missing_ok=True)
        done = subprocess.run(["bash", str(root / "scripts" / "dev"), "lint"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return [line for line in calls.read_text().splitlines() if " pip install" in line]

    first = lint()
    assert len(first) == 3, first
    assert first[0].split()[-2:] == ["-r", PIP_LOCK]
    assert first[1].split()[-2:] == ["-r", DEV_LOCK]
    assert first[2].endswith("-e .[test]")
    assert lint() == []  # nothing changed: nothing installed
    for changed in (DEV_LOCK, PIP_LOCK):
        with (root / changed).open("a") as lock:
            lock.write("\n# a new pin\n")
        assert lint() == first, changed  # a lock changed: installed from them again


def test_the_pip_that_installs_the_locks_is_pinned_with_its_hashes():
    """The pip `scripts/dev` installs first is one version, hash-checked, as every other pin."""
    lock = (ROOT / PIP_LOCK).read_text(encoding="utf-8")
    assert re.search(r"^pip==[0-9.]+ \\$", lock, re.MULTILINE), lock
    assert "--hash=sha256:" in lock
