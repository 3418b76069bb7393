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
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from faultproxy import STALL, FaultProxy, client_b
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)
from modeltest import StoreAs, api_files, changes_of, model_settings, scan_files

from jupyter_volume import NetworkFileSystem
from jupyter_volume.errors import NotFoundError, VolumeError
from jupyter_volume.results import FileEntryType

pytestmark = pytest.mark.s3

# -- the model's vocabulary ---------------------------------------------------------------------

FILES = ["a.txt", "b.bin", "sub/c", "sub/d.bin"]
DIR_NAMES = ["c", "d.bin"]  # what add_local_dir puts below "sub"
# empty; inline in the tree node; one small chunk; a few chunks
SIZES = [0, 7, 600, 5000, 150_000]

Tree = dict[str, bytes]  # files only: path -> bytes
Changes = dict[str, "bytes | None"]

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
HANG_GUARD = 60.0  # seconds: a folder that has not converged by then never will


def kinds_for(target: str) -> list[str]:
    method = TARGETS[target][0]
    return GET_KINDS if method == "GET" else ANY_KINDS if method is None else PUT_KINDS


def content(seed: int, size: int) -> bytes:
    return random.Random(seed * 1_000_003 + size).randbytes(size)


def apply(tree: Tree, changes: Changes) -> Tree:
    new = dict(tree)
    for p, v in changes.items():
        if v is None:
            new.pop(p, None)
        else:
            new[p] = v
    return new


def short(v: bytes | None) -> str:
    return "-" if v is None else f"{len(v)} B {v[:6].hex()}"


def fmt(ch: Changes | None) -> Any:
    return None if ch is None else {p: short(v) for p, v in sorted(ch.items())}


def differences(actual: Tree, expected: Tree) -> dict[str, tuple[str, str]]:
    return {
        p: (short(actual.get(p)), short(expected.get(p)))
        for p in sorted(set(actual) | set(expected))
        if actual.get(p) != expected.get(p)
    }


# -- strategies -------------------------------------------------------------------------------------

FAULT = st.tuples(
    st.sampled_from(
        ["record-put", "record-put", "pack-put", "intent-put", "tree-put", "get", "list"]
        + ["delete", "any"]
    ),
    st.integers(0, 3),  # the kind, among those that apply to the target
    st.sampled_from([1, 2, 3, 3, 4]),  # on the next N matching requests (3 = B's attempts)
)
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
INDEX = st.integers(0, 10_000)


@dataclass
class Lingering:
    """A change set of B that failed without landing and could not be taken back."""

    changes: Changes
    origin: str  # "folder" or "api"
    since: set[str] = field(default_factory=set)  # paths written by anyone since


