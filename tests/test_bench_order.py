"""The bench runs its tools in an order where each follows each other one equally often."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the bench package

from bench.run import run_order  # noqa: E402


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_every_tool_runs_in_every_place_and_after_every_other_alike(n: int) -> None:
    names = [f"tool{i}" for i in range(n)]
    period = n if n % 2 == 0 else 2 * n
    orders = [run_order(names, r) for r in range(period)]
    for order in orders:
        assert sorted(order) == names
    places = Counter((name, i) for order in orders for i, name in enumerate(order))
    assert set(places.values()) == {period // n}
    assert len(places) == n * n
    follows = Counter(pair for order in orders for pair in zip(order, order[1:], strict=False))
    assert len(follows) == n * (n - 1)  # every ordered pair of different tools
    assert set(follows.values()) == {period // n}
    # the first n repetitions alone still put every tool in every place once
    first = Counter((name, i) for order in orders[:n] for i, name in enumerate(order))
    assert set(first.values()) == {1}


def test_the_design_repeats_after_its_period() -> None:
    names = ["a", "b", "c", "d", "e"]
    assert run_order(names, 0) == ["a", "b", "e", "c", "d"]
    assert run_order(names, 5) == ["d", "c", "e", "b", "a"]  # the first, backwards
    assert [run_order(names, r) for r in range(10)] == [run_order(names, r) for r in range(10, 20)]
