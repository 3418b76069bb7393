"""Mounts: a volume in a local folder, commit/reload, background commits, many writers.

Every test runs on the local store and on SeaweedFS. Child processes are real Python
interpreters that open the same store by URL.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jupyter_volume import InvalidError, Volume, VolumeBusyError, VolumeError
from jupyter_volume.errors import AlreadyExistsError, NotFoundError, StoreError
from jupyter_volume.store import open_store
from jupyter_volume.testing.wrappers import CountingStore, WrappedStore

pytestmark = pytest.mark.slow  # long in all: started first (conftest)

try:
    from .children import as_nobody
except ImportError:  # tests/ is not a package
    from children import as_nobody  # type: ignore[no-redef]


@pytest.fixture
def vol(store_url_env: tuple[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> Volume:
    url, env = store_url_env
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return Volume.lookup("vol", create_if_missing=True, store=url)


@pytest.fixture
def child_env(store_url_env: tuple[str, dict[str, str]]) -> dict[str, str]:
    url, env = store_url_env
    return {**os.environ, **env, "JUPYTER_VOLUME_STORE": url, "PYTHONUNBUFFERED": "1"}


def py(code: str, env: dict[str, str], **kw) -> subprocess.Popen:
    """Start a child Python running ``code`` (dedented)."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def finish(p: subprocess.Popen, timeout: float = 300) -> str:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, f"child failed ({p.returncode}):\n{out}\n{err}"
    return out


def race_writers(
    script: str, args: Callable[[int], list[str]], env: dict[str, str], tmp: Path
) -> None:
    """Start 8 writer processes (``script`` with ``args(k)`` and a start-flag path last),
    let them all start, release them at once, and wait until each has succeeded."""
    go = tmp / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, *args(k), str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(8)
    ]
    time.sleep(2)
    go.write_text("go")
    for p in procs:
        finish(p, timeout=600)


def read(vol: Volume, path: str, at: int | None = None) -> bytes:
    return b"".join(vol.read_file(path, at=at))


# -- basics -----------------------------------------------------------------------------------


def test_mount_commit_reload_roundtrip(vol: Volume, tmp_path: Path) -> None:
    with vol.batch_upload() as b:
        b.put_file(io.BytesIO(b"hello"), "a.txt")
        b.put_file(io.BytesIO(os.urandom(300_000)), "d/big.bin")
    m = vol.mount(tmp_path / "mnt", background=False)
    assert (tmp_path / "mnt/a.txt").read_bytes() == b"hello"
    assert (tmp_path / "mnt/d/big.bin").read_bytes() == read(vol, "d/big.bin")
    # mount state lives outside the folder: it holds only the user's files
    assert sorted(p.name for p in (tmp_path / "mnt").iterdir()) == ["a.txt", "d"]

    (tmp_path / "mnt/new.txt").write_text("new")
    (tmp_path / "mnt/a.txt").write_text("changed")
    (tmp_path / "mnt/d/big.bin").unlink()
    (tmp_path / "mnt/empty").mkdir()
    os.symlink("a.txt", tmp_path / "mnt/link")
    (tmp_path / "mnt/run.sh").write_text("#!/bin/sh\n")
    os.chmod(tmp_path / "mnt/run.sh", 0o755)
    (tmp_path / "mnt/__pycache__").mkdir()
    (tmp_path / "mnt/__pycache__/x.pyc").write_bytes(b"ignored")
    (tmp_path / "mnt/notes.txt.swp").write_bytes(b"ignored")

    st = m.status()
    assert st.added == ["empty", "link", "new.txt", "run.sh"]
    assert st.modified == ["a.txt"]
    assert st.deleted == ["d/big.bin"]
    info = m.commit("my change")
    assert info is not None and info.message == "my change"
    assert (info.added, info.modified, info.deleted) == (3, 1, 1)
    assert m.status().clean and m.status().behind == 0
    assert m.commit() is None  # no change, no commit

    names = {e.path: e for e in vol.listdir("/", recursive=True)}
    assert "__pycache__" not in names and "notes.txt.swp" not in names
    assert names["empty"].type.name == "DIRECTORY"
    assert names["link"].type.name == "SYMLINK"
    assert read(vol, "a.txt") == b"changed"
    assert "d/big.bin" not in names

    # a second mount elsewhere sees all of it, links and modes intact
    other = Volume.from_name("vol", store=vol.store)
    m.unmount()
    m2 = other.mount(tmp_path / "mnt2", background=False)
    assert os.readlink(tmp_path / "mnt2/link") == "a.txt"
    assert os.stat(tmp_path / "mnt2/run.sh").st_mode & 0o111
    assert (tmp_path / "mnt2/empty").is_dir()
    assert (
        os.stat(tmp_path / "mnt2/a.txt").st_mtime_ns == os.stat(tmp_path / "mnt/a.txt").st_mtime_ns
    )
    m2.unmount()
    assert vol.verify().ok


def test_mount_refusals(vol: Volume, tmp_path: Path) -> None:
    with pytest.raises(InvalidError, match="root"):
        vol.mount("/")
    (tmp_path / "full").mkdir()
    (tmp_path / "full/x").write_text("x")
    with pytest.raises(InvalidError, match="not empty"):
        vol.mount(tmp_path / "full")
    m = vol.mount(tmp_path / "m1", background=False)
    with pytest.raises(AlreadyExistsError, match="already mounted"):
        Volume.from_name("vol", store=vol.store).mount(tmp_path / "m2")
    m.unmount()
    with pytest.raises(VolumeError, match="no longer mounted"):
        m.commit()


