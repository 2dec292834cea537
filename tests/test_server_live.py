"""``tgbatch serve`` over real HTTP: the peer clients (``text-generation``, ``huggingface_hub``) against it,
determinism across two server processes, drops over uvicorn, and the CLI's flag checking."""

from __future__ import annotations

import json
import socket
import subprocess
import warnings
from collections.abc import Iterator

import httpx
import pytest
import text_generation
import text_generation.errors
from huggingface_hub import InferenceClient
from huggingface_hub import errors as hf_errors
from text_generation.types import Grammar, GrammarType

from ._server_util import ROOT, LiveServer, body, cli_command, live_servers, sse_events

# every test here starts processes (tgbatch serve, tgbatch run): `pytest -m 'not slow'` skips them
pytestmark = pytest.mark.slow

PROMPT = "Explain continuous batching in one paragraph"
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0, "maximum": 120}},
    "required": ["name", "age"],
}
TOP_N_MESSAGE = "Input validation error: `top_n_tokens` must be >= 0 and <= 5. Given: 6"


@pytest.fixture(scope="module")
def servers() -> Iterator[list[LiveServer]]:
    with live_servers((), (), ("--drop-rate", "1"), ("--api-key", "k3y")) as started:
        yield started


@pytest.fixture(scope="module")
def url(servers: list[LiveServer]) -> str:
    return servers[0].url


# -- text-generation (the seed's own Python client) -------------------------------------------------------


def test_text_generation_generate_with_details(url: str) -> None:
    client = text_generation.Client(url, timeout=30)
    r = client.generate(PROMPT, max_new_tokens=8, decoder_input_details=True, top_n_tokens=2)
    assert r.details.generated_tokens == 8
    assert r.details.finish_reason.value == "length"
    assert r.details.seed is None
    assert r.details.prefill[0].logprob is None and len(r.details.prefill) == 6
    assert len(r.details.top_tokens) == 8 and len(r.details.top_tokens[0]) == 2
    assert r.generated_text == "".join(t.text for t in r.details.tokens)


def test_text_generation_best_of(url: str) -> None:
    client = text_generation.Client(url, timeout=30)
    r = client.generate(PROMPT, max_new_tokens=6, best_of=2, do_sample=True)
    (other,) = r.details.best_of_sequences
    assert r.details.seed != other.seed
    assert max(r.details.seed, other.seed) >= 0


def test_text_generation_stream(url: str) -> None:
    client = text_generation.Client(url, timeout=30)
    responses = list(client.generate_stream(PROMPT, max_new_tokens=5, top_n_tokens=1))
    assert len(responses) == 5
    assert responses[-1].details.generated_tokens == 5
    assert responses[-1].generated_text == "".join(r.token.text for r in responses)
    assert all(len(r.top_tokens) == 1 for r in responses)


def test_text_generation_grammar(url: str) -> None:
    client = text_generation.Client(url, timeout=30)
    r = client.generate(PROMPT, max_new_tokens=100, grammar=Grammar(type=GrammarType.Json, value=SCHEMA))
    value = json.loads(r.generated_text)
    assert set(value) == {"name", "age"} and isinstance(value["age"], int)
    r = client.generate(PROMPT, max_new_tokens=20, grammar=Grammar(type=GrammarType.Regex, value=r"\d{3}-\d{2}"))
    assert len(r.generated_text) == 6 and r.generated_text[3] == "-"


def test_text_generation_validation_errors(url: str) -> None:
    client = text_generation.Client(url, timeout=30)
    with pytest.raises(text_generation.errors.ValidationError) as info:
        client.generate(PROMPT, top_n_tokens=6)
    assert str(info.value) == TOP_N_MESSAGE
    with pytest.raises(text_generation.errors.ValidationError) as info:
        list(client.generate_stream(PROMPT, stop_sequences=["a", "b", "c", "d", "e"]))
    assert str(info.value) == "Input validation error: `stop` supports up to 4 stop sequences. Given: 5"


@pytest.mark.anyio
async def test_text_generation_async_client(url: str) -> None:
    client = text_generation.AsyncClient(url, timeout=30)
    r = await client.generate(PROMPT, max_new_tokens=4, do_sample=True, seed=2**64 - 1)
    assert r.details.seed == 2**64 - 1
    tokens = [t async for t in client.generate_stream(PROMPT, max_new_tokens=4)]
    assert len(tokens) == 4
    with pytest.raises(text_generation.errors.ValidationError) as info:
        await client.generate(PROMPT, top_n_tokens=6)
    assert str(info.value) == TOP_N_MESSAGE


# -- huggingface_hub -----------------------------------------------------------------------------------------


@pytest.fixture
def hf(url: str) -> InferenceClient:
    return InferenceClient(model=url, timeout=30)


