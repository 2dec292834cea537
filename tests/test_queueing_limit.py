"""Adaptive concurrency against servers that queue instead of refusing: the latency-following limit on
synthetic latency sequences, the queue gauge, a queue cap's 503, and a whole job against a simulator that never
refuses."""

from __future__ import annotations

import random
from pathlib import Path

import anyio
import httpx

from tgbatch.backends.tgi.backend import TGIBackend
from tgbatch.backends.tgi.rules import Parameters
from tgbatch.client import AsyncClient
from tgbatch.errors import ServiceUnavailableError
from tgbatch.job.load import load_job
from tgbatch.runner import make_pool, prepare, run_job
from tgbatch.runner.dispatch import Endpoint, EndpointPool, PoolSettings
from tgbatch.runner.latency_limit import LatencyLimit
from tgbatch.runner.queue_watch import GIVE_UP, watch_queue

from .runner_util import job_dict, prompts, write_job, write_jsonl


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Server:
    """A batching server's latency: a per-request constant plus a per-token cost, every token slower in
    proportion beyond ``batch`` requests in flight (the simulator's model)."""

    def __init__(self, batch: int, per_request_s: float = 0.0, per_token_s: float = 0.005) -> None:
        self.batch, self.per_request_s, self.per_token_s = batch, per_request_s, per_token_s

    def latency(self, in_flight: int, tokens: int) -> float:
        return (self.per_request_s + self.per_token_s * tokens) * max(1.0, in_flight / self.batch)


def drive(limit: LatencyLimit, server: Server, clock: Clock, rounds: int, lengths: tuple[int, int] = (32, 32)):
    """A closed loop: each round the limit's worth of requests is in flight and all of them answer. Yields the
    limit each round was run at."""
    rng = random.Random(0)
    for _ in range(rounds):
        n = limit.limit
        answers = [(t, server.latency(n, t)) for t in (rng.randint(*lengths) for _ in range(n))]
        clock.now += max(lat for _, lat in answers)  # every one of them was sent after the last change
        for tokens, latency in answers:
            limit.on_answer(latency, tokens, in_flight=n)
        yield n


def test_grows_from_a_slow_start_to_its_ceiling_while_latency_stays_at_its_floor() -> None:
    clock = Clock()
    limit = LatencyLimit(initial=32, max_limit=200, clock=clock)
    assert limit.limit == 8  # a slow start, not the whole capacity at once
    seen = list(drive(limit, Server(batch=10_000), clock, rounds=40))
    assert seen == sorted(seen)  # never cut
    assert limit.limit == 200
    assert seen.index(200) <= 15  # doubling, not one at a time


def test_settles_above_the_batch_and_below_a_flood_when_latency_climbs() -> None:
    clock = Clock()
    limit = LatencyLimit(initial=32, max_limit=256, clock=clock)
    limit.set_ceiling(100_000)  # a server that never refuses says so in /info: only latency holds the limit
    assert limit.max_limit == 100_000 and limit.limit == 8
    seen = list(drive(limit, Server(batch=32), clock, rounds=300))
    steady = seen[50:]
    assert min(steady) >= 32  # the batch stays full: throughput
    assert max(steady) <= 80  # latency within 2.5x a lone request's: no flood
    assert max(seen) < 200


def test_varying_output_lengths_do_not_look_like_queueing() -> None:
    # a large per-request constant: per token, a 4-token answer takes 50x longer than a 512-token one
    clock = Clock()
    limit = LatencyLimit(initial=32, max_limit=300, clock=clock)
    server = Server(batch=10_000, per_request_s=0.5, per_token_s=0.002)
    seen = list(drive(limit, server, clock, rounds=120, lengths=(4, 512)))
    assert seen == sorted(seen) and limit.limit == 300
    # and with a batch, the same lengths still settle where the queue begins
    clock = Clock()
    limit = LatencyLimit(initial=32, max_limit=300, clock=clock)
    seen = list(drive(limit, Server(batch=40, per_request_s=0.5, per_token_s=0.002), clock, 400, (4, 512)))
    assert min(seen[100:]) >= 40 and max(seen[100:]) <= 100


def test_respects_its_bounds_and_relearns_the_floor_of_a_server_that_got_slower() -> None:
    clock = Clock()
    limit = LatencyLimit(initial=32, min_limit=4, max_limit=16, clock=clock)
    list(drive(limit, Server(batch=1000), clock, rounds=20))
    assert limit.limit == 16  # the ceiling
    slower = Server(batch=1000, per_token_s=0.005 * 10)  # ten times slower for good (other tenants, say)
    seen = list(drive(limit, slower, clock, rounds=60))
    assert min(seen) == 4  # the floor: never below min_limit
    assert limit.limit == 16  # and once the new floor is learned, it grows back


