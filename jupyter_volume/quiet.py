"""Quiet snapshots: which of a mount's changes a commit may take now, and which wait.

A mounted folder is a plain folder, so other programs write in it while the mount
commits: a database, a git repository, a download. A commit that copies such files
one after the other can publish a state that never existed on disk (a database page
from before a transaction next to a log from after it). A commit therefore takes a
changed file only when it is *quiet*:

1. no process we can see holds it open for writing (``/proc/*/fd``: every process of
   this user, all of them for root; races and refused folders are skipped);
2. it has not changed for the settle interval: its ctime is at least that old (the
   kernel sets ctime; nobody can set it back), or the mount has seen the same stat
   signature for that long (which also holds when the clock jumps);
3. its stat signature is the same when it is checked, when it is opened, when it has
   been read, and after every other file of the commit has been read.

Files that belong together share one verdict (a *group*): ``X`` and every sibling
whose name is ``X`` with a group pattern applied (``*-wal``, ``*-shm``, ``*-journal``,
``*.tmp``, ``*.lock``, ``*.part``, ...; the ``*`` stands for ``X``). If one member is
not quiet, no member is committed, so a database and its write-ahead log always come
from the same moment. A deleted file counts as changed when its folder last changed.

What is not quiet is *deferred*: not read, not uploaded, left for a later commit.
A file that changes while it is being read is dropped after the read, so at most its
own bytes end up in packs that no commit references (garbage collection removes them).

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

    def base(self, name: str) -> str:
        """The main file's name that ``name`` belongs to (``name`` itself if none)."""
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
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:  # gone, or another user's process
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if not target.startswith(prefix):
                continue
            flags = _fd_flags(pid, fd)
            if flags is None or flags & 0o3 not in (os.O_WRONLY, os.O_RDWR):
                continue
            out.setdefault(target[len(prefix) :], []).append(f"{pid} ({_comm(pid)})")
    return out


@dataclass
class _Member:
    rel: str
    sig: Sig | None  # None: the path is gone (a deletion in the change set)
    quiet: bool = True
    reason: str = ""
    wait: float | None = None  # seconds until it could be quiet, if waiting can help


