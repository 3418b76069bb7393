"""A model-based (stateful) test of mounts: two mounts A and B of one volume, in two
folders, against a model of what each folder holds and what the volume's head holds.

The model follows README ("Semantics worth knowing") and docs/architecture.md:

* ``commit()`` publishes the paths whose local state differs from what the mount last
  synced (written, deleted, renamed, chmod-ed, new or removed folders) onto the newest
  head: every path it did not change keeps the other writer's version (no lost update),
  the paths it changed take its version (the later commit wins, whole). A folder the
  change set deletes is removed only when nothing else remains in it
  (``Trees.apply``), so files another writer added there survive. No change, no commit.
* ``reload()`` commits the mount's local changes first, then brings the folder to the
  head: afterwards the folder equals the head exactly.
* Every commit stays readable: ``listdir``/``read_file`` with ``at=SEQ`` give exactly
  what the head was after that commit; ``restore`` brings a file (or the whole tree)
  back as a new commit.

Two mounts of one volume in one process are refused (``AlreadyExistsError``: one mount
per store URL and volume), so B opens the same store under another URL (as the other
tests do for "a process of its own": ``url + "#b"``), which makes A and B two writers
as if on two machines.

To keep "changed" well defined (a mount compares size, mtime, mode and bytes with what
it synced), the machine never writes back exactly what the mount last synced at that
path (a rewrite of the same bytes with a new mtime is a change by the mount's rules,
not by the model's).
"""

from __future__ import annotations

import itertools
import os
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from modeltest import (
    DIR,
    StoreAs,
    apply,
    assert_same,
    changes_of,
    model_settings,
    parents,
    read,
    under,
)

from jupyter_volume import Volume
from jupyter_volume.results import FileEntryType

pytestmark = pytest.mark.slow  # long in all: started first (conftest)

# -- the model's vocabulary -------------------------------------------------------------------


# File names and folder names are disjoint, so no path is a file in one writer's view and
# a folder in the other's (the docs say nothing about that case).
FILES = [
    "a.txt",
    "b",
    "ü.bin",  # non-ASCII
    "日本語.txt",  # non-ASCII, multi-byte
    "sub/c.txt",
    "sub/ä",
    "sub/deep/d.bin",
    "other/e",
]
FOLDERS = ["sub", "sub/deep", "other", "empty", "empty2/x"]

# empty; tiny (<= 512 B: stored inline in the tree node); the inline boundary; a few KiB;
# a few hundred KiB (several content-defined chunks of 32-512 KiB, 128 KiB on average)
SIZES = [0, 1, 17, 511, 512, 513, 3000, 8192, 150_000, 400_000, 700_000]

Tree = dict[str, Any]  # path -> DIR | (bytes, mode)


def content(seed: int, size: int) -> bytes:
    return random.Random(seed * 1_000_003 + size).randbytes(size)


def scan(root: Path) -> Tree:
    """What a folder holds: every folder and file (bytes and permission bits)."""
    out: Tree = {}
    for d, dirs, files in os.walk(root):
        rel = os.path.relpath(d, root)
        pre = "" if rel == "." else rel + "/"
        for n in dirs:
            out[pre + n] = DIR
        for n in files:
            p = Path(d) / n
            out[pre + n] = (p.read_bytes(), os.stat(p).st_mode & 0o777)
    return out


def api_tree(vol: Volume, at: int | None = None) -> Tree:
    """The volume's tree at ``at`` (the head if None) as read through the API."""
    out: Tree = {}
    for e in vol.listdir("/", recursive=True, at=at):
        if e.type == FileEntryType.DIRECTORY:
            out[e.path] = DIR
        else:
            assert e.type == FileEntryType.FILE, e
            data = read(vol, e.path, at)
            assert len(data) == e.size, (e, len(data))
            out[e.path] = (data, None)  # the mode is not listed; compared without it
    return out


def without_modes(tree: Tree) -> Tree:
    return {p: v if v == DIR else (v[0], None) for p, v in tree.items()}


# -- the state machine ------------------------------------------------------------------------

