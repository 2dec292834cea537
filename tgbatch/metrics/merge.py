"""Several shards' snapshots as one (``tgbatch status`` over a folder that several ``--shard`` runs write)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tgbatch.metrics.histogram import LatencyHistogram, _round
from tgbatch.metrics.live import FORMAT

_SUMMED = (
    "done",
    "failed",
    "done_this_run",
    "failed_this_run",
    "already_done",
    "already_failed",
    "in_flight",
    "generated_tokens",
    "attempts",
    "retries",
)
_RATES = ("rows_per_s", "tokens_per_s", "rows_per_s_overall", "tokens_per_s_overall")


def _sum_or_none(values: Iterable[Any]) -> Any:
    values = list(values)
    if any(v is None for v in values):
        return None
    return sum(values)


def _merge_values(a: Any, b: Any) -> Any:
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) or bool(b)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a + b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        merged = dict(a)
        for key, value in b.items():
            merged[key] = _merge_values(merged[key], value) if key in merged else value
        return merged
    return b if b is not None else a


def merge_snapshots(snapshots: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Several shards' snapshots as one: counts and rates summed, the ETA of the slowest shard, latency
    percentiles from the merged histograms, retries and endpoints summed."""
    if not snapshots:
        raise ValueError("nothing to merge")
    if len(snapshots) == 1:
        return dict(snapshots[0])
    merged: dict[str, Any] = {
        "format": FORMAT,
        "job": next((s.get("job") for s in snapshots if s.get("job")), None),
        "shard": ",".join(str(s.get("shard")) for s in snapshots),
        "shards": len(snapshots),
        "state": "running" if any(s.get("state") == "running" for s in snapshots) else snapshots[-1].get("state"),
        "started_at": min(str(s.get("started_at")) for s in snapshots),
        "updated_at": max(str(s.get("updated_at")) for s in snapshots),
        "elapsed_s": max(float(s.get("elapsed_s") or 0.0) for s in snapshots),
    }
    for key in _SUMMED:
        merged[key] = sum(int(s.get(key) or 0) for s in snapshots)
    merged["total"] = _sum_or_none(s.get("total") for s in snapshots)
    merged["remaining"] = _sum_or_none(s.get("remaining") for s in snapshots)
    for key in _RATES:
        merged[key] = _round(_sum_or_none(s.get(key) for s in snapshots))
    # the slowest shard decides when the whole is done; unknown if any shard's is
    etas = [s.get("eta_s") for s in snapshots]
    merged["eta_s"] = max(float(e) for e in etas if e is not None) if None not in etas else None
    eta_ats = [s.get("eta_at") for s in snapshots]
    merged["eta_at"] = max(str(e) for e in eta_ats if e is not None) if None not in eta_ats else None
    overall = LatencyHistogram()
    recent = LatencyHistogram()
    for s in snapshots:
        overall.merge(LatencyHistogram.from_sparse(s.get("latency_histogram")))
        recent.merge(LatencyHistogram.from_sparse(s.get("recent_latency_histogram")))
    latency = overall.summary()
    latency["recent_p50"] = _round(recent.percentile(0.50), 4)
    latency["recent_p95"] = _round(recent.percentile(0.95), 4)
    merged["latency_s"] = latency
    causes: dict[str, int] = {}
    endpoints: dict[str, Any] = {}
    for s in snapshots:
        for cause, n in (s.get("retries_by_cause") or {}).items():
            causes[cause] = causes.get(cause, 0) + int(n)
        for url, figures in (s.get("endpoints") or {}).items():
            endpoints[url] = _merge_values(endpoints[url], figures) if url in endpoints else dict(figures)
    merged["retries_by_cause"] = dict(sorted(causes.items(), key=lambda kv: (-kv[1], kv[0])))
    merged["endpoints"] = endpoints
    merged["latency_histogram"] = overall.to_sparse()
    merged["recent_latency_histogram"] = recent.to_sparse()
    return merged




