"""A model-based (stateful) test of store faults: two clients of one volume on a real
SeaweedFS, where client B talks to the store through the fault proxy
(``tests/faultproxy.py``) and its operations meet 5xx answers, connections dropped
before the server acted, answers lost after it acted, truncated and stalled (timed out)
answers, on the requests a rule chooses: a pack's PUT, the create-only PUT of a commit
record, an intent's PUT, a tree node's PUT, a GET, a LIST, a multi-object DELETE, or
any request.

* Client A opens the store directly (never a fault) and writes through the API:
  ``batch_upload(force=True)``, ``remove_file``, ``restore`` of a file or of the whole
  tree.
* Client B has a mount (``background=False``) whose folder the machine edits (writes,
  deletes) and then ``commit()``s or ``reload()``s, and makes ``batch_upload``s, all
  through the proxy. B's store gives up after 3 attempts, so one or two faults on a
  request are retried away and three or more make the operation fail.
* A fault may also run A's commit of one file *between* two of B's attempts (the
  proxy's ``then``: after the fault, before B hears of it), so B retries against a head
  that moved.

The model (files only: path -> bytes) follows README and docs/architecture.md ("The
commit protocol", mounts):

* an operation of B that returns has landed whole; one that raises has landed whole or
  not at all (decided by reading the head through A; both are allowed after a lost
  answer), never in part, and never with an older version of a file that A wrote since
  (with an interleaved commit of A, either order of the two);
* B never raises with no fault injected, and raises only the package's errors;
* once the faults are gone, B's next ``commit()``/``reload()`` (a mount) or the same
  batch again brings the head to the model: a mount's change that landed unheard is
  not published again over newer versions, one that did not land is published then;
* the mount folder never holds a torn file: after a failed reload every file holds the
  version it had, or one the reload was bringing in; after a successful one the folder
  is the head (or, with an interleaved commit of A, the head the reload took);
* every commit seen as a head reads back as it was seen (``listdir``/``read_file`` with
  ``at=SEQ``), and every commit in history reads without error;
* A's commits land as A made them: in particular no change set that B gave up on lands
  later over a version A wrote since.

Examples are short (a fresh volume and mount each); the whole run takes about 40 s.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from faultmodel import (
    FAULT,
    INDEX,
    Changes,
    FolderFaultModel,
    apply,
    content,
    differences,
    run_folder_model,
)
from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule
from modeltest import api_files, changes_of

from jupyter_volume import Volume

# -- the model's vocabulary ---------------------------------------------------------------------

FILES = ["a.txt", "b.bin", "sub/c", "sub/d.bin", "deep/x/e"]
# empty; inline in the tree node (<= 512 B); one small chunk; several chunks
SIZES = [0, 7, 600, 5000, 150_000, 400_000]

# -- strategies -------------------------------------------------------------------------------------

# B's next operation meets up to three stages of faults, each armed once the one
# before has happened; INTERLEAVE runs a commit of A (path, size, seed) at the first
FAULTS = st.lists(FAULT, max_size=3)
WRITES = st.lists(
    st.tuples(st.sampled_from(FILES), st.sampled_from(SIZES), st.integers(0, 10_000)),
    max_size=3,
)
INTERLEAVE = st.one_of(
    st.none(),
    st.tuples(st.sampled_from(FILES), st.sampled_from(SIZES), st.integers(0, 10_000)),
)


class FaultModel(FolderFaultModel):
    def __init__(self) -> None:
        super().__init__()
        self.name = f"faults-{self.n}"
        self.vol_a = Volume.from_name(self.name, create_if_missing=True, store=self.store_a)
        self._record_head({})  # (creates the volume)
        self.vol_b = Volume.from_name(self.name, store=self.store_b)
        self.mount_b = self.vol_b.mount(self.dir_b, background=False)
        # B's batches that failed, to be done again: (changes)
        self.failed_batches: list[Changes] = []

    def _a_commit(self, changes: Changes) -> None:
        """A's own commit (direct): one batch, deletions one by one."""
        puts = {p: v for p, v in changes.items() if v is not None}
        if puts:
            with self.vol_a.batch_upload(force=True) as batch:
                for p, v in puts.items():
                    batch.put_file(io.BytesIO(v), p)
        for p, v in changes.items():
            if v is None:
                self.vol_a.remove_file(p)

    _a_interleaved = _a_commit

    # -- A: direct, no faults -------------------------------------------------------------------
    @rule(
        paths=st.lists(st.sampled_from(FILES), min_size=1, max_size=3, unique=True),
        size=st.sampled_from(SIZES),
        seed=INDEX,
    )
    def a_write(self, paths: list[str], size: int, seed: int) -> None:
        ch: dict[str, bytes | None] = {p: content(seed + i, size) for i, p in enumerate(paths)}
        self._a_commit(ch)
        self._after_a(apply(self.head, ch), f"A's upload of {sorted(ch)}", set(ch))

    @rule(i=INDEX)
    def a_remove(self, i: int) -> None:
        files = sorted(self.head)
        if not files:
            return
        p = files[i % len(files)]
        self.vol_a.remove_file(p)
        self._after_a(apply(self.head, {p: None}), f"A's removal of {p}", {p})

    @precondition(lambda self: len(self.snapshots) > 1)
    @rule(i=INDEX, j=INDEX, whole=st.booleans())
    def a_restore(self, i: int, j: int, whole: bool) -> None:
        seqs = sorted(self.snapshots)
        seq = seqs[i % len(seqs)]
        then = self.snapshots[seq]
        if whole:
            self.vol_a.restore(seq)
            touched = set(then) | set(self.head)
            self._after_a(dict(then), f"A's restore to {seq}", touched)
            return
        paths = sorted(set(then) | set(self.head))
        if not paths:
            return
        p = paths[j % len(paths)]
        self.vol_a.restore(seq, p)
        self._after_a(apply(self.head, {p: then.get(p)}), f"A's restore of {p} from {seq}", {p})

    # -- B's folder ----------------------------------------------------------------------------
    @rule(name=st.sampled_from(FILES), size=st.sampled_from(SIZES), seed=INDEX)
    def b_write(self, name: str, size: int, seed: int) -> None:
        self._write_in_folder(name, content(seed, size))

    @rule(i=INDEX)
    def b_delete(self, i: int) -> None:
        self._delete_in_folder(i)

    # -- B's mount, through the proxy ----------------------------------------------------------
    @rule(writes=WRITES, faults=FAULTS, inter=INTERLEAVE)
    def b_commit(
        self, writes: list[tuple[str, int, int]], faults: list[tuple[str, int, int]], inter: Any
    ) -> None:
        for name, size, seed in writes:
            self.b_write(name, size, seed)
        ch = changes_of(self.local, self.synced)
        before = dict(self.head)
        exc, injected, a, _ = self._b_op(faults, inter, self.mount_b.commit)
        _actual, landed = self._settle("B's commit", before, ch, exc, injected, a, "folder")
        if landed:
            self._land_synced(ch)
        if exc is None:  # withdrawn (or landed) by this commit
            self.lingering = [li for li in self.lingering if li.origin != "folder"]

    @rule(writes=WRITES, faults=FAULTS, inter=INTERLEAVE)
    def b_reload(
        self, writes: list[tuple[str, int, int]], faults: list[tuple[str, int, int]], inter: Any
    ) -> None:
        for name, size, seed in writes:
            self.b_write(name, size, seed)
        self._sync_folder("B's reload", self.mount_b.reload, faults, inter)

    # -- B's batch uploads, through the proxy --------------------------------------------------
    def _b_batch(self, ch: Changes) -> None:
        with self.vol_b.batch_upload(force=True) as batch:
            for p, v in ch.items():
                assert v is not None
                batch.put_file(io.BytesIO(v), p)

    @rule(
        paths=st.lists(st.sampled_from(FILES), min_size=1, max_size=3, unique=True),
        size=st.sampled_from(SIZES),
        seed=INDEX,
        faults=FAULTS,
        inter=INTERLEAVE,
    )
    def b_batch(
        self, paths: list[str], size: int, seed: int, faults: list[Any], inter: Any
    ) -> None:
        ch: Changes = {p: content(seed + 7 * i, size) for i, p in enumerate(paths)}
        before = dict(self.head)
        exc, injected, a, _ = self._b_op(faults, inter, lambda: self._b_batch(ch))
        self._settle("B's batch upload", before, ch, exc, injected, a)
        if exc is not None:
            self.failed_batches.append(ch)

    @precondition(lambda self: bool(self.failed_batches))
    @rule()
    def b_batch_again(self) -> None:
        """The faults are gone: doing the failed batch again lands it."""
        ch = self.failed_batches.pop(0)
        before = dict(self.head)
        exc, injected, a, _ = self._b_op([], None, lambda: self._b_batch(ch))
        assert exc is None
        self._settle("B's batch upload done again", before, ch, exc, injected, a)

    # -- reading back --------------------------------------------------------------------------
    @precondition(lambda self: len(self.snapshots) > 1)
    @rule(i=INDEX)
    def check_history(self, i: int) -> None:
        seqs = sorted(self.snapshots)
        seq = seqs[i % len(seqs)]
        listed = {c.seq for c in self.vol_a.history()}
        assert set(seqs) <= listed, f"history {sorted(listed)} lacks some of {seqs}"
        got = api_files(self.vol_a, at=seq)
        if got != self.snapshots[seq]:
            raise AssertionError(
                f"commit {seq} read with at= differs from the head seen then (actual, then): "
                f"{differences(got, self.snapshots[seq])}"
            )

    def teardown(self) -> None:
        try:
            if self.mount_b is None:
                return
            # the faults are gone: B's batches done again, B's commit and reload bring
            # the head and B's folder to the model
            while self.failed_batches:
                self.b_batch_again()
            self.b_commit([], [], None)
            self.b_reload([], [], None)
            assert self.head == self._actual()
            if self.local != self.head:
                raise AssertionError(
                    f"B's folder after a reload with no faults (folder, head): "
                    f"{differences(self.local, self.head)}"
                )
            assert self.synced == self.head
            # every commit in history reads without error; those seen read as seen
            for c in self.vol_a.history():
                got = api_files(self.vol_a, at=c.seq)
                if c.seq in self.snapshots and got != self.snapshots[c.seq]:
                    raise AssertionError(
                        f"commit {c.seq} (teardown) differs from the head seen then: "
                        f"{differences(got, self.snapshots[c.seq])}"
                    )
        finally:
            self._let_go_of_b()


def test_fault_model_s3(seaweedfs: Any, s3_bucket: str, s3_store: Any, tmp_path: Path) -> None:
    run_folder_model(
        FaultModel, seaweedfs, s3_bucket, s3_store, tmp_path, seed=11, examples=14, steps=25
    )
