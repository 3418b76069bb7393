"""Async forms of blocking methods: ``await obj.method.aio(...)``, as in Modal's client.

Every public method of :class:`~jupyter_volume.Volume` (and of the other object kinds)
is written once, as ordinary blocking code, and decorated with :func:`aio`. The decorated
method still works as before when called, and also has an ``.aio`` attribute that runs
the same work off the event loop, in a worker thread, so a notebook's other tasks keep
running while a large read or upload is under way:

* a plain method becomes a coroutine: ``await vol.listdir.aio("/")``;
* a method that returns an iterator (``kind="iter"``, inferred for generator functions)
  becomes an async iterator that fetches each item in a worker thread:
  ``async for chunk in vol.read_file.aio(path)``;
* a method that returns a context manager (``kind="context"``) becomes an async context
  manager whose enter and exit run in a worker thread:
  ``async with vol.batch_upload.aio() as batch``.

Works on instance methods, classmethods and staticmethods (apply ``@aio`` outermost).
This module imports nothing from the rest of the package.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

__all__ = ["aio"]

_KINDS = ("call", "iter", "context")
_END = object()


async def _aiter(it: Any) -> AsyncIterator[Any]:
    iterator = iter(it)
    try:
        while True:
            item = await asyncio.to_thread(next, iterator, _END)
            if item is _END:
                return
            yield item
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            await asyncio.to_thread(close)


class _AsyncContext:
    """Runs a blocking context manager's construction, enter and exit off the loop."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._cm: Any = None

    async def __aenter__(self) -> Any:
        # A thread cannot be stopped: if the task is cancelled while the enter waits (a
        # lock held elsewhere, under asyncio.timeout), the enter still completes in its
        # thread later, and nothing would ever exit what it entered (a lock would stay
        # taken, its lease renewed, as long as the process lives). So whichever side
        # finds the other gone exits it: the thread, if the task gave up first; the
        # task, if the enter completed but the task was cancelled before it saw that.
        guard = threading.Lock()
        gave_up = False
        entered: list[Any] = []

        def enter() -> Any:
            cm = self._make()
            value = cm.__enter__()
            with guard:
                if not gave_up:
                    entered.append(cm)
                    return value
            cm.__exit__(None, None, None)
            return None

        try:
            value = await asyncio.to_thread(enter)
        except asyncio.CancelledError:
            with guard:
                gave_up = True
            if entered:
                threading.Thread(
                    target=entered[0].__exit__,
                    args=(None, None, None),
                    name="jv-aio-exit",
                    daemon=True,
                ).start()
            raise
        self._cm = entered[0]
        return value

    async def __aexit__(self, *exc: Any) -> Any:
        return await asyncio.to_thread(self._cm.__exit__, *exc)


class _Bound:
    """A method bound to its object (or class), callable, with an ``.aio`` form."""

    __slots__ = ("__wrapped__", "_kind")

    def __init__(self, fn: Callable[..., Any], kind: str) -> None:
        self.__wrapped__ = fn
        self._kind = kind

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__wrapped__(*args, **kwargs)

    def aio(self, *args: Any, **kwargs: Any) -> Any:
        """The same call, run in a worker thread (see :mod:`jupyter_volume.aio`)."""
        fn = self.__wrapped__
        if self._kind == "iter":
            return _aiter(_Lazy(fn, args, kwargs))
        if self._kind == "context":
            return _AsyncContext(functools.partial(fn, *args, **kwargs))
        return asyncio.to_thread(fn, *args, **kwargs)

    @property
    def __doc__(self) -> str | None:  # type: ignore[override]
        return self.__wrapped__.__doc__

    @property
    def __name__(self) -> str:
        return getattr(self.__wrapped__, "__name__", "")

    def __repr__(self) -> str:
        return f"<method {getattr(self.__wrapped__, '__qualname__', self.__wrapped__)!r}>"


class _Lazy:
    """Defers the call that produces an iterator until the first item is asked for, so
    the call itself (which may already talk to the store) also runs off the loop."""

    __slots__ = ("_args", "_fn", "_it", "_kwargs")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]):
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self._it: Any = None

    def __iter__(self) -> _Lazy:
        return self

    def __next__(self) -> Any:
        if self._it is None:
            self._it = iter(self._fn(*self._args, **self._kwargs))
        return next(self._it)

    def close(self) -> None:
        close = getattr(self._it, "close", None)
        if close is not None:
            close()


class _AioDescriptor:
    def __init__(self, fn: Any, kind: str) -> None:
        self._fn = fn
        self._kind = kind
        inner = fn.__func__ if isinstance(fn, classmethod | staticmethod) else fn
        functools.update_wrapper(self, inner)  # type: ignore[arg-type]

    def __get__(self, obj: Any, objtype: type | None = None) -> _Bound:
        if isinstance(self._fn, classmethod | staticmethod):
            bound = self._fn.__get__(obj, objtype)
        elif obj is None:
            bound = self._fn
        else:
            bound = self._fn.__get__(obj, objtype)
        return _Bound(bound, self._kind)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:  # a plain function, undecorated use
        return self._fn(*args, **kwargs)


def aio(fn: Any = None, *, kind: str | None = None) -> Any:
    """Give a method an ``.aio`` form that runs it off the event loop.

    Args:
        fn: the method (instance method, classmethod or staticmethod).
        kind: ``"call"`` (a coroutine), ``"iter"`` (an async iterator over what the
            method returns) or ``"context"`` (an async context manager). Default:
            ``"iter"`` for generator functions, else ``"call"``.

    Example::

        class Thing:
            @aio
            def size(self) -> int: ...

        await Thing().size.aio()
    """
    if kind is not None and kind not in _KINDS:
        raise ValueError(f"aio kind must be one of {_KINDS}, got {kind!r}")

    def wrap(f: Any) -> _AioDescriptor:
        k = kind
        if k is None:
            inner = f.__func__ if isinstance(f, classmethod | staticmethod) else f
            k = "iter" if inspect.isgeneratorfunction(inner) else "call"
        return _AioDescriptor(f, k)

    return wrap(fn) if fn is not None else wrap
