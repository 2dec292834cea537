"""TGI's clients: thin shells around ``wire`` (the protocol, no I/O) and ``tgbatch.http`` (one transport).

``AsyncClient`` sends every call (``generate``, ``generate_stream``, ``info``, ``health``) through one
``Transport``. ``Client``, the sync one, runs an ``AsyncClient`` on a private event loop thread: the same code
for every call, so the two cannot differ in errors, proxies, cookies or headers; a call costs a thread hop
(tens of microseconds), nothing next to a request.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import AsyncGenerator, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from tgbatch.backends.openai.client import OpenAIMethods, SyncOpenAIMethods
from tgbatch.backends.openai.errors import gone_error
from tgbatch.backends.tgi.errors import error_from_response
from tgbatch.backends.tgi.models import Info, Response, StreamResponse
from tgbatch.backends.tgi.rules import Limits, Parameters
from tgbatch.backends.tgi.wire import (
    GenerateOptions,
    PreparedRequest,
    StreamState,
    build_headers,
    build_parameters,
    is_event_stream,
    not_an_event_stream,
    parse_health,
    parse_info,
    parse_response,
    prepare_generate,
    split_credentials,
)
from tgbatch.http import BackgroundLoop, RawResponse, Timeout, Transport, aiter_sse, as_timeout, open_transport

if TYPE_CHECKING:
    import httpx

#: The HF Inference API's model routes; HF_INFERENCE_ENDPOINT overrides it (as in huggingface_hub)
INFERENCE_API_BASE = "https://router.huggingface.co/hf-inference"


def inference_api_url(model_id: str, base_url: str | None) -> str:
    base = base_url or os.environ.get("HF_INFERENCE_ENDPOINT") or INFERENCE_API_BASE
    return f"{base.rstrip('/')}/models/{model_id}"


class ClientOptions(TypedDict, total=False):
    """What a client sends and checks, besides where and how (``base_url``, ``timeout``, the transport)."""

    token: str | None
    use_cache: bool | None
    wait_for_model: bool | None
    limits: Limits | None
    validate: bool
    compat: bool


class ClientConfig:
    """Everything about a client except its I/O."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str] | None,
        timeout: float | Timeout | httpx.Timeout | None,
        *,
        token: str | None = None,
        use_cache: bool | None = None,
        wait_for_model: bool | None = None,
        limits: Limits | None = None,
        validate: bool = True,
        compat: bool = False,
    ) -> None:
        # credentials in the URL are HTTP basic auth for that server, sent as a header (never in the URL, which
        # the output and the logs show); they are explicit for this URL, so they win over an ambient token
        base_url, basic = split_credentials(base_url.rstrip("/"))
        if basic is not None:
            token, headers = None, {"Authorization": basic, **(headers or {})}
        self.base_url = base_url
        self.timeout = as_timeout(timeout)
        self.headers = build_headers(headers, token=token, use_cache=use_cache, wait_for_model=wait_for_model)
        self.stream_headers = {**self.headers, "Accept": "text/event-stream", "Cache-Control": "no-store"}
        self.limits = limits
        self.validate = validate
        self.compat = compat

    def prepare(
        self, prompt: str, parameters: Parameters | None, options: Mapping[str, Any], *, stream: bool
    ) -> PreparedRequest:
        params = build_parameters(parameters, options)
        return prepare_generate(
            prompt, params, stream=stream, compat=self.compat, limits=self.limits, validate=self.validate
        )

    def __repr__(self) -> str:
        # never show headers: they hold the token
        return f"<{self.base_url}>"


