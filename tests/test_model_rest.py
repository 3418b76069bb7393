"""A model-based (stateful) test of the REST API of volumes (docs/rest-api.md), over HTTP
against a real Jupyter server, compared with a plain in-memory model.

One ``jupyter server`` (with the repo's ``jupyter-config``, as an install has it) serves
the whole test function, on a local store (S3 works too, see ``RUNS``); every
example of the machine uses volume names of its own (``m<N>-a``, ``-b``, ``-c``) and
deletes its volumes (and cancels its uploads) at its end, so the store holds only the
example's volumes and ``GET volumes`` is compared whole.

The model, after docs/rest-api.md:

* volumes: name -> (server id, files ``path -> (bytes, version)``, folders ``path ->
  version``, head commit, the tree of every commit, every commit object). ``POST
  volumes``, ``PATCH`` (rename: id, contents and history kept), ``DELETE``, ``GET
  volumes`` (sorted by name) and ``GET version``, with 400 for bad names, 404 for
  missing volumes and 409 for taken names;
* every change is one commit: an upload's finish, ``DELETE files``, ``POST folders``,
  ``move``, ``remove`` (several paths) and ``restore`` each answer the commit they made
  (``seq`` = the head before + 1; ``null`` only for a restore that changes nothing; its
  ``added``/``modified``/``deleted`` count the files it changed), and the Python API
  (``Volume.from_name`` on the same store) sees exactly that head, that tree and those
  bytes after every step; ``history`` answers the very commit objects the writes
  answered (plus the volume's first), newest first, paged by ``limit``/``offset``/
  ``before`` with ``more``. Another writer (the Python API) commits between requests:
  every request reads the newest commit;
* ``tree``: a folder's entries (folders first; natural, case-insensitive names; ``size``
  and ``mtime`` sorts with name ties ascending; a folder's size is the bytes below it; a
  file keeps its mtime until written again), paged with ``at`` pinned to the first
  page's ``seq`` (another writer adds a file between pages), also at older commits;
* ``files``: the bytes and headers of a download (``HEAD`` too, ``at`` older commits,
  ``X-Volume-Commit``, ``Last-Modified`` = the file's mtime), ``Range`` (``a-b``, ``a-``,
  ``-n``: 206; past the end: 416; several ranges, a reversed one or over 30 digits: 200
  whole);
* uploads: the one-chunk upload (start, one ``PUT``, finish: the smallest upload the API
  has, it has no one-request upload) and sessions driven a chunk at a time between other
  requests: several chunks; a chunk sent again at its old offset or past ``received``
  (409 naming the offset expected, nothing kept: the session's ``received`` and in the
  end the file's bytes are as if it was never sent), a corrupted chunk, one past the
  declared size, a missing or malformed header or offset (400, nothing kept), a body
  declared over 1 GiB (413, never read), a chunk without the token (403, nothing kept),
  a chunk or a finish while a chunk is still arriving (409, state ``writing``); finish
  with too few bytes, a malformed or wrong size (400, kept open), a wrong SHA-256 (400,
  dropped), onto a file someone else made meanwhile (409, kept open; ``force`` at finish
  overrides); cancel; the 17th unfinished session of a user (429); sessions whose volume
  was deleted or renamed (404 on their next chunk or finish, then gone), finished and
  cancelled ones (404);
* ``diff`` (files and folders added/deleted, files modified when their bytes differ),
  ``nbdiff`` (compared with nbdime run here on the same versions; 422 for a version that
  is not a notebook; 400 for a folder; 404 when absent at both), ``restore`` of the whole
  tree or of one path (a path absent at the commit is removed; 404 when absent at both);
* every path argument also comes spelled with a leading ``/``, ``.`` segments, doubled
  slashes or a ``x/..`` detour (answers name the normalized path); paths escaping the
  volume (``..``, ``%2E%2E``, NUL, over-long names and paths) on every route, control
  characters in new names, unknown routes (404), wrong methods (405 with ``Allow``),
  requests without the token and cookie writes without the XSRF token (403) are refused
  and change nothing.

Where the docs leave a choice open the machine accepts either answer and says so at the
place: a rename onto the volume's own name (200 or 409); a session whose volume is gone
may still answer its status, and a chunk or finish refused for its own fault (400/409)
before the 404; OPTIONS in ``Allow``; the store URL of ``version`` as the store spells
it. There is no copy route. What the machine found is reduced to plain tests in
test_rest_found.py (each fixed since).

File and folder names are disjoint (a file's base name has a dot, a folder's none), so
no write meets a file where a folder is expected unless a rule asks for that error.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import io
import itertools
import json
import mimetypes
import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from modeltest import model_settings, parents
from test_server_api import REPO, Api, Response

from jupyter_volume import Volume
from jupyter_volume.server.engine import commit_json
from jupyter_volume.testing.jupyter import JupyterLab

try:
    from .children import private_folders
except ImportError:  # tests/ is not a package
    from children import private_folders  # type: ignore[no-redef]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

# -- the model's vocabulary ---------------------------------------------------------------------

FILES = [
    "a.txt",
    "file2.txt",  # natural order: before file10
    "file10.txt",
    "B.bin",  # case-insensitive order: between a.txt and file2.txt
    "ü #%[1].txt",  # non-ASCII, space, URL-special and glob characters
    "nb.ipynb",
    " lead.ipynb",  # a leading space: a name as good as any other
    "sub/c.csv",
    "sub/C.csv",  # differs from sub/c.csv only in case: another file
    "sub/nb2.ipynb",
    "subway/f.txt",  # a folder whose name starts with another's ("sub")
    "x y/cafe\u0301.txt",  # NFD: a combining accent, kept as sent
    "l" * 251 + ".txt",  # a name of 255 bytes, the longest there may be
    "sub/deep/d.bin",
    "x y/z y.txt",
    "new/deeper/e.json",
]
FOLDERS = ["sub", "sub/deep", "subway", "x y", "new", "new/deeper", "empty", "empty/two"]
SIZES = [0, 1, 100, 513, 5000, 70_000, 300_000]
CHUNK_PARTS = [1, 1000, 4096, 65_536, 100_000, None]  # None: the rest
INDEX = st.integers(0, 10_000)
SEED = st.integers(0, 1_000)
SPELL = st.integers(0, 5)
PAIR = st.tuples(INDEX, INDEX)

#: paths no route may take (400); in a URL, NUL is sent as %00
BAD_PATHS = ["..", "../x.txt", "sub/../../x.txt", "x\x00y.txt", "n" * 256 + ".txt", "a/" * 2100]
#: new names with control characters (400 on routes that create names)
CONTROL_NAMES = ["line\nbreak.txt", "tab\there.txt", "esc\x1b.txt", "del\x7f.txt"]
BAD_VOLUME_NAMES = ["-x", ".", "..", "a b", "a/b", "v" * 65, "", "é"]

SESSION_LIMIT = 8  # sessions left open at once (the server allows a user 16)


def content(path: str, seed: int, size: int) -> bytes:
    """A file's bytes; most ``.ipynb`` files are small notebooks nbdime can read."""
    if path.endswith(".ipynb") and seed % 4:
        cells = [
            {
                "cell_type": "code" if (seed + i) % 2 else "markdown",
                "id": f"cell-{seed}-{i}",
                "metadata": {},
                "source": f"x = {seed * 7 + i}\n",
                **({"execution_count": None, "outputs": []} if (seed + i) % 2 else {}),
            }
            for i in range(seed % 3 + 1)
        ]
        nb = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
        return json.dumps(nb, indent=1).encode()
    return random.Random(seed * 1_000_003 + size).randbytes(size)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parent(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def at_or_under(path: str, root: str) -> bool:
    return root == "" or path == root or path.startswith(root + "/")


def spelled(path: str, how: int) -> str:
    """``path`` as a client may spell it: the server normalizes all of these to it."""
    if how == 1:
        return "/" + path
    if how == 2:
        return "./" + path
    if how == 3:
        return path.replace("/", "//") + ("/" if path else "")
    if how == 4:
        return "zz/../" + path
    if how == 5:
        return path.replace("/", "/./")
    return path


def url_path(path: str) -> str:
    """Each segment percent-encoded, as encodeURIComponent does."""
    return "/".join(quote(seg, safe="") for seg in path.split("/"))


def natural(name: str) -> list[Any]:
    parts: list[Any] = re.split(r"(\d+)", name.casefold())
    parts[1::2] = [int(p) for p in parts[1::2]]
    return parts


_versions = itertools.count(1)


class Tree:
    """One commit of a volume: files ``path -> (bytes, version)`` and folders ``path ->
    version``. A version stands for one write (a new mtime): two trees are equal only if
    every entry is the very same one (what decides whether a restore changes anything)."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, int]] = {}
        self.dirs: dict[str, int] = {}

    def copy(self) -> Tree:
        t = Tree()
        t.files = dict(self.files)
        t.dirs = dict(self.dirs)
        return t

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tree) and (self.files, self.dirs) == (other.files, other.dirs)

    def isdir(self, p: str) -> bool:
        return p == "" or p in self.dirs

    def exists(self, p: str) -> bool:
        return p in self.files or self.isdir(p)

    def file_above(self, p: str) -> str | None:
        return next((q for q in parents(p) if q in self.files), None)

    def mkdirs(self, p: str) -> None:
        for q in [*parents(p), p]:
            if q not in self.dirs:
                self.dirs[q] = next(_versions)

    def write(self, p: str, data: bytes) -> None:
        assert p not in self.dirs and self.file_above(p) is None, p
        if parent(p):
            self.mkdirs(parent(p))
        self.files[p] = (data, next(_versions))

    def entries(self, root: str) -> dict[str, Any]:
        """``root`` and everything below it: path -> ("f", bytes, version) | ("d", version)."""
        out: dict[str, Any] = {}
        for p, (d, v) in self.files.items():
            if at_or_under(p, root):
                out[p] = ("f", d, v)
        for p, v in self.dirs.items():
            if at_or_under(p, root):
                out[p] = ("d", v)
        return out

    def remove(self, root: str) -> None:
        for p in list(self.entries(root)):
            self.files.pop(p, None)
            self.dirs.pop(p, None)

    def put(self, entries: dict[str, Any]) -> None:
        for p, e in entries.items():
            if e[0] == "f":
                self.files[p] = (e[1], e[2])
            else:
                self.dirs[p] = e[1]

    def move(self, s: str, d: str) -> None:
        moved = {d + p[len(s) :]: e for p, e in self.entries(s).items()}
        self.remove(s)
        self.put(moved)

    def size(self, p: str) -> int:
        if p in self.files:
            return len(self.files[p][0])
        return sum(len(d) for q, (d, _v) in self.files.items() if at_or_under(q, p))

    def children(self, folder: str) -> list[dict[str, Any]]:
        """The entries of ``folder`` as the tree route answers them (without mtime)."""
        out = []
        for p in [*self.files, *self.dirs]:
            if p != folder and parent(p) == folder:
                out.append(
                    {
                        "name": p.rsplit("/", 1)[-1],
                        "path": p,
                        "type": "file" if p in self.files else "directory",
                        "size": self.size(p),
                    }
                )
        return out

    def counts(self, after: Tree) -> tuple[int, int, int]:
        """Files added, modified (other bytes) and deleted from this tree to ``after``."""
        added = sum(1 for p in after.files if p not in self.files)
        deleted = sum(1 for p in self.files if p not in after.files)
        modified = sum(
            1 for p, (d, _v) in after.files.items() if p in self.files and self.files[p][0] != d
        )
        return added, modified, deleted

    def diff(self, b: Tree) -> list[tuple[Any, ...]]:
        """What the diff route answers from this tree to ``b``, sorted."""
        out: list[tuple[Any, ...]] = []
        for p, (d, _v) in b.files.items():
            if p not in self.files:
                out.append((p, "added", "file", None, len(d)))
            elif self.files[p][0] != d:
                out.append((p, "modified", "file", len(self.files[p][0]), len(d)))
        for p, (d, _v) in self.files.items():
            if p not in b.files:
                out.append((p, "deleted", "file", len(d), None))
        for p in b.dirs:
            if p not in self.dirs:
                out.append((p, "added", "directory", None, b.size(p)))
        for p in self.dirs:
            if p not in b.dirs:
                out.append((p, "deleted", "directory", self.size(p), None))
        return sorted(out, key=lambda x: x[0])


_uids = itertools.count(1)


@dataclass
class Vol:
    """A volume of the model: its server id, its head commit, every commit's tree."""

    id: str
    uid: int = field(default_factory=lambda: next(_uids))  # the model's own identity
    tree: Tree = field(default_factory=Tree)
    seq: int = 0
    snaps: dict[int, Tree] = field(default_factory=dict)
    commits: dict[int, dict[str, Any]] = field(default_factory=dict)  # seq -> commit object

    def __post_init__(self) -> None:
        self.snaps[0] = Tree()


@dataclass
class Session:
    """An upload session: the bytes it will upload and how many the server has."""

    id: str
    volume: str  # the name it was started under
    uid: int  # the model volume it belongs to
    path: str
    data: bytes
    force: bool
    received: int = 0
    last: tuple[int, int] | None = None  # (offset, length) of the last chunk kept


# -- the state machine ---------------------------------------------------------------------------


class RestModel(RuleBasedStateMachine):
    api: Api = None  # type: ignore[assignment]
    store_url = ""
    counter = itertools.count()

    def __init__(self) -> None:
        super().__init__()
        n = next(self.counter)
        self.pool = [f"m{n}-{k}" for k in "abc"]
        self.vols: dict[str, Vol] = {}
        self.sessions: list[Session] = []
        self.dead: list[tuple[str, str]] = []  # (volume, upload id) finished or cancelled
        self.mtimes: dict[int, int] = {}  # file version -> the mtime first seen for it
        self.touched: str | None = None  # the volume the last rule changed or read
        self.limit_seen = False
        r = self.call("POST", "volumes", {"name": self.pool[0]})
        self.expect(r, 201, "create the example's first volume")
        self.vols[self.pool[0]] = Vol(r.j["id"])
        self.touched = self.pool[0]

    def teardown(self) -> None:
        # clean up only: an assertion here would hide the failure being reported
        for s in self.sessions:
            self.call("DELETE", f"volumes/{s.volume}/uploads/{s.id}")
        for name in list(self.vols):
            self.call("DELETE", f"volumes/{name}")

    # -- HTTP ------------------------------------------------------------------------------------
    def call(
        self,
        method: str,
        route: str,
        data: Any = None,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        auth: bool = True,
    ) -> Response:
        if data is not None:
            body = json.dumps(data).encode()
        r = self.api.raw(method, route, body=body, params=params, headers=headers, auth=auth)
        r.j = None  # type: ignore[attr-defined]
        is_json = r.headers.get("Content-Type", "").startswith("application/json")
        download = "/files/" in route and method in ("GET", "HEAD") and r.code < 300
        if r.body and is_json and not download:
            r.j = json.loads(r.body)  # type: ignore[attr-defined]
        r.what = f"{method} {route}" + (f" {params}" if params else "")  # type: ignore[attr-defined]
        if data is not None:
            r.what += f" {json.dumps(data)[:200]}"  # type: ignore[attr-defined]
        return r

    def expect(self, r: Response, status: int, what: str) -> Any:
        """``r`` succeeded with ``status``; its JSON body."""
        assert r.code == status, (
            f"{what}: {r.what} answered {r.code} {r.body[:400]!r}, the model expects {status}"  # type: ignore[attr-defined]
        )
        return r.j  # type: ignore[attr-defined]

    def refused(self, r: Response, allowed: dict[int, str], what: str) -> None:
        """``r`` is one of the documented errors in ``allowed`` (status -> error name),
        with the documented JSON body."""
        got = r.j  # type: ignore[attr-defined]
        assert r.code in allowed, (
            f"{what}: {r.what} answered {r.code} {r.body[:400]!r}, the model expects an "  # type: ignore[attr-defined]
            f"error {allowed}"
        )
        if r.what.startswith("HEAD"):  # type: ignore[attr-defined]
            return
        assert isinstance(got, dict) and got.get("error") == allowed[r.code], (
            f"{what}: {r.what} answered {r.code} with body {r.body[:400]!r}, "  # type: ignore[attr-defined]
            f"the docs say error {allowed[r.code]!r}"
        )
        assert isinstance(got.get("message"), str) and got["message"], f"{what}: no message"

    # -- model helpers ---------------------------------------------------------------------------
    def pick(self, items: Any, i: int) -> Any:
        items = sorted(items)
        return items[i % len(items)] if items else None

    def vol(self, i: int) -> tuple[str, Vol] | tuple[None, None]:
        name = self.pick(self.vols, i)
        if name is None:
            return None, None
        self.touched = name
        return name, self.vols[name]

    def missing_volume(self) -> str:
        return next((n for n in self.pool if n not in self.vols), "m-never-made")

    def committed(self, m: Vol, commit: Any, before: Tree, what: str, kind: str = "commit") -> None:
        """After a write that answered ``commit``: one new commit if the tree changed
        (``before`` is the tree before), none (``null``) otherwise."""
        if m.tree == before:
            assert commit is None, f"{what}: a commit {commit} for a change that changed nothing"
            return
        assert isinstance(commit, dict), f"{what}: answered commit {commit!r}, expected one commit"
        assert commit["seq"] == m.seq + 1, (
            f"{what}: answered commit {commit['seq']}, the head was {m.seq}: "
            "a change is exactly one commit"
        )
        self.check_commit_object(commit, what)
        assert commit["kind"] == kind, f"{what}: commit kind {commit['kind']!r}, not {kind!r}"
        counts = (commit["added"], commit["modified"], commit["deleted"])
        assert counts == before.counts(m.tree), (
            f"{what}: commit counts (added, modified, deleted) {counts}, the model's files "
            f"changed by {before.counts(m.tree)}"
        )
        m.seq += 1
        m.snaps[m.seq] = m.tree.copy()
        m.commits[m.seq] = commit

    @staticmethod
    def check_commit_object(c: dict[str, Any], what: str) -> None:
        keys = {"seq", "time", "author", "host", "message", "kind", "added", "modified"}
        keys |= {"deleted", "bytes_new"}
        assert set(c) == keys, f"{what}: commit object keys {sorted(c)}"
        t = datetime.fromisoformat(c["time"])
        assert t.utcoffset() == timedelta(0), f"{what}: commit time {c['time']!r} is not UTC"
        assert all(isinstance(c[k], str) for k in ("author", "host", "message", "kind"))
        for k in ("seq", "added", "modified", "deleted", "bytes_new"):
            assert isinstance(c[k], int) and c[k] >= 0, f"{what}: commit {k} = {c[k]!r}"

    def session(self, i: int) -> Session | None:
        return self.sessions[i % len(self.sessions)] if self.sessions else None

    def alive(self, s: Session) -> bool:
        """The session's volume still has the name it was started under."""
        m = self.vols.get(s.volume)
        return m is not None and m.uid == s.uid

    def forget(self, s: Session) -> None:
        self.sessions.remove(s)
        self.dead.append((s.volume, s.id))

    def check_session(self, s: Session, got: Any, what: str, state: str = "open") -> None:
        assert got == {
            "upload_id": s.id,
            "volume": s.volume,
            "path": s.path,
            "size": len(s.data),
            "received": s.received,
            "state": state,
            "force": s.force,
            "chunk_size": 8 * 1024 * 1024,
            "max_chunk_size": 64 * 1024 * 1024,
        }, f"{what}: the session answered {got}, the model has received={s.received}"

    def put_chunk(self, s: Session, offset: Any, piece: bytes, digest: str | None = "") -> Response:
        """One chunk; ``digest`` None sends no X-Content-SHA256, "" the chunk's own."""
        headers = {} if digest is None else {"X-Content-SHA256": digest or sha(piece)}
        params = {} if offset is None else {"offset": offset}
        return self.call(
            "PUT", f"volumes/{s.volume}/uploads/{s.id}", body=piece, params=params, headers=headers
        )

    def upload_refusal(self, m: Vol | None, p: str | None, size: Any, force: Any) -> dict[int, str]:
        """The errors a new upload session of ``p`` gets (empty: it starts)."""
        errors: dict[int, str] = {}
        good_size = isinstance(size, int) and not isinstance(size, bool) and 0 <= size <= 1024**4
        if not p or not good_size or not isinstance(force, bool):
            errors[400] = "InvalidError"
        if m is None:
            errors[404] = "NotFoundError"
        elif p:
            t = m.tree
            if p in t.dirs or t.file_above(p) is not None or (p in t.files and force is not True):
                errors[409] = "AlreadyExistsError"
        return errors

    def finished(self, s: Session, got: Any, what: str) -> None:
        """A finish answered 200: the file is committed, the session gone."""
        m = self.vols[s.volume]
        before = m.tree.copy()
        m.tree.write(s.path, s.data)
        assert got["path"] == s.path and got["size"] == len(s.data), f"{what}: {got}"
        assert got["sha256"] == sha(s.data), f"{what}: {got}"
        assert set(got) == {"path", "size", "sha256", "commit"}, f"{what}: {got}"
        self.committed(m, got["commit"], before, what)
        self.forget(s)

    # -- volumes ---------------------------------------------------------------------------------
    @rule(
        action=st.sampled_from(["create", "rename", "delete", "version"]),
        i=INDEX,
        k=st.integers(0, 2),
        bad=st.integers(0, 9),
    )
    def volumes(self, action: str, i: int, k: int, bad: int) -> None:
        """Create, rename or delete a volume, or ask the version (one rule: each is drawn
        a quarter as often as the file rules)."""
        if action == "version":
            got = self.expect(self.call("GET", "version"), 200, "version")
            import jupyter_volume

            # (the store's URL as the store spells it: its query percent-encoded)
            assert {**got, "store": unquote(got.get("store") or "")} == {
                "name": "jupyter-volume",
                "version": jupyter_volume.__version__,
                "api_version": 1,
                "store": unquote(self.store_url),
            }, f"GET version: {got}"
        elif action == "create":
            self.create_volume(k, bad)
        elif action == "rename":
            self.rename_volume(i, k, bad % 6)
        else:
            self.delete_volume(i, bad % 3)

    def create_volume(self, k: int, bad: int) -> None:
        if bad < len(BAD_VOLUME_NAMES) and bad >= 7:
            name: Any = BAD_VOLUME_NAMES[(k * 3 + bad) % len(BAD_VOLUME_NAMES)]
            r = self.call("POST", "volumes", {"name": name})
            self.refused(r, {400: "InvalidError"}, f"create a volume named {name!r}")
            return
        if bad == 9:
            r = self.call("POST", "volumes", {"name": 5} if k else {})
            self.refused(r, {400: "InvalidError"}, "create a volume without a string name")
            return
        name = self.pool[k]
        r = self.call("POST", "volumes", {"name": name})
        if name in self.vols:
            self.refused(r, {409: "AlreadyExistsError"}, f"create {name}, which exists")
            return
        got = self.expect(r, 201, f"create {name}")
        self.check_volume_object(got, name, None, "create")
        self.vols[name] = Vol(got["id"])
        self.touched = name

    def check_volume_object(self, got: Any, name: str, vid: str | None, what: str) -> None:
        assert set(got) == {"name", "id", "created_at", "created_by"}, f"{what}: {got}"
        assert got["name"] == name and (vid is None or got["id"] == vid), f"{what}: {got}"
        assert isinstance(got["id"], str) and got["id"], f"{what}: {got}"
        t = datetime.fromisoformat(got["created_at"])
        assert t.utcoffset() == timedelta(0), f"{what}: created_at {got['created_at']!r}"
        assert isinstance(got["created_by"], str), f"{what}: {got}"

    def rename_volume(self, i: int, k: int, bad: int) -> None:
        old, m = self.vol(i)
        if bad == 0:  # a volume that does not exist
            missing = self.missing_volume()
            r = self.call("PATCH", f"volumes/{missing}", {"name": f"{missing}-x"})
            self.refused(r, {404: "NotFoundError"}, f"rename missing {missing}")
            return
        if old is None or m is None:
            return
        if bad == 1:
            new: Any = BAD_VOLUME_NAMES[(i + k) % len(BAD_VOLUME_NAMES)]
            r = self.call("PATCH", f"volumes/{old}", {"name": new})
            self.refused(r, {400: "InvalidError"}, f"rename {old} to {new!r}")
            return
        new = self.pool[k]
        r = self.call("PATCH", f"volumes/{old}", {"name": new})
        if new == old:
            # The docs say 409 when the new name is taken; taken by the volume itself, a
            # no-op 200 is as good an answer.
            if r.code != 200:
                self.refused(r, {409: "AlreadyExistsError"}, f"rename {old} onto itself")
            else:
                self.check_volume_object(r.j, old, m.id, f"rename {old} onto itself")  # type: ignore[attr-defined]
            return
        if new in self.vols:
            self.refused(r, {409: "AlreadyExistsError"}, f"rename {old} onto existing {new}")
            return
        got = self.expect(r, 200, f"rename {old} to {new}")
        self.check_volume_object(got, new, m.id, f"rename {old} to {new}")
        self.vols[new] = self.vols.pop(old)
        self.touched = new

    def delete_volume(self, i: int, go: int) -> None:
        if go:  # mostly the errors: a volume lives a while
            missing = self.missing_volume()
            self.refused(
                self.call("DELETE", f"volumes/{missing}"), {404: "NotFoundError"}, "delete missing"
            )
            bad = BAD_VOLUME_NAMES[i % 3]
            self.refused(
                self.call("DELETE", f"volumes/{quote(bad)}"),
                {400: "InvalidError"},
                "delete bad name",
            )
            return
        name, m = self.vol(i)
        if name is None:
            return
        r = self.call("DELETE", f"volumes/{name}")
        self.expect(r, 204, f"delete {name}")
        assert r.body == b"", f"delete {name}: a 204 with a body {r.body!r}"
        del self.vols[name]
        self.touched = None
        self.refused(
            self.call("GET", f"volumes/{name}/tree"),
            {404: "NotFoundError"},
            f"tree of deleted {name}",
        )

    # -- uploads ---------------------------------------------------------------------------------
    @rule(
        i=INDEX,
        j=INDEX,
        size=st.sampled_from(SIZES),
        seed=SEED,
        force=st.booleans(),
        how=SPELL,
        odd=st.integers(0, 7),
    )
    def upload_one_chunk(
        self, i: int, j: int, size: int, seed: int, force: bool, how: int, odd: int
    ) -> None:
        """Start, one PUT, finish: the smallest upload there is."""
        name, m = self.vol(i)
        if name is None or m is None:
            return
        p = FILES[j % len(FILES)]
        data = content(p, seed, size)
        body: dict[str, Any] = {"path": spelled(p, how), "size": len(data), "force": force}
        if odd == 1:  # onto a folder, or below a file
            p = self.pick([*m.tree.dirs, *(f + "/x.txt" for f in m.tree.files)], j) or p
            body["path"] = p
        elif odd == 2:
            body["size"] = [-1, "3", 1024**4 + 1, 2.5, True][j % 5]
        elif odd == 3:
            body["force"] = "yes"
        elif odd == 4:
            body["path"] = ["", "/", None, 3][j % 4]
        elif odd == 5:
            body["path"] = CONTROL_NAMES[j % len(CONTROL_NAMES)]
        target = m if odd != 6 else None
        vname = name if odd != 6 else self.missing_volume()
        path = body["path"]
        norm = None if not isinstance(path, str) or any(c in path for c in "\n\t\x1b\x7f") else p
        if isinstance(path, str) and path.strip("/") == "":
            norm = ""
        errors = self.upload_refusal(target, norm, body["size"], body.get("force", False))
        r = self.call("POST", f"volumes/{vname}/uploads", body)
        if errors:
            self.refused(r, errors, f"start an upload of {path!r}")
            return
        got = self.expect(r, 201, f"start an upload of {p}")
        s = Session(got["upload_id"], name, m.uid, p, data, force)
        self.sessions.append(s)
        self.check_session(s, got, "a new session")
        if s.data or odd == 7:  # an empty file needs no chunk; an empty chunk is fine too
            r = self.put_chunk(s, 0, s.data)
            s.received = len(s.data)
            self.check_session(s, self.expect(r, 200, f"the one chunk of {p}"), "after the chunk")
        r = self.call(
            "POST",
            f"volumes/{name}/uploads/{s.id}/finish",
            {"size": len(s.data), "sha256": sha(s.data)},
        )
        self.finished(s, self.expect(r, 200, f"finish {p}"), f"upload of {p}")

    @rule(i=INDEX, j=INDEX, size=st.sampled_from(SIZES), seed=SEED, force=st.booleans())
    def upload_one_chunk_again(self, i: int, j: int, size: int, seed: int, force: bool) -> None:
        self.upload_one_chunk(i, j, size, seed, force, 0, 0)

    @rule(i=INDEX, nb=st.sampled_from(["nb.ipynb", "sub/nb2.ipynb", " lead.ipynb"]), seed=SEED)
    def upload_notebook(self, i: int, nb: str, seed: int) -> None:
        """A new version of a notebook (most are notebooks, some not), for nbdiff."""
        self.upload_one_chunk(i, FILES.index(nb), 0, seed, True, 0, 0)

    @rule(i=INDEX, j=INDEX, size=st.sampled_from(SIZES[1:]), seed=SEED, force=st.booleans())
    def upload_start_again(self, i: int, j: int, size: int, seed: int, force: bool) -> None:
        self.upload_start(i, j, size, seed, force)

    @rule(i=INDEX, j=INDEX, size=st.sampled_from(SIZES[1:]), seed=SEED, force=st.booleans())
    def upload_start(self, i: int, j: int, size: int, seed: int, force: bool) -> None:
        """A session to be driven a chunk at a time by the rules below."""
        name, m = self.vol(i)
        if name is None or m is None or len(self.sessions) >= SESSION_LIMIT:
            return
        p = FILES[j % len(FILES)]
        data = content(p, seed, size)
        errors = self.upload_refusal(m, p, len(data), force)
        r = self.call(
            "POST", f"volumes/{name}/uploads", {"path": p, "size": len(data), "force": force}
        )
        if errors:
            self.refused(r, errors, f"start an upload of {p}")
            return
        got = self.expect(r, 201, f"start an upload of {p}")
        s = Session(got["upload_id"], name, m.uid, p, data, force)
        self.check_session(s, got, "a new session")
        self.sessions.append(s)

    @precondition(lambda self: self.sessions)
    @rule(i=INDEX, part=st.sampled_from(CHUNK_PARTS))
    def upload_chunk(self, i: int, part: int | None) -> None:
        s = self.session(i)
        if s is None:
            return
        rest = len(s.data) - s.received
        n = rest if part is None else min(part, rest)
        piece = s.data[s.received : s.received + n]
        r = self.put_chunk(s, s.received, piece)
        if not self.alive(s):
            self.refused(r, {404: "NotFoundError"}, "a chunk of a session whose volume is gone")
            self.forget(s)
            return
        got = self.expect(r, 200, f"chunk {s.received}+{n} of {s.path}")
        if n:
            s.last = (s.received, n)
        s.received += n
        self.check_session(s, got, "after a chunk")

    @precondition(lambda self: self.sessions)
    @rule(i=INDEX, kind=st.integers(0, 9), j=INDEX)
    def upload_bad_chunk(self, i: int, kind: int, j: int) -> None:
        """A chunk the server must refuse, keeping nothing of it."""
        s = self.session(i)
        if s is None:
            return
        rest = s.data[s.received :]
        if kind == 0 and s.last is None:
            kind = 1
        if kind == 0:  # the last chunk again, at its old offset (a retry after a lost answer)
            off, n = s.last  # type: ignore[misc]
            r = self.put_chunk(s, off, s.data[off : off + n])
            allowed = {409: "ConflictError"}
        elif kind == 1:  # past what was received: a gap
            off = s.received + 1 + j % 100
            r = self.put_chunk(s, off, s.data[off : off + 10] or b"x")
            allowed = {409: "ConflictError"}
        elif kind == 2:  # corrupted in transit: the header has the true chunk's hash
            piece = rest[:1000] or b"\x00"
            damaged = bytes([piece[0] ^ 1]) + piece[1:]
            r = self.put_chunk(s, s.received, damaged, digest=sha(piece))
            allowed = {400: "InvalidError"}
        elif kind == 3:  # past the declared size
            r = self.put_chunk(s, s.received, rest + b"extra")
            allowed = {400: "InvalidError"}
        elif kind == 4:
            r = self.put_chunk(s, s.received, rest[:10], digest=None)
            allowed = {400: "InvalidError"}
        elif kind == 5:
            r = self.put_chunk(s, s.received, rest[:10], digest=["zz", "0" * 63, "g" * 64][j % 3])
            allowed = {400: "InvalidError"}
        elif kind == 6:
            r = self.put_chunk(s, [None, "x", -1][j % 3], rest[:10])
            allowed = {400: "InvalidError"}
        elif kind == 7:  # a body declared over 1 GiB: refused unread, the connection closed
            r = self.declared_huge_chunk(s)
            allowed = {413: "ChunkTooLargeError"}
        elif kind == 9:  # without the token: not a byte stored
            piece = rest[:1000]
            r = self.call(
                "PUT",
                f"volumes/{s.volume}/uploads/{s.id}",
                body=piece,
                params={"offset": s.received},
                headers={"X-Content-SHA256": sha(piece)},
                auth=False,
            )
            self.refused(r, {403: "Forbidden"}, "a chunk without the token")
            if self.alive(s):
                got = self.expect(
                    self.call("GET", f"volumes/{s.volume}/uploads/{s.id}"), 200, "status"
                )
                self.check_session(s, got, "after a chunk without the token")
            return
        else:  # under another volume's name, or an id that never was
            other = self.pick([n for n in self.vols if n != s.volume], j) or self.missing_volume()
            r = self.call(
                "PUT",
                f"volumes/{other}/uploads/{s.id}",
                body=b"x",
                params={"offset": s.received},
                headers={"X-Content-SHA256": sha(b"x")},
            )
            self.refused(r, {404: "NotFoundError"}, "a chunk sent under another volume's name")
            r = self.call(
                "PUT",
                f"volumes/{s.volume}/uploads/never{j}",
                body=b"x",
                params={"offset": 0},
                headers={"X-Content-SHA256": sha(b"x")},
            )
            self.refused(r, {404: "NotFoundError"}, "a chunk of an unknown session")
            return
        if not self.alive(s):
            # The docs: the next chunk of a session whose volume is gone gets 404 and the
            # session is dropped. A chunk refused for its own fault first is as good.
            self.refused(
                r,
                {404: "NotFoundError", **allowed},
                "a bad chunk of a session whose volume is gone",
            )
            if r.code == 404:
                self.forget(s)
            return
        self.refused(r, allowed, f"bad chunk (kind {kind}) of {s.path} at received={s.received}")
        if kind in (0, 1):
            assert str(s.received) in r.j["message"], f"409 not naming the expected offset: {r.j}"  # type: ignore[attr-defined]
        got = self.expect(self.call("GET", f"volumes/{s.volume}/uploads/{s.id}"), 200, "status")
        self.check_session(s, got, f"after a refused chunk (kind {kind})")

    # the same rules drawn twice as often: sessions are driven between the other requests
    @precondition(lambda self: self.sessions)
    @rule(i=INDEX, part=st.sampled_from(CHUNK_PARTS))
    def upload_chunk_again(self, i: int, part: int | None) -> None:
        self.upload_chunk(i, part)

    @precondition(lambda self: self.sessions)
    @rule(i=INDEX, kind=st.integers(0, 9), j=INDEX)
    def upload_bad_chunk_again(self, i: int, kind: int, j: int) -> None:
        self.upload_bad_chunk(i, kind, j)

    @precondition(lambda self: self.sessions)
    @rule(i=INDEX, part=st.sampled_from(CHUNK_PARTS), k=st.integers(0, 3))
    def upload_chunk_in_flight(self, i: int, part: int | None, k: int) -> None:
        """While a chunk's body is still arriving the session is ``writing``: a second
        chunk and a finish get 409 ConflictError; then the first chunk lands."""
        live = [s for s in self.sessions if self.alive(s) and s.received < len(s.data)]
        if not live:
            return
        s = live[i % len(live)]
        rest = len(s.data) - s.received
        n = rest if part is None else min(part, rest)
        piece = s.data[s.received : s.received + n]
        first = piece[: n * k // 4]
        base = f"volumes/{s.volume}/uploads/{s.id}"
        conn = http.client.HTTPConnection(self.api.host, self.api.port, timeout=60)
        try:
            conn.putrequest("PUT", self.api.path(base, {"offset": s.received}))
            for key, value in {
                **self.api.auth,
                "X-Content-SHA256": sha(piece),
                "Content-Length": str(n),
            }.items():
                conn.putheader(key, value)
            conn.endheaders()
            conn.send(first)
            deadline = time.monotonic() + 60  # a hang guard only
            while True:
                got = self.expect(self.call("GET", base), 200, "status while a chunk arrives")
                if got["state"] == "writing":
                    break
                assert time.monotonic() < deadline, f"the session never showed the chunk: {got}"
                time.sleep(0.005)
            self.check_session(s, got, "while a chunk arrives", state="writing")
            r = self.put_chunk(s, s.received, piece)
            self.refused(r, {409: "ConflictError"}, "a second chunk while one arrives")
            r = self.call("POST", f"{base}/finish", {"size": len(s.data), "sha256": sha(s.data)})
            self.refused(r, {409: "ConflictError"}, "finish while a chunk arrives")
            conn.send(piece[len(first) :])
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        assert resp.status == 200, f"the chunk that was in flight: {resp.status} {body[:300]!r}"
        if n:
            s.last = (s.received, n)
        s.received += n
        self.check_session(s, json.loads(body), "after the chunk that was in flight")

    @precondition(lambda self: not self.limit_seen)  # 33 requests: once an example
    @rule(i=INDEX)
    def upload_limit(self, i: int) -> None:
        """A user (all token-authenticated requests are one) holds at most 16 unfinished
        sessions: the 17th gets 429. The count includes every session the model holds,
        those of deleted volumes too, so this also shows none was dropped unseen."""
        name, m = self.vol(i)
        if name is None or m is None:
            return
        extra = []
        for k in range(16 - len(self.sessions)):
            r = self.call("POST", f"volumes/{name}/uploads", {"path": f"limit-{k}.bin", "size": 1})
            extra.append(
                self.expect(r, 201, f"session {len(self.sessions) + k + 1} of 16")["upload_id"]
            )
        r = self.call("POST", f"volumes/{name}/uploads", {"path": "limit-x.bin", "size": 1})
        self.refused(r, {429: "TooManyUploadsError"}, "a 17th session")
        self.limit_seen = True
        for uid in extra:
            self.expect(self.call("DELETE", f"volumes/{name}/uploads/{uid}"), 204, "cancel")
            self.dead.append((name, uid))

    def declared_huge_chunk(self, s: Session) -> Response:
        conn = http.client.HTTPConnection(self.api.host, self.api.port, timeout=60)
        try:
            conn.putrequest(
                "PUT", self.api.path(f"volumes/{s.volume}/uploads/{s.id}", {"offset": s.received})
            )
            for k, v in {
                **self.api.auth,
                "X-Content-SHA256": "0" * 64,
                "Content-Length": str(2 * 1024**3),
            }.items():
                conn.putheader(k, v)
            conn.endheaders()
            resp = conn.getresponse()
            r = Response(resp.status, resp.headers, resp.read())
        finally:
            conn.close()
        r.j = json.loads(r.body) if r.body else None  # type: ignore[attr-defined]
        r.what = f"PUT volumes/{s.volume}/uploads/{s.id} (Content-Length 2 GiB)"  # type: ignore[attr-defined]
        return r

    @precondition(lambda self: self.sessions)
    @rule(i=INDEX, kind=st.integers(0, 6))
    def upload_finish(self, i: int, kind: int) -> None:
        s = self.session(i)
        if s is None:
            return
        n = len(s.data)
        body: dict[str, Any] = {"size": n, "sha256": sha(s.data)}
        force: bool | None = None
        if kind == 1:
            body["size"] = n + 1
        elif kind == 2:
            body = {"sha256": sha(s.data)} if i % 2 else {"size": n, "sha256": "xyz"}
        elif kind == 3:
            body["sha256"] = sha(s.data + b"!")
        elif kind == 4:
            force = True
            body["force"] = True
        elif kind == 5:
            body["force"] = "yes"
        r = self.call("POST", f"volumes/{s.volume}/uploads/{s.id}/finish", body)
        what = f"finish (kind {kind}) of {s.path} with {s.received} of {n} bytes"
        malformed = kind in (2, 5)
        if not self.alive(s):
            # The docs: the next finish of a session whose volume is gone gets 404 and
            # the session is dropped. A finish refused for its own fault first (400) is
            # as good; a wrong SHA-256 of all the bytes drops the session anyway.
            own_fault = malformed or s.received < n or kind in (1, 3)
            allowed = {404: "NotFoundError", **({400: "InvalidError"} if own_fault else {})}
            self.refused(r, allowed, f"{what}, whose volume is gone")
            if r.code == 404 or (kind == 3 and s.received == n):
                self.forget(s)
            return
        if malformed or s.received < n or kind == 1:
            self.refused(r, {400: "InvalidError"}, f"{what}: the session stays open")
            return
        if kind == 3:
            self.refused(r, {400: "InvalidError"}, f"{what} (a wrong SHA-256): dropped")
            self.forget(s)
            return
        m = self.vols[s.volume]
        t = m.tree
        effective = s.force if force is None else force
        if s.path in t.dirs or t.file_above(s.path) or (s.path in t.files and not effective):
            self.refused(r, {409: "AlreadyExistsError"}, f"{what}: the path exists meanwhile")
            got = self.expect(self.call("GET", f"volumes/{s.volume}/uploads/{s.id}"), 200, "status")
            self.check_session(s, got, "after a refused finish")
            return
        self.touched = s.volume
        self.finished(s, self.expect(r, 200, what), what)

    @precondition(lambda self: self.sessions)
    @rule(i=INDEX)
    def upload_status(self, i: int) -> None:
        s = self.session(i)
        if s is None:
            return
        r = self.call("GET", f"volumes/{s.volume}/uploads/{s.id}")
        if not self.alive(s):
            # The docs speak of the next chunk or finish only: a status may still answer.
            if r.code == 404:
                self.refused(r, {404: "NotFoundError"}, "status of a session whose volume is gone")
                self.forget(s)
            else:
                self.check_session(
                    s, self.expect(r, 200, "status"), "a session whose volume is gone"
                )
            return
        self.check_session(s, self.expect(r, 200, "status"), "status")

    @precondition(lambda self: self.sessions)
    @rule(i=INDEX)
    def upload_cancel(self, i: int) -> None:
        s = self.session(i)
        if s is None:
            return
        r = self.call("DELETE", f"volumes/{s.volume}/uploads/{s.id}")
        if not self.alive(s) and r.code == 404:
            self.refused(r, {404: "NotFoundError"}, "cancel a session whose volume is gone")
        else:
            self.expect(r, 204, f"cancel the upload of {s.path}")
            assert r.body == b"", "a 204 with a body"
        self.forget(s)
        self.refused(
            self.call("GET", f"volumes/{s.volume}/uploads/{s.id}"),
            {404: "NotFoundError"},
            "status after cancel",
        )

    @precondition(lambda self: self.dead)
    @rule(i=INDEX, kind=st.integers(0, 3))
    def upload_dead(self, i: int, kind: int) -> None:
        """Finished, cancelled and dropped sessions are gone: 404 whatever is asked."""
        v, uid = self.dead[i % len(self.dead)]
        base = f"volumes/{v}/uploads/{uid}"
        if kind == 0:
            r = self.call("GET", base)
        elif kind == 1:
            r = self.call(
                "PUT",
                base,
                body=b"x",
                params={"offset": 0},
                headers={"X-Content-SHA256": sha(b"x")},
            )
        elif kind == 2:
            r = self.call("POST", base + "/finish", {"size": 1, "sha256": sha(b"x")})
        else:
            r = self.call("DELETE", base)
        self.refused(r, {404: "NotFoundError"}, "a finished, cancelled or dropped session")

    # -- another writer ----------------------------------------------------------------------------
    @rule(i=INDEX, j=INDEX, size=st.sampled_from(SIZES), seed=SEED)
    def python_writes(self, i: int, j: int, size: int, seed: int) -> None:
        """Another client writes through the Python API: every request reads the newest."""
        name, m = self.vol(i)
        if name is None or m is None:
            return
        p = FILES[j % len(FILES)]
        self.python_write(name, m, p, content(p, seed, size))

    def python_write(self, name: str, m: Vol, p: str, data: bytes) -> None:
        v = Volume.from_name(name, store=self.store_url)
        with v.batch_upload(force=True) as b:
            b.put_file(io.BytesIO(data), p)
        before = m.tree.copy()
        m.tree.write(p, data)
        self.committed(m, commit_json(b.commit_info), before, f"Python API upload of {p}")

    # -- files -----------------------------------------------------------------------------------
    @rule(
        i=INDEX,
        j=INDEX,
        kind=st.integers(0, 6),
        sort=st.sampled_from(["name", "size", "mtime"]),
        desc=st.booleans(),
        limit=st.sampled_from([1, 2, 3, 500, 5000]),
        how=SPELL,
        old=st.integers(0, 3),
        between=st.booleans(),
    )
    def tree(
        self,
        i: int,
        j: int,
        kind: int,
        sort: str,
        desc: bool,
        limit: int,
        how: int,
        old: int,
        between: bool,
    ) -> None:
        name, m = self.vol(i)
        if name is None or m is None:
            return
        at = None
        t = m.tree
        if old == 0 and m.seq > 0:  # the tree as it was at an older commit
            at = j % m.seq
            t = m.snaps[at]
        base = f"volumes/{name}/tree"
        if kind == 0:
            folder = ""
        elif kind == 4:  # a file: 400
            f = self.pick(t.files, j)
            if f is not None:
                r = self.call(
                    "GET", f"{base}/{url_path(f)}", params={"at": at} if at is not None else None
                )
                self.refused(r, {400: "InvalidError"}, f"tree of file {f}")
            return
        elif kind == 5:  # missing: 404; a commit that does not exist: 404; bad arguments: 400
            d = self.pick([d for d in FOLDERS if not t.isdir(d)], j) or "nothing-here"
            r = self.call(
                "GET", f"{base}/{url_path(d)}", params={"at": at} if at is not None else None
            )
            self.refused(r, {404: "NotFoundError"}, f"tree of missing {d}")
            r = self.call("GET", base, params={"at": m.seq + 1 + j % 3})
            self.refused(r, {404: "NotFoundError"}, "tree at a commit that does not exist")
            bad = [
                {"sort": "date"},
                {"order": "up"},
                {"limit": 0},
                {"limit": 5001},
                {"offset": -1},
                {"limit": "x"},
            ]
            r = self.call("GET", base, params=bad[j % len(bad)])
            self.refused(r, {400: "InvalidError"}, "tree with a bad argument")
            return
        else:
            folder = self.pick(t.dirs, j)
            if folder is None:
                folder = ""
        want = t.children(folder)
        route = f"{base}/{url_path(spelled(folder, how))}" if folder or how == 3 else base
        params: dict[str, Any] = {"sort": sort, "order": "desc" if desc else "asc", "limit": limit}
        if at is not None:
            params["at"] = at
        got: list[dict[str, Any]] = []
        offset, pinned = 0, at
        listed_at = at if at is not None else m.seq
        while True:
            if offset and between and at is None:
                # another writer adds a file to the folder between two pages: the pages
                # pinned to the first one's seq join up all the same
                self.python_write(
                    name, m, f"{folder}/between.txt" if folder else "between.txt", b"new"
                )
                between = False
            q = {**params, "offset": offset, **({"at": pinned} if pinned is not None else {})}
            r = self.call("GET", route, params=q)
            page = self.expect(r, 200, f"tree of {folder!r}")
            expected_head = {
                "volume": name,
                "path": folder,
                "at": pinned,
                "seq": listed_at,
                "offset": offset,
                "limit": limit,
                "sort": sort,
                "order": "desc" if desc else "asc",
                "total": len(want),
            }
            assert {k: page.get(k) for k in expected_head} == expected_head, (
                f"tree of {folder!r} page at {offset}: { ({k: page.get(k) for k in expected_head}) }, "
                f"the model: {expected_head}"
            )
            assert len(page["entries"]) == min(limit, max(len(want) - offset, 0)), page
            got += page["entries"]
            pinned = page["seq"]
            offset += limit
            if offset >= len(want):
                break
        self.check_listing(m, folder, want, got, sort, desc, listed_at)

    def check_listing(
        self,
        m: Vol,
        folder: str,
        want: list[dict[str, Any]],
        got: list[dict[str, Any]],
        sort: str,
        desc: bool,
        at: int,
    ) -> None:
        what = f"tree of {folder!r} by {sort} {'desc' if desc else 'asc'} at {at}"
        for e in got:
            assert isinstance(e.get("mtime"), int), f"{what}: mtime {e.get('mtime')!r}"
        bare = [{k: v for k, v in e.items() if k != "mtime"} for e in got]
        by_path = {e["path"]: e for e in want}
        assert sorted(x["path"] for x in bare) == sorted(by_path), (
            f"{what}: lists {sorted(x['path'] for x in bare)}, the model has {sorted(by_path)}"
        )
        for x in bare:
            assert x == by_path[x["path"]], f"{what}: entry {x}, the model's {by_path[x['path']]}"
        t = m.snaps[at]
        for e in got:  # a file keeps its mtime until it is written again
            if e["type"] == "file":
                version = t.files[e["path"]][1]
                seen = self.mtimes.setdefault(version, e["mtime"])
                assert e["mtime"] == seen, f"{what}: {e['path']} mtime {e['mtime']}, before {seen}"
        # The order: folders first, then files, each by the sort.
        kinds = [e["type"] == "directory" for e in got]
        assert kinds == sorted(kinds, reverse=True), (
            f"{what}: folders not first: {[e['name'] for e in got]}"
        )
        sign = -1 if desc else 1
        for group in (True, False):
            es = [e for e in got if (e["type"] == "directory") == group]
            if sort == "name":
                keys = [natural(e["name"]) for e in es]
                ok = keys == sorted(keys, reverse=desc)
            else:
                keys = [(sign * e[sort], natural(e["name"])) for e in es]
                ok = keys == sorted(keys)
            assert ok, f"{what}: out of order: {[(e['name'], e['size'], e['mtime']) for e in es]}"

    @rule(
        i=INDEX,
        j=INDEX,
        kind=st.integers(0, 9),
        a=st.integers(0, 400_000),
        b=st.integers(0, 400_000),
        head=st.booleans(),
        how=SPELL,
        old=st.integers(0, 3),
    )
    def download(
        self, i: int, j: int, kind: int, a: int, b: int, head: bool, how: int, old: int
    ) -> None:
        name, m = self.vol(i)
        if name is None or m is None:
            return
        at = None
        t = m.tree
        if old == 0 and m.seq > 0:
            at = j % m.seq
            t = m.snaps[at]
        params = {"at": at} if at is not None else None
        method = "HEAD" if head else "GET"
        base = f"volumes/{name}/files"
        if kind == 8:  # a folder: 400; missing: 404
            d = self.pick(t.dirs, j)
            if d is not None:
                r = self.call(method, f"{base}/{url_path(d)}", params=params)
                self.refused(r, {400: "InvalidError"}, f"download folder {d}")
            f = self.pick([f for f in FILES if f not in t.files], j)
            if f is not None:
                r = self.call(method, f"{base}/{url_path(f)}", params=params)
                self.refused(r, {404: "NotFoundError"}, f"download missing {f}")
            return
        if kind == 9:  # at a commit that does not exist
            f = self.pick(m.tree.files, j)
            if f is not None:
                r = self.call(method, f"{base}/{url_path(f)}", params={"at": m.seq + 1})
                self.refused(r, {404: "NotFoundError"}, f"download {f} at a commit to come")
            return
        p = self.pick(t.files, j)
        if p is None:
            return
        data = t.files[p][0]
        n = len(data)
        rng: str | None = None
        want_status, lo, hi = 200, 0, n
        if kind == 1:
            x, y = sorted((a % (n + 2), b % (n + 2)))
            rng = f"bytes={x}-{y}"
            if x >= n:
                want_status = 416
            else:
                want_status, lo, hi = 206, x, min(y + 1, n)
        elif kind == 2:
            x = a % (n + 2)
            rng = f"bytes={x}-"
            want_status, lo = (416, 0) if x >= n else (206, x)
        elif kind == 3:
            k = 1 + a % (n + 2)
            rng = f"bytes=-{k}"
            want_status, lo = (416, 0) if n == 0 else (206, max(n - k, 0))
        elif kind == 4:
            rng = "bytes=0-1,5-6"  # several ranges: the whole file
        elif kind == 5 and n > 1:
            rng = f"bytes={n - 1}-0"  # reversed: not a valid range, so ignored
        elif kind == 6:
            rng = "bytes=" + "9" * 31 + "-"  # over 30 digits: the whole file
        headers = {"Range": rng} if rng else None
        r = self.call(method, f"{base}/{url_path(spelled(p, how))}", params=params, headers=headers)
        what = (
            f"{method} {p}"
            + (f" Range {rng}" if rng else "")
            + (f" at {at}" if at is not None else "")
        )
        if want_status == 416:
            assert r.code == 416, f"{what}: answered {r.code}, expected 416"
            assert r.headers["Content-Range"] == f"bytes */{n}", (
                f"{what}: {r.headers['Content-Range']}"
            )
            return
        assert r.code == want_status, (
            f"{what}: answered {r.code} {r.body[:200]!r}, expected {want_status}"
        )
        if want_status == 206:
            assert r.headers["Content-Range"] == f"bytes {lo}-{hi - 1}/{n}", (
                f"{what}: {r.headers['Content-Range']}"
            )
        expected_body = data[lo:hi]
        assert r.headers["Content-Length"] == str(len(expected_body)), f"{what}: Content-Length"
        if head:
            assert r.body == b"", f"{what}: a HEAD with a body"
        else:
            assert r.body == expected_body, (
                f"{what}: {len(r.body)} bytes that differ from the model's {len(expected_body)}"
            )
        fname = p.rsplit("/", 1)[-1]
        ctype = mimetypes.guess_type(fname)[0] or "application/octet-stream"
        assert r.headers["Content-Type"].split(";")[0] == ctype, (
            f"{what}: {r.headers['Content-Type']}"
        )
        assert r.headers["Accept-Ranges"] == "bytes", what
        assert r.headers["X-Content-Type-Options"] == "nosniff", what
        disp = r.headers["Content-Disposition"]
        assert disp.startswith("attachment;") and f"filename*=UTF-8''{quote(fname)}" in disp, (
            f"{what}: {disp}"
        )
        assert r.headers["X-Volume-Commit"] == str(at if at is not None else m.seq), (
            f"{what}: X-Volume-Commit {r.headers['X-Volume-Commit']}, the model's commit "
            f"{at if at is not None else m.seq}"
        )
        mtime = (
            Volume.from_name(name, store=self.store_url)
            .stat(p, at=at if at is not None else m.seq)
            .mtime
        )
        assert email.utils.parsedate_to_datetime(r.headers["Last-Modified"]).timestamp() == mtime, (
            f"{what}: Last-Modified {r.headers['Last-Modified']}, the file's mtime {mtime}"
        )

    @rule(i=INDEX, j=INDEX, kind=st.integers(0, 5), recursive=st.booleans(), how=SPELL)
    def delete_path(self, i: int, j: int, kind: int, recursive: bool, how: int) -> None:
        name, m = self.vol(i)
        if name is None or m is None:
            return
        t = m.tree
        if kind == 0:
            p = self.pick(t.dirs, j)
        elif kind == 1:
            p = self.pick([f for f in FILES if not t.exists(f)], j)
        elif kind == 2:
            p = ""
        else:
            p = self.pick(t.files, j)
        if p is None:
            return
        params = {"recursive": "true"} if recursive else None
        if kind == 5:
            params = {"recursive": "maybe"}
        route = f"volumes/{name}/files/{url_path(spelled(p, how))}"
        r = self.call("DELETE", route, params=params)
        what = f"delete {p!r}" + (" recursive" if recursive else "")
        if kind == 5:
            self.refused(r, {400: "InvalidError"}, f"{what} with recursive=maybe")
            return
        if p == "":
            self.refused(r, {400: "InvalidError"}, "delete the root")
            return
        if not t.exists(p):
            self.refused(r, {404: "NotFoundError"}, f"{what}, which is missing")
            return
        if p in t.dirs and not recursive and len(t.entries(p)) > 1:
            self.refused(r, {400: "InvalidError"}, f"{what}, a folder that is not empty")
            return
        got = self.expect(r, 200, what)
        assert set(got) == {"path", "commit"} and got["path"] == p, f"{what}: {got}"
        before = t.copy()
        t.remove(p)
        self.committed(m, got["commit"], before, what)

    @rule(i=INDEX, picks=st.lists(INDEX, min_size=1, max_size=4), kind=st.integers(0, 7), how=SPELL)
    def remove_many(self, i: int, picks: list[int], kind: int, how: int) -> None:
        name, m = self.vol(i)
        if name is None or m is None:
            return
        t = m.tree
        existing = sorted([*t.files, *t.dirs])
        if not existing and kind not in (4, 5):
            kind = 4
        paths: Any = [spelled(existing[k % len(existing)], how) for k in picks] if existing else []
        norm = [existing[k % len(existing)] for k in picks] if existing else []
        what = f"remove {paths}"
        if kind == 4:  # one is missing: nothing is removed
            gone = self.pick([f for f in FILES if not t.exists(f)], picks[0])
            if gone is None:
                return
            paths.append(gone)
            r = self.call("POST", f"volumes/{name}/remove", {"paths": paths})
            self.refused(r, {404: "NotFoundError"}, f"{what} and missing {gone}")
            return
        if kind == 5:
            paths = [[], "a.txt", [3], None, [*paths, "/"], [*paths, "../x"]][picks[0] % 6]
            r = self.call("POST", f"volumes/{name}/remove", {"paths": paths})
            self.refused(r, {400: "InvalidError"}, f"remove {paths!r}")
            return
        r = self.call("POST", f"volumes/{name}/remove", {"paths": paths})
        got = self.expect(r, 200, what)
        assert set(got) == {"paths", "commit"}, f"{what}: {got}"
        assert sorted(set(got["paths"])) == sorted(set(norm)), (
            f"{what}: answered paths {got['paths']}"
        )
        before = t.copy()
        for p in norm:
            t.remove(p)
        self.committed(m, got["commit"], before, what)

    @rule(i=INDEX, j=INDEX, kind=st.integers(0, 5), how=SPELL)
    def make_folder(self, i: int, j: int, kind: int, how: int) -> None:
        name, m = self.vol(i)
        if name is None or m is None:
            return
        t = m.tree
        if kind == 0:  # exists already (a folder, a file or the root)
            p: Any = self.pick([*t.dirs, *t.files, ""], j)
        elif kind == 1:  # below a file
            f = self.pick(t.files, j)
            p = f"{f}/x" if f else FOLDERS[j % len(FOLDERS)]
        elif kind == 2:
            p = [CONTROL_NAMES[j % len(CONTROL_NAMES)], 3, None][j % 3]
        else:
            p = FOLDERS[j % len(FOLDERS)]
        body = {"path": spelled(p, how) if isinstance(p, str) else p}
        r = self.call("POST", f"volumes/{name}/folders", body)
        what = f"new folder {p!r}"
        if not isinstance(p, str) or p in CONTROL_NAMES:
            self.refused(r, {400: "InvalidError"}, what)
            return
        if t.exists(p) or t.file_above(p):
            self.refused(r, {409: "AlreadyExistsError"}, f"{what}, which exists or is below a file")
            return
        got = self.expect(r, 201, what)
        assert set(got) == {"path", "commit"} and got["path"] == p, f"{what}: {got}"
        before = t.copy()
        t.mkdirs(p)
        self.committed(m, got["commit"], before, what)

    @rule(i=INDEX, src=PAIR, dst=INDEX, kind=st.integers(0, 11), how=SPELL)
    def move(self, i: int, src: tuple[int, int], dst: int, kind: int, how: int) -> None:
        name, m = self.vol(i)
        if name is None or m is None:
            return
        t = m.tree
        folder = src[1] % 3 == 0
        s: Any = self.pick(t.dirs if folder else t.files, src[0])
        if s is None:
            s = FILES[src[0] % len(FILES)]  # missing: 404
        # (a folder gets a folder's name, a file a file's: the names stay disjoint)
        vocab = FOLDERS if s in t.dirs or s not in t.files and folder else FILES
        d: Any = vocab[dst % len(vocab)]
        if kind <= 3:  # into a folder that exists (or the root), under a name of the vocabulary
            base = vocab[dst % len(vocab)].rsplit("/", 1)[-1]
            into = self.pick([*t.dirs, ""], dst // 7)
            d = f"{into}/{base}" if into else base
        elif kind == 4:  # into itself
            d = f"{s}/inner"
        elif kind == 5:
            s, d = ["", s, ""][dst % 3], ["x", "", ""][dst % 3]
        elif kind == 6:
            d = CONTROL_NAMES[dst % len(CONTROL_NAMES)]
        elif kind == 7:  # below a file
            f = self.pick(t.files, dst)
            d = f"{f}/moved.txt" if f else d
        elif kind == 8:  # an existing path
            d = self.pick([*t.files, *t.dirs], dst) or d
        elif kind == 9:
            s, d = [(3, "x"), (s, None), (None, "x")][dst % 3]
        r = self.call(
            "POST",
            f"volumes/{name}/move",
            {
                "src": spelled(s, how) if isinstance(s, str) else s,
                "dst": spelled(d, how) if isinstance(d, str) else d,
            },
        )
        what = f"move {s!r} to {d!r}"
        errors: dict[int, str] = {}
        if not isinstance(s, str) or not isinstance(d, str) or d in CONTROL_NAMES:
            self.refused(r, {400: "InvalidError"}, what)
            return
        if s == "" or d == "" or d == s or d.startswith(s + "/"):
            errors[400] = "InvalidError"
        if s and not t.exists(s):
            errors[404] = "NotFoundError"
        if d and t.exists(d):
            errors[409] = "AlreadyExistsError"
        if d and not t.isdir(parent(d)):
            errors[404] = "NotFoundError"  # the parent of dst does not exist (as a folder)
            if t.file_above(d):
                # Not a case the docs name for a move; the other routes that make a name
                # below a file (uploads, new folders) answer 409. See test_rest_found.py.
                errors[409] = "AlreadyExistsError"
        if errors:
            self.refused(r, errors, what)
            return
        got = self.expect(r, 200, what)
        assert got is not None and set(got) == {"src", "dst", "commit"}, f"{what}: {got}"
        assert (got["src"], got["dst"]) == (s, d), f"{what}: {got}"
        before = t.copy()
        t.move(s, d)
        self.committed(m, got["commit"], before, what)

    # -- history ---------------------------------------------------------------------------------
    @rule(
        i=INDEX,
        limit=st.sampled_from([None, 1, 2, 5, 5000]),
        offset=st.sampled_from([None, 0, 1, 3]),
        before=st.integers(-2, 40),
        bad=st.integers(0, 7),
    )
    def history(self, i: int, limit: int | None, offset: int | None, before: int, bad: int) -> None:
        name, m = self.vol(i)
        if name is None or m is None:
            return
        route = f"volumes/{name}/history"
        if bad == 0:
            params = [
                {"limit": 0},
                {"limit": 5001},
                {"offset": -1},
                {"before": -1},
                {"limit": "x"},
            ][before % 5]
            self.refused(
                self.call("GET", route, params=params), {400: "InvalidError"}, f"history {params}"
            )
            return
        params: dict[str, Any] = {}
        if limit is not None:
            params["limit"] = limit
        if offset is not None:
            params["offset"] = offset
        b = before if before >= 0 and bad % 2 else None
        if b is not None:
            params["before"] = b
        got = self.expect(self.call("GET", route, params=params), 200, f"history {params}")
        lim, off = limit or 100, offset or 0
        seqs = [s for s in range(m.seq, -1, -1) if b is None or s < b]
        page = seqs[off : off + lim]
        what = f"history {params} of {name} (head {m.seq})"
        assert {k: got.get(k) for k in ("volume", "offset", "limit", "before", "more")} == {
            "volume": name,
            "offset": off,
            "limit": lim,
            "before": b,
            "more": len(seqs) > off + lim,
        }, f"{what}: { ({k: v for k, v in got.items() if k != 'commits'}) }"
        assert [c["seq"] for c in got["commits"]] == page, (
            f"{what}: commits {[c['seq'] for c in got['commits']]}, the model's {page}"
        )
        for c in got["commits"]:
            self.check_commit_object(c, what)
            known = m.commits.setdefault(c["seq"], c)  # the volume's first commit: as seen
            assert c == known, f"{what}: commit {c['seq']} is now {c}, it was answered as {known}"

    @rule(i=INDEX, a=INDEX, b=INDEX, kind=st.integers(0, 5))
    def diff(self, i: int, a: int, b: int, kind: int) -> None:
        name, m = self.vol(i)
        if name is None or m is None:
            return
        route = f"volumes/{name}/diff"
        if kind == 5:
            self.refused(self.call("GET", route), {400: "InvalidError"}, "diff without a")
            self.refused(
                self.call("GET", route, params={"a": "x"}), {400: "InvalidError"}, "diff a=x"
            )
            r = self.call("GET", route, params={"a": m.seq + 1})
            self.refused(r, {404: "NotFoundError"}, "diff from a commit to come")
            r = self.call("GET", route, params={"a": 0, "b": m.seq + 1 + b % 3})
            self.refused(r, {404: "NotFoundError"}, "diff to a commit to come")
            return
        sa = a % (m.seq + 1)
        sb = b % (m.seq + 1) if kind % 2 else None
        params = {"a": sa, **({"b": sb} if sb is not None else {})}
        got = self.expect(self.call("GET", route, params=params), 200, f"diff {params}")
        want = m.snaps[sa].diff(m.snaps[m.seq if sb is None else sb])
        assert {k: got.get(k) for k in ("volume", "a", "b")} == {"volume": name, "a": sa, "b": sb}
        have = sorted(
            (
                (c["path"], c["change"], c["type"], c["old_size"], c["new_size"])
                for c in got["changes"]
            ),
            key=lambda x: x[0],
        )
        assert have == want, (
            f"diff {params} of {name}: only the server's {sorted(set(have) - set(want))}, "
            f"only the model's {sorted(set(want) - set(have))}"
        )

    @rule(i=INDEX, a=INDEX, b=INDEX, j=INDEX, kind=st.integers(0, 5))
    def nbdiff(self, i: int, a: int, b: int, j: int, kind: int) -> None:
        import nbformat
        from nbdime import diff_notebooks

        name, m = self.vol(i)
        if name is None or m is None:
            return
        sa, sb = a % (m.seq + 1), b % (m.seq + 1)
        route = f"volumes/{name}/nbdiff"
        if kind == 0:
            r = self.call("GET", route, params={"path": "nb.ipynb", "a": sa})
            self.refused(r, {400: "InvalidError"}, "nbdiff without b")
            r = self.call("GET", route, params={"path": "nb.ipynb", "a": sa, "b": m.seq + 1})
            self.refused(r, {404: "NotFoundError"}, "nbdiff to a commit to come")
            return
        ta, tb = m.snaps[sa], m.snaps[sb]
        if kind == 1:  # a folder at one of them
            p = self.pick([*ta.dirs, *tb.dirs], j)
            if p is None:
                return
        elif kind == 2:  # any file
            p = self.pick({*ta.files, *tb.files} or {"a.txt"}, j)
        else:  # a notebook of some commit, compared between commits where it mostly exists
            nbs = {p for t in m.snaps.values() for p in t.files if p.endswith(".ipynb")}
            p = self.pick(nbs | {"nb.ipynb"}, j)
            have = [q for q, t in m.snaps.items() if p in t.files]
            if have:
                sa = self.pick(have, a)
                sb = self.pick(have, b) if kind < 5 else sb
                ta, tb = m.snaps[sa], m.snaps[sb]
        r = self.call("GET", route, params={"path": p, "a": sa, "b": sb})
        what = f"nbdiff {p} {sa} -> {sb}"
        if p in ta.dirs or p in tb.dirs:
            self.refused(r, {400: "InvalidError"}, f"{what}: a folder")
            return
        if p not in ta.files and p not in tb.files:
            self.refused(r, {404: "NotFoundError"}, f"{what}: absent at both")
            return
        versions = []
        for t in (ta, tb):
            if p not in t.files:
                versions.append(nbformat.v4.new_notebook())
                continue
            try:
                versions.append(nbformat.reads(t.files[p][0].decode(), as_version=4))
            except Exception:  # noqa: BLE001 - not a notebook
                versions.append(None)
        if None in versions:
            self.refused(r, {422: "NotebookDiffError"}, f"{what}: not a notebook at one of them")
            return
        got = self.expect(r, 200, what)
        want = {
            "volume": name,
            "path": p,
            "a": sa,
            "b": sb,
            "base": versions[0],
            "diff": diff_notebooks(versions[0], versions[1]),
        }
        assert got == json.loads(json.dumps(want)), f"{what}: {json.dumps(got)[:600]}"

    @rule(i=INDEX, c=INDEX, j=INDEX, kind=st.integers(0, 6), how=SPELL)
    def restore(self, i: int, c: int, j: int, kind: int, how: int) -> None:
        name, m = self.vol(i)
        if name is None or m is None:
            return
        route = f"volumes/{name}/restore"
        seq = c % (m.seq + 1)
        if kind == 0:
            body = [{"commit": "1"}, {"commit": True}, {}, {"commit": 1.5}][c % 4]
            self.refused(self.call("POST", route, body), {400: "InvalidError"}, f"restore {body}")
            r = self.call(
                "POST", route, {"commit": m.seq + 1 + c % 3, **({"path": "a.txt"} if c % 2 else {})}
            )
            self.refused(r, {404: "NotFoundError"}, "restore a commit to come")
            return
        then = m.snaps[seq]
        t = m.tree
        p: str | None = None
        if kind == 2:  # whole tree spelled as a path: "" or "/"
            p = ["", "/"][c % 2]
        elif kind == 3:  # a path that exists at neither
            p = self.pick([f for f in FILES if not then.exists(f) and not t.exists(f)], j)
            if p is None:
                return
            r = self.call("POST", route, {"commit": seq, "path": spelled(p, how)})
            self.refused(r, {404: "NotFoundError"}, f"restore {p} from {seq}: at neither")
            return
        elif kind >= 4:
            p = self.pick({*then.files, *then.dirs, *t.files, *t.dirs}, j)
            if p is None:
                return
        body: dict[str, Any] = {"commit": seq}
        if p is not None:
            body["path"] = spelled(p, how) if p else p
        r = self.call("POST", route, body)
        what = f"restore {p!r} from commit {seq}"
        got = self.expect(r, 200, what)
        norm = (p or "").strip("/")
        assert {k: got.get(k) for k in ("volume", "restored", "path")} == {
            "volume": name,
            "restored": seq,
            "path": norm,
        }, f"{what}: {got}"
        before = t.copy()
        if not norm:
            m.tree = then.copy()
        else:
            old = then.entries(norm)
            t.remove(norm)
            if old:
                if parent(norm):
                    t.mkdirs(parent(norm))  # (folders made anew, as a write makes them)
                t.put(old)
        self.committed(m, got["commit"], before, what, kind="restore")

    # -- refusals that change nothing ----------------------------------------------------------------
    @rule(kind=st.integers(0, 5), i=INDEX, j=INDEX, route=st.integers(0, 14))
    def refusals(self, kind: int, i: int, j: int, route: int) -> None:
        """Requests every route refuses, changing nothing (one rule for all of them)."""
        if kind <= 2:
            self.escaping_path(i, j, route % 12)
        elif kind <= 4:
            self.missing_or_bad_volume(i, route)
        else:
            self.not_allowed(i, j % 7)

    def escaping_path(self, i: int, j: int, route: int) -> None:
        """A path leaving the volume (or a NUL, an over-long name or path): 400 on every route."""
        name, m = self.vol(i)
        if name is None or m is None:
            return
        bad = BAD_PATHS[j % len(BAD_PATHS)]
        inside = self.pick(m.tree.files, j) or "a.txt"
        v = f"volumes/{name}"
        in_url = quote(bad, safe="/")
        if route == 0:
            r = self.call("GET", f"{v}/tree/{in_url}")
        elif route == 1:
            r = self.call("GET", f"{v}/files/{in_url}")
        elif route == 2:
            r = self.call("HEAD", f"{v}/files/{in_url}")
        elif route == 3:
            r = self.call("DELETE", f"{v}/files/{in_url}", params={"recursive": "true"})
        elif route == 4:
            r = self.call("GET", f"{v}/files/" + bad.replace(".", "%2E").replace("\x00", "%00"))
        elif route == 5:
            r = self.call("POST", f"{v}/uploads", {"path": bad, "size": 1})
        elif route == 6:
            r = self.call("POST", f"{v}/folders", {"path": bad})
        elif route == 7:
            r = self.call("POST", f"{v}/move", {"src": inside, "dst": bad})
        elif route == 8:
            r = self.call("POST", f"{v}/move", {"src": bad, "dst": "moved.txt"})
        elif route == 9:
            r = self.call("POST", f"{v}/remove", {"paths": [inside, bad]})
        elif route == 10:
            r = self.call("POST", f"{v}/restore", {"commit": 0, "path": bad})
        else:
            r = self.call("GET", f"{v}/nbdiff", params={"path": bad, "a": 0, "b": m.seq})
        self.refused(r, {400: "InvalidError"}, f"the path {bad[:40]!r}")

    def missing_or_bad_volume(self, i: int, route: int) -> None:
        """Every volume route: 404 for a volume that does not exist, 400 for a bad name."""
        bad = i % 4 == 0
        name = quote(BAD_VOLUME_NAMES[i % 3]) if bad else self.missing_volume()
        v = f"volumes/{name}"
        requests: list[tuple[str, str, Any, dict[str, Any] | None]] = [
            ("GET", f"{v}/tree", None, None),
            ("GET", f"{v}/tree/sub", None, None),
            ("GET", f"{v}/files/a.txt", None, None),
            ("DELETE", f"{v}/files/a.txt", None, None),
            ("POST", f"{v}/folders", {"path": "f"}, None),
            ("POST", f"{v}/move", {"src": "a.txt", "dst": "b.txt"}, None),
            ("POST", f"{v}/remove", {"paths": ["a.txt"]}, None),
            ("GET", f"{v}/history", None, None),
            ("GET", f"{v}/diff", None, {"a": 0}),
            ("GET", f"{v}/nbdiff", None, {"path": "nb.ipynb", "a": 0, "b": 0}),
            ("POST", f"{v}/restore", {"commit": 0}, None),
            ("POST", f"{v}/uploads", {"path": "u.txt", "size": 1}, None),
            ("GET", f"{v}/uploads/abc", None, None),
            ("PATCH", v, {"name": f"{self.pool[0]}-new"}, None),
            ("DELETE", v, None, None),
        ]
        method, route_, data, params = requests[route]
        r = self.call(method, route_, data, params=params)
        if bad:
            self.refused(r, {400: "InvalidError"}, f"volume name {BAD_VOLUME_NAMES[i % 3]!r}")
        else:
            self.refused(r, {404: "NotFoundError"}, f"missing volume {name}")

    def not_allowed(self, i: int, kind: int) -> None:
        """Wrong methods (405 with Allow), unknown routes (404), no token or a login cookie
        without the XSRF token (403)."""
        name = self.pick(self.vols, i) or self.missing_volume()
        v = f"volumes/{name}"
        if kind == 0:
            cases = [
                ("PUT", "volumes", {"GET", "POST"}),
                ("PUT", f"{v}/files/a.txt", {"GET", "HEAD", "DELETE"}),
                ("GET", f"{v}/move", {"POST"}),
                ("DELETE", f"{v}/history", {"GET"}),
                ("GET", f"{v}", {"PATCH", "DELETE"}),
                ("GET", f"{v}/uploads", {"POST"}),
            ]
            method, route, allow = cases[i % len(cases)]
            r = self.call(method, route, body=b"x" if method == "PUT" else None)
            self.refused(r, {405: "MethodNotAllowed"}, f"{method} {route}")
            assert r.j["error"] == "MethodNotAllowed", r.j  # type: ignore[attr-defined]
            # (every handler also answers OPTIONS, CORS's preflight)
            assert {x.strip() for x in r.headers["Allow"].split(",")} - {"OPTIONS"} == allow, (
                f"{method} {route}: Allow {r.headers['Allow']!r}, the route takes {allow}"
            )
        elif kind == 1:
            r = self.call("GET", ["nothing", f"{v}/nothing", f"{v}/tree-x"][i % 3])
            self.refused(r, {404: "NotFound"}, "an unknown route")
        elif kind == 2:  # a browser's login cookie without the XSRF token
            cookie = self.login_cookie()
            r = self.call(
                "POST", f"{v}/folders", {"path": "forged"}, headers={"Cookie": cookie}, auth=False
            )
            self.refused(
                r, {403: "Forbidden"}, "a cookie-authenticated write without the XSRF token"
            )
            r = self.call("GET", "volumes", headers={"Cookie": cookie}, auth=False)
            self.expect(r, 200, "a cookie-authenticated read")
        else:
            cases2 = [
                ("POST", f"{v}/folders", {"path": "sneaky"}),
                ("POST", "volumes", {"name": self.missing_volume()}),
                ("DELETE", v, None),
                ("POST", f"{v}/restore", {"commit": 0}),
                ("GET", f"{v}/tree", None),
            ]
            method, route, data = cases2[i % len(cases2)]
            r = self.call(method, route, data, auth=False)
            self.refused(r, {403: "Forbidden"}, f"{method} {route} without the token")

    def login_cookie(self) -> str:
        r = self.call("GET", "version")  # token-authenticated: the server sets the cookie
        cookie = "; ".join(c.split(";")[0] for c in r.headers.get_all("Set-Cookie", []))
        assert "username-" in cookie, f"no login cookie in {r.headers}"
        return cookie

    # -- invariants --------------------------------------------------------------------------------
    @invariant()
    def volumes_are_the_model(self) -> None:
        r = self.call("GET", "volumes")
        got = self.expect(r, 200, "list volumes")["volumes"]
        names = [v["name"] for v in got]
        assert names == sorted(self.vols), (
            f"GET volumes lists {names}, the model has {sorted(self.vols)}"
        )
        for v in got:
            self.check_volume_object(v, v["name"], self.vols[v["name"]].id, "GET volumes")
        listed = sorted(v.name for v in Volume.objects.list(store=self.store_url))
        assert listed == sorted(self.vols), f"the Python API lists {listed}"

    @invariant()
    def python_api_sees_the_model(self) -> None:
        """The Python API on the same store: every volume's head and tree; the bytes of
        the last volume a rule touched."""
        for name, m in self.vols.items():
            v = Volume.from_name(name, store=self.store_url)
            assert v.seq == m.seq, (
                f"the Python API sees commit {v.seq} of {name}, the model {m.seq}"
            )
            got = {e.path: (e.type.name, e.size) for e in v.listdir("/", recursive=True)}
            t = m.tree
            want = {
                **{p: ("FILE", len(d)) for p, (d, _v) in t.files.items()},
                **{p: ("DIRECTORY", t.size(p)) for p in t.dirs},
            }
            assert got == want, (
                f"the Python API sees {name} as: only there {sorted(set(got.items()) - set(want.items()))}, "
                f"only in the model {sorted(set(want.items()) - set(got.items()))}"
            )
            if name == self.touched:
                for p, (d, _v) in t.files.items():
                    assert b"".join(v.read_file(p)) == d, (
                        f"the Python API reads other bytes in {name}/{p}"
                    )


# -- the test -------------------------------------------------------------------------------------


@pytest.fixture
def served(
    store_url_env: tuple[str, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Api, str]]:
    """A Jupyter server of this test's own on a fresh store (local, or S3 in SeaweedFS),
    stopped at the end whatever happens; the store's credentials are set here too, for
    the Python API."""
    store_url, extra = store_url_env
    for k, v in extra.items():
        monkeypatch.setenv(k, v)
    base = tmp_path / "server"
    (base / "tmp").mkdir(parents=True)
    env = {
        **extra,
        "JUPYTER_VOLUME_STORE": store_url,
        **private_folders(base),
        "JUPYTER_CONFIG_PATH": str(REPO / "jupyter-config"),
        "TMPDIR": str(base / "tmp"),
    }
    with JupyterLab(app="server", env=env) as lab:
        try:
            yield Api(lab), store_url
        except BaseException:
            print(lab.log_tail(100))
            raise


#: examples and steps per store: 30-40 s on two cores for the local one. The machine runs
#: on S3 (SeaweedFS) as well, at about 80 ms a step: add "s3" to the parameters below
#: (4 examples of 30 steps take about 20 s more, its start included).
RUNS = {"local": (45, 60), "s3": (4, 30)}


@pytest.mark.parametrize("store_url_env", ["local"], indirect=True)
def test_rest_api_model(served: tuple[Api, str]) -> None:
    RestModel.api, RestModel.store_url = served
    kind = "s3" if served[1].startswith("s3://") else "local"
    examples, steps = RUNS[kind]
    run_state_machine_as_test(RestModel, settings=model_settings(examples, steps))
