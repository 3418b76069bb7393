"""The benchmark's disk probe: what it leaves, and where its figure is shown."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the bench package

from bench.run import disk_probe, table_markdown  # noqa: E402


def test_the_probe_creates_its_files_in_a_new_folder_each_time_and_leaves_them(
    tmp_path: Path,
) -> None:
    first = disk_probe(tmp_path, "disk-probe-b", n=50)
    second = disk_probe(tmp_path, "disk-probe-b", n=50)  # the same name again: no clash
    assert first > 0 and second > 0
    folders = sorted(tmp_path.iterdir())
    assert len(folders) == 2
    for folder in folders:
        assert folder.name.startswith("disk-probe-b-")
        files = list(folder.iterdir())
        assert len(files) == 50  # left in place: deleting them would slow what follows
        assert {f.stat().st_size for f in files} == {4096}


def test_the_results_table_shows_each_scenarios_probe_beside_its_load() -> None:
    load = {
        "before": 0.1,
        "max_during": 1.9,
        "others_cores_mean": 0.01,
        "others_cores_max": 0.1,
        "kernel_cores_mean": 0.02,
        "kernel_cores_max": 0.3,
        "noisy": False,
    }
    results = {"load_start": 0.1, "load": {"b": {**load, "disk_probe_s": 0.731}, "gc": load}}
    text = table_markdown([], results)
    lines = {line[2:].split(":")[0]: line for line in text.splitlines() if line.startswith("- ")}
    assert "0.731 s to create files" in lines["b"]
    assert "to create files" not in lines["gc"]  # no figure: nothing shown
    assert "2,000 files of 4 KiB" in text


def test_results_from_before_the_probe_are_rendered_without_a_word_of_it() -> None:
    load = {"before": 0.1, "max_during": 1.9, "others_cores_mean": 0.0, "others_cores_max": 0.0}
    text = table_markdown([], {"load_start": 0.1, "load": {"a": load}})
    assert "- a: load 0.10 / 1.90" in text
    assert "create" not in text
