"""What the groups of the three object kinds (``volumes``, ``dicts``, ``nfs``) share: the
table of objects a ``list`` shows, the ``delete`` that asks first, and the parsing of an
action's own arguments for the groups whose first argument is the action.

Layer: a helper of the command groups; imports nothing from the API layers.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from ..errors import NotFoundError
from ..formatting import local_time
from .context import Context
from .exits import CommandError, HelpShown
from .render import Column, Message, Table
from .routing import _Parser

__all__ = ["created_row", "created_table", "delete_asking_first", "parse_action"]


def created_row(info: Any) -> dict[str, Any]:
    """The row of :func:`created_table` for an object's ``info()`` (a VolumeInfo or
    DictInfo: its name, creation time and creator)."""
    return {"name": info.name, "created_at": info.created_at, "created_by": info.created_by}


def created_table(rows: list[dict[str, Any]], *, title: str, empty: str) -> Table:
    """A table of objects by name, when they were created and by whom (rows with the keys
    ``name``, ``created_at`` and ``created_by``)."""
    return Table(
        [
            Column("name", "Name"),
            Column("created_at", "Created at", local_time),
            Column("created_by", "Created by"),
        ],
        rows,
        title=title,
        empty=empty,
    )


def delete_asking_first(
    ctx: Context,
    *,
    kind: str,
    name: str,
    store_url: str,
    losing: str,
    allow_missing: bool,
    yes: bool,
    lookup: Callable[[], object],
    delete: Callable[[], object],
) -> Message:
    """Delete object ``name`` of ``kind`` (e.g. "volume") after asking, unless ``yes``.

    ``lookup`` raises NotFoundError when it does not exist (then, with
    ``allow_missing``, nothing is done); the question says it goes with ``losing``
    (e.g. "every entry"). CommandError if the user says no.
    """
    try:
        lookup()
    except NotFoundError:
        if allow_missing:
            return Message(f"No {kind} {name!r} in {store_url}: nothing to delete.")
        raise
    if not yes and not ctx.confirm(f"Delete {kind} {name!r} and {losing}? [y/N] "):
        raise CommandError(f"{kind} {name!r} was not deleted")
    delete()
    return Message(f"Deleted {kind} {name!r}.")


def parse_action(a: argparse.Namespace, ctx: Context, parser: _Parser) -> argparse.Namespace | None:
    """Parse the action's own arguments (``a.rest``) with ``parser``; None if they asked
    for ``--help`` (it is printed). A ``--store`` (and ``-e ENV``, where the action has
    it) after the action's arguments sets the context's store (and environment)."""
    try:
        sub = parser.parse_args(a.rest)
    except HelpShown:
        return None
    a.json = getattr(sub, "json", False)  # the front end reads it to choose the form
    if sub.store:
        ctx.store_url = sub.store
    if getattr(sub, "env", None):
        ctx.environment = sub.env
    return sub
