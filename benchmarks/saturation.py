"""Benchmark 2: does `tgbatch run` keep simulated GPUs saturated?

Each server is `tgbatch serve --decode-ms-per-token 5 --max-batch-size 32 --max-concurrent-requests 128
--min-output-tokens T`: up to 32 requests decode together at full speed, and no request ends before T tokens,
so with `max_new_tokens: T` every row generates exactly T tokens. The ideal time is rows x T x 5 ms / 32 per
server (a full batch all the time); the table gives ideal / achieved for
- one server;
- two such servers (`endpoint.url` a list: the ideal halves);
- one server answering 10% of requests with 429 `Model is overloaded` (`--overload-rate 0.1`).
The job uses `endpoint.concurrency: auto` (a fixed 64 if the spec does not accept `auto`, said in the output).
The achieved time is the run's own (`elapsed_s` in the manifest: from the first read to the last commit, without
the process's start-up), the process's wall time is shown next to it.

    python benchmarks/saturation.py [--rows 4000] [--tokens 32] [--only one two overload]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import job_data, machine, run_with_rusage, table, tgbatch_server, write_job, write_prompts

DECODE_MS = 5.0
BATCH = 32
MAX_CONCURRENT = 128
GOAL = 0.9
FALLBACK_CONCURRENCY = 64


def server_flags(tokens: int, *extra: str) -> list[str]:
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


def spec_refuses(data: dict) -> str | None:
    """Why the installed tgbatch refuses this job spec, or None."""
    from tgbatch.errors import SpecError
    from tgbatch.job.load import load_job_data

    try:
        load_job_data(data)
    except SpecError as exc:
        return str(exc).splitlines()[0]
    return None


def _url(urls: list[str]) -> str | list[str]:
    return urls[0] if len(urls) == 1 else urls


def run_scenario(
    folder: Path, name: str, servers: list[list[str]], rows: int, tokens: int, prompts: Path, concurrency: Any
) -> list[str]:
    ideal = rows * tokens * DECODE_MS / 1000 / BATCH / len(servers)
    probe = job_data(
        folder, name, _url([f"http://127.0.0.1:{8000 + i}" for i in range(len(servers))]), prompts, tokens, concurrency
    )
    refused = spec_refuses(probe)
    if refused is not None:
        return [name, f"{ideal:.1f}", "-", "-", "-", "-", f"not supported ({refused})"]
    with contextlib.ExitStack() as stack:
        urls = [stack.enter_context(tgbatch_server(*flags)) for flags in servers]
        job = write_job(folder, name, _url(urls), prompts, tokens, concurrency)
        measured = run_with_rusage([sys.executable, "-m", "tgbatch", "run", str(job), "--fresh"])
    if measured.returncode not in (0, 3):
        print(f"{name}: tgbatch run exited {measured.returncode}:\n{measured.stderr[-3000:]}", file=sys.stderr)
        return [name, f"{ideal:.1f}", "-", f"{measured.wall_s:.1f}", "-", "-", f"MISS (exit {measured.returncode})"]
    out = folder / name
    manifest = json.loads((out / "manifest.json").read_text())
    elapsed = float(manifest.get("elapsed_s") or measured.wall_s)
    data = pq.read_table(out / "data", columns=["generated_tokens"])
    generated = sum(v or 0 for v in data.column("generated_tokens").to_pylist())
    exact = data.num_rows == rows and generated == rows * tokens
    note = "" if exact else f" ({data.num_rows} rows, {generated} tokens)"
    ratio = ideal / elapsed
    verdict = ("PASS" if ratio >= GOAL else "MISS") + note
    return [
        name,
        f"{ideal:.1f}",
        f"{elapsed:.1f}",
        f"{measured.wall_s:.1f}",
        f"{ratio:.2f}",
        f"{measured.cpu_s:.1f}",
        verdict,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per row (every row generates exactly this)")
    parser.add_argument("--only", nargs="*", choices=["one", "two", "overload"], help="run only these scenarios")
    args = parser.parse_args()

    names = args.only or ["one", "two", "overload"]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        prompts = write_prompts(folder / "prompts.jsonl", args.rows)
        concurrency: Any = "auto"
        if spec_refuses(job_data(folder, "probe", "http://127.0.0.1:1", prompts, args.tokens, "auto")):
            concurrency = FALLBACK_CONCURRENCY
        scenarios = {
            "one": ("one server", [server_flags(args.tokens)]),
            "two": ("two servers", [server_flags(args.tokens), server_flags(args.tokens)]),
            "overload": (
                "one server, 10% 429",
                [server_flags(args.tokens, "--overload-rate", "0.1", "--fault-seed", "1")],
            ),
        }
        for key in names:
            label, servers = scenarios[key]
            row = run_scenario(folder, key, servers, args.rows, args.tokens, prompts, concurrency)
            row[0] = label
            results.append(row)
            print(" | ".join(row), file=sys.stderr)

    print(
        f"\nSaturation: {args.rows} rows x {args.tokens} new tokens, `tgbatch serve --decode-ms-per-token "
        f"{DECODE_MS:g} --max-batch-size {BATCH} --max-concurrent-requests {MAX_CONCURRENT}` ({machine()})"
    )
    if concurrency == "auto":
        print("endpoint.concurrency: auto\n")
    else:
        print(f"endpoint.concurrency: {concurrency} (this tgbatch refuses `auto`)\n")
    header = ["scenario", "ideal s", "run s", "process s", "ideal/run", "client CPU-s", f"goal >= {GOAL} of ideal"]
    print(table(results, header))


if __name__ == "__main__":
    main()
