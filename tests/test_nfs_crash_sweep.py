"""A crash sweep of a live network file system folder: the process running it is
SIGKILLed right after its k-th store operation of one sync round, for every k of that
round, and the folder is then mounted live again (the same folder and mount state, as
a restarted kernel would).

The rounds swept: the push of an edit, of a new file, of a deletion and of a folder
rename, and a pull that brings another writer's edit, new files (a small one, and one
bigger than ``mount.SMALL_FILE`` that is downloaded after the small one is in place)
and deletion. Between the kill and the restart another writer may commit too: a newer
version of the pushed path (for a deletion: the file made again, or brought back from
history exactly as it was); for the pull, the deletion of the new small file with
another edit, or a restore of the whole volume to before the pull. The last two kills
of a round (after a push's record landed; in a pull's download) run with each of
those and with none, the others take turns.

After each restart the promises are checked:

* nothing the user wrote is lost: a change whose commit had not landed is pushed by
  the restarted mount (one commit); one whose commit had landed is never pushed again,
  above all not over the other writer's newer version (no commit at all);
* the folder ends equal to the newest commit (no ``.jv-tmp-*`` leftover, no
  half-written file, no file brought back that another writer deleted, no deletion
  lost or undone), the mount says it is clean, and another round changes nothing;
* history keeps every acknowledged version (every version a writer was told was
  committed, and the dead push's if it landed).

Each kill runs on a fresh network file system, two at a time. Every k on the local
store; on SeaweedFS (the same code above the store, slower) a sample that holds the
last two. The sweep found two ways the folder ended apart from the newest commit for
good (fixed in ``mount.py``; both failed here before): a pull killed once its small
files were in place left them recorded against the old base, so a file it brought
that another writer deleted before the restart stayed (and a restore of the base was
never applied); and a deletion pushed while the folder's base was behind the head
(the dead push, adopted on the restart) left nothing for the next reload to look at,
so a restore of that file from history never came back.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3

from jupyter_volume import NetworkFileSystem
from jupyter_volume.store import Store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # a hang guard only

KiB = 1024


def blob(tag: str, size: int) -> bytes:
    """``size`` bytes that only ``tag`` makes (incompressible, never deduplicated)."""
    return blake3(tag.encode()).digest(length=size)


# What every network file system of the sweep holds before the round: small files are
# stored inline in their tree node, the others in packs.
BASE = {
    "f.bin": blob("f v0", 64 * KiB),
    "gone.txt": b"deleted by the round",
    "dir/a.txt": b"a, in a folder that is renamed",
    "dir/b.bin": blob("b", 100 * KiB),
    "keep.txt": b"never touched",
}

# A live folder in a child process, run by hand: it mounts (with no sync round of its
# own), says "mounted", waits for a line, then makes one sync round, SIGKILLing itself
# right after the k-th store operation of that round (k=0: never; then it prints the
# round's operations as JSON and unmounts).
CHILD = textwrap.dedent(
    """
    import json, os, signal, sys, threading
    from jupyter_volume import NetworkFileSystem
    from jupyter_volume import nfs as nfs_mod, objects
    from jupyter_volume.store import open_store
    from jupyter_volume.testing.wrappers import WrappedStore

    url, name, folder, k = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

    class SigkillAfter(WrappedStore):
        armed = False
        def __init__(self, inner):
            super().__init__(inner)
            self.ops = []
            self.lock = threading.Lock()
        def _record(self, kind, key):
            if not self.armed:
                return
            with self.lock:
                self.ops.append(f"{kind} {key}")
                if k and len(self.ops) >= k:
                    sys.stderr.write(f"SIGKILL after op {k}: {kind} {key}\\n")
                    sys.stderr.flush()
                    os.kill(os.getpid(), signal.SIGKILL)

    store = SigkillAfter(open_store(url))
    nfs = NetworkFileSystem.from_name(name, store=store)
    m = nfs.mount(folder, interval=1e6, settle=0.0)
    # What other threads would read in the middle of the round, read now, so that the
    # k-th operation is the same one in every run: the retention run a first use starts,
    # and the grace period the upload keeper reads once.
    for t in list(nfs_mod._running.values()):
        t.join()
    nfs._vol._repo.gc_grace()
    # and whether the round looks that the NFS still exists: on S3 at most every 2 s
    # (by the clock: not at all now), on a local folder every time
    objects.ALIVE_EVERY = 1e9
    print("mounted", flush=True)
    sys.stdin.readline()  # the folder changed, or another writer committed
    store.armed = True
    m.sync()
    store.armed = False
    print(json.dumps(store.ops), flush=True)
    m.unmount()
    """
)


# -- what the store and the folder hold ------------------------------------------------------------
def tree_of(nfs: NetworkFileSystem, at: int | None = None) -> dict[str, bytes]:
    """Every path of the newest commit (or commit ``at``): a file's bytes, b"<dir>" for a folder."""
    vol = nfs._vol
    return {
        e.path: b"<dir>" if e.type.name == "DIRECTORY" else b"".join(vol.read_file(e.path, at=at))
        for e in vol.listdir("/", recursive=True, at=at)
    }


