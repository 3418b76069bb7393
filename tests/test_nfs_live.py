"""Live network file system folders (``nfs.mount``), with real processes on a local store
and SeaweedFS: changes made by any process in one mount appear in the others with no
commit or reload call. Every wait is a poll with a generous deadline that only guards
against hangs; latency is measured by the bench, never asserted here.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_volume import NetworkFileSystem
from jupyter_volume.errors import InvalidError, StoreError
from jupyter_volume.livesync import LiveMount
from jupyter_volume.store import Store
from jupyter_volume.store.s3 import S3Store
from jupyter_volume.testing.seaweedfs import SeaweedFS

pytestmark = pytest.mark.slow  # long in all: started first (conftest)

try:
    from .faultproxy import FaultProxy
except ImportError:  # tests/ is not a package
    from faultproxy import FaultProxy  # type: ignore[no-redef]

HANG_GUARD = 90.0  # seconds: a poll that takes this long means the sync is broken


@contextlib.contextmanager
def _children(
    script: str, argvs: list[list[str]], env: dict[str, str], *, stdin: bool = False
) -> Iterator[list[subprocess.Popen[str]]]:
    """Start ``python -c script ARGV...`` once per argv (text pipes for stdout and stderr,
    and for stdin when asked); every one is killed and reaped when the block ends."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, *argv],
            env=env,
            stdin=subprocess.PIPE if stdin else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in argvs
    ]
    try:
        yield procs
    finally:
        for p in procs:
            p.kill()
            p.wait()


# A live folder in a child process; on stdin, "status" prints its status as JSON, an
# empty line unmounts it.
MOUNTER = """
import json, sys
from jupyter_volume import NetworkFileSystem
name, url, path = sys.argv[1:4]
m = NetworkFileSystem.from_name(name, store=url).mount(path)
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() != "status":
        break
    st = m.status()
    print(json.dumps({"waiting": st.waiting, "clean": st.clean, "error": m.last_error,
                      "text": str(st)}), flush=True)
m.unmount()
print("unmounted", flush=True)
"""


