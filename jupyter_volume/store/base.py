"""The object-store contract every backend implements.

A store holds immutable-ish blobs under string keys ("vols/abc/log/000...01"). Keys use
``/`` as separator, never start with ``/``, and never contain ``..`` segments, NUL,
backslashes or lone surrogates (text with no UTF-8 form). Any other segment is a valid
key on every store, ``.tmp-x`` included. The repository layer above relies on exactly
these promises:

* ``get(key)`` returns the whole object, or raises :class:`NotFoundError`.
* ``get_range(key, start, length)`` returns ``length`` bytes from ``start``; fewer when
  the object ends first (an empty result past the end). Missing key: NotFoundError.
* ``put(key, data)`` stores ``data`` under ``key`` atomically: a reader sees the old
  object, or the whole new one, never a part. Used for content-addressed objects.
* ``put_if_absent(key, data)`` creates ``key`` only if it does not exist, atomically
  with respect to every other writer of every process and machine. It returns True
  when this call created the object and False when the key already existed. Where a
  transport lost the response to a create that did land (a retried request then sees
  the key present), a backend that can tell reports True; a caller whose objects are
  unique (commit records carry a txn_id) settles any remaining doubt by reading the
  object back.
* ``get_versioned(key)`` returns ``(data, token)``: the whole object and an opaque
  version token (a string) for ``put_if_match``. Missing key: NotFoundError.
* ``put_if_match(key, data, token)`` replaces ``key`` with ``data`` only if its current
  version is ``token``, atomically with respect to every other conditional write of
  that key from any process or machine (compare-and-swap). It returns the new
  object's token when it wrote, and None when the key holds another version or does
  not exist (create with ``put_if_absent``). Tokens derive from the content (an S3
  ETag, a hash on the local store): an object rewritten with identical bytes may keep
  its token, which is harmless for the read-modify-write loops this is made for. When
  a transport lost the response to a write that did land, a backend settles it by
  reading the object back (ours if it holds exactly ``data``), so a caller whose write
  may repeat another writer's bytes makes it unique (a Dict's ``incr`` adds write ids).
* ``put_if_absent_versioned(key, data)``: as ``put_if_absent``, giving the new object's
  token instead of True (None instead of False).
* ``delete_if_match(key, token)`` deletes ``key`` only if its version is still
  ``token``: True when this call deleted it.
* ``delete(keys)`` removes every key given; missing keys are not an error.
* ``list(prefix, start_after=None)`` yields :class:`ObjectInfo` for every key that
  starts with ``prefix`` and sorts after ``start_after``, in ascending byte order.
* ``stat(key)`` returns the :class:`ObjectInfo` of one key or raises NotFoundError.
* ``touch(key)`` gives an object a new modification time, its bytes unchanged (gc's
  grace counts from it).
* ``get_many(keys)`` and ``get_or_none(key)``: many objects in parallel, or one; None
  for a missing one (defined here over ``get``).

Transient faults are retried inside the backend; what escapes is a :class:`StoreError`
(or :class:`StoreAccessError` for refused credentials). Never import the repository or
anything above it from here.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .._pools import SharedPool
from ..errors import InvalidError

_get_many_pool = SharedPool(16, "jv-get-many")

__all__ = ["ObjectInfo", "Store", "check_key"]


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One listed object: its key (relative to the store), size in bytes, mtime (epoch s)."""

    key: str
    size: int
    mtime: float


def check_key(key: str) -> str:
    """Return ``key`` if it is a valid store key, else raise :class:`InvalidError`."""
    if not isinstance(key, str) or not key:
        raise InvalidError(f"store key must be a non-empty string, got {key!r}")
    if key.startswith("/") or "\x00" in key or "\\" in key:
        raise InvalidError(f"invalid store key {key!r}: no leading '/', NUL or backslash")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise InvalidError(f"invalid store key {key!r}: empty, '.' or '..' segment")
    if not key.isascii():
        try:
            key.encode()
        except UnicodeEncodeError:  # a lone surrogate: no UTF-8 form, so no S3 key or file name
            raise InvalidError(f"invalid store key {key!r}: not valid Unicode text") from None
    return key


