"""The asynchronous client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import Unpack

import httpx
from httpx_sse import EventSource, SSEError

from tgbatch.backends.tgi._base import BaseClient, InferenceAPIMixin, StreamState, not_an_event_stream
from tgbatch.backends.tgi.models import Info, Response, StreamResponse
from tgbatch.backends.tgi.rules import Parameters
from tgbatch.backends.tgi.wire import (
    GenerateOptions,
    PreparedRequest,
    error_from_response,
    parse_health,
    parse_info,
    parse_response,
)
from tgbatch.http.transport import FastPoster, is_sim_url, make_async_http_client, translated


class AsyncClient(BaseClient[httpx.AsyncClient]):
    """Asynchronous client for a text-generation-inference server.

    ``base_url`` is the server's root (``http://host:port``, an Inference Endpoint URL) or ``sim://?knobs`` for
    the in-process simulator. ``token`` is sent as ``Authorization: Bearer``; ``use_cache`` and
    ``wait_for_model`` as ``x-use-cache`` / ``x-wait-for-model``. Pass ``http_client`` to use your own
    ``httpx.AsyncClient`` (it is not closed by this client). ``limits`` (e.g. ``Limits.from_info(await
    client.info())``) lets client-side validation check the server's limits too. ``compat=True`` posts to the
    root route (``/``), as the HF Inference API needs.
    """

    def _make_http(self, base_url: str, cookies: dict[str, str] | None) -> httpx.AsyncClient:
        if not is_sim_url(base_url):
            self._fast = FastPoster(base_url, self._config.timeout, cookies)
        return make_async_http_client(base_url, timeout=self._config.timeout, cookies=cookies)

    _fast: FastPoster | None = None

    async def generate(
        self, prompt: str, *, parameters: Parameters | None = None, **options: Unpack[GenerateOptions]
    ) -> Response:
        """Generate text for ``prompt``. Keyword parameters are TGI's (see ``GenerateOptions``); a prepared
        ``parameters`` object may be given instead. Invalid parameters raise ``ValidationError`` unsent."""
        request = self._config.prepare(prompt, parameters, options, stream=False)
        url = self._config.url + request.path
        with translated():
            if self._fast is not None:
                status, headers, content = await self._fast.post(url, request.content, self._config.headers)
                return parse_response(status, headers, content)
            response = await self._http.post(
                url, content=request.content, headers=self._config.headers, timeout=self._config.timeout
            )
        return parse_response(response.status_code, response.headers, response.content)

    def generate_stream(
        self, prompt: str, *, parameters: Parameters | None = None, **options: Unpack[GenerateOptions]
    ) -> AsyncIterator[StreamResponse]:
        """Stream tokens as ``StreamResponse`` events; the last one carries ``generated_text`` and ``details``.
        Parameters are validated now, before anything is sent; errors sent in the stream are raised."""
        request = self._config.prepare(prompt, parameters, options, stream=True)
        return self._stream(request)

    async def _stream(self, request: PreparedRequest) -> AsyncIterator[StreamResponse]:
        state = StreamState()
        with translated():
            response_cm = self._http.stream(
                "POST",
                self._config.url + request.path,
                content=request.content,
                headers=self._config.stream_headers,
                timeout=self._config.timeout,
            )
            response = await response_cm.__aenter__()
        try:
            if response.status_code != 200:
                with translated():
                    content = await response.aread()
                raise error_from_response(response.status_code, response.headers, content)
            with translated(mid_stream=True):
                try:
                    async for sse in EventSource(response).aiter_sse():
                        event = state.feed(sse.data)
                        if event is not None:
                            yield event
                        if state.finished:
                            break
                except SSEError as exc:
                    raise not_an_event_stream(response, await response.aread()) from exc
            state.finish()
        finally:
            await response_cm.__aexit__(None, None, None)

    async def info(self) -> Info:
        """``GET /info``: model id, limits and version (old and new field names accepted)."""
        with translated():
            response = await self._http.get(self._config.url + "/info", headers=self._config.headers)
        return parse_info(response.status_code, response.headers, response.content)

    async def health(self) -> bool:
        """``GET /health``: ``True`` when the server is healthy, ``False`` on 503; other answers raise."""
        with translated():
            response = await self._http.get(self._config.url + "/health", headers=self._config.headers)
        return parse_health(response.status_code, response.headers, response.content)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()
        if self._fast is not None:
            await self._fast.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class InferenceAPIAsyncClient(InferenceAPIMixin, AsyncClient):
    """``AsyncClient`` for a model on the HF Inference API (its compat route). ``base_url`` overrides the API's
    root (also ``HF_INFERENCE_ENDPOINT``), e.g. for an offline test server."""
