"""One shared Volume handle and one shared Mount, used from two threads at once.

The widget browser runs its actions on ipykernel 7's subshell thread while the user's
cell runs on the main thread, both on the same ``Volume`` (and ``Mount``) objects; the
background committer is one more thread on the same Mount. These tests drive real
threads against a real store (a local folder through ``file://``, and SeaweedFS) on one
shared handle and check what every user can rely on afterwards:

* no exception other than the documented ones (a reload's VolumeBusyError, a commit's
  "left for a later commit" warning);
* no lost update: every file either thread wrote and committed is in the volume at the
  end with its last bytes, and a thread that committed (or uploaded) reads its own write;
* no torn state: the history is one unbroken line of commits, no commit ever brings back
  older bytes of a path than an earlier commit had, every file holds its own path's
  bytes, the status of a mount is never "behind" or "deleted" when nothing was, and
  ``vol.listdir`` after all threads finish matches the folder, byte for byte.

Three tests force one interleaving with a hook (an Event in a library call), because the
window is too narrow to hit reliably by chance; the hook only holds a thread where the
scheduler could have held it. Every wait is bounded (a hang guard, never an assertion
on time).
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_volume import FileEntryType, Volume, VolumeBusyError
from jupyter_volume.repository.repo import Repository, Writer

pytestmark = pytest.mark.timeout(300)  # a hang guard only

JOIN = 120.0  # seconds a thread may take before the test calls it hung (hang guard)
SIZE = (
    64  # bytes of a small test file: all of one size, so only mtime and inode tell versions apart
)


@pytest.fixture
def vol(store_url_env: tuple[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> Volume:
    """A fresh volume on each store kind ("local": ``file://`` in tmp_path; "s3": SeaweedFS)."""
    url, env = store_url_env
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return Volume.from_name("shared", create_if_missing=True, store=url)


@pytest.fixture
def local_vol(tmp_path: Path) -> Volume:
    """A fresh volume on a local store (``file://`` in tmp_path)."""
    root = tmp_path / "local-store"
    root.mkdir()
    return Volume.from_name("shared", create_if_missing=True, store=root.as_uri())


# -- helpers ---------------------------------------------------------------------------------------
def blob(path: str, version: int, size: int = SIZE) -> bytes:
    """Version ``version`` of file ``path``: names both, padded to ``size`` bytes."""
    head = f"{path}|{version:06d}|".encode()
    return (head + b"." * size)[:size] if size >= len(head) else head


def parse(data: bytes) -> tuple[str, int]:
    """``(path, version)`` that :func:`blob` wrote into ``data``."""
    path, version, _rest = data.split(b"|", 2)
    return path.decode(), int(version)


def write_in_place(root: Path, rel: str, data: bytes) -> None:
    """Write as most programs do: open, write, close (same inode)."""
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "wb") as f:
        f.write(data)


def write_by_rename(root: Path, stage: Path, rel: str, data: bytes) -> None:
    """Write beside the folder and rename into it: no descriptor of ours is ever open
    under the mount, so any VolumeBusyError a reload raises is about someone else's."""
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = stage / f"{threading.get_ident()}-{rel.replace('/', '_')}"
    tmp.write_bytes(data)
    os.replace(tmp, p)


def read(vol: Volume, path: str, at: int | None = None) -> bytes:
    return b"".join(vol.read_file(path, at=at))


def run_threads(*targets: Callable[[], None]) -> None:
    """Run each target on its own thread at once; re-raise the first failure (after
    all ended). A thread still running after JOIN seconds fails the test (hang guard)."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(targets))

    def wrap(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                start.wait(JOIN)
                fn()
            except BaseException as e:  # noqa: BLE001 - re-raised in the test's thread
                errors.append(e)

        return run

    threads = [
        threading.Thread(target=wrap(fn), name=f"tsr-{i}", daemon=True)
        for i, fn in enumerate(targets)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN)
    assert not [t.name for t in threads if t.is_alive()], "a thread hung (see the hang guard)"
    if errors:
        raise errors[0]


def start_held(target: Callable[[], None], name: str, got: dict[str, Any]) -> threading.Thread:
    """Start ``target`` on a daemon thread named ``name`` (the name a forced interleaving's
    hook holds); what it raises is kept in ``got["error"]``."""

    def run() -> None:
        try:
            target()
        except BaseException as e:  # noqa: BLE001 - reported by the test
            got["error"] = e

    t = threading.Thread(target=run, name=name, daemon=True)
    t.start()
    return t


def folder_tree(root: Path) -> tuple[dict[str, bytes], set[str]]:
    """Files (path -> bytes) and folders of a mounted folder, as volume paths."""
    files: dict[str, bytes] = {}
    dirs: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        rel = "" if rel == "." else rel
        dirs.update(f"{rel}/{d}" if rel else d for d in dirnames)
        for name in filenames:
            p = f"{rel}/{name}" if rel else name
            files[p] = (Path(dirpath) / name).read_bytes()
    return files, dirs


def volume_tree(vol: Volume) -> tuple[dict[str, bytes], set[str]]:
    """Files (path -> bytes) and folders of the volume's head, read through the API."""
    files: dict[str, bytes] = {}
    dirs: set[str] = set()
    for e in vol.listdir("/", recursive=True):
        if e.type == FileEntryType.DIRECTORY:
            dirs.add(e.path)
        else:
            assert e.type == FileEntryType.FILE, e
            files[e.path] = read(vol, e.path)
    return files, dirs


