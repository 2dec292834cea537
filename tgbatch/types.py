"""The records every backend speaks, whatever its wire protocol: what the runner asks for, what it gets back,
and what a server says it can take.

The runner only ever sees these: TGI's ``/generate``, and OpenAI-style chat and completions routes, are
translated into them by their backend (``tgbatch.backends``), so a new backend is an addition, not an edit
across the runner, the writer and the stats.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

U64_MAX = 2**64 - 1
U32_MAX = 2**32 - 1


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One request: a prompt (``/generate``, completions) or chat ``messages``, and its seed.

    The job's parameters are the backend's (validated once, at load time); ``params`` holds only what this
    request sets on top of them (e.g. the body of one line of an OpenAI Batch file)."""

    prompt: str | None = None
    messages: tuple[Mapping[str, Any], ...] | None = None
    seed: int | None = None
    params: Mapping[str, Any] | None = None


@dataclass(slots=True)
class GenerationResult:
    """One answer, in the terms every backend shares. ``details`` is the backend's raw detail (tokens,
    logprobs) as JSON-ready data, kept only when the job asks for it."""

    text: str
    finish_reason: str | None = None
    generated_tokens: int | None = None
    prompt_tokens: int | None = None
    seed: int | None = None
    reasoning: str | None = None
    model: str | None = None
    details: dict[str, Any] | None = None
    #: a chat answer's tool calls as JSON text (a list of OpenAI ``tool_calls``, ``arguments`` as strings)
    tool_calls: str | None = None


@dataclass(frozen=True)
class Capacity:
    """What a server says about itself and its limits (TGI's ``/info``, an OpenAI-style ``/v1/models``).
    ``None`` means the server did not say."""

    model_id: str | None = None
    version: str | None = None
    #: the server's kind, detected or given (``tgi``, ``vllm``, ``sglang``, ``openai`` for any other)
    server: str | None = None
    max_concurrent_requests: int | None = None
    max_input_tokens: int | None = None
    max_total_tokens: int | None = None
    max_best_of: int | None = None
    max_stop_sequences: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)
