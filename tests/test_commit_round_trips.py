"""Requests that do not depend on one another are not made one after another.

On a remote store each request is a round trip, and a small commit, reload or open is
little else. Checked by order or by count, never by time: a store wrapper holds one
request until another has been asked for (code that made them in sequence would wait
for good: here 30 s, then fail), or a counting wrapper counts the looks at the log.

- A plain commit looks up the head (and builds and sends its tree) while its last
  uploads finish, lists the line of waiting writers beside the head, and writes the
  ``head`` hint only every :data:`HEAD_HINT_EVERY` commits.
- A reload loads the new head's index objects while it compares trees.
- Opening or listing volumes sweeps dead ephemeral ones beside the names; the config
  and head hint are asked for beside the store's format; a process does not read back
  the volume it has just created.
- A call that read the head to decide its change commits on that head (one look at the
  log); a head that moved meanwhile only loses the race for the slot.
- History reads the tags beside the log; taking a free lock is one request.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from jupyter_volume import Volume
from jupyter_volume.errors import AlreadyExistsError, NotFoundError
from jupyter_volume.repository import Repository
from jupyter_volume.repository.repo import HEAD_HINT_EVERY
from jupyter_volume.store import Store
from jupyter_volume.testing.wrappers import CountingStore, WrappedStore


class _PackHeldUntilHeadLooked(WrappedStore):
    """Once armed, a pack's PUT does not finish until the log has been looked at (listed,
    or its next key looked up): a commit that waited for its uploads before it looked
    up the head would wait for good (here: 30 s, then the PUT fails)."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.armed = False
        self.pack_waiting = threading.Event()
        self.head_looked = threading.Event()

    def _looked(self, key: str) -> None:
        if self.armed and "/log/" in key:
            self.head_looked.set()

    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        if self.armed and "/packs/" in key:
            self.pack_waiting.set()
            assert self.head_looked.wait(30), "the head was not looked up during the upload"
        return super().put(key, data)

    def list(self, prefix: str = "", start_after: str | None = None):  # type: ignore[no-untyped-def]
        self._looked(prefix)
        return super().list(prefix, start_after)

    def stat(self, key: str):  # type: ignore[no-untyped-def]
        self._looked(key)
        return super().stat(key)


def test_a_commit_looks_up_the_head_while_its_last_pack_uploads(
    store: Store, tmp_path: Path
) -> None:
    held = _PackHeldUntilHeadLooked(store)
    Repository.create(held, "v1")
    repo = Repository(held, "v1", cache_dir=tmp_path / "cache")
    repo.head()
    w = repo.writer()
    entry = w.bytes_entry(bytes(range(256)) * 64)  # 16 KiB: a chunk in a pack
    held.armed = True
    rec, _stats = repo.commit({"data.bin": entry}, writer=w, message="one", line=False)
    assert held.pack_waiting.is_set() and held.head_looked.is_set()
    assert rec is not None and rec.seq == 1
    fresh = Repository(store, "v1", cache_dir=tmp_path / "fresh")
    got = fresh.lookup("data.bin", fresh.head().root)
    assert got is not None
    assert b"".join(fresh.read_entry(got, "data.bin")) == bytes(range(256)) * 64
    assert fresh.verify().ok


def test_a_failed_upload_still_fails_the_commit(store: Store, tmp_path: Path) -> None:
    # the upload now finishes on another thread: its error still reaches the caller,
    # and nothing is published
    class FailPacks(WrappedStore):
        def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
            if "/packs/" in key:
                raise OSError("injected: no room for the pack")
            return super().put(key, data)

    failing = FailPacks(store)
    Repository.create(failing, "v2")
    repo = Repository(failing, "v2", cache_dir=tmp_path / "cache")
    w = repo.writer()
    entry = w.bytes_entry(bytes(range(256)) * 64)
    with pytest.raises(OSError, match="no room for the pack"):
        repo.commit({"data.bin": entry}, writer=w, message="fails", line=False)
    w.abort()
    assert Repository(store, "v2", cache_dir=tmp_path / "fresh").head().seq == 0


