"""A model-based (stateful) test of the ``jupyter volume`` command line: the file commands
(``put``, ``get``, ``ls``, ``cp``, ``rm``, ``du``) and the history ones (``history``,
``diff``, ``restore``, ``tag``, ``untag``), plus ``create`` and ``rename`` of volumes,
run in-process through :func:`jupyter_volume.cli.main` against a model of the volume:
a dict ``path -> bytes | DIR`` (every folder listed, parents included), one such tree per
commit, the tags, and a model of the local folder ``get`` writes into.

Each command's effect is checked through the Python API (a second client of the store,
as if in a process of its own: ``StoreAs``) and through its output (``--json`` parsed;
``ls`` into a pipe prints one path per line; ``get ... -`` writes the bytes). The model
follows README ("Use it from the terminal", "Exit codes"), each command's ``--help``
and Modal's ``modal volume`` where those are silent:

* every command that changes files (``put``, ``cp``, ``rm``, ``restore``) is one commit
  (the head's seq moves by exactly one) when the model changed; a command that changes
  nothing makes no commit (``put`` says "no changes"), and a commit that changed files
  shows in ``diff``. Where a command may rewrite a file with the same bytes
  and a new time (``put`` of a freshly written local file, ``restore``, ``cp`` onto an
  identical copy), one commit or none are both right;
* a failing command exits with the documented code (2 usage: a bad name, a target that
  exists without ``--force``, a folder where a file goes, a non-empty folder without
  ``-r``; 3 not found: the volume, a path, a commit, a tag), prints one line
  ``jupyter volume: error: ...`` on stderr that names the problem, nothing on stdout,
  and changes nothing (no commit, the same files; ``get`` writes no local file);
* ``put`` of a folder is one batch: any file that exists (without ``--force``) refuses
  the whole of it; empty folders are kept; a folder is never replaced by a file;
* ``get`` into an existing folder keeps the file's or folder's name, to a new path
  takes that path; ``get ... -`` writes a file's bytes, or every file of a folder in
  listing order (each folder's entries by name, a folder's contents at its place);
* ``ls`` lists a folder's children (every level with ``-r``), a file as itself, a glob's
  matches (``*`` within a name, ``**/`` any number of folders); rows sorted by path; a
  folder's size is the bytes below it;
* ``cp`` as ``cp``/``modal volume cp``: into an existing folder, a path ending in
  ``/`` or several sources go into DST under their own names (DST made if missing);
  otherwise the one source becomes DST (whose folder must exist); a folder needs ``-r``
  and merges into an existing folder; a file is overwritten; two sources of one name
  into one folder are refused (as ``cp``: "will not overwrite just-created") or both
  merged, never one silently dropped;
* a glob (``ls``, ``get ... -``) matches paths, as Modal's glob download: a matched
  folder brings nothing of what it holds; a glob that matches nothing is an empty
  listing (or "not found") for ``ls``, "not found" for ``get``;
* the same path typed as ``/p``, ``./p``, ``p//q`` or (a folder) ``p/`` is the same path;
* ``restore C [PATH]`` makes the volume (or PATH, exactly: what was added below it since
  goes) as it was at commit C; ``history``/``diff`` count and name the files each
  commit added, modified and deleted; tags name commits (digits-only names refused).

File and folder names are disjoint by base name (``FILE_BASES``, ``FOLDER_BASES``), so no
command meets a file where the model has a folder unless a rule asks for that error on
purpose; a step whose result would break that is skipped. Where the docs leave an
outcome open the machine accepts each reading and says so.

The commands name the store by ``$JUPYTER_VOLUME_STORE`` (``--store URL`` checks
first that the store exists, with an S3 client of its own: a fifth of a second a
command, most of a run's time on SeaweedFS).

What this machine found is reduced to one plain case each in ``test_cli_found.py``.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    rule,
    run_state_machine_as_test,
)
from modeltest import DIR, StoreAs, assert_same, model_settings, parents

from jupyter_volume import Volume
from jupyter_volume.cli import main
from jupyter_volume.results import FileEntryType
from jupyter_volume.store import open_store

pytestmark = pytest.mark.slow  # long in all: started first (conftest)

# -- the model's vocabulary -------------------------------------------------------------------


FILES = [
    "a.txt",
    "ü.bin",  # non-ASCII (NFC)
    "b.txt",
    "sub/c.txt",
    "sub/deep/d.bin",
    "x y/z.txt",  # spaces
    "x y/cafe\u0301.txt",  # NFD: a combining accent (kept as given, never normalized)
    "e2/f/e.txt",
]
FOLDERS = ["sub", "sub/deep", "x y", "empty", "e2/f", "tree"]
FILE_BASES = {"a.txt", "ü.bin", "b.txt", "c.txt", "d.bin", "z.txt", "cafe\u0301.txt", "e.txt"}
FILE_BASES |= {"got.bin"}
FOLDER_BASES = {"sub", "deep", "x y", "empty", "e2", "f", "tree", "new", "gotdir"}

# A local folder ``put`` uploads: some of these files and empty folders below it.
REL_FILES = ["a.txt", "c.txt", "deep/d.bin", "sub/c.txt", "ü.bin"]
REL_EMPTY = ["empty", "deep/f"]

# ls globs and which paths each matches (the README's rule, written out by hand)
GLOBS = {
    "*.txt": lambda p: "/" not in p and p.endswith(".txt"),
    "**/*.bin": lambda p: p.rsplit("/", 1)[-1].endswith(".bin"),
    "sub/*": lambda p: p.startswith("sub/") and p.count("/") == 1,
}

# empty; tiny; the inline boundary (<= 512 B live in the tree node); a few KiB; a couple
# of content-defined chunks (32-512 KiB, 128 KiB on average)
SIZES = [0, 1, 100, 512, 513, 5000, 200_000]

INDEX = st.integers(0, 10_000)
Tree = dict[str, Any]  # path -> bytes | DIR


def content(seed: int, size: int) -> bytes:
    return random.Random(seed * 1_000_003 + size).randbytes(size)


def base(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def parent(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def at_or_below(path: str, folder: str) -> bool:
    return not folder or path == folder or path.startswith(folder + "/")


def below(tree: Tree, folder: str) -> Tree:
    """What ``folder`` holds, relative to it (all levels)."""
    pre = folder + "/" if folder else ""
    return {p[len(pre) :]: v for p, v in tree.items() if p != folder and p.startswith(pre)}


def with_parents(tree: Tree, path: str) -> None:
    for q in parents(path):
        tree[q] = DIR


def walk(tree: Tree, folder: str) -> list[str]:
    """Paths below ``folder`` in listing order: each folder's entries by name, a
    folder's contents right after it."""
    pre = folder + "/" if folder else ""
    kids = sorted({p[len(pre) :].split("/")[0] for p in tree if p != folder and p.startswith(pre)})
    out: list[str] = []
    for k in kids:
        p = pre + k
        out.append(p)
        if tree[p] == DIR:
            out += walk(tree, p)
    return out


