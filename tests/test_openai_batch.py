"""OpenAI Batch files in and out, through the CLI: each line's body sent as written (the job's parameters filling
in only what it leaves out), custom_id as the row id, bad files refused before any request (exit 2), and a
1,000-line file against a live ``tgbatch serve`` SIGKILLed, resumed and exported in OpenAI's output format."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tgbatch.backends.tgi.client import AsyncClient
from tgbatch.cli import _register, app

from ._server_util import live_servers
from .runner_util import read_rows, start_tgbatch, write_job, write_jsonl

_register()
runner = CliRunner()
CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"
MODEL = "tgbatch/sim"


def line(custom_id: str, body: dict[str, Any], url: str = CHAT) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def chat_lines(n: int) -> list[dict[str, Any]]:
    return [line(f"q-{i}", {"model": MODEL, "messages": [{"role": "user", "content": f"Say {i}"}]}) for i in range(n)]


def batch_job(tmp_path: Path, lines: list[dict[str, Any]], url: str = "sim://?flavor=vllm", **top: Any) -> Path:
    data = write_jsonl(tmp_path / "batch.jsonl", lines)
    job = {"name": "batch", "dataset": {"path": str(data)}, "endpoint": {"url": url, "concurrency": 4}, **top}
    job["output"] = {"dir": str(tmp_path / "out"), **top.get("output", {})}
    return write_job(tmp_path / "job.yaml", job)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Every (path, JSON body) posted, as it went on the wire."""
    bodies: list[tuple[str, dict[str, Any]]] = []
    post = AsyncClient.post_json

    async def recording(self: AsyncClient, path: str, content: bytes, *args: Any, **kw: Any) -> Any:
        bodies.append(("/v1" + path, json.loads(content)))
        return await post(self, path, content, *args, **kw)

    monkeypatch.setattr(AsyncClient, "post_json", recording)
    return bodies


def run(job: Path, *args: str) -> Any:
    return runner.invoke(app, ["run", str(job), *args])


def test_chat_lines_are_sent_as_written_with_job_parameters_filling_in(tmp_path: Path, sent: list[Any]) -> None:
    lines = chat_lines(6)
    lines[0]["body"].update(max_tokens=3, temperature=0.0, seed=11)
    lines[1]["body"].update(stop=["\n"], top_p=0.9)
    del lines[2]["body"]["model"]  # endpoint.model fills it in
    job = batch_job(tmp_path, lines, parameters={"max_tokens": 7, "temperature": 0.8, "top_p": 0.5})
    result = run(job)
    assert result.exit_code == 0, result.output
    by_prompt = {b["messages"][0]["content"]: (path, b) for path, b in sent}
    assert len(sent) == 6 and {path for path, _ in sent} == {CHAT}
    job_params = {"max_tokens": 7, "temperature": 0.8, "top_p": 0.5}
    rows = {r["row_id"]: r for r in read_rows(tmp_path / "out" / "data")}
    assert set(rows) == {f"q-{i}" for i in range(6)}
    for i, item in enumerate(lines):
        body = by_prompt[f"Say {i}"][1]
        seed = body.pop("seed")
        expected = {**job_params, **item["body"]}
        expected.pop("seed", None)
        expected.setdefault("model", MODEL)
        assert body == expected, i
        assert seed == (11 if i == 0 else rows[f"q-{i}"]["seed"])
        assert rows[f"q-{i}"]["seed"] == seed
        assert rows[f"q-{i}"]["messages"] == item["body"]["messages"]
    assert rows["q-0"]["generated_tokens"] <= 3 and rows["q-3"]["generated_tokens"] <= 7


def test_completions_lines_and_their_export(tmp_path: Path, sent: list[Any]) -> None:
    from openai.types import Completion

    lines = [line(f"c{i}", {"model": MODEL, "prompt": f"Count to {i}:", "max_tokens": 4}, COMPLETIONS) for i in range(4)]
    job = batch_job(tmp_path, lines, parameters={"max_tokens": 9, "temperature": 0.7})
    result = run(job)
    assert result.exit_code == 0, result.output
    assert sorted(b["prompt"] for _, b in sent) == [f"Count to {i}:" for i in range(4)]
    assert all(path == COMPLETIONS and b["max_tokens"] == 4 and b["temperature"] == 0.7 for path, b in sent)
    rows = read_rows(tmp_path / "out" / "data")
    assert sorted(r["prompt"] for r in rows) == [f"Count to {i}:" for i in range(4)]
    out = tmp_path / "results.jsonl"
    exported = runner.invoke(app, ["export", str(tmp_path / "out"), "--format", "openai-batch", "-o", str(out)])
    assert exported.exit_code == 0, exported.output
    results = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(r["custom_id"] for r in results) == [f"c{i}" for i in range(4)]
    for r in results:
        assert r["error"] is None and r["response"]["status_code"] == 200
        completion = Completion.model_validate(r["response"]["body"])
        assert completion.object == "text_completion" and completion.choices[0].text


