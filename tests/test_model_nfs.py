"""A model-based (stateful) test of network file systems: one NFS, two live folders of it
(A in this process, B in a child process: one live folder per NFS per process) and the
NFS's own file API, against a model of the shared contents.

Rules write, overwrite, delete and rename files and make, remove and rename folders, in
A, in B (plain file-system calls, as any program would) or through the API, with sizes
from empty to a few hundred KiB (big ones sometimes written slowly, in pieces, so sync
rounds see them half written) and names from a small alphabet (two folders, one with a
space, non-ASCII names, and "sub", which is a folder or a file by turns). Operations accumulate in a *batch* in which every
side has its own view (the last converged contents plus its own changes); ``converge``
then waits (with the folders' own ``sync()`` or by polling the background loops) until
A, B and the API show the same tree, and compares it with the model:

* a path that one side changed in the batch has that side's version everywhere; a path
  no side changed is as it was (nothing deleted that nobody deleted, nothing brought
  back that was deleted);
* a path that several sides changed has exactly one of their versions everywhere (no
  mix, no torn file, no older version).

Every wait is a poll bounded by a generous hang guard; nothing about time is asserted.
"""

from __future__ import annotations

import contextlib
import functools
import io
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test
from modeltest import model_settings

from jupyter_volume import NetworkFileSystem
from jupyter_volume.store import Store
from jupyter_volume.testing.seaweedfs import SeaweedFS

pytestmark = pytest.mark.slow  # long in all: started first (conftest)

HANG_GUARD = 60.0  # seconds: converging for this long means the sync is broken

LEAVES = ("a", "b", "ü.txt")
FOLDERS = ("sub", "dir é")
# "sub" is also a file name: a path that turns from folder into file and back
FILES = (*LEAVES, "sub", *(f"{d}/{leaf}" for d in FOLDERS for leaf in LEAVES))
TYPED = frozenset(FOLDERS) & frozenset(FILES)
SIDES = ("A", "B", "api")
FOLDER_SIDES = ("A", "B")
MAX_BATCH = 6  # operations between two convergences

SIZES = st.one_of(
    st.just(0),
    st.integers(1, 16),
    st.integers(2 * 1024, 8 * 1024),
    st.integers(200 * 1024, 400 * 1024),
)

# The child process holding live folder B: one JSON command a line on stdin, one JSON
# answer a line on stdout.
AGENT = r"""
import json, sys, traceback
from jupyter_volume import NetworkFileSystem
mounts = {}
for line in sys.stdin:
    cmd = json.loads(line)
    op = cmd.pop("op")
    if op == "quit":
        break
    try:
        out = {"ok": True}
        if op == "mount":
            nfs = NetworkFileSystem.from_name(cmd["name"], store=cmd["url"])
            mounts[cmd["name"]] = nfs.mount(cmd["path"], **cmd.get("kw", {}))
        elif op == "sync":
            mounts[cmd["name"]].sync()
        elif op == "status":
            m = mounts[cmd["name"]]
            st = m.status()
            out.update(clean=st.clean, waiting=st.waiting, error=m.last_error, text=str(st))
        elif op == "unmount":
            mounts.pop(cmd["name"]).unmount()
    except Exception:
        out = {"ok": False, "error": traceback.format_exc()}
    print(json.dumps(out), flush=True)
for m in mounts.values():
    m.unmount()
"""


class Agent:
    """The child process that holds live folder B of each example."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self._log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.log_path = log
        self.proc = subprocess.Popen(
            [sys.executable, "-c", AGENT],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )

    def call(self, op: str, **kw: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"agent died:\n{self.log_path.read_text()[-4000:]}")
        out = json.loads(line)
        if not out["ok"]:
            raise AssertionError(f"agent {op} failed:\n{out['error']}")
        return out

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.communicate(json.dumps({"op": "quit"}) + "\n", timeout=HANG_GUARD)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self._log.close()


@pytest.fixture
def agent_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


# -- the trees the three sides show -------------------------------------------------------------
Tree = tuple[dict[str, bytes], frozenset[str]]  # (file -> bytes, folders)


def folder_tree(root: Path) -> Tree:
    files: dict[str, bytes] = {}
    dirs: set[str] = set()

    def walk(d: Path, rel: str) -> None:
        for e in os.scandir(d):
            r = f"{rel}{e.name}"
            if e.is_dir(follow_symlinks=False):
                dirs.add(r)
                walk(Path(e.path), r + "/")
            else:
                files[r] = Path(e.path).read_bytes()

    walk(root, "")
    return files, frozenset(dirs)


def api_tree(nfs: NetworkFileSystem) -> Tree:
    files: dict[str, bytes] = {}
    dirs: set[str] = set()
    for e in nfs.listdir("/", recursive=True):
        if e.type.name == "DIRECTORY":
            dirs.add(e.path)
        else:
            files[e.path] = b"".join(nfs.read_file(e.path))
    return files, frozenset(dirs)


def blob(vid: int, size: int) -> bytes:
    """Version ``vid``'s bytes: a pattern of its own, so any mix of two versions shows."""
    return random.Random(vid).randbytes(size)


