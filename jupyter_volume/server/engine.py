"""What the REST API does, without any HTTP: the volume operations and upload sessions.

The Jupyter server extension creates one :class:`VolumeService` per server and every
handler is a few lines around one call to it (the jupyterlab-git split: the engine is
plain Python, testable without Tornado). Every method is blocking and thread-safe; the
handlers run them in :attr:`VolumeService.executor`, never on the event loop.

Results are JSON-ready dicts; failures are :mod:`jupyter_volume.errors` exceptions that
the handlers turn into HTTP codes in one place.

Uploads are sessions, so files of many gigabytes work over plain HTTP requests:

1. :meth:`~VolumeService.start_upload` checks the target and opens a temp file;
2. :meth:`~VolumeService.begin_chunk` + :class:`ChunkWriter` append one chunk at the
   next offset, checking the chunk's SHA-256 (a corrupted chunk is rolled back);
3. :meth:`~VolumeService.finish_upload` checks total size and SHA-256 and commits the
   file with ``batch_upload``. Nothing is ever held whole in memory.

Layer: a front end; imports ``volume``, ``names``, ``store``, ``scratch``, ``errors``,
``formatting`` and never Tornado or Jupyter.
"""

from __future__ import annotations

import atexit
import errno
import hashlib
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .. import __version__, scratch
from ..errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidError,
    NotFoundError,
    VolumeError,
)
from ..formatting import iso_time
from ..names import check_name, normalize_path
from ..store import Store
from ..volume import CommitInfo, DiffEntry, FileEntry, FileEntryType, Volume

__all__ = [
    "API_VERSION",
    "DEFAULT_CHUNK_SIZE",
    "MAX_CHUNK_SIZE",
    "MAX_UPLOADS_PER_USER",
    "MAX_UPLOADS_TOTAL",
    "MAX_UPLOAD_SIZE",
    "SORT_KEYS",
    "ChunkTooLargeError",
    "ChunkWriter",
    "TooManyUploadsError",
    "UploadSpaceError",
    "VolumeService",
    "check_commit",
    "natural_key",
    "sort_entries",
]

#: Bumped when a route changes incompatibly; the labextension checks it.
API_VERSION = 1
DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024
MAX_CHUNK_SIZE = 64 * 1024 * 1024
MAX_PAGE = 5000
DEFAULT_PAGE = 500
UPLOAD_IDLE_SECONDS = 24 * 3600
#: the names of the default upload folders (one per server process)
UPLOAD_DIR_PREFIX = "jupyter-volume-uploads-"
#: Largest file one upload session may declare (the spool folder's free space is the
#: other bound, checked when the session starts).
MAX_UPLOAD_SIZE = 1024**4
#: Open upload sessions one user may hold, and all users together: each holds a spool
#: file and a slot, so an abandoned client cannot pile them up.
MAX_UPLOADS_PER_USER = 16
MAX_UPLOADS_TOTAL = 128
#: Bytes kept free in the spool folder beyond an upload's declared size.
SPOOL_HEADROOM = 64 * 1024 * 1024


class UploadSpaceError(VolumeError):
    """The server's upload folder has no room for an upload (or for a chunk of one).

    The REST API answers it with 507 Insufficient Storage.
    """


class ChunkTooLargeError(InvalidError):
    """An upload chunk's body is larger than ``MAX_CHUNK_SIZE``.

    The REST API answers it with 413 Content Too Large (the upload session goes on).
    """


class TooManyUploadsError(ConflictError):
    """An upload session was refused: its user (or the server) holds too many open ones.

    The REST API answers it with 429 Too Many Requests.
    """


_TYPE_NAMES = {
    FileEntryType.FILE: "file",
    FileEntryType.DIRECTORY: "directory",
    FileEntryType.SYMLINK: "symlink",
    FileEntryType.UNSPECIFIED: "unknown",
}


# -- JSON shapes ------------------------------------------------------------------------------
def entry_json(e: FileEntry) -> dict[str, Any]:
    """One listed path: name, path, type (file/directory/symlink), size, mtime (s)."""
    return {
        "name": e.path.rsplit("/", 1)[-1],
        "path": e.path,
        "type": _TYPE_NAMES[e.type],
        "size": e.size,
        "mtime": e.mtime,
    }


