"""Retention policies, tags and garbage collection of one volume's repository.

Every commit is kept until a retention policy says otherwise. ``collect`` then:

1. expires the commits outside the policy (tags, commit 0, the head and the newest
   commit that changed data are always kept),
2. marks every tree node and chunk reachable from the kept commits,
3. repacks packs that are mostly dead (their live chunks move to new packs),
4. writes a new index checkpoint and a ``gc`` record into the commit log that lists the
   expired commits and the condemned packs (writers stop deduplicating against those at
   once, and copy out any chunk they had already deduplicated against),
5. deletes condemned packs once their grace period has passed, and orphans (objects no
   commit references, such as the uploads of a crashed writer) older than the grace
   period: an upload younger than that may belong to a commit still in flight (whose
   writer keeps its uploads younger than that: see :mod:`.keeper`).
   Tree nodes go in two steps: the record names the list of every unreachable node, no
   commit published on it may name one (see ``Repository._avoid_doomed``), and the next
   gc deletes those still unreachable then.

The gc record is written with the same create-only put as any commit; on a lost race,
collection starts over from the new head, so a concurrent writer's commit is always
marked before anything it references can be condemned.
"""

from __future__ import annotations

import os
import random
import socket
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ConflictError, InvalidError, NotFoundError
from .codec import compress_blob, dump_json, hash_bytes, load_json
from .packs import ChunkIndex, ChunkLoc, PackWriter, encode_segment
from .repo import CommitRecord, Repository, _upload_pool, checkpoint_shards, seq_ranges
from .tree import DIR, EMPTY_TREE, FILE, READ_AHEAD_NODES

DEFAULT_GRACE = 3600.0
REPACK_BELOW = 0.5  # repack a pack when less than this fraction of its bytes is live
AUTO_KINDS = ("auto",)


@dataclass
class RetentionPolicy:
    """Which commits to keep. All None means keep everything (the default).

    ``keep_last``: the newest N commits. ``keep_within``: commits younger than this many
    seconds. ``keep_hourly``/``keep_daily``: the newest commit of each of the last N
    hours/days that have commits. ``squash_auto_after``: background commits older than
    this many seconds are thinned to the last of each run (keeping the hourly and daily
    picks). ``grace``: seconds before
    condemned or orphaned objects are deleted.
    """

    keep_last: int | None = None
    keep_within: float | None = None
    keep_hourly: int | None = None
    keep_daily: int | None = None
    squash_auto_after: float | None = None
    grace: float = DEFAULT_GRACE

    def keeps_everything(self) -> bool:
        return all(
            v is None
            for v in (
                self.keep_last,
                self.keep_within,
                self.keep_hourly,
                self.keep_daily,
                self.squash_auto_after,
            )
        )

    def validate(self) -> RetentionPolicy:
        for name in ("keep_last", "keep_hourly", "keep_daily"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise InvalidError(f"{name} must be a whole number >= 1, got {v!r}")
        for name in ("keep_within", "squash_auto_after", "grace"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, (int, float)) or v < 0):
                raise InvalidError(f"{name} must be a number of seconds >= 0, got {v!r}")
        return self

    def describe(self) -> str:
        if self.keeps_everything():
            return "keep every commit"
        parts = []
        if self.keep_last:
            parts.append(f"last {self.keep_last}")
        if self.keep_within is not None:
            parts.append(f"younger than {duration_text(self.keep_within)}")
        if self.keep_hourly:
            parts.append(f"{self.keep_hourly} hourly")
        if self.keep_daily:
            parts.append(f"{self.keep_daily} daily")
        if self.squash_auto_after is not None:
            parts.append(
                f"background commits squashed after {duration_text(self.squash_auto_after)}"
            )
        return "keep " + ", ".join(parts) + f" (grace {duration_text(self.grace)})"


def duration_text(s: float) -> str:
    """A duration in seconds as it is typed: ``"1h"``, ``"90s"``, ``"7d"``."""
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n and s % n == 0:
            return f"{int(s // n)}{unit}"
    return f"{s:g}s"


def parse_duration(text: str | float | int) -> float:
    """Seconds from ``90``, ``"90s"``, ``"15m"``, ``"2h"``, ``"7d"``, ``"1w"``."""
    if isinstance(text, (int, float)):
        return float(text)
    t = text.strip().lower()
    mult = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    try:
        if t and t[-1] in mult:
            return float(t[:-1]) * mult[t[-1]]
        return float(t)
    except ValueError:
        raise InvalidError(f"not a duration: {text!r} (use e.g. 90s, 15m, 2h, 7d)") from None


