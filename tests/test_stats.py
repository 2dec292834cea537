"""Live stats: the maths (rates, ETA, percentiles) on a fake clock, bounded memory, atomic progress.json,
and ``tgbatch status`` for running, finished and dead jobs."""

from __future__ import annotations

import json
import os
import random
import re
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tgbatch.cli import _register, app
from tgbatch.cli._format import format_summary
from tgbatch.metrics.histogram import LatencyHistogram
from tgbatch.metrics.live import LiveStats
from tgbatch.metrics.merge import merge_snapshots
from tgbatch.output.progress import ProgressFile, is_live, read_stats_files, stats_file_name
from tgbatch.status import collect_status

runner = CliRunner()
_register()
HOST = socket.gethostname()


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _stats(clock: Clock, **kwargs: Any) -> LiveStats:
    kwargs.setdefault("wall", lambda: 1_700_000_000.0 + clock.t)
    return LiveStats(clock=clock, pid=4242, hostname="node-a", **kwargs)


# -- the maths ----------------------------------------------------------------------------------------------------


def test_counts_rates_and_eta() -> None:
    clock = Clock()
    stats = _stats(clock, total=1000, already_done=50, already_failed=2, window_s=10)
    # 8 rows/s for 20 s (ok, 30 tokens each), then 2 rows/s for 10 s, every 10th failing (binary fractions:
    # the fake clock stays exact)
    for _ in range(160):
        clock.t += 0.125
        stats.row_done(True, tokens=30, latency_s=0.5, endpoint="http://a", attempts=1)
    for i in range(20):
        clock.t += 0.5
        stats.row_done(i % 10 != 0, tokens=30, latency_s=0.5, endpoint="http://a", attempts=2)
    snap = stats.snapshot()
    assert snap["elapsed_s"] == 30.0
    assert (snap["done_this_run"], snap["failed_this_run"]) == (178, 2)
    assert (snap["done"], snap["failed"], snap["already_done"], snap["already_failed"]) == (228, 4, 50, 2)
    assert snap["remaining"] == 1000 - 180
    assert snap["attempts"] == 160 + 40
    assert snap["generated_tokens"] == 178 * 30
    # overall: 180 rows in 30 s; recent: the window's whole 1 s buckets, from t = 21 to now (t = 30), hold 19
    # rows of the slow phase, 18 ok
    assert snap["rows_per_s_overall"] == 6.0 and snap["tokens_per_s_overall"] == 178.0
    assert snap["rows_per_s"] == round(19 / 9, 3) and snap["tokens_per_s"] == 18 * 30 / 9
    # the ETA follows the recent rate, not the overall one
    assert snap["eta_s"] == round(820 / (19 / 9), 1)
    assert snap["eta_at"] is not None and snap["window_s"] == 10
    json.dumps(snap, allow_nan=False)


def test_eta_unknown_total_stall_and_done() -> None:
    clock = Clock()
    stats = _stats(clock, window_s=5)
    clock.t += 1
    stats.row_done(True, tokens=1, latency_s=0.1)
    snap = stats.snapshot()
    assert snap["total"] is None and snap["remaining"] is None and snap["eta_s"] is None
    stats.set_total(3)
    assert stats.snapshot()["eta_s"] == pytest.approx(2.0)  # 2 left at 1 row/s
    clock.t += 60  # nothing for a whole window: stalled, no ETA rather than a made-up one
    snap = stats.snapshot()
    assert snap["rows_per_s"] == 0 and snap["eta_s"] is None and snap["rows_per_s_overall"] > 0
    stats.row_done(True)
    stats.row_done(False, endpoint=None, attempts=0)  # a template error: no request, no endpoint
    snap = stats.snapshot()
    assert snap["remaining"] == 0 and snap["eta_s"] == 0.0 and snap["attempts"] == 2


