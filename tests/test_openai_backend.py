"""``OpenAIBackend``, the runner's seam for OpenAI-style servers: detection, each server's quirks, the exact
bodies sent, the results recorded, the queue gauge, limits and health."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests._openai_mock import Answer, MockServer, recorded
from tgbatch.backends.openai.backend import OpenAIBackend
from tgbatch.client import AsyncClient
from tgbatch.errors import SpecError, ValidationError
from tgbatch.types import Capacity, GenerationRequest

pytestmark = pytest.mark.anyio

MESSAGES = ({"role": "user", "content": "2+2?"},)
TGI_INFO = {
    "model_id": "meta-llama/Llama-3.1-8B-Instruct",
    "router": "text-generation-router",
    "max_input_tokens": 4095,
    "max_total_tokens": 4096,
    "max_concurrent_requests": 128,
    "version": "3.3.6",
}
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True}}


def chat_answer(**message: Any) -> dict[str, Any]:
    return {
        "id": "",
        "model": "served-model",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
    }


def tgi_server() -> MockServer:
    return MockServer(
        {
            "/info": Answer(200, TGI_INFO),
            "/v1/models": Answer(200, {"data": [{"id": TGI_INFO["model_id"], "owned_by": TGI_INFO["model_id"]}]}),
            "/v1/chat/completions": Answer(200, chat_answer(content="4")),
            "/metrics": Answer(200, "# TYPE tgi_queue_size gauge\ntgi_queue_size 3\n", "text/plain"),
            "/health": Answer(200, b""),
        }
    )


def openai_server(owner: str, *, max_model_len: int | None = None, gauge: str = "") -> MockServer:
    card: dict[str, Any] = {"id": "Qwen/Qwen3-8B", "object": "model", "owned_by": owner}
    if max_model_len:
        card["max_model_len"] = max_model_len
    return MockServer(
        {
            "/v1/models": Answer(200, {"object": "list", "data": [card]}),
            "/version": Answer(200, {"version": "0.11.0"}),
            "/v1/chat/completions": Answer(200, chat_answer(content="4")),
            "/v1/completions": Answer(200, {"model": "m", "choices": [{"text": " 4", "finish_reason": "length"}]}),
            "/metrics": Answer(200, gauge, "text/plain"),
            "/health": Answer(200, b""),
        }
    )


def backend(mock: MockServer, base: str = "http://srv:8000", **kwargs: Any) -> OpenAIBackend:
    client = AsyncClient(base, http_client=mock.async_client())
    kwargs.setdefault("api", "chat")
    return OpenAIBackend(client, url=base, **kwargs)


VLLM_GAUGE = (
    'vllm:num_requests_running{model_name="Qwen/Qwen3-8B"} 8\nvllm:num_requests_waiting{model_name="Qwen/Qwen3-8B"} 5\n'
)
SGLANG_GAUGE = 'sglang:num_running_reqs{model_name="q"} 1\nsglang:num_queue_reqs{model_name="q"} 2\n'


@pytest.mark.parametrize(
    ("make", "base", "expected"),
    [
        (tgi_server, "http://tgi:8080", ("tgi", TGI_INFO["model_id"], 4096, 4095, "3.3.6", 3)),
        (
            lambda: openai_server("vllm", max_model_len=2048, gauge=VLLM_GAUGE),
            "http://v:8000/v1",
            ("vllm", "Qwen/Qwen3-8B", 2048, None, "0.11.0", 5),
        ),
        (
            lambda: openai_server("sglang", max_model_len=8192, gauge=SGLANG_GAUGE),
            "http://s:30000",
            ("sglang", "Qwen/Qwen3-8B", 8192, None, "0.11.0", 2),
        ),
        (
            lambda: openai_server("organization-owner"),
            "http://p/v1",
            ("openai", "Qwen/Qwen3-8B", None, None, None, None),
        ),
    ],
)
async def test_the_server_is_detected_with_its_model_limits_and_queue(make: Any, base: str, expected: tuple) -> None:
    server = make()
    async with backend(server, base) as b:
        cap = await b.capacity()
        queue = await b.queue()
        assert await b.health() is True
    assert (cap.server, cap.model_id, cap.max_total_tokens, cap.max_input_tokens, cap.version, queue) == expected
    # server-level routes sit beside /v1, not under it
    assert all(
        not s.path.startswith("/v1/") or s.path.startswith("/v1/models") for s in server.seen if s.method == "GET"
    )


async def test_a_given_server_kind_skips_detection() -> None:
    server = openai_server("vllm", max_model_len=2048)
    async with backend(server, server="vllm", model="x") as b:
        cap = await b.capacity()
    assert cap.server == "vllm" and cap.model_id == "x" and cap.max_total_tokens == 2048
    assert "/info" not in [s.path for s in server.seen]


@pytest.mark.parametrize(
    ("kind", "response_format", "expected"),
    [
        (
            "tgi",
            JSON_SCHEMA,
            {"response_format": {"type": "json_schema", "value": {"name": "answer", "schema": SCHEMA}}},
        ),
        ("vllm", JSON_SCHEMA, {"response_format": JSON_SCHEMA}),
        ("sglang", JSON_SCHEMA, {"response_format": JSON_SCHEMA}),
        ("tgi", {"type": "regex", "value": "[0-9]+"}, {"response_format": {"type": "regex", "value": "[0-9]+"}}),
        ("vllm", {"type": "regex", "value": "[0-9]+"}, {"structured_outputs": {"regex": "[0-9]+"}}),
        ("sglang", {"type": "regex", "value": "[0-9]+"}, {"regex": "[0-9]+"}),
        ("tgi", {"type": "json_object"}, {"response_format": {"type": "json", "value": {"type": "object"}}}),
        (
            "vllm",
            {"type": "json", "value": SCHEMA},
            {"response_format": {"type": "json_schema", "json_schema": {"name": "response", "schema": SCHEMA}}},
        ),
    ],
)
async def test_response_format_is_sent_in_each_servers_form(kind: str, response_format: dict, expected: dict) -> None:
    server = tgi_server() if kind == "tgi" else openai_server(kind)
    async with backend(server, params={"response_format": response_format}) as b:
        await b.capacity()
        await b.request(GenerationRequest(messages=MESSAGES))
    sent = server.bodies[0]
    model = "tgi" if kind == "tgi" else "Qwen/Qwen3-8B"
    assert sent == {"model": model, **expected, "messages": list(MESSAGES)}


async def test_a_regex_for_a_provider_without_one_is_refused_before_sending() -> None:
    server = openai_server("someone")
    async with backend(server, params={"response_format": {"type": "regex", "value": "a+"}}) as b:
        with pytest.raises(ValidationError, match="regex"):
            await b.capacity()
    assert server.bodies == []


async def test_the_body_is_exactly_the_jobs_with_the_request_on_top() -> None:
    server = openai_server("vllm")
    params = {"temperature": 0.7, "max_tokens": 32}
    async with backend(server, model="m", params=params, extra_body={"top_k": 5}) as b:
        await b.capacity()
        await b.request(GenerationRequest(messages=MESSAGES, seed=11))
        await b.request(GenerationRequest(messages=MESSAGES))
        await b.request(GenerationRequest(messages=MESSAGES, seed=3, params={"temperature": 0.1, "model": "other"}))
    base = {"model": "m", "temperature": 0.7, "max_tokens": 32, "top_k": 5, "messages": list(MESSAGES)}
    assert server.bodies == [
        {**base, "seed": 11},
        base,
        {**base, "model": "other", "temperature": 0.1, "seed": 3},
    ]
    assert all("presence_penalty" not in b and "n" not in b and "stream" not in b for b in server.bodies)


async def test_extra_body_setting_the_seed_wins() -> None:
    server = openai_server("vllm")
    async with backend(server, model="m", extra_body={"seed": 1}) as b:
        await b.request(GenerationRequest(messages=MESSAGES, seed=99))  # detects on first use
    assert server.bodies == [{"model": "m", "messages": list(MESSAGES), "seed": 1}]


async def test_the_result_holds_what_the_output_records() -> None:
    server = tgi_server()
    server.answers["/v1/chat/completions"] = Answer(200, recorded("tgi-1.4.5-tool-call")["body"])
    async with backend(server, "http://tgi:8080") as b:
        tool = await b.request(GenerationRequest(messages=MESSAGES))
        server.answers["/v1/chat/completions"] = Answer(
            200, {**chat_answer(content="4", reasoning_content="2 and 2"), "seed": 42}
        )
        reasoned = await b.request(GenerationRequest(messages=MESSAGES))
    assert tool.text == "" and tool.finish_reason == "eos_token" and tool.details is None
    calls = json.loads(tool.tool_calls or "")
    assert calls[0]["function"]["name"] == "get_n_day_weather_forecast"
    assert json.loads(calls[0]["function"]["arguments"])["num_days"] == 3
    assert (tool.prompt_tokens, tool.generated_tokens) == (246, 27)
    assert (reasoned.text, reasoned.reasoning, reasoned.seed, reasoned.model) == ("4", "2 and 2", 42, "served-model")


async def test_logprobs_are_kept_in_one_shape_for_chat_and_completions() -> None:
    server = openai_server("vllm")
    top = [{"token": "4", "logprob": -0.1}, {"token": "5", "logprob": -2.5}]
    answer = chat_answer(content="4")
    answer["choices"][0]["logprobs"] = {
        "content": [{"token": "4", "logprob": -0.1, "bytes": [52], "top_logprobs": top}]
    }
    server.answers["/v1/chat/completions"] = Answer(200, answer)
    server.answers["/v1/completions"] = Answer(
        200,
        {
            "model": "m",
            "choices": [
                {
                    "text": " 4",
                    "finish_reason": "length",
                    "logprobs": {
                        "tokens": [" 4"],
                        "token_logprobs": [-0.1],
                        "top_logprobs": [{" 4": -0.1, " 5": -2.5}],
                    },
                }
            ],
        },
    )
    expected = {"logprobs": [{"token": "4", "logprob": -0.1, "top_logprobs": top}]}
    async with backend(server, model="m", keep_logprobs=True) as chat:
        got_chat = await chat.request(GenerationRequest(messages=MESSAGES))
    async with backend(server, model="m", api="completions", keep_logprobs=True) as comp:
        got_comp = await comp.request(GenerationRequest(prompt="2+2="))
    assert got_chat.details == expected
    assert got_comp.text == " 4" and got_comp.details is not None
    assert got_comp.details["logprobs"][0]["top_logprobs"] == [
        {"token": " 4", "logprob": -0.1},
        {"token": " 5", "logprob": -2.5},
    ]
    assert server.bodies[-1] == {"model": "m", "prompt": "2+2="}


async def test_the_hf_router_needs_a_model() -> None:
    server = MockServer({"/v1/models": Answer(200, {"data": [{"id": "a/b", "owned_by": "a"}]})})
    async with backend(server, "https://router.huggingface.co/v1") as b:
        with pytest.raises(SpecError, match="set `model`"):
            await b.capacity()
        assert await b.health() is True  # the router has no /health: 404 says nothing
        assert await b.queue() is None


async def test_check_limits_refuses_max_tokens_beyond_the_context() -> None:
    b = backend(MockServer(), params={"max_tokens": 5000})
    with pytest.raises(ValidationError, match=r"`max_tokens` = 5000 .* context length of 4096"):
        b.check_limits(Capacity(max_total_tokens=4096))
    b.check_limits(Capacity(max_total_tokens=8192))
    b.check_limits(Capacity())
    await b.aclose()


async def test_queue_and_health_when_the_server_says_nothing_or_no() -> None:
    server = openai_server("vllm")
    server.answers.pop("/metrics")
    server.answers["/health"] = Answer(503, b"")
    async with backend(server) as b:
        await b.capacity()
        assert await b.queue() is None
        assert await b.health() is False
