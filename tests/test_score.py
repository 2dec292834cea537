"""Scoring: each normaliser, extraction mode and metric on fixed text against hand-computed values; pass@k
against its closed form, maj@k, stderr; failed rows apart; and a job run on ``sim://`` scored through the CLI."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tgbatch.cli import _register, app
from tgbatch.errors import SpecError
from tgbatch.score.aggregate import aggregate, pass_at_k
from tgbatch.score.folder import load_score_spec, score_folder
from tgbatch.score.metrics import Scorer, golds_of
from tgbatch.score.normalize import normalize
from tgbatch.score.spec import ScoreSpec

from .runner_util import prompts, read_rows, write_job, write_jsonl

_register()
runner = CliRunner()


def spec(**kw: Any) -> ScoreSpec:
    return load_score_spec(kw, "test")


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (["strip"], "The  Cat, sat!"),
        (["lower"], "  the  cat, sat! "),
        (["strip_punctuation"], "  The  Cat sat "),
        (["strip_articles"], "     Cat, sat! "),
        (["collapse_whitespace"], "The Cat, sat!"),
        (["lower", "strip_punctuation", "strip_articles", "collapse_whitespace"], "cat sat"),
    ],
)
def test_each_normaliser(steps: list[Any], expected: str) -> None:
    assert normalize("  The  Cat, sat! ", steps) == expected


@pytest.mark.parametrize(
    ("extract", "text", "expected"),
    [
        ("none", " 42 ", " 42 "),  # extracted as written; normalisers come after
        ("last_number", "3 apples and 1,234.5 pears.", "1234.5"),
        ("last_number", "no digits", "[invalid]"),
        ("last_number", "it is -7", "-7"),
        ("boxed", r"so \boxed{\frac{1}{2}} then \boxed{x^{2}}", "x^{2}"),
        ("boxed", "nothing boxed", "[invalid]"),
        ("choice_letter", "A tricky one. The answer is (c).", "C"),
        ("choice_letter", "I pick B", "B"),
        ("choice_letter", "none here", "[invalid]"),
        ({"regex": r"#### (\d+)", "group": 1}, "work... #### 18 done", "18"),
        ({"regex": r"#### (\d+)"}, "no marker", "[invalid]"),
        ("none", "<think>the answer is 9</think> 8", " 8"),
        ("last_number", "<think>maybe 9</think>It is 8", "8"),
    ],
)
def test_extraction_modes(extract: Any, text: str, expected: str) -> None:
    assert Scorer(spec(reference="a", extract=extract)).score(text, ["x"]).extracted == expected


def test_metrics_and_several_golds() -> None:
    s = Scorer(
        spec(
            reference="a",
            normalize=["strip", "lower"],
            metrics=["exact_match", "contains", "numeric", "json_valid", "regex_match"],
            pattern=r"^\d+$",
            tolerance=0.01,
        )
    )
    assert s.score(" Paris ", golds_of(["London", "paris"])).values["exact_match"] == 1.0
    assert s.score("Paris", golds_of("London")).values["exact_match"] == 0.0
    assert s.score("it is paris, france", golds_of(["Paris"])).values == {
        "exact_match": 0.0,
        "contains": 1.0,
        "numeric": 0.0,
        "json_valid": 0.0,
        "regex_match": 0.0,
    }
    assert s.score("3.005", golds_of(3)).values["numeric"] == 1.0
    assert s.score("3.02", golds_of(3.0)).values["numeric"] == 0.0
    assert s.score("1,000", golds_of("1000")).values["numeric"] == 1.0
    assert s.score('```json\n{"a": 1}\n```', None).values["json_valid"] == 1.0
    assert s.score("123", golds_of("x")).values["regex_match"] == 1.0


def test_pass_at_k_is_the_closed_form() -> None:
    assert pass_at_k(4, 0, 1) == 0.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - math.comb(3, 2) / math.comb(4, 2))  # 0.5
    assert pass_at_k(5, 2, 3) == pytest.approx(1 - 1 / 10)  # C(3,3)/C(5,3)
    assert pass_at_k(4, 3, 2) == 1.0  # fewer than k wrong samples: always a right one
    with pytest.raises(ValueError):
        pass_at_k(2, 0, 3)


def test_mean_stderr_and_interval() -> None:
    agg = aggregate([1.0, 0.0, 1.0, 1.0], unscored=2)
    # mean 0.75; sample variance 0.25; stderr sqrt(0.25 / 4) = 0.25
    assert (agg.mean, agg.stderr, agg.n, agg.unscored) == (0.75, 0.25, 4, 2)
    assert agg.ci95 == pytest.approx((0.75 - 1.959964 * 0.25, 1.0))  # clamped to 1


def _folder(tmp_path: Path, data: list[dict[str, Any]], errors: list[dict[str, Any]], samples: int) -> Path:
    root = tmp_path / "out"
    (root / "data").mkdir(parents=True)
    (root / "errors").mkdir()
    (root / "job.yaml").write_text(f"name: t\nsamples: {samples}\n", encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(data), root / "data" / "part-0of1-000000.parquet")
    if errors:
        pq.write_table(pa.Table.from_pylist(errors), root / "errors" / "part-0of1-000001.parquet")
    return root


def _rows() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    # row a: 4 samples, answers 5 5 6 5 (gold 5): 3 right; row b: 3 generated (7 8 8, gold 8) + sample 3 failed
    texts = {"a": ["5", "5", "6", "The answer is 5"], "b": ["7", "8", "8"]}
    golds = {"a": ["5"], "b": ["8", "eight"]}
    data = [
        {"row_id": r, "sample": i, "generated_text": t, "reasoning": "5", "answer": golds[r]}
        for r, ts in texts.items()
        for i, t in enumerate(ts)
    ]
    errors = [{"row_id": "b", "sample": 3, "message": "boom", "answer": golds["b"]}]
    return data, errors


def test_folder_scores_with_failed_rows_apart(tmp_path: Path) -> None:
    data, errors = _rows()
    root = _folder(tmp_path, data, errors, samples=4)
    s = spec(reference="answer", extract="last_number", k=[1, 2, 4])
    summary = score_folder(root, s)
    assert summary["exact_match"]["mean"] == pytest.approx(5 / 7)
    assert (summary["exact_match"]["n"], summary["exact_match"]["unscored"]) == (7, 1)
    # pass@1 per row = c/n: a 3/4, b 2/3 (its failed sample unscored)
    assert summary["pass@1"]["mean"] == pytest.approx((3 / 4 + 2 / 3) / 2)
    assert summary["pass@2"]["mean"] == pytest.approx((1.0 + (1 - math.comb(1, 2) / math.comb(3, 2))) / 2)
    # pass@4: row b has 3 scored samples, fewer than 4: unscored
    assert (summary["pass@4"]["n"], summary["pass@4"]["unscored"]) == (1, 1)
    assert summary["pass@4"]["mean"] == 1.0
    # maj@2: a votes 5,5 -> right; b votes 7,8 (tie: the first, 7) -> wrong
    assert summary["maj@2"]["mean"] == 0.5 and summary["maj@2"]["n"] == 2
    assert summary["maj@4"]["n"] == 1 and summary["maj@4"]["unscored"] == 1  # b's sample 3 failed
    assert json.loads((root / "scores.json").read_text()) == summary
    assert list(summary) == ["exact_match", "pass@1", "pass@2", "pass@4", "maj@1", "maj@2", "maj@4"]
    scores = read_rows(root / "scores")
    assert {(r["row_id"], r["sample"]): r["exact_match"] for r in scores}[("b", 3)] is None
    assert {(r["row_id"], r["sample"]): r["extracted"] for r in scores}[("a", 3)] == "5"

    wrong = score_folder(root, s, failed_as_wrong=True)
    assert wrong["exact_match"]["mean"] == pytest.approx(5 / 8) and wrong["exact_match"]["unscored"] == 0
    assert wrong["pass@4"]["n"] == 2 and wrong["maj@4"]["mean"] == 1.0  # a: 5 of 5 5 6 5; b: 8 of 7 8 8


def test_bad_spec_and_missing_column_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"score.metrics.0: .*'exact'"):
        spec(reference="a", metrics=["exact"])
    with pytest.raises(SpecError, match="set `reference: COLUMN`"):
        spec(metrics=["numeric"])
    with pytest.raises(SpecError, match=r"score\.colour: unknown key"):
        spec(reference="a", colour=1)
    data, errors = _rows()
    root = _folder(tmp_path, data, errors, samples=4)
    with pytest.raises(SpecError, match=r"'gold' is not a column.*answer"):
        score_folder(root, spec(reference="gold"))
    bad = tmp_path / "s.yaml"
    bad.write_text("score:\n  reference: answer\n  k: [8]\n", encoding="utf-8")
    result = runner.invoke(app, ["score", str(root), "--spec", str(bad)])
    assert result.exit_code == 2 and "score.k: 8 needs at least 8 samples" in result.output


def _digest(folder: Path) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())).hexdigest()


def test_a_sim_job_scored_through_the_cli(tmp_path: Path) -> None:
    """Generate once to learn the (seeded, deterministic) answers, make half of them the gold, generate again
    with the gold column: exact match is exactly 1/2, reasoning (TGI keeps <think> in the text) never scored."""
    rows = prompts(10)
    job: dict[str, Any] = {
        "name": "ev",
        "dataset": {"path": str(write_jsonl(tmp_path / "q.jsonl", rows)), "id_column": "id"},
        "messages": [{"role": "user", "content": "{{ question }}"}],
        "parameters": {"max_tokens": 400, "temperature": 0.7},
        "seed": {"policy": "per_row", "value": 3},
        "samples": 2,
        "endpoint": {"url": "sim://?flavor=tgi&reasoning=true", "concurrency": 4},
        "output": {"dir": str(tmp_path / "first")},
    }
    assert runner.invoke(app, ["run", str(write_job(tmp_path / "a.yaml", job))]).exit_code == 0
    first = {(r["row_id"], r["sample"]): r["generated_text"] for r in read_rows(tmp_path / "first" / "data")}
    assert all("<think>" in t for t in first.values())
    for i, row in enumerate(rows):  # even rows: sample 0's answer (without its thinking) is the gold
        row["answer"] = first[(row["id"], 0)].split("</think>")[-1].strip() if i % 2 == 0 else "nope"
    job["dataset"]["path"] = str(write_jsonl(tmp_path / "q2.jsonl", rows))
    job["output"]["dir"] = str(tmp_path / "out")
    job["score"] = {"reference": "answer", "k": [1, 2]}
    ran = runner.invoke(app, ["run", str(write_job(tmp_path / "b.yaml", job))])
    assert ran.exit_code == 0 and "scores:" in ran.output and "pass@2" in ran.output
    out = tmp_path / "out"
    in_run = json.loads((out / "scores.json").read_text())  # the run scored what it wrote
    before = _digest(out / "data")
    result = runner.invoke(app, ["score", str(out)])
    assert result.exit_code == 0, result.output
    assert "exact_match" in result.output and "pass@2" in result.output
    summary = json.loads((out / "scores.json").read_text())
    by_row = {(r["row_id"], r["sample"]): r["exact_match"] for r in read_rows(out / "scores")}
    assert len(by_row) == 20 and all(by_row[(f"r{i:05d}", 0)] == (i % 2 == 0) for i in range(10))
    assert summary["pass@1"]["n"] == 10 and summary["exact_match"]["n"] == 20
    assert summary["maj@1"]["mean"] == 0.5  # maj@1 is sample 0 alone
    assert _digest(out / "data") == before
    assert summary == in_run  # scoring afterwards equals scoring in the run
    status = runner.invoke(app, ["status", str(out)])
    assert status.exit_code == 0 and "scores:" in status.output and "exact_match" in status.output
