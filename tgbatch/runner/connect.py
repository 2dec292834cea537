"""From the job's ``endpoint`` section to backends and an endpoint pool: one backend per URL, each with its own
adaptive concurrency limit, started from what the server reports (``/info``) when ``concurrency: auto``."""

from __future__ import annotations

import logging
import os

import anyio

from tgbatch.backends import Backend
from tgbatch.backends.openai.backend import Api, OpenAIBackend
from tgbatch.backends.tgi.backend import TGIBackend
from tgbatch.backends.tgi.client import AsyncClient
from tgbatch.backends.tgi.rules import Parameters
from tgbatch.errors import EndpointError, SpecError, TGBatchError, TransportError, ValidationError
from tgbatch.job.spec import EndpointSpec, JobSpec, redact_url
from tgbatch.runner.concurrency import AIMDLimit
from tgbatch.runner.control import first_error
from tgbatch.runner.dispatch import Endpoint, EndpointPool
from tgbatch.runner.latency_limit import LatencyLimit
from tgbatch.types import Capacity

log = logging.getLogger("tgbatch.job")

#: concurrency: auto starts here when a server does not report max_concurrent_requests
AUTO_START = 32
#: how long a server may take to say what it is (/info) before the job starts without knowing
INFO_TIMEOUT_S = 15.0


def read_token(endpoint: EndpointSpec) -> str | None:
    return os.environ.get(endpoint.token_env) or None


def make_client(endpoint: EndpointSpec, token: str | None, url: str | None = None) -> AsyncClient:
    """The TGI client for one of the job's endpoints (``url``, default the first; ``token``: read from
    ``endpoint.token_env`` by the caller)."""
    url = url if url is not None else endpoint.urls[0]
    try:
        return AsyncClient(
            url,
            headers=dict(endpoint.headers) or None,
            timeout=endpoint.timeout_s,
            token=token,
            use_cache=endpoint.use_cache,
            wait_for_model=endpoint.wait_for_model,
        )
    except SpecError as exc:  # a sim:// URL with an unknown or invalid option
        raise SpecError(f"endpoint.url: {exc}") from None


def make_backend(spec: JobSpec, token: str | None, url: str | None = None) -> Backend:
    """The backend for one of the job's endpoints, sending the job's parameters."""
    url = url if url is not None else spec.endpoint.urls[0]
    client = make_client(spec.endpoint, token, url)
    return wrap_client(client, spec, url)


def wrap_client(client: AsyncClient, spec: JobSpec, url: str | None = None) -> Backend:
    """A caller-made client (tests, embedding) as the job's backend: TGI's /generate, or OpenAI-style chat or
    completions by ``endpoint.api``."""
    url = redact_url(url if url is not None else client.base_url)
    params = spec.parameters
    if isinstance(params, Parameters):
        # details are always asked for: the finish reason, token count and seed are recorded for every row
        generate = params.model_copy(update={"details": True})
        return TGIBackend(client, generate, url=url, keep_details=spec.output.details == "full")
    api: Api = "completions" if spec.api == "completions" else "chat"
    return OpenAIBackend(
        client,
        api=api,
        url=url,
        model=spec.endpoint.model,
        params=params.wire(),
        extra_body=params.extra_body,
        server=spec.endpoint.server,
        keep_logprobs=params.keep_logprobs,
    )


def make_pool(spec: JobSpec, token: str | None) -> EndpointPool:
    """An endpoint pool over every URL of the job (its limits are set from /info by ``calibrate``)."""
    return EndpointPool([endpoint_of(spec.endpoint, make_backend(spec, token, url)) for url in spec.endpoint.urls])


def endpoint_of(spec: EndpointSpec, backend: Backend) -> Endpoint:
    limit: AIMDLimit
    if spec.concurrency == "auto":
        limit = LatencyLimit(initial=min(AUTO_START, spec.max_concurrency), max_limit=spec.max_concurrency)
    else:
        limit = AIMDLimit(initial=spec.concurrency, min_limit=spec.concurrency, max_limit=spec.concurrency)
    return Endpoint(url=backend.url, client=backend, limit=limit)


async def reach(backend: Backend, *, timeout_s: float = INFO_TIMEOUT_S) -> Capacity | None:
    """Ask the server what it is. Raises ``EndpointError`` naming the URL and the cause when it cannot be
    reached (refused, unknown host, TLS, no answer in ``timeout_s``); returns ``None`` when it answered but did
    not describe itself (no ``/info``, or a token wanted: the first request says which)."""
    try:
        with anyio.fail_after(timeout_s):
            return await backend.capacity()
    except TransportError as exc:
        if not exc.unreachable:
            log.info("%s: /info failed (%s)", backend.url, exc)
            return None
        raise EndpointError(f"endpoint.url: {backend.url} cannot be reached: {exc.message}") from exc
    except TimeoutError as exc:
        raise EndpointError(f"endpoint.url: {backend.url} did not answer within {timeout_s:g} s") from exc
    except TGBatchError as exc:
        # it answered: a server without TGI's /info, or one that wants a token; the first request tells which
        log.info("%s: /info did not answer as TGI's does (%s)", backend.url, exc)
        return None


def check_limits(backend: Backend, capacity: Capacity) -> None:
    """``SpecError`` with the server's own message when its limits refuse the job's parameters."""
    try:
        backend.check_limits(capacity)
    except ValidationError as exc:
        raise SpecError(
            f"parameters: the endpoint {backend.url} ({capacity.model_id}) would refuse them: {exc.message}"
        ) from exc


async def calibrate(pool: EndpointPool, spec: EndpointSpec) -> None:
    """Before the first row: every endpoint must be reachable (``EndpointError`` otherwise, within seconds) and
    accept the job's parameters under its limits (``SpecError`` with the server's message otherwise). With
    ``concurrency: auto``, each never exceeds the server's ``max_concurrent_requests`` (beyond it TGI answers
    429) and grows towards it from a slow start (``LatencyLimit``)."""

    async def one(endpoint: Endpoint) -> None:
        capacity = await reach(endpoint.client)
        if capacity is None:
            return
        check_limits(endpoint.client, capacity)
        if spec.concurrency == "auto" and capacity.max_concurrent_requests:
            cap = max(1, min(spec.max_concurrency, capacity.max_concurrent_requests))
            endpoint.limit.set_ceiling(cap)
        log.info(
            "%s: %s, concurrency starts at %d (at most %d)",
            endpoint.url,
            capacity.model_id,
            endpoint.limit.limit,
            endpoint.limit.max_limit,
        )

    try:
        async with anyio.create_task_group() as tg:
            for endpoint in pool.endpoints:
                tg.start_soon(one, endpoint)
    except BaseExceptionGroup as group:
        raise first_error(group) from None
