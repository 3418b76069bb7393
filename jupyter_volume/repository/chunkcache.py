"""A local, size-bounded cache of chunks, shared by every volume and process of a user
(and :class:`SizeBound`, the bound it shares with the repository's object cache).

Chunks are immutable and named by the blake3 hash of their bytes, so one cache serves
all volumes and stores, and an entry is verified simply by hashing it. Files are
written atomically (temp file + rename); eviction removes the least recently used
files (by mtime, refreshed on each hit) once the cache grows past ``max_bytes``.
Losing the cache at any moment is harmless: it only saves downloads.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import uuid
from pathlib import Path

from .codec import hash_bytes

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
        if self.max_bytes <= 0 or len(data) > self.max_bytes // 4:
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
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
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
    Every writer of one folder in a process should share one instance."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._added = 0  # bytes put since the last size check
        self._size: int | None = None

    def added(self, n: int) -> None:
        """``n`` bytes were written under the root (prunes when that passes the bound)."""
        with self._lock:
            self._added += n
            check = self._size is None or self._size + self._added > self.max_bytes
        if check:
            self.prune()

    def prune(self) -> int:
        """Remove least recently used files until the folder fits; return bytes removed."""
        with self._lock:
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
            removed = 0
            if total > self.max_bytes:
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
            return removed