def commit_json(c: CommitInfo | None) -> dict[str, Any] | None:
    """One commit of a volume's history (None stays None: nothing changed)."""
    if c is None:
        return None
    return {
        "seq": c.seq,
        "time": iso_time(c.time),
        "author": c.author,
        "host": c.host,
        "message": c.message,
        "kind": c.kind,
        "added": c.added,
        "modified": c.modified,
        "deleted": c.deleted,
        "bytes_new": c.bytes_new,
    }


def diff_json(d: DiffEntry) -> dict[str, Any]:
    """One changed path between two commits."""
    return {
        "path": d.path,
        "change": d.change,
        "type": _TYPE_NAMES[d.type],
        "old_size": d.old_size,
        "new_size": d.new_size,
    }


def volume_json(v: Volume) -> dict[str, Any]:
    """A volume of the list: name, id, created_at (ISO 8601, UTC), created_by."""
    info = v.info()
    return {
        "name": info.name,
        "id": info.id,
        "created_at": iso_time(info.created_at),
        "created_by": info.created_by,
    }


#: What a folder listing can be sorted by (the ``sort`` query parameter of the tree route).
SORT_KEYS = ("name", "size", "mtime")

_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> list[Any]:
    """``name`` as a key that orders "file2" before "file10", case-insensitively.

    Splitting on digit runs always yields text at even places and a number at odd
    ones, so two keys never compare a number with a string.
    """
    parts: list[Any] = _DIGITS.split(name.casefold())
    for i in range(1, len(parts), 2):
        parts[i] = int(parts[i])
    return parts


def sort_entries(
    entries: list[FileEntry], sort: str = "name", desc: bool = False
) -> list[FileEntry]:
    """``entries`` sorted by ``sort`` (see :data:`SORT_KEYS`), folders first either way.

    As in JupyterLab's file browser, entries of the same size or time go by name
    ascending whatever the order; the exact path breaks the last ties, so the order is
    total and the same on every request: its pages never repeat or skip an entry.
    """
    sign = -1 if desc else 1

    def key(e: FileEntry) -> tuple[Any, ...]:
        by_name = (natural_key(e.path.rsplit("/", 1)[-1]), e.path)
        if sort == "size":
            return (sign * e.size, *by_name)
        if sort == "mtime":
            return (sign * e.mtime, *by_name)
        return by_name

    # descending by name is the ascending order reversed; sizes and times are negated
    flip = desc and sort == "name"
    folders = [e for e in entries if e.type == FileEntryType.DIRECTORY]
    files = [e for e in entries if e.type != FileEntryType.DIRECTORY]
    return sorted(folders, key=key, reverse=flip) + sorted(files, key=key, reverse=flip)


def _children(vol: Volume, path: str, at: int | None) -> list[FileEntry]:
    entry = vol.stat(path, at=at)
    if entry.type != FileEntryType.DIRECTORY:
        raise InvalidError(f"{entry.path} is a file, not a folder")
    return vol.listdir(path, at=at)


# -- uploads ------------------------------------------------------------------------------------
@dataclass
class _Upload:
    id: str
    volume: str
    volume_id: str  # the session belongs to this volume, whatever name it has later
    path: str
    size: int
    force: bool
    user: str  # who started it: counted against MAX_UPLOADS_PER_USER (see _upload)
    tmp: str
    received: int = 0
    sha: Any = field(default_factory=hashlib.sha256)
    state: str = "open"  # open | writing | committing
    touched: float = field(default_factory=time.time)

    def reopen(self) -> None:
        """Take the next chunk (or a retry of the last one); caller holds the service lock."""
        self.state = "open"
        self.touched = time.time()

    def json(self) -> dict[str, Any]:
        return {
            "upload_id": self.id,
            "volume": self.volume,
            "path": self.path,
            "size": self.size,
            "received": self.received,
            "state": self.state,
            "force": self.force,
            "chunk_size": DEFAULT_CHUNK_SIZE,
            "max_chunk_size": MAX_CHUNK_SIZE,
        }


