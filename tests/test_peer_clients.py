"""The peer clients (``text-generation``, ``huggingface_hub`` before 1.0) against a live ``tgbatch serve``: what
a user of TGI's own clients sees. ``text-generation`` pins ``huggingface_hub<1``, so these clients are not in the
test extra (installing them would downgrade the user's ``datasets`` and ``huggingface_hub``): ``pip install -e
'.[peers]'`` in an environment of their own runs these checks; without it they are skipped, and say so."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator

import pytest

pytest.importorskip(
    "text_generation", reason="peer clients not installed: pip install -e '.[peers]' (in an environment of their own)"
)
import text_generation
import text_generation.errors
from huggingface_hub import InferenceClient
from huggingface_hub import errors as hf_errors
from text_generation.types import Grammar, GrammarType

from ._server_util import PROMPT, SCHEMA, live_servers

# every test here starts a tgbatch serve process: `pytest -m 'not slow'` skips them
pytestmark = pytest.mark.slow

TOP_N_MESSAGE = "Input validation error: `top_n_tokens` must be >= 0 and <= 5. Given: 6"


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with live_servers(()) as (server,):
        yield server.url


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
