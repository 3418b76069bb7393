"""NetworkFileSystem's API, case by case (Modal's ``py/modal/network_file_system.py`` and
``py/test/network_file_system_test.py`` as the checklist), on a local store and SeaweedFS.

The live folder (``nfs.mount``) is tested in test_nfs_live.py.
"""

from __future__ import annotations

import asyncio
import inspect
import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from jupyter_volume import NetworkFileSystem, Volume
from jupyter_volume.aio import _AioDescriptor
from jupyter_volume.errors import AlreadyExistsError, InvalidError, NotFoundError
from jupyter_volume.nfs import DEFAULT_RETENTION
from jupyter_volume.store import Store
from jupyter_volume.testing.wrappers import CountingStore
from jupyter_volume.volume import FileEntryType


def read(nfs: NetworkFileSystem, path: str) -> bytes:
    return b"".join(nfs.read_file(path))


def keys(store: Store, prefix: str = "") -> list[str]:
    return sorted(o.key for o in store.list(prefix))


@pytest.fixture
def nfs(store: Store) -> NetworkFileSystem:
    return NetworkFileSystem.from_name("shared", create_if_missing=True, store=store)


# -- handles and names ---------------------------------------------------------------------------
def test_from_name_is_lazy_and_create_if_missing_creates_on_first_use(store: Store) -> None:
    counting = CountingStore(store)
    handle = NetworkFileSystem.from_name("lazy", create_if_missing=True, store=counting)
    assert counting.ops == []  # nothing is read or written before first use
    assert NetworkFileSystem.objects.list(store=store) == []
    assert handle.listdir("/") == []
    assert [n.name for n in NetworkFileSystem.objects.list(store=store)] == ["lazy"]


def test_missing_nfs_is_not_found_with_the_way_to_create_it(store: Store) -> None:
    handle = NetworkFileSystem.from_name("missing", store=store)  # no error yet: lazy
    with pytest.raises(NotFoundError, match="create_if_missing=True"):
        handle.listdir("/")
    with pytest.raises(FileNotFoundError):
        handle.hydrate()


# store-independent checks (validation before any I/O, the file object's handling)
@pytest.mark.parametrize("store", ["local"], indirect=True)
def test_invalid_name(store: Store) -> None:
    for name in ["has space", "has/slash", "a" * 65, "-x", "..", ""]:
        with pytest.raises(InvalidError, match="invalid network file system name"):
            NetworkFileSystem.from_name(name, store=store)
        with pytest.raises(InvalidError):
            NetworkFileSystem.objects.create(name, store=store)
        with pytest.raises(InvalidError):
            NetworkFileSystem.delete(name, store=store)
    assert keys(store, "nfs-names/") == []


def test_names_are_their_own_namespace(store: Store) -> None:
    Volume.objects.create("both", store=store)
    with pytest.raises(NotFoundError, match="a volume named 'both' exists"):
        NetworkFileSystem.from_name("both", store=store).hydrate()
    nfs = NetworkFileSystem.from_name("both", create_if_missing=True, store=store)
    nfs.write_file("f", io.BytesIO(b"nfs"))
    vol = Volume.from_name("both", store=store)
    assert vol.listdir("/") == []
    assert nfs.object_id != vol.object_id
    assert [v.name for v in Volume.objects.list(store=store)] == ["both"]
    assert [n.name for n in NetworkFileSystem.objects.list(store=store)] == ["both"]
    NetworkFileSystem.delete("both", store=store)
    assert Volume.from_name("both", store=store).hydrate() is not None
    assert keys(store, "nfs-names/") == []


