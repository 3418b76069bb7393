"""``volume://`` when things go wrong: failed writes commit nothing, transactions keep
what they promise (per thread, per volume, seeing their own writes), errors are the ones
fsspec users catch, read files pickle, a volume's root has its commit's time.

All run on the local store (the behaviour is the same on every store) with real pandas
where the case is about pandas; no mocks.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import pickle
import threading
import time
import uuid
from pathlib import Path

import fsspec
import pandas as pd
import pytest

from jupyter_volume import InvalidError, Volume
from jupyter_volume.errors import AlreadyExistsError
from jupyter_volume.fsspec import VolumeFileSystem
from jupyter_volume.store import Store


def _name() -> str:
    return f"fs-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def lfs(local_store: Store) -> VolumeFileSystem:
    return VolumeFileSystem(store=local_store, skip_instance_cache=True)


def commits(fs: VolumeFileSystem, name: str) -> int:
    return len(Volume.from_name(name, store=fs.store).history())


class _Unprintable:
    """A cell value pandas cannot format: ``to_csv`` fails once it reaches it."""

    def __str__(self) -> str:
        raise RuntimeError("cannot format value")

    __repr__ = __str__


# -- a write that fails commits nothing -----------------------------------------
def test_exception_inside_open_in_a_transaction_commits_nothing(
    lfs: VolumeFileSystem,
) -> None:
    name = _name()
    lfs.mkdir(name)
    with lfs.transaction:
        lfs.pipe(f"{name}/ok.txt", b"ok")
        with pytest.raises(ValueError, match="writer failed"):
            with lfs.open(f"{name}/half.bin", "wb") as f:
                f.write(b"HALF-WRITTEN")
                raise ValueError("writer failed")
    assert lfs.find(name) == [f"{name}/ok.txt"]


def test_text_mode_exception_commits_nothing(lfs: VolumeFileSystem, local_store: Store) -> None:
    name = _name()
    lfs.pipe(f"{name}/report.txt", b"complete report\n")
    with pytest.raises(RuntimeError):
        with lfs.open(f"{name}/report.txt", "w") as f:
            f.write("first half of a new rep")
            raise RuntimeError("writer crashed")
    with pytest.raises(RuntimeError):
        with fsspec.open(f"volume://{name}/other.txt", "wt", store=local_store.url) as f:
            f.write("half")
            raise RuntimeError("writer crashed")
    assert lfs.cat(f"{name}/report.txt") == b"complete report\n"
    assert not lfs.exists(f"{name}/other.txt")
    # a text file written completely inside an unrelated `except` block is committed
    try:
        raise KeyError("not cached")
    except KeyError:
        with lfs.open(f"{name}/fallback.txt", "w") as f:
            f.write("fallback")
        with fsspec.open(f"volume://{name}/fallback2.txt", "wt", store=local_store.url) as f:
            f.write("fallback 2")
    assert lfs.cat(f"{name}/fallback.txt") == b"fallback"
    assert lfs.cat(f"{name}/fallback2.txt") == b"fallback 2"


def test_failed_pandas_write_commits_nothing(
    local_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    name = _name()
    opts = {"store": local_store.url}
    url = f"volume://{name}/table.csv"
    pd.DataFrame({"a": [1, 2, 3]}).to_csv(url, index=False, storage_options=opts)
    bad = pd.DataFrame({"a": list(range(200_000)) + [_Unprintable()]})
    with caplog.at_level(logging.WARNING, logger="jupyter_volume.fsspec"):
        with pytest.raises(RuntimeError, match="cannot format"):
            bad.to_csv(url, index=False, storage_options=opts)
    fs = VolumeFileSystem(**opts, skip_instance_cache=True)
    assert fs.cat(url) == b"a\n1\n2\n3\n"
    assert f"{name}/table.csv" in caplog.text and "discarded" in caplog.text
    # the same inside a transaction: the failed file is dropped, the rest commits
    with fs.transaction:
        fs.pipe(f"{name}/other.txt", b"other")
        with pytest.raises(RuntimeError):
            bad.to_csv(url, index=False, storage_options=opts)
    assert fs.cat(url) == b"a\n1\n2\n3\n"
    assert fs.cat(f"{name}/other.txt") == b"other"
    # a write done inside an unrelated `except` block (a fallback) is committed
    try:
        raise FileNotFoundError("no cached copy")
    except FileNotFoundError:
        pd.DataFrame({"a": [7]}).to_csv(url, index=False, storage_options=opts)
    assert fs.cat(url) == b"a\n7\n"


def test_close_inside_an_unrelated_except_discards_with_a_warning(
    lfs: VolumeFileSystem, caplog: pytest.LogCaptureFixture
) -> None:
    """The documented limit of the rule: a file opened before an exception and closed
    while it is handled is discarded, and the warning names it."""
    name = _name()
    lfs.mkdir(name)
    f = lfs.open(f"{name}/late.txt", "wb")
    f.write(b"complete")
    with caplog.at_level(logging.WARNING, logger="jupyter_volume.fsspec"):
        try:
            raise KeyError("unrelated")
        except KeyError:
            f.close()
    assert not lfs.exists(f"{name}/late.txt")
    assert f"{name}/late.txt" in caplog.text


# -- put in a transaction copies the file now -----------------------------------------
def test_put_in_a_transaction_copies_the_local_file_at_call_time(
    lfs: VolumeFileSystem, tmp_path: Path
) -> None:
    name = _name()
    lfs.mkdir(name)
    scratch = tmp_path / "scratch.csv"
    with lfs.transaction:
        for day in range(3):
            scratch.write_text(f"day {day}\n")
            lfs.put(str(scratch), f"{name}/day-{day}.csv")
        os.chmod(scratch, 0o600)
        os.utime(scratch, (1_500_000_000, 1_500_000_000))  # kept, as outside a transaction
        lfs.put_file(str(scratch), f"{name}/private.csv")
        scratch.unlink()  # gone before the block ends: what was put stays put
    got = {p: lfs.cat(p) for p in lfs.find(name)}
    assert got == {
        **{f"{name}/day-{d}.csv": f"day {d}\n".encode() for d in range(3)},
        f"{name}/private.csv": b"day 2\n",
    }
    assert commits(lfs, name) == 2  # mkdir, then the transaction
    assert lfs.info(f"{name}/private.csv")["mtime"] == 1_500_000_000


# -- a transaction over two volumes ----------------------------------------------------
def test_transaction_over_two_volumes_checks_both_before_committing(
    lfs: VolumeFileSystem,
) -> None:
    a, b = _name(), _name()
    lfs.mkdir(a)
    lfs.makedirs(f"{b}/report")  # a folder: a file cannot replace it
    before = commits(lfs, a), commits(lfs, b)
    with pytest.raises(AlreadyExistsError, match="folder"):
        with lfs.transaction:
            lfs.pipe(f"{a}/data.csv", b"new data")
            lfs.pipe(f"{b}/report", b"summary")
    assert not lfs.exists(f"{a}/data.csv")
    assert (commits(lfs, a), commits(lfs, b)) == before
    # an exclusive create that fails in the second volume keeps the first one out too
    lfs.pipe(f"{b}/lock", b"taken")
    with pytest.raises(FileExistsError):
        with lfs.transaction:
            lfs.pipe(f"{a}/data.csv", b"new data")
            lfs.pipe(f"{b}/other", b"x")
            lfs.pipe(f"{b}/lock", b"mine", mode="create")
    assert not lfs.exists(f"{a}/data.csv")
    with lfs.transaction:  # and a transaction that passes its checks commits both
        lfs.pipe(f"{a}/data.csv", b"new data")
        lfs.pipe(f"{b}/summary", b"summary")
    assert lfs.cat(f"{a}/data.csv") == b"new data"
    assert lfs.cat(f"{b}/summary") == b"summary"


# -- a transaction belongs to its thread -----------------------------------------------
def test_a_transaction_does_not_capture_other_threads_writes(
    local_store: Store,
) -> None:
    opts = {"store": local_store.url}
    fs_main = fsspec.filesystem("volume", **opts)
    fs_bg = fsspec.filesystem("volume", **opts)
    assert fs_main is fs_bg  # fsspec's instance cache: one object for both
    name = _name()
    fs_main.mkdir(name)
    inside, finish = threading.Event(), threading.Event()
    seen: dict[str, bool] = {}

    def user_cell() -> None:
        try:
            with fs_main.transaction:
                fs_main.pipe(f"{name}/draft.txt", b"draft")
                inside.set()
                finish.wait(30)
                raise RuntimeError("user aborts")
        except RuntimeError:
            pass

    t = threading.Thread(target=user_cell)
    t.start()
    assert inside.wait(30)
    seen["bg_intrans"] = fs_bg._intrans
    fs_bg.pipe(f"{name}/checkpoint.bin", b"background job result")
    seen["visible_at_once"] = fs_bg.exists(f"{name}/checkpoint.bin")
    with fs_bg.open(f"{name}/opened.bin", "wb") as f:
        f.write(b"opened")
    finish.set()
    t.join(30)
    assert seen == {"bg_intrans": False, "visible_at_once": True}
    assert fs_bg.cat(f"{name}/checkpoint.bin") == b"background job result"
    assert fs_bg.cat(f"{name}/opened.bin") == b"opened"
    assert not fs_bg.exists(f"{name}/draft.txt")
    assert not fs_main._intrans


# -- a transaction sees its own pending writes --------------------------------------
def test_append_in_a_transaction_starts_from_its_own_earlier_write(
    lfs: VolumeFileSystem, tmp_path: Path
) -> None:
    name = _name()
    lfs.pipe(f"{name}/log.txt", b"line0\n")
    local = tmp_path / "part.txt"
    local.write_bytes(b"from put\n")
    with lfs.transaction:
        with lfs.open(f"{name}/log.txt", "ab") as f:
            f.write(b"line1\n")
        with lfs.open(f"{name}/log.txt", "ab") as f:
            f.write(b"line2\n")
        lfs.pipe(f"{name}/new.txt", b"piped\n")
        with lfs.open(f"{name}/new.txt", "a") as f:  # text mode too
            f.write("appended\n")
        lfs.put_file(str(local), f"{name}/put.txt")
        with lfs.open(f"{name}/put.txt", "ab") as f:
            f.write(b"appended\n")
        lfs.cp_file(f"{name}/log.txt", f"{name}/copied.txt")  # the committed bytes
        with lfs.open(f"{name}/copied.txt", "ab") as f:
            f.write(b"copy+\n")
    assert lfs.cat(f"{name}/log.txt") == b"line0\nline1\nline2\n"
    assert lfs.cat(f"{name}/new.txt") == b"piped\nappended\n"
    assert lfs.cat(f"{name}/put.txt") == b"from put\nappended\n"
    assert lfs.cat(f"{name}/copied.txt") == b"line0\ncopy+\n"


def test_exclusive_create_twice_in_a_transaction_fails(lfs: VolumeFileSystem) -> None:
    name = _name()
    lfs.mkdir(name)
    with pytest.raises(FileExistsError):
        with lfs.transaction:
            with lfs.open(f"{name}/lock.json", "xb") as f:
                f.write(b'{"owner": "job-1"}')
            with lfs.open(f"{name}/lock.json", "xb") as f:
                f.write(b'{"owner": "job-2"}')
    assert not lfs.exists(f"{name}/lock.json")  # the block raised: nothing committed
    with pytest.raises(FileExistsError):
        with lfs.transaction:
            lfs.pipe(f"{name}/lock.json", b"1", mode="create")
            lfs.pipe(f"{name}/lock.json", b"2", mode="create")
    assert not lfs.exists(f"{name}/lock.json")
    # a failed (discarded) exclusive write leaves the path free for the next one
    with lfs.transaction:
        with pytest.raises(ValueError):
            with lfs.open(f"{name}/lock.json", "xb") as f:
                f.write(b"broken")
                raise ValueError("writer failed")
        with lfs.open(f"{name}/lock.json", "xb") as f:
            f.write(b"good")
    assert lfs.cat(f"{name}/lock.json") == b"good"


# -- mv out of a commit -------------------------------------------------------------
def test_mv_from_a_commit_is_refused_before_it_copies(lfs: VolumeFileSystem) -> None:
    name = _name()
    lfs.pipe(f"{name}/a", b"one")
    seq = lfs.info(f"{name}/a")["commit"]
    before = commits(lfs, name)
    with pytest.raises(InvalidError, match="read-only"):
        lfs.mv(f"volume://{name}@{seq}/a", f"volume://{name}/c")
    with pytest.raises(InvalidError, match="read-only"):
        lfs.mv([f"volume://{name}@{seq}/a"], f"volume://{name}/d/")
    assert not lfs.exists(f"{name}/c")
    assert not lfs.exists(f"{name}/d")
    assert commits(lfs, name) == before


# -- folder errors are OSErrors --------------------------------------------
def test_reading_a_folder_raises_is_a_directory(lfs: VolumeFileSystem) -> None:
    name = _name()
    lfs.pipe(f"{name}/folder/f.txt", b"x")
    for call in (
        lambda: lfs.open(f"{name}/folder", "rb"),
        lambda: lfs.cat_file(f"{name}/folder"),
        lambda: lfs.open(name, "rb"),
        lambda: lfs.open(f"{name}/folder", "wb"),
        lambda: lfs.open(f"{name}/folder", "ab"),
        lambda: lfs.open(name, "wb"),
    ):
        with pytest.raises(IsADirectoryError) as e:
            call()
        assert isinstance(e.value, InvalidError)  # `except InvalidError` keeps working
    assert lfs.find(name) == [f"{name}/folder/f.txt"]


def test_rmdir_errors(lfs: VolumeFileSystem) -> None:
    name = _name()
    lfs.pipe(f"{name}/d/f.txt", b"x")
    with pytest.raises(OSError) as e:
        lfs.rmdir(f"{name}/d")
    assert e.value.errno == errno.ENOTEMPTY
    assert isinstance(e.value, InvalidError)
    with pytest.raises(NotADirectoryError):
        lfs.rmdir(f"{name}/d/f.txt")
    with pytest.raises(FileNotFoundError):
        lfs.rmdir(f"{name}/missing")
    assert lfs.cat(f"{name}/d/f.txt") == b"x"
    lfs.makedirs(f"{name}/empty")
    lfs.rmdir(f"{name}/empty")
    assert not lfs.exists(f"{name}/empty")


def test_rm_file_refuses_a_folder(lfs: VolumeFileSystem) -> None:
    name = _name()
    lfs.makedirs(f"{name}/keep-me")
    with pytest.raises(IsADirectoryError):
        lfs.rm_file(f"{name}/keep-me")
    assert lfs.isdir(f"{name}/keep-me")
    lfs.pipe(f"{name}/f.txt", b"x")
    lfs.rm_file(f"{name}/f.txt")
    assert not lfs.exists(f"{name}/f.txt")


# -- pickling open files ----------------------------------------------------------
def test_a_read_file_pickles_and_reopens_its_commit(local_store: Store) -> None:
    fs = VolumeFileSystem(store=local_store.url)
    name = _name()
    fs.pipe(f"{name}/data.bin", b"0123456789")
    f = fs.open(f"volume://{name}/data.bin", "rb")
    f.seek(4)
    fs.pipe(f"{name}/data.bin", b"changed after open")
    g = pickle.loads(pickle.dumps(f))
    assert g.read() == b"456789"
    assert g.commit == f.commit
    assert pickle.loads(pickle.dumps(g)).read() == b""  # at its end, still that commit
    w = fs.open(f"volume://{name}/w.bin", "wb")
    with pytest.raises(TypeError, match="open for writing"):
        pickle.dumps(w)
    w.close()
    r = Volume.from_name(name, store=local_store).open("data.bin")
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(r)
    r.close()


# -- the volume root's mtime ----------------------------------------------------------
def test_a_volume_root_has_the_time_of_its_commit(lfs: VolumeFileSystem) -> None:
    name = _name()
    t0 = time.time()
    lfs.pipe(f"{name}/a.txt", b"x")
    info = lfs.info(f"volume://{name}")
    assert t0 - 2 <= info["mtime"] <= time.time() + 2
    assert lfs.modified(f"volume://{name}").year >= 2026
    seq = info["commit"]
    old = lfs.info(f"volume://{name}@{seq}")
    assert old["mtime"] == info["mtime"]
    assert old["name"] == f"{name}@{seq}"


def test_a_volume_deleted_or_renamed_elsewhere_is_looked_up_again_by_name(
    lfs: VolumeFileSystem,
) -> None:
    """File-system objects live as long as the process, and so did their handle per
    name: after another process renamed the volume away and created a new one of that
    name, ``volume://NAME`` kept reading and writing the old one; after a delete,
    writes 'succeeded' into nothing. Now a handle found gone is replaced by the volume
    the name names now (or a write creates it, as for any new name)."""
    name = _name()
    lfs.pipe(f"{name}/a.txt", b"old volume")
    Volume.rename(name, name + "-archive", store=lfs.store)
    fresh = Volume.from_name(name, store=lfs.store, create_if_missing=True)
    with fresh.batch_upload() as b:
        b.put_file(io.BytesIO(b"new volume"), "a.txt")
    assert lfs.cat(f"{name}/a.txt") == b"new volume"
    lfs.pipe(f"{name}/b.txt", b"b")
    assert [e.path for e in fresh.listdir("/")] == ["a.txt", "b.txt"]
    archive = Volume.from_name(name + "-archive", store=lfs.store)
    assert [e.path for e in archive.listdir("/")] == ["a.txt"]

    Volume.objects.delete(name, store=lfs.store)
    with pytest.raises(FileNotFoundError):
        lfs.cat(f"{name}/a.txt")
    lfs.pipe(f"{name}/c.txt", b"c")  # writing to a new name creates the volume
    assert Volume.from_name(name, store=lfs.store).listdir("/")[0].path == "c.txt"


def test_a_folder_with_a_star_in_its_name_is_listed_as_itself(lfs: VolumeFileSystem) -> None:
    """``*`` is a glob character for the Python API (as in Modal) but an ordinary name
    for fsspec, whose own glob() does the matching: ls, find, du and walk of a folder
    named ``run*1`` used to list its siblings, or nothing."""
    name = _name()
    lfs.pipe({f"{name}/run*1/f.txt": b"1", f"{name}/run-2/g.txt": b"22"})
    assert lfs.ls(f"{name}/run*1", detail=False) == [f"{name}/run*1/f.txt"]
    assert lfs.find(f"{name}/run*1") == [f"{name}/run*1/f.txt"]
    assert lfs.du(f"{name}/run*1") == 1
    assert list(lfs.walk(f"{name}/run*1")) == [(f"{name}/run*1", [], ["f.txt"])]
    assert lfs.glob(f"{name}/run*") == [f"{name}/run*1", f"{name}/run-2"]


def test_links_are_described_as_what_they_point_at(lfs: VolumeFileSystem, tmp_path: Path) -> None:
    """Links stored in a volume (a folder put with its links, or committed from a mount)
    were read through by ``cat`` but described by ``info``/``ls`` as "other" with the
    size of the link's text: pandas refused a Parquet file ``cat`` could read, and a
    recursive ``get`` of a volume holding a link to a folder failed. Now they are
    described as what they point at, with ``islink``, as a local file system does; a
    link out of the volume or to nothing stays "other"."""
    name = _name()
    src = tmp_path / "src"
    (src / "runs" / "42").mkdir(parents=True)
    pd.DataFrame({"a": range(10)}).to_parquet(src / "runs" / "42" / "table.parquet")
    os.symlink("runs/42/table.parquet", src / "latest.parquet")
    os.symlink("runs/42", src / "latest-run")
    vol = Volume.from_name(name, store=lfs.store, create_if_missing=True)
    with vol.batch_upload() as b:
        b.put_directory(str(src), "/")
    lfs.get(name, str(tmp_path / "all"), recursive=True)  # used to fail on the link
    assert (tmp_path / "all" / "latest.parquet").read_bytes() == lfs.cat(
        f"{name}/runs/42/table.parquet"
    )

    info = lfs.info(f"{name}/latest.parquet")
    assert info["type"] == "file" and info["islink"]
    assert info["size"] == len(lfs.cat(f"{name}/latest.parquet"))
    with fsspec.open(f"volume://{name}/latest.parquet", store=lfs.store) as f:
        assert pd.read_parquet(f)["a"].sum() == 45
    assert lfs.isdir(f"{name}/latest-run")
    assert lfs.ls(f"{name}/latest-run", detail=False) == [f"{name}/latest-run/table.parquet"]
    (tmp_path / "ext").mkdir()
    os.symlink("/etc/hostname", tmp_path / "ext" / "outside")
    with vol.batch_upload() as b:
        b.put_directory(str(tmp_path / "ext"), "/ext")
    assert lfs.info(f"{name}/ext/outside")["type"] == "other"
