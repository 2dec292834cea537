"""Throughput and memory of the batch runner against the in-process simulator (``sim://``, no latency).

    python3 benchmarks/runner_throughput.py --rows 20000 --concurrency 16
    python3 benchmarks/runner_throughput.py --rows 200000 --max-new-tokens 2   # memory stays flat

Prints rows/s, generated tokens/s and the peak resident memory. The simulator runs in the same process, so the
figure is the runner's own overhead plus the client's and the simulator's, an upper bound on the cost per row.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import anyio

from tgbatch.job.load import load_job_data
from tgbatch.runner import make_client, prepare, run_job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--rows-per-shard", type=int, default=1000)
    parser.add_argument("--url", default="sim://")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "prompts.jsonl"
        with data.open("w") as f:
            for i in range(args.rows):
                f.write(json.dumps({"id": f"row-{i}", "text": f"Describe item number {i} in a sentence."}) + "\n")
        job = load_job_data(
            {
                "name": "bench",
                "dataset": {"path": str(data), "id_column": "id"},
                "template": "{{ text }}",
                "parameters": {"max_new_tokens": args.max_new_tokens, "do_sample": True},
                "endpoint": {"url": args.url, "concurrency": args.concurrency},
                "output": {"dir": str(Path(tmp) / "out"), "rows_per_shard": args.rows_per_shard},
            }
        )
        prepared = prepare(job)

        async def go() -> None:
            async with make_client(job.spec.endpoint, None) as client:
                start = time.perf_counter()
                result = await run_job(prepared, client)
                elapsed = time.perf_counter() - start
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"{result.ok} rows in {elapsed:.1f} s: {result.ok / elapsed:.0f} rows/s, "
                f"{result.generated_tokens / elapsed:.0f} generated tokens/s, peak RSS {peak_mb:.0f} MB "
                f"(concurrency {args.concurrency})"
            )

        anyio.run(go)


if __name__ == "__main__":
    main()
