"""Quiet snapshots: which of a mount's changes a commit may take now, and which wait.

A mounted folder is a plain folder, so other programs write in it while the mount
commits: a database, a git repository, a download. A commit that copies such files
one after the other can publish a state that never existed on disk (a database page
from before a transaction next to a log from after it). A commit therefore takes a
changed file only when it is *quiet*:

1. no process we can see holds it open for writing (``/proc/*/fd``: every process of
   this user, all of them for root; processes that exit or refuse us are skipped) or
   maps it shared and writable (``/proc/*/maps``: after the first write to each page,
   writes through a mapping move no stat field, so a file read while mapped could
   change for good unseen; its unmapping is a close the change journal reports). A
   commit of a few files asks the kernel first, per file, with a read lease (which it
   grants only while nobody can write the file): a granted lease settles it without
   reading every process's descriptors and mappings, whose cost grows with the
   processes (see :class:`Writers`);
2. it has not changed for the settle interval: its ctime is at least that old (the
   kernel sets ctime and nobody can set it back), or the mount has seen the same stat
   signature for that long (which also holds when the wall clock jumps). A rename of a
   folder moves no ctime below it: a path whose ctime is older than a moment it was
   known to be as committed (it came with a folder renamed above it) is dated by the
   latest change of the folders on its way down from the root instead, one of which
   took the renamed entry; so a moved file settles with the deletion of its old path,
   and a move is committed as one;
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

import errno
import math
import os
import signal
import stat
import struct
import time
from array import array
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
    "Writers",
    "no_writer",
    "scan_writers",
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

# A stat signature packed into 48 bytes (size, mtime, ctime, inode, device, mode): one
# object of about 80 bytes instead of a tuple of six numbers (about 290); a gate keeps one
# per candidate, and an initial commit can have a million.
_SIG = struct.Struct("<qqqQQQ")
Sig = bytes


def signature(st: os.stat_result) -> Sig:
    """What must stay the same while a file is quiet: size, mtime, ctime, inode, device, mode.

    ctime is in it because mtime can be set back (``touch -d``, a reload) and a write
    within one clock tick may leave mtime unchanged, but every write moves ctime.
    Signatures compare with ``==``; :func:`_ctime_ns` reads the ctime back.
    """
    return _SIG.pack(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev, st.st_mode)


def _ctime_ns(sig: Sig) -> int:
    return int.from_bytes(sig[16:24], "little", signed=True)


def _mode(sig: Sig) -> int:
    return int.from_bytes(sig[40:48], "little")


def _same_content(a: Sig, b: Sig) -> bool:
    """Size, times and mode equal: all but the inode and device numbers (some stacked
    file systems give an open file other ones than its path)."""
    return a[:24] == b[:24] and a[40:] == b[40:]


@dataclass(frozen=True)
class Policy:
    """How long files must be still, how long an explicit commit waits, what groups them."""

    settle: float = DEFAULT_SETTLE
    max_wait: float = DEFAULT_SETTLE_MAX_WAIT
    groups: tuple[str, ...] = tuple(DEFAULT_GROUP_PATTERNS)

    def __post_init__(self) -> None:
        if not (self.settle >= 0 and math.isfinite(self.settle)):
            raise InvalidError("the settle interval must be 0 or more seconds (finite)")
        if not (self.max_wait >= 0 and math.isfinite(self.max_wait)):
            raise InvalidError("the settle wait limit must be 0 or more seconds (finite)")
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
    """Paths under ``root`` (relative) that a process holds open for writing: through a
    descriptor, or through a shared writable mapping (see :func:`scan_writers`).

    Each path maps to ``"PID (command)"`` strings. Empty off Linux.
    """
    fds, maps = scan_writers(root)
    for rel, who in maps.items():
        fds.setdefault(rel, []).extend(w for w in who if w not in fds.get(rel, ()))
    return fds


def scan_writers(
    root: str | os.PathLike[str],
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Who can write paths under ``root`` (relative): by descriptor, and by mapping.

    Looks at every process whose ``/proc/PID`` this process may read (its user's, or
    all for root), this one included; processes that exit or refuse us while we look
    are skipped. The first map holds descriptors open for writing; the second, shared
    writable mappings (``/proc/PID/maps``). A mapping outlives the descriptor it was
    made from (native programs often close it at once), and writes through it change
    the file without moving its mtime, except for the first write to each page after
    the kernel wrote the page back: a file so mapped is being written as surely as an
    open one. Each path maps to ``"PID (command)"`` strings. Both empty off Linux.
    """
    prefix = os.path.realpath(root).rstrip("/") + "/"
    out: dict[str, list[str]] = {}
    mapped: dict[str, list[str]] = {}
    try:
        procs = [e.name for e in os.scandir("/proc") if e.name.isdigit()]
    except OSError:
        return out, mapped
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
        for rel in _mapped_for_writing(pid, prefix):
            who = f"{pid} ({_comm(pid)})"
            if who not in mapped.setdefault(rel, []):
                mapped[rel].append(who)
    return out, mapped


