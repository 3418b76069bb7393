"""Make a bulk step cheap for the interpreter: the collector and the thread switch.

A commit or reload of many files makes hundreds of thousands of small objects (tree
entries, rows, tuples), on several threads that mostly make short system calls.

**The collector.** Each time the new objects cross the collector's thresholds it runs,
and a run of the oldest generation walks every object the process holds: with boto3
loaded (its service models alone are several hundred thousand objects), that walking
was about 15 % of a 10,000-file commit's time and a tenth of a mount's. :func:`bulk`
freezes the objects that exist when the step starts (``gc.freeze``: the collector
leaves them alone) and unfreezes them when the last step running in the process ends.
Cycles made during the step are still collected; the process's own garbage waits at
most until the step ends. A process that already freezes objects for its own reasons
(a pre-fork server does), or that turned the collector off, is left as it is.

The young generation is also collected less often during a step: every
``GC_THRESHOLD`` new objects instead of Python's 700. At 700, a 10,000-file mount ran
the collector about 200 times and spent 22-34 ms in it (of about 0.4 s): the entries
and rows of a batch outlived many young collections and were walked again in the
older generations. At 20,000 it runs 13 times, for 6-7 ms; a 10,000-file commit's
9-10 ms fall to 2 ms. The cost: cyclic garbage made during a step can wait for up to
that many new objects before it is freed.

**The thread switch.** A thread that comes back from a system call needs the GIL, and
waits for a thread running Python code to give it up: by default after 5 ms
(``sys.getswitchinterval``). A mount writes its files on two threads while another
fetches and checks the next batch in Python: each create, write and close that
returned while the fetching thread held the GIL waited up to 5 ms. During a bulk step
the interval is at most ``SWITCH_INTERVAL`` (a 10,000-file mount from SeaweedFS: 0.402 s
to 0.382 s, the median of 12); the last step to end puts the process's own value back,
unless someone changed it meanwhile.
"""

from __future__ import annotations

import functools
import gc
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_lock = threading.Lock()
_depth = 0  # bulk steps running in this process
_froze = False  # whether the first of them froze (and the last must unfreeze)
#: the GIL switch interval during a bulk step, in seconds (Python's default is 0.005)
SWITCH_INTERVAL = 0.001
_switch: float | None = None  # the interval the first step lowered (to put back), if it did
#: the collector's threshold for its youngest generation during a bulk step (Python: 700)
GC_THRESHOLD = 20_000
_threshold: tuple[int, int, int] | None = None  # the thresholds the first step raised, if it did


@contextmanager
def bulk() -> Iterator[None]:
    """Run the body with the objects that exist now out of the collector's way, the
    young generation collected every ``GC_THRESHOLD`` new objects, and the GIL handed
    over at least every ``SWITCH_INTERVAL`` seconds."""
    global _depth, _froze, _switch, _threshold
    with _lock:
        if _depth == 0:
            _froze = gc.isenabled() and gc.get_freeze_count() == 0
            if _froze:
                gc.freeze()
                t = gc.get_threshold()
                _threshold = t if 0 < t[0] < GC_THRESHOLD else None
                if _threshold is not None:
                    gc.set_threshold(GC_THRESHOLD, *t[1:])
            before = sys.getswitchinterval()
            _switch = before if before > SWITCH_INTERVAL else None
            if _switch is not None:
                sys.setswitchinterval(SWITCH_INTERVAL)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _end()


def _end() -> None:
    """Undo what the first step did (called with ``_lock`` held, or in a forked child)."""
    global _froze, _switch, _threshold
    if _froze:
        gc.unfreeze()
        _froze = False
    if _threshold is not None and gc.get_threshold() == (GC_THRESHOLD, *_threshold[1:]):
        gc.set_threshold(*_threshold)
    _threshold = None
    # (set in microseconds: what comes back may differ from the float given by rounding)
    if _switch is not None and abs(sys.getswitchinterval() - SWITCH_INTERVAL) < 1e-7:
        sys.setswitchinterval(_switch)
    _switch = None


def bulk_step(fn: F) -> F:
    """Decorate a method or function so that it runs inside :func:`bulk`."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with bulk():
            return fn(*args, **kwargs)

    return run  # type: ignore[return-value]


def _after_fork() -> None:
    # A child forked while another thread was inside a step has no such thread: it starts
    # with nothing frozen by us, the process's switch interval, and a lock nobody holds.
    global _lock, _depth
    _lock = threading.Lock()
    if _depth:
        _end()
    _depth = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