def test_default_path_is_cwd_name(
    vol: Volume, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with vol.mount(background=False) as m:
        assert m.path == tmp_path / "vol"


def test_volume_commit_and_reload_act_on_the_mount(vol: Volume, tmp_path: Path) -> None:
    m = vol.mount(tmp_path / "mnt", background=False)
    (tmp_path / "mnt/bar.txt").write_text("hello")
    info = vol.commit()  # Modal-style: the handle's commit commits the mount
    assert info is not None and read(vol, "bar.txt") == b"hello"
    writer = Volume.from_name("vol", store=vol.store)
    with writer.batch_upload() as b:
        b.put_file(io.BytesIO(b"from elsewhere"), "other.txt")
    assert m.status().behind == 1
    vol.reload()
    assert (tmp_path / "mnt/other.txt").read_text() == "from elsewhere"
    assert m.status().behind == 0
    m.unmount()
    # unmounted: commit does nothing, reload refreshes the head the reads see
    assert vol.commit() is None
    vol.reload()


def test_read_only_mount_refuses_commits(vol: Volume, tmp_path: Path) -> None:
    with vol.batch_upload() as b:
        b.put_file(io.BytesIO(b"model"), "w.bin")
    with vol.mount(tmp_path / "ro", read_only=True) as m:
        assert (tmp_path / "ro/w.bin").read_bytes() == b"model"
        with pytest.raises(InvalidError, match="read-only"):
            m.commit()


def test_a_read_only_reload_brings_back_the_volumes_version_of_local_changes(
    vol: Volume, tmp_path: Path
) -> None:
    """A read-only mount never commits, so a reload replaces its local edits and
    deletions (and a file's changed time) with the volume's version and names them; the
    user's own new files, and a folder holding such files, are left as they are."""
    import warnings

    with vol.batch_upload() as b:
        for name, data in {"f.txt": b"v1", "g.txt": b"g1", "h.txt": b"h", "d/x": b"x"}.items():
            b.put_file(io.BytesIO(data), name)
    ro = tmp_path / "ro"
    m = vol.mount(ro, read_only=True)
    (ro / "f.txt").write_text("scribble")  # an accidental edit
    (ro / "g.txt").unlink()  # and a deletion
    os.utime(ro / "h.txt", (1, 1))  # touched
    (ro / "mine.txt").write_text("my notes")  # the user's own
    (ro / "d/mine.txt").write_text("mine too")
    with Volume.from_name("vol", store=vol.store).batch_upload(force=True) as b:
        b.put_file(io.BytesIO(b"v2"), "f.txt")
        b.put_file(io.BytesIO(b"g2"), "g.txt")
    Volume.from_name("vol", store=vol.store).remove_file("d", recursive=True)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        m.reload()
    told = sorted(str(w.message) for w in rec)
    assert len(told) == 2, told
    assert "kept 1 path(s)" in told[0] and told[0].endswith(": d")
    assert "replaced 3 local change(s)" in told[1] and told[1].endswith(": f.txt, g.txt, h.txt")
    assert not any("commit them" in t for t in told)
    assert (ro / "f.txt").read_bytes() == b"v2" and (ro / "g.txt").read_bytes() == b"g2"
    assert (ro / "mine.txt").read_text() == "my notes"
    assert (ro / "d/mine.txt").read_text() == "mine too" and not (ro / "d/x").exists()
    assert (ro / "h.txt").stat().st_mtime != 1
    # with nothing new in the volume, a reload still undoes a local change
    (ro / "f.txt").unlink()
    (ro / "g.txt").write_text("again")
    with pytest.warns(UserWarning, match=r"replaced 2 local change\(s\)"):
        m.reload()
    assert (ro / "f.txt").read_bytes() == b"v2" and (ro / "g.txt").read_bytes() == b"g2"
    st = m.status()
    assert (st.added, st.modified, st.deleted) == (["d/mine.txt", "mine.txt"], [], [])
    m.unmount()


def test_remount_commits_leftover_edits(
    vol: Volume, tmp_path: Path, child_env: dict[str, str]
) -> None:
    mnt = tmp_path / "mnt"
    # A process mounts, writes, and dies without committing (no atexit either).
    finish(
        py(
            f"""
            import os
            from jupyter_volume import Volume
            m = Volume.from_name("vol").mount({str(mnt)!r}, background=False)
            open({str(mnt / "left.txt")!r}, "w").write("left over")
            os._exit(0)
            """,
            child_env,
        )
    )
    assert "left.txt" not in [e.path for e in vol.listdir("/")]
    m = vol.mount(mnt, background=False)
    vol.reload()
    assert read(vol, "left.txt") == b"left over"
    assert m.status().clean
    m.unmount()


def test_a_user_file_named_like_a_temporary_file_is_committed_and_kept(
    vol: Volume, tmp_path: Path
) -> None:
    """Only the exact names the mount gives its own temporary files are its own: a user
    file whose name merely starts with ``.jv-tmp-`` is committed like any file and
    survives the next mount, which removes only a leftover of the mount's own shape."""
    mnt = tmp_path / "mnt"
    m = vol.mount(mnt, background=False)
    (mnt / "sub").mkdir()
    (mnt / "sub/.jv-tmp-notes.md").write_text("three hours of notes")
    (mnt / ".jv-tmp-0123456789abcdef").write_text("a short hex name")
    assert m.status().added == [".jv-tmp-0123456789abcdef", "sub", "sub/.jv-tmp-notes.md"]
    m.commit()
    m.unmount()
    # what a reload cut off by a crash leaves: a temporary file of the mount's own shape
    (mnt / "sub/.jv-tmp-0123456789abcdef-7").write_bytes(b"half a download")
    m = vol.mount(mnt, background=False)
    assert (mnt / "sub/.jv-tmp-notes.md").read_text() == "three hours of notes"
    assert (mnt / ".jv-tmp-0123456789abcdef").read_text() == "a short hex name"
    assert not (mnt / "sub/.jv-tmp-0123456789abcdef-7").exists()
    assert read(vol, "sub/.jv-tmp-notes.md") == b"three hours of notes"
    assert ".jv-tmp-0123456789abcdef-7" not in [e.path for e in vol.listdir("sub")]
    assert m.status().clean
    m.unmount()


def test_status_calls_a_repointed_link_or_a_file_turned_folder_modified(
    vol: Volume, tmp_path: Path
) -> None:
    """status() counts a path the volume has as modified, not added, when a link there
    points elsewhere or a file there became a folder."""
    mnt = tmp_path / "mnt"
    m = vol.mount(mnt, background=False)
    (mnt / "a.txt").write_text("a")
    os.symlink("a.txt", mnt / "latest")
    (mnt / "f").write_text("file")
    (mnt / "d").mkdir()
    (mnt / "d/x").write_text("x")
    m.commit()
    os.remove(mnt / "latest")
    os.symlink("b.txt", mnt / "latest")  # repointed
    os.remove(mnt / "f")
    (mnt / "f").mkdir()  # a file turned folder
    (mnt / "f/in").write_text("in")
    (mnt / "new").mkdir()
    os.symlink("a.txt", mnt / "new/link")
    st = m.status()
    assert (st.added, st.modified, st.deleted) == (["f/in", "new", "new/link"], ["f", "latest"], [])
    assert m.commit() is not None
    assert read(vol, "f/in") == b"in"
    assert {e.path for e in vol.listdir("/", recursive=True)} >= {"latest", "f", "new/link"}
    assert m.status().clean
    m.unmount()


def test_unmount_commits_and_leaves_files(vol: Volume, tmp_path: Path) -> None:
    m = vol.mount(tmp_path / "mnt", background=False)
    (tmp_path / "mnt/k.txt").write_text("kept")
    m.unmount()
    assert (tmp_path / "mnt/k.txt").read_text() == "kept"
    assert read(vol, "k.txt") == b"kept"


def test_a_mount_of_a_volume_deleted_elsewhere_commits_nothing_and_says_so(
    vol: Volume, tmp_path: Path, child_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its commits used to "succeed" into the deleted volume's prefix: under no name,
    # never collected, the files' owner told they were saved.
    from jupyter_volume import NotFoundError, objects

    monkeypatch.setattr(objects, "ALIVE_EVERY", 0.0)  # S3 looks at most every 2 s
    (tmp_path / "mnt").mkdir()
    m = vol.mount(tmp_path / "mnt", background=False)
    vol_id = vol.object_id
    finish(py("from jupyter_volume import Volume; Volume.objects.delete('vol')", child_env))
    (tmp_path / "mnt/results.bin").write_bytes(os.urandom(300_000))
    with pytest.raises(NotFoundError, match="volume 'vol' no longer exists"):
        m.commit()
    with pytest.raises(NotFoundError, match="unmounted without committing"):
        m.unmount()  # ends the mount (no retry can ever commit), never stays stuck
    assert repr(m).endswith("(unmounted)>")
    assert (tmp_path / "mnt/results.bin").stat().st_size == 300_000  # kept locally
    assert list(vol.store.list(f"vols/{vol_id}/")) == []  # nothing left behind


def test_background_commits_stop_once_the_volume_is_deleted_elsewhere(
    vol: Volume, tmp_path: Path, child_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """They used to be retried for as long as the kernel lived (a scan of the folder and
    a store request each time, every minute at most), each streak warned as if it might
    still go through."""
    from jupyter_volume import objects

    monkeypatch.setattr(objects, "ALIVE_EVERY", 0.0)
    m = vol.mount(tmp_path / "mnt", interval=0.1)
    finish(py("from jupyter_volume import Volume; Volume.objects.delete('vol')", child_env))
    (tmp_path / "mnt/results.bin").write_bytes(b"r")
    deadline = time.monotonic() + 60
    while m._thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not m._thread.is_alive(), m.last_error
    assert "no longer exists" in m.last_error and "stopped" in m.last_error
    assert m.status().last_error == m.last_error
    with pytest.warns(UserWarning, match="background commits of .* stopped") as got:
        m._after_cell()
    assert "retried" not in str(got[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m._after_cell()  # said once
    assert (tmp_path / "mnt/results.bin").read_bytes() == b"r"
    with pytest.raises(NotFoundError, match="unmounted without committing"):
        m.unmount()


def test_reload_keeps_uncommitted_local_edits(vol: Volume, tmp_path: Path) -> None:
    """A reload never overwrites a local file it could not commit first."""
    with vol.batch_upload() as b:
        b.put_file(io.BytesIO(b"v1"), "f.txt")
    m = vol.mount(tmp_path / "mnt", background=False)
    # Another writer changes f.txt; locally we edit it too, and our commit of it is
    # skipped because this process holds it open for writing.
    with Volume.from_name("vol", store=vol.store).batch_upload(force=True) as b:
        b.put_file(io.BytesIO(b"remote"), "f.txt")
    f = open(tmp_path / "mnt/f.txt", "w")  # noqa: SIM115
    f.write("local edit")
    f.flush()
    assert m.commit() is None  # open for writing: left for the next commit
    f.close()
    info = m.commit()
    assert info is not None
    assert read(vol, "f.txt") == b"local edit"  # last writer wins
    assert any(read(vol, "f.txt", at=c.seq) == b"remote" for c in vol.history() if c.seq)
    m.reload()
    assert (tmp_path / "mnt/f.txt").read_text() == "local edit"
    m.unmount()


# -- end-to-end scenarios: Modal's example, many writers, torn files, large trees ------------------


def test_modal_two_function_example(vol: Volume, tmp_path: Path, child_env: dict[str, str]) -> None:
    g = py(
        f"""
        import sys
        from jupyter_volume import Volume
        volume = Volume.from_name("vol")
        m = volume.mount({str(tmp_path / "g")!r}, background=False)
        print("ready", flush=True)
        sys.stdin.readline()
        import os
        print("before", os.path.exists({str(tmp_path / "g/bar.txt")!r}), flush=True)
        volume.reload()
        print("after", open({str(tmp_path / "g/bar.txt")!r}).read(), flush=True)
        """,
        child_env,
    )
    assert g.stdout.readline().strip() == "ready"
    finish(
        py(
            f"""
            from jupyter_volume import Volume
            volume = Volume.from_name("vol")
            m = volume.mount({str(tmp_path / "f")!r}, background=False)
            with open({str(tmp_path / "f/bar.txt")!r}, "w") as f:
                f.write("hello")
            volume.commit()  # Persist changes
            """,
            child_env,
        )
    )
    g.stdin.write("go\n")
    g.stdin.flush()
    out = finish(g)
    assert "before False" in out
    assert "after hello" in out


def test_reload_with_open_file_is_busy(
    vol: Volume, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with vol.batch_upload() as b:
        b.put_file(io.BytesIO(b"data"), "open.txt")
    m = vol.mount(tmp_path / "mnt", background=False)
    f = open(tmp_path / "mnt/open.txt")  # noqa: SIM115
    with pytest.raises(VolumeBusyError) as ei:
        m.reload()
    assert str(tmp_path / "mnt/open.txt") in str(ei.value)
    assert ei.value.paths == [str(tmp_path / "mnt/open.txt")]
    f.close()
    m.reload()
    monkeypatch.chdir(tmp_path / "mnt")
    with pytest.raises(VolumeBusyError, match="working directory"):
        m.reload()
    monkeypatch.chdir(tmp_path)
    m.reload()
    m.unmount()


WRITER = """
import os, sys, time
from jupyter_volume import Volume
k, rounds, mnt, go = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
m = Volume.from_name("vol").mount(mnt, background=False)
while not os.path.exists(go):
    time.sleep(0.01)
for i in range(rounds):
    os.makedirs(os.path.join(mnt, f"p{k}"), exist_ok=True)
    with open(os.path.join(mnt, f"p{k}", "data.txt"), "w") as f:
        f.write(f"{k}:{i}")
    with open(os.path.join(mnt, f"p{k}", f"iter{i}.txt"), "w") as f:
        f.write(f"{k}-{i}")
    assert m.commit(f"writer {k} round {i}") is not None
m.unmount()
"""


def test_eight_writers_of_different_files_lose_nothing(
    vol: Volume, tmp_path: Path, child_env: dict[str, str], store_url_env
) -> None:
    rounds = 20 if store_url_env[0].startswith("file:") else 5
    vol.listdir("/")  # create it before the writers race
    race_writers(
        WRITER, lambda k: [str(k), str(rounds), str(tmp_path / f"m{k}")], child_env, tmp_path
    )
    vol.reload()  # an unmounted handle sees others' commits after a reload
    for k in range(8):
        assert read(vol, f"p{k}/data.txt") == f"{k}:{rounds - 1}".encode()
        for i in range(rounds):
            assert read(vol, f"p{k}/iter{i}.txt") == f"{k}-{i}".encode()
    # Every commit is in the log: its own record, or carried by another writer's record
    # (group commit: a writer that lost the race is folded into the next one; on S3 the
    # writers line up on this machine, and a round's record holds only carried ones).
    records = [vol._repo.record(c.seq) for c in vol.history() if c.message.startswith("writer")]
    own = sum(0 if r.extra.get("line") else 1 for r in records)
    assert own + sum(len(r.extra.get("carried", [])) for r in records) == 8 * rounds
    assert vol.verify().ok


SAME_PATH_WRITER = """
import os, sys, time
from jupyter_volume import Volume
k, mnt, go = int(sys.argv[1]), sys.argv[2], sys.argv[3]
m = Volume.from_name("vol").mount(mnt, background=False)
data = (f"writer {k} ".encode()) * 20000   # 180 KB: several chunks, never inline
while not os.path.exists(go):
    time.sleep(0.01)
with open(os.path.join(mnt, "shared.bin"), "wb") as f:
    f.write(data)
assert m.commit(f"writer {k}") is not None
m.unmount()
"""


def test_eight_writers_of_one_path_last_write_wins(
    vol: Volume, tmp_path: Path, child_env: dict[str, str]
) -> None:
    vol.listdir("/")
    race_writers(SAME_PATH_WRITER, lambda k: [str(k), str(tmp_path / f"m{k}")], child_env, tmp_path)
    vol.reload()  # an unmounted handle sees others' commits after a reload
    versions = {k: (f"writer {k} ".encode()) * 20000 for k in range(8)}
    head = read(vol, "shared.bin")
    assert head in versions.values()  # exactly one writer's whole content, never a mix
    seen = set()
    for c in vol.history():
        if c.message.startswith("writer "):
            content = read(vol, "shared.bin", at=c.seq)
            k = next(k for k, v in versions.items() if v == content)
            seen.add(k)
    assert seen == set(range(8))  # every writer's version is in history
    assert vol.verify().ok


def test_background_commit_never_commits_a_torn_file(vol: Volume, tmp_path: Path) -> None:
    # progress.txt is rewritten every 50 ms: with the default settle interval it would
    # never be quiet enough to commit, which is right for a live file but not this test's
    # point (no commit ever holds a torn file), so the mount waits only 10 ms.
    m = vol.mount(tmp_path / "mnt", interval=0.2, settle=0.01, settle_max_wait=0.2)
    total = 24 << 20
    piece = os.urandom(1 << 20)
    with open(tmp_path / "mnt/big.bin", "wb") as f:
        for i in range(total // len(piece)):
            f.write(piece)
            f.flush()
            (tmp_path / "mnt/progress.txt").write_text(str(i))  # keeps the committer busy
            time.sleep(0.05)
            if i % 8 == 7:
                # halfway-written big.bin is open here: wait (hang guard only) until the
                # background committer has taken progress.txt, however busy the machine
                _wait_for_commit_of(vol, "progress.txt", str(i).encode())
    deadline = time.time() + 60
    while time.time() < deadline and "big.bin" not in [e.path for e in vol.listdir("/")]:
        time.sleep(0.2)
    m.unmount()
    commits = [c for c in vol.history() if c.seq > 0]
    assert len(commits) >= 3, (
        "the background committer should have committed progress.txt while the file was written"
    )
    for c in commits:
        names = {e.path: e for e in vol.listdir("/", at=c.seq)}
        if "big.bin" in names:
            assert names["big.bin"].size == total
            assert read(vol, "big.bin", at=c.seq) == piece * (total // len(piece))


def _wait_for_commit_of(vol: Volume, path: str, data: bytes, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if read(vol, path) == data:
                return
        except FileNotFoundError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"no background commit of {path} = {data!r} within {timeout} s")


READER = """
import os, sys, time
path, stop = sys.argv[1], sys.argv[2]
reads = 0
while not os.path.exists(stop):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        continue
    if not data:
        print("EMPTY", flush=True); sys.exit(1)
    head = data[:8]
    if len(data) != 2_000_000 or data != head * (len(data) // 8):
        print("TORN", len(data), flush=True); sys.exit(1)
    reads += 1
print("reads", reads)
"""


def test_reader_never_sees_partial_content_during_reload(
    vol: Volume, tmp_path: Path, child_env: dict[str, str]
) -> None:
    def version(i: int) -> bytes:
        return f"v{i:06d}|".encode() * 250_000  # 2,000,000 bytes, every 8 bytes the same

    with vol.batch_upload() as b:
        b.put_file(io.BytesIO(version(0)), "model.bin")
    m = vol.mount(tmp_path / "mnt", background=False)
    stop = tmp_path / "stop"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(tmp_path / "mnt/model.bin"), str(stop)],
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    writer = Volume.from_name("vol", store=vol.store)
    for i in range(1, 16):
        with writer.batch_upload(force=True) as b:
            b.put_file(io.BytesIO(version(i)), "model.bin")
        m.reload()
        assert (tmp_path / "mnt/model.bin").read_bytes() == version(i)
    stop.write_text("stop")
    out = finish(reader)
    assert int(out.split()[-1]) > 10
    m.unmount()


def test_fifty_thousand_files_incremental_reload(vol: Volume, tmp_path: Path) -> None:
    n_dirs, per_dir = 50, 1000
    with vol.batch_upload() as b:
        for d in range(n_dirs):
            for i in range(per_dir):
                b.put_file(io.BytesIO(f"{d}/{i}".encode()), f"d{d:02d}/f{i:04d}.txt")
    m = vol.mount(tmp_path / "mnt", background=False)
    root = tmp_path / "mnt"
    inodes = {}
    for d in range(n_dirs):
        for e in os.scandir(root / f"d{d:02d}"):
            inodes[f"d{d:02d}/{e.name}"] = e.inode()
    assert len(inodes) == 50_000
    (root / "d07/f0007.txt").write_text("changed here")
    info = m.commit()
    assert info is not None and (info.added, info.modified, info.deleted) == (0, 1, 0)
    with Volume.from_name("vol", store=vol.store).batch_upload(force=True) as b:
        b.put_file(io.BytesIO(b"changed elsewhere"), "d42/f0042.txt")
    m.reload()
    assert (root / "d42/f0042.txt").read_text() == "changed elsewhere"
    assert read(vol, "d07/f0007.txt") == b"changed here"
    changed = []
    for d in range(n_dirs):
        for e in os.scandir(root / f"d{d:02d}"):
            if inodes[f"d{d:02d}/{e.name}"] != e.inode():
                changed.append(f"d{d:02d}/{e.name}")
    assert changed == ["d42/f0042.txt"]
    m.unmount()


def _reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files a mount's commits read from now on (full paths). A spy: it records
    each call and passes it on to the real reader unchanged."""
    import jupyter_volume.mount as mount_mod

    seen: list[str] = []
    # small files and others are read by different functions: spy on both
    for name in ("_read_file", "_read_small"):
        real = getattr(mount_mod, name)

        def spy(writer, full, *rest, real=real):  # type: ignore[no-untyped-def]
            seen.append(full)
            return real(writer, full, *rest)

        monkeypatch.setattr(mount_mod, name, spy)
    return seen


def test_a_folder_moved_in_the_mount_commits_without_reading_its_files(
    vol: Volume, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "mnt"
    m = vol.mount(root, background=False)
    (root / "raw/sub").mkdir(parents=True)
    data = {f"raw/part{i}.bin": os.urandom(200_000 + i) for i in range(3)}
    data["raw/sub/small.txt"] = b"kept inline"
    data["raw/sub/edited.txt"] = b"before the move"
    for rel, b in data.items():
        (root / rel).write_bytes(b)
    os.chmod(root / "raw/part0.bin", 0o640)
    first = m.commit("raw data")
    assert first is not None
    reads = _reads(monkeypatch)

    os.rename(root / "raw", root / "archive")  # what `mv raw archive` does
    os.rename(root / "archive/part2.bin", root / "top.bin")  # and out of the folder
    (root / "archive/sub/edited.txt").write_bytes(b"changed after the move")
    info = m.commit("move")

    # only the file changed after the move was read; the rest came from the index
    assert [os.path.relpath(p, root) for p in reads] == ["archive/sub/edited.txt"]
    assert info is not None and (info.added, info.deleted) == (5, 5)
    assert info.bytes_new == len(b"changed after the move")
    want = {
        "archive/part0.bin": data["raw/part0.bin"],
        "archive/part1.bin": data["raw/part1.bin"],
        "top.bin": data["raw/part2.bin"],
        "archive/sub/small.txt": data["raw/sub/small.txt"],
        "archive/sub/edited.txt": b"changed after the move",
    }
    files = {e.path: e for e in vol.listdir("/", recursive=True) if e.type.name == "FILE"}
    assert sorted(files) == sorted(want)
    for rel, b in want.items():
        assert read(vol, rel) == b, rel
    assert m.status().clean and m.commit() is None  # the index knows the new paths

    m.unmount()

    # another mount sees the moved files, and the next edit of one is committed as usual
    m2 = vol.mount(tmp_path / "mnt2", background=False)
    for rel, b in want.items():
        assert (tmp_path / "mnt2" / rel).read_bytes() == b, rel
    assert os.stat(tmp_path / "mnt2/archive/part0.bin").st_mode & 0o777 == 0o640
    (tmp_path / "mnt2/archive/part1.bin").write_bytes(b"new content")
    assert m2.commit() is not None
    assert read(vol, "archive/part1.bin") == b"new content"
    m2.unmount()
    assert vol.verify().ok


def test_a_commit_that_is_one_move_says_so(vol: Volume, tmp_path: Path) -> None:
    with vol.batch_upload() as b:
        for i in range(3):
            b.put_file(io.BytesIO(os.urandom(3000 + i)), f"users/ana/raw/d/f{i}.bin")
    m = vol.with_mount_options(sub_path="users/ana").mount(tmp_path / "mnt", background=False)
    root = tmp_path / "mnt"
    os.rename(root / "raw", root / "archive")
    assert m.commit().message == "move users/ana/raw to users/ana/archive"
    os.rename(root / "archive/d/f0.bin", root / "f0.bin")
    assert m.commit().message == "move users/ana/archive/d/f0.bin to users/ana/f0.bin"
    # a move and something else: the usual message
    os.rename(root / "archive/d", root / "d2")
    (root / "new.txt").write_text("new")
    assert m.commit().message.startswith("commit ")
    # files moved in different ways
    (root / "x").mkdir()
    os.rename(root / "d2/f1.bin", root / "x/one.bin")
    os.rename(root / "d2/f2.bin", root / "x/two.bin")
    assert m.commit().message.startswith("commit ")
    m.unmount()


def test_a_file_moved_over_another_takes_its_place(
    vol: Volume, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "mnt"
    m = vol.mount(root, background=False)
    (root / "a.bin").write_bytes(b"A" * 5000)
    (root / "b.bin").write_bytes(b"B" * 7000)
    m.commit()
    reads = _reads(monkeypatch)
    os.replace(root / "a.bin", root / "b.bin")  # mv a.bin b.bin
    info = m.commit()
    assert reads == []
    assert info is not None and (info.modified, info.deleted) == (1, 1)
    assert read(vol, "b.bin") == b"A" * 5000
    assert [e.path for e in vol.listdir("/")] == ["b.bin"]
    m.unmount()


def test_a_new_file_that_only_looks_like_a_deleted_one_is_read(
    vol: Volume, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same size and mtime as a deleted file but another inode (a copy, not a move): the
    commit reads it."""
    root = tmp_path / "mnt"
    m = vol.mount(root, background=False)
    (root / "old.bin").write_bytes(b"x" * 4000)
    m.commit()
    st = os.stat(root / "old.bin")
    (root / "new.bin").write_bytes(b"y" * 4000)
    os.utime(root / "new.bin", ns=(st.st_atime_ns, st.st_mtime_ns))
    (root / "old.bin").unlink()
    reads = _reads(monkeypatch)
    m.commit()
    assert [os.path.basename(p) for p in reads] == ["new.bin"]
    assert read(vol, "new.bin") == b"y" * 4000
    m.unmount()


def test_a_reload_moves_files_another_writer_moved_instead_of_downloading_them(
    vol: Volume, tmp_path: Path
) -> None:
    root = tmp_path / "mnt"
    m = vol.mount(root, background=False)
    (root / "raw/sub").mkdir(parents=True)
    data = {f"raw/part{i}.bin": os.urandom(150_000 + i) for i in range(3)}
    data["raw/sub/tiny.txt"] = b"tiny"
    for rel, b in data.items():
        (root / rel).write_bytes(b)
    os.chmod(root / "raw/part2.bin", 0o600)
    m.commit()
    inode = {rel: os.stat(root / rel).st_ino for rel in data}
    mtime = {rel: os.stat(root / rel).st_mtime_ns for rel in data}

    # another writer moves the folder (an API commit: no mount of its own)
    assert vol.move("raw", "archive") is not None
    m.reload()

    for rel, b in data.items():
        new = root / rel.replace("raw/", "archive/", 1)
        assert new.read_bytes() == b, rel
        assert os.stat(new).st_ino == inode[rel], f"{rel} was written again, not moved"
        assert os.stat(new).st_mtime_ns == mtime[rel]
    assert os.stat(root / "archive/part2.bin").st_mode & 0o777 == 0o600
    assert not (root / "raw").exists()
    st = m.status()
    assert st.clean and st.behind == 0
    # the moved files are known in their new place: editing one commits it
    (root / "archive/part1.bin").write_bytes(b"changed")
    m.commit()
    assert read(vol, "archive/part1.bin") == b"changed"
    assert read(vol, "archive/part0.bin") == data["raw/part0.bin"]
    m.unmount()


def test_a_reload_never_moves_away_a_file_edited_here(vol: Volume, tmp_path: Path) -> None:
    with vol.batch_upload() as b:
        b.put_file(io.BytesIO(b"v" * 5000), "raw/a.bin")
    root = tmp_path / "mnt"
    m = vol.mount(root, background=False, read_only=True)  # no commit before the reload
    (root / "raw/a.bin").write_bytes(b"local edit")
    vol.move("raw/a.bin", "b.bin")
    # read-only: the edit is undone (the volume has no raw/a.bin any more), and the
    # moved file comes from the store, never by renaming the edited one
    with pytest.warns(UserWarning, match=r"replaced 1 local change\(s\).*: raw/a.bin"):
        m.reload()
    assert not (root / "raw/a.bin").exists()
    assert (root / "b.bin").read_bytes() == b"v" * 5000  # (the edit was "local edit")
    m.unmount()


EDIT_BIG = """
import os, sys
from jupyter_volume import Volume
vol = Volume.from_name("vol")
data = bytearray(b"".join(vol.read_file("big.bin")))
data[int(sys.argv[1]) : int(sys.argv[1]) + 1000] = b"z" * 1000  # an edit in the middle
with vol.batch_upload(force=True) as b:
    b.put_file(__import__("io").BytesIO(bytes(data)), "big.bin")
"""


class _BytesGot(CountingStore):
    """Counts the bytes a volume reads from the store (everything else passes through)."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.got = 0

    def get_range(self, key: str, start: int, length: int) -> bytes:
        data = super().get_range(key, start, length)
        with self._lock:
            self.got += len(data)
        return data

    def get(self, key: str) -> bytes:
        data = super().get(key)
        with self._lock:
            self.got += len(data)
        return data


@pytest.fixture
def counted(
    store_url_env: tuple[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> tuple[Volume, _BytesGot]:
    """Volume "vol" of a fresh store of each kind, opened through a :class:`_BytesGot`."""
    url, env = store_url_env
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    store = _BytesGot(open_store(url))
    return Volume.lookup("vol", create_if_missing=True, store=store), store


def _mounted_with_big(vol: Volume, tmp_path: Path, name: str, size: int) -> tuple[Any, bytes]:
    """Upload ``size`` random bytes to ``name``, then mount ``vol`` at ``tmp_path/mnt``
    (no background commits); the mount and the bytes."""
    big = os.urandom(size)
    with vol.batch_upload() as b:
        b.put_file(io.BytesIO(big), name)
    return vol.mount(tmp_path / "mnt", background=False), big


def test_a_reload_of_a_big_file_with_a_small_edit_downloads_only_the_edit(
    counted: tuple[Volume, _BytesGot], child_env: dict[str, str], tmp_path: Path
) -> None:
    vol, store = counted
    m, big = _mounted_with_big(vol, tmp_path, "big.bin", 12 << 20)
    ino = os.stat(tmp_path / "mnt/big.bin").st_ino

    _run_child(EDIT_BIG, child_env, "6000000")  # another kernel edits 1,000 bytes
    store.got = 0
    m.reload()
    want = bytearray(big)
    want[6_000_000:6_001_000] = b"z" * 1000
    assert (tmp_path / "mnt/big.bin").read_bytes() == bytes(want)
    assert os.stat(tmp_path / "mnt/big.bin").st_ino != ino  # a new file, renamed in
    assert store.got < 2 << 20, f"downloaded {store.got} bytes for a 1,000-byte edit"
    m.unmount()


def test_a_reload_copies_a_big_file_it_has_under_another_name(
    counted: tuple[Volume, _BytesGot], child_env: dict[str, str], tmp_path: Path
) -> None:
    vol, store = counted
    m, big = _mounted_with_big(vol, tmp_path, "model.pt", 9 << 20)
    # another kernel copies it (the copy shares the stored chunks)
    _run_child(
        'from jupyter_volume import Volume; Volume.from_name("vol").copy_files(["model.pt"], "backup.pt")',
        child_env,
    )
    store.got = 0
    m.reload()
    assert (tmp_path / "mnt/backup.pt").read_bytes() == big
    assert store.got < 1 << 20, f"downloaded {store.got} bytes of a file already here"
    m.unmount()


def test_a_reload_never_trusts_the_local_copy_it_reuses(
    vol: Volume, child_env: dict[str, str], tmp_path: Path
) -> None:
    """The version in the folder changed without its size, mtime or inode changing (so
    the mount still takes it as the one it wrote): chunks copied from it are checked by
    hash, and what does not match is downloaded."""
    m, big = _mounted_with_big(vol, tmp_path, "big.bin", 12 << 20)
    f = tmp_path / "mnt/big.bin"
    st = os.stat(f)
    with open(f, "r+b") as fh:  # damage the start behind the mount's back
        fh.write(b"\0" * 100_000)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    _run_child(EDIT_BIG, child_env, "9000000")
    m.reload()
    want = bytearray(big)
    want[9_000_000:9_001_000] = b"z" * 1000
    assert f.read_bytes() == bytes(want)
    m.unmount()


def _run_child(code: str, env: dict[str, str], *args: str) -> str:
    p = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_idle_mount_adds_no_commit(vol: Volume, tmp_path: Path) -> None:
    with vol.batch_upload() as b:
        b.put_file(io.BytesIO(b"x"), "x.txt")
    m = vol.mount(tmp_path / "mnt", interval=0.5)
    before = vol.history()[0].seq
    # twenty rounds of the committer, counted where each round asks the journal whether
    # anything changed (a spy: the answer is the journal's own)
    rounds = 0
    peek = m._journal.peek

    def counted() -> bool | None:
        nonlocal rounds
        rounds += 1
        return peek()

    m._journal.peek = counted  # type: ignore[method-assign]
    deadline = time.time() + 120
    while rounds < 20 and time.time() < deadline:
        time.sleep(0.2)
    assert rounds >= 20, rounds
    assert vol.history()[0].seq == before
    assert m.last_error is None
    # ...and the committer is alive: a change is committed without asking
    (tmp_path / "mnt/y.txt").write_text("y")
    deadline = time.time() + 30
    while time.time() < deadline and vol.history()[0].seq == before:
        time.sleep(0.2)
    assert read(vol, "y.txt") == b"y"
    m.unmount()


class FailingStore(WrappedStore):
    """Fails every write while ``fail`` is set. A mock of a fault (the store refusing
    writes for a while) that neither a local folder (we run as root) nor the shared
    SeaweedFS can be made to produce on demand without breaking other tests."""

    fail = False

    def _do(self, kind, key, fn, *args):  # type: ignore[no-untyped-def]
        if self.fail and kind in ("put", "put_if_absent"):
            raise StoreError("injected: the store is unavailable")
        return super()._do(kind, key, fn, *args)


def test_failed_background_commit_is_reported_retried_and_loses_nothing(
    store, tmp_path: Path
) -> None:
    fs = FailingStore(store)
    vol = Volume.from_name("vol", create_if_missing=True, store=fs)
    m = vol.mount(tmp_path / "mnt", interval=0.2)
    fs.fail = True
    (tmp_path / "mnt/precious.txt").write_text("do not lose me")
    deadline = time.time() + 20
    while time.time() < deadline and m.last_error is None:
        time.sleep(0.1)
    assert m.last_error and "unavailable" in m.last_error
    assert "unavailable" in m.status().last_error
    assert (tmp_path / "mnt/precious.txt").read_text() == "do not lose me"
    fs.fail = False
    deadline = time.time() + 60
    while time.time() < deadline and "precious.txt" not in [e.path for e in vol.listdir("/")]:
        time.sleep(0.2)
    assert read(vol, "precious.txt") == b"do not lose me"
    m.unmount()


class WriteDuringDownload(WrappedStore):
    """Runs ``hook`` once, at the first read of pack data after it is set: a program
    writing a file at the very moment a reload downloads that file's new version. (A
    hook on a real store, to place that write at one exact moment; timing cannot.)"""

    hook: Callable[[], None] | None = None

    def _do(self, kind, key, fn, *args):  # type: ignore[no-untyped-def]
        hook = self.hook
        if hook is not None and "/packs/" in key and kind in ("get", "get_range"):
            self.hook = None
            hook()
        return super()._do(kind, key, fn, *args)


@pytest.mark.parametrize("size", [4096, 6 << 20], ids=["batched", "streamed"])
def test_a_write_made_while_a_reload_downloads_the_file_is_kept(
    store, tmp_path: Path, size: int
) -> None:
    ws = WriteDuringDownload(store)
    vol = Volume.from_name("vol", create_if_missing=True, store=ws)
    with vol.batch_upload() as b:
        b.put_file(io.BytesIO(b"v1"), "f")
    m = vol.mount(tmp_path / "mnt", background=False)
    v2 = os.urandom(size)
    with Volume.from_name("vol", store=store).batch_upload(force=True) as b:
        b.put_file(io.BytesIO(v2), "f")  # another writer
    fired: list[bool] = []

    def a_program_writes_f() -> None:
        (tmp_path / "mnt/f").write_bytes(b"local, the newest")
        fired.append(True)

    ws.hook = a_program_writes_f
    with pytest.warns(UserWarning, match=r"reload kept 1 path\(s\) with local changes"):
        m.reload()
    assert fired, "the download never read a pack"
    # before the fix, the download renamed v2 over the program's write: gone for good
    assert (tmp_path / "mnt/f").read_bytes() == b"local, the newest"
    assert not list((tmp_path / "mnt").glob(".jv-tmp-*"))
    assert m.commit() is not None
    assert read(vol, "f") == b"local, the newest"  # the newest write wins
    assert any(read(vol, "f", at=c.seq) == v2 for c in vol.history() if c.seq)  # kept
    m.unmount()


def test_journal_sees_changes_in_new_folders(vol: Volume, tmp_path: Path) -> None:
    m = vol.mount(tmp_path / "mnt", background=False)
    assert m._journal.active
    os.makedirs(tmp_path / "mnt/a/b/c")
    (tmp_path / "mnt/a/b/c/deep.txt").write_text("deep")
    m.commit()
    assert read(vol, "a/b/c/deep.txt") == b"deep"
    (tmp_path / "mnt/a/b/c/deep.txt").write_text("deeper")
    os.rename(tmp_path / "mnt/a/b", tmp_path / "mnt/moved")
    m.commit()
    paths = {e.path for e in vol.listdir("/", recursive=True)}
    assert "moved/c/deep.txt" in paths and "a/b" not in paths
    assert read(vol, "moved/c/deep.txt") == b"deeper"
    # the journal agrees with a full scan
    assert not m._full_scan()
    m.unmount()


def test_rows_under_many_prefixes_are_the_rows_of_each(tmp_path: Path) -> None:
    """The one-statement lookup of many paths' rows gives, for each, what a lookup of it
    alone gives: the row at it and every row below it, not a sibling that shares its
    first letters ("a-b", "a.txt" beside "a")."""
    from jupyter_volume.mount import _ROWS_ONE_BY_ONE, _Index
    from jupyter_volume.repository.tree import Entry

    idx = _Index(tmp_path / "state.db")
    paths = ["a", "a/b", "a/b/c", "a-b", "a.txt", "ab", "b/x", "é/ü", "z z/1"]
    paths += [f"many/{i:03d}" for i in range(40)]
    idx.put(
        [
            (p, Entry(p.rsplit("/", 1)[-1], "file", 0o644, i, i), (i, i, i, 0o644), 0)
            for i, p in enumerate(paths)
        ]
    )
    prefixes = ["a", "a/b", "a-b", "b", "missing", "é", "z z", "many"] + [
        f"many/{i:03d}" for i in range(0, 40, 3)
    ]
    assert len(prefixes) > _ROWS_ONE_BY_ONE  # the one-statement path
    one_by_one = {p: {q: (e, s, since) for q, e, s, since in idx.rows(p)} for p in prefixes}
    assert idx.rows_under(prefixes) == {p: r for p, r in one_by_one.items() if r}
    assert set(idx.rows_under(prefixes)["a"]) == {"a", "a/b", "a/b/c"}
    assert idx.known_under_any(prefixes) and not idx.known_under_any([f"no{i}" for i in range(40)])
    idx.close()


def test_a_scan_of_many_new_names_asks_for_their_rows_at_once(vol: Volume, tmp_path: Path) -> None:
    """1,000 new files in one folder, reported one by one by the change journal: the scan
    asks SQLite for their rows in a few statements, not one each (a quarter of a
    10,000-file commit was those queries). What it commits is what a full scan sees."""
    m = vol.mount(tmp_path / "mnt", background=False)
    assert m._journal.active
    (tmp_path / "mnt/old").mkdir()
    for i in range(30):
        (tmp_path / f"mnt/old/{i}").write_bytes(b"o")
        (tmp_path / f"mnt/k{i}").write_bytes(b"k")
    (tmp_path / "mnt/becomes-dir").write_bytes(b"f")
    m.commit()
    # new files, changed ones, a deleted folder with its files, a file that became a
    # folder and the reverse: all reported by the journal as paths of the top folder
    for i in range(1000):
        (tmp_path / f"mnt/n{i:04d}.bin").write_bytes(b"%d" % i)
    for i in range(0, 30, 2):
        (tmp_path / f"mnt/k{i}").write_bytes(b"changed")
    for i in range(30):
        (tmp_path / f"mnt/old/{i}").unlink()
    (tmp_path / "mnt/old").rmdir()
    (tmp_path / "mnt/old").write_bytes(b"now a file")
    (tmp_path / "mnt/becomes-dir").unlink()
    (tmp_path / "mnt/becomes-dir").mkdir()
    (tmp_path / "mnt/becomes-dir/inside").write_bytes(b"i")
    statements: list[str] = []
    m._index.db.set_trace_callback(statements.append)
    try:
        ch = m._changes()
    finally:
        m._index.db.set_trace_callback(None)
    m._journal.requeue(ch.taken)  # the commit below scans them again
    assert len(ch.files) == 1000 + 15 + 2 and ch.dirs.keys() == {"becomes-dir"}
    assert ch.gone == {f"old/{i}" for i in range(30)}  # the file "becomes-dir" is a folder now
    assert len(statements) < 20, len(statements)  # it made one per new name: over 1,000
    m.commit()
    assert not m._full_scan()  # the journal agrees with a full scan
    assert read(vol, "old") == b"now a file" and read(vol, "becomes-dir/inside") == b"i"
    assert read(vol, "k2") == b"changed" and read(vol, "n0999.bin") == b"999"
    m.unmount()


def test_a_commit_of_many_edited_files_takes_their_rows_from_its_scan(
    vol: Volume, tmp_path: Path
) -> None:
    """The commit of 300 edited files (and the status before it) takes each file's row
    from the scan that found it changed: they asked SQLite for every row once more (a
    fifth of a commit of 10,000 edited files)."""
    m = vol.mount(tmp_path / "mnt", background=False)
    for i in range(300):
        (tmp_path / f"mnt/f{i:03d}").write_bytes(b"version 1 of %d" % i)
    (tmp_path / "mnt/sub").mkdir()
    m.commit()
    for i in range(300):
        (tmp_path / f"mnt/f{i:03d}").write_bytes(b"version 2 of %d" % i)
    (tmp_path / "mnt/f000").touch()  # and one new file beside them
    (tmp_path / "mnt/new.txt").write_bytes(b"new")
    statements: list[str] = []
    m._index.db.set_trace_callback(statements.append)
    try:
        st = m.status()
        assert len(st.modified) == 300 and st.added == ["new.txt"], st
        assert m.commit() is not None
    finally:
        m._index.db.set_trace_callback(None)
    one_row = [q for q in statements if q.startswith("SELECT entry, size")]
    assert len(one_row) < 5, len(one_row)  # 600 before: one per file, twice
    assert read(vol, "f123") == b"version 2 of 123" and read(vol, "new.txt") == b"new"
    assert not m.status().modified
    m.unmount()


def test_post_run_cell_commits_in_ipython(vol: Volume, tmp_path: Path, user_shell: Any) -> None:
    shell = user_shell
    shell.user_ns["vol"] = vol
    shell.run_cell(f"m = vol.mount({str(tmp_path / 'mnt')!r}, interval=3600)")
    before = vol.history()[0].seq
    shell.run_cell(f"open({str(tmp_path / 'mnt/cell.txt')!r}, 'w').write('from a cell')")
    deadline = time.time() + 30
    while time.time() < deadline and vol.history()[0].seq == before:
        time.sleep(0.1)
    assert read(vol, "cell.txt") == b"from a cell"
    shell.run_cell("m.unmount()")


def test_a_mount_refuses_a_string_of_ignore_patterns_and_an_interval_of_the_wrong_type(
    vol: Volume, tmp_path: Path
) -> None:
    """``ignore="*.tmp"`` was taken letter by letter, ``'*'`` among the patterns: every
    file was ignored and nothing ever committed, with no error. A text or bool interval
    went through float() ("5" and True were accepted)."""
    from jupyter_volume.mount import mounts

    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(InvalidError, match=r"list of name patterns.*\['\*\.tmp'\]"):
        vol.mount(tmp_path / "a", ignore="*.tmp")  # type: ignore[arg-type]
    for bad in ("5", True, -1, 0):
        with pytest.raises(InvalidError, match="commit interval.*background=False"):
            vol.mount(tmp_path / "b", interval=bad)  # type: ignore[arg-type]
    assert mounts() == [] and not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    with vol.mount(tmp_path / "ok", ignore=["*.tmp"], background=False) as m:
        (tmp_path / "ok" / "kept.txt").write_text("kept")
        (tmp_path / "ok" / "scratch.tmp").write_text("ignored")
        m.commit()
    assert {e.path for e in vol.listdir("/")} == {"kept.txt"}


def test_an_interval_too_long_to_wait_for_still_commits_after_each_cell(
    vol: Volume, tmp_path: Path, user_shell: Any
) -> None:
    """An interval longer than a thread can wait (1e10 s) means "after each cell": the
    committer waits as long as it can, and the cell's hook still wakes it. An infinite
    interval is refused at once, naming the way to commit only when asked."""
    with pytest.raises(InvalidError, match="finite"):
        vol.mount(tmp_path / "never", interval=float("inf"))
    with pytest.raises(InvalidError, match="finite"):
        vol.mount(tmp_path / "never", interval=float("nan"))
    shell = user_shell
    shell.user_ns["vol"] = vol
    shell.run_cell(f"m = vol.mount({str(tmp_path / 'mnt')!r}, interval=1e10)")
    m = shell.user_ns["m"]
    shell.run_cell(f"open({str(tmp_path / 'mnt/cell.txt')!r}, 'w').write('from a cell')")
    deadline = time.time() + 60  # a hang guard only
    while time.time() < deadline and m.last_commit is None:
        time.sleep(0.1)
    assert m._thread is not None and m._thread.is_alive()
    assert m.last_error is None
    assert read(vol, "cell.txt") == b"from a cell"
    shell.run_cell("m.unmount()")


def test_concurrent_commit_threads_in_one_process(vol: Volume, tmp_path: Path) -> None:
    m = vol.mount(tmp_path / "mnt", interval=0.1)
    errors = []

    def work(k: int) -> None:
        try:
            for i in range(10):
                (tmp_path / f"mnt/t{k}-{i}.txt").write_text(str(i))
                m.commit()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    m.unmount()
    assert not errors
    assert len([e for e in vol.listdir("/") if e.path.startswith("t")]) == 40


def test_chunk_cache_serves_a_remount_and_stays_bounded(store, tmp_path: Path) -> None:
    from jupyter_volume.repository.chunkcache import ChunkCache
    from jupyter_volume.repository.codec import hash_bytes
    from jupyter_volume.testing.wrappers import CountingStore

    counting = CountingStore(store)
    vol = Volume.lookup("cache", create_if_missing=True, store=counting)
    data = {f"f{i}.bin": os.urandom(700_000) for i in range(3)}
    with vol.batch_upload() as b:
        for name, blob in data.items():
            b.put_file(io.BytesIO(blob), name)
    vol._repo.chunk_cache = None  # the mount sets up the cache under the cache dir
    m = vol.mount(tmp_path / "one", background=False)
    assert vol._repo.chunk_cache is not None
    m.unmount()
    counting.reset()
    m = vol.mount(tmp_path / "two", background=False)  # every chunk comes from the cache
    for name, blob in data.items():
        assert (tmp_path / "two" / name).read_bytes() == blob
    assert (
        counting.count(kind="get_range") == 0
        and counting.count(kind="get", prefix=vol._repo.prefix + "packs/") == 0
    )
    m.unmount()

    small = ChunkCache(tmp_path / "small", max_bytes=1_000_000)
    for _ in range(20):
        blob = os.urandom(100_000)
        small.put(hash_bytes(blob), blob)
    on_disk = sum(p.stat().st_size for p in (tmp_path / "small").rglob("*") if p.is_file())
    assert on_disk <= 1_000_000
    assert small.get("0" * 64) is None


def _atime_ns_before_mtime(path: Path) -> int:
    """Set ``path``'s access time a minute before its modification time (relatime then
    updates it at the next read) and return it."""
    st = os.stat(path)
    atime = st.st_mtime_ns - 60 * 10**9
    os.utime(path, ns=(atime, st.st_mtime_ns))
    return atime


def test_a_commit_leaves_the_access_times_of_the_files_it_reads_alone(
    local_store: Any, tmp_path: Path
) -> None:
    """Reading a file to commit it is not a use of it: no access-time update (an inode
    write per file) by the initial streamed commit, nor by an ordinary one."""
    control = tmp_path / "control"
    control.write_bytes(b"c" * 100)
    before = _atime_ns_before_mtime(control)
    control.read_bytes()
    assert os.stat(control).st_atime_ns != before, (
        "this file system does not record access times (mounted noatime?): the test needs "
        "relatime or strictatime for its temporary folder"
    )
    vol = Volume.lookup("vol", create_if_missing=True, store=local_store)
    root = tmp_path / "mnt"
    m = vol.mount(root, background=False)
    (root / "small.txt").write_bytes(b"s" * 5000)
    (root / "big.bin").write_bytes(os.urandom(300_000))  # read as a stream of chunks
    atimes = {name: _atime_ns_before_mtime(root / name) for name in ("small.txt", "big.bin")}
    assert m.commit() is not None
    assert {name: os.stat(root / name).st_atime_ns for name in atimes} == atimes
    (root / "small.txt").write_bytes(b"t" * 5000)  # an ordinary commit of an edit
    atimes["small.txt"] = _atime_ns_before_mtime(root / "small.txt")
    assert m.commit() is not None
    assert os.stat(root / "small.txt").st_atime_ns == atimes["small.txt"]
    assert read(vol, "small.txt") == b"t" * 5000
    m.unmount()


def test_a_file_of_another_owner_is_read_with_its_access_time_updated(tmp_path: Path) -> None:
    """Only a file's owner may read it without touching its access time; for a file
    owned by someone else the kernel refuses that, and the file is read as usual."""
    from jupyter_volume.mount import _open_to_read

    if os.geteuid() != 0:
        pytest.fail("this test changes its user to 'nobody' in a child: run it as root")
    import shutil
    import tempfile

    # pytest's temporary folders are closed to other users: one they may look into
    folder = Path(tempfile.mkdtemp(prefix="jv-atime-"))
    folder.chmod(0o755)
    f = folder / "root-owned.txt"
    f.write_bytes(b"shared")
    f.chmod(0o644)
    try:
        status = as_nobody(lambda: _read_as_non_owner(f, _open_to_read))
    finally:
        shutil.rmtree(folder)
    assert status == 0, {1: "failed", 3: "O_NOATIME allowed", 4: "wrong bytes"}.get(status)


def _read_as_non_owner(f: Path, open_to_read: Callable[[str], int]) -> int:
    try:
        os.close(os.open(f, os.O_RDONLY | os.O_NOATIME))
        return 3  # the kernel let a non-owner skip the access time: nothing tested
    except PermissionError:
        fd = open_to_read(str(f))
        return 0 if os.read(fd, 100) == b"shared" else 4


def test_a_commit_tells_its_pack_writer_how_much_it_will_read(
    local_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """So that the last packs of a big commit come small (PackWriter.expect): a spy on
    the hint, which passes it through."""
    from jupyter_volume.repository.packs import PackWriter

    told: list[int] = []
    expect = PackWriter.expect
    monkeypatch.setattr(PackWriter, "expect", lambda self, n: (told.append(n), expect(self, n)))
    vol = Volume.lookup("vol", create_if_missing=True, store=local_store)
    root = tmp_path / "mnt"
    m = vol.mount(root, background=False)
    (root / "a.bin").write_bytes(b"a" * 70_000)
    (root / "b.txt").write_bytes(b"b" * 5_000)
    assert m.commit() is not None  # the initial commit, streamed
    (root / "b.txt").write_bytes(b"c" * 6_000)
    assert m.commit() is not None  # an ordinary one
    assert told == [75_000, 6_000]
    m.unmount()


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
def test_a_small_file_rewritten_while_a_commit_reads_it_waits_for_the_next_commit(
    vol: Volume, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, streamed: bool
) -> None:
    """A small file is read without a stat around the read (one open, read, close): a
    rewrite at that moment (same size, so the read itself looks right) must still keep
    the bytes out of the commit, which is the gate's final look at every path."""
    import jupyter_volume.mount as mount_mod

    root = tmp_path / "mnt"
    m = vol.mount(root, background=False, settle=0.0)
    if not streamed:
        (root / "first.txt").write_bytes(b"make the folder known to the mount")
        assert m.commit() is not None
    n = mount_mod.STREAM_AT if streamed else 3
    (root / "data").mkdir()
    for i in range(n):
        (root / f"data/f{i:05d}.txt").write_bytes(b"old %05d" % i)
    real = mount_mod._read_small
    hit: list[str] = []

    def rewritten_as_read(writer, full, checked):  # type: ignore[no-untyped-def]
        if full.endswith("/data/f00001.txt") and not hit:
            hit.append(full)
            with open(full, "r+b") as f:  # what another program does at this moment
                f.write(b"NEW")
        return real(writer, full, checked)

    monkeypatch.setattr(mount_mod, "_read_small", rewritten_as_read)
    info = m.commit()
    assert hit and info is not None
    assert (
        m.status().deferred.get("data/f00001.txt", "").endswith("changed while the commit was read")
    ), m.status()
    names = {e.path for e in vol.listdir("data")}
    assert "data/f00001.txt" not in names and "data/f00000.txt" in names
    assert read(vol, "data/f00000.txt") == b"old 00000"
    # the next commit takes what the file holds now
    assert m.commit() is not None
    assert read(vol, "data/f00001.txt") == b"NEW 00001"
    m.unmount()


def test_a_commit_takes_small_files_a_file_system_reads_in_short_pieces(
    vol: Volume, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some file systems (FUSE ones) return less than asked from a read of a regular
    file before its end. A small file is read with one read call: such a file was taken
    for one that changed while it was read, and left for a later commit, every time.
    Short reads cannot be caused on this machine's file systems, so ``os.read`` is
    wrapped to give at most 1,000 bytes a call (the real call still does the reading)."""
    root = tmp_path / "mnt"
    m = vol.mount(root, background=False, settle=0.0)
    files = {f"f{i}.bin": os.urandom(5000 + i) for i in range(3)}
    for name, data in files.items():
        (root / name).write_bytes(data)
    real_read = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: real_read(fd, min(n, 1000)))
    info = m.commit()
    monkeypatch.undo()
    assert info is not None and m.status().deferred == {}
    for name, data in files.items():
        assert read(vol, name) == data
    m.unmount()


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
def test_a_commits_own_message_counts_and_names_files_as_its_changes_do(
    vol: Volume, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, streamed: bool
) -> None:
    """``commit N paths (FIRST, …)`` says what the history's +N says: two files in a new
    folder are 2 paths named by the first file (it was "3 paths (data, …)"); a commit of
    an empty folder alone names the folder."""
    import jupyter_volume.mount as mount_mod

    if streamed:
        monkeypatch.setattr(mount_mod, "STREAM_AT", 1)
    root = tmp_path / "mnt"
    m = vol.mount(root, background=False, settle=0.0)
    (root / "data").mkdir()
    (root / "data/b.csv").write_text("2")
    (root / "data/a.csv").write_text("1")
    info = m.commit()
    assert info is not None
    assert info.message == "commit 2 paths (data/a.csv, …)"
    assert next(iter(vol.history(limit=1))).added == 2
    (root / "empty").mkdir()
    info = m.commit()
    assert info is not None and info.message == "commit empty"
    m.unmount()
