"""Parity with Modal's client (v1.5): the client-visible cases of Modal's
``py/test/volume_test.py``, named as there where a case exists, on both store kinds,
plus the behaviours issue 15 asks for (environments, names, ids, pickling, ...).
"""

from __future__ import annotations

import asyncio
import functools
import getpass
import io
import json
import multiprocessing
import os
import pickle
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from jupyter_volume import AlreadyExistsError, FileEntryType, NotFoundError, Volume, VolumeError
from jupyter_volume.errors import ConflictError, InvalidError
from jupyter_volume.store import (
    ENV_ENVIRONMENT,
    PrefixedStore,
    Store,
    environment_store,
    open_store,
    resolve_environment,
)

pytestmark = pytest.mark.slow  # long in all: started first (conftest)


# -- environments: the store layer ------------------------------------------------------------
def test_environment_store_default_is_the_store_itself(store: Any) -> None:
    assert environment_store(store, None) is store
    assert environment_store(store, "") is store


def test_environment_store_keeps_keys_apart(store: Any) -> None:
    dev = environment_store(store, "dev")
    prod = environment_store(store, "prod")
    assert isinstance(dev, PrefixedStore)
    assert len({store.url, dev.url, prod.url}) == 3
    dev.put("names/x", b"dev")
    store.put("names/x", b"default")
    assert dev.get("names/x") == b"dev"
    assert store.get("names/x") == b"default"
    assert [o.key for o in dev.list("names/")] == ["names/x"]
    assert [o.key for o in store.list("names/")] == ["names/x"]
    assert [o.key for o in prod.list("")] == []
    assert [o.key for o in store.list("envs/")] == ["envs/dev/names/x"]
    assert dev.put_if_absent("names/x", b"again") is False
    assert dev.stat("names/x").size == 3
    dev.delete(["names/x"])
    assert not dev.exists("names/x")
    assert store.get("names/x") == b"default"


def test_environment_store_url_opens_the_same_place(local_store: Any) -> None:
    dev = environment_store(local_store, "dev")
    dev.put("k", b"v")
    assert open_store(dev.url).get("k") == b"v"


@pytest.mark.parametrize("bad", ["-x", ".", "..", "a" * 65, "a/b", "é", "a b"])
def test_environment_names_follow_the_volume_rule(local_store: Any, bad: str) -> None:
    with pytest.raises(InvalidError, match="1-64 characters"):
        environment_store(local_store, bad)


def test_resolve_environment_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.delenv(ENV_ENVIRONMENT, raising=False)
    assert resolve_environment(None) == ""
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "jupyter_volume_config.py").write_text(
        'c.VolumeConfig.environment = "from-config"\n'
    )
    assert resolve_environment(None) == "from-config"
    monkeypatch.setenv(ENV_ENVIRONMENT, "from-env")
    assert resolve_environment(None) == "from-env"
    assert resolve_environment("explicit") == "explicit"
    monkeypatch.setenv(ENV_ENVIRONMENT, "-bad")
    with pytest.raises(InvalidError, match="environment"):
        resolve_environment(None)


