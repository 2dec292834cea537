"""A null (or absent) value is never printed as "None": the row fails naming the column, unless the template or
the job handles it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tgbatch.cli import _register, app
from tgbatch.errors import TemplateError
from tgbatch.job.template import PromptTemplate

from .runner_util import job_dict, read_rows, write_job

_register()
runner = CliRunner()


def test_a_null_is_refused_naming_the_column() -> None:
    template = PromptTemplate("{{ system }} | {{ instruction }}")
    with pytest.raises(TemplateError, match=r"'r1' would print null for system"):
        template.render({"system": None, "instruction": "do 1"}, "r1")


@pytest.mark.parametrize(
    ("text", "nulls", "expected"),
    [
        ("{{ system or '' }} | {{ instruction }}", "error", " | do 1"),
        ("{% if system %}{{ system }} | {% endif %}{{ instruction }}", "error", "do 1"),
        ("{{ system }} | {{ instruction }}", "empty", " | do 1"),
    ],
)
def test_handled_nulls_render(text: str, nulls: str, expected: str) -> None:
    assert PromptTemplate(text, nulls=nulls).render({"system": None, "instruction": "do 1"}, "r1") == expected  # type: ignore[arg-type]


def _data(tmp_path: Path, first_null: bool) -> Path:
    rows = [{"id": f"r{i}", "instruction": f"do {i}", "system": "Be terse."} for i in range(10)]
    rows[0 if first_null else 7]["system"] = None
    del rows[8]["system"]  # absent is null too
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _job(tmp_path: Path, data: Path, **extra: object) -> Path:
    job = job_dict(data, template="{{ system }} | {{ instruction }}", output={"dir": str(tmp_path / "out")}, **extra)
    return write_job(tmp_path / "job.yaml", job)


def test_null_rows_go_to_errors_and_the_rest_run(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", str(_job(tmp_path, _data(tmp_path, first_null=False)))])
    assert result.exit_code == 3, result.output
    prompts = [r["prompt"] for r in read_rows(tmp_path / "out" / "data")]
    assert len(prompts) == 8 and not any("None" in p for p in prompts)
    errors = {r["row_id"]: r for r in read_rows(tmp_path / "out" / "errors")}
    assert set(errors) == {"r7", "r8"} and "null for system" in errors["r7"]["message"]
    assert errors["r7"]["error_type"] == "TemplateError"


def test_a_null_in_the_first_rows_stops_validate_and_run(tmp_path: Path) -> None:
    job = _job(tmp_path, _data(tmp_path, first_null=True))
    for command in ("validate", "run"):
        result = runner.invoke(app, [command, str(job)])
        assert result.exit_code == 2, result.output
        assert "null for system" in result.output and "template_nulls: empty" in result.output
        assert "None |" not in result.output


def test_template_nulls_empty_prints_nothing(tmp_path: Path) -> None:
    job = _job(tmp_path, _data(tmp_path, first_null=True), template_nulls="empty")
    assert runner.invoke(app, ["run", str(job)]).exit_code == 0
    prompts = {r["row_id"]: r["prompt"] for r in read_rows(tmp_path / "out" / "data")}
    assert prompts["r0"] == " | do 0" and prompts["r1"] == "Be terse. | do 1"
