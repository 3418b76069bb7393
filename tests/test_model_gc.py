"""A model-based (stateful) test of history, retention and garbage collection: one volume
per example, two API clients (``A``, and ``B`` over the same store under another URL: a
second client, as if in a process of its own) and a mount (``M``, a third client),
against a model that keeps the tree (path -> bytes) after every commit.

The model follows README ("History retention and garbage collection", "Use it from
Python") and docs/architecture.md ("Garbage collection", the commit protocol):

* every commit (``batch_upload``, ``remove_file``, ``move``, ``copy_files``,
  ``restore`` of a file or of the whole tree, a mount's ``commit``/``reload``) is kept
  until a gc expires it, and reads back (``listdir``/``read_file`` with ``at=SEQ``)
  exactly as the head was right after it, byte for byte;
* a gc expires only commits its policy does not keep. What the machine holds it to is
  what the docs promise and no more: the newest commit, commit 0 and tagged commits
  always; with ``keep_last=N`` the data commits among the N newest records (whether the
  gc records count as "commits" there the docs leave open); with ``keep_within=W`` the
  data commits younger than W when the gc ended; with ``keep_hourly``/``keep_daily`` the
  newest data commit (the newest of the current hour/day); with no policy, or
  ``squash_auto_after`` alone (and no background commits), every data commit. A commit
  that lands while a gc runs is never expired by that gc;
* an expired commit is listed by ``history(include_expired=True)`` as expired, and
  ``listdir``/``read_file``/``diff``/``restore``/``tag`` at it raise NotFoundError (never
  wrong data); a commit once expired stays expired;
* every commit history does not call expired reads back exactly: after every gc the
  machine reads them all through a *cold* client (a new URL: no tree node, index segment
  or chunk that this process already holds can hide a deletion on the store);
* ``gc(grace=0)`` only while nobody writes (README: "`grace=0` is for when nobody else
  is writing"); gc runs that race with a writer keep a grace period of an hour, so what
  a writer uploads is never an orphan yet: its commit must land and read back. Those
  races are: a gc while B has a ``batch_upload`` open (some of its chunks already in
  packs on the store, some deduplicated against data only expired commits used); and a
  commit of B inside A's gc, at each point of it (after its mark, after it listed packs
  and tree nodes, as it writes its record, as it deletes) through a store wrapper of A
  that runs B's commit once before a chosen operation;
* a mount whose base is an old commit while gc runs (and expires that commit) still
  commits and reloads, losing nothing.

Files are uploaded with a fixed mtime per (path, content), so putting back what an
expired commit had re-creates its exact tree nodes (the case tree nodes' two-step
deletion is for). Contents are built from a few shared segments, so chunks are shared
across files and commits and deduplication matters.

What the machine does not cover: a racing gc that deletes packs (that needs a grace
period to pass; the racing gcs here keep an hour, the sequential ones 0), and
background (``auto``) commits, so ``squash_auto_after`` only shows that it keeps the
other commits.

The tests at the end of the file are what the machine found, reduced to one case each:
a client whose known head was older than another client's gc could not upload or commit
(it loaded index objects that gc had deleted), and a mount commit that failed that way,
as it started, lost its changed files for every later commit.
"""

from __future__ import annotations

import io
import itertools
import os
import random
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    precondition,
    rule,
    run_state_machine_as_test,
)
from modeltest import StoreAs, api_files, assert_same, model_settings, parents, read, scan_files

from jupyter_volume import NotFoundError, Volume
from jupyter_volume.errors import StoreError
from jupyter_volume.results import FileEntryType
from jupyter_volume.testing.wrappers import WrappedStore

pytestmark = pytest.mark.slow  # long in all: started first (conftest)

HOUR = 3600.0

# -- contents -------------------------------------------------------------------------------

# Segments of 40-160 KiB (chunks are 32-512 KiB, 128 KiB on average): a "big" content is
# two of them back to back, so big contents share chunks with each other.
_SEGMENTS = [random.Random(1000 + i).randbytes(40_000 + 30_000 * i) for i in range(5)]


