"""The package root is the public API: what a script or a notebook imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import tgbatch
from tgbatch import errors

from .runner_util import job_dict, prompts, read_rows, write_job, write_jsonl

EXPECTED = {
    "__version__",
    "load_job",
    "run_job",
    "JobSpec",
    "LoadedJob",
    "RunOptions",
    "RunResult",
    "DatasetError",
    "EndpointError",
    "JobError",
    "OutputError",
    "ResumeError",
    "RowError",
    "ServerError",
    "SpecError",
    "TGBatchError",
    "TemplateError",
}


def test_all_lists_the_public_names_and_each_resolves() -> None:
    assert set(tgbatch.__all__) == EXPECTED
    for name in tgbatch.__all__:
        assert getattr(tgbatch, name) is not None
    assert tgbatch.SpecError is errors.SpecError and issubclass(tgbatch.SpecError, tgbatch.TGBatchError)
    with pytest.raises(AttributeError):
        tgbatch.no_such_name  # noqa: B018


def test_import_is_light() -> None:
    """``import tgbatch`` loads no HTTP stack, Arrow or simulator: names come on first use."""
    code = "import sys, tgbatch; print(sorted(m for m in ('aiohttp', 'httpx', 'pyarrow', 'tgbatch.sim', 'jinja2') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_status_loads_no_spec_machinery() -> None:
    """``tgbatch status`` must start fast: it reads manifests, and needs neither the spec's models nor Jinja2."""
    code = (
        "import sys, tgbatch.status; "
        "print(sorted(m for m in ('tgbatch.job.spec', 'jinja2', 'pyarrow', 'aiohttp') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_run_job_from_python(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "p.jsonl", prompts(25))
    job = write_job(tmp_path / "job.yaml", job_dict(data, output={"dir": str(tmp_path / "out")}))
    result = tgbatch.run_job(job)
    assert (result.ok, result.failed, result.complete) == (25, 0, True)
    assert len(read_rows(tmp_path / "out" / "data")) == 25
    again = tgbatch.run_job(tgbatch.load_job(job))
    assert (again.ok, again.already_done) == (0, 25)


@pytest.mark.anyio
async def test_run_job_inside_a_running_event_loop(tmp_path: Path) -> None:
    """A notebook cell runs inside an event loop: run_job must still work there."""
    data = write_jsonl(tmp_path / "p.jsonl", prompts(5))
    job = write_job(tmp_path / "job.yaml", job_dict(data, output={"dir": str(tmp_path / "out")}))
    result = tgbatch.run_job(job, overrides=["samples=2"])
    assert result.ok == 10


def test_run_job_errors_are_job_errors(tmp_path: Path) -> None:
    with pytest.raises(tgbatch.SpecError, match="job file not found"):
        tgbatch.run_job(tmp_path / "missing.yaml")
