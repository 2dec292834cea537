"""An OpenAI chat or completions body, read as the flavour's server reads it, into a ``Job``: the prompts as the
model sees them and TGI-style decoding ``Parameters`` for the simulated model.

What each server takes (see ``/work/shared/reference/OPENAI-COMPAT.md``): TGI turns ``presence_penalty`` into
``repetition_penalty = presence_penalty + 2``, ignores ``n`` and takes ``response_format`` in its own
``{"type", "value"}`` form; vLLM and SGLang take OpenAI's ``json_schema`` form, vLLM ``structured_outputs``,
SGLang a top-level ``regex``. Unknown fields are ignored everywhere (an old ``guided_json`` gets free text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tgbatch.backends.tgi.models import Grammar
from tgbatch.backends.tgi.rules import DESERIALIZE_PREFIX, Parameters
from tgbatch.sim.http import Rejection
from tgbatch.sim.openai.flavors import Flavor
from tgbatch.sim.openai.template import TemplateError, render


class BadRequest(Exception):
    """A request the flavour refuses with its own error body (TGI 422, vLLM/SGLang 400, or ``status``)."""

    def __init__(self, message: str, status: int | None = None, error_type: str = "validation") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_type = error_type


@dataclass(slots=True)
class Job:
    chat: bool
    #: the text(s) the model continues: the templated chat, or each completions prompt
    prompts: list[str]
    params: Parameters
    n: int
    stream: bool
    include_usage: bool
    logprobs: bool
    top_logprobs: int
    #: the ``model`` the answer names
    model: str
    #: the function the answer calls (tool_choice "required" or named), else None
    tool: str | None
    #: max_tokens as the client sent it (None: up to the context length)
    max_tokens: int | None

    @property
    def special_tokens(self) -> int:
        """Tokens the server adds to each prompt: the completions routes add a BOS; chat templates carry theirs."""
        return 0 if self.chat else 1


def _type_error(flavor: Flavor, key: str, value: Any, expected: str) -> Exception:
    if flavor.name == "tgi":  # serde's rejection, text/plain
        return Rejection(422, f"{DESERIALIZE_PREFIX}{key}: invalid type: {value!r}, expected {expected}")
    return BadRequest(f"{key}: Input should be {expected}, got {value!r}")


def _number(body: dict[str, Any], key: str, flavor: Flavor) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _type_error(flavor, key, value, "a number")
    return float(value)


def _integer(body: dict[str, Any], key: str, flavor: Flavor) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _type_error(flavor, key, value, "an integer")
    return value


def _stop(body: dict[str, Any], flavor: Flavor) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return list(stop)
    raise _type_error(flavor, "stop", stop, "a string or a list of strings")


def _tgi_format(fmt: Any) -> Grammar:
    """TGI's ``GrammarType``: serde tag ``type``, content ``value``; ``json_object`` is an alias of ``json``."""
    if not isinstance(fmt, dict) or fmt.get("type") not in ("json", "json_object", "regex", "json_schema"):
        kind = fmt.get("type") if isinstance(fmt, dict) else fmt
        raise Rejection(
            422,
            f"{DESERIALIZE_PREFIX}response_format: unknown variant `{kind}`"
            ", expected one of `json`, `json_object`, `regex`, `json_schema`",
        )
    if "value" not in fmt:
        raise Rejection(422, f"{DESERIALIZE_PREFIX}response_format: missing field `value`")
    kind = "json" if fmt["type"] == "json_object" else fmt["type"]
    return Grammar(type=kind, value=fmt["value"])


def _openai_format(fmt: Any) -> Grammar | None:
    """OpenAI's ``response_format`` as vLLM and SGLang take it."""
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
        raise BadRequest(f"response_format.type must be 'text', 'json_object' or 'json_schema', got {fmt!r}")
    if fmt["type"] == "text":
        return None
    if fmt["type"] == "json_object":
        return Grammar(type="json", value={"type": "object"})
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
        raise BadRequest("response_format.json_schema must be an object with `name` and `schema`")
    return Grammar(type="json", value=spec.get("schema") or {"type": "object"})


def _extra_grammar(body: dict[str, Any], flavor: Flavor) -> Grammar | None:
    """vLLM's ``structured_outputs: {regex|json|choice}``, SGLang's top-level ``regex`` / ``json_schema``."""
    if flavor.name == "vllm":
        so = body.get("structured_outputs")
        if not isinstance(so, dict):
            return None
        if isinstance(so.get("regex"), str):
            return Grammar(type="regex", value=so["regex"])
        if so.get("json") is not None:
            return Grammar(type="json", value=so["json"])
        if isinstance(so.get("choice"), list) and so["choice"]:
            return Grammar(type="regex", value="|".join(re.escape(str(c)) for c in so["choice"]))
        return None
    if isinstance(body.get("regex"), str):
        return Grammar(type="regex", value=body["regex"])
    if isinstance(body.get("json_schema"), str):
        return Grammar(type="json", value=body["json_schema"])
    if body.get("ebnf") is not None:
        raise BadRequest("ebnf grammars are not supported by the simulated model; use regex or json_schema")
    return None


