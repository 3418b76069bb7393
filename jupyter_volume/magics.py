"""The ``%volume`` line magic: ``%load_ext jupyter_volume``, then ``%volume COMMAND ...``.

Thin on purpose: the grammar and the work live in :mod:`jupyter_volume.commands` (shared
with the ``jupyter volume`` CLI). This module tokenizes the line, displays the result
(HTML table with a text fallback), returns ``--json`` data, and turns user mistakes into
:class:`~IPython.core.error.UsageError` (one line, no traceback). Bugs stay real exceptions.

Layer: a front end; imports IPython (only ever loaded inside IPython).
"""

from __future__ import annotations

import codecs
import shlex
import sys
from typing import Any

from IPython.core.error import StdinNotImplementedError, UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.display import display

from . import commands

__all__ = ["VolumeMagics", "load_ipython_extension", "unload_ipython_extension"]


def _confirm(prompt: str) -> bool:
    try:
        answer = input(prompt)
    except (EOFError, OSError, StdinNotImplementedError):
        raise commands.UsageError(
            "cannot ask for confirmation here (no stdin): pass --yes"
        ) from None
    return answer.strip().lower() in ("y", "yes")


def strip_comment(line: str) -> str:
    """``line`` without a trailing ``# comment``, the way a shell reads one.

    IPython hands a line magic everything after its name, comments included. As in a
    shell, ``#`` starts a comment only at the start of a word and outside quotes, so
    ``a#b``, ``"x # y"`` and ``\\#`` stay, and an apostrophe inside the comment is never
    taken for an opening quote.
    """
    quote: str | None = None
    at_word_start = True
    i = 0
    while i < len(line):
        c = line[i]
        if quote is not None:
            if c == quote:
                quote = None
            elif c == "\\" and quote == '"':
                i += 1
        elif c == "\\":
            i += 1
        elif c in "'\"":
            quote = c
        elif c == "#" and at_word_start:
            return line[:i].rstrip()
        at_word_start = quote is None and c.isspace()
        i += 1
    return line


def split_line(line: str) -> list[str]:
    """The arguments of a ``%volume`` line: a trailing comment dropped, then split as
    a shell does."""
    return shlex.split(strip_comment(line))


class _TextOut:
    """``get NAME PATH -`` in a notebook: the file's text goes to the cell's output."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def __call__(self, data: bytes) -> None:
        sys.stdout.write(self._decoder.decode(data))

    def flush(self) -> None:
        sys.stdout.write(self._decoder.decode(b"", final=True))
        sys.stdout.flush()


@magics_class
class VolumeMagics(Magics):
    """Holds the ``%volume`` magic."""

    @line_magic
    def volume(self, line: str = "") -> Any:
        try:
            argv = split_line(line)
        except ValueError as e:
            raise UsageError(f"%volume: cannot split the line into arguments: {e}") from None
        out = _TextOut()
        try:
            args = commands.parse(argv, "magic")
            from .config import load_config

            config = load_config(extra=self.shell.config if self.shell is not None else None)
            ctx = commands.Context("magic", config=config, confirm=_confirm, write_bytes=out)
            try:
                result = commands.run(args, ctx)
            finally:
                out.flush()
        except commands.HelpShown:
            return None
        except Exception as e:
            if commands.is_user_error(e) or commands.exit_code_for(e) == commands.EXIT_USAGE:
                raise UsageError(commands.one_line(e)) from None
            raise
        if result is None:
            return None
        if getattr(args, "json", False):
            return result.to_json()
        if isinstance(result, commands.Message):
            print(result.text())
        elif isinstance(result, commands.DisplayObject):
            display(result.obj)
        else:
            display(result)
        return None

    volume.__doc__ = commands.help_text("magic")


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%volume`` (``%load_ext jupyter_volume``)."""
    ipython.register_magics(VolumeMagics)


def unload_ipython_extension(ipython: Any) -> None:
    """Remove ``%volume`` (``%unload_ext jupyter_volume``); mounts stay mounted."""
    manager = ipython.magics_manager
    manager.magics["line"].pop("volume", None)
    manager.registry.pop("VolumeMagics", None)
