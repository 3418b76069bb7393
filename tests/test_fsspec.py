"""``volume://`` through fsspec, pandas, pyarrow and zarr; ``Volume.open``.

Tests that involve the network path (pandas round trips, reads at ``@REF``, the
transaction) run on both stores (``store`` fixture); the rest on the local store,
since they check this module's logic rather than the store.
"""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pytest

from jupyter_volume import FileEntryType, InvalidError, NotFoundError, Volume
from jupyter_volume.fsspec import VolumeFileSystem, parse_url
from jupyter_volume.reader import VolumeReader
from jupyter_volume.store import Store

try:
    from .children import another_process
except ImportError:  # tests/ is not a package
    from children import another_process  # type: ignore[no-redef]


def _name() -> str:
    return f"fs-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def fs(store: Store) -> VolumeFileSystem:
    return VolumeFileSystem(store=store, skip_instance_cache=True)


@pytest.fixture
def lfs(local_store: Store) -> VolumeFileSystem:
    return VolumeFileSystem(store=local_store, skip_instance_cache=True)


def commits(fs: VolumeFileSystem, name: str) -> int:
    return len(Volume.from_name(name, store=fs.store).history())


# -- URLs --------------------------------------------------------------------------------
def test_parse_url() -> None:
    assert parse_url("volume://data/a/b.csv") == ("data", None, "a/b.csv")
    assert parse_url("volume://data@12/a/b.csv") == ("data", "12", "a/b.csv")
    assert parse_url("data@v1.0/x") == ("data", "v1.0", "x")
    # an '@' further down is part of a file name, not a commit
    assert parse_url("volume://data/me@host.txt") == ("data", None, "me@host.txt")
    assert parse_url("volume://data/") == ("data", None, "")
    assert parse_url("volume://") == ("", None, "")
    with pytest.raises(InvalidError, match="empty commit"):
        parse_url("volume://data@/x")


def test_entry_point_registers_the_protocol(local_store: Store) -> None:
    assert fsspec.get_filesystem_class("volume") is VolumeFileSystem
    name = _name()
    url = f"volume://{name}/hello.txt"
    with fsspec.open(url, "wb", store=local_store.url) as f:
        f.write(b"hello")
    with fsspec.open(url, "rb", store=local_store.url) as f:
        assert f.read() == b"hello"
    with fsspec.open(url, "r", store=local_store.url) as f:
        assert f.read() == "hello"


# -- pandas and pyarrow ------------------------------------------------------------------
def test_pandas_csv_and_parquet_round_trips(fs: VolumeFileSystem) -> None:
    name = _name()
    opts = {"store": fs.store, "skip_instance_cache": True}
    df = pd.DataFrame({"x": np.arange(1000), "y": np.linspace(0, 1, 1000), "s": ["a", "b"] * 500})
    df.to_csv(f"volume://{name}/t.csv", index=False, storage_options=opts)
    df.to_parquet(f"volume://{name}/t.parquet", storage_options=opts)
    back_csv = pd.read_csv(f"volume://{name}/t.csv", storage_options=opts)
    back_pq = pd.read_parquet(f"volume://{name}/t.parquet", storage_options=opts)
    pd.testing.assert_frame_equal(back_csv, df)
    pd.testing.assert_frame_equal(back_pq, df)
    assert commits(fs, name) == 3  # create + one commit per written file


def test_pyarrow_dataset_reads_columns(lfs: VolumeFileSystem) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    name = _name()
    table = pa.table({"a": list(range(5000)), "b": [str(i) for i in range(5000)]})
    with lfs.open(f"{name}/d/part-0.parquet", "wb") as f:
        pq.write_table(table, f, row_group_size=1000)
    got = pq.read_table(f"{name}/d", filesystem=lfs, columns=["a"])
    assert got.column("a").to_pylist() == list(range(5000))


