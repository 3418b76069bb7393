"""Dict: Modal's distributed dictionary, kept in the same store as the volumes.

A Dict is a named key-value map that every process reaching the store shares. It is not
a volume: no commits and no history; each write is visible to every reader at once.

Layout (inside the environment's view of the store)::

    dict-names/<name>          {"id", "created_at", "created_by"}  (create-only)
    dicts/<id>/config          {"id", "name", "created_at", "created_by", "format"}
    dicts/<id>/e/<entry name>  one object per entry: header + pickled value
    dicts/<id>/locks/<name>    locks taken with Dict.lock (never among the entries)
    dicts/<id>/claims/<entry name>/<version digest>  a pop's claim on one version of an entry
    dicts/<id>/claims/<entry name>/<version digest>.ended  the sweep's end mark of a claim
    leases/dicts/<id>          the lease of an ephemeral Dict (renewed while its owner lives)

Keys. A key of a primitive type (str, bytes, int, float, bool, None, and tuples of
these) has a canonical byte encoding; its entry's object name is that encoding in
lowercase base32 (``0-9a-v``, safe on case-insensitive file systems), so ``keys()`` and
``len()`` are one listing, with no read per entry. Keys are equal when their encodings
are (Modal's rule, not Python's): ``1``, ``1.0`` and ``True`` are three different keys.
An encoding too long for an object name (over 120 bytes), and every other hashable key
(pickled with cloudpickle), is named by a digest instead, and the key is kept inside the
entry; listing such keys reads those entries. Pickles of equal objects can differ (set
order, object identity), so two equal non-primitive keys may name two entries: prefer
primitive keys, as Modal's documentation also advises.

Values are pickled with cloudpickle (as Modal does), compressed with zstd when large,
and limited to 100 MiB pickled (Modal's limit), checked before anything is written.

Atomicity comes from the store: ``put(skip_if_exists=True)`` is a create-only write;
``incr``, ``setdefault`` and the lock are optimistic loops on
:meth:`Store.put_if_match <jupyter_volume.store.base.Store.put_if_match>`. Entries are
kept until deleted (Modal expires idle entries after 7 days; we do not).

A write whose answer is lost may or may not have landed, and a conditional write that
looks the same as another (two ``incr`` from one value write the same number) cannot
be told from it by its bytes. So each ``incr`` write carries a random id, and the entry
keeps the ids of its last :data:`INCR_HISTORY` ``incr`` writes after the value's pickle
(unpickling stops at the pickle's end, so every reader reads the value as before): a
retry that finds its id in the entry returns what it wrote instead of adding again, and
one that does not find it never takes another writer's equal bytes for its own. A
``put(skip_if_exists=True)`` carries one random id too, for the same reason: a create
whose first attempt failed unseen settles its retry's "exists" by reading the entry
back, and another writer's create of the same value must not pass for its own. Every
other write carries one random id as well, so no two writes of an entry have the same
bytes, and so the same version token.

``pop`` (and ``del``) must hand a value to exactly one caller even when answers are
lost, and a delete leaves nothing to read back. So a pop first *claims* the version it
read: a create-only object named after the entry and that version's token, holding a
random claim id. Of several pops of one version exactly one creates the claim (a lost
answer is settled by reading the claim back: the id is its own or not), and whoever
holds it owns the value; the entry is then deleted only if it is still that version
(a value put meanwhile stays, as a put after the pop). A pop that finds another's claim
finishes that pop's delete and looks again. Claims stay :data:`CLAIM_KEEP` seconds (by
the store's clock), so a retry arriving late cannot claim a version twice; a sweep then
deletes the version if still there and marks the claim ended, and removes claim and
mark only a :data:`CLAIM_KEEP` after that (see :meth:`Dict._sweep_claims`). A pop that
read its version longer ago than a quarter of that reads again before claiming, and one
that won its claim that long after its read (stopped before its claim went out) owns
the version only if it is still there: the sweep deletes a version before it removes
its claim. An ``incr`` does not look at claims: one that replaced the claimed version
with its sum before the pop's delete came first, and the pop takes the sum instead.

This module sits beside :mod:`jupyter_volume.volume`: it imports the store layer, the
lease module, the name rule, the error tree and :mod:`jupyter_volume.objects` (store
opening shared with the other kinds), never the volume engine. (It is named
``dicts`` because a submodule named ``dict`` would shadow the builtin in the package's
``__init__``.)
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import json
import logging
import os
import pickle
import random
import socket
import threading
import time
import uuid
from collections.abc import (
    ItemsView,
    Iterable,
    Iterator,
    KeysView,
    Mapping,
    MutableMapping,
    ValuesView,
)
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .aio import aio
from .errors import AlreadyExistsError, InvalidError, NotFoundError, VolumeError
from .lease import CLOCK_SLACK, MAX_TTL, Lease, ephemeral_ttl, store_now, valid_ttl
from .names import delete_prefix, sweep_leases
from .objects import AliveCheck, check_kind_name, open_base, open_env
from .store import Store, environment_store

log = logging.getLogger(__name__)

__all__ = [
    "MAX_VALUE_SIZE",
    "DeserializationError",
    "Dict",
    "DictInfo",
    "DictLock",
]

#: The largest pickled value a Dict accepts (Modal's limit).
MAX_VALUE_SIZE = 100 * 1024 * 1024
#: Pickled values at least this large are stored zstd-compressed (when that helps).
COMPRESS_ABOVE = 4096
#: Canonical key encodings up to this many bytes name their entry directly (base32
#: makes 192 characters of 120 bytes: within the 255-byte file-name limit of a local
#: store and the 1,024-byte key limit of S3, with room for the prefixes).
MAX_DIRECT_KEY = 120
#: Entries stored in more bytes than this are listed without a preview of their value
#: when browsing (the REST API), so a page of big values is never loaded into memory.
PREVIEW_MAX_BYTES = 1024 * 1024
#: Requests in flight at once when reading or writing many entries.
PARALLEL = 16

NAMES = "dict-names/"
EPHEMERAL_LEASES = "leases/dicts/"
_MAGIC = b"JVD1"
_FLAG_ZSTD = 1
#: The value's pickle is followed by write ids (8 bytes each) and their count (2 bytes).
_FLAG_WRITE_IDS = 2
_WRITE_ID_BYTES = 8
#: How many ``incr`` write ids an entry keeps: a retry whose lost write was followed by
#: more than this many others before it looked again would count twice.
INCR_HISTORY = 64
_FREE = b'{"free": true}'
#: How long (seconds, by the store's clock) a pop's claim is kept after it was made.
#: Within this time no late retry or slow pop can claim the same version again: a pop
#: reads afresh when more than a quarter of it passed since its read, and a claim's own
#: retries end well within the rest (an S3 store's 10 attempts of at most 60 s each).
CLAIM_KEEP = 3600.0
#: A handle sweeps claims older than :data:`CLAIM_KEEP` after about one pop in this
#: many, and at most once per :data:`CLAIM_SWEEP_EVERY` seconds.
CLAIM_SWEEP_ODDS = 64
CLAIM_SWEEP_EVERY = 300.0
_NO_DEFAULT: Any = object()
#: What an end mark's name adds to its claim's (see :meth:`Dict._sweep_claims`).
_ENDED = ".ended"


#: The key :meth:`Dict._iter_entries` gives an entry whose key cannot be read here.
UNREADABLE_KEY = object()


class DeserializationError(VolumeError):
    """A value (or key) stored in a Dict cannot be unpickled here, e.g. because the
    module that defines its type is not installed in this environment."""


@dataclass(frozen=True)
class DictInfo:
    """What is known of a Dict: its name (None when ephemeral), id, creation time (UTC)
    and creator."""

    name: str | None
    id: str
    created_at: datetime
    created_by: str


# -- keys ------------------------------------------------------------------------------
_PRIMITIVES = (str, bytes, int, float, bool, type(None), tuple)


def _encode_key(key: Any) -> bytes | None:
    """The canonical bytes of a primitive key, or None when ``key`` is not primitive."""
    if key is None:
        return b"n"
    if key is True:
        return b"t"
    if key is False:
        return b"f"
    t = type(key)
    if t is int:
        try:
            return b"i" + str(key).encode()
        except ValueError:
            return None  # more digits than the interpreter will print: stored pickled
    if t is float:
        return b"d" + repr(key).encode()
    if t is str:
        return b"s" + key.encode("utf-8", "surrogatepass")
    if t is bytes:
        return b"b" + key
    if t is tuple:
        parts = []
        for item in key:
            enc = _encode_key(item)
            if enc is None:
                return None
            parts.append(b"%d:" % len(enc) + enc)
        return b"(" + b"".join(parts)
    return None


def _decode_key(enc: bytes) -> Any:
    tag, body = enc[:1], enc[1:]
    if tag == b"n":
        return None
    if tag == b"t":
        return True
    if tag == b"f":
        return False
    if tag == b"i":
        return int(body)
    if tag == b"d":
        return float(body)
    if tag == b"s":
        return body.decode("utf-8", "surrogatepass")
    if tag == b"b":
        return bytes(body)
    if tag == b"(":
        items = []
        while body:
            size, _, rest = body.partition(b":")
            n = int(size)
            items.append(_decode_key(rest[:n]))
            body = rest[n:]
        return tuple(items)
    if tag == b"p":
        return pickle.loads(body)
    raise ValueError(f"unknown key tag {tag!r}")


def _pickle(obj: Any, what: str) -> bytes:
    import cloudpickle

    try:
        return cloudpickle.dumps(obj)
    except Exception as e:  # noqa: BLE001 - pickling raises many kinds; all mean "cannot"
        raise InvalidError(f"{what} cannot be pickled: {type(e).__name__}: {e}") from e


def _repr(obj: Any, limit: int | None = 200) -> str:
    """``repr(obj)`` for messages and previews, cut at ``limit`` characters (None: whole),
    and never failing: an int of more digits than the interpreter will print shows its
    digit count, any other object whose ``__repr__`` fails its type."""
    try:
        text = repr(obj)
    except Exception:  # noqa: BLE001 - any failure: describe the object instead
        if isinstance(obj, int):
            return f"<{type(obj).__name__} of {_digits(obj)} digits>"
        return f"<a {type(obj).__name__}>"
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


def _digits(n: int) -> int:
    """How many decimal digits ``n`` has (without printing it)."""
    n = abs(int(n))
    if n < 10:
        return 1
    import math

    d = math.floor(math.log10(n)) + 1  # may be one off for big n: check exactly
    if n < 10 ** (d - 1):
        d -= 1
    elif n >= 10**d:
        d += 1
    return d


def _key_bytes(key: Any) -> bytes:
    """The key's canonical encoding; non-primitive keys are pickled (tag ``p``)."""
    enc = _encode_key(key)
    if enc is not None:
        return enc
    try:
        hash(key)
    except TypeError:
        raise InvalidError(
            f"Dict keys must be hashable, got {type(key).__name__}: use a str, int, "
            "bytes or a tuple of these"
        ) from None
    return b"p" + _pickle(key, f"key {_repr(key)}")


