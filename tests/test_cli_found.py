"""What the model-based test of the command line (``test_model_cli.py``) found, reduced
to one plain case each. Each runs ``jupyter volume`` in this process (as
``test_parity_cli.py`` does) on a fresh local store.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jupyter_volume import Volume
from jupyter_volume.cli import main


class Run:
    """``jupyter volume ARGS`` in this process: (exit code, stdout bytes, stderr text)."""

    def __init__(self, capsys: pytest.CaptureFixture[bytes]) -> None:
        self.capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, bytes, str]:
        self.capsys.readouterr()
        code = main(list(argv))
        out, err = self.capsys.readouterr()
        return code, out, err.decode()

    def ok(self, *argv: str) -> bytes:
        code, out, err = self(*argv)
        assert code == 0, f"{argv}: exit {code}\nstderr: {err}"
        return out


@pytest.fixture
def run(
    capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Run:
    monkeypatch.setenv("JUPYTER_VOLUME_STORE", (tmp_path / "store").as_uri())
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.delenv("JUPYTER_VOLUME_ENV", raising=False)
    monkeypatch.chdir(tmp_path)
    return Run(capsysbinary)


def test_get_of_an_empty_folder_to_stdout_writes_nothing_and_succeeds(
    run: Run, tmp_path: Path
) -> None:
    """``get NAME FOLDER -`` writes every file of the folder; an empty folder has none,
    so nothing is written and the command succeeds, as it does for a folder that holds
    only an empty folder, and as ``get NAME FOLDER DIR`` of the same folder does. It
    exited 3 ("no file in volume 'v' matches e"), the code of a path that does not
    exist; so did ``get NAME / -`` of a new volume."""
    run.ok("create", "v")
    code, out, err = run("get", "v", "/", "-")
    assert (code, out) == (0, b""), f"the root of a new volume: exit {code}: {err}"
    (tmp_path / "e").mkdir()
    (tmp_path / "holder" / "inner").mkdir(parents=True)
    run.ok("put", "v", "e")
    run.ok("put", "v", "holder")
    assert run("get", "v", "holder", "-")[:2] == (0, b"")  # (this one works)
    run.ok("get", "v", "e", "out")  # and so does the same folder to disk
    code, out, err = run("get", "v", "e", "-")
    assert (code, out) == (0, b""), f"exit {code}: {err}"
    code, out, err = run("get", "v", "holder/inner", "-")
    assert (code, out) == (0, b""), f"exit {code}: {err}"


def test_put_of_a_folder_the_volume_has_already_makes_no_commit(run: Run, tmp_path: Path) -> None:
    """A ``put`` that changes nothing makes no commit and says so ("no changes: the volume
    had them already"), as it does for files. A folder holding only an empty folder put a
    second time made a new commit each time, which ``diff`` shows as empty and
    ``history`` as +0 ~0 -0: each put stamps the folders it names with a new time."""
    (tmp_path / "d" / "empty").mkdir(parents=True)
    run.ok("create", "v")
    run.ok("put", "v", "d")
    vol = Volume.from_name("v")
    seq = vol.seq
    out = run.ok("put", "v", "d", "--force").decode()
    assert vol.seq == seq, (
        f"a commit ({vol.seq}) where nothing changed: {out!r}; "
        f"diff: {json.loads(run.ok('diff', 'v', '--json'))}"
    )
    assert "no changes" in out, out


def test_cp_of_two_sources_of_one_name_keeps_both_or_refuses(run: Run, tmp_path: Path) -> None:
    """``cp -r a/sub b/sub dst`` copies two folders of one name into a new folder: `cp`
    refuses the second ("will not overwrite just-created 'dst/sub'"), and into a folder
    ``dst/sub`` that exists already both are merged. Here, with ``dst/sub`` not there
    yet, the command succeeded and kept only the last source's copy: ``a/sub``'s files
    were silently left out."""
    for rel, data in (("a/sub/1.txt", b"one"), ("b/sub/2.txt", b"two")):
        (tmp_path / "src" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / rel).write_bytes(data)
    run.ok("create", "v")
    run.ok("put", "v", "src", "")  # into the root: a/sub/1.txt, b/sub/2.txt
    vol = Volume.from_name("v")
    seq = vol.seq
    code, _out, err = run("cp", "v", "-r", "a/sub", "b/sub", "dst")
    listed = sorted(e.path for e in vol.listdir("dst", recursive=True)) if code == 0 else []
    if code != 0:
        assert code == 2 and vol.seq == seq, f"exit {code}, head {vol.seq}: {err}"
    else:
        assert listed == ["dst/sub", "dst/sub/1.txt", "dst/sub/2.txt"], (
            f"cp reported success and left {listed}: the copy of a/sub is missing"
        )