MOUNTS = st.sampled_from("AB")
INDEX = st.integers(0, 10_000)


class TwoMounts(RuleBasedStateMachine):
    store: Any = None
    tmp: Path = Path()
    counter = itertools.count()

    def __init__(self) -> None:
        super().__init__()
        n = next(self.counter)
        self.name = f"model-{n}"
        self.vol = Volume.from_name(self.name, create_if_missing=True, store=self.store)
        vol_b = Volume.from_name(self.name, store=StoreAs(self.store))
        self.dirs = {"A": self.tmp / f"ex{n}" / "A", "B": self.tmp / f"ex{n}" / "B"}
        self.mounts: dict[str, Any] = {}
        self.mounts["A"] = self.vol.mount(self.dirs["A"], background=False)
        self.mounts["B"] = vol_b.mount(self.dirs["B"], background=False)
        self.head: Tree = {}
        self.local: dict[str, Tree] = {"A": {}, "B": {}}
        self.synced: dict[str, Tree] = {"A": {}, "B": {}}
        self.seq = self._head_seq()
        self.snapshots: dict[int, Tree] = {self.seq: {}}

    # -- helpers ---------------------------------------------------------------------------------
    def _head_seq(self) -> int:
        return self.vol.history(limit=1)[0].seq

    def _files(self, m: str) -> list[str]:
        return sorted(p for p, v in self.local[m].items() if v != DIR)

    def _folders(self, m: str) -> list[str]:
        return sorted(p for p, v in self.local[m].items() if v == DIR)

    def _pick(self, items: list[str], i: int) -> str | None:
        return items[i % len(items)] if items else None

    def _allowed(self, m: str, path: str, value: Any) -> bool:
        """False for a write that would put back exactly what the mount synced there (the
        mount sees a new mtime; the model would see no change)."""
        return self.synced[m].get(path) != value

    def _ensure_parents(self, m: str, path: str) -> None:
        for q in parents(path):
            self.local[m][q] = DIR
        (self.dirs[m] / path).parent.mkdir(parents=True, exist_ok=True)

    def _record(self, expect_commit: bool, what: str) -> None:
        """After something that may have committed: check the head's seq moved as the model
        says, and remember the head as that commit's tree."""
        seq = self._head_seq()
        if not expect_commit:
            assert seq == self.seq, f"{what}: a commit ({seq}) with no change in the model"
        if seq != self.seq:
            assert seq > self.seq
            self.seq = seq
            self.snapshots[seq] = dict(self.head)

    # -- local edits -----------------------------------------------------------------------------
    @rule(m=MOUNTS, name=st.sampled_from(FILES), size=st.sampled_from(SIZES), seed=INDEX)
    def write(self, m: str, name: str, size: int, seed: int) -> None:
        data = content(seed, size)
        old = self.local[m].get(name)
        mode = old[1] if old is not None else 0o644
        if not self._allowed(m, name, (data, mode)):
            return
        self._ensure_parents(m, name)
        p = self.dirs[m] / name
        with open(p, "wb") as f:
            f.write(data)
        if old is None:
            os.chmod(p, 0o644)
        self.local[m][name] = (data, mode)

    @rule(m=MOUNTS, i=INDEX, size=st.sampled_from(SIZES), seed=INDEX)
    def overwrite(self, m: str, i: int, size: int, seed: int) -> None:
        """New contents for a file the folder has (the same file changed in A and B)."""
        p = self._pick(self._files(m), i)
        if p is not None:
            self.write(m, p, size, seed)

    @rule(m=MOUNTS, i=INDEX, seed=INDEX, where=st.floats(0, 1), grow=st.booleans())
    def edit_big(self, m: str, i: int, seed: int, where: float, grow: bool) -> None:
        """An in-place edit of a big file (a few bytes in the middle, or an append)."""
        big = [p for p in self._files(m) if len(self.local[m][p][0]) >= 100_000]
        p = self._pick(big, i)
        if p is None:
            return
        data, mode = self.local[m][p]
        patch = content(seed, 100)
        if grow:
            new = data + patch
        else:
            at = int(where * (len(data) - 100))
            new = data[:at] + patch + data[at + 100 :]
        if new == data or not self._allowed(m, p, (new, mode)):
            return
        with open(self.dirs[m] / p, "r+b") as f:
            if grow:
                f.seek(0, 2)
                f.write(patch)
            else:
                f.seek(at)
                f.write(patch)
        self.local[m][p] = (new, mode)

    @rule(m=MOUNTS, i=INDEX)
    def delete(self, m: str, i: int) -> None:
        p = self._pick(self._files(m), i)
        if p is None:
            return
        os.unlink(self.dirs[m] / p)
        del self.local[m][p]

    @rule(m=MOUNTS, i=INDEX, dst=st.sampled_from(FILES))
    def rename(self, m: str, i: int, dst: str) -> None:
        src = self._pick(self._files(m), i)
        if src is None or src == dst or not self._allowed(m, dst, self.local[m][src]):
            return
        self._ensure_parents(m, dst)
        os.rename(self.dirs[m] / src, self.dirs[m] / dst)
        self.local[m][dst] = self.local[m].pop(src)

    @rule(m=MOUNTS, i=INDEX, dst=st.sampled_from(FILES))
    def copy(self, m: str, i: int, dst: str) -> None:
        src = self._pick(self._files(m), i)
        if src is None or src == dst or not self._allowed(m, dst, self.local[m][src]):
            return
        self._ensure_parents(m, dst)
        shutil.copyfile(self.dirs[m] / src, self.dirs[m] / dst)
        os.chmod(self.dirs[m] / dst, self.local[m][src][1])
        self.local[m][dst] = self.local[m][src]

    @rule(m=MOUNTS, i=INDEX)
    def chmod(self, m: str, i: int) -> None:
        p = self._pick(self._files(m), i)
        if p is None:
            return
        data, mode = self.local[m][p]
        new = (data, 0o755 if mode == 0o644 else 0o644)
        if not self._allowed(m, p, new):
            return
        os.chmod(self.dirs[m] / p, new[1])
        self.local[m][p] = new

    @rule(m=MOUNTS, folder=st.sampled_from(FOLDERS))
    def mkdir(self, m: str, folder: str) -> None:
        if folder in self.local[m]:
            return
        (self.dirs[m] / folder).mkdir(parents=True)
        for q in [*parents(folder), folder]:
            self.local[m][q] = DIR

    @rule(m=MOUNTS, i=INDEX)
    def rmdir(self, m: str, i: int) -> None:
        empty = [d for d in self._folders(m) if not any(under(q, d) for q in self.local[m])]
        d = self._pick(empty, i)
        if d is None:
            return
        os.rmdir(self.dirs[m] / d)
        del self.local[m][d]

    @rule(m=MOUNTS, i=INDEX, dst=st.sampled_from(FOLDERS))
    def rename_folder(self, m: str, i: int, dst: str) -> None:
        """``mv src dst`` of a whole folder (to a name that does not exist yet)."""
        src = self._pick(self._folders(m), i)
        if src is None or dst in self.local[m] or dst == src or under(dst, src):
            return
        moved = {
            dst + q[len(src) :]: v for q, v in self.local[m].items() if q == src or under(q, src)
        }
        if any(not self._allowed(m, q, v) for q, v in moved.items() if v != DIR):
            return
        self._ensure_parents(m, dst)
        os.rename(self.dirs[m] / src, self.dirs[m] / dst)
        for q in [q for q in self.local[m] if q == src or under(q, src)]:
            del self.local[m][q]
        self.local[m].update(moved)

    # -- commit and reload -------------------------------------------------------------------------
    def _commit_model(self, m: str) -> bool:
        ch = changes_of(self.local[m], self.synced[m])
        self.head = apply(self.head, ch)
        for p, v in ch.items():
            if v is None:
                self.synced[m].pop(p, None)
            else:
                self.synced[m][p] = v
        return bool(ch)

    @rule(m=MOUNTS)
    def commit(self, m: str) -> None:
        changed = self._commit_model(m)
        info = self.mounts[m].commit()
        if not changed:
            assert info is None, f"commit of {m} with nothing changed made commit {info}"
        self._record(changed, f"commit of {m}")
        self.check_head_quick()

    @rule(m=MOUNTS)
    def reload(self, m: str) -> None:
        changed = self._commit_model(m)  # a reload commits local changes first
        self.mounts[m].reload()
        self._record(changed, f"reload of {m}")
        self.local[m] = dict(self.head)
        self.synced[m] = dict(self.head)

    # -- the API: history, restore, reads without a mount ----------------------------------------
    @precondition(lambda self: len(self.snapshots) > 1)
    @rule(i=INDEX, j=INDEX)
    def restore_file(self, i: int, j: int) -> None:
        seqs = sorted(self.snapshots)
        seq = seqs[i % len(seqs)]
        then = self.snapshots[seq]
        paths = sorted(
            {p for p, v in then.items() if v != DIR} | {p for p, v in self.head.items() if v != DIR}
        )
        p = self._pick(paths, j)
        if p is None:
            return
        info = self.vol.restore(seq, p)
        # (a restore compares times too, which the model does not know: a version with the
        # same bytes and mode may still be brought back as a commit)
        self.head = apply(self.head, {p: then.get(p)})
        self._record(info is not None, f"restore of {p} from {seq}")

    @precondition(lambda self: len(self.snapshots) > 1)
    @rule(i=INDEX)
    def restore_all(self, i: int) -> None:
        seqs = sorted(self.snapshots)
        seq = seqs[i % len(seqs)]
        info = self.vol.restore(seq)
        self.head = dict(self.snapshots[seq])
        self._record(info is not None, f"restore to {seq}")

    @rule()
    def check_head(self) -> None:
        """Read the newest commit through the API (no mount): listing and every file."""
        assert self._head_seq() == self.seq
        assert_same(api_tree(self.vol), without_modes(self.head), "the head read through the API")

    def check_head_quick(self) -> None:
        """The head's listing (paths, kinds and sizes) through the API."""
        listed = {
            e.path: "DIR" if e.type == FileEntryType.DIRECTORY else e.size
            for e in self.vol.listdir("/", recursive=True)
        }
        expected = {p: "DIR" if v == DIR else len(v[0]) for p, v in self.head.items()}
        assert listed == expected, f"listing of the head: {listed} != {expected}"

    @rule(i=INDEX, start=st.floats(0, 1), length=st.integers(0, 300_000))
    def read_range(self, i: int, start: float, length: int) -> None:
        """A ranged read (the seekable reader) of a file of the head."""
        files = sorted(p for p, v in self.head.items() if v != DIR)
        p = self._pick(files, i)
        if p is None:
            return
        data = self.head[p][0]
        off = int(start * len(data))
        with self.vol.open(p) as f:
            f.seek(off)
            got = f.read(length)
        assert got == data[off : off + length], f"range {off}+{length} of {p}"

    @precondition(lambda self: len(self.snapshots) > 1)
    @rule(i=INDEX, j=INDEX)
    def check_history(self, i: int, j: int) -> None:
        """Every commit is kept: an older commit reads as the head was then; history lists
        it; diff names what changed between two commits."""
        seqs = sorted(self.snapshots)
        a, b = seqs[i % len(seqs)], seqs[j % len(seqs)]
        listed = {c.seq for c in self.vol.history()}
        assert set(seqs) <= listed, f"history {sorted(listed)} lacks some of {seqs}"
        assert max(listed) == self.seq
        assert_same(
            api_tree(self.vol, at=a), without_modes(self.snapshots[a]), f"commit {a} read with at="
        )
        if a < b:
            old, new = self.snapshots[a], self.snapshots[b]
            got = {(d.path, d.change) for d in self.vol.diff(a, b) if d.type == FileEntryType.FILE}
            for p in set(old) | set(new):
                o, n = old.get(p), new.get(p)
                if o == n or DIR in (o, n):
                    continue
                change = "added" if o is None else "deleted" if n is None else "modified"
                assert (p, change) in got, f"diff({a}, {b}) lacks {p} {change}: {sorted(got)}"

    # -- invariants --------------------------------------------------------------------------------
    @invariant()
    def folders_match_the_model(self) -> None:
        for m in "AB":
            assert_same(scan(self.dirs[m]), self.local[m], f"folder {m}")

    def teardown(self) -> None:
        try:
            if self.mounts:
                # both commit, both reload: each folder holds the head, the head holds
                # every writer's changes (the model merged them path by path)
                for m in ("A", "B", "A", "B"):
                    self.reload(m)
                    self.folders_match_the_model()
                self.check_head()
                for m in "AB":
                    assert_same(scan(self.dirs[m]), self.head, f"folder {m} after both reloaded")
        finally:
            for mount in self.mounts.values():
                mount.unmount()


