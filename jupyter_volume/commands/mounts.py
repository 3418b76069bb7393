"""Commands on mounts: ``mount``, ``unmount``, ``commit``, ``reload``, ``status`` and
``browse`` in a kernel (the magic), and ``shell`` in a terminal (a temporary mount).

Layer: a command group; imports ``mount`` and ``widgets`` only inside handlers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import weakref
from pathlib import Path
from typing import Any

from .context import Context
from .exits import UsageError, one_line
from .render import Column, DisplayObject, Group, Message, Result, Table
from .routing import command
from .spec import CLI, MAGIC, NAME, OPTIONAL_NAME, PROGS, flag, option, optional, positive_float

#: mount -> the latest commit `commit` made of it (so "nothing to commit" blames no
#: commit of the user's own making)
_committed_here: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def _mounts() -> list[Any]:
    from ..mount import mounts

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
    from ..names import check_name

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
    optional("path", "PATH", "the local folder (default: ./NAME)"),
    flag("--create", help="create the volume if it does not exist"),
    flag("--read-only", help="never commit from this mount"),
    option(
        "--interval",
        metavar="SECONDS",
        type=positive_float,
        help="seconds between background commit checks (default: c.VolumeConfig.commit_interval, 5)",
    ),
    flag("--no-background", help="commit only on `%%volume commit` and unmount"),
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
    option("-m", "--message", metavar="MESSAGE", help="the commit message"),
    where=MAGIC,
)
def cmd_commit(a: argparse.Namespace, ctx: Context) -> Result:
    """Commit the mounted folder's changes now (the background committer does it too)."""
    m = _find_mount(a.name, ctx)
    info = m.commit(a.message)
    if info is None:
        last = m.last_commit
        if last is not None and _committed_here.get(m) != last.seq:
            # Another commit (after a cell, in the background, vol.commit(), a reload's)
            # already took the changes: say which, and how to give it a name, since -m
            # cannot relabel it any more. Not when it was this command's own.
            prog = PROGS[ctx.frontend]
            return Message(
                f"Nothing to commit in {m.volume.name!r}: the changes were already committed "
                f"as commit {last.seq} ({last.message!r}). To label that commit, tag it: "
                f"`{prog} tag {m.volume.name} {last.seq} TAG`.",
                {"commit": None, "last_commit": last.seq},
            )
        return Message(f"Nothing to commit in {m.volume.name!r}.", {"commit": None})
    _committed_here[m] = info.seq
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
    and the last background commit error. A mount whose folder was removed (or cannot
    be read) is shown with that error; the others as usual."""
    from ..errors import LocalFolderError

    chosen = [_find_mount(a.name, ctx)] if a.name is not None else _mounts()
    chosen.sort(key=lambda m: m.volume.name)
    rows, changes, data = [], [], []
    for m in chosen:
        try:
            st = m.status()
            behind: int | None = st.behind
        except LocalFolderError as e:
            st, behind = _broken_status(m, one_line(e)), None  # behind: unknown
        rows.append(
            {
                "volume": m.volume.name,
                "path": str(m.path),
                "mode": "read-only" if getattr(st, "read_only", False) else "read-write",
                "commit": getattr(st, "base_seq", None),
                "behind": "" if behind is None else behind,
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
                "behind": behind,
                "added": list(st.added),
                "modified": list(st.modified),
                "deleted": list(st.deleted),
                "last_error": st.last_error,
                "skipped": dict(st.skipped),
            }
        )
        for kind, paths in (
            ("added", st.added),
            ("modified", st.modified),
            ("deleted", st.deleted),
        ):
            changes.extend({"volume": m.volume.name, "change": kind, "path": p} for p in paths)
        changes.extend(  # never committed: a name that is not UTF-8, a FIFO, ...
            {"volume": m.volume.name, "change": "not committed", "path": f"{p} ({why})"}
            for p, why in sorted(st.skipped.items())
        )
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


def _broken_status(m: Any, error: str) -> Any:
    """What ``%volume status`` shows of a mount whose folder cannot be scanned (removed,
    replaced, unreadable): the commit it was at, no changes, and ``error`` as its last
    error."""
    from ..mount import MountStatus

    return MountStatus(
        m.volume.name, str(m.path), base_seq=m.base_seq, read_only=m.read_only, last_error=error
    )


@command("browse", "open the file and history browser widget", NAME, where=MAGIC)
def cmd_browse(a: argparse.Namespace, ctx: Context) -> Result:
    """Show a widget to browse, upload, download and restore the volume's files."""
    try:
        from ..widgets import VolumeBrowser  # type: ignore[attr-defined]
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
    flag("--read-only", help="do not commit anything"),
    option(
        "-c",
        "--command",
        dest="shell_command",  # "command" is the subcommand's name
        metavar="COMMAND",
        help="run COMMAND with $SHELL -c instead of an interactive shell",
    ),
    where=CLI,
)
def cmd_shell(a: argparse.Namespace, ctx: Context) -> Result:
    """Mount the volume in a temporary folder and start $SHELL there (like
    `modal shell --volume`). Changes are committed in the background and when the
    shell exits; then the folder is removed. Exits with the shell's exit code.
    """
    import signal
    import subprocess
    import tempfile

    from .. import mountstates

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
    mountstates.forget(m.state_path)  # its folder is gone for good: no state to keep
    msg = (
        f"Committed {vol.name!r}: commit {info.seq}."
        if info is not None
        else f"No changes to commit in {vol.name!r}."
    )
    result = Message(msg, {"commit": info.seq if info is not None else None, "exit_code": rc})
    result.exit_code = rc if rc >= 0 else 128 - rc
    result.to_stderr = True  # stdout belonged to the shell
    return result
