"""``jupyter volume dict ...`` (real subprocesses) and ``%volume dict ...`` (a real IPython
shell), on a local store and on SeaweedFS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from jupyter_volume import Dict

try:
    from .children import private_folders
except ImportError:  # tests/ is not a package
    from children import private_folders  # type: ignore[no-redef]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def run_cli(
    url: str, env: dict[str, str], tmp: Path, *args: str, rc: int = 0, input: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_VOLUME_")}
    full_env.update(private_folders(tmp))
    full_env.update(env, JUPYTER_CONFIG_DIR=str(tmp / "jupyter-config"))
    p = subprocess.run(
        [sys.executable, "-m", "jupyter_volume.cli", *args, "--store", url],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        input=None if input is None else input.decode(),
    )
    assert p.returncode == rc, f"{args}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    if rc:
        assert "Traceback" not in p.stderr, p.stderr
    return p


def test_cli_dict_commands(opened: tuple[Any, str, dict[str, str]], tmp_path: Path) -> None:
    _, url, env = opened

    def cli(
        *args: str, rc: int = 0, input: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_cli(url, env, tmp_path, *args, rc=rc, input=input)

    assert "Created Dict 'cfg'" in cli("dict", "create", "cfg").stdout  # makes the store
    cli("dict", "create", "keep")  # the store never empties (an empty S3 prefix is no store)
    assert "already exists" in cli("dict", "create", "cfg", rc=2).stderr
    cli("dict", "create", "cfg", "--allow-existing")
    cli("dict", "put", "cfg", "greeting", "hello")
    assert (
        # options may come anywhere, between positionals too
        "left as it was" in cli("dict", "put", "cfg", "greeting", "--skip-if-exists", "bye").stdout
    )
    assert cli("dict", "get", "cfg", "greeting").stdout == "hello\n"
    assert json.loads(cli("dict", "get", "cfg", "greeting", "--json").stdout)["value"] == "hello"
    assert "not in Dict 'cfg'" in cli("dict", "get", "cfg", "nope", rc=3).stderr

    # entries written from Python show in items, with a preview of any value
    d = Dict.from_name("cfg", store=url)
    d.update({f"k{i:02d}": i for i in range(25)})
    d[("a", 1)] = {"nested": [1, 2]}
    out = cli("dict", "items", "cfg").stdout
    assert "first 20 of 27" in out and "'greeting'" in out
    assert len(json.loads(cli("dict", "items", "cfg", "--json", "5").stdout)) == 5
    every = json.loads(cli("dict", "items", "cfg", "--all", "--json").stdout)
    assert len(every) == 27
    assert {"key": "greeting", "value": "hello"} in every
    assert {"key": "('a', 1)", "value": {"nested": [1, 2]}} in every  # repr where JSON cannot
    listed = json.loads(cli("dict", "list", "--json").stdout)
    assert sorted(x["name"] for x in listed) == ["cfg", "keep"]
    # environments: -e before or after the action, as for the other commands (it used
    # to be accepted before the action and ignored)
    cli("-e", "dev", "dict", "create", "dev-only")
    cli("dict", "put", "dev-only", "k", "v", "--env", "dev")
    dev = json.loads(cli("dict", "list", "-e", "dev", "--json").stdout)
    assert [x["name"] for x in dev] == ["dev-only"]
    assert cli("-e", "dev", "dict", "get", "dev-only", "k").stdout == "v\n"
    assert "not found" in cli("dict", "get", "dev-only", "k", rc=3).stderr

    # clear and delete ask first: with no terminal to ask on, they refuse unless -y
    assert "pass --yes" in cli("dict", "clear", "cfg", rc=2, input=b"y\n").stderr
    assert len(d) == 27
    cli("dict", "clear", "cfg", "-y")
    assert len(d) == 0 and "is empty" in cli("dict", "items", "cfg").stdout
    assert "pass --yes" in cli("dict", "delete", "cfg", rc=2).stderr
    cli("dict", "delete", "cfg", "-y")
    assert "not found" in cli("dict", "items", "cfg", rc=3).stderr
    cli("dict", "delete", "cfg", "--allow-missing")
    assert "not found" in cli("dict", "delete", "cfg", "-y", rc=3).stderr

    # usage mistakes: exit 2, one line
    assert "invalid Dict name" in cli("dict", "create", "bad name", rc=2).stderr
    assert "required: KEY" in cli("dict", "get", "cfg", rc=2).stderr
    assert "invalid choice" in cli("dict", "bogus", rc=2).stderr
    assert "usage: jupyter volume dict items" in cli("dict", "items", "--help").stdout


def test_cli_items_lists_every_entry_when_one_cannot_be_read(
    local_store: Any, tmp_path: Path
) -> None:
    # An entry written where a module is installed that is not here: `items` shows it
    # as unreadable and every other entry all the same (it used to fail as a whole).
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "jv_elsewhere.py").write_text("class Thing:\n    pass\n")
    code = (
        "import sys, jv_elsewhere\n"
        "from jupyter_volume import Dict\n"
        "d = Dict.from_name('mixed', create_if_missing=True, store=sys.argv[1])\n"
        "d['ok'] = 1\n"
        "d['thing'] = jv_elsewhere.Thing()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "mods")}
    subprocess.run([sys.executable, "-c", code, local_store.url], env=env, check=True, timeout=120)
    out = run_cli(local_store.url, {}, tmp_path, "dict", "items", "mixed").stdout
    assert "'ok'" in out and "int" in out
    assert "'thing'" in out and "cannot be read here" in out and "jv_elsewhere" in out
    rows = json.loads(
        run_cli(local_store.url, {}, tmp_path, "dict", "items", "mixed", "--json").stdout
    )
    assert {"key": "ok", "value": 1} in rows
    (bad,) = [r for r in rows if r["key"] == "thing"]
    assert "jv_elsewhere" in bad["error"] and "value" not in bad
    err = run_cli(local_store.url, {}, tmp_path, "dict", "items", "mixed", "-1", rc=2).stderr
    assert "is negative" in err


def test_magic_dict_commands(
    shell: Any, opened: tuple[Any, str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url, _ = opened
    monkeypatch.setenv("JUPYTER_VOLUME_STORE", url)

    def magic(line: str) -> tuple[Any, Any]:
        with capture_output() as cap:
            result = shell.run_line_magic("volume", line)
        return result, cap

    _, cap = magic("dict create shared")
    assert "Created Dict 'shared'" in cap.stdout
    magic("dict put shared color blue")
    Dict.from_name("shared", store=url)["n"] = 3
    result, cap = magic("dict items shared")
    html = cap.outputs[0].data["text/html"]
    assert "<table" in html and "&#x27;color&#x27;" in html and "&#x27;blue&#x27;" in html
    assert magic("dict items shared --json")[0] == [
        {"key": "color", "value": "blue"},
        {"key": "n", "value": 3},
    ]
    assert magic("dict get shared n --json")[0]["value"] == 3
    assert [x["name"] for x in magic("dict list --json")[0]] == ["shared"]
    with pytest.raises(UsageError) as info:
        shell.run_line_magic("volume", "dict create 'bad name'")
    assert "invalid Dict name" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(UsageError):
        shell.run_line_magic("volume", "dict clear shared")  # no way to ask: needs -y
    magic("dict delete shared -y")
    assert magic("dict list --json")[0] == []


def test_cli_shows_values_whose_repr_fails_and_prints_strict_json(
    local_store: Any, tmp_path: Path
) -> None:
    # An int of more digits than the interpreter will print (its repr raises), and
    # floats JSON has no literal for: `items` and `get` used to crash with "this is a
    # bug" on the first, and `--json` printed NaN / Infinity, which no strict JSON parser
    # (nor JavaScript's JSON.parse) accepts.
    d = Dict.from_name("odd", create_if_missing=True, store=local_store)
    d["big"] = 10**5000
    d["nan"] = float("nan")
    d["inf"] = [float("inf")]
    d["ok"] = 1

    def strict(text: str) -> Any:
        def refuse(name: str) -> Any:
            raise AssertionError(f"not strict JSON: {name}")

        return json.loads(text, parse_constant=refuse)

    def cli(*args: str) -> str:
        return run_cli(local_store.url, {}, tmp_path, "dict", *args).stdout

    out = cli("items", "odd")
    assert "'big'" in out and "int" in out and "'ok'" in out
    rows = strict(cli("items", "odd", "--json"))
    by_key = {r["key"]: r for r in rows}
    assert by_key["ok"]["value"] == 1 and set(by_key) == {"big", "nan", "inf", "ok"}
    assert "int" in by_key["big"]["value"] and "5001 digits" in by_key["big"]["value"]
    assert by_key["nan"]["value"] == "nan" and by_key["inf"]["value"] == "[inf]"
    assert "5001 digits" in cli("get", "odd", "big")
    assert strict(cli("get", "odd", "nan", "--json"))["value"] == "nan"
    assert strict(cli("get", "odd", "big", "--json"))["key"] == "big"
