"""The initial commit of a huge tree streams: memory does not grow with the file count.

``Repository.commit_stream`` takes files in tree order and builds the tree bottom up
(:class:`TreeBuilder`), uploading nodes in batches. Bounds here are structural, never
timings: the tracemalloc peak of committing 50,000 files must stay close to that of
5,000 files, while the plain ``commit(changes)`` path grows with the count (which
shows the measurement can tell the two apart).

A mount's commit of many new paths (``Mount._commit_streamed``) goes through it too:
the same commit as the plain path (quiet gate, rows, group of a deferred file, other
writers' files kept), with its rows written in batches of one SQLite transaction.
"""

from __future__ import annotations

import gc
import io
import json
import os
import random
import subprocess
import sys
import textwrap
import threading
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from jupyter_volume import Volume, quiet
from jupyter_volume import mount as mount_mod
from jupyter_volume.errors import StoreError
from jupyter_volume.repository import Repository
from jupyter_volume.repository import repo as repo_mod
from jupyter_volume.repository.tree import DIR, FILE, LINK, Entry, TreeBuilder, tree_order_key
from jupyter_volume.store import Store
from jupyter_volume.testing.wrappers import WrappedStore

pytestmark = pytest.mark.slow  # long in all: started first (conftest)

MTIME = 1_700_000_000_000_000_000
PER_FOLDER = 500


def _items(n: int) -> Iterator[tuple[str, Entry]]:
    """``n`` tiny files in folders of PER_FOLDER, in tree order, made on the fly."""
    folders = (n + PER_FOLDER - 1) // PER_FOLDER
    for d in range(folders):
        top = f"d{d // 10:04d}"
        if d % 10 == 0:
            yield top, Entry("", DIR, 0o755, mtime_ns=MTIME)
        sub = f"{top}/s{d % 10}"
        yield sub, Entry("", DIR, 0o755, mtime_ns=MTIME)
        for i in range(min(PER_FOLDER, n - d * PER_FOLDER)):
            data = b"%d/%d" % (d, i)
            yield f"{sub}/f{i:04d}", Entry("", FILE, 0o644, len(data), MTIME, inline=data)


def _repo(store: Store, tmp_path: Path) -> Repository:
    vol_id = uuid.uuid4().hex
    Repository.create(store, vol_id)
    return Repository(store, vol_id, cache_dir=tmp_path / f"cache-{vol_id}")


def _peak(fn) -> int:  # type: ignore[no-untyped-def]
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_builder_makes_the_same_tree_as_apply(local_store: Store, tmp_path: Path) -> None:
    repo = _repo(local_store, tmp_path)
    rng = random.Random(7)
    changes: dict[str, Entry | str | None] = {
        "big": Entry("", DIR, 0o755, mtime_ns=MTIME),
        "empty": Entry("", DIR, 0o700, mtime_ns=MTIME),
        "z": Entry("", DIR, 0o755, mtime_ns=MTIME),
        "z/deeper": Entry("", DIR, 0o755, mtime_ns=MTIME),
        "z/deeper/link": Entry("", LINK, 0o777, 3, MTIME, target="../x"),
        "a-file": Entry("", FILE, 0o600, 2, MTIME, inline=b"hi"),
    }
    for i in range(9_000):  # past SPLIT_AT: a split folder with many leaves
        data = rng.randbytes(rng.randint(0, 40))
        changes[f"big/n{rng.randrange(10**9):09d}-{i}"] = Entry(
            "", FILE, 0o644, len(data), MTIME, inline=data
        )
    for i in range(30):
        changes[f"z/deeper/f{i}"] = Entry("", FILE, 0o644, 1, MTIME, inline=b"x")
    expected, _ = repo.trees.apply(repo.head().root, changes)

    builder = TreeBuilder(repo.trees)
    for p in sorted(changes, key=tree_order_key):
        builder.add(p, changes[p])  # type: ignore[arg-type]
    assert builder.finish() == expected
    assert builder.files == 9_000 + 30 + 2


