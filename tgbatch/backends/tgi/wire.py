"""The client's side of TGI's wire protocol, with no I/O: building requests, parsing answers, mapping errors.

The clients (``client.py``) are thin shells around these functions and ``tgbatch.http``'s transport.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

import pydantic

from tgbatch._version import __version__
from tgbatch.backends.tgi.models import Grammar, Info, Response, StreamResponse
from tgbatch.backends.tgi.rules import Limits, Parameters, check_wire, validate_request
from tgbatch.errors import (
    AuthenticationError,
    BadRequestError,
    GenerationError,
    IncompleteGenerationError,
    IncompleteStreamError,
    ModelLoadingError,
    NotFoundError,
    OverloadedError,
    ProtocolError,
    RateLimitError,
    ServiceUnavailableError,
    TGIError,
    UnknownError,
    ValidationError,
)

USER_AGENT = f"tgbatch/{__version__}"


class GenerateOptions(TypedDict, total=False):
    """Keyword parameters of ``generate``/``generate_stream``, as in the ``text-generation`` client."""

    adapter_id: str | None
    best_of: int | None
    decoder_input_details: bool
    details: bool
    do_sample: bool
    frequency_penalty: float | None
    grammar: Grammar | dict[str, Any] | None
    max_new_tokens: int | None
    repetition_penalty: float | None
    return_full_text: bool | None
    seed: int | None
    stop: list[str] | None
    stop_sequences: list[str] | None
    temperature: float | None
    top_k: int | None
    top_n_tokens: int | None
    top_p: float | None
    truncate: int | None
    typical_p: float | None
    watermark: bool


# the text-generation client's defaults: details on (its Response requires them), 20 new tokens
_DEFAULTS: dict[str, Any] = {"details": True, "max_new_tokens": 20}


def build_parameters(parameters: Parameters | None, options: Mapping[str, Any]) -> Parameters:
    """Merge a prepared ``Parameters`` and keyword options into one validated ``Parameters``."""
    if parameters is not None and not options:
        return parameters  # the runner's hot path: already validated once
    fields = dict(_DEFAULTS) if parameters is None else parameters.model_dump(exclude_defaults=True)
    opts = dict(options)
    if "stop_sequences" in opts:
        # the seed client's name for `stop`; the wire name is always `stop`
        if opts.get("stop") is not None:
            raise ValidationError("Give `stop` or `stop_sequences`, not both", error_type=None, status_code=None)
        opts["stop"] = opts.pop("stop_sequences")
    if opts.get("stop") is None:
        opts.pop("stop", None)
    fields.update(opts)
    try:
        return Parameters.model_validate(fields)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(part) for part in err["loc"]) or "parameters"
        if err["type"] == "extra_forbidden":
            known = ", ".join(sorted(Parameters.model_fields))
            message = f"Unknown parameter `{where}`; TGI's parameters are: {known}"
        else:
            message = f"Invalid parameter `{where}` = {err.get('input')!r}: {err['msg']}"
        raise ValidationError(message, error_type=None, status_code=None) from exc


@dataclass(frozen=True)
class PreparedRequest:
    path: str
    content: bytes
    stream: bool


def prepare_generate(
    prompt: str,
    params: Parameters,
    *,
    stream: bool,
    compat: bool,
    limits: Limits | None,
    validate: bool,
) -> PreparedRequest:
    """Validate (as the router would) and encode one generate request."""
    if not isinstance(prompt, str):
        raise ValidationError(
            f"`prompt` must be a string, got {type(prompt).__name__}", error_type=None, status_code=None
        )
    body: dict[str, Any] = {"inputs": prompt, "parameters": params.to_wire()}
    if validate:
        check_wire(body)
        validate_request(prompt, params, stream=stream, limits=limits)
    if compat:
        body["stream"] = stream
        path = ""
    else:
        path = "/generate_stream" if stream else "/generate"
    return PreparedRequest(path=path, content=json.dumps(body).encode(), stream=stream)


def build_headers(
    headers: Mapping[str, str] | None,
    *,
    token: str | None,
    use_cache: bool | None,
    wait_for_model: bool | None,
) -> dict[str, str]:
    out = {"User-Agent": USER_AGENT, "Content-Type": "application/json"}
    if token:
        out["Authorization"] = f"Bearer {token}"
    if use_cache is not None:
        out["x-use-cache"] = "true" if use_cache else "false"
    if wait_for_model is not None:
        out["x-wait-for-model"] = "true" if wait_for_model else "false"
    if headers:
        out.update(headers)  # the caller's explicit headers win
    return out


# -- answers -------------------------------------------------------------------------------------------------


def parse_response(status: int, headers: Mapping[str, str], content: bytes) -> Response:
    """A ``/generate`` (or compat ``/``) answer: a ``Response`` for 2xx, else the mapped error is raised."""
    if not 200 <= status < 300:
        raise error_from_response(status, headers, content)
    try:
        if content[:1] == b"{":
            return Response.model_validate_json(content)
        payload = json.loads(content)
    except (ValueError, pydantic.ValidationError) as exc:
        raise ProtocolError(
            f"The server answered {status} with a body that is not a generate response: {_excerpt(content)}",
            status_code=status,
            body=_text(content),
        ) from exc
    if isinstance(payload, list):
        # the compat route (and the HF Inference API) wraps the response in a list
        if not payload:
            raise ProtocolError("The server answered with an empty list", status_code=status, body=_text(content))
        payload = payload[0]
    if isinstance(payload, dict) and "error" in payload:
        raise error_from_payload(payload, status_code=status)
    try:
        return Response.model_validate(payload)
    except pydantic.ValidationError as exc:
        raise ProtocolError(
            f"The server's answer is not a generate response: {_excerpt(content)}",
            status_code=status,
            body=_text(content),
        ) from exc


def parse_info(status: int, headers: Mapping[str, str], content: bytes) -> Info:
    if not 200 <= status < 300:
        raise error_from_response(status, headers, content)
    try:
        return Info.model_validate_json(content)
    except pydantic.ValidationError as exc:
        raise ProtocolError(
            f"/info answered with something that is not TGI's info: {_excerpt(content)}",
            status_code=status,
            body=_text(content),
        ) from exc


def parse_health(status: int, headers: Mapping[str, str], content: bytes) -> bool:
    """``/health``: healthy on 2xx, unhealthy on 503 (TGI's failed health check, or a proxy), else raise."""
    if 200 <= status < 300:
        return True
    error = error_from_response(status, headers, content)
    if isinstance(error, ServiceUnavailableError):
        return False
    raise error


def is_event_stream(headers: Mapping[str, str]) -> bool:
    return headers.get("content-type", "").partition(";")[0].strip().lower() == "text/event-stream"


def not_an_event_stream(status: int, headers: Mapping[str, str], content: bytes) -> ProtocolError:
    kind = headers.get("content-type", "no content type")
    return ProtocolError(
        f"Asked for a token stream but the server answered {status} with {kind}: {_excerpt(content)}",
        status_code=status,
        body=_text(content),
    )


class StreamState:
    """Reads a stream's SSE events until the final one; knows when a stream ended too early."""

    def __init__(self) -> None:
        self.finished = False

    def feed(self, data: str, event: str = "message") -> StreamResponse | None:
        if event == "error":
            raise stream_error(data)
        token = parse_stream_event(data)
        # the final event carries generated_text; OpenAI-style routes send [DONE] (None) after it
        if token is None or token.generated_text is not None:
            self.finished = True
        return token

    def finish(self) -> None:
        if not self.finished:
            raise IncompleteStreamError(
                "The stream ended before its final event (no event carried generated_text)", status_code=200
            )


def stream_error(data: str) -> TGIError:
    """An ``event: error`` frame (TGI sends its errors as plain ``data`` events, which ``parse_stream_event``
    maps; a proxy or router may name the event): mapped like TGI's error object, else a retryable failure."""
    try:
        payload = json.loads(data)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and "error" in payload:
        return error_from_payload(payload, status_code=None)
    return UnknownError(data or "The server sent an error event", status_code=None, retryable=True, body=data)


def parse_stream_event(data: str) -> StreamResponse | None:
    """One SSE ``data`` payload. ``None`` for an OpenAI-style ``[DONE]``; an ``{"error":...}`` event raises
    the mapped error (the HTTP status was 200)."""
    if data == "[DONE]":
        return None
    try:
        payload = json.loads(data)
    except ValueError as exc:
        raise ProtocolError(f"A stream event is not JSON: {data[:200]!r}", status_code=200, body=data) from exc
    if isinstance(payload, dict) and "error" in payload:
        raise error_from_payload(payload, status_code=None)
    try:
        return StreamResponse.model_validate(payload)
    except pydantic.ValidationError as exc:
        raise ProtocolError(f"A stream event is not a token event: {data[:200]!r}", status_code=200, body=data) from exc


# -- errors --------------------------------------------------------------------------------------------------

_BY_ERROR_TYPE: dict[str, type[TGIError]] = {
    error_type: cls
    for cls in (ValidationError, GenerationError, OverloadedError, IncompleteGenerationError, ServiceUnavailableError)
    for error_type in cls.error_types
}
# the status the non-streaming route gives each error_type: what an in-stream error would have been
_STATUS_OF_TYPE = {
    "validation": 422,
    "generation": 424,
    "overloaded": 429,
    "incomplete_generation": 500,
    "incomplete_generation_stream": 500,
    "healthcheck": 503,
}

_HINTS = {
    401: "the server wants a valid token: pass token= (the CLI reads it from the environment, HF_TOKEN)",
    403: "the token is not allowed to use this endpoint",
    404: "check the URL (a TGI base URL, without /generate) or the model id",
    413: "the request body is larger than the server's payload limit",
    415: "the server expected Content-Type: application/json",
}


def error_from_response(status: int, headers: Mapping[str, str], content: bytes) -> TGIError:
    """Map a non-2xx answer to the error tree: by ``error_type`` first, then by status. Bodies may be JSON,
    text/plain (axum's rejections), HTML from a proxy, or empty."""
    payload: Any = None
    if content:
        try:
            payload = json.loads(content)
        except ValueError:
            payload = None
    retry_after = _retry_after(headers)
    if isinstance(payload, dict) and ("error" in payload or "error_type" in payload):
        return error_from_payload(payload, status_code=status, retry_after=retry_after, body=_text(content))
    message = _text(content).strip() or _reason(status)
    if status in _HINTS:
        message = f"{message} ({_HINTS[status]})"
    return _error_by_status(status, message, retry_after=retry_after, body=_text(content))


def error_from_payload(
    payload: Mapping[str, Any],
    *,
    status_code: int | None,
    retry_after: float | None = None,
    body: str | None = None,
) -> TGIError:
    """Map a TGI ``{"error": ..., "error_type": ...}`` (or HF API ``{"error", "estimated_time"}``) object."""
    raw = payload.get("error")
    message = raw if isinstance(raw, str) else json.dumps(raw)
    error_type = payload.get("error_type")
    error_type = error_type if isinstance(error_type, str) else None
    estimated = payload.get("estimated_time")
    if isinstance(estimated, int | float) and not isinstance(estimated, bool) and math.isfinite(estimated):
        retry_after = float(estimated) if retry_after is None else retry_after
    if body is None:
        body = json.dumps(payload)
    cls = _BY_ERROR_TYPE.get(error_type or "")
    if cls is not None:
        status = status_code if status_code is not None else _STATUS_OF_TYPE.get(error_type or "")
        return cls(message, status_code=status, error_type=error_type, retry_after=retry_after, body=body)
    if status_code is None:
        # an in-stream error of a type this client does not know: the stream failed server-side
        return UnknownError(message, status_code=None, error_type=error_type, retryable=True, body=body)
    if status_code == 503 and isinstance(estimated, int | float):
        return ModelLoadingError(message, status_code=503, error_type=error_type, retry_after=retry_after, body=body)
    return _error_by_status(status_code, message, retry_after=retry_after, body=body, error_type=error_type)


def _error_by_status(
    status: int,
    message: str,
    *,
    retry_after: float | None,
    body: str | None,
    error_type: str | None = None,
) -> TGIError:
    kwargs: dict[str, Any] = {"status_code": status, "retry_after": retry_after, "body": body}
    if status in (401, 403):
        return AuthenticationError(message, error_type=error_type, **kwargs)
    if status == 404:
        return NotFoundError(message, error_type=error_type, **kwargs)
    if status == 422:
        # TGI's template/tool errors and axum's text/plain type errors: the request is wrong either way
        return ValidationError(message, error_type=error_type, **kwargs)
    if status == 424:
        return GenerationError(message, error_type=error_type, **kwargs)
    if status == 429:
        return RateLimitError(message, error_type=error_type, **kwargs)
    if status in (502, 503, 504):
        return ServiceUnavailableError(message, error_type=error_type, **kwargs)
    if status in (400, 405, 411, 413, 414, 415, 431):
        return BadRequestError(message, error_type=error_type, **kwargs)
    retryable = status >= 500 or status == 408
    return UnknownError(message, error_type=error_type, retryable=retryable, **kwargs)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def _text(content: bytes) -> str:
    return content.decode("utf-8", errors="replace")


def _excerpt(content: bytes) -> str:
    text = _text(content)
    return repr(text[:200] + ("..." if len(text) > 200 else ""))


RouteStyle = Literal["tgi", "compat"]
