"""A model-based (stateful) test of two mounts of one volume in two processes of one
machine: mount A in this process, mount B in a child process, against a model of what
each folder holds and what every commit of the volume holds.

``test_model_volume.py`` has its two mounts in one process (B opens the store under
another URL): they meet on the store only. Here the two writers share what two kernels
of one user on one machine share (the store URL, the state, cache and line folders), so
their commits meet in the machine's line first (docs/architecture.md, "The commit
protocol", steps 7-8; ``repository/line.py``):

* a commit made while the other writer is idle finds the line's lock free and nobody in
  line, and commits directly (``commit``, ``reload``, ``conflict`` in sequence);
* two commits made at once, with the line's lock held by the test until both change
  sets are in line (``commit_together``, ``conflict`` together, ``reload_beside``):
  whichever writer gets the lock leads one round that carries both (in key order: the
  one put in line first goes first; a change set that overlaps an earlier one waits for
  the next round, so two versions of one path never share a commit);
* two commits (or a reload and a commit, or two reloads) at once with nothing held
  (``commit_race``, ``reload_beside``): whatever the timing makes of it;
* B's process killed (``kill_b``) while its commit waits in line, while it may be
  leading a round that carries A's change set, or at some moment of a commit or a
  reload, and B's folder mounted again by a new process (which commits the edits left
  from the earlier mount, then brings the folder to the head).

The model (the same rules as ``test_model_volume.py``, README "Semantics worth
knowing"): a commit publishes the paths whose local state differs from what the mount
last synced (files written, edited in place, deleted, renamed; folders made, removed,
renamed), onto the newest head; paths it did not change keep the other writer's
version (no lost update between writers of different files); for a path both changed,
the later commit (higher seq) wins whole and the earlier version stays in history.
Commits made at once are ordered by the seqs they returned (one seq for both: they
change different files); after a kill, by whichever order of the two change sets the
commits read back as (each lands once, whole, or changes nothing). A reload commits
first, then the folder equals the head it read. Checked: each folder after every step
(B's through the child), the head through the API (``listdir(recursive=True)``,
``read_file``), and at the end, after both reloaded, both folders equal the head,
``history()`` lists exactly the commits the model knows, each reads back (``at=``) as
the model recorded it, and its added / modified / deleted counts are the files that
changed since the commit before it.

B's process is a long-lived ``python -c`` child reading JSON commands on stdin and
answering one JSON line each (open a mount, write / edit / delete / rename, commit,
reload, scan the folder, close the mount); the file operations run the same code in
both processes (``OPS``). One is started per test (and the next one ahead, for after a
kill); all are stopped at the end, whatever happens.

As in ``test_model_volume.py``, the machine never writes back exactly what the mount
last synced at a path (a rewrite of the same bytes is a change by the mount's rules,
not by the model's).
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import itertools
import json
import os
import queue
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)
from modeltest import (
    DIR,
    apply,
    assert_same,
    changes_of,
    model_settings,
    parents,
    read,
    show,
    under,
)

from jupyter_volume import Volume
from jupyter_volume.repository.line import LocalLine
from jupyter_volume.results import FileEntryType

pytestmark = pytest.mark.slow  # long in all: started first (conftest)

# -- file operations, run the same way in both processes ---------------------------------

OPS = textwrap.dedent(
    """
    import hashlib, os, random, shutil

    def content(seed, size):
        return random.Random(seed * 1_000_003 + size).randbytes(size)

    def scan(root):
        # every folder ("DIR") and file ([sha256, size, permission bits]) under root
        out = {}
        for d, dirs, files in os.walk(root):
            rel = os.path.relpath(d, root)
            pre = "" if rel == "." else rel + "/"
            for n in dirs:
                out[pre + n] = "DIR"
            for n in files:
                p = os.path.join(d, n)
                with open(p, "rb") as f:
                    data = f.read()
                out[pre + n] = [hashlib.sha256(data).hexdigest(), len(data), os.stat(p).st_mode & 0o777]
        return out

    def do(root, cmd):
        op = cmd["op"]
        p = os.path.join(root, cmd.get("path", ""))
        if op == "write":
            os.makedirs(os.path.dirname(p), exist_ok=True)
            new = not os.path.exists(p)
            with open(p, "wb") as f:
                f.write(content(cmd["seed"], cmd["size"]))
            if new:
                os.chmod(p, 0o644)
        elif op == "edit":  # 100 bytes at ``at``, or appended (at < 0)
            with open(p, "r+b") as f:
                if cmd["at"] < 0:
                    f.seek(0, 2)
                else:
                    f.seek(cmd["at"])
                f.write(content(cmd["seed"], 100))
        elif op == "delete":
            os.unlink(p)
        elif op == "mkdir":
            os.makedirs(p)
        elif op == "rmtree":  # rm -rf
            shutil.rmtree(p)
        elif op == "rename":
            dst = os.path.join(root, cmd["dst"])
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.rename(p, dst)
        elif op == "scan":
            return scan(root)
        else:
            raise ValueError(f"unknown operation {op!r}")
        return None
    """
)

_ops: dict[str, Any] = {}
exec(OPS, _ops)  # noqa: S102 (our own code, shared with the child)
content: Callable[[int, int], bytes] = _ops["content"]
do: Callable[[str, dict[str, Any]], Any] = _ops["do"]

CHILD = (
    textwrap.dedent(
        """
        import json, os, sys, traceback
        answers = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)  # whatever else is printed goes to stderr, not into the answers
        sys.stdout = sys.stderr
        from jupyter_volume import Volume
        from jupyter_volume.store import open_store

        store = open_store(sys.argv[1])
        mount = None
        """
    )
    + OPS
    + textwrap.dedent(
        """
        for line in sys.stdin:
            cmd = json.loads(line)
            op = cmd["op"]
            if op == "exit":
                break
            try:
                if op == "open":
                    vol = Volume.from_name(cmd["name"], store=store)
                    mount = vol.mount(cmd["dir"], background=False)
                    out = str(mount._repo.line.folder) if mount._repo.line else None
                elif op == "commit":
                    info = mount.commit()
                    out = None if info is None else info.seq
                elif op == "reload":
                    before = mount.last_commit
                    mount.reload()
                    after = mount.last_commit
                    out = None if after is before or after is None else after.seq
                elif op == "close":
                    m, mount = mount, None
                    if m is not None:
                        m.unmount()
                    out = None
                else:
                    out = do(str(mount.path), cmd)
                answers.write(json.dumps({"ok": out}) + "\\n")
            except BaseException:
                answers.write(json.dumps({"error": traceback.format_exc()}) + "\\n")
        """
    )
)

TIMEOUT = 120.0  # for one answer of the child (a commit that hangs fails the test)


class Child:
    """Mount B's process: one command, one answer."""

    def __init__(self, url: str, log: Path) -> None:
        self.log = log
        self._err = open(log, "wb")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
            env=dict(os.environ),  # the store's credentials, state, cache and line folders
        )
        self._answers: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._answers.put(line)
        self._answers.put(None)  # ended

    def send(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def answered(self) -> bool:
        return not self._answers.empty()

    def answer(self) -> Any:
        try:
            line = self._answers.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"child: no answer in {TIMEOUT} s\n{self.stderr()}") from None
        if line is None:
            raise AssertionError(f"child ended ({self.proc.poll()})\n{self.stderr()}")
        got = json.loads(line)
        if "error" in got:
            raise AssertionError(f"in the child (mount B):\n{got['error']}")
        return got["ok"]

    def call(self, **cmd: Any) -> Any:
        self.send(**cmd)
        return self.answer()

    def stderr(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL, as a kernel killed mid-way (its mount's state stays as it was)."""
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                try:
                    self.send(op="exit")
                    self.proc.wait(timeout=30)
                except (OSError, subprocess.TimeoutExpired):
                    pass
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._err.close()


# -- the model's vocabulary -------------------------------------------------------------------


# File names and folder names are disjoint (see test_model_volume.py).
FILES = ["a.txt", "b", "ü.bin", "sub/c.txt", "sub/ä", "sub/deep/d.bin", "other/e"]
FOLDERS = ["sub", "sub/deep", "other", "empty", "empty2/x"]

# empty; tiny (<= 512 B: stored inline in the tree node); the inline boundary; a few KiB;
# a few hundred KiB (several content-defined chunks of 32-512 KiB, 128 KiB on average)
SIZES = [0, 1, 17, 511, 512, 513, 3000, 8192, 150_000, 700_000]

Tree = dict[str, Any]  # path -> DIR | (bytes, mode)


def digest(tree: Tree) -> dict[str, Any]:
    """A tree as ``scan`` (OPS) reports a folder."""
    return {
        p: "DIR" if v == DIR else [hashlib.sha256(v[0]).hexdigest(), len(v[0]), v[1]]
        for p, v in tree.items()
    }


def api_tree(vol: Volume, at: int | None = None) -> Tree:
    """The volume's tree at ``at`` (the head if None) as read through the API (modes
    are not listed: None)."""
    out: Tree = {}
    for e in vol.listdir("/", recursive=True, at=at):
        if e.type == FileEntryType.DIRECTORY:
            out[e.path] = DIR
        else:
            assert e.type == FileEntryType.FILE, e
            data = read(vol, e.path, at)
            assert len(data) == e.size, (e, len(data))
            out[e.path] = (data, None)
    return out


def without_modes(tree: Tree) -> Tree:
    return {p: v if v == DIR else (v[0], None) for p, v in tree.items()}


def file_changes(old: Tree, new: Tree) -> tuple[int, int, int]:
    """(added, modified, deleted) files from ``old`` to ``new``."""
    fo = {p: v for p, v in old.items() if v != DIR}
    fn = {p: v for p, v in new.items() if v != DIR}
    added = len(fn.keys() - fo.keys())
    deleted = len(fo.keys() - fn.keys())
    modified = sum(1 for p in fo.keys() & fn.keys() if fo[p] != fn[p])
    return added, modified, deleted


class HeldLock:
    """The line's lock, held by the test as if a leader were busy with a round: writers
    that commit now put their change sets in line and wait."""

    def __init__(self, line: LocalLine) -> None:
        line._make()
        self.line = line
        self.fd: int | None = os.open(line.folder / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def in_line(self) -> int:
        return sum(
            1
            for p in self.line.intents.iterdir()
            if not p.name.startswith(".") and not p.name.endswith(".seg")
        )

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


# -- the state machine ------------------------------------------------------------------------


def logged(f: Callable[..., Any], *, record: bool = True) -> Callable[..., Any]:
    """A rule (or check) whose call is remembered among the example's steps (unless not
    ``record``: the invariant after each), and whose first failure is kept with those
    steps (see :func:`run`: timing makes a replay of a failing example unlike the run
    that failed, so Hypothesis may report the replay, or a "flaky" error, instead)."""

    @functools.wraps(f)
    def step(self: CrossProcess, *args: Any, **kw: Any) -> Any:
        top = not self.depth  # (rules call other rules)
        if top and record:
            shown = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kw.items()]
            self.steps.append(f"state.{f.__name__}({', '.join(shown)})")
        self.depth += 1
        try:
            return f(self, *args, **kw)
        except Exception as e:
            if top and CrossProcess.failure is None:
                CrossProcess.failure = "{}: {}\nsteps of example {} (failed in {}):\n    {}".format(
                    type(e).__name__, e, self.name, f.__name__, "\n    ".join(self.steps)
                )
            raise
        finally:
            self.depth -= 1

    return step


def checked(f: Callable[..., Any]) -> Callable[..., Any]:
    return logged(f, record=False)


MOUNTS = st.sampled_from("AB")
INDEX = st.integers(0, 10_000)


class CrossProcess(RuleBasedStateMachine):
    store: Any = None
    url = ""
    child: Child | None = None  # the current process of mount B (a new one after a kill)
    spare: Child | None = None  # the next one, started ahead (it takes a quarter second)
    tmp: Path = Path()
    counter = itertools.count()
    children = itertools.count(1)
    failure: str | None = None  # the first failure of the run, with its example's steps

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[str] = []
        self.depth = 0
        n = next(self.counter)
        self.name = f"xproc-{n}"
        self.dirs = {"A": self.tmp / f"ex{n}" / "A", "B": self.tmp / f"ex{n}" / "B"}
        self.vol = Volume.from_name(self.name, create_if_missing=True, store=self.store)
        self.mount_a: Any = self.vol.mount(self.dirs["A"], background=False)
        self.b_open = False
        assert self.child is not None
        line_b = self.child.call(op="open", name=self.name, dir=str(self.dirs["B"]))
        self.b_open = True
        self.line: LocalLine = self.mount_a._repo.line
        # both writers meet in one line of this machine (else this test tests nothing new)
        assert self.line is not None and line_b == str(self.line.folder), (line_b, self.line)
        self.head: Tree = {}
        self.local: dict[str, Tree] = {"A": {}, "B": {}}
        self.synced: dict[str, Tree] = {"A": {}, "B": {}}
        self.seq = self._head_seq()
        self.snapshots: dict[int, Tree] = {self.seq: {}}

    # -- helpers ---------------------------------------------------------------------------------
    def _head_seq(self) -> int:
        return self.vol.history(limit=1)[0].seq

    def _do(self, m: str, **cmd: Any) -> Any:
        if m == "A":
            return do(str(self.dirs["A"]), cmd)
        assert self.child is not None
        return self.child.call(**cmd)

    def _files(self, m: str) -> list[str]:
        return sorted(p for p, v in self.local[m].items() if v != DIR)

    def _pick(self, items: list[str], i: int) -> str | None:
        return items[i % len(items)] if items else None

    def _allowed(self, m: str, path: str, value: Any) -> bool:
        """False for a write that would put back exactly what the mount synced there."""
        return self.synced[m].get(path) != value

    def _note_parents(self, m: str, path: str) -> None:
        for q in parents(path):
            self.local[m][q] = DIR

    def _take_changes(self, m: str) -> dict[str, Any]:
        """The mount's change set by the model; from now on it counts as synced."""
        ch = changes_of(self.local[m], self.synced[m])
        for p, v in ch.items():
            if v is None:
                self.synced[m].pop(p, None)
            else:
                self.synced[m][p] = v
        return ch

    def _record(self, expect_commit: bool, what: str, got: int | None = None) -> None:
        """After something that may have committed: the head's seq moved as the model
        says (to ``got``, the seq the commit returned, if any); remember that commit's
        tree."""
        seq = self._head_seq()
        if not expect_commit:
            assert seq == self.seq, f"{what}: a commit ({seq}) with no change in the model"
        if got is not None:
            assert got == seq == self.seq + 1, f"{what}: returned {got}, head {seq}, was {self.seq}"
        if seq != self.seq:
            assert seq == self.seq + 1, f"{what}: head went from {self.seq} to {seq}"
            self.seq = seq
            self.snapshots[seq] = dict(self.head)

    # -- local edits -----------------------------------------------------------------------------
    @rule(m=MOUNTS, name=st.sampled_from(FILES), size=st.sampled_from(SIZES), seed=INDEX)
    @logged
    def write(self, m: str, name: str, size: int, seed: int) -> None:
        data = content(seed, size)
        old = self.local[m].get(name)
        value = (data, old[1] if old is not None else 0o644)
        if not self._allowed(m, name, value):
            return
        self._do(m, op="write", path=name, seed=seed, size=size)
        self._note_parents(m, name)
        self.local[m][name] = value

    @rule(m=MOUNTS, i=INDEX, size=st.sampled_from(SIZES), seed=INDEX)
    @logged
    def overwrite(self, m: str, i: int, size: int, seed: int) -> None:
        """New contents for a file the folder has."""
        p = self._pick(self._files(m), i)
        if p is not None:
            self.write(m, p, size, seed)

    @rule(m=MOUNTS, i=INDEX, seed=INDEX, where=st.floats(0, 1), grow=st.booleans())
    @logged
    def edit_big(self, m: str, i: int, seed: int, where: float, grow: bool) -> None:
        """An in-place edit of a big file (100 bytes in the middle, or appended): the
        chunks around it change, the others are reused."""
        big = [p for p in self._files(m) if len(self.local[m][p][0]) >= 100_000]
        p = self._pick(big, i)
        if p is None:
            return
        data, mode = self.local[m][p]
        patch = content(seed, 100)
        at = -1 if grow else int(where * (len(data) - 100))
        new = data + patch if grow else data[:at] + patch + data[at + 100 :]
        if new == data or not self._allowed(m, p, (new, mode)):
            return
        self._do(m, op="edit", path=p, seed=seed, at=at)
        self.local[m][p] = (new, mode)

    @rule(m=MOUNTS, i=INDEX)
    @logged
    def delete(self, m: str, i: int) -> None:
        p = self._pick(self._files(m), i)
        if p is None:
            return
        self._do(m, op="delete", path=p)
        del self.local[m][p]

    @rule(m=MOUNTS, i=INDEX, dst=st.sampled_from(FILES))
    @logged
    def rename(self, m: str, i: int, dst: str) -> None:
        src = self._pick(self._files(m), i)
        if src is None or src == dst or not self._allowed(m, dst, self.local[m][src]):
            return
        self._do(m, op="rename", path=src, dst=dst)
        self._note_parents(m, dst)
        self.local[m][dst] = self.local[m].pop(src)

    @rule(m=MOUNTS, folder=st.sampled_from(FOLDERS))
    @logged
    def mkdir(self, m: str, folder: str) -> None:
        if folder in self.local[m]:
            return
        self._do(m, op="mkdir", path=folder)
        for q in [*parents(folder), folder]:
            self.local[m][q] = DIR

    @rule(m=MOUNTS, i=INDEX)
    @logged
    def rmtree(self, m: str, i: int) -> None:
        """``rm -rf`` of a folder and everything in it."""
        d = self._pick(sorted(p for p, v in self.local[m].items() if v == DIR), i)
        if d is None:
            return
        self._do(m, op="rmtree", path=d)
        for q in [q for q in self.local[m] if q == d or under(q, d)]:
            del self.local[m][q]

    @rule(m=MOUNTS, i=INDEX, dst=st.sampled_from(FOLDERS))
    @logged
    def rename_folder(self, m: str, i: int, dst: str) -> None:
        """``mv src dst`` of a whole folder (to a name that does not exist yet)."""
        src = self._pick(sorted(p for p, v in self.local[m].items() if v == DIR), i)
        if src is None or dst in self.local[m] or dst == src or under(dst, src):
            return
        moved = {
            dst + q[len(src) :]: v for q, v in self.local[m].items() if q == src or under(q, src)
        }
        if any(not self._allowed(m, q, v) for q, v in moved.items() if v != DIR):
            return
        self._do(m, op="rename", path=src, dst=dst)
        for q in [q for q in self.local[m] if q == src or under(q, src)]:
            del self.local[m][q]
        self._note_parents(m, dst)
        self.local[m].update(moved)

    # -- commits, one at a time ------------------------------------------------------------------
    def _run_a(self, op: str) -> int | None:
        """Mount A commits (or reloads): the seq of the commit it made, or None."""
        if op == "commit":
            info = self.mount_a.commit()
            return None if info is None else info.seq
        before = self.mount_a.last_commit
        self.mount_a.reload()
        after = self.mount_a.last_commit
        return None if after is before or after is None else after.seq

    def _start(self, m: str, op: str) -> tuple[Callable[[], bool], Callable[[], int | None]]:
        """Start a commit (or reload) of ``m``, not waiting for it: (is it over?, the seq
        of the commit it made)."""
        if m == "B":
            assert self.child is not None
            self.child.send(op=op)
            return self.child.answered, self.child.answer
        out: dict[str, Any] = {}

        def run() -> None:
            try:
                out["seq"] = self._run_a(op)
            except BaseException as e:
                out["error"] = e

        t = threading.Thread(target=run, daemon=True)
        t.start()

        def result() -> int | None:
            t.join(TIMEOUT)
            assert not t.is_alive(), f"{op} of A: not over in {TIMEOUT} s"
            if "error" in out:
                raise out["error"]
            return out["seq"]

        return (lambda: not t.is_alive()), result

    def _now(self, m: str, op: str) -> int | None:
        if m == "A":
            return self._run_a(op)
        assert self.child is not None
        return self.child.call(op=op)

    @rule(m=MOUNTS)
    @logged
    def commit(self, m: str) -> None:
        ch = self._take_changes(m)
        self.head = apply(self.head, ch)
        got = self._now(m, "commit")
        if not ch:
            assert got is None, f"commit of {m} with nothing changed made commit {got}"
        self._record(bool(ch), f"commit of {m}", got)
        self.check_listing()

    @rule(m=MOUNTS)
    @logged
    def reload(self, m: str) -> None:
        ch = self._take_changes(m)  # a reload commits local changes first
        self.head = apply(self.head, ch)
        got = self._now(m, "reload")
        if not ch:
            assert got is None, f"reload of {m} with nothing changed made commit {got}"
        self._record(bool(ch), f"reload of {m}", got)
        self.local[m] = dict(self.head)
        self.synced[m] = dict(self.head)

    # -- at once (the machine's line) ------------------------------------------------------------
    def _together(self, first: str, hold: bool, what: str, ops: dict[str, str]) -> None:
        """Both mounts commit (``ops``: or reload) at once, ``first`` starting first.
        ``hold``: the line's lock is held until both change sets are in line
        (``first``'s put in line first), so one round of the line takes them."""
        second = "B" if first == "A" else "A"
        before = self.seq
        chs = {m: self._take_changes(m) for m in (first, second)}
        held = HeldLock(self.line) if hold else None
        started: dict[str, tuple[Callable[[], bool], Callable[[], int | None]]] = {}
        try:
            for m in (first, second):
                started[m] = self._start(m, ops[m])
                if held is not None:
                    # until it is in line (a commit with nothing to commit is over at once,
                    # a reload with nothing to commit reads the head; nothing in line can
                    # be over while the lock is held)
                    deadline = time.monotonic() + TIMEOUT
                    while not started[m][0]() and held.in_line() < sum(
                        not over() for over, _ in started.values()
                    ):
                        assert time.monotonic() < deadline, f"{what}: {m} never in line"
                        time.sleep(0.005)
        finally:
            if held is not None:
                held.release()
            seqs = {m: f[1]() for m, f in started.items()}  # (raises what a commit raised)
        what = f"{what} (change sets A {sorted(chs['A'])}, B {sorted(chs['B'])}; seqs {seqs})"
        self._settle(chs, seqs, first, what, ordered=hold)
        for m, op in ops.items():
            if op == "reload":
                self._reloaded(m, max(before, seqs[m] or 0), what)

    def _settle(
        self,
        chs: dict[str, dict[str, Any]],
        seqs: dict[str, int | None],
        first: str,
        what: str,
        ordered: bool,
    ) -> None:
        """The model after commits made at once: their change sets apply in the order of
        the seqs they returned (one seq: one record holds both; they must not share a
        file). A commit that returned None changed nothing where it applied."""
        for m, ch in chs.items():
            if not ch:
                assert seqs[m] is None, f"{what}: {m} with nothing changed made a commit"
        landed = sorted((m for m in chs if seqs[m] is not None), key=lambda m: seqs[m])  # type: ignore[arg-type, return-value]
        new_seqs = sorted({seqs[m] for m in landed})  # type: ignore[type-var]
        assert new_seqs == list(range(self.seq + 1, self.seq + 1 + len(new_seqs))), (
            f"{what}: the head was {self.seq}"
        )
        files = {m: {p for p, v in chs[m].items() if v != DIR} for m in chs}
        if len(landed) == 2 and seqs["A"] == seqs["B"]:
            assert not files["A"] & files["B"], f"{what}: two versions of one path in one commit"
        if ordered and len(new_seqs) == 2 and files["A"] & files["B"]:
            # the change set put in line first goes first (its version is the older)
            assert landed[0] == first, f"{what}: {first} was in line first"
        head = dict(self.head)
        for s in new_seqs:
            for m in landed:
                if seqs[m] == s:
                    head = apply(head, chs[m])
            self.snapshots[s] = dict(head)
        # a change set that made no commit changed nothing, before or after the other
        for m in chs:
            if seqs[m] is None and chs[m]:
                assert apply(self.head, chs[m]) == self.head or apply(head, chs[m]) == head, (
                    f"{what}: {m}'s change set made no commit"
                )
        self.head = head
        if new_seqs:
            self.seq = new_seqs[-1]
        assert self._head_seq() == self.seq, f"{what}: the head is {self._head_seq()}"
        self.check_listing()

    def _reloaded(self, m: str, since: int, what: str) -> None:
        """After a reload of ``m`` that ran beside another commit: its folder holds exactly
        the tree of one commit, ``since`` or newer (the head the reload read)."""
        got = self._do(m, op="scan")
        match = [
            s for s in sorted(self.snapshots) if s >= since and digest(self.snapshots[s]) == got
        ]
        if not match:
            newest = self.snapshots[self.seq]
            assert_same(got, digest(newest), f"{what}: folder {m} after its reload (vs the head)")
        tree = self.snapshots[match[-1]]
        self.local[m] = dict(tree)
        self.synced[m] = dict(tree)

    def _something_on_both(self, names: tuple[str, str], sizes: tuple[int, int], seed: int) -> None:
        """A file written in each folder that has no change yet (so both commits have
        something to publish)."""
        for m, name, size in zip("AB", names, sizes, strict=True):
            if not changes_of(self.local[m], self.synced[m]):
                self.write(m, name, size, seed + (m == "B"))

    @rule(
        first=MOUNTS,
        names=st.tuples(st.sampled_from(FILES), st.sampled_from(FILES)),
        sizes=st.tuples(st.sampled_from(SIZES), st.sampled_from(SIZES)),
        seed=INDEX,
    )
    @logged
    def commit_together(
        self, first: str, names: tuple[str, str], sizes: tuple[int, int], seed: int
    ) -> None:
        """Both commit while a round of the line is busy: the next round takes both."""
        self._something_on_both(names, sizes, seed)
        self._together(
            first, True, f"commit together ({first} in line first)", {"A": "commit", "B": "commit"}
        )

    @rule(
        first=MOUNTS,
        names=st.tuples(st.sampled_from(FILES), st.sampled_from(FILES)),
        sizes=st.tuples(st.sampled_from(SIZES), st.sampled_from(SIZES)),
        seed=INDEX,
    )
    @logged
    def commit_race(
        self, first: str, names: tuple[str, str], sizes: tuple[int, int], seed: int
    ) -> None:
        """Both commit at once, nothing held."""
        self._something_on_both(names, sizes, seed)
        self._together(
            first, False, f"commit race ({first} started first)", {"A": "commit", "B": "commit"}
        )

    @rule(
        m=MOUNTS,
        other=st.sampled_from(["commit", "reload"]),
        first=MOUNTS,
        hold=st.booleans(),
        names=st.tuples(st.sampled_from(FILES), st.sampled_from(FILES)),
        sizes=st.tuples(st.sampled_from(SIZES), st.sampled_from(SIZES)),
        seed=INDEX,
    )
    @logged
    def reload_beside(
        self,
        m: str,
        other: str,
        first: str,
        hold: bool,
        names: tuple[str, str],
        sizes: tuple[int, int],
        seed: int,
    ) -> None:
        """``m`` reloads (committing its own changes first) while the other commits (or
        reloads too): its folder then holds the head its reload read, with its own
        changes and perhaps the other's."""
        self._something_on_both(names, sizes, seed)
        ops = {m: "reload", "B" if m == "A" else "A": other}
        self._together(first, hold, f"reload of {m} beside a {other} ({first} first)", ops)

    # -- mount B's process killed, and mounted again by a new one ---------------------------------
    def _respawn_b(self) -> None:
        """After B's process was killed: a new process mounts B's folder again (it resumes
        from the mount's state, as a restarted kernel would). Mounting commits the edits
        left from the earlier mount, then brings the folder to the head."""
        cls = type(self)
        old, new = cls.child, cls.spare
        assert old is not None and new is not None
        old.kill()
        old.stop()
        cls.child = new
        cls.spare = Child(self.url, self.tmp / f"child-{next(self.children)}.txt")
        new.call(op="open", name=self.name, dir=str(self.dirs["B"]))

    def _b_emptied(self) -> bool:
        """B's folder holds nothing although files were synced into it: mounted again,
        it starts afresh (README: a folder "emptied ... since the last mount starts
        afresh and downloads the volume's files"), so edits left in it are not
        committed."""
        return not self.local["B"] and bool(self.synced["B"])

    def _resolve(
        self, chs: dict[str, dict[str, Any]], seq_a: int | None, what: str, b_dropped: bool
    ) -> None:
        """After a kill of B and its mount again: the commits since the model's head must
        hold A's change set (at ``seq_a``, the seq A's commit returned) and B's (landed by
        the killed process, perhaps in the same record as A's, or committed by the new
        one), each once, whole, in some order, and nothing else: the history is one of
        those, read back through the API. A change set in no commit changed nothing
        (unless ``b_dropped``: B's folder was emptied, so the new mount drops B's change
        set if the killed process did not land it)."""
        top = self._head_seq()
        new = list(range(self.seq + 1, top + 1))
        api = {s: digest(api_tree(self.vol, at=s)) for s in new}
        movers = [m for m in "AB" if chs[m]]
        choices = [[seq_a] if m == "A" else [None, *new] for m in movers]
        for combo in itertools.product(*choices):
            at = dict(zip(movers, combo, strict=True))
            if set(new) - set(at.values()):
                continue  # a commit holding neither
            if len(movers) == 2 and at["A"] == at["B"] is not None:
                files = [{p for p, v in chs[m].items() if v != DIR} for m in movers]
                if files[0] & files[1]:
                    continue  # (two versions of one path never share a commit)
            head, snaps = dict(self.head), {}
            for s in new:
                for m in movers:
                    if at[m] == s:
                        head = apply(head, chs[m])
                snaps[s] = head
            if any(digest(without_modes(snaps[s])) != api[s] for s in new):
                continue
            if any(
                apply(head, chs[m]) != head
                for m in movers
                if at[m] is None and not (m == "B" and b_dropped)
            ):
                continue  # (left out, yet it would change the head)
            self.snapshots.update(snaps)
            self.head, self.seq = head, top
            return
        got = {s: {p: show(v) for p, v in sorted(t.items())} for s, t in api.items()}
        raise AssertionError(
            f"{what}: commits {new} after {self.seq} are not A's change set "
            f"{ {p: show(v) if v else None for p, v in chs['A'].items()} } at {seq_a} and B's "
            f"{ {p: show(v) if v else None for p, v in chs['B'].items()} } once each: {got}"
        )

    def _change_b(self, name: str, size: int, seed: int) -> dict[str, Any]:
        """B's change set, with a file written if it had none."""
        if not changes_of(self.local["B"], self.synced["B"]):
            self.write("B", name, size, seed)
        return changes_of(self.local["B"], self.synced["B"])

    @rule(
        how=st.sampled_from(["in line", "leading", "committing", "reloading"]),
        with_a=st.booleans(),
        delay=st.sampled_from([0.0, 0.005, 0.01, 0.03, 0.06, 0.1]),
        name=st.sampled_from(FILES),
        size=st.sampled_from(SIZES),
        seed=INDEX,
    )
    @logged
    def kill_b(self, how: str, with_a: bool, delay: float, name: str, size: int, seed: int) -> None:
        """B's process is killed (SIGKILL), then a new one mounts B's folder again; with
        ``with_a``, A commits meanwhile.

        * "in line": while B's commit waits in the machine's line (the test holds the
          line's lock), A's waiting behind it. The round that follows drops B's change
          set (its writer is dead) and commits A's alone; mounting B again commits B's.
        * "leading": B's commit waits in line, A's behind it; ``delay`` seconds after the
          test lets go of the lock, B is killed, perhaps while leading the round that
          carries both (or A leads it).
        * "committing" / "reloading": ``delay`` seconds into a commit (B changed
          something) or a reload (B may have nothing to commit; a reload downloads), A's
          commit started at once: B may be leading a round that carries A's change set
          when it dies. Each change set lands whole, once (mounting again pushes B's
          only if it did not land: a commit that landed unrecorded is never pushed
          again); what the killed reload wrote is not a local change.
        """
        if how != "reloading" and not self._change_b(name, size, seed):
            return
        if with_a and not changes_of(self.local["A"], self.synced["A"]):
            self.write("A", FILES[seed % len(FILES)], 3000, seed + 1)
        child = type(self).child
        assert child is not None
        ch_a = self._take_changes("A") if with_a else {}
        if how == "in line":
            self._kill_b_in_line(child, ch_a)
            return
        if how == "leading":
            self._kill_b_in_line(child, ch_a, delay)
            return
        emptied = self._b_emptied()
        ch_b = self._take_changes("B")
        child.send(op="commit" if how == "committing" else "reload")
        a = self._start("A", "commit") if ch_a else None
        seq_a: int | None = None
        try:
            time.sleep(delay)
            child.kill()
        finally:
            if a is not None:
                seq_a = a[1]()
        self._respawn_b()
        self._resolve({"A": ch_a, "B": ch_b}, seq_a, f"B killed {delay} s into {how}", emptied)
        self.local["B"] = dict(self.head)
        self.synced["B"] = dict(self.head)
        self.check_listing()

    def _kill_b_in_line(
        self, child: Child, ch_a: dict[str, Any], delay: float | None = None
    ) -> None:
        """Kill B while its commit waits in line (``delay`` None), or ``delay`` seconds
        after the line's lock is let go."""
        ch_b = changes_of(self.local["B"], self.synced["B"])
        emptied = self._b_emptied()
        held = HeldLock(self.line)
        a: tuple[Callable[[], bool], Callable[[], int | None]] | None = None
        try:
            child.send(op="commit")
            deadline = time.monotonic() + TIMEOUT
            while held.in_line() < 1:
                assert not child.answered(), f"B's commit did not wait in line: {child.answer()}"
                assert time.monotonic() < deadline, "B never in line"
                time.sleep(0.005)
            if ch_a:
                a = self._start("A", "commit")
                while held.in_line() < 2 and not a[0]():
                    assert time.monotonic() < deadline, "A never in line"
                    time.sleep(0.005)
            if delay is None:
                child.kill()
        finally:
            held.release()
            if delay is not None:
                time.sleep(delay)
                child.kill()
            seq_a = a[1]() if a is not None else None
        if delay is not None:
            self._take_changes("B")
            self._respawn_b()
            self._resolve(
                {"A": ch_a, "B": ch_b}, seq_a, f"B killed {delay} s after the line", emptied
            )
            self.local["B"] = dict(self.head)
            self.synced["B"] = dict(self.head)
            self.check_listing()
            return
        what = f"B killed in line (A's change set {sorted(ch_a)}, seq {seq_a})"
        # the round after the kill drops B's change set (its writer is dead)
        self._settle({"A": ch_a, "B": {}}, {"A": seq_a, "B": None}, "A", what, ordered=True)
        # mounting B again commits B's change set (unless it starts afresh in an emptied
        # folder), then brings the folder to the head
        ch_b = self._take_changes("B")
        if emptied:
            ch_b = {}
        self.head = apply(self.head, ch_b)
        self._respawn_b()
        self._record(bool(ch_b), f"{what}, then B mounted again")
        self.local["B"] = dict(self.head)
        self.synced["B"] = dict(self.head)
        self.check_listing()

    @rule(
        name=st.sampled_from(FILES),
        sizes=st.tuples(st.sampled_from(SIZES), st.sampled_from(SIZES)),
        seeds=st.tuples(INDEX, INDEX),
        first=MOUNTS,
        together=st.booleans(),
    )
    @logged
    def conflict(
        self,
        name: str,
        sizes: tuple[int, int],
        seeds: tuple[int, int],
        first: str,
        together: bool,
    ) -> None:
        """Both write the same file (other bytes each) and commit: the later commit's
        bytes win, the earlier version stays in history."""
        if content(seeds[0], sizes[0]) == content(seeds[1], sizes[1]):
            return
        for m, size, seed in zip("AB", sizes, seeds, strict=True):
            self.write(m, name, size, seed)
        mine = {m: self.local[m].get(name) for m in "AB"}
        if not all(v is not None and v != self.synced[m].get(name) for m, v in mine.items()):
            return  # (a write the model left out)
        before = self.seq
        if together:
            self._together(
                first,
                True,
                f"conflict on {name} ({first} in line first)",
                {"A": "commit", "B": "commit"},
            )
        else:
            for m in (first, "B" if first == "A" else "A"):
                self.commit(m)
        # Last writer wins: the head has the later commit's bytes, and the commit before
        # it (which then held the other side's version) still reads it.
        seqs = sorted(s for s in self.snapshots if s > before)
        assert len(seqs) == 2, f"conflict on {name}: commits {seqs} after {before}"
        versions = [self.snapshots[s].get(name) for s in seqs]
        assert sorted(map(repr, versions)) == sorted(map(repr, mine.values())), name
        assert read(self.vol, name) == versions[1][0], f"{name}: the head lost the later version"
        old_bytes = read(self.vol, name, at=seqs[0])
        assert old_bytes == versions[0][0], f"{name}: commit {seqs[0]} lost the earlier version"

    # -- reads through the API -------------------------------------------------------------------
    @rule()
    @logged
    def check_head(self) -> None:
        """The newest commit through the API (no mount): listing and every file."""
        assert self._head_seq() == self.seq
        assert_same(digest(api_tree(self.vol)), digest(without_modes(self.head)), "the head (API)")

    def check_listing(self) -> None:
        """The head's listing (paths, kinds and sizes) through the API."""
        listed = {
            e.path: "DIR" if e.type == FileEntryType.DIRECTORY else e.size
            for e in self.vol.listdir("/", recursive=True)
        }
        expected = {p: "DIR" if v == DIR else len(v[0]) for p, v in self.head.items()}
        assert listed == expected, f"listing of the head: {listed} != {expected}"

    @rule(i=INDEX)
    @logged
    def check_commit(self, i: int) -> None:
        """An older commit reads as the head was then."""
        seqs = sorted(self.snapshots)
        s = seqs[i % len(seqs)]
        assert_same(
            digest(api_tree(self.vol, at=s)),
            digest(without_modes(self.snapshots[s])),
            f"commit {s} read with at=",
        )

    def check_history(self) -> None:
        """history() lists exactly the model's commits; each reads back as recorded and
        counts the files that changed since the commit before it."""
        infos = {c.seq: c for c in self.vol.history()}
        assert sorted(infos) == sorted(self.snapshots), (
            f"history {sorted(infos)} != the model's commits {sorted(self.snapshots)}"
        )
        seqs = sorted(self.snapshots)
        for before, s in itertools.pairwise(seqs):
            assert_same(
                digest(api_tree(self.vol, at=s)),
                digest(without_modes(self.snapshots[s])),
                f"commit {s} read with at=",
            )
            c = infos[s]
            got = (c.added, c.modified, c.deleted)
            expected = file_changes(self.snapshots[before], self.snapshots[s])
            assert got == expected, (
                f"commit {s} counts (added, modified, deleted) {got}, model {expected}"
            )

    # -- invariants --------------------------------------------------------------------------------
    @invariant()
    @checked
    def folders_match_the_model(self) -> None:
        assert_same(do(str(self.dirs["A"]), {"op": "scan"}), digest(self.local["A"]), "folder A")
        assert self.child is not None
        assert_same(self.child.call(op="scan"), digest(self.local["B"]), "folder B (child)")

    @logged
    def teardown(self) -> None:
        try:
            # both commit, both reload: each folder holds the head, the head holds every
            # writer's changes (the model merged them path by path)
            for m in ("A", "B", "A", "B"):
                self.reload(m)
                self.folders_match_the_model()
            self.check_head()
            for m in "AB":
                assert_same(
                    self._do(m, op="scan"), digest(self.head), f"folder {m} after both reloaded"
                )
            self.check_history()
        finally:
            try:
                if self.b_open and self.child is not None and self.child.proc.poll() is None:
                    self.child.call(op="close")
            finally:
                self.mount_a.unmount()


def run(opened: tuple[Any, str, dict[str, str]], tmp_path: Path, examples: int, steps: int) -> None:
    """Run the machine on ``opened``'s store (B's processes open its URL), stopping every
    child process at the end; a failure is reported as it was found (its steps and the
    difference from the model), before Hypothesis's own report of its replay."""
    store, url, _env = opened
    CrossProcess.store = store
    CrossProcess.url = url
    CrossProcess.tmp = tmp_path
    CrossProcess.failure = None
    CrossProcess.child = Child(url, tmp_path / "child-0.txt")
    try:
        CrossProcess.spare = Child(url, tmp_path / "child-spare.txt")
        run_state_machine_as_test(CrossProcess, settings=model_settings(examples, steps))
    except BaseException as e:
        if CrossProcess.failure is None:
            raise
        # the failure as found (Hypothesis reports its replay, which timing may change)
        raise AssertionError(f"found: {CrossProcess.failure}") from e
    finally:
        for child in (CrossProcess.child, CrossProcess.spare):
            if child is not None:
                child.stop()
        CrossProcess.child = CrossProcess.spare = None


def test_two_processes_model(opened: tuple[Any, str, dict[str, str]], tmp_path: Path) -> None:
    # about 20-30 s per store on two idle cores (a kill and a new process cost ~0.4 s)
    s3 = opened[1].startswith("s3://")
    run(opened, tmp_path, examples=8 if s3 else 16, steps=40)
