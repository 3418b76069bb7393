"""Small files take a short path through the writer, with the same result.

A file under the chunker's minimum size is always one chunk: the writer hashes it
directly instead of setting up a chunker. The chunks must be exactly those the
chunker yields, at every size around the limits.
"""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3

from jupyter_volume.repository import Repository
from jupyter_volume.repository.codec import CHUNK_MIN, INLINE_MAX, cut_chunks
from jupyter_volume.store import Store


def test_small_file_chunks_match_the_chunker(local_store: Store, tmp_path: Path) -> None:
    vol_id = uuid.uuid4().hex
    Repository.create(local_store, vol_id)
    repo = Repository(local_store, vol_id, cache_dir=tmp_path / "objects")
    w = repo.writer()
    sizes = [INLINE_MAX + 1, 4096, CHUNK_MIN - 1, CHUNK_MIN, CHUNK_MIN + 1, 300_000, 2_000_000]
    changes = {}
    for size in sizes:
        data = blake3(b"small-%d" % size).digest(length=size)
        inline, chunks, n = w.write_stream(io.BytesIO(data))
        assert inline is None and n == size
        expected = [(h, len(mv)) for mv, h in cut_chunks(io.BytesIO(data))]
        assert chunks == expected, size
        changes[f"f{size}"] = w.bytes_entry(data)
    repo.commit(changes, writer=w)
    fresh = Repository(local_store, vol_id, cache_dir=tmp_path / "fresh")
    for size in sizes:
        e = fresh.lookup(f"f{size}")
        assert e is not None
        got = b"".join(fresh.read_entry(e))
        assert got == blake3(b"small-%d" % size).digest(length=size)
    assert fresh.verify().ok


class _RecordingBar:
    """Stands in for the progress bar a commit draws: what it was told."""

    def __init__(self, total_bytes: int, total_files: int) -> None:
        self.total, self.files, self.done = total_bytes, total_files, 0

    def update(self, n: int = 1) -> None:
        self.done += n

    def close(self) -> None:
        pass

    def __enter__(self) -> _RecordingBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def test_a_commits_progress_counts_every_byte_it_reads(
    local_store: Store, tmp_path: Path, monkeypatch
) -> None:
    """A commit's scan does not stat a new file (the quiet gate's look gives its size):
    the bar's total and what it counts must still be the bytes of the files taken, on
    both commit paths (thousands of new files stream; a few, or edits, do not)."""
    import os
    import random

    from jupyter_volume import Volume, progress

    bars: list[_RecordingBar] = []

    def recording(desc: str, *, total_bytes: int, total_files: int = 0, **_kw) -> _RecordingBar:
        bar = _RecordingBar(total_bytes, total_files)
        if desc.endswith(": commit"):
            bars.append(bar)
        return bar

    monkeypatch.setattr(progress, "transfer_progress", recording)
    monkeypatch.setenv("JUPYTER_VOLUME_SETTLE_INTERVAL", "0")
    vol = Volume.lookup("bars", create_if_missing=True, store=local_store)
    mnt = tmp_path / "mnt"
    m = vol.mount(mnt, background=False)
    rnd = random.Random(7)
    sizes = {f"d{i % 30}/f{i}.bin": rnd.randrange(0, 40_000) for i in range(2_500)}
    for rel, size in sizes.items():
        (mnt / rel).parent.mkdir(exist_ok=True)
        (mnt / rel).write_bytes(os.urandom(size))
    os.symlink("d0/f0.bin", mnt / "link")  # a link's size is not read: not counted
    assert m.commit() is not None  # streamed: every path is new
    edits = {"d1/f1.bin": 123, "d2/f2.bin": 50_000, "new.txt": 7}
    for rel, size in edits.items():
        (mnt / rel).write_bytes(os.urandom(size))
    assert m.commit() is not None  # not streamed: two edits, one new file
    m.unmount()
    assert [(b.total, b.done, b.files) for b in bars] == [
        (sum(sizes.values()), sum(sizes.values()), len(sizes)),
        (sum(edits.values()), sum(edits.values()), len(edits)),
    ]


