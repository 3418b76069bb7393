"""Background commits of files that other processes are writing give consistent snapshots.

Real writers in real processes: a SQLite database in WAL mode (Python's ``sqlite3`` in a
child process), a git repository committed to in a loop (the ``git`` program, with
``git gc``). Every snapshot the mount committed is read back from the volume's history
into a fresh folder and checked by the writer's own tool (``PRAGMA integrity_check``,
``git fsck --full``). The rules themselves (writers found through ``/proc``, groups,
the settle interval, the re-check after reading) are tested directly as well.
"""

from __future__ import annotations

import io
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest

from jupyter_volume import InvalidError, Volume, VolumeBusyError, quiet
from jupyter_volume.quiet import Gate, Groups, Policy, Writers, no_writer, writers

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# Short intervals keep the tests quick; the rules are the same at the defaults.
INTERVAL = 0.1
SETTLE = 0.3
STILL = 1.0  # for the Gate tests: "just changed" must stay young however slow the machine

if shutil.which("git") is None:  # pragma: no cover - the test image has it
    raise RuntimeError("these tests need the git program: apt-get install git")


def materialize(vol: Volume, seq: int, dest: Path) -> Path:
    """Write commit ``seq`` of ``vol`` into the empty folder ``dest``, from history."""
    from jupyter_volume.volume import FileEntryType

    dest.mkdir(parents=True)
    for e in vol.listdir("/", recursive=True, at=seq):
        target = dest / e.path
        if e.type == FileEntryType.DIRECTORY:
            target.mkdir(parents=True, exist_ok=True)
        elif e.type == FileEntryType.FILE:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as f:
                for piece in vol.read_file(e.path, at=seq):
                    f.write(piece)
    return dest


def snapshot_seqs(vol: Volume) -> list[int]:
    """Every commit of the volume, oldest first (commit 0 is the empty volume)."""
    return sorted(c.seq for c in vol.history() if c.seq > 0)


# -- the rules, directly ----------------------------------------------------------------------------


def test_groups_tie_a_database_to_its_log_and_a_file_to_its_temp_siblings() -> None:
    g = Groups(Policy().groups)
    for name in ("db", "db-wal", "db-shm", "db-journal", "db-wal.tmp"):
        assert g.base(name) == "db"
    assert g.key("data/model.bin.part") == "data/model.bin"
    assert g.key("data/model.bin.incomplete") == "data/model.bin"
    assert g.key(".git/index.lock") == ".git/index"
    assert g.key("plain.txt") == "plain.txt"
    assert g.base("-wal") == "-wal"  # a name that is only the pattern's fixed part
    assert "data/model.bin.part" in g.names("data/model.bin")
    for bad in (["wal"], ["**-wal"], ["*"], ["a/*.tmp"]):
        with pytest.raises(InvalidError, match="exactly one"):
            Groups(bad)
    from traitlets import TraitError

    from jupyter_volume.config import VolumeConfig

    with pytest.raises(TraitError, match="snapshot_groups"):
        VolumeConfig(snapshot_groups=["nostar"])
    with pytest.raises(TraitError, match="settle_interval"):
        VolumeConfig(settle_interval=-1)


def test_an_endless_interval_or_wait_is_refused_where_it_is_set() -> None:
    """No thread can wait forever (it ends with OverflowError), so an infinite or NaN
    commit interval, settle interval or settle wait is refused in the config and by
    the policy, naming the setting."""
    from traitlets import TraitError

    from jupyter_volume.config import VolumeConfig

    for endless in (float("inf"), float("nan")):
        for name in ("commit_interval", "settle_interval", "settle_max_wait"):
            with pytest.raises(TraitError, match=f"{name} must .*finite"):
                VolumeConfig(**{name: endless})
        with pytest.raises(InvalidError, match="finite"):
            Policy(settle=endless)
        with pytest.raises(InvalidError, match="finite"):
            Policy(max_wait=endless)


HOLDER = """
import os, sys, time
path, how, ready = sys.argv[1], sys.argv[2], sys.argv[3]
flags = {"w": os.O_WRONLY | os.O_CREAT, "rw": os.O_RDWR | os.O_CREAT, "r": os.O_RDONLY}[how]
fd = os.open(path, flags, 0o644)
open(ready, "w").close()
time.sleep(600)
"""


def hold(path: Path, how: str, tmp: Path) -> subprocess.Popen:
    """A child process that opens ``path`` (``w``, ``rw`` or ``r``) and keeps it open."""
    ready = tmp / f"ready-{path.name}-{how}"
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), how, str(ready)])
    deadline = time.time() + 60
    while not ready.exists():
        assert p.poll() is None and time.time() < deadline, "the holder did not start"
        time.sleep(0.02)
    return p