def test_commit_stream_keeps_other_writers_files_and_reads_back(
    store: Store, tmp_path: Path
) -> None:
    repo = _repo(store, tmp_path)
    w = repo.writer()
    mine = {"shared/theirs.bin": b"t" * 3000, "shared/both.txt": b"theirs"}
    repo.commit({p: w.bytes_entry(d) for p, d in mine.items()}, writer=w)
    w = repo.writer()
    items = [
        ("shared", Entry("", DIR, 0o755, mtime_ns=MTIME)),
        ("shared/big.bin", w.bytes_entry(bytes(range(256)) * 400)),
        ("shared/both.txt", w.bytes_entry(b"ours")),
        ("top.txt", w.bytes_entry(b"top")),
    ]
    rec, stats = repo.commit_stream(iter(items), writer=w, message="bulk")
    assert rec is not None and rec.seq == 2
    assert (stats.added, stats.modified) == (2, 1)
    fresh = Repository(store, repo.vol_id, cache_dir=tmp_path / "fresh")
    got = {
        p: b"".join(fresh.read_entry(e, p))
        for p, e in fresh.trees.walk(fresh.head().root)
        if e.kind == FILE
    }
    assert got == {
        "shared/theirs.bin": b"t" * 3000,
        "shared/both.txt": b"ours",
        "shared/big.bin": bytes(range(256)) * 400,
        "top.txt": b"top",
    }
    # the version it replaced stays in history
    old = fresh.lookup("shared/both.txt", fresh.record(1).root)
    assert old is not None and old.inline == b"theirs"
    assert fresh.verify().ok


