"""Review of the batched paths: `jupyter volume get`'s small-file batches and
``put_directory``'s one look at every process for a big tree.

Each test is a defect a user could hit, reproduced with real parts: a real store (local
folder and SeaweedFS), the real CLI, and a real second process holding a file open.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest

from jupyter_volume import Volume
from jupyter_volume.cli import main


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
