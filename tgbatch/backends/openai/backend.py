"""OpenAI-style chat and completions behind the ``Backend`` seam: TGI's Messages API, vLLM, SGLang, the HF
router and other providers, each server's quirks taken from ``servers``.

The hot path encodes the job's constant body once (``wire.BodyEncoder``) and reads from each answer only
what the output records (``wire.to_result``), without building typed models.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from tgbatch.backends.openai import servers
from tgbatch.backends.openai.errors import error_from_response
from tgbatch.backends.openai.wire import CHAT, COMPLETIONS, BodyEncoder, build_body, encode, load_json, to_result
from tgbatch.backends.prometheus import gauge
from tgbatch.backends.tgi.client import AsyncClient
from tgbatch.errors import NotFoundError, ServerError, SpecError, ValidationError
from tgbatch.types import Capacity, GenerationRequest, GenerationResult

Api = Literal["chat", "completions"]
ServerKind = Literal["auto", "tgi", "vllm", "sglang", "openai"]
ROUTER_HOST = "router.huggingface.co"


class OpenAIBackend:
    """Sends ``/v1/chat/completions`` (``api="chat"``) or ``/v1/completions`` requests.

    ``params``: the job's parameters in OpenAI's wire names, exactly as the user set them (nothing else is sent);
    ``extra_body``: merged into every body last, as it is; ``model``: default the first id of ``GET /v1/models``;
    ``server``: ``auto`` detects it (``/info``, ``/v1/models``, ``/version``) on ``capacity()``;
    ``keep_logprobs``: keep the answer's logprobs in ``GenerationResult.details``."""

    def __init__(
        self,
        client: AsyncClient,
        *,
        api: Api,
        url: str,
        model: str | None = None,
        params: Mapping[str, Any] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        server: ServerKind = "auto",
        keep_logprobs: bool = False,
    ) -> None:
        self.client = client
        self.api = api
        self.url = url
        self.model = model
        self.params = dict(params or {})
        self.extra_body = dict(extra_body or {})
        self.server = server
        self.keep_logprobs = keep_logprobs
        self._chat = api == "chat"
        self._path = CHAT if self._chat else COMPLETIONS
        self._kind: str | None = None if server == "auto" else server
        self._wire_model: str | None = model
        self._encoder: BodyEncoder | None = None
        self._lock: asyncio.Lock | None = None

    # -- requests ---------------------------------------------------------------------------------------------

    async def request(self, request: GenerationRequest) -> GenerationResult:
        encoder = self._encoder or await self._prepare()
        value: Any = request.messages if self._chat else request.prompt
        if value is None:
            raise TypeError(f"the {self.api} API needs {'messages' if self._chat else 'a prompt'}")
        if request.params:
            content = encode(self._body(value, request.seed, request.params))
        else:
            content = encoder.encode(value, request.seed)
        answer = await self.client.post_json(self._path, content)
        data = load_json(answer.status, answer.headers, answer.body, base_url=self.client.base_url)
        return to_result(data, chat=self._chat, status=answer.status, keep_logprobs=self.keep_logprobs)

    def _body(self, value: Any, seed: int | None, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
        """One whole body: the job's parameters, this request's on top (an OpenAI Batch line's ``body``), then
        ``extra_body``; in the server's form."""
        params = {**self.params, **(overrides or {})}
        params.pop("stream", None)  # a batch answer is read whole
        key = "messages" if self._chat else "prompt"
        value = params.pop(key, value)
        model = params.pop("model", self._wire_model)
        if seed is not None and "seed" not in (overrides or {}):
            params["seed"] = seed
        params["extra_body"] = self.extra_body
        inputs = {"messages": value} if self._chat else {"prompt": value}
        body = build_body(params, model=model, **inputs)
        return servers.translate(self._kind or "openai", body)

    async def _prepare(self) -> BodyEncoder:
        """Detect the server and resolve the model once (on first use, if ``capacity()`` was not called)."""
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            if self._encoder is None:
                await self.capacity()
            assert self._encoder is not None
            return self._encoder

    def _build_encoder(self) -> BodyEncoder:
        key = "messages" if self._chat else "prompt"
        constant = self._body(None, None, None)
        constant.pop(key, None)
        return BodyEncoder(constant, key)

    # -- what the server is -----------------------------------------------------------------------------------

    async def capacity(self) -> Capacity:
        info = await self._get_json("/info", server_level=True) if self._kind in (None, "tgi") else None
        if self._kind is None:
            self._kind = "tgi" if servers.is_tgi_info(info) else None
        models = None if self._kind == "tgi" else await self._get_json("/models", server_level=False)
        if self._kind is None:
            self._kind = servers.kind_from_models(models or {})
        kind = self._kind
        model_id = self._resolve_model(kind, info if kind == "tgi" else None, models)
        version = info.get("version") if kind == "tgi" and info else None
        if kind in ("vllm", "sglang"):
            said = await self._get_json("/version", server_level=True)
            version = said.get("version") if isinstance(said, dict) else None
        max_input, max_total = servers.context_length(kind, info if kind == "tgi" else None, models)
        self._encoder = self._build_encoder()
        return Capacity(
            model_id=model_id,
            version=version if isinstance(version, str) else None,
            server=kind,
            max_concurrent_requests=info.get("max_concurrent_requests") if kind == "tgi" and info else None,
            max_input_tokens=max_input,
            max_total_tokens=max_total,
            raw={"info": info if kind == "tgi" else None, "models": models},
        )

    def _resolve_model(self, kind: str, info: Mapping[str, Any] | None, models: Any) -> str | None:
        """The model to ask for: the job's; TGI's own (sent as "tgi": another name is taken as a LoRA adapter);
        the model in a router URL; else the first of ``/v1/models`` (never on the HF router, which lists them
        all)."""
        if self.model is not None:
            self._wire_model = self.model
            return self.model
        if kind == "tgi":
            self._wire_model = servers.SERVERS["tgi"].default_wire_model
            return info.get("model_id") if info else None
        parts = urlsplit(self.client.base_url)
        if parts.hostname == ROUTER_HOST:
            _, found, rest = parts.path.partition("/models/")
            if not found or not rest.split("/v1")[0].strip("/"):
                raise SpecError(
                    f"The HF router ({self.url}) serves many models: set `model` (e.g. "
                    "`model: meta-llama/Llama-3.1-8B-Instruct:fastest`, a provider after the colon)"
                )
            self._wire_model = rest.split("/v1")[0].strip("/")
            return self._wire_model
        data = models.get("data") if isinstance(models, dict) else None
        if isinstance(data, list) and data and isinstance(data[0], dict) and isinstance(data[0].get("id"), str):
            self._wire_model = data[0]["id"]
            return self._wire_model
        raise SpecError(f"{self.url} lists no model at /v1/models: set `model` to the model the server serves")

    async def _get_json(self, path: str, *, server_level: bool) -> Any:
        """A GET's JSON, ``None`` when the server does not have the route (or says nothing usable). Fatal
        answers (a refused token, no credits, a retired URL) are raised: every request would get them."""
        try:
            answer = await self.client.get_raw(path, api=not server_level)
            return load_json(answer.status, answer.headers, answer.body, base_url=self.client.base_url)
        except ServerError as exc:
            if exc.fatal and not isinstance(exc, NotFoundError):
                raise
            if server_level or exc.status_code is not None:
                return None
            raise

    def check_limits(self, capacity: Capacity) -> None:
        """``max_tokens`` must leave room for a prompt in the server's context."""
        limit = capacity.max_total_tokens
        for name in ("max_tokens", "max_completion_tokens"):
            value = self.params.get(name, self.extra_body.get(name))
            if limit is not None and isinstance(value, int) and value >= limit:
                raise ValidationError(
                    f"`{name}` = {value} does not fit the server's context length of {limit} tokens (prompt and "
                    f"answer together): set `{name}` below {limit}, leaving room for the prompt",
                    status_code=None,
                    error_type=None,
                )

    async def queue(self) -> int | None:
        """The server's waiting-requests gauge; ``None`` when ``/metrics`` is missing or does not have it."""
        names = servers.SERVERS[self._kind or "openai"].queue_gauges
        if not names:
            return None
        try:
            answer = await self.client.get_raw("/metrics", api=False)
        except ServerError:
            return None
        if answer.status != 200:
            return None
        value = gauge(answer.body.decode("utf-8", "replace"), names)
        return None if value is None else int(value)

    async def health(self) -> bool:
        """``/health``: 200 healthy, 503 not; a server without the route (404, the HF router) says nothing,
        which is taken as healthy. Other answers raise their error."""
        answer = await self.client.get_raw("/health", api=False)
        if 200 <= answer.status < 300 or answer.status == 404:
            return True
        if answer.status == 503:
            return False
        raise error_from_response(answer.status, answer.headers, answer.body, base_url=self.client.base_url)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> OpenAIBackend:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
