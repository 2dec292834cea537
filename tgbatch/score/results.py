"""A folder's scores gathered per row, and the entries of ``scores.json``: one per metric, then ``pass@K`` and
``maj@K`` (from the first metric) per k. Failed samples are unscored and counted apart, unless counted wrong."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from tgbatch.score.aggregate import Aggregate, aggregate, majority, pass_at_k
from tgbatch.score.metrics import SampleScore
from tgbatch.score.spec import ScoreSpec


@dataclass
class _Row:
    scored: dict[int, SampleScore] = field(default_factory=dict)
    failed: set[int] = field(default_factory=set)
    #: samples generated but not scorable (no reference)
    unscorable: set[int] = field(default_factory=set)


class Results:
    """Collects samples (scored, failed, unscorable) and computes the aggregates."""

    def __init__(self, spec: ScoreSpec, *, failed_as_wrong: bool = False) -> None:
        self.spec = spec
        self.failed_as_wrong = failed_as_wrong
        self._rows: dict[str, _Row] = defaultdict(_Row)

    def add_scored(self, row_id: str, sample: int, score: SampleScore) -> None:
        self._rows[row_id].scored[sample] = score

    def add_failed(self, row_id: str, sample: int) -> None:
        self._rows[row_id].failed.add(sample)

    def add_unscorable(self, row_id: str, sample: int) -> None:
        self._rows[row_id].unscorable.add(sample)

    def summary(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {metric: self._metric(metric).to_json() for metric in self.spec.metrics}
        first = self.spec.metrics[0]
        for k in self.spec.k:
            out[f"pass@{k}"] = self._per_row(k, first, self._pass).to_json()
        for k in self.spec.k:
            out[f"maj@{k}"] = self._per_row(k, first, self._maj).to_json()
        return out

    def _metric(self, metric: str) -> Aggregate:
        values: list[float] = []
        unscored = 0
        for row in self._rows.values():
            values.extend(s.values[metric] for s in row.scored.values())
            unscored += len(row.unscorable)
            if self.failed_as_wrong:
                values.extend(0.0 for _ in row.failed)
            else:
                unscored += len(row.failed)
        return aggregate(values, unscored)

    def _per_row(self, k: int, metric: str, one: Any) -> Aggregate:
        values: list[float] = []
        unscored = 0
        for row in self._rows.values():
            value = one(row, k, metric)
            if value is None:
                unscored += 1
            else:
                values.append(value)
        return aggregate(values, unscored)

    def _pass(self, row: _Row, k: int, metric: str) -> float | None:
        """pass@k over the row's scored samples (and its failed ones, as wrong, with failed_as_wrong); a row with
        fewer than k of them is unscored."""
        correct = sum(1 for s in row.scored.values() if s.values[metric] == 1.0)
        n = len(row.scored) + (len(row.failed) if self.failed_as_wrong else 0)
        return pass_at_k(n, correct, k) if n >= k else None

    def _maj(self, row: _Row, k: int, metric: str) -> float | None:
        """maj@k over samples 0..k-1: unscored unless each is scored (or failed, counted as a wrong non-vote)."""
        votes = []
        for sample in range(k):
            score = row.scored.get(sample)
            if score is not None:
                votes.append((score.answer, score.values[metric]))
            elif not (self.failed_as_wrong and sample in row.failed):
                return None
        return majority(votes)
