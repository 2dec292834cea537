"""``tgbatch validate`` on a folder that already holds output: the same resume check as ``tgbatch run``."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from tgbatch.cli import _register, app

from .runner_util import job_dict, prompts, write_job, write_jsonl

_register()
runner = CliRunner()


def _job(tmp_path: Path, rows: int = 30) -> Path:
    data = write_jsonl(tmp_path / "prompts.jsonl", prompts(rows))
    job = job_dict(data, output={"dir": str(tmp_path / "out"), "rows_per_shard": 10})
    return write_job(tmp_path / "job.yaml", job)


def test_validate_a_new_folder_says_new(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(_job(tmp_path))])
    assert result.exit_code == 0, result.output
    assert "(new)" in result.output and result.output.rstrip().endswith("valid")


def test_validate_after_a_run_says_it_resumes(tmp_path: Path) -> None:
    job = _job(tmp_path)
    assert runner.invoke(app, ["run", str(job), "--limit", "12"]).exit_code == 0
    result = runner.invoke(app, ["validate", str(job)])
    assert result.exit_code == 0, result.output
    assert "resumes: 12 done, 0 failed, 18 to go" in result.output
    assert "Traceback" not in result.output


def test_validate_refuses_a_changed_job_as_run_does(tmp_path: Path) -> None:
    job = _job(tmp_path)
    assert runner.invoke(app, ["run", str(job)]).exit_code == 0
    changed = ["--set", "template=Other: {{ question }}"]
    validated = runner.invoke(app, ["validate", str(job), *changed])
    ran = runner.invoke(app, ["run", str(job), *changed])
    assert validated.exit_code == ran.exit_code == 2, validated.output
    assert "the template changed" in validated.output and "--fresh" in validated.output
    assert "Traceback" not in validated.output and "valid\n" not in validated.output


def test_validate_takes_output_like_run(tmp_path: Path) -> None:
    job = _job(tmp_path)
    other = tmp_path / "elsewhere"
    assert runner.invoke(app, ["run", str(job), "--output", str(other), "--limit", "5"]).exit_code == 0
    result = runner.invoke(app, ["validate", str(job), "--output", str(other)])
    assert result.exit_code == 0 and "resumes: 5 done" in result.output


def test_an_output_path_that_is_a_file_is_refused_without_a_traceback(tmp_path: Path) -> None:
    job = _job(tmp_path)
    target = tmp_path / "a-file"
    target.write_text("not a folder")
    for command in ("validate", "run"):
        result = runner.invoke(app, [command, str(job), "--output", str(target)])
        assert result.exit_code == 2, result.output
        assert "is a file, not a folder" in result.output and "Traceback" not in result.output
    blocked = runner.invoke(app, ["run", str(job), "--output", str(target / "below")])
    assert blocked.exit_code == 2 and "cannot create" in blocked.output


def test_an_endpoint_that_cannot_be_reached_fails_validate_and_run_at_once(tmp_path: Path) -> None:
    import socket
    import time

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    job = _job(tmp_path)
    down = ["--set", f"endpoint.url=http://127.0.0.1:{port}"]
    for command in ("validate", "run"):
        start = time.monotonic()
        result = runner.invoke(app, [command, str(job), *down])
        assert result.exit_code == 2, result.output
        assert f"http://127.0.0.1:{port} cannot be reached" in result.output and "Traceback" not in result.output
        assert time.monotonic() - start < 10
    assert not (tmp_path / "out" / "data").exists() or not list((tmp_path / "out" / "data").iterdir())
    offline = runner.invoke(app, ["validate", str(job), *down, "--offline"])
    assert offline.exit_code == 0 and "not asked (--offline)" in offline.output


def test_run_checks_the_servers_limits_before_sending(tmp_path: Path) -> None:
    job = _job(tmp_path)
    limits = ["--set", "parameters.stop=[a, b, c, d, e]"]
    for command in ("validate", "run"):
        result = runner.invoke(app, [command, str(job), *limits])
        assert result.exit_code == 2, result.output
        assert "`stop` supports up to 4 stop sequences. Given: 5" in result.output
    assert not (tmp_path / "out" / "errors").exists() or not list((tmp_path / "out" / "errors").iterdir())


def test_the_same_refusal_row_after_row_stops_the_run(tmp_path: Path) -> None:
    """top_n_tokens is a limit /info does not report: the server refuses every row the same way, and the run
    stops (exit 2) after a few of them instead of recording every row as failed."""
    job = _job(tmp_path, rows=200)
    result = runner.invoke(app, ["run", str(job), "--set", "parameters.top_n_tokens=10"])
    assert result.exit_code == 2, result.output
    assert "refused 20 rows in a row with the same answer (HTTP 422" in result.output
    assert "`top_n_tokens` must be >= 0 and <= 5" in result.output
    from .runner_util import read_rows

    failed = read_rows(tmp_path / "out" / "errors")
    assert 20 <= len(failed) < 200


def test_status_knows_the_remaining_rows_of_a_stopped_run(tmp_path: Path) -> None:
    job = _job(tmp_path, rows=400)
    slow = ["--set", "endpoint.url=sim://?decode_ms_per_token=20", "--set", "endpoint.concurrency=2"]
    stopped = runner.invoke(app, ["run", str(job), *slow, "--max-runtime", "2"])
    assert stopped.exit_code == 4, stopped.output
    status = runner.invoke(app, ["status", str(tmp_path / "out"), "--json"])
    import json

    figures = json.loads(status.output)
    assert figures["total"] == 400 and figures["remaining"] == 400 - figures["done"] - figures["failed"]
    assert 0 < figures["remaining"] < 400
