"""The clients' OpenAI-style calls against recorded answers of real servers and providers: what is parsed, and
exactly what is sent."""

from __future__ import annotations

import json

import httpx
import pytest

from tests._loopback import recording_server
from tests._openai_mock import Answer, MockServer, recorded, sse, tgi_snapshot
from tgbatch.client import AsyncClient, ChatCompletion, Client, IncompleteStreamError, ValidationError

pytestmark = pytest.mark.anyio

MESSAGES = [{"role": "user", "content": "What is deep learning?"}]
PROVIDERS = ["cerebras", "fireworks-ai", "hf-inference", "hyperbolic", "nebius", "novita", "sambanova", "together"]


def served(path: str, answer: Answer) -> MockServer:
    return MockServer({path: answer})


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_recorded_provider_answer_is_parsed(provider: str) -> None:
    rec = recorded(f"{provider}-chat")
    raw = json.loads(rec["body"])
    server = served("/v1/chat/completions", Answer(rec["status"], rec["body"]))
    async with AsyncClient("https://router.huggingface.co/v1", http_client=server.async_client()) as client:
        answer = await client.chat(MESSAGES, model="some/model")
    assert isinstance(answer, ChatCompletion)
    assert answer.model == raw["model"]
    assert answer.id == raw.get("id", "")
    assert answer.choices[0].message.content == raw["choices"][0]["message"]["content"]
    assert answer.choices[0].finish_reason == raw["choices"][0]["finish_reason"]
    assert answer.usage is not None
    assert answer.usage.completion_tokens == raw["usage"]["completion_tokens"]
    assert answer.usage.prompt_tokens == raw["usage"]["prompt_tokens"]
    # exactly what was set: no defaults, no `stream: false`, no `n`
    assert server.bodies == [{"model": "some/model", "messages": MESSAGES}]


def _stream_expectation(body: str) -> tuple[str, str | None, int | None]:
    text, finish, usage = "", None, None
    for line in body.splitlines():
        data = line.partition(":")[2].strip()
        if not line.startswith("data") or data == "[DONE]":
            continue
        event = json.loads(data)
        for choice in event["choices"]:
            text += choice["delta"].get("content") or ""
            finish = choice.get("finish_reason") or finish
        if event.get("usage"):
            usage = event["usage"]["completion_tokens"]
    return text, finish, usage


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_recorded_provider_stream_is_parsed(provider: str) -> None:
    rec = recorded(f"{provider}-stream")
    server = served("/v1/chat/completions", Answer(rec["status"], rec["body"], rec["content_type"]))
    async with AsyncClient("https://router.huggingface.co/v1", http_client=server.async_client()) as client:
        chunks = [chunk async for chunk in client.chat_stream(MESSAGES, model="m", max_tokens=20)]
    text, finish, usage = _stream_expectation(rec["body"])
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert len(text) > 20
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [finish]
    usages = [c.usage.completion_tokens for c in chunks if c.usage is not None]
    assert (usages[-1] if usages else None) == usage
    assert server.bodies == [{"model": "m", "messages": MESSAGES, "max_tokens": 20, "stream": True}]


async def test_a_stream_without_done_but_with_a_finish_reason_is_complete() -> None:
    """TGI 1.4 and cerebras end a stream without `[DONE]`; the finish reason says it is whole."""
    rec = recorded("tgi-1.4.3-stream-no-done")
    assert "[DONE]" not in rec["body"]
    server = served("/v1/chat/completions", Answer(200, rec["body"], "text/event-stream"))
    async with AsyncClient("http://tgi:8080", http_client=server.async_client()) as client:
        chunks = [c async for c in client.chat_stream(MESSAGES)]
    assert chunks[-1].choices[0].finish_reason == "length"
    assert chunks[0].id == ""


async def test_a_stream_cut_before_its_end_is_incomplete() -> None:
    events = tgi_snapshot("test_json_schema_stream")[:3]
    server = served("/v1/chat/completions", Answer(200, sse(events, done=False), "text/event-stream"))
    async with AsyncClient("http://tgi:8080", http_client=server.async_client()) as client:
        with pytest.raises(IncompleteStreamError):
            [c async for c in client.chat_stream(MESSAGES)]


