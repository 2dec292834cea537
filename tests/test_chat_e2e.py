"""Chat and completions jobs end to end, through the CLI, against the simulator in each flavour (in-process
``sim://?flavor=...`` and a live ``tgbatch serve``): what lands in ``data/`` and ``errors/``, the exit codes, and
a SIGKILLed chat job resumed exactly once."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from tgbatch.cli import _register, app

from ._server_util import live_servers
from .runner_util import prompts, read_rows, start_tgbatch, write_job, write_jsonl

_register()
runner = CliRunner()

MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "{{ question }}"}]
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0, "maximum": 120}},
    "required": ["name", "age"],
}


def chat_job(tmp_path: Path, url: str, n: int = 20, **top: Any) -> Path:
    data = write_jsonl(tmp_path / "q.jsonl", prompts(n))
    job: dict[str, Any] = {
        "name": "chat",
        "dataset": {"path": str(data), "id_column": "id"},
        "messages": MESSAGES,
        "parameters": {"max_tokens": 12, "temperature": 0.7},
        "endpoint": {"url": url, "concurrency": 4},
        "retry": {"attempts": 3, "initial_wait_s": 0.001, "max_wait_s": 0.01},
        "output": {"dir": str(tmp_path / "out"), "rows_per_shard": 8},
    }
    for key, value in top.items():
        if value is None:
            job.pop(key, None)
        else:
            job[key] = value
    return write_job(tmp_path / "job.yaml", job)


def cli_run(job: Path, *args: str) -> Any:
    return runner.invoke(app, ["run", str(job), *args])


@pytest.mark.parametrize("flavor", ["tgi", "vllm", "sglang"])
def test_chat_job_against_each_flavour(tmp_path: Path, flavor: str) -> None:
    # room for the thinking and the answer: a reasoning model spends its first tokens thinking
    params = {"max_tokens": 600, "temperature": 0.7}
    job = chat_job(tmp_path, f"sim://?flavor={flavor}&reasoning=true", parameters=params)
    result = cli_run(job)
    assert result.exit_code == 0, result.output
    rows = read_rows(tmp_path / "out" / "data")
    assert sorted(r["row_id"] for r in rows) == [f"r{i:05d}" for i in range(20)]
    row = next(r for r in rows if r["row_id"] == "r00004")
    assert row["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 4 plus 4?"},
    ]
    assert row["generated_text"] and row["seed"] is not None and row["model"]
    assert row["prompt_tokens"] > 0 and row["generated_tokens"] > 0
    assert row["finish_reason"] in ("stop", "length", "eos_token", "stop_sequence")
    if flavor == "tgi":  # TGI has no reasoning parser: the thinking stays in the text
        assert row["reasoning"] is None and "<think>" in row["generated_text"]
    else:  # vLLM's `reasoning`, SGLang's `reasoning_content`: one column, the text without it
        assert row["reasoning"] and "<think>" not in row["generated_text"]


def test_same_seed_same_answer_across_runs(tmp_path: Path) -> None:
    job = chat_job(tmp_path, "sim://?flavor=vllm", seed={"policy": "per_row", "value": 7})
    assert cli_run(job).exit_code == 0
    first = {r["row_id"]: (r["generated_text"], r["seed"]) for r in read_rows(tmp_path / "out" / "data")}
    assert cli_run(job, "--fresh").exit_code == 0
    again = {r["row_id"]: (r["generated_text"], r["seed"]) for r in read_rows(tmp_path / "out" / "data")}
    assert first == again and len({seed for _, seed in first.values()}) == 20


@pytest.mark.parametrize("flavor", ["tgi", "vllm", "sglang"])
def test_messages_column_job(tmp_path: Path, flavor: str) -> None:
    rows = [
        {"id": f"c{i}", "conversation": [{"role": "user", "content": f"Say {i}"}]} for i in range(6)
    ] + [{"id": "bad", "conversation": [{"content": "no role"}]}]
    data = write_jsonl(tmp_path / "conv.jsonl", rows)
    job = chat_job(tmp_path, f"sim://?flavor={flavor}", messages=None, messages_column="conversation")
    spec = yaml.safe_load(job.read_text())
    spec["dataset"] = {"path": str(data), "id_column": "id"}
    write_job(job, spec)
    result = cli_run(job)
    assert result.exit_code == 3, result.output  # one bad row: the job finishes, with a failed row
    done = read_rows(tmp_path / "out" / "data")
    assert sorted(r["row_id"] for r in done) == [f"c{i}" for i in range(6)]
    assert done[0]["messages"][0]["role"] == "user"
    [error] = read_rows(tmp_path / "out" / "errors")
    assert error["row_id"] == "bad" and error["error_type"] == "TemplateError" and "role" in error["message"]


@pytest.mark.parametrize(("flavor", "status"), [("tgi", 422), ("vllm", 400), ("sglang", 400)])
def test_an_over_long_row_lands_in_errors_with_the_servers_status(tmp_path: Path, flavor: str, status: int) -> None:
    data = write_jsonl(
        tmp_path / "long.jsonl",
        [*prompts(5), {"id": "long", "question": " ".join(["word"] * 400), "topic": "x"}],
    )
    job = chat_job(tmp_path, f"sim://?flavor={flavor}&max_input_tokens=200&max_total_tokens=300")
    spec = yaml.safe_load(job.read_text())
    spec["dataset"]["path"] = str(data)
    write_job(job, spec)
    result = cli_run(job)
    assert result.exit_code == 3, result.output
    assert len(read_rows(tmp_path / "out" / "data")) == 5
    [error] = read_rows(tmp_path / "out" / "errors")
    assert error["row_id"] == "long" and error["http_status"] == status and error["attempts"] == 1
    assert error["messages"][1]["content"].startswith("word word")
    assert "Traceback" not in result.output


@pytest.mark.parametrize("flavor", ["tgi", "vllm"])
def test_response_format_is_sent_in_each_servers_form_and_checked(tmp_path: Path, flavor: str) -> None:
    params = {
        "max_tokens": 64,
        "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}},
    }
    job = chat_job(tmp_path, f"sim://?flavor={flavor}", parameters=params)
    assert cli_run(job).exit_code == 0
    rows = read_rows(tmp_path / "out" / "data")
    assert rows and all(r["format_ok"] is True for r in rows), [r["generated_text"] for r in rows][:3]
    assert all(set(json.loads(r["generated_text"])) >= {"name", "age"} for r in rows)


def test_a_constraint_the_server_ignored_shows_as_format_not_ok(tmp_path: Path) -> None:
    # told the server is SGLang, the backend sends the regex as SGLang's top-level field, which vLLM ignores
    # (unknown fields are logged, not refused): an unconstrained 200 that format_ok must expose
    params = {"max_tokens": 12, "response_format": {"type": "regex", "value": "[0-9]{3}"}}
    endpoint = {"url": "sim://?flavor=vllm", "server": "sglang", "concurrency": 4}
    job = chat_job(tmp_path, "sim://?flavor=vllm", parameters=params, endpoint=endpoint)
    assert cli_run(job).exit_code == 0
    rows = read_rows(tmp_path / "out" / "data")
    assert rows and all(r["format_ok"] is False for r in rows)
    right = chat_job(tmp_path, "sim://?flavor=vllm", parameters=params)
    assert cli_run(right, "--fresh").exit_code == 0
    rows = read_rows(tmp_path / "out" / "data")
    assert rows and all(r["format_ok"] is True and len(r["generated_text"]) == 3 for r in rows)


@pytest.mark.slow
def test_completions_job_with_a_v1_base_url_against_a_live_server(tmp_path: Path) -> None:
    with live_servers(("--flavor", "vllm")) as [server]:
        job = chat_job(
            tmp_path,
            server.url + "/v1",
            messages=None,
            template="Q: {{ question }}\nA:",
            endpoint={"url": server.url + "/v1", "api": "completions", "concurrency": 4},
        )
        result = cli_run(job)
    assert result.exit_code == 0, result.output
    rows = read_rows(tmp_path / "out" / "data")
    assert len(rows) == 20 and rows[0]["prompt"].startswith("Q: What is")
    assert "messages" not in pq.read_schema(next((tmp_path / "out" / "data").glob("*.parquet"))).names
    assert all(r["generated_text"] and r["endpoint"] == server.url + "/v1" for r in rows)


# -- a SIGKILLed chat job, resumed -------------------------------------------------------------------------


def _start(job: Path, out: Path) -> subprocess.Popen[bytes]:
    return start_tgbatch("run", str(job), "-o", str(out))


def _texts(out: Path) -> dict[tuple[str, int], tuple[str, int]]:
    rows = []
    for file in sorted((out / "data").glob("part-*.parquet")):
        rows.extend(pq.read_table(file, columns=["row_id", "sample", "generated_text", "seed"]).to_pylist())
    got = {(r["row_id"], r["sample"]): (r["generated_text"], r["seed"]) for r in rows}
    assert len(got) == len(rows), "a row was written twice"
    return got


@pytest.mark.slow
def test_sigkilled_chat_job_resumes_to_what_an_uninterrupted_run_writes(tmp_path: Path) -> None:
    n = 6000
    job = chat_job(tmp_path, "sim://?flavor=vllm", n=n, samples=2, output={"rows_per_shard": 200})
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    ref = _start(job, reference)
    proc = _start(job, killed)
    deadline = time.monotonic() + 120
    while len(list((killed / "data").glob("part-*.parquet"))) < 5 if (killed / "data").is_dir() else True:
        assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.005)  # polling interval of a bounded wait on the output folder, not synchronisation
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    partial = len(_texts(killed))
    assert 0 < partial < 2 * n
    resumed = _start(job, killed)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err.decode()[-3000:]
    assert f"{partial} rows were already written" in out.decode()
    _, ref_err = ref.communicate(timeout=300)
    assert ref.returncode == 0, ref_err.decode()[-3000:]
    assert _texts(killed) == _texts(reference) and len(_texts(reference)) == 2 * n
