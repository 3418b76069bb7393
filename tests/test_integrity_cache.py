"""Local caches hold only verified objects: a flipped bit never poisons later processes.

Tree nodes and index objects go to the object cache, and chunks to the chunk cache,
only after their hash is checked; a cached entry that fails its check is dropped and
fetched again; bytes that fail their check when fetched are fetched again a couple of
times before CorruptionError is reported (they may have been damaged on the way).

The damage is real: tests/faultproxy.py sits between the S3 client and SeaweedFS and
flips one bit in chosen response bodies. After each faulty run, a fresh process that
shares the cache folder and talks to SeaweedFS directly must read the whole volume
byte-exact, and must get the tree nodes and index objects from the cache (so the
cache was used, not bypassed).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import jupyter_volume.repository.repo as repo_mod
import jupyter_volume.volume as volume_mod
from jupyter_volume import Volume
from jupyter_volume.errors import CorruptionError
from jupyter_volume.repository.chunkcache import ChunkCache
from jupyter_volume.repository.codec import hash_bytes
from jupyter_volume.repository.repo import HEAD_HINT_EVERY, READ_ATTEMPTS
from jupyter_volume.store.local import LocalStore
from jupyter_volume.store.s3 import S3Store, make_client
from jupyter_volume.testing.seaweedfs import SeaweedFS

try:
    from .faultproxy import BITFLIP, FaultProxy
except ImportError:  # tests/ is not a package
    from faultproxy import BITFLIP, FaultProxy  # type: ignore[no-redef]

BIG = "models/weights.bin"


def _write_volume(store, name: str) -> dict[str, bytes]:
    """Three commits: 8 folders of small packed files, inline files, one 1.5 MB file."""
    rng = random.Random(name)
    files: dict[str, bytes] = {}
    vol = Volume.from_name(name, create_if_missing=True, store=store)
    for part in range(3):
        with vol.batch_upload(force=True) as b:
            for d in range(part, 8, 3):
                for i in range(4):
                    path = f"d{d}/sub{i % 2}/f{i}.bin"
                    files[path] = rng.randbytes(rng.randint(600, 3000))
                    b.put_file(io.BytesIO(files[path]), path)
            files[f"notes{part}.txt"] = b"inline %d" % part
            b.put_file(io.BytesIO(files[f"notes{part}.txt"]), f"notes{part}.txt")
            if part == 1:
                files[BIG] = rng.randbytes(1_500_000)
                b.put_file(io.BytesIO(files[BIG]), BIG)
    return files


@pytest.fixture
def fresh_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget the process's shared repository objects (so nothing is read from memory)."""
    monkeypatch.setattr(volume_mod, "_repos", {})


@pytest.fixture
def s3_volume(
    seaweedfs: SeaweedFS,
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fresh_engine: None,
) -> Iterator[tuple[str, str, dict[str, bytes]]]:
    """``(url, name, files)``: a volume on SeaweedFS written with a cache of its own, so
    the cache folder the test then uses starts empty."""
    prefix = f"t/integrity-{uuid.uuid4().hex[:10]}"
    writer_cache = tmp_path / "writer-cache"
    monkeypatch.setenv("JUPYTER_VOLUME_CACHE_DIR", str(writer_cache))
    direct = S3Store(s3_bucket, prefix, endpoint_url=seaweedfs.endpoint, client=_client(seaweedfs))
    url = direct.url
    name = "flipped"
    files = _write_volume(direct, name)
    direct.close()
    monkeypatch.setattr(volume_mod, "_repos", {})
    monkeypatch.setenv("JUPYTER_VOLUME_CACHE_DIR", str(tmp_path / "shared-cache"))
    yield url, name, files


def _client(seaweedfs: SeaweedFS, endpoint: str | None = None):  # type: ignore[no-untyped-def]
    return make_client(
        endpoint_url=endpoint or seaweedfs.endpoint,
        region=seaweedfs.region,
        aws_access_key_id=seaweedfs.access_key,
        aws_secret_access_key=seaweedfs.secret_key,
        read_timeout=30,
    )