def test_objects_create_list_delete(store: Store) -> None:
    NetworkFileSystem.objects.create("b", store=store)
    NetworkFileSystem.objects.create("a", store=store)
    with pytest.raises(AlreadyExistsError, match="network file system 'a' already exists"):
        NetworkFileSystem.objects.create("a", store=store)
    NetworkFileSystem.objects.create("a", allow_existing=True, store=store)
    listed = NetworkFileSystem.objects.list(store=store)
    assert [n.name for n in listed] == ["a", "b"]
    assert all(isinstance(n, NetworkFileSystem) for n in listed)
    the_id = listed[0].object_id
    NetworkFileSystem.objects.delete("a", store=store)
    assert [n.name for n in NetworkFileSystem.objects.list(store=store)] == ["b"]
    assert keys(store, f"vols/{the_id}/") == []  # its history went too
    with pytest.raises(NotFoundError, match="'a' not found"):
        NetworkFileSystem.objects.delete("a", store=store)
    NetworkFileSystem.objects.delete("a", allow_missing=True, store=store)
    with pytest.raises(NotFoundError):
        NetworkFileSystem.delete("a", store=store)
    NetworkFileSystem.delete("b", store=store)
    assert NetworkFileSystem.objects.list(store=store) == []


def test_environments_keep_network_file_systems_apart(store: Store) -> None:
    dev = NetworkFileSystem.from_name(
        "x", environment_name="dev", create_if_missing=True, store=store
    )
    dev.write_file("f", io.BytesIO(b"dev"))
    assert NetworkFileSystem.objects.list(store=store) == []
    assert [
        n.name for n in NetworkFileSystem.objects.list(environment_name="dev", store=store)
    ] == ["x"]
    with pytest.raises(NotFoundError):
        NetworkFileSystem.from_name("x", store=store).hydrate()
    listed = NetworkFileSystem.objects.list(environment_name="dev", store=store)[0]
    assert read(listed, "f") == b"dev"


def test_ephemeral_exists_only_inside_the_block(store: Store) -> None:
    with NetworkFileSystem.ephemeral(store=store) as nfs:
        assert nfs.name is None
        assert nfs.listdir("/") == []
        assert nfs.write_file("xyz.txt", io.BytesIO(b"hello world")) == 11
        (entry,) = nfs.listdir("/")
        assert entry.path == "xyz.txt"
        vol_id = nfs.object_id
        assert keys(store, f"vols/{vol_id}/")
        assert NetworkFileSystem.objects.list(store=store) == []  # anonymous
    assert keys(store, f"vols/{vol_id}/") == []


def test_ephemeral_is_deleted_on_exception(store: Store) -> None:
    with pytest.raises(RuntimeError), NetworkFileSystem.ephemeral(store=store) as nfs:
        nfs.write_file("f", io.BytesIO(b"x"))
        vol_id = nfs.object_id
        raise RuntimeError("boom")
    assert keys(store, f"vols/{vol_id}/") == []


def test_ephemeral_of_a_killed_owner_is_reclaimed(
    opened: tuple[Store, str, dict[str, str]], tmp_path: Path
) -> None:
    store, url, env = opened
    code = textwrap.dedent(
        f"""
        import io, sys, time
        from jupyter_volume import NetworkFileSystem
        with NetworkFileSystem.ephemeral(store={url!r}) as nfs:
            nfs.write_file("f", io.BytesIO(b"x"))
            print(nfs.object_id, flush=True)
            time.sleep(600)
        """
    )
    child_env = {**os.environ, **env, "JUPYTER_VOLUME_EPHEMERAL_TTL": "1"}
    p = subprocess.Popen(
        [sys.executable, "-c", code], env=child_env, stdout=subprocess.PIPE, text=True
    )
    try:
        vol_id = p.stdout.readline().strip()  # type: ignore[union-attr]
        assert len(vol_id) == 32, vol_id
        os.kill(p.pid, signal.SIGKILL)
    finally:
        p.kill()
        p.wait(timeout=60)
    assert keys(store, f"vols/{vol_id}/")
    deadline = time.monotonic() + 60  # hang guard: reclaimed once the 1 s lease is stale
    while keys(store, f"vols/{vol_id}/"):
        assert time.monotonic() < deadline, "the dead owner's NFS was never reclaimed"
        time.sleep(0.5)
        NetworkFileSystem.objects.list(store=store)  # an ordinary call sweeps
    assert keys(store, "leases/ephemeral/") == []


