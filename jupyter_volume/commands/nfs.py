"""Commands on network file systems, as Modal's ``modal nfs``:
``nfs create|list|ls|put|get|rm|delete|mount|status`` (and ``unmount`` in a kernel).

One command, ``nfs``, whose first argument is the action. ``ls``, ``put``, ``get`` and
``rm`` are the volume commands of the same names, with the same arguments, options,
output, ``--json`` and exit codes, run on the network file system (so they cannot drift
apart), except that ``put`` replaces files that exist, as ``modal nfs put`` does
(``--force`` is accepted and changes nothing). ``mount`` makes a live folder: in a
notebook it stays until ``nfs unmount``; in a terminal it runs in the foreground until
Ctrl-C, then pushes what is left.

Layer: a command group; imports ``nfs`` and ``livesync`` only inside handlers.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import re
import textwrap
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import VolumeError
from .context import Context
from .exits import CommandError, UsageError
from .objects import created_table, delete_asking_first, parse_action
from .render import Column, Message, Result, Table
from .routing import COMMANDS, ENV_HELP, JSON_HELP, _Parser, command
from .spec import PROGS, STORE_HELP, arg

if TYPE_CHECKING:
    from ..volume import Volume

#: The actions of ``nfs``, with the one-line help each shows.
ACTIONS = {
    "create": "create a network file system",
    "list": "list the network file systems in the store",
    "ls": "list files and folders in a network file system",
    "put": "upload a local file or folder into a network file system",
    "get": "download a file or folder from a network file system",
    "rm": "remove a file or folder from a network file system",
    "delete": "delete a network file system and its whole history",
    "mount": "keep a live folder of a network file system (a terminal: until Ctrl-C)",
    "unmount": "push what is left and stop a live folder (in a notebook)",
    "status": "show this kernel's live folders and whether their store answers",
}
#: Actions that are the volume command of the same name, run on the NFS.
SHARED = ("ls", "put", "get", "rm")


class _NfsContext(Context):
    """A context whose "volume NAME" is network file system NAME (for the shared actions)."""

    versioned = False
    noun = "network file system"
    put_overwrites = True

    def volume(self, name: str, *, create: bool = False) -> Volume:
        """Network file system ``name``'s volume; NotFoundError if it does not exist."""
        from ..nfs import NetworkFileSystem

        nfs = NetworkFileSystem.from_name(
            name,
            store=self.store(create=create),
            environment_name=self.environment_name,
            create_if_missing=create,
        )
        return nfs.hydrate()._vol


def _nfs_words(text: str) -> str:
    """A shared volume command's help text, saying "network file system" for "volume"
    (paragraphs that changed are wrapped again)."""
    paragraphs = []
    for para in text.split("\n\n"):
        worded = para.replace("volume", "network file system")
        if worded != para:
            worded = textwrap.fill(" ".join(worded.split()), width=86)
        paragraphs.append(worded)
    return "\n\n".join(paragraphs)


#: The volume ``put``'s help on files that exist, and what ``nfs put`` does instead.
_PUT_REFUSES = re.compile(
    r"A file that exists in the volume is left alone .*? uploaded then\.", re.S
)
_PUT_REPLACES = "A file that exists in the volume is replaced, as `modal nfs put` does."


def _action_parser(prog: str, action: str) -> _Parser:
    p = _Parser(prog=f"{prog} nfs {action}", description=ACTIONS[action])
    if action in SHARED:
        shared = COMMANDS[action]
        text = shared.description
        if action == "put":
            text, n = _PUT_REFUSES.subn(_PUT_REPLACES, text)
            assert n == 1, "the volume put's help no longer says what it does with files that exist"
        p.description = _nfs_words(text)
        for a in shared.args:
            kwargs = dict(a.kwargs)
            if action == "put" and "--force" in a.args:
                kwargs["help"] = "accepted and changes nothing: put always replaces files"
            elif isinstance(kwargs.get("help"), str):
                kwargs["help"] = _nfs_words(kwargs["help"])
            p.add_argument(*a.args, **kwargs)
        if shared.table:
            p.add_argument("--json", action="store_true", help=JSON_HELP)
    elif action in ("create", "delete", "mount", "unmount"):
        p.add_argument("name", metavar="NAME", help="the network file system's name")
    if action == "create":
        p.add_argument("--allow-existing", action="store_true", help="succeed if it exists")
    elif action == "delete":
        p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
        p.add_argument("--allow-missing", action="store_true", help="succeed if it does not exist")
    elif action == "mount":
        p.add_argument(
            "path",
            metavar="DIR",
            nargs="?",
            default=None,
            help="the local folder (a notebook's default: ./NAME)",
        )
        p.add_argument("--create", action="store_true", help="create it if it does not exist")
    elif action in ("list", "status"):
        if action == "status":
            p.add_argument("name", metavar="NAME", nargs="?", default=None, help="one of them")
        p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.add_argument("--store", metavar="URL", default=None, help=STORE_HELP)
    p.add_argument("-e", "--env", metavar="ENV", default=None, help=ENV_HELP)
    p.intermixed = True  # options anywhere, as for the other commands
    return p