def load_policy(repo: Repository) -> RetentionPolicy:
    """The volume's retention policy (keep everything when none was set)."""
    try:
        d = load_json(repo.store.get(repo.prefix + "policy"), repo.prefix + "policy")
    except NotFoundError:
        return RetentionPolicy()
    known = RetentionPolicy.__dataclass_fields__
    return RetentionPolicy(**{k: v for k, v in d.items() if k in known})


def save_policy(repo: Repository, policy: RetentionPolicy) -> None:
    """Store ``policy`` with the volume (it applies from the next gc on)."""
    repo.store.put(repo.prefix + "policy", dump_json(asdict(policy.validate())))
    repo._grace = None  # this process's writers keep their uploads young by the new one


# -- tags -------------------------------------------------------------------------------------
def _tag_key(repo: Repository, name: str) -> str:
    return f"{repo.prefix}tags/{name}"


def set_tag(repo: Repository, seq: int, name: str, *, force: bool = False) -> None:
    """Tag commit ``seq`` as ``name``; tagged commits survive every policy."""
    from ..names import NAME_RE

    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidError(
            f"invalid tag name {name!r}: 1-64 letters, digits, '.', '_', '-', starting with a letter or digit"
        )
    if name.isdigit():
        # `VOLUME@N` (URLs, `at=`) means commit N: such a tag could never be named there
        raise InvalidError(
            f"invalid tag name {name!r}: a tag name needs a character other than a digit, "
            f"since @{name} means commit {int(name)}"
        )
    rec = repo.record(seq)
    if repo.is_expired(seq):
        raise NotFoundError(f"commit {seq} was expired by garbage collection and cannot be tagged")
    doc = dump_json({"seq": rec.seq, "time": time.time()})
    if force:
        repo.store.put(_tag_key(repo, name), doc)
    elif not repo.store.put_if_absent(_tag_key(repo, name), doc):
        from ..errors import AlreadyExistsError

        raise AlreadyExistsError(f"tag {name!r} exists already (pass force=True to move it)")


def delete_tag(repo: Repository, name: str) -> None:
    """Remove tag ``name`` (the commit then falls under the policy again)."""
    if not repo.store.exists(_tag_key(repo, name)):
        raise NotFoundError(f"no tag {name!r}")
    repo.store.delete([_tag_key(repo, name)])


def list_tags(repo: Repository) -> dict[str, int]:
    """Tag name -> commit seq (the tags are read in parallel)."""
    keys = [info.key for info in repo.store.list(repo.prefix + "tags/")]
    out = {}
    for key, data in zip(keys, repo.store.get_many(keys), strict=True):
        if data is None:
            continue  # deleted meanwhile
        try:
            out[key.rsplit("/", 1)[1]] = int(load_json(data, key)["seq"])
        except (KeyError, ValueError, TypeError):
            continue
    return out


