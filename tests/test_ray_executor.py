"""``tgbatch run JOB --executor ray --shards N``: the shards as Ray tasks on a local Ray cluster (started once for
the module), every row exactly once, one merged summary, a task whose worker is killed resuming its shard; and
the flags that do not fit, refused with exit 2 (those tests need no Ray)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tgbatch.cli import _register, app

from .runner_util import job_dict, prompts, write_job, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
DEADLINE_S = 120.0
_register()
runner = CliRunner()


def _job(tmp_path: Path, rows: int, url: str = "sim://", rows_per_shard: int = 25) -> Path:
    data = write_jsonl(tmp_path / "prompts.jsonl", prompts(rows))
    job = job_dict(data, endpoint={"url": url, "concurrency": 4}, output={"rows_per_shard": rows_per_shard})
    return write_job(tmp_path / "job.yaml", job)


def _env(extra_path: Path | None = None) -> dict[str, str]:
    paths = [str(p) for p in (extra_path, ROOT) if p is not None]
    return {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")])}


def _cmd(job: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tgbatch", "run", str(job), "-o", str(out), *extra]


def _row_ids(out: Path) -> Counter[str]:
    ids: Counter[str] = Counter()
    for file in sorted((out / "data").glob("part-*.parquet")):
        ids.update(pq.read_table(file, columns=["row_id"]).column("row_id").to_pylist())
    return ids


def _manifest(out: Path, tag: str) -> dict[str, Any]:
    path = out / f"manifest-{tag}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _committed_rows(out: Path, tag: str) -> int:
    """Rows in shard ``tag``'s committed data files (the manifest on disk is only rewritten now and then: a
    commit appends to the shard's commit log)."""
    rows = 0
    for path in sorted((out / "data").glob(f"part-{tag}-*.parquet")) if (out / "data").is_dir() else []:
        try:
            rows += pq.read_metadata(path).num_rows
        except OSError:
            continue  # deleted under us (--fresh): not committed
    return rows


# -- the flags that do not fit (no Ray needed) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--shards", "4"], "add --executor ray"),
        (["--ray-address", "auto"], "add --executor ray"),
        (["--executor", "ray", "--shards", "4", "--shard", "0/4"], "use --shards N"),
        (["--executor", "ray", "--shards", "2", "--fresh"], "--fresh cannot be combined with --executor ray"),
        (["--executor", "dask"], "expected local or ray"),
    ],
)
def test_flags_that_do_not_fit_are_refused(tmp_path: Path, flags: list[str], says: str) -> None:
    job = _job(tmp_path, 5)
    result = runner.invoke(app, ["run", str(job), "-o", str(tmp_path / "out"), *flags])
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert not (tmp_path / "out").exists()


