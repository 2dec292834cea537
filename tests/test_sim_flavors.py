"""What differs between the simulator's flavours: error shapes and statuses, context length, the vLLM/SGLang
queue (no refusals, a waiting gauge, 503 only beyond a cap), the routes each server has, and faults."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from tgbatch.backends.prometheus import gauge
from tgbatch.sim import SimConfig, create_app

pytestmark = pytest.mark.anyio

MESSAGES = [{"role": "user", "content": "Say something about rivers"}]


@contextlib.asynccontextmanager
async def sim(**config: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(SimConfig(**config))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim", timeout=30) as c:
        yield c


def openai_client(http: httpx.AsyncClient) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key="x", base_url="http://sim/v1", http_client=http, max_retries=0)


async def chat(c: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await c.post("/v1/chat/completions", json={"messages": MESSAGES, **body})


async def test_context_length_is_422_on_tgi_with_the_routers_message() -> None:
    async with sim(max_input_tokens=100, max_total_tokens=128) as c:
        r = await chat(c, max_tokens=120)
    assert r.status_code == 422
    body = r.json()
    assert body["error_type"] == "validation" and set(body) == {"error", "error_type"}
    assert body["error"].startswith("Input validation error: `inputs` tokens + `max_new_tokens` must be <= 128.")


@pytest.mark.parametrize("flavor", ["vllm", "sglang"])
async def test_context_length_is_400_on_vllm_and_sglang(flavor: str) -> None:
    async with sim(flavor=flavor, max_input_tokens=100, max_total_tokens=128) as c:
        r = await chat(c, max_tokens=120)
        with pytest.raises(openai.BadRequestError):
            await openai_client(c).chat.completions.create(model="tgbatch/sim", messages=MESSAGES, max_tokens=120)  # type: ignore[arg-type]
    assert r.status_code == 400
    body = r.json()
    if flavor == "vllm":
        assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
        assert body["error"]["code"] == 400 and body["error"]["type"] == "BadRequestError"
        message = body["error"]["message"]
        assert message.startswith("This model's maximum context length is 128 tokens. However, you requested")
    else:
        assert body["object"] == "error" and body["code"] == 400
        assert "maximum context length of 128 tokens" in body["message"]


async def test_vllm_unknown_model_is_404_and_unknown_fields_are_ignored() -> None:
    async with sim(flavor="vllm") as c:
        missing = await chat(c, model="gpt-4")
        ignored = await chat(c, model="tgbatch/sim", guided_json={"type": "object"}, whatever=1)
        with pytest.raises(openai.NotFoundError):
            await openai_client(c).chat.completions.create(model="gpt-4", messages=MESSAGES)  # type: ignore[arg-type]
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "The model `gpt-4` does not exist."
    assert ignored.status_code == 200 and not ignored.json()["choices"][0]["message"]["content"].startswith("{")


@pytest.mark.parametrize(
    ("flavor", "present", "absent"),
    [
        ("tgi", ["/info", "/metrics", "/v1/models", "/health"], ["/version"]),
        ("vllm", ["/version", "/metrics", "/v1/models", "/health"], ["/info"]),
        ("sglang", ["/version", "/metrics", "/v1/models", "/health"], ["/info"]),
    ],
)
async def test_each_flavour_has_its_servers_routes(flavor: str, present: list[str], absent: list[str]) -> None:
    async with sim(flavor=flavor) as c:
        for path in present:
            assert (await c.get(path)).status_code == 200, path
        for path in absent:
            assert (await c.get(path)).status_code == 404, path
        generate = await c.post("/generate", json={"inputs": "hi"})
    assert generate.status_code == (200 if flavor == "tgi" else 404)


async def test_tgi_overload_is_429_for_the_openai_client() -> None:
    async with sim(overload_rate=1.0) as c:
        r = await chat(c)
        with pytest.raises(openai.RateLimitError):
            await openai_client(c).chat.completions.create(model="tgi", messages=MESSAGES)  # type: ignore[arg-type]
    assert r.status_code == 429 and r.json() == {"error": "Model is overloaded", "error_type": "overloaded"}


async def test_tgi_presence_penalty_changes_the_output() -> None:
    async with sim() as c:
        plain = await chat(c, seed=1, max_tokens=30)
        penalised = await chat(c, seed=1, max_tokens=30, presence_penalty=0.0)
    text = [r.json()["choices"][0]["message"]["content"] for r in (plain, penalised)]
    assert text[0] != text[1]  # presence_penalty 0 means repetition_penalty 2.0 on TGI


async def test_tgi_ignores_n_and_does_not_echo_the_seed() -> None:
    async with sim() as c:
        r = await chat(c, n=3, seed=5)
    body = r.json()
    assert len(body["choices"]) == 1 and "seed" not in body


async def test_vllm_gives_n_choices_with_stop_reason() -> None:
    async with sim(flavor="vllm") as c:
        r = await chat(c, n=3, seed=5, max_tokens=8)
    choices = r.json()["choices"]
    assert [ch["index"] for ch in choices] == [0, 1, 2]
    assert all(ch["stop_reason"] is None and ch["finish_reason"] == "length" for ch in choices)
    assert r.json()["usage"]["completion_tokens"] == 24


@pytest.mark.parametrize("flavor", ["vllm", "sglang"])
async def test_a_stop_string_is_trimmed_and_reported(flavor: str) -> None:
    async with sim(flavor=flavor) as c:
        free = (await chat(c, seed=2, max_tokens=60)).json()["choices"][0]["message"]["content"]
        stop = free.split()[3]
        r = (await chat(c, seed=2, max_tokens=60, stop=[stop])).json()["choices"][0]
    assert r["finish_reason"] == "stop"
    assert free.startswith(r["message"]["content"] + stop)  # the same tokens, cut before the stop string
    assert r["stop_reason" if flavor == "vllm" else "matched_stop"] == stop


async def test_tgi_stop_sequence_finish_reason_keeps_the_stop_string() -> None:
    async with sim() as c:
        free = (await chat(c, seed=2, max_tokens=60)).json()["choices"][0]["message"]["content"]
        stop = free.split()[3]
        r = (await chat(c, seed=2, max_tokens=60, stop=[stop])).json()["choices"][0]
    assert r["finish_reason"] == "stop_sequence" and r["message"]["content"].endswith(stop)


async def _waiting_seen(c: httpx.AsyncClient, names: tuple[str, ...], tasks: list[asyncio.Task[Any]]) -> float:
    """The largest waiting gauge seen while the requests run (scraped whenever the loop is free)."""
    most = 0.0
    while not all(t.done() for t in tasks):
        most = max(most, gauge((await c.get("/metrics")).text, names) or 0.0)
        await asyncio.sleep(0.005)  # a scrape interval, not synchronisation: the assertion is on the maximum
    return most


@pytest.mark.parametrize(
    ("flavor", "names"),
    [("vllm", ("vllm:num_requests_waiting",)), ("sglang", ("sglang:num_queue_reqs",))],
)
async def test_queueing_flavours_queue_instead_of_refusing(flavor: str, names: tuple[str, ...]) -> None:
    config = {"flavor": flavor, "max_batch_size": 2, "decode_ms_per_token": 2.0, "max_concurrent_requests": 1}
    async with sim(**config) as c:
        tasks = [asyncio.create_task(chat(c, max_tokens=20, seed=i)) for i in range(6)]
        most = await _waiting_seen(c, names, tasks)
        answers = await asyncio.gather(*tasks)
        after = gauge((await c.get("/metrics")).text, names)
    assert [r.status_code for r in answers] == [200] * 6  # max_concurrent_requests is TGI's: no 429 here
    assert most >= 1 and after == 0


@pytest.mark.parametrize("flavor", ["vllm", "sglang"])
async def test_max_queued_requests_refuses_with_503_beyond_the_cap(flavor: str) -> None:
    config = {"flavor": flavor, "max_batch_size": 1, "decode_ms_per_token": 5.0, "max_queued_requests": 1}
    async with sim(**config) as c:
        tasks = [asyncio.create_task(chat(c, max_tokens=20, seed=i)) for i in range(4)]
        answers = await asyncio.gather(*tasks)
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200, 200, 503, 503]
    refused = next(r for r in answers if r.status_code == 503).json()
    message = refused["error"]["message"] if flavor == "vllm" else refused["message"]
    assert "queue is full" in message


async def test_vllm_503_is_an_internal_server_error_for_the_openai_client() -> None:
    async with sim(flavor="vllm", overload_rate=1.0) as c:
        with pytest.raises(openai.InternalServerError) as info:
            await openai_client(c).chat.completions.create(model="tgbatch/sim", messages=MESSAGES)  # type: ignore[arg-type]
    assert info.value.status_code == 503


@pytest.mark.parametrize("flavor", ["tgi", "vllm", "sglang"])
async def test_include_usage_on_vllm_sglang_and_tgi_streams_end_with_done(flavor: str) -> None:
    async with sim(flavor=flavor) as c:
        r = await chat(c, max_tokens=3, stream=True, stream_options={"include_usage": True})
    frames = [f for f in r.text.split("\n\n") if f]
    assert frames[-1] == "data: [DONE]"
    assert '"choices":[]' in frames[-2] and '"completion_tokens":3' in frames[-2]


@pytest.mark.parametrize("flavor", ["tgi", "vllm", "sglang"])
async def test_an_injected_error_has_the_flavours_shape(flavor: str) -> None:
    async with sim(flavor=flavor, error_rate=1.0) as c:
        r = await chat(c)
    body = r.json()
    if flavor == "tgi":
        assert r.status_code == 424 and body["error_type"] == "generation"
    elif flavor == "vllm":
        assert r.status_code == 500 and body["error"]["code"] == 500
    else:
        assert r.status_code == 500 and body["object"] == "error"


def test_sim_url_selects_the_flavour() -> None:
    from tgbatch.sim import app_from_sim_url

    app = app_from_sim_url("sim://?flavor=sglang&max_queued_requests=3&reasoning=true")
    config = app.state.sim.config
    assert (config.flavor, config.max_queued_requests, config.reasoning) == ("sglang", 3, True)
