"""A store in a local folder: the embedded default, crash-safe without any server.

Every write goes to a temporary file in the destination folder, is fsynced, and only
then gets its final name: ``os.replace`` for plain puts, ``os.link`` for create-only
puts (``link`` fails with EEXIST when another writer won; ``rename`` would silently
overwrite). So a crash never leaves a half-written object under a final key; at worst a
``.tmp-*`` file that listing ignores and garbage collection removes.
"""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import NotFoundError, StoreAccessError, StoreError
from .base import ObjectInfo, Store, check_key

__all__ = ["LocalStore", "TMP_PREFIX"]

TMP_PREFIX = ".tmp-"


class LocalStore(Store):
    """Objects as files under ``root``; keys map to relative paths."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root).expanduser().resolve()
        self.url = self.root.as_uri()
        self.fsync = fsync
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except PermissionError as e:
            raise StoreAccessError(
                f"cannot create the store folder {self.root}: {e.strerror}"
            ) from e

    # -- helpers -------------------------------------------------------------------
    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _write_tmp(self, path: Path, data: bytes | bytearray | memoryview) -> Path:
        tmp = path.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}"
        for attempt in range(10):
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                break
            except FileNotFoundError:
                if attempt == 9:  # a delete kept removing the emptied folder under us
                    raise

        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
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

    def _wrap(self, e: OSError, key: str) -> Exception:
        if isinstance(e, FileNotFoundError):
            return NotFoundError(f"no object {key!r} in store {self.url}")
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
            raise self._wrap(e, key) from e

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
            raise self._wrap(e, key) from e

    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        path = self._path(key)
        try:
            tmp = self._write_tmp(path, data)
            os.replace(tmp, path)
        except OSError as e:
            raise self._wrap(e, key) from e

    def put_if_absent(self, key: str, data: bytes | bytearray | memoryview) -> bool:
        path = self._path(key)
        if path.exists():
            return False
        try:
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
        self._fsync_dir(path.parent)
        return True

    def delete(self, keys: Iterable[str]) -> None:
        parents: set[Path] = set()
        for key in keys:
            path = self._path(key)
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as e:
                raise self._wrap(e, key) from e
            parents.add(path.parent)
        # Folders exist only to hold keys: remove the ones this left empty (deepest first).
        for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
            while parent != self.root and self.root in parent.parents:
                try:
                    parent.rmdir()
                except OSError:
                    break  # not empty (or just reused by a writer): leave it
                parent = parent.parent

    def stat(self, key: str) -> ObjectInfo:
        try:
            st = self._path(key).stat()
        except OSError as e:
            raise self._wrap(e, key) from e
        if not os.path.isfile(self._path(key)):
            raise NotFoundError(f"no object {key!r} in store {self.url}")
        return ObjectInfo(key, st.st_size, st.st_mtime)

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        # The deepest folder that can hold matches; keys are then sorted as strings, since
        # a sorted directory walk is not byte order ("a-b" < "a/b" but "a" < "a-b").
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        if base and any(part in ("", ".", "..") for part in base.split("/")):
            return  # no valid key has such a segment; and "../" must not leave the root
        top = self.root / base if base else self.root
        found: list[ObjectInfo] = []
        try:
            walker = os.walk(top)
            for dirpath, _dirs, files in walker:
                rel_dir = os.path.relpath(dirpath, self.root)
                rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
                for name in files:
                    if name.startswith(TMP_PREFIX):
                        continue
                    key = rel_dir + name
                    if not key.startswith(prefix):
                        continue
                    if start_after is not None and key <= start_after:
                        continue
                    try:
                        st = os.stat(os.path.join(dirpath, name))
                    except FileNotFoundError:
                        continue  # deleted while we listed
                    found.append(ObjectInfo(key, st.st_size, st.st_mtime))
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise StoreError(f"cannot list {prefix!r} in store {self.url}: {e}") from e
        found.sort(key=lambda o: o.key)
        yield from found

    def temp_files(self, older_than: float) -> Iterator[Path]:
        """Yield leftover temporary files (from crashed writers) older than ``older_than``."""
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.startswith(TMP_PREFIX):
                    p = Path(dirpath) / name
                    try:
                        if p.stat().st_mtime < older_than:
                            yield p
                    except FileNotFoundError:
                        continue
