"""The order the suite's tests are handed to the xdist workers (`tests/conftest.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tests.conftest import pytest_collection_modifyitems


@dataclass
class Item:
    name: str
    slow_seconds: float | None = None
    marks: dict = field(default_factory=dict)

    def get_closest_marker(self, name):
        if name == "slow" and self.slow_seconds is not None:
            return pytest.mark.slow(seconds=self.slow_seconds).mark
        return None


def first_hand_outs(items: list[Item], workers: int) -> list[list[Item]]:
    """What xdist's worksteal gives each idle worker first: the next len/(workers left) items."""
    shares, left = [], list(items)
    for k in range(workers):
        size = len(left) // (workers - k)
        shares.append(left[:size])
        left = left[size:]
    return shares


def test_each_worker_starts_with_an_even_part_of_the_slow_tests(monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "4")
    slow = [Item("replicas", 100), Item("survivor-a", 55), Item("survivor-b", 55), Item("image", 25)]
    slow += [Item(f"series-{i}", 20) for i in range(4)]
    items = slow + [Item(f"fast-{i}") for i in range(200)]
    pytest_collection_modifyitems(items)

    assert sorted(i.name for i in items) == sorted([i.name for i in slow] + [f"fast-{i}" for i in range(200)])
    shares = first_hand_outs(items, 4)
    loads = [sum(i.slow_seconds or 0 for i in share) for share in shares]
    assert sorted(loads) == [65, 75, 75, 100], loads  # not one worker with all 330 s
    for share in shares:  # each share starts with its slow tests, longest first
        seconds = [i.slow_seconds for i in share if i.slow_seconds is not None]
        assert [i.slow_seconds for i in share[: len(seconds)]] == sorted(seconds, reverse=True)
    fast = [i.name for i in items if i.slow_seconds is None]
    assert fast == [f"fast-{i}" for i in range(200)]  # the fast tests keep their order


def test_without_workers_or_with_few_tests_the_slow_ones_come_first(monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    items = [Item("fast-0"), Item("slow-short", 10), Item("fast-1"), Item("slow-long", 60)]
    pytest_collection_modifyitems(items)
    assert [i.name for i in items] == ["slow-long", "slow-short", "fast-0", "fast-1"]

    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "4")
    items = [Item("fast-0"), Item("slow-a", 10), Item("slow-b", 60), Item("slow-c", 20)]
    pytest_collection_modifyitems(items)  # four tests, four workers: one each, slow first
    assert [i.name for i in items][:3] == ["slow-b", "slow-c", "slow-a"]
