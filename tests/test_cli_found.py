"""What the model-based test of the command line (``test_model_cli.py``) found, reduced
to one plain case each. Each runs ``jupyter volume`` in this process (as
``test_parity_cli.py`` does) on a fresh local store.
"""

from __future__ import annotations

import json
from pathlib import Path

from test_parity_cli import Run, run  # noqa: F401 - the fixture, used by name

from jupyter_volume import Volume


def test_get_of_an_empty_folder_to_stdout_writes_nothing_and_succeeds(
    run: Run,  # noqa: F811
    tmp_path: Path,
) -> None:
    """``get NAME FOLDER -`` writes every file of the folder; an empty folder has none,
    so nothing is written and the command succeeds, as it does for a folder that holds
    only an empty folder, and as ``get NAME FOLDER DIR`` of the same folder does. It
    exited 3 ("no file in volume 'v' matches e"), the code of a path that does not
    exist; so did ``get NAME / -`` of a new volume."""
    run("create", "v")
    assert run("get", "v", "/", "-")[0] == b""  # the root of a new volume
    (tmp_path / "e").mkdir()
    (tmp_path / "holder" / "inner").mkdir(parents=True)
    run("put", "v", "e")
    run("put", "v", "holder")
    assert run("get", "v", "holder", "-")[0] == b""  # (this one worked)
    run("get", "v", "e", "out")  # and so did the same folder to disk
    assert run("get", "v", "e", "-")[0] == b""
    assert run("get", "v", "holder/inner", "-")[0] == b""
    assert run("get", "v", "missing", "-", rc=3)[0] == b""  # a missing path still fails


def test_put_of_a_folder_the_volume_has_already_makes_no_commit(run: Run, tmp_path: Path) -> None:  # noqa: F811
    """A ``put`` that changes nothing makes no commit and says so ("no changes: the volume
    had them already"), as it does for files. A folder holding only an empty folder put a
    second time made a new commit each time, which ``diff`` shows as empty and
    ``history`` as +0 ~0 -0: each put stamps the folders it names with a new time."""
    (tmp_path / "d" / "empty").mkdir(parents=True)
    run("create", "v")
    run("put", "v", "d")
    vol = Volume.from_name("v")
    seq = vol.seq
    out = run("put", "v", "d", "--force")[0].decode()
    assert vol.seq == seq, (
        f"a commit ({vol.seq}) where nothing changed: {out!r}; "
        f"diff: {json.loads(run('diff', 'v', '--json')[0])}"
    )
    assert "no changes" in out, out


def test_cp_of_two_sources_of_one_name_refuses(run: Run, tmp_path: Path) -> None:  # noqa: F811
    """``cp -r a/sub b/sub dst`` copies two folders of one name into a new folder: `cp`
    refuses the second ("will not overwrite just-created 'dst/sub'"), and into a folder
    ``dst/sub`` that exists already both are merged. Here, with ``dst/sub`` not there
    yet, the command succeeded and kept only the last source's copy: ``a/sub``'s files
    were silently left out."""
    for rel, data in (("a/sub/1.txt", b"one"), ("b/sub/2.txt", b"two")):
        (tmp_path / "src" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / rel).write_bytes(data)
    run("create", "v")
    run("put", "v", "src", "")  # into the root: a/sub/1.txt, b/sub/2.txt
    vol = Volume.from_name("v")
    seq = vol.seq
    err = run.err("cp", "v", "-r", "a/sub", "b/sub", "dst", rc=2)
    assert "a/sub and b/sub would both be copied to dst/sub" in err, err
    assert vol.seq == seq
