"""Group commit: many writers of different files lose nothing, and a writer killed
while its change is pending leaves all of it or none of it.

Writers here are real processes committing through the repository layer with no
caller check, which is the path that publishes an intent on a lost race (the path a
mount's commits take). Races are made certain, not likely, by store wrappers in the
children: a barrier right before the create-only write of the commit record, and
(for the kill sweep) a competing commit made by another process at that moment.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3

from jupyter_volume.repository import CommitRecord, Repository
from jupyter_volume.repository.tree import FILE
from jupyter_volume.store import Store
from jupyter_volume.testing.wrappers import KILL_EXIT_CODE, WrappedStore

WRITERS = 16
ROUNDS = 2


def content(tag: str, size: int) -> bytes:
    return blake3(tag.encode()).digest(length=size)


def _records(store: Store, vol_id: str) -> list[CommitRecord]:
    prefix = f"vols/{vol_id}/log/"
    return [CommitRecord.from_bytes(store.get(i.key), i.key) for i in store.list(prefix)]


def _files(repo: Repository) -> dict[str, bytes]:
    return {
        p: b"".join(repo.read_entry(e, p))
        for p, e in repo.trees.walk(repo.head().root)
        if e.kind == FILE
    }


def collect(procs: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    """Each writer child's result (its last line of output, JSON); every child must
    succeed, and none may have timed out at its barrier. Kills what is left on failure."""
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-3000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert all(r["timeouts"] == 0 for r in results), results
    return results


def check_writers(
    store: Store, vol_id: str, results: list[dict[str, Any]], cache: Path
) -> dict[int, CommitRecord]:
    """What WRITERS writer children committing ROUNDS times each (``results``) must
    leave: fewer records than commits, each adding at most one index segment; every
    writer's every file, whole; every acknowledged commit naming the first record that
    holds that file; ``verify()`` clean; no intents left on the store. The records."""
    records = {rec.seq: rec for rec in _records(store, vol_id)}
    assert sorted(records) == list(range(len(records)))
    assert len(records) < WRITERS * ROUNDS + 1
    # A record that carried others added one index segment for all of them (merged),
    # not one per writer: every other process loads what a record adds.
    for rec in records.values():
        if rec.seq > 0:
            before = set(records[rec.seq - 1].index)
            added = [k for k in rec.index if k not in before]
            assert len(added) <= 1 or len(rec.index) < len(before), (rec.seq, added)
    # Nothing lost: every writer's every file, whole.
    repo = Repository(store, vol_id, cache_dir=cache)
    expected = {
        f"w{i:02d}/r{r}.bin": content(f"{i:02d}-{r}", 3000 + 100 * r)
        for i in range(WRITERS)
        for r in range(ROUNDS)
    }
    assert _files(repo) == expected
    # History's "new data" counts every writer's stored bytes, in the record that carried
    # its change, not only the committing writer's own.
    stored = sum(rec.stats.get("bytes_new", 0) for rec in records.values())
    assert stored >= sum(map(len, expected.values())), stored
    # Every acknowledged commit names a record whose tree holds that writer's file,
    # whole, and no earlier record has it (history holds every acknowledged version).
    for r in results:
        for d in r["done"]:
            e = repo.lookup(d["path"], records[d["seq"]].root)
            assert e is not None, d
            assert b"".join(repo.read_entry(e, d["path"])) == expected[d["path"]], d
            assert repo.lookup(d["path"], records[d["seq"] - 1].root) is None, d
    assert repo.verify().ok
    # Carried intents were cleaned up.
    assert list(store.list(f"vols/{vol_id}/intents/")) == []
    return records


WRITER_CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from blake3 import blake3
    from jupyter_volume.repository import Repository
    from jupyter_volume.store import open_store
    from jupyter_volume.testing.wrappers import WrappedStore

    url, vol_id, who, n, sync, rounds, cache = sys.argv[1:8]
    n, rounds, sync = int(n), int(rounds), Path(sync)

    def wait_for(pattern, count):
        deadline = time.monotonic() + 90
        while len(list(sync.glob(pattern))) < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    class Barrier(WrappedStore):
        # First round only: every writer meets right before its first commit record
        # (so all race for one seq), and every loser waits until all losers have
        # published their intents (so the next commit can carry all of them).
        def __init__(self, inner):
            super().__init__(inner)
            self.armed = True
            self.timeouts = 0
        def put_if_absent(self, key, data):
            if self.armed and "/log/" in key:
                (sync / f"at-log-{who}").touch()
                self.timeouts += not wait_for("at-log-*", n)
            return self.inner.put_if_absent(key, data)
        def put(self, key, data):
            out = self.inner.put(key, data)
            if self.armed and "/intents/" in key:
                (sync / f"intent-{who}").touch()
                self.timeouts += not wait_for("intent-*", n - 1)
            return out

    store = Barrier(open_store(url))
    repo = Repository(store, vol_id, cache_dir=Path(cache))
    done = []
    for r in range(rounds):
        w = repo.writer()
        path = f"w{who}/r{r}.bin"
        data = blake3(f"{who}-{r}".encode()).digest(length=3000 + 100 * r)
        rec, _stats = repo.commit({path: w.bytes_entry(data)}, writer=w, message=f"{who} {r}")
        store.armed = False
        done.append({"path": path, "seq": rec.seq})
    print(json.dumps({"done": done, "timeouts": store.timeouts}))
    """
)


