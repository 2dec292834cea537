"""``tgbatch export``: jobs run on ``sim://`` (and folders built by hand, for exact control of the DPO pairs)
exported through the CLI, every file loaded back with ``datasets`` into the shape TRL and axolotl document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from datasets import load_dataset
from typer.testing import CliRunner

from tgbatch.cli import _register, app

from .runner_util import read_rows, write_job, write_jsonl

_register()
runner = CliRunner()

MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "{{ question }}"}]


def _questions(tmp: Path) -> Path:
    rows = [{"id": f"r{i}", "question": f"What is {i} plus {i}?", "answer": str(2 * i)} for i in range(6)]
    return write_jsonl(tmp / "q.jsonl", rows)


@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("chat")
    job = {
        "name": "chat",
        "dataset": {"path": str(_questions(tmp)), "id_column": "id"},
        "messages": MESSAGES,
        "parameters": {"max_tokens": 600, "temperature": 0.7, "logprobs": True},
        "samples": 2,
        "endpoint": {"url": "sim://?flavor=vllm&reasoning=true", "concurrency": 4},
        "output": {"dir": str(tmp / "out")},
    }
    result = runner.invoke(app, ["run", str(write_job(tmp / "job.yaml", job))])
    assert result.exit_code == 0, result.output
    return tmp / "out"


@pytest.fixture(scope="module")
def generate_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("gen")
    job = {
        "name": "gen",
        "dataset": {"path": str(_questions(tmp)), "id_column": "id"},
        "template": "Q: {{ question }}\nA:",
        "parameters": {"max_new_tokens": 8, "do_sample": True, "temperature": 0.8},
        "samples": 2,
        "endpoint": {"url": "sim://", "concurrency": 4},
        "output": {"dir": str(tmp / "out"), "details": "full"},
    }
    result = runner.invoke(app, ["run", str(write_job(tmp / "job.yaml", job))])
    assert result.exit_code == 0, result.output
    return tmp / "out"


def export(folder: Path, out: Path, fmt: str, *args: str) -> Any:
    return runner.invoke(app, ["export", str(folder), "--format", fmt, "-o", str(out), *args])


def load(path: Path) -> list[dict[str, Any]]:
    ds = load_dataset("json", data_files=str(path), split="train")
    return [dict(r) for r in ds]


def by_key(folder: Path) -> dict[tuple[str, int], dict[str, Any]]:
    return {(r["row_id"], r["sample"]): r for r in read_rows(folder / "data")}


def mean_logprob(row: dict[str, Any]) -> float:
    tokens = row["details"]["tokens"] if isinstance(row["details"], dict) else row["details"]
    return sum(t["logprob"] for t in tokens) / len(tokens)


def test_sft_messages_are_the_input_plus_the_answer(chat_dir: Path, tmp_path: Path) -> None:
    result = export(chat_dir, tmp_path / "sft.jsonl", "sft-messages", "--reasoning-as", "reasoning_content")
    assert result.exit_code == 0, result.output
    records = load(tmp_path / "sft.jsonl")
    data = list(by_key(chat_dir).values())
    assert len(records) == len(data) == 12
    # datasets gives every message of a list the same keys (None where a message has none): compare without them
    got = sorted(
        json.dumps([{k: v for k, v in m.items() if v is not None} for m in rec["messages"]]) for rec in records
    )
    expected = sorted(
        json.dumps(
            [*r["messages"], {"role": "assistant", "content": r["generated_text"], "reasoning_content": r["reasoning"]}]
        )
        for r in data
    )
    assert got == expected
    assert all(r["reasoning"] for r in data)  # the reasoning model did think: the field above is not vacuous


def test_reasoning_as_thinking_and_none(chat_dir: Path, tmp_path: Path) -> None:
    assert export(chat_dir, tmp_path / "t.jsonl", "sft-messages", "--reasoning-as", "thinking").exit_code == 0
    assistant = load(tmp_path / "t.jsonl")[0]["messages"][-1]
    assert assistant["role"] == "assistant" and assistant["thinking"]
    assert export(chat_dir, tmp_path / "n.jsonl", "sft-messages").exit_code == 0
    first = json.loads((tmp_path / "n.jsonl").read_text().splitlines()[0])
    assert set(first["messages"][-1]) == {"role", "content"}


def test_prompt_completion_plain_for_generate_and_conversational_for_chat(
    generate_dir: Path, chat_dir: Path, tmp_path: Path
) -> None:
    assert export(generate_dir, tmp_path / "g.jsonl", "sft-prompt-completion").exit_code == 0
    records = load(tmp_path / "g.jsonl")
    data = by_key(generate_dir).values()
    assert sorted((r["prompt"], r["completion"]) for r in records) == sorted(
        (r["prompt"], r["generated_text"]) for r in data
    )
    assert export(chat_dir, tmp_path / "c.jsonl", "sft-prompt-completion").exit_code == 0
    record = load(tmp_path / "c.jsonl")[0]
    assert [m["role"] for m in record["prompt"]] == ["system", "user"]
    assert [m["role"] for m in record["completion"]] == ["assistant"]


@pytest.mark.parametrize("fmt", ["sft-messages", "dpo-axolotl"])
def test_chat_only_formats_refuse_a_generate_job(generate_dir: Path, tmp_path: Path, fmt: str) -> None:
    result = export(generate_dir, tmp_path / "x.jsonl", fmt, "--rank-by", "mean_logprob")
    assert result.exit_code == 2
    assert "generate job" in result.output and "use --format" in result.output
    assert not (tmp_path / "x.jsonl").exists()


@pytest.mark.parametrize("folder", ["chat_dir", "generate_dir"])
def test_dpo_by_mean_logprob_chooses_the_likelier_sample(folder: str, tmp_path: Path, request: Any) -> None:
    root: Path = request.getfixturevalue(folder)
    result = export(root, tmp_path / "dpo.jsonl", "dpo", "--rank-by", "mean_logprob", "--columns", "row_id")
    assert result.exit_code == 0, result.output
    records = load(tmp_path / "dpo.jsonl")
    data = by_key(root)
    assert len(records) == 6  # two samples of distinct likelihood per row
    for rec in records:
        a, b = data[(rec["row_id"], 0)], data[(rec["row_id"], 1)]
        best, worst = (a, b) if mean_logprob(a) > mean_logprob(b) else (b, a)
        assert best["generated_text"] != worst["generated_text"]  # the pair tells which was chosen
        if folder == "chat_dir":
            assert rec["prompt"] == best["messages"]
            assert rec["chosen"] == [{"role": "assistant", "content": best["generated_text"]}]
            assert rec["rejected"] == [{"role": "assistant", "content": worst["generated_text"]}]
        else:  # TRL's standard (string) form
            assert (rec["prompt"], rec["chosen"], rec["rejected"]) == (
                best["prompt"],
                best["generated_text"],
                worst["generated_text"],
            )


# -- a folder built by hand: exact scores, ties, lone samples, failed rows ------------------------------------


def hand_folder(tmp_path: Path, *, scores: bool = True) -> Path:
    root = tmp_path / "hand"
    (root / "data").mkdir(parents=True)
    (root / "errors").mkdir()
    (root / "job.yaml").write_text(yaml.safe_dump({"name": "hand", "endpoint": {"api": "chat"}}))
    msgs = lambda q: [{"role": "user", "content": q}]  # noqa: E731
    rows = [  # (row_id, sample, answer, exact_match)
        ("a", 0, "4", 1.0),
        ("a", 1, "5", 0.0),
        ("a", 2, "6", 0.0),  # chosen 0, rejected 1 (lowest equal worst)
        ("b", 0, "x", 1.0),
        ("b", 1, "y", 1.0),  # a tie: no pair
        ("c", 0, "z", 0.0),  # a lone sample: no pair
        ("d", 0, "7", 0.0),
        ("d", 1, "8", 0.5),
        ("d", 2, "9", 1.0),  # chosen 2, rejected 0
    ]
    data = [
        {
            "row_id": r,
            "sample": s,
            "messages": msgs(f"q{r}"),
            "generated_text": t,
            "reasoning": None,
            "finish_reason": "stop" if r != "d" else "length",
        }
        for r, s, t, _ in rows
    ]
    pq.write_table(pa.Table.from_pylist(data), root / "data" / "part-0of1-000000.parquet")
    errors = [{"row_id": "c", "sample": 1, "messages": msgs("qc"), "error_type": "BadRequestError"}]
    pq.write_table(pa.Table.from_pylist(errors), root / "errors" / "part-0of1-000001.parquet")
    if scores:
        (root / "scores").mkdir()
        table = [{"row_id": r, "sample": s, "extracted": t, "exact_match": m} for r, s, t, m in rows]
        pq.write_table(pa.Table.from_pylist(table), root / "scores" / "part-0of1-000000.parquet")
    return root


def test_dpo_by_a_score_best_vs_worst_ties_and_lone_samples_skipped(tmp_path: Path) -> None:
    root = hand_folder(tmp_path)
    assert export(root, tmp_path / "p.jsonl", "dpo", "--rank-by", "exact_match").exit_code == 0
    pairs = [
        (r["prompt"][0]["content"], r["chosen"][0]["content"], r["rejected"][0]["content"])
        for r in load(tmp_path / "p.jsonl")
    ]
    assert pairs == [("qa", "4", "5"), ("qd", "9", "7")]
    assert export(root, tmp_path / "ax.jsonl", "dpo-axolotl", "--rank-by", "exact_match").exit_code == 0
    first = load(tmp_path / "ax.jsonl")[0]
    assert first["messages"] == [{"role": "user", "content": "qa"}]
    assert first["chosen"] == {"role": "assistant", "content": "4"}
    assert first["rejected"] == {"role": "assistant", "content": "5"}


def test_rank_by_needs_something_to_rank_by(tmp_path: Path) -> None:
    root = hand_folder(tmp_path, scores=False)
    result = export(root, tmp_path / "p.jsonl", "dpo", "--rank-by", "exact_match")
    assert result.exit_code == 2 and "tgbatch score" in result.output
    result = export(root, tmp_path / "p.jsonl", "dpo", "--rank-by", "mean_logprob")
    assert result.exit_code == 2 and "logprobs: true" in result.output
    result = export(root, tmp_path / "p.jsonl", "dpo")
    assert result.exit_code == 2 and "--rank-by" in result.output
    assert not (tmp_path / "p.jsonl").exists()


def test_rows_with_filters_and_columns_never_failed_rows(tmp_path: Path) -> None:
    root = hand_folder(tmp_path)
    args = ("--where", "finish_reason=stop", "--columns", "row_id,sample,generated_text")
    assert export(root, tmp_path / "r.jsonl", "jsonl", *args).exit_code == 0
    records = load(tmp_path / "r.jsonl")
    assert list(records[0]) == ["row_id", "sample", "generated_text"]
    assert sorted((r["row_id"], r["sample"]) for r in records) == [
        ("a", 0),
        ("a", 1),
        ("a", 2),
        ("b", 0),
        ("b", 1),
        ("c", 0),
    ]  # d's rows filtered out; c's failed sample (errors/) never exported
    assert export(root, tmp_path / "r.parquet", "parquet", "--where", "row_id=d", "--where", "sample=2").exit_code == 0
    table = pq.read_table(tmp_path / "r.parquet")
    assert table.num_rows == 1 and table.column("generated_text").to_pylist() == ["9"]


def test_unknown_column_and_format_are_clear_errors(tmp_path: Path) -> None:
    root = hand_folder(tmp_path)
    result = export(root, tmp_path / "r.jsonl", "jsonl", "--where", "finish=stop")
    assert result.exit_code == 2 and "'finish' does not exist" in result.output and "finish_reason" in result.output
    result = export(root, tmp_path / "r.jsonl", "csv")
    assert result.exit_code == 2 and "unknown format" in result.output and "sft-messages" in result.output
    result = export(tmp_path / "nowhere", tmp_path / "r.jsonl", "jsonl")
    assert result.exit_code == 2 and "no such folder" in result.output


def test_output_replaced_atomically_and_push_refused_without_token(tmp_path: Path, monkeypatch: Any) -> None:
    root = hand_folder(tmp_path)
    target = tmp_path / "out" / "train.jsonl"
    target.parent.mkdir()
    target.write_text("old\n")
    assert export(root, target, "sft-messages").exit_code == 0
    assert len(load(target)) == 9 and [p.name for p in target.parent.iterdir()] == ["train.jsonl"]
    monkeypatch.delenv("HF_TOKEN", raising=False)
    result = export(root, tmp_path / "out" / "new.jsonl", "sft-messages", "--push-to-hub", "me/data")
    assert result.exit_code == 2 and "HF_TOKEN" in result.output
    assert not (tmp_path / "out" / "new.jsonl").exists()
