"""S3Store through a fault-injecting proxy: every operation survives 500s, dropped
connections, lost responses and truncated bodies, and put_if_absent tells a create
whose response was lost from one that lost the race."""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from jupyter_volume import Dict
from jupyter_volume.errors import NotFoundError, StoreError
from jupyter_volume.store.s3 import MULTIPART_THRESHOLD, S3Store
from jupyter_volume.testing.seaweedfs import SeaweedFS

try:
    from .faultproxy import BITFLIP, KINDS, NOT_IMPLEMENTED, FaultProxy, store_through
except ImportError:  # tests/ is not a package
    from faultproxy import (  # type: ignore[no-redef]
        BITFLIP,
        KINDS,
        NOT_IMPLEMENTED,
        FaultProxy,
        store_through,
    )

pytestmark = pytest.mark.s3


@pytest.fixture
def proxy(seaweedfs: SeaweedFS) -> Iterator[FaultProxy]:
    """A fault proxy in front of the session's SeaweedFS (no random faults by default)."""
    with FaultProxy(seaweedfs.endpoint, seed=20240601) as p:
        yield p


@pytest.fixture
def proxied_store(proxy: FaultProxy, seaweedfs: SeaweedFS, s3_bucket: str) -> Iterator[S3Store]:
    """An S3Store that talks to SeaweedFS through ``proxy``, with quick backoff."""
    store = store_through(proxy, seaweedfs, s3_bucket, f"t/faults-{uuid.uuid4().hex[:10]}")
    yield store
    store.close()


def test_proxy_relays_faithfully(proxy: FaultProxy, proxied_store: S3Store) -> None:
    proxied_store.put("a", b"alpha")
    assert proxied_store.get("a") == b"alpha"
    assert proxied_store.get_range("a", 1, 3) == b"lph"
    assert [o.key for o in proxied_store.list()] == ["a"]
    assert proxied_store.put_if_absent("a", b"beta") is False
    proxied_store.delete(["a"])
    assert not proxied_store.exists("a")
    assert proxy.counts["requests"] == proxy.counts["forwarded"] >= 7
    assert not any(proxy.counts[k] for k in KINDS)


@pytest.mark.parametrize("kind", ["error500", "drop"])
def test_faults_are_real(proxy: FaultProxy, proxied_store: S3Store, kind: str) -> None:
    """Without retries, one injected fault fails the call: the proxy is no placebo."""
    proxied_store.max_attempts = 1
    proxy.force(kind, method="PUT")
    with pytest.raises(StoreError) as info:
        proxied_store.put("k", b"data")
    message = str(info.value)
    assert proxy.url in message and proxied_store.bucket in message and "'k'" in message
    assert proxy.counts[kind] == 1
    assert proxy.counts["requests"] == 1  # botocore itself must not retry


def test_retries_exhausted(proxy: FaultProxy, proxied_store: S3Store) -> None:
    proxy.fault_rate = 1.0
    proxied_store.max_attempts = 4
    with pytest.raises(StoreError, match=r"after 4 attempts; last error") as info:
        proxied_store.get("some/key")
    assert not isinstance(info.value, NotFoundError)
    assert proxy.url in str(info.value) and "'some/key'" in str(info.value)
    assert proxy.counts["requests"] == 4
    # the last error in the store's words, not botocore's (whose "reached max retries:
    # 0" contradicts the four attempts just made)
    assert "max retries" not in str(info.value) and "An error occurred" not in str(info.value)
    assert "InternalError" in str(info.value)


