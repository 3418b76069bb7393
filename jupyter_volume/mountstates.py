"""The lifetime of mount states: the folders under ``<state dir>/mounts``.

Each mount of a folder keeps a state folder (named by a hash of store, volume and
path) holding its lock, ``mount.json`` (which folder it is for) and its SQLite index
(a row per file: 10,000 files are a few MB). Unmounting keeps it, so mounting the same
folder again resumes where it stopped. Nothing else used to remove it, so every
folder ever mounted left its state behind: a notebook that mounts into a fresh
temporary folder each run grows the state dir by one index per run, for good.

A state is useless once its folder is gone or belongs to another mount: a mount of
that path would start afresh anyway (``Mount._stale_state``). Every new mount sweeps
such states (:func:`other_states`):

* a folder that now carries another state's mark (``user.jupyter_volume.mount``): it
  was emptied and mounted for another volume, so this state can never describe it
  again; removed at once;
* a folder there without a mark although the state marked it (``"marked": true`` in
  its ``mount.json``): a folder made again at that path, which a mount would start
  afresh in; removed at once;
* a folder that is missing (or, for a state that marked it, now on a file system
  without extended attributes, mounted over the path): removed once the state has been unused for
  :data:`MISSING_FOR` (a day), so a folder that is only away for a while (renamed and
  renamed back, on a drive that is not plugged in) still resumes;
* a state whose lock is held (mounted now, here or in another process) is never
  touched, nor one without ``mount.json`` (being made, or kept by an older version).

Removal takes the state's lock, checks again, and renames the folder out of the way
(``.gone-...``) before deleting it, so no opener can lock a half-deleted state: an
opener that opened the old lock file sees that it is no longer the state's
(:func:`lock_state` compares inodes) and starts again with a fresh folder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import json
import math
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

#: The extended attribute that marks a mounted folder as its mount's (see Mount._mark_folder)
FOLDER_MARK = "user.jupyter_volume.mount"
#: A state whose folder is missing is removed once unused for this long (seconds).
MISSING_FOR = 24 * 3600.0
#: How long an opener waits for a lock held by a sweep (a sweep holds it for a check
#: and a rename) before it says the state is in use by another mount.
SWEEP_WAIT = 0.25
_GONE = ".gone-"


def lock_state(state: Path, busy: Callable[[], Exception]) -> IO[str]:
    """Make state folder ``state`` if needed and lock it for this mount; return the
    open lock file (held while mounted). Raises ``busy()`` if another mount holds it.

    A sweep may remove the folder between any two steps here; whatever lock file was
    opened then is not the state's any more, and the loop starts over.
    """
    deadline = time.monotonic() + SWEEP_WAIT
    for attempt in itertools.count():
        state.mkdir(parents=True, exist_ok=True)
        try:
            f = open(state / "lock", "a+")  # noqa: SIM115 - returned, held for the mount's life
        except FileNotFoundError:
            continue  # swept between the two calls: make it again
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = False
        except BlockingIOError:
            held = True
        # (a file system whose stat and fstat disagree on inodes would fail this every
        # time: after many tries the lock is taken as it is, as it always was)
        if attempt < 64 and not _is_current(f, state / "lock"):
            f.close()  # swept meanwhile: ours is a removed folder's lock
            continue
        if not held:
            return f
        f.close()
        if time.monotonic() >= deadline:
            raise busy()
        time.sleep(0.01)  # a sweep checking it, or a mount: look again shortly
    raise AssertionError("unreachable")


def _is_current(f: IO[str], path: Path) -> bool:
    """True if open file ``f`` is still the file at ``path``."""
    try:
        a, b = os.fstat(f.fileno()), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def other_states(
    mounts: Path, own: Path, now: float | None = None
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every state folder under ``mounts`` but ``own`` that says which folder it is for,
    with its ``mount.json``; dead ones (see the module docstring) are removed instead of
    yielded, and so are the leftovers of a removal that was cut off."""
    now = time.time() if now is None else now
    try:
        names = os.listdir(mounts)
    except OSError:
        return
    for name in names:
        d = mounts / name
        if name.startswith(_GONE):
            shutil.rmtree(d, ignore_errors=True)  # a removal cut off halfway
            continue
        if d == own:
            continue
        try:
            info = json.loads((d / "mount.json").read_text())
            str(info["path"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being made, or kept by an older version
        if _dead(d, info, now) and _remove(d, info, now):
            continue
        yield d, info


def forget(state: Path) -> bool:
    """Remove state folder ``state`` now if its folder is gone and nobody mounts it
    (for a mount into a temporary folder that its maker removed); True if it is gone."""
    try:
        info = json.loads((state / "mount.json").read_text())
        str(info["path"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return _remove(state, info, math.inf)


def _dead(d: Path, info: dict[str, Any], now: float) -> bool:
    """True if state ``d`` (``info``: its ``mount.json``) can never describe its folder
    again: the folder carries another state's mark, or no mark although this state
    marked it, or has been missing while the state went unused for :data:`MISSING_FOR`."""
    try:
        mark = os.getxattr(str(info["path"]), FOLDER_MARK)
    except (FileNotFoundError, NotADirectoryError):
        return now - _last_used(d) >= MISSING_FOR
    except OSError as e:
        # States that did not say they marked their folder (an older version's), or could
        # not mark it: cannot tell, keep them.
        if info.get("marked") is not True:
            return False
        if e.errno == errno.ENODATA:
            # no mark: a folder made again at that path (or restored by a copy that
            # drops extended attributes), which a mount would start afresh in
            return True
        if e.errno == errno.ENOTSUP:
            # a file system without extended attributes over the path, perhaps only for
            # a while (a drive mounted there): as for a missing folder
            return now - _last_used(d) >= MISSING_FOR
        return False
    except AttributeError:  # no xattr calls here (not Linux): cannot tell, keep it
        return False
    return mark != d.name.encode()


def _last_used(d: Path) -> float:
    """When state ``d`` last changed: its index is written by every commit and reload,
    ``mount.json`` by every mount."""
    newest = 0.0
    with contextlib.suppress(OSError), os.scandir(d) as it:
        for e in it:
            with contextlib.suppress(OSError):
                newest = max(newest, e.stat(follow_symlinks=False).st_mtime)
    return newest


def _remove(d: Path, info: dict[str, Any], now: float) -> bool:
    """Remove dead state ``d`` unless it is in use; True if it is gone."""
    try:
        f = open(d / "lock", "r+")  # noqa: SIM115 - closed below; never creates one
    except OSError:
        return False
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # mounted now
        if not _is_current(f, d / "lock") or not _dead(d, info, now):
            return False  # made afresh, or mounted and unmounted, since we looked
        gone = d.with_name(f"{_GONE}{d.name}-{secrets.token_hex(4)}")
        try:
            os.rename(d, gone)
        except OSError:
            return False
    shutil.rmtree(gone, ignore_errors=True)
    return True
