"""What the NFS fault model (test_model_nfs_faults.py) found, reduced to one plain case
each, with the real fault proxy in front of SeaweedFS."""

from __future__ import annotations

import contextlib
import io
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from faultproxy import FaultProxy, store_through
from modeltest import StoreAs

from jupyter_volume import NetworkFileSystem
from jupyter_volume.errors import StoreError

pytestmark = pytest.mark.s3


@pytest.fixture
def proxy(seaweedfs: Any) -> Iterator[FaultProxy]:
    with FaultProxy(seaweedfs.endpoint, seed=7) as p:
        yield p


def _read(nfs: NetworkFileSystem, path: str) -> bytes:
    return b"".join(nfs.read_file(path))


@contextlib.contextmanager
def _client_b(
    proxy: FaultProxy, seaweedfs: Any, s3_bucket: str, s3_store: Any, name: str
) -> Iterator[NetworkFileSystem]:
    """Client B of NFS ``name``, through ``proxy`` (3 attempts a request); its faults
    cleared and its store closed at the end."""
    store_b = store_through(proxy, seaweedfs, s3_bucket, s3_store.prefix, read_timeout=5)
    store_b.max_attempts = 3
    nfs_b = NetworkFileSystem.from_name(name, store=store_b)
    nfs_b.hydrate()
    nfs_b._retention_due(wait=True)  # its first look at the store, out of the way
    try:
        yield nfs_b
    finally:
        proxy.clear()
        store_b.close()


@contextlib.contextmanager
def _live_b(
    proxy: FaultProxy, seaweedfs: Any, s3_bucket: str, s3_store: Any, tmp_path: Path
) -> Iterator[tuple[NetworkFileSystem, Path, Any]]:
    """``(A's handle, B's folder, B's live folder)`` of a new NFS: B's folder through
    ``proxy``, its loop asleep (the test syncs); let go at the end, faults cleared."""
    name = f"found-{uuid.uuid4().hex[:8]}"
    nfs_a = NetworkFileSystem.from_name(name, create_if_missing=True, store=s3_store)
    nfs_a.hydrate()
    with _client_b(proxy, seaweedfs, s3_bucket, s3_store, name) as nfs_b:
        folder = tmp_path / "B"
        m = nfs_b.mount(folder, interval=1e6, settle=0.05)
        try:
            yield nfs_a, folder, m
        finally:
            proxy.clear()
            m._detach()


def _lose_the_slot_then_fail(proxy: FaultProxy, meanwhile: Callable[[], None]) -> None:
    """Arm, one after the other: B's commit record's PUT answers 500 once, after
    ``meanwhile`` (another writer's commit) took that slot, so B loses the race and puts
    its change set in the line of waiting commits; then the log cannot be listed (3
    times: B gives up) and B's intent cannot be deleted (3 times)."""

    proxy.arm_stages(
        [
            ("error500", "PUT", "/log/", 1),
            ("error500", "GET", "list-type=2", 3),
            ("error500", "POST", "?delete", 3),
        ],
        then=meanwhile,
    )


def test_a_folder_push_given_up_on_does_not_land_later_over_a_newer_version(
    proxy: FaultProxy, seaweedfs: Any, s3_bucket: str, s3_store: Any, tmp_path: Path
) -> None:
    """B's live folder pushes its edit of ``p``; the push loses the log slot to A's
    commit of ``q``, so B's change set waits in the line of commits (an intent on the
    store), then B cannot reach the log and gives up: ``sync()`` raises StoreError, and
    the intent cannot be deleted (the error's note: "another writer may still commit
    it"). A then writes a newer ``p``. The next commit of anyone (C's write of another
    file ``r``) must not put B's older ``p`` back over A's newer one. It does: C folds
    the waiting intent into its commit (it touches other paths than C's), and ``p``
    holds the bytes B's folder had before A's write: a failure turned into a write of
    older bytes over newer ones (repository/repo.py, ``_choose_intents``: an intent is
    carried whatever was committed to its paths after its base)."""
    name = f"found-{uuid.uuid4().hex[:8]}"
    nfs_a = NetworkFileSystem.from_name(name, create_if_missing=True, store=s3_store)
    nfs_a.write_file("p", io.BytesIO(b"v0"))
    with _client_b(proxy, seaweedfs, s3_bucket, s3_store, name) as nfs_b:
        folder = tmp_path / "B"
        m = nfs_b.mount(folder, interval=1e6, settle=0.05)  # its loop asleep: we sync
        try:
            assert (folder / "p").read_bytes() == b"v0"
            (folder / "p").write_bytes(b"B's older edit")
            _lose_the_slot_then_fail(proxy, lambda: nfs_a.write_file("q", io.BytesIO(b"q")))
            with pytest.raises(StoreError) as failed:
                m.sync()
            proxy.clear()
            assert "could not be withdrawn" in " ".join(getattr(failed.value, "__notes__", []))
            assert _read(nfs_a, "p") == b"v0"  # B's push did not land
            nfs_a.write_file("p", io.BytesIO(b"A's newer version"))
            # another client (a process of its own) writes another file
            nfs_c = NetworkFileSystem.from_name(name, store=StoreAs(s3_store, "c"))
            nfs_c.write_file("r", io.BytesIO(b"r"))
            assert _read(nfs_a, "p") == b"A's newer version"
        finally:
            proxy.clear()
            m._detach()