def _mapped_for_writing(pid: str, prefix: str) -> list[str]:
    """Paths under ``prefix`` (relative) that process ``pid`` maps shared and writable."""
    try:
        with open(f"/proc/{pid}/maps", "rb") as f:
            text = f.read()
    except OSError:  # gone, or not ours to read
        return []
    key = os.fsencode(prefix)
    if key not in text:  # nearly always: one search, nothing decoded
        return []
    found = []
    for line in text.splitlines():
        # "start-end perms offset dev inode path": perms "rw-s" is shared and writable
        fields = line.split(None, 5)
        if len(fields) < 6 or fields[1][1:2] != b"w" or fields[1][3:4] != b"s":
            continue
        path = fields[5]
        if path.startswith(key) and not path.endswith(b" (deleted)"):
            found.append(os.fsdecode(path[len(key) :]))
    return found


try:
    import fcntl

    _F_SETLEASE, _F_SETSIG, _F_RDLCK = fcntl.F_SETLEASE, fcntl.F_SETSIG, fcntl.F_RDLCK
except (ImportError, AttributeError):  # not Linux
    fcntl = None  # type: ignore[assignment]
# Reads a file for the lease only; never blocks on another holder's write lease (that
# holder is writing it), never makes it our terminal, never leaks into a child.
_LEASE_OPEN = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK | os.O_NOCTTY
_LEASE_OPEN |= getattr(os, "O_CLOEXEC", 0)
# Up to this many paths, asking the kernel per path (4 system calls, about 5 us here)
# costs less than one /proc scan (0.7 ms with a handful of processes, 6 ms beside 64
# writer processes: it grows with every process on the machine).
LEASE_UP_TO = 64


def no_writer(path: str) -> bool:
    """True if the kernel says nobody has regular file ``path`` open for writing.

    It grants a read lease on a file only while no descriptor and no shared writable
    mapping can write it, in any process, of any user or namespace; the lease ends
    with the descriptor, at once. A path that names nothing, or a symbolic link (what
    is open is its target, under the target's path), has no writer either. False
    means "cannot tell": someone may be writing it, or this file system or user cannot
    take leases (not our file, leases switched off, some network file systems refuse
    them or give a false "busy").

    Breaking a lease signals its holder, and the default signal (SIGIO) ends a process:
    a writer opening the file in the few microseconds we hold the lease would kill us.
    The descriptor is told to signal SIGURG instead, which is ignored unless handled.
    """
    if fcntl is None:
        return False
    try:
        fd = os.open(path, _LEASE_OPEN)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError as e:
        # a symbolic link (O_NOFOLLOW): what is open is its target, under another path
        return e.errno == errno.ELOOP
    try:
        fcntl.fcntl(fd, _F_SETSIG, signal.SIGURG)
        fcntl.fcntl(fd, _F_SETLEASE, _F_RDLCK)
    except OSError:
        return False
    finally:
        os.close(fd)  # ends the lease
    return True


