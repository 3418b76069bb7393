"""Packs and index segments: where chunks live.

A pack is one store object holding many compressed chunks, so 10,000 small files cost
a handful of PUTs. Layout (all integers little-endian)::

    chunk bytes ... | header records | u32 record count | b"JVPK1\\0\\0\\0"

Each record is ``<32s I I I B``: chunk hash, offset, stored length, raw length, codec.
Packs are immutable and named by 32 random bytes (hex): unique, so that garbage
collection can never delete a pack that a writer has just written again.

An index segment maps chunk hash -> (pack, offset, stored length, raw length, codec)::

    b"JVIX1\\0\\0\\0" | u32 packs | 32-byte pack ids | u32 records | records ``<32s I I I I B``

Each commit writes one segment for the chunks it added; a checkpoint is a segment that
covers a whole volume. Both are immutable and named by their hash.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import secrets
import struct
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from typing import Any, NamedTuple

from .._libc import libc_function
from .._pools import SharedPool
from ..errors import CorruptionError
from .codec import CHUNK_MAX, CODEC_RAW, Window, compress_later

PACK_MAGIC = b"JVPK1\0\0\0"
INDEX_MAGIC = b"JVIX1\0\0\0"
PACK_TARGET = 16 << 20
#: Packs of one writer uploading at once. A store can hold a PUT back for a second or
#: more (SeaweedFS while it adds a volume, S3's slowest requests); with three on their
#: way and a wait for the oldest, such a pause stopped a big commit's uploads whole. Six,
#: each slot refilled as soon as any upload is done, keep the store busy meanwhile, for
#: about 50 MB more memory at most (bench/NOTES.md, forty-third pass).
MAX_IN_FLIGHT = 6
#: A writer's first pack is sealed at this size, each next one at twice the last, up to
#: ``PACK_TARGET``: the store starts on a big commit's bytes sooner.
FIRST_PACK = 2 << 20
#: Small chunks given raw (:meth:`PackWriter.add_raw`) are compressed in batches of about
#: this many bytes, at most ``ZSTD_IN_FLIGHT`` batches at a time (bounded memory).
ZSTD_BATCH = 1 << 20
ZSTD_IN_FLIGHT = 2
#: A pack's buffer: the target, one more chunk (at most 512 KiB, plus zstd's overhead on
#: incompressible data) and the records (49 bytes a chunk: 1.6 MB for 4 KiB chunks). A
#: pack of small chunks that compress very well has more records than that; its buffer
#: then grows (by copying, once or twice).
PACK_BUF = PACK_TARGET + (4 << 20)
#: Near the end of what a writer was told to expect (:meth:`PackWriter.expect`), a pack
#: is sealed once it holds this much and at least what is still to come.
TAIL_PACK = 4 << 20
#: A pack buffer is backed with memory ahead of use (:func:`_prefault`) only when at least
#: this much is expected: below it, the first touches cost a few milliseconds at most.
PREFAULT_MIN = 2 << 20
#: A pack writer's window (:meth:`PackWriter.window`) holds at least this much: one
#: chunk's look-ahead and 1 MiB more to read.
WINDOW_MIN = CHUNK_MAX + (1 << 20)
PACK_REC = struct.Struct("<32sIIIB")
INDEX_REC = struct.Struct("<32sIIIIB")
U32 = struct.Struct("<I")


# Linux's madvise(MADV_POPULATE_WRITE) (5.14 and later): back a range of memory with
# writable pages now, contents unchanged. Called through ctypes, which lets go of the GIL
# for the call (mmap.madvise would hold it).
_MADV_POPULATE_WRITE = 23
_prefault_pool = SharedPool(1, "jv-prefault")


_madvise: Any = libc_function("madvise", [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int])


def _populate(buf: mmap.mmap, nbytes: int) -> None:
    """Back the first ``nbytes`` of ``buf`` with memory, keeping what it holds (best
    effort: a kernel without MADV_POPULATE_WRITE says EINVAL, and nothing is done; short
    of memory, the pages come when they are written, as without this)."""
    global _madvise
    fn = _madvise
    if fn is None:
        return
    try:
        anchor = ctypes.c_char.from_buffer(buf)  # keeps buf mapped until the call returns
    except (TypeError, ValueError, BufferError):
        return
    try:
        failed = fn(ctypes.addressof(anchor), min(nbytes, len(buf)), _MADV_POPULATE_WRITE) != 0
        if failed and ctypes.get_errno() == errno.EINVAL:
            _madvise = None  # a kernel older than 5.14: stop trying
    finally:
        del anchor


def _prefault(buf: mmap.mmap, nbytes: int) -> None:
    """Start backing ``buf``'s first ``nbytes`` with memory on a background thread.

    The first write to each page of a fresh anonymous buffer traps into the kernel,
    which finds and zeroes a page: about 23 ms for the 4,000 small chunks of a 16 MiB pack,
    on the thread that fills it. One ``madvise`` call on another thread does the same
    work in about 14 ms without holding the GIL, while the committing thread reads on.
    It only adds pages (their contents stay), so it may overlap the writes into ``buf``.
    """
    if _madvise is not None and nbytes > 0:
        _prefault_pool.submit(_populate, buf, nbytes)


class ChunkLoc(NamedTuple):
    """Where one chunk's stored bytes are. (A named tuple: a mount locates thousands of
    chunks at a time, and a frozen dataclass took 0.42 µs to make where this takes 0.17.)"""

    pack: str
    offset: int
    length: int
    raw_len: int
    codec: int


def parse_pack_header(data: bytes, where: str) -> list[tuple[str, int, int, int, int]]:
    """Records ``(hash, offset, length, raw_len, codec)`` from a whole pack's bytes."""
    if len(data) < 12 or data[-8:] != PACK_MAGIC:
        raise CorruptionError(f"pack {where} has no valid trailer", key=where)
    (n,) = U32.unpack_from(data, len(data) - 12)
    start = len(data) - 12 - n * PACK_REC.size
    if start < 0:
        raise CorruptionError(f"pack {where} header is truncated", key=where)
    out = []
    for i in range(n):
        h, off, ln, raw, codec = PACK_REC.unpack_from(data, start + i * PACK_REC.size)
        if off + ln > start:
            raise CorruptionError(f"pack {where} record points past its data", key=where)
        out.append((h.hex(), off, ln, raw, codec))
    return out


