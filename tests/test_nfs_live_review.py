"""Review of live network file system folders: files held open for writing by a local
program while other writers replace them (by a folder, by a newer version that is still
downloading), and a folder moved right after a push. Real processes and real stores;
every wait is a poll with a generous deadline that only guards against hangs.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from jupyter_volume import NetworkFileSystem
from jupyter_volume.errors import InvalidError
from jupyter_volume.store import Store

# the polls and fixtures of the live folder tests, which these build on ("env": a child's
# environment for the store; "shared": the network file system)
try:
    from .test_nfs_live import HANG_GUARD, Mounter, content, env, shared, wait_for  # noqa: F401
except ImportError:  # tests/ is not a package
    from test_nfs_live import (  # type: ignore[no-redef]  # noqa: F401
        HANG_GUARD,
        Mounter,
        content,
        env,
        shared,
        wait_for,
    )

# Holds a file open for writing (r+b: writing nothing) until a line comes on stdin;
# "append" then appends a line first.
HOLDER = """
import sys
f = open(sys.argv[1], "r+b")
print("open", flush=True)
if sys.stdin.readline().strip() == "append":
    f.seek(0, 2)
    f.write(b"LOCAL LINE\\n")
f.close()
print("closed", flush=True)
"""


def files_under(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (path -> bytes), and every folder (path -> b"<dir>")."""
    out: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[str(Path(dirpath, d).relative_to(root))] = b"<dir>"
        for f in filenames:
            out[str(Path(dirpath, f).relative_to(root))] = Path(dirpath, f).read_bytes()
    return out


def stored(nfs: NetworkFileSystem) -> dict[str, bytes]:
    return {
        e.path: b"<dir>" if e.type.name == "DIRECTORY" else b"".join(nfs.read_file(e.path))
        for e in nfs.listdir("/", recursive=True)
    }