def test_queue_gauge_cuts_to_what_runs_after_a_few_polls_and_holds() -> None:
    clock = Clock()
    limit = LatencyLimit(initial=64, start=64, max_limit=64, clock=clock)
    assert not limit.on_queue(20, in_flight=64)
    assert not limit.on_queue(0, in_flight=64)  # a gap: the count starts again
    assert not limit.on_queue(20, in_flight=64) and not limit.on_queue(20, in_flight=64)
    assert limit.on_queue(24, in_flight=64) and limit.limit == 40  # 64 in flight, 24 of them waiting
    clock.now += 1.0
    for _ in range(50):  # latency at the floor, but the limit holds for a while after the gauge spoke
        limit.on_answer(0.1, 20, in_flight=40)
    assert limit.limit == 40
    clock.now += limit.hold_s
    for _ in range(20):
        clock.now += 0.2
        limit.on_answer(0.1, 20, in_flight=limit.limit)
    assert limit.limit > 40


def backend(metrics: httpx.Response | None, calls: list[str]) -> TGIBackend:
    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return metrics if metrics is not None else httpx.Response(404, json={"error": "not found"})

    client = AsyncClient("http://q", http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    return TGIBackend(client, Parameters(max_new_tokens=8), url="http://q")


def test_a_server_without_a_queue_gauge_is_soon_no_longer_scraped() -> None:
    calls: list[str] = []
    endpoint = Endpoint("http://q", backend(None, calls), LatencyLimit(initial=32, start=32))
    anyio.run(watch_queue, endpoint, 0.0)  # returns by itself: /metrics answers 404
    assert calls == ["/metrics"] * GIVE_UP
    assert endpoint.limit.limit == 32


def test_the_queue_gauge_scraped_from_metrics_cuts_the_limit() -> None:
    calls: list[str] = []
    gauge = httpx.Response(200, text="# TYPE tgi_queue_size gauge\ntgi_queue_size 12\n")
    endpoint = Endpoint("http://q", backend(gauge, calls), LatencyLimit(initial=32, start=32, max_limit=32))
    endpoint.in_flight = 32

    async def main() -> None:
        with anyio.move_on_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch_queue, endpoint, 0.0)
                while endpoint.limit.limit == 32:
                    await anyio.lowlevel.checkpoint()
                tg.cancel_scope.cancel()

    anyio.run(main)
    assert endpoint.limit.limit == 20  # 32 in flight, 12 waiting
    assert len(calls) == endpoint.limit.queue_polls  # a few polls in a row, not the first one


def test_a_queue_caps_503_is_overload_read_over_the_window() -> None:
    clock = Clock()
    limit = LatencyLimit(initial=64, start=64, max_limit=64, clock=clock)
    pool = EndpointPool(
        [Endpoint("http://q", backend(None, []), limit)], PoolSettings(), clock=clock, rng=random.Random(0)
    )
    (endpoint,) = pool.endpoints
    paused = False
    for _ in range(30):  # vLLM / SGLang beyond --max-queue: 503 without a hint, over more than a second
        endpoint.in_flight += 1
        pool.release_failure(endpoint, ServiceUnavailableError("queue full", status_code=503))
        paused = paused or not endpoint.usable(clock.now)
        clock.now += 0.05
    assert endpoint.overloaded == 30
    assert limit.limit <= 64 * 0.9 * 0.5  # a gentle cut a second, then halved on the sustained verdict
    assert paused  # and the endpoint paused for every row
    assert not limit.slow_start


def test_a_job_against_a_server_that_never_refuses_does_not_flood_it(tmp_path: Path) -> None:
    rows = 300
    url = "sim://?max_concurrent_requests=100000&decode_ms_per_token=2&max_batch_size=8&min_output_tokens=16"
    data = write_jsonl(tmp_path / "prompts.jsonl", prompts(rows))
    job = job_dict(data, endpoint={"url": url, "concurrency": "auto"}, parameters={"max_new_tokens": 16})
    job["output"]["dir"] = str(tmp_path / "out")
    loaded = load_job(write_job(tmp_path / "job.yaml", job), [])
    pool = make_pool(loaded.spec, None)

    async def main():
        async with pool:
            return await run_job(prepare(loaded), pool)

    result = anyio.run(main)
    assert result.ok == rows and result.failed == 0
    (stats,) = pool.stats().values()
    assert stats["ok"] == rows
    # the old limit started at the server's word (100,000, capped at 256) and flooded its queue with every row
    assert 8 <= stats["peak_in_flight"] <= 40
