"""A model-based (stateful) test of Dict: one Dict per example, opened through three
handles, against a plain Python dict as the model.

* A: ``Dict.from_name(name, create_if_missing=True, store=store)``;
* B: ``Dict.from_name(name, store=StoreAs(store))``: the same store under another URL
  (``url + "#b"``), so nothing opened per URL in this process is shared with A, as if B
  were another process;
* C: ``Dict.from_id(A.object_id, store=StoreAs(store, "c"))`` (``url + "#c"``).

Every rule goes through a handle chosen at random; after every step each handle must
agree with the model on ``len``, on membership and on ``get`` of every key touched so far.

What the model follows (README "Dicts: small shared state", the module docstring of
``jupyter_volume/dicts.py`` and Modal's Dict API):

* Keys are equal when their encodings are (Modal's rule, not Python's): ``1``, ``1.0`` and
  ``True`` are three keys. The model keys entries by :func:`mkey` (type and value, floats
  by ``repr``), so ``0.0`` and ``-0.0`` are two keys too (the docs say "encodings" without
  spelling them out; the implementation encodes a float by its ``repr``), a NaN is one key,
  and a namedtuple is another key than the equal plain tuple (pickled keys).
* ``put`` returns True; ``put(skip_if_exists=True)`` writes and returns True only for a
  missing key. ``incr`` starts a missing key at 0, adds to an int, and raises InvalidError
  (writing nothing) for a stored value that is not an int (a bool is not) or an amount that
  is not an int. ``setdefault`` writes only a missing key and returns the stored value.
  ``pop``/``del``/``d[k]`` raise KeyError for a missing key. ``update`` takes a mapping, an
  object with ``keys()``, pairs, keywords or None; bad input (an unpicklable value, an
  unhashable key) writes nothing. ``clear`` removes every entry and keeps locks.
* Locks (``lock(name, lease=30, timeout=0)``): one holder at a time across handles, a
  second ``acquire`` of a held DictLock raises InvalidError, locks are never entries.
* Views (``keys()``/``values()``/``items()``) are live: ones made when the handles were
  opened are read again later. A handle stored as a value reads back as a handle on the
  same Dict (local store only: unpickling opens the store by URL).
* An ``incr`` whose answer was lost while another handle's ``incr`` landed on top (a
  fourth handle, D, on :class:`LossyStore`) counts once and returns its own sum.
* A Dict deleted by name and made again: every write through an old handle raises
  NotFoundError at once on a local folder and leaves nothing behind (on S3, within 2 s:
  either outcome is accepted there); the new Dict starts empty.
* Now and then 110-140 entries at once, so listings cross their batches of 128.

What it found (a compressed entry lost its ``incr`` write ids) is reduced to two plain
tests at the end of the file, one per effect.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import random
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from modeltest import StoreAs, model_settings

from jupyter_volume import Dict
from jupyter_volume.errors import InvalidError, NotFoundError

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

# -- the model's vocabulary -------------------------------------------------------------

Point = collections.namedtuple("Point", "x y")  # a tuple subclass: a pickled key


class KeysOnly:
    """Not a Mapping, but has ``keys()`` and ``__getitem__`` (dict.update's protocol)."""

    def __init__(self, data: dict[Any, Any]) -> None:
        self.data = data

    def keys(self) -> Any:
        return self.data.keys()

    def __getitem__(self, k: Any) -> Any:
        return self.data[k]


NAN = float("nan")
KEYS: list[Any] = [
    "",
    "a",
    "b_c",
    "ü",
    "日本語🙂",
    "\ud800",  # a lone surrogate
    "s" * 119,  # encoding of 120 bytes: the longest named directly
    "s" * 120,  # 121 bytes: named by digest, the key kept inside the entry
    "long-" * 60,  # 300 characters
    "é" * 150,  # 300 bytes of UTF-8
    b"",
    b"a",
    b"\x00\xff" * 100,
    0,
    1,
    -1,
    2**70,
    10**5000,  # more digits than str() will print: a pickled key
    True,
    False,
    None,
    0.0,
    -0.0,
    1.0,
    1.5,
    float("inf"),
    NAN,
    (),
    (1,),
    (True,),
    (1.0,),
    (1, 2),
    (1, "a"),
    ((), (b"x", None)),
    ("t" * 200,),
    Point(1, 2),
]
KWARG_KEYS = ["a", "b_c", "ü"]

BIG_RANDOM = random.Random(1).randbytes(300 * 1024)  # incompressible
BIG_REPEAT = b"0123456789abcdef" * (400 * 1024 // 16)  # compressed with zstd
BIG_INT = 2**40000  # a compressible pickle of ~5 KB
VALUES: list[Any] = [
    None,
    0,
    7,
    -3,
    2**80,
    True,
    2.5,
    -0.0,
    "",
    "text ü",
    b"",
    b"bytes",
    [1, [2, {"a": (3, None)}]],
    {"k": {"n": [b"x", None]}, 1: 2},
    {1, 2, 3},
    frozenset(),
    (),
    BIG_RANDOM,
    BIG_REPEAT,
    BIG_INT,
    Point(3, 4),
]
AMOUNTS = [1, -1, 0, 5, 2**65]
BAD_AMOUNTS = [True, 1.5, "1"]
LOCK_NAMES = ["L", "a", "ü-lock", "x" * 300]
HANDLES = "ABC"


def mkey(k: Any) -> Any:
    """The model's identity of a key: its type and value (floats by repr)."""
    if k is None:
        return ("none",)
    t = type(k)
    if t is bool:
        return ("bool", k)
    if t is int:
        return ("int", k)
    if t is float:
        return ("float", repr(k))
    if t is str:
        return ("str", k)
    if t is bytes:
        return ("bytes", k)
    if t is tuple:
        return ("tuple", *(mkey(x) for x in k))
    return ("obj", t.__qualname__, tuple(mkey(x) for x in k) if isinstance(k, tuple) else k)


def same(a: Any, b: Any) -> bool:
    """Equal and of the same type, recursively for containers (1 is not True here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float):
        return repr(a) == repr(b)
    return bool(a == b)


def short(v: Any) -> str:
    try:
        text = repr(v)
    except ValueError:
        return f"<{type(v).__name__} of {v.bit_length()} bits>" if isinstance(v, int) else "?"
    return text if len(text) < 80 else f"{text[:60]}...<{len(text)} chars>"


def same_multiset(actual: list[Any], expected: list[Any], what: str) -> None:
    rest = list(expected)
    for a in actual:
        for i, e in enumerate(rest):
            if same(a, e):
                del rest[i]
                break
        else:
            raise AssertionError(f"{what}: {short(a)} is not expected (model: {expected!r:.300})")
    assert not rest, f"{what}: missing {[short(v) for v in rest]}"


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()


class LossyStore(StoreAs):
    """A client whose conditional writes of entries can land with their answer lost,
    while another client writes on top before the retry: set :attr:`meanwhile` to that
    other write. The next such write of this client then lands, ``meanwhile`` runs, and
    the call answers as a real store's retry would (S3Store: 412, read back, the bytes
    are another's): ``put_if_match`` None, ``put_if_absent`` False."""

    def __init__(self, inner: Any, tag: str) -> None:
        super().__init__(inner, tag)
        self.meanwhile: Any = None

    def _lost(self, key: str) -> bool:
        if self.meanwhile is None or "/e/" not in key:
            return False
        f, self.meanwhile = self.meanwhile, None
        f()
        return True

    def put_if_match(self, key: str, data: Any, token: str) -> str | None:
        new = super().put_if_match(key, data, token)
        return None if new is not None and self._lost(key) else new

    def put_if_absent(self, key: str, data: Any) -> bool:
        made = super().put_if_absent(key, data)
        return False if made and self._lost(key) else made


# -- the state machine ------------------------------------------------------------------


class Ref:
    """A key or value of the pools, shown by a short label in Hypothesis' step output
    (the repr of a 12,000-digit int fails, a 300 KiB bytes is unreadable)."""

    def __init__(self, v: Any) -> None:
        self.v = v

    def __repr__(self) -> str:
        return short(self.v)


def refs(pool: list[Any]) -> Any:
    return st.sampled_from([Ref(x) for x in pool])  # rules take .v


H = st.sampled_from(HANDLES)
K = refs(KEYS)
V = refs(VALUES)


class DictModel(RuleBasedStateMachine):
    store: Any = None
    counter = itertools.count()

    def __init__(self) -> None:
        super().__init__()
        self.name = f"model-{next(self.counter)}"
        self.bases = {
            "A": self.store,
            "B": StoreAs(self.store, "b"),
            "C": StoreAs(self.store, "c"),
        }
        self.lossy = LossyStore(self.store, "d")
        self.model: dict[Any, tuple[Any, Any]] = {}  # mkey -> (key, value)
        self.touched: dict[Any, Any] = {}  # mkey -> key
        self.locks: dict[str, Any] = {}  # lock name -> the DictLock holding it
        self.dead: list[Any] = []  # handles of this name's Dicts deleted so far
        self._open()

    def _open(self) -> None:
        """Handles A, B, C (and D, the lossy client) on the Dict named ``self.name``,
        made if missing."""
        a = Dict.from_name(self.name, create_if_missing=True, store=self.bases["A"])
        b = Dict.from_name(self.name, store=self.bases["B"])
        c = Dict.from_id(a.object_id, store=self.bases["C"])
        self.h = {"A": a, "B": b, "C": c}
        self.d = Dict.from_id(a.object_id, store=self.lossy)
        # views made now and read later: README says they are live
        self.views = {h: (d.keys(), d.values(), d.items()) for h, d in self.h.items()}

    # -- helpers -------------------------------------------------------------------------
    def _touch(self, k: Any) -> Any:
        mk = mkey(k)
        self.touched[mk] = k
        return mk

    def _set(self, k: Any, v: Any) -> None:
        self.model[self._touch(k)] = (k, v)

    def _value(self, k: Any) -> Any:
        return self.model.get(mkey(k), (None, MISSING))[1]

    def _check_value(self, got: Any, want: Any, what: str) -> None:
        assert same(got, want), f"{what}: got {short(got)}, model has {short(want)}"

    # -- writes --------------------------------------------------------------------------
    @rule(h=H, k=K, v=V, how=st.sampled_from(["setitem", "put", "aio"]))
    def put(self, h: str, k: Any, v: Any, how: str) -> None:
        k = k.v
        v = v.v
        d = self.h[h]
        if how == "setitem":
            d[k] = v
        elif how == "put":
            assert d.put(k, v) is True
        else:
            assert asyncio.run(d.put.aio(k, v)) is True
        self._set(k, v)

    @rule(h=H, k=K, v=V)
    def put_skip_if_exists(self, h: str, k: Any, v: Any) -> None:
        k = k.v
        v = v.v
        present = mkey(k) in self.model
        written = self.h[h].put(k, v, skip_if_exists=True)
        assert written is (not present), f"put(skip_if_exists) of {short(k)} said {written}"
        self._touch(k)
        if not present:
            self._set(k, v)

    @rule(
        h=H,
        pairs=st.lists(st.tuples(K, V), max_size=5),
        kw=st.dictionaries(st.sampled_from(KWARG_KEYS), V, max_size=2),
        form=st.sampled_from(["mapping", "pairs", "keys-only", "none"]),
    )
    def update(self, h: str, pairs: list[tuple[Any, Any]], kw: dict[str, Any], form: str) -> None:
        pairs = [(k.v, v.v) for k, v in pairs]
        kw = {k: v.v for k, v in kw.items()}
        d = self.h[h]
        if form == "none":
            d.update(None, **kw)
            items = []
        elif form == "pairs":
            d.update(pairs, **kw)
            items = pairs
        else:
            m = dict(pairs)  # a Python dict: 1 and True collapse here, before the Dict sees them
            d.update(m if form == "mapping" else KeysOnly(m), **kw)
            items = list(m.items())
        for k, v in [*items, *kw.items()]:
            self._set(k, v)

    @rule(h=H, n=st.integers(110, 140), first=st.integers(0, 100), often=st.integers(0, 3))
    def bulk_update(self, h: str, n: int, first: int, often: int) -> None:
        """Many entries at once (listings and reads go in batches of 128): keys
        ("bulk", i), never added to the keys checked after every step (only len and the
        listings see them). Slow: done in one call of this rule in four."""
        if often:
            return
        self.h[h].update({("bulk", i): i for i in range(first, first + n)})
        for i in range(first, first + n):
            self.model[mkey(("bulk", i))] = (("bulk", i), i)

    @precondition(lambda self: self.store.cheap_stat)  # its unpickling opens the store by URL
    @rule(h=H, k=K, which=H)
    def put_a_handle_as_a_value(self, h: str, k: Any, which: str) -> None:
        """README: a handle pickles (the contents stay in the store), so a Dict can hold
        another, or itself. Read back, it is a handle on the same Dict (A's store: B and C
        have URLs of this test's own making)."""
        k = k.v
        self.h[h][k] = self.h["A"]
        got = self.h[which][k]
        assert isinstance(got, Dict) and got == self.h["A"]
        assert got.object_id == self.h["A"].object_id
        self._set(k, got)

    @rule(h=H, k=K, v=V, bad=st.sampled_from(["value", "key"]), first=st.booleans())
    def update_with_bad_input_writes_nothing(
        self, h: str, k: Any, v: Any, bad: str, first: bool
    ) -> None:
        import threading

        k, v = k.v, v.v

        bad_pair = (k, threading.Lock()) if bad == "value" else ([1, 2], v)
        pairs = [bad_pair, (k, v)] if first else [(k, v), bad_pair]
        with pytest.raises(InvalidError):
            self.h[h].update(pairs)
        self._touch(k)

    @rule(h=H, k=K, v=V, given=st.booleans())
    def setdefault(self, h: str, k: Any, v: Any, given: bool) -> None:
        k = k.v
        v = v.v
        d = self.h[h]
        got = d.setdefault(k, v) if given else d.setdefault(k)
        want = self._value(k)
        if want is MISSING:
            want = v if given else None
            self._set(k, want)
        self._touch(k)
        self._check_value(got, want, f"setdefault({short(k)})")

    @rule(h=H, k=K, amount=st.sampled_from(AMOUNTS), via_aio=st.booleans())
    def incr(self, h: str, k: Any, amount: int, via_aio: bool) -> None:
        k = k.v
        d = self.h[h]
        current = self._value(k)
        self._touch(k)
        if current is MISSING or (type(current) is int):
            new = (0 if current is MISSING else current) + amount
            got = asyncio.run(d.incr.aio(k, amount)) if via_aio else d.incr(k, amount)
            assert type(got) is int and got == new, f"incr({short(k)}, {amount}) gave {short(got)}"
            self._set(k, new)
        else:
            with pytest.raises(InvalidError):
                d.incr(k, amount)

    @rule(h=H, k=K, amount=st.sampled_from(BAD_AMOUNTS))
    def incr_bad_amount(self, h: str, k: Any, amount: Any) -> None:
        k = k.v
        with pytest.raises(InvalidError):
            self.h[h].incr(k, amount)
        self._touch(k)

    @rule(h=H, k=K, default=st.sampled_from([None, "dflt", MISSING]), via_aio=st.booleans())
    def pop(self, h: str, k: Any, default: Any, via_aio: bool) -> None:
        k = k.v
        d = self.h[h]
        want = self._value(k)
        self._touch(k)
        args = (k,) if default is MISSING else (k, default)
        if want is MISSING and default is MISSING:
            with pytest.raises(KeyError):
                asyncio.run(d.pop.aio(*args)) if via_aio else d.pop(*args)
            return
        got = asyncio.run(d.pop.aio(*args)) if via_aio else d.pop(*args)
        if want is MISSING:
            want = default
        else:
            del self.model[mkey(k)]
        self._check_value(got, want, f"pop({short(k)})")

    @rule(h=H, k=K)
    def delitem(self, h: str, k: Any) -> None:
        k = k.v
        d = self.h[h]
        present = mkey(k) in self.model
        self._touch(k)
        if not present:
            with pytest.raises(KeyError):
                del d[k]
            return
        del d[k]
        del self.model[mkey(k)]

    @rule(h=H)
    def popitem(self, h: str) -> None:
        d = self.h[h]
        if not self.model:
            with pytest.raises(KeyError):
                d.popitem()
            return
        k, v = d.popitem()
        mk = mkey(k)
        assert mk in self.model, f"popitem gave key {short(k)}, which the model lacks"
        self._check_value(v, self.model[mk][1], f"popitem's value for {short(k)}")
        del self.model[mk]
        self._touch(k)

    @rule(h=H, via_aio=st.booleans())
    def clear(self, h: str, via_aio: bool) -> None:
        if via_aio:
            asyncio.run(self.h[h].clear.aio())
        else:
            self.h[h].clear()
        self.model.clear()

    # -- reads ---------------------------------------------------------------------------
    @rule(h=H, k=K, form=st.sampled_from(["get", "get-default", "getitem", "aio"]))
    def read(self, h: str, k: Any, form: str) -> None:
        k = k.v
        d = self.h[h]
        want = self._value(k)
        self._touch(k)
        if form == "getitem":
            if want is MISSING:
                with pytest.raises(KeyError) as e:
                    d[k]
                assert mkey(e.value.args[0]) == mkey(k)
            else:
                self._check_value(d[k], want, f"d[{short(k)}]")
        elif form == "get":
            self._check_value(d.get(k), None if want is MISSING else want, f"get({short(k)})")
        elif form == "get-default":
            got = d.get(k, default="dflt")
            self._check_value(got, "dflt" if want is MISSING else want, f"get({short(k)}, d)")
        else:
            got = asyncio.run(d.get.aio(k, MISSING))
            assert (got is MISSING) if want is MISSING else same(got, want), short(got)

    @rule(
        h=H,
        k=K,
        v=V,
        form=st.sampled_from(["in", "contains", "keys-view", "items-view", "aio", "unhashable"]),
    )
    def membership(self, h: str, k: Any, v: Any, form: str) -> None:
        k, v = k.v, v.v
        d = self.h[h]
        want = mkey(k) in self.model
        self._touch(k)
        if form == "in":
            got = k in d
        elif form == "contains":
            got = d.contains(k)
        elif form == "keys-view":
            got = k in d.keys()  # noqa: SIM118 - the view's own __contains__
        elif form == "items-view":
            # the stored value, and another one (v, unless it equals the stored one)
            if want:
                assert (k, self.model[mkey(k)][1]) in d.items()
            stored = self.model.get(mkey(k), (None, MISSING))[1]
            got = (k, v) in d.items()
            want = stored is not MISSING and (stored is v or stored == v)
        elif form == "aio":
            got = asyncio.run(d.contains.aio(k))
        else:
            got, want = [k] in d, False  # an unhashable key is in no Dict
        assert got is want, f"{form} {short(k)}: {got}"

    @rule(h=H, form=st.sampled_from(["list", "iter", "views", "aio"]))
    def listing(self, h: str, form: str) -> None:
        d = self.h[h]
        if form == "aio":

            async def collect() -> tuple[list[Any], list[Any], int]:
                keys = [k async for k in d.keys.aio()]
                items = [kv async for kv in d.items.aio()]
                return keys, items, await d.len.aio()

            keys, items, n = asyncio.run(collect())
            values = [v for _, v in items]
        else:
            kv, vv, iv = self.views[h] if form == "views" else (d.keys(), d.values(), d.items())
            keys = list(d) if form == "iter" else list(kv)
            items = list(iv)
            values = list(vv)
            n = len(d) if form != "views" else len(d.items())
            if form == "views":
                assert len(d.keys()) == len(d.values()) == n
        assert n == len(self.model), f"len {n}, model {len(self.model)}"
        got = collections.Counter(map(mkey, keys))
        if got != collections.Counter(list(self.model)):
            extra = [short(k) for k in keys if got[mkey(k)] > 1 or mkey(k) not in self.model]
            lost = [short(k) for mk, (k, _) in self.model.items() if mk not in got]
            raise AssertionError(f"keys() differ: extra or repeated {extra}, missing {lost}")
        assert len(items) == len(self.model)
        for k, v in items:
            mk = mkey(k)
            assert mk in self.model, f"items() has key {short(k)}, the model does not"
            self._check_value(v, self.model[mk][1], f"items()[{short(k)}]")
        same_multiset(values, [v for _, v in self.model.values()], "values()")

    @rule(h=H, other=H)
    def equality(self, h: str, other: str) -> None:
        d = self.h[h]
        keys = [k for k, _ in self.model.values()]
        # One Dict through two handles. Handles of different store URLs (ours: "#b",
        # "#c") are compared by contents, as Python dicts: a NaN key (a new float object
        # on each read) makes them unequal, as it does two Python dicts. Not compared then.
        if all(k == k for k in keys):
            assert d == self.h[other]
        # a Python dict merges 1, 1.0 and True (and 0.0 and -0.0): compare only when the
        # model's keys are distinct for Python too
        if len({k for k in keys if k == k}) == len(keys):
            assert d == {k: v for k, v in self.model.values()}
            assert not (d != {k: v for k, v in self.model.values()})  # noqa: SIM202 - __ne__

    @rule(
        k=K,
        amount=st.sampled_from(AMOUNTS),
        other=H,
        amount2=st.sampled_from(AMOUNTS),
    )
    def incr_whose_answer_was_lost_under_another_incr(
        self, k: Any, amount: int, other: str, amount2: int
    ) -> None:
        """README: "An incr whose answer the network lost counts once and returns its
        own number [...] even under others' increments"."""
        k = k.v
        current = self._value(k)
        self._touch(k)
        if not (current is MISSING or type(current) is int):
            return
        if current is not MISSING and current.bit_length() > 30_000:
            # a pickle of over 4 KiB, stored compressed: its write ids are lost, the defect
            # test_an_incr_whose_answer_was_lost_under_another_incr_counts_once shows (kept
            # out here so that the machine goes on looking for others)
            return
        base = 0 if current is MISSING else current
        self.lossy.meanwhile = lambda: self.h[other].incr(k, amount2)
        try:
            got = self.d.incr(k, amount)
            assert self.lossy.meanwhile is None, "the lossy write never happened"
        finally:
            self.lossy.meanwhile = None
        self._set(k, base + amount + amount2)
        assert got == base + amount, (
            f"incr({short(k)}, {amount}) from {short(base)}, its answer lost while "
            f"{other} added {amount2}: returned {short(got)}, its own write was "
            f"{short(base + amount)}"
        )

    @rule(h=H, often=st.integers(0, 3))
    def delete_the_dict_and_make_it_again(self, h: str, often: int) -> None:
        """README: a handle whose Dict was deleted raises NotFoundError on its next write
        (at once on a local folder, within 2 s on S3); a new Dict under the same name is
        another Dict. Done in one call of this rule in four (it empties the model)."""
        if often:
            return
        for lk in self.locks.values():
            lk.release()
        self.locks.clear()
        Dict.objects.delete(self.name, store=self.bases[h])
        self.dead.extend(self.h.values())
        self.model.clear()
        self._open()

    @precondition(lambda self: self.dead)
    @rule(
        i=st.integers(0, 100),
        k=K,
        v=V,
        op=st.sampled_from(["put", "skip", "update", "incr", "setdefault", "lock"]),
    )
    def write_through_a_dead_handle(self, i: int, k: Any, v: Any, op: str) -> None:
        k, v = k.v, v.v
        d = self.dead[i % len(self.dead)]
        self._touch(k)
        local = d.store.cheap_stat  # every write checked; on S3 at most every 2 s
        try:
            if op == "put":
                d.put(k, v)
            elif op == "skip":
                d.put(k, v, skip_if_exists=True)
            elif op == "update":
                d.update({k: v})
            elif op == "incr":
                d.incr(k, 1)
            elif op == "setdefault":
                d.setdefault(k, v)
            else:
                d.lock("L", lease=30, timeout=0).acquire().release()
        except NotFoundError:
            # "what it wrote since it last found the Dict is removed"; the lock is not made
            left = [o.key for o in d.store.list(f"dicts/{d.object_id}/")]
            assert not left, f"{op} through a handle of a deleted Dict left {left}"
            return
        assert not local, f"{op} through a handle of a deleted Dict did not raise NotFoundError"

    # -- locks ---------------------------------------------------------------------------
    @rule(h=H, name=st.sampled_from(LOCK_NAMES))
    def lock_acquire(self, h: str, name: str) -> None:
        lk = self.h[h].lock(name, lease=30, timeout=0)
        if name in self.locks:
            with pytest.raises(TimeoutError):
                lk.acquire()
            assert not lk.held
            return
        lk.acquire()
        assert lk.held and not lk.lost
        self.locks[name] = lk

    @precondition(lambda self: self.locks)
    @rule(data=st.data())
    def lock_acquire_again_through_its_holder(self, data: Any) -> None:
        name = data.draw(st.sampled_from(sorted(self.locks)))
        with pytest.raises(InvalidError):
            self.locks[name].acquire()
        assert self.locks[name].held

    @precondition(lambda self: self.locks)
    @rule(data=st.data())
    def lock_release(self, data: Any) -> None:
        name = data.draw(st.sampled_from(sorted(self.locks)))
        lk = self.locks.pop(name)
        lk.release()
        assert not lk.held

    # -- invariants ----------------------------------------------------------------------
    @invariant()
    def every_handle_agrees_with_the_model(self) -> None:
        for h, d in self.h.items():
            n = len(d)
            assert n == len(self.model), f"{h}: len {n}, model {len(self.model)}"
            for mk, k in self.touched.items():
                want = self.model.get(mk, (None, MISSING))[1]
                has = k in d
                assert has is (want is not MISSING), f"{h}: `{short(k)} in d` is {has}"
                got = d.get(k, MISSING)
                if want is MISSING:
                    assert got is MISSING, f"{h}: get({short(k)}) gave {short(got)}, model: none"
                else:
                    self._check_value(got, want, f"{h}: get({short(k)})")
        for name, lk in self.locks.items():
            assert lk.held, f"lock {name!r} is no longer held"

    def teardown(self) -> None:
        for lk in self.locks.values():
            lk.release()
        self.locks.clear()
        Dict.objects.delete(self.name, store=self.store)


def run(store: Any, examples: int, steps: int) -> None:
    DictModel.store = store
    run_state_machine_as_test(DictModel, settings=model_settings(examples, steps))


def test_dict_model_three_handles_local(local_store: Any) -> None:
    run(local_store, examples=200, steps=40)


def test_dict_model_three_handles_s3(s3_store: Any) -> None:
    run(s3_store, examples=10, steps=20)


# -- defects found by the machine, reduced ----------------------------------------------

SMALL_AND_BIG = pytest.mark.parametrize(
    "start", [7, BIG_INT], ids=["small-int", "big-compressible-int"]
)


@SMALL_AND_BIG
def test_an_incr_whose_answer_was_lost_under_another_incr_counts_once(
    local_store: Any, start: int
) -> None:
    """README: "An incr whose answer the network lost counts once and returns its own
    number [...] even under others' increments". D's incr lands, its answer is lost, B's
    incr lands on top, D's retry is told "changed" (as S3Store's 412 + read-back says):
    D must find its write id in the entry and return its own sum, not add again."""
    a = Dict.from_name("lost-incr", create_if_missing=True, store=local_store)
    b = Dict.from_id(a.object_id, store=StoreAs(local_store, "b"))
    lossy = LossyStore(local_store, "d")
    d = Dict.from_id(a.object_id, store=lossy)
    a["n"] = start
    lossy.meanwhile = lambda: b.incr("n", 1)
    got = d.incr("n", 1)
    assert lossy.meanwhile is None  # the lost answer happened
    added, returned = a["n"] - start, got - start
    assert added == 2, f"two increments of 1 added {added}"
    assert returned == 1, f"the incr returned start + {returned}, its own write was start + 1"


class IncrAfterClaim(StoreAs):
    """Runs :attr:`meanwhile` (another client's write) right after this client creates a
    pop's claim, before the pop's conditional delete."""

    def __init__(self, inner: Any, tag: str) -> None:
        super().__init__(inner, tag)
        self.meanwhile: Any = None

    def put_if_absent(self, key: str, data: Any) -> bool:
        made = super().put_if_absent(key, data)
        if made and "/claims/" in key and self.meanwhile is not None:
            f, self.meanwhile = self.meanwhile, None
            f()
        return made


@SMALL_AND_BIG
def test_a_pop_racing_an_incr_hands_out_the_value_once(local_store: Any, start: int) -> None:
    """docs/architecture.md: "when a pop's delete finds the claimed version replaced by
    a version whose write ids include the claimed one's newest (an incr built on it), the
    sum counts the value, and the pop takes that version instead". B's incr lands between
    P's claim and P's delete: P must return the sum and leave nothing, never return the
    old value while the sum (which counts it) stays."""
    a = Dict.from_name("pop-incr", create_if_missing=True, store=local_store)
    b = Dict.from_id(a.object_id, store=StoreAs(local_store, "b"))
    hook = IncrAfterClaim(local_store, "p")
    p = Dict.from_id(a.object_id, store=hook)
    a["n"] = start
    hook.meanwhile = lambda: b.incr("n", 1)
    got = p.pop("n")
    assert hook.meanwhile is None  # the incr ran between claim and delete
    left = a.get("n")
    popped, kept = got - start, None if left is None else left - start
    assert (popped, kept) == (1, None), (
        f"pop returned start + {popped} while the Dict still holds start + {kept}: the "
        "value was counted twice"
    )
