"""Commands on the files in a volume: ``ls``, ``put``, ``get``, ``cp``, ``rm``, ``du``.

``put`` and ``get`` move data between the local disk and a volume with a progress bar;
a local file appears complete or not at all.

Layer: a command group; imports ``volume``, ``names`` and ``progress`` only inside
handlers.
"""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import NotFoundError, VolumeError
from ..formatting import human_size, local_time
from .context import Context, fresh, in_volume, type_name
from .exits import CommandError, UsageError
from .render import Column, Message, Record, Result, Table, jsonable
from .routing import command
from .spec import AT, NAME, arg, flag, optional

if TYPE_CHECKING:
    from ..volume import FileEntry, Volume


def _entry_rows(entries: Iterable[FileEntry]) -> list[dict[str, Any]]:
    return [
        {
            "path": e.path,
            "type": type_name(e.type),
            "mtime": datetime.fromtimestamp(e.mtime, tz=UTC),
            "size": e.size,
        }
        for e in sorted(entries, key=lambda e: e.path)
    ]


@command(
    "ls",
    "list files and folders in a volume",
    NAME,
    optional("path", "PATH", "a folder, file or glob (default: the root)", default="/"),
    flag("-r", "--recursive", help="list all levels below PATH"),
    AT,
    table=True,
)
def cmd_ls(a: argparse.Namespace, ctx: Context) -> Result:
    """List a folder of a volume (all levels with -r), a file, or the paths a glob matches
    (a path with `*` is a glob; in it `?` and `[..]` match within a name and `**` across
    folders)."""
    vol = ctx.volume(a.name)
    fresh(vol)
    entries = vol.listdir(a.path, recursive=a.recursive, at=a.at)
    where = in_volume(vol, a.path) + (f" at commit {a.at}" if a.at is not None else "")
    rows = _entry_rows(entries)
    columns = [
        Column("path", "Path"),
        Column("type", "Type"),
        Column("mtime", "Modified", local_time),
        Column("size", "Size", human_size, right=True),
    ]
    table = Table(
        columns,
        rows,
        title=f"Contents of {where}",
        empty=f"{where} is empty.",
        # Modal's `volume ls --json` keys (filename, created_modified) beside ours
        json_rows=[
            {
                **{c.key: jsonable(r[c.key]) for c in columns},
                "filename": r["path"],
                "created_modified": local_time(r["mtime"]),
            }
            for r in rows
        ],
    )
    table.pipe_text = "\n".join(r["path"] for r in rows)  # type: ignore[attr-defined]
    return table


def _local_totals(local: Path) -> tuple[int, int]:
    """(files, bytes) below a local file or folder, for the progress bar."""
    if not local.is_dir():
        return 1, local.stat().st_size
    files = size = 0
    for dirpath, _dirs, names in os.walk(local):
        for n in names:
            try:
                st = os.lstat(os.path.join(dirpath, n))
            except OSError:
                continue
            files += 1
            size += st.st_size
    return files, size


def _counting_batch(vol: Volume, force: bool, bar: Any) -> Any:
    """``vol.batch_upload(force)`` that also counts files and bytes and moves ``bar``."""
    from ..volume import BatchUpload

    class CountingBatch(BatchUpload):
        files = 0
        bytes = 0

        def _added(self, entry: Any) -> None:
            self.files += 1
            self.bytes += entry.size
            bar.update(entry.size)

    return CountingBatch(vol, force)