def _sync(fn: Any) -> Any:
    """Run an async test with asyncio.run (the project does not use pytest-asyncio)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        return asyncio.run(fn(*args, **kwargs))

    return run


# -- the Volume API, as Modal's volume_test.py exercises it -----------------------------------
# (Modal's cases are named as in its suite; where Modal checks a request sent to its server,
# these check the effect in the store instead.)

KiB = 1024
MiB = 1024 * KiB


def _name() -> str:
    return f"v-{uuid.uuid4().hex[:12]}"


def _put(vol: Volume, files: dict[str, bytes], force: bool = False) -> None:
    with vol.batch_upload(force=force) as batch:
        for path, data in files.items():
            batch.put_file(io.BytesIO(data), path)


def _read(vol: Volume, path: str, at: int | None = None) -> bytes:
    return b"".join(vol.read_file(path, at=at))


def _keys(store: Store, prefix: str = "") -> list[str]:
    return [o.key for o in store.list(prefix)]


def test_volume_info(store: Store) -> None:
    name = "super-important-data"
    vol = Volume.from_name(name, create_if_missing=True, store=store)
    assert vol.name == name
    assert vol.hydrate(None) is vol  # Modal passes a client; it is accepted and ignored
    info = vol.info()
    assert info.name == name
    assert info.created_by.startswith(getpass.getuser())


def test_volume_from_id(store: Store) -> None:
    with Volume.ephemeral(store=store) as vol:
        volume_id = vol.object_id
        vol2 = Volume.from_id(volume_id, store=store)
        assert _keys(store, "names/") == []
        vol2.hydrate()
        assert vol2.object_id == volume_id
        assert vol2.name is None


def test_volume_from_id_named(store: Store) -> None:
    name = "test-volume-from-id"
    vol = Volume.from_name(name, create_if_missing=True, store=store)
    vol.hydrate()
    volume_id = vol.object_id
    vol2 = Volume.from_id(volume_id, store=store)
    info = vol2.info()  # looks it up lazily
    assert info.name == name
    assert vol2.object_id == volume_id
    assert vol2.name == name
    Volume.rename(old_name=name, new_name="renamed", store=store)
    assert Volume.from_id(volume_id, store=store).info().name == "renamed"


def test_volume_from_id_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError):
        Volume.from_id(uuid.uuid4().hex, store=store).hydrate()
    with pytest.raises(InvalidError):
        Volume.from_id("vo-nonexistent", store=store).hydrate()


def test_volume_mount_options_set_state_on_volume_copy(local_store: Store) -> None:
    vol = Volume.from_name("xyz", create_if_missing=True, store=local_store)
    vol_mount = vol.with_mount_options(read_only=True, sub_path="/nested")
    assert vol_mount is not vol
    assert isinstance(vol_mount, Volume)
    assert vol._mount_options is None
    assert vol_mount._mount_options is not None
    assert vol_mount._mount_options.read_only
    assert vol_mount._mount_options.sub_path == "nested"


def test_volume_mount_options_merge_on_repeated_calls(local_store: Store) -> None:
    vol = Volume.from_name("xyz", create_if_missing=True, store=local_store).with_mount_options(
        read_only=True, sub_path="/nested"
    )
    v = vol.with_mount_options(sub_path="/other")
    assert v._mount_options.read_only and v._mount_options.sub_path == "other"
    v = vol.with_mount_options(read_only=False)
    assert not v._mount_options.read_only and v._mount_options.sub_path == "nested"
    v = vol.with_mount_options(sub_path=None)
    assert v._mount_options.read_only and v._mount_options.sub_path == "nested"
    v = vol.with_mount_options(sub_path="/")
    assert v._mount_options.read_only and v._mount_options.sub_path is None


def test_volume_read_only_rejects_mount_options_immediately(local_store: Store) -> None:
    vol = Volume.from_name("xyz", create_if_missing=True, store=local_store)
    with pytest.raises(InvalidError, match="read_only.*with_mount_options"):
        vol.with_mount_options(sub_path="/nested").read_only()
    with pytest.raises(InvalidError, match="with_mount_options.*read_only"):
        vol.read_only().with_mount_options(sub_path="/nested")
    ro = vol.read_only()
    assert ro._read_only and ro._mount_options.read_only


def test_volume_with_mount_options_copies_metadata(local_store: Store) -> None:
    vol = Volume.from_name("xyz", create_if_missing=True, store=local_store).hydrate()
    sub = vol.with_mount_options(sub_path="/nested")
    assert sub.name == vol.name == "xyz"
    assert sub.listdir("/") == []
    with pytest.raises(FileNotFoundError):
        sub.remove_file("nonexistent", recursive=True)


def test_volume_mount_read_only_error(local_store: Store) -> None:
    ro = Volume.from_name("xyz", create_if_missing=True, store=local_store).read_only().hydrate()
    with pytest.raises(InvalidError):
        with ro.batch_upload():
            pass
    with pytest.raises(InvalidError):
        ro.remove_file("file1.txt")
    with pytest.raises(InvalidError):
        ro.copy_files(["file1.txt"], "bar2")
    assert ro.listdir("/") == []  # reads still work


@pytest.mark.parametrize("version", [None, 2])
@pytest.mark.parametrize("file_contents_size", [100, 3 * MiB + 4711])
@_sync
async def test_volume_get(
    local_store: Store, tmp_path: Path, version: Any, file_contents_size: int
) -> None:
    await Volume.objects.create.aio("my-vol", store=local_store, version=version)
    vol = await Volume.from_name("my-vol", store=local_store).hydrate.aio()
    file_contents = random.randbytes(file_contents_size)
    local_file_path = tmp_path / "foo.bin"
    local_file_path.write_bytes(file_contents)
    async with vol.batch_upload() as batch:
        batch.put_file(local_file_path, "foo.bin")
    data = b""
    async for chunk in vol.read_file.aio("foo.bin"):
        data += chunk
    assert len(data) == file_contents_size and data == file_contents
    output = io.BytesIO()
    await vol.read_file_into_fileobj.aio("foo.bin", output)
    assert output.getvalue() == file_contents
    with pytest.raises(FileNotFoundError):
        async for _ in vol.read_file.aio("/abc/def/i-dont-exist-at-all"):
            pass


@_sync
async def test_volume_batch_upload(store: Store, tmp_path: Path) -> None:
    local_file_path = tmp_path / "some_file"
    local_file_path.write_text("hello world")
    local_dir = tmp_path / "some_dir"
    local_dir.mkdir()
    (local_dir / "smol").write_text("###")
    (local_dir / "subdir").mkdir()
    (local_dir / "subdir" / "other").write_text("####")
    async with Volume.ephemeral(store=store) as vol:
        with open(local_file_path, "rb") as fp:
            async with vol.batch_upload() as batch:
                batch.put_file(local_file_path, "/some_file")
                batch.put_directory(local_dir, "/some_dir")
                batch.put_file(io.BytesIO(b"data from a file-like object"), "/filelike", mode=0o600)
                batch.put_directory(local_dir, "/non-recursive", recursive=False)
                batch.put_file(fp, "/filelike2")
        files = {e.path for e in vol.listdir("/", recursive=True) if e.type == FileEntryType.FILE}
        assert files == {
            "some_file",
            "some_dir/smol",
            "some_dir/subdir/other",
            "filelike",
            "non-recursive/smol",
            "filelike2",
        }
        assert _read(vol, "some_dir/subdir/other") == b"####"
        assert _read(vol, "filelike2") == b"hello world"


@_sync
async def test_volume_batch_upload_force(local_store: Store, tmp_path: Path) -> None:
    (tmp_path / "a").write_text("hello world")
    (tmp_path / "b").write_text("overwritten")
    async with Volume.ephemeral(store=local_store) as vol:
        async with vol.batch_upload() as batch:
            batch.put_file(tmp_path / "a", "/some_file")
        with pytest.raises(FileExistsError):
            async with vol.batch_upload(force=False) as batch:
                batch.put_file(tmp_path / "a", "/some_file")
        assert _read(vol, "some_file") == b"hello world"
        async with vol.batch_upload(force=True) as batch:
            batch.put_file(tmp_path / "b", "/some_file")
        assert _read(vol, "some_file") == b"overwritten"


@_sync
async def test_volume_upload_removed_file(local_store: Store, tmp_path: Path) -> None:
    local_file_path = tmp_path / "some_file"
    local_file_path.write_text("hello world")
    async with Volume.ephemeral(store=local_store) as vol:
        with pytest.raises(FileNotFoundError):
            async with vol.batch_upload() as batch:
                local_file_path.unlink()
                batch.put_file(local_file_path, "/dest")


@_sync
async def test_volume_copy_1(store: Store) -> None:
    async with Volume.ephemeral(store=store) as vol:
        _put(vol, {"original.txt": b"test copy"})
        await vol.copy_files.aio(["original.txt"], "copied.txt", False)
        assert {e.path for e in vol.listdir("/")} == {"original.txt", "copied.txt"}
        assert _read(vol, "copied.txt") == b"test copy"


@_sync
async def test_volume_copy_2(store: Store) -> None:
    async with Volume.ephemeral(store=store) as vol:
        _put(vol, {"file1.txt": b"test copy", "file2.txt": b"test copy"})
        await vol.copy_files.aio(["file1.txt", "file2.txt"], "test_dir", False)  # created
        assert sorted(e.path for e in vol.listdir("/", recursive=True)) == [
            "file1.txt",
            "file2.txt",
            "test_dir",
            "test_dir/file1.txt",
            "test_dir/file2.txt",
        ]


def test_copy_files_into_new_folder_with_trailing_slash(store: Store) -> None:
    with Volume.ephemeral(store=store) as vol:
        _put(vol, {"a.txt": b"A"})
        vol.copy_files(["a.txt"], "newdir/")
        assert vol.stat("newdir").type == FileEntryType.DIRECTORY
        assert _read(vol, "newdir/a.txt") == b"A"
        with pytest.raises(FileExistsError):
            vol.copy_files(["a.txt"], "a.txt/")  # a file is not a folder


@pytest.mark.parametrize("version", [None, 2])
def test_from_name(store: Store, version: Any) -> None:
    with pytest.raises(NotFoundError):
        Volume.from_name("xyz", version=version, store=store).hydrate()
    Volume.from_name("xyz", create_if_missing=True, version=version, store=store).hydrate()
    Volume.from_name("xyz", version=version, store=store).hydrate()
    Volume.objects.delete("xyz", store=store)
    with pytest.raises(NotFoundError):
        Volume.from_name("xyz", version=version, store=store).hydrate()
    Volume.objects.delete("xyz", store=store, allow_missing=True)


def test_ephemeral(local_store: Store) -> None:
    with Volume.ephemeral(store=local_store) as vol:
        assert vol.listdir("/") == []
        assert vol.name is None
        assert Volume.objects.list(store=local_store) == []
        assert _keys(local_store, "leases/ephemeral/") == [f"leases/ephemeral/{vol.object_id}"]
    assert _keys(local_store) == []


def test_lazy_hydration_from_named(local_store: Store) -> None:
    vol = Volume.from_name("my-vol", create_if_missing=True, store=local_store)
    assert _keys(local_store) == []
    assert vol.listdir("/") == []


@pytest.mark.parametrize("name", ["has space", "has/slash", "a" * 65, "-x", ".", "..", "é"])
def test_invalid_name(name: str) -> None:
    with pytest.raises(InvalidError, match="1-64 characters of letters, digits"):
        Volume.from_name(name)


@pytest.mark.parametrize("name", ["_x", ".hidden", "a" * 64, "x..y", "0"])
def test_valid_names_follow_modal(local_store: Store, name: str) -> None:
    Volume.objects.create(name, store=local_store)
    assert [v.name for v in Volume.objects.list(store=local_store)] == [name]


def test_remove_file_not_found(local_store: Store) -> None:
    vol = Volume.from_name("my_vol", create_if_missing=True, store=local_store)
    with pytest.raises(FileNotFoundError):
        vol.remove_file("a")


def test_volume_list(store: Store) -> None:
    for i in range(5):
        Volume.from_name(f"test-volume-{i}", create_if_missing=True, store=store).hydrate()
    volume_list = Volume.objects.list(store=store)
    assert len(volume_list) == 5
    # newest first, as Modal orders them
    assert [v.name for v in volume_list] == [f"test-volume-{i}" for i in reversed(range(5))]
    assert all(v.info().created_by.startswith(getpass.getuser()) for v in volume_list)
    assert len(Volume.objects.list(max_objects=2, store=store)) == 2
    with pytest.raises(InvalidError):
        Volume.objects.list(max_objects=-1, store=store)
    cut = volume_list[2].info().created_at
    older = Volume.objects.list(created_before=cut, store=store)
    assert [v.name for v in older] == ["test-volume-1", "test-volume-0"]
    assert Volume.objects.list(created_before="2000-01-01", store=store) == []
    assert len(Volume.objects.list(created_before=cut.isoformat(), store=store)) == 2


def test_volume_list_metadata_version(local_store: Store) -> None:
    Volume.from_name("v1-volume", create_if_missing=True, store=local_store).hydrate()
    Volume.from_name("v2-volume", create_if_missing=True, version=2, store=local_store).hydrate()
    by_name = {v.name: v for v in Volume.objects.list(store=local_store)}
    assert by_name["v1-volume"]._is_v1
    assert not by_name["v2-volume"]._is_v1


def test_volume_create(local_store: Store) -> None:
    Volume.objects.create(name="test-volume-create", store=local_store)
    Volume.from_name("test-volume-create", store=local_store).hydrate()
    with pytest.raises(AlreadyExistsError):
        Volume.objects.create(name="test-volume-create", store=local_store)
    Volume.objects.create(name="test-volume-create", allow_existing=True, store=local_store)
    with pytest.raises(InvalidError, match="invalid volume name"):
        Volume.objects.create(name="has space", store=local_store)


def test_volume_create_version(local_store: Store) -> None:
    for version in [1, 2]:
        Volume.objects.create(name=f"should-be-v{version}", version=version, store=local_store)
        assert Volume.from_name(f"should-be-v{version}", store=local_store).version == version
    with pytest.raises(InvalidError, match="version must be either 1 or 2"):
        Volume.objects.create(name="should-be-v3", version=3, store=local_store)
    assert [v.name for v in Volume.objects.list(store=local_store)] == [
        "should-be-v2",
        "should-be-v1",
    ]


def test_volume_create_version_mismatch(local_store: Store) -> None:
    s = local_store
    Volume.objects.create(name="vol-v1", version=1, store=s)
    with pytest.raises(InvalidError, match="exists but has version v1, not v2"):
        Volume.objects.create(name="vol-v1", version=2, allow_existing=True, store=s)
    Volume.objects.create(name="vol-v1", version=1, allow_existing=True, store=s)
    Volume.objects.create(name="vol-v1", allow_existing=True, store=s)
    Volume.objects.create(name="vol-v2", version=2, store=s)
    with pytest.raises(InvalidError, match="exists but has version v2, not v1"):
        Volume.objects.create(name="vol-v2", version=1, allow_existing=True, store=s)
    Volume.objects.create(name="vol-v2", version=2, allow_existing=True, store=s)


@pytest.mark.parametrize("create_if_missing", [True, False])
def test_volume_from_name_version_mismatch(local_store: Store, create_if_missing: bool) -> None:
    s = local_store
    Volume.from_name("vol-fn-v1", create_if_missing=True, version=1, store=s).hydrate()
    with pytest.raises(InvalidError, match="exists but has version v1, not v2"):
        Volume.from_name(
            "vol-fn-v1", version=2, create_if_missing=create_if_missing, store=s
        ).hydrate()
    Volume.from_name("vol-fn-v1", version=1, create_if_missing=create_if_missing, store=s).hydrate()
    Volume.from_name("vol-fn-v1", create_if_missing=create_if_missing, store=s).hydrate()
    Volume.from_name("vol-fn-v2", create_if_missing=True, version=2, store=s).hydrate()
    with pytest.raises(InvalidError, match="exists but has version v2, not v1"):
        Volume.from_name(
            "vol-fn-v2", version=1, create_if_missing=create_if_missing, store=s
        ).hydrate()
    Volume.from_name("vol-fn-v2", create_if_missing=create_if_missing, store=s).hydrate()


# -- beyond Modal's suite: what issue 15 asks of the Volume API -------------------------------
def test_volumes_in_environments_are_separate(store: Store) -> None:
    Volume.objects.create("shared-name", store=store)
    Volume.objects.create("shared-name", environment_name="dev", store=store)
    default = Volume.from_name("shared-name", store=store)
    dev = Volume.from_name("shared-name", environment_name="dev", store=store)
    _put(default, {"where.txt": b"default"})
    _put(dev, {"where.txt": b"dev"})
    assert default.object_id != dev.object_id
    assert _read(default, "where.txt") == b"default"
    assert _read(dev, "where.txt") == b"dev"
    assert [v.name for v in Volume.objects.list(environment_name="dev", store=store)] == [
        "shared-name"
    ]
    assert Volume.objects.list(environment_name="prod", store=store) == []
    Volume.rename("shared-name", "dev-only", environment_name="dev", store=store)
    assert Volume.from_name("shared-name", store=store).listdir("/")  # default untouched
    Volume.objects.delete("dev-only", environment_name="dev", store=store)
    assert _read(default, "where.txt") == b"default"
    assert _keys(store, "envs/") == []
    with Volume.ephemeral(environment_name="dev", store=store) as eph:
        assert eph.environment_name == "dev"
        assert _keys(store, "envs/dev/leases/ephemeral/")


def test_environment_from_the_environment_variable(
    local_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_ENVIRONMENT, "staging")
    Volume.objects.create("x", store=local_store)
    assert _keys(local_store, "names/") == []
    assert _keys(local_store, "envs/staging/names/") == ["envs/staging/names/x"]
    assert Volume.from_name("x", store=local_store).environment_name == "staging"
    assert Volume.from_name("x", environment_name="", store=local_store).environment_name == ""


def test_api_reads_see_the_newest_commit(store: Store) -> None:
    Volume.objects.create("fresh", store=store)
    reader = Volume.from_name("fresh", store=store)
    writer = Volume.from_name("fresh", store=store)
    assert reader.listdir("/") == []
    first = reader.seq
    _put(writer, {"new.txt": b"v1"})
    assert [e.path for e in reader.listdir("/")] == ["new.txt"]  # no reload needed
    assert _read(reader, "new.txt") == b"v1"
    _put(writer, {"new.txt": b"v2"}, force=True)
    assert _read(reader, "new.txt") == b"v2"
    assert _read(reader, "new.txt", at=first + 1) == b"v1"  # at= still reads an older one
    assert reader.listdir("/", at=first) == []


def test_file_entry_type_members() -> None:
    assert [(m.name, m.value) for m in FileEntryType] == [
        ("UNSPECIFIED", 0),
        ("FILE", 1),
        ("DIRECTORY", 2),
        ("SYMLINK", 3),
        ("FIFO", 4),
        ("SOCKET", 5),
    ]


def test_read_file_into_fileobj_progress_cb_advance(local_store: Store) -> None:
    vol = Volume.from_name("p", create_if_missing=True, store=local_store)
    data = random.randbytes(5 * MiB)
    _put(vol, {"big.bin": data})
    calls: list[dict[str, int]] = []
    out = io.BytesIO()
    n = vol.read_file_into_fileobj("big.bin", out, progress_cb=lambda **kw: calls.append(kw))
    assert n == len(data) and out.getvalue() == data
    assert len(calls) > 1 and all(set(c) == {"advance"} for c in calls)
    assert sum(c["advance"] for c in calls) == len(data)


def test_put_file_to_the_root_is_a_value_error(local_store: Store, tmp_path: Path) -> None:
    vol = Volume.from_name("r", create_if_missing=True, store=local_store)
    (tmp_path / "f.txt").write_bytes(b"x")
    for target in ("/", "", "//", "/./"):
        with pytest.raises(ValueError, match="must refer to a file"):
            with vol.batch_upload() as batch:
                batch.put_file(tmp_path / "f.txt", target)
    assert vol.listdir("/") == []
    with vol.batch_upload() as batch:  # a folder path with a trailing slash keeps the name
        batch.put_file(tmp_path / "f.txt", "/docs/")
    assert _read(vol, "docs/f.txt") == b"x"


def test_symlinks_are_followed_inside_the_volume(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "tree"
    (src / "real").mkdir(parents=True)
    (src / "real" / "data.txt").write_bytes(b"payload")
    os.symlink("real/data.txt", src / "link.txt")
    os.symlink("real", src / "dirlink")
    os.symlink("../../../etc/passwd", src / "escape")
    os.symlink("/etc/hostname", src / "absolute")
    os.symlink("loop-b", src / "loop-a")
    os.symlink("loop-a", src / "loop-b")
    with Volume.ephemeral(store=store) as vol:
        with vol.batch_upload() as batch:
            batch.put_directory(src, "/")
        kinds = {e.path: e.type for e in vol.listdir("/")}
        assert kinds["link.txt"] == FileEntryType.SYMLINK  # listing shows links as links
        assert _read(vol, "link.txt") == b"payload"
        assert _read(vol, "dirlink/data.txt") == b"payload"
        with pytest.raises(InvalidError, match="escape.*outside"):
            _read(vol, "escape")
        with pytest.raises(InvalidError, match="absolute.*outside"):
            _read(vol, "absolute")
        with pytest.raises(InvalidError, match="too many levels"):
            _read(vol, "loop-a")


def test_a_store_named_explicitly_must_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "typo-store"
    with pytest.raises(NotFoundError, match="does not exist"):
        Volume.from_name("x", store=str(missing))
    with pytest.raises(NotFoundError, match="does not exist"):
        Volume.objects.list(store=missing.as_uri())
    assert not missing.exists()
    Volume.from_name("x", create_if_missing=True, store=str(missing)).hydrate()
    assert missing.is_dir()
    assert [v.name for v in Volume.objects.list(store=str(missing))] == ["x"]
    other = tmp_path / "other-store"
    Volume.objects.create("y", store=str(other))
    assert other.is_dir()
    # the default store is created on first use
    monkeypatch.delenv("JUPYTER_VOLUME_STORE", raising=False)
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "cfg"))
    assert Volume.objects.list() == []
    assert (tmp_path / "data" / "volumes").is_dir()


def test_an_empty_s3_prefix_named_explicitly_is_an_error(
    seaweedfs: Any, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k, v in seaweedfs.env().items():
        monkeypatch.setenv(k, v)
    url = f"s3://{s3_bucket}/typo-{uuid.uuid4().hex[:8]}?endpoint_url={seaweedfs.endpoint}"
    with pytest.raises(NotFoundError, match="does not exist"):
        Volume.from_name("x", store=url).hydrate()
    Volume.objects.create("x", store=url)
    assert Volume.from_name("x", store=url).listdir("/") == []


def test_a_store_named_explicitly_is_checked_through_the_one_client_that_serves_it(
    tmp_path: Path,
    seaweedfs: Any,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    # Making an S3 client costs a tenth of a second or more of CPU: the check that a
    # store named explicitly exists used to make one of its own, on every CLI call.
    from jupyter_volume.cli import main
    from jupyter_volume.store import s3 as s3_module

    for k, v in seaweedfs.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "cfg"))  # no user config
    made: list[str] = []
    real = s3_module.make_client

    def counted(*args: Any, **kwargs: Any) -> Any:  # a spy: records, then the real thing
        made.append(str(kwargs.get("endpoint_url")))
        return real(*args, **kwargs)

    monkeypatch.setattr(s3_module, "make_client", counted)

    def fresh_url() -> str:
        return f"s3://{s3_bucket}/once-{uuid.uuid4().hex[:8]}?endpoint_url={seaweedfs.endpoint}"

    url = fresh_url()  # the Python API: a missing store, then one that exists
    with pytest.raises(NotFoundError, match="does not exist"):
        Volume.from_name("x", store=url).hydrate()
    assert len(made) == 1
    Volume.objects.create("x", store=url)
    assert Volume.from_name("x", store=url).listdir("/") == []
    assert len(made) == 1

    for exists in (False, True):  # the CLI, in this process
        url = fresh_url()
        if exists:
            Volume.objects.create("listed", store=url)  # makes the URL's one client
        before = len(made)
        capsysbinary.readouterr()
        assert main(["list", "--json", "--store", url]) == (0 if exists else 3)
        out, err = capsysbinary.readouterr()
        # the CLI opens a store the API already opened through the same cache: no client
        # of its own; a URL it is the first to name gets exactly one
        assert len(made) == before + (0 if exists else 1), err.decode()
        if exists:
            assert [v["name"] for v in json.loads(out)] == ["listed"]
        else:
            assert b"does not exist" in err


def _child_reads(vol: Volume) -> tuple[str | None, bytes, str]:
    return vol.name, b"".join(vol.read_file("hello.txt")), vol.environment_name


def test_handles_pickle_across_spawned_processes(opened: tuple[Any, str, dict[str, str]]) -> None:
    _, url, _ = opened
    named = Volume.from_name("pickled", create_if_missing=True, environment_name="dev", store=url)
    _put(named, {"hello.txt": b"hi from the parent"})
    ctx = multiprocessing.get_context("spawn")
    with Volume.ephemeral(store=url) as eph:
        _put(eph, {"hello.txt": b"ephemeral"})
        with ctx.Pool(1) as pool:
            got = pool.map(_child_reads, [named, eph])
    assert got == [("pickled", b"hi from the parent", "dev"), (None, b"ephemeral", "")]
    ro = pickle.loads(pickle.dumps(named.read_only()))
    with pytest.raises(InvalidError):
        ro.remove_file("hello.txt")


def _child_uses(handle: Any) -> str:
    from jupyter_volume import Dict, NetworkFileSystem

    if isinstance(handle, Dict):
        handle["k"] = "from the child"
        return handle["k"]
    if isinstance(handle, NetworkFileSystem):
        handle.write_file("f", io.BytesIO(b"from the child"))
    else:
        _put(handle, {"f": b"from the child"})
    return b"".join(handle.read_file("f")).decode()


def test_a_handle_pickled_before_first_use_keeps_create_if_missing(
    opened: tuple[Any, str, dict[str, str]],
) -> None:
    # Modal's pattern: a module-level handle made with create_if_missing=True, first
    # used in a worker process. The worker must create what does not exist yet.
    from jupyter_volume import Dict, NetworkFileSystem

    _, url, _ = opened
    handles = [
        Volume.from_name("made-there", create_if_missing=True, store=url),
        Dict.from_name("made-there", create_if_missing=True, store=url),
        NetworkFileSystem.from_name("made-there", create_if_missing=True, store=url),
    ]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:  # pickled unused: nothing exists yet
        got = pool.map_async(_child_uses, handles).get(timeout=120)  # a hang guard only
    assert got == ["from the child"] * 3
    assert [v.name for v in Volume.objects.list(store=url)] == ["made-there"]
    assert Dict.from_name("made-there", store=url)["k"] == "from the child"
    nfs = NetworkFileSystem.from_name("made-there", store=url)
    assert b"".join(nfs.read_file("f")) == b"from the child"


def test_a_handle_whose_store_is_gone_fails_in_the_worker_not_the_pool(
    opened: tuple[Any, str, dict[str, str]],
) -> None:
    # Unpickling a handle never raises (a pool worker that fails there dies, and its task
    # never returns: the pool hangs); its first use says what is wrong.
    store, url, _ = opened
    Volume.objects.create("gone", store=url)
    vol = Volume.from_name("gone", store=url)  # no create_if_missing: it must exist
    _put(vol, {"f": b"x"})
    blob = pickle.dumps(vol)
    store.delete([o.key for o in store.list()])  # the whole store emptied meanwhile
    handle = pickle.loads(blob)  # here too: no error until it is used
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool, pytest.raises(NotFoundError, match="volume 'gone' not found"):
        pool.map_async(_child_uses, [handle]).get(timeout=120)  # a hang guard only


def test_every_public_method_has_an_aio_form() -> None:
    skip = {"object_id", "version", "seq", "retention", "objects"}
    missing = [
        n
        for n in dir(Volume)
        if not n.startswith("_") and n not in skip and not hasattr(getattr(Volume, n), "aio")
    ]
    assert missing == []
    for n in ("create", "list", "delete"):
        assert hasattr(getattr(Volume.objects, n), "aio")


@_sync
async def test_aio_read_does_not_block_the_event_loop(local_store: Store) -> None:
    vol = Volume.from_name("big", create_if_missing=True, store=local_store)
    data = random.randbytes(100 * MiB)
    with vol.batch_upload() as batch:
        batch.put_file(io.BytesIO(data), "big.bin")
    del data
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    async def ticks_between_first_and_last_chunk(use_aio: bool) -> tuple[int, int]:
        first = last = None
        total = 0
        if use_aio:
            async for chunk in vol.read_file.aio("big.bin"):
                first = ticks if first is None else first
                last = ticks
                total += len(chunk)
        else:  # the control: a blocking read inside a coroutine starves the ticker
            for chunk in vol.read_file("big.bin"):
                first = ticks if first is None else first
                last = ticks
                total += len(chunk)
        assert first is not None and last is not None
        return last - first, total

    task = asyncio.create_task(ticker())
    try:
        await asyncio.sleep(0.01)
        blocked, total = await ticks_between_first_and_last_chunk(False)
        assert total == 100 * MiB and blocked == 0
        free, total = await ticks_between_first_and_last_chunk(True)
        assert total == 100 * MiB and free > 0
    finally:
        task.cancel()


_OWNER = """
import sys, time
from jupyter_volume import Volume
with Volume.ephemeral(store=sys.argv[1]) as vol:
    with vol.batch_upload() as b:
        b.put_file(__import__("io").BytesIO(b"x" * 5000), "f.bin")
    print(vol.object_id, flush=True)
    time.sleep(600)
