"""Client-side validation: TGI's rules, in the router's order, with its exact messages, before anything is sent."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from tgbatch.backends.tgi.rules import check_wire
from tgbatch.client import AsyncClient, Client, Limits, Parameters, ValidationError

P = "Input validation error: "
D = "Failed to deserialize the JSON body into the target type: "
SERVER = Limits(max_best_of=2, max_stop_sequences=4, max_top_n_tokens=5, max_input_tokens=1000, max_total_tokens=2000)

# (case id, generate kwargs, stream, limits, exact message)
CASES: list[tuple[str, dict[str, Any], bool, Limits | None, str]] = [
    ("best_of_sampling", {"best_of": 2}, False, None, P + "you must use sampling when `best_of` is > 1"),
    ("temperature_zero", {"temperature": 0.0}, False, None, P + "`temperature` must be strictly positive"),
    ("temperature_negative", {"temperature": -1}, False, None, P + "`temperature` must be strictly positive"),
    (
        "repetition_penalty",
        {"repetition_penalty": 0},
        False,
        None,
        P + "`repetition_penalty` must be strictly positive",
    ),
    ("frequency_low", {"frequency_penalty": -2.5}, False, None, P + "`frequency_penalty` must be >= -2.0 and <= 2.0"),
    ("frequency_high", {"frequency_penalty": 2.01}, False, None, P + "`frequency_penalty` must be >= -2.0 and <= 2.0"),
    ("top_p_one", {"top_p": 1.0}, False, None, P + "`top_p` must be > 0.0 and < 1.0"),
    ("top_p_zero", {"top_p": 0.0}, False, None, P + "`top_p` must be > 0.0 and < 1.0"),
    ("typical_p_one", {"typical_p": 1.0}, False, None, P + "`typical_p` must be > 0.0 and < 1.0"),
    ("top_k_zero", {"top_k": 0}, False, None, P + "`top_k` must be strictly positive"),
    ("top_k_negative", {"top_k": -3}, False, None, P + "`top_k` must be strictly positive"),
    ("max_new_tokens_zero", {"max_new_tokens": 0}, False, None, P + "`max_new_tokens` must be strictly positive"),
    (
        "stop_count",
        {"stop": ["a", "b", "c", "d", "e"]},
        False,
        SERVER,
        P + "`stop` supports up to 4 stop sequences. Given: 5",
    ),
    (
        "best_of_seed",
        {"best_of": 2, "do_sample": True, "seed": 1},
        False,
        None,
        P + "`seed` must not be set when `best_of` > 1",
    ),
    ("top_n_tokens", {"top_n_tokens": 6}, False, SERVER, P + "`top_n_tokens` must be >= 0 and <= 5. Given: 6"),
    ("best_of_max", {"best_of": 3, "do_sample": True}, False, SERVER, P + "`best_of` must be > 0 and <= 2. Given: 3"),
    (
        "best_of_disabled",
        {"best_of": 2, "do_sample": True},
        False,
        Limits(max_best_of=1),
        P + "`best_of` != 1 is not allowed for this endpoint",
    ),
    (
        "truncate_zero",
        {"truncate": 0},
        False,
        None,
        P + "`truncate` must be strictly positive and less than the server's max_input_tokens. Given: 0",
    ),
    (
        "truncate_max",
        {"truncate": 1001},
        False,
        SERVER,
        P + "`truncate` must be strictly positive and less than 1000. Given: 1001",
    ),
    (
        "stream_best_of",
        {"best_of": 2, "do_sample": True},
        True,
        None,
        P + "`best_of` != 1 is not supported when streaming tokens",
    ),
    ("stream_best_of_zero", {"best_of": 0}, True, None, P + "`best_of` != 1 is not supported when streaming tokens"),
    (
        "stream_prefill",
        {"decoder_input_details": True},
        True,
        None,
        P + "`decoder_input_details` == true is not supported when streaming tokens",
    ),
    (
        "grammar_no_properties",
        {"grammar": {"type": "json", "value": {"type": "object"}}},
        False,
        None,
        P + "grammar is not valid: Grammar must have a 'properties' field",
    ),
    (
        "grammar_bad_json",
        {"grammar": {"type": "json", "value": "{oops"}},
        False,
        None,
        P + "grammar is not valid: Expecting property name enclosed in double quotes at line 1 column 2",
    ),
    ("grammar_not_object", {"grammar": {"type": "json", "value": [1]}}, False, None, P + "grammar is not supported"),
    ("seed_negative", {"seed": -1}, False, None, D + "parameters.seed: invalid value: integer `-1`, expected u64"),
    (
        "seed_too_big",
        {"seed": 2**64},
        False,
        None,
        D + "parameters.seed: invalid value: integer `18446744073709551616`, expected u64",
    ),
    (
        "max_new_tokens_negative",
        {"max_new_tokens": -5},
        False,
        None,
        D + "parameters.max_new_tokens: invalid value: integer `-5`, expected u32",
    ),
    (
        "top_n_negative",
        {"top_n_tokens": -1},
        False,
        None,
        D + "parameters.top_n_tokens: invalid value: integer `-1`, expected u32",
    ),
    (
        "truncate_negative",
        {"truncate": -1},
        False,
        None,
        D + "parameters.truncate: invalid value: integer `-1`, expected usize",
    ),
]

EMPTY_INPUT = P + "`inputs` cannot be empty"


def _refuse(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"nothing should be sent, but {request.url} was requested")


def _sync_error(prompt: str, kwargs: dict[str, Any], stream: bool, limits: Limits | None) -> ValidationError:
    client = Client("http://tgi", http_client=httpx.Client(transport=httpx.MockTransport(_refuse)), limits=limits)
    with pytest.raises(ValidationError) as info:
        if stream:
            client.generate_stream(prompt, **kwargs)
        else:
            client.generate(prompt, **kwargs)
    return info.value


def _async_error(prompt: str, kwargs: dict[str, Any], stream: bool, limits: Limits | None) -> ValidationError:
    async def main() -> None:
        http = httpx.AsyncClient(transport=httpx.MockTransport(_refuse))
        client = AsyncClient("http://tgi", http_client=http, limits=limits)
        if stream:
            client.generate_stream(prompt, **kwargs)  # raises on the call, before iteration
        else:
            await client.generate(prompt, **kwargs)

    with pytest.raises(ValidationError) as info:
        anyio.run(main)
    return info.value


@pytest.mark.parametrize("raiser", [_sync_error, _async_error], ids=["sync", "async"])
@pytest.mark.parametrize(("kwargs", "stream", "limits", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule_raises_exact_message_unsent(raiser, kwargs, stream, limits, message) -> None:
    error = raiser("Why is the sky blue?", kwargs, stream, limits)
    assert str(error) == message
    assert error.status_code == 422
    assert not error.retryable
    if message.startswith(P):
        assert error.error_type == "validation"


@pytest.mark.parametrize("raiser", [_sync_error, _async_error], ids=["sync", "async"])
def test_empty_input(raiser) -> None:
    assert str(raiser("", {}, False, None)) == EMPTY_INPUT


def test_checks_run_in_router_order() -> None:
    # temperature (step 2) is reported before top_k (step 7) and before the empty input (step 12)
    error = _sync_error("", {"temperature": 0, "top_k": 0}, False, None)
    assert str(error) == P + "`temperature` must be strictly positive"
    # the stream route's own check comes first
    error = _sync_error("x", {"decoder_input_details": True, "temperature": 0}, True, None)
    assert "decoder_input_details" in str(error)


def test_frequency_penalty_accepts_the_servers_whole_range() -> None:
    # the text-generation client wrongly refuses anything <= 0
    for value in (-2.0, -0.5, 0.0, 2.0):
        Parameters(frequency_penalty=value)  # no error at construction
        _ok(frequency_penalty=value)


def _ok(**kwargs: Any) -> dict[str, Any]:
    sent: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        import json

        sent.update(json.loads(request.content))
        return httpx.Response(200, json={"generated_text": "ok"})

    Client("http://tgi", http_client=httpx.Client(transport=httpx.MockTransport(handler))).generate("x", **kwargs)
    return sent


def test_best_of_zero_is_accepted_on_generate_like_the_router() -> None:
    assert _ok(best_of=0)["parameters"]["best_of"] == 0


def test_limits_unknown_leave_limit_checks_to_the_server() -> None:
    sent = _ok(stop=["a", "b", "c", "d", "e", "f"], top_n_tokens=9)
    assert sent["parameters"]["stop"] == ["a", "b", "c", "d", "e", "f"]


def test_sends_stop_never_stop_sequences_and_always_parameters() -> None:
    sent = _ok(stop_sequences=["\n\n"])
    assert sent["parameters"]["stop"] == ["\n\n"]
    assert "stop_sequences" not in sent["parameters"]
    assert "parameters" in _ok()


def test_unknown_and_mistyped_parameters_are_named() -> None:
    error = _sync_error("x", {"stop_sequence": ["a"]}, False, None)
    assert "Unknown parameter `stop_sequence`" in str(error)
    error = _sync_error("x", {"max_new_tokens": "ten"}, False, None)
    assert "`max_new_tokens`" in str(error) and "'ten'" in str(error)
    error = _sync_error("x", {"stop": ["a"], "stop_sequences": ["b"]}, False, None)
    assert "not both" in str(error)


def test_validate_false_sends_anyway() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(
            422, json={"error": P + "`temperature` must be strictly positive", "error_type": "validation"}
        )

    client = Client("http://tgi", http_client=httpx.Client(transport=httpx.MockTransport(handler)), validate=False)
    with pytest.raises(ValidationError, match="temperature"):
        client.generate("x", temperature=0.0)
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, D + "missing field `inputs`"),
        ({"inputs": 3}, D + "inputs: invalid type: integer `3`, expected a string"),
        (
            {"inputs": "x", "parameters": {"details": "yes"}},
            D + 'parameters.details: invalid type: string "yes", expected a boolean',
        ),
        (
            {"inputs": "x", "parameters": {"stop": "a"}},
            D + 'parameters.stop: invalid type: string "a", expected a sequence',
        ),
        (
            {"inputs": "x", "parameters": {"temperature": "hot"}},
            D + 'parameters.temperature: invalid type: string "hot", expected f32',
        ),
        (
            {"inputs": "x", "parameters": {"top_k": 1.5}},
            D + "parameters.top_k: invalid type: floating point `1.5`, expected i32",
        ),
        (
            {"inputs": "x", "parameters": {"grammar": {"type": "xml", "value": ""}}},
            D
            + "parameters.grammar: unknown variant `xml`, expected one of `json`, `json_object`, `regex`, `json_schema`",
        ),
    ],
)
def test_wire_checks_answer_as_serde(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        check_wire(body)
    assert str(info.value) == message
    assert info.value.error_type is None  # axum sends these as text/plain, with no error_type


def test_max_total_tokens_uses_the_v3_chunk_rule() -> None:
    from tgbatch.backends.tgi.rules import check_inputs

    limits = Limits(max_input_tokens=1000, max_total_tokens=1512)
    # 10,000 new tokens with a short prompt is fine since v3.1.1 (checked against a 1024-token chunk)
    assert check_inputs("x", Parameters(max_new_tokens=10000), limits, input_tokens=10) == 10
    with pytest.raises(ValidationError) as info:
        check_inputs("x", Parameters(max_new_tokens=10000), limits, input_tokens=600)
    assert str(info.value) == P + (
        "`inputs` tokens + `max_new_tokens` must be <= 1512. Given: 600 `inputs` tokens and 1024 `max_new_tokens`"
    )
    with pytest.raises(ValidationError) as info:
        check_inputs("x", Parameters(max_new_tokens=1), limits, input_tokens=1200)
    assert str(info.value) == P + "`inputs` must have less than 1000 tokens. Given: 1200"
    # truncation keeps the last N tokens, so the length checked is the truncated one
    assert check_inputs("x", Parameters(max_new_tokens=1, truncate=100), limits, input_tokens=5000) == 100