def check_history(vol: Volume, returned: list[int]) -> dict[str, int]:
    """The history is one unbroken line (head, head-1, ..., 0) holding every commit a
    thread was handed, and, walked from the oldest, no commit puts older bytes at a
    path than the commit before had (a lost update published) nor another path's bytes
    (a torn one). Returns each path's last version."""
    seqs = [c.seq for c in vol.history()]
    assert seqs == list(range(seqs[0], -1, -1)), f"history is not one line of commits: {seqs}"
    missing = set(returned) - set(seqs)
    assert not missing, f"commits returned to a thread are not in the history: {missing}"
    last: dict[str, int] = {}
    for seq in range(1, seqs[0] + 1):
        for d in vol.diff(seq - 1, seq):
            if d.type != FileEntryType.FILE:
                continue
            if d.change == "deleted":
                continue  # versions keep growing: a path deleted never comes back here
            path, version = parse(read(vol, d.path, at=seq))
            assert path == d.path, f"commit {seq}: {d.path} holds the bytes of {path}"
            assert version >= last.get(d.path, -1), (
                f"commit {seq} put version {version} of {d.path} back over version "
                f"{last[d.path]} (an older write published after a newer one)"
            )
            last[d.path] = version
    return last


def check_folder_matches_volume(vol: Volume, root: Path) -> dict[str, bytes]:
    """After every thread ended, the folder and ``vol.listdir`` agree, byte for byte."""
    local_files, local_dirs = folder_tree(root)
    remote_files, remote_dirs = volume_tree(vol)
    assert sorted(local_files) == sorted(remote_files)
    assert {p for p in local_files if local_files[p] != remote_files[p]} == set()
    assert local_dirs == remote_dirs
    return remote_files


