"""History retention and garbage collection, on the local store and on SeaweedFS."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from test_group_commit import dead_data

from jupyter_volume import InvalidError, NotFoundError, Volume
from jupyter_volume.errors import AlreadyExistsError
from jupyter_volume.repository.gc import RetentionPolicy, parse_duration, select_kept
from jupyter_volume.repository.repo import CommitRecord

pytestmark = pytest.mark.slow  # long in all: started first (conftest)

MiB = 1 << 20


def store_bytes(store, prefix: str = "vols/") -> int:
    return sum(i.size for i in store.list(prefix))


def snapshot(store) -> dict[str, tuple[int, float]]:
    return {i.key: (i.size, i.mtime) for i in store.list("")}


def put(vol: Volume, path: str, data: bytes) -> int:
    with vol.batch_upload(force=True) as b:
        b.put_file(io.BytesIO(data), path)
    return b.commit_info.seq


def read(vol: Volume, path: str, at: int | None = None) -> bytes:
    return b"".join(vol.read_file(path, at=at))


def gc_deleting(vol: Volume, **kw: Any) -> tuple[Any, list[str]]:
    """Run gc on ``vol``: its report, and the kinds of what it deleted (``packs``,
    ``index``, ...; one per object). An index object a gc's checkpoint supersedes goes
    once it is older than the grace period, as an orphan pack does."""
    prefix = vol._repo.prefix
    before = {i.key for i in vol.store.list(prefix)}
    report = vol.gc(**kw)
    gone = before - {i.key for i in vol.store.list(prefix)}
    return report, sorted(k[len(prefix) :].split("/", 1)[0] for k in gone)


def test_keep_last_two_shrinks_store_to_two_versions(store) -> None:
    vol = Volume.lookup("ckpt", create_if_missing=True, store=store)
    versions = {}
    for _ in range(10):
        data = os.urandom(50 * MiB)
        seq = put(vol, "model.bin", data)
        versions[seq] = data[:64]  # remember a fingerprint, not the whole version
    before = store_bytes(store)
    assert before > 10 * 50 * MiB
    vol.set_retention(keep_last=2)
    report = vol.gc(grace=0)
    after = store_bytes(store)
    assert after < 2.1 * 50 * MiB, (before, after)
    assert after > 1.9 * 50 * MiB
    assert report.bytes_freed > 7.5 * 50 * MiB
    assert len(report.expired) == 8
    seqs = sorted(versions)
    for seq in seqs[-2:]:
        assert read(vol, "model.bin", at=seq)[:64] == versions[seq]
    for seq in seqs[:-2]:
        with pytest.raises(NotFoundError, match="expired"):
            vol.listdir("/", at=seq)
    assert vol.verify().ok
    # history says what was expired, and when
    gc_commit = vol.history()[0]
    assert gc_commit.kind == "gc" and gc_commit.message.startswith("gc: expired 8 commits (")
    # in the words of a user: data files, no internal "packs" or "condemned"
    assert "data file" in gc_commit.message, gc_commit.message
    assert "pack" not in gc_commit.message and "condemn" not in gc_commit.message
    assert sorted(c.seq for c in vol.history(include_expired=True) if c.expired) == seqs[:-2]


def test_dry_run_changes_nothing(store) -> None:
    vol = Volume.lookup("dry", create_if_missing=True, store=store)
    for i in range(4):
        put(vol, "f.bin", os.urandom(MiB + i))
    vol.set_retention(keep_last=1)
    before = snapshot(store)
    report = vol.gc(dry_run=True, grace=0)
    assert report.dry_run and len(report.expired) == 3 and report.bytes_freed > 2 * MiB
    assert snapshot(store) == before
    assert len(vol.history()) == 5


def test_tagged_commits_survive_every_policy(store) -> None:
    vol = Volume.lookup("tags", create_if_missing=True, store=store)
    seqs = [put(vol, "w.bin", os.urandom(200_000 + i)) for i in range(5)]
    keep_me = seqs[1]
    content = read(vol, "w.bin", at=keep_me)
    vol.tag(keep_me, "best")
    with pytest.raises(AlreadyExistsError):
        vol.tag(seqs[2], "best")
    with pytest.raises(InvalidError):
        vol.tag(seqs[2], "../bad")
    # digits only: volume://v@1/ means commit 1, so tag "1" could never be reached
    with pytest.raises(InvalidError, match="@1 means commit 1"):
        vol.tag(seqs[2], "1")
    vol.tag(seqs[2], "v1")  # a digit and a letter is a name
    vol.untag("v1")
    policies = [
        dict(keep_last=1),
        dict(keep_within="1s"),
        dict(keep_hourly=1),
        dict(keep_daily=1),
        dict(squash_auto_after=0),
    ]
    time.sleep(1.1)
    for pol in policies:
        vol.set_retention(**pol, grace=0)
        vol.gc()
        assert read(vol, "w.bin", at=keep_me) == content
        assert vol.verify().ok
    [tagged] = [c for c in vol.history() if c.tags]
    assert tagged.seq == keep_me and tagged.tags == ("best",)
    assert vol.tags() == {"best": keep_me}
    vol.untag("best")
    vol.set_retention(keep_last=1, grace=0)
    vol.gc()
    with pytest.raises(NotFoundError):
        vol.listdir("/", at=keep_me)


def test_orphan_pack_of_killed_writer_respects_grace(opened, tmp_path: Path) -> None:
    _store, url, env = opened
    child_env = {**os.environ, **env}
    vol = Volume.lookup("orph", create_if_missing=True, store=url)
    put(vol, "keep.txt", b"kept" * 1000)
    # A writer uploads a pack, then dies before writing its commit record.
    code = textwrap.dedent(
        f"""
        import io, os
        from jupyter_volume import Volume
        vol = Volume.lookup("orph", store={url!r})
        w = vol._repo.writer()
        w.file_entry(io.BytesIO(os.urandom(3 << 20)))
        w.packs.finish()
        os._exit(0)
        """
    )
    packs = lambda: {i.key for i in vol.store.list(vol._repo.prefix + "packs/")}  # noqa: E731
    kept = packs()
    subprocess.run([sys.executable, "-c", code], env=child_env, check=True, timeout=120)
    orphans = packs() - kept
    assert orphans and kept < packs()
    vol.set_retention(grace=5)
    _report, gone = gc_deleting(vol)
    assert packs() == kept | orphans, "an upload younger than the grace period must survive"
    assert "packs" not in gone, gone  # (keep.txt's index segment may go: superseded)
    time.sleep(5.5)
    report = vol.gc()
    assert packs() == kept
    assert report.bytes_freed >= 3 << 20
    assert read(vol, "keep.txt") == b"kept" * 1000
    assert vol.verify().ok


GC_LOOP = """
import sys, time
from jupyter_volume import Volume
vol = Volume.lookup("race", store=sys.argv[1])
for i in range(int(sys.argv[2])):
    r = vol.gc(grace=5)
    rep = vol.verify(read_data=False)  # structure each round; every byte at the end
    assert rep.ok, rep.errors
    print("gc", i, r, flush=True)