@command(
    "nfs",
    "network file systems (live shared folders): " + ", ".join(ACTIONS),
    arg("action", metavar="ACTION", choices=tuple(ACTIONS), help=", ".join(ACTIONS)),
    arg("rest", nargs=argparse.REMAINDER, metavar="...", help="the action's arguments"),
    description=(
        "Work with network file systems: folders many processes share live (Modal's\n"
        "NetworkFileSystem).\n\n"
        + "\n".join(f"  {a:8s}{h}" for a, h in ACTIONS.items())
        + "\n\nRun `nfs ACTION --help` for an action's arguments."
    ),
)
def cmd_nfs(a: argparse.Namespace, ctx: Context) -> Result | None:
    """Dispatch an ``nfs`` action to its handler."""
    prog = PROGS[ctx.frontend]
    sub = parse_action(a, ctx, _action_parser(prog, a.action))
    if sub is None:
        return None  # `nfs ACTION --help` printed the action's help
    sub.frontend = ctx.frontend
    if a.action in SHARED:
        from ..nfs import _worded

        nctx = _NfsContext(**{f.name: getattr(ctx, f.name) for f in dataclasses.fields(ctx)})
        with _worded(sub.name):
            return COMMANDS[a.action].handler(sub, nctx)
    return _HANDLERS[a.action](sub, ctx, prog)


def _create(s: argparse.Namespace, ctx: Context, prog: str) -> Result:
    from ..nfs import NetworkFileSystem

    store = ctx.store(create=True)  # creating the first object may create the store
    NetworkFileSystem.objects.create(
        s.name,
        allow_existing=s.allow_existing,
        store=store,
        environment_name=ctx.environment_name,
    )
    return Message(f"Created network file system {s.name!r} in {store.url}.", {"name": s.name})


def _list(s: argparse.Namespace, ctx: Context, prog: str) -> Result:
    from datetime import UTC, datetime

    from ..nfs import NetworkFileSystem

    store = ctx.store()
    rows = []
    for nfs in NetworkFileSystem.objects.list(store=store, environment_name=ctx.environment_name):
        meta = nfs._resolve()
        rows.append(
            {
                "name": meta.name,
                "created_at": datetime.fromtimestamp(meta.created_at, tz=UTC),
                "created_by": meta.created_by,
            }
        )
    return created_table(
        rows,
        title=f"Network file systems in {store.url}",
        empty=f"No network file systems yet: create one with `{prog} nfs create NAME`.",
    )


def _delete(s: argparse.Namespace, ctx: Context, prog: str) -> Result:
    from ..nfs import NetworkFileSystem

    store = ctx.store()
    env = ctx.environment_name
    return delete_asking_first(
        ctx,
        kind="network file system",
        name=s.name,
        store_url=store.url,
        losing=f"its whole history from {store.url}",
        allow_missing=s.allow_missing,
        yes=s.yes,
        lookup=lambda: NetworkFileSystem.from_name(
            s.name, store=store, environment_name=env
        ).hydrate(),
        delete=lambda: NetworkFileSystem.delete(
            s.name, allow_missing=s.allow_missing, store=store, environment_name=env
        ),
    )


def _live_mounts() -> list[Any]:
    from ..livesync import LiveMount
    from ..mount import mounts

    return [m for m in mounts() if isinstance(m, LiveMount)]


