"""The one grammar of the ``%volume`` magic and the ``jupyter volume`` CLI.

Every subcommand is declared once, in the module of the objects it acts on, with its
arguments and a handler. The front ends (:mod:`jupyter_volume.cli`,
:mod:`jupyter_volume.magics`) only tokenize, call :func:`parse` and :func:`run`, show the
:class:`Result`, and map errors; they hold no command of their own.

Where things are:

============  ==============================================================================
module        what it holds
============  ==============================================================================
``spec``      the shared argument spec: :func:`arg`, ``flag``, ``option``, ``optional``,
              argument types, and the arguments several commands share (``NAME``,
              ``OPTIONAL_NAME``, ``AT``, ``commit_arg``, ``count_option``, ...)
``routing``   the routing table :data:`COMMANDS`, the :func:`command` decorator that fills
              it, :func:`build_parser`, :func:`parse`, :func:`run`, :func:`help_text`
``render``    :class:`Result` and its kinds (:class:`Message`, :class:`Table`,
              :class:`Record`, :class:`Group`, :class:`DisplayObject`): text, HTML, JSON
``exits``     exit codes, :class:`CommandError`, :class:`UsageError`, :class:`HelpShown`,
              :func:`exit_code_for`, :func:`is_user_error`, :func:`one_line`
``context``   :class:`Context` (what a handler gets from its front end) and helpers
``volumes``   group: create, list, delete, rename, info
``files``     group: ls, put, get, cp, rm, du
``history``   group: history, diff, restore, verify, gc, retention, tag, untag
``mounts``    group: mount, unmount, commit, reload, status, browse (magic); shell (CLI)
``dicts``     group: dict create|list|delete|clear|get|put|items
``nfs``       group: nfs create|list|ls|put|get|rm|delete|mount|unmount|status
``objects``   what the volume, dict and nfs groups share: the created-at table of a
              list, delete that asks first, parsing an action's own arguments
============  ==============================================================================

Sizes and times are formatted by :mod:`jupyter_volume.formatting`, shared with the
widget and the server.

Adding a group of commands (as ``dicts.py`` and ``nfs.py`` were added):

1. Write ``jupyter_volume/commands/<group>.py``. Declare each subcommand with
   ``@command(name, help, *args, where=..., table=...)`` from ``.routing`` on a handler
   ``(args: argparse.Namespace, ctx: Context) -> Result``; build arguments with ``arg``
   and the shared declarations of ``.spec``; return a ``Message``, ``Table`` or
   ``Record`` from ``.render``; raise ``CommandError``/``UsageError`` from ``.exits``
   (or let the API's errors through). Import heavy modules inside handlers, so that
   ``--help`` stays fast.
2. Register the group with one line, ``"<group>",``, in :data:`GROUPS` at the end of
   this file (the order there is the order ``--help`` lists the commands in).

Both front ends pick the new commands up (``jupyter volume NAME ...`` and
``%volume NAME ...``), with the same ``--help`` text. Test the group through a real
``jupyter volume`` process and a real IPython shell, as ``tests/test_dict_cli.py`` does.

Layer: a front end. Imports ``volume``, ``config`` and ``progress`` only inside handlers;
never IPython or Jupyter server.
"""

from __future__ import annotations

import importlib

from . import exits, render
from .context import Context

# The exit codes, the error classes and the result kinds are this package's API as they
# stand in their modules: each module's __all__ says which names.
from .exits import *  # noqa: F403
from .render import *  # noqa: F403
from .routing import COMMANDS, Command, build_parser, command, help_text, parse, run
from .spec import FRONTENDS, PROGS, arg

__all__ = [
    *exits.__all__,
    *render.__all__,
    "COMMANDS",
    "FRONTENDS",
    "GROUPS",
    "PROGS",
    "Command",
    "Context",
    "arg",
    "build_parser",
    "command",
    "help_text",
    "parse",
    "run",
]

# -- the command groups ---------------------------------------------------------------------------
#: The modules of this package that declare commands, in the order ``--help`` lists them.
#: Registering a new group is one more line here.
GROUPS = (
    "volumes",
    "files",
    "history",
    "mounts",
    "dicts",
    "nfs",
)
for _group in GROUPS:
    importlib.import_module(f"{__name__}.{_group}")
