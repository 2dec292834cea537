"""Error answers of OpenAI-style routes, whatever server sent them, map onto the one error tree: the class, its
flags, the status, the server's message and the Retry-After hint."""

from __future__ import annotations

import json
import re

import pytest

from tests._openai_mock import Answer, MockServer, recorded
from tgbatch.client import (
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    Client,
    GenerationError,
    GoneError,
    InferenceAPIClient,
    NotFoundError,
    OverloadedError,
    PaymentRequiredError,
    RateLimitError,
    ServiceUnavailableError,
    UnknownError,
    ValidationError,
)

pytestmark = pytest.mark.anyio

MESSAGES = [{"role": "user", "content": "hi"}]
MSG = "the server says no"


def tgi(error_type: str | None = None) -> dict:
    return {"error": MSG, "error_type": error_type} if error_type else {"error": MSG}


def openai(kind: str, code: str | None = None) -> dict:
    return {"error": {"message": MSG, "type": kind, "param": None, "code": code}}


def sglang(kind: str) -> dict:
    return {"object": "error", "message": MSG, "type": kind, "param": None, "code": 400}


# (status, body) -> (class, retryable, overload, fatal)
CASES = [
    (401, openai("invalid_request_error", "invalid_api_key"), AuthenticationError, False, False, True),
    (403, tgi(), AuthenticationError, False, False, True),
    (404, openai("NotFoundError"), NotFoundError, False, False, True),
    (404, sglang("NotFoundError"), NotFoundError, False, False, True),
    (400, openai("BadRequestError"), BadRequestError, False, False, False),
    (400, sglang("BadRequestError"), BadRequestError, False, False, False),
    (422, tgi("validation"), ValidationError, False, False, False),
    (422, "Failed to deserialize the JSON body into the target type: messages", ValidationError, False, False, False),
    (429, tgi("overloaded"), OverloadedError, True, True, False),
    (429, openai("rate_limit_exceeded"), RateLimitError, True, True, False),
    (503, openai("ServiceUnavailableError"), ServiceUnavailableError, True, True, False),
    (503, sglang("ServiceUnavailableError"), ServiceUnavailableError, True, True, False),
    (502, "<html><body>Bad Gateway</body></html>", ServiceUnavailableError, True, False, False),
    (500, openai("InternalServerError"), UnknownError, True, False, False),
]


@pytest.mark.parametrize(("status", "body", "cls", "retryable", "overload", "fatal"), CASES)
async def test_each_body_shape_and_status_maps_to_its_class(
    status: int, body: object, cls: type, retryable: bool, overload: bool, fatal: bool
) -> None:
    content_type = "application/json" if isinstance(body, dict) else "text/plain"
    answer = Answer(status, body, content_type, headers={"Retry-After": "7"})
    server = MockServer({"/v1/chat/completions": answer})
    async with AsyncClient("http://h:8000/v1", http_client=server.async_client()) as client:
        with pytest.raises(cls) as caught:
            await client.chat(MESSAGES, model="m")
    err = caught.value
    assert type(err) is cls
    assert (err.retryable, err.overload, err.fatal) == (retryable, overload, fatal)
    assert err.status_code == status and err.retry_after == 7.0
    expected = MSG if isinstance(body, dict) else body
    assert expected.split("<body>")[-1].split("</body>")[0] in err.message


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (402, {"error": "You have exceeded your monthly included credits for Inference Providers."}),
        (402, openai("payment_required")),
        (429, openai("insufficient_quota", "insufficient_quota")),
    ],
)
async def test_an_account_out_of_credits_stops_the_job(status: int, body: dict) -> None:
    server = MockServer({"/v1/chat/completions": Answer(status, body)})
    async with AsyncClient("https://router.huggingface.co/v1", http_client=server.async_client()) as client:
        with pytest.raises(PaymentRequiredError, match="out of credits") as caught:
            await client.chat(MESSAGES, model="m")
    assert caught.value.fatal and not caught.value.retryable and caught.value.status_code == status