@pytest.fixture
def quiet_warnings() -> Iterator[None]:
    """Commits and reloads may warn (files left for a later commit, local changes kept):
    documented, and not what these tests look at."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# -- two threads, one Mount -------------------------------------------------------------------
def test_two_threads_commit_one_mount(vol: Volume, tmp_path: Path, quiet_warnings: None) -> None:
    """Both threads write their own files in place (edits, new files, deletions) and
    call ``commit()`` on the one Mount, then read back through the one Volume.

    Catches: commits of one Mount not serialized (two scans taking the same journal
    entries, one commit's index rows overwritten by another's older scan: an edit that
    is never committed, or committed and then undone), a path the journal handed to one
    commit lost when the other requeues, a commit's rows or base moved under a running
    commit (the folder later reported behind, or changes reported that were committed).
    """
    root = tmp_path / "mnt"
    m = vol.mount(root, background=False, settle=0.05, settle_max_wait=10.0)
    rounds = 16
    returned: list[int] = []
    final: dict[str, bytes] = {}
    lock = threading.Lock()

    def writer(k: int) -> None:
        for i in range(rounds):
            edited = f"t{k}/f{i % 3}.txt"
            new, gone = f"t{k}/n{i}.txt", f"t{k}/n{i - 3}.txt"
            write_in_place(root, edited, blob(edited, i))
            write_in_place(root, new, blob(new, i))
            if i >= 3:
                os.unlink(root / gone)
            info = m.commit()
            if info is not None:
                with lock:
                    returned.append(info.seq)
            # Read our own write back through the shared handle: this commit or the
            # other thread's (which may have taken our files) published it.
            assert read(vol, edited) == blob(edited, i)
            assert read(vol, new) == blob(new, i)
            names = {e.path for e in vol.listdir(f"t{k}")}
            assert new in names
            assert gone not in names or i < 3
        with lock:
            for j in range(3):
                last = max(i for i in range(rounds) if i % 3 == j)
                final[f"t{k}/f{j}.txt"] = blob(f"t{k}/f{j}.txt", last)

    run_threads(lambda: writer(0), lambda: writer(1))
    assert m.commit() is None  # each thread's last commit took everything
    files = check_folder_matches_volume(vol, root)
    for k in (0, 1):
        expected_new = {f"t{k}/n{i}.txt" for i in range(rounds - 3, rounds)}
        assert {p for p in files if p.startswith(f"t{k}/n")} == expected_new
    assert {p: files[p] for p in final} == final
    check_history(vol, returned)
    st = m.status()
    assert st.clean and st.behind == 0 and not st.deferred, st


def test_commit_loop_against_writes_reload_and_api_calls(
    vol: Volume, tmp_path: Path, quiet_warnings: None
) -> None:
    """Thread A commits the Mount in a loop (``mount.commit()`` and ``vol.commit()``)
    while thread B writes files into the folder and calls ``mount.commit()``,
    ``mount.reload()``, ``vol.listdir()``, ``vol.read_file()`` and ``vol.batch_upload()``
    on the same objects.

    Catches: commits of the Mount not serialized with each other or with a reload's own
    commit (B then cannot read back what it just committed, or a file is lost from both
    the folder and the volume); a reload that replaces or removes B's newer local bytes;
    the mount publishing a stale copy of what B uploaded through the handle (``api/``:
    a version going back in the history); the folder and the volume disagreeing at the
    end; any exception but a reload's documented VolumeBusyError (which a reload raises
    now and then here for a file the mount's own commit has open; see
    test_reload_is_not_refused_for_the_mounts_own_open_files), so it is retried.
    """
    root = tmp_path / "mnt"
    stage = tmp_path / "stage"
    stage.mkdir()
    m = vol.mount(root, background=False, settle=0.0, settle_max_wait=0.5)
    rounds = 40
    done = threading.Event()
    returned: list[int] = []
    busy: list[str] = []
    lock = threading.Lock()

    def committed(info: Any) -> None:
        if info is not None:
            with lock:
                returned.append(info.seq)

    def committer() -> None:
        n = 0
        try:
            while not done.is_set() or n < 2:
                committed(m.commit() if n % 2 else vol.commit())
                n += 1
        finally:
            done.set()

    def reload() -> None:
        for _ in range(50):
            try:
                m.reload()
                return
            except VolumeBusyError as e:  # documented; see the test named above
                busy.append(str(e))
        raise AssertionError(f"reload refused 50 times in a row: {busy[-1]}")

    def worker() -> None:
        try:
            for i in range(rounds):
                small = f"b/f{i % 3}.txt"
                write_by_rename(root, stage, small, blob(small, i))
                if i % 4 == 0:  # one file over 32 KiB: read as a stream, not in one read
                    write_by_rename(root, stage, "b/big.bin", blob("b/big.bin", i, 200_000))
                step = i % 4
                if step == 1:
                    committed(m.commit())
                    assert read(vol, small) == blob(small, i)
                elif step in (0, 2):
                    reload()
                    # a reload never replaces (or removes) a newer local write
                    assert (root / small).read_bytes() == blob(small, i)
                elif step == 3:
                    up = f"api/u{i % 3}.txt"
                    with vol.batch_upload(force=True) as batch:
                        batch.put_file(io.BytesIO(blob(up, i)), up)
                    committed(batch.commit_info)
                    assert read(vol, up) == blob(up, i)
                # whatever the head is now, each file in it holds its own bytes
                if "b" in {e.path for e in vol.listdir("/")}:
                    for e in vol.listdir("b"):
                        if e.type == FileEntryType.FILE:
                            assert parse(read(vol, e.path))[0] == e.path
        finally:
            done.set()

    run_threads(committer, worker)
    committed(m.commit())
    m.reload()
    files = check_folder_matches_volume(vol, root)
    last = check_history(vol, returned)
    for i in range(rounds - 3, rounds):
        assert files[f"b/f{i % 3}.txt"] == blob(f"b/f{i % 3}.txt", i)
    assert files["b/big.bin"] == blob("b/big.bin", max(range(0, rounds, 4)), 200_000)
    uploads = {i % 3: i for i in range(rounds) if i % 4 == 3}
    for j, i in uploads.items():
        assert files[f"api/u{j}.txt"] == blob(f"api/u{j}.txt", i)
        assert last[f"api/u{j}.txt"] == i
    st = m.status()
    assert st.clean and st.behind == 0, st


def test_commit_while_another_thread_calls_status(
    vol: Volume, tmp_path: Path, quiet_warnings: None
) -> None:
    """Thread A edits files and commits; thread B calls ``mount.status()`` on the same
    Mount all the while. Only A writes, and it never deletes, so every status must say
    "behind by 0" and "deleted: nothing", and may list only A's paths.

    Catches: a status taken halfway through a commit (the head already moved but the
    folder's base not yet: "behind by 1"; rows deleted but not yet written back: a file
    reported deleted), or a status scan and a commit stepping on each other's SQLite
    transaction (an exception, or the commit's rows lost: the end state not clean).
    """
    root = tmp_path / "mnt"
    m = vol.mount(root, background=False, settle=0.05, settle_max_wait=10.0)
    rounds = 16
    done = threading.Event()
    seen: list[Any] = []

    def committer() -> None:
        try:
            for i in range(rounds):
                for rel in (f"s/f{i % 3}.txt", f"s/n{i}.txt"):
                    write_in_place(root, rel, blob(rel, i))
                m.commit()
        finally:
            done.set()

    def watcher() -> None:
        while not done.is_set() or len(seen) < 2:
            st = m.status()
            seen.append(st)
            assert st.behind == 0, st
            assert st.deleted == [], st
            assert st.base_seq <= st.head_seq, st
            listed = [*st.added, *st.modified]
            assert len(listed) == len(set(listed)), st
            assert all(p == "s" or p.startswith("s/") for p in listed), st

    run_threads(committer, watcher)
    st = m.status()
    assert st.clean and st.behind == 0 and not st.deferred, st
    files = check_folder_matches_volume(vol, root)
    assert len(files) == 3 + rounds
    check_history(vol, [])


# -- forced interleavings ------------------------------------------------------------------------
class _LockSpy:
    """Stands in for a Mount's lock: tells when ``thread`` starts waiting for it."""

    def __init__(self, inner: Any, thread_name: str, waiting: threading.Event) -> None:
        self._inner = inner
        self._name = thread_name
        self._waiting = waiting

    def _note(self) -> None:
        if threading.current_thread().name == self._name:
            self._waiting.set()

    def __enter__(self) -> Any:
        self._note()
        return self._inner.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        return self._inner.__exit__(*exc)

    def acquire(self, *a: Any, **kw: Any) -> bool:
        self._note()
        return self._inner.acquire(*a, **kw)

    def release(self) -> None:
        self._inner.release()


def test_reload_is_not_refused_for_the_mounts_own_open_files(
    local_vol: Volume, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quiet_warnings: None
) -> None:
    """A commit of the Mount (the background committer, or the user's cell) reads a big
    file while another thread (the widget's "Reload mount") reloads the same Mount.
    The reload must wait for the commit, not fail with VolumeBusyError naming a file
    that nobody but the mount itself has open.

    Forced interleaving: the commit is held while it has the file open (inside the
    Writer's file_entry, where it hashes the file), until the reloading thread has either
    finished or started waiting for the mount's lock.

    Catches: a reload's busy check that counts the mount's own open files (a commit's
    reads, another reload's downloads) as the user's, when run on another thread.
    """
    root = tmp_path / "mnt"
    stage = tmp_path / "stage"
    stage.mkdir()
    m = local_vol.mount(root, background=False, settle=0.0, settle_max_wait=5.0)
    write_by_rename(root, stage, "big.bin", blob("big.bin", 1, 300_000))  # > 32 KiB: streamed

    reading = threading.Event()  # the commit has big.bin open
    reload_progressed = threading.Event()  # the reload ended, or waits for the lock
    committer_name, reloader_name = "tsr-commit", "tsr-reload"
    original = Writer.file_entry

    def held_file_entry(self: Writer, *a: Any, **kw: Any) -> Any:
        if threading.current_thread().name == committer_name and not reading.is_set():
            reading.set()
            assert reload_progressed.wait(JOIN), "the reload neither ended nor waited (hang guard)"
        return original(self, *a, **kw)

    monkeypatch.setattr(Writer, "file_entry", held_file_entry)
    m._lock = _LockSpy(m._lock, reloader_name, reload_progressed)
    errors: dict[str, BaseException] = {}
    infos: list[Any] = []

    def commit() -> None:
        try:
            infos.append(m.commit())
        except BaseException as e:  # noqa: BLE001 - reported below
            errors["commit"] = e

    def reload() -> None:
        try:
            assert reading.wait(JOIN), "the commit never read big.bin (hang guard)"
            m.reload()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors["reload"] = e
        finally:
            reload_progressed.set()

    threads = [
        threading.Thread(target=commit, name=committer_name, daemon=True),
        threading.Thread(target=reload, name=reloader_name, daemon=True),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN)
    assert not any(t.is_alive() for t in threads), "a thread hung (hang guard)"
    assert "commit" not in errors, errors
    assert infos and infos[0] is not None
    assert "reload" not in errors, f"reload failed while a commit read a file: {errors['reload']!r}"
    assert read(local_vol, "big.bin") == blob("big.bin", 1, 300_000)


def test_open_names_the_commit_its_bytes_come_from(
    local_vol: Volume, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``vol.open(path).commit`` is "the commit every read of this file comes from".
    Thread R opens a file through the shared handle while the main thread commits a new
    version of it through the same handle (the widget uploading while a cell reads).

    Forced interleaving: R is held right after it read the head, while it looks the file
    up in that head's tree (where a tree fetch from S3 takes a while), until the other
    thread's commit has landed.

    Catches: the handle's one "newest commit read" attribute used as the reader's commit:
    the other thread's commit moves it, and the reader names that newer commit while its
    bytes come from the older one (reading again ``at=reader.commit`` gives other bytes).
    The same attribute answers ``vol.seq``.
    """
    vol = local_vol
    with vol.batch_upload() as batch:
        batch.put_file(io.BytesIO(blob("x.txt", 1)), "x.txt")
    first = batch.commit_info
    assert first is not None

    looking = threading.Event()  # R read the head and looks the path up in its tree
    landed = threading.Event()  # the other commit is in
    original = Repository.lookup

    def held_lookup(self: Repository, *a: Any, **kw: Any) -> Any:
        if threading.current_thread().name == "tsr-open" and not looking.is_set():
            looking.set()
            assert landed.wait(JOIN), "the other commit never landed (hang guard)"
        return original(self, *a, **kw)

    monkeypatch.setattr(Repository, "lookup", held_lookup)
    got: dict[str, Any] = {}

    def open_and_read() -> None:
        with vol.open("x.txt") as f:
            got["data"], got["commit"] = f.read(), f.commit

    t = start_held(open_and_read, "tsr-open", got)
    try:
        assert looking.wait(JOIN), "the reader never looked x.txt up (hang guard)"
        with vol.batch_upload(force=True) as batch:
            batch.put_file(io.BytesIO(blob("x.txt", 2)), "x.txt")
        second = batch.commit_info
    finally:
        landed.set()
    t.join(JOIN)
    assert not t.is_alive(), "the reader hung (hang guard)"
    assert "error" not in got, got
    assert second is not None and second.seq > first.seq
    assert got["data"] == blob("x.txt", 1)  # it read the head it saw: fine
    assert read(vol, "x.txt", at=got["commit"]) == got["data"], (
        f"the reader says its bytes come from commit {got['commit']}, "
        f"but they are commit {first.seq}'s"
    )


def test_the_head_never_goes_back_when_two_threads_read_it(
    local_vol: Volume, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Repository.head()`` on two threads of one process (one repository object per
    volume and store): the head this process knows only moves forward.

    Forced interleaving: thread H has found the newest commit (N) and is held before it
    records it, while the main thread commits N+1 and reads the head (N+1); then H goes on.

    Catches: H storing its older N over the newer N+1, so the next ``head(refresh=False)``
    (and everything that reads the cached head) goes back a commit.
    """
    vol = local_vol
    with vol.batch_upload() as batch:
        batch.put_file(io.BytesIO(blob("a.txt", 1)), "a.txt")
    repo = vol._repo
    found = threading.Event()  # H found the newest seq
    go = threading.Event()  # the main thread's newer head is in
    original = Repository._newest_seq

    def held_newest(self: Repository, start: int | None) -> int | None:
        newest = original(self, start)
        if threading.current_thread().name == "tsr-head" and not found.is_set():
            found.set()
            assert go.wait(JOIN), "the other commit never landed (hang guard)"
        return newest

    monkeypatch.setattr(Repository, "_newest_seq", held_newest)
    got: dict[str, Any] = {}

    def read_head() -> None:
        got["seq"] = repo.head().seq

    t = start_held(read_head, "tsr-head", got)
    try:
        assert found.wait(JOIN), "thread H never looked for the head (hang guard)"
        with vol.batch_upload(force=True) as batch:
            batch.put_file(io.BytesIO(blob("a.txt", 2)), "a.txt")
        newer = repo.head().seq
    finally:
        go.set()
    t.join(JOIN)
    assert not t.is_alive(), "thread H hung (hang guard)"
    assert "error" not in got, got
    assert got["seq"] in (newer - 1, newer)
    assert repo.head(refresh=False).seq == newer, "the head this process knows went back"
