"""One shard of a job on one event loop: the plan, the endpoint pool over backends, the pipeline's stages, and
the run's control, events and result."""

from tgbatch.runner.connect import make_backend, make_client, make_pool, read_token
from tgbatch.runner.control import RunControl, RunOptions, RunResult
from tgbatch.runner.events import ProgressSink
from tgbatch.runner.pipeline import run_job
from tgbatch.runner.plan import Prepared, prepare

__all__ = [
    "Prepared",
    "ProgressSink",
    "RunControl",
    "RunOptions",
    "RunResult",
    "make_backend",
    "make_client",
    "make_pool",
    "prepare",
    "read_token",
    "run_job",
]
