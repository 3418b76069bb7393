"""The one argument specification of the ``%volume`` magic and the ``jupyter volume`` CLI.

Every subcommand is declared once below (:func:`command`), with its arguments and a
handler. :func:`build_parser` turns the declarations into an argparse parser for a front
end (``"cli"`` or ``"magic"``); :func:`run` calls the handler, which calls the public
:class:`~jupyter_volume.Volume` API and returns a :class:`Result` that renders itself as
a text table (``__repr__``/:meth:`Result.text`), an HTML table (``_repr_html_``) and JSON
(:meth:`Result.to_json`). The front ends only tokenize, display and map errors.

Most subcommands work in both front ends; ``mount``, ``unmount``, ``commit``, ``reload``,
``status`` and ``browse`` need a long-lived Python process (the magic), and ``shell``
needs a terminal (the CLI).

Errors: handlers raise :class:`CommandError` (and :class:`UsageError`) for mistakes they
detect, and let the API's :class:`~jupyter_volume.errors.VolumeError` subclasses through;
:func:`exit_code_for` and :func:`is_user_error` classify both in one place.

Layer: a front end. Imports ``volume``, ``config`` and ``progress`` (the heavy ones only
inside handlers, so ``--help`` stays fast); never IPython or Jupyter server.
"""

from __future__ import annotations

import argparse
import html
import inspect
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import (
    AlreadyExistsError,
    InvalidError,
    NotFoundError,
    StoreAccessError,
    VolumeBusyError,
    VolumeError,
)

if TYPE_CHECKING:
    from .config import VolumeConfig
    from .store import Store
    from .volume import FileEntry, Volume

__all__ = [
    "COMMANDS",
    "CommandError",
    "Context",
    "HelpShown",
    "Message",
    "Record",
    "Result",
    "Table",
    "UsageError",
    "build_parser",
    "exit_code_for",
    "help_text",
    "is_user_error",
    "parse",
    "run",
]

# -- exit codes (documented in `jupyter volume --help` and the README) ---------------------------
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """\
exit codes:
  0    success
  1    failure: the store failed or refused access, verify found damage, a commit
       conflict, a local file could not be read or written, or the operation was declined
  2    usage: bad arguments, a bad volume name, a path escaping the volume, or the
       target exists already (put/get without --force, create of an existing volume)
  3    not found: the volume, a path in it, a commit, or a local file does not exist
  130  interrupted (Ctrl-C)"""

FRONTENDS = ("cli", "magic")
PROGS = {"cli": "jupyter volume", "magic": "%volume"}


# -- errors ---------------------------------------------------------------------------------------
class CommandError(Exception):
    """A failure a handler detected itself; ``exit_code`` is what the CLI exits with."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(CommandError):
    """The user asked for something that cannot work as given (exit code 2)."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, usage: str = "", prog: str = "") -> None:
        super().__init__(message)
        self.usage = usage
        self.prog = prog


class HelpShown(Exception):  # noqa: N818 - a control-flow signal, not an error
    """``--help`` was printed; the front end stops there (``status`` is the exit code)."""

    def __init__(self, status: int = 0) -> None:
        super().__init__(status)
        self.status = status


