"""Output to (and input from) an object store, against a real S3-compatible server process on loopback (moto's
standalone server, started here): a run killed with SIGKILL and resumed writes every row exactly once,
``tgbatch status s3://...`` sums it, the shard lease refuses a second run of the same shard, and URL schemes
tgbatch cannot write are refused with exit 2 instead of becoming a local folder named ``s3:``."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tgbatch.cli import _register, app
from tgbatch.errors import OutputError, ResumeError

from ._server_util import free_port
from .runner_util import start_tgbatch, write_job

s3fs = pytest.importorskip("s3fs", reason="object-store tests need the s3 extra: pip install 'tgbatch[s3]'")
moto_server = pytest.importorskip("moto.server", reason="object-store tests need moto[server] (the test extra)")

ROOT = Path(__file__).resolve().parents[1]
DEADLINE_S = 120.0
runner = CliRunner()
_register()


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """moto's S3 server on a loopback port, and the standard AWS variables pointing at it."""
    port = free_port()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request otherwise
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_ENDPOINT_URL": url,
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            mp.setenv(key, value)
        yield url
    server.stop()


def _fs() -> Any:
    return s3fs.S3FileSystem(use_listings_cache=False, skip_instance_cache=True)


@pytest.fixture
def bucket(endpoint: str, request: pytest.FixtureRequest) -> str:
    name = request.node.name.replace("_", "-")[:50].strip("-").lower()
    _fs().mkdir(name)
    return name


def _job(tmp_path: Path, rows: int, url: str = "sim://", **output: Any) -> Path:
    data = tmp_path / "prompts.jsonl"
    with data.open("w") as f:
        for i in range(rows):
            f.write(json.dumps({"text": f"Tell me about item {i}"}) + "\n")
    job = {
        "name": "objects",
        "dataset": {"path": str(data)},
        "template": "{{ text }}",
        "parameters": {"max_new_tokens": 6, "do_sample": True, "temperature": 0.9},
        "seed": {"policy": "per_row", "value": 1},
        "endpoint": {"url": url, "concurrency": 16},
        "retry": {"initial_wait_s": 0.01, "max_wait_s": 0.1},
        "output": {"rows_per_shard": 100, **output},
    }
    return write_job(tmp_path / "job.yaml", job)


_start = start_tgbatch


def _finish(proc: subprocess.Popen[bytes]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=DEADLINE_S)
    return proc.returncode, out.decode(), err.decode()


def _shards(prefix: str) -> list[str]:
    try:
        return [p for p in _fs().ls(f"{prefix}/data") if p.rsplit("/", 1)[-1].startswith("part-")]
    except FileNotFoundError:
        return []


def _wait_until(proc: subprocess.Popen[bytes], ready: Any) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not ready():
        assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
        assert time.monotonic() < deadline, "timed out waiting for the run to make progress"
        time.sleep(0.02)  # polling interval of a bounded wait on the bucket, not synchronisation


def _rows(prefix: str) -> list[tuple[str, int]]:
    fs = _fs()
    keys: list[tuple[str, int]] = []
    for path in _shards(prefix):
        with fs.open(path, "rb") as f:
            table = pq.read_table(f, columns=["row_id", "sample"])
        keys.extend(zip(table.column("row_id").to_pylist(), table.column("sample").to_pylist(), strict=True))
    return keys


@pytest.mark.slow
def test_sigkill_and_resume_in_s3_is_exactly_once_and_the_lease_refuses_a_second_run(
    tmp_path: Path, bucket: str
) -> None:
    n = 3000
    job = _job(tmp_path, n, url="sim://?decode_ms_per_token=1")
    out = f"s3://{bucket}/run"
    first = _start("run", str(job), "-o", out)
    _wait_until(first, lambda: len(_shards(f"{bucket}/run")) >= 3)

    second = _start("run", str(job), "-o", out)  # the same shard while the first one holds its lease
    code, _, stderr = _finish(second)
    assert code == 2 and "another tgbatch run" in stderr and "Traceback" not in stderr, stderr[-3000:]

    first.send_signal(signal.SIGKILL)
    first.wait(timeout=DEADLINE_S)
    before = len(_rows(f"{bucket}/run"))
    assert 300 <= before < n
    assert not list(tmp_path.glob("s3*")) and not (ROOT / "s3:").exists()  # nothing written locally

    # the killed run's lease names a dead process on this host: the resume takes it over at once
    code, stdout, stderr = _finish(_start("run", str(job), "-o", out))
    assert code == 0, stderr[-3000:]
    assert f"{before} rows were already written" in stdout
    keys = _rows(f"{bucket}/run")
    assert len(keys) == len(set(keys)) == n  # every (row_id, sample) exactly once
    assert sorted(int(k) for k, _ in keys) == list(range(n))
    fs = _fs()
    manifest = json.loads(fs.cat_file(f"{bucket}/run/manifest.json"))
    assert manifest["complete"] and manifest["rows_written"] == n and manifest["runs"] == 2
    assert not fs.exists(f"{bucket}/run/.lock-0of1")  # released at the end

    said = runner.invoke(app, ["status", out])
    assert said.exit_code == 0, said.output
    assert "state:      complete" in said.output and f"done:       {n} of {n}" in said.output
    status = json.loads(runner.invoke(app, ["status", out, "--json"]).output)
    assert status["output_dir"] == out and status["done"] == n and status["data_files"] == n // 100


