"""Preference pairs from the samples of each row: the best-ranked sample is chosen, the worst rejected.

A row with fewer than two ranked samples gives no pair, nor does one whose best and worst rank the same (a tie
says nothing about which answer is preferred). A sample that cannot be ranked (no logprobs, not scored) is left
out of its row. Among equal best (or equal worst) samples the lowest sample index is taken, so a pair never
depends on the order in which rows were written.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from tgbatch.errors import ExportError
from tgbatch.export.source import Scores

MEAN_LOGPROB = "mean_logprob"


def mean_logprob(row: dict[str, Any]) -> float | None:
    """The mean token logprob of a sample: chat and completions jobs' ``details`` (a list of ``{token,
    logprob}``, with ``logprobs: true``) or /generate's ``details.tokens`` (with ``output.details: full``)."""
    details = row.get("details")
    tokens = details.get("tokens") if isinstance(details, dict) else details
    values = [float(t["logprob"]) for t in tokens or [] if t.get("logprob") is not None]
    return sum(values) / len(values) if values else None


def _scorer(rows: list[dict[str, Any]], rank_by: str | None, scores: Scores | None) -> Any:
    if rank_by is None:
        raise ExportError(
            "a preference format needs --rank-by: mean_logprob, or a metric of DIR/scores (run tgbatch score first)"
        )
    if rank_by == MEAN_LOGPROB:
        if rows and not any(mean_logprob(r) is not None for r in rows):
            raise ExportError(
                "--rank-by mean_logprob: no row has logprobs; run the job with parameters.logprobs: true "
                "(chat and completions jobs) or output.details: full (/generate jobs)"
            )
        return mean_logprob
    if scores is None:
        raise ExportError(
            f"--rank-by {rank_by}: DIR/scores/ does not exist; run `tgbatch score DIR` first, "
            "or use --rank-by mean_logprob"
        )
    metrics = sorted({k for s in scores.values() for k in s} - {"row_id", "sample", "extracted"})
    if rank_by not in metrics:
        raise ExportError(f"--rank-by {rank_by!r}: not a score; choose mean_logprob or one of {', '.join(metrics)}")

    def score(row: dict[str, Any]) -> float | None:
        value = (scores.get((str(row["row_id"]), int(row["sample"]))) or {}).get(rank_by)
        return None if value is None else float(value)

    return score


def preference_pairs(
    rows: list[dict[str, Any]], rank_by: str | None, scores: Scores | None
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(chosen, rejected) samples, one pair per row that has a strict best and worst, in row id order."""
    rank = _scorer(rows, rank_by, scores)
    by_row: dict[str, list[tuple[float, int, dict[str, Any]]]] = defaultdict(list)
    for row in rows:
        value = rank(row)
        if value is not None and not math.isnan(value):
            by_row[str(row["row_id"])].append((value, int(row["sample"]), row))
    for row_id in sorted(by_row):
        ranked = by_row[row_id]
        if len(ranked) < 2:
            continue
        best = min(ranked, key=lambda r: (-r[0], r[1]))
        worst = min(ranked, key=lambda r: (r[0], r[1]))
        if best[0] > worst[0]:
            yield best[2], worst[2]
