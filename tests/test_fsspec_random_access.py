"""Random access through ``volume://`` fetches only what it needs, counted at the store.

A 1 GiB file of pseudo-random bytes (incompressible and free of repeats, so the chunker
cuts about 8,000 distinct chunks) is committed once for the module. A fresh process
with empty caches then opens it through fsspec, reads its last 1 KiB, and counts every
byte the store handed over: the volume's name record, the commit log listing and record,
tree nodes, index objects and the chunk itself. The bound: under 4 MiB.

The store is the local folder store: the bytes a reader asks for do not depend on the
store kind, and uploading 1 GiB to SeaweedFS would cost CI a minute for nothing more.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jupyter_volume import Volume

try:
    from .children import run_python_json
except ImportError:  # tests/ is not a package
    from children import run_python_json  # type: ignore[no-redef]

GiB = 1 << 30
MiB = 1 << 20
BLOCK = MiB
SEED = 20261201


def block(k: int) -> bytes:
    """Block ``k`` of the big file: 1 MiB from a PRNG seeded by (SEED, k)."""
    return np.random.default_rng([SEED, k]).bytes(BLOCK)


class RandomStream(io.RawIOBase):
    """``size`` pseudo-random bytes, generated as they are read (no 1 GiB in memory or
    on disk). Repeating one ``os.urandom`` block would not do: the chunker would find
    the repeats and store one copy."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pos = 0
        self.buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        n = 0
        while n < len(view) and self.pos < self.size:
            if not self.buf:
                self.buf = block(self.pos // BLOCK)[self.pos % BLOCK :]
            take = min(len(view) - n, len(self.buf), self.size - self.pos)
            view[n : n + take] = self.buf[:take]
            self.buf = self.buf[take:]
            n += take
            self.pos += take
        return n


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """``(store_url, volume)`` of a volume holding ``data.bin``, 1 GiB (made once)."""
    root = tmp_path_factory.mktemp("big")
    with pytest.MonkeyPatch.context() as mp:
        # module scope runs before the per-test private folders exist: use our own
        mp.setenv("JUPYTER_VOLUME_CACHE_DIR", str(root / "writer-cache"))
        mp.setenv("JUPYTER_VOLUME_STATE_DIR", str(root / "writer-state"))
        url = (root / "store").as_uri()
        vol = Volume.from_name("big", store=url, create_if_missing=True)
        with vol.batch_upload() as batch:
            batch.put_file(RandomStream(GiB), "data.bin")
        assert vol.stat("data.bin").size == GiB
    return url, "big"


# Runs in a fresh process so that no cache of this one (trees, index, chunks, the
# repository object) helps. Listing is counted at a generous 512 bytes per request
# plus 300 per key (about what an S3 ListObjectsV2 answer costs).
CHILD = r"""
import json, sys
from jupyter_volume.fsspec import VolumeFileSystem
from jupyter_volume.store import open_store
from jupyter_volume.testing.wrappers import CountingStore

class ByteCountingStore(CountingStore):
    def __init__(self, inner):
        super().__init__(inner)
        self.bytes = {}
    def _add(self, key, n):
        kind = key.split("/")[2] if key.startswith("vols/") and key.count("/") >= 2 else key.split("/")[0]
        with self._lock:
            self.bytes[kind] = self.bytes.get(kind, 0) + n
    def get(self, key):
        data = super().get(key)
        self._add(key, len(data))
        return data
    def get_range(self, key, start, length):
        data = super().get_range(key, start, length)
        self._add(key, len(data))
        return data
    def list(self, prefix="", start_after=None):
        items = list(super().list(prefix, start_after))
        self._add(prefix or "list", 512 + 300 * len(items))
        return iter(items)
    def stat(self, key):
        info = super().stat(key)
        self._add(key, 512)
        return info

url, name, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = ByteCountingStore(open_store(url))
fs = VolumeFileSystem(store=store, skip_instance_cache=True)
with fs.open(f"volume://{name}/data.bin", "rb") as f:
    f.seek(-size, 2)
    tail = f.read()
print(json.dumps({
    "tail": tail.hex(),
    "bytes": store.bytes,
    "ops": dict(store.by_kind()),
    "range_gets": [o.key for o in store.matching("get_range")],
}))
"""


def read_tail_in_fresh_process(url: str, name: str, size: int, tmp_path: Path) -> dict:
    env = dict(os.environ)
    env["JUPYTER_VOLUME_CACHE_DIR"] = str(tmp_path / "reader-cache")  # cold: empty
    env["JUPYTER_VOLUME_STATE_DIR"] = str(tmp_path / "reader-state")
    return run_python_json(["-c", CHILD, url, name, str(size)], env)


def test_last_kib_of_a_1_gib_file_fetches_under_4_mib(
    big_file: tuple[str, str], tmp_path: Path
) -> None:
    url, name = big_file
    got = read_tail_in_fresh_process(url, name, 1024, tmp_path)
    assert bytes.fromhex(got["tail"]) == block(GiB // BLOCK - 1)[-1024:]
    total = sum(got["bytes"].values())
    print("bytes fetched by kind:", got["bytes"], "total:", total, "ops:", got["ops"])
    assert total < 4 * MiB, got["bytes"]
    # the data itself: one ranged GET into one pack (the chunk holding the tail)
    assert len(got["range_gets"]) == 1 and "/packs/" in got["range_gets"][0]
    # and metadata was really counted: the index of ~8,000 chunks is most of it
    assert got["bytes"].get("index", 0) > 100_000


def test_ranged_reads_across_the_big_file_are_exact(big_file: tuple[str, str]) -> None:
    url, name = big_file
    vol = Volume.from_name(name, store=url)
    with vol.open("data.bin") as f:
        for k in (0, 1, 511, 1023):
            f.seek(k * BLOCK + 12345)
            assert (
                f.read(100_000)
                == (block(k) + block(k + 1) if k < 1023 else block(k))[12345 : 12345 + 100_000]
            )
