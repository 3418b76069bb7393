"""What a handler gets from its front end: the :class:`Context`, and small helpers every
command group uses on a volume.

Layer: part of the commands front end; imports ``config`` and ``volume`` only inside
functions, so that ``--help`` stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from .exits import UsageError

if TYPE_CHECKING:
    from ..config import VolumeConfig
    from ..store import Store
    from ..volume import Volume

__all__ = ["Context", "fresh", "in_volume", "type_name"]


def _no_confirm(prompt: str) -> bool:
    raise UsageError("this needs confirmation and none can be asked for here: pass --yes")


@dataclass(repr=False)
class Context:
    """What a handler needs from its front end."""

    frontend: str
    config: VolumeConfig
    store_url: str | None = None
    environment: str | None = None  # -e/--env; None: $JUPYTER_VOLUME_ENV or the config's
    confirm: Callable[[str], bool] = _no_confirm
    write_bytes: Callable[[bytes], Any] | None = None  # `get NAME PATH -`
    info: Callable[[str], Any] = field(default=lambda s: print(s, file=sys.stderr))
    #: what the commands work on has a history of commits to speak of (a network file
    #: system, which shares the volume commands' handlers, has none for its users)
    versioned: ClassVar[bool] = True
    #: what a handler calls it in messages: "the volume", "the network file system"
    noun: ClassVar[str] = "volume"
    #: ``put`` replaces files that exist without ``--force`` (a network file system, as
    #: ``modal nfs put``: its users share one live copy, so the newest upload wins)
    put_overwrites: ClassVar[bool] = False

    def store(self, *, create: bool = False) -> Store:
        """The store the command works on (``--store``, else the configured one).

        A store named with ``--store`` must exist unless ``create`` (only the commands
        that create something make one: ``create``, ``mount --create``, ``dict create``,
        ``nfs create``, ``nfs mount --create``): a typo is an error, not a new empty store.
        """
        from ..config import get_store

        if self.store_url and not create:
            from ..store import check_store_exists

            check_store_exists(self.store_url, lambda _url: get_store(self.store_url, self.config))
        return get_store(self.store_url, self.config)

    @property
    def environment_name(self) -> str:
        """The environment the command works in ("" is the default one)."""
        from ..store import resolve_environment

        return resolve_environment(self.environment)

    def volume(self, name: str, *, create: bool = False) -> Volume:
        """Volume ``name`` in the context's store and environment; NotFoundError if it
        does not exist (unless ``create``)."""
        from ..volume import Volume

        return Volume.lookup(
            name,
            store=self.store(create=create),
            environment_name=self.environment_name,
            create_if_missing=create,
        )


def fresh(vol: Volume) -> Any:
    """Read the head from the store now, and return it (API reads see the newest commit
    anyway; this also returns it for messages)."""
    return vol.refresh()


def in_volume(vol: Volume, path: str) -> str:
    """``NAME:/path`` for messages and titles."""
    from ..names import normalize_path

    return f"{vol.name}:/{normalize_path(path)}"


_TYPE_NAMES = {1: "file", 2: "dir", 3: "link", 0: "unknown"}


def type_name(entry_type: int) -> str:
    """How a listing names an entry's type: ``file``, ``dir``, ``link`` (or ``unknown``)."""
    return _TYPE_NAMES.get(int(entry_type), "unknown")
