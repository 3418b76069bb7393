"""Adversarial review of the Dict's atomic operations and locks.

Another writer is always a real process (a "peer" that runs Dict calls sent to it on
its stdin), faults come only from the fault proxy, and orders of events come from the
proxy's ``then`` hook (the peer's request lands between an attempt of ours and its
retry), from process signals, or from the store's own clock: never from sleeps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from jupyter_volume import Dict
from jupyter_volume.dicts import _entry_name, _key_bytes
from jupyter_volume.errors import NotFoundError, StoreError
from jupyter_volume.store.s3 import S3Store
from jupyter_volume.testing.seaweedfs import SeaweedFS
from jupyter_volume.testing.wrappers import WrappedStore

try:
    from .faultproxy import FaultProxy, store_through
except ImportError:  # tests/ is not a package
    from faultproxy import FaultProxy, store_through  # type: ignore[no-redef]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

# -- a peer: another process working on the same Dict ------------------------------------
PEER = textwrap.dedent(
    """
    import json, sys
    from jupyter_volume import Dict

    url, name = sys.argv[1:3]
    d = Dict.from_name(name, store=url)
    d.len()  # resolve the handle and connect before the first command
    locks = {}
    print("ready", flush=True)
    for line in sys.stdin:
        op, args, kwargs = json.loads(line)
        try:
            if op == "lock":  # True when taken, False on a timeout
                lock = d.lock(args[0], **kwargs)
                try:
                    lock.acquire()
                except TimeoutError:
                    out = False
                else:
                    locks[args[0]] = lock
                    out = True
            elif op == "unlock":
                locks.pop(args[0]).release()
                out = None
            else:
                out = getattr(d, op)(*args, **kwargs)
            reply = {"ok": out}
        except Exception as e:
            reply = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(reply), flush=True)
    """
)


class Peer:
    """A child process holding its own handle on Dict ``name`` of the store at ``url``."""

    def __init__(self, url: str, name: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", PEER, url, name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        self._expect("ready")

    def _expect(self, what: str) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line or (what and line != what + "\n"):
            self.proc.kill()
            _, err = self.proc.communicate(timeout=60)
            raise AssertionError(f"peer said {line!r}; stderr:\n{err}")
        return line

    def call(self, op: str, *args: Any, **kwargs: Any) -> Any:
        """Run ``d.<op>(*args, **kwargs)`` in the peer; its result (JSON)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps([op, args, kwargs]) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self._expect(""))
        if "error" in reply:
            raise AssertionError(f"peer's {op} failed: {reply['error']}")
        return reply["ok"]

    def close(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for pipe in (self.proc.stdout, self.proc.stderr):
                if pipe is not None:
                    pipe.close()


def then_peer(got: list[Any], peer: Peer, op: str, *args: Any, **kwargs: Any) -> Callable[[], None]:
    """What the proxy runs between our faulted attempt and its retry: one peer call,
    its result (or error) appended to ``got``."""

    def run() -> None:
        try:
            got.append(peer.call(op, *args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - the test reports it
            got.append(e)

    return run


@pytest.fixture
def proxy(seaweedfs: SeaweedFS) -> Iterator[FaultProxy]:
    with FaultProxy(seaweedfs.endpoint, seed=7) as p:
        yield p


@pytest.fixture
def faulty(
    proxy: FaultProxy, seaweedfs: SeaweedFS, s3_bucket: str
) -> Iterator[tuple[Dict, Peer, S3Store]]:
    """Dict "review" through the fault proxy (ours), the same Dict in a peer process
    that talks to SeaweedFS directly (its requests never meet a fault), and our store."""
    prefix = f"t/dict-review-{uuid.uuid4().hex[:10]}"
    store = store_through(proxy, seaweedfs, s3_bucket, prefix)
    ours = Dict.from_name("review", store=store, create_if_missing=True)
    ours.put("warm", 1)  # creates the Dict: each test's first faulted entry PUT is its own
    peer = Peer(
        f"s3://{s3_bucket}/{prefix}?endpoint_url={seaweedfs.endpoint}", "review", seaweedfs.env()
    )
    try:
        yield ours, peer, store
    finally:
        peer.close()
        store.close()


# -- first writer wins, under lost and refused answers -----------------------------------
@pytest.mark.parametrize("kind", ["error500", "drop"])
def test_first_writer_wins_once_when_both_write_the_same_value(
    proxy: FaultProxy, faulty: tuple[Dict, Peer, S3Store], kind: str
) -> None:
    """Our create is refused before the store saw it (a 500, a dropped connection: we
    cannot know that), and the peer creates the key with the same value meanwhile. Our
    retry finds an object with exactly the bytes we sent: it is the peer's, not ours.
    Two workers electing a leader with ``put("leader-elected", True, skip_if_exists=True)``
    must not both be told they won."""
    ours, peer, _ = faulty
    got: list[Any] = []
    proxy.force(
        kind,
        method="PUT",
        path_contains="/e/",
        then=then_peer(got, peer, "put", "leader", "same", skip_if_exists=True),
    )
    mine = ours.put("leader", "same", skip_if_exists=True)
    assert proxy.counts[kind] == 1
    assert got == [True]  # the peer's create landed first
    assert mine is False, "both writers were told they won"
    assert ours["leader"] == "same"


@pytest.mark.parametrize("op", ["put", "setdefault"])
@pytest.mark.parametrize("kind", ["lost_response", "drop"])
@pytest.mark.parametrize("peer_value", ["a", "b"], ids=["same-value", "other-value"])
def test_one_winner_and_every_answer_true_under_lost_answers(
    proxy: FaultProxy, faulty: tuple[Dict, Peer, S3Store], op: str, kind: str, peer_value: str
) -> None:
    """Our ``put(skip_if_exists=True)`` / ``setdefault`` of "a" races the peer's of
    ``peer_value``; the peer's request lands between our faulted attempt and its retry.
    With ``lost_response`` ours landed first, with ``drop`` the peer's did. Exactly one
    is told it wrote, and ``setdefault`` returns the value that stayed."""
    ours, peer, _ = faulty
    got: list[Any] = []
    kwargs = {"skip_if_exists": True} if op == "put" else {}
    proxy.force(
        kind,
        method="PUT",
        path_contains="/e/",
        then=then_peer(got, peer, op, "k", peer_value, **kwargs),
    )
    mine = getattr(ours, op)("k", "a", **kwargs)
    assert proxy.counts[kind] == 1
    assert len(got) == 1 and not isinstance(got[0], BaseException), got
    stored = "a" if kind == "lost_response" else peer_value
    assert ours["k"] == stored
    if op == "put":
        assert [mine, got[0]] == ([True, False] if kind == "lost_response" else [False, True])
    else:
        assert mine == got[0] == stored


# -- locks --------------------------------------------------------------------------------
HOLDER = textwrap.dedent(
    """
    import json, os, signal, sys, time
    from jupyter_volume import Dict

    url, name, lease = sys.argv[1], sys.argv[2], float(sys.argv[3])
    lock = Dict.from_name(name, store=url).lock("L", lease=lease, timeout=60)
    lock.acquire()
    print("held", flush=True)
    # From here the renewal thread gets the interpreter only while this thread waits
    # (as behind a long computation that holds it): on waking, this thread looks first.
    sys.setswitchinterval(1000)
    os.kill(os.getpid(), signal.SIGSTOP)  # stopped past the lease; another takes the lock
    held_on_waking = lock.held
    sys.setswitchinterval(0.005)
    deadline = time.monotonic() + 120
    while not lock.lost and time.monotonic() < deadline:
        time.sleep(0.05)
    seen = {"held_on_waking": held_on_waking, "lost": lock.lost, "held": lock.held}
    lock.release()  # after a loss: must not free the new holder's lock
    print(json.dumps(seen), flush=True)
    """
)


def test_a_holder_stopped_past_its_lease_does_not_claim_the_lock(
    opened: tuple[Any, str, dict[str, str]],
) -> None:
    """A holder is stopped (SIGSTOP; a starved renewal thread is the same) for longer
    than its lease, and another process takes the lock. On waking, before its renewal
    thread runs, the old holder must not say it holds the lock: two processes would both
    believe they hold it. Later it learns it was lost, and its release frees nothing."""
    store, url, _ = opened
    Dict.objects.create("stopped", store=url)
    d = Dict.from_name("stopped", store=url)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, "stopped", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        _, status = os.waitpid(holder.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status), status
        mine = d.lock("L", lease=30, timeout=120)
        mine.acquire()  # once the stopped holder's lease ran out by the store's clock
        os.kill(holder.pid, signal.SIGCONT)
        out, err = holder.communicate(timeout=180)
        assert holder.returncode == 0, err
        seen = json.loads(out.splitlines()[-1])
        assert seen["lost"] and not seen["held"], seen
        assert seen["held_on_waking"] is False, "the woken holder said it held a lock another held"
        assert mine.held and not mine.lost  # the old holder's release took nothing from us
        with pytest.raises(TimeoutError):
            d.lock("L", timeout=0).acquire()
        mine.release()
    finally:
        if holder.poll() is None:
            os.kill(holder.pid, signal.SIGCONT)
            holder.kill()
            holder.wait()
        for pipe in (holder.stdout, holder.stderr):
            if pipe is not None:
                pipe.close()


def test_a_lock_handle_can_be_taken_again_after_a_loss(local_store: Any) -> None:
    """A lock taken over while held says ``lost``; taking it again with the same handle
    must work (it used to fail with "already held by this handle", which it is not)."""
    d = Dict.from_name("again", store=local_store, create_if_missing=True)
    lock = d.lock("L", lease=1, timeout=60)
    lock.acquire()
    _, token = d.store.get_versioned(lock.key)
    assert d.store.put_if_match(lock.key, b'{"owner": "thief", "lease": 0.01}', token)
    deadline = time.monotonic() + 60
    while not lock.lost and time.monotonic() < deadline:
        time.sleep(0.02)
    assert lock.lost and not lock.held
    lock.acquire()  # the thief's tiny lease ran out: ours again
    assert lock.held and not lock.lost
    lock.release()
    with d.lock("L", timeout=5):
        pass


def test_a_lock_of_an_ephemeral_dict_ends_with_its_block(store: Any) -> None:
    """When an ephemeral Dict's block ends, its locks go with it: a lock handle made
    before (or a waiter still waiting) must not make the lock again under the deleted
    Dict, where nothing ever removes it, and a new one cannot be made."""
    errors: list[BaseException] = []
    with Dict.ephemeral(store=store) as e:
        view, dict_id = e.store, e.object_id
        kept = e.lock("kept", lease=5, timeout=5).acquire()
        later = e.lock("later", lease=5, timeout=5)
        waiting = threading.Event()

        def wait_for_kept() -> None:
            waiting.set()
            try:
                e.lock("kept", lease=5, timeout=120).acquire()
            except BaseException as err:  # noqa: BLE001 - the test reports it
                errors.append(err)

        waiter = threading.Thread(target=wait_for_kept)
        waiter.start()
        assert waiting.wait(60)
    waiter.join(180)
    assert not waiter.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], NotFoundError), errors
    with pytest.raises(NotFoundError):
        later.acquire()
    with pytest.raises(NotFoundError):
        e.lock("new")
    assert not kept.held  # its object went with the Dict
    kept.release()  # no error, and nothing written back
    assert not kept.held
    assert list(view.list(f"dicts/{dict_id}/")) == []


def test_a_lock_of_a_dict_deleted_elsewhere_is_not_made_again(local_store: Any) -> None:
    """A handle whose Dict another process deleted fails on its next write (README):
    taking a lock is a write, and its object must not stay behind under the old id."""
    d = Dict.from_name("gone", store=local_store, create_if_missing=True)
    dict_id = d.object_id
    Dict.objects.delete("gone", store=local_store)
    with pytest.raises(NotFoundError):
        d.lock("L", timeout=5).acquire()
    assert list(d.store.list(f"dicts/{dict_id}/")) == []


def test_lock_requests_whose_answers_are_lost(
    proxy: FaultProxy, faulty: tuple[Dict, Peer, S3Store]
) -> None:
    """Acquire, renewal and release whose answers are lost still do what they did: the
    lock is ours (the peer cannot take it), renewals go on, and a release frees it."""
    ours, peer, _ = faulty
    lock = ours.lock("L", lease=6, timeout=30)
    proxy.force("lost_response", method="PUT", path_contains="/locks/")  # the create
    lock.acquire()
    assert proxy.counts["lost_response"] == 1 and lock.held
    assert peer.call("lock", "L", lease=6, timeout=0) is False
    renewer = lock._renewer
    assert renewer is not None
    before = renewer.renewals
    proxy.force("lost_response", method="PUT", path_contains="/locks/")  # a renewal
    deadline = time.monotonic() + 120
    while renewer.renewals < before + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proxy.counts["lost_response"] == 2 and renewer.renewals >= before + 2
    assert lock.held and not lock.lost
    proxy.force("lost_response", method="PUT", path_contains="/locks/")  # the release
    lock.release()
    assert proxy.counts["lost_response"] == 3
    assert peer.call("lock", "L", lease=6, timeout=0) is True  # free at once
    peer.call("unlock", "L")
    proxy.force("lost_response", method="PUT", path_contains="/locks/")  # taking a freed lock
    lock.acquire()
    assert proxy.counts["lost_response"] == 4 and lock.held
    assert peer.call("lock", "L", lease=6, timeout=0) is False
    lock.release()


def _renewal_lands_unheard(proxy: FaultProxy, store: S3Store, lock: Any) -> Any:
    """Take ``lock``; its next renewal lands, its answer is lost and its one retry
    fails (the call fails after landing). Returns the lock's renewer once it has."""
    lock.acquire()
    renewer = lock._renewer
    assert renewer is not None
    store.max_attempts = 2
    proxy.force("lost_response", method="PUT", path_contains="/locks/")
    proxy.force("error500", method="PUT", path_contains="/locks/")
    deadline = time.monotonic() + 120
    while renewer.last_error is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert isinstance(renewer.last_error, StoreError)
    return renewer


def test_a_renewal_that_landed_but_failed_keeps_the_lock(
    proxy: FaultProxy, faulty: tuple[Dict, Peer, S3Store]
) -> None:
    """A renewal lands, its answer is lost and every retry fails (a network blip that
    outlasts the store's retries): the call fails, though the lock object is ours and
    newer than the version we know. The next renewal must see that the lock is still
    ours (nobody else wrote it), not report it lost: a false ``lost`` makes the holder
    give up its work while its lock blocks every waiter for a whole lease."""
    ours, peer, store = faulty
    lock = ours.lock("R", lease=6, timeout=30)
    renewer = _renewal_lands_unheard(proxy, store, lock)
    assert proxy.counts["lost_response"] == 1 and proxy.counts["error500"] == 1
    deadline = time.monotonic() + 120
    before = renewer.renewals
    while not lock.lost and renewer.renewals < before + 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not lock.lost, "a renewal that failed after landing made the holder think it lost"
    assert lock.held and renewer.renewals >= before + 2
    assert peer.call("lock", "R", lease=6, timeout=0) is False
    lock.release()
    assert peer.call("lock", "R", lease=6, timeout=0) is True


def test_a_release_after_a_renewal_that_landed_but_failed_frees_the_lock(
    proxy: FaultProxy, faulty: tuple[Dict, Peer, S3Store]
) -> None:
    """As above, but the holder releases before its next renewal: the lock must be
    free at once, not held for a whole lease by an object nobody renews."""
    ours, peer, store = faulty
    lock = ours.lock("F", lease=30, timeout=30)
    renewer = _renewal_lands_unheard(proxy, store, lock)
    lock.release()  # (the next renewal is 10 s away)
    assert renewer.renewals == 0 and not renewer.lost
    assert peer.call("lock", "F", lease=6, timeout=0) is True


def test_an_acquire_that_may_not_have_landed_never_takes_anothers_lock(
    proxy: FaultProxy, faulty: tuple[Dict, Peer, S3Store]
) -> None:
    ours, peer, _ = faulty
    got: list[Any] = []
    proxy.force(
        "drop",
        method="PUT",
        path_contains="/locks/",
        then=then_peer(got, peer, "lock", "D", lease=60, timeout=0),
    )
    with pytest.raises(TimeoutError):
        ours.lock("D", lease=60, timeout=0.5).acquire()
    assert proxy.counts["drop"] == 1 and got == [True]
    peer.call("unlock", "D")
    with ours.lock("D", timeout=30) as lock:
        assert lock.held


# -- update, clear and listings -----------------------------------------------------------
def test_a_failed_update_counts_what_it_wrote(
    proxy: FaultProxy, faulty: tuple[Dict, Peer, S3Store]
) -> None:
    ours, _, store = faulty
    store.max_attempts = 2
    bad = _entry_name(_key_bytes(3))
    proxy.force("error500", method="PUT", path_contains=bad, n=2)
    with pytest.raises(StoreError, match="after writing 9 of 10 entries"):
        ours.update({k: k for k in range(10)})
    assert sorted(k for k in ours if k != "warm") == [0, 1, 2, 4, 5, 6, 7, 8, 9]


CHURN = textwrap.dedent(
    """
    import sys
    from jupyter_volume import Dict

    d = Dict.from_name(sys.argv[2], store=sys.argv[1])
    start = int(sys.argv[3])
    i = start
    while True:
        d[i] = i
        if i - start >= 40:
            d.pop(i - 40, None)
        if i - start == 40:
            print("churning", flush=True)
        if i % 10 == 0 and "stop" in d:
            break
        i += 1
    print(i - start, flush=True)
    """
)


def test_listings_and_clear_while_another_process_writes_and_deletes(
    opened: tuple[Any, str, dict[str, str]],
) -> None:
    """``len``, ``keys``, ``items`` and ``clear`` while another process adds and
    removes entries: no error, no key twice in one listing (over 1,000 entries: more
    than one page of an S3 listing)."""
    _, url, _ = opened
    d = Dict.from_name("churn", store=url, create_if_missing=True)
    d.update({f"old-{i:05d}": i for i in range(1100)})
    churner = subprocess.Popen(
        [sys.executable, "-c", CHURN, url, "churn", "100000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert churner.stdout is not None
        assert churner.stdout.readline() == "churning\n", (
            churner.stderr.read() if churner.stderr else ""
        )
        for _ in range(3):
            keys = list(d.keys())
            assert len(keys) == len(set(keys)) >= 1100
            items = list(d.items())
            assert len({k for k, _ in items}) == len(items) >= 1100
            assert all(v == int(k[4:]) if isinstance(k, str) else v == k for k, v in items)
            assert d.len() >= 1100
        d.clear()
        assert all(isinstance(k, int) for k in d)  # only what was written since
        d["stop"] = True
        out, err = churner.communicate(timeout=300)
        assert churner.returncode == 0, err
        assert int(out.split()[-1]) > 40
    finally:
        if churner.poll() is None:
            churner.kill()
            churner.wait()
        for pipe in (churner.stdout, churner.stderr):
            if pipe is not None:
                pipe.close()
    d.clear()
    assert d.len() == 0 and list(d.items()) == []


# -- pop: exactly once, also when answers are lost ------------------------------------------
def test_a_pop_whose_delete_answer_was_lost_keeps_its_value_and_a_later_put(
    proxy: FaultProxy, faulty: tuple[Dict, Peer, S3Store]
) -> None:
    """Our pop's delete lands but its answer is lost, and the peer puts the key again
    before we retry. The value we took is ours (a delete leaves nothing to read back,
    so a pop that judged by the key alone popped the peer's new value instead and the
    first job was lost to everyone); the peer's value stays for the next pop."""
    ours, peer, _ = faulty
    ours["job"] = "first"
    got: list[Any] = []
    proxy.force(
        "lost_response",
        method="DELETE",
        path_contains="/e/",
        then=then_peer(got, peer, "put", "job", "second"),
    )
    assert ours.pop("job") == "first"
    assert proxy.counts["lost_response"] == 1 and got == [True]
    assert ours["job"] == "second"


def test_a_pop_whose_delete_was_dropped_is_not_handed_out_twice(
    proxy: FaultProxy, faulty: tuple[Dict, Peer, S3Store]
) -> None:
    """Our pop's delete never reaches the store, and the peer pops the key before our
    retry. Exactly one of us gets the job (a pop that took "the key is gone" after its
    retry for its own delete handed it to both)."""
    ours, peer, _ = faulty
    ours["job"] = "only"
    got: list[Any] = []
    proxy.force(
        "drop", method="DELETE", path_contains="/e/", then=then_peer(got, peer, "pop", "job", None)
    )
    mine = ours.pop("job", None)
    assert proxy.counts["drop"] == 1 and len(got) == 1
    assert sorted([mine, got[0]], key=str) == [None, "only"], (mine, got)
    assert "job" not in ours


@pytest.mark.parametrize("kind", ["lost_response", "drop"])
def test_a_pop_whose_claim_answer_was_lost_or_dropped_is_handed_out_once(
    proxy: FaultProxy, faulty: tuple[Dict, Peer, S3Store], kind: str
) -> None:
    """Our pop's claim lands with its answer lost (or never reaches the store), and the
    peer pops the same key before our retry: exactly one of us gets the job, and with
    ``lost_response`` it is ours (our claim was first)."""
    ours, peer, _ = faulty
    ours["job"] = "only"
    got: list[Any] = []
    proxy.force(
        kind, method="PUT", path_contains="/claims/", then=then_peer(got, peer, "pop", "job", None)
    )
    mine = ours.pop("job", None)
    assert proxy.counts[kind] == 1 and len(got) == 1
    if kind == "lost_response":
        assert [mine, got[0]] == ["only", None]
    else:
        assert [mine, got[0]] == [None, "only"]
    assert "job" not in ours


class _Once(WrappedStore):
    """Runs ``hook`` once, at the first ``kind`` operation on a key containing ``part``:
    right after it returned, or (``before``) right before it is sent."""

    def __init__(
        self, inner: Any, kind: str, part: str, hook: Callable[[], None], before: bool = False
    ) -> None:
        super().__init__(inner)
        self.kind, self.part, self.before = kind, part, before
        self.hook: Callable[[], None] | None = hook

    def _fire(self, kind: str, key: str) -> None:
        if kind == self.kind and self.part in key and self.hook is not None:
            hook, self.hook = self.hook, None
            hook()

    def _do(self, kind: str, key: str, fn, *args):  # type: ignore[no-untyped-def]
        if self.before:
            self._fire(kind, key)
        return super()._do(kind, key, fn, *args)

    def _record(self, kind: str, key: str) -> None:
        if not self.before:
            self._fire(kind, key)


def after_read(inner: Any, hook: Callable[[], None]) -> _Once:
    """``inner``, running ``hook`` right after the first read of an entry (a pop's)."""
    return _Once(inner, "get_versioned", "/e/", hook)


def before_claim(inner: Any, hook: Callable[[], None]) -> _Once:
    """``inner``, running ``hook`` right before the first claim is sent (a pop that
    passed its stall check and stopped before its claim request went out)."""
    return _Once(inner, "put_if_absent", "/claims/", hook, before=True)


def stalled_pop(
    store: Any, monkeypatch: pytest.MonkeyPatch, wrap: Callable[..., Any], *, others_pop: bool
) -> tuple[Any, list[Any], Dict]:
    """Our pop of "job" stalls (the pop's clock moved a CLAIM_KEEP forward: an hour
    cannot pass in a test, the only fake part) at the point ``wrap`` hooks, while
    another handle, when ``others_pop``, pops the job and sweeps every claim. Returns
    what our pop got, what the other took, and the other handle."""
    import jupyter_volume.dicts as dicts

    clock = [1000.0]
    monkeypatch.setattr(dicts, "_lease_clock", lambda: clock[0])
    other = Dict.from_name("jobs", store=store, create_if_missing=True)
    other["job"] = "only"
    taken: list[Any] = []

    def meanwhile() -> None:
        if others_pop:
            taken.append(other.pop("job"))
            other._sweep_claims(keep=-1)  # every claim counts as old
        clock[0] += dicts.CLAIM_KEEP

    ours = Dict.from_name("jobs", store=wrap(store, meanwhile))
    return ours.pop("job", None), taken, other


def test_a_pop_stalled_past_the_claims_keep_reads_again(
    local_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our pop reads the job, then stalls (a stopped process) while another process
    pops it and the claims are swept. Waking, it must not claim the version it read
    long ago (its claim would be new again, and the job handed out twice): it reads
    afresh and finds nothing. The stall is a clock moved forward (an hour cannot pass
    in a test), the only fake part; store and Dicts are real."""
    got, taken, _ = stalled_pop(local_store, monkeypatch, after_read, others_pop=True)
    assert got is None
    assert taken == ["only"]


def _claim_as_a_stopped_pop(d: Dict, key: Any) -> None:
    """Claim ``key``'s current version the way a pop does, and stop there (as a pop
    killed between its claim and its delete leaves it)."""
    _, okey = d._key_object(key)
    _, token = d.store.get_versioned(okey)
    body = json.dumps({"claim": "stopped", "version": token}).encode()
    assert d.store.put_if_absent(d._claim_key(okey, token), body)


def test_a_claimed_entry_left_behind_is_removed_by_the_next_pop(store: Any) -> None:
    """A pop that stopped after claiming left its entry (readers still see it: the
    documented cost); the next pop of the key finishes that delete and finds nothing,
    rather than handing the job out a second time."""
    d = Dict.from_name("jobs", store=store, create_if_missing=True)
    d["job"] = "taken"
    _claim_as_a_stopped_pop(d, "job")
    assert d.get("job") == "taken"
    assert d.pop("job", None) is None
    assert "job" not in d and d.len() == 0


def test_the_claim_sweep(store: Any) -> None:
    """Young claims stay; old ones go, and the sweep first removes an entry a stopped
    pop left behind, but never a value put after the claimed one."""
    d = Dict.from_name("jobs", store=store, create_if_missing=True)
    d.update({"a": 1, "b": 2, "c": 3})
    assert d.pop("a") == 1
    _claim_as_a_stopped_pop(d, "b")
    _claim_as_a_stopped_pop(d, "c")
    d["c"] = "put after the claim"
    claims = d._claims
    assert len(list(d.store.list(claims))) == 3
    assert d._sweep_claims() == 0  # all young
    assert len(list(d.store.list(claims))) == 3
    assert d._sweep_claims(keep=-1) == 3
    assert list(d.store.list(claims)) == []
    assert dict(d.items()) == {"c": "put after the claim"}


def test_every_write_of_an_entry_is_a_version_of_its_own(local_store: Any) -> None:
    """Two puts of one value give the entry two version tokens (each write carries a
    random id), so a claim on the first cannot pass for a claim on the second."""
    d = Dict.from_name("v", store=local_store, create_if_missing=True)
    _, okey = d._key_object("k")
    tokens = set()
    for _ in range(3):
        d["k"] = "same"
        tokens.add(d.store.get_versioned(okey)[1])
        assert d["k"] == "same"
    assert len(tokens) == 3


def test_pops_sweep_old_claims_now_and_then(
    local_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pops look for old claims (here on every pop, not one in 64), at most once per
    handle in CLAIM_SWEEP_EVERY: a queue's claims do not pile up with no sweep."""
    import jupyter_volume.dicts as dicts
    from jupyter_volume.testing.wrappers import CountingStore

    monkeypatch.setattr(dicts, "CLAIM_SWEEP_ODDS", 1)
    counting = CountingStore(local_store)
    d = Dict.from_name("jobs", store=counting, create_if_missing=True)
    d.update({"a": 1, "b": 2})

    def claim_listings() -> int:
        return sum(1 for op in counting.ops if op.kind == "list" and "/claims/" in op.key)

    assert d.pop("a") == 1
    assert claim_listings() == 1
    assert d.pop("b") == 2
    assert claim_listings() == 1  # not again within CLAIM_SWEEP_EVERY
    monkeypatch.setattr(dicts, "CLAIM_SWEEP_EVERY", 0.0)
    d._next_sweep = 0.0
    d["c"] = 3
    assert d.pop("c") == 3
    assert claim_listings() == 2


def test_a_pop_stalled_between_its_check_and_its_claim_is_not_handed_out_twice(
    local_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our pop reads the job and passes its "read too long ago?" check, then stalls
    before its claim goes out, while another process pops the job and the claims are
    swept. Its claim is then new again (the old one is gone): it must not take that as
    owning the job, which the other process already has. As above, only the stall is
    a clock moved forward."""
    got, taken, other = stalled_pop(local_store, monkeypatch, before_claim, others_pop=True)
    assert got is None
    assert taken == ["only"]
    assert "job" not in other


def test_a_pop_stalled_before_its_claim_still_owns_a_version_nobody_claimed(
    local_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same stall with nobody else popping: the version is still there after our
    claim, so it is ours (no claim before ours can have been swept), and it is gone."""
    got, _, other = stalled_pop(local_store, monkeypatch, before_claim, others_pop=False)
    assert got == "only"
    assert "job" not in other and other.pop("job", None) is None


class _EntryDeletesFail(WrappedStore):
    """A store whose conditional deletes of entries fail (as after all retries)."""

    def delete_if_match(self, key: str, token: str) -> bool:
        if "/e/" in key:
            raise StoreError(f"delete of {key} failed (test)")
        return super().delete_if_match(key, token)


def test_a_sweep_between_a_pops_read_and_its_claim_hands_nothing_out_twice(
    local_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pop took the job but could not delete its entry (the store kept failing: it
    logs that and returns the value), so the entry stays, claimed. Long after, our pop
    reads the entry, and a sweep removes the old claim (deleting the entry first) before
    our claim goes out: our claim is then new, though the job was handed out already.
    No stall is needed, only a sweep running between two requests of ours, so the
    sweep must not remove a claim in the pass that may have just ended its version:
    it marks the claim and removes it a keep later, when any pop that read the version
    before has been too slow to trust its claim without looking. The hour that makes
    the claim old is the store's clock moved forward, the only fake part."""
    import jupyter_volume.dicts as dicts
    from jupyter_volume.lease import store_now

    monkeypatch.setattr(dicts, "store_now", lambda s: store_now(s) + 2 * dicts.CLAIM_KEEP)
    other = Dict.from_name("jobs", store=local_store, create_if_missing=True)
    other["job"] = "only"
    first = Dict.from_name("jobs", store=_EntryDeletesFail(local_store))
    assert first.pop("job") == "only"
    assert other.get("job") == "only"  # left behind, claimed

    swept: list[int] = []

    def meanwhile() -> None:
        swept.append(other._sweep_claims())  # the claim is old: the sweep ends its version

    ours = Dict.from_name("jobs", store=after_read(local_store, meanwhile))
    assert ours.pop("job", None) is None
    assert "job" not in other
    assert swept == [0]  # the claim stays (marked) until a sweep a keep later


def test_the_sweep_removes_an_ended_claim_a_keep_later(
    local_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim older than the keep is ended in one sweep (its left-behind entry
    deleted, an end mark written) and removed, with its mark, by a sweep a keep after
    that; a value put after the claimed version stays throughout."""
    import jupyter_volume.dicts as dicts
    from jupyter_volume.lease import store_now

    ahead = [0.0]
    monkeypatch.setattr(dicts, "store_now", lambda s: store_now(s) + ahead[0])
    d = Dict.from_name("jobs", store=local_store, create_if_missing=True)
    d.update({"a": 1, "b": 2})
    _claim_as_a_stopped_pop(d, "a")
    _claim_as_a_stopped_pop(d, "b")
    d["b"] = "put after the claim"
    claims = d._claims
    assert d._sweep_claims() == 0
    assert len(list(d.store.list(claims))) == 2  # young: untouched
    ahead[0] = 2 * dicts.CLAIM_KEEP
    assert d._sweep_claims() == 0  # ended, not removed
    names = sorted(i.key.rsplit("/", 1)[-1] for i in d.store.list(claims))
    assert len(names) == 4 and sum(n.endswith(".ended") for n in names) == 2
    assert dict(d.items()) == {"b": "put after the claim"}
    ahead[0] = 4 * dicts.CLAIM_KEEP
    assert d._sweep_claims() == 2
    assert list(d.store.list(claims)) == []
    assert dict(d.items()) == {"b": "put after the claim"}


def test_an_incr_between_a_pops_claim_and_its_delete_is_not_counted_twice(
    local_store: Any,
) -> None:
    """Our pop claims the counter's version; before its delete, another process's incr
    (which reads versions, not claims) replaces that version with the sum. Handing out
    the old value too would count it twice (5 popped, and 6 left in the Dict): the
    incr came first, so the pop takes the sum and the key is gone."""
    other = Dict.from_name("jobs", store=local_store, create_if_missing=True)
    other["n"] = 5
    got: list[int] = []

    def meanwhile() -> None:
        got.append(other.incr("n"))

    ours = Dict.from_name("jobs", store=_Once(local_store, "put_if_absent", "/claims/", meanwhile))
    popped = ours.pop("n", None)
    assert got == [6]
    assert (popped, other.get("n")) == (6, None)
