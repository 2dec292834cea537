"""The simulated TGI server as a Starlette app: routes, the order in which the router does things, and where
each fault strikes.

Per generation request: the "proxy" faults first (unavailable, rate limit), then the bearer check, the
loading window, axum's body extraction, and TGI's handler. In the handler, the stream route's own checks come
before the concurrency semaphore, validation after it (each best_of branch takes a permit), then the model runs
under the latency model. A stall hangs a validated request before it runs; an error fault replaces its result;
a drop cuts the connection instead of finishing the answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tgbatch.backends.tgi.rules import Parameters, check_best_of, check_stream
from tgbatch.errors import GenerationError, IncompleteGenerationError, TGIError
from tgbatch.sim import wire
from tgbatch.sim.config import TGI_VERSION, SimConfig
from tgbatch.sim.faults import (
    PROXY_503,
    RATE_LIMIT_MESSAGE,
    SHARD_ERROR,
    ConnectionDropped,
    Decision,
    Fault,
    FaultInjector,
    retry_after_header,
)
from tgbatch.sim.http import Rejection, authorized, read_body
from tgbatch.sim.latency import LatencyModel
from tgbatch.sim.metrics import Metrics
from tgbatch.sim.model import Generation
from tgbatch.sim.router import Plan, Router, overloaded
from tgbatch.sim.sse import SSEResponse

COMPUTE_TYPE = "gpu+optimized"
JSON = "application/json"


def _json(status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(wire.dumps(obj), status_code=status, headers=headers, media_type=JSON)


def _error(err: TGIError) -> Response:
    return _json(err.status_code or 500, wire.error(err))


class DroppedResponse(Response):
    """Starts an answer and dies: the client gets headers and part of a body, then a closed connection."""

    def __init__(self) -> None:
        self.status_code = 200
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", JSON.encode()), (b"content-length", b"4096")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"generated_text":"', "more_body": True})
        raise ConnectionDropped("simulated connection drop")


def _injected_error(decision: Decision, stream: bool) -> TGIError:
    if decision.pick(2) == 0:
        return GenerationError(
            f"Request failed during generation: {SHARD_ERROR}", status_code=424, error_type="generation"
        )
    if stream:
        return IncompleteGenerationError(
            "Incomplete generation stream", status_code=500, error_type="incomplete_generation_stream"
        )
    return IncompleteGenerationError("Incomplete generation", status_code=500, error_type="incomplete_generation")


class SimServer:
    """One simulated TGI server: its config and mutable state (semaphore, batch, counters, fault stream)."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.router = Router(config)
        self.latency = LatencyModel(config.prefill_ms_per_token, config.decode_ms_per_token, config.max_batch_size)
        self.faults = FaultInjector(config)
        self.metrics = Metrics()
        self._info = wire.dumps(self._info_object())
        self._compat_full_text = config.model_pipeline_tag in (None, "text-generation")
        self._loading_error = f"Model {config.model_id} is currently loading"

    def _info_object(self) -> dict[str, Any]:
        c = self.config
        return {
            "model_id": c.model_id,
            "model_sha": None,
            "model_pipeline_tag": c.model_pipeline_tag,
            "max_concurrent_requests": c.max_concurrent_requests,
            "max_best_of": c.max_best_of,
            "max_stop_sequences": c.max_stop_sequences,
            "max_input_tokens": c.max_input_tokens,
            "max_total_tokens": c.max_total_tokens,
            "validation_workers": c.validation_workers,
            "max_client_batch_size": c.max_client_batch_size,
            "router": "text-generation-router",
            "version": TGI_VERSION,
            "sha": None,
            "docker_label": None,
        }

    # -- GET routes --------------------------------------------------------------------------------------

    async def info(self, request: Request) -> Response:
        return Response(self._info, media_type=JSON)

    async def health(self, request: Request) -> Response:
        return Response(b"")

    async def prometheus(self, request: Request) -> Response:
        self.metrics.batch_size = self.latency.active
        return Response(self.metrics.render(), media_type="text/plain; version=0.0.4")

    # -- POST routes -------------------------------------------------------------------------------------

    async def generate(self, request: Request) -> Response:
        return await self._handle(request, route="generate")

    async def generate_stream(self, request: Request) -> Response:
        return await self._handle(request, route="stream")

    async def compat(self, request: Request) -> Response:
        if request.method == "GET":  # TGI answers GET / like /health
            return Response(b"")
        return await self._handle(request, route="compat")

    async def _handle(self, request: Request, route: str) -> Response:
        arrived = time.perf_counter()
        decision = self.faults.decide()
        early = await self.gate(request, decision)
        if early is not None:
            return early
        try:
            body = await read_body(request, self.config.payload_limit, compat=route == "compat")
        except Rejection as rejection:
            return rejection.response()
        try:
            p = self.router.parameters(body)
        except TGIError as err:
            return Response(err.message, status_code=422, media_type="text/plain")
        self.metrics.request_count += 1
        inputs: str = body["inputs"]
        stream = route == "stream" or (route == "compat" and body.get("stream", False))
        full_text = p.return_full_text
        if full_text is None:
            full_text = route == "compat" and self._compat_full_text
        prefix = inputs if full_text else ""
        if stream:
            return self._stream(inputs, p, prefix, decision)
        response = await self._generate(inputs, p, prefix, decision, arrived, as_list=route == "compat")
        if decision.fault is Fault.DROP:
            self.metrics.fault("drop")
            return DroppedResponse()
        return response

    async def gate(
        self, request: Request, decision: Decision, loading: Callable[[float], Response] | None = None
    ) -> Response | None:
        """What answers before TGI's handler: a proxy, a gateway's rate limit, auth, a loading model. ``loading``
        makes a route's own answer for a loading model (given the seconds left); without it the answer is the
        HF API's ``estimated_time`` body, and ``x-wait-for-model: true`` waits instead."""
        if decision.fault is Fault.UNAVAILABLE:
            self.metrics.fault("unavailable")
            media_type, text = PROXY_503[decision.pick(len(PROXY_503))]
            return Response(text, status_code=503, media_type=media_type)
        wait = self.faults.rate_limited()
        if wait is not None:
            self.metrics.fault("rate_limit")
            return _json(429, {"error": RATE_LIMIT_MESSAGE}, headers={"retry-after": retry_after_header(wait)})
        if not authorized(request, self.config.api_key):
            return Response(status_code=401)
        remaining = self.faults.loading_remaining()
        if remaining <= 0:
            return None
        if loading is None and request.headers.get("x-wait-for-model", "").lower() in ("true", "1"):
            await asyncio.sleep(remaining)
            return None
        self.metrics.fault("loading")
        if loading is not None:
            return loading(remaining)
        return _json(503, {"error": self._loading_error, "estimated_time": round(remaining, 3)})

    def _fail(self, err: TGIError) -> None:
        self.metrics.failure(err.error_type or "unknown")

    async def _generate(
        self, inputs: str, p: Parameters, prefix: str, decision: Decision, arrived: float, *, as_list: bool
    ) -> Response:
        """``generate_internal``; ``as_list`` wraps the answer in a list as the compat route (and the
        Inference API) does."""
        best_of = p.best_of or 1  # best_of: 0 passes on /generate (validate_best_of only runs for > 1)
        try:
            if best_of > 1:
                check_best_of(p, self.router.limits)
            if decision.fault is Fault.OVERLOADED or not self.router.try_acquire(best_of):
                if decision.fault is Fault.OVERLOADED:
                    self.metrics.fault("overloaded")
                raise overloaded()
            try:
                validated = time.perf_counter()
                plan = self.router.validate(inputs, p)
                validated = time.perf_counter() - validated
                if decision.stall:
                    self.metrics.fault("stall")
                    await asyncio.sleep(self.config.stall_s)
                queued = time.perf_counter()
                gens = self.router.run(plan, best_of)
                inference = time.perf_counter()
                if self.latency.enabled:
                    with self.latency.in_batch(best_of):
                        longest = max(len(g.tokens) for g in gens)
                        await self.latency.work(
                            self.latency.prefill_cost(plan.input_length) + self.latency.decode_cost(longest)
                        )
                if decision.fault is Fault.ERROR:
                    self.metrics.fault("error")
                    raise _injected_error(decision, stream=False)
            finally:
                self.router.release(best_of)
        except TGIError as err:
            self._fail(err)
            return _error(err)
        done = time.perf_counter()
        best = gens[0]
        obj = wire.response(best, gens[1:] if best_of > 1 else None, prefix, p.details or p.decoder_input_details)
        self.metrics.success(len(best.tokens), plan.input_length, plan.max_new_tokens, done - arrived)
        headers = self._timing_headers(plan, best, arrived, validated, queued, inference, done)
        return _json(200, [obj] if as_list else obj, headers=headers)

    def _timing_headers(
        self,
        plan: Plan,
        best: Generation,
        arrived: float,
        validation: float,
        queued: float,
        inference: float,
        done: float,
    ) -> dict[str, str]:
        # server.rs l.392-430: the same headers, with the simulated durations
        n = max(len(best.tokens), 1)
        inference_ms = (done - inference) * 1000
        return {
            "x-compute-type": COMPUTE_TYPE,
            "x-compute-time": f"{done - arrived:.6f}",
            "x-compute-characters": str(len(plan.inputs)),
            "x-total-time": str(int((done - arrived) * 1000)),
            "x-validation-time": str(int(validation * 1000)),
            "x-queue-time": str(int((inference - queued) * 1000)),
            "x-inference-time": str(int(inference_ms)),
            "x-time-per-token": str(int(inference_ms / n)),
            "x-prompt-tokens": str(plan.input_length),
            "x-generated-tokens": str(len(best.tokens)),
        }

    def _stream(self, inputs: str, p: Parameters, prefix: str, decision: Decision) -> Response:
        headers = {
            "x-accel-buffering": "no",
            "x-compute-type": COMPUTE_TYPE,
            "x-compute-characters": str(len(inputs)),
        }
        paced = self.latency.enabled or decision.stall
        events = self._events(inputs, p, prefix, decision)
        return SSEResponse(events, headers, keepalive_s=self.config.keepalive_s, paced=paced)

    async def _events(self, inputs: str, p: Parameters, prefix: str, decision: Decision) -> AsyncIterator[bytes]:
        """``generate_stream_internal``: everything after the extractor is an event of a 200 response."""
        started = time.perf_counter()
        try:
            check_stream(p)
            if decision.fault is Fault.OVERLOADED or not self.router.try_acquire(1):
                if decision.fault is Fault.OVERLOADED:
                    self.metrics.fault("overloaded")
                raise overloaded()
        except TGIError as err:
            self._fail(err)
            yield wire.error_event(err)
            return
        try:
            try:
                plan = self.router.validate(inputs, p)
            except TGIError as err:
                self._fail(err)
                yield wire.error_event(err)
                return
            if decision.stall:
                self.metrics.fault("stall")
                await asyncio.sleep(self.config.stall_s)
            gen = self.router.run(plan, 1)[0]
            async for chunk in self._token_events(plan, gen, prefix, decision):
                yield chunk
            if decision.fault not in (Fault.ERROR, Fault.DROP):
                self.metrics.success(
                    len(gen.tokens), plan.input_length, plan.max_new_tokens, time.perf_counter() - started
                )
        finally:
            self.router.release(1)

    async def _token_events(self, plan: Plan, gen: Generation, prefix: str, decision: Decision) -> AsyncIterator[bytes]:
        # where an injected error or drop breaks the stream: after 0 .. n-1 tokens
        cut = decision.pick(len(gen.tokens)) if decision.fault in (Fault.ERROR, Fault.DROP) else -1
        details = plan.params.details
        tops = gen.top_tokens
        last = len(gen.tokens) - 1
        with self.latency.in_batch(1):
            if self.latency.enabled:
                await self.latency.work(self.latency.prefill_cost(plan.input_length))
            for i, token in enumerate(gen.tokens):
                if self.latency.enabled:
                    await self.latency.work(self.latency.decode_s)
                if i == cut:
                    if decision.fault is Fault.DROP:
                        self.metrics.fault("drop")
                        raise ConnectionDropped("simulated connection drop mid-stream")
                    err = _injected_error(decision, stream=True)
                    self.metrics.fault("error")
                    self._fail(err)
                    yield wire.error_event(err)
                    return
                top = tops[i] if tops is not None else None
                if i < last:
                    yield wire.stream_event(i + 1, token, top)
                else:
                    final = wire.stream_details(gen, plan.input_length) if details else None
                    yield wire.stream_event(i + 1, token, top, prefix + gen.text, final)