def run(store: Any, tmp_path: Path, examples: int, steps: int) -> None:
    TwoMounts.store = store
    TwoMounts.tmp = tmp_path
    run_state_machine_as_test(TwoMounts, settings=model_settings(examples, steps))


def test_two_mounts_model_local(local_store: Any, tmp_path: Path) -> None:
    run(local_store, tmp_path, examples=300, steps=40)


def test_two_mounts_model_s3(s3_store: Any, tmp_path: Path) -> None:
    run(s3_store, tmp_path, examples=60, steps=30)


# -- what the machine found, reduced to one case each ----------------------------------------


def two_mounts(store: Any, tmp_path: Path, name: str) -> tuple[Volume, Any, Any]:
    vol = Volume.from_name(name, create_if_missing=True, store=store)
    return (
        vol,
        vol.mount(tmp_path / "A", background=False),
        Volume.from_name(name, store=StoreAs(store)).mount(tmp_path / "B", background=False),
    )


def test_a_deletion_below_a_folder_another_writer_deleted_does_not_bring_it_back(
    local_store: Any, tmp_path: Path
) -> None:
    """B removes folder ``sub`` (``rm -rf sub``) and commits; A, not yet reloaded, deletes
    ``sub/x`` and commits. A never changed ``sub``, so it must keep B's version (gone);
    instead A's commit brings ``sub`` back as an empty folder, and B's reload re-creates
    it in B's folder."""
    vol, a, b = two_mounts(local_store, tmp_path, "rmdir")
    try:
        (tmp_path / "A/sub").mkdir()
        (tmp_path / "A/sub/x").write_bytes(b"x")
        (tmp_path / "A/sub/y").write_bytes(b"y")
        (tmp_path / "A/keep").write_bytes(b"k")
        a.commit()
        b.reload()
        shutil.rmtree(tmp_path / "B/sub")
        b.commit()
        assert sorted(e.path for e in vol.listdir("/", recursive=True)) == ["keep"]
        os.unlink(tmp_path / "A/sub/x")
        a.commit()
        assert sorted(e.path for e in vol.listdir("/", recursive=True)) == ["keep"]
        b.reload()
        assert not (tmp_path / "B/sub").exists()
    finally:
        a.unmount()
        b.unmount()


def test_a_deletion_below_a_folder_another_writer_replaced_by_a_file_keeps_the_file(
    local_store: Any, tmp_path: Path
) -> None:
    """B replaces folder ``sub`` by a file ``sub`` and commits; A, not yet reloaded,
    deletes ``sub/x`` and commits. A changed nothing at ``sub`` itself: B's file stays
    (it used to be replaced by an empty folder, B's bytes left only in history)."""
    vol, a, b = two_mounts(local_store, tmp_path, "file-over-folder")
    try:
        (tmp_path / "A/sub").mkdir()
        (tmp_path / "A/sub/x").write_bytes(b"x")
        a.commit()
        b.reload()
        shutil.rmtree(tmp_path / "B/sub")
        (tmp_path / "B/sub").write_bytes(b"now a file")
        b.commit()
        os.unlink(tmp_path / "A/sub/x")
        info = a.commit()
        assert read(vol, "sub") == b"now a file"
        assert info is None or info.stats.deleted == 0, info
        b.reload()
        assert (tmp_path / "B/sub").read_bytes() == b"now a file"
    finally:
        a.unmount()
        b.unmount()
