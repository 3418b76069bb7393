"""A change journal for a mounted folder: which paths may have changed since last asked.

On Linux it uses inotify (through ctypes: no dependency) with one watch per folder, so
a commit in a 1,000,000-file mount stats only the paths that were touched instead of
all of them. It is an optimisation, never the source of truth: when the kernel queue
overflows, a watch cannot be added (the per-user limit), or the platform has no
inotify, :meth:`Journal.take` answers "unknown" (``None``) and the caller falls back to a
full scan. Events are read without blocking when the mount asks, so no thread is needed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
from pathlib import Path

from ._inotify import (
    IN_ATTRIB,
    IN_CLOEXEC,
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_DELETE,
    IN_DELETE_SELF,
    IN_DONT_FOLLOW,
    IN_IGNORED,
    IN_ISDIR,
    IN_MODIFY,
    IN_MOVE_SELF,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_NONBLOCK,
    IN_ONLYDIR,
    IN_Q_OVERFLOW,
)
from ._inotify import libc as _libc

_MASK = (
    IN_MODIFY
    | IN_ATTRIB
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_ONLYDIR
    | IN_DONT_FOLLOW
)
_EVENT = struct.Struct("iIII")


class Journal:
    """Collects the relative paths touched under ``root`` since the last :meth:`take`.

    ``skip(rel_dir_name)`` says which folders not to watch (ignored ones).
    """

    def __init__(self, root: Path, skip=None) -> None:  # noqa: ANN001
        self.root = root
        self._skip = skip or (lambda rel: False)
        self._fd = -1
        self._wds: dict[int, str] = {}
        self._dirty: set[str] = set()
        self._lost = True  # until every folder is watched, we know nothing
        if _libc is None:
            return
        fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            return
        self._fd = fd
        self._lost = not self._watch_tree("")

    @property
    def active(self) -> bool:
        """True while the journal can name changes (inotify works here)."""
        return self._fd >= 0

    def _watch(self, rel: str) -> bool:
        path = os.path.join(self.root, rel) if rel else str(self.root)
        wd = _libc.inotify_add_watch(self._fd, os.fsencode(path), _MASK)  # type: ignore[union-attr]
        if wd < 0:
            err = ctypes.get_errno()
            if err in (errno.ENOENT, errno.ENOTDIR):
                return True  # gone already; its deletion is reported by the parent
            return False  # ENOSPC (watch limit) and friends: fall back to scans
        self._wds[wd] = rel
        return True

    def _watch_tree(self, rel: str) -> bool:
        if not self._watch(rel):
            return False
        base = os.path.join(self.root, rel) if rel else str(self.root)
        try:
            with os.scandir(base) as it:
                subdirs = [e.name for e in it if e.is_dir(follow_symlinks=False)]
        except OSError:
            return True
        for name in subdirs:
            sub = f"{rel}/{name}" if rel else name
            if self._skip(sub):
                continue
            if not self._watch_tree(sub):
                return False
        return True

    def _drain(self) -> None:
        if self._fd < 0:
            return
        while True:
            try:
                buf = os.read(self._fd, 1 << 20)
            except BlockingIOError:
                return
            except OSError:
                self._lost = True
                return
            pos = 0
            while pos + _EVENT.size <= len(buf):
                wd, mask, _cookie, length = _EVENT.unpack_from(buf, pos)
                name = (
                    buf[pos + _EVENT.size : pos + _EVENT.size + length]
                    .rstrip(b"\0")
                    .decode(errors="surrogateescape")
                )
                pos += _EVENT.size + length
                if mask & IN_Q_OVERFLOW:
                    self._lost = True
                    continue
                if mask & IN_IGNORED:
                    self._wds.pop(wd, None)
                    continue
                base = self._wds.get(wd)
                if base is None:
                    continue
                if mask & (IN_DELETE_SELF | IN_MOVE_SELF):
                    if base:
                        self._dirty.add(base)
                    else:
                        self._lost = True  # the mount folder itself went away
                    continue
                rel = f"{base}/{name}" if base and name else (name or base)
                if not rel:
                    continue
                self._dirty.add(rel)
                if mask & IN_ISDIR and mask & (IN_CREATE | IN_MOVED_TO) and not self._skip(rel):
                    # A new folder: watch it (and everything already inside it), and have the
                    # caller scan it whole, since files may have landed before the watch did.
                    if not self._watch_tree(rel):
                        self._lost = True

    def take(self) -> set[str] | None:
        """The paths touched since the last call, or None if unknown (scan everything).

        A returned folder path means "look at this folder and everything below it".
        """
        self._drain()
        if self._fd < 0 or self._lost:
            self._dirty.clear()
            if self._fd >= 0:
                # Start over: re-watch so the next interval can be journaled again.
                for wd in list(self._wds):
                    _libc.inotify_rm_watch(self._fd, wd)  # type: ignore[union-attr]
                self._wds.clear()
                self._drain_discard()
                self._lost = not self._watch_tree("")
            return None
        out, self._dirty = self._dirty, set()
        return out

    def requeue(self, paths: set[str] | None) -> None:
        """Give back paths from :meth:`take` that the caller could not finish with.

        ``None`` (the caller did a full scan) makes the next :meth:`take` answer "unknown"
        again, so nothing that changed before a failed scan or commit is ever dropped.
        """
        if paths is None:
            self._lost = True
        else:
            self._dirty.update(paths)

    def peek(self) -> bool | None:
        """True if something changed since the last :meth:`take` (None: unknown)."""
        self._drain()
        if self._fd < 0 or self._lost:
            return None
        return bool(self._dirty)

    def _drain_discard(self) -> None:
        try:
            while os.read(self._fd, 1 << 20):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        """Stop watching."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            self._wds.clear()