def test_writers_are_found_in_other_processes_not_readers(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    (folder / "sub").mkdir(parents=True)
    (folder / "read.txt").write_text("r")
    procs = [
        hold(folder / "w.txt", "w", tmp_path),
        hold(folder / "sub/rw.db", "rw", tmp_path),
        hold(folder / "read.txt", "r", tmp_path),
        hold(tmp_path / "outside.txt", "w", tmp_path),
    ]
    try:
        own = open(folder / "own.txt", "w")  # noqa: SIM115 - held open on purpose
        try:
            found = writers(folder)
        finally:
            own.close()
        assert set(found) == {"w.txt", "sub/rw.db", "own.txt"}
        assert found["w.txt"][0].startswith(f"{procs[0].pid} ")
        assert found["sub/rw.db"][0].startswith(f"{procs[1].pid} ")
        assert found["own.txt"][0].startswith(f"{os.getpid()} ")
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert writers(folder) == {}  # exited processes hold nothing


def test_the_kernel_lease_finds_every_writer_the_scan_finds_and_mappings_too(
    tmp_path: Path,
) -> None:
    import mmap

    folder = tmp_path / "f"
    folder.mkdir()
    for name in ("read.txt", "closed.txt", "mapped.bin"):
        (folder / name).write_bytes(b"x" * 10)
    procs = [
        hold(folder / "w.txt", "w", tmp_path),
        hold(folder / "rw.db", "rw", tmp_path),
        hold(folder / "read.txt", "r", tmp_path),
    ]
    (folder / "link-to-w").symlink_to("w.txt")
    try:
        with open(folder / "mapped.bin", "r+b") as f:
            mapped = mmap.mmap(f.fileno(), 10)  # a writable mapping outlives the file
        try:
            for name, busy in [
                ("w.txt", True),
                ("rw.db", True),
                ("mapped.bin", True),
                ("read.txt", False),
                ("closed.txt", False),
                ("missing.txt", False),
                ("link-to-w", False),  # what is open is its target, under another path
            ]:
                assert no_writer(str(folder / name)) is not busy, name
            # Few paths: the kernel answers for files nobody writes; the scan names writers.
            few = Writers(folder, 3)
            assert few.get("closed.txt") == [] and few._scan is None
            assert few.get("w.txt")[0].startswith(f"{procs[0].pid} ") and few._scan is not None
            # Many paths: one scan answers all.
            many = Writers(folder, 1000)
            assert many.get("closed.txt") == [] and many._scan is not None
            assert many.get("rw.db")[0].startswith(f"{procs[1].pid} ")
        finally:
            mapped.close()
    finally:
        for p in procs:
            p.kill()
            p.wait()


LEASE_RACE = """
import subprocess, sys
from jupyter_volume.quiet import no_writer
path = sys.argv[1]
open(path, "w").close()
loop = "import time\\nend = time.monotonic() + 2\\nwhile time.monotonic() < end:\\n"
opener = subprocess.Popen([sys.executable, "-c", loop + f"    open({path!r}, 'a').close()"])
asked = busy = 0
while opener.poll() is None:
    asked += 1
    busy += not no_writer(path)
print(asked, busy)
"""


def test_a_writer_opening_the_file_while_we_hold_the_lease_does_not_kill_us(
    tmp_path: Path,
) -> None:
    # Breaking a lease signals its holder; the default signal (SIGIO) ends a process. A
    # real writer opens the file in a loop for 2 s while this child asks about it in a
    # loop: some opens land while the lease is held (without the change of signal the
    # child dies within the first second).
    run = subprocess.run(
        [sys.executable, "-c", LEASE_RACE, str(tmp_path / "f")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, (run.returncode, run.stderr)
    asked, busy = map(int, run.stdout.split())
    assert 0 < busy < asked  # the two overlapped, and the file was free in between


def test_a_gate_of_a_few_files_nobody_writes_reads_no_process_descriptors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "f"
    root.mkdir()
    for name in ("a", "b", "c-wal", "c"):
        (root / name).write_bytes(b"x")
    (root / "link").symlink_to("b")

    def no_scan(_root: object) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        raise AssertionError("scanned every process's descriptors")

    monkeypatch.setattr(quiet, "scan_writers", no_scan)
    gate = Gate(root, ["a", "b", "c", "link"], [], Policy(settle=0))
    assert gate.deferred == {}
    with open(root / "b", "ab"), pytest.raises(AssertionError, match="scanned"):
        Gate(root, ["a", "b", "c"], [], Policy(settle=0))  # a writer: the scan names it


def test_gate_settles_groups_and_rechecks_after_reading(tmp_path: Path) -> None:
    root = tmp_path / "f"
    root.mkdir()
    policy = Policy(settle=STILL)
    for name in ("db", "db-wal", "alone.txt", "gone-folder-sibling"):
        (root / name).write_bytes(b"x" * 100)
    (root / "gone-folder-sibling").unlink()  # the folder changed just now
    memory: dict = {}
    gate = Gate(root, ["db-wal", "alone.txt"], ["gone"], policy, memory)
    # all just written: nothing is quiet yet, and waiting helps
    assert set(gate.deferred) == {"db-wal", "alone.txt", "gone"}
    assert gate.pause is not None and 0 < gate.pause <= STILL
    time.sleep(STILL + 0.05)
    gate = Gate(root, ["db-wal", "alone.txt"], ["gone"], policy, memory)
    assert gate.deferred == {} and gate.pause is None
    # the unchanged main file of the group changes while the commit reads: the group waits,
    # the file that is not in it goes ahead
    with open(root / "alone.txt", "rb") as f:
        before = os.fstat(f.fileno())
        f.read()
        assert gate.check_read("alone.txt", before, os.fstat(f.fileno()))
    with open(root / "db", "ab") as f:
        f.write(b"checkpoint")
    held = gate.confirm()
    assert set(held) == {"db-wal"} and "db changed" in held["db-wal"]
    # a file that changes between its check and its reading is refused at the read
    time.sleep(STILL + 0.05)
    gate = Gate(root, ["alone.txt"], [], policy, memory)
    assert gate.ready("alone.txt")
    (root / "alone.txt").write_bytes(b"y" * 100)
    st = os.stat(root / "alone.txt")
    assert not gate.check_read("alone.txt", st, st)
    assert "changed while being read" in gate.deferred["alone.txt"]


def test_gate_groups_siblings_in_a_folder_it_lists(tmp_path: Path) -> None:
    # With many candidates in one folder the gate lists it once instead of probing each
    # sibling name: the groups must come out the same.
    root = tmp_path / "f"
    root.mkdir()
    policy = Policy(settle=0.0)
    plain = [f"plain-{i:02d}.csv" for i in range(40)]
    for name in (*plain, "db", "db-wal", "solo-wal", "x.tmp"):
        (root / name).write_bytes(b"x" * 10)
    time.sleep(0.1)
    clean_at = time.monotonic()  # as if the last scan began after they were written
    with open(root / "db-wal", "ab"):  # this process holds the log open for writing
        gate = Gate(root, [*plain, "db", "solo-wal", "x.tmp"], [], policy, {}, clean_at=clean_at)
        # db waits for its log (not a candidate, but a member of its group)
        assert set(gate.deferred) == {"db"}
        assert "db-wal is open for writing by" in gate.deferred["db"]
        # a sibling whose main file does not exist, and a temp sibling, stand alone
        for name in (*plain, "solo-wal", "x.tmp"):
            assert gate.ready(name)
    gate = Gate(root, [*plain, "db", "solo-wal", "x.tmp"], [], policy, {})
    assert gate.deferred == {}
    # every member is checked again at the end, the non-candidate log too
    with open(root / "db-wal", "ab") as f:
        f.write(b"more")
    (root / "plain-07.csv").write_bytes(b"changed")
    held = gate.confirm()
    assert set(held) == {"db", "plain-07.csv"}
    assert held["db"] == "db-wal changed while the commit was read"


@pytest.mark.parametrize("n", [30, quiet.LEASE_UP_TO + 10], ids=["few", "many"])
def test_a_gate_decides_single_files_as_it_decides_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n: int
) -> None:
    """A group of one file takes a short path through the gate (nearly every group of a
    big commit); the general one must decide the same: busy, vanished, changed while
    read, settled or not, remembered from an earlier gate. With few candidates the
    kernel is asked about writers path by path, with many all processes are looked at
    once: both ways."""
    plain = [f"p{i:02d}.csv" for i in range(n)]
    cands = [*plain, "busy.txt", "db", "vanished.txt"]

    def decide(general: bool, settle: float) -> tuple:
        root = tmp_path / f"{general}-{settle}"
        root.mkdir()
        for name in (*plain, "busy.txt", "db", "db-wal"):
            (root / name).write_bytes(b"x" * 10)
        # every group probes its sibling names: the general loop for all
        monkeypatch.setattr(quiet, "_LIST_DIR_AT", 10**9 if general else 16)
        time.sleep(0.1)
        clean_at = time.monotonic()  # as if the last scan began after they were written
        memory: dict = {}
        Gate(root, cands, [], Policy(settle=settle), memory, clean_at=clean_at)  # a first look
        (root / "p03.csv").write_bytes(b"changed")  # changed since that look
        with open(root / "busy.txt", "ab"):
            gate = Gate(root, cands, [], Policy(settle=settle), memory, clean_at=clean_at)
        (root / "p05.csv").write_bytes(b"y" * 10)  # changed while the commit was read
        held = dict(gate.confirm())
        return held, {rel: seen[0] is None for rel, seen in memory.items()}, gate.pause is None

    for settle in (0.0, 60.0):
        short, general = decide(False, settle), decide(True, settle)
        assert short == general
        held = short[0]
        assert held["busy.txt"].startswith("open for writing by ")
        assert held["vanished.txt"] == "vanished.txt changed since the scan"
        if settle:  # everything was written just now: nothing has settled
            assert set(held) == set(cands) and held["p03.csv"] == "changing"
        else:  # the commit stands for the moment before the busy file's pending change
            assert set(held) == {"busy.txt", "vanished.txt", "p03.csv", "p05.csv"}
            assert held["p03.csv"].startswith("waits for ")
            assert held["p05.csv"] == "changed while the commit was read"


MAPPER = r"""
import ctypes, mmap, os, sys, time
path, signals, size, fills = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
if os.fstat(fd).st_size != size:
    os.ftruncate(fd, size)
addr = libc.mmap(None, size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
assert addr != ctypes.c_void_p(-1).value, ctypes.get_errno()
os.close(fd)  # as native programs may: the mapping stays, no descriptor does
open(os.path.join(signals, "mapped"), "w").close()
for i, c in enumerate(fills):
    while not os.path.exists(os.path.join(signals, f"go{i}")):
        time.sleep(0.01)
    ctypes.memset(addr, ord(c), size)
    open(os.path.join(signals, f"done{i}"), "w").close()
libc.munmap(addr, size)
"""


class Mapper:
    """A child process that maps ``path`` for writing with the C library, closes its
    descriptor (what Python's ``mmap`` module never does, and native programs may do),
    then fills the whole mapping with each of
    ``fills`` in turn, one per :meth:`step`, and unmaps it. Only the first write to a
    page after the kernel wrote it back moves the file's mtime; later ones to the same
    pages change its bytes and no stat field, and inotify reports none of them."""

    def __init__(self, path: Path, size: int, fills: str, tmp: Path) -> None:
        self.signals = tmp / f"signals-{path.name}"
        self.signals.mkdir()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", MAPPER, str(path), str(self.signals), str(size), fills]
        )
        self.fills, self.steps = fills, 0
        self._wait("mapped")

    def _wait(self, name: str) -> None:
        deadline = time.time() + 60
        while not (self.signals / name).exists():
            assert self.proc.poll() is None and time.time() < deadline, f"mapper: no {name}"
            time.sleep(0.01)

    def step(self) -> None:
        (self.signals / f"go{self.steps}").touch()
        self._wait(f"done{self.steps}")
        self.steps += 1

    def finish(self) -> None:
        assert self.proc.wait(60) == 0

    def abandon(self) -> None:
        """End the child if a failing test left it waiting for a step."""
        if self.steps < len(self.fills) and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_a_file_mapped_for_writing_is_busy_until_unmapped(local_store, tmp_path: Path) -> None:
    # A file another process maps for writing changes without its mtime moving: a
    # commit that read it meanwhile would never see the later writes, and the volume
    # would keep a version the folder no longer has. It waits like an open file.
    vol = Volume.lookup("vol", create_if_missing=True, store=local_store)
    mnt = tmp_path / "mnt"
    m = vol.mount(mnt, background=False, settle=SETTLE, settle_max_wait=0.5)
    size = 64 << 10
    mapper = Mapper(mnt / "features.bin", size, "AB", tmp_path)
    try:
        assert set(writers(mnt)) == {"features.bin"}
        assert str(mapper.proc.pid) in writers(mnt)["features.bin"][0]
        assert Writers(mnt, 1).get("features.bin") != []  # the lease, then the scan, say so
        mapper.step()  # A everywhere
        time.sleep(SETTLE + 0.2)  # settled by its times, yet still mapped
        with pytest.warns(UserWarning, match="features.bin"):
            assert m.commit() is None
        why = m.status().deferred["features.bin"]
        assert "mapped for writing by" in why and str(mapper.proc.pid) in why
        mapper.step()  # B everywhere, no stat field moves
    finally:
        mapper.abandon()
    mapper.finish()
    assert m.commit() is not None
    assert b"".join(vol.read_file("features.bin")) == b"B" * size
    assert m.status().deferred == {}
    m.unmount()


def test_a_remount_leaves_a_file_mapped_for_writing_until_it_is_unmapped(
    store, tmp_path: Path
) -> None:
    # No event tells the change journal that a committed file was mapped and written:
    # the scan that finds it is a full one (here the mount's commit of edits left from
    # before). Read then, its later writes would move nothing, and the unmapping (a
    # close the journal does report) would show a file "as committed": the volume would
    # keep C while the folder holds D. It waits for the unmapping instead.
    vol = Volume.lookup("vol", create_if_missing=True, store=store)
    mnt = tmp_path / "mnt"
    size = 64 << 10
    m = vol.mount(mnt, background=False, settle=SETTLE, settle_max_wait=0.5)
    (mnt / "features.bin").write_bytes(b"A" * size)
    assert m.commit() is not None
    m.unmount()
    mapper = Mapper(mnt / "features.bin", size, "CD", tmp_path)
    try:
        mapper.step()  # C: the first write to each page moves mtime
        time.sleep(SETTLE + 0.2)
        with pytest.warns(UserWarning, match="mapped for writing"):
            m = vol.mount(mnt, background=False, settle=SETTLE, settle_max_wait=0.5)
        assert b"".join(vol.read_file("features.bin")) == b"A" * size
        mapper.step()  # D: the same pages again, nothing moves
    finally:
        mapper.abandon()
    mapper.finish()
    info = m.commit()
    assert info is not None and info.modified == 1
    assert b"".join(vol.read_file("features.bin")) == b"D" * size
    m.unmount()


def test_a_reload_never_replaces_a_file_a_program_is_writing(local_store, tmp_path: Path) -> None:
    # Another writer changed log.txt while a program here holds it open for appending.
    # Renaming the new version over it would leave the program appending to a file with
    # no name: everything it writes from then on lost. The reload refuses instead.
    vol = Volume.lookup("vol", create_if_missing=True, store=local_store)
    mnt = tmp_path / "mnt"
    m = vol.mount(mnt, background=False, settle=SETTLE)
    (mnt / "log.txt").write_text("one\n")
    (mnt / "other.txt").write_text("a")
    assert m.commit() is not None
    with vol.batch_upload(force=True) as batch:
        batch.put_file(io.BytesIO(b"theirs\n"), "log.txt")
        batch.put_file(io.BytesIO(b"b"), "other.txt")
    inode = (mnt / "log.txt").stat().st_ino
    holder = hold(mnt / "log.txt", "w", tmp_path)
    try:
        with pytest.raises(VolumeBusyError, match="log.txt") as e:
            m.reload()
        assert e.value.paths == ["log.txt"] and str(holder.pid) in str(e.value)
        assert (mnt / "log.txt").stat().st_ino == inode  # untouched, as is everything else
        assert (mnt / "other.txt").read_text() == "a"
    finally:
        holder.kill()
        holder.wait()
    m.reload()
    assert (mnt / "log.txt").read_text() == "theirs\n" and (mnt / "other.txt").read_text() == "b"
    m.unmount()


def test_a_mount_forgets_what_its_commits_took(local_store, tmp_path: Path) -> None:
    # What the quiet gate remembers of a path matters only while the path waits: a mount
    # that kept an entry for every file of its last commit would hold a million of them
    # after a big initial commit. (The memory is private; looked at directly here.)
    vol = Volume.lookup("vol", create_if_missing=True, store=local_store)
    mnt = tmp_path / "mnt"
    m = vol.mount(mnt, background=False, settle=SETTLE, settle_max_wait=0.5)
    for i in range(50):
        (mnt / f"f{i}.txt").write_text(str(i))
    (mnt / "busy.txt").write_text("open")
    holder = hold(mnt / "busy.txt", "rw", tmp_path)
    try:
        with pytest.warns(UserWarning, match="busy.txt"):
            info = m.commit()
        assert info is not None and info.added == 50
        assert set(m._quiet_memory) == {"busy.txt"}  # only what waits is remembered
    finally:
        holder.kill()
        holder.wait()
    assert m.commit() is not None
    assert m._quiet_memory == {}
    m.unmount()


def test_gate_cuts_the_commit_at_one_moment(tmp_path: Path) -> None:
    """A deferred path keeps its committed version; that is only right if it was still
    that version at the moment the commit stands for (git gc deletes loose objects that
    were never committed after the index naming them was written: neither may go)."""
    root = tmp_path / "f"
    (root / "objects").mkdir(parents=True)
    policy = Policy(settle=STILL)
    before_both = time.monotonic()  # the last scan before the writer started
    (root / "objects/o1").write_bytes(b"object")
    (root / "index").write_bytes(b"names o1")
    time.sleep(STILL + 0.05)  # the index is quiet now
    after_index = time.monotonic()  # a scan here found the index changed, o1 as committed
    (root / "objects/o1").unlink()  # ... and now o1 goes: a fresh change

    # o1 changed both before and after the index: no moment has the index without o1
    gate = Gate(root, ["index"], ["objects/o1"], policy, {}, clean_at=before_both)
    assert set(gate.deferred) == {"index", "objects/o1"}
    assert "waits for objects/o1, which changed at about the same time" in gate.deferred["index"]
    assert gate.pause is not None  # it is worth looking again

    # o1 was as committed when the index was already written: the index alone goes
    gate = Gate(root, ["index"], ["objects/o1"], policy, {}, clean_at=after_index)
    assert set(gate.deferred) == {"objects/o1"}
    assert gate.ready("index")

    # a group that has waited longer than the limit no longer holds the others back (a
    # file held open for writing: it changed after the last scan and is never quiet)
    impatient = Policy(settle=STILL, max_wait=0.2)
    memory: dict = {}
    with open(root / "objects/o2", "wb") as held:
        held.write(b"being written")
        gate = Gate(root, ["index", "objects/o2"], [], impatient, memory, clean_at=before_both)
        assert set(gate.deferred) == {"index", "objects/o2"}
        time.sleep(0.25)
        gate = Gate(root, ["index", "objects/o2"], [], impatient, memory, clean_at=before_both)
        assert set(gate.deferred) == {"objects/o2"}
        assert "open for writing" in gate.deferred["objects/o2"]


def test_a_file_a_scan_found_holds_the_cut_back_after_it_is_gone(tmp_path: Path) -> None:
    """git gc replaces its pack while a commit waits for other files. The old pack's
    deletion may be taken only at a moment the new pack existed; once the new one is
    gone too (the next gc), the cut must stay before it appeared. A scan found it, even
    though the gate after that scan found it gone already: that makes it no temporary
    file, and the wait limit does not let it go (it did: a snapshot with neither pack)."""
    root = tmp_path / "f"
    (root / "pack").mkdir(parents=True)
    impatient = Policy(settle=STILL, max_wait=0.2)
    memory: dict = {}
    before = time.monotonic()  # a scan began here and found no pack
    (root / "pack/p1").write_bytes(b"pack 1")
    gate = Gate(root, ["pack/p1"], [], impatient, memory, clean_at=before)
    assert gate.deferred == {"pack/p1": "changing"}
    time.sleep(0.25)  # longer than the wait limit
    mid = time.monotonic()  # the next scan began: p1 was still there, and it found it
    (root / "pack/p1").unlink()  # ... but it was gone by the time its gate looked
    gate = Gate(root, ["pack/p1"], [], impatient, memory, clean_at=before)
    assert gate.deferred == {"pack/p1": "pack/p1 changed since the scan"}
    time.sleep(STILL + 0.05)
    # A file that started changing while p1 was there pulls the cut back to then, when
    # p1 existed: p1 cannot be committed (its bytes are gone), so the cut goes further.
    (root / "index").write_bytes(b"names what p1 held")
    gate = Gate(root, ["index"], [], impatient, memory, clean_at=mid, vanished=["pack/p1"])
    assert gate.held_by[-1] == "pack/p1"
    assert gate.cut < before


def test_gate_cuts_no_later_than_the_scan_that_found_the_changes_began(tmp_path: Path) -> None:
    """A scan slowed down past the settle interval (a busy machine) has not seen what
    changed after it began. A cut after that moment would take what the scan found and
    hold the old version of what changed beside it, unseen."""
    root = tmp_path / "f"
    root.mkdir()
    policy = Policy(settle=STILL)
    before = time.monotonic()
    scan_began = time.monotonic()
    (root / "a").write_bytes(b"written after the scan began")
    time.sleep(STILL + 0.05)  # settled, by the clock
    gate = Gate(root, ["a"], [], policy, {}, clean_at=before, seen_at=scan_began)
    assert set(gate.deferred) == {"a"}
    assert gate.cut <= scan_began
    assert gate.pause is not None  # the next scan begins later: worth looking again
    gate = Gate(root, ["a"], [], policy, {}, clean_at=before, seen_at=time.monotonic())
    assert gate.ready("a")


def test_a_mount_cuts_after_its_scan_began_only_while_nothing_changed_since(
    local_store, tmp_path: Path
) -> None:
    """The moment a mount's change set is complete until (the gate's ``seen_at``): the
    commit's own, while the change journal has seen no change since the scan took its
    list (so a commit right after a program wrote its files takes them at once); else
    the moment the scan began."""
    vol = Volume.lookup("vol", create_if_missing=True, store=local_store)
    mnt = tmp_path / "mnt"
    m = vol.mount(mnt, background=False)
    m._changes()
    began = m._scan_at
    assert m._known_until() > began
    (mnt / "late").write_bytes(b"a change this scan did not see")
    assert m._known_until() == began
    m.unmount()


def test_a_full_scan_still_names_the_files_earlier_looks_saw_that_are_gone(
    local_store, tmp_path: Path
) -> None:
    """The change journal names a path once, and a full scan (once the journal lost
    track, and at unmount) names nothing that came and went. The gate's memory still
    knows what earlier looks saw: a file seen and gone since keeps holding the cut back
    (see the test above), whichever kind of scan comes next."""
    vol = Volume.lookup("vol", create_if_missing=True, store=local_store)
    mnt = tmp_path / "mnt"
    m = vol.mount(mnt, background=False, settle=STILL, settle_max_wait=0.0)
    (mnt / "pack-2").write_bytes(b"objects")
    with pytest.warns(UserWarning, match="pack-2"):
        assert m.commit() is None  # still changing: deferred, and seen
    (mnt / "pack-2").unlink()
    m._journal.requeue(None)  # the journal lost track, as when its queue overflows
    ch = m._changes()
    assert ch.taken is None  # so this scan looked at everything
    assert m._vanished(ch) == ["pack-2"]
    m.unmount()


def test_a_commit_that_deferred_nothing_forgets_what_was_gone_before_its_moment(
    tmp_path: Path,
) -> None:
    """Files that came and went are remembered until a commit that deferred nothing was
    cut after they were gone (no later cut can fall while they were there); one gone
    after that moment is kept for the commits to come."""
    root = tmp_path / "f"
    root.mkdir()
    policy = Policy(settle=STILL)
    memory: dict = {}
    before = time.monotonic()
    (root / "tmp-early").write_bytes(b"x")
    Gate(root, ["tmp-early"], [], policy, memory, clean_at=before)
    (root / "tmp-early").unlink()
    Gate(root, [], [], policy, memory, clean_at=before, vanished=["tmp-early"])
    (root / "a").write_bytes(b"a")
    time.sleep(STILL + 0.05)
    mid = time.monotonic()
    (root / "tmp-late").write_bytes(b"x")
    Gate(root, ["tmp-late"], [], policy, memory, clean_at=mid, vanished=["tmp-early"])
    (root / "tmp-late").unlink()
    gate = Gate(
        root, ["a"], [], policy, memory, clean_at=before, vanished=["tmp-early", "tmp-late"]
    )
    assert gate.deferred == {}
    gate.forget_taken()
    assert set(memory) == {"tmp-late"}


def test_a_group_is_committed_together_or_not_at_all(local_store, tmp_path: Path) -> None:
    vol = Volume.lookup("vol", create_if_missing=True, store=local_store)
    mnt = tmp_path / "mnt"
    m = vol.mount(mnt, background=False, settle=SETTLE, settle_max_wait=1.0)
    (mnt / "db").write_bytes(b"main v1")
    (mnt / "db-wal").write_bytes(b"log v1")
    (mnt / "other.txt").write_text("other")
    holder = hold(mnt / "db-wal", "rw", tmp_path)  # another process has the log open
    try:
        with pytest.warns(UserWarning, match=r"2 file\(s\) left for a later commit"):
            info = m.commit()
        assert info is not None
        assert {e.path for e in vol.listdir("/")} == {"other.txt"}  # neither db nor db-wal
        st = m.status()
        assert set(st.deferred) == {"db", "db-wal"}
        assert "open for writing by" in st.deferred["db"] and str(holder.pid) in st.deferred["db"]
        assert "deferred: db " in str(st)
    finally:
        holder.kill()
        holder.wait()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is left for later now
        info = m.commit()
    assert info is not None and info.added == 2
    assert b"".join(vol.read_file("db")) == b"main v1"
    assert b"".join(vol.read_file("db-wal")) == b"log v1"
    assert m.status().deferred == {}
    # a temp sibling that is still being written holds back the file it belongs with
    (mnt / "model.bin").write_bytes(b"new weights")
    with open(mnt / "model.bin.part", "wb") as f:
        f.write(b"partial")
        with pytest.warns(UserWarning, match="model.bin"):
            assert m.commit() is None
    assert set(m.status().deferred) == {"model.bin", "model.bin.part"}
    m.unmount()
    assert b"".join(vol.read_file("model.bin")) == b"new weights"


def test_remount_with_a_leftover_edit_held_open_defers_it(local_store, tmp_path: Path) -> None:
    vol = Volume.lookup("vol", create_if_missing=True, store=local_store)
    mnt = tmp_path / "mnt"
    vol.mount(mnt, background=False, settle=SETTLE).unmount()
    (mnt / "app.db").write_bytes(b"edited while unmounted")
    holder = hold(mnt / "app.db", "rw", tmp_path)
    try:
        # mounting commits leftover edits first: this one waits, and the mount still works
        with pytest.warns(UserWarning, match="app.db"):
            m = vol.mount(mnt, interval=INTERVAL, settle=SETTLE, settle_max_wait=0.5)
        assert "app.db" in m.status().deferred
    finally:
        holder.kill()
        holder.wait()
    # once it is closed, the background committer takes it without being told
    deadline = time.time() + 60
    while time.time() < deadline and "app.db" not in {e.path for e in vol.listdir("/")}:
        time.sleep(0.1)
    assert b"".join(vol.read_file("app.db")) == b"edited while unmounted"
    m.unmount()


def test_explicit_commit_waits_for_a_file_to_settle_background_defers(
    local_store, tmp_path: Path
) -> None:
    vol = Volume.lookup("vol", create_if_missing=True, store=local_store)
    mnt = tmp_path / "mnt"
    m = vol.mount(mnt, interval=3600, settle=STILL, settle_max_wait=2.0)
    (mnt / "fresh.txt").write_text("just written")
    # what the background committer does when woken (as after a cell): it must not take
    # a file this young, and it must not wait for it either
    before = vol.history()[0].seq
    with m._lock:
        m._commit_locked(None, m._changes(), kind="auto")
    assert vol.history()[0].seq == before
    assert "changing" in m.status().deferred["fresh.txt"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        info = m.commit()  # waits until it is quiet, then takes it: no warning
    assert info is not None and b"".join(vol.read_file("fresh.txt")) == b"just written"
    # a file rewritten without pause never settles: the commit takes the rest, reports it
    stop = tmp_path / "stop"
    churn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, os, time\n"
            "while not os.path.exists(sys.argv[2]):\n"
            "    open(sys.argv[1], 'w').write(str(time.time()))\n"
            "    time.sleep(0.02)\n",
            str(mnt / "ticker.txt"),
            str(stop),
        ]
    )
    try:
        time.sleep(0.2)
        (mnt / "calm.txt").write_text("calm")
        with pytest.warns(UserWarning, match="ticker.txt"):
            info = m.commit()
        assert info is not None
        names = {e.path for e in vol.listdir("/")}
        assert "calm.txt" in names and "ticker.txt" not in names
        assert "ticker.txt" in m.status().deferred
    finally:
        stop.write_text("stop")
        churn.wait(timeout=60)
    m.unmount()
    assert "ticker.txt" in {e.path for e in vol.listdir("/")}


