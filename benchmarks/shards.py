"""Benchmark 5: do the shards of one job, sharing one server, finish about as fast as one process?

One `tgbatch serve --decode-ms-per-token 5 --max-batch-size 32 --max-concurrent-requests 128` (so every process,
calibrated from /info to 128 requests in flight, oversubscribes it: the semaphore answers 429 `Model is
overloaded`), with and without `--overload-rate 0.1` on top. Against it, alternately, several rounds of
- one process doing the whole job (`tgbatch run JOB`);
- four processes started together, `tgbatch run JOB --shard i/4`, sharing one output folder (a Slurm array's
  tasks), timed until the last one exits.
Both are whole processes, start-up included, on a fresh output folder, and both must write every row. The server
is the bottleneck, so four shards should take about as long as one process; the goal is within 1.5x. (Shards that
paused for exactly the same capped time woke together and overloaded the server together again: 1 s jobs took
minutes.) Exit status 1 when the goal is missed or a run fails.

    python benchmarks/shards.py [--rows 4000] [--tokens 32] [--rounds 3] [--shards 4] [--only plain overload]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.dataset as ds

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    BATCH,
    DECODE_MS,
    MAX_CONCURRENT,
    machine,
    server_flags,
    table,
    tgbatch_server,
    write_job,
    write_prompts,
)

GOAL = 1.5


@dataclass
class Timed:
    wall_s: float  # the processes, start-up included: the figure the goal is about
    run_s: float  # first run start to last finish, from the summaries: without Python start-up


@dataclass
class Round:
    scenario: str
    index: int
    one: Timed
    shards: Timed

    @property
    def one_s(self) -> float:
        return self.one.wall_s

    @property
    def shards_s(self) -> float:
        return self.shards.wall_s

    @property
    def ratio(self) -> float:
        return self.shards_s / self.one_s


class RunFailed(Exception):
    pass


def rows_written(out: Path) -> int:
    data = out / "data"
    return ds.dataset(data, format="parquet").count_rows() if data.is_dir() else 0


def run_span(out: Path) -> float:
    """From the first process's run start to the last one's finish (``summary*.json``)."""
    summaries = [json.loads(p.read_text()) for p in out.glob("summary*.json")]
    started = min(dt.datetime.fromisoformat(s["started_at"]).timestamp() for s in summaries)
    return max(s["updated_unix"] for s in summaries) - started


def run_processes(argvs: list[list[str]], out: Path, rows: int) -> Timed:
    """Start every command at once on a fresh ``out``; seconds until the last one exits."""
    shutil.rmtree(out, ignore_errors=True)
    with contextlib.ExitStack() as stack:
        # stderr to files: a process blocked on a full pipe while another is waited for would stall the round
        logs = [stack.enter_context(tempfile.TemporaryFile("w+")) for _ in argvs]
        start = time.perf_counter()
        procs = [subprocess.Popen(a, stdout=subprocess.DEVNULL, stderr=log) for a, log in zip(argvs, logs, strict=True)]
        for proc in procs:
            proc.wait()
        elapsed = time.perf_counter() - start
        for proc, log in zip(procs, logs, strict=True):
            if proc.returncode != 0:
                log.seek(0)
                raise RunFailed(f"{' '.join(map(str, proc.args[-3:]))} exited {proc.returncode}:\n{log.read()[-3000:]}")
    written = rows_written(out)
    if written != rows:
        raise RunFailed(f"{out.name}: {written} rows written, expected {rows}")
    return Timed(elapsed, run_span(out))


def run_round(folder: Path, url: str, prompts: Path, args: argparse.Namespace, scenario: str, index: int) -> Round:
    job = write_job(folder, scenario, url, prompts, args.tokens, "auto")
    out = folder / scenario
    run = [sys.executable, "-m", "tgbatch", "run", str(job)]
    one = [run]
    shards = [[*run, "--shard", f"{i}/{args.shards}"] for i in range(args.shards)]
    # alternate which goes first, so that a drift of the shared machine does not favour one side
    order = [("one", one), ("shards", shards)] if index % 2 == 0 else [("shards", shards), ("one", one)]
    took = {name: run_processes(argvs, out, args.rows) for name, argvs in order}
    return Round(scenario, index, took["one"], took["shards"])


def summary(rounds: list[Round]) -> list[list[str]]:
    rows = []
    for scenario in dict.fromkeys(r.scenario for r in rounds):
        mine = [r for r in rounds if r.scenario == scenario]
        worst = max(mine, key=lambda r: r.ratio)
        best = min(mine, key=lambda r: r.ratio)
        verdict = "PASS" if worst.ratio <= GOAL else "MISS"
        rows.append(
            [
                f"{scenario}: WORST (round {worst.index})",
                f"{worst.one_s:.1f}",
                f"{worst.shards_s:.1f}",
                f"{worst.ratio:.2f}",
                verdict,
            ]
        )
        rows.append(
            [
                f"{scenario}: BEST (round {best.index})",
                f"{best.one_s:.1f}",
                f"{best.shards_s:.1f}",
                f"{best.ratio:.2f}",
                "",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per row (every row generates exactly this)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--only", nargs="*", choices=["plain", "overload"], help="run only these scenarios")
    args = parser.parse_args()

    scenarios = {
        "plain": ("semaphore 429s only", server_flags(args.tokens)),
        "overload": ("+ --overload-rate 0.1", server_flags(args.tokens, "--overload-rate", "0.1")),
    }
    rounds: list[Round] = []
    failed = None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        prompts = write_prompts(folder / "prompts.jsonl", args.rows)
        for key in args.only or list(scenarios):
            label, flags = scenarios[key]
            with tgbatch_server(*flags) as url:
                for index in range(args.rounds):
                    try:
                        result = run_round(folder, url, prompts, args, key, index)
                    except RunFailed as exc:
                        failed = str(exc)
                        print(failed, file=sys.stderr)
                        break
                    result.scenario = label
                    rounds.append(result)
                    print(
                        f"{label} round {index}: one {result.one_s:.1f} s, {args.shards} shards "
                        f"{result.shards_s:.1f} s, {result.ratio:.2f}x",
                        file=sys.stderr,
                    )

    ideal = args.rows * args.tokens * DECODE_MS / 1000 / BATCH
    print(
        f"\nShards: {args.rows} rows x {args.tokens} new tokens (server-bound ideal {ideal:.1f} s), one `tgbatch serve "
        f"--decode-ms-per-token {DECODE_MS:g} --max-batch-size {BATCH} --max-concurrent-requests {MAX_CONCURRENT}`, "
        f"endpoint.concurrency: auto; whole processes, start-up included ({machine()})\n"
    )
    header = [
        "server",
        "round",
        "one process s",
        f"{args.shards} shards s",
        "shards / one",
        "runs without start-up: one / shards s",
    ]
    print(
        table(
            [
                [
                    r.scenario,
                    str(r.index),
                    f"{r.one_s:.1f}",
                    f"{r.shards_s:.1f}",
                    f"{r.ratio:.2f}",
                    f"{r.one.run_s:.1f} / {r.shards.run_s:.1f}",
                ]
                for r in rounds
            ],
            header,
        )
    )
    if rounds:
        print()
        print(
            table(summary(rounds), ["", "one process s", f"{args.shards} shards s", "shards / one", f"goal <= {GOAL}x"])
        )
    if failed is not None or not rounds or any(r.ratio > GOAL for r in rounds):
        sys.exit(1)


if __name__ == "__main__":
    main()
