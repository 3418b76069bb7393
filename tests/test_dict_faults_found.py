"""What the Dict fault model (test_model_dict_faults.py) found, reduced to one plain
case each, with the real fault proxy (``tests/faultproxy.py``) in front of SeaweedFS.

Handle A talks to the store directly; handle B through the proxy, whose store gives up
after 3 attempts of a request (as in the model). Each fault is forced on one request,
and A's operation runs on the proxy's thread between B's attempts (``then``), so every
case is deterministic:

* an ``incr`` whose answer was lost and whose sum A popped before the retry counts
  twice (the model's "found: an incr whose sum was popped before its retry");
* a ``pop`` whose version A's ``incr`` replaced, and whose re-read of the entry (or
  its conditional delete) then fails, returns the value the sum still counts ("found:
  a pop whose delete or re-read failed after an incr");
* ``put(skip_if_exists=True)`` / ``setdefault`` whose create landed unheard and was
  then incremented is told it did not create ("found: a create whose answer was lost
  and whose value was incremented");
* a lock whose ``acquire`` raised after taking it, or whose ``release`` raised, stays
  taken by nobody for a whole lease, and a second ``release()`` does nothing (the
  model's "lock left held by nobody after ...")."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from faultproxy import FaultProxy, store_through

from jupyter_volume import Dict
from jupyter_volume.errors import VolumeError

pytestmark = [pytest.mark.s3, pytest.mark.timeout(300)]


@pytest.fixture
def proxy(seaweedfs: Any) -> Iterator[FaultProxy]:
    with FaultProxy(seaweedfs.endpoint, seed=5) as p:
        yield p


@pytest.fixture
def handles(
    proxy: FaultProxy, seaweedfs: Any, s3_bucket: str, s3_store: Any
) -> Iterator[tuple[Dict, Dict, str]]:
    """(A: direct, B: through the proxy, B's entry path fragment for key "n")."""
    store_b = store_through(proxy, seaweedfs, s3_bucket, s3_store.prefix, read_timeout=5)
    store_b.max_attempts = 3
    a = Dict.from_name(f"found-{uuid.uuid4().hex[:8]}", create_if_missing=True, store=s3_store)
    b = Dict.from_id(a.object_id, store=store_b)
    b.hydrate()
    entry = a._key_object("n")[1].rsplit("/", 1)[-1]
    try:
        yield a, b, f"/e/{entry}"
    finally:
        proxy.clear()
        store_b.close()


def test_an_incr_whose_answer_was_lost_and_whose_sum_was_popped_counts_once(
    proxy: FaultProxy, handles: tuple[Dict, Dict, str]
) -> None:
    """README: "An incr whose answer the network lost counts once and returns its own
    number". B's ``incr("n")`` (5 -> 6, an ``If-Match`` write, not a create) lands, its
    answer is lost, and A pops the key (gets 6, which counts B's +1) before B's retry.
    The retry's ``If-Match`` finds no object (412), the read-back finds the key absent,
    so ``incr`` takes the key for never written and starts it afresh at 1: B's +1 is
    counted twice (in the 6 A popped and in the 1 left), and B returns 1, not its own 6.
    (The documented gap covers only a *create* whose value was popped before its retry:
    here the key existed, and the write was an update.)"""
    a, b, entry = handles
    a["n"] = 5
    popped: list[Any] = []
    proxy.force(
        "lost_response", method="PUT", path_contains=entry, then=lambda: popped.append(a.pop("n"))
    )
    got = b.incr("n", 1)
    assert popped == [6], popped  # B's write landed; A popped its sum
    left = a.get("n")
    assert (got, left) == (6, None), (
        f"B's incr returned {got} and left {left!r} after A popped 6 (= 5 + B's +1): "
        "B's increment was counted twice"
    )


def test_a_pop_whose_reread_fails_after_an_incr_hands_out_no_value_twice(
    proxy: FaultProxy, handles: tuple[Dict, Dict, str]
) -> None:
    """docs/architecture.md: when a pop's delete finds the claimed version replaced by
    an incr built on it, "the sum counts the value, and the pop takes that version
    instead". B pops "n" (5): its claim lands, then A's ``incr("n")`` makes 6 on top of
    5, so B's conditional delete answers 412. B then reads the entry again to see what
    replaced it, and that read fails (500, 3 attempts). ``_end_owned`` catches the
    error and takes the version for B's all the same: ``pop`` returns 5 while the entry
    holds 6, which counts those 5 again (a value handed out twice). (The same happens
    when the conditional delete itself fails after A's incr: the ``except VolumeError``
    of ``_end_owned`` covers both, and returns "owned".)"""
    a, b, entry = handles
    a["n"] = 5

    def a_incr_then_fail_the_reread() -> None:
        assert a.incr("n", 1) == 6
        proxy.force("error500", method="GET", path_contains=entry, n=3)

    # B's conditional DELETE of the entry: 412 (A's incr replaced it). Its first attempt
    # answers 500 without reaching the server, and A's incr runs then.
    proxy.force("error500", method="DELETE", path_contains=entry, then=a_incr_then_fail_the_reread)
    try:
        got: Any = b.pop("n")
    except VolumeError as e:  # the fix: not settled, so not handed out
        got = e
    left = a.get("n")
    assert not (got == 5 and left == 6), (
        "B's pop returned 5 while the Dict holds 6 (A's incr on those 5): the value 5 "
        "was counted twice"
    )


@pytest.mark.parametrize("how", ["put_skip_if_exists", "setdefault"])
def test_a_create_whose_answer_was_lost_and_whose_value_was_incremented_is_told_it_created(
    proxy: FaultProxy, handles: tuple[Dict, Dict, str], how: str
) -> None:
    """README: ``put(key, value, skip_if_exists=True)`` is "first writer wins: True for
    exactly one", and ``setdefault`` gives "that writer's value" to the one that wrote.
    B creates "n" = 5 (its create-only PUT lands, the answer is lost); A then finds the
    key there and increments it to 6 before B's retry. The retry's ``If-None-Match``
    answers 412 and the store settles it by comparing bytes: 6 is not B's 5, so B is
    told another writer created the key (``put`` returns False, ``setdefault`` returns
    6, a value B never wrote and nobody else created). Nobody won the create, though
    the entry's write ids (A's incr keeps B's) say it was B's."""
    a, b, entry = handles
    seen: list[Any] = []

    def a_races() -> None:
        seen.append(a.put("n", 9, skip_if_exists=True))  # the key exists: False
        seen.append(a.incr("n", 1))

    proxy.force("lost_response", method="PUT", path_contains=entry, then=a_races)
    got = (
        b.put("n", 5, skip_if_exists=True) if how == "put_skip_if_exists" else b.setdefault("n", 5)
    )
    assert seen == [False, 6], seen  # B's create landed first; A lost the race, then added 1
    want = True if how == "put_skip_if_exists" else 5
    assert got == want, (
        f"B's {how} created the key (A's create lost to it and A's incr counted on it), "
        f"yet B was told {got!r}: no writer won the create"
    )


def test_an_acquire_that_raises_after_taking_the_lock_leaves_it_free(
    proxy: FaultProxy, handles: tuple[Dict, Dict, str]
) -> None:
    """B's ``lock("L").acquire()`` creates the lock object (its create-only PUT is
    answered: B knows it took the lock), then checks that its Dict still exists (at
    most every 2 s on S3: a HEAD of the config), and that HEAD fails (500, 3 attempts).
    ``DictLock._check_dict`` removes the lock it just took only on NotFoundError, so the
    StoreError leaves the object behind with no renewer and no handle that can release
    it: every other worker waits a whole lease (30 s here) for a lock nobody holds."""
    a, b, _entry = handles
    b._alive.at = 0.0  # the alive check is due (as 2 s after the handle's last one)
    proxy.force("error500", method="HEAD", path_contains="/config", n=3)
    lk = b.lock("L", lease=30, timeout=0)
    with pytest.raises(VolumeError):
        lk.acquire()
    assert not lk.held
    _assert_free(a, "B's acquire raised, yet the lock stays taken (until its lease ends)")


def test_a_release_that_raised_can_be_retried(
    proxy: FaultProxy, handles: tuple[Dict, Dict, str]
) -> None:
    """B holds lock "L"; its ``release()`` fails (the conditional PUT of the free mark
    answers 500 three times) and raises. ``DictLock.release`` has already stopped the
    renewals and dropped its renewer, so calling ``release()`` again does nothing: the
    lock stays taken, renewed by nobody, for a whole lease (30 s here), and no handle
    can free it."""
    a, b, _entry = handles
    lk = b.lock("L", lease=30, timeout=0)
    lk.acquire()
    proxy.force("error500", method="PUT", path_contains="/locks/", n=3)
    with pytest.raises(VolumeError):
        lk.release()
    lk.release()  # the faults are gone: try again
    _assert_free(a, "B's release failed once and again did nothing: the lock stays taken")


def _assert_free(a: Dict, taken: str) -> None:
    """A can take lock "L" at once (and gives it back); else the test fails with ``taken``."""
    other = a.lock("L", lease=30, timeout=0)
    try:
        other.acquire()
    except TimeoutError:
        pytest.fail(taken)
    other.release()
