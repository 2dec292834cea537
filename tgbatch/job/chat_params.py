"""The parameters of a chat or completions job, in OpenAI's names, as the user set them.

Unknown names are refused; the names of TGI's ``/generate`` and of OpenAI's own fields that tgbatch sets elsewhere
are refused with the place to use instead (``max_new_tokens`` -> ``max_tokens``, ``n`` -> ``samples``, ``seed`` ->
the ``seed:`` section). Server-specific fields (vLLM's and SGLang's ``top_k``, ``repetition_penalty``,
``chat_template_kwargs``, ...) go in ``extra_body``, sent as they are.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator, model_validator
from pydantic_core import PydanticCustomError

from tgbatch.job.response_format import format_check

ChatApi = Literal["chat", "completions"]
Api = Literal["generate", "chat", "completions"]

#: names refused on a chat or completions job, and where the setting goes instead
MOVED: dict[str, str] = {
    "max_new_tokens": "is TGI /generate's name; chat and completions take `max_tokens`",
    "repetition_penalty": "is not an OpenAI parameter; put it in `extra_body: {repetition_penalty: ...}` (vLLM, "
    "SGLang), or use `presence_penalty`/`frequency_penalty`",
    "top_k": "is not an OpenAI parameter; put it in `extra_body: {top_k: ...}` (vLLM, SGLang)",
    "typical_p": "is not an OpenAI parameter; put it in `extra_body` if the server takes it",
    "min_p": "is not an OpenAI parameter; put it in `extra_body: {min_p: ...}` (vLLM, SGLang)",
    "do_sample": "is TGI /generate's; chat and completions sample when `temperature` > 0 (leave it out for the "
    "server's default, 0 for greedy)",
    "stop_sequences": "is not a parameter; use `stop: [...]`",
    "grammar": "is TGI /generate's; use `response_format` ({type: json_schema, ...} or {type: regex, value: ...})",
    "top_n_tokens": "is TGI /generate's; use `logprobs: true` and `top_logprobs: N`",
    "best_of": "is refused: use `samples: N` (each sample is its own request with its own recorded seed)",
    "n": "is refused: use `samples: N` at the top level (each sample is its own request with its own recorded "
    "seed and its own output row)",
    "seed": "is set by the seed policy, not by parameters: use `seed: {policy: fixed, value: N}` (or per_row)",
    "stream": "is tgbatch's to decide (every answer is recorded whole); leave it out",
    "stream_options": "is tgbatch's to decide; leave it out",
    "model": "belongs in the endpoint section: `endpoint.model`",
    "messages": "is the job's input: use the top-level `messages:` or `messages_column:`",
    "prompt": "is the job's input: use the top-level `template:`",
    "details": "is TGI /generate's; chat jobs record finish_reason and token counts always, logprobs with "
    "`logprobs: true`",
}


class _OpenAIParameters(BaseModel):
    """What chat and completions share. ``None``: not sent (the server's default)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    #: names refused here, with the place they go instead
    _refused: ClassVar[dict[str, str]] = MOVED

    max_tokens: int | None = Field(
        None,
        ge=1,
        validation_alias=AliasChoices("max_tokens", "max_completion_tokens"),
        description="Most tokens to generate (also read as max_completion_tokens; sent as max_tokens).",
    )
    temperature: float | None = Field(None, ge=0, description="Sampling temperature; 0 is greedy (OpenAI: 0-2).")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling mass, in (0, 1].")
    stop: str | list[str] | None = Field(None, description="Stop when one of these strings is generated.")
    frequency_penalty: float | None = Field(None, ge=-2, le=2, description="Penalty on token frequency, in [-2, 2].")
    presence_penalty: float | None = Field(
        None, ge=-2, le=2, description="Penalty on token presence, in [-2, 2] (TGI: repetition penalty + 2.0)."
    )
    logit_bias: dict[str, float] | None = Field(None, description="Token id -> bias in [-100, 100].")
    response_format: dict[str, Any] | None = Field(
        None, description="Constrain the answer: json_schema, json_object, json (TGI) or regex; checked per row."
    )
    user: str | None = Field(None, description="An end-user id, passed on.")
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="Server-specific fields (top_k, chat_template_kwargs, ...), sent as they are."
    )

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, where in cls._refused.items():
                if name in data:
                    raise PydanticCustomError(
                        "moved_parameter",
                        "parameters.{name}: {value} {where}",
                        {"name": name, "value": repr(data[name]), "where": where},
                    )
        return data

    @field_validator("temperature", "top_p", "frequency_penalty", "presence_penalty")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @field_validator("logit_bias")
    @classmethod
    def _bias(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for token, bias in (value or {}).items():
            if not -100 <= bias <= 100:
                raise ValueError(f"the bias of token {token!r} is {bias}; biases go from -100 to 100")
        return value

    @field_validator("response_format")
    @classmethod
    def _format(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            format_check(value)
        return value

    @property
    def effectively_sampling(self) -> bool:
        """Sampling unless greedy was asked (temperature 0): servers sample by default."""
        return self.temperature is None or self.temperature > 0

    @property
    def keep_logprobs(self) -> bool:
        """Whether the answer's logprobs are asked for (and recorded in ``details``)."""
        raise NotImplementedError

    def wire(self) -> dict[str, Any]:
        """What the user set, in wire names, without ``extra_body`` (the backend merges that last)."""
        return self.model_dump(mode="json", exclude_unset=True, exclude={"extra_body"})


class ChatParameters(_OpenAIParameters):
    """OpenAI chat parameters (``/v1/chat/completions``)."""

    logprobs: StrictBool | None = Field(None, description="Return each generated token's logprob (in details).")
    top_logprobs: StrictInt | None = Field(None, ge=0, le=20, description="Alternatives per token, with logprobs.")
    tools: list[dict[str, Any]] | None = Field(None, description="Tools the model may call (OpenAI's shape).")
    tool_choice: str | dict[str, Any] | None = Field(None, description="none, auto, required, or one tool.")

    @model_validator(mode="after")
    def _top_logprobs(self) -> ChatParameters:
        if self.top_logprobs is not None and self.logprobs is not True:
            raise ValueError("top_logprobs needs logprobs: true")
        return self

    @property
    def keep_logprobs(self) -> bool:
        return bool(self.logprobs)


class CompletionsParameters(_OpenAIParameters):
    """OpenAI completions parameters (``/v1/completions``): ``logprobs`` is the number of alternatives per token."""

    _refused: ClassVar[dict[str, str]] = {
        **MOVED,
        "top_logprobs": "is chat's; on completions `logprobs: N` returns N alternatives per token",
        "tools": "needs api: chat (completions take a plain prompt)",
        "tool_choice": "needs api: chat (completions take a plain prompt)",
    }

    logprobs: StrictInt | None = Field(
        None, ge=0, le=20, description="Return each token's logprob and this many alternatives (0-20)."
    )

    @property
    def keep_logprobs(self) -> bool:
        return self.logprobs is not None


OpenAIParameters = ChatParameters | CompletionsParameters
