"""Crash safety: a writer dying at any point leaves the volume readable at a valid commit.

* The sweep runs one small commit in a child process whose store dies (``os._exit``)
  right after its k-th operation, for every k from the first operation to the last,
  each time on a fresh copy of the same volume (both stores).
* Then a child commits in a loop and is SIGKILLed 20 times at random moments (local
  store: the kill lands anywhere, including inside a local write, which is what the
  local store's temp-file-then-link protocol must survive).

After every crash the volume must be at the old commit or the new one, never between,
every file must read back whole, and ``verify()`` must be clean.
"""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
import textwrap
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from blake3 import blake3

import jupyter_volume.volume as volume_mod
from jupyter_volume import FileEntryType, Volume
from jupyter_volume.store import Store
from jupyter_volume.testing.wrappers import KILL_EXIT_CODE

pytestmark = pytest.mark.slow  # long in all: started first (conftest)

KiB = 1024


def content(tag: str, size: int) -> bytes:
    return blake3(tag.encode()).digest(length=size)


BASE = {
    "keep/a.bin": content("base-a", 100 * KiB),
    "keep/modified.bin": content("base-m", 3 * KiB),
    "keep/small.txt": b"small and inline",
}
NEW = {
    "data/new.bin": content("new", 200 * KiB),
    "data/small.txt": b"new small file",
    "keep/modified.bin": content("new-m", 3 * KiB),
}

SWEEP_CHILD = textwrap.dedent(
    """
    import io, json, sys
    from blake3 import blake3
    from jupyter_volume import Volume
    from jupyter_volume.store import open_store
    from jupyter_volume.testing.wrappers import KillAfterStore

    url, name, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = KillAfterStore(open_store(url), k or None)
    vol = Volume.from_name(name, store=store)
    # The grace period, read now: else the keeper thread reads it at a moment of its own
    # (or not at all, in a quick run), and the k-th operation is not the same in each run
    vol._repo.gc_grace()
    with vol.batch_upload(force=True) as batch:
        batch.put_file(io.BytesIO(blake3(b"new").digest(length=200 * 1024)), "data/new.bin")
        batch.put_file(io.BytesIO(b"new small file"), "data/small.txt")
        batch.put_file(io.BytesIO(blake3(b"new-m").digest(length=3 * 1024)), "keep/modified.bin")
    print(json.dumps({"ops": store.ops, "seq": batch.commit_info.seq}))
    """
)


def _base_volume(store: Store, name: str) -> Volume:
    vol = Volume.from_name(name, create_if_missing=True, store=store)
    with vol.batch_upload() as batch:
        for path, data in BASE.items():
            batch.put_file(io.BytesIO(data), path)
    return vol


def _files(vol: Volume) -> dict[str, bytes]:
    return {
        e.path: b"".join(vol.read_file(e.path))
        for e in vol.listdir("/", recursive=True)
        if e.type == FileEntryType.FILE
    }


