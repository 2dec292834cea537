"""Start-up time of the commands a user types first, side by side with the Hugging Face CLI's.

Runs ``tgbatch --help``, ``tgbatch status DIR`` (DIR: a finished 280-row job made here first) and
``hf --help``, alternating, ``--runs`` times each (default 7), as whole processes through the installed
console scripts, and prints the median, best and worst of each. Goal: both tgbatch commands no slower than
``hf --help`` (median against median).

    python benchmarks/startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT


def _finished_job(folder: Path) -> Path:
    """A finished quickstart-like output folder to run ``tgbatch status`` on."""
    job = folder / "job.yaml"
    text = (ROOT / "jobs" / "quickstart.yaml").read_text(encoding="utf-8")
    job.write_text(text.replace("../examples/prompts.jsonl", str(ROOT / "examples" / "prompts.jsonl")))
    out = folder / "out"
    subprocess.run(
        [sys.executable, "-m", "tgbatch", "run", str(job), "--output", str(out)],
        check=True,
        capture_output=True,
    )
    return out


def _time(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    for script in ("tgbatch", "hf"):
        if shutil.which(script) is None:
            print(f"{script} is not on PATH (pip install -e . installs tgbatch; huggingface_hub installs hf)")
            return 2
    with tempfile.TemporaryDirectory() as tmp:
        out = _finished_job(Path(tmp))
        commands = {
            "tgbatch --help": ["tgbatch", "--help"],
            f"tgbatch status DIR ({out.name})": ["tgbatch", "status", str(out)],
            "hf --help": ["hf", "--help"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for command in commands.values():
            _time(command)  # warm the file cache: every command starts from the same state
        for _ in range(args.runs):
            for name, command in commands.items():
                times[name].append(_time(command))
    print(f"start-up, {args.runs} runs each, alternating (seconds)")
    print(f"| {'command':<30} | median | best  | worst |")
    print(f"|{'-' * 32}|--------|-------|-------|")
    for name, values in times.items():
        print(f"| {name:<30} | {statistics.median(values):6.3f} | {min(values):5.3f} | {max(values):5.3f} |")
    hf = statistics.median(times["hf --help"])
    ok = all(statistics.median(v) <= hf for name, v in times.items() if name.startswith("tgbatch"))
    print(f"goal: tgbatch --help and tgbatch status no slower than hf --help (median): {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