"""

_PLAIN_CALL = """
import sys
from jupyter_volume import Volume
print(len(Volume.objects.list(store=sys.argv[1])))
"""


def test_ephemeral_volume_of_a_killed_owner_is_reclaimed(
    opened: tuple[Any, str, dict[str, str]],
) -> None:
    store, url, env = opened
    child_env = {**os.environ, **env, "JUPYTER_VOLUME_EPHEMERAL_TTL": "2"}
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER, url], env=child_env, stdout=subprocess.PIPE, text=True
    )
    try:
        vol_id = owner.stdout.readline().strip()  # type: ignore[union-attr]
        assert vol_id, "the owner process printed no volume id"
        # a live owner keeps it: a plain call from another process leaves it alone
        subprocess.run([sys.executable, "-c", _PLAIN_CALL, url], env=child_env, check=True)
        assert _keys(store, f"vols/{vol_id}/")
        assert Volume.from_id(vol_id, store=store).listdir("/")
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    deadline = time.monotonic() + 60  # a hang guard, not a threshold: the ttl is 2 s
    while _keys(store, f"vols/{vol_id}/") and time.monotonic() < deadline:
        time.sleep(1)
        subprocess.run([sys.executable, "-c", _PLAIN_CALL, url], env=child_env, check=True)
    assert _keys(store, f"vols/{vol_id}/") == []
    assert _keys(store, "leases/") == []
    with pytest.raises(NotFoundError):
        Volume.from_id(vol_id, store=store).hydrate()


# -- mount options: with_mount_options / read_only honoured by mount() ----------------------
def test_mount_with_read_only_options_refuses_commits(local_store: Store, tmp_path: Path) -> None:
    vol = Volume.from_name("ro", create_if_missing=True, store=local_store)
    _put(vol, {"a.txt": b"A"})
    for handle in (vol.with_mount_options(read_only=True), vol.read_only()):
        with handle.mount(tmp_path / "mnt", background=False) as m:
            assert m.read_only
            assert (tmp_path / "mnt" / "a.txt").read_bytes() == b"A"
            (tmp_path / "mnt" / "b.txt").write_bytes(b"B")
            with pytest.raises(VolumeError, match="read-only"):
                m.commit()
        (tmp_path / "mnt" / "b.txt").unlink()
    assert [e.path for e in vol.listdir("/")] == ["a.txt"]


def test_mount_of_a_sub_path_shows_and_commits_only_that_folder(
    store: Store, tmp_path: Path
) -> None:
    vol = Volume.from_name("big", create_if_missing=True, store=store)
    _put(vol, {"users/a/x.txt": b"x", "users/b/y.txt": b"y", "top.txt": b"t"})
    mnt = tmp_path / "mnt"
    with vol.with_mount_options(sub_path="/users/a").mount(mnt, background=False) as m:
        assert sorted(os.listdir(mnt)) == ["x.txt"]
        (mnt / "new.txt").write_bytes(b"new")
        (mnt / "x.txt").unlink()
        assert m.commit("edit a") is not None
        assert sorted(
            e.path for e in vol.listdir("/", recursive=True) if e.type == FileEntryType.FILE
        ) == [
            "top.txt",
            "users/a/new.txt",
            "users/b/y.txt",
        ]
        _put(vol, {"users/a/z.txt": b"z", "users/b/w.txt": b"w"})  # another writer
        m.reload()
        assert sorted(os.listdir(mnt)) == ["new.txt", "z.txt"]
        assert (mnt / "z.txt").read_bytes() == b"z"
    # a sub_path that does not exist yet is created, as in Modal
    with vol.with_mount_options(sub_path="fresh/dir").mount(tmp_path / "m2", background=False):
        assert os.listdir(tmp_path / "m2") == []
    assert vol.stat("fresh/dir").type == FileEntryType.DIRECTORY
    with pytest.raises(InvalidError, match="not a folder"):
        vol.with_mount_options(sub_path="top.txt").mount(tmp_path / "m3", background=False)


# -- moving to a team store: copy_to ----------------------------------------------------------
def _history_and_files(vol: Volume) -> list[tuple[int, str, dict[str, bytes]]]:
    out = []
    for c in vol.history():
        files = {
            e.path: _read(vol, e.path, at=c.seq)
            for e in vol.listdir("/", recursive=True, at=c.seq)
            if e.type == FileEntryType.FILE
        }
        out.append((c.seq, c.message, files))
    return out


def _source_with_history(store: Store) -> Volume:
    vol = Volume.from_name("team-data", create_if_missing=True, store=store)
    _put(vol, {"a.txt": b"first", "big.bin": random.randbytes(3 * MiB)})
    _put(vol, {"a.txt": b"second"}, force=True)
    vol.remove_file("big.bin")
    vol.tag(1, "baseline")
    vol.set_retention(keep_last=5)
    return vol


def test_copy_to_another_store_keeps_history_and_tags(local_store: Store, s3_store: Store) -> None:
    src = _source_with_history(local_store)
    dest = src.copy_to(s3_store, name="moved")
    assert dest.name == "moved"
    assert [v.name for v in Volume.objects.list(store=s3_store)] == ["moved"]
    assert _history_and_files(dest) == _history_and_files(src)
    assert dest.tags() == {"baseline": 1}
    assert dest.retention.keep_last == 5
    assert dest.object_id == src.object_id
    assert dest.verify().ok
    _put(dest, {"new.txt": b"after the move"})  # the copy is an ordinary volume
    assert "new.txt" not in [e.path for e in src.listdir("/")]
    assert src.copy_to(s3_store, name="moved").name == "moved"  # done already: a no-op
    with pytest.raises(AlreadyExistsError):
        Volume.from_name("other", create_if_missing=True, store=local_store).copy_to(
            s3_store, name="moved"
        )
    with pytest.raises(InvalidError, match="already is"):
        src.copy_to(local_store)


def test_copy_to_announces_its_total_before_copying(local_store: Store, s3_store: Store) -> None:
    """A progress bar gets its total first: on_start's bytes equal what progress reports."""
    src = _source_with_history(local_store)
    started: list[tuple[int, int]] = []
    moved: list[int] = []
    src.copy_to(
        s3_store, name="moved", on_start=lambda n, b: started.append((n, b)), progress=moved.append
    )
    assert len(started) == 1
    objects, nbytes = started[0]
    assert objects == len(moved) > 0
    assert nbytes == sum(moved) > 0


