"""A mount killed between its commit landing in the store and its own bookkeeping.

A mount's commit publishes the record first and then records, in its state, which
version of each file it pushed (and its new base). A process SIGKILLed between the two
leaves a state that still describes the files as they were before, so the next mount
of the folder sees the pushed files as local changes. It must recognise them as its
own commit instead of pushing them again: if another writer changed a file after the
dead commit landed, pushing the old bytes again would silently revert that newer
version (a lost update). With nobody else writing, the push again changes nothing and
no commit is made.

The child really dies (SIGKILL, sent to itself) right after the store accepted the
commit record, on both stores; the parent then plays the other writer and mounts the
folder again.
"""

from __future__ import annotations

import io
import os
import signal
import textwrap
from pathlib import Path
from typing import Any

import pytest

from jupyter_volume import Volume
from jupyter_volume.errors import StoreError
from jupyter_volume.testing.wrappers import WrappedStore

try:
    from .test_mount_integrity import mounted_child
except ImportError:  # tests/ is not a package
    from test_mount_integrity import mounted_child  # type: ignore[no-redef]

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from jupyter_volume import Volume
    from jupyter_volume.store import open_store
    from jupyter_volume.testing.wrappers import WrappedStore

    class DieAtTheRecord(WrappedStore):
        # SIGKILL right after a commit record was written into its log slot (the commit
        # is published, the mount has not recorded it yet), or, "before", instead of
        # writing it (nothing is published)
        armed = False
        def put_if_absent(self, key, data):
            if self.armed and "/log/" in key and sys.argv[3] == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            won = super().put_if_absent(key, data)
            if self.armed and won and "/log/" in key:
                os.kill(os.getpid(), signal.SIGKILL)
            return won

    store = DieAtTheRecord(open_store(sys.argv[1]))
    m = Volume.from_name("v", store=store).mount(sys.argv[2], background=False)
    print("mounted", flush=True)
    sys.stdin.readline()  # the parent changed the folder meanwhile
    store.armed = True
    m.commit()
    print("not killed", flush=True)
    """
)


def fresh(vol: Volume) -> Volume:
    """A new handle on ``vol``: it reads the newest commit (as another kernel would)."""
    return Volume.from_name(vol.name, store=vol.store)


def read(vol: Volume, path: str) -> bytes | None:
    """What the volume's newest commit holds at ``path`` (None: nothing)."""
    v = fresh(vol)
    if path not in {e.path for e in v.listdir("/", recursive=True)}:
        return None
    return b"".join(v.read_file(path))


def put(vol: Volume, files: dict[str, bytes]) -> None:
    """Another writer commits ``files`` (its own handle, as another kernel would)."""
    with fresh(vol).batch_upload(force=True) as b:
        for path, data in files.items():
            b.put_file(io.BytesIO(data), path)


def history(vol: Volume) -> list[int]:
    return [c.seq for c in fresh(vol).history()]


def killed_after_push(
    opened: tuple[Any, str, dict[str, str]], mnt: Path, change: Any, when: str = "after"
) -> None:
    """A child mounts volume ``v`` at ``mnt``; ``change(mnt)`` changes the folder; the
    child commits and is SIGKILLed the moment its commit record has landed (``when``
    "before": the moment before it would have been written)."""
    _store, url, env = opened
    child = mounted_child(CHILD, url, mnt, env, when)
    change(mnt)
    out, err = child.communicate("go\n", timeout=120)
    assert child.returncode == -signal.SIGKILL, (out, err)


def edit(mnt: Path) -> None:
    (mnt / "f.txt").write_bytes(b"v1 from the mount that dies")


def touch(mnt: Path) -> None:
    # the same bytes with a new modification time: a commit of its own
    st = os.stat(mnt / "f.txt")
    os.utime(mnt / "f.txt", ns=(st.st_atime_ns, st.st_mtime_ns + 7_000_000_000))


def delete(mnt: Path) -> None:
    os.unlink(mnt / "f.txt")


PUSHED = {
    "edit": (edit, b"v1 from the mount that dies"),
    "touch": (touch, b"v0"),
    "delete": (delete, None),
}


@pytest.mark.parametrize("kind", sorted(PUSHED))
def test_a_remount_never_pushes_its_landed_commit_over_a_newer_one(
    opened: tuple[Any, str, dict[str, str]], tmp_path: Path, kind: str
) -> None:
    """The dead mount's change landed; another writer then wrote f.txt again. The
    remount keeps the other writer's version, in the volume and in the folder."""
    store, _url, _env = opened
    vol = Volume.lookup("v", create_if_missing=True, store=store)
    put(vol, {"f.txt": b"v0", "other.txt": b"o"})
    mnt = tmp_path / "mnt"
    change, pushed = PUSHED[kind]
    killed_after_push(opened, mnt, change)
    assert read(vol, "f.txt") == pushed  # the commit landed
    put(vol, {"f.txt": b"v2 from another writer"})
    newest = history(vol)[0]

    m = vol.mount(mnt, background=False)  # commits leftover edits first, then reloads
    assert read(vol, "f.txt") == b"v2 from another writer"
    assert (mnt / "f.txt").read_bytes() == b"v2 from another writer"
    assert history(vol)[0] == newest  # nothing was pushed again
    st = m.status()
    assert st.clean and st.behind == 0, st
    m.unmount()


