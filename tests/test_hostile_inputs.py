"""Every ``jupyter volume`` subcommand, in-process, with hostile inputs: missing, odd,
non-UTF-8 and very long names and paths, a folder where a file is expected and the
reverse, a missing or malformed store, bad numbers, a closed stdout.

Whatever the input, the command ends with exit code 0 (when the input happened to be
fine), 1, 2 or 3 and a one-line error; never 70 (a bug) and never a traceback.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from jupyter_volume import Volume
from jupyter_volume.cli import EXIT_BUG, main
from jupyter_volume.commands import COMMANDS

LONG = "a" * 5000
BAD_UTF8 = "bad\udcff"  # how Python hands a non-UTF-8 argv byte to the program

NAMES = ["ghost", "..", "-", "a b", "a" * 65, LONG, BAD_UTF8, ""]
PATHS = [
    "ghost.txt",
    "../../etc/passwd",
    "dir",  # a folder where a file is expected
    "f.txt/x",  # a file where a folder is expected
    "f.txt",
    "/" + LONG,
    "/".join(["d"] * 3000),
    f"x/{BAD_UTF8}",
    "a\x00b",
    "*",
    "",
]
LOCALS = ["nonexistent", "localdir", "localfile.txt/x", BAD_UTF8, LONG, "/proc/1/mem", ""]
NUMBERS = ["-1", "abc", "99999", "1e309", "", "0x10"]
STORES = ["ftp://host/x", "s3://", "file://remote-host/x", "{store}/missing", "s3:///nobucket"]

#: What each positional (by metavar) is fed.
HOSTILE = {
    "NAME": NAMES,
    "OLD": NAMES,
    "NEW": NAMES,
    "PATH": PATHS,
    "REMOTE": PATHS,
    "SRC": PATHS,
    "DST": PATHS,
    "LOCAL": LOCALS,
    "COMMIT": NUMBERS,
    "FROM": NUMBERS,
    "TO": NUMBERS,
    "TAG": ["..", "a b", LONG, BAD_UTF8],
}

#: A valid command line for each command, on the fixture volume (hostile values replace
#: one position at a time). ``shell`` starts a shell when valid: only hostile names.
BASE: dict[str, list[str]] = {
    "create": ["create", "newvol"],
    "list": ["list"],
    "delete": ["delete", "vol", "-y"],
    "rename": ["rename", "vol", "vol2", "-y"],
    "info": ["info", "vol"],
    "copy": ["copy", "vol", "--to", "{store}-copy"],
    "ls": ["ls", "vol", "dir"],
    "put": ["put", "vol", "localfile.txt", "up.txt"],
    "get": ["get", "vol", "f.txt", "out.txt"],
    "cp": ["cp", "vol", "f.txt", "g.txt"],
    "rm": ["rm", "vol", "f.txt"],
    "du": ["du", "vol", "dir"],
    "history": ["history", "vol"],
    "diff": ["diff", "vol", "0", "1"],
    "restore": ["restore", "vol", "1", "f.txt"],
    "verify": ["verify", "vol"],
    "gc": ["gc", "vol", "--dry-run"],
    "retention": ["retention", "vol", "--keep-last", "3"],
    "tag": ["tag", "vol", "1", "t1"],
    "untag": ["untag", "vol", "t1"],
    "shell": ["shell", "ghost", "-c", "true"],
    "dict": ["dict", "get", "ghost-dict", "key"],
    "nfs": ["nfs", "ls", "ghost-nfs"],
}

#: Options with values, fed bad values.
OPTION_VALUES = {
    "--at": NUMBERS,
    "--limit": NUMBERS,
    "--grace": ["banana", "-5m", ""],
    "--keep-last": NUMBERS,
    "--keep-within": ["banana", "-1d"],
    "--interval": ["0", "-1", "nan"],
    "--version": ["3", "x"],
    "--to": ["ftp://x", "s3://", ""],
}


def _cases() -> list[tuple[str, list[str]]]:
    cases: list[tuple[str, list[str]]] = []
    for name, cmd in COMMANDS.items():
        base = BASE.get(name, [name])
        cases.append((name, [name]))  # no arguments at all
        cases.append((name, [*base, "--no-such-option"]))
        positionals = [a for a in cmd.args if not a.args[0].startswith("-")]
        for i, a in enumerate(positionals):
            pos = 1 + i
            if pos >= len(base) or name in ("dict", "nfs"):
                continue
            for bad in HOSTILE.get(a.kwargs.get("metavar", ""), []):
                argv = list(base)
                argv[pos] = bad
                cases.append((name, argv))
        for a in cmd.args:
            for opt in a.args:
                for bad in OPTION_VALUES.get(opt, []):
                    cases.append((name, [*base, opt, bad]))
        for store in STORES:
            cases.append((name, [*base, "--store", store]))
        cases.append((name, [*base, "-e", "a b"]))
    for action in ("create", "list", "delete", "clear", "get", "put", "items", "bogus"):
        for rest in ([], [".."], ["ghost-x", LONG], [BAD_UTF8, "k", "v"]):
            cases.append(("dict", ["dict", action, *rest]))
    for action in ("create", "list", "ls", "put", "get", "rm", "delete", "mount", "bogus"):
        for rest in ([], [".."], ["ghost-x", "../x"], [BAD_UTF8, "nonexistent"]):
            cases.append(("nfs", ["nfs", action, *rest]))
    return cases


CASES = _cases()


class _Out(io.TextIOWrapper):
    """A real text stream over bytes: strict like a UTF-8 stdout, so an unencodable
    character fails here as it would in a terminal."""

    def __init__(self, errors: str) -> None:
        super().__init__(io.BytesIO(), encoding="utf-8", errors=errors)

    def value(self) -> str:
        self.flush()
        return self.buffer.getvalue().decode("utf-8", "replace")  # type: ignore[attr-defined]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    store = tmp_path / "store"
    monkeypatch.setenv("JUPYTER_VOLUME_STORE", store.as_uri())
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.delenv("JUPYTER_VOLUME_ENV", raising=False)
    monkeypatch.setenv("SHELL", "/bin/true")
    monkeypatch.chdir(tmp_path)
    vol = Volume.from_name("vol", create_if_missing=True)
    with vol.batch_upload() as b:
        b.put_file(io.BytesIO(b"file"), "f.txt")
        b.put_file(io.BytesIO(b"g"), "dir/g.txt")
    (tmp_path / "localfile.txt").write_bytes(b"local")
    (tmp_path / "localdir").mkdir()
    (tmp_path / "localdir" / "x.txt").write_bytes(b"x")
    return {"store": store.as_uri()}


def _run(
    argv: list[str],
    world: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    *,
    closed_stdout: bool = False,
) -> tuple[int, str]:
    argv = [a.replace("{store}", world["store"]) for a in argv]
    out, err = _Out("strict"), _Out("backslashreplace")  # as Python sets up a terminal's
    monkeypatch.setattr(sys, "stdout", None if closed_stdout else out)
    monkeypatch.setattr(sys, "stderr", err)
    try:
        code = main(argv)
    finally:
        monkeypatch.setattr(sys, "stdout", sys.__stdout__)
        monkeypatch.setattr(sys, "stderr", sys.__stderr__)
    world["stdout"] = out.value()
    return code, err.value()


def _check(argv: list[str], code: int, err: str) -> None:
    assert code != EXIT_BUG, f"{argv!r}: exit 70 (a bug):\n{err}"
    assert code in (0, 1, 2, 3), f"{argv!r}: exit {code}\n{err}"
    assert "Traceback" not in err, f"{argv!r}:\n{err}"
    if code:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert lines, f"{argv!r}: exit {code} without a message"
        # argparse prints its usage lines first; the error itself is one line
        assert lines[-1].startswith("jupyter volume"), f"{argv!r}:\n{err}"


@pytest.mark.parametrize("command", sorted({c for c, _ in CASES}))
def test_every_subcommand_survives_hostile_inputs(
    command: str, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    failures = 0
    for name, argv in CASES:
        if name != command:
            continue
        code, err = _run(argv, world, monkeypatch)
        _check(argv, code, err)
        failures += code != 0
        if code == 0 and name in ("delete", "rename", "rm", "create", "copy"):
            # put the fixture back as it was, so later cases meet the same world
            Volume.objects.delete("vol2", allow_missing=True)
            Volume.from_name("vol", create_if_missing=True)
    assert failures > 0  # the sweep reached the error paths


@pytest.mark.parametrize(
    "argv",
    [
        ["get", "vol", "f.txt", "-"],
        ["get", "vol", "dir", "-"],
        ["ls", "vol"],
        ["list", "--json"],
        ["history", "vol"],
    ],
)
def test_a_closed_stdout_is_an_error_or_silence_never_a_bug(
    argv: list[str], world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, err = _run(argv, world, monkeypatch, closed_stdout=True)
    _check(argv, code, err)
    if argv[-1] == "-":
        assert code == 1 and "standard output is closed" in err


def test_put_of_a_folder_holding_a_non_utf8_name_skips_it_with_a_warning(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "ok.txt").write_bytes(b"ok")
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.txt"), "wb") as f:
        f.write(b"latin-1 name")
    code, err = _run(["put", "vol", "mixed"], world, monkeypatch)
    _check(["put", "vol", "mixed"], code, err)
    assert code == 0, err
    assert "caf\\xe9.txt" in world["stdout"]  # named in the warning, as its escaped bytes
    assert [e.path for e in Volume.from_name("vol").listdir("mixed")] == ["mixed/ok.txt"]