class Writers:
    """Who holds paths under ``root`` open for writing, asked path by path.

    ``expected`` is about how many paths will be asked about. For a few, each is first
    put to the kernel (:func:`no_writer`): for a file nobody writes (nearly always) that
    settles it, and no process's descriptors are read. Only when the kernel cannot tell,
    or for many paths, are all processes scanned, once (:func:`writers`; again for a
    file changed since that scan began), and the answer is theirs: a lease refused for
    another reason never makes a file busy.
    """

    def __init__(self, root: str | os.PathLike[str], expected: int) -> None:
        self._root = str(root).rstrip("/") + "/"
        self._per_path = expected <= LEASE_UP_TO
        self._scan: dict[str, list[str]] | None = None
        self._maps: dict[str, list[str]] = {}
        self._scanned_ns = 0  # (wall clock) the scan began after this

    def get(self, rel: str, mode: int | None = None, changed_ns: int | None = None) -> list[str]:
        """``"PID (command)"`` of each process holding ``rel`` open for writing (empty:
        none). ``mode`` is its ``st_mode`` if known, ``changed_ns`` its ``st_ctime_ns``
        if known: a scan knows the writers of the moment it looked, so a file changed
        since the scan began (by a program that opened it after the scan went past) is
        answered by a new scan."""
        if mode is None and self._per_path:
            try:
                mode = os.lstat(self._root + rel).st_mode
            except (FileNotFoundError, NotADirectoryError):
                return []  # nothing there
            except OSError:
                pass  # the scan tells
        if mode is not None and (stat.S_ISLNK(mode) or stat.S_ISDIR(mode)):
            return []  # never open for writing under its own path
        # only a regular file is opened for the lease (opening a device or a pipe can
        # have effects of its own)
        if self._per_path and stat.S_ISREG(mode or 0) and no_writer(self._root + rel):
            return []
        if self._scan is None or (changed_ns is not None and changed_ns >= self._scanned_ns):
            # (a file's ctime may lag the precise clock by a tick)
            self._scanned_ns = time.time_ns() - int(_STAMP_TICK * 1e9)
            self._scan, self._maps = scan_writers(self._root)
        return self._scan.get(rel) or self._maps.get(rel, [])

    def written(self) -> set[str] | None:
        """Every path :meth:`get` would name a writer for, when the answer is one scan
        for all paths (many of them); None when it is asked path by path (a few)."""
        if self._per_path:
            return None
        if self._scan is None:
            self._scan, self._maps = scan_writers(self._root)
        return {*self._scan, *self._maps}

    def how(self, rel: str) -> str:
        """How :meth:`get`'s processes write ``rel``, as the start of a reason."""
        if self._scan is not None and rel not in self._scan and rel in self._maps:
            return "mapped for writing by "
        return "open for writing by "


