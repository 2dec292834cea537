"""Every router validation rule through the simulator, with TGI's exact message, status and body, on each
route (422 JSON on /generate and /, an in-stream event with status 200 on /generate_stream)."""

from __future__ import annotations

from typing import Any

import pytest

from ._server_util import body, sim, sim_state, sse_events

pytestmark = pytest.mark.anyio

P = "Input validation error: "
SMALL = {"max_input_tokens": 10, "max_total_tokens": 20}
TWELVE = " ".join(["word"] * 12)  # 12 tokens
FIFTEEN = " ".join(["word"] * 15)

# (id, config, inputs, parameters, message); None inputs means the default prompt
RULES: list[tuple[str, dict[str, Any], str | None, dict[str, Any], str]] = [
    ("temperature", {}, None, {"temperature": 0.0}, "`temperature` must be strictly positive"),
    ("temperature_negative", {}, None, {"temperature": -1}, "`temperature` must be strictly positive"),
    ("repetition_penalty", {}, None, {"repetition_penalty": 0}, "`repetition_penalty` must be strictly positive"),
    ("frequency_penalty_high", {}, None, {"frequency_penalty": 2.5}, "`frequency_penalty` must be >= -2.0 and <= 2.0"),
    ("frequency_penalty_low", {}, None, {"frequency_penalty": -2.1}, "`frequency_penalty` must be >= -2.0 and <= 2.0"),
    ("top_p_one", {}, None, {"top_p": 1.0}, "`top_p` must be > 0.0 and < 1.0"),
    ("top_p_zero", {}, None, {"top_p": 0}, "`top_p` must be > 0.0 and < 1.0"),
    ("typical_p", {}, None, {"typical_p": 1.5}, "`typical_p` must be > 0.0 and < 1.0"),
    ("top_k_zero", {}, None, {"top_k": 0}, "`top_k` must be strictly positive"),
    ("top_k_negative", {}, None, {"top_k": -3}, "`top_k` must be strictly positive"),
    ("max_new_tokens", {}, None, {"max_new_tokens": 0}, "`max_new_tokens` must be strictly positive"),
    ("stop", {}, None, {"stop": ["a", "b", "c", "d", "e"]}, "`stop` supports up to 4 stop sequences. Given: 5"),
    (
        "stop_configured",
        {"max_stop_sequences": 1},
        None,
        {"stop": ["a", "b"]},
        "`stop` supports up to 1 stop sequences. Given: 2",
    ),
    ("top_n_tokens", {}, None, {"top_n_tokens": 6}, "`top_n_tokens` must be >= 0 and <= 5. Given: 6"),
    (
        "top_n_tokens_configured",
        {"max_top_n_tokens": 2},
        None,
        {"top_n_tokens": 3},
        "`top_n_tokens` must be >= 0 and <= 2. Given: 3",
    ),
    ("empty_inputs", {}, "", {}, "`inputs` cannot be empty"),
    ("truncate_zero", {}, None, {"truncate": 0}, "`truncate` must be strictly positive and less than 4095. Given: 0"),
    (
        "truncate_large",
        {},
        None,
        {"truncate": 5000},
        "`truncate` must be strictly positive and less than 4095. Given: 5000",
    ),
    (
        "max_total_tokens",
        SMALL,
        FIFTEEN,
        {"max_new_tokens": 10},
        "`inputs` tokens + `max_new_tokens` must be <= 20. Given: 15 `inputs` tokens and 10 `max_new_tokens`",
    ),
    ("input_length", SMALL, TWELVE, {"max_new_tokens": 1}, "`inputs` must have less than 10 tokens. Given: 12"),
    ("input_length_default_new_tokens", SMALL, TWELVE, {}, "`inputs` must have less than 10 tokens. Given: 12"),
    ("grammar_not_object", {}, None, {"grammar": {"type": "json", "value": [1, 2]}}, "grammar is not supported"),
    (
        "grammar_properties",
        {},
        None,
        {"grammar": {"type": "json", "value": {"type": "object"}}},
        "grammar is not valid: Grammar must have a 'properties' field",
    ),
    (
        "grammar_metaschema",
        {},
        None,
        {"grammar": {"type": "json", "value": {"properties": 3}}},
        "grammar is not valid: 3 is not of type 'object'",
    ),
    # order: the first failing step wins
    (
        "order_temperature_before_top_k",
        {},
        None,
        {"temperature": 0, "top_k": 0},
        "`temperature` must be strictly positive",
    ),
    ("order_params_before_inputs", {}, "", {"max_new_tokens": 0}, "`max_new_tokens` must be strictly positive"),
    ("order_inputs_before_grammar", {}, "", {"grammar": {"type": "json", "value": [1]}}, "`inputs` cannot be empty"),
    (
        "order_metaschema_before_properties",
        {},
        None,
        {"grammar": {"type": "json", "value": {"type": 5}}},
        "grammar is not valid: 5 is not valid under any of the given schemas",
    ),
]

# rules that only /generate (and / without stream) check: best_of is refused earlier when streaming
GENERATE_ONLY = [
    ("best_of_sampling", {}, None, {"best_of": 2}, "you must use sampling when `best_of` is > 1"),
    (
        "seed_best_of",
        {},
        None,
        {"best_of": 2, "do_sample": True, "seed": 1},
        "`seed` must not be set when `best_of` > 1",
    ),
    ("best_of_max", {}, None, {"best_of": 3, "do_sample": True}, "`best_of` must be > 0 and <= 2. Given: 3"),
    (
        "best_of_disabled",
        {"max_best_of": 1},
        None,
        {"best_of": 2, "do_sample": True},
        "`best_of` != 1 is not allowed for this endpoint",
    ),
    (
        "order_best_of_before_temperature",
        {},
        None,
        {"best_of": 3, "temperature": 0},
        "`best_of` must be > 0 and <= 2. Given: 3",
    ),
]