def test_rates_before_the_first_window_is_full() -> None:
    clock = Clock(5000.3)
    stats = _stats(clock, window_s=60)
    assert stats.snapshot()["rows_per_s"] is None  # no time has passed: no rate, not a division by zero
    for _ in range(10):
        clock.t += 0.5
        stats.row_done(True, tokens=10, latency_s=0.2)
    snap = stats.snapshot()
    assert snap["rows_per_s"] == pytest.approx(2.0) and snap["rows_per_s_overall"] == pytest.approx(2.0)
    assert snap["tokens_per_s"] == pytest.approx(20.0)


def test_latency_percentiles() -> None:
    rng = random.Random(7)
    values = [rng.uniform(0.01, 10.0) for _ in range(20_000)]
    hist = LatencyHistogram()
    for v in values:
        hist.add(v)
    values.sort()
    for q in (0.5, 0.95, 0.99):
        exact = values[int(q * len(values)) - 1]
        assert hist.percentile(q) == pytest.approx(exact, rel=0.03)
    assert hist.summary()["max"] == pytest.approx(max(values), abs=1e-4)
    assert hist.summary()["mean"] == pytest.approx(sum(values) / len(values), abs=1e-4)
    # tiny, huge and invalid values neither crash nor escape the exact min/max
    odd = LatencyHistogram()
    for v in (0.0, 1e-9, 5e6, float("nan"), -1.0, float("inf")):
        odd.add(v)
    assert odd.count == 3 and odd.percentile(0.0) == 0.0 and odd.percentile(1.0) == 5e6
    assert LatencyHistogram().percentile(0.5) is None


def test_latency_in_live_stats_recent_and_overall() -> None:
    clock = Clock()
    stats = _stats(clock, window_s=10)
    for _ in range(100):  # slow at first ...
        clock.t += 0.1
        stats.row_done(True, tokens=1, latency_s=2.0)
    clock.t += 30
    for _ in range(100):  # ... fast now
        clock.t += 0.05
        stats.row_done(True, tokens=1, latency_s=0.1)
    stats.row_done(False, latency_s=99.0)  # failed rows' latencies are not request latencies
    latency = stats.snapshot()["latency_s"]
    assert latency["count"] == 200
    assert latency["p50"] == pytest.approx(0.1, rel=0.03) and latency["p95"] == pytest.approx(2.0, rel=0.03)
    assert latency["recent_p50"] == pytest.approx(0.1, rel=0.03) and latency["recent_p95"] == pytest.approx(
        0.1, rel=0.03
    )


def test_memory_is_bounded() -> None:
    clock = Clock()
    stats = _stats(clock, window_s=30)
    rng = random.Random(1)

    def sizes() -> tuple[int, ...]:
        recent = stats._recent_latency
        return (len(stats.latency.counts), len(recent.current.counts), len(recent.previous.counts))

    before = sizes()
    for i in range(200_000):
        clock.t += 0.01
        stats.row_done(rng.random() > 0.01, tokens=rng.randrange(100), latency_s=rng.expovariate(1.0), endpoint="e")
        if i % 1000 == 0:
            stats.retry("OverloadedError", "e")
    assert sizes() == before == (LatencyHistogram.BINS,) * 3
    assert len(stats._window.ring) <= stats._window.buckets == 30
    assert len(stats.per_endpoint) == 1 and len(stats.retries_by_cause) == 1
    assert len(json.dumps(stats.snapshot())) < 40_000