# -- writing and reading ----------------------------------------------------------------------------
def test_write_file_returns_bytes_creates_parents_and_replaces(nfs: NetworkFileSystem) -> None:
    assert nfs.write_file("a/b/c.txt", io.BytesIO(b"hello")) == 5
    assert [e.path for e in nfs.listdir("a", recursive=True)] == ["a/b", "a/b/c.txt"]
    assert nfs.write_file("/a/b/c.txt", io.BytesIO(b"bye")) == 3
    assert read(nfs, "a/b/c.txt") == b"bye"
    big = os.urandom(3 << 20)
    assert nfs.write_file("big.bin", io.BytesIO(big)) == len(big)
    assert read(nfs, "big.bin") == big


class ModalStyleProgress:
    """A progress handler with the signature of Modal's CLI one (``task_id, advance,
    name, size, reset, total, complete``): what a user's Modal code passes as
    ``progress_cb``. Records tasks by id."""

    def __init__(self) -> None:
        self.tasks: dict[int, dict] = {}

    def __call__(
        self,
        task_id: int | None = None,
        advance: float | None = None,
        name: str | None = None,
        size: float | None = None,
        reset: bool | None = None,
        total: float | None = None,
        complete: bool | None = None,
    ) -> int | None:
        if name is not None:
            new = len(self.tasks)
            self.tasks[new] = {"name": name, "size": size, "done": 0, "complete": False}
            return new
        assert task_id in self.tasks, (task_id, advance, complete)
        if advance is not None:
            self.tasks[task_id]["done"] += advance
        if complete:
            self.tasks[task_id]["complete"] = True
        return None