class _TreesHeld(WrappedStore):
    """Tree node PUTs wait while ``release`` is clear (they are on their way meanwhile)."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()  # a tree node PUT is being held

    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        if ("/trees/" in key or key.startswith("trees/")) and not self.release.is_set():
            self.entered.set()
            assert self.release.wait(60), "the edit never let the tree nodes go"
        return super().put(key, data)


def test_a_streamed_commits_edit_reads_tree_nodes_still_on_their_way(
    local_store: Store, tmp_path: Path
) -> None:
    # The tree's last nodes go up while the edit checks what was read (a mount drops
    # files that changed meanwhile, which reads the nodes above them): a node whose PUT
    # has not finished is read from memory, not from a store that may not have it yet.
    held = _TreesHeld(local_store)
    repo = _repo(held, tmp_path)
    w = repo.writer()
    items = [("d", Entry("", DIR, 0o755, mtime_ns=MTIME))]
    items += [(f"d/f{i:02d}", w.bytes_entry(b"%d" % i * 40)) for i in range(20)]

    def edit(top: str) -> str:
        try:
            # the nodes are on their way (their PUTs started and are held) ...
            assert held.entered.wait(30), "no tree node was sent before the edit"
            # ... while this reads the root and d
            new_top, _stats = repo.trees.apply(top, {"d/f03": None})
        finally:
            held.release.set()
        return new_top

    held.release.clear()
    rec, _stats = repo.commit_stream(iter(items), writer=w, edit=edit, message="edited")
    assert rec is not None
    fresh = Repository(local_store, repo.vol_id, cache_dir=tmp_path / "fresh")
    got = {
        p: b"".join(fresh.read_entry(e, p))
        for p, e in fresh.trees.walk(fresh.head().root)
        if e.kind == FILE
    }
    assert got == {f"d/f{i:02d}": b"%d" % i * 40 for i in range(20) if i != 3}
    assert fresh.verify().ok


@pytest.mark.parametrize(
    "paths",
    [
        ["b/x", "a"],  # back up to a folder that closed
        ["a/c", "a/b"],  # back within one folder
        ["a/c", "a/c"],  # the same path twice
        ["x", "w"],  # at the top
        # within a folder, then into a folder before the last name there: compared with
        # the path added last (a/d), not the last one that opened or closed a folder
        ["a/c", "a/d", "a/c/z"],
    ],
)
def test_out_of_order_items_are_refused(
    local_store: Store, tmp_path: Path, paths: list[str]
) -> None:
    repo = _repo(local_store, tmp_path)
    builder = TreeBuilder(repo.trees)
    for p in paths[:-1]:
        builder.add(p, Entry("", FILE, inline=b"1", size=1))
    with pytest.raises(ValueError, match="tree order"):
        builder.add(paths[-1], Entry("", FILE, inline=b"1", size=1))


def test_entries_given_under_their_names_make_the_same_tree(
    local_store: Store, tmp_path: Path
) -> None:
    repo = _repo(local_store, tmp_path)
    paths = ["a", "a/b", "a/b/c", "a/b/d", "a/e", "f", "g", "g/h"]
    folders = {"a", "a/b", "g"}  # given, so that no folder is stamped with the time
    trees = []
    for named in (False, True):
        builder = TreeBuilder(repo.trees)
        for p in paths:
            name = p.rsplit("/", 1)[-1] if named else ""
            if p in folders:
                builder.add(p, Entry(name, DIR, 0o755, mtime_ns=MTIME))
            else:
                builder.add(p, Entry(name, FILE, 0o644, 1, MTIME, inline=p[-1].encode()))
        trees.append(builder.finish())
    assert trees[0] == trees[1]
    assert [e.name for e in repo.trees.entries(trees[1])] == ["a", "f", "g"]


def test_initial_commit_memory_does_not_grow_with_file_count(
    local_store: Store, tmp_path: Path
) -> None:
    small, large = 5_000, 50_000

    def stream(n: int) -> None:
        repo = _repo(local_store, tmp_path)
        # Small upload batches, so that both sizes reach the bound the batch sets.
        rec, stats = repo.commit_stream(_items(n), writer=repo.writer(), flush_bytes=32 << 10)
        assert rec is not None and stats.added == n

    def plain(n: int) -> None:
        repo = _repo(local_store, tmp_path)
        repo.commit(dict(_items(n)), writer=repo.writer())

    stream(200)  # warm up imports and pools outside the measurement
    # tracemalloc counts every thread's allocations: another thread of this worker
    # allocating during one measurement inflates it (seen once in a run of the suite:
    # 4.2 MB for the large case against 0.2 MB for the small one). Memory that grows
    # with the file count shows in every measurement, so the lesser of two is compared.
    s_small = min(_peak(lambda: stream(small)) for _ in range(2))
    s_large = min(_peak(lambda: stream(large)) for _ in range(2))
    p_large = _peak(lambda: plain(large))
    # Ten times the files, well under twice the peak (what still grows is the set of
    # node hashes known to be uploaded: one per folder, not per file).
    assert s_large < 2 * s_small, (s_small, s_large)
    # The plain path holds the whole change set: the measurement tells them apart.
    assert p_large > 3 * s_large, (p_large, s_large)

    # and what was streamed is all there
    repo = _repo(local_store, tmp_path)
    repo.commit_stream(_items(12_345), writer=repo.writer())
    fresh = Repository(local_store, repo.vol_id, cache_dir=tmp_path / "fresh")
    files = [(p, e) for p, e in fresh.trees.walk(fresh.head().root) if e.kind == FILE]
    assert len(files) == 12_345
    assert dict(files)["d0002/s4/f0123"].inline == b"24/123"


# -- through a mount ---------------------------------------------------------------------------


def _fill(root: Path, n: int, size: int = 40, per_folder: int = 250) -> dict[str, bytes]:
    """``n`` files of ``size`` bytes (distinct contents) in folders of ``per_folder``."""
    out: dict[str, bytes] = {}
    for i in range(n):
        rel = f"t{i // (per_folder * 8):03d}/s{i // per_folder % 8}/f{i:06d}.bin"
        data = (b"%08d" % i) * (size // 8) + b"x" * (size % 8)
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        out[rel] = data
    return out


def _volume_files(vol: Volume) -> dict[str, bytes]:
    fresh = Volume.from_name(vol.name, store=vol.store)
    return {
        e.path: b"".join(fresh.read_file(e.path))
        for e in fresh.listdir("/", recursive=True)
        if e.type.name == "FILE"
    }


@pytest.fixture
def streamed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every mount commit of new paths streams (the threshold is 2,000 paths), and the
    list counts the commits that did, so a test knows which path it exercised."""
    monkeypatch.setattr(mount_mod, "STREAM_AT", 1)
    calls: list[int] = []
    real = mount_mod.Mount._commit_streamed

    def counted(self, *a, **kw):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(self, *a, **kw)

    monkeypatch.setattr(mount_mod.Mount, "_commit_streamed", counted)
    return calls


