"""A folder moved in a mount goes out as one commit: the new paths with the removal of
the old ones.

Renaming a folder leaves the ctime of everything below it as it was, so the quiet gate,
which dates a change by the changed file's ctime, saw a file that had just arrived with
its folder as settled long ago, while the removal of its old path (dated by its folder's
ctime) was fresh: the new path was committed first and the removal a round later. Other
live folders held both copies meanwhile and downloaded the file instead of renaming it.

The gate is driven with explicit times (its clocks are the test's), so what it decides
does not depend on how fast the machine is; the file times are real ones, read back.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from jupyter_volume import NetworkFileSystem, quiet
from jupyter_volume.quiet import Gate, Policy

# the polls and fixtures of the live folder tests ("env": a child's environment for the
# store; "shared": the network file system)
try:
    from .test_nfs_live import Mounter, content, env, shared, wait_for  # noqa: F401
except ImportError:  # tests/ is not a package
    from test_nfs_live import Mounter, content, env, shared, wait_for  # type: ignore[no-redef]  # noqa: F401

pytestmark = pytest.mark.timeout(300)


class Clocks:
    """The clocks :mod:`jupyter_volume.quiet` reads, set by the test.

    ``wall_ns`` fixes the wall clock (file times are compared with it); while it is None
    the wall clock is the real one plus ``wall_offset_ns``. The monotonic clock is the
    real one unless ``mono`` fixes it.
    """

    def __init__(self) -> None:
        self.wall_ns: int | None = None  # None: the real wall clock plus wall_offset_ns
        self.wall_offset_ns = 0
        self.mono: float | None = None

    def time_ns(self) -> int:
        """The wall clock the gate sees."""
        return self.wall_ns if self.wall_ns is not None else time.time_ns() + self.wall_offset_ns

    def monotonic(self) -> float:
        """The monotonic clock the gate sees."""
        return self.mono if self.mono is not None else time.monotonic()

    def at(self, wall_ns: int) -> None:
        """Both clocks at wall time ``wall_ns`` (the monotonic one counts wall seconds)."""
        self.wall_ns, self.mono = wall_ns, wall_ns / 1e9


@pytest.fixture
def clocks(monkeypatch: pytest.MonkeyPatch) -> Clocks:
    """The quiet gate's clocks, for this test to set."""
    c = Clocks()
    monkeypatch.setattr(quiet, "time", c)
    return c


def made_and_moved(root: Path) -> tuple[int, int]:
    """``root/d/f`` written, then (0.3 s later) ``d`` renamed to ``e``: the file's ctime
    and the root folder's ctime after the move (ns)."""
    (root / "d").mkdir(parents=True)
    (root / "d" / "f").write_bytes(b"data")
    written = os.lstat(root / "d" / "f").st_ctime_ns
    time.sleep(0.3)  # the move comes later than the write, by more than the times below
    os.rename(root / "d", root / "e")
    moved = os.lstat(root).st_ctime_ns
    # what the gate cannot see from the file itself: the move left its ctime as it was
    assert os.lstat(root / "e" / "f").st_ctime_ns == written
    assert moved - written >= 0.25e9
    return written, moved


def test_a_file_moved_with_its_folder_waits_for_the_removal_of_its_old_path(
    tmp_path: Path, clocks: Clocks
) -> None:
    root = tmp_path / "m"
    written, moved = made_and_moved(root)
    # The scan before found d/f as committed (0.1 s after it was written, 0.15 s or more
    # before the move); this one found e/f new and d/f gone. The gate looks at the
    # moment of the move: the move is younger than the settle interval, the file older.
    clean_at = written / 1e9 + 0.1
    policy = Policy(settle=0.05)
    memory: dict = {}
    clocks.at(moved)
    gate = Gate(root, ["e/f"], ["d/f"], policy, memory, clean_at=clean_at, folders=["e"])
    # Before the fix e/f was ready (dated by its ctime, long settled) and d/f deferred:
    # a commit with both copies, the removal a round later.
    assert set(gate.deferred) == {"e/f", "d/f"}
    assert not gate.folder_ready("e")
    assert gate.pause is not None  # worth looking again

    # still young a little later: both wait, together
    clocks.at(moved + 25_000_000)
    gate = Gate(root, ["e/f"], ["d/f"], policy, memory, clean_at=clean_at, folders=["e"])
    assert set(gate.deferred) == {"e/f", "d/f"}

    # once the move has settled, both go in one commit
    clocks.at(moved + 1_000_000_000)
    gate = Gate(root, ["e/f"], ["d/f"], policy, memory, clean_at=clean_at, folders=["e"])
    assert gate.deferred == {}
    assert gate.ready("e/f") and gate.ready("d/f") and gate.folder_ready("e")
    assert gate.checked("e/f") is not None  # known by its stat: taken as a move, not read
    assert gate.confirm() == {}


