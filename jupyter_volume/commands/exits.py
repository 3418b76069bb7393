"""How a command ends: exit codes, the errors a handler raises, and their one-line form.

Handlers raise :class:`CommandError` (and :class:`UsageError`) for mistakes they detect
and let the API's :class:`~jupyter_volume.errors.VolumeError` subclasses through;
:func:`exit_code_for` and :func:`is_user_error` classify both in one place, for the CLI's
exit code and for the magic's choice between a one-line ``UsageError`` and a traceback.

Layer: part of the commands front end; imports only ``jupyter_volume.errors``.
"""

from __future__ import annotations

from ..errors import (
    AlreadyExistsError,
    InvalidError,
    LocalFolderError,
    NotFoundError,
    StoreAccessError,
    VolumeBusyError,
    VolumeError,
)

__all__ = [
    "EXIT_CODES_HELP",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_USAGE",
    "CommandError",
    "HelpShown",
    "UsageError",
    "exit_code_for",
    "is_user_error",
    "one_line",
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
  70   a bug in jupyter-volume: the message says where the traceback was written
  130  interrupted (Ctrl-C)"""


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
        | StoreAccessError
        # the mounted folder was removed, or cannot be made: its message says what to do
        | LocalFolderError,
    )


# The API's messages name its keyword arguments; a command line names its options.
_API_TO_OPTIONS = (
    ("pass force=True", "use --force"),
    ("pass recursive=True", "use -r"),
    ("use vol.delete() to delete the volume", "use the `delete` command to delete the volume"),
)


def one_line(exc: BaseException) -> str:
    """The exception's message on one line, in command-line words (front ends show no
    traceback for user errors)."""
    text = str(exc).strip() or type(exc).__name__
    for api, option in _API_TO_OPTIONS:
        text = text.replace(api, option)
    text = "; ".join(part.strip() for part in text.splitlines() if part.strip())
    prog = getattr(exc, "prog", "")
    return f"{prog}: {text}" if prog else text
