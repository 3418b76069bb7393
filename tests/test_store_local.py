"""LocalStore: the conformance suite, plus crash safety of its writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from jupyter_volume.store import open_store
from jupyter_volume.store.local import TMP_PREFIX, LocalStore
from jupyter_volume.testing.store_tests import StoreTests


class TestLocalStore(StoreTests):
    race_rounds = 200

    @pytest.fixture
    def store(self, local_store: LocalStore) -> LocalStore:
        return local_store


def test_open_store_file_url(tmp_path: Path) -> None:
    store = open_store((tmp_path / "s").as_uri())
    assert isinstance(store, LocalStore)
    store.put("k", b"v")
    assert open_store(store.url).get("k") == b"v"


def test_list_stays_inside_the_root(tmp_path: Path) -> None:
    (tmp_path / "outside").write_bytes(b"not in the store")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "file").write_bytes(b"nor this")
    store = LocalStore(tmp_path / "store")
    store.put("inside", b"x")
    for prefix in ("../", "../o", "../dir/", "x/../../", "./"):
        assert list(store.list(prefix)) == [], prefix


# A child that writes one big object and dies in the middle of it: ``os.write`` is
# wrapped so that, after the first chunk reached the temporary file, the child either
# exits on the spot (os._exit) or tells the parent and waits to be SIGKILLed.
CHILD = textwrap.dedent(
    """
    import os, sys, time
    from jupyter_volume.store.local import LocalStore

    root, mode = sys.argv[1], sys.argv[2]
    store = LocalStore(root)
    real_write = os.write

    def dying_write(fd, data):
        n = real_write(fd, bytes(memoryview(data)[: 1 << 20]))
        if mode == "exit":
            os._exit(17)
        sys.stdout.write("writing\\n")
        sys.stdout.flush()
        time.sleep(60)
        return n

    os.write = dying_write
    store.put("objs/victim", b"x" * (8 << 20))
    sys.stdout.write("finished\\n")
    """
)


@pytest.mark.parametrize("mode", ["exit", "sigkill"])
def test_put_interrupted_by_crash(tmp_path: Path, mode: str) -> None:
    root = tmp_path / "store"
    store = LocalStore(root)
    store.put("objs/other", b"kept")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        if mode == "exit":
            assert child.wait(timeout=60) == 17
        else:
            assert child.stdout is not None
            assert child.stdout.readline() == "writing\n"
            os.kill(child.pid, signal.SIGKILL)
            assert child.wait(timeout=60) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()

    # no object under the final key, only a temporary file that listing ignores
    assert not store.exists("objs/victim")
    assert not (root / "objs" / "victim").exists()
    leftovers = [p.name for p in (root / "objs").iterdir() if p.name.startswith(TMP_PREFIX)]
    assert len(leftovers) == 1
    assert (root / "objs" / leftovers[0]).stat().st_size == 1 << 20
    assert [o.key for o in store.list()] == ["objs/other"]
    assert [p.name for p in store.temp_files(time.time() + 60)] == leftovers
    # the key is still free for a create-only put
    assert store.put_if_absent("objs/victim", b"second try")
    assert store.get("objs/victim") == b"second try"


# Children that increment one counter with put_if_match loops while every os.replace
# first sleeps: that widens the window between a conditional write's check and its
# replace from microseconds to 20 ms, so a compare-and-swap that did not hold between
# processes would lose increments in nearly every round.
SLOW_CAS_CHILD = textwrap.dedent(
    """
    import os, sys, time
    from jupyter_volume.store.local import LocalStore

    real_replace = os.replace

    def slow_replace(src, dst):
        time.sleep(0.02)
        real_replace(src, dst)

    os.replace = slow_replace
    store = LocalStore(sys.argv[1], fsync=False)
    for _ in range(int(sys.argv[2])):
        while True:
            data, token = store.get_versioned("counter")
            if store.put_if_match("counter", str(int(data) + 1).encode(), token):
                break
    """
)


def test_put_if_match_holds_across_processes_with_a_slow_replace(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put("counter", b"0")
    children = [
        subprocess.Popen([sys.executable, "-c", SLOW_CAS_CHILD, str(store.root), "10"])
        for _ in range(4)
    ]
    try:
        assert [c.wait(timeout=300) for c in children] == [0, 0, 0, 0]
    finally:
        for c in children:
            if c.poll() is None:
                c.kill()
                c.wait()
    assert store.get("counter") == b"40"
    # the sidecar lock file stays hidden, and goes with the object
    assert [o.key for o in store.list()] == ["counter"]
    store.delete(["counter"])
    assert list((tmp_path / "store").iterdir()) == []


def test_put_waits_for_a_conditional_write_in_progress(tmp_path: Path) -> None:
    # A plain put of a key that has a lock file takes the lock: while another process
    # holds it (between check and replace), the put cannot land.
    import fcntl

    store = LocalStore(tmp_path / "store")
    store.put("k", b"v1")
    _, token = store.get_versioned("k")
    assert store.put_if_match("k", b"v2", token)  # creates the sidecar lock file
    lock = store._lock_path(store.root / "k")
    fd = os.open(lock, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from jupyter_volume.store.local import LocalStore; "
            "s = LocalStore(sys.argv[1]); print('putting', flush=True); "
            "s.put('k', b'from child'); print('done')",
            str(store.root),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "putting\n"
        # blocked on our lock; a put that ignored it would be done long before this
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(timeout=2)
        assert store.get("k") == b"v2"
        os.close(fd)  # release: the put goes through
        assert child.wait(timeout=60) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
    assert store.get("k") == b"from child"


def test_a_conditional_write_to_a_missing_key_leaves_nothing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    assert store.put_if_match("a/b/missing", b"x", "token") is None
    assert list((tmp_path / "store").iterdir()) == []  # no folder, no lock file


def test_a_conditional_delete_whose_folder_another_delete_removed_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes pop a Dict's last two entries: one deletes its object, the other
    deletes its own and removes the folder, now empty, before the first makes the
    folder's change durable. The first delete is done: it reported a store error
    (seen once in a CI run of test_dict_concurrency). The interleaving is made here by
    removing the folder just before that step: it cannot be caused on demand."""
    store = LocalStore(tmp_path / "store")
    token = store.put_if_absent_versioned("d/e/k", b"v")
    assert token is not None
    real = store._fsync_dir

    def folder_removed_first(path: Path) -> None:
        if path.name == "e":
            path.rmdir()  # what the other process's delete does once the folder is empty
        real(path)

    monkeypatch.setattr(store, "_fsync_dir", folder_removed_first)
    assert store.delete_if_match("d/e/k", token) is True
    assert not store.exists("d/e/k")


