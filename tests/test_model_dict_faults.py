"""A model-based (stateful) test of Dict under store faults: two handles on one Dict in a
real SeaweedFS, where handle B talks to the store through the fault proxy
(``tests/faultproxy.py``) and its operations meet 5xx answers, connections dropped
before the server acted, answers lost after it acted, truncated and stalled (timed out)
answers, on the requests a rule chooses: an entry's PUT (plain, create-only or
``If-Match``), a pop's claim PUT, a GET of an entry or a claim, an entry's conditional
DELETE, a HEAD, a LIST, a multi-object DELETE (``clear``), a lock's PUT or GET, or any
request.

* Handle A opens the store directly (never a fault): ``put``, ``put(skip_if_exists)``,
  ``setdefault``, ``incr``, ``pop``, ``del``, ``get`` and locks.
* Handle B (``Dict.from_id`` on a store through the proxy, giving up after 3 attempts
  of a request, so one or two faults are retried away and three make the operation
  fail) does ``put``, ``put(skip_if_exists)``, ``setdefault``, ``update`` of 1-3 keys,
  ``incr``, ``pop``, ``del``, ``get``, ``clear``, and takes and frees locks.
* A fault may run one operation of A *between* two of B's attempts (the proxy's
  ``then``: after the fault, before B hears of it), so B's retry meets a key another
  writer changed, popped or incremented meanwhile.

The model is a plain dict (key -> value; values are unique tuples, ints where ``incr``
made them) and a sequential specification of each operation. After every operation of
B the Dict is read through A (every key's entry and its version; an entry whose version
a pop has claimed is a *ghost*, see below) and must be what one order of the two
operations makes (README "Dicts", docs/architecture.md "Dicts"):

* B's operation that returns did exactly what it says: its result is the
  specification's, in an order with A's interleaved operation (either way round) whose
  result A also got;
* one that raises did it whole or not at all (``update`` excepted: README says a failed
  update "may have written some of its entries", so any subset of its keys is allowed),
  and raises only the package's errors (``KeyError`` from ``del`` of a missing key and
  ``TimeoutError`` from a lock's ``timeout`` being the documented exceptions);
* ``incr`` counts exactly once, also when its answer was lost (under A's increments);
  ``pop`` hands each value out once across A and B (values are unique: every value a pop
  returned is remembered, and none may be handed out again or be read again), and no
  key ever holds a torn value or another key's;
* B never raises with no fault injected; a failed ``update`` wrote at least as many
  entries as its error says (README: "the error says how many");
* locks: one holder at a time across A and B (an acquire of A may run between two of
  B's attempts to acquire or release), an acquire that returned holds the lock's
  object, a release that returned freed it, and a holder's ``held`` stays True.

Allowed and counted, not failed (``seen``, printed at the end of the run with ``-s``):

* documented gaps: an entry whose version a pop has claimed but not deleted (a pop of
  B that raised after its claim, or whose conditional delete failed; a plain put whose
  retry re-wrote a version A had popped) stays readable until the next pop (README "A
  pop stopped between its claim and its delete leaves the entry readable until the
  next pop of that key"): the model finds such *ghosts* by their claim, checks they
  hold a value the key had or was just given, and has A pop them (which must return
  nothing). A create (``put(skip_if_exists)``, ``setdefault``, ``incr``'s first write)
  whose answer was lost and whose value A popped before the retry is created again;
* a plain write (``put``, ``update``, ``clear``'s multi-object DELETE) is retried as
  it is, so after a lost answer it may land twice, around A's operation (the
  documented case is a put landing again after a pop; here also after an incr or a
  create of A that built on the first landing);
* a release that raised may leave the lock taken (it is no longer ``held``): the model
  calls ``release()`` again, which must free it. An acquire that raised must leave
  nothing taken (it frees what its write may have taken), unless the store failed that
  free too (a fault on a read of the lock, or on more of its writes than one request
  tries): then the model frees it, as the lease running out would.

What it found is in ``test_dict_faults_found.py``, one plain case each.

Examples are short (a fresh Dict each); the whole run takes about a minute.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from faultmodel import B_ATTEMPTS, run_model, under_faults
from faultproxy import STALL, FaultProxy
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from jupyter_volume import Dict
from jupyter_volume.errors import InvalidError, NotFoundError, VolumeError

pytestmark = [pytest.mark.slow, pytest.mark.s3, pytest.mark.timeout(900)]

# -- the model's vocabulary -------------------------------------------------------------

KEYS = ["j0", "j1", "n"]
AMOUNTS = [1, 2, -1, 7]
LOCKS = ["L1", "L2"]
LEASE = 30.0  # no lock expires within an example
B_READ_TIMEOUT = 1.0  # a stalled answer costs B this long


class _Sentinel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


MISSING = _Sentinel("MISSING")  # a pop's or get's default: no value
INVALID = _Sentinel("INVALID")  # the operation raises InvalidError (incr of a non-int)
KEYERROR = _Sentinel("KEYERROR")  # the operation raises KeyError (del of a missing key)
FAILED = _Sentinel("FAILED")  # B raised one of the package's errors (a fault)

State = dict[str, Any]
Op = tuple[Any, ...]  # (kind, key, argument)

# request kinds a fault is aimed at: (method, part of the request target) (None: any)
TARGETS: dict[str, tuple[str | None, str | None]] = {
    "entry-put": ("PUT", "/e/"),  # plain, create-only (If-None-Match) or If-Match
    "claim-put": ("PUT", "/claims/"),  # a pop's create-only claim
    "entry-get": ("GET", "/e/"),
    "claim-get": ("GET", "/claims/"),  # a claim read back after a lost answer
    "entry-delete": ("DELETE", "/e/"),  # a pop's conditional delete
    "head": ("HEAD", None),  # exists(): a delete's settling, the Dict's alive check
    "list": ("GET", "list-type=2"),
    "multi-delete": ("POST", "?delete"),  # clear
    "lock-put": ("PUT", "/locks/"),
    "lock-get": ("GET", "/locks/"),
    "any": (None, None),
}
# the targets that B's operations send requests to, by operation (a fault's target is
# drawn from its operation's list)
RELEVANT: dict[str, list[str]] = {
    "put": ["entry-put", "entry-put", "head", "any"],
    "put_skip": ["entry-put", "entry-put", "entry-get", "head", "any"],
    "setdefault": ["entry-put", "entry-put", "entry-get", "head", "any"],
    "update": ["entry-put", "entry-put", "head", "any"],
    "incr": ["entry-put", "entry-put", "entry-get", "head", "any"],
    "pop": ["entry-get", "claim-put", "claim-put", "claim-get", "entry-delete", "entry-delete"]
    + ["head", "any"],
    "get": ["entry-get", "any"],
    "clear": ["list", "multi-delete", "multi-delete", "any"],
    "acquire": ["lock-put", "lock-put", "lock-get", "head", "any"],
    "release": ["lock-put", "lock-put", "lock-get", "any"],
}
RELEVANT["delitem"] = RELEVANT["pop"]


def value_for(key: str, serial: int, size: int) -> Any:
    """A value no other write makes: a tuple naming its key and serial (with an empty,
    a small random or a compressible 6 KB payload), or an int (so pops and puts meet
    incr's counters)."""
    if size == 3:
        return 1000 * serial
    payload = [b"", random.Random(serial).randbytes(100), b"ab" * 3000 + b"%d" % serial][size]
    return (key, serial, payload)


def show(v: Any) -> str:
    if isinstance(v, tuple) and len(v) == 3 and isinstance(v[2], bytes):
        return f"({v[0]!r}, #{v[1]}, {len(v[2])} B)"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k!r}: {show(x)}" for k, x in sorted(v.items())) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(show(x) for x in v) + "]"
    return repr(v)


