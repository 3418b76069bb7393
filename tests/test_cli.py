"""``jupyter volume`` as a user runs it: real subprocesses, on a local store and on SeaweedFS.

Each test drives the console script through ``python -m jupyter_volume.cli`` (and once
through ``jupyter volume``, to prove the ``jupyter`` launcher finds it), checks exit codes
and parses ``--json`` output back. Subprocess start-up dominates the run time, so each
test walks through several commands on one volume.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path
from typing import Any

import pytest

try:
    from .children import private_folders
except ImportError:  # tests/ is not a package
    from children import private_folders  # type: ignore[no-redef]

pytestmark = pytest.mark.slow  # long in all: started first (conftest)

BIN = Path(sys.executable).parent


class CLI:
    """Runs ``jupyter volume`` against one store, with its own config, state and cache dirs."""

    def __init__(self, url: str, env: dict[str, str], tmp: Path) -> None:
        self.url = url
        self.config_dir = tmp / "jupyter-config"
        self.config_dir.mkdir(exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_VOLUME_")}
        self.env.update(env)
        self.env.update(
            private_folders(tmp),
            JUPYTER_CONFIG_DIR=str(self.config_dir),
            SHELL="/bin/sh",
        )
        self.cwd = tmp / "work"
        self.cwd.mkdir(exist_ok=True)
        self.state_dir = tmp / "state"

    def __call__(
        self, *args: str, rc: int = 0, store: bool = True, input: bytes | None = None, **kw: Any
    ) -> subprocess.CompletedProcess[bytes]:
        cmd = [sys.executable, "-m", "jupyter_volume.cli", *args]
        if store:
            cmd += ["--store", self.url]
        p = subprocess.run(
            cmd,
            env=kw.pop("env", self.env),
            cwd=kw.pop("cwd", self.cwd),
            input=input,
            capture_output=True,
            timeout=120,
            **kw,
        )
        assert p.returncode == rc, (
            f"{args}: exit {p.returncode}, expected {rc}\n"
            f"stdout: {p.stdout.decode()}\nstderr: {p.stderr.decode()}"
        )
        return p

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").stdout)

    def err(self, *args: str, rc: int) -> str:
        """Run a command that must fail with ``rc``; return its one-line error."""
        p = self(*args, rc=rc)
        lines = p.stderr.decode().strip().splitlines()
        assert lines, f"{args}: no error message"
        assert "Traceback" not in p.stderr.decode(), p.stderr.decode()
        return lines[-1]


@pytest.fixture
def cli(store_url_env: tuple[str, dict[str, str]], tmp_path: Path) -> CLI:
    url, env = store_url_env
    return CLI(url, env, tmp_path)


@pytest.fixture
def local_cli(tmp_path: Path) -> CLI:
    root = tmp_path / "store"
    root.mkdir()
    return CLI(root.as_uri(), {}, tmp_path)


def test_help_documents_commands_and_exit_codes(local_cli: CLI) -> None:
    out = local_cli("--help", store=False).stdout.decode()
    for name in ("create", "list", "delete", "rename", "ls", "put", "get", "cp", "rm"):
        assert f"\n    {name} " in out
    for name in ("history", "diff", "restore", "verify", "du", "shell"):
        assert f"\n    {name} " in out
    assert "\n    mount " not in out  # mount-only commands belong to the magic
    assert "exit codes:" in out and "3    not found" in out and "2    usage" in out
    sub = local_cli("put", "--help", store=False).stdout.decode()
    assert "--force" in sub and "exit codes:" in sub
    assert "--json" in local_cli("ls", "--help", store=False).stdout.decode()
    assert "--json" not in sub

    # `jupyter volume` goes through jupyter's launcher, which finds jupyter-volume on PATH
    env = dict(local_cli.env, PATH=f"{BIN}{os.pathsep}{local_cli.env.get('PATH', '')}")
    p = subprocess.run(
        [str(BIN / "jupyter"), "volume", "--help"], env=env, capture_output=True, timeout=60
    )
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout.decode() == out


def test_volumes_create_list_rename_delete(cli: CLI) -> None:
    if cli.url.startswith("s3://"):
        # a --store that holds nothing yet is taken for a typo; `create` makes it
        assert "does not exist" in cli.err("list", rc=3)
    else:
        assert cli.json("list") == []
    assert "Created volume 'alpha'" in cli("create", "alpha").stdout.decode()
    generated = cli("create").stdout.decode()
    assert "Created volume 'volume-" in generated
    vols = cli.json("list")
    assert "alpha" in [v["name"] for v in vols] and len(vols) == 2  # newest first
    assert set(vols[0]) == {"name", "created_at", "created_by"}
    assert "already exists" in cli.err("create", "alpha", rc=2)

    assert "--yes" in cli.err("rename", "alpha", "beta", rc=2)  # asks first, as Modal does
    cli("rename", "alpha", "beta", "-y")
    assert "beta" in [v["name"] for v in cli.json("list")]
    assert "not found" in cli.err("rename", "alpha", "gamma", "-y", rc=3)

    # no terminal to ask on: refuse rather than delete unasked
    assert "--yes" in cli.err("delete", "beta", rc=2)
    cli("delete", "beta", "--yes")
    assert "beta" not in [v["name"] for v in cli.json("list")]
    assert "not found" in cli.err("delete", "beta", "--yes", rc=3)
    assert "nothing to delete" in cli("delete", "beta", "--yes", "--allow-missing").stdout.decode()


def test_file_commands_on_every_store(cli: CLI) -> None:
    """Each file command once against the store (the fine points run on a local store)."""
    w = cli.cwd
    (w / "f.txt").write_text("one")
    (w / "d" / "sub").mkdir(parents=True)
    (w / "d" / "sub" / "g.bin").write_bytes(os.urandom(200_000))
    cli("create", "vol")
    cli("put", "vol", "f.txt")
    assert "--force" in cli.err("put", "vol", "f.txt", rc=2)
    cli("put", "vol", "d", "data/")
    assert {e["path"] for e in cli.json("ls", "vol", "/", "-r")} == {
        "f.txt",
        "data",
        "data/d",
        "data/d/sub",
        "data/d/sub/g.bin",
    }
    cli("cp", "vol", "f.txt", "data/d/sub")
    cli("rm", "vol", "data/d/sub/g.bin")
    cli("get", "vol", "data", "out")
    assert sorted(p.name for p in (w / "out" / "d" / "sub").iterdir()) == ["f.txt"]
    assert cli("get", "vol", "data/d/sub/f.txt", "-").stdout == b"one"


def test_file_command_details(local_cli: CLI) -> None:
    cli = local_cli
    w = cli.cwd
    (w / "notes.txt").write_text("hello\n")
    (w / "data" / "sub").mkdir(parents=True)
    (w / "data" / "a.csv").write_text("1,2\n")
    (w / "data" / "sub" / "b.bin").write_bytes(bytes(range(256)) * 300)
    cli("create", "vol")

    assert "as commit 1" in cli("put", "vol", "notes.txt").stdout.decode()
    # onto an existing file without --force: exit 2, like Modal
    assert "--force" in cli.err("put", "vol", "notes.txt", rc=2)
    (w / "notes.txt").write_text("hello again\n")
    cli("put", "vol", "notes.txt", "--force")
    cli("put", "vol", "data")  # a folder, recursively, under its own name
    cli("put", "vol", "notes.txt", "docs/")  # REMOTE ending in / takes the local name
    cli("put", "vol", "notes.txt", "docs/renamed.txt")

    top = cli.json("ls", "vol")
    assert [(e["path"], e["type"]) for e in top] == [
        ("data", "dir"),
        ("docs", "dir"),
        ("notes.txt", "file"),
    ]
    assert top[2]["size"] == len("hello again\n")
    everything = {e["path"]: e for e in cli.json("ls", "vol", "/", "-r")}
    assert everything["data/sub/b.bin"]["size"] == 256 * 300
    assert {"docs/notes.txt", "docs/renamed.txt", "data/a.csv"} <= set(everything)
    assert [e["path"] for e in cli.json("ls", "vol", "data/**/*.bin")] == ["data/sub/b.bin"]
    # into a pipe (as here), one path per line, as Modal prints; a terminal gets the table
    assert cli("ls", "vol", "data").stdout.decode() == "data/a.csv\ndata/sub\n"

    # get: a file to stdout, a file into a folder, a folder recursively
    assert cli("get", "vol", "notes.txt", "-").stdout == b"hello again\n"
    out = w / "out"
    out.mkdir()
    cli("get", "vol", "docs/renamed.txt", "out")
    assert (out / "renamed.txt").read_text() == "hello again\n"
    cli("get", "vol", "data", "out")
    assert (out / "data" / "sub" / "b.bin").read_bytes() == bytes(range(256)) * 300
    assert "--force" in cli.err("get", "vol", "data", "out", rc=2)
    (out / "data" / "a.csv").write_text("changed")
    cli("get", "vol", "data", "out", "--force")
    assert (out / "data" / "a.csv").read_text() == "1,2\n"
    cli("get", "vol", "/", "dump")  # LOCAL that does not exist becomes the folder
    assert (w / "dump" / "docs" / "notes.txt").is_file()
    # a folder to stdout: every file's bytes, in path order, as Modal writes them
    assert cli("get", "vol", "data", "-").stdout == b"1,2\n" + bytes(range(256)) * 300

    # cp and rm inside the volume
    cli("cp", "vol", "notes.txt", "docs/renamed.txt", "data")
    assert {"data/notes.txt", "data/renamed.txt"} <= {
        e["path"] for e in cli.json("ls", "vol", "data")
    }
    assert "-r" in cli.err("cp", "vol", "data", "copy", rc=2)
    cli("cp", "vol", "data", "copy", "-r")
    assert cli("get", "vol", "copy/sub/b.bin", "-").stdout == bytes(range(256)) * 300
    assert "-r" in cli.err("rm", "vol", "copy", rc=2)
    cli("rm", "vol", "copy", "-r")
    cli("rm", "vol", "docs/notes.txt")
    assert "no such file" in cli.err("rm", "vol", "docs/notes.txt", rc=3)
    paths = {e["path"] for e in cli.json("ls", "vol", "/", "-r")}
    assert "copy" not in paths and "docs/notes.txt" not in paths

    du = cli.json("du", "vol", "data")
    assert du["path"] == "data" and du["files"] == 4
    assert du["bytes"] == 4 + 256 * 300 + 2 * len("hello again\n")


def test_history_diff_restore_verify_info(cli: CLI) -> None:
    w = cli.cwd
    cli("create", "vol")
    (w / "a.txt").write_text("one")
    cli("put", "vol", "a.txt")  # commit 1
    (w / "a.txt").write_text("two!")
    cli("put", "vol", "a.txt", "--force")  # commit 2
    cli("put", "vol", "a.txt", "b.txt")  # commit 3

    history = cli.json("history", "vol")
    assert [c["seq"] for c in history] == [3, 2, 1, 0]
    assert history[0]["added"] == 1 and history[1]["modified"] == 1
    assert {"seq", "time", "author", "message", "added", "modified", "deleted"} <= set(history[0])
    assert "History of 'vol'" in cli("history", "vol", "-n", "2").stdout.decode()
    assert [c["seq"] for c in cli.json("history", "vol", "-n", "2", "--before", "2")] == [1, 0]

    assert cli.json("diff", "vol") == [
        {"change": "added", "path": "b.txt", "type": "file", "old_size": None, "new_size": 4}
    ]
    diff = cli.json("diff", "vol", "1", "2")
    assert [(d["change"], d["path"], d["old_size"], d["new_size"]) for d in diff] == [
        ("modified", "a.txt", 3, 4)
    ]
    # names the volume and, for a number past the end, the newest commit there is
    assert "commit 99 does not exist in volume 'vol' (its newest commit is 3)" in cli.err(
        "diff", "vol", "99", rc=3
    )

    assert "new commit 4" in cli("restore", "vol", "1", "a.txt").stdout.decode()
    assert cli("get", "vol", "a.txt", "-").stdout == b"one"
    assert "new commit 5" in cli("restore", "vol", "0").stdout.decode()
    assert cli.json("ls", "vol") == []
    assert "Nothing to restore" in cli("restore", "vol", "0").stdout.decode()
    # a path that exists neither then nor now is a typo: exit 3, as ls/get/rm/cp say it
    assert "at commit 1 or now: notse.txt" in cli.err("restore", "vol", "1", "notse.txt", rc=3)

    report = cli.json("verify", "vol")
    assert report["ok"] is True and report["errors"] == [] and report["commits"] == 6

    info = cli.json("info", "vol")
    assert info["name"] == "vol" and info["head"] == 5 and len(info["id"]) >= 16


def test_error_paths_exit_codes(cli: CLI) -> None:
    (cli.cwd / "f.txt").write_text("x")
    cli("create", "first")  # the store exists from here on (--store must name one)
    # unknown volume: exit 3 and a hint how to create it
    assert "jupyter volume create nope" in cli.err("ls", "nope", rc=3)
    assert "not found" in cli.err("put", "nope", "f.txt", rc=3)
    # bad names: exit 2, stating the rule
    assert "volume names are" in cli.err("create", "bad name", rc=2)
    cli("create", "vol")
    cli("put", "vol", "f.txt")
    # paths escaping the volume: exit 2, nothing written
    assert "escapes the volume" in cli.err("put", "vol", "f.txt", "../../x.txt", rc=2)
    assert "escapes the volume" in cli.err("get", "vol", "../../etc/passwd", rc=2)
    assert "escapes the volume" in cli.err("cp", "vol", "f.txt", "../y", rc=2)
    assert [e["path"] for e in cli.json("ls", "vol", "/", "-r")] == ["f.txt"]
    # missing things inside a volume or locally: exit 3
    assert "no such file" in cli.err("get", "vol", "missing.txt", rc=3)
    assert "does not exist" in cli.err("put", "vol", "missing-local.txt", rc=3)


def test_usage_errors_need_no_store(local_cli: CLI) -> None:
    cli = local_cli
    cli("create", "vol")
    assert "volume names are" in cli.err("ls", "..", rc=2)  # '.hidden' is valid, as in Modal
    assert "volume names are" in cli.err("ls", "x" * 65, rc=2)
    assert "escapes the volume" in cli.err("rm", "vol", "a/../../b", rc=2)
    p = cli("ls", rc=2)
    assert "usage: jupyter volume ls" in p.stderr.decode()
    assert "invalid choice" in cli.err("frobnicate", rc=2)
    assert "did you mean" not in cli.err("frobnicate", rc=2)  # nothing near it
    assert "did you mean 'ls'?" in cli.err("lss", "vol", rc=2)  # a typo: the nearest command
    assert "did you mean 'put'?" in cli.err("nfs", "putt", "x", rc=2)
    assert "%volume mount" in cli.err("mount", "vol", rc=2)
    assert "unrecognized arguments" in cli.err("ls", "vol", "--bogus", rc=2)
    assert "not a whole number" in cli.err("history", "vol", "-n", "lots", rc=2)
    assert "negative" in cli.err("diff", "vol", "-1", rc=2)
    assert cli.json("verify", "vol", "--metadata-only")["ok"] is True
    p = cli("list", "--store", "ftp://nowhere/x", store=False, rc=2)
    assert "unsupported store URL" in p.stderr.decode()
    # the CLI stays light: no IPython, widgets or Jupyter server on the way
    code = (
        "import sys\n"
        "from jupyter_volume.cli import main\n"
        f"assert main(['ls', 'vol', '--store', {cli.url!r}]) == 0\n"
        "heavy = ('IPython', 'ipywidgets', 'jupyterlab', 'jupyter_server', 'tornado')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", code], env=cli.env, cwd=cli.cwd, capture_output=True, timeout=60
    )
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout.decode().strip().splitlines()[-1] == "[]"


def test_shell_mounts_commits_and_passes_exit_code(cli: CLI) -> None:
    cli("create", "vol")
    (cli.cwd / "seed.txt").write_text("seed")
    cli("put", "vol", "seed.txt")
    script = 'test "$(cat seed.txt)" = seed && echo made > made.txt && rm seed.txt && exit 7'
    p = cli("shell", "vol", "-c", script, rc=7)
    assert "Committed 'vol'" in p.stderr.decode()
    assert cli("get", "vol", "made.txt", "-").stdout == b"made\n"
    assert [e["path"] for e in cli.json("ls", "vol")] == ["made.txt"]
    p = cli("shell", "vol", "-c", "true")
    assert "No changes" in p.stderr.decode()
    # each shell's temporary folder is gone, and so is what its mount kept about it
    assert list((cli.state_dir / "mounts").iterdir()) == []
    assert "not found" in cli.err("shell", "nope", "-c", "true", rc=3)


def test_store_comes_from_option_env_then_config(local_cli: CLI, tmp_path: Path) -> None:
    a, b, c = (tmp_path / n for n in ("store-a", "store-b", "store-c"))
    (local_cli.config_dir / "jupyter_volume_config.py").write_text(
        f"c.VolumeConfig.store_url = {a.as_uri()!r}\n"
    )
    assert a.as_uri() in local_cli("create", "v1", store=False).stdout.decode()
    env = dict(local_cli.env, JUPYTER_VOLUME_STORE=b.as_uri())
    assert b.as_uri() in local_cli("create", "v2", store=False, env=env).stdout.decode()
    p = local_cli("create", "v3", "--store", c.as_uri(), store=False, env=env)
    assert c.as_uri() in p.stdout.decode()
    assert (a / "names" / "v1").is_file() and (b / "names" / "v2").is_file()
    assert (c / "names" / "v3").is_file()
    # a JSON config file next to it is read too (and wins, as in traitlets)
    (local_cli.config_dir / "jupyter_volume_config.json").write_text(
        json.dumps({"VolumeConfig": {"store_url": c.as_uri()}})
    )
    assert c.as_uri() in local_cli("create", "v4", store=False).stdout.decode()
    # a bad value in the config file: one clear line, exit 2
    (local_cli.config_dir / "jupyter_volume_config.py").write_text(
        "c.VolumeConfig.commit_interval = -1\n"
    )
    p = local_cli("list", store=False, rc=2)
    assert "commit_interval" in p.stderr.decode() and "Traceback" not in p.stderr.decode()


def _run_with_tty_stderr(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run ``cmd`` with stderr on a pseudo-terminal (where tqdm draws); return (rc, stderr)."""
    master, slave = pty.openpty()
    # a fresh pty is 0 columns wide, and tqdm would draw a 0-column bar
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")


