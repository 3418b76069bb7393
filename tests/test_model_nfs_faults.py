"""A model-based (stateful) test of store faults under a network file system: two clients
of one NFS on a real SeaweedFS, where client B talks to the store through the fault proxy
(``tests/faultproxy.py``) and its operations meet 5xx answers, connections dropped before
the server acted, answers lost after it acted, truncated and stalled (timed out) answers,
on the requests a rule chooses: a pack's PUT, the create-only PUT of a commit record, an
intent's PUT, a tree node's PUT, a GET, a LIST, a multi-object DELETE, or any request.

* Client A opens the store directly (never a fault) and writes through the NFS API
  (``write_file``, ``remove_file``); so does C, a short-lived process that writes one
  file (a handle of its own each time).
* Client B uses the NFS API through the proxy (``write_file``, ``add_local_file``,
  ``add_local_dir``, ``remove_file``, ``read_file``, ``listdir``) and has a live folder
  (``nfs.mount``) whose files the machine writes and deletes (and where a program makes
  a temporary file and deletes it again). The folder's own loop is put to sleep (a huge
  interval) while faults are armed, so that a fault meets the request of the operation
  that the rule chose; the rule syncs it with ``sync()`` (push, then pull). B's store gives up after 3 attempts, so one or two faults on a request
  are retried away and three or more make the operation fail.
* A fault may also run a write of A *between* two of B's attempts (the proxy's
  ``then``: after the fault, before B hears of it), so B retries against a head that
  moved.

The model (files only: path -> bytes) follows README ("Network file systems") and
docs/architecture.md (the commit protocol, network file systems):

* an operation of B that returns did what it says (a write landed whole and returned
  its size; a read returned the newest bytes; a listing the newest files); one that
  raises has landed whole or not at all (decided by reading the head through A), and
  raises only the package's errors, never with no fault injected, never
  FileNotFoundError for a file that exists;
* writers of different files never lose each other's changes, writers of one file get
  the last commit's version whole (never a torn file, never older bytes): in
  particular a change set that B gave up on and could not take back (the error says
  "another writer may still commit it") may land later only where nobody wrote since;
* B's folder never holds a torn file: after a failed sync every file holds what it held
  or a version of a head the pull was bringing in;
* once faults stop, B's folder, synced by hand and then by its own loop, converges with
  A's view and the model: nothing deleted comes back, nothing written disappears.

Examples are short (a fresh NFS and live folder each); the whole run takes about 40 s.
What it found is reduced to plain tests in ``test_nfs_faults_found.py``.
"""

from __future__ import annotations

import io
import itertools
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from faultmodel import (
    FAULT,
    INDEX,
    Changes,
    FolderFaultModel,
    apply,
    content,
    differences,
    run_folder_model,
    short,
)
from hypothesis import strategies as st
from hypothesis.stateful import rule
from modeltest import StoreAs, scan_files

from jupyter_volume import NetworkFileSystem
from jupyter_volume.errors import NotFoundError
from jupyter_volume.results import FileEntryType

pytestmark = [pytest.mark.slow, pytest.mark.s3]

# -- the model's vocabulary ---------------------------------------------------------------------

FILES = ["a.txt", "b.bin", "sub/c", "sub/d.bin"]
DIR_NAMES = ["c", "d.bin"]  # what add_local_dir puts below "sub"
# empty; inline in the tree node; one small chunk; a few chunks
SIZES = [0, 7, 600, 5000, 150_000]
HANG_GUARD = 60.0  # seconds: a folder that has not converged by then never will


# -- strategies -------------------------------------------------------------------------------------

