"""The named things: states (`store/states.py`, one home for each state machine, a docstring
for every member, read from the source as Python keeps none for an enum member), post tags,
and the one root of the errors (`bot/errors.py`)."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

import bot.errors as errors
import bot.slack.posts as posts
import store.states as states
from store.models import Incident
from store.states import IncidentState


def undocumented(path: Path) -> list[str]:
    """`Class.MEMBER` of every StrEnum member in `path` with no string right after it."""
    missing = []
    for node in ast.parse(path.read_text()).body:
        if not isinstance(node, ast.ClassDef) or not any(getattr(b, "id", "") == "StrEnum" for b in node.bases):
            continue
        body = node.body
        for i, item in enumerate(body):
            if isinstance(item, ast.Assign) and all(isinstance(t, ast.Name) and t.id.isupper() for t in item.targets):
                after = body[i + 1] if i + 1 < len(body) else None
                documented = isinstance(after, ast.Expr) and isinstance(getattr(after, "value", None), ast.Constant)
                if not documented:
                    missing += [f"{node.name}.{t.id}" for t in item.targets]
    return missing


def test_every_named_state_and_post_tag_says_what_it_means():
    assert undocumented(Path(states.__file__)) == []
    assert undocumented(Path(posts.__file__)) == []


def test_an_incident_is_open_until_it_is_resolved():
    incident = Incident(resolved_at=None)
    assert (incident.state, incident.is_open) == (IncidentState.OPEN, True)
    incident.resolved_at = datetime(2030, 1, 1, tzinfo=UTC)
    assert (incident.state, incident.is_open) == (IncidentState.RESOLVED, False)


def test_post_tags_are_distinct_metadata_event_types():
    """Each is stored in Slack and searched for by a process taking a claim over: two kinds
    of post sharing one would find each other."""
    values = [str(tag) for tag in posts.PostTag]
    assert len(values) == len(set(values)) and all(v.startswith("sitrep_") for v in values)


def test_every_error_sitrep_raises_on_purpose_has_one_root():
    """The tree at the top of `bot/errors.py`: one base, and every class in the module under it."""
    classes = [v for v in vars(errors).values() if isinstance(v, type) and v.__module__ == errors.__name__]
    assert {c.__name__ for c in classes} >= {"SitrepError", "UpstreamError", "Signal", "ClaimLost", "RateLimited"}
    assert all(issubclass(c, errors.SitrepException) for c in classes)
    for name in ("ClaimLost", "RateLimited", "AnnouncementBusy", "Skip"):
        assert issubclass(getattr(errors, name), errors.Signal) and name in (errors.__doc__ or "")