def _mount(s: argparse.Namespace, ctx: Context, prog: str) -> Result:
    from ..nfs import NetworkFileSystem

    if ctx.frontend == "cli" and s.path is None:
        raise UsageError(f"give the folder to keep live: `{prog} nfs mount {s.name} DIR`")
    store = ctx.store(create=s.create)
    nfs = NetworkFileSystem.from_name(
        s.name, store=store, environment_name=ctx.environment_name, create_if_missing=s.create
    )
    m = nfs.mount(s.path, ignore=list(ctx.config.ignore_patterns))
    if ctx.frontend == "magic":
        return Message(
            f"Network file system {s.name!r} is live at {m.path}: what anyone writes there, "
            f"or in another mount, syncs about a second later. Stop with `{prog} nfs unmount "
            f"{s.name}`.",
            {"path": str(m.path)},
        )
    return _foreground(m, ctx, s.name)


def _foreground(m: Any, ctx: Context, name: str) -> Result:
    """Keep the live folder until Ctrl-C (or SIGTERM), saying when the store comes and goes."""
    import signal
    import threading

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ctx.info(
        f"Network file system {name!r} is live at {m.path}: changes sync both ways about "
        "every second. Press Ctrl-C to stop."
    )
    offline = False
    ended = False
    try:
        while not stop.wait(0.5):
            thread = getattr(m, "_thread", None)
            if thread is not None and not thread.is_alive():
                ended = True  # the sync loop stopped by itself: the NFS was deleted
                break
            if (m.offline_since is not None) != offline:
                offline = not offline
                ctx.info(
                    f"the store does not answer ({m.last_error}): {m.path} keeps working "
                    "locally; changes are pushed when it is back"
                    if offline
                    else "the store answers again: local changes are being pushed"
                )
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    if ended:
        with contextlib.suppress(VolumeError):
            m.unmount()  # nothing is left to push to
        raise CommandError(
            f"{m.last_error or f'the live folder {m.path} stopped syncing'}; nothing "
            "written there since is pushed anywhere"
        )
    m.unmount()
    return Message(f"Stopped: {m.path} is no longer live; {_pushed(m)}")


def _pushed(m: Any) -> str:
    """What the last push of a stopped live folder left behind, in words."""
    left = sorted(getattr(m, "_deferred", {}) or {})
    if not left:
        return "every change was pushed."
    return (
        f"{len(left)} file(s) still being written were not pushed ({', '.join(left[:3])}"
        f"{', ...' if len(left) > 3 else ''}): mount the same folder again to push them."
    )


def _find(name: str | None, prog: str) -> list[Any]:
    live = _live_mounts()
    if name is not None:
        live = [m for m in live if m.volume.name == name]
        if not live:
            raise UsageError(
                f"network file system {name!r} is not live here: `{prog} nfs mount {name}`"
            )
    return sorted(live, key=lambda m: m.volume.name or "")


def _unmount(s: argparse.Namespace, ctx: Context, prog: str) -> Result:
    if ctx.frontend == "cli":
        raise UsageError("a terminal's live folder stops with Ctrl-C in its `nfs mount`")
    (m,) = _find(s.name, prog)[:1]
    m.unmount()
    return Message(f"Stopped {m.path} (its files stay there): {_pushed(m)}")


def _status(s: argparse.Namespace, ctx: Context, prog: str) -> Result:
    rows = []
    for m in _find(s.name, prog):
        st = m.status()
        rows.append(
            {
                "name": m.volume.name,
                "path": str(m.path),
                "store": "deleted"
                if st.stopped
                else "unreachable"
                if st.offline_since is not None
                else "ok",
                "not_pushed": len(st.added) + len(st.modified) + len(st.deleted),
                "waiting": len(st.waiting),
                "last_error": st.last_error or "",
            }
        )
    return Table(
        [
            Column("name", "Name"),
            Column("path", "Live at"),
            Column("store", "Store"),
            Column("not_pushed", "Not pushed", right=True),
            Column("waiting", "Waiting", right=True),
            Column("last_error", "Last error"),
        ],
        rows,
        title="Live network file system folders",
        empty=f"No live folder here: `{prog} nfs mount NAME`.",
    )


_HANDLERS: dict[str, Callable[[argparse.Namespace, Context, str], Result]] = {
    "create": _create,
    "list": _list,
    "delete": _delete,
    "mount": _mount,
    "unmount": _unmount,
    "status": _status,
}
