"""``jupyter volume nfs ...`` as a user runs it (real subprocesses) and ``%volume nfs ...``
in a real IPython shell, on a local store and on SeaweedFS: the same actions as
``modal nfs``, with the volume commands' options, exit codes and ``--json``."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from jupyter_volume import NetworkFileSystem

pytestmark = pytest.mark.slow  # long in all: started first (conftest)

try:
    from .test_cli import CLI
    from .test_magics import magic, refused, say, table
except ImportError:  # tests/ is not a package
    from test_cli import CLI  # type: ignore[no-redef]
    from test_magics import magic, refused, say, table  # type: ignore[no-redef]

HANG_GUARD = 90.0


@pytest.fixture
def cli(store_url_env: tuple[str, dict[str, str]], tmp_path: Path) -> CLI:
    url, env = store_url_env
    return CLI(url, env, tmp_path)


# Every action and its errors on the local store; on SeaweedFS (each CLI call costs about
# a second there) the next test goes through the data path once.
@pytest.mark.parametrize("store_url_env", ["local"], indirect=True)
def test_cli_nfs_actions(cli: CLI, tmp_path: Path) -> None:
    cli("create", "a-volume")  # volumes are another namespace
    assert "Created network file system 'shared'" in cli("nfs", "create", "shared").stdout.decode()
    assert "already exists" in cli.err("nfs", "create", "shared", rc=2)
    cli("nfs", "create", "shared", "--allow-existing")
    assert [n["name"] for n in cli.json("nfs", "list")] == ["shared"]
    assert [v["name"] for v in cli.json("list")] == ["a-volume"]

    local = cli.cwd / "data.csv"
    local.write_bytes(b"1,2\n")
    # a network file system has no commits to speak of (the engine's are internal)
    said = cli("nfs", "put", "shared", "data.csv", "raw/").stdout.decode()
    assert said.startswith("Uploaded 1 file (4 B) to shared:/raw") and "commit" not in said, said
    said = cli("nfs", "put", "shared", "data.csv", "raw/").stdout.decode()
    assert "no changes: the network file system had them already" in said, said
    # a file that exists is replaced without --force, as `modal nfs put` does (a volume's
    # put refuses: see test_cli); --force is accepted and changes nothing
    local.write_bytes(b"3,4\n")
    cli("nfs", "put", "shared", "data.csv", "raw/")
    assert cli("nfs", "get", "shared", "raw/data.csv", "-").stdout == b"3,4\n"
    local.write_bytes(b"1,2\n")
    cli("nfs", "put", "shared", "data.csv", "raw/", "--force")
    assert "is replaced, as `modal nfs put` does" in " ".join(
        cli("nfs", "put", "--help").stdout.decode().split()
    )
    rows = cli.json("nfs", "ls", "shared", "raw")
    assert [(r["path"], r["type"], r["size"]) for r in rows] == [("raw/data.csv", "file", 4)]
    assert cli("nfs", "get", "shared", "raw/data.csv", "-").stdout == b"1,2\n"
    assert "network file system 'shared'" in cli.err("nfs", "ls", "shared", "nope", rc=3)
    assert "not found" in cli.err("nfs", "ls", "missing", rc=3)
    assert "use -r" in cli.err("nfs", "rm", "shared", "raw", rc=2)
    cli("nfs", "rm", "shared", "raw", "-r")
    assert cli.json("nfs", "ls", "shared") == []
    assert "invalid network file system name" in cli.err("nfs", "create", "bad name", rc=2)
    assert "invalid choice" in cli.err("nfs", "frobnicate", rc=2)
    assert "--yes" in cli.err("nfs", "delete", "shared", rc=2)  # stdin is not a terminal
    cli("nfs", "delete", "shared", "--yes")
    assert cli.json("nfs", "list") == []
    cli("nfs", "delete", "shared", "--yes", "--allow-missing")

    # environments: -e before or after the action, as for the volume commands
    cli("nfs", "create", "dev-only", "-e", "dev")
    assert cli.json("nfs", "list") == []
    assert [n["name"] for n in cli.json("-e", "dev", "nfs", "list")] == ["dev-only"]
    assert [n["name"] for n in cli.json("nfs", "list", "--env", "dev")] == ["dev-only"]


@pytest.mark.parametrize("store_url_env", ["s3"], indirect=True)
def test_cli_nfs_round_trip(cli: CLI) -> None:
    cli("nfs", "create", "rt")
    (cli.cwd / "f.txt").write_bytes(b"hello")
    cli("nfs", "put", "rt", "f.txt", "dir/")
    assert [r["path"] for r in cli.json("nfs", "ls", "rt", "-r")] == ["dir", "dir/f.txt"]
    # options anywhere, as for volumes (an option before PATH used to be refused)
    assert [r["path"] for r in cli.json("nfs", "ls", "rt", "-r", "dir")] == ["dir/f.txt"]
    assert cli("nfs", "get", "rt", "dir/f.txt", "-").stdout == b"hello"
    cli("nfs", "rm", "rt", "dir", "-r")
    assert "no such file" in cli.err("nfs", "ls", "rt", "dir", rc=3)


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def terminal_mount(cli: CLI, name: str, folder: Path) -> subprocess.Popen[str]:
    """``jupyter volume nfs mount NAME FOLDER`` as run in a terminal."""
    return subprocess.Popen(
        [sys.executable, "-m", "jupyter_volume.cli", "nfs", "mount", name, str(folder)]
        + ["--store", cli.url],
        env=cli.env,
        cwd=cli.cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as from a terminal: SIGINT at its default in the child. (A child inherits
        # an ignored SIGINT, and Python then never raises KeyboardInterrupt; a library
        # that ignores it in this worker made this test hang in the full run.)
        preexec_fn=_sigint_default,
    )


def test_cli_nfs_mount_runs_until_ctrl_c(
    cli: CLI, store_url_env: tuple[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for k, v in store_url_env[1].items():  # this process reads the store too
        monkeypatch.setenv(k, v)
    cli("nfs", "create", "live")
    nfs = NetworkFileSystem.from_name("live", store=cli.url)
    nfs.write_file("from-api.txt", io.BytesIO(b"api"))
    folder = cli.cwd / "live"
    p = terminal_mount(cli, "live", folder)
    try:
        line = p.stderr.readline()  # type: ignore[union-attr]
        assert "is live at" in line, line + p.stderr.read()  # type: ignore[union-attr]
        assert (folder / "from-api.txt").read_bytes() == b"api"
        (folder / "from-shell.txt").write_bytes(b"typed here")
        deadline = time.monotonic() + HANG_GUARD
        while not any(e.path == "from-shell.txt" for e in nfs.listdir("/")):
            assert time.monotonic() < deadline, "the live folder never pushed"
            time.sleep(0.1)
        (folder / "last-minute.txt").write_bytes(b"flushed at exit")
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=HANG_GUARD)
    finally:
        p.kill()
    assert p.returncode == 0, err
    assert "every change was pushed" in out
    assert b"".join(nfs.read_file("last-minute.txt")) == b"flushed at exit"
    assert "give the folder" in cli.err("nfs", "mount", "live", rc=2)


@pytest.mark.parametrize("store_url_env", ["local"], indirect=True)
def test_cli_nfs_mount_ends_with_an_error_when_the_nfs_is_deleted(
    cli: CLI, store_url_env: tuple[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Deleted by another process while live in a terminal: the command stops by itself
    # and fails (it used to run on, and say "every change was pushed" at Ctrl-C).
    for k, v in store_url_env[1].items():
        monkeypatch.setenv(k, v)
    cli("nfs", "create", "doomed")
    cli("nfs", "create", "keep")  # the store never empties
    folder = cli.cwd / "doomed"
    p = terminal_mount(cli, "doomed", folder)
    try:
        line = p.stderr.readline()  # type: ignore[union-attr]
        assert "is live at" in line, line + p.stderr.read()  # type: ignore[union-attr]
        (folder / "mine.txt").write_bytes(b"kept here")
        NetworkFileSystem.delete("doomed", store=cli.url)
        out, err = p.communicate(timeout=HANG_GUARD)  # noticed within about 10 s
    finally:
        p.kill()
    assert p.returncode == 1, out + err
    assert "'doomed' was deleted" in err and "nothing written there since is pushed" in err
    assert "every change was pushed" not in out
    assert (folder / "mine.txt").read_bytes() == b"kept here"


def test_magic_nfs_mount_status_unmount(shell: Any, env_nfs: str, tmp_path: Path) -> None:
    say(shell, "nfs create team")
    html, text = table(shell, "nfs list")
    assert "team" in text and "<table" in html
    out = say(shell, "nfs mount team")
    assert "is live at" in out
    folder = Path.cwd() / "team"
    (folder / "note.txt").write_text("from the kernel")
    nfs = NetworkFileSystem.from_name("team", store=env_nfs)
    deadline = time.monotonic() + HANG_GUARD
    while not any(e.path == "note.txt" for e in nfs.listdir("/")):
        assert time.monotonic() < deadline, "the kernel's live folder never pushed"
        time.sleep(0.1)
    _, text = table(shell, "nfs status")
    assert "team" in text and "ok" in text
    data, _ = magic(shell, "nfs status --json")
    assert data is None or isinstance(data, list)
    assert "commits by itself" in refused(shell, "commit team")
    assert "not live here" in refused(shell, "nfs unmount other")
    assert "every change was pushed" in say(shell, "nfs unmount team")
    _, text = table(shell, "nfs status")
    assert "No live folder" in text


@pytest.fixture
def env_nfs(kernel_store: str) -> str:
    """The store of each kind as the kernel's default store; cwd in a fresh folder."""
    return kernel_store


@pytest.mark.parametrize("store_url_env", ["local"], indirect=True)
def test_magic_nfs_status_says_deleted_for_a_folder_whose_nfs_is_gone(
    shell: Any, env_nfs: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jupyter_volume import livesync, names
    from jupyter_volume.mount import mounts
    from jupyter_volume.nfs import NAMESPACE

    monkeypatch.setattr(livesync, "EXISTS_EVERY", 0.2)  # instead of every 10 s
    say(shell, "nfs create gone")
    assert "is live at" in say(shell, "nfs mount gone")
    (m,) = [m for m in mounts() if m.volume.name == "gone"]
    names.delete(m.volume.store, "gone", namespace=NAMESPACE)  # as another process would
    deadline = time.monotonic() + HANG_GUARD
    while m._thread.is_alive():
        assert time.monotonic() < deadline, "the deletion was never noticed"
        time.sleep(0.05)
    # before the fix: Store "ok", as if the folder still synced
    _, text = table(shell, "nfs status")
    row = next(line for line in text.splitlines() if line.startswith("gone"))
    assert "deleted" in row and " ok " not in row, text
    m._detach()