def same(a: Any, b: Any) -> bool:
    """Equal and of the same type (an int is never a bool here)."""
    return type(a) is type(b) and a == b


def same_state(a: State, b: State) -> bool:
    return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)


# -- the specification ------------------------------------------------------------------


def spec(state: State, op: Op) -> tuple[State, Any]:
    """(the state after ``op``, its result) for one operation run alone."""
    kind, key, arg = op
    s = dict(state)
    if kind == "put":
        s[key] = arg
        return s, True
    if kind == "put_skip":
        if key in s:
            return s, False
        s[key] = arg
        return s, True
    if kind == "setdefault":
        if key in s:
            return s, s[key]
        s[key] = arg
        return s, arg
    if kind == "incr":
        cur = s.get(key, MISSING)
        if cur is MISSING:
            s[key] = arg
        elif type(cur) is int:
            s[key] = cur + arg
        else:
            return s, INVALID
        return s, s[key]
    if kind == "pop":
        return s, s.pop(key, MISSING)
    if kind == "delitem":
        if key not in s:
            return s, KEYERROR
        del s[key]
        return s, None
    if kind == "get":
        return s, s.get(key, MISSING)
    if kind == "update":
        for k, v in arg:
            s[k] = v
        return s, None
    if kind == "clear":
        return {}, None
    raise AssertionError(f"unknown op {kind}")


