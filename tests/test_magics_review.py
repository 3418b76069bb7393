"""``%volume`` as a demanding notebook user meets it: how a line is split, what a cell
shows (and how much of it), ``--json`` data, failures that are not bugs, Ctrl-C.

A real IPython shell (the shared ``shell`` fixture) on real stores: a local folder, and
SeaweedFS behind the fault proxy for a store that stops answering.
"""

from __future__ import annotations

import io
import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import CapturedIO, capture_output

from jupyter_volume import Volume, magics, transfer
from jupyter_volume.cli import main
from jupyter_volume.errors import StoreError
from jupyter_volume.mount import mounts

try:
    from .faultproxy import FaultProxy
    from .test_magics import _private, magic, refused, say
except ImportError:  # tests/ is not a package when run without xdist's rootdir import
    from faultproxy import FaultProxy  # type: ignore[no-redef]
    from test_magics import _private, magic, refused, say  # type: ignore[no-redef]


@pytest.fixture
def local_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """As test_magics' ``local_env``, with a private HOME too (``~`` in paths)."""
    _private(tmp_path, monkeypatch)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    url = (tmp_path / "store").as_uri()
    monkeypatch.setenv("JUPYTER_VOLUME_STORE", url)
    yield url
    for m in mounts():
        m.unmount()


def cell(shell: Any, src: str) -> tuple[Any, CapturedIO]:
    """Run ``src`` as a notebook cell (IPython's own transforms: ``$var``, comments)."""
    with capture_output() as cap:
        result = shell.run_cell(src)
    return result, cap


def paths(shell: Any, name: str) -> set[str]:
    return {r["path"] for r in magic(shell, f"ls {name} / -r --json")[0]}


# -- how a line is split ----------------------------------------------------------------------
def test_a_line_is_split_as_a_shell_would(shell: Any, local_env: str) -> None:
    """Quotes, spaces, unicode, `#` inside words, comments (with an apostrophe), `~`, and
    IPython's `$var` / `{expr}` expansion: each path arrives as one argument."""
    Path("my notes.txt").write_text("spaces")
    Path("résumé ü.txt").write_text("unicode")
    Path("a#b.txt").write_text("hash")
    home = Path.home()
    (home / "in-home.txt").write_text("home")
    say(shell, "create v")
    say(shell, 'put v "my notes.txt"')
    say(shell, "put v 'résumé ü.txt' # it's a comment, with an apostrophe")
    say(shell, "put v a#b.txt")
    say(shell, r"put v a\#b.txt 'x #y.txt'")
    say(shell, "put v ~/in-home.txt")
    assert paths(shell, "v") == {
        "my notes.txt",
        "résumé ü.txt",
        "a#b.txt",
        "x #y.txt",
        "in-home.txt",
    }
    # `$var` and `{expr}` are IPython's, before the magic sees the line: quoted, a value
    # with a space stays one argument
    result, cap = cell(shell, 'name = "my notes.txt"\n%volume get v "$name" -')
    assert result.error_in_exec is None and cap.stdout == "spaces"
    result, cap = cell(shell, '%volume get v "{name.upper().lower()}" -')
    assert result.error_in_exec is None and cap.stdout == "spaces"
    say(shell, "get v in-home.txt ~/back.txt")
    assert (home / "back.txt").read_text() == "home"
    # a comment after a quoted word, and a line that is only a comment: the help
    assert say(shell, "get v 'a#b.txt' - #note") == "hash"
    assert "usage: %volume" in say(shell, "   # nothing but a comment")
    assert "usage: %volume" in say(shell, "")
    assert "usage: %volume" in say(shell, "--help")


def test_a_non_breaking_space_is_part_of_a_word_for_comments_too(
    shell: Any, local_env: str
) -> None:
    """The shell splits words at ASCII blanks only; a non-breaking space (pasted from a
    web page) is part of a word, so a `#` after it does not start a comment."""
    name = "a\u00a0#1.txt"
    Path(name).write_text("nbsp")
    say(shell, "create v")
    say(shell, f"put v {name}")
    assert paths(shell, "v") == {name}


def test_typos_and_unknown_commands_are_one_line(shell: Any, local_env: str) -> None:
    assert "invalid choice: 'lss'" in refused(shell, "lss v")
    assert "did you mean 'ls'?" in refused(shell, "lss v")
    assert "unrecognized arguments: --bogus" in refused(shell, "ls --bogus v")
    assert "cannot split" in refused(shell, "ls v 'unclosed")
    assert "unrecognized arguments: --json" in refused(shell, "put v f --json")  # no table


