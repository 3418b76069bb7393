"""Mount state integrity under real faults: a reload that stops partway, a full disk, a
folder that turns read-only, names that are not UTF-8, special files, background failures.

Every test runs on the local store and on SeaweedFS. Disk-full and read-only folders are
real: a small tmpfs mounted for the test (the tests run as root; without the permission
to mount one they fail, saying so).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import stat
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_volume import Volume
from jupyter_volume.errors import InvalidError, LocalFolderError, StoreError
from jupyter_volume.journal import Journal
from jupyter_volume.testing.wrappers import CountingStore, WrappedStore

BAD = b"caf\xe9.txt"  # Latin-1 bytes, as an old zip leaves them: not valid UTF-8


def fresh(vol: Volume) -> Volume:
    """A new handle on ``vol``: it reads the newest commit (as another kernel would)."""
    return Volume.from_name(vol.name, store=vol.store)


def read(vol: Volume, path: str) -> bytes:
    return b"".join(fresh(vol).read_file(path))


def put(vol: Volume, files: dict[str, bytes], force: bool = True) -> None:
    """Another writer commits ``files`` (its own handle, as another kernel would)."""
    with Volume.from_name(vol.name, store=vol.store).batch_upload(force=force) as b:
        for path, data in files.items():
            b.put_file(io.BytesIO(data), path)


def new_packs(store: Any, before: set[str]) -> list[str]:
    return sorted(i.key for i in store.list("") if "/packs/" in i.key and i.key not in before)


def pack_keys(store: Any) -> set[str]:
    return {i.key for i in store.list("") if "/packs/" in i.key}


def _sh(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def remount(d: Path, opts: str) -> None:
    r = _sh("mount", "-o", f"remount,{opts}", str(d))
    assert r.returncode == 0, f"mount -o remount,{opts} {d} failed: {r.stderr}"


# -- item 1: a reload that stops partway ------------------------------------------------------


def test_failed_reload_never_reverts_another_writers_version(store: Any, tmp_path: Path) -> None:
    vol = Volume.lookup("v", create_if_missing=True, store=store)
    put(vol, {"a.txt": b"v1"})
    m = vol.mount(tmp_path / "mnt", background=False)
    before = pack_keys(store)
    put(vol, {"a.txt": b"v2", "big.bin": os.urandom(6 << 20)})
    # The store cannot serve the new pack for a while (deleted, put back below).
    saved = {k: store.get(k) for k in new_packs(store, before)}
    assert saved
    store.delete(list(saved))
    with pytest.raises(Exception, match="missing|not found|NoSuchKey"):
        m.reload()
    # a.txt landed before the reload stopped: it is synced, not a local edit
    assert (tmp_path / "mnt/a.txt").read_bytes() == b"v2"
    st = m.status()
    assert st.clean, st
    for k, data in saved.items():
        store.put(k, data)
    put(vol, {"a.txt": b"v3"})
    assert m.commit() is None  # nothing of ours to publish
    assert read(vol, "a.txt") == b"v3"
    m.reload()
    assert (tmp_path / "mnt/a.txt").read_bytes() == b"v3"
    assert (tmp_path / "mnt/big.bin").stat().st_size == 6 << 20
    assert m.status().clean and m.status().behind == 0
    m.unmount()


def mounted_child(script: str, url: str, mnt: Path, env: dict[str, str], *args: str) -> Any:
    """Start ``script`` (argv: store URL, folder, ``args``) in a child and wait until it
    says it has mounted; it goes on when a line is written to its stdin."""
    child = subprocess.Popen(
        [sys.executable, "-c", script, url, str(mnt), *args],
        env={**os.environ, **env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "mounted"
    return child


CRASH_CHILD = """
import os, sys
from jupyter_volume import Volume
from jupyter_volume.store import open_store
from jupyter_volume.testing.wrappers import WrappedStore

class DieOnPackRead(WrappedStore):
    # ends the process, like a SIGKILL, the moment the reload reads a data pack
    armed = False
    def _do(self, kind, key, fn, *args):
        if self.armed and "/packs/" in key:
            os._exit(9)
        return super()._do(kind, key, fn, *args)

