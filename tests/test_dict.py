"""Dict: Modal's API case by case, and what we add, on the local store and SeaweedFS."""

from __future__ import annotations

import asyncio
import os
import pickle
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

import pytest

from jupyter_volume import DeserializationError, Dict, DictInfo
from jupyter_volume.dicts import MAX_VALUE_SIZE
from jupyter_volume.errors import (
    AlreadyExistsError,
    InvalidError,
    NotFoundError,
    StoreError,
)
from jupyter_volume.store.base import Store
from jupyter_volume.store.s3 import S3Store, make_client
from jupyter_volume.testing.wrappers import WRITE_OPS, CountingStore, WrappedStore

pytestmark = pytest.mark.timeout(300)


def objects(store: Store) -> list[str]:
    return [o.key for o in store.list()]


def test_named_dict(store: Store) -> None:
    d = Dict.from_name("my-amazing-dict", create_if_missing=True, store=store)
    assert d.name == "my-amazing-dict"
    info = d.info()
    assert isinstance(info, DictInfo)
    assert info.name == "my-amazing-dict" and info.id == d.object_id
    assert info.created_by and info.created_at.tzinfo is not None

    d["xyz"] = 123
    d["foo"] = 42
    d["foo"] += 5
    assert d["foo"] == 47
    assert d.len() == 2 == len(d)
    assert sorted(d.keys()) == ["foo", "xyz"]
    assert sorted(d.values()) == [47, 123]
    assert sorted(d.items()) == [("foo", 47), ("xyz", 123)]

    d.clear()
    assert d.len() == 0
    with pytest.raises(KeyError):
        _ = d["foo"]
    assert d.get("foo", default=True) is True
    assert d.get("foo") is None
    d["foo"] = None
    assert d["foo"] is None
    assert d.contains("foo") and "foo" in d and "bar" not in d

    # another handle (as another process would have) sees the same entries
    assert Dict.from_name("my-amazing-dict", store=store)["foo"] is None

    Dict.objects.delete("my-amazing-dict", store=store)
    with pytest.raises(NotFoundError, match="my-amazing-dict"):
        Dict.from_name("my-amazing-dict", store=store).info()
    Dict.objects.delete("my-amazing-dict", store=store, allow_missing=True)
    with pytest.raises(NotFoundError):
        Dict.objects.delete("my-amazing-dict", store=store)
    assert [k for k in objects(store) if not k.startswith("clock/")] == []


def test_lazy_handle(store: Store) -> None:
    counting = CountingStore(store)
    d = Dict.from_name("lazy", create_if_missing=True, store=counting)
    assert counting.ops == []  # nothing is read or written until the handle is used
    d["foo"] = 42
    assert d["foo"] == 42
    assert counting.count("get", prefix="dict-names/") == 1  # the name is resolved once
    assert counting.count("put_if_absent", prefix="dict-names/") == 1
    with pytest.raises(NotFoundError):
        Dict.from_name("not-there", store=store)["x"]


@pytest.mark.parametrize("name", ["has space", "has/slash", "a" * 65, "", "-x", ".."])
def test_invalid_name(local_store: Store, name: str) -> None:
    with pytest.raises(InvalidError, match="invalid Dict name"):
        Dict.from_name(name, store=local_store)
    with pytest.raises(InvalidError, match="invalid Dict name"):
        Dict.objects.create(name, store=local_store)
    assert objects(local_store) == []  # a bad name writes nothing


def test_ephemeral(store: Store) -> None:
    with Dict.ephemeral(store=store) as d:
        assert d.name is None
        d["foo"] = 42
        assert d.len() == 1 and d["foo"] == 42
        assert d.info().name is None
        dict_id = d.object_id
        # from_id: another handle on the same (anonymous) Dict
        d2 = Dict.from_id(dict_id, store=store)
        assert d2["foo"] == 42
        d2["another"] = "value"
        assert d["another"] == "value"
        assert Dict.objects.list(store=store) == []  # ephemeral Dicts have no name
        assert store.exists(f"leases/dicts/{dict_id}")
    assert objects(store) == []  # entries, config and lease are gone
    with pytest.raises(NotFoundError):
        Dict.from_id(dict_id, store=store).info()