def test_retries_endpoints_and_in_flight() -> None:
    clock = Clock()
    in_flight = [7]
    pool = {
        "http://a": {"ok": 999, "in_flight": 3, "limit": 16, "ejected": False, "errors": {"OverloadedError": 2}},
        "http://c": {"in_flight": 0, "limit": 4, "ejected": True},
    }
    stats = _stats(clock, in_flight=lambda: in_flight[0], endpoints=lambda: pool)
    stats.retry("OverloadedError", "http://a")
    stats.retry("OverloadedError", "http://a")
    stats.retry(TimeoutError("x"), "http://b")
    stats.retry("RateLimitError")
    clock.t += 1
    stats.row_done(True, tokens=5, latency_s=0.3, endpoint="http://a", attempts=3)
    stats.row_done(False, tokens=0, latency_s=0.3, endpoint="http://b", attempts=10)
    snap = stats.snapshot()
    assert snap["in_flight"] == 7 and snap["retries"] == 4
    assert snap["retries_by_cause"] == {"OverloadedError": 2, "RateLimitError": 1, "TimeoutError": 1}
    assert list(snap["retries_by_cause"]) == ["OverloadedError", "RateLimitError", "TimeoutError"]
    a, b, c = (snap["endpoints"][u] for u in ("http://a", "http://b", "http://c"))
    # rows counted here keep their meaning; the pool's other figures are merged in
    assert a == {
        "ok": 1,
        "failed": 0,
        "retries": 2,
        "tokens": 5,
        "in_flight": 3,
        "limit": 16,
        "ejected": False,
        "errors": {"OverloadedError": 2},
    }
    assert b == {"ok": 0, "failed": 1, "retries": 1, "tokens": 0}
    assert c["ejected"] is True and c["ok"] == 0
    # without callables: set_in_flight
    plain = _stats(clock)
    plain.set_in_flight(5)
    plain.set_in_flight(2, endpoint="http://a")
    snap = plain.snapshot()
    assert snap["in_flight"] == 5 and snap["endpoints"]["http://a"]["in_flight"] == 2


def test_a_broken_figure_callable_does_not_break_the_snapshot() -> None:
    def boom() -> Any:
        raise RuntimeError("pool gone")

    snap = _stats(Clock(), in_flight=boom, endpoints=boom).snapshot()
    assert snap["in_flight"] == 0 and snap["endpoints"] == {}


def test_finish_freezes_the_figures() -> None:
    clock = Clock()
    stats = _stats(clock, total=10, in_flight=lambda: 3)
    clock.t += 4
    for _ in range(4):
        stats.row_done(True, tokens=10, latency_s=1.0)
    stats.finish("interrupted", "SIGTERM")
    clock.t += 100
    snap = stats.snapshot()
    assert (snap["state"], snap["reason"], snap["elapsed_s"], snap["in_flight"]) == ("interrupted", "SIGTERM", 4, 0)
    assert snap["eta_s"] is None and snap["rows_per_s_overall"] == 1.0
    with pytest.raises(ValueError):
        stats.finish("running")
    with pytest.raises(ValueError):
        stats.finish("exploded")


def test_format_summary() -> None:
    clock = Clock()
    stats = _stats(clock, already_done=1000)
    for i in range(100):
        clock.t += 0.5
        stats.row_done(i != 0, tokens=20, latency_s=0.2 + i / 100, endpoint="http://a" if i % 2 else "http://b")
    stats.retry("OverloadedError", "http://a")
    stats.retry("TransportError", "http://b")
    stats.finish("finished")
    text = format_summary(stats.snapshot())
    lines = text.splitlines()
    assert lines[0] == "finished: 99 rows generated, 1 failed in 50s; 1000 rows were already written"
    assert "2.0 rows/s" in lines[1] and "39.6 generated tokens/s" in lines[1] and "1980 tokens" in lines[1]
    assert lines[2].startswith("  latency:    p50 ") and "p95 1.1" in lines[2]
    assert lines[3] == "  retries:    2 (OverloadedError 1, TransportError 1)"
    assert "http://a: 50 ok, 0 failed, 1 retries" in text and "http://b: 49 ok, 1 failed, 1 retries" in text
    # a budget stop names its reason
    budget = dict(stats.snapshot(), state="budget", reason="--max-runtime 1h reached")
    assert format_summary(budget).startswith("budget (--max-runtime 1h reached): 99 rows generated")


# -- the files ----------------------------------------------------------------------------------------------------