store = DieOnPackRead(open_store(sys.argv[1]))
m = Volume.from_name("v", store=store).mount(sys.argv[2], background=False)
print("mounted", flush=True)
sys.stdin.readline()
store.armed = True
m.reload()
"""


def _reload_killed_at_its_pack(
    opened: tuple[Any, str, dict[str, str]], tmp_path: Path, files: dict[str, bytes]
) -> tuple[Any, Path]:
    """Volume ``v`` (a.txt v1) mounted at ``tmp_path/mnt`` by a child; another writer adds
    ``files`` and a 5 MiB big.bin; the child's reload is killed reading big.bin's pack.
    Returns ``(volume, mounted folder)``."""
    store, url, env = opened
    vol = Volume.lookup("v", create_if_missing=True, store=store)
    put(vol, {"a.txt": b"v1"})
    mnt = tmp_path / "mnt"
    child = mounted_child(CRASH_CHILD, url, mnt, env)
    put(vol, {**files, "big.bin": os.urandom(5 << 20)})
    _out, err = child.communicate("go\n", timeout=120)
    assert child.returncode == 9, err
    return vol, mnt


def test_crash_mid_reload_is_reconciled_on_remount(
    opened: tuple[Any, str, dict[str, str]], tmp_path: Path
) -> None:
    """A process killed between writing a file and recording it: the next scan sees that
    the file holds the version the reload was bringing in, not a local edit."""
    vol, mnt = _reload_killed_at_its_pack(opened, tmp_path, {"a.txt": b"v2"})
    assert (mnt / "a.txt").read_bytes() == b"v2"  # landed, never recorded
    cut_off = list(mnt.glob(".jv-tmp-*"))  # big.bin's download, cut off
    assert cut_off, sorted(os.listdir(mnt))
    put(vol, {"a.txt": b"v3"})
    m = vol.mount(mnt, background=False)  # commits leftovers first, then reloads
    assert read(vol, "a.txt") == b"v3"
    assert (mnt / "a.txt").read_bytes() == b"v3"
    assert not list(mnt.glob(".jv-tmp-*"))  # the dead mount's temporary files are gone
    assert [c.message for c in vol.history()][0] != "commit edits left from an earlier mount"
    m.unmount()


def test_a_new_file_a_crashed_reload_wrote_is_not_published_over_a_newer_version(
    opened: tuple[Any, str, dict[str, str]], tmp_path: Path
) -> None:
    """A reload brings a file new to the folder and dies before recording it; meanwhile
    another writer changes that file again. The remount must see the file as the
    version the dead reload was bringing in (synced, not a local addition), so that it
    takes the newer version instead of committing the older bytes over it."""
    vol, mnt = _reload_killed_at_its_pack(opened, tmp_path, {"new.txt": b"n2"})
    assert (mnt / "new.txt").read_bytes() == b"n2"  # landed, never recorded
    put(vol, {"new.txt": b"n3"})
    m = vol.mount(mnt, background=False)  # commits leftovers first, then reloads
    assert read(vol, "new.txt") == b"n3"
    assert (mnt / "new.txt").read_bytes() == b"n3"
    m.unmount()


MOVE_CRASH_CHILD = """
import os, sys
from jupyter_volume import Volume

m = Volume.from_name("v", store=sys.argv[1]).mount(sys.argv[2], background=False)
print("mounted", flush=True)
sys.stdin.readline()
real = os.rename

def rename_then_die(src, dst, *a, **kw):
    # ends the process, like a SIGKILL, right after the reload moved its first file
    real(src, dst, *a, **kw)
    os._exit(9)

os.rename = rename_then_die
m.reload()
"""


def test_crash_after_a_reload_moved_a_file_is_reconciled_on_remount(
    opened: tuple[Any, str, dict[str, str]], tmp_path: Path
) -> None:
    """A reload that moves files another writer moved, killed between a rename and
    recording it: the remount publishes nothing (neither the old path back nor the moved
    file as an edit) and brings the folder to the head."""
    store, url, env = opened
    vol = Volume.lookup("v", create_if_missing=True, store=store)
    files = {f"raw/f{i}.bin": os.urandom(20_000 + i) for i in range(4)}
    put(vol, files)
    mnt = tmp_path / "mnt"
    child = mounted_child(MOVE_CRASH_CHILD, url, mnt, env)
    Volume.from_name("v", store=store).move("raw", "archive")
    head = fresh(vol).history()[0].seq
    _out, err = child.communicate("go\n", timeout=120)
    assert child.returncode == 9, err
    moved = sorted(p.relative_to(mnt).as_posix() for p in mnt.rglob("*.bin"))
    assert len([p for p in moved if p.startswith("archive/")]) == 1  # one moved, unrecorded

    m = vol.mount(mnt, background=False)  # commits leftovers first, then reloads
    assert fresh(vol).history()[0].seq == head  # nothing was published
    for rel, data in files.items():
        new = rel.replace("raw/", "archive/", 1)
        assert (mnt / new).read_bytes() == data
        assert read(vol, new) == data
    assert not (mnt / "raw").exists()
    assert m.status().clean
    m.unmount()


UNLINK_CRASH_CHILD = """
import os, pathlib, sys
from jupyter_volume import Volume

m = Volume.from_name("v", store=sys.argv[1]).mount(sys.argv[2], background=False)
print("mounted", flush=True)
sys.stdin.readline()
real = pathlib.Path.unlink

def unlink_then_die(self, *a, **kw):
    # ends the process, like a SIGKILL, right after the reload deleted its first file
    real(self, *a, **kw)
    os._exit(9)

