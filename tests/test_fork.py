"""A process forked after jupyter-volume did work (``multiprocessing``'s default start
method on Linux, e.g. a ``Pool`` in a notebook) can use it: the process-wide thread
pools are made again in the child instead of waiting on threads that do not exist there.
"""

from __future__ import annotations

import io
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


def _store_sockets(port: int) -> int:
    """How many of this process's open sockets are TCP connections to ``port``."""
    inodes = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                cols = line.split()
                if int(cols[2].rsplit(":", 1)[1], 16) == port:
                    inodes.add(cols[9])
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            n += 1
    return n


_PARENT: dict[str, object] = {}


def _count_inherited() -> None:
    # a worker's initializer runs right after fork: what it holds then came from the parent
    _PARENT["inherited"] = _store_sockets(_PARENT["port"])


def _s3_child(i: int) -> tuple[int, int]:
    vol = _PARENT["vol"]
    inherited = _PARENT["inherited"]
    data = bytes([i]) * (3 << 20) + os.urandom(1000)
    for r in range(3):
        with vol.batch_upload(force=True) as batch:
            batch.put_file(io.BytesIO(data), f"/s3-{i}-{r}.bin")
        assert b"".join(vol.read_file(f"/s3-{i}-{r}.bin")) == data
    return i, inherited


def test_forked_children_use_the_parents_s3_volume_on_connections_of_their_own(
    s3_store, seaweedfs
) -> None:
    """A child shares its parent's open sockets after fork; a request sent on one could
    be answered to another process (for a conditional PUT: a lost update). Children drop
    the inherited connections and open their own."""
    vol = Volume("forked-s3", store=s3_store, create_if_missing=True)
    with vol.batch_upload() as batch:
        batch.put_file(io.BytesIO(b"p" * (5 << 20)), "/parent.bin")
    assert b"".join(vol.read_file("/parent.bin")) == b"p" * (5 << 20)
    port = int(seaweedfs.endpoint.rsplit(":", 1)[1].strip("/"))
    assert _store_sockets(port) > 0  # the parent keeps pooled connections: they exist
    _PARENT.update(vol=vol, port=port)
    try:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(3, initializer=_count_inherited) as pool:
            done = pool.map_async(_s3_child, range(6)).get(timeout=180)
    finally:
        _PARENT.clear()
    assert sorted(i for i, _n in done) == list(range(6))
    # no worker kept a connection of its parent's
    assert all(n == 0 for _i, n in done), done
    vol.refresh()
    assert len([e for e in vol.listdir("/") if e.path.startswith("s3-")]) == 18
