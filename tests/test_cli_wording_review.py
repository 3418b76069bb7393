"""Two of the CLI's user-facing messages, as a user meets them (real subprocesses on a local
store, a real IPython shell, the real config loader):

* an unknown option names the help of the command that was typed (``jupyter volume ls
  --help``), not the top-level help; a mistyped command still gets "did you mean";
* a broken ``jupyter_volume_config.py`` (or ``.json``) is the user's mistake, reported in
  one line naming the file and the line, with the usage exit code (2), not as a bug (70),
  by the CLI, the ``%volume`` magic, the Python API and the server's engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError as IPythonUsageError

from jupyter_volume import Volume
from jupyter_volume.commands import UsageError, parse
from jupyter_volume.config import ConfigFileError, load_config
from jupyter_volume.errors import InvalidError

try:
    from .test_cli import CLI
except ImportError:  # tests/ is not a package
    from test_cli import CLI  # type: ignore[no-redef]


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    root = tmp_path / "store"
    root.mkdir()
    return CLI(root.as_uri(), {}, tmp_path)


def _error(cli: CLI, *args: str, rc: int = 2) -> tuple[str, str]:
    """Run a command that must fail; return (its whole stderr, its last line)."""
    err = cli(*args, rc=rc).stderr.decode()
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert lines, f"{args}: no error message"
    return err, lines[-1]


# -- 1. an unknown option points at the help of the command typed --------------------------------
@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["ls", "vol", "--bogus"], "ls"),
        (["ls", "--bogus", "vol"], "ls"),  # options may come between positionals
        (["ls", "vol", "sub", "extra"], "ls"),  # one positional too many
        (["--bogus", "ls", "vol"], "ls"),  # before the command: still about that command
        (["put", "vol", "f.txt", "--nope"], "put"),
        (["history", "vol", "--nope"], "history"),
        (["dict", "--nope", "put", "d", "k", "v"], "dict"),  # before dict's action
        (["nfs", "--nope", "ls", "x"], "nfs"),
    ],
)
def test_unknown_option_points_at_the_commands_own_help(
    cli: CLI, argv: list[str], command: str
) -> None:
    err, last = _error(cli, *argv)
    unknown = argv[-1] if argv[-1] == "extra" else next(a for a in argv if a.startswith("--"))
    assert f"unrecognized arguments: {unknown}" in last, err
    assert f"(see jupyter volume {command} --help)" in last, err
    assert "(see jupyter volume --help)" not in err, err
    # the usage shown above it is the command's too
    assert f"usage: jupyter volume {command} " in err, err


def test_unknown_option_of_a_dict_or_nfs_action_points_at_the_actions_help(cli: CLI) -> None:
    err, last = _error(cli, "dict", "put", "d", "k", "v", "--nope")
    assert "unrecognized arguments: --nope" in last
    assert "(see jupyter volume dict put --help)" in last
    # named once, as argparse does, with the action's usage above it
    assert last.startswith("jupyter volume dict put: error: "), last
    assert "usage: jupyter volume dict put " in err, err
    err, last = _error(cli, "nfs", "put", "--nope", "shared", "a.txt")
    assert "(see jupyter volume nfs put --help)" in last
    assert last.startswith("jupyter volume nfs put: error: "), last
    assert "usage: jupyter volume nfs put " in err, err


def test_mistyped_command_still_gets_did_you_mean_and_the_top_level_help(cli: CLI) -> None:
    _, last = _error(cli, "lss", "vol")
    assert "did you mean 'ls'?" in last and last.endswith("(see jupyter volume --help)")
    _, last = _error(cli, "nfs", "putt", "x")
    assert "did you mean 'put'?" in last and last.endswith("(see jupyter volume nfs --help)")
    # a top-level option without its command: the top-level help
    _, last = _error(cli, "--bogus")
    assert "(see jupyter volume --help)" in last


def test_unknown_option_in_the_magic_names_the_magics_command_help() -> None:
    with pytest.raises(UsageError) as info:
        parse(["ls", "vol", "--bogus"], "magic")
    assert "unrecognized arguments: --bogus" in str(info.value)
    assert "(see %volume ls --help)" in str(info.value)
    assert info.value.prog == "%volume ls" and info.value.usage.startswith("usage: %volume ls")


# -- 2. a broken config file is the user's mistake -----------------------------------------------
BROKEN_PY = {
    # (file text, the line to name, words of the error)
    "syntax": (
        "c.VolumeConfig.commit_interval = 10\nc.VolumeConfig.store_url = = 'x'\n",
        2,
        "SyntaxError",
    ),
    "raises": ("c.VolumeConfig.commit_interval = 10\n\nimport no_such_module_here\n", 3, "no_such"),
}


def _check_config_error(message: str, path: Path, line: int | None, words: str) -> None:
    assert "\n" not in message.strip(), message
    assert str(path) in message, message
    if line is not None:
        assert f"at line {line}:" in message, message
    assert words in message, message
    assert "fix" in message, message  # says what to do
    for bug_words in ("bug", "report", "Traceback"):
        assert bug_words not in message, message


@pytest.mark.parametrize("case", sorted(BROKEN_PY))
def test_broken_config_py_is_a_user_error_in_the_cli(cli: CLI, case: str) -> None:
    text, line, words = BROKEN_PY[case]
    path = cli.config_dir / "jupyter_volume_config.py"
    path.write_text(text)
    err, last = _error(cli, "list", rc=2)
    assert len(err.strip().splitlines()) == 1, err
    assert last.startswith("jupyter volume: error: ")
    _check_config_error(last, path, line, words)


def test_broken_config_json_is_a_user_error_in_the_cli(cli: CLI) -> None:
    path = cli.config_dir / "jupyter_volume_config.json"
    path.write_text('{"VolumeConfig":\n  {"commit_interval": 10,}\n}\n')
    _, last = _error(cli, "list", rc=2)
    _check_config_error(last, path, 2, "JSON")


def test_broken_config_is_a_user_error_in_the_api_magic_and_server(
    shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "jupyter-config"
    folder.mkdir()
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(folder))
    monkeypatch.delenv("JUPYTER_VOLUME_STORE", raising=False)
    path = folder / "jupyter_volume_config.py"
    path.write_text(BROKEN_PY["syntax"][0])

    # the Python API: a VolumeError (InvalidError) naming the file and line
    with pytest.raises(ConfigFileError) as info:
        load_config()
    assert isinstance(info.value, InvalidError)  # a VolumeError: the user's to fix
    assert (info.value.path, info.value.line) == (str(path), 2)
    _check_config_error(str(info.value), path, 2, "SyntaxError")
    with pytest.raises(InvalidError) as info:
        Volume.objects.list()  # the store comes from the config
    _check_config_error(str(info.value), path, 2, "SyntaxError")

    # %volume: IPython's UsageError (one line, no traceback), not the SyntaxError itself
    with pytest.raises(IPythonUsageError) as magic_info:
        shell.run_line_magic("volume", "list")
    _check_config_error(str(magic_info.value), path, 2, "SyntaxError")

    # the server's engine opens its store through load_config as its extension does, and
    # answers with the message (400, the InvalidError), not "unexpected server error"
    from jupyter_volume.config import get_store
    from jupyter_volume.server.engine import VolumeService
    from jupyter_volume.server.handlers import error_reply

    service = VolumeService(lambda: get_store(config=load_config()), upload_dir=tmp_path / "up")
    try:
        version = service.version()
        assert version["store"] is None
        _check_config_error(version["store_error"], path, 2, "SyntaxError")
        with pytest.raises(InvalidError) as info:
            service.list_volumes()
        status, body = error_reply(info.value, 500)
        assert status == 400 and body["error"] != "InternalError", body
        _check_config_error(body["message"], path, 2, "SyntaxError")
    finally:
        service.close()


def test_a_mount_refuses_a_broken_config_rather_than_commit_what_it_ignores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The config keeps secrets out of the volume, and has a syntax error further down: a
    # mount that fell back on the defaults would commit secret.env into history.
    folder = tmp_path / "jupyter-config"
    folder.mkdir()
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(folder))
    vol = Volume.from_name("v", store=f"file://{tmp_path / 'store'}", create_if_missing=True)
    # broken after the handle was made (a kernel that runs for days, a config edited)
    path = folder / "jupyter_volume_config.py"
    path.write_text("c.VolumeConfig.ignore_patterns = ['*.env']\nc.VolumeConfig.x = = 1\n")
    mnt = tmp_path / "mnt"
    with pytest.raises(ConfigFileError) as info:
        vol.mount(mnt, background=False)
    _check_config_error(str(info.value), path, 2, "SyntaxError")
    path.write_text("c.VolumeConfig.ignore_patterns = ['*.env']\n")  # fixed
    m = vol.mount(mnt, background=False)
    try:
        (mnt / "secret.env").write_text("TOKEN=1")
        (mnt / "data.csv").write_text("a,b\n")
        m.commit()
    finally:
        m.unmount()
    assert [e.path for e in vol.listdir("/")] == ["data.csv"]