# -- reads at a commit -------------------------------------------------------------------
def test_ref_reads_old_content_after_a_newer_write(fs: VolumeFileSystem) -> None:
    name = _name()
    fs.pipe(f"volume://{name}/f.txt", b"version 1")
    seq = fs.info(f"volume://{name}/f.txt")["commit"]
    Volume.from_name(name, store=fs.store).tag(seq, "v1")
    fs.pipe(f"volume://{name}/f.txt", b"version 2, longer")
    assert fs.cat(f"volume://{name}/f.txt") == b"version 2, longer"
    assert fs.cat(f"volume://{name}@{seq}/f.txt") == b"version 1"
    assert fs.cat(f"volume://{name}@v1/f.txt") == b"version 1"
    assert fs.info(f"volume://{name}@v1/f.txt")["size"] == 9
    assert fs.ls(f"volume://{name}@{seq}", detail=False) == [f"{name}@{seq}/f.txt"]
    with pytest.raises(NotFoundError, match="no commit or tag"):
        fs.cat(f"volume://{name}@nope/f.txt")
    for write in (
        lambda: fs.pipe(f"volume://{name}@{seq}/f.txt", b"x"),
        lambda: fs.open(f"volume://{name}@{seq}/g.txt", "wb"),
        lambda: fs.rm(f"volume://{name}@{seq}/f.txt"),
        lambda: fs.mkdir(f"volume://{name}@{seq}/d"),
    ):
        with pytest.raises(InvalidError, match="read-only"):
            write()
    assert fs.cat(f"volume://{name}@{seq}/f.txt") == b"version 1"


def test_an_open_file_reads_one_commit(lfs: VolumeFileSystem) -> None:
    name = _name()
    old = np.random.default_rng(3).bytes(3 << 20)
    lfs.pipe(f"{name}/big.bin", old)
    with lfs.open(f"{name}/big.bin", "rb") as f:
        head = f.read(1000)
        lfs.pipe(f"{name}/big.bin", b"replaced")  # a newer commit while the file is open
        f.seek(-1000, 2)
        assert head + f.read() == old[:1000] + old[-1000:]
    assert lfs.cat(f"{name}/big.bin") == b"replaced"


# -- writes and transactions ---------------------------------------------------------------
def test_transaction_of_five_files_is_one_commit(fs: VolumeFileSystem) -> None:
    name = _name()
    fs.mkdir(name)
    before = commits(fs, name)
    with fs.transaction:
        for i in range(3):
            with fs.open(f"{name}/t/{i}.txt", "wb") as f:
                f.write(b"file %d" % i)
        fs.pipe(f"{name}/t/3.txt", b"file 3")
        fs.pipe_file(f"{name}/t/4.txt", b"file 4")
        assert not fs.exists(f"{name}/t/0.txt")  # nothing is visible before the end
    assert commits(fs, name) == before + 1
    assert fs.cat([f"{name}/t/{i}.txt" for i in range(5)]) == {
        f"{name}/t/{i}.txt": b"file %d" % i for i in range(5)
    }


