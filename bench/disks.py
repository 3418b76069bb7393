"""A fresh, empty ext4 file system for each tool's files in (b): the same disk for all.

Creating 10,000 files costs the kernel more the more files the file system already
holds and the more it deleted in the last minutes (ext4 skips recently freed inodes one
by one). Over a (b) run the tools leave some 70,000 files a repetition behind, so
whichever tool ran later found a slower disk: in ``2026-12-06-vm-b-4`` the floor for
creating 10,000 files went from 0.24 s in the first repetition to 0.35 s in the last,
and the tool that ran first in each repetition always met the fastest one.

:class:`FreshDisks` gives each tool a file system of its own, made just before its
timed step: an image file in ``/dev/shm`` (memory), ``mkfs.ext4`` with every inode table
written at once (no lazy initialisation thread working in the background of a timed
step) and without a journal (as this project's machine's root file system is made),
mounted on a loop device. Unmounted and deleted once the tool's files were checked.

It needs root (``mount``) and loop devices; :func:`unavailable` says why not, and the
bench then keeps every tool's files in its scratch folder, as before, and records which
it did.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

#: where the images live: memory, so making and dropping one touches no disk
IMAGE_DIR = Path("/dev/shm")
#: large enough for a tool's 10,000 files and its own (DVC's cache doubles them)
IMAGE_BYTES = 1 << 30
MKFS = ["mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-E", "lazy_itable_init=0"]


def unavailable() -> str | None:
    """Why fresh disks cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "not root (mount needs root)"
    for tool in ("mkfs.ext4", "mount", "umount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not IMAGE_DIR.is_dir():
        return f"{IMAGE_DIR} does not exist"
    return None


class FreshDisks:
    """Fresh ext4 file systems mounted below ``parent``; :meth:`close` drops any left."""

    def __init__(self, parent: Path) -> None:
        self.parent = parent
        self._made: dict[Path, Path] = {}  # mount point -> image

    def make(self, name: str) -> Path:
        """A new, empty file system mounted at ``parent/name``; returns a folder path in
        it that does not exist yet (each tool makes its own destination)."""
        point = self.parent / name
        point.mkdir(parents=True)
        image = IMAGE_DIR / f"jv-bench-disk-{uuid.uuid4().hex[:12]}.img"
        with open(image, "wb") as f:
            f.truncate(IMAGE_BYTES)
        try:
            subprocess.run([*MKFS, str(image)], check=True, capture_output=True)
            subprocess.run(
                ["mount", "-o", "loop", str(image), str(point)], check=True, capture_output=True
            )
        except BaseException:
            image.unlink(missing_ok=True)
            point.rmdir()
            raise
        self._made[point] = image
        return point / "d"

    def drop(self, path: Path) -> None:
        """Unmount the file system holding ``path`` (what :meth:`make` gave), delete it."""
        point = path.parent
        image = self._made.pop(point)
        subprocess.run(["umount", str(point)], check=True, capture_output=True)
        image.unlink(missing_ok=True)
        point.rmdir()

    def owns(self, path: Path) -> bool:
        """Whether ``path`` is a folder :meth:`make` gave (its file system still made)."""
        return path.parent in self._made

    def close(self) -> None:
        """Drop every file system still mounted (a run stopped halfway)."""
        for point in list(self._made):
            subprocess.run(["umount", "-l", str(point)], check=False, capture_output=True)
            self._made.pop(point).unlink(missing_ok=True)
