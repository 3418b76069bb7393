"""Quiet snapshots: which of a mount's changes a commit may take now, and which wait.

A mounted folder is a plain folder, so other programs write in it while the mount
commits: a database, a git repository, a download. A commit that copies such files
one after the other can publish a state that never existed on disk (a database page
from before a transaction next to a log from after it). A commit therefore takes a
changed file only when it is *quiet*:

1. no process we can see holds it open for writing (``/proc/*/fd``: every process of
   this user, all of them for root; processes that exit or refuse us are skipped);
2. it has not changed for the settle interval: its ctime is at least that old (the
   kernel sets ctime and nobody can set it back), or the mount has seen the same stat
   signature for that long (which also holds when the wall clock jumps);
3. its stat signature is the same when it is checked, when it is opened, when it has
   been read, and after every other file of the commit has been read.

Files that belong together share one verdict (a *group*): ``X`` and every sibling
whose name is ``X`` with a group pattern applied (``*-wal``, ``*-shm``, ``*-journal``,
``*.tmp``, ``*.lock``, ``*.part``, ...; the ``*`` stands for ``X``). If one member is
not quiet, no member is committed, so a database and its write-ahead log always come
from the same moment.

Quiet files alone are not enough: a file deferred now keeps its previously committed
version, which may be older than the quiet files next to it (git objects deleted by
``git gc`` after the index that names them was written). So the commit is cut at one
moment T (see :class:`Gate`): it takes the groups last changed before T and defers only
groups that were still as committed at T; a group changing across T pulls T back to
before its change. The result is the folder as it was at T, which for any program that
keeps its files consistent on disk (as after a crash) is consistent.

What is not taken is *deferred*: not read, not uploaded, left for a later commit. A
file that changes while it is being read is dropped after the read, so at most its own
bytes end up in packs that no commit references (garbage collection removes them).

Layer: uses only the standard library and :mod:`jupyter_volume.errors`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InvalidError

__all__ = [
    "DEFAULT_GROUP_PATTERNS",
    "DEFAULT_SETTLE",
    "DEFAULT_SETTLE_MAX_WAIT",
    "Gate",
    "Groups",
    "Policy",
    "signature",
    "writers",
]

DEFAULT_SETTLE = 1.0
DEFAULT_SETTLE_MAX_WAIT = 5.0
# Names that are another file's companion while it is being written: SQLite's
# write-ahead log, shared-memory index and rollback journal, and the temporary and lock
# siblings that downloaders and editors make next to the file they produce.
DEFAULT_GROUP_PATTERNS = [
    "*-wal",
    "*-shm",
    "*-journal",
    "*.tmp",
    "*.temp",
    "*.lock",
    "*.part",
    "*.partial",
    "*.incomplete",
    "*.download",
    "*.crdownload",
]
# With this many candidates in one folder, list it once instead of probing each
# sibling name (a probe per pattern per file would cost more than the listing).
_LIST_DIR_AT = 16
# How far a file's ctime may lag the precise clock (one kernel tick is 1-10 ms).
_STAMP_TICK = 0.02
# What the memory of a Gate records for a path that came and went uncommitted, in place
# of a signature: whether an earlier look saw it.
_SEEN_GONE = "seen, then gone"
_UNSEEN_GONE = "gone unseen"

Sig = tuple[int, int, int, int, int, int]


def signature(st: os.stat_result) -> Sig:
    """What must stay the same while a file is quiet: size, mtime, ctime, inode, device, mode.

    ctime is in it because mtime can be set back (``touch -d``, a reload) and a write
    within one clock tick may leave mtime unchanged, but every write moves ctime.
    """
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev, st.st_mode)


@dataclass(frozen=True)
class Policy:
    """How long files must be still, how long an explicit commit waits, what groups them."""

    settle: float = DEFAULT_SETTLE
    max_wait: float = DEFAULT_SETTLE_MAX_WAIT
    groups: tuple[str, ...] = tuple(DEFAULT_GROUP_PATTERNS)

    def __post_init__(self) -> None:
        if self.settle < 0:
            raise InvalidError("the settle interval must be 0 or more seconds")
        if self.max_wait < 0:
            raise InvalidError("the settle wait limit must be 0 or more seconds")
        Groups(self.groups)  # refuses bad patterns now, not at the first commit


class Groups:
    """Sibling patterns: each has exactly one ``*``, which stands for the main file's name.

    ``Groups(["*-wal", "*.tmp"]).base("db-wal") == "db"``; names are stripped repeatedly,
    so ``"db-wal.tmp"`` also belongs to ``"db"``.
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        self.pairs: list[tuple[str, str]] = []
        for pat in patterns:
            if not isinstance(pat, str) or pat.count("*") != 1 or "/" in pat or pat == "*":
                raise InvalidError(
                    f"bad snapshot group pattern {pat!r}: it needs exactly one '*' (the main "
                    "file's name) and some fixed text, and no '/', e.g. '*-wal' or '*.part'"
                )
            pre, suf = pat.split("*")
            self.pairs.append((pre, suf))
        # most names match no pattern: two C-level tests say so (see base)
        self._pre = tuple(pre for pre, _ in self.pairs)
        self._suf = tuple(suf for _, suf in self.pairs)

    def base(self, name: str) -> str:
        """The main file's name that ``name`` belongs to (``name`` itself if none)."""
        if not (name.startswith(self._pre) and name.endswith(self._suf)):
            return name
        changed = True
        while changed:
            changed = False
            for pre, suf in self.pairs:
                if len(name) > len(pre) + len(suf) and name.startswith(pre) and name.endswith(suf):
                    name = name[len(pre) : len(name) - len(suf)]
                    changed = True
        return name

    def key(self, rel: str) -> str:
        """The group of path ``rel``: its folder and base name, as one path."""
        folder, _, name = rel.rpartition("/")
        base = self.base(name)
        if base is name:
            return rel  # most paths: the same string, not a copy of it
        return f"{folder}/{base}" if folder else base

    def names(self, key: str) -> list[str]:
        """Paths a member of group ``key`` may have (the main file first)."""
        folder, _, base = key.rpartition("/")
        lead = f"{folder}/" if folder else ""
        return [key, *(f"{lead}{pre}{base}{suf}" for pre, suf in self.pairs)]


