"""The public Python API: :class:`Volume`, shaped like ``modal.Volume``, plus history.

Layer: uses ``repository``, ``names`` and ``store``; front ends (magics, CLI, widgets,
server) call this and never the layers below. Never imports IPython or Jupyter server.
"""

from __future__ import annotations

import contextlib
import enum
import fnmatch
import io
import os
import re
import stat as stat_mod
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from . import names
from .aio import aio
from .errors import AlreadyExistsError, InvalidError, NotFoundError
from .names import check_name, normalize_path
from .repository import DIR, FILE, LINK, CommitRecord, Entry, Repository, VerifyReport, Writer
from .store import Store, open_store

if TYPE_CHECKING:
    from .mount import Mount
    from .reader import VolumeReader

__all__ = [
    "CommitInfo",
    "DiffEntry",
    "DiskUsage",
    "FileEntry",
    "FileEntryType",
    "Volume",
    "VolumeInfo",
]


class FileEntryType(enum.IntEnum):
    """The kind of a listed path (numbered as in Modal's API)."""

    UNSPECIFIED = 0
    FILE = 1
    DIRECTORY = 2
    SYMLINK = 3


_KIND_TYPE = {FILE: FileEntryType.FILE, DIR: FileEntryType.DIRECTORY, LINK: FileEntryType.SYMLINK}


