"""Live statistics of a running job (what ``DIR/progress.json`` and ``DIR/summary.json`` hold).

``LiveStats`` is fed by the pipeline (``row_done``, ``retry``) and read by ``snapshot()``. It has a single owner,
the event loop the pipeline runs on: every call is synchronous and made from that loop (never from a worker
thread), so nothing needs a lock. Memory is fixed however many rows go by: counters, a ring of per-second
buckets for the recent rates, and log-binned latency histograms with a fixed number of bins.

``ProgressFile`` writes the snapshot atomically (temp file, fsync, rename, fsync the folder: the writer's
``write_atomic``) at most every ``interval_s``, so ``progress.json`` is always complete, valid JSON. With
``--shard I/N`` (N > 1) the files are ``progress-<I>of<N>.json`` and ``summary-<I>of<N>.json``, as the manifests.

``tgbatch status`` reads the files back: ``read_progress`` finds them, ``is_live`` tells a running job from one
that died (its pid on this host, else how recently the file was updated) and ``merge_snapshots`` sums shards.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from tgbatch.metrics.histogram import LatencyHistogram, _RecentLatency, _round

log = logging.getLogger("tgbatch.job")

FORMAT = "tgbatch-progress/1"
STATES = ("running", "finished", "interrupted", "failed", "budget")

DEFAULT_WINDOW_S = 60.0


def _iso(unix: float) -> str:
    return dt.datetime.fromtimestamp(unix, dt.UTC).isoformat(timespec="milliseconds")




class _Window:
    """Rows and tokens per ``bucket_s`` for the last ``window_s``: a ring of at most window_s / bucket_s
    buckets."""

    def __init__(self, window_s: float, bucket_s: float = 1.0) -> None:
        self.bucket_s = bucket_s
        self.buckets = max(1, math.ceil(window_s / bucket_s))
        self.window_s = self.buckets * bucket_s
        self.ring: deque[list[float]] = deque()  # [bucket key, rows, tokens]

    def _prune(self, key: int) -> None:
        while self.ring and self.ring[0][0] <= key - self.buckets:
            self.ring.popleft()

    def add(self, now: float, rows: int, tokens: int) -> None:
        key = math.floor(now / self.bucket_s)
        if self.ring and self.ring[-1][0] == key:
            self.ring[-1][1] += rows
            self.ring[-1][2] += tokens
        else:
            self.ring.append([key, rows, tokens])
        self._prune(key)

    def rates(self, now: float, started: float) -> tuple[float | None, float | None]:
        """(rows/s, tokens/s) over the window (or since ``started`` when that is more recent)."""
        key = math.floor(now / self.bucket_s)
        self._prune(key)
        begin = max(started, (key - self.buckets + 1) * self.bucket_s)
        span = now - begin
        if span <= 0:
            return None, None
        rows = sum(b[1] for b in self.ring)
        tokens = sum(b[2] for b in self.ring)
        return rows / span, tokens / span


# -- the live statistics ----------------------------------------------------------------------------------------


class _EndpointCounts:
    __slots__ = ("failed", "in_flight", "ok", "retries", "tokens")

    def __init__(self) -> None:
        self.ok = self.failed = self.retries = self.tokens = 0
        self.in_flight: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok, "failed": self.failed, "retries": self.retries, "tokens": self.tokens}
        if self.in_flight is not None:
            out["in_flight"] = self.in_flight
        return out


class LiveStats:
    """Counters, rates, ETA, latency percentiles, retries by cause and per-endpoint counts of one run.

    ``total`` is the number of rows (times samples) this run has to do, not counting ``already_done`` /
    ``already_failed`` (what earlier runs wrote): ``None`` until counted, then ``set_total``. ``in_flight`` is a
    callable giving the requests in flight (or call ``set_in_flight``); ``endpoints`` a callable giving extra
    per-endpoint figures (e.g. ``EndpointPool.stats``: limit, ejected, ...) merged into the per-endpoint counts
    (the keys counted here, ``ok``/``failed``/``retries``/``tokens``, keep their meaning: rows, not requests).
    ``clock`` (monotonic seconds) drives every rate; ``wall`` (Unix seconds) only the timestamps.
    """

    def __init__(
        self,
        *,
        total: int | None = None,
        already_done: int = 0,
        already_failed: int = 0,
        job: str | None = None,
        shard: tuple[int, int] = (0, 1),
        in_flight: Callable[[], int] | None = None,
        endpoints: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None,
        window_s: float = DEFAULT_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        pid: int | None = None,
        hostname: str | None = None,
    ) -> None:
        self.clock = clock
        self.wall = wall
        self.job = job
        self.shard = shard
        self.total = total
        self.already_done = already_done
        self.already_failed = already_failed
        self.pid = os.getpid() if pid is None else pid
        self.hostname = socket.gethostname() if hostname is None else hostname
        self._in_flight_fn = in_flight
        self._in_flight = 0
        self._endpoints_fn = endpoints
        self.started = clock()
        self.started_unix = wall()
        self.ended: float | None = None
        self.state = "running"
        self.reason: str | None = None
        self.ok = self.failed = self.tokens = self.attempts = self.retries = 0
        self.retries_by_cause: dict[str, int] = {}
        self.per_endpoint: dict[str, _EndpointCounts] = {}
        self.latency = LatencyHistogram()
        self._recent_latency = _RecentLatency(window_s, self.started)
        self._window = _Window(window_s)

    # -- events (from the pipeline, on its event loop) -----------------------------------------------------

    def set_total(self, total: int | None) -> None:
        self.total = total

    def set_prior(self, *, already_done: int, already_failed: int) -> None:
        self.already_done = already_done
        self.already_failed = already_failed

    def set_in_flight(self, n: int, endpoint: str | None = None) -> None:
        """The requests in flight now (of ``endpoint`` when given), for callers without an ``in_flight``
        callable."""
        if endpoint is None:
            self._in_flight = n
        else:
            self._endpoint(endpoint).in_flight = n

    def _endpoint(self, url: str) -> _EndpointCounts:
        counts = self.per_endpoint.get(url)
        if counts is None:
            counts = self.per_endpoint[url] = _EndpointCounts()
        return counts

    def row_done(
        self, ok: bool, tokens: int = 0, latency_s: float = 0.0, endpoint: str | None = None, attempts: int = 1
    ) -> None:
        """A row (one sample) finished for good: generated (``ok``) or failed. ``latency_s`` is the duration
        of its last request; only successful rows' latencies go into the percentiles."""
        now = self.clock()
        tokens = max(0, int(tokens or 0))
        if ok:
            self.ok += 1
            self.tokens += tokens
            if latency_s >= 0 and not math.isinf(latency_s):
                bin_ = LatencyHistogram.bin_of(latency_s)
                self.latency.add(latency_s, bin_=bin_)
                self._recent_latency.add(latency_s, now, bin_)
        else:
            self.failed += 1
        self.attempts += max(0, int(attempts or 0))
        self._window.add(now, 1, tokens if ok else 0)
        if endpoint is not None:
            counts = self._endpoint(endpoint)
            if ok:
                counts.ok += 1
                counts.tokens += tokens
            else:
                counts.failed += 1

    def retry(self, cause: str | BaseException, endpoint: str | None = None) -> None:
        """A request failed and its row will be tried again. ``cause``: the error class name
        (``OverloadedError``, ``RateLimitError``, ``TransportError``, ...) or the exception itself."""
        name = cause if isinstance(cause, str) else type(cause).__name__
        self.retries += 1
        self.retries_by_cause[name] = self.retries_by_cause.get(name, 0) + 1
        if endpoint is not None:
            self._endpoint(endpoint).retries += 1

    def finish(self, state: str, reason: str | None = None) -> None:
        """The run ended: ``finished``, ``interrupted``, ``failed`` or ``budget`` (a budget was reached).
        Freezes the elapsed time."""
        if state not in STATES or state == "running":
            raise ValueError(f"state must be one of {', '.join(STATES[1:])}, not {state!r}")
        self.state = state
        self.reason = reason
        self.ended = self.clock()

    # -- reading -------------------------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        if self.ended is not None:
            return 0
        if self._in_flight_fn is not None:
            try:
                return int(self._in_flight_fn())
            except Exception:  # a figure for display: never let it break the job
                return self._in_flight
        return self._in_flight

    @property
    def remaining(self) -> int | None:
        if self.total is None:
            return None
        return max(0, self.total - self.ok - self.failed)

    def _eta(self, remaining: int | None, rate: float | None) -> float | None:
        if remaining == 0:
            return 0.0
        if remaining is None or not rate or self.ended is not None:  # a rate of 0 (stalled): no ETA
            return None
        return remaining / rate

    def snapshot(self) -> dict[str, Any]:
        """Everything as a JSON-ready dict (the content of ``progress.json``)."""
        now = self.clock() if self.ended is None else self.ended
        elapsed = max(0.0, now - self.started)
        done_run = self.ok + self.failed
        recent_rows, recent_tokens = self._window.rates(now, self.started)
        overall_rows = done_run / elapsed if elapsed > 0 else None
        overall_tokens = self.tokens / elapsed if elapsed > 0 else None
        remaining = self.remaining
        eta = self._eta(remaining, recent_rows if recent_rows is not None else overall_rows)
        updated_unix = self.wall()
        recent_latency = self._recent_latency.combined(now)
        latency = self.latency.summary()
        latency["recent_p50"] = _round(recent_latency.percentile(0.50), 4)
        latency["recent_p95"] = _round(recent_latency.percentile(0.95), 4)
        return {
            "format": FORMAT,
            "job": self.job,
            "shard": f"{self.shard[0]}/{self.shard[1]}",
            "state": self.state,
            "reason": self.reason,
            "pid": self.pid,
            "hostname": self.hostname,
            "started_at": _iso(self.started_unix),
            "updated_at": _iso(updated_unix),
            "updated_unix": round(updated_unix, 3),
            "elapsed_s": round(elapsed, 3),
            "done": self.already_done + self.ok,
            "failed": self.already_failed + self.failed,
            "done_this_run": self.ok,
            "failed_this_run": self.failed,
            "already_done": self.already_done,
            "already_failed": self.already_failed,
            "in_flight": self.in_flight,
            "total": self.total,
            "remaining": remaining,
            "generated_tokens": self.tokens,
            "window_s": self._window.window_s,
            "rows_per_s": _round(recent_rows),
            "tokens_per_s": _round(recent_tokens, 1),
            "rows_per_s_overall": _round(overall_rows),
            "tokens_per_s_overall": _round(overall_tokens, 1),
            "eta_s": _round(eta, 1),
            "eta_at": None if eta is None else _iso(updated_unix + eta),
            "latency_s": latency,
            "attempts": self.attempts,
            "retries": self.retries,
            "retries_by_cause": dict(sorted(self.retries_by_cause.items(), key=lambda kv: (-kv[1], kv[0]))),
            "endpoints": self._endpoint_snapshot(),
            "latency_histogram": self.latency.to_sparse(),
            "recent_latency_histogram": recent_latency.to_sparse(),
        }

    def _endpoint_snapshot(self) -> dict[str, dict[str, Any]]:
        extra: Mapping[str, Mapping[str, Any]] = {}
        if self._endpoints_fn is not None:
            try:
                extra = self._endpoints_fn() or {}
            except Exception:  # a figure for display: never let it break the job
                extra = {}
        out: dict[str, dict[str, Any]] = {}
        for url in list(self.per_endpoint) + [u for u in extra if u not in self.per_endpoint]:
            counts = self.per_endpoint[url].as_dict() if url in self.per_endpoint else _EndpointCounts().as_dict()
            for key, value in (extra.get(url) or {}).items():
                if key not in ("ok", "failed", "retries", "tokens"):
                    counts[key] = _jsonable(value)
            out[url] = counts
        return out


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return str(value)


