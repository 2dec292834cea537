"""TGI's ``/generate`` behind the ``Backend`` seam: the job's parameters validated once, a seed per request."""

from __future__ import annotations

from tgbatch.backends.prometheus import gauge
from tgbatch.backends.tgi.client import AsyncClient
from tgbatch.backends.tgi.models import Response
from tgbatch.backends.tgi.rules import Limits, Parameters, check_best_of, check_parameters
from tgbatch.backends.tgi.wire import GenerateEncoder, parse_response, parse_summary
from tgbatch.errors import ServerError
from tgbatch.types import Capacity, GenerationRequest, GenerationResult


class TGIBackend:
    """Sends ``/generate`` requests with the job's ``parameters`` (``details`` always on: the finish reason,
    token count and seed are recorded). ``keep_details`` keeps the whole ``details`` object (tokens,
    logprobs) in each result, for ``output.details: full``."""

    def __init__(self, client: AsyncClient, parameters: Parameters, *, url: str, keep_details: bool = False) -> None:
        self.client = client
        self.url = url
        self.parameters = parameters if parameters.details else parameters.model_copy(update={"details": True})
        self.keep_details = keep_details
        self._encoder = GenerateEncoder(self.parameters, compat=client.compat)

    async def request(self, request: GenerationRequest) -> GenerationResult:
        if request.prompt is None:
            raise TypeError("TGI's /generate takes a prompt, not chat messages")
        if request.params:  # this request's own parameters: validated as any client call
            params = self.parameters.model_copy(update={**request.params, "seed": request.seed})
            return self._result(await self.client.generate(request.prompt, parameters=params))
        answer = await self.client.send(self._encoder.encode(request.prompt, request.seed))
        if self.keep_details:  # output.details: full keeps every token: the typed, validated response
            return self._result(parse_response(answer.status, answer.headers, answer.body))
        summary = parse_summary(answer.status, answer.headers, answer.body)
        return GenerationResult(summary.text, summary.finish_reason, summary.generated_tokens, seed=summary.seed)

    def _result(self, response: Response) -> GenerationResult:
        details = response.details
        if details is None:
            return GenerationResult(text=response.generated_text)
        return GenerationResult(
            text=response.generated_text,
            finish_reason=details.finish_reason.value,
            generated_tokens=details.generated_tokens,
            seed=details.seed,
            details=details.model_dump(mode="json") if self.keep_details else None,
        )

    async def capacity(self) -> Capacity:
        info = await self.client.info()
        return Capacity(
            model_id=info.model_id,
            version=info.version,
            max_concurrent_requests=info.max_concurrent_requests,
            max_input_tokens=info.max_input_tokens,
            max_total_tokens=info.max_total_tokens,
            max_best_of=info.max_best_of,
            max_stop_sequences=info.max_stop_sequences,
            raw=info.model_dump(mode="json"),
        )

    def check_limits(self, capacity: Capacity) -> None:
        """Raise ``ValidationError`` (TGI's message) when the server's limits refuse the job's parameters."""
        limits = Limits(
            max_best_of=capacity.max_best_of,
            max_stop_sequences=capacity.max_stop_sequences,
            max_top_n_tokens=None,  # /info does not say; the server checks it
            max_input_tokens=capacity.max_input_tokens,
            max_total_tokens=capacity.max_total_tokens,
        )
        check_best_of(self.parameters, limits)
        check_parameters(self.parameters, limits)

    async def queue(self) -> int | None:
        """TGI's ``tgi_queue_size`` gauge; ``None`` when ``/metrics`` is missing or does not have it."""
        try:
            text = await self.client.metrics()
        except ServerError:
            return None
        value = gauge(text, ("tgi_queue_size",))
        return None if value is None else int(value)

    async def health(self) -> bool:
        return await self.client.health()

    async def aclose(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> TGIBackend:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