@pytest.mark.parametrize("ttl", ["inf", "-5", "abc"])
def test_a_bad_ephemeral_ttl_in_the_environment_is_named(local_store: Store, ttl: str) -> None:
    # $JUPYTER_VOLUME_EPHEMERAL_TTL=inf used to be accepted, and the lease's renewal
    # thread died at once with an OverflowError traceback; -5 failed with a message about
    # a "lease ttl" that named neither the variable nor the Dict
    code = (
        "import sys\n"
        "from jupyter_volume import Dict\n"
        "from jupyter_volume.errors import InvalidError\n"
        "try:\n"
        "    with Dict.ephemeral(store=sys.argv[1]):\n"
        "        print('entered')\n"
        "except InvalidError as e:\n"
        "    print('InvalidError:', e)\n"
    )
    env = {**os.environ, "JUPYTER_VOLUME_EPHEMERAL_TTL": ttl}
    p = subprocess.run(
        [sys.executable, "-c", code, local_store.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert "JUPYTER_VOLUME_EPHEMERAL_TTL" in p.stdout and "entered" not in p.stdout, p.stdout
    assert "Traceback" not in p.stderr, p.stderr
    assert [k for k in objects(local_store) if not k.startswith("clock/")] == []


def test_from_id_named(local_store: Store) -> None:
    d = Dict.from_name("by-id", create_if_missing=True, store=local_store)
    d2 = Dict.from_id(d.object_id, store=local_store)
    assert d2.info().name == "by-id"
    assert d2.name == "by-id"
    d2["foo"] = 42
    assert d["foo"] == 42
    with pytest.raises(InvalidError):
        Dict.from_id("../x", store=local_store)


def test_update_put_pop(store: Store) -> None:
    with Dict.ephemeral(store=store) as d:
        d.update({"foo": 1, "bar": 2}, foo=3, baz=4)
        assert sorted(d.items()) == [("bar", 2), ("baz", 4), ("foo", 3)]
        d.update([("pair", 1)], more=2)  # pairs, as dict.update takes them
        assert d["pair"] == 1 and d["more"] == 2

        d.clear()
        assert d.put("foo", 1, skip_if_exists=True) is True
        assert d.put("foo", 2, skip_if_exists=True) is False
        assert list(d.items()) == [("foo", 1)]
        assert d.put("foo", 3) is True
        assert d["foo"] == 3

        d["existing_key"] = "existing_value"
        assert d.pop("existing_key") == "existing_value"
        assert "existing_key" not in d
        assert d.pop("non_existent_key", "default_value") == "default_value"
        assert d.pop("non_existent_key", None) is None
        with pytest.raises(KeyError):
            d.pop("non_existent_key")
        del d["foo"]
        with pytest.raises(KeyError):
            del d["foo"]
        assert d.len() == 0


def test_update_takes_none_as_modal_does(local_store: Store) -> None:
    # Modal's signature is update(other: Mapping | None = None, /, **kwargs): code that
    # passes an optional mapping through used to fail with a bare TypeError
    with Dict.ephemeral(store=local_store) as d:
        d.update(None)
        d.update(None, a=1)
        assert dict(d.items()) == {"a": 1}
        with pytest.raises(TypeError, match="int"):
            d.update(5)  # neither a mapping nor pairs, as dict.update(5) says


def test_bad_list_arguments_are_refused_by_name(local_store: Store) -> None:
    Dict.objects.create("one", store=local_store)
    # they used to fail with "'<' not supported between 'str' and 'int'", or a bare
    # ValueError of datetime's
    with pytest.raises(InvalidError, match="max_objects"):
        Dict.objects.list(store=local_store, max_objects="3")  # type: ignore[arg-type]
    with pytest.raises(InvalidError, match="max_objects"):
        Dict.objects.list(store=local_store, max_objects=True)  # type: ignore[arg-type]
    with pytest.raises(InvalidError, match="created_before.*'last week'"):
        Dict.objects.list(store=local_store, created_before="last week")
    with pytest.raises(InvalidError, match="created_before"):
        Dict.objects.list(store=local_store, created_before=5)  # type: ignore[arg-type]
    assert [x.name for x in Dict.objects.list(store=local_store, created_before="2999-01-01")] == [
        "one"
    ]


def test_objects_create_list_delete(local_store: Store) -> None:
    for i in range(5):
        Dict.from_name(f"test-dict-{i}", create_if_missing=True, store=local_store).info()
    listed = Dict.objects.list(store=local_store)
    assert [d.name for d in listed] == [
        f"test-dict-{i}" for i in reversed(range(5))
    ]  # newest first
    assert all(d.info().created_by for d in listed)
    assert len(Dict.objects.list(max_objects=2, store=local_store)) == 2
    assert Dict.objects.list(created_before="2000-01-01", store=local_store) == []
    with pytest.raises(InvalidError):
        Dict.objects.list(max_objects=-1, store=local_store)

    Dict.objects.create("test-dict-create", store=local_store)
    Dict.from_name("test-dict-create", store=local_store).info()
    with pytest.raises(AlreadyExistsError):
        Dict.objects.create("test-dict-create", store=local_store)
    Dict.objects.create("test-dict-create", allow_existing=True, store=local_store)
    # Dicts have their own namespace: a volume may share the name
    from jupyter_volume import Volume

    Volume.objects.create("test-dict-create", store=local_store)
    assert Dict.from_name("test-dict-create", store=local_store).len() == 0


def test_a_store_named_by_url_must_exist_unless_the_call_creates(tmp_path: Path) -> None:
    """As for volumes: a lookup in a store that does not exist (a typo in ``store=``)
    is an error and makes nothing; it used to create the store's folder and then say
    the Dict was not found. Creating a Dict there creates the store."""
    url = (tmp_path / "typo").as_uri()
    for lookup in (
        lambda: Dict.from_name("d", store=url).get("k"),
        lambda: Dict.objects.list(store=url),
        lambda: Dict.objects.delete("d", store=url),
    ):
        with pytest.raises(NotFoundError, match="store .* does not exist"):
            lookup()
    assert not (tmp_path / "typo").exists()
    d = Dict.from_name("d", store=url, create_if_missing=True)
    d["k"] = 1
    assert (tmp_path / "typo").is_dir() and Dict.from_name("d", store=url)["k"] == 1


def test_keys_follow_modals_equality(store: Store) -> None:
    with Dict.ephemeral(store=store) as d:
        d[1] = "int"
        d[1.0] = "float"
        d[True] = "bool"
        d["1"] = "str"
        d[b"1"] = "bytes"
        d[None] = "none"
        d[(1, "a", (b"x", None))] = "tuple"
        assert d.len() == 7  # 1, 1.0, True, "1", b"1" are five different keys
        assert (d[1], d[1.0], d[True]) == ("int", "float", "bool")
        assert d[(1, "a", (b"x", None))] == "tuple"
        assert set(d.keys()) == {1, "1", b"1", None, (1, "a", (b"x", None))}  # 1 == 1.0 == True
        keys = list(d.keys())
        assert [type(k).__name__ for k in keys].count("float") == 1
        assert any(k is True for k in keys) and any(type(k) is int for k in keys)


def test_a_dict_with_keys_a_plain_dict_folds_is_not_equal_to_the_folded_one(
    store: Store,
) -> None:
    with Dict.ephemeral(store=store) as d:
        d[1] = "same"
        d[True] = "same"  # another key here; one key of a plain dict
        assert d != {1: "same"} and {1: "same"} != d  # noqa: SIM300 - the reflected side too
        assert d != {1: "same", "x": 1}
        d.pop(True)
        assert d == {1: "same"} == {True: "same"}  # as Python's dicts compare 1 and True


def test_long_and_other_keys(store: Store) -> None:
    with Dict.ephemeral(store=store) as d:
        long_key = "k" * 5000  # too long for an object name: named by digest
        d[long_key] = 1
        d[frozenset({1, 2})] = 2  # any hashable key works (pickled)
        d["short"] = 3
        assert d[long_key] == 1 and d[frozenset({1, 2})] == 2
        assert sorted(d.keys(), key=repr) == sorted(
            [long_key, frozenset({1, 2}), "short"], key=repr
        )
        assert d.len() == 3
        with pytest.raises(InvalidError, match="hashable"):
            d[["not", "hashable"]] = 1
        assert ["x"] not in d


def test_keys_and_len_are_one_listing(store: Store) -> None:
    counting = CountingStore(store)
    d = Dict.from_name("listing", create_if_missing=True, store=counting)
    d.update({f"key-{i}": i for i in range(50)})
    counting.reset()
    assert len(d) == 50
    assert counting.count("list") == 1 and counting.count("get") == 0
    counting.reset()
    keys = [k for k in d.keys()]  # noqa: SIM118 - the view; list(view) would also ask len()
    assert sorted(keys) == sorted(f"key-{i}" for i in range(50))
    assert counting.count("list") == 1 and counting.count("get") == 0  # no entry was read


def test_views_are_lazy_and_reiterable(local_store: Store) -> None:
    d = Dict.from_name("views", create_if_missing=True, store=local_store)
    keys, values, items = d.keys(), d.values(), d.items()
    assert list(keys) == [] and len(keys) == 0
    d["a"] = 1
    assert list(keys) == ["a"] and list(keys) == ["a"]  # sees later writes; reusable
    assert list(values) == [1] and list(items) == [("a", 1)]
    assert "a" in keys and ("a", 1) in items and 1 in values
    assert ("a", 2) not in items


def test_mutable_mapping(local_store: Store) -> None:
    d = Dict.from_name("mm", create_if_missing=True, store=local_store)
    assert isinstance(d, MutableMapping) and isinstance(d, Mapping)
    assert d.setdefault("a", 1) == 1
    assert d.setdefault("a", 2) == 1
    d["b"] = 2
    assert d == {"a": 1, "b": 2}
    assert {"a": 1, "b": 2} == d  # noqa: SIM300 - the reflected comparison is the point
    assert d != {"a": 1}
    assert d == Dict.from_name("mm", store=local_store)  # same contents
    key, value = d.popitem()
    assert key not in d and {key: value}.items() <= {"a": 1, "b": 2}.items()
    # hashable by identity: a handle can be a key, and be stored in its own Dict
    assert {d: 1}[d] == 1
    d["self"] = d
    again = d["self"]
    assert isinstance(again, Dict) and again.object_id == d.object_id and again == d
    assert pickle.loads(pickle.dumps(d))["self"].object_id == d.object_id


def test_incr(store: Store) -> None:
    with Dict.ephemeral(store=store) as d:
        assert d.incr("n") == 1  # a missing key starts from 0
        assert d.incr("n", 10) == 11
        assert d.incr("n", -20) == -9
        assert d["n"] == -9
        d["s"] = "text"
        with pytest.raises(InvalidError, match="'s'.*str, not an int"):
            d.incr("s")
        d["b"] = True
        with pytest.raises(InvalidError, match="bool"):
            d.incr("b")
        with pytest.raises(InvalidError, match="amount"):
            d.incr("n", 1.5)  # type: ignore[arg-type]
        assert d["s"] == "text" and d["n"] == -9


def test_bad_input_writes_nothing(store: Store) -> None:
    d = Dict.from_name("strict", create_if_missing=True, store=store)
    d["keep"] = 1
    counting = CountingStore(store)
    strict = Dict.from_name("strict", store=counting)
    with pytest.raises(InvalidError, match="cannot be pickled"):
        strict["lock"] = threading.Lock()
    with pytest.raises(InvalidError, match="over the Dict limit"):
        strict.put("big", b"x" * (MAX_VALUE_SIZE + 1))
    with pytest.raises(InvalidError, match="cannot be pickled"):
        strict.update({"good": 1, "bad": threading.Lock()})  # checked before any write
    with pytest.raises(InvalidError, match="pair"):
        strict.update([("good", 1), ("bad",)])
    with pytest.raises(InvalidError, match="cannot be pickled"):
        strict.setdefault("x", threading.Lock())
    assert counting.count(WRITE_OPS) == 0
    assert sorted(strict.keys()) == ["keep"]


def test_compression_and_big_values(store: Store) -> None:
    with Dict.ephemeral(store=store) as d:
        text = "all work and no play " * 100_000  # 2 MB, very compressible
        d["text"] = text
        assert d["text"] == text
        (entry,) = [o for o in store.list(f"dicts/{d.object_id}/e/")]
        assert entry.size < len(text) // 10  # stored compressed
        noise = os.urandom(5 << 20)
        d["noise"] = noise  # incompressible: stored as is
        assert d["noise"] == noise


def test_values_that_cannot_be_unpickled_name_key_and_module(
    local_store: Store, tmp_path: Path
) -> None:
    # A child that has a module we lack stores an instance of its class.
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "jv_only_there.py").write_text("class Thing:\n    pass\n")
    code = textwrap.dedent(
        """
        import sys
        from jupyter_volume import Dict
        from jupyter_volume.store import open_store
        import jv_only_there
        d = Dict.from_name("pickles", create_if_missing=True, store=open_store(sys.argv[1]))
        d["foo"] = jv_only_there.Thing()
        d["fine"] = 1
        """
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "mods")}
    subprocess.run([sys.executable, "-c", code, local_store.url], env=env, check=True, timeout=120)
    d = Dict.from_name("pickles", store=local_store)
    assert d["fine"] == 1
    pattern = r"value for key 'foo' from Dict 'pickles': module 'jv_only_there'"
    with pytest.raises(DeserializationError, match=pattern):
        d.get("foo")
    with pytest.raises(DeserializationError, match=pattern):
        list(d.values())
    with pytest.raises(DeserializationError, match=pattern):
        list(d.items())
    assert sorted(d.keys()) == ["fine", "foo"]  # keys still list: they are not pickles
    # Such an entry can still be removed by its key: del never unpickles, and pop
    # removes the entry before it unpickles (then says why it cannot return the value).
    subprocess.run([sys.executable, "-c", code, local_store.url], env=env, check=True, timeout=120)
    del d["foo"]
    assert sorted(d.keys()) == ["fine"]
    subprocess.run([sys.executable, "-c", code, local_store.url], env=env, check=True, timeout=120)
    with pytest.raises(DeserializationError, match=pattern):
        d.pop("foo")
    assert "foo" not in d and sorted(d.keys()) == ["fine"]
    with pytest.raises(KeyError):
        del d["foo"]