def _entry_name(enc: bytes) -> str:
    """The object name of a key: base32 of its encoding, or a digest when too long."""
    if enc[:1] != b"p" and len(enc) <= MAX_DIRECT_KEY:
        return "k" + base64.b32hexencode(enc).decode().rstrip("=").lower()
    from blake3 import blake3

    return "h" + blake3(enc).hexdigest()[:56]


def _name_to_enc(name: str) -> bytes | None:
    """The key encoding of a directly named entry (None for a digest-named one)."""
    if not name.startswith("k"):
        return None
    text = name[1:].upper()
    return base64.b32hexdecode(text + "=" * (-len(text) % 8))


# -- entries ---------------------------------------------------------------------------
def _pack(enc: bytes, value_pickle: bytes, write_ids: list[bytes] | None = None) -> bytes:
    """One entry object: magic, flags, key length, key encoding, value (maybe zstd);
    ``write_ids`` (an ``incr``'s, newest first) go after the value's pickle."""
    flags = 0
    body = value_pickle
    if write_ids:
        body = b"".join((body, *write_ids, len(write_ids).to_bytes(2, "big")))
        flags |= _FLAG_WRITE_IDS
    if len(body) >= COMPRESS_ABOVE:
        import zstandard

        packed = zstandard.ZstdCompressor(level=3).compress(body)
        if len(packed) < len(body):
            body, flags = packed, flags | _FLAG_ZSTD  # the write ids stay readable
    return b"".join((_MAGIC, bytes([flags]), len(enc).to_bytes(4, "big"), enc, body))


def _unpack(blob: bytes) -> tuple[bytes, bytes]:
    """``(key encoding, value pickle)`` of an entry object."""
    if blob[:4] != _MAGIC or len(blob) < 9:
        raise ValueError("not a Dict entry")
    flags = blob[4]
    n = int.from_bytes(blob[5:9], "big")
    enc, body = blob[9 : 9 + n], blob[9 + n :]
    if flags & _FLAG_ZSTD:
        import zstandard

        body = zstandard.ZstdDecompressor().decompress(body, max_output_size=MAX_VALUE_SIZE + 1)
    return enc, body


def _write_ids(blob: bytes) -> list[bytes]:
    """The ``incr`` write ids an entry object carries, newest first; none for an entry
    written otherwise (a ``put`` starts the list afresh) or unreadable here."""
    if len(blob) < 9 or blob[:4] != _MAGIC or not blob[4] & _FLAG_WRITE_IDS:
        return []
    try:
        _enc, body = _unpack(blob)
    except Exception:  # noqa: BLE001 - damaged: no ids, so a retry adds again
        return []
    n = int.from_bytes(body[-2:], "big")
    size = n * _WRITE_ID_BYTES
    if len(body) < size + 2:
        return []
    ids = body[len(body) - 2 - size : len(body) - 2]
    return [ids[i : i + _WRITE_ID_BYTES] for i in range(0, size, _WRITE_ID_BYTES)]


def _carries(current: bytes, blob: bytes) -> bool:
    """Whether entry object ``current`` is ``blob``'s write or an incr built on it (its
    write ids include ``blob``'s newest)."""
    ids = _write_ids(blob)
    return bool(ids) and ids[0] in _write_ids(current)


def _creator() -> str:
    from .repository.repo import default_author

    return f"{default_author()}@{socket.gethostname()}"


def _open(
    store: Store | str | os.PathLike[str] | None,
    environment_name: str | None,
    *,
    create: bool = False,
) -> tuple[Store, str, Store]:
    """``(base store, environment, the environment's view)``; stores opened once per URL.

    A store named explicitly must exist unless ``create`` (as for volumes): a typo in
    ``store=`` is an error, never a new empty store made by a mere lookup."""
    return open_env(
        open_base(store, must_exist=not create, remember_existing=True), environment_name
    )


def check_dict_name(name: object) -> str:
    """Return ``name`` if it is a valid Dict name (the volume name rule); else raise
    InvalidError stating the rule."""
    return check_kind_name(name, "Dict", "Dict names")


def _config_doc(dict_id: str, name: str | None) -> dict[str, Any]:
    return {
        "id": dict_id,
        "name": name,
        "created_at": time.time(),
        "created_by": _creator(),
        "format": 1,
    }


def _dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True).encode()


def _sweep_ephemeral(store: Store) -> list[str]:
    """Delete ephemeral Dicts whose owner stopped renewing their lease; their ids.

    Each lease records its own ttl; age is judged by the store's clock (see
    :mod:`jupyter_volume.lease`), so a slow owner on another machine is never swept early.
    """

    def end(dict_id: str) -> None:
        delete_prefix(store, f"dicts/{dict_id}/")
        store.delete([EPHEMERAL_LEASES + dict_id])

    # a lease we cannot read is left alone: released meanwhile, or not ours
    return sweep_leases(
        store,
        EPHEMERAL_LEASES,
        default_ttl=ephemeral_ttl(strict=False),
        end=end,
        skip_unreadable=(ValueError, TypeError, AttributeError),
    )


def _create(store: Store, name: str, *, allow_existing: bool) -> dict[str, Any]:
    """Create Dict ``name``; its record. AlreadyExistsError unless ``allow_existing``."""
    check_dict_name(name)
    doc = _config_doc(uuid.uuid4().hex, name)
    # the config first: a name never points at a Dict that does not exist
    store.put(f"dicts/{doc['id']}/config", _dump(doc))
    record = {k: doc[k] for k in ("id", "created_at", "created_by")}
    while True:
        if store.put_if_absent(NAMES + name, _dump(record)):
            return doc
        try:
            existing = json.loads(store.get(NAMES + name))
        except NotFoundError:
            continue  # deleted since our write found it: the name is free, try again
        if existing.get("id") == doc["id"]:
            return doc  # our create landed, its response was lost
        store.delete([f"dicts/{doc['id']}/config"])
        if allow_existing:
            return {**existing, "name": name}
        raise AlreadyExistsError(f"Dict {name!r} already exists in {store.url}")


