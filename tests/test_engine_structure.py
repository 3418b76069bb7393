"""Structural bounds of the engine, counted at the store, and streaming memory.

The counting tests wrap the local store in a :class:`CountingStore`: the number of
objects a commit writes is a property of the repository layer, not of the backend, so
the local store is enough (and keeps the 50,000-file volume quick to build). Every
access to the volume under test goes through the wrapper, because the engine shares
one repository object per (store URL, volume) in a process.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import jupyter_volume.repository.repo as repo_mod
import jupyter_volume.repository.tree as tree_mod
import jupyter_volume.volume as volume_mod
from jupyter_volume import Volume
from jupyter_volume.repository.packs import decode_segment
from jupyter_volume.store.local import LocalStore
from jupyter_volume.testing.wrappers import CountingStore

KiB = 1024
MiB = 1024 * KiB
WRITES = ("put", "put_if_absent")


@pytest.fixture(autouse=True)
def _private_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTER_VOLUME_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("JUPYTER_VOLUME_STATE_DIR", str(tmp_path / "state"))


def _counted_volume(local_store: LocalStore) -> tuple[CountingStore, Volume, str]:
    cs = CountingStore(local_store)
    vol = Volume.from_name(f"v-{uuid.uuid4().hex[:10]}", create_if_missing=True, store=cs)
    return cs, vol, f"vols/{vol.info().id}/"


def _head_record(store: LocalStore, prefix: str) -> dict:
    """The newest commit record, read straight from the on-store format (docs/architecture.md)."""
    last = [o.key for o in store.list(prefix + "log/")][-1]
    return json.loads(store.get(last))


def test_one_file_commit_in_a_50000_file_volume_rewrites_only_its_path(
    local_store: LocalStore,
) -> None:
    cs, vol, prefix = _counted_volume(local_store)
    with vol.batch_upload() as batch:
        for i in range(30_000):  # one big folder: split into leaves
            batch.put_file(io.BytesIO(b"%d" % i), f"flat/f{i:05d}.txt")
        for i in range(20_000):  # and a two-level one
            batch.put_file(io.BytesIO(b"%d" % i), f"nested/d{i % 20:02d}/f{i:05d}.txt")
    assert vol.du("/").files == 50_000

    cases = [
        # (path, folders from the root down to the file, root included)
        ("flat/f12345.txt", 2),  # modify a file in the split folder
        ("flat/f30000-new.txt", 2),  # add one there
        ("nested/d07/new.bin", 3),  # add one two levels down
    ]
    for path, depth in cases:
        data = os.urandom(2 * KiB)  # above the inline limit: goes to a pack
        cs.reset()
        with vol.batch_upload(force=True) as batch:
            batch.put_file(io.BytesIO(data), path)
        trees = cs.matching(WRITES, prefix + "trees/")
        packs = cs.matching(WRITES, prefix + "packs/")
        assert 1 <= len(trees) <= depth + 2, (path, trees)
        assert len(packs) == 1, (path, packs)
        assert cs.count(WRITES, prefix + "index/") <= 1
        assert cs.count(WRITES, prefix + "log/") == 1
        # Each node written is small: a leaf of the split folder, never the whole folder.
        tree_bytes = sum(local_store.stat(op.key).size for op in trees)
        assert tree_bytes < 128 * KiB, (path, tree_bytes)
        # and nothing is read that is not on the path (no listing of 50,000 entries)
        assert cs.count(("get", "get_range"), prefix + "packs/") == 0
        assert b"".join(vol.read_file(path)) == data

    assert vol.du("flat").files == 30_001
    assert vol.du("nested").files == 20_001
    assert b"".join(vol.read_file("flat/f00007.txt")) == b"7"
    assert b"".join(vol.read_file("nested/d13/f00013.txt")) == b"13"


def test_10000_small_files_commit_in_a_few_pack_puts(local_store: LocalStore) -> None:
    cs, vol, prefix = _counted_volume(local_store)
    rng = random.Random(10_000)
    files = {
        f"small/{i // 1000}/f{i:05d}.bin": rng.randbytes(rng.randint(600, 3000))
        for i in range(10_000)
    }
    cs.reset()
    with vol.batch_upload() as batch:
        for path, data in files.items():
            batch.put_file(io.BytesIO(data), path)
    pack_puts = cs.count(WRITES, prefix + "packs/")
    assert 1 <= pack_puts <= 10, pack_puts
    assert cs.count(WRITES, prefix + "index/") == 1
    assert cs.count(WRITES, prefix + "log/") == 1
    stored = sum(o.size for o in local_store.list(prefix + "packs/"))
    assert stored >= sum(len(d) for d in files.values())  # really stored, not inlined
    for path in list(files)[::997]:
        assert b"".join(vol.read_file(path)) == files[path]
    assert vol.du("small").files == 10_000


def test_head_lists_at_most_50_index_objects_after_200_commits(
    local_store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    cs, vol, prefix = _counted_volume(local_store)
    written: dict[str, bytes] = {}
    most = 0
    for i, rec in enumerate(_one_chunk_commits(vol, local_store, 200, written, random.Random(200))):
        assert rec["seq"] == i + 1
        most = max(most, len(rec["index"]))
        assert len(rec["index"]) <= 50, (i, len(rec["index"]))
    assert most >= 2  # segments do accumulate between compactions

    # A reader starting from nothing needs only the head's index objects.
    fresh_cs = _reads_back(vol, local_store, written, monkeypatch)
    assert fresh_cs.count("get", prefix + "index/") <= 50


def _one_chunk_commits(
    vol: Volume, store: LocalStore, n: int, written: dict[str, bytes], rng: random.Random
) -> Iterator[dict]:
    """Make ``n`` commits of one new file each (a new chunk: a new index segment every
    time), noting them in ``written``; yield the head record (as stored) after each."""
    prefix = f"vols/{vol.info().id}/"
    for i in range(n):
        path = f"c/{i:03d}.bin"
        written[path] = data = rng.randbytes(700)
        with vol.batch_upload() as batch:
            batch.put_file(io.BytesIO(data), path)
        yield _head_record(store, prefix)


def _reads_back(
    vol: Volume, local_store: LocalStore, written: dict[str, bytes], mp: pytest.MonkeyPatch
) -> CountingStore:
    """Check that a reader starting from nothing (no repository in memory, an empty
    cache) reads every 7th of ``written`` back, and that verify passes; its store."""
    mp.setattr(volume_mod, "_repos", {})
    mp.setenv(
        "JUPYTER_VOLUME_CACHE_DIR", str(Path(os.environ["JUPYTER_VOLUME_CACHE_DIR"]) / "fresh")
    )
    fresh_cs = CountingStore(local_store)
    fresh = Volume.from_name(vol.name, store=fresh_cs)
    for path in list(written)[::-7]:
        assert b"".join(fresh.read_file(path)) == written[path]
    assert vol.verify().ok
    return fresh_cs


def test_compaction_leaves_a_big_index_object_alone(
    local_store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A big first commit writes one big index segment, each later commit a small one.
    # Compaction used to fold the whole list, the big segment too, whenever it passed
    # 32 objects: a big volume rewrote its whole index every 17 commits (16 shards), in
    # the commit that happened to cross the line, and every other process fetched it all
    # again. Now only the newest objects of about one size are folded.
    cs, vol, prefix = _counted_volume(local_store)
    rng = random.Random(32)
    written: dict[str, bytes] = {}
    with vol.batch_upload() as batch:
        for i in range(3000):
            written[f"base/{i:04d}.bin"] = data = rng.randbytes(600)
            batch.put_file(io.BytesIO(data), f"base/{i:04d}.bin")
    [big] = _head_record(local_store, prefix)["index"]
    cs.reset()
    for i, rec in enumerate(_one_chunk_commits(vol, local_store, 100, written, rng)):
        index = rec["index"]
        assert index[0] == big and len(index) <= 32, (i, len(index))
    put = {o.key for o in cs.matching(WRITES, prefix + "index/")}
    entries = sum(sum(1 for _ in decode_segment(local_store.get(k), k)) for k in put)
    # each commit's own segment (100 entries), and folds of those: a small multiple of
    # 100, where folding the big segment in once would be over 3,000
    assert 100 < entries < 500, entries
    _reads_back(vol, local_store, written, monkeypatch)


# Run in a child so that ru_maxrss measures this work alone. The data is generated as a
# stream (blake3 in XOF mode: incompressible, reproducible, never held whole) and its
# hash is compared with the hash of what is read back.
STREAM_CHILD = textwrap.dedent(
    """
    import io, json, resource, sys
    from blake3 import blake3
    from jupyter_volume import Volume
    from jupyter_volume.store import open_store

    url, size = sys.argv[1], int(sys.argv[2])
    BLOCK = 1 << 20

    class Generated(io.RawIOBase):
        def __init__(self, size):
            self.left, self.pos = size, 0
            self.xof, self.digest = blake3(b"jv-streaming-test"), blake3()
        def readable(self):
            return True
        def readinto(self, b):
            n = min(len(b), self.left, BLOCK)
            if n <= 0:
                return 0
            data = self.xof.digest(length=n, seek=self.pos)
            b[:n] = data
            self.digest.update(data)
            self.pos += n
            self.left -= n
            return n

    vol = Volume.from_name("big", create_if_missing=True, store=open_store(url))
    gen = Generated(size)
    with vol.batch_upload() as batch:
        batch.put_file(io.BufferedReader(gen, buffer_size=BLOCK), "big.bin")
    rss_after_write = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    got, n = blake3(), 0
    for piece in vol.read_file("big.bin"):
        got.update(piece)
        n += len(piece)
    with open("/proc/self/status") as f:
        hwm = [int(line.split()[1]) for line in f if line.startswith("VmHWM:")][0]
    print(json.dumps({
        "written": gen.digest.hexdigest(), "read": got.hexdigest(), "n": n,
        "listed": vol.listdir("big.bin")[0].size,
        "rss_after_write_kib": rss_after_write,
        "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "vmhwm_kib": hwm,
    }))
    """
)


# Linux carries ru_maxrss across exec: a child started straight from this (large)
# pytest process would report pytest's own peak. A tiny launcher in between gives the
# child a fresh count (the child also reports VmHWM, the peak of its own address space).
LAUNCHER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


def test_2gib_file_streams_in_bounded_memory(tmp_path: Path) -> None:
    # Local store only: what is measured is the client's buffering (chunker, pack
    # writer, read-ahead), which is the same code for every backend; on SeaweedFS the
    # same run would add 2 GiB of server-side disk and minutes, and prove nothing more.
    size = 2 * 1024 * MiB
    env = {**os.environ, "JUPYTER_VOLUME_CACHE_DIR": str(tmp_path / "child-cache")}
    url = (tmp_path / "big-store").as_uri()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", LAUNCHER, sys.executable, "-c", STREAM_CHILD, url, str(size)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        stored = sum(
            o.size for o in LocalStore(tmp_path / "big-store").list("vols/") if "/packs/" in o.key
        )
    finally:
        shutil.rmtree(tmp_path / "big-store", ignore_errors=True)  # 2 GiB: do not keep it
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["n"] == size and out["listed"] == size
    assert out["read"] == out["written"]
    assert stored >= size  # really written (incompressible data), not held
    assert out["rss_after_write_kib"] * 1024 < 500 * 1000 * 1000, out
    assert out["maxrss_kib"] * 1024 < 500 * 1000 * 1000, out
    assert out["vmhwm_kib"] * 1024 < 500 * 1000 * 1000, out


def test_a_repository_keeps_a_bounded_number_of_commit_records(
    local_store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every record read or written stayed in memory: a kernel committing in the
    # background for days, or the Jupyter server showing long histories, grew by about
    # 4 KB a commit for good. The latest used are kept; the others are read again.
    monkeypatch.setattr(repo_mod, "RECORDS_KEPT", 8, raising=False)
    cs, vol, prefix = _counted_volume(local_store)
    for i in range(30):
        with vol.batch_upload() as batch:
            batch.put_file(io.BytesIO(b"%d" % i), f"f{i:02d}.txt")
    repo = vol._repo
    assert len(repo._records) == 8
    cs.reset()
    assert [h.seq for h in vol.history()] == list(range(30, -1, -1))
    assert cs.count("get", prefix + "log/") >= 30 - 8  # the ones that left, read again
    assert len(repo._records) == 8
    assert sorted(e.path for e in vol.listdir("/", at=3)) == ["f00.txt", "f01.txt", "f02.txt"]


def test_the_nodes_known_to_be_on_the_store_stay_bounded(
    local_store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each commit adds the hashes of the tree nodes it wrote to the set that spares
    # their upload next time; in a process committing for days that set only grew.
    monkeypatch.setattr(tree_mod, "ON_STORE_KEPT", 16, raising=False)
    _cs, vol, _prefix = _counted_volume(local_store)
    written: dict[str, bytes] = {}
    for i in range(30):
        path = f"runs/{i % 3}/step{i:02d}/metrics.txt"  # three new or changed nodes each
        written[path] = b"%d" % i
        with vol.batch_upload() as batch:
            batch.put_file(io.BytesIO(written[path]), path)
    assert len(vol._repo.trees.on_store) <= 16 + 4
    _reads_back(vol, local_store, written, monkeypatch)  # nothing a commit needed is missing


def test_the_local_object_cache_stays_within_its_bound(
    local_store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tree nodes and index segments fetched from the store are kept on disk. A reader of
    # a volume whose big folder changes often fetched a new node of that folder at each
    # reload (about 96 KB a commit for 2,000 files) and kept every one of them.
    monkeypatch.setattr(repo_mod, "OBJECT_CACHE_BYTES", 400_000, raising=False)
    _cs, vol, _prefix = _counted_volume(local_store)
    rng = random.Random(96)
    with vol.batch_upload() as batch:
        for i in range(2000):
            batch.put_file(io.BytesIO(rng.randbytes(600)), f"runs/m{i:04d}.txt")
    objects = Path(os.environ["JUPYTER_VOLUME_CACHE_DIR"]) / "objects"
    for k in range(20):
        last = rng.randbytes(600)
        with vol.batch_upload(force=True) as batch:
            batch.put_file(io.BytesIO(last), f"runs/m{k:04d}.txt")
        monkeypatch.setattr(volume_mod, "_repos", {})  # another process reads the new head
        reader = Volume.from_name(vol.name, store=local_store)
        assert len(reader.listdir("runs")) == 2000
        assert b"".join(reader.read_file(f"runs/m{k:04d}.txt")) == last
    cached = sum(p.stat().st_size for p in objects.rglob("*") if p.is_file())
    assert 0 < cached <= 400_000, cached