def folder_of(root: Path) -> dict[str, bytes]:
    """Every path under ``root``, as :func:`tree_of` gives them."""
    out: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[Path(dirpath, d).relative_to(root).as_posix()] = b"<dir>"
        for f in filenames:
            out[Path(dirpath, f).relative_to(root).as_posix()] = Path(dirpath, f).read_bytes()
    return out


def head_seq(nfs: NetworkFileSystem) -> int:
    """The newest commit's number."""
    return nfs.history(1)[0].seq


def not_in_history(nfs: NetworkFileSystem, versions: dict[str, bytes]) -> list[str]:
    """The paths of ``versions`` (path -> bytes) that no commit of the history holds
    with those bytes (only files of the right size are read)."""
    vol = nfs._vol
    missing = dict(versions)
    for c in nfs.history():
        for e in vol.listdir("/", recursive=True, at=c.seq):
            want = missing.get(e.path)
            if want is not None and e.size == len(want):
                if b"".join(vol.read_file(e.path, at=c.seq)) == want:
                    del missing[e.path]
    return sorted(missing)


# -- the rounds ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Other:
    """What another writer commits between the kill and the restart (``name`` for the
    failure messages; ``commit(nfs, base)``, ``base`` being the commit that holds
    :data:`BASE`), and what it leaves at the paths it touches (path -> bytes, None:
    nothing)."""

    name: str
    commit: Callable[[NetworkFileSystem, int], Any]
    after: dict[str, bytes | None]


@dataclass
class Round:
    """One sync round to sweep: ``change`` makes it (in the folder, or as another writer)
    before the round; ``pushed`` is what the round publishes (a pull: brings), path ->
    bytes (None: deleted); ``others`` are the ways another writer may interfere after
    the kill."""

    change: Callable[[Path, NetworkFileSystem], None]
    pushed: dict[str, bytes | None]
    others: list[Other]
    push: bool = True  # False: a pull (the folder changes nothing of its own)
    acknowledged: dict[str, bytes] = field(default_factory=dict)  # by the other writer


def write(nfs: NetworkFileSystem, path: str, data: bytes) -> None:
    """Another writer commits ``data`` at ``path`` (one API call: one commit)."""
    nfs.write_file(path, io.BytesIO(data))


def newer(path: str) -> Other:
    """Another writer commits a newer version of ``path``."""
    return Other(f"newer {path}", lambda nfs, _base: write(nfs, path, OTHERS), {path: OTHERS})


EDITED = blob("f v1, written in the live folder", 64 * KiB)
NEW = blob("new.bin, made in the live folder", 100 * KiB)
OTHERS = b"the other writer's newer version"


def _rename(mnt: Path, _nfs: NetworkFileSystem) -> None:
    """``mv dir dir2`` in the live folder."""
    os.rename(mnt / "dir", mnt / "dir2")