def test_a_mount_fetches_the_next_batch_of_small_files_while_it_writes_one(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small files come in batches of ``mount.BATCH_BYTES``; each batch after the first is
    asked for before the one before it is written (it used to be fetched only after all
    of it was). Structural, not timed: the fetch of the next batch is started
    (``mount.beside``) before any file of the current one is renamed into place. The
    files are at the top of the volume: a folder of them would land in one rename."""
    import os

    import jupyter_volume.mount as mount_mod
    from jupyter_volume import Volume

    monkeypatch.setattr(mount_mod, "BATCH_BYTES", 64 << 10)  # 16 files of 4 KiB a batch
    files = {f"f{i:03d}.bin": os.urandom(4096) for i in range(50)}
    vol = Volume.from_name(f"ov-{uuid.uuid4().hex[:8]}", store=store, create_if_missing=True)
    with vol.batch_upload() as b:
        for rel, data in files.items():
            b.put_file(io.BytesIO(data), rel)
    placed: list[str] = []
    asked_after: list[int] = []  # files placed when each next batch was asked for
    real_replace, real_beside = os.replace, mount_mod.beside

    def replace(src: Any, dst: Any) -> None:
        real_replace(src, dst)
        if os.fspath(dst).endswith(".bin"):  # the volume's files (not the mount's state)
            placed.append(os.fspath(dst))

    def beside(fn: Any, *args: Any) -> Any:
        asked_after.append(len(placed))
        return real_beside(fn, *args)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(mount_mod, "beside", beside)
    with vol.mount(tmp_path / "m", background=False):
        for rel, data in files.items():
            assert (tmp_path / "m" / rel).read_bytes() == data
    assert asked_after == [0, 16, 32], asked_after  # 4 batches: 16, 16, 16 and 2 files


def test_a_reload_whose_next_batch_cannot_be_fetched_keeps_what_landed_and_resumes(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch fetched ahead fails (its pack is gone) after the one before it was
    written: those files are recorded as synced, none of the failed batch is half-made,
    nothing is committed back, and the next reload brings the rest."""
    import os

    import jupyter_volume.mount as mount_mod
    from jupyter_volume import Volume

    monkeypatch.setattr(mount_mod, "BATCH_BYTES", 64 << 10)  # 16 files of 4 KiB a batch
    vol = Volume.from_name(f"ov-{uuid.uuid4().hex[:8]}", store=store, create_if_missing=True)
    with vol.batch_upload() as b:
        b.put_file(io.BytesIO(b"v1"), "keep.txt")
    m = vol.mount(tmp_path / "m", background=False)
    packs = lambda: {i.key for i in store.list("") if "/packs/" in i.key}  # noqa: E731
    first = {f"a/f{i:02d}.bin": os.urandom(4096) for i in range(16)}
    second = {f"b/f{i:02d}.bin": os.urandom(4096) for i in range(16)}
    for files in (first, second):  # one pack each: the second batch's is deleted below
        before = packs()
        with Volume.from_name(vol.name, store=store).batch_upload() as b:
            for rel, data in files.items():
                b.put_file(io.BytesIO(data), rel)
    saved = {k: store.get(k) for k in packs() - before}
    assert saved
    store.delete(list(saved))
    head = vol.history(limit=1)[0].seq
    with pytest.raises(Exception, match="missing|not found|NoSuchKey"):
        m.reload()
    for rel, data in first.items():
        assert (tmp_path / "m" / rel).read_bytes() == data
    left = [p.name for p in (tmp_path / "m").rglob("*")]  # files and staging folders
    assert not [n for n in left if n.startswith(mount_mod.TMP_PREFIX)], left
    assert not (tmp_path / "m" / "b").exists() or not any((tmp_path / "m" / "b").iterdir())
    assert m.commit() is None  # what landed is synced, not a local change
    for k, data in saved.items():
        store.put(k, data)
    m.reload()
    for rel, data in {**first, **second}.items():
        assert (tmp_path / "m" / rel).read_bytes() == data
    st = m.status()
    assert st.clean and st.behind == 0, st
    assert vol.history(limit=1)[0].seq == head
    m.unmount()