def encode_segment(entries: Mapping[str, ChunkLoc], salt: bytes | None = None) -> bytes:
    """Serialize an index segment covering ``entries`` (hash -> location).

    ``salt`` (32 bytes) goes into the pack table as a pack no record refers to, which
    every reader ignores: the segment then has a key of its own even when another holds
    the very same entries (a gc's checkpoint, see :func:`.gc._write_checkpoint`)."""
    if isinstance(entries, ChunkMap) and salt is None:
        return entries.encode_segment()
    packs: dict[str, int] = {}
    recs = []
    for h, loc in sorted(entries.items()):
        pi = packs.setdefault(loc.pack, len(packs))
        recs.append(
            INDEX_REC.pack(bytes.fromhex(h), pi, loc.offset, loc.length, loc.raw_len, loc.codec)
        )
    table = [bytes.fromhex(p) for p in packs]
    if salt is not None:
        if len(salt) != 32:
            raise ValueError("a segment's salt is 32 bytes")
        table.append(salt)
    out = [INDEX_MAGIC, U32.pack(len(table)), *table]
    out.append(U32.pack(len(recs)))
    out.extend(recs)
    return b"".join(out)


def decode_segment(data: bytes, where: str) -> Iterable[tuple[bytes, str, int, int, int, int]]:
    """Yield ``(hash_bytes, pack, offset, length, raw_len, codec)`` from a segment."""
    if data[:8] != INDEX_MAGIC:
        raise CorruptionError(f"index object {where} has a bad header", key=where)
    try:
        (np_,) = U32.unpack_from(data, 8)
        pos = 12
        packs = [data[pos + 32 * i : pos + 32 * (i + 1)].hex() for i in range(np_)]
        pos += 32 * np_
        (nr,) = U32.unpack_from(data, pos)
        pos += 4
        if pos + nr * INDEX_REC.size != len(data):
            raise CorruptionError(f"index object {where} has the wrong length", key=where)
        for h, pi, off, ln, raw, codec in INDEX_REC.iter_unpack(data[pos:]):
            yield h, packs[pi], off, ln, raw, codec
    except (struct.error, IndexError):
        raise CorruptionError(f"index object {where} is truncated", key=where) from None


