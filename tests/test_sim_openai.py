"""The simulator's OpenAI routes driven by the official ``openai`` client, in-process (an ASGI transport) and,
marked slow, against ``tgbatch serve`` subprocesses: chat, streams, completions, models, reasoning, structured
output, tool calls and the errors each flavour raises."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from tests._server_util import PROMPT, SCHEMA, live_servers
from tgbatch.sim import SimConfig, create_app
from tgbatch.sim.vocab import count_tokens

pytestmark = pytest.mark.anyio

FLAVORS = ("tgi", "vllm", "sglang")
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": PROMPT}]
SNAPSHOTS = Path("/work/shared/reference/tgi-snapshots")


@contextlib.asynccontextmanager
async def client(**config: Any) -> AsyncIterator[openai.AsyncOpenAI]:
    app = create_app(SimConfig(**config))
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim/v1")
    async with openai.AsyncOpenAI(api_key="x", base_url="http://sim/v1", http_client=http, max_retries=0) as c:
        yield c


def template_tokens(messages: list[dict[str, str]]) -> int:
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return count_tokens(text + "<|im_start|>assistant\n")


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_chat_answers_with_usage_counted_through_the_template(flavor: str) -> None:
    async with client(flavor=flavor) as c:
        r = await c.chat.completions.create(model="tgbatch/sim", messages=MESSAGES, max_tokens=200, seed=1)  # type: ignore[arg-type]
    choice = r.choices[0]
    assert choice.message.content and choice.message.role == "assistant"
    assert choice.finish_reason == "stop"
    assert r.usage is not None and r.usage.prompt_tokens == template_tokens(MESSAGES)
    assert r.usage.completion_tokens == count_tokens(choice.message.content) + 1  # + the EOS
    assert r.object == "chat.completion" and r.model == "tgbatch/sim"
    assert (r.id == "") == (flavor == "tgi")
    assert (r.system_fingerprint == "3.3.6-native") == (flavor == "tgi")


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_same_seed_same_text_streamed_or_not(flavor: str) -> None:
    kwargs: dict[str, Any] = {"model": "tgbatch/sim", "messages": MESSAGES, "max_tokens": 40, "seed": 7}
    async with client(flavor=flavor) as c:
        a = await c.chat.completions.create(**kwargs)
        b = await c.chat.completions.create(**kwargs)
        other = await c.chat.completions.create(**{**kwargs, "seed": 8})
        chunks = [x async for x in await c.chat.completions.create(**kwargs, stream=True)]
    streamed = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert a.choices[0].message.content == b.choices[0].message.content == streamed
    assert other.choices[0].message.content != a.choices[0].message.content


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_stream_include_usage_ends_with_a_usage_chunk(flavor: str) -> None:
    async with client(flavor=flavor) as c:
        s = await c.chat.completions.create(
            model="tgbatch/sim", messages=MESSAGES, max_tokens=5, stream=True, stream_options={"include_usage": True}  # type: ignore[arg-type]
        )
        chunks = [x async for x in s]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == 5 and last.usage.prompt_tokens == template_tokens(MESSAGES)
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finishes == ["length"]


def _keys(obj: dict[str, Any]) -> set[str]:
    return set(obj)


async def test_tgi_chunks_have_the_recorded_snapshots_shape() -> None:
    recorded = json.loads((SNAPSHOTS / "test_completion_prompts/test_flash_llama_completion_stream_usage.json").read_text())
    async with client() as c:
        r = await c.post(
            "/chat/completions",
            body={"messages": MESSAGES, "max_tokens": 10, "stream": True, "stream_options": {"include_usage": True}},
            cast_to=httpx.Response,
        )
        text = r.text
    frames = [f[len("data: ") :] for f in text.split("\n\n") if f.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    ours = [json.loads(f) for f in frames[:-1]]
    assert len(ours) == len(recorded) == 11
    for mine, theirs in zip(ours, recorded, strict=True):
        assert _keys(mine) == _keys(theirs)
        for a, b in zip(mine["choices"], theirs["choices"], strict=True):
            assert _keys(a) == _keys(b)
            # the snapshot's delta has a tool_calls null added by the recording client; TextMessage has none
            assert _keys(a["delta"]) == _keys(b["delta"]) - {"tool_calls"}
        assert mine["id"] == theirs["id"] == ""
    assert ours[-1]["usage"]["total_tokens"] == ours[-1]["usage"]["prompt_tokens"] + 10
    assert ours[-2]["choices"][0]["finish_reason"] == "length"


async def test_tgi_answer_has_the_recorded_snapshots_shape() -> None:
    recorded = json.loads((SNAPSHOTS / "test_json_schema_constrain/test_json_schema_basic.json").read_text())
    async with client() as c:
        r = await c.post(
            "/chat/completions",
            body={"messages": MESSAGES, "response_format": {"type": "json_schema", "value": {"name": "p", "schema": SCHEMA}}},
            cast_to=httpx.Response,
        )
    ours = r.json()
    assert _keys(ours) == _keys(recorded)
    assert _keys(ours["choices"][0]) == _keys(recorded["choices"][0])
    assert _keys(ours["choices"][0]["message"]) == _keys(recorded["choices"][0]["message"])
    jsonschema.validate(json.loads(ours["choices"][0]["message"]["content"]), SCHEMA)


@pytest.mark.parametrize(("flavor", "field"), [("vllm", "reasoning"), ("sglang", "reasoning_content")])
async def test_reasoning_comes_before_the_answer_and_counts(flavor: str, field: str) -> None:
    kwargs: dict[str, Any] = {"model": "tgbatch/sim", "messages": MESSAGES, "max_tokens": 400, "seed": 3}
    async with client(flavor=flavor, reasoning=True) as c:
        r = await c.chat.completions.create(**kwargs)
        chunks = [x async for x in await c.chat.completions.create(**kwargs, stream=True)]
    message = r.choices[0].message.model_dump()
    thought, answer = message[field], message["content"]
    assert thought and answer and "<think>" not in answer
    assert r.usage is not None
    # <think>, the thoughts, </think>, the answer, EOS
    assert r.usage.completion_tokens == count_tokens(thought) + count_tokens(answer) + 3
    deltas = [ch.choices[0].delta.model_dump() for ch in chunks if ch.choices]
    assert "".join(d.get(field) or "" for d in deltas) == thought
    assert "".join(d.get("content") or "" for d in deltas) == answer


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_completions_have_no_reasoning_parser_the_thinking_stays_in_the_text(flavor: str) -> None:
    kwargs: dict[str, Any] = {"model": "tgbatch/sim", "prompt": PROMPT, "max_tokens": 400, "seed": 3, "stop": ["."]}
    async with client(flavor=flavor, reasoning=True) as c:
        r = await c.completions.create(**kwargs)
        chunks = [x async for x in await c.completions.create(**kwargs, stream=True)]
    text = r.choices[0].text
    assert text.startswith("<think>") and "</think>" in text
    assert "".join(ch.choices[0].text for ch in chunks if ch.choices) == text  # streamed as answered


async def test_tgi_has_no_reasoning_parser_the_thinking_is_inline() -> None:
    async with client(reasoning=True) as c:
        r = await c.chat.completions.create(model="tgi", messages=MESSAGES, max_tokens=400, seed=3)  # type: ignore[arg-type]
    content = r.choices[0].message.content or ""
    assert content.startswith("<think>") and "</think>" in content
    assert "reasoning" not in r.choices[0].message.model_dump(exclude_none=True)


@pytest.mark.parametrize("flavor", ["vllm", "sglang"])
async def test_response_format_json_schema_in_openais_form(flavor: str) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA, "strict": True}}
    async with client(flavor=flavor) as c:
        r = await c.chat.completions.create(model="tgbatch/sim", messages=MESSAGES, response_format=fmt)  # type: ignore[arg-type]
    jsonschema.validate(json.loads(r.choices[0].message.content or ""), SCHEMA)


async def test_tgi_refuses_openais_json_schema_form_as_serde_does() -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}
    async with client() as c:
        with pytest.raises(openai.UnprocessableEntityError) as info:
            await c.chat.completions.create(model="tgi", messages=MESSAGES, response_format=fmt)  # type: ignore[arg-type]
    assert "missing field `value`" in info.value.response.text


async def test_regex_per_flavour() -> None:
    regex = "[0-9]{3}-[a-z]{4}"
    async with client(flavor="vllm") as c:
        r = await c.chat.completions.create(
            model="tgbatch/sim", messages=MESSAGES, extra_body={"structured_outputs": {"regex": regex}}  # type: ignore[arg-type]
        )
        old = await c.chat.completions.create(
            model="tgbatch/sim", messages=MESSAGES, extra_body={"guided_regex": regex}  # type: ignore[arg-type]
        )
    async with client(flavor="sglang") as c:
        s = await c.chat.completions.create(model="x", messages=MESSAGES, extra_body={"regex": regex})  # type: ignore[arg-type]
    async with client() as c:
        t = await c.chat.completions.create(
            model="tgi", messages=MESSAGES, response_format={"type": "regex", "value": regex}  # type: ignore[arg-type,typeddict-item,typeddict-unknown-key]
        )
    import re

    for answer in (r, s, t):
        assert re.fullmatch(regex, answer.choices[0].message.content or "")
    # vLLM ignores the removed guided_* fields: a 200 with free text
    assert not re.fullmatch(regex, old.choices[0].message.content or "")


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_a_required_tool_call_has_arguments_from_the_schema(flavor: str) -> None:
    tools = [{"type": "function", "function": {"name": "get_person", "parameters": SCHEMA}}]
    async with client(flavor=flavor) as c:
        r = await c.chat.completions.create(model="tgbatch/sim", messages=MESSAGES, tools=tools, tool_choice="required")  # type: ignore[arg-type]
    choice = r.choices[0]
    calls = choice.message.tool_calls or []
    assert len(calls) == 1 and calls[0].function.name == "get_person"  # type: ignore[union-attr]
    # TGI serialises arguments as a JSON string since v3.2 (lib.rs serialize_as_string), as OpenAI does
    jsonschema.validate(json.loads(calls[0].function.arguments), SCHEMA)  # type: ignore[union-attr]
    assert choice.finish_reason == ("stop" if flavor == "tgi" else "tool_calls")


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_completions_count_the_bos_and_give_logprobs_in_the_legacy_shape(flavor: str) -> None:
    async with client(flavor=flavor) as c:
        r = await c.completions.create(model="tgbatch/sim", prompt=PROMPT, max_tokens=6, logprobs=2, seed=1)
    choice = r.choices[0]
    assert r.usage is not None and r.usage.prompt_tokens == count_tokens(PROMPT) + 1
    assert r.usage.completion_tokens == 6 and choice.finish_reason == "length"
    if flavor == "tgi":
        assert choice.logprobs is None  # TGI's completions route never returns logprobs
    else:
        assert choice.logprobs is not None and "".join(choice.logprobs.tokens or []) == choice.text
        assert all(len(top) == 2 for top in choice.logprobs.top_logprobs or [])


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_chat_logprobs_in_openais_shape(flavor: str) -> None:
    async with client(flavor=flavor) as c:
        r = await c.chat.completions.create(
            model="tgbatch/sim", messages=MESSAGES, max_tokens=4, logprobs=True, top_logprobs=3  # type: ignore[arg-type]
        )
    content = r.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None and "".join(x.token for x in content) == r.choices[0].message.content
    assert all(len(x.top_logprobs) == 3 and x.logprob <= 0 for x in content)
    assert all((x.bytes is None) == (flavor == "tgi") for x in content)


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_models_lists_the_model_with_the_flavours_owner(flavor: str) -> None:
    async with client(flavor=flavor, max_total_tokens=2048, max_input_tokens=2000) as c:
        models = await c.models.list()
    (card,) = models.data
    assert card.id == "tgbatch/sim"
    assert card.owned_by == {"tgi": "tgbatch/sim", "vllm": "vllm", "sglang": "sglang"}[flavor]
    if flavor != "tgi":
        assert card.model_dump()["max_model_len"] == 2048


@pytest.mark.slow
@pytest.mark.parametrize("flavor", FLAVORS)
def test_tgbatch_serve_speaks_each_flavour_to_the_openai_client(flavor: str) -> None:
    flags = ("--flavor", flavor, "--reasoning", "--max-output-tokens", "24", "--max-input-tokens", "300")
    long = [{"role": "user", "content": "word " * 400}]
    with live_servers(flags) as (server,):
        c = openai.OpenAI(api_key="x", base_url=server.url + "/v1", max_retries=0)
        r = c.chat.completions.create(model="tgbatch/sim", messages=MESSAGES, max_tokens=200, seed=5)  # type: ignore[arg-type]
        chunks = list(
            c.chat.completions.create(
                model="tgbatch/sim", messages=MESSAGES, max_tokens=200, seed=5, stream=True,  # type: ignore[arg-type]
                stream_options={"include_usage": True},
            )
        )  # fmt: skip
        done = c.completions.create(model="tgbatch/sim", prompt=PROMPT, max_tokens=3)
        assert [m.id for m in c.models.list().data] == ["tgbatch/sim"]
        with pytest.raises(openai.BadRequestError if flavor != "tgi" else openai.UnprocessableEntityError):
            c.chat.completions.create(model="tgbatch/sim", messages=long, max_tokens=10)  # type: ignore[arg-type]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == r.usage.completion_tokens  # type: ignore[union-attr]
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == r.choices[0].message.content
    assert done.usage is not None and done.usage.completion_tokens == 3


async def test_tgi_completion_stream_has_the_recorded_snapshots_shape() -> None:
    path = SNAPSHOTS / "test_completion_prompts/test_flash_llama_completion_many_prompts_stream.json"
    recorded = json.loads(path.read_text())
    async with client() as c:
        body = {"prompt": ["Say", "Hello", "How are", "Why"], "max_tokens": 10, "seed": 0, "stream": True}
        r = await c.post("/completions", body=body, cast_to=httpx.Response)
    frames = [f[len("data: ") :] for f in r.text.split("\n\n") if f.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    ours = [json.loads(f) for f in frames[:-1]]
    assert len(ours) == len(recorded) == 40
    finals = [o for o in ours if o["choices"][0]["finish_reason"]]
    assert sorted(o["choices"][0]["index"] for o in finals) == [0, 1, 2, 3]
    for mine in ours:
        # the recorded chunks carry a usage null the recording client added; TGI's Chunk has no usage
        assert set(mine) == set(recorded[0]) - ({"usage"} if not mine["choices"][0]["finish_reason"] else set())
        assert set(mine["choices"][0]) == set(recorded[0]["choices"][0])
    assert all(set(o["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"} for o in finals)
