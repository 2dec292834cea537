"""The synchronous client: the same protocol functions as ``AsyncClient``, over ``httpx.Client``."""

from __future__ import annotations

from collections.abc import Iterator
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
from tgbatch.http.transport import make_sync_http_client, translated


class Client(BaseClient[httpx.Client]):
    """Synchronous client for a text-generation-inference server. Arguments as for ``AsyncClient``;
    ``http_client`` is an ``httpx.Client``."""

    def _make_http(self, base_url: str, cookies: dict[str, str] | None) -> httpx.Client:
        return make_sync_http_client(base_url, timeout=self._config.timeout, cookies=cookies)

    def generate(
        self, prompt: str, *, parameters: Parameters | None = None, **options: Unpack[GenerateOptions]
    ) -> Response:
        """Generate text for ``prompt`` (see ``AsyncClient.generate``)."""
        request = self._config.prepare(prompt, parameters, options, stream=False)
        with translated():
            response = self._http.post(
                self._config.url + request.path,
                content=request.content,
                headers=self._config.headers,
                timeout=self._config.timeout,
            )
        return parse_response(response.status_code, response.headers, response.content)

    def generate_stream(
        self, prompt: str, *, parameters: Parameters | None = None, **options: Unpack[GenerateOptions]
    ) -> Iterator[StreamResponse]:
        """Stream tokens (see ``AsyncClient.generate_stream``)."""
        request = self._config.prepare(prompt, parameters, options, stream=True)
        return self._stream(request)

    def _stream(self, request: PreparedRequest) -> Iterator[StreamResponse]:
        state = StreamState()
        with translated():
            response_cm = self._http.stream(
                "POST",
                self._config.url + request.path,
                content=request.content,
                headers=self._config.stream_headers,
                timeout=self._config.timeout,
            )
            response = response_cm.__enter__()
        try:
            if response.status_code != 200:
                with translated():
                    content = response.read()
                raise error_from_response(response.status_code, response.headers, content)
            with translated(mid_stream=True):
                try:
                    for sse in EventSource(response).iter_sse():
                        event = state.feed(sse.data)
                        if event is not None:
                            yield event
                        if state.finished:
                            break
                except SSEError as exc:
                    raise not_an_event_stream(response, response.read()) from exc
            state.finish()
        finally:
            response_cm.__exit__(None, None, None)

    def info(self) -> Info:
        """``GET /info``."""
        with translated():
            response = self._http.get(self._config.url + "/info", headers=self._config.headers)
        return parse_info(response.status_code, response.headers, response.content)

    def health(self) -> bool:
        """``GET /health``: ``True`` when healthy, ``False`` on 503; other answers raise."""
        with translated():
            response = self._http.get(self._config.url + "/health", headers=self._config.headers)
        return parse_health(response.status_code, response.headers, response.content)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class InferenceAPIClient(InferenceAPIMixin, Client):
    """``Client`` for a model on the HF Inference API (see ``InferenceAPIAsyncClient``)."""
