"""The public Volume API, modelled on modal.Volume, plus history, on both stores.

Every test runs on the local folder store and on SeaweedFS (``store`` fixture) unless
it says why not. Volumes are checked through the public API; where the API has no
window onto a property (a file's mode, a tree node's key) the test reads the on-store
format described in docs/architecture.md and says so.
"""

from __future__ import annotations

import getpass
import io
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from jupyter_volume import (
    AlreadyExistsError,
    CorruptionError,
    DiffEntry,
    DiskUsage,
    FileEntry,
    FileEntryType,
    InvalidError,
    NotFoundError,
    Volume,
    VolumeError,
)
from jupyter_volume.store import Store
from jupyter_volume.store.local import LocalStore
from jupyter_volume.testing.wrappers import WrappedStore

try:
    from .children import as_nobody
except ImportError:  # tests/ is not a package
    from children import as_nobody  # type: ignore[no-redef]

KiB = 1024
MiB = 1024 * KiB


def _name() -> str:
    return f"v-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def vol(store: Store) -> Volume:
    name = _name()
    Volume.objects.create(name, store=store)
    return Volume.from_name(name, store=store)


def put(vol: Volume, files: dict[str, bytes], force: bool = False) -> None:
    with vol.batch_upload(force=force) as batch:
        for path, data in files.items():
            batch.put_file(io.BytesIO(data), path)


def read(vol: Volume, path: str, at: int | None = None) -> bytes:
    return b"".join(vol.read_file(path, at=at))


def paths(entries: list[FileEntry]) -> list[str]:
    return sorted(e.path for e in entries)


def keys(store: Store, prefix: str) -> list[str]:
    return [o.key for o in store.list(prefix)]


def rand(n: int) -> bytes:
    return os.urandom(n)


# -- handles: from_name, lookup, ephemeral, objects, rename, info, delete -----------------


def test_from_name_is_lazy_and_create_if_missing_creates_on_first_use(store: Store) -> None:
    vol = Volume.from_name("lazy-missing", store=store)
    assert keys(store, "") == []  # a handle reads and writes nothing
    with pytest.raises(NotFoundError, match="lazy-missing"):
        vol.listdir("/")
    with pytest.raises(NotFoundError):
        vol.info()

    lazy = Volume.from_name("lazy-made", create_if_missing=True, store=store)
    assert keys(store, "") == []  # still nothing until it is used
    assert lazy.listdir("/") == []
    assert [v.name for v in Volume.objects.list(store=store)] == ["lazy-made"]

    put(lazy, {"f.txt": b"kept"})
    again = Volume.from_name("lazy-made", create_if_missing=True, store=store)
    assert read(again, "f.txt") == b"kept"  # an existing volume is opened, not replaced
    assert again.info().id == lazy.info().id

    with pytest.raises(InvalidError):
        Volume.from_name("-bad", store=store)


def test_lookup_is_eager(store: Store) -> None:
    with pytest.raises(NotFoundError, match="nope") as info:
        Volume.lookup("nope", store=store)
    assert isinstance(info.value, FileNotFoundError)
    assert keys(store, "") == []

    Volume.objects.create("here", store=store)
    vol = Volume.lookup("here", store=store)
    assert vol.name == "here"
    assert vol.listdir("/") == []


def test_ephemeral_is_deleted_on_exit(store: Store) -> None:
    with Volume.ephemeral(store=store) as vol:
        put(vol, {"a.txt": b"hello", "big.bin": rand(100 * KiB)})
        vol_id = vol.info().id
        assert vol.name is None  # anonymous, as in Modal: not listed, not nameable
        assert Volume.objects.list(store=store) == []
        assert read(vol, "a.txt") == b"hello"
        assert keys(store, f"vols/{vol_id}/packs/")
    assert Volume.objects.list(store=store) == []
    assert keys(store, "") == []
    with pytest.raises(NotFoundError):
        Volume.from_id(vol_id, store=store).hydrate()


def test_ephemeral_is_deleted_on_exception(store: Store) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with Volume.ephemeral(store=store) as vol:
            put(vol, {"a.txt": rand(2 * KiB)})
            vol_id = vol.object_id
            raise Boom
    assert keys(store, "") == []
    with pytest.raises(NotFoundError):
        Volume.from_id(vol_id, store=store).hydrate()

    with Volume.ephemeral(store=store) as one, Volume.ephemeral(store=store) as two:
        assert one.object_id != two.object_id


def test_objects_create_list_delete(store: Store) -> None:
    Volume.objects.create("beta", store=store)
    Volume.objects.create("alpha", store=store)
    listed = Volume.objects.list(store=store)
    assert [v.name for v in listed] == ["alpha", "beta"]
    assert all(isinstance(v, Volume) for v in listed)

    alpha = Volume.from_name("alpha", store=store)
    put(alpha, {"x.bin": rand(4 * KiB)})
    alpha_id = alpha.info().id
    with pytest.raises(AlreadyExistsError, match="alpha") as info:
        Volume.objects.create("alpha", store=store)
    assert isinstance(info.value, FileExistsError)
    Volume.objects.create("alpha", allow_existing=True, store=store)
    assert Volume.lookup("alpha", store=store).info().id == alpha_id
    assert [e.path for e in Volume.lookup("alpha", store=store).listdir("/")] == ["x.bin"]

    beta = Volume.from_name("beta", store=store)
    put(beta, {"y.bin": rand(4 * KiB)})

    Volume.objects.delete("alpha", store=store)
    assert [v.name for v in Volume.objects.list(store=store)] == ["beta"]
    assert keys(store, f"vols/{alpha_id}/") == []  # contents and history are gone
    with pytest.raises(NotFoundError):
        Volume.lookup("alpha", store=store)
    with pytest.raises(NotFoundError, match="alpha"):
        Volume.objects.delete("alpha", store=store)
    Volume.objects.delete("alpha", allow_missing=True, store=store)
    assert read(beta, "y.bin")  # the other volume is untouched
    assert Volume.lookup("beta", store=store).verify().ok


def test_rename(store: Store) -> None:
    Volume.objects.create("old-name", store=store)
    old = Volume.from_name("old-name", store=store)
    data = rand(50 * KiB)
    put(old, {"d/file.bin": data})
    before = old.info()
    history = old.history()

    Volume.rename("old-name", "new-name", store=store)
    with pytest.raises(NotFoundError):
        Volume.lookup("old-name", store=store)
    new = Volume.lookup("new-name", store=store)
    assert read(new, "d/file.bin") == data
    info = new.info()
    assert (info.name, info.id, info.created_at, info.created_by) == (
        "new-name",
        before.id,
        before.created_at,
        before.created_by,
    )
    assert [h.seq for h in new.history()] == [h.seq for h in history]
    assert [v.name for v in Volume.objects.list(store=store)] == ["new-name"]

    with pytest.raises(NotFoundError):
        Volume.rename("old-name", "other", store=store)
    Volume.objects.create("taken", store=store)
    with pytest.raises(AlreadyExistsError, match="taken"):
        Volume.rename("new-name", "taken", store=store)
    with pytest.raises(InvalidError, match="not starting with '-'"):
        Volume.rename("new-name", "..", store=store)
    assert sorted(v.name for v in Volume.objects.list(store=store)) == ["new-name", "taken"]
    assert read(Volume.lookup("new-name", store=store), "d/file.bin") == data
    assert Volume.lookup("taken", store=store).listdir("/") == []


def test_info(store: Store) -> None:
    t0 = datetime.now(UTC)
    Volume.objects.create("info-vol", store=store)
    t1 = datetime.now(UTC)
    info = Volume.from_name("info-vol", store=store).info()
    assert info.name == "info-vol"
    assert info.created_at.tzinfo is not None
    assert t0.timestamp() - 1 <= info.created_at.timestamp() <= t1.timestamp() + 1
    assert getpass.getuser() in info.created_by
    # a second handle reads the same record
    assert Volume.lookup("info-vol", store=store).info() == info


