"""The client's side of OpenAI-style routes, with no I/O: routes, bodies, tolerant parsing, stream state.

Bodies hold exactly what the caller set (a server fills unset parameters from the model's own defaults, and
TGI turns a sent ``presence_penalty: 0`` into a repetition penalty of 2.0), then ``extra_body`` merged on top
as the ``openai`` package does. Encoding and decoding use orjson.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import orjson
import pydantic

from tgbatch.backends.openai.errors import error_from_response, in_band_error
from tgbatch.backends.openai.models import ChatCompletion, ChatCompletionChunk, Completion, CompletionChunk, ModelList
from tgbatch.backends.tgi.errors import excerpt
from tgbatch.errors import IncompleteStreamError, ProtocolError, ValidationError
from tgbatch.types import GenerationResult

Model = TypeVar("Model", bound=pydantic.BaseModel)

CHAT = "/chat/completions"
COMPLETIONS = "/completions"
MODELS = "/models"
#: keys a request sets itself: a parameter of the same name is refused rather than silently overwritten
RESERVED = frozenset({"messages", "prompt", "stream"})


def api_prefix(base_url: str) -> str:
    """What goes between the base URL and ``/chat/completions``: nothing when the base URL already ends in
    ``/v1`` (openai's convention: ``https://router.huggingface.co/v1``), else ``/v1`` (TGI's: a server root,
    or a model's root such as ``.../hf-inference/models/X``)."""
    return "" if urlsplit(base_url).path.rstrip("/").endswith("/v1") else "/v1"


def server_path(base_url: str, path: str) -> str:
    """A server-level route (``/health``, ``/metrics``, ``/info``, ``/version``) for a base URL that may end in
    ``/v1``: those live beside ``/v1``, not under it. The transport joins base and path as strings and both
    aiohttp (yarl) and httpx resolve the ``..``."""
    return "/.." + path if api_prefix(base_url) == "" else path


def build_body(
    params: Mapping[str, Any],
    *,
    model: str | None,
    messages: Any = None,
    prompt: Any = None,
    stream: bool | None = None,
) -> dict[str, Any]:
    """One request's body: ``model``, the input, the caller's parameters (``None`` means unset), ``stream``
    only for a stream, then ``extra_body`` merged last, as it is."""
    params = dict(params)
    extra = params.pop("extra_body", None) or {}
    for key in RESERVED & params.keys():
        raise ValidationError(
            f"`{key}` is not a parameter here: pass it as the method's argument", status_code=None, error_type=None
        )
    body: dict[str, Any] = {}
    if model is not None:
        body["model"] = model
    if messages is not None:
        body["messages"] = list(messages)
    if prompt is not None:
        body["prompt"] = prompt
    body.update((key, value) for key, value in params.items() if value is not None)
    if stream:
        body["stream"] = True
    if not isinstance(extra, Mapping):
        raise ValidationError(
            f"`extra_body` must be a mapping, got {type(extra).__name__}", status_code=None, error_type=None
        )
    body.update(extra)
    return body


def encode(body: Mapping[str, Any]) -> bytes:
    try:
        return orjson.dumps(body)
    except TypeError as exc:
        raise ValidationError(f"The request body is not JSON: {exc}", status_code=None, error_type=None) from exc


def load_json(status: int, headers: Mapping[str, str], content: bytes, *, base_url: str | None = None) -> Any:
    """The decoded body of a 2xx answer; any other status raises its mapped error."""
    if not 200 <= status < 300:
        raise error_from_response(status, headers, content, base_url=base_url)
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        raise ProtocolError(
            f"The server answered {status} with a body that is not JSON: {excerpt(content)}",
            status_code=status,
            body=content.decode("utf-8", "replace"),
        ) from None


def parse_model(cls: type[Model], data: Any, *, status: int | None = None) -> Model:
    if isinstance(data, dict) and "error" in data and "choices" not in data:
        raise in_band_error(data, status)  # an error sent with a 200 (a stream's error event, some gateways)
    try:
        return cls.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ProtocolError(
            f"The server's answer is not an OpenAI {cls.__name__}: {exc.errors()[0]['msg']} at "
            f"{'.'.join(str(p) for p in exc.errors()[0]['loc'])}",
            status_code=status,
        ) from exc


def parse_chat(status: int, headers: Mapping[str, str], content: bytes, base_url: str | None = None) -> ChatCompletion:
    return parse_model(ChatCompletion, load_json(status, headers, content, base_url=base_url), status=status)


def parse_completion(
    status: int, headers: Mapping[str, str], content: bytes, base_url: str | None = None
) -> Completion:
    return parse_model(Completion, load_json(status, headers, content, base_url=base_url), status=status)


def parse_models(status: int, headers: Mapping[str, str], content: bytes, base_url: str | None = None) -> ModelList:
    return parse_model(ModelList, load_json(status, headers, content, base_url=base_url), status=status)


class StreamState:
    """Turns a stream's SSE ``data`` into chunks. ``data: [DONE]`` ends it; a stream that ends without
    ``[DONE]`` is complete only if a choice said its ``finish_reason`` (cerebras and TGI 1.x send no
    ``[DONE]``); otherwise it was cut: ``IncompleteStreamError``."""

    def __init__(self, chunk_type: type[ChatCompletionChunk] | type[CompletionChunk]) -> None:
        self.chunk_type = chunk_type
        self.finished = False
        self.finish_reason: str | None = None

    def feed(self, data: str) -> ChatCompletionChunk | CompletionChunk | None:
        if data.strip() == "[DONE]":
            self.finished = True
            return None
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise ProtocolError(f"A stream event is not JSON: {data[:200]!r}", status_code=200) from None
        chunk = parse_model(self.chunk_type, payload, status=200)
        for choice in chunk.choices:
            if choice.finish_reason is not None:
                self.finish_reason = choice.finish_reason
        return chunk

    def finish(self) -> None:
        """The connection closed: complete if it said ``[DONE]`` or a finish reason, else cut."""
        if not self.finished and self.finish_reason is None:
            raise IncompleteStreamError(
                "The stream ended before its last event (no finish_reason, no [DONE])",
                status_code=None,
                error_type="incomplete_generation_stream",
            )


# -- the batch runner's hot path: a constant body encoded once, answers read for what is recorded -------------


class BodyEncoder:
    """Encodes one job's requests: the constant part (model, parameters, ``extra_body``, already in the
    server's form) is encoded once; each request adds its input and seed. When ``extra_body`` or the
    parameters set the input or the seed themselves, each body is built whole so that theirs wins."""

    def __init__(self, constant: Mapping[str, Any], input_key: str) -> None:
        self.constant = dict(constant)
        self.input_key = input_key
        self._whole = bool({input_key, "seed"} & self.constant.keys())
        encoded = encode(self.constant)
        self._prefix = encoded[:-1] + (b"," if self.constant else b"") + b'"' + input_key.encode() + b'":'

    def encode(self, value: Any, seed: int | None) -> bytes:
        if self._whole:
            body = {self.input_key: value, **({} if seed is None else {"seed": seed}), **self.constant}
            return encode(body)
        tail = b"}" if seed is None else b',"seed":' + str(int(seed)).encode() + b"}"
        return self._prefix + encode(value) + tail


def first_choice(data: Any, status: int) -> dict[str, Any]:
    if isinstance(data, dict) and "error" in data and "choices" not in data:
        raise in_band_error(data, status)
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ProtocolError(f"The answer has no choices: {str(data)[:200]!r}", status_code=status)
    return choices[0]


def tool_calls_json(calls: Any) -> str | None:
    """A message's ``tool_calls`` as JSON text, ``arguments`` as JSON strings; ``None`` when there are none."""
    if not isinstance(calls, list) or not calls:
        return None
    out = []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and not isinstance(function.get("arguments"), str | None):
            call = {**call, "function": {**function, "arguments": orjson.dumps(function["arguments"]).decode()}}
        out.append(call)
    return orjson.dumps(out).decode()


def chat_logprobs(logprobs: Any) -> dict[str, Any] | None:
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list):
        return None
    return {
        "logprobs": [
            {
                "token": item.get("token"),
                "logprob": item.get("logprob"),
                "top_logprobs": [
                    {"token": t.get("token"), "logprob": t.get("logprob")} for t in item.get("top_logprobs") or []
                ],
            }
            for item in content
        ]
    }


