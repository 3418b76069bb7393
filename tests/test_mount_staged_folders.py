"""A folder of small files that a reload makes lands in one rename.

The reload writes the small files of a folder it has just made (and that has no folder
made below it) into a hidden folder beside it, then renames that folder over the empty
one. Each file is as complete as one renamed in by itself; what is checked here: the
files, their modes and times are those of the volume; a file someone makes in the new
folder while it downloads is never replaced; a staging folder a killed process left is
removed by the next mount, never committed; and the folder is in sync afterwards.

Every test runs on the local store and on SeaweedFS.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from jupyter_volume import Volume

TREE = {  # path -> (mode, bytes): leaf folders, a folder with a folder in it, a top file
    "a/x.txt": (0o644, b"x" * 100),
    "a/run.sh": (0o755, b"#!/bin/sh\necho hi\n"),
    "a/secret": (0o600, b"s" * 3000),
    "a/shared": (0o666, b"umask takes the group and other write bits away"),
    "a/empty": (0o644, b""),
    "nest/top.txt": (0o644, b"beside a folder"),
    "nest/leaf/deep.txt": (0o640, b"d" * 5000),
    "top.txt": (0o644, b"at the top"),
}


def _made(vol: Volume, tmp_path: Path) -> dict[str, os.stat_result]:
    """Commit TREE through a mount (modes and times as written) and return its lstats."""
    src = tmp_path / "src"
    m = vol.mount(src, background=False)
    for i, (rel, (mode, data)) in enumerate(sorted(TREE.items())):
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        p.chmod(mode)
        os.utime(p, ns=(1_600_000_000_000_000_000 + i, 1_600_000_000_123_456_789 + i * 1000))
    m.commit()
    m.unmount()
    return {rel: os.lstat(src / rel) for rel in TREE}


def test_a_new_leaf_folder_lands_in_one_rename_with_modes_and_times(
    store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vol = Volume.from_name(f"st-{uuid.uuid4().hex[:8]}", store=store, create_if_missing=True)
    want = _made(vol, tmp_path)
    renamed: list[tuple[str, str]] = []
    replaced: list[str] = []
    real_rename, real_replace = os.rename, os.replace

    def rename(src: Any, dst: Any) -> None:
        real_rename(src, dst)
        renamed.append((os.path.basename(os.fspath(src)), os.fspath(dst)))

    def replace(src: Any, dst: Any) -> None:
        real_replace(src, dst)
        replaced.append(os.fspath(dst))

    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "replace", replace)
    old = os.umask(0o022)  # so a 0o666 file needs its mode set after it is made
    try:
        dst = tmp_path / "dst"
        m = vol.mount(dst, background=False)
    finally:
        os.umask(old)
        monkeypatch.undo()
    # the leaf folders came in one rename each; the folder holding a folder, file by file
    into = sorted(d for s, d in renamed if s.startswith(".jv-tmp-"))
    assert into == [str(dst / "a"), str(dst / "nest/leaf")], renamed
    files_replaced = {os.path.relpath(p, dst) for p in replaced if p.startswith(str(dst))}
    assert files_replaced == {"nest/top.txt", "top.txt"}, replaced
    for rel, (mode, data) in TREE.items():
        st = os.lstat(dst / rel)
        assert (dst / rel).read_bytes() == data, rel
        assert stat.S_IMODE(st.st_mode) == mode, (rel, oct(st.st_mode))
        assert st.st_mtime_ns == want[rel].st_mtime_ns, rel
    assert not [p for p in dst.rglob(".jv-tmp-*")]
    st = m.status()
    assert st.clean and st.behind == 0, st
    assert m.commit() is None
    # the rows are those of the files in place: an edit there is seen and committed
    (dst / "a/x.txt").write_bytes(b"edited")
    assert m.status().modified == ["a/x.txt"]
    assert m.commit() is not None
    m.unmount()
    assert b"".join(Volume.from_name(vol.name, store=store).read_file("a/x.txt")) == b"edited"


def test_a_file_made_in_the_new_folder_while_it_downloads_is_kept(
    store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another program writes into the folder the reload just made, before the staged
    files land: the folder is not empty, so each file is renamed in by itself, and the
    one that program wrote is kept (the next commit publishes it), as with any file
    written during a download."""
    vol = Volume.from_name(f"st-{uuid.uuid4().hex[:8]}", store=store, create_if_missing=True)
    m = vol.mount(tmp_path / "mnt", background=False)
    mnt = tmp_path / "mnt"
    with Volume.from_name(vol.name, store=store).batch_upload() as b:
        for i in range(20):
            b.put_file(io.BytesIO(b"volume %d" % i), f"d/f{i:02d}.txt")
    real_mkdir = os.mkdir

    def mkdir(path: Any, *args: Any, **kw: Any) -> None:
        real_mkdir(path, *args, **kw)
        if os.path.basename(os.fspath(path)).startswith(".jv-tmp-"):
            # the staging folder is made: another program writes into the new folder now
            (mnt / "d/f03.txt").write_bytes(b"mine")
            (mnt / "d/notes.md").write_bytes(b"my notes")

    monkeypatch.setattr(os, "mkdir", mkdir)
    with pytest.warns(UserWarning, match=r"kept 1 path\(s\).*: d/f03.txt"):
        m.reload()
    monkeypatch.undo()
    assert (mnt / "d/f03.txt").read_bytes() == b"mine"
    assert (mnt / "d/notes.md").read_bytes() == b"my notes"
    for i in range(20):
        if i != 3:
            assert (mnt / f"d/f{i:02d}.txt").read_bytes() == b"volume %d" % i
    assert not list(mnt.rglob(".jv-tmp-*"))
    st = m.status()
    # never synced here (no version of the volume was ever in its place): added
    assert (st.added, st.modified) == (["d/f03.txt", "d/notes.md"], []), st
    m.commit()
    m.unmount()
    fresh = Volume.from_name(vol.name, store=store)
    assert b"".join(fresh.read_file("d/f03.txt")) == b"mine"
    assert b"".join(fresh.read_file("d/f04.txt")) == b"volume 4"