def test_vol_delete(store: Store) -> None:
    Volume.objects.create("doomed", store=store)
    Volume.objects.create("survivor", store=store)
    vol = Volume.from_name("doomed", store=store)
    put(vol, {"f.bin": rand(3 * KiB)})
    vol_id = vol.info().id
    vol.delete()
    assert [v.name for v in Volume.objects.list(store=store)] == ["survivor"]
    assert keys(store, f"vols/{vol_id}/") == []
    with pytest.raises(NotFoundError):
        Volume.lookup("doomed", store=store)
    with pytest.raises(NotFoundError):
        vol.listdir("/")
    with pytest.raises(NotFoundError):
        vol.delete()


def test_a_handle_on_a_deleted_volume_fails_and_leaves_nothing_behind(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A handle used once kept working after another process deleted its volume: its
    # commits "succeeded" into objects under no name (out of reach of every name and of
    # gc, for good), and it listed files that no longer existed.
    from jupyter_volume import names, objects

    monkeypatch.setattr(objects, "ALIVE_EVERY", 0.2)  # S3 looks at most this often
    name = _name()
    vol = Volume.from_name(name, store=store, create_if_missing=True)
    put(vol, {"a.txt": b"first"})
    vol_id = vol.object_id
    names.delete(store, name)  # as another process deletes it (no mount here to detach)
    time.sleep(0.3)  # past the interval on S3; a local folder looks every time
    with pytest.raises(NotFoundError, match=f"volume '{name}' no longer exists") as info:
        put(vol, {"results.bin": rand(300 * KiB)})  # big enough to upload a pack first
    assert isinstance(info.value, FileNotFoundError)
    assert keys(store, f"vols/{vol_id}/") == []  # its upload was swept, nothing published
    for call in (
        lambda: vol.listdir("/"),
        lambda: read(vol, "a.txt"),
        lambda: vol.mkdir("d"),
        # these answered from what the process had cached (verify: as damage)
        lambda: vol.history(),
        lambda: vol.tags(),
        lambda: vol.retention,
        lambda: vol.verify(),
        lambda: vol.gc(),
    ):
        with pytest.raises(NotFoundError, match="no longer exists"):
            call()
    assert keys(store, f"vols/{vol_id}/") == []

    # renamed, and the name given to another volume: the handle by name refuses, the
    # renamed volume is untouched; a handle by id follows the volume, as ids are stable
    old = Volume.from_name(name, store=store, create_if_missing=True)
    put(old, {"a.txt": b"old"})
    by_id = Volume.from_id(old.object_id, store=store)
    assert read(by_id, "a.txt") == b"old"
    Volume.rename(name, name + "-x", store=store)
    Volume.objects.create(name, store=store)
    time.sleep(0.3)
    with pytest.raises(NotFoundError, match="renamed"):
        put(old, {"b.txt": b"lost?"})
    assert Volume.from_name(name, store=store).listdir("/") == []
    renamed = Volume.from_name(name + "-x", store=store)
    assert paths(renamed.listdir("/")) == ["a.txt"]
    put(by_id, {"c.txt": b"by id"})
    assert paths(renamed.listdir("/")) == ["a.txt", "c.txt"]

    # an ephemeral volume's handle after its block
    with Volume.ephemeral(store=store) as eph:
        put(eph, {"x.txt": b"x"})
        eph_id = eph.object_id
    time.sleep(0.3)
    with pytest.raises(NotFoundError, match=f"ephemeral volume {eph_id} no longer exists"):
        put(eph, {"y.bin": rand(300 * KiB)})
    assert keys(store, f"vols/{eph_id}/") == []


# -- listing -----------------------------------------------------------------------------

MTIME = 1_600_000_000


@pytest.fixture
def tree_vol(vol: Volume, tmp_path: Path) -> Volume:
    """a.txt, top.csv, dir/b.bin, dir/empty/, dir/sub/c.txt, dir/sub/d.csv."""
    src = tmp_path / "src"
    files = {
        "a.txt": b"alpha",
        "top.csv": b"1,2,3\n",
        "dir/b.bin": bytes(range(256)) * 12,
        "dir/sub/c.txt": b"see",
        "dir/sub/d.csv": b"4,5\n" * 300,
    }
    for rel, data in files.items():
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        os.utime(p, ns=(MTIME * 10**9 + 700_000_000, MTIME * 10**9 + 700_000_000))
    (src / "dir" / "empty").mkdir()
    with vol.batch_upload() as batch:
        batch.put_directory(src, "/")
    return vol


def test_listdir_root_is_not_recursive(tree_vol: Volume) -> None:
    entries = tree_vol.listdir("/")
    assert all(isinstance(e, FileEntry) for e in entries)
    by_path = {e.path: e for e in entries}
    assert sorted(by_path) == ["a.txt", "dir", "top.csv"]
    assert by_path["a.txt"].type == FileEntryType.FILE
    assert by_path["dir"].type == FileEntryType.DIRECTORY
    assert by_path["a.txt"] == FileEntry("a.txt", FileEntryType.FILE, MTIME, 5)
    assert isinstance(by_path["a.txt"].mtime, int)
    assert by_path["dir"].size == 256 * 12 + 3 + 4 * 300  # a folder: all bytes below it
    assert tree_vol.listdir("") == entries


def test_listdir_recursive_and_iterdir(tree_vol: Volume) -> None:
    everything = [
        "a.txt",
        "dir",
        "dir/b.bin",
        "dir/empty",
        "dir/sub",
        "dir/sub/c.txt",
        "dir/sub/d.csv",
        "top.csv",
    ]
    listed = tree_vol.listdir("/", recursive=True)
    assert paths(listed) == everything
    for e in listed:
        assert not e.path.startswith("/")
        assert isinstance(e.mtime, int)
        if e.type == FileEntryType.FILE:
            assert e.mtime == MTIME
    types = {e.path: e.type for e in listed}
    assert types["dir/empty"] == FileEntryType.DIRECTORY
    assert types["dir/sub/d.csv"] == FileEntryType.FILE

    it = tree_vol.iterdir("/")
    assert isinstance(it, Iterator) and not isinstance(it, list)
    assert paths(list(it)) == everything  # iterdir is recursive by default
    assert paths(list(tree_vol.iterdir("dir", recursive=False))) == [
        "dir/b.bin",
        "dir/empty",
        "dir/sub",
    ]
    assert paths(tree_vol.listdir("dir")) == ["dir/b.bin", "dir/empty", "dir/sub"]
    assert paths(tree_vol.listdir("dir", recursive=True)) == [
        "dir/b.bin",
        "dir/empty",
        "dir/sub",
        "dir/sub/c.txt",
        "dir/sub/d.csv",
    ]
    assert tree_vol.listdir("dir/empty") == []


def test_listdir_of_a_file_lists_just_that_file(tree_vol: Volume) -> None:
    want = [FileEntry("dir/sub/d.csv", FileEntryType.FILE, MTIME, 1200)]
    assert tree_vol.listdir("dir/sub/d.csv") == want
    assert tree_vol.listdir("/dir/sub/d.csv", recursive=True) == want
    assert list(tree_vol.iterdir("dir/sub/d.csv")) == want


def test_listdir_globs(tree_vol: Volume) -> None:
    assert paths(tree_vol.listdir("dir/sub/*.txt")) == ["dir/sub/c.txt"]
    assert paths(tree_vol.listdir("/dir/sub/*.txt")) == ["dir/sub/c.txt"]
    assert paths(tree_vol.listdir("*.csv")) == ["top.csv"]  # * stays in one segment
    assert paths(tree_vol.listdir("**/*.csv")) == ["dir/sub/d.csv", "top.csv"]
    assert paths(tree_vol.listdir("dir/**/*.txt")) == ["dir/sub/c.txt"]
    # ? counts once a * makes it a glob
    assert paths(tree_vol.listdir("dir/sub/?.c*")) == ["dir/sub/d.csv"]
    assert paths(list(tree_vol.iterdir("**/*.txt"))) == ["a.txt", "dir/sub/c.txt"]
    assert tree_vol.listdir("**/*.parquet") == []
    assert tree_vol.listdir("nope/*.txt") == []
    [entry] = tree_vol.listdir("dir/*.bin")
    assert entry == FileEntry("dir/b.bin", FileEntryType.FILE, MTIME, 256 * 12)


def test_listdir_normalizes_paths_and_reports_missing(tree_vol: Volume) -> None:
    want = tree_vol.listdir("dir/sub")
    assert paths(want) == ["dir/sub/c.txt", "dir/sub/d.csv"]
    for spelling in ("/dir/sub", "dir/sub/", "//dir/./sub//", "dir/x/../sub", "./dir/sub"):
        assert tree_vol.listdir(spelling) == want, spelling
    with pytest.raises(NotFoundError, match="nope"):
        tree_vol.listdir("dir/nope")
    with pytest.raises(NotFoundError):
        list(tree_vol.iterdir("nope"))
    with pytest.raises(NotFoundError):
        tree_vol.listdir("a.txt/below")


# -- reading -------------------------------------------------------------------------------


def test_read_file_streams(vol: Volume) -> None:
    big = rand(3 * MiB)
    put(vol, {"big.bin": big, "small.txt": b"x", "empty": b"", "dir/inner.txt": b"in"})
    it = vol.read_file("big.bin")
    assert not isinstance(it, (bytes, bytearray))
    assert iter(it) is it  # an iterator: pieces arrive one at a time
    pieces = list(it)
    assert len(pieces) > 1
    assert all(isinstance(p, bytes) for p in pieces)
    assert b"".join(pieces) == big
    assert max(len(p) for p in pieces) < 3 * MiB
    assert read(vol, "/small.txt") == b"x"
    assert read(vol, "empty") == b""
    assert read(vol, b"dir/inner.txt") == b"in"
    with pytest.raises(NotFoundError, match="missing.txt"):
        read(vol, "missing.txt")
    with pytest.raises(InvalidError, match="folder"):
        read(vol, "dir")


def test_read_file_into_fileobj(vol: Volume) -> None:
    big = rand(2 * MiB + 123)
    put(vol, {"big.bin": big, "small.txt": b"tiny"})
    out = io.BytesIO()
    progress: list[int] = []
    n = vol.read_file_into_fileobj(
        "big.bin", out, progress_cb=lambda advance: progress.append(advance)
    )
    assert n == len(big)
    assert out.getvalue() == big
    assert sum(progress) == len(big)
    assert len(progress) > 1

    out = io.BytesIO(b"prefix:")
    out.seek(0, io.SEEK_END)
    assert vol.read_file_into_fileobj("small.txt", out) == 4
    assert out.getvalue() == b"prefix:tiny"
    with pytest.raises(NotFoundError):
        vol.read_file_into_fileobj("nope", io.BytesIO())


# -- remove_file and copy_files ----------------------------------------------------------


def test_remove_file(tree_vol: Volume) -> None:
    head = tree_vol.history(1)[0].seq
    tree_vol.remove_file("a.txt")
    assert "a.txt" not in paths(tree_vol.listdir("/"))
    latest = tree_vol.history(1)[0]
    assert (latest.seq, latest.deleted, latest.added) == (head + 1, 1, 0)

    with pytest.raises(InvalidError, match="recursive"):
        tree_vol.remove_file("dir/sub")
    assert paths(tree_vol.listdir("dir/sub")) == ["dir/sub/c.txt", "dir/sub/d.csv"]
    tree_vol.remove_file("dir/empty")  # an empty folder needs no recursive
    tree_vol.remove_file("/dir/sub/", recursive=True)
    assert paths(tree_vol.listdir("/", recursive=True)) == ["dir", "dir/b.bin", "top.csv"]
    assert tree_vol.history(1)[0].deleted == 2

    with pytest.raises(NotFoundError, match="gone.txt"):
        tree_vol.remove_file("gone.txt")
    with pytest.raises(NotFoundError):
        tree_vol.remove_file("a.txt")  # already removed
    with pytest.raises(InvalidError):
        tree_vol.remove_file("/", recursive=True)
    assert tree_vol.verify().ok


def test_copy_files_like_cp(tree_vol: Volume) -> None:
    vol = tree_vol
    big = rand(1 * MiB)
    put(vol, {"big.bin": big})

    vol.copy_files(["big.bin"], "copy.bin")  # to a new name
    assert read(vol, "copy.bin") == big
    assert read(vol, "big.bin") == big
    assert vol.history(1)[0].bytes_new == 0  # a copy shares the stored chunks

    # a folder over a file is refused, as `cp -r d h.txt` does (it replaced the file)
    seq = vol.seq
    with pytest.raises(AlreadyExistsError, match="cannot overwrite file copy.bin with folder dir"):
        vol.copy_files(["dir"], "copy.bin", recursive=True)
    assert read(vol, "copy.bin") == big and vol.seq == seq

    vol.copy_files(["a.txt", "top.csv"], "dir")  # several sources into a folder
    assert read(vol, "dir/a.txt") == b"alpha"
    assert read(vol, "dir/top.csv") == b"1,2,3\n"
    vol.copy_files(["big.bin"], "dir/sub/")
    assert read(vol, "dir/sub/big.bin") == big

    vol.copy_files(["a.txt"], "top.csv")  # onto an existing file: overwritten
    assert read(vol, "top.csv") == b"alpha"

    with pytest.raises(InvalidError, match="recursive"):
        vol.copy_files(["dir/sub"], "sub2")
    vol.copy_files(["dir/sub"], "sub2", recursive=True)  # a folder to a new name
    assert paths(vol.listdir("sub2", recursive=True)) == [
        "sub2/big.bin",
        "sub2/c.txt",
        "sub2/d.csv",
    ]
    vol.copy_files(["dir/sub"], "sub2", recursive=True)  # into an existing folder
    assert paths(vol.listdir("sub2/sub")) == [
        "sub2/sub/big.bin",
        "sub2/sub/c.txt",
        "sub2/sub/d.csv",
    ]
    assert read(vol, "sub2/sub/c.txt") == b"see"

    # several sources into a folder that does not exist yet: created, as Modal does
    vol.copy_files(["a.txt", "top.csv"], "not-a-folder-yet")
    assert [e.path for e in vol.listdir("not-a-folder-yet")] == [
        "not-a-folder-yet/a.txt",
        "not-a-folder-yet/top.csv",
    ]
    with pytest.raises(AlreadyExistsError):
        vol.copy_files(["a.txt", "top.csv"], "top.csv")  # a file is not a folder
    with pytest.raises(NotFoundError):
        vol.copy_files(["a.txt"], "no/such/folder/a.txt")
    with pytest.raises(NotFoundError, match="ghost"):
        vol.copy_files(["ghost.txt"], "dir")
    with pytest.raises(InvalidError):
        vol.copy_files(["dir"], "dir/sub", recursive=True)  # into itself
    with pytest.raises(InvalidError):
        vol.copy_files([], "dir")
    vol.copy_files(["/a.txt"], "dir/sub")  # an existing folder as destination: into it
    assert read(vol, "dir/sub/a.txt") == b"alpha"
    assert vol.verify().ok


# -- batch_upload ----------------------------------------------------------------------------


def test_batch_upload_put_file_and_put_directory(vol: Volume, tmp_path: Path) -> None:
    local = tmp_path / "local.bin"
    data = rand(300 * KiB)
    local.write_bytes(data)
    os.chmod(local, 0o640)
    src = tmp_path / "tree"
    (src / "x" / "y").mkdir(parents=True)
    (src / "top.txt").write_bytes(b"top")
    (src / "x" / "mid.txt").write_bytes(b"mid")
    (src / "x" / "y" / "deep.bin").write_bytes(rand(2 * KiB))

    with vol.batch_upload() as batch:
        batch.put_file(local, "/a/b/c/local.bin")  # parents are implicit
        batch.put_file(str(local), "as-str.bin")
        batch.put_file(io.BytesIO(b"from memory"), "mem.txt", mode=0o600)
        batch.put_directory(src, "/t")
        batch.put_directory(str(src), "flat", recursive=False)
    assert read(vol, "a/b/c/local.bin") == data
    assert read(vol, "as-str.bin") == data
    assert read(vol, "mem.txt") == b"from memory"
    assert paths(vol.listdir("a")) == ["a/b"]
    assert vol.listdir("a")[0].type == FileEntryType.DIRECTORY
    assert paths(vol.listdir("t", recursive=True)) == [
        "t/top.txt",
        "t/x",
        "t/x/mid.txt",
        "t/x/y",
        "t/x/y/deep.bin",
    ]
    assert read(vol, "t/x/y/deep.bin") == (src / "x" / "y" / "deep.bin").read_bytes()
    assert paths(vol.listdir("flat", recursive=True)) == ["flat/top.txt"]
    # The API shows no modes; the tree entry (docs/architecture.md, "On-store format") does.
    assert vol._repo.lookup("mem.txt").mode == 0o600
    assert vol._repo.lookup("as-str.bin").mode == 0o640

    [commit, created] = vol.history()
    assert created.seq == 0
    assert (commit.seq, commit.added, commit.modified, commit.deleted) == (1, 7, 0, 0)


def test_batch_upload_is_invisible_until_the_block_exits(vol: Volume) -> None:
    other = Volume.from_name(vol.name, store=vol.store)
    with vol.batch_upload() as batch:
        batch.put_file(io.BytesIO(rand(4 * KiB)), "one.bin")
        batch.put_file(io.BytesIO(rand(4 * KiB)), "two/three.bin")
        assert other.listdir("/") == []
        other.reload()
        assert other.listdir("/") == []
        assert [h.seq for h in other.history()] == [0]
    other.reload()
    assert paths(other.listdir("/", recursive=True)) == ["one.bin", "two", "two/three.bin"]
    assert [h.seq for h in other.history()] == [1, 0]  # one commit for the whole batch
    assert batch.commit_info is not None and batch.commit_info.seq == 1


def test_batch_upload_does_not_overwrite_without_force(vol: Volume) -> None:
    put(vol, {"f.txt": b"original", "dir/g.txt": b"g"})
    with pytest.raises(AlreadyExistsError, match="f.txt") as info:
        with vol.batch_upload() as batch:
            batch.put_file(io.BytesIO(b"fresh"), "new.txt")
            batch.put_file(io.BytesIO(b"replacement"), "/f.txt")
    assert isinstance(info.value, FileExistsError)
    assert "force" in str(info.value)
    assert read(vol, "f.txt") == b"original"
    assert "new.txt" not in paths(vol.listdir("/"))  # all or nothing
    assert len(vol.history()) == 2

    put(vol, {"f.txt": b"replacement"}, force=True)
    assert read(vol, "f.txt") == b"replacement"
    assert vol.history(1)[0].modified == 1


def test_batch_upload_never_replaces_a_folder_with_a_file(vol: Volume) -> None:
    put(vol, {"dir/g.txt": b"g"})
    for force in (False, True):
        with pytest.raises(AlreadyExistsError, match="dir"):
            put(vol, {"dir": b"a file where a folder is"}, force=force)
    assert paths(vol.listdir("/", recursive=True)) == ["dir", "dir/g.txt"]
    # nor a file where a parent folder should be
    put(vol, {"plain": b"p"})
    with pytest.raises(AlreadyExistsError, match="plain"):
        put(vol, {"plain/below.txt": b"b"}, force=True)
    assert read(vol, "plain") == b"p"
    # nor inside one batch: a path cannot be a file and a folder at once
    with pytest.raises(VolumeError):
        put(vol, {"both": b"file", "both/inner.txt": b"inner"})
    assert "both" not in paths(vol.listdir("/"))
    assert len(vol.history()) == 3


def test_batch_upload_exception_uploads_nothing(vol: Volume, tmp_path: Path) -> None:
    class Boom(Exception):
        pass

    src = tmp_path / "d"
    src.mkdir()
    (src / "x.bin").write_bytes(rand(5 * KiB))
    with pytest.raises(Boom):
        with vol.batch_upload() as batch:
            batch.put_file(io.BytesIO(rand(200 * KiB)), "a.bin")
            batch.put_directory(src, "d")
            raise Boom
    assert vol.listdir("/") == []
    assert [h.seq for h in vol.history()] == [0]
    assert vol.verify().ok


REWRITER = """
import os, sys
path, ready, stop = sys.argv[1:4]
size, block, v = os.path.getsize(path), 1 << 20, 0
open(ready, "w").close()
while not os.path.exists(stop):
    v = v % 250 + 1
    with open(path, "r+b") as f:  # saved over in place, block by block
        for _ in range(size // block):
            f.write(bytes([v]) * block)
            f.flush()
"""


def test_batch_upload_never_stores_a_file_torn_by_its_writer(vol: Volume, tmp_path: Path) -> None:
    # A program saves over the file again and again while it is uploaded: at any moment
    # the file holds the new version's first blocks and the old one's last. Stored as
    # read, the volume would keep a file that never existed.
    path = tmp_path / "ckpt.bin"
    path.write_bytes(b"\0" * (16 << 20))
    ready, stop = tmp_path / "ready", tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, "-c", REWRITER, str(path), str(ready), str(stop)])
    try:
        deadline = time.time() + 60
        while not ready.exists():
            assert writer.poll() is None and time.time() < deadline, "the writer did not start"
            time.sleep(0.01)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                with vol.batch_upload() as batch:
                    batch.put_file(path, "ckpt.bin")
            except InvalidError as e:
                assert "changed while it was read, 4 times" in str(e)
                assert vol.listdir("/") == []
            else:
                # it held still while read (the writer was not scheduled): it is still
                # open for writing, and the upload says so
                assert any("open for writing by" in str(w.message) for w in caught)
    finally:
        stop.touch()
        assert writer.wait(60) == 0
    with vol.batch_upload(force=True) as batch:
        batch.put_file(path, "ckpt.bin")  # written and closed: stored as it is
    data = b"".join(vol.read_file("ckpt.bin"))
    assert data == path.read_bytes() and len(set(data)) == 1