def test_copy_to_again_brings_the_copy_up_to_date(local_store: Store, s3_store: Store) -> None:
    """A second copy_to after new commits copies only what is new, never a change set a
    writer left waiting at the source (the copy would commit it), never a lock."""
    from jupyter_volume.testing.wrappers import CountingStore

    src = _source_with_history(local_store)
    dest = src.copy_to(s3_store, name="moved")
    _put(src, {"later.txt": b"after the first copy", "a.txt": b"third"}, force=True)
    src.tag(src.refresh().seq, "later")
    prefix = f"vols/{src.object_id}/"
    waiting = f"{prefix}intents/{src.refresh().seq:020d}-{uuid.uuid4().hex}.0123"
    local_store.put(waiting, b"a writer's pending change set")
    local_store.put(f"{prefix}locks/0123", b"a lock held at the source")
    before = set(_keys(s3_store, prefix))
    counting = CountingStore(s3_store)
    assert src.copy_to(counting, name="moved").name == "moved"
    assert _history_and_files(dest) == _history_and_files(src)
    assert dest.tags() == {"baseline": 1, "later": src.refresh().seq}
    assert dest.verify().ok
    added = set(_keys(s3_store, prefix)) - before
    assert added and not [k for k in added if "/intents/" in k or "/locks/" in k]
    # the new objects, the new record, head and the mutable records (policy, 2 tags)
    assert counting.count("put") <= len(added) + 4
    # nothing new: nothing written at all
    counting = CountingStore(s3_store)
    src.copy_to(counting, name="moved")
    assert counting.count("put") == 0