# -- SQLite ------------------------------------------------------------------------------------------

SQLITE_WRITER = textwrap.dedent(
    """
    import os, random, sqlite3, sys, time
    path, seconds, pause, end = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    rng = random.Random(os.getpid())
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA wal_autocheckpoint=40")  # checkpoints rewrite the database file too
    con.execute("CREATE TABLE IF NOT EXISTS kv (id INTEGER PRIMARY KEY, v BLOB)")
    con.execute("CREATE TABLE IF NOT EXISTS total (n INTEGER)")
    if con.execute("SELECT count(*) FROM total").fetchone()[0] == 0:
        con.execute("INSERT INTO total VALUES (0)")
    stop = time.time() + seconds
    while time.time() < stop:
        # one transaction: rows in, rows rewritten, rows out, and the count kept with them
        con.execute("BEGIN IMMEDIATE")
        for _ in range(20):
            con.execute("INSERT INTO kv (v) VALUES (?)", (rng.randbytes(rng.randrange(200, 3000)),))
        con.execute(
            "UPDATE kv SET v = ? WHERE id IN (SELECT id FROM kv ORDER BY random() LIMIT 10)",
            (rng.randbytes(1500),),
        )
        con.execute("DELETE FROM kv WHERE id IN (SELECT id FROM kv ORDER BY random() LIMIT 5)")
        con.execute("UPDATE total SET n = (SELECT count(*) FROM kv)")
        con.execute("COMMIT")
        time.sleep(pause)
    if end == "close":
        con.close()
    else:
        os._exit(0)  # killed: the database stays with its -wal (and -shm), as after a crash
    """
)


