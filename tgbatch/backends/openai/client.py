"""OpenAI-style calls (``chat``, ``chat_stream``, ``completions``, ``completions_stream``, ``models``) for the
clients of ``tgbatch.client``, as mixins: they use the client's one transport and headers, so a chat call and
a ``generate`` call cannot differ in proxies, cookies, TLS or token.

Routes follow the base URL (``wire.api_prefix``): ``http://host:8080`` posts to ``/v1/chat/completions``,
``https://router.huggingface.co/v1`` to ``/v1/chat/completions`` under it, without doubling ``/v1``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from tgbatch.backends.openai.models import ChatCompletion, ChatCompletionChunk, Completion, CompletionChunk, ModelList
from tgbatch.backends.openai.wire import (
    CHAT,
    COMPLETIONS,
    MODELS,
    StreamState,
    api_prefix,
    build_body,
    encode,
    error_from_response,
    parse_chat,
    parse_completion,
    parse_models,
    server_path,
)
from tgbatch.backends.tgi.wire import is_event_stream, not_an_event_stream
from tgbatch.http import RawResponse, Transport, aiter_sse

if TYPE_CHECKING:
    from tgbatch.http import BackgroundLoop


class _Config(Protocol):
    base_url: str
    headers: dict[str, str]
    stream_headers: dict[str, str]


class OpenAIMethods:
    """``AsyncClient``'s OpenAI-style calls. Parameters are OpenAI's wire names, sent exactly as given (``None``
    means unset); ``extra_body={...}`` is merged into the body last. Errors are ``tgbatch.errors``'."""

    _config: _Config
    _transport: Transport

    def _route(self, path: str) -> str:
        return api_prefix(self._config.base_url) + path

    async def post_json(self, path: str, content: bytes) -> RawResponse:
        """POST an encoded body to an OpenAI route (``wire.CHAT``, ``wire.COMPLETIONS``), the answer unparsed
        (the runner's hot path parses only what it records)."""
        return await self._transport.request("POST", self._route(path), content=content, headers=self._config.headers)

    async def chat(
        self, messages: Iterable[Mapping[str, Any]], *, model: str | None = None, **params: Any
    ) -> ChatCompletion:
        """``POST /v1/chat/completions``: a typed ``ChatCompletion``."""
        answer = await self.post_json(CHAT, encode(build_body(params, model=model, messages=messages)))
        return parse_chat(answer.status, answer.headers, answer.body, self._config.base_url)

    async def completions(self, prompt: str | list[str], *, model: str | None = None, **params: Any) -> Completion:
        """``POST /v1/completions``: a typed ``Completion``."""
        answer = await self.post_json(COMPLETIONS, encode(build_body(params, model=model, prompt=prompt)))
        return parse_completion(answer.status, answer.headers, answer.body, self._config.base_url)

    def chat_stream(
        self, messages: Iterable[Mapping[str, Any]], *, model: str | None = None, **params: Any
    ) -> AsyncGenerator[ChatCompletionChunk, None]:
        """Stream a chat answer as ``ChatCompletionChunk`` events (``.choices[0].delta.content``; ``.usage`` when
        the server sends it, e.g. with ``stream_options={"include_usage": True}``)."""
        content = encode(build_body(params, model=model, messages=messages, stream=True))
        return self._openai_stream(CHAT, content, StreamState(ChatCompletionChunk))

    def completions_stream(
        self, prompt: str | list[str], *, model: str | None = None, **params: Any
    ) -> AsyncGenerator[CompletionChunk, None]:
        """Stream a completion as ``CompletionChunk`` events (``.choices[i].text``)."""
        content = encode(build_body(params, model=model, prompt=prompt, stream=True))
        return self._openai_stream(COMPLETIONS, content, StreamState(CompletionChunk))

    async def _openai_stream(self, path: str, content: bytes, state: StreamState) -> AsyncGenerator[Any, None]:
        headers = self._config.stream_headers
        async with self._transport.stream("POST", self._route(path), content=content, headers=headers) as answer:
            if answer.status != 200:
                raise error_from_response(
                    answer.status, answer.headers, await answer.aread(), base_url=self._config.base_url
                )
            if not is_event_stream(answer.headers):
                raise not_an_event_stream(answer.status, answer.headers, await answer.aread())
            async with contextlib.aclosing(aiter_sse(answer.aiter_bytes())) as events:
                async for sse in events:
                    chunk = state.feed(sse.data)
                    if chunk is not None:
                        yield chunk
                    if state.finished:
                        return
        state.finish()

    async def get_raw(self, path: str, *, api: bool) -> RawResponse:
        """``GET`` an API route (``api=True``: ``/models``, under ``/v1``) or a server-level one (``/health``,
        ``/metrics``, ``/info``, ``/version``: beside ``/v1`` when the base URL ends in it), unparsed."""
        route = self._route(path) if api else server_path(self._config.base_url, path)
        return await self._transport.request("GET", route, headers=self._config.headers)

    async def models(self) -> ModelList:
        """``GET /v1/models``: the served models (vLLM and SGLang add ``max_model_len``)."""
        answer = await self._transport.request("GET", self._route(MODELS), headers=self._config.headers)
        return parse_models(answer.status, answer.headers, answer.body, self._config.base_url)


class SyncOpenAIMethods:
    """``Client``'s OpenAI-style calls: the ``AsyncClient``'s, run on the client's private loop."""

    _async: OpenAIMethods
    _loop: BackgroundLoop

    def chat(self, messages: Iterable[Mapping[str, Any]], *, model: str | None = None, **params: Any) -> ChatCompletion:
        """``POST /v1/chat/completions`` (see ``AsyncClient.chat``)."""
        return self._loop.run(self._async.chat, messages, model=model, **params)

    def completions(self, prompt: str | list[str], *, model: str | None = None, **params: Any) -> Completion:
        """``POST /v1/completions`` (see ``AsyncClient.completions``)."""
        return self._loop.run(self._async.completions, prompt, model=model, **params)

    def chat_stream(
        self, messages: Iterable[Mapping[str, Any]], *, model: str | None = None, **params: Any
    ) -> Iterator[ChatCompletionChunk]:
        """Stream a chat answer (see ``AsyncClient.chat_stream``); the body is checked now."""
        return self._iterate(self._async.chat_stream(messages, model=model, **params))

    def completions_stream(
        self, prompt: str | list[str], *, model: str | None = None, **params: Any
    ) -> Iterator[CompletionChunk]:
        """Stream a completion (see ``AsyncClient.completions_stream``)."""
        return self._iterate(self._async.completions_stream(prompt, model=model, **params))

    def models(self) -> ModelList:
        """``GET /v1/models``."""
        return self._loop.run(self._async.models)

    def _iterate(self, events: AsyncGenerator[Any, None]) -> Iterator[Any]:
        # a generator method, so that the stream holds the client (and its loop) until it is done with it
        yield from self._loop.iterate(events)
