"""The public Python API: :class:`Volume`, shaped like ``modal.Volume``, plus history.

Layer: uses ``repository``, ``names`` and ``store``; front ends (magics, CLI, widgets,
server) call this and never the layers below. Never imports IPython or Jupyter server.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import io
import os
import re
import stat as stat_mod
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, TypeVar

from . import names, quiet
from ._bulk import bulk_step
from ._pools import beside, one_at_a_time
from .aio import aio
from .errors import AlreadyExistsError, ConflictError, InvalidError, NotFoundError
from .mount import Mount, _active_mount
from .names import check_name, normalize_path
from .objects import AliveCheck, detach_mount, ephemeral_volume, open_base, open_env
from .repository import DIR, FILE, LINK, CommitRecord, Entry, Repository, VerifyReport, Writer
from .results import (
    _KIND_TYPE,
    CommitInfo,
    DiffEntry,
    DiskUsage,
    FileEntry,
    FileEntryType,
    VolumeInfo,
)
from .store import Store

if TYPE_CHECKING:
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


T = TypeVar("T")

_repos: dict[tuple[str, str], Repository] = {}
_repos_lock = threading.Lock()


def _swept_beside(store: Store, work: Callable[[], T]) -> T:
    """``work()``, with the dead ephemeral volumes of ``store`` cleared away beside it
    (one listing when there are none) instead of before it; the sweep's error is
    raised as when it ran first."""
    with beside(names.sweep_ephemeral, store) as sweeping:
        out = work()
    sweeping.result()
    return out


def _repository(store: Store, vol_id: str) -> Repository:
    """One Repository per (store, volume) in a process, so caches and locks are shared."""
    key = (store.url, vol_id)
    with _repos_lock:
        repo = _repos.get(key)
        if repo is None:
            repo = Repository.take_created(store, vol_id) or Repository(store, vol_id)
            _repos[key] = repo
        return repo


def _open_base(store: Store | str | os.PathLike[str] | None, *, create: bool = False) -> Store:
    """The store named by ``store`` (default: the configured one), opened once per URL.

    A store named explicitly must exist unless ``create``: a typo in ``store=`` is an
    error, never a new empty store. The default store is created on first use.
    """
    return open_base(store, must_exist=not create, remember_existing=True)


def _open(
    store: Store | str | os.PathLike[str] | None,
    environment_name: str | None = None,
    *,
    create: bool = False,
) -> tuple[Store, str, Store]:
    """``(base store, environment, the environment's view of the store)``."""
    return open_env(_open_base(store, create=create), environment_name)


_READ_ONLY = "read-only volume can not be written to: this handle came from vol.read_only()"
_MAX_LINK_HOPS = 40  # as Linux's ELOOP limit
#: The most a read of the newest commit fetches before it knows that the commit it reads
#: is the newest (see :meth:`Volume._read_newest`): past this, fetching a changed file's
#: old bytes for nothing would cost more than the round trip saved (unchanged chunks
#: come from the chunk cache when read again).
GUESS_MAX = 4 << 20
# A local file that changes while an upload reads it is read again, after these pauses
# (seconds): a writer finishing a save gets about a second before the upload gives up.
_REREAD_PAUSES = (0.05, 0.2, 0.8)
# What copy_to leaves behind: change sets waiting for their writers' next commit (a copy
# must not carry them into its own) and NFS file locks (held by processes on the source).
_NOT_COPIED = ("intents/", "locks/")


@dataclass(frozen=True)
class _CopyResult:
    """What :meth:`Volume.copy_to` did: ``state`` is "copied" (a new copy), "updated" (an
    earlier copy brought up to date) or "current" (it had every commit already)."""

    volume: Volume
    state: str
    commits: int  # commit records written to the copy


def _parent_path(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def _local_file(fileobj: Any) -> int | None:
    """The descriptor of ``fileobj`` if it is a local regular file open for binary
    writing, not appending (positional writes would land at its end), else None."""
    if not isinstance(fileobj, io.FileIO | io.BufferedWriter | io.BufferedRandom):
        return None
    try:
        if not fileobj.writable():
            return None
        fd = fileobj.fileno()
        if not stat_mod.S_ISREG(os.fstat(fd).st_mode):
            return None
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND:
            return None
    except (OSError, ValueError):  # closed, or no descriptor after all
        return None
    return fd


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


def _timestamp(when: datetime | str | float | None) -> float | None:
    """Seconds since the epoch of a datetime, an ISO date/time string or a number."""
    if when is None or isinstance(when, (int, float)):
        return when
    if isinstance(when, str):
        try:
            when = datetime.fromisoformat(when)
        except ValueError:
            raise InvalidError(
                f"created_before must be a datetime or an ISO date like 2025-01-01, got {when!r}"
            ) from None
    if not isinstance(when, datetime):
        raise InvalidError(f"created_before must be a datetime or an ISO date, got {when!r}")
    if when.tzinfo is None:
        when = when.astimezone()  # a naive time is local time, as Modal reads it
    return when.timestamp()


class _Objects:
    """``Volume.objects``: create, list and delete volumes by name."""

    @aio
    def create(
        self,
        name: str,
        *,
        version: int | None = None,
        allow_existing: bool = False,
        environment_name: str | None = None,
        store: Store | str | None = None,
    ) -> None:
        """Create a volume. Raises AlreadyExistsError unless ``allow_existing``.

        ``version`` (1 or 2) is recorded; with ``allow_existing`` it must match the
        existing volume's. Returns nothing: use :meth:`Volume.from_name` for a handle.
        """
        check_name(name)
        _, _, s = _open(store, environment_name, create=True)
        names.create(s, name, allow_existing=allow_existing, version=version)

    @aio
    def list(
        self,
        *,
        max_objects: int | None = None,
        created_before: datetime | str | None = None,
        environment_name: str | None = None,
        store: Store | str | None = None,
    ) -> list[Volume]:
        """Every named volume of the environment, newest first (as Modal orders them).

        ``max_objects`` limits the count; ``created_before`` (a datetime or an ISO date
        string) keeps only volumes created before it. Ephemeral volumes are not listed.
        Expired ephemeral volumes of dead owners are reclaimed on the way.
        """
        if max_objects is not None and max_objects < 0:
            raise InvalidError("max_objects cannot be negative")
        before = _timestamp(created_before)
        base, env, s = _open(store, environment_name)
        metas = sorted(
            _swept_beside(s, lambda: names.list_volumes(s)), key=lambda m: (-m.created_at, m.name)
        )
        if before is not None:
            # compared as VolumeInfo shows it (microseconds), so info().created_at works
            metas = [
                m
                for m in metas
                if datetime.fromtimestamp(m.created_at, tz=UTC).timestamp() < before
            ]
        if max_objects is not None:
            metas = metas[:max_objects]
        return [
            Volume(m.name, store=base, environment_name=env, _meta=m)  # type: ignore[arg-type]
            for m in metas
        ]

    @aio
    def delete(
        self,
        name: str,
        *,
        allow_missing: bool = False,
        environment_name: str | None = None,
        store: Store | str | None = None,
    ) -> None:
        """Delete a volume and all its history. Raises NotFoundError unless ``allow_missing``."""
        check_name(name)
        try:
            _, _, s = _open(store, environment_name)
            meta = names.resolve(s, name)
        except NotFoundError:
            if allow_missing:
                return
            raise

        detach_mount(s, meta.id)
        names.delete(s, name, allow_missing=allow_missing)


class _EitherContext:
    """A blocking context manager that also works with ``async with`` (run off the loop),
    as Modal's context managers do."""

    def __init__(self, cm: Any) -> None:
        self._cm = cm

    def __enter__(self) -> Any:
        return self._cm.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        return self._cm.__exit__(*exc)

    async def __aenter__(self) -> Any:
        import asyncio

        return await asyncio.to_thread(self._cm.__enter__)

    async def __aexit__(self, *exc: Any) -> Any:
        import asyncio

        return await asyncio.to_thread(self._cm.__exit__, *exc)


@dataclass(frozen=True)
class _MountOptions:
    """What :meth:`Volume.with_mount_options` configured."""

    read_only: bool = False
    sub_path: str | None = None


class Volume:
    """A named, versioned directory tree in an object store.

    Get one with :meth:`from_name` (lazy), :meth:`lookup` (checks it exists) or
    :meth:`from_id`, or a throwaway anonymous one with :meth:`ephemeral`. ``store`` is a
    URL or :class:`Store`; the default is ``$JUPYTER_VOLUME_STORE`` or a folder in the
    Jupyter data directory. ``environment_name`` picks a separate namespace of volumes in
    that store (default ``$JUPYTER_VOLUME_ENV``, else the default environment). Every
    method has an ``.aio`` form for async code (``await vol.listdir.aio("/")``).

    API reads (``listdir``, ``read_file``, ...) always see the newest commit; ``at=``
    reads an older one. A mounted folder keeps the snapshot it was mounted or reloaded
    at (see :meth:`reload`). Handles pickle (by name or id, store URL and environment),
    so they can be passed to multiprocessing, joblib or dask workers.

    Example::

        vol = Volume.from_name("my-data", create_if_missing=True)
        with vol.batch_upload() as batch:
            batch.put_file(io.BytesIO(b"hello"), "greeting.txt")
        b"".join(vol.read_file("greeting.txt"))  # b"hello"
    """

    objects = _Objects()

    def __init__(
        self,
        name: str | None,
        *,
        store: Store | str | None = None,
        environment_name: str | None = None,
        create_if_missing: bool = False,
        version: int | None = None,
        _meta: names.VolumeMeta | None = None,
        _id: str | None = None,
        _namespace: str = names.NAMES,
    ) -> None:
        if name is not None or _meta is None and _id is None:
            check_name(name)
        self.name = name
        # A handle opened by name stays valid while the name names its volume; one opened
        # by id (or an ephemeral one) while that volume exists (see _check_alive).
        self._by_name = name is not None
        self._namespace = _namespace
        self._alive: AliveCheck | None = None
        self._gone: str | None = None  # why, once _check_alive found the volume gone
        self._version = names.check_version(version)
        self._base_store, self.environment_name, self.store = _open(
            store, environment_name, create=create_if_missing
        )
        self._create_if_missing = create_if_missing
        self._meta = _meta
        self._id = _id if _meta is None else _meta.id
        self._lock = threading.RLock()
        # The newest commit the calling thread has read through this handle (``.seq``;
        # reads always look for a newer one): per thread, since another thread reading
        # or committing through the same handle would move a shared one mid-read.
        self._seen = threading.local()
        self._mount_options: _MountOptions | None = None
        self._read_only = False

    def __repr__(self) -> str:
        what = repr(self.name) if self.name is not None else f"id={self._id!r}"
        env = f", environment_name={self.environment_name!r}" if self.environment_name else ""
        return f"Volume({what}, store={self._base_store.url!r}{env})"

    def __reduce__(self) -> tuple[Any, ...]:
        # By reference, never by state: the receiving process opens the same store URL
        # (credentials come from its own environment) and resolves the name or id itself.
        ident = self.name if self.name is not None else None
        vol_id = self._id if ident is None else None
        opts = (self._mount_options, self._read_only)
        return (
            _unpickle_volume,
            (
                ident,
                vol_id,
                self._base_store.url,
                self.environment_name,
                self._version,
                opts,
                self._create_if_missing,  # a handle not used yet creates it where it is used
            ),
        )

    def _copy(self) -> Volume:
        new = Volume.__new__(Volume)
        new.__dict__.update(self.__dict__)
        new._lock = threading.RLock()
        new._seen = threading.local()
        return new

    # -- handles ---------------------------------------------------------------------------
    @aio
    @staticmethod
    def from_name(
        name: str,
        *,
        environment_name: str | None = None,
        create_if_missing: bool = False,
        version: int | None = None,
        store: Store | str | None = None,
    ) -> Volume:
        """A handle on volume ``name``; nothing is read until it is used (see :meth:`hydrate`).

        With ``create_if_missing``, the first use creates the volume if it does not exist.
        ``version`` (1 or 2) must match an existing volume's. Raises InvalidError at once
        for a bad name, NotFoundError for a ``store`` that does not exist (unless
        ``create_if_missing``).
        """
        return Volume(
            name,
            store=store,
            environment_name=environment_name,
            create_if_missing=create_if_missing,
            version=version,
        )

    @aio
    @staticmethod
    def from_id(
        volume_id: str,
        *,
        environment_name: str | None = None,
        store: Store | str | None = None,
    ) -> Volume:
        """A handle on the volume whose :attr:`object_id` is ``volume_id`` (named or
        ephemeral), in the given (or current) environment; looked up at first use."""
        if not isinstance(volume_id, str) or not volume_id:
            raise InvalidError(f"volume id must be a non-empty string, got {volume_id!r}")
        return Volume(None, store=store, environment_name=environment_name, _id=volume_id)

    @aio
    @staticmethod
    def lookup(
        name: str,
        *,
        environment_name: str | None = None,
        create_if_missing: bool = False,
        version: int | None = None,
        store: Store | str | None = None,
    ) -> Volume:
        """Like :meth:`from_name` but checks now: NotFoundError if ``name`` does not exist."""
        vol = Volume(
            name,
            store=store,
            environment_name=environment_name,
            create_if_missing=create_if_missing,
            version=version,
        )
        vol._resolve()
        return vol

    @aio(kind="context")
    @classmethod
    def ephemeral(
        cls,
        *,
        environment_name: str | None = None,
        version: int | None = None,
        store: Store | str | None = None,
    ) -> _EitherContext:
        """A new anonymous volume that is deleted when the block exits (also on error).

        It has no name (``vol.name`` is None; it is not in ``objects.list``) and lives as
        long as this process renews its lease: if the process dies, the next ordinary call
        on the store (``objects.list``, ``ephemeral``, ``from_name``) reclaims it.

        Usable with ``with`` and, as in Modal, ``async with`` (setup and teardown then run
        off the event loop). Example::

            with Volume.ephemeral() as vol:
                assert vol.listdir("/") == []
        """
        return _EitherContext(cls._ephemeral(environment_name, version, store))

    @staticmethod
    @contextlib.contextmanager
    def _ephemeral(
        environment_name: str | None, version: int | None, store: Store | str | None
    ) -> Iterator[Volume]:
        _, env, s = _open(store, environment_name, create=True)
        with ephemeral_volume(s, version=version) as meta:
            yield Volume(
                None, store=store, environment_name=env, create_if_missing=True, _meta=meta
            )

    @aio
    @staticmethod
    def rename(
        old_name: str,
        new_name: str,
        *,
        environment_name: str | None = None,
        store: Store | str | None = None,
    ) -> None:
        """Rename volume ``old_name`` to ``new_name`` (contents, id and history unchanged)."""
        check_name(old_name)
        check_name(new_name)
        _, _, s = _open(store, environment_name)
        names.rename(s, old_name, new_name)

    def _resolve(self) -> names.VolumeMeta:
        with self._lock:
            if self._meta is None:
                if self._id is not None:
                    self._meta = names.by_id(self.store, self._id)
                    self.name = self._meta.name
                else:
                    name: str = self.name  # type: ignore[assignment]
                    if self._create_if_missing:
                        self._meta = _swept_beside(
                            self.store,
                            lambda: names.create(
                                self.store, name, allow_existing=True, version=self._version
                            ),
                        )
                    else:
                        self._meta = _swept_beside(
                            self.store, lambda: names.resolve(self.store, name)
                        )
                self._id = self._meta.id
                self._alive, self._gone = AliveCheck(self.store), None
            names.check_version_matches(self._meta, self._version)
            return self._meta

    def _check_alive(self, writer: Writer | None = None) -> None:
        """Raise NotFoundError if this handle's volume is gone: deleted (by another process
        or handle), an ephemeral one whose block ended, or, for a handle opened by name,
        renamed (whether or not the name was given to another volume since; a handle
        from ``from_id`` follows its volume across renames). Looked up at most every
        :data:`~jupyter_volume.objects.ALIVE_EVERY` seconds on S3 and every time on a
        local folder (:class:`~jupyter_volume.objects.AliveCheck`), before every commit
        and API read (history, tags, retention, verify and gc too; ``info()`` describes
        the handle as opened): a commit to a deleted volume used to report success and land under
        no name, out of reach of every name and of gc, for good.

        Found gone, ``writer``'s uploads are stopped and whatever this handle left under
        the volume's prefix is deleted again, unless the volume lives on under another
        name (renamed; its own gc reclaims them then).
        """
        meta = self._resolve()
        if self._gone is not None:
            raise NotFoundError(self._gone)  # it never comes back
        alive = self._alive
        if alive is None:
            alive = self._alive = AliveCheck(self.store)
        now = time.monotonic()
        if not alive.due(now):
            return
        s = self.store
        first = _repository(s, meta.id)._log_key(0)  # gc never deletes commit records
        if meta.name is None:  # ephemeral: alive while its lease is (deleted last)
            ok = s.exists(names.EPHEMERAL_PREFIX + meta.id)
        elif self._by_name:
            try:
                ok = names.resolve(s, meta.name, namespace=self._namespace).id == meta.id
            except NotFoundError:
                ok = False
        else:
            ok = s.exists(first)
        if ok:
            alive.seen(now)
            return
        if writer is not None:
            writer.abort()
        if not s.exists(first):
            names._delete_objects(s, meta.id)  # what we wrote after the deletion's sweep
        if meta.name is None:
            what = f"ephemeral volume {meta.id}"
            how = "its block ended or it was deleted"
        else:
            what = f"volume {meta.name!r}"
            how = "it was deleted or renamed (its name may now be another volume's)"
        self._gone = (
            f"{what} no longer exists as this handle opened it ({how}): nothing was "
            "read or written through it"
            + ("; open it again by its current name" if meta.name is not None else "")
        )
        raise NotFoundError(self._gone)

    @aio
    def hydrate(self, client: Any = None) -> Volume:
        """Look the volume up now (creating it if ``create_if_missing`` was given); return self.

        ``client`` is accepted (and ignored) so Modal code that passes one runs unchanged.
        Raises NotFoundError if it does not exist, InvalidError on a version mismatch.
        """
        self._resolve()
        return self

    @property
    def _is_v1(self) -> bool:
        return self.version == 1

    @property
    def object_id(self) -> str:
        """The volume's id (stable across renames; see :meth:`from_id`). Looks it up if needed."""
        return self._resolve().id

    @property
    def version(self) -> int:
        """The volume's recorded version (1 or 2; volumes from before versions are 1)."""
        return self._resolve().version

    @aio
    def with_mount_options(
        self, *, read_only: bool | None = None, sub_path: str | None = None
    ) -> Volume:
        """A copy of this handle that :meth:`mount` mounts read-only and/or only ``sub_path``.

        Options not given keep this handle's; ``sub_path="/"`` means the whole volume.
        As in Modal, these configure mounts only: API writes through the copy still work.
        """
        if self._read_only:
            raise InvalidError(
                "cannot call with_mount_options() on a handle from read_only(): use "
                "with_mount_options(read_only=True, ...) instead"
            )
        cur = self._mount_options or _MountOptions()
        sub = cur.sub_path
        if sub_path is not None:
            sub = normalize_path(os.fspath(sub_path), what="sub_path") or None
        new = self._copy()
        new._mount_options = _MountOptions(
            cur.read_only if read_only is None else bool(read_only), sub
        )
        return new

    @aio
    def read_only(self) -> Volume:
        """A read-only copy of this handle (Modal's older spelling): mounts are read-only and
        API writes (uploads, removes, copies, ...) raise InvalidError."""
        if self._mount_options is not None:
            raise InvalidError(
                "cannot call read_only() on a handle from with_mount_options(): use "
                "with_mount_options(read_only=True, ...) instead"
            )
        new = self._copy()
        new._mount_options = _MountOptions(read_only=True)
        new._read_only = True
        return new

    def _check_writable(self) -> None:
        if self._read_only:
            raise InvalidError(_READ_ONLY)

    @property
    def _repo(self) -> Repository:
        repo = _repository(self.store, self._resolve().id)
        repo.name = self.name  # for messages (the name it was last opened under)
        return repo

    @aio
    def info(self) -> VolumeInfo:
        """Name (None if ephemeral), id, creation time (UTC) and creator of the volume."""
        m = self._resolve()
        return VolumeInfo(m.name, m.id, datetime.fromtimestamp(m.created_at, tz=UTC), m.created_by)  # type: ignore[arg-type]

    @aio
    def delete(self) -> None:
        """Delete this volume and its whole history."""
        meta = self._resolve()
        if meta.name is None:
            detach_mount(self.store, meta.id)
            names.delete_ephemeral(self.store, meta.id)
        else:
            Volume.objects.delete(
                meta.name, store=self._base_store, environment_name=self.environment_name or ""
            )
        self._meta = None

    # -- reading -------------------------------------------------------------------------------
    def _record(self, seq: int) -> CommitRecord:
        """Commit ``seq`` of this volume, refused with NotFoundError if gc expired it (its
        trees and data may be gone: reading it, diffing from it or restoring it would
        answer from stale caches, fail on a raw store key, or publish a damaged head)."""
        repo = self._repo
        rec = repo.record(int(seq))
        if rec.seq == getattr(self._seen, "pinned", None):
            return rec  # the head this thread's call has just read (see _pin_head)
        if repo.is_expired(rec.seq):
            raise NotFoundError(
                f"commit {rec.seq} of volume {self.name!r} was expired by garbage collection"
            )
        return rec

    def _pin_head(self) -> int:
        """The number of the newest commit, read from the store now. This thread's reads
        at that number then skip the check that gc has not expired it (a head just read
        is not) until it pins again or :meth:`_unpin`: for a caller that reads one commit
        in several steps (each fsspec call pins first), one look at the store instead of
        one more per step."""
        self._unpin()
        seq = self._repo.head(refresh=True).seq
        self._pin(seq)
        return seq

    def _pin(self, seq: int) -> None:
        """Pin commit ``seq`` as :meth:`_pin_head` does; the caller vouches that it is
        the newest (just read from the store), or discards what it reads meanwhile
        unless it turns out to be."""
        self._seen.pinned = seq

    def _unpin(self) -> None:
        """Undo :meth:`_pin_head`: every read by number checks for expiry again."""
        self._seen.pinned = None

    def _read_newest(self, read: Callable[[int, int | None], T | None]) -> T:
        """``read(at, most)`` at the newest commit, in one round trip where it can.

        ``read`` reads commit ``at``, or returns None without reading when that would
        fetch over ``most`` bytes (``most`` None: no limit). Once this process knows a
        commit of the volume, ``read`` runs at that one while the store is asked for the
        newest (a listing of the log's tail, on another thread), and what it read is
        kept only if that commit is still the newest; otherwise (or if it failed, or
        was too big to guess) it runs again at the newest. Reading only after asking
        made every read of a small file two round trips where a plain object GET is one.
        The commit read is pinned for the thread meanwhile (see :meth:`_pin_head`); the
        pin the thread had is put back after.
        """
        repo = self._repo
        known = repo.known_head
        before = getattr(self._seen, "pinned", None)
        try:
            if known is None:
                head = repo.head(refresh=True).seq
            else:
                got: T | None = None
                failed: Exception | None = None
                with beside(repo.head, True) as newest:
                    self._pin(known)  # kept only if it is still the newest, checked below
                    try:
                        got = read(known, GUESS_MAX)
                    except Exception as e:  # noqa: BLE001 - raised below if still the newest
                        failed = e
                head = newest.result().seq
                if head == known:
                    if failed is not None:
                        raise failed
                    if got is not None:
                        return got
            self._pin(head)
            result = read(head, None)
            assert result is not None
            return result
        finally:
            self._seen.pinned = before

    def _root(self, at: int | None, *, refresh: bool = True) -> str:
        """The root of commit ``at``, or of the newest one. ``refresh=False``: the head
        this operation has already asked the store for."""
        self._check_alive()
        repo = self._repo
        if at is not None:
            return self._record(at).root
        # As Modal's API reads: always the newest commit (one listing of the log's tail).
        rec = repo.head(refresh=refresh)
        self._seen.seq = rec.seq
        return rec.root

    def _follow_file(
        self, path: str | bytes, at: int | None = None, *, newest: bool = False
    ) -> tuple[str, Entry]:
        """:meth:`_follow` for a read of a file's bytes: InvalidError for a folder."""
        p, e = self._follow(path, at, newest=newest)
        if e.kind == DIR:
            raise InvalidError(f"{p} is a folder, not a file")
        return p, e

    def _follow(
        self, path: str | bytes, at: int | None = None, *, newest: bool = False
    ) -> tuple[str, Entry]:
        """Like :meth:`_entry`, with symbolic links resolved in every part of the path.

        Links are followed only inside the volume: a target that is absolute or climbs
        above the root raises InvalidError naming the link (only here, when a read
        follows it; storing such links is fine). ``newest``: ``at`` is the newest commit,
        read as such (the caller asked for no commit): errors do not name it.
        """
        p = normalize_path(path)
        repo = self._repo
        root = self._root(at)
        e = repo.lookup(p, root)
        if e is not None and e.kind != LINK:
            return p, e  # the common case: no link on the way
        parts = p.split("/") if p else []
        done: list[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            cur = "/".join([*done, part])
            ce = repo.lookup(cur, root)
            if ce is None:
                where = f" at commit {at}" if at is not None and not newest else ""
                raise NotFoundError(f"no such file or folder in volume {self.name!r}{where}: {p}")
            if ce.kind != LINK:
                done.append(part)
                continue
            hops += 1
            if hops > _MAX_LINK_HOPS:
                raise InvalidError(
                    f"too many levels of symbolic links reading {p} in volume {self.name!r}"
                )
            target = ce.target or ""
            if target.startswith("/"):
                raise InvalidError(
                    f"{cur} is a symbolic link to {target!r}, outside volume {self.name!r}: "
                    "reads do not follow it"
                )
            try:
                resolved = normalize_path("/".join([*done, target]))
            except InvalidError:
                raise InvalidError(
                    f"{cur} is a symbolic link to {target!r}, outside volume {self.name!r}: "
                    "reads do not follow it"
                ) from None
            parts = (resolved.split("/") if resolved else []) + parts
            done = []
        final = "/".join(done)
        fe = repo.lookup(final, root)
        assert fe is not None
        return final, fe

    def _entry(
        self,
        path: str | bytes,
        at: int | None = None,
        *,
        through_links: bool = False,
        follow: bool = False,
        root: str | None = None,
    ) -> tuple[str, Entry]:
        """``(normalized path, entry)`` of ``path``; NotFoundError if there is none.

        ``through_links`` (reads): symbolic links in the parts *before* the last are
        resolved inside the volume, as :meth:`read_file` does (``src/link/f`` with
        ``src/link -> real`` is ``src/real/f``); the last part is not, so a link is
        described as itself. ``follow``: the last part too, giving the entry of what a
        link points at (as POSIX ``stat``; a link out of the volume raises InvalidError).
        The path returned is always the one asked for. Writes pass neither: they name
        stored paths. ``root``: the root of commit ``at`` (of the newest one for a
        write), already read by the caller, instead of asking for the head again.
        """
        p = normalize_path(path)
        repo = self._repo
        if root is None:
            root = self._root(at)
        e = repo.lookup(p, root)
        if e is None and (through_links or follow) and "/" in p:
            parent, name = p.rsplit("/", 1)
            try:
                rp, pe = self._follow(parent, at)
            except NotFoundError:
                pe = None
            if pe is not None and pe.kind == DIR:
                e = repo.lookup(_join_path(rp, name), root)
        if e is None:
            where = f" at commit {at}" if at is not None else ""
            raise NotFoundError(
                f"no such file or folder in volume {self.name!r}{where}: {p or '/'}"
            )
        if follow and e.kind == LINK:
            _rp, e = self._follow(p, at)
        return p, e

    @aio
    def iterdir(
        self,
        path: str = "/",
        *,
        recursive: bool = True,
        at: int | None = None,
        glob: bool = True,
    ) -> Iterator[FileEntry]:
        """Yield the entries under ``path``.

        A folder yields its contents (all levels when ``recursive``); a file (or a
        symbolic link) yields just itself; a glob (a path with ``*``; then ``?``,
        ``[..]`` and ``**`` match too) yields every matching file and folder. With
        ``glob=False`` the path is always a name, also one with ``*`` in it (a folder
        named ``run*1``). Links in the parts before the last are resolved inside the
        volume, as :meth:`read_file` does. Paths are relative to the volume root, as
        asked for. ``at`` reads an older commit.
        """
        p = normalize_path(path)
        repo = self._repo
        if glob and _has_glob(p):
            root = self._root(at)
            parts = p.split("/")
            base_parts: list[str] = []
            for part in parts:
                if _has_glob(part):
                    break
                base_parts.append(part)
            base = "/".join(base_parts)
            # the base is a folder named literally (found by lookup): `d[1]/*.txt` lists
            # the folder d[1], so its name is matched as itself, not as a pattern
            rest = p[len(base) + 1 :] if base else p
            rx = re.compile((re.escape(base + "/") if base else "") + _glob_regex(rest).pattern)
            be = repo.lookup(base, root)
            if be is None or be.kind != DIR:
                return
            for sub, e in repo.trees.walk(be.tree, base + "/" if base else ""):  # type: ignore[arg-type]
                if rx.match(sub):
                    yield FileEntry._of(sub, e)
            return
        p, e = self._entry(p, at, through_links=True)
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

    @aio
    def listdir(
        self, path: str = "/", *, recursive: bool = False, at: int | None = None, glob: bool = True
    ) -> list[FileEntry]:
        """The entries under ``path`` as a list (see :meth:`iterdir`; not recursive by
        default; ``glob=False`` lists a path with ``*`` in it as a name)."""
        return list(self.iterdir(path, recursive=recursive, at=at, glob=glob))

    @aio(kind="iter")
    def read_file(
        self,
        path: str | bytes,
        *,
        at: int | None = None,
        offset: int = 0,
        length: int | None = None,
    ) -> Iterator[bytes]:
        """Yield the bytes of file ``path`` in pieces (streamed: memory stays bounded).

        Of the newest commit, or of commit ``at``. ``offset``/``length`` read a byte range
        (only the chunks that hold it are fetched). Up to 4 MiB of the newest commit are
        read at once, beside the look for which commit that is: one round trip to the
        store once this process knows the volume. A symbolic link inside the volume is
        followed (a link that points outside the volume is an error naming it). Raises
        NotFoundError if there is no such file, InvalidError for a folder.
        """
        if offset < 0 or (length is not None and length < 0):
            raise InvalidError("offset and length must be >= 0")
        newest = at is None

        def read(at: int | None, most: int | None = None) -> Iterable[bytes] | None:
            p, e = self._follow_file(path, at, newest=newest)
            end = e.size if length is None else min(offset + length, e.size)
            if most is not None and end - offset > most:
                return None
            if offset == 0 and length is None:
                pieces = self._repo.read_entry(e, p)
            else:
                pieces = self._reader(p, e, at).iter_range(offset, end)
            # a read that may be thrown away is read now, beside the look at the log
            return pieces if most is None else list(pieces)

        got = self._read_newest(read) if newest else read(at)
        assert got is not None
        return iter(got)

    def _read_stored(
        self, paths: list[str], at: int | None, max_size: int | None = None
    ) -> list[bytes | None]:
        """The whole contents of many small files of commit ``at`` (the newest if None),
        read together: their chunks are located at once and neighbours fetched in one
        ranged GET (hash-checked), as a mount fetches small files. None for a path that
        is not a regular file stored at that very path (a link, or a path through one:
        :meth:`read_file` follows those), or is larger than ``max_size`` bytes (read
        together, a file is held about twice: its ranges and their join)."""
        repo = self._repo
        root = self._root(at)
        entries = [repo.lookup(normalize_path(p), root) for p in paths]
        chosen = [
            e is not None and e.kind == FILE and (max_size is None or e.size <= max_size)
            for e in entries
        ]
        got = iter(
            repo.read_many([e for e, c in zip(entries, chosen, strict=True) if c], self.name)
        )
        return [next(got) if c else None for c in chosen]

    def _reader(self, p: str, e: Entry, at: int | None) -> VolumeReader:
        from .reader import VolumeReader, local_chunk_cache

        return VolumeReader(
            self._repo,
            e,
            p,
            volume=self.name,
            commit=at if at is not None else self._seen.seq,  # set by _follow's _root
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
        p, e = self._follow_file(path, at)
        reader = self._reader(p, e, at)
        return reader if mode == "rb" else io.TextIOWrapper(reader, encoding="utf-8")

    @aio
    def stat(
        self, path: str | bytes, *, at: int | None = None, follow_symlinks: bool = False
    ) -> FileEntry:
        """The :class:`FileEntry` of one path (never a glob); NotFoundError if missing.

        Links in the parts before the last are resolved inside the volume (as
        :meth:`read_file` does). A link itself is described as a link unless
        ``follow_symlinks``: then as what it points at (type, size, times; the path
        stays the one asked for), as POSIX ``stat`` does; a link out of the volume, or
        a loop, raises InvalidError, one to nothing NotFoundError.
        """
        return self._stat(path, at, follow_symlinks)

    def _stat(
        self, path: str | bytes, at: int | None, follow: bool, root: str | None = None
    ) -> FileEntry:
        """:meth:`stat`; ``root``: commit ``at``'s root, already read by the caller (a
        call that describes many paths of one commit looks at the store once)."""
        p, e = self._entry(path, at, through_links=True, follow=follow, root=root)
        if not p:
            kids = self._repo.trees.entries(e.tree)  # type: ignore[arg-type]
            return FileEntry("", FileEntryType.DIRECTORY, 0, sum(x.size for x in kids))
        return FileEntry._of(p, e)

    @property
    def seq(self) -> int:
        """The newest commit of the volume, as API reads see it (asks the store)."""
        self._root(None)
        return self._seen.seq

    def _read_into(
        self,
        path: str | bytes,
        fd: int,
        *,
        at: int | None = None,
        progress: Callable[[int], None] | None = None,
        start: int = 0,
    ) -> int:
        """Write file ``path`` (links followed as by :meth:`read_file`) into open file
        ``fd`` from offset ``start``, as a mount writes a big file: ranged reads in
        parallel, each range checked and written in place by the download threads, the
        file's disk reserved first. Returns its size."""
        p, e = self._follow_file(path, at)
        return self._repo.read_into(e, fd, p, progress=progress, start=start)

    @aio
    def read_file_into_fileobj(
        self,
        path: str | bytes,
        fileobj: IO[bytes],
        progress_cb: Callable[..., Any] | None = None,
        *,
        at: int | None = None,
    ) -> int:
        """Write file ``path`` into ``fileobj``; return the number of bytes written.

        ``progress_cb(advance=n)`` is called after each piece with the bytes just written,
        as Modal calls it. Into a local file opened for writing in binary mode (not
        appending), the file is written as a mount writes it: ranged reads in parallel,
        each checked and written in place from the file's position on, its disk reserved
        first (``progress_cb`` is then called from the download threads, one call at a
        time); the file's position ends after the bytes written. Into any other file
        object, piece by piece.
        """
        fd = _local_file(fileobj)
        if fd is not None:
            fileobj.flush()
            pos = fileobj.tell()
            progress = one_at_a_time(lambda n: progress_cb(advance=n)) if progress_cb else None
            n = self._read_into(path, fd, at=at, progress=progress, start=pos)
            fileobj.seek(pos + n)
            return n
        total = 0
        for piece in self.read_file(path, at=at):
            fileobj.write(piece)
            total += len(piece)
            if progress_cb is not None:
                progress_cb(advance=len(piece))
        return total

    # -- writing ------------------------------------------------------------------------------
    def _commit_changes(
        self,
        changes: dict[str, Entry | str | None],
        message: str,
        writer: Writer | None = None,
        **kw: Any,
    ) -> CommitInfo | None:
        self._check_alive(writer)
        rec, _stats = self._repo.commit(changes, message=message, writer=writer, **kw)
        if rec is None:
            return None
        return CommitInfo._of(rec)

    @aio
    def remove_file(self, path: str | bytes, recursive: bool = False) -> CommitInfo | None:
        """Delete a file, or a folder with ``recursive=True``, as one commit (returned).

        Raises NotFoundError if it does not exist, InvalidError for a non-empty folder
        without ``recursive`` or for the volume root.
        """
        self._check_writable()
        p, e = self._entry(path)
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
        return self._commit_changes(changes, f"remove {p}", fresh_head=True)

    @aio
    def copy_files(
        self, src_paths: Sequence[str | bytes], dst_path: str | bytes, recursive: bool = False
    ) -> None:
        """Copy files (and with ``recursive`` folders) inside the volume, like ``cp``.

        If ``dst_path`` is an existing folder, or ends with ``/``, or several sources are
        given, each source is copied into that folder under its own name (the folder is
        created if missing, as Modal does); otherwise the single source is copied to
        ``dst_path``. No data is copied: the new paths share the stored chunks.
        """
        self._copy_files(src_paths, dst_path, recursive=recursive, make_parents=False)

    def _copy_files(
        self,
        src_paths: Sequence[str | bytes],
        dst_path: str | bytes,
        *,
        recursive: bool,
        make_parents: bool,
    ) -> None:
        """:meth:`copy_files`; ``make_parents``: missing folders above a single file's
        destination are made in the same commit (fsspec's ``cp_file`` into a new folder)
        instead of refused."""
        self._check_writable()
        if isinstance(src_paths, (str, bytes)):
            src_paths = [src_paths]
        if not src_paths:
            raise InvalidError("copy_files needs at least one source path")
        repo = self._repo
        root = self._root(None)
        # the index the copied entries' chunks are found in, taken with the head they are
        # read from: a gc landing before the commit may find them dead (a source deleted
        # meanwhile), and the commit then copies them out from here
        seen = repo._seen_now()
        dst = normalize_path(dst_path, what="destination")
        raw_dst = dst_path if isinstance(dst_path, str) else dst_path.decode()
        dst_e = repo.lookup(dst, root)
        if (
            dst_e is not None
            and dst_e.kind != DIR
            and (len(src_paths) > 1 or raw_dst.endswith("/"))
        ):
            raise AlreadyExistsError(f"{dst} is a file in volume {self.name!r}, not a folder")
        into_dir = (
            (dst_e is not None and dst_e.kind == DIR) or len(src_paths) > 1 or raw_dst.endswith("/")
        )
        if into_dir and dst_e is None:
            _refuse_file_parent(repo, root, dst, f"cannot create folder {dst}", self.name or "")
        if not into_dir:
            _check_destination_parent(
                repo, root, dst, f"cannot copy to {dst}", self.name or "", make_parents
            )
        changes: dict[str, Entry | str | None] = {}
        came_from: dict[str, str] = {}  # each new path -> the source it is a copy of

        def add(path: str, entry: Entry | str, sp: str) -> None:
            # two sources of one name (`cp -r a/sub b/sub dst`): as `cp`, which will not
            # overwrite what it has just created, refuse rather than keep only the last
            if came_from.setdefault(path, sp) != sp:
                raise InvalidError(
                    f"{came_from[path]} and {sp} would both be copied to {path}: "
                    "copy them one at a time, to different names"
                )
            changes[path] = entry

        for src in src_paths:
            sp, se = self._entry(src, root=root)  # the destination's head: no second look
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
                        add(f"{target}/{sub}", e, sp)
                    elif e.nfiles == 0:
                        add(f"{target}/{sub}", "dir", sp)
            elif se.kind != DIR and te is not None and te.kind == DIR:
                raise InvalidError(f"cannot overwrite folder {target} with file {sp}")
            elif se.kind == DIR and te is not None:
                # as `cp -r d h.txt` ("cannot overwrite non-directory"); it replaced the file
                raise AlreadyExistsError(
                    f"cannot overwrite file {target} with folder {sp} in volume {self.name!r}"
                )
            else:
                add(target, se, sp)
        self._commit_changes(
            changes,
            f"copy {', '.join(normalize_path(s) for s in src_paths)} to {dst or '/'}",
            seen=seen,
            fresh_head=True,
        )

    @aio
    def mkdir(self, path: str) -> CommitInfo | None:
        """Create an empty folder ``path`` (and missing parents) as one commit.

        The commit message is ``create folder PATH``.

        Raises:
            AlreadyExistsError: something exists at ``path``, or one of its parents is a file.
            InvalidError: ``path`` is the volume root or not a valid volume path.
        """
        self._check_writable()
        p = normalize_path(path)
        if not p:
            raise InvalidError("the volume root always exists: give a folder name")
        repo = self._repo
        root = self._root(None)

        def check(head_root: str) -> None:
            if repo.lookup(p, head_root) is not None:
                raise AlreadyExistsError(f"{p} already exists in volume {self.name!r}")
            _refuse_file_parent(repo, head_root, p, f"cannot create folder {p}", self.name)

        check(root)
        # checked again on every head it is applied onto: two creators of one folder
        # used to both succeed, as two commits
        return self._commit_changes(
            {p: "dir"}, f"create folder {p}", check=lambda head: check(head.root), fresh_head=True
        )

    @aio
    def move(self, src: str, dst: str, *, overwrite: bool = False) -> CommitInfo | None:
        """Move or rename file or folder ``src`` to ``dst`` inside the volume, as one commit.

        Like ``mv``: if ``dst`` is an existing folder, ``src`` moves into it under its own
        name. No data is copied (the new path shares the stored chunks); the message is
        ``move SRC to DST``.

        Raises:
            NotFoundError: ``src`` does not exist, or the destination's folder does not.
            AlreadyExistsError: the destination exists (a file is replaced only with
                ``overwrite=True`` and only by a file; a folder never), or a folder above
                it is a file.
            InvalidError: moving the root, onto itself, or a folder into itself.
        """
        return self._move(src, dst, overwrite=overwrite, make_parents=False)

    def _move(
        self, src: str, dst: str, *, overwrite: bool, make_parents: bool
    ) -> CommitInfo | None:
        """:meth:`move`; ``make_parents``: missing folders above ``dst`` are made in the
        same commit (fsspec's ``mv`` into a new folder) instead of refused."""
        self._check_writable()
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
        if dp.startswith(sp + "/") and not se.is_dir:
            raise AlreadyExistsError(
                f"cannot move {sp} to {dp}: {sp} is a file in volume {self.name!r}"
            )
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
        what = f"cannot move {sp} to {dp}"
        _check_destination_parent(repo, root, dp, what, self.name, make_parents)
        changes: dict[str, Any] = {dp: se, sp: None}
        if se.is_dir:
            # a folder goes away only once everything below it is deleted too
            changes.update({sub: None for sub, _ in repo.trees.walk(se.tree, sp + "/")})

        def unchanged(head: Any) -> None:
            # What was checked above must hold on the head the move is applied onto: two
            # moves onto one new name used to both succeed, the second silently dropping
            # the first's file from the head (only history kept it).
            if head.root == root:
                return
            now = repo.lookup(sp, head.root)
            if now is None or not now.same_content(se):
                raise ConflictError(
                    f"{sp} changed in volume {self.name!r} while it was being moved: "
                    "nothing was moved; look again and retry"
                )
            there = repo.lookup(dp, head.root)
            if there is not None and (de is None or not there.same_content(de)):
                raise AlreadyExistsError(
                    f"{dp} was created in volume {self.name!r} while {sp} was being moved "
                    "there: nothing was moved"
                )
            parent = repo.lookup(_parent_path(dp), head.root)
            if make_parents and (parent is None or not parent.is_dir):
                _refuse_file_parent(repo, head.root, dp, what, self.name)
            elif parent is None or not parent.is_dir:
                raise NotFoundError(
                    f"destination folder {_parent_path(dp) or '/'} was removed from volume "
                    f"{self.name!r} while {sp} was being moved into it: nothing was moved"
                )

        return self._commit_changes(changes, f"move {sp} to {dp}", check=unchanged, fresh_head=True)

    @aio
    def remove_paths(self, paths: Iterable[str]) -> CommitInfo | None:
        """Delete several files and folders (with everything below them) as one commit.

        The message names what went: ``remove a.txt, data`` (or ``remove N paths (a, …)``).

        Raises:
            NotFoundError: one of ``paths`` does not exist (nothing is removed then).
            InvalidError: ``paths`` is empty or names the volume root.
        """
        self._check_writable()
        repo = self._repo
        root = self._root(None)
        wanted = sorted({normalize_path(p) for p in paths})
        if not wanted:
            raise InvalidError("nothing to remove: give at least one path")
        changes: dict[str, Any] = {}
        for p in wanted:
            if not p:
                raise InvalidError(
                    "cannot remove the volume root; use vol.delete() to delete the volume"
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
        return self._commit_changes(changes, message, fresh_head=True)

    @aio(kind="context")
    def batch_upload(self, force: bool = False) -> BatchUpload:
        """Upload many files as one commit: nothing is visible until the block exits.

        An existing file is not overwritten unless ``force``; a folder is never replaced
        by a file; an exception inside the block uploads nothing. Example::

            with vol.batch_upload() as batch:
                batch.put_file("local.txt", "/remote.txt")
                batch.put_directory("data/", "/data")
                batch.put_file(io.BytesIO(b"some data"), "/foobar")
        """
        self._check_writable()
        return BatchUpload(self, force)

    # -- history ---------------------------------------------------------------------------------
    @aio
    def history(
        self,
        limit: int | None = None,
        *,
        before: int | None = None,
        include_expired: bool = False,
    ) -> list[CommitInfo]:
        """Commits newest first (``limit`` of them, >= 0), with what each added/modified/deleted.

        ``before``: only commits older than commit ``before`` (the next page of a history
        shown a page at a time: pass the oldest commit already shown; commits made since
        the first page do not shift it, as an offset would). Commits expired by
        :meth:`gc` are left out unless ``include_expired``; the gc commits themselves
        say what they expired and when.
        """
        from .repository import gc

        for arg, value in (("limit", limit), ("before", before)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise InvalidError(f"{arg} must be None or a whole number >= 0, got {value!r}")
        if limit == 0 or before == 0:
            return []
        self._check_alive()  # as every read: a deleted volume's history is gone
        repo = self._repo
        with beside(gc.list_tags, repo) as tags:  # listed beside the log
            head = repo.head()
            state = repo.gc_state(head)
        by_seq: dict[int, list[str]] = {}
        for name, seq in tags.result().items():
            by_seq.setdefault(seq, []).append(name)
        out = []
        start = head.seq if before is None else min(head.seq, before - 1)
        for r in repo.log(start=start):  # from the head just read: no second look
            expired = state.is_expired(r.seq)
            if expired and not include_expired:
                continue
            out.append(CommitInfo._of(r, tuple(sorted(by_seq.get(r.seq, []))), expired))
            if limit is not None and len(out) >= limit:
                break
        return out

    # -- retention and garbage collection ---------------------------------------------------------
    @aio
    def tag(self, seq: int, name: str, *, force: bool = False) -> None:
        """Tag commit ``seq`` as ``name``: tagged commits survive every retention policy.

        Names are 1-64 letters, digits, '.', '_' and '-', starting with a letter or digit,
        and not digits only (``volume://v@2024/`` means commit 2024). InvalidError
        otherwise; AlreadyExistsError for an existing tag unless ``force`` (moves it).
        """
        from .repository import gc

        self._check_alive()
        gc.set_tag(self._repo, int(seq), name, force=force)

    @aio
    def untag(self, name: str) -> None:
        """Remove a tag (its commit falls under the retention policy again)."""
        from .repository import gc

        self._check_alive()
        gc.delete_tag(self._repo, name)

    @aio
    def tags(self) -> dict[str, int]:
        """Tag name -> commit seq."""
        from .repository import gc

        self._check_alive()
        return gc.list_tags(self._repo)

    @property
    def retention(self) -> Any:
        """The volume's :class:`~jupyter_volume.repository.gc.RetentionPolicy` (keep all by default)."""
        from .repository import gc

        self._check_alive()
        return gc.load_policy(self._repo)

    @aio
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
        self._check_alive()
        gc.save_policy(self._repo, pol)
        return pol

    @aio
    def gc(self, *, dry_run: bool = False, grace: float | str | None = None) -> Any:
        """Expire commits outside the retention policy and reclaim their space.

        Returns a :class:`~jupyter_volume.repository.gc.GcReport` (bytes freed, objects
        deleted, packs repacked). ``dry_run`` changes nothing. ``grace`` (seconds) overrides
        the policy's grace period, which protects uploads of commits still in flight:
        use 0 only when no one else is writing.
        """
        from .repository import gc

        self._check_alive()
        # gc is also when the ephemeral volumes of dead processes are reclaimed (not by a
        # dry run, which changes nothing)
        if not dry_run:
            names.sweep_ephemeral(self.store)
        return gc.collect(
            self._repo,
            dry_run=dry_run,
            grace=gc.parse_duration(grace) if grace is not None else None,
        )

    @aio
    def diff(self, a: int, b: int | None = None) -> list[DiffEntry]:
        """What changed from commit ``a`` to commit ``b`` (default: the head).

        NotFoundError if either commit does not exist or was expired by :meth:`gc`.
        """
        repo = self._repo
        ra = self._record(a).root
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

    @aio
    def restore(self, commit: int, path: str | None = None) -> CommitInfo | None:
        """Bring back the whole tree, or one file or folder, as it was at ``commit``.

        Recorded as a new commit (nothing is rewritten; the versions in between stay in
        history). A path that did not exist at ``commit`` is removed. Returns None when
        nothing differs.

        Raises:
            NotFoundError: ``commit`` does not exist or was expired by :meth:`gc` (its
                data may be gone), or ``path`` exists neither at ``commit`` nor now.
        """
        self._check_writable()
        repo = self._repo
        old = self._record(commit)

        def not_expired(head: CommitRecord) -> None:
            # checked again on the head the restore lands on: a gc in another process
            # that expired the commit meanwhile may have deleted what it names
            if repo.gc_state(head).is_expired(old.seq):
                raise NotFoundError(
                    f"commit {old.seq} of volume {self.name!r} was expired by garbage "
                    "collection while it was being restored: nothing was restored"
                )

        # (the head looked up to judge whether ``commit`` was expired is the newest: the
        # commit builds on it, with no second look at the log)
        if path is None or not normalize_path(path):
            return self._commit_changes(
                {},
                f"restore to commit {old.seq}",
                root=old.root,
                kind="restore",
                check=not_expired,
                fresh_head=True,
            )
        p = normalize_path(path)
        then = repo.lookup(p, old.root)
        now = repo.lookup(p, self._root(None, refresh=False))
        changes: dict[str, Entry | str | None] = {}
        if then is None:
            if now is None:
                # a typo, not a no-op: say so (as ls, get, rm and cp do)
                raise NotFoundError(
                    f"no such file or folder in volume {self.name!r} at commit {old.seq} "
                    f"or now: {p}"
                )
            changes[p] = None
            if now.kind == DIR:
                changes.update({sub: None for sub, _ in repo.trees.walk(now.tree, p + "/")})  # type: ignore[arg-type]
        else:
            changes[p] = then
        return self._commit_changes(
            changes,
            f"restore {p} from commit {old.seq}",
            kind="restore",
            check=not_expired,
            fresh_head=True,
        )

    @aio
    def verify(self, *, read_data: bool = True) -> VerifyReport:
        """Re-read and re-hash everything reachable from every commit; report any damage."""
        self._check_alive()
        return self._repo.verify(read_data=read_data)

    @aio
    def du(self, path: str = "/", *, at: int | None = None) -> DiskUsage:
        """Number of files and logical bytes under ``path`` (links before its last part
        are resolved inside the volume, as reads do)."""
        p, e = self._entry(path, at, through_links=True)
        if e.kind == DIR:
            kids = self._repo.trees.entries(e.tree)  # type: ignore[arg-type]
            return DiskUsage(
                p, sum(x.nfiles if x.kind == DIR else 1 for x in kids), sum(x.size for x in kids)
            )
        return DiskUsage(p, 1, e.size)

    # -- moving to another store --------------------------------------------------------------
    @aio
    def copy_to(
        self,
        store: Store | str | os.PathLike[str],
        *,
        name: str | None = None,
        environment_name: str | None = None,
        progress: Callable[[int], Any] | None = None,
        on_start: Callable[[int, int], Any] | None = None,
    ) -> Volume:
        """Copy this volume, with its whole history, tags and retention policy, to ``store``
        (e.g. a team's S3 store) as ``name`` (default: the same name); return a handle on it.

        Every stored object is copied once (the copy has the same id and deduplicated
        packs); an interrupted copy resumes where it stopped when run again. Nothing is
        visible at the target until the copy is complete: its name is written last.
        Run again after this volume got new commits, it brings the copy up to date (only
        what is new is copied), provided the copy has no commits of its own since; a copy
        that already holds every commit of this one is left as it is.
        ``on_start(objects, nbytes)`` is called once with what is left to copy (for a
        progress bar's total), then ``progress(n)`` with the bytes of each object copied.

        Raises:
            AlreadyExistsError: another volume has that name at the target.
            ConflictError: the copy and this volume each have commits the other lacks.
            InvalidError: the target is this volume's own store and environment.
        """
        return self._copy_volume(store, name, environment_name, progress, on_start).volume

    def _copy_volume(
        self,
        store: Store | str | os.PathLike[str],
        name: str | None,
        environment_name: str | None,
        progress: Callable[[int], Any] | None,
        on_start: Callable[[int, int], Any] | None,
    ) -> _CopyResult:
        """:meth:`copy_to`, also saying what it did (for the CLI's message)."""
        import json
        from concurrent.futures import ThreadPoolExecutor

        meta = self._resolve()
        new_name = check_name(name if name is not None else meta.name)
        _, env, target = _open(store, environment_name, create=True)
        if target.url == self.store.url:
            raise InvalidError(
                f"{target.url} is where volume {meta.name!r} already is: copy to another store "
                "or environment"
            )
        try:
            existing: names.VolumeMeta | None = names.resolve(target, new_name)
        except NotFoundError:
            existing = None
        if existing is not None and existing.id != meta.id:
            raise AlreadyExistsError(
                f"a volume named {new_name!r} exists in {target.url}: choose another name"
            )
        dest = Volume(new_name, store=target, environment_name="")
        prefix = f"vols/{meta.id}/"
        # Commits newer than this head may land meanwhile; their records are left out (a
        # record is written only after everything it needs, so what is copied is whole).
        head = self._repo.head(refresh=True)
        since = -1  # the newest commit the copy has already (an earlier, complete copy)
        if existing is not None:
            since = _repository(target, meta.id).head(refresh=True).seq
            common = min(since, head.seq)
            key = f"{prefix}log/{common:020d}"
            if target.get(key) != self.store.get(key):
                raise ConflictError(
                    f"the copy {new_name!r} in {target.url} and volume {meta.name!r} have "
                    f"each been committed to since commit {common} or earlier: copy to a "
                    "new name, or restore one of them"
                )
            if since >= head.seq:
                return _CopyResult(dest, "current", 0)  # it has every commit already
        have = {o.key: o.size for o in target.list(prefix)}
        objects: list[str] = []
        records: list[tuple[int, str]] = []
        todo_bytes = 0
        for o in self.store.list(prefix):
            rel = o.key[len(prefix) :]
            if rel == "head" or rel.startswith(_NOT_COPIED):
                continue
            if rel.startswith("log/") and rel[4:].isdigit():
                seq = int(rel[4:])
                if seq > head.seq or seq <= since:
                    continue  # newer than the head copied, or the copy has it
                if have.get(o.key) != o.size:
                    records.append((seq, o.key))
                    todo_bytes += o.size
                continue
            mutable = rel == "policy" or rel.startswith("tags/")
            if not mutable and have.get(o.key) == o.size:
                continue  # copied by an earlier run (these objects never change)
            objects.append(o.key)
            todo_bytes += o.size
        if on_start is not None:
            on_start(len(objects) + len(records), todo_bytes)

        def copy(key: str) -> None:
            data = self.store.get(key)
            target.put(key, data)
            if progress is not None:
                progress(len(data))

        with ThreadPoolExecutor(max_workers=8) as pool:
            for _ in pool.map(copy, objects):
                pass
        # Commit records last and in order, each only once everything it needs is there;
        # create-only, so a commit made to the copy meanwhile is never overwritten.
        for _seq, key in sorted(records):
            data = self.store.get(key)
            if not target.put_if_absent(key, data) and target.get(key) != data:
                raise ConflictError(
                    f"the copy {new_name!r} in {target.url} was committed to while it was "
                    "being brought up to date: copy to a new name, or restore one of them"
                )
            if progress is not None:
                progress(len(data))
        target.put(prefix + "head", json.dumps({"seq": head.seq}).encode())
        if existing is not None:
            return _CopyResult(dest, "updated", head.seq - since)
        record = names.VolumeMeta(new_name, meta.id, meta.created_at, meta.created_by, meta.version)
        if not target.put_if_absent(f"names/{new_name}", record.doc()):
            if names.resolve(target, new_name).id != meta.id:
                raise AlreadyExistsError(
                    f"a volume named {new_name!r} was created in {target.url} meanwhile"
                )
        return _CopyResult(dest, "copied", head.seq + 1)

    # -- mounts -------------------------------------------------------------------------------
    @aio
    def commit(self) -> CommitInfo | None:
        """Commit the mounted folder's changes (if this volume is mounted here); else no-op."""

        m = _active_mount(self.store, self._resolve().id)
        if m is not None:
            return m.commit()
        return None

    @aio
    def refresh(self) -> CommitInfo:
        """The newest commit, read from the store now (API reads always see it).

        Unlike :meth:`reload`, this never touches a mounted folder.
        """
        return CommitInfo._of(self._repo.head(refresh=True))

    @aio
    def reload(self) -> None:
        """Bring the mounted folder to the newest commit (API reads see it anyway)."""

        m = _active_mount(self.store, self._resolve().id)
        if m is not None:
            m.reload()
            return
        self._repo.head(refresh=True)  # what this process knows of the volume, brought up to date

    @aio
    def mount(
        self, path: str | os.PathLike[str] | None = None, *, read_only: bool = False, **kw: Any
    ) -> Mount:
        """Materialize the volume in a local folder (default ``./NAME``); see :class:`Mount`.

        A handle from :meth:`with_mount_options` or :meth:`read_only` mounts with those
        options (``read_only=True`` here also makes the mount read-only).
        """

        opts = self._mount_options or _MountOptions()
        if path is None and self.name is None and self._resolve().name is None:
            path = Path.cwd() / f"ephemeral-{self._resolve().id[:12]}"
        if opts.sub_path:
            # As Modal: a sub_path that does not exist yet is created (a writable mount).
            e = self._repo.lookup(opts.sub_path, self._root(None))
            if e is None and not (read_only or opts.read_only):
                with contextlib.suppress(AlreadyExistsError):  # another writer made it
                    self.mkdir(opts.sub_path)
            elif e is not None and e.kind != DIR:
                raise InvalidError(
                    f"cannot mount {opts.sub_path} of volume {self.name!r}: it is a file, not a folder"
                )
        return Mount(self, path, read_only=read_only or opts.read_only, **kw)


def _unpickle_volume(
    name: str | None,
    vol_id: str | None,
    url: str,
    environment: str,
    version: int | None,
    opts: tuple[Any, bool],
    create_if_missing: bool = False,
) -> Volume:
    # The store is opened as is: the sender's handle was checked already, and an error
    # raised while unpickling would end a pool worker (its task then never returns).
    vol = Volume(
        name,
        store=open_base(url),
        environment_name=environment,
        version=version,
        _id=vol_id,
        create_if_missing=create_if_missing and name is not None,
    )
    vol._mount_options, vol._read_only = opts
    return vol


def _utf8_name(name: str) -> bool:
    """True if a name from the local file system is valid UTF-8 (volume paths must be)."""
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True


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

    async def __aenter__(self) -> BatchUpload:
        """``async with vol.batch_upload() as batch`` (Modal's spelling): enter off the loop."""
        import asyncio

        return await asyncio.to_thread(self.__enter__)

    async def __aexit__(self, *exc: Any) -> None:
        """Upload and commit off the event loop."""
        import asyncio

        await asyncio.to_thread(self.__exit__, *exc)

    def _target(self, remote_path: str, local_name: str | None) -> str:
        if isinstance(remote_path, bytes):
            remote_path = remote_path.decode()
        if not normalize_path(remote_path):
            # As Modal: a file path is needed (InvalidError is a ValueError).
            raise InvalidError(
                f"remote_path {remote_path!r} must refer to a file, not the volume root '/'"
            )
        if remote_path.endswith("/"):
            if not local_name:
                # as Modal: a file object has no name to put into the folder
                raise InvalidError(
                    f"remote_path ({remote_path}) must refer to a file - cannot end with /"
                )
            remote_path = remote_path + local_name
        p = normalize_path(remote_path)
        if p in self._changes:
            raise InvalidError(f"{p} was already added to this batch")
        return p

    def put_file(
        self,
        local_file: str | os.PathLike[str] | BinaryIO,
        remote_path: str,
        mode: int | None = None,
        *,
        mtime_ns: int | None = None,
    ) -> None:
        """Add a local file (a path or a binary file object) at ``remote_path``.

        ``mode`` sets the permission bits (default: the local file's, else 0o644).
        ``mtime_ns``: the modification time to store for a file object (default: now);
        a file given by path keeps its own.

        A file given by path is stored only as one state it had: if it changes while it
        is read (a program saving over it), it is read again, a few times over about a
        second, then InvalidError is raised rather than a mix of two versions stored.
        A file that another process still holds open for writing once read is stored
        as read, with a warning (an upload has no later moment to wait for).
        """
        if self._writer is None:
            raise InvalidError("use put_file inside `with vol.batch_upload() as batch:`")
        if isinstance(local_file, (str, os.PathLike)):
            lp = Path(local_file)
            if not lp.is_file():
                raise NotFoundError(f"local file {lp} does not exist or is not a regular file")
            target = self._target(remote_path, lp.name)
            entry = self._read_local(lp, mode, quiet.Writers(lp.parent, 1), lp.name)
        else:
            target = self._target(remote_path, None)
            entry = self._writer.file_entry(
                local_file, mode=0o644 if mode is None else mode, mtime_ns=mtime_ns
            )
        self._changes[target] = entry
        self._added(entry)

    def _add_folder(self, remote_path: str) -> None:
        """Make sure folder ``remote_path`` exists after the commit (kept if empty)."""
        if self._writer is None:
            raise InvalidError("use _add_folder inside `with vol.batch_upload() as batch:`")
        self._changes[self._target(remote_path, None)] = "dir"

    def _added(self, entry: Entry) -> None:
        """Called with the entry of each file :meth:`put_file` or :meth:`put_directory`
        adds (a subclass counts them: the CLI's progress)."""

    def _read_local(
        self, lp: Path | str, mode: int | None, writers: quiet.Writers, name: str
    ) -> Entry:
        """Store local file ``lp`` as one state it had (see :meth:`put_file`); ``writers``
        (of its folder) tells who holds it, as ``name``, open for writing."""
        assert self._writer is not None
        for pause in (*_REREAD_PAUSES, None):
            with open(lp, "rb") as f:
                before = os.fstat(f.fileno())
                entry = self._writer.file_entry(
                    f,
                    mode=stat_mod.S_IMODE(before.st_mode) if mode is None else mode,
                    mtime_ns=before.st_mtime_ns,
                )
                after = os.fstat(f.fileno())
            # what was read is unreferenced if it is read again (gc frees it)
            if quiet.signature(before) == quiet.signature(after) and entry.size == after.st_size:
                break
            if pause is None:
                raise InvalidError(
                    f"{lp} changed while it was read, {len(_REREAD_PAUSES) + 1} times: upload "
                    "it once the program writing it has finished"
                )
            time.sleep(pause)
        # the kernel's lease, then /proc (looked at again for a file changed since)
        who = writers.get(name, after.st_mode, after.st_ctime_ns)
        if who:
            import warnings

            warnings.warn(
                f"{lp} is open for writing by {', '.join(who[:3])}: uploaded as it was "
                "read, which may be before that program finished writing it",
                stacklevel=3,
            )
        return entry

    def put_directory(
        self, local_path: str | os.PathLike[str], remote_path: str, recursive: bool = True
    ) -> None:
        """Add every file of a local folder below ``remote_path`` (all levels if ``recursive``).

        Symbolic links are stored as links, never followed; empty folders are kept.
        Names that are not UTF-8, FIFOs, sockets and devices are skipped, and named in a
        warning (a name as the escaped bytes it has on disk).
        """
        lp = Path(local_path)
        if not lp.is_dir():
            raise NotFoundError(f"local folder {lp} does not exist")
        base = normalize_path(remote_path if isinstance(remote_path, str) else remote_path.decode())
        skipped: list[str] = []
        before = len(self._changes)

        def unreadable(e: OSError) -> None:
            raise e  # a folder that cannot be listed is an error, never "nothing there"

        # Who holds the files open for writing: asked of the kernel file by file while
        # there are few (a lease each), then one look at every process for the whole
        # tree (a lease per file was a sixth of uploading 10,000 small files; a look per
        # folder would cost a tree of many small folders one look each).
        tree_writers: quiet.Writers | None = None
        files_seen = 0
        for dirpath, dirs, files in os.walk(lp, onerror=unreadable):
            rel = os.path.relpath(dirpath, lp)
            rel = "" if rel == "." else rel.replace(os.sep, "/")
            prefix = "/".join(x for x in (base, rel) if x)
            for d in list(dirs):
                full = Path(dirpath, d)
                if full.is_symlink():  # a link to a folder is a link: stored as one
                    dirs.remove(d)
                    files.append(d)
                elif not recursive:
                    continue
                elif not _utf8_name(d):
                    dirs.remove(d)
                    skipped.append(f"{os.fsencode(full)!r}: the name is not valid UTF-8")
                elif not any(full.iterdir()):
                    self._changes[f"{prefix}/{d}" if prefix else d] = "dir"
            if not recursive:
                dirs[:] = []
            files_seen += len(files)
            if tree_writers is None and files_seen > quiet.LEASE_UP_TO:
                tree_writers = quiet.Writers(lp, files_seen)
            writers = tree_writers or quiet.Writers(dirpath, len(files))
            asked = f"{rel}/" if tree_writers is not None and rel else ""  # relative to its root
            for name in sorted(files):
                full = os.path.join(dirpath, name)
                remote = f"{prefix}/{name}" if prefix else name
                if not _utf8_name(name):
                    skipped.append(f"{os.fsencode(full)!r}: the name is not valid UTF-8")
                    continue
                try:
                    st = os.lstat(full)
                except FileNotFoundError:
                    continue  # deleted while listed
                if stat_mod.S_ISLNK(st.st_mode):
                    target = os.readlink(full)
                    self._changes[self._target(remote, None)] = Entry(
                        "", LINK, 0o777, len(target), st.st_mtime_ns, target=target
                    )
                elif stat_mod.S_ISREG(st.st_mode):
                    target = self._target(remote, name)
                    entry = self._read_local(full, None, writers, asked + name)
                    self._changes[target] = entry
                    self._added(entry)
                else:
                    skipped.append(f"{full}: not a regular file, folder or link")
        if base and len(self._changes) == before:
            self._changes[self._target(base, None)] = "dir"  # an empty folder is kept too
        if skipped:
            import warnings

            warnings.warn(
                f"put_directory skipped {len(skipped)} path(s): " + "; ".join(skipped),
                stacklevel=2,
            )

    @bulk_step
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
                fresh_head=True,  # the head just checked
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


def _check_destination_parent(
    repo: Repository, root: str, path: str, what: str, volume: str, make_parents: bool
) -> None:
    """Refuse a copy or move to ``path`` whose folder is not there in ``root``.

    A file in the way is named (AlreadyExistsError) whether or not missing folders are
    to be made; a missing folder is NotFoundError unless ``make_parents``."""
    parent = _parent_path(path)
    pe = repo.lookup(parent, root)
    if pe is None or pe.kind != DIR:
        _refuse_file_parent(repo, root, path, what, volume)
    if pe is None and not make_parents:
        raise NotFoundError(
            f"destination folder {parent or '/'} does not exist in volume {volume!r}"
        )


def _batch_message(changes: dict[str, Any]) -> str:
    paths = sorted(changes)
    if len(paths) == 1:
        return f"upload {paths[0]}"
    return f"upload {len(paths)} paths ({paths[0]}, …)"
