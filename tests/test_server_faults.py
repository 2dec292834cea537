"""Fault injection (each knob, its rate, its reproducibility) and the concurrency semaphore."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tgbatch.sim import ConnectionDropped, SimConfig
from tgbatch.sim.faults import FaultInjector

from ._server_util import body, sim, sim_state, sse_events

pytestmark = pytest.mark.anyio

N = 400
PROMPT = "Summarise the history of the printing press"


async def _statuses(client: httpx.AsyncClient, n: int = N, route: str = "/generate") -> list[object]:
    out: list[object] = []
    for i in range(n):
        try:
            r = await client.post(route, json=body(f"{PROMPT} {i}", max_new_tokens=3))
            out.append(r.status_code)
        except ConnectionDropped:
            out.append("dropped")
    return out


@pytest.mark.parametrize(
    ("knob", "outcome"),
    [("overload_rate", 429), ("unavailable_rate", 503), ("error_rate", "error"), ("drop_rate", "dropped")],
)
async def test_rates_and_reproducibility(knob: str, outcome: object) -> None:
    rate = 0.25
    async with sim(**{knob: rate, "fault_seed": 7}) as a, sim(**{knob: rate, "fault_seed": 7}) as b:
        first, second = await _statuses(a), await _statuses(b)
    async with sim(**{knob: rate, "fault_seed": 8}) as c:
        other = await _statuses(c)
    normalised = ["error" if s in (424, 500) else s for s in first]
    hits = normalised.count(outcome)
    assert abs(hits - rate * N) <= 0.06 * N, (knob, hits)  # ~4 standard deviations
    assert set(normalised) == {200, outcome}
    assert first == second  # same seed, same sequence of faults
    assert first != other


async def test_exclusive_faults_together_keep_their_rates() -> None:
    config = {"overload_rate": 0.1, "unavailable_rate": 0.1, "error_rate": 0.1, "drop_rate": 0.1, "fault_seed": 3}
    async with sim(**config) as client:
        statuses = await _statuses(client)
    for outcome in (429, 503, "dropped"):
        assert abs(statuses.count(outcome) - 0.1 * N) <= 0.05 * N
    assert abs(statuses.count(424) + statuses.count(500) - 0.1 * N) <= 0.05 * N
    assert abs(statuses.count(200) - 0.6 * N) <= 0.08 * N


async def test_overload_fault_body() -> None:
    async with sim(overload_rate=1.0) as client:
        r = await client.post("/generate", json=body())
        s = await client.post("/generate_stream", json=body())
    assert r.status_code == 429
    assert r.json() == {"error": "Model is overloaded", "error_type": "overloaded"}
    assert s.status_code == 200
    assert sse_events(s.text) == [{"error": "Model is overloaded", "error_type": "overloaded"}]


async def test_unavailable_is_a_proxy_page_not_json() -> None:
    seen = set()
    async with sim(unavailable_rate=1.0) as client:
        for _ in range(20):
            r = await client.post("/generate", json=body())
            assert r.status_code == 503
            content_type = r.headers["content-type"].split(";")[0]
            seen.add(content_type)
            assert not r.text.lstrip().startswith("{")
        s = await client.post("/generate_stream", json=body())
    assert seen == {"text/html", "text/plain"}
    assert s.status_code == 503  # the proxy answers before any SSE starts


async def test_error_fault_bodies() -> None:
    bodies = set()
    async with sim(error_rate=1.0) as client:
        for _ in range(20):
            r = await client.post("/generate", json=body(max_new_tokens=3))
            bodies.add((r.status_code, r.json()["error_type"], r.json()["error"]))
        invalid = await client.post("/generate", json=body(max_new_tokens=0))
    assert {(s, t) for s, t, _ in bodies} == {(424, "generation"), (500, "incomplete_generation")}
    for status, _, message in bodies:
        if status == 424:
            assert message.startswith("Request failed during generation: Server error: ")
        else:
            assert message == "Incomplete generation"
    assert invalid.status_code == 422  # a request that fails validation never reaches generation


async def test_drop_cuts_streams_midway() -> None:
    async with sim(drop_rate=1.0, min_output_tokens=50, max_output_tokens=50) as client:
        for _ in range(5):
            with pytest.raises(ConnectionDropped):
                await client.post("/generate_stream", json=body(max_new_tokens=40))


async def test_stall_rate_and_duration() -> None:
    async with sim(stall_rate=0.3, stall_s=0.0, fault_seed=11) as client:
        await _statuses(client, 200)
        stalls = sim_state(client).metrics.faults.get("stall", 0)
    assert abs(stalls - 60) <= 24
    async with sim(stall_rate=1.0, stall_s=0.2) as client:
        start = time.perf_counter()
        r = await client.post("/generate", json=body(max_new_tokens=2))
        elapsed = time.perf_counter() - start
    assert r.status_code == 200 and elapsed >= 0.19


async def test_faults_never_change_successful_responses() -> None:
    faulty = {
        "overload_rate": 0.15,
        "error_rate": 0.15,
        "drop_rate": 0.1,
        "unavailable_rate": 0.1,
        "stall_rate": 0.2,
        "stall_s": 0.0,
        "fault_seed": 5,
    }
    # sampled requests carry a seed: unseeded ones draw a random seed, so they differ even without faults
    requests = [
        body(f"{PROMPT} {i}", max_new_tokens=6, details=True, **({"do_sample": True, "seed": i} if i % 2 else {}))
        for i in range(60)
    ]
    ok = 0
    async with sim(**faulty) as client, sim() as clean:
        for request in requests:
            for route in ("/generate", "/generate_stream"):
                try:
                    r = await client.post(route, json=request)
                except ConnectionDropped:
                    continue
                if r.status_code != 200 or "error" in r.text[:12]:
                    continue
                events = sse_events(r.text) if route.endswith("stream") else None
                if events is not None and "error" in events[-1]:
                    continue
                expected = await clean.post(route, json=request)
                assert r.text == expected.text
                ok += 1
    assert ok > 40


async def test_rate_limit() -> None:
    async with sim(rate_limit=5) as client:
        statuses = []
        for _ in range(12):
            r = await client.post("/generate", json=body(max_new_tokens=1))
            statuses.append(r.status_code)
            if r.status_code == 429:
                limited = r
    assert statuses[:5] == [200] * 5
    assert statuses.count(429) >= 6
    assert "error_type" not in limited.json()
    assert limited.json()["error"].startswith("Rate limit reached.")
    assert int(limited.headers["retry-after"]) >= 1


def test_rate_limit_refills() -> None:
    injector = FaultInjector(SimConfig(rate_limit=2), started=100.0)
    assert injector.rate_limited(now=100.0) is None
    assert injector.rate_limited(now=100.0) is None
    wait = injector.rate_limited(now=100.0)
    assert wait == pytest.approx(0.5)
    assert injector.rate_limited(now=100.5) is None  # one token refilled after 1/rate seconds
    assert injector.rate_limited(now=100.5) is not None


async def test_loading_window() -> None:
    async with sim(loading_s=30.0, model_id="org/model") as client:
        r = await client.post("/generate", json=body())
        s = await client.post("/generate_stream", json=body())
        health = await client.get("/health")
    assert r.status_code == 503
    data = r.json()
    assert data["error"] == "Model org/model is currently loading"
    assert set(data) == {"error", "estimated_time"}
    assert 29.0 < data["estimated_time"] <= 30.0
    assert s.status_code == 503 and "estimated_time" in s.json()
    assert health.status_code == 200


def test_loading_remaining_counts_down() -> None:
    injector = FaultInjector(SimConfig(loading_s=10), started=50.0)
    assert injector.loading_remaining(now=50.0) == 10.0
    assert injector.loading_remaining(now=57.5) == 2.5
    assert injector.loading_remaining(now=61.0) == 0.0


async def test_wait_for_model_header_waits() -> None:
    async with sim(loading_s=0.3) as client:
        start = time.perf_counter()
        r = await client.post("/generate", json=body(max_new_tokens=1), headers={"x-wait-for-model": "true"})
        elapsed = time.perf_counter() - start
    assert r.status_code == 200
    assert elapsed >= 0.25


async def _wait_for(predicate, limit: int = 10_000) -> None:  # type: ignore[no-untyped-def]
    # yields to the event loop until the app reaches a state: synchronisation on state, not on time
    for _ in range(limit):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("state not reached")


async def test_semaphore_is_held_while_generating() -> None:
    async with sim(max_concurrent_requests=2, stall_rate=1.0, stall_s=60.0) as client:
        state = sim_state(client)
        holders = [asyncio.create_task(client.post("/generate", json=body(max_new_tokens=2))) for _ in range(2)]
        await _wait_for(lambda: state.router.in_use == 2)
        refused = await client.post("/generate", json=body(max_new_tokens=0))  # invalid, but the semaphore is first
        refused_stream = await client.post("/generate_stream", json=body())
        for task in holders:
            task.cancel()
        await asyncio.gather(*holders, return_exceptions=True)
        await _wait_for(lambda: state.router.in_use == 0)
    assert refused.status_code == 429
    assert refused.json() == {"error": "Model is overloaded", "error_type": "overloaded"}
    assert sse_events(refused_stream.text) == [{"error": "Model is overloaded", "error_type": "overloaded"}]


async def test_each_best_of_branch_takes_a_permit() -> None:
    async with sim(max_concurrent_requests=3) as client:
        router = sim_state(client).router
        router.in_use = 2
        best_of = await client.post("/generate", json=body(best_of=2, do_sample=True, max_new_tokens=2))
        single = await client.post("/generate", json=body(max_new_tokens=2))
        router.in_use = 1
        fits = await client.post("/generate", json=body(best_of=2, do_sample=True, max_new_tokens=2))
        assert router.in_use == 1  # all permits given back
        # the best_of limit is checked before any permit is taken
        router.in_use = 3
        too_many = await client.post("/generate", json=body(best_of=3, do_sample=True))
    assert best_of.status_code == 429
    assert single.status_code == 200
    assert fits.status_code == 200
    assert too_many.status_code == 422