def wait_for(cond: Callable[[], Any], what: str, timeout: float = HANG_GUARD) -> Any:
    """Poll ``cond`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = cond()
        except OSError:
            got = None  # a file being replaced or removed while we look
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def content(p: Path) -> bytes | None:
    try:
        return p.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


class Mounter:
    """A child process holding a live mount of one NFS at ``path`` until :meth:`stop`."""

    def __init__(self, name: str, url: str, path: Path, env: dict[str, str]) -> None:
        self.path = path
        self.proc = subprocess.Popen(
            [sys.executable, "-c", MOUNTER, name, url, str(path)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if line.strip() != "ready":
            self.proc.kill()
            raise AssertionError(f"mount child failed: {line}{self.proc.stderr.read()}")  # type: ignore[union-attr]

    def status(self) -> dict[str, Any]:
        """The child's live folder's status (waiting paths, clean, last error, text)."""
        self.proc.stdin.write("status\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        return json.loads(self.proc.stdout.readline())  # type: ignore[union-attr]

    def stop(self) -> None:
        """Unmount (which flushes) and wait for the child."""
        if self.proc.poll() is None:
            out, err = self.proc.communicate("\n", timeout=HANG_GUARD)
            assert self.proc.returncode == 0, f"mount child failed:\n{out}\n{err}"
            assert "unmounted" in out

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=60)


@pytest.fixture
def env(opened: tuple[Store, str, dict[str, str]]) -> dict[str, str]:
    _, _, extra = opened
    return {**os.environ, **extra, "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def shared(opened: tuple[Store, str, dict[str, str]]) -> NetworkFileSystem:
    store, _, _ = opened
    return NetworkFileSystem.from_name("shared", create_if_missing=True, store=store).hydrate()


@pytest.fixture
def two_mounts(
    opened: tuple[Store, str, dict[str, str]],
    shared: NetworkFileSystem,
    env: dict[str, str],
    tmp_path: Path,
) -> Iterator[tuple[Mounter, Mounter]]:
    _, url, _ = opened
    shared.write_file("before.txt", io.BytesIO(b"there before"))
    a = Mounter("shared", url, tmp_path / "a", env)
    try:
        b = Mounter("shared", url, tmp_path / "b", env)
    except BaseException:
        a.kill()
        raise
    try:
        yield a, b
    finally:
        for m in (a, b):
            try:
                m.stop()
            finally:
                m.kill()


def sh(script: str, cwd: Path) -> None:
    """A third process changes the folder (plain shell tools, not this package)."""
    subprocess.run(["sh", "-c", script], cwd=cwd, check=True, timeout=60)


def gone(p: Path) -> bool:
    return not os.path.lexists(p)


# -- propagation -----------------------------------------------------------------------------
def test_changes_by_other_processes_appear_in_the_other_mount(
    two_mounts: tuple[Mounter, Mounter], shared: NetworkFileSystem
) -> None:
    a, b = two_mounts
    A, B = a.path, b.path
    assert content(A / "before.txt") == b"there before" == content(B / "before.txt")

    sh("printf 'from a subprocess' > new.txt", A)
    wait_for(lambda: content(B / "new.txt") == b"from a subprocess", "a new file")

    sh("mv new.txt moved.txt", A)
    wait_for(lambda: content(B / "moved.txt") == b"from a subprocess", "the moved file")
    wait_for(lambda: gone(B / "new.txt"), "the old name to go")

    sh("mkdir -p dir/sub && printf deep > dir/sub/f && cp -r dir copy", A)
    wait_for(lambda: content(B / "dir/sub/f") == b"deep", "a new folder tree")
    wait_for(lambda: content(B / "copy/sub/f") == b"deep", "a copied folder tree")

    sh("mv dir renamed", A)
    wait_for(lambda: content(B / "renamed/sub/f") == b"deep", "the renamed folder")
    wait_for(lambda: gone(B / "dir"), "the folder's old name to go")

    sh("rm -r renamed copy", B)  # and the other way round
    wait_for(lambda: gone(A / "renamed") and gone(A / "copy"), "rm -r in the other mount")

    shared.write_file("api/x.txt", io.BytesIO(b"from the API"))
    wait_for(lambda: content(A / "api/x.txt") == b"from the API", "an API write in mount a")
    wait_for(lambda: content(B / "api/x.txt") == b"from the API", "an API write in mount b")

    # and the store saw every step, as commits nobody asked for
    wait_for(lambda: not any(e.path in ("renamed", "copy") for e in shared.listdir("/")), "store")
    assert b"".join(shared.read_file("moved.txt")) == b"from a subprocess"
    assert len(shared.history()) > 6


WRITER = """
import os, sys, time
path, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(1, n + 1):
    with open(path, "wb") as f:  # in place, as most programs write
        half = size // 2
        f.write(bytes([65 + i]) * half)
        f.flush()
        time.sleep(0.05)  # a reader of this very file could see half of it
        f.write(bytes([65 + i]) * (size - half))
    print(i, flush=True)
    time.sleep(1.5)