# One member of a group while a gate evaluates it (kept only for groups not yet settled).
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
    last: float  # the latest change of any member was at or before this (inf: unknown)
    reason: str = ""  # why it cannot be committed as it is now ("" if it can)


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
        seen_at: (monotonic) a moment until which ``changed`` and ``gone`` name every
            change (the scan that found them began then, or nothing changed since): a
            path that is not a candidate was as committed until then, but not surely any
            later, so the cut is no later than this.
        vanished: paths that changed since then and are gone again, never committed
            (a temporary file; a git object packed and deleted by ``git gc``): nothing to
            commit, but the folder had them for a while, so they hold the cut back too.
        folders: new folders in the change set (see :meth:`folder_ready`).

    The commit is cut at one moment T: every group it takes was last changed before T,
    and every group it defers was, at T, still as the volume has it, so the commit is the
    folder as it was at T (for a writer whose files are consistent at every moment, as
    a database's or git's are on disk, the commit is too). T is at most ``now - settle``
    and ``seen_at``; a group that has waited longer than the wait limit no longer holds
    T back (it is deferred alone, so a file that never stops changing cannot stall every
    commit). A vanished path holds T back however long it waited if any look saw it.

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
    seen_at: float = float("inf")
    vanished: Iterable[str] = ()
    folders: Iterable[str] = ()
    deferred: dict[str, str] = field(init=False, default_factory=dict)
    pause: float | None = field(init=False, default=None)
    cut: float = field(init=False, default=float("-inf"))
    #: the sizes of the candidates that were regular files when looked at, summed (a
    #: commit's progress total: its scan does not stat new files)
    looked_bytes: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._groups = Groups(self.policy.groups)
        self._gone = set(self.gone)
        self._candidates = set(self.changed) | self._gone
        # What a gate keeps per candidate is small on purpose (an initial commit can have
        # a million): its group's candidates as one string where there is one (most
        # groups), the signature of every member as checked (packed bytes), and the other
        # members of a group only where it has any.
        # group key of a candidate, only where it is not the path itself (a sibling)
        self._key_of: dict[str, str] = {}
        # the candidates of each group: the path itself, or a list of them
        self._cands_of: dict[str, str | list[str]] = {}
        # members that are not candidates (existing siblings), per group that has any
        self._others: dict[str, list[str]] = {}
        # the signature of every member that is not a candidate, as checked (a
        # candidate's is in the memory: ``memory[rel][0]``; None: gone)
        self._sig_of: dict[str, Sig | None] = {}
        self._evaluate()

    def _sig(self, rel: str) -> Sig | None:
        """The signature member ``rel`` had when it was checked (None: gone)."""
        if rel in self._candidates:
            return self.memory[rel][0]  # type: ignore[return-value]
        return self._sig_of[rel]

    def _cands(self, k: str) -> list[str]:
        got = self._cands_of.get(k)
        if got is None:
            return []
        return [got] if isinstance(got, str) else got

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
        busy = Writers(root, len(self._candidates))
        by_key = self._cands_of
        for rel in self._candidates:
            k = self._groups.key(rel)
            if k is not rel:
                self._key_of[rel] = k
            got = by_key.get(k)
            if got is None:
                by_key[k] = rel
            elif isinstance(got, str):
                by_key[k] = [got, rel]
            else:
                got.append(rel)
        per_folder: dict[str, int] = {}
        for k in by_key:
            folder = k.rpartition("/")[0]
            per_folder[folder] = per_folder.get(folder, 0) + 1
        # per listed folder: group base name -> the names there that belong to it (only
        # bases with more than their own name: for the rest a name is its own group)
        listings: dict[str, dict[str, list[str]] | None] = {}
        folder_changed: dict[str, float] = {}
        # The memory is rewritten in place: each path's old entry is read before its new
        # one replaces it, and what no longer belongs there is dropped at the end (two
        # whole copies of it would double the gate's memory).
        memory = self.memory
        sig_of = self._sig_of
        others = self._others

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
                        b = group_base(name)
                        if b is not name:
                            members.setdefault(b, [b]).append(name)
                    listings[folder] = members
            listed = listings[folder]
            if listed is None:
                return self._groups.names(k)
            found = listed.get(base)
            if found is None:
                return [k]  # no sibling names here: the path itself (which may be gone)
            lead = f"{folder}/" if folder else ""
            return [lead + n for n in found]  # the main name first, as names() orders them

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

        # folder -> the latest change of it and of every folder above it (inf: one of
        # them could not be looked at)
        chain_changed: dict[str, float] = {}

        def moved_in(folder: str) -> float:
            # A path whose own ctime is older than a moment the path was as committed
            # (the scan before found it so) changed without moving its ctime: it came
            # with a folder above it that was renamed (``mv data archive``), which
            # leaves the ctime of everything below as it was. It appeared at or before
            # the latest change of a folder on its way down from the root: the folder
            # that took the renamed entry is one of them, and adding an entry moves the
            # ctime of the folder that takes it. Only such paths come here (the files
            # of a moved folder; at a mount's first commit, files that were there
            # before it): one lstat per folder, once a gate.
            todo = []
            f: str | None = folder
            while f is not None and f not in chain_changed:
                todo.append(f)
                f = f.rpartition("/")[0] if f else None
            got = -inf if f is None else chain_changed[f]
            for f in reversed(todo):  # the root first
                try:
                    st = lstat(top + f if f else str(root))
                except OSError:
                    got = inf  # cannot tell: "unchanged since" alone dates it
                else:
                    got = max(got, mono(st.st_ctime_ns))
                chain_changed[f] = got
            return got

        # Per group, what the cut needs: first, last, and whether it holds the cut back
        # (compact: three numbers a group). Members are kept only for groups that have not
        # settled (changed within the settle interval, busy, or with a reason), the ones
        # whose deferral messages and pauses need them.
        keys: list[str] = []
        firsts = array("d")
        lasts = array("d")
        holds = bytearray()
        unsettled: dict[str, _Group] = {}
        limit = self.policy.max_wait
        settled = now - settle
        gone = self._gone
        clean_at = self.clean_at
        # What the loop below needs per file, looked up once (a gate of 10,000 new files
        # runs it 10,000 times): the paths some process writes, when that is known for
        # all at once (see Writers.written), and the folders whose listing has no name
        # that belongs to another one's group.
        written = busy.written()
        lstat, pack = os.lstat, _SIG.pack
        nbytes = 0
        for k, got in by_key.items():
            if type(got) is str and got not in gone:
                if k is got:
                    folder = k.rpartition("/")[0]
                    alone = listings.get(folder, True) == {}
                else:
                    alone = False
                if not alone:
                    sibs = siblings(k)
                    alone = len(sibs) == 1 and sibs[0] == got
                if alone:
                    # Nearly every group: one file that is there, with no companion. What
                    # the loop below does for it, without its lists and member records
                    # (a gate of 10,000 new files: 0.117 -> 0.081 s of CPU; the look-ups
                    # hoisted out of the loop and signature() written out took another
                    # 10-20 % off, 0.12 -> 0.10 s on a slower machine). Anything else
                    # (gone since the scan, busy) takes the loop below.
                    try:
                        st = lstat(top + got)
                    except OSError:
                        st = None
                    if st is not None and not (
                        got in written if written is not None else busy.get(got, st.st_mode)
                    ):
                        if st.st_mode & 0o170000 == 0o100000:  # a regular file
                            nbytes += st.st_size
                        ctime = st.st_ctime_ns
                        sig = pack(
                            st.st_size, st.st_mtime_ns, ctime, st.st_ino, st.st_dev, st.st_mode
                        )
                        seen = memory.get(got)
                        if seen is None:
                            p_since, p_first, p_appeared = now, clean_at, now
                        else:
                            _was, p_since, p_first, p_appeared = seen
                            if _was != sig:
                                p_since = now
                        memory[got] = (sig, p_since, p_first, p_appeared)
                        last = now - (now_wall - ctime) / 1e9 + _STAMP_TICK  # self._mono
                        if last < p_first:  # moved here with a folder above it
                            if k is not got:
                                folder = got.rpartition("/")[0]
                            moved = chain_changed.get(folder)
                            last = moved_in(folder) if moved is None else moved
                        if p_since < last:
                            last = p_since
                        keys.append(k)
                        firsts.append(p_first)
                        lasts.append(last)
                        holds.append(now - p_appeared < limit)
                        if last > settled:
                            unsettled[k] = _Group([_Member(got, sig, "", last, last)], last)
                        continue
            cands = [got] if isinstance(got, str) else sorted(got)
            members: list[_Member] = []
            reason = ""
            first = inf
            pending = now
            sibs = siblings(k)
            paths = cands if sibs == cands else [p for p in sibs if p not in cands] + cands
            for rel in paths:
                is_cand = rel in cands
                sig: Sig | None = None
                exists = True
                if rel in self._gone:
                    exists = os.path.lexists(top + rel)
                else:
                    try:
                        st = os.lstat(top + rel)
                    except OSError:
                        exists = False
                    else:
                        sig = signature(st)
                        if is_cand and stat.S_ISREG(st.st_mode):
                            nbytes += st.st_size
                if not is_cand and sig is None:
                    continue  # no such sibling
                m = _Member(rel, sig)
                seen = memory.get(rel)
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
                    others.setdefault(k, []).append(rel)
                    sig_of[rel] = sig
                    unchanged_since = now
                    p_first = -inf  # not a candidate: as committed, not moved here
                if (rel in self._gone) == exists:
                    # it is not what the scan saw any more: a later scan will say more
                    m.last, reason = inf, reason or f"{rel} changed since the scan"
                elif sig is None:
                    m.last = min(deleted_by(rel), unchanged_since)
                else:
                    # ctime: every change moves it (but a rename of a folder above it)
                    changed = mono(_ctime_ns(sig))
                    if changed < p_first:  # moved here with a folder above it
                        changed = moved_in(rel.rpartition("/")[0])
                    m.last = min(changed, unchanged_since)
                    m.changed = m.last
                    who = busy.get(rel, _mode(sig))
                    if who:
                        m.busy = busy.how(rel) + ", ".join(sorted(who)[:3])
                        m.last = inf
                        reason = reason or (m.busy if rel in cands else f"{rel} is {m.busy}")
                members.append(m)
            last = max((m.last for m in members), default=-inf)
            keys.append(k)
            firsts.append(first)
            lasts.append(last)
            holds.append(now - pending < limit)
            if reason or last > settled:
                unsettled[k] = _Group(members, last, reason)

        # The cut T: as late as possible, at most now - settle, and inside no group's
        # [first, last] window (such a group was changing at T: neither its state now
        # nor the committed one is its state at T). Groups pending longer than the wait
        # limit do not hold T back.
        ghost_first = array("d")
        ghost_last = array("d")
        ghost_names: list[str] = []
        for rel in self.vanished:
            if rel in self._candidates:
                continue
            seen = memory.get(rel)
            p_first, p_appeared = (seen[2], seen[3]) if seen else (self.clean_at, now)
            # A file that an earlier look saw (not a temporary file that came and went
            # between two looks) holds T back until it is settle old, however long it
            # waited: the wait limit is for files that never stop changing. It was gone
            # by the first look that missed it (its folder may change long after).
            ghost = seen is not None and isinstance(seen[0], str)  # _SEEN_GONE, _UNSEEN_GONE
            # Every entry but an unseen ghost's says a look saw the path: a scan found it
            # (a candidate, even one its gate then found gone: no signature), it was a
            # new folder, or it was seen before and has been a ghost since. A file is
            # not temporary because the last look before it went found it gone already
            # (git's pack, replaced by the next gc while its commit waited: leaving it
            # out of the cut gave a snapshot with neither the old pack nor the new one).
            was_seen = seen is not None and seen[0] != _UNSEEN_GONE
            gone_by = seen[1] if ghost else now  # type: ignore[index]
            memory[rel] = (_SEEN_GONE if was_seen else _UNSEEN_GONE, gone_by, p_first, p_appeared)
            if was_seen or now - p_appeared < limit:
                ghost_first.append(p_first)
                ghost_last.append(min(deleted_by(rel), gone_by))
                ghost_names.append(rel)
        for rel in self.folders:
            seen = memory.get(rel)
            memory[rel] = (None, now, *((seen[2], seen[3]) if seen else (self.clean_at, now)))
        # Not after seen_at, either: a path that changed since then is in no change set
        # yet, so the commit would hold its old version at a moment it already had the
        # new one (a scan that began before a change and was slower than the settle
        # interval, on a busy machine).
        cut = min(now - settle, self.seen_at)
        self.held_by: list[str] = []  # what pulled T back, for messages
        while True:
            # the straddling group that changed first
            at, name = inf, ""
            for f, la, h, k in zip(firsts, lasts, holds, keys, strict=True):
                if h and la > cut and f <= cut and f < at:
                    at, name = f, k
            for f, la, k in zip(ghost_first, ghost_last, ghost_names, strict=True):
                if la > cut and f <= cut and f < at:
                    at, name = f, k
            if at == inf:
                break
            self.held_by.append(name)
            cut = at - 1e-6
            if cut == float("-inf"):
                break  # a group with no known clean moment: nothing can be cut before it
        self.cut = cut

        # why a group that has settled is deferred: the cut is before its last change
        held_back = (
            f"waits for {self.held_by[-1]}, which changed at about the same time"
            if self.held_by
            else "waits for files changed with it"
        )
        pause: float | None = None
        for k, last in zip(keys, lasts, strict=True):
            if last <= cut:
                continue
            cands = self._cands(k)
            g = unsettled.get(k)
            w: float | None
            if g is None:
                # settled, nobody writing it: deferred only because the cut is earlier
                why = held_back
                w = settle  # held back by the cut: look again
            else:
                young = max(g.members, key=lambda m: m.last if not m.busy else m.changed)
                if g.reason:
                    why = g.reason
                elif last > settled:
                    why = "changing" if young.rel in cands else f"{young.rel} is changing"
                else:
                    why = held_back
                # How long until trying again may let it through (None: waiting will not
                # help, e.g. a database held open by an idle connection).
                if any(m.busy for m in g.members):
                    busy_changed = max(m.changed for m in g.members if m.busy)
                    w = settle if busy_changed > settled else None
                elif last == inf or last <= settled:
                    w = settle  # to be rescanned, or held back by the cut: look again
                else:
                    w = last + settle - now
            for rel in cands:
                self.deferred[rel] = why
            if w is not None:
                w = max(w, 0.01)
                pause = w if pause is None else max(pause, w)
        self.pause = pause
        self.looked_bytes = nbytes
        keep = self._candidates
        ghosts = set(self.vanished)
        folders = set(self.folders)
        for rel in [r for r in memory if r not in keep and r not in ghosts and r not in folders]:
            del memory[rel]

    def forget_taken(self, held: Iterable[str] = ()) -> None:
        """After a commit went through: forget what the memory holds of the paths it took
        (they are as committed now; a later change of one starts afresh, from the scan
        before it). Deferred paths and ``held`` ones stay remembered, and so do paths
        that came and went, until a commit that deferred nothing was cut after they were
        gone: no later commit's moment can fall while they were there. Without this a
        mount would keep an entry for every file of its last commit (a million for a big
        initial one) until its next change."""
        keep = {*self.deferred, *held}
        memory = self.memory
        for group in (self._candidates, self.folders):
            for rel in group:
                if rel not in keep:
                    memory.pop(rel, None)
        if not keep:
            # gone by this cut: a later commit cut before it would take nothing new
            cut = self.cut
            for rel in [r for r, m in memory.items() if isinstance(m[0], str) and m[1] <= cut]:
                del memory[rel]

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
        for other in {*self._cands(k), *({rel} & self._candidates)}:
            if other not in self.deferred:
                self.deferred[other] = reason if other == rel else f"{rel} {reason}"

    def checked(self, rel: str) -> tuple[int, int, int, int] | None:
        """What candidate ``rel`` was when checked, as the mount index records a file:
        ``(size, mtime_ns, inode, permission bits)``; None if it was not a regular file
        (or is not a candidate). A commit that takes a file without reading it (a file
        moved within the folder, known by these) relies on :meth:`confirm` afterwards,
        like every other."""
        sig = self.memory.get(rel, (None,))[0] if rel in self._candidates else None
        if not isinstance(sig, bytes):
            return None
        size, mtime_ns, _ctime, ino, _dev, mode = _SIG.unpack(sig)
        if not stat.S_ISREG(mode):
            return None
        return size, mtime_ns, ino, stat.S_IMODE(mode)

    def check_read(self, rel: str, before: os.stat_result, after: os.stat_result) -> bool:
        """After reading ``rel``: True if it is the file that was checked and it did not
        change while read; else its group is deferred."""
        expected = self._sig(rel) if rel in self._candidates else None
        # The open file against the path's lstat: size, times and mode (some stacked file
        # systems give an open file another device and inode number than its path);
        # before and after the read, all of it.
        was = signature(before)
        if expected is None or was != signature(after) or not _same_content(was, expected):
            self.defer(rel, "changed while being read")
            return False
        return True

    def confirm(self) -> dict[str, str]:
        """Re-check every member of every group still to be committed; defer each group in
        which anything changed since it was checked. Returns :attr:`deferred`."""
        top = f"{self.root}/"
        deferred = self.deferred
        sig = self._sig
        memory = self.memory
        others = self._others
        lstat = os.lstat
        for k, got in self._cands_of.items():
            if type(got) is str and k not in others:
                # a group of one file (nearly all): the loop below, without its lists
                # (10,000 files: 0.047 -> 0.030 s)
                if got in deferred:
                    continue
                try:
                    was: Sig | None = signature(lstat(top + got))
                except OSError:
                    was = None
                if was != memory[got][0]:
                    self.defer(got, "changed while the commit was read")
                continue
            cands = self._cands(k)
            if any(rel in deferred for rel in cands):
                continue
            for rel in [*self._others.get(k, ()), *sorted(cands)]:
                try:
                    now: Sig | None = signature(os.lstat(top + rel))
                except OSError:
                    now = None
                if now != sig(rel):
                    self.defer(rel, "changed while the commit was read")
                    break
        return self.deferred