ROUNDS: dict[str, Round] = {
    "push-edit": Round(
        change=lambda mnt, _nfs: (mnt / "f.bin").write_bytes(EDITED),
        pushed={"f.bin": EDITED},
        others=[newer("f.bin")],
    ),
    "push-new": Round(
        change=lambda mnt, _nfs: (mnt / "new.bin").write_bytes(NEW),
        pushed={"new.bin": NEW},
        others=[newer("new.bin")],
    ),
    "push-delete": Round(
        change=lambda mnt, _nfs: (mnt / "gone.txt").unlink(),
        pushed={"gone.txt": None},
        others=[
            newer("gone.txt"),
            # brought back from history: the very entry the folder's base has
            Other(
                "restore gone.txt",
                lambda nfs, base: nfs.restore(base, "gone.txt"),
                {"gone.txt": BASE["gone.txt"]},
            ),
        ],
    ),
    "push-rename": Round(
        change=_rename,
        pushed={
            "dir/a.txt": None,
            "dir/b.bin": None,
            "dir2/a.txt": BASE["dir/a.txt"],
            "dir2/b.bin": BASE["dir/b.bin"],
        },
        others=[newer("dir2/a.txt")],
    ),
}

PULLED_EDIT = blob("f v2, by the other writer", 64 * KiB)
PULLED_SMALL = b"a small new file, by the other writer"
# bigger than mount.SMALL_FILE: downloaded on its own, after the small files are in place
PULLED_BIG = blob("big new file, by the other writer", 5 * 1024 * KiB)


def _other_writes(_mnt: Path, nfs: NetworkFileSystem) -> None:
    """What the pull brings: another writer's edit, two new files and a deletion."""
    write(nfs, "f.bin", PULLED_EDIT)
    write(nfs, "new-small.txt", PULLED_SMALL)
    write(nfs, "new-big.bin", PULLED_BIG)
    nfs.remove_file("gone.txt")


def _other_writes_again(nfs: NetworkFileSystem, _base: int) -> None:
    """After the kill: the new small file deleted again, the edited file edited again."""
    nfs.remove_file("new-small.txt")
    write(nfs, "f.bin", OTHERS)


ROUNDS["pull"] = Round(
    change=_other_writes,
    pushed={
        "f.bin": PULLED_EDIT,
        "new-small.txt": PULLED_SMALL,
        "new-big.bin": PULLED_BIG,
        "gone.txt": None,
    },
    others=[
        Other(
            "delete new-small.txt, edit f.bin",
            _other_writes_again,
            {"new-small.txt": None, "f.bin": OTHERS},
        ),
        # everything back as it was: the newest commit's tree is the folder's base's again
        Other(
            "restore the base",
            lambda nfs, base: nfs.restore(base),
            {
                "f.bin": BASE["f.bin"],
                "gone.txt": BASE["gone.txt"],
                "new-small.txt": None,
                "new-big.bin": None,
            },
        ),
    ],
    push=False,
    acknowledged={"f.bin": PULLED_EDIT, "new-small.txt": PULLED_SMALL, "new-big.bin": PULLED_BIG},
)


# -- one run ------------------------------------------------------------------------------------------------
@dataclass
class Killed:
    """What one killed (or, k=0, counted) run left: the child's output, the commit that
    holds :data:`BASE` and the newest commit just before the round."""

    name: str
    folder: Path
    base: int
    before: int
    returncode: int
    stdout: str
    stderr: str


def fresh_nfs(store: Store, src: Path) -> NetworkFileSystem:
    """A new network file system holding :data:`BASE` (one commit)."""
    nfs = NetworkFileSystem.from_name(
        f"sweep-{uuid.uuid4().hex[:10]}", store=store, create_if_missing=True
    )
    nfs.add_local_dir(src, "/")
    return nfs


