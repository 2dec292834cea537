"""The runner end to end, in-process: ``tgbatch run`` against the ``sim://`` simulator (and a mock transport for
exact server answers). What a user sees: the output folder, exit codes, resume and sharding behaviour."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tgbatch.cli import _register, app
from tgbatch.client import AsyncClient
from tgbatch.job.load import load_job
from tgbatch.runner import ProgressSink, RunControl, RunOptions, prepare, run_job

from .runner_util import job_dict, prompts, read_rows, write_job, write_jsonl

_register()
runner = CliRunner()


def run_cli(*args: str, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(app, ["run", *args], env=env)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "prompts.jsonl", prompts(120))


def _job(tmp_path: Path, data: Path, name: str = "job.yaml", **overrides: Any) -> Path:
    job = job_dict(data, **overrides)
    job["output"].setdefault("dir", str(tmp_path / "runs" / "t"))  # never the current directory
    return write_job(tmp_path / name, job)


def _keys(rows: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(r["row_id"], r["sample"]) for r in rows]


def test_run_writes_dataset_and_resume_is_a_no_op(tmp_path: Path, data: Path) -> None:
    out = tmp_path / "out"
    job = _job(tmp_path, data)
    result = run_cli(str(job), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert f"{out}/data/*.parquet" in result.output and "load_dataset" in result.output
    rows = read_rows(out / "data")
    assert sorted(_keys(rows)) == [(f"r{i:05d}", 0) for i in range(120)]
    first = rows[0]
    assert first["prompt"].startswith("Q: What is") and first["generated_text"]
    assert first["finish_reason"] in ("length", "eos_token", "stop_sequence")
    assert first["seed"] is not None and first["attempts"] == 1 and first["endpoint"] == "sim://"
    assert first["details"] is None and first["topic"].startswith("t") and first["id"] == first["row_id"]
    schema = pq.read_schema(next((out / "data").glob("*.parquet")))
    assert schema.names[:11] == [
        "row_id",
        "sample",
        "prompt",
        "generated_text",
        "finish_reason",
        "generated_tokens",
        "seed",
        "details",
        "attempts",
        "latency_s",
        "endpoint",
    ]
    assert len(list((out / "data").glob("*.parquet"))) == 3  # rows_per_shard 50
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["rows_selected"] == 120 and manifest["rows_written"] == 120
    assert (out / "job.yaml").exists()

    again = run_cli(str(job), "-o", str(out))
    assert (
        again.exit_code == 0 and "0 rows generated" in again.output and "120 rows were already written" in again.output
    )
    assert len(read_rows(out / "data")) == 120

    status = runner.invoke(app, ["status", str(out), "--json"])
    info = json.loads(status.output)
    assert (info["done"], info["failed"], info["remaining"], info["complete"]) == (120, 0, 0, True)
    assert info["generated_tokens"] == sum(r["generated_tokens"] for r in rows)
    text = runner.invoke(app, ["status", str(out)]).output
    assert "done:       120 of 120" in text and "complete" in text


def test_datasets_reads_the_output(tmp_path: Path, data: Path) -> None:
    out = tmp_path / "out"
    assert (
        run_cli(str(_job(tmp_path, data, output={"details": "full", "rows_per_shard": 40})), "-o", str(out)).exit_code
        == 0
    )
    import datasets

    ds = datasets.load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), split="train")
    assert ds.num_rows == 120
    row = ds[0]
    assert row["details"]["tokens"] and len(row["details"]["tokens"]) == row["generated_tokens"]


def test_422_rows_go_to_errors_and_exit_3(tmp_path: Path) -> None:
    rows = prompts(40)
    for i in (3, 17, 31):
        rows[i]["question"] = "long " * 50  # more prompt tokens than the server accepts
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    job = _job(tmp_path, data, endpoint={"url": "sim://?max_input_tokens=40&max_total_tokens=100"})
    out = tmp_path / "out"
    result = run_cli(str(job), "-o", str(out))
    assert result.exit_code == 3, result.output
    assert "failed rows (3)" in result.output
    errors = read_rows(out / "errors")
    assert sorted(r["row_id"] for r in errors) == ["r00003", "r00017", "r00031"]
    err = errors[0]
    assert err["error_type"] == "ValidationError" and err["http_status"] == 422 and err["attempts"] == 1
    assert "Input validation error" in err["message"] and err["topic"] is not None
    assert len(read_rows(out / "data")) == 37
    # a resume does not retry them (they are recorded), and still reports them
    again = run_cli(str(job), "-o", str(out))
    assert again.exit_code == 3 and "0 rows generated" in again.output
    # --retry-failed against a server that accepts them: every row ends in data/, errors/ is empty
    retried = run_cli(str(job), "-o", str(out), "--retry-failed", "--set", "endpoint.url=sim://")
    assert retried.exit_code == 0, retried.output
    assert sorted(_keys(read_rows(out / "data"))) == [(f"r{i:05d}", 0) for i in range(40)]
    assert read_rows(out / "errors") == [] and list((out / "retired").glob("*.parquet"))


def test_fault_storm_completes_every_row(tmp_path: Path, data: Path) -> None:
    url = (
        "sim://?overload_rate=0.15&unavailable_rate=0.1&error_rate=0.1&drop_rate=0.05"
        "&stall_rate=0.03&stall_s=30&loading_s=0.2&rate_limit=400&fault_seed=7"
    )
    job = _job(
        tmp_path,
        data,
        endpoint={"url": url, "concurrency": 8, "timeout_s": 0.5},
        retry={"attempts": 60, "initial_wait_s": 0.001, "max_wait_s": 0.02},
    )
    out = tmp_path / "out"
    result = run_cli(str(job), "-o", str(out))
    assert result.exit_code == 0, result.output
    rows = read_rows(out / "data")
    assert sorted(_keys(rows)) == [(f"r{i:05d}", 0) for i in range(120)]
    assert max(r["attempts"] for r in rows) > 1
    assert "0 retries" not in result.output
    assert read_rows(out / "errors") == []


def test_401_stops_the_job_with_exit_2(tmp_path: Path, data: Path) -> None:
    job = _job(tmp_path, data, endpoint={"url": "sim://?api_key=right-key", "token_env": "TGB_TEST_TOKEN"})
    out = tmp_path / "out"
    result = run_cli(str(job), "-o", str(out), env={"TGB_TEST_TOKEN": "wrong-key"})
    assert result.exit_code == 2, result.output
    assert "token" in result.output and "Traceback" not in result.output
    assert read_rows(out / "errors") == []  # not the rows' fault
    ok = run_cli(str(job), "-o", str(out), env={"TGB_TEST_TOKEN": "right-key"})
    assert ok.exit_code == 0
    assert len(read_rows(out / "data")) == 120


def test_token_is_never_written(tmp_path: Path, data: Path) -> None:
    secret = "hf_SECRETtoken123456"
    job = _job(tmp_path, data, endpoint={"url": f"sim://?api_key={secret}", "token_env": "TGB_TEST_TOKEN"})
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", str(job), "-o", str(out), "-v"], env={"TGB_TEST_TOKEN": secret})
    assert result.exit_code == 0, result.output
    assert "rows this run" in result.output  # the logs are in the captured output too
    assert secret not in result.output
    for path in out.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_changed_template_is_refused_on_resume(tmp_path: Path, data: Path) -> None:
    job = _job(tmp_path, data)
    out = tmp_path / "out"
    assert run_cli(str(job), "-o", str(out), "--limit", "10").exit_code == 0
    changed = run_cli(str(job), "-o", str(out), "--set", "template=Question: {{ question }}")
    assert changed.exit_code == 2
    assert "the template changed" in changed.output and "--fresh" in changed.output
    # operational settings may change: endpoint, concurrency, retry, shard size, limit
    resumed = run_cli(
        str(job),
        "-o",
        str(out),
        "--set",
        "endpoint.concurrency=2",
        "--set",
        "output.rows_per_shard=7",
        "--set",
        "endpoint.url=sim://?decode_ms_per_token=0",
    )
    assert resumed.exit_code == 0 and "10 rows were already written" in resumed.output
    fresh = run_cli(str(job), "-o", str(out), "--fresh", "--set", "template=Question: {{ question }}")
    assert fresh.exit_code == 0
    rows = read_rows(out / "data")
    assert len(rows) == 120 and all(r["prompt"].startswith("Question:") for r in rows)


def test_refuses_foreign_folders(tmp_path: Path, data: Path) -> None:
    job = _job(tmp_path, data)
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("precious")
    for extra in ([], ["--fresh"]):
        result = run_cli(str(job), "-o", str(home), *extra)
        assert result.exit_code == 2 and "not a tgbatch output folder" in result.output
    assert (home / "thesis.tex").read_text() == "precious"
    orphan = tmp_path / "orphan"
    (orphan / "data").mkdir(parents=True)
    pq.write_table(pq.read_table(_any_parquet(tmp_path)), orphan / "data" / "part-0of1-000000.parquet")
    result = run_cli(str(job), "-o", str(orphan))
    assert result.exit_code == 2 and "no manifest" in result.output


def _any_parquet(tmp_path: Path) -> Path:
    import pyarrow as pa

    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"row_id": ["a"], "sample": pa.array([0], pa.int32())}), path)
    return path


def test_shards_together_equal_the_whole(tmp_path: Path, data: Path) -> None:
    job = _job(tmp_path, data, samples=2)
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert run_cli(str(job), "-o", str(whole)).exit_code == 0
    counts = []
    for i in range(3):
        result = run_cli(str(job), "-o", str(split), "--shard", f"{i}/3")
        assert result.exit_code == 0, result.output
        counts.append(len(read_rows(split / "data")))
    assert 0 < counts[0] < counts[1] < counts[2] == 240
    expected = {(r["row_id"], r["sample"]): r["generated_text"] for r in read_rows(whole / "data")}
    got_rows = read_rows(split / "data")
    got = {(r["row_id"], r["sample"]): r["generated_text"] for r in got_rows}
    assert len(got_rows) == len(got) == 240 and got == expected  # per_row seeds: shard count does not matter
    assert sorted(p.name for p in split.glob("manifest*.json")) == [f"manifest-{i}of3.json" for i in range(3)]
    info = json.loads(runner.invoke(app, ["status", str(split), "--json"]).output)
    assert (info["done"], info["total"], info["remaining"], info["complete"]) == (240, 240, 0, True)
    # a later unsharded run over the same folder finds nothing left to do
    again = run_cli(str(job), "-o", str(split))
    assert again.exit_code == 0 and "0 rows generated" in again.output


def test_samples_seeds_and_details(tmp_path: Path, data: Path) -> None:
    out = tmp_path / "out"
    job = _job(tmp_path, data, samples=3, output={"details": "full", "rows_per_shard": 100})
    assert run_cli(str(job), "-o", str(out), "--limit", "5").exit_code == 0
    rows = read_rows(out / "data")
    assert len(rows) == 15
    by_row: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_row.setdefault(r["row_id"], []).append(r)
    for group in by_row.values():
        assert len({r["seed"] for r in group}) == 3 and len({r["generated_text"] for r in group}) > 1
        assert all(r["details"]["tokens"] for r in group)
    # fixed: sample k gets value + k
    fixed = tmp_path / "fixed"
    assert (
        run_cli(str(job), "-o", str(fixed), "--limit", "2", "--set", "seed={policy: fixed, value: 100}").exit_code == 0
    )
    assert sorted({r["seed"] for r in read_rows(fixed / "data")}) == [100, 101, 102]
    # none, greedy: no seed sent, none reported
    greedy = tmp_path / "greedy"
    args = ["--limit", "2", "--set", "parameters={max_new_tokens: 4}", "--set", "samples=1"]
    assert run_cli(str(job), "-o", str(greedy), *args).exit_code == 0
    assert {r["seed"] for r in read_rows(greedy / "data")} == {None}


def test_row_that_fails_to_render_is_a_failed_row(tmp_path: Path) -> None:
    rows = [{"id": f"r{i}", "n": i - 10} for i in range(20)]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    job = _job(tmp_path, data, template="Compute {{ 100 // n }}")
    out = tmp_path / "out"
    result = run_cli(str(job), "-o", str(out))
    assert result.exit_code == 3, result.output
    [err] = read_rows(out / "errors")
    assert err["row_id"] == "r10" and err["error_type"] == "TemplateError" and err["prompt"] is None
    assert "ZeroDivisionError" in err["message"]


def test_input_columns_clashing_with_output_are_renamed(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": f"say {i}", "seed": i} for i in range(5)])
    job = job_dict(data, template="{{ prompt }}")
    job["dataset"] = {"path": str(data)}
    out = tmp_path / "out"
    result = run_cli(str(write_job(tmp_path / "job.yaml", job)), "-o", str(out))
    assert result.exit_code == 0, result.output
    rows = sorted(read_rows(out / "data"), key=lambda r: int(r["row_id"]))
    assert rows[2]["input_prompt"] == "say 2" and rows[2]["prompt"] == "say 2" and rows[2]["input_seed"] == 2


# -- the library API, with a mock transport ----------------------------------------------------------------------------


def _mock_client(handler: Any) -> AsyncClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://test")
    return AsyncClient("http://test", http_client=http)


def _ok(text: str) -> dict[str, Any]:
    return {
        "generated_text": text,
        "details": {"finish_reason": "length", "generated_tokens": 2, "seed": None, "prefill": [], "tokens": []},
    }


@pytest.mark.anyio
async def test_retry_after_is_honoured_and_statuses_classified(tmp_path: Path, data: Path) -> None:
    seen: dict[str, int] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":  # /info at the start of the run: this server does not describe itself
            return httpx.Response(404)
        body = json.loads(request.content)
        prompt = body["inputs"]
        seen[prompt] = seen.get(prompt, 0) + 1
        assert body["parameters"]["details"] is True  # always asked for
        if "What is 1 plus" in prompt and seen[prompt] == 1:
            return httpx.Response(429, headers={"Retry-After": "0"}, json={"error": "Rate limit reached"})
        if "What is 2 plus" in prompt and seen[prompt] < 3:
            return httpx.Response(503, json={"error": "Model x is currently loading", "estimated_time": 0.001})
        if "What is 3 plus" in prompt:
            return httpx.Response(413, text="Payload Too Large")
        return httpx.Response(200, json=_ok(prompt[::-1]))

    loaded = load_job(_job(tmp_path, data), ["dataset.limit=6"])
    prepared = prepare(loaded)
    async with _mock_client(handler) as client:
        result = await run_job(prepared, client)
    assert (result.ok, result.failed, result.retries, result.complete) == (5, 1, 3, True)
    by_id = {r["row_id"]: r for r in read_rows(loaded.output_dir / "data")}
    assert by_id["r00001"]["attempts"] == 2 and by_id["r00002"]["attempts"] == 3
    [err] = read_rows(loaded.output_dir / "errors")
    assert (err["row_id"], err["http_status"], err["error_type"], err["attempts"]) == (
        "r00003",
        413,
        "BadRequestError",
        1,
    )


@pytest.mark.anyio
async def test_graceful_stop_commits_and_resume_completes(tmp_path: Path, data: Path) -> None:
    control = RunControl()

    class StopAfter(ProgressSink):
        def __init__(self) -> None:
            self.n = 0

        def advance(self, *, ok: bool, tokens: int) -> None:
            self.n += 1
            if self.n == 30:
                control.request_stop("test")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=_ok("x"))

    loaded = load_job(_job(tmp_path, data))
    async with _mock_client(handler) as client:
        first = await run_job(prepare(loaded), client, control=control, progress=StopAfter())
        assert first.interrupted and not first.complete and 30 <= first.ok < 120
        assert len(read_rows(loaded.output_dir / "data")) == first.ok  # everything finished was committed
        second = await run_job(prepare(loaded), client)
    assert second.complete and second.already_done == first.ok and second.ok == 120 - first.ok
    keys = _keys(read_rows(loaded.output_dir / "data"))
    assert sorted(keys) == [(f"r{i:05d}", 0) for i in range(120)]


@pytest.mark.anyio
async def test_a_slow_server_still_commits_on_the_interval(tmp_path: Path, data: Path) -> None:
    """commit_interval_s bounds the work a crash can lose, however slowly rows arrive."""
    release = anyio.Event()
    committed: list[int] = []

    class Watch(ProgressSink):
        def committed(self, files: Any) -> None:
            committed.append(sum(f.rows for f in files))
            release.set()

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":  # /info at the start of the run: this server does not describe itself
            return httpx.Response(404)
        prompt = json.loads(request.content)["inputs"]
        if "What is 0 plus" not in prompt:
            await release.wait()  # every other row waits until the first commit happened
        return httpx.Response(200, json=_ok("x"))

    loaded = load_job(_job(tmp_path, data), ["output.commit_interval_s=0.05", "output.rows_per_shard=1000"])
    async with _mock_client(handler) as client:
        with anyio.fail_after(30):
            result = await run_job(prepare(loaded), client, progress=Watch(), options=RunOptions(limit=20))
    assert committed[0] == 1 and result.ok == 20


@pytest.mark.anyio
async def test_404_stops_the_job(tmp_path: Path, data: Path) -> None:
    from tgbatch.errors import EndpointError

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="Not Found")

    loaded = load_job(_job(tmp_path, data))
    async with _mock_client(handler) as client:
        with pytest.raises(EndpointError, match=r"endpoint\.url"):
            await run_job(prepare(loaded), client)
    assert read_rows(loaded.output_dir / "errors") == []


def test_status_of_a_non_output_folder(tmp_path: Path) -> None:
    result = runner.invoke(app, ["status", str(tmp_path)])
    assert result.exit_code == 2 and "not a tgbatch output folder" in result.output


def test_help_texts_list_the_options() -> None:
    text = runner.invoke(app, ["run", "--help"]).output
    for option in ("--output", "--set", "--shard", "--limit", "--fresh", "--retry-failed", "--drain-s", "--max-runtime", "--max-new-tokens-total"):
        assert option in text
    assert "130" in text and "resumes" in text


@pytest.mark.anyio
async def test_disk_full_stops_with_a_clear_error_and_resumes(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import tgbatch.output.store as pipeline  # where a local folder commits a shard
    from tgbatch.errors import OutputError

    real_commit = pipeline.commit_table
    commits = 0

    def fill_up(table: Any, path: Path) -> None:
        nonlocal commits
        commits += 1
        if commits == 2:  # the first shard lands, the second meets a full disk
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_commit(table, path)

    monkeypatch.setattr(pipeline, "commit_table", fill_up)
    loaded = load_job(_job(tmp_path, data), ["output.rows_per_shard=40"])
    async with _mock_client(lambda request: httpx.Response(200, json=_ok("x"))) as client:
        with pytest.raises(OutputError, match="No space left on device") as info:
            await run_job(prepare(loaded), client)
        assert "run the same command again to resume" in str(info.value)
        assert len(read_rows(loaded.output_dir / "data")) == 40  # the first shard is intact
        monkeypatch.setattr(pipeline, "commit_table", real_commit)  # space freed
        resumed = await run_job(prepare(loaded), client)
    assert resumed.complete and resumed.already_done == 40
    assert sorted(_keys(read_rows(loaded.output_dir / "data"))) == [(f"r{i:05d}", 0) for i in range(120)]


def test_token_mistakes_are_told_apart(tmp_path: Path, data: Path) -> None:
    """No token, a misspelt token_env and a wrong token each get their own message, naming the variable."""
    job = _job(tmp_path, data, endpoint={"url": "sim://?api_key=right-key", "token_env": "MY_TOKN"})
    out = str(tmp_path / "out")
    unset = run_cli(str(job), "-o", out, env={"MY_TOKEN": "right-key", "MY_TOKN": None})
    assert unset.exit_code == 2 and "endpoint.token_env: MY_TOKN is not set" in unset.output, unset.output
    assert "HF_TOKEN" not in unset.output
    wrong = run_cli(str(job), "-o", out, env={"MY_TOKN": "wrong-key"})
    assert wrong.exit_code == 2 and "a token from MY_TOKN was sent and refused" in wrong.output, wrong.output
    said = runner.invoke(app, ["validate", str(job), "-o", out], env={"MY_TOKN": None})
    assert "MY_TOKN is not set: no token is sent" in said.output
    said = runner.invoke(app, ["validate", str(job), "-o", out], env={"MY_TOKN": "x"})
    assert "token:       from MY_TOKN (set" in said.output and "x\n" not in said.output


def test_resuming_a_finished_job_says_nothing_is_left(tmp_path: Path, data: Path) -> None:
    job = _job(tmp_path, data)
    assert run_cli(str(job), "--limit", "10").exit_code == 0
    again = run_cli(str(job), "--limit", "10")
    assert again.exit_code == 0 and "nothing left to do: every row was already written" in again.output
    assert "0.0 rows/s" not in again.output


def test_status_of_a_missing_folder(tmp_path: Path) -> None:
    result = runner.invoke(app, ["status", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "no such folder" in result.output


def test_status_after_a_no_op_resume_says_nothing_was_left(tmp_path: Path, data: Path) -> None:
    job = _job(tmp_path, data)
    assert run_cli(str(job), "--limit", "5").exit_code == 0
    assert run_cli(str(job), "--limit", "5").exit_code == 0
    out = str(tmp_path / "runs" / "t")
    status = runner.invoke(app, ["status", out])
    assert "nothing left to do" in status.output and "0.0 rows/s" not in status.output
