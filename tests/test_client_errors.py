"""TGI's error answers become typed exceptions: by error_type first, then by status; any body shape."""

from __future__ import annotations

import email.utils
import time
from typing import Any

import anyio
import httpx
import pytest

from tgbatch import errors
from tgbatch.client import AsyncClient, Client

ERR = errors


def _mock(status: int, *, json_body: Any = None, text: str | None = None, headers: dict[str, str] | None = None):
    def handler(request: httpx.Request) -> httpx.Response:
        if json_body is not None:
            return httpx.Response(status, json=json_body, headers=headers)
        return httpx.Response(
            status, content=(text or "").encode(), headers={"content-type": "text/plain; charset=utf-8", **(headers or {})}
        )

    return handler


def _sync_raise(handler) -> errors.TGIError:
    client = Client("http://tgi", http_client=httpx.Client(transport=httpx.MockTransport(handler)))
    with pytest.raises(errors.TGIError) as info:
        client.generate("hello")
    return info.value


def _async_raise(handler) -> errors.TGIError:
    async def main() -> None:
        client = AsyncClient("http://tgi", http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
        await client.generate("hello")

    with pytest.raises(errors.TGIError) as info:
        anyio.run(main)
    return info.value


# (id, status, json body or None, text body, headers, expected class, retryable, retry_after)
CASES = [
    ("validation", 422, {"error": "Input validation error: `inputs` cannot be empty", "error_type": "validation"}, None, None, ERR.ValidationError, False, None),
    ("generation", 424, {"error": "Request failed during generation: Server error: CUDA OOM", "error_type": "generation"}, None, None, ERR.GenerationError, True, None),
    ("overloaded", 429, {"error": "Model is overloaded", "error_type": "overloaded"}, None, None, ERR.OverloadedError, True, None),
    ("incomplete", 500, {"error": "Incomplete generation", "error_type": "incomplete_generation"}, None, None, ERR.IncompleteGenerationError, True, None),
    ("incomplete_stream_type", 500, {"error": "Incomplete generation stream", "error_type": "incomplete_generation_stream"}, None, None, ERR.IncompleteGenerationError, True, None),
    ("template_error_by_status", 422, {"error": "Template error: x", "error_type": "template_error"}, None, None, ERR.ValidationError, False, None),
    ("hf_rate_limit", 429, {"error": "Rate limit reached. You reached free usage limit (reset hourly)."}, None, {"Retry-After": "7"}, ERR.RateLimitError, True, 7.0),
    ("loading", 503, {"error": "Model gpt2 is currently loading", "estimated_time": 20.5}, None, None, ERR.ModelLoadingError, True, 20.5),
    ("unhealthy", 503, {"error": "unhealthy", "error_type": "healthcheck"}, None, None, ERR.ServiceUnavailableError, True, None),
    ("proxy_503_html", 503, None, "<html><body>503 Service Temporarily Unavailable</body></html>", None, ERR.ServiceUnavailableError, True, None),
    ("gateway_502_empty", 502, None, "", None, ERR.ServiceUnavailableError, True, None),
    ("gateway_504", 504, None, "upstream timed out", None, ERR.ServiceUnavailableError, True, None),
    ("axum_415", 415, None, "Expected request with `Content-Type: application/json`", None, ERR.BadRequestError, False, None),
    ("axum_400", 400, None, "Failed to parse the request body as JSON: EOF while parsing a value at line 1 column 0", None, ERR.BadRequestError, False, None),
    ("axum_413", 413, None, "Failed to buffer the request body: length limit exceeded", None, ERR.BadRequestError, False, None),
    ("axum_422_text", 422, None, "Failed to deserialize the JSON body into the target type: parameters.seed: invalid value: integer `-1`, expected u64 at line 1 column 40", None, ERR.ValidationError, False, None),
    ("hf_400_model_kwargs", 400, {"error": "The following `model_kwargs` are not used by the model: ['watermark']"}, None, None, ERR.BadRequestError, False, None),
    ("unauthorized_empty", 401, None, "", None, ERR.AuthenticationError, False, None),
    ("forbidden", 403, {"error": "Forbidden"}, None, None, ERR.AuthenticationError, False, None),
    ("not_found", 404, None, "Not Found", None, ERR.NotFoundError, False, None),
    ("server_500_plain", 500, None, "Internal Server Error", None, ERR.UnknownError, True, None),
    ("teapot", 418, None, "I'm a teapot", None, ERR.UnknownError, False, None),
    ("json_list_error", 500, ["not", "an", "object"], None, None, ERR.UnknownError, True, None),
    ("error_not_string", 400, {"error": ["a", "b"]}, None, None, ERR.BadRequestError, False, None),
]


@pytest.mark.parametrize("raiser", [_sync_raise, _async_raise], ids=["sync", "async"])
@pytest.mark.parametrize(
    ("status", "json_body", "text", "headers", "cls", "retryable", "retry_after"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_error_mapping(raiser, status, json_body, text, headers, cls, retryable, retry_after) -> None:
    error = raiser(_mock(status, json_body=json_body, text=text, headers=headers))
    assert type(error) is cls
    assert error.status_code == status
    assert error.retryable is retryable
    assert error.retry_after == retry_after
    if isinstance(json_body, dict) and isinstance(json_body.get("error"), str):
        assert error.message == json_body["error"]
        assert error.error_type == json_body.get("error_type")
    elif text:
        assert text in error.message  # a non-JSON body is the message, never a parser crash


def test_empty_401_explains_the_fix() -> None:
    error = _sync_raise(_mock(401, text=""))
    assert "401" in str(error) and "token" in str(error)


def test_retry_after_as_http_date() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    error = _sync_raise(_mock(429, json_body={"error": "Rate limit reached"}, headers={"Retry-After": when}))
    assert error.retry_after is not None and 25 <= error.retry_after <= 31


def test_retry_after_header_wins_over_estimated_time() -> None:
    body = {"error": "Model x is currently loading", "estimated_time": 50.0}
    error = _sync_raise(_mock(503, json_body=body, headers={"Retry-After": "3"}))
    assert isinstance(error, ERR.ModelLoadingError) and error.retry_after == 3.0


def test_garbled_success_is_a_protocol_error() -> None:
    error = _sync_raise(_mock(200, text="<html>hello</html>"))
    assert isinstance(error, ERR.ProtocolError) and "<html>" in str(error)
    error = _sync_raise(_mock(200, json_body={"unexpected": True}))
    assert isinstance(error, ERR.ProtocolError)
    error = _sync_raise(_mock(200, json_body=[]))
    assert isinstance(error, ERR.ProtocolError)


@pytest.mark.parametrize(
    ("raised", "cls", "retryable"),
    [
        (httpx.ConnectError("Connection refused"), ERR.TransportError, True),
        (httpx.RemoteProtocolError("Server disconnected"), ERR.TransportError, True),
        (httpx.ReadTimeout("timed out"), ERR.RequestTimeoutError, True),
        (httpx.ConnectTimeout("timed out"), ERR.RequestTimeoutError, True),
        (httpx.PoolTimeout("timed out"), ERR.RequestTimeoutError, True),
        (httpx.UnsupportedProtocol("Request URL has an unsupported protocol 'ftp://'"), ERR.TransportError, False),
    ],
)
@pytest.mark.parametrize("raiser", [_sync_raise, _async_raise], ids=["sync", "async"])
def test_transport_errors_are_translated_with_cause(raiser, raised, cls, retryable) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise raised

    error = raiser(handler)
    assert type(error) is cls
    assert error.retryable is retryable
    assert error.__cause__ is raised


def test_every_error_is_a_tgbatch_error_with_the_common_attributes() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.TGBatchError)
        if issubclass(cls, errors.TGIError):
            error = cls("message", status_code=500)
            assert isinstance(error.retryable, bool)
            assert error.retry_after is None and error.status_code in (500, 422)


def test_errors_pickle_with_their_attributes() -> None:
    import pickle

    error = ERR.OverloadedError("Model is overloaded", status_code=429, error_type="overloaded", retry_after=1.5)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is ERR.OverloadedError
    assert (copy.message, copy.status_code, copy.retry_after, copy.retryable) == ("Model is overloaded", 429, 1.5, True)