def test_the_head_hint_is_written_every_few_commits_and_readers_find_the_newest(
    store: Store, tmp_path: Path
) -> None:
    counting = CountingStore(store)
    vol = Volume.from_name("hinted", store=counting, create_if_missing=True)
    hint = f"vols/{vol.object_id}/head"
    total = HEAD_HINT_EVERY + 3
    for i in range(total):
        with vol.batch_upload() as b:
            b.put_file(io.BytesIO(b"%d" % i), f"f{i}.txt")
    # written by the commit whose seq is a multiple of HEAD_HINT_EVERY, not by the others
    assert counting.count("put", prefix=hint) == 1
    assert vol.seq == total
    assert json.loads(store.get(hint)) == {"seq": HEAD_HINT_EVERY}
    # a reader starting from the lagging hint finds the commits after it
    fresh = Repository(store, vol.object_id, cache_dir=tmp_path / "fresh")
    head = fresh.head()
    assert head.seq == total
    assert {e.name for e in fresh.trees.entries(head.root)} == {f"f{i}.txt" for i in range(total)}


class _TreeHeldUntilIndexAsked(WrappedStore):
    """Once armed, a tree node's GET does not finish until an index object has been
    asked for; counts the looks at the log meanwhile."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.armed = False
        self.index_asked = threading.Event()
        self.log_looks = 0

    def get(self, key: str) -> bytes:
        if self.armed and "/index/" in key:
            self.index_asked.set()
        if self.armed and "/trees/" in key:
            assert self.index_asked.wait(30), "the index was not asked for during the diff"
        return super().get(key)

    def list(self, prefix: str = "", start_after: str | None = None):  # type: ignore[no-untyped-def]
        if self.armed and "/log/" in prefix:
            self.log_looks += 1
        return super().list(prefix, start_after)

    def stat(self, key: str):  # type: ignore[no-untyped-def]
        try:
            return super().stat(key)
        except NotFoundError:
            # on a local folder the head is found by looking at the next keys: the one
            # not there ends each look
            if self.armed and "/log/" in key:
                self.log_looks += 1
            raise


def test_a_reload_loads_the_heads_index_while_it_compares_trees(
    store: Store, tmp_path: Path
) -> None:
    held = _TreeHeldUntilIndexAsked(store)
    vol = Volume.from_name("reloaded", store=held, create_if_missing=True)
    m = vol.mount(tmp_path / "mnt", background=False)
    # another writer (its own repository object and caches) commits a file in packs
    other = Repository(store, vol.object_id, cache_dir=tmp_path / "other")
    w = other.writer()
    data = bytes(range(256)) * 64
    other.commit({"d/new.bin": w.bytes_entry(data)}, writer=w, message="other", line=False)
    held.armed = True
    m.reload()
    held.armed = False
    assert (m.path / "d" / "new.bin").read_bytes() == data
    assert held.index_asked.is_set()
    assert held.log_looks == 1  # the head's; the file's chunk is found in what it lists
    m.unmount()


class _HeldUntilAsked(WrappedStore):
    """Once armed, a GET, stat or listing of a key starting with ``held`` does not finish
    until every key in ``wanted`` has been asked for (by GET, or a prefix by listing)."""

    def __init__(self, inner: Store, held: str | tuple[str, ...], wanted: set[str]) -> None:
        super().__init__(inner)
        self.armed = False
        self.held = held
        self.wanted = set(wanted)
        self.asked: set[str] = set()
        self.all_asked = threading.Event()

    def _hold(self, key: str) -> None:
        if self.armed and key.startswith(self.held):
            assert self.all_asked.wait(30), f"{sorted(self.wanted - self.asked)} not asked for"

    def _ask(self, key: str) -> None:
        if self.armed and key in self.wanted:
            self.asked.add(key)
            if self.asked == self.wanted:
                self.all_asked.set()

    def get(self, key: str) -> bytes:
        self._ask(key)
        self._hold(key)
        return super().get(key)

    def stat(self, key: str):  # type: ignore[no-untyped-def]
        self._hold(key)
        return super().stat(key)

    def list(self, prefix: str = "", start_after: str | None = None):  # type: ignore[no-untyped-def]
        self._ask(prefix)
        self._hold(prefix)
        return super().list(prefix, start_after)


def test_opening_a_volume_asks_for_its_name_beside_the_ephemeral_sweep(store: Store) -> None:
    Volume.from_name("opened", store=store, create_if_missing=True).hydrate()
    held = _HeldUntilAsked(store, "leases/ephemeral/", {"names/opened"})
    held.armed = True
    vol = Volume.from_name("opened", store=held)
    vol.hydrate()
    assert held.all_asked.is_set()
    assert vol.seq == 0


def test_opening_a_volume_asks_for_its_config_and_hint_beside_the_stores_format(
    store: Store, tmp_path: Path
) -> None:
    Repository.create(store, "v3")
    held = _HeldUntilAsked(store, "format", {"vols/v3/config", "vols/v3/head"})
    held.armed = True
    repo = Repository(held, "v3", cache_dir=tmp_path / "cache")
    assert repo.head().seq == 0
    assert held.all_asked.is_set()


def test_a_commit_looks_for_a_line_of_waiting_writers_beside_the_heads_lookup(
    store: Store, tmp_path: Path
) -> None:
    # a commit with no caller check (a mount's) looks for other writers' waiting change
    # sets when it has not looked lately: that listing no longer waits for the head's
    Repository.create(store, "v4")
    held = _HeldUntilAsked(store, "vols/v4/log/", {"vols/v4/intents/"})
    repo = Repository(held, "v4", cache_dir=tmp_path / "cache")
    repo.head()
    w = repo.writer()
    entry = w.bytes_entry(b"x" * 100)
    held.armed = True
    rec, _stats = repo.commit({"a.txt": entry}, writer=w, message="one", line=False)
    assert held.all_asked.is_set()
    assert rec is not None and rec.seq == 1
    fresh = Repository(store, "v4", cache_dir=tmp_path / "fresh")
    assert fresh.lookup("a.txt", fresh.head().root) is not None


def test_history_reads_the_tags_beside_the_log_and_each_other(store: Store) -> None:
    vol = Volume.from_name("tagged", store=store, create_if_missing=True)
    vol_id = vol.object_id
    tags = f"vols/{vol_id}/tags/"
    # the log's lookup waits for the tags' listing, and each tag's read for the other's
    held = _HeldUntilAsked(
        store, (f"vols/{vol_id}/log/", tags + "t"), {tags, tags + "ta", tags + "tb"}
    )
    vol = Volume.from_name("tagged", store=held)  # (one repository per store URL and volume)
    with vol.batch_upload() as b:
        b.put_file(io.BytesIO(b"one"), "a.txt")
    vol.tag(1, "ta")
    vol.tag(0, "tb")
    held.armed = True
    history = vol.history()
    assert held.all_asked.is_set()
    assert [(c.seq, c.tags) for c in history] == [(1, ("ta",)), (0, ("tb",))]


def _log_looks(counting: CountingStore, vol_id: str) -> int:
    return counting.count(("list", "stat"), prefix=f"vols/{vol_id}/log/")


@pytest.mark.parametrize(
    "operation",
    ["put", "remove_file", "remove_paths", "move", "mkdir", "copy_files", "restore"],
)
def test_an_operation_that_reads_the_head_looks_at_the_log_once(
    store: Store, operation: str
) -> None:
    counting = CountingStore(store)
    vol = Volume.from_name("looked", store=counting, create_if_missing=True)
    with vol.batch_upload() as b:
        b.put_file(io.BytesIO(b"one"), "a.txt")
        b.put_file(io.BytesIO(b"two"), "d/b.txt")
    with vol.batch_upload(force=True) as b:
        b.put_file(io.BytesIO(b"one, again"), "a.txt")
    counting.reset()
    if operation == "put":
        with vol.batch_upload() as b:
            b.put_file(io.BytesIO(b"three"), "c.txt")
    elif operation == "remove_file":
        vol.remove_file("a.txt")
    elif operation == "remove_paths":
        vol.remove_paths(["a.txt", "d"])
    elif operation == "move":
        vol.move("a.txt", "d/")
    elif operation == "mkdir":
        vol.mkdir("e")
    elif operation == "copy_files":
        vol.copy_files(["a.txt", "d/b.txt"], "e/")
    else:
        vol.restore(1, "a.txt")
    # the look that read what the operation changes is the one its commit builds on
    assert _log_looks(counting, vol.object_id) == 1
    assert vol.seq == 3
    assert Volume.from_name("looked", store=store).seq == 3


def test_a_network_file_systems_write_looks_at_the_log_once(store: Store) -> None:
    from jupyter_volume import NetworkFileSystem

    counting = CountingStore(store)
    nfs = NetworkFileSystem.from_name("looked", store=counting, create_if_missing=True)
    nfs.write_file("a.txt", io.BytesIO(b"one"))
    counting.reset()
    nfs.write_file("a.txt", io.BytesIO(b"two"))
    assert _log_looks(counting, nfs.object_id) == 1
    assert b"".join(nfs.read_file("a.txt")) == b"two"


class _CommitAfterLook(WrappedStore):
    """Once armed, the first look at the log (a listing, or on a local folder a look at
    the next record's key) answers what it found and only then lets ``meanwhile`` run
    (another writer's commit): the head it names is stale before its caller sees it."""

    def __init__(self, inner: Store, meanwhile: Callable[[], None]) -> None:
        super().__init__(inner)
        self.armed = False
        self.meanwhile = meanwhile

    def _after_look(self, key: str) -> None:
        if self.armed and "/log/" in key:
            self.armed = False
            self.meanwhile()

    def list(self, prefix: str = "", start_after: str | None = None):  # type: ignore[no-untyped-def]
        found = list(super().list(prefix, start_after))
        self._after_look(prefix)
        return iter(found)

    def stat(self, key: str):  # type: ignore[no-untyped-def]
        try:
            return super().stat(key)
        finally:
            self._after_look(key)


def test_a_head_that_moves_right_after_the_look_only_loses_the_race(store: Store) -> None:
    Volume.from_name("raced", store=store, create_if_missing=True).hydrate()

    def other_writer() -> None:
        other = Volume.from_name("raced", store=store)
        with other.batch_upload() as b:
            b.put_file(io.BytesIO(b"theirs"), "theirs.txt")

    racing = _CommitAfterLook(store, other_writer)
    vol = Volume.from_name("raced", store=racing)
    with vol.batch_upload() as b:
        b.put_file(io.BytesIO(b"mine"), "mine.txt")
        racing.armed = True
    assert not racing.armed  # the other writer committed between our look and our commit
    fresh = Volume.from_name("raced", store=store)
    assert fresh.seq == 2
    assert sorted(e.path for e in fresh.listdir("/")) == ["mine.txt", "theirs.txt"]
    # ours landed after theirs, on the head it had not seen
    assert [c.message for c in fresh.history(limit=2)] == ["upload mine.txt", "upload theirs.txt"]


def test_a_check_runs_again_on_the_head_that_moved_after_the_look(store: Store) -> None:
    Volume.from_name("raced2", store=store, create_if_missing=True).hydrate()

    def other_writer() -> None:
        Volume.from_name("raced2", store=store).mkdir("e")

    racing = _CommitAfterLook(store, other_writer)
    vol = Volume.from_name("raced2", store=racing)
    racing.armed = True
    with pytest.raises(AlreadyExistsError, match="e already exists"):
        vol.mkdir("e")
    assert not racing.armed
    assert Volume.from_name("raced2", store=store).seq == 1  # the other's folder only


def test_a_new_volume_is_not_read_back_by_the_process_that_created_it(store: Store) -> None:
    counting = CountingStore(store)
    vol = Volume.from_name("new", store=counting, create_if_missing=True)
    with vol.batch_upload() as b:
        b.put_file(io.BytesIO(b"one"), "a.txt")
    prefix = f"vols/{vol.object_id}/"
    assert counting.count("get", prefix="format") == 1  # checked once, before writing
    assert counting.count("get", prefix=prefix + "config") == 0
    assert counting.count("get", prefix=prefix + "log/") == 0  # commit 0 is known
    assert vol.seq == 1
    other = Volume.from_name("new", store=store)  # another process's view: all of it there
    assert [e.path for e in other.listdir("/")] == ["a.txt"]
    assert other.history()[-1].seq == 0


def test_a_new_volumes_config_and_empty_tree_are_sent_side_by_side(store: Store) -> None:
    class ConfigAfterTree(WrappedStore):
        # the config's create-only PUT waits until the empty tree's PUT has arrived
        def __init__(self, inner: Store) -> None:
            super().__init__(inner)
            self.tree_sent = threading.Event()

        def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
            if "/trees/" in key:
                self.tree_sent.set()
            return super().put(key, data)

        def put_if_absent(self, key: str, data: bytes | bytearray | memoryview) -> bool:
            if key.endswith("/config"):
                assert self.tree_sent.wait(30), "the empty tree was not sent beside the config"
            return super().put_if_absent(key, data)

    repo = Repository.create(ConfigAfterTree(store), "v5")
    assert repo.head().seq == 0
    fresh = Repository(store, "v5", cache_dir=Path("/dev/null"))
    assert fresh.head().root == repo.head().root
    assert fresh.verify().ok


def test_a_create_only_write_gives_the_version_token_it_made(store: Store) -> None:
    token = store.put_if_absent_versioned("cas/a", b"one")
    assert token is not None and store.get_versioned("cas/a") == (b"one", token)
    assert store.put_if_absent_versioned("cas/a", b"two") is None  # exists: not ours
    assert store.get("cas/a") == b"one"
    assert store.put_if_match("cas/a", b"two", token) is not None


def test_taking_a_free_dict_lock_is_one_request(store: Store) -> None:
    from jupyter_volume import Dict

    counting = CountingStore(store)
    d = Dict.from_name("locks", store=counting, create_if_missing=True)
    d.hydrate()
    lock = d.lock("L", lease=30)
    counting.reset()
    lock.acquire()
    try:
        # the create-only write's answer carries the version the renewals need
        assert [op.kind for op in counting.matching(prefix=f"dicts/{d.object_id}/locks/")] == [
            "put_if_absent_versioned"
        ]
        assert lock.held
    finally:
        lock.release()
    with d.lock("L", lease=30, timeout=5) as again:  # released: free to take again
        assert again.held


def test_work_asked_for_beside_runs_here_when_its_pool_is_busy() -> None:
    # A request asked for "beside" another is never waited for behind a busy pool: the
    # caller does it itself if no thread has picked it up (a process opening many
    # volumes at once would otherwise queue their requests on a pool of two).
    from jupyter_volume._pools import SharedPool

    pool = SharedPool(1, "jv-test-beside")
    release = threading.Event()
    busy = pool.submit(release.wait, 30)
    ran_on: list[str] = []
    beside = pool.beside(lambda: ran_on.append(threading.current_thread().name) or 7)
    assert beside.result() == 7
    assert ran_on == [threading.current_thread().name]
    release.set()
    assert busy.result() is True
    started = threading.Event()
    free = pool.beside(lambda: started.set() or 8)
    assert started.wait(30)  # picked up by the pool this time
    assert free.result() == 8


@pytest.mark.parametrize("kind", ["volume", "nfs"])
def test_listing_volumes_lists_the_names_beside_the_ephemeral_sweep(
    store: Store, kind: str
) -> None:
    from jupyter_volume import NetworkFileSystem

    cls = Volume if kind == "volume" else NetworkFileSystem
    cls.objects.create("listed", store=store)
    namespace = "names/" if kind == "volume" else "nfs-names/"
    held = _HeldUntilAsked(store, "leases/ephemeral/", {namespace})
    held.armed = True
    assert [v.name for v in cls.objects.list(store=held)] == ["listed"]
    assert held.all_asked.is_set()
    # and opening one by name, as for a volume
    held = _HeldUntilAsked(store, "leases/ephemeral/", {namespace + "listed"})
    held.armed = True
    opened = cls.from_name("listed", store=held)
    opened.hydrate()
    assert held.all_asked.is_set()
