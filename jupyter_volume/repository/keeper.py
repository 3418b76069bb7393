"""Keeping the uploads of a commit in the making young, so that gc leaves them alone.

gc deletes an object that no commit references (an orphan, such as the uploads of a
writer that crashed) once the store says it is older than the volume's grace period.
A writer still staging (a 200 GB upload, a commit waiting its turn) holds uploads that
no record names yet, and without help its first packs would look like orphans once
the grace period has passed.

Every :class:`~.repo.Writer` registers here while it stages. One thread touches
(:meth:`Store.touch`: the same bytes, a new modification time) each of its uploads once
that is a third of the grace period old, and a commit checks, just before it claims its
log slot, that each upload was made or last touched less than two thirds of the grace
period ago (:func:`check`). Ages count from the start of each request on the monotonic
clock, so the object's time on the store is never older than the age counted here. An
upload not touched in time (the process was suspended; the store refused the touch) is
never touched again: gc may have found it old in a listing already and may delete it
at any moment, so its commit refuses rather than publish a reference to it. The third
of the grace period left over is the margin for clocks (gc compares the store's times
with its own clock) and for the time between gc's listing and its deletes.

A grace period of 0 (``gc(grace=0)``: nobody else is writing) protects nothing, and is
not checked.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from typing import TYPE_CHECKING

from ..errors import CollectedMeanwhileError

if TYPE_CHECKING:
    from .repo import Writer

TICK_MAX = 10.0  # seconds between passes at most (a pass looks at every writer)
CHECK_FLOOR = 1.0  # a commit whose uploads are all younger than this skips the check

_lock = threading.Lock()
_writers: weakref.WeakSet[Writer] = weakref.WeakSet()
_thread: threading.Thread | None = None
_wake = threading.Event()  # a writer made its first upload: look at its grace period now


def register(writer: Writer) -> None:
    """Keep ``writer``'s uploads young until :func:`unregister` (or until it is gone);
    called once its first upload has landed."""
    global _thread
    with _lock:
        _writers.add(writer)
        if _thread is None:
            _thread = threading.Thread(target=_run, name="jupyter-volume-keeper", daemon=True)
            _thread.start()
    _wake.set()


def unregister(writer: Writer) -> None:
    """``writer``'s commit is over (published, refused or abandoned)."""
    with _lock:
        _writers.discard(writer)


def check(writer: Writer | None) -> None:
    """Refuse (CollectedMeanwhileError, a ConflictError) a commit whose uploads may
    have been deleted by gc."""
    if writer is None or not writer.uploads:
        return
    age = time.monotonic() - min(writer.uploads.values())
    if age < CHECK_FLOOR:
        return
    grace = writer.repo.gc_grace()
    if grace > 0 and age > 2 * grace / 3:
        raise CollectedMeanwhileError(
            f"this commit's data was uploaded {age:.0f} s ago and could not be kept "
            f"fresh (was the process suspended?): past two thirds of the volume's gc "
            f"grace period ({grace:g} s), gc may have deleted it. Nothing was "
            "committed; commit again (a mount retries by itself)"
        )


def _after_fork() -> None:
    # the child has no keeper thread, whatever the parent had; its writers are its own
    global _lock, _writers, _thread, _wake
    _lock, _writers, _thread, _wake = threading.Lock(), weakref.WeakSet(), None, threading.Event()


os.register_at_fork(after_in_child=_after_fork)


def _run() -> None:
    global _thread
    while True:
        with _lock:
            if not _writers:
                _thread = None
                return
            writers = [w for w in _writers if w.uploads]
        tick = TICK_MAX
        for w in writers:
            try:
                tick = min(tick, _keep(w))
            except Exception:  # noqa: BLE001 - the store is out of reach: check() decides
                pass
        _wake.wait(tick)
        _wake.clear()


def _keep(w: Writer) -> float:
    """Touch ``w``'s uploads that are a third of the grace period old; the next pass's
    delay (a sixth of it, so that each upload is touched well before two thirds)."""
    grace = w.repo.gc_grace()
    if grace <= 0:
        return TICK_MAX
    for key, made in list(w.uploads.items()):
        start = time.monotonic()
        if not grace / 3 < start - made <= 2 * grace / 3:
            continue  # young still, or too late: gc may have listed it as old already
        try:
            w.repo.store.touch(key)
        except Exception:  # noqa: BLE001 - deleted, or the store is down: it ages on
            continue
        w.uploads[key] = start
    return max(grace / 6, 0.05)
