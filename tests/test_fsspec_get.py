"""fsspec's ``get`` / ``get_file`` from ``volume://`` write a file as a mount does: a
whole pack per ranged read, checked and written in place by the download threads, into
a temporary file that replaces the local one only once complete. On a local store and
on SeaweedFS."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest
from fsspec.callbacks import Callback

from jupyter_volume import Volume
from jupyter_volume.errors import LocalFolderError, VolumeError
from jupyter_volume.fsspec import VolumeFileSystem
from jupyter_volume.testing.wrappers import CountingStore

MiB = 1 << 20


def _volume(store: Any, files: dict[str, bytes]) -> tuple[CountingStore, Volume, VolumeFileSystem]:
    counting = CountingStore(store)
    vol = Volume.from_name("dl", store=counting, create_if_missing=True)
    with vol.batch_upload() as b:
        for path, data in files.items():
            b.put_file(io.BytesIO(data), path)
    return counting, vol, VolumeFileSystem(store=counting, skip_instance_cache=True)


def _pack_reads(counting: CountingStore, vol: Volume) -> list[Any]:
    return counting.matching(("get", "get_range"), prefix=f"vols/{vol.info().id}/packs/")


def test_get_file_reads_a_pack_per_request_and_reports_every_byte(
    store: Any, tmp_path: Path
) -> None:
    data = os.urandom(40 * MiB)
    counting, vol, fs = _volume(store, {"big.bin": data})
    packs = {
        vol._repo.locate(h).pack for h, _n in vol._repo.lookup("big.bin", vol._root(None)).chunks
    }
    out = tmp_path / "new" / "folder" / "big.bin"  # missing folders are made
    cb = Callback()
    counting.reset()
    fs.get_file("volume://dl/big.bin", str(out), callback=cb)
    assert out.read_bytes() == data
    assert (cb.size, cb.value) == (len(data), len(data))
    # read through fsspec's loop, 5 MiB at a time: 9 reads for these 3 packs
    assert len(_pack_reads(counting, vol)) <= len(packs)
    assert out.stat().st_mtime == vol.stat("big.bin").mtime  # as `jupyter volume get` keeps it
    assert [p.name for p in out.parent.iterdir()] == ["big.bin"]  # no temporary file left


def test_a_failed_get_leaves_the_local_file_as_it_was(store: Any, tmp_path: Path) -> None:
    counting, vol, fs = _volume(store, {"big.bin": os.urandom(40 * MiB)})
    chunks = vol._repo.lookup("big.bin", vol._root(None)).chunks
    lost = vol._repo.locate(chunks[-1][0]).pack  # the last pack: the others are written first
    counting.delete(
        [i.key for i in counting.list("vols/") if i.key.endswith(f"/packs/{lost[:2]}/{lost}")]
    )
    fs = VolumeFileSystem(store=counting, skip_instance_cache=True)  # nothing cached
    out = tmp_path / "here" / "big.bin"
    out.parent.mkdir()
    out.write_bytes(b"the copy from yesterday")
    with pytest.raises(VolumeError):
        fs.get("volume://dl/big.bin", str(out))
    assert out.read_bytes() == b"the copy from yesterday"  # not truncated, not half new
    assert os.listdir(out.parent) == ["big.bin"]


def test_a_file_that_cannot_fit_is_refused_before_it_is_fetched(store: Any, tmpfs: Path) -> None:
    counting, vol, fs = _volume(store, {"big.bin": os.urandom(12 * MiB)})  # the tmpfs holds 8
    counting.reset()
    with pytest.raises(LocalFolderError, match="big.bin"):
        fs.get("volume://dl/big.bin", str(tmpfs / "big.bin"))
    assert _pack_reads(counting, vol) == []
    assert os.listdir(tmpfs) == []


def test_get_follows_a_link_and_reads_history(store: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "runs").mkdir(parents=True)
    (src / "runs" / "v1.bin").write_bytes(b"first")
    os.symlink("runs/v1.bin", src / "latest")
    vol = Volume.from_name("dl", store=store, create_if_missing=True)
    with vol.batch_upload() as b:
        b.put_directory(str(src), "/")
    first = vol.seq
    with vol.batch_upload(force=True) as b:
        b.put_file(io.BytesIO(b"second"), "runs/v1.bin")
    fs = VolumeFileSystem(store=store, skip_instance_cache=True)
    fs.get("volume://dl/latest", str(tmp_path / "new.bin"))  # the link's target, not its text
    assert (tmp_path / "new.bin").read_bytes() == b"second"
    fs.get(f"volume://dl@{first}/latest", str(tmp_path / "old.bin"))
    assert (tmp_path / "old.bin").read_bytes() == b"first"


def test_a_recursive_get_reads_small_files_together_and_counts_each_path(
    store: Any, tmp_path: Path
) -> None:
    files = {f"d{i % 3}/f{i}.txt": os.urandom(3000) for i in range(300)}
    counting, vol, fs = _volume(store, files)
    cb = Callback()
    counting.reset()
    fs.get("volume://dl/", str(tmp_path / "out"), recursive=True, callback=cb)
    for path, data in files.items():
        assert (tmp_path / "out" / path).read_bytes() == data
    # 300 files and 4 folders (the volume's top and d0-d2), each counted once it is done
    assert (cb.size, cb.value) == (304, 304)
    # read together, up to 256 files a batch, neighbours in one ranged read (one at a
    # time: 300 reads), and the newest commit looked up a few times for the whole call
    # (per file: twice each)
    assert len(_pack_reads(counting, vol)) <= 6
    looks = counting.matching(prefix=f"vols/{vol.info().id}/log/")
    assert len(looks) <= 12, looks
