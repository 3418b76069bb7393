"""Tree nodes: one per directory, content-addressed and immutable, like git's trees.

A node is canonical JSON, zstd-compressed on the store, named by the blake3 hash of the
JSON. Two forms::

    {"v": 1, "e": [entry, ...]}                       a flat directory, entries sorted
    {"v": 1, "s": [[first_name, hash, n_entries, n_files, bytes], ...]}   a split directory

An entry is ``[name, kind, mode, size, mtime_ns, payload, extra]``:

* file ``"f"``: payload is base64 of the bytes (files up to 512 B live inline) or a
  list of ``[chunk_hash, raw_len]``; extra is 0.
* directory ``"d"``: payload is the subtree hash; extra the number of files below;
  size the bytes below.
* symlink ``"l"``: payload is the link target (never followed).

A directory with more than ``SPLIT_AT`` entries is split into leaves whose boundaries
are chosen by a hash of the names (a leaf ends after a name whose hash is 0 modulo
``LEAF_AVG``), so a change touches one leaf and the boundaries of a directory depend
only on its names. Changing one file in a 1,000,000-file volume rewrites only the
nodes on that file's path: one leaf and one top node per split directory.
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from json.encoder import encode_basestring as _json_str
from typing import NoReturn

from blake3 import blake3

from .._pools import SharedPool
from ..errors import CorruptionError, InvalidError
from .codec import compress_blob, decompress_blob, dump_json, hash_bytes, is_chunk_hash, load_json

SPLIT_AT = 4096
NODE_CACHE_NODES = 200_000  # parsed nodes kept in memory, at most ...
NODE_CACHE_ENTRIES = 200_000  # ... and at most this many entries in them in all
ON_STORE_KEPT = 100_000  # node hashes remembered as on the store (about 14 MB)
READ_AHEAD_NODES = 32  # nodes a walk reads ahead, in parallel

_node_pool = SharedPool(8, "jv-nodes")
LEAF_AVG = 1024
FILE, DIR, LINK = "f", "d", "l"


@dataclass(slots=True)
class Entry:
    """One name in a directory."""

    name: str
    kind: str
    mode: int = 0o644
    size: int = 0
    mtime_ns: int = 0
    inline: bytes | None = None
    chunks: list[tuple[str, int]] | None = None
    tree: str | None = None
    nfiles: int = 0
    target: str | None = None

    def encode(self) -> list:
        if self.kind == FILE:
            if self.inline is not None:
                payload: object = base64.b64encode(self.inline).decode()
            else:
                payload = [[h, n] for h, n in (self.chunks or [])]
            return [self.name, FILE, self.mode, self.size, self.mtime_ns, payload, 0]
        if self.kind == DIR:
            return [self.name, DIR, self.mode, self.size, self.mtime_ns, self.tree, self.nfiles]
        return [self.name, LINK, self.mode, self.size, self.mtime_ns, self.target, 0]

    @staticmethod
    def decode(raw: list, where: str) -> Entry:
        try:
            name, kind, mode, size, mtime_ns, payload, extra = raw
            if kind == FILE:
                if isinstance(payload, str):
                    return Entry(name, FILE, mode, size, mtime_ns, inline=base64.b64decode(payload))
                # names reach cache paths and the index: only hex digests (never ``../x``),
                # lengths > 0
                if len(payload) == 1:  # (most files: one chunk)
                    ((h, n),) = payload
                    if type(n) is not int or n <= 0 or not is_chunk_hash(h):
                        raise ValueError(h)
                    return Entry(name, FILE, mode, size, mtime_ns, None, [(h, n)])
                chunks = [(h, n) for h, n in payload]
                for h, n in chunks:
                    if type(n) is not int or n <= 0 or not is_chunk_hash(h):
                        raise ValueError(h)
                return Entry(name, FILE, mode, size, mtime_ns, chunks=chunks)
            if kind == DIR:
                return Entry(name, DIR, mode, size, mtime_ns, tree=payload, nfiles=extra)
            if kind == LINK:
                return Entry(name, LINK, mode, size, mtime_ns, target=payload)
        except (ValueError, TypeError):
            pass
        raise CorruptionError(f"tree node {where} has a malformed entry", key=where)

    def same_content(self, other: Entry | None) -> bool:
        """True if ``other`` has the same kind, bytes/target/subtree and mode."""
        if other is None or other.kind != self.kind or other.mode != self.mode:
            return False
        if self.kind == FILE:
            return self.inline == other.inline and self.chunks == other.chunks
        if self.kind == DIR:
            return self.tree == other.tree
        return self.target == other.target

    @property
    def is_dir(self) -> bool:
        return self.kind == DIR


def entry_json(e: Entry) -> str:
    """One entry as :func:`dump_json` writes it inside a node (the same characters)."""
    if e.kind == FILE:
        if e.inline is not None:
            payload = '"' + base64.b64encode(e.inline).decode() + '"'
        elif e.chunks and len(e.chunks) == 1:  # (most files: one chunk)
            payload = f"[[{_json_str(e.chunks[0][0])},{e.chunks[0][1]}]]"
        else:
            payload = "[" + ",".join([f"[{_json_str(h)},{n}]" for h, n in e.chunks or ()]) + "]"
        return f'[{_json_str(e.name)},"f",{e.mode},{e.size},{e.mtime_ns},{payload},0]'
    if e.kind == DIR:
        tree = "null" if e.tree is None else _json_str(e.tree)
        return f'[{_json_str(e.name)},"d",{e.mode},{e.size},{e.mtime_ns},{tree},{e.nfiles}]'
    target = "null" if e.target is None else _json_str(e.target)
    return f'[{_json_str(e.name)},"l",{e.mode},{e.size},{e.mtime_ns},{target},0]'


def encode_flat(entries: Iterable[Entry]) -> bytes:
    """``dump_json({"v": 1, "e": [e.encode() for e in entries]})``, the same bytes, written
    directly (a big initial commit encodes every entry once, in nodes of up to 4,096)."""
    return ('{"e":[' + ",".join(map(entry_json, entries)) + '],"v":1}').encode()


EMPTY_NODE = dump_json({"v": 1, "e": []})
EMPTY_TREE = hash_bytes(EMPTY_NODE)


def _is_boundary(name: str) -> bool:
    return int.from_bytes(blake3(name.encode()).digest()[:4], "little") % LEAF_AVG == 0


@dataclass
class ApplyStats:
    """What applying a change set did to the tree."""

    added: int = 0
    modified: int = 0
    deleted: int = 0
    changed_paths: list[str] = field(default_factory=list)


class _Ops:
    """The changes under one name: an op on the name itself, and changes below it."""

    __slots__ = ("children", "op")

    def __init__(self) -> None:
        self.op: Entry | str | None = None  # Entry to set, "del", or "dir" (ensure a folder)
        self.children: dict[str, _Ops] | None = None


def build_ops(changes: dict[str, Entry | str | None]) -> dict[str, _Ops]:
    """Nest a flat change set ``{"a/b/c": Entry | None | "dir"}`` by path component."""
    root: dict[str, _Ops] = {}
    for path, change in changes.items():
        parts = path.split("/")
        level = root
        for part in parts[:-1]:
            ops = level.setdefault(part, _Ops())
            if ops.children is None:
                ops.children = {}
            level = ops.children
        ops = level.setdefault(parts[-1], _Ops())
        # ("dir" stays as it is: a folder the head has already is left as it is, with
        # its time, so putting an empty folder again is no change)
        ops.op = "del" if change is None else change
    return root


def node_json(h: str, stored: bytes) -> bytes:
    """The canonical JSON of node ``h`` from its stored (compressed) bytes, checked.

    Raises CorruptionError when the bytes do not decompress or do not hash to ``h``; the
    repository calls this before anything it fetched reaches a cache.
    """
    raw = decompress_blob(stored, f"trees/{h}")
    if hash_bytes(raw) != h:
        raise CorruptionError(f"tree node trees/{h} is corrupt (hash mismatch)", key=f"trees/{h}")
    return raw


class Trees:
    """Reads and writes tree nodes of one volume.

    ``fetch(hash)`` returns a node's canonical JSON, already checked against its hash
    (the repository supplies it, with its caches and retries: see :func:`node_json`);
    written nodes collect in ``pending`` until the caller uploads them.

    ``pending`` and ``uploading`` are the calling thread's own: threads share one
    ``Trees`` per volume (a mount's streamed commit builds its tree outside the commit
    lock while a cell commits), and each commit must send, and wait for, exactly the
    nodes it wrote. Shared, one commit's upload took (or a commit that changed nothing
    threw away) nodes another had yet to send, which then published a tree whose
    folders were not on the store.
    """

    def __init__(self, fetch: Callable[[str], bytes]) -> None:
        self._fetch = fetch
        self._nodes: dict[str, dict] = {EMPTY_TREE: {"v": 1, "e": []}}
        #: the sorted names (or, for a split node, the leaves' first names) of a cached
        #: node, made by the first lookup in it: building them on every lookup made
        #: 10,000 lookups in a folder of 1,000 files cost 10,000,000 list steps
        self._keys: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._cached_entries = 0
        #: nodes known to exist on the store (read from it, or uploaded by the repository)
        self.on_store: set[str] = {EMPTY_TREE}
        self._tracked = threading.local()  # the nodes a commit on this thread wrote
        self._unsent = threading.local()  # this thread's pending and uploading nodes

    @property
    def pending(self) -> dict[str, bytes]:
        """Nodes this thread wrote that are not on the store, to upload (hash -> blob)."""
        try:
            return self._unsent.pending  # type: ignore[no-any-return]
        except AttributeError:
            self._unsent.pending = {}
            return self._unsent.pending  # type: ignore[no-any-return]

    @property
    def uploading(self) -> dict[str, bytes]:
        """Nodes taken out of this thread's ``pending`` whose upload has not finished yet
        (still readable here: the store may not have them yet)."""
        try:
            return self._unsent.uploading  # type: ignore[no-any-return]
        except AttributeError:
            return {}

    @uploading.setter
    def uploading(self, nodes: dict[str, bytes]) -> None:
        self._unsent.uploading = nodes

    # -- reading -------------------------------------------------------------------
    def node(self, h: str) -> dict:
        """The parsed node ``h`` (cached in memory; nodes are immutable)."""
        n = self._nodes.get(h)
        if n is None:
            data = self.pending.get(h)
            if data is None:
                data = self.uploading.get(h)
            if data is not None:
                raw = node_json(h, data)
            else:
                raw = self._fetch(h)
                self.mark_on_store((h,))
            n = load_json(raw, f"trees/{h}")
            self._remember(h, n)
        return n

    def mark_on_store(self, hashes: Iterable[str]) -> None:
        """Remember nodes as on the store (read from it, or uploaded), so that writing
        one again skips its upload. Past ``ON_STORE_KEPT`` the set starts afresh: a
        process committing for days added a few hashes every commit for good, and
        uploading a node again is only a redundant PUT of the same bytes."""
        if len(self.on_store) > ON_STORE_KEPT:
            self.on_store = {EMPTY_TREE}
        self.on_store.update(hashes)

    def _remember(self, h: str, n: dict) -> None:
        # Bounded by entries, not nodes: a walk of a 1,000,000-file volume must not keep
        # every folder's parsed node (immutable, so re-reading one is always correct).
        if len(self._nodes) > NODE_CACHE_NODES or self._cached_entries > NODE_CACHE_ENTRIES:
            with self._lock:
                self._nodes.clear()
                self._nodes[EMPTY_TREE] = {"v": 1, "e": []}
                self._keys.clear()
                self._cached_entries = 0
        self._nodes[h] = n
        self._cached_entries += len(n.get("e") or n.get("s") or ())

    def read_ahead(self, hashes: list[str]) -> None:
        """Read the nodes ``hashes`` not in memory yet, in parallel. A walk of a tree on
        a store far away otherwise waits one round trip per folder (1,000 folders at
        30 ms: 30 s before a mount downloads anything). Errors are left for the reads
        that need the node to report."""
        todo = [
            h
            for h in dict.fromkeys(hashes)
            if h not in self._nodes and h not in self.pending and h not in self.uploading
        ]
        if len(todo) > 1:
            for _ in _node_pool.map(self._try_node, todo):
                pass

    def _try_node(self, h: str) -> None:
        with contextlib.suppress(Exception):
            self.node(h)

    def entries(self, h: str) -> list[Entry]:
        """Every entry of directory ``h``, sorted by name (split leaves are concatenated)."""
        node = self.node(h)
        if "s" in node:
            out: list[Entry] = []
            leaves = [leaf for _first, leaf, *_ in node["s"]]
            for i, leaf in enumerate(leaves):
                if i % READ_AHEAD_NODES == 0:
                    self.read_ahead(leaves[i : i + READ_AHEAD_NODES])
                out.extend(self.entries(leaf))
            return out
        return [Entry.decode(e, h) for e in node["e"]]

    def child_hashes(self, h: str) -> list[str]:
        """Leaf hashes of a split node (empty for a flat node): objects it references."""
        node = self.node(h)
        return [leaf for _f, leaf, *_ in node.get("s", [])]

    def get(self, h: str, name: str) -> Entry | None:
        """The entry ``name`` of directory ``h``, loading only the leaf that holds it."""
        node = self.node(h)
        keys = self._keys.get(h)
        if keys is None:
            keys = [s[0] for s in node["s"]] if "s" in node else [e[0] for e in node["e"]]
            if h in self._nodes:  # kept only beside the node it was made from
                self._keys[h] = keys
        if "s" in node:
            i = max(bisect.bisect_right(keys, name) - 1, 0)
            return self.get(node["s"][i][1], name)
        entries = node["e"]
        names = keys
        i = bisect.bisect_left(names, name)
        if i < len(names) and names[i] == name:
            return Entry.decode(entries[i], h)
        return None

    def lookup(self, root: str, path: str) -> Entry | None:
        """The entry at ``path`` ("" is the root, returned as a directory entry)."""
        if not path:
            return Entry("", DIR, 0o755, tree=root)
        cur = root
        parts = path.split("/")
        for i, part in enumerate(parts):
            e = self.get(cur, part)
            if e is None:
                return None
            if i == len(parts) - 1:
                return e
            if e.kind != DIR:
                return None
            cur = e.tree  # type: ignore[assignment]
        return None

    def walk(self, h: str, prefix: str = "") -> Iterator[tuple[str, Entry]]:
        """Yield ``(path, entry)`` for everything below directory ``h``, depth first
        (the next ``READ_AHEAD_NODES`` subfolders read ahead in parallel)."""
        entries = self.entries(h)
        subtrees = [e.tree for e in entries if e.kind == DIR]
        n = 0
        for e in entries:
            path = f"{prefix}{e.name}"
            yield path, e
            if e.kind == DIR:
                if n % READ_AHEAD_NODES == 0:
                    self.read_ahead(subtrees[n : n + READ_AHEAD_NODES])  # type: ignore[arg-type]
                n += 1
                yield from self.walk(e.tree, path + "/")  # type: ignore[arg-type]

    def diff(
        self, a: str, b: str, prefix: str = ""
    ) -> Iterator[tuple[str, Entry | None, Entry | None]]:
        """Yield ``(path, old, new)`` for every file, link or folder that differs.

        Equal subtrees (and equal leaves of split folders) are skipped without reading.
        A folder that appears or disappears is reported itself and then its contents.
        """
        if a == b:
            return
        ea, eb = self._differing_entries(a, b)
        ia = {e.name: e for e in ea}
        ib = {e.name: e for e in eb}
        names = sorted(ia.keys() | ib.keys())
        # the subfolders this diff goes into, in order: (where, their nodes), read ahead
        visits: list[tuple[int, list[str]]] = []
        for i, n in enumerate(names):
            hs = [e.tree for e in (ia.get(n), ib.get(n)) if e is not None and e.kind == DIR]
            if hs and not (len(hs) == 2 and hs[0] == hs[1]):
                visits.append((i, hs))  # type: ignore[arg-type]
        v = 0
        for i, name in enumerate(names):
            if v < len(visits) and visits[v][0] == i:
                if v % READ_AHEAD_NODES == 0:
                    self.read_ahead([h for _, hs in visits[v : v + READ_AHEAD_NODES] for h in hs])
                v += 1
            old, new = ia.get(name), ib.get(name)
            path = prefix + name
            if old is not None and new is not None and old.kind == DIR and new.kind == DIR:
                yield from self.diff(old.tree, new.tree, path + "/")  # type: ignore[arg-type]
                continue
            if old is not None and new is not None and old.same_content(new):
                continue
            if old is not None and new is not None and old.kind != DIR and new.kind != DIR:
                yield path, old, new
                continue
            yield path, old, new
            if old is not None and old.kind == DIR:
                for p, e in self.walk(old.tree, path + "/"):  # type: ignore[arg-type]
                    yield p, e, None
            if new is not None and new.kind == DIR:
                for p, e in self.walk(new.tree, path + "/"):  # type: ignore[arg-type]
                    yield p, None, e

    def _differing_entries(self, a: str, b: str) -> tuple[list[Entry], list[Entry]]:
        la, lb = self.child_hashes(a), self.child_hashes(b)
        if la and lb:
            common = set(la) & set(lb)
            ea = [e for leaf in la if leaf not in common for e in self.entries(leaf)]
            eb = [e for leaf in lb if leaf not in common for e in self.entries(leaf)]
            return ea, eb
        return self.entries(a), self.entries(b)

    # -- writing -------------------------------------------------------------------
    def track(self) -> set[str]:
        """Start collecting, on this thread, the hash of every node written (uploaded or
        found on the store already) until :meth:`untrack`; returns the set that fills."""
        written: set[str] = set()
        self._tracked.nodes = written
        return written

    def untrack(self) -> None:
        self._tracked.nodes = None

    def _note(self, h: str) -> None:
        written = getattr(self._tracked, "nodes", None)
        if written is not None:
            written.add(h)

    def _write_node(self, node: dict) -> str:
        raw = dump_json(node)
        h = hash_bytes(raw)
        self._note(h)
        if h not in self._nodes:
            self._remember(h, node)
        if h not in self.on_store and h not in self.pending:
            self.pending[h] = compress_blob(raw)
        return h

    def rewrite_avoiding(self, root: str, avoid: frozenset[str], written: set[str]) -> str:
        """The tree ``root`` again, with no node named in ``avoid``: each such node, and
        every node above it, is written anew, one whose content repeats a name in
        ``avoid`` with a random ``"n"`` field (readers ignore it) so that its name is new.

        gc deletes the nodes it found unreachable (``avoid``) one run later by name, and
        a name cannot be saved from that by uploading the same bytes again. Only nodes
        in ``avoid`` or ``written`` (this commit's own) are read: any other node comes
        from a published commit gc marked, and so has no such node below it."""
        out: dict[str, str] = {}
        stack: list[tuple[str, bool]] = [(root, False)]
        while stack:
            h, ready = stack.pop()
            if h in out:
                continue
            if h not in avoid and h not in written:
                out[h] = h
                continue
            node = self.node(h)
            if "s" in node:
                kids = [row[1] for row in node["s"]]
            else:
                kids = [e[5] for e in node["e"] if e[1] == DIR and e[5] is not None]
            if not ready:
                stack.append((h, True))
                stack.extend((k, False) for k in kids if k not in out)
                continue
            new = {k: v for k, v in node.items() if k != "n"}
            if "s" in node:
                new["s"] = [[row[0], out[row[1]], *row[2:]] for row in node["s"]]
            else:
                new["e"] = [
                    [*e[:5], out[e[5]], *e[6:]] if e[1] == DIR and e[5] is not None else e
                    for e in node["e"]
                ]
            if hash_bytes(dump_json(new)) in avoid:
                new["n"] = os.urandom(8).hex()
            out[h] = self._write_node(new)
        for h in avoid.intersection(self.pending):
            del self.pending[h]  # replaced: uploading it would only add garbage
        return out[root]

    def write_dir(self, entries: list[Entry]) -> str:
        """Write a directory holding ``entries`` (sorted by name); return its hash."""
        if len(entries) <= SPLIT_AT:
            return self._write_node({"v": 1, "e": [e.encode() for e in entries]})
        runs, tail = self._runs(entries)
        if tail:
            runs.append(tail)
        return self._write_node({"v": 1, "s": [self._leaf(r) for r in runs]})

    def _leaf(self, entries: list[Entry]) -> list:
        h = self._write_node({"v": 1, "e": [e.encode() for e in entries]})
        nfiles = sum(e.nfiles if e.kind == DIR else 1 for e in entries)
        return [entries[0].name, h, len(entries), nfiles, sum(e.size for e in entries)]

    @staticmethod
    def _runs(entries: list[Entry]) -> tuple[list[list[Entry]], list[Entry]]:
        runs: list[list[Entry]] = []
        cur: list[Entry] = []
        for e in entries:
            cur.append(e)
            if _is_boundary(e.name):
                runs.append(cur)
                cur = []
        return runs, cur

    def apply(self, root: str, changes: dict[str, Entry | str | None]) -> tuple[str, ApplyStats]:
        """Apply a change set onto tree ``root``; return the new root and what changed.

        ``changes`` maps a path to an :class:`Entry` (set this file/link; a DIR entry means
        "make sure this folder exists"), or None (delete it; a folder is deleted only
        when nothing else remains in it, so files others added there survive). Paths
        that are not in ``changes`` keep whatever ``root`` has: this is the merge rule.
        """
        stats = ApplyStats()
        new_root, _, _ = self._apply_dir(root, build_ops(changes), "", stats)
        return new_root, stats

    def _apply_dir(
        self, h: str, ops: dict[str, _Ops], prefix: str, stats: ApplyStats
    ) -> tuple[str, int, int]:
        node = self.node(h)
        if "s" not in node:
            entries = {e.name: e for e in self.entries(h)}
            self._apply_entries(entries, ops, prefix, stats)
            new = [entries[k] for k in sorted(entries)]
            return self.write_dir(new), sum(_nfiles(e) for e in new), sum(e.size for e in new)
        leaves = node["s"]
        firsts = [s[0] for s in leaves]
        by_leaf: dict[int, dict[str, _Ops]] = {}
        for name, op in ops.items():
            i = max(bisect.bisect_right(firsts, name) - 1, 0)
            by_leaf.setdefault(i, {})[name] = op
        new_leaves: list[list] = []
        carry: list[Entry] = []
        for i, leaf in enumerate(leaves):
            if i not in by_leaf and not carry:
                new_leaves.append(leaf)
                continue
            entries = {e.name: e for e in self.entries(leaf[1])}
            if i in by_leaf:
                self._apply_entries(entries, by_leaf[i], prefix, stats)
            merged = carry + [entries[k] for k in sorted(entries)]
            runs, carry = self._runs(merged)
            new_leaves.extend(self._leaf(r) for r in runs)
        if carry:
            new_leaves.append(self._leaf(carry))
        total = sum(s[2] for s in new_leaves)
        nfiles = sum(s[3] for s in new_leaves)
        size = sum(s[4] for s in new_leaves)
        if total <= SPLIT_AT // 2:
            flat = [e for s in new_leaves for e in self.entries(s[1])]
            return self.write_dir(flat), nfiles, size
        return self._write_node({"v": 1, "s": new_leaves}), nfiles, size

    def _count_diff(self, a: str, b: str, stats: ApplyStats) -> None:
        """Add to ``stats`` the files (and links) added, modified and deleted from folder
        node ``a`` to ``b`` (equal subtrees are skipped unread)."""
        for _path, old, new in self.diff(a, b):
            old_file = old is not None and old.kind != DIR
            new_file = new is not None and new.kind != DIR
            if old_file and new_file:
                stats.modified += 1
            elif old_file:
                stats.deleted += 1
            elif new_file:
                stats.added += 1

    def _apply_entries(
        self, entries: dict[str, Entry], ops: dict[str, _Ops], prefix: str, stats: ApplyStats
    ) -> None:
        for name, o in ops.items():
            path = prefix + name
            cur = entries.get(name)
            op = o.op
            if isinstance(op, Entry) and (op.kind != DIR or op.tree is not None):
                # Set a file, a link, or a whole folder (a copy or a restore of a subtree).
                new = op if op.name == name else _renamed(op, name)
                if cur is not None and cur.same_content(new) and cur.mtime_ns == new.mtime_ns:
                    continue
                if new.kind == DIR and cur is not None and cur.kind == DIR:
                    # a folder put in place of a folder (a restore): count the files
                    # that differ, not the difference of the two folders' totals
                    self._count_diff(cur.tree, new.tree, stats)  # type: ignore[arg-type]
                elif new.kind == DIR:
                    stats.added += new.nfiles
                    stats.deleted += int(cur is not None)
                elif cur is None:
                    stats.added += 1
                elif cur.kind == DIR:
                    stats.deleted += cur.nfiles
                    stats.added += 1
                elif not cur.same_content(new):
                    stats.modified += 1
                entries[name] = new
                stats.changed_paths.append(path)
                continue
            if op == "del" and cur is not None and cur.kind != DIR and not o.children:
                del entries[name]
                stats.deleted += 1
                stats.changed_paths.append(path)
                continue
            # Below here the name is (or may become) a folder.
            if o.children is None and op in ("del", None):
                if (
                    op == "del"
                    and cur is not None
                    and cur.kind == DIR
                    and cur.nfiles == 0
                    and cur.tree
                    and not self.entries(cur.tree)
                ):
                    del entries[name]
                    stats.changed_paths.append(path)
                continue
            if (cur is None or cur.kind != DIR) and op in ("del", None) and _only_deletes(o):
                # Deleting a folder the head no longer has, or only paths below one: there
                # is nothing left to delete. A folder made here would bring back, empty, a
                # folder another writer deleted, or replace the file it put there instead.
                continue
            if cur is not None and cur.kind != DIR:
                # Our change needs a folder where the head has a file or link: ours wins.
                stats.deleted += 1
                cur = None
            base = cur.tree if cur is not None else EMPTY_TREE
            mode = cur.mode if cur is not None else (op.mode if isinstance(op, Entry) else 0o755)
            mtime = (
                cur.mtime_ns
                if cur is not None
                else (op.mtime_ns if isinstance(op, Entry) else time.time_ns())
            )
            if isinstance(op, Entry):
                mode, mtime = op.mode, op.mtime_ns or mtime
            sub_h, nfiles, size = self._apply_dir(base, o.children or {}, path + "/", stats)  # type: ignore[arg-type]
            if op == "del" and sub_h == EMPTY_TREE:
                if cur is not None:
                    del entries[name]
                    stats.changed_paths.append(path)
                continue
            new_dir = Entry(name, DIR, mode, size, mtime, tree=sub_h, nfiles=nfiles)
            if (
                cur is None
                or cur.tree != sub_h
                or (isinstance(op, Entry) and (cur.mode, cur.mtime_ns) != (mode, mtime))
            ):
                entries[name] = new_dir
                if cur is None:
                    stats.changed_paths.append(path)


def _renamed(e: Entry, name: str) -> Entry:
    """``e`` under another name (a direct copy: ``dataclasses.replace`` costs 4x more,
    which shows in a 10,000-file commit)."""
    return Entry(
        name, e.kind, e.mode, e.size, e.mtime_ns, e.inline, e.chunks, e.tree, e.nfiles, e.target
    )


def _nfiles(e: Entry) -> int:
    return e.nfiles if e.kind == DIR else 1


def _only_deletes(o: _Ops) -> bool:
    if o.op not in (None, "del"):
        return False
    return all(_only_deletes(c) for c in (o.children or {}).values())


def tree_order_key(path: str) -> tuple[str, ...]:
    """Sort key that puts paths in the order of a depth-first walk of a tree (names
    sorted within each folder), the order :class:`TreeBuilder` needs."""
    return tuple(path.split("/"))


class _OpenDir:
    """A folder being built: its entries so far, or (once past SPLIT_AT) the rows of
    its finished leaves plus the current run."""

    __slots__ = ("count", "entries", "files", "mode", "mtime_ns", "name", "rows", "size")

    def __init__(self, name: str, mode: int, mtime_ns: int) -> None:
        self.name, self.mode, self.mtime_ns = name, mode, mtime_ns
        self.entries: list[Entry] = []  # all entries (flat), or the current run (split)
        self.rows: list[list] | None = None  # leaf rows once split
        self.count = self.files = self.size = 0


class TreeBuilder:
    """Builds a tree from ``(path, entry)`` pairs streamed in tree order, bottom up.

    Only the folders on the current path are open, and a folder with more than
    ``SPLIT_AT`` entries keeps just the rows of its finished leaves, so memory is
    bounded by the depth and the widest folder's leaf rows, not by the number of
    files. Finished nodes go to ``trees.pending`` (and are not cached in memory);
    ``flush(trees)`` is called whenever pending nodes pass ``flush_bytes`` so the caller
    can upload them. The result is the same tree (same hashes) as
    ``Trees.apply(EMPTY_TREE, changes)`` with the same entries.
    """

    def __init__(
        self,
        trees: Trees,
        flush: Callable[[], None] | None = None,
        flush_bytes: int = 1 << 20,
    ) -> None:
        self.trees = trees
        self._flush = flush
        self._flush_bytes = flush_bytes
        self._pending_bytes = 0
        self._stack: list[_OpenDir] = [_OpenDir("", 0o755, time.time_ns())]
        self._path: list[str] = []  # names of the open folders below the root
        self._prefix = ""  # the open folders as a path prefix ("a/b/"; "" at the root)
        self._last: str | None = None  # the path added last
        # the name of the entry put last into the innermost open folder (None: nothing
        # since that folder was opened)
        self._top_last: str | None = None
        self.files = 0

    def add(self, path: str, entry: Entry) -> None:
        """Add a file, link or folder (a DIR entry without a tree: an empty folder, or
        the mode and mtime of a folder that also gets contents)."""
        prefix = self._prefix
        if path.startswith(prefix):
            # Nearly every path: one more name in the innermost open folder (a 10,000-file
            # commit comes here 10,000 times), whose order needs only that name compared
            # with the one before it there.
            name = path[len(prefix) :]
            if name and "/" not in name and (entry.kind != DIR or entry.tree is not None):
                top_last = self._top_last
                if top_last is not None and name <= top_last:
                    self._out_of_order(path)
                self._last = path
                self._top_last = name
                # an entry already under its name goes in as it is: kept, not copied, so
                # the caller must not change it afterwards (none does)
                self._put(self._stack[-1], entry if entry.name == name else _renamed(entry, name))
                self.files += 1 if entry.kind != DIR else entry.nfiles
                return
        parts = path.split("/")
        if self._last is not None and tuple(parts) <= tuple(self._last.split("/")):
            self._out_of_order(path)
        self._last = path
        # Close folders that are not on this path, then open the missing ones.
        common = 0
        while (
            common < len(self._path)
            and common < len(parts) - 1
            and self._path[common] == parts[common]
        ):
            common += 1
        while len(self._path) > common:
            self._close_top()
        now = time.time_ns()
        for name in parts[len(self._path) : -1]:
            self._stack.append(_OpenDir(name, 0o755, now))
            self._path.append(name)
        name = parts[-1]
        if entry.kind == DIR and entry.tree is None:
            # Opened now; its entries follow (or none: an empty folder).
            self._stack.append(_OpenDir(name, entry.mode, entry.mtime_ns or now))
            self._path.append(name)
            self._prefix, self._top_last = path + "/", None
            return
        self._prefix = "/".join(parts[:-1]) + "/" if len(parts) > 1 else ""
        self._top_last = name
        self._put(self._stack[-1], entry if entry.name == name else _renamed(entry, name))
        self.files += 1 if entry.kind != DIR else entry.nfiles

    def _out_of_order(self, path: str) -> NoReturn:
        raise InvalidError(f"paths must come in tree order: {path!r} after {self._last!r}")

    def finish(self) -> str:
        """Close every open folder and return the root's hash."""
        while self._path:
            self._close_top()
        root = self._stack[0]
        h, _n, _s = self._write(root)
        return h

    # -- internals ----------------------------------------------------------------
    def _close_top(self) -> None:
        d = self._stack.pop()
        self._path.pop()
        h, nfiles, size = self._write(d)
        self._put(
            self._stack[-1], Entry(d.name, DIR, d.mode, size, d.mtime_ns, tree=h, nfiles=nfiles)
        )

    def _put(self, d: _OpenDir, e: Entry) -> None:
        d.entries.append(e)
        d.count += 1
        d.files += e.nfiles if e.kind == DIR else 1
        d.size += e.size
        if d.rows is None and d.count > SPLIT_AT:
            # Too big for one node: cut the leaves finished so far.
            d.rows = []
            runs, tail = Trees._runs(d.entries)
            d.rows.extend(self._leaf(r) for r in runs)
            d.entries = tail
        elif d.rows is not None and _is_boundary(e.name):
            d.rows.append(self._leaf(d.entries))
            d.entries = []

    def _leaf(self, entries: list[Entry]) -> list:
        h = self._node(encode_flat(entries))
        nfiles = sum(e.nfiles if e.kind == DIR else 1 for e in entries)
        return [entries[0].name, h, len(entries), nfiles, sum(e.size for e in entries)]

    def _write(self, d: _OpenDir) -> tuple[str, int, int]:
        if d.rows is None:
            h = self._node(encode_flat(d.entries))
        else:
            rows = d.rows + ([self._leaf(d.entries)] if d.entries else [])
            h = self._node(dump_json({"v": 1, "s": rows}))
        return h, d.files, d.size

    def _node(self, raw: bytes) -> str:
        h = hash_bytes(raw)
        t = self.trees
        t._note(h)
        if h not in t.on_store and h not in t.pending:
            blob = compress_blob(raw)
            t.pending[h] = blob
            self._pending_bytes += len(blob)
            if self._flush is not None and self._pending_bytes >= self._flush_bytes:
                self._flush()
                self._pending_bytes = 0
        return h


def overlay(trees: Trees, base: str, top: str) -> tuple[str, ApplyStats]:
    """A tree holding everything of ``base``, with every file, link and folder of
    ``top`` set over it (folders in both are merged; nothing is deleted)."""
    stats = ApplyStats()
    if base in (EMPTY_TREE, top):
        return top, stats
    return _overlay_dir(trees, base, top, stats)[0], stats


def _overlay_dir(trees: Trees, base: str, top: str, stats: ApplyStats) -> tuple[str, int, int]:
    merged = {e.name: e for e in trees.entries(base)}
    for e in trees.entries(top):
        cur = merged.get(e.name)
        if e.kind == DIR and cur is not None and cur.kind == DIR:
            if cur.tree != e.tree:
                h, nfiles, size = _overlay_dir(trees, cur.tree, e.tree, stats)  # type: ignore[arg-type]
                merged[e.name] = Entry(e.name, DIR, e.mode, size, e.mtime_ns, tree=h, nfiles=nfiles)
            continue
        if cur is None:
            stats.added += _nfiles(e)
        elif not cur.same_content(e):
            stats.modified += 1
        merged[e.name] = e
    new = [merged[k] for k in sorted(merged)]
    return trees.write_dir(new), sum(_nfiles(e) for e in new), sum(e.size for e in new)