@dataclass(frozen=True)
class FileEntry:
    """One listed path. ``path`` is relative to the volume root (no leading slash);
    ``mtime`` is integer seconds; ``size`` is bytes (for a folder: all bytes below it)."""

    path: str
    type: FileEntryType
    mtime: int
    size: int

    @classmethod
    def _of(cls, path: str, e: Entry) -> FileEntry:
        return cls(path, _KIND_TYPE[e.kind], e.mtime_ns // 1_000_000_000, e.size)


@dataclass(frozen=True)
class VolumeInfo:
    """What :meth:`Volume.info` returns."""

    name: str
    id: str
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class CommitInfo:
    """One commit of a volume's history."""

    seq: int
    time: datetime
    author: str
    host: str
    message: str
    kind: str
    added: int
    modified: int
    deleted: int
    bytes_new: int
    tags: tuple[str, ...] = ()
    expired: bool = False

    @classmethod
    def _of(
        cls, rec: CommitRecord, tags: tuple[str, ...] = (), expired: bool = False
    ) -> CommitInfo:
        s = rec.stats
        return cls(
            rec.seq,
            datetime.fromtimestamp(rec.time, tz=UTC),
            rec.author,
            rec.host,
            rec.message,
            rec.kind,
            int(s.get("added", 0)),
            int(s.get("modified", 0)),
            int(s.get("deleted", 0)),
            int(s.get("bytes_new", 0)),
            tags,
            expired,
        )


@dataclass(frozen=True)
class DiffEntry:
    """One path that differs between two commits: ``change`` is added/modified/deleted."""

    path: str
    change: str
    type: FileEntryType
    old_size: int | None
    new_size: int | None


@dataclass(frozen=True)
class DiskUsage:
    """What :meth:`Volume.du` returns: logical sizes below ``path``."""

    path: str
    files: int
    bytes: int


_repos: dict[tuple[str, str], Repository] = {}
_repos_lock = threading.Lock()


def _repository(store: Store, vol_id: str) -> Repository:
    """One Repository per (store, volume) in a process, so caches and locks are shared."""
    key = (store.url, vol_id)
    with _repos_lock:
        repo = _repos.get(key)
        if repo is None:
            repo = _repos[key] = Repository(store, vol_id)
        return repo


_stores: dict[str, Store] = {}


def _open(store: Store | str | os.PathLike[str] | None) -> Store:
    if isinstance(store, Store):
        return store
    from .config import resolve_store_url

    # --store / store= wins, then $JUPYTER_VOLUME_STORE, then jupyter_volume_config.py, then
    # the default folder: the same order the CLI, the magic and the server use.
    url = os.fspath(store) if store is not None else resolve_store_url()
    with _repos_lock:
        s = _stores.get(url)
        if s is None:
            s = _stores[url] = open_store(url)
        return s


def _parent_path(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def _join_path(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _has_glob(path: str) -> bool:
    # As in Modal: a path is a glob when it has a `*` (or `**`); then `?` and `[...]` match
    # too. So names like "a[1].txt" or "why?.md" list as themselves.
    return "*" in path


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """``*`` and ``?`` stay within one path segment; ``**`` spans any number of them."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                out.append(re.escape("["))
                i += 1
            else:
                out.append(fnmatch.translate(pattern[i : j + 1])[4:-3])
                i = j + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


class _Objects:
    """``Volume.objects``: create, list and delete volumes by name."""

    def create(
        self, name: str, *, allow_existing: bool = False, store: Store | str | None = None
    ) -> None:
        """Create a volume. Raises AlreadyExistsError unless ``allow_existing``."""
        names.create(_open(store), name, allow_existing=allow_existing)

    def list(self, *, store: Store | str | None = None) -> list[Volume]:
        """Every volume in the store, sorted by name."""
        s = _open(store)
        return [Volume(m.name, store=s, _meta=m) for m in names.list_volumes(s)]

    def delete(
        self, name: str, *, allow_missing: bool = False, store: Store | str | None = None
    ) -> None:
        """Delete a volume and all its history. Raises NotFoundError unless ``allow_missing``."""
        s = _open(store)
        try:
            meta = names.resolve(s, name)
        except NotFoundError:
            if allow_missing:
                return
            raise
        from .mount import _active_mount

        m = _active_mount(s, meta.id)
        if m is not None:
            m._detach()
        names.delete(s, name, allow_missing=allow_missing)


class Volume:
    """A named, versioned directory tree in an object store.

    Get one with :meth:`from_name` (lazy) or :meth:`lookup` (checks it exists), or a
    throwaway one with :meth:`ephemeral`. ``store`` is a URL or :class:`Store`; the
    default is ``$JUPYTER_VOLUME_STORE`` or a folder in the Jupyter data directory.

    Example::

        vol = Volume.from_name("my-data", create_if_missing=True)
        with vol.batch_upload() as batch:
            batch.put_file(io.BytesIO(b"hello"), "greeting.txt")
        b"".join(vol.read_file("greeting.txt"))  # b"hello"
    """

    objects = _Objects()

    def __init__(
        self,
        name: str,
        *,
        store: Store | str | None = None,
        create_if_missing: bool = False,
        _meta: names.VolumeMeta | None = None,
    ) -> None:
        self.name = check_name(name)
        self.store = _open(store)
        self._create_if_missing = create_if_missing
        self._meta = _meta
        self._lock = threading.RLock()
        # The commit this handle's reads see: fixed at first use, advanced by this handle's
        # own commits and by reload() (Modal's model: reload to see others' commits).
        self._seq: int | None = None

    def __repr__(self) -> str:
        return f"Volume({self.name!r}, store={self.store.url!r})"

    # -- handles ---------------------------------------------------------------------------
    @staticmethod
    def from_name(
        name: str, *, create_if_missing: bool = False, store: Store | str | None = None
    ) -> Volume:
        """A handle on volume ``name``; nothing is read until it is used.

        With ``create_if_missing``, the first use creates the volume if it does not exist.
        Raises InvalidError at once for a bad name.
        """
        return Volume(name, store=store, create_if_missing=create_if_missing)

    @staticmethod
    def lookup(
        name: str, *, create_if_missing: bool = False, store: Store | str | None = None
    ) -> Volume:
        """Like :meth:`from_name` but checks now: NotFoundError if ``name`` does not exist."""
        vol = Volume(name, store=store, create_if_missing=create_if_missing)
        vol._resolve()
        return vol

    @classmethod
    @contextlib.contextmanager
    def ephemeral(cls, *, store: Store | str | None = None) -> Iterator[Volume]:
        """A new, uniquely named volume that is deleted when the block exits (also on error).

        Example::

            with Volume.ephemeral() as vol:
                assert vol.listdir("/") == []
        """
        vol = Volume(f"ephemeral-{uuid.uuid4().hex[:12]}", store=store)
        vol._meta = names.create(vol.store, vol.name)
        try:
            yield vol
        finally:
            from .mount import _active_mount

            m = _active_mount(vol.store, vol._meta.id)
            if m is not None:
                m._detach()
            names.delete(vol.store, vol.name, allow_missing=True)

    @staticmethod
    def rename(old: str, new: str, *, store: Store | str | None = None) -> None:
        """Rename volume ``old`` to ``new`` (contents and history unchanged)."""
        names.rename(_open(store), old, new)

    def _resolve(self) -> names.VolumeMeta:
        with self._lock:
            if self._meta is None:
                if self._create_if_missing:
                    self._meta = names.create(self.store, self.name, allow_existing=True)
                else:
                    self._meta = names.resolve(self.store, self.name)
            return self._meta

    @property
    def _repo(self) -> Repository:
        return _repository(self.store, self._resolve().id)

    def info(self) -> VolumeInfo:
        """Name, id, creation time (UTC) and creator of the volume."""
        m = self._resolve()
        return VolumeInfo(m.name, m.id, datetime.fromtimestamp(m.created_at, tz=UTC), m.created_by)

    def delete(self) -> None:
        """Delete this volume and its whole history."""
        Volume.objects.delete(self.name, store=self.store)
        self._meta = None

    # -- reading -------------------------------------------------------------------------------
    def _root(self, at: int | None) -> str:
        repo = self._repo
        if at is not None:
            rec = repo.record(int(at))
            if repo.is_expired(rec.seq):
                raise NotFoundError(
                    f"commit {rec.seq} of volume {self.name!r} was expired by garbage collection"
                )
            return rec.root
        if self._seq is None:
            self._seq = repo.head(refresh=True).seq
        from .mount import _active_mount

        m = _active_mount(self.store, self._resolve().id)
        if m is not None:  # this process's mount commits in the background: see those
            self._seq = max(self._seq, m.base_seq, m.last_commit.seq if m.last_commit else 0)
        return repo.record(self._seq).root

    def _entry(self, path: str, at: int | None = None) -> tuple[str, Entry]:
        p = normalize_path(path)
        e = self._repo.lookup(p, self._root(at))
        if e is None:
            where = f" at commit {at}" if at is not None else ""
            raise NotFoundError(
                f"no such file or folder in volume {self.name!r}{where}: {p or '/'}"
            )
        return p, e

    def iterdir(
        self, path: str = "/", *, recursive: bool = True, at: int | None = None
    ) -> Iterator[FileEntry]:
        """Yield the entries under ``path``.

        A folder yields its contents (all levels when ``recursive``); a file yields just
        itself; a glob (``*``, ``?``, ``[..]``, ``**``) yields every matching file and
        folder. Paths are relative to the volume root. ``at`` reads an older commit.
        """
        p = normalize_path(path)
        repo = self._repo
        root = self._root(at)
        if _has_glob(p):
            parts = p.split("/")
            base_parts: list[str] = []
            for part in parts:
                if _has_glob(part):
                    break
                base_parts.append(part)
            base = "/".join(base_parts)
            rx = _glob_regex(p)
            be = repo.lookup(base, root)
            if be is None or be.kind != DIR:
                return
            for sub, e in repo.trees.walk(be.tree, base + "/" if base else ""):  # type: ignore[arg-type]
                if rx.match(sub):
                    yield FileEntry._of(sub, e)
            return
        e = repo.lookup(p, root)
        if e is None:
            where = f" at commit {at}" if at is not None else ""
            raise NotFoundError(
                f"no such file or folder in volume {self.name!r}{where}: {p or '/'}"
            )
        if e.kind != DIR:
            yield FileEntry._of(p, e)
            return
        prefix = p + "/" if p else ""
        if recursive:
            for sub, se in repo.trees.walk(e.tree, prefix):  # type: ignore[arg-type]
                yield FileEntry._of(sub, se)
        else:
            for se in repo.trees.entries(e.tree):  # type: ignore[arg-type]
                yield FileEntry._of(prefix + se.name, se)

    def listdir(
        self, path: str = "/", *, recursive: bool = False, at: int | None = None
    ) -> list[FileEntry]:
        """The entries under ``path`` as a list (see :meth:`iterdir`; not recursive by default)."""
        return list(self.iterdir(path, recursive=recursive, at=at))

    def read_file(
        self,
        path: str | bytes,
        *,
        at: int | None = None,
        offset: int = 0,
        length: int | None = None,
    ) -> Iterator[bytes]:
        """Yield the bytes of file ``path`` in pieces (streamed: memory stays bounded).

        ``offset``/``length`` read a byte range (only the chunks that hold it are fetched).
        Raises NotFoundError if there is no such file, InvalidError for a folder.
        """
        p, e = self._entry(path if isinstance(path, str) else path.decode(), at)
        if e.kind == DIR:
            raise InvalidError(f"{p} is a folder, not a file")
        if e.kind == LINK:
            raise InvalidError(f"{p} is a symbolic link to {e.target!r}; links are not followed")
        if offset < 0 or (length is not None and length < 0):
            raise InvalidError("offset and length must be >= 0")
        if offset == 0 and length is None:
            return self._repo.read_entry(e, p)
        end = e.size if length is None else min(offset + length, e.size)
        return self._reader(p, e, at).iter_range(offset, end)

    def _reader(self, p: str, e: Entry, at: int | None) -> VolumeReader:
        from .reader import VolumeReader, local_chunk_cache

        return VolumeReader(
            self._repo,
            e,
            p,
            volume=self.name,
            commit=at if at is not None else self._seq,
            chunk_cache=local_chunk_cache(),
        )

    @aio
    def open(self, path: str | bytes, mode: str = "rb", *, at: int | None = None) -> Any:
        """Open file ``path`` for reading: a seekable file that fetches only what is read.

        ``mode`` is ``"rb"`` (a :class:`~jupyter_volume.reader.VolumeReader`) or ``"r"``
        (UTF-8 text over one). Every byte read comes from one commit: the newest this
        handle sees when opening (``at``: an older commit), whatever is committed while
        the file is open. Reads fetch only the chunks that hold the requested bytes
        (verified, and kept in the local chunk cache); sequential reads are fetched ahead
        in the background. Example::

            with vol.open("data/table.parquet") as f:
                f.seek(-8, 2)
                tail = f.read()

        Raises NotFoundError if there is no such file, InvalidError for a folder or for a
        mode other than reading (write with :meth:`batch_upload`, or through
        ``fsspec.open("volume://...", "wb")``).
        """
        if mode not in ("rb", "r", "rt"):
            raise InvalidError(
                f"Volume.open reads only (mode 'rb' or 'r'), not {mode!r}: write with "
                "vol.batch_upload() or fsspec.open('volume://...', 'wb')"
            )
        p, e = self._entry(path if isinstance(path, str) else path.decode(), at)
        if e.kind == DIR:
            raise InvalidError(f"{p} is a folder, not a file")
        if e.kind == LINK:
            raise InvalidError(f"{p} is a symbolic link to {e.target!r}; links are not followed")
        reader = self._reader(p, e, at)
        return reader if mode == "rb" else io.TextIOWrapper(reader, encoding="utf-8")

    def stat(self, path: str | bytes, *, at: int | None = None) -> FileEntry:
        """The :class:`FileEntry` of one path (never a glob); NotFoundError if missing."""
        p, e = self._entry(path if isinstance(path, str) else path.decode(), at)
        if not p:
            kids = self._repo.trees.entries(e.tree)  # type: ignore[arg-type]
            return FileEntry("", FileEntryType.DIRECTORY, 0, sum(x.size for x in kids))
        return FileEntry._of(p, e)

    @property
    def seq(self) -> int:
        """The commit this handle's reads see (see :meth:`refresh` and :meth:`reload`)."""
        self._root(None)
        assert self._seq is not None
        return self._seq

    def read_file_into_fileobj(
        self,
        path: str | bytes,
        fileobj: IO[bytes],
        progress_cb: Callable[[int], Any] | None = None,
        *,
        at: int | None = None,
    ) -> int:
        """Write file ``path`` into ``fileobj``; return the number of bytes written.

        ``progress_cb(n)`` is called after each piece with the bytes just written.
        """
        total = 0
        for piece in self.read_file(path, at=at):
            fileobj.write(piece)
            total += len(piece)
            if progress_cb is not None:
                progress_cb(len(piece))
        return total

    # -- writing ------------------------------------------------------------------------------
    def _commit_changes(
        self,
        changes: dict[str, Entry | str | None],
        message: str,
        writer: Writer | None = None,
        **kw: Any,
    ) -> CommitInfo | None:
        rec, _stats = self._repo.commit(changes, message=message, writer=writer, **kw)
        if rec is None:
            return None
        self._seq = rec.seq
        return CommitInfo._of(rec)

    def remove_file(self, path: str | bytes, recursive: bool = False) -> None:
        """Delete a file, or a folder with ``recursive=True``, as one commit.

        Raises NotFoundError if it does not exist, InvalidError for a non-empty folder
        without ``recursive`` or for the volume root.
        """
        p, e = self._entry(path if isinstance(path, str) else path.decode())
        if not p:
            raise InvalidError(
                "cannot remove the volume root; use vol.delete() to delete the volume"
            )
        changes: dict[str, Entry | str | None] = {p: None}
        if e.kind == DIR:
            below = list(self._repo.trees.walk(e.tree, p + "/"))  # type: ignore[arg-type]
            if below and not recursive:
                raise InvalidError(
                    f"{p} is a folder that is not empty: pass recursive=True to remove it"
                )
            changes.update({sub: None for sub, _ in below})
        self._commit_changes(changes, f"remove {p}")

    def copy_files(
        self, src_paths: Sequence[str | bytes], dst_path: str | bytes, recursive: bool = False
    ) -> None:
        """Copy files (and with ``recursive`` folders) inside the volume, like ``cp``.

        If ``dst_path`` is an existing folder, each source is copied into it under its own
        name; otherwise a single source is copied to ``dst_path``. No data is copied:
        the new paths share the stored chunks.
        """
        if isinstance(src_paths, (str, bytes)):
            src_paths = [src_paths]
        if not src_paths:
            raise InvalidError("copy_files needs at least one source path")
        repo = self._repo
        root = self._root(None)
        dst = normalize_path(dst_path if isinstance(dst_path, str) else dst_path.decode())
        dst_e = repo.lookup(dst, root)
        into_dir = dst_e is not None and dst_e.kind == DIR
        if len(src_paths) > 1 and not into_dir:
            raise InvalidError(
                f"copying several sources needs an existing destination folder: {dst or '/'} is not one"
            )
        if not into_dir:
            parent = dst.rsplit("/", 1)[0] if "/" in dst else ""
            pe = repo.lookup(parent, root)
            if pe is None or pe.kind != DIR:
                raise NotFoundError(
                    f"destination folder {parent or '/'} does not exist in volume {self.name!r}"
                )
        changes: dict[str, Entry | str | None] = {}
        for src in src_paths:
            sp, se = self._entry(src if isinstance(src, str) else src.decode())
            if se.kind == DIR and not recursive:
                raise InvalidError(f"{sp or '/'} is a folder: pass recursive=True to copy it")
            target = (
                (f"{dst}/{sp.rsplit('/', 1)[-1]}" if dst else sp.rsplit("/", 1)[-1])
                if into_dir
                else dst
            )
            if not sp or target == sp or target.startswith(sp + "/"):
                raise InvalidError(f"cannot copy {sp or '/'} into itself ({target})")
            te = repo.lookup(target, root)
            if se.kind == DIR and te is not None and te.kind == DIR:
                # cp -r into an existing folder merges: copy file by file.
                for sub, e in repo.trees.walk(se.tree, ""):  # type: ignore[arg-type]
                    if e.kind != DIR:
                        changes[f"{target}/{sub}"] = e
                    elif e.nfiles == 0:
                        changes[f"{target}/{sub}"] = "dir"
            elif se.kind != DIR and te is not None and te.kind == DIR:
                raise InvalidError(f"cannot overwrite folder {target} with file {sp}")
            else:
                changes[target] = se
        self._commit_changes(
            changes,
            f"copy {', '.join(normalize_path(s if isinstance(s, str) else s.decode()) for s in src_paths)} to {dst or '/'}",
        )

    def mkdir(self, path: str) -> CommitInfo | None:
        """Create an empty folder ``path`` (and missing parents) as one commit.

        The commit message is ``create folder PATH``.

        Raises:
            AlreadyExistsError: something exists at ``path``, or one of its parents is a file.
            InvalidError: ``path`` is the volume root or not a valid volume path.
        """
        p = normalize_path(path)
        if not p:
            raise InvalidError("the volume root always exists: give a folder name")
        repo = self._repo
        root = self._root(None)
        if repo.lookup(p, root) is not None:
            raise AlreadyExistsError(f"{p} already exists in volume {self.name!r}")
        _refuse_file_parent(repo, root, p, f"cannot create folder {p}", self.name)
        return self._commit_changes({p: "dir"}, f"create folder {p}")

    def move(self, src: str, dst: str, *, overwrite: bool = False) -> CommitInfo | None:
        """Move or rename file or folder ``src`` to ``dst`` inside the volume, as one commit.

        Like ``mv``: if ``dst`` is an existing folder, ``src`` moves into it under its own
        name. No data is copied (the new path shares the stored chunks); the message is
        ``move SRC to DST``.

        Raises:
            NotFoundError: ``src`` does not exist, or the destination's folder does not.
            AlreadyExistsError: the destination exists (a file is replaced only with
                ``overwrite=True`` and only by a file; a folder never).
            InvalidError: moving the root, onto itself, or a folder into itself.
        """
        sp = normalize_path(src)
        if not sp:
            raise InvalidError("cannot move the volume root")
        repo = self._repo
        root = self._root(None)
        se = repo.lookup(sp, root)
        if se is None:
            raise NotFoundError(f"no such file or folder in volume {self.name!r}: {sp}")
        dp = normalize_path(dst)
        de = repo.lookup(dp, root)
        if de is not None and de.is_dir:
            dp = _join_path(dp, sp.rsplit("/", 1)[-1])
            de = repo.lookup(dp, root)
        if dp == sp:
            raise InvalidError(f"{sp} is already there: nothing to move")
        if dp.startswith(sp + "/"):
            raise InvalidError(f"cannot move folder {sp} into itself ({dp})")
        if de is not None:
            if de.is_dir:
                raise AlreadyExistsError(
                    f"{dp} is a folder in volume {self.name!r}: choose another name"
                )
            if se.is_dir:
                raise AlreadyExistsError(
                    f"cannot replace file {dp} with folder {sp}: choose another name"
                )
            if not overwrite:
                raise AlreadyExistsError(
                    f"{dp} already exists in volume {self.name!r}: pass overwrite=True to replace it"
                )
        pe = repo.lookup(_parent_path(dp), root)
        if pe is None or not pe.is_dir:
            raise NotFoundError(
                f"destination folder {_parent_path(dp) or '/'} does not exist in volume {self.name!r}"
            )
        changes: dict[str, Any] = {dp: se, sp: None}
        if se.is_dir:
            # a folder goes away only once everything below it is deleted too
            changes.update({sub: None for sub, _ in repo.trees.walk(se.tree, sp + "/")})
        return self._commit_changes(changes, f"move {sp} to {dp}")

    def remove_paths(self, paths: Iterable[str]) -> CommitInfo | None:
        """Delete several files and folders (with everything below them) as one commit.

        The message names what went: ``remove a.txt, data`` (or ``remove N paths (a, …)``).

        Raises:
            NotFoundError: one of ``paths`` does not exist (nothing is removed then).
            InvalidError: ``paths`` is empty or names the volume root.
        """
        repo = self._repo
        root = self._root(None)
        wanted = sorted({normalize_path(p) for p in paths})
        if not wanted:
            raise InvalidError("nothing to remove: give at least one path")
        changes: dict[str, Any] = {}
        for p in wanted:
            if not p:
                raise InvalidError(
                    "cannot remove the volume root; use self.delete() to delete the volume"
                )
            e = repo.lookup(p, root)
            if e is None:
                raise NotFoundError(f"no such file or folder in volume {self.name!r}: {p}")
            changes[p] = None
            if e.is_dir:
                changes.update({sub: None for sub, _ in repo.trees.walk(e.tree, p + "/")})
        if len(wanted) <= 3:
            message = f"remove {', '.join(wanted)}"
        else:
            message = f"remove {len(wanted)} paths ({wanted[0]}, …)"
        return self._commit_changes(changes, message)

    def batch_upload(self, force: bool = False) -> BatchUpload:
        """Upload many files as one commit: nothing is visible until the block exits.

        An existing file is not overwritten unless ``force``; a folder is never replaced
        by a file; an exception inside the block uploads nothing. Example::

            with vol.batch_upload() as batch:
                batch.put_file("local.txt", "/remote.txt")
                batch.put_directory("data/", "/data")
                batch.put_file(io.BytesIO(b"some data"), "/foobar")
        """
        return BatchUpload(self, force)

    # -- history ---------------------------------------------------------------------------------
    def history(
        self, limit: int | None = None, *, include_expired: bool = False
    ) -> list[CommitInfo]:
        """Commits newest first (``limit`` of them), with what each added/modified/deleted.

        Commits expired by :meth:`gc` are left out unless ``include_expired``; the gc
        commits themselves say what they expired and when.
        """
        from .repository import gc

        repo = self._repo
        state = repo.gc_state(repo.head())
        by_seq: dict[int, list[str]] = {}
        for name, seq in gc.list_tags(repo).items():
            by_seq.setdefault(seq, []).append(name)
        out = []
        for r in repo.log():
            expired = state.is_expired(r.seq)
            if expired and not include_expired:
                continue
            out.append(CommitInfo._of(r, tuple(sorted(by_seq.get(r.seq, []))), expired))
            if limit is not None and len(out) >= limit:
                break
        return out

    # -- retention and garbage collection ---------------------------------------------------------
    def tag(self, seq: int, name: str, *, force: bool = False) -> None:
        """Tag commit ``seq`` as ``name``: tagged commits survive every retention policy."""
        from .repository import gc

        gc.set_tag(self._repo, int(seq), name, force=force)

    def untag(self, name: str) -> None:
        """Remove a tag (its commit falls under the retention policy again)."""
        from .repository import gc

        gc.delete_tag(self._repo, name)

    def tags(self) -> dict[str, int]:
        """Tag name -> commit seq."""
        from .repository import gc

        return gc.list_tags(self._repo)

    @property
    def retention(self) -> Any:
        """The volume's :class:`~jupyter_volume.repository.gc.RetentionPolicy` (keep all by default)."""
        from .repository import gc

        return gc.load_policy(self._repo)

    def set_retention(
        self,
        *,
        keep_last: int | None = None,
        keep_within: float | str | None = None,
        keep_hourly: int | None = None,
        keep_daily: int | None = None,
        squash_auto_after: float | str | None = None,
        grace: float | str | None = None,
    ) -> Any:
        """Set which history :meth:`gc` keeps. No arguments: keep everything.

        Durations are seconds or strings like ``"90m"``, ``"7d"``. Example::

            vol.set_retention(keep_last=10, keep_daily=7, grace="1h")
            vol.gc()
        """
        from .repository import gc

        pol = gc.RetentionPolicy(
            keep_last=keep_last,
            keep_within=gc.parse_duration(keep_within) if keep_within is not None else None,
            keep_hourly=keep_hourly,
            keep_daily=keep_daily,
            squash_auto_after=gc.parse_duration(squash_auto_after)
            if squash_auto_after is not None
            else None,
            grace=gc.parse_duration(grace) if grace is not None else gc.DEFAULT_GRACE,
        )
        gc.save_policy(self._repo, pol)
        return pol

    def gc(self, *, dry_run: bool = False, grace: float | str | None = None) -> Any:
        """Expire commits outside the retention policy and reclaim their space.

        Returns a :class:`~jupyter_volume.repository.gc.GcReport` (bytes freed, objects
        deleted, packs repacked). ``dry_run`` changes nothing. ``grace`` (seconds) overrides
        the policy's grace period, which protects uploads of commits still in flight:
        use 0 only when no one else is writing.
        """
        from .repository import gc

        return gc.collect(
            self._repo,
            dry_run=dry_run,
            grace=gc.parse_duration(grace) if grace is not None else None,
        )

    def diff(self, a: int, b: int | None = None) -> list[DiffEntry]:
        """What changed from commit ``a`` to commit ``b`` (default: the head)."""
        repo = self._repo
        ra = repo.record(int(a)).root
        rb = self._root(b)
        out = []
        for path, old, new in repo.trees.diff(ra, rb):
            change = "added" if old is None else "deleted" if new is None else "modified"
            kind = (new or old).kind  # type: ignore[union-attr]
            if old is not None and new is not None and old.kind == DIR:
                kind = new.kind
            out.append(
                DiffEntry(
                    path,
                    change,
                    _KIND_TYPE[kind],
                    old.size if old else None,
                    new.size if new else None,
                )
            )
        return out

    def restore(self, commit: int, path: str | None = None) -> CommitInfo | None:
        """Bring back the whole tree, or one file or folder, as it was at ``commit``.

        Recorded as a new commit (nothing is rewritten; the versions in between stay in
        history). A path that did not exist at ``commit`` is removed. Returns None when
        nothing differs.
        """
        repo = self._repo
        old = repo.record(int(commit))
        if path is None or not normalize_path(path):
            return self._commit_changes(
                {}, f"restore to commit {old.seq}", root=old.root, kind="restore"
            )
        p = normalize_path(path)
        then = repo.lookup(p, old.root)
        now = repo.lookup(p, self._root(None))
        changes: dict[str, Entry | str | None] = {}
        if then is None:
            if now is None:
                return None
            changes[p] = None
            if now.kind == DIR:
                changes.update({sub: None for sub, _ in repo.trees.walk(now.tree, p + "/")})  # type: ignore[arg-type]
        else:
            changes[p] = then
        return self._commit_changes(changes, f"restore {p} from commit {old.seq}", kind="restore")

    def verify(self, *, read_data: bool = True) -> VerifyReport:
        """Re-read and re-hash everything reachable from every commit; report any damage."""
        return self._repo.verify(read_data=read_data)

    def du(self, path: str = "/", *, at: int | None = None) -> DiskUsage:
        """Number of files and logical bytes under ``path``."""
        p, e = self._entry(path, at)
        if e.kind == DIR:
            kids = self._repo.trees.entries(e.tree)  # type: ignore[arg-type]
            return DiskUsage(
                p, sum(x.nfiles if x.kind == DIR else 1 for x in kids), sum(x.size for x in kids)
            )
        return DiskUsage(p, 1, e.size)

    # -- mounts -------------------------------------------------------------------------------
    def commit(self) -> CommitInfo | None:
        """Commit the mounted folder's changes (if this volume is mounted here); else no-op."""
        from .mount import _active_mount

        m = _active_mount(self.store, self._resolve().id)
        if m is not None:
            info = m.commit()
            if info is not None:
                self._seq = info.seq
            return info
        return None

    def refresh(self) -> CommitInfo:
        """Make this handle's reads see the newest commit, and return it.

        Unlike :meth:`reload`, this never touches a mounted folder.
        """
        rec = self._repo.head(refresh=True)
        self._seq = rec.seq
        return CommitInfo._of(rec)

    def reload(self) -> None:
        """Bring the mounted folder to the newest commit; unmounted, refresh the head."""
        from .mount import _active_mount

        m = _active_mount(self.store, self._resolve().id)
        if m is not None:
            m.reload()
            self._seq = m.base_seq
            return
        self._seq = self._repo.head(refresh=True).seq

    def mount(
        self, path: str | os.PathLike[str] | None = None, *, read_only: bool = False, **kw: Any
    ) -> Mount:
        """Materialize the volume in a local folder (default ``./NAME``); see :class:`Mount`."""
        from .mount import Mount

        return Mount(self, path, read_only=read_only, **kw)


class BatchUpload:
    """Collects files for one commit; see :meth:`Volume.batch_upload`."""

    def __init__(self, vol: Volume, force: bool) -> None:
        self._vol = vol
        self._force = force
        self._writer: Writer | None = None
        self._changes: dict[str, Entry | str | None] = {}
        self.commit_info: CommitInfo | None = None

    def __enter__(self) -> BatchUpload:
        self._writer = self._vol._repo.writer()
        return self

    def _target(self, remote_path: str, local_name: str | None) -> str:
        if isinstance(remote_path, bytes):
            remote_path = remote_path.decode()
        if remote_path.endswith("/") and local_name:
            remote_path = remote_path + local_name
        p = normalize_path(remote_path)
        if not p:
            raise InvalidError("cannot upload a file to the volume root '/': give a file path")
        if p in self._changes:
            raise InvalidError(f"{p} was already added to this batch")
        return p

    def put_file(
        self,
        local_file: str | os.PathLike[str] | BinaryIO,
        remote_path: str,
        mode: int | None = None,
    ) -> None:
        """Add a local file (a path or a binary file object) at ``remote_path``.

        ``mode`` sets the permission bits (default: the local file's, else 0o644).
        """
        if self._writer is None:
            raise InvalidError("use put_file inside `with vol.batch_upload() as batch:`")
        if isinstance(local_file, (str, os.PathLike)):
            lp = Path(local_file)
            if not lp.is_file():
                raise NotFoundError(f"local file {lp} does not exist or is not a regular file")
            st = lp.stat()
            target = self._target(remote_path, lp.name)
            with open(lp, "rb") as f:
                entry = self._writer.file_entry(
                    f,
                    mode=stat_mod.S_IMODE(st.st_mode) if mode is None else mode,
                    mtime_ns=st.st_mtime_ns,
                )
        else:
            target = self._target(remote_path, None)
            entry = self._writer.file_entry(local_file, mode=0o644 if mode is None else mode)
        self._changes[target] = entry

    def put_directory(
        self, local_path: str | os.PathLike[str], remote_path: str, recursive: bool = True
    ) -> None:
        """Add every file of a local folder below ``remote_path`` (all levels if ``recursive``).

        Symbolic links are stored as links, never followed; empty folders are kept.
        """
        lp = Path(local_path)
        if not lp.is_dir():
            raise NotFoundError(f"local folder {lp} does not exist")
        base = normalize_path(remote_path if isinstance(remote_path, str) else remote_path.decode())
        for dirpath, dirs, files in os.walk(lp):
            rel = os.path.relpath(dirpath, lp)
            rel = "" if rel == "." else rel.replace(os.sep, "/")
            prefix = "/".join(x for x in (base, rel) if x)
            if not recursive:
                dirs[:] = []
            for d in list(dirs):
                full = Path(dirpath, d)
                if full.is_symlink():
                    dirs.remove(d)
                    files.append(d)
                elif not any(full.iterdir()):
                    self._changes[f"{prefix}/{d}" if prefix else d] = "dir"
            for name in sorted(files):
                full = Path(dirpath, name)
                remote = f"{prefix}/{name}" if prefix else name
                if full.is_symlink():
                    target = os.readlink(full)
                    self._changes[self._target(remote, None)] = Entry(
                        "", LINK, 0o777, len(target), full.lstat().st_mtime_ns, target=target
                    )
                elif full.is_file():
                    self.put_file(full, remote)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        writer, self._writer = self._writer, None
        assert writer is not None
        if exc_type is not None:
            writer.abort()
            return
        try:
            self._check_conflicts(self._vol._repo.head().root)
        except BaseException:
            writer.abort()
            raise
        if self._changes:
            # Checked again against every head the commit is applied onto, so a file that
            # another writer created meanwhile is not overwritten without force either.
            self.commit_info = self._vol._commit_changes(
                self._changes,
                _batch_message(self._changes),
                writer,
                check=lambda head: self._check_conflicts(head.root),
            )
        else:
            writer.abort()

    def _check_conflicts(self, root: str) -> None:
        repo = self._vol._repo
        # A path that is a file (or link) in this batch cannot also be a folder of it:
        # the tree merge would keep the file and silently drop everything below it.
        not_dirs = {
            p
            for p, ch in self._changes.items()
            if ch != "dir" and not (isinstance(ch, Entry) and ch.kind == DIR)
        }
        for p in self._changes:
            parts = p.split("/")
            for i in range(1, len(parts)):
                if "/".join(parts[:i]) in not_dirs:
                    raise InvalidError(
                        f"cannot put {p}: {'/'.join(parts[:i])} is a file in this same batch"
                    )
        for p, ch in self._changes.items():
            cur = repo.lookup(p, root)
            if cur is not None:
                if cur.kind == DIR and ch != "dir":
                    raise AlreadyExistsError(
                        f"{p} is a folder in volume {self._vol.name!r}; a folder is never replaced by a file"
                    )
                if cur.kind != DIR and not self._force:
                    raise AlreadyExistsError(
                        f"{p} already exists in volume {self._vol.name!r}: pass force=True to overwrite it"
                    )
            _refuse_file_parent(repo, root, p, f"cannot put {p}", self._vol.name)


def _refuse_file_parent(repo: Repository, root: str, path: str, what: str, volume: str) -> None:
    """Raise AlreadyExistsError if a parent folder of ``path`` is a file or link in ``root``."""
    parts = path.split("/")
    for i in range(1, len(parts)):
        pe = repo.lookup("/".join(parts[:i]), root)
        if pe is None:
            return
        if pe.kind != DIR:
            raise AlreadyExistsError(
                f"{what}: {'/'.join(parts[:i])} is a file in volume {volume!r}"
            )


def _batch_message(changes: dict[str, Any]) -> str:
    paths = sorted(changes)
    if len(paths) == 1:
        return f"upload {paths[0]}"
    return f"upload {len(paths)} paths ({paths[0]}, …)"
