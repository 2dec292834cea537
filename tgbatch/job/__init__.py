"""What to run, validated, with no network: the job spec, its loading, the prompt template, seed policies and
the fingerprint that ties an output folder to one job."""

from tgbatch.job.load import load_job
from tgbatch.job.spec import JobSpec, LoadedJob

__all__ = ["JobSpec", "LoadedJob", "load_job"]
