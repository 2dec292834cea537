"""``tgbatch validate JOB``: check a job without running it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tgbatch.cli import app
from tgbatch.cli._errors import exit_codes

if TYPE_CHECKING:
    from tgbatch.runner import Prepared


@app.command("validate")
def validate_command(
    job: Annotated[Path, typer.Argument(help="The job file (YAML).", show_default=False)],
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Output folder or s3:// URL (overrides output.dir).")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a spec value: KEY.PATH=VALUE. Repeatable.")
    ] = None,
    rows: Annotated[int, typer.Option("--rows", min=1, max=100, help="How many rendered prompts to show.")] = 3,
    offline: Annotated[
        bool, typer.Option("--offline", help="Check only the spec, the data and the output folder: no endpoint.")
    ] = False,
) -> None:
    """Check a job: load the spec, read and render the first rows and show them, check the output folder as
    `tgbatch run` would (new, or resumable by this very job), and ask the endpoint's /info whether it accepts
    the parameters. Sends no generate request.

    Exit code 0 when the job is valid, 2 otherwise: the message names the field, what changed since the output
    folder was written, or the endpoint that cannot be reached (--offline checks without it).
    """
    # the machinery is imported here, when the command runs: `tgbatch --help` must start in a blink
    import anyio

    from tgbatch.input.rows import check_ids
    from tgbatch.job.load import load_job
    from tgbatch.runner import prepare

    overrides = list(set_ or [])
    if output is not None:
        overrides.append(f"output.dir={output}")
    with exit_codes():
        loaded = load_job(job, overrides)
        prepared = prepare(loaded, preview_rows=rows)
        check_ids(prepared.source, loaded.spec.dataset.id_column, loaded.spec.dataset.limit)
        output_state = _output_state(prepared)
        info_lines = ["server:      not asked (--offline)"] if offline else anyio.run(_check_endpoint, prepared)
    spec = loaded.spec
    typer.echo(f"job:         {loaded.name}")
    typer.echo(f"dataset:     {prepared.source.identity.get('path')} ({prepared.source.kind})")
    typer.echo(f"columns:     {', '.join(prepared.source.schema.names)}")
    typer.echo(f"row id:      {spec.dataset.id_column or 'the row position'}")
    typer.echo(f"carried:     {', '.join(dst for _, dst in prepared.carried) or '(none)'}")
    if spec.api != "generate":
        model = spec.endpoint.model or "the server's first model"
        typer.echo(f"api:         {spec.api} (model: {model})")
    typer.echo(f"parameters:  {_parameters(prepared)}")
    typer.echo(
        f"seed:        {spec.seed_policy}"
        + (f" (value {spec.seed.value})" if spec.seed_policy in ("fixed", "per_row") else "")
    )
    typer.echo(f"samples:     {spec.samples}")
    typer.echo(
        f"endpoint:    {prepared.job.resolved_dict()['endpoint']['url']} (concurrency {spec.endpoint.concurrency})"
    )
    typer.echo(f"token:       {_token_state(spec.endpoint.token_env)}")
    typer.echo(f"output:      {loaded.output_dir} ({output_state})")
    typer.echo(f"fingerprint: {prepared.fingerprint.digest}")
    for note in prepared.notes + loaded.warnings:
        typer.echo(f"note:        {note}")
    for line in info_lines:
        typer.echo(line)
    for row_id, prompt in prepared.preview:
        typer.echo(f"--- row {row_id} ---")
        typer.echo(prompt)
    typer.echo("---\nvalid")


def _parameters(prepared: Prepared) -> dict[str, object]:
    from tgbatch.backends.tgi.rules import Parameters

    params = prepared.job.spec.parameters
    return params.to_wire() if isinstance(params, Parameters) else params.model_dump(mode="json", exclude_unset=True)


def _token_state(token_env: str) -> str:
    """Which token a run would send (never the token itself)."""
    import os

    if os.environ.get(token_env):
        return f"from {token_env} (set; sent as a bearer token)"
    return f"{token_env} is not set: no token is sent (set endpoint.token_env if the token is in another variable)"


def _output_state(prepared: Prepared) -> str:
    """The output folder as ``tgbatch run`` would find it: the very same resume check (a folder holding another
    job's output raises ``ResumeError``, naming what changed)."""
    from tgbatch.output.layout import OutputDir
    from tgbatch.output.manifest import check_resume

    found = check_resume(OutputDir(prepared.job.output_dir), prepared.fingerprint)
    if found.new:
        return "new"
    spec = prepared.job.spec
    rows = prepared.source.count_rows()
    if spec.dataset.limit is not None:
        rows = min(rows, spec.dataset.limit)
    done, failed = found.rows_written, found.rows_failed
    to_go = max(0, rows * spec.samples - done - failed)
    return f"resumes: {done} done, {failed} failed, {to_go} to go"


async def _check_endpoint(prepared: Prepared) -> list[str]:
    spec = prepared.job.spec
    lines = []
    for url in spec.endpoint.urls:
        lines.append(await _check_one(prepared, url))
    return lines


async def _check_one(prepared: Prepared, url: str) -> str:
    from tgbatch.runner import make_backend, read_token
    from tgbatch.runner.connect import check_limits, reach

    spec = prepared.job.spec
    backend = make_backend(spec, read_token(spec.endpoint), url)
    try:
        capacity = await reach(backend)
    finally:
        await backend.aclose()
    if capacity is None:
        return f"server:      {backend.url}: answers, but not TGI's /info; parameters not checked against its limits"
    check_limits(backend, capacity)
    if spec.api != "generate":
        return (
            f"server:      {backend.url}: {capacity.server or 'unknown kind'}, model {capacity.model_id}"
            f"{f' ({capacity.version})' if capacity.version else ''}, context length {capacity.max_total_tokens}"
        )
    return (
        f"server:      {backend.url}: {capacity.model_id} ({capacity.version}), "
        f"max_input_tokens={capacity.max_input_tokens}, max_total_tokens={capacity.max_total_tokens}, "
        f"max_concurrent_requests={capacity.max_concurrent_requests}"
    )