def content(cid: int) -> bytes:
    """Content number ``cid``: small (inline in the tree), one chunk, or two segments."""
    kind, k = divmod(cid, 10)
    if kind == 0:
        return random.Random(k).randbytes(40 + k)  # <= 512 B: inline
    if kind == 1:
        return random.Random(100 + k).randbytes(2000 + k)  # one small chunk
    a, b = divmod(k, 5)
    return _SEGMENTS[a % 5] + _SEGMENTS[b]


CONTENTS = st.integers(0, 39)
FILES = ["a.txt", "b.bin", "sub/c", "sub/d.bin", "deep/x/e", "deep/f"]
FOLDERS = {"sub", "deep", "deep/x"}
Tree = dict[str, bytes]  # files only: path -> bytes


def mtime_of(path: str, data: bytes) -> int:
    """A fixed mtime per (path, content): the same upload makes the same tree entry."""
    return (1_600_000_000 + zlib.crc32(path.encode() + data) % 1_000_000) * 10**9


def scan_dirs(root: Path) -> set[str]:
    out = set()
    for d, dirs, _files in os.walk(root):
        rel = os.path.relpath(d, root)
        out |= {n if rel == "." else f"{rel}/{n}" for n in dirs}
    return out


class HookStore(WrappedStore):
    """Client A's store: the same store under another URL, which runs ``hook`` once, just
    before the first operation of kind ``hook_kind`` on a key containing ``hook_key``."""

    def __init__(self, inner: Any, tag: str = "a") -> None:
        super().__init__(inner)
        self.url = f"{inner.url}#{tag}"
        self.hook: tuple[str, str, Callable[[], None]] | None = None

    def _fire(self, kind: str, key: str) -> None:
        h = self.hook
        if h is not None and h[0] == kind and h[1] in key:
            self.hook = None
            h[2]()

    def _do(self, kind: str, key: str, fn, *args):  # type: ignore[no-untyped-def]
        self._fire(kind, key)
        return super()._do(kind, key, fn, *args)

    def list(self, prefix: str = "", start_after: str | None = None) -> Any:
        self._fire("list", prefix)
        return iter(list(self.inner.list(prefix, start_after)))


# the points of a gc at which B commits (kind of A's store operation, part of its key)
HOOK_POINTS = [
    ("list", "/packs/"),  # marked, about to list packs
    ("list", "/trees/"),  # listed packs, about to list tree nodes
    ("put_if_absent", "/log/"),  # about to write its record
    ("delete", "/"),  # its record landed, about to delete
]

POLICIES = st.sampled_from(
    [
        {},
        {"keep_last": 1},
        {"keep_last": 2},
        {"keep_last": 4},
        {"keep_within": 0},
        {"keep_within": 1.5},
        {"keep_within": "1h"},
        {"keep_hourly": 1},
        {"keep_daily": 2},
        {"squash_auto_after": 0},
        {"keep_last": 1, "keep_within": 1.0},
        {"keep_last": 2, "keep_hourly": 1},
    ]
)


