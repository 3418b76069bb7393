"""Dict under real concurrency: racing processes on the local store and on SeaweedFS.

Every child opens the store by URL (as another machine would) and works on one named
Dict. Orders of events are asserted from the store's own timestamps, never with timing
thresholds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest

from jupyter_volume import Dict
from jupyter_volume.lease import CLOCK_SLACK, store_now

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CHILD = textwrap.dedent(
    """
    import sys, time
    from jupyter_volume import Dict

    mode, url, name = sys.argv[1:4]
    if mode != "ephemeral":
        d = Dict.from_name(name, store=url)
        d.len()  # resolve the handle and open connections before the race starts
    if mode == "race":
        me, increments = sys.argv[4], int(sys.argv[5])
        print("ready", flush=True)
        assert sys.stdin.readline() == "go\\n"
        print(d.put("winner", me, skip_if_exists=True), flush=True)
        for _ in range(increments):
            d.incr("count")
    elif mode == "pop":
        # take jobs as a Modal user takes them from a Dict: pop each key, keep what came
        got = []
        print("ready", flush=True)
        assert sys.stdin.readline() == "go\\n"
        for k in range(int(sys.argv[4])):
            if d.pop(k, None) is not None:
                got.append(k)
        print(" ".join(map(str, got)), flush=True)
    elif mode == "rmw":
        for _ in range(int(sys.argv[4])):
            with d.lock("counter", lease=10):
                value = d.get("n", 0)
                time.sleep(0.02)  # without the lock, others would read the same value
                d["n"] = value + 1
    elif mode == "hold":
        lease, hold = float(sys.argv[4]), float(sys.argv[5])
        with d.lock("L", lease=lease) as lock:
            print("held", flush=True)
            time.sleep(hold)
            d["holder-done"] = True  # written while the lock is still ours
            assert not lock.lost
        print("released", flush=True)
    elif mode == "ephemeral":
        with Dict.ephemeral(store=url, _ttl=float(sys.argv[4])) as e:
            e["x"] = 1
            print(e.object_id, flush=True)
            time.sleep(3600)
    elif mode == "hold-forever":
        with d.lock("L", lease=float(sys.argv[4])):
            print("held", flush=True)
            time.sleep(3600)
    """
)


def spawn(url: str, name: str, mode: str, *args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, mode, url, name, *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


def finish(children: list[subprocess.Popen[str]], timeout: float = 300) -> list[str]:
    """Wait for every child; their stdout. Fails with a child's stderr if one failed."""
    outs = []
    try:
        for c in children:
            out, err = c.communicate(timeout=timeout)
            assert c.returncode == 0, err
            outs.append(out)
    finally:
        for c in children:
            if c.poll() is None:
                c.kill()
                c.wait()
    return outs


def expect_line(child: subprocess.Popen[str], line: str) -> None:
    """Read the child's next stdout line: it must be ``line`` (else fail with its stderr)."""
    assert child.stdout is not None
    assert child.stdout.readline() == line, child.stderr.read() if child.stderr else ""


def release_together(children: list[subprocess.Popen[str]]) -> list[subprocess.Popen[str]]:
    """Wait until every child says it is ready, then tell them all to go at once."""
    try:
        for c in children:
            expect_line(c, "ready\n")
        for c in children:
            assert c.stdin is not None
            c.stdin.write("go\n")
            c.stdin.flush()
    except BaseException:
        finish(children)
        raise
    return children


def processes_for(url: str) -> int:
    # SeaweedFS makes losing conditional requests wait, seconds at a time: fewer there
    return 4 if url.startswith("s3://") else 16


def test_skip_if_exists_race_and_incr_total(opened: tuple[Any, str, dict[str, str]]) -> None:
    store, url, _ = opened
    Dict.objects.create("race", store=url)
    n, increments = processes_for(url), 10
    outs = finish(release_together([spawn(url, "race", "race", i, increments) for i in range(n)]))
    said = [o.split()[0] for o in outs]
    winners = [i for i, s in enumerate(said) if s == "True"]
    assert len(winners) == 1 and said.count("False") == n - 1, said
    d = Dict.from_name("race", store=url)
    assert d["winner"] == str(winners[0])
    assert d["count"] == n * increments  # no increment lost


