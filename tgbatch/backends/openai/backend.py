"""OpenAI-style chat and completions behind the ``Backend`` seam (interface stub: being implemented)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from tgbatch.backends.tgi.client import AsyncClient
from tgbatch.types import Capacity, GenerationRequest, GenerationResult

Api = Literal["chat", "completions"]
ServerKind = Literal["auto", "tgi", "vllm", "sglang", "openai"]


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

    async def request(self, request: GenerationRequest) -> GenerationResult:
        raise NotImplementedError

    async def capacity(self) -> Capacity:
        raise NotImplementedError

    def check_limits(self, capacity: Capacity) -> None:
        raise NotImplementedError

    async def queue(self) -> int | None:
        raise NotImplementedError

    async def health(self) -> bool:
        return await self.client.health()

    async def aclose(self) -> None:
        await self.client.aclose()
