"""Commands on whole volumes: ``create``, ``list``, ``delete``, ``rename``, ``info``.

Layer: a command group; imports ``volume`` only inside handlers.
"""

from __future__ import annotations

import argparse
import uuid
from typing import Any

from ..formatting import human_size, local_time
from .context import Context, fresh
from .exits import CommandError
from .objects import created_row, created_table, delete_asking_first
from .render import Message, Record, Result
from .routing import command
from .spec import NAME, PROGS, arg, flag, optional


@command(
    "create",
    "create a volume",
    optional("name", "NAME", "the new volume's name (default: a generated one)"),
    arg(
        "--version",
        type=int,
        choices=(1, 2),
        default=None,
        help="the volume version to record (1 or 2, as Modal's; both store alike here)",
    ),
)
def cmd_create(a: argparse.Namespace, ctx: Context) -> Result:
    """Create an empty volume. Without NAME, a unique name is generated and printed.

    Names: 1-64 letters, digits, '.', '_' and '-', not starting with '-' and not '.' or
    '..'. A store named with --store is created if it does not exist yet.
    """
    from ..volume import Volume

    name = a.name or f"volume-{uuid.uuid4().hex[:8]}"
    store = ctx.store(create=True)
    env = ctx.environment_name
    Volume.objects.create(name, store=store, environment_name=env, version=a.version)
    where = f"{store.url}" + (f" (environment {env!r})" if env else "")
    return Message(f"Created volume {name!r} in {where}.", {"name": name})


@command("list", "list the volumes in the store", table=True)
def cmd_list(a: argparse.Namespace, ctx: Context) -> Result:
    """List every volume in the store, with when and by whom it was created."""
    from ..volume import Volume

    store = ctx.store()
    env = ctx.environment_name
    rows = [
        created_row(vol.info()) for vol in Volume.objects.list(store=store, environment_name=env)
    ]
    return created_table(
        rows,
        title=f"Volumes in {store.url}" + (f" (environment {env!r})" if env else ""),
        empty=f"No volumes yet: create one with `{PROGS[ctx.frontend]} create NAME`.",
    )


@command(
    "delete",
    "delete a volume and its whole history",
    NAME,
    flag("-y", "--yes", help="do not ask for confirmation"),
    flag("--allow-missing", help="succeed if the volume does not exist"),
)
def cmd_delete(a: argparse.Namespace, ctx: Context) -> Result:
    """Delete a volume: its files and every commit, irrevocably. Asks first unless --yes."""
    from ..volume import Volume

    store = ctx.store()
    env = ctx.environment_name
    return delete_asking_first(
        ctx,
        kind="volume",
        name=a.name,
        store_url=store.url,
        losing=f"its whole history from {store.url}",
        allow_missing=a.allow_missing,
        yes=a.yes,
        lookup=lambda: Volume.lookup(a.name, store=store, environment_name=env),
        delete=lambda: Volume.objects.delete(
            a.name, allow_missing=a.allow_missing, store=store, environment_name=env
        ),
    )


@command(
    "rename",
    "rename a volume",
    arg("old", metavar="OLD", help="the volume's current name"),
    arg("new", metavar="NEW", help="its new name"),
    flag("-y", "--yes", help="do not ask for confirmation"),
)
def cmd_rename(a: argparse.Namespace, ctx: Context) -> Result:
    """Rename a volume; its files and history stay as they are. Asks first unless --yes
    (code and mounts that use the old name stop finding it)."""
    from ..names import check_name
    from ..volume import Volume

    check_name(a.old)
    check_name(a.new)
    store = ctx.store()
    env = ctx.environment_name
    Volume.lookup(a.old, store=store, environment_name=env)
    if not a.yes and not ctx.confirm(
        f"Rename volume {a.old!r} to {a.new!r}? Code and mounts using the old name will "
        "no longer find it. [y/N] "
    ):
        raise CommandError(f"volume {a.old!r} was not renamed")
    Volume.rename(a.old, a.new, store=store, environment_name=env)
    return Message(f"Renamed volume {a.old!r} to {a.new!r}.")


@command("info", "show a volume's id, creator and newest commit", NAME, table=True)
def cmd_info(a: argparse.Namespace, ctx: Context) -> Result:
    """Show what the store records of a volume, and its newest commit."""
    vol = ctx.volume(a.name)
    head = fresh(vol)
    info = vol.info()
    fields: list[tuple[str, str, Any, str]] = [
        ("name", "Name", info.name, info.name),
        ("id", "Id", info.id, info.id),
        ("created_at", "Created at", info.created_at, local_time(info.created_at)),
        ("created_by", "Created by", info.created_by, info.created_by),
        ("store", "Store", vol.store.url, vol.store.url),
    ]
    if head is not None:
        fields += [
            ("head", "Newest commit", head.seq, str(head.seq)),
            ("head_time", "Committed at", head.time, local_time(head.time)),
        ]
    return Record(fields, title=f"Volume {info.name!r}")


@command(
    "copy",
    "copy a volume, with its history, to another store",
    NAME,
    arg("--to", dest="to", metavar="URL", required=True, help="the target store's URL"),
    arg("--as", dest="new_name", metavar="NEW", default=None, help="its name there"),
)
def cmd_copy(a: argparse.Namespace, ctx: Context) -> Result:
    """Copy a volume with its whole history and tags to another store (moving to a team
    store): each stored object once; run it again to resume an interrupted copy, or to
    bring the copy up to date with commits made since. The copy is not visible at the
    target until it is complete."""
    from ..progress import transfer_progress

    vol = ctx.volume(a.name)
    total = {"bytes": 0}
    bars: list[Any] = []

    def start(objects: int, nbytes: int) -> None:
        bars.append(
            transfer_progress(
                f"copy {a.name}", total_bytes=nbytes, total_files=objects, config=ctx.config
            )
        )

    def moved(n: int) -> None:
        total["bytes"] += n
        bars[0].update(n)

    try:
        done = vol._copy_volume(a.to, a.new_name, ctx.environment_name, moved, start)
    finally:
        for bar in bars:
            bar.close()
    dest = done.volume
    where = f"{dest.name!r} in {a.to}"
    if done.state == "current":
        text = f"The copy {where} has every commit of volume {a.name!r} already: nothing copied."
    elif done.state == "updated":
        text = (
            f"Brought the copy {where} up to date with volume {a.name!r}: {done.commits} new "
            f"commit(s), {human_size(total['bytes'])} transferred."
        )
    else:
        text = f"Copied volume {a.name!r} to {where} ({human_size(total['bytes'])} transferred)."
    return Message(
        text,
        {
            "name": dest.name,
            "store": a.to,
            "bytes": total["bytes"],
            "state": done.state,
            "commits": done.commits,
        },
    )