@command(
    "put",
    "upload a local file or folder into a volume",
    NAME,
    arg(
        "local",
        metavar="LOCAL",
        help="a local file, or a folder (uploaded with everything below it)",
    ),
    optional(
        "remote",
        "REMOTE",
        "where in the volume (default '/'); a REMOTE ending in '/' takes LOCAL's name",
        default="/",
    ),
    flag("-f", "--force", help="overwrite files that exist in the volume"),
)
def cmd_put(a: argparse.Namespace, ctx: Context) -> Result:
    """Upload a file or a whole folder as one commit.

    `put vol data.csv` stores /data.csv; `put vol data.csv raw/` stores /raw/data.csv;
    `put vol data.csv raw/x.csv` stores /raw/x.csv; `put vol results/` stores the folder
    as /results. A file that exists in the volume is left alone (exit code 2) unless
    --force; nothing is uploaded then.
    """
    from ..names import normalize_path
    from ..progress import transfer_progress

    local = Path(a.local).expanduser()
    if not os.path.lexists(local):
        raise NotFoundError(f"local file or folder {a.local} does not exist")
    remote = a.remote
    if remote.endswith("/"):
        base = local.name or local.resolve().name
        remote = remote + base
    if not local.is_dir() and not normalize_path(remote):
        raise UsageError(f"REMOTE {a.remote!r} must name a file in the volume, not its root '/'")
    vol = ctx.volume(a.name)
    try:
        files, size = _local_totals(local)
    except OSError as e:
        raise CommandError(f"cannot read {a.local}: {e.strerror or e}") from None
    target = normalize_path(remote)
    bar = transfer_progress(
        f"put {target or '/'}", total_bytes=size, total_files=files, config=ctx.config
    )
    skipped: list[str] = []
    try:
        batch = _counting_batch(vol, a.force or ctx.put_overwrites, bar)
        with batch:
            if local.is_dir():
                # what put_directory skips (names that are not UTF-8, FIFOs, ...) is part
                # of this command's output, not a Python warning with a source line
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    batch.put_directory(local, remote)
                skipped = [str(w.message).removeprefix("put_directory ") for w in caught]
            else:
                batch.put_file(local, remote)
    except VolumeError:
        raise
    except OSError as e:
        raise CommandError(f"cannot read {e.filename or a.local}: {e.strerror or e}") from None
    finally:
        bar.close()
    info = batch.commit_info
    what = f"{batch.files} file{'s' if batch.files != 1 else ''} ({human_size(batch.bytes)})"
    if info is None:
        done = f" (no changes: the {ctx.noun} had them already)"
    else:
        done = f" as commit {info.seq}" if ctx.versioned else ""
    return Message(
        f"Uploaded {what} to {vol.name}:/{target}{done}."
        + "".join(f"\nWarning: {s[0].upper()}{s[1:]}" for s in skipped),
        {
            "files": batch.files,
            "bytes": batch.bytes,
            "commit": info.seq if info else None,
            "skipped": skipped,
        },
    )


def _glob_base(norm: str) -> str:
    """The folder a glob is listed from: its parts before the first with a ``*``, the rule
    of :meth:`Volume.iterdir` (``?`` and ``[`` alone are parts of a name)."""
    from ..volume import _has_glob

    parts = []
    for part in norm.split("/"):
        if _has_glob(part):
            break
        parts.append(part)
    return "/".join(parts)


def _download_plan(
    vol: Volume, remote: str, dest: Path, dest_is_dir: bool, at: int | None
) -> tuple[list[tuple[FileEntry, Path]], Path]:
    """Which entries go to which local paths, and the local path that REMOTE becomes."""
    from ..names import normalize_path
    from ..volume import FileEntryType, _has_glob

    norm = normalize_path(remote)
    entries = list(vol.iterdir(remote, recursive=True, at=at))
    if _has_glob(norm):  # as iterdir decides: 'why?.md' and 'a[1].txt' are names
        if not entries:
            raise NotFoundError(f"nothing in volume {vol.name!r} matches {remote}")
        base = _glob_base(norm)
        plan = [(e, dest / (e.path[len(base) + 1 :] if base else e.path)) for e in entries]
        return plan, dest
    if len(entries) == 1 and entries[0].path == norm and entries[0].type != FileEntryType.DIRECTORY:
        e = entries[0]
        target = dest / norm.rsplit("/", 1)[-1] if dest_is_dir else dest
        return [(e, target)], target
    # a folder: like `cp -r`, into DEST/<folder name> when DEST is a folder, else DEST itself
    name = norm.rsplit("/", 1)[-1]
    root = dest / name if (dest_is_dir and name) else dest
    prefix = norm + "/" if norm else ""
    plan = [(e, root / e.path[len(prefix) :]) for e in entries]
    from ..volume import FileEntry

    plan.insert(0, (FileEntry(norm, FileEntryType.DIRECTORY, 0, 0), root))
    return plan, root