def exit_code_for(exc: BaseException) -> int | None:
    """The CLI exit code for ``exc``, or None for an unexpected exception (a bug)."""
    if isinstance(exc, CommandError):
        return exc.exit_code
    if isinstance(exc, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(exc, InvalidError | AlreadyExistsError):
        return EXIT_USAGE
    if isinstance(exc, VolumeError | OSError):
        return EXIT_FAILURE
    try:
        from traitlets import TraitError
    except ImportError:  # pragma: no cover - traitlets is a dependency
        return None
    if isinstance(exc, TraitError):  # a bad value in a config file
        return EXIT_USAGE
    return None


def is_user_error(exc: BaseException) -> bool:
    """True for mistakes the user can fix (shown as one line, no traceback, in IPython)."""
    return isinstance(
        exc,
        CommandError
        | NotFoundError
        | InvalidError
        | AlreadyExistsError
        | VolumeBusyError
        | StoreAccessError,
    )


# The API's messages name its keyword arguments; a command line names its options.
_API_TO_OPTIONS = (("pass force=True", "use --force"), ("pass recursive=True", "use -r"))


def one_line(exc: BaseException) -> str:
    """The exception's message on one line, in command-line words (front ends show no
    traceback for user errors)."""
    text = str(exc).strip() or type(exc).__name__
    for api, option in _API_TO_OPTIONS:
        text = text.replace(api, option)
    text = "; ".join(part.strip() for part in text.splitlines() if part.strip())
    prog = getattr(exc, "prog", "")
    return f"{prog}: {text}" if prog else text


# -- formatting ---------------------------------------------------------------------------------------
def human_size(n: int | None) -> str:
    """``1536`` -> ``"1.5 KiB"``; None -> ``""``."""
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _as_datetime(t: datetime | int | float) -> datetime:
    return t if isinstance(t, datetime) else datetime.fromtimestamp(t, tz=UTC)


def local_time(t: datetime | int | float | None) -> str:
    """A timestamp in the local time zone, to the second."""
    if t is None:
        return ""
    return _as_datetime(t).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def iso_time(t: datetime | int | float | None) -> str | None:
    """A timestamp as ISO 8601 in UTC (for JSON)."""
    if t is None:
        return None
    return _as_datetime(t).astimezone(UTC).isoformat()


# -- results --------------------------------------------------------------------------------------------
class Result:
    """What a handler returns: renders as text (``repr``), HTML and JSON."""

    exit_code = EXIT_OK

    def text(self) -> str:
        raise NotImplementedError

    def html(self) -> str:
        return f"<pre>{html.escape(self.text())}</pre>"

    def to_json(self) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        return self.html()


class Message(Result):
    """A sentence saying what was done (printed, never a table)."""

    to_stderr = False

    def __init__(self, text: str, data: dict[str, Any] | None = None) -> None:
        self._text = text
        self.data = data or {}

    def text(self) -> str:
        return self._text

    def to_json(self) -> Any:
        return {"message": self._text, **self.data}


@dataclass(repr=False)
class Column:
    """One column of a :class:`Table`: JSON key, header label and cell formatter."""

    key: str
    label: str
    fmt: Callable[[Any], str] = str
    right: bool = False


@dataclass(repr=False)
class Table(Result):
    """Rows of dicts keyed by column key: JSON gets the raw values, text/HTML formatted ones."""

    columns: list[Column]
    rows: list[dict[str, Any]]
    title: str = ""
    empty: str = "(nothing)"
    json_rows: list[dict[str, Any]] | None = None
    exit_code: int = EXIT_OK

    def _cells(self) -> list[list[str]]:
        out = []
        for row in self.rows:
            cells = []
            for c in self.columns:
                v = row.get(c.key)
                cells.append("" if v is None else c.fmt(v))
            out.append(cells)
        return out

    def text(self) -> str:
        lines = [self.title] if self.title else []
        if not self.rows:
            lines.append(self.empty)
            return "\n".join(lines)
        cells = self._cells()
        widths = [len(c.label) for c in self.columns]
        for row in cells:
            widths = [max(w, len(v)) for w, v in zip(widths, row, strict=True)]

        def fmt(values: Sequence[str]) -> str:
            parts = [
                v.rjust(w) if c.right else v.ljust(w)
                for v, w, c in zip(values, widths, self.columns, strict=True)
            ]
            return "  ".join(parts).rstrip()

        lines.append(fmt([c.label for c in self.columns]))
        lines.append("  ".join("-" * w for w in widths))
        lines.extend(fmt(row) for row in cells)
        return "\n".join(lines)

    def html(self) -> str:
        esc = html.escape
        parts = ['<table class="jupyter-volume">']
        if self.title:
            parts.append(f'<caption style="text-align:left">{esc(self.title)}</caption>')
        if not self.rows:
            parts.append(f"<tbody><tr><td><i>{esc(self.empty)}</i></td></tr></tbody></table>")
            return "".join(parts)

        def align(c: Column) -> str:
            return "right" if c.right else "left"

        parts.append("<thead><tr>")
        parts.extend(f'<th style="text-align:{align(c)}">{esc(c.label)}</th>' for c in self.columns)
        parts.append("</tr></thead><tbody>")
        for row in self._cells():
            parts.append("<tr>")
            parts.extend(
                f'<td style="text-align:{align(c)}">{esc(v)}</td>'
                for v, c in zip(row, self.columns, strict=True)
            )
            parts.append("</tr>")
        parts.append("</tbody></table>")
        return "".join(parts)

    def to_json(self) -> Any:
        if self.json_rows is not None:
            return self.json_rows
        return [{c.key: _jsonable(row.get(c.key)) for c in self.columns} for row in self.rows]


@dataclass(repr=False)
class Record(Result):
    """One object shown as a two-column field/value table; JSON is a single object."""

    fields: list[tuple[str, str, Any, str]]  # (key, label, raw value, shown value)
    title: str = ""
    extra: list[Result] = field(default_factory=list)  # e.g. a table of errors below
    json_extra: dict[str, Any] = field(default_factory=dict)
    exit_code: int = EXIT_OK

    def _table(self) -> Table:
        return Table(
            [Column("field", "Field"), Column("value", "Value")],
            [{"field": label, "value": shown} for _k, label, _v, shown in self.fields],
            title=self.title,
        )

    def text(self) -> str:
        t = self._table()
        body = t.text().splitlines()
        # a field/value listing needs no header row
        head = 1 if self.title else 0
        lines = body[:head] + body[head + 2 :]
        lines.extend(e.text() for e in self.extra)
        return "\n".join(lines)

    def html(self) -> str:
        esc = html.escape
        parts = ['<table class="jupyter-volume">']
        if self.title:
            parts.append(f'<caption style="text-align:left">{esc(self.title)}</caption>')
        parts.append("<tbody>")
        for _k, label, _v, shown in self.fields:
            parts.append(
                f'<tr><th style="text-align:left">{esc(label)}</th>'
                f'<td style="text-align:left">{esc(shown)}</td></tr>'
            )
        parts.append("</tbody></table>")
        parts.extend(e.html() for e in self.extra)
        return "".join(parts)

    def to_json(self) -> Any:
        out = {k: _jsonable(v) for k, _label, v, _shown in self.fields}
        out.update(self.json_extra)
        return out


@dataclass(repr=False)
class Group(Result):
    """Several results shown one after another (JSON: ``json``)."""

    parts: list[Result]
    json: Any = None
    exit_code: int = EXIT_OK

    def text(self) -> str:
        return "\n\n".join(p.text() for p in self.parts)

    def html(self) -> str:
        return "".join(p.html() for p in self.parts)

    def to_json(self) -> Any:
        return self.json


class DisplayObject(Result):
    """Something the magic displays as is (a widget); no text or JSON form."""

    def __init__(self, obj: Any, text: str = "") -> None:
        self.obj = obj
        self._text = text

    def text(self) -> str:
        return self._text or repr(self.obj)

    def to_json(self) -> Any:
        raise UsageError("this command has no JSON output")


def _jsonable(v: Any) -> Any:
    if isinstance(v, datetime):
        return iso_time(v)
    if isinstance(v, Path):
        return str(v)
    return v


# -- context --------------------------------------------------------------------------------------
def _no_confirm(prompt: str) -> bool:
    raise UsageError("this needs confirmation and none can be asked for here: pass --yes")


@dataclass(repr=False)
class Context:
    """What a handler needs from its front end."""

    frontend: str
    config: VolumeConfig
    store_url: str | None = None
    confirm: Callable[[str], bool] = _no_confirm
    write_bytes: Callable[[bytes], Any] | None = None  # `get NAME PATH -`
    info: Callable[[str], Any] = field(default=lambda s: print(s, file=sys.stderr))

    def store(self) -> Store:
        from .config import get_store

        return get_store(self.store_url, self.config)

    def volume(self, name: str, *, create: bool = False) -> Volume:
        """Volume ``name`` in the context's store; NotFoundError if it does not exist."""
        from .volume import Volume

        return Volume.lookup(name, store=self.store(), create_if_missing=create)


# -- the parser -------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so the magic can turn errors into UsageError."""

    subcommands: dict[str, argparse.ArgumentParser]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> Any:
        raise UsageError(f"{message} (see {self.prog} --help)", self.format_usage(), self.prog)

    def exit(self, status: int = 0, message: str | None = None) -> Any:
        if message:
            sys.stderr.write(message)
        raise HelpShown(status)


@dataclass(frozen=True)
class _Arg:
    args: tuple[str, ...]
    kwargs: dict[str, Any]


def arg(*args: str, **kwargs: Any) -> _Arg:
    """One argument, as for ``ArgumentParser.add_argument``."""
    return _Arg(args, kwargs)


@dataclass(frozen=True)
class Command:
    """A subcommand: its arguments, handler, and the front ends it works in."""

    name: str
    help: str
    description: str
    args: tuple[_Arg, ...]
    handler: Callable[[argparse.Namespace, Context], Result | None]
    where: tuple[str, ...]
    table: bool


COMMANDS: dict[str, Command] = {}


def command(
    name: str,
    help: str,
    *args: _Arg,
    where: tuple[str, ...] = FRONTENDS,
    table: bool = False,
    description: str = "",
) -> Callable[[Callable[..., Result | None]], Callable[..., Result | None]]:
    """Declare subcommand ``name`` with its arguments; the decorated function handles it."""

    def register(fn: Callable[..., Result | None]) -> Callable[..., Result | None]:
        doc = inspect.cleandoc(fn.__doc__) if fn.__doc__ else help
        COMMANDS[name] = Command(name, help, description or doc, args, fn, where, table)
        return fn

    return register


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def build_parser(frontend: str = "cli") -> _Parser:
    """The argument parser of one front end (``"cli"`` or ``"magic"``)."""
    if frontend not in FRONTENDS:
        raise ValueError(f"frontend must be one of {FRONTENDS}, got {frontend!r}")
    prog = PROGS[frontend]
    if frontend == "cli":
        description = (
            "Versioned volumes for Jupyter: manage them, and their files, from a terminal."
        )
        epilog = (
            f"Run `{prog} COMMAND --help` for a command's arguments.\n"
            "The store is --store URL, else $JUPYTER_VOLUME_STORE, else c.VolumeConfig.store_url\n"
            "in jupyter_volume_config.py, else a folder in the Jupyter data dir.\n\n"
            + EXIT_CODES_HELP
        )
    else:
        description = (
            "Versioned volumes in this kernel: mount one, commit, reload, and manage files."
        )
        epilog = (
            f"Run `{prog} COMMAND --help` for a command's arguments. A user mistake raises\n"
            "UsageError. The store is --store URL, else $JUPYTER_VOLUME_STORE, else\n"
            "c.VolumeConfig.store_url in jupyter_volume_config.py (or the IPython config)."
        )
    parser = _Parser(prog=prog, description=description, epilog=epilog)
    parser.add_argument(
        "--store",
        metavar="URL",
        default=None,
        help="the object store (file:///path or s3://bucket/prefix)",
    )
    parser.subcommands = {}
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", title="commands", parser_class=_Parser
    )
    for cmd in COMMANDS.values():
        if frontend not in cmd.where:
            continue
        sp = sub.add_parser(
            cmd.name,
            help=cmd.help,
            description=cmd.description,
            epilog=EXIT_CODES_HELP if frontend == "cli" else None,
        )
        parser.subcommands[cmd.name] = sp
        for a in cmd.args:
            sp.add_argument(*a.args, **a.kwargs)
        sp.add_argument(
            "--store",
            metavar="URL",
            default=argparse.SUPPRESS,  # so `--store` before the command is not overwritten
            help="the object store (file:///path or s3://bucket/prefix)",
        )
        if cmd.table:
            sp.add_argument(
                "--json",
                action="store_true",
                help="print JSON instead of a table"
                if frontend == "cli"
                else "return the rows as Python data instead of displaying a table",
            )
    return parser


