"""Low-level encodings of the on-store format: hashes, chunking, compression, JSON.

Nothing here touches a store. Objects are named by the blake3 hash of their *logical*
content (a chunk's raw bytes, a tree node's canonical JSON), never of their stored
(compressed) form, so equal content gets an equal name however it was compressed.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import stat
import threading
from collections.abc import Iterator
from typing import IO, Any

import zstandard
from blake3 import blake3
from pyfastcdc import FastCDC

from .._pools import SharedPool
from ..errors import CorruptionError, UnsupportedFormatError

#: The on-store format this code writes, and the newest it reads. Bump it only for a
#: change that older readers would misread; they then refuse with "upgrade to >= X".
FORMAT_VERSION = 1
#: format -> the oldest jupyter-volume release that reads it (written next to the format
#: number, so an older reader can name the release to upgrade to).
MIN_READER = {1: "0.1.0"}
CHUNK_MIN = 32 * 1024
CHUNK_AVG = 128 * 1024
CHUNK_MAX = 512 * 1024
INLINE_MAX = 512  # files up to this size live inside their tree node
ZSTD_LEVEL = 3
MIN_GAIN = 0.05  # store raw when zstd saves less than this fraction
#: A batch of small chunks that follows batches where nothing compressed (a tree of
#: images or compressed arrays) is tried at this fast level first; only the chunks it
#: shrinks by at least half of ``MIN_GAIN`` are then compressed at ``ZSTD_LEVEL``.
#: Incompressible data costs zstd about 2 us per 4 KiB chunk this way instead of 4.
ZSTD_PROBE_LEVEL = -1

CODEC_RAW = 0
CODEC_ZSTD = 1


_HASH_RE = re.compile(r"[0-9a-f]{64}")


def is_chunk_hash(h: object) -> bool:
    """True for a blake3 hex digest (64 lowercase hex characters), the only name a
    chunk may have: a tree node is read from the store, and a name such as ``../x``
    must never reach a cache path (nor the index, which would fail on it untidily)."""
    return isinstance(h, str) and len(h) == 64 and _HASH_RE.fullmatch(h) is not None


def hash_bytes(data: bytes | bytearray | memoryview) -> str:
    """Hex blake3 digest of ``data`` (64 characters)."""
    if len(data) > 4 << 20:
        return blake3(data, max_threads=blake3.AUTO).hexdigest()
    return blake3(data).hexdigest()  # one thread (a mount or commit hashes thousands of these)


def new_chunker() -> FastCDC:
    """A FastCDC chunker with the format's parameters (min 32 KiB, avg ~128 KiB, max 512 KiB).

    pyfastcdc's effective average is ``avg_size + min_size``, so ask for the difference.
    """
    return FastCDC(CHUNK_AVG - CHUNK_MIN, min_size=CHUNK_MIN, max_size=CHUNK_MAX)


def iter_chunks(stream: IO[bytes]) -> Iterator[memoryview]:
    """Cut a binary stream into content-defined chunks.

    Each yielded memoryview is valid only until the next one is produced: copy or
    consume it first. Memory stays bounded by the chunker's buffer, whatever the size.
    """
    for mv, _h in cut_chunks(stream):
        yield mv


#: Bytes read at once past the first ``SMALL_READ`` when cutting a stream.
CHUNK_WINDOW = 8 << 20
#: A stream that ends within this many bytes is cut from one in-memory buffer.
SMALL_READ = 1 << 20


def _read_upto(stream: IO[bytes], n: int) -> bytes:
    parts = []
    while n > 0:
        b = stream.read(n)
        if not b:
            break
        parts.append(b)
        n -= len(b)
    return b"".join(parts)


class Window:
    """Where :func:`cut_chunks` holds a big stream while it cuts it: a region of memory
    it reads into and cuts from, and moves on from when what is left unread there is
    less than one chunk's look-ahead.

    This one is a single buffer, reused: each move brings the unread tail back to its
    start. (A pack writer's window is the pack's own buffer, so that chunks are cut
    where they are stored: see :meth:`.packs.PackWriter.window`.)

    :func:`cut_chunks` sets ``piece`` (the chunk it is about to yield) and ``at`` (its
    offset in the current region) before each yield.
    """

    piece: memoryview | None = None
    at = 0

    def open(self, first: bytes) -> memoryview:
        """A region that starts with ``first``, with room to read on (at least
        ``CHUNK_WINDOW + CHUNK_MAX`` bytes in all)."""
        mv = memoryview(bytearray(max(CHUNK_WINDOW + CHUNK_MAX, len(first))))
        mv[: len(first)] = first
        return mv

    def slide(self, mv: memoryview, pos: int, end: int) -> memoryview:
        """A region that starts with ``mv[pos:end]`` (the bytes read and not yet cut),
        with room after them to read on; ``mv`` is the current one."""
        mv[: end - pos] = mv[pos:end]  # a memoryview copies overlapping ranges safely
        return mv


def cut_chunks(
    stream: IO[bytes],
    head: bytes = b"",
    *,
    previous: list[tuple[str, int]] | None = None,
    window: Window | None = None,
) -> Iterator[tuple[memoryview, str]]:
    """Cut ``head`` + the rest of ``stream`` into chunks; yield ``(bytes, blake3 hex)``.

    The chunks are exactly those FastCDC cuts from the whole content at once: the
    chunker's cut after a chunk start depends only on the next ``CHUNK_MAX`` bytes (or
    on all that is left, near the end), so the stream is cut from a window that always
    holds that much ahead (or the end). Each memoryview is valid until the next one.

    ``previous`` is the chunk list of an earlier version of the same file. Where a
    previous chunk starts at the current offset, has the same bytes (same hash) and
    the same amount of data follows it (or at least ``CHUNK_MAX`` in both), the chunker
    would cut it exactly there again, so it is taken without running the chunker: an
    in-place edit of a big file costs hashing it, and chunking only the edited regions.
    ``window``: where a stream of ``SMALL_READ`` bytes or more is held (a new
    :class:`Window` when not given); a smaller one is cut from one buffer of its own.
    """
    cdc = new_chunker()
    prev_at: dict[int, tuple[str, int]] = {}
    prev_offs: list[int] = []  # the previous chunks' offsets, in order
    prev_size = 0
    if previous:
        for h, n in previous:
            prev_at[prev_size] = (h, n)
            prev_offs.append(prev_size)
            prev_size += n
    prev_next = 0  # prev_offs[prev_next:] are not hashed ahead yet
    hashed: dict[int, str] = {}  # file offset -> hash of the previous chunk's range there
    # Chunks cut since the last window was read, and how many of them started where a
    # previous chunk did: hashing ahead pays only while most do (an in-place edit; after
    # an insertion or deletion the old offsets no longer line up until the end).
    steps = aligned = 0
    first = head + _read_upto(stream, SMALL_READ - len(head)) if len(head) < SMALL_READ else head
    win: Window | None = None
    if len(first) < SMALL_READ:
        mv = memoryview(first)
        end = len(first)
        eof = True
    else:
        win = window if window is not None else Window()
        mv = win.open(first)
        end = len(first)
        eof = False
    del first
    readinto = getattr(stream, "readinto", None)
    fd: int | None = None  # set when the stream's file is read positionally, in parallel
    origin = 0  # the file offset of the stream's start (with ``fd``)
    base = 0  # stream offset of mv[0]
    pos = 0
    cuts: Iterator[Any] | None = None  # the chunker's cuts from ``cut_at`` on, while valid
    cut_at = 0
    while True:
        if not eof and end - pos < CHUNK_MAX:
            assert win is not None
            cuts = None
            if pos:
                mv = win.slide(mv, pos, end)
                base += pos
                end -= pos
                pos = 0
            if prev_offs and fd is None and not eof:
                fd, origin = _positional(stream, base + end)
            if fd is not None:
                got = _fill(fd, mv, end, origin + base + end)
                end += got
                stream.seek(origin + base + end)  # where a sequential read would have left it
                eof = end < len(mv)
            while not eof and end < len(mv):
                if readinto is not None:
                    got = readinto(mv[end:]) or 0
                else:
                    data = stream.read(len(mv) - end)
                    got = len(data) if data else 0
                    mv[end : end + got] = data or b""
                if not got:
                    eof = True
                    break
                end += got
            if prev_offs:
                # what was hashed ahead and not used lies behind the window now
                hashed = {k: v for k, v in hashed.items() if k >= base + pos}
                if aligned * 2 >= steps:
                    prev_next = _hash_ahead(
                        mv, base, pos, end, prev_offs, prev_at, prev_next, hashed
                    )
                steps = aligned = 0
        if pos >= end:
            return
        steps += 1
        if prev_at:
            p = prev_at.get(base + pos)
            if p is not None:
                aligned += 1
                h_old, n_old = p
                avail = end - pos
                ahead = avail if eof else CHUNK_MAX
                if n_old <= avail and min(prev_size - base - pos, CHUNK_MAX) == min(
                    ahead, CHUNK_MAX
                ):
                    piece = mv[pos : pos + n_old]
                    h = hashed.pop(base + pos, None) or hash_bytes(piece)
                    if h == h_old:
                        if win is not None:
                            win.piece, win.at = piece, pos
                        pos += n_old
                        cuts = None
                        yield piece, h
                        continue
        if cuts is None:
            # Every cut is decided with at least CHUNK_MAX bytes ahead (or the end) in view.
            cuts = iter(cdc.cut_buf(mv[pos:end]))
            cut_at = pos
        c = next(cuts)
        assert cut_at + c.offset == pos
        piece = mv[pos : pos + c.length]
        if win is not None:
            win.piece, win.at = piece, pos
        pos += c.length
        yield piece, hash_bytes(piece)


#: Threads that hash the previous version's chunk ranges of a window ahead of the cut
#: loop (blake3 releases the GIL): an in-place edit of a big file is mostly hashing.
HASH_THREADS = max(1, min(4, os.cpu_count() or 1))
_hash_pool = SharedPool(max(1, HASH_THREADS - 1), "jv-hash")


def _positional(stream: IO[bytes], consumed: int) -> tuple[int | None, int]:
    """``(fd, offset of the stream's start)`` if ``stream`` is a regular file that can be
    read at positions (``consumed`` bytes of it were read), else ``(None, 0)``."""
    try:
        fd = stream.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode) or not stream.seekable():
            return None, 0
        return fd, stream.tell() - consumed
    except (AttributeError, OSError, ValueError):
        return None, 0


def _read_part(fd: int, mv: memoryview, offset: int) -> int:
    got = 0
    while got < len(mv):
        n = os.preadv(fd, [mv[got:]], offset + got)
        if not n:
            break
        got += n
    return got


def _fill(fd: int, mv: memoryview, start: int, offset: int) -> int:
    """Read file ``fd`` from ``offset`` into ``mv[start:]``, in parts on the hash threads
    (a read from the page cache is a copy: two cores copy twice as fast); return the
    bytes read without a gap (fewer than asked only at the end of the file)."""
    want = len(mv) - start
    k = HASH_THREADS if want >= (2 << 20) else 1
    step = -(-want // k)
    bounds = [(a, min(a + step, want)) for a in range(0, want, step)]
    futures = [
        _hash_pool.submit(_read_part, fd, mv[start + a : start + b], offset + a)
        for a, b in bounds[1:]
    ]
    try:
        got = [_read_part(fd, mv[start : start + bounds[0][1]], offset)]
    finally:
        # none may still write into the buffer once this returns or raises (it is reused)
        concurrent.futures.wait(futures)
    got += [f.result() for f in futures]
    total = 0
    for (a, b), n in zip(bounds, got, strict=True):
        total += n
        if n < b - a:
            break  # the end of the file: nothing after a short part counts
    return total


def _hash_all(mv: memoryview, ranges: list[tuple[int, int, int]]) -> list[tuple[int, str]]:
    return [(off, hash_bytes(mv[at : at + n])) for off, at, n in ranges]


def _hash_ahead(
    mv: memoryview,
    base: int,
    pos: int,
    end: int,
    offs: list[int],
    prev_at: dict[int, tuple[str, int]],
    i: int,
    hashed: dict[int, str],
) -> int:
    """Hash every previous chunk's range that lies whole in ``mv[pos:end]`` (``mv[0]`` is
    file offset ``base``) into ``hashed``, split over the hash threads; return the index
    of the first offset in ``offs`` not handled. The cut loop takes these hashes where it
    would compute the same ones itself, so the result is unchanged, only sooner."""
    while i < len(offs) and offs[i] < base + pos:
        i += 1
    ranges = []
    while i < len(offs):
        off = offs[i]
        n = prev_at[off][1]
        if off + n > base + end:
            break
        if off not in hashed:
            ranges.append((off, off - base, n))
        i += 1
    total = sum(r[2] for r in ranges)
    if HASH_THREADS < 2 or total < (2 << 20):
        hashed.update(_hash_all(mv, ranges))
        return i
    # about equal bytes per part; the calling thread hashes the first part itself
    parts: list[list[tuple[int, int, int]]] = [[]]
    share = total / HASH_THREADS
    acc = 0
    for r in ranges:
        if acc >= share * len(parts) and len(parts) < HASH_THREADS:
            parts.append([])
        parts[-1].append(r)
        acc += r[2]
    futures = [_hash_pool.submit(_hash_all, mv, part) for part in parts[1:]]
    hashed.update(_hash_all(mv, parts[0]))
    for f in futures:
        hashed.update(f.result())
    return i


class Compressor:
    """zstd per chunk, falling back to raw when compression does not pay.

    Not thread-safe: use one per thread.
    """

    def __init__(self) -> None:
        self._c = zstandard.ZstdCompressor(level=ZSTD_LEVEL)

    def compress(
        self, data: bytes | memoryview, try_zstd: bool = True
    ) -> tuple[int, bytes | memoryview]:
        """Return ``(codec, stored)`` for one chunk. Stored raw, ``data`` itself is
        returned (no copy): use it before ``data``'s buffer is reused."""
        if try_zstd and len(data) >= 64:
            return _stored_form(data, self._c.compress(data))
        return CODEC_RAW, data

    def worth_compressing(self, sample: bytes | memoryview) -> bool:
        """True if zstd gains at least ``MIN_GAIN`` on ``sample`` (a file's first chunk)."""
        if len(sample) < 64:
            return False
        return _stored_form(sample, self._c.compress(sample))[0] == CODEC_ZSTD


