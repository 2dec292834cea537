"""The endpoint pool and the adaptive limit: choice, cooldowns, ejection and recovery."""

from __future__ import annotations

import anyio
import httpx
import pytest

from tgbatch.client import AsyncClient
from tgbatch.errors import (
    GenerationError,
    ModelLoadingError,
    OverloadedError,
    RateLimitError,
    TransportError,
    ValidationError,
)
from tgbatch.runner.concurrency import AIMDLimit
from tgbatch.runner.dispatch import Endpoint, EndpointPool, NoEndpointAvailable, PoolSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_pool(n: int = 2, limit: int = 4, clock: Clock | None = None, health=None, **settings) -> EndpointPool:
    clock = clock or Clock()

    def handler(request: httpx.Request) -> httpx.Response:
        ok = health(request.url.host) if health else True
        return httpx.Response(200 if ok else 503)

    endpoints = [
        Endpoint(
            url=f"http://e{i}",
            client=AsyncClient(f"http://e{i}", http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler))),
            limit=AIMDLimit(initial=limit, max_limit=64, clock=clock),
        )
        for i in range(n)
    ]
    return EndpointPool(endpoints, PoolSettings(**settings), clock=clock)


def test_aimd_grows_while_latency_holds_and_the_limit_is_used() -> None:
    limit = AIMDLimit(initial=4, max_limit=8)
    for _ in range(4):
        limit.on_success(0.01, in_flight=4)
    assert limit.limit == 5
    for _ in range(50):
        limit.on_success(0.01, in_flight=1)  # the limit is not the bottleneck: no growth
    assert limit.limit == 5
    for _ in range(50):
        limit.on_success(0.05, in_flight=5)  # latency 5x the baseline: no growth
    assert limit.limit == 5
    for _ in range(1000):
        limit.on_success(0.01, in_flight=limit.limit)
    assert limit.limit == 8  # capped


def test_aimd_cuts_once_per_interval() -> None:
    clock = Clock()
    limit = AIMDLimit(initial=100, clock=clock, decrease_factor=0.5, decrease_interval_s=1.0)
    assert limit.on_overload() and limit.limit == 50
    assert not limit.on_overload() and limit.limit == 50  # the same burst
    clock.now += 1.5
    assert limit.on_overload() and limit.limit == 25
    for _ in range(20):
        clock.now += 2
        limit.on_overload()
    assert limit.limit == 1


def test_pick_prefers_fewest_in_flight_and_respects_limits() -> None:
    pool = make_pool(n=2, limit=2)
    a = pool.endpoints[0]

    async def main() -> list[Endpoint]:
        return [await pool.acquire() for _ in range(4)]

    got = anyio.run(main)
    assert sorted(e.url for e in got) == ["http://e0", "http://e0", "http://e1", "http://e1"]
    assert pool.pick() is None  # both full
    pool.release_success(a, 0.1, 10)
    assert pool.pick() is a


def test_avoid_moves_a_retry_to_another_endpoint_but_not_off_the_only_one() -> None:
    pool = make_pool(n=2)
    a, b = pool.endpoints
    assert pool.pick(avoid=a) is b
    assert pool.pick(avoid=b) is a
    single = make_pool(n=1)
    only = single.endpoints[0]
    assert single.pick(avoid=only) is only


def test_overload_with_retry_after_cools_the_endpoint_for_every_row() -> None:
    clock = Clock()
    pool = make_pool(n=1, clock=clock)
    (e,) = pool.endpoints
    e.in_flight = 1
    pool.release_failure(e, RateLimitError("Rate limit reached", status_code=429, retry_after=3.0))
    assert pool.pick() is None
    clock.now += 2.9
    assert pool.pick() is None
    clock.now += 0.2
    assert pool.pick() is e
    assert e.limit.limit < 4  # and the limit was cut


def test_loading_uses_estimated_time_capped() -> None:
    clock = Clock()
    pool = make_pool(n=1, clock=clock, cooldown_cap_s=10.0)
    (e,) = pool.endpoints
    e.in_flight = 1
    pool.release_failure(e, ModelLoadingError("loading", status_code=503, retry_after=500.0))
    assert e.cooldown_until == pytest.approx(clock.now + 10.0)