def _tool(body: dict[str, Any], flavor: Flavor) -> tuple[str, dict[str, Any], list[dict[str, Any]]] | None:
    """The function the answer must call and its parameters schema, or None (no tools, or "auto"/"none":
    the simulated model then answers in text)."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not tools or choice in (None, "auto", "none"):
        return None
    if not isinstance(tools, list) or not all(
        isinstance(t, dict) and isinstance(t.get("function"), dict) for t in tools
    ):
        raise BadRequest("tools must be a list of {'type': 'function', 'function': {...}}")
    by_name = {t["function"].get("name"): t["function"] for t in tools}
    if choice == "required":
        name = tools[0]["function"].get("name")
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
        if name not in by_name:
            raise BadRequest(f"Tool choice '{name}' not found in tool names")
    else:
        raise BadRequest(f"tool_choice must be 'none', 'auto', 'required' or a named function, got {choice!r}")
    schema = by_name[name].get("parameters") or by_name[name].get("arguments") or {"type": "object"}
    return str(name), schema, tools


def _grammar(body: dict[str, Any], flavor: Flavor) -> Grammar | None:
    fmt = body.get("response_format")
    if fmt is None:
        return _extra_grammar(body, flavor)
    if flavor.name == "tgi":
        if body.get("tools"):
            raise BadRequest("Grammar and tools are mutually exclusive", error_type="tool_error")
        return _tgi_format(fmt)
    return _openai_format(fmt) or _extra_grammar(body, flavor)


def _decoding(body: dict[str, Any], flavor: Flavor) -> dict[str, Any]:
    """The decoding parameters in TGI's terms: temperature 0 is greedy everywhere."""
    temperature = _number(body, "temperature", flavor)
    top_p = _number(body, "top_p", flavor)
    presence = _number(body, "presence_penalty", flavor)
    out: dict[str, Any] = {
        "do_sample": temperature != 0.0,
        "temperature": None if temperature == 0.0 else temperature,
        "top_p": top_p,
        "frequency_penalty": _number(body, "frequency_penalty", flavor),
        "seed": _integer(body, "seed", flavor),
        "stop": _stop(body, flavor),
    }
    if flavor.name == "tgi":
        out["repetition_penalty"] = presence + 2.0 if presence is not None else None
        return out
    if temperature is not None and temperature < 0:
        raise BadRequest(f"temperature must be non-negative, got {temperature}.")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise BadRequest(f"top_p must be in (0, 1], got {top_p}.")
    out["top_p"] = None if top_p == 1.0 else top_p
    top_k = _integer(body, "top_k", flavor)
    out["top_k"] = None if top_k in (None, 0, -1) else top_k
    out["repetition_penalty"] = _number(body, "repetition_penalty", flavor)
    return out


def parse(body: Any, flavor: Flavor, *, chat: bool, model_id: str) -> Job:
    """Read a chat (``chat``) or completions body. Raises ``BadRequest`` or (TGI's serde) ``Rejection``."""
    if not isinstance(body, dict):
        raise _type_error(flavor, "body", body, "an object")
    max_tokens = _integer(body, "max_tokens", flavor)
    if max_tokens is None and chat:
        max_tokens = _integer(body, "max_completion_tokens", flavor)
    if max_tokens is None and not chat and flavor.name != "tgi":
        max_tokens = 16  # OpenAI's and vLLM's default for /v1/completions
    if flavor.name != "tgi" and max_tokens is not None and max_tokens < 1:
        raise BadRequest(f"max_tokens must be at least 1, got {max_tokens}.")
    n = _integer(body, "n", flavor) or 1
    if flavor.name == "tgi":
        n = 1  # TGI reads n but never uses it
    elif n < 1:
        raise BadRequest(f"n must be at least 1, got {n}.")
    decoding = _decoding(body, flavor)
    tool = _tool(body, flavor) if chat else None
    grammar = Grammar(type="json", value=tool[1]) if tool is not None else _grammar(body, flavor)
    logprobs, top = _logprobs(body, flavor, chat)
    params = Parameters(**decoding, max_new_tokens=max_tokens, grammar=grammar, details=True, top_n_tokens=top or None)
    prompts = _prompts(body, flavor, chat, tool[2] if tool is not None else None)
    requested = body.get("model")
    if flavor.name == "vllm" and requested is not None and requested != model_id:
        raise BadRequest(f"The model `{requested}` does not exist.", status=404)
    model = model_id if requested in (None, "tgi") or flavor.name != "tgi" else str(requested)
    options = body.get("stream_options")
    include_usage = bool(options.get("include_usage")) if isinstance(options, dict) else False
    return Job(
        chat, prompts, params, n, bool(body.get("stream")), include_usage, logprobs, top, model,
        tool[0] if tool is not None else None, max_tokens,
    )  # fmt: skip


def _logprobs(body: dict[str, Any], flavor: Flavor, chat: bool) -> tuple[bool, int]:
    """(logprobs wanted, top alternatives per token). Completions' ``logprobs`` is the number of alternatives;
    TGI's completions route never returns logprobs."""
    if not chat:
        n = _integer(body, "logprobs", flavor)
        if flavor.name == "tgi" or n is None:
            return False, 0
        if not 0 <= n <= 20:
            raise BadRequest(f"logprobs must be between 0 and 20, got {n}.")
        return True, n
    wanted = bool(body.get("logprobs"))
    top = _integer(body, "top_logprobs", flavor) or 0
    if flavor.name != "tgi" and not 0 <= top <= 20:
        raise BadRequest(f"top_logprobs must be between 0 and 20, got {top}.")
    if flavor.name != "tgi" and top and not wanted:
        raise BadRequest("when using `top_logprobs`, `logprobs` must be set to true.")
    return wanted, top


def _prompts(body: dict[str, Any], flavor: Flavor, chat: bool, tools: list[dict[str, Any]] | None) -> list[str]:
    if chat:
        if "messages" not in body:
            if flavor.name == "tgi":
                raise Rejection(422, f"{DESERIALIZE_PREFIX}missing field `messages`")
            raise BadRequest("messages: Field required")
        try:
            return [render(body["messages"], tools)]
        except TemplateError as exc:
            raise BadRequest(str(exc)) from exc
    prompt = body.get("prompt")
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise _type_error(flavor, "prompt", prompt, "a string or a list of strings")
    return prompts
