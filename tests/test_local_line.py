"""Writers of one volume on one machine line up locally (repository/line.py): many
writers lose nothing and share records, a leader killed at any point of its round
leaves each change landed once or not at all, and a writer that gives up takes its
change back. Real processes, a real SeaweedFS, the line folder of the test.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_group_commit import (
    BASE,
    MINE,
    MINE_COMMIT,
    ROUNDS,
    WRITER_CHILD,
    WRITERS,
    _files,
    _records,
    check_writers,
    collect,
    dead_data,
)

from jupyter_volume.repository import Repository
from jupyter_volume.repository.line import LocalLine, line_for
from jupyter_volume.store import Store, open_store
from jupyter_volume.testing.seaweedfs import SeaweedFS
from jupyter_volume.testing.wrappers import KILL_EXIT_CODE, CountingStore

pytestmark = pytest.mark.slow  # long in all: started first (conftest)


@pytest.fixture
def s3_opened(
    seaweedfs: SeaweedFS, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Store, str]:
    """``(store, url)`` of a fresh prefix on the session's SeaweedFS, openable by children."""
    for k, v in seaweedfs.env().items():
        monkeypatch.setenv(k, v)
    url = f"s3://{s3_bucket}/line-{uuid.uuid4().hex[:12]}?endpoint_url={seaweedfs.endpoint}"
    return open_store(url), url


def _leftovers(line: LocalLine) -> list[str]:
    """What a finished line must not hold: intents (or their segments) and a batch."""
    out = [p.name for p in line.intents.iterdir()] if line.intents.exists() else []
    return out + (["batch"] if (line.folder / "batch").exists() else [])


