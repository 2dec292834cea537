"""The batch job runner's parts: the job spec, the input reader, the prompt template, seeds, the retry policy,
the Parquet writer, the resume checkpoint and the fingerprint. ``tgbatch.pipeline`` wires them together."""

from tgbatch.job.spec import JobSpec, LoadedJob, load_job

__all__ = ["JobSpec", "LoadedJob", "load_job"]