class Unseekable(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self._src = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        return self._src.readinto(b)


def test_upload_progress_follows_modals_protocol(nfs: NetworkFileSystem, tmp_path: Path) -> None:
    # write_file called progress_cb(n) with a bare byte count: a Modal handler took it
    # for a task id. Now: a task made with name= and size=, advance= on it, complete=True.
    big = os.urandom(3 << 20)
    cb = ModalStyleProgress()
    assert nfs.write_file("big.bin", io.BytesIO(big), progress_cb=cb) == len(big)
    assert cb.tasks == {
        0: {"name": "big.bin", "size": len(big), "done": len(big), "complete": True}
    }
    cb = ModalStyleProgress()
    nfs.write_file("stream.bin", Unseekable(b"x" * 1000), progress_cb=cb)  # size unknown
    assert cb.tasks == {0: {"name": "stream.bin", "size": None, "done": 1000, "complete": True}}
    (tmp_path / "up/sub").mkdir(parents=True)
    (tmp_path / "up/a.txt").write_bytes(b"aa")
    (tmp_path / "up/sub/b.txt").write_bytes(b"bbb")
    cb = ModalStyleProgress()
    assert nfs.add_local_file(tmp_path / "up/a.txt", "/one.txt", progress_cb=cb) == 2
    assert cb.tasks == {0: {"name": "/one.txt", "size": 2, "done": 2, "complete": True}}
    cb = ModalStyleProgress()
    nfs.add_local_dir(tmp_path / "up", "/dir", progress_cb=cb)
    assert sorted((t["name"], t["size"], t["done"], t["complete"]) for t in cb.tasks.values()) == [
        ("/dir/a.txt", 2, 2, True),
        ("/dir/sub/b.txt", 3, 3, True),
    ]
    assert read(nfs, "dir/sub/b.txt") == b"bbb"


# store-independent checks (validation before any I/O, the file object's handling)
@pytest.mark.parametrize("store", ["local"], indirect=True)
def test_write_file_trailing_slash_writes_into_the_folder(
    nfs: NetworkFileSystem, tmp_path: Path
) -> None:
    local = tmp_path / "report.csv"
    local.write_bytes(b"1,2\n")
    with open(local, "rb") as f:
        assert nfs.write_file("out/", f) == 4
    assert read(nfs, "out/report.csv") == b"1,2\n"
    with pytest.raises(InvalidError, match="has no name"):
        nfs.write_file("out/", io.BytesIO(b"x"))
    # a file object opened on a descriptor is "named" by its number: before the fix the
    # file went to out/<descriptor number> (out/7, say), without a word
    fd = os.open(local, os.O_RDONLY)
    with open(fd, "rb") as f, pytest.raises(InvalidError, match="has no name"):
        nfs.write_file("out/", f)
    assert [e.path for e in nfs.listdir("out")] == ["out/report.csv"]


def test_write_file_bad_input_changes_nothing(nfs: NetworkFileSystem) -> None:
    nfs.write_file("dir/f", io.BytesIO(b"x"))
    seq = nfs.history(1)[0].seq
    with pytest.raises(InvalidError):
        nfs.write_file("/", io.BytesIO(b"x"))
    with pytest.raises(InvalidError, match="escapes"):
        nfs.write_file("../outside", io.BytesIO(b"x"))
    with pytest.raises(AlreadyExistsError, match="folder"):
        nfs.write_file("dir", io.BytesIO(b"x"))
    with pytest.raises(AlreadyExistsError):
        nfs.write_file("dir/f/g", io.BytesIO(b"x"))
    with pytest.raises(InvalidError, match="binary"):
        nfs.write_file("t", io.StringIO("text"))  # type: ignore[arg-type]
    assert nfs.history(1)[0].seq == seq


# store-independent checks (validation before any I/O, the file object's handling)
@pytest.mark.parametrize("store", ["local"], indirect=True)
def test_write_file_is_atomic_when_the_source_fails(nfs: NetworkFileSystem) -> None:
    nfs.write_file("f", io.BytesIO(b"old"))

    class Broken(io.RawIOBase):
        sent = 0

        def readable(self) -> bool:
            return True

        def readinto(self, b: Any) -> int:
            if self.sent > 2 << 20:
                raise OSError("disk gone")
            n = min(len(b), 1 << 16)
            b[:n] = b"n" * n
            self.sent += n
            return n

    with pytest.raises(OSError, match="disk gone"):
        nfs.write_file("f", io.BufferedReader(Broken()))
    assert read(nfs, "f") == b"old"


def test_read_file_missing_is_file_not_found(nfs: NetworkFileSystem) -> None:
    with pytest.raises(FileNotFoundError, match="network file system 'shared'"):
        for _ in nfs.read_file("idontexist.txt"):
            pass
    nfs.write_file("d/f", io.BytesIO(b"x"))
    with pytest.raises(InvalidError, match="folder"):
        read(nfs, "d")


def test_iterdir_and_listdir_entries_and_globs(nfs: NetworkFileSystem) -> None:
    for p in ("a.txt", "b.csv", "sub/c.txt", "sub/deep/d.txt", "odd[1].txt"):
        nfs.write_file(p, io.BytesIO(p.encode()))
    top = nfs.listdir("/")
    assert [(e.path, e.type) for e in top] == [
        ("a.txt", FileEntryType.FILE),
        ("b.csv", FileEntryType.FILE),
        ("odd[1].txt", FileEntryType.FILE),
        ("sub", FileEntryType.DIRECTORY),
    ]
    assert top[0].size == 5 and top[0].mtime > 0
    assert [e.path for e in nfs.iterdir("sub")] == ["sub/c.txt", "sub/deep"]
    assert [e.path for e in nfs.listdir("a.txt")] == ["a.txt"]
    assert [e.path for e in nfs.listdir("*.txt")] == ["a.txt", "odd[1].txt"]
    assert [e.path for e in nfs.listdir("**/*.txt")] == [
        "a.txt",
        "odd[1].txt",
        "sub/c.txt",
        "sub/deep/d.txt",
    ]
    assert [e.path for e in nfs.listdir("odd[1].txt")] == ["odd[1].txt"]  # no '*': not a glob
    with pytest.raises(FileNotFoundError):
        nfs.listdir("nope")


def test_add_local_file(nfs: NetworkFileSystem, tmp_path: Path) -> None:
    local = tmp_path / "some_file"
    local.write_text("hello world")
    assert nfs.add_local_file(local) == 11
    assert nfs.add_local_file(local.as_posix(), remote_path="/foo/other_destination") == 11
    assert nfs.add_local_file(local, remote_path="into/") == 11
    assert read(nfs, "some_file") == b"hello world"
    assert read(nfs, "foo/other_destination") == b"hello world"
    assert read(nfs, "into/some_file") == b"hello world"
    with pytest.raises(FileNotFoundError):
        nfs.add_local_file(tmp_path / "missing")


def test_add_local_dir_is_one_commit(nfs: NetworkFileSystem, tmp_path: Path) -> None:
    local = tmp_path / "some_dir"
    (local / "subdir").mkdir(parents=True)
    (local / "smol").write_text("###")
    (local / "subdir" / "other").write_text("####")
    before = nfs.history(1)[0].seq
    nfs.add_local_dir(local)
    assert nfs.history(1)[0].seq == before + 1
    assert read(nfs, "some_dir/smol") == b"###"
    assert read(nfs, "some_dir/subdir/other") == b"####"
    nfs.add_local_dir(local, remote_path="/elsewhere")
    assert read(nfs, "elsewhere/subdir/other") == b"####"
    with pytest.raises(FileNotFoundError):
        nfs.add_local_dir(tmp_path / "missing")


def test_remove_file(nfs: NetworkFileSystem) -> None:
    nfs.write_file("d/e/f", io.BytesIO(b"x"))
    nfs.write_file("g", io.BytesIO(b"y"))
    nfs.remove_file("g")
    with pytest.raises(FileNotFoundError):
        nfs.remove_file("g")
    with pytest.raises(InvalidError, match="recursive=True"):
        nfs.remove_file("d")
    with pytest.raises(InvalidError):
        nfs.remove_file("/")
    nfs.remove_file("d", recursive=True)
    assert nfs.listdir("/") == []


# -- one state for everybody -------------------------------------------------------------------
def test_every_call_is_visible_to_every_other_handle_at_once(store: Store) -> None:
    one = NetworkFileSystem.from_name("live", create_if_missing=True, store=store).hydrate()
    two = NetworkFileSystem.from_name("live", store=store)
    assert two.listdir("/") == []
    for i in range(3):
        one.write_file("f", io.BytesIO(b"v%d" % i))
        assert read(two, "f") == b"v%d" % i
    two.remove_file("f")
    with pytest.raises(FileNotFoundError):
        read(one, "f")


def test_another_process_sees_a_write_at_once(opened: tuple[Store, str, dict[str, str]]) -> None:
    store, url, env = opened
    nfs = NetworkFileSystem.from_name("x", create_if_missing=True, store=store)
    assert nfs.listdir("/") == []
    code = textwrap.dedent(
        f"""
        import io
        from jupyter_volume import NetworkFileSystem
        NetworkFileSystem.from_name("x", store={url!r}).write_file("from-child", io.BytesIO(b"hi"))
        """
    )
    subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, check=True, timeout=120)
    assert read(nfs, "from-child") == b"hi"


