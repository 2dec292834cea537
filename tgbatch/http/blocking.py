"""Driving the async transport from sync code: an event loop on a daemon thread.

The sync client runs the very same async code as the async client on this loop, so the two cannot differ in
errors, proxies, cookies or headers. Not anyio's ``start_blocking_portal`` held open: when a client was never
closed, the interpreter finalised that context manager's generator during shutdown, and its ``finally`` waited
for the portal's thread, which can no longer run by then, so the script never exited. Here the loop is stopped
by a ``weakref.finalize`` when the client is collected, or at exit while its thread still runs, and nothing
waits on the thread after that.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from typing import Any, ParamSpec, TypeVar

T = TypeVar("T")
P = ParamSpec("P")

_END: Any = object()

#: how long closing waits for the transport to close and the thread to end
CLOSE_TIMEOUT_S = 10.0


async def _call(fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    return await fn(*args, **kwargs)


async def _next(iterator: AsyncGenerator[T, None]) -> T:
    try:
        return await iterator.__anext__()
    except StopAsyncIteration:
        # a sentinel, not the exception: StopAsyncIteration should not cross the thread boundary
        return _END


class BackgroundLoop:
    """An asyncio loop on its own daemon thread; ``run`` and ``iterate`` block the calling thread meanwhile.
    Any number of threads may call in at once: their calls share the loop."""

    def __init__(self, name: str = "tgbatch-client-loop") -> None:
        self._loop = asyncio.new_event_loop()
        self._closed = False
        #: async generators ``iterate`` is stepping through: closed, outermost first, when the loop closes
        self._open: set[AsyncGenerator[Any, None]] = set()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    def run(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """``await fn(*args, **kwargs)`` on the loop; its result, or its exception re-raised here."""
        if self._closed:
            raise RuntimeError("The client has been closed")
        future = asyncio.run_coroutine_threadsafe(_call(fn, args, kwargs), self._loop)
        try:
            return future.result()
        finally:
            future.cancel()  # a no-op once done; stops the call if this thread was interrupted (Ctrl-C)

    def iterate(self, iterator: AsyncGenerator[T, None]) -> Iterator[T]:
        """A sync iterator over an async generator, each step run on the loop; closed when abandoned."""
        self._open.add(iterator)
        try:
            while (item := self.run(_next, iterator)) is not _END:
                yield item
        finally:
            self._open.discard(iterator)
            if not self._closed:
                self.run(iterator.aclose)

    def close(self, cleanup: Callable[[], Awaitable[None]] | None = None) -> None:
        """Run ``cleanup`` on the loop, stop it and end the thread. Idempotent; waits a bounded time."""
        if self._closed:
            return
        self._closed = True
        if threading.current_thread() is self._thread:
            # called on the loop itself (the collector ran the finalizer there): it cannot wait for itself
            self._loop.call_soon(self._loop.stop)
            return
        future = asyncio.run_coroutine_threadsafe(_shutdown(cleanup, list(self._open)), self._loop)
        with contextlib.suppress(Exception):  # closing must neither fail nor hang: the client is going away
            future.result(CLOSE_TIMEOUT_S)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CLOSE_TIMEOUT_S)


async def _shutdown(cleanup: Callable[[], Awaitable[None]] | None, iterators: list[AsyncGenerator[Any, None]]) -> None:
    # calls other threads still wait on: cancelled (they raise CancelledError there) rather than left to hang
    await _cancel_others()
    # streams abandoned open: closed from the outside in, so that each releases its response in order (the
    # loop's shutdown_asyncgens would close the nested generators in any order)
    for iterator in iterators:
        with contextlib.suppress(Exception):
            await iterator.aclose()
    if cleanup is not None:
        await cleanup()
    # closing a stream can leave a task of its own behind (an in-process server's response writer): a task
    # still pending when the loop closes is reported on stderr at exit, so it is cancelled and awaited too
    await _cancel_others()


async def _cancel_others() -> None:
    others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)
