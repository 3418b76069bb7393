"""A big commit's uploads go on past a PUT that the store holds up (packs.MAX_IN_FLIGHT).

A store can keep one PUT waiting for a second or more: SeaweedFS while it adds a
volume, S3 on its slowest requests. That pause cannot be caused at a chosen moment on
a real server, so a wrapper around the real store (a folder, or SeaweedFS) holds the
first pack's PUT; everything else goes to the store as usual.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from jupyter_volume import Volume
from jupyter_volume.errors import StoreError
from jupyter_volume.mount import Mount
from jupyter_volume.store import Store
from jupyter_volume.testing.wrappers import WrappedStore

MiB = 1 << 20
#: how long the held PUT waits for the others at most (the old writer never let them
#: come, so this bounds how long the test takes to fail, not how long it takes to pass)
HOLD_AT_MOST = 20.0


class _FirstPackHeld(WrappedStore):
    """Holds the first pack PUT until ``others`` more packs have landed (or at most
    ``HOLD_AT_MOST`` s); ``landed_meanwhile``: how many had when it was let go."""

    def __init__(self, inner: Store, others: int) -> None:
        super().__init__(inner)
        self.others = others
        self.held: str | None = None
        self.landed = 0
        self.landed_meanwhile: int | None = None
        self._lock = threading.Lock()
        self._enough = threading.Event()

    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        if "/packs/" not in key:
            return super().put(key, data)
        with self._lock:
            hold = self.held is None
            if hold:
                self.held = key
        if hold:
            self._enough.wait(HOLD_AT_MOST)
            with self._lock:
                self.landed_meanwhile = self.landed
            return super().put(key, data)
        super().put(key, data)
        with self._lock:
            self.landed += 1
            if self.landed >= self.others:
                self._enough.set()


def _big_file_to_commit(wrapped: Store, tmp_path: Path) -> tuple[Volume, Mount, bytes]:
    """A volume on ``wrapped``, mounted (no background commits), with a new file of
    120 MiB in it (packs of 2, 4, 8, then 16 MiB: nine of them); ``(vol, mount, data)``."""
    vol = Volume.from_name("vol", store=wrapped, create_if_missing=True)
    m = vol.mount(tmp_path / "mnt", background=False)
    data = os.urandom(120 * MiB)
    (tmp_path / "mnt" / "big.bin").write_bytes(data)
    return vol, m, data


def _read_back_whole(store: Store, data: bytes) -> None:
    """Another reader, without the wrapper, reads ``big.bin`` as ``data``."""
    fresh = Volume.from_name("vol", store=store)
    assert b"".join(fresh.read_file("big.bin")) == data


def test_a_held_pack_put_does_not_stop_the_others_and_the_commit_is_whole(
    store: Store, tmp_path: Path
) -> None:
    held = _FirstPackHeld(store, others=5)
    vol, m, data = _big_file_to_commit(held, tmp_path)
    info = m.commit()
    assert info is not None
    assert held.held is not None, "no pack was uploaded"
    # the old writer (three on their way, a wait for the oldest) had two land meanwhile
    assert held.landed_meanwhile is not None and held.landed_meanwhile >= 5, held.landed_meanwhile
    _read_back_whole(store, data)


class _LaterPackFails(_FirstPackHeld):
    """Holds the first pack PUT as above, and fails the ``fail_at``-th pack PUT after it
    (a store error on one of the later uploads, while the oldest is still on its way)."""

    def __init__(self, inner: Store, fail_at: int) -> None:
        super().__init__(inner, others=fail_at)
        self.fail_at = fail_at
        self.armed = True
        self._count = 0

    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        if self.armed and "/packs/" in key and self.held is not None and key != self.held:
            with self._lock:
                self._count += 1
                fail = self._count == self.fail_at
            if fail:
                self._enough.set()  # the held one goes on once this one has failed
                raise StoreError("injected: a pack PUT failed")
        super().put(key, data)


def test_a_later_pack_put_that_fails_while_the_oldest_is_held_publishes_nothing(
    store: Store, tmp_path: Path
) -> None:
    # The writer now waits for whichever upload ends first: a failed one that is not the
    # oldest must still fail the commit, publish nothing and leave the file uncommitted.
    wrapped = _LaterPackFails(store, fail_at=3)
    vol, m, data = _big_file_to_commit(wrapped, tmp_path)
    before = [c.seq for c in vol.history()]
    with pytest.raises(StoreError, match="injected"):
        m.commit()
    vol.refresh()
    assert [c.seq for c in vol.history()] == before
    assert m.status().added == ["big.bin"]
    wrapped.armed = False
    assert m.commit() is not None
    _read_back_whole(store, data)
