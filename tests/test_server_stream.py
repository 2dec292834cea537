"""SSE framing of /generate_stream and of / with "stream": true."""

from __future__ import annotations

import pytest

from tgbatch.backends.tgi.models import StreamResponse

from ._server_util import body, sim, sse_events

pytestmark = pytest.mark.anyio

PROMPT = "Tell me a story about a lighthouse"


async def test_event_framing_and_final_details() -> None:
    async with sim() as client:
        r = await client.post("/generate_stream", json=body(PROMPT, max_new_tokens=5, details=True))
        generated = (await client.post("/generate", json=body(PROMPT, max_new_tokens=5, details=True))).json()
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/event-stream"
    # axum 0.7 framing: "data: <compact json>\n\n", nothing else, no [DONE]
    frames = r.text.split("\n\n")
    assert frames[-1] == "" and all(f.startswith('data: {"index":') for f in frames[:-1])
    events = sse_events(r.text)
    assert [e["index"] for e in events] == [1, 2, 3, 4, 5]
    for event in events[:-1]:
        assert list(event) == ["index", "token", "generated_text", "details"]
        assert event["generated_text"] is None and event["details"] is None
        assert StreamResponse.model_validate(event).model_dump(mode="json") == event
    last = events[-1]
    assert last["generated_text"] == generated["generated_text"]
    assert last["details"] == {
        "finish_reason": "length",
        "generated_tokens": 5,
        "seed": None,
        "input_length": len(PROMPT.split()),
    }
    assert [e["token"] for e in events] == generated["details"]["tokens"]
    assert '"generated_text":null,"details":null}' in r.text  # explicit nulls on the wire


async def test_final_event_without_details_has_null_details() -> None:
    async with sim() as client:
        r = await client.post("/generate_stream", json=body(PROMPT, max_new_tokens=3))
    events = sse_events(r.text)
    assert events[-1]["details"] is None and events[-1]["generated_text"] is not None


async def test_top_tokens_in_events() -> None:
    async with sim() as client:
        r = await client.post("/generate_stream", json=body(PROMPT, max_new_tokens=3, top_n_tokens=2, details=True))
        g = (await client.post("/generate", json=body(PROMPT, max_new_tokens=3, top_n_tokens=2, details=True))).json()
    events = sse_events(r.text)
    assert all(list(e)[:3] == ["index", "token", "top_tokens"] for e in events)
    assert [e["top_tokens"] for e in events] == g["details"]["top_tokens"]


async def test_eos_stream_and_full_text() -> None:
    async with sim(min_output_tokens=2, max_output_tokens=2) as client:
        r = await client.post(
            "/generate_stream", json=body(PROMPT, details=True, return_full_text=True, do_sample=True)
        )
    events = sse_events(r.text)
    last = events[-1]
    assert last["token"]["special"] is True and last["details"]["finish_reason"] == "eos_token"
    assert last["generated_text"] == PROMPT + "".join(e["token"]["text"] for e in events[:-1])
    assert isinstance(last["details"]["seed"], int)


async def test_compat_stream() -> None:
    async with sim() as client:
        r = await client.post("/", json={**body(PROMPT, max_new_tokens=3, details=True), "stream": True})
        plain = (await client.post("/generate", json=body(PROMPT, max_new_tokens=3))).json()
    assert r.headers["content-type"] == "text/event-stream"
    # return_full_text defaults to true on the compat route
    assert sse_events(r.text)[-1]["generated_text"] == PROMPT + plain["generated_text"]


async def test_injected_error_after_some_tokens_is_an_event() -> None:
    seen_types = set()
    async with sim(error_rate=1.0, min_output_tokens=30, max_output_tokens=30) as client:
        for _ in range(12):
            r = await client.post("/generate_stream", json=body(PROMPT, max_new_tokens=20, details=True))
            assert r.status_code == 200
            events = sse_events(r.text)
            *tokens, error = events
            assert [e["index"] for e in tokens] == list(range(1, len(tokens) + 1))
            assert all(e["generated_text"] is None for e in tokens)
            assert set(error) == {"error", "error_type"}
            seen_types.add(error["error_type"])
            if error["error_type"] == "generation":
                assert error["error"].startswith("Request failed during generation: Server error: ")
            else:
                assert error == {"error": "Incomplete generation stream", "error_type": "incomplete_generation_stream"}
    assert seen_types == {"generation", "incomplete_generation_stream"}


async def test_keep_alive_while_stalled() -> None:
    async with sim(stall_rate=1.0, stall_s=0.3, keepalive_s=0.05) as client:
        r = await client.post("/generate_stream", json=body(PROMPT, max_new_tokens=2))
    events = sse_events(r.text)
    assert events.count(":") >= 3
    # comments come before the first token, and the token events are intact
    first_token = next(i for i, e in enumerate(events) if e != ":")
    assert all(e == ":" for e in events[:first_token])
    assert [e["index"] for e in events if e != ":"] == [1, 2]
    assert ":\n\n" in r.text


async def test_no_keep_alive_when_events_flow() -> None:
    async with sim(decode_ms_per_token=1, keepalive_s=5) as client:
        r = await client.post("/generate_stream", json=body(PROMPT, max_new_tokens=5))
    assert ":" not in sse_events(r.text)


async def test_stream_matches_generate_when_paced() -> None:
    async with sim(decode_ms_per_token=1, prefill_ms_per_token=0.1) as client:
        r = await client.post("/generate_stream", json=body(PROMPT, max_new_tokens=6, details=True))
        g = (await client.post("/generate", json=body(PROMPT, max_new_tokens=6, details=True))).json()
    assert [e["token"] for e in sse_events(r.text)] == g["details"]["tokens"]