def _run_sweep_child(
    url: str, env: dict[str, str], name: str, k: int, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    child_env = {
        **os.environ,
        **env,
        "JUPYTER_VOLUME_CACHE_DIR": str(tmp_path / f"cache-{name}"),
        "JUPYTER_VOLUME_STATE_DIR": str(tmp_path / f"state-{name}"),
    }
    return subprocess.run(
        [sys.executable, "-c", SWEEP_CHILD, url, name, str(k)],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_kill_after_every_operation_of_a_commit(
    opened: tuple[Store, str, dict[str, str]], tmp_path: Path
) -> None:
    store, url, env = opened
    base_state = {**BASE}
    new_state = {**BASE, **NEW}

    # A run that is not killed: how many store operations does the commit make?
    name0 = f"k-{uuid.uuid4().hex[:10]}"
    _base_volume(store, name0)
    proc = _run_sweep_child(url, env, name0, 0, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    total_ops = json.loads(proc.stdout.strip().splitlines()[-1])["ops"]
    assert total_ops >= 5
    vol0 = Volume.from_name(name0, store=store)
    vol0.reload()
    assert _files(vol0) == new_state

    names = {k: f"k{k}-{uuid.uuid4().hex[:10]}" for k in range(1, total_ops + 1)}
    for name in names.values():
        _base_volume(store, name)
    with ThreadPoolExecutor(max_workers=2) as pool:
        procs = dict(
            zip(
                names,
                pool.map(lambda k: _run_sweep_child(url, env, names[k], k, tmp_path), names),
                strict=True,
            )
        )

    outcomes = {}
    for k, name in names.items():
        proc = procs[k]
        assert proc.returncode == KILL_EXIT_CODE, (k, proc.returncode, proc.stderr[-3000:])
        assert f"exit after op {k}:" in proc.stderr
        vol = Volume.from_name(name, store=store)
        vol.reload()
        head = vol.history(1)[0].seq
        files = _files(vol)
        if head == 1:
            assert files == base_state, k
        else:
            assert head == 2, (k, head)
            assert files == new_state, k
        report = vol.verify()
        assert report.ok, (k, report.errors)
        outcomes[k] = head
        # and the volume takes new commits after the crash
        with vol.batch_upload(force=True) as batch:
            batch.put_file(io.BytesIO(content(f"after-{k}", 2 * KiB)), "after.bin")
        assert vol.history(1)[0].seq == head + 1
        assert vol.verify().ok
    # Early kills leave the old commit, late ones (after the record landed) the new one.
    assert outcomes[1] == 1
    assert outcomes[total_ops] == 2


LOOP_CHILD = textwrap.dedent(
    """
    import io, os, random, sys
    from blake3 import blake3
    from jupyter_volume import Volume
    from jupyter_volume.store import open_store

    # Every file carries its own checksum (32 bytes of blake3, then the payload), so any
    # file of any commit can be checked whole without knowing who wrote it.
    def framed(payload):
        return blake3(payload).digest() + payload

    url, name, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = random.Random(seed)
    vol = Volume.from_name(name, store=open_store(url))
    i = 0
    while True:
        i += 1
        with vol.batch_upload(force=True) as batch:
            payload = rng.randbytes(rng.randint(1, 200 * 1024))
            batch.put_file(io.BytesIO(framed(payload)), f"loop/{seed}-{i}.bin")
            batch.put_file(io.BytesIO(framed(rng.randbytes(100))), f"small/{seed}-{i}.txt")
            batch.put_file(io.BytesIO(framed(rng.randbytes(rng.randint(1, 90_000)))), "same/current.bin")
        if i % 3 == 0:
            old = [e.path for e in vol.listdir("loop")]
            vol.remove_file(rng.choice(old))
        sys.stdout.write(f"committed {batch.commit_info.seq}\\n")
        sys.stdout.flush()
    """
)


def _check_framed(vol: Volume) -> int:
    n = 0
    for e in vol.listdir("/", recursive=True):
        if e.type != FileEntryType.FILE:
            continue
        data = b"".join(vol.read_file(e.path))
        assert len(data) == e.size, e.path
        assert data[:32] == blake3(data[32:]).digest(), f"{e.path} is not whole"
        n += 1
    return n


def test_sigkill_at_random_moments_of_a_committing_loop(
    local_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUPYTER_VOLUME_CACHE_DIR", str(tmp_path / "cache"))
    name = "sigkill-loop"
    vol = Volume.from_name(name, create_if_missing=True, store=local_store)
    vol.listdir("/")
    rng = random.Random(20)
    # One cache folder shared by every child (and killed along with them), as on a
    # real machine: leftovers of a killed process must not hurt the next one.
    env = {**os.environ, "JUPYTER_VOLUME_CACHE_DIR": str(tmp_path / "child-cache")}
    last_head = 0
    for run in range(20):
        proc = subprocess.Popen(
            [sys.executable, "-c", LOOP_CHILD, local_store.url, name, str(run)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # Wait for one commit so every run makes progress, then kill at a random moment.
            first = proc.stdout.readline()  # type: ignore[union-attr]
            assert first.startswith("committed"), (first, proc.stderr.read())  # type: ignore[union-attr]
            try:
                proc.wait(timeout=rng.uniform(0.0, 0.3))
            except subprocess.TimeoutExpired:
                pass
        finally:
            proc.kill()
            proc.communicate()
        assert proc.returncode == -9, (run, proc.returncode)

        # A fresh reader each time, as a new process would be.
        monkeypatch.setattr(volume_mod, "_repos", {})
        vol = Volume.from_name(name, store=local_store)
        head = vol.history(1)[0].seq
        assert head > last_head, (run, head, last_head)
        last_head = head
        report = vol.verify()
        assert report.ok, (run, report.errors)
        assert _check_framed(vol) >= 2
    assert [h.seq for h in vol.history()] == list(range(last_head, -1, -1))
    with vol.batch_upload(force=True) as batch:
        batch.put_file(io.BytesIO(b"x" * 2000), "after-all.bin")
    assert vol.verify().ok


def test_failed_record_write_leaves_nothing_to_deduplicate_against(local_store: Store) -> None:
    # A commit that uploaded its packs and index segment, then failed to write its
    # record, published nothing. The same process must not deduplicate a later commit
    # against those chunks: no record lists the segment that says where they are (it
    # once did, and the later commit's files were unreadable: chunks missing from the
    # volume's index).
    from jupyter_volume.errors import StoreError
    from jupyter_volume.testing.wrappers import WrappedStore

    class FailRecordOnce(WrappedStore):
        armed = True

        def put_if_absent(self, key: str, data: bytes | bytearray | memoryview) -> bool:
            if self.armed and "/log/" in key:
                self.armed = False
                raise StoreError(f"injected: cannot write {key}")
            return super().put_if_absent(key, data)

    Volume.lookup("d", store=local_store, create_if_missing=True)
    vol = Volume.from_name("d", store=FailRecordOnce(local_store))
    data = content("dedup", 100 * KiB)
    with pytest.raises(StoreError, match="injected"):
        with vol.batch_upload() as batch:
            batch.put_file(io.BytesIO(data), "/first.bin")
    with vol.batch_upload() as batch:
        batch.put_file(io.BytesIO(data), "/second.bin")
    fresh = Volume.from_name("d", store=local_store)
    assert b"".join(fresh.read_file("second.bin")) == data
    assert [e.path for e in fresh.listdir("/", recursive=True)] == ["second.bin"]
    assert fresh.verify().ok