def run_round(
    opened: tuple[Store, str, dict[str, str]],
    src: Path,
    root: Path,
    rnd: Round,
    k: int,
    tag: str = "",
) -> Killed:
    """A child mounts a fresh network file system live (in folder ``k<k><tag>`` of
    ``root``), ``rnd`` changes things, and the child runs one sync round, SIGKILLed
    after its k-th store operation (k=0: never)."""
    store, url, extra = opened
    nfs = fresh_nfs(store, src)
    base = head_seq(nfs)
    folder = root / f"k{k}{tag}"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, nfs.name, str(folder), str(k)],  # type: ignore[list-item]
        # a cache of its own: chunks another run cached would spare it store operations
        env={**os.environ, **extra, "JUPYTER_VOLUME_CACHE_DIR": str(root / f"cache-k{k}{tag}")},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = child.stdout.readline()  # type: ignore[union-attr]
        if line.strip() != "mounted":
            child.kill()
            _, err = child.communicate(timeout=60)
            raise AssertionError(f"the live folder did not mount: {line}{err}")
        assert folder_of(folder) == tree_of(nfs)
        rnd.change(folder, nfs)
        before = head_seq(nfs)
        out, err = child.communicate("go\n", timeout=300)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return Killed(nfs.name, folder, base, before, child.returncode, out, err)  # type: ignore[arg-type]


def check_restart(
    store: Store, rnd: Round, k: int, other: Other | None, run: Killed
) -> tuple[bool, str, frozenset[str]]:
    """Mount ``run``'s folder live again after the kill (``other`` commits first, if
    given) and check every promise. Returns (the dead round's push had landed, the
    other writer's name or "", the paths the kill left in the folder)."""
    # (a child that made fewer operations than the counted run prints them)
    assert run.returncode == -signal.SIGKILL, (k, run.returncode, run.stdout, run.stderr[-3000:])
    assert f"SIGKILL after op {k}:" in run.stderr, (k, run.stderr[-3000:])
    nfs = NetworkFileSystem.from_name(run.name, store=store)
    landed = rnd.push and head_seq(nfs) > run.before
    if rnd.push and landed:
        # the round published nothing but its change (nothing else changed meanwhile)
        assert head_seq(nfs) == run.before + 1, k
    if not rnd.push:
        assert head_seq(nfs) == run.before, k  # a pull commits nothing
    acknowledged = {**BASE, **rnd.acknowledged}
    if landed:
        acknowledged.update({p: d for p, d in rnd.pushed.items() if d is not None})
    if other is not None:
        other.commit(nfs, run.base)
        acknowledged.update({p: d for p, d in other.after.items() if d is not None})
    at_restart = head_seq(nfs)
    left = frozenset(folder_of(run.folder))
    where = f"{k=} {landed=} other={other.name if other else None}"

    m = nfs.mount(run.folder)  # live again: pushes what is left, then pulls
    try:
        newest = tree_of(nfs)
        here = folder_of(run.folder)
        assert not [p for p in here if ".jv-tmp-" in p], (where, sorted(here))
        assert here == newest, (where, sorted(set(here) ^ set(newest)))
        if rnd.push and not landed:
            # the change never reached the store: the restart pushed it, once, and it
            # wins over what the other writer committed meanwhile (the newer commit)
            assert head_seq(nfs) == at_restart + 1, where
            want = dict(rnd.pushed)
        else:
            # it had landed (or it was a pull): nothing is pushed again, above all not
            # over the other writer's newer version
            assert head_seq(nfs) == at_restart, where
            want = {**rnd.pushed, **(other.after if other else {})}
        for p, data in want.items():
            assert newest.get(p) == data, (where, p, newest.get(p, b"<absent>")[:40])
        assert newest["keep.txt"] == BASE["keep.txt"], where
        st = m.status()
        assert st.clean and not st.waiting, (where, str(st))
        assert not not_in_history(nfs, acknowledged), (where, not_in_history(nfs, acknowledged))
        final = head_seq(nfs)
        m.sync()  # and it keeps syncing: a round after the restart changes nothing
        assert head_seq(nfs) == final, where
        assert folder_of(run.folder) == tree_of(nfs), where
    finally:
        m.unmount()
    return landed, other.name if other else "", left


