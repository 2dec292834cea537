"""What the sync and async clients share: configuration, request preparation and stream bookkeeping."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import httpx

from tgbatch.backends.tgi.models import StreamResponse
from tgbatch.backends.tgi.rules import Limits, Parameters
from tgbatch.backends.tgi.wire import (
    PreparedRequest,
    build_headers,
    build_parameters,
    parse_stream_event,
    prepare_generate,
)
from tgbatch.errors import IncompleteStreamError, ProtocolError
from tgbatch.http.transport import SIM_BASE_URL, as_timeout, is_sim_url

#: The HF Inference API's model routes; HF_INFERENCE_ENDPOINT overrides it (as in huggingface_hub)
INFERENCE_API_BASE = "https://router.huggingface.co/hf-inference"


def inference_api_url(model_id: str, base_url: str | None) -> str:
    base = base_url or os.environ.get("HF_INFERENCE_ENDPOINT") or INFERENCE_API_BASE
    return f"{base.rstrip('/')}/models/{model_id}"


class ClientConfig:
    """Everything about a client except its I/O."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str] | None,
        timeout: float | httpx.Timeout | None,
        *,
        token: str | None,
        use_cache: bool | None,
        wait_for_model: bool | None,
        limits: Limits | None,
        validate: bool,
        compat: bool,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.url = SIM_BASE_URL if is_sim_url(base_url) else self.base_url
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
        return f"<{self.url}>"


class StreamState:
    """Reads SSE ``data`` payloads until the final event; knows when a stream ended too early."""

    def __init__(self) -> None:
        self.finished = False

    def feed(self, data: str) -> StreamResponse | None:
        event = parse_stream_event(data)
        if event is None:  # [DONE]: only OpenAI-style routes send it, after the final event
            self.finished = True
            return None
        if event.generated_text is not None:
            self.finished = True
        return event

    def finish(self) -> None:
        if not self.finished:
            raise IncompleteStreamError(
                "The stream ended before its final event (no event carried generated_text)", status_code=200
            )


def not_an_event_stream(response: httpx.Response, content: bytes) -> ProtocolError:
    kind = response.headers.get("content-type", "no content type")
    return ProtocolError(
        f"Asked for a token stream but the server answered {response.status_code} with {kind}: "
        f"{content[:200].decode('utf-8', 'replace')!r}",
        status_code=response.status_code,
        body=content.decode("utf-8", "replace"),
    )


H = TypeVar("H", httpx.Client, httpx.AsyncClient)


class BaseClient(Generic[H]):
    """Construction shared by ``Client`` and ``AsyncClient``; they differ only in their I/O."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str] | None = None,
        cookies: dict[str, str] | None = None,
        timeout: float | httpx.Timeout | None = None,
        *,
        token: str | None = None,
        use_cache: bool | None = None,
        wait_for_model: bool | None = None,
        http_client: H | None = None,
        limits: Limits | None = None,
        validate: bool = True,
        compat: bool = False,
    ) -> None:
        self._config = ClientConfig(
            base_url,
            headers,
            timeout,
            token=token,
            use_cache=use_cache,
            wait_for_model=wait_for_model,
            limits=limits,
            validate=validate,
            compat=compat,
        )
        self._owns_http = http_client is None
        self._http: H = http_client if http_client is not None else self._make_http(base_url, cookies)

    def _make_http(self, base_url: str, cookies: dict[str, str] | None) -> H:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        return self._config.base_url

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._config.base_url!r})"


class InferenceAPIMixin:
    """Construction of the HF Inference API clients: the model's URL, its compat route (list bodies)."""

    def __init__(
        self,
        model_id: str,
        token: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        *,
        base_url: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(  # type: ignore[call-arg]
            inference_api_url(model_id, base_url), timeout=timeout, token=token, compat=True, **kwargs
        )
        self.model_id = model_id