def test_wait_change_wakes_when_a_key_lands_in_the_folder(tmp_path: Path) -> None:
    # Group commit's next writer in line waits this way on a local store: it must wake
    # when a record is added, not sleep out its timeout (an hour here: only a wake ends
    # it before the join below gives up).
    import threading

    store = LocalStore(tmp_path / "s")
    store.put("v/log/0001", b"first")
    done = threading.Event()

    def wait() -> None:
        store.wait_change("v/log/", 3600.0)
        done.set()

    t = threading.Thread(target=wait, daemon=True)
    t.start()
    # Keys keep landing until it wakes (one that lands before its watch exists is not
    # seen: the caller looks at the log itself before waiting).
    for i in range(120):
        assert store.put_if_absent(f"v/log/{i + 2:04d}", b"next")
        if done.wait(0.5):
            break
    assert done.is_set()
    # A folder that does not exist yet, or a store that cannot watch: a plain sleep.
    t0 = time.monotonic()
    store.wait_change("nothing/here/", 0.05)
    assert time.monotonic() - t0 >= 0.05


def test_head_finds_records_added_by_others_on_a_local_store(tmp_path: Path) -> None:
    # On a local store the head is found by looking at the next log keys one by one
    # (cheap_stat) instead of listing the log: records another process adds are seen.
    import uuid

    from jupyter_volume.repository import Repository

    store = LocalStore(tmp_path / "s")
    vol = uuid.uuid4().hex
    Repository.create(store, vol)
    a = Repository(store, vol, cache_dir=tmp_path / "a")
    b = Repository(store, vol, cache_dir=tmp_path / "b")
    assert store.cheap_stat and a.head().seq == 0
    for i in range(3):
        w = b.writer()
        b.commit({f"f{i}": w.bytes_entry(b"x" * 600)}, writer=w)
    assert a.head().seq == 3 == b.head().seq