def _stored_form(data: Any, z: Any) -> tuple[int, Any]:
    """``(codec, stored)`` for a chunk and its zstd form ``z``: ``z`` if it saves at least
    ``MIN_GAIN``, else the chunk itself, raw."""
    if len(z) <= len(data) * (1 - MIN_GAIN):
        return CODEC_ZSTD, z
    return CODEC_RAW, data


#: Small chunks (whole small files, most of a big tree) are compressed in batches on this
#: thread while the committing thread reads on: one zstd call per batch releases the GIL
#: for the whole batch, where a call per 4 KiB chunk would wait for the GIL after each.
_zstd_pool = SharedPool(1, "jv-zstd")
_zstd_local = threading.local()


def _compressor(level: int) -> Any:
    """This thread's zstd compressor at ``level`` (one per thread and level)."""
    name = f"c{level}"
    c = getattr(_zstd_local, name, None)
    if c is None:
        c = zstandard.ZstdCompressor(level=level)
        setattr(_zstd_local, name, c)
    return c


def _zstd_many(level: int, datas: list[Any]) -> list[Any]:
    """The zstd form of each of ``datas`` at ``level``, in one call where the backend
    has one (it releases the GIL once for the whole list)."""
    c = _compressor(level)
    multi = getattr(c, "multi_compress_to_buffer", None)  # the C backend's batch call
    if multi is not None:
        got = multi(datas, threads=1)
        return [got[i] for i in range(len(got))]  # each keeps the batch alive
    return [c.compress(d) for d in datas]