_M32 = (1 << 32) - 1


def _pack(pi: int, off: int, ln: int, raw: int, codec: int) -> int:
    return (((pi << 32 | off) << 32 | ln) << 32 | raw) << 8 | codec


def _unpack(v: int) -> tuple[int, int, int, int, int]:
    return v >> 104, (v >> 72) & _M32, (v >> 40) & _M32, (v >> 8) & _M32, v & 0xFF


class ChunkMap(Mapping[str, ChunkLoc]):
    """hash (hex) -> :class:`ChunkLoc`, kept compact: a 32-byte key and one int per chunk
    (see ``_pack``), about 150 bytes a chunk instead of about 330 for a dict of ChunkLocs
    keyed by hex strings. A commit of 1,000,000 new files holds one entry per new chunk
    until its index segment is written, so this is most of what that commit holds.
    """

    __slots__ = ("_map", "_packs", "_pack_ids")

    def __init__(self) -> None:
        self._map: dict[bytes, int] = {}
        self._packs: list[str] = []
        self._pack_ids: dict[str, int] = {}

    def pack_index(self, pack: str) -> int:
        """The small number that stands for ``pack`` in this map (made on first use)."""
        pi = self._pack_ids.get(pack)
        if pi is None:
            pi = self._pack_ids[pack] = len(self._packs)
            self._packs.append(pack)
        return pi

    def add_raw(self, hb: bytes, pi: int, off: int, ln: int, raw: int, codec: int) -> None:
        """Record chunk ``hb`` (32 bytes) at ``off`` of pack number ``pi`` (:meth:`pack_index`)."""
        self._map[hb] = _pack(pi, off, ln, raw, codec)

    def add_segment(self, data: bytes, where: str) -> int:
        """Record every entry of the index segment ``data`` (CorruptionError if damaged);
        returns how many it holds."""
        n = 0
        for hb, pack, off, ln, raw, codec in decode_segment(data, where):
            self._map[hb] = _pack(self.pack_index(pack), off, ln, raw, codec)
            n += 1
        return n

    def get(self, h: str, default: ChunkLoc | None = None) -> ChunkLoc | None:  # type: ignore[override]
        """The location of ``h``, or ``default`` (no exception on a miss: most lookups of a
        commit's new chunks miss)."""
        v = self._map.get(bytes.fromhex(h))
        if v is None:
            return default
        pi, off, ln, raw, codec = _unpack(v)
        return ChunkLoc(self._packs[pi], off, ln, raw, codec)

    def get_many(self, hashes: Iterable[str], skip_packs: frozenset[str]) -> list[ChunkLoc | None]:
        """:meth:`get` of each of ``hashes``, None also for one in ``skip_packs`` (one call
        for the thousands of chunks a mount locates at a time)."""
        get, packs = self._map.get, self._packs
        out: list[ChunkLoc | None] = []
        for h in hashes:
            v = get(bytes.fromhex(h))
            if v is None or (pack := packs[v >> 104]) in skip_packs:
                out.append(None)
            else:
                _pi, off, ln, raw, codec = _unpack(v)
                out.append(ChunkLoc(pack, off, ln, raw, codec))
        return out

    def pack_of(self, h: str) -> str | None:
        """The pack holding ``h``, or None (a membership test that builds no ChunkLoc)."""
        v = self._map.get(bytes.fromhex(h))
        return None if v is None else self._packs[v >> 104]

    def locations(self) -> Iterator[tuple[str, ChunkLoc]]:
        """Every ``(hash, location)``, from a snapshot (safe while others add)."""
        packs = self._packs
        for hb, v in list(self._map.items()):
            pi, off, ln, raw, codec = _unpack(v)
            yield hb.hex(), ChunkLoc(packs[pi], off, ln, raw, codec)

    def packs(self) -> set[str]:
        """Every pack id an entry was ever recorded in."""
        return set(self._packs)

    def __setitem__(self, h: str, loc: ChunkLoc) -> None:
        self.add_raw(
            bytes.fromhex(h),
            self.pack_index(loc.pack),
            loc.offset,
            loc.length,
            loc.raw_len,
            loc.codec,
        )

    def __getitem__(self, h: str) -> ChunkLoc:
        loc = self.get(h)
        if loc is None:
            raise KeyError(h)
        return loc

    def __contains__(self, h: object) -> bool:
        return isinstance(h, str) and bytes.fromhex(h) in self._map

    def __iter__(self) -> Iterator[str]:
        return (hb.hex() for hb in list(self._map))

    def __len__(self) -> int:
        return len(self._map)

    def encode_segment(self) -> bytes:
        """The index segment of every entry (what :func:`encode_segment` makes of it),
        written straight into one buffer: no per-entry objects on the way."""
        recs = bytearray(len(self._map) * INDEX_REC.size)
        seg_pi: dict[int, int] = {}  # numbered in order of first use, as encode_segment does
        pack_into = INDEX_REC.pack_into
        get = self._map.__getitem__
        pos = 0
        for hb in sorted(self._map):
            pi, off, ln, raw, codec = _unpack(get(hb))
            pack_into(recs, pos, hb, seg_pi.setdefault(pi, len(seg_pi)), off, ln, raw, codec)
            pos += INDEX_REC.size
        head = [INDEX_MAGIC, U32.pack(len(seg_pi))]
        head.extend(bytes.fromhex(self._packs[pi]) for pi in seg_pi)
        head.append(U32.pack(len(self._map)))
        return b"".join(head) + recs

    def move_into(self, other: ChunkMap) -> None:
        """Add every entry to ``other`` and empty this map as it goes: the keys move
        over, so a million new chunks are never held twice."""
        remap = [other.pack_index(p) for p in self._packs]
        src, dst = self._map, other._map
        while src:
            hb, v = src.popitem()
            dst[hb] = (remap[v >> 104] << 104) | (v & ((1 << 104) - 1))
        self._map = {}  # a dict keeps its table after its items are popped


