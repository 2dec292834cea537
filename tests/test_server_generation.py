"""What the simulated model returns: response shapes (checked against ``tgbatch.types``), details, prefill,
top_n_tokens, return_full_text, truncate, stop sequences, EOS, seeds, best_of, grammars and determinism."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from tgbatch.backends.tgi.models import Response
from tgbatch.sim.vocab import EOS_ID, tokenize

from ._server_util import body, sim

pytestmark = pytest.mark.anyio

U64 = 2**64 - 1
PROMPT = "Write a short poem about the sea, please."


def _wire_equal(data: dict) -> None:
    """The server's JSON is exactly what ``types.Response.to_wire()`` gives back (keys, order, omissions)."""
    parsed = Response.model_validate(data)
    assert parsed.to_wire() == data
    assert list(parsed.to_wire()) == list(data)
    if "details" in data:
        assert list(parsed.to_wire()["details"]) == list(data["details"])


async def test_plain_response_has_no_details() -> None:
    async with sim() as client:
        r = await client.post("/generate", json=body(PROMPT, max_new_tokens=5))
    assert list(r.json()) == ["generated_text"]
    _wire_equal(r.json())


async def test_details_shape() -> None:
    async with sim() as client:
        r = await client.post("/generate", json=body(PROMPT, max_new_tokens=6, details=True))
    data = r.json()
    _wire_equal(data)
    d = data["details"]
    assert list(d) == ["finish_reason", "generated_tokens", "seed", "prefill", "tokens"]
    assert d["finish_reason"] == "length" and d["generated_tokens"] == 6 == len(d["tokens"])
    assert d["seed"] is None and d["prefill"] == []
    assert "".join(t["text"] for t in d["tokens"] if not t["special"]) == data["generated_text"]
    for t in d["tokens"]:
        assert list(t) == ["id", "text", "logprob", "special"]
        assert isinstance(t["id"], int) and t["logprob"] <= 0


async def test_decoder_input_details_alone_turns_details_on() -> None:
    async with sim() as client:
        r = await client.post("/generate", json=body(PROMPT, max_new_tokens=2, decoder_input_details=True))
    data = r.json()
    _wire_equal(data)
    prefill = data["details"]["prefill"]
    assert "".join(t["text"] for t in prefill) == PROMPT
    assert len(prefill) == len(tokenize(PROMPT))
    assert prefill[0]["logprob"] is None
    assert all(isinstance(t["logprob"], float) and t["logprob"] <= 0 for t in prefill[1:])
    assert all(list(t) == ["id", "text", "logprob"] for t in prefill)


async def test_truncate_keeps_the_last_tokens_and_full_text_is_untruncated() -> None:
    async with sim() as client:
        r = await client.post(
            "/generate",
            json=body(PROMPT, max_new_tokens=3, truncate=3, decoder_input_details=True, return_full_text=True),
        )
        plain = await client.post("/generate", json=body(PROMPT, max_new_tokens=3, truncate=3))
        untruncated = await client.post("/generate", json=body(PROMPT, max_new_tokens=3))
    data = r.json()
    assert [t["text"] for t in data["details"]["prefill"]] == tokenize(PROMPT)[-3:]
    assert data["generated_text"] == PROMPT + plain.json()["generated_text"]
    # the model only saw the last 3 tokens, so it answers differently
    assert plain.json() != untruncated.json()


async def test_top_n_tokens() -> None:
    async with sim() as client:
        r = await client.post("/generate", json=body(PROMPT, max_new_tokens=5, details=True, top_n_tokens=3))
        without = await client.post("/generate", json=body(PROMPT, max_new_tokens=5, details=True))
    data = r.json()
    _wire_equal(data)
    top = data["details"]["top_tokens"]
    assert len(top) == 5
    for step, chosen in zip(top, data["details"]["tokens"], strict=True):
        assert len(step) == 3
        logprobs = [t["logprob"] for t in step]
        assert logprobs == sorted(logprobs, reverse=True)
        assert len({t["id"] for t in step}) == 3
        assert step[0] == chosen  # greedy picks the most likely token
    # top_n_tokens does not change the generation
    assert data["generated_text"] == without.json()["generated_text"]
    assert "top_tokens" not in without.json()["details"]


