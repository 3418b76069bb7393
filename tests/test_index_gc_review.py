"""Garbage collection against the chunk index a process holds in memory.

A process's index (``Repository.index``) is replaced by an empty one when the process
sees a new gc record: gc deleted packs (at once with no grace period), so what the old
index located may be gone. Index segments are named by some head; a load of the
segments of a head read before the gc (a reload's load beside its tree comparison,
``Mount._reload_locked``, or any ``ensure_index`` given keys read earlier) used to add
them to whatever index was in force when the load finished. Another thread could have
switched to the gc's index meanwhile, and the old locations then joined it: chunks in
packs gc deleted (not in its condemned set, which lists only packs still there), and
the old places of chunks gc moved out of a repacked pack.

The races are made certain, not timed: a store wrapper holds the loading thread right
after the segment's GET has returned (the bytes in hand, nothing added yet) until the
test has run the gc and had another thread of the process look at the head.
"""

from __future__ import annotations

import io
import os
import threading
from typing import Any

import pytest

from jupyter_volume import Volume
from jupyter_volume.errors import AlreadyExistsError, VolumeError
from jupyter_volume.store.base import Store
from jupyter_volume.testing.wrappers import WrappedStore

MiB = 1 << 20


class Holding(WrappedStore):
    """Stops the calling threads at the next ``count`` operations of a kind (on keys
    starting with a prefix), right *after* each has returned (``before``: right before
    it is sent), until the test lets them go. ``url``: another URL than the inner
    store's, so that this process keeps a repository of its own for it (another
    process's view of the volume)."""

    class Hold:
        def __init__(self, kind: str, prefix: str, count: int, before: bool) -> None:
            self.kind, self.prefix, self.left, self.before = kind, prefix, count, before
            self.reached = threading.Event()  # set once all ``count`` are held
            self._go = threading.Event()

        def wait(self) -> None:
            assert self.reached.wait(60), f"nobody reached {self.kind} {self.prefix}"

        def go(self) -> None:
            self._go.set()

    def __init__(self, inner: Store, url: str) -> None:
        super().__init__(inner)
        self.url = url
        self._holds: list[Holding.Hold] = []
        self._lock = threading.Lock()

    def hold(self, kind: str, prefix: str, count: int = 1, *, before: bool = False) -> Holding.Hold:
        h = Holding.Hold(kind, prefix, count, before)
        with self._lock:
            self._holds.append(h)
        return h

    def _stop(self, kind: str, key: str, before: bool) -> None:
        with self._lock:
            h = next(
                (
                    h
                    for h in self._holds
                    if h.kind == kind and h.before == before and key.startswith(h.prefix)
                ),
                None,
            )
            if h is not None:
                h.left -= 1
                if not h.left:
                    self._holds.remove(h)
                    h.reached.set()
        if h is not None:
            assert h._go.wait(60), f"never let go at {kind} {key}"

    def _do(self, kind: str, key: str, fn, *args):  # type: ignore[no-untyped-def]
        self._stop(kind, key, before=True)
        out = super()._do(kind, key, fn, *args)
        self._stop(kind, key, before=False)
        return out


