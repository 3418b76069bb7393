"""What the fault models share (``test_model_faults.py`` for a volume's mount,
``test_model_nfs_faults.py`` for a network file system's live folder, and the run of
``test_model_dict_faults.py``): the faults a rule can aim at B's requests, the files-only
model trees, and a base state machine for two clients of one volume on a real SeaweedFS
where client B talks to the store through the fault proxy (``faultproxy.py``).

The base class holds what both folder models check the same way:

* B's operation runs with the chosen faults armed (:meth:`FolderFaultModel._b_op`),
  perhaps with a change of A between two of B's attempts; B raises only the package's
  errors, and never with no fault injected;
* the head afterwards is B's change landed whole or (after a raise) not at all, in
  either order with A's interleaved change (:meth:`FolderFaultModel._settle`); a change
  set that B gave up on and could not take back may land later, but only where nobody
  wrote since (:meth:`FolderFaultModel._observe`);
* a sync of B's folder (a mount's ``reload()``, a live folder's ``sync()``) never leaves
  a torn file (:meth:`FolderFaultModel._sync_folder`), and B's folder always matches the
  model (the invariant).

Hypothesis seeds a model's derandomized examples from the source of its class
(``function_digest`` of the state machine), so any edit of a model class's body picks
other examples: run the model again after one, since its run checks that the faults
and outcomes it needs did happen (:func:`run_model`, :func:`run_folder_model`).
"""

from __future__ import annotations

import itertools
import os
import random
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faultproxy import STALL, FaultProxy, client_b
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, run_state_machine_as_test
from modeltest import api_files, changes_of, model_settings, scan_files

from jupyter_volume.errors import NotFoundError, VolumeError

Tree = dict[str, bytes]  # files only: path -> bytes
Changes = dict[str, "bytes | None"]  # path -> new bytes, or None: deleted

# -- the faults --------------------------------------------------------------------------------------

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

FAULT = st.tuples(
    st.sampled_from(
        ["record-put", "record-put", "pack-put", "intent-put", "tree-put", "get", "list"]
        + ["delete", "any"]
    ),
    st.integers(0, 3),  # the kind, among those that apply to the target
    st.sampled_from([1, 2, 3, 3, 4]),  # on the next N matching requests (3 = B's attempts)
)
INDEX = st.integers(0, 10_000)


def kinds_for(target: str) -> list[str]:
    method = TARGETS[target][0]
    return GET_KINDS if method == "GET" else ANY_KINDS if method is None else PUT_KINDS


def stages_of(faults: list[tuple[str, int, int]]) -> list[tuple[Any, ...]]:
    """The proxy's stages for ``faults`` (target, kind index, how many), each armed
    once the one before has happened: (kind, method, path part, how many)."""
    stages = []
    for target, k, n in faults:
        kinds = kinds_for(target)
        kind = kinds[k % len(kinds)]
        # each stall costs a read timeout
        stages.append((kind, *TARGETS[target], min(n, 2) if kind == STALL else n))
    return stages


def under_faults(
    proxy: FaultProxy,
    stages: list[tuple[Any, ...]],
    then: Callable[[], None] | None,
    fn: Callable[[], Any],
    *,
    catch: tuple[type[BaseException], ...] = (VolumeError,),
    tell: str = "",
) -> tuple[Any, BaseException | None, list[tuple[str, str, str]]]:
    """Run B's operation ``fn`` with ``stages`` armed on ``proxy`` (``then`` at the first
    fault) and cleared again afterwards: (what ``fn`` returned or None, what it raised
    of ``catch``, the faults injected). Any other exception fails the test: B raises
    only the package's errors."""
    proxy.clear()
    proxy.arm_stages(stages, then)
    start = len(proxy.log)
    exc: BaseException | None = None
    out: Any = None
    try:
        out = fn()
    except catch as e:
        exc = e
    except Exception as e:
        raise AssertionError(
            f"B raised {type(e).__name__} (not one of the package's errors): {e}{tell}"
        ) from e
    finally:
        proxy.clear()
    return out, exc, [entry for entry in proxy.log[start:] if entry[2] != "ok"]


# -- files-only model trees ---------------------------------------------------------------------------


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


# -- the base state machine --------------------------------------------------------------------------


