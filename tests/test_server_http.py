"""HTTP-level behaviour: axum's text/plain rejections, the bearer check, GET routes, headers, /metrics."""

from __future__ import annotations

import json

import pytest

from tgbatch.backends.tgi.models import Info
from tgbatch.errors import SpecError
from tgbatch.sim import SimConfig, app_from_sim_url

from ._server_util import body, sim, sim_state

pytestmark = pytest.mark.anyio

DESER = "Failed to deserialize the JSON body into the target type: "
PARSE = "Failed to parse the request body as JSON: "


def _plain(r) -> str:  # type: ignore[no-untyped-def]
    assert r.headers["content-type"] == "text/plain; charset=utf-8", r.headers
    return r.text


@pytest.mark.parametrize("route", ["/generate", "/generate_stream", "/"])
@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded", "json"])
async def test_415_without_json_content_type(route: str, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    async with sim() as client:
        r = await client.post(route, content=json.dumps(body()).encode(), headers=headers)
    assert r.status_code == 415
    assert _plain(r) == "Expected request with `Content-Type: application/json`"


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON", "application/x+json"])
async def test_json_content_type_variants_accepted(content_type: str) -> None:
    async with sim() as client:
        r = await client.post("/generate", content=json.dumps(body()).encode(), headers={"content-type": content_type})
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", PARSE + "EOF while parsing a value at line 1 column 0"),
        (b"{", PARSE + "EOF while parsing an object at line 1 column 1"),
        (b'{"inputs": "x",}', PARSE + "key must be a string at line 1 column 16"),
        (b'{"inputs": "x"} x', PARSE + "trailing characters at line 1 column 17"),
        (b'{"inputs": NaN}', PARSE + "expected value"),
        (b'{"inputs": "\\ud800"}', PARSE + "lone leading surrogate in hex escape"),
        (b'{"inputs": "\xff"}', PARSE + "invalid unicode code point at byte 12"),
    ],
)
async def test_400_bad_json(raw: bytes, message: str) -> None:
    async with sim() as client:
        r = await client.post("/generate", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert _plain(r) == message


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"parameters": {}}, "missing field `inputs`"),
        ([1], "invalid type: sequence, expected struct GenerateRequest"),
        ({"inputs": 1}, "inputs: invalid type: integer `1`, expected a string"),
        ({"inputs": "x", "parameters": None}, "parameters: invalid type: null, expected struct GenerateParameters"),
        (
            {"inputs": "x", "parameters": {"max_new_tokens": -1}},
            "parameters.max_new_tokens: invalid value: integer `-1`, expected u32",
        ),
        ({"inputs": "x", "parameters": {"seed": -1}}, "parameters.seed: invalid value: integer `-1`, expected u64"),
        (
            {"inputs": "x", "parameters": {"details": "yes"}},
            'parameters.details: invalid type: string "yes", expected a boolean',
        ),
        (
            {"inputs": "x", "parameters": {"stop": "end"}},
            'parameters.stop: invalid type: string "end", expected a sequence',
        ),
        (
            {"inputs": "x", "parameters": {"grammar": {"type": "xml", "value": ""}}},
            "parameters.grammar: unknown variant `xml`, expected one of `json`, `json_object`, `regex`, `json_schema`",
        ),
    ],
)
async def test_422_serde_errors_are_plain_text(payload: object, message: str) -> None:
    async with sim() as client:
        r = await client.post("/generate", json=payload)
    assert r.status_code == 422
    assert _plain(r) == DESER + message


async def test_unknown_parameters_are_ignored() -> None:
    async with sim() as client:
        r = await client.post("/generate", json=body(stop_sequences=["x"], max_new_tokens=2, whatever=1))
        streamed_key = await client.post("/generate", json={**body(max_new_tokens=2), "stream": "yes"})
    assert r.status_code == 200
    # /generate has no `stream` field: serde ignores it (the compat route would refuse the type)
    assert streamed_key.status_code == 200


