"""Benchmark: does `tgbatch run` keep servers that queue instead of refusing busy, without flooding their queue?

vLLM and SGLang never refuse by default: requests beyond the batch wait and every request takes longer. The
servers here are `tgbatch serve --max-concurrent-requests 100000` (never a 429) `--decode-ms-per-token 5
--max-batch-size 32`: up to 32 requests decode together at full speed, beyond that every token takes longer
(the TGI simulator shares the GPU between all of them; `--flavor vllm`, where the simulator has it, queues them
FIFO instead and reports `vllm:num_requests_waiting`). Answers are 16 to 32 tokens long (`--min-output-tokens`,
`--max-output-tokens`; which length each row gets depends on the job's seed): the limit must not read a long
answer as queueing. Scenarios, each once per seed (0 to 2 by default):
- one such server;
- two, at 5 and 10 ms a token (`endpoint.url` a list).
Goals, for the worst seed: throughput >= 0.9 of ideal (every server's batch full all the time: generated tokens
x ms per token / 32, over the servers' summed speed), and median latency <= 2.5x a lone request's (each row's
latency over a lone request's of the same length on the same server, measured before the run: no flooding).
The job is `endpoint.concurrency: auto` with default settings. The run time is the run's own (`elapsed_s` in the
manifest). Exit status 1 when a goal is missed.

    python benchmarks/queueing.py [--rows 4000] [--tokens 32] [--only one two] [--seeds 0 1 2] [--flavor vllm]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BATCH, TEMPLATE, job_data, machine, run_with_rusage, table, tgbatch_server, write_prompts

THROUGHPUT_GOAL = 0.9
LATENCY_GOAL = 2.5
NEVER_REFUSES = 100_000
LONE_SAMPLES = 5


def server_flags(ms_per_token: float, tokens: int, flavor: str | None) -> list[str]:
    flags = [
        "--decode-ms-per-token",
        f"{ms_per_token:g}",
        "--max-batch-size",
        str(BATCH),
        "--max-concurrent-requests",
        str(NEVER_REFUSES),
        "--min-output-tokens",
        str(max(1, tokens // 2)),
        "--max-output-tokens",
        str(tokens),
    ]
    return flags + (["--flavor", flavor] if flavor else [])


def chat(flavor: str | None) -> bool:
    """vLLM and SGLang have no /generate: their jobs are chat jobs."""
    return flavor in ("vllm", "sglang")


def lone_s_per_token(url: str, tokens: int, flavor: str | None) -> float:
    """A lone request's latency per generated token on an idle server (median of a few, one at a time)."""
    samples = []
    with httpx.Client(timeout=60) as client:
        for i in range(LONE_SAMPLES):
            prompt = TEMPLATE.replace("{{ topic }}", f"lone request {i}")
            start = time.perf_counter()
            if chat(flavor):
                body = {"model": "tgbatch/sim", "messages": [{"role": "user", "content": prompt}], "max_tokens": tokens}
                answer = client.post(url + "/v1/chat/completions", json=body)
                answer.raise_for_status()
                generated = answer.json()["usage"]["completion_tokens"]
            else:
                body = {"inputs": prompt, "parameters": {"max_new_tokens": tokens, "details": True}}
                answer = client.post(url + "/generate", json=body)
                answer.raise_for_status()
                generated = answer.json()["details"]["generated_tokens"]
            samples.append((time.perf_counter() - start) / max(1, generated))
    return statistics.median(samples)


def job(folder: Path, name: str, urls: list[str], args: argparse.Namespace, seed: int) -> dict[str, object]:
    prompts = folder / "prompts.jsonl"
    data = job_data(folder, name, urls[0] if len(urls) == 1 else urls, prompts, args.tokens, "auto")
    data["parameters"] = {"max_new_tokens": args.tokens, "do_sample": True, "temperature": 0.8}
    data["seed"] = {"policy": "per_row", "value": seed}
    if chat(args.flavor):
        del data["template"]
        data["messages"] = [{"role": "user", "content": TEMPLATE}]
        data["parameters"] = {"max_tokens": args.tokens, "temperature": 0.8}
        v1 = [u + "/v1" for u in urls]
        data["endpoint"] = {"url": v1[0] if len(v1) == 1 else v1, "concurrency": "auto"}
    return data


@dataclass
class Outcome:
    label: str
    seed: int
    ideal_s: float = 0.0
    run_s: float | None = None
    latency_x: float | None = None
    peak: str = "-"
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.ideal_s / self.run_s if self.run_s else 0.0

    @property
    def passed(self) -> bool:
        return (
            self.run_s is not None
            and not self.note
            and self.ratio >= THROUGHPUT_GOAL
            and self.latency_x is not None
            and self.latency_x <= LATENCY_GOAL
        )

    def row(self) -> list[str]:
        if self.run_s is None:
            return [self.label, str(self.seed), "-", "-", "-", "-", "-", f"MISS {self.note}".strip()]
        verdict = ("PASS" if self.passed else "MISS") + (f" ({self.note})" if self.note else "")
        lat = f"{self.latency_x:.2f}" if self.latency_x is not None else "-"
        return [
            self.label,
            str(self.seed),
            f"{self.ideal_s:.1f}",
            f"{self.run_s:.1f}",
            f"{self.ratio:.2f}",
            lat,
            self.peak,
            verdict,
        ]


