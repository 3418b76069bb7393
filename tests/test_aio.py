"""The ``.aio`` forms: same results as the blocking call, and the event loop keeps running."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import pytest

from jupyter_volume.aio import aio


class Thing:
    def __init__(self) -> None:
        self.n = 3
        self.threads: set[str] = set()

    @aio
    def get(self, x: int = 1) -> int:
        """Doc of get."""
        self.threads.add(threading.current_thread().name)
        time.sleep(0.2)
        return x * self.n

    @aio
    def gen(self, k: int):  # type: ignore[no-untyped-def]
        for i in range(k):
            time.sleep(0.02)
            yield i

    @aio(kind="iter")
    def returns_iter(self, k: int):  # type: ignore[no-untyped-def]
        self.threads.add(threading.current_thread().name)
        return iter(range(k))

    @aio(kind="context")
    @contextlib.contextmanager
    def ctx(self):  # type: ignore[no-untyped-def]
        self.threads.add(threading.current_thread().name)
        yield self

    @aio
    @classmethod
    def make(cls) -> Thing:
        return cls()

    @aio
    @staticmethod
    def double(x: int) -> int:
        return 2 * x


def test_blocking_forms_unchanged() -> None:
    t = Thing()
    assert t.get(2) == 6
    assert Thing.get(t, 2) == 6
    assert Thing.get.__doc__ == "Doc of get."
    assert t.get.__name__ == "get"
    assert list(t.gen(3)) == [0, 1, 2]
    with t.ctx() as x:
        assert x is t
    assert isinstance(Thing.make(), Thing)
    assert Thing.double(4) == 8


def test_aio_forms_run_off_the_loop() -> None:
    t = Thing()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async def main() -> None:
        task = asyncio.create_task(ticker())
        before = ticks
        assert await t.get.aio(2) == 6
        # the loop kept ticking during the 0.2 s blocking call (no threshold on how often)
        assert ticks > before
        assert [i async for i in t.gen.aio(4)] == [0, 1, 2, 3]
        assert [i async for i in t.returns_iter.aio(2)] == [0, 1]
        async with t.ctx.aio() as x:
            assert x is t
        assert isinstance(await Thing.make.aio(), Thing)
        assert await Thing.double.aio(5) == 10
        task.cancel()

    asyncio.run(main())
    assert threading.main_thread().name not in t.threads


class Gate:
    """A context manager (a plain class, as a lock is: nothing exits it when it is
    dropped) whose enter waits until it is let in, and that records exits."""

    def __init__(self) -> None:
        self.let_in = threading.Event()
        self.entered = threading.Event()
        self.exited = threading.Event()

    def __enter__(self) -> Gate:
        self.let_in.wait(30)
        self.entered.set()
        return self

    def __exit__(self, *exc: object) -> None:
        self.exited.set()

    @aio(kind="context")
    def hold(self) -> Gate:
        return self


def test_a_cancelled_async_enter_is_exited_once_it_completes() -> None:
    # A thread cannot be stopped: an `async with x.aio()` cancelled while its enter
    # waits (a lock held elsewhere, under asyncio.timeout) still enters in its thread
    # later. What it entered must then be exited, or a lock stays taken for good.
    g = Gate()

    async def main() -> None:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                async with g.hold.aio():
                    raise AssertionError("never entered in time")
        assert not g.entered.is_set()
        g.let_in.set()  # the abandoned enter now completes in its thread

    asyncio.run(main())
    assert g.entered.wait(10), "the enter never completed"
    assert g.exited.wait(10), "what the cancelled enter took was never given back"


def test_bad_kind_refused() -> None:
    with pytest.raises(ValueError, match="aio kind"):
        aio(kind="nope")
