"""Volume names and paths: the rules, and the name -> volume registry on a store.

``names/<name>`` holds ``{"id", "created_at", "created_by", "version"}`` and is created
with ``put_if_absent``, so two processes creating one name race safely: exactly one wins.
The volume's objects live under ``vols/<id>/``; a rename writes the new name first and
then removes the old one, so a crash in between leaves two names for one volume,
never none.

Ephemeral volumes have no name: their record is the payload of a lease object,
``leases/ephemeral/<id>``, that the owner keeps renewing (see :mod:`jupyter_volume.lease`).
Once the lease is older than its ttl by the store's clock, :func:`sweep_ephemeral`
(called by ordinary operations) deletes the volume.
"""

from __future__ import annotations

import json
import posixpath
import re
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import AlreadyExistsError, InvalidError, NotFoundError
from .repository import Repository
from .repository.codec import dump_json, load_json
from .repository.line import forget_line
from .store import Store

# Tag names (repository/gc.py) keep this stricter rule.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Volume names: Modal's rule (1-64 of letters, digits, '.', '_', '-'), less what is unsafe
# here: a leading '-' reads as an option on a command line; '.' and '..' as paths.
VOLUME_NAME_RE = re.compile(r"(?!-)(?!\.{1,2}\Z)[A-Za-z0-9._-]{1,64}")
NAME_RULE = (
    "volume names are 1-64 characters of letters, digits, '.', '_' and '-', "
    "not starting with '-' and not '.' or '..'"
)
VERSIONS = (1, 2)
EPHEMERAL_PREFIX = "leases/ephemeral/"
MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255


def check_name(name: object) -> str:
    """Return ``name`` if it is a valid volume name; else raise InvalidError stating the rule."""
    if not isinstance(name, str) or not VOLUME_NAME_RE.fullmatch(name):
        raise InvalidError(f"invalid volume name {name!r}: {NAME_RULE}")
    return name


def check_version(version: object) -> int | None:
    """Return ``version`` (None, 1 or 2, as Modal accepts); else raise InvalidError."""
    if version is None:
        return None
    if isinstance(version, bool) or version not in VERSIONS:
        raise InvalidError(f"volume version must be either 1 or 2, got {version!r}")
    return int(version)  # type: ignore[call-overload]


def check_version_matches(meta: VolumeMeta, requested: int | None) -> None:
    """Raise InvalidError (as Modal does) when ``requested`` differs from the volume's version."""
    if requested is not None and requested != meta.version:
        raise InvalidError(
            f"volume {meta.name!r} exists but has version v{meta.version}, not v{requested} "
            "as requested: omit the version argument or pass the volume's own"
        )


def normalize_path(path: str | bytes, *, what: str = "path") -> str:
    """Normalize a path inside a volume to ``a/b/c`` form ("" is the root).

    Leading slashes, ``.`` segments and repeated slashes are dropped; ``..`` is resolved
    but may never climb above the root. NUL bytes, names over 255 bytes and paths over
    4096 bytes are refused with :class:`InvalidError`.
    """
    if isinstance(path, bytes):
        try:
            path = path.decode()
        except UnicodeDecodeError:
            raise InvalidError(f"{what} {path!r} is not valid UTF-8") from None
    if not isinstance(path, str):
        raise InvalidError(f"{what} must be a string, got {type(path).__name__}")
    if "\x00" in path:
        raise InvalidError(f"{what} {path!r} contains a NUL byte")
    try:
        encoded = path.encode()
    except UnicodeEncodeError:  # a non-UTF-8 byte from a command line (surrogateescape)
        raise InvalidError(f"{what} {path!r} is not valid UTF-8") from None
    if len(encoded) > MAX_PATH_BYTES:
        raise InvalidError(f"{what} is longer than {MAX_PATH_BYTES} bytes")
    norm = posixpath.normpath("/" + path) if path else "/"
    # normpath("/..") == "/": detect escapes on the raw segments instead.
    depth = 0
    for seg in path.split("/"):
        if seg == "..":
            depth -= 1
            if depth < 0:
                raise InvalidError(f"{what} {path!r} escapes the volume root with '..'")
        elif seg not in ("", "."):
            depth += 1
    norm = norm.lstrip("/")
    for seg in norm.split("/"):
        if len(seg.encode()) > MAX_NAME_BYTES:
            raise InvalidError(f"{what} {path!r} has a name longer than {MAX_NAME_BYTES} bytes")
    return norm


