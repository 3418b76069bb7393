"""Mounts: a volume materialized in a local folder, with commit, reload and background commits.

The folder holds only the user's files. What the mount knows lives outside it, under
the state dir (see :mod:`jupyter_volume.paths`), in SQLite:

* ``base``: the commit the folder was last brought to (by mount or reload); its root
  tree is on the store, so a reload diffs it against the head, skipping equal subtrees.
* ``files``: one row per path in the folder: the entry (content) it reflects, the
  stat signature (size, mtime_ns, inode, mode) it had when synced, and ``since_base``
  for paths this mount committed after ``base``.
* ``pushing``: set while a commit of this mount may be landing, and taken away in the
  transaction that records it; one left by a crash (or a failed commit) makes the next
  scans recognise what landed instead of publishing it again (:meth:`Mount._adopt_pushed`).
* ``gone_since_base``: the paths this mount deleted in commits after ``base`` (a deleted
  path has no row to carry ``since_base``), so that the next reload looks at them too
  (:meth:`Mount._note_gone`).

A commit's change set is the folder compared with those rows, applied onto whatever the
head is (the repository merges: our paths win, every other path keeps other writers'
versions). Files that other writers committed are *not* local deletions: the folder
simply has not reloaded them yet. A reload writes each changed file to a temporary name
and renames it into place, so no reader ever sees half a file, and it never touches a
file that has uncommitted local edits.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import fnmatch
import functools
import itertools
import json
import math
import os
import random
import re
import shutil
import sqlite3
import stat as stat_mod
import struct
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from . import mountstates, quiet
from ._bulk import bulk_step
from ._libc import write_all
from ._pools import SharedPool, beside
from .errors import (
    AlreadyExistsError,
    CollectedMeanwhileError,
    InvalidError,
    LocalFolderError,
    NotFoundError,
    VolumeBusyError,
    VolumeError,
)
from .journal import Journal
from .paths import cache_dir, state_dir
from .repository import DIR, EMPTY_TREE, FILE, LINK, CommitRecord, Entry, Repository, Writer
from .repository.chunkcache import DEFAULT_MAX_BYTES as DEFAULT_CACHE_BYTES
from .repository.chunkcache import ChunkCache
from .repository.codec import CHUNK_MIN, hash_bytes
from .repository.tree import entry_json
from .results import CommitInfo
from .store import Store


class Volume(Protocol):
    """What a mount needs of the volume it shows: :class:`jupyter_volume.Volume` is one.

    Named here as a protocol, not imported, because the volume layer sits above this
    module (``Volume.mount`` makes a :class:`Mount`), and a module never imports upward.
    """

    name: str
    store: Store

    @property
    def _repo(self) -> Repository: ...

    def _resolve(self) -> Any: ...


__all__ = ["DEFAULT_IGNORE", "Mount", "MountStatus", "mounts"]

DEFAULT_IGNORE = [".ipynb_checkpoints/", "__pycache__/", "*.swp", "*.swo", "*~", ".#*", ".~*"]
TMP_PREFIX = ".jv-tmp-"
#: The exact names of the mount's own temporary files (a reload writes each file, and
#: makes each link, under such a name and renames it into place): ``.jv-tmp-`` and 16 hex
#: digits, a dash and a counter (files), or 32 hex digits (links). Only these are never
#: committed, and removed when a later mount finds them left by a crash; any other name
#: starting with ``.jv-tmp-`` is the user's, committed like any file.
_TMP_NAME = re.compile(r"\.jv-tmp-(?:[0-9a-f]{16}-[0-9]+|[0-9a-f]{32})")
SMALL_FILE = 4 << 20  # files up to this size are fetched in cross-file coalesced batches
BATCH_BYTES = 8 << 20  # small files fetched at once (the next batch while one is written)
SPLIT_AT = 256  # staged small files of a batch written on two threads from this many on
MOUNT_BATCH_PATHS = 100_000  # a fresh mount materializes this many paths at a time
MAX_PATH_BYTES = 4096  # the longest path a volume holds (names.MAX_PATH_BYTES)
LANDING_MAX = 16  # unfinished reload targets remembered for reconciling (see _reconcile)
#: A commit of at least this many new paths, all in folders that neither the mount nor
#: the volume's head knows (an initial commit of a big tree), streams: see _commit_streamed.
STREAM_AT = 2_000
STREAM_ROWS = 1_000  # mount rows written per batch while a commit streams
#: Up to this many paths, their rows are asked for one path at a time (_Index.rows_under)
_ROWS_ONE_BY_ONE = 16
STREAM_TREE_BYTES = 1 << 20  # compressed tree nodes held before a streamed commit uploads them
_FOLDER_MARK = mountstates.FOLDER_MARK  # marks a mounted folder as its mount's (_mark_folder)
#: The mount-state meta key saying that a commit of this mount may have landed unrecorded
#: (see Mount._note_pushing): ``{"after": seq}``, the newest commit known before it.
_PUSHING = "pushing"
#: The mount-state meta key listing the paths this mount deleted in commits after its
#: base (see Mount._note_gone); ``true`` when there were more than GONE_MAX of them.
_GONE = "gone_since_base"
GONE_MAX = 4096
#: The mount-state meta key listing the paths a reload is deleting (or moving away) here,
#: written before it touches them and cleared once it finishes: after a crash between a
#: deletion and its record, these (and only these) missing files are the reload's, not
#: the user's (see _reconcile_landing). ``true`` past UNLINKING_MAX paths: then a missing
#: file counts as the reload's if an unfinished reload's target lacks it. Absent (a
#: state from before this key): the same rule as ``true``.
_UNLINKING = "unlinking"
UNLINKING_MAX = 4096

_mounts: dict[tuple[str, str], Mount] = {}
_mounts_lock = threading.Lock()
_materialize_pool = SharedPool(8, "jv-materialize")
#: a streamed commit's last look at whether its volume still exists, beside its checks
_alive_pool = SharedPool(1, "jv-alive")
#: a reload's index objects, loaded while it compares trees
_prefetch_pool = SharedPool(2, "jv-prefetch")


def _active_mount(store: Any, vol_id: str) -> Mount | None:
    """The mount of volume ``vol_id`` in this process, if any."""
    with _mounts_lock:
        return _mounts.get((store.url, vol_id))


def mounts() -> list[Mount]:
    """The active mounts of this process."""
    with _mounts_lock:
        return list(_mounts.values())


@dataclass
class MountStatus:
    """Uncommitted local changes and how far the folder is behind the volume's head."""

    name: str
    path: str
    added: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    base_seq: int = 0
    head_seq: int = 0
    read_only: bool = False
    background: bool = False
    last_commit_seq: int | None = None
    last_error: str | None = None
    own_commits: int = 0
    #: paths found in the folder that are never committed, and why (escaped path -> reason):
    #: names that are not UTF-8 (shown as the repr of their bytes), FIFOs, sockets,
    #: devices, and paths too long for the system or the volume
    skipped: dict[str, str] = field(default_factory=dict)
    #: changed files the latest commit left for a later one, and why (path -> reason):
    #: open (or mapped) for writing by some process, still changing, or grouped with such a file
    #: (see jupyter_volume.quiet); they are still listed as added/modified/deleted
    deferred: dict[str, str] = field(default_factory=dict)

    @property
    def behind(self) -> int:
        """Commits by others on the volume that the folder has not reloaded."""
        return max(self.head_seq - self.base_seq - self.own_commits, 0)

    @property
    def clean(self) -> bool:
        return not (self.added or self.modified or self.deleted)

    def __str__(self) -> str:
        lines = [
            f"volume {self.name} mounted at {self.path}"
            + (" (read-only)" if self.read_only else "")
        ]
        for label, paths in (
            ("added", self.added),
            ("modified", self.modified),
            ("deleted", self.deleted),
        ):
            lines.extend(f"  {label}: {p}" for p in paths)
        if self.clean:
            lines.append("  nothing to commit")
        if self.behind:
            lines.append(
                f"  behind by {self.behind} commit{'s' if self.behind != 1 else ''}: reload to see them"
            )
        lines.extend(f"  not committed: {p} ({why})" for p, why in sorted(self.skipped.items()))
        lines.extend(f"  deferred: {p} ({why})" for p, why in sorted(self.deferred.items()))
        if self.last_error:
            lines.append(f"  last background commit failed: {self.last_error}")
        return "\n".join(lines)


def _is_tmp_name(name: str) -> bool:
    """True if ``name`` is one the mount gives its own temporary files (see _TMP_NAME)."""
    return name.startswith(TMP_PREFIX) and _TMP_NAME.fullmatch(name) is not None


def _sig(st: os.stat_result | _Stat) -> tuple[int, int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ino, stat_mod.S_IMODE(st.st_mode))


#: a small file's contents on their way to disk: bytes, or a view into a fetched range
_Contents = bytes | memoryview

_STAT = struct.Struct("<qqQQ")


def _stat_field(i: int) -> Any:
    """Field ``i`` of a packed :class:`_Stat`, as a read-only attribute."""
    return property(lambda self: _STAT.unpack(self)[i])


class _Stat(bytes):
    """What a scan keeps of a changed path's stat: the fields a commit and status use,
    packed into 32 bytes.

    An ``os.stat_result`` costs about 580 bytes with its numbers, an object holding the
    four numbers about 180; a scan of a folder of 1,000,000 new files keeps one per file,
    so it keeps this (about 70) instead.
    """

    __slots__ = ()

    def __new__(cls, st: os.stat_result) -> _Stat:
        return super().__new__(cls, _STAT.pack(st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode))

    @classmethod
    def unlooked(cls, ino: int) -> _Stat:
        """A new regular file the scan saw in its folder's listing, without a ``stat``:
        size and mtime -1 (see :meth:`Mount._classify_new`)."""
        return super().__new__(cls, _STAT.pack(-1, -1, ino, stat_mod.S_IFREG))

    st_size = _stat_field(0)
    st_mtime_ns = _stat_field(1)
    st_ino = _stat_field(2)
    st_mode = _stat_field(3)


def _file_mode(st_mode: int) -> int:
    # all nine permission bits are kept; setuid, setgid and sticky are not (a volume is
    # shared data, not an install)
    return stat_mod.S_IMODE(st_mode) & 0o777


# Reading a file to commit it is not a use of it. A plain open would have the first read
# after every write set the file's access time (relatime): one more inode write per file,
# which the kernel writes back later (10,000 new files: about 9 ms more of reading, and
# 10,000 inode updates). Only the file's owner (or root) may open without it; for anyone
# else the kernel refuses with EPERM and the file is opened as usual.
_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC
_NOATIME = getattr(os, "O_NOATIME", 0)


def _open_to_read(full: str) -> int:
    """A descriptor to read ``full`` with, that leaves its access time alone if it may."""
    if _NOATIME:
        try:
            return os.open(full, _READ_FLAGS | _NOATIME)
        except PermissionError as e:
            if e.errno != errno.EPERM:
                raise  # no permission to read it at all
    return os.open(full, _READ_FLAGS)


def _read_file(
    writer: Any, full: str, previous: Entry | None
) -> tuple[Entry, os.stat_result, os.stat_result]:
    """Store the file at ``full``; return its entry and its ``fstat`` before and after.

    A small file (most of a big tree) is read with one ``read`` into the writer, without
    a buffered file object; a bigger one is streamed (with ``previous``, the entry of the
    version we had, its unchanged chunks are recognized without re-chunking).
    """
    fd = _open_to_read(full)
    try:
        st1 = os.fstat(fd)
        mode = _file_mode(st1.st_mode)
        if st1.st_size <= CHUNK_MIN and stat_mod.S_ISREG(st1.st_mode):
            data = os.read(fd, CHUNK_MIN + 1)
            if len(data) <= CHUNK_MIN:
                entry = writer.bytes_entry(data, mode=mode, mtime_ns=st1.st_mtime_ns)
                return entry, st1, os.fstat(fd)
            os.lseek(fd, 0, os.SEEK_SET)  # it grew meanwhile: read it as a stream
        with open(fd, "rb", closefd=False) as f:
            entry = writer.file_entry(f, mode=mode, mtime_ns=st1.st_mtime_ns, previous=previous)
        return entry, st1, os.fstat(fd)
    finally:
        os.close(fd)


def _read_small(writer: Any, full: str, checked: tuple[int, int, int, int]) -> Entry | None:
    """Store the small regular file at ``full`` that the quiet gate saw as ``checked``
    (``(size, mtime_ns, inode, permission bits)``, see :meth:`quiet.Gate.checked`): one
    open, one read, one close. None if what was read is not of that size (it changed
    since the gate looked; its group waits).

    No ``fstat`` before or after the read, as :func:`_read_file` does: every path read for
    a commit is looked at once more after all of them are read (:meth:`quiet.Gate.confirm`),
    and any write since the gate looked, during this read included, moves the file's ctime,
    so that look defers its group. Two system calls fewer per file (a tenth of the
    committing thread's time for 10,000 small files).
    """
    fd = _open_to_read(full)
    try:
        data = os.read(fd, CHUNK_MIN + 1)
        if 0 < len(data) < checked[0]:
            # a short read (some FUSE file systems give them): read on to the end
            parts = [data]
            while piece := os.read(fd, CHUNK_MIN + 1 - sum(map(len, parts))):
                parts.append(piece)
            data = b"".join(parts)
    finally:
        os.close(fd)
    if len(data) != checked[0]:
        return None
    return writer.bytes_entry(data, mode=checked[3] & 0o777, mtime_ns=checked[1])


def _read_candidate(
    gate: quiet.Gate, writer: Any, root: str, rel: str, previous: Entry | None
) -> tuple[Entry, tuple[int, int, int, int]] | None:
    """Store candidate ``rel`` of a commit: its entry and its row's signature, or None
    (its group deferred) if it changed since the gate looked. Small files take
    :func:`_read_small`, others :func:`_read_file` (``previous`` as there)."""
    checked = gate.checked(rel)
    if checked is not None and checked[0] <= CHUNK_MIN:
        entry = _read_small(writer, f"{root}/{rel}", checked)
        if entry is None:
            gate.defer(rel, "changed while being read")
            return None
        return entry, checked
    entry, st1, st2 = _read_file(writer, f"{root}/{rel}", previous)
    if not gate.check_read(rel, st1, st2) or st2.st_size != entry.size:
        gate.defer(rel, "changed while being read")  # the next commit takes it
        return None
    return entry, _sig(st1)


def _looked_size(gate: quiet.Gate, rel: str) -> int:
    """Changed file ``rel``'s share of a commit's progress total (``gate.looked_bytes``)."""
    checked = gate.checked(rel)
    return checked[0] if checked is not None else 0


def _encodable(rel: str) -> bool:
    """True if ``rel`` is valid UTF-8 on disk (os gives undecodable bytes as surrogates)."""
    if rel.isascii():
        return True
    try:
        rel.encode()
    except UnicodeEncodeError:
        return False
    return True


def _listed(reasons: dict[str, str], most: int, template: str) -> str:
    """The first ``most`` paths of ``reasons`` (path -> why) by name, each as
    ``template`` fills it (``{path}``: shown by :func:`_show`; ``{why}``), joined by
    "; ", then how many more there are."""
    names = sorted(reasons)
    shown = "; ".join(template.format(path=_show(p), why=reasons[p]) for p in names[:most])
    if len(names) > most:
        shown += f"; and {len(names) - most} more (see status())"
    return shown


def _show(rel: str) -> str:
    """How a path is named in messages: as is, or as an escaped byte string if it is not
    UTF-8 (b'caf\\xe9.txt'); very long paths are shortened in the middle."""
    shown = rel if _encodable(rel) else repr(os.fsencode(rel))
    if len(shown) > 120:
        shown = f"{shown[:50]}…{shown[-50:]} ({len(os.fsencode(rel))} bytes)"
    return shown


def _bad_prefix(rel: str) -> str:
    """The shortest leading part of ``rel`` whose last name is not UTF-8."""
    parts = rel.split("/")
    for i in range(len(parts)):
        if not _encodable(parts[i]):
            return "/".join(parts[: i + 1])
    return rel


def _special_kind(st_mode: int) -> str | None:
    """What a file that is neither a regular file, a folder nor a link is (None otherwise)."""
    if stat_mod.S_ISFIFO(st_mode):
        return "a FIFO (named pipe)"
    if stat_mod.S_ISSOCK(st_mode):
        return "a socket"
    if stat_mod.S_ISCHR(st_mode) or stat_mod.S_ISBLK(st_mode):
        return "a device file"
    return None


NOT_UTF8 = "the name is not valid UTF-8; rename it to commit it"
TOO_LONG = "the path is longer than the system allows"


def _human(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} bytes"


def _under(rel: str, prefix: str) -> bool:
    return rel == prefix or rel.startswith(prefix + "/")


