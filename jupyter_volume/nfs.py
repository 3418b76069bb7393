"""Network file systems: folders that many processes share live, shaped like Modal's
``NetworkFileSystem``.

A network file system (NFS) is a volume underneath (same repository format, so it has
dedup, crash safety, no torn files and history), with a different promise:

* every API call is one commit and every read sees the newest commit, so what one
  handle writes, every other handle (in any process) reads at once;
* :meth:`NetworkFileSystem.mount` gives a *live* folder (see
  :mod:`jupyter_volume.livesync`): no ``commit()`` and no ``reload()``, changes flow
  both ways about a second after they are made;
* history is a safety net (``history``, ``diff``, ``restore``), thinned by a default
  retention policy that is applied automatically at most once an hour.

Names live in their own namespace on the store (``nfs-names/<name>``), so an NFS and a
volume may share a name. Layer: beside :mod:`jupyter_volume.volume`, which it builds on.

Example::

    nfs = NetworkFileSystem.from_name("cache", create_if_missing=True)
    nfs.write_file("models/a.bin", io.BytesIO(b"weights"))
    b"".join(nfs.read_file("models/a.bin"))  # b"weights"
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePath, PurePosixPath
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from . import names
from .aio import aio
from .errors import InvalidError, NotFoundError, VolumeError
from .names import normalize_path
from .objects import check_kind_name, detach_mount, ephemeral_volume, open_base
from .store import Store
from .volume import CommitInfo, DiffEntry, FileEntry, Volume, _swept_beside
from .volume import _open as _open_store

if TYPE_CHECKING:
    from .livesync import LiveMount

__all__ = ["DEFAULT_RETENTION", "NAMESPACE", "NetworkFileSystem", "NfsLock"]

#: Where NFS names live on a store (volumes use ``names/``).
NAMESPACE = "nfs-names/"
#: The retention an NFS starts with: every version for a day, then the newest of each
#: hour (for the 720 most recent hours that saw changes, about 30 days), then none.
DEFAULT_RETENTION: dict[str, Any] = {"keep_within": 86400.0, "keep_hourly": 720}
#: Seconds between automatic retention runs on one NFS
#: (``$JUPYTER_VOLUME_NFS_RETENTION_EVERY``; at most hourly by default).
RETENTION_EVERY = float(os.environ.get("JUPYTER_VOLUME_NFS_RETENTION_EVERY", "") or 3600.0)
_RETENTION_MARK = "nfs-retention"  # under the volume's own prefix: deleted with it

_checked: dict[tuple[str, str], float] = {}  # (store url, id) -> monotonic time of last look
_running: dict[str, threading.Thread] = {}  # id -> its latest retention run (under _checked_lock)
_checked_lock = threading.Lock()


def _check_nfs_name(name: object) -> str:
    return check_kind_name(name, "network file system", "names")


#: The volume engine's words that an NFS user must not see, and what they say instead.
_WORDS = (
    (
        "cannot remove the volume root; use vol.delete() to delete the volume",
        "cannot remove the root of a network file system; use NetworkFileSystem.delete(name) "
        "to delete it",
    ),
    (
        "it was deleted or renamed (its name may now be another volume's)",
        "it was deleted (its name may now be another network file system's)",
    ),
    ("ephemeral volume ", "ephemeral network file system "),
    ("is not this volume's mount", "is not this network file system's live folder"),
    ("mount a volume at", "mount a network file system at"),
    ("the volume still has every file", "the network file system still has every file"),
    ("delete files from the volume,", "delete files from the network file system,"),
    ("escapes the volume root", "escapes the network file system's root"),
    ("delete the volume instead", "delete the network file system instead"),
    ("the volume root", "the root of the network file system"),
    ("in this volume", "in this network file system"),
)

#: What the engine says of a volume whose objects are gone (deleted by another process).
_NO_LOG = re.compile(r"volume [0-9a-f]{32} has no commit log \(was it deleted\?\)")


def _nfs_text(text: str, name: str | None) -> str:
    """``text``, an error message of the volume engine, in a network file system's words."""
    if name is not None:
        text = text.replace(f"volume {name!r}", f"network file system {name!r}")
    said = (
        f"network file system {name!r} no longer exists (it was deleted)"
        if name is not None
        else "this ephemeral network file system no longer exists (it was deleted)"
    )
    text = _NO_LOG.sub(lambda _m: said, text)  # a function: the name's repr may hold '\\u'
    for old, new in _WORDS:
        text = text.replace(old, new)
    return text