@dataclass(frozen=True)
class VolumeMeta:
    """What the registry knows of a volume (``name`` is None for an ephemeral one)."""

    name: str | None
    id: str
    created_at: float
    created_by: str
    version: int = 1

    def doc(self) -> bytes:
        """The JSON record stored for this volume."""
        return dump_json(
            {
                "id": self.id,
                "created_at": self.created_at,
                "created_by": self.created_by,
                "version": self.version,
            }
        )

    @classmethod
    def of(cls, name: str | None, d: dict) -> VolumeMeta:
        """Read a stored record (records written before versions existed are version 1)."""
        return cls(
            name, d["id"], float(d["created_at"]), d.get("created_by", ""), int(d.get("version", 1))
        )


def _creator() -> str:
    from .repository.repo import default_author

    return f"{default_author()}@{socket.gethostname()}"


#: Where volume names live; network file systems keep theirs apart, under ``nfs-names/``
#: (the ``namespace`` argument below), so one name can be a volume and an NFS.
NAMES = "names/"


def _name_key(name: str, namespace: str = NAMES) -> str:
    return f"{namespace}{name}"


def resolve(store: Store, name: str, *, namespace: str = NAMES) -> VolumeMeta:
    """The registry entry of ``name``; NotFoundError if there is no such volume."""
    check_name(name)
    try:
        d = load_json(store.get(_name_key(name, namespace)), _name_key(name, namespace))
    except NotFoundError:
        raise NotFoundError(
            f"volume {name!r} not found in {store.url}: create it with "
            f"Volume.from_name({name!r}, create_if_missing=True) or `jupyter volume create {name}`"
        ) from None
    return VolumeMeta.of(name, d)


def create(
    store: Store,
    name: str,
    *,
    allow_existing: bool = False,
    version: int | None = None,
    namespace: str = NAMES,
) -> VolumeMeta:
    """Create volume ``name``; with ``allow_existing`` an existing one is returned instead
    (InvalidError if ``version`` is given and differs from the existing volume's)."""
    check_name(name)
    version = check_version(version)
    if allow_existing:
        try:
            existing = resolve(store, name, namespace=namespace)
        except NotFoundError:
            pass
        else:
            check_version_matches(existing, version)
            return existing
    vol_id = uuid.uuid4().hex
    meta = VolumeMeta(name, vol_id, time.time(), _creator(), version or 1)
    Repository.create(store, vol_id, author=meta.created_by.split("@")[0])
    if store.put_if_absent(_name_key(name, namespace), meta.doc()):
        return meta
    try:  # we may have won with a lost response: the record says whose id it is
        existing = resolve(store, name, namespace=namespace)
    except NotFoundError:
        existing = None
    if existing is not None and existing.id == vol_id:
        return existing
    _delete_objects(store, vol_id)
    if allow_existing and existing is not None:
        check_version_matches(existing, version)
        return existing
    raise AlreadyExistsError(f"volume {name!r} already exists in {store.url}")


def list_volumes(store: Store, *, namespace: str = NAMES) -> list[VolumeMeta]:
    """Every volume in ``store``, sorted by name (their entries read in parallel)."""
    keys = [info.key for info in store.list(namespace)]
    out = []
    for key, data in zip(keys, store.get_many(keys), strict=True):
        name = key[len(namespace) :]
        try:
            check_name(name)
        except InvalidError:
            continue  # not ours
        if data is not None:  # else deleted while listing
            out.append(VolumeMeta.of(name, load_json(data, key)))
    return sorted(out, key=lambda m: m.name)


def delete(store: Store, name: str, *, allow_missing: bool = False, namespace: str = NAMES) -> None:
    """Delete volume ``name`` and all its objects (history included)."""
    try:
        meta = resolve(store, name, namespace=namespace)
    except NotFoundError:
        if allow_missing:
            return
        raise
    store.delete([_name_key(name, namespace)])
    if not any(m.id == meta.id for m in list_volumes(store, namespace=namespace)):
        _delete_objects(store, meta.id)


def rename(store: Store, old: str, new: str) -> VolumeMeta:
    """Rename a volume: its id, contents and history are unchanged."""
    check_name(new)
    meta = resolve(store, old)
    if old == new:
        return meta
    if not store.put_if_absent(_name_key(new), meta.doc()):
        existing = resolve(store, new)
        if existing.id != meta.id:
            raise AlreadyExistsError(
                f"cannot rename {old!r} to {new!r}: a volume named {new!r} exists"
            )
    store.delete([_name_key(old)])
    return VolumeMeta(new, meta.id, meta.created_at, meta.created_by, meta.version)


