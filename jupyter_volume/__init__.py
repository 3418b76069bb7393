"""jupyter-volume: versioned, shareable volumes for Jupyter notebooks.

Layers, each importing only those below it::

    magics  cli  widgets  server      thin front ends
            volume (+ mount)          public API, shaped like modal.Volume
            repository                commit log, trees, packs, index, merge, verify
            store                     local folder (default) or any S3-compatible service
"""

from .errors import (
    AlreadyExistsError,
    ConflictError,
    CorruptionError,
    InvalidError,
    NotFoundError,
    StoreAccessError,
    StoreError,
    VolumeBusyError,
    VolumeError,
)
from .volume import CommitInfo, DiffEntry, DiskUsage, FileEntry, FileEntryType, Volume, VolumeInfo

__version__ = "0.1.0"

__all__ = [
    "AlreadyExistsError",
    "CommitInfo",
    "ConflictError",
    "CorruptionError",
    "DiffEntry",
    "DiskUsage",
    "FileEntry",
    "FileEntryType",
    "InvalidError",
    "NotFoundError",
    "StoreAccessError",
    "StoreError",
    "Volume",
    "VolumeBusyError",
    "VolumeError",
    "VolumeInfo",
    "__version__",
]
