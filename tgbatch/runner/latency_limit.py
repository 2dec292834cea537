"""Adaptive concurrency for servers that queue instead of refusing (vLLM and SGLang by default, TGI below its
``max_concurrent_requests``): a limit that follows latency, after TCP Vegas and Netflix's concurrency-limits.

Such a server never says "too much": requests beyond its batch wait, and every one of them takes longer. So the
limit compares each answer's latency with the best seen for answers of that length (the floor), and reads the
ratio as Vegas does (``limit x (1 - floor/latency)`` requests are queued, beyond what the server runs):

- while the median ratio of a round of answers stays within ``grow_below`` of the floor, it grows: doubling per
  round at first (slow start, from ``start``: a limit that began at the server's whole capacity would flood its
  queue before the first answer, and the floor learned then would already include the queue), then by half
  while latency stays within ``idle_below`` of the floor (nothing queued), else by ``sqrt(limit)`` per round;
- beyond ``cut_above``, it is cut to what the round says the server runs at ``grow_below``:
  ``in_flight x grow_below / ratio``, but at most halved (one round of hiccups is no reason to drop to 1);
- in between, it holds. The band keeps a few requests queued (a full batch, whatever noise there is) without
  letting the queue grow: median latency stays within ``cut_above`` of a lone request's.

Why per length: latency is a per-request constant (prefill, the network) plus a per-token cost, so a short answer
takes longer per token than a long one at the same load. Floors are kept per bucket of output length
(``buckets_per_octave`` per doubling) and each answer is compared like with like.
Why rounds of fresh answers: an answer sent before the last change of the limit says how the old limit did;
counting it would cut twice for one queue. A round is the median of the answers sent after the last change.
Why floors are re-learned when the limit is stuck at its minimum: a server that became slower for good (other
tenants) would otherwise hold the job at one request forever.

The server's queue gauge (``Backend.queue``, read by ``runner.queue_watch``) is a second, direct signal: requests
waiting for a few polls in a row mean the in-flight count is beyond the batch, so the limit is cut to what runs
(in flight minus waiting) and held there for ``hold_s``. Overload answers (429, a queue cap's 503) cut as
``AIMDLimit`` does and end the slow start.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from tgbatch.runner.concurrency import AIMDLimit


@dataclass
class LatencyLimit(AIMDLimit):
    """``AIMDLimit``'s overload cuts plus latency-following growth and cuts (see the module's doc)."""

    #: the slow start begins here (or at ``initial`` when lower)
    start: int = 8
    #: a round whose median latency is at most this many times the floor grows the limit
    grow_below: float = 1.8
    #: at most this many times the floor, nothing is queued: the limit grows by half (Vegas' quick increase)
    idle_below: float = 1.15
    #: beyond this many times the floor, the limit is cut
    cut_above: float = 2.2
    buckets_per_octave: int = 4
    #: polls in a row with requests waiting before the gauge cuts the limit
    queue_polls: int = 3
    #: after a gauge cut, the limit does not grow for this long
    hold_s: float = 5.0
    #: rounds in a row beyond ``cut_above`` before a cut: one round of a busy client's own stalls is no queue
    high_rounds: int = 2
    #: rounds in a row at ``min_limit`` and still too slow before the floors are learned again
    stuck_rounds: int = 3
    slow_start: bool = field(init=False, default=True)
    _floors: dict[int, float] = field(init=False, default_factory=dict)
    _ratios: list[float] = field(init=False, default_factory=list)
    _changed: float = field(init=False, default=-math.inf)
    _hold_until: float = field(init=False, default=-math.inf)
    _queued: int = field(init=False, default=0)
    _stuck: int = field(init=False, default=0)
    _high: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.limit = max(self.min_limit, min(self.limit, self.start))

    def set_ceiling(self, cap: int) -> None:
        # the server's own limit bounds the growth; the slow start still finds where its queue begins
        self.max_limit = max(self.min_limit, cap)
        self.limit = min(self.limit, self.max_limit)

    def on_answer(self, latency_s: float, tokens: int, in_flight: int) -> None:
        if latency_s <= 0:
            return
        now = self.clock()
        per_token = latency_s / max(tokens, 1)
        key = self._bucket(tokens)
        floor = self._floors.get(key)
        if floor is None or per_token < floor:
            self._floors[key] = per_token
        if floor is None or now - latency_s < self._changed:
            return  # the first answer of its length, or one sent before the last change: no verdict
        self._ratios.append(per_token / floor)
        if len(self._ratios) >= self._round_size():
            ratio = statistics.median(self._ratios)
            self._ratios.clear()
            self._verdict(ratio, in_flight, now)

    def _bucket(self, tokens: int) -> int:
        return int(math.log2(max(tokens, 1)) * self.buckets_per_octave)

    def _round_size(self) -> int:
        # the slow start decides on fewer answers: it is meant to be quick, and it stops at the first doubt
        return min(32, max(2, self.limit // 4)) if self.slow_start else min(32, max(4, self.limit // 2))

    def _verdict(self, ratio: float, in_flight: int, now: float) -> None:
        if ratio > self.cut_above:
            self.slow_start = False
            self._high += 1
            if self._high < self.high_rounds:
                return
            self._high = 0
            if self.limit <= self.min_limit:
                self._stuck += 1
                if self._stuck >= self.stuck_rounds:  # slower even alone: the server changed, not its load
                    self._floors.clear()
                    self._stuck = 0
                return
            # at most halved per round: one round of stalls (the client's own, a hiccup) is not a queue of 10x
            target = min(self.limit, max(in_flight, 1)) * self.grow_below / ratio
            self._set(max(self.min_limit, math.floor(max(target, self.limit / 2))), now)
            return
        self._stuck = self._high = 0
        if ratio > self.grow_below:
            self.slow_start = False  # latency begins to climb: from here on, grow gently
            return
        if now < self._hold_until or in_flight * 2 < self.limit:
            return  # held after a gauge cut, or the limit is not what holds throughput back
        if self.slow_start:
            grown = self.limit * 2
        elif ratio <= self.idle_below:  # no queue at all (e.g. after a cut for a hiccup): no reason to creep back
            grown = math.ceil(self.limit * 1.5)
        else:
            grown = self.limit + math.ceil(math.sqrt(self.limit))
        self._set(min(self.max_limit, grown), now)

    def _set(self, limit: int, now: float) -> None:
        self.limit = limit
        self._changed = now
        self._ratios.clear()

    def on_queue(self, waiting: int, in_flight: int) -> bool:
        if waiting <= 0:
            self._queued = 0
            return False
        self._queued += 1
        if self._queued < self.queue_polls:
            return False
        self._queued = 0
        now = self.clock()
        self.slow_start = False
        self._hold_until = now + self.hold_s
        target = max(self.min_limit, in_flight - waiting)
        if target >= self.limit:
            return False
        self._set(target, now)
        return True

    def on_overload(self) -> bool:
        cut = super().on_overload()
        if cut:
            self.slow_start = False
            self._set(self.limit, self.clock())
        return cut

    def on_sustained_overload(self) -> None:
        super().on_sustained_overload()
        self.slow_start = False
        self._set(self.limit, self.clock())
