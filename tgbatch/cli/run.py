"""``tgbatch run JOB``: run (or resume) a batch job."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tgbatch.cli import app
from tgbatch.cli._errors import (
    EXIT_BUDGET,
    EXIT_FAILED_ROWS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    exit_codes,
    fail,
    parse_duration,
    parse_shard,
)
from tgbatch.cli._format import format_summary
from tgbatch.job.location import Location

if TYPE_CHECKING:
    from tgbatch.runner import RunOptions, RunResult
    from tgbatch.score.spec import ScoreSpec

#: below Slurm's default KillWait and Kubernetes' default grace period (both 30 s): the drain must end, and the
#: run commit and exit 130, before SIGKILL (equal to RunOptions.drain_s, which the CLI must not import at start)
DEFAULT_DRAIN_S = 20.0


@app.command("run")
def run_command(
    job: Annotated[Path, typer.Argument(help="The job file (YAML).", show_default=False)],
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Output folder or s3:// URL (overrides output.dir).")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a spec value: KEY.PATH=VALUE (VALUE read as YAML). Repeatable."),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option("--shard", help="Run shard I of N (I/N, 0-based): a stable 1/N of the rows, by row id hash."),
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=0, help="Use only the first N input rows.")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Delete this job's earlier output and start over.")] = False,
    retry_failed: Annotated[
        bool,
        typer.Option("--retry-failed", help="Retry the rows earlier runs recorded in errors/ (moved to retired/)."),
    ] = False,
    drain_s: Annotated[
        float,
        typer.Option(
            "--drain-s",
            "--grace",
            min=0,
            help="On Ctrl-C/SIGTERM or a budget: seconds to let in-flight requests finish (a second signal stops "
            "at once). The default stays below the 30 s after which Slurm (KillWait) and Kubernetes "
            "(terminationGracePeriodSeconds) send SIGKILL, leaving time to commit and exit 130; raise it only "
            "with those.",
        ),
    ] = DEFAULT_DRAIN_S,
    max_runtime: Annotated[
        str | None,
        typer.Option(
            "--max-runtime",
            help="Stop (resumably, exit 4) after this long: seconds, or a duration such as 90m, 8h, 1d.",
        ),
    ] = None,
    max_new_tokens_total: Annotated[
        int | None,
        typer.Option(
            "--max-new-tokens-total", min=1, help="Stop (resumably, exit 4) once this run has generated N tokens."
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every committed shard.")] = False,
    executor: Annotated[
        str,
        typer.Option("--executor", help="Where the shards run: local (this process) or ray (Ray tasks, see --shards)."),
    ] = "local",
    shards: Annotated[
        int | None,
        typer.Option("--shards", min=1, help="With --executor ray: run the job as N shards, one Ray task each."),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option("--ray-address", help="With --executor ray: the cluster to use (default: start a local one)."),
    ] = None,
) -> None:
    """Run a job: read the dataset, render each row's prompt, generate, write Parquet shards.

    Re-running the same command resumes: rows already written are skipped by id. Exit codes: 0 every row
    succeeded, 3 finished with failed rows (see DIR/errors), 4 stopped at --max-runtime or
    --max-new-tokens-total (run it again to resume), 2 bad spec, input, output folder or token (nothing sent,
    or stopped at the first 401/403/404), 130 interrupted by Ctrl-C or SIGTERM (run it again to resume), 1
    internal error.
    """
    # the machinery is imported here, when the command runs: `tgbatch --help` must start in a blink
    from tgbatch.cli._progress import CliProgress, log, setup_logging
    from tgbatch.executor.local import run_local, tune_for_batch
    from tgbatch.job.load import load_job
    from tgbatch.runner import RunOptions, prepare

    setup_logging(verbose)
    shard_ix = parse_shard(shard)
    ray_shards = _check_executor(executor, shards, shard, ray_address, fresh)
    if fresh and shard_ix[1] > 1:
        fail(
            "--fresh cannot be combined with --shard: every shard shares the output folder, and one shard's "
            "--fresh would delete the others' results. Delete the folder once before starting the shards"
        )
    overrides = list(set_ or [])
    if output is not None:
        overrides.append(f"output.dir={output}")
    with exit_codes():
        loaded = load_job(job, overrides)
        for warning in loaded.warnings:
            log.warning(warning)
        prepared = prepare(loaded)
        for note in prepared.notes:
            log.info(note)
        options = RunOptions(
            shard=shard_ix,
            limit=limit,
            fresh=fresh,
            retry_failed=retry_failed,
            drain_s=drain_s,
            max_runtime_s=parse_duration(max_runtime, "--max-runtime") if max_runtime is not None else None,
            max_new_tokens_total=max_new_tokens_total,
        )
        log.info(
            "job %s: %s -> %s%s",
            loaded.name,
            prepared.source.identity.get("path"),
            loaded.output_dir,
            f" (shard {shard_ix[0]}/{shard_ix[1]})" if shard_ix[1] > 1 else "",
        )
        if ray_shards is not None:
            result = _run_ray(job, overrides, loaded.output_dir, options, ray_shards, ray_address)
            shard_ix = (0, 1) if result.complete else (0, ray_shards)  # all shards done: score the whole folder
        else:
            tune_for_batch()
            result = run_local(prepared, options, progress=CliProgress(), handle_signals=True)
        # everything is committed: a late signal must not turn this run's exit code into a kill
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
        code = _report(result, loaded.output_dir)
        if loaded.spec.score is not None and not result.interrupted:
            _score(loaded.output_dir, loaded.spec.score, shard_ix)
    raise typer.Exit(code)


def _check_executor(
    executor: str, shards: int | None, shard: str | None, ray_address: str | None, fresh: bool
) -> int | None:
    """The shard count of a Ray run (``None``: a local run), after refusing the flags that do not fit."""
    if executor not in ("local", "ray"):
        fail(f"--executor {executor!r}: expected local or ray")
    if executor == "local":
        if shards is not None:
            fail("--shards runs the shards as Ray tasks: add --executor ray (or start each shard with --shard I/N)")
        if ray_address is not None:
            fail("--ray-address is for --executor ray: add --executor ray")
        return None
    if shard is not None:
        fail("--shard cannot be combined with --executor ray, which starts every shard itself: use --shards N")
    if fresh:
        fail("--fresh cannot be combined with --executor ray: delete the output folder once, then run")
    with exit_codes():
        from tgbatch.executor.ray import import_ray

        import_ray()  # not installed: the pip command, before the job is even read
    return shards or 1


def _run_ray(
    job: Path, overrides: list[str], out: Location, options: RunOptions, shards: int, address: str | None
) -> RunResult:
    from tgbatch.cli._progress import CliProgress
    from tgbatch.executor.ray import ShardJob, run_ray

    # the workers may run elsewhere: the job file and the output folder by absolute path
    spec = ShardJob(str(job.absolute()), (*overrides, f"output.dir={out}"), options)
    return run_ray(spec, shards, out, address=address, progress=CliProgress())


def _score(out: Location, spec: ScoreSpec, shard: tuple[int, int]) -> None:
    """The job's ``score:`` section, over every row written so far (after a resume: all of them). A scoring
    problem does not undo the run: it is said, with the command that scores again once it is fixed."""
    from tgbatch.cli.score import format_scores
    from tgbatch.errors import TGBatchError
    from tgbatch.score.folder import score_folder

    if shard[1] > 1:
        typer.echo(f"scores: when every shard is done, run: tgbatch score {_shown(out)}")
        return
    try:
        summary = score_folder(out, spec)
    except TGBatchError as exc:
        typer.echo(f"scoring failed: {exc}; fix the score section and run: tgbatch score {_shown(out)}")
        return
    typer.echo("scores:")
    for line in format_scores(summary):
        typer.echo(f"  {line}")


def _report(result: RunResult, out: Location) -> int:
    shown = _shown(out)
    if result.summary is not None:
        typer.echo(format_summary(result.summary))
    else:
        rate = result.ok / result.elapsed_s if result.elapsed_s > 0 else 0.0
        before = f"; {result.already_done} rows were already written" if result.already_done else ""
        typer.echo(
            f"{'interrupted' if result.interrupted else 'done'}: {result.ok} rows generated, {result.failed} "
            f"failed, {result.retries} retries, {result.generated_tokens} tokens in {result.elapsed_s:.1f}s "
            f"({rate:.1f} rows/s){before}"
        )
    typer.echo(f"output: {shown}/data/*.parquet")
    if result.failed_total:
        typer.echo(f"failed rows ({result.failed_total}): {shown}/errors/*.parquet (see error_type and message)")
    typer.echo("load it with:")
    typer.echo("  from datasets import load_dataset")
    typer.echo(f'  ds = load_dataset("parquet", data_files="{shown}/data/*.parquet", split="train")')
    typer.echo(f"progress: tgbatch status {shown}")
    if result.interrupted:
        typer.echo(f"stopped ({result.stop_reason}): run the same command again to resume")
        return EXIT_BUDGET if result.stop_kind == "budget" else EXIT_INTERRUPTED
    return EXIT_FAILED_ROWS if result.failed_total else EXIT_OK


def _shown(path: Location) -> str:
    if isinstance(path, str):
        return path
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