def run_op(d: Dict, op: Op) -> Any:
    """Run ``op`` on handle ``d``: its result, or INVALID / KEYERROR for those errors
    (other exceptions propagate)."""
    kind, key, arg = op
    try:
        if kind == "put":
            return d.put(key, arg)
        if kind == "put_skip":
            return d.put(key, arg, skip_if_exists=True)
        if kind == "setdefault":
            return d.setdefault(key, arg)
        if kind == "incr":
            return d.incr(key, arg)
        if kind == "pop":
            return d.pop(key, MISSING)
        if kind == "delitem":
            del d[key]
            return None
        if kind == "get":
            return d.get(key, MISSING)
        if kind == "update":
            d.update(arg)
            return None
        if kind == "clear":
            d.clear()
            return None
    except InvalidError:
        return INVALID
    except KeyError:
        return KEYERROR
    raise AssertionError(f"unknown op {kind}")


def show_op(op: Op | None) -> str:
    if op is None:
        return "-"
    kind, key, arg = op
    if kind == "update":
        return f"update({show(dict(arg))})"
    return f"{kind}({key!r}{'' if arg is None else ', ' + show(arg)})"


# -- what a step does, drawn from one seed -----------------------------------------------
# Every step draws one seed and makes its choices with random.Random(seed), with the
# weights below (Hypothesis' own draws favour small values, and its shrinking is off
# here anyway); a failure message spells out what the step did.

Fault = tuple[str, str, int]  # (target, kind, on how many matching requests)
SEED = st.integers(0, 2**32 - 1)
B_WRITES = ["put", "put_skip", "setdefault", "update"]
B_TAKES = ["pop", "pop", "delitem"]
B_OTHERS = ["get", "get", "clear"]
A_KINDS = ["put", "put_skip", "setdefault", "incr", "incr", "pop", "pop", "delitem", "get"]
# A's interleaved operation, by B's: those that meet B's retries in interesting ways
A_MEETS: dict[str, list[str]] = {
    "put": ["pop", "incr", "put", "get", "put_skip", "setdefault"],
    "update": ["pop", "incr", "put", "get", "put_skip", "setdefault"],
    "put_skip": ["pop", "incr", "incr", "incr", "put_skip", "put", "delitem", "setdefault"],
    "setdefault": ["pop", "incr", "incr", "incr", "setdefault", "put", "delitem", "put_skip"],
    "incr": ["pop", "incr", "put", "delitem", "incr", "pop"],
    "pop": ["incr", "pop", "put", "incr", "setdefault", "get"],
    "delitem": ["incr", "pop", "put", "incr", "setdefault", "delitem"],
    "get": ["put", "pop", "incr"],
    "clear": ["put", "pop", "incr", "put_skip"],
}
SIZES = [3, 3, 0, 1, 2]  # 3: an int (so that pops and puts meet incr's counters)


# the request where an operation changes the Dict (a sharp plan's first fault)
MAIN: dict[str, list[str]] = {
    "put": ["entry-put"],
    "put_skip": ["entry-put"],
    "setdefault": ["entry-put"],
    "update": ["entry-put"],
    "incr": ["entry-put"],
    "pop": ["claim-put", "entry-delete"],
    "delitem": ["claim-put", "entry-delete"],
    "get": ["entry-get"],
    "clear": ["multi-delete"],
}
# where a write's retry reads back what happened
READ_BACK: dict[str, str] = {"pop": "claim-get", "delitem": "claim-get", "clear": "list"}


def draw_faults(rng: random.Random, op_kind: str, most: int = 3) -> list[Fault]:
    """Up to ``most`` stages of faults for an operation of ``op_kind`` (each armed once
    the one before has happened): on a request it sends (RELEVANT), of a kind that
    applies there, on the next 1-4 matching requests (3 = all of B's attempts).

    A third of the plans are sharp: the first fault hits the request that changes the
    Dict (MAIN), so that an interleaved operation of A lands between the write and its
    retry; a second stage may then fail the retry's read back (or a pop's re-read)."""
    if most == 3 and rng.random() < 0.35:
        target = rng.choice(MAIN[op_kind])
        if target == "entry-get":
            return [(target, rng.choice(["error500", "truncate", "drop"]), rng.randint(1, 3))]
        kind = rng.choices(["lost_response", "error500", "drop"], weights=[5, 4, 1])[0]
        out = [(target, kind, rng.choices([1, 2, 3], weights=[5, 3, 2])[0])]
        if rng.random() < 0.3:
            read = READ_BACK.get(op_kind, "entry-get")
            if target == "entry-delete":
                read = "entry-get"  # the pop's re-read of what replaced its version
            out.append((read, rng.choice(["error500", "truncate", "drop"]), 3))
        return out
    stages = rng.choices(range(most + 1), weights=[1, 6, 3, 1][: most + 1])[0]
    out = []
    for _ in range(stages):
        target = rng.choice(RELEVANT[op_kind])
        if TARGETS[target][0] == "GET":
            kind = rng.choices(["error500", "truncate", "drop", STALL], weights=[5, 4, 3, 1])[0]
        else:
            kind = rng.choices(["lost_response", "error500", "drop"], weights=[9, 7, 4])[0]
        n = 1 if kind == STALL else rng.choices([1, 2, 3, 4], weights=[4, 3, 3, 1])[0]
        out.append((target, kind, n))
    return out