def help_text(frontend: str = "magic") -> str:
    """The full help (the top-level help plus every command's usage line); ``%volume?``."""
    parser = build_parser(frontend)
    lines = [parser.format_help().rstrip(), "", "usage of each command:"]
    for sp in parser.subcommands.values():
        lines.append("  " + " ".join(sp.format_usage().split()[1:]))
    return "\n".join(lines)


def _first_positional(argv: Sequence[str]) -> str | None:
    it = iter(argv)
    for tok in it:
        if tok == "--store":
            next(it, None)
        elif tok.startswith("-"):
            continue
        else:
            return tok
    return None


def parse(argv: Sequence[str], frontend: str = "cli") -> argparse.Namespace:
    """Parse ``argv`` for ``frontend``.

    Raises:
        UsageError: bad arguments (one line, with the usage in ``.usage``).
        HelpShown: ``--help`` was printed.
    """
    name = _first_positional(argv)
    cmd = COMMANDS.get(name) if name else None
    if cmd is not None and frontend not in cmd.where:
        if frontend == "cli":
            raise UsageError(
                f"`{name}` needs a running Python kernel: in a notebook run `%load_ext jupyter_volume`"
                f" then `%volume {name} ...`; in a terminal use `jupyter volume shell NAME`"
            )
        raise UsageError(
            f"`{name}` works only in a terminal (`jupyter volume {name} ...`); in a notebook use"
            " `%volume mount NAME` and the mounted folder"
        )
    parser = build_parser(frontend)
    args = parser.parse_args(list(argv))
    args.frontend = frontend
    if args.command is None:
        parser.print_help()
        raise HelpShown(0)
    return args


def run(args: argparse.Namespace, ctx: Context) -> Result | None:
    """Run the parsed command in ``ctx``; raises CommandError or the API's VolumeError."""
    ctx.store_url = getattr(args, "store", None) or ctx.store_url
    return COMMANDS[args.command].handler(args, ctx)


# -- shared argument declarations ----------------------------------------------------------------------
NAME = arg("name", metavar="NAME", help="the volume's name")
OPTIONAL_NAME = arg(
    "name",
    metavar="NAME",
    nargs="?",
    default=None,
    help="the mounted volume (optional when only one is mounted)",
)
AT = arg(
    "--at", metavar="COMMIT", type=_non_negative_int, default=None, help="read an older commit"
)

_TYPE_NAMES = {1: "file", 2: "dir", 3: "link", 0: "unknown"}


def _fresh(vol: Volume) -> Any:
    """Read the head from the store now, and return it.

    A handle's reads stay on the commit it first saw; a kernel lives long, so a command
    that reads must not show a head from minutes ago.
    """
    return vol.refresh()


def _where(vol: Volume, path: str) -> str:
    from .names import normalize_path

    return f"{vol.name}:/{normalize_path(path)}"


# -- volumes ---------------------------------------------------------------------------------------------
@command(
    "create",
    "create a volume",
    arg(
        "name",
        metavar="NAME",
        nargs="?",
        default=None,
        help="the new volume's name (default: a generated one)",
    ),
)
def cmd_create(a: argparse.Namespace, ctx: Context) -> Result:
    """Create an empty volume. Without NAME, a unique name is generated and printed.

    Names: 1-64 letters, digits, '.', '_' and '-', starting with a letter or digit.
    """
    from .volume import Volume

    name = a.name or f"volume-{uuid.uuid4().hex[:8]}"
    store = ctx.store()
    Volume.objects.create(name, store=store)
    return Message(f"Created volume {name!r} in {store.url}.", {"name": name})


@command("list", "list the volumes in the store", table=True)
def cmd_list(a: argparse.Namespace, ctx: Context) -> Result:
    """List every volume in the store, with when and by whom it was created."""
    from .volume import Volume

    store = ctx.store()
    rows = []
    for vol in Volume.objects.list(store=store):
        info = vol.info()
        rows.append(
            {"name": info.name, "created_at": info.created_at, "created_by": info.created_by}
        )
    return Table(
        [
            Column("name", "Name"),
            Column("created_at", "Created at", local_time),
            Column("created_by", "Created by"),
        ],
        rows,
        title=f"Volumes in {store.url}",
        empty=f"No volumes yet: create one with `{PROGS[ctx.frontend]} create NAME`.",
    )


@command(
    "delete",
    "delete a volume and its whole history",
    NAME,
    arg("-y", "--yes", action="store_true", help="do not ask for confirmation"),
    arg("--allow-missing", action="store_true", help="succeed if the volume does not exist"),
)
def cmd_delete(a: argparse.Namespace, ctx: Context) -> Result:
    """Delete a volume: its files and every commit, irrevocably. Asks first unless --yes."""
    from .volume import Volume

    store = ctx.store()
    try:
        Volume.lookup(a.name, store=store)
    except NotFoundError:
        if a.allow_missing:
            return Message(f"No volume {a.name!r} in {store.url}: nothing to delete.")
        raise
    if not a.yes and not ctx.confirm(
        f"Delete volume {a.name!r} and its whole history from {store.url}? [y/N] "
    ):
        raise CommandError(f"volume {a.name!r} was not deleted")
    Volume.objects.delete(a.name, allow_missing=a.allow_missing, store=store)
    return Message(f"Deleted volume {a.name!r}.")


