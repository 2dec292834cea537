"""A pool of TGI endpoints: least-outstanding choice, adaptive per-endpoint limits, one shared cooldown per
endpoint for overload and loading answers, and ejection of an endpoint that keeps failing until ``/health``
says it is back.

Why a shared cooldown: when a server answers 429 or 503, every request in flight to it is about to get the same
answer. Letting each row back off on its own burns every row's attempts; pausing the endpoint once, for the time
the server asked for (``Retry-After`` / ``estimated_time``), costs no attempts at all.

One task (whoever calls ``acquire``/``release``) mutates the pool at a time: anyio tasks on one event loop do
not interleave between awaits, so no lock is needed.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import anyio

from tgbatch.backends import Backend
from tgbatch.errors import TGBatchError, TGIError
from tgbatch.runner.concurrency import AIMDLimit

#: overload answers without Retry-After start pausing the endpoint only after this many in a row: a lone 429 is
#: noise (another client's burst), a run of them is a full server
OVERLOAD_RUN = 5


@dataclass
class PoolSettings:
    cooldown_cap_s: float = 60.0
    eject_after: int = 5
    probe_interval_s: float = 1.0
    probe_interval_cap_s: float = 15.0


@dataclass(eq=False)
class Endpoint:
    """One server and what the pool knows of it."""

    url: str
    client: Backend
    limit: AIMDLimit
    in_flight: int = 0
    cooldown_until: float = 0.0
    ejected: bool = False
    consecutive_failures: int = 0
    consecutive_overloads: int = 0
    ok: int = 0
    failed: int = 0
    overloaded: int = 0
    next_probe: float = 0.0
    probe_interval: float = 1.0
    counts: dict[str, int] = field(default_factory=dict)

    def usable(self, now: float) -> bool:
        return not self.ejected and now >= self.cooldown_until

    def has_room(self) -> bool:
        return self.in_flight < self.limit.limit


def is_overload(error: BaseException) -> bool:
    """Answers that mean "too much right now", not "this request is bad" or "this server is broken"."""
    return isinstance(error, TGBatchError) and error.overload


class NoEndpointAvailable(Exception):
    """Raised by ``acquire`` when its deadline passes with no endpoint able to take a request."""


class EndpointPool:
    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        settings: PoolSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not endpoints:
            raise ValueError("an endpoint pool needs at least one endpoint")
        self.endpoints = list(endpoints)
        self.settings = settings or PoolSettings()
        self._clock = clock
        # waiting tasks in arrival order, with the endpoint each would rather avoid
        self._waiters: dict[anyio.Event, Endpoint | None] = {}
        self._rng = random.Random()

    # -- choosing ----------------------------------------------------------------------------------------

    def pick(self, avoid: Endpoint | None = None) -> Endpoint | None:
        """The usable endpoint with room and the fewest requests in flight; ``avoid`` (where the row just
        failed) only if no other endpoint is usable at all."""
        now = self._clock()
        usable = [e for e in self.endpoints if e.usable(now)]
        others = [e for e in usable if e is not avoid]
        candidates = [e for e in (others or usable) if e.has_room()]
        if not candidates:
            return None
        return min(candidates, key=lambda e: (e.in_flight / e.limit.limit, e.in_flight))

    async def acquire(self, *, avoid: Endpoint | None = None, deadline: float = math.inf) -> Endpoint:
        """Wait for a slot; raises ``NoEndpointAvailable`` at ``deadline`` (a ``clock()`` time)."""
        waited = False
        while True:
            endpoint = self.pick(avoid)
            if endpoint is not None:
                endpoint.in_flight += 1
                if waited:
                    # a release may have freed more than one slot (the limit grew): pass the turn on
                    self._wake_one()
                return endpoint
            waited = True
            now = self._clock()
            if now >= deadline:
                raise NoEndpointAvailable(self.describe())
            event = anyio.Event()
            self._waiters[event] = avoid
            # wake at the next time-driven change too: a cooldown ending, an ejected endpoint's probe
            try:
                with anyio.move_on_after(min(deadline, self._next_change(now)) - now):
                    await event.wait()
            finally:
                self._waiters.pop(event, None)

    def _next_change(self, now: float) -> float:
        times = [e.cooldown_until for e in self.endpoints if e.cooldown_until > now and not e.ejected]
        times += [e.next_probe for e in self.endpoints if e.ejected]
        return max(min(times, default=now + 1.0), now + 0.001)

    def _wake_one(self) -> None:
        """Hand a freed slot to the longest waiter that can use it (one avoiding the only free endpoint
        cannot). With no slot free at all, nobody is woken: waking waiters that would only wait again is
        what turns a full pool into a busy loop."""
        if not self._waiters or self.pick() is None:
            return
        for event, avoid in self._waiters.items():
            if avoid is None or self.pick(avoid) is not None:
                del self._waiters[event]
                event.set()
                return

    def _wake_all(self) -> None:
        waiters, self._waiters = self._waiters, {}
        for event in waiters:
            event.set()

    # -- outcomes ----------------------------------------------------------------------------------------

    def release_success(self, endpoint: Endpoint, latency_s: float, tokens: int) -> None:
        endpoint.in_flight -= 1
        endpoint.ok += 1
        endpoint.consecutive_failures = 0
        endpoint.consecutive_overloads = 0
        endpoint.limit.on_success(latency_s / max(tokens, 1), endpoint.in_flight + 1)
        self._wake_one()

    def release_failure(self, endpoint: Endpoint, error: BaseException) -> None:
        """Account a failed request. Overload answers cool the endpoint down (shared by every row); repeated
        server or transport failures eject it until ``/health`` answers again; request errors change
        nothing about the endpoint."""
        endpoint.in_flight -= 1
        kind = type(error).__name__
        endpoint.counts[kind] = endpoint.counts.get(kind, 0) + 1
        if is_overload(error):
            endpoint.overloaded += 1
            endpoint.consecutive_overloads += 1
            endpoint.limit.on_overload()
            self._cool_down(endpoint, error.retry_after)
        elif not isinstance(error, TGBatchError) or error.retryable:
            endpoint.failed += 1
            endpoint.consecutive_failures += 1
            if endpoint.consecutive_failures >= self.settings.eject_after and self._others_alive(endpoint):
                self._eject(endpoint)
        self._wake_all() if endpoint.ejected else self._wake_one()

    def release_cancelled(self, endpoint: Endpoint) -> None:
        endpoint.in_flight -= 1
        self._wake_one()

    def _cool_down(self, endpoint: Endpoint, retry_after: float | None) -> None:
        if retry_after is None:
            if endpoint.consecutive_overloads < OVERLOAD_RUN:
                return
            # a run of 429s without a hint: back off exponentially, jittered so pools do not synchronise
            pause = 0.1 * 2 ** (endpoint.consecutive_overloads - OVERLOAD_RUN)
            pause *= 0.5 + self._rng.random()
        else:
            pause = retry_after
        pause = min(pause, self.settings.cooldown_cap_s)
        endpoint.cooldown_until = max(endpoint.cooldown_until, self._clock() + pause)

    def _others_alive(self, endpoint: Endpoint) -> bool:
        # the last endpoint standing is never ejected: rows wait on its cooldowns and retries instead
        return any(not e.ejected for e in self.endpoints if e is not endpoint)

    def _eject(self, endpoint: Endpoint) -> None:
        endpoint.ejected = True
        endpoint.probe_interval = self.settings.probe_interval_s
        endpoint.next_probe = self._clock() + endpoint.probe_interval

    def readmit(self, endpoint: Endpoint) -> None:
        endpoint.ejected = False
        endpoint.consecutive_failures = 0
        endpoint.cooldown_until = 0.0
        # back carefully: a recovering server gets a small limit and earns the rest
        endpoint.limit.limit = max(endpoint.limit.min_limit, endpoint.limit.limit // 2)
        self._wake_all()

    # -- probing -----------------------------------------------------------------------------------------

    async def probe_forever(self) -> None:
        """Probe ejected endpoints' ``/health`` until they recover. Runs in the pipeline's task group and is
        cancelled with it."""
        while True:
            now = self._clock()
            for endpoint in self.endpoints:
                if endpoint.ejected and now >= endpoint.next_probe:
                    await self._probe(endpoint)
            await anyio.sleep(min(0.25, self.settings.probe_interval_s))

    async def _probe(self, endpoint: Endpoint) -> None:
        try:
            with anyio.fail_after(max(self.settings.probe_interval_s, 1.0) * 5):
                healthy = await endpoint.client.health()
        except (TGIError, TimeoutError):
            healthy = False
        if healthy:
            self.readmit(endpoint)
        else:
            endpoint.probe_interval = min(endpoint.probe_interval * 2, self.settings.probe_interval_cap_s)
            endpoint.next_probe = self._clock() + endpoint.probe_interval

    async def aclose(self) -> None:
        for endpoint in self.endpoints:
            await endpoint.client.aclose()

    async def __aenter__(self) -> EndpointPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- reporting ---------------------------------------------------------------------------------------

    def describe(self) -> str:
        now = self._clock()
        parts = []
        for e in self.endpoints:
            state = "ejected" if e.ejected else ("cooling down" if now < e.cooldown_until else "up")
            parts.append(f"{e.url}: {state}, {e.in_flight}/{e.limit.limit} in flight")
        return "; ".join(parts)

    def stats(self) -> dict[str, dict[str, object]]:
        return {
            e.url: {
                "ok": e.ok,
                "failed": e.failed,
                "overloaded": e.overloaded,
                "in_flight": e.in_flight,
                "limit": e.limit.limit,
                "ejected": e.ejected,
                "errors": dict(e.counts),
            }
            for e in self.endpoints
        }
