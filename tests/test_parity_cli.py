"""``jupyter volume`` and ``%volume`` next to Modal's ``modal volume``: the client-visible
cases of Modal's CLI tests (``py/test/cli_test.py``, named as there), and the front-end
items of issue 15. Run in-process through :func:`jupyter_volume.cli.main` (fast), except
where a real process is the point (a closed stdout, a pipe).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jupyter_volume import Volume, __version__
from jupyter_volume.cli import EXIT_BUG, main

try:
    from .children import isolated_env, run_python_json
except ImportError:  # tests/ is not a package
    from children import isolated_env, run_python_json  # type: ignore[no-redef]


class Run:
    """``jupyter volume ARGS`` in this process, on a fresh default store."""

    def __init__(self, capsys: pytest.CaptureFixture[bytes]) -> None:
        self.capsys = capsys

    def __call__(self, *argv: str, rc: int = 0) -> tuple[bytes, str]:
        self.capsys.readouterr()
        code = main(list(argv))
        out, err = self.capsys.readouterr()
        assert code == rc, (
            f"{argv}: exit {code}, expected {rc}\nstdout: {out!r}\nstderr: {err.decode()}"
        )
        return out, err.decode()

    def err(self, *argv: str, rc: int) -> str:
        _, err = self(*argv, rc=rc)
        lines = err.strip().splitlines()
        assert len(lines) == 1, err  # one line, never a traceback
        return lines[0]


@pytest.fixture
def run(
    capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Run:
    monkeypatch.setenv("JUPYTER_VOLUME_STORE", (tmp_path / "store").as_uri())
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.delenv("JUPYTER_VOLUME_ENV", raising=False)
    monkeypatch.chdir(tmp_path)
    return Run(capsysbinary)


def test_volume_create_delete(run: Run) -> None:
    run("create", "my-vol")
    run("create", "v2", "--version", "2")
    assert Volume.from_name("v2").version == 2
    names = [v["name"] for v in json.loads(run("list", "--json")[0])]
    assert names == ["v2", "my-vol"]  # newest first
    run("delete", "my-vol", "--yes")
    assert [v["name"] for v in json.loads(run("list", "--json")[0])] == ["v2"]


def test_volume_ls(run: Run, tmp_path: Path) -> None:
    run("create", "vol")
    (tmp_path / "a.txt").write_bytes(b"A" * 10)
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "b.txt").write_bytes(b"B")
    run("put", "vol", "a.txt")
    run("put", "vol", "dir")
    rows = json.loads(run("ls", "vol", "--json")[0])
    assert [r["filename"] for r in rows] == ["a.txt", "dir"]  # Modal's key
    assert [r["path"] for r in rows] == ["a.txt", "dir"]  # ours beside it
    assert [r["type"] for r in rows] == ["file", "dir"]
    assert rows[0]["size"] == 10 and rows[0]["created_modified"]
    # not a terminal (here, captured): one path per line, as Modal prints into a pipe
    out, _ = run("ls", "vol")
    assert out.decode() == "a.txt\ndir\n"
    assert run("ls", "vol", "dir")[0].decode() == "dir/b.txt\n"


def test_volume_ls_into_a_real_pipe(tmp_path: Path) -> None:
    env = {**os.environ, "JUPYTER_VOLUME_STORE": (tmp_path / "s").as_uri()}
    Volume.objects.create("p", store=str(tmp_path / "s"))
    with Volume.from_name("p", store=str(tmp_path / "s")).batch_upload() as b:
        b.put_file(io.BytesIO(b"1"), "one.txt")
        b.put_file(io.BytesIO(b"2"), "two words.txt")
    p = subprocess.run(
        [sys.executable, "-m", "jupyter_volume.cli", "ls", "p"],
        env=env,
        capture_output=True,
        check=True,
    )
    assert p.stdout.decode().splitlines() == ["one.txt", "two words.txt"]


def test_volume_get(run: Run, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    run("create", "vol")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "1.txt").write_bytes(b"one\n")
    (tmp_path / "src" / "sub").mkdir()
    (tmp_path / "src" / "sub" / "2.txt").write_bytes(b"two\n")
    run("put", "vol", "src", "/data")
    assert run("get", "vol", "data/1.txt", "-")[0] == b"one\n"
    # a folder to stdout: every file's bytes, as Modal writes them
    assert run("get", "vol", "data", "-")[0] == b"one\ntwo\n"
    run("get", "vol", "data", "out")
    assert (tmp_path / "out" / "sub" / "2.txt").read_bytes() == b"two\n"
    # as Modal's test: a file into an existing folder, to a new name, and "/" into a folder
    (tmp_path / "into").mkdir()
    run("get", "vol", "data/1.txt", "into")
    assert (tmp_path / "into" / "1.txt").read_bytes() == b"one\n"
    run("get", "vol", "data/1.txt", "download.txt")
    assert (tmp_path / "download.txt").read_bytes() == b"one\n"
    (tmp_path / "everything").mkdir()
    run("get", "vol", "/", "everything")
    assert (tmp_path / "everything" / "data" / "sub" / "2.txt").read_bytes() == b"two\n"


def test_volume_get_names_with_question_marks_and_brackets(run: Run, tmp_path: Path) -> None:
    # As in `ls` and the API (and Modal), only a `*` makes a glob: `get v 'why?.md'
    # copy.md` used to make a folder copy.md holding why?.md.
    run("create", "vol")
    (tmp_path / "src.txt").write_bytes(b"hello")
    run("put", "vol", "src.txt", "why?.md")
    run("put", "vol", "src.txt", "a[1].txt")
    run("put", "vol", "src.txt", "d[1]/x.txt")
    run("get", "vol", "why?.md", "copy.md")
    assert (tmp_path / "copy.md").read_bytes() == b"hello"
    run("get", "vol", "a[1].txt", "other.txt")
    assert (tmp_path / "other.txt").read_bytes() == b"hello"
    run("get", "vol", "d[1]/*.txt", "globbed")  # the glob's base is the folder d[1]
    assert (tmp_path / "globbed" / "x.txt").read_bytes() == b"hello"


def test_options_between_positionals(run: Run, tmp_path: Path) -> None:
    # As Modal's click CLI (and cp, ls, rm) take them; argparse used to refuse the
    # positional after the option ("unrecognized arguments").
    run("create", "vol")
    (tmp_path / "f.txt").write_bytes(b"v1")
    run("put", "vol", "f.txt", "docs/")
    (tmp_path / "f.txt").write_bytes(b"v2")
    run("put", "vol", "f.txt", "-f", "docs/")
    assert run("get", "vol", "docs/f.txt", "-")[0] == b"v2"
    assert run("ls", "vol", "-r", "docs")[0] == b"docs/f.txt\n"
    run("get", "vol", "docs/f.txt", "-f", "out.txt")
    assert (tmp_path / "out.txt").read_bytes() == b"v2"
    diff = json.loads(run("diff", "vol", "--json", "1", "2")[0])
    assert [(d["path"], d["change"]) for d in diff] == [("docs/f.txt", "modified")]
    run("cp", "vol", "-r", "docs", "copy")
    assert run("ls", "vol", "copy")[0] == b"copy/f.txt\n"
    assert "unrecognized arguments: b" in run("ls", "vol", "a", "b", rc=2)[1]


def test_errors_speak_of_the_command_line_not_python(run: Run, tmp_path: Path) -> None:
    run("create", "vol")
    (tmp_path / "f.txt").write_bytes(b"x")
    err = run.err("rm", "vol", "/", "-r", rc=2)
    assert "`delete` command" in err and "vol.delete()" not in err
    err = run.err("put", "vol", "f.txt", "", rc=2)
    assert err.endswith("REMOTE '' must name a file in the volume, not its root '/'"), err
    assert "remote_path" not in err


def test_volume_get_to_a_closed_stdout(tmp_path: Path) -> None:
    store = tmp_path / "s"
    with Volume.from_name("c", create_if_missing=True, store=str(store)).batch_upload() as b:
        b.put_file(io.BytesIO(b"data"), "f.txt")
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter_volume.cli",
            "--store",
            store.as_uri(),
            "get",
            "c",
            "f.txt",
            "-",
        ],
        capture_output=False,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: os.close(1),  # the shell's `>&-`
    )
    err = p.stderr.decode()
    assert p.returncode == 1, err
    assert "Traceback" not in err and "standard output is closed" in err


def test_volume_put_force(run: Run, tmp_path: Path) -> None:
    run("create", "vol")
    (tmp_path / "f.txt").write_bytes(b"v1")
    run("put", "vol", "f.txt")
    (tmp_path / "f.txt").write_bytes(b"v2")
    assert "already exists" in run.err("put", "vol", "f.txt", rc=2)
    run("put", "vol", "f.txt", "-f")
    assert run("get", "vol", "f.txt", "-")[0] == b"v2"
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.txt").write_bytes(b"x")
    run("put", "vol", "d")  # a folder: the same rule
    assert "already exists" in run.err("put", "vol", "d", rc=2)
    run("put", "vol", "d", "--force")


def test_volume_rm(run: Run, tmp_path: Path) -> None:
    run("create", "vol")
    (tmp_path / "f.txt").write_bytes(b"x")
    run("put", "vol", "f.txt", "dir/")
    assert "not empty" in run.err("rm", "vol", "dir", rc=2)
    run("rm", "vol", "dir", "-r")
    assert run("ls", "vol")[0] == b""


def test_volume_cp(run: Run, tmp_path: Path) -> None:
    run("create", "vol")
    (tmp_path / "a.txt").write_bytes(b"A")
    (tmp_path / "b.txt").write_bytes(b"B")
    run("put", "vol", "a.txt")
    run("put", "vol", "b.txt")
    run("cp", "vol", "a.txt", "newdir/")  # a folder, not a file named newdir
    assert run("ls", "vol", "newdir")[0] == b"newdir/a.txt\n"
    run("cp", "vol", "a.txt", "b.txt", "several")  # created, as Modal does
    assert run("ls", "vol", "several")[0] == b"several/a.txt\nseveral/b.txt\n"


def test_volume_rename(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    run("create", "old")
    # no terminal to ask on: refused, and nothing renamed
    assert "--yes" in run.err("rename", "old", "new", rc=2)

    class Answer(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Answer("n\n"))
    assert "not renamed" in run.err("rename", "old", "new", rc=1)
    assert [v["name"] for v in json.loads(run("list", "--json")[0])] == ["old"]
    monkeypatch.setattr(sys, "stdin", Answer("y\n"))
    run("rename", "old", "new")
    run("rename", "new", "newer", "-y")
    assert [v["name"] for v in json.loads(run("list", "--json")[0])] == ["newer"]
    assert "not found" in run.err("rename", "ghost", "x", "-y", rc=3)


def test_env_option_and_variable(run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    run("create", "shared")
    run("-e", "dev", "create", "shared")
    run("create", "dev-only", "--env", "dev")
    assert [v["name"] for v in json.loads(run("list", "--json", "-e", "dev")[0])] == [
        "dev-only",
        "shared",
    ]
    assert [v["name"] for v in json.loads(run("list", "--json")[0])] == ["shared"]
    (tmp_path / "f.txt").write_bytes(b"in dev")
    run("put", "shared", "f.txt", "-e", "dev")
    assert run("ls", "shared")[0] == b""
    monkeypatch.setenv("JUPYTER_VOLUME_ENV", "dev")
    assert run("get", "shared", "f.txt", "-")[0] == b"in dev"
    assert "environment names are" in run.err("ls", "shared", "-e", "a b", rc=2)


def test_version_option(run: Run) -> None:
    out, _ = run("--version")
    assert out.decode().strip() == f"jupyter-volume {__version__}"


def test_a_store_named_with_store_must_exist(run: Run, tmp_path: Path) -> None:
    typo = (tmp_path / "typo").as_uri()
    assert "does not exist" in run.err("--store", typo, "list", rc=3)
    assert "does not exist" in run.err("ls", "v", "--store", typo, rc=3)
    assert not (tmp_path / "typo").exists()
    run("--store", typo, "create", "v")
    assert (tmp_path / "typo").is_dir()
    run("--store", typo, "ls", "v")
    # the default store is created on first use
    assert run("list", "--json")[0].strip() == b"[]"


def test_an_unexpected_exception_exits_70_with_a_traceback_file(
    run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from jupyter_volume.commands import COMMANDS

    monkeypatch.setenv("JUPYTER_VOLUME_CACHE_DIR", str(tmp_path / "cache"))

    def broken(*_a: Any) -> Any:
        # A mock, on purpose: a real bug cannot be caused on demand.
        raise ZeroDivisionError("a bug")

    monkeypatch.setitem(COMMANDS, "list", dataclasses.replace(COMMANDS["list"], handler=broken))
    line = run.err("list", rc=EXIT_BUG)
    assert "this is a bug" in line and "ZeroDivisionError" in line
    path = Path(line.split("the traceback is in ", 1)[1].split(": please report", 1)[0])
    assert path.is_file() and "ZeroDivisionError: a bug" in path.read_text()
    assert str(tmp_path / "cache") in str(path)


# -- %volume ---------------------------------------------------------------------------------
# Each runs in a fresh Python process with its own IPython shell: IPython's test shell is
# one per process, and the other magic test modules start it themselves.
_SHELL = """
import json, sys
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "jupyter_volume")
out = []
for kind, text in json.load(sys.stdin):
    if kind == "py":
        exec(text, ip.user_ns)
        out.append({})
        continue
    with capture_output() as cap:
        try:
            result, error = ip.run_line_magic("volume", text), None
        except Exception as e:
            result, error = None, f"{type(e).__name__}: {e}"
    out.append({"stdout": cap.stdout, "result": result, "error": error})
