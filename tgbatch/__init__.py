"""tgbatch: run large prompt datasets through text-generation servers without losing a row.

From Python (a script or a notebook)::

    import tgbatch

    job = tgbatch.load_job("jobs/quickstart.yaml", overrides=["samples=2"])
    result = tgbatch.run_job(job)               # or tgbatch.run_job("jobs/quickstart.yaml")
    print(result.ok, result.failed, result.output_dir)

Errors are ``tgbatch.TGBatchError`` subclasses (``tgbatch.errors``). The TGI client is ``tgbatch.client``.
Names are imported on first use, so ``import tgbatch`` (and the CLI's start-up) stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tgbatch._version import __version__

if TYPE_CHECKING:
    from tgbatch.api import run_job
    from tgbatch.errors import (
        DatasetError,
        EndpointError,
        JobError,
        OutputError,
        ResumeError,
        RowError,
        ServerError,
        SpecError,
        TemplateError,
        TGBatchError,
    )
    from tgbatch.job.load import load_job
    from tgbatch.job.spec import JobSpec, LoadedJob
    from tgbatch.runner.control import RunOptions, RunResult

_LAZY = {
    "load_job": "tgbatch.job.load",
    "run_job": "tgbatch.api",
    "JobSpec": "tgbatch.job.spec",
    "LoadedJob": "tgbatch.job.spec",
    "RunOptions": "tgbatch.runner.control",
    "RunResult": "tgbatch.runner.control",
    **{
        name: "tgbatch.errors"
        for name in (
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
        )
    },
}

__all__ = [
    "DatasetError",
    "EndpointError",
    "JobError",
    "JobSpec",
    "LoadedJob",
    "OutputError",
    "ResumeError",
    "RowError",
    "RunOptions",
    "RunResult",
    "ServerError",
    "SpecError",
    "TGBatchError",
    "TemplateError",
    "__version__",
    "load_job",
    "run_job",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tgbatch' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