def test_put_if_absent_lost_response_reports_true(
    proxy: FaultProxy, proxied_store: S3Store, seaweedfs: SeaweedFS
) -> None:
    """The create lands, its response is lost, the retry sees 412: still True."""
    proxy.force("lost_response", method="PUT")
    assert proxied_store.put_if_absent("log/0001", b"commit one") is True
    assert proxy.counts["lost_response"] == 1
    puts = [entry for entry in proxy.log if entry[0] == "PUT"]
    assert [outcome for _m, _t, outcome in puts] == ["lost_response", "ok"]  # 2nd got 412
    raw = seaweedfs.client().get_object(
        Bucket=proxied_store.bucket, Key=f"{proxied_store.prefix}/log/0001"
    )
    assert raw["Body"].read() == b"commit one"
    # a competitor's object under the same key is still reported as lost
    proxy.force("lost_response", method="PUT")
    assert proxied_store.put_if_absent("log/0001", b"commit two") is False
    assert proxy.counts["lost_response"] == 2
    assert proxied_store.get("log/0001") == b"commit one"


def test_put_if_absent_500_after_landing(proxy: FaultProxy, proxied_store: S3Store) -> None:
    """A lost response followed by a 500 and then a 412 is still recognized as ours."""
    proxy.force("lost_response", method="PUT")
    proxy.force("error500", method="PUT")
    assert proxied_store.put_if_absent("k", b"mine") is True
    assert (proxy.counts["lost_response"], proxy.counts["error500"]) == (1, 1)


def test_truncated_body_is_retried(proxy: FaultProxy, proxied_store: S3Store) -> None:
    data = random.Random(3).randbytes(3 << 20)
    proxied_store.put("obj", data)
    proxy.force("truncate", method="GET")
    assert proxied_store.get("obj") == data
    proxy.force("truncate", method="GET")
    assert proxied_store.get_range("obj", 1000, 100_000) == data[1000:101_000]
    assert proxy.counts["truncate"] == 2


def test_bitflips_damage_exactly_one_bit_of_chosen_answers(
    proxy: FaultProxy, proxied_store: S3Store
) -> None:
    """The store cannot see the damage (status and length intact): callers must check."""
    data = random.Random(8).randbytes(4096)
    proxied_store.put("vols/x/trees/ab/obj", data)
    proxied_store.put("vols/x/log/1", data)
    proxy.flip(2, path_contains="/trees/")
    for _ in range(2):
        got = proxied_store.get("vols/x/trees/ab/obj")
        diff = int.from_bytes(got, "big") ^ int.from_bytes(data, "big")
        assert len(got) == len(data) and diff.bit_count() == 1
    assert proxied_store.get("vols/x/log/1") == data  # not matched
    assert proxied_store.get("vols/x/trees/ab/obj") == data  # only the next two
    assert proxy.counts[BITFLIP] == 2 and proxy.pending_flips() == 0
    proxy.flip(path_contains="/trees/", at_byte=1000)
    got = proxied_store.get("vols/x/trees/ab/obj")
    assert [i for i in range(len(data)) if got[i] != data[i]] == [1000]
    proxy.counts[BITFLIP] -= 1
    assert [o.key for o in proxied_store.list("vols/")]  # listings are never damaged

    proxy.flip_rate, proxy.flip_match = 0.5, ("/log/",)
    results = [proxied_store.get_range("vols/x/log/1", 100, 1000) for _ in range(40)]
    damaged = sum(r != data[100:1100] for r in results)
    assert 5 < damaged < 35 and proxy.counts[BITFLIP] == 2 + damaged
    assert all(proxied_store.get("vols/x/trees/ab/obj") == data for _ in range(5))


def test_multipart_lost_completion(proxy: FaultProxy, proxied_store: S3Store) -> None:
    data = random.Random(5).randbytes(MULTIPART_THRESHOLD + (3 << 20))
    proxy.force("lost_response", method="POST", path_contains="uploadId=")
    proxy.force("drop", method="PUT", path_contains="partNumber=2")
    proxied_store.put("big", data)
    assert (proxy.counts["lost_response"], proxy.counts["drop"]) == (1, 1)
    assert proxied_store.stat("big").size == len(data)
    assert proxied_store.get("big") == data


