"""The mount states kept under the state dir do not pile up: a state whose folder is
gone (or now another mount's) is removed by a later mount, never one in use, and an
opener racing a removal gets a fresh state instead of a removed one's lock."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from jupyter_volume import Volume, VolumeBusyError, mountstates
from jupyter_volume.paths import state_dir


@pytest.fixture
def vol(tmp_path: Path) -> Volume:
    v = Volume.from_name("vol", create_if_missing=True, store=str(tmp_path / "store"))
    v.hydrate()
    return v


def states() -> dict[str, str]:
    """State folder name -> the folder it is for."""
    out = {}
    for d in (state_dir() / "mounts").iterdir():
        out[d.name] = json.loads((d / "mount.json").read_text())["path"]
    return out


def age(state: str, seconds: float) -> None:
    """Make every file of a state look unused for ``seconds``."""
    then = time.time() - seconds
    for f in (state_dir() / "mounts" / state).iterdir():
        os.utime(f, (then, then))


def mounted(vol: Volume, path: Path, files: int = 0) -> str:
    """Mount ``vol`` at ``path``, write ``files`` files, commit, unmount; its state's name."""
    m = vol.mount(path, background=False)
    for i in range(files):
        (path / f"f{i}.txt").write_text(str(i))
    m.commit()
    name = m.state_path.name
    m.unmount()
    return name


def test_a_state_whose_folder_is_gone_is_removed_by_a_later_mount_once_unused_for_a_day(
    vol: Volume, tmp_path: Path
) -> None:
    old = mounted(vol, tmp_path / "a", files=3)
    recent = mounted(vol, tmp_path / "b", files=3)
    kept = mounted(vol, tmp_path / "c", files=3)  # its folder stays
    inodes = {f.name: f.stat().st_ino for f in (tmp_path / "c").iterdir()}
    shutil.rmtree(tmp_path / "a")
    shutil.rmtree(tmp_path / "b")
    age(old, mountstates.MISSING_FOR + 60)
    age(recent, mountstates.MISSING_FOR - 3600)  # an hour short of a day
    age(kept, mountstates.MISSING_FOR * 30)
    assert {old, recent, kept} <= set(states())

    m = vol.mount(tmp_path / "d", background=False)
    left = states()
    assert old not in left  # its folder gone for a day: nothing could resume from it
    assert recent in left  # the folder may come back (renamed away, a drive unplugged)
    assert kept in left  # its folder is there: mounting it again resumes
    assert m.state_path.name in left
    assert not [n for n in os.listdir(state_dir() / "mounts") if n.startswith(".")]
    m.unmount()

    # the kept one resumes: its files are known, none is written again
    again = vol.mount(tmp_path / "c", background=False)
    assert again.state_path.name == kept
    assert {f.name: f.stat().st_ino for f in (tmp_path / "c").iterdir()} == inodes
    again.unmount()


def test_a_state_whose_folder_another_mount_took_over_is_removed_at_once(
    vol: Volume, tmp_path: Path
) -> None:
    other = Volume.from_name("other", create_if_missing=True, store=vol.store)
    first = mounted(vol, tmp_path / "x", files=2)
    shutil.rmtree(tmp_path / "x")
    second = mounted(other, tmp_path / "x")  # the same path, now the other volume's
    assert first != second
    # (the mount of `other` already swept it: it came after the folder was re-marked)
    third = mounted(other, tmp_path / "y")
    assert first not in states()
    assert {second, third} <= set(states())


def test_a_state_whose_folder_was_made_again_without_its_mark_is_removed_at_once(
    vol: Volume, tmp_path: Path
) -> None:
    first = mounted(vol, tmp_path / "x", files=2)
    assert json.loads((state_dir() / "mounts" / first / "mount.json").read_text())["marked"]
    shutil.rmtree(tmp_path / "x")
    (tmp_path / "x").mkdir()  # the same path, a new folder that nothing mounts
    (tmp_path / "x" / "mine.txt").write_text("not the volume's")
    # a state from a version that did not record its mark is kept: it cannot tell
    older = mounted(vol, tmp_path / "o", files=1)
    shutil.rmtree(tmp_path / "o")
    (tmp_path / "o").mkdir()
    info = state_dir() / "mounts" / older / "mount.json"
    info.write_text(
        json.dumps({k: v for k, v in json.loads(info.read_text()).items() if k != "marked"})
    )
    later = mounted(vol, tmp_path / "y")
    left = states()
    assert first not in left  # a mount there would start afresh: nothing resumes from it
    assert older in left and later in left
    assert (tmp_path / "x" / "mine.txt").read_text() == "not the volume's"  # never touched