def _compress_all(datas: list[bytes], probe: bool = False) -> list[tuple[int, Any]]:
    out: list[tuple[int, Any]] = [(CODEC_RAW, d) for d in datas]
    todo = [i for i, d in enumerate(datas) if len(d) >= 64]
    if probe and todo:
        fast = _zstd_many(ZSTD_PROBE_LEVEL, [datas[i] for i in todo])
        todo = [
            i
            for i, z in zip(todo, fast, strict=True)
            if len(z) <= len(datas[i]) * (1 - MIN_GAIN / 2)
        ]
    if todo:
        zs = _zstd_many(ZSTD_LEVEL, [datas[i] for i in todo])
        for i, z in zip(todo, zs, strict=True):
            out[i] = _stored_form(datas[i], z)
    return out


def compress_later(
    datas: list[bytes], probe: bool = False
) -> concurrent.futures.Future[list[tuple[int, Any]]]:
    """Start compressing ``datas`` (immutable chunks) on the background zstd thread.

    The future gives ``(codec, stored)`` per chunk, in order, chosen as
    :meth:`Compressor.compress` chooses (the same bytes too); a stored zstd form is a
    buffer (use ``len`` and the buffer protocol), a raw one the input itself. With
    ``probe`` (the caller found nothing compressible lately), each chunk is tried at
    ``ZSTD_PROBE_LEVEL`` first and stored raw unless that shrinks it by half of
    ``MIN_GAIN`` or more (a chunk that only ``ZSTD_LEVEL`` would shrink that much is
    then stored raw).
    """
    return _zstd_pool.submit(_compress_all, datas, probe)


