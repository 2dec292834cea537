"""``tgbatch.run_job``: a whole job (or one shard of it) from a script or a notebook, as ``tgbatch run`` runs
it, minus the printing and the exit code."""

from __future__ import annotations

import os
from pathlib import Path

from tgbatch.executor.local import run_local
from tgbatch.job.load import load_job
from tgbatch.job.spec import LoadedJob
from tgbatch.runner import ProgressSink, RunOptions, RunResult, prepare


def run_job(
    job: LoadedJob | str | os.PathLike[str],
    *,
    overrides: list[str] | None = None,
    options: RunOptions | None = None,
    progress: ProgressSink | None = None,
    token: str | None = None,
) -> RunResult:
    """Run (or resume) ``job``: a ``load_job`` result or a job file's path (with ``overrides`` such as
    ``["output.dir=out", "samples=4"]``). ``options``: shard, limit, ``fresh``, ``retry_failed``, budgets.
    ``token`` defaults to the environment variable named by ``endpoint.token_env``.

    Returns a ``RunResult`` (``ok``, ``failed``, ``output_dir``, ``complete``, ``summary``); raises
    ``SpecError``, ``DatasetError``, ``ResumeError``, ``EndpointError`` or ``OutputError`` (all
    ``tgbatch.JobError``) when the job cannot run. Works inside a running event loop (a notebook) too."""
    if not isinstance(job, LoadedJob):
        job = load_job(Path(job), overrides)
    elif overrides:
        raise ValueError("overrides apply to a job file; load_job(path, overrides) takes them for a LoadedJob")
    return run_local(prepare(job), options, progress=progress, token=token)
