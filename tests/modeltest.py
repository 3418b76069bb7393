"""What the model-based tests (``test_model_*.py``) share: their Hypothesis settings, and
a second client of one store.

Each of those files drives the public API with a Hypothesis state machine against a
plain model (a dict, a tree) and reduces what it finds to plain tests at its end.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, Phase, settings

from jupyter_volume.testing.wrappers import WrappedStore


def model_settings(examples: int, steps: int, *, shrink: bool = False) -> settings:
    """Settings for a state machine run in CI: the same examples every run
    (``derandomize``), no example database, no deadline (stores and folders take their
    time). No shrinking by default: a failure is reported as found (its steps and the
    difference from the model) in the time of a passing run; shrinking one takes 5-10
    minutes on two cores (``shrink=True`` while debugging)."""
    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if shrink else [])
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        database=None,
        derandomize=True,
        phases=phases,
        report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


class StoreAs(WrappedStore):
    """The same store under another URL (``url#tag``): nothing this process keeps per
    store URL (opened volumes, Dicts, mounts) is shared with the first client's, as if
    this one ran in a process of its own."""

    def __init__(self, inner: Any, tag: str = "b") -> None:
        super().__init__(inner)
        self.url = f"{inner.url}#{tag}"
