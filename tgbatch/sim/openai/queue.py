"""The scheduler of the queueing flavours (vLLM, SGLang): at most ``max_running`` requests decode together;
the others wait in FIFO order, without limit unless ``max_queued`` is set (then one more is refused). So under
load latency grows while throughput stays flat, and nothing is refused: what a client must read from latency
and from the ``num_requests_waiting`` gauge rather than from 429s.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class QueueFull(Exception):
    """The waiting queue is at ``max_queued``."""


class Scheduler:
    def __init__(self, max_running: int, max_queued: int | None) -> None:
        self.max_running = max_running
        self.max_queued = max_queued
        self.running = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def admit(self) -> None:
        """Refuse now (``QueueFull``) if the request would have to wait in a full queue."""
        if self.running >= self.max_running and self.max_queued is not None and self.waiting >= self.max_queued:
            raise QueueFull

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a batch slot for the block, waiting for one in FIFO order."""
        if self.running >= self.max_running or self._waiting:
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting.append(turn)
            try:
                await turn
            except BaseException:
                if turn in self._waiting:
                    self._waiting.remove(turn)
                elif turn.done() and not turn.cancelled():
                    self._release()  # the slot was handed over just as the waiter went away
                raise
        else:
            self.running += 1
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        # hand the slot straight to the oldest waiter, so a newcomer cannot overtake the queue
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self.running -= 1