def test_failed_multipart_is_aborted(
    proxy: FaultProxy, proxied_store: S3Store, seaweedfs: SeaweedFS
) -> None:
    proxied_store.max_attempts = 2
    proxy.force("error500", method="PUT", path_contains="partNumber=2", n=2)
    with pytest.raises(StoreError, match="after 2 attempts"):
        proxied_store.put("doomed", bytes(MULTIPART_THRESHOLD + 1))
    assert proxy.counts["error500"] == 2
    assert any(m == "DELETE" and "uploadId=" in t for m, t, _o in proxy.log)  # the abort
    uploads = seaweedfs.client().list_multipart_uploads(
        Bucket=proxied_store.bucket, Prefix=proxied_store.prefix
    )
    assert uploads.get("Uploads", []) == []
    assert not proxied_store.exists("doomed")


def test_random_faults(proxy: FaultProxy, proxied_store: S3Store) -> None:
    """A seeded mix of every operation with ~20% of requests failing."""
    proxy.fault_rate = 0.2
    store = proxied_store
    rng = random.Random(99)
    expected: dict[str, bytes] = {}

    for i in range(40):
        key = f"objs/{i:03d}" if i % 3 else f"objs/sub/{i:03d}"
        expected[key] = rng.randbytes(rng.choice([0, 1, 100, 5000, 70_000]))
        store.put(key, expected[key])
    big = rng.randbytes(MULTIPART_THRESHOLD + 1000)
    store.put("objs/big", big)
    assert store.get("objs/big") == big
    expected["objs/big"] = b""  # checked; keep only its size below
    del big

    for key, data in expected.items():
        if key != "objs/big":
            assert store.get(key) == data
            assert store.get_range(key, 10, 50) == data[10:60]

    listed = {o.key: o.size for o in store.list("objs/")}
    assert sorted(listed) == sorted(expected)
    assert listed["objs/sub/000"] == len(expected["objs/sub/000"])
    keys = sorted(expected)
    assert [o.key for o in store.list("objs/", keys[20])] == keys[21:]
    assert [o.key for o in store.list("objs/sub/")] == [k for k in keys if "/sub/" in k]

    created = {}
    for i in range(30):
        key = f"log/{i:03d}"
        created[key] = f"commit {i}".encode()
        assert store.put_if_absent(key, created[key]) is True, key
    for i in range(0, 30, 3):
        key = f"log/{i:03d}"
        assert store.put_if_absent(key, b"someone else") is False, key
        assert store.get(key) == created[key]

    doomed = [k for k in keys if k.startswith("objs/0")] + ["objs/missing"]
    store.delete(doomed)
    remaining = {o.key for o in store.list()}
    assert remaining == (set(expected) - set(doomed)) | set(created)
    assert not store.exists(doomed[0])

    for kind in KINDS:
        assert proxy.counts[kind] >= 1, (kind, dict(proxy.counts))
    faults = sum(proxy.counts[k] for k in KINDS)
    assert 0.1 < faults / proxy.counts["requests"] < 0.3, dict(proxy.counts)
    # every kind of request went through the proxy
    methods = {m for m, _t, _o in proxy.log}
    assert {"GET", "PUT", "POST", "HEAD"} <= methods, methods
    assert any(re.search(r"[?&]delete", t) for _m, t, _o in proxy.log)


def test_buffers_are_sent_whole_again_on_every_retry(
    proxy: FaultProxy, proxied_store: S3Store
) -> None:
    # Packs go out as buffers read in place (a bytearray or a slice of one), not as bytes:
    # an attempt that failed part way must not leave the next one starting mid-buffer.
    proxy.fault_rate = 0.3
    rng = random.Random(5)
    sent = {}
    for i in range(30):
        data = rng.randbytes(rng.choice([1, 5000, 300_000]))
        padded = bytearray(b"<" + data + b">")
        body = padded if i % 2 else memoryview(padded)[1:-1]
        sent[f"packs/{i:02d}"] = data if i % 2 == 0 else bytes(padded)
        proxied_store.put(f"packs/{i:02d}", body)
    for key, data in sent.items():
        assert proxied_store.get(key) == data, key
    assert sum(proxy.counts[k] for k in KINDS) >= 5, dict(proxy.counts)


