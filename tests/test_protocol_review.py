"""Review of the round-trip overlaps: what a commit leaves in flight, and what another
commit of the same process may take from it.

- A streamed commit (a mount's first commit of a big tree) sends its tree's last nodes
  before its final checks, so that their round trip overlaps them. One of those checks
  is whether the volume still exists: found deleted elsewhere, the mount publishes
  nothing and deletes what it uploaded under the deleted volume's prefix. Nodes still on
  their way then must not land after that deletion, where nothing would ever remove them.
- One process has one repository object per volume, shared by every thread: a mount's
  streamed commit builds its tree (outside the commit lock) while a cell commits through
  the API. Neither may drop or take over the tree nodes the other has yet to send, nor
  move the process back to an older head than another has seen.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from jupyter_volume import Volume, names
from jupyter_volume.errors import NotFoundError
from jupyter_volume.mount import STREAM_AT
from jupyter_volume.repository import Repository
from jupyter_volume.store import Store
from jupyter_volume.testing.wrappers import WrappedStore

#: how long a held tree PUT waits for the deletion before it goes ahead anyway: code
#: that waits for the PUT before deleting (as it should) never lets the deletion come
#: first, so the PUT must not wait for it for good (the test then passes, after this)
_HOLD_AT_MOST = 5.0


class _TreesHeldUntilDeleted(WrappedStore):
    """Once armed, a PUT of a tree node of volume ``vol_id`` waits until something under
    the volume's prefix has been deleted (or at most ``_HOLD_AT_MOST`` s), then lands.
    ``idle`` is set whenever no such PUT is in progress."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.vol_id = ""
        self.deleted = threading.Event()
        self._lock = threading.Lock()
        self._in_flight = 0
        self.idle = threading.Event()
        self.idle.set()
        self.held = 0

    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        if not (self.vol_id and key.startswith(f"vols/{self.vol_id}/trees/")):
            return super().put(key, data)
        with self._lock:
            self._in_flight += 1
            self.held += 1
            self.idle.clear()
        try:
            self.deleted.wait(_HOLD_AT_MOST)
            return super().put(key, data)
        finally:
            with self._lock:
                self._in_flight -= 1
                if not self._in_flight:
                    self.idle.set()

    def delete(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        try:
            return super().delete(keys)
        finally:
            if self.vol_id and any(k.startswith(f"vols/{self.vol_id}/") for k in keys):
                self.deleted.set()


def test_a_streamed_commit_to_a_volume_deleted_meanwhile_leaves_nothing_behind(
    local_store: Store, tmp_path: Path
) -> None:
    """The streamed commit's last tree nodes, sent beside its final checks, land before
    the mount deletes what it uploaded to the deleted volume, not after: the deleted
    volume's prefix is empty once every request has finished (as the plain commit's
    test in test_mount.py asserts). Before, they landed after the deletion, under no
    name and out of every gc's reach, for good."""
    held = _TreesHeldUntilDeleted(local_store)
    vol = Volume.from_name("vol", store=held, create_if_missing=True)
    vol_id = vol.object_id
    m = vol.mount(tmp_path / "mnt", background=False)
    for i in range(STREAM_AT + 100):  # enough new files to take the streamed path
        d = tmp_path / "mnt" / f"part{i % 4}"
        d.mkdir(exist_ok=True)
        (d / f"f{i:05d}.bin").write_bytes(os.urandom(600))  # in packs, not inline
    names.delete(local_store, "vol")  # deleted elsewhere (by the store's other user)
    held.vol_id = vol_id
    with pytest.raises(NotFoundError, match="no longer exists"):
        m.commit()
    assert held.held, "the streamed commit sent no tree node"
    assert held.idle.wait(60), "a tree node's PUT never finished"
    left = [info.key for info in local_store.list(f"vols/{vol_id}/")]
    assert left == [], f"objects left under the deleted volume: {left[:5]}"
    with pytest.raises(NotFoundError):
        m.unmount()


def test_a_commit_that_changes_nothing_keeps_the_nodes_a_streamed_commit_has_yet_to_send(
    local_store: Store, tmp_path: Path
) -> None:
    """A streamed commit keeps the folders it finished in memory until its next batch
    goes up; a commit on another thread that changed nothing (here a restore to the
    state the volume is in, which returns None) threw away every node waiting to be sent,
    the streamed commit's too. It then published a tree whose folders were never
    stored: the volume's newest commit could not be read by anyone else."""
    vol = Volume.from_name("vol", store=local_store, create_if_missing=True)
    repo = vol._repo
    writer = repo.writer()
    restored: list[object] = []

    def items():  # type: ignore[no-untyped-def]
        yield "a/f1.txt", writer.bytes_entry(b"one")
        yield "a/f2.txt", writer.bytes_entry(b"two")
        yield "b/g1.txt", writer.bytes_entry(b"three")  # folder a is finished now
        other = threading.Thread(target=lambda: restored.append(vol.restore(0)))
        other.start()
        other.join()
        yield "b/g2.txt", writer.bytes_entry(b"four")

    rec, _stats = repo.commit_stream(items(), writer=writer, message="streamed")
    assert restored == [None]  # the other commit had nothing to change
    assert rec is not None
    fresh = Repository(local_store, vol.object_id, cache_dir=tmp_path / "fresh")
    assert sorted(p for p, _e in fresh.trees.walk(fresh.head().root)) == [
        "a",
        "a/f1.txt",
        "a/f2.txt",
        "b",
        "b/g1.txt",
        "b/g2.txt",
    ]
    assert fresh.verify().ok


class _AfterCreate(WrappedStore):
    """Runs ``then()`` once, right after the create-only write of ``key`` landed."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.key = ""
        self.then: Any = None

    def put_if_absent(self, key: str, data: bytes | bytearray | memoryview) -> bool:
        done = super().put_if_absent(key, data)
        if key == self.key and self.then is not None:
            then, self.then = self.then, None
            then()
        return done


def test_a_commit_never_moves_its_process_back_to_an_older_head(
    local_store: Store, tmp_path: Path
) -> None:
    """A commit's record lands as seq N; before the committing thread notes it, another
    process commits N+1 and another thread of this process sees it. The committing
    thread then set the process's head to N: what the process reads went back a commit
    (the other writer's file gone from its listings) until something refreshed it."""
    wrapped = _AfterCreate(local_store)
    vol = Volume.from_name("vol", store=wrapped, create_if_missing=True)
    repo = vol._repo
    other = Volume.from_name("vol", store=local_store)  # another process's view
    seq = repo.head(refresh=True).seq
    seen: list[int] = []

    def meanwhile() -> None:
        with other.batch_upload() as b:
            b.put_file(io.BytesIO(b"theirs"), "theirs.txt")
        t = threading.Thread(target=lambda: seen.append(repo.head(refresh=True).seq))
        t.start()
        t.join()

    wrapped.key = repo._log_key(seq + 1)
    wrapped.then = meanwhile
    with vol.batch_upload() as b:
        b.put_file(io.BytesIO(b"ours"), "ours.txt")
    assert seen == [seq + 2]
    assert repo.head(refresh=False).seq == seq + 2
    assert sorted(e.path for e in vol.listdir("/")) == ["ours.txt", "theirs.txt"]
