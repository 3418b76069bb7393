"""A store in a local folder: the embedded default, crash-safe without any server.

Every write goes to a temporary file in the destination folder, is fsynced, and only
then gets its final name: ``os.replace`` for plain puts, ``os.link`` for create-only
puts (``link`` fails with EEXIST when another writer won; ``rename`` would silently
overwrite). So a crash never leaves a half-written object under a final key; at worst a
``.tmp-*`` file that listing ignores and garbage collection removes. A key whose
segment itself starts with ``.tmp-`` (a volume may be named ``.tmp-data``) is stored
under ``.tmp-k-<the rest>``, so it is neither hidden from listing nor taken for a temp
or lock file. Plain puts fsync the folder too (and folders they create, in their
parents), so a record written after an object never outlives it in a crash; deletes
fsync the folders they removed keys from, so a deleted object stays deleted.

Conditional writes (``put_if_match``) are a compare-and-swap between processes: an
``flock`` on a sidecar lock file ``.tmp-lock-<name>`` beside the object is held around
"hash the current file, compare with the token, ``os.replace``". The token is a BLAKE3
hash of the content. Once a key has a lock file, plain ``put`` and ``delete`` of that key
take the same lock, so they never land between a conditional write's check and its
replace; ``delete`` removes the lock file with the object (whoever waited on the old lock
file sees that it is gone and locks the new one). The one window left: a plain ``put``
already past its lock check when the key's *first* conditional write creates the lock
file may land between that write's last check (the file's inode, just before the
replace) and the replace, and be overwritten by it: a window of microseconds, open only
until the key's first conditional write (a Dict's ``d[k] = v`` racing the very first
``d.incr(k)`` is such a case; later ones are safe).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import select
import stat as stat_mod
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .. import _inotify
from .._libc import write_all
from ..errors import NotFoundError, StoreAccessError, StoreError
from .base import ObjectInfo, Store, check_key

__all__ = ["LOCK_PREFIX", "LocalStore", "TMP_PREFIX"]

TMP_PREFIX = ".tmp-"
#: Sidecar lock files of conditional writes: hidden like temp files, but never garbage.
LOCK_PREFIX = TMP_PREFIX + "lock-"
#: Object names longer than this get a hashed lock-file name (file names max 255 bytes).
_LOCK_NAME_MAX = 200
#: A key segment that starts with TMP_PREFIX is stored under this prefix instead (then
#: the rest of the segment): temp files are TMP_PREFIX + 32 hex digits and lock files
#: LOCK_PREFIX + a name, so neither starts this way.
KEY_PREFIX = TMP_PREFIX + "k-"
_TEMP_NAME = re.compile(re.escape(TMP_PREFIX) + "[0-9a-f]{32}")
#: Errors that mean "no such file" for a key: a path through an object ("f/x" when "f"
#: is one) or a name longer than a folder can hold is a key no object has.
_MISSING_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG})


def _escape(segment: str) -> str:
    return KEY_PREFIX + segment[len(TMP_PREFIX) :] if segment.startswith(TMP_PREFIX) else segment


def _unescape(name: str) -> str | None:
    """The key segment stored as file name ``name``; None for temp and lock files."""
    if not name.startswith(TMP_PREFIX):
        return name
    if name.startswith(KEY_PREFIX):
        return TMP_PREFIX + name[len(KEY_PREFIX) :]
    return None


def _rel(key: str) -> str:
    """The relative path that holds ``key`` (a checked key)."""
    if TMP_PREFIX not in key:
        return key
    return "/".join(_escape(part) for part in key.split("/"))


def _token(data: bytes | bytearray | memoryview) -> str:
    from blake3 import blake3

    return blake3(data).hexdigest()[:32]


class LocalStore(Store):
    """Objects as files under ``root``; keys map to relative paths."""

    # Looking at a small file costs microseconds: waiters may look often.
    poll_budget = 1000.0
    cheap_stat = True

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root).expanduser().resolve()
        self._root_s = str(self.root)
        self.url = self.root.as_uri()
        self.fsync = fsync
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except PermissionError as e:
            raise StoreAccessError(
                f"cannot create the store folder {self.root}: {e.strerror}"
            ) from e
        except FileExistsError as e:
            raise StoreError(f"store folder {self.root} is a file, not a folder") from e
        except OSError as e:  # a file on the way (ENOTDIR), a read-only disk, ...
            raise StoreError(f"cannot create the store folder {self.root}: {e}") from e

    def wait_change(self, prefix: str, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for a file to be added to folder ``prefix``
        (inotify: a writer waiting for its turn to commit wakes when the commit log
        grows instead of a poll interval later); a plain sleep where inotify is missing.

        The watch lives for this one wait: inotify instances are a small per-user quota
        (128 by default) that every mount's change journal draws on too. A record that
        lands just before the watch exists is seen at the next look, as without it.
        """
        fd = self._watch_fd(prefix)
        if fd is None:
            time.sleep(timeout)
            return
        try:
            select.select([fd], [], [], timeout)
        except (OSError, ValueError):
            time.sleep(timeout)
        finally:
            os.close(fd)

    def _watch_fd(self, prefix: str) -> int | None:
        if _inotify.libc is None or not prefix.endswith("/"):
            return None
        folder = f"{self._root_s}/{_rel(prefix.rstrip('/'))}" if prefix.strip("/") else self._root_s
        fd = _inotify.libc.inotify_init1(_inotify.IN_NONBLOCK | _inotify.IN_CLOEXEC)
        if fd < 0:
            return None  # no instances left: sleep this time
        mask = _inotify.IN_CREATE | _inotify.IN_MOVED_TO | _inotify.IN_ONLYDIR
        if _inotify.libc.inotify_add_watch(fd, os.fsencode(folder), mask) < 0:
            os.close(fd)  # no such folder yet, or no watches left: sleep this time
            return None
        return fd

    # -- helpers -------------------------------------------------------------------
    def _path(self, key: str) -> Path:
        return self.root / _rel(check_key(key))

    def _is_file(self, path: Path, key: str) -> bool:
        """Whether an object is at ``path`` (False where no object can be)."""
        try:
            return stat_mod.S_ISREG(os.stat(path).st_mode)
        except OSError as e:
            if e.errno in _MISSING_ERRNOS:
                return False
            raise self._wrap(e, key) from e

    def _make_folders(self, folder: Path) -> None:
        """Make ``folder`` and the folders above it that are missing; each one made is
        fsynced into its parent (the object about to land there must outlive a crash,
        and so must the way to it)."""
        missing = []
        while folder != self.root and not folder.is_dir():
            missing.append(folder)
            folder = folder.parent
        for made in reversed(missing):
            with contextlib.suppress(FileExistsError):  # made by another writer
                made.mkdir()
            self._fsync_dir(made.parent)

    def _write_tmp(self, path: Path, data: bytes | bytearray | memoryview) -> Path:
        tmp = path.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}"
        for attempt in range(10):
            try:
                self._make_folders(path.parent)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                break
            # A concurrent delete removes folders it empties: between mkdir's EEXIST and
            # its own is-a-folder check (FileExistsError), or before our open
            # (FileNotFoundError). Make the folder again.
            except (FileNotFoundError, FileExistsError):
                if attempt == 9:  # a delete kept removing the emptied folder under us
                    raise

        try:
            write_all(fd, data)
            if self.fsync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        return tmp

    def _fsync_dir(self, path: Path) -> None:
        if not self.fsync:
            return
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @staticmethod
    def _lock_path(path: Path) -> Path:
        name = path.name
        if len(name.encode()) > _LOCK_NAME_MAX:
            name = "h-" + _token(name.encode())
        return path.parent / f"{LOCK_PREFIX}{name}"

    @contextlib.contextmanager
    def _key_lock(self, path: Path, *, create: bool) -> Iterator[bool]:
        """Hold the flock of ``path``'s sidecar lock file; yields False (no lock taken)
        when it has none and ``create`` is False."""
        lock = self._lock_path(path)
        while True:
            try:
                fd = os.open(lock, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
            except NotADirectoryError:
                if create:
                    raise
                yield False  # no folder: "f/x" where "f" is an object
                return
            except FileNotFoundError:
                if not create:
                    yield False
                    return
                # a delete removed the folder (and may remove it again while we make it)
                with contextlib.suppress(FileExistsError):
                    path.parent.mkdir(parents=True, exist_ok=True)
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                # a delete may have unlinked the lock file while we waited: then the lock
                # we hold guards nothing; take the current file instead
                try:
                    current = os.stat(lock)
                except FileNotFoundError:
                    current = None
                held = os.fstat(fd)
                if current is None or (current.st_ino, current.st_dev) != (
                    held.st_ino,
                    held.st_dev,
                ):
                    if not create and current is None:
                        yield False
                        return
                    continue
                yield True
                return
            finally:
                os.close(fd)  # releases the flock

    def _wrap(self, e: OSError, key: str, *, reading: bool = False) -> Exception:
        if isinstance(e, FileNotFoundError) or (reading and e.errno in _MISSING_ERRNOS):
            return NotFoundError(f"no object {key!r} in store {self.url}")
        if e.errno == errno.ENAMETOOLONG:
            return StoreError(
                f"key {key!r} is too long for store {self.url}: a folder store holds names "
                "of at most 255 bytes between slashes"
            )
        if isinstance(e, PermissionError):
            return StoreAccessError(f"access denied to {key!r} in store {self.url}: {e.strerror}")
        return StoreError(f"store {self.url} failed on {key!r}: {e}")

    # -- Store API -----------------------------------------------------------------
    def get(self, key: str) -> bytes:
        try:
            with open(self._path(key), "rb") as f:
                return f.read()
        except IsADirectoryError:
            raise NotFoundError(f"no object {key!r} in store {self.url}") from None
        except OSError as e:
            raise self._wrap(e, key, reading=True) from e

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if start < 0 or length < 0:
            raise ValueError("start and length must be >= 0")
        try:
            with open(self._path(key), "rb") as f:
                f.seek(start)
                return f.read(length)
        except IsADirectoryError:
            raise NotFoundError(f"no object {key!r} in store {self.url}") from None
        except OSError as e:
            raise self._wrap(e, key, reading=True) from e

    def get_range_into(self, key: str, start: int, buf: Any) -> int:
        """Read up to ``len(buf)`` bytes of ``key`` from ``start`` straight into ``buf``."""
        view = memoryview(buf).cast("B")
        if start < 0:
            raise ValueError("start must be >= 0")
        try:
            with open(self._path(key), "rb", buffering=0) as f:
                got = 0
                while got < len(view):
                    n = os.preadv(f.fileno(), [view[got:]], start + got)
                    if not n:
                        break
                    got += n
                return got
        except IsADirectoryError:
            raise NotFoundError(f"no object {key!r} in store {self.url}") from None
        except OSError as e:
            raise self._wrap(e, key, reading=True) from e

    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        path = self._path(key)
        try:
            tmp = self._write_tmp(path, data)
            try:
                with self._key_lock(path, create=False):
                    os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
            self._fsync_dir(path.parent)  # the new name, not only the data, must be durable
        except OSError as e:
            raise self._wrap(e, key) from e

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        data = self.get(key)
        return data, _token(data)

    def put_if_absent_versioned(self, key: str, data: bytes | bytearray | memoryview) -> str | None:
        return _token(data) if self.put_if_absent(key, data) else None

    def put_if_match(
        self, key: str, data: bytes | bytearray | memoryview, token: str
    ) -> str | None:
        path = self._path(key)
        if not isinstance(token, str):
            raise TypeError(f"put_if_match token must be a str, got {type(token).__name__}")
        if not self._is_file(path, key):
            return None  # missing now: no match (and no lock file for a key that is not)
        try:
            tmp = self._write_tmp(path, data)  # the slow part, outside the lock
            try:
                with self._key_lock(path, create=True):
                    if not self._is_version(path, token):
                        return None
                    os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
            self._fsync_dir(path.parent)
        except OSError as e:
            raise self._wrap(e, key) from e
        return _token(data)

    def _is_version(self, path: Path, token: str) -> bool:
        """True if the object at ``path`` is still version ``token``; call it holding the
        key's lock (a conditional write or delete)."""
        try:
            with open(path, "rb") as f:
                current = _token(f.read())
                hashed = os.fstat(f.fileno()).st_ino
        except (FileNotFoundError, IsADirectoryError):
            # deleted meanwhile: drop the lock file we hold (whoever waits on it sees it
            # gone), so a missing key keeps no sidecar
            self._lock_path(path).unlink(missing_ok=True)
            return False
        # A put that bypassed the lock (see the module docstring) and replaced the file
        # since we hashed it: that is another version, so no match.
        return current == token and os.stat(path).st_ino == hashed

    def put_if_absent(self, key: str, data: bytes | bytearray | memoryview) -> bool:
        path = self._path(key)
        try:
            if os.path.lexists(path):
                return False
            tmp = self._write_tmp(path, data)
        except OSError as e:
            raise self._wrap(e, key) from e
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as e:
            raise self._wrap(e, key) from e
        finally:
            tmp.unlink(missing_ok=True)
        try:
            self._fsync_dir(path.parent)
        except OSError as e:
            raise self._wrap(e, key) from e
        return True

    def delete_if_match(self, key: str, token: str) -> bool:
        path = self._path(key)
        if not isinstance(token, str):
            raise TypeError(f"delete_if_match token must be a str, got {type(token).__name__}")
        if not self._is_file(path, key):
            return False  # missing: no match (and no lock file for a key that is not)
        try:
            with self._key_lock(path, create=True):
                if not self._is_version(path, token):
                    return False
                path.unlink()
                self._lock_path(path).unlink(missing_ok=True)  # waiters re-check, find it gone
            with contextlib.suppress(FileNotFoundError):
                # as in delete(): another delete emptied the folder and removed it
                # meanwhile (two processes popping a Dict's last entries): the object
                # is gone either way; failing here reported a done delete as an error
                self._fsync_dir(path.parent)
        except OSError as e:
            raise self._wrap(e, key) from e
        self._prune_empty({path.parent})
        return True

    def touch(self, key: str) -> None:
        path = self._path(key)
        try:
            if not self._is_file(path, key):
                raise FileNotFoundError(errno.ENOENT, "no object", str(path))
            os.utime(path)  # a file deleted meanwhile fails here: it is never made again
        except OSError as e:
            raise self._wrap(e, key, reading=True) from e

    def delete(self, keys: Iterable[str]) -> None:
        parents: set[Path] = set()
        removed: dict[Path, str] = {}  # folder -> a key deleted from it
        paths = [(key, self._path(key)) for key in keys]  # all keys checked before any delete
        for key, path in paths:
            try:
                with self._key_lock(path, create=False) as locked:
                    try:
                        path.unlink()
                        removed[path.parent] = key
                    except IsADirectoryError:
                        pass  # "d" where keys "d/..." are: a folder, no object
                    except OSError as e:
                        if e.errno not in _MISSING_ERRNOS:
                            raise
                    if locked:  # whoever waits on it re-checks and finds it gone
                        self._lock_path(path).unlink(missing_ok=True)
            except OSError as e:
                raise self._wrap(e, key) from e
            parents.add(path.parent)
        # Each folder a key left, once: until then a power cut can bring the object back
        # (a deleted Dict entry, the old name of a renamed volume).
        for folder, key in removed.items():
            try:
                self._fsync_dir(folder)
            except FileNotFoundError:
                pass  # emptied and removed by another delete meanwhile: nothing to bring back
            except OSError as e:
                raise self._wrap(e, key) from e
        self._prune_empty(parents)

    def _prune_empty(self, parents: set[Path]) -> None:
        # Folders exist only to hold keys: remove the ones left empty (deepest first).
        for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
            while parent != self.root and self.root in parent.parents:
                try:
                    parent.rmdir()
                except OSError:
                    break  # not empty (or just reused by a writer): leave it
                parent = parent.parent

    def stat(self, key: str) -> ObjectInfo:
        # one system call, no Path objects: waiting writers look at the log this way
        try:
            st = os.stat(f"{self._root_s}/{_rel(check_key(key))}")
        except OSError as e:
            raise self._wrap(e, key, reading=True) from e
        if not stat_mod.S_ISREG(st.st_mode):
            raise NotFoundError(f"no object {key!r} in store {self.url}")
        return ObjectInfo(key, st.st_size, st.st_mtime)

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        # The deepest folder that can hold matches; keys are then sorted as strings, since
        # a sorted directory walk is not byte order ("a-b" < "a/b" but "a" < "a-b").
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        if base and any(part in ("", ".", "..") for part in base.split("/")):
            return  # no valid key has such a segment; and "../" must not leave the root
        found: list[ObjectInfo] = []
        # A walk with os.scandir: each entry's stat comes without building paths, and
        # folders that cannot be read are skipped (as os.walk does).
        stack = [
            (f"{self._root_s}/{_rel(base)}" if base else self._root_s, f"{base}/" if base else "")
        ]
        while stack:
            folder, rel_dir = stack.pop()
            try:
                with os.scandir(folder) as it:
                    entries = list(it)
            except OSError:
                continue
            for e in entries:
                name = _unescape(e.name)
                if name is None:
                    continue  # a temp or lock file
                try:
                    is_dir = e.is_dir()
                except OSError:
                    is_dir = False
                if is_dir:
                    if not e.is_symlink():
                        stack.append((e.path, f"{rel_dir}{name}/"))
                    continue
                key = rel_dir + name
                if not key.startswith(prefix):
                    continue
                if start_after is not None and key <= start_after:
                    continue
                try:
                    st = e.stat()
                except OSError:
                    continue  # deleted while we listed (or a broken link)
                found.append(ObjectInfo(key, st.st_size, st.st_mtime))
        found.sort(key=lambda o: o.key)
        yield from found

    def temp_files(self, older_than: float) -> Iterator[Path]:
        """Yield leftover temporary files (from crashed writers) older than ``older_than``."""
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if _TEMP_NAME.fullmatch(name):  # not a lock file, nor a key's KEY_PREFIX
                    p = Path(dirpath) / name
                    try:
                        if p.stat().st_mtime < older_than:
                            yield p
                    except FileNotFoundError:
                        continue
