"""A model-based (stateful) test of ``volume://`` (jupyter_volume/fsspec.py): one volume
per example, two file-system objects over it (``fs``, and ``fs2`` over the same store
under another URL: a second client, as if in a process of its own), against a model of
the volume's newest commit.

The model follows README ("Use it with pandas, pyarrow and zarr"), the module docstring
of fsspec.py and fsspec's own conventions (AbstractFileSystem docstrings, the copy/put/
get rules of ``fsspec.tests.abstract``):

* a dict ``path -> bytes`` of files and a set of folders. Folders are real: ``mkdir``
  makes an empty folder that stays, writing ``a/b/c`` makes ``a`` and ``a/b``, deleting
  the last file of a folder keeps the folder;
* every write is a commit: ``pipe_file``, ``pipe`` of a dict, ``put`` of many files,
  ``rm`` of many paths, ``mv`` of one path, a closed ``open(..., "wb")`` are one commit
  each (the head's seq moves by exactly one when the model changed); an exception inside
  ``with fs.open(path, "wb")`` commits nothing;
* ``with fs.transaction:`` is one commit at the end, or none if it raises; nothing is
  visible (to either client) before the end;
* reads see the newest commit at each call (the second client needs no refresh); every
  commit stays readable as ``volume://NAME@SEQ/...``;
* errors are fsspec's: IsADirectoryError, NotADirectoryError, OSError ENOTEMPTY,
  FileExistsError, FileNotFoundError;
* ``cat_file``/``cat_ranges`` offsets are Python slices (negative from the end, out of
  range clipped), as fsspec's MemoryFileSystem and its base class give.

Where the machine relaxes the docs (a ``cp`` into a folder that does not exist yet: two
commits, a folder and the copy; the docs promise ``cp`` no commit count), it says so.
The test functions at the end of the file are what the machine found, reduced to one
case each.

File names and folder names are disjoint (a file's base name never names a folder), so
no write meets a file where the model expects a folder unless a rule asks for that error
on purpose.
"""

from __future__ import annotations

import errno
import io
import itertools
import os
import posixpath
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
from modeltest import StoreAs, model_settings, parents, under

from jupyter_volume.fsspec import VolumeFileSystem

pytestmark = pytest.mark.slow  # long in all: started first (conftest)

# -- the model's vocabulary ------------------------------------------------------------------

FILES = [
    "a.txt",
    "ü.bin",  # non-ASCII
    "日本語/é.txt",  # non-ASCII folder and file (NFC)
    "sub/c",
    "sub/deep/d.bin",
    "sub/deep/cafe\u0301.txt",  # NFD: a combining accent
    "x y/z y.txt",  # spaces
    "empty/n.csv",
]
FOLDERS = ["sub", "sub/deep", "日本語", "empty", "e2/x", "x y", "new"]

# empty; tiny; the inline boundary (<= 512 B live in the tree node); a few KiB; several
# content-defined chunks (32-512 KiB, 128 KiB on average)
SIZES = [0, 1, 100, 512, 513, 5000, 70_000, 300_000]
INDEX = st.integers(0, 10_000)
SEED = st.integers(0, 1_000)


def content(seed: int, size: int) -> bytes:
    return random.Random(seed * 1_000_003 + size).randbytes(size)


