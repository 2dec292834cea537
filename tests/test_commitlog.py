"""The commit log: a commit appends its files to ``commits.jsonl`` instead of rewriting the manifest, and a folder
whose last commits are only in the log (or not even there: a crash after the rename) reads and resumes the same.

Uncompacted folders are made by hand from a finished run: the last files' entries moved from the manifest to the
log (what a run killed before its final compaction leaves), a torn last line, or no line at all (a kill between a
shard's rename and its log append)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tgbatch.cli import _register, app
from tgbatch.job.fingerprint import Fingerprint
from tgbatch.output import commitlog
from tgbatch.output.layout import OutputDir
from tgbatch.output.manifest import Manifest
from tgbatch.output.shards import CommittedFile

from .runner_util import job_dict, prompts, write_job, write_jsonl

_register()
runner = CliRunner()
ROWS = 120


@pytest.fixture
def job(tmp_path: Path) -> Path:
    data = write_jsonl(tmp_path / "prompts.jsonl", prompts(ROWS))
    spec = job_dict(data, output={"rows_per_shard": 10, "dir": str(tmp_path / "out")})
    return write_job(tmp_path / "job.yaml", spec)


@pytest.fixture
def finished(job: Path, tmp_path: Path) -> Path:
    """A finished run's folder: 12 data shards of 10 rows."""
    result = runner.invoke(app, ["run", str(job)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    assert not (out / "commits.jsonl").exists()  # compacted at the end of the run
    manifest = _manifest(out)
    assert manifest["complete"] and len(manifest["files"]) == 12 and manifest["rows_written"] == ROWS
    return out


def _manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / "manifest.json").read_text())


def _uncompact(out: Path, last: int, *, log_lines: int | None = None, torn: bool = False) -> list[dict[str, Any]]:
    """Move the manifest's ``last`` file entries out of it, as a run killed before compacting leaves it: the first
    ``log_lines`` of them (all by default) as lines of the log, then, with ``torn``, half of the next line."""
    manifest = _manifest(out)
    moved = manifest["files"][-last:]
    kept = manifest["files"][:-last]
    manifest.update(
        files=kept,
        complete=False,
        rows_written=sum(f["rows"] for f in kept if f["file"].startswith("data/")),
    )
    (out / "manifest.json").write_text(json.dumps(manifest))
    n = last if log_lines is None else log_lines
    text = "".join(json.dumps(entry) + "\n" for entry in moved[:n])
    if torn:
        text += json.dumps(moved[n])[:20]
    (out / "commits.jsonl").write_text(text)
    return moved