@contextlib.contextmanager
def _worded(name: str | None) -> Iterator[None]:
    """Errors from the volume engine name "volume 'x'": say "network file system 'x'"."""
    try:
        yield
    except VolumeError as e:
        if e.args and isinstance(e.args[0], str):
            text = _nfs_text(e.args[0], name)
            if text != e.args[0]:
                e.args = (text, *e.args[1:])
        raise


def _not_found(store: Store, name: str) -> NotFoundError:
    hint = ""
    with contextlib.suppress(VolumeError):
        names.resolve(store, name)
        hint = (
            f" (a volume named {name!r} exists, but network file systems have their own"
            " names: use Volume.from_name for it)"
        )
    return NotFoundError(
        f"network file system {name!r} not found in {store.url}: create it with "
        f"NetworkFileSystem.from_name({name!r}, create_if_missing=True) or "
        f"`jupyter volume nfs create {name}`{hint}"
    )


def _start_policy(store: Store, vol_id: str) -> None:
    """Give a new NFS the default retention, unless it already has a policy."""
    from dataclasses import asdict

    from .repository import gc
    from .repository.codec import dump_json

    policy = gc.RetentionPolicy(**DEFAULT_RETENTION).validate()
    store.put_if_absent(f"vols/{vol_id}/policy", dump_json(asdict(policy)))


def _create(store: Store, name: str, *, allow_existing: bool) -> names.VolumeMeta:
    meta = names.create(store, name, allow_existing=allow_existing, namespace=NAMESPACE)
    _start_policy(store, meta.id)
    return meta


