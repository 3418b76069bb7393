"""What the model-based tests (``test_model_*.py``) share: their Hypothesis settings, a
second client of one store, and the pieces of a model tree (``path -> value``: a file's
bytes, or ``(bytes, mode)``, or :data:`DIR` for a folder).

Each of those files drives the public API with a Hypothesis state machine against a
plain model (a dict, a tree) and reduces what it finds to plain tests at its end.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, settings

from jupyter_volume import Volume
from jupyter_volume.results import FileEntryType
from jupyter_volume.testing.wrappers import WrappedStore

#: a folder in a model tree
DIR = "<dir>"


def model_settings(examples: int, steps: int, *, shrink: bool = False) -> settings:
    """Settings for a state machine run in CI: the same examples every run
    (``derandomize``), no example database, no deadline (stores and folders take their
    time). No shrinking by default: a failure is reported as found (its steps and the
    difference from the model) in the time of a passing run; shrinking one takes 5-10
    minutes on two cores (``shrink=True`` while debugging)."""
    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if shrink else [])
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        database=None,
        derandomize=True,
        phases=phases,
        report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


class StoreAs(WrappedStore):
    """The same store under another URL (``url#tag``): nothing this process keeps per
    store URL (opened volumes, Dicts, mounts) is shared with the first client's, as if
    this one ran in a process of its own."""

    def __init__(self, inner: Any, tag: str = "b") -> None:
        super().__init__(inner)
        self.url = f"{inner.url}#{tag}"


# -- model trees ------------------------------------------------------------------------------


def parents(path: str) -> list[str]:
    """The folders above ``path``, outermost first (``a/b/c`` -> ``a``, ``a/b``)."""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def under(path: str, folder: str) -> bool:
    return path.startswith(folder + "/")


def changes_of(local: dict[str, Any], synced: dict[str, Any]) -> dict[str, Any]:
    """A mount's change set: every path whose local state differs from the synced one
    (None: deleted)."""
    return {p: local.get(p) for p in set(local) | set(synced) if local.get(p) != synced.get(p)}


def apply(head: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """The merge rule (Trees.apply): set or delete each changed file; a folder entry
    means "make sure it exists"; a deleted folder goes only when nothing is left in it."""
    new = dict(head)
    for p, v in changes.items():
        if v is None:
            if new.get(p) is not None and new[p] != DIR:
                del new[p]
        else:
            new[p] = v
            for q in parents(p):
                new[q] = DIR
    for p in sorted((p for p, v in changes.items() if v is None), key=lambda p: -p.count("/")):
        if new.get(p) == DIR and not any(under(q, p) for q in new):
            del new[p]
    return new


def show(v: Any) -> str:
    """One value of a model tree, short, for assertion messages."""
    if v in ("DIR", DIR):
        return "DIR"
    if isinstance(v, list):  # a digest from a scan in another process: [sha256, size, mode]
        return f"{v[1]} B sha256 {v[0][:12]} mode {v[2]:o}"
    data, mode = (v, None) if isinstance(v, (bytes, bytearray)) else v
    m = "" if mode is None else f" mode {mode:o}"
    return f"{len(data)} B sha256 {hashlib.sha256(data).hexdigest()[:12]}{m}"


def assert_same(actual: dict[str, Any], expected: dict[str, Any], what: str) -> None:
    """Raise AssertionError naming every path where two model trees differ."""
    if actual != expected:
        diff = {
            p: (
                show(actual[p]) if p in actual else "-",
                show(expected[p]) if p in expected else "-",
            )
            for p in sorted(set(actual) | set(expected))
            if actual.get(p) != expected.get(p)
        }
        raise AssertionError(f"{what} differs from the model (actual, expected): {diff}")


def read(vol: Volume, path: str, at: int | None = None) -> bytes:
    return b"".join(vol.read_file(path, at=at))


def api_files(vol: Volume, at: int | None = None) -> dict[str, bytes]:
    """The files of commit ``at`` (the head if None), read through the API."""
    out: dict[str, bytes] = {}
    for e in vol.listdir("/", recursive=True, at=at):
        if e.type == FileEntryType.FILE:
            data = read(vol, e.path, at)
            assert len(data) == e.size, (at, e, len(data))
            out[e.path] = data
    return out


def scan_files(root: Path) -> dict[str, bytes]:
    """The files below folder ``root`` (folders left out), path -> bytes."""
    out: dict[str, bytes] = {}
    for d, _dirs, files in os.walk(root):
        rel = os.path.relpath(d, root)
        for n in files:
            out[n if rel == "." else f"{rel}/{n}"] = (Path(d) / n).read_bytes()
    return out