@pytest.mark.parametrize("kind", sorted(PUSHED))
def test_a_remount_with_nobody_else_writing_pushes_nothing_again(
    opened: tuple[Any, str, dict[str, str]], tmp_path: Path, kind: str
) -> None:
    """The milder form: nobody wrote since the dead mount's commit landed. The remount
    makes no commit, and the folder and the volume agree."""
    store, _url, _env = opened
    vol = Volume.lookup("v", create_if_missing=True, store=store)
    put(vol, {"f.txt": b"v0", "other.txt": b"o"})
    mnt = tmp_path / "mnt"
    change, pushed = PUSHED[kind]
    killed_after_push(opened, mnt, change)
    landed = history(vol)
    assert read(vol, "f.txt") == pushed

    m = vol.mount(mnt, background=False)
    assert history(vol) == landed
    if pushed is None:
        assert not (mnt / "f.txt").exists()
    else:
        assert (mnt / "f.txt").read_bytes() == pushed
    st = m.status()
    assert st.clean and st.behind == 0, st
    # and a later edit is still a change of its own
    (mnt / "f.txt").write_bytes(b"v3")
    assert m.commit() is not None
    assert read(vol, "f.txt") == b"v3"
    m.unmount()


def test_a_streamed_commit_that_landed_is_not_pushed_again_over_a_newer_version(
    opened: tuple[Any, str, dict[str, str]], tmp_path: Path
) -> None:
    """The same for a big first commit of new files (streamed, its rows in a transaction
    that the kill rolls back): the remount takes them as its own, not as new files."""
    from jupyter_volume.mount import STREAM_AT

    store, _url, _env = opened
    vol = Volume.lookup("v", create_if_missing=True, store=store)
    put(vol, {"other.txt": b"o"})
    mnt = tmp_path / "mnt"
    n = STREAM_AT + 10

    def many(mnt: Path) -> None:
        (mnt / "big").mkdir()
        for i in range(n):
            (mnt / "big" / f"f{i}.txt").write_bytes(b"pushed %d" % i)

    killed_after_push(opened, mnt, many)
    assert read(vol, "big/f7.txt") == b"pushed 7"
    put(vol, {"big/f7.txt": b"newer"})
    newest = history(vol)[0]

    m = vol.mount(mnt, background=False)
    assert read(vol, "big/f7.txt") == b"newer"
    assert (mnt / "big" / "f7.txt").read_bytes() == b"newer"
    assert (mnt / "big" / "f8.txt").read_bytes() == b"pushed 8"
    assert history(vol)[0] == newest
    st = m.status()
    assert st.clean and st.behind == 0, st
    m.unmount()


def test_a_change_edited_again_after_the_crash_is_pushed(
    opened: tuple[Any, str, dict[str, str]], tmp_path: Path
) -> None:
    """What the user changed after the dead commit is a change of its own: the remount
    pushes it, over the other writer's version (the last writer wins)."""
    store, _url, _env = opened
    vol = Volume.lookup("v", create_if_missing=True, store=store)
    put(vol, {"f.txt": b"v0"})
    mnt = tmp_path / "mnt"
    killed_after_push(opened, mnt, edit)
    put(vol, {"f.txt": b"v2 from another writer"})
    (mnt / "f.txt").write_bytes(b"v3 written after the crash")

    m = vol.mount(mnt, background=False)
    assert read(vol, "f.txt") == b"v3 written after the crash"
    assert (mnt / "f.txt").read_bytes() == b"v3 written after the crash"
    assert m.status().clean
    m.unmount()


@pytest.mark.parametrize("kind", sorted(PUSHED))
def test_a_commit_killed_before_its_record_landed_is_pushed_by_the_remount(
    opened: tuple[Any, str, dict[str, str]], tmp_path: Path, kind: str
) -> None:
    """Killed just before the record would have been written: nothing landed, so the
    change is still the folder's own and the remount publishes it."""
    store, _url, _env = opened
    vol = Volume.lookup("v", create_if_missing=True, store=store)
    put(vol, {"f.txt": b"v0", "other.txt": b"o"})
    mnt = tmp_path / "mnt"
    change, pushed = PUSHED[kind]
    killed_after_push(opened, mnt, change, when="before")
    before = history(vol)
    m = vol.mount(mnt, background=False)
    assert read(vol, "f.txt") == pushed
    assert len(history(vol)) == len(before) + 1
    assert m.status().clean
    m.unmount()


class FailAfterTheRecord(WrappedStore):
    """Reports a store error once a commit record has been written (as when the PUT
    landed and its response was lost for good), once armed."""

    armed = False

    def put_if_absent(self, key: str, data: Any) -> bool:
        won = super().put_if_absent(key, data)
        if self.armed and won and "/log/" in key:
            self.armed = False
            raise StoreError(f"lost the response to the PUT of {key}")
        return won


def test_a_commit_that_landed_but_failed_is_not_pushed_again_by_the_next_commit(
    store: Any, tmp_path: Path
) -> None:
    """No crash: the commit raised after its record landed. The mount's next commit
    recognises the change as landed instead of pushing it over a newer version."""
    failing = FailAfterTheRecord(store)
    vol = Volume.lookup("v", create_if_missing=True, store=failing)
    put(vol, {"f.txt": b"v0", "g.txt": b"g0"})
    mnt = tmp_path / "mnt"
    m = vol.mount(mnt, background=False)
    (mnt / "f.txt").write_bytes(b"v1")
    failing.armed = True
    with pytest.raises(StoreError):
        m.commit()
    assert read(vol, "f.txt") == b"v1"  # it landed all the same
    put(vol, {"f.txt": b"v2 from another writer"})
    (mnt / "g.txt").write_bytes(b"g1")  # and a change of the folder's own

    assert m.commit() is not None
    assert read(vol, "f.txt") == b"v2 from another writer"
    assert read(vol, "g.txt") == b"g1"
    m.reload()
    assert (mnt / "f.txt").read_bytes() == b"v2 from another writer"
    st = m.status()
    assert st.clean and st.behind == 0, st
    m.unmount()