def test_a_state_in_use_is_never_removed(vol: Volume, tmp_path: Path, child_env_local) -> None:
    # a mount in another process whose folder the user deleted under it
    script = textwrap.dedent(
        """
        import sys, time
        from jupyter_volume import Volume
        m = Volume.from_name("vol", store=sys.argv[1]).mount(sys.argv[2], background=False)
        print(m.state_path.name, flush=True)
        sys.stdin.readline()
        """
    )
    p = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "store"), str(tmp_path / "held")],
        env=child_env_local,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        held = p.stdout.readline().strip()  # type: ignore[union-attr]
        assert held, p.stderr.read()  # type: ignore[union-attr]
        shutil.rmtree(tmp_path / "held")
        age(held, mountstates.MISSING_FOR * 2)
        m = vol.mount(tmp_path / "mine", background=False)
        assert held in states()
        m.unmount()
    finally:
        p.communicate("done\n", timeout=60)
    assert p.returncode == 0


def test_a_mount_that_opened_a_state_while_a_sweep_removed_it_starts_afresh(
    vol: Volume, tmp_path: Path
) -> None:
    """The opener's side of the race: the lock file it opened belongs to a state that a
    sweep locked, renamed away and deleted. It must not mount on that removed state."""
    name = mounted(vol, tmp_path / "r", files=2)
    state = state_dir() / "mounts" / name
    shutil.rmtree(tmp_path / "r")
    sweep_lock = open(state / "lock", "r+")  # noqa: SIM115 - the sweep's hold, closed below
    fcntl.flock(sweep_lock, fcntl.LOCK_EX)
    got: dict[str, object] = {}

    def mount() -> None:
        try:
            got["m"] = vol.mount(tmp_path / "r", background=False)
        except Exception as e:  # noqa: BLE001 - handed to the test thread
            got["e"] = e

    t = threading.Thread(target=mount)
    t.start()
    time.sleep(0.05)  # the opener has found the lock held and waits
    os.rename(state, state.with_name(".gone-test"))  # what a sweep does next
    sweep_lock.close()
    t.join(60)
    assert "e" not in got, got.get("e")
    m = got["m"]
    assert m.state_path == state  # the state's path, made afresh
    assert os.stat(state / "lock").st_ino == os.fstat(m._lockfile.fileno()).st_ino
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["f0.txt", "f1.txt"]
    m.unmount()


def test_a_state_really_in_use_still_says_busy(vol: Volume, tmp_path: Path) -> None:
    name = mounted(vol, tmp_path / "b")
    with open(state_dir() / "mounts" / name / "lock", "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # as another process's mount holds it
        with pytest.raises(VolumeBusyError, match="mounted by another process"):
            vol.mount(tmp_path / "b", background=False)


def test_the_leftovers_of_a_removal_cut_off_halfway_are_removed(
    vol: Volume, tmp_path: Path
) -> None:
    gone = state_dir() / "mounts" / ".gone-0123456789abcdef01234567-abcd"
    gone.mkdir(parents=True)
    (gone / "index.sqlite").write_bytes(b"x" * 1000)
    m = vol.mount(tmp_path / "m", background=False)
    assert not gone.exists()
    m.unmount()


@pytest.fixture
def child_env_local(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def test_forget_removes_a_state_only_once_its_folder_is_gone_and_nobody_mounts_it(
    vol: Volume, tmp_path: Path
) -> None:
    m = vol.mount(tmp_path / "t", background=False)
    state = m.state_path
    shutil.rmtree(tmp_path / "t")
    assert not mountstates.forget(state)  # still mounted (its lock is held)
    m._detach()
    (tmp_path / "t").mkdir()
    name = mounted(vol, tmp_path / "t")
    assert not mountstates.forget(state_dir() / "mounts" / name)  # its folder is there
    shutil.rmtree(tmp_path / "t")
    assert mountstates.forget(state_dir() / "mounts" / name)
    assert not (state_dir() / "mounts" / name).exists()