def _status(out: Path) -> dict[str, Any]:
    result = runner.invoke(app, ["status", str(out), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _ids(out: Path) -> list[str]:
    ids: list[str] = []
    for path in sorted((out / "data").glob("part-*.parquet")):
        ids += pq.read_table(path, columns=["row_id"]).column("row_id").to_pylist()
    return ids


def _resume_sends_nothing(job: Path, out: Path) -> None:
    again = runner.invoke(app, ["run", str(job)])
    assert again.exit_code == 0, again.output
    assert "0 rows generated" in again.output and f"{ROWS} rows were already written" in again.output
    ids = _ids(out)
    assert len(ids) == ROWS and len(set(ids)) == ROWS  # every row exactly once
    assert not (out / "commits.jsonl").exists()
    manifest = _manifest(out)
    assert manifest["complete"] and manifest["rows_written"] == ROWS and len(manifest["files"]) == 12


def test_status_validate_and_resume_read_the_log_of_an_uncompacted_folder(finished: Path, job: Path) -> None:
    before = _status(finished)
    tokens = {f["file"]: f["tokens"] for f in _manifest(finished)["files"]}
    _uncompact(finished, 5)
    after = _status(finished)
    for key in ("done", "failed", "generated_tokens", "data_files"):
        assert after[key] == before[key], key
    assert after["shards"][0]["rows_written"] == ROWS  # the manifest says 70; its log the other 50

    said = runner.invoke(app, ["validate", str(job)])
    assert said.exit_code == 0, said.output
    assert f"resumes: {ROWS} done, 0 failed, 0 to go" in said.output

    _resume_sends_nothing(job, finished)
    # the log's tokens went into the compacted manifest: status still sums the folder without opening files
    assert {f["file"]: f.get("tokens") for f in _manifest(finished)["files"]} == tokens


def test_a_torn_last_line_is_ignored_and_its_file_read_from_disk(finished: Path, job: Path) -> None:
    before = _status(finished)
    moved = _uncompact(finished, 3, log_lines=2, torn=True)
    state = OutputDir(finished).manifests()[0][1]
    assert [f["file"] for f in state["files"]][-2:] == [f["file"] for f in moved[:2]]  # the torn one is not listed
    assert state["rows_written"] == ROWS - 10
    # the files on disk are the truth: the torn line's file counts, its rows and tokens read from it
    after = _status(finished)
    assert (after["done"], after["generated_tokens"]) == (before["done"], before["generated_tokens"])
    _resume_sends_nothing(job, finished)


def test_a_kill_between_a_shards_rename_and_its_log_line_resumes_exactly_once(finished: Path, job: Path) -> None:
    # the last shard was renamed into place, then the process died before appending its line: no line at all
    moved = _uncompact(finished, 1, log_lines=0)
    assert (finished / moved[0]["file"]).exists() and (finished / "commits.jsonl").read_text() == ""
    said = runner.invoke(app, ["validate", str(job)])
    assert said.exit_code == 0 and f"resumes: {ROWS - 10} done, 0 failed, 10 to go" in said.output
    _resume_sends_nothing(job, finished)
    entry = next(f for f in _manifest(finished)["files"] if f["file"] == moved[0]["file"])
    assert entry["rows"] == 10  # from the file's footer


def test_a_run_after_a_torn_append_loses_no_later_record(finished: Path, job: Path, tmp_path: Path) -> None:
    # the torn line is cut off before the next append: that record and the next one both stay readable
    _uncompact(finished, 2, log_lines=1, torn=True)
    log = commitlog.CommitLog(OutputDir(finished).store, "manifest.json")
    log.append([CommittedFile("data/part-0of1-000099.parquet", 3, 7)])
    log.close()
    names = [r["file"] for r in commitlog.read_log(finished / "commits.jsonl")]
    assert names[-1] == "data/part-0of1-000099.parquet" and len(names) == 2


def test_compaction_keeps_the_log_no_longer_than_the_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commitlog, "MIN_COMPACT", 4)
    out = OutputDir(tmp_path / "out")
    out.create()
    manifest = Manifest(out, job="t", fingerprint=Fingerprint("f" * 32, {}), samples=1, limit=None)
    manifest.write(complete=False, rows_selected=None)
    for seq in range(40):
        manifest.commit(
            [CommittedFile(f"data/part-0of1-{seq:06d}.parquet", 10, 5)], rows_selected=None, input_rows=None
        )
        listed = len(_manifest(out.root)["files"])
        logged = len(commitlog.read_log(out.root / "commits.jsonl"))
        assert listed + logged == seq + 1  # every commit is in exactly one of them
        assert logged < max(4, listed + 1)  # and the log never grows past the manifest's list
        state = out.manifests()[0][1]
        assert state["rows_written"] == 10 * (seq + 1) and len(state["files"]) == seq + 1
    # the input's row count, once known, is written at the next commit (status's total for a stopped run)
    manifest.commit([CommittedFile("data/part-0of1-000040.parquet", 10, 5)], rows_selected=None, input_rows=500)
    assert _manifest(out.root)["input_rows"] == 500 and not (out.root / "commits.jsonl").exists()
    manifest.write(complete=True, rows_selected=410, input_rows=500)
    assert len(_manifest(out.root)["files"]) == 41 and not (out.root / "commits.jsonl").exists()


def test_fresh_removes_the_log(finished: Path, job: Path) -> None:
    _uncompact(finished, 2)
    result = runner.invoke(app, ["run", str(job), "--fresh"])
    assert result.exit_code == 0 and f"{ROWS} rows generated" in result.output, result.output
    assert len(_ids(finished)) == ROWS and not (finished / "commits.jsonl").exists()
