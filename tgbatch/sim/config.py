"""The simulator's settings: TGI router limits (same names and defaults as the launcher's flags), the latency
model and the fault knobs. One pydantic model, so ``sim://`` query parameters and CLI flags are checked alike."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import pydantic
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tgbatch.errors import SpecError
from tgbatch.types import U64_MAX

#: the TGI router version whose behaviour the simulator reproduces (v3.1.1+ token budget, /info fields)
TGI_VERSION = "3.3.6"


class SimConfig(BaseModel):
    """Every knob of the simulated server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # -- which server it plays --
    flavor: Literal["tgi", "vllm", "sglang"] = Field(
        "tgi",
        description="Which server to imitate on the OpenAI routes: 'tgi' (TGI's Messages API plus /generate), "
        "'vllm' or 'sglang' (their OpenAI servers: a FIFO queue instead of 429s, their error shapes and fields).",
    )
    max_queued_requests: int | None = Field(
        None,
        ge=0,
        description="vllm/sglang: most requests waiting for a batch slot; beyond it 503 (unset: unbounded queue).",
    )
    reasoning: bool = Field(
        False,
        description="The model thinks before it answers: vllm puts the thinking in message.reasoning, sglang in "
        "reasoning_content, tgi inline between think tags.",
    )

    # -- router (TGI launcher flags and defaults) --
    model_id: str = Field("tgbatch/sim", min_length=1, description="Model id reported by /info and in errors.")
    model_pipeline_tag: str | None = Field(
        "text-generation",
        description="Hub pipeline tag; with 'text-generation' (or none) the / route returns the full text.",
    )
    max_concurrent_requests: int = Field(
        128, ge=1, description="Concurrency semaphore size; beyond it requests get 429 'Model is overloaded'."
    )
    max_best_of: int = Field(2, ge=1, description="Largest accepted best_of.")
    max_stop_sequences: int = Field(4, ge=0, description="Most stop sequences per request.")
    max_top_n_tokens: int = Field(5, ge=0, description="Largest accepted top_n_tokens.")
    max_input_tokens: int = Field(4095, ge=1, description="Most prompt tokens (after truncation).")
    max_total_tokens: int = Field(4096, ge=2, description="Most prompt + new tokens per request.")
    max_client_batch_size: int = Field(4, ge=1, description="Reported in /info.")
    validation_workers: int = Field(2, ge=1, description="Reported in /info.")
    payload_limit: int = Field(2_000_000, ge=1, description="Largest request body in bytes (413 beyond).")
    api_key: str | None = Field(None, description="If set, POST routes need `Authorization: Bearer <key>`.")
    # -- the model --
    min_output_tokens: int = Field(
        16, ge=1, description="Fewest tokens before the model emits EOS (the EOS position depends on the prompt)."
    )
    max_output_tokens: int = Field(128, ge=1, description="Most tokens before the model emits EOS.")
    # -- latency model --
    prefill_ms_per_token: float = Field(0.0, ge=0.0, description="Prefill time per prompt token (ms).")
    decode_ms_per_token: float = Field(0.0, ge=0.0, description="Decode time per generated token (ms); 0 = instant.")
    max_batch_size: int = Field(
        32, ge=1, description="Requests decoded together at full speed; beyond it every token takes longer."
    )
    # -- faults --
    fault_seed: int = Field(0, ge=0, le=U64_MAX, description="Seed that makes fault decisions reproducible.")
    overload_rate: float = Field(
        0.0, ge=0.0, le=1.0, description="Share of requests answered 429 'Model is overloaded'."
    )
    rate_limit: float | None = Field(
        None, gt=0.0, description="Requests per second accepted; beyond it an HF-style 429 with Retry-After."
    )
    unavailable_rate: float = Field(0.0, ge=0.0, le=1.0, description="Share of requests a proxy answers 503.")
    error_rate: float = Field(
        0.0, ge=0.0, le=1.0, description="Share of requests failing in generation (424 generation / 500 incomplete)."
    )
    drop_rate: float = Field(0.0, ge=0.0, le=1.0, description="Share of connections closed before the response ends.")
    stall_rate: float = Field(0.0, ge=0.0, le=1.0, description="Share of responses that hang for stall_s first.")
    stall_s: float = Field(30.0, ge=0.0, description="How long a stalled response hangs (s).")
    loading_s: float = Field(
        0.0, ge=0.0, description="For this long after start, requests get 503 'Model ... is currently loading'."
    )
    keepalive_s: float = Field(15.0, gt=0.0, description="Idle time before an SSE keep-alive comment (s).")

    @model_validator(mode="after")
    def _consistent(self) -> SimConfig:
        if self.max_input_tokens >= self.max_total_tokens:
            raise ValueError(
                f"max_input_tokens ({self.max_input_tokens}) must be < max_total_tokens ({self.max_total_tokens})"
            )
        if self.min_output_tokens > self.max_output_tokens:
            raise ValueError(
                f"min_output_tokens ({self.min_output_tokens}) must be <= max_output_tokens ({self.max_output_tokens})"
            )
        exclusive = self.overload_rate + self.unavailable_rate + self.error_rate + self.drop_rate
        if exclusive > 1.0 + 1e-9:
            raise ValueError(
                "overload_rate + unavailable_rate + error_rate + drop_rate must be <= 1 "
                f"(a request gets at most one of these faults); got {exclusive:g}"
            )
        return self


def field_names() -> list[str]:
    return list(SimConfig.model_fields)


def config_from_mapping(values: dict[str, Any], *, source: str) -> SimConfig:
    """Build a ``SimConfig``, turning pydantic's errors into a ``SpecError`` naming key, value and choices."""
    names = field_names()
    for key, value in values.items():
        if key not in SimConfig.model_fields:
            raise SpecError(
                f"{source}: unknown simulator option {key!r} (value {value!r}); valid options: {', '.join(names)}"
            )
    try:
        return SimConfig.model_validate(values)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        msg = err["msg"].removeprefix("Value error, ")
        key = ".".join(str(part) for part in err.get("loc", ()))
        if not key:  # a rule across options: its message names them
            raise SpecError(f"{source}: inconsistent simulator options: {msg}") from exc
        value = values.get(key, err.get("input"))
        raise SpecError(f"{source}: invalid value {value!r} for simulator option {key!r}: {msg}") from exc


def config_from_sim_url(url: str) -> SimConfig:
    """``sim://?decode_ms_per_token=2&overload_rate=0.1`` → ``SimConfig``. Query keys are ``SimConfig`` fields."""
    parts = urlsplit(url)
    if parts.scheme != "sim":
        raise SpecError(f"{url!r} is not a simulator URL: it must start with 'sim://'")
    values: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in values:
            raise SpecError(f"{url!r}: simulator option {key!r} is given twice")
        # an empty value means "unset" for optional knobs such as api_key or rate_limit
        values[key] = None if value == "" else value
    return config_from_mapping(values, source=url)