KILLED_CHILD = """
import os, sys
import jupyter_volume.mount as mount_mod
from jupyter_volume import Volume
from jupyter_volume.store import open_store

mount_mod.BATCH_BYTES = 4 << 10  # a batch per file: the staging folder fills slowly
real_open, opened = os.open, []

def open_(path, *args, **kw):
    p = os.fspath(path)
    if "/.jv-tmp-" in p and not os.path.basename(p).startswith(".jv-tmp-"):
        opened.append(p)  # a file written into a staging folder
        if len(opened) == 6:
            os._exit(9)  # killed, as by SIGKILL, with five files staged
    return real_open(path, *args, **kw)

os.open = open_
Volume.from_name("v", store=open_store(sys.argv[1])).mount(sys.argv[2], background=False)
"""


def test_a_staging_folder_left_by_a_killed_mount_is_removed_and_never_committed(
    opened: tuple[Any, str, dict[str, str]], tmp_path: Path
) -> None:
    store, url, env = opened
    vol = Volume.lookup("v", create_if_missing=True, store=store)
    files = {f"data/f{i:02d}.bin": os.urandom(1000 + i) for i in range(12)}
    with vol.batch_upload() as b:
        for rel, data in files.items():
            b.put_file(io.BytesIO(data), rel)
    head = vol.history(limit=1)[0].seq
    mnt = tmp_path / "mnt"
    p = subprocess.run(
        [sys.executable, "-c", KILLED_CHILD, url, str(mnt)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 9, p.stderr
    left = list(mnt.glob(".jv-tmp-*"))
    assert len(left) == 1 and left[0].is_dir() and len(list(left[0].iterdir())) == 5, left
    assert not any((mnt / "data").iterdir())  # the new folder, still empty
    m = vol.mount(mnt, background=False)
    assert not list(mnt.rglob(".jv-tmp-*"))
    for rel, data in files.items():
        assert (mnt / rel).read_bytes() == data
    assert vol.history(limit=1)[0].seq == head  # nothing was committed
    st = m.status()
    assert st.clean and st.behind == 0, st
    m.unmount()


def _put_folders(vol: Volume, folders: dict[str, int], size: int) -> dict[str, bytes]:
    files = {f"{d}/f{i:03d}.bin": os.urandom(size) for d, n in folders.items() for i in range(n)}
    with vol.batch_upload() as b:
        for rel, data in files.items():
            b.put_file(io.BytesIO(data), rel)
    return files


def test_a_batchs_staged_files_are_written_on_two_threads_each_into_its_own_folders(
    store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import jupyter_volume.mount as mount_mod

    vol = Volume.from_name(f"st-{uuid.uuid4().hex[:8]}", store=store, create_if_missing=True)
    n = mount_mod.SPLIT_AT // 2 + 10  # two folders: one batch, more than SPLIT_AT files
    files = _put_folders(vol, {"a": n, "b": n}, 100)
    by_thread: dict[int, set[str]] = {}
    real_open = os.open

    def open_(path: Any, *args: Any, **kw: Any) -> int:
        p = os.fspath(path)
        folder = os.path.basename(os.path.dirname(p))
        if folder.startswith(".jv-tmp-") and p.endswith(".bin"):
            by_thread.setdefault(threading.get_ident(), set()).add(folder)
        return real_open(path, *args, **kw)

    # A half handed to the side pool is done by the caller itself if no thread of the
    # pool has taken it by then (on a loaded machine, both halves on one thread): this
    # spy waits until a thread has, so the two threads are certain, not a matter of timing.
    real_beside = mount_mod.beside
    halves: list[int] = []

    def beside_taken(fn: Any, *args: Any) -> Any:
        if getattr(fn, "__name__", "") != "write_staged":
            return real_beside(fn, *args)
        taken = threading.Event()

        def run(*a: Any) -> Any:
            taken.set()
            return fn(*a)

        side = real_beside(run, *args)
        assert taken.wait(60), "no thread of the side pool took the half"
        halves.append(len(args[0]))
        return side

    monkeypatch.setattr(mount_mod, "beside", beside_taken)
    monkeypatch.setattr(os, "open", open_)
    m = vol.mount(tmp_path / "m", background=False)
    monkeypatch.undo()
    assert halves == [n], halves  # one batch, its first half beside
    assert len(by_thread) == 2, by_thread
    first, second = by_thread.values()
    assert not first & second, by_thread  # no staging folder written by both
    for rel, data in files.items():
        assert (tmp_path / "m" / rel).read_bytes() == data
    assert not list((tmp_path / "m").rglob(".jv-tmp-*"))
    st = m.status()
    assert st.clean and st.behind == 0, st
    m.unmount()


def test_a_disk_that_fills_while_files_are_staged_keeps_what_landed_and_resumes(
    store: Any, tmpfs: Path
) -> None:
    """Two folders of 600 files of 4 KiB (one batch, written on two threads) on a disk
    with room for about 750: the mount fails saying the disk is full; every file it left
    is whole and recorded, no staging folder is left, and mounting again finishes."""
    from jupyter_volume.errors import LocalFolderError

    vol = Volume.from_name(f"st-{uuid.uuid4().hex[:8]}", store=store, create_if_missing=True)
    files = _put_folders(vol, {"a": 600, "b": 600}, 4096)
    head = vol.history(limit=1)[0].seq
    ballast = tmpfs / "ballast"
    ballast.write_bytes(b"\0" * (5 << 20))
    mnt = tmpfs / "mnt"
    with pytest.raises(LocalFolderError, match="disk is full"):
        vol.mount(mnt, background=False)
    landed = [p for p in mnt.rglob("*.bin")]
    assert 0 < len(landed) < len(files), len(landed)
    for p in landed:
        assert p.read_bytes() == files[p.relative_to(mnt).as_posix()]
    assert not list(mnt.rglob(".jv-tmp-*"))
    ballast.unlink()
    m = vol.mount(mnt, background=False)  # the same folder: resumes
    for rel, data in files.items():
        assert (mnt / rel).read_bytes() == data
    st = m.status()
    assert st.clean and st.behind == 0, st
    assert vol.history(limit=1)[0].seq == head  # nothing was committed back
    m.unmount()