def _ids(rules: list[Any]) -> list[str]:
    return [r[0] for r in rules]


def _request(inputs: str | None, params: dict[str, Any]) -> dict[str, Any]:
    return body(inputs if inputs is not None else "The quick brown fox", **params)


@pytest.mark.parametrize(
    ("name", "config", "inputs", "params", "message"), RULES + GENERATE_ONLY, ids=_ids(RULES + GENERATE_ONLY)
)
async def test_generate_rule(name: str, config: dict, inputs: str | None, params: dict, message: str) -> None:
    async with sim(**config) as client:
        r = await client.post("/generate", json=_request(inputs, params))
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"error": P + message, "error_type": "validation"}


@pytest.mark.parametrize(("name", "config", "inputs", "params", "message"), RULES, ids=_ids(RULES))
async def test_stream_rule_is_an_event(name: str, config: dict, inputs: str | None, params: dict, message: str) -> None:
    async with sim(**config) as client:
        r = await client.post("/generate_stream", json=_request(inputs, params))
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/event-stream"
    assert sse_events(r.text) == [{"error": P + message, "error_type": "validation"}]


@pytest.mark.parametrize(("name", "config", "inputs", "params", "message"), RULES[:6] + GENERATE_ONLY[:1])
async def test_compat_rule(name: str, config: dict, inputs: str | None, params: dict, message: str) -> None:
    async with sim(**config) as client:
        r = await client.post("/", json=_request(inputs, params))
        assert r.status_code == 422
        assert r.json() == {"error": P + message, "error_type": "validation"}
        streamed = await client.post("/", json={**_request(inputs, params), "stream": True})
    if "best_of" not in params:
        assert sse_events(streamed.text) == [{"error": P + message, "error_type": "validation"}]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"best_of": 2, "do_sample": True}, "`best_of` != 1 is not supported when streaming tokens"),
        ({"best_of": 0}, "`best_of` != 1 is not supported when streaming tokens"),
        ({"best_of": 5, "decoder_input_details": True}, "`best_of` != 1 is not supported when streaming tokens"),
        ({"decoder_input_details": True}, "`decoder_input_details` == true is not supported when streaming tokens"),
        (
            {"decoder_input_details": True, "temperature": 0},
            "`decoder_input_details` == true is not supported when streaming tokens",
        ),
    ],
)
async def test_stream_route_checks(params: dict, message: str) -> None:
    async with sim() as client:
        r = await client.post("/generate_stream", json=body(**params))
    assert r.status_code == 200
    assert sse_events(r.text) == [{"error": P + message, "error_type": "validation"}]


async def test_stream_checks_come_before_the_semaphore() -> None:
    async with sim(max_concurrent_requests=1) as client:
        sim_state(client).router.in_use = 1  # the only permit is taken
        refused = await client.post("/generate_stream", json=body(best_of=2, do_sample=True))
        overloaded = await client.post("/generate_stream", json=body(temperature=0))
        generate = await client.post("/generate", json=body(temperature=0))
    assert sse_events(refused.text)[0]["error"] == P + "`best_of` != 1 is not supported when streaming tokens"
    assert sse_events(overloaded.text) == [{"error": "Model is overloaded", "error_type": "overloaded"}]
    # /generate: the semaphore comes before validation too
    assert generate.status_code == 429
    assert generate.json() == {"error": "Model is overloaded", "error_type": "overloaded"}


async def test_best_of_zero_passes_on_generate() -> None:
    async with sim() as client:
        r = await client.post("/generate", json=body(best_of=0, max_new_tokens=3, details=True))
    assert r.status_code == 200
    assert "best_of_sequences" not in r.json()["details"]


async def test_budget_is_checked_on_a_1024_token_chunk() -> None:
    # v3.1.1+: a large max_new_tokens passes when input + 1024 fits, and the request may generate past it
    async with sim(max_input_tokens=1500, max_total_tokens=2000) as client:
        ok = await client.post("/generate", json=body("hi", max_new_tokens=10000))
        refused = await client.post("/generate", json=body(" ".join(["w"] * 1000), max_new_tokens=10000))
    assert ok.status_code == 200
    assert refused.json()["error"] == (
        P + "`inputs` tokens + `max_new_tokens` must be <= 2000. Given: 1000 `inputs` tokens and 1024 `max_new_tokens`"
    )


async def test_truncate_applies_before_the_length_checks() -> None:
    async with sim(**SMALL) as client:
        r = await client.post("/generate", json=body(TWELVE, truncate=5, max_new_tokens=2, details=True))
    assert r.status_code == 200
    assert r.headers["x-prompt-tokens"] == "5"


@pytest.mark.parametrize(
    ("grammar", "start"),
    [
        ({"type": "json", "value": "{not json"}, "grammar is not valid: "),
        (
            {"type": "json", "value": {"properties": {"a": {"type": "integer", "minimum": 5, "maximum": 1}}}},
            "cannot compile regex from schema: ",
        ),
        ({"type": "json_schema", "value": {"name": "x"}}, "grammar is not valid: missing field `schema`"),
        ({"type": "regex", "value": "(a)\\1"}, "grammar is not valid: "),
        ({"type": "regex", "value": "(?<=a)b"}, "grammar is not valid: "),
        ({"type": "regex", "value": "[unclosed"}, "grammar is not valid: "),
    ],
)
async def test_grammar_refusals(grammar: dict, start: str) -> None:
    async with sim() as client:
        r = await client.post("/generate", json=body(grammar=grammar))
    assert r.status_code == 422
    assert r.json()["error_type"] == "validation"
    assert r.json()["error"].startswith(P + start)