@pytest.fixture
def proxy(seaweedfs: SeaweedFS) -> Iterator[FaultProxy]:
    """A fault proxy in front of the session's SeaweedFS (no faults until asked)."""
    with FaultProxy(seaweedfs.endpoint, seed=1337) as p:
        yield p


def _through(proxy: FaultProxy, seaweedfs: SeaweedFS, url: str) -> S3Store:
    """The store at ``url``, reached through ``proxy``. Its URL is the direct one, so it
    shares the cache folder of every process that opens ``url`` directly."""
    bucket, rest = url[len("s3://") :].split("/", 1)
    store = S3Store(
        bucket,
        rest.split("?", 1)[0],
        endpoint_url=seaweedfs.endpoint,
        client=_client(seaweedfs, proxy.url),
    )
    store.backoff_base = 0.005
    store.backoff_cap = 0.05
    assert store.url == url
    return store


def _read_all(vol: Volume, files: dict[str, bytes]) -> tuple[list[str], list[str]]:
    """Read every file; return (paths that failed with CorruptionError, wrong bytes)."""
    errors, wrong = [], []
    for path, data in files.items():
        try:
            got = b"".join(vol.read_file(path))
        except CorruptionError:
            errors.append(path)
            continue
        if got != data:
            wrong.append(path)
    return errors, wrong


# A fresh process on the same cache folder, straight to SeaweedFS (no proxy).
FRESH_READER = textwrap.dedent(
    """
    import hashlib, json, sys
    from pathlib import Path
    from jupyter_volume import Volume
    from jupyter_volume.paths import cache_dir
    from jupyter_volume.repository.chunkcache import ChunkCache
    from jupyter_volume.store import open_store
    from jupyter_volume.testing.wrappers import CountingStore

    url, name, expected_file = sys.argv[1:4]
    expected = json.loads(Path(expected_file).read_text())
    store = CountingStore(open_store(url))
    vol = Volume.from_name(name, store=store)
    vol._repo.chunk_cache = ChunkCache(cache_dir() / "chunks")
    wrong = {}
    for path, digest in expected.items():
        try:
            got = hashlib.sha256(b"".join(vol.read_file(path))).hexdigest()
        except Exception as e:
            wrong[path] = f"{type(e).__name__}: {e}"
            continue
        if got != digest:
            wrong[path] = "different bytes"
    prefix = vol._repo.prefix
    print(json.dumps({
        "wrong": wrong,
        "tree_gets": store.count("get", prefix + "trees/"),
        "index_gets": store.count("get", prefix + "index/"),
        "pack_reads": store.count("get_range", prefix + "packs/"),
    }))
    """
)