def test_mount_initial_commit_streams_the_same_commit(
    store: Store, tmp_path: Path, streamed: list[int]
) -> None:
    vol = Volume.from_name("s", store=store, create_if_missing=True)
    m = vol.mount(tmp_path / "mnt", background=False, settle=0.0)
    root = m.path
    files = _fill(root, 600)
    # tree order is not string order: "a-b" sorts before "a/..." as a string, after "a"
    # as a tree; an empty folder, a link, an inline, a chunked and a multi-chunk file
    extra = {
        "a/x.txt": b"in a",
        "a-b": b"beside a",
        "a b/y": b"space",
        "big/blob.bin": random.Random(3).randbytes(700_000),
        "mid.bin": random.Random(4).randbytes(5_000),
    }
    for rel, data in extra.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "empty" / "deeper").mkdir(parents=True)
    os.symlink("../mid.bin", root / "a" / "link")
    files.update(extra)
    info = m.commit("bulk")
    assert info is not None and streamed == [1]
    assert info.seq == 1 and m.base_seq == 1  # nobody else committed: the base moved
    assert _volume_files(vol) == files
    fresh = Volume.from_name("s", store=store)
    kinds = {e.path: e.type.name for e in fresh.listdir("/", recursive=True)}
    assert kinds["empty/deeper"] == "DIRECTORY" and kinds["a/link"] == "SYMLINK"
    assert fresh._repo.verify().ok
    # every path has its row: the mount is clean, and a second commit finds nothing
    st = m.status()
    assert st.clean and not st.behind, st
    assert m.commit() is None
    # an edit of a streamed file is an ordinary commit (the paths are known now)
    (root / "a" / "x.txt").write_bytes(b"edited")
    assert m.commit() is not None and streamed == [1]
    assert _volume_files(vol)["a/x.txt"] == b"edited"
    m.unmount()
    # another mount materializes exactly that
    m2 = Volume.from_name("s", store=store).mount(tmp_path / "mnt2", background=False)
    files["a/x.txt"] = b"edited"
    got = {
        str(p.relative_to(m2.path)): p.read_bytes()
        for p in m2.path.rglob("*")
        if p.is_file() and not p.is_symlink()
    }
    assert got == files
    m2.unmount()