def sqlite_writer(db: Path, seconds: float, pause: float, end: str) -> subprocess.Popen:
    """A child process writing transactions into ``db`` for ``seconds``."""
    return subprocess.Popen(
        [sys.executable, "-c", SQLITE_WRITER, str(db), str(seconds), str(pause), end],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def head_bytes(store, path: str) -> bytes | None:
    """The bytes of ``path`` at the volume's newest commit (None if it has no such file)."""
    fresh = Volume.from_name("vol", store=store)
    if path not in {e.path for e in fresh.listdir("/")}:
        return None
    return b"".join(fresh.read_file(path))


def finish(p: subprocess.Popen) -> None:
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, f"writer failed ({p.returncode}):\n{out}\n{err}"


def check_db_snapshots(vol: Volume, tmp: Path, name: str = "app.db") -> list[tuple[bytes, bytes]]:
    """Open the database of every commit that has it; each must be whole and consistent.
    Returns the distinct (database, log) pairs found, oldest first."""
    seen: list[tuple[bytes, bytes]] = []
    for seq in snapshot_seqs(vol):
        names = {e.path for e in vol.listdir("/", at=seq)}
        if name not in names:
            assert f"{name}-wal" not in names, f"commit {seq} has the log without its database"
            continue
        db = b"".join(vol.read_file(name, at=seq))
        wal = b"".join(vol.read_file(f"{name}-wal", at=seq)) if f"{name}-wal" in names else b""
        if seen and seen[-1] == (db, wal):
            continue
        seen.append((db, wal))
        where = tmp / f"snap-{seq}"
        where.mkdir()
        (where / name).write_bytes(db)
        if wal:
            (where / f"{name}-wal").write_bytes(wal)
        con = sqlite3.connect(where / name)
        try:
            assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)], (
                f"commit {seq}: the database is corrupt"
            )
            n = con.execute("SELECT n FROM total").fetchone()[0]
            assert con.execute("SELECT count(*) FROM kv").fetchone()[0] == n, (
                f"commit {seq}: a transaction is half there"
            )
        finally:
            con.close()
    return seen


