"""Adaptive concurrency: an AIMD limit that grows while latency holds and shrinks on overload.

A TGI server batches continuously: up to its batch capacity, more concurrent requests mean more throughput at
the same per-token latency; past it, per-token latency grows in proportion and throughput stays flat. So the
limit grows additively (one slot per window of successes) only while the normalised latency stays within
``tolerance`` of the best seen recently, and shrinks multiplicatively on an overload answer, at most once per
``decrease_interval`` so that a burst of 429s from requests already in flight counts as one signal. A sporadic 429
(a server refusing a share of requests at random) costs no more than that gentle cut. When the endpoint pool
finds overload sustained (most answers for seconds), the limit halves at once: several processes each
calibrated to the server's whole capacity (the shards of one job) send several times what it takes, and cuts
of 10% a second would take many seconds to get there, all of them spent on 429s.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class AIMDLimit:
    """The number of requests one endpoint may have in flight."""

    initial: int
    min_limit: int = 1
    max_limit: int = 1024
    decrease_factor: float = 0.9
    sustained_factor: float = 0.5
    tolerance: float = 2.0
    decrease_interval_s: float = 1.0
    clock: Callable[[], float] = time.monotonic
    limit: int = field(init=False)
    _baseline: float = field(init=False, default=math.inf)
    _successes: int = field(init=False, default=0)
    _last_decrease: float = field(init=False, default=-math.inf)

    def __post_init__(self) -> None:
        if not 1 <= self.min_limit <= self.max_limit:
            raise ValueError(f"need 1 <= min_limit ({self.min_limit}) <= max_limit ({self.max_limit})")
        self.limit = min(max(self.initial, self.min_limit), self.max_limit)

    def on_success(self, latency_per_token_s: float, in_flight: int) -> None:
        """A request finished normally. ``latency_per_token_s`` normalises for output length."""
        if latency_per_token_s > 0:
            # the baseline drifts up slowly, so a server that got permanently slower is not held to its best
            self._baseline = min(self._baseline * 1.001, latency_per_token_s)
        if in_flight < self.limit - 1:
            return  # the limit is not what holds throughput back: growing it would prove nothing
        if latency_per_token_s > self.tolerance * self._baseline:
            return
        self._successes += 1
        if self._successes >= self.limit:
            self._successes = 0
            self.limit = min(self.limit + 1, self.max_limit)

    def on_answer(self, latency_s: float, tokens: int, in_flight: int) -> None:
        """A request finished normally after ``latency_s``, generating ``tokens``, with ``in_flight`` requests
        (itself included) in flight to its endpoint."""
        self.on_success(latency_s / max(tokens, 1), in_flight)

    def set_ceiling(self, cap: int) -> None:
        """The server's own limit (e.g. TGI's ``max_concurrent_requests``: beyond it, 429): start there."""
        self.max_limit = max(self.min_limit, cap)
        self.limit = self.max_limit

    def on_queue(self, waiting: int, in_flight: int) -> bool:
        """The server's queue gauge says ``waiting`` requests wait. Returns whether the limit was cut; this
        limit follows overload answers only (``LatencyLimit`` follows the gauge)."""
        return False

    def on_overload(self) -> bool:
        """The server said it is overloaded. Returns whether the limit was cut."""
        now = self.clock()
        if now - self._last_decrease < self.decrease_interval_s:
            return False
        self._last_decrease = now
        self._successes = 0
        self.limit = max(self.min_limit, math.floor(self.limit * self.decrease_factor))
        return True

    def on_sustained_overload(self) -> None:
        """Most answers for seconds were overload (the pool's verdict, once per pause): halve the limit."""
        self._last_decrease = self.clock()
        self._successes = 0
        self.limit = max(self.min_limit, math.floor(self.limit * self.sustained_factor))
