"""The value types the public API returns: listed paths, commits, diffs, disk usage.

They sit below both :mod:`jupyter_volume.volume` and :mod:`jupyter_volume.mount` (a mount's
commit returns a :class:`CommitInfo` too), so neither has to import the other to name them.
Layer: uses only ``repository``'s record types; never imports volume, mount or a front end.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime

from .repository import DIR, FILE, LINK, CommitRecord, Entry

__all__ = ["CommitInfo", "DiffEntry", "DiskUsage", "FileEntry", "FileEntryType", "VolumeInfo"]


class FileEntryType(enum.IntEnum):
    """The kind of a listed path (numbered as in Modal's API)."""

    UNSPECIFIED = 0
    FILE = 1
    DIRECTORY = 2
    SYMLINK = 3
    FIFO = 4
    SOCKET = 5


_KIND_TYPE = {FILE: FileEntryType.FILE, DIR: FileEntryType.DIRECTORY, LINK: FileEntryType.SYMLINK}


@dataclass(frozen=True)
class FileEntry:
    """One listed path. ``path`` is relative to the volume root (no leading slash);
    ``mtime`` is integer seconds; ``size`` is bytes (for a folder: all bytes below it)."""

    path: str
    type: FileEntryType
    mtime: int
    size: int

    @classmethod
    def _of(cls, path: str, e: Entry) -> FileEntry:
        return cls(path, _KIND_TYPE[e.kind], e.mtime_ns // 1_000_000_000, e.size)


@dataclass(frozen=True)
class VolumeInfo:
    """What :meth:`Volume.info` returns."""

    name: str
    id: str
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class CommitInfo:
    """One commit of a volume's history."""

    seq: int
    time: datetime
    author: str
    host: str
    message: str
    kind: str
    added: int
    modified: int
    deleted: int
    #: bytes this commit stored for its files' contents: new chunks as stored (compressed,
    #: each at most once in the volume) with their index, and small files' contents, kept
    #: inline in the tree; 0 for a commit that only deletes, copies or restores
    bytes_new: int
    tags: tuple[str, ...] = ()
    expired: bool = False

    @classmethod
    def _of(
        cls, rec: CommitRecord, tags: tuple[str, ...] = (), expired: bool = False
    ) -> CommitInfo:
        s = rec.stats
        return cls(
            rec.seq,
            datetime.fromtimestamp(rec.time, tz=UTC),
            rec.author,
            rec.host,
            rec.message,
            rec.kind,
            int(s.get("added", 0)),
            int(s.get("modified", 0)),
            int(s.get("deleted", 0)),
            int(s.get("bytes_new", 0)),
            tags,
            expired,
        )


@dataclass(frozen=True)
class DiffEntry:
    """One path that differs between two commits: ``change`` is added/modified/deleted."""

    path: str
    change: str
    type: FileEntryType
    old_size: int | None
    new_size: int | None


@dataclass(frozen=True)
class DiskUsage:
    """What :meth:`Volume.du` returns: logical sizes below ``path``."""

    path: str
    files: int
    bytes: int
