"""The client against the simulator: in-process through sim://, and over real HTTP (the aiohttp transport)
against `tgbatch serve`."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest

from tgbatch import errors
from tgbatch.client import AsyncClient, Client, FinishReason, Limits

from ._server_util import LiveServer, live_servers

PROMPT = "Why is the sky blue?"


def test_sync_client_on_sim() -> None:
    with Client("sim://") as client:
        response = client.generate(PROMPT, max_new_tokens=5, decoder_input_details=True)
        assert response.details is not None and response.details.generated_tokens == 5
        assert len(response.details.prefill) > 0 and response.details.prefill[0].logprob is None
        events = list(client.generate_stream(PROMPT, max_new_tokens=5))
        assert [e.index for e in events] == [1, 2, 3, 4, 5]
        assert events[-1].generated_text == response.generated_text  # greedy: deterministic
        info = client.info()
        assert info.model_id == "tgbatch/sim" and client.health()


def test_async_client_on_sim_with_options() -> None:
    async def main() -> None:
        async with AsyncClient("sim://?max_best_of=4&max_stop_sequences=2") as client:
            info = await client.info()
            assert (info.max_best_of, info.max_stop_sequences) == (4, 2)
            response = await client.generate(PROMPT, max_new_tokens=4, best_of=3, do_sample=True)
            assert response.details is not None and len(response.details.best_of_sequences or []) == 2
            seed = 2**64 - 3
            sampled = await client.generate(PROMPT, max_new_tokens=4, do_sample=True, seed=seed)
            assert sampled.details is not None and sampled.details.seed == seed
            # the server's limits, learned from /info, make the client refuse what the server would
            strict = AsyncClient("sim://", limits=Limits.from_info(info))
            with pytest.raises(errors.ValidationError, match="up to 2 stop sequences"):
                await strict.generate(PROMPT, stop=["a", "b", "c"])
            await strict.aclose()

    anyio.run(main)


def test_bad_sim_option_is_a_spec_error() -> None:
    with pytest.raises(errors.SpecError, match="decode_ms"):
        AsyncClient("sim://?decode_ms=3")


def test_server_side_validation_matches_client_side() -> None:
    # the same rule, one source: sent unvalidated, the simulator answers with the message the client would raise
    with Client("sim://", validate=False) as client, pytest.raises(errors.ValidationError) as info:
        client.generate(PROMPT, top_p=1.0)
    assert str(info.value) == "Input validation error: `top_p` must be > 0.0 and < 1.0"
    assert info.value.error_type == "validation" and info.value.status_code == 422


@pytest.mark.parametrize(
    ("knobs", "error"),
    [
        ("overload_rate=1", errors.OverloadedError),
        ("rate_limit=0.000001", errors.RateLimitError),
        ("unavailable_rate=1", errors.ServiceUnavailableError),
        ("loading_s=60", errors.ModelLoadingError),
        ("drop_rate=1", errors.TransportError),
    ],
)
def test_sim_faults_surface_as_typed_retryable_errors(knobs: str, error: type[errors.TGIError]) -> None:
    async def main() -> None:
        async with AsyncClient(f"sim://?{knobs}") as client:
            await client.generate(PROMPT, max_new_tokens=2)
            await client.generate(PROMPT, max_new_tokens=2)  # a rate limit lets the first one through

    with pytest.raises(error) as info:
        anyio.run(main)
    assert info.value.retryable
    if error in (errors.RateLimitError, errors.ModelLoadingError):
        assert info.value.retry_after is not None and info.value.retry_after > 0


def test_sim_stall_times_out_on_the_clients_read_timeout() -> None:
    async def main() -> None:
        async with AsyncClient("sim://?stall_rate=1&stall_s=30", timeout=0.2) as client:
            await client.generate(PROMPT, max_new_tokens=2)

    with pytest.raises(errors.RequestTimeoutError):
        anyio.run(main)


@pytest.fixture(scope="module")
def live() -> Iterator[list[LiveServer]]:
    with live_servers((), ("--api-key", "s3cret"), ("--drop-rate", "1")) as servers:
        yield servers


@pytest.mark.slow
def test_live_generate_and_stream_over_aiohttp(live: list[LiveServer]) -> None:
    async def main() -> None:
        async with AsyncClient(live[0].url) as client:
            response = await client.generate(PROMPT, max_new_tokens=6, stop=["zzz"], top_n_tokens=2)
            assert response.details is not None and response.details.finish_reason in set(FinishReason)
            assert response.details.top_tokens is not None and len(response.details.top_tokens) == 6
            events = [e async for e in client.generate_stream(PROMPT, max_new_tokens=6)]
            prefill = await client.generate(PROMPT, max_new_tokens=1, decoder_input_details=True)
            assert events[-1].details is not None and prefill.details is not None
            assert events[-1].details.input_length == len(prefill.details.prefill)
            assert "".join(e.token.text for e in events if not e.token.special) == events[-1].generated_text
            # many at once through one pool
            async with anyio.create_task_group() as tg:
                for i in range(50):
                    tg.start_soon(client.generate, f"{PROMPT} {i}")

    anyio.run(main)


@pytest.mark.slow
def test_live_token_and_errors(live: list[LiveServer]) -> None:
    async def main() -> None:
        async with AsyncClient(live[1].url) as anonymous:
            with pytest.raises(errors.AuthenticationError) as info:
                await anonymous.generate(PROMPT)
            assert info.value.status_code == 401
        async with AsyncClient(live[1].url, token="s3cret") as client:
            assert (await client.generate(PROMPT, max_new_tokens=2)).details is not None
        async with AsyncClient(live[2].url) as dropping:
            with pytest.raises(errors.TransportError):
                await dropping.generate(PROMPT)
            with pytest.raises((errors.IncompleteStreamError, errors.TransportError)):
                async for _ in dropping.generate_stream(PROMPT, max_new_tokens=40):
                    pass

    anyio.run(main)

    with Client(live[1].url, token="s3cret") as client:
        assert client.generate(PROMPT, max_new_tokens=2).generated_text