def test_lone_overloads_without_hint_do_not_pause_but_a_run_does() -> None:
    clock = Clock()
    pool = make_pool(n=1, clock=clock)
    (e,) = pool.endpoints
    for _ in range(4):
        e.in_flight += 1
        pool.release_failure(e, OverloadedError("Model is overloaded", status_code=429))
    assert pool.pick() is e
    e.in_flight += 1
    pool.release_failure(e, OverloadedError("Model is overloaded", status_code=429))
    assert pool.pick() is None  # five in a row: the server is full


def test_request_errors_do_not_count_against_the_endpoint() -> None:
    pool = make_pool(n=2, eject_after=2)
    a, _ = pool.endpoints
    for _ in range(10):
        a.in_flight += 1
        pool.release_failure(a, ValidationError("Input validation error: `inputs` cannot be empty"))
    assert not a.ejected and a.consecutive_failures == 0


def test_failing_endpoint_is_ejected_then_readmitted_by_health_probe() -> None:
    clock = Clock()
    healthy = {"e0": False, "e1": True}
    pool = make_pool(n=2, clock=clock, eject_after=3, health=lambda host: healthy[host])
    a, b = pool.endpoints
    for _ in range(3):
        a.in_flight += 1
        pool.release_failure(a, TransportError("connection refused"))
    assert a.ejected and pool.pick() is b

    async def probe() -> None:
        await pool._probe(a)

    anyio.run(probe)
    assert a.ejected  # still down; probed again later, backing off
    assert a.next_probe > clock.now
    healthy["e0"] = True
    anyio.run(probe)
    assert not a.ejected and pool.pick(avoid=b) is a


def test_the_last_endpoint_is_never_ejected() -> None:
    pool = make_pool(n=1, eject_after=2)
    (e,) = pool.endpoints
    for _ in range(5):
        e.in_flight += 1
        pool.release_failure(e, GenerationError("boom", status_code=424))
    assert not e.ejected


def test_acquire_waits_for_a_release_and_honours_its_deadline() -> None:
    pool = make_pool(n=1, limit=1)
    (e,) = pool.endpoints
    order: list[str] = []

    async def main() -> None:
        first = await pool.acquire()
        async with anyio.create_task_group() as tg:

            async def second() -> None:
                got = await pool.acquire()
                order.append("second acquired")
                pool.release_success(got, 0.1, 1)

            tg.start_soon(second)
            await anyio.wait_all_tasks_blocked()
            order.append("releasing")
            pool.release_success(first, 0.1, 1)

        held = await pool.acquire()
        e.limit.limit = 1  # (the two quick successes above earned a second slot)
        with pytest.raises(NoEndpointAvailable):
            await pool.acquire(deadline=pool._clock() - 1)
        pool.release_cancelled(held)

    anyio.run(main)
    assert order == ["releasing", "second acquired"]
    assert e.in_flight == 0


def test_waiters_stay_asleep_while_the_limit_is_below_in_flight() -> None:
    # after a cut, more requests are in flight than the new limit allows: releases free no slot, and the
    # waiting workers must not wake each other in a circle (that was a busy loop burning a core)
    pool = make_pool(n=1, limit=4)
    (e,) = pool.endpoints
    picks = 0
    original = pool.pick

    def counting_pick(avoid: Endpoint | None = None) -> Endpoint | None:
        nonlocal picks
        picks += 1
        return original(avoid)

    pool.pick = counting_pick  # type: ignore[method-assign]
    got: list[Endpoint] = []

    async def main() -> None:
        held = [await pool.acquire() for _ in range(4)]
        e.limit.limit = 1  # an overload cut: 4 in flight, 1 allowed
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(lambda: _acquire_into(pool, got))
                await anyio.wait_all_tasks_blocked()
                before = picks
                pool.release_success(held.pop(), 0.1, 1)  # 3 in flight, limit 1: still no slot
                await anyio.wait_all_tasks_blocked()
                assert picks - before <= 2 and got == []
                for endpoint in held:
                    pool.release_success(endpoint, 0.1, 1)  # 0 in flight: a slot per unit of limit
                await anyio.wait_all_tasks_blocked()
                assert len(got) == e.in_flight == e.limit.limit < 10
                tg.cancel_scope.cancel()

    anyio.run(main)


async def _acquire_into(pool: EndpointPool, got: list[Endpoint]) -> None:
    got.append(await pool.acquire())