"""


# What a live folder does with files being read, held open or cut off by SIGKILL is the
# same whatever the store (it happens in the folders): these run on the local store only,
# to keep CI time down; the store-facing cases run on both.
@pytest.mark.parametrize("store_url_env", ["local"], indirect=True)
def test_a_reader_never_sees_a_mix_of_versions(two_mounts: tuple[Mounter, Mounter]) -> None:
    a, b = two_mounts
    size = 1 << 18
    (a.path / "f").write_bytes(b"A" * size)
    wait_for(lambda: content(b.path / "f") == b"A" * size, "the first version")
    n = 4
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(a.path / "f"), str(n), str(size)],
        stdout=subprocess.PIPE,
        text=True,
    )
    seen: set[int] = set()
    last = bytes([65 + n]) * size
    deadline = time.monotonic() + HANG_GUARD
    try:
        while True:
            data = (b.path / "f").read_bytes()  # opened anew each time: whichever is there
            assert len(data) == size and data == data[:1] * size, (
                f"a torn read: {len(data)} bytes, {sorted(set(data))[:4]}"
            )
            seen.add(data[0])
            if data == last:
                break
            assert time.monotonic() < deadline, "the last version never arrived"
    finally:
        writer.kill()
        writer.wait()
    assert len(seen) >= 2  # the reader did see the file change under it


# What a live folder does with files being read, held open or cut off by SIGKILL is the
# same whatever the store (it happens in the folders): these run on the local store only,
# to keep CI time down; the store-facing cases run on both.
@pytest.mark.parametrize("store_url_env", ["local"], indirect=True)
def test_a_local_writer_holding_a_file_open_is_not_overwritten(
    two_mounts: tuple[Mounter, Mounter], shared: NetworkFileSystem
) -> None:
    a, b = two_mounts
    (b.path / "held.txt").write_bytes(b"v1")
    wait_for(lambda: content(a.path / "held.txt") == b"v1", "v1 in a")
    f = open(b.path / "held.txt", "r+b")  # noqa: SIM115 - held open across the remote change
    try:
        ino = os.fstat(f.fileno()).st_ino
        shared.write_file("held.txt", io.BytesIO(b"remote v2"))
        wait_for(lambda: content(a.path / "held.txt") == b"remote v2", "v2 in a")
        time.sleep(3)  # several sync rounds of b: none may replace the file under its writer
        assert os.stat(b.path / "held.txt").st_ino == ino
        assert content(b.path / "held.txt") == b"v1"
        f.seek(0)
        f.write(b"local v3")
        f.truncate()
    finally:
        f.close()
    # closed: its change is the newest, so it wins; the remote version stays in history
    wait_for(lambda: content(a.path / "held.txt") == b"local v3", "the writer's version in a")
    assert b"".join(shared.read_file("held.txt")) == b"local v3"
    assert content(b.path / "held.txt") == b"local v3"

    # a file held open for writing and closed unchanged takes the waiting remote version
    g = open(b.path / "held.txt", "ab")  # noqa: SIM115
    try:
        shared.write_file("held.txt", io.BytesIO(b"remote v4"))
        wait_for(lambda: content(a.path / "held.txt") == b"remote v4", "v4 in a")
        time.sleep(2)
        assert content(b.path / "held.txt") == b"local v3"
    finally:
        g.close()
    wait_for(lambda: content(b.path / "held.txt") == b"remote v4", "v4 in b after close")


SLOW_WRITER = """
import sys, time
path, size = sys.argv[1], int(sys.argv[2])
with open(path, "wb") as f:
    f.write(b"x" * (size // 2))
    f.flush()
    print("half", flush=True)
    time.sleep(600)  # killed here
"""

SLOW_API_WRITER = """
import io, sys, time
from jupyter_volume import NetworkFileSystem

class Slow(io.RawIOBase):
    sent = 0
    def readable(self):
        return True
    def readinto(self, b):
        if self.sent >= 1 << 20:
            print("half", flush=True)
            time.sleep(600)  # killed here
        n = min(len(b), 1 << 16)
        b[:n] = b"y" * n
        self.sent += n
        return n

NetworkFileSystem.from_name("shared", store=sys.argv[1]).write_file("f", io.BufferedReader(Slow()))
"""


# What a live folder does with files being read, held open or cut off by SIGKILL is the
# same whatever the store (it happens in the folders): these run on the local store only,
# to keep CI time down; the store-facing cases run on both.
@pytest.mark.parametrize("store_url_env", ["local"], indirect=True)
def test_a_writer_killed_mid_write_leaves_the_previous_whole_version(
    opened: tuple[Store, str, dict[str, str]],
    two_mounts: tuple[Mounter, Mounter],
    shared: NetworkFileSystem,
    env: dict[str, str],
) -> None:
    _, url, _ = opened
    a, b = two_mounts
    whole = b"whole " * 1000
    shared.write_file("f", io.BytesIO(whole))
    wait_for(lambda: content(a.path / "f") == whole == content(b.path / "f"), "the whole version")

    # A writer through the API (a stream cut off halfway): nothing of it is ever visible.
    p = subprocess.Popen(
        [sys.executable, "-c", SLOW_API_WRITER, url], env=env, stdout=subprocess.PIPE, text=True
    )
    assert p.stdout.readline().strip() == "half"  # type: ignore[union-attr]
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    time.sleep(3)
    assert b"".join(shared.read_file("f")) == whole
    assert content(a.path / "f") == whole == content(b.path / "f")

    # A writer in mount a, killed while it holds the file open: while it lives the other
    # side keeps the previous whole version; what it left behind is then synced as a
    # whole file (a torn file only if the program wrote it torn, as on any disk).
    p = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, str(a.path / "f"), str(1 << 20)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdout.readline().strip() == "half"  # type: ignore[union-attr]
    time.sleep(3)
    assert content(b.path / "f") == whole
    assert b"".join(shared.read_file("f")) == whole
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    left = content(a.path / "f")
    wait_for(lambda: content(b.path / "f") == left, "what the killed writer left")


# -- many writers --------------------------------------------------------------------------------
MANY = """
import json, os, sys, time
from pathlib import Path
from jupyter_volume import NetworkFileSystem
name, url, folder, k, n, seconds = sys.argv[1:7]
k, n, seconds = int(k), int(n), float(seconds)
root = Path(folder)
m = NetworkFileSystem.from_name(name, store=url).mount(root)
mine = root / f"w{k}"
mine.mkdir(exist_ok=True)
last = {}
end = time.monotonic() + seconds
i = 0
while time.monotonic() < end:
    rel = f"w{k}/f{i % 5}"
    data = f"{k}:{i}".encode()
    (root / rel).write_bytes(data)
    last[rel] = data.decode()
    i += 1
    time.sleep(0.2)
(root / f"w{k}" / "final.json").write_text(json.dumps(last))
# wait until this folder holds every writer's last version of every file
deadline = time.monotonic() + 240
while True:
    ok = True
    for j in range(n):
        try:
            theirs = json.loads((root / f"w{j}" / "final.json").read_text())
        except (OSError, ValueError):
            ok = False
            break
        for rel, data in theirs.items():
            try:
                if (root / rel).read_text() != data:
                    ok = False
            except OSError:
                ok = False
    if ok:
        break
    if time.monotonic() > deadline:
        sys.exit("never converged")
    time.sleep(0.2)
print(i, flush=True)
sys.stdin.readline()  # all writers stay mounted until everybody converged
m.unmount()
"""


# SeaweedFS only: this is the slowest test here (about 45 s), and the local store's
# concurrent mounts are covered by every other test in this file (CI time budget).
@pytest.mark.parametrize("store_url_env", ["s3"], indirect=True)
def test_eight_live_writers_for_twenty_seconds_converge(
    opened: tuple[Store, str, dict[str, str]],
    shared: NetworkFileSystem,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    _, url, _ = opened
    n, seconds = 8, 20
    argvs = [
        ["shared", url, str(tmp_path / f"m{k}"), str(k), str(n), str(seconds)] for k in range(n)
    ]
    with _children(MANY, argvs, env, stdin=True) as procs:
        counts = []
        for p in procs:
            line = p.stdout.readline()  # type: ignore[union-attr]
            assert line.strip(), f"writer failed: {p.stderr.read()}"  # type: ignore[union-attr]
            counts.append(int(line))
        for p in procs:
            out, err = p.communicate("\n", timeout=HANG_GUARD)
            assert p.returncode == 0, err
    assert all(c > 10 for c in counts)  # every writer really wrote, many times
    for k in range(n):
        last = json.loads(b"".join(shared.read_file(f"w{k}/final.json")))
        for rel, data in last.items():
            assert b"".join(shared.read_file(rel)) == data.encode()


# -- outages and crashes ------------------------------------------------------------------------------
class OutageProxy(FaultProxy):
    """The fault proxy, plus a switch: while ``down``, every request's connection is
    dropped unanswered, as when the store's host is unreachable."""

    down = False

    def _handle(self, conn: Any, request: Any) -> bool:
        if self.down:
            with self._lock:
                self.counts["dropped while down"] += 1
            return False  # the connection is closed unanswered
        return super()._handle(conn, request)


@pytest.mark.s3
def test_an_outage_keeps_the_folder_working_and_pushes_when_back(
    seaweedfs: SeaweedFS,
    s3_bucket: str,
    s3_client: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for k, v in seaweedfs.env().items():
        monkeypatch.setenv(k, v)
    prefix = f"t/nfs-outage-{uuid.uuid4().hex[:10]}"
    direct_url = f"s3://{s3_bucket}/{prefix}?endpoint_url={seaweedfs.endpoint}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with OutageProxy(seaweedfs.endpoint) as proxy:
        store = S3Store(
            s3_bucket,
            prefix,
            endpoint_url=proxy.url,
            client=s3_client(proxy.url, connect_timeout=2, read_timeout=5),
        )
        store.backoff_base, store.backoff_cap, store.max_attempts = 0.01, 0.1, 3
        nfs = NetworkFileSystem.from_name("out", create_if_missing=True, store=store)
        nfs.write_file("seen-by-all.txt", io.BytesIO(b"1"))
        other = Mounter("out", direct_url, tmp_path / "other", env)
        try:
            mine = nfs.mount(tmp_path / "mine")
            assert isinstance(mine, LiveMount)
            proxy.down = True
            (tmp_path / "mine" / "written-offline.txt").write_bytes(b"while out")
            (tmp_path / "mine" / "seen-by-all.txt").write_bytes(b"2")
            wait_for(lambda: mine.offline_since is not None, "the outage to be noticed")
            assert proxy.counts["dropped while down"] > 0
            st = mine.status()
            assert st.offline_since is not None and "OFFLINE" in str(st)
            with pytest.warns(UserWarning, match="cannot reach its store"):
                mine._after_cell()
            assert (tmp_path / "mine" / "written-offline.txt").read_bytes() == b"while out"
            assert gone(tmp_path / "other" / "written-offline.txt")
            proxy.down = False
            wait_for(
                lambda: content(tmp_path / "other" / "written-offline.txt") == b"while out",
                "the offline write to arrive once the store is back",
            )
            wait_for(lambda: content(tmp_path / "other" / "seen-by-all.txt") == b"2", "the edit")
            wait_for(lambda: mine.offline_since is None, "the mount to notice it is back")
            assert "in sync" in str(mine.status())
            mine.unmount()
        finally:
            other.stop()
            other.kill()
            store.close()


def test_remount_after_a_crash_pushes_what_was_never_synced(
    opened: tuple[Store, str, dict[str, str]],
    shared: NetworkFileSystem,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    _, url, _ = opened
    shared.write_file("kept.txt", io.BytesIO(b"store version"))
    folder = tmp_path / "crashy"
    m = Mounter("shared", url, folder, env)
    wait_for(lambda: content(folder / "kept.txt") == b"store version", "the first sync")
    os.kill(m.proc.pid, signal.SIGSTOP)  # frozen: it can sync nothing more
    (folder / "kept.txt").write_bytes(b"local edit")
    (folder / "unsynced.txt").write_bytes(b"never pushed")
    os.kill(m.proc.pid, signal.SIGKILL)
    m.proc.wait()
    with pytest.raises(FileNotFoundError):
        b"".join(shared.read_file("unsynced.txt"))

    again = shared.mount(folder)
    try:
        assert b"".join(shared.read_file("unsynced.txt")) == b"never pushed"
        assert b"".join(shared.read_file("kept.txt")) == b"local edit"
        assert content(folder / "kept.txt") == b"local edit"
    finally:
        again.unmount()


# -- bad input changes nothing ---------------------------------------------------------------------
def test_bad_input_gives_a_clear_error_and_changes_nothing(
    shared: NetworkFileSystem, tmp_path: Path
) -> None:
    unrelated = tmp_path / "unrelated"
    unrelated.mkdir()
    (unrelated / "mine.txt").write_text("do not touch")
    seq = shared.history(1)[0].seq
    with pytest.raises(InvalidError, match="not empty"):
        shared.mount(unrelated)
    assert [p.name for p in unrelated.iterdir()] == ["mine.txt"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(InvalidError, match="it is a file"):
        shared.mount(a_file)
    assert shared.history(1)[0].seq == seq

    with shared.mount(tmp_path / "ok") as m:
        with pytest.raises(InvalidError, match="commits by itself"):
            m.commit()
        with pytest.raises(InvalidError, match="reloads by itself"):
            m.reload()
        with pytest.raises(InvalidError, match="escapes"):
            shared.write_file("../../etc/passwd", io.BytesIO(b"x"))
    assert shared.history(1)[0].seq == seq
    with pytest.raises((InvalidError, StoreError)):
        NetworkFileSystem.from_name("bad name", store=shared.store)


# -- the shared lock -------------------------------------------------------------------------------
SHELVER = """
import shelve, sys
from pathlib import Path
from jupyter_volume import NetworkFileSystem
name, url, folder, k, n = sys.argv[1:6]
nfs = NetworkFileSystem.from_name(name, store=url)
m = nfs.mount(folder)
for i in range(int(n)):
    with nfs.lock("shelf", timeout=300):  # the guide's shelve cache, with its lock
        with shelve.open(str(Path(folder) / "shelf")) as db:
            db["count"] = db.get("count", 0) + 1
            db[f"w{k}-{i}"] = True
m.unmount()
print("done", flush=True)
"""


def test_shelve_cache_with_the_lock_loses_no_update(
    opened: tuple[Store, str, dict[str, str]],
    shared: NetworkFileSystem,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    _, url, _ = opened
    writers, rounds = 4, 5
    argvs = [["shared", url, str(tmp_path / f"s{k}"), str(k), str(rounds)] for k in range(writers)]
    with _children(SHELVER, argvs, env) as procs:
        for p in procs:
            out, err = p.communicate(timeout=300)
            assert p.returncode == 0 and "done" in out, err
    import shelve

    with shared.mount(tmp_path / "check") as m:
        assert m.status().clean
        with shelve.open(str(tmp_path / "check" / "shelf"), flag="r") as db:
            assert db["count"] == writers * rounds
            assert all(db[f"w{k}-{i}"] for k in range(writers) for i in range(rounds))


def test_the_lock_excludes_other_holders(shared: NetworkFileSystem) -> None:
    other = NetworkFileSystem.from_name("shared", store=shared.store)
    with shared.lock("cache.db", lease=30) as held:
        assert held.held
        with pytest.raises(TimeoutError, match="network file system 'shared'"):
            other.lock("cache.db", timeout=0.5).acquire()
        other.lock("another-file", timeout=5).acquire().release()  # locks are per file
    with other.lock("cache.db", timeout=5):
        pass
    with pytest.raises(InvalidError):
        shared.lock("/")
    with pytest.raises(InvalidError, match="escapes"):
        shared.lock("../x")


@pytest.mark.parametrize("store_url_env", ["local"], indirect=True)
def test_a_folder_whose_nfs_is_deleted_elsewhere_stops_syncing_and_keeps_its_files(
    shared: NetworkFileSystem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jupyter_volume import livesync, names
    from jupyter_volume.nfs import NAMESPACE

    monkeypatch.setattr(livesync, "EXISTS_EVERY", 1.0)  # instead of every 10 s

    shared.write_file("kept.txt", io.BytesIO(b"mine"))
    m = shared.mount(tmp_path / "orphan")
    # as another process would delete it (this process's own delete would also unmount)
    names.delete(shared.store, "shared", namespace=NAMESPACE)
    wait_for(lambda: m.last_error and "was deleted" in m.last_error, "the deletion to be noticed")
    wait_for(lambda: not m._thread.is_alive(), "the sync loop to stop")
    assert (tmp_path / "orphan" / "kept.txt").read_bytes() == b"mine"
    with pytest.warns(UserWarning, match="was deleted"):
        m._after_cell()


@pytest.mark.parametrize("store_url_env", ["local"], indirect=True)
def test_a_live_folder_with_an_interval_too_long_to_wait_for_still_syncs(
    shared: NetworkFileSystem, tmp_path: Path
) -> None:
    """A wait longer than a thread can (1e10 s) raised OverflowError in the sync loop
    and ended it at once: nothing synced again, and nobody was told. Capped, the folder
    still syncs when woken (after each cell, or on a lock or unmount)."""
    m = shared.mount(tmp_path / "m", interval=1e10)
    try:
        (tmp_path / "m" / "late.txt").write_text("synced")
        time.sleep(0.5)  # the loop has begun its wait (not a measurement)
        assert m._thread.is_alive(), m.last_error
        m._after_cell()  # a cell ended: the folder syncs
        wait_for(lambda: any(e.path == "late.txt" for e in shared.listdir("/")), "late.txt to sync")
    finally:
        m.unmount()


@pytest.mark.parametrize("store_url_env", ["local"], indirect=True)
def test_a_live_folder_applies_the_retention_policy_by_itself(
    shared: NetworkFileSystem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jupyter_volume import nfs as nfs_mod

    for i in range(5):
        shared.write_file("f", io.BytesIO(b"v%d" % i))
    shared.set_retention(keep_last=2, grace=0)
    engine = shared._vol  # read history through it: only the live folder may run retention
    kept = lambda: [c for c in engine.history() if c.kind not in ("gc", "create")]  # noqa: E731
    assert len(kept()) == 5
    monkeypatch.setattr(nfs_mod, "RETENTION_EVERY", 0.5)  # instead of an hour
    with shared.mount(tmp_path / "m"):
        wait_for(lambda: len(kept()) <= 2, "the live folder's automatic retention run")
    assert b"".join(shared.read_file("f")) == b"v4"


@pytest.mark.parametrize("store_url_env", ["local"], indirect=True)
def test_an_explicit_push_names_the_files_it_had_to_leave(
    shared: NetworkFileSystem, tmp_path: Path
) -> None:
    m = shared.mount(tmp_path / "m", settle_max_wait=0.0)  # do not wait for the writer
    try:
        with open(tmp_path / "m" / "busy.db", "wb") as f:
            f.write(b"half")
            f.flush()
            with pytest.warns(UserWarning, match=r"not pushed yet.*: busy\.db \("):
                m.sync()
            assert "push waits: busy.db" in str(m.status())
        time.sleep(1)  # closed, and quiet for longer than the settle interval
        m.sync()
        assert b"".join(shared.read_file("busy.db")) == b"half"
    finally:
        m.unmount()


@pytest.mark.parametrize("store_url_env", ["local"], indirect=True)
def test_a_local_delete_or_rename_is_not_undone_by_another_writers_edit(
    shared: NetworkFileSystem, tmp_path: Path
) -> None:
    # A file deleted (or renamed away) here while another writer edits it: the local act
    # is the newer one. The pull that brings the edit must not put the file back; the
    # next push publishes the deletion, and the edit stays in history.
    shared.write_file("f", io.BytesIO(b"v1"))
    shared.write_file("r", io.BytesIO(b"v1"))
    # a settle interval longer than the test: the local changes wait, the pulls go on
    m = shared.mount(tmp_path / "m", settle=3600)
    try:
        wait_for(lambda: content(m.path / "f") == content(m.path / "r") == b"v1", "v1 here")
        os.remove(m.path / "f")
        os.rename(m.path / "r", m.path / "r2")
        shared.write_file("f", io.BytesIO(b"v2 remote"))
        shared.write_file("r", io.BytesIO(b"v2 remote"))
        shared.write_file("marker", io.BytesIO(b""))  # pulled with (or after) the edits
        wait_for(lambda: content(m.path / "marker") == b"", "the remote commits pulled")
        assert gone(m.path / "f") and gone(m.path / "r")  # before the fix: both came back
        assert content(m.path / "r2") == b"v1"
    finally:
        with pytest.warns(UserWarning, match=r"3 file\(s\) not pushed yet"):
            m.unmount()  # not quiet for an hour: left for the next mount, and said so
    with shared.mount(tmp_path / "m"):  # mounted again, quiet now: the changes go out
        wait_for(lambda: "r2" in [e.path for e in shared.listdir("/")], "the push")
    assert sorted(e.path for e in shared.listdir("/")) == ["marker", "r2"]
    hist = shared._vol  # the other writer's edit stays in history
    assert any(
        b"".join(hist.read_file("f", at=c.seq)) == b"v2 remote"
        for c in hist.history()
        if c.kind not in ("gc", "create") and "f" in [e.path for e in hist.listdir("/", at=c.seq)]
    )


@pytest.mark.parametrize("store_url_env", ["local"], indirect=True)
def test_a_remote_version_waiting_for_a_writer_still_comes_after_a_remount(
    shared: NetworkFileSystem, tmp_path: Path
) -> None:
    # A program holds f open for writing (writing nothing) while another writer commits a
    # new version: it waits. The folder is unmounted (a kernel restart), the program
    # closes f unchanged, the folder is mounted again: the new version must arrive.
    shared.write_file("f", io.BytesIO(b"v1"))
    path = tmp_path / "m"
    m = shared.mount(path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; f = open(sys.argv[1], 'r+b'); print('open', "
         "flush=True); sys.stdin.readline()", str(path / "f")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: content(path / "f") == b"v1", "v1 here")
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        shared.write_file("f", io.BytesIO(b"v2 from another writer"))
        wait_for(lambda: m.status().waiting == ["f"], "v2 to wait for the writer")
        m.unmount()
    finally:
        holder.communicate("\n", timeout=60)  # closes f, unchanged
    with shared.mount(path):  # before the fix: f stayed v1 for good, "in sync"
        wait_for(lambda: content(path / "f") == b"v2 from another writer", "v2 after remount")


@pytest.mark.parametrize("store_url_env", ["local"], indirect=True)
def test_mount_refuses_bad_ignore_and_interval_in_live_folder_words(
    shared: NetworkFileSystem, tmp_path: Path
) -> None:
    from jupyter_volume.mount import mounts

    shared.write_file("data.txt", io.BytesIO(b"x"))
    # A string where a list belongs was taken letter by letter: '*' ignored every file,
    # so the folder silently synced nothing at all.
    with pytest.raises(InvalidError, match=r"list of name patterns.*\['\*\.tmp'\]"):
        shared.mount(tmp_path / "a", ignore="*.tmp")
    with pytest.raises(InvalidError, match="list of name patterns"):
        shared.mount(tmp_path / "a", ignore=["*.tmp", 3])  # type: ignore[list-item]
    # The message spoke of a volume mount's "commit interval" and background=False.
    for bad in (-1, 0, float("nan"), float("inf"), "1", True):
        with pytest.raises(InvalidError, match="sync interval of a live folder") as e:
            shared.mount(tmp_path / "b", interval=bad)  # type: ignore[arg-type]
        assert "commit" not in str(e.value) and "background" not in str(e.value)
    assert mounts() == [] and not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("mine")
    # before the fix: "... the folder is not empty and is not this volume's mount"
    with pytest.raises(InvalidError, match="not empty") as e:
        shared.mount(tmp_path / "full")
    assert "volume" not in str(e.value), str(e.value)
    with shared.mount(tmp_path / "ok", ignore=["*.tmp"], interval=0.2) as m:
        assert m.ignore == ["*.tmp"]
        assert content(tmp_path / "ok" / "data.txt") == b"x"


@pytest.mark.parametrize("store_url_env", ["local"], indirect=True)
def test_a_folder_whose_nfs_was_deleted_says_so_in_status_sync_and_unmount(
    shared: NetworkFileSystem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jupyter_volume import livesync, names
    from jupyter_volume.errors import NotFoundError
    from jupyter_volume.mount import mounts
    from jupyter_volume.nfs import NAMESPACE

    monkeypatch.setattr(livesync, "EXISTS_EVERY", 0.2)  # instead of every 10 s
    m = shared.mount(tmp_path / "orphan")
    names.delete(shared.store, "shared", namespace=NAMESPACE)  # as another process would
    wait_for(lambda: not m._thread.is_alive(), "the sync loop to stop")
    (tmp_path / "orphan" / "late.txt").write_text("written after the deletion")
    # before the fix: "live at ... in sync at commit N", and repr said "(live)"
    st = m.status()
    assert st.stopped and "was deleted" in st.stopped
    text = str(st)
    assert "was deleted" in text and "in sync" not in text and "live at" not in text, text
    assert "stopped" in repr(m) and "live)" not in repr(m)
    # before the fix: "volume 'shared' no longer exists ... (its name may now be another
    # volume's)": words of a volume, which a network file system never is
    with pytest.raises(NotFoundError, match="network file system 'shared' was deleted") as e:
        m.sync()
    assert "volume '" not in str(e.value)
    with pytest.raises(NotFoundError, match="network file system 'shared' was deleted") as e:
        m.unmount()
    assert "volume '" not in str(e.value) and "late.txt" not in str(e.value)
    assert mounts() == []
    assert content(tmp_path / "orphan" / "late.txt") == b"written after the deletion"


@pytest.mark.parametrize("store_url_env", ["local"], indirect=True)
def test_a_live_folder_removed_while_mounted_says_so_in_its_own_words(
    shared: NetworkFileSystem, tmp_path: Path
) -> None:
    import shutil

    shared.write_file("kept.txt", io.BytesIO(b"kept"))
    m = shared.mount(tmp_path / "m")
    try:
        wait_for(lambda: content(tmp_path / "m" / "kept.txt") == b"kept", "kept.txt here")
        shutil.rmtree(tmp_path / "m")
        wait_for(lambda: m.last_error, "the sync loop to report the lost folder")
        # before the fix: "the mounted folder ... (volume 'shared') was removed while
        # mounted: nothing was committed, and the volume still has every file ..."
        assert "network file system 'shared'" in m.last_error, m.last_error
        assert "volume" not in m.last_error, m.last_error
        assert [e.path for e in shared.listdir("/")] == ["kept.txt"]  # nothing deleted
        with pytest.warns(UserWarning, match="network file system 'shared' was removed") as got:
            m.unmount()
        assert "volume" not in str(got[0].message), got[0].message
    finally:
        with contextlib.suppress(Exception):
            m.unmount()
