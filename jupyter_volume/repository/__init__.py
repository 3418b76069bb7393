"""The versioned repository format of one volume (see ``repo.py`` for the layout).

Layer: imports only ``jupyter_volume.store`` and ``jupyter_volume.errors``; never mounts,
IPython or Jupyter.
"""

from .repo import CommitRecord, Repository, VerifyReport, Writer
from .tree import DIR, EMPTY_TREE, FILE, LINK, Entry

__all__ = [
    "DIR",
    "EMPTY_TREE",
    "FILE",
    "LINK",
    "CommitRecord",
    "Entry",
    "Repository",
    "VerifyReport",
    "Writer",
]