def _in_thread(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def put(vol: Volume, path: str, data: bytes) -> int:
    with vol.batch_upload(force=True) as b:
        b.put_file(io.BytesIO(data), path)
    return b.commit_info.seq


def read(vol: Volume, path: str) -> bytes:
    return b"".join(vol.read_file(path))


def readable(vol: Volume, path: str, data: bytes, what: str, verify: bool = True) -> None:
    """``path`` of ``vol`` reads back as ``data`` (failing with ``what`` if it cannot be
    read at all) and, with ``verify``, the whole volume verifies."""
    try:
        got = read(vol, path)
    except VolumeError as e:
        pytest.fail(f"{what}: {e!r}")
    assert got == data
    if verify:
        report = vol.verify()
        assert report.ok, report.errors


def _load_old_segments_across_gc(
    store: Store, name: str, *, grace: float, stays: int = 0, index_first: bool = False
) -> tuple[Volume, Volume, bytes, bytes | None]:
    """Volume ``name`` where ``x`` was stored (one pack, with ``stays`` bytes of a file
    that stays when ``stays``) and removed again, after another file that stays (so the
    head lists two index segments). Process B (a repository of its own) loads the
    segments of that head on one thread, as a reload does beside its tree comparison
    (``Mount._reload_locked``); their GETs return, and before they are added a gc in
    process A expires the commit that had ``x``, and another thread of B looks at the
    head (switching B to the gc's index; with ``index_first``, also loading it, as any
    read in B would). Then the load finishes. ``(vol_a, vol_b, x, stays's bytes)``."""
    vol_a = Volume.lookup(name, create_if_missing=True, store=store)
    put(vol_a, "other.bin", os.urandom(200_000))
    x = os.urandom(MiB)
    kept = os.urandom(stays) if stays else None
    with vol_a.batch_upload(force=True) as b:  # one pack: x, and maybe a file that stays
        b.put_file(io.BytesIO(x), "x.bin")
        if kept is not None:
            b.put_file(io.BytesIO(kept), "stays.bin")
    vol_a.remove_file("x.bin")
    vol_a.set_retention(keep_last=1)

    held = Holding(store, url=store.url + "#process-b")
    vol_b = Volume.from_name(name, store=held)
    repo_b = vol_b._repo
    head = repo_b.head()  # the head a reload moves to: x is gone from it, its data not
    assert len(head.index) == 2, head
    hold = held.hold("get", f"vols/{vol_a.object_id}/index/", count=2)
    # what Mount._reload_locked runs on its prefetch thread
    t, out = _in_thread(lambda: repo_b.ensure_index(head.index, head.gc_pointer))
    hold.wait()  # both segments are read, neither added yet
    vol_a.gc(grace=grace)  # expires the commit that had x (grace 0: its pack is deleted now)
    gc_head = repo_b.head()  # another thread of B sees the gc record
    assert gc_head.kind == "gc", gc_head
    if index_first:
        repo_b.ensure_index()
    hold.go()
    t.join(60)
    assert not t.is_alive()
    out.pop("error", None)  # best effort (a reload goes on without it)
    return vol_a, vol_b, x, kept


@pytest.mark.parametrize("stays", [0, 256 << 10], ids=["pack-deleted", "pack-repacked"])
def test_old_segments_loaded_across_a_gc_never_locate_deleted_data(store, stays: int) -> None:
    """The user-visible damage of the race: process B deduplicates a new file against
    the old locations of ``x`` that joined its index after gc deleted their pack, and
    publishes a commit whose data is not in the volume (unreadable, verify fails).
    With ``stays``, gc repacked the file that stays and condemned the old pack."""
    name = f"idxgc{stays}"
    vol_a, vol_b, x, _kept = _load_old_segments_across_gc(store, name, grace=0, stays=stays)
    put(vol_b, "x-again.bin", x)  # the same bytes again, in process B
    fresh = Volume.from_name(name, store=store)
    readable(fresh, "x-again.bin", x, "the commit of process B is unreadable")


def test_old_segments_loaded_across_a_gc_never_hide_a_live_file(store) -> None:
    """With the default grace period: gc moved the chunks of a live file out of a
    mostly dead pack and condemned that pack. Process B had loaded gc's index already;
    the old segment, added on top of it, put the live file's chunks back in the
    condemned pack, which the index never offers: every read of the live file in B
    failed ("missing from the volume's index") until the next gc."""
    _vol_a, vol_b, _x, kept = _load_old_segments_across_gc(
        store, "idxgclive", grace=3600, stays=256 << 10, index_first=True
    )
    readable(vol_b, "stays.bin", kept, "a live file is unreadable in process B", verify=False)


def test_a_gc_sweeping_beside_a_later_gc_keeps_the_later_checkpoint(store) -> None:
    """Index objects are named by their content, and so is gc's checkpoint: a live set
    that comes back exactly as it was (a file added, a gc, the file removed) gives a
    checkpoint with the key of an older one. gc G2 lists the index objects after its
    record and deletes the old ones it does not list; a gc G3 run meanwhile (in another
    process: nothing keeps two gc runs apart) writes that same key again and lists it
    in its record. G2's delete, by key, then removed the only index of every head from
    G3 on: no file of the volume could be read, nor verified, nor collected. Each gc run
    now salts its checkpoint (a random pack id no record refers to), so G3's has a key
    of its own. No retry is needed for the race (G2's listing is older than G3's
    write)."""
    vol = Volume.lookup("gcgc", create_if_missing=True, store=store)
    a = os.urandom(300_000)
    put(vol, "a.bin", a)
    vol.set_retention(keep_last=1)
    vol.gc(grace=0)
    c1 = vol._repo.head().index
    put(vol, "x.bin", os.urandom(300_000))
    held = Holding(store, url=store.url + "#gc2")
    from jupyter_volume.repository import gc
    from jupyter_volume.repository.repo import Repository

    g2 = Repository(held, vol.object_id)
    stop = held.hold("delete", f"vols/{vol.object_id}/", before=True)
    t, out = _in_thread(lambda: gc.collect(g2, grace=0))
    stop.wait()  # G2's record landed; it has listed what to delete
    vol.remove_file("x.bin")
    gc.collect(Repository(store, vol.object_id))  # G3, in another process
    g3_head = Repository(store, vol.object_id).head()
    assert g3_head.kind == "gc"
    assert g3_head.index != c1  # the same live chunks as the first checkpoint, its own key
    stop.go()
    t.join(60)
    assert not t.is_alive() and "error" not in out, out
    fresh = Volume.from_name("gcgc", store=Holding(store, url=store.url + "#fresh"))
    readable(fresh, "a.bin", a, "a live file is unreadable after two overlapping gc runs")


class _OtherFirst(WrappedStore):
    """Before this process's create-only write of ``key``, runs ``first()`` once: another
    writer takes that slot, so this process loses it and tries again."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.key = ""
        self.first: Any = None

    def put_if_absent(self, key: str, data: bytes | bytearray | memoryview) -> bool:
        if key == self.key and self.first is not None:
            first, self.first = self.first, None
            first()
        return super().put_if_absent(key, data)


def test_a_commit_abandoned_after_folding_the_index_leaves_nothing_to_deduplicate_against(
    local_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit that lists more than COMPACT_AT index objects folds them, its own new
    segment included, before it claims the slot. It loaded that segment into the
    process's index to fold it: locations no record had published yet. When the commit
    was then abandoned (here: another writer created its file between two attempts, so
    the batch's "exists" check refused), the next commit of the same bytes in this
    process deduplicated against them and published a file whose chunk no record
    locates: unreadable everywhere else."""
    from jupyter_volume.repository import repo as repo_mod

    monkeypatch.setattr(repo_mod, "COMPACT_AT", 2)
    wrapped = _OtherFirst(local_store)
    vol = Volume.from_name("fold", store=wrapped, create_if_missing=True)
    for i in range(2):  # two index objects listed: the next commit folds
        put(vol, f"seed{i}.bin", os.urandom(100_000))
    other = Volume.from_name("fold", store=local_store)  # another process's handle
    data = os.urandom(100_000)
    wrapped.key = vol._repo._log_key(vol._repo.head(refresh=True).seq + 1)
    wrapped.first = lambda: put(other, "x.bin", b"theirs")
    with pytest.raises(AlreadyExistsError):
        with vol.batch_upload() as b:
            b.put_file(io.BytesIO(data), "x.bin")
    put(vol, "y.bin", data)  # the same bytes again, in this process
    fresh = Volume.from_name("fold", store=local_store)
    readable(fresh, "y.bin", data, "the second commit of the same bytes is unreadable")
