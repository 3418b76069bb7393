"""The exception tree of jupyter-volume.

Every error the package raises on purpose derives from :class:`VolumeError` and, where
one fits, from the matching builtin, so ``except FileNotFoundError`` keeps working for
code that knows nothing of volumes::

    VolumeError(Exception)
    ├── NotFoundError(FileNotFoundError)      missing volume, file, commit or store key
    ├── AlreadyExistsError(FileExistsError)   create/put onto something that exists
    ├── InvalidError(ValueError)              bad name, bad path, bad argument
    │   ├── UnsupportedFormatError            written by a newer jupyter-volume: upgrade
    │   ├── IsAFolderError(IsADirectoryError) a file operation on a folder
    │   ├── NotAFolderError(NotADirectoryError) a folder operation on a file
    │   └── FolderNotEmptyError(OSError)      removing a folder that is not empty (ENOTEMPTY)
    ├── VolumeBusyError                       reload while files under the mount are open
    ├── ConflictError                         a commit could not be applied after retries
    │   └── CollectedMeanwhileError           it reused data a concurrent gc deleted: commit again
    ├── CorruptionError                       an object's bytes do not match its hash
    ├── LocalFolderError(OSError)             a mount's folder cannot be written (disk full, read-only)
    └── StoreError(OSError)                   the object store failed or refused
        └── StoreAccessError(PermissionError) credentials refused / access denied

Messages say what happened and what to do next. This module imports nothing else
from the package.
"""

from __future__ import annotations

import errno as _errno

__all__ = [
    "AlreadyExistsError",
    "CollectedMeanwhileError",
    "ConflictError",
    "CorruptionError",
    "FolderNotEmptyError",
    "InvalidError",
    "IsAFolderError",
    "LocalFolderError",
    "NotAFolderError",
    "NotFoundError",
    "StoreAccessError",
    "StoreError",
    "UnsupportedFormatError",
    "VolumeBusyError",
    "VolumeError",
]


class VolumeError(Exception):
    """Base class of every error raised by jupyter-volume on purpose."""

    def __str__(self) -> str:  # OSError subclasses would otherwise print errno tuples
        return str(self.args[0]) if self.args else self.__class__.__name__


class NotFoundError(VolumeError, FileNotFoundError):
    """A volume, a path in a volume, a commit or a store key does not exist."""


class AlreadyExistsError(VolumeError, FileExistsError):
    """The target exists already (a volume name, or a file without ``force``)."""


class InvalidError(VolumeError, ValueError):
    """The caller passed a bad name, path or argument."""


class UnsupportedFormatError(InvalidError):
    """The store or volume uses a newer on-store format than this version can read."""

    def __init__(self, message: str, required: str | None = None) -> None:
        super().__init__(message)
        self.required = required


class IsAFolderError(InvalidError, IsADirectoryError):
    """A file was expected and the path is a folder (reading, writing or removing it as
    a file). Both an InvalidError and an ``IsADirectoryError``, as ``open()`` raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.errno = _errno.EISDIR
        self.strerror = message


class NotAFolderError(InvalidError, NotADirectoryError):
    """A folder was expected and the path is a file (``rmdir`` of a file)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.errno = _errno.ENOTDIR
        self.strerror = message


class FolderNotEmptyError(InvalidError, OSError):
    """A folder to remove is not empty (``errno`` is ``errno.ENOTEMPTY``, as for
    ``os.rmdir``); remove its contents first, or remove it recursively."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.errno = _errno.ENOTEMPTY
        self.strerror = message


class VolumeBusyError(VolumeError):
    """A reload was refused: files under the mount are open in this process, or a
    program is writing files the reload would replace (``paths`` names them)."""

    def __init__(self, message: str, paths: list[str] | None = None) -> None:
        super().__init__(message)
        self.paths = list(paths or [])


class ConflictError(VolumeError):
    """A commit could not be applied, even after retrying against newer commits."""


class CollectedMeanwhileError(ConflictError):
    """A commit reused data that a garbage collection running meanwhile deleted (or
    found dead): nothing was committed, and committing again, which reads the data
    anew, succeeds. A mount's commits retry by themselves."""


class CorruptionError(VolumeError):
    """An object read from the store does not match its content hash."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class LocalFolderError(VolumeError, OSError):
    """A mount's local folder could not be written: the disk is full, it is read-only, ...

    ``errno`` is the operating system's error number (``errno.ENOSPC``, ``errno.EROFS``).
    """

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class StoreError(VolumeError, OSError):
    """The object store failed, or refused the request, after retries."""


class StoreAccessError(StoreError, PermissionError):
    """The object store refused our credentials or denied access."""