class GcModel(RuleBasedStateMachine):
    store: Any = None
    tmp: Path = Path()
    use_mount = True
    counter = itertools.count()

    def __init__(self) -> None:
        super().__init__()
        n = next(self.counter)
        self.n = n
        self.name = f"gc-{n}"
        self.hooked = HookStore(self.store)
        self.vols = {
            "A": Volume.from_name(self.name, create_if_missing=True, store=self.hooked),
            "B": Volume.from_name(self.name, store=StoreAs(self.store, "b")),
        }
        self.cold_n = itertools.count()
        self.head: Tree = {}
        self.seq = self._head_seq()
        self.snapshots: dict[int, Tree] = {self.seq: {}}
        self.kinds: dict[int, str] = {self.seq: "create"}
        self.times: dict[int, float] = {}
        self.expired: set[int] = set()
        self.tags: dict[str, int] = {}
        self.policy: dict[str, Any] = {}
        self.mount: Any = None
        self.mdir = self.tmp / f"m{n}"
        self.local: Tree = {}
        self.synced: Tree = {}
        self.synced_dirs: set[str] = set()
        if self.use_mount:
            self.vol_m = Volume.from_name(self.name, store=StoreAs(self.store, "m"))
            self.mount = self.vol_m.mount(self.mdir, background=False)

    # -- helpers -------------------------------------------------------------------------
    def _head_seq(self) -> int:
        return self.vols["A"].history(limit=1)[0].seq

    def cold(self) -> Volume:
        """A client that has read nothing yet (its own URL: its own caches)."""
        return Volume.from_name(self.name, store=StoreAs(self.store, f"cold{next(self.cold_n)}"))

    def alive(self) -> list[int]:
        return sorted(s for s in self.snapshots if s not in self.expired)

    def _files(self) -> list[str]:
        return sorted(self.head)

    def _folder_exists(self, folder: str) -> bool:
        return folder == "" or any(p.startswith(folder + "/") for p in self.head)

    def _record(self, expect: bool | None, what: str) -> None:
        """After an operation that may have committed (``expect``: it must, it must not,
        None: either): the head moved by one commit at most, whose tree is the model's."""
        seq = self._head_seq()
        if expect is True:
            assert seq == self.seq + 1, f"{what}: head {seq}, expected one commit after {self.seq}"
        elif expect is False:
            assert seq == self.seq, f"{what}: a commit ({seq}) where the model has no change"
        else:
            assert seq in (self.seq, self.seq + 1), f"{what}: head {seq} after {self.seq}"
        if seq != self.seq:
            self.seq = seq
            self.snapshots[seq] = dict(self.head)
            self.kinds[seq] = "data"
        self.check_head_listing()

    def check_head_listing(self) -> None:
        listed = {
            e.path: e.size
            for e in self.vols["A"].listdir("/", recursive=True)
            if e.type == FileEntryType.FILE
        }
        expected = {p: len(v) for p, v in self.head.items()}
        assert listed == expected, f"listing of the head {self.seq}: {listed} != {expected}"

    def _pick_alive(self, i: int) -> int:
        seqs = self.alive()
        return seqs[i % len(seqs)]

    def _pick_expired(self, i: int) -> int | None:
        seqs = sorted(self.expired)
        return seqs[i % len(seqs)] if seqs else None

    def _update(self, files: Tree) -> bool | None:
        """Put ``files`` into the model's head: True if that changes it, else None (the
        same entries, with the same mtime: no commit; the mtime of a file put back by
        a restore or a mount may differ)."""
        changed = any(self.head.get(p) != v for p, v in files.items())
        self.head.update(files)
        return True if changed else None

    def _upload(self, vol: Volume, files: dict[str, bytes]) -> Any:
        with vol.batch_upload(force=True) as b:
            for p, data in sorted(files.items()):
                b.put_file(io.BytesIO(data), p, mtime_ns=mtime_of(p, data))
        return b.commit_info

    # -- commits through the API -----------------------------------------------------------
    @rule(
        c=st.sampled_from("AB"),
        files=st.dictionaries(st.sampled_from(FILES), CONTENTS, min_size=1, max_size=3),
    )
    def upload(self, c: str, files: dict[str, int]) -> None:
        new = {p: content(cid) for p, cid in files.items()}
        self._upload(self.vols[c], new)
        self._record(self._update(new), f"upload by {c} of {sorted(new)}")

    @precondition(lambda self: bool(self.expired))
    @rule(c=st.sampled_from("AB"), i=st.integers(0, 100))
    def upload_expired_tree(self, c: str, i: int) -> None:
        """Put back every file as an expired commit had it (the same entries, so the same
        tree nodes as that commit's, which gc may have listed as unreachable)."""
        seq = self._pick_expired(i)
        assert seq is not None
        then = self.snapshots[seq]
        if not then:
            return
        self._upload(self.vols[c], then)
        self._record(self._update(then), f"upload by {c} of the files of expired commit {seq}")

    @rule(c=st.sampled_from("AB"), i=st.integers(0, 100))
    def remove(self, c: str, i: int) -> None:
        files = self._files()
        if not files:
            return
        p = files[i % len(files)]
        self.vols[c].remove_file(p)
        del self.head[p]
        self._record(True, f"remove of {p} by {c}")

    def _source_for(self, i: int, dst: str) -> str | None:
        """A file of the head to move or copy to ``dst``; None when there is none, it is
        ``dst`` itself, or ``dst``'s folder does not exist."""
        files = self._files()
        if not files:
            return None
        src = files[i % len(files)]
        if src == dst or not self._folder_exists(parents(dst)[-1] if parents(dst) else ""):
            return None
        return src

    @rule(c=st.sampled_from("AB"), i=st.integers(0, 100), dst=st.sampled_from(FILES))
    def move(self, c: str, i: int, dst: str) -> None:
        src = self._source_for(i, dst)
        if src is None:
            return
        self.vols[c].move(src, dst, overwrite=True)
        self.head[dst] = self.head.pop(src)
        self._record(True, f"move of {src} to {dst} by {c}")

    @rule(c=st.sampled_from("AB"), i=st.integers(0, 100), dst=st.sampled_from(FILES))
    def copy(self, c: str, i: int, dst: str) -> None:
        src = self._source_for(i, dst)
        if src is None:
            return
        self.vols[c].copy_files([src], dst)
        self.head[dst] = self.head[src]
        self._record(None, f"copy of {src} to {dst} by {c}")

    @rule(c=st.sampled_from("AB"), i=st.integers(0, 100), j=st.integers(0, 100))
    def restore_file(self, c: str, i: int, j: int) -> None:
        seq = self._pick_alive(i)
        then = self.snapshots[seq]
        paths = sorted(set(then) | set(self.head))
        if not paths:
            return
        p = paths[j % len(paths)]
        self.vols[c].restore(seq, p)
        if p in then:
            self.head[p] = then[p]
        else:
            del self.head[p]
        # (a restore compares times too: the same bytes may still be a commit)
        self._record(None, f"restore of {p} from {seq} by {c}")

    @rule(c=st.sampled_from("AB"), i=st.integers(0, 100))
    def restore_all(self, c: str, i: int) -> None:
        seq = self._pick_alive(i)
        self.vols[c].restore(seq)
        self.head = dict(self.snapshots[seq])
        self._record(None, f"restore to {seq} by {c}")

    @precondition(lambda self: bool(self.expired))
    @rule(c=st.sampled_from("AB"), i=st.integers(0, 100), whole=st.booleans())
    def restore_expired(self, c: str, i: int, whole: bool) -> None:
        seq = self._pick_expired(i)
        assert seq is not None
        with pytest.raises(NotFoundError):
            if whole:
                self.vols[c].restore(seq)
            else:
                self.vols[c].restore(seq, FILES[i % len(FILES)])
        self._record(False, f"restore of expired commit {seq}")

    # -- tags and retention -----------------------------------------------------------------
    @rule(c=st.sampled_from("AB"), i=st.integers(0, 100), name=st.sampled_from(["best", "v1.0"]))
    def tag(self, c: str, i: int, name: str) -> None:
        seq = self._pick_alive(i)
        self.vols[c].tag(seq, name, force=True)
        self.tags[name] = seq
        assert self.vols["A" if c == "B" else "B"].tags() == self.tags

    @precondition(lambda self: bool(self.expired))
    @rule(i=st.integers(0, 100))
    def tag_expired(self, i: int) -> None:
        seq = self._pick_expired(i)
        with pytest.raises(NotFoundError):
            self.vols["B"].tag(seq, "never")  # type: ignore[arg-type]
        assert self.vols["A"].tags() == self.tags

    @precondition(lambda self: bool(self.tags))
    @rule(c=st.sampled_from("AB"), i=st.integers(0, 100))
    def untag(self, c: str, i: int) -> None:
        name = sorted(self.tags)[i % len(self.tags)]
        self.vols[c].untag(name)
        del self.tags[name]
        assert self.vols["A"].tags() == self.tags

    @rule(c=st.sampled_from("AB"), policy=POLICIES, zero_grace=st.booleans())
    def set_retention(self, c: str, policy: dict[str, Any], zero_grace: bool) -> None:
        self.vols[c].set_retention(**policy, **({"grace": 0} if zero_grace else {}))
        self.policy = dict(policy)

    # -- gc -------------------------------------------------------------------------------
    def _times(self) -> None:
        """The time of every live record, as history gives it."""
        for ci in self.vols["A"].history():
            self.times[ci.seq] = ci.time.timestamp()

    def _promised(self, done: float) -> set[int]:
        """The live seqs the policy (as the docs state it) keeps, judged by a gc that
        ended at ``done``."""
        live = self.alive()
        data = [s for s in live if self.kinds[s] != "gc"]
        keep = {max(live), 0} | set(self.tags.values())
        pol = self.policy
        rules = {k for k in pol if k != "grace"}
        if not rules or rules == {"squash_auto_after"}:
            keep |= set(data)  # no background commits here: nothing to squash
        if pol.get("keep_last"):
            newest = sorted(live)[-pol["keep_last"] :]
            keep |= {s for s in newest if self.kinds[s] != "gc"}
        if pol.get("keep_within") is not None:
            w = pol["keep_within"]
            w = HOUR if w == "1h" else float(w)
            keep |= {s for s in data if self.times[s] >= done - w}
        if (pol.get("keep_hourly") or pol.get("keep_daily")) and data:
            keep.add(max(data))
        return keep & set(live)

    def _after_gc(self, report: Any, promised: set[int], gc_seq: int | None, what: str) -> None:
        expired_now = set(report.expired)
        assert not expired_now & promised, (
            f"{what} expired {sorted(expired_now & promised)}, which the policy "
            f"{self.policy} keeps (tags {self.tags}, head {self.seq})"
        )
        listed = {c.seq: c.expired for c in self.vols["B"].history(include_expired=True)}
        flagged = {s for s, e in listed.items() if e}
        assert self.expired <= flagged, (
            f"{what}: expired commits came back: {sorted(self.expired - flagged)}"
        )
        assert expired_now <= flagged, (expired_now, flagged)
        assert set(listed) == set(self.snapshots), (sorted(listed), sorted(self.snapshots))
        self.expired = flagged
        self.check_all(what)

    def check_all(self, what: str) -> None:
        """Every live commit reads back exactly, through a client that has read nothing
        yet; every expired one raises NotFoundError."""
        vol = self.cold()
        for s in self.alive():
            assert_same(api_files(vol, s), self.snapshots[s], f"commit {s} after {what}")
        for s in sorted(self.expired)[-3:]:
            with pytest.raises(NotFoundError):
                vol.listdir("/", at=s)
        assert_same(api_files(vol), self.head, f"the head after {what}")

    @rule(c=st.sampled_from("AB"), grace=st.sampled_from([0, None]))
    def gc(self, c: str, grace: float | None) -> None:
        """A gc while nobody writes (the mount is idle): grace 0 or the policy's."""
        self._times()
        report = self.vols[c].gc(**({} if grace is None else {"grace": grace}))
        promised = self._promised(time.time())
        self._gc_landed(report)
        self._after_gc(report, promised, report.seq, f"gc by {c} (grace {grace})")

    def _gc_landed(self, report: Any) -> None:
        assert report.seq == self.seq + 1, (report.seq, self.seq)
        self.seq = report.seq
        self.snapshots[self.seq] = dict(self.head)
        self.kinds[self.seq] = "gc"

    @rule(
        point=st.sampled_from(HOOK_POINTS),
        files=st.dictionaries(st.sampled_from(FILES), CONTENTS, min_size=1, max_size=3),
        i=st.integers(0, 100),
        how=st.sampled_from(["upload", "expired_tree", "restore", "remove"]),
    )
    def gc_racing_a_commit(
        self, point: tuple[str, str], files: dict[str, int], i: int, how: str
    ) -> None:
        """A runs gc (grace of an hour); B commits once, at ``point`` of it."""
        self._times()
        before = self.seq
        b_tree: dict[str, Tree] = {}
        refused: list[int] = []
        vol_b = self.vols["B"]

        def commit_b() -> None:
            head = dict(self.head)
            if how == "upload" or (how == "expired_tree" and not self.expired):
                new = {p: content(cid) for p, cid in files.items()}
                self._upload(vol_b, new)
                head.update(new)
            elif how == "expired_tree":
                then = self.snapshots[self._pick_expired(i)]  # type: ignore[index]
                if not then:
                    return
                self._upload(vol_b, then)
                head.update(then)
            elif how == "restore":
                seq = self._pick_alive(i)
                try:
                    info = vol_b.restore(seq)
                except NotFoundError:
                    refused.append(seq)  # the gc expired it meanwhile: nothing restored
                    return
                if info is None:
                    return
                head = dict(self.snapshots[seq])
            else:
                if not head:
                    return
                p = sorted(head)[i % len(head)]
                vol_b.remove_file(p)
                del head[p]
            b_tree["tree"] = head

        self.hooked.hook = (point[0], point[1], commit_b)
        try:
            report = self.vols["A"].gc(grace=HOUR)
        finally:
            fired = self.hooked.hook is None
            self.hooked.hook = None
        promised = self._promised(time.time())
        if not fired:
            commit_b()  # (the gc made no such operation): B commits right after it
        # the new records: B's commit (if any) and the gc's, in either order
        new = [
            ci for ci in reversed(self.vols["A"].history(include_expired=True)) if ci.seq > before
        ]
        kinds = [ci.kind for ci in new]
        assert kinds.count("gc") == 1 and len(new) <= 2, kinds
        if len(new) == 1 and "tree" in b_tree:  # B's commit changed nothing
            assert {p: v for p, v in b_tree["tree"].items() if v != self.head.get(p)} == {}, (
                "B's commit is missing"
            )
        for ci in new:
            if ci.kind == "gc":
                assert ci.seq == report.seq
                self.kinds[ci.seq] = "gc"
            else:
                self.head = b_tree["tree"]
                self.kinds[ci.seq] = "data"
                promised.add(ci.seq)  # a gc never expires a commit it did not see
            self.snapshots[ci.seq] = dict(self.head)
        self.seq = new[-1].seq
        assert set(refused) <= set(report.expired), (refused, report.expired)
        self._after_gc(report, promised, report.seq, f"gc racing B's commit ({how} at {point})")

    @rule(
        files=st.dictionaries(st.sampled_from(FILES), CONTENTS, min_size=1, max_size=3),
        reuse=st.booleans(),
        flush=st.booleans(),
        i=st.integers(0, 100),
    )
    def gc_while_a_batch_is_open(
        self, files: dict[str, int], reuse: bool, flush: bool, i: int
    ) -> None:
        """B opens a batch upload and stages files (``reuse``: also every file of an
        expired commit, deduplicated against data only expired commits used; ``flush``:
        its packs uploaded already); A runs gc (grace of an hour); B's batch ends: its
        commit lands and reads back."""
        self._times()
        new = {p: content(cid) for p, cid in files.items()}
        if reuse and self.expired:
            new.update(self.snapshots[self._pick_expired(i)])  # type: ignore[index]
        with self.vols["B"].batch_upload(force=True) as b:
            for p, data in sorted(new.items()):
                b.put_file(io.BytesIO(data), p, mtime_ns=mtime_of(p, data))
            if flush:
                b._writer.packs.flush()  # type: ignore[union-attr]  # its packs go up now
            report = self.vols["A"].gc(grace=HOUR)
            promised = self._promised(time.time())
            self._gc_landed(report)
        before = self.seq
        self._record(self._update(new), "B's batch upload open while A ran gc")
        if self.seq != before:
            promised.add(self.seq)
        self._after_gc(report, promised, report.seq, "gc while B's batch was open")

    # -- reads -----------------------------------------------------------------------------
    @rule(c=st.sampled_from("AB"), i=st.integers(0, 100), j=st.integers(0, 100))
    def check_history(self, c: str, i: int, j: int) -> None:
        vol = self.vols[c]
        listed = [ci.seq for ci in vol.history()]
        assert set(listed) == set(self.alive()), (listed, self.alive())
        a, b = self._pick_alive(i), self._pick_alive(j)
        assert_same(api_files(vol, a), self.snapshots[a], f"commit {a} read by {c}")
        if a < b:
            old, new = self.snapshots[a], self.snapshots[b]
            got = {(d.path, d.change) for d in vol.diff(a, b) if d.type == FileEntryType.FILE}
            want = set()
            for p in set(old) | set(new):
                if old.get(p) != new.get(p):
                    want.add(
                        (p, "added" if p not in old else "deleted" if p not in new else "modified")
                    )
            # (a file put back with the same bytes but another mtime is "modified" too)
            assert want <= got, f"diff({a}, {b}) lacks {sorted(want - got)}: {sorted(got)}"
            assert {p for p, _ in got} <= set(old) | set(new), got

    @precondition(lambda self: bool(self.expired))
    @rule(c=st.sampled_from("AB"), i=st.integers(0, 100), j=st.integers(0, 100))
    def read_expired(self, c: str, i: int, j: int) -> None:
        vol = self.vols[c]
        seq = self._pick_expired(i)
        files = sorted(self.snapshots[seq]) or FILES  # type: ignore[index]
        with pytest.raises(NotFoundError):
            read(vol, files[j % len(files)], at=seq)
        with pytest.raises(NotFoundError):
            vol.listdir("/", at=seq)
        with pytest.raises(NotFoundError):
            vol.diff(seq)  # type: ignore[arg-type]
        with pytest.raises(NotFoundError):
            vol.diff(self._pick_alive(j), seq)

    # -- the mount -------------------------------------------------------------------------
    @precondition(lambda self: self.mount is not None)
    @rule(path=st.sampled_from(FILES), cid=CONTENTS)
    def m_write(self, path: str, cid: int) -> None:
        data = content(cid)
        if self.synced.get(path) == data or self.local.get(path) == data:
            return  # (the mount would see a new mtime where the model sees no change)
        p = self.mdir / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        self.local[path] = data

    @precondition(lambda self: self.mount is not None)
    @rule(i=st.integers(0, 100))
    def m_delete(self, i: int) -> None:
        files = sorted(self.local)
        if files:
            p = files[i % len(files)]
            os.unlink(self.mdir / p)
            del self.local[p]

    def _m_changes(self) -> dict[str, bytes | None]:
        return {
            p: self.local.get(p)
            for p in set(self.local) | set(self.synced)
            if self.local.get(p) != self.synced.get(p)
        }

    def _m_apply(self) -> bool | None:
        ch = self._m_changes()
        before = dict(self.head)
        for p, v in ch.items():
            if v is None:
                self.head.pop(p, None)
            else:
                self.head[p] = v
        self.synced = dict(self.local)
        if not ch:
            # (folders left empty, or made, in the folder are a commit of their own)
            return None if scan_dirs(self.mdir) != self.synced_dirs else False
        return True if self.head != before else None

    @precondition(lambda self: self.mount is not None)
    @rule()
    def m_commit(self) -> None:
        expect = self._m_apply()
        self.mount.commit()
        self._record(expect, "the mount's commit")
        self.synced_dirs = scan_dirs(self.mdir)

    @precondition(lambda self: self.mount is not None)
    @rule()
    def m_reload(self) -> None:
        expect = self._m_apply()
        self.mount.reload()
        self._record(expect, "the mount's reload")
        self.local = dict(self.head)
        self.synced = dict(self.head)
        self.synced_dirs = scan_dirs(self.mdir)
        assert_same(scan_files(self.mdir), self.head, "the mounted folder after reload")

    def teardown(self) -> None:
        try:
            if self.mount is not None:
                self.m_reload()
            self.check_all("the last step")
            assert self.vols["A"].verify().ok
        finally:
            if self.mount is not None:
                self.mount.unmount()