async def test_stop_sequence_is_included_and_cuts_the_same_stream() -> None:
    async with sim(min_output_tokens=60, max_output_tokens=60) as client:
        full = (await client.post("/generate", json=body(PROMPT, max_new_tokens=40, details=True))).json()
        words = [t["text"] for t in full["details"]["tokens"]]
        stop = words[5].strip()
        first = next(i for i, w in enumerate(words) if w.endswith(stop))
        r = (await client.post("/generate", json=body(PROMPT, max_new_tokens=40, details=True, stop=[stop]))).json()
    assert r["details"]["finish_reason"] == "stop_sequence"
    assert r["generated_text"].endswith(stop)
    assert r["details"]["tokens"] == full["details"]["tokens"][: first + 1]
    assert full["generated_text"].startswith(r["generated_text"])


async def test_max_new_tokens_cuts_the_same_stream() -> None:
    async with sim() as client:
        long = (await client.post("/generate", json=body(PROMPT, max_new_tokens=12, details=True))).json()
        short = (await client.post("/generate", json=body(PROMPT, max_new_tokens=4, details=True))).json()
    assert short["details"]["tokens"] == long["details"]["tokens"][:4]


async def test_eos_is_a_special_token_not_in_the_text() -> None:
    async with sim(min_output_tokens=3, max_output_tokens=3) as client:
        r = (await client.post("/generate", json=body(PROMPT, max_new_tokens=50, details=True))).json()
        length = (await client.post("/generate", json=body(PROMPT, max_new_tokens=3, details=True))).json()
        unbounded = (await client.post("/generate", json=body(PROMPT, details=True))).json()
    d = r["details"]
    assert d["finish_reason"] == "eos_token"
    assert d["generated_tokens"] == 4
    eos = d["tokens"][-1]
    assert eos["special"] is True and eos["id"] == EOS_ID and eos["text"] == "</s>"
    assert "</s>" not in r["generated_text"]
    assert r["generated_text"] == "".join(t["text"] for t in d["tokens"][:-1])
    # max_new_tokens is checked before EOS
    assert length["details"]["finish_reason"] == "length"
    # without max_new_tokens the budget is max_total_tokens - input: the model stops on its own
    assert unbounded == r


async def test_seed_is_null_when_greedy_even_if_given() -> None:
    async with sim() as client:
        greedy = (await client.post("/generate", json=body(PROMPT, max_new_tokens=3, details=True, seed=42))).json()
        t1 = await client.post("/generate", json=body(PROMPT, max_new_tokens=3, details=True, temperature=1.0))
        unseeded = (await client.post("/generate", json=body(PROMPT, max_new_tokens=3, details=True))).json()
    assert greedy["details"]["seed"] is None
    assert t1.json()["details"]["seed"] is None  # temperature 1.0 alone is not sampling for the shard
    assert greedy == unseeded  # greedy decoding ignores the seed


@pytest.mark.parametrize(
    "sampling", [{"do_sample": True}, {"temperature": 0.7}, {"top_k": 5}, {"top_p": 0.9}, {"typical_p": 0.5}]
)
async def test_sampling_without_seed_returns_a_u64_that_reproduces(sampling: dict) -> None:
    async with sim() as client:
        first = (await client.post("/generate", json=body(PROMPT, max_new_tokens=8, details=True, **sampling))).json()
        seed = first["details"]["seed"]
        assert isinstance(seed, int) and 0 <= seed <= U64
        again = await client.post("/generate", json=body(PROMPT, max_new_tokens=8, details=True, seed=seed, **sampling))
    assert again.json() == first


@pytest.mark.parametrize("seed", [0, 1, 2**63, 2**63 + 12345, U64])
async def test_large_seeds_round_trip(seed: int) -> None:
    async with sim() as client:
        r = await client.post("/generate", json=body(PROMPT, max_new_tokens=3, details=True, do_sample=True, seed=seed))
        raw = r.text
    assert r.json()["details"]["seed"] == seed
    assert f'"seed":{seed},' in raw  # an integer on the wire, never a float


async def test_seeds_change_sampled_output() -> None:
    async with sim() as client:
        texts = {
            (await client.post("/generate", json=body(PROMPT, max_new_tokens=10, do_sample=True, seed=s))).text
            for s in range(6)
        }
    assert len(texts) >= 5


