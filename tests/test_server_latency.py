"""The latency model: prefill and decode cost, and throughput saturating at max_batch_size (ratios, not
absolute times, so the tests hold on a slow machine)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from ._server_util import body, sim, sim_state, sse_events

pytestmark = pytest.mark.anyio

B = 4
TOKENS = 10
DECODE_MS = 10.0


async def _throughput(client: httpx.AsyncClient, concurrent: int) -> float:
    async def one(i: int) -> None:
        r = await client.post("/generate", json=body(f"prompt {i}", max_new_tokens=TOKENS))
        assert r.status_code == 200

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(concurrent)))
    return concurrent / (time.perf_counter() - start)


async def test_throughput_saturates_at_max_batch_size() -> None:
    config = {"decode_ms_per_token": DECODE_MS, "max_batch_size": B, "min_output_tokens": 50, "max_output_tokens": 50}
    async with sim(**config) as client:
        half = await _throughput(client, B // 2)
        full = await _throughput(client, B)
        double = await _throughput(client, 2 * B)
        quadruple = await _throughput(client, 4 * B)
    # below B, more concurrency means proportionally more throughput ...
    assert 1.5 <= full / half <= 2.5, (half, full)
    # ... beyond B it stays flat: the simulated GPU is saturated
    assert 0.75 <= double / full <= 1.3, (full, double)
    assert 0.75 <= quadruple / full <= 1.3, (full, quadruple)


async def test_decode_and_prefill_cost() -> None:
    async with sim(decode_ms_per_token=10, min_output_tokens=50, max_output_tokens=50) as client:
        start = time.perf_counter()
        await client.post("/generate", json=body(max_new_tokens=10))
        decode_only = time.perf_counter() - start
    async with sim(prefill_ms_per_token=2, min_output_tokens=50, max_output_tokens=50) as client:
        start = time.perf_counter()
        await client.post("/generate", json=body(" ".join(["w"] * 50), max_new_tokens=10))
        prefill_only = time.perf_counter() - start
    assert 0.09 <= decode_only < 0.5
    assert 0.09 <= prefill_only < 0.5


async def test_instant_by_default() -> None:
    async with sim() as client:
        start = time.perf_counter()
        for _ in range(50):
            await client.post("/generate", json=body(max_new_tokens=20))
        assert time.perf_counter() - start < 2.0


async def test_stream_is_paced_and_counts_in_the_batch() -> None:
    async with sim(decode_ms_per_token=5, max_batch_size=1, min_output_tokens=50, max_output_tokens=50) as client:
        state = sim_state(client)
        task = asyncio.create_task(client.post("/generate_stream", json=body(max_new_tokens=10)))
        for _ in range(10_000):
            if state.latency.active == 1:
                break
            await asyncio.sleep(0)
        assert state.latency.active == 1
        metrics = (await client.get("/metrics")).text
        start = time.perf_counter()
        r = await task
    assert "tgi_batch_current_size 1" in metrics.splitlines()
    assert len(sse_events(r.text)) == 10
    assert time.perf_counter() - start > 0.02
    assert state.latency.active == 0
