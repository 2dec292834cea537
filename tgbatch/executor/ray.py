"""The N shards of one job as Ray tasks, on an existing cluster (``--ray-address``) or a local one.

Each task is a normal shard run (``run_local`` on shard I of N, in the worker), so the ``--shard I/N``
contract holds unchanged: per-shard manifests and locks in one output folder, and a task that Ray runs again
(its worker died, or it raised) resumes its shard, skipping the rows already committed. The job file, the
dataset and the output folder must be at paths every node sees (a shared folder). The driver shows the
shards as one: it polls their ``progress-<I>of<N>.json`` into the CLI's progress display, and merges their
results into one ``RunResult`` (one summary, one exit code).

Ray is an optional extra (``pip install 'tgbatch[ray]'``): this module is imported only for ``--executor
ray``, and it imports ``ray`` only when a run starts.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any

from tgbatch.errors import EndpointError, JobError, TGBatchError
from tgbatch.job.location import Location
from tgbatch.metrics.merge import merge_snapshots
from tgbatch.output.progress import read_stats_files
from tgbatch.runner import ProgressSink, RunOptions, RunResult

INSTALL_HINT = "pip install 'tgbatch[ray]'  (or: pip install 'ray>=2.9')"
#: how often Ray runs a shard's task again after its worker died or it raised (each run resumes the shard)
MAX_RETRIES = 3
POLL_S = 1.0
CANCEL_WAIT_S = 30.0


@dataclass(frozen=True, slots=True)
class ShardJob:
    """What a task needs to run its shard, sent to the workers: the job file, the ``--set`` overrides (with
    ``output.dir`` absolute, so a worker's working folder does not matter) and the run flags."""

    job_path: str
    overrides: tuple[str, ...]
    options: RunOptions


@dataclass(slots=True)
class ShardOutcome:
    """A task's answer: the shard's result, or the job error that stopped it (not retried: it would recur)."""

    index: int
    result: RunResult | None = None
    error: JobError | None = None


def import_ray() -> ModuleType:
    """The ``ray`` module, or a ``JobError`` saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise JobError(f"--executor ray needs Ray, which is not installed here ({exc}): {INSTALL_HINT}") from None
    return ray


def run_shard(job: ShardJob, index: int, count: int) -> ShardOutcome:
    """The task: shard ``index`` of ``count``, the way ``tgbatch run JOB --shard I/N`` runs it. A job error
    (bad spec, refused token, unwritable output) is returned; anything else is raised, so Ray runs the task
    again and the shard resumes."""
    from tgbatch.executor.local import run_local
    from tgbatch.job.load import load_job
    from tgbatch.runner import prepare

    try:
        prepared = prepare(load_job(job.job_path, list(job.overrides)))
        result = run_local(prepared, replace(job.options, shard=(index, count)))
    except TGBatchError as exc:
        if isinstance(exc, JobError):
            return ShardOutcome(index, error=exc)
        if exc.fatal:
            return ShardOutcome(index, error=EndpointError(f"{type(exc).__name__}: {exc}"))
        raise
    return ShardOutcome(index, result=result)


def run_ray(
    job: ShardJob,
    shards: int,
    output_dir: Location,
    *,
    address: str | None = None,
    progress: ProgressSink | None = None,
    max_retries: int = MAX_RETRIES,
    poll_s: float = POLL_S,
) -> RunResult:
    """Run the job's ``shards`` shards as Ray tasks and wait for all of them. Connects to the cluster at
    ``address`` (``ray.init(address=...)``), or starts a local one when it is ``None`` (unless this process is
    connected already). Raises the first shard's ``JobError``; a shard that failed ``max_retries + 1`` times
    raises ``RuntimeError`` (run the command again: finished shards are skipped, the others resume)."""
    ray = import_ray()
    _connect(ray, address)
    task = ray.remote(max_retries=max_retries, retry_exceptions=True)(run_shard)
    refs = {task.remote(job, index, shards): index for index in range(shards)}
    watcher = ShardProgress(output_dir, shards, progress)
    started = time.monotonic()
    outcomes: list[ShardOutcome] = []
    failures: list[tuple[int, BaseException]] = []
    pending = list(refs)
    try:
        with _sigterm_as_interrupt():
            while pending:
                ready, pending = ray.wait(pending, num_returns=len(pending), timeout=poll_s)
                for ref in ready:
                    try:
                        outcomes.append(ray.get(ref))
                    except Exception as exc:  # Ray's task or worker error, after the retries
                        failures.append((refs[ref], exc))
                watcher.poll()
    except KeyboardInterrupt:
        # the tasks stop where they are (what they committed stays; the rest is redone by the next run), and
        # are waited for, so the same command run right after finds the shards' locks free
        for ref in pending:
            ray.cancel(ref)
        if pending:
            ray.wait(pending, num_returns=len(pending), timeout=CANCEL_WAIT_S)
        raise
    finally:
        watcher.close()
    return _outcome(outcomes, failures, shards, output_dir, time.monotonic() - started, max_retries)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the driver as Ctrl-C does (cancel the tasks, exit 130), as it stops a local run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _connect(ray: ModuleType, address: str | None) -> None:
    if ray.is_initialized():
        return
    try:
        if address is None:
            ray.init(include_dashboard=False)
        else:
            ray.init(address=address)
    except (ConnectionError, TimeoutError, ValueError) as exc:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray cluster"
        raise JobError(
            f"cannot connect to {where}: {exc}; check --ray-address (e.g. ray://head:10001, or auto on a node "
            "of the cluster)"
        ) from None


def _outcome(
    outcomes: list[ShardOutcome],
    failures: list[tuple[int, BaseException]],
    shards: int,
    output_dir: Location,
    elapsed_s: float,
    max_retries: int,
) -> RunResult:
    errors = sorted((o for o in outcomes if o.error is not None), key=lambda o: o.index)
    if errors:
        first = errors[0]
        assert first.error is not None
        raise type(first.error)(f"shard {first.index}/{shards}: {first.error}")
    if failures:
        index, exc = min(failures, key=lambda f: f[0])
        raise RuntimeError(
            f"shard {index}/{shards} failed {max_retries + 1} times (the others: {len(failures) - 1}); run the same "
            f"command again to resume: {exc}"
        ) from exc
    results = [o.result for o in sorted(outcomes, key=lambda o: o.index) if o.result is not None]
    return merge_results(results, output_dir, elapsed_s)


def merge_results(results: Sequence[RunResult], output_dir: Location, elapsed_s: float) -> RunResult:
    """The shards' results as one run's: counts summed, stopped if any stopped, complete if all are; the
    summary merged, with the overall rates over the driver's wall time (the shards may not all overlap)."""
    stopped = next((r for r in results if r.interrupted), None)
    selected = [r.rows_selected for r in results]
    merged = RunResult(
        output_dir=output_dir,
        ok=sum(r.ok for r in results),
        failed=sum(r.failed for r in results),
        already_done=sum(r.already_done for r in results),
        already_failed=sum(r.already_failed for r in results),
        retries=sum(r.retries for r in results),
        generated_tokens=sum(r.generated_tokens for r in results),
        elapsed_s=elapsed_s,
        interrupted=stopped is not None,
        stop_kind=stopped.stop_kind if stopped else None,
        stop_reason=stopped.stop_reason if stopped else None,
        complete=bool(results) and all(r.complete for r in results),
        rows_selected=None if None in selected else sum(s or 0 for s in selected),
        files=[f for r in results for f in r.files],
    )
    summaries = [r.summary for r in results if r.summary is not None]
    if summaries and len(summaries) == len(results):
        summary = merge_snapshots(summaries)
        summary["elapsed_s"] = round(elapsed_s, 3)
        if elapsed_s > 0:
            summary["rows_per_s_overall"] = round((merged.ok + merged.failed) / elapsed_s, 3)
            summary["tokens_per_s_overall"] = round(merged.generated_tokens / elapsed_s, 1)
        merged.summary = summary
    return merged


@dataclass
class ShardProgress:
    """Feeds a ``ProgressSink`` from the shards' progress files: each task attempt (shard, pid, start) counts
    its own rows, so the display only moves forward when Ray runs a task again. Files older than the launch
    (an earlier run's) are ignored."""

    root: Location
    count: int
    sink: ProgressSink | None
    launched_unix: float = field(default_factory=time.time)
    attempts: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)
    shown_rows: int = 0
    shown_failed: int = 0
    shown_tokens: int = 0
    total: int | None = None

    def __post_init__(self) -> None:
        if self.sink is not None:
            self.sink.start(total=None, already_done=0, already_failed=0)

    def poll(self) -> None:
        if self.sink is None:
            return
        for _, snap in read_stats_files(self.root, "progress"):
            shard = str(snap.get("shard") or "0/1")
            if shard.partition("/")[2] != str(self.count) or float(snap.get("updated_unix") or 0) < self.launched_unix:
                continue
            self.attempts[(shard, snap.get("pid"), snap.get("hostname"), snap.get("started_at"))] = snap
        self._feed()

    def _feed(self) -> None:
        assert self.sink is not None
        snaps = self.attempts.values()
        failed = sum(int(s.get("failed_this_run") or 0) for s in snaps)
        rows = sum(int(s.get("done_this_run") or 0) for s in snaps) + failed
        tokens = sum(int(s.get("generated_tokens") or 0) for s in snaps)
        new_failed = max(0, failed - self.shown_failed)
        for i in range(max(0, rows - self.shown_rows)):
            self.sink.advance(ok=i >= new_failed, tokens=max(0, tokens - self.shown_tokens) if i == 0 else 0)
        self.shown_rows, self.shown_failed = max(self.shown_rows, rows), max(self.shown_failed, failed)
        self.shown_tokens = max(self.shown_tokens, tokens)
        total = self._total()
        if total is not None and total != self.total:
            self.total = total
            self.sink.set_total(total)

    def _total(self) -> int | None:
        """Rows this launch has to do: each shard's latest attempt's total, plus what its earlier attempts did."""
        latest: dict[str, dict[str, Any]] = {}
        earlier = 0
        for snap in sorted(self.attempts.values(), key=lambda s: str(s.get("started_at"))):
            shard = str(snap.get("shard"))
            if shard in latest:
                earlier += int(latest[shard].get("done_this_run") or 0) + int(latest[shard].get("failed_this_run") or 0)
            latest[shard] = snap
        if len(latest) < self.count or any(s.get("total") is None for s in latest.values()):
            return None
        return earlier + sum(int(s["total"]) for s in latest.values())

    def close(self) -> None:
        if self.sink is not None:
            self.poll()
            self.sink.close()