async def test_drawn_seeds_span_the_u64_range() -> None:
    async with sim() as client:
        seeds = [
            (
                await client.post("/generate", json=body(f"prompt {i}", max_new_tokens=1, details=True, do_sample=True))
            ).json()["details"]["seed"]
            for i in range(64)
        ]
    assert len(set(seeds)) == 64
    assert any(s > 2**63 for s in seeds) and any(s < 2**63 for s in seeds)


async def test_best_of() -> None:
    async with sim() as client:
        r = await client.post(
            "/generate",
            json=body(
                PROMPT,
                max_new_tokens=8,
                details=True,
                best_of=2,
                do_sample=True,
                top_n_tokens=2,
                decoder_input_details=True,
                return_full_text=True,
            ),
        )
        data = r.json()
        _wire_equal(data)
        d = data["details"]
        assert list(d) == [
            "finish_reason",
            "generated_tokens",
            "seed",
            "prefill",
            "tokens",
            "best_of_sequences",
            "top_tokens",
        ]
        (other,) = d["best_of_sequences"]
        assert list(other) == [
            "generated_text",
            "finish_reason",
            "generated_tokens",
            "seed",
            "prefill",
            "tokens",
            "top_tokens",
        ]
        assert other["generated_text"].startswith(PROMPT) and data["generated_text"].startswith(PROMPT)
        assert other["prefill"] == d["prefill"] != []
        # each branch has its own u64 seed, and the winner has the higher mean logprob
        assert d["seed"] != other["seed"]
        assert all(isinstance(s, int) and 0 <= s <= U64 for s in (d["seed"], other["seed"]))

        def mean(tokens: list[dict]) -> float:
            return sum(t["logprob"] for t in tokens) / len(tokens)

        assert mean(d["tokens"]) >= mean(other["tokens"])
        # each branch is reproducible as a single request with its own seed
        for text, seed in ((data["generated_text"], d["seed"]), (other["generated_text"], other["seed"])):
            single = await client.post(
                "/generate", json=body(PROMPT, max_new_tokens=8, do_sample=True, seed=seed, return_full_text=True)
            )
            assert single.json()["generated_text"] == text


async def test_best_of_with_only_temperature_one_is_greedy() -> None:
    async with sim() as client:
        r = await client.post(
            "/generate", json=body(PROMPT, max_new_tokens=4, details=True, best_of=2, temperature=1.0)
        )
    d = r.json()["details"]
    assert d["seed"] is None and d["best_of_sequences"][0]["seed"] is None
    assert d["tokens"] == d["best_of_sequences"][0]["tokens"]


async def test_best_of_without_details_is_just_text() -> None:
    async with sim() as client:
        r = await client.post("/generate", json=body(PROMPT, max_new_tokens=4, best_of=2, do_sample=True))
    assert list(r.json()) == ["generated_text"]


async def test_no_parameters_means_do_sample() -> None:
    # TGI's default_parameters() turns do_sample on when the whole `parameters` key is absent
    async with sim() as client:
        r = await client.post("/generate", json={"inputs": PROMPT})
        sampled = await client.post("/", json={"inputs": PROMPT})
    assert r.status_code == 200 and sampled.status_code == 200


async def test_same_request_same_response() -> None:
    requests = [
        body(PROMPT, max_new_tokens=20, details=True, decoder_input_details=True, top_n_tokens=2),
        body(PROMPT, max_new_tokens=20, details=True, do_sample=True, temperature=0.8, seed=2**64 - 5),
    ]
    async with sim() as first, sim(overload_rate=0.0, stall_rate=0.0) as second:
        for request in requests:
            a = (await first.post("/generate", json=request)).json()
            b = (await first.post("/generate", json=request)).json()
            c = (await second.post("/generate", json=request)).json()
            assert a == b == c


async def test_unseeded_sampling_draws_a_random_seed_that_reproduces_the_answer() -> None:
    # TGI draws a random u64 when sampling without a seed: samples differ, and the returned seed replays one
    request = body(PROMPT, max_new_tokens=20, details=True, do_sample=True)
    async with sim() as first, sim() as second:
        a = (await first.post("/generate", json=request)).json()
        b = (await first.post("/generate", json=request)).json()
        assert a["details"]["seed"] != b["details"]["seed"]
        assert a["generated_text"] != b["generated_text"]
        replay = (await second.post("/generate", json={**request, "parameters": {**request["parameters"], "seed": a["details"]["seed"]}})).json()
        assert replay["generated_text"] == a["generated_text"]


