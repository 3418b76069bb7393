"""``volume://``: volumes as an fsspec file system, for pandas, pyarrow, zarr, dask, ...

URLs::

    volume://VOLUME/path/in/volume        the newest commit (read and write)
    volume://VOLUME@12/path               commit 12 (read only)
    volume://VOLUME@v1.0/path             the commit tagged v1.0 (read only)
    volume://                             the store: each volume is a top-level folder
    volume-nfs://NFS/path                 a network file system (NetworkFileSystemFS)

Options (fsspec ``storage_options``): ``store=`` a store URL (or a
:class:`~jupyter_volume.store.Store`), else ``$JUPYTER_VOLUME_STORE`` or the configured
default; ``environment=`` an environment name, else ``$JUPYTER_VOLUME_ENV`` or the
configured one. Registered as fsspec's ``volume`` protocol through the ``fsspec.specs``
entry point, so ``fsspec.open("volume://...")`` and ``pd.read_parquet("volume://...")``
work once the package is installed.

How volumes differ from a POSIX tree, and what this module does about it:

* Every change is a commit. A file opened for writing becomes one commit when it is
  closed (its bytes go to a temporary file first, so large files stream). A failed
  write commits nothing: an exception inside ``with fs.open(path, "wb")`` (or ``"w"``),
  or a ``close()`` that runs while an exception propagates (pandas closing its handle
  after ``to_csv`` failed midway); see :class:`VolumeWriteFile` for the rule's limit.
  ``put`` of many files (with the folders it makes) and ``pipe`` of a dict are one
  commit each. ``rm`` of many paths is one commit; ``mv`` of one path is one commit
  (into a new folder too; no data is copied); ``cp`` of a file within a volume copies
  no data.
* ``with fs.transaction:`` collects every file written (``open``/``pipe``/``put``/
  ``cp``) in this thread into one commit per volume when the block ends, or none if it
  raises (a file whose own ``with`` block raised is left out). ``put`` copies the
  local file when called; ``"ab"`` appends to what the transaction already wrote;
  ``"xb"``/``mode="create"`` fail on a path the transaction already wrote. The
  transaction belongs to its thread: other threads sharing the (cached) file system
  commit their writes at once. Atomic per volume: all volumes' checks run before any
  commits, but a store failure during the second volume's commit leaves the first
  committed.
* Reads see the newest commit at the time of each call; an open file reads one commit
  from open to close (a Parquet footer and its row groups never mix commits).
* Folders are real entries: ``mkdir`` makes an empty folder that lists and survives;
  writing ``a/b/c`` creates the missing folders ``a`` and ``a/b``; deleting the last
  file of a folder keeps the folder.
* ``rm`` of a whole volume is refused (delete volumes with
  ``Volume.objects.delete``); ``mkdir("NAME")`` at the top creates a volume, and writing
  into a volume that does not exist creates it.
* Writes to ``VOLUME@REF`` are refused, and so is moving a file out of one: a commit is
  history. A file opened for reading pickles (it reopens its commit when unpickled).
* Errors are fsspec's: reading a folder as a file (or ``rm_file`` of one) raises
  IsADirectoryError; ``rm`` of a folder without ``recursive=True`` removes it if it is
  empty and raises OSError ENOTEMPTY otherwise, as ``rmdir`` does; ``rmdir`` of a file
  raises NotADirectoryError (each also an InvalidError).

Layer: a front end, like the CLI: it calls :class:`~jupyter_volume.Volume` only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import io
import logging
import os
import posixpath
import shutil
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fsspec.callbacks import DEFAULT_CALLBACK
from fsspec.spec import AbstractFileSystem
from fsspec.transaction import Transaction
from fsspec.utils import isfilelike

from ._pools import one_at_a_time
from .errors import (
    AlreadyExistsError,
    FolderNotEmptyError,
    InvalidError,
    IsAFolderError,
    NotAFolderError,
    NotFoundError,
)
from .objects import open_base
from .store import Store, environment_store, resolve_environment
from .transfer import _write_files
from .volume import FileEntry, FileEntryType, Volume

__all__ = ["NetworkFileSystemFS", "VolumeFileSystem", "VolumeWriteFile", "parse_url"]

logger = logging.getLogger(__name__)


_PREFIXES = ("volume://", "volume::", "volume-nfs://", "volume-nfs::")


def parse_url(path: str) -> tuple[str, str | None, str]:
    """Split ``volume://NAME@REF/inner/path`` (or ``NAME@REF/inner/path``) into
    ``(NAME, REF or None, "inner/path")``.

    Parsed here rather than by fsspec, whose generic URL parsing would read ``a@b`` as
    user@host. ``NAME`` is "" for the store's root (``volume://``).

    Raises:
        InvalidError: an empty ``@REF``.
    """
    for prefix in _PREFIXES:
        if path.startswith(prefix):
            path = path[len(prefix) :]
            break
    p = path.strip("/")
    if not p:
        return "", None, ""
    head, _, rest = p.partition("/")
    name, at, ref = head.partition("@")
    if at and not ref:
        raise InvalidError(f"empty commit after '@' in {path!r}: use NAME@12 or NAME@tag")
    return name, (ref or None), rest.strip("/")


class _Pending:
    """One write waiting for its commit: bytes, a local file, or an open file object
    (``perm``: the permission bits to store, None for the default or the local file's;
    ``mtime_ns``: the modification time to store for a file object, None for now)."""

    def __init__(
        self,
        volume: str,
        path: str,
        source: Any,
        exclusive: bool,
        perm: int | None = None,
        mtime_ns: int | None = None,
        folder: bool = False,
    ) -> None:
        self.volume = volume
        self.vpath = path
        self._source = source
        self.exclusive = exclusive
        self.perm = perm
        self.mtime_ns = mtime_ns
        self.folder = folder  # an (empty) folder to make, not a file: ``source`` unused
        self.discarded = False

    def source(self) -> Any:
        """What BatchUpload.put_file takes: a local path or a binary file at offset 0."""
        if isinstance(self._source, bytes | bytearray | memoryview):
            return io.BytesIO(self._source)
        if hasattr(self._source, "seek"):
            self._source.seek(0)
        return self._source

    def commit(self) -> None:  # fsspec's Transaction API; VolumeTransaction batches instead
        """Commit this write alone."""
        raise InvalidError("pending volume writes are committed by their transaction")

    def discard(self) -> None:
        """Drop this write (closing the file it would have read, if any)."""
        src, self._source = self._source, b""
        close = getattr(src, "close", None)
        if close is not None:
            close()


class VolumeTransaction(Transaction):
    """``with fs.transaction:``: every file written inside becomes one commit per volume
    at the end of the block, or nothing at all if the block raises.

    A transaction belongs to the thread that started it: other threads using the same
    file system object write (and commit) as if there were none.

    Atomic per volume: the files of one volume land in one commit or not at all. Over
    several volumes, every volume's checks (a file onto a folder, an exclusive create
    onto an existing file, ...) run before any volume commits, so a refused write
    commits nothing anywhere; but the commits themselves are one per volume, so a store
    failure (or a writer that creates a conflicting path in between) while the second
    volume commits leaves the first one committed.
    """

    def complete(self, commit: bool = True) -> None:
        """Commit (or discard) every write collected since the transaction started."""
        files = list(self.files)
        self.files.clear()
        fs = self.fs
        try:
            if commit and fs is not None:
                fs._commit_writes(files)
        finally:
            for f in files:
                try:
                    f.discard()
                except Exception:
                    pass
            if fs is not None:
                fs._intrans = False
                fs._transaction = None
            self.fs = None


class VolumeWriteFile(io.BufferedIOBase):
    """A file opened for writing: bytes go to a local temporary file; closing it commits
    them as one commit (or hands them to the open transaction).

    Returned by ``VolumeFileSystem.open(path, "wb")`` (also ``"xb"``: fail if the file
    exists; ``"ab"``: append to the current contents, or inside a transaction to what
    the transaction already wrote there).

    A failed write commits nothing, in or outside a transaction:

    * an exception inside ``with fs.open(path, "wb") as f:`` (or ``"w"``) discards the
      file;
    * so does :meth:`close` called while an exception propagates, as libraries do when
      a write fails midway (pandas closes its handle in an ``__exit__``): a half-written
      CSV never replaces the good one. The exception that was already being handled
      when the file was opened does not count, so a file written completely inside an
      ``except`` block (a fallback) is committed. The rule's limit: a file opened
      *before* an exception and closed by hand while that exception is handled (``f =
      fs.open(...)`` ... ``except E: f.close()``) is discarded too; a warning naming
      it is logged (``jupyter_volume.fsspec``). Close it after the ``except`` block,
      or use ``with``, to commit it.

    Not picklable (fsspec's own writing files are not either): pickling raises TypeError.
    """

    folder = False  # a file (what a transaction holds may also be a folder to make)

    def __init__(
        self, fs: VolumeFileSystem, path: str, mode: str, autocommit: bool, initial: Any = b""
    ) -> None:
        super().__init__()
        self.fs = fs
        self.path = path
        self.mode = mode
        self.autocommit = autocommit
        self.volume, _ref, self.vpath = parse_url(path)
        self.exclusive = "x" in mode
        #: None: the default permission bits (what BatchUpload.put_file gives a file object)
        self.perm: int | None = None
        self.mtime_ns: int | None = None  # None: the commit's time, as for any new write
        #: True once dropped by an exception: the transaction skips it
        self.discarded = False
        # the exception being handled where the file was opened: closing while only that
        # one is in flight is not a failed write (a fallback inside `except`)
        self._exc_at_open: BaseException | None = sys.exc_info()[1]
        # closed by discard(), on close or at the end of the transaction
        self._tmp: Any = tempfile.TemporaryFile(prefix="jupyter-volume-write-")  # noqa: SIM115
        try:
            if isinstance(initial, bytes | bytearray | memoryview):
                self._tmp.write(initial)
            else:
                shutil.copyfileobj(initial, self._tmp, 1 << 20)
        except BaseException:
            self._tmp.close()
            raise
        self._done = False

    @property
    def name(self) -> str:  # type: ignore[override]
        """The path written (without ``volume://``)."""
        return self.path

    def writable(self) -> bool:
        """Always True."""
        return True

    def readable(self) -> bool:
        """Always False."""
        return False

    def seekable(self) -> bool:
        """True: a writer may go back and patch (e.g. a header) before closing."""
        return True

    def write(self, data: Any) -> int:
        """Append ``data`` (bytes-like) at the current position."""
        if self.closed:
            raise ValueError("I/O operation on closed file")
        return self._tmp.write(data)

    def tell(self) -> int:
        """The current position."""
        return self._tmp.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        """Move the position in what was written so far."""
        return self._tmp.seek(offset, whence)

    def flush(self) -> None:
        """Flush to the temporary file (nothing is committed before close)."""
        if not self.closed and not self._tmp.closed:
            self._tmp.flush()

    def source(self) -> Any:
        """The written bytes as a file at offset 0 (for the commit)."""
        self._tmp.flush()
        self._tmp.seek(0)
        return self._tmp

    def close(self) -> None:
        """Commit the file (unless a transaction collects it); then close it.

        Called while an exception propagates (other than one already being handled when
        the file was opened), it discards the file instead and logs a warning naming it:
        see the class docstring.
        """
        self._close(None)

    def _close(self, discard: bool | None) -> None:
        """Close; ``discard``: drop the bytes (None: decide from the exception in flight)."""
        if self.closed:
            return
        if discard is None:
            exc = sys.exc_info()[1]
            discard = exc is not None and exc is not self._exc_at_open
            if discard:
                logger.warning(
                    "%s://%s was closed while %s was raised: discarded, nothing committed "
                    "(close it after the except block, or write it inside `with`, to "
                    "commit it)",
                    self.fs.protocol,
                    self.path,
                    type(exc).__name__,
                )
        self._exc_at_open = None
        try:
            if discard:
                self.discarded = True
                self.discard()
            elif self.autocommit and not self._done:
                self.commit()
        finally:
            if self.autocommit:
                self.discard()
            super().close()

    def commit(self) -> None:
        """Make the written bytes one commit now."""
        if not self._done:
            self._done = True
            self.fs._commit_writes([self])

    def discard(self) -> None:
        """Drop the written bytes (the temporary file goes away)."""
        self._done = True
        try:
            self._tmp.close()
        except Exception:
            pass

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        # an exception in the block: commit nothing (also inside a transaction)
        self._close(exc_type is not None)

    def __reduce__(self) -> Any:
        raise TypeError(
            f"{self.fs.protocol}://{self.path} is open for writing: such a file cannot be "
            "pickled (files opened for reading can)"
        )


class _TextWriteFile(io.TextIOWrapper):
    """Text mode over a :class:`VolumeWriteFile`: an exception inside ``with`` commits
    nothing, as in binary mode (a plain TextIOWrapper's ``__exit__`` just closes)."""

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        buf = self.buffer
        if exc_type is not None and isinstance(buf, VolumeWriteFile):
            buf._close(True)  # before the wrapper flushes what it holds into it
        self.close()


def _reopen_reader(fs: VolumeFileSystem, path: str) -> Any:
    """Open ``path`` (``NAME@commit/inner``) again: what an unpickled reader is."""
    return fs.open(path, "rb")


#: Files read together by one ``cat`` of many paths (see VolumeFileSystem.cat), and the
#: largest file read so: a bigger one is read on its own (read together, a file's bytes
#: are held twice at the end, its ranges and their join)
_CAT_BATCH = 256
_CAT_TOGETHER_MAX = 1 << 20
#: Files a get() downloads at once (as `jupyter volume get`)
_GET_WORKERS = 8


class VolumeFileSystem(AbstractFileSystem):
    """fsspec file system over the volumes of one store (protocol ``volume``).

    Example::

        import fsspec
        fs = fsspec.filesystem("volume", store="s3://bucket/team")
        fs.pipe("volume://my-data/hello.txt", b"hi")
        fs.cat("volume://my-data/hello.txt")      # b"hi"
        fs.cat("volume://my-data@1/hello.txt")    # the same file at commit 1
    """

    protocol = "volume"
    root_marker = ""
    transaction_type = VolumeTransaction

    def __init__(
        self,
        store: str | os.PathLike[str] | Store | None = None,
        environment: str | None = None,
        **kwargs: Any,
    ) -> None:
        # per thread: a put() or pipe(dict) collecting its writes, and the transaction
        # (fsspec's base __init__ sets _intrans/_transaction, which live here)
        self._local = threading.local()
        super().__init__(store=store, environment=environment, **kwargs)
        self._base = _resolve_store(store)
        #: the environment these URLs point into ("" is the default one)
        self.environment = resolve_environment(environment)
        self._store = environment_store(self._base, self.environment)
        # Volume handles get the base store and the environment when they take one, so
        # they resolve the same view (and never apply $JUPYTER_VOLUME_ENV on top of it)
        self._vkw: dict[str, Any] = (
            {"store": self._base, "environment_name": self.environment}
            if _takes_environment()
            else {"store": self._store}
        )
        self._volumes: dict[str, Volume] = {}
        self._lock = threading.Lock()

    # fsspec keeps one transaction per file-system object, and fsspec caches one object
    # per set of options for the whole process: another thread's writes (a background
    # job, a pandas call) would join, and be rolled back with, this thread's transaction.
    # Here a transaction belongs to the thread that started it.
    @property
    def _intrans(self) -> bool:  # type: ignore[override]
        return getattr(self._local, "intrans", False)

    @_intrans.setter
    def _intrans(self, value: bool) -> None:
        self._local.intrans = value

    @property
    def _transaction(self) -> Any:  # type: ignore[override]
        return getattr(self._local, "transaction", None)

    @_transaction.setter
    def _transaction(self, value: Any) -> None:
        self._local.transaction = value

    def __repr__(self) -> str:
        env = f" environment={self.environment!r}" if self.environment else ""
        return f"<VolumeFileSystem {self._base.url}{env}>"

    @property
    def store(self) -> Store:
        """The store (environment view included) these URLs point into."""
        return self._store

    @property
    def fsid(self) -> str:
        """Names this store across sessions."""
        return f"volume-{self._store.url}"

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = os.fspath(path) if not isinstance(path, str) else path
        for prefix in (f"{cls.protocol}://", f"{cls.protocol}::"):
            if path.startswith(prefix):
                path = path[len(prefix) :]
        return path.strip("/")

    def unstrip_protocol(self, name: str) -> str:
        """``NAME/path`` -> ``volume://NAME/path``."""
        scheme = f"{self.protocol}://"
        return name if name.startswith(scheme) else f"{scheme}{name}"

    # -- handles ----------------------------------------------------------------------------
    #: what the top-level names are, in messages
    kind = "volume"
    _deleter = "Volume.objects.delete"

    def _volume(self, name: str) -> Volume:
        """The handle reads and writes of top-level name ``name`` go through (a new one
        once the cached one found its volume gone: the name may name another now)."""
        with self._lock:
            vol = self._volumes.get(name)
            if vol is None or vol._gone is not None:
                vol = self._volumes[name] = Volume.from_name(name, **self._vkw)
            return vol

    def _current(self, name: str) -> Volume:
        """:meth:`_volume`, checked to still be the volume ``name`` names (as often as
        every handle checks: each time on a local folder, at most every 2 s on S3).

        File-system objects are cached for the life of the process: without this, once
        the volume was deleted elsewhere, or renamed and its name given to a new volume,
        every ``volume://NAME/...`` call would fail for good (or, before handles
        checked, read and write the old volume)."""
        vol = self._volume(name)
        try:
            vol._check_alive()
        except NotFoundError:
            if vol._gone is None:
                raise  # no such volume (yet): the caller decides
            vol = self._volume(name)
        return vol

    def _create(self, name: str, allow_existing: bool) -> None:
        """Create the volume ``name`` (AlreadyExistsError unless ``allow_existing``)."""
        Volume.objects.create(name, allow_existing=allow_existing, **self._vkw)

    def _names(self) -> list[str]:
        """The top-level names: every volume of the store's environment."""
        return [v.name for v in Volume.objects.list(**self._vkw)]

    def _snapshot(self, name: str, ref: str | None) -> tuple[Volume, int]:
        """The volume and the commit one call reads: ``ref``'s, else the newest.

        Every read of one call names this commit, so a call that looks twice (``ls``:
        the path, then its entries) never mixes two commits. The newest commit is
        pinned for this thread's reads (``Volume._pin_head``): one look at the store per
        call, not one more per read at it.
        """
        vol = self._current(name)
        if ref is None:
            return vol, vol._pin_head()
        vol._unpin()  # an older commit: every read checks that gc has not expired it
        if ref.isdigit():
            return vol, int(ref)
        tags = vol.tags()
        if ref not in tags:
            raise NotFoundError(f"volume {name!r} has no commit or tag named {ref!r}")
        return vol, tags[ref]

    def _writable(self, path: str) -> tuple[Volume, str]:
        """The volume and inner path of a path about to be written; creates the volume if
        missing. Refuses ``@REF`` paths and the store's root."""
        name, ref, inner = parse_url(path)
        scheme = f"{self.protocol}://"
        if not name:
            raise InvalidError(f"{scheme} is the store: write into a {self.kind}, {scheme}NAME/...")
        if ref is not None:
            raise InvalidError(
                f"{scheme}{name}@{ref}/{inner} is read-only: it names commit {ref!r} of "
                f"{self.kind} {name!r}; write to {scheme}{name}/{inner} instead"
            )
        try:
            vol = self._current(name)
            vol.info()
        except NotFoundError:
            self._create(name, allow_existing=True)
            vol = self._volume(name)
        return vol, inner

    def _full(self, name: str, ref: str | None, inner: str) -> str:
        head = f"{name}@{ref}" if ref is not None else name
        return f"{head}/{inner}" if inner else head

    def _info(
        self, name: str, ref: str | None, fe: FileEntry, commit: int | None, islink: bool = False
    ) -> dict:
        """fsspec's info dict of ``fe``; ``islink``: ``fe`` describes a link's target."""
        kind = "directory" if fe.type == FileEntryType.DIRECTORY else "file"
        if fe.type == FileEntryType.SYMLINK:
            kind = "other"  # a link that cannot be followed (out of the volume, dangling)
        out = {
            "name": self._full(name, ref, fe.path),
            "size": fe.size if kind != "directory" else 0,
            "type": kind,
            "mtime": fe.mtime,
            "commit": commit,
        }
        if islink or fe.type == FileEntryType.SYMLINK:
            out["islink"] = True
        return out

    # -- reading: metadata ----------------------------------------------------------------
    def info(self, path: str, **kwargs: Any) -> dict:
        """Name, size, type (file/directory), mtime and the commit read, of one path."""
        name, ref, inner = parse_url(path)
        if not name:
            return {"name": "", "size": 0, "type": "directory"}
        vol, at = self._snapshot(name, ref)
        fe, islink = _followed(vol, vol.stat(inner or "/", at=at), at)
        out = self._info(name, ref, fe, at, islink)
        if not inner:
            out["name"] = self._full(name, ref, "")
            # the root has no entry of its own: it changes with every commit
            out["mtime"] = int(vol._record(at).time)
        return out

    def exists(self, path: str, **kwargs: Any) -> bool:
        """True if the path exists (store errors are raised, not read as 'missing')."""
        try:
            self.info(path)
            return True
        except (FileNotFoundError, InvalidError):
            return False

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list:
        """The entries of a folder (or the file itself); at the top, the volumes."""
        name, ref, inner = parse_url(path)
        if not name:
            out: list[dict] = [{"name": n, "size": 0, "type": "directory"} for n in self._names()]
        else:
            vol, at = self._snapshot(name, ref)
            seq = at
            fe, islink = _followed(vol, vol.stat(inner or "/", at=at), at)
            if fe.type != FileEntryType.DIRECTORY:
                out = [self._info(name, ref, fe, seq, islink)]
            else:
                # the folder's own path: a link to a folder lists the folder's entries
                # under the link's path, as a local file system does
                where = vol._follow(inner, at)[0] if islink else inner
                out = []
                for e in vol.listdir(where or "/", at=at, glob=False):
                    if islink:
                        e = dataclasses.replace(e, path=f"{inner}/{e.path.rsplit('/', 1)[-1]}")
                    e, linked = _followed(vol, e, at)
                    out.append(self._info(name, ref, e, seq, linked))
        out.sort(key=lambda d: d["name"])
        return out if detail else [d["name"] for d in out]

    def find(
        self,
        path: str,
        maxdepth: int | None = None,
        withdirs: bool = False,
        detail: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Every file below ``path`` (and folders with ``withdirs``), from one commit."""
        name, ref, inner = parse_url(path)
        if maxdepth is not None and maxdepth < 1:
            raise ValueError("maxdepth must be at least 1")
        if not name:
            return super().find(path, maxdepth=maxdepth, withdirs=withdirs, detail=detail)
        try:
            vol, at = self._snapshot(name, ref)
            seq = at
            top = vol.stat(inner or "/", at=at)
        except FileNotFoundError:
            return {} if detail else []
        out: dict[str, dict] = {}
        if top.type != FileEntryType.DIRECTORY:
            info = self._info(name, ref, top, seq)
            out[info["name"]] = info
        else:
            if withdirs:
                info = self._info(name, ref, top, seq)
                info["name"] = self._full(name, ref, inner)
                out[info["name"]] = info
            base = inner.count("/") + 1 if inner else 0
            for e in vol.iterdir(inner or "/", recursive=True, at=at, glob=False):
                if maxdepth is not None and e.path.count("/") + 1 - base > maxdepth:
                    continue
                # a link is described as what it points at (never walked into: find -P)
                e, islink = _followed(vol, e, at)
                if e.type == FileEntryType.DIRECTORY and not withdirs:
                    continue
                info = self._info(name, ref, e, seq, islink)
                out[info["name"]] = info
        names = sorted(out)
        return {n: out[n] for n in names} if detail else names

    def du(
        self,
        path: str,
        total: bool = True,
        maxdepth: int | None = None,
        withdirs: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Bytes of the files below ``path`` (a sum, or per path with ``total=False``)."""
        found = self.find(path, maxdepth=maxdepth, withdirs=withdirs, detail=True)
        sizes = {n: i["size"] for n, i in found.items()}
        return sum(sizes.values()) if total else sizes

    def modified(self, path: str) -> datetime:
        """The file's modification time (UTC)."""
        return datetime.fromtimestamp(self.info(path)["mtime"], tz=UTC)

    def checksum(self, path: str) -> int:
        """A number naming the file's contents: equal for equal bytes in any path or
        commit (from its chunk hashes; nothing is downloaded)."""
        info = self.info(path)
        if info["type"] != "file":
            return super().checksum(path)
        with self._reader(path) as f:
            return int(f.content_id[:32], 16)

    def ukey(self, path: str) -> str:
        """The file's content hash (see :meth:`checksum`)."""
        with self._reader(path) as f:
            return f.content_id

    # -- reading: bytes ---------------------------------------------------------------------
    def _reader(self, path: str) -> Any:
        name, ref, inner = parse_url(path)
        if not name or not inner:
            raise IsAFolderError(f"{path!r} is a {self.kind} or the store, not a file")
        vol, at = self._snapshot(name, ref)
        return self._reader_at(vol, name, at, inner, path)

    def _reader_at(self, vol: Volume, name: str, at: int, inner: str, path: str) -> Any:
        """A reader of ``inner`` at commit ``at`` of ``vol`` (``path`` names it in errors)."""
        try:
            reader = vol.open(inner, "rb", at=at)
        except InvalidError as e:
            if vol.stat(inner, at=at).type == FileEntryType.DIRECTORY:
                raise IsAFolderError(f"{path} is a folder, not a file") from e
            raise
        # pickled, it opens the same commit again (and seeks where this one was)
        reader.reopen = (_reopen_reader, (self, self._full(name, str(at), inner)))
        return reader

    def cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        """Bytes ``[start, end)`` of one file (negative: from its end); only the chunks
        holding them are fetched.

        Of the newest commit (``NAME@REF/...``: of that one); once this process knows a
        commit of the volume, a range of up to 4 MiB is read at it while the store is
        asked for the newest, and read again only if a newer one has landed
        (``Volume._read_newest``): one round trip, as a plain object GET."""
        name, ref, inner = parse_url(path)
        if not (name and inner and ref is None):
            with self._reader(path) as f:
                s, e = _span(start, end, f.size)
                return f.read_range(s, e)
        vol = self._current(name)

        def read(at: int, most: int | None) -> bytes | None:
            """The range at commit ``at``; None, unread, if it is over ``most`` bytes."""
            with self._reader_at(vol, name, at, inner, path) as f:
                s, e = _span(start, end, f.size)
                return f.read_range(s, e) if most is None or e - s <= most else None

        return vol._read_newest(read)

    def get(
        self,
        rpath: Any,
        lpath: Any,
        recursive: bool = False,
        callback: Any = DEFAULT_CALLBACK,
        maxdepth: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Copy files (and folders, with ``recursive``) to the local disk, each remote
        path paired with its local one as fsspec's ``get`` pairs them.

        The files of one volume and commit are downloaded together, as ``jupyter volume
        get`` does: small files many at a time (neighbouring chunks in one ranged read),
        big ones as :meth:`get_file` writes them, up to eight files at once. Each file
        lands whole, through a temporary file beside it, or not at all; a failure stops
        the files not started yet. ``callback`` counts the paths copied, as fsspec's does.
        """
        pairs: list[tuple[str, Any]] = []
        self._local.gets = pairs  # get_file, called by fsspec's get per path, lists it here
        try:
            super().get(rpath, lpath, recursive=recursive, maxdepth=maxdepth, **kwargs)
        finally:
            self._local.gets = None
        callback.set_size(len(pairs))
        self._download(pairs, landed=functools.partial(callback.relative_update, 1))

    def get_file(
        self,
        rpath: str,
        lpath: Any = None,
        callback: Any = DEFAULT_CALLBACK,
        outfile: Any = None,
        **kwargs: Any,
    ) -> None:
        """Copy one file (or make one folder) to local path ``lpath``.

        Written as a mount writes a file: ranged reads in parallel, each checked and
        written in place by the download threads, the file's disk reserved first, into a
        temporary file beside ``lpath`` that replaces it only once complete (a failed
        copy leaves ``lpath`` as it was; a file there is replaced, not written through).
        It keeps the file's modification time, as ``jupyter volume get`` does.
        ``callback`` is told the file's size, then of the bytes as they land. A copy
        into a file object (``outfile``, or ``lpath`` one) streams as fsspec does.
        """
        if outfile is not None or isfilelike(lpath):
            return super().get_file(rpath, lpath, callback=callback, outfile=outfile, **kwargs)
        gets = getattr(self._local, "gets", None)
        if gets is not None:  # part of this thread's get(): downloaded with the others
            gets.append((rpath, lpath))
            return None
        self._download([(rpath, lpath)], sized=callback)
        return None

    def _download(
        self,
        pairs: list[tuple[str, Any]],
        *,
        landed: Callable[[], Any] | None = None,
        sized: Any = None,
    ) -> None:
        """Copy each ``(remote path, local path)`` of ``pairs``: a folder is made, a file
        written by ``transfer._write_files`` at one commit per volume and ref.

        ``landed()`` is called as each path is done (from any thread, one at a time);
        ``sized``, an fsspec callback, is told the files' total size and each byte."""
        groups: dict[tuple[str, str | None], list[tuple[str, Path]]] = {}
        files: list[tuple[Volume, int, list[tuple[FileEntry, Path]]]] = []
        done = one_at_a_time(landed if landed is not None else lambda: None)
        for rpath, lpath in pairs:
            name, ref, inner = parse_url(self._strip_protocol(rpath))
            groups.setdefault((name, ref), []).append((inner, Path(os.fspath(lpath))))
        for (name, ref), items in groups.items():
            if not name:  # the store's root: a folder
                for _inner, target in items:
                    target.mkdir(parents=True, exist_ok=True)
                    done()
                continue
            vol, at = self._snapshot(name, ref)
            root = vol._root(at)  # one look at the store for every path of the group
            mine: list[tuple[FileEntry, Path]] = []
            for inner, target in items:
                fe = vol._stat(inner, at, True, root)
                if fe.type == FileEntryType.DIRECTORY:
                    target.mkdir(parents=True, exist_ok=True)
                    done()
                else:
                    mine.append((fe, target))
            files.append((vol, at, mine))
        if sized is not None:
            sized.set_size(sum(fe.size for _v, _a, mine in files for fe, _t in mine))
        for parent in dict.fromkeys(t.parent for _v, _a, mine in files for _fe, t in mine):
            parent.mkdir(parents=True, exist_ok=True)
        progress = sized.relative_update if sized is not None else None
        for vol, at, mine in files:
            _write_files(vol, mine, at, progress, _GET_WORKERS, landed=done)

    def cat(
        self, path: Any, recursive: bool = False, on_error: str = "raise", **kwargs: Any
    ) -> Any:
        """Contents of one or more files (a dict ``{path: bytes}`` for several, as fsspec
        says; ``on_error`` "raise", "omit" or "return"). Whole files of one volume are
        read together: one look at the newest commit, neighbouring chunks in one ranged
        read (fsspec's mapper asks for many keys so: ``getitems``). Each read on its own asked for
        the newest commit, the file's entry and its bytes: three requests a file."""
        paths = self.expand_path(path, recursive=recursive, **kwargs)
        if not (len(paths) > 1 or isinstance(path, list) or paths[0] != self._strip_protocol(path)):
            return self.cat_file(paths[0], **kwargs)
        ranged = kwargs.get("start") is not None or kwargs.get("end") is not None
        got = {} if ranged else self._cat_whole(paths)
        out: dict[str, Any] = {}
        for p in paths:
            if p in got:
                out[p] = got[p]
                continue
            try:  # not read together (a folder, a link, missing): as cat_file says
                out[p] = self.cat_file(p, **kwargs)
            except Exception as e:
                if on_error == "raise":
                    raise
                if on_error == "return":
                    out[p] = e
        return out

    def _cat_whole(self, paths: list[str]) -> dict[str, bytes]:
        """The whole contents of the regular files of up to 1 MiB among ``paths``, read
        together per volume and commit (see :meth:`cat`); the others (and any group whose
        read failed) are left out, for :meth:`cat_file` to read or explain one by one."""
        groups: dict[tuple[str, str | None], list[tuple[str, str]]] = {}
        for p in paths:
            name, ref, inner = parse_url(p)
            if name and inner:
                groups.setdefault((name, ref), []).append((p, inner))
        out: dict[str, bytes] = {}
        for (name, ref), items in groups.items():
            try:
                vol, at = self._snapshot(name, ref)
                for i in range(0, len(items), _CAT_BATCH):
                    part = items[i : i + _CAT_BATCH]
                    datas = vol._read_stored([inner for _p, inner in part], at, _CAT_TOGETHER_MAX)
                    out.update(
                        (p, d) for (p, _i), d in zip(part, datas, strict=True) if d is not None
                    )
            except Exception:  # noqa: BLE001 - each path is read (and its error told) alone
                continue
        return out

    def cat_ranges(
        self,
        paths: list[str],
        starts: Any,
        ends: Any,
        max_gap: int | None = None,
        on_error: str = "return",
        **kwargs: Any,
    ) -> list:
        """Byte ranges of one or more files: each file is opened once and the chunks its
        ranges need are fetched together."""
        if not isinstance(paths, list):
            raise TypeError("paths must be a list")
        n = len(paths)
        starts = starts if isinstance(starts, list) else [starts] * n
        ends = ends if isinstance(ends, list) else [ends] * n
        if len(starts) != n or len(ends) != n:
            raise ValueError("paths, starts and ends must have the same length")
        out: list[Any] = [None] * n
        by_path: dict[str, list[int]] = {}
        for i, p in enumerate(paths):
            by_path.setdefault(self._strip_protocol(p), []).append(i)
        for p, idxs in by_path.items():
            try:
                with self._reader(p) as f:
                    spans = [_span(starts[i], ends[i], f.size) for i in idxs]
                    for i, data in zip(idxs, f.read_ranges(spans), strict=True):
                        out[i] = data
            except Exception as e:
                if on_error != "return":
                    raise
                for i in idxs:
                    out[i] = e
        return out

    def open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        cache_options: dict | None = None,
        compression: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Open a file: ``rb`` reads one commit; ``wb``/``xb``/``ab`` (and text ``w``,
        ``x``, ``a``) write one commit on close, nothing if the ``with`` block raises."""
        if "b" not in mode and "r" not in mode:
            text = {k: kwargs.pop(k) for k in ("encoding", "errors", "newline") if k in kwargs}
            f = self.open(
                path,
                mode.replace("t", "") + "b",
                block_size=block_size,
                cache_options=cache_options,
                compression=compression,
                **kwargs,
            )
            return _TextWriteFile(f, **text)
        return super().open(
            path,
            mode,
            block_size=block_size,
            cache_options=cache_options,
            compression=compression,
            **kwargs,
        )

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict | None = None,
        **kwargs: Any,
    ) -> Any:
        path = self._strip_protocol(path)
        if mode == "rb":
            return self._reader(path)
        if mode not in ("wb", "xb", "ab"):
            raise InvalidError(f"unsupported mode {mode!r}: use rb, wb, xb or ab")
        _vol, inner = self._writable(path)
        if not inner:
            raise IsAFolderError(f"{path!r} is a {self.kind}, not a file: give a file path")
        try:
            kind = self.info(path)["type"]
        except FileNotFoundError:
            kind = None
        if kind == "directory":
            raise IsAFolderError(f"{path} is a folder: a file cannot replace it")
        # what this thread's transaction wrote to the path so far counts as its contents
        pending = self._pending_for(*parse_url(path)[::2])
        if pending is not None and pending.folder:
            raise IsAFolderError(f"{path} is a folder (made in this transaction)")
        if mode == "xb" and (kind is not None or pending is not None):
            raise AlreadyExistsError(f"{path} already exists (mode 'xb')")
        if mode != "ab" or (kind is None and pending is None):
            return VolumeWriteFile(self, path, mode, autocommit)
        if pending is None:
            with self._reader(path) as r:
                return VolumeWriteFile(self, path, mode, autocommit, r)
        if isinstance(pending, VolumeWriteFile) and not pending.closed:
            raise InvalidError(f"{path} is still open for writing in this transaction")
        src = pending.source()
        if not isinstance(src, str):
            return VolumeWriteFile(self, path, mode, autocommit, src)
        with open(src, "rb") as local:  # a local file a put() of this call names
            return VolumeWriteFile(self, path, mode, autocommit, local)

    # -- writing ----------------------------------------------------------------------------
    def _pending_writes(self) -> list[Any]:
        """This thread's writes waiting for the end of its put() batch or transaction."""
        out = list(getattr(self._local, "batch", None) or ())
        if self._intrans:
            out.extend(self.transaction.files)
        return out

    def _pending_for(self, volume: str, vpath: str) -> Any:
        """The last write of ``volume``/``vpath`` this thread's transaction (or put()
        batch) holds, None if there is none (a discarded one does not count)."""
        found = None
        for w in self._pending_writes():
            if w.volume == volume and w.vpath == vpath and not w.discarded:
                found = w
        return found

    def _stage(self, pending: _Pending) -> bool:
        """Hand a write to the open transaction or put() batch; False if there is none.

        An exclusive write (``mode="create"``) to a path already written there raises
        AlreadyExistsError, as it would once that write is committed."""
        batch = getattr(self._local, "batch", None)
        if batch is None and not self._intrans:
            return False
        if pending.exclusive and self._pending_for(pending.volume, pending.vpath) is not None:
            raise AlreadyExistsError(
                f"{pending.volume}/{pending.vpath} already exists (written earlier in this "
                "transaction)"
            )
        (batch if batch is not None else self.transaction.files).append(pending)
        return True

    def _commit_writes(self, writes: Iterable[Any]) -> None:
        """Commit pending writes: one commit per volume; the last write of a path wins.

        Every volume's data is staged and every volume's checks pass before the first
        commit, so a refused write (a file onto a folder, an exclusive create onto a file
        that exists) commits nothing in any volume. The commits are still one per volume:
        a store failure during the second leaves the first committed.
        """
        by_volume: dict[str, dict[str, Any]] = {}
        for w in writes:
            if not w.discarded:
                by_volume.setdefault(w.volume, {})[w.vpath] = w
        with contextlib.ExitStack() as stack:
            staged = []
            for name, items in by_volume.items():
                vol, _ = self._writable(name)
                exclusive = [p for p, w in items.items() if w.exclusive]
                force = len(exclusive) < len(items) or not exclusive
                batch = stack.enter_context(vol.batch_upload(force=force))
                for p, w in items.items():
                    if w.folder:
                        batch._add_folder(p)
                    else:
                        batch.put_file(w.source(), p, mode=w.perm, mtime_ns=w.mtime_ns)
                # BatchUpload's check is all-or-nothing: with some exclusive writes among
                # others, check the exclusive ones here
                folders = [p for p, w in items.items() if w.folder]
                staged.append((name, vol, batch, exclusive if force else [], folders))
            for name, vol, batch, exclusive, folders in staged:
                for p in exclusive:
                    if self.exists(f"{name}/{p}"):
                        raise AlreadyExistsError(f"{name}/{p} already exists")
                for p in folders:
                    # a folder never replaces a file (makedirs refuses it too)
                    if self.isfile(f"{name}/{p}"):
                        raise AlreadyExistsError(f"{name}/{p} is a file, not a folder")
                if len(staged) > 1:
                    # the check each batch runs anyway when it commits (against the head
                    # it commits onto), run for every volume before any of them commits;
                    # one volume's batch needs no early run
                    batch._check_conflicts(vol._repo.head().root)
            # leaving the stack commits each volume (a raise above aborts them all)

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        """Write ``value`` to ``path`` as one commit (``mode="create"``: fail if it exists)."""
        path = self._strip_protocol(path)
        _vol, inner = self._writable(path)
        name = parse_url(path)[0]
        pending = _Pending(name, inner, bytes(value), exclusive=mode == "create")
        if not self._stage(pending):
            self._commit_writes([pending])

    def pipe(self, path: Any, value: Any = None, **kwargs: Any) -> None:
        """Write one file, or a ``{path: bytes}`` dict of them as one commit per volume."""
        with self._batch():
            super().pipe(path, value, **kwargs)

    def put_file(
        self, lpath: str, rpath: str, callback: Any = None, mode: str = "overwrite", **kwargs: Any
    ) -> None:
        """Upload one local file (streamed) as one commit; a local folder makes a folder."""
        rpath = self._strip_protocol(rpath)
        if os.path.isdir(lpath):
            self._put_folder(rpath)
            return
        _vol, inner = self._writable(rpath)
        name = parse_url(rpath)[0]
        if self._intrans and getattr(self._local, "batch", None) is None:
            # the transaction commits at the end of the block: copy the file as it is
            # now (to a local temporary file, so memory stays bounded), not what the
            # path holds by then
            tmp, perm, mtime_ns = _spool(lpath)
            pending = _Pending(name, inner, tmp, mode == "create", perm, mtime_ns)
        else:
            pending = _Pending(name, inner, os.fspath(lpath), mode == "create")
        if not self._stage(pending):
            self._commit_writes([pending])

    def _put_folder(self, rpath: str) -> None:
        """The folder of a put(): made with the batch's (or transaction's) other writes,
        in its one commit; alone, as makedirs makes it."""
        name, ref, inner = parse_url(rpath)
        batch = getattr(self._local, "batch", None)
        if (batch is None and not self._intrans) or ref is not None or not inner:
            self.makedirs(rpath, exist_ok=True)  # a new volume, or not part of a batch
            return
        if self._folder_there(rpath):
            return
        _vol, inner = self._writable(rpath)
        self._stage(_Pending(name, inner, b"", exclusive=False, folder=True))

    def put(self, lpath: Any, rpath: Any, recursive: bool = False, **kwargs: Any) -> None:
        """Upload local files; all the files of one call become one commit per volume."""
        with self._batch():
            super().put(lpath, rpath, recursive=recursive, **kwargs)

    @contextlib.contextmanager
    def _batch(self) -> Iterator[None]:
        """Collect this thread's writes and commit them together at the end (one commit
        per volume); inside a transaction or an outer batch, they join that instead."""
        if getattr(self._local, "batch", None) is not None or self._intrans:
            yield
            return
        self._local.batch = []
        try:
            yield
        except BaseException:
            self._local.batch = None
            raise
        writes, self._local.batch = self._local.batch, None
        if writes:
            self._commit_writes(writes)

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """Make an empty folder (one commit); at the top level, a new volume."""
        path = self._strip_protocol(path)
        name, ref, inner = parse_url(path)
        if not name:
            raise InvalidError(f"{self.protocol}:// is the store itself: it always exists")
        if ref is None and not inner:
            self._create(name, allow_existing=False)
            return
        vol, inner = self._writable(path)
        if not create_parents:
            parent = posixpath.dirname(inner)
            if parent and not self.isdir(f"{name}/{parent}"):
                raise NotFoundError(f"folder {name}/{parent} does not exist")
        vol.mkdir(inner)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        """Make a folder and its missing parents (one commit); ``exist_ok``: no error if
        the folder exists."""
        path = self._strip_protocol(path)
        name, ref, inner = parse_url(path)
        if self._folder_there(path):
            if not exist_ok:
                raise AlreadyExistsError(f"folder {path} already exists")
            return
        if ref is None and not inner and name:
            self._create(name, allow_existing=True)
            return
        self.mkdir(path)

    def _folder_there(self, path: str) -> bool:
        """True if folder ``path`` exists, False if nothing is there; AlreadyExistsError
        for a file (a folder is never made over one)."""
        try:
            info = self.info(path)
        except FileNotFoundError:
            return False
        if info["type"] != "directory":
            raise AlreadyExistsError(f"{path} is a file, not a folder")
        return True

    def rmdir(self, path: str) -> None:
        """Remove an empty folder (one commit). Raises FileNotFoundError if missing,
        NotADirectoryError for a file, OSError ENOTEMPTY (FolderNotEmptyError) if it
        holds anything."""
        path = self._strip_protocol(path)
        if self.info(path)["type"] != "directory":
            raise NotAFolderError(f"{path} is not a folder")
        if self.ls(path, detail=False):
            raise FolderNotEmptyError(f"folder {path} is not empty")
        self.rm(path)

    def rm_file(self, path: str) -> None:
        """Remove one file (one commit); a folder raises IsADirectoryError (use
        ``rmdir`` or ``rm(path, recursive=True)``)."""
        path = self._strip_protocol(path)
        if self.info(path)["type"] == "directory":
            raise IsAFolderError(
                f"{path} is a folder: remove it with rmdir, or rm(path, recursive=True)"
            )
        self.rm(path)

    def _rm(self, path: str) -> None:
        self.rm_file(path)

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        """Remove files (and folders with ``recursive``): one commit per volume.

        A folder that is not empty needs ``recursive=True``; a whole volume is never
        removed here (use ``Volume.objects.delete``).
        """
        paths = self.expand_path(path, recursive=recursive, maxdepth=maxdepth)
        infos = {p: self.info(p) for p in paths}
        if maxdepth is not None:
            # a folder below maxdepth may hold more than was listed: keep it unless all
            # of it goes
            listed = set(paths)
            paths = [
                p
                for p in paths
                if infos[p]["type"] != "directory"
                or all(q in listed for q in self.find(p, withdirs=True))
            ]
        by_volume: dict[str, list[str]] = {}
        for p in paths:
            name, ref, inner = parse_url(p)
            if ref is not None:
                raise InvalidError(f"{self.protocol}://{p} is read-only: it names a commit")
            if not inner:
                raise InvalidError(
                    f"refusing to remove {self.kind} {name!r} through fsspec: use "
                    f"{self._deleter}({name!r}) to delete it and its history"
                )
            if not recursive and infos[p]["type"] == "directory" and self.ls(p):
                raise FolderNotEmptyError(f"{p} is a folder that is not empty: pass recursive=True")
            by_volume.setdefault(name, []).append(inner)
        for name, inners in by_volume.items():
            self._volume(name).remove_paths(inners)

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        """Copy one file (within a volume: no data is copied) or make a folder."""
        path1, path2 = self._strip_protocol(path1), self._strip_protocol(path2)
        n1, r1, p1 = parse_url(path1)
        info = self.info(path1)
        vol2, p2 = self._writable(path2)
        n2 = parse_url(path2)[0]
        if info["type"] == "directory":
            self.makedirs(path2, exist_ok=True)
            return
        try:
            if self.info(path2)["type"] == "directory":
                raise AlreadyExistsError(f"cannot copy file {path1} onto folder {path2}")
        except FileNotFoundError:
            pass
        if n1 == n2 and r1 is None and not self._intrans:
            # one commit, the destination's missing folders included
            vol2._copy_files([p1], p2, recursive=False, make_parents=True)
            return
        # across volumes or out of an older commit: stream the bytes
        f = self._reader(path1)
        pending = _Pending(n2, p2, f, exclusive=False)
        if not self._stage(pending):
            try:
                self._commit_writes([pending])
            finally:
                f.close()

    def mv(
        self,
        path1: Any,
        path2: Any,
        recursive: bool = False,
        maxdepth: int | None = None,
        **kw: Any,
    ) -> None:
        """Move or rename one file or folder inside a volume as one commit (no data is
        copied); anything else (lists, globs, across volumes) copies, then removes.

        A source at ``NAME@REF`` is refused before anything is copied (a commit cannot
        lose a file): copy it out of the commit with ``cp`` instead."""
        for p in path1 if isinstance(path1, list | tuple) else [path1]:
            n, r, inner = parse_url(self._strip_protocol(p))
            if r is not None:
                raise InvalidError(
                    f"{self.protocol}://{self._full(n, r, inner)} is read-only: it names a "
                    f"commit, so it cannot be moved; copy it with cp instead"
                )
        simple = (
            isinstance(path1, str)
            and isinstance(path2, str)
            and maxdepth is None
            and "*" not in path1
            and "?" not in path1
            and "[" not in path1
        )
        if simple:
            s1, s2 = self._strip_protocol(path1), self._strip_protocol(path2)
            n1, r1, p1 = parse_url(s1)
            n2, r2, p2 = parse_url(s2)
            if n1 and n1 == n2 and r1 is None and p1 and not path2.endswith("/"):
                if s1 == s2:
                    return
                vol, p2 = self._writable(s2)
                self.info(s1)  # FileNotFoundError if missing
                # a missing destination folder is made in the same commit
                vol._move(p1, p2, overwrite=True, make_parents=True)
                return
        super().mv(path1, path2, recursive=recursive, maxdepth=maxdepth, **kw)


class NetworkFileSystemFS(VolumeFileSystem):
    """``volume-nfs://NAME/path``: network file systems through fsspec (protocol
    ``volume-nfs``).

    The same rules as ``volume://``, over :class:`~jupyter_volume.NetworkFileSystem`
    names (their own namespace: an NFS and a volume may share a name): every call sees
    the newest commit, every write is a commit that every other handle reads at once,
    ``NAME@REF`` reads history. Example::

        pd.read_csv("volume-nfs://team-cache/results/run-1.csv")
    """

    protocol = "volume-nfs"
    kind = "network file system"
    _deleter = "NetworkFileSystem.delete"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._nfs: dict[str, Any] = {}

    def _handle(self, name: str) -> Any:
        from .nfs import NetworkFileSystem

        with self._lock:
            nfs = self._nfs.get(name)
            if nfs is None or nfs._vol._gone is not None:  # see VolumeFileSystem._volume
                nfs = self._nfs[name] = NetworkFileSystem.from_name(
                    name, store=self._base, environment_name=self.environment
                )
            return nfs

    def _volume(self, name: str) -> Volume:
        # the NFS's own engine handle (it also keeps the NFS's retention policy running)
        return self._handle(name)._vol

    def _create(self, name: str, allow_existing: bool) -> None:
        from .nfs import NetworkFileSystem

        NetworkFileSystem.objects.create(
            name,
            allow_existing=allow_existing,
            store=self._base,
            environment_name=self.environment,
        )

    def _names(self) -> list[str]:
        from .nfs import NetworkFileSystem

        return [
            n.name
            for n in NetworkFileSystem.objects.list(
                store=self._base, environment_name=self.environment
            )
        ]


def _spool(lpath: Any) -> tuple[Any, int, int]:
    """A copy of local file ``lpath`` in a temporary file (at offset 0), its permission
    bits and its modification time (what a put outside a transaction stores too)."""
    tmp: Any = tempfile.TemporaryFile(prefix="jupyter-volume-put-")  # noqa: SIM115
    try:
        with open(lpath, "rb") as f:
            st = os.fstat(f.fileno())
            shutil.copyfileobj(f, tmp, 1 << 20)
        tmp.seek(0)
    except BaseException:
        tmp.close()
        raise
    return tmp, stat.S_IMODE(st.st_mode), st.st_mtime_ns


def _followed(vol: Volume, fe: FileEntry, at: int | None) -> tuple[FileEntry, bool]:
    """``fe`` as fsspec describes it: a link as what it points at (``True``: it was a
    link), as a local file system's ``info`` does; a link that cannot be followed (out
    of the volume, a loop, dangling) stays a link."""
    if fe.type != FileEntryType.SYMLINK:
        return fe, False
    try:
        return vol.stat(fe.path, at=at, follow_symlinks=True), True
    except (NotFoundError, InvalidError):
        return fe, False


def _span(start: int | None, end: int | None, size: int) -> tuple[int, int]:
    """fsspec's ``start``/``end`` (None, or negative from the end) as ``[s, e)``."""
    s = 0 if start is None else (max(0, size + start) if start < 0 else start)
    e = size if end is None else (size + end if end < 0 else end)
    return s, max(s, min(e, size))


def _resolve_store(store: str | os.PathLike[str] | Store | None) -> Store:
    """``store`` (a URL or a Store), else the configured default store (once per URL)."""
    return open_base(store)


def _takes_environment() -> bool:
    """True if Volume takes ``environment_name=`` (then it is given the base store)."""
    return "environment_name" in inspect.signature(Volume.__init__).parameters