def test_progress_bar_past_threshold_on_a_terminal_only(local_cli: CLI) -> None:
    (local_cli.config_dir / "jupyter_volume_config.py").write_text(
        "c.VolumeConfig.progress_threshold_files = 3\n"
    )
    w = local_cli.cwd
    for name, n in (("few", 2), ("many", 5)):
        (w / name).mkdir()
        for i in range(n):
            (w / name / f"{i}.txt").write_text("x" * 1000)
    local_cli("create", "vol")
    base = [sys.executable, "-m", "jupyter_volume.cli", "--store", local_cli.url]
    rc, err = _run_with_tty_stderr([*base, "put", "vol", "many"], local_cli.env, w)
    assert rc == 0 and "100%" in err and "put many" in err
    rc, err = _run_with_tty_stderr([*base, "put", "vol", "few"], local_cli.env, w)
    assert rc == 0 and "%" not in err  # under the threshold: no bar
    rc, err = _run_with_tty_stderr([*base, "get", "vol", "many", "got"], local_cli.env, w)
    assert rc == 0 and "100%" in err and (w / "got" / "4.txt").is_file()
    # not a terminal (a pipe, a CI log): no bar even past the threshold
    p = local_cli("get", "vol", "many", "got2")
    assert b"%" not in p.stderr and (w / "got2" / "4.txt").is_file()


