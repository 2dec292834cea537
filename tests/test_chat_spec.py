"""Chat and completions job specs, through ``tgbatch validate --offline``: every mistake is exit 2 with a message
naming the field, the value and the fix, and no traceback; valid specs render their messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tgbatch.cli import _register, app
from tgbatch.job.load import load_job

from .runner_util import prompts, write_job, write_jsonl

_register()
runner = CliRunner()

MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "{{ question }}"}]


def chat_job(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    data = write_jsonl(tmp_path / "q.jsonl", prompts(5))
    job: dict[str, Any] = {
        "name": "chat",
        "dataset": {"path": str(data), "id_column": "id"},
        "messages": MESSAGES,
        "endpoint": {"url": "http://127.0.0.1:9/v1"},
        "parameters": {"max_tokens": 32, "temperature": 0.7},
        "output": {"dir": str(tmp_path / "out")},
    }
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if value is None:
            (job[section] if field else job).pop(field or section, None)
        elif field:
            job[section][field] = value
        else:
            job[section] = value
    return job


def validate(tmp_path: Path, job: dict[str, Any], *args: str) -> Any:
    path = write_job(tmp_path / "job.yaml", job)
    result = runner.invoke(app, ["validate", str(path), "--offline", *args])
    assert "Traceback" not in result.output
    return result


def refused(tmp_path: Path, job: dict[str, Any], *args: str) -> str:
    result = validate(tmp_path, job, *args)
    assert result.exit_code == 2, result.output
    return str(result.output)


@pytest.mark.parametrize(
    ("name", "value", "hint"),
    [
        ("max_new_tokens", 64, "max_tokens"),
        ("repetition_penalty", 1.1, "extra_body: {repetition_penalty"),
        ("top_k", 20, "extra_body: {top_k"),
        ("do_sample", True, "temperature"),
        ("stop_sequences", ["\n"], "stop: [...]"),
        ("n", 4, "samples: N"),
        ("seed", 7, "seed: {policy: fixed"),
        ("stream", True, "leave it out"),
        ("model", "m", "endpoint.model"),
    ],
)
def test_tgi_and_managed_names_are_refused_with_their_place(tmp_path: Path, name: str, value: Any, hint: str) -> None:
    out = refused(tmp_path, chat_job(tmp_path, parameters={"max_tokens": 8, name: value}))
    assert f"parameters.{name}: {value!r}" in out and hint in out


def test_unknown_chat_parameter_suggests_the_openai_name(tmp_path: Path) -> None:
    out = refused(tmp_path, chat_job(tmp_path, parameters={"max_token": 8}))
    assert "parameters.max_token: unknown key; did you mean `max_tokens`?" in out and "extra_body" in out


def test_max_completion_tokens_is_read_as_max_tokens(tmp_path: Path) -> None:
    path = write_job(tmp_path / "job.yaml", chat_job(tmp_path, parameters={"max_completion_tokens": 9}))
    params = load_job(path).spec.parameters
    assert params.model_dump(exclude_unset=True) == {"max_tokens": 9}


def test_exactly_one_input(tmp_path: Path) -> None:
    both = refused(tmp_path, chat_job(tmp_path, template="Q: {{ question }}"))
    assert "exactly one of `template`" in both and "'template', 'messages'" in both
    none = refused(tmp_path, chat_job(tmp_path, messages=None))
    assert "exactly one of" in none and "given: none" in none


def test_messages_need_the_chat_api(tmp_path: Path) -> None:
    out = refused(tmp_path, chat_job(tmp_path, endpoint__api="completions"))
    assert "`messages` needs endpoint.api: chat" in out
    gen = refused(tmp_path, chat_job(tmp_path, endpoint__api="generate", parameters={}))
    assert "`messages` needs endpoint.api: chat" in gen


def test_tools_are_chat_only(tmp_path: Path) -> None:
    job = chat_job(tmp_path, messages=None, template="{{ question }}", endpoint__api="completions")
    job["parameters"]["tools"] = []
    assert "parameters.tools: [] needs api: chat" in refused(tmp_path, job)


def test_the_hf_router_needs_a_model(tmp_path: Path) -> None:
    out = refused(tmp_path, chat_job(tmp_path, endpoint__url="https://router.huggingface.co/v1"))
    assert "endpoint.model: required for router.huggingface.co" in out and ":fastest" in out
    ok = validate(tmp_path, chat_job(tmp_path, endpoint__url="https://router.huggingface.co/v1", endpoint__model="m"))
    assert ok.exit_code == 0, ok.output


@pytest.mark.parametrize(
    ("response_format", "said"),
    [
        (
            {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "objekt"}}},
            "not a valid JSON Schema",
        ),
        ({"type": "json_schema", "json_schema": {"name": "a"}}, "json_schema needs"),
        ({"type": "regex", "value": "([0-9]+"}, "does not compile"),
        ({"type": "grammar", "value": "x"}, "'grammar' is not one of json_schema, json_object, json, regex"),
    ],
)
def test_response_format_is_checked_at_load(tmp_path: Path, response_format: dict[str, Any], said: str) -> None:
    out = refused(tmp_path, chat_job(tmp_path, parameters={"response_format": response_format}))
    assert "parameters.response_format" in out and said in out


def test_parameter_bounds_and_types(tmp_path: Path) -> None:
    assert "parameters.temperature" in refused(tmp_path, chat_job(tmp_path, parameters={"temperature": -1}))
    assert "parameters.top_p" in refused(tmp_path, chat_job(tmp_path, parameters={"top_p": 1.5}))
    out = refused(tmp_path, chat_job(tmp_path, parameters={"top_logprobs": 3}))
    assert "top_logprobs needs logprobs: true" in out


def test_a_message_template_naming_an_unknown_column(tmp_path: Path) -> None:
    job = chat_job(tmp_path, messages=[{"role": "user", "content": "{{ questoin }}"}])
    out = refused(tmp_path, job)
    assert "messages[0].content: uses {{ questoin }}" in out and "question" in out
    bad_role = refused(tmp_path, chat_job(tmp_path, messages=[{"role": "wizard", "content": "x"}]))
    assert "messages.0.role" in bad_role and "wizard" in bad_role


def test_validate_shows_the_rendered_messages(tmp_path: Path) -> None:
    result = validate(tmp_path, chat_job(tmp_path, parameters={"max_tokens": 8, "extra_body": {"top_k": 20}}))
    assert result.exit_code == 0, result.output
    assert "--- row r00001 ---\n[system] You are terse.\n[user] What is 1 plus 1?\n" in result.output
    assert "api:         chat" in result.output and "'extra_body': {'top_k': 20}" in result.output


def test_set_replaces_messages_with_a_template(tmp_path: Path) -> None:
    # without endpoint.api a template is a /generate job, which knows no max_tokens: said so
    out = refused(tmp_path, chat_job(tmp_path), "--set", "template=Say {{ topic }}")
    assert "parameters.max_tokens: unknown key; it is an OpenAI name" in out and "endpoint.api: chat" in out
    result = validate(tmp_path, chat_job(tmp_path), "--set", "template=Say {{ topic }}", "--set", "endpoint.api=chat")
    assert result.exit_code == 0, result.output
    assert "[user] Say t0" in result.output  # a template on a chat job is one user message