def decode_chunk(codec: int, stored: bytes, raw_len: int, expect_hash: str, where: str) -> bytes:
    """Decompress one stored chunk and check its hash; raise CorruptionError on mismatch."""
    try:
        if codec == CODEC_ZSTD:
            raw = zstandard.ZstdDecompressor().decompress(stored, max_output_size=raw_len)
        elif codec == CODEC_RAW:
            raw = stored
        else:
            raise CorruptionError(f"unknown codec {codec} in {where}", key=where)
    except zstandard.ZstdError as e:
        raise CorruptionError(
            f"chunk {expect_hash[:16]}… in {where} does not decompress: {e}", key=where
        ) from None
    if len(raw) != raw_len or hash_bytes(raw) != expect_hash:
        raise CorruptionError(
            f"chunk {expect_hash[:16]}… in {where} is corrupt (hash mismatch); "
            "run verify() and restore from an older commit if needed",
            key=where,
        )
    return raw


def dump_json(obj: Any) -> bytes:
    """Canonical JSON: sorted keys, no spaces, UTF-8 (so equal objects hash equally)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def load_json(data: bytes, where: str) -> Any:
    """Parse JSON read from the store, reporting damage as CorruptionError naming ``where``."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise CorruptionError(f"object {where} is not valid JSON: {e}", key=where) from None


