"""The bench's fresh file systems (bench/disks.py): made empty, each its own, and gone
after use, with nothing left mounted or in memory. Needs root and loop devices, as the
bench's default (b) run does; on a machine without them this fails with the reason."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the bench package

from bench import disks  # noqa: E402


def _mounted(point: Path) -> bool:
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == str(point) for line in f)


def test_each_tool_gets_an_empty_ext4_of_its_own_that_is_gone_after(tmp_path: Path) -> None:
    why = disks.unavailable()
    assert why is None, f"the bench's fresh disks cannot be made here: {why}"
    before = set(os.listdir(disks.IMAGE_DIR))
    fresh = disks.FreshDisks(tmp_path / "disks")
    a, b = fresh.make("a"), fresh.make("b")
    try:
        assert not a.exists() and not b.exists()  # each tool makes its own destination
        assert _mounted(a.parent) and _mounted(b.parent)
        assert os.stat(a.parent).st_dev != os.stat(b.parent).st_dev != os.stat(tmp_path).st_dev
        a.mkdir()
        for i in range(100):
            (a / f"f{i}").write_bytes(b"x" * 4096)
        assert len(os.listdir(a)) == 100 and not b.exists()
        assert fresh.owns(a) and not fresh.owns(tmp_path)
        fresh.drop(a)
        assert not _mounted(a.parent) and not a.parent.exists()
    finally:
        fresh.close()  # what a stopped run does
    assert not _mounted(b.parent)
    assert set(os.listdir(disks.IMAGE_DIR)) == before  # no image left in memory
