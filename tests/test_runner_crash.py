"""Crash safety, with real processes: ``tgbatch run`` killed with SIGKILL at several points and resumed, Ctrl-C
(exit 130, resumable), and a run against a live ``tgbatch serve`` on loopback."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from ._server_util import live_servers
from .runner_util import read_rows, start_tgbatch, write_job

# every test here starts processes (tgbatch serve, tgbatch run): `pytest -m 'not slow'` skips them
pytestmark = pytest.mark.slow

DEADLINE_S = 120.0


def _start(job: Path, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    return start_tgbatch("run", str(job), "-o", str(out), *extra)


def _committed(out: Path) -> int:
    return len(list((out / "data").glob("part-*.parquet"))) if (out / "data").is_dir() else 0


def _wait_until(proc: subprocess.Popen[bytes], ready: Any) -> None:
    """Poll (bounded) until ``ready()`` or the process ends."""
    deadline = time.monotonic() + DEADLINE_S
    while not ready():
        assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
        assert time.monotonic() < deadline, "timed out waiting for the run to make progress"
        time.sleep(0.005)  # polling interval of a bounded wait on the output folder, not synchronisation


def _finish(proc: subprocess.Popen[bytes]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=DEADLINE_S)
    return proc.returncode, out.decode(), err.decode()


def _data(folder: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for file in sorted((folder / "data").glob("part-*.parquet")):
        rows.extend(pq.read_table(file, columns=["row_id", "sample", "generated_text", "seed"]).to_pylist())
    return rows


def _big_job(tmp_path: Path, rows: int, url: str = "sim://", **output: Any) -> Path:
    data = tmp_path / "big.jsonl"
    with data.open("w") as f:
        for i in range(rows):
            f.write(json.dumps({"text": f"Tell me about item {i}", "group": i % 13}) + "\n")
    job = {
        "name": "big",
        "dataset": {"path": str(data)},  # ids: row positions (the reader's order must be stable)
        "template": "{{ text }} (group {{ group }})",
        "parameters": {"max_new_tokens": 6, "do_sample": True, "temperature": 0.9},
        "seed": {"policy": "per_row", "value": 1},
        "endpoint": {"url": url, "concurrency": 16},
        "retry": {"initial_wait_s": 0.01, "max_wait_s": 0.1},
        "output": {"rows_per_shard": 500, **output},
    }
    return write_job(tmp_path / "big.yaml", job)


def test_sigkill_at_several_points_then_resume_is_exactly_once(tmp_path: Path) -> None:
    n = 20_000
    job = _big_job(tmp_path, n)
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    ref_proc = _start(job, reference)  # the uninterrupted run, side by side with the killed ones

    # kill: as soon as the manifest exists (before any shard), then after 4, 15 and 28 of 40 shards
    points: list[Any] = [lambda: (killed / "manifest.json").exists()]
    points += [lambda k=k: _committed(killed) >= k for k in (4, 15, 28)]
    seen = []
    for ready in points:
        proc = _start(job, killed)
        _wait_until(proc, ready)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=DEADLINE_S)
        seen.append(_committed(killed))
    assert seen[0] == 0 and seen[-1] < 40, seen  # the first kill before any shard, the last before the end
    print("committed shards at each kill:", seen)
    code, stdout, stderr = _finish(_start(job, killed))
    assert code == 0, stderr[-3000:]
    assert "rows were already written" in stdout

    ref_code, _, ref_err = _finish(ref_proc)
    assert ref_code == 0, ref_err[-3000:]
    expected = {(r["row_id"], r["sample"]): (r["generated_text"], r["seed"]) for r in _data(reference)}
    rows = _data(killed)
    got = {(r["row_id"], r["sample"]): (r["generated_text"], r["seed"]) for r in rows}
    assert len(expected) == n
    assert len(rows) == len(got) == n  # every (row_id, sample) exactly once
    assert got == expected  # and the same texts as the uninterrupted run
    assert not list((killed / "data").glob(".*")) and not list((killed / "errors").glob("*"))
    manifest = json.loads((killed / "manifest.json").read_text())
    assert manifest["complete"] and manifest["rows_written"] == n and manifest["runs"] == 5


def test_ctrl_c_exits_130_and_resumes(tmp_path: Path) -> None:
    job = _big_job(tmp_path, 3000, url="sim://?decode_ms_per_token=1", rows_per_shard=100)
    out = tmp_path / "out"
    proc = _start(job, out, "--drain-s", "5")
    _wait_until(proc, lambda: _committed(out) >= 2)
    proc.send_signal(signal.SIGINT)
    code, stdout, stderr = _finish(proc)
    assert code == 130, stderr[-3000:]
    assert "run the same command again to resume" in stdout and "Traceback" not in stderr
    done = len(_data(out))
    assert 200 <= done < 3000
    assert not json.loads((out / "manifest.json").read_text())["complete"]
    code, stdout, _ = _finish(_start(job, out))
    assert code == 0 and f"{done} rows were already written" in stdout
    keys = [(r["row_id"], r["sample"]) for r in _data(out)]
    assert len(keys) == len(set(keys)) == 3000


def test_against_a_live_tgbatch_serve(tmp_path: Path) -> None:
    with live_servers(("--overload-rate", "0.2", "--max-concurrent-requests", "4")) as [server]:
        job = _big_job(tmp_path, 300, url=server.url, rows_per_shard=64)
        out = tmp_path / "out"
        code, _, stderr = _finish(_start(job, out))
    assert code == 0, stderr[-3000:]
    rows = read_rows(out / "data")
    assert sorted(int(r["row_id"]) for r in rows) == list(range(300))
    assert max(r["attempts"] for r in rows) > 1  # the overloaded server's 429s were retried
    assert all(r["endpoint"] == server.url for r in rows)
