"""Thread pools shared by a whole process, safe across ``fork``.

A ``ThreadPoolExecutor`` copied into a forked child (``multiprocessing``'s default start
method on Linux) still believes its threads exist, but the child has none: the first task
it is given never runs and the child hangs. These pools make their executor on first use
and forget it in a forked child, which then makes its own.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_all: weakref.WeakSet[SharedPool] = weakref.WeakSet()


class SharedPool:
    """A lazily made ``ThreadPoolExecutor`` with ``submit`` and ``map``, remade after fork."""

    def __init__(self, max_workers: int, thread_name_prefix: str) -> None:
        self.max_workers = max_workers
        self._prefix = thread_name_prefix
        self._ex: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        _all.add(self)

    def _executor(self) -> ThreadPoolExecutor:
        ex = self._ex
        if ex is None:
            with self._lock:
                if self._ex is None:
                    self._ex = ThreadPoolExecutor(self.max_workers, self._prefix)
                ex = self._ex
        return ex

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` on the pool (as ``ThreadPoolExecutor.submit``)."""
        return self._executor().submit(fn, *args, **kwargs)

    def map(self, fn: Callable[..., T], *iterables: Iterable[Any]) -> Iterator[T]:
        """``fn`` over ``iterables`` on the pool, results in order (as ``Executor.map``)."""
        return self._executor().map(fn, *iterables)

    def warm(self, n: int | None = None) -> None:
        """Start threads until the pool has ``n`` (all it may have, by default); they wait
        for work.

        A pool starts a thread when a task finds none idle, and the start waits for the
        new thread to run: behind the GIL, which the threads started just before hold
        while they prepare their requests. The ten tree nodes of a mount were asked for
        over 10 ms instead of at once. Started before the work comes (with nothing else
        running, about 0.1 ms a thread), they are waiting for it."""
        want = self.max_workers if n is None else min(n, self.max_workers)
        ex = self._executor()
        if len(ex._threads) >= want:  # noqa: SLF001 - how many it has started
            return
        # ``want`` tasks that hold their threads until all are handed out: the idle
        # threads take the first ones, and each of the others starts a thread
        gate = threading.Event()
        for _ in range(want):
            ex.submit(gate.wait)
        gate.set()

    def beside(self, fn: Callable[..., T], /, *args: Any) -> Beside[T]:
        """Start ``fn(*args)`` on the pool while the caller does something else; see
        :class:`Beside`."""
        return Beside(self.submit(fn, *args), fn, args)

    def _forget(self) -> None:
        self._ex = None
        self._lock = threading.Lock()


class Beside(Generic[T]):
    """Work started on a pool beside the caller's own (a request that does not depend
    on the one the caller makes meanwhile). :meth:`result` gives its result, and does the
    work on the calling thread instead if the pool has not started it yet: a busy pool
    never makes the caller wait longer than doing the work itself would."""

    def __init__(self, future: Future[T], fn: Callable[..., T], args: tuple[Any, ...]) -> None:
        self._future, self._fn, self._args = future, fn, args

    def result(self) -> T:
        """The work's result (or its exception), here if it had not started."""
        if self._future.cancel():
            return self._fn(*self._args)
        return self._future.result()

    def drop(self) -> None:
        """Not needed after all: it is dropped unless it has started (a started one
        finishes on its own, its result unread)."""
        self._future.cancel()

    def __enter__(self) -> Beside[T]:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        # the caller's own work failed: its result will not be asked for
        if exc_type is not None:
            self.drop()


#: the pool of :func:`beside`: single requests made beside others (none waits for one of
#: its threads, and :meth:`Beside.result` never waits behind a busy one)
_side_pool = SharedPool(4, "jv-side")


def one_at_a_time(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn``, called by one thread at a time: for a progress callback told of bytes or
    files from the download threads (a bar's counts are not safe to update from several
    threads at once)."""
    lock = threading.Lock()

    def call(*args: Any, **kwargs: Any) -> T:
        with lock:
            return fn(*args, **kwargs)

    return call


def beside(fn: Callable[..., T], /, *args: Any) -> Beside[T]:
    """Start ``fn(*args)`` beside the caller's own work (a request that does not depend on
    the one the caller makes meanwhile). Use it as a context manager around that work, so
    that it is dropped if the work fails::

        with beside(store.get_or_none, "config") as config:
            check_the_format()
        raw = config.result()
    """
    return _side_pool.beside(fn, *args)


def _after_fork_in_child() -> None:
    for pool in list(_all):
        pool._forget()


os.register_at_fork(after_in_child=_after_fork_in_child)
