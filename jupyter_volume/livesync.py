"""Live mounts: a network file system's folder, kept in sync both ways without being asked.

A :class:`LiveMount` is a :class:`~jupyter_volume.mount.Mount` whose background loop,
every half second, does what a user of a volume mount does by hand:

* **push**: local changes are committed once they are quiet (the mount's quiet rules:
  a file some process holds open for writing, or one still changing, waits; file
  groups such as ``db`` + ``db-wal`` go together);
* **pull**: other writers' commits are applied, each file written to a temporary name
  and renamed into place, so a reader never sees half a file. Unlike a volume reload
  this is never refused for open files: a file open here only for reading is replaced
  under the reader (who keeps the old version until it reopens the file). A file that
  some process holds open for *writing* is not replaced: the remote version waits
  until the file is closed, and then whichever version was committed last wins (the
  other stays in history).

While the store is unreachable the folder keeps working locally; the outage shows in
:meth:`LiveMount.status` and as a warning after the notebook cell, and local changes
are pushed when the store is back. Mounting the same folder again after a crash pushes
what was never synced instead of overwriting it (the mount's state survives).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import stat as stat_mod
import threading
import time
import warnings
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import quiet
from .errors import InvalidError, NotFoundError, StoreError
from .mount import Mount, MountStatus, _listed, _unchanged_since, _under
from .repository import DIR

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .nfs import NetworkFileSystem
    from .repository import Entry
    from .volume import CommitInfo

__all__ = ["DEFAULT_SETTLE", "DEFAULT_SYNC_INTERVAL", "LiveMount", "LiveStatus"]

log = logging.getLogger(__name__)

#: Seconds between sync rounds (push, then pull) of a live mount: each round costs one
#: listing of the commit log's tail when nothing changed.
DEFAULT_SYNC_INTERVAL = 0.5
#: How long a changed file must stay unchanged before a live mount pushes it (a volume
#: mount's default is longer; files held open for writing wait regardless).
DEFAULT_SETTLE = 0.5
#: Longest wait between attempts while the store is unreachable.
OFFLINE_RETRY_MAX = 10.0
#: Seconds between checks that the network file system still exists.
EXISTS_EVERY = 10.0


@dataclass
class LiveStatus(MountStatus):
    """A live mount's :class:`~jupyter_volume.mount.MountStatus`, plus its connection.

    ``added``/``modified``/``deleted`` are local changes not pushed yet (normally only
    for about a second); ``offline_since`` is when the store stopped answering (None
    while it answers); ``waiting`` names files whose newer remote version waits for a
    local writer to close them; ``stopped`` says why the folder no longer syncs (its
    network file system was deleted), None while it does.
    """

    offline_since: datetime | None = None
    waiting: list[str] = field(default_factory=list)
    stopped: str | None = None

    @property
    def behind(self) -> int:
        """Not meaningful for a live mount (it pulls by itself): always 0 while online."""
        return 0 if self.offline_since is None else super().behind

    def __str__(self) -> str:
        if self.stopped is not None:
            lines = [f"network file system {self.name} at {self.path}: STOPPED SYNCING"]
            lines.append(f"  {self.stopped}")
        else:
            lines = [f"network file system {self.name} live at {self.path}"]
        if self.offline_since is not None and self.stopped is None:
            lines.append(
                f"  OFFLINE since {self.offline_since:%Y-%m-%d %H:%M:%S} UTC: the folder keeps "
                "working locally; changes are pushed when the store is back"
            )
            if self.last_error:
                lines.append(f"  last error: {self.last_error}")
        for label, paths in (
            ("not pushed yet (added)", self.added),
            ("not pushed yet (modified)", self.modified),
            ("not pushed yet (deleted)", self.deleted),
        ):
            lines.extend(f"  {label}: {p}" for p in paths)
        deferred = getattr(self, "deferred", {}) or {}
        lines.extend(f"  push waits: {p} ({why})" for p, why in sorted(deferred.items()))
        lines.extend(f"  remote version waits for a local writer: {p}" for p in self.waiting)
        if self.clean and not self.waiting and self.offline_since is None and not self.stopped:
            lines.append(f"  in sync at commit {self.head_seq}")
        lines.extend(
            f"  not synced: {p} ({_synced_words(why)})" for p, why in sorted(self.skipped.items())
        )
        return "\n".join(lines)


class LiveMount(Mount):
    """A network file system's live folder; make one with :meth:`NetworkFileSystem.mount`.

    There is no ``commit()`` or ``reload()``: the folder syncs by itself every
    ``interval`` seconds (default :data:`DEFAULT_SYNC_INTERVAL`). :meth:`unmount` pushes
    what is left and stops; :meth:`sync` does one round now (never needed, handy in
    scripts that want their writes on the store before they go on). A context manager.
    """

    _INTERVAL_WORDS = ("the sync interval of a live folder", "")

    def __init__(
        self,
        nfs: NetworkFileSystem,
        path: str | os.PathLike[str],
        *,
        interval: float | None = None,
        ignore: list[str] | None = None,
        **kw: Any,
    ) -> None:
        # Set before the base class starts the background loop, which reads them.
        self.nfs = nfs
        self._gone: str | None = None  # why syncing stopped for good (the NFS was deleted)
        self.offline_since: float | None = None
        self._offline_warned = False
        self._waiting: set[str] = set()
        # paths an apply left waiting for a writer (read by _apply_waiting)
        self._rewaited: set[str] = set()
        self._exists_checked = time.monotonic()
        kw.setdefault("settle", DEFAULT_SETTLE)
        super().__init__(
            nfs._vol,
            path,
            read_only=False,
            interval=DEFAULT_SYNC_INTERVAL if interval is None else interval,
            background=True,
            ignore=ignore,
            **kw,
        )

    # -- the sync loop ---------------------------------------------------------------------------
    def _run_committer(self) -> None:  # the base class starts this thread
        while not self._stop.is_set():
            delay = (
                self.interval
                if not self._failures
                else min(self.interval * 2**self._failures, OFFLINE_RETRY_MAX)
            )
            retry = getattr(self, "_retry_after", None)
            if retry is not None and not self._failures:
                delay = min(delay, max(retry, 0.05))  # files may have settled by then
            self._wake.wait(min(delay, threading.TIMEOUT_MAX))  # see Mount._run_committer
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                with self._lock:
                    if self._closed:
                        break
                    with self._worded():
                        self._sync_locked(wait=False)
                self._online()
            except Exception as e:  # noqa: BLE001 - reported, retried, never fatal
                self._failed(e)
                if isinstance(e, StoreError):
                    self._offline(e)
                else:
                    log.warning("live sync of %s failed: %s", self.path, self.last_error)
            if self._deleted():
                self._streak += 1  # news for _after_cell, whatever came before
                self.last_error = self._gone = (
                    f"network file system {self.volume.name!r} was deleted: "
                    f"{self.path} stopped syncing (its files stay)"
                )
                log.warning("%s", self.last_error)
                return
            self.nfs._retention_due()

    def _deleted(self) -> bool:
        """Whether this folder's network file system was deleted (by any process): looked
        up at most every :data:`EXISTS_EVERY` seconds, so a push never lands in the
        remains of a deleted one for long."""
        now = time.monotonic()
        if now - self._exists_checked < EXISTS_EVERY:
            return False
        self._exists_checked = now
        from . import names
        from .nfs import NAMESPACE

        meta = self.nfs._meta
        try:
            if meta is None or meta.name is None:  # ephemeral: alive while its lease is
                return not self.volume.store.exists(names.EPHEMERAL_PREFIX + self._vol_id)
            return names.resolve(self.volume.store, meta.name, namespace=NAMESPACE).id != meta.id
        except NotFoundError:
            return True
        except Exception:  # noqa: BLE001 - the store is out, or similar: not a deletion
            return False

    def _sync_locked(self, *, wait: bool) -> None:
        """Push quiet local changes, then pull what others committed. Caller holds the lock."""
        if self._journal.peek() is not False:
            self._commit_locked(None, self._changes(), kind="auto", wait=wait)
        self._pull_locked()

    def _pull_locked(self) -> None:
        head = self._repo.head(refresh=True)
        if head.seq != self.base_seq or self._index.since_base():
            self._reload_locked(action="sync")
        if self._waiting:
            self._apply_waiting()

    def sync(self) -> None:
        """Push local changes (waiting for files still being written, up to the settle
        limit) and pull others' changes, now. Raises StoreError if the store is down,
        NotFoundError if the network file system was deleted."""
        with self._lock:
            self._check_open()
            self._check_alive()
            with self._worded():
                self._sync_locked(wait=True)
        self._online()

    def _check_alive(self) -> None:
        if self._gone is not None:
            raise NotFoundError(f"{self._gone}: nothing is pushed or pulled any more")

    def _worded(self) -> Any:
        from .nfs import _worded

        return _worded(self.volume.name)

    def _pull_now(self) -> None:
        """Apply others' newest commits now (taking a file lock does this)."""
        with self._lock:
            self._check_open()
            self._check_alive()
            with self._worded():
                self._pull_locked()

    def _push_now(self) -> None:
        """Push local changes now, without the settle interval (releasing a file lock
        does this: the holder has closed its files, and nobody else may write them)."""
        with self._lock:
            self._check_open()
            saved = self._snapshot
            self._snapshot = dataclasses.replace(saved, settle=0.0)
            try:
                self._check_alive()
                with self._worded():
                    self._commit_locked(None, self._changes(), kind="auto", wait=True)
            finally:
                self._snapshot = saved

    def _online(self) -> None:
        self.last_error = None
        self._failures = 0
        if self.offline_since is not None:
            log.warning("network file system folder %s reaches its store again", self.path)
            self.offline_since = None

    def _offline(self, e: BaseException) -> None:
        if self.offline_since is None:
            self.offline_since = time.time()
            self._offline_warned = False
            log.warning(
                "network file system folder %s cannot reach its store (%s): working locally",
                self.path,
                e,
            )

    def _after_cell(self, *_a: Any) -> None:
        """After each notebook cell: sync soon, and say once if the store is out or
        syncing fails for another reason."""
        self._wake.set()
        err = self.last_error
        # once per failure streak (its errors often differ only by the object they
        # name), attributed to jupyter_volume: see Mount._warn_problems and _warn
        if self.offline_since is None and err and self._streak != self._warned_streak:
            self._warned_streak = self._streak
            self._warn(
                f"live folder {self.path} of network file system {self.volume.name!r}: {err}"
            )
        if self.offline_since is not None and not self._offline_warned:
            self._offline_warned = True
            self._warn(
                f"network file system {self.volume.name!r} cannot reach its store "
                f"({self.last_error}): {self.path} keeps working locally and its changes "
                "will be pushed when the store is back"
            )
        # paths that are never synced (a FIFO, a name that is not UTF-8), as a volume
        # mount says it after the cell
        self._warn_skipped(
            f"live folder {self.path} of network file system {self.volume.name!r}",
            "never synced",
            _synced_words,
        )

    def _warn_deferred(self, held: dict[str, str]) -> None:
        """Say which files an explicit push (sync, a lock's release, unmount) left, and why."""
        shown = _listed(held, 5, "{path} ({why})")
        warnings.warn(
            f"network file system {self.volume.name!r}: {len(held)} file(s) not pushed yet, "
            f"since they are open for writing or still changing: {shown}. They are pushed "
            "once closed and quiet (after unmount(): when this folder is mounted again).",
            stacklevel=4,
        )

    # -- pulling ---------------------------------------------------------------------------------
    def _refuse_written(self, paths: dict[str, Entry | None], action: str) -> None:
        # A live folder never refuses a pull: what a program is writing waits instead
        # (see _apply_paths).
        return

    def _apply_paths(self, paths: dict[str, Entry | None], pending: dict[str, int]) -> None:
        # A file some process holds open for writing is never replaced under its writer:
        # its remote version waits (see _apply_waiting). So does every change that needs
        # it gone: what the commit puts below it (it became a folder elsewhere), and a
        # folder above it that the commit removes or turns into a file. Applied without
        # it, the first made the whole pull fail ("Not a directory") and the second left
        # an empty folder here for good.
        busy = quiet.Writers(self.path, len(paths))
        held = {p for p in paths if busy.get(p)}
        if held:
            tied = [
                p
                for p, e in paths.items()
                if p not in held
                and any(
                    _under(p, h) or (_under(h, p) and (e is None or e.kind != DIR)) for h in held
                )
            ]
            held.update(tied)
            for rel in held:
                del paths[rel]
            self._waiting.update(held)
            self._rewaited.update(held)
            self._save_waiting()
        self._drop_blocked(paths)
        super()._apply_paths(paths, pending)

    def _drop_blocked(self, paths: dict[str, Entry | None]) -> None:
        """Take out of ``paths`` what lies below a local file or link that stays (a local
        change not pushed yet, such as a file still being written, where another writer
        made a folder): it cannot be applied here (the base class failed the whole pull
        with "Not a directory", every round while that file kept changing), and the
        local path's push, the newer act, replaces the remote folder anyway."""
        root = os.fspath(self.path)
        verdict: dict[str, bool] = {}  # folder path -> it or a folder above it stays

        def stays(a: str) -> bool:  # a is a local non-folder this apply leaves in place
            try:
                st = os.lstat(f"{root}/{a}")
            except OSError:
                return False  # nothing there (or it cannot be looked at: the apply says)
            if stat_mod.S_ISDIR(st.st_mode):
                return False
            e = paths.get(a)  # a clean file the commit turns into a folder is replaced
            return not (
                e is not None and e.kind == DIR and _unchanged_since(st, self._index.row(a))
            )

        def in_the_way(folder: str) -> bool:
            chain = []
            while folder and folder not in verdict:
                chain.append(folder)
                folder = folder.rpartition("/")[0]
            got = verdict.get(folder, False)
            for a in reversed(chain):  # top down: one lstat per folder, once
                got = got or stays(a)
                verdict[a] = got
            return got

        blocked = [p for p in paths if "/" in p and in_the_way(p.rpartition("/")[0])]
        for p in blocked:
            del paths[p]
        if blocked:
            log.info("live folder %s: local files stay in the way of %s", self.path, blocked[:5])

    def _write_files(
        self,
        files: list[tuple[str, Entry]],
        expect: dict[str, tuple[int, int, int, int] | None] | None = None,
        kept: set[str] | None = None,
        fresh: set[str] | None = None,
    ) -> Iterator[list[tuple[str, Entry, tuple[int, int, int, int]]]]:
        # A program may open a file for writing while its new version downloads (for a
        # big file, seconds or minutes after _apply_paths looked): the base class asks
        # ``expect`` for each file right before renaming it into place, so it is asked
        # here whether a writer holds the file now; if one does, the download is put
        # aside (kept local, as for a file written meanwhile) and the remote version
        # waits for the writer like any other (else its writes went to the replaced file).
        if expect is None:
            yield from super()._write_files(files, expect, kept, fresh)
            return
        check = _UnlessWritten(self.path, expect)
        try:
            yield from super()._write_files(files, check, kept, fresh)
        finally:
            if check.held:
                self._rewaited |= check.held
                self._waiting |= check.held
                self._save_waiting()

    def _open_state(self) -> None:
        super()._open_state()
        # Remote versions that waited for a local writer when this folder was last
        # mounted: the folder's base commit already counts them as here, so without this
        # they would never come (and status would say "in sync").
        self._waiting = set(self._index.get_meta("waiting") or ())

    def _save_waiting(self) -> None:
        self._index.set_meta("waiting", sorted(self._waiting))

    def _kept_local(self, paths: set[str]) -> None:
        # Normal in a live folder (a local change not pushed yet met a remote one): the
        # next push publishes the local version, the other one stays in history.
        log.info("live folder %s kept local versions of %s", self.path, sorted(paths)[:5])

    def _apply_waiting(self) -> None:
        """Bring in remote versions that waited for a local writer which has now closed
        its file, unless that writer changed it (then its push wins: it is newer). Paths
        that wait together (a file and what the commit put below it or made of the
        folder above it) come in together, once none of them is held."""
        busy = quiet.Writers(self.path, len(self._waiting))
        holding = [p for p in self._waiting if busy.get(p)]
        ready = sorted(
            p
            for p in self._waiting
            if not any(p == h or _under(p, h) or _under(h, p) for h in holding)
        )
        if not ready:
            return
        head = self._repo.head(refresh=True)
        todo: dict[str, Entry | None] = {}
        done: list[str] = []
        for rel in ready:  # sorted: a folder comes before what is below it
            if any(_under(rel, d) for d in done):
                done.append(rel)  # below a path changed locally: its push decides
                continue
            row = self._index.row(rel)
            try:
                st = os.lstat(self.path / rel)
            except (FileNotFoundError, NotADirectoryError):
                st = None  # (a folder above it is a file now)
            if row is not None and st is not None and not _unchanged_since(st, row):
                done.append(rel)  # changed locally: the next push publishes it
                continue
            todo[rel] = self._repo.trees.lookup(head.root, rel)
        settled = [*done, *todo]
        self._rewaited = set()
        if todo:
            # a file opened for writing again meanwhile waits on (see _rewaited)
            self._apply(todo, "sync")
        # forgotten only once applied (a crash before this leaves them waiting)
        for rel in settled:
            if rel not in self._rewaited:
                self._waiting.discard(rel)
        self._save_waiting()

    # -- what is not offered -----------------------------------------------------------------------
    def commit(self, message: str | None = None) -> CommitInfo | None:
        """Not offered: a live mount pushes by itself (use :meth:`sync` to do it now)."""
        raise InvalidError(
            f"{self.path} is a live network file system folder: it commits by itself; "
            "call sync() to push now or unmount() to flush and stop"
        )

    def reload(self) -> None:
        """Not offered: a live mount pulls by itself (use :meth:`sync` to do it now)."""
        raise InvalidError(
            f"{self.path} is a live network file system folder: it reloads by itself; "
            "call sync() to pull now"
        )

    # -- status and stopping ---------------------------------------------------------------------
    def status(self) -> LiveStatus:
        """Local changes not pushed yet, remote versions waiting for a writer, and whether
        the store is reachable. Works while the store is out (then without the head)."""
        try:
            base = super().status()
        except (StoreError, NotFoundError) as e:
            if not isinstance(e, StoreError) and self._gone is None:
                raise
            if isinstance(e, StoreError):
                self._offline(e)
                self.last_error = f"{type(e).__name__}: {e}"
            base = MountStatus(
                self.volume.name or "",
                str(self.path),
                base_seq=self.base_seq,
                head_seq=self.base_seq,
                background=True,
                last_error=self.last_error,
            )
        st = LiveStatus(**{f.name: getattr(base, f.name) for f in fields(MountStatus)})
        if self.offline_since is not None:
            st.offline_since = datetime.fromtimestamp(self.offline_since, tz=UTC)
        st.waiting = sorted(self._waiting)
        st.stopped = self._gone
        return st

    def unmount(self) -> CommitInfo | None:
        """Push what is left (waiting for files still being written, up to the settle
        limit), stop syncing, and forget the mount; the files stay in the folder.

        If the store is unreachable the mount stops anyway and StoreError says so:
        mounting the same folder again later pushes what was left. If the network file
        system was deleted, the mount stops and NotFoundError says so.
        """
        if self._gone is not None and not self._closed:
            self._detach()
            raise NotFoundError(
                f"{self._gone}; it is unmounted now, and what was written there since the "
                "deletion was not pushed anywhere"
            )
        lost = None if self._closed else self._folder_lost()
        if lost is not None:
            # (the base class says this in a volume's words: "the volume still has...")
            self._detach()
            warnings.warn(
                f"the live folder {self.path} of network file system {self.volume.name!r} "
                f"{lost}: unmounted without pushing anything (the network file system still "
                "has every file)",
                stacklevel=2,
            )
            return None
        try:
            with self._worded():
                return super().unmount()
        except StoreError as e:
            self._detach()
            raise StoreError(
                f"unmounted {self.path} while its store is unreachable ({e}): local changes "
                "were not pushed; mount the same folder again to push them"
            ) from e

    def __enter__(self) -> LiveMount:
        return self

    def __repr__(self) -> str:
        state = (
            "unmounted"
            if self._closed
            else "stopped: its network file system was deleted"
            if self._gone
            else "offline"
            if self.offline_since
            else "live"
        )
        return f"<LiveMount {self.volume.name!r} at {self.path} ({state})>"


class _UnlessWritten(dict):  # type: ignore[type-arg]
    """A reload's ``expect`` (path -> what was there when it chose to replace it) that
    answers "something else" for a file some process holds open for writing when asked,
    right before the download is renamed over it; such paths are collected in
    :attr:`held`. Asked from the download threads too (set.add is atomic)."""

    def __init__(self, root: os.PathLike[str], expect: dict[str, Any]) -> None:
        super().__init__(expect)
        # one per apply: the kernel is asked afresh for each file (a lease, microseconds);
        # only where it cannot tell are all processes scanned, and that scan is reused
        self._writers = quiet.Writers(root, 1)
        self.held: set[str] = set()

    def __getitem__(self, rel: str) -> Any:
        was = super().__getitem__(rel)
        if was is not None and self._writers.get(rel):
            self.held.add(rel)
            return _HELD
        return was


_HELD = object()  # equal to no stat signature


def _synced_words(why: str) -> str:
    """Why a path is not synced, in a live folder's words (the engine says "commit")."""
    return why.replace("to commit it", "to sync it")
