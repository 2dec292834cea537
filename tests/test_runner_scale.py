"""Throughput features: the shared cooldown under a 429 storm, several endpoints (one dying mid-run),
concurrency: auto from /info."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from tgbatch.job.load import load_job
from tgbatch.runner import make_pool, prepare, run_job

from ._server_util import LiveServer, live_servers
from .runner_util import job_dict, prompts, read_rows, write_job, write_jsonl

# every test here starts processes (tgbatch serve, tgbatch run): `pytest -m 'not slow'` skips them
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DEADLINE_S = 120.0


def _job(tmp_path: Path, n: int, **overrides: Any) -> Path:
    data = write_jsonl(tmp_path / "prompts.jsonl", prompts(n))
    job = job_dict(data, **overrides)
    job["output"]["dir"] = str(tmp_path / "out")
    return write_job(tmp_path / "job.yaml", job)


def test_429_storm_with_retry_after_costs_few_attempts(tmp_path: Path) -> None:
    # the simulator allows 100 requests/s and answers HF-style 429s with Retry-After beyond that; 300 rows at
    # concurrency 64 would, row by row, burn several attempts each; a shared cooldown spends few
    rows, attempts_allowed = 300, 10
    job = _job(
        tmp_path,
        rows,
        endpoint={"url": "sim://?rate_limit=100", "concurrency": 64},
        retry={"attempts": attempts_allowed, "initial_wait_s": 0.01, "max_wait_s": 2.0},
    )
    result = _run(job)
    data = read_rows(tmp_path / "out" / "data")
    assert result.ok == rows and len(data) == rows and result.failed == 0
    attempts = sum(r["attempts"] for r in data)
    assert attempts < 2 * rows, attempts  # far below rows x attempts (3,000), and no row gave up
    assert max(r["attempts"] for r in data) < attempts_allowed


def test_auto_concurrency_starts_from_info(tmp_path: Path) -> None:
    job = _job(tmp_path, 20, endpoint={"url": "sim://?max_concurrent_requests=12", "concurrency": "auto"})
    loaded = load_job(job, [])
    pool = make_pool(loaded.spec, None)

    async def main() -> None:
        async with pool:
            await run_job(prepare(loaded), pool)

    anyio.run(main)
    (endpoint,) = pool.endpoints
    assert endpoint.limit.max_limit == 12  # beyond it TGI answers 429, so auto never goes there
    assert 1 <= endpoint.limit.limit <= 12 and endpoint.ok == 20


def test_fixed_concurrency_is_exact(tmp_path: Path) -> None:
    loaded = load_job(_job(tmp_path, 5, endpoint={"url": "sim://", "concurrency": 3}), [])
    (endpoint,) = make_pool(loaded.spec, None).endpoints
    assert (endpoint.limit.min_limit, endpoint.limit.limit, endpoint.limit.max_limit) == (3, 3, 3)


@pytest.mark.parametrize(
    ("url", "message"),
    [([], "at least one URL"), (["sim://", "sim://"], "same URL twice"), (["sim://", "ftp://x"], "ftp://x")],
)
def test_bad_endpoint_lists_are_spec_errors(tmp_path: Path, url: Any, message: str) -> None:
    job = _job(tmp_path, 2, endpoint={"url": url})
    result = _cli(job)
    assert result.returncode == 2, result.stderr
    assert "endpoint.url" in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr


def test_two_endpoints_one_killed_mid_run_completes_every_row(tmp_path: Path) -> None:
    rows = 3000
    with live_servers((), ()) as (first, second):
        job = _job(
            tmp_path,
            rows,
            endpoint={"url": [first.url, second.url], "concurrency": 8},
            retry={"attempts": 5, "initial_wait_s": 0.01, "max_wait_s": 0.2},
            output={"rows_per_shard": 100},
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "tgbatch", "run", str(job)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out = tmp_path / "out" / "data"
        deadline = time.monotonic() + DEADLINE_S
        while len(list(out.glob("part-*.parquet"))) < 3:  # a bounded wait for progress, not synchronisation
            assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.01)
        second.stop()  # the second server dies mid-run
        _, stderr = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 0, stderr.decode()[-3000:]
    data = read_rows(out)
    assert len(data) == rows and len({r["row_id"] for r in data}) == rows
    answered = {r["endpoint"] for r in data}
    assert answered == {first.url, second.url}  # both served until the second died; the first took the rest
    assert not list((tmp_path / "out" / "errors").glob("*.parquet"))


def _cli(job: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``tgbatch run JOB ARGS`` to completion, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "tgbatch", "run", str(job), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )


def _run(job: Path) -> Any:
    loaded = load_job(job, [])
    pool = make_pool(loaded.spec, None)

    async def main() -> Any:
        async with pool:
            return await run_job(prepare(loaded), pool)

    return anyio.run(main)


def _start(job: Path, *extra: str) -> subprocess.Popen[bytes]:
    # stderr goes to a file next to the job, so a test can watch the log while the run goes on
    with (job.parent / "stderr.log").open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "tgbatch", "run", str(job), *extra],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=err,
        )


def _peek_stderr(tmp_path: Path) -> bytes:
    return (tmp_path / "stderr.log").read_bytes()


def _wait_for_shards(proc: subprocess.Popen[bytes], out: Path, count: int) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while len(list(out.glob("part-*.parquet"))) < count:  # a bounded wait for progress, not synchronisation
        assert proc.poll() is None, _peek_stderr(out.parent.parent).decode()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.01)


def _exactly_once(out: Path, rows: int) -> None:
    data = read_rows(out)
    keys = [(r["row_id"], r["sample"]) for r in data]
    assert len(keys) == len(set(keys)) == rows


def test_sigterm_drains_then_resume_is_exactly_once(tmp_path: Path) -> None:
    rows = 400
    job = _job(
        tmp_path,
        rows,
        endpoint={"url": "sim://?decode_ms_per_token=2", "concurrency": 16},
        output={"rows_per_shard": 40},
    )
    out = tmp_path / "out" / "data"
    proc = _start(job)
    _wait_for_shards(proc, out, 2)
    proc.send_signal(signal.SIGTERM)  # what Slurm and Kubernetes send before killing
    proc.communicate(timeout=DEADLINE_S)
    err = _peek_stderr(tmp_path).decode()
    assert proc.returncode == 130, err[-3000:]
    assert "SIGTERM" in err
    written = len(read_rows(out))
    assert 0 < written < rows
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["complete"] is False and manifest["rows_written"] == written  # a valid, resumable output
    resumed = _cli(job)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _exactly_once(out, rows)


def test_second_signal_stops_at_once(tmp_path: Path) -> None:
    # every request hangs for a minute: a drain would take that long, the second signal cuts it short
    with live_servers(("--stall-rate", "1", "--stall-s", "60")) as (server,):
        job = _job(tmp_path, 50, endpoint={"url": server.url, "concurrency": 4})
        proc = _start(job, "--drain-s", "120")
        deadline = time.monotonic() + DEADLINE_S
        while _requests_seen(server.url) < 4:  # requests are in flight: a bounded wait on the server's counter
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + DEADLINE_S
        while b"stopping" not in _peek_stderr(tmp_path):  # the first signal was handled
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 130, _peek_stderr(tmp_path).decode()[-3000:]
    assert time.monotonic() - started < 30
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["complete"] is False


def _requests_seen(url: str) -> int:
    import httpx

    text = httpx.get(url + "/metrics", timeout=5).text
    return sum(int(float(line.split()[-1])) for line in text.splitlines() if line.startswith("tgi_request_count"))


def test_token_budget_stops_with_exit_4_and_resumes(tmp_path: Path) -> None:
    rows = 200
    job = _job(tmp_path, rows, endpoint={"url": "sim://", "concurrency": 4}, output={"rows_per_shard": 20})
    first = _cli(job, "--max-new-tokens-total", "300")
    assert first.returncode == 4, first.stderr[-3000:]
    assert "--max-new-tokens-total" in first.stdout
    data = read_rows(tmp_path / "out" / "data")
    tokens = sum(r["generated_tokens"] for r in data)
    # rows already answered when the budget was reached still land: those in flight (4) and queued for the writer
    assert 300 <= tokens < 300 + (4 + 2 * 4 + 1) * 8
    resumed = _cli(job)
    assert resumed.returncode == 0
    _exactly_once(tmp_path / "out" / "data", rows)


def test_runtime_budget_stops_with_exit_4(tmp_path: Path) -> None:
    job = _job(tmp_path, 5000, endpoint={"url": "sim://?decode_ms_per_token=5", "concurrency": 2})
    result = _cli(job, "--max-runtime", "2s")
    assert result.returncode == 4, result.stderr[-3000:]
    assert "--max-runtime" in result.stdout
    bad = _cli(job, "--max-runtime", "soon")
    assert bad.returncode == 2 and "--max-runtime 'soon'" in bad.stderr


def test_progress_json_is_always_valid_while_a_job_runs(tmp_path: Path) -> None:
    job = _job(
        tmp_path,
        600,
        endpoint={"url": "sim://?decode_ms_per_token=1", "concurrency": 8},
        output={"rows_per_shard": 50},
    )
    progress = tmp_path / "out" / "progress.json"
    proc = _start(job)
    seen_running, reads = 0, 0
    deadline = time.monotonic() + DEADLINE_S
    while proc.poll() is None:  # read it as fast as we can while the run rewrites it
        assert time.monotonic() < deadline
        if progress.exists():
            snapshot = json.loads(progress.read_text())  # never partial: written to a temp file, then renamed
            reads += 1
            if snapshot["state"] == "running":
                seen_running += 1
                assert snapshot["done"] <= 600 and snapshot["in_flight"] <= 8
    proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 0, _peek_stderr(tmp_path).decode()[-3000:]
    final = json.loads(progress.read_text())
    assert final["state"] == "finished" and final["done"] == 600 and final["in_flight"] == 0
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["done"] == 600
    assert reads > 10 and seen_running > 0


def _wait_for_log(proc: subprocess.Popen[bytes], tmp_path: Path, text: bytes) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while text not in _peek_stderr(tmp_path):  # a bounded wait for the log line, not synchronisation
        assert proc.poll() is None, _peek_stderr(tmp_path).decode()[-3000:]
        assert time.monotonic() < deadline, _peek_stderr(tmp_path).decode()[-3000:]
        time.sleep(0.02)


def _outage_job(tmp_path: Path, rows: int, url: str, **retry: float) -> Path:
    """Few attempts a row: an outage that spent them would fail rows."""
    return _job(
        tmp_path,
        rows,
        endpoint={"url": url, "concurrency": 8},
        retry={"attempts": 3, "initial_wait_s": 0.01, "max_wait_s": 0.2, **retry},
        output={"rows_per_shard": 100},
    )


def test_a_server_restarted_mid_run_fails_no_row(tmp_path: Path) -> None:
    """The only server dies mid-run and comes back on the same port: the job waits (logging the outage), spends
    no row's attempts on it, and finishes with every row and nothing failed."""
    rows = 3000
    server = LiveServer("--decode-ms-per-token", "0.2").start().wait_ready()
    try:
        proc = _start(_outage_job(tmp_path, rows, server.url))
        _wait_for_shards(proc, tmp_path / "out" / "data", 3)
        server.stop()
        _wait_for_log(proc, tmp_path, b"unreachable since")
        server.start().wait_ready()
        proc.wait(timeout=DEADLINE_S)
    finally:
        server.stop()
    log = _peek_stderr(tmp_path).decode()
    assert proc.returncode == 0, log[-3000:]
    assert "is back after" in log
    data = read_rows(tmp_path / "out" / "data")
    assert len(data) == rows and len({r["row_id"] for r in data}) == rows
    assert not list((tmp_path / "out" / "errors").glob("*.parquet"))


def test_an_outage_longer_than_max_outage_stops_resumably(tmp_path: Path) -> None:
    rows = 3000
    server = LiveServer("--decode-ms-per-token", "0.2").start().wait_ready()
    try:
        proc = _start(_outage_job(tmp_path, rows, server.url, max_outage_s=2))
        _wait_for_shards(proc, tmp_path / "out" / "data", 2)
        server.stop()
        proc.wait(timeout=DEADLINE_S)
    finally:
        server.stop()
    log = _peek_stderr(tmp_path).decode()
    assert proc.returncode == 2, log[-3000:]
    assert "no endpoint could be reached for 2 s" in log and "Traceback" not in log
    assert not list((tmp_path / "out" / "errors").glob("*.parquet"))  # nothing marked failed
    done = len(read_rows(tmp_path / "out" / "data"))
    assert 0 < done < rows
