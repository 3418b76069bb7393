"""The suite's tests of Ctrl-C work however the suite was started (tests/conftest.py)."""

from __future__ import annotations

import signal
from pathlib import Path

try:
    from .children import run_pytest
except ImportError:
    from children import run_pytest  # type: ignore[no-redef]

TESTS = Path(__file__).resolve().parent


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_a_run_started_with_sigint_ignored_still_tests_ctrl_c(tmp_path: Path) -> None:
    # As `./scripts/test &` from a script starts it: SIGINT ignored, inherited by every
    # process below. The magic's Ctrl-C test sends its own process a real SIGINT; it
    # failed ("DID NOT RAISE KeyboardInterrupt") in such a run before the conftest put
    # Python's handler back.
    p = run_pytest(
        str(TESTS / "test_magics_review.py"),
        "-k",
        "interrupted_put",
        "-q",
        f"--basetemp={tmp_path / 'base'}",
        cwd=TESTS.parent,
        preexec_fn=_ignore_sigint,
    )
    assert p.returncode == 0 and "1 passed" in p.stdout, p.stdout[-3000:] + p.stderr[-2000:]
