"""The initial commit of a huge tree streams: memory does not grow with the file count.

``Repository.commit_stream`` takes files in tree order and builds the tree bottom up
(:class:`TreeBuilder`), uploading nodes in batches. Bounds here are structural, never
timings: the tracemalloc peak of committing 50,000 files must stay close to that of
5,000 files, while the plain ``commit(changes)`` path grows with the count (which
shows the measurement can tell the two apart).
"""

from __future__ import annotations

import gc
import random
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path

from jupyter_volume.repository import Repository
from jupyter_volume.repository.tree import DIR, FILE, LINK, Entry, TreeBuilder, tree_order_key
from jupyter_volume.store import Store

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


def test_out_of_order_items_are_refused(local_store: Store, tmp_path: Path) -> None:
    repo = _repo(local_store, tmp_path)
    builder = TreeBuilder(repo.trees)
    builder.add("b/x", Entry("", FILE, inline=b"1", size=1))
    try:
        builder.add("a", Entry("", FILE, inline=b"1", size=1))
    except ValueError as e:
        assert "tree order" in str(e)
    else:
        raise AssertionError("an item out of tree order was accepted")


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
    s_small, s_large = _peak(lambda: stream(small)), _peak(lambda: stream(large))
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