def test_16_writers_of_different_files_lose_nothing(
    opened: tuple[Store, str, dict[str, str]], tmp_path: Path
) -> None:
    store, url, env = opened
    vol_id = uuid.uuid4().hex
    Repository.create(store, vol_id)
    sync = tmp_path / "sync"
    sync.mkdir()
    procs = []
    for i in range(WRITERS):
        args = [
            sys.executable,
            "-c",
            WRITER_CHILD,
            url,
            vol_id,
            f"{i:02d}",
            str(WRITERS),
            str(sync),
            str(ROUNDS),
            str(tmp_path / f"cache-{i}"),
        ]
        procs.append(
            subprocess.Popen(
                args,
                # As if each writer ran on a machine of its own: writers on one machine
                # line up locally first (test_local_line.py), and the barrier below
                # needs them all racing for the log slot on the store.
                env={**os.environ, **env, "JUPYTER_VOLUME_LOCAL_LINE": "0"},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    records = check_writers(store, vol_id, collect(procs), tmp_path / "reader-cache")
    # The barrier made 15 writers lose one race at once: their changes were carried
    # together instead of each retrying alone.
    most = max(len(rec.extra.get("carried", [])) for rec in records.values())
    assert most >= 2, [rec.extra for rec in records.values()]


# A child's commit of MINE (with "base/deleted.bin" deleted) through ``repo``, as
# ``rec``; put in place of MINE_COMMIT in a child's source.
MINE_COMMIT = textwrap.dedent(
    """
    w = repo.writer()
    changes = {
        "mine/big.bin": w.bytes_entry(blake3(b"big").digest(length=70_000)),
        "mine/small.txt": w.bytes_entry(b"small and inline"),
        "base/modified.bin": w.bytes_entry(blake3(b"modified").digest(length=5_000)),
        "base/deleted.bin": None,
    }
    rec, _ = repo.commit(changes, writer=w, message="mine")
    """
).strip()

KILL_CHILD = textwrap.dedent(
    """
    import json, subprocess, sys
    from pathlib import Path
    from blake3 import blake3
    from jupyter_volume.repository import Repository
    from jupyter_volume.store import open_store
    from jupyter_volume.testing.wrappers import KillAfterStore

    url, vol_id, k, cache, rival = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]

    class LoseThenDie(KillAfterStore):
        # Right before our first commit record, another process commits: we lose the
        # race for sure. Then the store dies after its k-th operation.
        def __init__(self, inner, k):
            super().__init__(inner, k)
            self.trace = []
            self.rival_done = False
        def _record(self, kind, key):
            self.trace.append(f"{kind} {key.split('/', 2)[-1]}")
            super()._record(kind, key)
        def put_if_absent(self, key, data):
            if "/log/" in key and not self.rival_done:
                self.rival_done = True
                subprocess.run([sys.executable, "-c", rival, url, vol_id], check=True)
            return super().put_if_absent(key, data)

    store = LoseThenDie(open_store(url), k or None)
    repo = Repository(store, vol_id, cache_dir=Path(cache))
    repo.head()
    MINE_COMMIT
    print(json.dumps({"ops": store.ops, "trace": store.trace, "seq": rec.seq, "txn": rec.txn,
                      "carried": rec.extra.get("carried", [])}))
    """
).replace("MINE_COMMIT", MINE_COMMIT)

RIVAL = textwrap.dedent(
    """
    import sys
    from jupyter_volume.repository import Repository
    from jupyter_volume.store import open_store
    repo = Repository(open_store(sys.argv[1]), sys.argv[2], cache_dir=__import__("pathlib").Path("/dev/null"))
    w = repo.writer()
    repo.commit({"rival.txt": w.bytes_entry(b"the rival's commit")}, writer=w, message="rival")
    """
)

BASE = {
    "base/modified.bin": content("base-modified", 5_000),
    "base/deleted.bin": content("base-deleted", 2_000),
    "base/kept.bin": content("base-kept", 2_000),
}
MINE = {
    "mine/big.bin": blake3(b"big").digest(length=70_000),
    "mine/small.txt": b"small and inline",
    "base/modified.bin": blake3(b"modified").digest(length=5_000),
}


def _base_repo(store: Store, tmp_path: Path) -> str:
    vol_id = uuid.uuid4().hex
    repo = Repository.create(store, vol_id)
    repo = Repository(store, vol_id, cache_dir=tmp_path / f"base-{vol_id}")
    w = repo.writer()
    repo.commit({p: w.bytes_entry(d) for p, d in BASE.items()}, writer=w, message="base")
    return vol_id


def _run_killed(url: str, vol_id: str, k: int, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", KILL_CHILD, url, vol_id, str(k), str(tmp_path / "c"), RIVAL],
        capture_output=True,
        text=True,
        timeout=120,
        # the store's protocol, between writers as if on two machines (on one, the rival
        # would wait in line for the lock the killed writer holds while it waits for the
        # rival: test_local_line.py covers that path)
        env={**os.environ, "JUPYTER_VOLUME_LOCAL_LINE": "0"},
    )


def test_writer_killed_while_its_change_is_pending_leaves_all_or_nothing(
    local_store: Store, tmp_path: Path
) -> None:
    # Local store: the sweep is about the order of operations, which the backend does
    # not change (the 16-writer test above runs on both stores).
    url = local_store.url
    vol_id = _base_repo(local_store, tmp_path)
    proc = _run_killed(url, vol_id, 0, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    full = json.loads(proc.stdout.strip().splitlines()[-1])
    trace = full["trace"]
    lost = next(i for i, op in enumerate(trace) if op.startswith("put_if_absent log/"))
    published = next(i for i, op in enumerate(trace) if op.startswith("put intents/"))
    assert lost < published
    # Unkilled, the loser's change is in the record after the rival's, carried by itself.
    assert full["seq"] == 3 and full["txn"]

    after = {**BASE, **MINE, "rival.txt": b"the rival's commit"}
    after.pop("base/deleted.bin")
    before = {**BASE, "rival.txt": b"the rival's commit"}
    outcomes = {}
    # Kill after every operation from the lost race to the end of the commit.
    for k in range(lost + 1, full["ops"] + 1):
        vid = _base_repo(local_store, tmp_path)
        proc = _run_killed(url, vid, k, tmp_path)
        assert proc.returncode == KILL_EXIT_CODE, (k, proc.returncode, proc.stderr[-3000:])
        # Another writer commits next, as a fresh process would.
        repo = Repository(local_store, vid, cache_dir=tmp_path / f"next-{k}")
        w = repo.writer()
        rec, _ = repo.commit({"next.txt": w.bytes_entry(b"next writer")}, writer=w)
        assert rec is not None
        files = _files(repo)
        assert files.pop("next.txt") == b"next writer"
        assert files in (before, after), (k, sorted(files))
        whole = files == after
        outcomes[k] = whole
        if k >= published + 1:
            # Its intent was on the store: the next commit carried it whole.
            assert whole, k
        if k <= published:
            assert not whole, k  # nothing of it was published: none of it
        assert repo.verify().ok, k
        assert list(local_store.list(f"vols/{vid}/intents/")) == [], k
    assert set(outcomes.values()) == {True, False}


# -- gc racing group commit ---------------------------------------------------------------
class PausingStore(WrappedStore):
    """A store that stops the calling thread right before a chosen operation until the
    test lets it go: the interleaving a race hits only sometimes, made certain.

    ``pause(kind, prefix)`` arms one stop (the next ``kind`` operation on a key starting
    with ``prefix``) and returns it; ``stop.reached`` is set once a thread waits there,
    ``stop.go()`` lets it on. ``url``: another URL than the inner store's, so that this
    process treats it as a store of its own (its own repository objects and line)."""

    class Stop:
        def __init__(self, kind: str, prefix: str) -> None:
            self.kind, self.prefix = kind, prefix
            self.reached = threading.Event()
            self._go = threading.Event()

        def go(self) -> None:
            self._go.set()

        def wait(self) -> None:
            assert self.reached.wait(60), f"nobody reached {self.kind} {self.prefix}"

    def __init__(self, inner: Store, url: str | None = None) -> None:
        super().__init__(inner)
        if url is not None:
            self.url = url
        self._stops: list[PausingStore.Stop] = []
        self._lock = threading.Lock()

    def pause(self, kind: str, prefix: str) -> PausingStore.Stop:
        stop = PausingStore.Stop(kind, prefix)
        with self._lock:
            self._stops.append(stop)
        return stop

    def _do(self, kind: str, key: str, fn, *args):  # type: ignore[no-untyped-def]
        with self._lock:
            stop = next(
                (s for s in self._stops if s.kind == kind and key.startswith(s.prefix)), None
            )
            if stop is not None:
                self._stops.remove(stop)
        if stop is not None:
            stop.reached.set()
            assert stop._go.wait(60), f"never let go at {kind} {key}"
        return super()._do(kind, key, fn, *args)


def dead_data(store: Store, name: str, other_file: int = 0) -> tuple[Any, bytes]:
    """A volume whose only copy of ``x`` is in history that ``keep_last=1`` expires (and,
    with ``other_file``, a file that stays live in the same pack)."""
    from jupyter_volume import Volume

    vol = Volume.lookup(name, create_if_missing=True, store=store)
    x = os.urandom(1 << 20)
    with vol.batch_upload(force=True) as b:  # one pack: x, and maybe a file that stays
        b.put_file(io.BytesIO(x), "x.bin")
        if other_file:
            b.put_file(io.BytesIO(os.urandom(other_file)), "stays.bin")
    vol.remove_file("x.bin")
    vol.set_retention(keep_last=1)  # the default grace: gc condemns, deletes nothing yet
    return vol, x


def other_commit(store: Store, vid: str, cache: Path, path: str) -> CommitRecord:
    """A one-file commit by another "process" (a repository of its own), store protocol
    only (no line); the file holds ``path`` 50 times."""
    repo = Repository(store, vid, cache_dir=cache / path)
    w = repo.writer()
    rec, _ = repo.commit({path: w.bytes_entry(path.encode() * 50)}, writer=w, line=False)
    assert rec is not None
    return rec


def _in_thread(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """``fn()`` on a thread; the dict gets its ``result`` or its ``error``."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = fn()
        except BaseException as e:
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


@pytest.mark.parametrize("other_file", [0, 3 << 20], ids=["pack-condemned", "pack-kept"])
def test_a_carried_change_set_that_reused_data_gc_found_dead_loses_nothing(
    store: Store, tmp_path: Path, other_file: int
) -> None:
    """Writer W deduplicates against data that only expired history holds, loses the
    race for the log and publishes its change set as an intent; gc then expires that
    history; writer C commits next and carries W's intent. Only W knew where its reused
    data was: C copied nothing out, its record named chunks no index lists ("missing
    from the volume's index"), and the next gc deleted their pack. Threads with
    repositories of their own stand for processes; the store's protocol only (no line)."""
    from jupyter_volume import Volume

    vol, x = dead_data(store, "gcc", other_file)
    vid, prefix = vol.object_id, f"vols/{vol.object_id}/"

    paused = PausingStore(store)
    w_repo = Repository(paused, vid, cache_dir=tmp_path / "w")
    w_repo.head()
    writer = w_repo.writer()
    entry = writer.file_entry(io.BytesIO(x))
    assert writer.packs.bytes_written == 0  # deduplicated: nothing new uploaded
    slot = paused.pause("put_if_absent", prefix + "log/")
    t, out = _in_thread(lambda: w_repo.commit({"x-again.bin": entry}, writer=writer, line=False)[0])
    slot.wait()
    other_commit(
        store, vid, tmp_path, "c1.txt"
    )  # takes the slot W is about to claim: W publishes an intent
    look = paused.pause("list", prefix + "intents/")  # ...and stops before it folds
    slot.go()
    look.wait()
    assert [i.key for i in store.list(prefix + "intents/")], "W published no intent"
    vol.gc()  # expires the commit that had x: W's reused data is dead
    c2 = other_commit(store, vid, tmp_path, "c2.txt")  # commits next, with W's intent pending
    look.go()
    t.join(60)
    assert not t.is_alive() and "error" not in out, out
    w_rec = out["result"]
    assert w_rec is not None and w_rec.seq >= c2.seq
    expected = {"x-again.bin": x, "c1.txt": b"c1.txt" * 50, "c2.txt": b"c2.txt" * 50}
    fresh = Volume.from_name("gcc", store=store)
    for path, data in expected.items():
        assert b"".join(fresh.read_file(path)) == data, path
    fresh.gc(grace=0)  # deletes what gc condemned
    fresh = Volume.from_name("gcc", store=store)
    report = fresh.verify()
    assert report.ok, report.errors
    for path, data in expected.items():
        assert b"".join(fresh.read_file(path)) == data, path


def test_a_writer_whose_wait_in_line_fails_takes_its_change_set_back(
    store: Store, tmp_path: Path
) -> None:
    """Writer W loses the log slot and publishes its change set as an intent for the next
    committer to carry; then the store fails W's next request. W's caller gets the error,
    but the intent stayed on the store, and the next writer's commit carried it: a change
    its caller was told had failed landed behind its back. W now withdraws it first.
    (The store error is injected at that one request, a fault no real server gives on cue.)"""
    from jupyter_volume import Volume
    from jupyter_volume.errors import StoreError

    class FailOnce(PausingStore):
        armed: tuple[str, str] | None = None

        def _do(self, kind: str, key: str, fn, *args):  # type: ignore[no-untyped-def]
            if self.armed is not None and kind == self.armed[0] and key.startswith(self.armed[1]):
                self.armed = None
                raise StoreError(f"injected: the store did not answer {kind} {key}")
            return super()._do(kind, key, fn, *args)

    vol = Volume.lookup("gone-wrong", create_if_missing=True, store=store)
    vid, prefix = vol.object_id, f"vols/{vol.object_id}/"

    flaky = FailOnce(store)
    w_repo = Repository(flaky, vid, cache_dir=tmp_path / "w")
    w_repo.head()
    writer = w_repo.writer()
    entry = writer.bytes_entry(b"W's change" * 100)
    slot = flaky.pause("put_if_absent", prefix + "log/")
    t, out = _in_thread(lambda: w_repo.commit({"w.txt": entry}, writer=writer, line=False)[0])
    slot.wait()
    other_commit(
        store, vid, tmp_path, "c1.txt"
    )  # takes the slot W is about to claim: W publishes an intent
    flaky.armed = ("list", prefix + "intents/")  # ...and its next look at the line fails
    slot.go()
    t.join(60)
    assert not t.is_alive()
    assert isinstance(out.get("error"), StoreError), out
    assert list(store.list(prefix + "intents/")) == []  # taken back
    other_commit(store, vid, tmp_path, "c2.txt")  # the next commit carries nothing of W's
    fresh = Volume.from_name("gone-wrong", store=store)
    assert {e.path for e in fresh.listdir("/")} == {"c1.txt", "c2.txt"}
