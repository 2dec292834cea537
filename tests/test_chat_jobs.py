"""Chat and completions jobs end to end with a fake backend (the ``Backend`` protocol, in-process): what the
server is sent, the output folder's schema and records, bad message lists in errors/, resume and refusal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tgbatch.backends.openai.backend import OpenAIBackend
from tgbatch.cli import _register, app
from tgbatch.errors import AuthenticationError, BadRequestError, EndpointError, ResumeError
from tgbatch.job.load import load_job
from tgbatch.runner import make_backend, prepare, run_job
from tgbatch.types import Capacity, GenerationRequest, GenerationResult

from .runner_util import prompts, read_rows, write_job, write_jsonl

_register()
runner = CliRunner()

MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "{{ question }}"}]
LOGPROBS = [{"token": "4", "logprob": -0.1, "top_logprobs": [{"token": "4", "logprob": -0.1}]}]


class FakeChat:
    """A chat server: answers ``{"answer": <n>}`` with reasoning; fails fatally after ``fail_after`` requests."""

    url = "fake://chat"

    def __init__(self, *, fail_after: int | None = None, text: str | None = None) -> None:
        self.requests: list[GenerationRequest] = []
        self.fail_after = fail_after
        self.text = text

    async def request(self, request: GenerationRequest) -> GenerationResult:
        if self.fail_after is not None and len(self.requests) >= self.fail_after:
            raise AuthenticationError("token revoked", status_code=401)
        self.requests.append(request)
        tool = json.dumps([{"id": "c1", "type": "function", "function": {"name": "add", "arguments": "{}"}}])
        return GenerationResult(
            text=self.text if self.text is not None else json.dumps({"answer": len(self.requests)}),
            finish_reason="stop",
            generated_tokens=5,
            prompt_tokens=11,
            reasoning="thinking...",
            model="fake/model",
            details={"logprobs": LOGPROBS},
            tool_calls=tool,
        )

    async def capacity(self) -> Capacity:
        return Capacity(model_id="fake/model", server="vllm", max_total_tokens=4096, version="0.9")

    def check_limits(self, capacity: Capacity) -> None:
        pass

    async def queue(self) -> int | None:
        return None

    async def health(self) -> bool:
        return True

    async def aclose(self) -> None:
        pass


def chat_job(tmp_path: Path, data: Path | None = None, **top: Any) -> Path:
    data = data or write_jsonl(tmp_path / "q.jsonl", prompts(30))
    job: dict[str, Any] = {
        "name": "chat",
        "dataset": {"path": str(data), "id_column": "id"},
        "messages": MESSAGES,
        "endpoint": {"url": "http://127.0.0.1:9/v1", "concurrency": 4},
        "parameters": {"max_tokens": 16},
        "retry": {"attempts": 2, "initial_wait_s": 0.001, "max_wait_s": 0.01},
        "output": {"dir": str(tmp_path / "out"), "rows_per_shard": 10},
        **top,
    }
    job = {k: v for k, v in job.items() if v is not None}
    return write_job(tmp_path / "job.yaml", job)


def run(job: Path, backend: Any, *overrides: str) -> Any:
    prepared = prepare(load_job(job, list(overrides)))
    return anyio.run(lambda: run_job(prepared, backend))


SCHEMA = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}


def test_chat_records_and_what_is_sent(tmp_path: Path) -> None:
    params = {
        "max_tokens": 16,
        "logprobs": True,
        "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}},
    }
    job = chat_job(tmp_path, parameters=params, samples=2)
    backend = FakeChat()
    result = run(job, backend)
    assert result.complete
    sent = {(r.messages[1]["content"], r.seed) for r in backend.requests if r.messages}
    assert len(backend.requests) == len(sent) == 60  # 30 rows x 2 samples, each with its own seed
    first = backend.requests[0]
    assert first.prompt is None and first.messages is not None and first.messages[0] == MESSAGES[0]
    out = tmp_path / "out"
    schema = pq.read_schema(next((out / "data").glob("*.parquet")))
    assert schema.names[:17] == [
        "row_id", "sample", "messages", "generated_text", "reasoning", "tool_calls", "finish_reason",
        "prompt_tokens", "generated_tokens", "seed", "model", "details", "format_ok", "attempts", "latency_s",
        "endpoint", "id",
    ]  # fmt: skip
    assert schema.field("messages").type == pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    rows = read_rows(out / "data")
    assert sorted((r["row_id"], r["sample"]) for r in rows) == [(f"r{i:05d}", s) for i in range(30) for s in (0, 1)]
    row = next(r for r in rows if r["row_id"] == "r00003" and r["sample"] == 0)
    assert row["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 3 plus 3?"},
    ]
    assert row["reasoning"] == "thinking..." and json.loads(row["tool_calls"])[0]["function"]["name"] == "add"
    assert (row["finish_reason"], row["prompt_tokens"], row["generated_tokens"]) == ("stop", 11, 5)
    assert row["model"] == "fake/model" and row["details"] == LOGPROBS and row["format_ok"] is True
    assert row["seed"] is not None and row["question"] == "What is 3 plus 3?"
    status = json.loads(runner.invoke(app, ["status", str(out), "--json"]).output)
    assert (status["done"], status["failed"], status["complete"]) == (60, 0, True)


@pytest.mark.parametrize(
    ("response_format", "text", "ok"),
    [
        ({"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}}, '{"answer": "four"}', False),
        ({"type": "json_object"}, '{"answer": 4}', True),
        ({"type": "json_object"}, "The answer is 4", False),
        ({"type": "regex", "value": "[0-9]+"}, "42", True),
        ({"type": "regex", "value": "[0-9]+"}, "42 apples", False),
        ({"type": "json", "value": SCHEMA}, '{"answer": 4}', True),
        (None, "anything", None),
    ],
)
def test_format_ok(tmp_path: Path, response_format: dict[str, Any] | None, text: str, ok: bool | None) -> None:
    params: dict[str, Any] = {"max_tokens": 4}
    if response_format is not None:
        params["response_format"] = response_format
    run(chat_job(tmp_path, parameters=params), FakeChat(text=text))
    assert {r["format_ok"] for r in read_rows(tmp_path / "out" / "data")} == {ok}


def test_completions_job_writes_prompt(tmp_path: Path) -> None:
    job = chat_job(
        tmp_path,
        messages=None,
        template="Q: {{ question }}\nA:",
        endpoint={"url": "http://127.0.0.1:9", "api": "completions"},
    )
    backend = FakeChat()
    run(job, backend)
    assert all(r.prompt and r.prompt.startswith("Q: What is") and r.messages is None for r in backend.requests)
    out = tmp_path / "out"
    names = pq.read_schema(next((out / "data").glob("*.parquet"))).names
    assert names[2] == "prompt" and "messages" not in names
    rows = read_rows(out / "data")
    assert len(rows) == 30 and rows[0]["prompt"].startswith("Q: What is")


def _conversations() -> list[Any]:
    good = [{"role": "user", "content": "hi"}]
    return [good, [], [{"role": "wizard", "content": "x"}], [{"role": "user", "content": None}], good]


def test_messages_column_from_parquet_list_of_structs(tmp_path: Path) -> None:
    data = tmp_path / "conv.parquet"
    pq.write_table(pa.table({"id": [f"c{i}" for i in range(5)], "conversation": _conversations()}), data)
    _check_messages_column(tmp_path, data)


def test_messages_column_from_jsonl_lists(tmp_path: Path) -> None:
    rows = [{"id": f"c{i}", "conversation": c} for i, c in enumerate(_conversations())]
    _check_messages_column(tmp_path, write_jsonl(tmp_path / "conv.jsonl", rows))


def test_messages_column_from_csv_json_text(tmp_path: Path) -> None:
    data = tmp_path / "conv.csv"
    lines = ["id,conversation"] + [
        f'c{i},"{json.dumps(c).replace(chr(34), chr(34) * 2)}"' for i, c in enumerate(_conversations())
    ]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _check_messages_column(tmp_path, data)


def _check_messages_column(tmp_path: Path, data: Path) -> None:
    job = chat_job(tmp_path, data, messages=None, messages_column="conversation")
    backend = FakeChat()
    result = run(job, backend)
    assert result.complete
    assert [list(r.messages or ()) for r in backend.requests] == [[{"role": "user", "content": "hi"}]] * 2
    out = tmp_path / "out"
    assert sorted(r["row_id"] for r in read_rows(out / "data")) == ["c0", "c4"]
    errors = {r["row_id"]: r for r in read_rows(out / "errors")}
    assert sorted(errors) == ["c1", "c2", "c3"] and {r["error_type"] for r in errors.values()} == {"TemplateError"}
    assert "row 'c1' is an empty list" in errors["c1"]["message"]
    assert "row 'c2' message 0 has the unknown role 'wizard'" in errors["c2"]["message"]
    assert "row 'c3' message 0 (user) has no content" in errors["c3"]["message"]
    assert errors["c1"]["messages"] is None and errors["c1"]["attempts"] == 0


def test_changed_messages_are_refused_on_resume(tmp_path: Path) -> None:
    job = chat_job(tmp_path)
    run(job, FakeChat())
    changed = "messages=[{role: user, content: 'Answer: {{ question }}'}]"
    with pytest.raises(ResumeError, match="the messages"):
        run(job, FakeChat(), changed)
    result = runner.invoke(app, ["validate", str(job), "--offline", "--set", changed])
    assert result.exit_code == 2 and "the messages (or messages_column) changed" in result.output
    other_model = runner.invoke(app, ["validate", str(job), "--offline", "--set", "endpoint.model=other"])
    assert other_model.exit_code == 2 and "endpoint.model changed" in other_model.output
    extra = runner.invoke(app, ["validate", str(job), "--offline", "--set", "parameters.extra_body={top_k: 5}"])
    assert extra.exit_code == 2 and "the parameters changed" in extra.output
    same = runner.invoke(app, ["validate", str(job), "--offline"])
    assert same.exit_code == 0 and "resumes: 30 done" in same.output


def test_resume_after_a_fatal_answer_writes_every_row_once(tmp_path: Path) -> None:
    job = chat_job(tmp_path, output={"dir": str(tmp_path / "out"), "rows_per_shard": 5})
    with pytest.raises(EndpointError):
        run(job, FakeChat(fail_after=12))
    out = tmp_path / "out"
    first = read_rows(out / "data")
    assert 0 < len(first) < 30 and read_rows(out / "errors") == []
    again = FakeChat()
    result = run(job, again)
    assert result.complete and len(again.requests) == 30 - len(first)
    rows = read_rows(out / "data")
    assert sorted(r["row_id"] for r in rows) == [f"r{i:05d}" for i in range(30)]


def test_make_backend_builds_the_openai_backend(tmp_path: Path) -> None:
    params = {"max_completion_tokens": 16, "temperature": 0, "logprobs": True, "extra_body": {"top_k": 20}}
    job = chat_job(
        tmp_path, parameters=params, endpoint={"url": "http://u:p@127.0.0.1:9/v1", "model": "m", "server": "vllm"}
    )
    backend = make_backend(load_job(job).spec, None)
    assert isinstance(backend, OpenAIBackend)
    assert (backend.api, backend.model, backend.server, backend.keep_logprobs) == ("chat", "m", "vllm", True)
    assert backend.params == {"max_tokens": 16, "temperature": 0, "logprobs": True}
    assert backend.extra_body == {"top_k": 20} and backend.url == "http://127.0.0.1:9/v1"
    anyio.run(backend.aclose)


def test_validate_asks_the_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tgbatch.runner

    monkeypatch.setattr(tgbatch.runner, "make_backend", lambda spec, token, url: FakeChat())
    result = runner.invoke(app, ["validate", str(chat_job(tmp_path))])
    assert result.exit_code == 0, result.output
    assert "server:      fake://chat: vllm, model fake/model (0.9), context length 4096" in result.output
    assert "[system] You are terse.\n[user] What is 0 plus 0?" in result.output


class RefusesRow(FakeChat):
    """Refuses the row whose question mentions 7 as vLLM does a too-long prompt."""

    async def request(self, request: GenerationRequest) -> GenerationResult:
        if request.messages and "7 plus" in request.messages[-1]["content"]:
            raise BadRequestError("This model's maximum context length is 16 tokens", status_code=400)
        return await super().request(request)


def test_server_refusals_and_null_columns_go_to_errors(tmp_path: Path) -> None:
    rows = prompts(12)
    rows[4]["question"] = None
    job = chat_job(tmp_path, write_jsonl(tmp_path / "q.jsonl", rows))
    result = run(job, RefusesRow())
    assert result.complete
    errors = {r["row_id"]: r for r in read_rows(tmp_path / "out" / "errors")}
    assert sorted(errors) == ["r00004", "r00007"]
    refused = errors["r00007"]
    assert refused["error_type"] == "BadRequestError" and refused["http_status"] == 400
    assert "maximum context length" in refused["message"] and refused["messages"][1]["content"] == "What is 7 plus 7?"
    null = errors["r00004"]
    assert (
        null["error_type"] == "TemplateError"
        and "messages[1].content: row 'r00004' would print null" in null["message"]
    )
    assert len(read_rows(tmp_path / "out" / "data")) == 10
