"""The bench runs its tools in an order where each follows each other one equally often."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the bench package

from bench.run import run_order, whole_rounds  # noqa: E402


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


@pytest.mark.parametrize(
    ("n", "reps", "want"),
    [(4, 10, 12), (4, 5, 8), (4, 8, 8), (5, 10, 10), (5, 5, 5), (5, 6, 10), (1, 3, 3)],
)
def test_repetitions_are_rounded_up_to_whole_rounds(n: int, reps: int, want: int) -> None:
    assert whole_rounds(n, reps) == want
    names = [f"tool{i}" for i in range(n)]
    places = Counter((name, i) for r in range(want) for i, name in enumerate(run_order(names, r)))
    assert set(places.values()) == {want // n}  # every tool in every place equally often


def test_ten_repetitions_of_four_tools_would_not_be_balanced() -> None:
    """What the rounding is for: 10 repetitions of four tools ran two orders three times."""
    names = ["a", "b", "c", "d"]
    orders = Counter(tuple(run_order(names, r)) for r in range(10))
    assert sorted(orders.values()) == [2, 2, 3, 3]


@pytest.mark.parametrize(("n", "reps"), [(0, 5), (4, 0)])
def test_rounds_of_nothing_are_refused(n: int, reps: int) -> None:
    with pytest.raises(ValueError):
        whole_rounds(n, reps)
