"""An eval run through to training data, through the CLI: a chat job with a `score:` section on `sim://`, scored
as it ends, then exported as SFT data of the correct answers only (`--min-score`) and as DPO pairs ranked by the
score, each file loaded back with `datasets` in the shape TRL expects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from datasets import load_dataset
from typer.testing import CliRunner

from tgbatch.cli import _register, app

from .runner_util import prompts, read_rows, write_job, write_jsonl

_register()
runner = CliRunner()


def _job(tmp_path: Path, rows: list[dict[str, Any]], out: str, **extra: Any) -> Path:
    job: dict[str, Any] = {
        "name": "ev",
        "dataset": {"path": str(write_jsonl(tmp_path / f"{out}.jsonl", rows)), "id_column": "id"},
        "messages": [{"role": "user", "content": "{{ question }}"}],
        "parameters": {"max_tokens": 24, "temperature": 0.9},
        "seed": {"policy": "per_row", "value": 5},
        "samples": 3,
        "endpoint": {"url": "sim://?flavor=vllm", "concurrency": 4},
        "output": {"dir": str(tmp_path / out)},
        **extra,
    }
    return write_job(tmp_path / f"{out}.yaml", job)


@pytest.fixture
def scored(tmp_path: Path) -> Path:
    """A scored folder where, per row, exactly sample (row index mod 3) is correct: its answer is the gold."""
    rows = prompts(12)
    assert runner.invoke(app, ["run", str(_job(tmp_path, rows, "first"))]).exit_code == 0
    answers = {(r["row_id"], r["sample"]): r["generated_text"] for r in read_rows(tmp_path / "first" / "data")}
    for i, row in enumerate(rows):
        row["answer"] = answers[(row["id"], i % 3)]
    job = _job(tmp_path, rows, "out", score={"reference": "answer", "metrics": ["exact_match"], "k": [1, 3]})
    result = runner.invoke(app, ["run", str(job)])
    assert result.exit_code == 0 and "pass@3" in result.output, result.output
    return tmp_path / "out"


def test_sft_of_the_correct_answers_only(scored: Path, tmp_path: Path) -> None:
    summary = json.loads((scored / "scores.json").read_text())
    assert summary["exact_match"]["mean"] == pytest.approx(1 / 3) and summary["pass@3"]["mean"] == 1.0
    out = tmp_path / "sft.jsonl"
    result = runner.invoke(
        app, ["export", str(scored), "--format", "sft-messages", "-o", str(out), "--min-score", "exact_match=1"]
    )
    assert result.exit_code == 0, result.output
    ds = load_dataset("json", data_files=str(out), split="train")
    assert ds.num_rows == 12 and ds.column_names == ["messages"]
    gold = {r["question"]: r["answer"] for r in read_rows(scored / "data") if r["sample"] == 0}
    for messages in ds["messages"]:
        assert [m["role"] for m in messages] == ["user", "assistant"]
        assert messages[1]["content"] == gold[messages[0]["content"]]  # only the correct sample of each row


def test_dpo_pairs_ranked_by_the_score(scored: Path, tmp_path: Path) -> None:
    out = tmp_path / "dpo.jsonl"
    result = runner.invoke(app, ["export", str(scored), "--format", "dpo", "-o", str(out), "--rank-by", "exact_match"])
    assert result.exit_code == 0, result.output
    ds = load_dataset("json", data_files=str(out), split="train")
    assert ds.num_rows == 12 and set(ds.column_names) >= {"prompt", "chosen", "rejected"}
    gold = {r["question"]: r["answer"] for r in read_rows(scored / "data") if r["sample"] == 0}
    for row in ds:
        assert row["prompt"][0]["role"] == "user"
        assert [m["role"] for m in row["chosen"]] == ["assistant"] == [m["role"] for m in row["rejected"]]
        assert row["chosen"][0]["content"] == gold[row["prompt"][0]["content"]]
        assert row["rejected"][0]["content"] != row["chosen"][0]["content"]


def test_min_score_errors(scored: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "x.jsonl")
    for args, said in [
        (["--format", "dpo", "--min-score", "exact_match=1"], "rank the samples with --rank-by"),
        (["--format", "jsonl", "--min-score", "accuracy=1"], "its scores: exact_match"),
        (["--format", "jsonl", "--min-score", "exact_match"], "expected METRIC=NUMBER"),
    ]:
        result = runner.invoke(app, ["export", str(scored), "-o", out, *args])
        assert result.exit_code == 2 and said in result.output and "Traceback" not in result.output, result.output
