"""Chat client overhead against one instant `tgbatch serve` process (the OpenAI-compatible route).

Runs N chat requests (one user message each) at C concurrent requests through, in turn:
- `tgbatch run` on a chat job (the full pipeline: reading, rendering messages, retries, Parquet shards,
  checkpoint);
- the official `openai` package's AsyncOpenAI with a semaphore and asyncio.gather (what a user would write);
- a raw aiohttp loop posting pre-rendered chat bodies and discarding the answers (the practical limit in Python).
Each runs in its own process, alternating, `--rounds` times (default 2); the table gives each client's best round:
rows/s and that process's CPU seconds per 1,000 rows. Goal: tgbatch >= 1.5x the openai client, >= 0.5x raw.

    python benchmarks/chat_overhead.py [--rows 20000] [--concurrency 64] [--max-tokens 16] [--flavor tgi]
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
from _common import best_of_rounds, machine, print_comparison, run_with_rusage, tgbatch_server, write_prompts

TEMPLATE = "Write one sentence about {topic}."
MODEL = "tgbatch/sim"


def _messages(path: Path) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": TEMPLATE.format(topic=json.loads(line)["topic"])}] for line in path.open()]


def _job(folder: Path, url: str, prompts: Path, args: argparse.Namespace) -> Path:
    job = {
        "name": "chat-bench",
        "dataset": {"path": str(prompts), "id_column": "id", "columns": []},
        "messages": [{"role": "user", "content": TEMPLATE.replace("{topic}", "{{ topic }}")}],
        "parameters": {"max_tokens": args.max_tokens},
        "endpoint": {"url": url + "/v1", "api": "chat", "concurrency": args.concurrency},
        "output": {"dir": str(folder / "chat-bench")},
    }
    path = folder / "chat-bench.json"  # JSON is YAML
    path.write_text(json.dumps(job))
    return path


async def peer_openai(url: str, conversations: list[list[dict[str, str]]], concurrency: int, max_tokens: int) -> int:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url + "/v1", api_key="-", timeout=600, max_retries=0)
    semaphore = asyncio.Semaphore(concurrency)

    async def one(messages: list[dict[str, str]]) -> None:
        async with semaphore:
            await client.chat.completions.create(model=MODEL, messages=messages, max_tokens=max_tokens)

    await asyncio.gather(*(one(m) for m in conversations))
    await client.close()
    return len(conversations)


async def peer_aiohttp(url: str, conversations: list[list[dict[str, str]]], concurrency: int, max_tokens: int) -> int:
    import aiohttp

    bodies = [json.dumps({"model": MODEL, "messages": m, "max_tokens": max_tokens}).encode() for m in conversations]
    queue = iter(bodies)
    done = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal done
        for body in queue:
            async with session.post(
                url + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}
            ) as r:
                await r.read()
                done += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return done


PEERS = {"openai": peer_openai, "aiohttp": peer_aiohttp}


def run_peer(name: str, url: str, prompts_path: Path, concurrency: int, max_tokens: int) -> None:
    conversations = _messages(prompts_path)
    start = time.perf_counter()
    rows = asyncio.run(PEERS[name](url, conversations, concurrency, max_tokens))
    print(json.dumps({"rows": rows, "seconds": time.perf_counter() - start}))


def _measure(
    name: str, folder: Path, url: str, prompts: Path, args: argparse.Namespace
) -> tuple[float, float, float] | None:
    """(rows/s over the whole process, rows/s excluding start-up, CPU-s per 1,000 rows), or None on failure."""
    if name == "tgbatch":
        job = _job(folder, url, prompts, args)
        measured = run_with_rusage([sys.executable, "-m", "tgbatch", "run", str(job), "--fresh"])
        seconds = json.loads((folder / "chat-bench" / "manifest.json").read_text()).get("elapsed_s", 0) or 0
    else:
        argv = [sys.executable, __file__, "--peer", name, "--url", url, "--prompts", str(prompts)]
        argv += ["--concurrency", str(args.concurrency), "--max-tokens", str(args.max_tokens)]
        measured = run_with_rusage(argv)
        seconds = json.loads(measured.stdout.strip().splitlines()[-1])["seconds"] if measured.stdout else 0
    if measured.returncode != 0 or not seconds:
        print(f"{name} failed ({measured.returncode}):\n{measured.stderr[-2000:]}", file=sys.stderr)
        return None
    return args.rows / measured.wall_s, args.rows / seconds, measured.cpu_s / args.rows * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--flavor", default="tgi", help="the simulator's flavour (tgi, vllm, sglang)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; each client's best counts")
    parser.add_argument("--only", nargs="*", help="run only these (tgbatch, openai, aiohttp)")
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--prompts", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        run_peer(args.peer, args.url, Path(args.prompts), args.concurrency, args.max_tokens)
        return

    names = args.only or ["tgbatch", *PEERS]
    flags = ["--flavor", args.flavor, "--model-id", MODEL, "--max-concurrent-requests", "4096"]
    with tempfile.TemporaryDirectory() as tmp, tgbatch_server(*flags) as url:
        folder = Path(tmp)
        prompts = write_prompts(folder / "prompts.jsonl", args.rows)
        results = best_of_rounds(names, args.rounds, lambda name: _measure(name, folder, url, prompts, args))
    print_comparison(
        results,
        f"Chat client overhead: {args.rows} chat requests, {args.concurrency} concurrent, {args.max_tokens} max "
        f"tokens, one instant `tgbatch serve --flavor {args.flavor}`, best of {args.rounds} alternating rounds "
        f"({machine()})",
        ">= 1.5x the openai client, >= 0.5x the raw aiohttp loop",
    )


if __name__ == "__main__":
    main()
