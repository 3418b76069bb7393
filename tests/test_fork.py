"""A process forked after jupyter-volume did work (``multiprocessing``'s default start
method on Linux, e.g. a ``Pool`` in a notebook) can use it: the process-wide thread
pools are made again in the child instead of waiting on threads that do not exist there,
and an S3 store's child opens connections of its own instead of sharing its parent's
sockets.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
import uuid
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


# Run in a fresh interpreter: the test process holds other clients' connections to the
# same server (fixtures, earlier tests), which no child of it would drop.
S3_SCENARIO = textwrap.dedent(
    """
    import io, json, multiprocessing, os, sys
    from jupyter_volume import Volume

    url, port = sys.argv[1], int(sys.argv[2])

    def store_sockets():
        # this process's open sockets that are TCP connections to the server's port
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
            n += link.startswith("socket:[") and link[8:-1] in inodes
        return n

    inherited = None

    def count_inherited():
        # a worker's initializer runs right after fork: what it holds came from the parent
        global inherited
        inherited = store_sockets()

    def child(i):
        data = bytes([i]) * (3 << 20) + os.urandom(1000)
        for r in range(3):
            with vol.batch_upload(force=True) as batch:
                batch.put_file(io.BytesIO(data), f"/s3-{i}-{r}.bin")
            assert b"".join(vol.read_file(f"/s3-{i}-{r}.bin")) == data
        return i, inherited

    vol = Volume("forked-s3", store=url, create_if_missing=True)
    with vol.batch_upload() as batch:
        batch.put_file(io.BytesIO(b"p" * (5 << 20)), "/parent.bin")
    assert b"".join(vol.read_file("/parent.bin")) == b"p" * (5 << 20)
    before = store_sockets()  # the parent's pooled connections
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(3, initializer=count_inherited) as pool:
        done = pool.map_async(child, range(6)).get(timeout=180)
    vol.refresh()
    landed = len([e for e in vol.listdir("/") if e.path.startswith("s3-")])
    print(json.dumps({"before": before, "done": done, "landed": landed}))
    """
)


def test_forked_children_use_the_parents_s3_volume_on_connections_of_their_own(
    seaweedfs, s3_bucket: str
) -> None:
    """A child shares its parent's open sockets after fork; a request sent on one could
    be answered to another process (for a conditional PUT: a lost update). Children drop
    the inherited connections and open their own: forked Pool workers upload and read
    through the parent's S3 Volume, everything lands intact, and no worker starts with
    a connection of its parent's."""
    url = f"s3://{s3_bucket}/t/fork-{uuid.uuid4().hex[:10]}?endpoint_url={seaweedfs.endpoint}"
    env = seaweedfs.env()
    port = int(seaweedfs.endpoint.rsplit(":", 1)[1].strip("/"))
    proc = subprocess.run(
        [sys.executable, "-c", S3_SCENARIO, url, str(port)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["before"] > 0  # the parent does keep pooled connections: they exist
    assert sorted(i for i, _n in out["done"]) == list(range(6))
    assert all(n == 0 for _i, n in out["done"]), out  # none kept one of its parent's
    assert out["landed"] == 18
