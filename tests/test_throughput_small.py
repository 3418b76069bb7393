"""Small files take a short path through the writer, with the same result.

A file under the chunker's minimum size is always one chunk: the writer hashes it
directly instead of setting up a chunker. The chunks must be exactly those the
chunker yields, at every size around the limits.
"""

from __future__ import annotations

import io
import uuid
from pathlib import Path

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
