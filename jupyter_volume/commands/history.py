"""Commands on a volume's history: ``history``, ``diff``, ``restore``, ``verify``, and
what is kept of it: ``gc``, ``retention``, ``tag``, ``untag``.

Layer: a command group; reaches the volume only through :class:`Context`.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..formatting import human_size, local_time
from .context import Context, fresh, in_volume, type_name
from .exits import EXIT_FAILURE, EXIT_OK
from .render import Column, Message, Record, Result, Table, jsonable
from .routing import command
from .spec import (
    NAME,
    arg,
    commit_arg,
    count_option,
    duration_option,
    flag,
    non_negative_int,
    option,
    optional,
)


@command(
    "history",
    "list a volume's commits, newest first",
    NAME,
    count_option("-n", "--limit", help="show only the newest N"),
    option(
        "--before",
        metavar="COMMIT",
        type=non_negative_int,
        help="only commits older than COMMIT (the next page after --limit)",
    ),
    table=True,
)
def cmd_history(a: argparse.Namespace, ctx: Context) -> Result:
    """List a volume's commits, newest first, with what each added, modified and deleted."""
    vol = ctx.volume(a.name)
    commits = vol.history(limit=a.limit, before=a.before)
    rows = [
        {
            "seq": c.seq,
            "time": c.time,
            "author": c.author,
            "host": c.host,
            "kind": c.kind,
            "message": c.message,
            "added": c.added,
            "modified": c.modified,
            "deleted": c.deleted,
            "bytes_new": c.bytes_new,
            "tags": ", ".join(c.tags),
            "changes": f"+{c.added} ~{c.modified} -{c.deleted}",
        }
        for c in commits
    ]
    return Table(
        [
            Column("seq", "Commit", right=True),
            Column("time", "Time", local_time),
            Column("author", "Author"),
            Column("message", "Message"),
            Column("tags", "Tags"),
            Column("changes", "Changes"),
            Column("bytes_new", "New data", human_size, right=True),
        ],
        rows,
        title=f"History of {vol.name!r}",
        json_rows=[{k: jsonable(v) for k, v in r.items() if k != "changes"} for r in rows],
    )


@command(
    "diff",
    "show what changed between two commits",
    NAME,
    optional("a", "FROM", "the older commit (default: the one before TO)", type=non_negative_int),
    optional("b", "TO", "the newer commit (default: the newest)", type=non_negative_int),
    table=True,
)
def cmd_diff(a: argparse.Namespace, ctx: Context) -> Result:
    """List the paths added, modified or deleted from commit FROM to commit TO.

    With no commits given: what the newest commit changed.
    """
    vol = ctx.volume(a.name)
    head = fresh(vol)
    b = a.b if a.b is not None else (head.seq if head is not None else 0)
    start = a.a if a.a is not None else max(b - 1, 0)
    changes = vol.diff(start, b)
    rows = [
        {
            "change": d.change,
            "path": d.path,
            "type": type_name(d.type),
            "old_size": d.old_size,
            "new_size": d.new_size,
        }
        for d in changes
    ]
    return Table(
        [
            Column("change", "Change"),
            Column("path", "Path"),
            Column("type", "Type"),
            Column("old_size", "Old size", human_size, right=True),
            Column("new_size", "New size", human_size, right=True),
        ],
        rows,
        title=f"Changes in {vol.name!r} from commit {start} to commit {b}",
        empty=f"No changes in {vol.name!r} from commit {start} to commit {b}.",
    )


@command(
    "restore",
    "bring back the volume, or one path, as it was at a commit",
    NAME,
    commit_arg("the commit to go back to"),
    optional("path", "PATH", "only this file or folder (default: everything)"),
)
def cmd_restore(a: argparse.Namespace, ctx: Context) -> Result:
    """Restore the whole volume, or one file or folder, as it was at COMMIT.

    Recorded as a new commit: the commits in between stay in the history. A path that
    did not exist at COMMIT is removed.
    """
    vol = ctx.volume(a.name)
    fresh(vol)
    info = vol.restore(a.commit, a.path)
    what = in_volume(vol, a.path) if a.path else f"volume {vol.name!r}"
    if info is None:
        return Message(
            f"Nothing to restore: {what} is as it was at commit {a.commit}.", {"commit": None}
        )
    return Message(
        f"Restored {what} as it was at commit {a.commit}: new commit {info.seq}.",
        {"commit": info.seq},
    )


@command(
    "verify",
    "check a volume's stored data for damage",
    NAME,
    flag("--metadata-only", help="check commits and trees, not the file data"),
    table=True,
)
def cmd_verify(a: argparse.Namespace, ctx: Context) -> Result:
    """Re-read and re-hash everything reachable from every commit; exit code 1 on damage."""
    vol = ctx.volume(a.name)
    report = vol.verify(read_data=not a.metadata_only)
    ok = report.ok
    fields: list[tuple[str, str, Any, str]] = [
        ("ok", "Result", ok, "no damage found" if ok else f"{len(report.errors)} problem(s) found"),
        ("commits", "Commits", report.commits, str(report.commits)),
        ("trees", "Trees", report.trees, str(report.trees)),
        ("chunks", "Chunks", report.chunks, str(report.chunks)),
        ("packs", "Packs", report.packs, str(report.packs)),
        ("bytes_read", "Bytes read", report.bytes_read, human_size(report.bytes_read)),
    ]
    extra: list[Result] = []
    if report.errors:
        extra.append(Table([Column("error", "Problem")], [{"error": e} for e in report.errors]))
    return Record(
        fields,
        title=f"Verify {vol.name!r}",
        extra=extra,
        json_extra={"errors": list(report.errors)},
        exit_code=EXIT_OK if ok else EXIT_FAILURE,
    )


