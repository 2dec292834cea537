"""The job spec: loading, overrides, and a clear exit-2 message naming the field for every kind of mistake."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tgbatch.cli import _register, app
from tgbatch.errors import SpecError
from tgbatch.job.load import apply_overrides, load_job
from tgbatch.job.spec import redact_url

from .runner_util import job_dict, prompts, write_job, write_jsonl

_register()
runner = CliRunner()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "prompts.jsonl", prompts(5))


def _job(tmp_path: Path, data: Path, **overrides: Any) -> Path:
    return write_job(tmp_path / "job.yaml", job_dict(data, **overrides))


def test_defaults_and_name(tmp_path: Path, data: Path) -> None:
    job = job_dict(data)
    del job["name"]
    loaded = load_job(write_job(tmp_path / "my-job.yaml", job))
    assert loaded.name == "my-job"
    assert loaded.output_dir == (Path("runs") / "my-job").absolute()
    assert loaded.spec.samples == 1
    assert loaded.spec.seed_policy == "per_row"  # sampling
    assert loaded.spec.output.details == "summary"
    assert loaded.spec.endpoint.token_env == "HF_TOKEN"


def test_seed_policy_defaults() -> None:
    base = {"dataset": {"path": "x.jsonl"}, "template": "x", "endpoint": {"url": "sim://"}}
    from tgbatch.job.load import load_job_data

    assert load_job_data(base).spec.seed_policy == "none"
    sampled = {**base, "parameters": {"do_sample": True, "best_of": 2}}
    assert load_job_data(sampled).spec.seed_policy == "none"


def test_overrides_parse_yaml_values() -> None:
    data = {"parameters": {"temperature": 0.5}, "template": "a"}
    out = apply_overrides(
        data, ["parameters.temperature=0.7", "parameters.stop=[a, b]", "output.rows_per_shard=10", "template_file=t"]
    )
    assert out["parameters"] == {"temperature": 0.7, "stop": ["a", "b"]}
    assert out["output"] == {"rows_per_shard": 10}
    assert "template" not in out and out["template_file"] == "t"
    assert data["parameters"]["temperature"] == 0.5  # the input is not changed


def test_set_overrides_through_load(tmp_path: Path, data: Path) -> None:
    loaded = load_job(_job(tmp_path, data), ["samples=3", "endpoint.concurrency=2", "seed.policy=fixed"])
    assert (loaded.spec.samples, loaded.spec.endpoint.concurrency, loaded.spec.seed_policy) == (3, 2, "fixed")


def test_template_file_relative_to_job(tmp_path: Path, data: Path) -> None:
    (tmp_path / "t.j2").write_text("Hello {{ question }}")
    job = job_dict(data)
    del job["template"]
    job["template_file"] = "t.j2"
    assert load_job(write_job(tmp_path / "job.yaml", job)).template_text == "Hello {{ question }}"


def test_resolved_spec_has_no_secrets(tmp_path: Path, data: Path) -> None:
    job = job_dict(
        data,
        endpoint={
            "url": "https://user:pw@example.com/x?api_key=s3&a=1",
            "headers": {"Authorization": "Bearer s3", "X-Team": "blue"},
        },
    )
    loaded = load_job(write_job(tmp_path / "job.yaml", job))
    resolved = loaded.resolved_dict()
    assert "s3" not in str(resolved) and "pw" not in str(resolved)
    assert resolved["endpoint"]["headers"]["X-Team"] == "blue"
    assert any("Authorization" in w for w in loaded.warnings)
    assert redact_url("sim://?decode_ms_per_token=0") == "sim://?decode_ms_per_token=0"


BAD_FIELDS = [
    # (overrides of the job, text the message must contain)
    ({"dataset": {"pth": "x"}}, "dataset.pth"),
    ({"datset": {}}, "datset"),
    ({"samples": 0}, "samples"),
    ({"samples": "many"}, "samples"),
    ({"endpoint": {"url": "ftp://x"}}, "endpoint"),
    ({"endpoint": {"url": "sim://", "concurrency": 0}}, "endpoint.concurrency"),
    ({"endpoint": {"url": "sim://", "timeout_s": -1}}, "endpoint.timeout_s"),
    ({"endpoint": {"url": "sim://", "tokn_env": "X"}}, "endpoint.tokn_env"),
    ({"retry": {"attempts": 0}}, "retry.attempts"),
    ({"output": {"details": "everything"}}, "output.details"),
    ({"output": {"rows_per_shard": 0}}, "output.rows_per_shard"),
    ({"seed": {"policy": "sometimes"}}, "seed.policy"),
    ({"seed": {"policy": "fixed", "value": -1}}, "seed.value"),
    ({"parameters": {"temperature": 0}}, "parameters.temperature"),
    ({"parameters": {"top_p": 1.5}}, "parameters.top_p"),
    ({"parameters": {"max_new_tokens": 0}}, "parameters.max_new_tokens"),
    ({"parameters": {"max_new_tokens": -3}}, "parameters.max_new_tokens"),
    ({"parameters": {"repetition_penalty": 0}}, "parameters.repetition_penalty"),
    ({"parameters": {"frequency_penalty": 9}}, "parameters.frequency_penalty"),
    ({"parameters": {"stop_sequences": ["x"]}}, "parameters.stop_sequences"),
    ({"parameters": {"max_new_tokens": "ten"}}, "parameters.max_new_tokens"),
    ({"parameters": {"seed": 3}}, "parameters.seed"),
    ({"parameters": {"best_of": 2}}, "parameters.best_of"),  # best_of needs sampling
    ({"parameters": {"best_of": 2, "do_sample": True}, "seed": {"policy": "per_row"}}, "seed.policy"),
    ({"parameters": {"grammar": {"type": "json", "value": {"type": "object"}}}}, "parameters.grammar"),
    ({"name": "bad name!"}, "name"),
    ({"template_file": "t.j2"}, "template"),  # both template and template_file
    ({"template": "{{ question "}, "template"),  # syntax error
    ({"template": "{{ nope }}"}, "nope"),  # unknown column
    ({"dataset": {"path": "missing.jsonl"}}, "dataset.path"),
    ({"dataset": {"path": "PLACEHOLDER", "id_column": "nope"}}, "dataset.id_column"),
    ({"dataset": {"path": "PLACEHOLDER", "columns": ["nope"]}}, "dataset.columns"),
    ({"dataset": {"path": "PLACEHOLDER", "columns": ["prompt"]}, "_extra_prompt": True}, "dataset.columns"),
    ({"dataset": {"path": "PLACEHOLDER", "format": "xml"}}, "dataset.format"),
]


@pytest.mark.parametrize(("changes", "needle"), BAD_FIELDS, ids=[n + str(i) for i, (_, n) in enumerate(BAD_FIELDS)])
def test_bad_field_exit_2_names_it(tmp_path: Path, changes: dict[str, Any], needle: str) -> None:
    rows = prompts(5)
    if changes.pop("_extra_prompt", False):
        rows = [{**r, "prompt": "p"} for r in rows]
    data = write_jsonl(tmp_path / "prompts.jsonl", rows)
    job = job_dict(data)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(job.get(key), dict) and key != "parameters":
            value = {**job[key], **value}
        if key == "dataset" and value.get("path") == "PLACEHOLDER":
            value["path"] = str(data)
        if key == "dataset" and "pth" in value:
            value.pop("path")
        job[key] = value
    path = write_job(tmp_path / "job.yaml", job)
    for command in (["validate", str(path)], ["run", str(path), "--output", str(tmp_path / "out")]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, (command, result.output)
        assert needle in result.output, result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "out" / "data").exists()  # nothing was run


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--set", "nokey"], "--set"),
        (["--set", "samples.x=1"], "samples"),
        (["--shard", "3/3"], "--shard"),
        (["--shard", "x"], "--shard"),
        (["--shard", "1/2", "--fresh"], "--fresh"),
        (["--set", "endpoint.url=sim://?no_such_knob=1"], "no_such_knob"),
    ],
)
def test_bad_cli_usage_exit_2(tmp_path: Path, data: Path, args: list[str], needle: str) -> None:
    path = _job(tmp_path, data)
    result = runner.invoke(app, ["run", str(path), "--output", str(tmp_path / "out"), *args])
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert "Traceback" not in result.output


def test_missing_and_invalid_job_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "job file not found" in result.output
    (tmp_path / "bad.yaml").write_text("dataset: [unclosed")
    result = runner.invoke(app, ["validate", str(tmp_path / "bad.yaml")])
    assert result.exit_code == 2 and "not valid YAML" in result.output
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="mapping"):
        load_job(tmp_path / "list.yaml")


def test_unknown_key_suggests_the_right_one(tmp_path: Path, data: Path) -> None:
    with pytest.raises(SpecError, match=r"did you mean `rows_per_shard`"):
        load_job(_job(tmp_path, data, output={"rows_per_shards": 3}))


def test_validate_shows_prompts_and_server(tmp_path: Path, data: Path) -> None:
    result = runner.invoke(app, ["validate", str(_job(tmp_path, data))])
    assert result.exit_code == 0, result.output
    assert "Q: What is 0 plus 0?" in result.output
    assert "tgbatch/sim" in result.output  # /info answered
    assert result.output.rstrip().endswith("valid")


def test_validate_checks_server_limits(tmp_path: Path, data: Path) -> None:
    path = _job(tmp_path, data, endpoint={"url": "sim://?max_stop_sequences=1"})
    result = runner.invoke(app, ["validate", str(path), "--set", "parameters.stop=[a, b]"])
    assert result.exit_code == 2
    assert "stop" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("parameters", "fix"),
    [
        ({"temperature": 0}, "for greedy decoding leave temperature out (do_sample: false)"),
        ({"top_p": 1.0}, "leave top_p out"),
        ({"top_k": 0}, "leave top_k out"),
    ],
)
def test_refused_parameters_say_the_way_out(tmp_path: Path, parameters: dict[str, Any], fix: str) -> None:
    from tgbatch.job.load import load_job_data

    data = {"dataset": {"path": "x.jsonl"}, "template": "x", "endpoint": {"url": "sim://"}, "parameters": parameters}
    with pytest.raises(SpecError) as info:
        load_job_data(data)
    assert f"parameters.{next(iter(parameters))}" in str(info.value) and fix in str(info.value)