pathlib.Path.unlink = unlink_then_die
m.reload()
"""


def test_crash_after_a_reload_deleted_a_file_is_reconciled_on_remount(
    opened: tuple[Any, str, dict[str, str]], tmp_path: Path
) -> None:
    """A reload that deletes a file another writer deleted, killed between the deletion
    and recording it; meanwhile the other writer puts the file back. The remount must
    take the missing file for the dead reload's deletion, not the user's: else it
    commits the deletion of the file just put back."""
    store, url, env = opened
    vol = Volume.lookup("v", create_if_missing=True, store=store)
    put(vol, {"x.txt": b"x1", "keep.txt": b"k"})
    mnt = tmp_path / "mnt"
    child = mounted_child(UNLINK_CRASH_CHILD, url, mnt, env)
    Volume.from_name("v", store=store).remove_file("x.txt")
    _out, err = child.communicate("go\n", timeout=120)
    assert child.returncode == 9, err
    assert not (mnt / "x.txt").exists()  # deleted, never recorded
    put(vol, {"x.txt": b"x2"})  # put back by the other writer
    m = vol.mount(mnt, background=False)  # commits leftovers first, then reloads
    assert read(vol, "x.txt") == b"x2"
    assert (mnt / "x.txt").read_bytes() == b"x2"
    assert m.status().clean
    m.unmount()


# -- item 2: names that are not UTF-8 ------------------------------------------------------------


def test_non_utf8_names_are_skipped_named_and_never_fatal(store: Any, tmp_path: Path) -> None:
    vol = Volume.lookup("v", create_if_missing=True, store=store)
    m = vol.mount(tmp_path / "mnt", background=False)
    root = os.fsencode(tmp_path / "mnt")
    (tmp_path / "mnt/ok.txt").write_text("ok")
    Path(os.fsdecode(root + b"/" + BAD)).write_bytes(b"latin-1 name")
    os.makedirs(os.fsdecode(root + b"/d\xff/sub"))
    Path(os.fsdecode(root + b"/d\xff/sub/x.txt")).write_text("under a bad folder name")

    with pytest.warns(UserWarning, match=r"b'caf\\xe9.txt'") as rec:
        info = m.commit()
    assert info is not None and read(vol, "ok.txt") == b"ok"
    assert "b'd\\xff'" in str(rec[0].message)
    assert sorted(p.path for p in fresh(vol).listdir("/", recursive=True)) == ["ok.txt"]
    st = m.status()
    assert set(st.skipped) == {repr(BAD), repr(b"d\xff")}
    assert "not committed: b'caf\\xe9.txt'" in str(st)
    # the same set is not warned about again; background-style commits go on
    (tmp_path / "mnt/two.txt").write_text("two")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert m.commit() is not None
    assert read(vol, "two.txt") == b"two"
    # once the file is gone, what is pending is committed and nothing is reported
    os.unlink(root + b"/" + BAD)
    (tmp_path / "mnt/three.txt").write_text("three")
    with pytest.warns(UserWarning, match=r"1 path\(s\) not committed: b'd\\xff'"):
        assert m.commit() is not None  # a different set: named again
    assert read(vol, "three.txt") == b"three"
    assert set(m.status().skipped) == {repr(b"d\xff")}
    m.unmount()  # never raises on such names
    assert sorted(p.path for p in fresh(vol).listdir("/")) == ["ok.txt", "three.txt", "two.txt"]


def test_journal_paths_survive_a_failed_scan(
    store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vol = Volume.lookup("v", create_if_missing=True, store=store)
    m = vol.mount(tmp_path / "mnt", background=False)
    assert m._journal.active
    (tmp_path / "mnt/pending.txt").write_text("pending")
    # A scan that raises: monkeypatched, because the fault that did this for real (a name
    # that is not UTF-8) no longer raises, and no other real one is known.
    real = m._journal_scan

    def broken(dirty: set[str]) -> Any:
        raise OSError(errno.EIO, "injected scan failure")

    monkeypatch.setattr(m, "_journal_scan", broken)
    with pytest.raises(OSError, match="injected"):
        m.commit()
    monkeypatch.setattr(m, "_journal_scan", real)
    assert m.commit() is not None
    assert read(vol, "pending.txt") == b"pending"
    m.unmount()


def test_journal_requeue(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    try:
        (tmp_path / "f").write_text("x")
        taken = j.take()
        assert taken == {"f"}
        j.requeue(taken)
        assert j.take() == {"f"}
        j.requeue(None)  # after a failed full scan: the next caller must scan everything
        assert j.take() is None
    finally:
        j.close()


def test_put_directory_skips_non_utf8_names(store: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "good.txt").write_text("good")
    Path(os.fsdecode(os.fsencode(src) + b"/" + BAD)).write_bytes(b"bad")
    os.mkfifo(src / "pipe")
    vol = Volume.lookup("v", create_if_missing=True, store=store)
    with pytest.warns(UserWarning, match=r"/src/caf\\xe9.txt'.*not valid UTF-8") as rec:
        with vol.batch_upload() as b:
            b.put_directory(src, "/data")
    assert "pipe" in str(rec[0].message)
    assert sorted(e.path for e in fresh(vol).listdir("/data")) == ["data/good.txt"]


def test_cli_put_names_skipped_paths(
    opened: tuple[Any, str, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jupyter_volume.cli import main

    _store, url, _env = opened
    src = tmp_path / "src"
    src.mkdir()
    (src / "good.txt").write_text("good")
    Path(os.fsdecode(os.fsencode(src) + b"/" + BAD)).write_bytes(b"bad")
    assert main(["create", "v", "--store", url]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said in the output, not as a Python warning
        assert main(["put", "v", str(src), "/data", "--store", url]) == 0
    out = capsys.readouterr().out
    assert "Uploaded 1 file" in out
    assert "Warning: Skipped 1 path(s): b'" in out and "/src/caf\\xe9.txt'" in out, out


# -- items 3 and 4: a full disk, a read-only folder ---------------------------------------------


def test_disk_full_on_mount_then_retry_in_the_same_folder(store: Any, tmpfs: Path) -> None:
    vol = Volume.lookup("v", create_if_missing=True, store=store)
    big = os.urandom(6 << 20)
    put(vol, {"small.txt": b"small", "big.bin": big, "d/x.txt": b"x"})
    ballast = tmpfs / "ballast"
    ballast.write_bytes(b"\0" * (3 << 20))  # leaves too little room for the volume
    mnt = tmpfs / "mnt"
    head = vol.history()[0].seq
    with pytest.raises(LocalFolderError) as exc:
        vol.mount(mnt, background=False)
    msg = str(exc.value)
    assert "\n" not in msg and exc.value.errno == errno.ENOSPC
    assert "'v'" in msg and str(mnt) in msg and "disk is full" in msg
    assert "6.0 MiB more is needed" in msg, msg
    ballast.unlink()
    m = vol.mount(mnt, background=False)  # the same folder: resumes
    assert (mnt / "big.bin").read_bytes() == big
    assert (mnt / "small.txt").read_bytes() == b"small"
    st = m.status()
    assert st.clean and st.behind == 0, st
    assert vol.history()[0].seq == head  # nothing was committed back
    m.unmount()


def test_a_big_file_that_cannot_fit_fails_before_any_of_it_is_fetched(
    store: Any, tmpfs: Path
) -> None:
    # The download reserves the file's disk first (fallocate): a 6 MiB file on a disk
    # with 5 MiB free is refused before its pack is read, not after fetching 6 MiB.
    counting = CountingStore(store)
    vol = Volume.lookup("v", create_if_missing=True, store=counting)
    big = os.urandom(6 << 20)
    put(vol, {"big.bin": big})
    (tmpfs / "ballast").write_bytes(b"\0" * (3 << 20))
    counting.reset()
    with pytest.raises(LocalFolderError) as exc:
        vol.mount(tmpfs / "mnt", background=False)
    assert exc.value.errno == errno.ENOSPC, exc.value
    fetched = counting.matching(("get", "get_range"), prefix=f"vols/{vol.info().id}/packs/")
    assert fetched == [], fetched
    assert not [p for p in (tmpfs / "mnt").rglob("*") if p.is_file()]  # no partial file left
    (tmpfs / "ballast").unlink()
    m = vol.mount(tmpfs / "mnt", background=False)
    assert (tmpfs / "mnt/big.bin").read_bytes() == big
    m.unmount()


def test_disk_full_on_reload_then_retry(store: Any, tmpfs: Path) -> None:
    vol = Volume.lookup("v", create_if_missing=True, store=store)
    put(vol, {"a.txt": b"v1"})
    m = vol.mount(tmpfs / "mnt", background=False)
    ballast = tmpfs / "ballast"
    ballast.write_bytes(b"\0" * (4 << 20))
    big = os.urandom(5 << 20)
    put(vol, {"a.txt": b"v2", "big.bin": big})
    with pytest.raises(LocalFolderError, match=r"cannot reload volume 'v' at .*disk is full"):
        m.reload()
    assert m.status().behind == 1
    ballast.unlink()
    put(vol, {"a.txt": b"v3"})
    m.reload()
    assert (tmpfs / "mnt/a.txt").read_bytes() == b"v3"
    assert (tmpfs / "mnt/big.bin").read_bytes() == big
    assert read(vol, "a.txt") == b"v3"
    assert m.status().clean and m.status().behind == 0
    m.unmount()


def test_a_move_lands_when_the_disk_fills_during_the_reload(store: Any, tmpfs: Path) -> None:
    """A file another writer moved is renamed here (no space needed) and recorded; the
    download that fills the disk is reported alone, and a retry finishes the reload."""
    vol = Volume.lookup("v", create_if_missing=True, store=store)
    moved = os.urandom(2 << 20)
    put(vol, {"moved.bin": moved})
    m = vol.mount(tmpfs / "mnt", background=False)
    ballast = tmpfs / "ballast"
    ballast.write_bytes(b"\0" * (3 << 20))
    other = Volume.from_name("v", store=store)
    other.mkdir("sub")
    other.move("moved.bin", "sub/moved.bin")
    put(vol, {"big.bin": os.urandom(5 << 20)})
    with pytest.raises(LocalFolderError, match=r"5\.0 MiB more is needed for 1 file\(s\)"):
        m.reload()
    assert (tmpfs / "mnt/sub/moved.bin").read_bytes() == moved
    assert not (tmpfs / "mnt/moved.bin").exists()
    ballast.unlink()
    m.reload()
    assert m.status().clean and m.status().behind == 0
    m.unmount()


def test_folder_turning_read_only_mid_reload(store: Any, tmpfs: Path) -> None:
    vol = Volume.lookup("v", create_if_missing=True, store=store)
    put(vol, {"gone.txt": b"x", "kept.txt": b"k"})
    m = vol.mount(tmpfs / "mnt", background=False)
    Volume.from_name("v", store=store).remove_file("gone.txt")
    remount(tmpfs, "ro")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "kept 1 path(s) with local changes"
            with pytest.raises(LocalFolderError, match="read-only file system") as exc:
                m.reload()
        assert exc.value.errno == errno.EROFS and "\n" not in str(exc.value)
        assert m.status().behind == 1  # not marked up to date
        other = Volume.lookup("w", create_if_missing=True, store=store)
        with pytest.raises(LocalFolderError, match=r"cannot mount volume 'w' at .*read-only"):
            other.mount(tmpfs / "other", background=False)
    finally:
        remount(tmpfs, "rw")
    m.reload()
    assert not (tmpfs / "mnt/gone.txt").exists()
    st = m.status()
    assert st.clean and st.behind == 0
    m.unmount()


# -- item 5: background failures are visible -----------------------------------------------------


class FailingStore(WrappedStore):
    """Fails every write while ``fail`` is set: a mock of a store refusing writes for a
    while, which neither a local folder (we run as root) nor the shared SeaweedFS can be
    made to do on demand without breaking other tests."""

    fail = False

    def _do(self, kind, key, fn, *args):  # type: ignore[no-untyped-def]
        if self.fail and kind in ("put", "put_if_absent"):
            raise StoreError("injected: the store is unavailable")
        return super()._do(kind, key, fn, *args)


def _wait(cond: Any, what: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@contextlib.contextmanager
def _kernel_mount(
    shell: Any, vol: Volume, folder: Path, interval: float
) -> Iterator[tuple[Any, Any]]:
    """IPython shell ``shell`` (the kernel, the ``user_shell`` fixture) mounts ``vol`` at
    ``folder`` as a user does, ``m = vol.mount(...)``: yields the shell and the mount."""
    shell.user_ns["vol"] = vol
    shell.run_cell(f"m = vol.mount({str(folder)!r}, interval={interval})")
    yield shell, shell.user_ns["m"]


def test_background_failure_warns_once_per_error_and_clears(
    store: Any, tmp_path: Path, user_shell: Any
) -> None:
    from IPython.utils.capture import capture_output

    fs = FailingStore(store)
    vol = Volume.lookup("v", create_if_missing=True, store=fs)
    with _kernel_mount(user_shell, vol, tmp_path / "mnt", 0.2) as (shell, m):
        fs.fail = True
        (tmp_path / "mnt/precious.txt").write_text("keep me")
        _wait(lambda: m.last_error is not None, "the background commit to fail")
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            shell.run_cell("1 + 1")
            shell.run_cell("2 + 2")
        failed = [w for w in rec if "background commit of volume 'v' failed" in str(w.message)]
        assert len(failed) == 1, [str(w.message) for w in rec]
        assert "unavailable" in str(failed[0].message)
        # %volume status shows it too
        shell.run_line_magic("load_ext", "jupyter_volume")
        with capture_output() as cap:
            shell.run_line_magic("volume", "status")
        shown = cap.stdout + "".join(str(o.data) for o in cap.outputs)
        assert "injected: the store is unavailable" in shown
        fs.fail = False
        _wait(lambda: m.last_error is None, "the mount to recover")
        assert m.status().last_error is None
        assert read(vol, "precious.txt") == b"keep me"
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            shell.run_cell("3 + 3")
        assert not [w for w in rec if "background commit" in str(w.message)]
        shell.run_cell("m.unmount()")


def test_a_store_whose_disk_is_full_warns_once_however_many_cells_save_files(
    tmpfs: Path, tmp_path: Path, user_shell: Any
) -> None:
    """One cause, one warning: the store's full disk fails each background commit with
    an error naming another pack (the files differ), and only the first is warned of
    until a commit goes through; then nothing is lost."""
    from jupyter_volume.store.local import LocalStore

    vol = Volume.lookup("v", create_if_missing=True, store=LocalStore(tmpfs / "store"))
    mnt = tmp_path / "mnt"
    with _kernel_mount(user_shell, vol, mnt, 0.2) as (shell, m):
        vfs = os.statvfs(tmpfs)
        ballast = tmpfs / "ballast"
        ballast.write_bytes(b"\0" * (vfs.f_bavail * vfs.f_frsize - (64 << 10)))
        seen: set[str] = set()
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            for i in range(4):  # four cells, each saving a new result
                shell.run_cell(
                    f"import os; open({str(mnt / f'r{i}.bin')!r}, 'wb').write(os.urandom(300_000))"
                )
                _wait(
                    lambda: m.last_error is not None and m.last_error not in seen,
                    "the background commit of the new file to fail",
                )
                assert "No space left on device" in m.last_error, m.last_error
                seen.add(m.last_error)
            shell.run_cell("None")
        assert len(seen) == 4  # four errors, each naming another pack
        failed = [str(w.message) for w in rec if "background commit" in str(w.message)]
        assert len(failed) == 1, failed
        assert "No space left on device" in failed[0]
        ballast.unlink()
        _wait(lambda: m.last_error is None, "the mount to recover")
        # (a background commit that goes through clears the error even when it took only
        # some of the files, the others left for the next one: wait for all four)
        want = [f"r{i}.bin" for i in range(4)]
        _wait(
            lambda: sorted(e.path for e in fresh(vol).listdir("/")) == want,
            "every file saved while the disk was full to be committed",
        )
        assert m.last_error is None, m.last_error
        shell.run_cell("m.unmount()")


def test_a_failure_after_a_recovery_is_warned_again(
    store: Any, tmp_path: Path, user_shell: Any
) -> None:
    """Each failure streak is news, even with the very error of the one before: with
    Python's default warning filter, the second store outage is shown after a cell as
    the first was, named as jupyter_volume's (not as a line of IPython)."""
    fs = FailingStore(store)
    vol = Volume.lookup("v", create_if_missing=True, store=fs)
    with _kernel_mount(user_shell, vol, tmp_path / "mnt", 0.2) as (shell, m):
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("default")  # what a notebook has
            for n in range(2):  # two outages, the same error each time
                fs.fail = True
                (tmp_path / f"mnt/r{n}.txt").write_text(str(n))
                _wait(lambda: m.last_error is not None, "the background commit to fail")
                shell.run_cell("1")
                fs.fail = False
                _wait(lambda: m.last_error is None, "the mount to recover")
                shell.run_cell("2")
        failed = [w for w in rec if "background commit of volume 'v' failed" in str(w.message)]
        assert [str(w.message) for w in failed] == [str(failed[0].message)] * 2, failed
        assert "IPython" not in failed[0].filename
        assert failed[0].filename == "jupyter_volume"
        assert read(vol, "r0.txt") == b"0" and read(vol, "r1.txt") == b"1"
        shell.run_cell("m.unmount()")


