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
from typing import Any

__all__ = ["main"]

PROG = "jupyter volume"


def _confirm(prompt: str) -> bool:
    from .commands import UsageError

    if not sys.stdin.isatty():
        raise UsageError("this needs confirmation and stdin is not a terminal: pass --yes (-y)")
    try:
        answer = input(prompt)
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


#: The exit code of an unexpected exception (a bug), as sysexits' EX_SOFTWARE.
EXIT_BUG = 70


def _write_stdout(data: bytes) -> None:
    if sys.stdout is None:  # started with stdout closed (`... - >&-`)
        from .commands import CommandError

        raise CommandError("standard output is closed: give a local path instead of '-'")
    sys.stdout.buffer.write(data)


def _report_bug(exc: BaseException) -> int:
    """Write the traceback to a file, say where in one line, and return :data:`EXIT_BUG`."""
    import time
    import traceback

    text = "".join(traceback.format_exception(exc))
    where = "(could not be written)"
    try:
        from .paths import cache_dir

        folder = cache_dir() / "tracebacks"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
        path.write_text(f"jupyter volume {' '.join(sys.argv[1:])}\n\n{text}")
        where = str(path)
    except Exception:  # noqa: BLE001 - the report must not fail in turn
        pass
    print(
        f"{PROG}: error: this is a bug in jupyter-volume ({type(exc).__name__}: "
        f"{str(exc).splitlines()[0] if str(exc) else ''}); the traceback is in {where}: "
        "please report it",
        file=sys.stderr,
    )
    return EXIT_BUG


def _say(text: str, file: object) -> None:
    """Print ``text``; a character the stream cannot encode (a local file name with a
    non-UTF-8 byte, say) is written as a backslash escape instead of failing."""
    try:
        print(text, file=file)  # type: ignore[arg-type]
    except UnicodeEncodeError:
        enc = getattr(file, "encoding", None) or "utf-8"
        print(text.encode(enc, "backslashreplace").decode(enc), file=file)  # type: ignore[arg-type]


def _print_result(result: object, args: object) -> None:
    if sys.stdout is None:
        return
    pipe_text = getattr(result, "pipe_text", None)
    if getattr(args, "json", False):
        _say(json.dumps(result.to_json(), indent=2, ensure_ascii=False), sys.stdout)  # type: ignore[attr-defined]
    elif pipe_text is not None and not sys.stdout.isatty():
        # As Modal's `ls` into a pipe: one path per line, nothing else.
        if pipe_text:
            _say(pipe_text, sys.stdout)
    else:
        _say(
            result.text(),  # type: ignore[attr-defined]
            sys.stderr if getattr(result, "to_stderr", False) else sys.stdout,
        )


def _usage_error(e: Any) -> int:
    """Print a usage error as argparse does (the usage, then ``PROG: error: ...`` named by
    the command it is about, once); return the exit code."""
    from . import commands

    if e.usage:
        sys.stderr.write(e.usage)
    e.prog, prog = "", e.prog or PROG
    print(f"{prog}: error: {commands.one_line(e)}", file=sys.stderr)
    return commands.EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``jupyter volume`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    from . import commands

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = commands.parse(argv, "cli")
    except commands.HelpShown as shown:
        return shown.status
    except commands.UsageError as e:
        return _usage_error(e)

    try:
        from .config import load_config

        ctx = commands.Context(
            "cli", config=load_config(), confirm=_confirm, write_bytes=_write_stdout
        )
        result = commands.run(args, ctx)
        if result is not None:
            _print_result(result, args)
        if sys.stdout is not None:
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
        if isinstance(e, commands.UsageError):
            # a dict or nfs action's own arguments, parsed when it runs
            return _usage_error(e)
        code = commands.exit_code_for(e)
        if code is None:
            return _report_bug(e)  # a bug: the traceback goes to a file for the report
        print(f"{PROG}: error: {commands.one_line(e)}", file=sys.stderr)
        return code
    return result.exit_code if result is not None else commands.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
