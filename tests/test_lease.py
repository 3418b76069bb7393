"""Leases on both stores: the store's clock, renewal, expiry, stop."""

from __future__ import annotations

import time
from typing import Any

import pytest

from jupyter_volume.errors import InvalidError
from jupyter_volume.lease import (
    CLOCK_PREFIX,
    MIN_INTERVAL,
    Lease,
    expired,
    is_expired,
    store_now,
)
from jupyter_volume.store.base import ObjectInfo, Store

pytestmark = pytest.mark.timeout(120)


def wait_store_time(store: Store, until: float) -> float:
    """Poll the store's clock (not this machine's) until it reads past ``until``."""
    while True:
        now = store_now(store)
        if now > until:
            return now
        time.sleep(0.25)


def test_store_now_is_the_stores_stamp(store: Store) -> None:
    before = store_now(store)
    store.put("x", b"1")
    stamped = store.stat("x").mtime
    after = store_now(store)
    # all three stamps come from the same clock, in the order they were made
    assert before <= stamped <= after
    assert list(store.list(CLOCK_PREFIX)) == []  # probes are cleaned up


def test_lease_renews_and_stop_deletes(store: Store) -> None:
    lease = Lease(store, "leases/mine", ttl=1.5, payload=b"owner-1")
    with lease:
        assert store.get("leases/mine") == b"owner-1"
        first = store.stat("leases/mine").mtime
        while lease.renewals < 3:  # a third of the ttl apart; no wall-clock threshold
            time.sleep(0.1)
        assert lease.alive and lease.last_error is None
        # whole-second stamps on S3: after three renewals 1.5 s apart the stamp moved
        wait_store_time(store, first + 1.0)
        renewals = lease.renewals
        while lease.renewals == renewals:
            time.sleep(0.1)
        assert store.stat("leases/mine").mtime > first
    assert not lease.alive
    assert not store.exists("leases/mine")
    # stop(delete=False) leaves the object for others to judge
    kept = Lease(store, "leases/kept", ttl=5).start()
    kept.stop(delete=False)
    assert store.exists("leases/kept")


def test_a_tiny_lease_is_renewed_a_few_times_a_second_and_stays_live(store: Store) -> None:
    # ttl / 3 of a 0.003 s lease had its thread rewrite the object every millisecond (a
    # request storm on S3). Renewals are now MIN_INTERVAL apart at least, which the one
    # second of slack every expiry test grants covers: the lease stays live throughout.
    lease = Lease(store, "leases/tiny", ttl=0.003)
    start = time.monotonic()
    with lease:
        born = store.stat("leases/tiny").mtime
        wait_store_time(store, born + 2.5)
        renewals, elapsed = lease.renewals, time.monotonic() - start
        assert expired(store, "leases/", ttl=0.003) == []
    # an upper bound only: a slow machine renews less often, never more
    assert 1 <= renewals <= elapsed / MIN_INTERVAL + 1, (renewals, elapsed)


def test_expired_by_the_stores_clock(store: Store) -> None:
    store.put("leases/dead", b"")  # written once, never renewed: its owner "died"
    dead_at = store.stat("leases/dead").mtime
    with Lease(store, "leases/live", ttl=2.0):
        assert expired(store, "leases/", ttl=2.0) == []  # both fresh
        wait_store_time(store, dead_at + 2.0 + 1.0)
        stale = expired(store, "leases/", ttl=2.0)
    assert [i.key for i in stale] == ["leases/dead"]
    assert expired(store, "nothing/", ttl=1.0) == []


def test_is_expired_needs_the_slack() -> None:
    info = ObjectInfo("k", 0, 100.0)
    assert not is_expired(info, 101.9, ttl=1.0)  # one whole second of stamp resolution
    assert is_expired(info, 102.1, ttl=1.0)


def test_bad_lease_arguments(local_store: Store) -> None:
    with pytest.raises(InvalidError):
        Lease(local_store, "leases/x", ttl=0)
    with pytest.raises(InvalidError):
        Lease(local_store, "/leases/x")


@pytest.mark.parametrize("ttl", [float("inf"), float("nan"), 1e300, -1.0, "30", True])
def test_a_ttl_the_renewal_thread_cannot_wait_is_refused(local_store: Store, ttl: Any) -> None:
    # an infinite or astronomically long ttl used to be accepted, and the renewal thread
    # then died at once with an OverflowError traceback (its wait cannot be that long);
    # a string failed with a bare TypeError
    with pytest.raises(InvalidError, match="ttl"):
        Lease(local_store, "leases/x", ttl=ttl)