class ChunkWriter:
    """Appends one chunk of an upload to its temp file; see :meth:`VolumeService.begin_chunk`.

    Call :meth:`write` for each piece of the request body, then :meth:`commit` (checks
    the chunk's SHA-256; on a mismatch the chunk is rolled back and InvalidError raised)
    or :meth:`abort` (client went away). Exactly one of them releases the session.
    """

    def __init__(self, service: VolumeService, up: _Upload, offset: int, sha256: str) -> None:
        self._service = service
        self._up = up
        self._offset = offset
        self._expected = sha256
        self._chunk_sha = hashlib.sha256()
        self._file_sha = up.sha.copy()
        self._written = 0
        self._done = False
        self._lock = threading.Lock()  # write/commit/abort may come from different threads
        self._f = open(up.tmp, "r+b")  # noqa: SIM115 - closed by commit/abort
        self._f.seek(offset)
        self._f.truncate()

    def write(self, data: bytes) -> None:
        """Append ``data``; InvalidError if the chunk runs past the declared file size."""
        with self._lock:
            self._write(data)

    def _write(self, data: bytes) -> None:
        if self._done:
            raise InvalidError("this chunk is already finished")
        if self._offset + self._written + len(data) > self._up.size:
            self._abort()
            raise InvalidError(
                f"chunk at offset {self._offset} runs past the declared file size "
                f"{self._up.size} of upload {self._up.id}"
            )
        try:
            self._f.write(data)
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                raise
            self._abort()  # the chunk is rolled back; the session stays as it was
            raise UploadSpaceError(
                f"the server's upload folder is full ({e.strerror}): the chunk at offset "
                f"{self._offset} of upload {self._up.id} was discarded; send it again "
                "once there is room, or cancel the upload"
            ) from None
        self._chunk_sha.update(data)
        self._file_sha.update(data)
        self._written += len(data)

    def commit(self) -> dict[str, Any]:
        """Check the chunk's hash; keep it and return the upload's status, or roll back."""
        with self._lock:
            return self._commit()

    def _commit(self) -> dict[str, Any]:
        if self._done:
            raise InvalidError("this chunk is already finished")
        got = self._chunk_sha.hexdigest()
        if got != self._expected:
            self._abort()
            raise InvalidError(
                f"chunk at offset {self._offset} of upload {self._up.id} is corrupt: its "
                f"SHA-256 is {got}, the X-Content-SHA256 header says {self._expected}. "
                "The chunk was discarded: send it again."
            )
        self._f.flush()
        self._f.close()
        with self._service._lock:
            self._done = True
            self._up.received = self._offset + self._written
            self._up.sha = self._file_sha
            self._up.reopen()
            return self._up.json()

    def abort(self) -> None:
        """Drop what this chunk wrote and release the session (idempotent)."""
        with self._lock:
            self._abort()

    def _abort(self) -> None:
        if self._done:
            return
        try:
            self._f.truncate(self._offset)
            self._f.close()
        except (OSError, ValueError):
            pass
        with self._service._lock:
            self._done = True
            self._up.reopen()