async def test_tgi_snapshots_chat_and_completions() -> None:
    basic = tgi_snapshot("test_json_schema_basic")
    usage_stream = tgi_snapshot("test_flash_llama_completion_stream_usage")
    many = tgi_snapshot("test_flash_llama_completion_many_prompts_stream")
    server = MockServer(
        {
            "/v1/chat/completions": Answer(200, basic),
            "/v1/completions": Answer(200, sse(many), "text/event-stream"),
        }
    )
    async with AsyncClient("http://tgi:8080", http_client=server.async_client()) as client:
        answer = await client.chat(MESSAGES, response_format={"type": "json", "value": {"type": "object"}})
        chunks = [c async for c in client.completions_stream(["a", "b", "c", "d"], max_tokens=10, seed=0)]
    assert json.loads(answer.choices[0].message.content or "")["numCats"] == 2
    assert answer.id == "" and answer.usage is not None and answer.usage.total_tokens == 67
    # TGI's completions stream says finish_reason "" until the end: read as None
    reasons = [c.choices[0].finish_reason for c in chunks]
    assert reasons.count(None) == len(chunks) - 4 and set(reasons) - {None} == {"length"}
    by_index: dict[int, str] = {}
    for c in chunks:
        by_index[c.choices[0].index] = by_index.get(c.choices[0].index, "") + c.choices[0].text
    assert sorted(by_index) == [0, 1, 2, 3]
    assert server.bodies[1] == {"prompt": ["a", "b", "c", "d"], "max_tokens": 10, "seed": 0, "stream": True}
    # the usage chunk has no choices
    server.answers["/v1/chat/completions"] = Answer(200, sse(usage_stream), "text/event-stream")
    async with AsyncClient("http://tgi:8080", http_client=server.async_client()) as client:
        chunks2 = [c async for c in client.chat_stream(MESSAGES, stream_options={"include_usage": True})]
    assert chunks2[-1].choices == [] and chunks2[-1].usage is not None and chunks2[-1].usage.completion_tokens == 10


async def test_tool_call_arguments_become_a_json_string() -> None:
    """TGI sent `arguments` as an object (and an integer id); OpenAI's form is a JSON string."""
    rec = recorded("tgi-1.4.5-tool-call")
    server = served("/v1/chat/completions", Answer(200, rec["body"]))
    async with AsyncClient("http://tgi:8080", http_client=server.async_client()) as client:
        answer = await client.chat(MESSAGES, tools=[{"type": "function", "function": {"name": "f"}}])
    call = answer.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.id == "0" and call.function.name == "get_n_day_weather_forecast"
    assert json.loads(call.function.arguments or "") == {
        "format": "fahrenheit",
        "location": "San Francisco, CA",
        "num_days": 3,
    }


