"""A local, size-bounded cache of chunks, shared by every volume and process of a user.

Chunks are immutable and named by the blake3 hash of their bytes, so one cache serves
all volumes and stores, and an entry is verified simply by hashing it. Files are
written atomically (temp file + rename); eviction removes the least recently used
files (by mtime, refreshed on each hit) once the cache grows past ``max_bytes``.
Losing the cache at any moment is harmless: it only saves downloads.
"""

from __future__ import annotations

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
        self._lock = threading.Lock()
        self._added = 0  # bytes put since the last size check
        self._size: int | None = None

    def _path(self, h: str) -> Path:
        return self.root / h[:2] / h

    def get(self, h: str) -> bytes | None:
        """The chunk ``h`` if cached and intact, else None (a damaged entry is dropped)."""
        p = self._path(h)
        try:
            data = p.read_bytes()
        except OSError:
            return None
        if hash_bytes(data) != h:
            p.unlink(missing_ok=True)
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
        p = self._path(h)
        if p.exists():
            return
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_name(f".tmp-{uuid.uuid4().hex}")
            tmp.write_bytes(data)
            os.replace(tmp, p)
        except OSError:
            return
        with self._lock:
            self._added += len(data)
            check = self._size is None or self._size + self._added > self.max_bytes
        if check:
            self.prune()

    def prune(self) -> int:
        """Evict least recently used entries until the cache fits; return bytes removed."""
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
