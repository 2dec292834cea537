"""Helpers shared by the benchmark scripts: a `tgbatch serve` process, prompt files, child CPU accounting."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

# the benchmarks and their child processes (`tgbatch run`, `tgbatch serve`) run this checkout's tgbatch,
# whatever tgbatch is installed
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

TEMPLATE = "Write one sentence about {{ topic }}."

#: the "GPU" of the saturation and shards benchmarks: 5 ms a token, full speed up to 32 requests, 128 admitted
DECODE_MS = 5.0
BATCH = 32
MAX_CONCURRENT = 128


def server_flags(tokens: int, *extra: str) -> list[str]:
    """``tgbatch serve`` flags for that server, whose model answers at least ``tokens`` tokens."""
    return [
        "--decode-ms-per-token",
        str(DECODE_MS),
        "--max-batch-size",
        str(BATCH),
        "--max-concurrent-requests",
        str(MAX_CONCURRENT),
        "--min-output-tokens",
        str(tokens),
        "--max-output-tokens",
        str(max(tokens, 128)),
        *extra,
    ]


def job_data(
    folder: Path, name: str, url: str | list[str], prompts: Path, max_new_tokens: int, concurrency: object
) -> dict[str, object]:
    """The benchmark job: one short sentence per prompt of ``write_prompts``, output in ``folder/name``."""
    return {
        "name": name,
        "dataset": {"path": str(prompts), "id_column": "id", "columns": []},
        "template": TEMPLATE,
        "parameters": {"max_new_tokens": max_new_tokens},
        "endpoint": {"url": url, "concurrency": concurrency},
        "output": {"dir": str(folder / name), "details": "summary"},
    }


def write_job(
    folder: Path, name: str, url: str | list[str], prompts: Path, max_new_tokens: int, concurrency: object
) -> Path:
    job = folder / f"{name}.json"  # JSON is YAML
    job.write_text(json.dumps(job_data(folder, name, url, prompts, max_new_tokens, concurrency)))
    return job


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def tgbatch_server(*flags: str, ready_s: float = 30.0) -> Iterator[str]:
    """`tgbatch serve` on a free loopback port; yields its URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tgbatch", "serve", "--port", str(port), *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_s
    try:
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tgbatch serve did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()


def write_prompts(path: Path, n: int) -> Path:
    topics = ["the sea", "a robot", "mountains", "bread", "the moon", "trains", "a library", "rain"]
    with path.open("w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"row-{i}", "topic": topics[i % len(topics)], "n": i}) + "\n")
    return path


@dataclass
class Measured:
    wall_s: float
    cpu_s: float
    max_rss_mb: float
    returncode: int
    stdout: str
    stderr: str


def run_with_rusage(argv: list[str], env: dict[str, str] | None = None) -> Measured:
    """Run a child process: its wall time, exact CPU seconds (user+sys) and peak RSS, from wait4."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as errfile:
        # stderr to a file so that a chatty child cannot block on a full pipe while stdout is read
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=errfile, env={**os.environ, **(env or {})}, text=True
        )
        out = proc.stdout.read() if proc.stdout else ""
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        errfile.seek(0)
        err = errfile.read()
    wall = time.perf_counter() - start
    return Measured(
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        max_rss_mb=usage.ru_maxrss / 1024,
        returncode=proc.returncode,
        stdout=out,
        stderr=err,
    )


def machine() -> str:
    import platform

    return f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, Python {platform.python_version()}"


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


#: one client's measure: rows/s over the whole process, rows/s excluding start-up, CPU-s per 1,000 rows
Measure = tuple[float, float, float]


def best_of_rounds(names: list[str], rounds: int, measure: Callable[[str], Measure | None]) -> dict[str, Measure]:
    """Each client measured ``rounds`` times, alternating (so load drifts hit them alike); each one's best round
    (by whole-process rows/s). A client whose process failed is left out of that round."""
    results: dict[str, Measure] = {}
    for round_ in range(rounds):
        for name in names:
            measured = measure(name)
            if measured is None:
                continue
            best = results.get(name)
            if best is None or measured[0] > best[0]:
                results[name] = measured
            print(
                f"round {round_ + 1}: {name}: {measured[0]:.0f} rows/s over the whole process "
                f"({measured[1]:.0f} excluding start-up), {measured[2]:.2f} CPU-s per 1,000 rows",
                file=sys.stderr,
            )
    return results


def print_comparison(results: dict[str, Measure], title: str, goals: str, raw: str = "aiohttp") -> None:
    """The table of ``results`` and tgbatch's ratio to each peer: goal 1.5x each client, 0.5x the ``raw`` loop."""
    rows = [[n, f"{w:.0f}", f"{r:.0f}", f"{c:.2f}"] for n, (w, r, c) in results.items()]
    print(f"\n{title}\n")
    header = ["client", "rows/s (whole process)", "rows/s (excluding start-up)", "client CPU-s per 1,000 rows"]
    print(table(rows, header))
    if "tgbatch" not in results:
        return
    print(f"\ntgbatch against each (goal: {goals}):")
    whole, run, _ = results["tgbatch"]
    for name, (peer_whole, peer_run, _) in results.items():
        if name == "tgbatch":
            continue
        goal = 0.5 if name == raw else 1.5
        ratios = (whole / peer_whole, run / peer_run)
        verdict = "PASS" if min(ratios) >= goal else ("PASS excluding start-up" if ratios[1] >= goal else "MISS")
        print(f"  / {name}: {ratios[0]:.2f}x whole process, {ratios[1]:.2f}x excluding start-up: {verdict}")