def test_gc_retention_and_tags(cli: CLI, tmp_path: Path) -> None:
    cli("create", "ck")
    for i in range(4):
        (tmp_path / f"w{i}.bin").write_bytes(os.urandom(300_000))
        cli("put", "ck", str(tmp_path / f"w{i}.bin"), "weights.bin", "--force")
    assert cli.json("retention", "ck")["policy"] == "keep every commit"
    cli("tag", "ck", "2", "best")
    assert "tag 'best' exists already" in cli.err("tag", "ck", "3", "best", rc=2)
    rows = cli.json("history", "ck")
    assert [r["tags"] for r in rows if r["seq"] == 2] == ["best"]
    pol = cli.json("retention", "ck", "--keep-last", "1", "--grace", "0")
    assert pol["keep_last"] == 1 and pol["grace"] == 0
    assert "--keep-last" in cli("retention", "--help", store=False).stdout.decode()
    # durations read as they are typed in the table, in seconds in --json
    shown = cli("retention", "ck", "--keep-within", "2d", "--grace", "90").stdout.decode()
    assert re.search(r"Keep within +2d\n", shown) and re.search(r"Grace +90s\n", shown), shown
    assert cli.json("retention", "ck")["keep_within"] == 172800
    cli("retention", "ck", "--keep-last", "1", "--grace", "0")
    dry = cli.json("gc", "ck", "--dry-run")
    assert dry["dry_run"] is True and dry["expired"] == [1, 3]
    assert [r["seq"] for r in cli.json("history", "ck")] == [4, 3, 2, 1, 0]
    done = cli.json("gc", "ck")
    assert done["expired"] == [1, 3] and done["bytes_freed"] > 500_000
    seqs = [r["seq"] for r in cli.json("history", "ck")]
    assert seqs[1:] == [4, 2, 0] and cli.json("verify", "ck")["ok"] is True
    cli("untag", "ck", "best")
    assert cli.err("untag", "ck", "best", rc=3)
    assert cli.err("retention", "ck", "--keep-within", "soon", rc=2)
    assert cli.json("retention", "ck", "--keep-all")["policy"] == "keep every commit"
