"""A local, size-bounded cache of chunks, shared by every volume and process of a user
(and :class:`SizeBound`, the bound it shares with the repository's object cache).

Chunks are immutable and named by the blake3 hash of their bytes, so one cache serves
all volumes and stores, and an entry is verified simply by hashing it. Files are
written atomically (temp file + rename); eviction removes the least recently used
files (by mtime, refreshed on each hit) once the cache grows past ``max_bytes``.
Losing the cache at any moment is harmless: it only saves downloads.

The bound holds for the folder, not per process: every writer (each process, and each
cache object of one process: a mount's and :meth:`Volume.open`'s) adds what it wrote to
one counter file beside the folder, under an ``flock``, and whoever takes the total past
the bound prunes. Names that are not a blake3 hex digest are refused before any file is
touched: a chunk hash comes from a tree node, and a hostile volume could name
``../../.bashrc`` (a damaged entry is deleted, so that would delete the user's file).
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

from .._libc import write_all
from .codec import hash_bytes, is_chunk_hash

DEFAULT_MAX_BYTES = 2 << 30


class ChunkCache:
    """``get(hash) -> bytes | None`` and ``put(hash, bytes)`` over a folder."""

    def __init__(self, root: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self._bound = SizeBound(self.root, self.max_bytes)
        self._dir = str(self.root)
        self._made: set[str] = set()  # subfolders known to exist
        self._token = uuid.uuid4().hex[:16]  # temp names: unique per instance, then a counter
        self._counter = itertools.count()

    def _path(self, h: str) -> Path:
        return self.root / h[:2] / h

    def get(self, h: str) -> bytes | None:
        """The chunk ``h`` if cached and intact, else None (a damaged entry is dropped)."""
        if not is_chunk_hash(h):
            return None
        p = os.path.join(self._dir, h[:2], h)
        try:
            with open(p, "rb") as f:
                data = f.read()
        except OSError:
            return None
        if hash_bytes(data) != h:
            with contextlib.suppress(OSError):
                os.unlink(p)
            return None
        try:
            os.utime(p)  # mark as recently used
        except OSError:
            pass
        return data

    def put(self, h: str, data: bytes) -> None:
        """Cache chunk ``h`` (best effort: errors such as a full disk are ignored)."""
        if self.max_bytes <= 0 or len(data) > self.max_bytes // 4 or not is_chunk_hash(h):
            return
        sub = os.path.join(self._dir, h[:2])
        p = os.path.join(sub, h)
        tmp = os.path.join(sub, f".tmp-{self._token}-{next(self._counter)}")
        try:
            if sub not in self._made:
                os.makedirs(sub, exist_ok=True)
                self._made.add(sub)
            # O_EXCL on a fresh name; the rename makes the entry appear whole or not at all
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                write_all(fd, data)
            finally:
                os.close(fd)
            os.replace(tmp, p)
        except OSError:
            self._made.discard(sub)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return
        self._bound.added(len(data))

    def prune(self) -> int:
        """Evict least recently used entries until the cache fits; return bytes removed."""
        return self._bound.prune()


class SizeBound:
    """Keeps the files under ``root`` at most ``max_bytes`` in all. Call :meth:`added`
    after writing a file there; past the bound the least recently used files (by
    mtime: readers refresh it on each hit) are removed until three quarters are left.

    The running total lives in a counter file beside the folder (``.<name>.usage``),
    updated under an ``flock`` by every writer of the folder, in every process: a
    process that counted only its own writes let N writers fill the folder to N times
    the bound. A missing or unreadable counter is rebuilt by walking the folder."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._usage = str(self.root.parent / f".{self.root.name}.usage")
        self._added = 0  # bytes put since the last size check (without a counter file)
        self._size: int | None = None

    @contextlib.contextmanager
    def _counter(self) -> Iterator[int | None]:
        """The counter file, open and locked; None where it cannot be (no locks on some
        network file systems): this process then counts alone."""
        try:
            fd = os.open(self._usage, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:
            yield None
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:
                locked = False
            else:
                locked = True
            yield fd if locked else None
        finally:
            os.close(fd)  # releases the flock

    @staticmethod
    def _store(fd: int, total: int) -> None:
        data = b"%d" % total
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))

    def added(self, n: int) -> None:
        """``n`` bytes were written under the root (prunes when that passes the bound)."""
        with self._lock, self._counter() as fd:
            if fd is not None:
                try:
                    raw = os.pread(fd, 32, 0)
                    try:
                        total = int(raw) if raw else None
                    except ValueError:
                        total = None  # damaged: count again
                    if total is None or total < 0:
                        total = self._prune_locked(prune=False)[0]  # includes the new file
                    else:
                        total += n
                    if total > self.max_bytes:
                        total = self._prune_locked()[0]
                    self._store(fd, total)
                    return
                except OSError:
                    pass  # the counter cannot be used: count alone
            self._added += n
            if self._size is None or self._size + self._added > self.max_bytes:
                self._prune_locked()

    def prune(self) -> int:
        """Remove least recently used files until the folder fits; return bytes removed."""
        with self._lock, self._counter() as fd:
            left, removed = self._prune_locked()
            if fd is not None:
                with contextlib.suppress(OSError):
                    self._store(fd, left)
            return removed

    def _scan(self) -> tuple[list[tuple[float, int, str]], int]:
        entries = []
        total = 0
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                p = os.path.join(dirpath, name)
                try:
                    st = os.stat(p)
                except OSError:
                    continue
                entries.append((st.st_mtime, st.st_size, p))
                total += st.st_size
        return entries, total

    def _prune_locked(self, prune: bool = True) -> tuple[int, int]:
        """Walk the folder, remove least recently used files if it is past the bound;
        return the bytes left and removed (callers hold ``_lock``, and the counter's
        flock if any)."""
        entries, total = self._scan()
        removed = 0
        if prune and total > self.max_bytes:
            target = self.max_bytes * 3 // 4  # leave headroom so we do not prune on every put
            for _mtime, size, p in sorted(entries):
                if total - removed <= target:
                    break
                try:
                    os.unlink(p)
                    removed += size
                except OSError:
                    continue
        self._size = total - removed
        self._added = 0
        return total - removed, removed
