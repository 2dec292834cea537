"""Aggregates over scored samples: mean, its standard error and a 95% interval (normal approximation, clamped to
[0, 1] since every metric is a 0/1 score or a probability), pass@k by the unbiased estimator of Chen et al. 2021
and maj@k (the majority answer of the first k samples)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Aggregate:
    mean: float | None
    stderr: float | None
    ci95: tuple[float, float] | None
    n: int
    unscored: int

    def to_json(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "stderr": self.stderr,
            "ci95": list(self.ci95) if self.ci95 is not None else None,
            "n": self.n,
            "unscored": self.unscored,
        }


def mean_stderr(values: Sequence[float]) -> tuple[float | None, float | None]:
    """The mean and its standard error (sample standard deviation, n - 1, over sqrt n); stderr 0 for one value."""
    n = len(values)
    if n == 0:
        return None, None
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance / n)


def aggregate(values: Sequence[float], unscored: int) -> Aggregate:
    mean, stderr = mean_stderr(values)
    if mean is None or stderr is None:
        return Aggregate(None, None, None, 0, unscored)
    low, high = max(0.0, mean - Z95 * stderr), min(1.0, mean + Z95 * stderr)
    return Aggregate(mean, stderr, (low, high), len(values), unscored)


def pass_at_k(n: int, c: int, k: int) -> float:
    """The chance that at least one of k samples drawn without replacement from n (c of them right) is right:
    ``1 - C(n-c, k) / C(n, k)``."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (got n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def majority(answers: Sequence[tuple[str, float]]) -> float:
    """maj@k of one row: the score of the answer given most often (ties: the one given first) among ``answers``
    (normalised answer, its score), the first k samples in order."""
    if not answers:
        return 0.0
    counts = Counter(answer for answer, _ in answers)
    top = max(counts.values())
    winner = next(answer for answer, _ in answers if counts[answer] == top)
    return next(score for answer, score in answers if answer == winner)