def test_put_if_match_lost_response_reports_the_write(
    proxy: FaultProxy, proxied_store: S3Store
) -> None:
    """The replace lands, its response is lost, the retry sees 412: still our token."""
    proxied_store.put("cas/k", b"v1")
    _, t1 = proxied_store.get_versioned("cas/k")
    proxy.force("lost_response", method="PUT")
    t2 = proxied_store.put_if_match("cas/k", b"v2", t1)
    assert proxy.counts["lost_response"] == 1
    puts = [outcome for m, _t, outcome in proxy.log if m == "PUT"]
    assert puts[-2:] == ["lost_response", "ok"]  # the retry got 412
    assert t2 is not None and proxied_store.get_versioned("cas/k") == (b"v2", t2)
    # a stale token whose 412 was lost is still a loss, and changes nothing
    proxy.force("lost_response", method="PUT")
    assert proxied_store.put_if_match("cas/k", b"v3", t1) is None
    assert proxy.counts["lost_response"] == 2
    assert proxied_store.get("cas/k") == b"v2"


def test_put_if_absent_versioned_lost_response_gives_our_token(
    proxy: FaultProxy, proxied_store: S3Store
) -> None:
    """The create lands, its response is lost, the retry sees 412: still created, and
    the token is the object's; someone else's object is not taken for ours."""
    proxy.force("lost_response", method="PUT")
    token = proxied_store.put_if_absent_versioned("cas/new", b"mine")
    assert proxy.counts["lost_response"] == 1
    assert token is not None and proxied_store.get_versioned("cas/new") == (b"mine", token)
    assert proxied_store.put_if_match("cas/new", b"next", token) is not None
    proxied_store.put("cas/theirs", b"theirs")
    proxy.force("lost_response", method="PUT")
    assert proxied_store.put_if_absent_versioned("cas/theirs", b"mine") is None
    assert proxied_store.get("cas/theirs") == b"theirs"


def test_delete_if_match_lost_response_reports_the_delete(
    proxy: FaultProxy, proxied_store: S3Store
) -> None:
    """The delete lands, its response is lost, the retry finds no such version (404 on
    AWS, 412 on SeaweedFS): still True, once."""
    proxied_store.put("cas/d", b"v1")
    _, t1 = proxied_store.get_versioned("cas/d")
    proxy.force("lost_response", method="DELETE")
    assert proxied_store.delete_if_match("cas/d", t1) is True
    assert proxy.counts["lost_response"] == 1
    deletes = [outcome for m, _t, outcome in proxy.log if m == "DELETE"]
    assert deletes == ["lost_response", "ok"]
    assert not proxied_store.exists("cas/d")
    # a stale token whose answer was lost deletes nothing and says so
    proxied_store.put("cas/d", b"v2")
    proxy.force("lost_response", method="DELETE")
    assert proxied_store.delete_if_match("cas/d", t1) is False
    assert proxied_store.get("cas/d") == b"v2"
    assert proxy.counts["lost_response"] == 2


def test_not_implemented_is_not_retried(proxy: FaultProxy, proxied_store: S3Store) -> None:
    """A server without conditional writes answers 501 NotImplemented: that is said at
    once and plainly, not retried ten times and then reported as raw botocore text."""
    for call in (
        lambda: proxied_store.put_if_absent("log/1", b"x"),
        lambda: proxied_store.put_if_match("log/1", b"x", '"0123"'),
    ):
        before = proxy.counts["requests"]
        proxy.force(NOT_IMPLEMENTED, method="PUT")
        with pytest.raises(StoreError) as info:
            call()
        assert proxy.counts["requests"] == before + 1  # one attempt, no retry
        message = str(info.value)
        assert "does not support" in message and proxy.url in message
        assert "An error occurred" not in message  # no botocore wording
    assert proxy.counts[NOT_IMPLEMENTED] == 2
    assert not proxied_store.exists("log/1")