def test_each_popped_job_goes_to_exactly_one_process(
    opened: tuple[Any, str, dict[str, str]],
) -> None:
    _, url, _ = opened
    Dict.objects.create("jobs", store=url)
    jobs = 120
    Dict.from_name("jobs", store=url).update({k: f"job {k}" for k in range(jobs)})
    # all pop the same keys, in the same order, at once
    children = release_together(
        [spawn(url, "jobs", "pop", jobs) for _ in range(processes_for(url))]
    )
    taken = [int(k) for out in finish(children) for k in out.split()]
    assert sorted(taken) == list(range(jobs))  # none twice, none lost
    assert Dict.from_name("jobs", store=url).len() == 0


def test_lock_guards_unprotected_read_modify_write(
    opened: tuple[Any, str, dict[str, str]],
) -> None:
    _, url, _ = opened
    Dict.objects.create("rmw", store=url)
    n, rounds = 4, 5
    finish([spawn(url, "rmw", "rmw", rounds) for _ in range(n)])
    assert Dict.from_name("rmw", store=url)["n"] == n * rounds


def test_renewal_keeps_the_lock_for_three_leases(
    opened: tuple[Any, str, dict[str, str]],
) -> None:
    _, url, _ = opened
    Dict.objects.create("renew", store=url)
    d = Dict.from_name("renew", store=url)
    lease = 2.0
    holder = spawn(url, "renew", "hold", lease, 3 * lease)
    try:
        expect_line(holder, "held\n")
        # Without renewal, this waiter would take the lock after one lease (+1 s), while
        # the holder still sleeps: before "holder-done" exists.
        with d.lock("L", lease=lease, timeout=300):
            assert d.get("holder-done") is True
    finally:
        out = finish([holder])
    assert out == ["released\n"]


def test_lock_of_a_killed_holder_frees_after_its_lease(
    opened: tuple[Any, str, dict[str, str]],
) -> None:
    store, url, _ = opened
    Dict.objects.create("killed", store=url)
    d = Dict.from_name("killed", store=url)
    lease = 3.0
    holder = spawn(url, "killed", "hold-forever", lease)
    try:
        expect_line(holder, "held\n")
        lock = d.lock("L", lease=lease, timeout=300)
        assert Dict.from_name("killed", store=url).len() == 0  # the lock is no entry
        os.kill(holder.pid, signal.SIGKILL)
        assert holder.wait(timeout=60) == -signal.SIGKILL
        # The holder is dead: this stamp is its last renewal, by the store's clock.
        last_renewal = store.stat(lock.key).mtime
        with lock:
            taken = store.stat(lock.key).mtime  # our acquisition, the same clock
            assert lock.held
        # not before the lease ran out, and it did get the lock afterwards
        assert taken - last_renewal > lease, (last_renewal, taken)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        for pipe in (holder.stdin, holder.stdout, holder.stderr):
            if pipe is not None:
                pipe.close()


def test_ephemeral_dict_of_a_killed_owner_is_reclaimed(
    opened: tuple[Any, str, dict[str, str]],
) -> None:
    store, url, _ = opened
    ttl = 2.0
    owner = spawn(url, "-", "ephemeral", ttl)
    try:
        assert owner.stdout is not None
        dict_id = owner.stdout.readline().strip()
        assert dict_id, owner.stderr.read() if owner.stderr else ""
        lease_key = f"leases/dicts/{dict_id}"
        created = store.stat(lease_key).mtime
        # alive and renewing: a sweep long after one ttl (by the store's clock) keeps it
        while store_now(store) < created + 2 * ttl + CLOCK_SLACK:
            time.sleep(0.2)
        Dict.objects.list(store=url)  # sweeps
        assert Dict.from_id(dict_id, store=url)["x"] == 1
        os.kill(owner.pid, signal.SIGKILL)
        assert owner.wait(timeout=60) == -signal.SIGKILL
        last_renewal = store.stat(lease_key).mtime
        Dict.objects.list(store=url)  # too early (unless the machine stalled a whole ttl)
        if store_now(store) - last_renewal <= ttl:
            assert store.exists(lease_key)
        while store_now(store) <= last_renewal + ttl + CLOCK_SLACK:
            time.sleep(0.2)
        Dict.objects.list(store=url)
        assert list(store.list(f"dicts/{dict_id}/")) == [] and not store.exists(lease_key)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        for pipe in (owner.stdin, owner.stdout, owner.stderr):
            if pipe is not None:
                pipe.close()