@dataclass
class Lingering:
    """A change set of B that failed without landing and could not be taken back."""

    changes: Changes
    origin: str  # "folder" (B's mount or live folder) or "api"
    since: set[str] = field(default_factory=set)  # paths written by anyone since


class FolderFaultModel(RuleBasedStateMachine):
    """Two clients of one volume: A (``vol_a``, straight to the store) and B, through
    the proxy, with a folder ``dir_b`` that the subclass mounts as ``mount_b``.

    A subclass sets ``vol_a`` (A's volume, read for the head), ``dir_b`` and ``mount_b``
    in its ``__init__`` (after this one's), and provides :meth:`_a_interleaved`."""

    store_a: Any = None
    store_b: Any = None
    proxy: FaultProxy = None  # type: ignore[assignment]
    tmp: Path = Path()
    counter: itertools.count[int]
    seen: Counter[str]  # what the run went through (asserted at its end)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.counter = itertools.count()
        cls.seen = Counter()

    def __init__(self) -> None:
        super().__init__()
        self.n = next(self.counter)
        self.vol_a: Any = None
        self.dir_b = self.tmp / f"ex{self.n}" / "B"
        self.mount_b: Any = None
        self.seq = 0
        self.head: Tree = {}
        self.local: Tree = {}  # B's folder
        self.synced: Tree = {}  # what B's folder last synced, path by path
        self.snapshots: dict[int, Tree] = {}  # every head seen, by its commit
        self.lingering: list[Lingering] = []
        self.story: list[str] = []

    def _a_interleaved(self, ch: Changes) -> None:
        """A's change between two of B's attempts (on the proxy's thread)."""
        raise NotImplementedError

    # -- the head ------------------------------------------------------------------------------
    def _head_seq(self) -> int:
        return int(self.vol_a.history(limit=1)[0].seq)

    def _actual(self) -> Tree:
        return api_files(self.vol_a)

    def _tell(self) -> str:
        return "\n  steps of this example:\n    " + "\n    ".join(self.story)

    def _record_head(self, tree: Tree) -> None:
        self.head = tree
        seq = self._head_seq()
        assert seq >= self.seq, f"the head went back from {self.seq} to {seq}"
        if seq != self.seq or seq not in self.snapshots:
            self.seq = seq
            self.snapshots[seq] = dict(tree)

    def _touched(self, paths: set[str], but: Lingering | None = None) -> None:
        for li in self.lingering:
            if li is not but:
                li.since |= paths

    def _land_synced(self, ch: Changes) -> None:
        for p, v in ch.items():
            if v is None:
                self.synced.pop(p, None)
            else:
                self.synced[p] = v

    # -- B's operations, through the proxy -----------------------------------------------------
    def _b_op(
        self,
        faults: list[tuple[str, int, int]],
        inter: Any,
        fn: Callable[[], Any],
        missing: str | None = None,
    ) -> tuple[BaseException | None, list[tuple[str, str, str]], Changes | None, Any]:
        """Run B's operation ``fn`` with ``faults`` armed on the proxy (cleared again
        afterwards), and A's change ``inter`` (path, size, seed) at the first fault:
        (what it raised, the faults injected, A's interleaved change or None, what
        ``fn`` returned). ``missing``: a path the operation may find missing (then
        FileNotFoundError needs no fault)."""
        box: dict[str, Any] = {}
        then: Callable[[], None] | None = None
        a_change: Changes | None = None
        if inter is not None:
            path, size, seed = inter
            a_change = {path: content(seed, size)}

            def a_changes() -> None:  # on the proxy's thread, before B hears of the fault
                try:
                    self._a_interleaved(a_change)  # type: ignore[arg-type]
                    box["ran"] = True
                except BaseException as e:  # noqa: BLE001 - reported below
                    box["error"] = e

            then = a_changes

        out, exc, injected = under_faults(
            self.proxy, stages_of(faults), then, fn, tell=self._tell()
        )
        if "error" in box:
            raise AssertionError(f"A's interleaved change failed: {box['error']!r}")
        ran = a_change if box.get("ran") else None
        legit = (
            isinstance(exc, NotFoundError)
            and missing is not None
            and missing not in self.head
            and not (ran and missing in ran)
        )
        if exc is not None and not injected and not legit:
            raise AssertionError(f"B raised with no fault injected: {exc!r}{self._tell()}")
        if ran:
            self.seen["interleaved change of A"] += 1
        return exc, injected, ran, out

    @staticmethod
    def _outcomes(before: Tree, ch: Changes, a: Changes | None) -> tuple[list[Tree], list[Tree]]:
        """(B's change not landed, landed whole), with A's interleaved change in either order."""
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
                        raise AssertionError(
                            f"{what}: a change set B gave up on ({li.origin}: "
                            f"{fmt(li.changes)}) landed later, over versions written since "
                            f"at {lost}{self._tell()}"
                        )
                    self.lingering.remove(li)
                    self.seen["a change set B gave up on landed later"] += 1
                    if li.origin == "folder":
                        self._land_synced(li.changes)
                    self._touched(set(li.changes))
                    return actual
        diffs = "; ".join(
            f"vs allowed #{i}: {differences(actual, t)}" for i, t in enumerate(allowed)
        )
        raise AssertionError(
            f"{what}: the head is none of the allowed outcomes (actual, model) {diffs}"
            + self._tell()
        )

    def _settle(
        self,
        what: str,
        before: Tree,
        ch: Changes,
        exc: BaseException | None,
        injected: list[tuple[str, str, str]],
        a: Changes | None,
        origin: str = "api",
    ) -> tuple[Tree, bool]:
        """Check the head after B's operation ``what`` (``B's <operation>[ of ...]``)
        that changed ``ch``; (the head, whether B's change landed). A change set that
        failed and could not be taken back is remembered as lingering (of ``origin``)."""
        none, whole = self._outcomes(before, ch, a)
        note = (
            f"{what} with B's change {fmt(ch)}, A's interleaved change {fmt(a)}, "
            f"faults injected {injected}, raised {exc!r}"
        )
        self.story.append(note)
        actual = self._observe(whole if exc is None else none + whole, note, set(ch))
        landed = actual in whole
        if landed and actual in none and ch:
            # the same head either way (B's change landed and A's overwrote it, or it
            # never landed): the commits since tell which
            landed = any(
                all(api_files(self.vol_a, at=seq).get(p) == v for p, v in ch.items())
                for seq in range(self.seq + 1, self._head_seq() + 1)
            )
        key = what.split(" of")[0]
        self.seen[f"{key}: {'ok' if exc is None else 'raised'}"] += 1
        if exc is not None and ch and landed:
            self.seen["raised, landed"] += 1
        if a:
            self._touched(set(a))
        if landed:
            self._touched(set(ch))
        if exc is not None and ch and not landed:
            notes = " ".join(getattr(exc, "__notes__", []) or [])
            if "could not be withdrawn" in notes:
                self.seen["a change set B gave up on could not be taken back"] += 1
                self.lingering.append(Lingering(dict(ch), origin))
        self._record_head(actual)
        return actual, landed

    def _observe_unchanged(self, before: Tree, a: Changes | None, what: str) -> Tree:
        """Check the head after B's operation ``what`` that changes nothing (a read, or
        a removal of a missing file): the head before it, with A's interleaved change."""
        now = self._observe(self._outcomes(before, {}, a)[0], what, set())
        self._record_head(now)
        if a:
            self._touched(set(a))
        return now

    def _after_a(self, expected: Tree, what: str, touched: set[str]) -> None:
        """Check the head after a change of A (or C) that should give ``expected``."""
        self.story.append(f"{what}: {sorted(touched)}")
        actual = self._observe([expected], what, touched)
        self._touched(touched)
        self._record_head(actual)

    # -- B's folder ----------------------------------------------------------------------------
    def _write_in_folder(self, name: str, data: bytes) -> None:
        if self.synced.get(name) == data or self.local.get(name) == data:
            return  # the folder would see a new mtime, the model no change
        p = self.dir_b / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        self.local[name] = data
        self.story.append(f"B's folder: write {name} {short(data)}")

    def _delete_in_folder(self, i: int) -> None:
        files = sorted(self.local)
        if not files:
            return
        p = files[i % len(files)]
        os.unlink(self.dir_b / p)
        del self.local[p]
        self.story.append(f"B's folder: delete {p}")

    def _sync_folder(self, what: str, fn: Callable[[], Any], faults: list[Any], inter: Any) -> None:
        """B's folder pushes its changes and pulls the head (``fn``: a mount's
        ``reload()``, a live folder's ``sync()``); afterwards, the folder is a head the
        sync could take, or (after a raise) every file holds what it held or a version
        of a head the pull was bringing in, never a torn file."""
        ch = changes_of(self.local, self.synced)
        before = dict(self.head)
        local_before = dict(self.local)
        exc, injected, a, _ = self._b_op(faults, inter, fn)
        actual, landed = self._settle(what, before, ch, exc, injected, a, origin="folder")
        if landed:
            self._land_synced(ch)
        folder = scan_files(self.dir_b)
        none, whole = self._outcomes(before, ch, a)
        targets = [actual, *whole, *none, apply(before, ch)]
        said = (
            f"B's folder after {what} (raised {exc!r}, faults {injected}, "
            f"A's interleaved change {fmt(a)})"
        )
        if exc is None:
            if folder not in targets:
                raise AssertionError(
                    f"{said} is no head it could take (folder, head): "
                    f"{differences(folder, actual)}{self._tell()}"
                )
            self.local, self.synced = dict(folder), dict(folder)
            # the push settled (took back) every change set of the folder's before it
            self.lingering = [li for li in self.lingering if li.origin != "folder"]
            return
        for p in sorted(set(folder) | set(local_before)):
            v = folder.get(p)
            if v == local_before.get(p):
                continue
            if not any(t.get(p) == v for t in targets):
                raise AssertionError(
                    f"{said}: {p} holds {short(v)}, neither its local version "
                    f"{short(local_before.get(p))} nor one of a head "
                    f"{sorted({short(t.get(p)) for t in targets})}{self._tell()}"
                )
            # written (or deleted) by the pull: the folder records it as synced
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

    def _let_go_of_b(self) -> None:
        """The end of an example, however it ended: no fault stays armed, B's folder
        is let go without a commit."""
        if self.mount_b is not None:
            self.proxy.clear()
            self.mount_b._detach()
            self.mount_b = None


