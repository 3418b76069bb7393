"""Store wrappers for tests: count what the engine asks of a store, or die mid-commit.

* :class:`CountingStore` records every operation (kind and key) made through it, so a
  test can assert structural bounds: "a one-file commit writes at most N tree objects",
  "10,000 small files cost at most 10 pack PUTs".
* :class:`KillAfterStore` ends the process with ``os._exit`` right after its k-th
  operation, so a test can sweep a crash over every point of a commit.

Both wrap any :class:`~jupyter_volume.store.Store` and keep its ``url``: the engine
shares one repository object per (store URL, volume) in a process, so use a wrapped
store for *every* access to a volume whose operations you want to see (or kill).
Never import anything above ``jupyter_volume.store`` here.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ..store.base import ObjectInfo, Store

__all__ = ["KILL_EXIT_CODE", "WRITE_OPS", "CountingStore", "KillAfterStore", "Op", "WrappedStore"]

#: The exit status of a process ended by :class:`KillAfterStore`.
KILL_EXIT_CODE = 87

#: Operations that change the store (the rest only read).
WRITE_OPS = frozenset({"put", "put_if_absent", "put_if_absent_versioned", "put_if_match", "delete"})


@dataclass(frozen=True, slots=True)
class Op:
    """One store operation: its kind (``get``, ``put``, ...) and key (or prefix)."""

    kind: str
    key: str


class WrappedStore(Store):
    """A store that forwards everything to ``inner`` and calls :meth:`_record` once
    per operation, after the operation has returned (or raised)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.url = inner.url
        self.poll_budget = inner.poll_budget
        self.cheap_stat = inner.cheap_stat

    def _record(self, kind: str, key: str) -> None:  # pragma: no cover - overridden
        pass

    def _do(self, kind: str, key: str, fn, *args):  # type: ignore[no-untyped-def]
        try:
            return fn(*args)
        finally:
            self._record(kind, key)

    def get(self, key: str) -> bytes:
        return self._do("get", key, self.inner.get, key)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        return self._do("get_range", key, self.inner.get_range, key, start, length)

    def get_range_into(self, key: str, start: int, buf: Any) -> int:
        if type(self).get_range is not WrappedStore.get_range:
            # a subclass intercepts ranged reads: this one goes through it too
            return super().get_range_into(key, start, buf)
        return self._do("get_range", key, self.inner.get_range_into, key, start, buf)

    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        return self._do("put", key, self.inner.put, key, data)

    def put_if_absent(self, key: str, data: bytes | bytearray | memoryview) -> bool:
        return self._do("put_if_absent", key, self.inner.put_if_absent, key, data)

    def put_if_absent_versioned(self, key: str, data: bytes | bytearray | memoryview) -> str | None:
        if type(self).put_if_absent is not WrappedStore.put_if_absent:
            # a subclass intercepts create-only writes: this one goes through it too
            return super().put_if_absent_versioned(key, data)
        return self._do(
            "put_if_absent_versioned", key, self.inner.put_if_absent_versioned, key, data
        )

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        return self._do("get_versioned", key, self.inner.get_versioned, key)

    def put_if_match(
        self, key: str, data: bytes | bytearray | memoryview, token: str
    ) -> str | None:
        return self._do("put_if_match", key, self.inner.put_if_match, key, data, token)

    def delete_if_match(self, key: str, token: str) -> bool:
        return self._do("delete_if_match", key, self.inner.delete_if_match, key, token)

    def touch(self, key: str) -> None:
        return self._do("touch", key, self.inner.touch, key)

    def delete(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        return self._do("delete", ",".join(keys), self.inner.delete, keys)

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        # Listing is one operation however many keys it yields: materialize it here.
        return iter(self._do("list", prefix, lambda: list(self.inner.list(prefix, start_after))))

    def stat(self, key: str) -> ObjectInfo:
        return self._do("stat", key, self.inner.stat, key)

    def wait_change(self, prefix: str, timeout: float) -> None:
        self.inner.wait_change(prefix, timeout)

    def close(self) -> None:
        self.inner.close()


class CountingStore(WrappedStore):
    """Wraps any store and records every operation (thread-safe).

    Example::

        cs = CountingStore(store)
        vol = Volume.from_name("v", store=cs, create_if_missing=True)
        ...
        cs.reset()
        with vol.batch_upload() as b:
            b.put_file(io.BytesIO(data), "x")
        assert cs.count("put", prefix=f"vols/{vol.info().id}/packs/") == 1
    """

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self._lock = threading.Lock()
        self.ops: list[Op] = []

    def _record(self, kind: str, key: str) -> None:
        with self._lock:
            self.ops.append(Op(kind, key))

    def reset(self) -> None:
        """Forget every operation recorded so far."""
        with self._lock:
            self.ops = []

    def matching(self, kind: str | Iterable[str] | None = None, prefix: str = "") -> list[Op]:
        """The recorded operations of ``kind`` (one or several; None: all) on keys
        starting with ``prefix``."""
        kinds = {kind} if isinstance(kind, str) else (set(kind) if kind is not None else None)
        with self._lock:
            ops = list(self.ops)
        return [o for o in ops if (kinds is None or o.kind in kinds) and o.key.startswith(prefix)]

    def count(self, kind: str | Iterable[str] | None = None, prefix: str = "") -> int:
        """How many operations of ``kind`` on keys starting with ``prefix`` were made."""
        return len(self.matching(kind, prefix))

    def by_kind(self) -> Counter[str]:
        """Operation counts keyed by kind."""
        with self._lock:
            return Counter(o.kind for o in self.ops)

    def by_prefix(self, depth: int = 3, kind: str | Iterable[str] | None = None) -> Counter[str]:
        """Operation counts keyed by the first ``depth`` segments of the key
        (``vols/<id>/packs`` for depth 3)."""
        return Counter("/".join(o.key.split("/")[:depth]) for o in self.matching(kind))


class KillAfterStore(WrappedStore):
    """Ends the process with ``os._exit(exit_code)`` right after its ``k``-th operation.

    The k-th operation completes (a put has landed on the store) and then the process
    dies at once, from whichever thread made it: no cleanup, no ``finally`` blocks, no
    buffered output, as in a power cut between two store requests. ``k=None`` never
    kills and only counts (``ops`` says how many operations a run made).
    """

    def __init__(self, inner: Store, k: int | None, exit_code: int = KILL_EXIT_CODE) -> None:
        super().__init__(inner)
        self.k = k
        self.exit_code = exit_code
        self.ops = 0
        self._lock = threading.Lock()

    def _record(self, kind: str, key: str) -> None:
        with self._lock:
            self.ops += 1
            if self.k is not None and self.ops >= self.k:
                try:
                    sys.stderr.write(f"KillAfterStore: exit after op {self.ops}: {kind} {key}\n")
                    sys.stderr.flush()
                finally:
                    os._exit(self.exit_code)
