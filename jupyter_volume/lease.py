"""Leases: objects that say "someone is alive and holds this", kept fresh by a thread.

A lease is one store object whose modification time is its last renewal. Its owner
rewrites it every ``ttl / 3`` seconds from a daemon thread; when the owner dies the
object stops changing, and once it is older than ``ttl`` *by the store's own clock*
anybody may treat the lease as expired (reclaim an ephemeral volume or Dict, steal a
lock). Two machines' clocks are never compared: :func:`store_now` asks the store what
time it is by writing a tiny probe object and reading back its timestamp, and that is
compared with the lease object's timestamp, both stamped by the same store.

S3 servers stamp objects with whole seconds, so an age computed from two such stamps
can be up to one second short or long; :func:`is_expired` demands ``ttl`` plus that
second (:data:`CLOCK_SLACK`), so a lease is never judged expired early.

Used by ephemeral objects (volumes, Dicts) and by :meth:`jupyter_volume.Dict.lock`.
This module imports only the store layer and the error tree.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from typing import Any

from .errors import InvalidError
from .store.base import ObjectInfo, Store, check_key

__all__ = [
    "CLOCK_PREFIX",
    "CLOCK_SLACK",
    "DEFAULT_EPHEMERAL_TTL",
    "ENV_EPHEMERAL_TTL",
    "MAX_TTL",
    "Lease",
    "ephemeral_ttl",
    "expired",
    "is_expired",
    "store_now",
    "valid_ttl",
]

log = logging.getLogger(__name__)

#: Seconds added to every expiry test: S3 timestamps have whole-second resolution.
CLOCK_SLACK = 1.0
#: The shortest wait between renewals, whatever the ttl: a lease of 0.01 s would
#: otherwise be rewritten 300 times a second. Every expiry test grants ``ttl`` plus
#: :data:`CLOCK_SLACK`, so three such waits (two failed renewals in a row) still end
#: before anyone may judge the lease expired.
MIN_INTERVAL = 0.25
#: Where :func:`store_now` writes its probe objects (deleted right after reading).
CLOCK_PREFIX = "clock/"


#: The longest ttl a lease may have: its renewal thread waits ``ttl / 3`` at a time, and
#: a wait longer than :data:`threading.TIMEOUT_MAX` fails (OverflowError).
MAX_TTL = 3 * min(threading.TIMEOUT_MAX, 1e9)


def valid_ttl(ttl: object) -> bool:
    """Whether ``ttl`` is usable as a lease's seconds: an int or float (not a bool),
    positive, finite and at most :data:`MAX_TTL`."""
    return (
        isinstance(ttl, int | float)
        and not isinstance(ttl, bool)
        and 0 < ttl <= MAX_TTL  # False for NaN
    )


#: Seconds an ephemeral volume, Dict or network file system outlives its owner.
ENV_EPHEMERAL_TTL = "JUPYTER_VOLUME_EPHEMERAL_TTL"
DEFAULT_EPHEMERAL_TTL = 60.0


def ephemeral_ttl(*, strict: bool = True) -> float:
    """``$JUPYTER_VOLUME_EPHEMERAL_TTL`` (default 60 s), read now. A value that is not a
    usable ttl (see :func:`valid_ttl`) raises InvalidError naming the variable; with
    ``strict=False`` (judging others' leases, which carry their own ttl) the default is
    used instead."""
    raw = os.environ.get(ENV_EPHEMERAL_TTL, "").strip()
    if not raw:
        return DEFAULT_EPHEMERAL_TTL
    try:
        ttl = float(raw)
    except ValueError:
        ttl = float("nan")
    if valid_ttl(ttl):
        return ttl
    if not strict:
        return DEFAULT_EPHEMERAL_TTL
    raise InvalidError(
        f"${ENV_EPHEMERAL_TTL} must be a positive, finite number of seconds (at most "
        f"{MAX_TTL:.3g}), got {raw!r}"
    )


def store_now(store: Store) -> float:
    """The store's current time, in seconds since the epoch, as the store stamps objects.

    Writes a tiny probe object under ``clock/``, reads its modification time and deletes
    it (three requests). Compare the result only with timestamps the same store gave
    (``ObjectInfo.mtime``), never with this machine's ``time.time()``.

    Raises:
        StoreError: the store failed after its retries.

    Example::

        age = store_now(store) - store.stat("leases/x").mtime
    """
    key = f"{CLOCK_PREFIX}{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex}"
    store.put(key, b"")
    try:
        return store.stat(key).mtime
    finally:
        try:
            store.delete([key])
        except Exception:  # noqa: BLE001 - a leftover probe is harmless; the time is what matters
            log.debug("could not delete clock probe %s", key, exc_info=True)


def is_expired(info: ObjectInfo, now: float, ttl: float) -> bool:
    """Whether a lease object last renewed at ``info.mtime`` is older than ``ttl`` at
    store time ``now`` (from :func:`store_now`), with :data:`CLOCK_SLACK` to spare."""
    return now - info.mtime > ttl + CLOCK_SLACK


def expired(store: Store, prefix: str, ttl: float) -> list[ObjectInfo]:
    """The lease objects under ``prefix`` whose last renewal is older than ``ttl`` seconds
    by the store's clock (see :func:`is_expired`), sorted by key.

    The listing happens before the clock is read, so a lease renewed during the call is
    judged by an older stamp against a newer clock only if it really was stale first.

    Raises:
        StoreError: the store failed after its retries.
    """
    infos = list(store.list(prefix))
    if not infos:
        return []
    now = store_now(store)
    return [i for i in infos if is_expired(i, now, ttl)]


class Lease:
    """A lease object at ``key``, rewritten with ``payload`` every ``ttl / 3`` seconds by a
    daemon thread between :meth:`start` and :meth:`stop`; also a context manager.

    A renewal that fails (store unreachable) is logged and tried again at the next
    period; :attr:`last_error` holds the latest failure (None after a success). Stopping
    deletes the object unless ``delete=False``.

    Subclasses change how the object is written by overriding :meth:`renew` (the Dict
    lock renews with a conditional write, so a holder that lost its lock notices).

    Example::

        with Lease(store, f"leases/ephemeral/{vol_id}", ttl=30):
            ...  # others see the lease as live until 30 s after this process dies
    """

    def __init__(self, store: Store, key: str, *, ttl: float = 30.0, payload: bytes = b"") -> None:
        check_key(key)
        if not valid_ttl(ttl):
            raise InvalidError(
                f"lease ttl must be a positive, finite number of seconds (at most "
                f"{MAX_TTL:.3g}), got {ttl!r}"
            )
        self.store = store
        self.key = key
        self.ttl = float(ttl)
        self.payload = bytes(payload)
        self.last_error: BaseException | None = None
        self.renewals = 0
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def interval(self) -> float:
        """Seconds between renewals: a third of the ttl, so two may fail in a row (at
        least :data:`MIN_INTERVAL`)."""
        return max(self.ttl / 3, MIN_INTERVAL)

    def renew(self) -> bool:
        """Write the lease object once (its new mtime is the renewal); raises on failure.

        Returns False when the lease is lost for good (a subclass found someone else's
        object there), which ends the renewal thread and sets :attr:`lost`.
        """
        self.store.put(self.key, self.payload)
        return True

    def start(self) -> Lease:
        """Write the lease now (errors propagate) and start the renewal thread."""
        if self._thread is not None:
            return self
        self.lost = False
        self.renew()
        self._start_thread()
        return self

    def _start_thread(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"lease-{self.key}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                kept = self.renew()
            except Exception as e:  # noqa: BLE001 - keep trying; the owner may read last_error
                self.last_error = e
                log.warning("renewing lease %s failed: %s", self.key, e)
                continue
            self.last_error = None
            if not kept:
                self.lost = True
                log.warning("lease %s was taken over by another owner", self.key)
                return
            self.renewals += 1

    @property
    def alive(self) -> bool:
        """True while the renewal thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self, delete: bool = True) -> None:
        """Stop renewing; delete the lease object unless ``delete`` is False."""
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        if delete:
            self.store.delete([self.key])

    def __enter__(self) -> Lease:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Lease {self.key} ttl={self.ttl:g}s {'live' if self.alive else 'stopped'}>"