class Model:
    """The newest commit: files (path -> bytes) and folders (a set of paths)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.dirs: set[str] = set()

    def copy(self) -> Model:
        m = Model()
        m.files = dict(self.files)
        m.dirs = set(self.dirs)
        return m

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Model) and (self.files, self.dirs) == (other.files, other.dirs)

    def isdir(self, p: str) -> bool:
        return p == "" or p in self.dirs

    def exists(self, p: str) -> bool:
        return p in self.files or self.isdir(p)

    def write(self, p: str, data: bytes) -> None:
        assert p not in self.dirs and not any(q in self.files for q in parents(p))
        self.dirs.update(parents(p))
        self.files[p] = data

    def mkdirs(self, p: str) -> None:
        self.dirs.update([*parents(p), p])

    def below(self, folder: str) -> list[str]:
        """Every path below ``folder`` (files and folders), not the folder itself."""
        if folder == "":
            return [*self.files, *self.dirs]
        return [q for q in [*self.files, *self.dirs] if under(q, folder)]

    def remove(self, p: str) -> None:
        for q in [p, *self.below(p)]:
            self.files.pop(q, None)
            self.dirs.discard(q)

    def listing(self) -> dict[str, Any]:
        """path -> size (files) or "DIR" (folders)."""
        return {**{p: len(d) for p, d in self.files.items()}, **dict.fromkeys(self.dirs, "DIR")}


# -- the state machine ------------------------------------------------------------------------


class VolumeFS(RuleBasedStateMachine):
    store: Any = None
    tmp: Path = Path()
    counter = itertools.count()

    def __init__(self) -> None:
        super().__init__()
        n = next(self.counter)
        self.n = n
        self.name = f"fsm-{n}"
        self.fs = VolumeFileSystem(store=self.store, skip_instance_cache=True)
        self.fs2 = VolumeFileSystem(store=StoreAs(self.store), skip_instance_cache=True)
        self.fs.mkdir(self.name)  # at the top level: a new volume
        self.m = Model()
        self.seq = self.head_seq()
        self.snapshots: dict[int, Model] = {self.seq: self.m.copy()}
        self.local = self.tmp / f"ex{n}"
        self.local.mkdir(parents=True)
        self.locals = itertools.count()

    # -- helpers ---------------------------------------------------------------------------------
    def u(self, p: str) -> str:
        """The URL of inner path ``p``."""
        return f"volume://{self.name}/{p}" if p else f"volume://{self.name}"

    def full(self, p: str) -> str:
        """What fsspec calls return for inner path ``p`` (no protocol)."""
        return f"{self.name}/{p}" if p else self.name

    def inner(self, full: str) -> str:
        assert full == self.name or full.startswith(self.name + "/"), full
        return full[len(self.name) + 1 :]

    def head_seq(self) -> int:
        return self.fs.info(self.u(""))["commit"]

    def pick(self, items: Any, i: int) -> Any:
        items = sorted(items)
        return items[i % len(items)] if items else None

    def committed(self, changed: bool | Model, what: str, at_most: int = 1) -> None:
        """After a write: the head moved by one commit if the model changed (at most
        ``at_most`` otherwise); remember the head as that commit's tree. ``changed``: a
        bool, or the model before the write (changed if it differs)."""
        if isinstance(changed, Model):
            changed = changed != self.m
        seq = self.head_seq()
        if changed:
            assert self.seq < seq <= self.seq + at_most, f"{what}: seq {self.seq} -> {seq}"
        else:
            assert self.seq <= seq <= self.seq + at_most, f"{what}: seq {self.seq} -> {seq}"
        self.seq = seq
        self.snapshots[seq] = self.m.copy()

    def unchanged(self, what: str) -> None:
        seq = self.head_seq()
        assert seq == self.seq, f"{what}: a commit ({self.seq} -> {seq}) that changed nothing"

    def target_for(self, src: str, dst: str) -> str:
        """cp/mv's rule: onto an existing folder, the source goes into it by its name."""
        return f"{dst}/{posixpath.basename(src)}" if self.m.isdir(dst) else dst

    def raises(self, exc: Any, fn: Any, what: str) -> BaseException:
        try:
            fn()
        except exc as e:
            return e
        except Exception as e:  # noqa: BLE001
            raise AssertionError(f"{what}: raised {type(e).__name__}: {e}, not {exc}") from e
        raise AssertionError(f"{what}: did not raise {exc}")

    def listing_of(self, fs: VolumeFileSystem, ref: str = "") -> dict[str, Any]:
        root = f"volume://{self.name}{ref}"
        found = fs.find(root, withdirs=True, detail=True)
        out: dict[str, Any] = {}
        prefix = f"{self.name}{ref}"
        for full, info in found.items():
            p = full[len(prefix) + 1 :] if full != prefix else ""
            if p == "":
                continue
            out[p] = "DIR" if info["type"] == "directory" else info["size"]
        return out

    # -- writes ----------------------------------------------------------------------------------
    @rule(name=st.sampled_from(FILES), size=st.sampled_from(SIZES), seed=SEED, second=st.booleans())
    def pipe_file(self, name: str, size: int, seed: int, second: bool) -> None:
        """One file written by either client (the other sees it at its next call)."""
        data = content(seed, size)
        (self.fs2 if second else self.fs).pipe_file(self.u(name), data)
        self.m.write(name, data)
        self.committed(True, f"pipe_file {name}")

    @rule(
        names=st.lists(st.sampled_from(FILES), min_size=1, max_size=4, unique=True),
        size=st.sampled_from(SIZES),
        seed=SEED,
    )
    def pipe_many(self, names: list[str], size: int, seed: int) -> None:
        values = {self.u(n): content(seed + i, size) for i, n in enumerate(names)}
        self.fs.pipe(values)
        for n in names:
            self.m.write(n, values[self.u(n)])
        self.committed(True, f"pipe of {names}")

    @rule(
        name=st.sampled_from(FILES),
        sizes=st.lists(st.sampled_from(SIZES), min_size=1, max_size=4),
        seed=SEED,
        fail=st.booleans(),
        text=st.booleans(),
    )
    def open_write(self, name: str, sizes: list[int], seed: int, fail: bool, text: bool) -> None:
        """``open(..., "wb")`` written in pieces; an exception inside ``with`` discards it."""
        pieces = [content(seed + i, s) for i, s in enumerate(sizes)]
        if text:
            pieces = [p.hex().encode() for p in pieces]
        try:
            with self.fs.open(self.u(name), "w" if text else "wb") as f:
                for p in pieces:
                    f.write(p.decode() if text else p)
                if fail:
                    raise _Boom
        except _Boom:
            pass
        if fail:
            self.unchanged(f"failed write of {name}")
            return
        self.m.write(name, b"".join(pieces))
        self.committed(True, f"open/write of {name}")

    @rule(i=INDEX, size=st.sampled_from(SIZES), seed=SEED)
    def append(self, i: int, size: int, seed: int) -> None:
        p = self.pick(self.m.files, i)
        if p is None:
            return
        data = content(seed, size)
        with self.fs.open(self.u(p), "ab") as f:
            f.write(data)
        self.m.files[p] += data
        self.committed(True, f"append to {p}")

    @rule(i=INDEX, size=st.sampled_from(SIZES), seed=SEED)
    def exclusive_create(self, i: int, size: int, seed: int) -> None:
        """``mode="create"``/``"xb"`` onto a file that exists fails; onto a new one writes."""
        p = self.pick(FILES, i)
        data = content(seed, size)
        if p in self.m.files:
            self.raises(
                FileExistsError,
                lambda: self.fs.pipe_file(self.u(p), data, mode="create"),
                f"pipe_file create onto {p}",
            )

            def xb() -> None:
                with self.fs.open(self.u(p), "xb") as f:
                    f.write(data)

            self.raises(FileExistsError, xb, f"xb onto {p}")
            self.unchanged(f"refused exclusive writes of {p}")
            return
        self.fs.pipe_file(self.u(p), data, mode="create")
        self.m.write(p, data)
        self.committed(True, f"exclusive create of {p}")

    @rule(i=INDEX, seed=SEED)
    def write_onto_folder(self, i: int, seed: int) -> None:
        d = self.pick(self.m.dirs, i)
        if d is None:
            return
        self.raises(IsADirectoryError, lambda: self.fs.open(self.u(d), "wb"), f"open wb {d}")
        self.raises(Exception, lambda: self.fs.pipe_file(self.u(d), b"x"), f"pipe onto {d}")
        self.unchanged(f"writes onto folder {d}")

    # -- folders ---------------------------------------------------------------------------------
    @rule(
        d=st.sampled_from(FOLDERS),
        how=st.sampled_from(["mkdir", "makedirs", "makedirs_ok", "noparents"]),
    )
    def mkdir(self, d: str, how: str) -> None:
        exists = self.m.isdir(d)
        missing_parent = any(not self.m.isdir(q) for q in parents(d))
        if how == "mkdir":
            if exists:
                self.raises(FileExistsError, lambda: self.fs.mkdir(self.u(d)), f"mkdir {d}")
            else:
                self.fs.mkdir(self.u(d))
        elif how == "makedirs":
            if exists:
                self.raises(FileExistsError, lambda: self.fs.makedirs(self.u(d)), f"makedirs {d}")
            else:
                self.fs.makedirs(self.u(d))
        elif how == "makedirs_ok":
            self.fs.makedirs(self.u(d), exist_ok=True)
        else:
            if exists:
                self.raises(
                    FileExistsError,
                    lambda: self.fs.mkdir(self.u(d), create_parents=False),
                    f"mkdir {d} (no parents)",
                )
            elif missing_parent:
                self.raises(
                    FileNotFoundError,
                    lambda: self.fs.mkdir(self.u(d), create_parents=False),
                    f"mkdir {d} with a missing parent, create_parents=False",
                )
                self.unchanged(f"mkdir {d} without its parent")
                return
            else:
                self.fs.mkdir(self.u(d), create_parents=False)
        if exists:
            self.unchanged(f"{how} of existing {d}")
            return
        self.m.mkdirs(d)
        self.committed(True, f"{how} {d}")

    @rule(i=INDEX, kind=st.sampled_from(["dir", "file", "missing"]))
    def rmdir(self, i: int, kind: str) -> None:
        if kind == "file":
            p = self.pick(self.m.files, i)
            if p is None:
                return
            self.raises(NotADirectoryError, lambda: self.fs.rmdir(self.u(p)), f"rmdir file {p}")
            self.unchanged(f"rmdir of file {p}")
            return
        if kind == "missing":
            p = self.pick([d for d in FOLDERS if not self.m.isdir(d)], i)
            if p is None:
                return
            self.raises(FileNotFoundError, lambda: self.fs.rmdir(self.u(p)), f"rmdir missing {p}")
            self.unchanged(f"rmdir of missing {p}")
            return
        d = self.pick(self.m.dirs, i)
        if d is None:
            return
        if self.m.below(d):
            e = self.raises(OSError, lambda: self.fs.rmdir(self.u(d)), f"rmdir non-empty {d}")
            assert e.errno == errno.ENOTEMPTY, e
            self.unchanged(f"rmdir of non-empty {d}")
            return
        self.fs.rmdir(self.u(d))
        self.m.remove(d)
        self.committed(True, f"rmdir {d}")

    # -- removing --------------------------------------------------------------------------------
    @rule(i=INDEX)
    def rm_file(self, i: int) -> None:
        p = self.pick(self.m.files, i)
        if p is None:
            return
        self.fs.rm_file(self.u(p))
        self.m.remove(p)
        self.committed(True, f"rm_file {p}")

    @rule(i=INDEX)
    def rm_file_of_folder(self, i: int) -> None:
        d = self.pick(self.m.dirs, i)
        if d is None:
            return
        self.raises(IsADirectoryError, lambda: self.fs.rm_file(self.u(d)), f"rm_file {d}")
        self.unchanged(f"rm_file of folder {d}")

    @rule(i=INDEX, recursive=st.booleans())
    def rm_folder(self, i: int, recursive: bool) -> None:
        d = self.pick(self.m.dirs, i)
        if d is None:
            return
        if not recursive and self.m.below(d):
            e = self.raises(OSError, lambda: self.fs.rm(self.u(d)), f"rm non-empty {d}")
            assert e.errno == errno.ENOTEMPTY, e
            self.unchanged(f"rm of non-empty {d}")
            return
        self.fs.rm(self.u(d), recursive=recursive)
        self.m.remove(d)
        self.committed(True, f"rm {d} recursive={recursive}")

    @rule(idx=st.lists(INDEX, min_size=1, max_size=3))
    def rm_many(self, idx: list[int]) -> None:
        """``rm`` of a list of paths (files and folders, recursive): one commit."""
        paths = sorted(self.m.files) + sorted(self.m.dirs)
        if not paths:
            return
        chosen = sorted({paths[i % len(paths)] for i in idx})
        self.fs.rm([self.u(p) for p in chosen], recursive=True)
        for p in chosen:
            self.m.remove(p)
        self.committed(True, f"rm of {chosen}")

    # -- moving and copying ----------------------------------------------------------------------
    @rule(i=INDEX, dst=st.sampled_from(FILES + FOLDERS))
    def mv_file(self, i: int, dst: str) -> None:
        src = self.pick(self.m.files, i)
        if src is None:
            return
        if dst in FOLDERS and not self.m.isdir(dst):
            return  # keep file names and folder names apart
        target = self.target_for(src, dst)
        if target == src:
            return
        if target in self.m.dirs:
            return  # a file onto a folder: not asked here
        self.fs.mv(self.u(src), self.u(dst))
        data = self.m.files.pop(src)
        self.m.write(target, data)
        self.committed(True, f"mv {src} {dst}")  # one commit, a new folder included

    @rule(i=INDEX, dst=st.sampled_from(FOLDERS))
    def mv_folder(self, i: int, dst: str) -> None:
        src = self.pick(self.m.dirs, i)
        if src is None:
            return
        target = self.target_for(src, dst)
        if dst == src or under(dst, src) or target == src or under(target, src):
            return  # into itself
        if self.m.exists(target):
            # onto an existing folder of the same name: fsspec's generic mv (copy, then
            # rm) merges, Volume.move refuses; fsspec does not say which (not asked here)
            return
        self.fs.mv(self.u(src), self.u(dst), recursive=True)
        moved = {target + q[len(src) :]: q for q in [src, *self.m.below(src)]}
        old = self.m.copy()
        self.m.remove(src)
        for new, q in moved.items():
            if q in old.files:
                self.m.write(new, old.files[q])
            else:
                self.m.mkdirs(new)
        self.committed(True, f"mv {src} {dst}")  # one commit, a new folder included

    @rule(i=INDEX, dst=st.sampled_from(FILES))
    def cp_file(self, i: int, dst: str) -> None:
        src = self.pick(self.m.files, i)
        if src is None or src == dst:
            return
        before = self.m.copy()
        self.fs.cp_file(self.u(src), self.u(dst))
        self.m.write(dst, self.m.files[src])
        self.committed(before, f"cp_file {src} {dst}", at_most=2)

    @rule(i=INDEX, dst=st.sampled_from(FILES + FOLDERS))
    def copy_file(self, i: int, dst: str) -> None:
        """``fs.copy`` of one file: into a folder that exists, else to that path."""
        src = self.pick(self.m.files, i)
        if src is None:
            return
        if dst in FOLDERS and not self.m.isdir(dst):
            return
        target = self.target_for(src, dst)
        if target == src or target in self.m.dirs:
            return
        before = self.m.copy()
        self.fs.copy(self.u(src), self.u(dst))
        self.m.write(target, self.m.files[src])
        # cp is not promised to be one commit: a missing parent folder is one of its own
        self.committed(before, f"copy {src} {dst}", at_most=2)

    @rule(i=INDEX, dst=st.sampled_from(FOLDERS))
    def copy_folder(self, i: int, dst: str) -> None:
        """``fs.copy(src, dst, recursive=True)`` of a folder: cp -r's rule."""
        src = self.pick(self.m.dirs, i)
        if src is None:
            return
        target = self.target_for(src, dst)
        if target == src or under(target, src) or dst == src or under(dst, src):
            return
        if self.m.exists(target):
            return  # merging into an existing folder: not asked here
        before = self.m.copy()
        self.fs.copy(self.u(src), self.u(dst), recursive=True)
        for q in [src, *before.below(src)]:
            new = target + q[len(src) :]
            if q in before.files:
                self.m.write(new, before.files[q])
            else:
                self.m.mkdirs(new)
        # a copy of many paths is one cp_file (one commit) each: not counted
        self.committed(before, f"copy -r {src} {dst}", at_most=10_000)

    # -- put and get -----------------------------------------------------------------------------
    @rule(
        dst=st.sampled_from(FOLDERS),
        files=st.lists(
            st.tuples(
                st.sampled_from(["f.bin", "ü/g.txt", "ü/h", "deep/er/i"]), st.sampled_from(SIZES)
            ),
            min_size=0,
            max_size=4,
            unique_by=lambda t: t[0],
        ),
        empty=st.booleans(),
        seed=SEED,
    )
    def put(self, dst: str, files: list[tuple[str, int]], empty: bool, seed: int) -> None:
        """``put(local_folder, dst, recursive=True)``: one commit; cp -r's rule."""
        src = self.local / f"up{next(self.locals)}"
        src.mkdir()
        written = {}
        for k, (rel, size) in enumerate(files):
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            written[rel] = content(seed + k, size)
            (src / rel).write_bytes(written[rel])
        if empty:
            (src / "vide").mkdir()
        target = self.target_for(src.name, dst)
        if any(q in self.m.files for q in [*parents(target), target]):
            return
        before_dirs = {posixpath.dirname(r) for r in written if posixpath.dirname(r)}
        self.fs.put(str(src), self.u(dst), recursive=True)
        self.m.mkdirs(target)
        for d in before_dirs:
            self.m.mkdirs(f"{target}/{d}")
        if empty:
            self.m.mkdirs(f"{target}/vide")
        for rel, data in written.items():
            self.m.write(f"{target}/{rel}", data)
        self.committed(True, f"put {sorted(written)} to {dst}")  # folders and files: one commit

    @rule(i=INDEX, size=st.sampled_from(SIZES), seed=SEED)
    def put_file(self, i: int, size: int, seed: int) -> None:
        p = self.pick(FILES, i)
        lp = self.local / f"one{next(self.locals)}"
        data = content(seed, size)
        lp.write_bytes(data)
        self.fs.put_file(str(lp), self.u(p))
        self.m.write(p, data)
        self.committed(True, f"put_file to {p}")

    @rule(i=INDEX)
    def get(self, i: int) -> None:
        """``get(folder, new_local, recursive=True)``: the folder's tree, empty folders too."""
        d = self.pick(["", *self.m.dirs], i)
        out = self.local / f"down{next(self.locals)}"
        self.fs.get(self.u(d), str(out), recursive=True)
        got: dict[str, Any] = {}
        for root, dirs, files in os.walk(out):
            rel = os.path.relpath(root, out)
            pre = "" if rel == "." else rel + "/"
            for n in dirs:
                got[pre + n] = "DIR"
            for n in files:
                got[pre + n] = (Path(root) / n).read_bytes()
        pre = f"{d}/" if d else ""
        want: dict[str, Any] = {}
        for q in self.m.below(d):
            want[q[len(pre) :]] = self.m.files.get(q, "DIR")
        assert got == want, f"get of {d!r}: {sorted(got)} != {sorted(want)}"
        shutil.rmtree(out)

    @rule(i=INDEX)
    def get_file(self, i: int) -> None:
        p = self.pick(self.m.files, i)
        if p is None:
            return
        out = self.local / f"g{next(self.locals)}"
        self.fs.get(self.u(p), str(out))
        assert out.read_bytes() == self.m.files[p], f"get of {p}"
        out.unlink()

    # -- transactions ----------------------------------------------------------------------------
    @rule(
        ops=st.lists(
            st.tuples(
                st.sampled_from(
                    ["pipe", "open", "append", "cp", "put", "failed_open", "xb", "mkdir", "rm"]
                ),
                st.sampled_from(FILES + FOLDERS),
                st.sampled_from(SIZES),
                SEED,
            ),
            min_size=1,
            max_size=4,
        ),
        fail=st.booleans(),
    )
    def transaction(self, ops: list[tuple[str, str, int, int]], fail: bool) -> None:
        """Every file written in the block: one commit at the end, none if it raises."""
        pending = self.m.copy()
        try:
            with self.fs.transaction:
                for op, p, size, seed in ops:
                    data = content(seed, size)
                    if op == "mkdir":
                        # commits at once, and stays if the block raises
                        if p in FILES or pending.isdir(p):
                            continue
                        self.fs.mkdir(self.u(p))
                        self.m.mkdirs(p)
                        pending.mkdirs(p)
                        self.committed(True, f"mkdir {p} inside a transaction")
                        continue
                    if op == "rm":
                        # commits at once; only a file the block did not write
                        q = self.pick(self.m.files, seed)
                        if q is None or pending.files.get(q) != self.m.files[q]:
                            continue
                        self.fs.rm(self.u(q))
                        self.m.remove(q)
                        pending.remove(q)
                        self.committed(True, f"rm {q} inside a transaction")
                        continue
                    if p in FOLDERS:
                        continue
                    if op == "xb":
                        # fails on a file that exists or that the block wrote
                        def xb(p: str = p, data: bytes = data) -> None:
                            with self.fs.open(self.u(p), "xb") as f:
                                f.write(data)

                        if p in pending.files:
                            self.raises(FileExistsError, xb, f"xb of {p} in a transaction")
                        else:
                            xb()
                            pending.write(p, data)
                    elif op == "pipe":
                        self.fs.pipe_file(self.u(p), data)
                        pending.write(p, data)
                    elif op == "open":
                        with self.fs.open(self.u(p), "wb") as f:
                            f.write(data[: len(data) // 2])
                            f.write(data[len(data) // 2 :])
                        pending.write(p, data)
                    elif op == "append":
                        with self.fs.open(self.u(p), "ab") as f:
                            f.write(data)
                        pending.write(p, pending.files.get(p, b"") + data)
                    elif op == "cp":
                        src = self.pick(pending.files, seed)
                        if src is None or src == p:
                            continue
                        # a file the block wrote is not in the volume yet
                        if src not in self.m.files or self.m.files[src] != pending.files[src]:
                            continue
                        self.fs.cp_file(self.u(src), self.u(p))
                        pending.write(p, pending.files[src])
                    elif op == "put":
                        lp = self.local / f"t{next(self.locals)}"
                        lp.write_bytes(data)
                        self.fs.put_file(str(lp), self.u(p))
                        lp.write_bytes(b"changed after the put")  # put copies when called
                        pending.write(p, data)
                    else:
                        try:
                            with self.fs.open(self.u(p), "wb") as f:
                                f.write(data)
                                raise _Boom
                        except _Boom:
                            pass
                # nothing is visible before the end, to either client
                assert self.listing_of(self.fs2) == self.m.listing()
                assert self.listing_of(self.fs) == self.m.listing()
                for q, data in self.m.files.items():
                    assert self.fs.cat_file(self.u(q)) == data, f"{q} inside a transaction"
                self.unchanged("inside a transaction")
                if fail:
                    raise _Boom
        except _Boom:
            pass
        if fail:
            self.unchanged("a transaction that raised")
            return
        changed = pending != self.m
        self.m = pending
        self.committed(changed, f"transaction {ops}")

    # -- reads -----------------------------------------------------------------------------------
    @rule(
        i=INDEX,
        start=st.integers(-400_000, 400_000) | st.none(),
        end=st.integers(-400_000, 400_000) | st.none(),
        small=st.booleans(),
    )
    def cat_file(self, i: int, start: int | None, end: int | None, small: bool) -> None:
        p = self.pick(self.m.files, i)
        if p is None:
            return
        data = self.m.files[p]
        if small:  # offsets near the file's size
            start = None if start is None else start % (2 * len(data) + 3) - len(data) - 1
            end = None if end is None else end % (2 * len(data) + 3) - len(data) - 1
        got = self.fs.cat_file(self.u(p), start=start, end=end)
        assert got == data[start:end], f"cat_file {p} [{start}:{end}] of {len(data)} B"

    @rule(idx=st.lists(INDEX, min_size=1, max_size=5), missing=st.booleans())
    def cat_many(self, idx: list[int], missing: bool) -> None:
        files = sorted(self.m.files)
        if not files:
            return
        chosen = sorted({files[i % len(files)] for i in idx})
        urls = [self.u(p) for p in chosen]
        gone = [f for f in FILES if f not in self.m.files]
        if missing and gone:
            urls.append(self.u(gone[0]))
            got = self.fs.cat(urls, on_error="omit")
            back = self.fs.cat(urls, on_error="return")
            assert isinstance(back.pop(self.full(gone[0])), FileNotFoundError)
            assert back == got
        else:
            got = self.fs.cat(urls)
        assert got == {self.full(p): self.m.files[p] for p in chosen}
        ranged = self.fs.cat(urls[: len(chosen)], start=-700, end=None)
        assert ranged == {self.full(p): self.m.files[p][-700:] for p in chosen}

    @rule(
        ranges=st.lists(
            st.tuples(INDEX, st.integers(-1000, 400_000), st.integers(-1000, 400_000)),
            min_size=1,
            max_size=5,
        )
    )
    def cat_ranges(self, ranges: list[tuple[int, int, int]]) -> None:
        files = sorted(self.m.files)
        if not files:
            return
        paths = [files[i % len(files)] for i, _s, _e in ranges]
        starts = [s for _i, s, _e in ranges]
        ends = [e for _i, _s, e in ranges]
        got = self.fs.cat_ranges([self.u(p) for p in paths], starts, ends)
        want = [self.m.files[p][s:e] for p, s, e in zip(paths, starts, ends, strict=True)]
        assert got == want, f"cat_ranges {list(zip(paths, starts, ends, strict=True))}"

    @rule(
        i=INDEX,
        ops=st.lists(
            st.tuples(
                st.sampled_from(["seek", "seek_cur", "seek_end", "read", "readline"]),
                st.integers(-70_000, 400_000),
            ),
            min_size=1,
            max_size=6,
        ),
    )
    def open_read(self, i: int, ops: list[tuple[str, int]]) -> None:
        """``open(..., "rb")`` with seek/read/readline against io.BytesIO."""
        p = self.pick(self.m.files, i)
        if p is None:
            return
        want = io.BytesIO(self.m.files[p])
        with self.fs.open(self.u(p), "rb") as f:
            assert f.size == len(self.m.files[p])
            for op, n in ops:
                if op == "seek":
                    n = abs(n)
                    assert f.seek(n) == want.seek(n), (p, op, n)
                elif op == "seek_cur":
                    n = max(n, -want.tell())
                    assert f.seek(n, 1) == want.seek(n, 1), (p, op, n)
                elif op == "seek_end":
                    n = max(-len(self.m.files[p]), min(n, 0))
                    assert f.seek(n, 2) == want.seek(n, 2), (p, op, n)
                elif op == "read":
                    n = n if n >= -1 else -1
                    assert f.read(n) == want.read(n), (p, op, n, want.tell())
                else:
                    assert f.readline() == want.readline(), (p, op, want.tell())
                assert f.tell() == want.tell(), (p, op, n)

    @rule(i=INDEX, detail=st.booleans())
    def ls(self, i: int, detail: bool) -> None:
        d = self.pick(["", *self.m.dirs], i)
        pre = f"{d}/" if d else ""
        children = sorted(
            q
            for q in [*self.m.files, *self.m.dirs]
            if q.startswith(pre) and "/" not in q[len(pre) :]
        )
        got = self.fs.ls(self.u(d), detail=detail)
        if not detail:
            assert got == [self.full(q) for q in children], f"ls {d!r}"
            return
        assert [e["name"] for e in got] == [self.full(q) for q in children], f"ls {d!r}"
        for e in got:
            q = self.inner(e["name"])
            if q in self.m.files:
                assert (e["type"], e["size"]) == ("file", len(self.m.files[q])), e
            else:
                assert e["type"] == "directory", e

    @rule(i=INDEX)
    def ls_of_a_file(self, i: int) -> None:
        p = self.pick(self.m.files, i)
        if p is None:
            return
        assert self.fs.ls(self.u(p), detail=False) == [self.full(p)]

    @rule(p=st.sampled_from(FILES + FOLDERS))
    def info_exists(self, p: str) -> None:
        for fs in (self.fs, self.fs2):
            assert fs.exists(self.u(p)) == self.m.exists(p), p
            assert fs.isdir(self.u(p)) == self.m.isdir(p), p
            assert fs.isfile(self.u(p)) == (p in self.m.files), p
        if not self.m.exists(p):
            self.raises(FileNotFoundError, lambda: self.fs.info(self.u(p)), f"info {p}")
            self.raises(FileNotFoundError, lambda: self.fs.ls(self.u(p)), f"ls {p}")
            self.raises(FileNotFoundError, lambda: self.fs.cat_file(self.u(p)), f"cat {p}")
            assert self.fs.find(self.u(p)) == []
            return
        info = self.fs.info(self.u(p))
        assert info["name"] == self.full(p)
        assert info["commit"] == self.seq, (info, self.seq)
        if p in self.m.files:
            assert not self.fs.exists(self.u(p) + "/x"), f"{p}/x below a file"
        assert self.fs.info(self.u(p) + "/")["name"] == self.full(p)
        if p in self.m.files:
            assert (info["type"], info["size"]) == ("file", len(self.m.files[p])), info
        else:
            assert info["type"] == "directory", info
            self.raises(IsADirectoryError, lambda: self.fs.cat_file(self.u(p)), f"cat {p}")
            self.raises(IsADirectoryError, lambda: self.fs.open(self.u(p), "rb"), f"open {p}")

    @rule(i=INDEX, maxdepth=st.none() | st.integers(1, 3), withdirs=st.booleans())
    def find_du(self, i: int, maxdepth: int | None, withdirs: bool) -> None:
        d = self.pick(["", *self.m.dirs, *self.m.files], i)
        if d in self.m.files:
            want = [d]
            depth_ok = [d]
        else:
            base = d.count("/") + 1 if d else 0
            depth_ok = [
                q
                for q in self.m.below(d)
                if maxdepth is None or q.count("/") + 1 - base <= maxdepth
            ]
            want = [q for q in depth_ok if withdirs or q in self.m.files]
            if withdirs:
                want.append(d)
        got = self.fs.find(self.u(d), maxdepth=maxdepth, withdirs=withdirs)
        assert got == sorted(self.full(q) for q in want), f"find {d!r} {maxdepth} {withdirs}"
        sizes = {self.full(q): len(self.m.files[q]) for q in depth_ok if q in self.m.files}
        assert self.fs.du(self.u(d), maxdepth=maxdepth) == sum(sizes.values())
        assert self.fs.du(self.u(d), total=False, maxdepth=maxdepth) == sizes

    @precondition(lambda self: len(self.snapshots) > 1)
    @rule(i=INDEX, j=INDEX)
    def read_old_commit(self, i: int, j: int) -> None:
        """``volume://NAME@SEQ/...``: the tree as it was after that commit."""
        seq = self.pick(self.snapshots, i)
        then = self.snapshots[seq]
        assert self.listing_of(self.fs2, f"@{seq}") == then.listing(), f"find at @{seq}"
        p = self.pick(then.files, j)
        if p is not None:
            url = f"volume://{self.name}@{seq}/{p}"
            assert self.fs.cat_file(url) == then.files[p], f"{p} at @{seq}"
            assert self.fs.info(url)["commit"] == seq
            self.raises(ValueError, lambda: self.fs.pipe_file(url, b"x"), f"write to {url}")

    @rule(i=INDEX, size=st.sampled_from(SIZES), seed=SEED, at=st.floats(0, 1))
    def reader_keeps_its_commit(self, i: int, size: int, seed: int, at: float) -> None:
        """A file open for reading reads the commit it was opened at until it is closed,
        while the other client replaces the file."""
        p = self.pick(self.m.files, i)
        if p is None:
            return
        old, new = self.m.files[p], content(seed, size)
        cut = int(at * len(old))
        with self.fs.open(self.u(p), "rb") as f:
            head = f.read(cut)
            self.fs2.pipe_file(self.u(p), new)
            rest = f.read()
            f.seek(0)
            again = f.read()
        assert (head, rest, again) == (old[:cut], old[cut:], old), f"{p} read across a commit"
        self.m.write(p, new)
        self.committed(True, f"pipe_file {p} by the second client")
        assert self.fs.cat_file(self.u(p)) == new

    @precondition(lambda self: len(self.snapshots) > 1)
    @rule(i=INDEX, j=INDEX, dst=st.sampled_from(FILES))
    def cp_out_of_an_old_commit(self, i: int, j: int, dst: str) -> None:
        """``cp`` out of ``NAME@SEQ`` brings an old version back; ``mv`` out of it is refused."""
        seq = self.pick(self.snapshots, i)
        then = self.snapshots[seq]
        p = self.pick(then.files, j)
        if p is None:
            return
        old_url = f"volume://{self.name}@{seq}/{p}"
        self.raises(ValueError, lambda: self.fs.mv(old_url, self.u(dst)), f"mv {old_url}")
        self.unchanged(f"refused mv out of @{seq}")
        before = self.m.copy()
        self.fs.cp_file(old_url, self.u(dst))
        self.m.write(dst, then.files[p])
        self.committed(before, f"cp {old_url} {dst}", at_most=2)

    @rule()
    def checksums(self) -> None:
        """``checksum`` is equal for equal bytes in any path, different otherwise."""
        sums = {p: self.fs.checksum(self.u(p)) for p in self.m.files}
        for p, q in itertools.combinations(sorted(self.m.files), 2):
            same = self.m.files[p] == self.m.files[q]
            assert (sums[p] == sums[q]) == same, f"checksum of {p} and {q} (equal bytes: {same})"

    @rule(i=INDEX, n=st.integers(0, 100_000))
    def head_tail(self, i: int, n: int) -> None:
        p = self.pick(self.m.files, i)
        if p is None:
            return
        data = self.m.files[p]
        assert self.fs.head(self.u(p), n) == data[:n], f"head {p} {n}"
        assert self.fs.tail(self.u(p), n) == (data[-n:] if n else b""), f"tail {p} {n}"

    # -- invariants --------------------------------------------------------------------------------
    @invariant()
    def both_clients_see_the_model(self) -> None:
        want = self.m.listing()
        assert self.listing_of(self.fs) == want, "fs's listing"
        assert self.listing_of(self.fs2) == want, "fs2's listing"
        if self.m.files:
            files = sorted(self.m.files)
            got = self.fs2.cat([self.u(p) for p in files])  # a list: always a dict
            assert got == {self.full(p): self.m.files[p] for p in files}, "fs2's cat"


class _Boom(Exception):
    pass


def run(store: Any, tmp_path: Path, examples: int, steps: int) -> None:
    VolumeFS.store = store
    VolumeFS.tmp = tmp_path
    run_state_machine_as_test(VolumeFS, settings=model_settings(examples, steps))


def test_volume_fsspec_model_local(local_store: Any, tmp_path: Path) -> None:
    run(local_store, tmp_path, examples=200, steps=40)


def test_volume_fsspec_model_s3(s3_store: Any, tmp_path: Path) -> None:
    run(s3_store, tmp_path, examples=15, steps=25)


# -- what the machine found, reduced to one case each ----------------------------------------


def _commits(fs: VolumeFileSystem, name: str) -> int:
    return fs.info(f"volume://{name}")["commit"]


def test_put_of_a_folder_tree_is_one_commit(local_store: Any, tmp_path: Path) -> None:
    """README: "`put` of many files, `pipe` of a `{path: bytes}` dict and `rm` of many
    paths are one commit each" (VolumeFileSystem.put: "all the files of one call become
    one commit per volume"). A put of a local folder with a subfolder into a new folder
    makes three: one per folder it creates (``new``, ``new/sub``), then the files."""
    fs = VolumeFileSystem(store=local_store, skip_instance_cache=True)
    fs.mkdir("volume://put")
    up = tmp_path / "up"
    (up / "sub").mkdir(parents=True)
    (up / "a.txt").write_bytes(b"a")
    (up / "sub" / "b.txt").write_bytes(b"b")
    before = _commits(fs, "put")
    fs.put(str(up), "volume://put/new", recursive=True)
    assert fs.find("volume://put") == ["put/new/a.txt", "put/new/sub/b.txt"]
    assert _commits(fs, "put") == before + 1


def test_a_put_in_a_transaction_that_raises_commits_nothing(
    local_store: Any, tmp_path: Path
) -> None:
    """README: inside ``with fs.transaction:`` every file written or copied "becomes part
    of one commit per volume at the end of the block, or of none if it raises (`rm`, `mv`
    and `mkdir` inside it still commit at once)". A ``put`` of a local folder inside a
    block that raises leaves the folders it made committed (an empty ``new/sub``)."""
    fs = VolumeFileSystem(store=local_store, skip_instance_cache=True)
    fs.mkdir("volume://tput")
    up = tmp_path / "up"
    (up / "sub").mkdir(parents=True)
    (up / "sub" / "b.txt").write_bytes(b"b")
    before = _commits(fs, "tput")
    with pytest.raises(ZeroDivisionError):
        with fs.transaction:
            fs.put(str(up), "volume://tput/new", recursive=True)
            1 / 0  # noqa: B018
    assert fs.find("volume://tput", withdirs=True) == ["tput"]
    assert _commits(fs, "tput") == before


def test_mv_into_a_missing_folder_is_one_commit(local_store: Any) -> None:
    """README: "`mv` of a file or folder is one commit and copies no data". Moving a file
    to a path whose folder does not exist yet makes two: ``create folder new``, then the
    move."""
    fs = VolumeFileSystem(store=local_store, skip_instance_cache=True)
    fs.pipe_file("volume://mv/a.txt", b"a")
    before = _commits(fs, "mv")
    fs.mv("volume://mv/a.txt", "volume://mv/new/a.txt")
    assert fs.find("volume://mv", withdirs=True) == ["mv", "mv/new", "mv/new/a.txt"]
    assert _commits(fs, "mv") == before + 1


def test_cp_file_into_a_missing_folder_is_one_commit(local_store: Any) -> None:
    """A copy within a volume to a path whose folders do not exist yet made two commits
    (``create folder new``, then the copy), and a copy refused after the first left the
    folder behind. A file in the way is refused, as ``mkdir`` refuses it."""
    fs = VolumeFileSystem(store=local_store, skip_instance_cache=True)
    fs.pipe_file("volume://cp/a.txt", b"a")
    before = _commits(fs, "cp")
    fs.cp_file("volume://cp/a.txt", "volume://cp/new/deeper/a.txt")
    assert fs.cat_file("volume://cp/new/deeper/a.txt") == b"a"
    assert fs.find("volume://cp", withdirs=True) == [
        "cp",
        "cp/a.txt",
        "cp/new",
        "cp/new/deeper",
        "cp/new/deeper/a.txt",
    ]
    assert _commits(fs, "cp") == before + 1
    with pytest.raises(FileExistsError, match="a.txt is a file"):
        fs.cp_file("volume://cp/a.txt", "volume://cp/a.txt/b.txt")
    with pytest.raises(FileExistsError, match="a.txt is a file"):
        fs.mv("volume://cp/a.txt", "volume://cp/a.txt/b.txt")  # (not "move folder a.txt")
    fs.pipe_file("volume://cp/b.txt", b"b")
    with pytest.raises(FileExistsError, match="a.txt is a file"):
        fs.mv("volume://cp/b.txt", "volume://cp/a.txt/sub/b.txt")
    assert _commits(fs, "cp") == before + 2
    assert fs.find("volume://cp") == ["cp/a.txt", "cp/b.txt", "cp/new/deeper/a.txt"]