def test_streamed_commit_keeps_other_writers_files(
    store: Store, tmp_path: Path, streamed: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    vol = Volume.from_name("o", store=store, create_if_missing=True)
    m = vol.mount(tmp_path / "mnt", background=False, settle=0.0)
    files = _fill(m.path, 300)
    other = Volume.from_name("o", store=store)
    real = Repository.commit_stream

    def another_writer_first(self, *a, **kw):  # type: ignore[no-untyped-def]
        # while our commit is in flight, another process's handle commits: into the
        # same new folder as ours, and elsewhere
        with other.batch_upload() as b:
            b.put_file(io.BytesIO(b"theirs"), "t000/s0/theirs.txt")
            b.put_file(io.BytesIO(b"elsewhere"), "z/theirs.txt")
        return real(self, *a, **kw)

    monkeypatch.setattr(Repository, "commit_stream", another_writer_first)
    info = m.commit()
    assert info is not None and streamed == [1] and info.seq == 2
    want = {**files, "t000/s0/theirs.txt": b"theirs", "z/theirs.txt": b"elsewhere"}
    assert _volume_files(vol) == want
    # the folder does not reflect commit 2 alone: the base stays, a reload brings theirs
    assert m.base_seq == 0
    monkeypatch.setattr(Repository, "commit_stream", real)
    m.reload()
    assert (m.path / "z" / "theirs.txt").read_bytes() == b"elsewhere"
    assert (m.path / "t000" / "s0" / "theirs.txt").read_bytes() == b"theirs"
    assert m.status().clean and m.base_seq == 2
    m.unmount()


def test_streamed_commit_leaves_out_what_changed_while_read(
    local_store: Store, tmp_path: Path, streamed: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    vol = Volume.from_name("d", store=local_store, create_if_missing=True)
    m = vol.mount(tmp_path / "mnt", background=False, settle=0.0, settle_max_wait=0.0)
    files = _fill(m.path, 300)
    db, wal = m.path / "t000" / "s1" / "app.db", m.path / "t000" / "s1" / "app.db-wal"
    db.write_bytes(b"db v1")
    wal.write_bytes(b"wal v1")
    (m.path / "late").mkdir()
    (m.path / "late" / "only.txt").write_bytes(b"only v1")
    real = quiet.Gate.confirm

    def write_before_confirm(self):  # type: ignore[no-untyped-def]
        # after every file was read, before the commit is confirmed: the database's log
        # and the only file of a folder change on disk (a real write, at that moment)
        wal.write_bytes(b"wal v2!")
        (m.path / "late" / "only.txt").write_bytes(b"only v2!")
        return real(self)

    monkeypatch.setattr(quiet.Gate, "confirm", write_before_confirm)
    with pytest.warns(UserWarning, match="left for a later commit"):
        info = m.commit()
    assert info is not None and streamed == [1]
    got = _volume_files(vol)
    # the group (database and its log) waits whole; the rest went
    assert got == files
    assert m._index.row("t000/s1/app.db") is None and m._index.row("late/only.txt") is None
    st = m.status()
    assert {"t000/s1/app.db", "t000/s1/app.db-wal", "late/only.txt"} <= set(st.added)
    monkeypatch.setattr(quiet.Gate, "confirm", real)
    assert m.commit() is not None
    got = _volume_files(vol)
    assert got["t000/s1/app.db-wal"] == b"wal v2!" and got["late/only.txt"] == b"only v2!"
    assert got["t000/s1/app.db"] == b"db v1"
    assert m.status().clean
    m.unmount()


class _SegmentSeen(WrappedStore):
    """Notes, in ``order``, when an index segment's PUT arrives."""

    def __init__(self, inner: Store, order: list[str]) -> None:
        super().__init__(inner)
        self.order = order
        self.arrived = threading.Event()

    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        if "/index/" in key:
            self.order.append("segment")
            self.arrived.set()
        return super().put(key, data)


def test_a_streamed_commits_last_round_trips_overlap_its_final_check(
    local_store: Store, tmp_path: Path, streamed: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # After the last file is read, a streamed commit checks every file once more. Its
    # index segment is on its way before that check starts, and its look at whether the
    # volume still exists runs beside it: here that look waits until the check has
    # begun, which it could never do if it ran first on the same thread.
    # (Checked by order alone: the check waits until the segment's PUT has arrived, which
    # it would wait for in vain if the segment were sent only after the check.)
    order: list[str] = []
    seen = _SegmentSeen(local_store, order)
    vol = Volume.from_name("r", store=seen, create_if_missing=True)
    m = vol.mount(tmp_path / "mnt", background=False, settle=0.0)
    files = _fill(m.path, 300, size=2000)  # beyond inlining: their chunks go in packs
    checking = threading.Event()
    real_confirm, real_alive = quiet.Gate.confirm, Volume._check_alive

    def confirm(self):  # type: ignore[no-untyped-def]
        assert seen.arrived.wait(30), "the index segment was not on its way before the check"
        order.append("check")
        checking.set()
        return real_confirm(self)

    def check_alive(self, writer=None):  # type: ignore[no-untyped-def]
        if writer is not None:  # the commit's last look, not a read's
            assert checking.wait(30), "the volume was looked up before the check began"
            order.append("alive")
        return real_alive(self, writer)

    monkeypatch.setattr(quiet.Gate, "confirm", confirm)
    monkeypatch.setattr(Volume, "_check_alive", check_alive)
    info = m.commit()
    assert info is not None and streamed == [1]
    assert order == ["segment", "check", "alive"], order
    assert _volume_files(vol) == files
    m.unmount()


class _FailLogWrite(WrappedStore):
    """Once armed, refuses the next write of a log record (before it reaches the store):
    a commit that fails at its last step, after every pack and tree node landed."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.armed = False
        self.failed = 0

    def put_if_absent(self, key: str, data: bytes | bytearray | memoryview) -> bool:
        if self.armed and "/log/" in key:
            self.armed = False
            self.failed += 1
            raise StoreError(f"injected: cannot write {key}")
        return super().put_if_absent(key, data)


def test_failed_streamed_commit_publishes_nothing_and_records_nothing(
    local_store: Store, tmp_path: Path, streamed: list[int]
) -> None:
    Volume.lookup("f", store=local_store, create_if_missing=True)
    wrapped = _FailLogWrite(local_store)
    vol = Volume.from_name("f", store=wrapped)
    m = vol.mount(tmp_path / "mnt", background=False, settle=0.0)
    files = _fill(m.path, 300)
    wrapped.armed = True
    with pytest.raises(StoreError, match="injected"):
        m.commit()
    assert wrapped.failed == 1
    assert Volume.from_name("f", store=local_store)._repo.head().seq == 0
    assert m._index.count() == 0  # the rows went back with the transaction
    assert m.base_seq == 0
    info = m.commit()  # the journal still knows what to look at
    assert info is not None and info.seq == 1 and streamed == [1, 1]
    assert _volume_files(vol) == files and m.status().clean
    m.unmount()


class _FailUpload(WrappedStore):
    """Once armed, refuses the next write of a key containing ``part``: a tree node or a
    pack (these go up on the upload threads while a streamed commit reads on), or the
    log record (the last step, after every chunk and node landed)."""

    def __init__(self, inner: Store, part: str) -> None:
        super().__init__(inner)
        self.part = part
        self.armed = False
        self.failed = 0

    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        if self.armed and self.part in key:
            self.armed = False
            self.failed += 1
            raise StoreError(f"injected: cannot write {key}")
        super().put(key, data)

    def put_if_absent(self, key: str, data: bytes | bytearray | memoryview) -> bool:
        if self.armed and self.part in key:
            self.armed = False
            self.failed += 1
            raise StoreError(f"injected: cannot write {key}")
        return super().put_if_absent(key, data)


@pytest.mark.parametrize("part", ["/trees/", "/packs/", "/log/"])
def test_failed_upload_fails_the_streamed_commit_and_the_retry_is_whole(
    local_store: Store,
    tmp_path: Path,
    streamed: list[int],
    part: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Tree nodes and packs are sent in the background while files are still read; the
    # commit waits for all of them before its record, and a failed one fails it whole.
    # The retry must not deduplicate against the failed commit's chunks unless its own
    # record lists where they are (it once did after a failed record write: every
    # chunk of the retried commit was then missing from the volume's index).
    # nodes go up in small batches, so a failed one is met while files are still read
    monkeypatch.setattr(mount_mod, "STREAM_TREE_BYTES", 2 << 10)
    batches: list[int] = []
    real_start = repo_mod._NodeUploads.start

    def start(self):  # type: ignore[no-untyped-def]
        batches.append(len(self._repo.trees.pending))
        return real_start(self)

    monkeypatch.setattr(repo_mod._NodeUploads, "start", start)
    Volume.lookup("u", store=local_store, create_if_missing=True)
    wrapped = _FailUpload(local_store, part)
    vol = Volume.from_name("u", store=wrapped)
    m = vol.mount(tmp_path / "mnt", background=False, settle=0.0)
    files = _fill(m.path, 3000, size=600, per_folder=100)  # chunks, and many tree nodes
    wrapped.armed = True
    with pytest.raises(StoreError, match="injected"):
        m.commit()
    assert wrapped.failed == 1
    # nodes went up in batches while files were read; a failed one is met at the next
    # batch (the second), and the commit stops there
    assert len(batches) == 2 if part == "/trees/" else len(batches) > 3
    assert Volume.from_name("u", store=local_store)._repo.head().seq == 0
    assert m._index.count() == 0 and m.base_seq == 0
    info = m.commit()  # everything is sent again; nothing counts as stored that is not
    assert info is not None and info.seq == 1 and streamed == [1, 1]
    assert _volume_files(vol) == files and m.status().clean
    assert Volume.from_name("u", store=local_store)._repo.verify().ok
    m.unmount()


KILLED_CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from jupyter_volume import Volume
    from jupyter_volume import mount as mount_mod
    from jupyter_volume.store import open_store
    from jupyter_volume.testing.wrappers import KillAfterStore

    mount_mod.STREAM_AT = 1

    class DieOnTrees(KillAfterStore):
        # the process ends right after the first tree node lands: mid-commit
        def _record(self, kind, key):
            if kind == "put" and "/trees/" in key and self.k is None:
                self.k = self.ops + 1
            super()._record(kind, key)

    Volume.lookup("k", store=sys.argv[1], create_if_missing=True)
    store = DieOnTrees(open_store(sys.argv[1]), None)
    vol = Volume.from_name("k", store=store)
    m = vol.mount(sys.argv[2], background=False, settle=0.0)
    for i in range(400):
        p = Path(sys.argv[2]) / f"d{i // 100}" / f"f{i:04d}.txt"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"file %d" % i)
    m.commit()
    print("not killed")
    """
)


def test_crash_mid_streamed_commit_publishes_nothing(
    local_store: Store, tmp_path: Path, streamed: list[int]
) -> None:
    mnt = tmp_path / "mnt"
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_CHILD, local_store.url, str(mnt)],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ,  # the same state and cache folders as this test (private_dirs)
    )
    assert "KillAfterStore: exit after" in proc.stderr, proc.stderr[-2000:]
    vol = Volume.from_name("k", store=local_store.url)
    assert vol._repo.head().seq == 0  # nothing was published
    # mounting the folder again commits its files: no row claims them as synced
    m = vol.mount(mnt, background=False, settle=0.0)
    assert m.base_seq >= 1
    got = _volume_files(vol)
    assert len(got) == 400 and got["d3/f0399.txt"] == b"file 399"
    assert m.status().clean
    m.unmount()


