"""What the three kinds of named objects (volumes, network file systems, Dicts) share:
opening a store once per URL with its environment, the name check worded for each kind,
and the end of an ephemeral volume-backed object (its live mount detached, its lease
stopped, its objects deleted).

Layer: below :mod:`jupyter_volume.volume`, :mod:`jupyter_volume.nfs` and
:mod:`jupyter_volume.dicts`; it imports the store layer and :mod:`jupyter_volume.names`,
and :mod:`jupyter_volume.mount` only inside the functions that detach a mount.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import names
from .errors import InvalidError
from .lease import ephemeral_ttl
from .store import (
    Store,
    check_store_exists,
    environment_store,
    resolve_environment,
)

__all__ = [
    "ALIVE_EVERY",
    "AliveCheck",
    "check_kind_name",
    "detach_mount",
    "ephemeral_volume",
    "open_base",
    "open_env",
]

#: How often (seconds, at most) a handle that writes checks that what it names (a Dict,
#: a volume) still exists, on a store where that costs a request (S3); on a local
#: folder, every time. A handle on one deleted elsewhere (or deleted and made again
#: under the same name) then raises NotFoundError instead of writing where nobody looks.
ALIVE_EVERY = 2.0


class AliveCheck:
    """When a handle last found what it names still there, and whether to look again.

    A look is due at most every :data:`ALIVE_EVERY` seconds on a store where it costs a
    request (S3), and every time on one where it is a cheap ``stat`` (a local folder):
    so many writers committing through one handle pay at most one extra request per
    interval. What a look is (a name's record, a config object) is the handle's business.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.at = time.monotonic()  # handles are made for something that was just there

    def due(self, now: float) -> bool:
        """Whether a look is due at monotonic time ``now``."""
        every = 0.0 if self.store.cheap_stat else ALIVE_EVERY
        return now - self.at >= every

    def seen(self, now: float) -> None:
        """Record that a look started at ``now`` found it there."""
        self.at = max(self.at, now)


_existing: set[str] = set()
_existing_lock = threading.Lock()


def open_base(
    store: Store | str | os.PathLike[str] | None,
    *,
    must_exist: bool = False,
    remember_existing: bool = False,
) -> Store:
    """The store named by ``store`` (default: the configured one), opened once per URL.

    With ``must_exist`` a store named explicitly must already exist (a typo in
    ``store=`` is an error, never a new empty store), unless an earlier call with
    ``remember_existing`` already vouched for that URL.
    """
    if isinstance(store, Store):
        return store
    from .config import opened_store, resolve_store_url

    # store= wins, then $JUPYTER_VOLUME_STORE, then jupyter_volume_config.py, then the
    # default folder: the same order the CLI, the magic and the server use.
    url = os.fspath(store) if store is not None else resolve_store_url()
    if must_exist and store is not None and url not in _existing:
        check_store_exists(url, opened_store)  # an S3 store is asked through the one kept
    s = opened_store(url)
    if remember_existing and store is not None:
        with _existing_lock:
            _existing.add(url)
    return s


def open_env(base: Store, environment_name: str | None) -> tuple[Store, str, Store]:
    """``(base store, environment, the environment's view of the store)``."""
    env = resolve_environment(environment_name)
    return base, env, environment_store(base, env)


def check_kind_name(name: object, what: str, rule_names: str) -> str:
    """Return ``name`` if it passes the volume name rule; else raise InvalidError that
    speaks of ``what`` (e.g. "Dict") with the rule worded for ``rule_names``."""
    try:
        return names.check_name(name)
    except InvalidError:
        rule = names.NAME_RULE.replace("volume names", rule_names)
        raise InvalidError(f"invalid {what} name {name!r}: {rule}") from None


def detach_mount(store: Store, vol_id: str) -> None:
    """Detach this process's live mount of volume ``vol_id``, if it has one (the volume
    is about to be deleted, so the mount must stop writing to it)."""
    from .mount import _active_mount

    m = _active_mount(store, vol_id)
    if m is not None:
        m._detach()


@contextmanager
def ephemeral_volume(store: Store, *, version: int | None = None) -> Iterator[Any]:
    """Create an anonymous volume held by a lease; yield its meta; on exit detach its
    mount, stop the lease and delete the volume (also when the block raises)."""
    lease, meta = names.create_ephemeral(store, ttl=ephemeral_ttl(), version=version)
    try:
        yield meta
    finally:
        detach_mount(store, meta.id)
        lease.stop(delete=False)
        names.delete_ephemeral(store, meta.id)