def test_hf_text_generation(hf: InferenceClient) -> None:
    text = hf.text_generation(PROMPT, max_new_tokens=5)
    assert isinstance(text, str) and text
    out = hf.text_generation(PROMPT, max_new_tokens=5, details=True, top_n_tokens=3, decoder_input_details=True)
    assert out.details.generated_tokens == 5 and out.details.finish_reason == "length"
    assert len(out.details.top_tokens) == 5 and len(out.details.prefill) == 6
    # huggingface_hub posts to the compat route and leaves return_full_text unset: as with TGI, the answer
    # repeats the prompt (pipeline tag text-generation)
    assert out.generated_text.startswith(PROMPT)
    assert out.generated_text == PROMPT + "".join(t.text for t in out.details.tokens)


def test_hf_best_of_and_grammar(hf: InferenceClient) -> None:
    out = hf.text_generation(PROMPT, max_new_tokens=5, details=True, best_of=2, do_sample=True)
    assert len(out.details.best_of_sequences) == 1
    assert out.details.seed != out.details.best_of_sequences[0].seed
    text = hf.text_generation(
        PROMPT, max_new_tokens=100, grammar={"type": "json", "value": SCHEMA}, return_full_text=False
    )
    assert set(json.loads(text)) == {"name", "age"}


def test_hf_stream(hf: InferenceClient) -> None:
    events = list(hf.text_generation(PROMPT, max_new_tokens=4, stream=True, details=True))
    assert [e.index for e in events] == [1, 2, 3, 4]
    assert events[-1].details.input_length == 6
    assert events[-1].generated_text == PROMPT + "".join(e.token.text for e in events)


def test_hf_validation_errors(hf: InferenceClient) -> None:
    with pytest.raises(hf_errors.ValidationError) as info:
        hf.text_generation(PROMPT, top_n_tokens=6)
    assert str(info.value) == TOP_N_MESSAGE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(hf_errors.ValidationError) as info:
            list(hf.text_generation(PROMPT, stream=True, details=True, temperature=0.0001, top_p=1.0))
    assert str(info.value) == "Input validation error: `top_p` must be > 0.0 and < 1.0"


# -- the server process -----------------------------------------------------------------------------------


# greedy or seeded: an unseeded sampled request (and best_of) draws a random seed, as on TGI
REQUESTS = [
    body(PROMPT, max_new_tokens=12, details=True, decoder_input_details=True, top_n_tokens=2),
    body(PROMPT, max_new_tokens=12, details=True, do_sample=True, seed=2**63 + 11),
    body(PROMPT, max_new_tokens=12, details=True, temperature=0.5, top_k=10, stop=["the"], seed=7),
    body(PROMPT, grammar={"type": "json", "value": SCHEMA}, do_sample=True, seed=3),
]


def test_deterministic_across_processes(servers: list[LiveServer]) -> None:
    a, b = servers[0].url, servers[1].url
    for request in REQUESTS:
        first = httpx.post(a + "/generate", json=request, timeout=30)
        second = httpx.post(b + "/generate", json=request, timeout=30)
        assert first.status_code == 200
        assert first.content == second.content
    stream_a = httpx.post(a + "/generate_stream", json=REQUESTS[1], timeout=30)
    stream_b = httpx.post(b + "/generate_stream", json=REQUESTS[1], timeout=30)
    assert stream_a.content == stream_b.content
    assert len(sse_events(stream_a.text)) == 12


def test_drop_closes_the_connection(servers: list[LiveServer]) -> None:
    url = servers[2].url
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(url + "/generate", json=body(max_new_tokens=3), timeout=30)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(url + "/generate_stream", json=body(max_new_tokens=30), timeout=30)
    # the server survives its own faults
    assert httpx.get(url + "/health", timeout=30).status_code == 200


def test_http_rejections_over_uvicorn(servers: list[LiveServer]) -> None:
    url = servers[3].url
    unauthorized = httpx.post(url + "/generate", json=body(), timeout=30)
    assert (unauthorized.status_code, unauthorized.content) == (401, b"")
    headers = {"authorization": "Bearer k3y"}
    plain = httpx.post(url + "/generate", content=b"{}", headers=headers, timeout=30)
    assert plain.status_code == 415
    assert plain.headers["content-type"] == "text/plain; charset=utf-8"
    ok = httpx.post(url + "/generate", json=body(max_new_tokens=2), headers=headers, timeout=30)
    assert ok.status_code == 200
    assert httpx.get(url + "/info", timeout=30).json()["model_id"] == "tgbatch/sim"


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--overload-rate", "2"], "--overload-rate"),
        (["--max-input-tokens", "9000"], "--max-total-tokens"),
        (["--decode-ms-per-token", "fast"], "--decode-ms-per-token"),
    ],
)
def test_bad_flags_exit_2(flags: list[str], named: str) -> None:
    proc = subprocess.run(cli_command(*flags), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert named in proc.stderr


def test_a_taken_port_is_an_error_before_serving_is_announced() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(cli_command("--port", str(port)), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "choose another --port" in result.stderr
    assert "simulated TGI" not in result.stderr and "Traceback" not in result.stderr