def run(store: Any, tmp_path: Path, examples: int, steps: int, mount: bool = True) -> None:
    GcModel.store = store
    GcModel.tmp = tmp_path
    GcModel.use_mount = mount
    run_state_machine_as_test(GcModel, settings=model_settings(examples, steps))


def test_gc_model_local(local_store: Any, tmp_path: Path) -> None:
    run(local_store, tmp_path, examples=100, steps=40)


def test_gc_model_s3(s3_store: Any, tmp_path: Path) -> None:
    run(s3_store, tmp_path, examples=12, steps=20)


# -- what the machine found, reduced to one case each ----------------------------------------


def put(vol: Volume, path: str, data: bytes) -> None:
    with vol.batch_upload(force=True) as b:
        b.put_file(io.BytesIO(data), path)


def test_an_upload_after_another_clients_gc_works(local_store: Any) -> None:
    """A has read the head (B's commit) but not loaded its index segment; B then runs gc
    with nobody writing (README: "`grace=0` is for when nobody else is writing"), which
    replaces the index by a checkpoint and deletes the segment. A's next batch upload
    must commit; it raised NotFoundError naming the deleted index object."""
    a = Volume.from_name("v", create_if_missing=True, store=local_store)
    b = Volume.from_name("v", store=StoreAs(local_store))
    put(a, "one", b"1" * 5000)
    put(b, "two", b"2" * 5000)
    assert sorted(e.path for e in a.listdir("/")) == ["one", "two"]
    b.set_retention(keep_last=1)
    b.gc(grace=0)
    put(a, "three", b"3" * 5000)
    assert read(a, "three") == b"3" * 5000
    assert read(a, "two") == b"2" * 5000