@command(
    "get",
    "download a file or folder from a volume",
    NAME,
    arg("remote", metavar="REMOTE", help="a file, folder or glob in the volume"),
    optional("local", "LOCAL", "where to (default '.'); '-' writes to stdout", default="."),
    flag("-f", "--force", help="overwrite local files that exist"),
    AT,
)
def cmd_get(a: argparse.Namespace, ctx: Context) -> Result | None:
    """Download a file, or a folder with everything below it.

    Into LOCAL when it is an existing folder or ends in '/' (keeping the file's or
    folder's name), else as LOCAL. `-` writes the bytes to stdout (every file, for a
    folder or glob). Existing local files are left alone (exit code 2, nothing is
    downloaded) unless --force. Each file appears complete or not at all (written to a
    temporary name, then renamed). Symbolic links come back as links with the same
    target; a local link in the way is replaced, never written through.
    """
    from ..progress import transfer_progress
    from ..transfer import download

    vol = ctx.volume(a.name)
    fresh(vol)
    if a.local == "-":
        return _get_to_stdout(vol, a, ctx)
    dest = Path(a.local).expanduser()
    dest_is_dir = dest.is_dir() or a.local.endswith(("/", os.sep))
    plan, where = _download_plan(vol, a.remote, dest, dest_is_dir, a.at)
    # links are recreated as links; nothing is written through a local link (see transfer.py)
    done = download(
        vol,
        plan,
        base=dest if dest_is_dir else dest.parent,
        at=a.at,
        force=a.force,
        progress=lambda total, n: transfer_progress(
            f"get {a.remote}", total_bytes=total, total_files=n, config=ctx.config
        ),
    )
    msg = f"Downloaded {done.files} file{'s' if done.files != 1 else ''} ({human_size(done.bytes)})"
    if done.links:
        msg += f" and {done.links} symbolic link{'s' if done.links != 1 else ''}"
    return Message(
        f"{msg} to {where}.", {"files": done.files, "bytes": done.bytes, "links": done.links}
    )


def _get_to_stdout(vol: Volume, a: argparse.Namespace, ctx: Context) -> None:
    from ..names import normalize_path
    from ..volume import FileEntryType, _has_glob

    norm = normalize_path(a.remote)
    entries = list(vol.iterdir(a.remote, recursive=True, at=a.at))
    # a file (a link to one is followed), or, as Modal does, every file of a folder or glob
    files = [e for e in entries if e.type == FileEntryType.FILE]
    if len(entries) == 1 and entries[0].path == norm and entries[0].type == FileEntryType.SYMLINK:
        files = entries
    if not files:
        # folders only, or one empty folder (a missing name raised above): nothing to
        # write, as a folder of no files downloads none; a glob that matched nothing fails
        if entries or not _has_glob(norm):
            return None
        raise NotFoundError(f"no file in volume {vol.name!r} matches {a.remote}")
    out = ctx.write_bytes
    if out is None:
        raise UsageError("'-' (stdout) is not available here")

    class _Sink:
        def write(self, b: bytes) -> int:
            out(b)
            return len(b)

    for e in files:
        vol.read_file_into_fileobj(e.path, _Sink(), at=a.at)  # type: ignore[arg-type]
    return None


@command(
    "cp",
    "copy files or folders inside a volume",
    NAME,
    arg("src", metavar="SRC", nargs="+", help="the paths to copy"),
    arg("dst", metavar="DST", help="the destination (an existing folder takes several sources)"),
    flag("-r", "--recursive", help="copy folders with everything below them"),
)
def cmd_cp(a: argparse.Namespace, ctx: Context) -> Result:
    """Copy inside a volume, like `cp`: no data moves, the copies share the stored chunks."""
    vol = ctx.volume(a.name)
    fresh(vol)
    vol.copy_files(a.src, a.dst, recursive=a.recursive)
    srcs = ", ".join(a.src)
    return Message(f"Copied {srcs} to {in_volume(vol, a.dst)}.")


@command(
    "rm",
    "remove a file or folder from a volume",
    NAME,
    arg("path", metavar="PATH", help="the file or folder to remove"),
    flag("-r", "--recursive", help="remove a folder with everything below it"),
)
def cmd_rm(a: argparse.Namespace, ctx: Context) -> Result:
    """Remove a file (or a folder with -r) as a new commit; history keeps the old versions."""
    vol = ctx.volume(a.name)
    fresh(vol)
    vol.remove_file(a.path, recursive=a.recursive)
    return Message(f"Removed {in_volume(vol, a.path)}.")


@command(
    "du",
    "count the files and bytes under a path",
    NAME,
    optional("path", "PATH", "a folder or file (default: the root)", default="/"),
    AT,
    table=True,
)
def cmd_du(a: argparse.Namespace, ctx: Context) -> Result:
    """Count the files and logical bytes under PATH (before deduplication and compression)."""
    vol = ctx.volume(a.name)
    fresh(vol)
    usage = vol.du(a.path, at=a.at)
    return Record(
        [
            ("path", "Path", usage.path, f"{vol.name}:/{usage.path}"),
            ("files", "Files", usage.files, str(usage.files)),
            ("bytes", "Size", usage.bytes, human_size(usage.bytes)),
        ],
        title=f"Disk usage of {in_volume(vol, a.path)}",
    )
