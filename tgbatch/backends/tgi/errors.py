"""TGI's error answers mapped onto the one error tree: by error_type first, then by HTTP status, whatever
the body is (JSON, axum's text/plain, a proxy's HTML, empty); Retry-After and estimated_time become
retry_after."""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Mapping
from typing import Any, Literal

from tgbatch.errors import (
    AuthenticationError,
    BadRequestError,
    GenerationError,
    IncompleteGenerationError,
    ModelLoadingError,
    NotFoundError,
    OverloadedError,
    RateLimitError,
    ServiceUnavailableError,
    TGIError,
    UnknownError,
    ValidationError,
)

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
    401: "the server wants a valid token: pass token=",
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
        return error_from_payload(payload, status_code=status, retry_after=retry_after, body=body_text(content))
    message = body_text(content).strip() or _reason(status)
    if status in _HINTS:
        message = f"{message} ({_HINTS[status]})"
    return _error_by_status(status, message, retry_after=retry_after, body=body_text(content))


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


def body_text(content: bytes) -> str:
    return content.decode("utf-8", errors="replace")


def excerpt(content: bytes) -> str:
    text = body_text(content)
    return repr(text[:200] + ("..." if len(text) > 200 else ""))


RouteStyle = Literal["tgi", "compat"]


