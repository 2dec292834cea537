"""Benchmark 6: a commit's cost does not grow with the shards before it; a finished large job resumes in seconds.

1. Commit rate over time: a job of ``--rows`` rows (default 60,000) with ``rows_per_shard: 10`` (6,000 shards) on
   the instant in-process simulator ``sim://``. Each data shard's commit time is its file's modification time;
   the rate over each thousand shards is printed, and the goal is the last thousand within 2x of the first.
2. Resume: a finished job of ``--resume-rows`` rows (default 1,000,000, default 1,000 rows a shard) is run again;
   the second process is timed from start to exit, with its peak RSS. Goal: seconds.

    python benchmarks/scale.py [--rows 60000] [--resume-rows 1000000] [--only commits resume] [--keep DIR]

The 10-million-row figure is a manual run (about 2 hours on 2 cores for the first run; not part of CI):

    python benchmarks/scale.py --only resume --resume-rows 10000000 --keep /tmp/scale10m
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Measured, machine, run_with_rusage, table, write_prompts

RATE_GOAL = 2.0
RESUME_GOAL_S = 10.0
PER = 1000  # shards per reported window


def write_scale_job(folder: Path, name: str, prompts: Path, rows_per_shard: int) -> Path:
    job = folder / f"{name}.json"  # JSON is YAML
    data = {
        "name": name,
        "dataset": {"path": str(prompts), "id_column": "id", "columns": []},
        "template": "Write one sentence about {{ topic }}.",
        "parameters": {"max_new_tokens": 4},
        "endpoint": {"url": "sim://", "concurrency": 64},
        "output": {"dir": str(folder / name), "details": "summary", "rows_per_shard": rows_per_shard},
    }
    job.write_text(json.dumps(data))
    return job


def commit_rates(out: Path) -> list[float]:
    """Shards per second over each ``PER`` data shards, in commit order (the files' modification times)."""
    times = sorted(p.stat().st_mtime_ns / 1e9 for p in (out / "data").glob("part-*.parquet"))
    rates = []
    for start in range(0, len(times) - PER + 1, PER):
        span = times[start + PER - 1] - times[start]
        rates.append((PER - 1) / span if span > 0 else float("inf"))
    return rates


def finished(out: Path, rows: int) -> bool:
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(manifest.get("complete")) and manifest.get("rows_written") == rows


def run(argv: list[str]) -> Measured:
    measured = run_with_rusage([sys.executable, "-m", "tgbatch", "run", *argv])
    if measured.returncode != 0:
        print(f"tgbatch run failed ({measured.returncode}):\n{measured.stderr[-3000:]}", file=sys.stderr)
        sys.exit(1)
    return measured


def bench_commits(folder: Path, rows: int) -> bool:
    prompts = write_prompts(folder / "commits.jsonl", rows)
    job = write_scale_job(folder, "commits", prompts, 10)
    first = run([str(job), "--fresh"])
    rates = commit_rates(folder / "commits")
    print(f"\nCommit rate: {rows:,} rows, rows_per_shard 10, sim:// ({machine()}), run {first.wall_s:.1f} s\n")
    body = [[f"{i * PER + 1:,}-{(i + 1) * PER:,}", f"{r:.0f}"] for i, r in enumerate(rates)]
    print(table(body, ["shards", "shards/s"]))
    if len(rates) < 2:
        return True
    ratio = rates[0] / rates[-1]
    ok = ratio <= RATE_GOAL
    print(f"\nfirst / last thousand: {ratio:.2f}x (goal <= {RATE_GOAL:.0f}x): {'PASS' if ok else 'MISS'}")
    return ok


def bench_resume(folder: Path, rows: int, repeat: int) -> bool:
    prompts = folder / "resume.jsonl"
    out = folder / "resume"
    if not (prompts.exists() and finished(out, rows)):
        write_prompts(prompts, rows)
    job = write_scale_job(folder, "resume", prompts, 1000)
    lines = []
    if not finished(out, rows):
        first = run([str(job), "--fresh"])
        lines.append(["first run", f"{first.wall_s:.1f}", f"{first.cpu_s:.1f}", f"{first.max_rss_mb:.0f}", ""])
    ok = True
    for i in range(repeat):
        again = run([str(job)])
        if not finished(out, rows):
            print("the re-run did not leave a complete manifest", file=sys.stderr)
            sys.exit(1)
        passed = again.wall_s < RESUME_GOAL_S
        ok &= passed
        verdict = "PASS" if passed else "MISS"
        figures = [f"{again.wall_s:.2f}", f"{again.cpu_s:.2f}", f"{again.max_rss_mb:.0f}"]
        lines.append([f"re-run {i + 1}", *figures, verdict])
    print(f"\nResume: a finished {rows:,}-row job, 1,000 rows a shard ({machine()})\n")
    print(table(lines, ["run", "wall s", "CPU-s", "peak RSS MB", f"goal < {RESUME_GOAL_S:.0f} s"]))
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=60_000, help="rows of the commit-rate job (10 a shard)")
    parser.add_argument("--resume-rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2, help="re-runs of the finished job")
    parser.add_argument("--only", nargs="+", choices=["commits", "resume"], default=["commits", "resume"])
    parser.add_argument("--keep", type=Path, help="work in DIR and keep it (a finished resume job there is reused)")
    args = parser.parse_args()
    ok = True
    with contextlib.ExitStack() as stack:
        folder = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        folder.mkdir(parents=True, exist_ok=True)
        if "commits" in args.only:
            ok &= bench_commits(folder, args.rows)
        if "resume" in args.only:
            ok &= bench_resume(folder, args.resume_rows, args.repeat)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
