"""Temporary folders that a killed process does not leave behind for good.

Uploads wait in a temporary folder until they are committed: the widget's chunks in
the kernel (``widgets/upload.py``), the sidebar's in the Jupyter server
(``server/engine.py``). Each process removes its folders when it ends normally
(``atexit``), but a process killed outright (out of memory, ``kill -9``, a crashed
kernel that JupyterLab restarts) cannot, and its folder, holding up to a whole upload's
bytes, stayed in the temp folder until the machine was rebooted.

So each such folder holds an ``.owner`` file that its process keeps locked (``flock``)
for as long as the folder is in use; the kernel releases the lock when the process
ends, however it ends. Making a new folder of the same kind first removes every folder
of that kind whose ``.owner`` lock is free (:func:`sweep`). The lock file is locked
before it gets its name, so a folder being made (no ``.owner`` yet) is never taken for
an abandoned one; a folder without one (made by an older version) is left alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO

_OWNER = ".owner"


class Scratch:
    """A temporary folder (:attr:`path`) owned by this process while :attr:`owner` is
    open. :meth:`remove` deletes it."""

    def __init__(self, path: Path, owner: IO[bytes]) -> None:
        self.path = path
        self._owner = owner

    def remove(self) -> None:
        """Delete the folder and everything in it (idempotent)."""
        shutil.rmtree(self.path, ignore_errors=True)
        with contextlib.suppress(OSError):
            self._owner.close()


def make(prefix: str, dir: str | os.PathLike[str] | None = None) -> Scratch:
    """A new temporary folder named ``<prefix>...`` in ``dir`` (default: the system's
    temp folder), after removing the folders of that prefix whose process is gone."""
    sweep(prefix, dir)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=dir))
    fd, tmp = tempfile.mkstemp(prefix=_OWNER + "-", dir=path)
    owner = os.fdopen(fd, "r+b")
    try:
        fcntl.flock(owner, fcntl.LOCK_EX)
        os.rename(tmp, path / _OWNER)  # named only once locked
    except BaseException:
        owner.close()
        shutil.rmtree(path, ignore_errors=True)
        raise
    return Scratch(path, owner)


def sweep(prefix: str, dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove the folders named ``<prefix>...`` in ``dir`` whose owning process has
    ended (their ``.owner`` lock is free); return them."""
    base = Path(dir if dir is not None else tempfile.gettempdir())
    removed: list[Path] = []
    try:
        names = [n for n in os.listdir(base) if n.startswith(prefix)]
    except OSError:
        return removed
    for name in names:
        folder = base / name
        try:
            owner = open(folder / _OWNER, "rb")  # noqa: SIM115 - closed below
        except OSError:
            continue  # being made, another user's, or made by an older version
        with owner:
            try:
                fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # its process is alive
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