WRITE = st.tuples(st.sampled_from(FILES), st.sampled_from(SIZES), st.integers(0, 10_000))
INTERLEAVE = st.one_of(st.none(), WRITE)
# Sequences that reach the corners of the protocol more often than chance would:
PRESETS = [
    # B loses the log slot to A's write (its change set goes into the line of waiting
    # commits), then cannot read the log, then cannot delete its intent again
    ([("record-put", 0, 1), ("list", 0, 3), ("delete", 0, 3)], True),
    ([("record-put", 1, 1), ("get", 1, 3), ("any", 0, 4)], True),
    # the record lands, every answer is lost
    ([("record-put", 2, 3)], False),
    ([("record-put", 2, 3)], True),
    # nothing lands: a pack's PUT fails; the record's PUT fails (after the change set
    # was noted as "may land")
    ([("pack-put", 1, 3)], False),
    ([("record-put", 0, 3)], False),
    # a read is cut short, then one hangs
    ([("get", 2, 2), ("get", 3, 1)], False),
]
# B's next operation meets up to three stages of faults, each armed once the one before
# has happened; the interleaved write of A (path, size, seed) runs at the first fault
OP_FAULTS = st.one_of(
    st.tuples(st.lists(FAULT, max_size=3), INTERLEAVE),
    st.sampled_from(PRESETS).flatmap(
        lambda p: st.tuples(st.just(p[0]), WRITE if p[1] else st.none())
    ),
)


