"""Reading one gauge from a server's Prometheus ``/metrics`` text (TGI's ``tgi_queue_size``, vLLM's
``vllm:num_requests_waiting``, SGLang's ``sglang:num_queue_reqs``).

A scrape is read for a handful of numbers a few times a second, so this reads the text exposition format's
sample lines directly (``name{labels} value [timestamp]``) rather than building every metric family."""

from __future__ import annotations

import math


def gauge(text: str, names: tuple[str, ...]) -> float | None:
    """The sum over label sets of the first of ``names`` the scrape has (a server with several models or
    engines reports one sample per label set); ``None`` when it has none of them."""
    for name in names:
        total: float | None = None
        for line in text.splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            rest = line[len(name) :]
            if rest[:1] not in ("{", " ", "\t"):
                continue  # another metric whose name starts with this one
            if rest.startswith("{"):
                end = rest.rfind("}")
                if end < 0:
                    continue
                rest = rest[end + 1 :]
            fields = rest.split()
            if not fields:
                continue
            try:
                value = float(fields[0])
            except ValueError:
                continue
            if math.isfinite(value):
                total = value if total is None else total + value
        if total is not None:
            return total
    return None