@dataclass
class Gate:
    """The verdict for one commit's candidates; see the module docstring.

    Args:
        root: the mounted folder.
        changed: paths of changed files and links (candidates to read).
        gone: deleted paths in the change set.
        policy: settle interval and group patterns.
        memory: signatures seen by earlier gates of this mount and since when
            (``rel -> (sig or None, monotonic time)``); updated in place.

    After construction, :attr:`deferred` names what must wait (path -> reason) and
    :attr:`pause` says how long to wait before trying again can help (None: it cannot).
    Call :meth:`ready` before reading a path, :meth:`check_read` after, and
    :meth:`confirm` once everything is read.
    """

    root: Path
    changed: Iterable[str]
    gone: Iterable[str]
    policy: Policy
    memory: dict[str, tuple[Sig | None, float]] = field(default_factory=dict)
    deferred: dict[str, str] = field(init=False, default_factory=dict)
    pause: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._groups = Groups(self.policy.groups)
        self._candidates = set(self.changed) | set(self.gone)
        self._gone = set(self.gone)
        self._members: dict[str, list[_Member]] = {}
        self._key_of: dict[str, str] = {}
        self._cands_of: dict[str, set[str]] = {}
        self._evaluate()

    # -- evaluation -----------------------------------------------------------------------
    def _evaluate(self) -> None:
        root = self.root
        settle = self.policy.settle
        now_wall = time.time_ns()
        now_mono = time.monotonic()
        busy = writers(root) if self._candidates else {}
        by_key = self._cands_of
        for rel in self._candidates:
            k = self._groups.key(rel)
            self._key_of[rel] = k
            by_key.setdefault(k, set()).add(rel)
        per_folder: dict[str, int] = {}
        for k in by_key:
            folder = k.rpartition("/")[0]
            per_folder[folder] = per_folder.get(folder, 0) + 1
        listings: dict[str, set[str] | None] = {}
        folder_age: dict[str, float | None] = {}
        memory: dict[str, tuple[Sig | None, float]] = {}

        def exists_maybe(rel: str) -> bool:
            folder, _, name = rel.rpartition("/")
            if per_folder.get(folder, 0) < _LIST_DIR_AT:
                return True  # probe it with lstat
            if folder not in listings:
                try:
                    listings[folder] = set(os.listdir(root / folder if folder else root))
                except OSError:
                    listings[folder] = None
            names = listings[folder]
            return names is None or name in names

        def age_of_folder(rel: str) -> float | None:
            # A deletion's age: when its nearest existing folder last changed.
            folder = rel.rpartition("/")[0]
            while True:
                if folder in folder_age:
                    return folder_age[folder]
                try:
                    st = os.lstat(root / folder if folder else root)
                except OSError:
                    if not folder:
                        folder_age[folder] = None
                        return None
                    folder = folder.rpartition("/")[0]
                    continue
                folder_age[folder] = (now_wall - st.st_ctime_ns) / 1e9
                return folder_age[folder]

        for k, cands in by_key.items():
            members: list[_Member] = []
            paths = [p for p in self._groups.names(k) if p not in cands] + sorted(cands)
            for rel in paths:
                sig: Sig | None
                if rel in self._gone:
                    sig = None
                else:
                    if rel not in cands and not exists_maybe(rel):
                        continue
                    try:
                        sig = signature(os.lstat(root / rel))
                    except OSError:
                        if rel not in cands:
                            continue  # not a member: no such sibling
                        # changed at the scan, missing now: a later scan will say what it is
                        members.append(_Member(rel, None, False, "changed since the scan", settle))
                        continue
                m = _Member(rel, sig)
                seen = self.memory.get(rel)
                since = seen[1] if seen is not None and seen[0] == sig else now_mono
                memory[rel] = (sig, since)
                still_for = now_mono - since
                if sig is None:
                    age = age_of_folder(rel)
                    if (age is None or age < settle) and still_for < settle:
                        m.quiet, m.reason = False, "deleted moments ago"
                        m.wait = settle - max(still_for, age or 0.0)
                else:
                    who = busy.get(rel)
                    age = (now_wall - sig[2]) / 1e9
                    young = age < settle and still_for < settle
                    if who:
                        m.quiet = False
                        m.reason = "open for writing by " + ", ".join(sorted(who)[:3])
                        # a file that is still changing may be closed soon: worth a wait;
                        # one that is held open but idle (a database connection) is not
                        m.wait = settle if young else None
                    elif young:
                        m.quiet, m.reason = False, "changing"
                        m.wait = settle - max(age, still_for)
                members.append(m)
            self._members[k] = members
            bad = [m for m in members if not m.quiet]
            if bad:
                first = bad[0]
                for rel in cands:
                    self.deferred[rel] = (
                        first.reason if first.rel == rel else f"{first.rel} is {first.reason}"
                    )
                waits = [m.wait for m in bad]
                if all(w is not None for w in waits):
                    w = max(max(waits), 0.01)  # type: ignore[type-var]
                    self.pause = w if self.pause is None else max(self.pause, w)
        self.memory.clear()
        self.memory.update(memory)

    # -- reading --------------------------------------------------------------------------------
    def ready(self, rel: str) -> bool:
        """True if candidate ``rel`` may be read and committed now."""
        return rel not in self.deferred

    def defer(self, rel: str, reason: str) -> None:
        """Defer ``rel`` and every other candidate of its group."""
        k = self._key_of.get(rel) or self._groups.key(rel)
        for other in self._cands_of.get(k, set()) | ({rel} & self._candidates):
            if other not in self.deferred:
                self.deferred[other] = reason if other == rel else f"{rel} {reason}"

    def check_read(self, rel: str, before: os.stat_result, after: os.stat_result) -> bool:
        """After reading ``rel``: True if it is the file that was checked and it did not
        change while read; else its group is deferred."""
        expected = next(
            (m.sig for m in self._members.get(self._key_of.get(rel, ""), []) if m.rel == rel),
            None,
        )
        if signature(before) != expected or signature(after) != expected:
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
                    now: Sig | None = signature(os.lstat(self.root / m.rel))
                except OSError:
                    now = None
                if now != m.sig:
                    self.defer(m.rel, "changed while the commit was read")
                    break
        return self.deferred
