"""Benchmarks of jupyter-volume against rclone and boto3 (run ``python -m bench``)."""

from __future__ import annotations

import itertools
from pathlib import Path


def unused_stem(folder: Path, stem: str, suffixes: tuple[str, ...] = (".json",)) -> str:
    """``stem``, or ``stem-2``, ``stem-3``...: the first for which no ``folder/<stem><suffix>``
    exists, so a second run of the day never overwrites a committed run of record."""
    for n in itertools.count(1):
        name = stem if n == 1 else f"{stem}-{n}"
        if not any((folder / f"{name}{s}").exists() for s in suffixes):
            return name
    raise AssertionError("unreachable")