def test_an_api_remove_given_up_on_does_not_delete_a_newer_version_later(
    proxy: FaultProxy, seaweedfs: Any, s3_bucket: str, s3_store: Any
) -> None:
    """The same through the API: B's ``remove_file("p")`` loses the log slot to A's
    commit, waits in the line of commits, then gives up (StoreError, its intent left on
    the store). A writes ``p`` again afterwards. C's later write of another file carries
    B's waiting removal, and A's newer ``p`` is deleted: a file written after a removal
    failed disappears."""
    name = f"found-{uuid.uuid4().hex[:8]}"
    nfs_a = NetworkFileSystem.from_name(name, create_if_missing=True, store=s3_store)
    nfs_a.write_file("p", io.BytesIO(b"v0"))
    with _client_b(proxy, seaweedfs, s3_bucket, s3_store, name) as nfs_b:
        _lose_the_slot_then_fail(proxy, lambda: nfs_a.write_file("q", io.BytesIO(b"q")))
        with pytest.raises(StoreError) as failed:
            nfs_b.remove_file("p")
        proxy.clear()
        assert "could not be withdrawn" in " ".join(getattr(failed.value, "__notes__", []))
        assert _read(nfs_a, "p") == b"v0"  # the removal did not land
        nfs_a.write_file("p", io.BytesIO(b"A's newer version"))
        nfs_c = NetworkFileSystem.from_name(name, store=StoreAs(s3_store, "c"))
        nfs_c.write_file("r", io.BytesIO(b"r"))
        assert {e.path for e in nfs_a.listdir("/")} == {"p", "q", "r"}
        assert _read(nfs_a, "p") == b"A's newer version"


def test_a_folder_deletion_after_two_failed_pushes_is_pushed(
    proxy: FaultProxy, seaweedfs: Any, s3_bucket: str, s3_store: Any, tmp_path: Path
) -> None:
    """B's live folder writes a new file ``p``; its push lands, but every answer to the
    commit record's PUT is lost, so ``sync()`` raises and the folder never records ``p``.
    B then edits ``p``; that push fails outright (the record's PUT answers 500 three
    times: nothing lands). B deletes ``p`` and syncs with no fault: the deletion must be
    pushed (the newest act on ``p``), and ``p`` must stay deleted in B's folder. It is
    not pushed: the second failed push's id replaced the first's in the folder's "may
    have landed" mark (mount.py, ``_adopt_pushed``: ``"ours": mark["txns"]`` drops the
    ids already settled), so the commit that did land is no longer looked at, a file it
    wrote and the folder never recorded is not missed when deleted, ``p`` stays on the
    store, and the pull brings the deleted file back into B's folder."""
    with _live_b(proxy, seaweedfs, s3_bucket, s3_store, tmp_path) as (nfs_a, folder, m):
        (folder / "p").write_bytes(b"1")
        proxy.force("lost_response", method="PUT", path_contains="/log/", n=3)
        with pytest.raises(StoreError):
            m.sync()
        proxy.clear()
        assert _read(nfs_a, "p") == b"1"  # it landed, unheard
        (folder / "p").write_bytes(b"22")
        proxy.force("error500", method="PUT", path_contains="/log/", n=3)
        with pytest.raises(StoreError):
            m.sync()
        proxy.clear()
        assert _read(nfs_a, "p") == b"1"  # nothing of it landed
        (folder / "p").unlink()  # the user's deletion
        m.sync()
        assert [e.path for e in nfs_a.listdir("/")] == []
        assert not (folder / "p").exists()


def test_a_temporary_file_after_a_push_landed_unheard_does_not_delete_anothers_file(
    proxy: FaultProxy, seaweedfs: Any, s3_bucket: str, s3_store: Any, tmp_path: Path
) -> None:
    """A writes ``p``; B's live folder has not pulled it yet. B's folder pushes a new file
    ``q``: the commit lands (its tree holds A's ``p`` too, as every commit holds the
    whole head), but every answer to its record's PUT is lost, so ``sync()`` raises. A
    program then makes a temporary file ``p`` in B's folder and deletes it again. B's
    next sync must leave A's ``p`` alone (with no fault the same steps change nothing
    of ``p``: B's folder never had it), and pull it. Instead it deletes A's file:
    mount.py, ``_deleted_since_landed`` takes every path the scan looked at that is
    missing here, has no row and exists in the landed commit's tree for a file "our
    landed commit wrote", though that commit never wrote ``p`` (it only kept A's)."""
    with _live_b(proxy, seaweedfs, s3_bucket, s3_store, tmp_path) as (nfs_a, folder, m):
        nfs_a.write_file("p", io.BytesIO(b"A's file"))
        (folder / "q").write_bytes(b"q")
        proxy.force("lost_response", method="PUT", path_contains="/log/", n=3)
        with pytest.raises(StoreError):
            m.sync()
        proxy.clear()
        assert {e.path for e in nfs_a.listdir("/")} == {"p", "q"}  # landed, unheard
        (folder / "p").write_bytes(b"scratch")  # a program's temporary file...
        (folder / "p").unlink()  # ...gone again
        m.sync()
        assert {e.path for e in nfs_a.listdir("/")} == {"p", "q"}
        assert (folder / "p").read_bytes() == b"A's file"