def test_skipped_paths_warn_after_the_cell_once(
    store: Any, tmp_path: Path, user_shell: Any
) -> None:
    from IPython.utils.capture import capture_output

    vol = Volume.lookup("v", create_if_missing=True, store=store)
    mnt = tmp_path / "mnt"
    with _kernel_mount(user_shell, vol, mnt, 3600) as (shell, m):
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            shell.run_cell(
                f"open({str(mnt / 'a.txt')!r}, 'w').write('a'); "
                f"open({os.fsencode(mnt) + b'/' + BAD!r}, 'wb').write(b'x')"
            )
            _wait(lambda: m._skipped, "the background commit to scan")
            _wait(lambda: "a.txt" in [e.path for e in fresh(vol).listdir("/")], "a.txt committed")
            for _ in range(3):
                shell.run_cell("None")
        skipped = [w for w in rec if "not committed" in str(w.message)]
        assert len(skipped) == 1, [str(w.message) for w in rec]
        assert "b'caf\\xe9.txt'" in str(skipped[0].message)
        shell.run_line_magic("load_ext", "jupyter_volume")
        with capture_output() as cap:
            shell.run_line_magic("volume", "status")
        shown = cap.stdout + "".join(o.data.get("text/plain", "") for o in cap.outputs)
        assert "not committed  b'caf\\xe9.txt' (the name is not valid UTF-8" in shown, shown
        shell.run_cell("m.unmount()")