# -- selection ----------------------------------------------------------------------------------
def select_kept(
    records: list[CommitRecord], policy: RetentionPolicy, tagged: Iterable[int], now: float
) -> set[int]:
    """The seqs to keep among ``records`` (the live, non-expired ones, any order)."""
    recs = sorted(records, key=lambda r: r.seq, reverse=True)
    if not recs:
        return set()
    data = [r for r in recs if r.kind != "gc"]
    # Always kept: the head, the newest data commit (the state the head shows), commit 0, tags.
    protected = {recs[0].seq, 0} | set(tagged) | ({data[0].seq} if data else set())
    keep = set(protected)
    periodic: set[int] = set()  # the hourly/daily picks: squashing never removes them
    if policy.keeps_everything():
        keep |= {r.seq for r in data}
    else:
        if policy.keep_last:
            keep |= {r.seq for r in data[: policy.keep_last]}
        if policy.keep_within is not None:
            keep |= {r.seq for r in data if r.time >= now - policy.keep_within}
        for n, width in ((policy.keep_hourly, 3600), (policy.keep_daily, 86400)):
            if n:
                buckets: dict[int, int] = {}
                for r in data:  # newest first: the first seen in a bucket is its newest
                    b = int(r.time // width)
                    if b not in buckets and len(buckets) < n:
                        buckets[b] = r.seq
                periodic |= set(buckets.values())
        keep |= periodic
        if all(
            v is None
            for v in (policy.keep_last, policy.keep_within, policy.keep_hourly, policy.keep_daily)
        ):
            keep |= {r.seq for r in data}  # only squashing was asked for
    if policy.squash_auto_after is not None:
        cutoff = now - policy.squash_auto_after
        run: list[int] = []
        for r in sorted(data, key=lambda r: r.seq):
            if r.kind in AUTO_KINDS and r.time < cutoff:
                run.append(r.seq)
                continue
            keep -= set(run[:-1]) - protected - periodic
            run = []
        keep -= set(run[:-1]) - protected - periodic
    return keep


# -- collection -----------------------------------------------------------------------------------
@dataclass
class GcReport:
    """What one garbage collection did (or, with ``dry_run``, would do)."""

    dry_run: bool = False
    seq: int | None = None
    expired: list[int] = field(default_factory=list)
    kept: int = 0
    packs_condemned: int = 0
    packs_repacked: int = 0
    objects_deleted: int = 0
    bytes_freed: int = 0
    bytes_live: int = 0

    def __str__(self) -> str:
        verb = "would free" if self.dry_run else "freed"
        return (
            f"{'dry run: ' if self.dry_run else ''}expired {len(self.expired)} commit(s), kept {self.kept}; "
            f"{self.packs_repacked} pack(s) repacked, {self.packs_condemned} condemned, "
            f"{self.objects_deleted} object(s) deleted; {verb} {self.bytes_freed:,} bytes"
        )


def collect(
    repo: Repository,
    *,
    dry_run: bool = False,
    grace: float | None = None,
    now: float | None = None,
    max_attempts: int = 50,
) -> GcReport:
    """Run garbage collection on ``repo`` (see the module docstring)."""
    policy = load_policy(repo)
    grace = policy.grace if grace is None else float(grace)
    for _attempt in range(max_attempts):
        t = time.time() if now is None else now
        report = _collect_once(repo, policy, grace, t, dry_run)
        if report is not None:
            return report
        time.sleep(0.05)
    raise ConflictError(
        f"garbage collection kept losing the race with writers after {max_attempts} attempts; try again"
    )


def _collect_once(
    repo: Repository, policy: RetentionPolicy, grace: float, now: float, dry_run: bool
) -> GcReport | None:
    store = repo.store
    head = repo.head(refresh=True)
    state = repo.gc_state(head)
    records = [repo.record(s) for s in range(head.seq + 1) if not state.is_expired(s)]
    tags = list_tags(repo)
    keep = select_kept(records, policy, tags.values(), now)
    newly_expired = sorted(r.seq for r in records if r.seq not in keep)
    report = GcReport(dry_run=dry_run, expired=newly_expired, kept=len(keep))

    # Mark: every tree node and chunk reachable from a kept commit.
    trees: set[str] = {EMPTY_TREE}
    chunks: set[str] = set()
    for seq in sorted(keep):
        _mark(repo, repo.record(seq).root, trees, chunks)
    repo.ensure_index(head.index, gc=head.gc_pointer)
    index: ChunkIndex = repo.index
    if index.gc != head.gc_pointer:
        return None  # another gc's record landed since: start over from its result
    live: dict[str, list[tuple[str, ChunkLoc]]] = {}
    for h in chunks:
        loc = index.get_any(h)
        if loc is None:
            raise ConflictError(
                f"chunk {h[:16]}… is reachable but not in the index; run verify() before gc"
            )
        live.setdefault(loc.pack, []).append((h, loc))

    # What is on the store.
    packs_on_store = {i.key.rsplit("/", 1)[1]: i for i in store.list(repo.prefix + "packs/")}
    # Tree nodes go in two steps, since a node cannot be rescued by a new name as a chunk
    # is: every unreachable node is listed ("doomed") with this record, and the next gc
    # deletes those still unreachable then. Meanwhile no commit may name a doomed node
    # (Repository._avoid_doomed): one that would, a folder put back exactly as expired
    # history had it, writes it under a new name. Deleting nodes found unreachable in a
    # listing at once lost a node a commit landing after this record wrote again.
    nodes_on_store = {i.key.rsplit("/", 1)[1]: i for i in store.list(repo.prefix + "trees/")}
    doomed = {h for h in nodes_on_store if h not in trees}
    deletable_nodes = {h for h in repo.doomed_trees(head) if h in doomed}
    live_bytes = {p: sum(loc.length for _h, loc in items) for p, items in live.items()}
    report.bytes_live = sum(live_bytes.values())
    condemned = dict(state.condemned)
    total_bytes: dict[str, int] = {}
    for loc in index.items().values():
        total_bytes[loc.pack] = total_bytes.get(loc.pack, 0) + loc.length
    repack = [
        p
        for p in packs_on_store
        if p in live and p not in condemned and live_bytes[p] < REPACK_BELOW * total_bytes.get(p, 0)
    ]
    known_packs = index.packs() | set(condemned)
    to_condemn = [
        p for p in known_packs if p not in live and p not in condemned and p in packs_on_store
    ]

    new_locs: dict[str, ChunkLoc] = {}
    if repack and not dry_run:
        writer = PackWriter(repo._put_pack, _upload_pool)
        for p in repack:
            # every live chunk is checked (and the pack read again if one fails) first
            data = repo.get_pack_checked(p, live[p])
            for h, loc in live[p]:
                writer.add(h, loc.codec, data[loc.offset : loc.offset + loc.length], loc.raw_len)
        writer.finish()
        new_locs = dict(writer.new_chunks)
    report.packs_repacked = len(repack)
    for p in repack:
        to_condemn.append(p)
    for p in to_condemn:
        condemned[p] = now
    report.packs_condemned = len(to_condemn)

    # The new checkpoint covers exactly the live chunks, at their (new) locations.
    entries: dict[str, ChunkLoc] = {}
    for _p, items in live.items():
        for h, loc in items:
            entries[h] = new_locs.get(h, loc)
    deletable_packs = [p for p, t in condemned.items() if t <= now - grace]
    for p in deletable_packs:
        info = packs_on_store.get(p)
        report.bytes_freed += info.size if info else 0
    orphan_packs = [
        p
        for p, info in packs_on_store.items()
        if p not in known_packs
        and p not in live
        and p not in new_locs_packs(new_locs)
        and info.mtime <= now - grace
    ]
    for p in orphan_packs:
        report.bytes_freed += packs_on_store[p].size

    if dry_run:
        report.bytes_freed += sum(nodes_on_store[h].size for h in deletable_nodes)
        report.objects_deleted = len(deletable_packs) + len(orphan_packs) + len(deletable_nodes)
        return report

    policy_text = policy.describe()
    rec: CommitRecord | None = None
    salt = os.urandom(32)
    for _attempt in range(200):
        checkpoint_keys = _write_checkpoint(repo, entries, salt)
        doomed_key = _write_doomed(repo, doomed)
        remaining = {p: t for p, t in condemned.items() if p not in deletable_packs}
        extra: dict[str, Any] = {
            "expired": [
                list(r)
                for r in seq_ranges(
                    [s for a, b in state.expired for s in range(a, b + 1)] + newly_expired
                )
            ],
            "condemned": remaining,
            "report": {
                "expired": len(newly_expired),
                "packs_condemned": report.packs_condemned,
                "packs_repacked": report.packs_repacked,
                "bytes_freed": report.bytes_freed,
            },
            "policy": policy_text,
        }
        if doomed_key is not None:
            extra["doomed_trees"] = doomed_key
        msg = _gc_message(newly_expired, report.packs_condemned, report.packs_repacked, grace)
        rec = CommitRecord(
            seq=head.seq + 1,
            parent=head.seq,
            root=head.root,
            index=checkpoint_keys,
            txn=uuid.uuid4().hex,
            time=time.time(),
            author="gc",
            host=socket.gethostname(),
            message=msg,
            kind="gc",
            stats={"added": 0, "modified": 0, "deleted": 0, "bytes_new": 0},
            extra=extra,
        )
        key = repo._log_key(rec.seq)
        if store.put_if_absent(key, rec.to_bytes()):
            break
        try:
            other = CommitRecord.from_bytes(store.get(key), key)
        except NotFoundError:
            other = None
        if other is not None and other.txn == rec.txn:
            break
        # A writer committed first. Everything its commits reach stays: mark it, and
        # take back the condemnation of any pack it (re)uses. Expiry is unchanged.
        new_head = repo.head(refresh=True)
        if new_head.gc_pointer != state.seq:
            return None  # another gc ran meanwhile: start over from its result
        repo._load_into(index, new_head.index)  # listed under the same gc as ``index``
        known = set(chunks)
        for s in range(head.seq + 1, new_head.seq + 1):
            _mark(repo, repo.record(s).root, trees, chunks)
        doomed -= trees
        deletable_nodes -= trees
        for h in chunks - known:
            loc = index.get_any(h)
            if loc is None:
                raise ConflictError(
                    f"chunk {h[:16]}… of a new commit is not in the index; run verify()"
                )
            if loc.pack in condemned and loc.pack not in state.condemned:
                del condemned[loc.pack]
                report.packs_condemned -= 1
                if loc.pack in deletable_packs:
                    deletable_packs.remove(loc.pack)
                    info = packs_on_store.get(loc.pack)
                    report.bytes_freed -= info.size if info else 0
            entries[h] = new_locs.get(h, loc)
        head = new_head
        time.sleep(random.uniform(0, 0.05))
    else:
        return None
    assert rec is not None
    referenced = index.packs()  # includes the segments of commits that raced with us
    orphan_packs = [p for p in orphan_packs if p not in referenced]
    repo._records[rec.seq] = rec
    if repo._head_seq is None or rec.seq > repo._head_seq:
        repo._head_seq = rec.seq  # only forward: another thread may know a newer one
    repo.head(refresh=False)  # switch this process to the new index and condemned set
    report.seq = rec.seq

    # Sweep: condemned packs past their grace, and orphans older than the grace period.
    doomed_keys = [repo._pack_key(p) for p in deletable_packs + orphan_packs]
    cutoff = now - grace
    keep_index = set(checkpoint_keys)
    for info in store.list(repo.prefix + "index/"):
        if info.key not in keep_index and info.mtime <= cutoff:
            doomed_keys.append(info.key)
            report.bytes_freed += info.size
    for h in sorted(deletable_nodes):
        doomed_keys.append(repo._tree_key(h))
        report.bytes_freed += nodes_on_store[h].size
    # The lists of doomed nodes: this record's, and the one before it (a writer that has
    # not seen this record yet may still read that), stay.
    previous = repo.record(state.seq).extra.get("doomed_trees") if state.seq is not None else None
    for info in store.list(repo.prefix + "gc/"):
        if info.key not in (doomed_key, previous):
            doomed_keys.append(info.key)
    for i in range(0, len(doomed_keys), 1000):
        store.delete(doomed_keys[i : i + 1000])
    report.objects_deleted = len(doomed_keys)
    _sweep_local_temp(store, cutoff)
    return report


def new_locs_packs(new_locs: dict[str, ChunkLoc]) -> set[str]:
    return {loc.pack for loc in new_locs.values()}


def _gc_message(expired: list[int], condemned: int, repacked: int, grace: float) -> str:
    """The gc commit's message: what expired, and how many of the volume's data files
    are no longer needed (deleted by a gc run once the grace period has passed, or at
    once with no grace)."""
    n = len(expired)
    text = (
        f"gc: expired {n} commit{'s' if n != 1 else ''} ({_ranges_text(expired)})"
        if n
        else "gc: no commit expired"
    )
    if condemned:
        files = f"{condemned} data file{'s' if condemned != 1 else ''}"
        text += (
            f"; {files} deleted"
            if grace <= 0
            else f"; {files} no longer needed (a gc run {duration_text(grace)} from now deletes them)"
        )
        if repacked:
            text += f", the data still in use in {repacked} of them copied out first"
    return text


def _ranges_text(seqs: list[int]) -> str:
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in seq_ranges(seqs))