class ChunkIndex:
    """In-memory map of chunk hash -> :class:`ChunkLoc`, built from index objects.

    Index objects are immutable, so each is loaded at most once per instance; loading a
    newer commit's list only reads the objects not seen yet. Thread-safe for readers.
    """

    def __init__(self) -> None:
        # hash -> location packed into one int (see _pack): a tuple of five ints costs
        # about 120 bytes more per chunk, 120 MB for a volume of 1,000,000 chunks
        self._chunks = ChunkMap()
        self.loaded: set[str] = set()
        #: how many entries each loaded index object holds (what compaction weighs)
        self.counts: dict[str, int] = {}
        #: packs condemned by garbage collection: never deduplicate against them
        self.dead: frozenset[str] = frozenset()
        #: the gc record in force for the records whose index objects this holds (None:
        #: no gc yet). Only objects listed by a record under that gc may join: an older
        #: record's may locate chunks in packs that gc has deleted since (and which
        #: ``dead`` no longer names), or the old places of chunks it moved.
        self.gc: int | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._chunks)

    def __contains__(self, h: str) -> bool:
        pack = self._chunks.pack_of(h)
        return pack is not None and pack not in self.dead

    def add_object(self, key: str, data: bytes) -> None:
        """Merge one index object's records (no-op if ``key`` was loaded already)."""
        with self._lock:
            if key in self.loaded:
                return
            self.counts[key] = self._chunks.add_segment(data, key)
            self.loaded.add(key)

    def absorb(self, key: str, chunks: ChunkMap) -> None:
        """Merge the entries of index object ``key``, given as the :class:`ChunkMap` it
        was encoded from (this process wrote it), emptying ``chunks``: the same as
        :meth:`add_object` of its bytes without decoding them into a second copy."""
        with self._lock:
            if key in self.loaded:
                return
            self.counts[key] = len(chunks)
            chunks.move_into(self._chunks)
            self.loaded.add(key)

    def add(self, h: str, loc: ChunkLoc) -> None:
        """Record one location (for chunks written by this process)."""
        with self._lock:
            self._chunks[h] = loc

    def get(self, h: str) -> ChunkLoc | None:
        """The location of chunk ``h``, or None if no loaded index object has it."""
        loc = self._chunks.get(h)
        if loc is None or loc.pack in self.dead:
            return None
        return loc

    def get_many(self, hashes: Iterable[str]) -> list[ChunkLoc | None]:
        """:meth:`get` of each of ``hashes``."""
        return self._chunks.get_many(hashes, self.dead)

    def get_any(self, h: str) -> ChunkLoc | None:
        """Like :meth:`get`, including chunks in condemned packs (for rescuing them)."""
        return self._chunks.get(h)

    def items(self, skip_packs: set[str] | frozenset[str] = frozenset()) -> dict[str, ChunkLoc]:
        """Every known chunk (except those in ``skip_packs``), for writing a checkpoint."""
        return {h: loc for h, loc in self._chunks.locations() if loc.pack not in skip_packs}

    def packs(self) -> set[str]:
        """Every pack id referenced by a loaded record."""
        return self._chunks.packs()