def test_ray_not_installed_says_the_pip_command(tmp_path: Path) -> None:
    # a `ray` that fails to import, ahead of any installed one on the path
    fake = tmp_path / "site"
    (fake / "ray").mkdir(parents=True)
    (fake / "ray" / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    job = _job(tmp_path, 5)
    proc = subprocess.run(
        _cmd(job, tmp_path / "out", "--executor", "ray", "--shards", "2"),
        env=_env(fake),
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'tgbatch[ray]'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_help_and_import_do_not_load_ray() -> None:
    code = (
        "import sys, tgbatch\n"
        "from tgbatch.cli import main\n"
        "sys.argv = ['tgbatch', 'run', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('ray loaded' if 'ray' in sys.modules or 'tgbatch.executor.ray' in sys.modules else 'ray not loaded', "
        "file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=60)
    assert "--executor" in proc.stdout and "--shards" in proc.stdout and "--ray-address" in proc.stdout
    assert proc.stderr.strip().endswith("ray not loaded"), proc.stderr


# -- on a local Ray cluster ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A local Ray cluster for the module (2 CPUs); the runs connect to it as drivers of their own."""
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'tgbatch[ray]' to run these tests")
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = _env()["PYTHONPATH"]  # the workers import this checkout's tgbatch
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


@pytest.mark.slow
def test_four_shards_stopped_by_sigterm_then_resumed_every_row_once_one_summary(
    tmp_path: Path, ray_address: str
) -> None:
    job = _job(tmp_path, 400, url="sim://?decode_ms_per_token=10")  # several seconds a shard: SIGTERM lands mid-run
    out = tmp_path / "out"
    args = _cmd(job, out, "--executor", "ray", "--shards", "4", "--ray-address", ray_address)
    # SIGTERM (Slurm's, Kubernetes') stops the driver as in a local run: the tasks cancelled, exit 130
    proc = subprocess.Popen(args, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_committed_rows(proc, out, "0of4", rows=25)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 130, stderr[-3000:]
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert 0 < sum(_row_ids(out).values()) < 400
    # the same command resumes every shard and finishes the job
    again = subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=DEADLINE_S)
    assert again.returncode == 0, again.stderr[-3000:]
    ids = _row_ids(out)
    assert len(ids) == 400 and set(ids.values()) == {1}
    assert [_manifest(out, f"{i}of4").get("complete") for i in range(4)] == [True] * 4
    # one merged summary for the four shards, not four, counting the rows of the first run apart
    assert again.stdout.count("rows generated") == 1
    generated = int(again.stdout.split("finished: ")[1].split(" rows generated")[0])
    before = int(again.stdout.split("; ")[1].split(" rows were already written")[0])
    assert generated + before == 400 and before > 0
    # the driver's progress display, fed from the shards' progress files, counted them all as one
    assert f"{generated}/{generated} rows this run" in again.stderr
    assert "Traceback" not in again.stderr


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_its_shard_resumes_once(tmp_path: Path, ray_address: str) -> None:
    # slow enough (about 30 rows/s a shard) to kill shard 0's worker mid-run, after some commits
    job = _job(tmp_path, 300, url="sim://?decode_ms_per_token=20", rows_per_shard=10)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        _cmd(job, out, "--executor", "ray", "--shards", "2", "--ray-address", ray_address),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pid = _wait_for_committed_rows(proc, out, "0of2", rows=20)
    os.kill(pid, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 0, stderr[-3000:]
    ids = _row_ids(out)
    assert len(ids) == 300 and set(ids.values()) == {1}
    manifest = _manifest(out, "0of2")
    assert manifest["complete"] and manifest["runs"] == 2  # the retried task resumed the shard, once
    assert _manifest(out, "1of2")["runs"] == 1
    assert stdout.count("rows generated") == 1 and "rows were already written" in stdout


@pytest.mark.slow
def test_a_refused_token_stops_every_shard_with_exit_2_not_retried(tmp_path: Path, ray_address: str) -> None:
    job = _job(tmp_path, 40, url="sim://?api_key=s3cret")
    out = tmp_path / "out"
    args = _cmd(job, out, "--executor", "ray", "--shards", "2", "--ray-address", ray_address)
    env = {k: v for k, v in _env().items() if k != "HF_TOKEN"}
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=DEADLINE_S)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "error: shard 0/2: the endpoint wants a token" in proc.stderr
    assert "Traceback" not in proc.stderr
    # a job error is the task's answer, not a failure Ray would run again
    assert [_manifest(out, f"{i}of2").get("runs") for i in range(2)] == [1, 1]


def _wait_for_committed_rows(proc: subprocess.Popen[str], out: Path, tag: str, rows: int) -> int:
    """Poll (bounded) until shard ``tag`` has committed ``rows`` rows; the pid of the worker running it."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "timed out waiting for the shard to commit rows"
        progress = out / f"progress-{tag}.json"
        if _committed_rows(out, tag) >= rows and progress.exists():
            snapshot = json.loads(progress.read_text())
            if snapshot.get("state") == "running":
                assert snapshot["pid"] != proc.pid  # the shard runs in a Ray worker, not in the driver
                return int(snapshot["pid"])
        time.sleep(0.01)  # polling interval of a bounded wait on the output folder, not synchronisation