async def test_context_length_is_not_retried_and_keeps_the_servers_message() -> None:
    body = openai("BadRequestError")
    body["error"]["message"] = (
        "This model's maximum context length is 2048 tokens. However, you requested 4000 tokens in the messages."
    )
    server = MockServer({"/v1/chat/completions": Answer(400, body)})
    async with AsyncClient("http://vllm:8000", http_client=server.async_client()) as client:
        with pytest.raises(BadRequestError, match="maximum context length is 2048") as caught:
            await client.chat(MESSAGES)  # vLLM: a plain 400, told apart by its wording only: a BadRequestError
    assert caught.value.status_code == 400 and not caught.value.retryable and not caught.value.fatal
    body["error"]["code"] = "context_length_exceeded"  # OpenAI's code says it: a ValidationError
    async with AsyncClient("http://vllm:8000", http_client=server.async_client()) as client:
        with pytest.raises(ValidationError, match="maximum context length is 2048") as caught:
            await client.chat(MESSAGES)
    assert caught.value.status_code == 400 and not caught.value.retryable


async def test_an_error_in_a_stream_is_raised() -> None:
    server = MockServer({"/v1/chat/completions": Answer(429, tgi("overloaded"))})
    async with AsyncClient("http://tgi:8080", http_client=server.async_client()) as client:
        with pytest.raises(OverloadedError):
            [c async for c in client.chat_stream(MESSAGES)]
    server.answers["/v1/chat/completions"] = Answer(
        200, b'data: {"error": "Request failed during generation", "error_type": "generation"}\n\n', "text/event-stream"
    )
    async with AsyncClient("http://tgi:8080", http_client=server.async_client()) as client:
        with pytest.raises(GenerationError, match="Request failed during generation") as caught:
            [c async for c in client.chat_stream(MESSAGES)]
    assert isinstance(caught.value, GenerationError)
    assert caught.value.retryable and caught.value.status_code == 424


def test_the_retired_inference_api_names_the_new_url_sync_and_async() -> None:
    gone = Answer(410, "api-inference.huggingface.co is no longer supported", "text/plain")
    server = MockServer({"/models/gpt2/v1/chat/completions": gone, "/models/gpt2": gone})
    new = "https://router.huggingface.co/hf-inference/models/gpt2"
    with Client("https://api-inference.huggingface.co/models/gpt2", http_client=server.sync_client()) as client:
        with pytest.raises(GoneError, match=re.escape(new)) as caught:
            client.chat(MESSAGES)
        assert caught.value.fatal and caught.value.status_code == 410
    with (
        Client(
            "https://api-inference.huggingface.co/models/gpt2", http_client=server.sync_client(), compat=True
        ) as client,
        pytest.raises(GoneError, match=re.escape(new)),
    ):
        client.generate("hello")


async def test_the_retired_api_in_the_async_client_too() -> None:
    server = MockServer({"/models/org/name/v1/chat/completions": Answer(410, "")})
    base = "https://api-inference.huggingface.co/models/org/name"
    async with AsyncClient(base, http_client=server.async_client()) as client:
        with pytest.raises(GoneError, match=re.escape("router.huggingface.co/hf-inference/models/org/name")):
            await client.chat(MESSAGES)


def test_inference_api_client_targets_the_router() -> None:
    client = InferenceAPIClient("org/name")
    try:
        assert client.base_url == "https://router.huggingface.co/hf-inference/models/org/name"
    finally:
        client.close()


async def test_a_recorded_router_422_keeps_the_servers_text() -> None:
    rec = recorded("hf-inference-422-text")
    server = MockServer({"/v1/chat/completions": Answer(rec["status"], rec["body"], rec["content_type"])})
    async with AsyncClient("https://router.huggingface.co/v1", http_client=server.async_client()) as client:
        with pytest.raises(ValidationError, match="invalid type: string") as caught:
            await client.chat(MESSAGES)
    assert caught.value.status_code == 422
    assert json.loads(json.dumps(caught.value.body))  # the body is kept for the output's error column
