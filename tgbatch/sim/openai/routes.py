"""The OpenAI routes (``/v1/chat/completions``, ``/v1/completions``, ``/v1/models``) and the queueing flavours'
own GET routes (``/version``, ``/metrics``), in each server's order of checks.

Per request: the proxy faults and auth as on ``/generate``, the body, the flavour's parameter checks, then
admission (TGI: the concurrency semaphore, 429 beyond; vLLM/SGLang: the FIFO queue, 503 only beyond
``max_queued_requests``), validation (TGI inside its stream, so a streamed TGI error is an event of a 200),
the model, and the latency model while the request holds its batch slot.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from tgbatch.sim import wire
from tgbatch.sim.faults import Decision, Fault
from tgbatch.sim.http import Rejection, read_json
from tgbatch.sim.openai import shape, stream
from tgbatch.sim.openai.engine import Output, Planned, plan, run
from tgbatch.sim.openai.flavors import FLAVORS, SGLANG_VERSION, VLLM_VERSION
from tgbatch.sim.openai.queue import QueueFull, Scheduler
from tgbatch.sim.openai.requests import BadRequest, Job, parse
from tgbatch.sim.router import OVERLOADED
from tgbatch.sim.sse import SSEResponse

if TYPE_CHECKING:
    from tgbatch.sim.app import SimServer

JSON = "application/json"
QUEUE_FULL = "The request queue is full."
SHARD_ERROR = "Request failed during generation: Server error: CUDA out of memory. Tried to allocate 2.00 GiB"


class Refusal(Exception):
    """An answer other than the generation: an error response in the flavour's shape."""

    def __init__(self, status: int, message: str, error_type: str = "validation") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type


