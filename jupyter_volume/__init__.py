"""jupyter-volume: versioned, shareable volumes for Jupyter notebooks.

Layers, each importing only those below it::

    magics  cli  widgets  server      thin front ends
            nfs (+ livesync)          NetworkFileSystem: live-synced folders on volumes
            volume (+ mount)          public API, shaped like modal.Volume
            dicts (+ lease)           Dict: Modal's distributed dictionary on the same store
            objects                   what the three kinds share: store opening, names
            repository                commit log, trees, packs, index, merge, verify
            store                     local folder (default) or any S3-compatible service
"""

from .dicts import DeserializationError, Dict, DictInfo
from .errors import (
    AlreadyExistsError,
    CollectedMeanwhileError,
    ConflictError,
    CorruptionError,
    FolderNotEmptyError,
    InvalidError,
    IsAFolderError,
    LocalFolderError,
    NotAFolderError,
    NotFoundError,
    StoreAccessError,
    StoreError,
    UnsupportedFormatError,
    VolumeBusyError,
    VolumeError,
)
from .nfs import NetworkFileSystem
from .volume import CommitInfo, DiffEntry, DiskUsage, FileEntry, FileEntryType, Volume, VolumeInfo

__version__ = "0.1.0"

__all__ = [
    "AlreadyExistsError",
    "CollectedMeanwhileError",
    "CommitInfo",
    "ConflictError",
    "CorruptionError",
    "DeserializationError",
    "Dict",
    "DictInfo",
    "DiffEntry",
    "DiskUsage",
    "FileEntry",
    "FileEntryType",
    "FolderNotEmptyError",
    "InvalidError",
    "IsAFolderError",
    "LocalFolderError",
    "NotAFolderError",
    "NetworkFileSystem",
    "NotFoundError",
    "StoreAccessError",
    "StoreError",
    "UnsupportedFormatError",
    "Volume",
    "VolumeBusyError",
    "VolumeError",
    "VolumeInfo",
    "__version__",
]


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext jupyter_volume``: register the ``%volume`` magic."""
    from .magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: object) -> None:
    """``%unload_ext jupyter_volume``: remove the ``%volume`` magic."""
    from .magics import unload_ipython_extension as unload

    unload(ipython)


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where the prebuilt JupyterLab sidebar lives (for `jupyter labextension develop`)."""
    return [{"src": "labextension", "dest": "jupyter-volume"}]