"""


def test_gc_loop_against_a_committing_writer(opened, tmp_path: Path) -> None:
    _store, url, env = opened
    child_env = {**os.environ, **env}
    vol = Volume.lookup("race", create_if_missing=True, store=url)
    vol.set_retention(keep_last=3, grace=5)
    put(vol, "seed.bin", os.urandom(MiB))
    gc_proc = subprocess.Popen(
        [sys.executable, "-c", GC_LOOP, url, "20"],
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    last = b""
    i = 0
    m = vol.mount(tmp_path / "mnt", background=False)
    try:
        while gc_proc.poll() is None or i < 5:
            # New data each round, plus a file that repeats earlier chunks (dedup against
            # packs that gc may be condemning right now).
            last = os.urandom(300_000) + f"round {i}".encode()
            (tmp_path / "mnt/data.bin").write_bytes(last)
            (tmp_path / "mnt/copy.bin").write_bytes(last[:200_000])
            assert m.commit(f"round {i}") is not None
            i += 1
            time.sleep(0.1)  # a writer at a steady pace, not a tight loop starving gc
    finally:
        out, err = gc_proc.communicate(timeout=600)
        m.unmount()
    assert gc_proc.returncode == 0, out + err
    assert out.count("gc ") == 20
    vol.reload()
    assert read(vol, "data.bin") == last
    assert read(vol, "copy.bin") == last[:200_000]
    report = vol.verify()
    assert report.ok, report.errors
    for c in vol.history():
        vol.listdir("/", at=c.seq, recursive=True)  # every kept commit is readable


def test_squash_background_commits(store, tmp_path: Path) -> None:
    vol = Volume.lookup("sq", create_if_missing=True, store=store)
    m = vol.mount(tmp_path / "mnt", interval=0.1)
    for i in range(6):
        (tmp_path / "mnt/log.txt").write_text(f"step {i}")
        deadline = time.time() + 20
        while time.time() < deadline and not any(
            c.message.endswith("log.txt") and read(vol, "log.txt", at=c.seq) == f"step {i}".encode()
            for c in vol.history(3)
        ):
            time.sleep(0.05)
    m.unmount()
    autos = [c for c in vol.history() if c.kind == "auto"]
    assert len(autos) >= 5
    vol.set_retention(squash_auto_after=0, grace=0)
    vol.gc()
    remaining = [c for c in vol.history() if c.kind == "auto"]
    assert [c.seq for c in remaining] == [autos[0].seq]  # one run: only its last commit stays
    assert read(vol, "log.txt") == b"step 5"
    assert vol.verify().ok


def test_mount_reloads_after_gc_expired_its_base(store, tmp_path: Path) -> None:
    vol = Volume.lookup("mb", create_if_missing=True, store=store)
    put(vol, "a.txt", b"a1" * 400)
    m = vol.mount(tmp_path / "mnt", background=False)
    other = Volume.from_name("mb", store=store)
    for i in range(3):
        put(other, "a.txt", f"a{i + 2}".encode() * 400)
    other.set_retention(keep_last=1, grace=0)
    other.gc()
    m.reload()
    assert (tmp_path / "mnt/a.txt").read_bytes() == b"a4" * 400
    m.unmount()


def test_restore_and_diff_refuse_an_expired_commit(store) -> None:
    # gc deleted the expired commit's trees and data: restoring it used to publish a
    # damaged head (every later read failed), diffing from it answered from stale
    # cached trees (or failed on a raw store key in another process).
    vol = Volume.lookup("rx", create_if_missing=True, store=store)
    old = put(vol, "big.bin", os.urandom(300_000))
    vol.remove_file("big.bin")
    put(vol, "small", b"x")
    head = vol.seq
    vol.set_retention(keep_last=1)
    vol.gc(grace=0)
    gc_head = vol.seq
    assert gc_head > head
    with pytest.raises(NotFoundError, match=f"commit {old} .* expired by garbage collection"):
        vol.restore(old)
    with pytest.raises(NotFoundError, match="expired"):
        vol.restore(old, "big.bin")
    with pytest.raises(NotFoundError, match=f"commit {old} .* expired by garbage collection"):
        vol.diff(old)
    fresh = Volume.from_name("rx", store=store)  # no cached records or trees
    with pytest.raises(NotFoundError, match="expired"):
        fresh.diff(old, head)
    assert vol.seq == gc_head  # nothing was published
    assert vol.verify().ok
    assert read(vol, "small") == b"x"


def test_a_restore_refuses_a_commit_another_process_expires_meanwhile(store) -> None:
    """restore() looked at the commit's expiry once, before committing: a gc in another
    process landing in between expired it, and the restore published a head whose
    data gc had dropped. The other process's gc is run from inside the commit step
    here (the race's moment, which a real race hits only sometimes)."""
    from jupyter_volume.repository import gc
    from jupyter_volume.repository.repo import Repository

    vol = Volume.lookup("rg", create_if_missing=True, store=store)
    old = put(vol, "a.bin", os.urandom(300_000))
    vol.remove_file("a.bin")
    vol.set_retention(keep_last=1, grace=0)
    other = Repository(vol.store, vol.object_id)  # another process's view of the volume
    real = vol._commit_changes

    def gc_first(*a, **kw):  # type: ignore[no-untyped-def]
        gc.collect(other, grace=0)
        return real(*a, **kw)

    for path in (None, "a.bin"):
        vol._commit_changes = gc_first  # type: ignore[method-assign]
        with pytest.raises(NotFoundError, match="expired by garbage collection"):
            vol.restore(old, path)
    vol._commit_changes = real  # type: ignore[method-assign]
    assert "a.bin" not in [e.path for e in vol.listdir("/")]
    assert vol.verify().ok


@pytest.mark.parametrize("other_file", [0, 3 << 20], ids=["pack-condemned", "pack-kept"])
def test_a_commit_reusing_data_a_concurrent_gc_found_dead_stays_readable(
    store, other_file: int
) -> None:
    """A writer in another process deduplicates against chunks only expired history
    holds; gc lands before its commit. The commit used to succeed and be unreadable
    ("chunk ... is missing from the volume's index"), and every later gc failed on it:
    after gc the repository forgot every location gc found dead, so nothing was copied
    out, whether the pack was condemned (nothing else lived in it) or kept (other live
    chunks share it). Now those chunks are copied out with the commit."""
    from jupyter_volume.repository.repo import Repository

    vol, x = dead_data(store, "gd", other_file)
    other = Repository(vol.store, vol.object_id)  # another process's repository
    other.head()
    writer = other.writer()
    entry = writer.file_entry(io.BytesIO(x))  # deduplicated: nothing new uploaded
    vol.gc()  # expires the commit that had x
    rec, _ = other.commit({"x-again.bin": entry}, writer=writer, message="x again", line=False)
    assert rec is not None
    assert read(Volume.from_name("gd", store=store), "x-again.bin") == x
    vol.gc(grace=0)  # past the grace: what gc condemned is deleted now
    fresh = Volume.from_name("gd", store=store)
    assert read(fresh, "x-again.bin") == x
    assert fresh.verify().ok


def test_policy_validation_and_durations() -> None:
    assert (
        parse_duration("90s") == 90
        and parse_duration("2h") == 7200
        and parse_duration("7d") == 7 * 86400
    )
    with pytest.raises(InvalidError):
        parse_duration("soon")
    with pytest.raises(InvalidError):
        RetentionPolicy(keep_last=0).validate()
    with pytest.raises(InvalidError):
        RetentionPolicy(grace=-1).validate()
    assert RetentionPolicy().keeps_everything()
    assert "last 3" in RetentionPolicy(keep_last=3).describe()


def _rec(seq: int, t: float, kind: str = "commit") -> CommitRecord:
    return CommitRecord(seq, seq - 1 if seq else None, "r", [], "x", t, "a", "h", "m", kind)


def test_squashing_background_commits_keeps_each_day_keep_daily_picked() -> None:
    """A run of background commits across midnight was squashed to its last one after
    the daily rule had picked its commit of the earlier day: keep_daily=2 kept one day."""
    day = 86400
    d1 = 19000 * day
    recs = [
        _rec(0, d1 - 10 * day, "create"),
        _rec(1, d1 + 23 * 3600, "auto"),  # day 1's newest commit, in a run of autos
        _rec(2, d1 + day + 1800, "auto"),
        _rec(3, d1 + day + 3600, "auto"),
        _rec(4, d1 + day + 7200),  # day 2's newest, the head
    ]
    keep = select_kept(
        recs, RetentionPolicy(keep_daily=2, squash_auto_after=3600), [], d1 + 3 * day
    )
    assert keep == {0, 1, 4}  # 2 squashed away; 1 stays as day 1's pick


def test_select_kept_hourly_daily_and_squash() -> None:
    now = 1_000_000_000.0
    recs = [_rec(0, now - 10 * 86400, "create")]
    # two commits an hour for 30 hours
    for i in range(60):
        recs.append(_rec(i + 1, now - (60 - i) * 1800))
    keep = select_kept(recs, RetentionPolicy(keep_hourly=5), [], now)
    assert len(keep - {0}) == 5
    keep = select_kept(recs, RetentionPolicy(keep_daily=2), [], now)
    assert len(keep - {0}) == 2
    keep = select_kept(recs, RetentionPolicy(keep_last=3, keep_within=3600), [], now)
    assert keep == {0, 60, 59, 58}
    autos = (
        [_rec(0, now - 1000, "create")]
        + [_rec(i, now - 1000 + i, "auto") for i in range(1, 6)]
        + [_rec(6, now - 10), _rec(7, now - 5, "auto"), _rec(8, now - 4, "auto")]
    )
    keep = select_kept(autos, RetentionPolicy(squash_auto_after=100), [], now)
    assert keep == {0, 5, 6, 7, 8}
    assert select_kept(autos, RetentionPolicy(), [], now) == set(range(9))


def test_a_copy_of_a_file_deleted_and_collected_meanwhile_stays_readable(store) -> None:
    """copy_files() takes the source's entry from the head, then commits it; meanwhile
    another process deletes the source and gc finds its data dead. The copy, a change
    set with no writer, copied nothing out: its record named chunks no index lists,
    and the next gc deleted their pack. Now it copies them out (or, were they gone,
    would refuse)."""
    from test_group_commit import PausingStore, _in_thread

    vol = Volume.lookup("cpy", create_if_missing=True, store=store)
    src = os.urandom(1 << 20)
    put(vol, "src.bin", src)
    vol.set_retention(keep_last=1)  # the default grace: gc condemns, deletes nothing yet
    paused = PausingStore(store, url=store.url + "#copier")  # a process of its own
    copier = Volume.from_name("cpy", store=paused)
    slot = paused.pause("put_if_absent", f"vols/{vol.object_id}/log/")
    t, out = _in_thread(lambda: copier.copy_files(["src.bin"], "dst.bin"))
    slot.wait()  # the copy is about to claim the log slot
    vol.remove_file("src.bin")
    vol.gc()  # src.bin's data is dead now
    slot.go()
    t.join(60)
    assert not t.is_alive() and "error" not in out, out
    fresh = Volume.from_name("cpy", store=store)
    assert read(fresh, "dst.bin") == src
    fresh.gc(grace=0)  # deletes what gc condemned
    fresh = Volume.from_name("cpy", store=store)
    assert read(fresh, "dst.bin") == src
    report = fresh.verify()
    assert report.ok, report.errors


def test_gc_that_loses_the_log_slot_to_a_writer_keeps_its_uploads(store) -> None:
    """gc lists the packs on the store (a writer's fresh pack among them, referenced by
    nothing yet: an orphan), then a writer's commit takes the log slot gc wanted. gc
    starts its record again on the new head, and must then know that pack is no orphan
    any more, even with no grace period at all."""
    from test_group_commit import PausingStore, _in_thread

    from jupyter_volume.repository import gc
    from jupyter_volume.repository.repo import Repository

    vol = Volume.lookup("lost", create_if_missing=True, store=store)
    put(vol, "a.bin", os.urandom(300_000))
    prefix = f"vols/{vol.object_id}/"
    w_repo = Repository(store, vol.object_id)
    w_repo.head()
    writer = w_repo.writer()
    data = os.urandom(1 << 20)
    entry = writer.file_entry(io.BytesIO(data))
    writer.packs.flush()  # its pack is on the store before gc looks
    writer.packs.finish()
    paused = PausingStore(store, url=store.url + "#gc")
    g_repo = Repository(paused, vol.object_id)
    slot = paused.pause("put_if_absent", prefix + "log/")
    t, out = _in_thread(lambda: gc.collect(g_repo, grace=0))
    slot.wait()  # gc has marked, listed the packs and is about to write its record
    rec, _ = w_repo.commit({"b.bin": entry}, writer=writer, line=False)
    assert rec is not None
    slot.go()
    t.join(60)
    assert not t.is_alive() and "error" not in out, out
    assert out["result"].seq == rec.seq + 1
    fresh = Volume.from_name("lost", store=store)
    assert read(fresh, "b.bin") == data
    report = fresh.verify()
    assert report.ok, report.errors


def test_a_restore_that_loses_the_log_slot_to_gc_refuses_the_commit_gc_expired(store) -> None:
    """restore(old) checked, on the head it was about to commit onto, that ``old`` was
    not expired; gc then took that log slot and expired it (deleting what only ``old``
    held). Committing again on gc's record, the restore must look again and refuse, or
    it would publish a head whose data is gone."""
    from test_group_commit import PausingStore, _in_thread

    vol = Volume.lookup("rsl", create_if_missing=True, store=store)
    old = put(vol, "a.bin", os.urandom(300_000))
    vol.remove_file("a.bin")
    put(vol, "b.txt", b"b" * 1000)
    vol.set_retention(keep_last=1)
    paused = PausingStore(store, url=store.url + "#restorer")  # a process of its own
    restorer = Volume.from_name("rsl", store=paused)
    slot = paused.pause("put_if_absent", f"vols/{vol.object_id}/log/")
    t, out = _in_thread(lambda: restorer.restore(old, "a.bin"))
    slot.wait()  # checked (old is kept so far) and about to claim the slot
    vol.gc(grace=0)  # expires old and deletes its data
    slot.go()
    t.join(60)
    assert not t.is_alive()
    assert isinstance(out.get("error"), NotFoundError), out
    fresh = Volume.from_name("rsl", store=store)
    assert [e.path for e in fresh.listdir("/")] == ["b.txt"]
    report = fresh.verify()
    assert report.ok, report.errors


def test_a_folder_put_back_as_expired_history_had_it_survives_a_concurrent_gc(store) -> None:
    """A folder returns to exactly what an expired commit held (a temporary file added,
    then removed): its tree node has that commit's name again. gc lists the store's
    nodes, finds that one unreachable, and deletes it; a commit that wrote the same node
    in between (after gc's record, so gc never marked it) was left naming a node that
    is gone, and the volume's head could no longer be read. Twice: the second gc deletes
    what the first one found dead."""
    from test_group_commit import PausingStore, _in_thread

    vol = Volume.lookup("putback", create_if_missing=True, store=store)
    put(vol, "F/a.txt", b"a" * 1000)
    vol.set_retention(keep_last=1, grace=0)
    paused = PausingStore(store, url=store.url + "#gc")  # gc in a process of its own
    collector = Volume.from_name("putback", store=paused)
    for round_ in range(3):
        # F is {a, tmp}: F as only {a} is history now. tmp's data is dead once it is
        # removed, so each gc has a pack to delete (no grace): it stops right there.
        put(vol, "F/tmp.txt", os.urandom(300_000))
        sweep = paused.pause("delete", f"vols/{vol.object_id}/")
        t, out = _in_thread(collector.gc)
        sweep.wait()  # gc's record has landed and it has listed what it deletes
        vol.remove_file("F/tmp.txt")  # F is {a} again: the node an expired commit had
        sweep.go()
        t.join(60)
        assert not t.is_alive() and "error" not in out, out
        fresh = Volume.from_name("putback", store=store)
        assert [e.path for e in fresh.listdir("F")] == ["F/a.txt"], round_
        assert read(fresh, "F/a.txt") == b"a" * 1000
        report = fresh.verify()
        assert report.ok, (round_, report.errors)
    vol.gc()
    fresh = Volume.from_name("putback", store=store)
    assert read(fresh, "F/a.txt") == b"a" * 1000
    assert fresh.verify().ok


def test_a_folder_copied_from_a_head_that_gc_expires_meanwhile_stays_readable(store) -> None:
    """copy_files() of a folder takes the folder's tree node whole from the head it
    read; the folder changes and gc expires that head before the copy commits. The
    node is unreachable then, and the copy landing after gc's record named it: gc had
    deleted it (no grace), so the new folder could not be listed. Now gc only lists
    it, the copy writes it under a new name, and the next gc deletes the old one."""
    from test_group_commit import PausingStore, _in_thread

    vol = Volume.lookup("cpdir", create_if_missing=True, store=store)
    put(vol, "F/a.txt", b"a" * 1000)
    vol.set_retention(keep_last=1, grace=0)
    paused = PausingStore(store, url=store.url + "#copier")  # a process of its own
    copier = Volume.from_name("cpdir", store=paused)
    slot = paused.pause("put_if_absent", f"vols/{vol.object_id}/log/")
    t, out = _in_thread(lambda: copier.copy_files(["F"], "G", recursive=True))
    slot.wait()  # F's node is in the copy's change set; it is about to commit
    put(vol, "F/b.txt", b"b" * 1000)  # F changes: the node the copy holds is history
    vol.gc()  # expires that history
    slot.go()
    t.join(60)
    assert not t.is_alive() and "error" not in out, out
    for _ in range(2):  # the second gc deletes what the first found unreachable
        fresh = Volume.from_name("cpdir", store=store)
        assert [e.path for e in fresh.listdir("G")] == ["G/a.txt"]
        assert read(fresh, "G/a.txt") == b"a" * 1000
        report = fresh.verify()
        assert report.ok, report.errors
        fresh.gc()


def test_a_streamed_commit_names_no_node_gc_found_unreachable(store) -> None:
    """The streamed (initial) commit builds its tree bottom up; a folder it builds can
    repeat a node an expired commit had, which the gc in force found unreachable and
    the next gc deletes by name. It must write that folder under another name."""
    vol = Volume.lookup("stream", create_if_missing=True, store=store)
    put(vol, "F/a.txt", b"a" * 100)  # kept inside its node: no chunk for gc to drop
    repo = vol._repo
    old = repo.lookup("F")
    entry = repo.lookup("F/a.txt")
    vol.remove_file("F/a.txt")  # F is gone: its node is only in history
    vol.set_retention(keep_last=1, grace=0)
    vol.gc()
    assert old.tree in repo.doomed_trees(repo.head(refresh=True))
    rec, _ = repo.commit_stream([("F/a.txt", entry)], message="F again")
    assert rec is not None
    now = repo.lookup("F", rec.root)
    assert now.tree != old.tree  # the same folder, under a name no gc deletes
    assert [e.path for e in vol.listdir("F")] == ["F/a.txt"]
    vol.gc()  # deletes the old name
    fresh = Volume.from_name("stream", store=store)
    assert read(fresh, "F/a.txt") == b"a" * 100
    report = fresh.verify()
    assert report.ok, report.errors


def _slow_writer(store, name: str, grace: float) -> tuple[Volume, Any, Any, bytes, Any]:
    """A volume with one file and a ``grace`` period, and a writer of another process's
    view that has staged 3 MiB: ``(volume, repository, writer, data, entry)``."""
    from jupyter_volume.repository.repo import Repository

    vol = Volume.lookup(name, create_if_missing=True, store=store)
    put(vol, "a.bin", os.urandom(300_000))
    vol.set_retention(keep_last=1, grace=grace)
    repo = Repository(store, vol.object_id)  # the slow writer's own view
    writer = repo.writer()
    data = os.urandom(3 << 20)
    return vol, repo, writer, data, writer.file_entry(io.BytesIO(data))


def test_a_writer_slower_than_the_grace_period_keeps_its_uploads(store) -> None:
    """A commit in the making holds uploads no record names yet: to gc they look like a
    crashed writer's orphans once they are older than the grace period, and gc deleted
    the first pack of a commit that took longer than that (it then published a file
    whose data was gone). The writer now keeps them young until it publishes."""
    from jupyter_volume.repository import keeper

    grace = 8.0
    vol, repo, writer, data, entry = _slow_writer(store, "slow", grace)
    writer.packs.finish()  # its pack is on the store, named by no commit
    time.sleep(grace + 2)  # still staging, longer than the grace period
    _report, gone = gc_deleting(vol)
    assert "packs" not in gone, gone  # (a.bin's index segment goes: superseded)
    rec, _ = repo.commit({"b.bin": entry}, writer=writer, message="slow", line=False)
    assert rec is not None
    assert writer not in keeper._writers  # published: its uploads are gc's business now
    fresh = Volume.from_name("slow", store=store)
    assert read(fresh, "b.bin") == data
    result = fresh.verify()
    assert result.ok, result.errors


SUSPENDED_WRITER = """
import io, os, sys
from jupyter_volume import Volume
from jupyter_volume.errors import ConflictError
vol = Volume.from_name("stopped", store=sys.argv[1])
w = vol._repo.writer()
entry = w.file_entry(io.BytesIO(os.urandom(3 << 20)))
w.packs.finish()  # its packs are on the store, named by no commit
print("staged", flush=True)
sys.stdin.readline()  # the parent suspends this process, runs gc, continues it
try:
    rec, _ = vol._repo.commit({"late.bin": entry}, writer=w, line=False)
    print("committed", rec.seq, flush=True)
except ConflictError as e:
    print("refused:", e, flush=True)
"""


def test_a_writer_suspended_past_the_grace_period_refuses_to_commit(opened) -> None:
    """A writer stopped (SIGSTOP, a laptop's sleep) longer than the grace period cannot
    keep its uploads young: gc deletes them as orphans. Continued, it must not publish
    a commit naming them; it refuses, and the volume stays readable."""
    import signal

    _store, url, env = opened
    vol = Volume.lookup("stopped", create_if_missing=True, store=url)
    put(vol, "a.bin", os.urandom(300_000))
    grace = 3.0
    vol.set_retention(grace=grace)
    packs = lambda: {i.key for i in vol.store.list(vol._repo.prefix + "packs/")}  # noqa: E731
    kept = packs()  # before the writer starts: then every new pack is its
    child = subprocess.Popen(
        [sys.executable, "-c", SUSPENDED_WRITER, url],
        env={**os.environ, **env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline() == "staged\n"
        child.send_signal(signal.SIGSTOP)
        staged = packs() - kept
        assert staged
        time.sleep(grace + 1.5)
        _report, gone = gc_deleting(vol)
        assert gone.count("packs") == len(staged), gone  # the stopped writer's packs
        assert packs() == kept
        child.send_signal(signal.SIGCONT)
        child.stdin.write("go\n")
        child.stdin.flush()
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGCONT)
            child.kill()
            child.wait()
    assert out.startswith("refused: this commit's data was uploaded"), out + err
    fresh = Volume.from_name("stopped", store=url)
    assert [e.path for e in fresh.listdir("/")] == ["a.bin"]
    result = fresh.verify()
    assert result.ok, result.errors


def test_a_forked_child_keeps_its_own_uploads_young(local_store) -> None:
    """A child forked from a process with a keeper thread inherits the thread's handle
    but not the thread: its writers must start one of their own."""
    from jupyter_volume.repository import keeper

    vol = Volume.lookup("forked", create_if_missing=True, store=local_store)
    w = vol._repo.writer()
    w.file_entry(io.BytesIO(os.urandom(3 << 20)))
    w.packs.finish()
    assert keeper._thread is not None and keeper._thread.is_alive()
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 only if its keeper runs
        import signal

        code = 1
        try:
            # a child stuck on state the fork copied is ended by the alarm (this process's
            # pytest-timeout handler, copied too, would go on running the tests here)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(60)
            w2 = vol._repo.writer()
            w2.file_entry(io.BytesIO(os.urandom(3 << 20)))
            w2.packs.finish()
            code = 0 if keeper._thread is not None and keeper._thread.is_alive() else 1
        finally:
            os._exit(code)
    _pid, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_verify_reports_a_reachable_node_gc_listed_as_unreachable(
    store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """verify() names a node a kept commit reaches but gc's list says the next gc will
    delete: the state the commit check prevents, made here by switching that check off."""
    vol = Volume.lookup("listed", create_if_missing=True, store=store)
    put(vol, "F/a.txt", b"a" * 100)
    repo = vol._repo
    entry = repo.lookup("F/a.txt")
    vol.remove_file("F/a.txt")
    vol.set_retention(keep_last=1, grace=0)
    vol.gc()
    assert vol.verify().ok
    monkeypatch.setattr(type(repo), "_avoid_doomed", lambda self, head, root, *a: root)
    rec, _ = repo.commit_stream([("F/a.txt", entry)], message="F again, unchecked")
    assert rec is not None
    report = vol.verify()
    assert not report.ok
    assert any("garbage collection listed it as unreachable" in e for e in report.errors), report


def test_a_commit_slower_than_the_grace_period_after_its_index_segment_keeps_it(store) -> None:
    """A commit stores its index segment (where its chunks are) just before it claims
    the log slot, and may then wait (a lost race, a line of writers, a slow check). gc
    deleted that segment as an orphan once it was older than the grace period, and the
    record landing afterwards named it: the volume's index could not be read. The
    writer now keeps the segment young like its packs."""
    grace = 6.0
    vol, repo, writer, data, entry = _slow_writer(store, "slowseg", grace)
    reports = []

    def slow_check(head) -> None:
        # runs after the segment is stored, before each attempt at the slot: the first
        # waits past the grace period while gc runs (gc then takes the slot: one retry)
        if not reports:
            time.sleep(grace + 2)
            reports.append(gc_deleting(vol)[1])

    rec, _ = repo.commit(
        {"b.bin": entry}, writer=writer, message="slow", line=False, check=slow_check
    )
    assert rec is not None
    assert reports[0] == ["index"], reports[0]  # a.bin's segment (superseded): not the writer's
    fresh = Volume.from_name("slowseg", store=store)
    assert read(fresh, "b.bin") == data
    result = fresh.verify()
    assert result.ok, result.errors


def test_an_explicit_mount_commit_after_another_clients_gc_deleted_its_reused_data(
    store, tmp_path: Path
) -> None:
    """A mount that has not looked at the volume since another client deleted ``x`` and
    ran gc with grace 0 writes ``x``'s bytes again: its writer deduplicated against the
    pack gc had just deleted, and ``commit()`` raised ConflictError ("commit again"),
    though the files were on disk to be read again. The explicit commit now retries."""
    from modeltest import StoreAs

    vol, x = dead_data(store, "ge")
    m = vol.mount(tmp_path / "mnt", background=False)
    other = Volume.from_name("ge", store=StoreAs(store))  # another client
    put(other, "y.txt", b"y")
    other.gc(grace=0)  # x's pack is deleted now
    (tmp_path / "mnt/x-again.bin").write_bytes(x)
    info = m.commit()
    assert info is not None
    fresh = Volume.from_name("ge", store=StoreAs(store, "c"))
    assert read(fresh, "x-again.bin") == x
    assert read(fresh, "y.txt") == b"y"
    assert fresh.verify().ok
    m.unmount()
