"""The client's side of TGI's wire protocol, with no I/O: building requests, parsing answers, mapping errors.

The clients (``client.py``) are thin shells around these functions and ``tgbatch.http``'s transport.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict
from urllib.parse import unquote, urlsplit, urlunsplit

import orjson
import pydantic

from tgbatch._version import __version__
from tgbatch.backends.tgi.errors import body_text, error_from_payload, error_from_response, excerpt
from tgbatch.backends.tgi.models import FinishReason, Grammar, Info, Response, StreamResponse
from tgbatch.backends.tgi.rules import PREFIX, Limits, Parameters, check_wire, validate_request
from tgbatch.errors import (
    IncompleteStreamError,
    ProtocolError,
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


class GenerateEncoder:
    """Encodes many ``/generate`` requests that share their parameters and differ only in prompt and seed
    (a batch job's rows). The parameters are checked once, here, with every rule that does not depend on the
    prompt; a row then costs one emptiness check and one ``json.dumps``, not a validation of every field."""

    def __init__(self, params: Parameters, *, compat: bool, limits: Limits | None = None) -> None:
        prepare_generate("x", params, stream=False, compat=compat, limits=limits, validate=True)
        self._params = params.to_wire()
        self._compat = compat
        self._path = "" if compat else "/generate"

    def encode(self, prompt: str, seed: int | None) -> PreparedRequest:
        if not prompt:
            raise ValidationError(PREFIX + "`inputs` cannot be empty")
        params = self._params if seed is None else {**self._params, "seed": seed}
        body: dict[str, Any] = {"inputs": prompt, "parameters": params}
        if self._compat:
            body["stream"] = False
        return PreparedRequest(path=self._path, content=orjson.dumps(body), stream=False)


def split_credentials(url: str) -> tuple[str, str | None]:
    """``http://user:pw@host/...`` -> (``http://host/...``, the ``Authorization: Basic`` value); a URL without
    credentials comes back as it is, with ``None``."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    netloc = parts.netloc.rsplit("@", 1)[-1]
    basic = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)), f"Basic {basic}"


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
            f"The server answered {status} with a body that is not a generate response: {excerpt(content)}",
            status_code=status,
            body=body_text(content),
        ) from exc
    if isinstance(payload, list):
        # the compat route (and the HF Inference API) wraps the response in a list
        if not payload:
            raise ProtocolError("The server answered with an empty list", status_code=status, body=body_text(content))
        payload = payload[0]
    if isinstance(payload, dict) and "error" in payload:
        raise error_from_payload(payload, status_code=status)
    try:
        return Response.model_validate(payload)
    except pydantic.ValidationError as exc:
        raise ProtocolError(
            f"The server's answer is not a generate response: {excerpt(content)}",
            status_code=status,
            body=body_text(content),
        ) from exc


_FINISH_REASONS = frozenset(reason.value for reason in FinishReason)


@dataclass(frozen=True, slots=True)
class GenerateSummary:
    """What a batch job records of a ``/generate`` answer when it does not keep the token details."""

    text: str
    finish_reason: str | None
    generated_tokens: int | None
    seed: int | None


def parse_summary(status: int, headers: Mapping[str, str], content: bytes) -> GenerateSummary:
    """The text, finish reason, token count and seed of an answer, read from plain JSON: building the typed
    ``Response`` (a model per generated token) costs more client CPU than the rest of a row. An answer of any
    other shape goes through ``parse_response``, which raises the error it deserves."""
    if 200 <= status < 300:
        try:
            payload = orjson.loads(content)  # a quarter of json.loads' time on a response with 16 tokens
        except ValueError:  # not JSON, or a number orjson does not take: the full parse says what it is
            payload = None
        if isinstance(payload, list) and payload:
            payload = payload[0]  # the compat route wraps the response in a list
        summary = _summary_of(payload) if isinstance(payload, dict) else None
        if summary is not None:
            return summary
    response = parse_response(status, headers, content)
    details = response.details
    if details is None:
        return GenerateSummary(response.generated_text, None, None, None)
    return GenerateSummary(response.generated_text, details.finish_reason.value, details.generated_tokens, details.seed)


def _summary_of(payload: dict[str, Any]) -> GenerateSummary | None:
    text, details = payload.get("generated_text"), payload.get("details")
    if not isinstance(text, str) or "error" in payload:
        return None
    if details is None:
        return GenerateSummary(text, None, None, None)
    if not isinstance(details, dict):
        return None
    reason, tokens, seed = details.get("finish_reason"), details.get("generated_tokens"), details.get("seed")
    if reason not in _FINISH_REASONS or type(tokens) is not int or not (seed is None or type(seed) is int):
        return None
    return GenerateSummary(text, reason, tokens, seed)


def parse_info(status: int, headers: Mapping[str, str], content: bytes) -> Info:
    if not 200 <= status < 300:
        raise error_from_response(status, headers, content)
    try:
        return Info.model_validate_json(content)
    except pydantic.ValidationError as exc:
        raise ProtocolError(
            f"/info answered with something that is not TGI's info: {excerpt(content)}",
            status_code=status,
            body=body_text(content),
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
        f"Asked for a token stream but the server answered {status} with {kind}: {excerpt(content)}",
        status_code=status,
        body=body_text(content),
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
