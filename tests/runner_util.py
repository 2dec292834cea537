"""Helpers shared by the runner's tests: small datasets and job files in a temp folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parents[1]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def prompts(n: int, *, ids: bool = True) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        row: dict[str, Any] = {"question": f"What is {i} plus {i}?", "topic": f"t{i % 7}"}
        if ids:
            row = {"id": f"r{i:05d}", **row}
        rows.append(row)
    return rows


def job_dict(dataset: Path, **overrides: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "name": "t",
        "dataset": {"path": str(dataset), "id_column": "id"},
        "template": "Q: {{ question }}\nA:",
        "parameters": {"max_new_tokens": 8, "do_sample": True, "temperature": 0.8},
        "endpoint": {"url": "sim://", "concurrency": 4},
        "retry": {"attempts": 30, "initial_wait_s": 0.001, "max_wait_s": 0.01},
        "output": {"rows_per_shard": 50},
    }
    for key, value in overrides.items():
        section, _, field = key.partition("__")
        if field:
            job.setdefault(section, {})[field] = value
        else:
            job[section] = value
    return job


def write_job(path: Path, job: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(job, sort_keys=False), encoding="utf-8")
    return path


def read_rows(folder: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for file in sorted(folder.glob("*.parquet")):
        rows.extend(pq.read_table(file).to_pylist())
    return rows


def start_tgbatch(*args: str) -> subprocess.Popen[bytes]:
    """``tgbatch ARGS`` as a process of this checkout's tgbatch (a test kills it, or waits for it), output piped."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    argv = [sys.executable, "-m", "tgbatch", *args]
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
