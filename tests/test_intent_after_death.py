"""A writer's change set never lands after that writer died, over newer versions.

A mount's commit that cannot take the log slot at once waits as an *intent*: in this
machine's line (repository/line.py), or, when it lost the slot to a writer elsewhere,
on the store (group commit, repository/repo.py), for whoever writes the next record to
carry it. Its writer may die while it waits (a kernel killed with SIGKILL). Then:

* an intent in this machine's line is never carried once its writer is dead: a round
  that starts later drops it (the writer holds a lock on it while it waits);
* an intent on the store is carried only while its writer keeps renewing it: one left
  unrenewed for INTENT_LEASE is dropped (it was carried for five minutes, by any commit);
* the folder mounted again first settles the fate of the dead commit before it scans:
  it waits for a round of this machine's line that may be carrying it, and withdraws
  it from the store with a record that no carrier can build past.

Else the dead commit's old bytes landed later over a version written after the death
(another writer's, or the folder's own, edited and committed again): a failure turned
into a commit of superseded bytes. Real processes killed with SIGKILL at the exact
point (their intent written); the parent plays the other writers and the remount.
"""

from __future__ import annotations

import fcntl
import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jupyter_volume import Volume
from jupyter_volume.repository import CommitRecord, Repository
from jupyter_volume.repository.line import LocalLine, line_for
from jupyter_volume.store import Store

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from jupyter_volume import Volume
    from jupyter_volume.repository import Repository
    from jupyter_volume.store import open_store
    from jupyter_volume.testing.wrappers import WrappedStore

    url, mnt, how, cache = sys.argv[1:5]

    class LoseThenDie(WrappedStore):
        # how == "store": right before the mount's commit record, a writer elsewhere
        # takes the slot, so the mount publishes its change set as an intent on the
        # store; the process dies the moment that intent is there.
        armed = lost = False
        def put_if_absent(self, key, data):
            if self.armed and "/log/" in key:
                self.armed, self.lost = False, True
                rival = Repository(open_store(url), vol_id, cache_dir=Path(cache))
                w = rival.writer()
                rival.commit({"rival.txt": w.bytes_entry(b"rival")}, writer=w, line=False)
            return super().put_if_absent(key, data)
        def put(self, key, data):
            super().put(key, data)
            if self.lost and "/intents/" in key:
                os.kill(os.getpid(), signal.SIGKILL)

    store = LoseThenDie(open_store(url))
    vol = Volume.from_name("v", store=store)
    vol_id = vol.object_id
    m = vol.mount(mnt, background=False)
    print("mounted", flush=True)
    sys.stdin.readline()  # the parent changed the folder meanwhile
    store.armed = how == "store"
    m.commit()  # how == "line": the parent kills us while we wait in line
    print("not killed", flush=True)
    """
)


def fresh(store: Store, name: str = "v") -> Volume:
    """A new handle on volume ``name`` (it reads the newest commit, as another kernel
    would)."""
    return Volume.from_name(name, store=store)


def read(store: Store, path: str, name: str = "v") -> bytes | None:
    """What the newest commit of volume ``name`` holds at ``path`` (None: nothing)."""
    v = fresh(store, name)
    if path not in {e.path for e in v.listdir("/", recursive=True)}:
        return None
    return b"".join(v.read_file(path))


def elsewhere(store: Store, vol_id: str, cache: Path, files: dict[str, bytes]) -> CommitRecord:
    """A commit of ``files`` by a writer on another machine: a repository of its own (a
    new process's), the store's protocol only (no line of this machine)."""
    repo = Repository(store, vol_id, cache_dir=cache / uuid.uuid4().hex)
    w = repo.writer()
    rec, _ = repo.commit({p: w.bytes_entry(d) for p, d in files.items()}, writer=w, line=False)
    assert rec is not None
    return rec


def here(store: Store, vol_id: str, cache: Path, files: dict[str, bytes]) -> CommitRecord:
    """A commit of ``files`` by another writer on this machine (a new process's
    repository): through this machine's line."""
    repo = Repository(store, vol_id, cache_dir=cache / uuid.uuid4().hex)
    assert repo.line is not None
    w = repo.writer()
    rec, _ = repo.commit({p: w.bytes_entry(d) for p, d in files.items()}, writer=w)
    assert rec is not None
    return rec


def carried_txns(store: Store, vol_id: str) -> list[str]:
    """Every change set the log names as carried."""
    prefix = f"vols/{vol_id}/log/"
    recs = [CommitRecord.from_bytes(store.get(i.key), i.key) for i in store.list(prefix)]
    return [t for r in recs for t in r.extra.get("carried", [])]


def line_intents(line: LocalLine) -> list[str]:
    """The intents waiting in ``line``."""
    if not line.intents.exists():
        return []
    return [
        p.name
        for p in line.intents.iterdir()
        if not p.name.startswith(".") and not p.name.endswith(".seg")
    ]


class HeldLine:
    """The line's lock, held by the test as a leader busy with a round holds it: a
    writer that comes now puts its intent in line and waits."""

    def __init__(self, line: LocalLine) -> None:
        line._make()
        self.line = line
        self.fd: int | None = os.open(line.folder / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def someone_waits(self) -> bool:
        """True if some process (or thread) is blocked taking the lock (/proc/locks)."""
        ino = os.stat(self.line.folder / "lock").st_ino
        with open("/proc/locks") as f:
            for row in f:
                parts = row.split()
                if "->" in parts and parts[-3].rsplit(":", 1)[-1] == str(ino):
                    return True
        return False

    def release(self) -> None:
        """Let go of the lock (once)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def until(
    cond: Callable[[], bool], what: str, procs: list[subprocess.Popen[str]] | None = None
) -> None:
    """Wait until ``cond()``; fail if a child in ``procs`` ended first (or after 120 s)."""
    deadline = time.monotonic() + 120
    while not cond():
        for p in procs or []:
            if p.poll() is not None:
                out, err = p.communicate()
                pytest.fail(f"the child ended before {what}: {out} {err[-3000:]}")
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.02)


class Child:
    """A child process that mounts volume ``v`` at ``mnt`` and, told to, commits the
    folder (``how``: "line", the parent kills it as it waits in this machine's line;
    "store", it loses the log slot, and dies once its intent is on the store)."""

    def __init__(self, url: str, env: dict[str, str], mnt: Path, how: str, cache: Path) -> None:
        child_env = {**os.environ, **env}
        if how == "store":
            child_env["JUPYTER_VOLUME_LOCAL_LINE"] = "0"  # as if alone on its machine
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, url, str(mnt), how, str(cache)],
            env=child_env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if line != "mounted":
            self.kill()
            pytest.fail(f"the child did not mount: {line} {self.proc.communicate()}")

    def commit(self) -> None:
        """Tell it to commit what the folder holds now."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        """SIGKILL it (if it still runs) and wait for it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=60)

    def died_by_itself(self) -> None:
        """Wait for it to die of its own SIGKILL."""
        out, err = self.proc.communicate(timeout=120)
        assert self.proc.returncode == -signal.SIGKILL, (out, err[-3000:])


@pytest.fixture
def volume(opened: tuple[Any, str, dict[str, str]]) -> tuple[Store, str]:
    """Volume ``v`` holding ``f.txt`` = v0, on a fresh store of each kind: ``(store,
    volume id)``."""
    store = opened[0]
    vol = Volume.lookup("v", create_if_missing=True, store=store)
    with vol.batch_upload(force=True) as b:
        b.put_file(io.BytesIO(b"v0"), "f.txt")
    return store, vol.object_id


def waiting_in_line(
    opened: tuple[Any, str, dict[str, str]], vol_id: str, mnt: Path, tmp_path: Path
) -> tuple[HeldLine, Child, str]:
    """A child mount commits f.txt = v1 while this machine's line is busy (the test
    holds its lock, returned held): the child waits in line. Returns the held line, the
    child and its intent (its name in the line)."""
    store, url, env = opened
    line = line_for(store, vol_id)
    assert line is not None
    child = Child(url, env, mnt, "line", tmp_path / "child-cache")
    held = HeldLine(line)
    try:
        (mnt / "f.txt").write_bytes(b"v1 from the mount that dies")
        child.commit()
        until(lambda: bool(line_intents(line)), "its intent is in line", [child.proc])
        [name] = line_intents(line)
    except BaseException:
        child.kill()
        held.release()
        raise
    return held, child, name


def dead_on_the_store(url: str, env: dict[str, str], mnt: Path, tmp_path: Path) -> os.stat_result:
    """A child mount commits f.txt = v1, loses the log slot to a writer elsewhere and
    dies once its change set waits on the store as an intent. Returns f.txt's stat as
    the mount brought it, before the edit."""
    child = Child(url, env, mnt, "store", tmp_path / "child-cache")
    was = os.stat(mnt / "f.txt")
    try:
        (mnt / "f.txt").write_bytes(b"v1 from the mount that dies")
        child.commit()
        child.died_by_itself()
    finally:
        child.kill()
    return was


def in_sync(m: Any, mnt: Path, content: bytes) -> None:
    """After a reload, mount ``m``'s f.txt holds ``content`` and it is clean, not behind."""
    m.reload()
    assert (mnt / "f.txt").read_bytes() == content
    st = m.status()
    assert st.clean and st.behind == 0, st


def test_a_dead_writers_change_in_the_line_is_not_carried_over_a_later_version(
    opened: tuple[Any, str, dict[str, str]], volume: tuple[Store, str], tmp_path: Path
) -> None:
    """The mount dies waiting in this machine's line; a writer elsewhere then commits
    f.txt = v2; the next round of the line (another writer of this machine, of another
    file) carried the dead mount's v1 over v2."""
    store, vol_id = volume
    mnt = tmp_path / "mnt"
    held, child, dead = waiting_in_line(opened, vol_id, mnt, tmp_path)
    child.kill()  # SIGKILL: it is waiting for the lock, its intent in line
    try:
        elsewhere(store, vol_id, tmp_path, {"f.txt": b"v2 written after the death"})
    finally:
        held.release()
    here(store, vol_id, tmp_path, {"g.txt": b"another file"})  # leads the next round
    assert read(store, "f.txt") == b"v2 written after the death"
    assert read(store, "g.txt") == b"another file"
    txn = dead.split("-", 1)[1].split(".", 1)[0]
    assert txn not in carried_txns(store, vol_id)
    assert line_intents(held.line) == []  # dropped, not left behind


def test_a_remount_waits_for_the_round_carrying_its_dead_commit_before_it_scans(
    opened: tuple[Any, str, dict[str, str]], volume: tuple[Store, str], tmp_path: Path
) -> None:
    """A round of the line had read the mount's change set when the mount died, and
    lands it later. The folder, mounted again meanwhile, took v1 for a local change
    (nothing had landed yet), and once the round and then a writer elsewhere (v2) had
    committed, pushed v1 again over v2. The remount now waits for the round first, then
    recognises v1 as landed."""
    from test_group_commit import PausingStore

    store, vol_id = volume
    mnt = tmp_path / "mnt"
    held, child, _name = waiting_in_line(opened, vol_id, mnt, tmp_path)
    paused = PausingStore(store)
    leader = Repository(paused, vol_id, cache_dir=tmp_path / "leader")
    leader.head()
    slot = paused.pause("put_if_absent", f"vols/{vol_id}/log/")
    remounted: dict[str, Any] = {}
    threads: list[threading.Thread] = []

    def run(name: str, fn: Callable[[], Any]) -> None:
        def go() -> None:
            try:
                remounted[name] = fn()
            except BaseException as e:
                remounted[name + " error"] = e

        t = threading.Thread(target=go, daemon=True)
        t.start()
        threads.append(t)

    try:
        # A leader's round (we hold the lock: it is ours) reads the intent while its
        # writer lives...
        run("round", lambda: held.line._round(leader))
        slot.wait()  # ...and is about to write the record carrying it when the writer dies
        child.kill()
        run("mount", lambda: fresh(store).mount(mnt, background=False))
        until(held.someone_waits, "the remount waits for the line")
        slot.go()
        threads[0].join(60)
        assert "round error" not in remounted, remounted
        assert read(store, "f.txt") == b"v1 from the mount that dies"  # the round landed
        elsewhere(store, vol_id, tmp_path, {"f.txt": b"v2 written after it landed"})
    finally:
        child.kill()
        slot.go()
        held.release()
        for t in threads:
            t.join(120)
    assert "mount error" not in remounted, remounted
    m = remounted["mount"]
    try:
        assert read(store, "f.txt") == b"v2 written after it landed"
        assert (mnt / "f.txt").read_bytes() == b"v2 written after it landed"
        st = m.status()
        assert st.clean and st.behind == 0, st
    finally:
        m.unmount()


def test_a_remount_withdraws_its_dead_commit_from_the_store(
    opened: tuple[Any, str, dict[str, str]],
    volume: tuple[Store, str],
    tmp_path: Path,
) -> None:
    """The mount lost the log slot to a writer elsewhere and died once its change set
    (f.txt = v1) waited on the store as an intent. The user edits f.txt to v3 and
    mounts the folder again: v3 is committed. The next commit of anyone carried the
    dead v1 over v3. The remount now withdraws the intent before it scans."""
    store, vol_id = volume
    _store, url, env = opened
    mnt = tmp_path / "mnt"
    dead_on_the_store(url, env, mnt, tmp_path)
    prefix = f"vols/{vol_id}/intents/"
    [left] = [i.key for i in store.list(prefix)]  # its change set waits on the store
    txn = left.rsplit("/", 1)[-1].split("-", 1)[1].split(".", 1)[0]
    assert read(store, "rival.txt") == b"rival"
    (mnt / "f.txt").write_bytes(b"v3 written after the crash")

    m = fresh(store).mount(mnt, background=False)  # commits the folder's edit first
    try:
        assert read(store, "f.txt") == b"v3 written after the crash"
        elsewhere(store, vol_id, tmp_path, {"g.txt": b"the next commit"})
        assert read(store, "f.txt") == b"v3 written after the crash"
        assert txn not in carried_txns(store, vol_id)
        assert list(store.list(prefix)) == []
        in_sync(m, mnt, b"v3 written after the crash")
    finally:
        m.unmount()


def test_a_dead_writers_intent_left_unrenewed_on_the_store_is_not_carried(
    local_store: Store, tmp_path: Path
) -> None:
    """The mount died with its change set (f.txt = v1) waiting on the store, and its
    folder is not mounted again. Two minutes later (the intent's time set back: the
    local store keeps it in the file's mtime) a writer elsewhere commits f.txt = v2, and
    then another one commits g.txt: that commit carried the dead v1 over v2 (intents
    were carried for five minutes whether or not their writer lived)."""
    store = local_store
    vol = Volume.lookup("v", create_if_missing=True, store=store)
    with vol.batch_upload(force=True) as b:
        b.put_file(io.BytesIO(b"v0"), "f.txt")
    vol_id = vol.object_id
    mnt = tmp_path / "mnt"
    dead_on_the_store(store.url, {}, mnt, tmp_path)
    prefix = f"vols/{vol_id}/intents/"
    [left] = [i.key for i in store.list(prefix)]
    path = store._path(left)  # type: ignore[attr-defined]
    then = time.time() - 120
    os.utime(path, (then, then))

    elsewhere(store, vol_id, tmp_path, {"f.txt": b"v2 written after the death"})
    elsewhere(store, vol_id, tmp_path, {"g.txt": b"the next commit"})
    assert read(store, "f.txt") == b"v2 written after the death"
    assert list(store.list(prefix)) == []


def test_a_carrier_that_read_the_dead_commit_before_the_remount_cannot_land_it_after(
    opened: tuple[Any, str, dict[str, str]], volume: tuple[Store, str], tmp_path: Path
) -> None:
    """A writer elsewhere has read the dead mount's intent (f.txt = v1) and is about to
    write the record carrying it when the folder is mounted again, its f.txt put back
    as it was (v0, its old time: nothing to commit). Deleting the intent does not stop
    that writer: its record took the next slot and v1 landed after the remount had
    looked, over the folder's v0. The remount's record voiding the change set takes
    the slot first; the carrier, building again on it, leaves the change set out."""
    from test_group_commit import PausingStore

    store, vol_id = volume
    _store, url, env = opened
    mnt = tmp_path / "mnt"
    was = dead_on_the_store(url, env, mnt, tmp_path)
    prefix = f"vols/{vol_id}/"
    [left] = [i.key for i in store.list(prefix + "intents/")]
    txn = left.rsplit("/", 1)[-1].split("-", 1)[1].split(".", 1)[0]

    paused = PausingStore(store)
    carrier = Repository(paused, vol_id, cache_dir=tmp_path / "carrier")
    carrier.head()
    slot = paused.pause("put_if_absent", prefix + "log/")
    out: dict[str, Any] = {}

    def carry() -> None:
        try:
            w = carrier.writer()
            out["rec"] = carrier.commit({"g.txt": w.bytes_entry(b"g")}, writer=w, line=False)[0]
        except BaseException as e:
            out["error"] = e

    t = threading.Thread(target=carry, daemon=True)
    t.start()
    try:
        slot.wait()  # its record is built, the dead change set in it
        (mnt / "f.txt").write_bytes(b"v0")  # the folder as it was: nothing to commit
        os.utime(mnt / "f.txt", ns=(was.st_atime_ns, was.st_mtime_ns))
        m = fresh(store).mount(mnt, background=False)
    finally:
        slot.go()
        t.join(120)
    try:
        assert not t.is_alive() and "error" not in out, out
        assert out["rec"] is not None and txn not in out["rec"].extra.get("carried", [])
        assert txn not in carried_txns(store, vol_id)
        assert read(store, "f.txt") == b"v0"
        assert read(store, "g.txt") == b"g"
        in_sync(m, mnt, b"v0")
    finally:
        m.unmount()


def test_a_writer_waiting_on_the_store_renews_its_intent(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A live writer's intent stays carried however long it waits: it renews it (a
    touch of the object, every INTENT_RENEW: here at every look, so that the one look
    a lost race gives is enough to see it) until it lands, and nothing is left."""
    from test_group_commit import PausingStore, _in_thread

    from jupyter_volume.repository import repo as repo_mod

    monkeypatch.setattr(repo_mod, "INTENT_RENEW", 0.0)
    vol = Volume.lookup("w", create_if_missing=True, store=store)
    vid, prefix = vol.object_id, f"vols/{vol.object_id}/"

    class Touches(PausingStore):
        touched: list[str] = []

        def touch(self, key: str) -> None:
            super().touch(key)
            self.touched.append(key)

    watched = Touches(store)
    w_repo = Repository(watched, vid, cache_dir=tmp_path / "w")
    w_repo.head()
    writer = w_repo.writer()
    entry = writer.bytes_entry(b"W's change" * 100)
    slot = watched.pause("put_if_absent", prefix + "log/")
    t, out = _in_thread(lambda: w_repo.commit({"w.txt": entry}, writer=writer, line=False)[0])
    try:
        slot.wait()
        elsewhere(store, vid, tmp_path, {"c.txt": b"takes the slot W is about to claim"})
    finally:
        slot.go()
        t.join(120)
    assert not t.is_alive() and "error" not in out, out
    assert out["result"] is not None
    assert [k for k in watched.touched if "/intents/" in k], watched.touched
    assert read(store, "w.txt", name="w") == b"W's change" * 100
    assert list(store.list(prefix + "intents/")) == []