def test_put_directory_stores_a_link_to_a_folder_as_a_link_at_every_depth(
    vol: Volume, tmp_path: Path
) -> None:
    """A link to a folder is a link, stored as one (never followed) whether or not the
    upload is recursive; without ``recursive`` it was dropped silently with the folders."""
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (src / "a.txt").write_bytes(b"a")
    (src / "sub" / "b.txt").write_bytes(b"b")
    (src / "to-folder").symlink_to("../elsewhere")
    (src / "to-file").symlink_to("a.txt")
    with vol.batch_upload() as batch:
        batch.put_directory(src, "flat", recursive=False)
        batch.put_directory(src, "deep")
    kinds = {e.path: e.type for e in vol.listdir("/", recursive=True)}
    for top in ("flat", "deep"):
        assert kinds[f"{top}/to-folder"] == FileEntryType.SYMLINK, kinds
        assert kinds[f"{top}/to-file"] == FileEntryType.SYMLINK, kinds
        assert vol._repo.lookup(f"{top}/to-folder").target == "../elsewhere"
    assert "flat/sub" not in kinds and "deep/sub/b.txt" in kinds


def test_put_directory_asks_who_writes_a_big_tree_once(
    vol: Volume, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tree of 200 files: who holds them open for writing is one look at every
    process for the whole tree once there are many, not a kernel lease (four system
    calls) per file, and a file held open for writing there is still named in a
    warning. The first few files (fewer than the look costs) still take a lease each."""
    import jupyter_volume.quiet as quiet_mod

    src = tmp_path / "src"
    src.mkdir()
    for i in range(200):
        (src / f"f{i:03d}.txt").write_bytes(b"%d" % i)
    (src / "sub").mkdir()
    (src / "sub" / "one.txt").write_bytes(b"one")
    (src / "sub" / "held.txt").write_bytes(b"held")
    (src / "link").symlink_to("f001.txt")
    leases: list[str] = []
    real = quiet_mod.no_writer
    monkeypatch.setattr(quiet_mod, "no_writer", lambda p: leases.append(p) or real(p))
    with (
        open(src / "f007.txt", "ab"),
        open(src / "sub" / "held.txt", "ab"),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        with vol.batch_upload() as batch:
            batch.put_directory(src, "data")
    assert leases == [], leases  # 202 before: a lease per file
    said = [str(w.message) for w in caught]
    assert any("f007.txt is open for writing by" in m for m in said), said
    assert any("held.txt is open for writing by" in m for m in said), said
    assert b"".join(vol.read_file("data/f123.txt")) == b"123"
    assert vol.stat("data/link").type == FileEntryType.SYMLINK
    assert len(vol.listdir("data")) == 202 and len(vol.listdir("data/sub")) == 2


def test_batch_upload_bad_arguments(vol: Volume, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="missing.bin"):
        with vol.batch_upload() as batch:
            batch.put_file(tmp_path / "missing.bin", "x")
    with pytest.raises(NotFoundError):
        with vol.batch_upload() as batch:
            batch.put_directory(tmp_path / "no-such-dir", "x")
    with pytest.raises(InvalidError, match="twice|already"):
        with vol.batch_upload() as batch:
            batch.put_file(io.BytesIO(b"1"), "same")
            batch.put_file(io.BytesIO(b"2"), "/same")
    with pytest.raises(InvalidError):
        with vol.batch_upload() as batch:
            batch.put_file(io.BytesIO(b"1"), "/")
    assert vol.listdir("/") == []
    assert len(vol.history()) == 1


# -- history, diff, restore, reads at a commit --------------------------------------------


@pytest.fixture
def hist_vol(vol: Volume, monkeypatch: pytest.MonkeyPatch) -> tuple[Volume, dict[str, bytes]]:
    """Commits: 1 adds a, b, c; 2 modifies a and adds d; 3 removes b."""
    monkeypatch.setenv("JUPYTER_VOLUME_AUTHOR", "ada")
    v = {
        "a1": rand(200 * KiB),
        "a2": rand(200 * KiB),
        "b": rand(100 * KiB),
        "c": b"small c",
        "d": rand(50 * KiB),
    }
    put(vol, {"a.bin": v["a1"], "dir/b.bin": v["b"], "c.txt": v["c"]})
    put(vol, {"a.bin": v["a2"], "dir/d.bin": v["d"]}, force=True)
    vol.remove_file("dir/b.bin")
    return vol, v


class _Distant(WrappedStore):
    """A real store whose objects with ``part`` in their key answer 20 ms late, as a
    store across a network does (a loopback server answers in a millisecond); counts
    those reads and how many were in flight at once."""

    def __init__(self, inner: Store, part: str) -> None:
        super().__init__(inner)
        self.part = part
        self._lock = threading.Lock()
        self.in_flight = self.most = self.reads = 0

    def _record(self, kind: str, key: str) -> None:
        pass

    def get(self, key: str) -> bytes:
        if self.part not in key:
            return super().get(key)
        with self._lock:
            self.in_flight += 1
            self.reads += 1
            self.most = max(self.most, self.in_flight)
        try:
            time.sleep(0.02)
            return super().get(key)
        finally:
            with self._lock:
                self.in_flight -= 1


def test_history_reads_commit_records_in_parallel(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # history() read one record after another: 100 commits from a store 30 ms away
    # took 3 s, in the sidebar's History tab and `jupyter volume history` alike.
    import jupyter_volume.volume as volume_mod

    vol = Volume.from_name(_name(), store=store, create_if_missing=True)
    for i in range(40):
        put(vol, {f"f{i}.txt": b"%d" % i})
    monkeypatch.setattr(volume_mod, "_repos", {})  # another process: no record in memory
    distant = _Distant(store, "/log/")
    fresh = Volume.from_name(vol.name, store=distant)
    assert [h.seq for h in fresh.history(limit=35)] == list(range(40, 5, -1))
    assert distant.most > 4, distant.most
    assert [h.seq for h in fresh.history()] == list(range(40, -1, -1))
    assert distant.reads == 41  # each record read once


def test_listing_volumes_reads_their_entries_in_parallel(store: Store) -> None:
    # A listing reads one small entry per volume; one after another, 50 volumes on a
    # store 30 ms away took 1.5 s at every refresh of the sidebar and `jupyter volume list`.
    made = sorted(f"ls-{i:02d}-{uuid.uuid4().hex[:6]}" for i in range(12))
    for name in made:
        Volume.objects.create(name, store=store)
    distant = _Distant(store, "names/")
    assert sorted(v.name for v in Volume.objects.list(store=distant)) == made
    assert distant.most > 2, distant.most


def test_a_walk_reads_folders_ahead_in_parallel(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A walk (a recursive listing, the first mount) read each folder's node when it got
    # there: one round trip per folder, 1,000 folders from a store 30 ms away took 30 s
    # before a mount downloaded anything.
    import jupyter_volume.volume as volume_mod

    vol = Volume.from_name(_name(), store=store, create_if_missing=True)
    files = {f"{top}/{sub}/f.txt": f"{top}{sub}".encode() for top in "abcdefgh" for sub in "xyz"}
    put(vol, files)
    monkeypatch.setattr(volume_mod, "_repos", {})  # another process, with an empty cache
    monkeypatch.setenv("JUPYTER_VOLUME_CACHE_DIR", str(tmp_path / "fresh-cache"))
    distant = _Distant(store, "/trees/")
    fresh = Volume.from_name(vol.name, store=distant)
    listed = {e.path for e in fresh.listdir("/", recursive=True) if e.type == FileEntryType.FILE}
    assert listed == set(files)
    assert distant.most > 2, distant.most
    monkeypatch.setattr(volume_mod, "_repos", {})
    monkeypatch.setenv("JUPYTER_VOLUME_CACHE_DIR", str(tmp_path / "fresh-cache-2"))
    distant = _Distant(store, "/trees/")
    m = Volume.from_name(vol.name, store=distant).mount(tmp_path / "mnt", background=False)
    assert all((tmp_path / "mnt" / p).read_bytes() == b for p, b in files.items())
    m.unmount()
    assert distant.most > 2, distant.most
    monkeypatch.setattr(volume_mod, "_repos", {})  # gc marks every kept tree the same way
    monkeypatch.setenv("JUPYTER_VOLUME_CACHE_DIR", str(tmp_path / "fresh-cache-3"))
    distant = _Distant(store, "/trees/")
    Volume.from_name(vol.name, store=distant).gc(grace=0)
    assert distant.most > 2, distant.most
    assert {e.path for e in vol.listdir("/", recursive=True)} >= set(files)


def test_history(hist_vol: tuple[Volume, dict[str, bytes]]) -> None:
    vol, v = hist_vol
    hist = vol.history()
    assert [h.seq for h in hist] == [3, 2, 1, 0]
    assert [h.seq for h in vol.history(limit=2)] == [3, 2]
    assert vol.history(limit=0) == []  # it gave one commit
    with pytest.raises(InvalidError, match="limit"):
        vol.history(limit=-2)  # it gave one commit too
    for bad in (float("nan"), 1.5, "2"):
        with pytest.raises(InvalidError, match="whole number"):
            vol.history(limit=bad)  # type: ignore[arg-type]  # nan gave every commit
    # the next page: only commits older than the one given (past the head: from the head)
    assert [h.seq for h in vol.history(limit=2, before=2)] == [1, 0]
    assert [h.seq for h in vol.history(before=3)] == [2, 1, 0]
    assert [h.seq for h in vol.history(before=99)] == [3, 2, 1, 0]
    assert vol.history(before=0) == []
    for bad in (-1, True, 1.5, "2"):
        with pytest.raises(InvalidError, match="before must be None or a whole number"):
            vol.history(before=bad)  # type: ignore[arg-type]
    assert [(h.added, h.modified, h.deleted) for h in hist[:3]] == [(0, 0, 1), (1, 1, 0), (3, 0, 0)]
    for h in hist[:3]:
        assert h.author == "ada"
        assert h.host == socket.gethostname()
        assert isinstance(h.time, datetime) and h.time.tzinfo is not None
        assert abs(h.time.timestamp() - time.time()) < 600
        assert h.message
    assert hist[0].time >= hist[1].time >= hist[2].time
    assert "dir/b.bin" in hist[0].message
    # bytes_new: the stored size of new data (random data does not compress)
    assert 300 * KiB <= hist[2].bytes_new < 300 * KiB + 64 * KiB
    assert 250 * KiB <= hist[1].bytes_new < 250 * KiB + 64 * KiB
    assert hist[0].bytes_new == 0


def test_bytes_new_counts_small_files_kept_inline(vol: Volume) -> None:
    # Small files live in the tree itself, not in packs: their contents are still new
    # data (history showed "0 B" for an upload of small files).
    put(vol, {"notes.txt": b"hello again\n", "run.csv": b"epoch,loss\n1,0.5\n"})
    assert vol.history(1)[0].bytes_new == 12 + 17
    vol.copy_files(["notes.txt"], "copy.txt")
    assert vol.history(1)[0].bytes_new == 0  # a copy stores nothing new


def test_diff(hist_vol: tuple[Volume, dict[str, bytes]]) -> None:
    vol, v = hist_vol
    assert vol.diff(1, 2) == [
        DiffEntry("a.bin", "modified", FileEntryType.FILE, 200 * KiB, 200 * KiB),
        DiffEntry("dir/d.bin", "added", FileEntryType.FILE, None, 50 * KiB),
    ]
    assert vol.diff(2, 3) == [
        DiffEntry("dir/b.bin", "deleted", FileEntryType.FILE, 100 * KiB, None)
    ]
    assert vol.diff(2) == vol.diff(2, 3)  # b defaults to the head
    assert vol.diff(3, 3) == []
    back = vol.diff(3, 1)
    assert [(d.path, d.change) for d in back] == [
        ("a.bin", "modified"),
        ("dir/b.bin", "added"),
        ("dir/d.bin", "deleted"),
    ]
    first = vol.diff(0, 1)
    assert {(d.path, d.change, d.type) for d in first} == {
        ("a.bin", "added", FileEntryType.FILE),
        ("c.txt", "added", FileEntryType.FILE),
        ("dir", "added", FileEntryType.DIRECTORY),
        ("dir/b.bin", "added", FileEntryType.FILE),
    }
    with pytest.raises(NotFoundError):
        vol.diff(1, 99)


def test_reads_at_an_older_commit(hist_vol: tuple[Volume, dict[str, bytes]]) -> None:
    vol, v = hist_vol
    assert read(vol, "a.bin", at=1) == v["a1"]
    assert read(vol, "a.bin", at=2) == v["a2"]
    assert read(vol, "a.bin") == v["a2"]
    assert read(vol, "dir/b.bin", at=2) == v["b"]
    assert paths(vol.listdir("dir", at=1)) == ["dir/b.bin"]
    assert paths(vol.listdir("dir", at=2)) == ["dir/b.bin", "dir/d.bin"]
    assert paths(vol.listdir("dir")) == ["dir/d.bin"]
    assert vol.listdir("/", at=0) == []
    assert paths(vol.listdir("**/*.bin", at=1)) == ["a.bin", "dir/b.bin"]
    out = io.BytesIO()
    assert vol.read_file_into_fileobj("a.bin", out, at=1) == len(v["a1"])
    assert out.getvalue() == v["a1"]
    with pytest.raises(NotFoundError, match="b.bin"):
        read(vol, "dir/b.bin")
    with pytest.raises(NotFoundError):
        read(vol, "dir/d.bin", at=1)
    with pytest.raises(NotFoundError, match="99"):
        vol.listdir("/", at=99)
    with pytest.raises(NotFoundError):
        read(vol, "a.bin", at=99)


def test_restore_whole_tree(hist_vol: tuple[Volume, dict[str, bytes]]) -> None:
    vol, v = hist_vol
    then = vol.listdir("/", recursive=True, at=1)
    info = vol.restore(1)
    assert info is not None and info.seq == 4
    assert vol.listdir("/", recursive=True) == then
    assert read(vol, "a.bin") == v["a1"]
    assert read(vol, "dir/b.bin") == v["b"]
    assert [h.seq for h in vol.history()] == [4, 3, 2, 1, 0]  # nothing rewritten
    assert (info.added, info.modified, info.deleted) == (1, 1, 1)
    assert read(vol, "a.bin", at=2) == v["a2"]  # the versions in between stay
    assert vol.restore(1) is None  # nothing differs: no commit
    assert len(vol.history()) == 5
    with pytest.raises(NotFoundError):
        vol.restore(42)
    assert vol.verify().ok


def test_restore_one_path(hist_vol: tuple[Volume, dict[str, bytes]]) -> None:
    vol, v = hist_vol
    info = vol.restore(1, "/a.bin")
    assert info is not None and info.seq == 4 and info.modified == 1
    assert read(vol, "a.bin") == v["a1"]
    assert paths(vol.listdir("dir")) == ["dir/d.bin"]  # other paths untouched

    vol.restore(2, "dir")  # a folder
    assert paths(vol.listdir("dir")) == ["dir/b.bin", "dir/d.bin"]
    assert read(vol, "dir/b.bin") == v["b"]
    assert read(vol, "a.bin") == v["a1"]

    vol.restore(1, "dir/d.bin")  # did not exist at commit 1: removed
    assert paths(vol.listdir("dir")) == ["dir/b.bin"]
    assert [h.seq for h in vol.history(3)] == [6, 5, 4]
    assert vol.restore(1, "a.bin") is None  # as it was: nothing to do
    # a path that exists neither then nor now is a typo, not a no-op
    with pytest.raises(NotFoundError, match="at commit 0 or now: never-existed"):
        vol.restore(0, "never-existed")
    assert [h.seq for h in vol.history(1)] == [6]
    assert read(vol, "dir/d.bin", at=5) == v["d"]


# -- verify and du ----------------------------------------------------------------------------


def test_verify_clean(hist_vol: tuple[Volume, dict[str, bytes]]) -> None:
    vol, v = hist_vol
    report = vol.verify()
    assert report.ok and report.errors == []
    assert report.commits == 4
    assert report.chunks >= 4  # a1, a2, b, d are each at least one chunk
    assert report.bytes_read >= sum(len(v[k]) for k in ("a1", "a2", "b", "d"))


def test_du(tree_vol: Volume) -> None:
    assert tree_vol.du("/") == DiskUsage("", 5, 5 + 6 + 256 * 12 + 3 + 1200)
    assert tree_vol.du("dir") == DiskUsage("dir", 3, 256 * 12 + 3 + 1200)
    assert tree_vol.du("/dir/sub/") == DiskUsage("dir/sub", 2, 3 + 1200)
    assert tree_vol.du("dir/empty") == DiskUsage("dir/empty", 0, 0)
    assert tree_vol.du("a.txt") == DiskUsage("a.txt", 1, 5)
    with pytest.raises(NotFoundError):
        tree_vol.du("nope")


# -- bad input ---------------------------------------------------------------------------------

GOOD_NAMES = ["a", "Z", "7", "a" * 64, "my.data_set-2", "0.0", "x..y"]
BAD_NAMES = ["", ".", "..", "-x", "a" * 65, "a/b", "a b", "née", "a\x00b", "a:b"]


def test_volume_names(store: Store) -> None:
    for bad in BAD_NAMES:
        for call in (
            lambda bad=bad: Volume.from_name(bad, store=store),
            lambda bad=bad: Volume.lookup(bad, store=store),
            lambda bad=bad: Volume.objects.create(bad, store=store),
            lambda bad=bad: Volume.objects.delete(bad, store=store),
            lambda bad=bad: Volume.rename("whatever", bad, store=store),
        ):
            with pytest.raises(InvalidError) as info:
                call()
            msg = str(info.value)
            assert "1-64" in msg and "not starting with '-'" in msg, msg
            assert isinstance(info.value, ValueError)
    assert keys(store, "") == []
    for good in GOOD_NAMES:
        Volume.objects.create(good, store=store)
    assert sorted(v.name for v in Volume.objects.list(store=store)) == sorted(GOOD_NAMES)


def test_paths_are_normalized(vol: Volume) -> None:
    put(vol, {"//a///b/./c.txt": b"c", "x/../y.txt": b"y"})
    assert paths(vol.listdir("/", recursive=True)) == ["a", "a/b", "a/b/c.txt", "y.txt"]
    assert read(vol, "/a/b/c.txt") == b"c"
    assert read(vol, "a/./b//c.txt") == b"c"
    longest = "n" * 255
    put(vol, {f"ok/{longest}": b"255 bytes is fine"})
    assert read(vol, f"ok/{longest}") == b"255 bytes is fine"


BAD_PATHS = {
    "../escape.txt": "'..'",
    "a/../../escape.txt": "'..'",
    "/..": "'..'",
    "a\x00b": "NUL",
    "n" * 256: "255",
    "d/" * 2100 + "f": "4096",
}


def test_bad_paths_are_refused(vol: Volume) -> None:
    put(vol, {"a/f.txt": b"f"})
    for bad, why in BAD_PATHS.items():
        for call in (
            lambda bad=bad: put(vol, {bad: b"x"}),
            lambda bad=bad: read(vol, bad),
            lambda bad=bad: vol.listdir(bad),
            lambda bad=bad: vol.remove_file(bad),
            lambda bad=bad: vol.copy_files(["a/f.txt"], bad),
            lambda bad=bad: vol.copy_files([bad], "a"),
            lambda bad=bad: vol.du(bad),
            lambda bad=bad: vol.restore(1, bad),
        ):
            with pytest.raises(InvalidError, match=why):
                call()
    assert paths(vol.listdir("/", recursive=True)) == ["a", "a/f.txt"]
    assert len(vol.history()) == 2


# -- corruption (local store: damage is caused by flipping a byte of the file) -----------------


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_corrupt_pack_is_reported(local_store: LocalStore) -> None:
    vol = Volume.from_name("corrupt-pack", create_if_missing=True, store=local_store)
    data = rand(300 * KiB)
    put(vol, {"ok.txt": b"inline, not in a pack", "data.bin": data})
    vol_id = vol.info().id
    [pack_key] = keys(local_store, f"vols/{vol_id}/packs/")
    _flip(local_store.root / pack_key, 1000)

    with pytest.raises(CorruptionError, match="hash mismatch") as info:
        read(vol, "data.bin")
    assert info.value.key == pack_key
    assert pack_key in str(info.value)
    assert read(vol, "ok.txt") == b"inline, not in a pack"

    report = vol.verify()
    assert not report.ok
    assert any(pack_key in e for e in report.errors), report.errors
    assert any("hash mismatch" in e for e in report.errors), report.errors


def test_corrupt_tree_is_reported(
    local_store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import jupyter_volume.volume as volume_mod

    vol = Volume.from_name("corrupt-tree", create_if_missing=True, store=local_store)
    put(vol, {"dir/a.bin": rand(2 * KiB), "dir/b.txt": b"b" * 600, "top.txt": b"top"})
    vol_id = vol.info().id
    # The tree node key is not visible through the API: find it from the head entry.
    h = vol._repo.lookup("dir").tree
    tree_key = f"vols/{vol_id}/trees/{h[:2]}/{h}"
    assert tree_key in keys(local_store, f"vols/{vol_id}/trees/")
    size = (local_store.root / tree_key).stat().st_size
    _flip(local_store.root / tree_key, size // 2)

    report = vol.verify()  # verify bypasses every cache
    assert not report.ok
    assert any(h in e for e in report.errors), report.errors

    # A fresh process would have no cached copy: emulate one (new caches, new objects).
    monkeypatch.setattr(volume_mod, "_repos", {})
    monkeypatch.setenv("JUPYTER_VOLUME_CACHE_DIR", str(tmp_path / "fresh-cache"))
    fresh = Volume.from_name("corrupt-tree", store=local_store)
    assert read(fresh, "top.txt") == b"top"
    with pytest.raises(CorruptionError) as info:
        read(fresh, "dir/a.bin")
    assert h in str(info.value)
    assert info.value.key is not None and h in info.value.key
    with pytest.raises(CorruptionError):
        fresh.listdir("dir")


def test_ranged_reads_stat_and_names_with_glob_characters(vol: Volume) -> None:
    big = os.urandom(1_500_000)
    put(
        vol, {"big.bin": big, "a[1].txt": b"bracket", "why?.md": b"question", "tiny": b"0123456789"}
    )
    for offset, length in [(0, 10), (5, 1_000_000), (1_499_990, 100), (700_000, 0), (1_600_000, 5)]:
        got = b"".join(vol.read_file("big.bin", offset=offset, length=length))
        assert got == big[offset : offset + length]
    assert b"".join(vol.read_file("tiny", offset=3, length=4)) == b"3456"
    assert b"".join(vol.read_file("big.bin", offset=1_000_000)) == big[1_000_000:]
    with pytest.raises(InvalidError):
        vol.read_file("big.bin", offset=-1)
    # only a `*` makes a path a glob (as in Modal); other names list as themselves
    assert [e.path for e in vol.listdir("a[1].txt")] == ["a[1].txt"]
    assert [e.path for e in vol.listdir("why?.md")] == ["why?.md"]
    assert sorted(e.path for e in vol.listdir("*.txt")) == ["a[1].txt"]
    # the folder a glob lists from is named literally (it was matched as a pattern: empty)
    put(vol, {"d[1]/x.txt": b"x", "d1/y.txt": b"y"})
    assert [e.path for e in vol.listdir("d[1]/*.txt")] == ["d[1]/x.txt"]
    assert [e.path for e in vol.listdir("d[1]/**")] == ["d[1]/x.txt"]
    assert vol.stat("big.bin").size == len(big) and vol.stat("/").type == FileEntryType.DIRECTORY
    with pytest.raises(NotFoundError):
        vol.stat("nope")
    seq = vol.seq
    put(vol, {"later": b"x"})
    assert vol.seq == seq + 1


def test_uploads_keep_empty_folders_and_refuse_a_file_object_put_as_a_folder(
    vol: Volume, tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "outer" / "inner").mkdir(parents=True)
    with vol.batch_upload() as batch:
        batch.put_directory(tmp_path / "empty", "empty")  # the top folder itself was lost
        batch.put_directory(tmp_path / "outer", "outer")
    assert [(e.path, e.type) for e in vol.listdir("/", recursive=True)] == [
        ("empty", FileEntryType.DIRECTORY),
        ("outer", FileEntryType.DIRECTORY),
        ("outer/inner", FileEntryType.DIRECTORY),
    ]
    # a file object has no name to put into a folder: as Modal, an error (it stored "data")
    with pytest.raises(InvalidError, match="must refer to a file - cannot end with /"):
        with vol.batch_upload() as batch:
            batch.put_file(io.BytesIO(b"x"), "data/")
    with pytest.raises(NotFoundError):
        vol.stat("data")
    src = tmp_path / "named.txt"
    src.write_bytes(b"n")
    with vol.batch_upload() as batch:
        batch.put_file(src, "docs/")  # a path has a name: docs/named.txt, as documented
    assert read(vol, "docs/named.txt") == b"n"


def test_put_directory_of_a_folder_that_cannot_be_listed_raises(vol: Volume) -> None:
    # os.walk dropped the PermissionError: nothing uploaded, nothing said, a job script
    # believed its results were saved.
    import shutil
    import tempfile

    if os.geteuid() != 0:
        pytest.fail("this test changes its user to 'nobody' in a child: run it as root")
    folder = Path(tempfile.mkdtemp(prefix="jv-unlistable-"))
    folder.chmod(0o755)
    (folder / "results").mkdir()
    (folder / "results" / "run-1.csv").write_text("a,b\n")
    (folder / "results").chmod(0o311)  # searchable, not listable
    vol.listdir("/")  # the handle is resolved before the fork

    def upload() -> int:
        try:
            with vol.batch_upload() as batch:
                batch.put_directory(folder / "results", "results")
        except PermissionError as e:
            return 0 if "results" in str(e) else 5
        return 4

    try:
        status = as_nobody(upload)  # the upload as user and group 65534
    finally:
        shutil.rmtree(folder)
    assert status == 0, "put_directory raised no PermissionError"
    assert vol.listdir("/") == []


def test_links_in_the_middle_of_a_path_are_followed_by_every_read(
    vol: Volume, tmp_path: Path
) -> None:
    # read_file followed src/link/f through src/link -> real; stat, listdir, du (and so
    # `ls`, `get`) said "no such file".
    src = tmp_path / "src"
    (src / "real").mkdir(parents=True)
    (src / "real" / "f.txt").write_bytes(b"12345")
    (src / "link").symlink_to("real")
    (src / "file-link").symlink_to("real/f.txt")
    (src / "out").symlink_to("/etc")
    with vol.batch_upload() as batch:
        batch.put_directory(src, "src")
    assert read(vol, "src/link/f.txt") == b"12345"
    st = vol.stat("src/link/f.txt")
    assert (st.path, st.type, st.size) == ("src/link/f.txt", FileEntryType.FILE, 5)
    assert paths(vol.listdir("src/link/f.txt")) == ["src/link/f.txt"]
    assert vol.du("src/link/f.txt").bytes == 5
    # the last part is not followed: `ls link` shows the link itself ...
    assert vol.stat("src/link").type == FileEntryType.SYMLINK
    assert [(e.path, e.type) for e in vol.listdir("src/link")] == [
        ("src/link", FileEntryType.SYMLINK)
    ]
    # ... unless asked, as POSIX stat does (fsspec's info describes a link's target)
    assert vol.stat("src/link", follow_symlinks=True).type == FileEntryType.DIRECTORY
    followed = vol.stat("src/file-link", follow_symlinks=True)
    assert (followed.path, followed.type, followed.size) == ("src/file-link", FileEntryType.FILE, 5)
    with pytest.raises(InvalidError, match="outside volume"):
        vol.stat("src/out", follow_symlinks=True)
    with pytest.raises(InvalidError, match="outside volume"):
        vol.stat("src/out/passwd")  # never resolved on the local disk
    with pytest.raises(NotFoundError):
        vol.stat("src/link/missing.txt")
    # writes name stored paths: never resolved through a link
    with pytest.raises(NotFoundError):
        vol.remove_file("src/link/f.txt")


def test_a_name_with_a_star_lists_literally_with_glob_false(vol: Volume) -> None:
    # fsspec globs by itself and must list a folder named `run*1` as that folder
    put(vol, {"run*1/f.txt": b"1", "run-1/g.txt": b"22"})
    assert paths(vol.listdir("run*1")) == ["run*1", "run-1"]  # a glob, as in Modal
    assert paths(vol.listdir("run*1", glob=False)) == ["run*1/f.txt"]
    assert paths(vol.listdir("run*1", glob=False, recursive=True)) == ["run*1/f.txt"]
    assert paths(vol.iterdir("run*1/f.txt", glob=False)) == ["run*1/f.txt"]
    with pytest.raises(NotFoundError):
        vol.listdir("run*2", glob=False)


def test_every_public_error_is_importable_from_the_package():
    """Callers catch our errors by name: every exception class in errors.py is re-exported."""
    import inspect

    import jupyter_volume
    from jupyter_volume import errors

    classes = {
        name
        for name, obj in vars(errors).items()
        if inspect.isclass(obj)
        and issubclass(obj, Exception)
        and not name.startswith("_")
        and obj.__module__ == errors.__name__
    }
    assert classes, "errors.py defines no exception classes?"
    missing = sorted(c for c in classes if c not in jupyter_volume.__all__)
    assert not missing, f"not exported from jupyter_volume: {missing}"


def test_a_move_or_new_folder_that_loses_a_race_changes_nothing(vol: Volume, store: Store) -> None:
    """A move, or a new folder, checks the head it starts from; another writer's
    commit landing before it publishes used to be overwritten blindly: two moves of
    different files onto one new name both succeeded and the first file vanished from
    the head, and two creators of one folder both succeeded. The other writer's commit
    is made from inside the commit step here (a subclass: the race's moment, which a
    real race hits only sometimes); the one that loses is refused and changes nothing."""
    put(vol, {"a.txt": b"A", "b.txt": b"B"})
    other = Volume.from_name(vol.name, store=store)

    class Raced(Volume):
        race: Any = None

        def _commit_changes(self, changes: Any, message: str, writer: Any = None, **kw: Any) -> Any:
            if self.race is not None:
                race, self.race = self.race, None
                race()  # the other writer wins the race
            return super()._commit_changes(changes, message, writer, **kw)

    mine = Raced(vol.name, store=store)
    mine.race = lambda: other.move("b.txt", "dst.txt")
    with pytest.raises(AlreadyExistsError, match="while a.txt was being moved"):
        mine.move("a.txt", "dst.txt")
    assert read(vol, "dst.txt") == b"B" and read(vol, "a.txt") == b"A"

    mine.race = lambda: other.mkdir("new")
    with pytest.raises(AlreadyExistsError, match="new already exists"):
        mine.mkdir("new")
    assert [c.message for c in vol.history(limit=2)] == [
        "create folder new",
        "move b.txt to dst.txt",
    ]

    mine.race = lambda: put(other, {"a.txt": b"A2"}, force=True)
    with pytest.raises(VolumeError, match="changed .* while it was being moved"):
        mine.move("a.txt", "moved.txt")
    assert read(vol, "a.txt") == b"A2" and "moved.txt" not in {e.path for e in vol.listdir("/")}
