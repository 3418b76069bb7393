"""Mounts: a volume materialized in a local folder, with commit, reload and background commits.

The folder holds only the user's files. What the mount knows lives outside it, under
the state dir (see :mod:`jupyter_volume.paths`), in SQLite:

* ``base``: the commit the folder was last brought to (by mount or reload); its root
  tree is on the store, so a reload diffs it against the head, skipping equal subtrees.
* ``files``: one row per path in the folder: the entry (content) it reflects, the
  stat signature (size, mtime_ns, inode, mode) it had when synced, and ``since_base``
  for paths this mount committed after ``base``.

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
import fcntl
import fnmatch
import itertools
import json
import os
import random
import shutil
import sqlite3
import stat as stat_mod
import threading
import uuid
import warnings
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import AlreadyExistsError, InvalidError, NotFoundError, VolumeBusyError, VolumeError
from .journal import Journal
from .paths import cache_dir, state_dir
from .repository import DIR, EMPTY_TREE, FILE, LINK, Entry
from .repository.chunkcache import DEFAULT_MAX_BYTES as DEFAULT_CACHE_BYTES
from .repository.chunkcache import ChunkCache
from .repository.codec import hash_bytes

if TYPE_CHECKING:
    from .volume import CommitInfo, Volume

__all__ = ["DEFAULT_IGNORE", "Mount", "MountStatus", "mounts"]

DEFAULT_IGNORE = [".ipynb_checkpoints/", "__pycache__/", "*.swp", "*.swo", "*~", ".#*", ".~*"]
TMP_PREFIX = ".jv-tmp-"
SMALL_FILE = 4 << 20  # files up to this size are fetched in cross-file coalesced batches
BATCH_BYTES = 64 << 20
MOUNT_BATCH_PATHS = 100_000  # a fresh mount materializes this many paths at a time

_mounts: dict[tuple[str, str], Mount] = {}
_mounts_lock = threading.Lock()
_materialize_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="jv-materialize")


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
        if self.last_error:
            lines.append(f"  last background commit failed: {self.last_error}")
        return "\n".join(lines)


def _sig(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ino, stat_mod.S_IMODE(st.st_mode))


def _file_mode(st_mode: int) -> int:
    return 0o755 if st_mode & 0o100 else 0o644


def _under(rel: str, prefix: str) -> bool:
    return rel == prefix or rel.startswith(prefix + "/")


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
            (
                (p, json.dumps(e.encode()), s[0], s[1], s[2], s[3], since)
                for p, e, s, since in items
            ),
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

    def clear_since_base(self) -> None:
        self.db.execute("UPDATE files SET since_base=0 WHERE since_base=1")

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM files").fetchone()[0]

    def close(self) -> None:
        self.db.close()


@dataclass
class _Changes:
    """What a scan found: candidate files to hash, links, new folders, vanished paths."""

    files: dict[str, os.stat_result] = field(default_factory=dict)
    links: dict[str, tuple[str, os.stat_result]] = field(default_factory=dict)
    dirs: dict[str, os.stat_result] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.files or self.links or self.dirs or self.gone)


class Mount:
    """A volume materialized in a local folder. Use :meth:`Volume.mount` to make one.

    Write plain files under :attr:`path`, then :meth:`commit` to publish them (the
    background committer also does, every ``interval`` seconds when something changed,
    after each IPython cell, and at interpreter exit); :meth:`reload` to see what others
    committed. ``read_only=True`` refuses commits. Also a context manager that unmounts.
    """

    def __init__(
        self,
        volume: Volume,
        path: str | os.PathLike[str] | None = None,
        *,
        read_only: bool = False,
        interval: float | None = None,
        background: bool = True,
        ignore: list[str] | None = None,
    ) -> None:
        cfg = _config()
        self.volume = volume
        self.read_only = read_only
        self.interval = float(interval if interval is not None else cfg.get("commit_interval", 5.0))
        if self.interval <= 0:
            raise InvalidError("the commit interval must be a positive number of seconds")
        self.ignore = list(
            ignore if ignore is not None else cfg.get("ignore_patterns", DEFAULT_IGNORE)
        )
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
        if background and not read_only:
            self._start_committer()
        atexit.register(self._atexit)

    # -- state ----------------------------------------------------------------------------------
    def _open_state(self) -> None:
        ident = hash_bytes(f"{self.volume.store.url}\0{self._vol_id}\0{self.path}".encode())[:24]
        self.state_path = state_dir() / "mounts" / ident
        self.state_path.mkdir(parents=True, exist_ok=True)
        self._lockfile = open(self.state_path / "lock", "a+")  # noqa: SIM115 - held for the mount's life
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lockfile.close()
            raise VolumeBusyError(
                f"{self.path} is mounted by another process for volume {self.volume.name!r}: "
                "unmount it there first",
                [str(self.path)],
            ) from None
        (self.state_path / "mount.json").write_text(
            json.dumps(
                {
                    "store": self.volume.store.url,
                    "volume_id": self._vol_id,
                    "name": self.volume.name,
                    "path": str(self.path),
                }
            )
        )
        self._index = _Index(self.state_path / "index.sqlite")

    def _close_state(self) -> None:
        with contextlib.suppress(Exception):
            self._index.close()
        with contextlib.suppress(Exception):
            fcntl.flock(self._lockfile, fcntl.LOCK_UN)
            self._lockfile.close()

    @property
    def base_seq(self) -> int:
        """The commit the folder was last brought to."""
        return int(self._index.get_meta("base_seq") or 0)

    def _base_root(self) -> str:
        return self._index.get_meta("base_root") or EMPTY_TREE

    # -- mounting -----------------------------------------------------------------------------------
    def _mount(self) -> None:
        known = self._index.get_meta("base_seq") is not None
        if self.path.exists() and not self.path.is_dir():
            raise InvalidError(f"cannot mount at {self.path}: it is a file")
        if not known and self.path.exists() and any(self.path.iterdir()):
            raise InvalidError(
                f"cannot mount volume {self.volume.name!r} at {self.path}: the folder is not empty "
                "and is not this volume's mount. Choose an empty or new folder."
            )
        self.path.mkdir(parents=True, exist_ok=True)
        if known and not self.read_only:
            # Edits left from an earlier mount of this folder are committed first.
            self._commit_locked("commit edits left from an earlier mount", self._full_scan())
        self._reload_locked(initial=not known)

    # -- scanning ---------------------------------------------------------------------------------------
    def _ignored(self, rel: str, is_dir: bool) -> bool:
        name = rel.rsplit("/", 1)[-1]
        if name.startswith(TMP_PREFIX):
            return True
        for pat in self.ignore:
            if pat.endswith("/"):
                if is_dir and (
                    fnmatch.fnmatchcase(name, pat[:-1]) or fnmatch.fnmatchcase(rel, pat[:-1])
                ):
                    return True
            elif fnmatch.fnmatchcase(name, pat) or fnmatch.fnmatchcase(rel, pat):
                return True
        return False

    def _ignored_dir(self, rel: str) -> bool:
        return any(
            self._ignored("/".join(rel.split("/")[: i + 1]), True)
            for i in range(rel.count("/") + 1)
        )

    def _full_scan(self) -> _Changes:
        rows = {p: (e, s) for p, e, s, _ in self._index.rows()}
        ch = _Changes()
        seen: set[str] = set()
        stack = [""]
        while stack:
            rel_dir = stack.pop()
            base = self.path / rel_dir if rel_dir else self.path
            try:
                it = os.scandir(base)
            except OSError:
                continue
            with it:
                for de in it:
                    rel = f"{rel_dir}/{de.name}" if rel_dir else de.name
                    try:
                        st = de.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    self._classify(rel, st, rows.get(rel), ch, seen, stack)
        ch.gone = {p for p in rows if p not in seen}
        return ch

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
        if self._ignored(rel, is_dir):
            return
        entry = row[0] if row else None
        if stat_mod.S_ISLNK(st.st_mode):
            seen.add(rel)
            target = os.readlink(self.path / rel)
            if entry is None or entry.kind != LINK or entry.target != target:
                ch.links[rel] = (target, st)
        elif is_dir:
            seen.add(rel)
            if entry is None or entry.kind != DIR:
                ch.dirs[rel] = st
            if stack is not None:
                stack.append(rel)
        elif stat_mod.S_ISREG(st.st_mode):
            seen.add(rel)
            if entry is None or entry.kind != FILE or row[1] != _sig(st):
                ch.files[rel] = st

    def _journal_scan(self, dirty: set[str]) -> _Changes:
        ch = _Changes()
        roots: list[str] = []
        for rel in sorted(dirty):
            if any(_under(rel, r) for r in roots[-1:]):
                continue
            roots.append(rel)
        for rel in roots:
            if "/" in rel and self._ignored_dir(rel.rsplit("/", 1)[0]):
                continue
            rows = {p: (e, s) for p, e, s, _ in self._index.rows(rel)}
            seen: set[str] = set()
            try:
                st: os.stat_result | None = os.lstat(self.path / rel)
            except (FileNotFoundError, NotADirectoryError):
                st = None
            if st is not None:
                stack: list[str] = []
                self._classify(rel, st, rows.get(rel), ch, seen, stack)
                while stack:  # a folder that appeared or changed: look at all of it
                    d = stack.pop()
                    try:
                        it = os.scandir(self.path / d)
                    except OSError:
                        continue
                    with it:
                        for de in it:
                            sub = f"{d}/{de.name}"
                            try:
                                sst = de.stat(follow_symlinks=False)
                            except OSError:
                                continue
                            self._classify(sub, sst, rows.get(sub), ch, seen, stack)
            ch.gone.update(p for p in rows if p not in seen)
        return ch

    def _changes(self, full: bool = False) -> _Changes:
        dirty = None if full else self._journal.take()
        if dirty is None:
            return self._full_scan()
        return self._journal_scan(dirty)

    # -- committing -----------------------------------------------------------------------------------------
    def _open_for_writing(self) -> set[str]:
        """Paths under the mount that this process holds open for writing."""
        out = set()
        root = str(self.path) + "/"
        try:
            fds = os.listdir("/proc/self/fd")
        except OSError:
            return out
        for fd in fds:
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
                if not target.startswith(root):
                    continue
                with open(f"/proc/self/fdinfo/{fd}") as f:
                    flags = next(
                        (int(line.split()[1], 8) for line in f if line.startswith("flags:")), 0
                    )
            except (OSError, ValueError):
                continue
            if flags & 0o3 in (os.O_WRONLY, os.O_RDWR):
                out.add(target[len(root) :])
        return out

    def commit(self, message: str | None = None) -> CommitInfo | None:
        """Publish the folder's changes as one commit; None when there was nothing to commit.

        Files this process holds open for writing, and files that change while being
        read, are left for the next commit. Raises InvalidError on a read-only mount.
        """
        if self.read_only:
            raise InvalidError(
                f"volume {self.volume.name!r} is mounted read-only at {self.path}: commits are refused"
            )
        with self._lock:
            self._check_open()
            return self._commit_locked(message, self._changes())

    def _commit_locked(
        self, message: str | None, ch: _Changes, kind: str = "commit"
    ) -> CommitInfo | None:
        from .volume import CommitInfo

        if not ch:
            return None
        busy = self._open_for_writing()
        repo = self._repo
        writer = repo.writer()
        changes: dict[str, Entry | str | None] = {}
        new_rows: list[tuple[str, Entry, tuple[int, int, int, int], int]] = []
        same_rows: list[tuple[str, Entry, tuple[int, int, int, int], int]] = []
        deferred = False
        from .progress import transfer_progress

        bar = transfer_progress(
            f"{self.volume.name}: commit",
            total_bytes=sum(st.st_size for st in ch.files.values()),
            total_files=len(ch.files),
        )
        try:
            for rel in sorted(ch.files):
                bar.update(ch.files[rel].st_size)
                if rel in busy:
                    deferred = True
                    continue
                full = self.path / rel
                old = self._index.row(rel)
                try:
                    with open(full, "rb") as f:
                        st1 = os.fstat(f.fileno())
                        # the version we had: its chunks are recognized without re-chunking
                        prev = old[0] if old is not None and old[0].chunks else None
                        entry = writer.file_entry(
                            f, mode=_file_mode(st1.st_mode), mtime_ns=st1.st_mtime_ns, previous=prev
                        )
                        st2 = os.fstat(f.fileno())
                except (FileNotFoundError, IsADirectoryError, PermissionError):
                    deferred = True
                    continue
                if _sig(st1) != _sig(st2) or st2.st_size != entry.size:
                    deferred = True  # changed while we read it: next commit
                    continue
                if old is not None and old[0].same_content(entry):
                    same_rows.append(
                        (rel, dataclass_replace(old[0], mtime_ns=entry.mtime_ns), _sig(st1), old[2])
                    )
                    if old[0].mtime_ns == entry.mtime_ns:
                        continue
                changes[rel] = entry
                new_rows.append((rel, entry, _sig(st1), 1))
            for rel, (target, st) in ch.links.items():
                entry = Entry(
                    rel.rsplit("/", 1)[-1], LINK, 0o777, len(target), st.st_mtime_ns, target=target
                )
                changes[rel] = entry
                new_rows.append((rel, entry, _sig(st), 1))
            for rel, st in ch.dirs.items():
                entry = Entry(rel.rsplit("/", 1)[-1], DIR, 0o755, 0, st.st_mtime_ns)
                changes[rel] = entry
                new_rows.append((rel, entry, _sig(st), 1))
            for rel in ch.gone:
                changes[rel] = None
            if not changes:
                writer.abort()
                self._index.put(same_rows)
                if deferred:
                    self._journal_requeue(ch)
                return None
            rec, _stats = repo.commit(
                changes, message=message or _auto_message(changes), writer=writer, kind=kind
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
        if rec is not None and rec.parent == self.base_seq and not idx.since_base():
            # Nobody committed in between: the folder now reflects exactly this commit.
            idx.put((p, e, sig, 0) for p, e, sig, _ in new_rows)
            idx.set_meta("base_root", rec.root)
            idx.set_meta("base_seq", rec.seq)
        else:
            idx.put(new_rows)
            if rec is not None:
                idx.set_meta("own_seqs", [*(idx.get_meta("own_seqs") or []), rec.seq])
        idx.delete(ch.gone)
        idx.db.execute("COMMIT")
        if deferred:
            self._journal_requeue(ch)
        if rec is None:
            return None
        self.last_commit = CommitInfo._of(rec)
        return self.last_commit

    def _journal_requeue(self, ch: _Changes) -> None:
        """Paths we could not commit now must be looked at again next time."""
        self._journal._dirty.update(ch.files)
        self._journal._dirty.update(ch.links)
        self._journal._dirty.update(ch.dirs)
        self._journal._dirty.update(ch.gone)

    # -- status ------------------------------------------------------------------------------------------
    def status(self) -> MountStatus:
        """Uncommitted added/modified/deleted paths, and how many commits the folder is behind."""
        with self._lock:
            self._check_open()
            ch = self._full_scan()
            st = MountStatus(
                self.volume.name,
                str(self.path),
                read_only=self.read_only,
                background=self._thread is not None,
            )
            for rel, fst in ch.files.items():
                row = self._index.row(rel)
                if row is None:
                    st.added.append(rel)
                elif (
                    row[1][:2] != _sig(fst)[:2]
                    or row[1][3] != _sig(fst)[3]
                    or not self._same_file(rel, row[0])
                ):
                    st.modified.append(rel)
            st.added.extend(ch.links)
            st.added.extend(d for d in ch.dirs)
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
            return st

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
        """
        busy = self._busy_paths()
        if busy:
            raise VolumeBusyError(
                f"cannot reload volume {self.volume.name!r}: files under {self.path} are open in this process: "
                + ", ".join(busy)
                + ". Close them (or leave the folder) and reload again.",
                busy,
            )
        with self._lock:
            self._check_open()
            if not self.read_only:
                self._commit_locked("commit before reload", self._changes())
            self._reload_locked()

    def _reload_locked(self, initial: bool = False) -> None:
        repo = self._repo
        head = repo.head(refresh=True)
        base_root = self._base_root()
        if head.root == base_root and not initial and not self._index.since_base():
            self._index.set_meta("base_seq", head.seq)
            self._index.set_meta("own_seqs", [])
            return
        if initial and base_root == EMPTY_TREE and self._index.count() == 0:
            # A fresh mount: nothing local to compare with. Materialize the head in batches
            # so memory stays bounded however many files the volume holds (the walk is
            # depth first, so a folder always comes before what is in it).
            batch: dict[str, Entry | None] = {}
            for p, e in repo.trees.walk(head.root):
                batch[p] = e
                if len(batch) >= MOUNT_BATCH_PATHS:
                    self._apply(batch)
                    batch = {}
            self._apply(batch)
            self._index.set_meta("base_root", head.root)
            self._index.set_meta("base_seq", head.seq)
            self._index.set_meta("own_seqs", [])
            self._index.clear_since_base()
            return
        paths: dict[str, Entry | None] = {}
        try:
            for p, _old, new in repo.trees.diff(base_root, head.root):
                paths[p] = new
        except NotFoundError:
            # The commit the folder reflects was expired by gc and its trees are gone:
            # compare every path instead (slower, still correct).
            paths = {p: None for p, _e, _s, _b in self._index.rows()}
            initial = True
        for p in self._index.since_base():
            if p not in paths:
                paths[p] = repo.trees.lookup(head.root, p)
        if initial:
            for p, e in repo.trees.walk(head.root):
                paths[p] = e
        self._apply(paths)
        self._index.set_meta("base_root", head.root)
        self._index.set_meta("base_seq", head.seq)
        self._index.set_meta("own_seqs", [])
        self._index.clear_since_base()

    def _apply(self, paths: dict[str, Entry | None]) -> None:
        """Make the folder match ``paths`` (path -> head entry or None), never losing local edits."""
        idx = self._index
        dirty_local: set[str] = set()

        def locally_clean(rel: str, row: Any) -> bool:
            try:
                st = os.lstat(self.path / rel)
            except FileNotFoundError:
                return True
            if row is None:
                return False  # a local file the volume does not know: never overwrite it
            if row[0].kind == DIR:
                return stat_mod.S_ISDIR(st.st_mode)
            return row[1] == _sig(st)

        deletions = sorted((p for p, e in paths.items() if e is None), reverse=True)
        updates = sorted(p for p, e in paths.items() if e is not None)
        removed = []
        for rel in deletions:
            row = idx.row(rel)
            if row is None:
                continue
            if not locally_clean(rel, row):
                dirty_local.add(rel)
                continue
            full = self.path / rel
            try:
                if row[0].kind == DIR:
                    full.rmdir()
                else:
                    full.unlink()
            except FileNotFoundError:
                pass
            except OSError:
                dirty_local.add(rel)  # a folder with local files in it stays
                continue
            removed.append(rel)
        idx.delete(removed)

        files: list[tuple[str, Entry]] = []
        rows: list[tuple[str, Entry, tuple[int, int, int, int], int]] = []
        for rel in updates:
            e = paths[rel]
            assert e is not None
            row = idx.row(rel)
            full = self.path / rel
            if e.kind == DIR:
                if full.is_dir() and not full.is_symlink():
                    if row is None or row[0].kind != DIR:
                        rows.append((rel, _dir_row(e), _sig(os.lstat(full)), 0))
                    continue
                if _exists(full):
                    if not locally_clean(rel, row):
                        dirty_local.add(rel)
                        continue
                    full.unlink()
                full.mkdir(parents=True, exist_ok=True)
                rows.append((rel, _dir_row(e), _sig(os.lstat(full)), 0))
                continue
            if (
                row is not None
                and row[0].kind == e.kind
                and row[0].same_content(e)
                and locally_clean(rel, row)
            ):
                continue  # already there (our own commit, or unchanged content)
            if not locally_clean(rel, row):
                dirty_local.add(rel)
                continue
            if full.is_dir() and not full.is_symlink():
                try:
                    shutil.rmtree(full) if not any(full.iterdir()) else full.rmdir()
                except OSError:
                    dirty_local.add(rel)
                    continue
            if e.kind == LINK:
                full.parent.mkdir(parents=True, exist_ok=True)
                tmp = full.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}"
                os.symlink(e.target or "", tmp)
                os.replace(tmp, full)
                rows.append((rel, e, _sig(os.lstat(full)), 0))
            else:
                files.append((rel, e))
        idx.put(rows)
        from .progress import transfer_progress

        with transfer_progress(
            f"{self.volume.name}: download",
            total_bytes=sum(e.size for _r, e in files),
            total_files=len(files),
        ) as bar:
            done: list[tuple[str, Entry, tuple[int, int, int, int], int]] = []
            for rel, e, sig in self._write_files(files):
                done.append((rel, e, sig, 0))
                bar.update(e.size)
                if len(done) >= 1000 or e.size > SMALL_FILE:
                    idx.put_many(done)  # one SQLite transaction per group of written files
                    done = []
            idx.put_many(done)
        if dirty_local:
            warnings.warn(
                f"reload kept {len(dirty_local)} path(s) with local changes instead of the volume's version "
                f"(commit them to publish): {', '.join(sorted(dirty_local)[:5])}",
                stacklevel=3,
            )

    def _write_files(
        self, files: list[tuple[str, Entry]]
    ) -> Iterator[tuple[str, Entry, tuple[int, int, int, int]]]:
        """Materialize files atomically; small ones in coalesced batches, big ones streamed."""
        repo = self._repo
        small = [(r, e) for r, e in files if e.inline is not None or e.size <= SMALL_FILE]
        big = [(r, e) for r, e in files if not (e.inline is not None or e.size <= SMALL_FILE)]

        made: set[Path] = set()
        token = uuid.uuid4().hex[:16]
        counter = itertools.count()

        def write(
            rel: str, e: Entry, pieces: Iterable[bytes]
        ) -> tuple[str, Entry, tuple[int, int, int, int]]:
            full = self.path / rel
            parent = full.parent
            if parent not in made:
                parent.mkdir(parents=True, exist_ok=True)
                made.add(parent)
            tmp = parent / f"{TMP_PREFIX}{token}-{next(counter)}"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                try:
                    for piece in pieces:
                        view = memoryview(piece)
                        while view:
                            view = view[os.write(fd, view) :]
                    os.fchmod(fd, e.mode & 0o777)
                    os.utime(fd, ns=(e.mtime_ns, e.mtime_ns))
                finally:
                    os.close(fd)
                os.replace(tmp, full)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
            return rel, e, _sig(os.lstat(full))

        # Small files: one plan of ranged reads across all of them, fetched in parallel,
        # then written one after the other (threads made it no faster on 2 cores: the
        # kernel serializes creates in one folder).
        batch: list[tuple[str, Entry]] = []
        batch_bytes = 0
        for rel, e in small + [("", Entry("", FILE, size=BATCH_BYTES))]:
            if rel:
                batch.append((rel, e))
                batch_bytes += e.size
            if batch and (batch_bytes >= BATCH_BYTES or not rel):
                contents = repo.read_many([e for _r, e in batch])
                for (r, en), data in zip(batch, contents, strict=True):
                    yield write(r, en, [data])
                batch, batch_bytes = [], 0
        futures = [_materialize_pool.submit(write, r, e, repo.read_entry(e, r)) for r, e in big]
        for fut in futures:
            yield fut.result()

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
        if self.last_error:
            warnings.warn(
                f"background commit of volume {self.volume.name!r} failed: {self.last_error}",
                stacklevel=2,
            )

    def _run_committer(self) -> None:
        while not self._stop.is_set():
            delay = (
                self.interval
                if not self._failures
                else min(self.interval * 2**self._failures, 60.0)
            )
            self._wake.wait(delay + random.uniform(0, 0.1 * delay))
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                with self._lock:
                    if self._closed:
                        break
                    if self._journal.peek() is False:
                        continue  # nothing changed: no commit, no scan
                    self._commit_locked(None, self._changes(), kind="auto")
                self.last_error = None
                self._failures = 0
            except Exception as e:  # noqa: BLE001 - reported, retried, never fatal
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
        from where it was.
        """
        with self._lock:
            if self._closed:
                return None
            info = None
            if not self.read_only:
                info = self._commit_locked(None, self._changes(full=True))
        self._detach()
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


def _exists(p: Path) -> bool:
    return os.path.lexists(p)


def _auto_message(changes: dict[str, Any]) -> str:
    n = len(changes)
    first = sorted(changes)[0]
    return f"commit {first}" if n == 1 else f"commit {n} paths ({first}, …)"


def _config() -> dict[str, Any]:
    try:
        from .config import load_config
    except ImportError:
        return {}
    try:
        cfg = load_config()
    except Exception:  # noqa: BLE001 - a broken config file must not break mounting
        return {}
    return {
        "commit_interval": getattr(cfg, "commit_interval", 5.0),
        "ignore_patterns": list(getattr(cfg, "ignore_patterns", DEFAULT_IGNORE)),
        "chunk_cache_bytes": getattr(cfg, "chunk_cache_bytes", DEFAULT_CACHE_BYTES),
    }
