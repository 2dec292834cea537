"""Beyond one machine, with real processes: shard processes writing one file at once never collide, the default
drain ends before a 30 s SIGKILL, and the shipped Slurm array script on a real single-node Slurm cluster (``shared/tools/slurm-single-node.sh``): four tasks started
together, one cancelled mid-run and resubmitted, every row exactly once."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from tgbatch.cli.run import DEFAULT_DRAIN_S

from ._server_util import live_servers
from .runner_util import prompts, write_job, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
# in CI the repository is a fresh clone with shared/ copied beside it; in a worktree it is /work/shared
CLUSTER_SCRIPT = ROOT.parent / "shared" / "tools" / "slurm-single-node.sh"
ARRAY_SCRIPT = ROOT / "examples" / "slurm" / "tgbatch-array.sbatch"
KILL_DELAY_S = 30.0  # Slurm's default KillWait and Kubernetes' default terminationGracePeriodSeconds
DEADLINE_S = 150.0


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra}


def _poll(ready: Any, what: str, deadline_s: float = DEADLINE_S) -> Any:
    """Poll (bounded) until ``ready()`` returns something true, and return it."""
    deadline = time.monotonic() + deadline_s
    while not (value := ready()):
        assert time.monotonic() < deadline, f"timed out after {deadline_s} s waiting for {what}"
        time.sleep(0.1)  # polling interval of a bounded wait on a server, a folder or Slurm, not synchronisation
    return value


def _write_many(path: str, barrier: Any, times: int) -> None:
    from tgbatch.output.atomic import write_atomic

    barrier.wait()  # every process starts writing in the same instant, as array tasks opening one folder do
    for i in range(times):
        write_atomic(Path(path), f"written by {os.getpid()} ({i})\n".encode())


def test_processes_writing_one_file_at_once_never_collide(tmp_path: Path) -> None:
    """The start-up race of array tasks (all write the shared job.yaml): with one temp name for every process,
    one process renamed the temp file another was still writing, and the other's rename failed."""
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(6)
    target = tmp_path / "job.yaml"
    procs = [ctx.Process(target=_write_many, args=(str(target), barrier, 20)) for _ in range(6)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=100)
    assert [proc.exitcode for proc in procs] == [0] * 6
    assert re.fullmatch(r"written by \d+ \(19\)\n", target.read_text())
    assert [p.name for p in tmp_path.iterdir()] == ["job.yaml"]  # no temp file left behind


def _gauge(url: str, name: str) -> float:
    for line in httpx.get(url + "/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


@pytest.mark.slow  # 20 s: the default drain
def test_sigterm_with_long_requests_in_flight_exits_130_before_a_30s_kill(tmp_path: Path) -> None:
    assert DEFAULT_DRAIN_S < KILL_DELAY_S - 5  # leaves time to commit and print the summary
    # every request decodes for 100 s: no drain can finish them, so the run must stop on the drain's clock
    flags = ("--decode-ms-per-token", "1000", "--min-output-tokens", "100", "--max-output-tokens", "100")
    with live_servers(flags) as [server]:
        data = write_jsonl(tmp_path / "rows.jsonl", prompts(20))
        job = write_job(
            tmp_path / "job.yaml",
            {
                "name": "long",
                "dataset": {"path": str(data), "id_column": "id"},
                "template": "Q: {{ question }}\nA:",
                "parameters": {"max_new_tokens": 100},
                "endpoint": {"url": server.url, "concurrency": 4},
            },
        )
        cmd = [sys.executable, "-m", "tgbatch", "run", str(job), "-o", str(tmp_path / "out")]
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            _poll(lambda: _gauge(server.url, "tgi_batch_current_size") >= 4, "4 requests in flight", 60)
            proc.send_signal(signal.SIGTERM)
            sent = time.monotonic()
            out, err = proc.communicate(timeout=KILL_DELAY_S)  # what a 30 s KillWait allows
            took = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
            assert server.proc is not None
            server.proc.kill()  # its graceful stop would wait for the 100 s decodes the client gave up on
    stdout, stderr = out.decode(), err.decode()
    print(f"SIGTERM to exit: {took:.1f} s")
    assert proc.returncode == 130, stderr[-3000:]
    assert DEFAULT_DRAIN_S - 1 <= took < KILL_DELAY_S, took  # the requests had the drain, then the run stopped
    assert "interrupted (SIGTERM): 0 rows generated" in stdout and "run the same command again to resume" in stdout
    assert "Traceback" not in stderr


@pytest.fixture
def slurm(tmp_path: Path) -> Iterator[None]:
    """A running single-node Slurm cluster whose partition lets 4 two-CPU tasks share the cores (CI has 2),
    brought down afterwards."""
    if os.geteuid() != 0:
        pytest.skip("the Slurm test needs root (slurm-single-node.sh starts the daemons)")
    if not CLUSTER_SCRIPT.is_file():
        pytest.skip(f"no Slurm test: {CLUSTER_SCRIPT} is absent (shared/ is copied beside the repository in CI)")
    try:
        t0 = time.monotonic()
        up = subprocess.run(["bash", str(CLUSTER_SCRIPT), "up"], capture_output=True, text=True, timeout=600)
        print(f"slurm-single-node.sh up: exit {up.returncode} in {time.monotonic() - t0:.1f} s")
        if shutil.which("sbatch") is None:
            pytest.skip(f"no Slurm test: sbatch is absent after slurm-single-node.sh up: {up.stderr[-500:]}")
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        _scontrol("update", "PartitionName=debug", "OverSubscribe=FORCE:4")
        yield
    finally:
        if shutil.which("scontrol") is not None:
            subprocess.run(["scontrol", "update", "PartitionName=debug", "OverSubscribe=NO"], capture_output=True)
        subprocess.run(["bash", str(CLUSTER_SCRIPT), "down"], capture_output=True, timeout=120)


def _scontrol(*args: str) -> str:
    return subprocess.run(["scontrol", *args], capture_output=True, text=True, check=True, timeout=30).stdout


def _tasks(job_id: str) -> dict[str, dict[str, str]]:
    """``scontrol show job`` of an array, by task id: each task's fields (finished jobs stay for MinJobAge)."""
    records = [dict(re.findall(r"(\w+)=(\S*)", line)) for line in _scontrol("show", "job", "-o", job_id).splitlines()]
    return {r["ArrayTaskId"]: r for r in records if r.get("ArrayJobId") == job_id}


def _queued(job_id: str) -> bool:
    out = subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True, text=True, timeout=30)
    return bool(out.stdout.strip())


