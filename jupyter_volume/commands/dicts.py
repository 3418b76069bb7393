"""Commands on Dicts, as Modal's ``modal dict``: ``dict create|list|delete|clear|get|put|items``.

One command, ``dict``, whose first argument is the action; each action has its own
arguments (``jupyter volume dict items --help``). The same grammar works as
``%volume dict ...`` in a notebook, where tables render as HTML.

Layer: a command group; imports ``dicts`` only inside handlers.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from .context import Context
from .exits import CommandError
from .objects import created_row, created_table, delete_asking_first, parse_action
from .render import Column, Message, Result, Table
from .routing import ENV_HELP, _Parser, command
from .spec import PROGS, STORE_HELP, arg, non_negative_int

#: The actions of ``dict``, with the one-line help each shows.
ACTIONS = {
    "create": "create a Dict",
    "list": "list the Dicts in the store",
    "delete": "delete a Dict and every entry",
    "clear": "remove every entry of a Dict",
    "get": "show the value of one key (KEY is a string)",
    "put": "set one key to a string value",
    "items": "show the first N entries (default 20), or --all",
}
#: How many characters of a value's repr a table shows.
PREVIEW = 80


def _action_parser(prog: str, action: str) -> _Parser:
    p = _Parser(prog=f"{prog} dict {action}", description=ACTIONS[action])
    if action != "list":
        p.add_argument("name", metavar="NAME", help="the Dict's name")
    if action == "create":
        p.add_argument("--allow-existing", action="store_true", help="succeed if it exists")
    elif action in ("delete", "clear"):
        p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
        if action == "delete":
            p.add_argument(
                "--allow-missing", action="store_true", help="succeed if it does not exist"
            )
    elif action == "get":
        p.add_argument("key", metavar="KEY", help="the key (a string)")
        p.add_argument("--json", action="store_true", help="print the value as JSON")
    elif action == "put":
        p.add_argument("key", metavar="KEY", help="the key (a string)")
        p.add_argument("value", metavar="VALUE", help="the value (a string)")
        p.add_argument("--skip-if-exists", action="store_true", help="write only if KEY is missing")
    elif action == "items":
        p.add_argument(
            "n", metavar="N", nargs="?", type=non_negative_int, default=20, help="how many"
        )
        p.add_argument("--all", action="store_true", help="show every entry")
        p.add_argument("--json", action="store_true", help="print the entries as JSON")
    if action == "list":
        p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.add_argument("--store", metavar="URL", default=None, help=STORE_HELP)
    p.add_argument("-e", "--env", metavar="ENV", default=None, help=ENV_HELP)
    p.intermixed = True  # options anywhere, as for the other commands
    return p


def _preview(value: Any, limit: int | None = PREVIEW) -> str:
    """The repr of a key or value, cut at ``limit``; never raises (an int of more digits
    than the interpreter prints, a broken ``__repr__``)."""
    from ..dicts import _repr

    return _repr(value, limit)


def _json_value(value: Any) -> Any:
    """The value itself when strict JSON can hold it, else its repr (NaN and infinity
    have no JSON literal: printed as such, no strict parser would read the output)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return _preview(value, None)
    return value


@command(
    "dict",
    "Dicts (key-value maps): create, list, delete, clear, get, put, items",
    arg("action", metavar="ACTION", choices=tuple(ACTIONS), help=", ".join(ACTIONS)),
    arg("rest", nargs=argparse.REMAINDER, metavar="...", help="the action's arguments"),
    description=(
        "Work with Dicts, shared key-value maps in the store (Modal's Dict).\n\n"
        + "\n".join(f"  {a:8s}{h}" for a, h in ACTIONS.items())
        + "\n\nRun `dict ACTION --help` for an action's arguments. Keys given here are strings."
    ),
)
def cmd_dict(a: argparse.Namespace, ctx: Context) -> Result | None:
    """Dispatch a ``dict`` action to its handler."""
    prog = PROGS[ctx.frontend]
    sub = parse_action(a, ctx, _action_parser(prog, a.action))
    if sub is None:
        return None  # `dict ACTION --help` printed the action's help: nothing more to show
    return _HANDLERS[a.action](sub, ctx, prog)


def _open(s: argparse.Namespace, ctx: Context) -> Any:
    """The Dict the action names, in the context's store and environment."""
    from ..dicts import Dict

    return Dict.from_name(s.name, store=ctx.store(), environment_name=ctx.environment_name)


