"""What the input reader guarantees before a row is sent: ids and values as written, repeats found up front."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tgbatch.cli import _register, app

from .runner_util import job_dict, prompts, read_rows, write_job, write_jsonl

_register()
runner = CliRunner()

CSV = "id,question,answer\n0001,What is 1+1?,002\n0002,Say 7.,007\n1e3,Name a color.,red\n"


def _csv_job(tmp_path: Path, **dataset: object) -> Path:
    data = tmp_path / "eval.csv"
    data.write_text(CSV, encoding="utf-8")
    job = job_dict(data, template="{{ question }} (expected {{ answer }})", output={"dir": str(tmp_path / "out")})
    job["dataset"].update(dataset)
    return write_job(tmp_path / "job.yaml", job)


def test_csv_ids_and_values_keep_their_text(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", str(_csv_job(tmp_path))])
    assert result.exit_code == 0, result.output
    rows = {r["row_id"]: r for r in read_rows(tmp_path / "out" / "data")}
    assert set(rows) == {"0001", "0002", "1e3"}
    assert rows["0002"]["answer"] == "007" and rows["0001"]["answer"] == "002"
    assert rows["0002"]["prompt"] == "Say 7. (expected 007)"


def test_csv_infer_types_keeps_the_id_as_text(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", str(_csv_job(tmp_path, infer_types=True)), "--set", "template={{ question }}"])
    assert result.exit_code == 0, result.output
    rows = {r["row_id"]: r for r in read_rows(tmp_path / "out" / "data")}
    assert set(rows) == {"0001", "0002", "1e3"}  # ids as written, whatever the inference
    assert rows["0002"]["answer"] == "007"  # a column with text in it stays text


def test_a_repeated_id_at_the_end_stops_before_any_request(tmp_path: Path) -> None:
    rows = prompts(3001)
    rows[-1]["id"] = rows[5]["id"]
    data = write_jsonl(tmp_path / "p.jsonl", rows)
    job = write_job(tmp_path / "job.yaml", job_dict(data, output={"dir": str(tmp_path / "out")}))
    for command in ("validate", "run"):
        result = runner.invoke(app, [command, str(job)])
        assert result.exit_code == 2, result.output
        assert "'r00005' appears more than once" in result.output
    assert not (tmp_path / "out" / "data").exists() or read_rows(tmp_path / "out" / "data") == []


def test_a_null_id_is_named(tmp_path: Path) -> None:
    data = tmp_path / "p.jsonl"
    data.write_text(json.dumps({"id": "a", "question": "q"}) + "\n" + json.dumps({"id": None, "question": "q"}) + "\n")
    job = write_job(tmp_path / "job.yaml", job_dict(data, output={"dir": str(tmp_path / "out")}))
    result = runner.invoke(app, ["run", str(job)])
    assert result.exit_code == 2 and "position 1" in result.output


def test_a_mistyped_hub_id_is_said_at_once(tmp_path: Path) -> None:
    """The Hub (here a loopback stand-in that knows no dataset) says 404: no retries, exit 2 within seconds."""
    import os
    import subprocess
    import sys
    import time

    from ._loopback import recording_server

    job = write_job(
        tmp_path / "job.yaml", {**job_dict(tmp_path / "x.jsonl"), "dataset": {"path": "someorg/no-such-dataset"}}
    )
    with recording_server() as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "", "HF_DATASETS_OFFLINE": ""}
        start = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "tgbatch", "validate", str(job), "--offline"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
    assert result.returncode == 2, result.stderr
    assert "is neither a local file or folder nor a dataset on the Hub" in result.stderr
    assert time.monotonic() - start < 15 and "Traceback" not in result.stderr