async def test_compat_stream_must_be_a_bool() -> None:
    async with sim() as client:
        r = await client.post("/", json={**body(), "stream": "yes"})
    assert r.status_code == 422
    assert _plain(r) == DESER + 'stream: invalid type: string "yes", expected a boolean'


@pytest.mark.parametrize("limit", [100, 2_000_000])
async def test_413_over_payload_limit(limit: int) -> None:
    async with sim(payload_limit=limit) as client:
        fits = await client.post("/generate", json=body("x " * ((limit - 80) // 2), max_new_tokens=1))
        too_big = await client.post("/generate", json=body("x" * limit))
    assert fits.status_code in (200, 422)  # may exceed the token limits, but not the payload limit
    assert too_big.status_code == 413
    assert _plain(too_big) == "Failed to buffer the request body: length limit exceeded"


async def test_413_with_chunked_body() -> None:
    async def chunks():  # no content-length: the limit is enforced while reading
        for _ in range(10):
            yield b" " * 50

    async with sim(payload_limit=100) as client:
        r = await client.post("/generate", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


@pytest.mark.parametrize("route", ["/generate", "/generate_stream", "/"])
async def test_401_on_post_routes(route: str) -> None:
    async with sim(api_key="s3cret") as client:
        missing = await client.post(route, json=body(max_new_tokens=1))
        wrong = await client.post(route, json=body(max_new_tokens=1), headers={"authorization": "Bearer nope"})
        # checked before the extractor: a bad content type still gets 401
        unauth_415 = await client.post(route, content=b"x")
        ok = await client.post(route, json=body(max_new_tokens=1), headers={"authorization": "bearer S3CRET"})
    for r in (missing, wrong, unauth_415):
        assert r.status_code == 401
        assert r.content == b""
    assert ok.status_code == 200


async def test_get_routes_are_not_protected() -> None:
    async with sim(api_key="s3cret") as client:
        for path in ("/info", "/health", "/metrics", "/"):
            assert (await client.get(path)).status_code == 200


async def test_info_fields() -> None:
    async with sim(model_id="org/m", max_best_of=3, max_input_tokens=100, max_total_tokens=200) as client:
        r = await client.get("/info")
    data = r.json()
    assert r.headers["content-type"] == "application/json"
    assert list(data) == [
        "model_id",
        "model_sha",
        "model_pipeline_tag",
        "max_concurrent_requests",
        "max_best_of",
        "max_stop_sequences",
        "max_input_tokens",
        "max_total_tokens",
        "validation_workers",
        "max_client_batch_size",
        "router",
        "version",
        "sha",
        "docker_label",
    ]
    assert data["model_id"] == "org/m"
    assert data["max_concurrent_requests"] == 128
    assert (data["max_best_of"], data["max_stop_sequences"]) == (3, 4)
    assert (data["max_input_tokens"], data["max_total_tokens"]) == (100, 200)
    assert (data["validation_workers"], data["max_client_batch_size"]) == (2, 4)
    assert data["router"] == "text-generation-router"
    assert data["model_pipeline_tag"] == "text-generation"
    assert Info.model_validate(data).max_input_tokens == 100


async def test_health_ping_and_unknown_routes() -> None:
    async with sim() as client:
        health = await client.get("/health")
        ping = await client.get("/ping")
        missing = await client.get("/nope")
        wrong_method = await client.get("/generate")
    assert (health.status_code, health.content) == (200, b"")
    assert ping.status_code == 200
    assert (missing.status_code, missing.content) == (404, b"")
    assert (wrong_method.status_code, wrong_method.content) == (405, b"")


async def test_generate_headers() -> None:
    async with sim() as client:
        r = await client.post("/generate", json=body("one two three", max_new_tokens=4, details=True))
        s = await client.post("/generate_stream", json=body("one two three", max_new_tokens=4))
    assert r.headers["x-compute-type"] == "gpu+optimized"
    assert r.headers["x-compute-characters"] == "13"
    assert r.headers["x-prompt-tokens"] == "3"
    assert r.headers["x-generated-tokens"] == str(r.json()["details"]["generated_tokens"])
    for name in (
        "x-compute-time",
        "x-total-time",
        "x-validation-time",
        "x-queue-time",
        "x-inference-time",
        "x-time-per-token",
    ):
        float(r.headers[name])
    assert s.headers["cache-control"] == "no-cache"
    assert s.headers["x-accel-buffering"] == "no"
    assert s.headers["x-compute-characters"] == "13"


async def test_compat_route_returns_a_list_with_full_text() -> None:
    async with sim() as client:
        compat = await client.post("/", json=body("Hello there", max_new_tokens=3))
        plain = await client.post("/generate", json=body("Hello there", max_new_tokens=3))
        explicit = await client.post("/", json=body("Hello there", max_new_tokens=3, return_full_text=False))
    assert isinstance(compat.json(), list) and len(compat.json()) == 1
    # the compat route prepends the prompt by default (pipeline tag text-generation); /generate does not
    assert compat.json()[0]["generated_text"] == "Hello there" + plain.json()["generated_text"]
    assert explicit.json() == [plain.json()]


async def test_compat_without_pipeline_tag_default() -> None:
    async with sim(model_pipeline_tag="text2text-generation") as client:
        compat = await client.post("/", json=body("Hello there", max_new_tokens=3))
        plain = await client.post("/generate", json=body("Hello there", max_new_tokens=3))
    assert compat.json() == [plain.json()]


async def test_metrics_counters() -> None:
    async with sim(max_concurrent_requests=1) as client:
        for _ in range(3):
            assert (await client.post("/generate", json=body(max_new_tokens=5))).status_code == 200
        await client.post("/generate_stream", json=body(max_new_tokens=5))
        await client.post("/generate", json=body(max_new_tokens=0))
        await client.post("/generate_stream", json=body(temperature=0))
        await client.post("/generate", content=b"{")  # refused by axum: never reaches TGI's counters
        sim_state(client).router.in_use = 1
        await client.post("/generate", json=body())
        sim_state(client).router.in_use = 0
        text = (await client.get("/metrics")).text
    lines = set(text.splitlines())
    assert "tgi_request_count 7" in lines
    assert "tgi_request_success 4" in lines
    assert 'tgi_request_failure{err="validation"} 2' in lines
    assert 'tgi_request_failure{err="overloaded"} 1' in lines
    assert "tgi_request_generated_tokens_count 4" in lines
    assert "tgi_request_generated_tokens_sum 20" in lines
    assert "# TYPE tgi_request_duration histogram" in lines


def test_sim_url_options() -> None:
    app = app_from_sim_url("sim://?decode_ms_per_token=2&overload_rate=0.1&api_key=k&model_id=a/b")
    config = app.state.sim.config
    assert config == SimConfig(decode_ms_per_token=2, overload_rate=0.1, api_key="k", model_id="a/b")
    assert app_from_sim_url("sim://").state.sim.config == SimConfig()


@pytest.mark.parametrize(
    ("url", "fragments"),
    [
        ("sim://?decode_ms=2", ["'decode_ms'", "'2'", "decode_ms_per_token", "overload_rate"]),
        ("sim://?overload_rate=2", ["'overload_rate'", "'2'", "less than or equal to 1"]),
        ("sim://?max_batch_size=many", ["'max_batch_size'", "'many'", "integer"]),
        ("sim://?max_input_tokens=9000", ["max_input_tokens", "max_total_tokens"]),
        ("sim://?error_rate=0.7&drop_rate=0.7", ["error_rate", "drop_rate", "<= 1"]),
        ("http://localhost", ["sim://"]),
    ],
)
def test_sim_url_errors(url: str, fragments: list[str]) -> None:
    with pytest.raises(SpecError) as info:
        app_from_sim_url(url)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_config_forbids_unknown_fields() -> None:
    with pytest.raises(ValueError):
        SimConfig(unknown=1)  # type: ignore[call-arg]