def test_file_names_follow_the_manifests() -> None:
    assert stats_file_name("progress") == "progress.json" and stats_file_name("summary", (0, 1)) == "summary.json"
    assert stats_file_name("progress", (2, 8)) == "progress-2of8.json"
    assert stats_file_name("summary", (2, 8)) == "summary-2of8.json"
    with pytest.raises(ValueError):
        stats_file_name("manifest")


def test_progress_file_interval_and_final(tmp_path: Path) -> None:
    clock = Clock()
    stats = _stats(clock, total=4, job="t", shard=(1, 4))
    progress = ProgressFile(stats, tmp_path, (1, 4), interval_s=2.0)
    assert progress.path.name == "progress-1of4.json" and progress.summary_path.name == "summary-1of4.json"
    assert progress.maybe_write() and progress.writes == 1  # the first call writes
    clock.t += 1.0
    stats.row_done(True, tokens=3, latency_s=0.1)
    assert not progress.maybe_write() and not progress.due()  # within the interval: nothing, cheaply
    clock.t += 1.0
    assert progress.due() and progress.maybe_write() and progress.writes == 2
    on_disk = json.loads(progress.path.read_text())
    assert (on_disk["state"], on_disk["done_this_run"], on_disk["shard"], on_disk["interval_s"]) == (
        "running",
        1,
        "1/4",
        2.0,
    )
    assert (on_disk["pid"], on_disk["hostname"], on_disk["job"]) == (4242, "node-a", "t")
    assert not progress.summary_path.exists()
    final = progress.write_final("finished")
    assert final["state"] == "finished" and final["done_this_run"] == 1
    assert json.loads(progress.path.read_text()) == json.loads(progress.summary_path.read_text()) == final
    assert [p.name for p, _ in read_stats_files(tmp_path, "summary")] == ["summary-1of4.json"]
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.anyio
async def test_progress_file_async(tmp_path: Path) -> None:
    clock = Clock()
    stats = _stats(clock)
    progress = ProgressFile(stats, tmp_path, interval_s=5.0)
    assert await progress.maybe_write_async()
    assert not await progress.maybe_write_async()
    final = await progress.write_final_async("budget", "--max-new-tokens-total reached")
    assert json.loads((tmp_path / "summary.json").read_text())["reason"] == final["reason"]
    assert json.loads((tmp_path / "progress.json").read_text())["state"] == "budget"