def _entry_json(e: Entry) -> str:
    """A row's entry: ``json.dumps(e.encode())``, or for a file in chunks (most rows of a
    big commit, their names checked to be UTF-8) the same JSON value written directly, in
    about 40 % of the time."""
    if e.kind == FILE and e.inline is None and e.chunks is not None:
        return entry_json(e)
    return json.dumps(e.encode())


class _Index:
    """The mount's SQLite state (see the module docstring). Callers hold the mount lock."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, entry TEXT NOT NULL,"
            " size INTEGER, mtime_ns INTEGER, ino INTEGER, mode INTEGER, since_base INTEGER DEFAULT 0)"
        )
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT)")
        # since_base() runs at every commit and reload: without this (partial) index it
        # reads every row, a noticeable part of a one-file commit in a 1,000,000-file mount
        self.db.execute(
            "CREATE INDEX IF NOT EXISTS files_since_base ON files(since_base) WHERE since_base=1"
        )

    def get_meta(self, k: str) -> Any:
        row = self.db.execute("SELECT v FROM meta WHERE k=?", (k,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_meta(self, k: str, v: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (k, json.dumps(v)))

    def drop_meta(self, k: str) -> None:
        """Forget meta value ``k`` (nothing happens if there is none)."""
        self.db.execute("DELETE FROM meta WHERE k=?", (k,))

    def rows(
        self, prefix: str | None = None
    ) -> Iterator[tuple[str, Entry, tuple[int, int, int, int], int]]:
        if prefix is None:
            cur = self.db.execute(
                "SELECT path, entry, size, mtime_ns, ino, mode, since_base FROM files"
            )
        else:
            cur = self.db.execute(
                "SELECT path, entry, size, mtime_ns, ino, mode, since_base FROM files WHERE path=? OR (path>? AND path<?)",
                (prefix, prefix + "/", prefix + "0"),
            )
        for path, entry, size, mtime_ns, ino, mode, since in cur:
            yield (
                path,
                Entry.decode(json.loads(entry), "mount index"),
                (size, mtime_ns, ino, mode),
                since,
            )

    def rows_under(
        self, prefixes: list[str]
    ) -> dict[str, dict[str, tuple[Entry, tuple[int, int, int, int], int]]]:
        """The rows at or below each of ``prefixes`` (``{path: (entry, signature,
        since_base)}``, as :meth:`row` gives one, by
        prefix; a prefix without rows is left out), in one statement: a scan of 10,000
        new names in one folder spent a quarter of the commit asking for each one's rows
        on its own (see :meth:`_under_any`; nothing is written)."""
        if len(prefixes) <= _ROWS_ONE_BY_ONE:
            found = {p: {q: (e, s, since) for q, e, s, since in self.rows(p)} for p in prefixes}
            return {p: r for p, r in found.items() if r}
        cur = self._under_any(
            "r.value, f.path, f.entry, f.size, f.mtime_ns, f.ino, f.mode, f.since_base",
            prefixes,
        )
        out: dict[str, dict[str, tuple[Entry, tuple[int, int, int, int], int]]] = {}
        for prefix, path, entry, size, mtime_ns, ino, mode, since in cur:
            out.setdefault(prefix, {})[path] = (
                Entry.decode(json.loads(entry), "mount index"),
                (size, mtime_ns, ino, mode),
                since,
            )
        return out

    def known_under_any(self, prefixes: Iterable[str]) -> bool:
        """True if there is a row at or below any of ``prefixes`` (one statement, as
        :meth:`rows_under`, that stops at the first row it finds and decodes none)."""
        prefixes = list(prefixes)
        if len(prefixes) <= _ROWS_ONE_BY_ONE:
            return any(self.known_under(p) for p in prefixes)
        return self._under_any("1", prefixes, " LIMIT 1").fetchone() is not None

    def _under_any(self, cols: str, prefixes: list[str], tail: str = "") -> sqlite3.Cursor:
        """``SELECT cols`` of the rows at or below any of ``prefixes`` (``r.value``: the
        prefix a row was found for), as :meth:`rows` finds them for one: the row at the
        prefix, then the rows below it, each by the path index. The prefixes go in as one
        JSON array that ``json_each`` turns into a table; CROSS JOIN keeps that table the
        outer loop (SQLite does not reorder it): left to itself the planner may read every
        row of the mount for the exact lookups."""
        listed = json.dumps(prefixes)
        return self.db.execute(
            f"SELECT {cols} FROM json_each(?) r CROSS JOIN files f ON f.path = r.value"
            f" UNION ALL SELECT {cols} FROM json_each(?) r CROSS JOIN files f"
            f" ON f.path > r.value || '/' AND f.path < r.value || '0'{tail}",
            (listed, listed),
        )

    def row(self, path: str) -> tuple[Entry, tuple[int, int, int, int], int] | None:
        r = self.db.execute(
            "SELECT entry, size, mtime_ns, ino, mode, since_base FROM files WHERE path=?", (path,)
        ).fetchone()
        if r is None:
            return None
        return Entry.decode(json.loads(r[0]), "mount index"), (r[1], r[2], r[3], r[4]), r[5]

    def put(self, items: Iterable[tuple[str, Entry, tuple[int, int, int, int], int]]) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
            ((p, _entry_json(e), s[0], s[1], s[2], s[3], since) for p, e, s, since in items),
        )

    def put_many(self, items: list[tuple[str, Entry, tuple[int, int, int, int], int]]) -> None:
        """Like :meth:`put`, in one transaction (unless the caller already opened one)."""
        if not items:
            return
        if self.db.in_transaction:
            self.put(items)
            return
        self.db.execute("BEGIN")
        try:
            self.put(items)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def delete(self, paths: Iterable[str]) -> None:
        self.db.executemany("DELETE FROM files WHERE path=?", ((p,) for p in paths))

    def since_base(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT path FROM files WHERE since_base=1")]

    def any_since_base(self) -> bool:
        return (
            self.db.execute("SELECT 1 FROM files WHERE since_base=1 LIMIT 1").fetchone() is not None
        )

    def known_under(self, prefix: str) -> bool:
        """True if there is a row for ``prefix`` or for any path below it."""
        return (
            self.db.execute(
                "SELECT 1 FROM files WHERE path=? OR (path>? AND path<?) LIMIT 1",
                (prefix, prefix + "/", prefix + "0"),
            ).fetchone()
            is not None
        )

    def clear_since_base(self) -> None:
        self.db.execute("UPDATE files SET since_base=0 WHERE since_base=1")

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM files").fetchone()[0]

    def any_rows(self) -> bool:
        return self.db.execute("SELECT 1 FROM files LIMIT 1").fetchone() is not None

    def reset(self) -> None:
        """Forget everything: the rows and the meta (a mount starting afresh)."""
        self.db.execute("BEGIN")
        self.db.execute("DELETE FROM files")
        self.db.execute("DELETE FROM meta")
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()


@functools.lru_cache(maxsize=16)
def _ignore_matchers(patterns: tuple[str, ...]) -> tuple[Any, Any]:
    """The ignore patterns as two compiled matchers (one regex each instead of a
    ``fnmatchcase`` call per pattern per path, which was a tenth of a 10,000-file
    commit): patterns for any path, and those ending in ``/`` (folders only)."""
    plain = [fnmatch.translate(p) for p in patterns if not p.endswith("/")]
    dirs = [fnmatch.translate(p[:-1]) for p in patterns if p.endswith("/")]
    return (
        re.compile("|".join(plain)).match if plain else None,
        re.compile("|".join(dirs)).match if dirs else None,
    )


@dataclass
class _Changes:
    """What a scan found: candidate files to hash, links, new folders, vanished paths."""

    files: dict[str, _Stat] = field(default_factory=dict)
    links: dict[str, tuple[str, _Stat]] = field(default_factory=dict)
    dirs: dict[str, _Stat] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    #: paths never committed (see MountStatus.skipped); not a change by themselves
    skipped: dict[str, str] = field(default_factory=dict)
    #: what the journal handed out for this scan (None: a full scan); given back on failure
    taken: set[str] | None = None
    #: inode numbers of changed synced files that have more than one name (hard links)
    linked: set[int] = field(default_factory=set)
    #: the mount's row of each path in files, links and dirs as the scan read it (None:
    #: it had none), so the commit does not ask for it again (one query per file was a
    #: fifth of a commit of 10,000 edited files). Rows change only under the mount lock,
    #: which a scan and the commit of what it found hold throughout.
    rows: dict[str, tuple[Entry, tuple[int, int, int, int], int] | None] = field(
        default_factory=dict
    )

    def row(self, index: _Index, rel: str) -> tuple[Entry, tuple[int, int, int, int], int] | None:
        """The mount's row of ``rel``: the one the scan read, else asked of ``index``."""
        return self.rows[rel] if rel in self.rows else index.row(rel)

    def __bool__(self) -> bool:
        return bool(self.files or self.links or self.dirs or self.gone)