class NfsFaultModel(FolderFaultModel):
    def __init__(self) -> None:
        super().__init__()
        self.name = f"nfs-faults-{self.n}"
        self.nfs_a = NetworkFileSystem.from_name(
            self.name, create_if_missing=True, store=self.store_a
        )
        self.nfs_a.hydrate()
        self.nfs_a._retention_due(wait=True)  # (its first look, out of the way)
        self.vol_a = self.nfs_a._vol
        self.nfs_b = NetworkFileSystem.from_name(self.name, store=self.store_b)
        self.nfs_b.hydrate()
        self.nfs_b._retention_due(wait=True)  # never in the middle of an armed fault
        self._record_head({})
        self.root = self.tmp / f"ex{self.n}"
        self.uploads = itertools.count()
        # the folder's own loop sleeps: B syncs when a rule says (see the teardown)
        self.mount_b = self.nfs_b.mount(self.dir_b, interval=1e6, settle=0.05)

    def _a_interleaved(self, ch: Changes) -> None:
        for path, data in ch.items():
            assert data is not None
            assert self.nfs_a.write_file(path, io.BytesIO(data)) == len(data)

    # -- A: direct, no faults -------------------------------------------------------------------
    @rule(
        paths=st.lists(st.sampled_from(FILES), min_size=1, max_size=2, unique=True),
        size=st.sampled_from(SIZES),
        seed=INDEX,
    )
    def a_write(self, paths: list[str], size: int, seed: int) -> None:
        ch: Changes = {p: content(seed + i, size) for i, p in enumerate(paths)}
        for p, v in ch.items():
            assert v is not None
            assert self.nfs_a.write_file(p, io.BytesIO(v)) == len(v)
        self._after_a(apply(self.head, ch), "A's write_file", set(ch))

    @rule(i=INDEX)
    def a_remove(self, i: int) -> None:
        files = sorted(self.head)
        if not files:
            return
        p = files[i % len(files)]
        self.nfs_a.remove_file(p)
        self._after_a(apply(self.head, {p: None}), "A's remove_file", {p})

    @rule(w=WRITE)
    def c_write(self, w: tuple[str, int, int]) -> None:
        """A short-lived process C (a handle of its own: nothing shared with A's) writes
        one file: its first commit looks for change sets waiting in line."""
        path, size, seed = w
        data = content(seed + 5, size)
        c = NetworkFileSystem.from_name(self.name, store=StoreAs(self.store_a, f"c{uuid.uuid4()}"))
        assert c.write_file(path, io.BytesIO(data)) == len(data)
        self._after_a(apply(self.head, {path: data}), "C's write_file", {path})

    # -- B's API, through the proxy ------------------------------------------------------------
    @rule(
        w=WRITE,
        how=st.sampled_from(["write_file", "add_local_file"]),
        fi=OP_FAULTS,
    )
    def b_write(self, w: tuple[str, int, int], how: str, fi: Any) -> None:
        path, size, seed = w
        data = content(seed + 17, size)
        if how == "write_file":

            def fn() -> int:
                return self.nfs_b.write_file(path, io.BytesIO(data))

        else:
            local = self.root / "up" / f"{next(self.uploads)}-{path.rpartition('/')[2]}"
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(data)

            def fn() -> int:
                return self.nfs_b.add_local_file(local, path)

        before = dict(self.head)
        exc, injected, a, out = self._b_op(*fi, fn)
        if exc is None:
            assert out == len(data), f"B's {how} returned {out!r}, wrote {len(data)} B"
        self._settle(f"B's {how} of {path}", before, {path: data}, exc, injected, a)

    @rule(
        names=st.lists(st.sampled_from(DIR_NAMES), min_size=1, max_size=2, unique=True),
        size=st.sampled_from(SIZES),
        seed=INDEX,
        fi=OP_FAULTS,
    )
    def b_add_dir(self, names: list[str], size: int, seed: int, fi: Any) -> None:
        local = self.root / "up" / f"dir{next(self.uploads)}"
        local.mkdir(parents=True)
        ch: Changes = {}
        for i, n in enumerate(names):
            data = content(seed + 31 * i, size)
            (local / n).write_bytes(data)
            ch[f"sub/{n}"] = data
        before = dict(self.head)
        exc, injected, a, _ = self._b_op(*fi, lambda: self.nfs_b.add_local_dir(local, "sub"))
        self._settle("B's add_local_dir of sub", before, ch, exc, injected, a)

    @rule(i=INDEX, fi=OP_FAULTS)
    def b_remove(self, i: int, fi: Any) -> None:
        p = FILES[i % len(FILES)]
        before = dict(self.head)
        exc, injected, a, _ = self._b_op(*fi, lambda: self.nfs_b.remove_file(p), missing=p)
        if p not in before and not (a and p in a):
            # nothing to remove: FileNotFoundError, with or without faults
            self.story.append(f"B's remove_file of missing {p}: raised {exc!r}")
            assert exc is not None, f"B removed {p}, which did not exist{self._tell()}"
            self._observe_unchanged(before, a, f"B's remove_file of missing {p}")
            return
        if isinstance(exc, NotFoundError) and p in before:
            raise AssertionError(
                f"B's remove_file of {p} raised FileNotFoundError, but it existed "
                f"(faults {injected}): {exc}{self._tell()}"
            )
        self._settle(f"B's remove_file of {p}", before, {p: None}, exc, injected, a)

    @rule(i=INDEX, fi=OP_FAULTS)
    def b_read(self, i: int, fi: Any) -> None:
        p = FILES[i % len(FILES)]
        before = dict(self.head)
        exc, injected, a, out = self._b_op(
            *fi, lambda: b"".join(self.nfs_b.read_file(p)), missing=p
        )
        now = self._observe_unchanged(before, a, f"B's read_file of {p}")
        self.story.append(f"B's read_file of {p}: {short(out)}, raised {exc!r}, faults {injected}")
        versions = {before.get(p), now.get(p)}
        legit = isinstance(exc, NotFoundError) and not injected
        key = "ok" if exc is None else "not found" if legit else "raised"
        self.seen[f"B's read_file: {key}"] += 1
        if exc is None:
            assert out in versions, (
                f"B's read_file of {p} returned {short(out)}, none of {sorted(map(short, versions))}"
                f" (faults {injected}){self._tell()}"
            )
        elif isinstance(exc, NotFoundError):
            assert None in versions, (
                f"B's read_file of {p} raised FileNotFoundError, but it exists "
                f"(faults {injected}): {exc}{self._tell()}"
            )

    @rule(fi=OP_FAULTS)
    def b_listdir(self, fi: Any) -> None:
        before = dict(self.head)

        def fn() -> dict[str, int]:
            return {
                e.path: e.size
                for e in self.nfs_b.listdir("/", recursive=True)
                if e.type == FileEntryType.FILE
            }

        exc, injected, a, out = self._b_op(*fi, fn)
        now = self._observe_unchanged(before, a, "B's listdir")
        self.story.append(f"B's listdir: {out}, raised {exc!r}, faults {injected}")
        self.seen["B's listdir: ok" if exc is None else "B's listdir: raised"] += 1
        if exc is None:
            views = [{p: len(v) for p, v in t.items()} for t in (before, now)]
            assert out in views, (
                f"B's listdir gave {out}, neither {views[0]} nor {views[1]}"
                f" (faults {injected}){self._tell()}"
            )

    # -- B's live folder -----------------------------------------------------------------------
    @rule(w=WRITE)
    def b_folder_write(self, w: tuple[str, int, int]) -> None:
        name, size, seed = w
        self._write_in_folder(name, content(seed, size))

    @rule(i=INDEX)
    def b_folder_delete(self, i: int) -> None:
        self._delete_in_folder(i)

    @rule(name=st.sampled_from(FILES))
    def b_folder_scratch(self, name: str) -> None:
        """A program makes a temporary file and deletes it again (unless a file is
        there): no change, for the model."""
        p = self.dir_b / name
        if name in self.local:
            return
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"scratch")
        p.unlink()
        self.story.append(f"B's folder: a temporary {name}, deleted again")

    @rule(writes=st.lists(WRITE, max_size=2), fi=OP_FAULTS)
    def b_sync(self, writes: list[tuple[str, int, int]], fi: Any) -> None:
        for w in writes:
            self.b_folder_write(w)
        self._sync(*fi)

    def _sync(self, faults: list[Any], inter: Any) -> None:
        self._sync_folder("B's sync", self.mount_b.sync, faults, inter)

    # -- the faults are gone -------------------------------------------------------------------
    def _converge_by_itself(self) -> None:
        """Wake the folder's own loop (at the usual pace) and poll until B's folder,
        A's view and the model agree, and the folder says it is in sync."""
        m = self.mount_b
        m.interval = 0.2
        m._wake.set()
        deadline = time.monotonic() + HANG_GUARD
        last = ""
        # (a change set of B's API that gave up and could not be taken back may still
        # land, where nobody wrote since)
        allowed = [self.head] + [
            apply(self.head, li.changes)
            for li in self.lingering
            if not set(li.changes) & (li.since | {"from-b.txt"})
        ]
        while True:
            try:
                folder = scan_files(self.dir_b)
                view = self._actual()
                st_b = m.status()
                if folder == view and view in allowed and st_b.clean and not st_b.waiting:
                    self.head = view
                    return
                last = (
                    f"folder vs A's view {differences(folder, view)}, A's view vs model "
                    f"{differences(view, self.head)}, status {st_b}, last error {m.last_error}"
                )
            except OSError as e:  # a file replaced while we read
                last = f"read failed: {e!r}"
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"B's folder did not converge within {HANG_GUARD:.0f} s: {last}{self._tell()}"
                )
            time.sleep(0.1)

    def teardown(self) -> None:
        try:
            if self.mount_b is None:
                return
            # B's sync with no faults brings the head and B's folder to the model
            self.story.append("-- teardown")
            self._sync([], None)
            actual = self._actual()
            assert actual == self.head, differences(actual, self.head)
            if self.local != self.head:
                raise AssertionError(
                    f"B's folder after a sync with no faults (folder, head): "
                    f"{differences(self.local, self.head)}{self._tell()}"
                )
            assert not any(li.origin == "folder" for li in self.lingering)
            # then its own loop, with a new write on each side: each reaches the other
            mine, theirs = content(self.n, 99), content(self.n, 98)
            (self.dir_b / "from-b.txt").write_bytes(mine)
            assert self.nfs_a.write_file("from-a.txt", io.BytesIO(theirs)) == len(theirs)
            self._after_a(
                apply(self.head, {"from-a.txt": theirs}), "A's write_file", {"from-a.txt"}
            )
            self.head = {**self.head, "from-b.txt": mine}
            self._converge_by_itself()
            # B's API reads what everyone wrote
            for p, v in self.head.items():
                assert b"".join(self.nfs_b.read_file(p)) == v, p
            m, self.mount_b = self.mount_b, None
            m.unmount()
            assert self._actual() == self.head, differences(self._actual(), self.head)
        finally:
            self._let_go_of_b()


def test_nfs_fault_model_s3(seaweedfs: Any, s3_bucket: str, s3_store: Any, tmp_path: Path) -> None:
    run_folder_model(
        NfsFaultModel, seaweedfs, s3_bucket, s3_store, tmp_path, seed=13, examples=28, steps=15
    )
