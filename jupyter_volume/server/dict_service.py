"""What the REST API does with Dicts, without any HTTP (see :mod:`.engine` for volumes).

Every function takes the store and returns JSON-ready data; failures are
:mod:`jupyter_volume.errors` exceptions that the handlers turn into HTTP codes.

Layer: a front end; imports ``dicts``, ``errors`` and ``formatting``, never Tornado.
"""

from __future__ import annotations

from typing import Any

from ..dicts import Dict, check_dict_name
from ..errors import InvalidError
from ..formatting import iso_time
from ..store import Store

__all__ = ["MAX_ENTRIES_PAGE", "clear", "delete_entry", "entries", "list_dicts"]

#: The most entries one page may hold (``limit``), and the default.
MAX_ENTRIES_PAGE = 1000
DEFAULT_ENTRIES_PAGE = 100


def list_dicts(store: Store) -> dict[str, Any]:
    """Every named Dict of the store, newest first: name, id, created_at, created_by."""
    out = []
    for d in Dict.objects.list(store=store):
        info = d.info()
        out.append(
            {
                "name": info.name,
                "id": info.id,
                "created_at": iso_time(info.created_at),
                "created_by": info.created_by,
            }
        )
    return {"dicts": out}


def entries(store: Store, name: str, after: str | None, limit: int | None) -> dict[str, Any]:
    """One page of Dict ``name``'s entries in key order: ``{"entries", "next"}``.

    Each entry: id, key (repr), value (repr, cut), type, size, updated (ISO 8601) and
    error (why the value cannot be read here, else null). Pass ``next`` as ``after`` for
    the following page; it is null on the last one.
    """
    limit = DEFAULT_ENTRIES_PAGE if limit is None else limit
    if not 1 <= limit <= MAX_ENTRIES_PAGE:
        raise InvalidError(f"limit must be between 1 and {MAX_ENTRIES_PAGE}, got {limit}")
    if after is not None and not after.isalnum():
        raise InvalidError(f"invalid 'after' {after!r}: pass the 'next' of the previous page")
    d = Dict.from_name(check_dict_name(name), store=store)
    rows, nxt = d._scan(after=after or None, limit=limit)
    for row in rows:
        row["updated"] = iso_time(row["updated"])
    return {"entries": rows, "next": nxt}


def delete_entry(store: Store, name: str, entry_id: str) -> None:
    """Delete one entry of Dict ``name`` by its id (from :func:`entries`)."""
    Dict.from_name(check_dict_name(name), store=store)._delete_entry(entry_id)


def clear(store: Store, name: str) -> None:
    """Remove every entry of Dict ``name`` (NotFoundError if there is no such Dict)."""
    d = Dict.from_name(check_dict_name(name), store=store)
    d.info()
    d.clear()
