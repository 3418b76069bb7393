"""Volume names and paths: the rules, and the name -> volume registry on a store.

``names/<name>`` holds ``{"id", "created_at", "created_by"}`` and is created with
``put_if_absent``, so two processes creating one name race safely: exactly one wins.
The volume's objects live under ``vols/<id>/``; a rename writes the new name first and
then removes the old one, so a crash in between leaves two names for one volume,
never none.
"""

from __future__ import annotations

import posixpath
import re
import socket
import time
import uuid
from dataclasses import dataclass

from .errors import AlreadyExistsError, InvalidError, NotFoundError
from .repository import Repository
from .repository.codec import dump_json, load_json
from .store import Store

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
NAME_RULE = (
    "volume names are 1-64 characters of letters, digits, '.', '_' and '-', "
    "starting with a letter or digit"
)
MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255


def check_name(name: object) -> str:
    """Return ``name`` if it is a valid volume name; else raise InvalidError stating the rule."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidError(f"invalid volume name {name!r}: {NAME_RULE}")
    return name


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
    if len(path.encode()) > MAX_PATH_BYTES:
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
    """What the registry knows of a volume."""

    name: str
    id: str
    created_at: float
    created_by: str


def _creator() -> str:
    from .repository.repo import default_author

    return f"{default_author()}@{socket.gethostname()}"


def _name_key(name: str) -> str:
    return f"names/{name}"


def resolve(store: Store, name: str) -> VolumeMeta:
    """The registry entry of ``name``; NotFoundError if there is no such volume."""
    check_name(name)
    try:
        d = load_json(store.get(_name_key(name)), _name_key(name))
    except NotFoundError:
        raise NotFoundError(
            f"volume {name!r} not found in {store.url}: create it with "
            f"Volume.from_name({name!r}, create_if_missing=True) or `jupyter volume create {name}`"
        ) from None
    return VolumeMeta(name, d["id"], float(d["created_at"]), d.get("created_by", ""))


def create(store: Store, name: str, *, allow_existing: bool = False) -> VolumeMeta:
    """Create volume ``name``; with ``allow_existing`` an existing one is returned instead."""
    check_name(name)
    if allow_existing:
        try:
            return resolve(store, name)
        except NotFoundError:
            pass
    vol_id = uuid.uuid4().hex
    meta = VolumeMeta(name, vol_id, time.time(), _creator())
    Repository.create(store, vol_id, author=meta.created_by.split("@")[0])
    doc = dump_json({"id": vol_id, "created_at": meta.created_at, "created_by": meta.created_by})
    if store.put_if_absent(_name_key(name), doc):
        return meta
    try:  # we may have won with a lost response: the record says whose id it is
        existing = resolve(store, name)
    except NotFoundError:
        existing = None
    if existing is not None and existing.id == vol_id:
        return existing
    _delete_objects(store, vol_id)
    if allow_existing and existing is not None:
        return existing
    raise AlreadyExistsError(f"volume {name!r} already exists in {store.url}")


def list_volumes(store: Store) -> list[VolumeMeta]:
    """Every volume in ``store``, sorted by name."""
    out = []
    for info in store.list("names/"):
        name = info.key[len("names/") :]
        try:
            out.append(resolve(store, name))
        except (NotFoundError, InvalidError):
            continue  # deleted while listing, or not ours
    return sorted(out, key=lambda m: m.name)


def delete(store: Store, name: str, *, allow_missing: bool = False) -> None:
    """Delete volume ``name`` and all its objects (history included)."""
    try:
        meta = resolve(store, name)
    except NotFoundError:
        if allow_missing:
            return
        raise
    store.delete([_name_key(name)])
    if not any(m.id == meta.id for m in list_volumes(store)):
        _delete_objects(store, meta.id)


def rename(store: Store, old: str, new: str) -> VolumeMeta:
    """Rename a volume: its id, contents and history are unchanged."""
    check_name(new)
    meta = resolve(store, old)
    if old == new:
        return meta
    doc = dump_json({"id": meta.id, "created_at": meta.created_at, "created_by": meta.created_by})
    if not store.put_if_absent(_name_key(new), doc):
        existing = resolve(store, new)
        if existing.id != meta.id:
            raise AlreadyExistsError(
                f"cannot rename {old!r} to {new!r}: a volume named {new!r} exists"
            )
    store.delete([_name_key(old)])
    return VolumeMeta(new, meta.id, meta.created_at, meta.created_by)


def _delete_objects(store: Store, vol_id: str) -> None:
    batch: list[str] = []
    for info in store.list(f"vols/{vol_id}/"):
        batch.append(info.key)
        if len(batch) >= 1000:
            store.delete(batch)
            batch = []
    if batch:
        store.delete(batch)