async def test_unicode_prompts() -> None:
    prompt = "Привет, 世界! 🌊 naïve café"
    async with sim() as client:
        r = await client.post(
            "/generate", json=body(prompt, max_new_tokens=3, decoder_input_details=True, return_full_text=True)
        )
    data = r.json()
    assert "".join(t["text"] for t in data["details"]["prefill"]) == prompt
    assert data["generated_text"].startswith(prompt)
    assert "世界" in r.content.decode("utf-8")  # raw UTF-8 as serde_json writes it, not \\u escapes


SCHEMA = {
    "type": "object",
    "properties": {
        "firstName": {"type": "string"},
        "lastName": {"type": "string", "minLength": 3, "maxLength": 12},
        "hobby": {"enum": ["trees", "birds", "boats"]},
        "numCats": {"type": "integer", "minimum": 0, "maximum": 9},
        "score": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "active": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
        "address": {
            "type": "object",
            "properties": {"zip": {"type": "string", "pattern": "[0-9]{5}"}, "city": {"$ref": "#/$defs/city"}},
            "required": ["zip"],
        },
        "nickname": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
    "required": ["firstName", "lastName", "hobby", "numCats"],
    "$defs": {"city": {"type": "string", "enum": ["Paris", "Oslo"]}},
}


@pytest.mark.parametrize("form", ["object", "string", "json_schema"])
async def test_json_grammar_output_is_valid(form: str) -> None:
    if form == "object":
        grammar = {"type": "json", "value": SCHEMA}
    elif form == "string":
        grammar = {"type": "json", "value": json.dumps(SCHEMA)}
    else:
        grammar = {"type": "json_schema", "value": {"name": "person", "schema": SCHEMA}}
    async with sim() as client:
        for seed in range(8):
            r = await client.post(
                "/generate", json=body(PROMPT, grammar=grammar, do_sample=True, seed=seed, details=True)
            )
            data = r.json()
            value = json.loads(data["generated_text"])
            jsonschema.validate(value, SCHEMA)
            assert list(value)[:4] == ["firstName", "lastName", "hobby", "numCats"]
            assert data["details"]["finish_reason"] == "eos_token"


@pytest.mark.parametrize(
    "pattern",
    [
        r"((25[0-5]|2[0-4]\d|[01]?\d\d?)\.){3}(25[0-5]|2[0-4]\d|[01]?\d\d?)",
        r"(yes|no|maybe)",
        r"[A-Z][a-z]{2,8} [A-Z]\.",
        r"\d{3}-\d{4}",
        r"[^\s]+@example\.(com|org)",
        r"(ab)+c?",
        r"^\w+\s\w*$",
    ],
)
async def test_regex_grammar_output_matches(pattern: str) -> None:
    async with sim() as client:
        for seed in range(5):
            r = await client.post(
                "/generate",
                json=body(PROMPT, grammar={"type": "regex", "value": pattern}, do_sample=True, seed=seed),
            )
            assert re.fullmatch(pattern, r.json()["generated_text"]), r.json()


async def test_grammar_output_is_cut_by_max_new_tokens() -> None:
    async with sim() as client:
        r = await client.post(
            "/generate", json=body(PROMPT, grammar={"type": "json", "value": SCHEMA}, max_new_tokens=3, details=True)
        )
    data = r.json()
    assert data["details"]["finish_reason"] == "length"
    assert data["generated_text"].startswith('{"')


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "plain words here",
        "  leading and trailing  ",
        "tabs\tand\nnewlines\n\n",
        "a,b.c!?",
        "日本語のテキスト",
        "x" * 50,
    ],
)
def test_tokenizer_is_lossless(text: str) -> None:
    assert "".join(tokenize(text)) == text


def test_unknown_pieces_have_stable_ids() -> None:
    from tgbatch.sim.vocab import VOCAB_SIZE, piece_id

    # blake2b, not Python's salted hash(): the same in every process
    assert piece_id(" Zanzibar") == piece_id(" Zanzibar")
    assert piece_id(" Zanzibar") == 13649
    assert all(0 <= piece_id(p) < VOCAB_SIZE for p in ("é", " 🌊", "Hello"))
