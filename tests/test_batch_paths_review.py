"""Review of the batched paths: `jupyter volume get`'s small-file batches and
``put_directory``'s one look at every process for a big tree.

Each test is a defect a user could hit, reproduced with real parts: a real store (local
folder and SeaweedFS), the real CLI, and a real second process holding a file open.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from jupyter_volume import Volume
from jupyter_volume.cli import main
from jupyter_volume.volume import BatchUpload


def _pack_keys(store: Any) -> set[str]:
    return {i.key for i in store.list("") if "/packs/" in i.key}


def test_get_names_the_file_whose_data_is_missing(
    opened: tuple[Any, str, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pack lost from the store: `get` of a folder of small files fails naming the
    file whose data is gone, as a file read on its own does. The batched read named the
    volume instead ("pack ... holding data of dl is missing"), which reads as a path."""
    store, url, _env = opened
    vol = Volume.from_name("dl", create_if_missing=True, store=store)
    with vol.batch_upload() as b:
        for i in range(5):
            b.put_file(io.BytesIO(os.urandom(3000)), f"d/f{i}.bin")
    before = _pack_keys(store)
    with vol.batch_upload() as b:
        b.put_file(io.BytesIO(os.urandom(3000)), "d/late.bin")
    (lost,) = _pack_keys(store) - before  # late.bin's data, alone in its pack
    store.delete([lost])

    dest = tmp_path / "out"
    assert main(["get", "dl", "d", f"{dest}/", "--store", url]) == 1
    err = capsys.readouterr().err
    assert "d/late.bin" in err, err
    # what landed is whole, and no temporary file is left
    for p in (dest / "d").iterdir():
        assert ".jv-part-" not in p.name, p
        assert p.read_bytes() == b"".join(vol.read_file(f"d/{p.name}")), p


# Opens the file for appending, writes part of what it means to, and holds it open until
# its stdin closes: a program in the middle of writing the file.
HALF_WRITER = """
import sys
f = open(sys.argv[1], "ab")
f.write(b" and the first half of the new part"); f.flush()
print("writing", flush=True)
sys.stdin.read()
"""


def test_put_directory_warns_of_a_writer_that_started_after_its_look(tmp_path: Path) -> None:
    """A tree of many files is looked at once for who writes it (every process's open
    files), as put_directory reads its first file. A program that opens and writes a
    file of the tree after that look, and still holds it open when put_directory reads
    it, was missed: the half-written file was stored without the warning the
    documentation promises ("a file still open for writing by another process is stored
    as read, with a warning that says so"). Before the look, a kernel lease per file
    caught it."""
    vol = Volume.from_name("up", create_if_missing=True, store=str(tmp_path / "store"))
    src = tmp_path / "src"
    src.mkdir()
    for i in range(200):
        (src / f"f{i:03d}.txt").write_bytes(b"%d" % i)
    late = src / "z-late.log"  # read last (names are read in order)
    late.write_bytes(b"the old part")
    writer: list[subprocess.Popen[str]] = []

    class StartsAWriter(BatchUpload):
        """Starts the other program once 100 files are read: well after the look."""

        added = 0

        def _added(self, entry: Any) -> None:
            self.added += 1
            if self.added == 100:
                p = subprocess.Popen(
                    [sys.executable, "-c", HALF_WRITER, str(late)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                writer.append(p)
                assert p.stdout is not None and p.stdout.readline().strip() == "writing"

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with StartsAWriter(vol, False) as batch:
                batch.put_directory(src, "data")
    finally:
        for p in writer:
            assert p.stdin is not None and p.stdout is not None
            p.stdin.close()
            p.wait(timeout=60)
            p.stdout.close()
    assert writer, "the writer was never started"
    stored = b"".join(vol.read_file("data/z-late.log"))
    assert stored.endswith(b"first half of the new part")  # read while it was written
    said = [str(w.message) for w in caught]
    assert any("z-late.log is open for writing by" in m for m in said), said