def test_the_lease_is_exclusive_and_an_expired_one_is_taken_over(bucket: str) -> None:
    from tgbatch.output.layout import OutputDir

    out = OutputDir(f"s3://{bucket}/run", (1, 4))
    with out.locked():
        with pytest.raises(ResumeError, match=r"another tgbatch run .* is writing shard 1of4"), out.locked():
            pass
        with OutputDir(f"s3://{bucket}/run", (2, 4)).locked():  # another shard: its own lease
            pass
    fs = _fs()
    assert not fs.exists(f"{bucket}/run/.lock-1of4")
    # a lease left by a run on another host that stopped renewing it 10 s ago
    stale = {"owner": "x", "pid": 1, "hostname": "elsewhere", "expires_unix": time.time() - 10, "ttl_s": 60}
    fs.pipe_file(f"{bucket}/run/.lock-1of4", json.dumps(stale).encode())
    with out.locked():
        held = json.loads(fs.cat_file(f"{bucket}/run/.lock-1of4"))
        assert held["pid"] == os.getpid() and held["expires_unix"] > time.time()
    # a live lease from another host is refused
    live = {**stale, "expires_unix": time.time() + 60}
    fs.pipe_file(f"{bucket}/run/.lock-1of4", json.dumps(live).encode())
    with pytest.raises(ResumeError, match="pid 1 on elsewhere"), out.locked():
        pass


def test_a_job_reads_its_input_from_s3_and_writes_there(tmp_path: Path, bucket: str) -> None:
    fs = _fs()
    lines = "".join(json.dumps({"text": f"q{i}"}) + "\n" for i in range(250))
    fs.pipe_file(f"{bucket}/in/part-a.jsonl", lines.encode())
    fs.pipe_file(f"{bucket}/in/part-b.jsonl", lines.replace('"q', '"r').encode())
    job = _job(tmp_path, 1)
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    said = runner.invoke(
        app,
        ["run", str(job), "-o", f"s3://{bucket}/out", "--set", f"dataset.path=s3://{bucket}/in/*.jsonl"],
        env=env,
    )
    assert said.exit_code == 0, said.output
    assert len(set(_rows(f"{bucket}/out"))) == 500
    again = runner.invoke(
        app,
        ["run", str(job), "-o", f"s3://{bucket}/out", "--set", f"dataset.path=s3://{bucket}/in/*.jsonl"],
        env=env,
    )
    assert again.exit_code == 0 and "500 rows were already written" in again.output, again.output

    # scored and exported where it lies, without a local copy
    spec = tmp_path / "score.yaml"
    spec.write_text("reference: text\nmetrics: [contains]\n")
    scored = runner.invoke(app, ["score", f"s3://{bucket}/out", "--spec", str(spec), "--json"])
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.output)["contains"]["n"] == 500
    assert fs.exists(f"{bucket}/out/scores.json") and fs.ls(f"{bucket}/out/scores")
    status = runner.invoke(app, ["status", f"s3://{bucket}/out"])
    assert status.exit_code == 0 and "contains" in status.output
    exported = tmp_path / "rows.jsonl"
    said = runner.invoke(app, ["export", f"s3://{bucket}/out", "--format", "jsonl", "-o", str(exported)])
    assert said.exit_code == 0, said.output
    assert len(exported.read_text().splitlines()) == 500


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("-o", "ftp://tgb/out"),
        ("-o", "http://tgb/out"),
        ("--set", "output.dir=gopher://tgb/out"),
        ("--set", "dataset.path=ftp://tgb/in.jsonl"),
    ],
)
def test_unsupported_url_schemes_are_refused(
    tmp_path: Path, flag: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    job = _job(tmp_path, 5)
    said = runner.invoke(app, ["run", str(job), flag, value])
    assert said.exit_code == 2, said.output
    shown = value.partition("=")[2] or value
    assert repr(shown) in said.output and "s3://" in said.output and "Traceback" not in said.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.yaml", "prompts.jsonl"]  # no local 'ftp:' folder
    status = runner.invoke(app, ["status", "ftp://tgb/out"])
    assert status.exit_code == 2 and "s3://" in status.output


def test_a_run_that_lost_its_lease_stops_writing(bucket: str) -> None:
    from tgbatch.output.layout import OutputDir

    out = OutputDir(f"s3://{bucket}/lost", (0, 2))
    fs = _fs()
    with out.locked():
        out.store.write_bytes("job.yaml", b"name: t\n")  # held: writes go through
        lease = out.store._lease
        assert lease is not None
        # a network partition outlived the lease, and another run took the shard over: its renewal finds that
        taken = {"owner": "other", "pid": 1, "hostname": "elsewhere", "expires_unix": time.time() + 60, "ttl_s": 60}
        fs.pipe_file(f"{bucket}/lost/.lock-0of2", json.dumps(taken).encode())
        lease.lost = lease._taken_over()
        with pytest.raises(OutputError, match="another run took it over"):
            out.store.write_bytes("job.yaml", b"name: other\n")
        # a lease not renewed in time (the renewals failed): this run may no longer write either
        lease.lost, lease.renewed_at = False, lease.renewed_at - lease.ttl_s
        with pytest.raises(OutputError, match="not renewed"):
            out.store.write_bytes("job.yaml", b"name: other\n")
    assert fs.cat_file(f"{bucket}/lost/job.yaml") == b"name: t\n"
    assert json.loads(fs.cat_file(f"{bucket}/lost/.lock-0of2"))["owner"] == "other"  # theirs, not deleted