def compress_blob(data: bytes) -> bytes:
    """zstd-compress a metadata blob (tree node, index checkpoint).

    Copied out: zstd's result keeps the allocation of its worst case (the input's size),
    and a streamed commit holds many blobs until they are uploaded (a 1 KiB node of a
    25 KiB folder listing held 25 KiB)."""
    return bytes(memoryview(zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data)))


def decompress_blob(data: bytes, where: str) -> bytes:
    """Inverse of :func:`compress_blob`, reporting damage as CorruptionError."""
    try:
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    except zstandard.ZstdError as e:
        raise CorruptionError(f"object {where} does not decompress: {e}", key=where) from None


def check_format(doc: Any, what: str) -> None:
    """Refuse ``doc`` (a config, commit record or store marker) of a newer format.

    ``doc["format"]`` (absent: format 1) above :data:`FORMAT_VERSION` raises
    :class:`UnsupportedFormatError` naming the release to upgrade to: ``doc["min_reader"]``
    when the writer recorded it, else the next release after this one.
    """
    if not isinstance(doc, dict):
        return
    try:
        fmt = int(doc.get("format", 1))
    except (TypeError, ValueError):
        raise CorruptionError(f"{what} has a malformed format number", key=what) from None
    if fmt <= FORMAT_VERSION:
        return
    ours = _own_version()
    need = doc.get("min_reader")
    if not isinstance(need, str) or not need.strip():
        need = _next_release(ours)
    raise UnsupportedFormatError(
        f"{what} uses on-store format {fmt}, but jupyter-volume {ours} reads formats up to "
        f"{FORMAT_VERSION}: upgrade jupyter-volume to >= {need}",
        required=need,
    )


def _own_version() -> str:
    # Read lazily: the package's __init__ is still importing this module at import time.
    try:
        from importlib.metadata import version

        return version("jupyter-volume")
    except Exception:  # noqa: BLE001 - a source checkout without metadata
        return MIN_READER[FORMAT_VERSION]


def _next_release(v: str) -> str:
    parts = v.split(".")
    try:
        return ".".join([*parts[:2], str(int(parts[2].split("+")[0]) + 1)])
    except (IndexError, ValueError):
        return f"a release newer than {v}"
