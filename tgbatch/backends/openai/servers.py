"""Each OpenAI-compatible server's quirks, in one place: how it is recognised, how it wants constrained output
asked for, what it does with ``model``, where its context length and queue gauge are.

Sources: TGI ``router/src/lib.rs`` (``GrammarType``: serde tag ``type``, content ``value``; ``json`` alias
``json_object``; ``json_schema`` = ``{name, schema}``; ``model`` used as ``adapter_id`` unless ``"tgi"``);
vLLM ``entrypoints/openai/protocol.py`` (``response_format`` as OpenAI's, regex via ``structured_outputs``;
unknown fields ignored, so an untranslated request would run unconstrained with a 200); SGLang
``srt/entrypoints/openai/protocol.py`` (OpenAI's ``response_format``, a top-level ``regex``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tgbatch.errors import ValidationError

KINDS = ("tgi", "vllm", "sglang", "openai")


@dataclass(frozen=True)
class Server:
    kind: str
    #: the ``/metrics`` gauge of requests waiting in its queue
    queue_gauges: tuple[str, ...]
    #: the ``model`` to send when the job names none: TGI takes a model other than "tgi" as a LoRA adapter id
    default_wire_model: str | None = None


SERVERS: dict[str, Server] = {
    "tgi": Server("tgi", ("tgi_queue_size",), default_wire_model="tgi"),
    "vllm": Server("vllm", ("vllm:num_requests_waiting",)),
    "sglang": Server("sglang", ("sglang:num_queue_reqs",)),
    "openai": Server("openai", ()),
}


def kind_from_models(models: Mapping[str, Any]) -> str:
    """vLLM and SGLang name themselves in ``/v1/models``' ``owned_by``; anything else is a generic provider
    (TGI lists its model with ``owned_by`` = the model id, but is recognised by ``/info`` first)."""
    data = models.get("data") if isinstance(models, Mapping) else None
    owner = data[0].get("owned_by") if isinstance(data, list) and data and isinstance(data[0], Mapping) else None
    return owner if owner in ("vllm", "sglang") else "openai"


def is_tgi_info(info: Any) -> bool:
    return isinstance(info, Mapping) and info.get("router") == "text-generation-router" and "model_id" in info


def translate(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with its ``response_format`` in the server's own form (a copy when it changes).

    Accepted forms: OpenAI's ``{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`` and
    ``{"type": "json_object"}``; TGI's ``{"type": "json", "value": schema}``; and a regex, ``{"type": "regex",
    "value": "..."}`` (TGI's form; OpenAI has none)."""
    fmt = body.get("response_format")
    if not isinstance(fmt, Mapping) or fmt.get("type") in (None, "text"):
        return body
    out = dict(body)
    kind_of = fmt.get("type")
    if kind_of == "regex":
        _regex(kind, out, fmt)
    elif kind_of in ("json_schema", "json", "json_object"):
        out["response_format"] = _tgi_json(fmt) if kind == "tgi" else _openai_json(fmt)
    return out


def _schema(fmt: Mapping[str, Any]) -> tuple[str | None, Any, Any]:
    """(name, schema, strict) of any JSON form; schema ``None`` for "any JSON object"."""
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or fmt.get("value") or {}
        return spec.get("name"), spec.get("schema"), spec.get("strict")
    return None, fmt.get("value"), None


def _tgi_json(fmt: Mapping[str, Any]) -> dict[str, Any]:
    name, schema, _ = _schema(fmt)
    if schema is None:
        return {"type": "json", "value": {"type": "object"}}
    if fmt.get("type") == "json_schema":
        value = {"schema": schema} if name is None else {"name": name, "schema": schema}
        return {"type": "json_schema", "value": value}
    return {"type": "json", "value": schema}


def _openai_json(fmt: Mapping[str, Any]) -> dict[str, Any]:
    if fmt.get("type") == "json_schema" and "json_schema" in fmt:
        return dict(fmt)  # already OpenAI's
    name, schema, strict = _schema(fmt)
    if schema is None:
        return {"type": "json_object"}
    spec: dict[str, Any] = {"name": name or "response", "schema": schema}
    if strict is not None:
        spec["strict"] = strict
    return {"type": "json_schema", "json_schema": spec}


def _regex(kind: str, out: dict[str, Any], fmt: Mapping[str, Any]) -> None:
    pattern = fmt.get("value", fmt.get("regex"))
    if not isinstance(pattern, str) or not pattern:
        raise ValidationError(
            f"response_format {{'type': 'regex'}} needs a non-empty string `value`, got {pattern!r}",
            status_code=None,
            error_type=None,
        )
    if kind == "tgi":
        out["response_format"] = {"type": "regex", "value": pattern}
        return
    del out["response_format"]
    if kind == "vllm":
        out["structured_outputs"] = {**(out.get("structured_outputs") or {}), "regex": pattern}
    elif kind == "sglang":
        out["regex"] = pattern
    else:
        raise ValidationError(
            "response_format of type `regex` is supported by TGI, vLLM and SGLang, not by this server (detected: "
            f"{kind}); use a json_schema, or set `server:` if the detection is wrong",
            status_code=None,
            error_type=None,
        )


def context_length(
    kind: str, info: Mapping[str, Any] | None, models: Mapping[str, Any] | None
) -> tuple[int | None, int | None]:
    """(max_input_tokens, max_total_tokens): TGI's ``/info``; vLLM's and SGLang's ``max_model_len``."""
    if kind == "tgi" and info:
        return _int(info.get("max_input_tokens") or info.get("max_input_length")), _int(info.get("max_total_tokens"))
    data = (models or {}).get("data")
    if isinstance(data, list) and data and isinstance(data[0], Mapping):
        return None, _int(data[0].get("max_model_len"))
    return None, None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