def _watch_fsync(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """``(device, inode)`` of everything fsynced from now on, in order (the real fsync
    still runs): a power cut cannot be caused in a test, what reaches the disk can be
    watched."""
    synced: list[tuple[int, int]] = []
    real_fsync = os.fsync

    def watched_fsync(fd: int) -> None:
        st = os.fstat(fd)
        synced.append((st.st_dev, st.st_ino))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", watched_fsync)
    return synced


def test_put_makes_the_new_name_durable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A plain put (packs, index segments) renamed its fsynced temp file into place but
    # never fsynced the folder, nor the folders it made: after a power cut the object
    # could be gone while a commit record written (and fsynced) after it survived. A
    # power cut cannot be caused in a test, so this watches os.fsync (the real one
    # still runs) and checks which files and folders reached the disk.
    store = LocalStore(tmp_path / "s")
    store.put("old/x", b"1")
    synced = _watch_fsync(monkeypatch)

    def ident(p: Path) -> tuple[int, int]:
        st = p.stat()
        return st.st_dev, st.st_ino

    store.put("a/b/obj", b"data")
    root = store.root
    assert ident(root / "a" / "b" / "obj") in synced  # the data
    assert ident(root / "a" / "b") in synced  # its name
    assert ident(root / "a") in synced and ident(root) in synced  # the folders made
    synced.clear()
    store.put("old/y", b"2")  # into a folder that exists
    assert ident(root / "old") in synced and ident(root / "old" / "y") in synced
    synced.clear()
    assert store.put_if_absent("c/rec", b"r")
    assert {ident(root / "c"), ident(root), ident(root / "c" / "rec")} <= set(synced)


def test_delete_makes_the_removal_durable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A plain delete unlinked the object and never fsynced its folder: after a power cut
    # the object could come back (a deleted Dict entry, the old name of a renamed
    # volume). As above, os.fsync is watched (the real one still runs): each folder a
    # key left is fsynced, once per call, before empty folders are pruned.
    store = LocalStore(tmp_path / "s")
    for k in ("d/x", "d/y", "e/z", "keep/k"):
        store.put(k, b"1")
    root = store.root
    folders = {n: (os.stat(root / n).st_dev, os.stat(root / n).st_ino) for n in ("d", "keep")}
    synced = _watch_fsync(monkeypatch)
    store.delete(["d/x", "d/y", "missing/key"])
    assert synced == [folders["d"]]  # once for both keys; nothing for a key not there
    synced.clear()
    store.delete(["e/z"])  # its folder is emptied and pruned: no error
    assert not (root / "e").exists() and store.get("keep/k") == b"1"


def test_store_folder_that_is_a_file(tmp_path: Path) -> None:
    from jupyter_volume.errors import StoreError

    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(StoreError, match="is a file, not a folder"):
        LocalStore(tmp_path / "f")
    with pytest.raises(StoreError, match="cannot create the store folder"):
        open_store(str(tmp_path / "f" / "sub"))


# A child whose files may not grow past 1 MiB (RLIMIT_FSIZE: writes past it fail with
# EFBIG, as they fail with ENOSPC on a full disk) tries every kind of write of 2 MiB.
FULL_DISK_CHILD = textwrap.dedent(
    """
    import os, resource, signal, sys
    from jupyter_volume.errors import StoreError
    from jupyter_volume.store.local import LocalStore

    store = LocalStore(sys.argv[1])
    _, token = store.get_versioned("objs/old")
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    big = b"y" * (2 << 20)
    for name, call in [
        ("put new", lambda: store.put("objs/new", big)),
        ("put over", lambda: store.put("objs/old", big)),
        ("put_if_absent", lambda: store.put_if_absent("objs/created", big)),
        ("put_if_match", lambda: store.put_if_match("objs/old", big, token)),
        ("put in a new folder", lambda: store.put("fresh/sub/k", big)),
    ]:
        try:
            call()
        except StoreError as e:
            assert "objs/" in str(e) or "fresh/" in str(e), e
            continue
        sys.exit(f"{name} did not fail")
    print("all failed")
    """
)


def test_writes_that_fail_for_space_leave_nothing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    store.put("objs/old", b"old version")
    _, token = store.get_versioned("objs/old")
    assert store.put_if_match("objs/old", b"old version", token)  # makes its lock file
    out = subprocess.run(
        [sys.executable, "-c", FULL_DISK_CHILD, str(store.root)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and out.stdout == "all failed\n", out.stderr
    assert store.get("objs/old") == b"old version"
    assert [o.key for o in store.list()] == ["objs/old"]
    names = sorted(p.name for p in (store.root / "objs").iterdir())
    assert names == [f"{TMP_PREFIX}lock-old", "old"]  # no temp file left behind
    assert list(store.temp_files(time.time() + 60)) == []
    assert store.put_if_absent("objs/created", b"fits")  # the keys are free