def sweep(
    opened: tuple[Store, str, dict[str, str]], tmp_path: Path, which: str, every: bool
) -> list[tuple[int, bool, str, frozenset[str]]]:
    """Count the operations of round ``which``, then kill it after each of them (not
    ``every``: after the first, every third and the last two) and check each restart;
    returns (k, *what check_restart returns) per run.

    The last two kills (after a push's record, in a pull's download) run with each other
    writer and with none; the others take turns (the first with none).
    """
    store = opened[0]
    rnd = ROUNDS[which]
    src = tmp_path / "base"
    if not src.exists():
        for p, data in BASE.items():
            (src / p).parent.mkdir(parents=True, exist_ok=True)
            (src / p).write_bytes(data)
    root = tmp_path / which
    root.mkdir()
    ways = len(rnd.others) + 1

    def kill(t: tuple[int, int]) -> Killed:
        return run_round(opened, src, root, rnd, t[0], f"-{t[1]}")

    with ThreadPoolExecutor(max_workers=2) as pool:  # the kills, two at a time
        # the counted run beside the first kill (a round makes at least 3 operations)
        counting = pool.submit(run_round, opened, src, root, rnd, 0)
        first = pool.submit(kill, (1, 0))
        counted = counting.result()
        assert counted.returncode == 0, counted.stderr[-3000:]
        ops = json.loads(counted.stdout.strip().splitlines()[-1])
        n = len(ops)
        assert n >= 3, ops
        early = [k for k in range(2, n - 1) if every or k % 3 == 1]
        todo = [(1, 0), *((k, (turn + 1) % ways) for turn, k in enumerate(early))]
        todo += [(k, i) for k in (n - 1, n) for i in range(ways)]
        runs = [first.result(), *pool.map(kill, todo[1:])]
    return [  # the restarts, one after the other
        (k, *check_restart(store, rnd, k, rnd.others[i - 1] if i else None, run))
        for (k, i), run in zip(todo, runs, strict=True)
    ]


@pytest.mark.parametrize("which", sorted(ROUNDS))
def test_a_live_folder_killed_after_any_store_operation_of_a_round_loses_nothing(
    opened: tuple[Store, str, dict[str, str]], tmp_path: Path, which: str
) -> None:
    """Round ``which`` killed after each of its store operations, restarted, and checked
    (see the module docstring)."""
    # every k on the local store; on SeaweedFS (slower; the same code above the store)
    # a sample that holds the last two
    outcomes = sweep(opened, tmp_path, which, every=not opened[1].startswith("s3://"))
    if ROUNDS[which].push:
        # the sweep reached both sides of the commit record, and every other writer met
        # a push that had landed
        landed_ways = {other for _k, landed, other, _t in outcomes if landed}
        assert landed_ways == {"", *(o.name for o in ROUNDS[which].others)}, outcomes
        assert any(not landed for _k, landed, _o, _t in outcomes), outcomes
    else:
        # some kill cut the big file's download off, the small files already in place
        assert any(
            "new-small.txt" in left and any(".jv-tmp-" in p for p in left)
            for *_rest, left in outcomes
        ), outcomes
    shutil.rmtree(tmp_path / which, ignore_errors=True)


def test_a_deletion_committed_behind_the_head_then_restored_elsewhere_comes_back(
    store: Store, tmp_path: Path
) -> None:
    """The sweep's "restore gone.txt" case without a crash, on a volume mount: a deletion
    committed while the folder's base was behind the head (another writer had
    committed), then undone by another writer's restore (the very entry the base had),
    is brought back by the next reload. It once was in no diff from the base: the
    folder lacked the file for good and said it was clean."""
    from jupyter_volume import Volume

    vol = Volume.from_name("v", store=store, create_if_missing=True)
    with vol.batch_upload() as b:
        b.put_file(io.BytesIO(b"kept in history"), "gone.txt")
        b.put_file(io.BytesIO(b"x0"), "x.txt")
    base = vol.history(1)[0].seq
    m = vol.mount(tmp_path / "mnt", background=False)
    try:
        other = Volume.from_name("v", store=store)
        with other.batch_upload(force=True) as b:
            b.put_file(io.BytesIO(b"x1"), "x.txt")  # the folder's base is behind now
        (tmp_path / "mnt" / "gone.txt").unlink()
        assert m.commit() is not None
        assert other.restore(base, "gone.txt") is not None
        m.reload()
        assert folder_of(tmp_path / "mnt") == {"gone.txt": b"kept in history", "x.txt": b"x1"}
        assert m.status().clean
    finally:
        m.unmount()
