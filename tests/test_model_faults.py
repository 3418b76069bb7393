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
import itertools
import os
import random
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from faultproxy import STALL, FaultProxy, client_b
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from modeltest import api_files, changes_of, model_settings, scan_files

from jupyter_volume import Volume
from jupyter_volume.errors import VolumeError

# -- the model's vocabulary ---------------------------------------------------------------------

FILES = ["a.txt", "b.bin", "sub/c", "sub/d.bin", "deep/x/e"]
# empty; inline in the tree node (<= 512 B); one small chunk; several chunks
SIZES = [0, 7, 600, 5000, 150_000, 400_000]

Tree = dict[str, bytes]  # files only: path -> bytes

# request kinds a fault is aimed at: (method, part of the request target) (None: any)
TARGETS: dict[str, tuple[str | None, str | None]] = {
    "pack-put": ("PUT", "/packs/"),
    "record-put": ("PUT", "/log/"),  # the create-only PUT of a commit record
    "intent-put": ("PUT", "/intents/"),
    "tree-put": ("PUT", "/trees/"),
    "get": ("GET", None),  # objects and listings
    "list": ("GET", "list-type=2"),
    "delete": ("POST", "?delete"),  # a multi-object delete
    "any": (None, None),
}
PUT_KINDS = ["error500", "drop", "lost_response"]
GET_KINDS = ["error500", "drop", "truncate", STALL]
ANY_KINDS = ["error500", "drop", "lost_response"]
B_ATTEMPTS = 3  # B's store gives up after this many attempts of one request
B_READ_TIMEOUT = 2.0  # a stalled answer costs B this long


def kinds_for(target: str) -> list[str]:
    method = TARGETS[target][0]
    return GET_KINDS if method == "GET" else ANY_KINDS if method is None else PUT_KINDS


def content(seed: int, size: int) -> bytes:
    return random.Random(seed * 1_000_003 + size).randbytes(size)


def apply(tree: Tree, changes: dict[str, bytes | None]) -> Tree:
    new = dict(tree)
    for p, v in changes.items():
        if v is None:
            new.pop(p, None)
        else:
            new[p] = v
    return new


def short(v: bytes | None) -> str:
    return "-" if v is None else f"{len(v)} B {v[:6].hex()}"


def fmt_changes(ch: dict[str, bytes | None]) -> dict[str, str]:
    return {p: short(v) for p, v in sorted(ch.items())}


def differences(actual: Tree, expected: Tree) -> dict[str, tuple[str, str]]:
    return {
        p: (short(actual.get(p)), short(expected.get(p)))
        for p in sorted(set(actual) | set(expected))
        if actual.get(p) != expected.get(p)
    }


def assert_one_of(actual: Tree, allowed: list[Tree], what: str) -> None:
    if actual in allowed:
        return
    diffs = "; ".join(f"vs allowed #{i}: {differences(actual, t)}" for i, t in enumerate(allowed))
    raise AssertionError(
        f"{what}: the head is none of the allowed outcomes (actual, model) {diffs}"
    )


# -- strategies -------------------------------------------------------------------------------------

FAULT = st.tuples(
    st.sampled_from(
        ["record-put", "record-put", "pack-put", "intent-put", "tree-put", "get", "list"]
        + ["delete", "any"]
    ),
    st.integers(0, 3),  # the kind, among those that apply to the target
    st.sampled_from([1, 2, 3, 3, 4]),  # on the next N matching requests (3 = B's attempts)
)
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
INDEX = st.integers(0, 10_000)


