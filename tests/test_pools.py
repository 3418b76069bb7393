"""The process-wide thread pools: warming starts threads that then wait for work."""

from __future__ import annotations

import threading

from jupyter_volume._pools import SharedPool


def threads_of(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


def wait_idle(pool: SharedPool, n: int) -> None:
    """Until ``n`` of the pool's threads are idle. (ThreadPoolExecutor counts its idle
    threads in a semaphore, which a new task takes instead of starting a thread.)"""
    idle = pool._executor()._idle_semaphore  # noqa: SLF001
    for _ in range(n):
        assert idle.acquire(timeout=30)
    for _ in range(n):
        idle.release()


def test_warm_starts_threads_that_wait_for_the_next_work() -> None:
    pool = SharedPool(6, "jv-test-warm")
    pool.warm(4)
    assert len(threads_of("jv-test-warm")) == 4
    wait_idle(pool, 4)
    pool.warm(4)  # already there: none more
    pool.warm(2)
    assert len(threads_of("jv-test-warm")) == 4
    # four tasks that wait for each other run at once, on the threads already there
    together = threading.Barrier(4, timeout=30)
    names = pool.map(lambda _i: (together.wait(), threading.current_thread().name)[1], range(4))
    assert len(set(names)) == 4
    assert len(threads_of("jv-test-warm")) == 4
    wait_idle(pool, 4)
    pool.warm()  # all it may have (idle ones take the first tasks), never more
    assert len(threads_of("jv-test-warm")) == 6
    pool.warm(100)
    assert len(threads_of("jv-test-warm")) == 6
    assert pool.submit(lambda: 42).result(timeout=30) == 42
