"""The shipped example jobs (`jobs/*.yaml`) run as the README shows them, with the follow-up commands it gives:
scoring, the fine-tuning exports and the OpenAI Batch export. Output goes to a temporary folder."""

from __future__ import annotations

import json
from pathlib import Path

import openai.types.chat
import pytest
from datasets import load_dataset
from typer.testing import CliRunner

from tgbatch.cli import _register, app

_register()
runner = CliRunner()
JOBS = Path(__file__).resolve().parents[1] / "jobs"


@pytest.mark.parametrize("name", ["quickstart", "eval", "batch"])
def test_each_example_job_validates_and_runs(tmp_path: Path, name: str) -> None:
    out = tmp_path / name
    assert runner.invoke(app, ["validate", str(JOBS / f"{name}.yaml"), "-o", str(out), "--offline"]).exit_code == 0
    result = runner.invoke(app, ["run", str(JOBS / f"{name}.yaml"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "manifest.json").read_text())["complete"]


def test_the_eval_job_scores_and_exports_training_data(tmp_path: Path) -> None:
    out = tmp_path / "eval"
    result = runner.invoke(app, ["run", str(JOBS / "eval.yaml"), "-o", str(out)])
    assert result.exit_code == 0 and "pass@4" in result.output, result.output
    scores = json.loads((out / "scores.json").read_text())
    assert scores["exact_match"]["n"] == 160 and scores["pass@4"]["n"] == 40
    for fmt, extra, rows in [
        ("sft-messages", [], 160),
        ("sft-prompt-completion", [], 160),
        ("dpo", ["--rank-by", "mean_logprob"], 40),
    ]:
        path = tmp_path / f"{fmt}.jsonl"
        assert runner.invoke(app, ["export", str(out), "--format", fmt, "-o", str(path), *extra]).exit_code == 0
        assert load_dataset("json", data_files=str(path), split="train").num_rows == rows


def test_the_batch_job_exports_openai_batch_results(tmp_path: Path) -> None:
    out = tmp_path / "batch"
    assert runner.invoke(app, ["run", str(JOBS / "batch.yaml"), "-o", str(out)]).exit_code == 0
    results = tmp_path / "results.jsonl"
    assert runner.invoke(app, ["export", str(out), "--format", "openai-batch", "-o", str(results)]).exit_code == 0
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert sorted(line["custom_id"] for line in lines) == sorted(f"request-{i}" for i in range(20))
    for line in lines:
        assert line["error"] is None and line["response"]["status_code"] == 200
        openai.types.chat.ChatCompletion.model_validate(line["response"]["body"])
