"""Reads of the newest commit in one round trip: ``Volume.read_file`` and fsspec's
``cat_file`` read a small file at the newest commit this process knows *while* the store
is asked which commit is the newest, and keep that read only if it still is
(``Volume._read_newest``). Both stores (``store`` fixture)."""

from __future__ import annotations

import io
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import jupyter_volume.volume as volume_mod
from jupyter_volume import NotFoundError, Volume
from jupyter_volume.fsspec import VolumeFileSystem
from jupyter_volume.store import Store
from jupyter_volume.testing.wrappers import WrappedStore

try:
    from .children import another_process
except ImportError:  # tests/ is not a package
    from children import another_process  # type: ignore[no-redef]


def _name() -> str:
    return f"rn-{uuid.uuid4().hex[:10]}"


def _put(vol: Volume, path: str, data: bytes) -> None:
    with vol.batch_upload(force=True) as b:
        b.put_file(io.BytesIO(data), path)


class _LogLookWaitsForARead(WrappedStore):
    """Holds each look at the log (a listing of it; on a local folder, a stat of the
    next record) until a pack has been asked for, or ``WAIT`` seconds have passed: a read
    made only after that look (two round trips) never overlaps it, and the test sees the
    look waited in vain."""

    WAIT = 10.0

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.log = "\0"  # set by the test once the volume exists
        self.pack_read = threading.Event()
        self.overlapped: list[bool] = []

    def _look(self, key: str) -> None:
        if key.startswith(self.log):
            self.overlapped.append(self.pack_read.wait(self.WAIT))

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[Any]:
        self._look(prefix)
        return super().list(prefix, start_after)

    def stat(self, key: str) -> Any:
        self._look(key)
        return super().stat(key)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if "/packs/" in key:
            self.pack_read.set()
        return super().get_range(key, start, length)


def _read_file(store: Store, name: str, path: str) -> bytes:
    return b"".join(Volume.from_name(name, store=store).read_file(path))


def _cat_file(store: Store, name: str, path: str) -> bytes:
    return VolumeFileSystem(store=store, skip_instance_cache=True).cat_file(f"{name}/{path}")


READS: dict[str, Callable[[Store, str, str], bytes]] = {
    "read_file": _read_file,
    "cat_file": _cat_file,
}


