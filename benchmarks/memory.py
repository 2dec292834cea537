"""Benchmark 3: peak memory of `tgbatch run` does not grow with the dataset.

Runs the same job (`details: summary`, an instant simulated server) at two sizes, each in its own process, and
reports the peak resident set size (from wait4) of each. Goal: the larger at most 1.25x the smaller, and under
400 MB. By default the server is a separate `tgbatch serve` process (so the figure is the runner's alone, and
the run uses the second core); `--sim` runs the simulator in-process (`sim://`), which counts its memory too.

    python benchmarks/memory.py [--rows 50000 500000] [--sim]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, run_with_rusage, table, tgbatch_server, write_job, write_prompts

RATIO_GOAL = 1.25
LIMIT_MB = 400.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs=2, default=[50_000, 500_000], metavar=("SMALL", "LARGE"))
    parser.add_argument("--max-new-tokens", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--sim", action="store_true", help="use the in-process simulator (sim://)")
    args = parser.parse_args()

    results: list[tuple[int, float, float, int]] = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        folder = Path(tmp)
        url = "sim://" if args.sim else stack.enter_context(tgbatch_server())
        for rows in args.rows:
            prompts = write_prompts(folder / f"prompts-{rows}.jsonl", rows)
            job = write_job(folder, f"mem{rows}", url, prompts, args.max_new_tokens, args.concurrency)
            measured = run_with_rusage([sys.executable, "-m", "tgbatch", "run", str(job), "--fresh"])
            if measured.returncode != 0:
                print(f"{rows} rows: exit {measured.returncode}:\n{measured.stderr[-3000:]}", file=sys.stderr)
                sys.exit(1)
            manifest = json.loads((folder / f"mem{rows}" / "manifest.json").read_text())
            results.append((rows, measured.max_rss_mb, measured.wall_s, manifest.get("rows_written", 0)))
            print(f"{rows} rows: peak RSS {measured.max_rss_mb:.0f} MB, {measured.wall_s:.0f} s", file=sys.stderr)
            (folder / f"prompts-{rows}.jsonl").unlink()

    (_, small_mb, _, _), (_, large_mb, _, _) = results
    ratio = large_mb / small_mb
    rows = [
        [f"{n:,}", f"{written:,}", f"{wall:.0f}", f"{mb:.0f}", "PASS" if mb < LIMIT_MB else "MISS"]
        for n, mb, wall, written in results
    ]
    server = "in-process sim://" if args.sim else "one instant `tgbatch serve` process"
    print(
        f"\nMemory: peak RSS of `tgbatch run`, details: summary, {args.max_new_tokens} new tokens, concurrency "
        f"{args.concurrency}, {server} ({machine()})\n"
    )
    print(table(rows, ["input rows", "rows written", "wall s", "peak RSS MB", f"goal < {LIMIT_MB:.0f} MB"]))
    print(f"\nlarger / smaller: {ratio:.2f}x (goal <= {RATIO_GOAL}x): {'PASS' if ratio <= RATIO_GOAL else 'MISS'}")


if __name__ == "__main__":
    main()
