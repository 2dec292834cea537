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
from collections.abc import Iterator
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