class _DictManager:
    """``Dict.objects``: create, list and delete named Dicts."""

    @aio
    def create(
        self,
        name: str,
        *,
        allow_existing: bool = False,
        environment_name: str | None = None,
        store: Store | str | None = None,
    ) -> None:
        """Create a named Dict (use :meth:`Dict.from_name` for a handle).

        Raises:
            AlreadyExistsError: it exists and ``allow_existing`` is False.
            InvalidError: a bad name.
        """
        check_dict_name(name)
        _, _, s = _open(store, environment_name, create=True)
        _create(s, name, allow_existing=allow_existing)

    @aio
    def list(
        self,
        *,
        max_objects: int | None = None,
        created_before: datetime | str | None = None,
        environment_name: str | None = None,
        store: Store | str | None = None,
    ) -> builtins.list[Dict]:
        """Every named Dict of the environment, newest first (as Modal orders them).

        Args:
            max_objects: return at most this many.
            created_before: only Dicts created before this time (a datetime or an ISO
                date string such as ``"2025-01-01"``).
        """
        if max_objects is not None and (
            not isinstance(max_objects, int) or isinstance(max_objects, bool)
        ):
            raise InvalidError(f"max_objects must be an int or None, got {max_objects!r}")
        if max_objects is not None and max_objects < 0:
            raise InvalidError("max_objects cannot be negative")
        cutoff: float | None = None
        if created_before is not None:
            if isinstance(created_before, str):
                try:
                    created_before = datetime.fromisoformat(created_before)
                except ValueError:
                    raise InvalidError(
                        f"created_before must be an ISO date or time such as '2025-01-01', "
                        f"got {created_before!r}"
                    ) from None
            if not isinstance(created_before, datetime):
                raise InvalidError(
                    "created_before must be a datetime or an ISO date string, got "
                    f"{type(created_before).__name__}"
                )
            if created_before.tzinfo is None:
                created_before = created_before.replace(tzinfo=UTC)
            cutoff = created_before.timestamp()
        base, env, s = _open(store, environment_name)
        _sweep_ephemeral(s)  # ordinary operations reclaim abandoned ephemeral Dicts
        found = []
        keys = [info.key for info in s.list(NAMES)]
        for key, data in zip(keys, s.get_many(keys), strict=True):  # read in parallel
            name = key[len(NAMES) :]
            if data is None:
                continue  # deleted while we listed
            rec = json.loads(data)
            if cutoff is not None and float(rec["created_at"]) >= cutoff:
                continue
            found.append(
                Dict(
                    _store=base,
                    _env=env,
                    _name=name,
                    _id=rec["id"],
                    _record={**rec, "name": name},
                )
            )
        found.sort(key=lambda d: -float(d._record["created_at"]))  # type: ignore[index]
        return found[:max_objects] if max_objects is not None else found

    @aio
    def delete(
        self,
        name: str,
        *,
        allow_missing: bool = False,
        environment_name: str | None = None,
        store: Store | str | None = None,
    ) -> None:
        """Delete a named Dict entirely (every entry and lock; irreversible).

        Raises:
            NotFoundError: no such Dict and ``allow_missing`` is False.
        """
        check_dict_name(name)
        _, _, s = _open(store, environment_name)
        while True:
            try:
                data, token = s.get_versioned(NAMES + name)
            except NotFoundError:
                if allow_missing:
                    return
                raise NotFoundError(f"Dict {name!r} not found in {s.url}") from None
            rec = json.loads(data)
            # the name first (nobody finds a half-deleted Dict), and only if it still
            # names the Dict just read: another process may have deleted that one and
            # made a new Dict under the name meanwhile, whose entries must go with it
            if s.delete_if_match(NAMES + name, token):
                break
        delete_prefix(s, f"dicts/{rec['id']}/")