def test_a_read_of_the_newest_commit_looks_at_the_log_once(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each call pins the newest commit and reads it: it looked at the log twice, once
    to find the newest commit and once more, per read at it, to check that gc had not
    expired it (a commit just found to be the newest is not)."""
    import jupyter_volume.volume as volume_mod
    from jupyter_volume.testing.wrappers import CountingStore

    name = _name()
    vol = Volume.from_name(name, store=store, create_if_missing=True)
    with vol.batch_upload() as b:
        for i in range(3):
            b.put_file(io.BytesIO(b"data %d" % i), f"f{i}")
    monkeypatch.setattr(volume_mod, "_repos", {})
    counting = CountingStore(store)
    fs = VolumeFileSystem(store=counting, skip_instance_cache=True)
    fs.cat_file(f"{name}/f0")  # the name, config and index are read once
    log = f"vols/{vol.object_id}/log/"
    for call in (
        lambda: fs.cat_file(f"{name}/f1"),
        lambda: fs.open(f"{name}/f2").close(),
        lambda: fs.info(f"{name}/f1"),
        lambda: fs.ls(name),
    ):
        counting.reset()
        call()
        assert len(counting.matching(prefix=log)) == 1, counting.matching(prefix=log)


def test_cat_file_reads_while_it_asks_for_the_newest_commit_and_keeps_only_the_newest(
    store: Store,
) -> None:
    """``cat_file`` reads at the newest commit this process saw while it asks the store
    for the newest one (one round trip instead of two): what it returns is always the
    newest commit's, whatever landed since, and a read that failed at the old commit
    does not count if a newer one has the file."""
    name = _name()
    fs = VolumeFileSystem(store=store, skip_instance_cache=True)
    other = VolumeFileSystem(store=store, skip_instance_cache=True)
    fs.pipe(f"{name}/a.txt", b"first")
    assert fs.cat_file(f"{name}/a.txt") == b"first"
    with another_process():
        other.pipe(f"{name}/a.txt", b"second")
    assert fs.cat_file(f"{name}/a.txt") == b"second"  # read at the old commit, then again
    with another_process():
        other.pipe(f"{name}/new.txt", b"made elsewhere")
    assert fs.cat_file(f"{name}/new.txt") == b"made elsewhere"  # missing at the old one
    with another_process():
        other.rm(f"{name}/a.txt")
    with pytest.raises(FileNotFoundError):
        fs.cat_file(f"{name}/a.txt")  # there at the old commit, gone from the newest
    with pytest.raises(FileNotFoundError):
        fs.cat_file(f"{name}/never.txt")  # missing at the newest: its own error
    with another_process():  # the commit this process knows: expired, its data deleted
        other.pipe(f"{name}/new.txt", b"third")
        vol = Volume.from_name(name, store=store)
        vol.set_retention(keep_last=1, grace=0)
        other.pipe(f"{name}/new.txt", b"fourth")
        vol.gc()
    assert fs.cat_file(f"{name}/new.txt") == b"fourth"
    assert fs.cat_file(f"{name}/new.txt", start=1, end=3) == b"ou"


def test_readers_read_the_config_files_once_per_interval(
    local_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each reader read every config file for the chunk cache's size: a third of a
    cached 4 KiB ``cat_file``. Now at most once per ``reader.CONFIG_REREAD`` seconds;
    a changed file counts for the readers opened after that."""
    import jupyter_volume.config as config_mod
    import jupyter_volume.reader as reader_mod

    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.setattr(reader_mod, "_configured", None)
    loads: list[int] = []
    real = config_mod.load_config
    monkeypatch.setattr(config_mod, "load_config", lambda *a, **k: loads.append(1) or real(*a, **k))
    fs = VolumeFileSystem(store=local_store, skip_instance_cache=True)
    fs.pipe("v/a", b"x" * 1000)
    fs.cat_file("v/a")
    loads.clear()
    for _ in range(20):
        assert fs.cat_file("v/a") == b"x" * 1000
    assert loads == []
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "jupyter_volume_config.json").write_text(
        '{"VolumeConfig": {"chunk_cache_bytes": 0}}'
    )
    assert reader_mod.local_chunk_cache() is not None  # believed for CONFIG_REREAD
    monkeypatch.setattr(reader_mod, "CONFIG_REREAD", 0.0)
    assert reader_mod.local_chunk_cache() is None  # read again: the cache is off
    assert fs.cat_file("v/a") == b"x" * 1000


def test_a_pinned_newest_commit_does_not_hide_one_gc_expired(store: Store) -> None:
    """A thread that read the newest commit, which gc then expired, is refused it by
    number like any other reader."""
    name = _name()
    fs = VolumeFileSystem(store=store, skip_instance_cache=True)
    fs.pipe(f"{name}/a.txt", b"first")
    first = fs.info(f"{name}/a.txt")["commit"]
    assert fs.cat_file(f"{name}@{first}/a.txt") == b"first"
    assert fs.cat_file(f"{name}/a.txt") == b"first"  # pins commit `first` in this thread
    fs.pipe(f"{name}/a.txt", b"second")
    vol = Volume.from_name(name, store=store)
    vol.set_retention(keep_last=1, grace=0)
    vol.gc()
    with pytest.raises(FileNotFoundError, match="expired by garbage collection"):
        fs.cat_file(f"{name}@{first}/a.txt")
    assert fs.cat_file(f"{name}/a.txt") == b"second"