class AsyncClient(OpenAIMethods):
    """Asynchronous client for a text-generation-inference server.

    ``base_url`` is the server's root (``http://host:port``, an Inference Endpoint URL) or ``sim://?knobs`` for
    the in-process simulator. ``token`` is sent as ``Authorization: Bearer``; ``use_cache`` and
    ``wait_for_model`` as ``x-use-cache`` / ``x-wait-for-model``. ``timeout``: seconds, a
    ``tgbatch.http.Timeout`` or an ``httpx.Timeout``. Pass ``http_client`` to use your own
    ``httpx.AsyncClient`` (it is not closed by this client), or ``transport`` for any ``tgbatch.http.Transport``.
    ``limits`` (e.g. ``Limits.from_info(await client.info())``) lets client-side validation check the server's
    limits too. ``compat=True`` posts to the root route (``/``), as the HF Inference API needs.
    """

    _config: ClientConfig

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str] | None = None,
        cookies: Mapping[str, str] | None = None,
        timeout: float | Timeout | httpx.Timeout | None = None,
        *,
        http_client: httpx.AsyncClient | None = None,
        transport: Transport | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        self._config = ClientConfig(base_url, headers, timeout, **options)
        self._transport = transport or open_transport(
            self._config.base_url, timeout=self._config.timeout, cookies=cookies, http_client=http_client
        )

    @property
    def base_url(self) -> str:
        return self._config.base_url

    async def generate(
        self, prompt: str, *, parameters: Parameters | None = None, **options: Unpack[GenerateOptions]
    ) -> Response:
        """Generate text for ``prompt``. Keyword parameters are TGI's (see ``GenerateOptions``); a prepared
        ``parameters`` object may be given instead. Invalid parameters raise ``ValidationError`` unsent."""
        return await self.send_generate(self._config.prepare(prompt, parameters, options, stream=False))

    @property
    def compat(self) -> bool:
        """Whether requests go to the root route (the HF Inference API's) rather than ``/generate``."""
        return self._config.compat

    async def send_generate(self, request: PreparedRequest) -> Response:
        """Send a request ``prepare_generate`` or a ``GenerateEncoder`` made."""
        answer = await self.send(request)
        return parse_response(answer.status, answer.headers, answer.body)

    async def send(self, request: PreparedRequest) -> RawResponse:
        """Send a prepared (non-streaming) request and return the answer unparsed (a batch job's hot path parses
        only what it records)."""
        answer = await self._transport.request(
            "POST", request.path, content=request.content, headers=self._config.headers
        )
        if answer.status == 410:  # the retired serverless API: say where the model went
            raise gone_error(self.base_url, answer.body)
        return answer

    def generate_stream(
        self, prompt: str, *, parameters: Parameters | None = None, **options: Unpack[GenerateOptions]
    ) -> AsyncGenerator[StreamResponse, None]:
        """Stream tokens as ``StreamResponse`` events; the last one carries ``generated_text`` and ``details``.
        Parameters are validated now, before anything is sent; errors sent in the stream are raised."""
        request = self._config.prepare(prompt, parameters, options, stream=True)
        return self._stream(request)

    async def _stream(self, request: PreparedRequest) -> AsyncGenerator[StreamResponse, None]:
        state = StreamState()
        headers = self._config.stream_headers
        async with self._transport.stream("POST", request.path, content=request.content, headers=headers) as answer:
            if answer.status == 410:
                raise gone_error(self.base_url, await answer.aread())
            if answer.status != 200:
                raise error_from_response(answer.status, answer.headers, await answer.aread())
            if not is_event_stream(answer.headers):
                raise not_an_event_stream(answer.status, answer.headers, await answer.aread())
            async with contextlib.aclosing(aiter_sse(answer.aiter_bytes())) as events:
                async for sse in events:
                    token = state.feed(sse.data, sse.event)
                    if token is not None:
                        yield token
                    if state.finished:
                        return
        state.finish()

    async def info(self) -> Info:
        """``GET /info``: model id, limits and version (old and new field names accepted)."""
        answer = await self._transport.request("GET", "/info", headers=self._config.headers)
        return parse_info(answer.status, answer.headers, answer.body)

    async def health(self) -> bool:
        """``GET /health``: ``True`` when the server is healthy, ``False`` on 503; other answers raise."""
        answer = await self._transport.request("GET", "/health", headers=self._config.headers)
        return parse_health(answer.status, answer.headers, answer.body)

    async def metrics(self) -> str:
        """``GET /metrics``: the server's Prometheus text; an error answer raises."""
        answer = await self._transport.request("GET", "/metrics", headers=self._config.headers)
        if not 200 <= answer.status < 300:
            raise error_from_response(answer.status, answer.headers, answer.body)
        return answer.body.decode("utf-8", "replace")

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._config.base_url!r})"