def run_scenario(folder: Path, name: str, speeds: list[float], args: argparse.Namespace, seed: int) -> Outcome:
    outcome = Outcome(name, seed)
    with contextlib.ExitStack() as stack:
        urls = [stack.enter_context(tgbatch_server(*server_flags(ms, args.tokens, args.flavor))) for ms in speeds]
        lone = {url: lone_s_per_token(url, args.tokens, args.flavor) for url in urls}
        if chat(args.flavor):  # the output's endpoint column names the /v1 URL
            lone = {url + "/v1": value for url, value in lone.items()}
        path = folder / f"{name}-{seed}.json"
        path.write_text(json.dumps(job(folder, f"{name}-{seed}", urls, args, seed)))
        measured = run_with_rusage([sys.executable, "-m", "tgbatch", "run", str(path), "--fresh"])
    if measured.returncode not in (0, 3):
        print(f"{name}: tgbatch run exited {measured.returncode}:\n{measured.stderr[-3000:]}", file=sys.stderr)
        outcome.note = f"exit {measured.returncode}"
        return outcome
    out = folder / f"{name}-{seed}"
    manifest = json.loads((out / "manifest.json").read_text())
    outcome.run_s = float(manifest.get("elapsed_s") or measured.wall_s)
    rows = pq.read_table(out / "data", columns=["generated_tokens", "latency_s", "endpoint"]).to_pylist()
    generated = sum(r["generated_tokens"] or 0 for r in rows)
    tokens_per_s = sum(BATCH / (ms / 1000) for ms in speeds)
    outcome.ideal_s = generated / tokens_per_s
    outcome.latency_x = statistics.median(
        r["latency_s"] / (lone[r["endpoint"]] * max(1, r["generated_tokens"] or 0)) for r in rows
    )
    outcome.peak = _peak(out)
    if len(rows) != args.rows:
        outcome.note = f"{len(rows)} of {args.rows} rows"
    return outcome


def _peak(out: Path) -> str:
    """The most requests in flight per endpoint, from the run's summary file when it records it."""
    with contextlib.suppress(OSError, ValueError, KeyError, AttributeError):
        for path in [*sorted(out.glob("summary*.json")), *sorted(out.glob("progress*.json"))]:
            endpoints = json.loads(path.read_text()).get("endpoints") or {}
            peaks = [str(e.get("peak_in_flight", "?")) for e in endpoints.values()]
            if peaks:
                return "/".join(peaks)
    return "-"


def summary(outcomes: list[Outcome]) -> list[list[str]]:
    rows = []
    for label in dict.fromkeys(o.label for o in outcomes):
        mine = [o for o in outcomes if o.label == label]
        done = [o for o in mine if o.run_s is not None]
        if len(done) < len(mine) or not done:
            rows.append([label, "-", "-", "-", "-", "MISS (a seed did not finish)"])
            continue
        worst_t = min(done, key=lambda o: o.ratio)
        best_t = max(done, key=lambda o: o.ratio)
        worst_l = max(done, key=lambda o: o.latency_x or 0.0)
        best_l = min(done, key=lambda o: o.latency_x or 0.0)
        verdict = "PASS" if all(o.passed for o in mine) else "MISS"
        rows.append(
            [
                label,
                f"{worst_t.ratio:.2f} (seed {worst_t.seed})",
                f"{best_t.ratio:.2f} (seed {best_t.seed})",
                f"{worst_l.latency_x:.2f} (seed {worst_l.seed})",
                f"{best_l.latency_x:.2f} (seed {best_l.seed})",
                verdict,
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--tokens", type=int, default=32, help="max_new_tokens; answers are tokens/2 to tokens long")
    parser.add_argument("--only", nargs="*", choices=["one", "two"], help="run only these scenarios")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2], help="job seeds (answer lengths)")
    parser.add_argument("--flavor", help="passed to `tgbatch serve --flavor` (e.g. vllm) when given")
    args = parser.parse_args()

    scenarios = {"one": ("one server, 5 ms/token", [5.0]), "two": ("two servers, 5 and 10 ms/token", [5.0, 10.0])}
    names = args.only or list(scenarios)
    results: list[Outcome] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_prompts(folder / "prompts.jsonl", args.rows)
        for key in names:
            label, speeds = scenarios[key]
            for seed in args.seeds:
                outcome = run_scenario(folder, key, speeds, args, seed)
                outcome.label = label
                results.append(outcome)
                print(" | ".join(outcome.row()), file=sys.stderr)

    flavor = f" --flavor {args.flavor}" if args.flavor else ""
    print(
        f"\nQueueing: {args.rows} rows x {args.tokens // 2}-{args.tokens} new tokens, `tgbatch serve{flavor} "
        f"--max-concurrent-requests {NEVER_REFUSES} --max-batch-size {BATCH}` at 5 (and 10) ms/token, "
        f"endpoint.concurrency: auto ({machine()})\n"
    )
    header = ["scenario", "seed", "ideal s", "run s", "ideal/run", "latency / lone", "peak in flight", "goals"]
    print(table([o.row() for o in results], header))
    print(f"\nGoals: ideal/run >= {THROUGHPUT_GOAL}, median latency / lone <= {LATENCY_GOAL}, for every seed:\n")
    rows = summary(results)
    print(table(rows, ["scenario", "worst ideal/run", "best", "worst latency/lone", "best", "verdict"]))
    if not all(r[-1] == "PASS" for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
