"""OpenAI-style error answers mapped onto the one error tree, whatever server sent them.

Body shapes: TGI's flat ``{"error": "...", "error_type": "..."}``; OpenAI's (and vLLM's) nested
``{"error": {"message", "type", "param", "code"}}``; vLLM's older and SGLang's flat
``{"object": "error", "message", "type", "param", "code"}``; and anything else (a proxy's HTML, axum's
text/plain, an empty body), read as text. The class follows the status (and TGI's ``error_type``); the few
answers whose status does not say enough are told apart here, once: an account out of credits (402, or
OpenAI's ``insufficient_quota`` on a 429) and a prompt beyond the context length (vLLM's 400).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson

from tgbatch.backends.tgi.errors import _retry_after, body_text, error_from_payload
from tgbatch.backends.tgi.errors import error_from_response as tgi_error_from_response
from tgbatch.errors import GoneError, PaymentRequiredError, ServerError, ValidationError

#: the retired serverless API's host, and what replaced it
RETIRED_HOST = "api-inference.huggingface.co"
ROUTER = "https://router.huggingface.co"

#: error ``type``/``code`` values that mean "the account has no credits left", not "too many requests"
_CREDIT_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached", "payment_required"})
#: OpenAI's ``code`` for prompt + max_tokens beyond the model's context: the request is invalid, not the server.
#: (vLLM says it only in the message of a plain 400, which is a ``BadRequestError``: not retried either, and the
#: class is never decided by a message's wording)
_CONTEXT_CODES = frozenset({"context_length_exceeded"})


def error_from_response(
    status: int, headers: Mapping[str, str], content: bytes, *, base_url: str | None = None
) -> ServerError:
    """The error for a non-2xx answer of an OpenAI-style route. ``base_url`` lets a 410 name the new URL."""
    if status == 410:
        return gone_error(base_url, content)
    payload = _json(content)
    retry_after = _retry_after(headers)
    body = body_text(content)
    if isinstance(payload, dict) and isinstance(payload.get("error"), str) and "object" not in payload:
        err = error_from_payload(payload, status_code=status, retry_after=retry_after, body=body)  # TGI's flat shape
        return _refine(err, None)
    fields = _fields(payload)
    if fields is None:
        return _refine(tgi_error_from_response(status, headers, content), None)
    message, kind = fields
    return _refine(error_from_payload({"error": message}, status_code=status, retry_after=retry_after, body=body), kind)


def _refine(err: ServerError, kind: str | None) -> ServerError:
    """The cases the status alone does not tell: credits exhausted, the context length exceeded."""
    status, message = err.status_code, err.message
    if status == 402 or (kind is not None and kind in _CREDIT_CODES):
        return _rebuild(
            PaymentRequiredError,
            err,
            f"the account is out of credits (HTTP {status}): {message}. Add credits or change the token, then "
            "resume the job",
            kind,
        )
    if status == 400 and kind in _CONTEXT_CODES:
        return _rebuild(ValidationError, err, message, kind)
    if kind is not None:
        err.error_type = err.error_type or kind
    return err


def _rebuild(cls: type[ServerError], err: ServerError, message: str, kind: str | None) -> ServerError:
    return cls(
        message,
        status_code=err.status_code,
        error_type=err.error_type or kind,
        retry_after=err.retry_after,
        body=err.body,
    )


def _json(content: bytes) -> Any:
    if not content:
        return None
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return None


def _fields(payload: Any) -> tuple[str, str | None] | None:
    """(message, type or code) of a nested or a flat OpenAI-style error body; ``None`` for any other body."""
    if not isinstance(payload, dict):
        return None
    inner = payload.get("error")
    if isinstance(inner, dict):
        source: Mapping[str, Any] = inner
    elif payload.get("object") == "error" or "message" in payload:
        source = payload
    else:
        return None
    message = source.get("message")
    if not isinstance(message, str):
        message = orjson.dumps(source).decode()
    code, kind = source.get("code"), source.get("type")
    special = _CREDIT_CODES | _CONTEXT_CODES
    label = code if isinstance(code, str) and code in special else kind if isinstance(kind, str) else None
    return message, label


def gone_error(base_url: str | None, content: bytes = b"") -> GoneError:
    """410 Gone. For the retired serverless API the message names the URL that replaced it for this model."""
    said = body_text(content).strip()
    parts = urlsplit(base_url or "")
    model = _model_of(parts.path)
    if parts.hostname == RETIRED_HOST and model:
        message = (
            f"{RETIRED_HOST} is retired (410 Gone). Use {ROUTER}/hf-inference/models/{model} for text generation "
            f"(InferenceAPIClient('{model}') does), or {ROUTER}/v1 with model='{model}' for chat"
        )
    elif parts.hostname == RETIRED_HOST:
        message = f"{RETIRED_HOST} is retired (410 Gone). Use {ROUTER}/v1 (chat) or {ROUTER}/hf-inference/models/<id>"
    else:
        message = f"the endpoint {base_url or ''} is gone (410)"
    if said:
        message = f"{message}. The server said: {said[:300]}"
    return GoneError(message, status_code=410, body=body_text(content))


def _model_of(path: str) -> str | None:
    """``org/name`` from ``/models/org/name[/v1/...]``."""
    _, found, rest = path.partition("/models/")
    if not found:
        return None
    model = rest.split("/v1", 1)[0].strip("/")
    return model or None


def in_band_error(payload: Mapping[str, Any], status: int | None) -> ServerError:
    """An error sent inside a 200 answer or a stream's event: TGI's ``{"error", "error_type"}`` (its class says
    the status) or vLLM's ``{"error": {..., "code"}}``."""
    inner = payload.get("error")
    if isinstance(inner, str):
        return _refine(error_from_payload(payload, status_code=None), None)
    code = inner.get("code") if isinstance(inner, dict) else None
    said = code if isinstance(code, int) and 400 <= code < 600 else status if status and status >= 400 else 500
    return error_from_response(said, {}, orjson.dumps(payload))