class PackWriter:
    """Collects compressed chunks into packs of about 16 MiB (a writer's first ones
    smaller: 2, 4, 8 MiB) and uploads them.

    Uploads run on ``executor`` with at most ``max_in_flight`` packs pending (one more
    after :meth:`flush`), so memory stays bounded (about (max_in_flight + 2) x 16 MiB)
    however much is written.
    ``upload(pack_id, data)`` does the PUT. ``new_chunks`` collects the locations of
    every chunk written, for the commit's index segment.
    """

    def __init__(
        self,
        upload: Callable[[str, bytes], None],
        executor: Executor,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self._upload = upload
        self._executor = executor
        self._max = max_in_flight
        # Pack buffers are reused once their upload is done: fresh pages for every 16 MiB
        # pack cost more than the copy into them (first touches of memory are slow).
        self._free: list[mmap.mmap] = []
        self._buf = self._take_buf()
        self._len = 0  # bytes of _buf in use
        self._recs: list[tuple[str, int, int, int, int]] = []
        self._pending: dict[str, tuple[int, int, int]] = {}  # hash -> (offset, len, raw) in buf
        self._futures: deque[Future[None]] = deque()
        self.new_chunks = ChunkMap()
        self.bytes_written = 0
        self.packs_written = 0
        # raw chunks waiting to be compressed: the batch being gathered, the batches
        # being compressed (in order), and every hash in either (for has())
        self._raw: list[tuple[str, bytes]] = []
        self._raw_bytes = 0
        self._zjobs: deque[tuple[list[tuple[str, bytes]], Future[list[tuple[int, Any]]]]] = deque()
        self._raw_keys: set[str] = set()
        self._expected: int | None = None  # content bytes still to come, if told
        # the last batch of raw chunks landed had none that compressed: probe the next
        # ones at a fast level first (see codec.compress_later)
        self._probe = False
        self._target = min(FIRST_PACK, PACK_TARGET)  # the size at which this pack is sealed
        self._win: PackWindow | None = None  # the window open in _buf, if any

    def expect(self, nbytes: int) -> None:
        """Hint that about ``nbytes`` more bytes of content will be written.

        The last pack uploads after everything else is done, with nothing to overlap it:
        a commit waits for all of it. Told what is to come, the writer seals a pack once
        it holds ``TAIL_PACK`` bytes and at least what is still expected, so each pack
        near the end uploads while the next is filled and the last is short: 10,000
        files of 4 KiB (39 MiB) go as packs of 2, 4, 8 (the first ones, see
        ``FIRST_PACK``), 12.5, 6.3, 4 and 2.3 MiB instead of 2, 4, 8, 16 and 9. Chunks
        the volume has already, and inline files, never come: the estimate only errs
        high, which seals as without the hint.

        Told of at least ``PREFAULT_MIN`` bytes, the writer backs each fresh pack buffer
        with memory ahead of its use, on another thread (see :func:`_prefault`)."""
        self._expected = max(0, nbytes)
        self._back_buf()

    def _back_buf(self) -> None:
        """With at least ``PREFAULT_MIN`` bytes still expected, start backing the current
        buffer with memory: for the rest of what is expected (each chunk stored a little
        bigger at most) and its records, up to what this pack can hold (its target and
        the buffer's room beyond ``PACK_TARGET``: a first, small pack backs no more)."""
        want = self._expected
        if want is not None and want >= PREFAULT_MIN:
            room = min(len(self._buf), self._target + PACK_BUF - PACK_TARGET)
            _prefault(self._buf, min(room, want + want // 64 + (1 << 20)))

    def has(self, h: str) -> bool:
        """True if chunk ``h`` was written (or is buffered) by this writer."""
        return h in self._pending or h in self._raw_keys or h in self.new_chunks

    def add_raw(self, h: str, data: bytes) -> None:
        """Buffer one small chunk, uncompressed: it is compressed in a batch with others
        on a background thread (see :func:`codec.compress_later`) and lands in the pack
        like :meth:`add`'s, by the next :meth:`flush` at the latest. ``data`` must not
        change afterwards (bytes)."""
        if self.has(h):
            return
        self._raw_keys.add(h)
        self._raw.append((h, data))
        self._raw_bytes += len(data)
        if self._raw_bytes >= ZSTD_BATCH:
            self._start_batch()
            while len(self._zjobs) > ZSTD_IN_FLIGHT:
                self._land_batch()

    def _start_batch(self) -> None:
        batch = self._raw
        self._raw, self._raw_bytes = [], 0
        self._zjobs.append((batch, compress_later([d for _h, d in batch], self._probe)))

    def _land_batch(self) -> None:
        batch, fut = self._zjobs.popleft()
        stored = fut.result()
        self._probe = all(codec == CODEC_RAW for codec, _z in stored)
        discard, add = self._raw_keys.discard, self._add
        for (h, data), (codec, z) in zip(batch, stored, strict=True):
            discard(h)
            add(h, codec, z, len(data))  # new by construction: nothing else adds a waiting hash

    def _land_all(self) -> None:
        if self._raw:
            self._start_batch()
        while self._zjobs:
            self._land_batch()

    def add(self, h: str, codec: int, stored: Any, raw_len: int) -> None:
        """Buffer one chunk (``stored``: its stored form, any buffer); seals a pack when
        the buffer reaches the target size."""
        if not self.has(h):
            self._add(h, codec, stored, raw_len)

    def _add(self, h: str, codec: int, stored: Any, raw_len: int) -> None:
        """:meth:`add` of a chunk this writer does not have."""
        n = len(stored)
        self._pending[h] = (self._len, n, raw_len)
        self._recs.append((h, self._len, n, raw_len, codec))
        self._put_bytes(stored)
        if self._expected is not None:
            self._expected = max(0, self._expected - raw_len)
        if self._win is None and self._due():
            self._seal()  # (with a window open, as it slides: its unread bytes follow _len)

    def _due(self) -> bool:
        """True when the current pack is to be sealed: it reached its target, or, near
        the end of what it was told to expect, holds ``TAIL_PACK`` and all that is left."""
        if self._len >= self._target:
            return True
        e = self._expected
        return e is not None and self._len >= TAIL_PACK and self._len >= e

    def _take_buf(self) -> mmap.mmap:
        try:
            return self._free.pop()
        except IndexError:
            # Anonymous memory: a page is backed only once written (a small commit stays
            # small), nothing is copied as the pack grows, and it goes back to the system
            # when dropped. Big enough for a pack: it is sealed at PACK_TARGET, plus one
            # chunk and the header. Private: a shared mapping's pages cost the kernel
            # more to provide.
            return mmap.mmap(-1, PACK_BUF, flags=mmap.MAP_PRIVATE)

    def _put_bytes(self, data: Any) -> None:
        end = self._len + len(data)
        win = self._win
        if win is not None:
            if data is win.piece:  # a chunk of the window, raw: it is in this buffer
                if win.base + win.at != self._len:  # after a chunk left out: move it down
                    memoryview(self._buf)[self._len : end] = data  # (overlap-safe)
                self._len = end
                return
            # Anything else written meanwhile (a chunk's zstd form) is no longer than the
            # window's current chunk and goes where that chunk starts or before: never
            # over bytes the window has not yet cut.
            if end > win.base + win.at + len(win.piece or b""):
                raise RuntimeError("pack writer: a write would overrun its window's unread bytes")
        if end > len(self._buf):  # rare: see PACK_BUF
            bigger = mmap.mmap(-1, max(end, 2 * len(self._buf)), flags=mmap.MAP_PRIVATE)
            bigger[: self._len] = self._buf[: self._len]
            self._buf = bigger
        self._buf[self._len : end] = data
        self._len = end

    def window(self) -> PackWindow:
        """A :class:`.codec.Window` for :func:`.codec.cut_chunks` in this writer's own
        pack buffer; a context manager, to be closed when the cutting ends.

        A big file is then read straight to where its chunks are stored: a chunk that is
        new and stored raw (most of a big file that does not compress) is not copied at
        all, one left out (the volume has it) leaves a gap that the next one stored is
        moved down over, and a compressed one is written where it was cut. While the
        window is open, only the chunks it yields may be added, and packs are sealed
        only as it moves on (past the end of a pack, the bytes not yet cut, less than
        one chunk, are copied into the next pack's buffer)."""
        return PackWindow(self)

    def _send(self, pack_id: str, buf: mmap.mmap, length: int) -> None:
        view = memoryview(buf)[:length]
        try:
            self._upload(pack_id, view)
        finally:
            view.release()
            self._free.append(buf)  # list.append is atomic: safe from the upload thread

    def flush(self) -> None:
        """Seal and start uploading the current pack, if it holds anything (raw chunks
        still being compressed land in it first)."""
        self._land_all()
        self._seal(last=True)

    def _seal(self, last: bool = False, after: mmap.mmap | None = None) -> None:
        """Start uploading the current pack. Once ``max_in_flight`` packs are on their
        way, the caller waits until one of them is done, unless this is the ``last`` pack
        (a :meth:`flush`): the commit then checks and sends its tree while the packs go
        up, with one buffer more at most. ``after``: the buffer of the next pack (taken
        and written to already by a window moving on), else one is taken here."""
        if not self._recs:
            return
        keys = [bytes.fromhex(h) for h, _o, _n, _r, _c in self._recs]
        header = b"".join(
            PACK_REC.pack(hb, o, n, r, c)
            for hb, (_h, o, n, r, c) in zip(keys, self._recs, strict=True)
        )
        self._put_bytes(header + U32.pack(len(self._recs)) + PACK_MAGIC)
        # Random, never content-derived: a pack rewritten with the same chunks (a rescue, a
        # re-upload of expired data) must never share a name with one gc has condemned.
        pack_id = secrets.token_hex(32)
        pi = self.new_chunks.pack_index(pack_id)
        add = self.new_chunks.add_raw
        for hb, (_h, o, n, r, c) in zip(keys, self._recs, strict=True):
            add(hb, pi, o, n, r, c)
        self.bytes_written += self._len
        self.packs_written += 1
        buf, length = self._buf, self._len
        self._recs = []
        self._pending = {}
        self._wait_for_slot(last)
        self._futures.append(self._executor.submit(self._send, pack_id, buf, length))
        self._buf = after if after is not None else self._take_buf()
        self._len = 0
        self._target = min(PACK_TARGET, 2 * self._target)
        if not last:
            self._back_buf()

    def _wait_for_slot(self, last: bool = False) -> None:
        """Wait until fewer than ``max_in_flight`` uploads are on their way (one more
        for the ``last`` pack of a flush)."""
        while len(self._futures) >= self._max + last:
            self._wait_for_one()

    def _wait_for_one(self) -> None:
        """Wait until any upload on its way is done (not the oldest: one PUT that the store
        holds up must not stop the others' slots from being used) and forget the done
        ones; a failed one raises here (the rest are left for :meth:`abort`)."""
        done, _ = wait(self._futures, return_when=FIRST_COMPLETED)
        for f in done:
            f.result()
        self._futures = deque(f for f in self._futures if f not in done)

    def send_after(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` (another upload of the same commit, such as its index segment) on
        the upload pool beside the packs: :meth:`finish` waits for it and re-raises its
        error, :meth:`abort` waits for it. Call it after :meth:`flush`."""
        self._futures.append(self._executor.submit(fn))

    def track(self, futures: Iterable[Future[Any]]) -> None:
        """Count uploads of the same commit made elsewhere (its last tree nodes) as this
        writer's: :meth:`finish` waits for them and re-raises their errors, :meth:`abort`
        waits for them (so nothing of the commit lands after an abort, such as after
        the deletion of what a commit to a deleted volume uploaded). Call it after
        :meth:`flush`."""
        self._futures.extend(futures)

    def finish(self) -> None:
        """Flush the last pack and wait until every upload has finished (re-raising errors)."""
        self.flush()
        while self._futures:
            self._futures.popleft().result()

    def abort(self) -> None:
        """Drop buffered data and wait for in-flight uploads (their errors are ignored)."""
        self._len = 0
        self._recs = []
        self._pending = {}
        self._raw, self._raw_bytes, self._raw_keys = [], 0, set()
        while self._zjobs:
            try:
                self._zjobs.popleft()[1].result()
            except Exception:
                pass
        while self._futures:
            try:
                self._futures.popleft().result()
            except Exception:
                pass


class PackWindow(Window):
    """:meth:`PackWriter.window`: the region :func:`.codec.cut_chunks` reads a big
    stream into is the current pack buffer from its end of data (``_len``) on."""

    def __init__(self, writer: PackWriter) -> None:
        self._w = writer
        self.base = 0  # the offset of the current region in the writer's buffer

    def __enter__(self) -> PackWindow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """No region is held any more: the writer may seal and add as usual."""
        if self._w._win is self:
            self._w._win = None
        self.piece = None

    def open(self, first: bytes) -> memoryview:
        w = self._w
        if w._recs and (w._due() or len(w._buf) - w._len < len(first) + WINDOW_MIN):
            w._seal()
        if len(w._buf) - w._len < len(first) + WINDOW_MIN:
            return super().open(first)  # more than a pack holds: a buffer of its own
        w._win = self
        self.base = w._len
        mv = self._region(len(first))
        mv[: len(first)] = first
        return mv

    def slide(self, mv: memoryview, pos: int, end: int) -> memoryview:
        w = self._w
        if w._win is not self or mv.obj is not w._buf:
            return super().slide(mv, pos, end)  # opened in a buffer of its own
        t = end - pos
        if w._recs and (w._due() or len(w._buf) - w._len < t + WINDOW_MIN):
            w._wait_for_slot()  # before a buffer more is taken (then _seal waits no more)
            after = w._take_buf()
            after[:t] = mv[pos:end]  # first: the header goes over them in this buffer
            w._win = None  # (what is left here to cut is in ``after`` now)
            w._seal(after=after)
            w._win = self
        elif self.base + pos != w._len:  # chunks were left out: close the gap
            memoryview(w._buf)[w._len : w._len + t] = mv[pos:end]  # (overlap-safe)
        self.base = w._len
        return self._region(t)

    def _region(self, keep: int) -> memoryview:
        """The region from the writer's end of data: up to where its pack is due to be
        sealed (see ``PackWriter._due``) plus one chunk's look-ahead, so that a pack
        ends about where it would have without a window; at least ``keep`` bytes and 1
        MiB more, and never past the buffer's end."""
        w = self._w
        start = w._len
        until = w._target - start
        if w._expected is not None:
            # raw chunks of x more bytes make _len = start + x and leave expected - x
            until = min(until, max(TAIL_PACK - start, (w._expected - start + 1) // 2))
        size = max(until + CHUNK_MAX, keep + (1 << 20), WINDOW_MIN)
        return memoryview(w._buf)[start : min(start + size, len(w._buf))]