def test_a_failing_write_does_not_stop_the_job(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    stats = _stats(clock)
    progress = ProgressFile(stats, tmp_path / "gone" / "deeper")
    assert progress.maybe_write() is False
    clock.t += 5
    assert progress.maybe_write() is False and progress.writes == 0
    assert progress.write_final("failed", "boom")["state"] == "failed"
    assert sum("could not write" in r.message for r in caplog.records) == 1  # warned once, not per write


def test_progress_json_is_always_valid_while_rewritten(tmp_path: Path) -> None:
    """A reader parsing progress.json in a tight loop while the writer rewrites it (real fsyncs and renames)
    never sees a partial file."""
    clock = Clock()
    stats = _stats(clock, total=10**6, endpoints=lambda: {f"http://e{i}": {"limit": i} for i in range(20)})
    progress = ProgressFile(stats, tmp_path, interval_s=0.0)
    progress.maybe_write()
    stop = threading.Event()
    reads, bad = [0], []

    def reader() -> None:
        while not stop.is_set():
            try:
                data = json.loads(progress.path.read_bytes())
            except ValueError as exc:
                bad.append(exc)
                return
            assert data["format"] == "tgbatch-progress/1"
            reads[0] += 1

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(1500):
            clock.t += 0.01
            stats.row_done(True, tokens=i % 50, latency_s=0.001 * (i % 700), endpoint=f"http://e{i % 20}")
            stats.retry("OverloadedError" if i % 2 else "TransportError", f"http://e{i % 20}")
            assert progress.maybe_write()
    finally:
        stop.set()
        thread.join()
    assert not bad, bad[0]
    assert reads[0] > 0 and progress.writes == 1501
    assert json.loads(progress.path.read_text())["done_this_run"] == 1500


@pytest.mark.slow
def test_progress_json_is_valid_for_another_process(tmp_path: Path) -> None:
    """The same, read from a separate process (as ``tgbatch status`` does)."""
    import subprocess

    clock = Clock()
    stats = _stats(clock)
    progress = ProgressFile(stats, tmp_path, interval_s=0.0)
    progress.maybe_write()
    stop = tmp_path / "stop"
    script = (
        "import json, pathlib, sys\n"
        "p, stop, n = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), 0\n"
        "while not stop.exists():\n"
        "    json.loads(p.read_bytes()); n += 1\n"
        "print(n)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(progress.path), str(stop)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        for i in range(600):
            clock.t += 0.01
            stats.row_done(True, tokens=i, latency_s=0.01)
            progress.maybe_write()
    finally:
        stop.touch()
        out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err.decode()
    assert int(out) > 0


# -- liveness and merging -----------------------------------------------------------------------------------------


def _snap(**overrides: Any) -> dict[str, Any]:
    base = {"state": "running", "pid": 99, "hostname": "node-a", "updated_unix": 10_000.0, "interval_s": 2.0}
    return {**base, **overrides}


def test_is_live() -> None:
    def alive(pid: int) -> bool:
        return pid == 99

    assert is_live(_snap(), now=10_001, hostname="node-a", alive=alive)
    assert not is_live(_snap(pid=98), now=10_001, hostname="node-a", alive=alive)  # died (kill -9)
    assert not is_live(_snap(state="finished"), now=10_001, hostname="node-a", alive=alive)
    assert not is_live(_snap(), now=10_000 + 3600, hostname="node-a", alive=alive)  # pid reused since
    # another host (a shared folder): its pid means nothing here, the file's age decides
    assert is_live(_snap(pid=1), now=10_030, hostname="node-b", alive=alive)
    assert not is_live(_snap(pid=1), now=10_061, hostname="node-b", alive=alive)
    assert is_live(_snap(pid=1, interval_s=10), now=10_200, hostname="node-b", alive=alive)


def test_merge_snapshots_sums_shards() -> None:
    clock = Clock()
    one = _stats(clock, total=100, shard=(0, 2), endpoints=lambda: {"http://a": {"limit": 8, "ejected": False}})
    two = _stats(clock, total=None, shard=(1, 2), endpoints=lambda: {"http://a": {"limit": 4, "ejected": True}})
    both = LatencyHistogram()
    for i in range(50):
        clock.t += 0.1
        one.row_done(True, tokens=10, latency_s=0.1 + i / 100, endpoint="http://a")
        two.row_done(True, tokens=20, latency_s=1.0 + i / 10, endpoint="http://a")
        both.add(0.1 + i / 100)
        both.add(1.0 + i / 10)
    one.retry("OverloadedError", "http://a")
    two.retry("OverloadedError", "http://a")
    two.retry("TransportError", "http://a")
    merged = merge_snapshots([one.snapshot(), two.snapshot()])
    assert merged["done_this_run"] == 100 and merged["generated_tokens"] == 1500
    assert merged["total"] is None and merged["remaining"] is None and merged["eta_s"] is None
    assert merged["rows_per_s_overall"] == pytest.approx(20.0, rel=1e-3)
    assert merged["latency_s"]["count"] == 100
    assert merged["latency_s"]["p50"] == pytest.approx(both.percentile(0.5), abs=1e-4)
    assert merged["latency_s"]["p95"] == pytest.approx(both.percentile(0.95), abs=1e-4)
    assert merged["retries_by_cause"] == {"OverloadedError": 2, "TransportError": 1}
    assert merged["endpoints"]["http://a"] == {
        "ok": 100,
        "failed": 0,
        "retries": 3,
        "tokens": 1500,
        "limit": 12,
        "ejected": True,
    }
    two.set_total(50)
    merged = merge_snapshots([one.snapshot(), two.snapshot()])
    assert merged["remaining"] == 50 and merged["eta_s"] == max(one.snapshot()["eta_s"], two.snapshot()["eta_s"])


# -- tgbatch status -----------------------------------------------------------------------------------------------


def _manifest(root: Path, shard: tuple[int, int], **overrides: Any) -> None:
    i, n = shard
    manifest = {
        "format": "tgbatch-output/1",
        "job": "t",
        "fingerprint": "fp",
        "shard": {"index": i, "count": n},
        "samples": 1,
        "complete": False,
        "rows_selected": None,
        "rows_written": 0,
        "rows_failed": 0,
        "elapsed_s": 12.0,
        "runs": 1,
        "updated_at": "2024-01-01T00:00:00+00:00",
        "files": [],
        **overrides,
    }
    name = "manifest.json" if n == 1 else f"manifest-{i}of{n}.json"
    (root / name).write_text(json.dumps(manifest))


def _data_file(root: Path, shard: tuple[int, int], rows: int) -> None:
    (root / "data").mkdir(parents=True, exist_ok=True)
    table = pa.table({"row_id": [str(i) for i in range(rows)], "generated_tokens": pa.array([10] * rows, pa.int32())})
    pq.write_table(table, root / "data" / f"part-{shard[0]}of{shard[1]}-000000.parquet")


def _running_progress(root: Path, shard: tuple[int, int] = (0, 1), **kwargs: Any) -> LiveStats:
    clock = Clock()
    stats = LiveStats(
        clock=clock,
        shard=shard,
        job="t",
        total=kwargs.pop("total", 200),
        already_done=kwargs.pop("already_done", 0),
        in_flight=lambda: 8,
        endpoints=lambda: {"http://a:8080": {"in_flight": 8, "limit": 16, "ejected": False}},
        **kwargs,
    )
    for i in range(100):
        clock.t += 0.1
        stats.row_done(i % 25 != 0, tokens=32, latency_s=0.5 if i % 10 else 2.0, endpoint="http://a:8080")
    for _ in range(3):
        stats.retry("OverloadedError", "http://a:8080")
    ProgressFile(stats, root, shard).maybe_write()
    return stats


def test_status_of_a_running_job(tmp_path: Path) -> None:
    _manifest(tmp_path, (0, 1), rows_written=50)
    _data_file(tmp_path, (0, 1), 50)
    _running_progress(tmp_path)  # this process, this host, just now: running
    info = json.loads(runner.invoke(app, ["status", str(tmp_path), "--json"]).output)
    assert info["running"] and info["dead"] == [] and info["last_run"] is None
    assert (info["done"], info["failed"]) == (50, 0)  # committed
    live = info["live"]
    assert (live["done"], live["failed"], live["in_flight"], live["remaining"]) == (96, 4, 8, 100)
    assert live["committed_done"] == 50 and live["runs"][0]["pid"] == os.getpid()
    assert live["retries_by_cause"] == {"OverloadedError": 3}
    assert "latency_histogram" not in live
    text = runner.invoke(app, ["status", str(tmp_path)]).output
    assert f"state:      running (pid {os.getpid()} on {HOST}, updated" in text
    assert "done:       96 (50 committed)" in text
    assert "in flight:  8" in text and "remaining:  100" in text
    assert "rate:       10.0 rows/s, 307 generated tokens/s (last 60s)" in text
    assert "ETA:        10s" in text
    assert re.search(r"\nlatency:    p50 (49\d|50\d)ms, p95 2.00s \(recent: p50", text)  # bins of 4 %
    assert "retries:    3 (OverloadedError 3)" in text
    assert "  http://a:8080: 96 ok, 4 failed, 3 retries, 8/16 in flight" in text


def test_status_of_a_running_sharded_job(tmp_path: Path) -> None:
    _manifest(tmp_path, (0, 3), rows_written=50)
    _manifest(tmp_path, (1, 3), rows_written=0)
    _manifest(tmp_path, (2, 3), rows_written=70, rows_selected=70, complete=True)
    _data_file(tmp_path, (0, 3), 50)
    _data_file(tmp_path, (2, 3), 70)
    _running_progress(tmp_path, (0, 3), already_done=10)
    _running_progress(tmp_path, (1, 3))
    status = collect_status(tmp_path)
    live = status["live"]
    assert live["shards"] == 2 and len(live["runs"]) == 2
    assert live["done"] == (10 + 96) + 96 + 70 and live["failed"] == 8
    assert live["remaining"] == 200 and live["in_flight"] == 16
    assert live["rows_per_s"] == pytest.approx(20.0)
    assert live["endpoints"]["http://a:8080"]["limit"] == 32
    text = runner.invoke(app, ["status", str(tmp_path)]).output
    assert "state:      running (2 shards: 0/3 (pid" in text and "in flight:  16" in text


def test_status_of_a_finished_job(tmp_path: Path) -> None:
    _manifest(tmp_path, (0, 1), rows_written=100, rows_selected=100, complete=True)
    _data_file(tmp_path, (0, 1), 100)
    stats = _running_progress(tmp_path, total=100)
    ProgressFile(stats, tmp_path).write_final("finished")
    info = json.loads(runner.invoke(app, ["status", str(tmp_path), "--json"]).output)
    assert not info["running"] and info["live"] is None and info["dead"] == []
    assert (info["done"], info["remaining"], info["complete"]) == (100, 0, True)
    assert info["last_run"]["state"] == "finished" and info["last_run"]["done_this_run"] == 96
    text = runner.invoke(app, ["status", str(tmp_path)]).output
    assert "state:      complete" in text and "done:       100 of 100" in text
    assert "last run:   finished at " in text and "96 generated, 4 failed in 10s" in text
    assert "retries:    3 (OverloadedError 3)" in text and "http://a:8080: 96 ok" in text
    assert "in flight" not in text.replace("8/16 in flight", "")


def test_status_of_a_job_whose_run_died(tmp_path: Path) -> None:
    _manifest(tmp_path, (0, 1), rows_written=50)
    _data_file(tmp_path, (0, 1), 50)
    _running_progress(tmp_path)
    # the same file seen later, the process gone (kill -9): not running
    status = collect_status(tmp_path, alive=lambda pid: False)
    assert not status["running"] and status["live"] is None
    assert status["dead"] == [
        {"shard": "0/1", "pid": os.getpid(), "hostname": HOST, "updated_at": status["dead"][0]["updated_at"]}
    ]
    # from another host, once the file is old
    later = collect_status(tmp_path, now=time.time() + 3600, hostname="elsewhere")
    assert not later["running"] and len(later["dead"]) == 1
    # the CLI: a progress file from another host, long silent
    path = tmp_path / "progress.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "hostname": "gone-host", "updated_unix": data["updated_unix"] - 3600}))
    text = runner.invoke(app, ["status", str(tmp_path)]).output
    assert "state:      incomplete" in text and "done:       50" in text
    assert "note:       shard 0/1's run (pid" in text and "on gone-host" in text and "stopped without finishing" in text


def test_status_without_progress_files_is_unchanged(tmp_path: Path) -> None:
    _manifest(tmp_path, (0, 1), rows_written=20, rows_selected=40)
    _data_file(tmp_path, (0, 1), 20)
    info = collect_status(tmp_path)
    assert (info["done"], info["remaining"], info["running"], info["live"], info["last_run"]) == (
        20,
        20,
        False,
        None,
        None,
    )
    text = runner.invoke(app, ["status", str(tmp_path)]).output
    assert "state:      incomplete" in text and "done:       20 of 40" in text and "last run" not in text
    # a progress file from another format (or garbage) is ignored, not a crash
    (tmp_path / "progress.json").write_text("{not json")
    assert collect_status(tmp_path)["running"] is False