@pytest.mark.parametrize("field", ["reasoning", "reasoning_content"])
async def test_vllm_and_sglang_reasoning_land_in_reasoning(field: str) -> None:
    message = {"role": "assistant", "content": "4", field: "2+2 is 4"}
    body = {"id": "x", "model": "q", "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
    if field == "reasoning_content":  # SGLang adds matched_stop, vLLM stop_reason: extra fields are kept
        body["choices"][0]["matched_stop"] = 151645
    delta = {"id": "x", "model": "q", "choices": [{"index": 0, "delta": {field: "2+2"}, "finish_reason": None}]}
    server = MockServer({"/v1/chat/completions": Answer(200, body)})
    async with AsyncClient("http://vllm:8000/v1", http_client=server.async_client()) as client:
        answer = await client.chat(MESSAGES, model="q")
        server.answers["/v1/chat/completions"] = Answer(200, sse([delta]), "text/event-stream")
        chunks = [c async for c in client.chat_stream(MESSAGES, model="q")]
    chunk = chunks[0]
    assert len(chunks) == 1
    assert answer.choices[0].message.reasoning == "2+2 is 4"
    assert answer.usage is None  # omitted: tolerated
    assert chunk.choices[0].delta.reasoning == "2+2"


async def test_exactly_what_is_set_is_sent_with_extra_body_merged() -> None:
    server = served("/v1/chat/completions", Answer(200, recorded("hf-inference-chat")["body"]))
    async with AsyncClient("http://tgi:8080", http_client=server.async_client()) as client:
        await client.chat(MESSAGES)
        await client.chat(
            MESSAGES, model="m", temperature=0.0, seed=7, top_p=None, extra_body={"top_k": 5, "temperature": 1.0}
        )
        with pytest.raises(ValidationError, match="prompt"):
            await client.chat(MESSAGES, prompt="x")
    assert server.bodies == [
        {"messages": MESSAGES},
        {"model": "m", "messages": MESSAGES, "temperature": 1.0, "seed": 7, "top_k": 5},
    ]


@pytest.mark.parametrize(
    ("base", "path"),
    [
        ("http://host:8080", "/v1/chat/completions"),
        ("http://host:8080/", "/v1/chat/completions"),
        ("https://router.huggingface.co/v1", "/v1/chat/completions"),
        ("http://host:8000/v1/", "/v1/chat/completions"),
        ("https://router.huggingface.co/hf-inference/models/X", "/hf-inference/models/X/v1/chat/completions"),
    ],
)
async def test_routes_follow_the_base_url(base: str, path: str) -> None:
    server = MockServer()
    async with AsyncClient(base, http_client=server.async_client()) as client:
        for call in (client.chat(MESSAGES), client.completions("x"), client.models()):
            with pytest.raises(Exception):  # noqa: B017 - the mock answers 404; only the URL matters here
                await call
    assert [s.path for s in server.seen] == [
        path,
        path.replace("chat/completions", "completions"),
        path.replace("chat/completions", "models"),
    ]


def test_a_base_url_with_a_path_reaches_a_loopback_server() -> None:
    with recording_server() as rec:
        rec.answers["/prefix/v1/chat/completions"] = (
            200,
            "application/json",
            recorded("hf-inference-chat")["body"].encode(),
        )
        rec.answers["/v1/models"] = (
            200,
            "application/json",
            b'{"object":"list","data":[{"id":"m","owned_by":"vllm"}]}',
        )
        with Client(rec.url + "/prefix") as client:
            answer = client.chat(MESSAGES)
        with Client(rec.url + "/v1") as client:
            models = client.models()
    assert answer.choices[0].message.content
    assert models.data[0].id == "m"
    assert rec.request_lines == ["POST /prefix/v1/chat/completions HTTP/1.1", "GET /v1/models HTTP/1.1"]


def test_the_sync_client_calls_and_iterates() -> None:
    rec = recorded("together-stream")
    server = MockServer(
        {
            "/v1/chat/completions": Answer(200, rec["body"], rec["content_type"]),
            "/v1/completions": Answer(
                200, {"id": "c", "model": "m", "choices": [{"text": "hi", "finish_reason": "stop"}]}
            ),
        }
    )
    with Client("http://h", http_client=server.sync_client()) as client:
        text = "".join(c.choices[0].delta.content or "" for c in client.chat_stream(MESSAGES, model="m"))
        completion = client.completions("Say hi", model="m", max_tokens=2)
    assert text.startswith("Deep learning")
    assert completion.choices[0].text == "hi" and completion.choices[0].logprobs is None
    assert server.bodies[1] == {"model": "m", "prompt": "Say hi", "max_tokens": 2}


async def test_an_answer_that_is_not_an_event_stream_is_a_protocol_error() -> None:
    from tgbatch.client import ProtocolError

    server = served("/v1/chat/completions", Answer(200, {"choices": []}))
    async with AsyncClient("http://h", http_client=server.async_client()) as client:
        with pytest.raises(ProtocolError, match="stream"):
            [c async for c in client.chat_stream(MESSAGES)]
        server.answers["/v1/chat/completions"] = Answer(200, "<html>hi</html>", "text/html")
        with pytest.raises(ProtocolError, match="not JSON"):
            await client.chat(MESSAGES)


def test_httpx_is_the_callers(monkeypatch: pytest.MonkeyPatch) -> None:
    # an httpx.Client given to Client is used as is (no network): proof that the mock saw the call
    server = served("/v1/models", Answer(200, {"data": [{"id": "a", "owned_by": "sglang", "max_model_len": 4096}]}))
    with Client("http://h", http_client=httpx.Client(transport=httpx.MockTransport(server.handler))) as client:
        listing = client.models()
    assert listing.data[0].max_model_len == 4096 and listing.data[0].owned_by == "sglang"