class VolumeService:
    """The operations behind the REST API, on one store.

    Args:
        store: the :class:`Store`, or a function returning it (opened on first use, so
            a bad store URL is reported by each request instead of breaking the server).
        upload_dir: where upload chunks are spooled (default: a new folder in the
            system temp dir, removed at exit, or by the next service to start if this
            process is killed).
        max_workers: threads for storage work.
        max_upload_size: the largest file an upload session may declare (bytes).
        max_uploads_per_user: open upload sessions one user may hold at once.
        max_uploads_total: open upload sessions of all users together.
    """

    def __init__(
        self,
        store: Store | Callable[[], Store],
        *,
        upload_dir: str | os.PathLike[str] | None = None,
        max_workers: int = 8,
        max_upload_size: int = MAX_UPLOAD_SIZE,
        max_uploads_per_user: int = MAX_UPLOADS_PER_USER,
        max_uploads_total: int = MAX_UPLOADS_TOTAL,
    ) -> None:
        self._store_or_factory = store
        self.max_upload_size = max_upload_size
        self.max_uploads_per_user = max_uploads_per_user
        self.max_uploads_total = max_uploads_total
        self._store: Store | None = store if isinstance(store, Store) else None
        self._lock = threading.RLock()
        self._uploads: dict[str, _Upload] = {}
        # Every service sharing this one's upload folder keeps its sessions in a dict of
        # its own (ids are per namespace); the caps and the free space count them all.
        self._registries: list[dict[str, _Upload]] = [self._uploads]
        if upload_dir is None:
            # a folder of this process's own, removed at exit; one left by a server
            # killed outright is removed here, by the next one to start (see scratch)
            room = scratch.make(UPLOAD_DIR_PREFIX)
            self.upload_dir = str(room.path)
            atexit.register(room.remove)
        else:
            self.upload_dir = os.fspath(upload_dir)
            os.makedirs(self.upload_dir, exist_ok=True)
        self.executor = ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="jupyter-volume"
        )

    @property
    def store(self) -> Store:
        """The store (opened on first use)."""
        if self._store is None:
            with self._lock:
                if self._store is None:
                    factory = self._store_or_factory
                    assert callable(factory)
                    try:
                        self._store = factory()
                    except Exception as exc:
                        invalid = _config_error(exc)
                        if invalid is None:
                            raise
                        raise invalid from exc
        return self._store

    def _all_uploads(self) -> list[_Upload]:
        """The open sessions of every service sharing the upload folder (hold the lock)."""
        return [u for reg in self._registries for u in reg.values()]

    def close(self) -> None:
        """Stop the worker threads and drop unfinished uploads."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            for up in self._uploads.values():
                _remove(up.tmp)
            self._uploads.clear()

    def _vol(self, name: str) -> Volume:
        # A fresh handle per request: reads see the newest commit (a kept handle stays
        # pinned until reload()), and a rename or delete is seen at once. lookup() checks
        # the volume exists, so a later NotFoundError is about a path, not the volume.
        return Volume.lookup(check_name(name), store=self.store)

    # -- server ----------------------------------------------------------------------------------
    def version(self) -> dict[str, Any]:
        """Package and API version, and the store in use (or why it cannot be opened)."""
        out: dict[str, Any] = {
            "name": "jupyter-volume",
            "version": __version__,
            "api_version": API_VERSION,
        }
        try:
            out["store"] = self.store.url
        except Exception as exc:
            out["store"] = None
            out["store_error"] = str(exc)
        return out

    # -- volumes ---------------------------------------------------------------------------------
    def list_volumes(self) -> dict[str, Any]:
        """Every volume of the store, sorted by name."""
        vols = [volume_json(v) for v in Volume.objects.list(store=self.store)]
        return {"volumes": sorted(vols, key=lambda v: v["name"])}

    def create_volume(self, name: Any) -> dict[str, Any]:
        """Create a volume; AlreadyExistsError if the name is taken."""
        if name is None:
            raise InvalidError("the request needs 'name', the new volume's name")
        check_name(name)
        Volume.objects.create(name, store=self.store)
        return volume_json(self._vol(name))

    def delete_volume(self, name: str) -> None:
        """Delete a volume and its whole history."""
        Volume.objects.delete(check_name(name), store=self.store)

    def rename_volume(self, name: str, new_name: Any) -> dict[str, Any]:
        """Rename a volume (contents and history unchanged)."""
        check_name(name)
        if new_name is None:
            raise InvalidError("the request needs 'name', the volume's new name")
        check_name(new_name)
        Volume.rename(name, new_name, store=self.store)
        return volume_json(self._vol(new_name))

    # -- files -------------------------------------------------------------------------------------
    def list_folder(
        self,
        name: str,
        path: str,
        at: int | None = None,
        offset: int = 0,
        limit: int = DEFAULT_PAGE,
        sort: str = "name",
        order: str = "asc",
    ) -> dict[str, Any]:
        """One page of a folder's entries, the whole folder sorted first.

        ``sort`` is ``name`` (natural, case-insensitive), ``size`` or ``mtime``;
        ``order`` is ``asc`` or ``desc``. Folders come first in either order, as in
        JupyterLab's file browser. Because the whole folder is sorted before it is
        paged, the pages of one ``sort``/``order`` join up into one sorted listing.
        ``at`` lists the tree as it was at that commit. ``seq`` in the answer is the
        commit the page was listed at (``at``, or the newest one): pass it as ``at`` for
        the following pages, so that a file deleted or added meanwhile does not shift
        the entries across a page break (one skipped or shown twice).
        """
        if offset < 0 or not 1 <= limit <= MAX_PAGE:
            raise InvalidError(f"offset must be >= 0 and limit 1..{MAX_PAGE}")
        if sort not in SORT_KEYS:
            raise InvalidError(f"sort must be one of {', '.join(SORT_KEYS)}, got {sort!r}")
        if order not in ("asc", "desc"):
            raise InvalidError(f"order must be asc or desc, got {order!r}")
        p = normalize_path(path)
        vol = self._vol(name)
        # The commit first, then the folder at that commit (as stat_file does): listed
        # the other way round, a commit landing between would pair seq with another tree.
        seq = vol.seq if at is None else at
        entries = sort_entries(_children(vol, p, seq), sort, order == "desc")
        page = entries[offset : offset + limit]
        return {
            "volume": name,
            "path": p,
            "at": at,
            "seq": seq,
            "offset": offset,
            "limit": limit,
            "sort": sort,
            "order": order,
            "total": len(entries),
            "entries": [entry_json(e) for e in page],
        }

    def stat(self, name: str, path: str, at: int | None = None) -> FileEntry:
        """The entry at ``path`` (NotFoundError if missing)."""
        return self._vol(name).stat(normalize_path(path), at=at)

    def stat_file(self, name: str, path: str, at: int | None = None) -> tuple[FileEntry, int]:
        """The file at ``path`` and the commit it was read at (pass that to
        :meth:`read_range`, so the bytes match the size even if a commit lands between).

        InvalidError unless ``path`` is a regular file; NotFoundError if missing.
        """
        vol = self._vol(name)
        # The commit first, then the file at that commit: the other way round, a commit
        # landing between the two would pair one version's size with another's bytes.
        seq = vol.seq if at is None else at
        e = vol.stat(normalize_path(path), at=seq)
        if e.type == FileEntryType.DIRECTORY:
            raise InvalidError(
                f"{e.path or '/'} is a folder, not a file: download its files one by one"
            )
        if e.type != FileEntryType.FILE:
            raise InvalidError(f"{e.path} is a symbolic link; links are not followed")
        return e, seq

    def read_range(
        self, name: str, path: str, at: int | None, start: int, end: int
    ) -> Iterator[bytes]:
        """An iterator over bytes ``[start, end)`` of a file (pull it from a worker thread)."""
        return self._vol(name).read_file(
            normalize_path(path), at=at, offset=start, length=max(end - start, 0)
        )

    def remove(self, name: str, path: str, recursive: bool = False) -> dict[str, Any]:
        """Delete a file, or a folder (``recursive`` unless it is empty), as one commit."""
        p = normalize_path(path)
        if not p:
            raise InvalidError("cannot delete the volume root: delete the volume instead")
        vol = self._vol(name)
        # this delete's own commit: the head afterwards may already be someone else's
        return {"path": p, "commit": commit_json(vol.remove_file(p, recursive=recursive))}

    def remove_many(self, name: str, paths: Any) -> dict[str, Any]:
        """Delete several files and folders (each with everything in it) as one commit:
        all of them, or none if one is missing (NotFoundError) or names the root."""
        if not isinstance(paths, list) or not paths:
            raise InvalidError(f"paths must be a non-empty list of paths, got {paths!r}")
        wanted: list[str] = []
        for p in paths:
            if not isinstance(p, str):
                raise InvalidError(f"paths must be path strings, got {p!r}")
            # existing names with control characters can be deleted (only new ones are refused)
            wanted.append(normalize_path(p))
        if "" in wanted:
            raise InvalidError("cannot delete the volume root: delete the volume instead")
        info = self._vol(name).remove_paths(wanted)
        return {"paths": sorted(set(wanted)), "commit": commit_json(info)}

    def make_folder(self, name: str, path: Any) -> dict[str, Any]:
        """Create an empty folder (and missing parents) as one commit."""
        p = _path_arg(path, "path")
        if not p:
            raise AlreadyExistsError("the volume root exists already")
        vol = self._vol(name)
        e = _stat_or_none(vol, p)
        if e is not None:
            what = "a folder" if e.type == FileEntryType.DIRECTORY else "a file"
            raise AlreadyExistsError(f"{p} already exists in volume {name!r} (as {what})")
        info = vol.mkdir(p)
        return {"path": p, "commit": commit_json(info)}

    def move(self, name: str, src: Any, dst: Any) -> dict[str, Any]:
        """Move or rename a file or folder inside the volume, as one commit.

        The destination must not exist (AlreadyExistsError) and its parent folder must
        (NotFoundError). No data is copied: the moved entries keep their chunks.
        """
        s = _path_arg(src, "src")
        d = _path_arg(dst, "dst")
        if not s or not d:
            raise InvalidError("cannot move the volume root, or move onto it")
        if d == s or d.startswith(s + "/"):
            raise InvalidError(f"cannot move {s} into itself ({d})")
        vol = self._vol(name)
        vol.stat(s)
        de = _stat_or_none(vol, d)
        if de is not None:
            what = "folder" if de.type == FileEntryType.DIRECTORY else "file"
            raise AlreadyExistsError(f"cannot move {s} to {d}: a {what} named {d} exists")
        parent = d.rsplit("/", 1)[0] if "/" in d else ""
        if vol.stat(parent).type != FileEntryType.DIRECTORY:
            # 409, as a new folder or an upload below a file is refused
            raise AlreadyExistsError(f"cannot move {s} to {d}: {parent} is a file")
        info = vol.move(s, d)
        return {"src": s, "dst": d, "commit": commit_json(info)}

    # -- history ------------------------------------------------------------------------------------
    def history(
        self, name: str, limit: int = 100, offset: int = 0, before: int | None = None
    ) -> dict[str, Any]:
        """Commits newest first: ``limit`` of them after skipping ``offset``, of those
        older than commit ``before`` if given (the next page: commits made since the
        first page do not shift it, as they shift an offset)."""
        if offset < 0 or not 1 <= limit <= MAX_PAGE:
            raise InvalidError(f"offset must be >= 0 and limit 1..{MAX_PAGE}")
        if before is not None and before < 0:
            raise InvalidError(f"before must be a commit number >= 0, got {before}")
        commits = self._vol(name).history(limit=offset + limit + 1, before=before)
        page = commits[offset : offset + limit]
        return {
            "volume": name,
            "offset": offset,
            "limit": limit,
            "before": before,
            "more": len(commits) > offset + limit,
            "commits": [commit_json(c) for c in page],
        }

    def diff(self, name: str, a: int, b: int | None = None) -> dict[str, Any]:
        """What changed from commit ``a`` to commit ``b`` (default: the newest)."""
        vol = self._vol(name)
        changes = vol.diff(a, b)
        return {"volume": name, "a": a, "b": b, "changes": [diff_json(d) for d in changes]}

    def restore(self, name: str, commit: Any, path: Any = None) -> dict[str, Any]:
        """Bring back the tree (or one path) as of ``commit``, as a new commit."""
        if isinstance(commit, bool) or not isinstance(commit, int):
            raise InvalidError(f"commit must be a commit number, got {commit!r}")
        p = None if path in (None, "") else _path_arg(path, "path")
        vol = self._vol(name)
        if p:
            check_commit(vol, commit)  # else a missing commit reads as "p was absent there"
        if p and _stat_or_none(vol, p, at=commit) is None and _stat_or_none(vol, p) is None:
            # Volume.restore would quietly change nothing; the user asked for something.
            raise NotFoundError(
                f"{p} did not exist at commit {commit} and does not exist now: nothing to "
                "restore (to bring back a deleted file, restore the commit before the one "
                "that deleted it)"
            )
        info = vol.restore(commit, p)
        return {"volume": name, "restored": commit, "path": p or "", "commit": commit_json(info)}

    # -- uploads ------------------------------------------------------------------------------------
    def start_upload(
        self, name: str, path: Any, size: Any, force: Any = False, user: str = ""
    ) -> dict[str, Any]:
        """Open an upload session for a file of ``size`` bytes at ``path``.

        Refused at once (before any byte is sent) when ``path`` exists and ``force`` is
        false (AlreadyExistsError), or is a folder, or lies below a file.
        """
        p = _path_arg(path, "path")
        if not p:
            raise InvalidError("cannot upload onto the volume root: give a file path")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidError(f"size must be a number of bytes >= 0, got {size!r}")
        if not isinstance(force, bool):
            raise InvalidError(f"force must be true or false, got {force!r}")
        if size > self.max_upload_size:
            raise InvalidError(
                f"cannot upload {p}: {size} bytes is more than the largest upload this server "
                f"takes ({self.max_upload_size} bytes); copy it with the Python API or the CLI"
            )
        free = shutil.disk_usage(self.upload_dir).free
        with self._lock:  # what open sessions declared and have not sent yet is taken
            promised = sum(max(0, u.size - u.received) for u in self._all_uploads())
        if size + promised + SPOOL_HEADROOM > free:
            raise UploadSpaceError(
                f"cannot upload {p}: {size} bytes do not fit in the server's upload folder "
                f"({free} bytes free in {self.upload_dir}, {promised} of them promised to "
                "unfinished uploads)"
            )
        vol = self._vol(name)
        e = _stat_or_none(vol, p)
        if e is None:
            parts = p.split("/")
            for i in range(len(parts) - 1, 0, -1):
                pe = _stat_or_none(vol, "/".join(parts[:i]))
                if pe is None:
                    continue
                if pe.type != FileEntryType.DIRECTORY:
                    raise AlreadyExistsError(
                        f"cannot upload {p}: {pe.path} is a file in volume {name!r}"
                    )
                break
        else:
            if e.type == FileEntryType.DIRECTORY:
                raise AlreadyExistsError(
                    f"{p} is a folder in volume {name!r}; a folder is never replaced by a file"
                )
            if not force:
                raise AlreadyExistsError(
                    f"{p} already exists in volume {name!r}: upload with force to overwrite it"
                )
        self._expire_uploads()
        volume_id = vol.info().id
        upload_id = secrets.token_urlsafe(18)
        tmp = os.path.join(self.upload_dir, upload_id)
        with self._lock:
            everyone = self._all_uploads()
            mine = sum(1 for u in everyone if u.user == user)
            if mine >= self.max_uploads_per_user:
                raise TooManyUploadsError(
                    f"too many unfinished uploads ({mine}) for user {user!r}: finish or "
                    f"cancel one first (at most {self.max_uploads_per_user} at a time)"
                )
            if len(everyone) >= self.max_uploads_total:
                raise TooManyUploadsError(
                    f"the server has {len(everyone)} unfinished uploads, its limit: "
                    "try again when some have finished"
                )
            with open(tmp, "xb"):
                pass
            up = _Upload(upload_id, name, volume_id, p, size, force, user, tmp)
            self._uploads[upload_id] = up
        return up.json()

    def _check_same_volume(self, up: _Upload) -> Volume:
        """The session's volume, if its name still names it; else drop the session."""
        try:
            vol = self._vol(up.volume)
            same = vol.info().id == up.volume_id
        except NotFoundError:
            same = False
        if not same:
            self._drop(up)
            raise NotFoundError(
                f"volume {up.volume!r} was deleted (or replaced by a new volume of that name) "
                f"after upload {up.id} started; the upload was cancelled. Start it again."
            )
        return vol

    def _upload(self, name: str, upload_id: str) -> _Upload:
        check_name(name)  # a name no volume can have is a bad request, as on other routes
        up = self._uploads.get(upload_id)
        # Not tied to the user: jupyter_server gives token-only clients a new anonymous
        # user per request. The id is a 144-bit secret of an authenticated session.
        if up is None or up.volume != name:
            raise NotFoundError(
                f"no upload {upload_id!r} for volume {name!r}: it finished, was cancelled or "
                "expired. Start the upload again."
            )
        return up

    def upload_status(self, name: str, upload_id: str) -> dict[str, Any]:
        """How far an upload got (``received`` is the offset of the next chunk)."""
        with self._lock:
            return self._upload(name, upload_id).json()

    def begin_chunk(self, name: str, upload_id: str, offset: Any, sha256: Any) -> ChunkWriter:
        """Start appending the chunk at ``offset`` whose SHA-256 is ``sha256`` (hex).

        ``offset`` must be the upload's ``received`` (ConflictError otherwise, saying
        which offset is expected); one chunk at a time per upload.
        """
        if (
            not isinstance(sha256, str)
            or len(sha256) != 64
            or any(c not in "0123456789abcdef" for c in sha256.lower())
        ):
            raise InvalidError(
                "each chunk needs its SHA-256 as 64 hex digits in the X-Content-SHA256 header"
            )
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidError(f"offset must be a byte offset >= 0, got {offset!r}")
        with self._lock:
            up = self._upload(name, upload_id)
            if up.state != "open":
                raise ConflictError(
                    f"upload {upload_id} is busy ({up.state}): send one chunk at a time"
                )
            if offset != up.received:
                raise ConflictError(
                    f"chunk offset {offset} does not follow the {up.received} bytes received so far: "
                    f"send the chunk at offset {up.received}"
                )
            up.state = "writing"
            up.touched = time.time()
        try:
            self._check_same_volume(up)
            return ChunkWriter(self, up, offset, sha256.lower())
        except BaseException:
            with self._lock:
                up.state = "open"
            raise

    def finish_upload(
        self, name: str, upload_id: str, size: Any, sha256: Any, force: Any = None
    ) -> dict[str, Any]:
        """Check the whole file's size and SHA-256, then commit it.

        A size short of the declared one leaves the session open (send the missing
        chunks), as does a malformed ``size``, ``sha256`` or ``force``; a well-formed hash
        that does not match discards the upload. Each raises InvalidError.
        """
        # A malformed request is refused before anything is judged: it never discards the
        # upload, as a well-formed SHA-256 that does not match does.
        if isinstance(size, bool) or not isinstance(size, int):
            raise InvalidError(
                f"finish needs 'size', the file's size in bytes, got {size!r}; the upload is "
                "kept: finish it again"
            )
        if not isinstance(sha256, str) or not _SHA256_HEX.fullmatch(sha256):
            raise InvalidError(
                f"finish needs 'sha256', the file's SHA-256 as 64 hex digits, got {sha256!r}; "
                "the upload is kept: finish it again"
            )
        if force is not None and not isinstance(force, bool):
            raise InvalidError(f"force must be true or false, got {force!r}")
        with self._lock:
            up = self._upload(name, upload_id)
            if up.state != "open":
                raise ConflictError(
                    f"upload {upload_id} is busy ({up.state}): wait for its last chunk"
                )
            if up.received != up.size:
                raise InvalidError(
                    f"upload {upload_id} is incomplete: {up.received} of {up.size} bytes received; "
                    f"send the rest from offset {up.received}"
                )
            if size != up.size:
                raise InvalidError(
                    f"finish says the file has {size} bytes, but upload {upload_id} was started "
                    f"for {up.size} bytes and has them all: finish with size {up.size}, or "
                    "cancel the upload and start it again with the right size"
                )
            if sha256.lower() != up.sha.hexdigest():
                self._drop(up)
                raise InvalidError(
                    f"upload of {up.path} failed verification: the file's SHA-256 is "
                    f"{up.sha.hexdigest()}, the client sent {sha256!r}. Nothing was committed; "
                    "upload the file again."
                )
            up.state = "committing"
        try:
            vol = self._check_same_volume(up)
            batch = vol.batch_upload(force=up.force if force is None else force)
            with batch, open(up.tmp, "rb") as f:
                batch.put_file(f, up.path)
        except BaseException:
            with self._lock:
                up.reopen()
            raise
        with self._lock:
            self._drop(up)
        return {
            "path": up.path,
            "size": up.size,
            "sha256": up.sha.hexdigest(),
            "commit": commit_json(batch.commit_info),
        }

    def abort_upload(self, name: str, upload_id: str) -> None:
        """Cancel an upload and delete what was received."""
        with self._lock:
            up = self._upload(name, upload_id)
            if up.state == "committing":
                raise ConflictError(
                    f"upload {upload_id} is being committed and can no longer be cancelled"
                )
            self._drop(up)

    def _drop(self, up: _Upload) -> None:
        with self._lock:
            self._uploads.pop(up.id, None)
        _remove(up.tmp)

    def _expire_uploads(self) -> None:
        cutoff = time.time() - UPLOAD_IDLE_SECONDS
        with self._lock:
            stale = [u for u in self._uploads.values() if u.touched < cutoff and u.state == "open"]
        for up in stale:
            self._drop(up)


