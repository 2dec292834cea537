"""What to run, validated, with no network: the job spec, its loading, the prompt template, seed policies and
the fingerprint that ties an output folder to one job.

The names below load on first use: light modules of this package (``location``, ``fingerprint``) are imported by
commands that must start fast (``tgbatch status``), and must not pull in pydantic and Jinja2 with them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tgbatch.job.load import load_job
    from tgbatch.job.spec import JobSpec, LoadedJob

__all__ = ["JobSpec", "LoadedJob", "load_job"]


def __getattr__(name: str) -> Any:
    if name == "load_job":
        from tgbatch.job.load import load_job

        return load_job
    if name in ("JobSpec", "LoadedJob"):
        from tgbatch.job import spec

        return getattr(spec, name)
    raise AttributeError(f"module 'tgbatch.job' has no attribute {name!r}")
