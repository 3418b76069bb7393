"""Writers of one volume on one machine line up in a folder, and one commits for all.

On an S3 store every request costs each writer a few milliseconds of CPU, and dozens of
processes committing to one volume from one machine spent nearly all of it watching
the store's log and line of intents (25 requests per commit with 64 writers; one
writer needs 6); on a local folder the same watching cost a third of their CPU.
Writers on the same machine need not meet on the store: they meet here, in a folder
under the system's temporary directory (private to the user), and take turns holding
a lock file. Per commit:

1. The writer uploads its packs (not its index segment) and writes its change set as
   an intent file (``intents/<time>-<txn>``, created by rename: whole or absent), its
   index segment beside it (``.seg``). It holds an ``flock`` on the intent file (taken
   before the file has its name) until its commit is over.
2. It waits for the lock (``lock``, an ``flock``: released by the kernel when its
   holder dies, and no polling while waiting).
3. Holding it: if a ``done/<txn>`` marker names its commit, that is the answer (the
   record's bytes, or empty: nothing needed committing). Otherwise it leads one round:
   it commits every pending intent (up to FOLD_MAX, no two changing one path) as one
   record through :meth:`Repository.commit`, which still races other machines'
   writers through the store's own protocol; then it writes the done markers, deletes
   the intents, and lets go of the lock. An intent whose lock is free is not pending:
   its writer died (the kernel let go of the lock), and nobody may commit a change set
   after its writer died, since anything may have been written since (by another
   machine's writer, or in the writer's folder, mounted again): it is removed.

A writer that finds the lock free and nobody in line skips all of this: it commits the
usual way while holding the lock (a lone writer pays no more than without the line).

A round's members are written to ``batch`` (with the head seq they build on) before its
commit starts, and the file is removed once every member is marked. A leader that dies
or fails mid-round leaves it behind: the next leader then looks in the log for those
members' txns before each attempt, so none lands twice. A writer that gives up (an
error or an interrupt while waiting) takes its intent back under the lock unless it
has landed: nothing is committed behind its caller's back. An intent older than
INTENT_TTL (its writer waited too long, and gc may have taken its uploads) is dropped;
the writer puts it in line again. A later process that takes over a dead writer's
work (a mount of the same folder) first waits for a round that may be carrying the
dead writer's change set, and removes what is left of it (:meth:`LocalLine.settle`).

``JUPYTER_VOLUME_LOCAL_LINE=0`` turns this off (each process then meets the others
on the store only); ``JUPYTER_VOLUME_LINE_DIR`` moves the folder (it must be one all
the writers of the machine see).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import stat
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CorruptionError
from . import keeper
from .codec import hash_bytes
from .repo import (
    FOLD_MAX,
    INTENT_TTL,
    ApplyStats,
    CommitRecord,
    Entry,
    LocalRound,
    Seen,
    Writer,
    _Intent,
    default_author,
)

if TYPE_CHECKING:
    from ..store import Store
    from .packs import ChunkMap
    from .repo import Repository

ENV_SWITCH = "JUPYTER_VOLUME_LOCAL_LINE"
ENV_DIR = "JUPYTER_VOLUME_LINE_DIR"
#: Done markers nobody collected (their writer died) are removed after this long.
DONE_TTL = 3600.0

#: Descriptors of line locks (and of the locks on our intents) this process holds: a
#: child made by fork() would hold each lock too (one open file, two processes) until
#: it exited, so it closes them.
_held: set[int] = set()


def _forget_locks_in_child() -> None:
    for fd in list(_held):
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_forget_locks_in_child)


def line_for(store: Store, vol_id: str) -> LocalLine | None:
    """The line of ``vol_id`` on ``store`` for this machine's writers, or None when
    switched off with ``JUPYTER_VOLUME_LOCAL_LINE=0``. Writers on other machines (or
    with another line folder) still meet this machine's through the store."""
    if os.environ.get(ENV_SWITCH, "1").strip() in ("0", "false", "no"):
        return None
    return LocalLine(_folder(store, vol_id))


def forget_line(store: Store, vol_id: str) -> None:
    """Remove this machine's line folder of ``vol_id`` on ``store``: the volume was
    deleted, and a volume made again gets a new id, so nobody would use it again. Best
    effort: a folder that cannot be removed stays (it is in a temporary directory)."""
    folder = _folder(store, vol_id)
    if _ours(folder.parent):
        shutil.rmtree(folder, ignore_errors=True)


