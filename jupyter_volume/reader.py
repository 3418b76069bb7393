"""A seekable, read-only file over one file of one commit: ranged reads by chunk.

A stored file is a list of content-defined chunks (``(hash, length)`` pairs), each kept
compressed inside a pack. :class:`VolumeReader` maps a byte range to the chunks that
cover it (a binary search over their start offsets) and fetches only those: through the
local chunk cache first, then with ranged GETs into the packs, neighbouring chunks of a
pack coalesced into one request. Every chunk is checked against its blake3 hash before
it is returned or cached.

Access patterns decide how much is fetched:

* a random read (a Parquet footer, a Zarr chunk, ``tail``) fetches exactly the covering
  chunks, and keeps them in the local chunk cache for the next reader;
* a read that starts where the previous one ended is sequential: from the second such
  read on, the next window (growing from 4 MiB to 32 MiB) is fetched in the background
  while the caller consumes the current one. Streamed windows are not written to the
  local chunk cache, so one big scan does not evict what random readers use.

The reader holds the file's entry (its chunk list) from the moment it is opened, so
every byte it returns comes from that one commit, whatever is committed meanwhile.

Layer: sits beside :mod:`jupyter_volume.volume` (which opens readers with
:meth:`~jupyter_volume.Volume.open`) and uses only the repository's public methods.
"""

from __future__ import annotations

import bisect
import io
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from typing import Any

from ._pools import SharedPool
from .errors import InvalidError
from .repository import Entry, Repository
from .repository.codec import hash_bytes

__all__ = ["VolumeReader", "local_chunk_cache"]

WINDOW_MIN = 4 << 20  # first read-ahead window of a sequential reader
WINDOW_MAX = 32 << 20  # the window doubles up to this
MEMORY_MAX = 96 << 20  # decoded chunks a reader keeps in memory (about 3 windows)
BIG_READ = MEMORY_MAX // 2  # reads larger than this bypass the in-memory chunks

# Background read-ahead runs here, not on the repository's download pool: a window task
# waits for GETs that run on that pool, and must never take one of its threads.
_prefetch_pool = SharedPool(4, "jv-readahead")

_caches: dict[tuple[str, int], Any] = {}
_caches_lock = threading.Lock()
#: How long the configured chunk cache size is believed: reading the config files on
#: every open was a third of a cached 4 KiB ``cat_file`` (0.5 ms of 1.4 ms).
CONFIG_REREAD = 5.0
_configured: tuple[int, float] | None = None  # (chunk_cache_bytes, when it was read)


def local_chunk_cache() -> Any:
    """The local chunk cache shared with mounts (None when configured off).

    Same folder and size bound as a mount uses: ``<cache dir>/chunks``, bounded by
    ``c.VolumeConfig.chunk_cache_bytes``.
    """
    from .paths import cache_dir
    from .repository.chunkcache import ChunkCache

    size = _chunk_cache_bytes()
    if size <= 0:
        return None
    root = str(cache_dir() / "chunks")
    with _caches_lock:
        cache = _caches.get((root, size))
        if cache is None:
            cache = _caches[(root, size)] = ChunkCache(cache_dir() / "chunks", size)
        return cache


def _chunk_cache_bytes() -> int:
    """``c.VolumeConfig.chunk_cache_bytes``, read again at most every ``CONFIG_REREAD``
    seconds (a changed config file counts for the readers opened after that)."""
    global _configured
    from .config import load_config
    from .repository.chunkcache import DEFAULT_MAX_BYTES

    now = time.monotonic()
    known = _configured
    if known is not None and now - known[1] < CONFIG_REREAD:
        return known[0]
    try:
        size = int(getattr(load_config(), "chunk_cache_bytes", DEFAULT_MAX_BYTES))
    except Exception:  # a broken config file must not make reads fail
        size = DEFAULT_MAX_BYTES
    _configured = (size, now)
    return size


