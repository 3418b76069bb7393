"""Where jupyter-volume keeps local files outside any mount.

* state: mount state (the tree a folder reflects, its SQLite index). Must survive a
  cache clean-up, so it lives under the data dir: ``$JUPYTER_VOLUME_STATE_DIR`` or
  ``<jupyter data dir>/jupyter_volume/state``.
  A folder's state is removed by a later mount once the folder has been gone for a
  day or was mounted for another volume (:mod:`jupyter_volume.mountstates`).
* cache: immutable objects (tree nodes, index segments, chunks) that can always be
  fetched again: ``$JUPYTER_VOLUME_CACHE_DIR`` or ``$XDG_CACHE_HOME/jupyter-volume``
  (``~/.cache/jupyter-volume``). Deleting it at any time is safe.
"""

from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    """The folder for mount state (created on demand)."""
    env = os.environ.get("JUPYTER_VOLUME_STATE_DIR")
    if env:
        return Path(env).expanduser()
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "jupyter_volume" / "state"


def cache_dir() -> Path:
    """The folder for caches of immutable store objects (created on demand)."""
    env = os.environ.get("JUPYTER_VOLUME_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "jupyter-volume"
