"""Latency histograms of fixed size: log-spaced bins, so percentiles are within 2 % and memory never grows,
and the sparse JSON form that lets ``tgbatch status`` merge shards exactly."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


# -- latency ----------------------------------------------------------------------------------------------------


class LatencyHistogram:
    """Counts in fixed log-spaced bins: ``MIN_S * RATIO**i`` for i in 0 .. BINS-1 (0.1 ms .. about 28 h), so a
    percentile is within RATIO/2 (2 %) of the true value and the memory never grows. Values below ``MIN_S`` land
    in bin 0, above the last bin in the last one; percentiles are clamped to the exact min and max seen."""

    MIN_S = 1e-4
    RATIO = 1.04
    BINS = 640

    __slots__ = ("count", "counts", "max", "min", "total")

    def __init__(self) -> None:
        self.counts = [0] * self.BINS
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    @classmethod
    def bin_of(cls, seconds: float) -> int:
        if seconds <= cls.MIN_S:
            return 0
        return min(cls.BINS - 1, int(math.log(seconds / cls.MIN_S) * _INV_LOG_RATIO))

    def add(self, seconds: float, n: int = 1, bin_: int | None = None) -> None:
        """Count ``seconds`` (``n`` times); ``bin_``: its ``bin_of``, when the caller has it already."""
        if not seconds >= 0 or math.isinf(seconds):  # NaN, negative or infinite: not a latency
            return
        self.counts[self.bin_of(seconds) if bin_ is None else bin_] += n
        self.count += n
        self.total += seconds * n
        self.min = min(self.min, seconds)
        self.max = max(self.max, seconds)

    def clear(self) -> None:
        self.counts = [0] * self.BINS
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    def merge(self, other: LatencyHistogram) -> None:
        for i, n in enumerate(other.counts):
            if n:
                self.counts[i] += n
        self.count += other.count
        self.total += other.total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def percentile(self, q: float) -> float | None:
        """The value below which a fraction ``q`` (0..1) of the latencies fall; ``None`` when empty."""
        if self.count == 0:
            return None
        if q <= 0:
            return self.min
        if q >= 1:
            return self.max
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for i, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                mid = self.MIN_S * self.RATIO ** (i + 0.5)  # the bin's geometric middle
                return min(self.max, max(self.min, mid))
        return self.max

    def summary(self) -> dict[str, float | int | None]:
        return {
            "count": self.count,
            "p50": _round(self.percentile(0.50), 4),
            "p95": _round(self.percentile(0.95), 4),
            "p99": _round(self.percentile(0.99), 4),
            "mean": _round(self.total / self.count, 4) if self.count else None,
            "max": _round(self.max, 4) if self.count else None,
        }

    def to_sparse(self) -> dict[str, Any]:
        """The histogram in JSON (the non-empty bins only), so ``status`` can merge shards exactly."""
        return {
            "min_s": self.MIN_S,
            "ratio": self.RATIO,
            "bins": [[i, n] for i, n in enumerate(self.counts) if n],
            "sum": self.total,
            "lo": self.min if self.count else None,
            "hi": self.max if self.count else None,
        }

    @classmethod
    def from_sparse(cls, data: Mapping[str, Any] | None) -> LatencyHistogram:
        hist = cls()
        if not data or data.get("min_s") != cls.MIN_S or data.get("ratio") != cls.RATIO:
            return hist  # another binning (another version): not mergeable, counted as empty
        for i, n in data.get("bins") or []:
            if 0 <= int(i) < cls.BINS:
                hist.counts[int(i)] += int(n)
                hist.count += int(n)
        hist.total = float(data.get("sum") or 0.0)
        if hist.count:
            hist.min = float(data["lo"]) if data.get("lo") is not None else cls.MIN_S
            hist.max = float(data["hi"]) if data.get("hi") is not None else cls.MIN_S * cls.RATIO**cls.BINS
        return hist


_INV_LOG_RATIO = 1.0 / math.log(LatencyHistogram.RATIO)


class _RecentLatency:
    """Latencies of roughly the last ``window_s`` (between one and two windows): two histograms, the current
    and the previous window, rotated when the current one is a window old."""

    def __init__(self, window_s: float, now: float) -> None:
        self.window_s = window_s
        self.current = LatencyHistogram()
        self.previous = LatencyHistogram()
        self.since = now

    def _rotate(self, now: float) -> None:
        if now - self.since >= 2 * self.window_s:
            self.previous.clear()
            self.current.clear()
            self.since = now
        elif now - self.since >= self.window_s:
            self.previous, self.current = self.current, self.previous
            self.current.clear()
            self.since += self.window_s

    def add(self, seconds: float, now: float, bin_: int | None = None) -> None:
        if now - self.since >= self.window_s:
            self._rotate(now)
        self.current.add(seconds, bin_=bin_)

    def combined(self, now: float) -> LatencyHistogram:
        self._rotate(now)
        both = LatencyHistogram()
        both.merge(self.previous)
        both.merge(self.current)
        return both


# -- rates ------------------------------------------------------------------------------------------------------