# -- item 6: modes, special files, long paths ------------------------------------------------------


def test_permission_bits_are_kept(store: Any, tmp_path: Path) -> None:
    vol = Volume.lookup("v", create_if_missing=True, store=store)
    m = vol.mount(tmp_path / "a", background=False)
    modes = {"private.key": 0o600, "group.txt": 0o640, "tool.sh": 0o750, "open.txt": 0o666}
    for name, mode in modes.items():
        (tmp_path / "a" / name).write_text(name)
        os.chmod(tmp_path / "a" / name, mode)
    m.commit()
    m.unmount()
    with vol.mount(tmp_path / "b", background=False):
        for name, mode in modes.items():
            assert stat.S_IMODE(os.stat(tmp_path / "b" / name).st_mode) == mode, name
    with vol.mount(tmp_path / "a", background=False) as m:
        os.chmod(tmp_path / "a/group.txt", 0o604)  # a mode change alone is a change
        assert m.commit() is not None
    with vol.mount(tmp_path / "b", background=False):
        assert stat.S_IMODE(os.stat(tmp_path / "b/group.txt").st_mode) == 0o604


def _deep_dirs(root: Path, levels: int) -> None:
    """Nested folders whose full path ends up longer than PATH_MAX (made through folder
    descriptors: no path given to the system is ever that long)."""
    fd = os.open(root, os.O_DIRECTORY)
    try:
        for _ in range(levels):
            os.mkdir("d" * 200, dir_fd=fd)
            nfd = os.open("d" * 200, os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        os.close(os.open("deep.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    finally:
        os.close(fd)


def test_fifos_sockets_and_too_long_paths_are_reported(store: Any, tmp_path: Path) -> None:
    vol = Volume.lookup("v", create_if_missing=True, store=store)
    mnt = tmp_path / "mnt"
    m = vol.mount(mnt, background=False)
    (mnt / "ok.txt").write_text("ok")
    os.mkfifo(mnt / "pipe")
    os.mknod(mnt / "sock", 0o600 | stat.S_IFSOCK)
    levels = (4096 - len(str(mnt))) // 201 + 2
    _deep_dirs(mnt, levels)
    with pytest.warns(UserWarning, match="not committed") as rec:
        assert m.commit() is not None
    text = str(rec[0].message)
    assert "pipe: a FIFO" in text and "sock: a socket" in text and "longer than" in text
    st = m.status()
    assert st.skipped["pipe"].startswith("a FIFO") and st.skipped["sock"] == "a socket"
    assert [why for why in st.skipped.values() if "longer than the system" in why]
    assert st.clean, st
    assert read(vol, "ok.txt") == b"ok"
    names = {e.path for e in fresh(vol).listdir("/")}
    assert "pipe" not in names and "sock" not in names
    m.unmount()


HOLD_MOUNT = """
import sys
from jupyter_volume import Volume
from jupyter_volume.store import open_store
m = Volume.from_name("outer", store=open_store(sys.argv[1])).mount(sys.argv[2], background=False)
print("mounted", flush=True)
sys.stdin.readline()
m.unmount()
"""


def test_mounts_may_not_be_nested(local_store: Any, tmp_path: Path) -> None:
    # A mount inside another's folder: the outer volume would commit the inner one's
    # files as its own, and a reload of the outer one that deletes them would have the
    # inner mount commit their deletion to its volume. Refused either way round, in
    # this process or against another one; a folder of its own is fine.
    outer = Volume.from_name("outer", store=local_store, create_if_missing=True)
    inner = Volume.from_name("inner", store=local_store, create_if_missing=True)
    work = tmp_path / "a" / "work"
    m = outer.mount(work, background=False)
    for where, how in [
        (work / "models", "is inside"),
        (work, "is the mount of volume 'outer'"),
        (tmp_path / "a", "contains"),
    ]:
        with pytest.raises(InvalidError, match=how):
            inner.mount(where, background=False)
    assert not (work / "models").exists()
    side = inner.mount(tmp_path / "a" / "models", background=False)  # a sibling folder
    side.unmount()
    m.unmount()
    m = inner.mount(work / "models", background=False)  # the outer one is gone: allowed
    m.unmount()
    (work / "models").rmdir()
    # against a mount held by another process
    child = mounted_child(HOLD_MOUNT, local_store.url, work, {})
    try:
        with pytest.raises(InvalidError, match="is inside the mount of volume 'outer'"):
            inner.mount(work / "models", background=False)
    finally:
        child.communicate("go\n", timeout=120)
    assert child.returncode == 0
    inner.mount(work / "models", background=False).unmount()


def committed_mount(store: Any, tmp_path: Path, files: dict[str, str]) -> tuple[Volume, Path, Any]:
    """Volume "v" mounted at ``tmp_path/mnt`` (no background commits) with ``files``
    (path -> text) written there and committed."""
    vol = Volume.from_name("v", store=store, create_if_missing=True)
    mnt = tmp_path / "mnt"
    m = vol.mount(mnt, background=False)
    for rel, text in files.items():
        (mnt / rel).parent.mkdir(parents=True, exist_ok=True)
        (mnt / rel).write_text(text)
    assert m.commit() is not None
    return vol, mnt, m


def test_removing_the_mounted_folder_deletes_nothing_from_the_volume(
    store: Any, tmp_path: Path
) -> None:
    # `rm -rf data` to free the disk, or a cleanup script: a scan of a folder that is no
    # longer there found every file deleted, and the next commit emptied the volume
    # (and every teammate's folder at their next reload).
    vol, mnt, m = committed_mount(store, tmp_path, {"sub/a.txt": "a", "b.txt": "b"})
    shutil.rmtree(mnt)
    for call in (m.commit, m.status, m.reload):
        with pytest.raises(LocalFolderError, match="was removed while mounted: nothing was"):
            call()
    mnt.mkdir()  # a new, empty folder at the same path is not the mounted one either
    with pytest.raises(LocalFolderError, match="was replaced by another folder"):
        m.commit()
    with pytest.warns(UserWarning, match="unmounted without committing"):
        assert m.unmount() is None
    assert sorted(e.path for e in vol.listdir("/", recursive=True)) == ["b.txt", "sub", "sub/a.txt"]
    assert [h.seq for h in vol.history()] == [1, 0]
    m = vol.mount(mnt, background=False)  # the files come back
    assert (mnt / "sub/a.txt").read_text() == "a" and (mnt / "b.txt").read_text() == "b"
    m.unmount()


def test_a_folder_removed_or_emptied_while_unmounted_is_mounted_afresh(
    local_store: Any, tmp_path: Path
) -> None:
    # The mount's state remembers the folder it synced; mounting again where that
    # folder was removed, emptied or replaced must not commit its files as deleted.
    vol, mnt, m = committed_mount(local_store, tmp_path, {"a.txt": "a", "sub/b.txt": "b"})
    m.unmount()
    for undo in ("removed", "emptied", "emptied but for ignored names"):
        if undo == "removed":
            shutil.rmtree(mnt)
        else:
            (mnt / "a.txt").unlink()
            shutil.rmtree(mnt / "sub")
        if undo == "emptied but for ignored names":
            # `rm -rf data/*` leaves hidden names: Jupyter's checkpoints of a notebook
            # opened there, Python's cache, a crashed editor's swap file
            (mnt / ".ipynb_checkpoints").mkdir()
            (mnt / ".ipynb_checkpoints/a-checkpoint.txt").write_text("old")
            (mnt / ".a.txt.swp").write_text("swap")
        m = vol.mount(mnt, background=False)
        assert (mnt / "a.txt").read_text() == "a", undo
        assert (mnt / "sub/b.txt").read_text() == "b", undo
        m.unmount()
    assert (mnt / ".ipynb_checkpoints/a-checkpoint.txt").read_text() == "old"
    assert [h.seq for h in vol.history()] == [1, 0]
    shutil.rmtree(mnt)
    mnt.mkdir()
    (mnt / "other.txt").write_text("not from the volume")
    with pytest.raises(InvalidError, match="not empty"):
        vol.mount(mnt, background=False)
    assert [e.path for e in vol.listdir("/")] == ["a.txt", "sub"]
    fresh = tmp_path / "fresh"  # a new folder holding only ignored names is as good as empty
    (fresh / ".ipynb_checkpoints").mkdir(parents=True)
    m = vol.mount(fresh, background=False)
    assert (fresh / "sub/b.txt").read_text() == "b"
    m.unmount()
    assert [h.seq for h in vol.history()] == [1, 0]


def test_a_mounted_folder_that_cannot_be_listed_deletes_nothing(
    local_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `chmod 000` on the mounted folder: a full scan (status, unmount, a commit after the
    # change journal overflowed) that cannot list it found no file, and so every file
    # deleted. The one mock of this file: this fault cannot be caused for real here
    # (the tests run as root, whom permissions do not stop, and the interpreter lives
    # where another user cannot run it), so listing the folder fails by a patch.
    vol, mnt, m = committed_mount(local_store, tmp_path, {"a.txt": "a"})
    real = os.scandir

    def denied(path: Any = ".") -> Any:
        if os.fspath(path) == str(mnt):
            raise PermissionError(13, "Permission denied", str(mnt))
        return real(path)

    monkeypatch.setattr(os, "scandir", denied)
    with pytest.raises(LocalFolderError, match="cannot list the mounted folder .* Nothing was"):
        m.status()
    m._journal.requeue(None)  # as after an overflow: the next commit scans everything
    with pytest.raises(LocalFolderError, match="Permission denied"):
        m.commit()
    monkeypatch.setattr(os, "scandir", real)
    assert [e.path for e in vol.listdir("/")] == ["a.txt"]
    assert m.commit() is None  # readable again: nothing changed
    m.unmount()


def test_ignored_paths_the_volume_has_are_kept_not_deleted(store: Any, tmp_path: Path) -> None:
    # Mounting with ignore=[...] (or adding a pattern between mounts) for files the
    # volume already has: a scan never looks at ignored paths, so it took every one of
    # them as deleted. They are neither committed nor deleted from here.
    vol = Volume.from_name("v", store=store, create_if_missing=True)
    with vol.batch_upload() as batch:
        batch.put_file(io.BytesIO(b"weights"), "model.ckpt")
        batch.put_file(io.BytesIO(b"cached"), "cache/x.bin")
        batch.put_file(io.BytesIO(b"notes"), "notes.txt")
    mnt = tmp_path / "mnt"
    m = vol.mount(mnt, background=False, ignore=["*.ckpt", "cache/"])
    assert (mnt / "model.ckpt").read_bytes() == b"weights"  # still brought down
    (mnt / "notes.txt").write_text("edited")
    (mnt / "model.ckpt").write_bytes(b"local weights")  # ignored: not committed
    (mnt / "cache/x.bin").unlink()  # ignored: not deleted either
    assert m.status().deleted == [] and m.status().modified == ["notes.txt"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        info = m.commit()
        assert info is not None and (info.modified, info.deleted) == (1, 0)
        m.unmount()  # a full scan: the same
    assert sorted(e.path for e in vol.listdir("/", recursive=True)) == [
        "cache",
        "cache/x.bin",
        "model.ckpt",
        "notes.txt",
    ]
    assert b"".join(vol.read_file("model.ckpt")) == b"weights"


def test_an_edit_through_one_hard_link_commits_every_name(store: Any, tmp_path: Path) -> None:
    # `ln a.txt b.txt`, then an edit of a.txt in place: b.txt changed too, but the
    # change journal reports only the name written through, so until a full scan (the
    # unmount) the volume kept b.txt's old bytes.
    vol, mnt, m = committed_mount(store, tmp_path, {"sub/.keep": ""})
    (mnt / "a.txt").write_text("one")
    os.link(mnt / "a.txt", mnt / "sub/b.txt")
    os.link(mnt / "a.txt", mnt / "c.txt")
    assert m.commit() is not None
    with open(mnt / "a.txt", "r+") as f:
        f.write("two")
    info = m.commit()
    assert info is not None and info.modified == 3
    for name in ("a.txt", "sub/b.txt", "c.txt"):
        assert b"".join(vol.read_file(name)) == b"two", name
    m.unmount()