def completion_logprobs(logprobs: Any) -> dict[str, Any] | None:
    """Completions' parallel lists (``tokens``, ``token_logprobs``, ``top_logprobs``) in chat's shape."""
    if not isinstance(logprobs, dict) or not isinstance(logprobs.get("tokens"), list):
        return None
    values = logprobs.get("token_logprobs") or []
    tops = logprobs.get("top_logprobs") or []
    items = []
    for i, token in enumerate(logprobs["tokens"]):
        top = tops[i] if i < len(tops) and isinstance(tops[i], dict) else {}
        items.append(
            {
                "token": token,
                "logprob": values[i] if i < len(values) else None,
                "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top.items()],
            }
        )
    return {"logprobs": items}


def to_result(data: Any, *, chat: bool, status: int, keep_logprobs: bool) -> GenerationResult:
    """A decoded chat or completions answer as the runner's ``GenerationResult`` (only what it records)."""
    choice = first_choice(data, status)
    usage = data.get("usage") or {}
    seed = data.get("seed", choice.get("seed"))
    if chat:
        message = choice.get("message") or {}
        text = message.get("content") or ""
        reasoning = message.get("reasoning") or message.get("reasoning_content")
        tool_calls = tool_calls_json(message.get("tool_calls"))
        details = chat_logprobs(choice.get("logprobs")) if keep_logprobs else None
    else:
        text, reasoning, tool_calls = choice.get("text") or "", None, None
        details = completion_logprobs(choice.get("logprobs")) if keep_logprobs else None
    return GenerationResult(
        text=text,
        finish_reason=choice.get("finish_reason") or None,
        generated_tokens=usage.get("completion_tokens") if isinstance(usage, dict) else None,
        prompt_tokens=usage.get("prompt_tokens") if isinstance(usage, dict) else None,
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        reasoning=reasoning if isinstance(reasoning, str) else None,
        model=data.get("model") or None,
        details=details,
        tool_calls=tool_calls,
    )
