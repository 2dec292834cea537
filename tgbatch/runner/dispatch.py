"""A pool of TGI endpoints: least-outstanding choice, adaptive per-endpoint limits, one shared cooldown per
endpoint for overload and loading answers, and ejection of an endpoint that keeps failing until ``/health``
says it is back.

Why a shared cooldown: when a server answers 429 or 503 with a hint, every request in flight to it is about to get
the same answer. Letting each row back off on its own burns every row's attempts; pausing the endpoint once, for
the time the server asked for (``Retry-After`` / ``estimated_time``), costs no attempts at all.

Why overload is read as a share over a time window, not as a streak: 429s come back in a millisecond while a
success takes the whole generation, so the first answers of any busy run are the overload ones, and whether five
of them arrive in a row depends only on arrival order (on a fault seed, in the simulator). A streak rule paused a
server that refused 10% of requests at random for a growing time, again and again. Without a hint, the endpoint
pauses only when most answers over the last few seconds were overload, with enough answers seen over long enough
to be sure; a sporadic 429 costs its own retry and, at most once a second, an AIMD cut of the limit.

Why pauses are capped before they are jittered: processes that share a server (the shards of one job) get their
overload answers at the same moments; a pause capped after its jitter is exactly the cap for all of them, so they
all wake at the same instant and overload the server together again. Each pause draws its own ceiling below
the cap instead.

One task (whoever calls ``acquire``/``release``) mutates the pool at a time: anyio tasks on one event loop do
not interleave between awaits, so no lock is needed.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import anyio

from tgbatch.backends import Backend
from tgbatch.errors import TGBatchError, TGIError
from tgbatch.runner.concurrency import AIMDLimit
from tgbatch.runner.overload import AnswerWindow, pause_for

log = logging.getLogger("tgbatch.dispatch")

@dataclass
class PoolSettings:
    cooldown_cap_s: float = 60.0
    eject_after: int = 5
    probe_interval_s: float = 1.0
    probe_interval_cap_s: float = 15.0
    #: overload answers without a hint are read as a share of all answers over this many seconds
    overload_window_s: float = 5.0
    #: the share (of answers in the window) at or above which the endpoint pauses: most answers were overload
    overload_share: float = 0.5
    #: fewer answers than this in the window are no evidence either way
    overload_min_answers: int = 20
    #: and the answers must span this long: the first burst of a run (429s come back before any success can)
    #: is not a sustained overload
    overload_min_span_s: float = 1.0
    #: the first hint-less pause; pauses that follow each other double, up to ``cooldown_cap_s``
    overload_pause_s: float = 0.25


@dataclass(eq=False)
class Endpoint:
    """One server and what the pool knows of it."""

    url: str
    client: Backend
    limit: AIMDLimit
    in_flight: int = 0
    #: the most requests it ever had in flight at once (the job's stats: did the limit hold?)
    peak_in_flight: int = 0
    cooldown_until: float = 0.0
    ejected: bool = False
    consecutive_failures: int = 0
    #: recent answers, read as an overload share (see ``EndpointPool._sustained_overload``)
    answers: AnswerWindow = field(default_factory=AnswerWindow)
    #: hint-less pauses in a row (each doubles the next); back to 0 once a window passes without one
    overload_pauses: int = 0
    #: the jitter draw of the current pause: answers that repeat a hint while it lasts reuse it
    pause_draw: float = 0.0
    ok: int = 0
    failed: int = 0
    overloaded: int = 0
    next_probe: float = 0.0
    probe_interval: float = 1.0
    #: when the server stopped taking connections (``None`` while it is up): set aside and probed meanwhile
    down_since: float | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def usable(self, now: float) -> bool:
        return not self.ejected and now >= self.cooldown_until

    def has_room(self) -> bool:
        return self.in_flight < self.limit.limit


def is_overload(error: BaseException | None) -> bool:
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
        rng: random.Random | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("an endpoint pool needs at least one endpoint")
        self.endpoints = list(endpoints)
        self.settings = settings or PoolSettings()
        self._clock = clock
        # waiting tasks in arrival order, with the endpoint each would rather avoid
        self._waiters: dict[anyio.Event, Endpoint | None] = {}
        # unseeded: pools in different processes must draw different jitters
        self._rng = rng or random.Random()

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
                endpoint.peak_in_flight = max(endpoint.peak_in_flight, endpoint.in_flight)
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
        endpoint.answers.record(self._clock(), False, self.settings.overload_window_s)
        endpoint.limit.on_answer(latency_s, tokens, endpoint.in_flight + 1)
        self._wake_one()

    def release_failure(self, endpoint: Endpoint, error: BaseException) -> None:
        """Account a failed request. An overload answer cuts the limit (at most once a second) and pauses the
        endpoint for every row when the server gave a hint or most recent answers were overload; repeated
        server or transport failures eject it until ``/health`` answers again; request errors change
        nothing about the endpoint."""
        endpoint.in_flight -= 1
        kind = type(error).__name__
        endpoint.counts[kind] = endpoint.counts.get(kind, 0) + 1
        overload = is_overload(error)
        endpoint.answers.record(self._clock(), overload, self.settings.overload_window_s)
        if overload:
            endpoint.overloaded += 1
            endpoint.limit.on_overload()
            self._cool_down(endpoint, getattr(error, "retry_after", None))
        elif isinstance(error, TGBatchError) and error.unreachable:
            # no connection at all: the server is down, whatever the other endpoints do; rows wait for /health
            endpoint.failed += 1
            if endpoint.down_since is None:
                self._down(endpoint, error)
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
        now = self._clock()
        if retry_after is not None:
            self._pause(endpoint, now, retry_after, hinted=True)
        elif now >= endpoint.cooldown_until and self._sustained_overload(endpoint, now):
            # (while paused, the answers of requests sent before the pause are no new evidence)
            endpoint.limit.on_sustained_overload()
            window = endpoint.answers
            log.debug(
                "%s: %d of %d answers overload: limit %d",
                endpoint.url,
                window.overloads,
                window.answers,
                endpoint.limit.limit,
            )
            self._pause(endpoint, now, self._backoff(endpoint, now), hinted=False)
            # the next verdict needs answers from after this pause, or every 429 of a recovered server would
            # find the old ones in the window and pause it again
            endpoint.answers.clear()

    def _sustained_overload(self, endpoint: Endpoint, now: float) -> bool:
        """Most answers over the last few seconds were overload: a full server, not a sporadic 429. The span
        rule is for a first verdict; right after a hint-less pause (the window was cleared) the overload goes
        on if enough new answers say so."""
        s = self.settings
        window = endpoint.answers
        if window.answers < s.overload_min_answers or window.overloads < s.overload_share * window.answers:
            return False
        return self._escalating(endpoint, now) or window.span(now) >= s.overload_min_span_s

    def _escalating(self, endpoint: Endpoint, now: float) -> bool:
        # a hint-less pause ended less than a window ago: the overload goes on
        return endpoint.overload_pauses > 0 and now - endpoint.cooldown_until < self.settings.overload_window_s

    def _backoff(self, endpoint: Endpoint, now: float) -> float:
        """The next hint-less pause: doubling while pauses follow each other, from the start again after a
        window without one."""
        if not self._escalating(endpoint, now):
            endpoint.overload_pauses = 0
        endpoint.overload_pauses += 1
        return self.settings.overload_pause_s * 2.0 ** min(endpoint.overload_pauses - 1, 30)

    def _pause(self, endpoint: Endpoint, now: float, base: float, *, hinted: bool) -> None:
        if now >= endpoint.cooldown_until:
            # a new pause draws its jitter once: the answers in flight that repeat the same hint reuse it, or
            # the longest of their draws would win and put every pool back at the top of the range
            endpoint.pause_draw = self._rng.random()
        pause = pause_for(base, self.settings.cooldown_cap_s, endpoint.pause_draw, hinted=hinted)
        if now + pause > endpoint.cooldown_until:
            log.debug("%s: paused %.2f s (%s %.2f s)", endpoint.url, pause, "hint" if hinted else "backoff", base)
            endpoint.cooldown_until = now + pause

    def _others_alive(self, endpoint: Endpoint) -> bool:
        # the last endpoint standing is never ejected: rows wait on its cooldowns and retries instead
        return any(not e.ejected for e in self.endpoints if e is not endpoint)

    def _eject(self, endpoint: Endpoint) -> None:
        endpoint.ejected = True
        endpoint.probe_interval = self.settings.probe_interval_s
        endpoint.next_probe = self._clock() + endpoint.probe_interval

    def _down(self, endpoint: Endpoint, error: TGBatchError) -> None:
        endpoint.down_since = self._clock()
        self._eject(endpoint)
        log.warning(
            "endpoint %s unreachable since %s (%s); probing /health (every %g s at first, then up to every %g s)",
            endpoint.url,
            time.strftime("%H:%M:%S"),
            error,
            self.settings.probe_interval_s,
            self.settings.probe_interval_cap_s,
        )

    def outage_since(self) -> float | None:
        """When the current outage began, if every endpoint is down (a ``clock()`` time), else ``None``."""
        down = [e.down_since for e in self.endpoints]
        return None if any(since is None for since in down) else min(d for d in down if d is not None)

    def readmit(self, endpoint: Endpoint) -> None:
        if endpoint.down_since is not None:
            log.warning("endpoint %s is back after %.0f s", endpoint.url, self._clock() - endpoint.down_since)
            endpoint.down_since = None
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
                "peak_in_flight": e.peak_in_flight,
                "limit": e.limit.limit,
                "ejected": e.ejected,
                "errors": dict(e.counts),
            }
            for e in self.endpoints
        }