def _commit_peak(
    store: Store | str, tmp_path: Path, n: int, threshold: int, size: int = 100
) -> int:
    """tracemalloc peak of what a mount's commit of ``n`` new files allocates after its
    scan and quiet gate (those hold a few hundred bytes per path whichever way the
    commit goes)."""
    vol = Volume.from_name(f"p{n}-{threshold}", store=store, create_if_missing=True)
    m = vol.mount(tmp_path / f"mnt-{n}-{threshold}", background=False, settle=0.0)
    _fill(m.path, n, size=size, per_folder=1000)
    start: list[int] = []
    real = mount_mod.Mount._stream_tops

    def mark(self, ch):  # type: ignore[no-untyped-def]
        start.append(tracemalloc.get_traced_memory()[0])
        tracemalloc.reset_peak()
        return real(self, ch)

    mount_mod.Mount._stream_tops = mark  # type: ignore[method-assign]
    mount_mod.STREAM_AT, old = threshold, mount_mod.STREAM_AT
    # small upload batches of tree nodes, so that both sizes reach the bound they set
    mount_mod.STREAM_TREE_BYTES, old_tree = 32 << 10, mount_mod.STREAM_TREE_BYTES
    gc.collect()
    tracemalloc.start()
    try:
        assert m.commit() is not None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        mount_mod.Mount._stream_tops = real  # type: ignore[method-assign]
        mount_mod.STREAM_AT = old
        mount_mod.STREAM_TREE_BYTES = old_tree
    assert m._index.count() == n + -(-n // 1000) + -(-n // 8000)  # a row per file and folder
    m.unmount()
    return peak - start[0]


MEMORY_CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from test_throughput_streaming import _commit_peak
    store, tmp = sys.argv[2], Path(sys.argv[3])
    _commit_peak(store, tmp, 200, 1)  # warm up imports and pools
    print(json.dumps({
        "s_small": _commit_peak(store, tmp, 3_000, 1),
        "s_large": _commit_peak(store, tmp, 30_000, 1),
        "p_large": _commit_peak(store, tmp, 30_000, 10**9),
    }))
    """
)


def test_mount_initial_commit_memory_does_not_grow_with_file_count(
    local_store: Store, tmp_path: Path
) -> None:
    # In a fresh interpreter: tracemalloc counts every thread's allocations, and in a
    # long test run this process may hold threads and garbage of earlier tests that
    # allocate or free during the measurement (the 30,000-file commit, ten times
    # longer, caught four times as much of that as the 3,000-file one).
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            MEMORY_CHILD,
            str(Path(__file__).parent),
            local_store.url,
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    s_small, s_large, p_large = got["s_small"], got["s_large"], got["p_large"]
    # Ten times the files, and the peak grows by less than 100 bytes per added file:
    # entries (about 200 bytes each), rows and tree nodes are not held; what still grows
    # is the sort of the paths into tree order (a key string per path while it sorts,
    # about 60 bytes). (Files of more than 512 bytes add their chunks' index entries.)
    assert (s_large - s_small) / 27_000 < 100, (s_small, s_large)
    # The plain path holds every entry and row at once: the measurement tells them apart.
    assert p_large > 3 * s_large, (p_large, s_large)
