"""Downloading a volume's files, folders and symbolic links into a local folder.

What ``jupyter volume get`` (and ``%volume get``) runs once it knows which volume path
goes to which local path. The rules:

* Files appear complete or not at all: written to a temporary name in their folder, then
  renamed over the destination. A download holds an exclusive ``flock`` on its temporary
  file until it is renamed, so what a killed download left (``.NAME.jv-part-XXXXXXXX``)
  is told from one in progress and removed by the next download into that folder.
* Symbolic links are recreated as links with their target exactly as stored (relative
  or absolute, inside the volume or not); a link is never followed or dereferenced, so a
  copied Hugging Face cache (``snapshots/<rev>/file -> ../../blobs/<hash>``) works.
* Nothing is ever written through a local link. Below ``base`` (the folder the caller
  named, which is trusted as given, like ``cp``'s destination), every folder written
  into is checked to be a real folder, component by component; a link found where a
  folder, file or link of the download goes is replaced, never followed (that needs
  ``force``, like overwriting a file). Files and links are put in place with a rename,
  which replaces a link at the destination instead of writing through it.

Layer: beside ``volume`` (uses its public listing types and reads); no front end.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._bulk import bulk_step
from ._libc import write_all
from ._pools import one_at_a_time
from .errors import AlreadyExistsError, CorruptionError, InvalidError, LocalFolderError, VolumeError
from .volume import FileEntry, FileEntryType, Volume

__all__ = ["DownloadResult", "download"]

#: ``progress(total_bytes, total_files)`` returns an object with ``update(n)`` and ``close()``.
ProgressFactory = Callable[[int, int], Any]

# A temporary file of ours (see _temp_beside), and how old an unlocked one must be to be
# taken for a leftover: a download locks its file right after creating it, and a link
# (which cannot be locked) is renamed right after it is made.
_PART = re.compile(r"\..+\.jv-part-[0-9a-f]{8}", re.DOTALL)
_PART_MIN_AGE = 5.0
#: Files up to this size are downloaded in batches whose contents are read together
#: (Repository.read_many: neighbouring chunks in one ranged GET), at most BATCH_FILES
#: files and BATCH_BYTES bytes a batch; bigger files are streamed one by one.
SMALL_FILE = 1 << 20
BATCH_FILES = 256
BATCH_BYTES = 8 << 20
#: Batches of small files in progress at once: one is read while another is written
#: (more threads creating files only queued on each folder's lock and on the GIL)
SMALL_BATCHES_AT_ONCE = 2


@dataclass(frozen=True)
class DownloadResult:
    """What :func:`download` wrote."""

    files: int
    bytes: int
    links: int
    folders: int


@bulk_step
def download(
    vol: Volume,
    plan: list[tuple[FileEntry, Path]],
    *,
    base: Path,
    at: int | None = None,
    force: bool = False,
    progress: ProgressFactory | None = None,
    workers: int = 8,
) -> DownloadResult:
    """Write each ``(entry, local path)`` of ``plan``: folders, files and links.

    ``base`` is the existing (or to-be-created) folder the caller named; every local path
    of the plan must be at or below it. Before anything is written, refuses with
    :class:`AlreadyExistsError` when a file or link exists where one goes (unless
    ``force``), and with :class:`InvalidError` when a local folder is where a file or
    link goes, or a local file where a folder goes. Local write failures raise
    :class:`LocalFolderError` naming the path. ``at`` None reads every file at the
    commit ``vol`` last listed (the one the plan was made from), so a download is one
    commit whatever lands meanwhile. A failure stops the files not started yet.
    """
    base = Path(base)
    items = sorted(plan, key=lambda it: len(it[1].parts))
    # below base: base's parts, then more (as `base in t.parents`, a walk of every
    # parent, says; that walk per file was most of the time before the first byte)
    n, absolute = len(base.parts), base.is_absolute()
    for _e, t in items:
        if t != base and (t.parts[:n] != base.parts or t.is_absolute() != absolute):
            raise InvalidError(f"{t} is not inside {base}")  # a bug in the caller's plan
    files = [(e, t) for e, t in items if e.type == FileEntryType.FILE]
    links = [(e, t) for e, t in items if e.type == FileEntryType.SYMLINK]
    dirs = [t for e, t in items if e.type == FileEntryType.DIRECTORY]
    _check(base, files + links, dirs, force)

    if at is None and (files or links):
        # Every file from one commit: the one the plan was listed at (each read of the
        # newest commit mixed two versions of a folder when a commit landed meanwhile).
        at = getattr(vol._seen, "seq", None)  # this thread's listing (see Volume._root)
        if at is None:
            at = vol.seq
    total = sum(e.size for e, _t in files)
    bar = progress(total, len(files)) if progress is not None else None
    try:
        made: set[Path] = set()
        for d in dirs:
            _real_folder(d, base, made)
        for _e, t in files + links:
            _real_folder(t.parent, base, made)
        for folder in {t.parent for _e, t in files + links}:
            _sweep_leftovers(folder)
        _write_files(vol, files, at, bar.update if bar is not None else None, workers)
        for e, t in links:
            _write_link(vol, e, t, at)
    finally:
        if bar is not None:
            bar.close()
    return DownloadResult(len(files), total, len(links), len(dirs))


def _lstat(p: Path) -> os.stat_result | None:
    try:
        return os.lstat(p)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise _local_error(e, p) from None


def _local_error(e: OSError, p: Path, *, into: Path | None = None) -> LocalFolderError:
    """The error for a failed write of ``p``; ``into``: the file the write was for (its
    temporary name, which the user never asked for, is not named)."""
    name = into if into is not None else e.filename or p
    return LocalFolderError(f"cannot write {name}: {e.strerror or e}", e.errno)


def _check(base: Path, leaves: list[tuple[FileEntry, Path]], dirs: list[Path], force: bool) -> None:
    """Refuse before writing anything (see :func:`download`)."""
    clash: list[Path] = []
    links: set[Path] = set()  # local links in the way: replaced, so nothing below them counts

    def below_link(p: Path) -> bool:
        return bool(links) and any(a in links for a in p.parents)

    between: set[Path] = set()  # folders between base and each path: written into
    for folder in {t.parent for _e, t in leaves} | {d.parent for d in dirs}:
        # each distinct folder once (10,000 files in ten folders: ten walks, not 10,000)
        while folder != base and base in folder.parents and folder not in between:
            between.add(folder)
            folder = folder.parent
    for p in sorted(between, key=lambda p: len(p.parts)):
        if below_link(p):
            continue
        st = _lstat(p)
        if st is None or stat.S_ISDIR(st.st_mode):
            continue
        if stat.S_ISLNK(st.st_mode):
            clash.append(p)
            links.add(p)
        else:
            raise InvalidError(f"cannot download into {p}: it is a local file")
    for e, t in leaves:
        st = None if below_link(t) else _lstat(t)
        if st is None:
            continue
        if stat.S_ISDIR(st.st_mode):
            what = "a symbolic link" if e.type == FileEntryType.SYMLINK else "a file"
            raise InvalidError(f"cannot download {what} to {t}: it is a local folder")
        clash.append(t)
    for d in dirs:
        st = None if below_link(d) else _lstat(d)
        if st is None or stat.S_ISDIR(st.st_mode):
            continue
        if stat.S_ISLNK(st.st_mode):
            clash.append(d)  # a link where a folder goes: replaced (with force), never followed
            links.add(d)
        else:
            raise InvalidError(f"cannot download a folder to {d}: it is a local file")
    clash = list(dict.fromkeys(clash))
    if clash and not force:
        more = f" (and {len(clash) - 1} more)" if len(clash) > 1 else ""
        raise AlreadyExistsError(f"local file {clash[0]} exists{more}: use --force to overwrite it")


def _real_folder(folder: Path, base: Path, made: set[Path]) -> None:
    """Make ``folder`` exist as a real folder, with no link anywhere between ``base`` and it.

    A link found on the way is removed and replaced by a folder (``_check`` asked for
    ``force`` first): writing through it could land anywhere outside ``base``.
    """
    if folder in made:
        return
    if folder != base:
        if folder == folder.parent:
            raise InvalidError(f"{folder} is not inside {base}")
        _real_folder(folder.parent, base, made)
    st = _lstat(folder)
    try:
        if st is not None and stat.S_ISLNK(st.st_mode) and folder != base:
            os.unlink(folder)
            st = None
        if st is None:
            folder.mkdir(parents=folder == base, exist_ok=True)
        elif not stat.S_ISDIR(st.st_mode) and not (folder == base and folder.is_dir()):
            raise InvalidError(f"cannot download into {folder}: it is a local file")
    except OSError as e:
        raise _local_error(e, folder) from None
    made.add(folder)


def _sweep_leftovers(folder: Path) -> int:
    """Remove from ``folder`` the temporary files of downloads that were killed before
    they finished: ours by name, locked by no process (a download holds its file's lock
    until it is renamed into place) and not just made. Returns how many were removed."""
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    removed = 0
    old = time.time() - _PART_MIN_AGE
    for name in names:
        if ".jv-part-" not in name or not _PART.fullmatch(name):
            continue
        path = folder / name
        try:
            st = os.lstat(path)
            if st.st_mtime > old:
                continue
            if stat.S_ISLNK(st.st_mode):
                os.unlink(path)  # a link's temporary name lives for a moment only
                removed += 1
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue  # gone meanwhile, or not ours to touch: left as it is
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            now, held = os.lstat(path), os.fstat(fd)
            if (now.st_ino, now.st_dev) == (held.st_ino, held.st_dev):
                os.unlink(path)  # locked by us, so no download is writing it
                removed += 1
        except OSError:
            pass  # a download in progress holds it (or it went away)
        finally:
            os.close(fd)
    return removed


@contextlib.contextmanager
def _temp_beside(target: Path) -> Iterator[Path]:
    """A fresh temporary name next to ``target``; whatever is left at it is removed on exit."""
    tmp = target.parent / f".{target.name}.jv-part-{uuid.uuid4().hex[:8]}"
    try:
        yield tmp
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def _put_in_place(tmp: Path, target: Path, mtime: float) -> None:
    """Move ``tmp`` to ``target`` and give it ``mtime``; a file or link at ``target`` is
    replaced atomically, never followed."""
    try:
        os.replace(tmp, target)
        os.utime(target, (mtime, mtime), follow_symlinks=False)
    except OSError as err:
        raise _local_error(err, target) from None


def _batches(
    files: list[tuple[FileEntry, Path]],
) -> list[tuple[FileEntry, Path] | list[tuple[FileEntry, Path]]]:
    """``files`` as the work items of :func:`_write_files`: each file of more than
    ``SMALL_FILE`` bytes alone, the others in lists of up to ``BATCH_FILES`` files and
    ``BATCH_BYTES`` bytes (in the plan's order, so neighbours in the volume, which sit
    side by side in its packs, share a batch)."""
    out: list[tuple[FileEntry, Path] | list[tuple[FileEntry, Path]]] = []
    batch: list[tuple[FileEntry, Path]] = []
    size = 0
    for item in files:
        if item[0].size > SMALL_FILE:
            out.append(item)
            continue
        if batch and (len(batch) >= BATCH_FILES or size + item[0].size > BATCH_BYTES):
            out.append(batch)
            batch, size = [], 0
        batch.append(item)
        size += item[0].size
    if batch:
        out.append(batch)
    return out


@contextlib.contextmanager
def _locked_temp(target: Path) -> Iterator[tuple[Path, int]]:
    """A new temporary file beside ``target``, open for writing and locked: ``(its
    path, its descriptor)``. The lock is held until the descriptor is closed, on exit,
    so the file is renamed into place before that: a download that finds such a file
    unlocked takes it for a killed one's leftover (see :func:`_sweep_leftovers`)."""
    with _temp_beside(target) as tmp:
        try:
            # O_EXCL | O_NOFOLLOW: the temporary name is ours alone, never a link
            fd = os.open(
                tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644
            )
        except OSError as err:
            raise _local_error(err, tmp, into=target) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield tmp, fd
        finally:
            os.close(fd)