class Mount:
    """A volume materialized in a local folder. Use :meth:`Volume.mount` to make one.

    Write plain files under :attr:`path`, then :meth:`commit` to publish them (the
    background committer also does, every ``interval`` seconds when something changed,
    after each IPython cell, and at interpreter exit); :meth:`reload` to see what others
    committed. ``read_only=True`` refuses commits. Also a context manager that unmounts.

    Commits take only quiet files (see :mod:`jupyter_volume.quiet`): ``settle`` is how
    many seconds a changed file must stay unchanged, ``settle_max_wait`` how long an
    explicit commit waits for that (defaults: ``VolumeConfig.settle_interval`` and
    ``settle_max_wait``).
    """

    #: how a bad ``interval`` is named in errors, and what to do instead (a subclass that
    #: syncs rather than commits says so in its own words)
    _INTERVAL_WORDS = ("the commit interval", " (background=False commits only when asked)")

    @classmethod
    def _check_options(cls, interval: Any, ignore: Any) -> None:
        """InvalidError for a bad ``interval`` or ``ignore``. A string of patterns was
        taken letter by letter, ``'*'`` among them: every file ignored, nothing committed
        or synced, and no error."""
        if interval is not None and (
            isinstance(interval, bool)
            or not isinstance(interval, int | float)
            or not (interval > 0 and math.isfinite(interval))
        ):
            what, hint = cls._INTERVAL_WORDS
            raise InvalidError(
                f"{what} must be a positive, finite number of seconds, not {interval!r}{hint}"
            )
        if ignore is not None and (
            isinstance(ignore, str | bytes)
            or not isinstance(ignore, list | tuple)
            or not all(isinstance(p, str) for p in ignore)
        ):
            example = f"[{ignore!r}]" if isinstance(ignore, str) else "['*.tmp']"
            raise InvalidError(
                f"ignore must be a list of name patterns such as {example}, not {ignore!r}"
            )

    def __init__(
        self,
        volume: Volume,
        path: str | os.PathLike[str] | None = None,
        *,
        read_only: bool = False,
        interval: float | None = None,
        background: bool = True,
        ignore: list[str] | None = None,
        settle: float | None = None,
        settle_max_wait: float | None = None,
    ) -> None:
        cfg = _config()
        self.volume = volume
        self.read_only = read_only
        # Volume.with_mount_options(sub_path=...): the folder shows (and commits into) only
        # this folder of the volume; "" is the whole volume.
        opts = getattr(volume, "_mount_options", None)
        self.sub_path: str = (opts.sub_path or "") if opts is not None else ""
        self._check_options(interval, ignore)  # before anything is made
        self.interval = float(interval if interval is not None else cfg.get("commit_interval", 5.0))
        self.ignore = list(
            ignore if ignore is not None else cfg.get("ignore_patterns", DEFAULT_IGNORE)
        )
        # when a changed file is quiet enough to commit (see jupyter_volume.quiet)
        self._snapshot = quiet.Policy(
            float(
                settle if settle is not None else cfg.get("settle_interval", quiet.DEFAULT_SETTLE)
            ),
            float(
                settle_max_wait
                if settle_max_wait is not None
                else cfg.get("settle_max_wait", quiet.DEFAULT_SETTLE_MAX_WAIT)
            ),
            tuple(cfg.get("snapshot_groups", quiet.DEFAULT_GROUP_PATTERNS)),
        )
        self._progress_config = cfg.get("progress")  # None: transfer_progress loads it
        self._quiet_memory: dict[str, Any] = {}  # signatures seen, and since when
        # (monotonic) when the latest scan began, and when the one before it did: a path
        # missing from a scan's change set was as committed when that scan began
        self._scan_at = self._clean_at = time.monotonic()
        self._deferred: dict[str, str] = {}  # rel -> why, left by the latest commit
        self._retry_after: float | None = None  # when waiting could let them through
        self.path = (
            Path(path if path is not None else Path.cwd() / volume.name).expanduser().absolute()
        )
        self.path = Path(os.path.realpath(self.path))
        if self.path == Path("/") or self.path == Path(self.path.anchor):
            raise InvalidError("refusing to mount a volume at the filesystem root '/'")
        repo = volume._repo
        if repo.chunk_cache is None and cfg.get("chunk_cache_bytes", DEFAULT_CACHE_BYTES) > 0:
            repo.chunk_cache = ChunkCache(
                cache_dir() / "chunks", cfg.get("chunk_cache_bytes", DEFAULT_CACHE_BYTES)
            )
        self._repo = repo
        self._vol_id = volume._resolve().id
        self._key = (volume.store.url, self._vol_id)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.last_commit: CommitInfo | None = None
        self._failures = 0
        self._ipython: Any = None
        self._closed = False
        self._skipped: dict[str, str] = {}  # rel -> reason, as of the latest scans
        # background failures come in streaks (failures with no success between): the
        # committer counts them, and a streak is warned of once, whatever its errors say
        self._streak = 0
        self._warned_streak = 0
        self._given_up = False  # the background committer stopped: the volume is gone
        self._warned_skipped: frozenset[str] | None = None
        # while a read-only mount's reload runs: the paths whose local change it replaced
        self._replacing: set[str] | None = None

        with _mounts_lock:
            other = _mounts.get(self._key)
            if other is not None:
                raise AlreadyExistsError(
                    f"volume {volume.name!r} is already mounted in this process at {other.path}: "
                    "unmount it first (or use that mount)"
                )
            _mounts[self._key] = self
        try:
            self._open_state()
            self._mount()
        except BaseException:
            with _mounts_lock:
                _mounts.pop(self._key, None)
            self._close_state()
            raise
        self._journal = Journal(self.path, skip=self._ignored_dir)
        if getattr(self, "_rescan_first", False) or read_only:
            # files the mount's own commit deferred; or, read-only (no commit took them),
            # local changes made before this mount, which its first reload replaces
            self._journal.requeue(None)
        if background and not read_only:
            self._start_committer()
        atexit.register(self._atexit)

    # -- state ----------------------------------------------------------------------------------
    def _open_state(self) -> None:
        where = f"{self.path}\0{self.sub_path}" if self.sub_path else str(self.path)
        ident = hash_bytes(f"{self.volume.store.url}\0{self._vol_id}\0{where}".encode())[:24]
        self.state_path = state_dir() / "mounts" / ident
        self._lockfile = mountstates.lock_state(
            self.state_path,
            lambda: VolumeBusyError(
                f"{self.path} is mounted by another process for volume {self.volume.name!r}: "
                "unmount it there first",
                [str(self.path)],
            ),
        )
        self._write_mount_json()
        self._refuse_nested()
        self._index = _Index(self.state_path / "index.sqlite")

    def _write_mount_json(self, **more: Any) -> None:
        """Write ``mount.json`` (which folder this state is for, and ``more``) whole:
        through a temporary name, so a sweep never reads half of it."""
        info = {
            "store": self.volume.store.url,
            "volume_id": self._vol_id,
            "name": self.volume.name,
            "path": str(self.path),
            **more,
        }
        tmp = self.state_path / f"mount.json.{uuid.uuid4().hex[:8]}"
        tmp.write_text(json.dumps(info))
        os.replace(tmp, self.state_path / "mount.json")

    def _refuse_nested(self) -> None:
        """Raise InvalidError if an active mount (this process's or another's, of any
        volume) has its folder inside this one's, or this one's inside its folder.

        Nested mounts would take each other's files: the outer one commits the inner
        volume's files as its own, and its reloads delete or replace them, which the
        inner mount then commits to its volume. (Modal mounts each volume at its own
        path.) A mount is active while its lock is held; its folder is in the
        ``mount.json`` beside the lock (written above for this one, before looking, so
        that of two mounts made at once at least one sees the other).
        """
        here = str(self.path)
        # (the same pass removes the states of folders that are gone: see mountstates)
        for d, info in mountstates.other_states(self.state_path.parent, self.state_path):
            there = str(info["path"])
            if not (_under(here, there) or _under(there, here)):
                continue
            try:
                with open(d / "lock", "a+") as f:
                    fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)  # free: nobody mounts it
                continue
            except BlockingIOError:
                pass  # held: an active mount
            except OSError:
                continue
            which = "is" if here == there else "is inside" if _under(here, there) else "contains"
            raise InvalidError(
                f"cannot mount volume {self.volume.name!r} at {here}: that folder {which} the "
                f"mount of volume {info.get('name')!r} at {there}, and mounts may not be nested "
                "(each would commit the other's files). Mount it in a folder of its own."
            )

    def _close_state(self) -> None:
        with contextlib.suppress(Exception):
            self._index.close()
        with contextlib.suppress(Exception):
            fcntl.flock(self._lockfile, fcntl.LOCK_UN)
            self._lockfile.close()

    @property
    def base_seq(self) -> int:
        """The commit the folder was last brought to."""
        # under the lock, as every use of the index (see _Index): a commit on another
        # thread may be halfway through the transaction that moves it
        with self._lock:
            return int(self._index.get_meta("base_seq") or 0)

    def _base_root(self) -> str:
        return self._index.get_meta("base_root") or EMPTY_TREE

    # -- mounting -----------------------------------------------------------------------------------
    def _mount(self) -> None:
        known = self._index.get_meta("base_seq") is not None
        if known and self._stale_state():
            # The folder this state describes is gone: removed to free the disk, moved,
            # or replaced. Its rows would make the mount commit every file as deleted;
            # the mount starts afresh instead (a non-empty folder is refused below).
            self._index.reset()
            known = False
        if self.path.exists() and not self.path.is_dir():
            raise InvalidError(f"cannot mount at {self.path}: it is a file")
        if not known and self.path.exists() and not self._holds_only_ignored():
            raise InvalidError(
                f"cannot mount volume {self.volume.name!r} at {self.path}: the folder is not empty "
                "and is not this volume's mount. Choose an empty or new folder."
            )
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a read-only or forbidden parent: say so in one line
            raise self._folder_error(e, "mount", 0, 0) from e
        self._mark_folder()
        if not known:
            # From here on the folder is this volume's mount, even if materializing it
            # stops partway (a full disk): mounting again in the same folder resumes.
            self._index.set_meta("base_root", EMPTY_TREE)
            self._index.set_meta("base_seq", 0)
        elif not self.read_only:
            # Edits left from an earlier mount of this folder are committed first. The
            # same scan finds the temporary files of downloads (and the hidden folders
            # of staged small files) that a crash of that mount cut off (never synced,
            # possibly big): only this mount writes them here, and it has not started
            # any yet, so they are removed.
            leftovers: list[str] = []
            ch = self._changes(full=True, leftovers=leftovers)
            for rel in leftovers:
                with contextlib.suppress(FileNotFoundError):
                    if stat_mod.S_ISDIR(os.lstat(self.path / rel).st_mode):
                        shutil.rmtree(self.path / rel)
                    else:
                        os.unlink(self.path / rel)
            self._commit_locked("commit edits left from an earlier mount", ch, wait=True)
        self._reload_locked(initial=not known, action="mount")

    def _mark_folder(self) -> None:
        """Mark the mounted folder as this mount's, so that a folder removed and made
        again at the same path (which may get the same inode number at once) is told
        apart: an extended attribute naming the mount's state (invisible in listings;
        the folder holds only the user's files), else its device and inode number
        where the file system takes no extended attributes."""
        st = os.stat(self.path)
        try:
            os.setxattr(self.path, _FOLDER_MARK, self.state_path.name.encode())
            marked = True
        except (OSError, AttributeError):  # AttributeError: no xattr calls (not Linux)
            marked = False
        self._index.set_meta("folder", {"dev": st.st_dev, "ino": st.st_ino, "marked": marked})
        if marked:
            # for the sweep (mountstates): a folder there without the mark is another one
            self._write_mount_json(marked=True)

    def _same_folder(self, st: os.stat_result) -> bool:
        """True if the folder at :attr:`path` (``st``: its stat) is the one marked by
        :meth:`_mark_folder`; True if none was (a state kept by an older version)."""
        was = self._index.get_meta("folder")
        if was is None:
            return True
        if was.get("marked"):
            try:
                return os.getxattr(self.path, _FOLDER_MARK) == self.state_path.name.encode()
            except OSError:
                return False
        return [st.st_dev, st.st_ino] == [was["dev"], was["ino"]]

    def _stale_state(self) -> bool:
        """True if the mount state kept for this folder no longer describes it: the
        folder is missing, is another folder than the one mounted before, or holds only
        ignored names although files were synced into it (a local copy deleted to free
        the disk)."""
        try:
            st = os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            return True
        if not stat_mod.S_ISDIR(st.st_mode):
            return False  # refused as a file below
        if not self._same_folder(st):
            return True
        return self._holds_only_ignored() and self._index.any_rows()

    def _holds_only_ignored(self) -> bool:
        """True if the folder holds nothing, or only names the mount ignores: `rm -rf
        data/*` leaves hidden ones (Jupyter's ``.ipynb_checkpoints``, an editor's swap
        file), which a scan never looks at, so they say nothing of the volume's files."""
        with os.scandir(self.path) as it:
            return all(self._ignored(e.name, e.is_dir(follow_symlinks=False)) for e in it)

    def _folder_lost(self) -> str | None:
        """How the mounted folder stopped being this mount's (removed, or replaced by
        another folder or a file) while mounted; None while it is still the one."""
        try:
            st = os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            return "was removed"
        except OSError:
            return None  # cannot tell: the scan reports what it cannot read
        if not stat_mod.S_ISDIR(st.st_mode):
            return "was replaced by a file"
        if not self._same_folder(st):
            return "was replaced by another folder"
        return None

    def _require_folder(self) -> None:
        """Raise LocalFolderError if the mounted folder was removed or replaced: a scan
        of it would take every file the volume has as deleted."""
        lost = self._folder_lost()
        if lost is not None:
            raise LocalFolderError(
                f"the mounted folder {self.path} (volume {self.volume.name!r}) {lost} while "
                "mounted: nothing was committed, and the volume still has every file. "
                "Unmount, then mount again to bring the files back (to delete files from the "
                "volume, delete them inside the mounted folder).",
                errno.ENOENT,
            )

    # -- scanning ---------------------------------------------------------------------------------------
    def _ignored(self, rel: str, is_dir: bool) -> bool:
        name = rel.rsplit("/", 1)[-1]
        if _is_tmp_name(name):
            return True
        plain, dirs = _ignore_matchers(tuple(self.ignore))
        if plain is not None and (plain(name) or plain(rel)):
            return True
        return is_dir and dirs is not None and bool(dirs(name) or dirs(rel))

    def _ignored_row(self, rel: str, entry: Entry) -> bool:
        """True if ``rel``, a path the volume has, is ignored now (by its name or a folder
        above it). A scan never looks at ignored paths, so they are neither committed
        nor deleted: ignoring what the volume already has (``ignore=["*.ckpt"]``, or a
        pattern added between mounts) keeps it in the volume."""
        return self._ignored(rel, entry.kind == DIR) or (
            "/" in rel and self._ignored_dir(rel.rsplit("/", 1)[0])
        )

    def _ignored_dir(self, rel: str) -> bool:
        return any(
            self._ignored("/".join(rel.split("/")[: i + 1]), True)
            for i in range(rel.count("/") + 1)
        )

    def _full_scan(self, leftovers: list[str] | None = None) -> _Changes:
        """Every change in the folder against the mount's rows; with ``leftovers``, the
        temporary files of downloads found on the way are added to it."""
        rows = {p: (e, s, since) for p, e, s, since in self._index.rows()}
        ch = _Changes()
        seen: set[str] = set()
        stack = [""]
        while stack:
            rel_dir = stack.pop()
            base = self.path / rel_dir if rel_dir else self.path
            try:
                it = os.scandir(base)
            except OSError as e:
                if not rel_dir:
                    # Not "every file deleted": the folder itself cannot be listed.
                    raise LocalFolderError(
                        f"cannot list the mounted folder {self.path} (volume "
                        f"{self.volume.name!r}): {e.strerror or e}. Nothing was committed; "
                        "make it readable again.",
                        e.errno,
                    ) from e
                self._unreadable(rel_dir, e, rows, ch, seen)
                continue
            with it:
                for de in it:
                    rel = f"{rel_dir}/{de.name}" if rel_dir else de.name
                    if leftovers is not None and _is_tmp_name(de.name):
                        leftovers.append(rel)  # a file, or a folder of staged files
                    self._classify_entry(rel, de, rows, ch, seen, stack)
        ch.gone = {p for p in rows if p not in seen and not self._ignored_row(p, rows[p][0])}
        return ch

    def _unreadable(
        self, rel: str, err: OSError, rows: dict[str, Any], ch: _Changes, seen: set[str]
    ) -> None:
        """A path the scan cannot look at (too long for the system, no permission) is
        reported, and what the volume has there is kept: never taken as deleted."""
        ch.skipped[rel] = (
            TOO_LONG
            if err.errno == errno.ENAMETOOLONG
            else f"cannot be read: {err.strerror or err}"
        )
        seen.update(p for p in rows if _under(p, rel))

    def _admitted(self, rel: str, is_dir: bool, ch: _Changes) -> bool:
        """False if a scan passes ``rel`` by: ignored, or (reported in ``ch.skipped``) a
        name no volume can hold."""
        if self._ignored(rel, is_dir):
            return False
        if not _encodable(rel):
            # Such a name cannot be stored (volume paths are UTF-8): report it, never fail
            # the whole commit over it. Nothing below a folder so named is looked at.
            ch.skipped[rel] = NOT_UTF8
            return False
        if len(rel.encode()) > MAX_PATH_BYTES:
            ch.skipped[rel] = TOO_LONG
            return False
        return True

    def _classify_entry(
        self,
        rel: str,
        de: os.DirEntry[str],
        rows: dict[str, Any],
        ch: _Changes,
        seen: set[str],
        stack: list[str],
    ) -> None:
        """Sort listed entry ``de`` (at ``rel``) into ``ch``, as both scans list folders:
        a regular file without a row is new without a ``stat``; anything else is
        stat-ed and classified (an entry gone meanwhile is passed by)."""
        row = rows.get(rel)
        if row is None and de.is_file(follow_symlinks=False):
            self._classify_new(rel, de.inode(), ch, seen)
            return
        try:
            st = de.stat(follow_symlinks=False)
        except FileNotFoundError:
            return  # deleted while we looked
        except OSError as e:
            self._unreadable(rel, e, rows, ch, seen)
            return
        self._classify(rel, st, row, ch, seen, stack)

    def _classify_new(self, rel: str, ino: int, ch: _Changes, seen: set[str]) -> None:
        """A regular file (by its folder's listing) the mount has no row for: added,
        without a ``stat``. What a commit takes of it is what the quiet gate finds when
        it looks, before anything is read (its size, times and mode); a scan that
        stat-ed it too spent a twentieth of a small-file commit on a look the gate
        repeats. So ``ch.files`` holds sizes only for files the mount has rows for."""
        if self._admitted(rel, False, ch):
            seen.add(rel)
            ch.files[rel] = _Stat.unlooked(ino)
            ch.rows[rel] = None

    def _classify(
        self,
        rel: str,
        st: os.stat_result,
        row: Any,
        ch: _Changes,
        seen: set[str],
        stack: list[str] | None,
    ) -> None:
        is_dir = stat_mod.S_ISDIR(st.st_mode)
        if not self._admitted(rel, is_dir, ch):
            return
        entry = row[0] if row else None
        if stat_mod.S_ISLNK(st.st_mode):
            seen.add(rel)
            target = os.readlink(self.path / rel)
            if entry is None or entry.kind != LINK or entry.target != target:
                ch.links[rel] = (target, _Stat(st))
                ch.rows[rel] = row
        elif is_dir:
            seen.add(rel)
            if entry is None or entry.kind != DIR:
                ch.dirs[rel] = _Stat(st)
                ch.rows[rel] = row
            if stack is not None:
                stack.append(rel)
        elif stat_mod.S_ISREG(st.st_mode):
            seen.add(rel)
            if entry is None or entry.kind != FILE or row[1] != _sig(st):
                ch.files[rel] = _Stat(st)
                ch.rows[rel] = row
                if st.st_nlink > 1 and entry is not None:
                    ch.linked.add(st.st_ino)  # a synced file with other names (see _other_names)
        else:
            kind = _special_kind(st.st_mode)
            if kind is not None:
                ch.skipped[rel] = kind

    def _journal_scan(self, dirty: set[str]) -> _Changes:
        ch = _Changes()
        roots: list[str] = []
        for rel in sorted(dirty):
            if any(_under(rel, r) for r in roots[-1:]):
                continue
            roots.append(rel)
        todo: list[str] = []  # the roots to look at, whose rows are asked for at once
        for rel in roots:
            if "/" in rel and self._ignored_dir(rel.rsplit("/", 1)[0]):
                continue
            if not _encodable(rel):
                # no row can hold such a path: just report it (if it is still there)
                bad = _bad_prefix(rel)
                if _exists(self.path / bad) and not self._ignored(
                    bad, os.path.isdir(self.path / bad)
                ):
                    ch.skipped[bad] = NOT_UTF8
                continue
            todo.append(rel)
        found = self._index.rows_under(todo)
        root = os.fspath(self.path)
        for rel in todo:
            rows = found.get(rel, {})
            seen: set[str] = set()
            try:
                st: os.stat_result | None = os.lstat(f"{root}/{rel}")
            except (FileNotFoundError, NotADirectoryError):
                st = None
            except OSError as e:
                self._unreadable(rel, e, rows, ch, seen)
                st = None
            if st is not None:
                stack: list[str] = []
                self._classify(rel, st, rows.get(rel), ch, seen, stack)
                while stack:  # a folder that appeared or changed: look at all of it
                    d = stack.pop()
                    try:
                        it = os.scandir(self.path / d)
                    except OSError as e:
                        self._unreadable(d, e, rows, ch, seen)
                        continue
                    with it:
                        for de in it:
                            self._classify_entry(f"{d}/{de.name}", de, rows, ch, seen, stack)
            ch.gone.update(
                p for p in rows if p not in seen and not self._ignored_row(p, rows[p][0])
            )
        if ch.linked:
            self._other_names(ch)
        return ch

    def _other_names(self, ch: _Changes) -> None:
        """Add to ``ch`` the other names of its changed hard-linked files.

        Writing a file through one name changes it under all of them, but the change
        journal reports only the name it was written through (``ln a b``, then an edit
        of ``a``: ``b`` changed too). The mount's rows record each name's inode number:
        the rows with the inode of a changed file that has more than one name are looked
        at again (one pass over the rows, and only when there is such a file).
        """
        inos = list(ch.linked)
        q = self._index.db.execute
        if len(inos) <= 500:
            found = [
                r[0]
                for r in q(
                    f"SELECT path FROM files WHERE ino IN ({','.join('?' * len(inos))})", inos
                )
            ]
        else:  # one pass over the rows, whatever the number
            found = [r[0] for r in q("SELECT path, ino FROM files") if r[1] in ch.linked]
        for rel in found:
            if rel in ch.files:
                continue
            try:
                st = os.lstat(self.path / rel)
            except OSError:
                continue  # gone: the journal reports that itself
            if stat_mod.S_ISREG(st.st_mode) and st.st_ino in ch.linked:
                self._classify(rel, st, self._index.row(rel), ch, set(), None)

    @bulk_step
    def _changes(self, full: bool = False, leftovers: list[str] | None = None) -> _Changes:
        self._require_folder()
        self._clean_at, self._scan_at = self._scan_at, time.monotonic()  # see _quiet_gate
        journal = getattr(self, "_journal", None)  # not there yet while mounting
        dirty = None if full or journal is None else journal.take()
        try:
            ch = self._full_scan(leftovers) if dirty is None else self._journal_scan(dirty)
            ch.taken = dirty
            self._reconcile(ch, full=dirty is None)
        except BaseException:
            if journal is not None and not full:
                journal.requeue(dirty)  # a failed scan never drops what the journal knew
            raise
        self._note_skipped(ch, dirty)
        return ch

    def _note_skipped(self, ch: _Changes, dirty: set[str] | None) -> None:
        """Keep :attr:`_skipped` current: a full scan replaces it, a journal scan updates
        the parts of the tree it looked at."""
        if dirty is None:
            self._skipped = dict(ch.skipped)
            return
        if not self._skipped and not ch.skipped:
            return

        def looked_at(p: str) -> bool:  # p, or a folder above it, was scanned again
            parts = p.split("/")
            return any("/".join(parts[: i + 1]) in dirty for i in range(len(parts)))

        kept = {p: why for p, why in self._skipped.items() if not looked_at(p)}
        kept.update(ch.skipped)
        self._skipped = kept

    def _reconcile(self, ch: _Changes, full: bool = False) -> None:
        """Take out of scan ``ch`` what an earlier operation of this mount brought about
        but did not record (the process died between the two): a reload's files
        (:meth:`_reconcile_landing`) and a commit that landed (:meth:`_adopt_pushed`).
        ``full``: ``ch`` is a scan of the whole folder."""
        if ch:
            self._reconcile_landing(ch)
        self._adopt_pushed(ch, full)

    def _reconcile_landing(self, ch: _Changes) -> None:
        """After a reload that did not finish, files it wrote (or moved) and folders it
        made may not be recorded (the process died between writing and recording). A
        changed path whose content is the version that unfinished reload was bringing in
        is not a local edit: record it as synced, so a commit never publishes another
        writer's older bytes as ours (nor an empty commit of a folder's new mtime)."""
        landing = self._index.get_meta("landing") or []
        if not landing:
            return
        trees = self._repo.trees
        rows: list[tuple[str, Entry, tuple[int, int, int, int], int]] = []
        for rel, st in list(ch.files.items()):
            if st.st_size < 0:  # a new file the scan did not stat (_Stat.unlooked): look now
                try:
                    st = _Stat(os.lstat(self.path / rel))
                except OSError:
                    continue  # gone, or unreadable: the gate sees what it is
                if not stat_mod.S_ISREG(st.st_mode):
                    continue
            for root in landing:
                e = trees.lookup(root, rel)
                if (
                    e is not None
                    and e.kind == FILE
                    and e.size == st.st_size
                    and e.mode & 0o777 == _file_mode(st.st_mode)
                    and self._same_file(rel, e)
                ):
                    rows.append((rel, e, _sig(st), 0))
                    del ch.files[rel]
                    break
        for rel, (target, st) in list(ch.links.items()):
            for root in landing:
                e = trees.lookup(root, rel)
                if e is not None and e.kind == LINK and e.target == target:
                    rows.append((rel, e, _sig(st), 0))
                    del ch.links[rel]
                    break
        for rel, st in list(ch.dirs.items()):  # made for files it was bringing in
            for root in landing:
                e = trees.lookup(root, rel)
                if e is not None and e.kind == DIR:
                    rows.append((rel, _dir_row(e), _sig(st), 0))
                    del ch.dirs[rel]
                    break
        # a missing file the reload was deleting when it stopped: known by name, or, for
        # a long list (or a state from before names were kept), by its absence from an
        # unfinished reload's target (which also takes a deletion of the user's after a
        # reload that failed and was not retried for the reload's)
        unlinking = self._index.get_meta(_UNLINKING)
        named = set(unlinking) if isinstance(unlinking, list) else None
        gone = [
            rel
            for rel in ch.gone
            if (
                rel in named
                if named is not None
                else any(trees.lookup(root, rel) is None for root in landing)
            )
            and (r := self._index.row(rel)) is not None
            and not r[2]
        ]
        self._index.put_many(rows)
        if gone:
            self._index.delete(gone)
            ch.gone.difference_update(gone)

    def _note_pushing(self, txn: str | None = None) -> None:
        """Before a commit of this mount is published: mark, in the mount's state, that
        one may land, after which commit (the newest this process knows: whatever record
        carries the change set comes after it), and the id the change set goes by
        (``txn``, see :meth:`Repository.commit`). The transaction that records the commit
        takes the mark away. One still there (the process died once the record had
        landed, or while the change set waited to be carried, or the commit failed after
        it went out) makes the next scans settle that change set and recognise what
        landed (:meth:`_adopt_pushed`) instead of publishing those bytes again. A mark
        left by an earlier commit keeps its older bound and adds the new id."""
        mark = self._index.get_meta(_PUSHING)
        if mark is None:
            mark = {"after": self._repo.head(refresh=False).seq}
        elif txn is None:
            return
        if txn is not None:
            # (a few: each failed commit adds one until a commit is recorded)
            mark["txns"] = [*mark.get("txns", [])[-63:], txn]
        self._index.set_meta(_PUSHING, mark)

    def _adopt_pushed(self, ch: _Changes, full: bool) -> None:
        """While a commit of this mount may have landed unrecorded (see
        :meth:`_note_pushing`): first, the commits the mark names are settled, so none
        of them lands after this look (:meth:`Repository.withdraw`: a change set of a
        dead process that still waited to be carried, in this machine's line or on the
        store, landed later over whatever was written since, the folder's own edits
        included). Then a changed path of scan ``ch`` that holds exactly what a
        commit after the mark has there is that commit's, not a local change. For a file
        that is its bytes, size, permissions and modification time (a commit records the
        time the file had; a file changed since has another); for a link its target and
        time; a folder; a deletion, a commit without the path. Such a path is recorded
        as committed after the base (a reload then brings the head's version) and taken
        out of ``ch``, so the mount never publishes it again: if another writer changed
        it after the dead commit landed, that would silently put the older bytes back
        over theirs (a lost update). With ``full`` (``ch`` covers the whole folder) the
        mark is done with; a scan of some paths leaves it for the others."""
        idx = self._index
        mark = idx.get_meta(_PUSHING)
        if mark is None:
            return
        if mark.get("txns"):
            # (under the mount's lock: no commit of this mount is under way)
            self._repo.withdraw(mark["txns"])
            # settled: the next scans need not again; the ids still tell our commits
            # (those of every failed push since the mark was made, not only the last's)
            ours = [*mark.get("ours", []), *mark["txns"]][-64:]
            mark = {"after": mark["after"], "ours": ours}
            idx.set_meta(_PUSHING, mark)
        if ch or ch.taken or mark.get("ours"):
            # (a scan that found nothing may still miss a file deleted since: see
            # _deleted_since_landed)
            self._adopt_landed(ch, int(mark["after"]), mark.get("ours"))
        if full:
            idx.drop_meta(_PUSHING)

    def _adopt_landed(self, ch: _Changes, after: int, ours: list[str] | None = None) -> None:
        """The work of :meth:`_adopt_pushed`: ``ch``'s paths against each commit after
        ``after``, oldest first (the dead commit is among the first), until every path is
        placed. A path changed again since matches none, so all are looked at then: a
        lookup each (a few microseconds: the trees of neighbouring commits share their
        nodes), only while a mark is left.

        ``ours``: the ids of this mount's change sets the mark names; only a commit that
        wrote or carried one of them is looked at then. Another writer's commit tells
        nothing about our paths: one that merely lacks a path we deleted since (it
        deleted the path too, and someone wrote it again after) would take our deletion
        for landed, and the path would never be deleted. (A mark without ids, left by a
        streamed commit, which deletes nothing, is matched on content alone.)"""
        repo = self._repo
        trees = repo.trees
        head = repo.head(refresh=True)
        if head.seq <= after:
            return  # nothing landed since the mark

        def oldest_first() -> Iterator[CommitRecord]:
            # in blocks, each read in parallel (Repository.log), as history reads them
            lo = after + 1
            while lo <= head.seq:
                hi = min(lo + 63, head.seq)
                yield from reversed(list(repo.log(limit=hi - lo + 1, start=hi)))
                lo = hi + 1

        files: dict[str, _Stat] = {}
        for rel, st in ch.files.items():
            if st.st_size < 0:  # a new file the scan did not stat (_Stat.unlooked): look now
                try:
                    st = _Stat(os.lstat(self.path / rel))
                except OSError:
                    continue
                if not stat_mod.S_ISREG(st.st_mode):
                    continue
            files[rel] = st
        links = dict(ch.links)
        dirs = dict(ch.dirs)
        gone = set(ch.gone)
        same: dict[tuple[str, tuple[Any, ...]], bool] = {}  # (path, content) -> file holds it
        rows: list[tuple[str, Entry, tuple[int, int, int, int], int]] = []
        deleted: list[str] = []
        seqs: set[int] = set()

        def holds(rel: str, e: Entry, st: _Stat) -> bool:
            if not (
                e.kind == FILE
                and e.size == st.st_size
                and e.mtime_ns == st.st_mtime_ns
                and e.mode & 0o777 == _file_mode(st.st_mode)
            ):
                return False
            key = (rel, _content_key(e))
            if key not in same:
                same[key] = self._same_file(rel, e)
            return same[key]

        mine = set(ours or ())
        # A file our landed commit wrote that is missing here and was never recorded
        # (the commit failed as far as we knew): the user deleted it since. With no row
        # it is no change to the scan; it must be deleted from the volume, else it stays
        # there and comes back with the next reload. Looked for among the files a
        # commit of ours alone wrote (its diff).
        deleted_since: set[str] = set()
        last_root: str | None = None
        for rec in oldest_first():
            if not (files or links or dirs or gone or mine):
                break
            if mine and rec.txn not in mine and not mine.intersection(rec.extra.get("carried", ())):
                continue  # another writer's commit
            if rec.root == last_root:
                continue  # (a gc record) the tree of the one before
            last_root = rec.root
            try:
                root: str = rec.root
                if self.sub_path:
                    top = trees.lookup(root, self.sub_path)
                    root = top.tree if top is not None and top.kind == DIR else EMPTY_TREE  # type: ignore[assignment]
                if mine:
                    deleted_since |= self._deleted_since_landed(rec, root, mine)
                for rel, st in list(files.items()):
                    e = trees.lookup(root, rel)
                    if e is not None and holds(rel, e, st):
                        rows.append((rel, e, _sig(st), 1))
                        del files[rel]
                        seqs.add(rec.seq)
                for rel, (target, lst) in list(links.items()):
                    e = trees.lookup(root, rel)
                    if (
                        e is not None
                        and e.kind == LINK
                        and e.target == target
                        and e.mtime_ns == lst.st_mtime_ns
                    ):
                        rows.append((rel, e, _sig(lst), 1))
                        del links[rel]
                        seqs.add(rec.seq)
                for rel, dst in list(dirs.items()):
                    e = trees.lookup(root, rel)
                    if e is not None and e.kind == DIR:
                        rows.append((rel, _dir_row(e), _sig(dst), 1))
                        del dirs[rel]
                        seqs.add(rec.seq)
                for rel in list(gone):
                    if trees.lookup(root, rel) is None:
                        deleted.append(rel)
                        gone.discard(rel)
                        seqs.add(rec.seq)
            except NotFoundError:
                continue  # an expired commit whose trees gc removed: it tells nothing
        ch.gone.update(deleted_since)
        if not (rows or deleted):
            return
        idx = self._index
        base = self.base_seq
        own = idx.get_meta("own_seqs") or []
        idx.db.execute("BEGIN")
        try:
            idx.put(rows)
            idx.delete(deleted)
            self._note_gone(deleted)  # deleted after the base, as rows[...] changed after it
            # (for status: the commits of ours the folder is ahead of its base by)
            idx.set_meta("own_seqs", sorted({*own, *(s for s in seqs if s > base)}))
        except BaseException:
            idx.db.execute("ROLLBACK")
            raise
        idx.db.execute("COMMIT")
        for rel, *_rest in rows:
            ch.files.pop(rel, None)
            ch.links.pop(rel, None)
            ch.dirs.pop(rel, None)
            ch.rows.pop(rel, None)  # the scan's row is not the row any more
        ch.gone.difference_update(deleted)

    def _deleted_since_landed(self, rec: CommitRecord, root: str, mine: set[str]) -> set[str]:
        """Files that commit ``rec`` of ours (tree ``root``, as this folder shows it)
        wrote, that are missing here and that the mount never recorded: deleted by the
        user after that commit landed unheard. Only a record that carries no one else's
        change set tells which files are ours: the ones it wrote (its diff from its
        parent; a file it merely kept, another writer's, is not)."""
        if rec.txn not in mine or rec.extra.get("carried") or rec.parent is None:
            # (a record that carried others' change sets cannot tell their files from
            # ours: a deletion then stays uncommitted rather than risk another's file)
            return set()
        trees = self._repo.trees
        try:
            parent = self._sub_root(self._repo.record(rec.parent).root)
            wrote = {p for p, _old, new in trees.diff(parent, root) if new and new.kind != DIR}
        except (NotFoundError, InvalidError):
            return set()  # (expired by gc, or the folder's path is a file there)
        return {
            rel
            for rel in wrote
            if self._index.row(rel) is None and not os.path.lexists(self.path / rel)
        }

    def _note_gone(self, paths: Iterable[str]) -> None:
        """Remember ``paths``, deleted by a commit of this mount that the folder's base
        does not include, for the next reload to look at (the caller records the
        commit, in its transaction).

        A changed path committed after the base keeps a row marked ``since_base``, and
        the reload looks it up in the head; a deleted one has no row left. Without this,
        a file another writer then brought back exactly as the base had it (a restore
        from history) was in no diff from the base: the folder never got it back, and
        said it was in sync. Past :data:`GONE_MAX` paths, the next reload compares
        every path instead.
        """
        paths = list(paths)
        if not paths:
            return
        was = self._index.get_meta(_GONE)
        if was is True:
            return
        got = sorted({*(was or ()), *paths})
        self._index.set_meta(_GONE, got if len(got) <= GONE_MAX else True)

    # -- committing -----------------------------------------------------------------------------------------
    def _quiet_gate(self, ch: _Changes, wait: bool) -> quiet.Gate:
        """Decide which of ``ch`` a commit may take now (see :mod:`jupyter_volume.quiet`).

        With ``wait`` (an explicit commit, reload or unmount), files that are still
        changing are waited for, up to the settle wait limit, rescanning the folder after
        each pause (``ch`` grows with what changed meanwhile). Background commits never
        wait: they defer, and the committer comes back after the settle interval.
        """
        policy = self._snapshot
        # a little past the limit, so that the last look sees the groups that have been
        # waiting for the whole limit as no longer holding the others back
        deadline = time.monotonic() + (policy.max_wait + 0.05 if wait else 0.0)
        while True:
            gate = quiet.Gate(
                self.path,
                [*ch.files, *ch.links],
                ch.gone,
                policy,
                self._quiet_memory,
                clean_at=self._clean_at,
                seen_at=self._known_until(),
                vanished=self._vanished(ch),
                folders=ch.dirs,
            )
            remaining = deadline - time.monotonic()
            if gate.pause is None or remaining <= 0:
                return gate
            # at most a minute at a time: a settle time of 1e10 s is finite, yet too long
            # for one sleep (OverflowError); the folder is looked at again after each
            time.sleep(min(gate.pause, remaining, 60.0))
            try:
                _merge_changes(ch, self._changes())
            except BaseException:
                self._journal_requeue(ch)  # what the first scan found is looked at again
                raise

    def _known_until(self) -> float:
        """The moment until which the last scan's change set names every change: now, if
        the change journal has seen none since the scan took its list (any change before
        this call is in the journal by then); else when the scan began."""
        now = time.monotonic()
        journal = getattr(self, "_journal", None)  # not there yet while mounting
        if journal is not None and journal.peek() is False:
            return now
        return self._scan_at

    def _vanished(self, ch: _Changes) -> list[str]:
        """Paths that are gone again and were never committed (they are in no change
        set, yet the folder had them for a while): of those the journal saw change, and
        of those the gate's memory names (candidates that waited, files gone since). A
        journal names a path only once, and a full scan (at unmount, or once the journal
        lost track) names none, yet a file gone now still holds back a later commit
        whose moment falls while it was there (see quiet.Gate.forget_taken)."""
        # One pass over each, no union of them: after a big commit was deferred the
        # memory holds an entry per file, and a set of a million names is tens of MiB.
        taken = ch.taken or ()
        known = self._quiet_memory
        if not taken and not known:
            return []
        out = []
        for rel in itertools.chain(taken, (r for r in known if r not in taken)):
            if rel in ch.files or rel in ch.links or rel in ch.dirs or rel in ch.gone:
                continue
            if self._ignored(rel, False):
                continue
            if "/" in rel and self._ignored_dir(rel.rsplit("/", 1)[0]):
                continue
            if not os.path.lexists(self.path / rel):
                out.append(rel)
        return out

    def commit(self, message: str | None = None) -> CommitInfo | None:
        """Publish the folder's changes as one commit; None when there was nothing to commit.

        Only quiet files are taken (see :mod:`jupyter_volume.quiet`): files still changing
        are waited for, up to ``settle_max_wait`` seconds; then files that any process
        holds open for writing, that are still changing, or that belong with such a file
        (a database and its ``-wal``) are left for a later commit, named in a warning and
        in ``status().deferred``. Raises InvalidError on a read-only mount. When garbage
        collection elsewhere deleted data the commit reused, it reads the files once more
        and commits them against the new head.
        """
        if self.read_only:
            raise InvalidError(
                f"volume {self.volume.name!r} is mounted read-only at {self.path}: commits are refused"
            )
        with self._lock:
            self._check_open()
            try:
                info = self._commit_locked(message, self._changes(), wait=True)
            except CollectedMeanwhileError:
                # another client's gc deleted data this commit's view still had: the
                # files are on disk, so the second try reads them against the new head
                info = self._commit_locked(message, self._changes(), wait=True)
            # a commit went through: whatever failed before has recovered (under the lock,
            # so a background commit failing after this one is not forgotten)
            self.last_error = None
        self._warn_problems(errors=False)
        return info

    @bulk_step
    def _commit_locked(
        self, message: str | None, ch: _Changes, kind: str = "commit", wait: bool = False
    ) -> CommitInfo | None:
        if not ch:
            self._deferred, self._retry_after = {}, None
            return None
        repo = self._repo
        writer: Writer | None = None
        bar: Any = None
        try:
            # only what is quiet is read: see _quiet_gate (``wait``: an explicit commit)
            gate = self._quiet_gate(ch, wait)
            tops = self._stream_tops(ch)
            if tops is None:
                writer = repo.writer()
                bar = self._start_reading(ch, writer, gate)
                moved = self._moved_from(ch)
        except BaseException:
            # the journal handed these paths over: a failure before reading them (a store
            # error as the writer loads the index, say) must leave them for the next try
            if bar is not None:
                bar.close()
            if writer is not None:
                writer.abort()
            self._journal_requeue(ch)
            raise
        if tops is not None:
            return self._commit_streamed(message, ch, gate, kind, wait, tops)
        assert writer is not None and bar is not None
        changes: dict[str, Entry | str | None] = {}
        new_rows: list[tuple[str, Entry, tuple[int, int, int, int], int]] = []
        same_rows: list[tuple[str, Entry, tuple[int, int, int, int], int]] = []
        deferred = False
        root = os.fspath(self.path)
        moves: dict[str, str] = {}  # new path -> the deleted path it was moved from
        try:
            for rel in sorted(ch.files):
                bar.update(_looked_size(gate, rel))
                if not gate.ready(rel):
                    continue
                if moved:
                    was = gate.checked(rel)
                    entry = self._moved_entry(moved.get(was)) if was is not None else None
                    if entry is not None:
                        # a file moved (or linked) here from a path this commit deletes:
                        # the volume has its bytes already; confirm() re-checks it
                        changes[rel] = entry
                        new_rows.append((rel, entry, was, 1))  # type: ignore[arg-type]
                        moves[rel] = moved[was]  # type: ignore[index]
                        continue
                old = ch.row(self._index, rel)
                # the version we had: its chunks are recognized without re-chunking
                prev = old[0] if old is not None and old[0].chunks else None
                try:
                    got = _read_candidate(gate, writer, root, rel, prev)
                except (FileNotFoundError, IsADirectoryError, PermissionError):
                    gate.defer(rel, "could not be read")
                    continue
                if got is None:
                    continue
                entry, sig = got
                if old is not None and old[0].same_content(entry):
                    same_rows.append(
                        (rel, dataclass_replace(old[0], mtime_ns=entry.mtime_ns), sig, old[2])
                    )
                    if old[0].mtime_ns == entry.mtime_ns:
                        continue
                changes[rel] = entry
                new_rows.append((rel, entry, sig, 1))
            for rel, (target, st) in ch.links.items():
                if not gate.ready(rel):
                    continue
                entry = Entry(
                    rel.rsplit("/", 1)[-1], LINK, 0o777, len(target), st.st_mtime_ns, target=target
                )
                changes[rel] = entry
                new_rows.append((rel, entry, _sig(st), 1))
            for rel in ch.gone:
                if gate.ready(rel):
                    changes[rel] = None
            # Everything read must still be as it was checked, in every group: else the
            # group waits (what was read of it stays in packs for gc, at most its size).
            held = dict(gate.confirm())
            if held:
                for rel in held:
                    changes.pop(rel, None)
                new_rows = [r for r in new_rows if r[0] not in held]
                same_rows = [r for r in same_rows if r[0] not in held]
            # New folders go too, except, when files were deferred, one that holds nothing
            # committed and did not exist yet at the moment the commit stands for (a
            # repository being created while the commit is held back to before that)
            parents = {p.rsplit("/", i)[0] for p in changes for i in range(1, p.count("/") + 1)}
            for rel, st in ch.dirs.items():
                if held and rel not in parents and not gate.folder_ready(rel):
                    held[rel] = "a new folder still being filled"
                    continue
                entry = Entry(rel.rsplit("/", 1)[-1], DIR, 0o755, 0, st.st_mtime_ns)
                changes[rel] = entry
                new_rows.append((rel, entry, _sig(st), 1))
            self._deferred, self._retry_after = held, gate.pause
            deferred = bool(held)
            if wait and held:
                self._warn_deferred(held)
            if not changes:
                writer.abort()
                self._index.put(same_rows)
                gate.forget_taken(held)
                if deferred:
                    self._journal_requeue(ch)
                return None
            pre = f"{self.sub_path}/" if self.sub_path else ""
            message = message or _move_message(changes, moves, pre)
            if self.sub_path:
                changes = {f"{pre}{rel}": v for rel, v in changes.items()}
            # a volume deleted elsewhere gets no commit (it would land under no name)
            self.volume._check_alive(writer)
            txn = uuid.uuid4().hex
            self._note_pushing(txn)
            rec, _stats = repo.commit(
                changes,
                message=message or _auto_message(changes),
                writer=writer,
                kind=kind,
                txn=txn,
            )
        except BaseException:
            writer.abort()
            self._journal_requeue(ch)
            raise
        finally:
            bar.close()
        idx = self._index
        idx.db.execute("BEGIN")
        idx.put(same_rows)
        gone = [p for p in ch.gone if p not in held]
        if (
            rec is not None
            and rec.parent == self.base_seq
            and not rec.extra.get("carried")
            and not idx.since_base()
            and not idx.get_meta(_GONE)
        ):
            # Nobody committed in between, and the commit holds no other writer's change
            # (group commit): the folder now reflects exactly this commit.
            idx.put((p, e, sig, 0) for p, e, sig, _ in new_rows)
            idx.set_meta("base_root", self._sub_root(rec.root))
            idx.set_meta("base_seq", rec.seq)
        else:
            idx.put(new_rows)
            self._note_gone(gone)
            if rec is not None:
                idx.set_meta("own_seqs", [*(idx.get_meta("own_seqs") or []), rec.seq])
        idx.delete(gone)
        idx.drop_meta(_PUSHING)  # recorded: see _note_pushing
        idx.db.execute("COMMIT")
        gate.forget_taken(held)
        if deferred:
            self._journal_requeue(ch)
        if rec is None:
            return None
        self.last_commit = CommitInfo._of(rec)
        return self.last_commit

    def _moved_from(self, ch: _Changes) -> dict[tuple[int, int, int, int], str]:
        """The paths ``ch`` deletes, by what their file was when last in sync with the
        volume: ``(size, mtime_ns, inode, permission bits)``, as the index records it.

        A changed path whose file (as the quiet gate checked it) has one of these is that
        file, moved or hard-linked there (``mv data/raw archive/``): its content is what
        the volume has for the old path, by the same test that tells a file unchanged in
        place, so the commit takes that entry instead of reading the file again (a move
        of 50 GB commits without reading them). Not looked for when the change set is
        mostly deletions (a deleted tree is rarely a moved one; looking costs a row each).
        """
        if not ch.gone or not ch.files or len(ch.gone) > 10 * len(ch.files) + 1000:
            return {}
        q = self._index.db.execute
        out: dict[tuple[int, int, int, int], str] = {}
        for rel in ch.gone:
            r = q("SELECT size, mtime_ns, ino, mode FROM files WHERE path=?", (rel,)).fetchone()
            if r is not None:
                out[tuple(r)] = rel  # type: ignore[index]
        return out

    def _moved_entry(self, src: str | None) -> Entry | None:
        """The file entry the index records for ``src`` (a deleted path of
        :meth:`_moved_from`), name left empty like a read file's; None if not a file."""
        if src is None:
            return None
        row = self._index.row(src)
        if row is None or row[0].kind != FILE:
            return None
        return dataclass_replace(row[0], name="")

    def _stream_tops(self, ch: _Changes) -> set[str] | None:
        """The top-level names of ``ch`` if it may be committed by streaming (see
        :meth:`_commit_streamed`), else None. It may when it has many paths, no deletion,
        and every top-level name it touches is unknown to the mount (no row at or below
        it) and absent from the head. If another writer adds one of them meanwhile, the
        streamed tree is merged over theirs like any commit: nothing of theirs is lost."""
        if ch.gone or len(ch.files) + len(ch.links) + len(ch.dirs) < STREAM_AT:
            return None
        tops = {p.partition("/")[0] for d in (ch.files, ch.links, ch.dirs) for p in d}
        if self._index.known_under_any(tops):
            return None
        repo = self._repo
        root = repo.head(refresh=True).root
        pre = ""
        if self.sub_path:
            e = repo.trees.lookup(root, self.sub_path)
            if e is not None and e.kind != DIR:
                return None
            pre = self.sub_path + "/"
        if any(repo.trees.lookup(root, pre + t) is not None for t in tops):
            return None
        return tops

    def _start_reading(self, ch: _Changes, writer: Any, gate: quiet.Gate) -> Any:
        """Before a commit reads the changed files of ``ch`` through ``writer``: tell the
        writer how many bytes are coming (its last packs come smaller, so the upload
        nothing else overlaps is short), and return the commit's progress bar."""
        from .progress import transfer_progress

        total = gate.looked_bytes
        writer.packs.expect(total)
        return transfer_progress(
            f"{self.volume.name}: commit",
            total_bytes=total,
            total_files=len(ch.files),
            config=self._progress_config,
        )

    def _commit_streamed(
        self,
        message: str | None,
        ch: _Changes,
        gate: quiet.Gate,
        kind: str,
        wait: bool,
        tops: set[str],
    ) -> CommitInfo | None:
        """Commit new paths in bounded memory (the initial commit of a big tree).

        The same commit as the plain path (same quiet gate, same checks of every file
        read, same rows), built differently: files are read in tree order and handed to
        :meth:`Repository.commit_stream` one by one, which builds the tree bottom up and
        uploads it as it goes, and their rows go into the mount's database in batches of
        one open transaction. So neither the change set nor the rows are ever held whole.
        Paths the gate defers after they were read (changed meanwhile, or a new group
        member changed) are taken out of the finished tree before it is published and
        their rows out of the transaction. A crash or error publishes nothing and rolls
        the rows back.
        """
        repo = self._repo
        idx = self._index
        writer = repo.writer()
        pre = f"{self.sub_path}/" if self.sub_path else ""
        exact = not idx.any_since_base()  # checked before our rows are written
        base_seq = self.base_seq
        # Tree order (repository.tree.tree_order_key) as a string key: NUL, which no name
        # holds, sorts below every character. The keys live only while sorting: the
        # order itself holds the scan's own strings.
        order = [p for d in (ch.files, ch.links, ch.dirs) for p in d]
        order.sort(key=lambda p: p.replace("/", "\0"))
        direct: dict[str, int] = {}  # folder -> files and links committed directly in it
        unread: set[str] = set()  # files and links the gate deferred before they were read
        # the first files and links taken (and folders, for a commit of folders alone),
        # for the commit's message
        first: list[str] = []
        first_dirs: list[str] = []
        rows: list[tuple[str, Entry, tuple[int, int, int, int], int]] = []
        bar = self._start_reading(ch, writer, gate)

        def taken(rel: str, entry: Entry, sig: tuple[int, int, int, int]) -> None:
            # as synced with the base (usual); marked otherwise below if it is not
            rows.append((rel, entry, sig, 0))
            if len(rows) >= STREAM_ROWS:
                idx.put(rows)  # inside the open transaction: rolled back on failure
                rows.clear()
            if entry.kind != DIR:
                folder = rel.rpartition("/")[0]
                direct[folder] = direct.get(folder, 0) + 1
                if len(first) < 64:
                    first.append(rel)
            elif len(first_dirs) < 64:
                first_dirs.append(rel)

        root = os.fspath(self.path)

        def items() -> Iterator[tuple[str, Entry]]:
            for rel in order:
                st = ch.dirs.get(rel)
                if st is not None:
                    # every new folder goes in now (the builder needs it before its
                    # contents); one the gate would not take comes out in finish()
                    entry = Entry(rel.rsplit("/", 1)[-1], DIR, 0o755, 0, st.st_mtime_ns)
                    taken(rel, entry, _sig(st))
                    yield pre + rel, entry
                    continue
                link = ch.links.get(rel)
                if link is not None:
                    if not gate.ready(rel):
                        unread.add(rel)
                        continue
                    target, st = link
                    entry = Entry(
                        rel.rsplit("/", 1)[-1],
                        LINK,
                        0o777,
                        len(target),
                        st.st_mtime_ns,
                        target=target,
                    )
                    taken(rel, entry, _sig(st))
                    yield pre + rel, entry
                    continue
                if not gate.ready(rel):
                    bar.update(_looked_size(gate, rel))
                    unread.add(rel)
                    continue
                try:
                    got = _read_candidate(gate, writer, root, rel, None)
                except (FileNotFoundError, IsADirectoryError, PermissionError):
                    gate.defer(rel, "could not be read")
                    got = None
                if got is None:
                    bar.update(_looked_size(gate, rel))
                    unread.add(rel)
                    continue
                entry = got[0]
                bar.update(entry.size)  # what the gate looked at: else it is not taken
                # under its name already: the tree builder takes it as it is
                entry.name = rel.rpartition("/")[2]
                taken(rel, *got)
                yield pre + rel, entry

        held: dict[str, str] = {}

        def auto_message() -> str:
            # files and links, as the commit's +N counts them; folders only when the
            # commit is of new folders alone
            n, names = sum(direct.values()), first
            if n <= 0:
                n, names = sum(1 for d in ch.dirs if d not in held), first_dirs
            shown = next((p for p in names if p not in held), names[0])
            return _auto_message_n(n, pre + shown)

        def finish(top: str) -> str | None:
            # last thing before the record is published: a volume deleted elsewhere gets
            # no commit (it would land under no name). Its round trip overlaps the checks.
            alive = _alive_pool.submit(self.volume._check_alive, writer)
            try:
                idx.put(rows)
                rows.clear()
                # Everything read must still be as it was checked, in every group (as in
                # _commit_locked): what the gate defers now comes out of the tree.
                held.update(gate.confirm())
            finally:
                alive.result()
            for rel in held:
                if (rel in ch.files or rel in ch.links) and rel not in unread:
                    folder = rel.rpartition("/")[0]
                    direct[folder] -= 1  # read and put in the tree, now taken out
            if held:
                # New folders holding nothing committed that did not exist yet at the
                # moment the commit stands for wait too (see _commit_locked).
                parents = {
                    d.rsplit("/", i)[0]
                    for d, n in direct.items()
                    if n > 0 and d
                    for i in range(0, d.count("/") + 1)
                }
                for rel in ch.dirs:
                    if rel not in parents and not gate.folder_ready(rel):
                        held[rel] = "a new folder still being filled"
            out = [
                rel
                for rel in held
                if rel in ch.dirs or ((rel in ch.files or rel in ch.links) and rel not in unread)
            ]
            if out:
                idx.delete(out)
                # a folder is removed only when nothing remains in it (Trees.apply)
                top, _stats = repo.trees.apply(top, {pre + rel: None for rel in out})
            if not any(n > 0 for n in direct.values()) and all(d in held for d in ch.dirs):
                return None  # nothing left to commit
            return top

        try:
            self._note_pushing()  # outside the transaction: it must outlive a crash
        except BaseException:
            bar.close()
            writer.abort()
            self._journal_requeue(ch)
            raise
        idx.db.execute("BEGIN")
        try:
            try:
                rec, _stats = repo.commit_stream(
                    items(),
                    message=message or auto_message,
                    writer=writer,
                    kind=kind,
                    edit=finish,
                    flush_bytes=STREAM_TREE_BYTES,
                )
            finally:
                bar.close()
            self._deferred, self._retry_after = held, gate.pause
            if (
                rec is not None
                and rec.parent == base_seq
                and not rec.extra.get("carried")
                and exact
            ):
                # Nobody committed in between: the folder now reflects exactly this commit.
                idx.set_meta("base_root", self._sub_root(rec.root))
                idx.set_meta("base_seq", rec.seq)
            else:
                # Our rows are exactly those under ``tops`` (none were there before):
                # committed after the base, so a reload looks at them.
                for t in tops:
                    idx.db.execute(
                        "UPDATE files SET since_base=1 WHERE path=? OR (path>? AND path<?)",
                        (t, t + "/", t + "0"),
                    )
                if rec is not None:
                    idx.set_meta("own_seqs", [*(idx.get_meta("own_seqs") or []), rec.seq])
            idx.drop_meta(_PUSHING)  # recorded: see _note_pushing
        except BaseException:
            idx.db.execute("ROLLBACK")
            writer.abort()
            self._journal_requeue(ch)
            raise
        idx.db.execute("COMMIT")
        gate.forget_taken(held)
        if wait and held:
            self._warn_deferred(held)
        if held:
            self._journal_requeue(ch)
        if rec is None:
            return None
        self.last_commit = CommitInfo._of(rec)
        return self.last_commit

    def _warn_deferred(self, held: dict[str, str]) -> None:
        """Tell the caller of an explicit commit which files it left for later, and why."""
        shown = _listed(held, 5, "{path} ({why})")
        warnings.warn(
            f"volume {self.volume.name!r}: {len(held)} file(s) left for a later commit, "
            f"since they are open for writing or still changing: {shown}. Close them (for a "
            "database: its connections) and commit again.",
            stacklevel=4,
        )

    def _journal_requeue(self, ch: _Changes) -> None:
        """Paths we could not commit now must be looked at again next time."""
        if getattr(self, "_journal", None) is None:
            # while mounting (edits left from an earlier mount) there is no journal yet:
            # the one made next starts with a full scan instead
            self._rescan_first = True
            return
        if ch.taken is not None:
            self._journal._dirty.update(ch.taken)
        self._journal._dirty.update(ch.files)
        self._journal._dirty.update(ch.links)
        self._journal._dirty.update(ch.dirs)
        self._journal._dirty.update(ch.gone)

    # -- status ------------------------------------------------------------------------------------------
    def status(self) -> MountStatus:
        """Uncommitted added/modified/deleted paths, how many commits the folder is behind,
        and which changed files the latest commit deferred, and why (``deferred``)."""
        with self._lock:
            self._check_open()
            self._require_folder()
            ch = self._full_scan()
            self._reconcile(ch, full=True)
            self._note_skipped(ch, None)
            st = MountStatus(
                self.volume.name,
                str(self.path),
                read_only=self.read_only,
                background=self._thread is not None,
                skipped={_show(p): why for p, why in ch.skipped.items()},
            )
            for rel, fst in ch.files.items():
                row = ch.row(self._index, rel)
                if row is None:
                    st.added.append(rel)
                elif self._modified(rel, fst, row):
                    st.modified.append(rel)
            # a link or folder where the volume has something (a link repointed, a file
            # replaced by a folder) is a modification, as the commit counts it
            for rel in [*ch.links, *ch.dirs]:
                row = ch.row(self._index, rel)
                (st.added if row is None else st.modified).append(rel)
            st.deleted.extend(ch.gone)
            st.added.sort()
            st.modified.sort()
            st.deleted.sort()
            st.base_seq = self.base_seq
            st.head_seq = self._repo.head(refresh=True).seq
            st.own_commits = len(
                [s for s in self._index.get_meta("own_seqs") or [] if s > st.base_seq]
            )
            st.last_commit_seq = self.last_commit.seq if self.last_commit else None
            st.last_error = self.last_error
            pending = ch.files.keys() | ch.links.keys() | ch.dirs.keys() | ch.gone
            st.deferred = {_show(p): why for p, why in self._deferred.items() if p in pending}
            return st

    def _modified(self, rel: str, st: os.stat_result | _Stat, row: Any) -> bool:
        """True if the file at ``rel`` (``st``: its lstat) differs from what index row
        ``row`` records: in size, mtime, mode or bytes (not just its inode number)."""
        sig = _sig(st)
        return (
            row[1][:2] != sig[:2]
            or row[1][3] != sig[3]
            or row[0].kind != FILE
            or not self._same_file(rel, row[0])
        )

    def _same_file(self, rel: str, entry: Entry) -> bool:
        # A touched file whose bytes did not change is not "modified" (git does the same).
        if entry.inline is not None:
            try:
                return (self.path / rel).read_bytes() == entry.inline
            except OSError:
                return False
        from .repository.codec import iter_chunks

        try:
            with open(self.path / rel, "rb") as f:
                hashes = [(hash_bytes(mv), len(mv)) for mv in iter_chunks(f)]
        except OSError:
            return False
        return hashes == (entry.chunks or [])

    # -- reloading ----------------------------------------------------------------------------------------
    def _busy_paths(self) -> list[str]:
        out = []
        root = str(self.path)
        try:
            cwd = os.getcwd()
        except OSError:
            cwd = ""
        if cwd == root or cwd.startswith(root + "/"):
            out.append(f"{cwd} (the current working directory)")
        try:
            fds = os.listdir("/proc/self/fd")
        except OSError:
            fds = []
        for fd in fds:
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.startswith(root + "/") and not target.startswith(str(self.state_path)):
                out.append(target)
        return sorted(set(out))

    def reload(self) -> None:
        """Bring the folder to the newest commit.

        Raises VolumeBusyError naming each file under the mount that this process has open
        (or the working directory, if it is inside the mount). Local changes are committed
        first; then each changed file is written to a temporary name and renamed into
        place. Files that did not change are not touched (they keep their inodes).

        A read-only mount never commits, so its local changes to the volume's paths (an
        edit, a deletion) are replaced by the volume's version instead, named in a
        warning; files the volume does not have are left alone.
        """
        with self._lock:
            self._check_open()
            # Under the lock: a commit of this mount on another thread (the background
            # committer, a cell's while a widget reloads) has the file it reads open
            # under the folder, which is not the user's.
            busy = self._busy_paths()
            if busy:
                raise VolumeBusyError(
                    f"cannot reload volume {self.volume.name!r}: files under {self.path} are open in this process: "
                    + ", ".join(busy)
                    + ". Close them (or leave the folder) and reload again.",
                    busy,
                )
            self._require_folder()
            if not self.read_only:
                self._commit_locked("commit before reload", self._changes(), wait=True)
                self._reload_locked()
                return
            self._replacing = set()
            try:
                self._reload_locked(local=self._changes())
                replaced = self._replacing
            finally:
                self._replacing = None
        if replaced:
            warnings.warn(
                f"reload of read-only mount {self.path} replaced {len(replaced)} local "
                "change(s) with the volume's version (a read-only mount never commits): "
                + ", ".join(_show(p) for p in sorted(replaced)[:5])
                + (f" and {len(replaced) - 5} more" if len(replaced) > 5 else ""),
                stacklevel=2,
            )

    def _sub_root(self, root: str) -> str:
        """The tree this folder shows of volume tree ``root`` (its ``sub_path`` folder)."""
        if not self.sub_path:
            return root
        e = self._repo.trees.lookup(root, self.sub_path)
        if e is None:
            return EMPTY_TREE
        if e.kind != DIR:
            raise InvalidError(
                f"cannot mount {self.sub_path} of volume {self.volume.name!r}: it is a file, not a folder"
            )
        return e.tree  # type: ignore[return-value]

    def _local_to_undo(self, local: _Changes | None, head_root: str) -> dict[str, Entry | None]:
        """The paths of scan ``local`` whose local change a read-only reload undoes, each
        with the volume's entry there (None: the volume has nothing there): edited,
        deleted, retyped or repointed paths the mount has a row for, and new local paths
        where the volume has something (what status() lists, but for new paths the
        volume does not have: those are the user's, left alone)."""
        if not local:
            return {}
        out: dict[str, Entry | None] = {}
        lookup = self._repo.trees.lookup
        for rel in [*local.files, *local.links, *local.dirs, *local.gone]:
            row = self._index.row(rel)
            e = lookup(head_root, rel)
            if row is None and e is None:
                continue  # the user's own new path: a read-only mount leaves it alone
            if (
                rel in local.files
                and row is not None
                and not self._modified(rel, local.files[rel], row)
            ):
                continue  # as status() says: no change (another inode, same file)
            out[rel] = e
        return out

    @bulk_step
    def _reload_locked(
        self, initial: bool = False, action: str = "reload", local: _Changes | None = None
    ) -> None:
        """Bring the folder to the head (see :meth:`reload`). ``local``: local changes (a
        scan) to replace with the volume's version too, besides what the head changed
        (a read-only mount's reload; :attr:`_replacing` is set then)."""
        repo = self._repo
        if initial:
            repo.warm_readers()
        head = repo.head(refresh=True)
        if self.sub_path:
            head = dataclass_replace(head, root=self._sub_root(head.root))
        base_root = self._base_root()
        undo = self._local_to_undo(local, head.root)
        if (
            head.root == base_root
            and not initial
            and not undo
            and not self._index.since_base()
            # an unfinished reload may have left the folder between base and its target
            # (see _reload_to), and a deletion of ours may have been undone since (see
            # _note_gone), even where the head came back to the base's very tree
            and not self._index.get_meta("landing")
            and not self._index.get_meta(_GONE)
        ):
            self._index.set_meta("base_seq", head.seq)
            self._index.set_meta("own_seqs", [])
            self._index.set_meta("landing", [])
            self._index.drop_meta(_UNLINKING)
            return
        # The index objects the head lists load while the trees are compared: the first
        # file to write needs them, a round trip later otherwise. Best effort: what
        # failed here is loaded again where it is needed (Repository.locate).
        loading: Future[None] | None = _prefetch_pool.submit(
            repo.ensure_index, head.index, head.gc_pointer
        )

        def loaded() -> None:
            nonlocal loading
            if loading is not None:
                futures_wait([loading])
                loading = None

        try:
            self._reload_to(head, base_root, undo, initial, action, loaded)
        finally:
            loaded()

    def _reload_to(
        self,
        head: CommitRecord,
        base_root: str,
        undo: dict[str, Entry | None],
        initial: bool,
        action: str,
        loaded: Callable[[], None],
    ) -> None:
        """The rest of :meth:`_reload_locked`, once the folder is known to differ from
        ``head``; ``loaded()`` waits for the head's index, before the first file is
        written."""
        repo = self._repo
        # Remembered until this reload finishes: if it stops partway (even by a crash
        # between writing a file and recording it), _reconcile recognizes what it wrote.
        landing = [r for r in self._index.get_meta("landing") or [] if r != head.root]
        self._index.set_meta("landing", [*landing[-(LANDING_MAX - 1) :], head.root])
        if self._index.get_meta(_UNLINKING) is None and not landing:
            self._index.set_meta(_UNLINKING, [])  # (see _apply: names what it deletes)
        if initial and base_root == EMPTY_TREE and self._index.count() == 0:
            # A fresh mount: nothing local to compare with. Materialize the head in batches
            # so memory stays bounded however many files the volume holds (the walk is
            # depth first, so a folder always comes before what is in it).
            batch: dict[str, Entry | None] = {}
            for p, e in repo.trees.walk(head.root):
                batch[p] = e
                if len(batch) >= MOUNT_BATCH_PATHS:
                    loaded()
                    self._apply(batch, action)
                    batch = {}
            loaded()
            self._apply(batch, action)
            self._based_on(head)
            return
        paths: dict[str, Entry | None] = {}
        try:
            # What changed since the base; and since the target of each earlier reload
            # that did not finish (a kill, a store error mid-download): each of its paths
            # may hold that target's version here (recorded as synced, or by
            # _reconcile_landing), or be gone from here (its deletion), while the head has
            # the base's version again or none: a file it brought that another writer
            # deleted since, a deletion undone since. The base's diff alone misses those,
            # and the folder kept them for good.
            for root in (base_root, *landing):
                for p, _old, new in repo.trees.diff(root, head.root):
                    paths[p] = new
        except NotFoundError:
            # The commit the folder reflects (or an unfinished reload's target) was
            # expired by gc and its trees are gone: compare every path instead (slower,
            # still correct).
            paths = {p: None for p, _e, _s, _b in self._index.rows()}
            initial = True
        for p in self._index.since_base():
            if p not in paths:
                paths[p] = repo.trees.lookup(head.root, p)
        gone = self._index.get_meta(_GONE)  # deleted by commits of ours after the base
        if gone is True:
            initial = True  # too many to list: every path is compared
        for p in gone or ():
            if p not in paths:
                paths[p] = repo.trees.lookup(head.root, p)
        if initial:
            for p, e in repo.trees.walk(head.root):
                paths[p] = e
        for p, e in undo.items():
            paths.setdefault(p, e)
        self._refuse_written(paths, action)
        loaded()
        self._apply(paths, action)
        self._based_on(head)

    def _based_on(self, head: CommitRecord) -> None:
        """Record that the folder now reflects commit ``head`` (a reload or mount has
        put it in place): its base, and nothing of earlier syncs left to settle."""
        self._index.set_meta("base_root", head.root)
        self._index.set_meta("base_seq", head.seq)
        self._index.set_meta("own_seqs", [])
        self._index.set_meta("landing", [])
        self._index.drop_meta(_UNLINKING)
        self._index.drop_meta(_GONE)
        self._index.clear_since_base()

    def _refuse_written(self, paths: dict[str, Entry | None], action: str) -> None:
        """Raise VolumeBusyError if the reload would replace or delete a file, with no
        local change, that some process holds open (or mapped) for writing.

        A reload puts a file in place by renaming a new one over it: a program writing
        the old one would go on writing a file that no longer has a name, and all it
        wrote from then on would be lost without a word. (A file with local changes is
        kept anyway, and committed later: the last writer wins.) Checked before the
        reload changes anything; a program that opens the file after this check is not
        seen, as with Modal's own "volume busy" check.
        """
        top = f"{self.path}/"
        present: dict[str, int] = {}  # path -> its st_mode (Writers needs no lstat of its own)
        for p, e in paths.items():
            if e is None or e.kind != DIR:
                with contextlib.suppress(OSError):
                    present[p] = os.lstat(top + p).st_mode
        if not present:
            return
        busy = quiet.Writers(self.path, len(present))
        held: dict[str, list[str]] = {}
        for rel, mode in present.items():
            who = busy.get(rel, mode)
            # (a file changed here is kept anyway, except by a read-only reload)
            if who and (
                self._replacing is not None or _left_as_is(top + rel, self._index.row(rel))
            ):
                held[rel] = who
        if held:
            shown = "; ".join(
                f"{_show(p)} ({busy.how(p)}{', '.join(w[:3])})" for p, w in sorted(held.items())[:5]
            )
            raise VolumeBusyError(
                f"cannot {action} volume {self.volume.name!r}: the newest commit changes files "
                f"under {self.path} that a program is writing: {shown}. Replacing them would "
                "send that program's further writes to a deleted file. Let it finish (or stop "
                f"it) and {action} again.",
                sorted(held),
            )

    def _apply(self, paths: dict[str, Entry | None], action: str = "reload") -> None:
        """Make the folder match ``paths`` (path -> head entry or None), never losing local edits.

        Every path is recorded as it lands, so the mount state is exact if this stops
        partway; a folder that cannot be written (full, read-only) raises LocalFolderError.
        """
        pending = {"bytes": 0, "files": 0}
        try:
            self._apply_paths(paths, pending)
        except VolumeError:
            raise
        except OSError as e:
            raise self._folder_error(e, action, pending["bytes"], pending["files"]) from e

    def _folder_error(self, e: OSError, action: str, need: int, nfiles: int) -> LocalFolderError:
        """A one-line error for a folder that could not be written, saying what to do."""
        where = f"cannot {action} volume {self.volume.name!r} at {self.path}"
        again = "mount again in the same folder" if action == "mount" else "reload again"
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            try:
                vfs = os.statvfs(self.path)
                free = f"; {_human(vfs.f_bavail * vfs.f_frsize)} free"
            except OSError:
                free = ""
            return LocalFolderError(
                f"{where}: the disk is full: {_human(need)} more is needed for {nfiles} "
                f"file(s) not yet written{free}. Free space there and {again}.",
                e.errno,
            )
        if e.errno == errno.EROFS:
            return LocalFolderError(
                f"{where}: the folder is on a read-only file system. Make it writable and {again}.",
                e.errno,
            )
        what = f" {e.filename}" if e.filename else ""
        return LocalFolderError(
            f"{where}: cannot write{what}: {e.strerror or e}. Fix that and {again}.", e.errno
        )

    def _apply_paths(self, paths: dict[str, Entry | None], pending: dict[str, int]) -> None:
        idx = self._index
        dirty_local: set[str] = set()
        replacing = self._replacing  # a read-only reload: local changes are replaced

        def locally_clean(rel: str, row: Any) -> bool:
            try:
                st = os.lstat(self.path / rel)
            except FileNotFoundError:
                return True
            return _unchanged_since(st, row)

        deletions = sorted((p for p, e in paths.items() if e is None), reverse=True)
        updates = sorted(p for p, e in paths.items() if e is not None)
        if deletions:
            # named before any is touched: see _UNLINKING
            named = idx.get_meta(_UNLINKING)
            if isinstance(named, list):
                named = sorted({*named, *deletions})
                idx.set_meta(_UNLINKING, named if len(named) <= UNLINKING_MAX else True)
        moved = self._move_local(paths, deletions)
        to_write = [paths[p] for p in updates if paths[p].kind == FILE and p not in moved]  # type: ignore[union-attr]
        pending["files"] = len(to_write)
        pending["bytes"] = sum(e.size for e in to_write)  # type: ignore[union-attr]
        removed = []
        try:
            for rel in deletions:
                row = idx.row(rel)
                if row is None:
                    continue
                kind = row[0].kind
                if not locally_clean(rel, row):
                    if replacing is None:
                        dirty_local.add(rel)
                        continue
                    # read-only: the volume's version (none) replaces the local change
                    replacing.add(rel)
                    with contextlib.suppress(FileNotFoundError):
                        kind = DIR if stat_mod.S_ISDIR(os.lstat(self.path / rel).st_mode) else FILE
                full = self.path / rel
                try:
                    if kind == DIR:
                        full.rmdir()
                    else:
                        full.unlink()
                except FileNotFoundError:
                    pass
                except OSError as e:
                    if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                        raise  # read-only, ...: an error, never "kept a local change"
                    dirty_local.add(rel)  # a folder with local files in it stays
                    if replacing is not None:
                        replacing.discard(rel)
                    continue
                removed.append(rel)
        finally:
            idx.delete(removed)  # what was removed is recorded, even if we stop here

        files: list[tuple[str, Entry]] = []
        expect: dict[str, tuple[int, int, int, int] | None] = {}
        rows: list[tuple[str, Entry, tuple[int, int, int, int], int]] = []
        fresh: set[str] = set()
        try:
            self._apply_updates(paths, updates, files, rows, dirty_local, expect, fresh)
        finally:
            idx.put_many(rows)
        from .progress import transfer_progress

        with transfer_progress(
            f"{self.volume.name}: download",
            total_bytes=sum(e.size for _r, e in files),
            total_files=len(files),
            config=self._progress_config,
        ) as bar:
            pending["files"], pending["bytes"] = len(files), sum(e.size for _r, e in files)
            done: list[tuple[str, Entry, tuple[int, int, int, int], int]] = []
            try:
                for landed in self._write_files(files, expect, dirty_local, fresh):
                    done += [(rel, e, sig, 0) for rel, e, sig in landed]
                    nbytes = sum([e.size for _r, e, _s in landed])
                    pending["files"] -= len(landed)
                    pending["bytes"] -= nbytes
                    bar.update(nbytes)
                    if len(done) >= 1000 or nbytes > SMALL_FILE:
                        idx.put_many(done)  # one SQLite transaction per group of written files
                        done = []
            finally:
                idx.put_many(done)  # files that landed are recorded, also when we stop here
        if replacing is not None:
            replacing.difference_update(dirty_local)  # written during the download: kept
        if dirty_local:
            self._kept_local(dirty_local)

    def _move_local(self, paths: dict[str, Entry | None], deletions: list[str]) -> set[str]:
        """Files the new commit moved (a path it deletes, and one it adds with the same
        content) are moved here too, by renaming the local file, when that file is as
        the mount left it and nothing is at the new path yet: a folder moved by another
        writer costs a rename per file, not a download. What is moved is recorded at
        once (the old path's row goes, the new path's comes), so the rest of the reload
        finds it in place; anything else is left to the usual download. Returns the new
        paths of what was moved.
        """
        sizes = {e.size for e in paths.values() if e is not None and e.kind == FILE and e.size}
        if not deletions or not sizes:
            return set()
        idx = self._index
        size_of = "SELECT size FROM files WHERE path=?"
        by_content: dict[tuple[Any, ...], list[tuple[str, Any]]] = {}
        for rel in deletions:
            # only a deleted file of a size the commit adds is decoded (a reload that
            # deletes a big folder and adds a few files reads a number per deletion)
            r = idx.db.execute(size_of, (rel,)).fetchone()
            if r is None or r[0] not in sizes:
                continue
            row = idx.row(rel)
            if row is not None and row[0].kind == FILE:
                by_content.setdefault(_content_key(row[0]), []).append((rel, row))
        if not by_content:
            return set()
        root = os.fspath(self.path)
        rows: list[tuple[str, Entry, tuple[int, int, int, int], int]] = []
        gone: list[str] = []
        try:
            for rel, e in paths.items():
                if e is None or e.kind != FILE or e.size == 0:
                    continue
                sources = by_content.get(_content_key(e))
                if not sources:
                    continue
                old, row = sources.pop()
                src, dst = f"{root}/{old}", f"{root}/{rel}"
                try:
                    if not _left_as_is(src, row) or os.path.lexists(dst):
                        continue  # edited here, or something in the way: the usual path
                    os.makedirs(os.path.dirname(dst), exist_ok=True)
                    os.rename(src, dst)
                except OSError:
                    continue  # a file where a folder should be, ...: the usual path
                if e.mode & 0o777 != row[0].mode & 0o777:
                    os.chmod(dst, e.mode & 0o777)
                st = os.lstat(dst)
                if st.st_mtime_ns != e.mtime_ns:
                    os.utime(dst, ns=(st.st_atime_ns, e.mtime_ns))
                    st = os.lstat(dst)
                rows.append((rel, e, _sig(st), 0))
                gone.append(old)
        finally:
            if rows:
                idx.db.execute("BEGIN")
                idx.delete(gone)
                idx.put(rows)
                idx.db.execute("COMMIT")
        return {r[0] for r in rows}

    def _local_versions(self, files: list[tuple[str, Entry]]) -> dict[str, tuple[str, Entry]]:
        """For big files about to be written, a local file to copy shared chunks from
        (the reload downloads only the rest): ``rel -> (its full path, its entry)``. The
        version the folder has of the same path, if it shares a chunk with the new one;
        else another path of the folder with the same content (a copy another writer
        made). Only files as the mount left them; every copied chunk is checked anyway.
        """
        out: dict[str, tuple[str, Entry]] = {}
        root = os.fspath(self.path)

        wanted: dict[tuple[Any, ...], list[str]] = {}  # content -> paths with no version here
        for rel, e in files:
            if not e.chunks:
                continue
            row = self._index.row(rel)
            if (
                row is not None
                and row[0].kind == FILE
                and row[0].chunks
                and {h for h, _n in row[0].chunks} & {h for h, _n in e.chunks}
                and _left_as_is(f"{root}/{rel}", row)
            ):
                out[rel] = (f"{root}/{rel}", row[0])
            else:
                wanted.setdefault(_content_key(e), []).append(rel)
        # the first chunk of each wanted content, by size: a row of the same size is
        # decoded only if its text names that chunk (many files of one size are common)
        firsts: dict[int, set[str]] = {}
        for key in wanted:
            firsts.setdefault(key[2], set()).add(key[1][0][0])
        sizes = sorted(firsts)
        for i in range(0, len(sizes), 500):  # one scan of the rows per 500 sizes
            part = sizes[i : i + 500]
            cur = self._index.db.execute(
                "SELECT path, entry, size, mtime_ns, ino, mode FROM files WHERE size IN "
                f"({','.join('?' * len(part))})",
                part,
            )
            for path, raw, size, mtime_ns, ino, mode in cur:
                if not any(h in raw for h in firsts[size]):
                    continue
                e = Entry.decode(json.loads(raw), "mount index")
                targets = wanted.get(_content_key(e)) if e.kind == FILE else None
                if targets and _left_as_is(f"{root}/{path}", (e, (size, mtime_ns, ino, mode))):
                    for rel in targets:
                        out[rel] = (f"{root}/{path}", e)
                    del wanted[_content_key(e)]
        return out

    def _kept_local(self, paths: set[str]) -> None:
        """A reload kept these paths' local changes instead of the volume's version: say
        so (a live NFS folder overrides this: its next push publishes them anyway)."""
        why = (
            "this mount is read-only and never commits them: a reload replaces them, except "
            "a folder holding files the volume does not have"
            if self.read_only
            else "commit them to publish"
        )
        warnings.warn(
            f"reload kept {len(paths)} path(s) with local changes instead of the volume's version "
            f"({why}): {', '.join(sorted(paths)[:5])}",
            stacklevel=5,
        )

    def _apply_updates(
        self,
        paths: dict[str, Entry | None],
        updates: list[str],
        files: list[tuple[str, Entry]],
        rows: list[tuple[str, Entry, tuple[int, int, int, int], int]],
        dirty_local: set[str],
        expect: dict[str, tuple[int, int, int, int] | None],
        fresh: set[str] | None = None,
    ) -> None:
        """Folders and links of ``updates`` are made here (recorded into ``rows``); the
        files to download are collected into ``files``, and into ``expect`` what is at
        each path now (see :meth:`_write_files`); into ``fresh``, the folders made here
        (nothing was there): a file below one is not looked for."""
        idx = self._index
        root = os.fspath(self.path)
        replacing = self._replacing  # a read-only reload: local changes are replaced
        # a first mount has no rows: no lookup per path then
        row_of = idx.row if idx.db.execute("SELECT 1 FROM files LIMIT 1").fetchone() else None
        for rel in updates:
            e = paths[rel]
            assert e is not None
            row = row_of(rel) if row_of is not None else None
            # One lstat answers "is the local copy clean" and "is a folder in the way"
            # (string paths: pathlib's joins cost more than the lstat itself here). In a
            # folder made just now there is nothing to look at (a file made there since
            # is found before anything replaces it: see _write_files).
            st: os.stat_result | None = None
            if not (fresh and e.kind == FILE and rel.rpartition("/")[0] in fresh):
                try:
                    st = os.lstat(f"{root}/{rel}")
                except FileNotFoundError:
                    pass
            full = self.path / rel if st is not None or e.kind != FILE else None
            if st is None and row is not None:
                if replacing is not None:
                    replacing.add(rel)  # read-only: the volume's version comes back
                else:
                    # Deleted here since the mount last wrote it: a local change, as an
                    # edit is. The volume's newer version must not bring it back (the
                    # deletion is the newer act); the next commit or push publishes it.
                    if not (row[0].kind == e.kind and row[0].same_content(e)):
                        dirty_local.add(rel)
                    continue
            if e.kind == DIR:
                if st is not None and stat_mod.S_ISDIR(st.st_mode):
                    if row is None or row[0].kind != DIR:
                        rows.append((rel, _dir_row(e), _sig(st), 0))
                    continue
                assert full is not None
                if st is not None:
                    if not _unchanged_since(st, row):
                        if replacing is None:
                            dirty_local.add(rel)
                            continue
                        replacing.add(rel)
                    full.unlink()
                full.mkdir(parents=True, exist_ok=True)
                rows.append((rel, _dir_row(e), _sig(os.lstat(full)), 0))
                if st is None and fresh is not None:
                    fresh.add(rel)
                continue
            clean = st is None or _unchanged_since(st, row)
            if (
                st is not None
                and row is not None
                and row[0].kind == e.kind
                and row[0].same_content(e)
                and clean
            ):
                continue  # already there (our own commit, or unchanged content)
            if not clean:
                if replacing is None:
                    dirty_local.add(rel)
                    continue
                assert st is not None
                if not (stat_mod.S_ISREG(st.st_mode) and row is not None) or self._modified(
                    rel, st, row
                ):
                    replacing.add(rel)  # (not a file that only got another inode)
            if st is not None and stat_mod.S_ISDIR(st.st_mode):
                assert full is not None
                try:
                    full.rmdir()  # only an empty folder makes way for the volume's file
                except OSError as err:
                    if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                        raise
                    dirty_local.add(rel)
                    continue
            if e.kind == LINK:
                assert full is not None
                full.parent.mkdir(parents=True, exist_ok=True)
                tmp = full.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}"
                os.symlink(e.target or "", tmp)
                try:
                    os.replace(tmp, full)
                except BaseException:
                    with contextlib.suppress(OSError):
                        tmp.unlink()
                    raise
                rows.append((rel, e, _sig(os.lstat(full)), 0))
            else:
                files.append((rel, e))
                # what is there now (nothing, or the clean copy): checked again right
                # before the download replaces it
                expect[rel] = (
                    _sig(st) if st is not None and not stat_mod.S_ISDIR(st.st_mode) else None
                )

    def _write_files(
        self,
        files: list[tuple[str, Entry]],
        expect: dict[str, tuple[int, int, int, int] | None] | None = None,
        kept: set[str] | None = None,
        fresh: set[str] | None = None,
    ) -> Iterator[list[tuple[str, Entry, tuple[int, int, int, int]]]]:
        """Materialize files atomically; small ones in coalesced batches, big ones streamed.

        Yields the files that landed, as lists of ``(rel, entry, signature)``: a staged
        folder's files in one list, every other file in a list of its own, each as soon
        as it is in place (so that the caller records it, even if a later one fails).

        With ``expect`` (path -> its lstat signature when the reload decided to replace
        it, None: nothing there): a path changed locally since then (written while its
        new version downloaded) is left as it is and added to ``kept``, not replaced.

        ``fresh``: folders the reload made just now (empty). The small files of such a
        folder with no folder made below it are written into a hidden folder beside it,
        which then takes its place in one rename (only if it is still empty: else each
        file is renamed in, checked as above). No file is ever seen half-written either
        way, and a folder of small files costs one rename instead of one per file.
        """
        repo = self._repo
        small = [(r, e) for r, e in files if e.inline is not None or e.size <= SMALL_FILE]
        big = [(r, e) for r, e in files if not (e.inline is not None or e.size <= SMALL_FILE)]

        made: set[str] = set()
        older = self._local_versions(big)
        token = uuid.uuid4().hex[:16]
        counter = itertools.count()
        root = os.fspath(self.path)

        def create(
            path: str, rel: str, e: Entry, data: _Contents | None
        ) -> tuple[int, int, int, int]:
            """Make the new file ``path`` holding ``data`` (None: big file ``rel``, whose
            chunks the download threads check and pwrite; those the version here has
            too are copied from it, checked), with ``e``'s times and mode (created with
            its mode: the umask alone can make a chmod needed). Its signature as lstat
            will give it; a failure leaves no file behind."""
            fd = os.open(path, _NEW_FILE, e.mode & 0o777)
            try:
                try:
                    if data is None:
                        _read_big(repo, e, fd, rel, older.get(rel))
                    else:
                        write_all(fd, data)
                    os.utime(fd, ns=(e.mtime_ns, e.mtime_ns))
                    st = os.fstat(fd)
                    if stat_mod.S_IMODE(st.st_mode) != e.mode & 0o777:
                        os.fchmod(fd, e.mode & 0o777)
                        st = os.fstat(fd)
                finally:
                    os.close(fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(path)
                raise
            return _sig(st)  # size, mtime, inode and mode

        def write(
            rel: str, e: Entry, data: _Contents | None
        ) -> tuple[str, Entry, tuple[int, int, int, int]] | None:
            # Plain strings and os calls: per small file, pathlib's joins were a third of
            # a 10,000-file mount's Python time.
            full = f"{root}/{rel}"
            parent = full.rpartition("/")[0]
            if parent not in made:
                os.makedirs(parent, exist_ok=True)
                made.add(parent)
            tmp = f"{parent}/{TMP_PREFIX}{token}-{next(counter)}"
            sig = create(tmp, rel, e, data)
            try:
                if not place(tmp, rel, full):
                    return None
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            return rel, e, sig

        def place(src: str, rel: str, full: str) -> bool:
            """Rename ``src`` to ``full`` unless ``full`` changed since the reload looked;
            False (``src`` removed, ``rel`` kept) if it did."""
            if expect is not None and rel in expect and _now_sig(full) != expect[rel]:
                # Written here while its new version downloaded: that write is newer
                # (and a file closed meanwhile may never be written again), so it
                # stays; the next commit publishes it.
                os.unlink(src)
                if kept is not None:
                    kept.add(rel)
                return False
            os.replace(src, full)
            return True

        # Folders whose small files are staged (see the docstring): full path -> how
        # many are still to come; once written, (hidden folder, [(rel, entry, sig)]).
        # (Nothing was at any path in a fresh folder: _apply_updates made the folder,
        # so each such file expects None.)
        waiting: dict[str, int] = {}
        if fresh:
            inner = {d.rpartition("/")[0] for d in fresh}  # has a folder made below it
            for rel, _e in small:
                d = rel.rpartition("/")[0]
                if d in fresh and d not in inner:
                    waiting[f"{root}/{d}"] = waiting.get(f"{root}/{d}", 0) + 1
        staged: dict[str, tuple[str, list[tuple[str, Entry, tuple[int, int, int, int]]]]] = {}

        def write_staged(
            jobs: list[tuple[str, Entry, _Contents, str]],
        ) -> tuple[list[tuple[str, Entry, tuple[int, int, int, int], str]], Exception | None]:
            """Write ``jobs`` (rel, entry, bytes, folder) into their folders' staging
            folders; what was written, and the error that stopped it (if one did)."""
            out = []
            for rel, e, data, folder in jobs:
                try:
                    sig = create(f"{staged[folder][0]}/{rel.rpartition('/')[2]}", rel, e, data)
                except Exception as err:  # noqa: BLE001 - handed to the caller
                    return out, err
                out.append((rel, e, sig, folder))
            return out, None

        def write_batch_staged(
            jobs: list[tuple[str, Entry, _Contents, str]],
        ) -> Iterator[list[tuple[str, Entry, tuple[int, int, int, int]]]]:
            """Write one batch's staged files, half of them on another thread (the
            halves are mostly in different folders, whose creates the kernel runs side
            by side), then land the folders that are complete."""
            for _r, _e, _d, folder in jobs:
                if folder not in staged:
                    hidden = f"{folder.rpartition('/')[0]}/{TMP_PREFIX}{token}-{next(counter)}"
                    os.mkdir(hidden)
                    staged[folder] = (hidden, [])
            half = len(jobs) // 2 if len(jobs) >= SPLIT_AT else 0
            other = beside(write_staged, jobs[:half]) if half else None
            try:
                mine = write_staged(jobs[half:])
            finally:
                theirs = other.result() if other is not None else ([], None)
            for written, _err in (theirs, mine):
                for rel, e, sig, folder in written:
                    staged[folder][1].append((rel, e, sig))
                    waiting[folder] -= 1
            if theirs[1] is not None or mine[1] is not None:
                raise theirs[1] or mine[1]  # type: ignore[misc]
            for folder in dict.fromkeys(f for _r, _e, _d, f in jobs):
                if not waiting[folder]:
                    yield from land(folder)

        def land(folder: str) -> Iterator[list[tuple[str, Entry, tuple[int, int, int, int]]]]:
            """Put a staged folder in place: in one rename if its folder is still empty,
            else file by file (each checked); what is left of it is removed."""
            hidden, done = staged.pop(folder)
            try:
                try:
                    os.rename(hidden, folder)  # replaces only an empty folder
                except OSError:
                    pass  # something was made there meanwhile: file by file
                else:
                    yield done
                    return
                for rel, e, sig in done:
                    if place(f"{hidden}/{rel.rpartition('/')[2]}", rel, f"{root}/{rel}"):
                        yield [(rel, e, sig)]
            finally:
                if os.path.lexists(hidden):
                    shutil.rmtree(hidden, ignore_errors=True)

        # Small files: in batches of about BATCH_BYTES, each one plan of coalesced ranged
        # reads fetched in parallel; the next batch is fetched while this one is written.
        # Fetching everything first left the writing waiting for the whole download: a
        # quarter of a 10,000-file mount. Files renamed in one by one are written one
        # after the other (the kernel serializes creates in one folder: threads gained
        # nothing); staged ones on two threads, each half of a batch mostly into other
        # folders (a 10,000-file mount from a local store into ext4: 0.43 -> 0.35 s).
        batches: list[list[tuple[str, Entry]]] = []
        batch_bytes = BATCH_BYTES
        for rel, e in small:
            if batch_bytes >= BATCH_BYTES:
                batches.append([])
                batch_bytes = 0
            batches[-1].append((rel, e))
            batch_bytes += e.size
        # (each batch's contents are written and dropped: views into its ranges do)
        read_views = functools.partial(repo.read_many, views=True)
        ahead = None
        try:
            for i, batch in enumerate(batches):
                contents = (
                    ahead.result() if ahead is not None else read_views([e for _r, e in batch])
                )
                ahead = None
                if i + 1 < len(batches):
                    ahead = beside(read_views, [e for _r, e in batches[i + 1]])
                jobs: list[tuple[str, Entry, _Contents, str]] = []
                plain: list[tuple[str, Entry, _Contents]] = []
                for (r, en), data in zip(batch, contents, strict=True):
                    folder = f"{root}/{r.rpartition('/')[0]}"
                    if folder in waiting:
                        jobs.append((r, en, data, folder))
                    else:
                        plain.append((r, en, data))
                if jobs:
                    yield from write_batch_staged(jobs)
                for r, en, data in plain:
                    got = write(r, en, data)
                    if got is not None:
                        yield [got]
        except Exception:
            for folder in list(staged):  # the files written so far land, and are recorded
                yield from land(folder)
            raise
        finally:
            if ahead is not None:
                ahead.drop()  # a write failed (or the caller stopped): not needed
            for hidden, _done in staged.values():  # stopped: nothing of them landed
                shutil.rmtree(hidden, ignore_errors=True)
        futures = [_materialize_pool.submit(write, r, e, None) for r, e in big]
        # If one fails, the others still land (or fail) before we raise: each that landed
        # is handed to the caller to be recorded, none is written behind its back later.
        error: BaseException | None = None
        try:
            for fut in futures:
                try:
                    result = fut.result()
                except Exception as e:  # noqa: BLE001 - re-raised below, after the others
                    error = error or e
                    continue
                if result is not None:
                    yield [result]
        finally:
            for fut in futures:
                fut.cancel()
        if error is not None:
            raise error

    # -- background committer ----------------------------------------------------------------------------
    def _start_committer(self) -> None:
        self._thread = threading.Thread(
            target=self._run_committer, name=f"jv-commit-{self.volume.name}", daemon=True
        )
        self._thread.start()
        try:
            from IPython import get_ipython

            ip = get_ipython()
        except Exception:
            ip = None
        if ip is not None:
            ip.events.register("post_run_cell", self._after_cell)
            self._ipython = ip

    def _after_cell(self, *_a: Any) -> None:
        self._wake.set()
        self._warn_problems()

    def _warn_problems(self, errors: bool = True) -> None:
        """Warn about a failing background commit and about paths that are never
        committed: each failure streak once (the first error of failures with no success
        between; its later errors, which often differ only by the object they name, are
        in status()), and each distinct set of paths once."""
        streak = self._streak  # read first: the committer sets the error, then the streak
        err = self.last_error
        if errors and err is not None and streak != self._warned_streak:
            self._warned_streak = streak
            self._warn(
                err
                if self._given_up
                else f"background commit of volume {self.volume.name!r} failed: {err} "
                "(it is retried; status() shows the last error)"
            )
        self._warn_skipped(f"volume {self.volume.name!r} at {self.path}", "not committed")

    def _warn_skipped(self, where: str, what: str, words: Callable[[str], str] = str) -> None:
        """Say which paths are never taken from the folder (a FIFO, a name that is not
        UTF-8: ``where: N path(s) <what>: ...``), once per distinct set; ``words`` puts
        each reason in the kind's own words."""
        skipped = self._skipped
        if not skipped:
            self._warned_skipped = None
            return
        key = frozenset(skipped)
        if key == self._warned_skipped:
            return
        self._warned_skipped = key
        shown = _listed({p: words(why) for p, why in skipped.items()}, 10, "{path}: {why}")
        self._warn(f"{where}: {len(skipped)} path(s) {what}: {shown}")

    @staticmethod
    def _warn(message: str) -> None:
        """Issue a warning of :meth:`_warn_problems`, attributed to jupyter_volume.

        Not through ``warnings.warn``: from IPython's ``post_run_cell`` hook that names
        a line of IPython's event dispatcher, and Python's default filter shows a text
        from one line once, so a second failure streak with the same error (after a
        recovery) would never be shown. The mount decides what is news; the warning
        filters still apply (``filterwarnings("ignore", module="jupyter_volume")``).
        """
        warnings.warn_explicit(
            message,
            UserWarning,
            filename="jupyter_volume",
            lineno=0,
            module="jupyter_volume.mount",
            registry=None,  # a fresh registry: no "seen before" from earlier streaks
        )

    def _run_committer(self) -> None:
        while not self._stop.is_set():
            delay = (
                self.interval
                if not self._failures
                else min(self.interval * 2**self._failures, 60.0)
            )
            if self._retry_after is not None and not self._failures:
                # files were deferred because they were still changing: look again as
                # soon as they may have settled, not a whole interval later
                delay = min(delay, max(self._retry_after, 0.05))
            # capped: a longer wait (an interval of 1e10 s) raises OverflowError, which
            # would end this thread and every background and after-cell commit with it
            self._wake.wait(min(delay + random.uniform(0, 0.1 * delay), threading.TIMEOUT_MAX))
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                with self._lock:
                    if self._closed:
                        break
                    if self._journal.peek() is False:
                        self._scan_at = time.monotonic()  # known unchanged until now
                        continue  # nothing changed: no commit, no scan
                    self._commit_locked(None, self._changes(), kind="auto")
                self.last_error = None
                self._failures = 0
            except Exception as e:  # noqa: BLE001 - reported, retried, never fatal
                self._failed(e)
                if isinstance(e, NotFoundError) and self.volume._gone is not None:
                    # Deleted (or renamed) elsewhere: no retry can ever commit. Say so
                    # once, as news, and stop instead of scanning the folder forever.
                    self.last_error = (
                        f"{e}: background commits of {self.path} stopped (its files stay "
                        "there; unmount() ends the mount)"
                    )
                    self._given_up = True
                    self._streak += 1
                    return

    def _failed(self, e: BaseException) -> None:
        """Record a failed background commit (or live sync): its error, one more failure
        (the retries back off), and a new streak when it is the first failure since one
        went through (an explicit commit clears ``last_error``; see _warn_problems)."""
        if not self._failures or self.last_error is None:
            self._streak += 1
        self._failures += 1
        self.last_error = f"{type(e).__name__}: {e}"

    def _atexit(self) -> None:
        if not self._closed and not self.read_only:
            with contextlib.suppress(Exception):
                self.unmount()

    # -- unmounting -----------------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise VolumeError(f"volume {self.volume.name!r} is no longer mounted at {self.path}")

    def unmount(self) -> CommitInfo | None:
        """Commit what changed, stop the background committer, and forget the mount.

        The files stay in the folder; mounting the same folder again later picks up
        from where it was. If the volume was deleted elsewhere (or, mounted by name,
        renamed, whether or not its old name was given to another volume), the mount
        ends without a commit and NotFoundError says so; the folder keeps its files.
        """
        with self._lock:
            if self._closed:
                return None
            info = None
            gone: NotFoundError | None = None
            lost = self._folder_lost()
            if lost is not None:
                warnings.warn(
                    f"the mounted folder {self.path} (volume {self.volume.name!r}) {lost}: "
                    "unmounted without committing (the volume still has every file)",
                    stacklevel=2,
                )
            elif not self.read_only:
                try:
                    info = self._commit_locked(None, self._changes(full=True), wait=True)
                except NotFoundError as e:
                    if self.volume._gone is None:
                        raise  # e.g. a store error: mounted still, so unmount can be retried
                    gone = e  # deleted elsewhere: no retry can ever commit
        self._detach()
        if gone is not None:
            raise NotFoundError(
                f"{gone}. {self.path} is unmounted without committing; its files stay there"
            ) from None
        return info

    def _detach(self) -> None:
        """Stop everything without committing (the volume is being deleted)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=60)
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._ipython is not None:
                with contextlib.suppress(ValueError):
                    self._ipython.events.unregister("post_run_cell", self._after_cell)
            self._journal.close()
            self._close_state()
        with _mounts_lock:
            if _mounts.get(self._key) is self:
                del _mounts[self._key]
        atexit.unregister(self._atexit)

    def __enter__(self) -> Mount:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.unmount()

    def __repr__(self) -> str:
        state = "unmounted" if self._closed else ("read-only" if self.read_only else "mounted")
        return f"<Mount {self.volume.name!r} at {self.path} ({state})>"


def dataclass_replace(e: Entry, **kw: Any) -> Entry:
    import dataclasses

    return dataclasses.replace(e, **kw)


def _dir_row(e: Entry) -> Entry:
    return Entry(e.name, DIR, e.mode, 0, e.mtime_ns)


def _unchanged_since(st: os.stat_result, row: Any) -> bool:
    """Is the local path (``st``, its lstat) as the mount index row left it? A local path
    the index does not know counts as changed: a reload never overwrites it."""
    if row is None:
        return False
    if row[0].kind == DIR:
        return stat_mod.S_ISDIR(st.st_mode)
    return bool(row[1] == _sig(st))


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


def _now_sig(full: str) -> tuple[int, int, int, int] | None:
    """The signature of what is at ``full`` (None: nothing)."""
    try:
        return _sig(os.lstat(full))
    except FileNotFoundError:
        return None


def _left_as_is(full: str, row: Any) -> bool:
    """True if there is a path at ``full`` and it is as index row ``row`` left it (False
    if it cannot be looked at)."""
    try:
        return _unchanged_since(os.lstat(full), row)
    except OSError:
        return False


def _read_big(
    repo: Any, e: Entry, fd: int, rel: str, local: tuple[str, Entry] | None = None
) -> None:
    """Write big file entry ``e`` into ``fd``; with ``local`` (the path of a local file
    and the entry it holds, as the mount left it), the chunks the two share are copied
    from that file."""
    src = -1
    if local is not None:
        with contextlib.suppress(OSError):
            src = os.open(local[0], os.O_RDONLY | os.O_CLOEXEC)
    try:
        repo.read_into(e, fd, rel, local=(src, local[1]) if src >= 0 and local else None)
    finally:
        if src >= 0:
            os.close(src)


def _content_key(e: Entry) -> tuple[Any, ...]:
    """What two file entries with the same bytes share."""
    return (e.inline, tuple(e.chunks or ()), e.size)


def _exists(p: Path) -> bool:
    return os.path.lexists(p)


def _merge_changes(ch: _Changes, new: _Changes) -> None:
    """Fold a later scan into ``ch``: for every path the later scan looked at, its
    verdict replaces the earlier one (a file may have been deleted or put back since)."""
    if new.taken is None:  # a full scan: it knows everything
        ch.files, ch.links, ch.dirs, ch.gone = new.files, new.links, new.dirs, new.gone
        ch.skipped, ch.rows = new.skipped, new.rows
        return
    looked = new.taken

    def covered(p: str) -> bool:
        while True:
            if p in looked:
                return True
            i = p.rfind("/")
            if i < 0:
                return False
            p = p[:i]

    for d in (ch.files, ch.links, ch.dirs):
        for p in [p for p in d if covered(p)]:
            del d[p]
    ch.gone = {p for p in ch.gone if not covered(p)} | new.gone
    ch.files.update(new.files)
    ch.links.update(new.links)
    ch.dirs.update(new.dirs)
    ch.skipped.update(new.skipped)
    ch.rows.update(new.rows)
    if ch.taken is not None:
        ch.taken |= looked


def _move_message(changes: dict[str, Any], moves: dict[str, str], pre: str = "") -> str | None:
    """``move OLD to NEW`` (as :meth:`Volume.move` says it) when all ``changes`` are
    one move: every file it adds was moved from a path it deletes, every path it deletes
    is such a file or a folder that held one, and all of them moved the same way
    (``raw/a.csv`` -> ``archive/a.csv`` is ``raw`` -> ``archive``). Else None.
    ``pre``: what goes before a path of the mount to make it a path of the volume."""
    if not moves:
        return None
    held = set()  # the moved files' old paths and every folder above them
    for old in moves.values():
        held.add(old)
        while "/" in old:
            old = old.rpartition("/")[0]
            held.add(old)
    found: tuple[str, str] | None = None
    for rel, e in changes.items():
        if e is None:
            if rel not in held:
                return None  # a deletion that is not part of the move
            continue
        if e.kind == DIR:
            continue  # the folders a move makes
        old = moves.get(rel)
        if old is None:
            return None  # an added or edited file that was not moved
        a, b = old.split("/"), rel.split("/")
        while len(a) > 1 and len(b) > 1 and a[-1] == b[-1]:
            a.pop()
            b.pop()
        pair = ("/".join(a), "/".join(b))
        if found is None:
            found = pair
        elif pair != found:
            return None  # files moved in different ways
    if found is None:
        return None
    return f"move {pre}{found[0]} to {pre}{found[1]}"


def _auto_message(changes: dict[str, Any]) -> str:
    """``commit N paths (FIRST, …)``: files and links, as the commit's +N/~N/-N count
    them (a new folder's own entry is not one); folders only when nothing else changed."""
    names = [p for p, e in changes.items() if not (isinstance(e, Entry) and e.kind == DIR)]
    names = names or list(changes)
    return _auto_message_n(len(names), min(names))


def _auto_message_n(n: int, first: str) -> str:
    return f"commit {first}" if n == 1 else f"commit {n} paths ({first}, …)"


def _config() -> dict[str, Any]:
    try:
        from .config import load_config
    except ImportError:
        return {}
    # A config file that fails to load raises (ConfigFileError, naming the file and line):
    # mounting with the defaults instead would drop the file's ignore patterns without a
    # word, and commit (into history, for good) what it was written to keep out.
    cfg = load_config()
    return {
        "commit_interval": getattr(cfg, "commit_interval", 5.0),
        "ignore_patterns": list(getattr(cfg, "ignore_patterns", DEFAULT_IGNORE)),
        "chunk_cache_bytes": getattr(cfg, "chunk_cache_bytes", DEFAULT_CACHE_BYTES),
        "settle_interval": getattr(cfg, "settle_interval", quiet.DEFAULT_SETTLE),
        "settle_max_wait": getattr(cfg, "settle_max_wait", quiet.DEFAULT_SETTLE_MAX_WAIT),
        "snapshot_groups": list(getattr(cfg, "snapshot_groups", quiet.DEFAULT_GROUP_PATTERNS)),
        # the progress bar's thresholds, read once: loading the config at every commit
        # was 7 % of a commit's CPU with 64 writers
        "progress": cfg,
    }