class Holder:
    """A child process holding ``path`` open for writing until :meth:`close`."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline() == "open\n"

    def close(self, then: str = "") -> None:
        if self.proc.poll() is None:
            out, _ = self.proc.communicate(f"{then}\n", timeout=60)
            assert "closed" in out

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=60)


@pytest.fixture
def live(
    opened: tuple[Store, str, dict[str, str]], env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[[str], Mounter]]:
    """``live(name)``: a live folder of network file system "shared" in a child process."""
    _, url, _ = opened
    made: list[Mounter] = []

    def make(name: str) -> Mounter:
        m = Mounter("shared", url, tmp_path / name, env)
        made.append(m)
        return m

    yield make
    for m in made:
        try:
            m.stop()
        finally:
            m.kill()


def test_a_file_held_open_that_another_writer_turns_into_a_folder_blocks_no_other_change(
    shared: NetworkFileSystem, live: Callable[[str], Mounter]
) -> None:
    # A program holds f open for writing while another writer replaces f by a folder
    # f/ (with f/g in it) and edits another file. Before the fix the whole pull failed,
    # every round, with "cannot write .../f/g: Not a directory. Fix that and reload
    # again": no other writer's change reached the folder until the program closed f.
    shared.write_file("f", io.BytesIO(b"a file"))
    shared.write_file("other", io.BytesIO(b"o1"))
    b = live("b")
    wait_for(lambda: content(b.path / "f") == b"a file", "f here")
    holder = Holder(b.path / "f")
    try:
        shared.remove_file("f")
        shared.write_file("f/g", io.BytesIO(b"g in the folder f"))
        shared.write_file("other", io.BytesIO(b"o2"))
        wait_for(lambda: content(b.path / "other") == b"o2", "the edit of another file")
        st = b.status()
        assert st["error"] is None, st["error"]
        assert st["waiting"] == ["f"] or "f" in st["waiting"], st
        assert content(b.path / "f") == b"a file"  # not replaced under its writer
    finally:
        holder.close()
    wait_for(lambda: content(b.path / "f/g") == b"g in the folder f", "f/ once f is closed")
    wait_for(lambda: files_under(b.path) == stored(shared), "the folder to match the store")
    st = b.status()
    assert st["waiting"] == [] and st["error"] is None and "in sync" in st["text"], st


def test_a_folder_another_writer_replaces_or_removes_while_a_file_in_it_is_held_follows_once_closed(
    shared: NetworkFileSystem, live: Callable[[str], Mounter]
) -> None:
    # Another writer replaces folder d by a file d, and removes folder e, while a
    # program here holds d/x and e/x open for writing. Once they are closed, the folder
    # must match the store. Before the fix d and e stayed here as empty folders for
    # good (the file d never came), while status said "in sync".
    shared.write_file("d/x", io.BytesIO(b"in d"))
    shared.write_file("e/x", io.BytesIO(b"in e"))
    shared.write_file("e/y", io.BytesIO(b"also in e"))
    b = live("b")
    wait_for(lambda: content(b.path / "e/y") == b"also in e", "the folders here")
    holders = [Holder(b.path / "d/x"), Holder(b.path / "e/x")]
    try:
        shared.remove_file("d", recursive=True)
        shared.write_file("d", io.BytesIO(b"d is a file now"))
        shared.remove_file("e", recursive=True)
        shared.write_file("marker", io.BytesIO(b"pulled"))
        wait_for(lambda: content(b.path / "marker") == b"pulled", "the remote commits pulled")
        assert content(b.path / "d/x") == b"in d" and content(b.path / "e/x") == b"in e"
    finally:
        for h in holders:
            h.close()
    wait_for(lambda: content(b.path / "d") == b"d is a file now", "the file d once d/x is closed")
    wait_for(lambda: not os.path.lexists(b.path / "e"), "e to go once e/x is closed")
    assert files_under(b.path) == stored(shared)
    st = b.status()
    assert st["waiting"] == [] and st["error"] is None and "in sync" in st["text"], st


def test_a_program_that_opens_a_file_while_its_new_version_downloads_keeps_its_writes(
    shared: NetworkFileSystem, live: Callable[[str], Mounter], tmp_path: Path
) -> None:
    # Another writer puts a big new version of X; while this folder downloads it, a
    # program here opens X to append (a log). The README: "A file that a process holds
    # open for writing is not replaced". Before the fix the download was renamed over
    # X all the same: the program's line went to the replaced file and was lost without
    # a word, and status said "in sync".
    shared.write_file("X", io.BytesIO(b"v1\n"))
    b = live("b")
    wait_for(lambda: content(b.path / "X") == b"v1\n", "v1 here")
    big = tmp_path / "big"
    with open(big, "wb") as f:
        for _ in range(96):
            f.write(os.urandom(1 << 20))
    opener = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys, time\n"
            "p = sys.argv[1]\n"
            "while not any(n.startswith('.jv-tmp-') for n in os.listdir(os.path.dirname(p))):\n"
            "    time.sleep(0.001)\n"
            + HOLDER.split("\n", 2)[2],  # then hold X open, as HOLDER does
            str(b.path / "X"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        shared.add_local_file(big, "X")
        assert opener.stdout is not None and opener.stdout.readline() == "open\n"
        # the download is over (renamed into place, or put aside) ...
        wait_for(
            lambda: not any(n.startswith(".jv-tmp-") for n in os.listdir(b.path)),
            "the download to end",
        )
        # ... and the program, which opened X during it, appends its line and closes X
        out, _ = opener.communicate("append\n", timeout=60)
        assert "closed" in out
    finally:
        opener.kill()
        opener.wait()
    # its write is the newest: it wins, the big version stays in history
    wait_for(
        lambda: b"".join(shared.read_file("X")) == b"v1\nLOCAL LINE\n",
        "the program's write to be pushed",
    )
    assert content(b.path / "X") == b"v1\nLOCAL LINE\n"
    st = b.status()
    assert st["waiting"] == [] and st["error"] is None, st


@pytest.mark.parametrize("store_url_env", ["local"], indirect=True)
def test_a_waiting_file_whose_folder_became_a_local_file_does_not_break_the_sync(
    shared: NetworkFileSystem, live: Callable[[str], Mounter]
) -> None:
    # x/y waits for its writer (a remote version came meanwhile); the user removes x
    # (x/y with it) and makes a file x; the writer closes. Before the fix every later
    # round failed with NotADirectoryError, x/y stayed "waiting" for good and the
    # sync backed off to one round every 10 s.
    shared.write_file("x/y", io.BytesIO(b"v1"))
    b = live("b")
    wait_for(lambda: content(b.path / "x/y") == b"v1", "x/y here")
    holder = Holder(b.path / "x/y")
    try:
        shared.write_file("x/y", io.BytesIO(b"v2"))
        wait_for(lambda: b.status()["waiting"] == ["x/y"], "v2 to wait for the writer")
        shutil.rmtree(b.path / "x")
        (b.path / "x").write_bytes(b"x is a local file")
    finally:
        holder.close()
    wait_for(lambda: stored(shared) == {"x": b"x is a local file"}, "the local file pushed")

    def settled() -> bool:
        st = b.status()
        return st["waiting"] == [] and st["error"] is None and "in sync" in st["text"]

    wait_for(settled, "nothing waiting, no error")
    assert files_under(b.path) == {"x": b"x is a local file"}


@pytest.mark.parametrize("store_url_env", ["local"], indirect=True)
def test_nfs_lock_refuses_a_bad_lease_or_timeout_in_one_clear_line(
    shared: NetworkFileSystem,
) -> None:
    # Before: lease="5" raised TypeError ("'>' not supported between 'str' and 'int'"),
    # timeout="1" a TypeError deep in the wait loop, and timeout=-1 (threading's "wait
    # forever") gave up at once with TimeoutError.
    for kw, words in (
        ({"lease": "5"}, "lease"),
        ({"lease": float("inf")}, "lease"),
        ({"timeout": "1"}, "timeout"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
    ):
        with pytest.raises(InvalidError, match=words) as e:
            shared.lock("cache.db", **kw).acquire()
        assert "\n" not in str(e.value)
    with shared.lock("cache.db", lease=5, timeout=0) as held:  # still fine
        assert held.held
    with shared.lock("cache.db", timeout=2.5):
        pass


def test_unmounting_a_live_folder_that_was_removed_warns_in_its_own_words(
    shared: NetworkFileSystem, tmp_path: Path
) -> None:
    # Before: "the mounted folder ... (volume 'shared') was removed: unmounted without
    # committing (the volume still has every file)": a volume's words.
    shared.write_file("kept.txt", io.BytesIO(b"kept"))
    m = shared.mount(tmp_path / "m")
    wait_for(lambda: content(tmp_path / "m" / "kept.txt") == b"kept", "kept.txt here")
    shutil.rmtree(tmp_path / "m")
    with pytest.warns(UserWarning, match="network file system 'shared'") as got:
        assert m.unmount() is None
    text = " ".join(str(w.message) for w in got)
    assert "volume" not in text and "committ" not in text, text
    assert [e.path for e in shared.listdir("/")] == ["kept.txt"]


REWRITER = """
import sys, time
p = sys.argv[1]
print("writing", flush=True)
i = 0
while True:  # a status file rewritten many times a second, never quiet (killed)
    with open(p, "wb") as f:
        f.write(b"local status %d" % i)
    i += 1
    time.sleep(0.05)