def test_live_sqlite_database_with_pauses_gives_whole_snapshots(store, tmp_path: Path) -> None:
    vol = Volume.lookup("vol", create_if_missing=True, store=store)
    mnt = tmp_path / "mnt"
    m = vol.mount(mnt, interval=INTERVAL, settle=SETTLE)
    db = mnt / "app.db"
    # Bursts of transactions, then pauses; every other writer is killed instead of
    # closing, so some snapshots hold the database with its write-ahead log.
    for i in range(5):
        finish(sqlite_writer(db, 0.6, 0.01, "close" if i % 2 == 0 else "kill"))
        time.sleep(1.2)
    assert not (mnt / "app.db-wal").exists()  # the last writer closed it
    final = db.read_bytes()
    deadline = time.time() + 60
    while time.time() < deadline and head_bytes(store, "app.db") != final:
        time.sleep(0.1)
    m.unmount()
    snaps = check_db_snapshots(vol, tmp_path)
    assert len(snaps) >= 3, f"only {len(snaps)} snapshots of the database were committed"
    assert any(wal for _db, wal in snaps), "no snapshot held a database with its log"
    assert snaps[-1] == (final, b""), "the last snapshot is not the closed database"


def test_sqlite_writer_that_never_pauses_commits_nothing_corrupt(
    local_store, tmp_path: Path
) -> None:
    vol = Volume.lookup("vol", create_if_missing=True, store=local_store)
    mnt = tmp_path / "mnt"
    m = vol.mount(mnt, interval=INTERVAL, settle=SETTLE)
    db = mnt / "app.db"
    reported = False
    # writers one after the other without a pause: the files are always open or fresh
    for _ in range(3):
        w = sqlite_writer(db, 1.5, 0.0, "close")
        while w.poll() is None:
            time.sleep(0.3)
            reported = reported or "app.db" in m.status().deferred
        finish(w)
    assert reported, "the live database was never reported as deferred"
    assert m.last_error is None
    final = db.read_bytes()
    m.unmount()  # the writer has closed it: now it is committed
    snaps = check_db_snapshots(vol, tmp_path)  # none while it was written is fine; corrupt is not
    assert snaps[-1] == (final, b"")