class OpenAIRoutes:
    def __init__(self, server: SimServer) -> None:
        self.server = server
        self.config = server.config
        self.flavor = FLAVORS[server.config.flavor]
        self.scheduler = Scheduler(self.config.max_batch_size, self.config.max_queued_requests)
        self.created = int(time.time())

    # -- GET routes --------------------------------------------------------------------------------------

    async def models(self, request: Request) -> Response:
        c = self.config
        card = self.flavor.model_card(c.model_id, self.created, c.max_total_tokens)
        return self._json(200, {"object": "list", "data": [card]})

    async def version(self, request: Request) -> Response:
        return self._json(200, {"version": VLLM_VERSION if self.flavor.name == "vllm" else SGLANG_VERSION})

    async def metrics(self, request: Request) -> Response:
        text = self.flavor.gauges(self.config.model_id, self.scheduler.running, self.scheduler.waiting)
        return Response(text, media_type="text/plain; version=0.0.4")

    # -- POST routes -------------------------------------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        return await self._handle(request, chat=True)

    async def completions(self, request: Request) -> Response:
        return await self._handle(request, chat=False)

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
        return Response(wire.dumps(obj), status_code=status, headers=headers, media_type=JSON)

    def _error(self, status: int, message: str, error_type: str = "validation") -> Response:
        self.server.metrics.failure(error_type)
        return self._json(status, self.flavor.error_body(status, message, error_type))

    def _loading(self, remaining: float) -> Response:
        """A loading model's answer in the flavour's shape (TGI's routes share the HF API's body)."""
        message = f"Model {self.config.model_id} is currently loading"
        if self.flavor.name == "tgi":
            return self._json(503, {"error": message, "estimated_time": round(remaining, 3)})
        return self._error(503, message, "loading")

    async def _read(self, request: Request, chat: bool) -> Job:
        tgi = self.flavor.name == "tgi"
        try:
            body = await read_json(request, self.config.payload_limit, require_json_type=tgi)
        except Rejection as rejection:
            if tgi or rejection.status == 413:
                raise
            raise BadRequest(f"JSON decode error: {rejection.text}") from rejection
        if tgi and not chat and isinstance(body, dict) and isinstance(body.get("prompt"), list):
            size = len(body["prompt"])
            if size > self.config.max_client_batch_size:
                raise BadRequest(
                    f"Number of prompts exceeds the maximum allowed batch size of {self.config.max_client_batch_size}",
                    error_type="batch size exceeded",
                )
        if tgi and not chat and isinstance(body, dict) and body.get("suffix") is not None:
            raise BadRequest(
                "Suffix is not supported and can be achieved by preprocessing the prompt.",
                error_type="suffix not supported",
            )
        return parse(body, self.flavor, chat=chat, model_id=self.config.model_id)

    async def _handle(self, request: Request, *, chat: bool) -> Response:
        arrived = time.perf_counter()
        decision = self.server.faults.decide()
        early = await self.server.gate(request, decision, loading=self._loading)
        if early is not None:
            return early
        try:
            job = await self._read(request, chat)
        except Rejection as rejection:
            return rejection.response()
        except BadRequest as bad:
            return self._error(bad.status or self.flavor.bad_request, bad.message, bad.error_type)
        self.server.metrics.request_count += 1
        if job.stream:
            return await self._stream(job, decision, arrived)
        try:
            async with self._admitted(decision):
                planned = self._plan(job)
                outputs = run(job, planned, self.config)
                await self._compute(planned, outputs, decision)
        except Refusal as refusal:
            return self._error(refusal.status, refusal.message, refusal.error_type)
        if decision.fault is Fault.DROP:
            from tgbatch.sim.app import DroppedResponse

            self.server.metrics.fault("drop")
            return DroppedResponse()
        self._succeeded(planned, outputs, arrived)
        build = shape.chat_response if chat else shape.completion_response
        return self._json(200, build(self.flavor, job, outputs, int(time.time())))

    def _plan(self, job: Job) -> Planned:
        try:
            return plan(job, self.flavor, self.server.router, self.config)
        except BadRequest as bad:
            raise Refusal(bad.status or self.flavor.bad_request, bad.message, bad.error_type) from bad

    @asynccontextmanager
    async def _admitted(self, decision: Decision) -> AsyncIterator[None]:
        """Admission: TGI's semaphore permit (429 without one) or a vLLM/SGLang batch slot (503 only when the
        queue is at its cap)."""
        s = self.server
        if decision.fault is Fault.OVERLOADED:
            s.metrics.fault("overloaded")
        if not self.flavor.queues:
            if decision.fault is Fault.OVERLOADED or not s.router.try_acquire(1):
                raise Refusal(429, OVERLOADED, "overloaded")
            try:
                yield
            finally:
                s.router.release(1)
            return
        try:
            if decision.fault is Fault.OVERLOADED:
                raise QueueFull
            self.scheduler.admit()
        except QueueFull as exc:
            raise Refusal(503, QUEUE_FULL, "overloaded") from exc
        async with self.scheduler.slot():
            yield

    async def _compute(self, planned: Planned, outputs: list[Output], decision: Decision) -> None:
        """The GPU time of the whole answer (non-streamed), a stall before it, an injected failure after it."""
        latency = self.server.latency
        if decision.stall:
            self.server.metrics.fault("stall")
            await asyncio.sleep(self.config.stall_s)
        if latency.enabled:
            with latency.in_batch(len(outputs)):
                longest = max((o.completion_tokens for o in outputs), default=0)
                await latency.work(latency.prefill_cost(sum(planned.prompt_tokens)) + latency.decode_cost(longest))
        if decision.fault is Fault.ERROR:
            self.server.metrics.fault("error")
            raise Refusal(500 if self.flavor.name != "tgi" else 424, SHARD_ERROR, "generation")

    def _succeeded(self, planned: Planned, outputs: list[Output], arrived: float) -> None:
        generated = sum(o.completion_tokens for o in outputs)
        self.server.metrics.success(
            generated, sum(planned.prompt_tokens), max(planned.max_new), time.perf_counter() - arrived
        )

    async def _stream(self, job: Job, decision: Decision, arrived: float) -> Response:
        planned: Planned | None = None
        if self.flavor.name != "tgi":
            # vLLM and SGLang validate and admit before the stream starts: their errors are plain responses
            try:
                planned = self._plan(job)
                if decision.fault is Fault.OVERLOADED:
                    raise Refusal(503, QUEUE_FULL, "overloaded")
                self.scheduler.admit()
            except Refusal as refusal:
                return self._error(refusal.status, refusal.message, refusal.error_type)
            except QueueFull:
                return self._error(503, QUEUE_FULL, "overloaded")
        paced = self.server.latency.enabled or decision.stall or self.flavor.queues
        events = self._events(job, planned, decision, arrived)
        return SSEResponse(events, {"x-accel-buffering": "no"}, keepalive_s=self.config.keepalive_s, paced=paced)

    def _error_event(self, refusal: Refusal) -> bytes:
        self.server.metrics.failure(refusal.error_type)
        if self.flavor.name == "tgi":  # InferError::into_openai_event
            return stream.frame({"error": {"message": refusal.message, "http_status_code": 422}})
        return stream.frame(self.flavor.error_body(refusal.status, refusal.message, refusal.error_type))

    async def _events(
        self, job: Job, planned: Planned | None, decision: Decision, arrived: float
    ) -> AsyncIterator[bytes]:
        try:
            async with self._admitted(decision):
                planned = planned or self._plan(job)
                outputs = run(job, planned, self.config)
                async for chunk in self._paced(job, planned, outputs, decision):
                    yield chunk
        except Refusal as refusal:
            yield self._error_event(refusal)
            yield stream.DONE
            return
        if decision.fault is not Fault.DROP:
            self._succeeded(planned, outputs, arrived)

    async def _paced(
        self, job: Job, planned: Planned, outputs: list[Output], decision: Decision
    ) -> AsyncIterator[bytes]:
        latency = self.server.latency
        frames = list(stream.events(self.flavor, job, outputs, int(time.time())))
        tokens = sum(1 for _, is_token in frames if is_token)
        cut = decision.pick(max(tokens, 1)) if decision.fault in (Fault.ERROR, Fault.DROP) else -1
        if decision.stall:
            self.server.metrics.fault("stall")
            await asyncio.sleep(self.config.stall_s)
        with latency.in_batch(len(outputs)):
            if latency.enabled:
                await latency.work(latency.prefill_cost(sum(planned.prompt_tokens)))
            step = 0
            for data, is_token in frames:
                if is_token:
                    if step == cut:
                        await self._break(decision)
                    step += 1
                    if latency.enabled:
                        await latency.work(latency.decode_s / max(len(outputs), 1))
                if data:
                    yield data

    async def _break(self, decision: Decision) -> None:
        from tgbatch.sim.faults import ConnectionDropped

        if decision.fault is Fault.DROP:
            self.server.metrics.fault("drop")
            raise ConnectionDropped("simulated connection drop mid-stream")
        self.server.metrics.fault("error")
        raise Refusal(500, "Incomplete generation stream" if self.flavor.name == "tgi" else SHARD_ERROR, "generation")