def test_every_method_has_aio(local_store: Store) -> None:
    d = Dict.from_name("async", create_if_missing=True, store=local_store)
    for name in (
        "get", "put", "contains", "len", "pop", "update", "clear", "keys", "values",
        "items", "info", "incr", "setdefault", "popitem", "lock", "hydrate",
    ):  # fmt: skip
        assert callable(getattr(d, name).aio), name
    for name in ("create", "list", "delete"):
        assert callable(getattr(Dict.objects, name).aio), name
    assert callable(Dict.ephemeral.aio)

    async def main() -> list[Any]:
        await d.put.aio("a", 1)
        await d.update.aio({"b": 2})
        assert await d.incr.aio("c", 3) == 3
        async with d.lock.aio("l", lease=5) as lock:
            assert lock.held
        async with Dict.ephemeral.aio(store=local_store) as e:
            await e.put.aio("x", 1)
            assert await e.len.aio() == 1
        names = [x.name for x in await Dict.objects.list.aio(store=local_store)]
        assert names == ["async"]
        return [
            await d.get.aio("a"),
            await d.contains.aio("b"),
            await d.len.aio(),
            sorted([k async for k in d.keys.aio()]),
            sorted([v async for v in d.values.aio()]),
            sorted([kv async for kv in d.items.aio()]),
            await d.pop.aio("a"),
        ]

    assert asyncio.run(main()) == [
        1,
        True,
        3,
        ["a", "b", "c"],
        [1, 2, 3],
        [("a", 1), ("b", 2), ("c", 3)],
        1,
    ]