@command(
    "rename",
    "rename a volume",
    arg("old", metavar="OLD", help="the volume's current name"),
    arg("new", metavar="NEW", help="its new name"),
)
def cmd_rename(a: argparse.Namespace, ctx: Context) -> Result:
    """Rename a volume; its files and history stay as they are."""
    from .volume import Volume

    Volume.rename(a.old, a.new, store=ctx.store())
    return Message(f"Renamed volume {a.old!r} to {a.new!r}.")


@command("info", "show a volume's id, creator and newest commit", NAME, table=True)
def cmd_info(a: argparse.Namespace, ctx: Context) -> Result:
    """Show what the store records of a volume, and its newest commit."""
    vol = ctx.volume(a.name)
    head = _fresh(vol)
    info = vol.info()
    fields: list[tuple[str, str, Any, str]] = [
        ("name", "Name", info.name, info.name),
        ("id", "Id", info.id, info.id),
        ("created_at", "Created at", info.created_at, local_time(info.created_at)),
        ("created_by", "Created by", info.created_by, info.created_by),
        ("store", "Store", vol.store.url, vol.store.url),
    ]
    if head is not None:
        fields += [
            ("head", "Newest commit", head.seq, str(head.seq)),
            ("head_time", "Committed at", head.time, local_time(head.time)),
        ]
    return Record(fields, title=f"Volume {info.name!r}")


# -- files -----------------------------------------------------------------------------------------------
def _entry_rows(entries: Iterable[FileEntry]) -> list[dict[str, Any]]:
    return [
        {
            "path": e.path,
            "type": _TYPE_NAMES.get(int(e.type), "unknown"),
            "mtime": datetime.fromtimestamp(e.mtime, tz=UTC),
            "size": e.size,
        }
        for e in sorted(entries, key=lambda e: e.path)
    ]


@command(
    "ls",
    "list files and folders in a volume",
    NAME,
    arg(
        "path",
        metavar="PATH",
        nargs="?",
        default="/",
        help="a folder, file or glob (default: the root)",
    ),
    arg("-r", "--recursive", action="store_true", help="list all levels below PATH"),
    AT,
    table=True,
)
def cmd_ls(a: argparse.Namespace, ctx: Context) -> Result:
    """List a folder of a volume (all levels with -r), a file, or the paths a glob matches
    (`*`, `?`, `[..]` within a name, `**` across folders)."""
    vol = ctx.volume(a.name)
    _fresh(vol)
    entries = vol.listdir(a.path, recursive=a.recursive, at=a.at)
    where = _where(vol, a.path) + (f" at commit {a.at}" if a.at is not None else "")
    return Table(
        [
            Column("path", "Path"),
            Column("type", "Type"),
            Column("mtime", "Modified", local_time),
            Column("size", "Size", human_size, right=True),
        ],
        _entry_rows(entries),
        title=f"Contents of {where}",
        empty=f"{where} is empty.",
    )


def _local_totals(local: Path) -> tuple[int, int]:
    """(files, bytes) below a local file or folder, for the progress bar."""
    if not local.is_dir():
        return 1, local.stat().st_size
    files = size = 0
    for dirpath, _dirs, names in os.walk(local):
        for n in names:
            try:
                st = os.lstat(os.path.join(dirpath, n))
            except OSError:
                continue
            files += 1
            size += st.st_size
    return files, size


def _counting_batch(vol: Volume, force: bool, bar: Any) -> Any:
    """``vol.batch_upload(force)`` that also counts files and bytes and moves ``bar``."""
    from .volume import BatchUpload

    class CountingBatch(BatchUpload):
        files = 0
        bytes = 0

        def put_file(self, local_file: Any, remote_path: str, mode: int | None = None) -> None:
            super().put_file(local_file, remote_path, mode)
            size = os.path.getsize(local_file) if isinstance(local_file, str | os.PathLike) else 0
            self.files += 1
            self.bytes += size
            bar.update(size)

    return CountingBatch(vol, force)


@command(
    "put",
    "upload a local file or folder into a volume",
    NAME,
    arg(
        "local",
        metavar="LOCAL",
        help="a local file, or a folder (uploaded with everything below it)",
    ),
    arg(
        "remote",
        metavar="REMOTE",
        nargs="?",
        default="/",
        help="where in the volume (default '/'); a REMOTE ending in '/' takes LOCAL's name",
    ),
    arg("-f", "--force", action="store_true", help="overwrite files that exist in the volume"),
)
def cmd_put(a: argparse.Namespace, ctx: Context) -> Result:
    """Upload a file or a whole folder as one commit.

    `put vol data.csv` stores /data.csv; `put vol data.csv raw/` stores /raw/data.csv;
    `put vol data.csv raw/x.csv` stores /raw/x.csv; `put vol results/` stores the folder
    as /results. A file that exists in the volume is left alone (exit code 2) unless
    --force; nothing is uploaded then.
    """
    from .names import normalize_path
    from .progress import transfer_progress

    local = Path(a.local).expanduser()
    if not os.path.lexists(local):
        raise NotFoundError(f"local file or folder {a.local} does not exist")
    remote = a.remote
    if remote.endswith("/"):
        base = local.name or local.resolve().name
        remote = remote + base
    vol = ctx.volume(a.name)
    try:
        files, size = _local_totals(local)
    except OSError as e:
        raise CommandError(f"cannot read {a.local}: {e.strerror or e}") from None
    target = normalize_path(remote)
    bar = transfer_progress(
        f"put {target or '/'}", total_bytes=size, total_files=files, config=ctx.config
    )
    try:
        batch = _counting_batch(vol, a.force, bar)
        with batch:
            if local.is_dir():
                batch.put_directory(local, remote)
            else:
                batch.put_file(local, remote)
    except VolumeError:
        raise
    except OSError as e:
        raise CommandError(f"cannot read {e.filename or a.local}: {e.strerror or e}") from None
    finally:
        bar.close()
    info = batch.commit_info
    what = f"{batch.files} file{'s' if batch.files != 1 else ''} ({human_size(batch.bytes)})"
    done = (
        f" as commit {info.seq}"
        if info is not None
        else " (no changes: the volume had them already)"
    )
    return Message(
        f"Uploaded {what} to {vol.name}:/{target}{done}.",
        {"files": batch.files, "bytes": batch.bytes, "commit": info.seq if info else None},
    )


def _glob_base(norm: str) -> str:
    parts = []
    for part in norm.split("/"):
        if any(ch in part for ch in "*?["):
            break
        parts.append(part)
    return "/".join(parts)


