"""The routing table: every subcommand, its arguments and its handler, and the parser
both front ends build from it.

A command module declares each subcommand once with the :func:`command` decorator; that
puts a :class:`Command` into :data:`COMMANDS`. :func:`build_parser` turns the table into
an argparse parser for a front end (``"cli"`` or ``"magic"``), :func:`parse` parses a
command line, and :func:`run` calls the handler.

A subcommand's ``--help`` is the same text in both front ends except for the program
name in its usage line (``jupyter volume ls`` or ``%volume ls``).

Layer: part of the commands front end; imports only the other parts of it.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .context import Context
from .exits import EXIT_CODES_HELP, HelpShown, UsageError
from .render import Result
from .spec import FRONTENDS, PROGS, STORE_HELP, Arg

ENV_HELP = (
    "the environment: a separate namespace of volumes in the store (default: $JUPYTER_VOLUME_ENV)"
)

__all__ = ["COMMANDS", "Command", "build_parser", "command", "help_text", "parse", "run"]

#: The end of every subcommand's ``--help``, the same in both front ends.
SUBCOMMAND_EPILOG = (
    EXIT_CODES_HELP
    + "\nIn a notebook, %volume raises UsageError (one line) instead of exiting with 2 or 3."
)
JSON_HELP = "print the result as JSON instead of a table (%%volume returns it as Python data)"


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so the magic can turn errors into UsageError."""

    subcommands: dict[str, argparse.ArgumentParser]
    #: Options may come between positionals (`put v f.txt -f docs/`, as Modal's click
    #: CLI and `cp`/`ls` take them); set on subcommands without an ``...`` remainder.
    intermixed = False
    _in_intermixed = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        """As argparse's, but intermixed (see :attr:`intermixed`): plain argparse gives
        the first run of positionals to the optional ones' defaults, and then refuses
        the positional after the option as an unrecognized argument."""
        if not self.intermixed or self._in_intermixed:
            return super().parse_known_args(args, namespace)
        self._in_intermixed = True  # it calls parse_known_args itself, twice
        saved = self.usage
        if saved is None:
            # argparse keeps the formatted usage meanwhile, which is formatted again with
            # %-substitution: the magic's "%volume" must stay literal
            self.usage = self.format_usage().removeprefix("usage: ").rstrip().replace("%", "%%")
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self.usage = saved
            self._in_intermixed = False

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        """As argparse's, but arguments nobody took are reported by the command typed
        (its usage, and ``see jupyter volume ls --help``), not by the top-level parser:
        argparse hands a subcommand's leftovers up to the parser it was called from."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            subcommands = getattr(self, "subcommands", {})
            where = subcommands.get(getattr(parsed, "command", None), self)
            where.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def error(self, message: str) -> Any:
        # a typo of a command ('lss'): name the nearest one, as git does
        bad = re.match(r"argument \S+: invalid choice: '(.*)' \(choose from (.*)\)$", message)
        if bad is not None:
            choices = re.findall(r"'([^']*)'", bad.group(2))
            near = difflib.get_close_matches(bad.group(1), choices, n=1)
            if near:
                message += f"; did you mean '{near[0]}'?"
        raise UsageError(f"{message} (see {self.prog} --help)", self.format_usage(), self.prog)

    def exit(self, status: int = 0, message: str | None = None) -> Any:
        if message:
            sys.stderr.write(message)
        raise HelpShown(status)


Handler = Callable[[argparse.Namespace, Context], Result | None]


@dataclass(frozen=True)
class Command:
    """A subcommand: its arguments, handler, and the front ends it works in."""

    name: str
    help: str
    description: str
    args: tuple[Arg, ...]
    handler: Handler
    where: tuple[str, ...]
    table: bool


#: name -> Command, in the order ``--help`` lists them (the order the groups register).
COMMANDS: dict[str, Command] = {}


def command(
    name: str,
    help: str,
    *args: Arg,
    where: tuple[str, ...] = FRONTENDS,
    table: bool = False,
    description: str = "",
) -> Callable[[Handler], Handler]:
    """Declare subcommand ``name`` with its arguments; the decorated function handles it.

    ``where`` names the front ends it works in; ``table`` adds ``--json``. The handler's
    docstring is the description ``--help`` shows.
    """

    def register(fn: Handler) -> Handler:
        if name in COMMANDS:
            raise ValueError(f"two commands are named {name!r}")
        doc = inspect.cleandoc(fn.__doc__) if fn.__doc__ else help
        COMMANDS[name] = Command(name, help, description or doc, args, fn, where, table)
        return fn

    return register


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
            "in jupyter_volume_config.py, else a folder in the Jupyter data dir. A store named\n"
            "with --store must exist: only creating a volume, Dict or network file system\n"
            "(`create`, `dict create`, `nfs create`, `nfs mount --create`) makes a new one. The\n"
            "environment is -e/--env ENV, else $JUPYTER_VOLUME_ENV, else\n"
            "c.VolumeConfig.environment, else the default one.\n\n" + EXIT_CODES_HELP
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
    parser.add_argument("--store", metavar="URL", default=None, help=STORE_HELP)
    parser.add_argument("-e", "--env", metavar="ENV", default=None, help=ENV_HELP)
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"jupyter-volume {__version__}")
    parser.subcommands = {}
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", title="commands", parser_class=_Parser
    )
    for cmd in COMMANDS.values():
        if frontend not in cmd.where:
            continue
        sp = sub.add_parser(
            cmd.name, help=cmd.help, description=cmd.description, epilog=SUBCOMMAND_EPILOG
        )
        parser.subcommands[cmd.name] = sp
        for a in cmd.args:
            sp.add_argument(*a.args, **a.kwargs)
        # `dict`/`nfs` pass `...` on to their actions, which parse it themselves
        sp.intermixed = not any(a.kwargs.get("nargs") == argparse.REMAINDER for a in cmd.args)
        sp.add_argument(
            "--store",
            metavar="URL",
            default=argparse.SUPPRESS,  # so `--store` before the command is not overwritten
            help=STORE_HELP,
        )
        if not any(o in ("-e", "--env") for a in cmd.args for o in a.args):
            sp.add_argument("-e", "--env", metavar="ENV", default=argparse.SUPPRESS, help=ENV_HELP)
        if cmd.table:
            sp.add_argument("--json", action="store_true", help=JSON_HELP)
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
        if tok in ("--store", "-e", "--env"):
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
    ctx.environment = getattr(args, "env", None) or ctx.environment
    return COMMANDS[args.command].handler(args, ctx)
