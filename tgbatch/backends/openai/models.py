"""Typed answers of OpenAI-style routes, tolerant of what real servers and providers send.

Every model allows extra fields (providers add ``time_info``, ``content_filter_results``, ``stop_reason``,
``matched_stop``, ...) and defaults what some omit (TGI's ``id`` is ``""``; sambanova and nebius leave out
``logprobs``). ``reasoning`` and ``reasoning_content`` both land in ``.reasoning``; a tool call's
``arguments`` is always a JSON string (TGI sends an object); an empty ``finish_reason`` (TGI's completions
stream) is ``None``.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, field_validator, model_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


def json_arguments(value: Any) -> Any:
    """A tool call's ``arguments`` as a JSON string (OpenAI's form) whatever the server sent."""
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _reasoning(data: Any) -> Any:
    if isinstance(data, dict) and data.get("reasoning") is None and data.get("reasoning_content") is not None:
        return {**data, "reasoning": data["reasoning_content"]}
    return data


class FunctionCall(_Model):
    name: str | None = None
    arguments: str | None = None

    _arguments = field_validator("arguments", mode="before")(json_arguments)


class ToolCall(_Model):
    #: TGI 1.x sent an integer id
    id: str | None = None
    type: str | None = "function"
    index: int | None = None
    function: FunctionCall

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, value: Any) -> Any:
        return value if value is None or isinstance(value, str) else str(value)


class TopLogprob(_Model):
    token: str
    logprob: float


class TokenLogprob(_Model):
    token: str
    logprob: float
    top_logprobs: list[TopLogprob] = []


class ChoiceLogprobs(_Model):
    content: list[TokenLogprob] | None = None


class ChatMessage(_Model):
    role: str | None = "assistant"
    content: str | None = None
    reasoning: str | None = None
    tool_calls: list[ToolCall] | None = None

    _reasoning = model_validator(mode="before")(_reasoning)


def _finish(value: Any) -> Any:
    return None if value == "" else value


class ChatChoice(_Model):
    index: int = 0
    message: ChatMessage
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None

    _finish = field_validator("finish_reason", mode="before")(_finish)


class Usage(_Model):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None


class ChatCompletion(_Model):
    id: str = ""
    object: str | None = None
    created: int | None = None
    model: str = ""
    choices: list[ChatChoice] = []
    usage: Usage | None = None
    system_fingerprint: str | None = None


class DeltaFunctionCall(_Model):
    name: str | None = None
    arguments: str | None = None

    _arguments = field_validator("arguments", mode="before")(json_arguments)


class DeltaToolCall(_Model):
    index: int | None = None
    id: str | None = None
    type: str | None = None
    function: DeltaFunctionCall | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, value: Any) -> Any:
        return value if value is None or isinstance(value, str) else str(value)


class ChatDelta(_Model):
    role: str | None = None
    content: str | None = None
    reasoning: str | None = None
    tool_calls: list[DeltaToolCall] | None = None

    _reasoning = model_validator(mode="before")(_reasoning)


class ChatChunkChoice(_Model):
    index: int = 0
    delta: ChatDelta = ChatDelta()
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None

    _finish = field_validator("finish_reason", mode="before")(_finish)


class ChatCompletionChunk(_Model):
    id: str = ""
    object: str | None = None
    created: int | None = None
    model: str = ""
    choices: list[ChatChunkChoice] = []
    usage: Usage | None = None


class CompletionLogprobs(_Model):
    tokens: list[str] | None = None
    token_logprobs: list[float | None] | None = None
    top_logprobs: list[dict[str, float] | None] | None = None
    text_offset: list[int] | None = None


class CompletionChoice(_Model):
    index: int = 0
    text: str = ""
    finish_reason: str | None = None
    logprobs: CompletionLogprobs | None = None

    _finish = field_validator("finish_reason", mode="before")(_finish)


class Completion(_Model):
    """A ``/v1/completions`` answer, or one event of its stream (the same shape)."""

    id: str = ""
    object: str | None = None
    created: int | None = None
    model: str = ""
    choices: list[CompletionChoice] = []
    usage: Usage | None = None
    system_fingerprint: str | None = None


class CompletionChunk(Completion):
    """One event of a ``/v1/completions`` stream."""


class ModelCard(_Model):
    """One entry of ``GET /v1/models``; vLLM and SGLang add ``max_model_len``."""

    id: str
    object: str | None = "model"
    created: int | None = None
    owned_by: str | None = None
    max_model_len: int | None = None


class ModelList(_Model):
    object: str | None = "list"
    data: list[ModelCard] = []


__all__ = [
    "ChatChoice",
    "ChatChunkChoice",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatDelta",
    "ChatMessage",
    "ChoiceLogprobs",
    "Completion",
    "CompletionChoice",
    "CompletionChunk",
    "CompletionLogprobs",
    "DeltaFunctionCall",
    "DeltaToolCall",
    "FunctionCall",
    "ModelCard",
    "ModelList",
    "TokenLogprob",
    "TopLogprob",
    "Usage",
]