def test_locks_live_apart_and_time_out(store: Store) -> None:
    d = Dict.from_name("locks", create_if_missing=True, store=store)
    d["x"] = 1
    with d.lock("guard", lease=10) as held:
        assert held.held and not held.lost
        assert list(d.keys()) == ["x"] and d.len() == 1  # the lock is no entry
        other = Dict.from_name("locks", store=store)
        with pytest.raises(TimeoutError, match="guard"):
            other.lock("guard", timeout=0.5).acquire()
        with other.lock("another-name", timeout=5):
            pass  # locks of other names are independent
    with Dict.from_name("locks", store=store).lock("guard", timeout=5):
        pass  # free again once released
    d.clear()
    with d.lock("guard", timeout=5):
        pass  # clear() leaves locks working
    with pytest.raises(InvalidError):
        d.lock("", timeout=1)
    with pytest.raises(InvalidError):
        d.lock("x", lease=0)
    # numbers given as strings are refused at once, with the argument named (they used
    # to fail deep inside, and a string timeout only once the lock was contended)
    with pytest.raises(InvalidError, match="lease"):
        d.lock("x", lease="10")  # type: ignore[arg-type]
    with pytest.raises(InvalidError, match="timeout"):
        d.lock("x", timeout="5")  # type: ignore[arg-type]
    with pytest.raises(InvalidError, match="timeout"):
        d.lock("x", timeout=-1)
    # a lease no renewal thread can wait a third of (it used to be accepted, and the
    # thread died at once with an OverflowError traceback, the lock never renewed)
    for lease in (float("inf"), 1e300):
        with pytest.raises(InvalidError, match="lease"):
            d.lock("x", lease=lease)
    with d.lock("forever", timeout=float("inf")) as waited:  # an infinite wait is fine
        assert waited.held


