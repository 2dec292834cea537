"""Benchmark 1: client overhead against one instant `tgbatch serve` process.

Runs N prompts at C concurrent requests through, in turn:
- `tgbatch run` (the full pipeline: reading, templating, retries, Parquet shards, checkpoint);
- the `text-generation` AsyncClient with a semaphore and asyncio.gather (what its README suggests);
- huggingface_hub's AsyncInferenceClient the same way;
- a raw aiohttp loop posting pre-rendered bodies and discarding the answers (the practical limit in Python).
Each runs in its own process, alternating, `--rounds` times (default 2); the table gives each client's best round:
rows/s and that process's CPU seconds per 1,000 rows.

    python benchmarks/client_overhead.py [--rows 20000] [--concurrency 64] [--max-new-tokens 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of_rounds, machine, print_comparison, run_with_rusage, tgbatch_server, write_job, write_prompts

TEMPLATE = "Write one sentence about {topic}."


def _prompts(path: Path) -> list[str]:
    return [TEMPLATE.format(topic=json.loads(line)["topic"]) for line in path.open()]


async def _gather(call, prompts: list[str], concurrency: int) -> int:
    semaphore = asyncio.Semaphore(concurrency)

    async def one(prompt: str) -> None:
        async with semaphore:
            await call(prompt)

    await asyncio.gather(*(one(p) for p in prompts))
    return len(prompts)


async def peer_text_generation(url: str, prompts: list[str], concurrency: int, max_new_tokens: int) -> int:
    from text_generation import AsyncClient

    client = AsyncClient(url, timeout=600)
    return await _gather(lambda p: client.generate(p, max_new_tokens=max_new_tokens), prompts, concurrency)


async def peer_huggingface_hub(url: str, prompts: list[str], concurrency: int, max_new_tokens: int) -> int:
    from huggingface_hub import AsyncInferenceClient

    client = AsyncInferenceClient(model=url, timeout=600)
    n = await _gather(
        lambda p: client.text_generation(p, max_new_tokens=max_new_tokens, details=True), prompts, concurrency
    )
    await client.close()
    return n


async def peer_aiohttp(url: str, prompts: list[str], concurrency: int, max_new_tokens: int) -> int:
    import aiohttp

    bodies = [
        json.dumps({"inputs": p, "parameters": {"max_new_tokens": max_new_tokens, "details": True}}).encode()
        for p in prompts
    ]
    queue = iter(bodies)
    done = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal done
        for body in queue:
            async with session.post(url + "/generate", data=body, headers={"Content-Type": "application/json"}) as r:
                await r.read()
                done += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return done


PEERS = {
    "text-generation": peer_text_generation,
    "huggingface_hub": peer_huggingface_hub,
    "aiohttp": peer_aiohttp,
}


def run_peer(name: str, url: str, prompts_path: Path, concurrency: int, max_new_tokens: int) -> None:
    prompts = _prompts(prompts_path)
    start = time.perf_counter()
    rows = asyncio.run(PEERS[name](url, prompts, concurrency, max_new_tokens))
    print(json.dumps({"rows": rows, "seconds": time.perf_counter() - start}))


def _measure(
    name: str, folder: Path, url: str, prompts: Path, args: argparse.Namespace
) -> tuple[float, float, float] | None:
    """(rows/s over the whole process, rows/s excluding start-up, CPU-s per 1,000 rows), or None on failure."""
    if name == "tgbatch":
        job = write_job(folder, "bench", url, prompts, args.max_new_tokens, args.concurrency)
        measured = run_with_rusage([sys.executable, "-m", "tgbatch", "run", str(job), "--fresh"])
        # the run proper, from the first read to the last commit, without imports and start-up
        seconds = json.loads((folder / "bench" / "manifest.json").read_text())["elapsed_s"]
    else:
        argv = [sys.executable, __file__, "--peer", name, "--url", url, "--prompts", str(prompts)]
        argv += ["--concurrency", str(args.concurrency), "--max-new-tokens", str(args.max_new_tokens)]
        measured = run_with_rusage(argv)
        seconds = json.loads(measured.stdout.strip().splitlines()[-1])["seconds"] if measured.stdout else 0
    if measured.returncode != 0:
        print(f"{name} failed ({measured.returncode}):\n{measured.stderr[-2000:]}", file=sys.stderr)
        return None
    return args.rows / measured.wall_s, args.rows / seconds, measured.cpu_s / args.rows * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; each client's best counts")
    parser.add_argument("--only", nargs="*", help="run only these (tgbatch, text-generation, huggingface_hub, aiohttp)")
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--prompts", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        run_peer(args.peer, args.url, Path(args.prompts), args.concurrency, args.max_new_tokens)
        return

    names = args.only or ["tgbatch", *PEERS]
    with tempfile.TemporaryDirectory() as tmp, tgbatch_server() as url:
        folder = Path(tmp)
        prompts = write_prompts(folder / "prompts.jsonl", args.rows)
        results = best_of_rounds(names, args.rounds, lambda name: _measure(name, folder, url, prompts, args))
    print_comparison(
        results,
        f"Client overhead: {args.rows} prompts, {args.concurrency} concurrent, {args.max_new_tokens} new tokens, "
        f"one instant `tgbatch serve`, best of {args.rounds} alternating rounds ({machine()})",
        ">= 1.5x each peer, >= 0.5x the raw aiohttp loop",
    )


if __name__ == "__main__":
    main()