# -- retention and garbage collection ------------------------------------------------------------------
@command(
    "gc",
    "expire history outside the retention policy and free its space",
    NAME,
    flag("--dry-run", help="report what would be freed; change nothing"),
    duration_option("--grace", "override the policy's grace period (e.g. 0, 10m, 1h)"),
    table=True,
)
def cmd_gc(a: argparse.Namespace, ctx: Context) -> Result:
    """Expire the commits the volume's retention policy does not keep, and delete the data
    only they used (after the grace period, which protects commits still in flight).

    Set the policy with `retention`; by default every commit is kept.
    """
    vol = ctx.volume(a.name)
    report = vol.gc(dry_run=a.dry_run, grace=a.grace)
    return Record(
        [
            ("dry_run", "Dry run", report.dry_run, "yes" if report.dry_run else "no"),
            (
                "expired",
                "Commits expired",
                report.expired,
                ", ".join(map(str, report.expired)) or "none",
            ),
            ("kept", "Commits kept", report.kept, str(report.kept)),
            ("packs_repacked", "Packs repacked", report.packs_repacked, str(report.packs_repacked)),
            (
                "packs_condemned",
                "Packs condemned",
                report.packs_condemned,
                str(report.packs_condemned),
            ),
            (
                "objects_deleted",
                "Objects deleted",
                report.objects_deleted,
                str(report.objects_deleted),
            ),
            (
                "bytes_freed",
                "Freed" if not report.dry_run else "Would free",
                report.bytes_freed,
                human_size(report.bytes_freed),
            ),
        ],
        title=f"Garbage collection of {vol.name!r}",
    )


@command(
    "retention",
    "show or set which history gc keeps",
    NAME,
    count_option("--keep-last", help="keep the newest N commits"),
    duration_option("--keep-within", "keep commits younger than this (e.g. 7d)"),
    count_option("--keep-hourly", help="keep the newest commit of each of the last N hours"),
    count_option("--keep-daily", help="keep the newest commit of each of the last N days"),
    duration_option(
        "--squash-auto-after", "thin background commits older than this to one per run"
    ),
    duration_option("--grace", "wait this long before deleting condemned data (default 1h)"),
    flag("--keep-all", help="go back to keeping every commit"),
    table=True,
)
def cmd_retention(a: argparse.Namespace, ctx: Context) -> Result:
    """Show the volume's retention policy, or set it (any option replaces the whole policy).

    Tagged commits, the newest commit and commit 0 are always kept.
    """
    vol = ctx.volume(a.name)
    options = {
        "keep_last": a.keep_last,
        "keep_within": a.keep_within,
        "keep_hourly": a.keep_hourly,
        "keep_daily": a.keep_daily,
        "squash_auto_after": a.squash_auto_after,
        "grace": a.grace,
    }
    if a.keep_all or any(v is not None for v in options.values()):
        policy = vol.set_retention(**({"grace": a.grace} if a.keep_all else options))
    else:
        policy = vol.retention
    from ..repository.gc import duration_text

    durations = ("keep_within", "squash_auto_after", "grace")  # seconds; the rest counts

    def shown(k: str) -> str:
        v = getattr(policy, k)
        if v is None:
            return "-"
        return duration_text(v) if k in durations else str(v)

    return Record(
        [
            ("policy", "Policy", policy.describe(), policy.describe()),
            *[(k, k.replace("_", " ").capitalize(), getattr(policy, k), shown(k)) for k in options],
        ],
        title=f"Retention of {vol.name!r}",
    )


@command(
    "tag",
    "tag a commit so that gc always keeps it",
    NAME,
    commit_arg("the commit to tag"),
    arg(
        "tag",
        metavar="TAG",
        help=(
            "the tag's name (1-64 letters, digits, '.', '_', '-', starting with a letter or"
            " digit; not digits only: @N is commit N)"
        ),
    ),
    flag("--force", help="move the tag if it exists"),
)
def cmd_tag(a: argparse.Namespace, ctx: Context) -> Result:
    """Tag COMMIT as TAG; tags show in `history` and survive every retention policy."""
    vol = ctx.volume(a.name)
    vol.tag(a.commit, a.tag, force=a.force)
    return Message(
        f"Tagged commit {a.commit} of {vol.name!r} as {a.tag!r}.",
        {"commit": a.commit, "tag": a.tag},
    )


@command("untag", "remove a tag", NAME, arg("tag", metavar="TAG", help="the tag to remove"))
def cmd_untag(a: argparse.Namespace, ctx: Context) -> Result:
    """Remove TAG: its commit falls under the retention policy again."""
    vol = ctx.volume(a.name)
    vol.untag(a.tag)
    return Message(f"Removed tag {a.tag!r} from {vol.name!r}.", {"tag": a.tag})