class _Objects:
    """``NetworkFileSystem.objects``: create, list and delete network file systems by name."""

    @aio
    def create(
        self,
        name: str,
        *,
        allow_existing: bool = False,
        environment_name: str | None = None,
        store: Store | str | None = None,
    ) -> None:
        """Create a network file system. Raises AlreadyExistsError unless ``allow_existing``."""
        _check_nfs_name(name)
        _, _, s = _open_store(store, environment_name, create=True)
        with _worded(name):
            _create(s, name, allow_existing=allow_existing)

    @aio
    def list(
        self, *, environment_name: str | None = None, store: Store | str | None = None
    ) -> list[NetworkFileSystem]:
        """Every network file system in the store (and environment), sorted by name."""
        base, env, s = _open_store(store, environment_name)
        metas = _swept_beside(s, lambda: names.list_volumes(s, namespace=NAMESPACE))
        return [
            NetworkFileSystem(m.name, store=base, environment_name=env, _meta=m)  # type: ignore[arg-type]
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
        """Delete a network file system and all its history (its live mounts here stop).

        Raises NotFoundError unless ``allow_missing``.
        """
        _check_nfs_name(name)
        _, _, s = _open_store(store, environment_name)
        try:
            meta = names.resolve(s, name, namespace=NAMESPACE)
        except NotFoundError:
            if allow_missing:
                return
            raise _not_found(s, name) from None
        detach_mount(s, meta.id)
        names.delete(s, name, allow_missing=True, namespace=NAMESPACE)


class NetworkFileSystem:
    """A folder in an object store that many processes share live.

    Get a handle with :meth:`from_name` (lazy) or a throwaway one with
    :meth:`ephemeral`. Every method reads the newest state and every write is visible
    to every other handle at once; every method also has an ``.aio`` form. ``store`` is
    a URL or :class:`~jupyter_volume.store.Store` (default: the configured store);
    ``environment_name`` picks an environment (default: the configured one).

    Example::

        nfs = NetworkFileSystem.from_name("shared", create_if_missing=True)
        with nfs.mount("shared") as m:   # a live folder
            Path("shared/notes.txt").write_text("hi")  # other mounts see it in ~1 s
    """

    objects = _Objects()

    def __init__(
        self,
        name: str | None,
        *,
        environment_name: str | None = None,
        store: Store | str | None = None,
        create_if_missing: bool = False,
        _meta: names.VolumeMeta | None = None,
    ) -> None:
        if name is not None or _meta is None:
            _check_nfs_name(name)
        self.name = name
        self._base, self.environment_name, self.store = _open_store(
            store, environment_name, create=create_if_missing
        )
        self._create_if_missing = create_if_missing
        self._meta = _meta
        self._volume: Volume | None = None
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        what = repr(self.name) if self.name is not None else "ephemeral"
        env = f", environment_name={self.environment_name!r}" if self.environment_name else ""
        return f"NetworkFileSystem({what}, store={self._base.url!r}{env})"

    def __reduce__(self) -> tuple[Any, ...]:
        # By reference, never by state: the receiving process opens the same store URL
        # (credentials come from its own environment); an ephemeral one travels by id.
        return (
            _unpickle_nfs,
            (self.name, self._base.url, self.environment_name, self._meta, self._create_if_missing),
        )

    # -- handles -------------------------------------------------------------------------------
    @aio
    @staticmethod
    def from_name(
        name: str,
        *,
        environment_name: str | None = None,
        create_if_missing: bool = False,
        store: Store | str | None = None,
    ) -> NetworkFileSystem:
        """A handle on network file system ``name``; nothing is read until it is used.

        With ``create_if_missing`` the first use creates it if it does not exist.
        Raises InvalidError at once for a bad name.
        """
        return NetworkFileSystem(
            name,
            environment_name=environment_name,
            create_if_missing=create_if_missing,
            store=store,
        )

    @aio(kind="context")
    @classmethod
    @contextlib.contextmanager
    def ephemeral(
        cls, *, environment_name: str | None = None, store: Store | str | None = None
    ) -> Iterator[NetworkFileSystem]:
        """A new anonymous network file system, deleted when the block exits.

        It lives while this process renews its lease: if the process dies, the next
        ordinary call on the store reclaims it. Example::

            with NetworkFileSystem.ephemeral() as nfs:
                assert nfs.listdir("/") == []
        """
        base, env, s = _open_store(store, environment_name, create=True)
        with ephemeral_volume(s) as meta:
            _start_policy(s, meta.id)
            try:
                yield cls(None, store=base, environment_name=env, _meta=meta)
            finally:
                # a retention run started by a call above would write its marker into
                # the volume after the volume is deleted: let it finish first
                with _checked_lock:
                    running = _running.pop(meta.id, None)
                if running is not None:
                    running.join(timeout=60)

    @aio
    @staticmethod
    def delete(
        name: str,
        *,
        allow_missing: bool = False,
        environment_name: str | None = None,
        store: Store | str | None = None,
    ) -> None:
        """Delete network file system ``name`` and its whole history (as Modal's
        ``NetworkFileSystem.delete(name)``). Raises NotFoundError unless ``allow_missing``."""
        NetworkFileSystem.objects.delete(
            name, allow_missing=allow_missing, environment_name=environment_name, store=store
        )

    def _resolve(self) -> names.VolumeMeta:
        with self._lock:
            if self._meta is None:
                name = self.name
                assert name is not None
                if self._create_if_missing:
                    self._meta = _swept_beside(
                        self.store, lambda: _create(self.store, name, allow_existing=True)
                    )
                else:
                    try:
                        self._meta = _swept_beside(
                            self.store,
                            lambda: names.resolve(self.store, name, namespace=NAMESPACE),
                        )
                    except NotFoundError:
                        raise _not_found(self.store, name) from None
            return self._meta

    @property
    def _vol(self) -> Volume:
        """The volume engine's handle on this NFS (reads see the newest commit)."""
        meta = self._resolve()
        with self._lock:
            if self._volume is None:
                self._volume = Volume(
                    meta.name,
                    store=self._base,
                    environment_name=self.environment_name,
                    _meta=meta,
                    _namespace=NAMESPACE,
                )
            vol = self._volume
        self._retention_due()
        return vol

    @aio
    def hydrate(self) -> NetworkFileSystem:
        """Look the NFS up now (creating it with ``create_if_missing``); return self.

        Raises NotFoundError if it does not exist.
        """
        self._resolve()
        return self

    @property
    def object_id(self) -> str:
        """The NFS's id (looks it up if needed)."""
        return self._resolve().id

    # -- files -----------------------------------------------------------------------------------
    @aio
    def write_file(
        self,
        remote_path: str,
        fp: BinaryIO,
        progress_cb: Callable[..., Any] | None = None,
    ) -> int:
        """Write the rest of file object ``fp`` to ``remote_path`` atomically; return the
        number of bytes written.

        Missing parent folders are created. A ``remote_path`` ending in ``/`` is a folder:
        the file goes into it under ``fp``'s own name. An existing file is replaced (the
        old version stays in history); a folder is never replaced by a file.

        ``progress_cb`` is called as Modal calls it (so a progress handler written for
        Modal works here): ``task = progress_cb(name=remote_path, size=n)`` once (``n``
        None when ``fp`` cannot seek), ``progress_cb(task, advance=k)`` with each piece
        read, and ``progress_cb(task, complete=True)`` once the file is committed.
        """
        _check_binary_fp(fp)  # before progress_cb hears of a task it would never see end
        remote_path = _posix(remote_path)
        if not isinstance(remote_path, str):
            raise InvalidError(f"remote_path must be a string, got {type(remote_path).__name__}")
        if remote_path.endswith("/"):
            fp_name = getattr(fp, "name", "")  # an int for a file opened on a descriptor
            local_name = Path(fp_name).name if isinstance(fp_name, str | os.PathLike) else ""
            if not local_name:
                raise InvalidError(
                    f"remote_path {remote_path!r} is a folder and the file object has no name:"
                    " give the file's path"
                )
            remote_path += local_name
        with _worded(self.name):
            if not normalize_path(remote_path):
                raise InvalidError("remote_path must name a file, not the root '/'")
            task = _Task(progress_cb, remote_path, _remaining(fp))
            counted = _Counting(fp, task.advance if progress_cb is not None else None)
            with self._vol.batch_upload(force=True) as batch:
                batch.put_file(counted, remote_path)  # type: ignore[arg-type]
        task.complete()
        return counted.total

    @aio(kind="iter")
    def read_file(self, path: str) -> Iterator[bytes]:
        """Yield the bytes of file ``path`` in pieces, from the newest commit.

        Raises FileNotFoundError (:class:`~jupyter_volume.NotFoundError`) if there is no
        such file, InvalidError for a folder.
        """
        with _worded(self.name):
            it = self._vol.read_file(_posix(path))
        return _worded_iter(it, self.name)

    @aio(kind="iter")
    def iterdir(self, path: str = "/", *, recursive: bool = False) -> Iterator[FileEntry]:
        """Yield the entries under ``path`` (as :meth:`Volume.iterdir`, one level by
        default): a folder yields its contents, a file itself, a glob (a path with ``*``)
        every match. NotFoundError if ``path`` does not exist."""
        with _worded(self.name):
            it = self._vol.iterdir(_posix(path), recursive=recursive)
        return _worded_iter(it, self.name)

    @aio
    def listdir(self, path: str = "/", *, recursive: bool = False) -> list[FileEntry]:
        """The entries under ``path`` as a list (see :meth:`iterdir`)."""
        with _worded(self.name):
            return self._vol.listdir(_posix(path), recursive=recursive)

    @aio
    def add_local_file(
        self,
        local_path: str | os.PathLike[str],
        remote_path: str | PurePosixPath | None = None,
        progress_cb: Callable[..., Any] | None = None,
    ) -> int:
        """Upload local file ``local_path`` to ``remote_path`` (default: ``/`` + its name);
        return the bytes written. NotFoundError if the local file does not exist."""
        lp = Path(local_path)
        if not lp.is_file():
            raise NotFoundError(f"local file {lp} does not exist or is not a regular file")
        target = (
            PurePosixPath("/", lp.name).as_posix()
            if remote_path is None
            else PurePosixPath(remote_path).as_posix()
            + ("/" if str(remote_path).endswith("/") else "")
        )
        with open(lp, "rb") as f:
            return self.write_file(target, f, progress_cb)

    @aio
    def add_local_dir(
        self,
        local_path: str | os.PathLike[str],
        remote_path: str | PurePosixPath | None = None,
        progress_cb: Callable[..., Any] | None = None,
    ) -> None:
        """Upload every file below local folder ``local_path`` to ``remote_path``
        (default: ``/`` + the folder's name), as one commit: other handles see all of it
        or none. Existing files are replaced. ``progress_cb`` hears of each file as
        :meth:`write_file` says (Modal's protocol), once the commit has landed."""
        lp = Path(local_path)
        if not lp.is_dir():
            raise NotFoundError(f"local folder {lp} does not exist or is not a folder")
        target = (
            PurePosixPath("/", lp.name).as_posix()
            if remote_path is None
            else PurePosixPath(remote_path).as_posix()
        )
        with _worded(self.name):
            with self._vol.batch_upload(force=True) as batch:
                batch.put_directory(lp, target)
        if progress_cb is not None:
            for p in sorted(lp.rglob("*")):
                if p.is_file() and not p.is_symlink():
                    size = p.stat().st_size
                    remote = PurePosixPath(target, p.relative_to(lp).as_posix()).as_posix()
                    task = _Task(progress_cb, remote, size)
                    task.advance(size)
                    task.complete()

    @aio
    def remove_file(self, path: str, recursive: bool = False) -> None:
        """Delete a file, or a folder with ``recursive=True``, as one commit.

        Raises FileNotFoundError (:class:`~jupyter_volume.NotFoundError`) if it does not
        exist, InvalidError for a non-empty folder without ``recursive`` or for ``/``.
        """
        with _worded(self.name):
            self._vol.remove_file(_posix(path), recursive=recursive)

    @aio
    def stat(self, path: str) -> FileEntry:
        """The :class:`~jupyter_volume.FileEntry` of one path; NotFoundError if missing."""
        with _worded(self.name):
            return self._vol.stat(_posix(path))

    # -- history (a safety net) -------------------------------------------------------------------
    @aio
    def history(self, limit: int | None = None, *, before: int | None = None) -> list[CommitInfo]:
        """Commits newest first: every API call and every live-mount sync is one.
        ``limit``: at most this many (None: all); ``before``: only those older than
        commit ``before`` (the next page)."""
        with _worded(self.name):
            return self._vol.history(limit, before=before)

    @aio
    def diff(self, a: int, b: int | None = None) -> list[DiffEntry]:
        """What changed from commit ``a`` to commit ``b`` (default: the newest)."""
        with _worded(self.name):
            return self._vol.diff(a, b)

    @aio
    def restore(self, commit: int, path: str | None = None) -> CommitInfo | None:
        """Bring back everything, or one path, as it was at ``commit`` (as a new commit;
        live mounts pick it up like any other change)."""
        with _worded(self.name):
            return self._vol.restore(commit, None if path is None else _posix(path))

    @property
    def retention(self) -> Any:
        """The retention policy (:data:`DEFAULT_RETENTION` unless changed)."""
        return self._vol.retention

    @aio
    def set_retention(self, **policy: Any) -> Any:
        """Change which history is kept (arguments as :meth:`Volume.set_retention`).

        The policy is applied automatically at most once per :data:`RETENTION_EVERY`
        seconds, by live mounts and by ordinary calls; :meth:`gc` applies it now.
        """
        return self._vol.set_retention(**policy)

    @aio
    def gc(self, *, dry_run: bool = False, grace: float | str | None = None) -> Any:
        """Apply the retention policy now and reclaim space (see :meth:`Volume.gc`)."""
        return self._vol.gc(dry_run=dry_run, grace=grace)

    def _retention_due(self, *, wait: bool = False) -> threading.Thread | None:
        """Start the retention policy in the background if this NFS has not had it for
        :data:`RETENTION_EVERY` seconds (judged by a marker object and the store's clock,
        so many processes run it about once per period between them). Cheap otherwise:
        at most one look at the store per period per process."""
        meta = self._meta
        if meta is None:
            return None
        key = (self.store.url, meta.id)
        now = time.monotonic()
        with _checked_lock:
            last = _checked.get(key)
            if last is not None and now - last < RETENTION_EVERY:
                return None
            _checked[key] = now
        t = threading.Thread(
            target=_apply_retention,
            args=(self.store, meta.id),
            name=f"jv-nfs-retention-{meta.id[:8]}",
            daemon=True,
        )
        with _checked_lock:
            _running[meta.id] = t
        t.start()
        if wait:
            t.join()
        return t

    # -- sharing --------------------------------------------------------------------------------
    @aio(kind="context")
    def lock(
        self, path: str = "lock", *, lease: float = 30.0, timeout: float | None = None
    ) -> NfsLock:
        """A lock, across processes and machines, for a file that several writers update
        in place (a shelve or SQLite cache); backed by the Dict lock.

        While held, this process's live mount of the NFS (if any) has the newest version
        of every file; releasing it pushes what the holder changed before anyone else
        can take the lock, so no update is lost. ``timeout``: seconds to wait (then
        TimeoutError); ``lease``: seconds after which a dead holder's lock is free.

        Example (the shelve cache of Modal's guide)::

            nfs.mount("cache")
            with nfs.lock("cache/shelf"):
                with shelve.open("cache/shelf") as db:
                    db["hits"] = db.get("hits", 0) + 1
        """
        return NfsLock(self, path, lease, timeout)

    @aio
    def mount(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        interval: float | None = None,
        ignore: list[str] | None = None,
        settle: float | None = None,
        settle_max_wait: float | None = None,
    ) -> LiveMount:
        """A live folder (default ``./NAME``): see :class:`~jupyter_volume.livesync.LiveMount`.

        What is written there reaches the store about a second after it is quiet; what
        others write appears there about a second later. Stop with ``unmount()`` (or use
        the mount as a context manager), which pushes what is left. ``interval``: seconds
        between sync rounds; ``ignore``: name patterns never synced; ``settle`` and
        ``settle_max_wait``: the quiet rule (see :class:`~jupyter_volume.mount.Mount`).
        """
        from .livesync import LiveMount

        if path is None:
            meta = self._resolve()
            path = Path.cwd() / (meta.name or f"nfs-{meta.id[:12]}")
        with _worded(self.name):
            return LiveMount(
                self,
                path,
                interval=interval,
                ignore=ignore,
                **{
                    k: v
                    for k, v in (("settle", settle), ("settle_max_wait", settle_max_wait))
                    if v is not None
                },
            )


def _unpickle_nfs(
    name: str | None,
    url: str,
    environment: str,
    meta: names.VolumeMeta | None,
    create_if_missing: bool = False,
) -> NetworkFileSystem:
    # opened as is, never checked here (see volume._unpickle_volume)
    return NetworkFileSystem(
        name,
        store=open_base(url),
        environment_name=environment,
        create_if_missing=create_if_missing and name is not None,
        _meta=meta,
    )


def _apply_retention(store: Store, vol_id: str) -> None:
    """One automatic retention run (in a daemon thread); failures are only logged."""
    import logging

    from .lease import store_now
    from .repository import gc
    from .volume import _repository

    log = logging.getLogger(__name__)
    mark = f"vols/{vol_id}/{_RETENTION_MARK}"
    try:
        try:
            info = store.stat(mark)
        except NotFoundError:
            # Never collected (a new NFS, or one from before this marker): start the
            # period now rather than run gc at every NFS's first use.
            store.put_if_absent(mark, b"")
            return
        if store_now(store) - info.mtime < RETENTION_EVERY:
            return
        store.put(mark, b"")
        gc.collect(_repository(store, vol_id))
    except Exception as e:  # noqa: BLE001 - retention is housekeeping: never break a call
        log.info("automatic retention of network file system %s skipped: %s", vol_id, e)


def _remaining(fp: Any) -> int | None:
    """Bytes left to read in ``fp``, or None if it cannot tell (not seekable)."""
    try:
        if not fp.seekable():
            return None
        here = fp.tell()
        end = fp.seek(0, os.SEEK_END)
        fp.seek(here)
    except (AttributeError, OSError, ValueError):
        return None
    return max(0, end - here)


class _Task:
    """One file's progress, reported through a Modal-style ``progress_cb``: a task made
    with ``name=`` and ``size=``, then ``advance=`` and ``complete=True`` on it."""

    def __init__(self, cb: Callable[..., Any] | None, name: str, size: int | None) -> None:
        self._cb = cb
        self._id = cb(name=name, size=size) if cb is not None else None

    def advance(self, n: int) -> None:
        if self._cb is not None:
            self._cb(self._id, advance=n)

    def complete(self) -> None:
        if self._cb is not None:
            self._cb(self._id, complete=True)


def _check_binary_fp(fp: Any) -> None:
    """Raise InvalidError unless ``fp`` is an open file object that reads bytes.

    Reads nothing: a text-mode file is told by its type (:mod:`io`'s classes), any other
    file-like object by ``fp.read(0)``, which returns ``""`` in text mode and ``b""`` in
    binary mode and consumes nothing.
    """
    if not callable(getattr(fp, "read", None)):
        hint = (
            ": open it first (open(path, 'rb')), or use add_local_file for a local path"
            if isinstance(fp, str | os.PathLike)
            else ""
        )
        raise InvalidError(
            "fp must be a binary file object (open(..., 'rb') or io.BytesIO), got "
            f"{type(fp).__name__}{hint}"
        )
    if getattr(fp, "closed", False) is True:
        raise InvalidError("fp is closed: pass an open binary file object")
    if isinstance(fp, io.TextIOBase | io.BufferedIOBase | io.RawIOBase):
        text = isinstance(fp, io.TextIOBase)
    else:
        try:
            text = isinstance(fp.read(0), str)
        except Exception:  # noqa: BLE001 - a reader that cannot do this fails when read
            text = False
    if text:
        raise InvalidError("fp must be opened in binary mode ('rb'), not text mode")


class _Counting:
    """A read-only file object over ``fp`` that counts the bytes read (and reports them)."""

    def __init__(self, fp: IO[bytes], cb: Callable[[int], Any] | None) -> None:
        self._fp = fp  # checked by write_file (_check_binary_fp) before any progress
        self._cb = cb
        self.total = 0

    def read(self, n: int = -1) -> bytes:
        data = self._fp.read(n)
        if isinstance(data, str):
            raise InvalidError("fp must be opened in binary mode ('rb'), not text mode")
        self.total += len(data)
        if self._cb is not None and data:
            self._cb(len(data))
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


def _posix(path: Any) -> Any:
    """A path given as a :class:`~pathlib.PurePath` (as Modal's own helpers make them)
    in the ``a/b`` form the engine takes; anything else as it is (checked there)."""
    return path.as_posix() if isinstance(path, PurePath) else path


def _worded_iter(it: Iterator[Any], name: str | None) -> Iterator[Any]:
    with _worded(name):
        yield from it


class _LockHolder:
    """What a :class:`~jupyter_volume.dicts.DictLock` needs of its owner: a store to keep
    the lock object in, and a name for messages."""

    def __init__(self, nfs: NetworkFileSystem) -> None:
        self.store = nfs.store
        self._name = nfs.name

    def _what(self) -> str:
        return f"network file system {self._name!r}" if self._name else "an ephemeral NFS"


class NfsLock:
    """A file lock of a network file system (see :meth:`NetworkFileSystem.lock`): a
    context manager, also usable with :meth:`acquire` and :meth:`release`."""

    def __init__(
        self, nfs: NetworkFileSystem, path: str, lease: float, timeout: float | None
    ) -> None:
        from .dicts import DictLock, _seconds
        from .repository.codec import hash_bytes

        p = normalize_path(_posix(path))
        if not p:
            raise InvalidError("a lock names a file: give a path, not the root '/'")
        if not _seconds(lease) or not 0 < lease < float("inf"):
            raise InvalidError(f"lock lease must be a positive number of seconds, got {lease!r}")
        if timeout is not None and (not _seconds(timeout) or not timeout >= 0):
            raise InvalidError(
                f"lock timeout must be 0 or more seconds, or None to wait as long as it "
                f"takes, got {timeout!r}"
            )
        self.nfs = nfs
        self.path = p
        vol_id = nfs._resolve().id
        # kept with the NFS's own objects, so deleting the NFS deletes its locks
        key = f"vols/{vol_id}/locks/{hash_bytes(p.encode())[:32]}"
        self._lock = DictLock(_LockHolder(nfs), key, p, lease, timeout)  # type: ignore[arg-type]

    @property
    def held(self) -> bool:
        """Whether this handle holds the lock now."""
        return self._lock.held

    def _mount(self) -> Any:
        from .livesync import LiveMount
        from .mount import _active_mount

        m = _active_mount(self.nfs.store, self.nfs._resolve().id)
        return m if isinstance(m, LiveMount) else None

    def acquire(self) -> NfsLock:
        """Wait for the lock, take it, and bring this process's live folder up to date."""
        self._lock.acquire()
        try:
            m = self._mount()
            if m is not None:
                m._pull_now()
        except BaseException:
            self._lock.release()
            raise
        return self

    def release(self) -> None:
        """Push this process's changes to the live folder, then free the lock."""
        try:
            m = self._mount()
            if m is not None:
                m._push_now()
        finally:
            self._lock.release()

    def __enter__(self) -> NfsLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<NfsLock {self.path!r} of {self.nfs!r} ({'held' if self.held else 'not held'})>"