def show(tree: Tree) -> str:
    files, dirs = tree
    parts = [f"{p}:{len(b)}B#{zlib.crc32(b) & 0xFFFF:04x}" for p, b in sorted(files.items())]
    return "{" + ", ".join(parts) + "} dirs=" + str(sorted(dirs))


def under(p: str, d: str) -> bool:
    return p.startswith(d + "/")


# -- the state machine ----------------------------------------------------------------------------
def _guarded(fn: Any) -> Any:
    """A rule whose action raised leaves the model unchecked: teardown must not converge."""

    @functools.wraps(fn)
    def wrapper(self: NfsModel, *a: Any, **kw: Any) -> Any:
        self.broken = True
        fn(self, *a, **kw)
        self.broken = False

    return wrapper


class NfsModel(RuleBasedStateMachine):
    """One example: a fresh NFS, folder A here, folder B in the agent, and the API."""

    # set by run() before hypothesis makes any instance
    store: Store
    agent: Agent
    root: Path
    mount_kw: dict[str, Any] = {}
    _examples = itertools.count()
    _versions = itertools.count(1)

    def __init__(self) -> None:
        super().__init__()
        i = next(self._examples)
        self.name = f"model-{i}"
        self.nfs = NetworkFileSystem.from_name(self.name, create_if_missing=True, store=self.store)
        self.nfs.hydrate()
        base = self.root / f"ex{i}"
        self.folder = {"A": base / "A", "B": base / "B"}
        self.a = self.nfs.mount(self.folder["A"])
        self.b_mounted = False
        self.agent.call(
            "mount",
            name=self.name,
            url=self.store.url,
            path=str(self.folder["B"]),
            kw=self.mount_kw,
        )
        self.b_mounted = True
        self.files: dict[str, bytes] = {}  # the converged contents
        self.dirs: frozenset[str] = frozenset()
        self.broken = False
        self.history: list[str] = []  # every operation of the example, for failure messages
        self._new_batch()

    def _new_batch(self) -> None:
        self.view = {s: (dict(self.files), set(self.dirs)) for s in SIDES}
        self.touched: dict[str, set[str]] = {s: set() for s in SIDES}
        # folder names each side made a file of in this batch (another side's folder
        # there may turn into a file under its feet: nothing else may go below it)
        self.made_file: dict[str, set[str]] = {s: set() for s in SIDES}
        self.ops = 0

    # -- helpers -----------------------------------------------------------------------------------
    def _note(self, text: str) -> None:
        self.ops += 1
        self.history.append(text)

    def _others(self, side: str, path: str) -> list[str]:
        return [s for s in SIDES if s != side and path in self.touched[s]]

    def _subtree_untouched_by_others(self, side: str, d: str) -> bool:
        return not any(p == d or under(p, d) for s in SIDES if s != side for p in self.touched[s])

    def _record_write(self, side: str, path: str, data: bytes | None) -> None:
        files, dirs = self.view[side]
        self.touched[side].add(path)
        if data is None:
            files.pop(path, None)
            return
        files[path] = data
        if path in TYPED:
            self.made_file[side].add(path)
        parent = path.rpartition("/")[0]
        if parent and parent not in dirs:
            dirs.add(parent)
            self.touched[side].add(parent)

    def _local(self, side: str, path: str) -> Path:
        return self.folder[side] / path

    def _retrying(self, fn: Any) -> None:
        # A pull of another writer's change may replace a folder while we work in it
        # (only where another side touched it): try again a few times.
        for attempt in range(20):
            try:
                fn()
                return
            except (FileNotFoundError, NotADirectoryError):
                if attempt == 19:
                    raise
                time.sleep(0.05)

    # -- rules: files --------------------------------------------------------------------------
    @precondition(lambda self: self.ops < MAX_BATCH and any(self._writable(s) for s in SIDES))
    @rule(data=st.data(), size=SIZES, slowly=st.booleans())
    @_guarded
    def write(self, data: st.DataObject, size: int, slowly: bool) -> None:
        side, path = self._pick(data, SIDES, self._writable)
        vid = next(self._versions)
        content = blob(vid, size)
        slowly = slowly and side != "api" and size > 1024
        self._note(f"{side}: write {path!r} v{vid} ({size} B{', slowly' if slowly else ''})")
        if side == "api":
            assert self.nfs.write_file(path, io.BytesIO(content)) == size
        else:
            target = self._local(side, path)

            def do() -> None:
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "wb") as f:
                    if not slowly:
                        f.write(content)
                        return
                    # in four pieces a little apart: sync rounds see it half written
                    step = -(-size // 4)
                    for i in range(0, size, step):
                        f.write(content[i : i + step])
                        f.flush()
                        time.sleep(0.15)

            self._retrying(do)
        self._record_write(side, path, content)

    # What each rule may act on now (a rule runs only if there is something):
    def _stable_above(self, side: str, path: str) -> bool:
        """No other side made a file of a folder above ``path`` in this batch (this side's
        folder there may have become that file)."""
        parts = path.split("/")[:-1]
        return not any(
            "/".join(parts[: i + 1]) in self.made_file[s]
            for s in SIDES
            if s != side
            for i in range(len(parts))
        )

    def _creatable(self, side: str, path: str) -> bool:
        """Whether this side may write a file at ``path``."""
        files, dirs = self.view[side]
        parent = path.rpartition("/")[0]
        if path in dirs or (parent and parent in files) or not self._stable_above(side, path):
            return False
        # a file where a folder may be: not while another side works there
        return path not in TYPED or self._subtree_untouched_by_others(side, path)

    def _writable(self, side: str) -> list[str]:
        return [p for p in FILES if self._creatable(side, p)]

    def _deletable(self, side: str) -> list[str]:
        # what this side sees, but not what another side deleted or moved away
        files = self.view[side][0]
        return [
            p
            for p in FILES
            if p in files
            and self._stable_above(side, p)
            and all(p in self.view[s][0] for s in self._others(side, p))
        ]

    def _movable(self, side: str) -> list[tuple[str, str]]:
        files = self.view[side][0]
        return [
            (src, dst)
            for src in FILES
            if src in files and not self._others(side, src) and self._stable_above(side, src)
            for dst in FILES
            if dst != src and self._creatable(side, dst)
        ]

    def _new_folders(self, side: str) -> list[str]:
        files, dirs = self.view[side]
        return [
            d
            for d in FOLDERS
            if d not in dirs
            and d not in files
            and not any(d in self.made_file[s] for s in SIDES if s != side)
        ]

    def _removable_folders(self, side: str) -> list[str]:
        return [
            d
            for d in FOLDERS
            if d in self.view[side][1] and self._subtree_untouched_by_others(side, d)
        ]

    def _movable_folders(self, side: str) -> list[tuple[str, str]]:
        dirs = self.view[side][1]
        return [
            (src, dst)
            for src in FOLDERS
            for dst in FOLDERS
            if src != dst
            and src in dirs
            and dst not in dirs
            and dst not in self.view[side][0]
            and self._subtree_untouched_by_others(side, src)
            and self._subtree_untouched_by_others(side, dst)
        ]

    def _pick(self, data: st.DataObject, sides: tuple[str, ...], choices: Any) -> tuple[str, Any]:
        side = data.draw(st.sampled_from([s for s in sides if choices(s)]), label="side")
        return side, data.draw(st.sampled_from(choices(side)), label="what")

    @precondition(lambda self: self.ops < MAX_BATCH and any(self._deletable(s) for s in SIDES))
    @rule(data=st.data())
    @_guarded
    def delete(self, data: st.DataObject) -> None:
        side, path = self._pick(data, SIDES, self._deletable)
        self._note(f"{side}: delete {path!r}")
        try:
            if side == "api":
                self.nfs.remove_file(path)
            else:
                os.unlink(self._local(side, path))
        except FileNotFoundError:
            # acceptable only where another side changed the path in this batch
            assert self._others(side, path), (
                f"{side}: {path!r} was missing though nobody else touched it\n" + self._story()
            )
        self._record_write(side, path, None)

    @precondition(lambda self: self.ops < MAX_BATCH and any(self._movable(s) for s in FOLDER_SIDES))
    @rule(data=st.data())
    @_guarded
    def rename(self, data: st.DataObject) -> None:
        side, (src, dst) = self._pick(data, FOLDER_SIDES, self._movable)
        self._note(f"{side}: mv {src!r} {dst!r}")
        s, d = self._local(side, src), self._local(side, dst)

        def do() -> None:
            d.parent.mkdir(parents=True, exist_ok=True)
            os.replace(s, d)

        self._retrying(do)
        moved = self.view[side][0][src]
        self._record_write(side, src, None)
        self._record_write(side, dst, moved)

    # -- rules: folders ------------------------------------------------------------------------
    @precondition(
        lambda self: self.ops < MAX_BATCH and any(self._new_folders(s) for s in FOLDER_SIDES)
    )
    @rule(data=st.data())
    @_guarded
    def make_folder(self, data: st.DataObject) -> None:
        side, d = self._pick(data, FOLDER_SIDES, self._new_folders)
        self._note(f"{side}: mkdir {d!r}")
        self._local(side, d).mkdir(exist_ok=True)
        self.view[side][1].add(d)
        self.touched[side].add(d)

    @precondition(
        lambda self: self.ops < MAX_BATCH and any(self._removable_folders(s) for s in SIDES)
    )
    @rule(data=st.data())
    @_guarded
    def remove_folder(self, data: st.DataObject) -> None:
        side, d = self._pick(data, SIDES, self._removable_folders)
        self._note(f"{side}: rm -r {d!r}")
        if side == "api":
            self.nfs.remove_file(d, recursive=True)
        else:
            shutil.rmtree(self._local(side, d))
        for p in FILES:
            if under(p, d):
                self._record_write(side, p, None)
        self.view[side][1].discard(d)
        self.touched[side].add(d)

    @precondition(
        lambda self: self.ops < MAX_BATCH and any(self._movable_folders(s) for s in FOLDER_SIDES)
    )
    @rule(data=st.data())
    @_guarded
    def rename_folder(self, data: st.DataObject) -> None:
        side, (src, dst) = self._pick(data, FOLDER_SIDES, self._movable_folders)
        files, dirs = self.view[side]
        self._note(f"{side}: mv {src!r}/ {dst!r}/")
        os.rename(self._local(side, src), self._local(side, dst))
        moved = {p: files[p] for p in FILES if under(p, src) and p in files}
        for p in FILES:
            if under(p, src):
                self._record_write(side, p, None)
        dirs.discard(src)
        dirs.add(dst)
        self.touched[side].update((src, dst))
        for p, data in moved.items():
            self._record_write(side, dst + p[len(src) :], data)

    # -- convergence ---------------------------------------------------------------------------
    @precondition(lambda self: self.ops > 0)
    @rule(how=st.sampled_from(["sync", "poll"]))
    @_guarded
    def converge(self, how: str) -> None:
        self.history.append(f"-- converge ({how})")
        self._converge(how)

    def _statuses(self) -> tuple[bool, str]:
        st_a = self.a.status()
        st_b = self.agent.call("status", name=self.name)
        ok = st_a.clean and not st_a.waiting and st_b["clean"] and not st_b["waiting"]
        return (
            ok,
            f"A: {st_a}\n  last error: {self.a.last_error}\nB: {st_b['text']}\n  last error: {st_b['error']}",
        )

    def _converge(self, how: str) -> None:
        if how == "sync":
            # push A, push B and pull A's, pull B's into A
            self.a.sync()
            self.agent.call("sync", name=self.name)
            self.a.sync()
        deadline = time.monotonic() + HANG_GUARD
        last = "nothing read yet"
        while True:
            try:
                trees = [
                    folder_tree(self.folder["A"]),
                    folder_tree(self.folder["B"]),
                    api_tree(self.nfs),
                ]
                if trees[0] == trees[1] == trees[2]:
                    clean, text = self._statuses()
                    if clean:
                        break
                    last = f"trees agree, but not clean:\n{text}"
                else:
                    last = "\n".join(
                        f"{n}: {show(t)}" for n, t in zip(("A", "B", "api"), trees, strict=True)
                    )
            except OSError as e:  # a file replaced or removed while we read
                last = f"read failed: {e!r}"
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"A, B and the API did not converge within {HANG_GUARD:.0f} s ({how});"
                    f" last look:\n{last}\n{self._statuses()[1]}\n{self._story()}"
                )
            time.sleep(0.1)
        self._check(trees[0])

    def _story(self) -> str:
        return "operations of this example:\n  " + "\n  ".join(self.history)

    def _check(self, tree: Tree) -> None:
        files, dirs = tree
        problems = []
        for p in sorted(set(files) - set(FILES)):
            problems.append(f"unexpected file {p!r}")
        for p in FILES:
            got = files.get(p)
            sides = [s for s in SIDES if p in self.touched[s]]
            cands = {s: self.view[s][0].get(p) for s in sides} or {"before": self.files.get(p)}
            if got not in cands.values():
                want = ", ".join(
                    f"{s}: {'absent' if v is None else f'{len(v)} B #{zlib.crc32(v) & 0xFFFF:04x}'}"
                    for s, v in cands.items()
                )
                found = "absent" if got is None else f"{len(got)} B #{zlib.crc32(got) & 0xFFFF:04x}"
                problems.append(f"{p!r} is {found}, expected one of [{want}]")
        for d in sorted(dirs - set(FOLDERS)):
            problems.append(f"unexpected folder {d!r}")
        for d in FOLDERS:
            got = d in dirs
            if any(under(p, d) for p in files):
                if not got:
                    problems.append(f"folder {d!r} missing though it holds files")
                continue
            in_subtree = [s for s in SIDES if any(p == d or under(p, d) for p in self.touched[s])]
            if len(in_subtree) > 1:
                continue  # a conflict below it: either way
            on_it = [s for s in SIDES if d in self.touched[s]]
            want = d in self.view[on_it[0]][1] if on_it else d in self.dirs
            if got != want:
                problems.append(
                    f"folder {d!r} {'exists' if got else 'is missing'}, expected the opposite"
                )
        if problems:
            raise AssertionError(
                "converged contents differ from the model:\n  "
                + "\n  ".join(problems)
                + f"\nconverged: {show(tree)}\n"
                + self._story()
            )
        self.files, self.dirs = dict(files), dirs
        self._new_batch()

    def teardown(self) -> None:
        try:
            if self.ops and not self.broken:
                self.history.append("-- converge (teardown, sync)")
                self._converge("sync")
        finally:
            try:
                self.a.unmount()
            finally:
                if self.b_mounted:
                    self.agent.call("unmount", name=self.name)


@contextlib.contextmanager
def _agent(env: dict[str, str], tmp_path: Path) -> Iterator[Agent]:
    agent = Agent(env, tmp_path / "agent.log")
    try:
        yield agent
    finally:
        agent.stop()


def run(store: Store, tmp_path: Path, env: dict[str, str], *, examples: int, steps: int) -> None:
    with _agent(env, tmp_path) as agent:
        machine = type(
            "NfsModelRun",
            (NfsModel,),
            {"store": store, "agent": agent, "root": tmp_path / "folders"},
        )
        run_state_machine_as_test(machine, settings=model_settings(examples, steps))


def test_model_nfs_two_live_folders_and_the_api_local(
    local_store: Store, tmp_path: Path, agent_env: dict[str, str]
) -> None:
    run(local_store, tmp_path, agent_env, examples=10, steps=20)


def test_model_nfs_two_live_folders_and_the_api_s3(
    s3_store: Store, seaweedfs: SeaweedFS, tmp_path: Path, agent_env: dict[str, str]
) -> None:
    # the agent opens the store by URL: it needs the server's credentials
    run(s3_store, tmp_path, {**agent_env, **seaweedfs.env()}, examples=5, steps=15)