def _mark(repo: Repository, root: str, trees: set[str], chunks: set[str]) -> None:
    stack = [root]
    t = repo.trees
    while stack:
        t.read_ahead([h for h in stack[-READ_AHEAD_NODES:] if h not in trees])
        h = stack.pop()
        if h in trees:
            continue
        trees.add(h)
        trees.update(t.child_hashes(h))
        for e in t.entries(h):
            if e.kind == DIR:
                stack.append(e.tree)  # type: ignore[arg-type]
            elif e.kind == FILE and e.chunks:
                chunks.update(c for c, _n in e.chunks)


def _write_doomed(repo: Repository, nodes: set[str]) -> str | None:
    """Store the list of doomed tree nodes; its key (named by its hash), or None."""
    if not nodes:
        return None
    blob = compress_blob("\n".join(sorted(nodes)).encode())
    key = f"{repo.prefix}gc/{hash_bytes(blob)}"
    repo.store.put(key, blob)
    return key


def _write_checkpoint(repo: Repository, entries: dict[str, ChunkLoc], salt: bytes) -> list[str]:
    """Store the checkpoint of ``entries``; its keys. Each shard carries ``salt`` (a
    random id of this gc run): a checkpoint named by its entries alone would have the
    key of an older index object whenever the live chunks come back to what they were
    (a file added, a gc, the file removed: or no chunk at all), and a gc run beside this
    one deletes older index objects by key, from a listing taken before this write."""
    keys = []
    for shard in checkpoint_shards(entries):
        seg = encode_segment(shard, salt)
        key = f"{repo.prefix}index/{hash_bytes(seg)}"
        repo.store.put(key, seg)
        keys.append(key)
    return keys


def _sweep_local_temp(store: Any, cutoff: float) -> None:
    """Temporary files of crashed local writers (``.tmp-*``) older than the cutoff."""
    temp_files = getattr(store, "temp_files", None)
    if temp_files is None:
        return
    for p in list(temp_files(cutoff)):
        try:
            p.unlink()
        except OSError:
            pass
