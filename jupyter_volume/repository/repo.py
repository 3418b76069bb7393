"""One volume's repository on a store: commit log, trees, packs, index, merge, verify.

Knows nothing of mounts, IPython or Jupyter. Keys, relative to ``vols/<id>/``::

    config                 format version and chunking parameters (create-only)
    log/<20-digit seq>     commit records (create-only: the one point of contention)
    head                   a hint of the newest seq (mutable, may lag; never trusted alone)
    trees/<h[:2]>/<h>      tree nodes        packs/<h[:2]>/<h>   data packs
    index/<h>              index segments and checkpoints
    intents/<base>-<txn>.<h>  a change set waiting to be carried by someone's commit
    gc/<h>                 tree nodes a gc record found unreachable (see :mod:`.gc`)
    tags/<name>, policy    tags and the retention policy (mutable; see :mod:`.gc`)

Packs, index segments and tree nodes go up side by side (a commit's last tree nodes
while its last pack and segment are still on their way), and the log record only once
every one of them has landed, so a crash at any point leaves the volume readable at
its previous commit; what the crash left behind is an orphan for garbage collection.

Many writers (group commit): a writer that loses the race for ``log/<seq>`` and has no
caller check publishes its change set as an immutable *intent* and waits. Whoever next
writes a record folds every pending intent whose paths are disjoint from the others it
carries (in key order) into that one commit and names their txn ids in
``extra["carried"]``; a waiting writer learns from the log that its change landed. So N
racing writers cost O(N) requests per round instead of each loser re-applying and
retrying (O(N^2)). An intent is whole or absent (one PUT); once carried it is never
carried again (its txn is in the log). Its writer renews it while it waits (every
``INTENT_RENEW``); one not renewed for ``INTENT_LEASE`` (its writer died) is dropped,
never applied late, and a writer's later mount of the same folder withdraws one still
listed with a record that no carrier can build past (:meth:`Repository.withdraw`).

Format versions: ``config`` holds ``format`` (and ``min_reader``, the oldest release that
reads it); a commit record may hold them too (absent: format 1), so a volume upgraded in
place says so in the commit that upgraded it; an optional ``format`` object at the
store's root does the same for the whole store. A reader refuses anything newer than
:data:`~.codec.FORMAT_VERSION` before reading it (:func:`~.codec.check_format`).
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import io
import os
import random
import socket
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from .._libc import preallocate
from .._pools import Beside, SharedPool, beside
from ..errors import CollectedMeanwhileError, ConflictError, CorruptionError, NotFoundError
from ..store import ObjectInfo, Store
from . import keeper
from .chunkcache import SizeBound
from .codec import (
    CHUNK_AVG,
    CHUNK_MAX,
    CHUNK_MIN,
    CODEC_ZSTD,
    FORMAT_VERSION,
    INLINE_MAX,
    MIN_READER,
    Compressor,
    _read_upto,
    check_format,
    compress_blob,
    cut_chunks,
    decode_chunk,
    decompress_blob,
    dump_json,
    hash_bytes,
    load_json,
)
from .packs import (
    PACK_TARGET,
    ChunkIndex,
    ChunkLoc,
    ChunkMap,
    PackWriter,
    encode_segment,
    parse_pack_header,
)
from .tree import (
    DIR,
    EMPTY_NODE,
    EMPTY_TREE,
    FILE,
    ApplyStats,
    Entry,
    TreeBuilder,
    Trees,
    _node_pool,
    node_json,
    overlay,
)

COMPACT_AT = 32  # index objects listed in a record before a writer compacts them
#: the ``head`` hint is written by every commit whose seq is a multiple of this: a reader
#: lists (or, on a local folder, looks at) the log past the hint anyway, which finds the
#: few records since in the same request, and the other commits save a round trip
HEAD_HINT_EVERY = 16
RECORDS_KEPT = 1024  # commit records a repository keeps in memory (the latest used)
LOG_AHEAD = 32  # commit records the log reads ahead, in parallel
OBJECT_CACHE_BYTES = 1 << 30  # tree nodes and index segments kept on disk, all volumes
SHARD_AT = 200_000  # chunks per checkpoint before it is sharded by hash prefix
FOLD_KEEPS_AT_MOST = COMPACT_AT - 8  # index objects a partial fold leaves before its own
MAX_COMMIT_ATTEMPTS = 200
READ_REQUEST_MAX = 8 << 20  # coalesce neighbouring chunks into GETs up to this size
READ_AHEAD_BYTES = 64 << 20
#: The same for a big file written into place (``Repository.read_into``): a whole pack
#: per request. A pack is sealed once it reaches PACK_TARGET, so it holds up to one chunk
#: more; 16 MiB ranges cost two requests per pack, one of them tiny, and every request
#: costs the store and botocore CPU (a 1 GiB mount from SeaweedFS, 8 alternating rounds:
#: 1.16 s against 1.35 s, median CPU 1.10 s against 1.24 s; 8 MiB before that: 1.54 s).
#: At most BIG_READ_AHEAD_BYTES (and a request) of buffers per file being read.
BIG_READ_REQUEST_MAX = PACK_TARGET + CHUNK_MAX
BIG_READ_AHEAD_BYTES = 128 << 20
CACHE_MIN_FILE = 64 << 10  # chunks of smaller files are not kept in the local chunk cache
#: Reads of one object from the store before a hash mismatch is reported: a flipped bit
#: on the wire (a faulty proxy, NIC or middlebox) is not the store's damage.
READ_ATTEMPTS = 3
#: Group commit. An intent of this machine's line (see .line) older than this is dropped
#: (its writer waits too long: it puts it in line again).
INTENT_TTL = 300.0
#: An intent on the store that its writer has not renewed for this long (by the store's
#: listing time), or based more than INTENT_WINDOW commits back, is dropped instead of
#: carried: its writer is gone. Carried for as long as INTENT_TTL, a dead writer's change
#: set landed minutes after the death, over versions written since (another writer's,
#: or its own folder's, committed again after a remount). A waiting writer renews it
#: every INTENT_RENEW (a touch: waits that long are rare, so the common path pays
#: nothing); the rest of the lease is the margin for a stalled writer and for clocks (a
#: carrier compares the store's listing times with its own clock: one running more than
#: this much ahead drops live intents, which their writers then publish again).
INTENT_LEASE = 60.0
INTENT_RENEW = 10.0
GRACE_REREAD = 300.0  # seconds a process trusts the gc grace period it read
INTENT_WINDOW = 512
#: A carried intent still listed this long after it was written is deleted by whoever
#: lists it; a younger one by the next writer to publish a record (the writer that
#: carried it normally deletes it at once).
INTENT_LEFT_BEHIND = 10.0
#: Intents carried by one commit at most (bounds the size of one record and apply).
FOLD_MAX = 128
#: A waiting writer whose intent is not first in line folds by itself once the log has
#: not moved for this long, times (1 + its place in line, at most LEADER_STEPS): the
#: next in line takes over from a leader that died, and the rest do not all race for
#: the log slot at once (on S3 servers a contended conditional PUT can wait seconds,
#: and a round carrying 60 intents took longer than 4 s on a busy 2-core machine: with
#: at most 8 steps, 55 writers folded the same line at once).
LEADER_GRACE = 0.5
LEADER_STEPS = 64
#: Mean seconds between a waiting writer's looks at the log (at least: with many
#: writers waiting, each looks less often, see Repository._wait_turn).
WAIT_POLL = 0.025
#: A writer lists pending intents before its first attempt when it lost a race within
#: this many seconds, and otherwise at most this often (an intent whose writer died is
#: then carried by the next commit).
INTENT_PROBE = 2.0
#: Kinds of commit that carry others' intents (a restore or gc record never does).
FOLD_KINDS = ("commit", "auto")
#: A writer whose intent is published waits at most this long for it to land.
MAX_COMMIT_SECONDS = 600.0
MAX_WAIT_ROUNDS = 1_000_000

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

_upload_pool = SharedPool(12, "jv-upload")
#: a commit's last uploads, waited for beside its look at the head (not on the upload
#: pool, whose threads the wait needs)
_finish_pool = SharedPool(4, "jv-finish")
_download_pool = SharedPool(12, "jv-download")
#: repositories this process created lately, for their first opener (see take_created)
_created: dict[tuple[str, str], Repository] = {}
_created_lock = threading.Lock()
_CREATED_KEPT = 16


class _Buffers:
    """Read buffers of one read operation, each reused by its next request (at most one
    per download thread is made): a big file read in 8 MiB ranges into a new object per
    range touched fresh memory for every range, which the kernel must fault in."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._spare: list[bytearray] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def take(self, need: int, size: int | None = None) -> Iterator[bytearray]:
        """A buffer of at least ``need`` bytes (of ``size``, default the pool's, unless
        more is needed)."""
        with self._lock:
            buf = self._spare.pop() if self._spare else None
        if buf is None or len(buf) < need:
            buf = bytearray(max(need, self.size if size is None else size))
        try:
            yield buf
        finally:
            with self._lock:
                self._spare.append(buf)