def by_id(store: Store, vol_id: str) -> VolumeMeta:
    """The record of the volume with id ``vol_id`` (named or ephemeral); NotFoundError if none.

    A named volume is found by reading the registry (one request per name).
    """
    if not isinstance(vol_id, str) or not re.fullmatch(r"[0-9a-f]{32}", vol_id):
        raise InvalidError(f"invalid volume id {vol_id!r}: ids are 32 hexadecimal digits")
    for meta in list_volumes(store):
        if meta.id == vol_id:
            return meta
    try:
        return VolumeMeta.of(None, load_json(store.get(EPHEMERAL_PREFIX + vol_id), vol_id))
    except NotFoundError:
        pass
    raise NotFoundError(f"no volume with id {vol_id!r} in {store.url}")


def create_ephemeral(
    store: Store, *, ttl: float, version: int | None = None
) -> tuple[Any, VolumeMeta]:
    """Create an anonymous volume held by a started :class:`~jupyter_volume.lease.Lease`.

    Returns ``(lease, meta)``; stop the lease and call :func:`delete_ephemeral` to end it.
    The lease is written before anything else, so a crash leaves nothing unswept.
    """
    from .lease import Lease

    sweep_ephemeral(store)
    vol_id = uuid.uuid4().hex
    meta = VolumeMeta(None, vol_id, time.time(), _creator(), check_version(version) or 1)
    payload = json.loads(meta.doc())
    payload["ttl"] = ttl
    lease = Lease(store, EPHEMERAL_PREFIX + vol_id, ttl=ttl, payload=dump_json(payload))
    lease.start()
    try:
        Repository.create(store, vol_id, author=meta.created_by.split("@")[0])
    except BaseException:
        lease.stop()
        raise
    return lease, meta


def delete_ephemeral(store: Store, vol_id: str) -> None:
    """Delete an ephemeral volume's objects, then its lease (so a crash midway is re-swept)."""
    _delete_objects(store, vol_id)
    store.delete([EPHEMERAL_PREFIX + vol_id])


def sweep_ephemeral(store: Store) -> list[str]:
    """Delete the ephemeral volumes whose owner stopped renewing their lease (it died).

    Each lease is judged by the ttl its owner wrote into it, against the store's clock.
    Costs one listing when there are no ephemeral volumes. Returns the ids deleted.
    """
    from .lease import ephemeral_ttl

    return sweep_leases(
        store,
        EPHEMERAL_PREFIX,
        default_ttl=ephemeral_ttl(strict=False),
        end=lambda vol_id: delete_ephemeral(store, vol_id),
    )


def sweep_leases(
    store: Store,
    prefix: str,
    *,
    default_ttl: float,
    end: Callable[[str], object],
    skip_unreadable: tuple[type[Exception], ...] = (),
) -> list[str]:
    """Call ``end(id)`` for each lease ``<prefix><id>`` whose owner stopped renewing it.

    Each lease is judged by the ttl its owner wrote into it (else ``default_ttl``),
    against the store's clock. A lease whose content fails with one of
    ``skip_unreadable`` is left alone; other unreadable content gets ``default_ttl``.
    Costs one listing when there are no leases. Returns the ids ended.
    """
    from .lease import is_expired, store_now

    infos = list(store.list(prefix))
    if not infos:
        return []
    now = store_now(store)
    gone = []
    for info in infos:
        oid = info.key[len(prefix) :]
        try:
            ttl = float(json.loads(store.get(info.key)).get("ttl", default_ttl))
        except NotFoundError:
            continue  # its owner ended it meanwhile
        except skip_unreadable:
            continue
        except (ValueError, TypeError, AttributeError):
            ttl = default_ttl
        if is_expired(info, now, ttl):
            end(oid)
            gone.append(oid)
    return gone


def delete_prefix(store: Store, prefix: str) -> int:
    """Delete every object under ``prefix``, 1,000 per request; how many there were."""
    batch: list[str] = []
    n = 0
    for info in store.list(prefix):
        batch.append(info.key)
        if len(batch) >= 1000:
            store.delete(batch)
            n += len(batch)
            batch = []
    if batch:
        store.delete(batch)
        n += len(batch)
    return n


def _delete_objects(store: Store, vol_id: str) -> None:
    delete_prefix(store, f"vols/{vol_id}/")
    forget_line(store, vol_id)