class DictFaultModel(RuleBasedStateMachine):
    store_a: Any = None
    store_b: Any = None
    proxy: FaultProxy = None  # type: ignore[assignment]
    counter = itertools.count()
    seen: Counter[str] = Counter()  # what the run went through (asserted at its end)
    examples: dict[str, str] = {}  # the first case of each gap or defect met, by label

    def __init__(self) -> None:
        super().__init__()
        self.proxy.clear()
        n = next(self.counter)
        self.name = f"dfaults-{n}-{uuid.uuid4().hex[:6]}"
        self.example, self.steps = n, itertools.count()
        self.a = Dict.from_name(self.name, create_if_missing=True, store=self.store_a)
        self.a.hydrate()
        self.b = Dict.from_id(self.a.object_id, store=self.store_b)
        self.b.hydrate()
        self.state: State = {}
        self.serial = itertools.count(1)
        self.handed_out: list[Any] = []  # every unique value a pop returned
        self.holders: dict[str, tuple[str, Any]] = {}  # lock -> (A or B, its DictLock)

    # -- helpers -------------------------------------------------------------------------
    def _rng(self, seed: int) -> random.Random:
        """The choices of one step: from its seed, the example's number and the step's
        (Hypothesis draws the same few seeds often; the run stays reproducible)."""
        return random.Random(f"{self.example}:{next(self.steps)}:{seed}")

    def _value(self, key: str, size: int) -> Any:
        return value_for(key, next(self.serial), size)

    def _op(self, kind: str, key: str, size: int, amount: int, keys: list[str]) -> Op:
        if kind in ("put", "put_skip", "setdefault"):
            return (kind, key, self._value(key, size))
        if kind == "incr":
            return (kind, key, amount)
        if kind == "update":
            return (kind, None, tuple((k, self._value(k, size)) for k in keys))
        if kind == "clear":
            return (kind, None, None)
        return (kind, key, None)

    def _note_handed_out(self, value: Any, what: str) -> None:
        """A pop returned ``value``: a unique value is handed out once, ever."""
        if value is MISSING or not isinstance(value, tuple):
            return
        assert not any(same(value, h) for h in self.handed_out), (
            f"{what} handed out {show(value)}, which a pop had handed out before"
        )
        self.handed_out.append(value)

    def _actual(self, what: str, written: tuple[Any, ...] = ()) -> State:
        """The Dict read through A: key -> value. Ghosts (an entry whose version a pop
        has claimed) are checked against the model, counted and popped through A (the
        documented way they go), and left out. A ghost holds the value the model had
        at its key, or one that ``written`` (the operations just run) wrote."""
        a, s = self.a, self.store_a
        out: State = {}
        ghosts: dict[str, Any] = {}
        for k in KEYS:
            okey = a._key_object(k)[1]
            try:
                blob, token = s.get_versioned(okey)
            except NotFoundError:
                continue
            value = a._load_value(blob, k)  # DeserializationError: a torn value
            if s.exists(a._claim_key(okey, token)):
                ghosts[k] = value
            else:
                out[k] = value
        n = a.len()
        assert n == len(out) + len(ghosts), f"{what}: len() is {n}, the keys hold {out}"
        for k, v in ghosts.items():
            self.seen["known: a claimed version stayed readable (ghost)"] += 1
            assert any(same(v, w) for w in (self.state.get(k, MISSING), *written)), (
                f"{what}: the claimed (ghost) entry {k!r} holds {show(v)}, a value nobody had there"
            )
            got = a.pop(k, MISSING)
            assert got is MISSING, (
                f"{what}: A's pop of the claimed (ghost) entry {k!r} returned {show(got)}"
            )
        for k, v in out.items():
            assert not any(same(v, h) for h in self.handed_out), (
                f"{what}: key {k!r} holds {show(v)}, a value a pop handed out before"
            )
        return out

    def _b_op(
        self,
        faults: list[Fault],
        then: Callable[[], None] | None,
        fn: Callable[[], Any],
    ) -> tuple[Any, BaseException | None, list[tuple[str, str, str]]]:
        """Run B's operation ``fn`` with ``faults`` armed on the proxy (cleared again
        afterwards): (its result or FAILED, what it raised, the faults injected).
        ``then`` runs at the first fault of the first stage."""
        stages = [(kind, *TARGETS[target], n) for target, kind, n in faults]
        # (a lock's TimeoutError is judged by the rule)
        result, exc, injected = under_faults(
            self.proxy, stages, then, fn, catch=(VolumeError, TimeoutError)
        )
        if exc is not None:
            result = FAILED
        if isinstance(exc, VolumeError) and not injected:
            raise AssertionError(f"B raised with no fault injected: {exc!r}")
        return result, exc, injected

    # -- B's operations, through the proxy -------------------------------------------------
    def _b_step(self, kinds: list[str], rng: random.Random) -> None:
        """One operation of B (of ``kinds``) with faults, maybe with one of A's run
        between two of B's attempts, then checked against the specification."""
        kind = rng.choice(kinds)
        key = rng.choice(KEYS)
        keys = rng.sample(KEYS, rng.randint(1, len(KEYS)))
        op = self._op(kind, key, rng.choice(SIZES), rng.choice(AMOUNTS), keys)
        faults = draw_faults(rng, kind)
        a_op: Op | None = None
        box: dict[str, Any] = {}
        then = None
        if rng.random() < (0.9 if faults and faults[0][0] in MAIN[kind] else 0.5):
            if rng.random() < 0.85:
                a_key = keys[0] if kind == "update" else key
            else:
                a_key = KEYS[(KEYS.index(key) + 1) % len(KEYS)]
            a_kind = rng.choice(A_MEETS[kind])
            a_op = self._op(a_kind, a_key, rng.choice(SIZES), rng.choice(AMOUNTS), [])

            def then() -> None:  # on the proxy's thread, before B hears of the fault
                if "ran" in box:
                    return
                box["ran"] = True
                try:
                    box["result"] = run_op(self.a, a_op)  # type: ignore[arg-type]
                except BaseException as e:  # noqa: BLE001 - reported below
                    box["error"] = e

        before = dict(self.state)
        result, exc, injected = self._b_op(faults, then, lambda: run_op(self.b, op))
        if "error" in box:
            raise AssertionError(f"A's interleaved {show_op(a_op)} failed: {box['error']!r}")
        assert exc is None or isinstance(exc, VolumeError), f"B's {show_op(op)} raised {exc!r}"
        ran = a_op if "ran" in box else None
        what = (
            f"B's {show_op(op)} from {show(before)}, A's interleaved {show_op(ran)} "
            f"(gave {show(box.get('result'))}), faults {injected}, B gave {show(result)}"
            f"{f' and raised {exc!r}' if exc is not None else ''}"
        )
        self._settle(what, before, op, result, ran, box.get("result"))
        if kind == "update" and exc is not None and ran is None:
            self._check_update_error(what, op, exc)
        key_seen = f"{kind}: {'raised' if exc is not None else 'ok'}"
        self.seen[key_seen] += 1
        if ran is not None:
            self.seen["interleaved op of A"] += 1

    def _check_update_error(self, what: str, op: Op, exc: BaseException) -> None:
        """README: a failed update "may have written some of its entries (the error says
        how many)": at least that many hold B's values (a write whose answer was lost
        may have landed too, unknown to the count)."""
        pairs = op[2]
        landed = sum(1 for k, v in pairs if same(self.state.get(k, MISSING), v))
        m = re.search(r"failed after writing (\d+) of (\d+) entries", str(exc))
        if m is None:  # failed after every write returned (the Dict's alive check)
            assert landed == len(pairs), f"{what}: {landed} of {len(pairs)} entries landed"
            return
        done, total = int(m[1]), int(m[2])
        assert total == len(pairs), f"{what}: the error counts {total} entries"
        assert landed >= done, f"{what}: the error says {done} were written, {landed} hold them"
        if landed > done:
            self.seen["update: raised, more written than its error says"] += 1

    # -- the one rule ------------------------------------------------------------------------
    @rule(seed=SEED)
    def step(self, seed: int) -> None:
        """One step, chosen with fixed weights from the seed (Hypothesis' choice among
        several rules is far from even): mostly B's operations with faults."""
        rng = self._rng(seed)
        what = rng.choices(
            ["b-write", "b-incr", "b-take", "b-other", "a", "check", "locks"],
            weights=[22, 16, 20, 8, 12, 4, 18],
        )[0]
        if what == "b-write":
            self._b_step(B_WRITES, rng)
        elif what == "b-incr":
            self._b_step(["incr"], rng)
        elif what == "b-take":
            self._b_step(B_TAKES, rng)
        elif what == "b-other":
            self._b_step(B_OTHERS, rng)
        elif what == "a":
            self._a_op(rng)
        elif what == "check":
            self.check_everything()
        else:
            self._locks(rng)

    def _candidates(
        self, s0: State, b: Op, b_result: Any, a: Op | None
    ) -> list[tuple[str, list[tuple[str, Op]]]]:
        """The orders of B's and A's operations that may explain what happened, each
        (label, [(who, op)]); the label is "" for an order the documents promise."""
        if b_result is FAILED:
            b_variants: list[Op | None] = [None, b]
            if b[0] == "update" and len(b[2]) > 1:
                b_variants += [
                    ("update", None, sub)
                    for n in range(1, len(b[2]))
                    for sub in itertools.combinations(b[2], n)
                ]  # README: a failed update may have written some of its entries
        else:
            b_variants = [b]
        orders: list[tuple[str, list[tuple[str, Op]]]] = []
        for bv in b_variants:
            if a is None:
                orders.append(("", [] if bv is None else [("B", bv)]))
            elif bv is None:
                orders.append(("", [("A", a)]))
            else:
                orders += [("", [("A", a), ("B", bv)]), ("", [("B", bv), ("A", a)])]
        if a is not None and b[0] in ("put", "update", "clear"):
            # a plain write (a PUT, a multi-object DELETE) is retried as it is: when its
            # answer was lost, the retry lands again after A's operation, over what A
            # wrote on top of the first one (the pop of that version is documented: "a
            # plain put whose retry lands after a pop of the same version")
            orders.append(
                (
                    f"at-least-once: {b[0]}'s retry landed again after A's {a[0]}",
                    [("B", b), ("A", a), ("B", b)],
                )
            )
        if a is not None and a[1] == b[1] and a[0] in ("pop", "delitem"):
            if b[0] in ("put_skip", "setdefault") or (b[0] == "incr" and b[1] not in s0):
                # docs/architecture.md: "a create whose answer was lost and whose value
                # another worker popped completely before the create's retry is created
                # again"
                orders.append(
                    (
                        "known: a create popped before its retry was made again",
                        [("B", b), ("A", a), ("B", b)],
                    )
                )
        return orders

    def _evaluate(self, s0: State, order: list[tuple[str, Op]]) -> tuple[State, dict[str, Any]]:
        """Run ``order`` from ``s0``: (the final state, the last result of A and of B)."""
        state = dict(s0)
        results: dict[str, Any] = {}
        for who, op in order:
            state, results[who] = spec(state, op)
        return state, results

    def _settle(
        self, what: str, s0: State, b: Op, b_result: Any, a: Op | None, a_result: Any
    ) -> None:
        written = [
            x
            for op in (b, a)
            if op is not None and op[0] in ("put", "put_skip", "setdefault", "update")
            for x in ([v for _, v in op[2]] if op[0] == "update" else [op[2]])
        ]
        for op, got in ((b, b_result), (a, a_result)):
            if op is not None and op[0] == "incr":  # what its writes may have stored
                cur = s0.get(op[1], 0)
                written += [got, op[2]] + ([cur + op[2]] if type(cur) is int else [])
        actual = self._actual(what, tuple(written))
        tried = []
        for label, order in self._candidates(s0, b, b_result, a):
            final, results = self._evaluate(s0, order)
            ok = same_state(actual, final)
            if a is not None and not same(results.get("A"), a_result):
                ok = False
            if b_result is not FAILED and not same(results.get("B"), b_result):
                ok = False
            if ok:
                self.state = actual
                popped = []
                if b[0] == "pop" and b_result is not FAILED:
                    popped.append((b_result, f"B's pop ({what})"))
                if a is not None and a[0] == "pop":
                    popped.append((a_result, f"A's interleaved pop ({what})"))
                for value, who in popped:
                    if label and any(same(value, v) for v in actual.values()):
                        continue  # made again by the create's retry: the gap's own effect
                    self._note_handed_out(value, who)
                if label:
                    self.seen[label] += 1
                    self.examples.setdefault(label, what)
                if b[0] == "incr" and b_result is FAILED and ("B", b) in order:
                    self.seen["incr: raised, counted"] += 1
                return
            tried.append(
                f"{label or 'order'} {[f'{w}:{show_op(o)}' for w, o in order]} -> "
                f"{show(final)}, results {show({w: r for w, r in results.items()})}"
            )
        raise AssertionError(
            f"{what}: the Dict holds {show(actual)}, which no order explains:\n  "
            + "\n  ".join(tried)
        )

    # -- A's operations (direct, no faults) -------------------------------------------------
    def _a_op(self, rng: random.Random) -> None:
        kind = rng.choice(A_KINDS)
        op = self._op(kind, rng.choice(KEYS), rng.choice(SIZES), rng.choice(AMOUNTS), [])
        want_state, want = spec(self.state, op)
        got = run_op(self.a, op)
        assert same(got, want), (
            f"A's {show_op(op)} from {show(self.state)}: {show(got)}, model {show(want)}"
        )
        if kind == "pop":
            self._note_handed_out(got, f"A's {show_op(op)}")
        self.state = want_state

    def check_everything(self) -> None:
        actual = self._actual("check")
        assert same_state(actual, self.state), (
            f"the Dict holds {show(actual)}, the model {show(self.state)}"
        )
        for k in KEYS:
            got = self.b.get(k, MISSING)
            assert same(got, self.state.get(k, MISSING)), f"B's get({k!r}): {show(got)}"

    # -- locks -------------------------------------------------------------------------------
    def _lock_key(self, name: str) -> str:
        return f"dicts/{self.a.object_id}/locks/" + self.a._key_object(name)[1].rsplit("/", 1)[-1]

    def _lock_holder(self, name: str, **others: Any) -> str | None:
        """Who holds lock ``name`` by its object in the store: "A" or "B" (a holder the
        model knows, or one of ``others``: who -> DictLock), None (free or missing) or
        "orphan" (an owner no handle knows)."""
        try:
            data = json.loads(self.store_a.get(self._lock_key(name)))
        except NotFoundError:
            return None
        if data.get("free"):
            return None
        owners: dict[str, str] = {}
        for who, lk in [*self.holders.values(), *others.items()]:
            if lk is not None and lk._renewer is not None:
                owners[lk._renewer.owner["owner"]] = who
        return owners.get(data.get("owner"), "orphan")

    def _locks(self, rng: random.Random) -> None:
        """One step of the locks: B's acquire or release with faults, or A's acquire or
        release. (No precondition anywhere: what a rule draws must not depend on what
        the faults did, or Hypothesis finds its data generation flaky.)"""
        name = rng.choice(LOCKS)
        held = self.holders.get(name)
        what = rng.choices(["b", "a"], weights=[4, 1])[0]
        if what == "a" or (held is not None and held[0] == "A" and rng.random() < 0.5):
            self._a_lock(name)
        elif held is not None and held[0] == "B":
            self._b_release(rng, name)
        else:
            self._b_acquire(rng, name)

    def _b_acquire(self, rng: random.Random, name: str) -> None:
        faults = draw_faults(rng, "acquire", most=2)
        a_too = rng.random() < 0.5
        prior = self.holders.get(name)
        if prior is not None and prior[0] == "B":
            return  # (a second acquire of a held DictLock is the fault-free model's)
        lk = self.b.lock(name, lease=LEASE, timeout=0)
        a_lock = self.a.lock(name, lease=LEASE, timeout=0)
        box: dict[str, Any] = {}
        then = _acquire_between(a_lock, box, a_too and prior is None)
        result, exc, injected = self._b_op(faults, then, lambda: lk.acquire())
        a_got = box.get("got", False)
        holder = self._lock_holder(name, B=lk, A=a_lock)
        what = (
            f"B's acquire of {name!r} (held by {prior[0] if prior else None}; A's "
            f"interleaved acquire {'ran' if 'ran' in box else 'no'}, took it: {a_got}), "
            f"faults {injected}, raised {exc!r}, holder now {holder}"
        )
        b_got = exc is None
        assert not (a_got and b_got), f"{what}: both A and B hold the lock"
        if a_got:
            self.holders[name] = ("A", a_lock)
            assert a_lock.held, what
        if prior is not None:
            assert not b_got, f"{what}: B took a held lock"
            assert holder == prior[0], what
            self.seen[f"lock: acquire of a held lock {type(exc).__name__}"] += 1
            return
        if b_got:
            assert holder == "B" and lk.held and not lk.lost, what
            self.holders[name] = ("B", lk)
            self.seen["lock: B acquired"] += 1
            return
        if isinstance(exc, TimeoutError):
            assert a_got and holder == "A", f"{what}: B timed out on a free lock"
            self.seen["lock: B timed out behind A's interleaved acquire"] += 1
            return
        # a failed acquire: nothing taken (what its write took, it freed), or taken by
        # A meanwhile; or its write landed and the store failed the free as well (a
        # fault on a read of the lock, or on more writes than one request's attempts)
        on_lock = [m for m, path, _kind in injected if "/locks/" in path]
        free_failed = "GET" in on_lock or on_lock.count("PUT") > B_ATTEMPTS
        assert (
            holder is None or (holder == "A" and a_got) or (holder == "orphan" and free_failed)
        ), what
        self.seen["lock: B's acquire raised"] += 1
        if holder == "orphan":
            # as its lease running out would
            self.store_a.put(self._lock_key(name), b'{"free": true}')
            self.seen["lock: B's acquire raised, its free failed too"] += 1

    def _b_release(self, rng: random.Random, name: str) -> None:
        faults = draw_faults(rng, "release", most=2)
        a_too = rng.random() < 0.5
        _, lk = self.holders[name]
        assert lk.held, f"B's lock {name!r} is no longer held"
        a_lock = self.a.lock(name, lease=LEASE, timeout=0)
        box: dict[str, Any] = {}
        then = _acquire_between(a_lock, box, a_too)
        result, exc, injected = self._b_op(faults, then, lk.release)
        del self.holders[name]
        holder = self._lock_holder(name, A=a_lock, B=lk)
        what = (
            f"B's release of {name!r} (A's interleaved acquire "
            f"{'ran' if 'ran' in box else 'no'}, took it: {box.get('got')}), faults "
            f"{injected}, raised {exc!r}, holder now {holder}"
        )
        assert not lk.held, what
        if box.get("got"):
            assert holder == "A", f"{what}: A took the lock but does not hold its object"
            self.holders[name] = ("A", a_lock)
            return
        if exc is None:
            assert holder is None, f"{what}: released, yet the lock is held"
            self.seen["lock: B released"] += 1
            return
        assert holder in (None, "orphan"), what
        self.seen["lock: B's release raised"] += 1
        lk.release()  # the faults are gone: a release that raised can be called again
        assert self._lock_holder(name) is None, f"{what}: a second release left it held"

    def _a_lock(self, name: str) -> None:
        held = self.holders.get(name)
        if held is not None and held[0] == "A":
            held[1].release()
            del self.holders[name]
            assert self._lock_holder(name) is None
            return
        lk = self.a.lock(name, lease=LEASE, timeout=0)
        if held is not None:
            with pytest.raises(TimeoutError):
                lk.acquire()
            return
        lk.acquire()
        self.holders[name] = ("A", lk)

    @invariant()
    def holders_hold(self) -> None:
        for name, (who, lk) in self.holders.items():
            assert lk.held and not lk.lost, f"{who}'s lock {name!r} is no longer held"

    def teardown(self) -> None:
        self.proxy.clear()
        try:
            if sys.exc_info()[0] is None:  # (not after a failed step: its error is the one)
                self.check_everything()
        finally:
            for _, lk in self.holders.values():
                lk.release()
            self.holders.clear()
            Dict.objects.delete(self.name, store=self.store_a)


