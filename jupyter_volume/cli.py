"""``jupyter volume`` (console script ``jupyter-volume``): volumes from a terminal.

``jupyter`` runs ``jupyter-volume`` from PATH for ``jupyter volume ...``, so both spellings
work. The grammar is :mod:`jupyter_volume.commands`, shared with the ``%volume`` magic;
this module only prints results and maps errors to exit codes (see ``--help``).

Layer: a front end. Imports stay lazy and never reach IPython or Jupyter server, so the
command starts fast.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

__all__ = ["main"]

PROG = "jupyter volume"


def _confirm(prompt: str) -> bool:
    from .commands import UsageError

    if not sys.stdin.isatty():
        raise UsageError(
            "refusing to delete without confirmation (stdin is not a terminal): pass --yes"
        )
    try:
        answer = input(prompt)
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def _write_stdout(data: bytes) -> None:
    sys.stdout.buffer.write(data)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``jupyter volume`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    from . import commands

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = commands.parse(argv, "cli")
    except commands.HelpShown as shown:
        return shown.status
    except commands.UsageError as e:
        if e.usage:
            sys.stderr.write(e.usage)
        e.prog, prog = "", e.prog or PROG
        print(f"{prog}: error: {commands.one_line(e)}", file=sys.stderr)
        return commands.EXIT_USAGE

    try:
        from .config import load_config

        ctx = commands.Context(
            "cli", config=load_config(), confirm=_confirm, write_bytes=_write_stdout
        )
        result = commands.run(args, ctx)
        if result is not None:
            if getattr(args, "json", False):
                print(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
            else:
                print(
                    result.text(),
                    file=sys.stderr if getattr(result, "to_stderr", False) else sys.stdout,
                )
        sys.stdout.flush()
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return commands.EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`get ... - | head`): stop quietly, and keep Python from
        # complaining again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return commands.EXIT_FAILURE
    except Exception as e:
        code = commands.exit_code_for(e)
        if code is None:
            raise  # a bug: the traceback is what a bug report needs
        print(f"{PROG}: error: {commands.one_line(e)}", file=sys.stderr)
        return code
    return result.exit_code if result is not None else commands.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
