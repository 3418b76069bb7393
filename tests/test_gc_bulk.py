"""Bulk steps (a mount's commit, scan and reload) keep the garbage collector off the
objects that existed before them, collect the young generation less often and hand the
GIL over more often, and leave the process's collector and switch interval as they
found them."""

from __future__ import annotations

import gc
import io
import os
import sys
import threading
import uuid
import weakref
from pathlib import Path
from typing import Any

from jupyter_volume import Volume
from jupyter_volume._bulk import GC_THRESHOLD, SWITCH_INTERVAL, bulk


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def old_cycle() -> weakref.ref[Node]:
    """A cycle made now, that only the collector can free: is it still frozen later?"""
    return weakref.ref(Node())


def frozen(ref: weakref.ref[Node]) -> bool:
    """True if a full collection leaves the cycle ``ref`` alone (it is frozen). (The
    frozen count itself moves: frozen objects are still freed by reference counting.)"""
    gc.collect()
    return ref() is not None


def test_bulk_freezes_until_the_outermost_step_ends() -> None:
    assert gc.get_freeze_count() == 0
    a, b, c = old_cycle(), old_cycle(), old_cycle()
    with bulk():
        assert gc.get_freeze_count() > 0 and frozen(a)
        with bulk():
            assert frozen(b)
        assert frozen(c)  # the outer step still runs
    assert gc.get_freeze_count() == 0 and not frozen(c)


class OtherStep:
    """A bulk step on another thread, from :meth:`start` until :meth:`end`."""

    def __init__(self) -> None:
        self.inside, self.leave = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        with bulk():
            self.inside.set()
            self.leave.wait(30)

    def start(self) -> None:
        self.thread.start()
        assert self.inside.wait(30)

    def end(self) -> None:
        self.leave.set()
        self.thread.join(30)


def test_steps_on_two_threads_unfreeze_when_the_last_one_ends() -> None:
    other = OtherStep()
    cycle = old_cycle()
    with bulk():
        other.start()
    assert frozen(cycle)  # the other thread's step is still running
    other.end()
    assert gc.get_freeze_count() == 0 and not frozen(cycle)


def test_cycles_made_during_a_step_are_still_collected() -> None:
    with bulk():
        ref = weakref.ref(Node())
        gc.collect()
        assert ref() is None
    old = old_cycle()  # made before the next step: frozen during it
    with bulk():
        assert frozen(old)
    assert not frozen(old)  # collected once the step ended


def test_a_process_that_freezes_or_has_no_collector_is_left_alone() -> None:
    mine = old_cycle()
    gc.freeze()  # the process's own freeze (as a pre-fork server makes)
    try:
        with bulk():
            assert frozen(mine)
        assert frozen(mine)  # its frozen objects stay frozen
    finally:
        gc.unfreeze()
    assert not frozen(mine)
    gc.disable()
    try:
        with bulk():
            assert gc.get_freeze_count() == 0 and not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_child_forked_during_a_step_starts_with_nothing_frozen() -> None:
    before = sys.getswitchinterval()
    thresholds = gc.get_threshold()
    with bulk():
        pid = os.fork()
        if pid == 0:  # the child: only what is imported already is used
            code = 0 if gc.get_freeze_count() == 0 else 1
            code |= 0 if sys.getswitchinterval() == before else 8
            code |= 0 if gc.get_threshold() == thresholds else 16
            with bulk():
                code |= 0 if gc.get_freeze_count() > 0 else 2
            code |= 0 if gc.get_freeze_count() == 0 else 4
            os._exit(code)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def close(a: float, b: float) -> bool:
    return abs(a - b) < 1e-7  # the interval is kept in microseconds


def test_bulk_lowers_the_switch_interval_until_the_last_step_ends() -> None:
    before = sys.getswitchinterval()
    assert before > SWITCH_INTERVAL  # Python's default, 5 ms
    other = OtherStep()
    with bulk():
        assert close(sys.getswitchinterval(), SWITCH_INTERVAL)
        with bulk():
            assert close(sys.getswitchinterval(), SWITCH_INTERVAL)
        other.start()
    assert close(sys.getswitchinterval(), SWITCH_INTERVAL)  # the other step still runs
    other.end()
    assert sys.getswitchinterval() == before


def test_a_switch_interval_the_process_chose_is_kept() -> None:
    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.0002)  # lower already: left as it is
        with bulk():
            assert close(sys.getswitchinterval(), 0.0002)
        assert close(sys.getswitchinterval(), 0.0002)
        sys.setswitchinterval(0.01)
        with bulk():
            assert close(sys.getswitchinterval(), SWITCH_INTERVAL)
            sys.setswitchinterval(0.02)  # changed by the process during the step: kept
        assert close(sys.getswitchinterval(), 0.02)
    finally:
        sys.setswitchinterval(before)


def test_bulk_raises_the_young_threshold_until_the_last_step_ends() -> None:
    before = gc.get_threshold()
    assert before[0] < GC_THRESHOLD  # Python's default, 700
    other = OtherStep()
    with bulk():
        assert gc.get_threshold() == (GC_THRESHOLD, *before[1:])
        with bulk():
            assert gc.get_threshold()[0] == GC_THRESHOLD
        other.start()
    assert gc.get_threshold()[0] == GC_THRESHOLD  # the other step still runs
    other.end()
    assert gc.get_threshold() == before


def test_thresholds_the_process_chose_are_kept() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(GC_THRESHOLD * 2, 5, 5)  # higher already: left as it is
        with bulk():
            assert gc.get_threshold() == (GC_THRESHOLD * 2, 5, 5)
        assert gc.get_threshold() == (GC_THRESHOLD * 2, 5, 5)
        gc.set_threshold(500, 5, 5)
        with bulk():
            assert gc.get_threshold() == (GC_THRESHOLD, 5, 5)
            gc.set_threshold(900, 7, 7)  # changed by the process during the step: kept
        assert gc.get_threshold() == (900, 7, 7)
        with bulk():
            gc.set_threshold(GC_THRESHOLD, 3, 3)  # only the older generations: kept too
        assert gc.get_threshold() == (GC_THRESHOLD, 3, 3)
    finally:
        gc.set_threshold(*before)


def test_a_mounts_commit_and_reload_leave_nothing_frozen_and_the_interval_as_it_was(
    store: Any, tmp_path: Path
) -> None:
    vol = Volume.from_name(f"gc-{uuid.uuid4().hex[:8]}", store=store, create_if_missing=True)
    before = sys.getswitchinterval()
    thresholds = gc.get_threshold()
    m = vol.mount(tmp_path / "m", background=False)
    assert gc.get_freeze_count() == 0 and sys.getswitchinterval() == before
    for i in range(50):
        (tmp_path / "m" / f"f{i}.txt").write_text(str(i))
    assert m.commit() is not None
    assert gc.get_freeze_count() == 0
    with Volume.from_name(vol.name, store=store).batch_upload() as b:
        b.put_file(io.BytesIO(b"other"), "other.txt")
    m.reload()
    assert (tmp_path / "m/other.txt").read_bytes() == b"other"
    assert gc.get_freeze_count() == 0
    assert sys.getswitchinterval() == before
    assert gc.get_threshold() == thresholds
    m.unmount()
