"""Spare the garbage collector the objects a bulk step did not make.

A commit or reload of many files makes hundreds of thousands of small objects (tree
entries, rows, tuples). Each time they cross the collector's thresholds it runs, and a
run of the oldest generation walks every object the process holds: with boto3 loaded
(its service models alone are several hundred thousand objects), that walking was
about 15 % of a 10,000-file commit's time and a tenth of a mount's.

:func:`bulk` freezes the objects that exist when the step starts (``gc.freeze``: the
collector leaves them alone) and unfreezes them when the last step running in the
process ends. Cycles made during the step are still collected; the process's own
garbage waits at most until the step ends. A process that already freezes objects for
its own reasons (a pre-fork server does), or that turned the collector off, is left as
it is.
"""

from __future__ import annotations

import functools
import gc
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_lock = threading.Lock()
_depth = 0  # bulk steps running in this process
_froze = False  # whether the first of them froze (and the last must unfreeze)


@contextmanager
def bulk() -> Iterator[None]:
    """Run the body with the objects that exist now out of the collector's way."""
    global _depth, _froze
    with _lock:
        if _depth == 0:
            _froze = gc.isenabled() and gc.get_freeze_count() == 0
            if _froze:
                gc.freeze()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _froze:
                gc.unfreeze()
                _froze = False


def bulk_step(fn: F) -> F:
    """Decorate a method or function so that it runs inside :func:`bulk`."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with bulk():
            return fn(*args, **kwargs)

    return run  # type: ignore[return-value]


def _after_fork() -> None:
    # A child forked while another thread was inside a step has no such thread: it starts
    # with nothing frozen by us (and a lock nobody holds).
    global _lock, _depth, _froze
    _lock = threading.Lock()
    if _depth and _froze:
        gc.unfreeze()
    _depth, _froze = 0, False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
