"""The README is a first read and every link in it and in docs/ works: relative files and
their anchors exist, and the Block Kit Builder links are what `sitrep preview` prints now
(so a picture never drifts from what sitrep sends)."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from urllib.parse import unquote

import pytest

from bot.settings import Settings
from handlers.preview import BUILDER, previews
from tests.support.process import sitrep
from tests.support.slack_limits import check_message, view_problems

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
DOC_PAGES = ("settings.md", "operating.md", "features.md", "promises.md", "development.md")

_FENCED = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_CODE = re.compile(r"`[^`\n]*`")
_INLINE = re.compile(r"\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)\)")
_REFERENCE = re.compile(r"^\[([^\]]+)\]:\s*(\S+)\s*$", re.MULTILINE)
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def prose(text: str) -> str:
    """The text without code blocks and code spans: links are not read from code."""
    return _CODE.sub("", _FENCED.sub("", text))


def links(page: Path) -> list[str]:
    text = prose(page.read_text(encoding="utf-8"))
    return _INLINE.findall(text) + [target for _name, target in _REFERENCE.findall(text)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, code marks and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in _HEADING.findall(_FENCED.sub("", page.read_text(encoding="utf-8"))):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return frozenset(out)


def test_slugs_are_githubs():
    assert slug("`sitrep check`") == "sitrep-check"
    assert slug("What `sitrep run` checks before it serves") == "what-sitrep-run-checks-before-it-serves"
    assert slug("Declaring from a message, and the home tab") == "declaring-from-a-message-and-the-home-tab"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_anchor_exists(page):
    broken = []
    for target in links(page):
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto: (the Builder's are checked below)
        path, _, anchor = target.partition("#")
        file = (page.parent / unquote(path)).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file}")
        elif anchor and (file.suffix != ".md" or anchor not in anchors(file)):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    assert not broken, broken


def test_the_link_check_can_fail(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Here\n[a](missing.md) [b](#here) [c](#nowhere) `[d](in-code.md)`\n")
    assert links(page) == ["missing.md", "#here", "#nowhere"]
    assert anchors(page) == {"here"}


@cache
def preview_urls() -> dict[str, str]:
    return {p.name: p.url for p in previews()}


def test_every_builder_link_in_the_docs_is_a_current_preview():
    found = [t for page in PAGES for t in links(page) if t.startswith(BUILDER)]
    assert found, "the README links what sitrep looks like"
    stale = [t[:120] for t in found if t not in preview_urls().values()]
    assert not stale, f"regenerate with `sitrep preview`: {stale}"
    # The four the first read promises, at least: announcement with its thread, the declare form,
    # a reminder, the home tab.
    linked = {name for name, url in preview_urls().items() if url in found}
    assert {"incident-announcement", "incident-update", "declare-form", "maintenance-reminder", "home-tab"} <= linked


@pytest.mark.parametrize("name", [p.name for p in previews()])
def test_each_preview_is_a_message_or_view_slack_takes(name):
    payload = json.loads(unquote(preview_urls()[name].removeprefix(BUILDER)))
    if "type" in payload:  # a modal or the home tab
        assert view_problems(payload, kind=payload["type"]) == []
    else:
        check_message(payload["blocks"], "preview")


def test_sitrep_preview_prints_the_links(base_env, tmp_path):
    done = sitrep("preview", env=base_env, cwd=tmp_path)  # no setting needed
    assert done.returncode == 0, done.stderr
    printed = [line.strip() for line in done.stdout.splitlines() if line.strip().startswith("https://")]
    assert printed == list(preview_urls().values())


# --- the first read ---------------------------------------------------------------------------------


def readme() -> str:
    return README.read_text(encoding="utf-8")


def test_the_readme_is_a_first_read():
    lines = readme().splitlines()
    assert len(lines) <= 200
    first_screen = "\n".join(lines[:40])
    # The two commands: run the bot, run the tests (what CI runs).
    assert "scripts/dev run" in first_screen and "scripts/dev test" in first_screen
    assert re.search(r"^(exec )?bash scripts/dev test\b", (REPO / ".ci" / "run").read_text(), re.MULTILINE)
    for name in DOC_PAGES:
        assert f"](docs/{name})" in readme(), f"the README links docs/{name}"
        assert (REPO / "docs" / name).exists()


def test_the_quick_start_goes_in_a_newcomers_order():
    """The app from the manifest (Socket Mode first), the tokens, the sandbox, then the real
    status page: each step needs only what the ones before it made."""
    start = readme().index("## Quick start")
    quick = readme()[start : readme().index("\n## ", start + 1)]
    steps = [
        "manifest --socket-mode",
        "SLACK_BOT_TOKEN",
        "SLACK_APP_TOKEN",
        "SITREP_CHANNEL",
        "run --sandbox",
        "STATUSPAGE_URL",
        "scripts/dev run\n",
    ]
    positions = [quick.find(step) for step in steps]
    assert -1 not in positions and positions == sorted(positions), dict(zip(steps, positions, strict=True))
    assert quick.find("Socket Mode") < quick.find("--url"), "Socket Mode comes before the public-URL path"


def section(text: str, heading: str) -> str:
    """The text under `heading` (a `## ` line) up to the next `## ` heading."""
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_the_readme_deploy_section_shows_kubernetes_the_drain_and_the_alerts():
    """#20: the README's Deploy section shows the Kubernetes base and how to apply it, with
    the drain delay as the settings have it and the alert rules that exist."""
    deploy = section(readme(), "## Deploy")
    assert "kubectl apply -k deploy/kubernetes" in deploy
    assert "kubectl create secret generic sitrep" in deploy and (REPO / "deploy" / "kubernetes" / "kustomization.yaml").exists()
    drain = Settings.model_fields["sitrep_drain_delay"].default
    assert f"`SITREP_DRAIN_DELAY` seconds ({drain:g})" in deploy
    assert f"`METRICS_PORT` ({Settings.model_fields['metrics_port'].default}" in deploy
    for linked in ("deploy/kubernetes/", "deploy/prometheus/alerts.yml", "Dockerfile", "compose.yml"):
        assert f"]({linked})" in deploy and (REPO / linked).exists(), linked
    assert "requirements/runtime.lock" in deploy and (REPO / "requirements" / "runtime.lock").exists()
    assert "](docs/operating.md#deploy)" in deploy


def test_the_readme_says_whose_incidents_the_home_tab_shows():
    home = next(line for line in readme().splitlines() if line.startswith("| the **Home** tab"))
    assert "member of a channel it was announced in" in home
    assert "`SITREP_CHANNEL`" in home and "its own channel" in home