class _HeldLock:
    """The line's lock, held by the test as if a leader were busy with a round: writers
    that come now publish their intents and wait (the line's slow path, for certain)."""

    def __init__(self, line: LocalLine) -> None:
        line._make()
        self.line = line
        self.fd: int | None = os.open(line.folder / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def wait_for_intents(self, n: int, procs: list[subprocess.Popen[str]]) -> None:
        """Until ``n`` intents are in line, or one of ``procs`` has ended."""
        deadline = time.monotonic() + 120
        while len(_intents(self.line)) < n and all(p.poll() is None for p in procs):
            assert time.monotonic() < deadline, _intents(self.line)
            time.sleep(0.02)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _volume_with_busy_line(store: Store) -> tuple[str, LocalLine, _HeldLock]:
    """A new volume, and its line's lock held by the test."""
    vol_id = uuid.uuid4().hex
    Repository.create(store, vol_id)
    line = line_for(store, vol_id)
    assert line is not None
    return vol_id, line, _HeldLock(line)


def _intents(line: LocalLine) -> list[str]:
    return [
        p.name
        for p in line.intents.iterdir()
        if not p.name.startswith(".") and not p.name.endswith(".seg")
    ]


def _child(script: str, *args: str) -> subprocess.Popen[str]:
    """A Python child running ``script`` with ``args``, its output captured as text."""
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_16_writers_on_one_machine_share_records_and_lose_nothing(
    s3_opened: tuple[Store, str], tmp_path: Path
) -> None:
    store, url = s3_opened
    vol_id, line, held = _volume_with_busy_line(store)
    sync = tmp_path / "sync"
    sync.mkdir()
    procs = [
        _child(
            WRITER_CHILD,  # the group-commit test's writer, its barrier of one: none
            url,
            vol_id,
            f"{i:02d}",
            "1",
            str(sync),
            str(ROUNDS),
            str(tmp_path / f"cache-{i}"),
        )
        for i in range(WRITERS)
    ]
    try:
        held.wait_for_intents(WRITERS, procs)  # every first commit is in line
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
    except BaseException:
        for proc in procs:
            proc.kill()
            proc.wait()
        raise
    finally:
        held.release()
    records = check_writers(store, vol_id, collect(procs), tmp_path / "reader-cache")
    # All 16 first commits waited in line: the next round's record carried them all
    # (the writers never met on the store: no intents there).
    assert records[1].extra.get("line") is True
    assert len(records[1].extra["carried"]) == WRITERS
    assert _leftovers(line) == []
    assert list(line.done.iterdir()) == []  # every writer collected its answer


KILL_CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from blake3 import blake3
    from jupyter_volume.repository import Repository
    from jupyter_volume.store import open_store
    from jupyter_volume.testing.wrappers import KillAfterStore

    url, vol_id, k, cache = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    store = KillAfterStore(open_store(url), k or None)
    repo = Repository(store, vol_id, cache_dir=Path(cache))
    repo.head()
    repo.gc_grace()  # read now, not at a moment of the keeper thread's own (or never)
    store.ops = 0  # count from the commit
    MINE_COMMIT
    print(json.dumps({"ops": store.ops, "seq": rec.seq}))
    """
).replace("MINE_COMMIT", MINE_COMMIT)


def test_leader_killed_at_any_point_of_its_round_lands_the_change_once_or_not_at_all(
    s3_opened: tuple[Store, str], tmp_path: Path
) -> None:
    store, url = s3_opened

    def base_volume() -> str:
        vid = uuid.uuid4().hex
        Repository.create(store, vid)
        repo = Repository(store, vid, cache_dir=tmp_path / f"base-{vid}")
        w = repo.writer()
        repo.commit({p: w.bytes_entry(d) for p, d in BASE.items()}, writer=w, message="base")
        return vid

    def run(vid: str, k: int) -> subprocess.CompletedProcess[str]:
        # The lock is busy until the child's change is in line: it then leads a round
        # of the line (alone, it would commit directly, without one).
        line = line_for(store, vid)
        assert line is not None
        held = _HeldLock(line)
        proc = _child(KILL_CHILD, url, vid, str(k), str(tmp_path / "c"))
        try:
            held.wait_for_intents(1, [proc])  # (or killed before its change was in line)
        finally:
            held.release()
        out, err = proc.communicate(timeout=120)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    full = run(base_volume(), 0)
    assert full.returncode == 0, full.stderr[-3000:]
    ops = json.loads(full.stdout.strip().splitlines()[-1])["ops"]
    assert ops >= 3  # the pack, the index segment and the record at least

    after = {**BASE, **MINE}
    after.pop("base/deleted.bin")
    outcomes = {}
    for k in range(1, ops + 1):
        vid = base_volume()
        proc = run(vid, k)
        assert proc.returncode == KILL_EXIT_CODE, (k, proc.returncode, proc.stderr[-3000:])
        # The next writer on this machine commits: it leads the next round.
        repo = Repository(store, vid, cache_dir=tmp_path / f"next-{k}")
        assert repo.line is not None
        w = repo.writer()
        rec, _ = repo.commit({"next.txt": w.bytes_entry(b"next writer")}, writer=w, message="next")
        assert rec is not None
        # Its record is described by what it carries: a change that landed before the
        # round (the killed leader's) is neither its message nor counted in it.
        if len(rec.extra.get("carried", [])) <= 1:
            assert (rec.message, rec.kind) == ("next", "commit"), (k, rec.message, rec.extra)
        else:
            assert rec.message in ("mine (and 1 more)", "next (and 1 more)"), (k, rec.message)
        files = _files(repo)
        assert files.pop("next.txt") == b"next writer"
        assert files in (BASE, after), (k, sorted(files))
        outcomes[k] = files == after
        # never twice: no change set is named by two records
        recs = [r for r in _records(store, vid) if r.seq > 1]  # after the base
        # (a record's own txn is a change set too, unless it is a round of the line)
        txns = [t for r in recs for t in r.extra.get("carried", [])]
        txns += [r.txn for r in recs if not r.extra.get("line")]
        assert len(txns) == len(set(txns)), (k, txns)
        assert len(txns) == 1 + outcomes[k], (k, txns)  # the next writer's, and maybe ours
        assert repo.verify().ok, k
        assert _leftovers(repo.line) == [], k
    # Killed before its intent was in line (uploading its packs): none of it; after:
    # all of it, carried by the next writer or already landed.
    assert set(outcomes.values()) == {True, False}
    assert outcomes[ops] is True


WAITER_CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from jupyter_volume.repository import Repository
    from jupyter_volume.store import open_store

    url, vol_id, cache = sys.argv[1:4]
    repo = Repository(open_store(url), vol_id, cache_dir=Path(cache))
    w = repo.writer()
    print("waiting", flush=True)
    repo.commit({"given-up.txt": w.bytes_entry(b"never mind")}, writer=w)
    """
)


