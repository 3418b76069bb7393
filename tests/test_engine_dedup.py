"""Deduplication: identical and shifted data is stored once (both stores).

The data is random (incompressible), so every byte saved is a byte deduplicated, not
compressed away. Stored sizes are read from the store listing (the sum of pack
objects) and from each commit's ``bytes_new``.
"""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path

import pytest
from blake3 import blake3

from jupyter_volume import Volume
from jupyter_volume.store import Store

KiB = 1024
MiB = 1024 * KiB
SIZE = 100 * MiB


@pytest.fixture(autouse=True)
def _private_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTER_VOLUME_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("JUPYTER_VOLUME_STATE_DIR", str(tmp_path / "state"))


@pytest.fixture(scope="module")
def data() -> bytes:
    return os.urandom(SIZE)


def _volume(store: Store) -> Volume:
    return Volume.from_name(f"d-{uuid.uuid4().hex[:10]}", create_if_missing=True, store=store)


def _put(vol: Volume, files: dict[str, bytes], force: bool = False) -> None:
    with vol.batch_upload(force=force) as batch:
        for path, content in files.items():
            batch.put_file(io.BytesIO(content), path)


def _pack_bytes(vol: Volume) -> int:
    return sum(o.size for o in vol.store.list(f"vols/{vol.info().id}/packs/"))


def _digest_of(vol: Volume, path: str) -> str:
    h = blake3()
    for piece in vol.read_file(path):
        h.update(piece)
    return h.hexdigest()


def test_same_100mib_at_two_paths_is_stored_once(store: Store, data: bytes) -> None:
    vol = _volume(store)
    _put(vol, {"a/one.bin": data, "a/one-again.bin": data})  # twice in one batch
    _put(vol, {"b/two.bin": data})  # and again in a later commit
    assert SIZE <= _pack_bytes(vol) < SIZE + 1 * MiB
    [second, first] = vol.history(2)
    assert first.bytes_new >= SIZE
    assert second.bytes_new < 1 * MiB
    want = blake3(data).hexdigest()
    assert _digest_of(vol, "b/two.bin") == want
    assert _digest_of(vol, "a/one-again.bin") == want
    assert vol.du("/").bytes == 3 * SIZE  # logical size counts every copy


def test_appending_1mib_to_100mib_stores_little(store: Store, data: bytes) -> None:
    vol = _volume(store)
    _put(vol, {"f.bin": data})
    tail = os.urandom(1 * MiB)
    _put(vol, {"f.bin": data + tail}, force=True)
    latest = vol.history(1)[0]
    assert latest.modified == 1
    assert 1 * MiB <= latest.bytes_new < 3 * MiB, latest.bytes_new
    assert _digest_of(vol, "f.bin") == blake3(data + tail).hexdigest()
    assert _digest_of(vol, "f.bin") != _digest_of_at(vol, "f.bin", latest.seq - 1)


def _digest_of_at(vol: Volume, path: str, seq: int) -> str:
    h = blake3()
    for piece in vol.read_file(path, at=seq):
        h.update(piece)
    return h.hexdigest()


def test_inserting_4kib_at_the_start_of_100mib_stores_little(store: Store, data: bytes) -> None:
    vol = _volume(store)
    _put(vol, {"f.bin": data})
    head = os.urandom(4 * KiB)
    _put(vol, {"f.bin": head + data}, force=True)
    latest = vol.history(1)[0]
    assert 4 * KiB <= latest.bytes_new < 1 * MiB, latest.bytes_new
    assert _digest_of(vol, "f.bin") == blake3(head + data).hexdigest()
    assert _digest_of_at(vol, "f.bin", latest.seq - 1) == blake3(data).hexdigest()
    assert _pack_bytes(vol) < SIZE + 1 * MiB