# -- .aio ----------------------------------------------------------------------------------------
def test_every_public_method_has_an_aio_form() -> None:
    missing = [
        name
        for name, attr in list(vars(NetworkFileSystem).items())
        + [(f"objects.{k}", v) for k, v in vars(type(NetworkFileSystem.objects)).items()]
        if not name.split(".")[-1].startswith("_")
        and (inspect.isfunction(attr) or isinstance(attr, staticmethod | classmethod))
        and not isinstance(attr, _AioDescriptor)
    ]
    assert missing == []


def test_aio_forms_work(store: Store, tmp_path: Path) -> None:
    (tmp_path / "local.txt").write_bytes(b"abc")

    async def main() -> None:
        await NetworkFileSystem.objects.create.aio("a", store=store)
        nfs = await NetworkFileSystem.from_name.aio("a", store=store)
        assert await nfs.write_file.aio("f", io.BytesIO(b"hello")) == 5
        assert [c async for c in nfs.read_file.aio("f")] == [b"hello"]
        assert [e.path async for e in nfs.iterdir.aio("/")] == ["f"]
        assert await nfs.add_local_file.aio(tmp_path / "local.txt") == 3
        assert [e.path for e in await nfs.listdir.aio("/")] == ["f", "local.txt"]
        await nfs.remove_file.aio("f")
        async with NetworkFileSystem.ephemeral.aio(store=store) as eph:
            assert await eph.listdir.aio("/") == []
        assert [n.name for n in await NetworkFileSystem.objects.list.aio(store=store)] == ["a"]
        await NetworkFileSystem.delete.aio("a", store=store)

    asyncio.run(main())