def _download_plan(
    vol: Volume, remote: str, dest: Path, dest_is_dir: bool, at: int | None
) -> tuple[list[tuple[FileEntry, Path]], Path]:
    """Which entries go to which local paths, and the local path that REMOTE becomes."""
    from .names import normalize_path
    from .volume import FileEntryType

    norm = normalize_path(remote)
    entries = list(vol.iterdir(remote, recursive=True, at=at))
    if any(ch in norm for ch in "*?["):
        if not entries:
            raise NotFoundError(f"nothing in volume {vol.name!r} matches {remote}")
        base = _glob_base(norm)
        plan = [(e, dest / (e.path[len(base) + 1 :] if base else e.path)) for e in entries]
        return plan, dest
    if len(entries) == 1 and entries[0].path == norm and entries[0].type != FileEntryType.DIRECTORY:
        e = entries[0]
        target = dest / norm.rsplit("/", 1)[-1] if dest_is_dir else dest
        return [(e, target)], target
    # a folder: like `cp -r`, into DEST/<folder name> when DEST is a folder, else DEST itself
    name = norm.rsplit("/", 1)[-1]
    root = dest / name if (dest_is_dir and name) else dest
    prefix = norm + "/" if norm else ""
    plan = [(e, root / e.path[len(prefix) :]) for e in entries]
    from .volume import FileEntry

    plan.insert(0, (FileEntry(norm, FileEntryType.DIRECTORY, 0, 0), root))
    return plan, root


@command(
    "get",
    "download a file or folder from a volume",
    NAME,
    arg("remote", metavar="REMOTE", help="a file, folder or glob in the volume"),
    arg(
        "local",
        metavar="LOCAL",
        nargs="?",
        default=".",
        help="where to (default '.'); '-' writes the file to stdout",
    ),
    arg("-f", "--force", action="store_true", help="overwrite local files that exist"),
    AT,
)
def cmd_get(a: argparse.Namespace, ctx: Context) -> Result | None:
    """Download a file, or a folder with everything below it.

    Into LOCAL when it is an existing folder (keeping the file's or folder's name), else
    as LOCAL. `-` writes the file's bytes to stdout. Existing local files are left alone
    (exit code 2, nothing is downloaded) unless --force. Each file appears complete or
    not at all (written to a temporary name, then renamed).
    """
    from .progress import transfer_progress
    from .volume import FileEntryType

    vol = ctx.volume(a.name)
    _fresh(vol)
    if a.local == "-":
        return _get_to_stdout(vol, a, ctx)
    dest = Path(a.local).expanduser()
    dest_is_dir = dest.is_dir() or a.local.endswith(("/", os.sep))
    plan, where = _download_plan(vol, a.remote, dest, dest_is_dir, a.at)
    files = [(e, t) for e, t in plan if e.type == FileEntryType.FILE]
    if not a.force:
        clash = [t for _e, t in files if os.path.lexists(t)]
        if clash:
            more = f" (and {len(clash) - 1} more)" if len(clash) > 1 else ""
            raise AlreadyExistsError(
                f"local file {clash[0]} exists{more}: use --force to overwrite it"
            )
    for _e, t in files:
        if t.is_dir() and not t.is_symlink():
            raise CommandError(f"cannot download a file to {t}: it is a local folder", EXIT_USAGE)
    total = sum(e.size for e, _t in files)
    links = sum(1 for e, _t in plan if e.type == FileEntryType.SYMLINK)
    bar = transfer_progress(
        f"get {a.remote}", total_bytes=total, total_files=len(files), config=ctx.config
    )
    try:
        for e, t in plan:
            if e.type == FileEntryType.DIRECTORY:
                _local_io(lambda t=t: t.mkdir(parents=True, exist_ok=True), t)
        _download_files(vol, files, a.at, bar)
    finally:
        bar.close()
    msg = f"Downloaded {len(files)} file{'s' if len(files) != 1 else ''} ({human_size(total)}) to {where}"
    if links:
        msg += f"; skipped {links} symbolic link{'s' if links != 1 else ''}"
    return Message(msg + ".", {"files": len(files), "bytes": total})


def _local_io(fn: Callable[[], Any], path: Path) -> Any:
    try:
        return fn()
    except OSError as e:
        raise CommandError(f"cannot write {e.filename or path}: {e.strerror or e}") from None


def _download_files(
    vol: Volume, files: list[tuple[FileEntry, Path]], at: int | None, bar: Any
) -> None:
    def one(item: tuple[FileEntry, Path]) -> None:
        e, target = item
        _local_io(lambda: target.parent.mkdir(parents=True, exist_ok=True), target.parent)
        tmp = target.parent / f".{target.name}.jv-part-{uuid.uuid4().hex[:8]}"
        try:
            with _local_io(lambda: open(tmp, "wb"), tmp) as f:
                vol.read_file_into_fileobj(e.path, f, bar.update, at=at)
            _local_io(lambda: os.replace(tmp, target), target)
            os.utime(target, (e.mtime, e.mtime))
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)

    if len(files) <= 1:
        for item in files:
            one(item)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="jv-get") as pool:
        for fut in [pool.submit(one, item) for item in files]:
            fut.result()


def _get_to_stdout(vol: Volume, a: argparse.Namespace, ctx: Context) -> None:
    from .names import normalize_path
    from .volume import FileEntryType

    norm = normalize_path(a.remote)
    entries = list(vol.iterdir(a.remote, recursive=True, at=a.at))
    is_glob = any(ch in norm for ch in "*?[")
    if not is_glob and not (
        len(entries) == 1 and entries[0].path == norm and entries[0].type != FileEntryType.DIRECTORY
    ):
        raise UsageError(f"{vol.name}:/{norm} is a folder: '-' (stdout) takes a file")
    files = [e for e in entries if e.type == FileEntryType.FILE]
    if not files:
        if entries and entries[0].type == FileEntryType.SYMLINK:
            raise InvalidError(f"{entries[0].path} is a symbolic link; links are not followed")
        raise NotFoundError(f"no file in volume {vol.name!r} matches {a.remote}")
    out = ctx.write_bytes
    if out is None:
        raise UsageError("'-' (stdout) is not available here")

    class _Sink:
        def write(self, b: bytes) -> int:
            out(b)
            return len(b)

    for e in files:
        vol.read_file_into_fileobj(e.path, _Sink(), at=a.at)  # type: ignore[arg-type]
    return None


@command(
    "cp",
    "copy files or folders inside a volume",
    NAME,
    arg("src", metavar="SRC", nargs="+", help="the paths to copy"),
    arg("dst", metavar="DST", help="the destination (an existing folder takes several sources)"),
    arg("-r", "--recursive", action="store_true", help="copy folders with everything below them"),
)
def cmd_cp(a: argparse.Namespace, ctx: Context) -> Result:
    """Copy inside a volume, like `cp`: no data moves, the copies share the stored chunks."""
    vol = ctx.volume(a.name)
    _fresh(vol)
    vol.copy_files(a.src, a.dst, recursive=a.recursive)
    srcs = ", ".join(a.src)
    return Message(f"Copied {srcs} to {_where(vol, a.dst)}.")


@command(
    "rm",
    "remove a file or folder from a volume",
    NAME,
    arg("path", metavar="PATH", help="the file or folder to remove"),
    arg("-r", "--recursive", action="store_true", help="remove a folder with everything below it"),
)
def cmd_rm(a: argparse.Namespace, ctx: Context) -> Result:
    """Remove a file (or a folder with -r) as a new commit; history keeps the old versions."""
    vol = ctx.volume(a.name)
    _fresh(vol)
    vol.remove_file(a.path, recursive=a.recursive)
    return Message(f"Removed {_where(vol, a.path)}.")