def _fd_flags(pid: str, fd: str) -> int | None:
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}") as f:
            for line in f:
                if line.startswith("flags:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        return None
    return None


def _comm(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def writers(root: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Paths under ``root`` (relative) that a process holds open for writing.

    Looks at every process whose ``/proc/PID/fd`` this process may read (its user's,
    or all for root), this one included. Processes that exit or refuse us while we look
    are skipped. Each path maps to ``"PID (command)"`` strings. Empty off Linux.
    """
    prefix = os.path.realpath(root).rstrip("/") + "/"
    out: dict[str, list[str]] = {}
    try:
        procs = [e.name for e in os.scandir("/proc") if e.name.isdigit()]
    except OSError:
        return out
    for pid in procs:
        # Links are read relative to the open fd folder: resolving "/proc/PID/fd/N" from
        # the root for every descriptor cost 3.4 times as much (6.1 vs 1.8 ms a scan with
        # 60 other processes; a mount scans at every commit).
        try:
            dir_fd = os.open(f"/proc/{pid}/fd", os.O_RDONLY | os.O_DIRECTORY)
        except OSError:  # gone, or another user's process
            continue
        try:
            try:
                fds = os.listdir(dir_fd)
            except OSError:
                continue
            for fd in fds:
                try:
                    target = os.readlink(fd, dir_fd=dir_fd)
                except OSError:
                    continue
                if not target.startswith(prefix):
                    continue
                flags = _fd_flags(pid, fd)
                if flags is None or flags & 0o3 not in (os.O_WRONLY, os.O_RDWR):
                    continue
                out.setdefault(target[len(prefix) :], []).append(f"{pid} ({_comm(pid)})")
        finally:
            os.close(dir_fd)
    return out


# Slotted: a gate holds one member per candidate (a million for a huge initial commit).
@dataclass(slots=True)
class _Member:
    rel: str
    sig: Sig | None  # None: the path is gone (a deletion in the change set)
    busy: str = ""  # who holds it open for writing
    last: float = 0.0  # (monotonic) its latest change was at or before this (inf: unknown)
    changed: float = 0.0  # (monotonic) its latest change seen so far (for a busy one)


@dataclass(slots=True)
class _Group:
    members: list[_Member]
    first: float  # (monotonic) no candidate of it changed since its last commit before this
    last: float  # the latest change of any member was at or before this (inf: unknown)
    reason: str = ""  # why it cannot be committed as it is now ("" if it can)
    pending_since: float = 0.0
    name: str = ""  # a path of it, for messages


@dataclass
class Gate:
    """The verdict for one commit's candidates; see the module docstring.

    Args:
        root: the mounted folder.
        changed: paths of changed files and links (candidates to read).
        gone: deleted paths in the change set.
        policy: settle interval, wait limit and group patterns.
        memory: what earlier gates of this mount saw (``rel -> (sig, unchanged since,
            as committed until, a candidate since)``, monotonic times); updated in place.
        clean_at: (monotonic) when the scan before the one that found ``changed`` began:
            a path not in that scan's change set was as committed at that time.
        vanished: paths that changed since then and are gone again, never committed
            (a temporary file; a git object packed and deleted by ``git gc``): nothing to
            commit, but the folder had them for a while, so they hold the cut back too.
        folders: new folders in the change set (see :meth:`folder_ready`).

    The commit is cut at one moment T: every group it takes was last changed before T,
    and every group it defers was, at T, still as the volume has it, so the commit is the
    folder as it was at T (for a writer whose files are consistent at every moment, as
    a database's or git's are on disk, the commit is too). T is at most ``now - settle``;
    a group that has waited longer than the wait limit no longer holds T back (it is
    deferred alone, so a file that never stops changing cannot stall every commit).

    After construction, :attr:`deferred` names what must wait (path -> reason),
    :attr:`pause` says how long to wait before trying again can help (None: it cannot),
    and :attr:`cut` is T (monotonic clock).
    Call :meth:`ready` before reading a path, :meth:`check_read` after, and
    :meth:`confirm` once everything is read.
    """

    root: Path
    changed: Iterable[str]
    gone: Iterable[str]
    policy: Policy
    memory: dict[str, tuple[Sig | str | None, float, float, float]] = field(default_factory=dict)
    clean_at: float = float("-inf")
    vanished: Iterable[str] = ()
    folders: Iterable[str] = ()
    deferred: dict[str, str] = field(init=False, default_factory=dict)
    pause: float | None = field(init=False, default=None)
    cut: float = field(init=False, default=float("-inf"))

    def __post_init__(self) -> None:
        self._groups = Groups(self.policy.groups)
        self._gone = set(self.gone)
        self._candidates = set(self.changed) | self._gone
        self._members: dict[str, list[_Member]] = {}
        # group key of a candidate, only where it is not the path itself (a sibling)
        self._key_of: dict[str, str] = {}
        # the candidates of each group (a list: most groups have one)
        self._cands_of: dict[str, list[str]] = {}
        self._evaluate()

    # -- evaluation -----------------------------------------------------------------------
    def _mono(self, ns: int) -> float:
        # A file time (wall clock, ns) on the monotonic clock of this process, made later
        # by one clock tick: the kernel stamps files from a coarse clock that can lag the
        # precise one by a tick, and "changed before the scan" must not be concluded from
        # a stamp that was merely rounded down.
        return self._now - (self._now_wall - ns) / 1e9 + _STAMP_TICK

    def _evaluate(self) -> None:
        root = self.root
        settle = self.policy.settle
        now_wall = time.time_ns()
        now = time.monotonic()
        inf = float("inf")
        busy = writers(root) if self._candidates else {}
        by_key = self._cands_of
        for rel in self._candidates:
            k = self._groups.key(rel)
            if k is not rel:
                self._key_of[rel] = k
            got = by_key.get(k)
            if got is None:
                by_key[k] = [rel]
            else:
                got.append(rel)
        per_folder: dict[str, int] = {}
        for k in by_key:
            folder = k.rpartition("/")[0]
            per_folder[folder] = per_folder.get(folder, 0) + 1
        # per listed folder: group base name -> the names there that belong to it
        listings: dict[str, dict[str, list[str]] | None] = {}
        folder_changed: dict[str, float] = {}
        memory: dict[str, tuple[Sig | str | None, float, float, float]] = {}

        self._now, self._now_wall = now, now_wall
        mono = self._mono

        top = str(root) + "/"

        group_base = self._groups.base

        def siblings(k: str) -> list[str]:
            # the sibling names of group k that may exist (lstat tells for sure)
            folder, _, base = k.rpartition("/")
            if per_folder.get(folder, 0) < _LIST_DIR_AT:
                return self._groups.names(k)  # few here: probe each with lstat
            if folder not in listings:
                # Many groups here: list the folder once and sort its names into groups
                # (one base() per name, instead of every pattern's name per group).
                try:
                    names = os.listdir(top + folder if folder else root)
                except OSError:
                    listings[folder] = None
                else:
                    members: dict[str, list[str]] = {}
                    for name in names:
                        members.setdefault(group_base(name), []).append(name)
                    listings[folder] = members
            listed = listings[folder]
            if listed is None:
                return self._groups.names(k)
            lead = f"{folder}/" if folder else ""
            found = listed.get(base, ())
            # the main file first, as names() orders them
            return sorted((lead + n for n in found), key=lambda p: p != k)

        def deleted_by(rel: str) -> float:
            # A deletion happened at or before its nearest existing folder last changed.
            folder = rel.rpartition("/")[0]
            while True:
                if folder in folder_changed:
                    return folder_changed[folder]
                try:
                    st = os.lstat(top + folder if folder else root)
                except OSError:
                    if not folder:
                        return inf
                    folder = folder.rpartition("/")[0]
                    continue
                folder_changed[folder] = mono(st.st_ctime_ns)
                return folder_changed[folder]

        groups: dict[str, _Group] = {}
        for k, cands in by_key.items():
            members: list[_Member] = []
            reason = ""
            first = inf
            pending = now
            paths = [p for p in siblings(k) if p not in cands] + sorted(cands)
            for rel in paths:
                is_cand = rel in cands
                sig: Sig | None = None
                exists = True
                if rel in self._gone:
                    exists = os.path.lexists(top + rel)
                else:
                    try:
                        sig = signature(os.lstat(top + rel))
                    except OSError:
                        exists = False
                if not is_cand and sig is None:
                    continue  # no such sibling
                m = _Member(rel, sig)
                seen = self.memory.get(rel)
                if is_cand:
                    # kept while it stays a candidate (a deferred one does)
                    p_since, p_first, p_appeared = seen[1:] if seen else (now, self.clean_at, now)
                    if seen is not None and seen[0] != sig:
                        p_since = now
                    first = min(first, p_first)
                    pending = min(pending, p_appeared)
                    memory[rel] = (sig, p_since, p_first, p_appeared)
                    unchanged_since = p_since
                else:
                    unchanged_since = now
                if (rel in self._gone) == exists:
                    # it is not what the scan saw any more: a later scan will say more
                    m.last, reason = inf, reason or f"{rel} changed since the scan"
                elif sig is None:
                    m.last = min(deleted_by(rel), unchanged_since)
                else:
                    m.last = min(mono(sig[2]), unchanged_since)  # ctime: every change moves it
                    m.changed = m.last
                    who = busy.get(rel)
                    if who:
                        m.busy = "open for writing by " + ", ".join(sorted(who)[:3])
                        m.last = inf
                        reason = reason or (m.busy if rel in cands else f"{rel} is {m.busy}")
                members.append(m)
            last = max((m.last for m in members), default=-inf)
            self._members[k] = members
            groups[k] = _Group(members, first, last, reason, pending, k)

        # The cut T: as late as possible, at most now - settle, and inside no group's
        # [first, last] window (such a group was changing at T: neither its state now
        # nor the committed one is its state at T). Groups pending longer than the wait
        # limit do not hold T back.
        limit = self.policy.max_wait
        ghosts = []
        for rel in self.vanished:
            if rel in self._candidates:
                continue
            seen = self.memory.get(rel)
            p_first, p_appeared = (seen[2], seen[3]) if seen else (self.clean_at, now)
            # A file that an earlier look saw (not a temporary file that came and went
            # between two looks) holds T back until it is settle old, however long it
            # waited: the wait limit is for files that never stop changing. It was gone
            # by the first look that missed it (its folder may change long after).
            ghost = seen is not None and seen[0] in (_SEEN_GONE, _UNSEEN_GONE)
            was_seen = seen is not None and (seen[0] == _SEEN_GONE or isinstance(seen[0], tuple))
            gone_by = seen[1] if ghost else now  # type: ignore[index]
            memory[rel] = (_SEEN_GONE if was_seen else _UNSEEN_GONE, gone_by, p_first, p_appeared)
            g = _Group([], p_first, min(deleted_by(rel), gone_by), "", p_appeared, rel)
            ghosts.append((g, was_seen))
        holding = [g for g in groups.values() if now - g.pending_since < limit]
        holding += [g for g, was_seen in ghosts if was_seen or now - g.pending_since < limit]
        for rel in self.folders:
            seen = self.memory.get(rel)
            memory[rel] = (None, now, *((seen[2], seen[3]) if seen else (self.clean_at, now)))
        cut = now - settle
        self.held_by: list[str] = []  # what pulled T back, for messages
        while True:
            straddle = [g for g in holding if g.last > cut and g.first <= cut]
            if not straddle:
                break
            g = min(straddle, key=lambda g: g.first)
            self.held_by.append(g.name)
            cut = g.first - 1e-6
            if cut == float("-inf"):
                break  # a group with no known clean moment: nothing can be cut before it
        self.cut = cut

        pause: float | None = None
        for k, g in groups.items():
            if g.last <= cut:
                continue
            young = max(g.members, key=lambda m: m.last if not m.busy else m.changed)
            if g.reason:
                why = g.reason
            elif g.last > now - settle:
                why = "changing" if young.rel in by_key[k] else f"{young.rel} is changing"
            else:
                why = (
                    f"waits for {self.held_by[-1]}, which changed at about the same time"
                    if self.held_by
                    else "waits for files changed with it"
                )
            for rel in by_key[k]:
                self.deferred[rel] = why
            # How long until trying again may let it through (None: waiting will not help,
            # e.g. a database held open by an idle connection).
            w: float | None
            if any(m.busy for m in g.members):
                busy_changed = max(m.changed for m in g.members if m.busy)
                w = settle if busy_changed > now - settle else None
            elif g.last == float("inf") or g.last <= now - settle:
                w = settle  # to be rescanned, or held back by the cut: look again
            else:
                w = g.last + settle - now
            if w is not None:
                w = max(w, 0.01)
                pause = w if pause is None else max(pause, w)
        self.pause = pause
        self.memory.clear()
        self.memory.update(memory)

    # -- reading --------------------------------------------------------------------------------
    def folder_ready(self, rel: str) -> bool:
        """False if new folder ``rel`` surely did not exist yet at the cut (it appeared
        after a scan that began after the cut), so a commit of the folder as it was then
        leaves it out; True otherwise (a folder holding a committed file is made anyway).
        """
        seen = self.memory.get(rel)
        return seen is None or seen[2] <= self.cut

    def ready(self, rel: str) -> bool:
        """True if candidate ``rel`` may be read and committed now."""
        return rel not in self.deferred

    def defer(self, rel: str, reason: str) -> None:
        """Defer ``rel`` and every other candidate of its group."""
        k = self._key_of.get(rel, rel) if rel in self._candidates else self._groups.key(rel)
        for other in {*self._cands_of.get(k, ()), *({rel} & self._candidates)}:
            if other not in self.deferred:
                self.deferred[other] = reason if other == rel else f"{rel} {reason}"

    def check_read(self, rel: str, before: os.stat_result, after: os.stat_result) -> bool:
        """After reading ``rel``: True if it is the file that was checked and it did not
        change while read; else its group is deferred."""
        expected = next(
            (m.sig for m in self._members.get(self._key_of.get(rel, rel), []) if m.rel == rel),
            None,
        )
        # The open file against the path's lstat: size, times and mode (some stacked file
        # systems give an open file another device and inode number than its path);
        # before and after the read, all of it.
        if (
            expected is None
            or signature(before) != signature(after)
            or signature(before)[:3] + signature(before)[5:] != expected[:3] + expected[5:]
        ):
            self.defer(rel, "changed while being read")
            return False
        return True

    def confirm(self) -> dict[str, str]:
        """Re-check every member of every group still to be committed; defer each group in
        which anything changed since it was checked. Returns :attr:`deferred`."""
        for k, members in self._members.items():
            if any(rel in self.deferred for rel in self._cands_of[k]):
                continue
            for m in members:
                try:
                    now: Sig | None = signature(os.lstat(f"{self.root}/{m.rel}"))
                except OSError:
                    now = None
                if now != m.sig:
                    self.defer(m.rel, "changed while the commit was read")
                    break
        return self.deferred
