"""One row's request, start to finish: pick an endpoint from the pool, send through its backend, account the
outcome with the pool, retry what the retry policy retries (elsewhere when it can), and hand the writer a typed
``RowOutcome`` with the output record."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tgbatch.errors import EndpointError, TGBatchError, TransportError
from tgbatch.job.render import Rendered
from tgbatch.job.spec import JobSpec
from tgbatch.output.records import Records
from tgbatch.runner.control import RunControl
from tgbatch.runner.dispatch import Endpoint, EndpointPool, NoEndpointAvailable
from tgbatch.runner.events import RowDone
from tgbatch.runner.retry import GaveUp, RetryPolicy, Stopped
from tgbatch.types import GenerationRequest, GenerationResult


@dataclass(frozen=True, slots=True)
class Work:
    """A rendered row (one sample) waiting for a worker: its input is a prompt or chat messages."""

    row_id: str
    sample: int
    rendered: Rendered
    row: dict[str, Any]
    seed: int | None

    @property
    def prompt(self) -> str | None:
        return self.rendered.prompt

    @property
    def messages(self) -> tuple[Any, ...] | None:
        return self.rendered.messages

    @property
    def sent_seed(self) -> int | None:
        """The seed the request carries: the policy's, unless the row's own body sets one (a batch line)."""
        own = self.rendered.params.get("seed") if self.rendered.params else None
        return own if isinstance(own, int) and not isinstance(own, bool) and own >= 0 else self.seed

    def request(self) -> GenerationRequest:
        r = self.rendered
        return GenerationRequest(prompt=r.prompt, messages=r.messages, seed=self.sent_seed, params=r.params)


@dataclass(frozen=True, slots=True)
class RowOutcome:
    """A row (one sample) done for good: its output record (``data/`` when ``done.ok``, else ``errors/``)."""

    done: RowDone
    record: dict[str, Any]


class _Tries:
    """What one row's attempts learned: where it last failed (the retry goes elsewhere), who answered, how
    long the last request took."""

    __slots__ = ("endpoint", "failed_on", "latency")

    def __init__(self) -> None:
        self.failed_on: Endpoint | None = None
        self.endpoint: str | None = None
        self.latency = 0.0


class RowRequester:
    """Runs rows through the pool. One per worker task: its retry policy reports retries against the endpoint
    of the row the worker is on."""

    def __init__(
        self,
        spec: JobSpec,
        pool: EndpointPool,
        control: RunControl,
        records: Records,
        on_retry: Callable[[BaseException, str | None], None],
    ) -> None:
        self.spec = spec
        self.pool = pool
        self.control = control
        self.records = records
        self._tries = _Tries()
        self._on_retry = on_retry
        self.policy = RetryPolicy(spec.retry, on_retry=self._retried, stop=control.event, pooled=True)

    def _retried(self, error: BaseException) -> None:
        failed_on = self._tries.failed_on
        self._on_retry(error, failed_on.url if failed_on is not None else None)

    async def run(self, work: Work) -> RowOutcome | None:
        """The row's outcome, or ``None`` when the job stopped first (the row stays pending)."""
        tries = self._tries = _Tries()
        deadline = time.monotonic() + self.spec.retry.max_elapsed_s
        request = work.request()

        async def attempt() -> GenerationResult:
            return await self._send(request, tries, deadline)

        try:
            result, attempts = await self.policy.call(attempt)
        except Stopped:
            return None
        except GaveUp as gave_up:
            if isinstance(gave_up.error, TGBatchError) and gave_up.error.unreachable:
                self.control.fail(outage_error(self.pool, self.spec.retry.max_elapsed_s))
                return None  # the row stays pending: an outage is no row's failure
            return self._failed(work, gave_up.error, gave_up.attempts, tries)
        except TGBatchError as exc:
            if not exc.fatal:
                raise
            self.control.fail(exc)
            return None
        return self._succeeded(work, result, attempts, tries)

    async def _send(self, request: GenerationRequest, tries: _Tries, deadline: float) -> GenerationResult:
        try:
            endpoint = await self.pool.acquire(avoid=tries.failed_on, deadline=deadline)
        except NoEndpointAvailable as exc:
            if self.pool.outage_since() is not None:  # every server is down: the job's state, not the row's
                raise TransportError(f"no endpoint is reachable: {exc}", unreachable=True) from exc
            raise TransportError(f"no endpoint could take the request in time: {exc}", retryable=False) from exc
        tries.endpoint = endpoint.url
        t0 = time.perf_counter()
        try:
            result = await endpoint.client.request(request)
        except TGBatchError as exc:
            tries.latency = time.perf_counter() - t0
            self.pool.release_failure(endpoint, exc)
            # the retry goes elsewhere when it can; an overloaded endpoint is paused by the pool anyway
            tries.failed_on = endpoint
            raise
        except BaseException:
            self.pool.release_cancelled(endpoint)
            raise
        tries.latency = time.perf_counter() - t0
        self.pool.release_success(endpoint, tries.latency, result.generated_tokens or 0)
        return result

    def _succeeded(self, work: Work, result: GenerationResult, attempts: int, tries: _Tries) -> RowOutcome:
        record = self.records.data(
            row_id=work.row_id,
            sample=work.sample,
            rendered=work.rendered,
            result=result,
            seed=work.sent_seed,
            attempts=attempts,
            latency_s=tries.latency,
            endpoint=tries.endpoint,
            row=work.row,
        )
        tokens = result.generated_tokens or 0
        return RowOutcome(RowDone(True, tokens, tries.latency, tries.endpoint, attempts), record)

    def _failed(self, work: Work, error: BaseException, attempts: int, tries: _Tries) -> RowOutcome:
        record = self.records.error(
            row_id=work.row_id,
            sample=work.sample,
            rendered=work.rendered,
            error=error,
            attempts=attempts,
            latency_s=tries.latency,
            endpoint=tries.endpoint,
            seed=work.sent_seed,
            row=work.row,
        )
        return RowOutcome(RowDone(False, 0, tries.latency, tries.endpoint, attempts), record)


def outage_error(pool: EndpointPool, waited_s: float) -> EndpointError:
    urls = ", ".join(e.url for e in pool.endpoints)
    return EndpointError(
        f"no endpoint could be reached for {waited_s:g} s ({urls}); the job stopped. Nothing was marked failed: "
        "start the server (or fix endpoint.url) and run the same command again to resume (retry.max_outage_s "
        "sets how long an outage is waited out)"
    )


def unrenderable(row_id: str, sample: int, row: dict[str, Any], error: BaseException, records: Records) -> RowOutcome:
    """A row whose prompt or messages could not be rendered: recorded in ``errors/`` without a request."""
    record = records.error(
        row_id=row_id,
        sample=sample,
        rendered=None,
        error=error,
        attempts=0,
        latency_s=0.0,
        endpoint=None,
        seed=None,
        row=row,
    )
    return RowOutcome(RowDone(False, 0, 0.0, None, 0), record)