# -- history ------------------------------------------------------------------------------------------
@command(
    "history",
    "list a volume's commits, newest first",
    NAME,
    arg(
        "-n",
        "--limit",
        metavar="N",
        type=_non_negative_int,
        default=None,
        help="show only the newest N",
    ),
    table=True,
)
def cmd_history(a: argparse.Namespace, ctx: Context) -> Result:
    """List a volume's commits, newest first, with what each added, modified and deleted."""
    vol = ctx.volume(a.name)
    commits = vol.history(limit=a.limit)
    rows = [
        {
            "seq": c.seq,
            "time": c.time,
            "author": c.author,
            "host": c.host,
            "kind": c.kind,
            "message": c.message,
            "added": c.added,
            "modified": c.modified,
            "deleted": c.deleted,
            "bytes_new": c.bytes_new,
            "tags": ", ".join(c.tags),
            "changes": f"+{c.added} ~{c.modified} -{c.deleted}",
        }
        for c in commits
    ]
    return Table(
        [
            Column("seq", "Commit", right=True),
            Column("time", "Time", local_time),
            Column("author", "Author"),
            Column("message", "Message"),
            Column("tags", "Tags"),
            Column("changes", "Changes"),
            Column("bytes_new", "New data", human_size, right=True),
        ],
        rows,
        title=f"History of {vol.name!r}",
        json_rows=[{k: _jsonable(v) for k, v in r.items() if k != "changes"} for r in rows],
    )


@command(
    "diff",
    "show what changed between two commits",
    NAME,
    arg(
        "a",
        metavar="FROM",
        nargs="?",
        type=_non_negative_int,
        default=None,
        help="the older commit (default: the one before TO)",
    ),
    arg(
        "b",
        metavar="TO",
        nargs="?",
        type=_non_negative_int,
        default=None,
        help="the newer commit (default: the newest)",
    ),
    table=True,
)
def cmd_diff(a: argparse.Namespace, ctx: Context) -> Result:
    """List the paths added, modified or deleted from commit FROM to commit TO.

    With no commits given: what the newest commit changed.
    """
    vol = ctx.volume(a.name)
    head = _fresh(vol)
    b = a.b if a.b is not None else (head.seq if head is not None else 0)
    start = a.a if a.a is not None else max(b - 1, 0)
    changes = vol.diff(start, b)
    rows = [
        {
            "change": d.change,
            "path": d.path,
            "type": _TYPE_NAMES.get(int(d.type), "unknown"),
            "old_size": d.old_size,
            "new_size": d.new_size,
        }
        for d in changes
    ]
    return Table(
        [
            Column("change", "Change"),
            Column("path", "Path"),
            Column("type", "Type"),
            Column("old_size", "Old size", human_size, right=True),
            Column("new_size", "New size", human_size, right=True),
        ],
        rows,
        title=f"Changes in {vol.name!r} from commit {start} to commit {b}",
        empty=f"No changes in {vol.name!r} from commit {start} to commit {b}.",
    )


@command(
    "restore",
    "bring back the volume, or one path, as it was at a commit",
    NAME,
    arg("commit", metavar="COMMIT", type=_non_negative_int, help="the commit to go back to"),
    arg(
        "path",
        metavar="PATH",
        nargs="?",
        default=None,
        help="only this file or folder (default: everything)",
    ),
)
def cmd_restore(a: argparse.Namespace, ctx: Context) -> Result:
    """Restore the whole volume, or one file or folder, as it was at COMMIT.

    Recorded as a new commit: the commits in between stay in the history. A path that
    did not exist at COMMIT is removed.
    """
    vol = ctx.volume(a.name)
    _fresh(vol)
    info = vol.restore(a.commit, a.path)
    what = _where(vol, a.path) if a.path else f"volume {vol.name!r}"
    if info is None:
        return Message(
            f"Nothing to restore: {what} is as it was at commit {a.commit}.", {"commit": None}
        )
    return Message(
        f"Restored {what} as it was at commit {a.commit}: new commit {info.seq}.",
        {"commit": info.seq},
    )


@command(
    "verify",
    "check a volume's stored data for damage",
    NAME,
    arg("--metadata-only", action="store_true", help="check commits and trees, not the file data"),
    table=True,
)
def cmd_verify(a: argparse.Namespace, ctx: Context) -> Result:
    """Re-read and re-hash everything reachable from every commit; exit code 1 on damage."""
    vol = ctx.volume(a.name)
    report = vol.verify(read_data=not a.metadata_only)
    ok = report.ok
    fields: list[tuple[str, str, Any, str]] = [
        ("ok", "Result", ok, "no damage found" if ok else f"{len(report.errors)} problem(s) found"),
        ("commits", "Commits", report.commits, str(report.commits)),
        ("trees", "Trees", report.trees, str(report.trees)),
        ("chunks", "Chunks", report.chunks, str(report.chunks)),
        ("packs", "Packs", report.packs, str(report.packs)),
        ("bytes_read", "Bytes read", report.bytes_read, human_size(report.bytes_read)),
    ]
    extra: list[Result] = []
    if report.errors:
        extra.append(Table([Column("error", "Problem")], [{"error": e} for e in report.errors]))
    return Record(
        fields,
        title=f"Verify {vol.name!r}",
        extra=extra,
        json_extra={"errors": list(report.errors)},
        exit_code=EXIT_OK if ok else EXIT_FAILURE,
    )


@command(
    "du",
    "count the files and bytes under a path",
    NAME,
    arg(
        "path", metavar="PATH", nargs="?", default="/", help="a folder or file (default: the root)"
    ),
    AT,
    table=True,
)
def cmd_du(a: argparse.Namespace, ctx: Context) -> Result:
    """Count the files and logical bytes under PATH (before deduplication and compression)."""
    vol = ctx.volume(a.name)
    _fresh(vol)
    usage = vol.du(a.path, at=a.at)
    return Record(
        [
            ("path", "Path", usage.path, f"{vol.name}:/{usage.path}"),
            ("files", "Files", usage.files, str(usage.files)),
            ("bytes", "Size", usage.bytes, human_size(usage.bytes)),
        ],
        title=f"Disk usage of {_where(vol, a.path)}",
    )


# -- retention and garbage collection ------------------------------------------------------------------
def _duration_arg(text: str) -> float:
    from .repository.gc import parse_duration

    try:
        return parse_duration(text)
    except InvalidError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


@command(
    "gc",
    "expire history outside the retention policy and free its space",
    NAME,
    arg("--dry-run", action="store_true", help="report what would be freed; change nothing"),
    arg(
        "--grace",
        metavar="DURATION",
        type=_duration_arg,
        default=None,
        help="override the policy's grace period (e.g. 0, 10m, 1h)",
    ),
    table=True,
)
def cmd_gc(a: argparse.Namespace, ctx: Context) -> Result:
    """Expire the commits the volume's retention policy does not keep, and delete the data
    only they used (after the grace period, which protects commits still in flight).

    Set the policy with `retention`; by default every commit is kept.
    """
    vol = ctx.volume(a.name)
    report = vol.gc(dry_run=a.dry_run, grace=a.grace)
    return Record(
        [
            ("dry_run", "Dry run", report.dry_run, "yes" if report.dry_run else "no"),
            (
                "expired",
                "Commits expired",
                report.expired,
                ", ".join(map(str, report.expired)) or "none",
            ),
            ("kept", "Commits kept", report.kept, str(report.kept)),
            ("packs_repacked", "Packs repacked", report.packs_repacked, str(report.packs_repacked)),
            (
                "packs_condemned",
                "Packs condemned",
                report.packs_condemned,
                str(report.packs_condemned),
            ),
            (
                "objects_deleted",
                "Objects deleted",
                report.objects_deleted,
                str(report.objects_deleted),
            ),
            (
                "bytes_freed",
                "Freed" if not report.dry_run else "Would free",
                report.bytes_freed,
                human_size(report.bytes_freed),
            ),
        ],
        title=f"Garbage collection of {vol.name!r}",
    )


