"""The endpoint pool and the adaptive limit: choice, cooldowns, ejection and recovery."""

from __future__ import annotations

import random

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


def test_aimd_halves_on_sustained_overload_within_its_bounds() -> None:
    limit = AIMDLimit(initial=128, min_limit=4, max_limit=128)
    limit.on_sustained_overload()
    assert limit.limit == 64
    for _ in range(10):
        limit.on_sustained_overload()
    assert limit.limit == 4
    fixed = AIMDLimit(initial=32, min_limit=32, max_limit=32)  # a fixed concurrency stays fixed
    fixed.on_sustained_overload()
    assert fixed.limit == 32


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


def _overload(retry_after: float | None = None) -> OverloadedError:
    return OverloadedError("Model is overloaded", status_code=429, retry_after=retry_after)


def _answer(pool: EndpointPool, e: Endpoint, error: Exception | None) -> None:
    e.in_flight += 1
    if error is None:
        pool.release_success(e, 0.16, 32)
    else:
        pool.release_failure(e, error)


def _pools_given(retry_after: float, n: int = 40, **settings) -> list[float]:
    """How long each of ``n`` pools (one per process, unseeded alike) pauses for the same hinted 429."""
    pauses = []
    for seed in range(n):
        clock = Clock()
        pool = make_pool(n=1, clock=clock, **settings)
        pool._rng = random.Random(seed)
        (e,) = pool.endpoints
        _answer(pool, e, _overload(retry_after))
        pauses.append(e.cooldown_until - clock.now)
    return pauses


def test_a_hint_pauses_about_that_long_jittered_never_shorter() -> None:
    pauses = _pools_given(3.0)
    assert all(3.0 <= p <= 3.0 * 1.03 for p in pauses)
    assert len(set(pauses)) == len(pauses)  # jittered: the pools do not come back at the same instant


def test_a_huge_hint_is_capped_before_the_jitter() -> None:
    # a hint beyond the cap used to pause every pool for exactly the cap: shards sharing a server all woke at
    # the same instant and overloaded it together again. Now each pause ends somewhere below the cap.
    pauses = _pools_given(500.0, cooldown_cap_s=10.0)
    assert all(7.5 <= p <= 10.0 for p in pauses)
    assert max(pauses) - min(pauses) > 1.0 and len(set(pauses)) == len(pauses)
    assert not any(p == pytest.approx(10.0, abs=1e-3) for p in pauses)


def test_answers_in_flight_repeating_a_hint_reuse_the_pause_s_jitter() -> None:
    # with a fresh draw per answer, the longest of a burst's draws would win, every pool near the top again
    clock = Clock()
    pool = make_pool(n=1, clock=clock, cooldown_cap_s=10.0)
    (e,) = pool.endpoints
    _answer(pool, e, ModelLoadingError("loading", status_code=503, retry_after=500.0))
    first = e.cooldown_until
    for _ in range(30):
        _answer(pool, e, ModelLoadingError("loading", status_code=503, retry_after=500.0))
    assert e.cooldown_until == first < clock.now + 10.0


def test_a_burst_of_429s_before_any_success_does_not_pause_a_mostly_healthy_server() -> None:
    # the first answers of a run are its 429s (they come back before any generation ends): a run of them is
    # arrival order, not a full server. At 10% overload overall, the endpoint is never paused; the limit is
    # cut at most once a second.
    clock = Clock()
    pool = make_pool(n=1, clock=clock, limit=128)
    (e,) = pool.endpoints
    for _ in range(12):
        _answer(pool, e, _overload())
    assert pool.pick() is e
    rng = random.Random(0)
    cuts = 0
    for _ in range(20_000):  # 20 s at 1,000 answers a second, 10% of them 429
        clock.now += 0.001
        before = e.limit.limit
        _answer(pool, e, _overload() if rng.random() < 0.1 else None)
        cuts += e.limit.limit < before
        assert e.cooldown_until == 0.0
    assert cuts <= 21


def test_a_sustained_overload_share_pauses_the_endpoint() -> None:
    # 80% of the answers over two seconds were 429 (never five in a row): the server is full
    clock = Clock()
    pool = make_pool(n=1, clock=clock, limit=64)
    (e,) = pool.endpoints
    for i in range(25):
        clock.now += 0.08
        _answer(pool, e, None if i % 5 == 4 else _overload())
        if pool.pick() is None:
            break
    assert pool.pick() is None
    assert 0.25 * 0.5 <= e.cooldown_until - clock.now <= 0.25 * 1.5
    assert e.limit.limit <= 64 * 0.9 * 0.5  # (one gentle cut a second, then halved on the verdict)


def test_hintless_pauses_double_while_the_overload_goes_on_below_the_cap_then_start_over() -> None:
    clock = Clock()
    pool = make_pool(n=1, clock=clock, cooldown_cap_s=10.0, overload_pause_s=0.25)
    pool._rng = random.Random(0)
    (e,) = pool.endpoints
    pauses = []
    for _ in range(12):
        while pool.pick() is not None:  # every answer overload
            clock.now += 0.06
            _answer(pool, e, _overload())
        pauses.append(e.cooldown_until - clock.now)
        clock.now = e.cooldown_until
    assert all(0.5 * 0.25 * 2**i <= p <= 1.5 * 0.25 * 2**i for i, p in enumerate(pauses[:5]))
    assert all(p < 10.0 for p in pauses) and max(pauses) >= 7.5
    clock.now += 6.0  # a window without overload: the next pause starts from the base again
    while pool.pick() is not None:
        clock.now += 0.06
        _answer(pool, e, _overload())
    assert 0.25 * 0.5 <= e.cooldown_until - clock.now <= 0.25 * 1.5


def test_a_window_with_few_answers_is_no_evidence() -> None:
    clock = Clock()
    pool = make_pool(n=1, clock=clock, overload_min_answers=20)
    (e,) = pool.endpoints
    for _ in range(19):  # all overload, over almost four seconds, but too few to tell
        clock.now += 0.2
        _answer(pool, e, _overload())
    assert pool.pick() is e


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