def test_cat_of_many_files_reads_them_together(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``cat`` of 300 small files (fsspec's mapper asks for many keys so) reads them
    together: one look at the newest commit and a few ranged reads, not three requests
    a file. Paths that are not files are read alone, as ``on_error`` says."""
    import jupyter_volume.volume as volume_mod
    from jupyter_volume.testing.wrappers import CountingStore

    name = _name()
    vol = Volume.from_name(name, store=store, create_if_missing=True)
    with vol.batch_upload() as b:
        for i in range(300):
            b.put_file(io.BytesIO(b"chunk %d" % i * 50), f"z/{i}")
        b.put_file(io.BytesIO(b"elsewhere"), "other/x")
    monkeypatch.setattr(volume_mod, "_repos", {})  # the counting store is the only one
    counting = CountingStore(store)
    fs = VolumeFileSystem(store=counting, skip_instance_cache=True)
    paths = [f"{name}/z/{i}" for i in range(300)]
    fs.cat(paths[:1] + [f"{name}/other/x"])  # the name, config and index are read once
    counting.reset()
    got = fs.cat(paths)
    assert got == {p: b"chunk %d" % i * 50 for i, p in enumerate(paths)}
    assert len(counting.ops) < 20, len(counting.ops)  # 300 files: over 600 before
    missing, folder = f"{name}/z/nope", f"{name}/z"
    assert fs.cat([paths[7], missing], on_error="omit") == {paths[7]: b"chunk 7" * 50}
    out = fs.cat([paths[7], missing, folder], on_error="return")
    assert out[paths[7]] == b"chunk 7" * 50
    assert isinstance(out[missing], FileNotFoundError) and isinstance(out[folder], Exception)
    with pytest.raises(FileNotFoundError):
        fs.cat([paths[7], missing])
    assert fs.cat(paths[:2], start=1, end=3) == {p: b"hu" for p in paths[:2]}


def test_cat_of_big_files_holds_each_once_more_at_most(lfs: VolumeFileSystem) -> None:
    """``cat`` of many big files reads each on its own: read together, every file's
    ranges and their join were held at once (twice the whole answer at the peak); alone,
    only the file being read is held twice (traced by tracemalloc: the answer itself
    plus one file, for three 4 MiB files 1.33 times the answer, where it was 2.0)."""
    import tracemalloc

    name = _name()
    vol = Volume.from_name(name, store=lfs.store, create_if_missing=True)
    size = 4 << 20
    datas = {f"{name}/big{i}.bin": os.urandom(size) for i in range(3)}
    with vol.batch_upload() as b:
        for p, data in datas.items():
            b.put_file(io.BytesIO(data), p.split("/", 1)[1])
        b.put_file(io.BytesIO(b"small"), "small.txt")
    lfs.cat([f"{name}/small.txt"])  # the name, config and index are read before
    tracemalloc.start()
    try:
        got = lfs.cat([*datas, f"{name}/small.txt"])
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got == {**datas, f"{name}/small.txt": b"small"}
    assert peak < 1.5 * 3 * size, peak / (3 * size)


def test_failed_transaction_makes_no_commit(fs: VolumeFileSystem) -> None:
    name = _name()
    fs.pipe(f"{name}/keep.txt", b"kept")
    before = commits(fs, name)
    with pytest.raises(RuntimeError, match="boom"):
        with fs.transaction:
            fs.pipe(f"{name}/a.txt", b"a")
            with fs.open(f"{name}/b.txt", "wb") as f:
                f.write(b"b")
            raise RuntimeError("boom")
    assert commits(fs, name) == before
    assert fs.find(name) == [f"{name}/keep.txt"]
    fs.pipe(f"{name}/after.txt", b"x")  # the transaction is over: writes commit again
    assert commits(fs, name) == before + 1


def test_a_file_closed_after_an_exception_commits_nothing(lfs: VolumeFileSystem) -> None:
    name = _name()
    lfs.mkdir(name)
    with pytest.raises(ValueError, match="half"):
        with lfs.open(f"{name}/x.bin", "wb") as f:
            f.write(b"half written")
            raise ValueError("half")
    assert not lfs.exists(f"{name}/x.bin")
    assert commits(lfs, name) == 1


def test_modes_exclusive_and_append(lfs: VolumeFileSystem) -> None:
    name = _name()
    with lfs.open(f"{name}/a.txt", "xb") as f:
        f.write(b"one")
    with pytest.raises(FileExistsError):
        lfs.open(f"{name}/a.txt", "xb")
    with lfs.open(f"{name}/a.txt", "ab") as f:
        f.write(b" two")
    assert lfs.cat(f"{name}/a.txt") == b"one two"
    with pytest.raises(InvalidError, match="unsupported mode"):
        lfs.open(f"{name}/a.txt", "r+b")


def test_put_and_pipe_dict_are_one_commit_each(lfs: VolumeFileSystem, tmp_path: Path) -> None:
    name = _name()
    lfs.mkdir(name)
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for i in range(4):
        (src / f"f{i}.txt").write_text(f"f{i}")
    (src / "sub" / "g.txt").write_text("g")
    lfs.put(str(src), f"{name}/up", recursive=True)
    assert sorted(lfs.find(f"{name}/up")) == sorted(
        [f"{name}/up/f{i}.txt" for i in range(4)] + [f"{name}/up/sub/g.txt"]
    )
    # the folder 'up/sub' was made first (its own commit), then every file in one
    n = commits(lfs, name)
    lfs.pipe({f"{name}/p/{i}": b"%d" % i for i in range(6)})
    assert commits(lfs, name) == n + 1
    out = tmp_path / "out"
    lfs.get(f"{name}/up", str(out), recursive=True)
    assert (out / "sub" / "g.txt").read_text() == "g"


def test_rm_mv_cp_mkdir(lfs: VolumeFileSystem) -> None:
    name = _name()
    lfs.pipe({f"{name}/d/{i}.txt": b"%d" % i for i in range(5)})
    n = commits(lfs, name)
    lfs.rm([f"{name}/d/0.txt", f"{name}/d/1.txt", f"{name}/d/2.txt"])
    assert commits(lfs, name) == n + 1  # several paths, one commit
    assert lfs.ls(f"{name}/d", detail=False) == [f"{name}/d/3.txt", f"{name}/d/4.txt"]
    lfs.mv(f"{name}/d", f"{name}/e")
    assert commits(lfs, name) == n + 2  # a folder move is one commit
    assert not lfs.exists(f"{name}/d")
    lfs.cp(f"{name}/e/3.txt", f"{name}/copy/3.txt")
    assert lfs.cat(f"{name}/copy/3.txt") == b"3"
    assert lfs.checksum(f"{name}/copy/3.txt") == lfs.checksum(f"{name}/e/3.txt")
    # an empty folder is an entry of its own
    lfs.makedirs(f"{name}/empty/inner")
    assert lfs.isdir(f"{name}/empty/inner") and lfs.ls(f"{name}/empty/inner") == []
    lfs.makedirs(f"{name}/empty/inner", exist_ok=True)
    with pytest.raises(FileExistsError):
        lfs.makedirs(f"{name}/empty/inner")
    with pytest.raises(InvalidError, match="not empty"):
        lfs.rm(f"{name}/e")
    lfs.rm(f"{name}/e", recursive=True)
    assert not lfs.exists(f"{name}/e")
    with pytest.raises(InvalidError, match="Volume.objects.delete"):
        lfs.rm(name, recursive=True)
    with pytest.raises(FileNotFoundError):
        lfs.rm(f"{name}/missing")


def test_metadata_calls(lfs: VolumeFileSystem) -> None:
    name = _name()
    lfs.pipe({f"{name}/a/x.bin": b"x" * 700, f"{name}/a/b/y.bin": b"y" * 300})
    assert name in lfs.ls("volume://", detail=False)
    info = lfs.info(f"volume://{name}/a/x.bin")
    assert info["type"] == "file" and info["size"] == 700 and info["name"] == f"{name}/a/x.bin"
    assert lfs.info(f"{name}/a")["type"] == "directory"
    assert lfs.info(name)["type"] == "directory"
    assert lfs.exists(f"{name}/a/b") and not lfs.exists(f"{name}/a/zz")
    assert not lfs.exists("volume://no-such-volume/x")
    assert lfs.find(name) == [f"{name}/a/b/y.bin", f"{name}/a/x.bin"]
    assert lfs.find(name, maxdepth=2) == [f"{name}/a/x.bin"]
    assert lfs.find(name, withdirs=True) == [
        name,
        f"{name}/a",
        f"{name}/a/b",
        f"{name}/a/b/y.bin",
        f"{name}/a/x.bin",
    ]
    assert lfs.glob(f"{name}/**/*.bin") == [f"{name}/a/b/y.bin", f"{name}/a/x.bin"]
    assert lfs.glob(f"{name}/a/*") == [f"{name}/a/b", f"{name}/a/x.bin"]
    assert lfs.du(name) == 1000
    assert lfs.du(name, total=False) == {f"{name}/a/b/y.bin": 300, f"{name}/a/x.bin": 700}
    assert lfs.cat_file(f"{name}/a/x.bin", start=-5) == b"xxxxx"
    assert lfs.cat_file(f"{name}/a/x.bin", 10, 13) == b"xxx"
    assert lfs.cat_ranges(
        [f"{name}/a/x.bin", f"{name}/a/b/y.bin", f"{name}/a/x.bin", f"{name}/nope"],
        [0, 295, 698, 0],
        [2, 400, 800, 1],
    )[:3] == [b"xx", b"yyyyy", b"xx"]
    assert isinstance(
        lfs.cat_ranges([f"{name}/nope"], [0], [1])[0], FileNotFoundError
    )  # on_error="return"
    assert lfs.checksum(f"{name}/a/x.bin") != lfs.checksum(f"{name}/a/b/y.bin")
    assert lfs.modified(f"{name}/a/x.bin").tzinfo is not None


# -- zarr ------------------------------------------------------------------------------------
def test_zarr_v3_array_round_trip(local_store: Store) -> None:
    import zarr
    from zarr.storage import FsspecStore

    assert zarr.__version__.split(".")[0] == "3"
    name = _name()
    opts = {"store": local_store.url}
    store = FsspecStore.from_url(f"volume://{name}/arr.zarr", storage_options=opts)
    data = np.arange(60 * 40, dtype="float32").reshape(60, 40)
    arr = zarr.create_array(store=store, shape=data.shape, chunks=(30, 20), dtype="float32")
    arr[:] = data
    again = zarr.open_array(
        store=FsspecStore.from_url(f"volume://{name}/arr.zarr", storage_options=opts), mode="r"
    )
    np.testing.assert_array_equal(again[:], data)
    np.testing.assert_array_equal(again[10:40, 5:7], data[10:40, 5:7])
    fs = VolumeFileSystem(store=local_store.url)
    assert fs.exists(f"{name}/arr.zarr/zarr.json")
    assert len(fs.find(f"{name}/arr.zarr/c")) == 4  # 2 x 2 chunks, each a file


# -- Volume.open and read_file -----------------------------------------------------------------
def test_volume_open_and_ranged_read_file(local_store: Store) -> None:
    vol = Volume.from_name(_name(), store=local_store, create_if_missing=True)
    data = np.random.default_rng(5).bytes(5 << 20)
    with vol.batch_upload() as b:
        b.put_file(io.BytesIO(data), "big.bin")
        b.put_file(io.BytesIO("héllo\nwörld\n".encode()), "t.txt")
    with vol.open("big.bin") as f:
        assert isinstance(f, VolumeReader) and f.size == len(data) and f.seekable()
        f.seek(-100, os.SEEK_END)
        assert f.read() == data[-100:]
        f.seek(1 << 20)
        assert f.read(10) == data[1 << 20 : (1 << 20) + 10]
        assert f.tell() == (1 << 20) + 10
        buf = bytearray(50)
        assert f.readinto(buf) == 50 and bytes(buf) == data[(1 << 20) + 10 : (1 << 20) + 60]
        f.seek(0)
        pieces = []
        while piece := f.read(300_000):  # sequential: read-ahead kicks in
            pieces.append(piece)
        assert b"".join(pieces) == data
    assert f.closed
    with vol.open("t.txt", "r") as t:
        assert t.readlines() == ["héllo\n", "wörld\n"]
    assert (
        b"".join(vol.read_file("big.bin", offset=777, length=3 << 20))
        == data[777 : 777 + (3 << 20)]
    )
    with pytest.raises(InvalidError, match="reads only"):
        vol.open("big.bin", "wb")
    with pytest.raises(NotFoundError):
        vol.open("missing.bin")
    vol.mkdir("folder")
    with pytest.raises(InvalidError, match="folder"):
        vol.open("folder")
    assert vol.stat("folder").type == FileEntryType.DIRECTORY


def test_volume_open_aio(local_store: Store) -> None:
    import asyncio

    vol = Volume.from_name(_name(), store=local_store, create_if_missing=True)
    with vol.batch_upload() as b:
        b.put_file(io.BytesIO(b"async bytes"), "a.txt")

    async def go() -> Any:
        f = await vol.open.aio("a.txt")
        with f:
            return f.read()

    assert asyncio.run(go()) == b"async bytes"


def test_environment_option_picks_a_separate_namespace(
    local_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JUPYTER_VOLUME_ENV", raising=False)
    dev = VolumeFileSystem(store=local_store, environment="dev", skip_instance_cache=True)
    default = VolumeFileSystem(store=local_store, skip_instance_cache=True)
    dev.pipe("volume://shared/a.txt", b"dev data")
    default.pipe("volume://shared/a.txt", b"default data")
    assert dev.cat("volume://shared/a.txt") == b"dev data"
    assert default.cat("volume://shared/a.txt") == b"default data"
    monkeypatch.setenv("JUPYTER_VOLUME_ENV", "dev")  # the default when environment= is absent
    from_env = VolumeFileSystem(store=local_store, skip_instance_cache=True)
    assert from_env.cat("volume://shared/a.txt") == b"dev data"
    with fsspec.open(
        "volume://shared/a.txt", store=local_store.url, environment="", skip_instance_cache=True
    ) as f:
        assert f.read() == b"default data"
    with pytest.raises(InvalidError, match="environment"):
        VolumeFileSystem(store=local_store, environment="bad/name", skip_instance_cache=True)


def test_reader_fetches_only_the_covering_chunks(local_store: Store) -> None:
    from jupyter_volume.testing.wrappers import CountingStore

    counting = CountingStore(local_store)  # every access to this volume goes through it
    vol = Volume.from_name(_name(), store=counting, create_if_missing=True)
    data = np.random.default_rng(11).bytes(24 << 20)
    with vol.batch_upload() as b:
        b.put_file(io.BytesIO(data), "d.bin")
    vid = vol.info().id
    packs = f"vols/{vid}/packs/"

    counting.reset()
    with vol.open("d.bin") as f:
        f.seek(10 << 20)
        assert f.read(100) == data[10 << 20 : (10 << 20) + 100]
    # one ranged GET for the one chunk (chunks are at most 512 KiB), nothing read whole
    assert counting.count("get_range", prefix=packs) == 1
    assert counting.count("get", prefix=packs) == 0

    counting.reset()
    with vol.open("d.bin") as f:  # another reader of the same bytes: the local chunk cache
        f.seek(10 << 20)
        assert f.read(100) == data[10 << 20 : (10 << 20) + 100]
    assert counting.count("get_range", prefix=packs) == 0

    counting.reset()
    with vol.open("d.bin") as f:  # a sequential scan in small reads: coalesced, read ahead
        out = bytearray()
        while piece := f.read(64 << 10):
            out += piece
    assert bytes(out) == data
    reads = len(data) // (64 << 10)
    assert 0 < counting.count("get_range", prefix=packs) < reads // 10


def test_cp_from_a_commit_and_across_volumes(lfs: VolumeFileSystem) -> None:
    a, b = _name(), _name()
    lfs.pipe(f"{a}/f.txt", b"old")
    seq = lfs.info(f"{a}/f.txt")["commit"]
    lfs.pipe(f"{a}/f.txt", b"new")
    lfs.cp(f"volume://{a}@{seq}/f.txt", f"volume://{a}/restored.txt")
    lfs.cp(f"volume://{a}/f.txt", f"volume://{b}/copied.txt")  # creates volume b
    assert lfs.cat(f"{a}/restored.txt") == b"old"
    assert lfs.cat(f"{b}/copied.txt") == b"new"
    n = commits(lfs, a)
    with lfs.transaction:  # copies inside a transaction join its one commit
        lfs.cp(f"{a}/f.txt", f"{a}/t/1.txt")
        lfs.pipe(f"{a}/t/2.txt", b"two")
    assert commits(lfs, a) == n + 1
    assert lfs.cat(f"{a}/t/1.txt") == b"new"


def test_network_file_systems_through_volume_nfs(local_store: Store) -> None:
    from jupyter_volume import NetworkFileSystem
    from jupyter_volume.fsspec import NetworkFileSystemFS

    assert fsspec.get_filesystem_class("volume-nfs") is NetworkFileSystemFS
    name = _name()
    opts = {"store": local_store.url, "skip_instance_cache": True}
    df = pd.DataFrame({"run": [1, 2], "loss": [0.5, 0.25]})
    df.to_csv(f"volume-nfs://{name}/results/runs.csv", index=False, storage_options=opts)
    nfs = NetworkFileSystem.from_name(name, store=local_store.url)
    # the NFS API reads what fsspec wrote, and fsspec reads what the NFS API writes
    assert b"".join(nfs.read_file("results/runs.csv")) == df.to_csv(index=False).encode()
    nfs.write_file("notes.txt", io.BytesIO(b"from the NFS API"))
    fs = NetworkFileSystemFS(**opts)
    assert fs.cat(f"volume-nfs://{name}/notes.txt") == b"from the NFS API"
    pd.testing.assert_frame_equal(
        pd.read_csv(f"volume-nfs://{name}/results/runs.csv", storage_options=opts), df
    )
    assert name in fs.ls("volume-nfs://", detail=False)
    # names are the NFS namespace: no volume of that name was made
    vfs = VolumeFileSystem(store=local_store, skip_instance_cache=True)
    assert name not in vfs.ls("volume://", detail=False)
    assert not vfs.exists(f"volume://{name}/notes.txt")
    # history is readable at a commit, and read only
    seq = fs.info(f"volume-nfs://{name}/notes.txt")["commit"]
    fs.pipe(f"volume-nfs://{name}/notes.txt", b"newer")
    assert fs.cat(f"volume-nfs://{name}@{seq}/notes.txt") == b"from the NFS API"
    with pytest.raises(InvalidError, match="read-only"):
        fs.pipe(f"volume-nfs://{name}@{seq}/notes.txt", b"x")
    with pytest.raises(InvalidError, match="NetworkFileSystem.delete"):
        fs.rm(f"volume-nfs://{name}", recursive=True)