def test_copy_to_refuses_when_both_sides_were_committed_to(
    local_store: Store, s3_store: Store
) -> None:
    src = _source_with_history(local_store)
    dest = src.copy_to(s3_store, name="moved")
    _put(dest, {"copy-only.txt": b"made in the copy"})
    _put(src, {"source-only.txt": b"made in the source"})
    copy_history = _history_and_files(dest)
    with pytest.raises(ConflictError, match="each been committed to"):
        src.copy_to(s3_store, name="moved")
    assert _history_and_files(dest) == copy_history  # the copy is untouched


_COPY_CHILD = """
import sys
from jupyter_volume import Volume
from jupyter_volume.store import open_store
from jupyter_volume.testing.wrappers import KillAfterStore
target = KillAfterStore(open_store(sys.argv[2]), int(sys.argv[3]))
Volume.from_name("team-data", store=sys.argv[1]).copy_to(target, name="moved")
"""


def test_copy_killed_midway_is_invisible_and_resumes(
    local_store: Store, s3_store: Store, seaweedfs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jupyter_volume.testing.wrappers import KILL_EXIT_CODE, CountingStore

    src = _source_with_history(local_store)
    source_objects = len(_keys(local_store, f"vols/{src.object_id}/"))
    target_url = s3_store.url
    assert "endpoint_url=" in target_url  # a child process can open it from the URL alone
    env = {**os.environ, **seaweedfs.env()}
    # the child dies (os._exit, like a kill) halfway through the objects
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            _COPY_CHILD,
            local_store.url,
            target_url,
            str(source_objects // 2 + 3),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert p.returncode == KILL_EXIT_CODE, p.stderr
    landed = len(_keys(s3_store, f"vols/{src.object_id}/"))
    assert 0 < landed < source_objects
    assert Volume.objects.list(store=s3_store) == []  # nothing visible yet
    with pytest.raises(NotFoundError):
        Volume.from_name("moved", store=s3_store).hydrate()
    counting = CountingStore(s3_store)
    dest = src.copy_to(counting, name="moved")
    # the resumed run wrote only what was missing (plus head, name and the mutable records)
    assert counting.count("put") <= source_objects - landed + 4
    assert _history_and_files(dest) == _history_and_files(src)
    assert dest.verify().ok


def test_a_venv_inside_a_mount_commits_and_reads_follow_only_inner_links(
    local_store: Store, tmp_path: Path
) -> None:
    vol = Volume.from_name("proj", create_if_missing=True, store=local_store)
    mnt = tmp_path / "mnt"
    with vol.mount(mnt, background=False) as m:
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", str(mnt / ".venv")], check=True
        )
        (mnt / "notes.txt").write_text("n")
        os.symlink("notes.txt", mnt / "latest")
        assert m.commit("with a venv") is not None
    kinds = {e.path: e.type for e in vol.listdir(".venv/bin")}
    assert kinds[".venv/bin/python"] == FileEntryType.SYMLINK  # stored as a link
    assert _read(vol, "latest") == b"n"
    with pytest.raises(InvalidError, match="python.*outside"):
        _read(vol, ".venv/bin/python")  # the interpreter's link leaves the volume


def test_gc_and_from_name_also_reclaim_dead_ephemeral_volumes(local_store: Store) -> None:
    from jupyter_volume import names

    keep = Volume.from_name("keep", create_if_missing=True, store=local_store).hydrate()
    for reclaim in (keep.gc, lambda: Volume.from_name("keep", store=local_store).hydrate()):
        lease, meta = names.create_ephemeral(local_store, ttl=0.2)
        lease.stop(delete=False)  # its owner stops renewing: as if it had died
        assert _keys(local_store, f"vols/{meta.id}/")
        time.sleep(1.5)  # past its ttl (+1 s of slack): a real gc would reclaim it now
        keep.gc(dry_run=True)  # a dry run changes nothing, this included
        assert _keys(local_store, f"vols/{meta.id}/")
        deadline = time.monotonic() + 30  # a hang guard: the ttl is 0.2 s (+1 s of slack)
        while _keys(local_store, f"vols/{meta.id}/") and time.monotonic() < deadline:
            time.sleep(0.5)
            reclaim()
        assert _keys(local_store, f"vols/{meta.id}/") == []
        assert _keys(local_store, "leases/") == []


@_sync
async def test_aio_forms_of_context_managers_and_static_methods(local_store: Store) -> None:
    async with Volume.ephemeral.aio(store=local_store) as vol:
        async with vol.batch_upload.aio() as batch:
            batch.put_file(io.BytesIO(b"async"), "a.txt")
        assert [e.path for e in await vol.listdir.aio("/")] == ["a.txt"]
        vol_id = vol.object_id
        same = await Volume.from_id.aio(vol_id, store=local_store)
        assert (await same.info.aio()).id == vol_id
    await Volume.objects.create.aio("named", store=local_store)
    await Volume.rename.aio("named", "renamed", store=local_store)
    assert [v.name for v in await Volume.objects.list.aio(store=local_store)] == ["renamed"]
    await Volume.objects.delete.aio("renamed", store=local_store)
    assert _keys(local_store) == []


def test_volume_commit(local_store: Store, tmp_path: Path) -> None:
    with Volume.ephemeral(store=local_store) as vol:
        assert vol.commit() is None  # not mounted here: nothing to commit, as outside a container
        with vol.mount(tmp_path / "m", background=False):
            (tmp_path / "m" / "f.txt").write_bytes(b"x")
            info = vol.commit()
            assert info is not None and vol.commit() is None
        assert _read(vol, "f.txt") == b"x"


def test_volume_reload(local_store: Store) -> None:
    with Volume.ephemeral(store=local_store) as vol:
        vol.reload()  # unmounted: brings the handle to the newest commit, and is harmless
        other = Volume.from_id(vol.object_id, store=local_store)
        _put(other, {"new.txt": b"n"})
        vol.reload()
        assert vol.seq == other.seq
