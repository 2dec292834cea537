"""Live statistics of a running job: ``DIR/progress.json`` while it runs, ``DIR/summary.json`` at the end.

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
import json
import logging
import math
import os
import re
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import anyio

from tgbatch.output.schema import write_atomic

log = logging.getLogger("tgbatch.job")

FORMAT = "tgbatch-progress/1"
STATES = ("running", "finished", "interrupted", "failed", "budget")
#: ``progress.json``, ``summary.json`` and their per-shard ``-<I>of<N>`` forms
STATS_FILE = re.compile(r"^(?P<kind>progress|summary)(-(?P<tag>\d+of\d+))?\.json$")

DEFAULT_INTERVAL_S = 2.0
DEFAULT_WINDOW_S = 60.0


def stats_file_name(kind: str, shard: tuple[int, int] = (0, 1)) -> str:
    """``progress.json`` / ``summary.json``, or ``progress-<I>of<N>.json`` for shard I of N > 1 (the scheme of
    ``manifest-<I>of<N>.json``)."""
    if kind not in ("progress", "summary"):
        raise ValueError(f"kind must be 'progress' or 'summary', not {kind!r}")
    return f"{kind}.json" if shard[1] == 1 else f"{kind}-{shard[0]}of{shard[1]}.json"


def _iso(unix: float) -> str:
    return dt.datetime.fromtimestamp(unix, dt.UTC).isoformat(timespec="milliseconds")


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

    def snapshot(self) -> dict[str, Any]:
        """Everything as a JSON-ready dict (the content of ``progress.json``)."""
        now = self.clock() if self.ended is None else self.ended
        elapsed = max(0.0, now - self.started)
        done_run = self.ok + self.failed
        recent_rows, recent_tokens = self._window.rates(now, self.started)
        overall_rows = done_run / elapsed if elapsed > 0 else None
        overall_tokens = self.tokens / elapsed if elapsed > 0 else None
        remaining = self.remaining
        rate = recent_rows if recent_rows is not None else overall_rows  # 0 (stalled): no ETA
        if remaining == 0:
            eta: float | None = 0.0
        elif remaining is None or not rate or self.ended is not None:
            eta = None
        else:
            eta = remaining / rate
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


# -- the files --------------------------------------------------------------------------------------------------


class ProgressFile:
    """Writes ``stats`` to ``DIR/progress.json`` at most every ``interval_s`` and ``DIR/summary.json`` at the
    end (per-shard names with N > 1). A failed write is logged, never raised: stats must not stop a job."""

    def __init__(
        self,
        stats: LiveStats,
        root: Path,
        shard: tuple[int, int] = (0, 1),
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        write: Callable[[Path, bytes], None] = write_atomic,
    ) -> None:
        self.stats = stats
        self.root = Path(root)
        self.path = self.root / stats_file_name("progress", shard)
        self.summary_path = self.root / stats_file_name("summary", shard)
        self.interval_s = interval_s
        self._write = write
        self._next = -math.inf
        self._warned_at = -math.inf
        self.writes = 0

    def due(self, now: float | None = None) -> bool:
        return (self.stats.clock() if now is None else now) >= self._next

    def _payload(self) -> bytes:
        snapshot = self.stats.snapshot()
        snapshot["interval_s"] = self.interval_s
        return (json.dumps(snapshot, indent=1, allow_nan=False) + "\n").encode("utf-8")

    def _put(self, path: Path, payload: bytes) -> bool:
        try:
            self._write(path, payload)
        except OSError as exc:
            now = self.stats.clock()
            if now - self._warned_at >= 60.0:
                self._warned_at = now
                log.warning("could not write %s: %s (the job goes on)", path, exc)
            return False
        self.writes += 1
        return True

    def maybe_write(self, now: float | None = None) -> bool:
        """Write ``progress.json`` if ``interval_s`` has passed since the last write (cheap otherwise). Call it
        after each result and on a timer. Blocks for the write (a few ms: fsyncs); see ``maybe_write_async``."""
        now = self.stats.clock() if now is None else now
        if now < self._next:
            return False
        self._next = now + self.interval_s
        return self._put(self.path, self._payload())

    async def maybe_write_async(self, now: float | None = None) -> bool:
        """``maybe_write`` with the file I/O in a worker thread (the snapshot is taken here, on the loop)."""
        now = self.stats.clock() if now is None else now
        if now < self._next:
            return False
        self._next = now + self.interval_s
        payload = self._payload()
        return await anyio.to_thread.run_sync(self._put, self.path, payload)

    def write_final(self, state: str, reason: str | None = None) -> dict[str, Any]:
        """End of run: freeze the stats in ``state`` and write both ``progress.json`` (so ``status`` sees the
        run is over) and ``summary.json``. Returns the final snapshot (for ``format_summary``)."""
        if self.stats.state == "running":
            self.stats.finish(state, reason)
        payload = self._payload()
        self._put(self.path, payload)
        self._put(self.summary_path, payload)
        return json.loads(payload)

    async def write_final_async(self, state: str, reason: str | None = None) -> dict[str, Any]:
        if self.stats.state == "running":
            self.stats.finish(state, reason)
        payload = self._payload()

        def put_both() -> None:
            self._put(self.path, payload)
            self._put(self.summary_path, payload)

        await anyio.to_thread.run_sync(put_both)
        return json.loads(payload)


# -- reading the files back (tgbatch status) --------------------------------------------------------------------


def read_stats_files(root: Path, kind: str = "progress") -> list[tuple[Path, dict[str, Any]]]:
    """Every ``progress*.json`` (or ``summary*.json``) in ``root`` that parses; unreadable ones are skipped
    (a file from another version, or a folder being deleted)."""
    found: list[tuple[Path, dict[str, Any]]] = []
    if not root.is_dir():
        return found
    for path in sorted(root.iterdir()):
        match = STATS_FILE.match(path.name)
        if not match or match["kind"] != kind:
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("format") == FORMAT:
            found.append((path, data))
    return found


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    except OSError:
        return False
    return True


def stale_after_s(snapshot: Mapping[str, Any]) -> float:
    """How old a running job's progress file may get before the job is taken for dead (when its pid cannot be
    checked: another host)."""
    interval = float(snapshot.get("interval_s") or DEFAULT_INTERVAL_S)
    return max(60.0, 30 * interval)


def is_live(
    snapshot: Mapping[str, Any],
    *,
    now: float | None = None,
    hostname: str | None = None,
    alive: Callable[[int], bool] = pid_alive,
) -> bool:
    """Whether the run that wrote ``snapshot`` is still running: its state says so, and its pid is alive when
    it ran on this host; on another host (a shared folder), its last update is recent."""
    if snapshot.get("state") != "running":
        return False
    now = time.time() if now is None else now
    hostname = socket.gethostname() if hostname is None else hostname
    age = now - float(snapshot.get("updated_unix") or 0.0)
    if age > stale_after_s(snapshot):
        return False  # pid reuse, or a run on another host that stopped writing
    if snapshot.get("hostname") == hostname:
        pid = snapshot.get("pid")
        return isinstance(pid, int) and alive(pid)
    return True


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


def merge_snapshots(snapshots: list[Mapping[str, Any]]) -> dict[str, Any]:
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
    etas = [s.get("eta_s") for s in snapshots]
    merged["eta_s"] = None if any(e is None for e in etas) else max(etas)
    eta_ats = [s.get("eta_at") for s in snapshots]
    merged["eta_at"] = None if any(e is None for e in eta_ats) else max(eta_ats)
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


# -- human-readable ---------------------------------------------------------------------------------------------


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def format_latency(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.2f}s"


def format_rate(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f} {unit}" if value < 100 else f"{value:,.0f} {unit}"


def format_retries(snapshot: Mapping[str, Any]) -> str:
    retries = int(snapshot.get("retries") or 0)
    causes = snapshot.get("retries_by_cause") or {}
    if not retries:
        return "0"
    return f"{retries} (" + ", ".join(f"{cause} {n}" for cause, n in causes.items()) + ")"


def format_endpoint(url: str, figures: Mapping[str, Any]) -> str:
    parts = [f"{int(figures.get('ok') or 0)} ok", f"{int(figures.get('failed') or 0)} failed"]
    parts.append(f"{int(figures.get('retries') or 0)} retries")
    if figures.get("in_flight") is not None:
        limit = figures.get("limit")
        parts.append(f"{figures['in_flight']}{f'/{limit}' if limit is not None else ''} in flight")
    elif figures.get("limit") is not None:
        parts.append(f"limit {figures['limit']}")
    if figures.get("ejected"):
        parts.append("EJECTED")
    return f"{url}: " + ", ".join(parts)


def format_summary(snapshot: Mapping[str, Any]) -> str:
    """The final summary a run prints: rows, throughput, tokens/s, latency, retries, endpoints."""
    state = snapshot.get("state") or "finished"
    reason = snapshot.get("reason")
    ok, failed = int(snapshot.get("done_this_run") or 0), int(snapshot.get("failed_this_run") or 0)
    lines = [
        f"{state}{f' ({reason})' if reason else ''}: {ok} rows generated, {failed} failed in "
        f"{format_duration(snapshot.get('elapsed_s'))}"
        + (
            f"; {int(snapshot.get('already_done') or 0)} rows were already written"
            if snapshot.get("already_done")
            else ""
        ),
        f"  throughput: {format_rate(snapshot.get('rows_per_s_overall'), 'rows/s')}, "
        f"{format_rate(snapshot.get('tokens_per_s_overall'), 'generated tokens/s')} "
        f"({int(snapshot.get('generated_tokens') or 0)} tokens)",
    ]
    latency = snapshot.get("latency_s") or {}
    if latency.get("count"):
        lines.append(
            f"  latency:    p50 {format_latency(latency.get('p50'))}, p95 {format_latency(latency.get('p95'))}, "
            f"max {format_latency(latency.get('max'))}"
        )
    lines.append(f"  retries:    {format_retries(snapshot)}")
    endpoints = snapshot.get("endpoints") or {}
    for url, figures in endpoints.items():
        lines.append(f"  endpoint    {format_endpoint(url, figures)}")
    return "\n".join(lines)


__all__ = [
    "STATES",
    "LatencyHistogram",
    "LiveStats",
    "ProgressFile",
    "format_summary",
    "is_live",
    "merge_snapshots",
    "read_stats_files",
    "stats_file_name",
]