class _SharedBuffers(_Buffers):
    """Read buffers shared by every big file being read at once (``read_into``): a
    buffer is taken on a download thread for one request, so no more are made than
    there are download threads, however many files are read together (a buffer pool per
    file kept each file's own: eight 96 MiB files mounted together peaked at 505 MiB).
    Between files they are used again; when the last reader ends they are dropped, so an
    idle process keeps none."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self._readers = 0

    @contextlib.contextmanager
    def reading(self) -> Iterator[_SharedBuffers]:
        """Count one reader for as long as the block runs."""
        with self._lock:
            self._readers += 1
        try:
            yield self
        finally:
            with self._lock:
                self._readers -= 1
                if not self._readers:
                    self._spare.clear()


_big_buffers = _SharedBuffers(BIG_READ_REQUEST_MAX)


def _pwrite_all(fd: int, data: memoryview, offset: int) -> int:
    """``os.pwrite`` all of ``data`` at ``offset`` (a short write is continued)."""
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], offset + done)
    return done


def default_author() -> str:
    """``user`` for commit records (from $JUPYTER_VOLUME_AUTHOR or the login name)."""
    env = os.environ.get("JUPYTER_VOLUME_AUTHOR")
    if env:
        return env
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


@dataclass(frozen=True)
class CommitRecord:
    """One entry of the commit log (immutable once written)."""

    seq: int
    parent: int | None
    root: str
    index: list[str]
    txn: str
    time: float
    author: str
    host: str
    message: str
    kind: str = "commit"
    stats: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def gc_pointer(self) -> int | None:
        """The seq of the newest garbage-collection record at or before this one."""
        if self.kind == "gc":
            return self.seq
        g = self.extra.get("gc")
        return int(g) if g is not None else None

    def to_bytes(self) -> bytes:
        return dump_json(
            {
                "seq": self.seq,
                "parent": self.parent,
                "root": self.root,
                "index": self.index,
                "txn": self.txn,
                "time": self.time,
                "author": self.author,
                "host": self.host,
                "message": self.message,
                "kind": self.kind,
                "stats": self.stats,
                "extra": self.extra,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> CommitRecord:
        d = load_json(data, where)
        check_format(d, f"commit record {where}")
        try:
            return cls(
                seq=int(d["seq"]),
                parent=d["parent"],
                root=d["root"],
                index=list(d["index"]),
                txn=d["txn"],
                time=float(d["time"]),
                author=d.get("author", ""),
                host=d.get("host", ""),
                message=d.get("message", ""),
                kind=d.get("kind", "commit"),
                stats=dict(d.get("stats", {})),
                extra=dict(d.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError):
            raise CorruptionError(f"commit record {where} is malformed", key=where) from None


_object_bounds: dict[Path, SizeBound] = {}
_object_bounds_lock = threading.Lock()


class ObjectCache:
    """A local folder of immutable store objects (tree nodes, index segments), keyed by
    store key.

    Purely an optimisation: a missing or damaged file is fetched again. Only bytes that
    passed their hash check are put here (see :meth:`Repository._get_verified`), and an
    entry that fails its check when read is dropped. Writes are atomic (temp file +
    rename) so concurrent processes can share it. The files under ``bound_root`` (all
    volumes' object caches by default) stay within ``OBJECT_CACHE_BYTES``, least
    recently used out first: a reader of a volume whose big folders change often
    fetched a new tree node at every reload (96 KB a commit for a folder of 2,000
    files), and kept every one.
    """

    def __init__(self, root: Path | None, bound_root: Path | None = None) -> None:
        self.root = root
        self._bound: SizeBound | None = None
        if root is not None:
            at = Path(bound_root or root)
            with _object_bounds_lock:
                bound = _object_bounds.get(at)
                if bound is None or bound.max_bytes != OBJECT_CACHE_BYTES:
                    bound = _object_bounds[at] = SizeBound(at, OBJECT_CACHE_BYTES)
            self._bound = bound

    def get(self, key: str) -> bytes | None:
        if self.root is None:
            return None
        path = self.root / key
        try:
            data = path.read_bytes()
        except OSError:
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: pruned last
        return data

    def put(self, key: str, data: bytes) -> None:
        if self.root is None or self._bound is None:
            return
        path = self.root / key
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".tmp-{uuid.uuid4().hex}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError:
            return
        self._bound.added(len(data))

    def drop(self, key: str) -> None:
        if self.root is not None:
            try:
                (self.root / key).unlink()
            except OSError:
                pass


#: The gc record an intent's change set was staged under, when the intent does not say
#: (written by an older release): stale under any gc record, fresh where none ran.
UNKNOWN_GC = -1


def _newer_gc(gc: int | None, than: int | None) -> bool:
    """True when gc record ``gc`` is newer than gc record ``than`` (None: none ran)."""
    return gc is not None and (than is None or gc > than)


#: :meth:`Repository.ensure_index` called without ``gc``: keys and gc are the head's
_HEAD_GC: Any = object()


def _stale(gc: int | None, head: CommitRecord) -> bool:
    """True when a change set staged under gc record ``gc`` (None: before any) may
    reference data a later gc found dead: a gc record landed since (``head`` says which
    one is in force). Its reused chunks must then be found again, or copied out."""
    if gc == UNKNOWN_GC:
        return head.gc_pointer is not None
    return gc != head.gc_pointer


@dataclass(frozen=True)
class Seen:
    """What a change set was staged against: the chunk index its reused chunks were
    found in (``index``), the gc record in force then (``gc``, None: none yet) and the
    head seq whose index that was (``seq``, None: unknown).

    A gc that lands before the change set is committed replaces the repository's index
    with one that no longer lists the chunks it found dead; their old locations are
    found here (see :meth:`Repository._rescue_condemned`)."""

    index: ChunkIndex
    gc: int | None
    seq: int | None

    def stale(self, head: CommitRecord) -> bool:
        return _stale(self.gc, head)


class Writer:
    """Stages file contents for one commit: chunks, dedups, compresses, packs, uploads.

    ``file_entry`` returns the tree :class:`Entry` for a stream; nothing is visible to
    anyone until :meth:`Repository.commit` writes the log record.
    """

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        repo.ensure_index()
        #: the chunk locations this writer deduplicates against, and the gc record in
        #: force for them: if a gc lands before the commit, the repository's index is
        #: replaced by one without what gc found dead, and the commit finds the old
        #: locations here (see Repository._rescue_condemned)
        self.seen = repo._seen_now()
        #: pack key -> when (monotonic) its PUT, or its latest touch, started: the
        #: keeper keeps these young while the commit is in the making (see .keeper)
        self.uploads: dict[str, float] = {}
        self._uploads_lock = threading.Lock()
        self.packs = PackWriter(self._put_pack, _upload_pool)
        self._comp = Compressor()
        self.bytes_in = 0
        #: content of small files kept in the tree itself (not in packs): stored anew by
        #: every commit that writes it, so counted as new data
        self.inline_bytes = 0

    def _put_pack(self, pack_id: str, data: bytes) -> None:
        start = time.monotonic()
        self.repo._put_pack(pack_id, data)
        self.uploaded(self.repo._pack_key(pack_id), start)

    def uploaded(self, key: str, start: float) -> None:
        """Object ``key`` of this commit landed (its PUT started at monotonic ``start``):
        the keeper keeps it young until the commit is over (see .keeper)."""
        with self._uploads_lock:  # packs land on several upload threads at once
            first = not self.uploads
            self.uploads[key] = start
        if first:
            keeper.register(self)

    def write_stream(
        self,
        stream: IO[bytes],
        progress: Callable[[int], None] | None = None,
        previous: list[tuple[str, int]] | None = None,
    ) -> tuple[bytes | None, list[tuple[str, int]] | None, int]:
        """Store a stream; return ``(inline_bytes, None, size)`` or ``(None, chunks, size)``.

        ``previous``: the chunk list of an earlier version of this file, if known; the
        chunks it shares are recognized by hash without re-running the chunker (the
        result is the same either way, only faster; see :func:`cut_chunks`).
        """
        head = stream.read(INLINE_MAX + 1)
        if head is None:
            head = b""
        if len(head) > INLINE_MAX:
            head = bytes(head) + _read_upto(stream, CHUNK_MIN + 1 - len(head))
        if len(head) <= CHUNK_MIN:
            return self._small(head, progress)
        index = self.seen.index  # one snapshot: what the commit can find again
        packs = self.packs
        chunks: list[tuple[str, int]] = []
        size = 0
        try_zstd: bool | None = None
        # read into the pack buffer itself: a new raw chunk is stored where it was cut
        with packs.window() as window:
            for mv, h in cut_chunks(stream, head, previous=previous, window=window):
                n = len(mv)
                if try_zstd is None:  # the first chunk decides for the whole file
                    codec, stored = self._comp.compress(mv, True)
                    try_zstd = codec == CODEC_ZSTD
                    if not packs.has(h) and h not in index:
                        packs.add(h, codec, stored, n)
                elif not packs.has(h) and h not in index:
                    codec, stored = self._comp.compress(mv, try_zstd)
                    packs.add(h, codec, stored, n)
                chunks.append((h, n))
                size += n
                if progress:
                    progress(n)
        self.bytes_in += size
        return None, chunks, size

    def _small(
        self, data: bytes, progress: Callable[[int], None] | None = None
    ) -> tuple[bytes | None, list[tuple[str, int]] | None, int]:
        """:meth:`write_stream` of content of at most ``CHUNK_MIN`` bytes."""
        n = len(data)
        self.bytes_in += n
        if n <= INLINE_MAX:
            self.inline_bytes += n
            if progress:
                progress(n)
            return bytes(data), None, n
        # The chunker never cuts below CHUNK_MIN, so this is one chunk (the same one
        # cut_chunks would yield), found without setting up a chunker.
        h = hash_bytes(data)
        if h not in self.seen.index:
            # compressed in a batch on another thread while the caller reads on (unless
            # this writer has it already: add_raw looks)
            self.packs.add_raw(h, data if type(data) is bytes else bytes(data))
        if progress:
            progress(n)
        return None, [(h, n)], n

    def file_entry(
        self,
        stream: IO[bytes],
        *,
        mode: int = 0o644,
        mtime_ns: int | None = None,
        progress: Callable[[int], None] | None = None,
        previous: Entry | None = None,
    ) -> Entry:
        """Store ``stream`` and return the file entry that references it (name left empty).

        ``previous``: the entry of an earlier version of the same file, if known (makes
        committing a big file with small edits cheaper; the result is the same).
        """
        prev = previous.chunks if previous is not None and previous.kind == FILE else None
        return _file_entry(self.write_stream(stream, progress, prev), mode, mtime_ns)

    def bytes_entry(self, data: bytes, *, mode: int = 0o644, mtime_ns: int | None = None) -> Entry:
        """Like :meth:`file_entry` for bytes in memory."""
        if len(data) > CHUNK_MIN:
            return self.file_entry(io.BytesIO(data), mode=mode, mtime_ns=mtime_ns)
        return _file_entry(self._small(data), mode, mtime_ns)

    def abort(self) -> None:
        """Stop: wait for in-flight uploads; what was uploaded stays as orphans for GC."""
        self.packs.abort()
        keeper.unregister(self)


def _file_entry(
    stored: tuple[bytes | None, list[tuple[str, int]] | None, int], mode: int, mtime_ns: int | None
) -> Entry:
    """The file entry (name left empty) for what :meth:`Writer.write_stream` returned."""
    inline, chunks, size = stored
    return Entry(
        "",
        FILE,
        mode,
        size,
        time.time_ns() if mtime_ns is None else mtime_ns,
        inline=inline,
        chunks=chunks,
    )


def _releasing_writer(method: F) -> F:
    """A commit method that ends its ``writer``'s part: whether it published, refused or
    failed, the keeper stops keeping that writer's uploads young (see :mod:`.keeper`)."""

    @functools.wraps(method)
    def run(self: Repository, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        finally:
            writer = kwargs.get("writer")
            if writer is not None:
                keeper.unregister(writer)

    return run  # type: ignore[return-value]


class _NodeUploads:
    """Pending tree nodes, put in parallel on the upload pool; a streamed commit lets a
    batch go up while it builds on: one batch in flight at a time (a new one first waits
    for the last), so memory stays bounded. A node counts as on the store only once its
    PUT has succeeded."""

    def __init__(self, repo: Repository) -> None:
        self._repo = repo
        self._batch: dict[str, bytes] = {}
        self._futures: list[Future[None]] = []

    def start(self) -> None:
        """Send every pending node (after the previous batch has landed)."""
        self.wait()
        trees = self._repo.trees
        self._batch = dict(trees.pending)
        trees.uploading = self._batch
        trees.pending.clear()
        put, key = self._repo.store.put, self._repo._tree_key
        self._futures = [_upload_pool.submit(put, key(h), blob) for h, blob in self._batch.items()]

    def in_flight(self) -> list[Future[None]]:
        """The PUTs of the batch in flight."""
        return list(self._futures)

    def wait(self, quiet: bool = False) -> int:
        """Wait for the batch in flight; re-raise a failed PUT (``quiet``: ignore it).
        Returns how many nodes it held."""
        futures, self._futures = self._futures, []
        batch, self._batch = self._batch, {}
        error: BaseException | None = None
        for f in futures:
            try:
                f.result()
            except BaseException as e:
                error = error or e
        trees = self._repo.trees
        if trees.uploading is batch:
            trees.uploading = {}
        if error is not None:
            if quiet:
                return 0
            raise error
        trees.mark_on_store(batch)
        return len(batch)


class _Intent:
    """A published change set waiting to be carried by a commit (immutable on the store).

    Key ``intents/<base seq>-<txn>.<blake3 of the JSON>``: the base is the head its
    writer lost on (only records after it can have carried it), the hash lets a reader
    check the bytes before using them.
    """

    __slots__ = (
        "author",
        "base",
        "blob",
        "changes",
        "gc",
        "index",
        "key",
        "kind",
        "message",
        "nbytes",
        "paths",
        "renewed",
        "since",
        "txn",
    )

    def __init__(
        self,
        key: str,
        base: int,
        txn: str,
        changes: dict[str, Entry | str | None],
        index: list[str],
        kind: str = "commit",
        blob: bytes = b"",
        author: str = "",
        message: str = "",
        nbytes: int = 0,
        gc: int | None = UNKNOWN_GC,
    ) -> None:
        self.key, self.base, self.txn = key, base, txn
        #: the gc record in force when its change set was staged (see :class:`Seen`): a
        #: commit on a head under another one cannot carry it, since only its writer
        #: knows where the data it reused was (the writer commits it itself)
        self.gc = gc
        self.changes, self.index, self.kind, self.blob = changes, index, kind, blob
        self.author, self.message = author, message
        self.nbytes = nbytes  # what its writer stored for it (the record's "bytes_new")
        self.paths = list(changes)
        self.since = time.monotonic()
        self.renewed = self.since  # when its writer last stored or touched it

    @property
    def digest(self) -> str:
        """The hash its key ends with (of its uncompressed contents)."""
        return self.key.rsplit(".", 1)[-1]

    @classmethod
    def make(
        cls,
        prefix: str,
        base: int,
        txn: str,
        changes: dict[str, Entry | str | None],
        index: list[str],
        author: str,
        kind: str = "commit",
        message: str = "",
        nbytes: int = 0,
        gc: int | None = UNKNOWN_GC,
    ) -> _Intent:
        rows = [
            [p, c if c is None or isinstance(c, str) else c.encode()] for p, c in changes.items()
        ]
        raw = dump_json(
            {
                "v": 1,
                "base": base,
                "txn": txn,
                "index": index,
                "author": author,
                "kind": kind,
                "time": time.time(),
                "changes": rows,
                "message": message,
                "bytes": nbytes,
                "gc": gc,
            }
        )
        key = f"{prefix}intents/{base:020d}-{txn}.{hash_bytes(raw)}"
        return cls(
            key, base, txn, changes, index, kind, compress_blob(raw), author, message, nbytes, gc
        )

    @staticmethod
    def parse_key(key: str) -> tuple[int, str, str] | None:
        name = key.rsplit("/", 1)[-1]
        try:
            head, h = name.split(".", 1)
            base, txn = head.split("-", 1)
            return int(base), txn, h
        except ValueError:
            return None

    @classmethod
    def load(cls, key: str, h: str, stored: bytes) -> _Intent:
        """Parse an intent read from the store; CorruptionError if it does not match its hash."""
        raw = decompress_blob(stored, key)
        if hash_bytes(raw) != h:
            raise CorruptionError(f"intent {key} is corrupt (hash mismatch)", key=key)
        d = load_json(raw, key)
        check_format(d, f"intent {key}")
        try:
            changes: dict[str, Entry | str | None] = {}
            for path, c in d["changes"]:
                changes[path] = c if c is None or isinstance(c, str) else Entry.decode(c, key)
            return cls(
                key,
                int(d["base"]),
                d["txn"],
                changes,
                list(d["index"]),
                d.get("kind", "commit"),
                author=str(d.get("author", "")),
                message=str(d.get("message", "")),
                nbytes=int(d.get("bytes", 0)),  # (older intents do not say)
                gc=int(d["gc"]) if d.get("gc") is not None else (None if "gc" in d else UNKNOWN_GC),
            )
        except (KeyError, TypeError, ValueError):
            raise CorruptionError(f"intent {key} is malformed", key=key) from None


class _PathSet:
    """Paths a commit changes, for telling whether another change set overlaps them
    (the same path, or one path inside the other)."""

    def __init__(self, paths: Iterable[str]) -> None:
        self.exact: set[str] = set()
        self.above: set[str] = set()  # every proper ancestor folder of a path
        self.add(paths)

    def add(self, paths: Iterable[str]) -> None:
        for p in paths:
            self.exact.add(p)
            i = p.find("/")
            while i != -1:
                self.above.add(p[:i])
                i = p.find("/", i + 1)

    def overlaps(self, paths: Iterable[str]) -> bool:
        for p in paths:
            if p in self.exact or p in self.above:
                return True
            i = p.find("/")
            while i != -1:
                if p[:i] in self.exact:
                    return True
                i = p.find("/", i + 1)
        return False


@dataclass
class LocalRound:
    """Change sets of other writers on this machine for one commit to carry (see
    :mod:`.line`), and what became of them.

    ``segments``: index segments of theirs not on the store yet (the commit stores them,
    merged). ``base``: when set, some of them may already have landed (a leader died or
    failed mid-round): records after ``base`` are checked before each attempt. Filled in
    by the commit: ``carried`` (in the record it returns, or, when that is None, nothing
    needed committing for them), ``landed`` (txn -> the record that already held it).
    """

    members: list[_Intent]
    segments: dict[str, bytes] = field(default_factory=dict)
    base: int | None = None
    carried: list[_Intent] = field(default_factory=list)
    landed: dict[str, CommitRecord] = field(default_factory=dict)
    added: dict[str, bytes] = field(default_factory=dict)  # index segments the record added
    #: the leader's own member (its txn), what it was staged against and the chunks its
    #: writer stored: a member staged before a gc that landed since is carried only by
    #: its own writer, the one that knows where the data it reused was
    own: str | None = None
    own_seen: Seen | None = None
    own_locs: ChunkMap | None = None

    def describe(self, carried: list[_Intent]) -> tuple[str, str]:
        """The message and author of this round's record, which carries ``carried``: the
        one writer's own, or the first one's message and how many more change sets the
        record holds (a member that landed before is not among them)."""
        if len(carried) == 1:
            return carried[0].message, carried[0].author
        lead = carried[0].message if carried else ""
        more = f" (and {len(carried) - 1} more)" if len(carried) > 1 else ""
        return lead + more, default_author()


class _RecentRecords:
    """The commit records a repository read or wrote lately, at most ``RECORDS_KEPT``
    (the least recently used leave first). A record never changes, so one that left is
    read again when needed; without a bound a long-lived process (a kernel committing
    in the background for days, the Jupyter server showing history) kept every record
    it ever saw, about 4 KB each. Thread-safe."""

    def __init__(self) -> None:
        self._recs: OrderedDict[int, CommitRecord] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, seq: int) -> CommitRecord | None:
        with self._lock:
            rec = self._recs.get(seq)
            if rec is not None:
                self._recs.move_to_end(seq)
            return rec

    def __setitem__(self, seq: int, rec: CommitRecord) -> None:
        with self._lock:
            self._recs[seq] = rec
            self._recs.move_to_end(seq)
            while len(self._recs) > RECORDS_KEPT:
                self._recs.popitem(last=False)

    def __contains__(self, seq: object) -> bool:
        return seq in self._recs

    def __len__(self) -> int:
        return len(self._recs)


@dataclass(frozen=True)
class GcState:
    """What garbage collection has done so far, as the newest gc record says."""

    seq: int | None = None
    expired: tuple[tuple[int, int], ...] = ()  # inclusive ranges of expired commit seqs
    condemned: dict[str, float] = field(default_factory=dict)  # pack -> time condemned

    def is_expired(self, seq: int) -> bool:
        return any(a <= seq <= b for a, b in self.expired)


def fold_from(counts: list[int]) -> int:
    """Where the run of newest index objects that a compaction folds into one starts,
    given each listed object's entry count, oldest first (0: fold them all).

    The run grows from the newest object back while the next older one holds at most
    twice as many entries as the run so far, so objects of about one size are folded
    together and a big, old checkpoint is left alone; it takes at least two objects and
    leaves at most ``FOLD_KEEPS_AT_MOST`` before it, so the list always shrinks well
    below ``COMPACT_AT``. An entry is then rewritten only when it is folded with about as
    many others: a few times over a volume's life, where folding the whole list every
    time rewrote a big volume's whole index every 17 commits (16 shards + 17 > 32).
    """
    i = len(counts) - 1
    run = counts[i]
    while i > 0 and (i > FOLD_KEEPS_AT_MOST or len(counts) - i < 2 or counts[i - 1] <= 2 * run):
        i -= 1
        run += counts[i]
    return i


def checkpoint_shards(entries: dict[str, ChunkLoc]) -> list[dict[str, ChunkLoc]]:
    """``entries`` as the index objects of a checkpoint: one, or (more than ``SHARD_AT``)
    16 by the first hex digit of the hash, so that a reader loads them in parallel."""
    if len(entries) <= SHARD_AT:
        return [entries]
    shards: list[dict[str, ChunkLoc]] = [{} for _ in range(16)]
    for h, loc in entries.items():
        shards[int(h[0], 16)][h] = loc
    return [shard for shard in shards if shard]


def seq_ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Compress sorted seqs into inclusive ranges: [1,2,3,7] -> [(1,3),(7,7)]."""
    out: list[tuple[int, int]] = []
    for s in sorted(set(seqs)):
        if out and out[-1][1] == s - 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


@dataclass
class VerifyReport:
    """The result of :meth:`Repository.verify`."""

    commits: int = 0
    trees: int = 0
    chunks: int = 0
    packs: int = 0
    bytes_read: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


class Repository:
    """The versioned contents of one volume, stored under ``vols/<id>/`` of ``store``."""

    def __init__(self, store: Store, vol_id: str, *, cache_dir: Path | None = None) -> None:
        self.store = store
        self.vol_id = vol_id
        #: the volume's name, for messages (None: unnamed, or opened by id)
        self.name: str | None = None
        self.prefix = f"vols/{vol_id}/"
        if cache_dir is None:
            from ..paths import cache_dir as default_cache

            objects = default_cache() / "objects"
            cache_dir = objects / hash_bytes(store.url.encode())[:16] / vol_id
            self.cache = ObjectCache(cache_dir, bound_root=objects)
        else:
            self.cache = ObjectCache(cache_dir if cache_dir != Path("/dev/null") else None)
        self.trees = Trees(self._fetch_tree)
        #: the chunk locations this process knows, as of the gc record in force for the
        #: newest head it saw (``index.gc``); replaced by an empty one when it sees a newer
        #: gc record (see :meth:`_follow_gc`)
        self.index = ChunkIndex()
        self._index_lock = threading.Lock()
        self._records = _RecentRecords()
        self._head_seq: int | None = None
        self._commit_lock = threading.RLock()
        self.chunk_cache: Any = None  # optional: get(hash) -> bytes | None, put(hash, bytes)
        self._doomed: tuple[int | None, frozenset[str]] = (None, frozenset())
        self._grace: tuple[float, float] | None = None  # (gc grace, when read)
        self._format_checked = False
        # group commit: when this process last listed intents / last lost a race
        self._intents_listed = 0.0
        self._waiting = 1  # writers seen waiting at the last listing of intents
        self._contended_until = 0.0
        self._intent_cache: dict[str, _Intent] = {}  # verified intents, by key
        self._carried_left: list[str] = []  # carried intents still listed (see _pending_keys)
        from .line import line_for

        #: Where this machine's writers of the volume line up (None: on the store only).
        self.line = line_for(store, vol_id)

    # -- keys ------------------------------------------------------------------------
    def _log_key(self, seq: int) -> str:
        return f"{self.prefix}log/{seq:020d}"

    def _tree_key(self, h: str) -> str:
        return f"{self.prefix}trees/{h[:2]}/{h}"

    def _pack_key(self, h: str) -> str:
        return f"{self.prefix}packs/{h[:2]}/{h}"

    # -- creation ----------------------------------------------------------------------
    @classmethod
    def create(
        cls, store: Store, vol_id: str, *, author: str | None = None, message: str = "create volume"
    ) -> Repository:
        """Write a new empty repository (config, empty tree, commit 0).

        Refused (UnsupportedFormatError) in a store marked with a newer format.
        """
        repo = cls(store, vol_id)
        repo._check_store_format()
        cfg = {
            "format": FORMAT_VERSION,
            "hash": "blake3",
            "compression": "zstd",
            "chunker": {
                "algorithm": "fastcdc2020",
                "min": CHUNK_MIN,
                "avg": CHUNK_AVG,
                "max": CHUNK_MAX,
            },
            "inline_max": INLINE_MAX,
            "min_reader": MIN_READER[FORMAT_VERSION],
        }
        # the config and the empty tree do not depend on each other: sent side by side
        with beside(store.put, repo._tree_key(EMPTY_TREE), compress_blob(EMPTY_NODE)) as tree:
            store.put_if_absent(repo.prefix + "config", dump_json(cfg))
        tree.result()
        rec = CommitRecord(
            0,
            None,
            EMPTY_TREE,
            [],
            uuid.uuid4().hex,
            time.time(),
            author or default_author(),
            socket.gethostname(),
            message,
            kind="create",
        )
        if store.put_if_absent(repo._log_key(0), rec.to_bytes()):
            # It knows its format and head: the first opener in this process takes it
            # (see :meth:`take_created`) instead of reading them back.
            repo._format_checked = True
            repo._records[0] = rec
            repo._head_seq = 0
            with _created_lock:
                _created[(store.url, vol_id)] = repo
                while len(_created) > _CREATED_KEPT:
                    del _created[next(iter(_created))]
        return repo

    @staticmethod
    def take_created(store: Store, vol_id: str) -> Repository | None:
        """The repository of volume ``vol_id`` if this process created it lately through
        this very ``store`` object and nobody took it yet (it knows its format and commit
        0, which an opener would otherwise read back: two round trips), else None. (Not
        through another object of the same URL: a wrapper's requests must reach it.)"""
        with _created_lock:
            repo = _created.get((store.url, vol_id))
            if repo is None or repo.store is not store:
                return None
            del _created[(store.url, vol_id)]
            return repo

    # -- reading the log ----------------------------------------------------------------
    def record(self, seq: int) -> CommitRecord:
        """The commit record ``seq``; NotFoundError if there is none."""
        rec = self._records.get(seq)
        if rec is None:
            key = self._log_key(seq)
            # A record has no hash to check, but a damaged one is usually malformed JSON or
            # names another seq: read it again before reporting it (see READ_ATTEMPTS).
            for attempt in range(READ_ATTEMPTS):
                if attempt:
                    time.sleep(0.05 * attempt)
                try:
                    data = self.store.get(key)
                except NotFoundError:
                    where = f"volume {self.name!r}" if self.name else "this volume"
                    newest = self._head_seq
                    if newest is not None and seq > newest:
                        where += f" (its newest commit is {newest})"
                    raise NotFoundError(f"commit {seq} does not exist in {where}") from None
                try:
                    rec = CommitRecord.from_bytes(data, key)
                    if rec.seq != seq:
                        raise CorruptionError(f"commit record {key} says it is {rec.seq}", key=key)
                    break
                except CorruptionError:
                    if attempt + 1 == READ_ATTEMPTS:
                        raise
            assert rec is not None
            self._records[seq] = rec
        return rec

    def check_format(self) -> None:
        """Refuse a store or volume written in a newer on-store format (once per instance).

        Raises :class:`~jupyter_volume.errors.UnsupportedFormatError`; a missing marker
        or config means format 1 (the store marker is optional, and a missing volume is
        reported by whatever reads it next).
        """
        if self._format_checked:
            return
        key = self.prefix + "config"
        with beside(self.store.get_or_none, key) as config:  # asked for beside the marker
            self._check_store_format()
        raw = config.result()
        doc = load_json(raw, key) if raw is not None else None
        check_format(doc, f"volume {self.vol_id} in {self.store.url}")
        self._format_checked = True

    def _check_store_format(self) -> None:
        raw = self.store.get_or_none("format")
        if raw is None:
            return  # no marker: format 1 (a format that changes the store's layout writes one)
        check_format(load_json(raw, "format"), f"the store {self.store.url}")

    @property
    def known_head(self) -> int | None:
        """The newest commit this process has seen (None before the first look): no
        request, and possibly no longer the newest."""
        return self._head_seq

    def _read_hint(self) -> int | None:
        """The seq the ``head`` hint names, or None (missing or unreadable)."""
        try:
            return int(load_json(self.store.get(self.prefix + "head"), "head")["seq"])
        except (NotFoundError, CorruptionError, KeyError, TypeError, ValueError):
            return None

    def head(self, refresh: bool = True) -> CommitRecord:
        """The newest commit record. With ``refresh``, asks the store for newer ones."""
        # the first look asks for the hint beside the format checks (read only after them)
        asking = beside(self._read_hint) if self._head_seq is None else contextlib.nullcontext()
        with asking as hint:
            self.check_format()
        if self._head_seq is None or refresh:
            start = self._head_seq
            hinted = False
            if start is None:
                start = hint.result() if hint is not None else self._read_hint()
                hinted = start is not None
            newest = self._newest_seq(start)
            if hinted and newest == start:
                # The hint may lag, or arrive damaged (a flipped digit): it must name a real
                # commit, else one bad read would stick to this process's head for good.
                try:
                    self.record(newest)  # type: ignore[arg-type]
                except NotFoundError:
                    newest = self._newest_seq(None)
            if newest is None:
                raise NotFoundError(f"volume {self.vol_id} has no commit log (was it deleted?)")
            # Only forward: another thread may have found (or committed) a newer head
            # while this one looked, and storing ours over it would move the head back.
            known = self._head_seq
            if known is None or newest > known:
                self._head_seq = newest
        rec = self.record(self._head_seq)  # type: ignore[arg-type]
        self._follow_gc(rec)
        return rec

    def _follow_gc(self, rec: CommitRecord) -> None:
        """Garbage collection ran (a gc record newer than the one this process follows is
        in force as of ``rec``): forget every location we knew (some packs are gone or
        condemned) and never deduplicate against condemned packs.

        Only forward: a thread that read an older record meanwhile must not bring back
        the index of an older gc. And only index objects listed under the new gc join
        the new index (see :meth:`ensure_index`)."""
        ptr = rec.gc_pointer
        if not _newer_gc(ptr, self.index.gc):
            return
        state = self.gc_state(rec)
        with self._index_lock:
            if not _newer_gc(ptr, self.index.gc):
                return
            index = ChunkIndex()
            index.dead = frozenset(state.condemned)
            index.gc = ptr
            self.index = index
            self.trees.on_store = {EMPTY_TREE}  # nodes gc deleted must be uploaded again

    def _newest_seq(self, start: int | None) -> int | None:
        """The highest seq in the log after ``start`` (``start`` itself if none is)."""
        if start is not None and self.store.cheap_stat:
            # Records above the head are consecutive (each is created as head + 1), so
            # look at the next keys instead of listing the whole log: on a local folder
            # the listing grows with every commit (0.44 ms per look at 300 commits, and
            # waiting writers look many times per commit).
            newest = start
            while True:
                try:
                    self.store.stat(self._log_key(newest + 1))
                except NotFoundError:
                    return newest
                newest += 1
        after = self._log_key(start) if start is not None else None
        newest = start
        for info in self.store.list(self.prefix + "log/", start_after=after):
            try:
                newest = max(newest or 0, int(info.key.rsplit("/", 1)[1]))
            except ValueError:
                continue
        return newest

    def gc_state(self, rec: CommitRecord | None = None) -> GcState:
        """Expired commits and condemned packs, as of ``rec`` (default: the head)."""
        rec = rec if rec is not None else self.head()
        ptr = rec.gc_pointer
        if ptr is None:
            return GcState()
        g = self.record(ptr)
        return GcState(
            ptr,
            tuple((int(a), int(b)) for a, b in g.extra.get("expired", [])),
            {k: float(v) for k, v in g.extra.get("condemned", {}).items()},
        )

    def gc_grace(self) -> float:
        """The grace period of the volume's retention policy (read again every few
        minutes): how old gc lets an object no commit names become before deleting it."""
        cached = self._grace
        if cached is not None and time.monotonic() - cached[1] < GRACE_REREAD:
            return cached[0]
        from .gc import load_policy

        grace = float(load_policy(self).grace)
        self._grace = (grace, time.monotonic())
        return grace

    def doomed_trees(self, rec: CommitRecord) -> frozenset[str]:
        """The tree nodes the gc in force as of ``rec`` found unreachable. The next gc
        deletes those still unreachable then, by name, so a commit published on ``rec``
        must not name any of them (:meth:`_avoid_doomed`)."""
        ptr = rec.gc_pointer
        if ptr is None:
            return frozenset()
        seen, nodes = self._doomed
        if seen == ptr:
            return nodes
        key = self.record(ptr).extra.get("doomed_trees")
        if not key:
            nodes = frozenset()
        else:
            try:
                blob = self._get_verified(key, self._index_check(key, "gc's list of nodes"))
            except NotFoundError:
                # Only a newer gc deletes this list, and its record lies above ``rec``:
                # a commit on ``rec`` loses its log slot whatever it names.
                return frozenset()
            nodes = frozenset(decompress_blob(blob, key).decode().split())
        self._doomed = (ptr, nodes)
        return nodes

    def _avoid_doomed(
        self, head: CommitRecord, root: str, written: set[str], named: Iterable[str]
    ) -> str:
        """``root``, or the same tree rewritten so that it names no node the gc in force
        found unreachable (see :meth:`doomed_trees`). A commit's own new nodes may repeat
        such a name (a folder put back exactly as expired history had it), and so may a
        folder it takes from an older commit (a restore, a move staged before that gc);
        any other node comes from a commit gc marked. ``written``: this commit's nodes;
        ``named``: the folders its change set takes whole."""
        doomed = self.doomed_trees(head)
        if not doomed or (
            root not in doomed and doomed.isdisjoint(written) and doomed.isdisjoint(named)
        ):
            return root
        try:
            return self.trees.rewrite_avoiding(root, doomed, written)
        except NotFoundError as e:
            raise CollectedMeanwhileError(
                "a folder this commit takes from older history was deleted by garbage "
                "collection meanwhile; nothing was committed"
            ) from e

    def is_expired(self, seq: int) -> bool:
        """True if garbage collection expired commit ``seq`` (its files may be gone)."""
        return self.gc_state().is_expired(seq)

    def log(self, limit: int | None = None, start: int | None = None) -> Iterator[CommitRecord]:
        """Commit records newest first (from ``start`` or the head).

        Records not in memory are read ``LOG_AHEAD`` at a time, in parallel: one after
        another, a history of 100 commits from a store 30 ms away took 3 s."""
        seq = self.head().seq if start is None else start
        n = 0
        while seq >= 0 and (limit is None or n < limit):
            ahead = min(LOG_AHEAD, seq + 1, LOG_AHEAD if limit is None else limit - n)
            window = range(seq, seq - ahead, -1)
            missing = [s for s in window if s not in self._records]
            if len(missing) > 1:
                for _ in _download_pool.map(self._record_or_none, missing):
                    pass
            for s in window:
                yield self.record(s)
            seq -= ahead
            n += ahead

    # -- objects -------------------------------------------------------------------------
    def _get_verified(self, key: str, check: Callable[[bytes], T], *, cache: bool = True) -> T:
        """``check(bytes)`` of object ``key``, from the local cache or else the store.

        ``check`` raises CorruptionError when the bytes do not match the object's hash.
        A damaged cache entry is dropped and fetched again; bytes from the store reach
        the cache only after passing ``check``; a mismatch from the store is read again
        (``READ_ATTEMPTS`` in all) before it is reported, since it may have been damaged
        on the way rather than on the store. ``cache=False`` bypasses the cache entirely
        (for verification, and for whole packs).
        """
        cached = self.cache.get(key) if cache else None
        if cached is not None:
            try:
                return check(cached)
            except CorruptionError:
                self.cache.drop(key)
        last: CorruptionError | None = None
        for attempt in range(READ_ATTEMPTS):
            if attempt:
                time.sleep(0.05 * attempt)
            data = self.store.get(key)
            try:
                out = check(data)
            except CorruptionError as e:
                last = e
                continue
            if cache:
                self.cache.put(key, data)
            return out
        assert last is not None
        raise CorruptionError(
            f"{last} (read {READ_ATTEMPTS} times from {self.store.url}, damaged every time)",
            key=key,
        )

    def _fetch_tree(self, h: str) -> bytes:
        return self._get_verified(self._tree_key(h), lambda data: node_json(h, data))

    @staticmethod
    def _index_check(key: str, what: str = "index object") -> Callable[[bytes], bytes]:
        """A check for an object named by the hash of its bytes (index objects, gc's
        lists of unreachable nodes)."""

        def check(data: bytes) -> bytes:
            if hash_bytes(data) != key.rsplit("/", 1)[1]:
                raise CorruptionError(f"{what} {key} is corrupt (hash mismatch)", key=key)
            return data

        return check

    def _line_index(self, key: str) -> bytes | None:
        """Index segment ``key`` as a round of writers on this machine left it (checked),
        or None: then it comes from the store."""
        if self.line is None:
            return None
        shared = self.line.segment(key)
        if shared is None:
            return None
        try:
            return self._index_check(key)(shared)
        except CorruptionError:
            return None

    def _store_index(self, key: str, *, cache: bool = True) -> bytes:
        """Index segment ``key`` from the store (or the object cache), checked."""
        return self._get_verified(key, self._index_check(key), cache=cache)

    def _fetch_index(self, key: str, *, cache: bool = True) -> bytes:
        if cache:
            # the segment a writer on this machine just added: no need to ask the store
            shared = self._line_index(key)
            if shared is not None:
                return shared
        return self._store_index(key, cache=cache)

    def get_pack_checked(self, pack: str, chunks: list[tuple[str, ChunkLoc]]) -> bytes:
        """The whole pack ``pack``, read again if any of ``chunks`` in it fails its hash.

        For garbage collection's repacking; never cached. NotFoundError if it is gone.
        """
        key = self._pack_key(pack)

        def check(data: bytes) -> bytes:
            parse_pack_header(data, key)
            for h, loc in chunks:
                decode_chunk(
                    loc.codec, data[loc.offset : loc.offset + loc.length], loc.raw_len, h, key
                )
            return data

        return self._get_verified(key, check, cache=False)

    def _put_pack(self, pack_id: str, data: bytes) -> None:
        self.store.put(self._pack_key(pack_id), data)

    def ensure_index(self, keys: list[str] | None = None, gc: int | None = _HEAD_GC) -> None:
        """Load the index objects ``keys`` not loaded yet: a record's list, and ``gc``
        the gc record in force for that record (``record.gc_pointer``); neither given,
        the head's.

        The objects join this process's index only if it is the index of that same gc:
        one listed before a gc this process has moved past (keys read before another
        thread saw the gc record, a reload's load beside its tree comparison) may locate
        chunks in packs that gc has deleted, which a commit would then reuse. Skipping
        them is safe: what a record of the newer gc reaches, its own list locates.
        """
        if keys is None:
            rec = self.head(refresh=self._head_seq is None)
            try:
                self.ensure_index(rec.index, rec.gc_pointer)
            except NotFoundError:
                # An object the head known here lists is gone: a gc (another process's)
                # ran after that head and deleted what only older records listed. The
                # newest head lists what that gc kept.
                fresh = self.head(refresh=True)
                if fresh.seq == rec.seq:
                    raise
                self.ensure_index(fresh.index, fresh.gc_pointer)
            return
        if gc is _HEAD_GC:
            raise TypeError("ensure_index(keys) needs the gc of the record that lists them")
        index = self.index
        if index.gc != gc:
            return
        self._load_into(index, keys)

    def _load_into(self, index: ChunkIndex, keys: Iterable[str]) -> None:
        """Load the index objects ``keys`` that ``index`` lacks into ``index`` (which
        must be the index of the gc in force for the record that lists them)."""
        missing = [k for k in keys if k not in index.loaded]
        if not missing:
            return
        # Segments that writers on this machine committed lately are local files: read
        # here (with dozens of writers, each loads every round's segment before its next
        # commit, and handing each to a pool thread cost more than reading it).
        remote = []
        for key in missing:
            shared = self._line_index(key)
            if shared is None:
                remote.append(key)
            else:
                index.add_object(key, shared)
        if len(remote) <= 1:
            for key in remote:
                index.add_object(key, self._store_index(key))
            return

        def load(key: str) -> tuple[str, bytes]:
            return key, self._store_index(key)

        for key, data in _download_pool.map(load, remote):
            index.add_object(key, data)

    def _index_of(self, rec: CommitRecord) -> ChunkIndex | None:
        """This process's index if it is the one of the gc in force as of ``rec`` (the
        objects ``rec`` lists may join it), else None."""
        index = self.index
        return index if index.gc == rec.gc_pointer else None

    # -- paths -----------------------------------------------------------------------------
    def lookup(self, path: str, root: str | None = None) -> Entry | None:
        """The entry at normalized ``path`` in ``root`` (default: the head's root)."""
        return self.trees.lookup(root if root is not None else self.head().root, path)

    # -- writing -----------------------------------------------------------------------------
    def writer(self) -> Writer:
        """A :class:`Writer` to stage file contents for the next commit."""
        return Writer(self)

    def _upload_trees(self) -> int:
        """Send every pending tree node and wait; returns how many were sent."""
        nodes = _NodeUploads(self)
        nodes.start()
        return nodes.wait()

    @_releasing_writer
    def commit(
        self,
        changes: dict[str, Entry | str | None],
        *,
        message: str = "",
        writer: Writer | None = None,
        kind: str = "commit",
        author: str | None = None,
        root: str | None = None,
        extra: dict[str, Any] | None = None,
        check: Callable[[CommitRecord], None] | None = None,
        local: LocalRound | None = None,
        line: bool = True,
        seen: Seen | None = None,
        fresh_head: bool = False,
        txn: str | None = None,
    ) -> tuple[CommitRecord | None, ApplyStats]:
        """Publish ``changes`` as a new commit on top of whatever the head is.

        ``changes`` maps paths to entries (staged through ``writer``) or None (delete);
        alternatively ``root`` replaces the whole tree (restore). On a lost race the change
        set is re-applied onto the new head: our paths win, every other path keeps the
        other writer's version. ``check(head)`` runs before each attempt and may raise to
        refuse the commit (uploaded data then stays as orphans for gc). Returns
        ``(None, stats)`` when nothing would change.

        Group commit: a plain change set (no ``root``, no ``check``) that loses the race
        is published as an intent and carried by the next commit (perhaps another
        process's, perhaps a later attempt of ours); the record returned is the one
        that carried it, and ``record.extra["carried"]`` then names other writers'
        changes it holds too. Any plain commit folds pending intents of others whose
        paths do not overlap its own.

        Plain change sets first line up with the other writers of this volume on this
        machine (:mod:`.line`, unless ``line`` is False or the line is off): one of them
        commits for all. ``local``: that writer's round (see :class:`LocalRound`).

        ``seen``: what the entries of ``changes`` were found in (default: ``writer``'s,
        or, with no writer, this repository's index as it is now). A change set staged
        before a gc that lands first has the data it reused and gc found dead copied
        out with it (or is refused with ConflictError when that data is gone); another
        writer's change set staged before that gc is left for its own writer to commit.

        ``fresh_head``: the caller asked the store for the head during this same operation
        (to read what it changes), so the first attempt builds on the newest head this
        repository knows instead of listing the log again: one round trip less. A head
        that moved meanwhile only loses the race for the slot, as a slow writer's does.

        ``txn``: the id this change set goes by (default: a new one), for a caller that
        notes it first so that, should it die while the change set waits to be carried,
        a later process can take it back (:meth:`withdraw`).
        """
        if seen is None:
            seen = writer.seen if writer is not None else self._seen_now()
        if (
            line
            and local is None
            and self.line is not None
            and root is None
            and kind in FOLD_KINDS
            and check is None
            and extra is None
        ):
            return self.line.commit(
                self,
                changes,
                message=message,
                writer=writer,
                kind=kind,
                author=author,
                seen=seen,
                fresh_head=fresh_head,
                txn=txn,
            )
        with self._commit_lock:
            # The writer's last uploads finish on another thread while the head is looked
            # up and the new tree is built and sent: on a remote store, round trips that
            # used to follow one another. Whatever needs the segment waits for it first.
            finishing = (
                _finish_pool.submit(self._finish_writer, writer) if writer is not None else None
            )
            seg_key: str | None = None
            bytes_new = 0
            new_locs: ChunkMap | None = None

            def finished() -> None:
                nonlocal finishing, seg_key, bytes_new, new_locs
                if finishing is not None:
                    f, finishing = finishing, None
                    seg_key, bytes_new, new_locs, _seg = f.result()

            txn = txn or uuid.uuid4().hex
            who = author or default_author()
            # Only plain change sets take part in group commit: a restore replaces the
            # whole tree, and a caller's check cannot run in another process.
            can_fold = root is None and kind in FOLD_KINDS
            can_publish = can_fold and check is None and local is None
            published: _Intent | None = None

            def publish(base: int) -> _Intent:
                # our change set as an intent, for whoever writes the next record to carry
                finished()
                intent = _Intent.make(
                    self.prefix,
                    base,
                    txn,
                    changes,
                    [seg_key] if seg_key else [],
                    who,
                    kind,
                    message,
                    nbytes=bytes_new,
                    gc=seen.gc,
                )
                self._publish_intent(intent)
                return intent

            behind_at = -1  # the head seq at which we last saw another intent ahead of ours
            seen_seq, moved_at = -1, 0.0  # the head seq seen while waiting, and since when
            grace = LEADER_GRACE  # how long a quiet log is waited out at our place in line
            place = LEADER_STEPS  # our place in line when last listed (0: first)
            quiet_for = 0.0
            stats = ApplyStats()
            known_stored: set[str] = set()  # segments of ``local`` stored by an attempt
            deadline = time.monotonic() + MAX_COMMIT_SECONDS
            # The first attempt's look for a line of waiting writers (due when none was
            # taken lately) is listed beside the head's lookup, not after it.
            probe_first = can_fold and (
                time.monotonic() - self._intents_listed > INTENT_PROBE
                or time.monotonic() < self._contended_until
            )
            line_ahead = beside(self._list_intents) if probe_first else None
            try:
                for attempt in range(MAX_COMMIT_ATTEMPTS + MAX_WAIT_ROUNDS):
                    if published is not None and time.monotonic() > deadline:
                        break
                    if published is not None and (
                        time.monotonic() - published.renewed > INTENT_RENEW
                    ):
                        self._renew_intent(published)  # (a long wait): still alive
                    # (the first attempt of a caller that has just looked: the head it saw)
                    head = self.head(refresh=not (fresh_head and attempt == 0))
                    if published is not None:
                        landed = self._find_carried(published, head)
                        if landed is not None:
                            # The writer that carried it deletes it (and if that one died,
                            # the next lister does): one delete per intent, not two.
                            self._intent_cache.pop(published.key, None)
                            return self._published(seg_key, new_locs, landed), stats
                        now = time.monotonic()
                        if head.seq != seen_seq:
                            seen_seq, moved_at = head.seq, now
                        quiet_for = now - max(published.since, moved_at)
                        if head.seq == behind_at and quiet_for < grace:
                            # Still behind someone in line and nothing new in the log: do not
                            # list the intents again (one request per look, not two).
                            self._wait_turn(place)
                            continue
                    if check is not None:
                        check(head)
                    carried: list[_Intent] = []
                    others: list[_Intent] = []  # intents of other machines' writers, in line
                    mine: list[_Intent] = []  # this machine's (``local``), not landed yet
                    if local is not None:
                        if local.base is not None and head.seq > local.base:
                            found = self._carried_txns(local.base, head)
                            for i in local.members:
                                if i.txn in found:
                                    local.landed[i.txn] = found[i.txn]
                        mine = [i for i in local.members if i.txn not in local.landed]
                    if can_fold and (
                        attempt
                        or published is not None
                        or probe_first  # (the first attempt: as decided above)
                    ):
                        listed, line_ahead = line_ahead, None
                        pending = self._pending_keys(head, listed)
                        if published is None and can_publish and pending:
                            # Others wait in line: join it instead of racing them (and whoever
                            # folds for them) for the log slot; the first in line carries all.
                            # Without this every new commit folded and compacted the whole
                            # line itself and all but one lost: 64 writers on an S3 server
                            # reached 2 commits/s.
                            published = publish(head.seq)
                            # ...and keep joining it for a while: our next commit looks for a
                            # line before racing for the slot. Without this a writer just
                            # carried went straight for the slot next time and, winning it
                            # (a commit of one change is quick), pushed back the one folding
                            # for the line: 210 of 235 records carried nothing and the rest
                            # about 55 each (64 local writers).
                            self._contended_until = time.monotonic() + INTENT_PROBE
                            pending = sorted([*pending, (published.key, published.digest)])
                            seen_seq, moved_at, quiet_for = head.seq, time.monotonic(), 0.0
                        if published is not None:
                            if published.key not in {k for k, _h in pending}:
                                # Dropped as stale, or carried by a record we have not seen
                                # yet: look once more, then publish it again (same txn, so it
                                # can never land twice).
                                landed = self._find_carried(published, self.head())
                                if landed is not None:
                                    return self._published(seg_key, new_locs, landed), stats
                                self._publish_intent(published)
                            elif pending[0][0] != published.key:
                                place = next(
                                    i for i, (k, _h) in enumerate(pending) if k == published.key
                                )
                                grace = LEADER_GRACE * (1 + min(place, LEADER_STEPS))
                                if quiet_for < grace:
                                    # Someone ahead of us in line folds; we wait and watch the log.
                                    behind_at = head.seq
                                    self._wait_turn(place)
                                    continue
                        others = self._load_intents(pending)
                    if mine or others:
                        # A change set staged before the gc in force reused data only its
                        # writer can locate (gc's index no longer lists what it found dead):
                        # it waits for its own writer, who copies that data out.
                        own_txn = local.own if local is not None else None
                        carried = self._choose_intents(
                            [
                                *(i for i in mine if i.txn == own_txn or not _stale(i.gc, head)),
                                *(
                                    i
                                    for i in others
                                    if i.txn == own_txn
                                    or not (_stale(i.gc, head) or self._overtaken(i, head))
                                ),
                            ],
                            changes,
                            own=published.key if published else None,
                        )
                    ours = [i for i in carried if i in mine]
                    written = self.trees.track()
                    try:
                        if root is not None:
                            new_root, stats = root, self._root_stats(head.root, root)
                            named: list[str] = [root]
                        else:
                            merged: dict[str, Entry | str | None] = {}
                            for intent in carried:
                                merged.update(intent.changes)
                            merged.update(changes)
                            new_root, stats = self.trees.apply(head.root, merged)
                            named = [
                                e.tree
                                for e in merged.values()
                                if isinstance(e, Entry) and e.kind == DIR and e.tree
                            ]
                        if new_root != head.root:
                            new_root = self._avoid_doomed(head, new_root, written, named)
                    finally:
                        self.trees.untrack()
                    if new_root == head.root and len(ours) == len(carried):
                        # Nothing changes (this machine's change sets alone need no record).
                        finished()
                        self.trees.pending.clear()
                        if published is not None:
                            self._drop_intents([published.key])
                        if local is not None:
                            local.carried = ours
                        return None, stats
                    nodes = _NodeUploads(self)
                    nodes.start()  # the new tree's nodes go up while the index is settled
                    try:
                        finished()
                    except BaseException:
                        nodes.wait(quiet=True)
                        raise
                    index_list = list(head.index)
                    new_keys = list(
                        dict.fromkeys(
                            k for k in [seg_key, *(k for i in carried for k in i.index)] if k
                        )
                    )
                    new_keys = [k for k in new_keys if k not in index_list]
                    known = local.segments if local is not None else {}
                    merged_seg: tuple[str, bytes] | None = None
                    try:
                        if len(new_keys) > 1:
                            # One segment per round instead of one per carried writer: every
                            # other process loads each segment a record lists before its next
                            # commit, so with N writers per round that was N loads in each of
                            # N processes.
                            merged_seg = self._merge_segments(new_keys, known)
                            if merged_seg is not None:
                                new_keys = [merged_seg[0]]
                        # segments of this machine's line that no merge stored
                        for k in new_keys:
                            if k in known and k not in known_stored:
                                self.store.put(k, known[k])
                                known_stored.add(k)
                    except BaseException:
                        nodes.wait(quiet=True)
                        raise
                    tree_puts = nodes.wait()
                    index_list.extend(new_keys)
                    # A gc landed since the change set was staged: copy out what it reused
                    # and gc found dead. Carried change sets need nothing: each was staged
                    # under the gc in force (its writer's index never offered condemned
                    # packs, and gc's index lists every chunk it kept), except the line
                    # leader's own, which it rescues here as its writer.
                    made: list[tuple[str, bytes]] = []  # index objects to join once published
                    rescued = self._rescue_condemned(head, changes, made, seen, new_locs)
                    if rescued:
                        index_list.append(rescued)
                    own_member = next(
                        (i for i in carried if local is not None and i.txn == local.own), None
                    )
                    if own_member is not None and local is not None:
                        rescued = self._rescue_condemned(
                            head, own_member.changes, made, local.own_seen, local.own_locs
                        )
                        if rescued:
                            index_list.append(rescued)
                    if len(index_list) > COMPACT_AT:
                        index_list = self._compact(index_list, head, made)
                    ext = dict(extra or {})
                    rec_kind = kind
                    rec_message, rec_author = message, who
                    if local is not None:
                        ext["line"] = (
                            True  # a round of this machine's line: no change set of its own
                        )
                        # said of what this record carries (a member may have landed before)
                        rec_message, rec_author = local.describe(carried)
                    if carried:
                        ext["carried"] = [i.txn for i in carried]
                        if any(i.kind == "commit" for i in carried):
                            rec_kind = "commit"  # never thinned away as a mere background commit
                    rec = self._next_record(
                        head,
                        root=new_root,
                        index=index_list,
                        txn=txn,
                        author=rec_author,
                        message=rec_message,
                        kind=rec_kind,
                        stats=stats,
                        # ours and what the writers of the change sets it carries stored
                        bytes_new=bytes_new + sum(i.nbytes for i in carried),
                        tree_puts=tree_puts,
                        extra=ext,
                    )
                    if self._take_slot(rec, writer):
                        # listed by a record now: safe to deduplicate against
                        self._join(rec, [*made, *([merged_seg] if merged_seg else [])])
                        if local is not None:
                            local.carried = ours
                            local.added = {k: known[k] for k in new_keys if k in known}
                            if merged_seg is not None:
                                local.added[merged_seg[0]] = merged_seg[1]
                        done = [i.key for i in carried if i not in ours]
                        if published is not None:
                            done.append(published.key)
                        done.extend(k for k in self._carried_left if k not in done)
                        self._carried_left = []
                        self._drop_intents(done)
                        return self._published(seg_key, new_locs, rec), stats
                    self._contended_until = time.monotonic() + INTENT_PROBE
                    if can_publish and published is None:
                        # Lost the slot: hand our change set to whoever writes the next record.
                        published = publish(head.seq)
                        continue
                    if published is None and attempt + 1 >= MAX_COMMIT_ATTEMPTS:
                        break
                    if published is not None:
                        self._wait_turn()
                    else:
                        self._pause(attempt)
                if published is not None:
                    # Withdraw our intent, then look one last time: it may have landed.
                    self._drop_intents([published.key])
                    landed = self._find_carried(published, self.head())
                    if landed is not None:
                        return self._published(seg_key, new_locs, landed), stats
                raise ConflictError(
                    f"could not commit after {MAX_COMMIT_ATTEMPTS} attempts: other writers kept "
                    "committing first. Your files are untouched; try again."
                )
            except BaseException as e:
                if finishing is not None:
                    # the caller may abort the writer next: its uploads must be over
                    futures_wait([finishing])
                # An error or an interrupt while our change set waits as an intent: take
                # it back, so that no other writer commits it behind our caller's back
                # (best effort: with the store down it stays, and may still land).
                if published is not None:
                    self._drop_intents([published.key])
                    try:
                        left = self.store.exists(published.key)
                    except Exception:  # noqa: BLE001 - the store is down: it may be there
                        left = True
                    if left:
                        e.add_note(
                            "this commit's change set could not be withdrawn from the line of "
                            "waiting commits: another writer may still commit it"
                        )
                raise

    @_releasing_writer
    def commit_stream(
        self,
        items: Iterable[tuple[str, Entry]],
        *,
        message: str | Callable[[], str] = "",
        writer: Writer | None = None,
        kind: str = "commit",
        author: str | None = None,
        flush_bytes: int = 1 << 20,
        edit: Callable[[str], str | None] | None = None,
    ) -> tuple[CommitRecord | None, ApplyStats]:
        """Commit a (huge) set of new files streamed in tree order, in bounded memory.

        ``items`` yields ``(path, entry)`` sorted by :func:`~.tree.tree_order_key` (a
        depth-first walk with names sorted in each folder), entries staged through
        ``writer`` as for :meth:`commit`. The tree is built bottom up while the items
        arrive and its nodes are uploaded in batches, so memory does not grow with the
        number of files (only with the depth and the widest folder's leaf count). The
        result is set over whatever the head holds (files of other writers stay; ours
        win on the same path); nothing is deleted. For an initial commit of a big tree.
        ``flush_bytes``: compressed tree nodes held before they are uploaded.
        ``edit(top)``: called once the tree is built, before anything is published; returns
        the tree to commit instead (a mount drops files that changed while it read them),
        or None to commit nothing (the writer's uploads then stay as orphans for gc).
        ``message`` may be a function, called then (what the commit holds is known).
        """
        written = self.trees.track()  # checked against what gc found dead when published
        nodes = _NodeUploads(self)
        try:
            builder = TreeBuilder(self.trees, flush=nodes.start, flush_bytes=flush_bytes)
            for path, entry in items:
                builder.add(path, entry)
            top: str | None = builder.finish()
            files = builder.files
            # The last pack and the index segment upload while the tree is checked and
            # sent, and so do the tree's last nodes, as the builder's earlier batches
            # did: a node the edit below drops is left for gc, like a failed commit's
            started = self._start_segment(writer) if writer is not None else None
            nodes.start()
            if writer is not None:
                # the writer's abort waits for them too: a check that finds the volume
                # deleted aborts the writer, then deletes what it uploaded
                writer.packs.track(nodes.in_flight())
            if edit is not None:
                built, top = top, edit(top)  # type: ignore[arg-type]
                if top is not None and top != built:
                    files = sum(e.nfiles if e.kind == DIR else 1 for e in self.trees.entries(top))
                if top is None:
                    self.trees.pending.clear()
                    nodes.wait(quiet=True)
                    if writer is not None:
                        writer.abort()
                    return None, ApplyStats()
            if callable(message):
                message = message()
            nodes.start()  # the rest of the tree
            top_entry = Entry("", DIR, 0o755, tree=top)
            with self._commit_lock:
                seg_key, bytes_new, new_locs, _seg = self._finish_writer(writer, started=started)
                nodes.wait()
                txn = uuid.uuid4().hex
                for attempt in range(MAX_COMMIT_ATTEMPTS):
                    head = self.head()
                    new_root, stats = overlay(self.trees, head.root, top)
                    if head.root == EMPTY_TREE:
                        stats.added = files
                    if new_root == head.root:
                        self.trees.pending.clear()
                        return None, stats
                    new_root = self._avoid_doomed(head, new_root, written, ())
                    tree_puts = self._upload_trees()
                    index_list = list(head.index)
                    if seg_key and seg_key not in index_list:
                        index_list.append(seg_key)
                    made: list[tuple[str, bytes]] = []  # index objects to join once published
                    state = self.gc_state(head)
                    seen = writer.seen if writer is not None else None
                    if state.condemned or (seen is not None and seen.stale(head)):
                        # Rare (gc ran meanwhile): the deduplicated chunks must be rescued, which
                        # needs the change set once, as a plain commit would.
                        rescued = self._rescue_condemned(
                            head,
                            {p: e for p, e in self.trees.walk(top_entry.tree) if e.kind == FILE},  # type: ignore[arg-type]
                            made,
                            seen,
                            new_locs,
                        )
                        if rescued:
                            index_list.append(rescued)
                    if len(index_list) > COMPACT_AT:
                        index_list = self._compact(index_list, head, made)
                    rec = self._next_record(
                        head,
                        root=new_root,
                        index=index_list,
                        txn=txn,
                        author=author or default_author(),
                        message=message,
                        kind=kind,
                        stats=stats,  # an overlay deletes nothing
                        bytes_new=bytes_new,
                        tree_puts=tree_puts,
                    )
                    if self._take_slot(rec, writer):
                        self._join(rec, made)
                        return self._published(seg_key, new_locs, rec), stats
                    self._pause(attempt)
                raise ConflictError(
                    f"could not commit after {MAX_COMMIT_ATTEMPTS} attempts: other writers kept "
                    "committing first. Your files are untouched; try again."
                )
        except BaseException:
            nodes.wait(quiet=True)  # nothing of ours still lands once we have raised
            raise
        finally:
            self.trees.untrack()

    @staticmethod
    def _next_record(
        head: CommitRecord,
        *,
        root: str,
        index: list[str],
        txn: str,
        author: str,
        message: str,
        kind: str,
        stats: ApplyStats,
        bytes_new: int,
        tree_puts: int,
        extra: dict[str, Any] | None = None,
    ) -> CommitRecord:
        """The commit record to follow ``head``, made now on this host; its ``extra``
        names the gc record in force at ``head``, if any (see :func:`_stale`)."""
        ext = dict(extra or {})
        if head.gc_pointer is not None:
            ext["gc"] = head.gc_pointer
        return CommitRecord(
            seq=head.seq + 1,
            parent=head.seq,
            root=root,
            index=index,
            txn=txn,
            time=time.time(),
            author=author,
            host=socket.gethostname(),
            message=message,
            kind=kind,
            stats={
                "added": stats.added,
                "modified": stats.modified,
                "deleted": stats.deleted,
                "bytes_new": bytes_new,
                "tree_puts": tree_puts,
            },
            extra=ext,
        )

    def _take_slot(self, rec: CommitRecord, writer: Writer | None) -> bool:
        """Write ``rec`` into its log slot, create-only. True when the slot holds ``rec``:
        our PUT won, or it landed and only its response was lost (the record read back
        carries our txn). On a win, this process's head moves to it and the head hint is
        updated (every :data:`HEAD_HINT_EVERY` commits); on a loss, the other writer's
        record is remembered. First, ConflictError if ``writer``'s uploads may have been
        deleted by gc meanwhile (see .keeper)."""
        keeper.check(writer)
        key = self._log_key(rec.seq)
        won = self.store.put_if_absent(key, rec.to_bytes())
        if not won:
            # Lost, or our PUT landed and only its response was lost: read it back.
            try:
                other = CommitRecord.from_bytes(self.store.get(key), key)
            except NotFoundError:
                other = None
            won = other is not None and other.txn == rec.txn
            if other is not None and not won:
                self._records[other.seq] = other
        if won:
            self._records[rec.seq] = rec
            if self._head_seq is None or rec.seq > self._head_seq:
                self._head_seq = rec.seq  # only forward: another thread may know a newer one
            if rec.seq % HEAD_HINT_EVERY == 0:
                try:
                    self.store.put(self.prefix + "head", dump_json({"seq": rec.seq}))
                except Exception:
                    pass  # only a hint
        return won

    def _start_segment(self, writer: Writer) -> tuple[str | None, bytes]:
        """Seal the writer's last pack and start its index segment's PUT on the upload
        pool beside the packs' (the pack writer's ``finish`` waits for it and re-raises
        its error; its ``abort`` waits for it). ``(segment key, segment)``, or
        ``(None, b"")`` when the writer stored no chunk.

        A streamed commit starts it before its final checks, so that the round trip
        overlaps them; should the checks then drop files, the segment still lists their
        chunks, which is harmless (they are in packs that landed; gc drops them).
        """
        writer.packs.flush()  # seals the last pack: every chunk's location is known now
        new = writer.packs.new_chunks
        if not new:
            return None, b""
        seg = encode_segment(new)
        key = f"{self.prefix}index/{hash_bytes(seg)}"
        start = time.monotonic()

        def put() -> None:
            self.store.put(key, seg)
            # no record names it until the commit lands: kept young like the packs
            writer.uploaded(key, start)

        writer.packs.send_after(put)
        return key, seg

    def _finish_writer(
        self,
        writer: Writer | None,
        put_segment: bool = True,
        started: tuple[str | None, bytes] | None = None,
    ) -> tuple[str | None, int, ChunkMap | None, bytes]:
        """Upload the writer's last pack and its index segment; ``(segment key, bytes,
        the writer's chunk locations, the segment)``. Without ``put_segment`` the segment
        is not stored (whoever commits for this writer stores it, merged with others').
        ``started``: what :meth:`_start_segment` returned, if it was called already.

        The segment's PUT runs while the packs finish uploading (one round trip less per
        commit). The locations go into this process's index only once a record names
        them (:meth:`_published`): a commit that fails or publishes nothing after this
        must leave nothing to deduplicate against, else a later commit would reference
        those chunks through a segment that no record lists.
        """
        if writer is None:
            return None, 0, None, b""
        try:
            if started is not None:
                seg_key, seg = started
            elif put_segment:
                seg_key, seg = self._start_segment(writer)
            else:
                writer.packs.flush()
                new = writer.packs.new_chunks
                seg = encode_segment(new) if new else b""
                seg_key = f"{self.prefix}index/{hash_bytes(seg)}" if new else None
        finally:
            writer.packs.finish()  # waits for every upload; re-raises an upload's error
        n = len(seg)
        if put_segment:
            seg = b""
        return (
            seg_key,
            writer.packs.bytes_written + n + writer.inline_bytes,
            writer.packs.new_chunks,
            seg,
        )

    def _join(self, rec: CommitRecord, made: list[tuple[str, bytes]]) -> None:
        """Index objects a commit made on its way (rescued copies, folds, checkpoint
        shards) join this process's index once ``rec``, which lists them, has landed:
        before, a commit abandoned after making them (a failed check on a later attempt)
        left locations no record publishes, which the next commit deduplicated against."""
        index = self._index_of(rec)
        if index is not None:
            for key, data in made:
                index.add_object(key, data)

    def _published(
        self, seg_key: str | None, new: ChunkMap | None, rec: CommitRecord
    ) -> CommitRecord:
        """``rec`` names our segment (or, when another writer carried our change, a merge
        of it): every pack landed and is referenced, so the writer's locations move into
        the index (the writer is done with them; decoding the segment again would hold
        them twice). Returns ``rec``."""
        index = self._index_of(rec)
        if seg_key is not None and new is not None and index is not None:
            index.absorb(seg_key, new)
        return rec

    # -- group commit --------------------------------------------------------------------------
    def _pause(self, attempt: int) -> None:
        time.sleep(random.uniform(0.005, min(0.02 * (attempt + 1), 0.2)))

    def _wait_turn(self, place: int = LEADER_STEPS) -> None:
        # A published writer polls the log at a steady pace rather than backing off: the
        # sooner it sees its change carried, the sooner its next commit joins a round.
        # All waiters together stay within the store's poll budget (64 waiters on an S3
        # server looking every 25 ms each took most of its time: 2.1 commits/s).
        # The writer next in line (``place`` 1: the one before it is folding) is woken
        # as soon as a record lands where the store can be watched (a local folder), so
        # the next round starts at once; the rest look at their pace (all of them waking
        # at every record took the CPU the folding writer needed: 123 -> 93 commits/s
        # with 64 local writers).
        mean = max(WAIT_POLL, self._waiting / self.store.poll_budget)
        pause = random.uniform(mean / 2, mean * 1.5)
        if place <= 1:
            self.store.wait_change(self.prefix + "log/", pause)
        else:
            time.sleep(pause)

    def _publish_intent(self, intent: _Intent) -> None:
        self.store.put(intent.key, intent.blob)
        intent.since = intent.renewed = time.monotonic()
        self._intent_cache[intent.key] = intent  # ours: never read back

    def _renew_intent(self, intent: _Intent) -> None:
        """Renew our waiting intent's lease (see INTENT_LEASE). Best effort: one gone
        was carried or dropped (the next look finds it landed, or publishes it again),
        and one a failed touch let expire is published again the same way."""
        intent.renewed = time.monotonic()
        with contextlib.suppress(Exception):
            self.store.touch(intent.key)

    def _drop_intents(self, keys: list[str]) -> None:
        """Delete intents that were carried (or withdrawn); best effort: a leftover is
        recognized as carried by the next lister and deleted then."""
        if not keys:
            return
        for k in keys:
            self._intent_cache.pop(k, None)
        try:
            self.store.delete(keys)
        except Exception:
            pass

    def _carried_txns(self, since: int, head: CommitRecord) -> dict[str, CommitRecord]:
        """txn -> the record that carried it (or wrote it), for records after ``since``."""
        seqs = [s for s in range(since + 1, head.seq + 1) if s not in self._records]
        if len(seqs) > 1:
            list(_download_pool.map(self._record_or_none, seqs))
        out: dict[str, CommitRecord] = {}
        for s in range(since + 1, head.seq + 1):
            rec = self._record_or_none(s)
            if rec is None:
                continue
            out[rec.txn] = rec
            for t in rec.extra.get("carried", ()):
                out[t] = rec
            for t in rec.extra.get("void", ()):
                out.setdefault(t, rec)  # withdrawn (see withdraw): never to be carried
        return out

    def _record_or_none(self, seq: int) -> CommitRecord | None:
        try:
            return self.record(seq)
        except NotFoundError:
            return None  # expired by gc and deleted: it carried nothing still pending

    def _find_carried(self, intent: _Intent, head: CommitRecord) -> CommitRecord | None:
        rec = self._carried_txns(intent.base, head).get(intent.txn)
        if rec is not None and intent.txn in rec.extra.get("void", ()):
            # (only a process that outlived its mount's lock can see this: see withdraw)
            raise ConflictError(
                "this commit's change set was withdrawn before it landed (by a later mount "
                "of its folder): nothing of it was committed"
            )
        return rec

    def _list_intents(self) -> list[ObjectInfo]:
        return list(self.store.list(self.prefix + "intents/"))

    def withdraw(self, txns: Iterable[str]) -> CommitRecord | None:
        """Make sure that no change set committed as one of ``txns`` (see :meth:`commit`)
        lands from now on, unless it has landed already: for a caller whose commits
        under those ids can no longer be waiting (their process died, or the calls
        returned), before it looks at what landed (a mount of the folder whose commit
        that was: else a change set still waiting to be carried landed after the look,
        over versions written since).

        This machine's line is waited for (a round may be carrying one of them: it
        lands before this returns) and what it still holds of them is removed (a
        round never carries the change set of a writer that died, but one may have
        read it before). An intent of theirs still on the store is deleted and a record
        that voids their ids is written (``extra["void"]``, nothing else changed): a
        carrier that read the intent before the delete built its record on an older
        head, so it either landed first (the log shows it) or loses its slot to this
        record and then finds the ids void. Returns that record, or None when none was
        needed (the common case: nothing of theirs waits on the store; one listing).
        """
        wanted = set(txns)
        if not wanted:
            return None
        if self.line is not None:
            self.line.settle(wanted)
        keys: list[str] = []
        void: set[str] = set()
        for info in self._list_intents():
            parsed = _Intent.parse_key(info.key)
            if parsed is not None and parsed[1] in wanted:
                keys.append(info.key)
                void.add(parsed[1])
        if not keys:
            return None
        self._drop_intents(keys)
        with self._commit_lock:
            for attempt in range(MAX_COMMIT_ATTEMPTS):
                head = self.head()
                rec = self._next_record(
                    head,
                    root=head.root,
                    index=list(head.index),
                    txn=uuid.uuid4().hex,
                    author=default_author(),
                    message="withdrew a commit whose writer died before it landed",
                    kind="auto",
                    stats=ApplyStats(),
                    bytes_new=0,
                    tree_puts=0,
                    extra={"void": sorted(void)},
                )
                if self._take_slot(rec, None):
                    return rec
                self._pause(attempt)
        raise ConflictError(
            f"could not withdraw a waiting commit after {MAX_COMMIT_ATTEMPTS} attempts: "
            "other writers kept committing first; try again."
        )

    def _pending_keys(
        self, head: CommitRecord, listed: Beside[list[ObjectInfo]] | None = None
    ) -> list[tuple[str, str]]:
        """``(key, hash)`` of the intents not yet carried by any record up to ``head``, in
        key order (the line), read from the listing alone (``listed``: one already asked
        for, while ``head`` was looked up).

        Stale ones (not renewed for INTENT_LEASE, or based more than INTENT_WINDOW
        commits back) and carried (or withdrawn) ones are deleted as they are found. Their contents are not read here: a writer waiting in
        line only needs its place, and only the one that folds needs the change sets
        (:meth:`_load_intents`). Every waiter reading every intent after every round made
        the work of a round grow with the square of the writers.
        """
        self._intents_listed = time.monotonic()
        now = time.time()
        infos = listed.result() if listed is not None else self._list_intents()
        if not infos:
            self._intent_cache.clear()
            return []
        stale: list[str] = []
        live: list[tuple[int, str, str, str, float]] = []  # base, txn, key, hash, mtime
        for info in infos:
            parsed = _Intent.parse_key(info.key)
            if parsed is None:
                continue
            base, txn, h = parsed
            if base < head.seq - INTENT_WINDOW or info.mtime < now - INTENT_LEASE:
                stale.append(info.key)
                continue
            live.append((base, txn, info.key, h, info.mtime))
        self._waiting = max(1, len(live))  # writers waiting now (paces _wait_turn)
        todo: list[tuple[str, str]] = []
        if live:
            carried = self._carried_txns(min(b for b, *_ in live), head)
            todo = sorted((key, h) for _b, txn, key, h, _m in live if txn not in carried)
            # A carried intent is deleted by the writer that carried it, right after its
            # record landed. Listers delete only old ones; fresh ones are deleted by the
            # next writer that publishes a record (in case the carrier died before it
            # could), not by every waiting process after every round.
            old = now - INTENT_LEFT_BEHIND
            stale.extend(k for _b, txn, k, _h, m in live if txn in carried and m < old)
            self._carried_left = [k for _b, txn, k, _h, m in live if txn in carried and m >= old]
        if stale:
            self._drop_intents(stale)
        listed = {key for key, _h in todo}
        for k in [k for k in self._intent_cache if k not in listed]:
            del self._intent_cache[k]
        return todo

    def _load_intents(self, todo: list[tuple[str, str]]) -> list[_Intent]:
        """The intents ``todo`` names (see :meth:`_pending_keys`), read and verified once
        per process; one gone meanwhile (carried) or damaged is left out (its writer, if
        alive, publishes it again when it finds it missing)."""

        def load(item: tuple[str, str]) -> _Intent | None:
            key, h = item
            got = self._intent_cache.get(key)
            if got is not None:
                return got
            try:
                got = self._get_verified(key, lambda d: _Intent.load(key, h, d), cache=False)
            except (NotFoundError, CorruptionError):
                return None
            self._intent_cache[key] = got
            return got

        fetch = [it for it in todo if it[0] not in self._intent_cache]
        loaded = _download_pool.map(load, todo) if len(fetch) > 1 else map(load, todo)
        return [i for i in loaded if i is not None]

    def _overtaken(self, intent: _Intent, head: CommitRecord) -> bool:
        """Whether a commit after ``intent``'s base changed one of its paths: then it is
        not carried, and only its own writer (still waiting, if alive) commits it.

        Its writer may have given up (the store failed it) without being able to
        withdraw it, and reported the failure: carried later over what another writer
        wrote after that, it would put older bytes back (or delete a newer file). A
        writer that waits is not hurt: it goes for the log slot itself once it has
        waited its turn, applying its change onto the newest head (last writer wins, as
        for any commit). A base whose record cannot be read counts as overtaken."""
        if head.seq <= intent.base:
            return False
        try:
            base_root = self.record(intent.base).root
        except (NotFoundError, CorruptionError):
            return True
        if base_root == head.root:
            return False
        lookup = self.trees.lookup
        for path, change in intent.changes.items():
            now = lookup(head.root, path)
            if isinstance(change, str):  # "dir": only a file put in its way since matters
                if now is not None and now.kind != DIR:
                    return True
                continue
            then = lookup(base_root, path)
            if then is None or now is None:
                if then is not now:
                    return True
            elif change is not None and change.kind == DIR:
                # a folder's own entry (its mode and time): what changed below it since
                # is other paths' business
                if now.kind != then.kind:
                    return True
            elif not then.same_content(now):
                return True
        return False

    def _choose_intents(
        self, pending: list[_Intent], changes: dict[str, Entry | str | None], own: str | None
    ) -> list[_Intent]:
        """The intents to carry: in key order, each one whose paths overlap neither our
        own change set nor an intent chosen before it (so every version of every path
        stays in history: two changes of one path never share a commit)."""
        taken = _PathSet(changes)
        out: list[_Intent] = []
        for intent in pending:
            if intent.key == own:
                continue
            if len(out) >= FOLD_MAX:
                break
            if taken.overlaps(intent.paths):
                continue
            taken.add(intent.paths)
            out.append(intent)
        return out

    def _seen_now(self) -> Seen:
        """What a change set staged now, with no writer, is staged against."""
        index = self.index  # one read: its gc is the one in force for what it holds
        return Seen(index, index.gc, self._head_seq)

    def _rescue_condemned(
        self,
        head: CommitRecord,
        changes: dict[str, Entry | str | None],
        made: list[tuple[str, bytes]],
        seen: Seen | None = None,
        own: ChunkMap | None = None,
    ) -> str | None:
        """Copy chunks our change set references out of packs that gc has condemned.

        A writer that deduplicated against a pack before a concurrent gc condemned it
        would otherwise commit references to data about to be deleted. So would one
        that deduplicated against a chunk gc found dead (only expired history had it):
        the index that replaced ours after that gc no longer lists it at all, even where
        its pack is kept, so its old location comes from the index the change set was
        staged against (``seen``; ``own``: the chunks the writer stored itself, which
        need nothing). A chunk found nowhere would make the record unreadable: the
        commit is refused (ConflictError). Returns the key of the index segment for the
        copies, or None when nothing needed rescuing.
        """
        state = self.gc_state(head)
        stale = seen is not None and seen.stale(head)
        if not state.condemned and not stale:
            return None
        if stale:
            # where gc (and every commit since) put each chunk
            self.ensure_index(head.index, gc=head.gc_pointer)
        doomed: dict[str, ChunkLoc] = {}
        for e in changes.values():
            if isinstance(e, Entry) and e.chunks:
                for h, _n in e.chunks:
                    if h in doomed or (own is not None and h in own):
                        continue
                    loc = self.index.get_any(h)
                    if loc is None:
                        if not stale:
                            continue
                        assert seen is not None
                        old = self._seen_location(seen, h)
                        if old is None:
                            raise CollectedMeanwhileError(
                                f"data this commit reuses (chunk {h[:16]}…) was found dead by a "
                                "garbage collection that ran meanwhile and can no longer be "
                                "located; commit again (a mount retries by itself)"
                            )
                        doomed[h] = old  # gc found it dead: known only before
                    elif loc.pack in state.condemned:
                        doomed[h] = loc
        if not doomed:
            return None
        packs = PackWriter(self._put_pack, _upload_pool)
        for h, loc in doomed.items():
            key = self._pack_key(loc.pack)
            for attempt in range(READ_ATTEMPTS):  # a mismatch may be damage on the way
                try:
                    stored = self.store.get_range(key, loc.offset, loc.length)
                except NotFoundError:
                    raise CollectedMeanwhileError(
                        f"data this commit deduplicated against was deleted by garbage collection ({key}); "
                        "commit again (a mount retries by itself)"
                    ) from None
                try:
                    decode_chunk(loc.codec, stored, loc.raw_len, h, key)
                    break
                except CorruptionError:
                    if attempt + 1 == READ_ATTEMPTS:
                        raise
            packs.add(h, loc.codec, stored, loc.raw_len)
        packs.finish()
        return self._put_segment(packs.new_chunks, made)

    def _seen_location(self, seen: Seen, h: str) -> ChunkLoc | None:
        """Where chunk ``h`` was in the index ``seen`` describes: the one staged against,
        or else (a commit that staged none, as a copy within the volume) the index of
        the head it was staged at, read again (gone once gc deleted it: None)."""
        loc = seen.index.get_any(h)
        if loc is not None or seen.seq is None or seen.index is self.index:
            return loc
        try:
            keys = self.record(seen.seq).index
            for key in keys:
                if key not in seen.index.loaded:
                    seen.index.add_object(key, self._store_index(key))
        except (NotFoundError, CorruptionError):
            return None
        return seen.index.get_any(h)

    def _root_stats(self, old: str, new: str) -> ApplyStats:
        stats = ApplyStats()
        for path, a, b in self.trees.diff(old, new):
            if (a is not None and a.kind == DIR) or (b is not None and b.kind == DIR):
                continue
            if a is None:
                stats.added += 1
            elif b is None:
                stats.deleted += 1
            else:
                stats.modified += 1
            stats.changed_paths.append(path)
        return stats

    def _merge_segments(
        self, keys: list[str], known: Mapping[str, bytes]
    ) -> tuple[str, bytes] | None:
        """Store one index segment holding the entries of ``keys`` (those in ``known``
        taken from there); ``(its key, its bytes)``, or None if one of them cannot be
        read (the record then lists them one by one, as before). Its entries join this
        process's index only once a record lists it."""

        def fetch(key: str) -> bytes:
            got = known.get(key)
            return got if got is not None else self._fetch_index(key)

        try:
            datas = list(_download_pool.map(fetch, keys))
        except (NotFoundError, CorruptionError):
            return None
        merged = ChunkMap()
        for key, data in zip(keys, datas, strict=True):
            merged.add_segment(data, key)
        seg = encode_segment(merged)
        key = f"{self.prefix}index/{hash_bytes(seg)}"
        self.store.put(key, seg)
        return key, seg

    def _put_segment(
        self, entries: Mapping[str, ChunkLoc] | bytes, made: list[tuple[str, bytes]]
    ) -> str:
        """Store an index segment of ``entries`` (or the encoded segment) under its hash;
        its key. ``(key, bytes)`` is added to ``made``, to join this process's index once a
        record lists it (:meth:`_join`)."""
        seg = entries if isinstance(entries, bytes) else encode_segment(entries)
        key = f"{self.prefix}index/{hash_bytes(seg)}"
        self.store.put(key, seg)
        made.append((key, seg))
        return key

    def _compact(
        self, index_list: list[str], head: CommitRecord, made: list[tuple[str, bytes]]
    ) -> list[str]:
        """Fold the newest index objects of ``index_list`` (``head``'s and what a commit
        on it adds) into one (see :func:`fold_from`); when that reaches the oldest, or
        would hold more than ``SHARD_AT`` entries, fold everything into a checkpoint
        (sharded when large). What it makes goes into ``made`` (see :meth:`_join`).

        Only what ``head`` lists joins this process's index here: the commit's own
        objects are not published yet, so they are read on the side."""
        index = self._index_of(head)
        if index is None:
            # This process follows a newer gc than ``head``'s: a record on ``head`` loses
            # its slot to that gc's, and this index lacks what ``head`` lists.
            return index_list
        listed = set(head.index)
        self._load_into(index, [k for k in index_list if k in listed])
        own = {k: self._fetch_index(k) for k in index_list if k not in listed}
        own_maps: dict[str, ChunkMap] = {k: ChunkMap() for k in own}
        counts = [
            own_maps[k].add_segment(own[k], k) if k in own else index.counts.get(k, 0)
            for k in index_list
        ]
        start = fold_from(counts)
        if start > 0 and sum(counts[start:]) <= SHARD_AT:
            # The objects folded are re-read (the index in memory does not say which
            # object each entry came from); they are the newest and smallest ones, most
            # of them in the object cache or the line's folder on this machine. The
            # commit's own were read just above.
            folded = ChunkMap()
            keys = index_list[start:]
            try:
                got = _download_pool.map(
                    lambda k: own[k] if k in own else self._fetch_index(k), keys
                )  # in parallel, in order
                for key, data in zip(keys, got, strict=True):
                    folded.add_segment(data, key)
            except NotFoundError:
                pass  # gc removed it after this head was read: fold what is known instead
            else:
                return [*index_list[:start], self._put_segment(folded.encode_segment(), made)]
        entries = index.items()
        for chunks in own_maps.values():
            entries.update(chunks.locations())
        return [self._put_segment(shard, made) for shard in checkpoint_shards(entries)]

    # -- reading file contents ------------------------------------------------------------------
    def locate(self, h: str, where: str = "") -> ChunkLoc:
        """The location of chunk ``h`` (loading newer index objects if needed)."""
        loc = self.index.get(h)
        if loc is None:
            # what the head this process knows lists first (a reload has just moved it
            # there), and only then whatever newer commits list: a round trip less
            head = self.head(refresh=False)
            self.ensure_index(head.index, gc=head.gc_pointer)
            loc = self.index.get(h)
        if loc is None:
            head = self.head()
            self.ensure_index(head.index, gc=head.gc_pointer)
            loc = self.index.get(h)
        if loc is None:
            raise CorruptionError(
                f"chunk {h[:16]}… of {where or 'a file'} is missing from the volume's index", key=h
            )
        return loc

    def read_entry(self, entry: Entry, where: str = "") -> Iterator[bytes]:
        """Yield the contents of a file entry chunk by chunk (bounded read-ahead)."""
        if entry.inline is not None:
            yield entry.inline
            return
        yield from self.read_chunks(entry.chunks or [], where)

    def read_chunks(self, chunks: list[tuple[str, int]], where: str = "") -> Iterator[bytes]:
        """Yield the raw bytes of ``chunks`` in order.

        Neighbouring chunks of one pack are coalesced into one ranged GET; up to
        ``READ_AHEAD_BYTES`` of requests run in parallel ahead of the consumer.
        """
        requests = self._plan_reads(chunks, where)
        buffers = _Buffers(max((r[2] for r in requests), default=0))
        window: deque[Future[list[bytes]]] = deque()
        in_flight = 0
        sizes: deque[int] = deque()
        i = 0
        while i < len(requests) or window:
            while i < len(requests) and (not window or in_flight < READ_AHEAD_BYTES):
                req = requests[i]
                window.append(
                    _download_pool.submit(self._fetch_request, req, where, buffers=buffers)
                )
                sizes.append(req[2])
                in_flight += req[2]
                i += 1
            parts = window.popleft().result()
            in_flight -= sizes.popleft()
            yield from parts

    def read_into(
        self,
        entry: Entry,
        fd: int,
        where: str = "",
        local: tuple[int, Entry] | None = None,
        progress: Callable[[int], None] | None = None,
        start: int = 0,
    ) -> int:
        """Write the whole contents of a file entry into open file ``fd`` at offset
        ``start`` (0: the start of the file).

        For big files, at the store's speed: coalesced ranged GETs run in parallel on
        the download threads, and each thread checks its chunks' hashes and writes them
        with positional writes (``os.pwrite``) as they arrive, so verification and disk
        writes overlap the transfer and no chunk is copied or kept after it is written.
        At most ``BIG_READ_AHEAD_BYTES`` are in flight. Chunks are not put in the chunk cache
        (a second full copy of a big file on the hot path); chunks already cached are
        used. The file's disk is reserved before anything is fetched (``fallocate``
        where the file system has it): cheaper writes, and a file that cannot fit raises
        ``OSError`` (ENOSPC) at once. Returns the number of bytes written. Raises
        CorruptionError like :meth:`read_entry` (whatever was written to ``fd`` then is
        incomplete).

        ``local``: ``(src_fd, old)``, an open local file believed to hold the contents of
        entry ``old`` (an earlier version of the file, or a copy of it): chunks the two share are
        copied from it, each checked against its hash (one that does not match, because
        the file changed after all, is fetched instead), so a reload of a big file with
        small edits downloads only the edited chunks.

        ``progress(n)``: called with the number of bytes each step wrote (from the
        download threads too: it must be safe to call from any thread).
        """
        if entry.inline is not None:
            n = _pwrite_all(fd, memoryview(entry.inline), start)
            if progress is not None:
                progress(n)
            return n
        chunks = entry.chunks or []
        offsets: dict[int, int] = {}  # position in chunks -> file offset
        pos = start
        for i, (_h, n) in enumerate(chunks):
            offsets[i] = pos
            pos += n
        total = pos - start
        # Disk for the whole file first: cheaper writes, and a file that cannot fit
        # fails here (ENOSPC) before any of it is fetched.
        preallocate(fd, pos)
        copied = self._copy_local(chunks, offsets, fd, local) if local is not None else set()
        if progress is not None and copied:
            progress(sum(chunks[i][1] for i in copied))
        cache = self.chunk_cache
        Req = tuple[str, int, int, list[tuple[int, str, ChunkLoc]]]

        def plan() -> Iterator[Req]:
            """Ranged GETs of neighbouring chunks, each handed out as soon as it is
            complete: the first goes out while the rest are still being located (a cold
            cache is one failed open per chunk, 8,192 of them for 1 GiB)."""
            req: Req | None = None
            for i, (h, _n) in enumerate(chunks):
                if i in copied:
                    continue
                cached = cache.get(h) if cache is not None else None
                if cached is not None:
                    _pwrite_all(fd, memoryview(cached), offsets[i])
                    if progress is not None:
                        progress(len(cached))
                    continue
                loc = self.locate(h, where)
                if req is not None:
                    pack, start, length, items = req
                    if (
                        pack == loc.pack
                        and start + length == loc.offset
                        and length + loc.length <= BIG_READ_REQUEST_MAX
                    ):
                        items.append((i, h, loc))
                        req = (pack, start, length + loc.length, items)
                        continue
                    yield req
                req = (loc.pack, loc.offset, loc.length, [(i, h, loc)])
            if req is not None:
                yield req

        buf_size = min(BIG_READ_REQUEST_MAX, total)
        # One download thread writes to the file at a time: the kernel takes the file's
        # lock for every write anyway, and threads that met it held spun on it (a 1 GiB
        # mount spent 0.1 s less system time this way). One write per chunk: a range's
        # chunks in one 8 MiB pwritev made the kernel's part of a mount twice as long.
        writing = threading.Lock()

        def fetch(req: Req) -> int:
            pack, start, length, items = req
            with _big_buffers.take(length, buf_size) as buf:
                raws = self._read_range_checked(
                    pack, start, length, [(h, loc) for _i, h, loc in items], where, buf
                )
                written = 0
                with writing:
                    for (i, _h, _loc), raw in zip(items, raws, strict=True):
                        written += _pwrite_all(fd, memoryview(raw), offsets[i])
            if progress is not None:
                progress(written)
            return written

        window: deque[tuple[Future[int], int]] = deque()
        in_flight = 0
        with _big_buffers.reading():  # around the wait below: no buffer is out after it
            try:
                for req in plan():
                    while window and in_flight + req[2] > BIG_READ_AHEAD_BYTES:
                        fut, size = window.popleft()
                        fut.result()
                        in_flight -= size
                    window.append((_download_pool.submit(fetch, req), req[2]))
                    in_flight += req[2]
                while window:
                    window.popleft()[0].result()
            finally:
                for fut, _size in window:
                    fut.cancel()
                # a failure leaves others running: wait so none writes to fd after we return
                for fut, _size in window:
                    if not fut.cancelled():
                        try:
                            fut.result()
                        except Exception:  # noqa: BLE001 - the first error is what is raised
                            pass
        return total

    @staticmethod
    def _copy_local(
        chunks: list[tuple[str, int]], offsets: dict[int, int], fd: int, local: tuple[int, Entry]
    ) -> set[int]:
        """Copy the chunks of ``chunks`` that local entry ``local[1]`` also has from its
        open file ``local[0]`` into ``fd``, each only if its bytes hash as expected;
        returns the positions (in ``chunks``) copied."""
        src, old = local
        where: dict[str, tuple[int, int]] = {}
        pos = 0
        for h, n in old.chunks or ():
            where.setdefault(h, (pos, n))
            pos += n
        done: set[int] = set()
        for i, (h, n) in enumerate(chunks):
            at = where.get(h)
            if at is None or at[1] != n:
                continue
            try:
                raw = os.pread(src, n, at[0])
            except OSError:
                return done  # the local file went away: fetch the rest
            if len(raw) == n and hash_bytes(raw) == h:
                _pwrite_all(fd, memoryview(raw), offsets[i])
                done.add(i)
        return done

    def warm_readers(self) -> None:
        """Start the threads that read tree nodes and file contents ahead of a mount's
        first reads (see :meth:`SharedPool.warm <jupyter_volume._pools.SharedPool.warm>`)."""
        _node_pool.warm()
        _download_pool.warm(4)

    def read_many(
        self, entries: list[Entry], where: str = "", *, views: bool = False
    ) -> list[bytes | memoryview]:
        """The whole contents of many (small) files, fetched with as few GETs as possible.

        Every chunk needed is located, the locations are sorted by pack and offset, and
        neighbours (gaps under 256 KiB) are coalesced into ranged GETs of up to 8 MiB that
        run in parallel: 10,000 small files in three packs cost a handful of requests.

        ``views``: a file stored in one uncompressed chunk may come back as a read-only
        view into the bytes of its ranged GET, which stay in memory as long as any view
        of them does: for a caller that writes the contents out and drops them. A mount
        of 10,000 files of 4 KiB copied each out of a reused buffer (a fresh 8 MiB one per
        batch); with views, 0.53 -> 0.47 s from SeaweedFS into a fresh ext4, 0.38 ->
        0.34 s from a local store into memory (medians of 12 and 16, alternating).
        """
        got: dict[str, bytes | memoryview] = {}
        cache = self.chunk_cache
        wanted = dict.fromkeys(h for e in entries if e.chunks for h, _n in e.chunks)
        if cache is not None:
            # Chunks of small files skip the chunk cache: a file per 4 KiB chunk would
            # double the cost of materializing them, and a remount fetches them again in
            # a few coalesced GETs anyway. A chunk that a bigger file also uses is cached.
            uncached = {h for e in entries if e.size < CACHE_MIN_FILE for h, _n in e.chunks or []}
            uncached -= {h for e in entries if e.size >= CACHE_MIN_FILE for h, _n in e.chunks or []}
            for h in wanted:
                cached = cache.get(h) if h not in uncached else None
                if cached is not None:
                    got[h] = cached
        else:
            uncached = set()
        need = [h for h in wanted if h not in got]
        locs = self.index.get_many(need)  # (a mount locates thousands at a time)
        for i, loc in enumerate(locs):
            if loc is None:
                locs[i] = self.locate(need[i], where)  # loads newer index objects, or raises
        # sorted by pack and offset; neighbours coalesced into one ranged GET
        reqs: list[tuple[str, int, int, list[tuple[str, ChunkLoc]]]] = []
        items: list[tuple[str, ChunkLoc]] = []
        pack, start, end = "", 0, 0
        for loc, h in sorted(
            zip(locs, need, strict=True),
            key=lambda lh: (lh[0].pack, lh[0].offset),  # type: ignore[union-attr]
        ):
            assert loc is not None
            stop = loc.offset + loc.length
            if (
                loc.pack == pack
                and loc.offset - end <= (256 << 10)
                and stop - start <= READ_REQUEST_MAX
            ):
                items.append((h, loc))
                end = max(end, stop)
                continue
            if items:
                reqs.append((pack, start, end - start, items))
            pack, start, end, items = loc.pack, loc.offset, stop, [(h, loc)]
        if items:
            reqs.append((pack, start, end - start, items))
        # (views: every range in an object of its own, which the views keep alive)
        buffers = None if views else _Buffers(max((r[2] for r in reqs), default=0))
        for req, parts in zip(
            reqs,
            _download_pool.map(
                lambda r: self._fetch_request(r, where, uncached, buffers=buffers, views=views),
                reqs,
            ),
            strict=True,
        ):
            for (h, _loc), raw in zip(req[3], parts, strict=True):
                got[h] = raw
        out: list[bytes | memoryview] = []
        for e in entries:
            if e.inline is not None:
                out.append(e.inline)
            elif e.chunks and len(e.chunks) == 1:
                out.append(got[e.chunks[0][0]])
            else:
                out.append(b"".join([got[h] for h, _n in e.chunks or ()]))
        return out

    def _plan_reads(
        self, chunks: list[tuple[str, int]], where: str
    ) -> list[tuple[str, int, int, list[tuple[str, ChunkLoc]]]]:
        reqs: list[tuple[str, int, int, list[tuple[str, ChunkLoc]]]] = []
        for h, _n in chunks:
            cached = self.chunk_cache.get(h) if self.chunk_cache is not None else None
            if cached is not None:
                reqs.append(("", 0, 0, [(h, cached)]))  # type: ignore[list-item]
                continue
            loc = self.locate(h, where)
            if reqs:
                pack, start, length, items = reqs[-1]
                if (
                    pack == loc.pack
                    and start + length == loc.offset
                    and length + loc.length <= READ_REQUEST_MAX
                ):
                    items.append((h, loc))
                    reqs[-1] = (pack, start, length + loc.length, items)
                    continue
            reqs.append((loc.pack, loc.offset, loc.length, [(h, loc)]))
        return reqs

    def _fetch_request(
        self,
        req: tuple[str, int, int, list[tuple[str, ChunkLoc]]],
        where: str,
        uncached: set[str] | frozenset[str] = frozenset(),
        *,
        buffers: _Buffers | None = None,
        views: bool = False,
    ) -> list[bytes | memoryview]:
        pack, start, length, items = req
        if not pack:  # served by the chunk cache (already verified by hash)
            return [items[0][1]]  # type: ignore[list-item]
        # The raw chunks come back as views into the read buffer: copied out, since
        # callers keep them (and the chunk cache stores them), unless ``views`` (then
        # there is no buffer to reuse: the views keep the range's own bytes alive).
        with buffers.take(length) if buffers is not None else contextlib.nullcontext() as buf:
            got = self._read_range_checked(pack, start, length, items, where, buf)
            out = (
                got
                if views and buf is None
                else [raw if isinstance(raw, bytes) else bytes(raw) for raw in got]
            )
        if self.chunk_cache is not None:
            for (h, _loc), raw in zip(items, out, strict=True):
                if h not in uncached:
                    self.chunk_cache.put(h, raw if isinstance(raw, bytes) else bytes(raw))
        return out

    def _read_range_checked(
        self,
        pack: str,
        start: int,
        length: int,
        chunks: list[tuple[str, ChunkLoc]],
        where: str,
        buf: bytearray | None = None,
    ) -> list[bytes | memoryview]:
        """Read ``length`` bytes of ``pack`` from ``start`` and decode every chunk in them,
        each checked against its hash before any is returned. A range damaged on the way
        is read again (``READ_ATTEMPTS`` reads in all) before :class:`CorruptionError`.
        Raw (uncompressed) chunks come back as views into the one read buffer: ``buf``
        (at least ``length`` bytes, valid until the caller reuses it) when given."""
        key = self._pack_key(pack)
        for attempt in range(READ_ATTEMPTS):
            if attempt:
                time.sleep(0.05 * attempt)
            try:
                if buf is None:
                    blob: bytes | memoryview = self.store.get_range(key, start, length)
                else:
                    into = memoryview(buf)[:length]
                    blob = into[: self.store.get_range_into(key, start, into)]
            except NotFoundError:
                raise CorruptionError(
                    f"pack {key} holding data of {where or 'a file'} is missing", key=key
                ) from None
            if len(blob) != length:
                raise CorruptionError(f"pack {key} is shorter than its index says", key=key)
            view = memoryview(blob)
            try:
                return [
                    decode_chunk(
                        loc.codec,
                        view[loc.offset - start : loc.offset - start + loc.length],  # type: ignore[arg-type]
                        loc.raw_len,
                        h,
                        key,
                    )
                    for h, loc in chunks
                ]
            except CorruptionError as e:
                if attempt + 1 < READ_ATTEMPTS:
                    continue  # damaged on the way, perhaps: read the range again
                raise CorruptionError(
                    f"{e} (read {READ_ATTEMPTS} times from {self.store.url}, damaged every time)",
                    key=key,
                ) from None
        raise AssertionError("unreachable")

    # -- verification -----------------------------------------------------------------------------
    def verify(self, *, read_data: bool = True) -> VerifyReport:
        """Re-read everything reachable from every commit, bypassing caches, and check it.

        Checks every commit record, tree node hash, index object hash, and (with
        ``read_data``) every chunk's bytes against its blake3 name. Reports, never raises,
        on damage.
        """
        report = VerifyReport()
        # Every read checks the store, never a cache; a mismatch is read again before it
        # is reported, so damage on the wire is not reported as damage on the store.
        fresh = Trees(
            lambda h: self._get_verified(self._tree_key(h), lambda d: node_json(h, d), cache=False)
        )
        index = ChunkIndex()
        seen_trees: set[str] = set()
        chunks: dict[str, str] = {}  # hash -> a path using it
        index_keys: set[str] = set()
        try:
            head = self.head()
        except Exception as e:  # noqa: BLE001 - report, don't raise
            report.errors.append(f"cannot read the head commit: {e}")
            return report
        state = self.gc_state(head)
        # The head's index must locate every chunk of every kept commit: check exactly that.
        index_keys.update(head.index)
        for seq in range(head.seq + 1):
            if state.is_expired(seq):
                continue
            try:
                rec = CommitRecord.from_bytes(
                    self.store.get(self._log_key(seq)), self._log_key(seq)
                )
            except Exception as e:  # noqa: BLE001
                report.errors.append(f"commit {seq}: {e}")
                continue
            report.commits += 1
            self._verify_tree(fresh, rec.root, "", seen_trees, chunks, report, seq)
        try:
            # gc's list of unreachable nodes, which the next gc deletes: no kept commit
            # may reach one (see _avoid_doomed)
            listed = self.doomed_trees(head) & seen_trees
        except Exception as e:  # noqa: BLE001
            report.errors.append(f"gc's list of unreachable folders: {e}")
            listed = frozenset()
        for h in sorted(listed):
            report.errors.append(
                f"tree node {h[:16]}… is reachable, but garbage collection listed it as "
                "unreachable: the next gc would delete it"
            )
        for key in sorted(index_keys):
            try:
                index.add_object(key, self._fetch_index(key, cache=False))
            except Exception as e:  # noqa: BLE001
                report.errors.append(f"{key}: {e}")
        by_pack: dict[str, list[tuple[str, ChunkLoc, str]]] = {}
        for h, path in chunks.items():
            loc = index.get(h)
            if loc is None:
                report.errors.append(f"chunk {h[:16]}… of {path} is missing from the index")
                continue
            by_pack.setdefault(loc.pack, []).append((h, loc, path))
        report.chunks = len(chunks)
        report.packs = len(by_pack)
        for pack, items in by_pack.items():
            key = self._pack_key(pack)
            try:
                if not read_data:
                    self.store.stat(key)
                    continue
                # Chunks that fail are read again (READ_ATTEMPTS in all) before they are
                # reported: damage on the way is not damage on the store.
                failed: list[tuple[str, ChunkLoc, str, CorruptionError]] = []
                todo = items
                for attempt in range(READ_ATTEMPTS):
                    data = self.store.get(key)
                    report.bytes_read += len(data)
                    try:
                        parse_pack_header(data, key)
                    except CorruptionError:
                        if attempt + 1 == READ_ATTEMPTS:
                            raise
                        continue
                    failed = []
                    for h, loc, path in todo:
                        try:
                            decode_chunk(
                                loc.codec,
                                data[loc.offset : loc.offset + loc.length],
                                loc.raw_len,
                                h,
                                key,
                            )
                        except CorruptionError as e:
                            failed.append((h, loc, path, e))
                    if not failed:
                        break
                    todo = [(h, loc, path) for h, loc, path, _e in failed]
                for _h, _loc, path, e in failed:
                    report.errors.append(f"{path}: {e}")
            except Exception as e:  # noqa: BLE001
                report.errors.append(f"pack {key} (used by {items[0][2]}): {e}")
        return report

    def _verify_tree(
        self,
        trees: Trees,
        h: str,
        prefix: str,
        seen: set[str],
        chunks: dict[str, str],
        report: VerifyReport,
        seq: int,
    ) -> None:
        if h in seen:
            return
        seen.add(h)
        report.trees += 1
        try:
            entries = [] if h == EMPTY_TREE else trees.entries(h)
            for leaf in trees.child_hashes(h) if h != EMPTY_TREE else []:
                seen.add(leaf)
                report.trees += 1
        except Exception as e:  # noqa: BLE001
            report.errors.append(f"commit {seq}: folder {prefix or '/'} (tree {h[:16]}…): {e}")
            return
        for e in entries:
            path = prefix + e.name
            if e.kind == DIR:
                self._verify_tree(trees, e.tree, path + "/", seen, chunks, report, seq)  # type: ignore[arg-type]
            elif e.kind == FILE and e.chunks:
                if sum(n for _h, n in e.chunks) != e.size:
                    report.errors.append(
                        f"commit {seq}: {path}: chunk sizes do not add up to its size"
                    )
                for ch, _n in e.chunks:
                    chunks.setdefault(ch, path)
