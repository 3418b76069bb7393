"""A process forked after jupyter-volume did work (``multiprocessing``'s default start
method on Linux, e.g. a ``Pool`` in a notebook) can use it: the process-wide thread
pools are made again in the child instead of waiting on threads that do not exist there.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

from jupyter_volume import Volume


def _child(args: tuple[str, str, int]) -> int:
    store, mount_root, i = args
    vol = Volume("forked", store=store)
    with vol.batch_upload() as batch:  # uploads and downloads on the shared pools
        batch.put_file(__file__, f"/child-{i}.py")
    assert b"".join(vol.read_file(f"/child-{i}.py")) == Path(__file__).read_bytes()
    folder = Path(mount_root) / f"m{i}"
    folder.mkdir()
    with vol.mount(folder, background=False) as m:  # a mount's reads and commit
        assert (folder / "parent.bin").read_bytes() == b"p" * (6 << 20)
        (folder / f"big-{i}.bin").write_bytes(bytes([i]) * (5 << 20))
        m.commit()
    return os.getpid()


def test_forked_children_commit_and_read(tmp_path: Path) -> None:
    store = (tmp_path / "store").as_uri()
    vol = Volume("forked", store=store, create_if_missing=True)
    with vol.batch_upload() as batch:
        batch.put_file(__file__, "/parent.py")
    parent = tmp_path / "parent"
    parent.mkdir()
    with vol.mount(parent, background=False) as m:  # the parent's pools now have threads
        (parent / "parent.bin").write_bytes(b"p" * (6 << 20))
        m.commit()
        assert (parent / "parent.bin").read_bytes() == b"p" * (6 << 20)
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        result = pool.map_async(_child, [(store, str(tmp_path), i) for i in range(3)])
        pids = result.get(timeout=120)  # a hang here is the bug this test is about
    assert os.getpid() not in pids
    vol.refresh()
    names = {e.path for e in vol.listdir("/")}
    assert {"parent.py", "parent.bin", "child-0.py", "big-2.bin"} <= names
    assert b"".join(vol.read_file("/big-1.bin")) == bytes([1]) * (5 << 20)