# -- git ----------------------------------------------------------------------------------------------

GIT_LOOP = """
set -e
cd "$1"
git init -q -b main repo
cd repo
git config user.email t@example.com
git config user.name tester
git config gc.auto 0
for i in $(seq 1 "$2"); do
  echo "line $i" >> "notes$((i % 5)).txt"
  head -c 3000 /dev/urandom | base64 > "blob$i.txt"
  if [ $((i % 6)) -eq 0 ]; then rm -f "blob$((i - 3)).txt"; fi
  git add -A
  git commit -q -m "commit $i"
  if [ $((i % 8)) -eq 0 ]; then git gc -q; fi
  # pauses at first; then commits and gc without a break (longer than the wait limit)
  if [ $((i % 4)) -eq 0 ] && [ "$i" -le "$3" ]; then sleep 0.7; fi
done
git rev-parse HEAD
"""


def test_git_repository_committed_in_a_loop_gives_snapshots_that_pass_fsck(
    local_store, tmp_path: Path
) -> None:
    vol = Volume.lookup("vol", create_if_missing=True, store=local_store)
    mnt = tmp_path / "mnt"
    m = vol.mount(mnt, interval=INTERVAL, settle=SETTLE, settle_max_wait=1.0)
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path)}
    run = subprocess.run(
        ["bash", "-c", GIT_LOOP, "loop", str(mnt), "48", "16"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr
    head = run.stdout.split()[-1]
    m.unmount()
    with_head = 0
    last_head = None
    had_head = False
    seqs = snapshot_seqs(vol)
    assert len(seqs) >= 3
    for seq in seqs:
        if "repo" not in {e.path for e in vol.listdir("/", at=seq)}:
            continue
        repo = materialize(vol, seq, tmp_path / f"snap-{seq}") / "repo"
        had_head = had_head or (repo / ".git/HEAD").exists()
        if not had_head:
            # taken while `git init` ran: it copies its templates first and writes
            # HEAD last, so on disk it is no repository until then (on a busy machine
            # its steps can be further apart than the settle interval). Once one
            # snapshot has HEAD, every later one must.
            shutil.rmtree(repo.parent)
            continue
        fsck = subprocess.run(
            ["git", "-C", str(repo), "fsck", "--full", "--no-progress"],
            env=env,
            capture_output=True,
            text=True,
        )
        listing = sorted(str(p.relative_to(repo)) for p in repo.rglob("*"))
        assert fsck.returncode == 0, (
            f"commit {seq}: git fsck failed:\n{fsck.stdout}{fsck.stderr}\n{listing}"
        )
        rev = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--verify", "-q", "HEAD"],
            env=env,
            capture_output=True,
            text=True,
        )
        if rev.returncode == 0:
            with_head += 1
            last_head = rev.stdout.strip()
        shutil.rmtree(repo.parent)
    assert with_head >= 3, f"only {with_head} snapshots had a commit checked out"
    assert last_head == head