@pytest.mark.parametrize("how", sorted(READS))
def test_a_small_file_is_read_while_the_newest_commit_is_looked_up(
    store: Store, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """Once the process knows a commit of the volume, its pack is asked for before the
    listing that finds the newest commit has answered (one round trip, not two)."""
    read = READS[how]
    name = _name()
    data = os.urandom(64 << 10)
    with another_process():  # nothing of it is in this process's caches
        vol = Volume.from_name(name, store=store, create_if_missing=True)
        _put(vol, "sub/data.bin", data)
    monkeypatch.setattr(volume_mod, "_repos", {})
    held = _LogLookWaitsForARead(store)
    Volume.from_name(name, store=held).listdir("/")  # learns the newest commit
    held.log = f"vols/{vol.object_id}/log/"
    assert read(held, name, "sub/data.bin") == data
    assert held.overlapped and all(held.overlapped), held.overlapped


@pytest.mark.parametrize("how", sorted(READS))
def test_a_read_of_the_newest_commit_keeps_only_the_newest(store: Store, how: str) -> None:
    """What the read at the known commit returned is thrown away when a newer commit
    landed meanwhile: the answer is always the newest commit's. A read that failed at
    the known commit does not count if the newest has the file, and one that succeeded
    there does not count if the newest has lost it."""
    read = READS[how]
    name = _name()
    vol = Volume.from_name(name, store=store, create_if_missing=True)
    _put(vol, "a.txt", b"first")
    assert read(store, name, "a.txt") == b"first"
    with another_process():
        other = Volume.from_name(name, store=store)
        _put(other, "a.txt", b"second")
    assert read(store, name, "a.txt") == b"second"
    with another_process():
        _put(Volume.from_name(name, store=store), "new.txt", b"made elsewhere")
    assert read(store, name, "new.txt") == b"made elsewhere"  # missing at the known one
    with another_process():
        Volume.from_name(name, store=store).remove_file("a.txt")
    with pytest.raises((NotFoundError, FileNotFoundError)):
        read(store, name, "a.txt")  # there at the known commit, gone from the newest
    with pytest.raises((NotFoundError, FileNotFoundError)):
        read(store, name, "never.txt")
    with another_process():  # the known commit: expired by gc, its data deleted
        other = Volume.from_name(name, store=store)
        _put(other, "new.txt", b"third")
        other.set_retention(keep_last=1, grace=0)
        _put(other, "new.txt", b"fourth")
        other.gc()
    assert read(store, name, "new.txt") == b"fourth"


def test_read_file_of_a_range_and_at_a_commit(store: Store) -> None:
    """Ranges are read the same way; ``at=`` reads that commit, with no guess. Only
    then does a missing file's error name the commit."""
    name = _name()
    vol = Volume.from_name(name, store=store, create_if_missing=True)
    _put(vol, "f", b"0123456789")
    first = vol.history(limit=1)[0].seq
    assert b"".join(vol.read_file("f", offset=2, length=3)) == b"234"
    with another_process():
        _put(Volume.from_name(name, store=store), "f", b"abcdefghij")
    assert b"".join(vol.read_file("f", offset=7)) == b"hij"
    assert b"".join(vol.read_file("f", offset=20)) == b""
    assert b"".join(vol.read_file("f", at=first, offset=2, length=3)) == b"234"
    with pytest.raises(NotFoundError) as missing:
        vol.read_file("missing")
    assert "at commit" not in str(missing.value)  # none was asked for
    with pytest.raises(NotFoundError, match=f"at commit {first}: missing"):
        vol.read_file("missing", at=first)


@pytest.mark.parametrize("how", sorted(READS))
def test_a_big_file_is_read_once_whatever_landed_meanwhile(
    store: Store, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """Over ``volume.GUESS_MAX`` bytes are read only once the newest commit is known: read
    at an older one first, a big file changed since would be fetched twice, its old
    bytes for nothing. ``read_file`` still streams it, in pieces."""

    class Fetched(WrappedStore):
        nbytes = 0

        def get_range(self, key: str, start: int, length: int) -> bytes:
            # ranged reads into a buffer come here too (see WrappedStore.get_range_into)
            data = super().get_range(key, start, length)
            self.nbytes += len(data)
            return data

    name = _name()
    monkeypatch.setattr(volume_mod, "_repos", {})
    fetched = Fetched(store)
    vol = Volume.from_name(name, store=fetched, create_if_missing=True)
    _put(vol, "big.bin", os.urandom(6 << 20))
    assert vol.listdir("/")  # this process knows the commit
    new = os.urandom(6 << 20)
    with another_process():
        _put(Volume.from_name(name, store=store), "big.bin", new)
    fetched.nbytes = 0
    assert READS[how](fetched, name, "big.bin") == new
    assert fetched.nbytes <= len(new) + (1 << 20), fetched.nbytes  # old and new: 12 MiB
    if how == "read_file":
        assert len(list(vol.read_file("big.bin"))) > 1


def test_the_thread_keeps_the_pin_it_had(store: Store) -> None:
    """A read of the newest commit pins it only while it reads: a later read at that
    commit by number (``at=``) checks again that gc has not expired it."""
    name = _name()
    vol = Volume.from_name(name, store=store, create_if_missing=True)
    _put(vol, "f", b"x")
    b"".join(vol.read_file("f"))
    assert getattr(vol._seen, "pinned", None) is None
    seq = vol._pin_head()
    b"".join(vol.read_file("f"))
    assert vol._seen.pinned == seq