class NfsFaultModel(RuleBasedStateMachine):
    store_a: Any = None
    store_b: Any = None
    proxy: FaultProxy = None  # type: ignore[assignment]
    tmp: Path = Path()
    counter = itertools.count()
    seen: Counter[str] = Counter()  # what the run went through (asserted at its end)

    def __init__(self) -> None:
        super().__init__()
        n = next(self.counter)
        self.n = n
        self.name = f"nfs-faults-{n}"
        self.mount_b: Any = None
        self.nfs_a = NetworkFileSystem.from_name(
            self.name, create_if_missing=True, store=self.store_a
        )
        self.nfs_a.hydrate()
        self.nfs_a._retention_due(wait=True)  # (its first look, out of the way)
        self.nfs_b = NetworkFileSystem.from_name(self.name, store=self.store_b)
        self.nfs_b.hydrate()
        self.nfs_b._retention_due(wait=True)  # never in the middle of an armed fault
        self.seq = self._head_seq()
        self.root = self.tmp / f"ex{n}"
        self.dir_b = self.root / "B"
        self.uploads = itertools.count()
        # the folder's own loop sleeps: B syncs when a rule says (see the teardown)
        self.mount_b = self.nfs_b.mount(self.dir_b, interval=1e6, settle=0.05)
        self.head: Tree = {}
        self.local: Tree = {}  # B's folder
        self.synced: Tree = {}  # what B's folder last synced, path by path
        self.lingering: list[Lingering] = []
        self.story: list[str] = []

    # -- helpers -------------------------------------------------------------------------------
    def _head_seq(self) -> int:
        return self.nfs_a.history(limit=1)[0].seq

    def _actual(self) -> Tree:
        return api_files(self.nfs_a._vol)

    def _tell(self) -> str:
        return "\n  steps of this example:\n    " + "\n    ".join(self.story)

    def _touched(self, paths: set[str], but: Lingering | None = None) -> None:
        for li in self.lingering:
            if li is not but:
                li.since |= paths

    def _b_op(
        self,
        faults: list[tuple[str, int, int]],
        inter: Any,
        fn: Callable[[], Any],
        missing: str | None = None,
    ) -> tuple[BaseException | None, list[tuple[str, str, str]], Changes | None, Any]:
        """Run B's operation ``fn`` with ``faults`` armed on the proxy (cleared again
        afterwards): (what it raised, the faults injected, A's interleaved write or None,
        what ``fn`` returned). ``missing``: a path the operation may find missing (then
        FileNotFoundError needs no fault)."""
        proxy = self.proxy
        box: dict[str, Any] = {}
        proxy.clear()
        then: Callable[[], None] | None = None
        a_change: Changes | None = None

        stages = []  # (kind, method, path part, how many), each after the one before
        for target, k, n in faults:
            kinds = kinds_for(target)
            kind = kinds[k % len(kinds)]
            # each stall costs a read timeout
            stages.append((kind, *TARGETS[target], min(n, 2) if kind == STALL else n))

        if inter is not None:
            path, size, seed = inter
            a_change = {path: content(seed, size)}

            def a_writes() -> None:  # on the proxy's thread, before B hears of the fault
                try:
                    data = a_change[path]  # type: ignore[index]
                    assert self.nfs_a.write_file(path, io.BytesIO(data)) == len(data)
                    box["ran"] = True
                except BaseException as e:  # noqa: BLE001 - reported by the rule
                    box["error"] = e

            then = a_writes

        proxy.arm_stages(stages, then)
        start = len(proxy.log)
        exc: BaseException | None = None
        out: Any = None
        try:
            out = fn()
        except VolumeError as e:
            exc = e
        except Exception as e:
            raise AssertionError(
                f"B raised {type(e).__name__} (not one of the package's errors): {e}{self._tell()}"
            ) from e
        finally:
            proxy.clear()
        injected = [entry for entry in proxy.log[start:] if entry[2] != "ok"]
        if "error" in box:
            raise AssertionError(f"A's interleaved write failed: {box['error']!r}")
        legit = (
            isinstance(exc, NotFoundError)
            and missing is not None
            and missing not in self.head
            and not (box.get("ran") and missing in a_change)  # type: ignore[operator]
        )
        if exc is not None and not injected and not legit:
            raise AssertionError(f"B raised with no fault injected: {exc!r}{self._tell()}")
        return exc, injected, (a_change if box.get("ran") else None), out

    @staticmethod
    def _outcomes(before: Tree, ch: Changes, a: Changes | None) -> tuple[list[Tree], list[Tree]]:
        """(B's change not landed, landed whole), with A's interleaved write in either order."""
        if a is None:
            return [before], [apply(before, ch)]
        return [apply(before, a)], [apply(apply(before, a), ch), apply(apply(before, ch), a)]

    def _observe(self, allowed: list[Tree], what: str, own: set[str]) -> Tree:
        """The head, which must be one of ``allowed``, or one of them with a change set
        that B gave up on (and could not take back) landed too: only where nobody wrote
        since that change set failed (else older bytes went over newer ones)."""
        actual = self._actual()
        if actual in allowed:
            return actual
        for li in list(self.lingering):
            if set(li.changes) & own:
                continue  # (never carried beside a change of the same path)
            for t in allowed:
                if actual == apply(t, li.changes):
                    lost = sorted(set(li.changes) & li.since)
                    if lost:
                        self._older_over_newer(what, li, lost)
                    self.lingering.remove(li)
                    self.seen["a change set B gave up on landed later"] += 1
                    if li.origin == "folder":
                        self._land_folder_change(li.changes)
                    self._touched(set(li.changes))
                    return actual
        diffs = "; ".join(
            f"vs allowed #{i}: {differences(actual, t)}" for i, t in enumerate(allowed)
        )
        raise AssertionError(
            f"{what}: the head is none of the allowed outcomes (actual, model) {diffs}"
            + self._tell()
        )

    def _older_over_newer(self, what: str, li: Lingering, lost: list[str]) -> None:
        raise AssertionError(
            f"{what}: a change set B gave up on ({li.origin}: {fmt(li.changes)}) "
            f"landed later, over versions written since at {lost}{self._tell()}"
        )

    def _record_head(self, tree: Tree) -> None:
        self.head = tree
        seq = self._head_seq()
        assert seq >= self.seq, f"the head went back from {self.seq} to {seq}"
        self.seq = seq

    def _settle(
        self,
        what: str,
        before: Tree,
        ch: Changes,
        exc: BaseException | None,
        injected: list[tuple[str, str, str]],
        a: Changes | None,
    ) -> tuple[Tree, bool]:
        """Check the head after B's operation; (the head, whether B's change landed)."""
        none, whole = self._outcomes(before, ch, a)
        note = (
            f"{what} with B's change {fmt(ch)}, A's interleaved write {fmt(a)}, "
            f"faults injected {injected}, raised {exc!r}"
        )
        self.story.append(note)
        actual = self._observe(whole if exc is None else none + whole, note, set(ch))
        landed = actual in whole
        if landed and actual in none and ch:
            # the same head either way: the commits since tell whether B's landed
            landed = any(
                all(api_files(self.nfs_a._vol, at=seq).get(p) == v for p, v in ch.items())
                for seq in range(self.seq + 1, self._head_seq() + 1)
            )
        key = what.split(" of")[0]
        self.seen[f"{key}: {'ok' if exc is None else 'raised'}"] += 1
        if exc is not None and ch and landed:
            self.seen["raised, landed"] += 1
        if a:
            self.seen["interleaved write of A"] += 1
            self._touched(set(a))
        if landed:
            self._touched(set(ch))
        if exc is not None and ch and not landed:
            notes = " ".join(getattr(exc, "__notes__", []) or [])
            if "could not be withdrawn" in notes:
                self.seen["a change set B gave up on could not be taken back"] += 1
                origin = "folder" if what.startswith("B's sync") else "api"
                self.lingering.append(Lingering(dict(ch), origin))
        self._record_head(actual)
        return actual, landed

    def _land_folder_change(self, ch: Changes) -> None:
        for p, v in ch.items():
            if v is None:
                self.synced.pop(p, None)
            else:
                self.synced[p] = v

    # -- A: direct, no faults -------------------------------------------------------------------
    def _after_a(self, ch: Changes, what: str) -> None:
        self.story.append(f"{what}: {fmt(ch)}")
        actual = self._observe([apply(self.head, ch)], what, set(ch))
        self._touched(set(ch))
        self._record_head(actual)

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
        self._after_a(ch, "A's write_file")

    @rule(i=INDEX)
    def a_remove(self, i: int) -> None:
        files = sorted(self.head)
        if not files:
            return
        p = files[i % len(files)]
        self.nfs_a.remove_file(p)
        self._after_a({p: None}, "A's remove_file")

    @rule(w=WRITE)
    def c_write(self, w: tuple[str, int, int]) -> None:
        """A short-lived process C (a handle of its own: nothing shared with A's) writes
        one file: its first commit looks for change sets waiting in line."""
        path, size, seed = w
        data = content(seed + 5, size)
        c = NetworkFileSystem.from_name(self.name, store=StoreAs(self.store_a, f"c{uuid.uuid4()}"))
        assert c.write_file(path, io.BytesIO(data)) == len(data)
        self._after_a({path: data}, "C's write_file")

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
            self._observe(
                self._outcomes(before, {}, a)[0], f"B's remove_file of missing {p}", set()
            )
            self._record_head(self._actual())
            if a:
                self._touched(set(a))
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
        now = self._observe(self._outcomes(before, {}, a)[0], f"B's read_file of {p}", set())
        self._record_head(now)
        if a:
            self._touched(set(a))
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
        now = self._observe(self._outcomes(before, {}, a)[0], "B's listdir", set())
        self._record_head(now)
        if a:
            self._touched(set(a))
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
        data = content(seed, size)
        if self.synced.get(name) == data or self.local.get(name) == data:
            return  # the folder would see a new mtime, the model no change
        p = self.dir_b / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        self.local[name] = data
        self.story.append(f"B's folder: write {name} {short(data)}")

    @rule(i=INDEX)
    def b_folder_delete(self, i: int) -> None:
        files = sorted(self.local)
        if not files:
            return
        p = files[i % len(files)]
        os.unlink(self.dir_b / p)
        del self.local[p]
        self.story.append(f"B's folder: delete {p}")

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
        ch = changes_of(self.local, self.synced)
        before = dict(self.head)
        local_before = dict(self.local)
        exc, injected, a, _ = self._b_op(faults, inter, self.mount_b.sync)
        actual, landed = self._settle("B's sync", before, ch, exc, injected, a)
        if landed:
            self._land_folder_change(ch)
        folder = scan_files(self.dir_b)
        none, whole = self._outcomes(before, ch, a)
        targets = [actual, *whole, *none, apply(before, ch)]
        what = (
            f"B's folder after B's sync (raised {exc!r}, faults {injected}, "
            f"A's interleaved write {fmt(a)})"
        )
        if exc is None:
            if folder not in targets:
                raise AssertionError(
                    f"{what} is no head the sync could take (folder, head): "
                    f"{differences(folder, actual)}{self._tell()}"
                )
            self.local, self.synced = dict(folder), dict(folder)
            # the push settled (took back) every change set of the folder's before it
            self.lingering = [li for li in self.lingering if li.origin != "folder"]
            return
        # failed: every file holds what it held, or a version the pull was bringing in
        for p in sorted(set(folder) | set(local_before)):
            v = folder.get(p)
            if v == local_before.get(p):
                continue
            if not any(t.get(p) == v for t in targets):
                raise AssertionError(
                    f"{what}: {p} holds {short(v)}, neither its local version "
                    f"{short(local_before.get(p))} nor one of a head "
                    f"{sorted({short(t.get(p)) for t in targets})}{self._tell()}"
                )
            if v is None:
                self.synced.pop(p, None)
            else:
                self.synced[p] = v
        self.local = dict(folder)

    @invariant()
    def folder_matches_the_model(self) -> None:
        if self.mount_b is None:
            return
        folder = scan_files(self.dir_b)
        if folder != self.local:
            raise AssertionError(
                f"B's folder differs from the model (folder, model): "
                f"{differences(folder, self.local)}{self._tell()}"
            )

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
            self._after_a({"from-a.txt": theirs}, "A's write_file")
            self.head = {**self.head, "from-b.txt": mine}
            self._converge_by_itself()
            # B's API reads what everyone wrote
            for p, v in self.head.items():
                assert b"".join(self.nfs_b.read_file(p)) == v, p
            m, self.mount_b = self.mount_b, None
            m.unmount()
            assert self._actual() == self.head, differences(self._actual(), self.head)
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
        seed=13,
        read_timeout=B_READ_TIMEOUT,
        attempts=B_ATTEMPTS,
    ) as (proxy, store_b):
        NfsFaultModel.store_a = s3_store
        NfsFaultModel.store_b = store_b
        NfsFaultModel.proxy = proxy
        NfsFaultModel.seen.clear()
        NfsFaultModel.tmp = tmp_path / uuid.uuid4().hex[:6]
        run_state_machine_as_test(NfsFaultModel, settings=model_settings(examples, steps))
        # the faults were real, and B's operations failed in each way
        seen, counts = NfsFaultModel.seen, proxy.counts
        print("seen:", dict(seen), "faults:", dict(counts))
        assert all(counts[k] > 3 for k in ("error500", "drop", "lost_response")), counts
        failed = sum(n for k, n in seen.items() if k.endswith(": raised"))
        assert failed >= 8 and seen["interleaved write of A"] >= 3, seen
        assert seen["raised, landed"] >= 1, seen


def test_nfs_fault_model_s3(seaweedfs: Any, s3_bucket: str, s3_store: Any, tmp_path: Path) -> None:
    run(seaweedfs, s3_bucket, s3_store, tmp_path, examples=28, steps=15)