def test_hydrate_and_keys_beyond_the_digit_limit(local_store: Store) -> None:
    with pytest.raises(NotFoundError):
        Dict.from_name("later", store=local_store).hydrate()
    d = Dict.from_name("later", create_if_missing=True, store=local_store)
    assert d.hydrate() is d  # creates it now, as Modal's hydrate() looks it up
    assert Dict.from_name("later", store=local_store).hydrate().object_id == d.object_id
    assert asyncio.run(d.hydrate.aio()) is d
    big = 10**5000  # more digits than str() will give: such a key is stored pickled
    d[big] = "big"
    assert d[big] == "big" and big in d and big + 1 not in d
    assert list(d.keys()) == [big]
    assert d.pop(big) == "big" and len(d) == 0


def test_a_handle_on_a_deleted_dict_fails_and_leaves_nothing_behind(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Writes through a handle whose Dict was deleted elsewhere used to "succeed" into
    # objects no Dict owns (kept for good), also after a new Dict took the name.
    import jupyter_volume.objects

    monkeypatch.setattr(jupyter_volume.objects, "ALIVE_EVERY", 0.2)  # S3 checks at most this often
    d = Dict.from_name("jobs", create_if_missing=True, store=store)
    d["a"] = 1
    old_id = d.object_id
    Dict.objects.delete("jobs", store=store)  # as another process would
    time.sleep(0.3)  # past the check interval on S3; a local folder checks every write
    with pytest.raises(NotFoundError, match="'jobs' was deleted"):
        d["b"] = 2
    Dict.objects.create("jobs", store=store)  # the name again: another Dict
    with pytest.raises(NotFoundError, match="was deleted"):
        d.incr("n")
    with pytest.raises(NotFoundError, match="was deleted"):
        d.update({"c": 3, "d": 4})
    assert len(Dict.from_name("jobs", store=store)) == 0
    assert [k for k in objects(store) if k.startswith(f"dicts/{old_id}/")] == []
    with Dict.ephemeral(store=store) as e:
        e["x"] = 1
    with pytest.raises(NotFoundError, match="block ended"):
        e["y"] = 2


def test_unreachable_store_fails_with_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    store = S3Store(
        "bucket",
        "p",
        endpoint_url=endpoint,
        client=make_client(endpoint_url=endpoint, aws_access_key_id="k", aws_secret_access_key="s"),
    )
    store.max_attempts = 2
    d = Dict.from_name("offline", create_if_missing=True, store=store)
    for call in (lambda: d.get("k"), lambda: d.put("k", 1), lambda: d.incr("k"), d.len):
        with pytest.raises(StoreError) as info:
            call()
        assert "\n" not in str(info.value) and endpoint in str(info.value)


def test_environments_are_separate_namespaces(store: Store) -> None:
    dev = Dict.from_name("shared-name", create_if_missing=True, store=store, environment_name="dev")
    default = Dict.from_name("shared-name", create_if_missing=True, store=store)
    dev["x"] = "dev"
    default["x"] = "default"
    assert dev.incr("n") == 1 and dev.incr("n") == 2  # conditional writes through the view
    with dev.lock("l", timeout=5):
        pass
    assert (dev["x"], default["x"]) == ("dev", "default")
    assert "n" not in default
    assert [d.name for d in Dict.objects.list(store=store, environment_name="dev")] == [
        "shared-name"
    ]
    assert all(k.startswith("envs/dev/") for k in objects(store) if dev.object_id in k)


class _FailingPuts(CountingStore):
    """Fails every put after the first ``ok`` ones. A stand-in (a mock, of one fault) for
    a store that goes away in the middle of an update: with a real server that moment
    cannot be hit reliably."""

    def __init__(self, inner: Store, ok: int) -> None:
        super().__init__(inner)
        self.ok = ok
        self.puts = 0
        self.guard = threading.Lock()

    def put(self, key: str, data: Any) -> None:
        with self.guard:
            self.puts += 1
            fail = self.puts > self.ok
        if fail:
            raise StoreError("the store went away")
        super().put(key, data)


def test_a_failed_update_says_how_far_it_got(local_store: Store) -> None:
    Dict.objects.create("partial", store=local_store)
    failing = _FailingPuts(local_store, ok=2)
    d = Dict.from_name("partial", store=failing)
    with pytest.raises(StoreError, match=r"failed after writing (\d) of 5 entries") as info:
        d.update({f"k{i}": i for i in range(5)})
    written = int(re.search(r"writing (\d)", str(info.value)).group(1))  # type: ignore[union-attr]
    assert written == len(Dict.from_name("partial", store=local_store)) <= 2


class _Interleave(WrappedStore):
    """Runs ``then`` (real operations on the real store, as another process would) right
    after the first ``kind`` operation on a key ending with ``suffix`` returns: the only
    way to land another process's step at one exact point between two of ours."""

    def __init__(self, inner: Store, kinds: tuple[str, ...], suffix: str, then: Any) -> None:
        super().__init__(inner)
        self.kinds, self.suffix, self.then = kinds, suffix, then
        self.fired = False

    def _record(self, kind: str, key: str) -> None:
        if not self.fired and kind in self.kinds and key.endswith(self.suffix):
            self.fired = True
            self.then()


def test_create_while_another_process_deletes(local_store: Store) -> None:
    # Our create-only write of the name finds another process's Dict; before we read its
    # record, that process deletes it. This used to raise AlreadyExistsError ("already
    # exists", even with allow_existing=True, the path of create_if_missing) for a Dict
    # that did not exist.
    for allow_existing in (True, False):
        Dict.objects.create("race", store=local_store)
        Dict.from_name("race", store=local_store)["old"] = 1
        racing = _Interleave(
            local_store,
            ("put_if_absent",),
            "dict-names/race",
            lambda: Dict.objects.delete("race", store=local_store),
        )
        Dict.objects.create("race", allow_existing=allow_existing, store=racing)
        assert racing.fired
        d = Dict.from_name("race", store=local_store)
        assert d.len() == 0  # a new Dict, made by our call
        d["new"] = 2
        configs = [k for k in objects(local_store) if k.endswith("/config")]
        assert len(configs) == 1  # no config of a losing attempt was left behind
        Dict.objects.delete("race", store=local_store)


def test_delete_while_another_process_makes_the_name_again(local_store: Store) -> None:
    # Between our read of the name and our delete of it, another process deletes the
    # Dict and creates a new one under the same name. Our delete used to remove the new
    # Dict's name and the old Dict's entries: the new Dict's entries were left in the
    # store for good, named by nothing.
    Dict.objects.create("again", store=local_store)
    Dict.from_name("again", store=local_store)["old"] = 1

    def remake() -> None:
        Dict.objects.delete("again", store=local_store)
        Dict.from_name("again", create_if_missing=True, store=local_store)["new"] = 2

    racing = _Interleave(local_store, ("get", "get_versioned"), "dict-names/again", remake)
    Dict.objects.delete("again", store=racing)
    assert racing.fired
    assert [k for k in objects(local_store) if not k.startswith("clock/")] == []


def test_showing_the_first_entries_reads_only_those(local_store: Store) -> None:
    """`dict items NAME 5` read values in batches of 128 (each maybe 100 MiB) to show 5."""
    d = Dict.from_name("many", create_if_missing=True, store=local_store)
    d.update({f"k{i:03d}": i for i in range(300)})
    counting = CountingStore(local_store)
    shown = list(Dict.from_name("many", store=counting)._iter_entries(5))
    assert len(shown) == 5 and all(e is None for _k, _v, e in shown)
    assert counting.count("get", prefix="dicts/") <= 5 + 1  # the entries (and the config)
    assert len(list(d._iter_entries())) == 300