def test_a_file_moved_with_its_folder_waits_in_a_group_too(tmp_path: Path, clocks: Clocks) -> None:
    # a database and its log moved with their folder take the general path of the gate
    root = tmp_path / "m"
    (root / "d").mkdir(parents=True)
    for name in ("db", "db-wal"):
        (root / "d" / name).write_bytes(b"pages")
    written = os.lstat(root / "d" / "db-wal").st_ctime_ns
    time.sleep(0.3)
    os.rename(root / "d", root / "e")
    moved = os.lstat(root).st_ctime_ns
    clean_at = written / 1e9 + 0.1
    policy = Policy(settle=0.05)
    cands, gone = ["e/db", "e/db-wal"], ["d/db", "d/db-wal"]
    memory: dict = {}
    clocks.at(moved)
    gate = Gate(root, cands, gone, policy, memory, clean_at=clean_at)
    assert set(gate.deferred) == {*cands, *gone}
    clocks.at(moved + 1_000_000_000)
    gate = Gate(root, cands, gone, policy, memory, clean_at=clean_at)
    assert gate.deferred == {}


def test_a_file_there_before_the_scan_is_dated_by_its_folders_not_held_back(
    tmp_path: Path, clocks: Clocks
) -> None:
    # A path older than the scan before, which that scan did not report (the first
    # commit of a mount: the folder had files before it was mounted), has an old ctime
    # too. Its folders have not changed since: it is as settled as its ctime says.
    root = tmp_path / "m"
    (root / "x").mkdir(parents=True)
    (root / "x" / "old.txt").write_bytes(b"old")
    last_change = max(os.lstat(p).st_ctime_ns for p in (root, root / "x", root / "x" / "old.txt"))
    clean_at = last_change / 1e9 + 0.5  # mounted later
    clocks.at(last_change + 600_000_000)  # the first commit, 0.1 s after the mount
    gate = Gate(root, ["x/old.txt"], [], Policy(settle=0.3), {}, clean_at=clean_at)
    assert gate.deferred == {}


@pytest.mark.parametrize("store_url_env", ["local"], indirect=True)
def test_a_folder_moved_right_after_a_push_reaches_other_live_folders_as_a_rename(
    shared: NetworkFileSystem,
    env: dict[str, str],
    opened: tuple,
    tmp_path: Path,
    clocks: Clocks,
) -> None:
    # Live folder A (in this process, its gate on the test's wall clock; a settle
    # interval of an hour, so nothing settles by the real clock) and live folder B (a
    # child process). The wall clock A's gate sees is set so that, at every look while
    # the move is young, the move is younger than the settle interval and the file older.
    _, url, _ = opened
    settle = 3600.0
    clocks.wall_offset_ns = int(2 * settle * 1e9)  # everything looks two hours old: settled
    a = shared.mount(tmp_path / "a", settle=settle)
    b: Mounter | None = None
    try:
        b = Mounter("shared", url, tmp_path / "b", env)
        (a.path / "d").mkdir()
        (a.path / "d" / "f").write_bytes(b"moved, not downloaded")
        written = os.lstat(a.path / "d" / "f").st_ctime_ns
        wait_for(lambda: content(b.path / "d" / "f") == b"moved, not downloaded", "the push")
        inode = os.lstat(b.path / "d" / "f").st_ino
        time.sleep(0.2)  # so the file is at least this much older than the move
        frozen = time.time_ns()
        # a young move: at most settle - 0.05 s old; the file: at least settle + 0.15 s
        clocks.wall_ns = frozen + int((settle - 0.05) * 1e9)
        assert clocks.wall_ns - written >= (settle + 0.15) * 1e9
        os.rename(a.path / "d", a.path / "e")

        def judged() -> bool:  # A's gate has looked at the move (taken e/f, or held it)
            return "e/f" in a._deferred or any(
                e.path == "e/f" for e in shared.listdir("/", recursive=True)
            )

        wait_for(judged, "a push round that saw the move")
        clocks.wall_ns = None  # the move is two hours old now: settled
        wait_for(
            lambda: (
                content(b.path / "e" / "f") == b"moved, not downloaded"
                and not os.path.lexists(b.path / "d")
            ),
            "the move in B",
        )
    finally:
        try:
            if b is not None:
                b.stop()
        finally:
            if b is not None:
                b.kill()
            a.unmount()

    vol = shared._vol
    both, first_with_new = [], None
    for c in sorted(vol.history(), key=lambda c: c.seq):
        if c.kind in ("gc", "create"):
            continue
        paths = {e.path for e in vol.listdir("/", recursive=True, at=c.seq)}
        if {"d/f", "e/f"} <= paths:
            both.append(c.seq)
        if first_with_new is None and "e/f" in paths:
            first_with_new = paths
    # one commit: the new path and the removal of the old one together
    assert both == [], f"commits {both} hold both copies"
    assert first_with_new is not None and "d/f" not in first_with_new
    # B renamed its copy (the same file), it did not download a second one
    assert os.lstat(b.path / "e" / "f").st_ino == inode