def spell(path: str, k: int, is_dir: bool) -> str:
    """``path`` as a user may type it: as is, with a leading '/', './', doubled slashes,
    or (a folder) a trailing '/'; the root is '/'."""
    if not path:
        return ["/", "/", "./", "//"][k % 4]
    forms = [path, "/" + path, "./" + path, path.replace("/", "//")]
    if is_dir:
        forms.append(path + "/")
    return forms[k % len(forms)]


def size_of(tree: Tree, path: str) -> int:
    v = tree[path]
    if v != DIR:
        return len(v)
    return sum(len(x) for x in below(tree, path).values() if x != DIR)


def kinds_kept(tree: Tree) -> bool:
    """True if every name is a file name for a file and a folder name for a folder."""
    return all(
        (base(p) in FOLDER_BASES) if v == DIR else (base(p) in FILE_BASES) for p, v in tree.items()
    )


def scan(root: Path) -> Tree:
    out: Tree = {}
    for d, dirs, files in os.walk(root):
        rel = os.path.relpath(d, root)
        pre = "" if rel == "." else rel + "/"
        for n in dirs:
            out[pre + n] = DIR
        for n in files:
            out[pre + n] = (Path(d) / n).read_bytes()
    return out


def file_changes(old: Tree, new: Tree) -> tuple[set[str], set[str], set[str], set[str]]:
    """(added, deleted, files whose bytes differ, files in both) between two trees."""
    of = {p for p, v in old.items() if v != DIR}
    nf = {p for p, v in new.items() if v != DIR}
    both = of & nf
    return nf - of, of - nf, {p for p in both if old[p] != new[p]}, both


@dataclass
class Ran:
    argv: tuple[str, ...]
    rc: int
    out: bytes
    err: str

    def __str__(self) -> str:
        return (
            f"`jupyter volume {' '.join(map(repr, self.argv))}`: exit {self.rc}\n"
            f"stdout: {self.out[:400]!r}\nstderr: {self.err[-600:]}"
        )


# -- the state machine ------------------------------------------------------------------------