class Dict(MutableMapping[Any, Any]):
    """A distributed dictionary: a named key-value map shared by every process that
    reaches the store, shaped like ``modal.Dict`` and a real ``MutableMapping``.

    Get one with :meth:`from_name` (lazy), :meth:`from_id` or :meth:`ephemeral`. Every
    method also has an ``.aio`` form for async code (``await d.get.aio("k")``).

    Handles compare equal to any mapping with the same contents (``d == {"a": 1}``) but
    hash by identity, so a handle can itself be a key or a value (handles pickle: the
    store URL, environment and id travel, the contents stay in the store).

    Example::

        d = Dict.from_name("results", create_if_missing=True)
        d["run-1"] = {"loss": 0.12}
        d.put("best", "run-1", skip_if_exists=True)  # first writer wins
        d.incr("runs")  # atomic across processes and machines
        with d.lock("checkpoint"):  # one holder at a time
            d["n"] = d.get("n", 0) + 1
    """

    objects = _DictManager()

    def __init__(
        self,
        *,
        _store: Store,
        _env: str,
        _name: str | None = None,
        _id: str | None = None,
        _create: bool = False,
        _record: dict[str, Any] | None = None,
    ) -> None:
        self._base = _store
        self.environment_name = _env
        self.store = environment_store(_store, _env)
        self._name = _name
        self._id = _id
        self._create_if_missing = _create
        self._record = _record
        self._lock = threading.Lock()
        self._alive = AliveCheck(self.store)  # when the Dict was last seen to exist
        self._unchecked: set[str] = set()  # entries written since then
        self._ended = False  # an ephemeral Dict whose block ended (in this process)
        self._next_sweep = 0.0  # claims are swept no sooner (on _lease_clock)

    # -- handles -------------------------------------------------------------------
    @staticmethod
    def from_name(
        name: str,
        *,
        create_if_missing: bool = False,
        environment_name: str | None = None,
        store: Store | str | None = None,
    ) -> Dict:
        """A handle on the Dict named ``name``; nothing is read until it is used.

        With ``create_if_missing`` the first use creates it. Raises InvalidError at once
        for a bad name.
        """
        check_dict_name(name)
        base, env, _ = _open(store, environment_name, create=create_if_missing)
        return Dict(_store=base, _env=env, _name=name, _create=create_if_missing)

    @staticmethod
    def from_id(
        dict_id: str, *, environment_name: str | None = None, store: Store | str | None = None
    ) -> Dict:
        """A handle on the Dict with id ``dict_id`` (named or ephemeral), looked up at
        first use (NotFoundError then if it does not exist)."""
        if not isinstance(dict_id, str) or not dict_id.isalnum():
            raise InvalidError(f"invalid Dict id {dict_id!r}")
        base, env, _ = _open(store, environment_name)
        return Dict(_store=base, _env=env, _id=dict_id)

    @classmethod
    @aio(kind="context")
    @contextlib.contextmanager
    def ephemeral(
        cls,
        *,
        environment_name: str | None = None,
        store: Store | str | None = None,
        _ttl: float | None = None,
    ) -> Iterator[Dict]:
        """An anonymous Dict that exists for the duration of the block.

        It is deleted when the block exits; if its process dies first, its lease stops
        being renewed and any later ``Dict.ephemeral()`` or ``Dict.objects.list()`` on
        the store deletes it once the lease is older than ``$JUPYTER_VOLUME_EPHEMERAL_TTL``
        (60 s by default) by the store's clock.

        Example::

            with Dict.ephemeral() as d:
                d["foo"] = "bar"
        """
        ttl = _ttl or ephemeral_ttl()
        if not valid_ttl(ttl):
            raise InvalidError(
                f"the lease of an ephemeral Dict must be a positive, finite number of seconds "
                f"(at most {MAX_TTL:.3g}), got {ttl!r}"
            )
        base, env, s = _open(store, environment_name, create=True)
        _sweep_ephemeral(s)
        doc = _config_doc(uuid.uuid4().hex, None)
        lease = Lease(s, EPHEMERAL_LEASES + doc["id"], ttl=ttl, payload=_dump({"ttl": ttl}))
        lease.start()  # before the config: a sweep never sees a Dict without a lease
        handle: Dict | None = None
        try:
            s.put(f"dicts/{doc['id']}/config", _dump(doc))
            handle = cls(_store=base, _env=env, _id=doc["id"], _record=doc)
            yield handle
        finally:
            if handle is not None:
                handle._ended = True  # its writes from now on fail at once, here
            lease.stop(delete=False)
            delete_prefix(s, f"dicts/{doc['id']}/")
            s.delete([lease.key])

    def _resolve(self) -> dict[str, Any]:
        with self._lock:
            if self._record is None:
                s = self.store
                if self._name is not None and self._id is None:
                    try:
                        rec = json.loads(s.get(NAMES + self._name))
                    except NotFoundError:
                        if not self._create_if_missing:
                            raise NotFoundError(
                                f"Dict {self._name!r} not found in {s.url}: create it with "
                                f"Dict.from_name({self._name!r}, create_if_missing=True) or "
                                f"`jupyter volume dict create {self._name}`"
                            ) from None
                        rec = _create(s, self._name, allow_existing=True)
                    self._record = {**rec, "name": self._name}
                    self._id = rec["id"]
                    self._alive.seen(time.monotonic())
                else:
                    try:
                        self._record = json.loads(s.get(f"dicts/{self._id}/config"))
                    except NotFoundError:
                        raise NotFoundError(f"no Dict with id {self._id!r} in {s.url}") from None
                    self._name = self._record.get("name")
            return self._record

    @property
    def name(self) -> str | None:
        """The Dict's name (None for an ephemeral Dict or a not yet resolved id)."""
        return self._name

    @property
    def object_id(self) -> str:
        """The Dict's id (resolves the handle)."""
        return self._resolve()["id"]

    @property
    def _prefix(self) -> str:
        return f"dicts/{self._resolve()['id']}/e/"

    @property
    def _claims(self) -> str:
        return f"dicts/{self._resolve()['id']}/claims/"

    def _claim_key(self, okey: str, token: str) -> str:
        """Where a pop's claim on version ``token`` of entry object ``okey`` lives."""
        from blake3 import blake3

        digest = blake3(token.encode()).hexdigest()[:32]
        return f"{self._claims}{okey.rsplit('/', 1)[-1]}/{digest}"

    def _check_open(self) -> None:
        if self._ended:
            raise NotFoundError(f"{self._what()} no longer exists: its ephemeral block ended")

    def _written(self, okeys: Iterable[str]) -> None:
        """After a write: check that the Dict still exists, at most every
        :data:`~jupyter_volume.objects.ALIVE_EVERY` seconds (after every write on a local
        folder; see :class:`~jupyter_volume.objects.AliveCheck`). A handle outlives what
        it names (deleted by another process, or deleted and made again under the same
        name): its writes would land where nobody looks, kept for good. Found gone, what this handle wrote since the last check is
        removed and NotFoundError raised; writes before a check that found it are swept
        by the deletion itself (it removes the config first, then lists the entries)."""
        now = time.monotonic()
        with self._lock:
            self._unchecked.update(okeys)
            if not self._alive.due(now) and len(self._unchecked) < 10_000:
                return
            written = set(self._unchecked)
        if self.store.exists(f"dicts/{self._resolve()['id']}/config"):
            with self._lock:
                self._unchecked -= written
                self._alive.seen(now)
            return
        self.store.delete(sorted(written))
        with self._lock:
            self._unchecked -= written
        raise NotFoundError(
            f"{self._what()} was deleted (by another process, or its ephemeral block "
            "ended): writes through this handle land nowhere; open it again by name"
        )

    def _what(self) -> str:
        return f"Dict {self._name!r}" if self._name else f"ephemeral Dict {self._id}"

    def __repr__(self) -> str:
        if self._name is not None:
            return f"Dict.from_name({self._name!r}, store={self._base.url!r})"
        return f"Dict.from_id({self._id!r}, store={self._base.url!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _unpickle_dict,
            (self._base.url, self.environment_name, self._name, self._id, self._create_if_missing),
        )

    __hash__ = object.__hash__  # by identity: handles can be keys and values

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if isinstance(other, Dict) and (self.store.url, self.object_id) == (
            other.store.url,
            other.object_id,
        ):
            return True  # one Dict (and no endless recursion when it holds itself)
        if not isinstance(other, Mapping):
            return NotImplemented
        # Keys are told apart by their pickles (1, 1.0 and True are three keys here) and
        # a plain dict folds them into one: equal only with as many entries on each side.
        ours, theirs = builtins.list(self.items()), builtins.list(other.items())
        return len(ours) == len(theirs) and dict(ours) == dict(theirs)

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    @aio
    def hydrate(self) -> Dict:
        """Look the Dict up now (creating it if ``create_if_missing`` was given); return
        self. Raises NotFoundError if it does not exist."""
        self._resolve()
        return self

    @aio
    def info(self) -> DictInfo:
        """Name, id, creation time (UTC) and creator of the Dict."""
        r = self._resolve()
        return DictInfo(
            r.get("name"),
            r["id"],
            datetime.fromtimestamp(float(r["created_at"]), tz=UTC),
            r.get("created_by", ""),
        )

    # -- encoding ------------------------------------------------------------------
    def _key_object(self, key: Any) -> tuple[bytes, str]:
        enc = _key_bytes(key)
        return enc, self._prefix + _entry_name(enc)

    def _encode(self, key: Any, value: Any) -> tuple[str, bytes]:
        """The object key and bytes of one entry, carrying one fresh random write id (no
        two writes are the same bytes, so each version has a token of its own: pops
        claim versions by token, creates settle lost answers by bytes); every check
        happens here, before any write."""
        enc, okey = self._key_object(key)
        pickled = _pickle(value, f"the value for key {_repr(key)}")
        if len(pickled) > MAX_VALUE_SIZE:
            raise InvalidError(
                f"the value for key {_repr(key)} is {len(pickled):,} bytes pickled, over the "
                f"Dict limit of {MAX_VALUE_SIZE:,} bytes (100 MiB): store it in a Volume"
            )
        return okey, _pack(enc, pickled, [os.urandom(_WRITE_ID_BYTES)])

    def _load_value(self, blob: bytes, key: Any = _NO_DEFAULT) -> Any:
        try:
            enc, body = _unpack(blob)
        except Exception as e:  # noqa: BLE001 - any damage means the same thing here
            raise DeserializationError(
                f"a value in {self._what()} is damaged ({e}): it was not written by a Dict"
            ) from e
        if key is _NO_DEFAULT:
            key = self._load_key(enc)
        try:
            return pickle.loads(body)
        except ModuleNotFoundError as e:
            raise DeserializationError(
                f"cannot unpickle the value for key {_repr(key)} from {self._what()}: module "
                f"{e.name!r} is not installed here (install it, at the writer's version)"
            ) from e
        except Exception as e:  # noqa: BLE001 - unpickling raises anything
            raise DeserializationError(
                f"cannot unpickle the value for key {_repr(key)} from {self._what()}: "
                f"{type(e).__name__}: {e}"
            ) from e

    def _load_key(self, enc: bytes) -> Any:
        try:
            return _decode_key(enc)
        except ModuleNotFoundError as e:
            raise DeserializationError(
                f"cannot unpickle a key from {self._what()}: module {e.name!r} is not "
                "installed here"
            ) from e
        except Exception as e:  # noqa: BLE001
            raise DeserializationError(
                f"cannot decode a key from {self._what()}: {type(e).__name__}: {e}"
            ) from e

    # -- reading -------------------------------------------------------------------
    @aio
    def get(self, key: Any, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` when it is missing."""
        _, okey = self._key_object(key)
        try:
            blob = self.store.get(okey)
        except NotFoundError:
            return default
        return self._load_value(blob, key)

    def __getitem__(self, key: Any) -> Any:
        value = self.get(key, _NO_DEFAULT)
        if value is _NO_DEFAULT:
            raise KeyError(key)
        return value

    @aio
    def contains(self, key: Any) -> bool:
        """Whether ``key`` is present (one metadata request)."""
        _, okey = self._key_object(key)
        return self.store.exists(okey)

    def __contains__(self, key: object) -> bool:
        try:
            return self.contains(key)
        except InvalidError:
            return False  # an unhashable key is in no Dict

    @aio
    def len(self) -> int:
        """The number of entries (one listing; no entry is read)."""
        return sum(1 for _ in self.store.list(self._prefix))

    def __len__(self) -> int:
        return self.len()

    def _names(self) -> Iterator[str]:
        prefix = self._prefix
        for info in self.store.list(prefix):
            yield info.key[len(prefix) :]

    def _iter_keys(self) -> Iterator[Any]:
        prefix = self._prefix
        for name in self._names():
            enc = _name_to_enc(name)
            if enc is None:  # named by digest: the key is inside the entry
                try:
                    enc, _ = _unpack(self.store.get(prefix + name))
                except NotFoundError:
                    continue  # deleted while we listed
            yield self._load_key(enc)

    def __iter__(self) -> Iterator[Any]:
        return self._iter_keys()

    def _iter_items(self) -> Iterator[tuple[Any, Any]]:
        """(key, value) of every entry; entries are fetched by a pool, in listing order."""
        for key, value, error in self._iter_entries():
            if error is not None:
                raise error
            yield key, value

    def _iter_entries(
        self, limit: int | None = None
    ) -> Iterator[tuple[Any, Any, DeserializationError | None]]:
        """``(key, value, None)`` of every entry (the first ``limit`` listed, if given:
        no more are read), or ``(key, None, error)`` for one that cannot be read here
        (its key is :data:`UNREADABLE_KEY` if that cannot be read either): a listing
        that shows every other entry all the same."""
        prefix = self._prefix
        names = self._names()
        left = limit
        while True:
            size = PARALLEL * 8 if left is None else min(PARALLEL * 8, left)
            batch = [prefix + n for _, n in zip(range(size), names, strict=False)]
            if not batch:
                return
            if left is not None:
                left -= len(batch)
            for blob in self.store.get_many(batch):
                if blob is None:
                    continue  # deleted while we listed
                try:
                    enc, _ = _unpack(blob)
                except ValueError:
                    enc = b""
                key: Any = UNREADABLE_KEY
                try:
                    key = self._load_key(enc)
                    value = self._load_value(blob, key)
                except DeserializationError as e:
                    yield key, None, e
                    continue
                yield key, value, None

    @aio(kind="iter")
    def keys(self) -> _KeysView:
        """A view of the keys: lazy, iterable any number of times (each time one listing)."""
        return _KeysView(self)

    @aio(kind="iter")
    def values(self) -> _ValuesView:
        """A view of the values: lazy; each iteration lists and reads the entries."""
        return _ValuesView(self)

    @aio(kind="iter")
    def items(self) -> _ItemsView:
        """A view of the (key, value) pairs: lazy; each iteration lists and reads."""
        return _ItemsView(self)

    def _scan(
        self, *, after: str | None = None, limit: int = 100, preview: int = 200
    ) -> tuple[builtins.list[dict[str, Any]], str | None]:
        """One page of entries for browsing (the REST API): ``(rows, next)``.

        Each row: ``id`` (the entry's object name, stable while the key exists), ``key``
        (its repr), ``value`` (its repr, cut at ``preview`` characters; for an entry over
        :data:`PREVIEW_MAX_BYTES`, only its size, and ``type`` empty: it is not read), ``type``,
        ``size`` (bytes stored), ``updated`` (epoch seconds, the store's stamp) and
        ``error`` (why the value could not be read here, else None). ``next`` is the
        ``after`` of the following page, or None at the end.
        """
        prefix = self._prefix
        start = prefix + after if after else None
        infos = []
        for info in self.store.list(prefix, start_after=start):
            infos.append(info)
            if len(infos) > limit:
                break
        more = len(infos) > limit
        infos = infos[:limit]

        # a value is read (whole: it must be unpickled) only when small enough to
        # preview; a page of big values would otherwise load them all into memory
        small = [i.key for i in infos if i.size <= PREVIEW_MAX_BYTES]
        blobs = dict(zip(small, self.store.get_many(small), strict=True))
        rows = []
        for info in infos:
            row: dict[str, Any] = {
                "id": info.key[len(prefix) :],
                "size": info.size,
                "updated": info.mtime,
                "error": None,
            }
            try:
                if info.key in blobs:
                    blob = blobs[info.key]
                    if blob is None:
                        continue  # deleted while we listed
                    enc, _ = _unpack(blob)
                else:
                    blob = None
                    enc = self._header_key(info.key)
                    if enc is None:
                        continue  # deleted while we listed
                key = self._load_key(enc)
                row["key"] = _repr(key, None)
                if blob is None:
                    row.update(value=f"(not previewed: {info.size:,} bytes)", type="")
                    rows.append(row)
                    continue
                value = self._load_value(blob, key)
            except (DeserializationError, ValueError) as e:
                row.setdefault("key", "?")
                row.update(value="", type="", error=str(e))
            else:
                row.update(value=_repr(value, preview), type=type(value).__name__)
            rows.append(row)
        return rows, (infos[-1].key[len(prefix) :] if more and infos else None)

    def _header_key(self, okey: str) -> bytes | None:
        """The key encoding of entry object ``okey`` without reading its value: from its
        name, or from the entry's header (two ranged reads). None if it is gone."""
        enc = _name_to_enc(okey.rsplit("/", 1)[-1])
        if enc is not None:
            return enc
        try:
            head = self.store.get_range(okey, 0, 9)
            if head[:4] != _MAGIC or len(head) < 9:
                raise ValueError("not a Dict entry")
            return self.store.get_range(okey, 9, int.from_bytes(head[5:9], "big"))
        except NotFoundError:
            return None

    def _delete_entry(self, entry_id: str) -> None:
        """Delete the entry whose object name is ``entry_id`` (from :meth:`_scan`);
        NotFoundError when there is none."""
        if not isinstance(entry_id, str) or not entry_id.isalnum():
            raise InvalidError(f"invalid Dict entry id {entry_id!r}")
        key = self._prefix + entry_id
        if not self.store.exists(key):
            raise NotFoundError(f"no entry {entry_id!r} in {self._what()}")
        self.store.delete([key])

    # -- writing -------------------------------------------------------------------
    @aio
    def put(self, key: Any, value: Any, *, skip_if_exists: bool = False) -> bool:
        """Set ``key`` to ``value``; True when written.

        With ``skip_if_exists`` the write happens only if the key is missing, atomically
        across processes and machines (exactly one of several racing writers gets True).

        Raises:
            InvalidError: unhashable key, unpicklable or oversized value (nothing is
                written then).
        """
        self._check_open()
        okey, blob = self._encode(key, value)
        if skip_if_exists:
            # The entry's random write id makes these bytes ours alone: a create whose
            # attempt failed unseen (a 500, a dropped connection) and whose retry finds
            # the key settles by reading it back, and another writer's create of the
            # same value would otherwise pass for ours (two writers told they won).
            written = self.store.put_if_absent(okey, blob)
            if not written:
                # a create that landed with its answer lost, and that an incr built on
                # before the retry: the store compares bytes and finds the sum, yet the
                # entry still carries this create's write id
                try:
                    written = _carries(self.store.get(okey), blob)
                except NotFoundError:
                    pass
        else:
            self.store.put(okey, blob)
            written = True
        if written:
            self._written([okey])
        return written

    def __setitem__(self, key: Any, value: Any) -> None:
        self.put(key, value)

    def _take(self, key: Any) -> bytes | None:
        """Remove ``key``'s entry and return its stored bytes (None: there was none).

        Exactly once, also when answers are lost: the version read is first claimed
        (a create-only claim object, see the module docstring), and only the claim's
        holder returns it; the entry is then deleted if it is still that version, so a
        value put meanwhile stays. A version another pop has claimed is absent: its
        delete is finished here (that pop may have stopped before it) and the key read
        again."""
        _, okey = self._key_object(key)
        while True:
            asked_at = _lease_clock()
            try:
                blob, token = self.store.get_versioned(okey)
            except NotFoundError:
                return None
            claim = self._claim_key(okey, token)
            if _lease_clock() - asked_at > CLAIM_KEEP / 4:
                # stalled since the read (a stopped process, a store that kept failing):
                # another pop's claim on this version may be swept by now, so ours could
                # be made again: read afresh instead
                continue
            # the claimed version's write ids: an incr whose write landed unheard in
            # it finds its own number here once the entry is gone (_popped_with)
            ids = [i.hex() for i in _write_ids(blob)]
            body = json.dumps({"claim": os.urandom(16).hex(), "version": token, "ids": ids})
            body = body.encode()
            if self.store.put_if_absent(claim, body):
                if _lease_clock() - asked_at > CLAIM_KEEP / 4 and not self._still(okey, token):
                    # stalled after the check above (a stopped process, a claim whose
                    # retries took long): an earlier claim on this version may have
                    # been swept, making ours new again. A sweep deletes the version
                    # before its claim, so the version still there now is proof that
                    # no claim before ours was swept; gone or replaced, it is not ours
                    # (and our claim on a version no longer current blocks nothing)
                    continue
                if not self._end_owned(okey, token, blob):
                    continue
                self._sweep_claims_now_and_then()
                return blob
            # another pop claimed this version (in flight, or it stopped before its
            # delete): finish that delete for it, then read again
            self.store.delete_if_match(okey, token)

    def _end_owned(self, okey: str, token: str, blob: bytes) -> bool:
        """Delete entry ``okey`` if it is still the version ``token`` (bytes ``blob``)
        this pop claimed; False if it turned out not to be ours after all.

        An ``incr`` that read the version before the claim (claims are not its
        concern) may have replaced it since with a sum that counts the claimed value:
        then the value lives on in that sum, and returning it too would count it twice.
        That newer version carries the claimed one's newest write id in its history;
        when it does, the pop takes that version instead (the incr came first). Any
        other newer version (a put) stays, as a put after the pop.

        A delete that failed is settled by reading the entry: still our version, the
        value is ours and the entry stays visible until the next pop of its key, or the
        claim sweep, removes it (logged). When that read fails too, whether an incr took
        the value into its sum cannot be told, so the pop raises: a value is never
        handed out twice (like any operation whose answer is lost, it may have been
        taken; the claim sweep removes a version left claimed)."""
        failed: VolumeError | None = None
        try:
            if self.store.delete_if_match(okey, token):
                return True
        except NotFoundError:
            return True  # deleted by a pop that found our claim (it finishes our delete)
        except VolumeError as e:
            failed = e
        try:
            now, now_token = self.store.get_versioned(okey)
        except NotFoundError:
            return True  # deleted: by our failed delete, or by a pop finishing it
        except VolumeError as e:
            raise e from failed
        if now_token == token:  # our delete did not land: the value is ours all the same
            log.warning(
                "popped a value from %s but could not delete its entry (it stays visible "
                "until the next pop of its key, or the claim sweep, removes it)",
                self._what(),
                exc_info=failed,
            )
            return True
        ids = _write_ids(blob)
        return not (ids and ids[0] in _write_ids(now))

    def _popped_with(self, okey: str, sent: dict[bytes, int]) -> int | None:
        """The value of the write in ``sent`` (an incr's write ids) that a pop of entry
        ``okey`` took away, if one did (the claims name the versions they popped, with
        their write ids); None otherwise."""
        prefix = f"{self._claims}{okey.rsplit('/', 1)[-1]}/"
        for info in self.store.list(prefix):
            if info.key.endswith(".ended"):
                continue
            try:
                ids = json.loads(self.store.get(info.key)).get("ids") or []
            except (NotFoundError, ValueError, AttributeError):
                continue  # swept meanwhile, or a claim of an older client
            for i in ids:
                try:
                    wid = bytes.fromhex(i)
                except (TypeError, ValueError):
                    continue
                if wid in sent:
                    return sent[wid]
        return None

    def _still(self, okey: str, token: str) -> bool:
        """True if entry ``okey`` is version ``token`` now (one read)."""
        try:
            return self.store.get_versioned(okey)[1] == token
        except NotFoundError:
            return False

    def _sweep_claims_now_and_then(self) -> None:
        """After about one pop in :data:`CLAIM_SWEEP_ODDS` (and not within
        :data:`CLAIM_SWEEP_EVERY` seconds of this handle's last sweep): sweep old
        claims. Never fails the pop that called it."""
        now = _lease_clock()
        with self._lock:
            if random.randrange(CLAIM_SWEEP_ODDS) or now < self._next_sweep:
                return
            self._next_sweep = now + CLAIM_SWEEP_EVERY
        try:
            self._sweep_claims()
        except VolumeError:
            log.debug("claim sweep of %s failed; the next one retries", self._what(), exc_info=True)

    def _sweep_claims(self, keep: float | None = None) -> int:
        """Remove the claims whose version ended more than ``keep`` seconds ago
        (default :data:`CLAIM_KEEP`), by the store's clock; how many.

        Two passes, a keep apart. A claim older than ``keep`` is first *ended*: the
        entry version it names is deleted if still there (a pop that stopped between
        its claim and its delete, or whose delete failed, left it), and then an end
        mark (``<claim>.ended``, empty) is written. Only once that mark is older than
        ``keep`` do claim and mark go. Removing the claim in the pass that ended its
        version would let a pop that read the version just before, and claims just
        after, claim it again with no stall at all (its claim is new, its read young:
        it would trust it); with the mark, such a pop's read is older than ``keep``
        when its claim can succeed, and it looks again before owning anything. With a
        negative ``keep`` (tests: every claim counts as old) both passes run at once."""
        keep = CLAIM_KEEP if keep is None else keep
        prefix, entries = self._claims, self._prefix
        infos = builtins.list(self.store.list(prefix))
        if not infos:
            return 0
        now = store_now(self.store)
        marks = {
            i.key[: -len(_ENDED)]: now - i.mtime > keep for i in infos if i.key.endswith(_ENDED)
        }
        claims = {i.key for i in infos if not i.key.endswith(_ENDED)}
        old = [i.key for i in infos if i.key in claims and now - i.mtime > keep]
        doomed = [k for k in old if marks.get(k)]
        doomed += [k + _ENDED for k, old_mark in marks.items() if old_mark]

        def end(ckey: str) -> bool:
            """End the version claim ``ckey`` names; True if the claim can go now."""
            try:
                token = json.loads(self.store.get(ckey))["version"]
            except NotFoundError:
                return False
            except (ValueError, KeyError, TypeError):
                return True  # not a claim this version wrote: nothing to end
            self.store.delete_if_match(entries + ckey[len(prefix) :].split("/", 1)[0], token)
            self.store.put(ckey + _ENDED, b"")
            return keep < 0

        to_end = [k for k in old if k not in marks]
        if len(to_end) > 1:
            with ThreadPoolExecutor(PARALLEL, thread_name_prefix="dict-sweep") as pool:
                ended = builtins.list(pool.map(end, to_end))
        else:
            ended = [end(k) for k in to_end]
        for ckey, now_too in zip(to_end, ended, strict=True):
            if now_too:
                doomed += [ckey, ckey + _ENDED]
        doomed = sorted(set(doomed))
        for i in range(0, len(doomed), 1000):
            self.store.delete(doomed[i : i + 1000])
        return sum(1 for k in doomed if not k.endswith(_ENDED))

    @aio
    def pop(self, key: Any, default: Any = _NO_DEFAULT) -> Any:
        """Remove ``key`` and return its value; ``default`` (or KeyError) when missing.

        Atomic across processes and machines, also when the network loses answers: of
        several callers popping one key, exactly one gets its value and the others get
        ``default`` (or KeyError), so a Dict can hand out jobs; a value put while the
        pop runs stays for the next one. The entry is removed before its value is
        unpickled: a value that cannot be unpickled here is still removed, and
        DeserializationError raised.
        """
        blob = self._take(key)
        if blob is None:
            if default is _NO_DEFAULT:
                raise KeyError(key)
            return default
        return self._load_value(blob, key)

    def __delitem__(self, key: Any) -> None:
        # removes the entry without unpickling its value: one this environment cannot
        # unpickle can still be deleted by its key
        if self._take(key) is None:
            raise KeyError(key)

    @aio
    def popitem(self) -> tuple[Any, Any]:
        """Remove and return some (key, value) pair; KeyError when the Dict is empty."""
        for key in self._iter_keys():
            value = self.pop(key, _NO_DEFAULT_POP)
            if value is not _NO_DEFAULT_POP:
                return key, value
        raise KeyError(f"popitem(): {self._what()} is empty")

    @aio
    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        """Set many entries: from a mapping, an object with ``keys()``, pairs, or keywords
        (``other`` may be None, as in Modal).

        Every key and value is checked and pickled before the first write. The writes
        then go out in parallel and are not one transaction: if the store fails midway,
        some entries may have been written (the error says how many).
        """
        if other is None:
            pairs = []  # Modal's signature: update(other: Mapping | None = None, /, **kw)
        elif isinstance(other, Mapping):
            pairs = list(other.items())
        elif hasattr(other, "keys"):
            pairs = [(k, other[k]) for k in other.keys()]  # noqa: SIM118 - the keys() protocol
        else:
            pairs = []
            for i, pair in enumerate(other):
                try:
                    k, v = pair
                except (TypeError, ValueError):
                    raise InvalidError(
                        f"Dict.update: element #{i} of the sequence is not a (key, value) pair"
                    ) from None
                pairs.append((k, v))
        pairs.extend(kwargs.items())
        self._check_open()
        encoded: dict[str, bytes] = {}
        for k, v in pairs:
            okey, blob = self._encode(k, v)
            encoded[okey] = blob  # a later pair for the same key wins, as in dict.update
        done = 0
        lock = threading.Lock()

        def write(item: tuple[str, bytes]) -> None:
            nonlocal done
            self.store.put(*item)
            with lock:
                done += 1

        try:
            if len(encoded) <= 1:
                for item in encoded.items():
                    write(item)
            else:
                with ThreadPoolExecutor(PARALLEL, thread_name_prefix="dict-put") as pool:
                    builtins.list(pool.map(write, encoded.items()))
        except VolumeError as e:
            # the same kind of error (so callers' except clauses still match), saying
            # how far the update got: its entries are not one transaction
            raise type(e)(
                f"Dict.update of {self._what()} failed after writing {done} of "
                f"{len(encoded)} entries: {e}"
            ) from e
        self._written(encoded)

    @aio
    def clear(self) -> None:
        """Remove every entry (locks are kept)."""
        delete_prefix(self.store, self._prefix)

    @aio
    def setdefault(self, key: Any, default: Any = None) -> Any:
        """The value of ``key``; if missing, set it to ``default`` atomically first (of
        several racing callers, one writes and all get that writer's value)."""
        self._check_open()
        okey, blob = self._encode(key, default)
        while True:
            if self.store.put_if_absent(okey, blob):
                self._written([okey])
                return default
            try:
                current = self.store.get(okey)
            except NotFoundError:
                continue  # deleted in between: try to create it again
            if _carries(current, blob):  # our create after all (see put)
                self._written([okey])
                return default
            return self._load_value(current, key)

    @aio
    def incr(self, key: Any, amount: int = 1) -> int:
        """Add ``amount`` to the integer under ``key`` atomically and return the result.

        A missing key starts from 0. Safe across processes and machines (an optimistic
        loop on the store's conditional write).

        Raises:
            InvalidError: ``amount`` or the stored value is not an integer.
        """
        if not isinstance(amount, int) or isinstance(amount, bool):
            raise InvalidError(f"incr amount must be an int, got {type(amount).__name__}")
        self._check_open()
        enc, okey = self._key_object(key)
        sent: dict[bytes, int] = {}  # the id of each write this call sent -> its value
        attempt = 0
        while True:
            try:
                blob, token = self.store.get_versioned(okey)
            except NotFoundError:
                blob, token = None, ""
            prior = _write_ids(blob) if blob is not None else []
            if sent:
                # an earlier write of ours may have landed with its answer lost (and
                # others since on top of it): then it counted, and must not again
                ours = [sent[i] for i in prior if i in sent]
                if ours:
                    self._written([okey])
                    return ours[0]
                if blob is None:
                    # gone: a pop may have taken a version our write landed in unheard
                    # (its claim names the version's write ids), which then counted
                    popped = self._popped_with(okey, sent)
                    if popped is not None:
                        self._written([okey])
                        return popped
            write_id = os.urandom(_WRITE_ID_BYTES)
            if blob is None:
                sent[write_id] = amount
                if self.store.put_if_absent(
                    okey, _pack(enc, _pickle(amount, "amount"), [write_id])
                ):
                    self._written([okey])
                    return amount
                continue
            current = self._load_value(blob, key)
            if not isinstance(current, int) or isinstance(current, bool):
                raise InvalidError(
                    f"cannot incr key {_repr(key)} of {self._what()}: its value is a "
                    f"{type(current).__name__}, not an int"
                )
            new = current + amount
            sent[write_id] = new
            ids = [write_id, *prior][:INCR_HISTORY]
            if self.store.put_if_match(okey, _pack(enc, _pickle(new, "value"), ids), token):
                self._written([okey])
                return new
            attempt += 1
            time.sleep(random.uniform(0, min(0.2, 0.002 * 2 ** min(attempt, 7))))

    # -- locks ---------------------------------------------------------------------
    @aio(kind="context")
    def lock(self, name: str, *, lease: float = 30.0, timeout: float | None = None) -> DictLock:
        """A mutual-exclusion lock named ``name``, across processes and machines.

        ``with d.lock("x"):`` waits until the lock is free (at most ``timeout`` seconds,
        then TimeoutError), holds it while the block runs (a thread renews it every
        ``lease / 3`` seconds, at most 4 times a second) and frees it at the end. If the
        holder dies, the lock is free again once ``lease`` seconds passed since its last
        renewal, by the store's clock. Locks live apart from the entries (never in ``keys()`` or ``len()``).

        Example::

            with d.lock("counter", lease=10, timeout=60):
                d["n"] = d.get("n", 0) + 1
        """
        if not isinstance(name, str) or not name:
            raise InvalidError(f"lock name must be a non-empty string, got {name!r}")
        if not valid_ttl(lease):
            raise InvalidError(
                "lock lease must be a positive, finite number of seconds (at most "
                f"{MAX_TTL:.3g}), got {lease!r}"
            )
        if timeout is not None and (not _seconds(timeout) or timeout < 0):
            raise InvalidError(
                f"lock timeout must be None or a number of seconds (0 or more), got {timeout!r}"
            )
        self._check_open()
        enc = _key_bytes(name)
        return DictLock(
            self, f"dicts/{self._resolve()['id']}/locks/{_entry_name(enc)}", name, lease, timeout
        )


_NO_DEFAULT_POP: Any = object()


def _lease_clock() -> float:
    """Seconds on a clock that keeps counting while this process is stopped or the
    machine sleeps (Linux's CLOCK_BOOTTIME; the monotonic clock elsewhere): the store's
    clock, which judges leases, keeps counting then too."""
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    if boottime is not None:
        return time.clock_gettime(boottime)
    return time.monotonic()


def _seconds(x: object) -> bool:
    """True for a real number of seconds (an int or float, not a bool, not NaN)."""
    return isinstance(x, int | float) and not isinstance(x, bool) and x == x


def _unpickle_dict(
    url: str, env: str, name: str | None, dict_id: str | None, create: bool = False
) -> Dict:
    base, env, _ = _open(url, env, create=True)  # no look at the store while unpickling
    return Dict(
        _store=base,
        _env=env,
        _name=name,
        _id=dict_id if name is None else None,
        _create=create and name is not None,
    )


class _KeysView(KeysView[Any]):
    def __init__(self, d: Dict) -> None:
        super().__init__(d)

    def __repr__(self) -> str:
        return f"dict_keys({builtins.list(self)!r})"


class _ValuesView(ValuesView[Any]):
    def __init__(self, d: Dict) -> None:
        super().__init__(d)

    def __iter__(self) -> Iterator[Any]:
        for _, v in self._mapping._iter_items():  # type: ignore[attr-defined]
            yield v

    def __repr__(self) -> str:
        return f"dict_values({builtins.list(self)!r})"


class _ItemsView(ItemsView[Any, Any]):
    def __init__(self, d: Dict) -> None:
        super().__init__(d)

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        return self._mapping._iter_items()  # type: ignore[attr-defined,no-any-return]

    def __repr__(self) -> str:
        return f"dict_items({builtins.list(self)!r})"


class _LockLease(Lease):
    """The renewal of a held lock: a conditional write of a new payload, so a holder
    whose lock was taken over (after it failed to renew for a whole lease) notices."""

    def __init__(
        self,
        store: Store,
        key: str,
        ttl: float,
        owner: dict[str, Any],
        token: str,
        renewed_at: float,
    ):
        super().__init__(store, key, ttl=ttl)
        self.owner = owner
        self.token = token
        #: :func:`_lease_clock` when the last write that kept the lock was sent: the
        #: store stamped it later, so nobody may take the lock before ``renewed_at + ttl``
        self.renewed_at = renewed_at
        self.writes = 0  # the acquisition wrote "n": 0

    def _body(self) -> bytes:
        # every write's bytes differ (the counter; a failed one's too), so its token does
        # too: a waiter that read an older version can never steal with it
        self.writes += 1
        return _dump({**self.owner, "n": self.writes})

    def renew(self) -> bool:
        sent = _lease_clock()
        token = self.store.put_if_match(self.key, self._body(), self.token)
        if token is None:
            # An earlier renewal may have landed with its answer lost and its call then
            # failed (retries exhausted): the object is newer than our token, yet ours
            # while it carries our owner id (whoever takes a lock over writes their own).
            current = self._current_if_ours()
            if current is None:
                return False
            token = self.store.put_if_match(self.key, self._body(), current)
            if token is None:
                return False
        self.token = token
        self.renewed_at = sent
        return True

    def _current_if_ours(self) -> str | None:
        """The lock object's version token if it is still this holder's, else None."""
        return _held_by(self.store, self.key, self.owner["owner"])


def _held_by(store: Store, key: str, owner: str) -> str | None:
    """The version token of lock object ``key`` if it carries ``owner``, else None."""
    try:
        data, token = store.get_versioned(key)
    except NotFoundError:
        return None
    try:
        holder = json.loads(data)
    except ValueError:
        return None
    if isinstance(holder, dict) and holder.get("owner") == owner:
        return token
    return None


class DictLock:
    """A lock of a Dict (see :meth:`Dict.lock`); a context manager, also usable with
    :meth:`acquire` and :meth:`release`. :attr:`lost` turns True if the lock was taken
    over while held (its renewals failed for a whole lease)."""

    #: Seconds between attempts while waiting (grows to ``max_poll`` with jitter).
    min_poll = 0.02
    max_poll = 0.25

    def __init__(self, d: Dict, key: str, name: str, lease: float, timeout: float | None) -> None:
        self.dict = d
        self.store = d.store
        self.key = key
        self.name = name
        self.lease = float(lease)
        self.timeout = timeout
        self._renewer: _LockLease | None = None
        #: the renewal of a hold whose release raised: what a retry of it frees
        self._unreleased: _LockLease | None = None

    @property
    def held(self) -> bool:
        """Whether this process holds the lock now: False once a whole lease passed
        since its last renewal (the process was stopped, or its renewal thread starved
        or failing), as another process may have taken it by then, even before
        :attr:`lost` can tell."""
        r = self._renewer
        return (
            r is not None
            and not r.lost
            and not self._dict_ended()
            and _lease_clock() - r.renewed_at < self.lease
        )

    @property
    def lost(self) -> bool:
        """True when the lock was taken over by another holder while this one held it."""
        return self._renewer is not None and self._renewer.lost

    def _owner(self) -> dict[str, Any]:
        return {
            "owner": uuid.uuid4().hex,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "lease": self.lease,
        }

    def acquire(self) -> DictLock:
        """Wait for the lock and take it; TimeoutError after ``timeout`` seconds."""
        if self._renewer is not None:
            if not self._renewer.lost:
                raise InvalidError(f"lock {self.name!r} is already held by this handle")
            self._renewer = None  # taken over meanwhile (its thread has ended): wait anew
        if self._unreleased is not None:  # a release that raised: free it first, if ours
            self._free_if_ours(self._unreleased.owner["owner"])
            self._unreleased = None
        owner = self._owner()
        body = _dump({**owner, "n": 0})
        start = time.monotonic()
        delay = self.min_poll
        seen: str | None = None  # the holder's version we last judged
        recheck_at = 0.0  # when (monotonic) that version may have expired
        while True:
            if self._dict_ended():  # an ephemeral Dict whose block ended has no locks
                self.dict._check_open()
            sent = _lease_clock()
            try:
                token = self._try_take(body, seen, recheck_at)
            except BaseException:
                # a write of this attempt may have landed with its answer lost: a lock
                # taken by an acquire that raises would stay taken a whole lease
                self._free_if_ours(owner["owner"])
                raise
            if isinstance(token, str) and token.startswith("ok:"):
                self._check_dict(token[3:])
                self._renewer = _LockLease(self.store, self.key, self.lease, owner, token[3:], sent)
                self._renewer._start_thread()
                return self
            if isinstance(token, tuple):
                seen, recheck_at = token
                delay = self.min_poll
            waited = time.monotonic() - start
            if self.timeout is not None and waited >= self.timeout:
                raise TimeoutError(
                    f"could not take lock {self.name!r} of {self.dict._what()} within "
                    f"{self.timeout:g} s: another process holds it"
                )
            pause = random.uniform(delay / 2, delay)
            if self.timeout is not None:
                pause = min(pause, max(0.0, self.timeout - waited))
            time.sleep(pause)
            delay = min(self.max_poll, delay * 2)

    def _dict_ended(self) -> bool:
        """Whether the lock's Dict is an ephemeral one whose block ended (other owners,
        a network file system's locks, end otherwise)."""
        return isinstance(self.dict, Dict) and self.dict._ended

    def _check_dict(self, token: str) -> None:
        """After taking the lock: NotFoundError if its Dict is gone (an ephemeral block
        ended meanwhile, or another process deleted it), with the lock object just made
        removed: under a deleted Dict nothing would ever remove it."""
        if not isinstance(self.dict, Dict):
            return
        try:
            self.dict._check_open()
            self.dict._written([self.key])  # (removes it itself when it finds the Dict gone)
        except NotFoundError:
            with contextlib.suppress(Exception):
                self.store.delete_if_match(self.key, token)
            raise
        except BaseException:
            # the check failed (the store, say): the acquire raises, so no handle will
            # ever release what it took; free it now rather than a lease later
            with contextlib.suppress(Exception):
                self.store.put_if_match(self.key, _FREE, token)
            raise

    def _free_if_ours(self, owner: str) -> None:
        """Best effort: free the lock if its object carries ``owner``."""
        with contextlib.suppress(Exception):
            token = _held_by(self.store, self.key, owner)
            if token is not None:
                self.store.put_if_match(self.key, _FREE, token)

    def _try_take(self, body: bytes, seen: str | None, recheck_at: float) -> Any:
        """One attempt: ``"ok:<token>"`` when taken; ``(version, recheck_at)`` after
        judging a new holder version; None to wait and try again."""
        s = self.store
        token = s.put_if_absent_versioned(self.key, body)  # (the token from the write itself)
        if token is not None:
            return "ok:" + token
        try:
            data, token = s.get_versioned(self.key)
        except NotFoundError:
            return None  # released and deleted in between: try to create it again
        try:
            holder = json.loads(data)
        except ValueError:
            holder = {}
        if holder.get("free"):
            taken = s.put_if_match(self.key, body, token)
            return "ok:" + taken if taken else None
        if token == seen and time.monotonic() < recheck_at:
            return None  # the same version as last time, and it cannot have expired yet
        # Judge this version by the store's clock. The stat comes after the read, so it
        # shows this version's stamp or a newer one: never an expiry too early.
        try:
            stamp = s.stat(self.key).mtime
        except NotFoundError:
            return None
        now = store_now(s)
        holder_lease = float(holder.get("lease", self.lease))
        left = stamp + holder_lease + CLOCK_SLACK - now
        if left < 0:
            taken = s.put_if_match(self.key, body, token)  # steal: only from this version
            return "ok:" + taken if taken else None
        return token, time.monotonic() + left

    def release(self) -> None:
        """Stop renewing and free the lock (if it is still ours).

        If freeing it fails (the store's error is raised), the lock is no longer
        :attr:`held` and renewals stay stopped, so it frees itself a lease later;
        ``release()`` may be called again to free it now."""
        renewer = self._renewer or self._unreleased
        self._renewer, self._unreleased = None, renewer
        if renewer is None:
            return
        renewer.stop(delete=False)
        if not renewer.lost:
            # a conditional write: frees it only if nobody took it over meanwhile
            if self.store.put_if_match(self.key, _FREE, renewer.token) is None:
                # a renewal that landed unheard left a newer version, still ours
                current = renewer._current_if_ours()
                if current is not None:
                    self.store.put_if_match(self.key, _FREE, current)
        self._unreleased = None

    def __enter__(self) -> DictLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "held" if self.held else ("lost" if self.lost else "not held")
        return f"<DictLock {self.name!r} of {self.dict._what()}, lease {self.lease:g} s, {state}>"