"""


def test_a_local_file_still_changing_where_another_writer_made_a_folder_blocks_no_other_change(
    shared: NetworkFileSystem, live: Callable[[str], Mounter]
) -> None:
    # A program here rewrites s many times a second (so it is never quiet enough to
    # push) while another writer replaces s by a folder s/ and edits another file.
    # Before the fix every pull failed ("cannot write .../s/x: Not a directory. Fix that
    # and reload again", advice a live folder refuses) for as long as the program ran:
    # no other change came in.
    shared.write_file("s", io.BytesIO(b"remote status"))
    shared.write_file("other", io.BytesIO(b"o1"))
    b = live("b")
    wait_for(lambda: content(b.path / "s") == b"remote status", "s here")
    writer = subprocess.Popen(
        [sys.executable, "-c", REWRITER, str(b.path / "s")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "writing\n"
        shared.remove_file("s")
        shared.write_file("s/x", io.BytesIO(b"x in the folder s"))
        shared.write_file("other", io.BytesIO(b"o2"))
        wait_for(lambda: content(b.path / "other") == b"o2", "the edit of another file")
        # still the local file, not the remote folder (a read between the program's
        # truncation and its write finds it empty: look again)
        wait_for(
            lambda: (content(b.path / "s") or b"").startswith(b"local status"),
            "s still the local file",
        )
        assert b.status()["error"] is None
    finally:
        writer.kill()
        writer.wait()
    # the local file is the newer act: once quiet it is pushed, over the remote folder
    last = content(b.path / "s")
    wait_for(lambda: stored(shared) == {"s": last, "other": b"o2"}, "the local s pushed")
    wait_for(lambda: files_under(b.path) == stored(shared), "the folder to match the store")
    st = b.status()
    assert st["waiting"] == [] and st["error"] is None and "in sync" in st["text"], st


@pytest.mark.parametrize("store_url_env", ["local"], indirect=True)
def test_a_pull_never_writes_through_a_local_link_out_of_the_folder(
    shared: NetworkFileSystem, tmp_path: Path
) -> None:
    # A link made here (not pushed yet) where another writer makes a folder of the same
    # name: before the fix the pull wrote the other writer's a/x through the link, into
    # the folder it points to, outside the live folder.
    outside = tmp_path / "outside"
    outside.mkdir()
    # a settle interval longer than the test: the link is not pushed, the pulls go on
    m = shared.mount(tmp_path / "m", settle=3600)
    try:
        os.symlink(outside, m.path / "a")
        shared.write_file("a/x", io.BytesIO(b"from another writer"))
        shared.write_file("marker", io.BytesIO(b""))
        wait_for(lambda: content(m.path / "marker") == b"", "the remote commits pulled")
        assert list(outside.iterdir()) == []
        assert os.readlink(m.path / "a") == str(outside)
        assert m.last_error is None, m.last_error
    finally:
        with pytest.warns(UserWarning, match="not pushed yet"):
            m.unmount()


@pytest.mark.parametrize("store_url_env", ["local"], indirect=True)
def test_a_live_folder_says_after_the_cell_which_paths_it_never_syncs(
    shared: NetworkFileSystem, tmp_path: Path
) -> None:
    # A volume mount warns after the cell about paths it can never commit (README); a
    # live folder said nothing: only status() listed them.
    m = shared.mount(tmp_path / "m")
    try:
        os.mkfifo(m.path / "pipe")
        (m.path / os.fsdecode(b"caf\xe9.txt")).write_bytes(b"x")
        (m.path / "ok.txt").write_text("ok")
        m.sync()
        with pytest.warns(UserWarning, match=r"2 path\(s\) never synced") as got:
            m._after_cell()  # what a notebook cell's end runs
        text = str(got[0].message)
        assert "pipe" in text and "caf\\xe9.txt" in text and "network file system" in text
        assert "volume" not in text and "commit" not in text, text
        assert "to sync it" in str(m.status()) and "to commit it" not in str(m.status())
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            m._after_cell()  # said once per set of paths
        assert [e.path for e in shared.listdir("/")] == ["ok.txt"]
    finally:
        m.unmount()
