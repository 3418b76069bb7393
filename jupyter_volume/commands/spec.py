"""The shared argument spec: how a command's arguments are declared, and the arguments
several commands share.

A command module declares each argument with :func:`arg` (the arguments of
``ArgumentParser.add_argument``) and reuses the declarations here (:data:`NAME`,
:data:`OPTIONAL_NAME`, :data:`AT`, :func:`commit_arg`) so that the same argument reads
the same in every command and in both front ends.

Layer: part of the commands front end; imports nothing from the package at import time.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AT",
    "CLI",
    "FRONTENDS",
    "MAGIC",
    "NAME",
    "OPTIONAL_NAME",
    "PROGS",
    "STORE_HELP",
    "Arg",
    "arg",
    "commit_arg",
    "count_option",
    "duration",
    "duration_option",
    "flag",
    "non_negative_int",
    "option",
    "optional",
    "positive_float",
]

#: The front ends one grammar serves, and how each names itself in usage lines.
FRONTENDS = ("cli", "magic")
PROGS = {"cli": "jupyter volume", "magic": "%volume"}
#: ``where=`` of a command that needs a long-lived Python process (a kernel).
MAGIC = ("magic",)
#: ``where=`` of a command that needs a terminal.
CLI = ("cli",)

STORE_HELP = "the object store (file:///path or s3://bucket/prefix)"


@dataclass(frozen=True)
class Arg:
    """One declared argument: what ``ArgumentParser.add_argument`` is called with."""

    args: tuple[str, ...]
    kwargs: dict[str, Any]


def arg(*args: str, **kwargs: Any) -> Arg:
    """One argument, as for ``ArgumentParser.add_argument``."""
    return Arg(args, kwargs)


def flag(*flags: str, help: str) -> Arg:
    """An on/off option such as ``-f/--force``: False unless given."""
    return arg(*flags, action="store_true", help=help)


def option(
    *flags: str, metavar: str, help: str, type: Callable[[str], Any] | None = None, **kw: Any
) -> Arg:
    """An option that takes a value, such as ``--limit N``: None unless given."""
    if type is not None:
        kw["type"] = type
    return arg(*flags, metavar=metavar, default=None, help=help, **kw)


def optional(
    dest: str,
    metavar: str,
    help: str,
    *,
    default: Any = None,
    type: Callable[[str], Any] | None = None,
) -> Arg:
    """A positional argument that may be left out, such as ``[PATH]``: ``default`` then."""
    kw: dict[str, Any] = {"type": type} if type is not None else {}
    return arg(dest, metavar=metavar, nargs="?", default=default, help=help, **kw)


# -- argument types ---------------------------------------------------------------------------------
def non_negative_int(text: str) -> int:
    """An argparse type: a whole number >= 0 (commit numbers, counts)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a finite number of seconds (to commit only when asked and at "
            "unmount, use --no-background)"
        )
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def duration(text: str) -> float:
    """An argparse type: a duration such as ``0``, ``10m``, ``1h``, ``7d``, in seconds."""
    from ..errors import InvalidError
    from ..repository.gc import parse_duration

    try:
        return parse_duration(text)
    except InvalidError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


# -- arguments several commands share --------------------------------------------------------------
NAME = arg("name", metavar="NAME", help="the volume's name")
OPTIONAL_NAME = arg(
    "name",
    metavar="NAME",
    nargs="?",
    default=None,
    help="the mounted volume (optional when only one is mounted)",
)
AT = arg("--at", metavar="COMMIT", type=non_negative_int, default=None, help="read an older commit")


def duration_option(flag: str, help: str) -> Arg:
    """An option taking a duration (``--grace 1h``): seconds, None unless given."""
    return option(flag, metavar="DURATION", type=duration, help=help)


def count_option(*flags: str, help: str) -> Arg:
    """An option taking a whole number >= 0 (``--keep-last N``): None unless given."""
    return option(*flags, metavar="N", type=non_negative_int, help=help)


def commit_arg(help: str) -> Arg:
    """The positional COMMIT argument (a commit number), with its meaning in ``help``."""
    return arg("commit", metavar="COMMIT", type=non_negative_int, help=help)