@command(
    "retention",
    "show or set which history gc keeps",
    NAME,
    arg(
        "--keep-last",
        metavar="N",
        type=_non_negative_int,
        default=None,
        help="keep the newest N commits",
    ),
    arg(
        "--keep-within",
        metavar="DURATION",
        type=_duration_arg,
        default=None,
        help="keep commits younger than this (e.g. 7d)",
    ),
    arg(
        "--keep-hourly",
        metavar="N",
        type=_non_negative_int,
        default=None,
        help="keep the newest commit of each of the last N hours",
    ),
    arg(
        "--keep-daily",
        metavar="N",
        type=_non_negative_int,
        default=None,
        help="keep the newest commit of each of the last N days",
    ),
    arg(
        "--squash-auto-after",
        metavar="DURATION",
        type=_duration_arg,
        default=None,
        help="thin background commits older than this to one per run",
    ),
    arg(
        "--grace",
        metavar="DURATION",
        type=_duration_arg,
        default=None,
        help="wait this long before deleting condemned data (default 1h)",
    ),
    arg("--keep-all", action="store_true", help="go back to keeping every commit"),
    table=True,
)
def cmd_retention(a: argparse.Namespace, ctx: Context) -> Result:
    """Show the volume's retention policy, or set it (any option replaces the whole policy).

    Tagged commits, the newest commit and commit 0 are always kept.
    """
    vol = ctx.volume(a.name)
    options = {
        "keep_last": a.keep_last,
        "keep_within": a.keep_within,
        "keep_hourly": a.keep_hourly,
        "keep_daily": a.keep_daily,
        "squash_auto_after": a.squash_auto_after,
        "grace": a.grace,
    }
    if a.keep_all or any(v is not None for v in options.values()):
        policy = vol.set_retention(**({"grace": a.grace} if a.keep_all else options))
    else:
        policy = vol.retention
    return Record(
        [
            ("policy", "Policy", policy.describe(), policy.describe()),
            *[
                (
                    k,
                    k.replace("_", " ").capitalize(),
                    getattr(policy, k),
                    "-" if getattr(policy, k) is None else str(getattr(policy, k)),
                )
                for k in options
            ],
        ],
        title=f"Retention of {vol.name!r}",
    )


@command(
    "tag",
    "tag a commit so that gc always keeps it",
    NAME,
    arg("commit", metavar="COMMIT", type=_non_negative_int, help="the commit to tag"),
    arg("tag", metavar="TAG", help="the tag's name (letters, digits, '.', '_', '-')"),
    arg("--force", action="store_true", help="move the tag if it exists"),
)
def cmd_tag(a: argparse.Namespace, ctx: Context) -> Result:
    """Tag COMMIT as TAG; tags show in `history` and survive every retention policy."""
    vol = ctx.volume(a.name)
    vol.tag(a.commit, a.tag, force=a.force)
    return Message(
        f"Tagged commit {a.commit} of {vol.name!r} as {a.tag!r}.",
        {"commit": a.commit, "tag": a.tag},
    )


@command("untag", "remove a tag", NAME, arg("tag", metavar="TAG", help="the tag to remove"))
def cmd_untag(a: argparse.Namespace, ctx: Context) -> Result:
    """Remove TAG: its commit falls under the retention policy again."""
    vol = ctx.volume(a.name)
    vol.untag(a.tag)
    return Message(f"Removed tag {a.tag!r} from {vol.name!r}.", {"tag": a.tag})


# -- mounts (in a kernel) --------------------------------------------------------------------------------
MAGIC = ("magic",)


def _mounts() -> list[Any]:
    from .mount import mounts

    return list(mounts())


def _find_mount(name: str | None, ctx: Context) -> Any:
    active = _mounts()
    prog = PROGS[ctx.frontend]
    if name is None:
        if len(active) == 1:
            return active[0]
        if not active:
            raise UsageError(f"no volume is mounted here: mount one with `{prog} mount NAME`")
        names = ", ".join(sorted(m.volume.name for m in active))
        raise UsageError(f"several volumes are mounted ({names}): name the one you mean")
    from .names import check_name

    check_name(name)
    found = [m for m in active if m.volume.name == name]
    if ctx.store_url and len(found) > 1:
        url = ctx.store().url
        found = [m for m in found if m.volume.store.url == url]
    if not found:
        raise UsageError(
            f"volume {name!r} is not mounted here: mount it with `{prog} mount {name}`"
        )
    if len(found) > 1:
        raise UsageError(f"volume {name!r} is mounted from several stores: pass --store URL")
    return found[0]


@command(
    "mount",
    "mount a volume into a local folder",
    NAME,
    arg("path", metavar="PATH", nargs="?", default=None, help="the local folder (default: ./NAME)"),
    arg("--create", action="store_true", help="create the volume if it does not exist"),
    arg("--read-only", action="store_true", help="never commit from this mount"),
    arg(
        "--interval",
        metavar="SECONDS",
        type=_positive_float,
        default=None,
        help="seconds between background commit checks (default: c.VolumeConfig.commit_interval, 5)",
    ),
    arg(
        "--no-background", action="store_true", help="commit only on `%%volume commit` and unmount"
    ),
    where=MAGIC,
)
def cmd_mount(a: argparse.Namespace, ctx: Context) -> Result:
    """Materialize the volume's newest commit in a local folder and keep it in sync.

    Work on plain files there. Changes are committed in the background every few seconds
    (and after each cell, and at exit) unless --no-background or --read-only;
    `%volume reload` brings in what others committed.
    """
    vol = ctx.volume(a.name, create=a.create)
    interval = a.interval if a.interval is not None else ctx.config.commit_interval
    background = not a.no_background
    m = vol.mount(
        a.path,
        read_only=a.read_only,
        interval=interval,
        background=background,
        ignore=list(ctx.config.ignore_patterns),
    )
    st = m.status()
    if a.read_only:
        how = "read-only"
    elif background:
        how = f"changes are committed every {interval:g} s"
    else:
        how = "commit with `%volume commit`"
    return Message(
        f"Mounted volume {vol.name!r} at {m.path} (commit {st.base_seq}; {how}).",
        {"path": str(m.path), "commit": st.base_seq},
    )


@command("unmount", "commit and unmount a mounted volume", OPTIONAL_NAME, where=MAGIC)
def cmd_unmount(a: argparse.Namespace, ctx: Context) -> Result:
    """Commit what changed and stop syncing the folder; its files stay where they are."""
    m = _find_mount(a.name, ctx)
    info = m.unmount()
    done = f" (committed as commit {info.seq})" if info is not None else ""
    return Message(f"Unmounted volume {m.volume.name!r} from {m.path}{done}.")


