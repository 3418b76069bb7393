"""Benchmark results are never overwritten by a later run of the same day."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the bench package

from bench import unused_stem  # noqa: E402


def test_a_later_run_of_the_day_gets_the_next_free_name(tmp_path: Path) -> None:
    assert unused_stem(tmp_path, "2026-12-05-vm-a", (".json", ".md")) == "2026-12-05-vm-a"
    (tmp_path / "2026-12-05-vm-a.md").write_text("run of record")
    assert unused_stem(tmp_path, "2026-12-05-vm-a", (".json", ".md")) == "2026-12-05-vm-a-2"
    (tmp_path / "2026-12-05-vm-a-2.json").write_text("{}")
    assert unused_stem(tmp_path, "2026-12-05-vm-a", (".json", ".md")) == "2026-12-05-vm-a-3"
    assert unused_stem(tmp_path, "2026-12-05-vm-b") == "2026-12-05-vm-b"