def _acquire_between(a_lock: Any, box: dict[str, Any], wanted: bool) -> Callable[[], None]:
    """A ``then`` for B's lock operation: if ``wanted``, A's ``a_lock.acquire()`` once,
    between two of B's attempts; ``box`` says whether it ran ("ran") and took the lock
    ("got")."""

    def then() -> None:
        if "ran" in box or not wanted:
            return
        box["ran"] = True
        try:
            a_lock.acquire()
            box["got"] = True
        except TimeoutError:
            box["got"] = False

    return then


def run(seaweedfs: Any, s3_bucket: str, s3_store: Any, examples: int, steps: int) -> None:
    DictFaultModel.examples.clear()
    seen, _counts = run_model(
        DictFaultModel,
        seaweedfs,
        s3_bucket,
        s3_store,
        seed=7,
        examples=examples,
        steps=steps,
        read_timeout=B_READ_TIMEOUT,
    )
    for label, what in sorted(DictFaultModel.examples.items()):
        print(f"first case of {label!r}: {what}")
    # B's operations failed in each way
    assert seen["interleaved op of A"] >= 8, seen


def test_dict_fault_model_s3(seaweedfs: Any, s3_bucket: str, s3_store: Any) -> None:
    run(seaweedfs, s3_bucket, s3_store, examples=70, steps=30)
