"""What differs between the servers the simulator plays on its OpenAI routes: error bodies, field names,
finish reasons, model cards and metric names. One table, so a handler never branches on a flavour's name for
a wire detail.

Sources: TGI router/src/lib.rs, server.rs, chat.rs (v3.3.x); vLLM entrypoints/openai/*/protocol.py and
engine/serving.py; SGLang srt/entrypoints/openai/protocol.py and serving_base.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: what the sims report as their versions
VLLM_VERSION = "0.11.0"
SGLANG_VERSION = "0.5.4"

#: vLLM's error types by status (engine/serving.py create_error_response), SGLang's (serving_base.py)
_VLLM_TYPES = {400: "BadRequestError", 404: "NotFoundError", 500: "InternalServerError", 503: "ServiceUnavailable"}
_SGLANG_TYPES = {400: "BadRequest", 404: "NotFound", 500: "InternalServerError", 503: "ServiceUnavailable"}


@dataclass(frozen=True, slots=True)
class Flavor:
    name: str
    #: the message's field for reasoning text, or None when the text carries <think>...</think> inline
    reasoning_field: str | None
    #: tool-call arguments as a JSON string (OpenAI) or an object
    arguments_as_string: bool
    #: finish_reason of an answer that is a tool call
    tool_finish: str
    #: status for validation errors and for a context-length overflow
    bad_request: int
    #: keeps the matched stop string in the text (TGI) or trims it (vLLM, SGLang)
    keeps_stop: bool
    #: queue in front of the batch (vLLM, SGLang) instead of refusing with 429 (TGI)
    queues: bool

    def error_body(self, status: int, message: str, error_type: str | None = None) -> dict[str, Any]:
        """The flavour's error JSON. ``error_type`` is TGI's (validation, overloaded, ...)."""
        if self.name == "tgi":
            return {"error": message, "error_type": error_type or "validation"}
        if self.name == "vllm":
            kind = _VLLM_TYPES.get(status, "BadRequestError")
            return {"error": {"message": message, "type": kind, "param": None, "code": status}}
        kind = _SGLANG_TYPES.get(status, "BadRequest")
        return {"object": "error", "message": message, "type": kind, "param": None, "code": status}

    def finish_reason(self, internal: str) -> str:
        """``internal`` is the model's: eos_token, length, stop_sequence."""
        if internal == "eos_token":
            return "stop"
        if internal == "stop_sequence":
            return "stop_sequence" if self.name == "tgi" else "stop"
        return internal

    def context_error(self, limit: int, prompt_tokens: int, max_tokens: int | None) -> str:
        """vLLM's and SGLang's context-length messages (TGI's come from the router's validation)."""
        if self.name == "sglang":
            total = prompt_tokens + (max_tokens or 0)
            return (
                f"Requested token count exceeds the model's maximum context length of {limit} tokens. You "
                f"requested a total of {total} tokens: {prompt_tokens} tokens from the input messages and "
                f"{max_tokens or 0} tokens for the completion. Please reduce the number of tokens in the input "
                "messages or the completion to fit within the limit."
            )
        if max_tokens is None:
            return (
                f"This model's maximum context length is {limit} tokens. However, your request has "
                f"{prompt_tokens} input tokens. Please reduce the length of the input messages."
            )
        return (
            f"This model's maximum context length is {limit} tokens. However, you requested "
            f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, {max_tokens} in the "
            "completion). Please reduce the length of the messages or completion."
        )

    def model_card(self, model_id: str, created: int, max_model_len: int) -> dict[str, Any]:
        if self.name == "tgi":
            # TGI's ModelInfo: owned_by is the model id
            return {"id": model_id, "object": "model", "created": created, "owned_by": model_id}
        card: dict[str, Any] = {
            "id": model_id,
            "object": "model",
            "created": created,
            "owned_by": self.name,
            "root": model_id,
            "parent": None,
            "max_model_len": max_model_len,
        }
        if self.name == "vllm":
            card["permission"] = []
        return card

    def gauges(self, model_id: str, running: int, waiting: int) -> str:
        """The queue gauges of ``/metrics`` (vLLM: vllm:num_requests_*, SGLang: sglang:num_*_reqs)."""
        if self.name == "vllm":
            names = (("vllm:num_requests_running", running), ("vllm:num_requests_waiting", waiting))
            labels = f'engine="0",model_name="{model_id}"'
        else:
            names = (("sglang:num_running_reqs", running), ("sglang:num_queue_reqs", waiting))
            labels = f'model_name="{model_id}"'
        lines = []
        for name, value in names:
            lines += [f"# TYPE {name} gauge", f"{name}{{{labels}}} {float(value)}"]
        return "\n".join(lines) + "\n"


TGI = Flavor("tgi", None, True, "stop", 422, keeps_stop=True, queues=False)
VLLM = Flavor("vllm", "reasoning", True, "tool_calls", 400, keeps_stop=False, queues=True)
SGLANG = Flavor("sglang", "reasoning_content", True, "tool_calls", 400, keeps_stop=False, queues=True)
FLAVORS = {f.name: f for f in (TGI, VLLM, SGLANG)}