async def _not_found(request: Request, exc: Exception) -> Response:
    # axum answers unknown routes and wrong methods with an empty body
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    headers = exc.headers if isinstance(exc, HTTPException) else None
    return Response(status_code=status, headers=headers)


async def _fastapi_not_found(request: Request, exc: Exception) -> Response:
    # vLLM and SGLang are FastAPI apps: unknown routes get {"detail": "Not Found"}
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    detail = "Not Found" if status == 404 else "Method Not Allowed"
    return _json(status, {"detail": detail})


def build_app(config: SimConfig) -> Starlette:
    from tgbatch.sim.openai.routes import OpenAIRoutes

    server = SimServer(config)
    openai = OpenAIRoutes(server)
    routes = [
        Route("/v1/chat/completions", openai.chat, methods=["POST"]),
        Route("/v1/completions", openai.completions, methods=["POST"]),
        Route("/v1/models", openai.models, methods=["GET"]),
        Route("/health", server.health, methods=["GET"]),
    ]
    if config.flavor == "tgi":
        routes += [
            Route("/generate", server.generate, methods=["POST"]),
            Route("/generate_stream", server.generate_stream, methods=["POST"]),
            Route("/", server.compat, methods=["GET", "POST"]),
            Route("/info", server.info, methods=["GET"]),
            Route("/ping", server.health, methods=["GET"]),
            Route("/metrics", server.prometheus, methods=["GET"]),
        ]
        handlers = {404: _not_found, 405: _not_found}
    else:
        routes += [
            Route("/version", openai.version, methods=["GET"]),
            Route("/metrics", openai.metrics, methods=["GET"]),
        ]
        handlers = {404: _fastapi_not_found, 405: _fastapi_not_found}
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.sim = server
    app.state.openai = openai
    return app