def test_a_failed_line_exports_with_the_servers_status_and_message(tmp_path: Path) -> None:
    from openai.types.chat import ChatCompletion

    lines = chat_lines(3)
    lines[1]["body"]["max_tokens"] = -1  # the server refuses it (400): the row fails, the others do not
    run(batch_job(tmp_path, lines))
    out = tmp_path / "results.jsonl"
    exported = runner.invoke(app, ["export", str(tmp_path / "out"), "--format", "openai-batch", "-o", str(out)])
    assert exported.exit_code == 0, exported.output
    results = {r["custom_id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(results) == {"q-0", "q-1", "q-2"}
    failed = results["q-1"]
    assert failed["response"]["status_code"] == 400 and "max_tokens" in failed["error"]["message"]
    assert failed["error"]["code"] and failed["response"]["body"]["error"]["message"] == failed["error"]["message"]
    for ok in ("q-0", "q-2"):
        assert results[ok]["error"] is None
        assert ChatCompletion.model_validate(results[ok]["response"]["body"]).choices[0].message.content


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (lambda ls: ls[3].update(custom_id="q-1"), "'q-1' appears more than once"),
        (lambda ls: ls[4].update(url=COMPLETIONS), "batch.jsonl line 5 has url '/v1/completions' but the file's"),
        (lambda ls: ls[0].update(url="/v1/embeddings"), "url '/v1/embeddings': tgbatch runs OpenAI Batch lines of"),
        (lambda ls: ls[4].update(url="/v1/embeddings"), "line 5 has url '/v1/embeddings'"),
        (lambda ls: ls[2].pop("body"), "batch.jsonl line 3 has no body"),
        (lambda ls: ls[2]["body"].pop("messages"), "line 3: a /v1/chat/completions body needs `messages`"),
    ],
)
def test_a_bad_batch_file_exits_2_naming_the_line_before_any_request(
    tmp_path: Path, sent: list[Any], change: Any, said: str
) -> None:
    lines = chat_lines(6)
    change(lines)
    result = run(batch_job(tmp_path, lines))
    assert result.exit_code == 2, result.output
    assert said in " ".join(result.output.split()), result.output
    assert sent == []


def test_a_batch_file_takes_no_template_and_its_url_sets_the_api(tmp_path: Path) -> None:
    job = batch_job(tmp_path, chat_lines(2), template="{{ body }}")
    result = runner.invoke(app, ["validate", str(job), "--set", "dataset.format=openai_batch"])
    assert result.exit_code == 2 and "openai_batch takes each row's input from its body" in result.output
    lines = [line("a", {"prompt": "x"}, COMPLETIONS)]
    job = batch_job(tmp_path, lines, endpoint={"url": "sim://?flavor=vllm", "api": "chat"})
    result = run(job)
    assert result.exit_code == 2 and "does not match the OpenAI Batch file" in result.output


# -- 1,000 lines against a live server, SIGKILLed, resumed and exported ----------------------------------------


def _start(job: Path) -> subprocess.Popen[bytes]:
    return start_tgbatch("run", str(job))


@pytest.mark.slow
def test_a_thousand_lines_killed_resumed_and_exported_validate_as_openai_types(tmp_path: Path) -> None:
    from openai.types.chat import ChatCompletion

    n = 1000
    lines = chat_lines(n)
    for i, item in enumerate(lines):
        item["body"]["max_tokens"] = 4 + i % 5
    with live_servers(("--flavor", "vllm", "--decode-ms-per-token", "5")) as [server]:
        job = batch_job(tmp_path, lines, url=server.url, output={"rows_per_shard": 50})
        out = tmp_path / "out"
        proc = _start(job)
        deadline = time.monotonic() + 120
        while len(list((out / "data").glob("part-*.parquet"))) < 3 if (out / "data").is_dir() else True:
            assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.005)  # polling interval of a bounded wait on the output folder, not synchronisation
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        done_before = len(read_rows(out / "data"))
        assert 0 < done_before < n
        resumed = run(job)
        assert resumed.exit_code == 0, resumed.output
    rows = read_rows(out / "data")
    assert len(rows) == n and len({r["row_id"] for r in rows}) == n
    results = tmp_path / "results.jsonl"
    exported = runner.invoke(app, ["export", str(out), "--format", "openai-batch", "-o", str(results)])
    assert exported.exit_code == 0, exported.output
    got = [json.loads(x) for x in results.read_text().splitlines()]
    assert len(got) == n and {r["custom_id"] for r in got} == {item["custom_id"] for item in lines}
    for r in got:
        completion = ChatCompletion.model_validate(r["response"]["body"])
        assert completion.choices[0].message.content and completion.usage is not None
        assert completion.usage.completion_tokens <= 4 + int(r["custom_id"][2:]) % 5