def _put_bytes(target: Path, data: bytes, mtime: float) -> None:
    """Write ``data`` as file ``target``, as :func:`_write_files` writes every file,
    from bytes already read."""
    with _locked_temp(target) as (tmp, fd):
        try:
            write_all(fd, data)
        except OSError as err:
            raise _local_error(err, tmp, into=target) from None
        _put_in_place(tmp, target, mtime)


def _write_files(
    vol: Volume,
    files: list[tuple[FileEntry, Path]],
    at: int | None,
    progress: Callable[[int], Any] | None,
    workers: int,
    landed: Callable[[], None] | None = None,
) -> None:
    """Write each file of ``files`` (at commit ``at``) through a locked temporary file
    renamed into place, up to ``workers`` at once. ``progress(n)`` is told of the bytes
    (one call at a time); ``landed()`` of each file once it is in place, from whichever
    thread wrote it."""
    failed = threading.Event()  # set by the first file that fails: the rest do not start

    def one(item: tuple[FileEntry, Path] | list[tuple[FileEntry, Path]]) -> None:
        if failed.is_set():
            return
        try:
            if isinstance(item, list):
                fetch_small(item)
            else:
                fetch(item)
        except BaseException:
            failed.set()
            raise

    small_slots = threading.BoundedSemaphore(SMALL_BATCHES_AT_ONCE)
    writing = threading.Lock()
    count = one_at_a_time(progress) if progress is not None else None

    def fetch_small(batch: list[tuple[FileEntry, Path]]) -> None:
        # Small files: their contents read together (the chunks of neighbours come in
        # one ranged GET, hash-checked), then written one by one. One read request per
        # file (a GET each, and a hand-off between threads) made 10,000 files of 4 KiB
        # take 10 s where a mount of them takes under 1 s. One batch is written at a
        # time (threads creating files side by side only queue on the folder's lock and
        # the GIL) while the next one is read.
        with small_slots:
            try:
                contents = vol._read_stored([e.path for e, _t in batch], at)
            except CorruptionError:
                # data missing or damaged: the batch's error cannot say whose, so each
                # file is read alone, and the first it fails names its file (the files
                # before it land, as when every file was read on its own)
                contents = [None] * len(batch)
            with writing:
                write_small(batch, contents)

    def write_small(batch: list[tuple[FileEntry, Path]], contents: list[bytes | None]) -> None:
        for (e, target), data in zip(batch, contents, strict=True):
            if failed.is_set():
                return
            if data is None:
                fetch((e, target))  # reached through a link, say: read as read_file does
                continue
            _put_bytes(target, data, e.mtime)
            if count is not None:
                count(len(data))
            if landed is not None:
                landed()

    def fetch(item: tuple[FileEntry, Path]) -> None:
        e, target = item
        with _locked_temp(target) as (tmp, fd):
            try:
                # as a mount writes a big file: ranges fetched in parallel, each checked
                # and written in place (a 1 GiB file took twice as long read as a stream)
                vol._read_into(e.path, fd, at=at, progress=count)
            except VolumeError:
                raise  # the store's or the volume's error, already one clear line
            except OSError as err:
                raise _local_error(err, tmp, into=target) from None
            _put_in_place(tmp, target, e.mtime)
        if landed is not None:
            landed()

    items = _batches(files)
    if len(items) <= 1 or workers <= 1:
        for item in items:
            one(item)
        return
    # Threads of our own rather than a ThreadPoolExecutor: a Ctrl-C that lands while
    # the pool starts a worker left that worker out of the ones shutdown() waits for, so
    # `get` returned (the KeyboardInterrupt on its way) while it still wrote into the
    # folder. Each thread here is recorded before it starts, and all are waited for.
    todo = iter(items)
    take = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        while not failed.is_set():
            with take:
                item = next(todo, None)
            if item is None:
                return
            try:
                one(item)
            except BaseException as e:  # noqa: BLE001 - handed to the calling thread
                errors.append(e)
                return

    threads: list[threading.Thread] = []
    try:
        for _ in range(min(workers, len(items))):
            t = threading.Thread(target=worker, name="jv-get", daemon=True)
            threads.append(t)
            t.start()
        for t in threads:
            t.join()
    except BaseException:
        # on an error, files not started yet are not downloaded (they would only delay
        # it); those in flight finish or clean up before this returns
        failed.set()
        _join_started(threads)
        raise
    if errors:
        raise errors[0]


def _join_started(threads: list[threading.Thread]) -> None:
    """Wait for every thread of ``threads`` that was started, one whose start() was cut
    short by an exception included (it is listed by threading.enumerate() from the
    moment it exists, before is_alive() says so)."""
    for t in threads:
        # one interrupted before its system thread was made stays listed, never running
        give_up = time.monotonic() + 5.0
        while t.is_alive() or (t in threading.enumerate() and time.monotonic() < give_up):
            if t.is_alive():
                t.join()
            else:
                time.sleep(0.001)  # between start() and its first step


def _write_link(vol: Volume, e: FileEntry, target: Path, at: int | None) -> None:
    _p, entry = vol._entry(e.path, at, through_links=True)
    link_to = entry.target
    if link_to is None:  # listed as a link, so the tree says so; never guess a target
        raise InvalidError(f"{vol.name}:/{e.path} is a symbolic link without a target")
    with _temp_beside(target) as tmp:
        try:
            os.symlink(link_to, tmp)
        except OSError as err:
            raise _local_error(err, target) from None
        _put_in_place(tmp, target, e.mtime)