def test_a_mount_commits_after_another_clients_gc(local_store: Any, tmp_path: Path) -> None:
    """The same through a mount: M committed (its head lists A's index segment, which M
    never loaded), A ran gc with nobody writing; M's next commit must land. It raised
    NotFoundError naming the deleted index object (a reload, which looks at the head
    first, went through)."""
    a = Volume.from_name("v", create_if_missing=True, store=local_store)
    put(a, "one", b"1" * 5000)
    m = Volume.from_name("v", store=StoreAs(local_store, "m")).mount(
        tmp_path / "m", background=False
    )
    try:
        put(a, "two", b"2" * 5000)
        (tmp_path / "m/x").write_bytes(b"x" * 3000)
        assert m.commit() is not None
        a.set_retention(keep_last=1)
        a.gc(grace=0)
        (tmp_path / "m/y").write_bytes(b"y" * 3000)
        assert m.commit() is not None
        assert read(a, "y") == b"y" * 3000
    finally:
        m.unmount()


class FailIndexGets(WrappedStore):
    """The mount's store: the same store under another URL, whose next read of an index
    object fails (a store outage) once ``armed``. A stand-in: an outage at exactly that
    request cannot be caused with a real server."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.url = f"{inner.url}#m"
        self.armed = False

    def get(self, key: str) -> bytes:
        if self.armed and "/index/" in key:
            self.armed = False
            raise StoreError(f"injected outage reading {key}")
        return super().get(key)


def test_a_mount_commit_that_failed_as_it_started_is_retried_with_its_files(
    local_store: Any, tmp_path: Path
) -> None:
    """A mount's commit fails before it reads anything (the store does not answer while
    its writer loads the index). README: "A failing background commit is retried"; the
    files it was to commit must go with the next commit. The next commit() and reload()
    published nothing (status() still listed the file as added) until unmount: the
    journal had handed the paths over before the failure."""
    a = Volume.from_name("v", create_if_missing=True, store=local_store)
    put(a, "one", b"1" * 200_000)
    store_m = FailIndexGets(local_store)
    m = Volume.from_name("v", store=store_m).mount(tmp_path / "m", background=False)
    try:
        put(a, "two", b"2" * 200_000)
        (tmp_path / "m/x").write_bytes(b"x" * 3000)
        assert m.commit() is not None  # on A's commit, whose index segment M never loaded
        (tmp_path / "m/y").write_bytes(b"y" * 3000)
        store_m.armed = True
        with pytest.raises(StoreError):
            m.commit()
        assert not store_m.armed  # (the outage was met)
        m.commit()
        assert read(a, "y") == b"y" * 3000, sorted(e.path for e in a.listdir("/"))
    finally:
        m.unmount()
