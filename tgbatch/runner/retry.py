"""The retry policy of one row's request (tenacity).

Retried: every error whose ``retryable`` flag is set and ``fatal`` is not (429 overloaded or rate-limited, 503
loading or unavailable, 502, 504, 424, 500 incomplete generation, cut streams, connection errors, timeouts). Never
retried: 400, 401, 403, 404, 413, 415, 422, protocol errors. The server's hint (``Retry-After``, ``estimated_time``) is
honoured up to ``max_wait_s``; otherwise the wait is jittered exponential backoff. A row is given up after
``attempts`` attempts or when the next wait would pass ``max_elapsed_s``.

Overload answers (429 overloaded or rate-limited, 503 loading or unavailable) are the server's state, not the
row's: the endpoint pool pauses the endpoint for every row at once (``tgbatch.runner.dispatch``), and such an
answer does not use up one of the row's ``attempts``; it still counts against ``max_elapsed_s``.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_any, stop_before_delay
from tenacity.stop import stop_base

from tgbatch.errors import TGBatchError
from tgbatch.job.spec import RetrySpec
from tgbatch.runner.dispatch import is_overload

T = TypeVar("T")


def _unreachable(exc: BaseException | None) -> bool:
    """No connection could be made: the endpoint pool sets the server aside and probes it; the row waits."""
    return isinstance(exc, TGBatchError) and exc.unreachable


class Stopped(Exception):
    """The job was asked to stop while a row waited to retry: the row stays pending."""


class GaveUp(Exception):
    """A row's request failed for good. ``error`` is the last error, ``attempts`` how many were made."""

    def __init__(self, error: BaseException, attempts: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.attempts = attempts


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, TGBatchError) and exc.retryable and not exc.fatal


class RetryPolicy:
    """Runs a request with retries. ``on_retry(exc)`` is called before each wait; ``stop`` (an event) cuts
    waits short, raising ``Stopped``."""

    def __init__(
        self,
        spec: RetrySpec,
        *,
        on_retry: Callable[[BaseException], None] | None = None,
        stop: anyio.Event | None = None,
        rng: random.Random | None = None,
        pooled: bool = False,
    ) -> None:
        self.spec = spec
        self.on_retry = on_retry
        self.stop = stop
        self.pooled = pooled
        self._rng = rng or random.Random()

    def wait_for(self, attempt: int, exc: BaseException | None, *, pooled: bool = False) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based). ``pooled``: an endpoint pool
        already pauses overloaded endpoints, so an overload answer needs only a little jitter here."""
        cap = self.spec.max_wait_s
        if pooled and (is_overload(exc) or _unreachable(exc)):
            return self._rng.uniform(0, min(cap, self.spec.initial_wait_s) / 4)
        hint = getattr(exc, "retry_after", None)
        if isinstance(hint, int | float) and hint >= 0:
            # the server's hint, capped, THEN a little jitter so waiting workers do not return in lockstep: jitter
            # before the cap would make every long wait exactly max_wait_s, and every process wake at once
            return min(cap, hint) * (1.0 + 0.1 * self._rng.random())
        base = min(cap, self.spec.initial_wait_s * 2.0 ** min(attempt - 1, 60))
        return base / 2 + self._rng.uniform(0, base / 2)

    async def _sleep(self, seconds: float) -> None:
        if self.stop is None:
            await anyio.sleep(seconds)
            return
        if self.stop.is_set():
            raise Stopped()
        with anyio.move_on_after(seconds):
            await self.stop.wait()
            raise Stopped()

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        return self.wait_for(state.attempt_number, exc, pooled=self.pooled)

    def _before_sleep(self, state: RetryCallState) -> None:
        if self.on_retry is not None and state.outcome is not None:
            exc = state.outcome.exception()
            if exc is not None:
                self.on_retry(exc)

    async def call(self, fn: Callable[[], Awaitable[T]]) -> tuple[T, int]:
        """``(result, attempts)``; raises ``GaveUp`` (chained) when the row fails, ``Stopped`` when stopping.
        ``attempts`` counts every request sent, overload answers included."""
        # the first attempt runs outside tenacity: most rows succeed at once, and setting up a retry loop
        # (tenacity inspects the callable on every call) would cost more than the request itself
        try:
            return await fn(), 1
        except TGBatchError as exc:
            if exc.fatal:
                raise  # no row's fault: the caller stops the job
            if not is_retryable(exc):
                raise GaveUp(exc, 1) from exc
            first = exc
        return await self._retry(fn, first)

    async def _retry(self, fn: Callable[[], Awaitable[T]], first: TGBatchError) -> tuple[T, int]:
        attempts = 1
        charged = 0  # attempts that count against spec.attempts: not overload answers
        pending_first: TGBatchError | None = first

        async def counted() -> Any:
            nonlocal attempts, pending_first
            if pending_first is not None:
                # replay the first attempt's failure so tenacity's stop, wait and callbacks see it
                error, pending_first = pending_first, None
                raise error
            attempts += 1
            return await fn()

        class OutOfAttempts(stop_base):
            def __call__(inner, state: RetryCallState) -> bool:
                nonlocal charged
                exc = state.outcome.exception() if state.outcome is not None else None
                if not (is_overload(exc) or _unreachable(exc)):  # the server's state, not the row's
                    charged += 1
                return charged >= self.spec.attempts

        retrying = AsyncRetrying(
            stop=stop_any(OutOfAttempts(), stop_before_delay(self.spec.max_elapsed_s)),
            wait=self._wait,
            retry=retry_if_exception(is_retryable),
            sleep=self._sleep,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            result: T = await retrying(counted)
        except TGBatchError as exc:
            if exc.fatal:
                raise
            raise GaveUp(exc, attempts) from exc
        return result, attempts