def _sbatch(tmp_path: Path, env: dict[str, str], *args: str) -> str:
    cmd = ["sbatch", "--parsable", f"--chdir={tmp_path}", f"--output={tmp_path}/logs/%A_%a.log", *args]
    cmd += [str(ARRAY_SCRIPT), str(tmp_path / "job.yaml"), "--output", str(tmp_path / "out")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().split(";")[0]


def _array_env(tmp_path: Path) -> dict[str, str]:
    """The environment sbatch passes on: this checkout's tgbatch, as the command ``tgbatch`` on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "tgbatch"
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m tgbatch "$@"\n')
    shim.chmod(0o755)
    return _env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


@pytest.mark.slow  # a Slurm cluster and five tasks: about 35 s
def test_slurm_array_cancel_and_resubmit_writes_every_row_once(tmp_path: Path, slurm: None) -> None:
    n = 240
    # 8 tokens at 40 ms each, 2 at a time: a shard of ~60 rows takes several seconds
    with live_servers(("--decode-ms-per-token", "40")) as [server]:
        write_job(
            tmp_path / "job.yaml",
            {
                "name": "array",
                "dataset": {"path": str(write_jsonl(tmp_path / "rows.jsonl", prompts(n))), "id_column": "id"},
                "template": "Q: {{ question }}\nA:",
                "parameters": {"max_new_tokens": 8},
                "endpoint": {"url": server.url, "concurrency": 2},
                "output": {"rows_per_shard": 5},
            },
        )
        (tmp_path / "logs").mkdir()
        env = _array_env(tmp_path)
        first = _sbatch(tmp_path, env, "--array=0-3")
        # cancel shard 1 once it has committed something, well before its end
        _poll(lambda: list((tmp_path / "out" / "data").glob("part-1of4-*.parquet")), "shard 1 to commit")
        subprocess.run(["scancel", f"{first}_1"], check=True, timeout=30)
        _poll(lambda: _tasks(first)["1"]["JobState"] not in ("RUNNING", "COMPLETING"), "task 1 to stop")
        again = _sbatch(tmp_path, env, "--array=1", "--export=ALL,TGBATCH_SHARDS=4")
        _poll(lambda: not _queued(first) and not _queued(again), "every task to end")
    tasks, resubmitted = _tasks(first), _tasks(again)
    for name, task in [*sorted(tasks.items()), ("1 again", resubmitted["1"])]:
        print(f"task {name}: {task['JobState']} exit {task['ExitCode']} {task['StartTime']} -> {task['EndTime']}")
    _check_tasks(tasks, resubmitted)
    _check_rows(tmp_path / "out", n)
    logs = {p.name: p.read_text() for p in (tmp_path / "logs").glob("*.log")}
    assert len(logs) == 5, sorted(logs)
    assert not [name for name, text in logs.items() if "Traceback" in text]
    cancelled = logs[f"{first}_1.log"]
    assert "interrupted (SIGTERM)" in cancelled and "run the same command again to resume" in cancelled, cancelled
    assert "rows were already written" in logs[f"{again}_1.log"]


def _check_tasks(first: dict[str, dict[str, str]], again: dict[str, dict[str, str]]) -> None:
    assert sorted(first) == ["0", "1", "2", "3"] and sorted(again) == ["1"]
    starts = {task["StartTime"] for task in first.values()}
    assert len(starts) <= 2, starts  # the four tasks started together (within a second): the start-up race
    for task in (first["0"], first["2"], first["3"], again["1"]):
        assert (task["JobState"], task["ExitCode"]) == ("COMPLETED", "0:0"), task
    # tgbatch exited 130 after its drain, and Slurm recorded that code (exec: no shell in between)
    assert (first["1"]["JobState"], first["1"]["ExitCode"]) == ("CANCELLED", "130:0"), first["1"]


def _check_rows(out: Path, n: int) -> None:
    ids = [r for f in sorted((out / "data").glob("*.parquet")) for r in pq.read_table(f, columns=["row_id"]).column(0)]
    assert len(ids) == len(set(ids)) == n  # every row exactly once across the shards
    assert not list(out.glob("errors/*"))
    for i in range(4):
        manifest = json.loads((out / f"manifest-{i}of4.json").read_text())
        assert manifest["complete"], manifest
