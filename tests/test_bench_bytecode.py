"""The bench compiles jupyter-volume to bytecode before it measures anything."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import jupyter_volume

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the bench package

from bench.run import compile_package  # noqa: E402


def test_every_module_has_current_bytecode_after_compile_package() -> None:
    # A module compiled from source inside a timed step was charged to that step (the
    # peers' code came compiled with its install); after compile_package none is.
    said = compile_package()
    pkg = Path(jupyter_volume.__file__).parent
    sources = sorted(pkg.rglob("*.py"))
    assert len(sources) > 40
    for src in sources:
        pyc = Path(importlib.util.cache_from_source(str(src)))
        assert pyc.is_file(), f"no bytecode for {src.relative_to(pkg)}"
        assert pyc.stat().st_mtime >= src.stat().st_mtime - 1
    assert "compiled" in said