def _create(s: argparse.Namespace, ctx: Context, prog: str) -> Result:
    from ..dicts import Dict

    store = ctx.store(create=True)  # like `create` of a volume: may make the store
    Dict.objects.create(
        s.name, allow_existing=s.allow_existing, store=store, environment_name=ctx.environment_name
    )
    return Message(f"Created Dict {s.name!r} in {store.url}.", {"name": s.name})


def _list(s: argparse.Namespace, ctx: Context, prog: str) -> Result:
    from ..dicts import Dict

    store = ctx.store()
    rows = [
        created_row(d.info())
        for d in Dict.objects.list(store=store, environment_name=ctx.environment_name)
    ]
    return created_table(
        rows,
        title=f"Dicts in {store.url}",
        empty=f"No Dicts yet: create one with `{prog} dict create NAME`.",
    )


def _delete(s: argparse.Namespace, ctx: Context, prog: str) -> Result:
    from ..dicts import Dict

    store = ctx.store()
    env = ctx.environment_name
    return delete_asking_first(
        ctx,
        kind="Dict",
        name=s.name,
        store_url=store.url,
        losing="every entry",
        allow_missing=s.allow_missing,
        yes=s.yes,
        lookup=lambda: Dict.from_name(s.name, store=store, environment_name=env).info(),
        delete=lambda: Dict.objects.delete(
            s.name, allow_missing=s.allow_missing, store=store, environment_name=env
        ),
    )


def _clear(s: argparse.Namespace, ctx: Context, prog: str) -> Result:

    d = _open(s, ctx)
    d.info()  # NotFoundError before asking
    if not s.yes and not ctx.confirm(f"Remove every entry of Dict {s.name!r}? [y/N] "):
        raise CommandError(f"Dict {s.name!r} was not cleared")
    d.clear()
    return Message(f"Cleared Dict {s.name!r}.")


def _get(s: argparse.Namespace, ctx: Context, prog: str) -> Result:
    from ..errors import NotFoundError

    d = _open(s, ctx)
    missing = object()
    value = d.get(s.key, missing)
    if value is missing:
        raise NotFoundError(f"key {s.key!r} is not in Dict {s.name!r}")
    text = value if isinstance(value, str) else _preview(value, None)
    return Message(text, {"key": s.key, "value": _json_value(value)})


def _put(s: argparse.Namespace, ctx: Context, prog: str) -> Result:

    d = _open(s, ctx)
    d.info()
    if d.put(s.key, s.value, skip_if_exists=s.skip_if_exists):
        return Message(f"Set {s.key!r} in Dict {s.name!r}.")
    return Message(f"Key {s.key!r} exists in Dict {s.name!r}: left as it was.")


def _items(s: argparse.Namespace, ctx: Context, prog: str) -> Result:
    from ..dicts import UNREADABLE_KEY

    d = _open(s, ctx)
    rows: list[dict[str, Any]] = []
    json_rows: list[dict[str, Any]] = []
    # An entry this environment cannot unpickle (written where a module is installed
    # that is not here) is shown as such; the others are listed all the same.
    for i, (key, value, error) in enumerate(d._iter_entries(None if s.all else s.n)):
        if not s.all and i >= s.n:
            break
        shown_key = "?" if key is UNREADABLE_KEY else _preview(key, None)
        json_key = shown_key if key is UNREADABLE_KEY or not isinstance(key, str) else key
        if error is not None:
            rows.append({"key": shown_key, "value": f"(cannot be read here: {error})", "type": "?"})
            json_rows.append({"key": json_key, "error": str(error)})
            continue
        rows.append({"key": shown_key, "value": _preview(value), "type": type(value).__name__})
        json_rows.append({"key": json_key, "value": _json_value(value)})
    total = d.len()
    shown = (
        ""
        if s.all or total <= len(rows)
        else f" (first {len(rows)} of {total}; --all for every one)"
    )
    return Table(
        [Column("key", "Key"), Column("value", "Value"), Column("type", "Type")],
        rows,
        title=f"Dict {s.name!r}{shown}",
        empty=f"Dict {s.name!r} is empty.",
        json_rows=json_rows,
    )


_HANDLERS = {
    "create": _create,
    "list": _list,
    "delete": _delete,
    "clear": _clear,
    "get": _get,
    "put": _put,
    "items": _items,
}