class Client(SyncOpenAIMethods):
    """Synchronous client for a text-generation-inference server. Arguments as for ``AsyncClient``;
    ``http_client`` may be an ``httpx.Client`` (or an ``httpx.AsyncClient``). Safe to share between threads.
    ``close()`` (or ``with``) frees its connections and thread at once; a client left open is closed when
    collected or at exit."""

    _async: AsyncClient

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str] | None = None,
        cookies: Mapping[str, str] | None = None,
        timeout: float | Timeout | httpx.Timeout | None = None,
        *,
        http_client: httpx.Client | httpx.AsyncClient | None = None,
        transport: Transport | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        if transport is None:
            transport = open_transport(
                split_credentials(base_url.rstrip("/"))[0],  # the AsyncClient sends them as a header
                timeout=as_timeout(timeout),
                cookies=cookies,
                http_client=http_client,
                blocking_ok=True,  # an httpx.Client blocks only this client's own loop
            )
        self._async = AsyncClient(base_url, headers, timeout=timeout, transport=transport, **options)
        self._loop = BackgroundLoop()
        # not a reference to self: the finalizer must not keep the client alive
        self._close = weakref.finalize(self, self._loop.close, self._async.aclose)

    @property
    def base_url(self) -> str:
        return self._async.base_url

    @property
    def _config(self) -> ClientConfig:
        return self._async._config

    def generate(
        self, prompt: str, *, parameters: Parameters | None = None, **options: Unpack[GenerateOptions]
    ) -> Response:
        """Generate text for ``prompt`` (see ``AsyncClient.generate``)."""
        return self._loop.run(self._async.generate, prompt, parameters=parameters, **options)

    def generate_stream(
        self, prompt: str, *, parameters: Parameters | None = None, **options: Unpack[GenerateOptions]
    ) -> Iterator[StreamResponse]:
        """Stream tokens (see ``AsyncClient.generate_stream``); parameters are validated now."""
        return self._iterate(self._async.generate_stream(prompt, parameters=parameters, **options))

    def _iterate(self, events: AsyncGenerator[StreamResponse, None]) -> Iterator[StreamResponse]:
        # a generator method, so that the stream holds the client (and its loop) until it is done with it
        yield from self._loop.iterate(events)

    def info(self) -> Info:
        """``GET /info``."""
        return self._loop.run(self._async.info)

    def health(self) -> bool:
        """``GET /health``: ``True`` when healthy, ``False`` on 503; other answers raise."""
        return self._loop.run(self._async.health)

    def close(self) -> None:
        self._close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"


class InferenceAPIMixin:
    """Construction of the HF Inference API clients: the model's URL, its compat route (list bodies)."""

    def __init__(
        self,
        model_id: str,
        token: str | None = None,
        timeout: float | Timeout | httpx.Timeout | None = None,
        *,
        base_url: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(  # type: ignore[call-arg]
            inference_api_url(model_id, base_url), timeout=timeout, token=token, compat=True, **kwargs
        )
        self.model_id = model_id


class InferenceAPIAsyncClient(InferenceAPIMixin, AsyncClient):
    """``AsyncClient`` for a model on the HF Inference API (its compat route). ``base_url`` overrides the API's
    root (also ``HF_INFERENCE_ENDPOINT``), e.g. for an offline test server."""


class InferenceAPIClient(InferenceAPIMixin, Client):
    """``Client`` for a model on the HF Inference API (see ``InferenceAPIAsyncClient``)."""