def _folder(store: Store, vol_id: str) -> Path:
    base = os.environ.get(ENV_DIR) or os.path.join(
        tempfile.gettempdir(), f"jupyter-volume-{os.getuid()}-lines"
    )
    return Path(base) / hash_bytes(f"{store.url}\0{vol_id}".encode())[:32]


def _ours(top: Path) -> bool:
    """Whether ``top`` is a folder of this user's that nobody else may write in."""
    try:
        st = os.lstat(top)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022


class LocalLine:
    """One volume's line on this machine (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.intents = folder / "intents"
        self.done = folder / "done"
        self.segments = folder / "segments"
        self._made = False
        self._swept = 0.0  # when this process last removed old done markers and segments

    # -- files ---------------------------------------------------------------------------
    def _make(self) -> None:
        """Create the folders; OSError if they cannot be, or if the top one (in a
        temporary directory every user can write to) is not ours or others may write
        in it: another user could otherwise put change sets in our line."""
        if not self._made:
            top = self.folder.parent
            top.mkdir(mode=0o700, exist_ok=True)
            if not _ours(top):
                raise PermissionError(f"{top} is not a folder only this user can use")
            for d in (self.folder, self.intents, self.done, self.segments):
                d.mkdir(mode=0o700, exist_ok=True)
            self._made = True

    def _write(self, path: Path, data: bytes, hold: bool = False) -> int | None:
        """Create ``path`` whole or not at all (a temporary name, then a rename; the
        temporary file is removed if writing fails, as on a full disk). With ``hold``,
        the file is ``flock``ed before it has its name and the lock's descriptor is
        returned (registered like the line's lock: ``_unlock`` it to let go)."""
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        fd: int | None = None
        try:
            if hold:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                _held.add(fd)
                fcntl.flock(fd, fcntl.LOCK_EX)  # released by the kernel if we die
                with os.fdopen(os.dup(fd), "wb") as f:  # (the lock stays with fd)
                    f.write(data)
            else:
                with open(tmp, "wb") as f:
                    f.write(data)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            if fd is not None:
                self._unlock(fd)
            raise
        return fd

    def _open_lock(self) -> int:
        """A new descriptor of the lock file, registered (a forked child closes it)
        before it can hold the lock."""
        fd = os.open(self.folder / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        _held.add(fd)
        return fd

    @staticmethod
    def _unlock(fd: int) -> None:
        _held.discard(fd)
        os.close(fd)

    def _try_lock(self) -> int | None:
        """The lock's descriptor if the lock was free (``_unlock`` it to let go), else
        None."""
        fd = self._open_lock()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException as e:
            self._unlock(fd)
            if isinstance(e, BlockingIOError):
                return None
            raise
        return fd

    def _anyone_in_line(self) -> bool:
        with os.scandir(self.intents) as it:
            return any(not e.name.startswith(".") for e in it)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = self._open_lock()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released by the kernel if we die
            yield
        finally:
            self._unlock(fd)

    def segment(self, key: str) -> bytes | None:
        """The index segment ``key`` if a round on this machine added it lately (every
        writer loads what a record adds before its next commit: from here, not the
        store). The caller checks its hash."""
        try:
            return (self.segments / key.rsplit("/", 1)[-1]).read_bytes()
        except OSError:
            return None

    def _done(self, txn: str) -> tuple[bool, CommitRecord | None]:
        """``(True, record or None)`` if a leader marked ``txn`` done (and the marker
        is removed); ``(False, None)`` if not."""
        path = self.done / txn
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return False, None
        path.unlink(missing_ok=True)
        if not data:
            return True, None  # nothing needed committing
        return True, CommitRecord.from_bytes(data, f"done marker {txn}")

    # -- committing ---------------------------------------------------------------------
    def commit(
        self,
        repo: Repository,
        changes: dict[str, Entry | str | None],
        *,
        message: str,
        writer: Writer | None,
        kind: str,
        author: str | None,
        seen: Seen,
        fresh_head: bool = False,
        txn: str | None = None,
    ) -> tuple[CommitRecord | None, ApplyStats]:
        """Commit ``changes`` through the line: see the module docstring. Returns the
        record that holds them (perhaps another writer's round) or None if nothing
        needed committing; raises what the round that tried it raised. ``seen``,
        ``fresh_head`` and ``txn``: as :meth:`Repository.commit` takes them
        (``fresh_head`` counts only when this writer commits alone, not for a round of
        several)."""
        txn = txn or uuid.uuid4().hex

        def direct() -> tuple[CommitRecord | None, ApplyStats]:
            # the store's own protocol, which is safe between processes too
            return repo.commit(
                changes,
                message=message,
                writer=writer,
                kind=kind,
                author=author,
                line=False,
                seen=seen,
                fresh_head=fresh_head,
                txn=txn,
            )

        try:
            self._make()
            fd = self._try_lock()
        except OSError as e:
            # No line here (a full or read-only temporary directory, a folder that is
            # not ours).
            _warn_once(self.folder, e)
            return direct()
        if fd is not None:
            # Nobody else is committing on this machine: commit the usual way, holding
            # the lock (whoever comes meanwhile waits in line for the next round).
            try:
                if not self._anyone_in_line():
                    return direct()
            finally:
                self._unlock(fd)
        seg_key, nbytes, new_locs, seg = repo._finish_writer(writer, put_segment=False)
        intent = _Intent.make(
            "",
            -1,
            txn,
            changes,
            [seg_key] if seg_key else [],
            author or default_author(),
            kind,
            message,
            nbytes,
            gc=seen.gc,
        )
        name = f"{time.time_ns():020d}-{txn}.{intent.digest}"
        alive: int | None = self._publish(name, intent, seg)  # our lock on it: we wait
        taken_back = False
        try:
            while True:
                with self._locked():
                    landed, rec = self._done(txn)
                    if not landed:
                        if not (self.intents / name).exists():
                            # Dropped as too old while we waited: in line again.
                            if alive is not None:
                                old, alive = alive, None
                                self._unlock(old)
                            alive = self._publish(name, intent, seg)
                        try:
                            # A leader commits its own change set as its writer: a gc
                            # that landed since it was staged makes it the only one that
                            # can (see Repository.commit); others leave it to us. The
                            # round itself has no writer, so the check that our uploads
                            # were kept young (see .keeper) is made here.
                            keeper.check(writer)
                            self._round(repo, (txn, seen, new_locs))
                        except BaseException:
                            # Our round failed: take our change back before the next
                            # leader can carry it (the others stay in line).
                            taken_back = True
                            self._take_back(name, txn)
                            raise
                        landed, rec = self._done(txn)
                if landed:
                    break
                # Not carried in that round (it overlapped an older change set to the
                # same path, which went first): the next round takes it.
        except BaseException:
            if not taken_back:
                self._withdraw(name, txn)
            raise
        finally:
            if alive is not None:
                self._unlock(alive)  # (after any withdrawal: until then we are in line)
        if rec is not None:
            repo._records[rec.seq] = rec
            if repo._head_seq is None or rec.seq > repo._head_seq:
                repo._head_seq = rec.seq
            repo._published(seg_key, new_locs, rec)
        return rec, ApplyStats()

    def _publish(self, name: str, intent: _Intent, seg: bytes) -> int:
        """Put ``intent`` in line as ``name`` (its segment first); the descriptor of our
        lock on it, which tells leaders that its writer lives (``_unlock`` it when the
        commit is over)."""
        if intent.index:
            self._write(self.intents / f"{name}.seg", seg)
        fd = self._write(self.intents / name, intent.blob, hold=True)  # in line from here
        assert fd is not None
        return fd

    def settle(self, txns: set[str]) -> None:
        """For a process taking over from writers of ``txns`` that are gone (a mount of
        the folder whose commits they were): wait until no round of the line is running
        (one may be carrying their change set: it lands, or fails, before this returns),
        then remove their intents and done markers. Nothing of them can land through
        this line afterwards. Best effort on a line folder that cannot be used (then
        nothing went through it)."""
        if not txns or not self.folder.is_dir():
            return
        with contextlib.suppress(OSError), self._locked():
            for p in self.intents.iterdir():
                name = p.name[: -len(".seg")] if p.name.endswith(".seg") else p.name
                txn = name.split("-", 1)[-1].split(".", 1)[0]
                if not name.startswith(".") and txn in txns:
                    p.unlink(missing_ok=True)
            for txn in txns:
                (self.done / txn).unlink(missing_ok=True)

    def _withdraw(self, name: str, txn: str) -> None:
        """Take our intent back unless a round holds it (under the lock: no round is
        running then, except one whose leader died mid-way, see ``batch``)."""
        with contextlib.suppress(OSError), self._locked():
            self._take_back(name, txn)

    def _take_back(self, name: str, txn: str) -> None:
        """Remove our intent unless it landed (we hold the lock)."""
        with contextlib.suppress(OSError):
            if (self.done / txn).exists():
                return  # it landed; the caller's retry finds nothing left to commit
            for p in (self.intents / name, self.intents / f"{name}.seg"):
                p.unlink(missing_ok=True)

    def _round(
        self, repo: Repository, own: tuple[str, Seen, ChunkMap | None] | None = None
    ) -> None:
        """Commit the pending intents as one record (we hold the lock). ``own``: the
        txn of our own intent, what it was staged against and the chunks its writer
        stored (see :class:`LocalRound`)."""
        members, segments, files = self._pending()
        batch = self.folder / "batch"
        base: int | None = None
        try:
            left = json.loads(batch.read_bytes())
            base = int(left["base"])  # a round before ours did not finish
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError):
            base = -1  # unreadable: look through the whole log
        if not members:
            batch.unlink(missing_ok=True)
            return
        if base is None:
            self._write(batch, json.dumps({"base": repo.head(refresh=False).seq}).encode())
        rnd = LocalRound(members, segments, base)
        if own is not None:
            rnd.own, rnd.own_seen, rnd.own_locs = own
        # The record's message, author and kind come from the members it carries (see
        # LocalRound.describe; a carried "commit" makes it one).
        rec, _stats = repo.commit({}, kind="auto", local=rnd)
        for key, data in rnd.added.items():
            self._write(self.segments / key.rsplit("/", 1)[-1], data)
        marked: list[_Intent] = []
        body = rec.to_bytes() if rec is not None else b""
        for i in rnd.carried:
            self._write(self.done / i.txn, body)
            marked.append(i)
        for i in members:
            got = rnd.landed.get(i.txn)
            if got is not None:
                self._write(self.done / i.txn, got.to_bytes())
                marked.append(i)
        for i in marked:
            for p in files[i.txn]:
                p.unlink(missing_ok=True)
        batch.unlink(missing_ok=True)

    def _pending(self) -> tuple[list[_Intent], dict[str, bytes], dict[str, list[Path]]]:
        """The intents in line, oldest first (at most FOLD_MAX plus those with the
        same paths), their segments by key, and each one's files by txn. Removes stale
        intents, unreadable ones and old done markers."""
        now = time.time()
        members: list[_Intent] = []
        segments: dict[str, bytes] = {}
        files: dict[str, list[Path]] = {}
        for p in sorted(self.intents.iterdir()):
            name = p.name
            if name.startswith(".") or name.endswith(".seg"):
                if name.startswith(".") and now - _mtime(p) > INTENT_TTL:
                    p.unlink(missing_ok=True)  # a writer died while writing it
                continue
            seg_path = p.with_name(name + ".seg")
            if now - _mtime(p) > INTENT_TTL:
                p.unlink(missing_ok=True)
                seg_path.unlink(missing_ok=True)
                continue
            try:
                stamp, rest = name.split("-", 1)
                txn, digest = rest.split(".", 1)
                data = _read_if_alive(p)
                if data is None:
                    # Its writer died waiting (or gave up and died before it could take
                    # it back): never committed now, whatever was written since.
                    p.unlink(missing_ok=True)
                    seg_path.unlink(missing_ok=True)
                    continue
                intent = _Intent.load(f"intents/{stamp}-{txn}.{digest}", digest, data)
                for key in intent.index:
                    segments[key] = seg_path.read_bytes()
            except (ValueError, CorruptionError, OSError):
                p.unlink(missing_ok=True)
                seg_path.unlink(missing_ok=True)
                continue
            members.append(intent)
            files[txn] = [p, seg_path]
            if len(members) >= 2 * FOLD_MAX:
                break
        if now - self._swept > 60:
            self._swept = now
            for folder in (self.done, self.segments):
                for d in folder.iterdir():
                    if now - _mtime(d) > DONE_TTL:
                        d.unlink(missing_ok=True)
        return members, segments, files


_warned: set[Path] = set()


def _warn_once(folder: Path, e: OSError) -> None:
    if folder not in _warned:
        _warned.add(folder)
        warnings.warn(
            f"writers on this machine cannot line up in {folder} ({e}); committing "
            "through the store alone (correct, only slower with many writers). Set "
            "JUPYTER_VOLUME_LINE_DIR to a private local folder.",
            stacklevel=4,
        )


def _read_if_alive(p: Path) -> bytes | None:
    """The intent file ``p``'s bytes while its writer still holds its lock (a try for a
    shared lock fails); None when nobody does: its writer is dead."""
    fd = os.open(p, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # its writer holds it: alive
        else:
            return None
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read()
    finally:
        os.close(fd)


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except FileNotFoundError:
        return time.time()
