"""The ``%volume`` line magic: ``%load_ext jupyter_volume``, then ``%volume COMMAND ...``.

Thin on purpose: the grammar and the work live in :mod:`jupyter_volume.commands` (shared
with the ``jupyter volume`` CLI). This module tokenizes the line, displays the result
(HTML table with a text fallback, cut to :data:`MAX_ROWS` rows), returns ``--json`` data,
and turns user mistakes, and failures that are no bug (the store stopped answering), into
:class:`~IPython.core.error.UsageError` (one line, no traceback), as the CLI prints them
on one line. Bugs stay real exceptions. Ctrl-C is IPython's KeyboardInterrupt.

Layer: a front end; imports IPython (only ever loaded inside IPython).
"""

from __future__ import annotations

import codecs
import dataclasses
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


#: The characters that separate words, as ``shlex.split`` has them (``str.isspace``
#: would also take a non-breaking space pasted from a web page, which shlex keeps).
_BLANKS = " \t\r\n"

#: The most rows a table shows in a cell: ``ls -r`` of a big volume, or ``history`` of a
#: long-mounted one, would put megabytes of HTML into the notebook. A note says how many
#: more there are; ``--json`` returns every row.
MAX_ROWS = 500


def strip_comment(line: str) -> str:
    """``line`` without a trailing ``# comment``, the way a shell reads one.

    IPython hands a line magic everything after its name, comments included. As in a
    shell, ``#`` starts a comment only at the start of a word and outside quotes, so
    ``a#b``, ``"x # y"`` and ``\\#`` stay, and an apostrophe inside the comment is never
    taken for an opening quote. Words end at the blanks :func:`shlex.split` splits at
    (:data:`_BLANKS`): a non-breaking space is part of a word, there as here.
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
            return line[:i].rstrip(_BLANKS)
        at_word_start = quote is None and c in _BLANKS
        i += 1
    return line


def split_line(line: str) -> list[str]:
    """The arguments of a ``%volume`` line: a trailing comment dropped, then split as
    a shell does."""
    return shlex.split(strip_comment(line))


def _cut(result: commands.Result) -> commands.Result:
    """``result`` with each of its tables cut to :data:`MAX_ROWS` rows, and a note after
    a cut one saying how many rows it left out."""
    if isinstance(result, commands.Table) and len(result.rows) > MAX_ROWS:
        n = len(result.rows)
        note = (
            f"... {n - MAX_ROWS} more rows not shown ({n} in all): "
            "add --json to get every row as Python data"
        )
        shown = dataclasses.replace(result, rows=result.rows[:MAX_ROWS])
        return commands.Group([shown, commands.Message(note)])
    if isinstance(result, commands.Group):
        return dataclasses.replace(result, parts=[_cut(p) for p in result.parts])
    if isinstance(result, commands.Record):
        return dataclasses.replace(result, extra=[_cut(e) for e in result.extra])
    return result


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
            if commands.exit_code_for(e) is not None:
                # a failure that is no bug (the store stopped answering, a conflict, a
                # local disk error): one line, as the CLI prints it; the cause stays
                # attached (the exception's __cause__) for whoever wants the details
                raise UsageError(commands.one_line(e)) from e
            raise  # a bug: the traceback is what a report needs
        if result is None:
            return None
        if getattr(args, "json", False):
            return result.to_json()
        if isinstance(result, commands.Message):
            print(result.text())
        elif isinstance(result, commands.DisplayObject):
            display(result.obj)
        else:
            display(_cut(result))
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
