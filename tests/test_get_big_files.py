"""Downloads (`jupyter volume get`, ``transfer.download``, and
``Volume.read_file_into_fileobj`` into a local file) write a big file as a mount does:
a whole pack per ranged read, checked and written in place by the download threads,
the file's disk reserved first, the progress bar told of every byte. On a local store
and on SeaweedFS."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from jupyter_volume import Volume
from jupyter_volume.errors import LocalFolderError
from jupyter_volume.progress import NullProgress
from jupyter_volume.testing.wrappers import CountingStore
from jupyter_volume.transfer import download

MiB = 1 << 20


class _Bar(NullProgress):
    """A bar that counts what a download reports, and which threads report it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.callers: set[str] = set()

    def update(self, n: int = 1) -> None:
        with self._lock:
            super().update(n)
            self.callers.add(threading.current_thread().name.split("_")[0])


def _volume(store: Any, files: dict[str, bytes]) -> tuple[CountingStore, Volume]:
    counting = CountingStore(store)
    vol = Volume.from_name("dl", store=counting, create_if_missing=True)
    with vol.batch_upload() as b:
        for path, data in files.items():
            b.put_file(io.BytesIO(data), path)
    return counting, Volume.from_name("dl", store=counting)


def _plan(vol: Volume, dest: Path) -> list[Any]:
    return [(e, dest / e.path) for e in vol.listdir("/", recursive=True)]


def test_a_big_file_is_fetched_a_pack_per_request_and_counted(store: Any, tmp_path: Path) -> None:
    files = {"big.bin": os.urandom(40 * MiB), "small.txt": b"small"}
    counting, vol = _volume(store, files)
    packs = {
        vol._repo.locate(h).pack for h, _n in vol._repo.lookup("big.bin", vol._root(None)).chunks
    }
    dest = tmp_path / "out"
    bar = _Bar()
    counting.reset()
    got = download(vol, _plan(vol, dest), base=dest, progress=lambda total, n: bar)
    assert got.files == 2
    for path, data in files.items():
        assert (dest / path).read_bytes() == data
    assert bar.n == sum(len(d) for d in files.values())
    assert "jv-download" in bar.callers  # told from the download threads, as bytes land
    reads = counting.matching(("get", "get_range"), prefix=f"vols/{vol.info().id}/packs/")
    # the big file: one read per pack (read as a stream, 8 MiB at a time: 5 or more)
    assert len(reads) <= len(packs) + 1, reads  # + the small file's


def test_a_big_file_that_cannot_fit_is_refused_before_it_is_fetched(
    store: Any, tmpfs: Path
) -> None:
    counting, vol = _volume(store, {"big.bin": os.urandom(12 * MiB)})  # the tmpfs holds 8
    counting.reset()
    with pytest.raises(LocalFolderError, match="big.bin"):
        download(vol, _plan(vol, tmpfs), base=tmpfs)
    assert counting.matching(("get", "get_range"), prefix=f"vols/{vol.info().id}/packs/") == []
    assert os.listdir(tmpfs) == []  # no partial file left


def test_read_file_into_a_local_file_is_a_pack_per_request_from_its_position(
    store: Any, tmp_path: Path
) -> None:
    data = os.urandom(40 * MiB)
    counting, vol = _volume(store, {"big.bin": data})
    packs = {
        vol._repo.locate(h).pack for h, _n in vol._repo.lookup("big.bin", vol._root(None)).chunks
    }
    told: list[int] = []
    counting.reset()
    with open(tmp_path / "out.bin", "wb") as f:
        f.write(b"header")  # still in the file object's buffer
        n = vol.read_file_into_fileobj(
            "big.bin", f, progress_cb=lambda advance: told.append(advance)
        )
        assert (n, f.tell()) == (len(data), 6 + len(data))
        f.write(b"trailer")
    assert (tmp_path / "out.bin").read_bytes() == b"header" + data + b"trailer"
    assert sum(told) == len(data)
    reads = counting.matching(("get", "get_range"), prefix=f"vols/{vol.info().id}/packs/")
    assert len(reads) <= len(packs), reads  # piece by piece: 7 reads for these 3 packs


def test_read_file_into_other_file_objects_goes_piece_by_piece(store: Any, tmp_path: Path) -> None:
    data = os.urandom(6 * MiB)
    _counting, vol = _volume(store, {"big.bin": data})
    buf = io.BytesIO(b"old")
    buf.seek(0, 2)
    assert vol.read_file_into_fileobj("big.bin", buf) == len(data)
    assert buf.getvalue() == b"old" + data
    (tmp_path / "log.bin").write_bytes(b"first ")
    with open(tmp_path / "log.bin", "ab") as f:  # appending: positional writes would not
        vol.read_file_into_fileobj("big.bin", f)
    assert (tmp_path / "log.bin").read_bytes() == b"first " + data
    with open(tmp_path / "text.txt", "w") as t, pytest.raises(TypeError):
        vol.read_file_into_fileobj("big.bin", t)  # text mode: refused as before
