"""A view of a store under a key prefix: how environments share one store.

``PrefixedStore(inner, "envs/dev/")`` stores key ``names/x`` as ``envs/dev/names/x`` in
``inner`` and lists, stats and deletes only below that prefix, so everything above it
(the registry, the volumes, their leases) sees an ordinary store of its own. Its ``url``
differs from ``inner.url`` (the engine keeps one repository per store URL and volume,
so two environments must never share an entry); for a folder or an S3 store it is the
URL of the same place opened directly.

Never import anything above ``jupyter_volume.store`` here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import NotFoundError
from .base import ObjectInfo, Store, check_key

__all__ = ["PrefixedStore"]


def _prefixed_url(url: str, prefix: str) -> str:
    """``url`` with ``prefix`` appended to its path (a fragment for unknown schemes)."""
    parts = urlsplit(url)
    if parts.scheme in ("file", "s3"):
        path = parts.path.rstrip("/") + "/" + prefix.strip("/")
        if parts.scheme == "s3" and not parts.path.strip("/"):
            path = "/" + prefix.strip("/")
        return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))
    return f"{url}#{prefix.strip('/')}"


class PrefixedStore(Store):
    """Every key of ``inner`` that starts with ``prefix``, with the prefix taken off.

    Example::

        dev = PrefixedStore(open_store("s3://bucket/team"), "envs/dev/")
        dev.put("names/x", b"...")  # stored as envs/dev/names/x
    """

    def __init__(self, inner: Store, prefix: str) -> None:
        prefix = prefix.strip("/")
        check_key(prefix)
        self.inner = inner
        self.prefix = prefix + "/"
        self.url = _prefixed_url(inner.url, prefix)
        self.poll_budget = inner.poll_budget
        self.cheap_stat = inner.cheap_stat
        temp_files = getattr(inner, "temp_files", None)
        if temp_files is not None:  # gc's clean-up of a local store's abandoned temp files
            self.temp_files = temp_files

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _strip(self, info: ObjectInfo) -> ObjectInfo:
        return ObjectInfo(info.key[len(self.prefix) :], info.size, info.mtime)

    def get(self, key: str) -> bytes:
        """Return the whole object stored under ``key``."""
        try:
            return self.inner.get(self._key(key))
        except NotFoundError:
            raise NotFoundError(f"no object {key!r} in store {self.url}") from None

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Return up to ``length`` bytes of ``key`` starting at byte ``start``."""
        try:
            return self.inner.get_range(self._key(key), start, length)
        except NotFoundError:
            raise NotFoundError(f"no object {key!r} in store {self.url}") from None

    def get_range_into(self, key: str, start: int, buf: Any) -> int:
        """Read up to ``len(buf)`` bytes of ``key`` from ``start`` into ``buf`` (the
        inner store's way, which may skip a copy)."""
        try:
            return self.inner.get_range_into(self._key(key), start, buf)
        except NotFoundError:
            raise NotFoundError(f"no object {key!r} in store {self.url}") from None

    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        """Store ``data`` under ``key``, replacing any previous object atomically."""
        self.inner.put(self._key(key), data)

    def put_if_absent(self, key: str, data: bytes | bytearray | memoryview) -> bool:
        """Create ``key`` with ``data`` unless it exists; True if this call created it."""
        return self.inner.put_if_absent(self._key(key), data)

    def put_if_absent_versioned(self, key: str, data: bytes | bytearray | memoryview) -> str | None:
        """Create ``key`` unless it exists: its version token, or None."""
        return self.inner.put_if_absent_versioned(self._key(key), data)

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        """Return ``(data, token)`` of ``key`` (see :meth:`Store.put_if_match`)."""
        try:
            return self.inner.get_versioned(self._key(key))
        except NotFoundError:
            raise NotFoundError(f"no object {key!r} in store {self.url}") from None

    def put_if_match(
        self, key: str, data: bytes | bytearray | memoryview, token: str
    ) -> str | None:
        """Replace ``key`` if its version is still ``token``; the new token, or None."""
        return self.inner.put_if_match(self._key(key), data, token)

    def delete_if_match(self, key: str, token: str) -> bool:
        """Delete ``key`` if its version is still ``token``; True when deleted."""
        return self.inner.delete_if_match(self._key(key), token)

    def touch(self, key: str) -> None:
        """Make ``key``'s modification time now (see :meth:`Store.touch`)."""
        try:
            self.inner.touch(self._key(key))
        except NotFoundError:
            raise NotFoundError(f"no object {key!r} in store {self.url}") from None

    def delete(self, keys: Iterable[str]) -> None:
        """Delete every key in ``keys``; keys that do not exist are ignored."""
        self.inner.delete([self._key(k) for k in keys])

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        """Yield the objects whose key starts with ``prefix``, sorted, after ``start_after``."""
        after = self.prefix + start_after if start_after is not None else None
        for info in self.inner.list(self.prefix + prefix, start_after=after):
            yield self._strip(info)

    def stat(self, key: str) -> ObjectInfo:
        """Return the size and mtime of ``key``."""
        try:
            return self._strip(self.inner.stat(self._key(key)))
        except NotFoundError:
            raise NotFoundError(f"no object {key!r} in store {self.url}") from None

    def wait_change(self, prefix: str, timeout: float) -> None:
        """See :meth:`Store.wait_change`: the store this one is a view of watches."""
        self.inner.wait_change(self.prefix + prefix, timeout)

    def close(self) -> None:
        """Nothing to release: the store this one is a view of is not owned by it."""
