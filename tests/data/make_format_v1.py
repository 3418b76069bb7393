"""Write tests/data/format_v1/: a small local store in on-store format 1.

Run once, with the jupyter-volume that writes format 1 (0.1.0), from the repository root::

    .venv/bin/python tests/data/make_format_v1.py

The store is committed and never regenerated: tests/test_format_compat.py proves that
every later version still opens, lists, reads and commits on top of what this one wrote.
A later format gets its own script and folder (make_format_v2.py -> format_v2/); this
one stays as it is. ``EXPECTED`` below is what the test checks, so it lives in this file
next to the code that wrote it.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "format_v1"
NAME = "compat"

# A 3 KiB file of fixed, incompressible-looking bytes: too big to live inline in its tree
# node, so it goes to a pack and an index segment (the parts of the format worth pinning).
PACKED = bytes((i * 7919 + (i >> 3) * 104729) % 251 for i in range(3 * 1024))

#: path -> bytes at the head, and the shape of the history (checked by the test)
EXPECTED = {
    "head": {
        "README.txt": b"format 1 fixture, second version\n",
        "data/packed.bin": PACKED,
        "data/nested/deep.txt": b"deep\n",
    },
    "links": {"latest": "data/packed.bin"},
    "empty_dirs": ["empty"],
    "deleted": "old.txt",  # in commit 1, deleted in commit 3
    "commits": 5,  # 0 (create) .. 4
    "tag": ("first", 1),
    "at_1": {"README.txt": b"format 1 fixture\n", "old.txt": b"soon gone\n"},
}


def main() -> None:
    """Write the fixture store into tests/data/format_v1 (refusing to overwrite it)."""
    if OUT.exists():
        sys.exit(f"{OUT} exists: a committed fixture is never regenerated")
    os.environ["JUPYTER_VOLUME_AUTHOR"] = "fixture"
    from jupyter_volume import Volume
    from jupyter_volume.store.local import LocalStore

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["JUPYTER_VOLUME_CACHE_DIR"] = str(Path(tmp) / "cache")
        os.environ["JUPYTER_VOLUME_STATE_DIR"] = str(Path(tmp) / "state")
        store = LocalStore(Path(tmp) / "store")
        vol = Volume.from_name(NAME, create_if_missing=True, store=store)
        with vol.batch_upload() as b:  # commit 1
            b.put_file(io.BytesIO(EXPECTED["at_1"]["README.txt"]), "README.txt")
            b.put_file(io.BytesIO(EXPECTED["at_1"]["old.txt"]), "old.txt")
        vol.tag(1, EXPECTED["tag"][0])
        local = Path(tmp) / "local"  # commit 2: a folder with a link and an empty folder
        (local / "data" / "nested").mkdir(parents=True)
        (local / "empty").mkdir()
        (local / "data" / "packed.bin").write_bytes(PACKED)
        (local / "data" / "nested" / "deep.txt").write_bytes(b"deep\n")
        os.symlink("data/packed.bin", local / "latest")
        with vol.batch_upload() as b:
            b.put_directory(local, "/")
        vol.remove_file("old.txt")  # commit 3
        with vol.batch_upload(force=True) as b:  # commit 4
            b.put_file(io.BytesIO(EXPECTED["head"]["README.txt"]), "README.txt")
        assert vol.seq == EXPECTED["commits"] - 1, vol.seq
        shutil.copytree(store.root, OUT, symlinks=True)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