# -- Dict counters over a connection that loses answers --------------------------------------
@pytest.fixture
def two_counters(
    proxied_store: S3Store, seaweedfs: SeaweedFS, s3_bucket: str, s3_client: Any
) -> Iterator[tuple[Dict, Dict]]:
    """One Dict through ``proxied_store`` (A) and the same Dict straight to SeaweedFS (B):
    B's writes never meet a fault, so a test can land one between A's attempts."""
    direct = S3Store(
        s3_bucket, proxied_store.prefix, endpoint_url=seaweedfs.endpoint, client=s3_client()
    )
    a = Dict.from_name("counters", store=proxied_store, create_if_missing=True)
    a.put("warm", 1)  # creates the Dict, so each test's first faulted PUT is the incr's
    b = Dict.from_name("counters", store=direct)
    yield a, b
    direct.close()


def _landing(b: Dict, key: str, got: list[Any]) -> Callable[[], None]:
    """What the proxy runs between A's faulted attempt and its retry: B's incr."""

    def run() -> None:
        try:
            got.append(b.incr(key))
        except Exception as e:  # noqa: BLE001 - the test reports it
            got.append(e)

    return run


@pytest.mark.parametrize("start", [None, 10], ids=["new-key", "existing-key"])
@pytest.mark.parametrize("fault", ["lost_response", "drop"])
def test_an_incr_counts_once_whatever_happened_to_its_first_attempt(
    proxy: FaultProxy, two_counters: tuple[Dict, Dict], start: int | None, fault: str
) -> None:
    """B's incr lands between A's first attempt and its retry.

    ``lost_response``: A's write landed, its answer was lost, and B's incr went on top
    of it. A must see that its write is in (the entry keeps the ids of the last writes),
    return what it wrote, and not add again.
    ``drop``: the connection dropped before the store saw A's write (A cannot know
    that), and B wrote the very bytes A would have written. A must not take B's write
    for its own: two workers handing out tickets never get the same one.
    Either way the counter ends at +2 and A and B return different numbers."""
    a, b = two_counters
    if start is not None:
        a.put("n", start)
    base = start or 0
    got: list[Any] = []
    proxy.force(fault, method="PUT", path_contains="/e/", then=_landing(b, "n", got))
    before = proxy.counts[fault]
    mine = a.incr("n")
    assert proxy.counts[fault] == before + 1
    landed_first = fault == "lost_response"
    assert got == [base + 2 if landed_first else base + 1], got
    assert mine == (base + 1 if landed_first else base + 2)
    assert b.get("n") == base + 2


def test_clear_waits_for_a_faults_hook_that_outlasts_the_clients_wait(
    proxy: FaultProxy, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    """A client gives up on an answer (its read timeout) while the fault's ``then`` still
    runs on the proxy's thread: ``clear()`` returns only once that hook has finished, and
    forgets what the hook armed, so nothing of it lands after the test moved on."""
    import threading
    import time

    store = store_through(
        proxy, seaweedfs, s3_bucket, f"t/faults-{uuid.uuid4().hex[:10]}", read_timeout=0.5
    )
    store.max_attempts = 1
    done = threading.Event()

    def slow_hook() -> None:
        time.sleep(2.0)  # longer than the client waits
        proxy.force("error500", method="GET")  # armed as it ends
        done.set()

    try:
        proxy.force("lost_response", method="PUT", then=slow_hook)
        with pytest.raises(StoreError):
            store.put("k", b"v")
        assert not done.is_set()  # the client gave up before the hook ended
        proxy.clear()
        assert done.is_set()
        assert store.get("k") == b"v"  # (the PUT landed) and no fault is left armed
        assert proxy.counts["error500"] == 0
    finally:
        store.close()