class VolumeReader(io.BufferedIOBase):
    """A seekable binary file reading one file of one commit (see the module docstring).

    Get one with :meth:`jupyter_volume.Volume.open` (or ``fsspec.open("volume://...")``).
    Besides the usual ``read``/``seek``/``tell``/``readline``/``peek`` (and iterating
    over lines), :meth:`read_range` and :meth:`read_ranges` read byte ranges without
    moving the position.

    A reader opened through ``volume://`` pickles: unpickled (in another process, a dask
    worker), it opens the same commit of the same file again at the same position. One
    from :meth:`~jupyter_volume.Volume.open` does not (pickling raises TypeError).

    Example::

        with vol.open("data/big.parquet") as f:
            f.seek(-8, 2)
            footer = f.read(8)
    """

    def __init__(
        self,
        repo: Repository,
        entry: Entry,
        path: str,
        *,
        volume: str = "",
        commit: int | None = None,
        chunk_cache: Any = None,
    ) -> None:
        super().__init__()
        self._repo = repo
        self._entry = entry
        #: the file's path in its volume
        self.path = path
        #: the volume's name
        self.volume = volume
        #: the commit every read of this file comes from
        self.commit = commit
        #: size in bytes
        self.size = entry.size
        self._cache = chunk_cache
        self._chunks: list[tuple[str, int]] = list(entry.chunks or [])
        self._starts: list[int] = []
        pos = 0
        for _h, n in self._chunks:
            self._starts.append(pos)
            pos += n
        self._pos = 0
        self._lock = threading.RLock()
        self._mem: OrderedDict[int, bytes] = OrderedDict()  # chunk index -> raw bytes
        self._mem_bytes = 0
        self._last_end = -1  # where the previous read ended
        self._streak = 0  # consecutive sequential reads
        self._window = WINDOW_MIN
        self._ahead: tuple[int, int, Future[list[bytes]]] | None = None  # (first, end, job)
        self._ahead_end = 0  # chunk index up to which data was fetched or is in flight
        #: ``(function, args)`` that opens this file again (what pickling stores, with the
        #: position); None: the reader cannot be pickled
        self.reopen: tuple[Any, tuple[Any, ...]] | None = None

    # -- identity -------------------------------------------------------------------------
    @property
    def name(self) -> str:  # type: ignore[override]
        """The file's path in its volume (as files opened with ``open()`` have a name)."""
        return self.path

    @property
    def content_id(self) -> str:
        """A hash that names the file's contents: equal for equal bytes, in any path or commit."""
        if self._entry.inline is not None:
            return hash_bytes(b"inline:" + self._entry.inline)
        return hash_bytes(",".join(h for h, _n in self._chunks).encode())

    def __repr__(self) -> str:
        at = f"@{self.commit}" if self.commit is not None else ""
        return f"<VolumeReader {self.volume}{at}:{self.path} size={self.size}>"

    # -- io.BufferedIOBase --------------------------------------------------------------------
    def readable(self) -> bool:
        """Always True."""
        return True

    def seekable(self) -> bool:
        """Always True."""
        return True

    def writable(self) -> bool:
        """Always False: readers never write."""
        return False

    def tell(self) -> int:
        """The current position."""
        self._check_open()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move the position (whence 0: from the start, 1: from here, 2: from the end)."""
        self._check_open()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.size + offset
        else:
            raise InvalidError(f"invalid whence {whence}: use 0, 1 or 2")
        if pos < 0:
            raise InvalidError(f"cannot seek to {pos}: before the start of {self.path}")
        self._pos = pos
        return pos

    def read(self, size: int | None = -1) -> bytes:
        """Read up to ``size`` bytes from the position (all that is left if negative)."""
        self._check_open()
        with self._lock:
            start = self._pos
            end = self.size if size is None or size < 0 else min(self.size, start + size)
            data = self._read(start, end)
            self._pos = start + len(data)
            return data

    def read1(self, size: int = -1) -> bytes:
        """Same as :meth:`read` (a reader has no separate raw layer)."""
        return self.read(size)

    def readinto(self, b: Any) -> int:
        """Read into a writable buffer; return the number of bytes read."""
        view = memoryview(b).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        """Everything from the position to the end."""
        return self.read(-1)

    def readline(self, size: int | None = -1) -> bytes:
        """One line from the position, its ``b"\\n"`` included (at most ``size`` bytes if
        ``size`` >= 0; the rest of the file if no newline follows). Lines are found in the
        chunks this reader holds, so iterating over the lines of a file fetches each
        chunk once (and reads ahead, as sequential :meth:`read` calls do)."""
        self._check_open()
        with self._lock:
            start = self._pos
            limit = self.size if size is None or size < 0 else min(self.size, start + size)
            if limit <= start:
                return b""
            inline = self._entry.inline
            if inline is not None:
                nl = inline.find(b"\n", start, limit)
                end = limit if nl < 0 else nl + 1
                self._pos = end
                return inline[start:end]
            parts: list[bytes] = []
            pos = start
            while pos < limit:
                i = bisect.bisect_right(self._starts, pos) - 1
                base = self._starts[i]
                raw = self._chunk(i)
                stop = min(base + len(raw), limit)
                nl = raw.find(b"\n", pos - base, stop - base)
                if nl >= 0:
                    stop = base + nl + 1
                parts.append(raw[pos - base : stop - base])
                pos = stop
                if nl >= 0:
                    break
            self._pos = pos
            return parts[0] if len(parts) == 1 else b"".join(parts)

    def peek(self, size: int = 0) -> bytes:
        """Bytes from the position on, without moving it: at least one unless at the end
        of the file, at most the rest of the chunk that holds the position (``size`` is a
        hint, as for :meth:`io.BufferedReader.peek`)."""
        self._check_open()
        with self._lock:
            pos = self._pos
            if pos >= self.size:
                return b""
            if self._entry.inline is not None:
                return self._entry.inline[pos:]
            i = bisect.bisect_right(self._starts, pos) - 1
            return self._chunk(i)[pos - self._starts[i] :]

    def __reduce__(self) -> Any:
        if self.reopen is None or self.closed:
            state = "closed" if self.closed else "opened with Volume.open"
            raise TypeError(
                f"{self!r} cannot be pickled ({state}): a file opened through fsspec "
                "(fs.open('volume://...')) can, and reopens its commit when unpickled"
            )
        fn, args = self.reopen
        return _reopen, (fn, args, self._pos)

    def close(self) -> None:
        """Drop what this reader holds in memory (a read-ahead in flight finishes unused)."""
        with self._lock:
            self._mem.clear()
            self._mem_bytes = 0
            self._ahead = None
        super().close()

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")

    # -- ranges -------------------------------------------------------------------------------
    def read_range(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of the file (clamped to its size); the position is unchanged."""
        self._check_open()
        with self._lock:
            return self._read(max(0, start), min(end, self.size))

    def read_ranges(self, ranges: Iterable[tuple[int, int]]) -> list[bytes]:
        """Several ``[start, end)`` ranges at once: the chunks all of them need are fetched
        together, coalesced into as few requests as the packs allow."""
        self._check_open()
        spans = [(max(0, s), min(e, self.size)) for s, e in ranges]
        with self._lock:
            if self._entry.inline is not None:
                return [self._entry.inline[s:e] if e > s else b"" for s, e in spans]
            need: set[int] = set()
            for s, e in spans:
                if e > s:
                    i, j = self._cover(s, e)
                    need.update(range(i, j))
            got = self._chunks_by_index(sorted(need), keep=True)
            out = []
            for s, e in spans:
                if e <= s:
                    out.append(b"")
                    continue
                i, j = self._cover(s, e)
                out.append(self._slice(got, i, j, s, e))
            return out

    def iter_range(self, start: int, end: int) -> Iterator[bytes]:
        """Yield bytes ``[start, end)`` in pieces, streaming: memory stays bounded however
        large the range (what :meth:`~jupyter_volume.Volume.read_file` uses)."""
        start, end = max(0, start), min(end, self.size)
        if end <= start:
            return
        if self._entry.inline is not None:
            yield self._entry.inline[start:end]
            return
        i, j = self._cover(start, end)
        pos = self._starts[i]
        for piece in self._repo.read_chunks(self._chunks[i:j], self.path):
            lo, hi = max(start - pos, 0), min(end - pos, len(piece))
            pos += len(piece)
            if hi > lo:
                yield piece if (lo, hi) == (0, len(piece)) else piece[lo:hi]

    # -- internals ------------------------------------------------------------------------------
    def _chunk(self, i: int) -> bytes:
        """Raw bytes of chunk ``i``, kept in memory: fetched as a :meth:`read` of that
        chunk would (so consecutive chunks count as sequential and are read ahead)."""
        raw = self._mem.get(i)
        if raw is not None:
            return raw
        base = self._starts[i]
        self._read(base, base + self._chunks[i][1])
        raw = self._mem.get(i)
        return raw if raw is not None else self._chunks_by_index([i], keep=True)[i]

    def _cover(self, start: int, end: int) -> tuple[int, int]:
        """Indexes ``[i, j)`` of the chunks holding bytes ``[start, end)`` (end > start)."""
        i = bisect.bisect_right(self._starts, start) - 1
        j = bisect.bisect_left(self._starts, end)
        return i, j

    def _slice(self, got: dict[int, bytes], i: int, j: int, start: int, end: int) -> bytes:
        base = self._starts[i]
        if j - i == 1:
            piece = got[i]
            return piece[start - base : end - base]
        # one copy: join memoryview slices rather than joining, then slicing
        starts = self._starts
        return b"".join(
            memoryview(got[k])[max(start - starts[k], 0) : end - starts[k]] for k in range(i, j)
        )

    def _read(self, start: int, end: int) -> bytes:
        if end <= start:
            return b""
        if self._entry.inline is not None:
            return self._entry.inline[start:end]
        sequential = start == self._last_end
        self._streak = self._streak + 1 if sequential else 0
        if not sequential:
            self._window = WINDOW_MIN
            self._ahead_end = 0  # read-ahead restarts from wherever the reader goes next
        self._last_end = end
        i, j = self._cover(start, end)
        big = end - start > BIG_READ
        got = self._chunks_by_index(range(i, j), keep=not big, cache=self._streak == 0)
        data = self._slice(got, i, j, start, end)
        if self._streak >= 1 and j < len(self._chunks):
            self._read_ahead(j)
        return data

    def _chunks_by_index(
        self, indexes: Iterable[int], *, keep: bool, cache: bool = True
    ) -> dict[int, bytes]:
        """Raw bytes of the chunks at ``indexes``: from memory, the read-ahead, the local
        chunk cache, or the store (coalesced), in that order. ``keep`` keeps them in
        memory; ``cache`` writes what came from the store to the local chunk cache."""
        got: dict[int, bytes] = {}
        missing: list[int] = []
        for k in indexes:
            raw = self._mem.get(k)
            if raw is not None:
                self._mem.move_to_end(k)
                got[k] = raw
            else:
                missing.append(k)
        if missing and self._ahead is not None:
            a, b, _job = self._ahead
            if any(a <= k < b for k in missing):
                self._absorb_ahead()  # waits for the window in flight
                still = []
                for k in missing:
                    raw = self._mem.get(k)
                    if raw is not None:
                        got[k] = raw
                    else:
                        still.append(k)
                missing = still
        if missing:
            local = self._cache if self._cache is not None else None
            fetch: list[int] = []
            for k in missing:
                raw = local.get(self._chunks[k][0]) if local is not None else None
                if raw is not None:
                    got[k] = raw
                else:
                    fetch.append(k)
            if fetch:
                pieces = self._repo.read_chunks([self._chunks[k] for k in fetch], self.path)
                for k, raw in zip(fetch, pieces, strict=True):
                    got[k] = raw
                    # the repository already cached it when a mount switched its cache on
                    if cache and local is not None and self._repo.chunk_cache is not local:
                        local.put(self._chunks[k][0], raw)
            if keep:
                for k in missing:
                    self._remember(k, got[k])
        self._ahead_end = max(self._ahead_end, max(got, default=-1) + 1)
        self._trim()
        return got

    def _absorb_ahead(self) -> None:
        """Move the read-ahead window's chunks into memory (waiting for it if needed).

        A window that failed (a store error) is dropped: its chunks are fetched again,
        directly, when a read needs them, and only a failure then is that read's error.
        Raised here, it failed a read whose own bytes had already arrived."""
        if self._ahead is None:
            return
        a, b, job = self._ahead
        self._ahead = None
        try:
            raws = job.result()
        except Exception:  # noqa: BLE001 - see above: the direct fetch reports it
            self._ahead_end = min(self._ahead_end, a)
            return
        for k, raw in zip(range(a, b), raws, strict=True):
            self._remember(k, raw)

    def _read_ahead(self, j: int) -> None:
        """Start fetching the window after chunk ``j`` in the background, unless one is
        in flight or enough is fetched already."""
        if self._ahead is not None:
            if not self._ahead[2].done():
                return
            self._absorb_ahead()
        first = max(j, self._ahead_end)
        while first < len(self._chunks) and first in self._mem:
            first += 1
        if first >= len(self._chunks):
            return
        # keep at most about one window fetched beyond what the caller has read
        if self._starts[first] - self._starts[j] >= self._window:
            return
        end = bisect.bisect_left(self._starts, self._starts[first] + self._window, lo=first + 1)
        end = max(end, first + 1)
        chunks = self._chunks[first:end]
        path = self.path
        repo = self._repo
        self._ahead = (
            first,
            end,
            _prefetch_pool.submit(lambda: list(repo.read_chunks(chunks, path))),
        )
        self._ahead_end = end
        self._window = min(self._window * 2, WINDOW_MAX)

    def _remember(self, k: int, raw: bytes) -> None:
        if k in self._mem:
            self._mem.move_to_end(k)
            return
        self._mem[k] = raw
        self._mem_bytes += len(raw)

    def _trim(self) -> None:
        """Forget the least recently used chunks beyond ``MEMORY_MAX`` (a read in progress
        holds its own references, so nothing it needs goes away)."""
        while self._mem_bytes > MEMORY_MAX and self._mem:
            _k, raw = self._mem.popitem(last=False)
            self._mem_bytes -= len(raw)


def _reopen(fn: Any, args: tuple[Any, ...], pos: int) -> Any:
    """An unpickled reader: ``fn(*args)`` opens the file again, at position ``pos``."""
    f = fn(*args)
    f.seek(pos)
    return f