# -- what a cell shows, and --json ------------------------------------------------------------
def test_json_results_are_plain_json_data(shell: Any, local_env: str) -> None:
    """What `--json` returns survives json.dumps (strict: no NaN) unchanged, and is what
    `jupyter volume ... --json` prints."""
    Path("f.txt").write_text("x")
    say(shell, "create v")
    say(shell, "put v f.txt")
    say(shell, "tag v 1 first")
    say(shell, "mount v mnt --no-background")
    Path("mnt", "new.txt").write_text("n")
    for line in (
        "list",
        "ls v / -r",
        "history v",
        "diff v 0 1",
        "du v",
        "info v",
        "verify v",
        "retention v",
        "status",
        "gc v --dry-run",
    ):
        data, cap = magic(shell, f"{line} --json")
        assert not cap.outputs, line
        assert json.loads(json.dumps(data, allow_nan=False)) == data, line
    say(shell, "unmount")


def test_json_is_the_same_in_both_front_ends(
    shell: Any, local_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    Path("f.txt").write_text("x")
    say(shell, "create v")
    say(shell, "put v f.txt d/")
    for line in ("ls v / -r", "du v", "history v", "retention v"):
        capsys.readouterr()
        assert main([*line.split(), "--json"]) == 0
        from_cli = json.loads(capsys.readouterr().out)
        assert magic(shell, f"{line} --json")[0] == from_cli, line


def test_a_long_table_is_cut_in_the_cell_and_json_keeps_every_row(
    shell: Any, local_env: str
) -> None:
    """`ls -r` of a big volume (or `history` of a long-mounted one) must not put
    megabytes of HTML into the notebook: the table shows its first rows and says how many
    more there are; `--json` still returns them all."""
    n = magics.MAX_ROWS + 250
    vol = Volume.lookup("big", create_if_missing=True)
    with vol.batch_upload() as batch:
        for i in range(n):
            batch.put_file(io.BytesIO(b"x"), f"d/f{i:05d}.txt")
    result, cap = magic(shell, "ls big d")
    assert result is None
    html = "".join(o.data["text/html"] for o in cap.outputs)
    text = "".join(o.data["text/plain"] for o in cap.outputs)
    assert html.count("<tr>") == magics.MAX_ROWS + 1  # header + the rows shown
    assert f"f{magics.MAX_ROWS - 1:05d}.txt" in text and f"f{magics.MAX_ROWS:05d}.txt" not in text
    assert f"250 more rows not shown ({n} in all)" in text and "--json" in text
    assert "250 more rows" in html
    assert len(magic(shell, "ls big d --json")[0]) == n
    # a table within the limit shows whole, with no note
    result, cap = magic(shell, "history big")
    assert "more rows" not in cap.outputs[0].data["text/plain"]


# -- failures: one line for what is not a bug --------------------------------------------------
def test_a_store_that_stops_answering_is_one_line_not_a_traceback(
    shell: Any,
    seaweedfs: Any,
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The store going away is no bug in jupyter-volume: the magic says so in one line
    (it used to show a screenful of urllib3/botocore traceback), as the CLI does."""
    for k, v in seaweedfs.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.chdir(tmp_path)
    proxy = FaultProxy(seaweedfs.endpoint).start()
    try:
        url = f"s3://{s3_bucket}/magic-down-{tmp_path.name}?endpoint_url={proxy.url}"
        say(shell, f"create v --store '{url}'")
        assert magic(shell, f"ls v --store '{url}' --json")[0] == []
    finally:
        proxy.stop()  # the store stops answering: connections are refused
    result, cap = cell(shell, f"%volume ls v --store '{url}'")
    assert isinstance(result.error_in_exec, UsageError), cap.stdout[:2000]
    msg = str(result.error_in_exec)
    assert "\n" not in msg and "failed after" in msg and "Could not connect" in msg, msg
    assert cap.stderr == f"UsageError: {msg}\n" and "Traceback" not in cap.stdout
    assert isinstance(result.error_in_exec.__cause__, StoreError)  # kept, for debugging
    # the CLI: the same sentence, exit code 1
    capsys.readouterr()
    assert main(["ls", "v", "--store", url]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"jupyter volume: error: {msg}"]


def test_a_bug_still_shows_its_traceback(
    shell: Any, local_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jupyter_volume.commands import files

    def broken(*args: Any, **kwargs: Any) -> Any:
        # a fault that cannot be caused otherwise: a bug in a handler
        raise AttributeError("'NoneType' object has no attribute 'seq'")

    say(shell, "create v")
    monkeypatch.setattr(files, "_entry_rows", broken)
    with pytest.raises(AttributeError):
        shell.run_line_magic("volume", "ls v")


# -- Ctrl-C -------------------------------------------------------------------------------------
def _interrupting(real: Any, n: int = 3) -> tuple[Any, list[int]]:
    """``real``, sending this process a real SIGINT (what Ctrl-C sends) on its ``n``-th
    call, just before that call runs, and the list counting the calls. A fault that
    cannot be caused at a chosen moment otherwise; Python raises the KeyboardInterrupt
    in the main thread whichever thread made the call, as for Ctrl-C."""
    calls = [0]

    def wrapper(*a: Any, **kw: Any) -> Any:
        calls[0] += 1
        if calls[0] == n:
            os.kill(os.getpid(), signal.SIGINT)
        return real(*a, **kw)

    return wrapper, calls


def test_interrupted_put_and_get_leave_nothing_half_done(
    shell: Any, local_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C in the middle of `put` of a folder makes no commit (and leaves the volume
    writable); in the middle of `get` of a folder leaves no partial or temporary file.
    The KeyboardInterrupt itself reaches IPython (it is not turned into an error)."""
    from jupyter_volume.store.local import LocalStore

    Path("data").mkdir()
    for i in range(20):
        Path("data", f"f{i:02d}.bin").write_bytes(bytes([i]) * 300_000)
    say(shell, "create v")
    real_put = LocalStore.put
    # once the store took a few objects of the upload
    put_then_interrupt, calls = _interrupting(real_put)
    monkeypatch.setattr(LocalStore, "put", put_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        shell.run_line_magic("volume", "put v data")
    monkeypatch.setattr(LocalStore, "put", real_put)
    assert calls[0] >= 3
    assert [c["seq"] for c in magic(shell, "history v --json")[0]] == [0]
    assert paths(shell, "v") == set()
    assert "as commit 1" in say(shell, "put v data")

    def get_interrupted(out: str, owner: Any, attr: str, n: int = 3) -> None:
        """`get v data OUT` with ``owner.attr`` interrupted on its ``n``-th call: the
        KeyboardInterrupt reaches IPython, every download thread has ended, the files
        not started were not downloaded, and each file written is whole."""
        real = vars(owner)[attr]  # a class's descriptor as it is, or a module's function
        wrapper, calls = _interrupting(getattr(owner, attr), n)
        Path(out).mkdir()
        before = set(threading.enumerate())
        monkeypatch.setattr(owner, attr, wrapper)
        with pytest.raises(KeyboardInterrupt):
            shell.run_line_magic("volume", f"get v data {out}")
        monkeypatch.setattr(owner, attr, real)
        assert calls[0] >= n
        # Every download thread has ended by the time `get` gives up: one whose start
        # was cut short by the interrupt too (a ThreadPoolExecutor did not wait for that
        # one, and `get` returned while it still wrote a file, about 1 run in 5).
        assert [t for t in set(threading.enumerate()) - before if t.name.startswith("jv-get")] == []
        got = [p for p in Path(out).rglob("*") if p.is_file()]
        assert len(got) < 20, got
        for p in got:
            assert p.parent == Path(out, "data") and ".jv-part" not in p.name, p
            assert p.read_bytes() == Path("data", p.name).read_bytes(), p

    # As the third file starts downloading, in a download worker. These files are small
    # enough to be read in batches: read one by one here, as bigger files are.
    small_file = transfer.SMALL_FILE
    monkeypatch.setattr(transfer, "SMALL_FILE", 0)
    get_interrupted("out", Volume, "_read_into")
    say(shell, "get v data out --force")
    assert sorted(p.name for p in Path("out", "data").iterdir()) == sorted(
        p.name for p in Path("data").iterdir()
    )
    # Read in batches: while the third file is written.
    monkeypatch.setattr(transfer, "SMALL_FILE", small_file)
    get_interrupted("out2", transfer, "_put_bytes")
