"""A notebook's change between two commits, computed by nbdime when it is installed.

The sidebar's history shows a changed ``.ipynb`` as nbdime's rendered notebook diff
(cells side by side, outputs, metadata). nbdime is optional: this module imports it on
first use, and answers :class:`NbdimeUnavailableError` (HTTP 501) when it is missing or
switched off with ``JUPYTER_VOLUME_NBDIME=0``; the sidebar then falls back to its own
text diff of the cells' sources. A version nbdime cannot read or compare is a
:class:`NotebookDiffError` (HTTP 422), with the same fallback.

The reply is what nbdime's own ``/nbdime/api/diff`` answers, ``{"base", "diff"}`` (the
older notebook and nbdime's diff from it to the newer one), so nbdime's JavaScript
(``NotebookDiffModel``) renders it as it is.

Layer: a front end beside ``engine``; imports ``volume``, ``names`` and ``errors``.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import InvalidError, NotFoundError, VolumeError
from ..names import normalize_path
from ..volume import FileEntryType, Volume

__all__ = [
    "ENV_SWITCH",
    "MAX_NOTEBOOK_BYTES",
    "NbdimeUnavailableError",
    "NotebookDiffError",
    "nbdime_enabled",
    "notebook_diff",
]

#: Set to 0 / false / off / no to make the server answer as if nbdime were missing.
ENV_SWITCH = "JUPYTER_VOLUME_NBDIME"
#: Versions larger than this are not parsed and compared on the server.
MAX_NOTEBOOK_BYTES = 32 * 1024 * 1024


class NbdimeUnavailableError(VolumeError):
    """nbdime is not installed in the server's environment, or switched off (HTTP 501)."""


class NotebookDiffError(InvalidError):
    """nbdime could not read or compare a version of the notebook (HTTP 422)."""


def nbdime_enabled() -> bool:
    """Whether the notebook diff may use nbdime (read on every call, not cached)."""
    return os.environ.get(ENV_SWITCH, "").strip().lower() not in ("0", "false", "off", "no")


def _nbdime() -> tuple[Any, Any]:
    """nbdime's ``diff_notebooks`` and ``nbformat``, or NbdimeUnavailableError."""
    if not nbdime_enabled():
        raise NbdimeUnavailableError(
            f"nbdime is switched off on this server ({ENV_SWITCH}={os.environ.get(ENV_SWITCH)!r})"
        )
    try:
        import nbformat
        from nbdime import diff_notebooks
    except ImportError as exc:
        raise NbdimeUnavailableError(
            f"nbdime is not installed in the Jupyter server's environment ({exc}): "
            "pip install nbdime for notebook diffs with outputs"
        ) from None
    return diff_notebooks, nbformat


def _read(vol: Volume, path: str, seq: int, nbformat: Any) -> Any:
    """The notebook at ``path`` as of commit ``seq`` (an empty notebook if it is absent)."""
    try:
        entry = vol.stat(path, at=seq)
    except NotFoundError:
        if seq > vol.seq:
            raise  # a commit that does not exist, not a file absent at a commit
        return None
    if entry.type != FileEntryType.FILE:
        raise InvalidError(f"{path} is not a file at commit #{seq}: only notebooks are compared")
    if entry.size > MAX_NOTEBOOK_BYTES:
        raise NotebookDiffError(
            f"{path} is {entry.size} bytes at commit #{seq}, more than the "
            f"{MAX_NOTEBOOK_BYTES} bytes a notebook diff reads"
        )
    raw = b"".join(vol.read_file(path, at=seq))
    try:
        return nbformat.reads(raw.decode("utf-8"), as_version=4)
    except Exception as exc:  # nbformat raises many kinds (JSON, schema, version)
        raise NotebookDiffError(
            f"{path} at commit #{seq} is not a notebook nbdime can read "
            f"({type(exc).__name__}: {str(exc)[:200]})"
        ) from None


def notebook_diff(vol: Volume, path: str, a: int, b: int) -> dict[str, Any]:
    """nbdime's diff of notebook ``path`` of ``vol`` from commit ``a`` to commit ``b``.

    ``vol`` is a fresh handle (the service's, so a network file system works too).

    A side where the file is absent counts as an empty notebook (an added or deleted
    notebook shows all its cells added or removed). Returns ``{"volume", "path", "a",
    "b", "base", "diff"}``: ``base`` is the notebook at ``a``, ``diff`` nbdime's diff
    entries. NbdimeUnavailableError without nbdime, NotebookDiffError when nbdime cannot
    read or compare a version, NotFoundError when the file is absent at both commits.
    """
    p = normalize_path(path)
    if not p:
        raise InvalidError("notebook diff needs the path of a notebook file")
    diff_notebooks, nbformat = _nbdime()
    before = _read(vol, p, a, nbformat)
    after = _read(vol, p, b, nbformat)
    if before is None and after is None:
        raise NotFoundError(f"{p} is in neither commit #{a} nor commit #{b}")
    before = before if before is not None else nbformat.v4.new_notebook()
    after = after if after is not None else nbformat.v4.new_notebook()
    try:
        diff = diff_notebooks(before, after)
    except Exception as exc:  # nbdime's own failure: say so, the sidebar falls back
        raise NotebookDiffError(
            f"nbdime could not compare {p} (#{a} -> #{b}): {type(exc).__name__}: {exc}"
        ) from None
    return {"volume": vol.name, "path": p, "a": a, "b": b, "base": before, "diff": diff}