class Store(abc.ABC):
    """Abstract object store. See the module docstring for the contract."""

    #: A URL that :func:`jupyter_volume.store.open_store` turns back into this store.
    url: str
    #: Requests per second that all writers waiting on one volume's commit log may spend
    #: together looking at it (group commit): 64 waiters each looking every 25 ms would
    #: swamp an S3 server (and, on one machine, the CPU the leader needs).
    poll_budget: float = 50.0
    #: True if :meth:`stat` of one key costs about what listing one costs (a local
    #: folder): the newest commit is then found by looking at the next keys one by one,
    #: not by listing a log that grows with every commit.
    cheap_stat: bool = False

    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """Return the whole object stored under ``key``."""

    @abc.abstractmethod
    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Return up to ``length`` bytes of ``key`` starting at byte ``start``."""

    def get_range_into(self, key: str, start: int, buf: Any) -> int:
        """Read up to ``len(buf)`` bytes of ``key`` from byte ``start`` into the writable
        buffer ``buf``; return how many arrived (fewer at the object's end, 0 past it).
        Errors as :meth:`get_range`. This default copies :meth:`get_range`'s answer;
        stores that can read into the buffer directly override it."""
        view = memoryview(buf).cast("B")
        data = self.get_range(key, start, len(view))
        view[: len(data)] = data
        return len(data)

    @abc.abstractmethod
    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        """Store ``data`` under ``key``, replacing any previous object atomically."""

    @abc.abstractmethod
    def put_if_absent(self, key: str, data: bytes | bytearray | memoryview) -> bool:
        """Create ``key`` with ``data`` unless it exists; True if this call created it."""

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        """Return ``(data, token)`` of ``key``: its bytes and a version token for
        :meth:`put_if_match`. Stores without conditional writes raise NotImplementedError."""
        raise NotImplementedError(f"{type(self).__name__} has no conditional writes")

    def put_if_absent_versioned(self, key: str, data: bytes | bytearray | memoryview) -> str | None:
        """Create ``key`` with ``data`` unless it exists: the new object's version token
        (for :meth:`put_if_match`) if this call created it, else None. Stores that learn
        the token from the write itself override this; here it is read back."""
        if not self.put_if_absent(key, data):
            return None
        return self.get_versioned(key)[1]

    def put_if_match(
        self, key: str, data: bytes | bytearray | memoryview, token: str
    ) -> str | None:
        """Replace ``key`` with ``data`` if its version is still ``token`` (compare-and-swap);
        the new token when written, None when the version differs or the key is missing."""
        raise NotImplementedError(f"{type(self).__name__} has no conditional writes")

    def delete_if_match(self, key: str, token: str) -> bool:
        """Delete ``key`` if its version is still ``token`` (from :meth:`get_versioned` or
        :meth:`put_if_match`); True when this call deleted it, False when the version
        differs or the key is missing. Of several callers racing with one token, at most
        one gets True. Stores without conditional writes raise NotImplementedError."""
        raise NotImplementedError(f"{type(self).__name__} has no conditional writes")

    @abc.abstractmethod
    def delete(self, keys: Iterable[str]) -> None:
        """Delete every key in ``keys``; keys that do not exist are ignored."""

    @abc.abstractmethod
    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        """Yield the objects whose key starts with ``prefix``, sorted, after ``start_after``."""

    @abc.abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Return the size and mtime of ``key``."""

    def touch(self, key: str) -> None:
        """Make ``key``'s modification time now, keeping its bytes (NotFoundError when it
        is missing). gc deletes unreferenced objects only once they are older than its
        grace period, so a writer keeps the uploads of a commit still in the making
        young this way. This default uploads the object again; stores do it in place."""
        self.put(key, self.get(key))

    def get_many(self, keys: Iterable[str]) -> list[bytes | None]:
        """The objects under ``keys``, in order (None where there is none), read in
        parallel: one after another, 50 small objects from a store 30 ms away take 1.5 s
        (a listing of volumes or Dicts reads one per name)."""
        keys = list(keys)
        if len(keys) <= 1:
            return [self.get_or_none(k) for k in keys]
        return list(_get_many_pool.map(self.get_or_none, keys))

    def get_or_none(self, key: str) -> bytes | None:
        """The object under ``key``, or None if there is none."""
        from ..errors import NotFoundError

        try:
            return self.get(key)
        except NotFoundError:
            return None

    def exists(self, key: str) -> bool:
        """Return True if ``key`` exists."""
        from ..errors import NotFoundError

        try:
            self.stat(key)
        except NotFoundError:
            return False
        return True

    def wait_change(self, prefix: str, timeout: float) -> None:
        """Wait ``timeout`` seconds, or less if this store can tell that a key was added
        under the folder ``prefix`` (ending in ``/``) meanwhile. A hint for callers that
        poll (writers waiting for their turn to commit): they look again either way.
        This default just sleeps; a store that can be watched wakes early."""
        time.sleep(timeout)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections or other resources held by the store."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"
