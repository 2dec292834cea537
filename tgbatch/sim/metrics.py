"""``GET /metrics``: Prometheus text exposition with TGI's metric names (docs/source/reference/metrics.md).

TGI's exporter renders counters without a ``_total`` suffix (``tgi_request_count 3``) and sizes and durations as
histograms. Simulator-only series are prefixed ``tgbatch_sim_``.
"""

from __future__ import annotations

from bisect import bisect_left

_TOKEN_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0)
_DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _Histogram:
    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.total += value

    def render(self, name: str) -> list[str]:
        lines = [f"# TYPE {name} histogram"]
        cumulative = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            cumulative += n
            lines.append(f'{name}_bucket{{le="{bound:g}"}} {cumulative}')
        lines.append(f'{name}_bucket{{le="+Inf"}} {self.count}')
        lines.append(f"{name}_sum {self.total:g}")
        lines.append(f"{name}_count {self.count}")
        return lines


class Metrics:
    """Counters and histograms of one simulated server."""

    def __init__(self) -> None:
        self.request_count = 0
        self.request_success = 0
        self.failures: dict[str, int] = {}
        self.faults: dict[str, int] = {}
        self.generated_tokens = _Histogram(_TOKEN_BUCKETS)
        self.input_length = _Histogram(_TOKEN_BUCKETS)
        self.max_new_tokens = _Histogram(_TOKEN_BUCKETS)
        self.duration = _Histogram(_DURATION_BUCKETS)
        self.queue_size = 0
        self.batch_size = 0

    def failure(self, error_type: str) -> None:
        self.failures[error_type] = self.failures.get(error_type, 0) + 1

    def fault(self, kind: str) -> None:
        self.faults[kind] = self.faults.get(kind, 0) + 1

    def success(self, generated_tokens: int, input_length: int, max_new_tokens: int, duration_s: float) -> None:
        self.request_success += 1
        self.generated_tokens.observe(generated_tokens)
        self.input_length.observe(input_length)
        self.max_new_tokens.observe(max_new_tokens)
        self.duration.observe(duration_s)

    def render(self) -> str:
        lines = [
            "# TYPE tgi_request_count counter",
            f"tgi_request_count {self.request_count}",
            "# TYPE tgi_request_success counter",
            f"tgi_request_success {self.request_success}",
        ]
        if self.failures:
            lines.append("# TYPE tgi_request_failure counter")
            lines += [f'tgi_request_failure{{err="{err}"}} {n}' for err, n in sorted(self.failures.items())]
        lines += self.generated_tokens.render("tgi_request_generated_tokens")
        lines += self.input_length.render("tgi_request_input_length")
        lines += self.max_new_tokens.render("tgi_request_max_new_tokens")
        lines += self.duration.render("tgi_request_duration")
        lines += [
            "# TYPE tgi_queue_size gauge",
            f"tgi_queue_size {self.queue_size}",
            "# TYPE tgi_batch_current_size gauge",
            f"tgi_batch_current_size {self.batch_size}",
        ]
        if self.faults:
            lines.append("# TYPE tgbatch_sim_faults counter")
            lines += [f'tgbatch_sim_faults{{kind="{kind}"}} {n}' for kind, n in sorted(self.faults.items())]
        return "\n".join(lines) + "\n"