class CliModel(RuleBasedStateMachine):
    url = ""
    api_store: Any = None
    capsys: Any = None
    tmp: Path = Path()
    counter = itertools.count()

    def __init__(self) -> None:
        super().__init__()
        n = next(self.counter)
        self.n = n
        self.name = f"m{n}"
        self.other = f"m{n}-other"  # a second volume: a rename onto it is refused
        self.work = self.tmp / f"ex{n}"
        self.dl = self.work / "dl"  # where `get` writes, modeled by self.local
        self.dl.mkdir(parents=True)
        self.files_made = itertools.count()
        self.ok("create", self.name)
        self.ok("create", self.other)
        self.vol = Volume.from_name(self.name, store=self.api_store)
        self.tree: Tree = {}
        self.local: Tree = {}
        self.tags: dict[str, int] = {}
        self.renames = 0
        self.seq = self.vol.seq
        self.snapshots: dict[int, Tree] = {self.seq: {}}

    # -- running the command line ----------------------------------------------------------------
    def cli(self, *argv: str) -> Ran:
        self.capsys.readouterr()
        rc = main(list(argv))
        out, err = self.capsys.readouterr()
        return Ran(argv, rc, out, err.decode("utf-8", "replace"))

    def ok(self, *argv: str) -> Ran:
        r = self.cli(*argv)
        assert r.rc == 0, f"expected success: {r}"
        return r

    def json(self, *argv: str) -> Any:
        r = self.ok(*argv, "--json")
        try:
            return json.loads(r.out)
        except ValueError as e:
            raise AssertionError(f"--json printed what is not JSON ({e}): {r}") from None

    def fails(
        self, *argv: str, rc: int | tuple[int, ...], words: tuple[str, ...], hint: str = ""
    ) -> Ran:
        """Run a command that must fail: its exit code, one clear line on stderr (naming
        one of ``words``, and the option that would do it: ``hint``; in command-line
        words, never the API's ``force=True``), nothing on stdout, and nothing changed in
        the volume."""
        r = self.cli(*argv)
        rcs = (rc,) if isinstance(rc, int) else rc
        assert r.rc in rcs, f"expected exit {rc}: {r}"
        lines = r.err.strip().splitlines()
        assert lines, f"no error message: {r}"
        last = lines[-1]
        assert "Traceback" not in r.err, f"a traceback: {r}"
        assert last.startswith("jupyter volume"), f"the error line is not the CLI's: {r}"
        assert "error:" in last, f"the last line is not an error: {r}"
        assert any(w.lower() in last.lower() for w in words), (
            f"the error names none of {words}: {r}"
        )
        assert hint in last, f"the error does not say what to do ({hint}): {r}"
        assert "force=True" not in last and "recursive=True" not in last, (
            f"the error speaks of the API's keywords, not the command line's options: {r}"
        )
        assert r.out == b"", f"a failing command printed to stdout: {r}"
        self.committed("no", f"{r.argv} (failed)")
        return r

    # -- checking the volume against the model --------------------------------------------------
    def api_listing(self, at: int | None = None) -> dict[str, Any]:
        return {
            e.path: DIR if e.type == FileEntryType.DIRECTORY else e.size
            for e in self.vol.listdir("/", recursive=True, at=at)
        }

    def check_listing(self, what: str) -> None:
        listed = self.api_listing()
        expected = {p: DIR if v == DIR else len(v) for p, v in self.tree.items()}
        if listed != expected:
            diff = {
                p: (listed.get(p, "-"), expected.get(p, "-"))
                for p in sorted(set(listed) | set(expected))
                if listed.get(p) != expected.get(p)
            }
            raise AssertionError(
                f"after {what}: the volume's listing (API) differs from the model "
                f"(actual, expected): {diff}"
            )

    def api_tree(self, at: int | None = None) -> Tree:
        out: Tree = {}
        for p, v in self.api_listing(at).items():
            out[p] = DIR if v == DIR else b"".join(self.vol.read_file(p, at=at))
        return out

    def committed(self, expect: str, what: str, paths: list[str] | None = None) -> int | None:
        """After a command: the head moved as the model says ("yes": one commit, "no":
        none, "maybe": either); the listing is the model's; ``paths`` read back byte for
        byte. Returns the new commit's seq, or None."""
        seq = self.vol.seq
        if expect == "yes":
            assert seq == self.seq + 1, f"{what}: head {seq}, expected one commit after {self.seq}"
        elif expect == "no":
            assert seq == self.seq, f"{what}: a commit ({seq}) where nothing changed ({self.seq})"
        else:
            assert seq in (self.seq, self.seq + 1), f"{what}: head {seq} after {self.seq}"
        new = None
        if seq != self.seq:
            if expect == "yes":
                changes = self.vol.diff(self.seq, seq)
                assert changes, (
                    f"{what}: commit {seq} changed nothing (diff {self.seq} {seq} is empty)"
                )
            self.seq = new = seq
            self.snapshots[seq] = dict(self.tree)
        self.check_listing(what)
        for p in paths or []:
            if self.tree.get(p, DIR) != DIR:
                got = b"".join(self.vol.read_file(p))
                assert got == self.tree[p], f"after {what}: {p} holds other bytes than the model"
        return new

    def expect_commit(self, old: Tree, new: Tree) -> str:
        """Whether a commit is due: "yes" if the files differ, "maybe" if only their times
        may (the same bytes written again)."""
        return "yes" if old != new else "maybe"

    # -- picking paths ---------------------------------------------------------------------------
    def _pick(self, items: list[str], i: int) -> str | None:
        return items[i % len(items)] if items else None

    def any_path(self, i: int) -> str:
        """Mostly a path of the volume or its root (""); one time in four a path of the
        vocabulary (which may not exist) or one that never exists."""
        if i % 4 == 0 or not self.tree:
            cands = sorted(set(self.tree) | set(FILES) | set(FOLDERS) | {"", "missing.txt"})
        else:
            cands = sorted(set(self.tree) | {""})
        return cands[(i // 4) % len(cands)]

    def files(self, tree: Tree | None = None) -> list[str]:
        return sorted(p for p, v in (self.tree if tree is None else tree).items() if v != DIR)

    def folders(self) -> list[str]:
        return sorted(p for p, v in self.tree.items() if v == DIR)

    def file_parent(self, path: str, tree: Tree | None = None) -> str | None:
        """The first parent of ``path`` that is a file, if any."""
        tree = self.tree if tree is None else tree
        for q in parents(path):
            if tree.get(q, DIR) != DIR:
                return q
        return None

    def pick_at(self, i: int, use: bool) -> int | None:
        if not use:
            return None
        seqs = sorted(self.snapshots)
        return seqs[i % len(seqs)]

    def tree_at(self, at: int | None) -> Tree:
        return self.tree if at is None else self.snapshots[at]

    def local_file(self, name: str, data: bytes) -> Path:
        d = self.work / f"src{next(self.files_made)}"
        d.mkdir(parents=True)
        p = d / name
        p.write_bytes(data)
        return p

    # -- put ---------------------------------------------------------------------------------------
    @initialize(
        rels=st.sets(st.sampled_from(REL_FILES), min_size=2),
        empties=st.sets(st.sampled_from(REL_EMPTY), min_size=1, max_size=1),
        remote=st.sampled_from([None, ""]),
        size=st.sampled_from(SIZES),
        seed=INDEX,
    )
    def first_put(
        self, rels: set[str], empties: set[str], remote: str | None, size: int, seed: int
    ) -> None:
        """Each example starts from a folder put into the volume: files, and an empty
        folder."""
        self.put_folder("sub", rels, empties, remote, size, seed, False, False)

    @rule(
        name=st.sampled_from(FILES),
        size=st.sampled_from(SIZES),
        seed=INDEX,
        how=st.sampled_from(["exact", "folder/", "default", "onto-folder", "below-file"]),
        force=st.booleans(),
        i=INDEX,
        again=st.booleans(),
    )
    def put_file(
        self, name: str, size: int, seed: int, how: str, force: bool, i: int, again: bool
    ) -> None:
        if how == "onto-folder" and self.folders():
            self.put_file_onto_a_folder(i, force)
            return
        if how == "below-file" and self.files():
            self.put_file_below_a_file(i, force)
            return
        data = content(seed, size)
        local = self.local_file(base(name), data)
        if how == "default" and "/" not in name:
            remote: list[str] = []
        elif how == "folder/":
            remote = [(parent(name) or "") + "/"]
        else:
            remote = [spell(name, seed, False)]
        argv = ["put", self.name, str(local), *remote] + (["--force"] if force else [])
        old = self.tree.get(name)
        if self.file_parent(name) is not None:
            self.fails(*argv, rc=2, words=("is a file",))
        elif old == DIR:
            self.fails(*argv, rc=2, words=("is a folder",))
        elif old is not None and not force:
            self.fails(*argv, rc=2, words=("already exists",), hint="--force")
        else:
            new = dict(self.tree)
            new[name] = data
            with_parents(new, name)
            expect = self.expect_commit(self.tree, new)
            r = self.ok(*argv)
            self.tree = new
            seq = self.committed(expect, str(argv), [name])
            self.check_put_message(r, seq, f"{self.name}:/{name}")
            if again:
                self.put_again(argv, f"{self.name}:/{name}")

    def put_again(self, argv: list[str], where: str) -> None:
        """The same put once more, with --force, of the same local file or folder (the
        same bytes and times): nothing changes, so no commit, and the message says so."""
        argv = [*argv, "--force"] if "--force" not in argv else argv
        r = self.ok(*argv)
        seq = self.committed("no", f"{argv} again")
        self.check_put_message(r, seq, where)

    def check_put_message(self, r: Ran, seq: int | None, where: str) -> None:
        text = r.out.decode()
        assert f" to {where} " in text or f" to {where}." in text, f"put names another place: {r}"
        if seq is None:
            assert "no changes" in text, f"no commit was made, the message does not say so: {r}"
        else:
            m = re.search(r"as commit (\d+)\.", text)
            assert m is not None and int(m.group(1)) == seq, (
                f"put names another commit ({seq}): {r}"
            )

    def put_file_onto_a_folder(self, i: int, force: bool) -> None:
        """A file is never put where a folder is, also with --force."""
        folder = self._pick(self.folders(), i)
        assert folder is not None
        local = self.local_file("a.txt", b"file")
        argv = ["put", self.name, str(local), folder] + (["--force"] if force else [])
        self.fails(*argv, rc=2, words=("is a folder",))

    def put_file_below_a_file(self, i: int, force: bool) -> None:
        f = self._pick(self.files(), i)
        assert f is not None
        local = self.local_file("b.txt", b"below")
        argv = ["put", self.name, str(local), f"{f}/b.txt"] + (["--force"] if force else [])
        self.fails(*argv, rc=2, words=("is a file",))

    @rule(
        lname=st.sampled_from(["sub", "x y", "tree"]),
        rels=st.sets(st.sampled_from(REL_FILES), max_size=4),
        empties=st.sets(st.sampled_from(REL_EMPTY), max_size=2),
        remote=st.sampled_from([None, "", "e2/f", "sub", "tree/", "a.txt"]),
        size=st.sampled_from(SIZES),
        seed=INDEX,
        force=st.booleans(),
        again=st.booleans(),
    )
    def put_folder(
        self,
        lname: str,
        rels: set[str],
        empties: set[str],
        remote: str | None,
        size: int,
        seed: int,
        force: bool,
        again: bool,
    ) -> None:
        src = self.work / f"src{next(self.files_made)}" / lname
        src.mkdir(parents=True)
        local: Tree = {}
        for k, rel in enumerate(sorted(rels)):
            local[rel] = content(seed + k, size if k == 0 else min(size, 600))
            with_parents(local, rel)
        for e in empties:
            if any(at_or_below(p, e) and p != e for p in local):
                continue  # not empty then
            local[e] = DIR
            with_parents(local, e)
        for p, v in sorted(local.items()):
            if v == DIR:
                (src / p).mkdir(parents=True, exist_ok=True)
            else:
                (src / p).parent.mkdir(parents=True, exist_ok=True)
                (src / p).write_bytes(v)
        if remote is None:
            target, extra = lname, []
        elif remote.endswith("/"):
            target, extra = remote + lname, [remote]
        else:
            target, extra = remote, [remote]
        changes: Tree = {f"{target}/{p}" if target else p: v for p, v in local.items()}
        # only the folders put_directory names: the empty ones (the others come with
        # their files), and the target itself when nothing is below it
        changes = {
            p: v
            for p, v in changes.items()
            if v != DIR or not any(q.startswith(p + "/") for q in changes)
        }
        if target and not changes:
            changes[target] = DIR
        argv = ["put", self.name, str(src), *extra] + (["--force"] if force else [])
        new = dict(self.tree)
        for p, v in changes.items():
            new[p] = v
            with_parents(new, p)
        refused = (
            any(self.file_parent(p) for p in changes)
            or any(self.tree.get(p) == DIR and v != DIR for p, v in changes.items())
            or (not force and any(self.tree.get(p, DIR) != DIR for p in changes))
        )
        if refused:
            # (the first path of the batch that is refused is named: any of the three)
            self.fails(*argv, rc=2, words=("is a file", "is a folder", "already exists"))
        elif kinds_kept(new):
            new_files = {p for p, v in changes.items() if v != DIR}
            if new != self.tree:
                expect = "yes"
            elif new_files:
                expect = "maybe"  # the same bytes again, with the local files' times
            else:
                expect = "no"  # only folders the volume has already
            r = self.ok(*argv)
            self.tree = new
            seq = self.committed(expect, str(argv), sorted(new_files))
            self.check_put_message(r, seq, f"{self.name}:/{target}")
            if again:
                self.put_again(argv, f"{self.name}:/{target}")

    @rule(force=st.booleans())
    def put_missing_local(self, force: bool) -> None:
        argv = ["put", self.name, str(self.work / "no-such-file.txt")] + (
            ["--force"] if force else []
        )
        self.fails(*argv, rc=3, words=("does not exist",))

    # -- get ---------------------------------------------------------------------------------------
    @rule(i=INDEX, j=INDEX, use_at=st.booleans(), k=INDEX)
    def get_to_stdout(self, i: int, j: int, use_at: bool, k: int) -> None:
        path = self.any_path(i)
        at = self.pick_at(j, use_at)
        tree = self.tree_at(at)
        typed = spell(path, k, tree.get(path) == DIR)
        argv = ["get", self.name, typed, "-"] + (["--at", str(at)] if at is not None else [])
        if path and path not in tree:
            self.fails(*argv, rc=3, words=("no file", "no such", "not found"))
            return
        if path and tree[path] != DIR:
            expected = tree[path]
        else:
            expected = b"".join(tree[p] for p in walk(tree, path) if tree[p] != DIR)
        r = self.ok(*argv)
        assert r.out == expected, (
            f"{argv}: {len(r.out)} bytes written, expected {len(expected)} "
            f"(files in order: {[p for p in walk(tree, path) if tree[p] != DIR]})"
        )
        self.committed("no", str(argv))

    @rule(pattern=st.sampled_from(sorted(GLOBS)))
    def get_glob_to_stdout(self, pattern: str) -> None:
        """``get NAME GLOB -``: every file the glob matches, in listing order. As Modal's
        glob download, a folder the glob matches brings nothing of what it holds (only
        the paths the glob matches are written); a glob that matches nothing at all is
        "not found"."""
        argv = ["get", self.name, pattern, "-"]
        matched = [p for p in walk(self.tree, "") if GLOBS[pattern](p)]
        files = [p for p in matched if self.tree[p] != DIR]
        if not matched:
            self.fails(*argv, rc=3, words=("no file", "nothing", "matches"))
            return
        r = self.ok(*argv)
        expected = b"".join(self.tree[p] for p in files)
        assert r.out == expected, f"{argv}: {len(r.out)} bytes, expected {files}"

    @rule(i=INDEX, force=st.booleans())
    def get_onto_the_wrong_kind(self, i: int, force: bool) -> None:
        """A local file where a folder goes, or a local folder where a file goes: refused
        (also with --force), nothing written."""
        path = self._pick(sorted(self.tree), i)
        if path is None or base(path) in self.local:
            return
        in_way = self.dl / base(path)
        if self.tree[path] == DIR:
            in_way.write_bytes(b"in the way")
            expect_local = {**self.local, base(path): b"in the way"}
        else:
            in_way.mkdir()
            expect_local = {**self.local, base(path): DIR}
        try:
            argv = ["get", self.name, path, str(self.dl)] + (["--force"] if force else [])
            self.fails(*argv, rc=2, words=("folder", "file"))
            assert_same(scan(self.dl), expect_local, f"the local folder after {argv} failed")
        finally:
            if in_way.is_dir():
                in_way.rmdir()
            else:
                in_way.unlink()

    @rule(
        cmd=st.sampled_from(["ls", "get", "rm", "cp", "put", "restore", "du"]),
        bad=st.sampled_from(["../x", "sub/../../x", "/.."]),
    )
    def path_escaping_the_volume(self, cmd: str, bad: str) -> None:
        local = str(self.local_file("a.txt", b"x"))
        args = {
            "ls": [bad],
            "get": [bad, "-"],
            "rm": [bad],
            "cp": ["a.txt", bad],
            "put": [local, bad],
            "restore": ["0", bad],
            "du": [bad],
        }[cmd]
        if cmd == "cp" and "a.txt" not in self.tree:
            args = [bad, "b.txt"]
        self.fails(cmd, self.name, *args, rc=2, words=("escapes",))

    @rule(
        i=INDEX,
        dest=st.sampled_from(["into", "new-name", "trailing-slash", "in-new-folder"]),
        force=st.booleans(),
        j=INDEX,
        use_at=st.booleans(),
        k=INDEX,
    )
    def get_to_local(self, i: int, dest: str, force: bool, j: int, use_at: bool, k: int) -> None:
        path = self.any_path(i)
        at = self.pick_at(j, use_at)
        tree = self.tree_at(at)
        is_dir = not path or tree.get(path) == DIR
        if dest == "into":
            local_arg, root = str(self.dl), (base(path) if path else "")
        elif dest == "in-new-folder":
            if "new" in self.local:
                return
            name = "gotdir" if is_dir else "got.bin"
            local_arg, root = str(self.dl / "new" / name), f"new/{name}"
        elif dest == "trailing-slash":
            local_arg, root = str(self.dl / "new") + "/", "new/" + (base(path) if path else "")
            root = root.rstrip("/")
        else:
            name = "gotdir" if is_dir else "got.bin"
            local_arg, root = str(self.dl / name), name
            if self.local.get(name) == DIR and path:
                root = f"{name}/{base(path)}"  # an existing folder: into it, by name
        argv = ["get", self.name, spell(path, k, is_dir), local_arg] + (["-f"] if force else [])
        argv += ["--at", str(at)] if at is not None else []
        before = scan(self.dl)
        assert before == self.local, "the local folder changed between steps"
        if path and path not in tree:
            self.fails(*argv, rc=3, words=("no such", "not found", "no file"))
            assert scan(self.dl) == self.local, f"{argv} failed but wrote local files"
            return
        # what lands where: the file itself, or the folder's contents below ``root``
        if is_dir:
            plan: Tree = {root: DIR} if root else {}
            for p, v in below(tree, path).items():
                plan[f"{root}/{p}" if root else p] = v
        else:
            plan = {root: tree[path]}
        new = dict(self.local)
        for p, v in plan.items():
            new[p] = v
            with_parents(new, p)
        if not kinds_kept(new):
            return
        clash = [p for p, v in plan.items() if v != DIR and p in self.local]
        if clash and not force:
            self.fails(*argv, rc=2, words=("exists",), hint="--force")
            assert scan(self.dl) == self.local, f"{argv} failed but wrote local files"
            return
        self.ok(*argv)
        self.local = new
        assert_same(scan(self.dl), self.local, f"the local folder after {argv}")
        self.committed("no", str(argv))

    # -- ls and du -----------------------------------------------------------------------------------
    @rule(
        i=INDEX,
        recursive=st.booleans(),
        as_json=st.booleans(),
        j=INDEX,
        use_at=st.booleans(),
        k=INDEX,
    )
    def ls(self, i: int, recursive: bool, as_json: bool, j: int, use_at: bool, k: int) -> None:
        path = self.any_path(i)
        at = self.pick_at(j, use_at)
        tree = self.tree_at(at)
        typed = spell(path, k, tree.get(path) == DIR)
        argv = ["ls", self.name, typed] + (["-r"] if recursive else [])
        argv += ["--at", str(at)] if at is not None else []
        if path and path not in tree:
            self.fails(*argv, *(["--json"] if as_json else []), rc=3, words=("no such",))
            return
        if path and tree[path] != DIR:
            expected = [path]
        else:
            pre = path + "/" if path else ""
            expected = sorted(
                p for p in tree if p.startswith(pre) and (recursive or "/" not in p[len(pre) :])
            )
        self.check_ls(argv, as_json, expected, tree)

    def check_ls(self, argv: list[str], as_json: bool, expected: list[str], tree: Tree) -> None:
        if not as_json:
            out = self.ok(*argv).out.decode()
            assert out.splitlines() == expected, f"{argv} printed {out!r}, expected {expected}"
            return
        rows = self.json(*argv)
        got = [r.get("path") for r in rows]
        assert got == expected, f"{argv} --json listed {got}, expected {expected}"
        for r in rows:
            p = r["path"]
            kind = "dir" if tree[p] == DIR else "file"
            assert r["type"] == kind, f"{argv} --json: {p} is a {r['type']}, the model's a {kind}"
            assert r["filename"] == p, f"{argv} --json: filename {r['filename']!r} for {p}"
            assert r["size"] == size_of(tree, p), (
                f"{argv} --json: {p} has size {r['size']}, the model {size_of(tree, p)}"
            )
            assert isinstance(r["mtime"], str) and isinstance(r["created_modified"], str), r

    @rule(pattern=st.sampled_from(sorted(GLOBS)), as_json=st.booleans())
    def ls_glob(self, pattern: str, as_json: bool) -> None:
        expected = sorted(p for p in self.tree if GLOBS[pattern](p))
        argv = ["ls", self.name, pattern]
        if not expected:
            # (README is silent on a glob that matches nothing: an empty listing, or
            # "not found" as `get` says, are both taken)
            r = self.cli(*argv, *(["--json"] if as_json else []))
            if r.rc == 0:
                assert r.out.strip() in (b"", b"[]"), f"{r}"
            else:
                assert r.rc == 3 and r.out == b"", f"{r}"
            return
        self.check_ls(argv, as_json, expected, self.tree)

    @rule(i=INDEX, k=INDEX)
    def du(self, i: int, k: int) -> None:
        path = self.any_path(i)
        argv = ["du", self.name, spell(path, k, self.tree.get(path) == DIR)]
        if path and path not in self.tree:
            self.fails(*argv, rc=3, words=("no such",))
            return
        got = self.json(*argv)
        under = [self.tree[p] for p in self.tree if at_or_below(p, path) and self.tree[p] != DIR]
        assert (got["files"], got["bytes"]) == (len(under), sum(map(len, under))), (
            f"{argv}: {got}, the model has {len(under)} files of {sum(map(len, under))} bytes"
        )

    # -- rm ----------------------------------------------------------------------------------------
    @rule(i=INDEX, recursive=st.booleans(), k=INDEX)
    def rm(self, i: int, recursive: bool, k: int) -> None:
        path = self.any_path(i)
        typed = spell(path, k, self.tree.get(path) == DIR)
        argv = ["rm", self.name, typed] + (["-r"] if recursive else [])
        if not path:
            self.fails(*argv, rc=2, words=("root",))
        elif path not in self.tree:
            self.fails(*argv, rc=3, words=("no such",))
        elif self.tree[path] == DIR and below(self.tree, path) and not recursive:
            self.fails(*argv, rc=2, words=("not empty",), hint="-r")
        else:
            self.ok(*argv)
            self.tree = {p: v for p, v in self.tree.items() if not at_or_below(p, path)}
            self.committed("yes", str(argv))

    # -- cp ----------------------------------------------------------------------------------------
    @rule(
        i=INDEX,
        k=INDEX,
        two=st.booleans(),
        dst=st.sampled_from([*FILES, *FOLDERS, "/", "new/", "sub/", "tree/", "new/x y"]),
        recursive=st.booleans(),
        twin=st.booleans(),
    )
    def cp(self, i: int, k: int, two: bool, dst: str, recursive: bool, twin: bool) -> None:
        """``cp`` of one or two sources (``twin``: two of one name, such as ``sub/c.txt``
        and ``sub/sub/c.txt``, when the volume has such a pair)."""
        pairs = sorted(
            (p, q) for p in self.tree for q in self.tree if p != q and base(p) == base(q)
        )
        if twin and pairs:
            srcs = list(pairs[i % len(pairs)])
        else:
            srcs = [self.any_path(i)] + ([self.any_path(k)] if two else [])
        if len(set(srcs)) != len(srcs) or ("" in srcs and (i + k) % 3):
            return  # (the root as a source: now and then)
        argv = ["cp", self.name, *[s or "/" for s in srcs], dst] + (["-r"] if recursive else [])
        t = self.tree
        d = dst.strip("/")
        into = t.get(d) == DIR or not d or len(srcs) > 1 or dst.endswith("/")
        if d and t.get(d, DIR) != DIR and (len(srcs) > 1 or dst.endswith("/")):
            self.fails(*argv, rc=2, words=("not a folder",))
            return
        if into and d and d not in t and self.file_parent(d):
            self.fails(*argv, rc=2, words=("is a file",))
            return
        if not into and t.get(parent(d), DIR if not parent(d) else None) != DIR:
            # (a file on the way says "does not exist" as a missing folder does: both taken)
            rc = 3 if self.file_parent(d) is None else (2, 3)
            self.fails(*argv, rc=rc, words=("does not exist", "is a file"))
            return
        new = dict(t)
        targets: list[str] = []
        writes: list[str] = []  # the files each source writes, by path
        for s in srcs:
            if s and s not in t:
                self.fails(*argv, rc=3, words=("no such",))
                return
            s_dir = not s or t[s] == DIR
            if s_dir and not recursive:
                self.fails(*argv, rc=2, words=("is a folder",), hint="-r")
                return
            target = (f"{d}/{base(s)}" if d else base(s)) if into else d
            targets.append(target)
            if not s or at_or_below(target, s):
                self.fails(*argv, rc=2, words=("into itself",))
                return
            if s_dir and t.get(target, DIR) != DIR:
                self.fails(*argv, rc=2, words=("cannot overwrite",))
                return
            if not s_dir and t.get(target) == DIR:
                self.fails(*argv, rc=2, words=("cannot overwrite",))
                return
            if s_dir:
                new[target] = DIR
                for p, v in below(t, s).items():
                    new[f"{target}/{p}"] = v
                    writes += [f"{target}/{p}"] if v != DIR else []
            else:
                new[target] = t[s]
                writes.append(target)
            with_parents(new, target)
        if not kinds_kept(new):
            return
        if len(set(writes)) < len(writes):
            # Two sources would write one file: `cp` refuses the second ("will not
            # overwrite just-created"); keeping the last one's, silently, is not right.
            self.fails(*argv, rc=2, words=("both", "overwrite", "twice", "same"))
            return
        if len(set(targets)) < len(targets):
            # Two folders of one name into one folder, no file in common: merged, or
            # refused as above; keeping only the last source's copy is not right.
            r = self.cli(*argv)
            if r.rc != 0:
                assert r.rc == 2 and r.out == b"", f"{r}"
                self.committed("no", f"{argv} (refused)")
                return
            assert r.rc == 0, f"{r}"
        else:
            self.ok(*argv)
        expect = self.expect_commit(self.tree, new)
        self.tree = new
        self.committed(expect, str(argv), [p for p in new if p not in t])

    # -- history: history, diff, restore, tags ------------------------------------------------
    @rule(limit=st.one_of(st.none(), st.integers(1, 4)), before=st.one_of(st.none(), INDEX))
    def history(self, limit: int | None, before: int | None) -> None:
        argv = ["history", self.name] + (["-n", str(limit)] if limit is not None else [])
        seqs = sorted(self.snapshots, reverse=True)
        if before is not None:
            before = before % (self.seq + 2)
            argv += ["--before", str(before)]
            seqs = [q for q in seqs if q < before]
        rows = self.json(*argv)
        expected = seqs[:limit] if limit is not None else seqs
        got = [r["seq"] for r in rows]
        assert got == expected, f"{argv}: commits {got}, the model's {expected}"
        by_seq: dict[int, list[str]] = {}
        for name, seq in self.tags.items():
            by_seq.setdefault(seq, []).append(name)
        for r in rows:
            seq = r["seq"]
            tags = ", ".join(sorted(by_seq.get(seq, [])))
            assert r["tags"] == tags, f"{argv}: commit {seq} tagged {r['tags']!r}, not {tags!r}"
            prev = max((s for s in self.snapshots if s < seq), default=None)
            if prev is None:
                continue
            added, deleted, differ, both = file_changes(self.snapshots[prev], self.snapshots[seq])
            counts = (r["added"], r["deleted"], r["modified"])
            assert (
                r["added"] == len(added)
                and r["deleted"] == len(deleted)
                and len(differ) <= r["modified"] <= len(both)
            ), (
                f"{argv}: commit {seq} counts +{counts[0]} -{counts[1]} ~{counts[2]}; the model: "
                f"added {sorted(added)}, deleted {sorted(deleted)}, modified {sorted(differ)} "
                f"(of {len(both)} kept)"
            )

    @rule(i=INDEX, j=INDEX, default=st.booleans(), miss=st.integers(0, 5))
    def diff(self, i: int, j: int, default: bool, miss: int) -> None:
        seqs = sorted(self.snapshots)
        if miss == 0:
            argv = ["diff", self.name, str(seqs[i % len(seqs)]), str(self.seq + 1 + j % 3)]
            self.fails(*argv, rc=3, words=("does not exist",))
            return
        if default:
            a, b = seqs[-2] if len(seqs) > 1 else seqs[-1], seqs[-1]
            argv = ["diff", self.name]
            if len(seqs) > 1 and a != self.seq - 1:
                return  # (the default FROM is TO-1 by number; every commit is the model's)
        else:
            a, b = sorted((seqs[i % len(seqs)], seqs[j % len(seqs)]))
            argv = ["diff", self.name, str(a), str(b)]
        rows = self.json(*argv)
        old, new = self.snapshots[a], self.snapshots[b]
        added, deleted, differ, both = file_changes(old, new)
        got = {(r["path"], r["change"]) for r in rows if r["type"] == "file"}
        want = {(p, "added") for p in added} | {(p, "deleted") for p in deleted}
        want |= {(p, "modified") for p in differ}
        allowed = want | {(p, "modified") for p in both}  # the same bytes with a new time
        assert want <= got <= allowed, (
            f"{argv}: missing {sorted(want - got)}, not changed {sorted(got - allowed)}"
        )
        dirs = {(r["path"], r["change"]) for r in rows if r["type"] == "dir"}
        od = {p for p, v in old.items() if v == DIR}
        nd = {p for p, v in new.items() if v == DIR}
        want_dirs = {(p, "added") for p in nd - od} | {(p, "deleted") for p in od - nd}
        assert {x for x in dirs if x[1] != "modified"} == want_dirs, (
            f"{argv}: folders {sorted(dirs)}, the model's {sorted(want_dirs)}"
        )
        assert all(p in od & nd for p, c in dirs if c == "modified"), f"{argv}: {sorted(dirs)}"
        for r in rows:
            p = r["path"]
            if r["change"] != "added" and old.get(p, DIR) != DIR:
                assert r["old_size"] == len(old[p]), f"{argv}: old size of {p}: {r}"
            if r["change"] != "deleted" and new.get(p, DIR) != DIR:
                assert r["new_size"] == len(new[p]), f"{argv}: new size of {p}: {r}"

    @rule(i=INDEX, j=INDEX, whole=st.booleans(), miss=st.integers(0, 5))
    def restore(self, i: int, j: int, whole: bool, miss: int) -> None:
        seqs = sorted(self.snapshots)
        if miss == 0:
            argv = ["restore", self.name, str(self.seq + 1 + i % 3)]
            argv += [] if whole else [self.any_path(j) or "/"]
            self.fails(*argv, rc=3, words=("does not exist",))
            return
        seq = seqs[i % len(seqs)]
        then = self.snapshots[seq]
        if whole:
            argv = ["restore", self.name, str(seq)]
            new = dict(then)
        else:
            path = self.any_path(j)
            if not path:
                return  # (the root: a whole restore, above)
            argv = ["restore", self.name, str(seq), spell(path, i // 7, then.get(path) == DIR)]
            if path not in then and path not in self.tree:
                self.fails(*argv, rc=3, words=("no such",))
                return
            if self.file_parent(path) is not None:
                return  # (a file where then was a folder: the docs do not say)
            new = {p: v for p, v in self.tree.items() if not at_or_below(p, path)}
            for p, v in then.items():
                if at_or_below(p, path):
                    new[p] = v
                    with_parents(new, p)
        if not kinds_kept(new):
            return
        r = self.ok(*argv)
        expect = self.expect_commit(self.tree, new)
        self.tree = new
        made = self.committed(expect, str(argv), self.files())
        text = r.out.decode()
        if made is None:
            assert "Nothing to restore" in text, f"no commit, and the message says: {r}"
        else:
            assert f"new commit {made}" in text, f"restore names another commit ({made}): {r}"

    @rule(
        i=INDEX,
        name=st.sampled_from(["v1", "best", "v1.0", "123", "-x", "a b"]),
        force=st.booleans(),
        miss=st.integers(0, 5),
        remove=st.booleans(),
    )
    def tag(self, i: int, name: str, force: bool, miss: int, remove: bool) -> None:
        if remove:
            self.untag(name)
            return
        seqs = sorted(self.snapshots)
        missing = miss == 0
        seq = self.seq + 1 if missing else seqs[i % len(seqs)]
        argv = ["tag", self.name, str(seq), name] + (["--force"] if force else [])
        if name.isdigit():
            self.fails(*argv, rc=2, words=("invalid tag name",))
        elif not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
            # a name starting with '-' reads as an option: refused either way (exit 2)
            self.fails(*argv, rc=2, words=("invalid tag name", "arguments", "expected"))
        elif missing:
            self.fails(*argv, rc=3, words=("does not exist",))
        elif name in self.tags and not force:
            self.fails(*argv, rc=2, words=("exists already", "already exists"), hint="--force")
        else:
            self.ok(*argv)
            self.tags[name] = seq
            self.committed("no", str(argv))
        assert self.vol.tags() == self.tags, f"after {argv}: tags {self.vol.tags()}"

    def untag(self, name: str) -> None:
        argv = ["untag", self.name, name]
        if name.startswith("-"):
            self.fails(*argv, rc=2, words=("arguments", "expected"))
        elif name not in self.tags:
            self.fails(*argv, rc=3, words=("no tag",))
        else:
            self.ok(*argv)
            del self.tags[name]
            self.committed("no", str(argv))
        assert self.vol.tags() == self.tags, f"after {argv}: tags {self.vol.tags()}"

    # -- volumes: names, create, rename ---------------------------------------------------------
    @rule(
        cmd=st.sampled_from(["ls", "put", "get", "rm", "history", "cp", "create"]),
        bad=st.sampled_from(["bad name!", "..", "-dash", "x" * 65, "ghost", "self"]),
    )
    def bad_volume_name(self, cmd: str, bad: str) -> None:
        name = self.name if bad == "self" else bad
        local = str(self.local_file("a.txt", b"x"))
        args = {
            "ls": [],
            "put": [local],
            "get": ["a.txt", "-"],
            "rm": ["a.txt"],
            "history": [],
            "cp": ["a.txt", "b.txt"],
            "create": [],
        }[cmd]
        argv = [cmd, name, *args]
        before = self.volume_names()
        if bad == "self":
            if cmd != "create":
                return
            self.fails(*argv, rc=2, words=("already exists",))
        elif bad == "ghost":
            if cmd == "create":
                return  # (it would be made)
            self.fails(*argv, rc=3, words=("not found",))
        elif bad == "-dash":
            # read as an option by the parser: a usage error either way
            self.fails(*argv, rc=2, words=("invalid volume name", "arguments", "expected"))
        else:
            self.fails(*argv, rc=2, words=("invalid volume name",))
        after = self.volume_names()
        assert after == before, f"{argv} failed but the volumes went {before} -> {after}"

    def volume_names(self) -> set[str]:
        return {v.name for v in Volume.objects.list(store=self.api_store)}

    @rule(onto_other=st.booleans())
    def rename_volume(self, onto_other: bool) -> None:
        if onto_other:
            argv = ["rename", self.name, self.other, "-y"]
            self.fails(*argv, rc=2, words=("exists",))
            return
        new = f"m{self.n}-r{self.renames}"
        self.renames += 1
        self.ok("rename", self.name, new, "-y")
        old, self.name = self.name, new
        self.vol = Volume.from_name(new, store=self.api_store)
        self.fails("ls", old, rc=3, words=("not found",))
        rows = self.json("history", self.name, "-n", "1")
        assert [r["seq"] for r in rows] == [self.seq], f"history after the rename: {rows}"

    # -- reading everything back ----------------------------------------------------------------
    @rule(j=INDEX, use_at=st.booleans())
    def check_all(self, j: int, use_at: bool) -> None:
        """Every file of the head (or an older commit), byte for byte, through the API;
        ``info --json`` names the head."""
        at = self.pick_at(j, use_at)
        assert_same(self.api_tree(at), self.tree_at(at), f"commit {at}" if at else "the head")
        info = self.json("info", self.name)
        assert info["head"] == self.seq and info["name"] == self.name, info

    def teardown(self) -> None:
        if not hasattr(self, "vol"):
            return
        assert_same(self.api_tree(), self.tree, "the head at the end")
        report = self.json("verify", self.name)
        assert report["ok"] and not report["errors"], report


def run(
    url: str,
    capsys: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    examples: int,
    steps: int,
) -> None:
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "jupyter-config"))
    monkeypatch.delenv("JUPYTER_VOLUME_ENV", raising=False)
    # the store as $JUPYTER_VOLUME_STORE names it (`--store URL` checks that the store
    # exists first, with a client of its own on S3: a fifth of a second each command)
    monkeypatch.setenv("JUPYTER_VOLUME_STORE", url)
    CliModel.url = url
    CliModel.api_store = StoreAs(open_store(url))  # a second client, as another process
    CliModel.capsys = capsys
    CliModel.tmp = tmp_path
    run_state_machine_as_test(CliModel, settings=model_settings(examples, steps))


def test_cli_model(
    store_url_env: tuple[str, dict[str, str]],
    capsysbinary: pytest.CaptureFixture[bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, env = store_url_env
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    local = url.startswith("file:")
    run(url, capsysbinary, tmp_path, monkeypatch, examples=80 if local else 22, steps=40)