print(json.dumps(out, default=str))
"""


def _in_ipython(tmp_path: Path, steps: list[tuple[str, str]], **env: str) -> list[dict[str, Any]]:
    """Run ``steps`` (("magic", LINE) for ``%volume LINE``, ("py", CODE)) in a new IPython."""
    full = isolated_env(tmp_path, tmp_path / "cfg", **env)
    return run_python_json(["-c", _SHELL], full, cwd=tmp_path, input=json.dumps(steps))


def test_magic_strips_comments_as_a_shell_does() -> None:
    from jupyter_volume.magics import split_line

    assert split_line("ls v # list it") == ["ls", "v"]
    assert split_line("ls v # it's the data") == ["ls", "v"]  # no 'No closing quotation'
    assert split_line("ls v#x") == ["ls", "v#x"]
    assert split_line('put v "a # b"') == ["put", "v", "a # b"]
    assert split_line("put v a\\ #b") == ["put", "v", "a #b"]
    assert split_line("# only a comment") == []


def test_magic_lines_with_comments_and_env(tmp_path: Path) -> None:
    out = _in_ipython(
        tmp_path,
        [
            ("magic", "create notes   # the team's notes"),
            ("magic", "create notes -e dev  # in the dev environment"),
            ("magic", "list --json --env dev"),
        ],
    )
    assert [o["error"] for o in out] == [None, None, None]
    assert "Created volume 'notes'" in out[0]["stdout"]
    assert [r["name"] for r in out[2]["result"]] == ["notes"]
    store = str(tmp_path / "store")
    assert [v.name for v in Volume.objects.list(store=store, environment_name="")] == ["notes"]
    assert [v.name for v in Volume.objects.list(store=store, environment_name="dev")] == ["notes"]


def test_nothing_to_commit_names_the_commit_that_took_the_changes(tmp_path: Path) -> None:
    out = _in_ipython(
        tmp_path,
        [
            ("magic", "mount notes --create --no-background"),
            ("py", "open('notes/a.txt', 'w').write('hello')"),
            ("magic", 'commit -m "first"'),
            ("py", "open('notes/b.txt', 'w').write('more')"),
            # what the commit after each cell does
            ("py", "from jupyter_volume.mount import mounts; taken = mounts()[0].commit()"),
            ("magic", 'commit -m "second"'),
            ("magic", "unmount notes"),
        ],
    )
    assert [o.get("error") for o in out] == [None] * 7
    assert "commit 1" in out[2]["stdout"]
    assert "already committed as commit 2" in out[5]["stdout"]
    assert "%volume tag notes 2 TAG" in out[5]["stdout"]


def test_volume_copy_to_another_store(run: Run, tmp_path: Path) -> None:
    run("create", "vol")
    (tmp_path / "f.txt").write_bytes(b"v1")
    run("put", "vol", "f.txt")
    run("tag", "vol", "1", "first")
    team = (tmp_path / "team").as_uri()
    out, _ = run("copy", "vol", "--to", team, "--as", "shared")
    assert b"Copied volume 'vol' to 'shared'" in out
    assert run("--store", team, "get", "shared", "f.txt", "-")[0] == b"v1"
    assert Volume.from_name("shared", store=team).tags() == {"first": 1}
    out, _ = run("copy", "vol", "--to", team, "--as", "shared")  # again: nothing new
    assert b"has every commit" in out and b"nothing copied" in out
    (tmp_path / "g.txt").write_bytes(b"v2")
    run("put", "vol", "g.txt")
    out, _ = run("copy", "vol", "--to", team, "--as", "shared")
    assert b"Brought the copy 'shared'" in out and b"1 new commit(s)" in out
    assert run("--store", team, "get", "shared", "g.txt", "-")[0] == b"v2"
    Volume.objects.create("taken", store=team)
    assert "exists" in run.err("copy", "vol", "--to", team, "--as", "taken", rc=2)