@command(
    "commit",
    "commit a mounted volume's local changes now",
    OPTIONAL_NAME,
    arg("-m", "--message", metavar="MESSAGE", default=None, help="the commit message"),
    where=MAGIC,
)
def cmd_commit(a: argparse.Namespace, ctx: Context) -> Result:
    """Commit the mounted folder's changes now (the background committer does it too)."""
    m = _find_mount(a.name, ctx)
    info = m.commit(a.message)
    if info is None:
        return Message(f"Nothing to commit in {m.volume.name!r}.", {"commit": None})
    return Message(
        f"Committed {m.volume.name!r}: commit {info.seq} (+{info.added} ~{info.modified} -{info.deleted}).",
        {"commit": info.seq},
    )


@command("reload", "bring a mounted folder up to the newest commit", OPTIONAL_NAME, where=MAGIC)
def cmd_reload(a: argparse.Namespace, ctx: Context) -> Result:
    """Commit local changes, then bring in what others committed.

    Refused (VolumeBusyError) while files under the mount are open in this kernel.
    """
    m = _find_mount(a.name, ctx)
    m.reload()
    st = m.status()
    return Message(
        f"Reloaded {m.volume.name!r} at {m.path}: now at commit {st.base_seq}.",
        {"commit": st.base_seq},
    )


@command(
    "status",
    "show mounted volumes and their uncommitted changes",
    OPTIONAL_NAME,
    where=MAGIC,
    table=True,
)
def cmd_status(a: argparse.Namespace, ctx: Context) -> Result:
    """Show each mount (or the one named): uncommitted changes, commits not yet reloaded,
    and the last background commit error."""
    chosen = [_find_mount(a.name, ctx)] if a.name is not None else _mounts()
    chosen.sort(key=lambda m: m.volume.name)
    rows, changes, data = [], [], []
    for m in chosen:
        st = m.status()
        rows.append(
            {
                "volume": m.volume.name,
                "path": str(m.path),
                "mode": "read-only" if getattr(st, "read_only", False) else "read-write",
                "commit": getattr(st, "base_seq", None),
                "behind": st.behind,
                "added": len(st.added),
                "modified": len(st.modified),
                "deleted": len(st.deleted),
                "last_error": st.last_error or "",
            }
        )
        data.append(
            {
                "volume": m.volume.name,
                "path": str(m.path),
                "read_only": bool(getattr(st, "read_only", False)),
                "commit": getattr(st, "base_seq", None),
                "behind": st.behind,
                "added": list(st.added),
                "modified": list(st.modified),
                "deleted": list(st.deleted),
                "last_error": st.last_error,
            }
        )
        for kind, paths in (
            ("added", st.added),
            ("modified", st.modified),
            ("deleted", st.deleted),
        ):
            changes.extend({"volume": m.volume.name, "change": kind, "path": p} for p in paths)
    summary = Table(
        [
            Column("volume", "Volume"),
            Column("path", "Mounted at"),
            Column("mode", "Mode"),
            Column("commit", "Commit", right=True),
            Column("behind", "Behind", right=True),
            Column("added", "Added", right=True),
            Column("modified", "Modified", right=True),
            Column("deleted", "Deleted", right=True),
            Column("last_error", "Last error"),
        ],
        rows,
        title="Mounted volumes",
        empty=f"No volume is mounted here: mount one with `{PROGS[ctx.frontend]} mount NAME`.",
    )
    parts: list[Result] = [summary]
    if changes:
        parts.append(
            Table(
                [Column("volume", "Volume"), Column("change", "Change"), Column("path", "Path")],
                changes,
                title="Uncommitted changes",
            )
        )
    return Group(parts, json=data)


@command("browse", "open the file and history browser widget", NAME, where=MAGIC)
def cmd_browse(a: argparse.Namespace, ctx: Context) -> Result:
    """Show a widget to browse, upload, download and restore the volume's files."""
    try:
        from .widgets import VolumeBrowser  # type: ignore[attr-defined]
    except ImportError:
        raise UsageError(
            "the volume browser is not available yet in this version of jupyter-volume: "
            "use %volume ls / get / put / history meanwhile"
        ) from None
    vol = ctx.volume(a.name)
    return DisplayObject(VolumeBrowser(vol), f"VolumeBrowser({vol.name!r})")


# -- shell (in a terminal) ----------------------------------------------------------------------------------
@command(
    "shell",
    "open a shell in a temporary mount of a volume",
    NAME,
    arg("--read-only", action="store_true", help="do not commit anything"),
    arg(
        "-c",
        "--command",
        dest="shell_command",  # "command" is the subcommand's name
        metavar="COMMAND",
        default=None,
        help="run COMMAND with $SHELL -c instead of an interactive shell",
    ),
    where=("cli",),
)
def cmd_shell(a: argparse.Namespace, ctx: Context) -> Result:
    """Mount the volume in a temporary folder and start $SHELL there (like
    `modal shell --volume`). Changes are committed in the background and when the
    shell exits; then the folder is removed. Exits with the shell's exit code.
    """
    import signal
    import subprocess
    import tempfile

    vol = ctx.volume(a.name)
    tmp = Path(tempfile.mkdtemp(prefix=f"jupyter-volume-{vol.name}-"))
    try:
        m = vol.mount(
            tmp / vol.name,
            read_only=a.read_only,
            interval=ctx.config.commit_interval,
            background=not a.read_only,
            ignore=list(ctx.config.ignore_patterns),
        )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    sh = os.environ.get("SHELL") or "/bin/sh"
    argv = [sh, "-c", a.shell_command] if a.shell_command is not None else [sh]
    env = dict(os.environ, JUPYTER_VOLUME_NAME=vol.name, JUPYTER_VOLUME_MOUNT=str(m.path))
    if a.shell_command is None:
        ctx.info(
            f"Volume {vol.name!r} is mounted at {m.path}. "
            + (
                "It is read-only."
                if a.read_only
                else "Changes are committed when you exit the shell."
            )
        )
    # The shell owns Ctrl-C; we must survive it to commit. A handler (not SIG_IGN) is reset
    # to the default in the child on exec, so programs in the shell still get Ctrl-C.
    previous = signal.signal(signal.SIGINT, lambda *_: None)
    try:
        rc = subprocess.call(argv, cwd=m.path, env=env)
    finally:
        signal.signal(signal.SIGINT, previous)
        try:
            info = m.unmount()
        except BaseException:
            ctx.info(f"jupyter volume: the commit failed; your files are kept in {m.path}")
            raise
    shutil.rmtree(tmp, ignore_errors=True)
    msg = (
        f"Committed {vol.name!r}: commit {info.seq}."
        if info is not None
        else f"No changes to commit in {vol.name!r}."
    )
    result = Message(msg, {"commit": info.seq if info is not None else None, "exit_code": rc})
    result.exit_code = rc if rc >= 0 else 128 - rc
    result.to_stderr = True  # stdout belonged to the shell
    return result
