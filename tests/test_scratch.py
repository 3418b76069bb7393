"""Upload folders of a killed process (a kernel killed mid-upload, a Jupyter server
killed with uploads open) are removed by the next process that makes one; a live
process's folder, and a folder made by an older version, are left alone.

The killed processes are real Python children killed with SIGKILL (no atexit runs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest

from jupyter_volume import scratch
from jupyter_volume.server.engine import UPLOAD_DIR_PREFIX, VolumeService
from jupyter_volume.widgets.upload import FOLDER_PREFIX, ChunkedUpload

#: A child that begins a widget upload in ``argv[1]``, receives one chunk, prints the
#: folder the chunk waits in, and waits (to be killed, or told to go on stdin).
WIDGET_CHILD = """
import sys
from pathlib import Path
from jupyter_volume.widgets.upload import ChunkedUpload
w = ChunkedUpload(prepare=lambda names, sizes: None, commit=lambda ctx, files: "", tmp_dir=sys.argv[1])
w.send = lambda content, buffers=None: None
w._on_msg(w, {"op": "begin", "id": "u", "files": [{"name": "big.bin", "size": 10}]}, [])
w._on_msg(w, {"op": "chunk", "id": "u", "file": 0, "offset": 0}, [b"12345"])
print(w._sessions["u"].folder, flush=True)
sys.stdin.readline()
"""

#: A child that starts a VolumeService with its default upload folder and prints it.
SERVICE_CHILD = """
import sys
from jupyter_volume.server.engine import VolumeService
s = VolumeService(lambda: None)
open(s.upload_dir + "/chunk", "wb").write(b"x" * 1000)
print(s.upload_dir, flush=True)
sys.stdin.readline()
"""


def child(code: str, *args: str, env: dict[str, str] | None = None) -> tuple[Any, Path]:
    """Start a child running ``code``; return it and the folder it printed."""
    p = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = p.stdout.readline().strip()  # type: ignore[union-attr]
    if not line:
        p.kill()
        raise AssertionError(p.communicate()[1])
    return p, Path(line)


def killed(p: Any) -> None:
    p.send_signal(signal.SIGKILL)
    p.wait(60)


def test_a_killed_kernels_upload_folder_is_removed_by_the_next_upload(tmp_path: Path) -> None:
    dead, dead_folder = child(WIDGET_CHILD, str(tmp_path))
    alive, alive_folder = child(WIDGET_CHILD, str(tmp_path))
    old = tmp_path / f"{FOLDER_PREFIX}made-by-an-older-version"
    old.mkdir()
    try:
        killed(dead)
        assert (dead_folder / "0").exists()  # left behind: no atexit ran
        w = ChunkedUpload(
            prepare=lambda names, sizes: None, commit=lambda ctx, files: "", tmp_dir=str(tmp_path)
        )
        w.send = lambda content, buffers=None: None  # type: ignore[method-assign]
        w._on_msg(w, {"op": "begin", "id": "v", "files": [{"name": "a", "size": 1}]}, [])
        mine = w._sessions["v"].folder
        assert not dead_folder.exists()
        assert (alive_folder / "0").exists()  # its kernel still uploads
        assert old.exists()  # no owner file: cannot tell, so kept
        assert mine.exists()
        w._on_msg(w, {"op": "cancel", "id": "v"}, [])
        assert not mine.exists()
        w.close()
    finally:
        alive.communicate("go\n", timeout=60)
    assert alive.returncode == 0
    # a kernel that exits normally removes its own (atexit), as before
    assert not alive_folder.exists()


def test_a_killed_servers_upload_folder_is_removed_by_the_next_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    dead, dead_dir = child(SERVICE_CHILD, env=env)
    killed(dead)
    assert dead_dir.parent == tmp_path and dead_dir.name.startswith(UPLOAD_DIR_PREFIX)
    assert (dead_dir / "chunk").exists()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    service = VolumeService(lambda: None)  # type: ignore[arg-type, return-value]
    try:
        assert not dead_dir.exists()
        assert Path(service.upload_dir).is_dir()
    finally:
        service.close()


def test_a_folder_being_made_is_never_taken_for_an_abandoned_one(tmp_path: Path) -> None:
    """Between the folder's creation and its owner file's name, a sweep sees no owner
    file and keeps it; once named, the owner file is already locked."""
    being_made = tmp_path / "x-being-made"
    being_made.mkdir()
    (being_made / ".owner-tmp123").write_bytes(b"")  # not yet renamed into place
    room = scratch.make("x-", tmp_path)
    assert being_made.exists()
    assert scratch.sweep("x-", tmp_path) == []  # ours is locked
    room.remove()
    assert not room.path.exists()
