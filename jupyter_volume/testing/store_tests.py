"""The conformance suite every :class:`~jupyter_volume.store.base.Store` must pass.

Subclass :class:`StoreTests` in a test module and provide a ``store`` fixture that
returns a fresh, empty store::

    class TestMyStore(StoreTests):
        race_rounds = 20

        @pytest.fixture
        def store(self, tmp_path):
            return MyStore(...)

The conditional-write tests also race child processes, which open the store with
``open_store(store.url)``; override the ``child_env`` fixture to return the environment
variables they need for that (credentials), as the S3 suite does.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from ..errors import InvalidError, NotFoundError
from ..store.base import Store

__all__ = ["StoreTests"]

MiB = 1024 * 1024
ALL_BYTES = bytes(range(256))


def _keys(store: Store, prefix: str = "", start_after: str | None = None) -> list[str]:
    return [o.key for o in store.list(prefix, start_after)]


class StoreTests:
    """The store contract as tests (see :mod:`jupyter_volume.store.base`)."""

    #: Rounds of the eight-writer ``put_if_absent`` race.
    race_rounds = 200
    #: Threads racing in each round.
    race_threads = 8
    #: Size of the large-object round trip.
    big_size = 200 * MiB
    #: Keys in the listing test (more than one S3 page of 1,000).
    many_keys = 1100
    #: Rounds of the thread race on ``put_if_match``.
    cas_rounds = 30
    #: Child processes in the process races on ``put_if_match``, and the increments
    #: each makes to the shared counter.
    cas_processes = 4
    cas_increments = 25
    #: Rounds of the process race on ``put_if_match`` (one set of children for all).
    cas_process_rounds = 3

    @pytest.fixture
    def child_env(self) -> dict[str, str]:
        """Environment variables a child process needs to open ``store.url``."""
        return {}

    # -- round trips -------------------------------------------------------------------
    def test_empty_object(self, store: Store) -> None:
        store.put("empty", b"")
        assert store.get("empty") == b""
        assert store.stat("empty").size == 0
        assert [(o.key, o.size) for o in store.list()] == [("empty", 0)]

    def test_binary_round_trip(self, store: Store) -> None:
        data = ALL_BYTES * 17 + b"\x00\r\n\xff"
        store.put("dir/sub/bin", data)
        assert store.get("dir/sub/bin") == data

    def test_put_accepts_bytearray_and_memoryview(self, store: Store) -> None:
        store.put("ba", bytearray(b"bytearray"))
        store.put("mv", memoryview(b"xxmemoryviewxx")[2:-2])
        assert store.get("ba") == b"bytearray"
        assert store.get("mv") == b"memoryview"
        assert store.put_if_absent("pia", memoryview(b"view"))
        assert store.get("pia") == b"view"

    def test_overwrite(self, store: Store) -> None:
        store.put("k", b"first version")
        store.put("k", b"second")
        assert store.get("k") == b"second"
        assert store.stat("k").size == len(b"second")
        assert _keys(store) == ["k"]

    def test_get_missing(self, store: Store) -> None:
        with pytest.raises(NotFoundError) as info:
            store.get("no/such/key")
        assert isinstance(info.value, FileNotFoundError)
        assert "no/such/key" in str(info.value)

    def test_get_many(self, store: Store) -> None:
        keys = [f"many/{i:03d}" for i in range(40)]
        for i, k in enumerate(keys):
            if i % 5:
                store.put(k, b"%d" % i)
        got = store.get_many([*keys, "many/none"])
        assert got == [None if i % 5 == 0 else b"%d" % i for i in range(40)] + [None]
        assert store.get_many([]) == [] and store.get_many(["many/001"]) == [b"1"]

    # -- ranges ------------------------------------------------------------------------
    def test_touch(self, store: Store) -> None:
        store.put("t/obj", b"kept")
        before = store.stat("t/obj").mtime
        time.sleep(1.1)  # S3 gives modification times in whole seconds
        store.touch("t/obj")
        assert store.get("t/obj") == b"kept"
        assert store.stat("t/obj").mtime > before
        assert [o.key for o in store.list("t/")] == ["t/obj"]
        with pytest.raises(NotFoundError):
            store.touch("t/missing")
        assert not store.exists("t/missing")  # a touch never makes an object
        store.delete(["t/obj"])
        with pytest.raises(NotFoundError):
            store.touch("t/obj")
        assert not store.exists("t/obj")

    def test_get_range(self, store: Store) -> None:
        data = bytes(range(100))
        store.put("r", data)
        assert store.get_range("r", 10, 5) == data[10:15]  # middle
        assert store.get_range("r", 0, 100) == data
        assert store.get_range("r", 95, 10) == data[95:]  # runs over the end
        assert store.get_range("r", 99, 1) == data[99:]
        assert store.get_range("r", 100, 10) == b""  # starts at the end
        assert store.get_range("r", 1000, 10) == b""  # starts past the end
        assert store.get_range("r", 10, 0) == b""  # zero length
        assert store.get_range("r", 0, 0) == b""

    def test_get_range_empty_object(self, store: Store) -> None:
        store.put("e", b"")
        assert store.get_range("e", 0, 10) == b""

    def test_get_range_missing(self, store: Store) -> None:
        with pytest.raises(NotFoundError):
            store.get_range("missing", 0, 10)
        with pytest.raises(NotFoundError):
            store.get_range("missing", 0, 0)

    def test_get_range_into(self, store: Store) -> None:
        data = bytes(range(100))
        store.put("r", data)

        def into(start: int, size: int) -> bytes:
            buf = bytearray(b"\xee" * (size + 3))
            n = store.get_range_into("r", start, memoryview(buf)[:size])
            assert buf[size:] == b"\xee" * 3  # nothing written past the view
            return bytes(buf[:n])

        assert into(10, 5) == data[10:15]  # middle
        assert into(0, 100) == data
        assert into(95, 10) == data[95:]  # runs over the end
        assert into(99, 1) == data[99:]
        assert into(100, 10) == b""  # starts at the end
        assert into(1000, 10) == b""  # starts past the end
        assert into(10, 0) == b""  # zero length
        big = random.Random(3).randbytes(3 << 20)  # many socket reads into one buffer
        store.put("r3", big)
        buf = bytearray(len(big))
        assert store.get_range_into("r3", 0, buf) == len(big) and buf == big
        assert store.get_range_into("r3", 1 << 20, memoryview(buf)[: 1 << 20]) == 1 << 20
        assert buf[: 1 << 20] == big[1 << 20 : 2 << 20]

    def test_get_range_into_missing_or_empty(self, store: Store) -> None:
        store.put("e", b"")
        assert store.get_range_into("e", 0, bytearray(10)) == 0
        for key, size in (("missing", 10), ("missing", 0), ("e/under", 10)):
            with pytest.raises(NotFoundError):
                store.get_range_into(key, 0, bytearray(size))
        with pytest.raises(InvalidError):
            store.get_range_into("../x", 0, bytearray(1))

    # -- stat / exists -----------------------------------------------------------------
    def test_stat_and_exists(self, store: Store) -> None:
        import time

        before = time.time()
        store.put("a/b", b"12345")
        info = store.stat("a/b")
        assert (info.key, info.size) == ("a/b", 5)
        assert abs(info.mtime - before) < 120  # seconds since the epoch, roughly now
        assert store.exists("a/b")
        assert not store.exists("a/c")
        assert not store.exists("a")  # a "folder" is no object
        with pytest.raises(NotFoundError):
            store.stat("a/c")
        with pytest.raises(NotFoundError):
            store.stat("a")
        with pytest.raises(NotFoundError):
            store.get("a")
        with pytest.raises(NotFoundError):
            store.get_range("a", 0, 10)

    # -- listing -----------------------------------------------------------------------
    def test_list_empty(self, store: Store) -> None:
        assert list(store.list()) == []
        assert list(store.list("nothing/")) == []

    def test_list_many_sorted(self, store: Store) -> None:
        keys = [f"many/{i:05d}" for i in range(self.many_keys)]
        shuffled = keys[:]
        random.Random(1).shuffle(shuffled)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda k: store.put(k, k.encode()), shuffled))
        store.put("other", b"x")
        listed = list(store.list("many/"))
        assert [o.key for o in listed] == keys
        assert all(o.size == len(o.key) for o in listed)
        assert _keys(store) == [*keys, "other"]
        # resuming in the middle, past the first 1,000
        assert _keys(store, "many/", keys[1049]) == keys[1050:]
        assert _keys(store, "", keys[10]) == [*keys[11:], "other"]

    # keys whose byte order differs from a folder-by-folder walk ("-" < "." < "/" < "0")
    TRICKY = ("a-b", "a.c", "a/b", "a/c/d", "a/c-e", "a0", "ab/x", "b", "z/y/x")

    def _put_tricky(self, store: Store) -> list[str]:
        for key in self.TRICKY:
            store.put(key, key.encode())
        return sorted(self.TRICKY)

    def test_list_byte_order(self, store: Store) -> None:
        keys = self._put_tricky(store)
        assert keys == ["a-b", "a.c", "a/b", "a/c-e", "a/c/d", "a0", "ab/x", "b", "z/y/x"]
        assert _keys(store) == keys

    def test_list_prefix(self, store: Store) -> None:
        keys = self._put_tricky(store)
        assert _keys(store, "a/") == ["a/b", "a/c-e", "a/c/d"]
        assert _keys(store, "a") == [k for k in keys if k.startswith("a")]
        assert _keys(store, "a/c") == ["a/c-e", "a/c/d"]  # ends mid-name
        assert _keys(store, "a-") == ["a-b"]
        assert _keys(store, "z/") == ["z/y/x"]
        assert _keys(store, "z/y/x") == ["z/y/x"]  # a whole key is a prefix of itself
        assert _keys(store, "c") == []
        assert _keys(store, "a/b/") == []

    def test_list_start_after(self, store: Store) -> None:
        keys = self._put_tricky(store)
        for i, key in enumerate(keys):
            assert _keys(store, "", key) == keys[i + 1 :], key
        # start_after values that are not keys, including ones inside folders
        for after in ("", "a", "a-", "a/", "a/c", "a/c/", "a/zzz", "aa", "c", "\U0010ffff"):
            assert _keys(store, "", after) == [k for k in keys if k > after], after
        assert _keys(store, "a/", "a/b") == ["a/c-e", "a/c/d"]
        assert _keys(store, "a/", "a") == ["a/b", "a/c-e", "a/c/d"]
        assert _keys(store, "a", "a/c-e") == ["a/c/d", "a0", "ab/x"]
        assert _keys(store, "z/", "b") == ["z/y/x"]
        assert _keys(store, "a/", "zz") == []

    def test_list_odd_prefixes(self, store: Store) -> None:
        store.put("a/b", b"x")
        store.put("..c", b"y")  # a valid key: ".." is only forbidden as a whole segment
        assert _keys(store, "../") == []
        assert _keys(store, "a/../") == []
        assert _keys(store, "/") == []
        assert _keys(store, "a//") == []
        assert _keys(store, "./") == []
        assert _keys(store, "..") == ["..c"]
        assert _keys(store, "a/b/c") == []

    def test_list_info(self, store: Store) -> None:
        store.put("x/one", b"1")
        store.put("x/three", b"333")
        infos = list(store.list("x/"))
        assert [(o.key, o.size) for o in infos] == [("x/one", 1), ("x/three", 3)]
        assert infos[0].mtime == pytest.approx(store.stat("x/one").mtime, abs=2)

    # -- big objects -------------------------------------------------------------------
    def test_big_object(self, store: Store) -> None:
        data = random.Random(7).randbytes(self.big_size)
        digest = hashlib.sha256(data).digest()
        store.put("big/object", data)
        tail = data[-1000:]
        middle = data[self.big_size // 2 : self.big_size // 2 + 5000]
        del data
        assert store.stat("big/object").size == self.big_size
        assert hashlib.sha256(store.get("big/object")).digest() == digest
        assert store.get_range("big/object", self.big_size - 1000, 5000) == tail
        assert store.get_range("big/object", self.big_size // 2, 5000) == middle

    # -- delete ------------------------------------------------------------------------
    def test_delete(self, store: Store) -> None:
        keys = [f"d/{i:04d}" for i in range(1005)]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda k: store.put(k, b"x"), keys))
        store.put("keep", b"k")
        missing = [f"d/missing-{i}" for i in range(10)]
        store.delete(iter(keys[:500] + missing + keys[500:]))  # any iterable
        assert _keys(store) == ["keep"]
        store.delete([])
        store.delete(["keep", "keep"])
        assert _keys(store) == []
        with pytest.raises(NotFoundError):
            store.get("d/0001")

    # -- key validation ----------------------------------------------------------------
    # "a\udcffb": a lone surrogate has no UTF-8 form (S3 keys are UTF-8; the local store
    # leaked a raw UnicodeEncodeError for it)
    @pytest.mark.parametrize(
        "key", ["../x", "/x", "a//b", "a/../b", "a/./b", "", "a\\b", "a\x00", "a\udcffb"]
    )
    def test_invalid_keys(self, store: Store, key: str) -> None:
        with pytest.raises(InvalidError):
            store.put(key, b"x")
        with pytest.raises(InvalidError):
            store.put_if_absent(key, b"x")
        with pytest.raises(InvalidError):
            store.get(key)
        with pytest.raises(InvalidError):
            store.get_range(key, 0, 1)
        with pytest.raises(InvalidError):
            store.stat(key)
        with pytest.raises(InvalidError):
            store.delete(["fine", key])

    def test_keys_under_an_object_or_above_one_are_missing(self, store: Store) -> None:
        # "f" is an object and "d" only a folder-like prefix: "f/x" and "d" are keys that
        # do not exist, on a folder store as on S3 (not a StoreError for "not a
        # directory" or "is a directory").
        store.put("f", b"file")
        store.put("d/x", b"in d")
        for key in ("f/x", "f/x/y", "d"):
            with pytest.raises(NotFoundError):
                store.get(key)
            with pytest.raises(NotFoundError):
                store.get_range(key, 0, 1)
            with pytest.raises(NotFoundError):
                store.stat(key)
            with pytest.raises(NotFoundError):
                store.get_versioned(key)
            assert not store.exists(key)
            assert store.put_if_match(key, b"x", "t") is None
            assert store.delete_if_match(key, "t") is False
            store.delete([key])  # missing keys are no error
        assert _keys(store) == ["d/x", "f"]
        assert store.get("f") == b"file" and store.get("d/x") == b"in d"

    def test_long_keys_are_missing(self, store: Store) -> None:
        # A key no object can have (a 300-byte name: more than a file name may hold) is
        # simply missing to every read.
        store.put("long/short", b"x")  # the folder exists
        key = "long/" + "x" * 300
        with pytest.raises(NotFoundError):
            store.get(key)
        with pytest.raises(NotFoundError):
            store.stat(key)
        assert not store.exists(key)
        assert store.put_if_match(key, b"x", "t") is None
        assert store.delete_if_match(key, "t") is False
        store.delete([key])
        assert _keys(store) == ["long/short"]

    @pytest.mark.parametrize("segment", [".tmp-data", ".tmp-lock-k", ".tmp-k-x", ".tmp-"])
    def test_keys_that_look_like_temporary_files(self, store: Store, segment: str) -> None:
        # ".tmp-data" is a valid key segment (a volume may be named so): it is listed and
        # kept like any other, never taken for a writer's temporary or lock file.
        store.put("k", b"plain")
        _, token = store.get_versioned("k")
        assert store.put_if_match("k", b"v2", token)  # a local store's sidecar lock file
        key = f"{segment}"
        assert store.put_if_absent(key, b"odd name")
        store.put(f"sub/{segment}", b"odd too")
        assert store.get(key) == b"odd name"
        assert _keys(store) == sorted([key, "k", f"sub/{segment}"])
        _, t = store.get_versioned(key)
        assert store.put_if_match(key, b"changed", t)
        assert store.get("k") == b"v2"
        store.delete(["k"])
        assert _keys(store) == sorted([key, f"sub/{segment}"])
        assert store.get(key) == b"changed"
        temp_files = getattr(store, "temp_files", None)
        if temp_files is not None:  # what gc deletes as a crashed writer's leftovers
            assert list(temp_files(float("inf"))) == []
        store.delete([key, f"sub/{segment}"])
        assert _keys(store) == []

    # -- put_if_absent -----------------------------------------------------------------
    def test_put_if_absent(self, store: Store) -> None:
        assert store.put_if_absent("log/1", b"first") is True
        assert store.put_if_absent("log/1", b"second") is False
        assert store.put_if_absent("log/1", b"first") is False
        assert store.get("log/1") == b"first"
        assert store.put_if_absent("log/2", b"") is True
        assert store.get("log/2") == b""
        store.delete(["log/1"])
        assert store.put_if_absent("log/1", b"third") is True
        assert store.get("log/1") == b"third"
        assert _keys(store) == ["log/1", "log/2"]

    def test_put_if_absent_race(self, store: Store) -> None:
        n = self.race_threads
        barrier = threading.Barrier(n)
        results: list[bool | BaseException | None] = [None] * n

        def contender(i: int, key: str, data: bytes) -> None:
            try:
                barrier.wait(timeout=60)
                results[i] = store.put_if_absent(key, data)
            except BaseException as e:  # noqa: BLE001 - reported by the main thread
                results[i] = e

        for rnd in range(self.race_rounds):
            key = f"race/{rnd:04d}"
            payloads = [f"round {rnd} writer {i} ".encode() * (1 + i) for i in range(n)]
            threads = [
                threading.Thread(target=contender, args=(i, key, payloads[i])) for i in range(n)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
            assert not any(t.is_alive() for t in threads), f"round {rnd}: a writer hangs"
            errors = [r for r in results if isinstance(r, BaseException)]
            if errors:
                raise errors[0]
            winners = [i for i, r in enumerate(results) if r is True]
            assert len(winners) == 1, f"round {rnd}: winners {winners}, results {results}"
            assert store.get(key) == payloads[winners[0]], f"round {rnd}"
            barrier.reset()

    # -- conditional writes ----------------------------------------------------------
    def test_put_if_match(self, store: Store) -> None:
        with pytest.raises(NotFoundError):
            store.get_versioned("cas/k")
        assert store.put_if_match("cas/k", b"x", "no-such-version") is None
        assert not store.exists("cas/k")  # a missing key is no match: nothing created
        store.put("cas/k", b"one")
        data, t1 = store.get_versioned("cas/k")
        assert data == b"one" and isinstance(t1, str) and t1
        t2 = store.put_if_match("cas/k", b"two", t1)
        assert isinstance(t2, str) and t2 != t1
        assert store.get_versioned("cas/k") == (b"two", t2)
        assert store.put_if_match("cas/k", b"three", t1) is None  # stale token
        assert store.get("cas/k") == b"two"
        t3 = store.put_if_match("cas/k", memoryview(b"xxthreexx")[2:-2], t2)
        assert t3 is not None and store.get_versioned("cas/k") == (b"three", t3)
        store.put("cas/k", b"four")  # a plain put changes the version too
        assert store.put_if_match("cas/k", b"five", t3) is None
        _, t4 = store.get_versioned("cas/k")
        store.delete(["cas/k"])
        assert store.put_if_match("cas/k", b"six", t4) is None  # deleted: no match
        assert not store.exists("cas/k")
        assert _keys(store) == []  # no sidecar or leftover is ever listed
        assert store.put_if_absent("cas/k", b"seven")
        assert store.get("cas/k") == b"seven"

    def test_delete_if_match(self, store: Store) -> None:
        assert store.delete_if_match("cas/d", "no-such-version") is False  # missing
        assert not store.exists("cas/d")
        store.put("cas/d", b"one")
        _, t1 = store.get_versioned("cas/d")
        t2 = store.put_if_match("cas/d", b"two", t1)
        assert t2 is not None
        assert store.delete_if_match("cas/d", t1) is False  # stale token: kept
        assert store.get("cas/d") == b"two"
        store.put("cas/d", b"three")  # a plain put changes the version too
        assert store.delete_if_match("cas/d", t2) is False
        _, t3 = store.get_versioned("cas/d")
        assert store.delete_if_match("cas/d", t3) is True
        assert not store.exists("cas/d")
        assert store.delete_if_match("cas/d", t3) is False  # gone: no second success
        assert _keys(store) == []  # no sidecar or leftover is ever listed
        assert store.put_if_absent("cas/d", b"four")  # the key can be made again
        with pytest.raises(InvalidError):
            store.delete_if_match("../x", "t")

    def test_delete_if_match_thread_race(self, store: Store) -> None:
        # Racing deletes of one version (a Dict's pop): exactly one wins each round.
        key = "cas/pop"
        for rnd in range(self.cas_rounds):
            store.put(key, f"round {rnd}".encode())
            _, token = store.get_versioned(key)
            results = self._thread_race(lambda _i, t=token: store.delete_if_match(key, t))
            assert results.count(True) == 1, f"round {rnd}: results {results}"
            assert not store.exists(key)

    def test_put_if_match_big_and_empty(self, store: Store) -> None:
        store.put("cas/e", b"")
        _, t = store.get_versioned("cas/e")
        big = random.Random(3).randbytes(3 * MiB)
        t2 = store.put_if_match("cas/e", big, t)
        assert t2 is not None and store.get_versioned("cas/e") == (big, t2)
        assert store.put_if_match("cas/e", b"", t2) is not None
        assert store.get("cas/e") == b""

    def test_put_if_match_invalid_key(self, store: Store) -> None:
        with pytest.raises(InvalidError):
            store.put_if_match("../x", b"x", "t")
        with pytest.raises(InvalidError):
            store.get_versioned("a//b")

    def test_put_if_match_thread_race(self, store: Store) -> None:
        key = "cas/race"
        store.put(key, b"round -1")
        for rnd in range(self.cas_rounds):
            _, token = store.get_versioned(key)  # every contender starts from this version
            results = self._thread_race(
                lambda i, rnd=rnd, t=token: store.put_if_match(
                    key, f"round {rnd} by {i}".encode(), t
                )
            )
            winners = [i for i, r in enumerate(results) if r is not None]
            assert len(winners) == 1, f"round {rnd}: winners {winners}, results {results}"
            data, now = store.get_versioned(key)
            assert data == f"round {rnd} by {winners[0]}".encode()
            assert now == results[winners[0]]

    def _thread_race(self, contend: Callable[[int], object]) -> list[object]:
        """``contend(i)`` from ``race_threads`` threads released at once; the results in
        order. Fails if one hangs; raises the first error one raised."""
        n = self.race_threads
        barrier = threading.Barrier(n)
        results: list[object] = [None] * n

        def contender(i: int) -> None:
            try:
                barrier.wait(timeout=60)
                results[i] = contend(i)
            except BaseException as e:  # noqa: BLE001 - reported by the main thread
                results[i] = e

        threads = [threading.Thread(target=contender, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "a contender hangs"
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        return results

    def _children(
        self, store: Store, child_env: dict[str, str], code: str, *args: str
    ) -> list[subprocess.Popen[str]]:
        env = dict(os.environ)
        env.update(child_env)
        return [
            subprocess.Popen(
                [sys.executable, "-c", textwrap.dedent(code), store.url, str(i), *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for i in range(self.cas_processes)
        ]

    def test_put_if_match_process_race(self, store: Store, child_env: dict[str, str]) -> None:
        # Each child reads the version, says "ready", waits for "go" (sent to all at
        # once), tries its conditional write and prints whether it won.
        code = """
            import sys
            from jupyter_volume.store import open_store
            store = open_store(sys.argv[1])
            me, rounds = sys.argv[2], int(sys.argv[3])
            for rnd in range(rounds):
                _, token = store.get_versioned("cas/proc")
                print("ready", flush=True)
                assert sys.stdin.readline() == "go\\n"
                won = store.put_if_match("cas/proc", f"{rnd} {me}".encode(), token)
                print("won" if won else "lost", flush=True)
                assert sys.stdin.readline() == "next\\n"
        """
        store.put("cas/proc", b"start")
        rounds = self.cas_process_rounds
        children = self._children(store, child_env, code, str(rounds))
        try:
            for rnd in range(rounds):
                for c in children:
                    line = c.stdout.readline()  # type: ignore[union-attr]
                    assert line == "ready\n", c.stderr.read()  # type: ignore[union-attr]
                for c in children:
                    c.stdin.write("go\n")  # type: ignore[union-attr]
                    c.stdin.flush()  # type: ignore[union-attr]
                said = [c.stdout.readline().strip() for c in children]  # type: ignore[union-attr]
                winners = [i for i, s in enumerate(said) if s == "won"]
                assert said.count("lost") == len(children) - 1, (rnd, said)
                assert len(winners) == 1, (rnd, said)
                assert store.get("cas/proc") == f"{rnd} {winners[0]}".encode()
                for c in children:
                    c.stdin.write("next\n")  # type: ignore[union-attr]
                    c.stdin.flush()  # type: ignore[union-attr]
            for c in children:
                assert c.wait(timeout=120) == 0, c.stderr.read()  # type: ignore[union-attr]
        finally:
            for c in children:
                if c.poll() is None:
                    c.kill()
                    c.wait()

    def test_put_if_match_counter(self, store: Store, child_env: dict[str, str]) -> None:
        # Processes increment one counter with read / conditional-write loops: the total
        # is exact only if no two writers ever both succeed from the same version.
        code = """
            import sys
            from jupyter_volume.store import open_store
            store = open_store(sys.argv[1])
            n = int(sys.argv[3])
            retries = 0
            for _ in range(n):
                while True:
                    data, token = store.get_versioned("cas/counter")
                    if store.put_if_match("cas/counter", str(int(data) + 1).encode(), token):
                        break
                    retries += 1
            print(retries)
        """
        store.put("cas/counter", b"0")
        children = self._children(store, child_env, code, str(self.cas_increments))
        try:
            for c in children:
                out, err = c.communicate(timeout=600)
                assert c.returncode == 0, err
        finally:
            for c in children:
                if c.poll() is None:
                    c.kill()
                    c.wait()
        assert int(store.get("cas/counter")) == self.cas_processes * self.cas_increments