def _fresh_process_reads(
    url: str, name: str, files: dict[str, bytes], env: dict[str, str], tmp_path: Path
) -> dict:
    expected = tmp_path / f"expected-{uuid.uuid4().hex[:6]}.json"
    expected.write_text(json.dumps({p: hashlib.sha256(d).hexdigest() for p, d in files.items()}))
    p = subprocess.run(
        [sys.executable, "-c", FRESH_READER, url, name, str(expected)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.s3
def test_flipped_bits_are_fetched_again_and_never_cached(
    s3_volume: tuple[str, str, dict[str, bytes]],
    proxy: FaultProxy,
    seaweedfs: SeaweedFS,
    tmp_path: Path,
) -> None:
    """Bits flipped in the first reads of tree nodes, index objects and packs: each is
    read again and the volume reads exact; a fresh process then finds good objects in
    the caches."""
    url, name, files = s3_volume
    flips = READ_ATTEMPTS - 1  # every attempt but the last one is damaged
    for part in ("/trees/", "/index/", "/packs/"):
        proxy.flip(flips, path_contains=part)
    store = _through(proxy, seaweedfs, url)
    vol = Volume.from_name(name, store=store)
    vol._repo.chunk_cache = ChunkCache(tmp_path / "shared-cache" / "chunks")
    errors, wrong = _read_all(vol, files)
    assert (errors, wrong) == ([], [])
    assert proxy.pending_flips() == 0 and proxy.counts[BITFLIP] == 3 * flips
    # the batched reader that mounts use for small files (their chunks skip the cache)
    proxy.flip(flips, path_contains="/packs/")
    small = sorted(p for p, d in files.items() if len(d) > 512 and p != BIG)
    got = vol._repo.read_many([vol._repo.lookup(p) for p in small])
    assert got == [files[p] for p in small] and proxy.pending_flips() == 0
    # ... and as views into the ranges fetched, as a mount takes them
    proxy.flip(flips, path_contains="/packs/")
    views = vol._repo.read_many([vol._repo.lookup(p) for p in small], views=True)
    assert [bytes(v) for v in views] == [files[p] for p in small] and proxy.pending_flips() == 0
    assert all(isinstance(v, memoryview) and v.readonly for v in views)
    # verify() reads past every cache; damage on the way is not reported as the store's
    proxy.flip(flips, path_contains="/trees/")
    proxy.flip(flips, path_contains="/index/")
    proxy.flip(flips, path_contains="/packs/", at_byte=10)  # packs start with chunk bytes
    report = vol.verify()
    assert report.ok, report.errors
    assert proxy.pending_flips() == 0
    store.close()

    seen = _fresh_process_reads(url, name, files, seaweedfs.env(), tmp_path)
    assert seen["wrong"] == {}
    # served by the caches that the faulty run filled
    assert seen["tree_gets"] == 0 and seen["index_gets"] == 0, seen
    assert seen["pack_reads"] < len(files), seen


@pytest.mark.s3
def test_damage_on_every_read_is_reported_and_poisons_nothing(
    s3_volume: tuple[str, str, dict[str, bytes]],
    proxy: FaultProxy,
    seaweedfs: SeaweedFS,
    tmp_path: Path,
) -> None:
    """A tree node damaged on every attempt is reported as CorruptionError (it is not
    the store's fault, but this process cannot tell); nothing damaged is cached, and a
    fresh process reads everything."""
    url, name, files = s3_volume
    store = _through(proxy, seaweedfs, url)
    vol = Volume.from_name(name, store=store)
    proxy.flip(READ_ATTEMPTS, path_contains="/trees/")
    with pytest.raises(CorruptionError) as tree_error:
        vol.listdir("/")
    store.close()

    seen = _fresh_process_reads(url, name, files, seaweedfs.env(), tmp_path)
    assert seen["wrong"] == {}
    assert proxy.counts[BITFLIP] == READ_ATTEMPTS
    # the damage was read again before it was reported, and the report says so
    assert f"read {READ_ATTEMPTS} times" in str(tree_error.value)
    store = _through(proxy, seaweedfs, url)
    volume_mod._repos.clear()
    vol = Volume.from_name(name, store=store)
    assert vol.listdir("/")
    proxy.flip(READ_ATTEMPTS, path_contains="/packs/")
    with pytest.raises(CorruptionError, match=rf"read {READ_ATTEMPTS} times"):
        b"".join(vol.read_file(BIG))
    assert b"".join(vol.read_file(BIG)) == files[BIG]  # the failure was not remembered
    store.close()


@pytest.mark.s3
def test_random_bit_flips_leave_no_poison(
    s3_volume: tuple[str, str, dict[str, bytes]],
    proxy: FaultProxy,
    seaweedfs: SeaweedFS,
    tmp_path: Path,
) -> None:
    """40% of reads of tree nodes, index objects and packs damaged: reads may fail, but
    never return wrong bytes, and a fresh process afterwards reads the whole volume
    exact. (Commit records have no hash to check and are never cached on disk, so they
    are left alone here.)"""
    url, name, files = s3_volume
    proxy.flip_match = ("/trees/", "/index/", "/packs/")
    proxy.flip_rate = 0.4
    store = _through(proxy, seaweedfs, url)
    store.max_attempts = 3
    vol = Volume.from_name(name, store=store)
    vol._repo.chunk_cache = ChunkCache(tmp_path / "shared-cache" / "chunks")
    errors, wrong = _read_all(vol, files)
    assert wrong == []
    store.close()

    seen = _fresh_process_reads(url, name, files, seaweedfs.env(), tmp_path)
    assert seen["wrong"] == {}, (seen, errors)
    assert proxy.counts[BITFLIP] >= 10, dict(proxy.counts)  # the damage was real
    assert len(errors) < len(files) // 2, errors  # and retries got most reads through


def _flip_a_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def test_damaged_cache_entries_are_dropped_and_fetched_again(
    local_store: LocalStore, tmp_path: Path, fresh_engine: None
) -> None:
    """Bits flipped in the cache files themselves (a bad disk, a crashed copy)."""
    files = _write_volume(local_store, "cached")
    volume_mod._repos.clear()  # read it back as a new process would
    cache = Path(os.environ["JUPYTER_VOLUME_CACHE_DIR"])
    vol = Volume.from_name("cached", store=local_store)
    vol._repo.chunk_cache = ChunkCache(cache / "chunks")
    assert _read_all(vol, files) == ([], [])
    objects = [p for p in (cache / "objects").rglob("*") if p.is_file()]
    chunks = [p for p in (cache / "chunks").rglob("*") if p.is_file()]
    assert any("/trees/" in str(p) for p in objects) and any("/index/" in str(p) for p in objects)
    assert chunks
    before = {p: p.read_bytes() for p in objects + chunks}
    for p in objects + chunks:
        _flip_a_bit(p)

    volume_mod._repos.clear()
    vol = Volume.from_name("cached", store=local_store)
    vol._repo.chunk_cache = ChunkCache(cache / "chunks")
    assert _read_all(vol, files) == ([], [])
    for p, data in before.items():  # each damaged entry was replaced by a good copy
        assert p.read_bytes() == data, p


@pytest.mark.s3
def test_gc_repacks_through_flipped_bits(
    s3_volume: tuple[str, str, dict[str, bytes]],
    proxy: FaultProxy,
    seaweedfs: SeaweedFS,
) -> None:
    """Repacking reads whole packs: a damaged read is read again, never repacked."""
    url, _name, _files = s3_volume
    store = _through(proxy, seaweedfs, url)
    vol = Volume.from_name("gc-flips", create_if_missing=True, store=store)
    keep, drop = os.urandom(14_000), os.urandom(16_000)  # 'keep' is < half: repacked
    with vol.batch_upload() as b:  # one pack, mostly 'drop'
        b.put_file(io.BytesIO(keep), "keep.bin")
        b.put_file(io.BytesIO(drop), "drop.bin")
    vol.remove_file("drop.bin")
    vol.set_retention(keep_last=1)
    # 'keep' was packed first, so the damage lands in the bytes that are repacked
    proxy.flip(READ_ATTEMPTS - 1, path_contains="/packs/", at_byte=100)
    report = vol.gc(grace=0)
    assert report.packs_repacked == 1 and proxy.counts[BITFLIP] == READ_ATTEMPTS - 1
    store.close()
    volume_mod._repos.clear()
    direct = S3Store(
        store.bucket, store.prefix, endpoint_url=seaweedfs.endpoint, client=_client(seaweedfs)
    )
    again = Volume.from_name("gc-flips", store=direct)
    assert b"".join(again.read_file("keep.bin")) == keep
    assert again.verify().ok


@pytest.mark.s3
def test_a_damaged_head_hint_does_not_stick(
    s3_volume: tuple[str, str, dict[str, bytes]],
    proxy: FaultProxy,
    seaweedfs: SeaweedFS,
) -> None:
    """``head`` is an unchecked hint: a flipped digit naming a commit that does not exist
    must not become this process's head (a kernel lives long)."""
    url, name, files = s3_volume
    store = _through(proxy, seaweedfs, url)
    writer = Volume.from_name(name, store=store)
    while writer.seq % HEAD_HINT_EVERY:  # the commit that writes the hint
        with writer.batch_upload(force=True) as b:
            b.put_file(io.BytesIO(b"more"), f"more{writer.seq}.txt")
    hint = store.get(f"vols/{writer.info().id}/head")
    assert json.loads(hint)["seq"] == writer.seq
    volume_mod._repos.clear()
    digit = len(hint) - 2  # {"seq":N}: the last digit of N
    masks = [
        m for m in (1, 2, 4, 8) if chr(hint[digit] ^ m).isdigit() and hint[digit] ^ m > hint[digit]
    ]
    assert masks, hint  # names a later commit, one that does not exist
    proxy.flip(path_contains="/head", at_byte=digit, mask=masks[0])
    vol = Volume.from_name(name, store=store)
    assert {e.path for e in vol.listdir("/")} >= {"notes0.txt", "d0"}
    assert proxy.counts[BITFLIP] == 1
    seq = vol.seq
    assert seq == json.loads(hint)["seq"], (seq, hint)
    with vol.batch_upload(force=True) as b:
        b.put_file(io.BytesIO(b"after"), "after.txt")
    assert vol.seq == seq + 1
    store.close()


# -- hostile chunk names and the cache's bound ------------------------------------------


def test_a_chunk_name_from_a_tree_never_reaches_a_path_outside_the_cache(
    local_store: LocalStore, tmp_path: Path, fresh_engine: None
) -> None:
    """A tree node is read from the store: a volume someone else wrote may name a chunk
    ``../victim.txt``. The chunk cache dropped a "damaged" entry by deleting the file at
    that name, so reading such a file deleted a file of the user's outside the cache."""
    from jupyter_volume.repository import Entry

    cache = Path(os.environ["JUPYTER_VOLUME_CACHE_DIR"])
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    vol = Volume.from_name("hostile", create_if_missing=True, store=local_store)
    with vol.batch_upload() as b:
        b.put_file(io.BytesIO(random.Random(3).randbytes(100_000)), "real.bin")
    with vol.open("real.bin") as f:  # a random read: the chunk cache folder now exists
        f.seek(50_000)
        assert len(f.read(10)) == 10
    assert (cache / "chunks").is_dir()
    # chunks/../../victim.txt is the victim
    evil = Entry("evil.bin", "f", 0o644, 8, 0, chunks=[("../victim.txt", 8)])
    vol._repo.commit({"evil.bin": evil}, message="a hostile tree node")

    with pytest.raises(CorruptionError):
        with vol.open("evil.bin") as f:
            f.read()
    vol._repo.chunk_cache = ChunkCache(cache / "chunks")  # as a mount reads
    with pytest.raises(CorruptionError):
        b"".join(vol.read_file("evil.bin"))
    assert victim.read_bytes() == b"precious"
    cc = ChunkCache(cache / "chunks")
    assert cc.get("../victim.txt") is None
    cc.put("../victim.txt", b"precious")  # refused, not written anywhere
    assert victim.read_bytes() == b"precious"
    assert b"".join(vol.read_file("real.bin")) == random.Random(3).randbytes(100_000)


def _folder_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _fill(cache: ChunkCache, seed: int, n: int) -> None:
    rng = random.Random(seed)
    for _ in range(n):
        data = rng.randbytes(64 << 10)
        cache.put(hash_bytes(data), data)


def test_two_caches_of_one_process_keep_the_folder_within_its_bound(tmp_path: Path) -> None:
    """A kernel holds two cache objects on one folder (a mount's and Volume.open's): each
    counted only its own writes, so together they filled the folder to twice the bound."""
    bound = 4 << 20
    a = ChunkCache(tmp_path / "chunks", bound)
    b = ChunkCache(tmp_path / "chunks", bound)
    _fill(a, 1, 1)
    _fill(b, 2, 1)
    _fill(a, 3, 40)  # 2.5 MiB each, 5 MiB in all
    _fill(b, 4, 40)
    assert _folder_bytes(tmp_path / "chunks") <= bound


FILLER = textwrap.dedent(
    """
    import random, sys
    from pathlib import Path
    from jupyter_volume.repository.chunkcache import ChunkCache
    from jupyter_volume.repository.codec import hash_bytes

    root, bound, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    cache = ChunkCache(Path(root), bound)
    rng = random.Random(seed)

    def put():
        data = rng.randbytes(64 << 10)
        cache.put(hash_bytes(data), data)

    put()
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(40):
        put()
    print("done", flush=True)
    """
)


def test_processes_filling_the_cache_at_once_keep_its_bound(tmp_path: Path) -> None:
    """Two processes fill one cache folder at once (two kernels, or a kernel and
    ``jupyter volume get``): each compared only its own writes with the bound."""
    bound = 4 << 20
    root = tmp_path / "chunks"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", FILLER, str(root), str(bound), str(seed)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    try:
        for p in procs:  # both have looked at the folder before either fills it
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in procs:
            assert p.wait(timeout=60) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert _folder_bytes(root) <= bound


def test_a_failed_read_ahead_does_not_fail_a_read_that_has_its_bytes(tmp_path: Path) -> None:
    """A sequential reader fetches the next window in the background. When that fetch
    failed, the next read raised its error although its own bytes had arrived; now the
    failed window is dropped and fetched again when it is needed. (The store error is
    injected on one request: a fault a real server gives on no cue.)"""
    import time

    from jupyter_volume.errors import StoreError
    from jupyter_volume.testing.wrappers import WrappedStore

    data = random.Random(7).randbytes(12 << 20)
    store = LocalStore(tmp_path / "store")
    vol = Volume.from_name("ahead", create_if_missing=True, store=store)
    with vol.batch_upload() as b:
        b.put_file(io.BytesIO(data), "big.bin")

    class FailOnce(WrappedStore):
        armed = False

        def _do(self, kind, key, fn, *args):  # type: ignore[no-untyped-def]
            if self.armed and kind == "get_range" and "/packs/" in key:
                self.armed = False
                raise StoreError(f"injected: no answer for {key}")
            return super()._do(kind, key, fn, *args)

    flaky = FailOnce(store)
    flaky.url = store.url + "#flaky"  # a repository of its own (no shared caches)
    with Volume.from_name("ahead", store=flaky).open("big.bin") as f:
        assert len(f._starts) >= 4  # several chunks
        out = [f.read(f._starts[1] + 10)]  # into chunk 1, which is now in memory
        flaky.armed = True  # the next fetch from the store fails: the read-ahead's
        out.append(f.read(1))  # sequential, served from memory: a read-ahead starts
        job = f._ahead
        assert job is not None, "no read-ahead started"
        deadline = time.monotonic() + 60  # a hang guard, not a measurement
        while not job[2].done() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert isinstance(job[2].exception(), StoreError)
        while chunk := f.read(1 << 20):
            out.append(chunk)
    assert b"".join(out) == data


def test_views_of_a_batched_read_outlive_the_next_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """read_many(views=True) hands out views into each range's own bytes, never into a
    buffer that a later range reuses: what one range or batch got stays as it was while
    the next ones are read (a mount writes a batch while it reads the next one)."""
    rng = random.Random(7)
    vol = Volume.from_name("views", create_if_missing=True, store=LocalStore(tmp_path / "s"))
    files = {f"d{i % 4}/f{i}": rng.randbytes(rng.randint(600, 9000)) for i in range(200)}
    files["inline.txt"] = b"small"
    files["text.txt"] = b"compressible " * 400  # stored compressed: bytes, not a view
    with vol.batch_upload() as b:
        for p, data in files.items():
            b.put_file(io.BytesIO(data), p)
    repo = vol._repo
    # ranges of at most 20 KB: dozens of them in one call, more than it has threads
    monkeypatch.setattr(repo_mod, "READ_REQUEST_MAX", 20_000)
    paths = sorted(files)
    batches = [paths[i : i + 50] for i in range(0, len(paths), 50)]
    got = [repo.read_many([repo.lookup(p) for p in batch], views=True) for batch in batches]
    for batch, contents in zip(batches, got, strict=True):
        assert [bytes(c) for c in contents] == [files[p] for p in batch]
    kinds = {
        p: type(c)
        for batch, cs in zip(batches, got, strict=True)
        for p, c in zip(batch, cs, strict=True)
    }
    assert kinds["inline.txt"] is bytes and kinds["text.txt"] is bytes
    assert kinds["d0/f0"] is memoryview
    # without views, every content is bytes of its own
    assert all(type(c) is bytes for c in repo.read_many([repo.lookup(p) for p in paths]))