def _path_arg(value: Any, what: str) -> str:
    """A path from a request body, normalized; names with control characters refused.

    Such names are legal in a volume (the Python API writes them) but break the
    places a browser shows or sends them (headers, one-line lists), so the REST API
    does not create new ones.
    """
    if value is None:
        raise InvalidError(f"the request needs {what!r}, a path in the volume")
    if not isinstance(value, str):
        raise InvalidError(f"{what} must be a path string, got {value!r}")
    bad = next((c for c in value if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0), None)
    if bad is not None:
        raise InvalidError(
            f"{what} {value!r} contains the control character {bad!r} (U+{ord(bad):04X}); "
            "file names may not contain control characters"
        )
    return normalize_path(value, what=what)


_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


def check_commit(vol: Volume, seq: int) -> None:
    """NotFoundError unless commit ``seq`` of ``vol`` exists and gc has not expired it.

    A path looked up at a missing commit raises NotFoundError too; a caller that takes
    that for "the path was absent at that commit" checks the commit first.
    """
    vol.stat("", at=seq)


def _config_error(exc: Exception) -> InvalidError | None:
    """A bad value in the server's jupyter-volume config (a traitlets TraitError) as the
    InvalidError it is; the CLI calls it a usage error too. None for anything else."""
    try:
        from traitlets import TraitError
    except ImportError:  # pragma: no cover - traitlets comes with jupyter_server
        return None
    if isinstance(exc, TraitError):
        return InvalidError(" ".join(str(exc).split()))
    return None


def _stat_or_none(vol: Volume, path: str, at: int | None = None) -> FileEntry | None:
    """The entry at ``path`` (at commit ``at``), or None when nothing is there."""
    try:
        return vol.stat(path, at=at)
    except NotFoundError:
        return None


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