class FaultModel(RuleBasedStateMachine):
    store_a: Any = None
    store_b: Any = None
    proxy: FaultProxy = None  # type: ignore[assignment]
    tmp: Path = Path()
    counter = itertools.count()
    seen: Counter[str] = Counter()  # what the run went through (asserted at its end)

    def __init__(self) -> None:
        super().__init__()
        n = next(self.counter)
        self.name = f"faults-{n}"
        self.vol_a = Volume.from_name(self.name, create_if_missing=True, store=self.store_a)
        self.seq = self._head_seq()  # (creates the volume)
        self.vol_b = Volume.from_name(self.name, store=self.store_b)
        self.dir_b = self.tmp / f"ex{n}" / "B"
        self.mount_b: Any = None
        self.mount_b = self.vol_b.mount(self.dir_b, background=False)
        self.head: Tree = {}
        self.local: Tree = {}  # B's folder
        self.synced: Tree = {}  # what B's mount last synced, path by path
        self.snapshots: dict[int, Tree] = {self.seq: {}}
        # B's batches that failed, to be done again: (changes)
        self.failed_batches: list[dict[str, bytes | None]] = []
        # change sets of B's mount that failed without landing and could not be
        # withdrawn (the error says so): (changes, paths written by others since)
        self.lingering: list[tuple[dict[str, bytes | None], set[str]]] = []

    # -- helpers -------------------------------------------------------------------------------
    def _head_seq(self) -> int:
        return self.vol_a.history(limit=1)[0].seq

    def _actual(self) -> Tree:
        return api_files(self.vol_a)

    def _record_head(self, tree: Tree) -> None:
        self.head = tree
        seq = self._head_seq()
        if seq != self.seq:
            assert seq > self.seq, f"the head went back from {self.seq} to {seq}"
            self.seq = seq
            self.snapshots[seq] = dict(tree)

    def _touched_by_others(self, paths: set[str]) -> None:
        for _ch, touched in self.lingering:
            touched |= paths

    def _a_commit(self, changes: dict[str, bytes | None]) -> None:
        """A's own commit (direct): one batch, deletions one by one."""
        puts = {p: v for p, v in changes.items() if v is not None}
        if puts:
            with self.vol_a.batch_upload(force=True) as batch:
                for p, v in puts.items():
                    batch.put_file(io.BytesIO(v), p)
        for p, v in changes.items():
            if v is None:
                self.vol_a.remove_file(p)

    def _b_op(
        self, faults: list[tuple[str, int, int]], inter: Any, fn: Callable[[], Any]
    ) -> tuple[BaseException | None, list[tuple[str, str, str]], dict[str, bytes | None] | None]:
        """Run B's operation ``fn`` with ``faults`` armed on the proxy (cleared again
        afterwards): (what it raised, the faults injected, A's interleaved change or None)."""
        proxy = self.proxy
        box: dict[str, Any] = {}
        a_change: dict[str, bytes | None] | None = None
        proxy.clear()

        stages = []  # (kind, method, path part, how many), each after the one before
        for target, k, n in faults:
            kinds = kinds_for(target)
            kind = kinds[k % len(kinds)]
            # each stall costs a read timeout
            stages.append((kind, *TARGETS[target], min(n, 2) if kind == STALL else n))

        then: Callable[[], None] | None = None
        if inter is not None:
            path, size, seed = inter
            a_change = {path: content(seed, size)}

            def a_commits() -> None:  # on the proxy's thread, before B hears of the fault
                try:
                    self._a_commit(a_change)  # type: ignore[arg-type]
                    box["ran"] = True
                except BaseException as e:  # noqa: BLE001 - reported by the rule
                    box["error"] = e

            then = a_commits

        proxy.arm_stages(stages, then)
        start = len(proxy.log)
        exc: BaseException | None = None
        try:
            fn()
        except VolumeError as e:
            exc = e
        except Exception as e:
            raise AssertionError(
                f"B raised {type(e).__name__} (not one of the package's errors): {e}"
            ) from e
        finally:
            proxy.clear()
        injected = [entry for entry in proxy.log[start:] if entry[2] != "ok"]
        if "error" in box:
            raise AssertionError(f"A's interleaved commit failed: {box['error']!r}")
        if exc is not None and not injected:
            raise AssertionError(f"B raised with no fault injected: {exc!r}")
        return exc, injected, (a_change if box.get("ran") else None)

    @staticmethod
    def _outcomes(
        before: Tree, ch: dict[str, bytes | None], a: dict[str, bytes | None] | None
    ) -> tuple[list[Tree], list[Tree]]:
        """(B's change not landed, landed whole), with A's interleaved change in either order."""
        if a is None:
            return [before], [apply(before, ch)]
        return [apply(before, a)], [apply(apply(before, a), ch), apply(apply(before, ch), a)]

    def _settle(
        self,
        what: str,
        before: Tree,
        ch: dict[str, bytes | None],
        exc: BaseException | None,
        injected: list[tuple[str, str, str]],
        a: dict[str, bytes | None] | None,
    ) -> tuple[Tree, bool]:
        """Check the head after B's operation; (the head, whether B's change landed)."""
        none, whole = self._outcomes(before, ch, a)
        allowed = whole if exc is None else none + whole
        actual = self._actual()
        note = (
            f"{what} with B's change {fmt_changes(ch)}, A's interleaved change "
            f"{fmt_changes(a) if a else None}, faults injected {injected}, "
            f"raised {exc!r}"
        )
        assert_one_of(actual, allowed, note)
        landed = actual in whole
        if landed and actual in none and ch:
            # the same head either way (B's change landed and A's overwrote it, or it
            # never landed): the commits since tell which
            landed = any(
                all(api_files(self.vol_a, at=seq).get(p) == v for p, v in ch.items())
                for seq in range(self.seq + 1, self._head_seq() + 1)
            )
        key = what.split(" with")[0]
        self.seen[f"{key}: {'ok' if exc is None else 'raised'}"] += 1
        if exc is not None and ch and actual in whole and actual not in none:
            self.seen[f"{key}: raised, landed"] += 1
        if a:
            self.seen["interleaved commit of A"] += 1
        if a:
            self._touched_by_others(set(a))
        self._record_head(actual)
        return actual, landed

    def _land_mount_change(self, ch: dict[str, bytes | None]) -> None:
        for p, v in ch.items():
            if v is None:
                self.synced.pop(p, None)
            else:
                self.synced[p] = v

    def _note_lingering(
        self, exc: BaseException | None, ch: dict[str, bytes | None], landed: bool
    ) -> None:
        if exc is not None and not landed and ch:
            notes = " ".join(getattr(exc, "__notes__", []) or [])
            if "could not be withdrawn" in notes:
                self.lingering.append((dict(ch), set()))

    # -- A: direct, no faults -------------------------------------------------------------------
    def _after_a(self, expected: Tree, what: str, touched: set[str]) -> None:
        actual = self._actual()
        if actual != expected:
            # a change set B gave up on (and could not withdraw) may ride along
            for ch, since in self.lingering:
                alt = apply(expected, {p: v for p, v in ch.items() if p not in touched})
                if actual == alt:
                    lost = sorted(set(ch) & (since | touched))
                    assert not lost, (
                        f"{what}: a change set B's mount gave up on ({fmt_changes(ch)}) "
                        f"landed later, over versions written since at {lost}"
                    )
                    self._land_mount_change(ch)
                    self.lingering.remove((ch, since))
                    break
            else:
                raise AssertionError(
                    f"{what} differs from the model (actual, model): "
                    f"{differences(actual, expected)}"
                )
        self._touched_by_others(touched)
        self._record_head(actual)

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
        data = content(seed, size)
        if self.synced.get(name) == data or self.local.get(name) == data:
            return  # the mount would see a new mtime, the model no change
        p = self.dir_b / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        self.local[name] = data

    @rule(i=INDEX)
    def b_delete(self, i: int) -> None:
        files = sorted(self.local)
        if not files:
            return
        p = files[i % len(files)]
        os.unlink(self.dir_b / p)
        del self.local[p]

    # -- B's mount, through the proxy ----------------------------------------------------------
    @rule(writes=WRITES, faults=FAULTS, inter=INTERLEAVE)
    def b_commit(
        self, writes: list[tuple[str, int, int]], faults: list[tuple[str, int, int]], inter: Any
    ) -> None:
        for name, size, seed in writes:
            self.b_write(name, size, seed)
        ch = changes_of(self.local, self.synced)
        before = dict(self.head)
        exc, injected, a = self._b_op(faults, inter, self.mount_b.commit)
        _actual, landed = self._settle("B's commit", before, ch, exc, injected, a)
        if landed:
            self._land_mount_change(ch)
        if exc is None:
            self.lingering.clear()  # withdrawn (or landed) by this commit
        self._note_lingering(exc, ch, landed)

    @rule(writes=WRITES, faults=FAULTS, inter=INTERLEAVE)
    def b_reload(
        self, writes: list[tuple[str, int, int]], faults: list[tuple[str, int, int]], inter: Any
    ) -> None:
        for name, size, seed in writes:
            self.b_write(name, size, seed)
        ch = changes_of(self.local, self.synced)
        before = dict(self.head)
        local_before = dict(self.local)
        exc, injected, a = self._b_op(faults, inter, self.mount_b.reload)
        actual, landed = self._settle("B's reload", before, ch, exc, injected, a)
        if landed:
            self._land_mount_change(ch)
        folder = scan_files(self.dir_b)
        none, whole = self._outcomes(before, ch, a)
        targets = [actual, *whole, *none, apply(before, ch)]
        what = (
            f"B's folder after B's reload (raised {exc!r}, faults {injected}, "
            f"A's interleaved change {fmt_changes(a) if a else None})"
        )
        if exc is None:
            if folder not in targets:
                raise AssertionError(
                    f"{what} is no head the reload could take (folder, head): "
                    f"{differences(folder, actual)}"
                )
            self.local, self.synced = dict(folder), dict(folder)
            self.lingering.clear()
            return
        # failed: every file holds what it held, or a version the reload was bringing in
        for p in sorted(set(folder) | set(local_before)):
            v = folder.get(p)
            if v == local_before.get(p):
                continue
            if not any(t.get(p) == v for t in targets):
                raise AssertionError(
                    f"{what}: {p} holds {short(v)}, neither its local version "
                    f"{short(local_before.get(p))} nor one of a head "
                    f"{sorted({short(t.get(p)) for t in targets})}"
                )
            # written (or deleted) by the reload: the mount records it as synced
            if v is None:
                self.synced.pop(p, None)
            else:
                self.synced[p] = v
        self.local = dict(folder)
        self._note_lingering(exc, ch, landed)

    # -- B's batch uploads, through the proxy --------------------------------------------------
    def _b_batch(self, ch: dict[str, bytes | None]) -> None:
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
        ch: dict[str, bytes | None] = {p: content(seed + 7 * i, size) for i, p in enumerate(paths)}
        before = dict(self.head)
        exc, injected, a = self._b_op(faults, inter, lambda: self._b_batch(ch))
        _actual, landed = self._settle("B's batch upload", before, ch, exc, injected, a)
        self._touched_by_others(set(ch) if landed else set())
        if exc is not None:
            self.failed_batches.append(ch)

    @precondition(lambda self: bool(self.failed_batches))
    @rule()
    def b_batch_again(self) -> None:
        """The faults are gone: doing the failed batch again lands it."""
        ch = self.failed_batches.pop(0)
        before = dict(self.head)
        exc, injected, a = self._b_op([], None, lambda: self._b_batch(ch))
        assert exc is None
        self._settle("B's batch upload done again", before, ch, exc, injected, a)
        self._touched_by_others(set(ch))

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

    @invariant()
    def folder_matches_the_model(self) -> None:
        if self.mount_b is None:
            return
        folder = scan_files(self.dir_b)
        if folder != self.local:
            raise AssertionError(
                f"B's folder differs from the model (folder, model): {differences(folder, self.local)}"
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
            if self.mount_b is not None:
                self.proxy.clear()
                self.mount_b._detach()
                self.mount_b = None


def run(
    seaweedfs: Any, s3_bucket: str, s3_store: Any, tmp_path: Path, examples: int, steps: int
) -> None:
    with client_b(
        seaweedfs,
        s3_bucket,
        s3_store.prefix,
        seed=11,
        read_timeout=B_READ_TIMEOUT,
        attempts=B_ATTEMPTS,
    ) as (proxy, store_b):
        FaultModel.store_a = s3_store
        FaultModel.store_b = store_b
        FaultModel.proxy = proxy
        FaultModel.seen.clear()
        FaultModel.tmp = tmp_path / uuid.uuid4().hex[:6]
        run_state_machine_as_test(FaultModel, settings=model_settings(examples, steps))
        # the faults were real, and B's operations failed in each way
        seen, counts = FaultModel.seen, proxy.counts
        assert all(counts[k] > 3 for k in ("error500", "drop", "lost_response")), counts
        failed = sum(n for k, n in seen.items() if k.endswith(": raised"))
        assert failed >= 8 and seen["interleaved commit of A"] >= 3, seen
        assert sum(n for k, n in seen.items() if k.endswith("raised, landed")) >= 1, seen


def test_fault_model_s3(seaweedfs: Any, s3_bucket: str, s3_store: Any, tmp_path: Path) -> None:
    run(seaweedfs, s3_bucket, s3_store, tmp_path, examples=14, steps=25)
