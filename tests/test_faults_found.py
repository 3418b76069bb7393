"""What the fault model (test_model_faults.py) found, reduced to one plain case each, with
the real fault proxy in front of SeaweedFS."""

from __future__ import annotations

import contextlib
import io
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faultproxy import FaultProxy, store_through

from jupyter_volume import Volume
from jupyter_volume.errors import StoreError

pytestmark = pytest.mark.s3


@pytest.fixture
def proxy(seaweedfs: Any) -> Iterator[FaultProxy]:
    with FaultProxy(seaweedfs.endpoint, seed=5) as p:
        yield p


def _put(vol: Volume, path: str, data: bytes) -> None:
    with vol.batch_upload(force=True) as batch:
        batch.put_file(io.BytesIO(data), path)


def _fail_pack_reads(proxy: FaultProxy, n: int = 12) -> None:
    proxy.force("error500", method="GET", path_contains="/packs/", n=n)


@contextlib.contextmanager
def _mount_b(
    proxy: FaultProxy, seaweedfs: Any, s3_bucket: str, s3_store: Any, name: str, folder: Path
) -> Iterator[Any]:
    """Client B's mount of volume ``name`` at ``folder``, through ``proxy`` (3 attempts a
    request); its faults cleared, the mount and B's store closed at the end."""
    store_b = store_through(proxy, seaweedfs, s3_bucket, s3_store.prefix, read_timeout=5)
    store_b.max_attempts = 3
    mount = Volume.from_name(name, store=store_b).mount(folder, background=False)
    try:
        yield mount
    finally:
        proxy.clear()
        mount.unmount()
        store_b.close()


def test_a_deletion_after_two_failed_reloads_is_committed(
    proxy: FaultProxy, seaweedfs: Any, s3_bucket: str, s3_store: Any, tmp_path: Path
) -> None:
    """B's reload fails twice on a download (the store answers 500): the first time
    before ``sub/c`` existed, the second time after writing ``sub/c`` into B's folder
    (recorded as synced). The user then deletes ``sub/c`` and commits: the deletion
    must be published. It is not: the commit finds nothing to commit (the first failed
    reload's target lacks ``sub/c``, so the deletion is taken for that reload's own),
    the head keeps ``sub/c``, and the next reload brings the deleted file back."""
    name = f"found-{uuid.uuid4().hex[:8]}"
    vol_a = Volume.from_name(name, create_if_missing=True, store=s3_store)
    vol_a.history(limit=1)
    with _mount_b(proxy, seaweedfs, s3_bucket, s3_store, name, tmp_path / "B") as mount:
        big = random.Random(1).randbytes(5 << 20)  # > 4 MiB: downloaded after small files
        _put(vol_a, "big.bin", big)
        _fail_pack_reads(proxy)
        with pytest.raises(StoreError):
            mount.reload()  # target: big.bin only
        proxy.clear()
        _put(vol_a, "sub/c", b"small")  # inline in its tree node: no download
        _fail_pack_reads(proxy)
        with pytest.raises(StoreError):
            mount.reload()  # writes sub/c, then fails on big.bin
        proxy.clear()
        assert (tmp_path / "B/sub/c").read_bytes() == b"small"
        (tmp_path / "B/sub/c").unlink()  # the user's deletion
        mount.commit()
        assert "sub/c" not in {e.path for e in vol_a.listdir("/", recursive=True)}
        mount.reload()
        assert not (tmp_path / "B/sub/c").exists()
        assert (tmp_path / "B/big.bin").read_bytes() == big


def test_a_deletion_after_a_failed_commit_is_not_taken_for_another_writers(
    proxy: FaultProxy, seaweedfs: Any, s3_bucket: str, s3_store: Any, tmp_path: Path
) -> None:
    """B's commit of ``q`` fails (its commit record's create-only PUT answers 500 three
    times: nothing landed). A then removes ``p`` and writes it again (``y``). B, which
    still shows ``p`` as ``x``, deletes it and commits: B's later deletion must win
    (a path this writer changed takes its version). Instead the commit takes the
    deletion for one that already landed (A's removal, a commit after B's failed one,
    lacks ``p``), publishes only ``q``, and ``p`` = ``y`` survives; the next reload
    brings the file B deleted back."""
    name = f"found-{uuid.uuid4().hex[:8]}"
    vol_a = Volume.from_name(name, create_if_missing=True, store=s3_store)
    _put(vol_a, "p", b"x")
    with _mount_b(proxy, seaweedfs, s3_bucket, s3_store, name, tmp_path / "B") as mount:
        assert (tmp_path / "B/p").read_bytes() == b"x"
        (tmp_path / "B/q").write_bytes(b"q")
        proxy.force("error500", method="PUT", path_contains="/log/", n=3)
        with pytest.raises(StoreError):
            mount.commit()
        proxy.clear()
        assert {e.path for e in vol_a.listdir("/")} == {"p"}  # nothing of B's landed
        vol_a.remove_file("p")
        _put(vol_a, "p", b"y")
        (tmp_path / "B/p").unlink()  # B's deletion, after A's writes
        mount.commit()
        assert {e.path for e in vol_a.listdir("/")} == {"q"}
        mount.reload()
        assert not (tmp_path / "B/p").exists()


def test_a_file_deleted_after_its_commit_landed_unheard_is_deleted(
    proxy: FaultProxy, seaweedfs: Any, s3_bucket: str, s3_store: Any, tmp_path: Path
) -> None:
    """B's commit of a new file ``q`` lands, but every answer to its record's PUT is lost,
    so ``commit()`` raises and the mount never records ``q`` as committed. The user then
    deletes ``q`` and commits: the deletion must be published. The mount had no row for
    ``q`` (a file it never recorded), so a missing ``q`` was no change at all, and the
    file B deleted stayed in the volume and came back with the next reload."""
    name = f"found-{uuid.uuid4().hex[:8]}"
    vol_a = Volume.from_name(name, create_if_missing=True, store=s3_store)
    _put(vol_a, "p", b"x")
    with _mount_b(proxy, seaweedfs, s3_bucket, s3_store, name, tmp_path / "B") as mount:
        (tmp_path / "B/q").write_bytes(b"q")
        proxy.force("lost_response", method="PUT", path_contains="/log/", n=3)
        with pytest.raises(StoreError):
            mount.commit()
        proxy.clear()
        assert {e.path for e in vol_a.listdir("/")} == {"p", "q"}  # it landed, unheard
        (tmp_path / "B/q").unlink()  # the user's deletion
        mount.commit()
        assert {e.path for e in vol_a.listdir("/")} == {"p"}
        mount.reload()
        assert not (tmp_path / "B/q").exists()