def run_model(
    machine: Any,
    seaweedfs: Any,
    s3_bucket: str,
    s3_store: Any,
    *,
    seed: int,
    examples: int,
    steps: int,
    read_timeout: float = B_READ_TIMEOUT,
    tmp_path: Path | None = None,
) -> tuple[Counter[str], Counter[str]]:
    """Run the fault model ``machine`` (client B through a fresh fault proxy seeded
    ``seed``) and check that its faults were real and that B's operations failed
    often enough to mean something; returns (what the run went through, the faults
    the proxy injected) for the model's own checks."""
    with client_b(
        seaweedfs,
        s3_bucket,
        s3_store.prefix,
        seed=seed,
        read_timeout=read_timeout,
        attempts=B_ATTEMPTS,
    ) as (proxy, store_b):
        machine.store_a = s3_store
        machine.store_b = store_b
        machine.proxy = proxy
        machine.seen.clear()
        if tmp_path is not None:
            machine.tmp = tmp_path / uuid.uuid4().hex[:6]
        run_state_machine_as_test(machine, settings=model_settings(examples, steps))
        seen, counts = machine.seen, proxy.counts
        print(f"\n{machine.__name__}:", dict(sorted(seen.items())), dict(counts))
        assert all(counts[k] > 3 for k in ("error500", "drop", "lost_response")), counts
        assert sum(n for k, n in seen.items() if k.endswith(": raised")) >= 8, seen
        return seen, counts


def run_folder_model(
    machine: Any,
    seaweedfs: Any,
    s3_bucket: str,
    s3_store: Any,
    tmp_path: Path,
    *,
    seed: int,
    examples: int,
    steps: int,
) -> None:
    """:func:`run_model` for a :class:`FolderFaultModel`, which must also have met
    A's interleaved changes and an operation of B that raised although it landed."""
    seen, _counts = run_model(
        machine,
        seaweedfs,
        s3_bucket,
        s3_store,
        seed=seed,
        examples=examples,
        steps=steps,
        tmp_path=tmp_path,
    )
    assert seen["interleaved change of A"] >= 3 and seen["raised, landed"] >= 1, seen
