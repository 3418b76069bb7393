"""jupyter-volume's modules are compiled to bytecode before the bench measures anything
and before the test suite starts its processes."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

import jupyter_volume
from jupyter_volume.testing.bytecode import compile_package as compile_ours

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the bench package

from bench.run import compile_package  # noqa: E402


def _stale(pkg: Path) -> list[str]:
    """The modules under ``pkg`` without current bytecode."""
    out = []
    for src in sorted(pkg.rglob("*.py")):
        pyc = Path(importlib.util.cache_from_source(str(src)))
        if not pyc.is_file() or pyc.stat().st_mtime < src.stat().st_mtime - 1:
            out.append(str(src.relative_to(pkg)))
    return out


def test_compile_package_writes_bytecode_for_every_module(tmp_path: Path) -> None:
    # On a copy without any bytecode: the live package already has it (the suite's
    # conftest compiled it at the start), so only a copy shows that this writes it.
    src = Path(jupyter_volume.__file__).parent
    copy = tmp_path / "jupyter_volume"
    shutil.copytree(src, copy, ignore=shutil.ignore_patterns("__pycache__", "labextension"))
    assert len(_stale(copy)) > 40
    assert compile_ours(copy) == copy
    assert _stale(copy) == []


def test_a_module_that_does_not_compile_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("def f(:\n")
    with pytest.raises(RuntimeError, match="could not compile"):
        compile_ours(tmp_path)


def test_the_bench_and_the_suite_run_with_current_bytecode() -> None:
    # A module compiled from source inside a timed step was charged to that step (the
    # peers' code came compiled with its install); every test process paid ~0.35 s.
    said = compile_package()
    assert "compiled" in said
    assert _stale(Path(jupyter_volume.__file__).parent) == []