def test_a_writer_that_gives_up_while_waiting_takes_its_change_back(
    s3_opened: tuple[Store, str], tmp_path: Path
) -> None:
    store, url = s3_opened
    vol_id, line, held = _volume_with_busy_line(store)  # a leader busy with its round
    proc = _child(WAITER_CHILD, url, vol_id, str(tmp_path / "c"))
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "waiting"
        held.wait_for_intents(1, [proc])
        time.sleep(0.2)  # now blocked on the lock
        proc.send_signal(signal.SIGINT)
        time.sleep(0.2)
        assert proc.poll() is None  # it takes its intent back under the lock: waits
    finally:
        held.release()  # the leader is done
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err, err[-2000:]
    assert _leftovers(line) == []
    # The next round does not commit what its writer gave up.
    repo = Repository(store, vol_id, cache_dir=tmp_path / "next")
    w = repo.writer()
    repo.commit({"next.txt": w.bytes_entry(b"next")}, writer=w)
    assert set(_files(repo)) == {"next.txt"}


def test_the_line_is_per_volume_and_can_be_switched_off(
    s3_opened: tuple[Store, str],
    local_store: Store,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    store, _url = s3_opened
    line = line_for(store, "v")
    assert line is not None and line.folder.parent == tmp_path / "lines"
    others = [line_for(store, "w"), line_for(local_store, "v")]
    assert all(o is not None and o.folder != line.folder for o in others)
    monkeypatch.setenv("JUPYTER_VOLUME_LOCAL_LINE", "0")
    assert line_for(store, "v") is None and line_for(local_store, "v") is None
    assert Repository(store, "v").line is None


def test_a_forked_child_does_not_keep_the_line_locked(
    s3_opened: tuple[Store, str], tmp_path: Path
) -> None:
    store, _url = s3_opened
    line = line_for(store, "v")
    assert line is not None
    line._make()
    fd = line._try_lock()
    assert fd is not None
    pid = os.fork()
    if pid == 0:  # the child: sleeps on, long after the parent lets go
        time.sleep(30)
        os._exit(0)
    try:
        line._unlock(fd)
        # free again once the child has run its fork handler, though it lives on
        deadline = time.monotonic() + 10
        while (again := line._try_lock()) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert again is not None
        line._unlock(again)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_a_lone_writer_commits_directly(s3_opened: tuple[Store, str], tmp_path: Path) -> None:
    store, _url = s3_opened
    vol_id = uuid.uuid4().hex
    Repository.create(store, vol_id)
    repo = Repository(store, vol_id, cache_dir=tmp_path / "c")
    assert repo.line is not None
    w = repo.writer()
    rec, _ = repo.commit({"alone.txt": w.bytes_entry(b"alone")}, writer=w, message="alone")
    # its own record, as without the line: no round, nothing left in the folder
    assert rec is not None and "line" not in rec.extra and "carried" not in rec.extra
    assert rec.message == "alone"
    assert _leftovers(repo.line) == [] and list(repo.line.done.iterdir()) == []


def test_a_rounds_index_segment_is_read_from_the_line_and_a_damaged_one_from_the_store(
    s3_opened: tuple[Store, str], tmp_path: Path
) -> None:
    store, _url = s3_opened
    vol_id = uuid.uuid4().hex
    Repository.create(store, vol_id)
    first = Repository(store, vol_id, cache_dir=tmp_path / "c1")
    w = first.writer()
    first.commit({"a.bin": w.bytes_entry(os.urandom(4096))}, writer=w)
    keys = first.head(refresh=True).index
    assert len(keys) == 1
    segment = first._fetch_index(keys[0], cache=False)
    line = first.line
    assert line is not None
    shared = line.segments / keys[0].rsplit("/", 1)[-1]

    def load(name: str) -> tuple[int, bool]:
        # a fresh writer's view: (index GETs it sent, whether it knows the chunk)
        counting = CountingStore(store)
        repo = Repository(counting, vol_id, cache_dir=tmp_path / name)
        assert repo.line is not None and repo.line.folder == line.folder
        counting.reset()
        repo.ensure_index()
        known = all(h in repo.index for h, _n in repo.lookup("a.bin").chunks)
        return sum("/index/" in o.key for o in counting.matching("get")), known

    line._make()
    shared.write_bytes(segment)  # as a round's leader leaves it for the others
    assert load("c2") == (0, True)
    shared.write_bytes(segment[:-1] + bytes([segment[-1] ^ 1]))  # damaged: not trusted
    assert load("c3") == (1, True)


def test_a_line_folder_that_is_not_ours_is_not_used(
    s3_opened: tuple[Store, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _url = s3_opened
    shared = tmp_path / "shared-lines"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)  # as if another user had made it, for everyone to write in
    monkeypatch.setenv("JUPYTER_VOLUME_LINE_DIR", str(shared))
    vol_id = uuid.uuid4().hex
    Repository.create(store, vol_id)
    repo = Repository(store, vol_id, cache_dir=tmp_path / "c")
    w = repo.writer()
    with pytest.warns(UserWarning, match="cannot line up"):
        rec, _ = repo.commit({"f.txt": w.bytes_entry(b"through the store")}, writer=w)
    assert rec is not None and "line" not in rec.extra
    assert list(shared.iterdir()) == []  # nothing written into it
    assert _files(repo) == {"f.txt": b"through the store"}


FAILING_CHILD = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from jupyter_volume.errors import StoreError
    from jupyter_volume.repository import Repository
    from jupyter_volume.store import open_store
    from jupyter_volume.testing.wrappers import WrappedStore

    url, vol_id, who, cache, flag = sys.argv[1:6]

    class FailFirstRecord(WrappedStore):
        # The first record write of any of these writers fails, as a store outage would.
        def put_if_absent(self, key, data):
            if "/log/" in key:
                try:
                    os.close(os.open(flag, os.O_CREAT | os.O_EXCL))
                except FileExistsError:
                    pass
                else:
                    raise StoreError("the store is down (injected)")
            return self.inner.put_if_absent(key, data)

    repo = Repository(FailFirstRecord(open_store(url)), vol_id, cache_dir=Path(cache))
    w = repo.writer()
    try:
        rec, _ = repo.commit({f"{who}.txt": w.bytes_entry(who.encode() * 1000)}, writer=w)
    except StoreError:
        print("failed")
    else:
        print("committed", rec.seq)
    """
)


def test_a_round_that_fails_commits_nothing_behind_its_callers_back(
    s3_opened: tuple[Store, str], tmp_path: Path
) -> None:
    # Two writers in line; whichever leads first has its record write fail: its caller
    # gets the error and its change is taken back; the other leads next and lands once.
    store, url = s3_opened
    vol_id, line, held = _volume_with_busy_line(store)
    flag = tmp_path / "failed-once"
    procs = [
        _child(FAILING_CHILD, url, vol_id, who, str(tmp_path / f"c-{who}"), str(flag))
        for who in ("a", "b")
    ]
    try:
        held.wait_for_intents(2, procs)
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
    finally:
        held.release()
    outs = {}
    for who, proc in zip(("a", "b"), procs, strict=True):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        outs[who] = out.split()
    assert sorted(o[0] for o in outs.values()) == ["committed", "failed"], outs
    winner = next(w for w, o in outs.items() if o[0] == "committed")
    repo = Repository(store, vol_id, cache_dir=tmp_path / "reader")
    assert _files(repo) == {f"{winner}.txt": winner.encode() * 1000}
    recs = [r for r in _records(store, vol_id) if r.seq > 0]
    txns = [t for r in recs for t in r.extra.get("carried", [])]
    txns += [r.txn for r in recs if not r.extra.get("line")]
    assert len(recs) == 1 and len(txns) == 1, [r.extra for r in recs]
    assert int(outs[winner][1]) == recs[0].seq
    assert _leftovers(line) == [] and repo.verify().ok


# -- gc racing a round ------------------------------------------------------------------------
def _every_file_reads_back(store: Store, name: str, expected: dict[str, bytes]) -> None:
    """gc with no grace deletes what it condemned; then every commit must still read."""
    from jupyter_volume import Volume

    Volume.from_name(name, store=store).gc(grace=0)
    fresh = Volume.from_name(name, store=store)
    report = fresh.verify()
    assert report.ok, report.errors
    for path, data in expected.items():
        assert b"".join(fresh.read_file(path)) == data
    for c in fresh.history():
        fresh.listdir("/", at=c.seq, recursive=True)


@pytest.mark.parametrize("other_file", [0, 3 << 20], ids=["pack-condemned", "pack-kept"])
def test_a_writer_that_waited_in_line_while_gc_found_its_reused_data_dead_stays_readable(
    store: Store, other_file: int
) -> None:
    """A writer deduplicates against data only expired history holds, and waits in line
    (the lock is busy); gc expires that history and condemns the data; the writer then
    leads the round that commits its own change set. The round committed it with no
    writer at hand, so nothing was copied out: the record named chunks no index lists
    ("missing from the volume's index") and the next gc deleted their pack."""
    import io
    import threading

    vol, x = dead_data(store, "gl", other_file)
    line = line_for(store, vol.object_id)
    assert line is not None
    held = _HeldLock(line)
    repo = Repository(store, vol.object_id)  # the writer's own (another process's) view
    repo.head()
    writer = repo.writer()
    entry = writer.file_entry(io.BytesIO(x))  # deduplicated: nothing new uploaded
    assert writer.packs.bytes_written == 0
    out: dict[str, Any] = {}

    def commit() -> None:
        try:
            out["rec"] = repo.commit({"x-again.bin": entry}, writer=writer, message="x again")[0]
        except BaseException as e:
            out["error"] = e

    t = threading.Thread(target=commit)
    t.start()
    try:
        held.wait_for_intents(1, [])
        vol.gc()  # expires the commit that had x, while the writer waits in line
    finally:
        held.release()
    t.join(60)
    assert not t.is_alive()
    assert "error" not in out, out
    assert out["rec"] is not None
    _every_file_reads_back(store, "gl", {"x-again.bin": x})


LINE_DEDUP_CHILD = textwrap.dedent(
    """
    import io, sys
    from jupyter_volume.repository import Repository
    from jupyter_volume.store import open_store
    url, vol_id, x_path = sys.argv[1:4]
    repo = Repository(open_store(url), vol_id)
    repo.head()
    w = repo.writer()
    entry = w.file_entry(io.BytesIO(open(x_path, "rb").read()))
    assert w.packs.bytes_written == 0, "x was to be deduplicated"
    rec, _ = repo.commit({"x-again.bin": entry}, writer=w, message="x again")
    print("committed", rec.seq, flush=True)
    """
)


def test_a_round_carrying_a_writer_whose_reused_data_gc_found_dead_loses_nothing(
    opened: tuple[Any, str, dict[str, str]], tmp_path: Path
) -> None:
    """Writer A (a process) deduplicates against data only expired history holds and
    waits in line; gc expires that history; writer B leads the next round, carrying A's
    change set. B had no way to copy A's reused data out (only A knew where it was), so
    the round's record named chunks no index lists, and the next gc deleted their pack.
    A is stopped while B leads, so that B, not A, is the one to carry it."""
    import threading

    store, url, _env = opened
    vol, x = dead_data(store, "gc2")
    line = line_for(store, vol.object_id)
    assert line is not None
    (tmp_path / "x").write_bytes(x)
    held = _HeldLock(line)
    a = _child(LINE_DEDUP_CHILD, url, vol.object_id, str(tmp_path / "x"))
    out: dict[str, Any] = {}
    try:
        held.wait_for_intents(1, [a])
        assert a.poll() is None, a.communicate()
        os.kill(a.pid, signal.SIGSTOP)  # A cannot take the lock before B does
        vol.gc()  # A's reused data is dead now (condemned, not deleted yet)
        b_repo = Repository(store, vol.object_id)

        def b_commit() -> None:
            try:
                w = b_repo.writer()
                e = w.bytes_entry(b"b" * 100)
                out["rec"] = b_repo.commit({"b.txt": e}, writer=w, message="b")[0]
            except BaseException as e:
                out["error"] = e

        t = threading.Thread(target=b_commit)
        t.start()
        held.wait_for_intents(2, [a])
    finally:
        held.release()
    t.join(60)
    assert not t.is_alive() and "error" not in out, out
    os.kill(a.pid, signal.SIGCONT)
    a_out, a_err = a.communicate(timeout=120)
    assert a.returncode == 0, a_err[-3000:]
    assert a_out.split()[0] == "committed"
    _every_file_reads_back(store, "gc2", {"x-again.bin": x, "b.txt": b"b" * 100})


LINE_SUSPENDED_CHILD = textwrap.dedent(
    """
    import io, os, sys
    from jupyter_volume.errors import ConflictError
    from jupyter_volume.repository import Repository
    from jupyter_volume.store import open_store
    url, vol_id = sys.argv[1:3]
    repo = Repository(open_store(url), vol_id)
    w = repo.writer()
    entry = w.file_entry(io.BytesIO(os.urandom(3 << 20)))  # a pack no record names yet
    try:
        rec, _ = repo.commit({"late.bin": entry}, writer=w, message="late")
        print("committed", rec.seq, flush=True)
    except ConflictError as e:
        print("refused:", e, flush=True)
    """
)


def test_a_writer_suspended_in_line_past_the_grace_period_refuses_its_own_round(
    opened: tuple[Any, str, dict[str, str]],
) -> None:
    """A writer waits in line (the lock is busy) and is suspended (SIGSTOP, a laptop's
    sleep) past the grace period; gc deletes its pack as an orphan. Continued, it leads
    the next round, which commits its own change set with no writer of its own: nothing
    checked that the uploads were kept young, and the record named a deleted pack. The
    writer must refuse instead, leave nothing in line, and the volume must read."""
    from jupyter_volume import Volume

    store, url, _env = opened
    vol = Volume.lookup("suspended-in-line", create_if_missing=True, store=store)
    grace = 3.0
    vol.set_retention(grace=grace)
    line = line_for(store, vol.object_id)
    assert line is not None
    held = _HeldLock(line)
    child = _child(LINE_SUSPENDED_CHILD, url, vol.object_id)
    try:
        held.wait_for_intents(1, [child])
        assert child.poll() is None, child.communicate()
        os.kill(child.pid, signal.SIGSTOP)  # its keeper thread stops with it
        time.sleep(grace + 1.5)
        report = vol.gc()
        assert report.objects_deleted >= 1, report  # the suspended writer's pack
    finally:
        held.release()
        os.kill(child.pid, signal.SIGCONT)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err[-3000:]
    assert out.startswith("refused: this commit's data was uploaded"), out + err
    assert _leftovers(line) == []
    fresh = Volume.from_name("suspended-in-line", store=store)
    assert fresh.listdir("/") == []
    report = fresh.verify()
    assert report.ok, report.errors


def test_deleting_a_volume_removes_its_line_folder_and_no_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jupyter_volume import Volume

    lines = tmp_path / "lines-here"
    monkeypatch.setenv("JUPYTER_VOLUME_LINE_DIR", str(lines))
    url = (tmp_path / "store").as_uri()

    def commit_to(vol: Volume) -> Path:
        """Commit a file to ``vol`` as a mount does (through the line); its line folder."""
        repo = Repository(vol.store, vol._resolve().id, cache_dir=tmp_path / "cache")
        w = repo.writer()
        rec, _ = repo.commit({"f.txt": w.bytes_entry(b"x")}, writer=w)
        assert rec is not None  # a lone writer: under the line's lock, the usual way
        assert repo.line is not None and (repo.line.folder / "lock").exists()
        return repo.line.folder

    gone = commit_to(Volume.from_name("gone", create_if_missing=True, store=url))
    kept = commit_to(Volume.from_name("kept", create_if_missing=True, store=url))
    Volume.objects.delete("gone", store=url)
    assert not gone.exists()
    assert (kept / "lock").exists()
    with Volume.ephemeral(store=url) as eph:
        ephemeral = commit_to(eph)
    assert not ephemeral.exists()  # an ephemeral volume is deleted at the block's end
    assert [p.name for p in lines.iterdir()] == [kept.name]