# -- history as a safety net, retention applied by itself ---------------------------------------------
def test_history_diff_restore(nfs: NetworkFileSystem) -> None:
    nfs.write_file("f", io.BytesIO(b"one"))
    first = nfs.history(1)[0].seq
    nfs.write_file("f", io.BytesIO(b"two"))
    assert [d.change for d in nfs.diff(first)] == ["modified"]
    nfs.restore(first, "f")
    assert read(nfs, "f") == b"one"
    assert nfs.history(1)[0].kind == "restore"


def test_default_retention_is_applied_automatically(
    nfs: NetworkFileSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jupyter_volume import nfs as nfs_mod

    pol = nfs.retention
    assert pol.keep_within == DEFAULT_RETENTION["keep_within"]
    assert pol.keep_hourly == DEFAULT_RETENTION["keep_hourly"]
    for i in range(4):
        nfs.write_file("f", io.BytesIO(b"v%d" % i))
    nfs.set_retention(keep_last=1, grace=0)
    monkeypatch.setattr(nfs_mod, "RETENTION_EVERY", 0.0)
    nfs._retention_due(wait=True)  # the marker exists (first sighting made it): gc runs now
    kept = [c for c in nfs.history() if c.kind not in ("gc", "create")]
    assert len(kept) == 1
    assert read(nfs, "f") == b"v3"
    # at most once per period, across processes: the marker on the store says when
    monkeypatch.setattr(nfs_mod, "RETENTION_EVERY", 3600.0)
    nfs_mod._checked.clear()
    nfs.write_file("f", io.BytesIO(b"v4"))
    t2 = nfs._retention_due(wait=True)
    assert t2 is None or not t2.is_alive()
    assert len([c for c in nfs.history() if c.kind not in ("gc", "create")]) == 2  # not again


def test_a_handle_pickles_by_reference(opened: tuple[Store, str, dict[str, str]]) -> None:
    import pickle

    store = opened[0]  # credentials are in this process's environment, as a child's would be
    nfs = NetworkFileSystem.from_name("p", create_if_missing=True, store=store)
    nfs.write_file("f", io.BytesIO(b"x"))
    again = pickle.loads(pickle.dumps(nfs))
    assert read(again, "f") == b"x" and again.object_id == nfs.object_id
    with NetworkFileSystem.ephemeral(store=store) as eph:
        eph.write_file("g", io.BytesIO(b"y"))
        assert read(pickle.loads(pickle.dumps(eph)), "g") == b"y"


def test_errors_speak_of_the_network_file_system_not_of_a_volume(
    nfs: NetworkFileSystem, store: Store
) -> None:
    nfs.write_file("a.txt", io.BytesIO(b"1"))
    # before the fix: "commit 999 does not exist in this volume", "cannot remove the
    # volume root; use vol.delete() to delete the volume", "escapes the volume root"
    said = []
    for call, err in [
        (lambda: nfs.diff(999), NotFoundError),
        (lambda: nfs.restore(999), NotFoundError),
        (lambda: nfs.remove_file("/", recursive=True), InvalidError),
        (lambda: nfs.write_file("../x", io.BytesIO(b"1")), InvalidError),
        (lambda: b"".join(nfs.read_file("a/../../x")), InvalidError),
    ]:
        with pytest.raises(err) as e:
            call()
        said.append(str(e.value))
        assert "volume" not in str(e.value), str(e.value)
    assert "commit 999 does not exist in network file system " in said[0], said[0]
    assert "NetworkFileSystem.delete" in said[2]
    assert "escapes the network file system's root" in said[3]
    with NetworkFileSystem.ephemeral(store=store) as eph:
        with pytest.raises(NotFoundError) as e:
            eph.diff(999)
        assert "volume" not in str(e.value), str(e.value)


@pytest.mark.parametrize("store", ["local"], indirect=True)
def test_a_handle_on_a_deleted_nfs_says_so_in_its_own_words(store: Store) -> None:
    # (on a local store a handle looks at every call; on S3 at most every 2 s)
    NetworkFileSystem.objects.create("shared", store=store)
    old = NetworkFileSystem.from_name("shared", store=store).hydrate()
    NetworkFileSystem.delete("shared", store=store)
    NetworkFileSystem.objects.create("shared", store=store)  # made again under its name
    # before the fix: "... (it was deleted or renamed (its name may now be another
    # volume's))": network file systems are never renamed, nor volumes
    with pytest.raises(NotFoundError, match="network file system 'shared' no longer exists") as e:
        old.write_file("b.txt", io.BytesIO(b"2"))
    assert "volume" not in str(e.value) and "renamed" not in str(e.value), str(e.value)
    assert NetworkFileSystem.from_name("shared", store=store).listdir("/") == []


@pytest.mark.parametrize("store", ["local"], indirect=True)
def test_every_path_argument_takes_a_pure_posix_path(nfs: NetworkFileSystem) -> None:
    # write_file took a PurePosixPath (as Modal's add_local_file makes), but reading it
    # back the same way said "path must be a string, got PurePosixPath"
    p = PurePosixPath("/data/x.txt")
    nfs.write_file(p, io.BytesIO(b"1"))
    assert b"".join(nfs.read_file(p)) == b"1"
    assert [e.path for e in nfs.listdir(PurePosixPath("/data"))] == ["data/x.txt"]
    assert [e.path for e in nfs.iterdir(PurePosixPath("/data"))] == ["data/x.txt"]
    assert nfs.stat(p).size == 1
    with nfs.lock(p, timeout=30) as held:
        assert held.path == "data/x.txt"
    seq = nfs.history(1)[0].seq
    nfs.remove_file(p)
    assert nfs.listdir("/data") == []
    nfs.restore(seq, PurePosixPath("/data"))
    assert b"".join(nfs.read_file("data/x.txt")) == b"1"


@pytest.mark.parametrize("store", ["local"], indirect=True)
def test_history_refuses_a_limit_that_is_not_a_count(nfs: NetworkFileSystem) -> None:
    nfs.write_file("a", io.BytesIO(b"1"))
    nfs.write_file("b", io.BytesIO(b"2"))
    assert len(nfs.history(1)) == 1
    newest = nfs.history(1)[0].seq
    assert [c.seq for c in nfs.history(1, before=newest)] == [newest - 1]
    # before the fix: a NaN limit returned the whole history without a word
    for bad in (float("nan"), -1, True, "2", 1.5):
        with pytest.raises(InvalidError, match="limit must be None or a whole number"):
            nfs.history(bad)  # type: ignore[arg-type]
