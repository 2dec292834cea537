"""``tgbatch validate JOB``: check a job without running it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import anyio
import typer

from tgbatch.backends.tgi.rules import Limits, check_best_of, check_parameters
from tgbatch.cli import app
from tgbatch.cli._errors import exit_codes, fail
from tgbatch.errors import TGIError, ValidationError
from tgbatch.job.load import load_job
from tgbatch.job.spec import redact_url
from tgbatch.output.layout import OutputDir
from tgbatch.runner import Prepared, make_client, prepare, read_token

INFO_TIMEOUT_S = 10.0


@app.command("validate")
def validate_command(
    job: Annotated[Path, typer.Argument(help="The job file (YAML).", show_default=False)],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a spec value: KEY.PATH=VALUE. Repeatable.")
    ] = None,
    rows: Annotated[int, typer.Option("--rows", min=1, max=100, help="How many rendered prompts to show.")] = 3,
) -> None:
    """Check a job: load the spec, read and render the first rows and show them, and ask the endpoint's /info
    (if it answers) whether it accepts the parameters. Sends no generate request.

    Exit code 0 when the job is valid, 2 otherwise (the message names the field).
    """
    with exit_codes():
        loaded = load_job(job, list(set_ or []))
        prepared = prepare(loaded, preview_rows=rows)
        info_lines = anyio.run(_check_endpoint, prepared)
    spec = loaded.spec
    typer.echo(f"job:         {loaded.name}")
    typer.echo(f"dataset:     {prepared.source.identity.get('path')} ({prepared.source.kind})")
    typer.echo(f"columns:     {', '.join(prepared.source.schema.names)}")
    typer.echo(f"row id:      {spec.dataset.id_column or 'the row position'}")
    typer.echo(f"carried:     {', '.join(dst for _, dst in prepared.carried) or '(none)'}")
    typer.echo(f"parameters:  {spec.parameters.to_wire()}")
    typer.echo(
        f"seed:        {spec.seed_policy}"
        + (f" (value {spec.seed.value})" if spec.seed_policy in ("fixed", "per_row") else "")
    )
    typer.echo(f"samples:     {spec.samples}")
    typer.echo(
        f"endpoint:    {prepared.job.resolved_dict()['endpoint']['url']} (concurrency {spec.endpoint.concurrency})"
    )
    typer.echo(f"output:      {loaded.output_dir} ({_output_state(prepared)})")
    typer.echo(f"fingerprint: {prepared.fingerprint.digest}")
    for note in prepared.notes + loaded.warnings:
        typer.echo(f"note:        {note}")
    for line in info_lines:
        typer.echo(line)
    for row_id, prompt in prepared.preview:
        typer.echo(f"--- row {row_id} ---")
        typer.echo(prompt)
    typer.echo("---\nvalid")


def _output_state(prepared: Prepared) -> str:
    out = OutputDir(prepared.job.output_dir)
    if not out.exists():
        return "new"
    foreign = out.foreign_entries()
    if foreign:
        fail(f"output.dir: {str(out.root)!r} is not a tgbatch output folder (it holds {', '.join(foreign[:5])})")
    manifests = out.manifests()
    if not manifests:
        return "new"
    other = [m for _, m in manifests if m.get("fingerprint") != prepared.fingerprint.digest]
    if other:
        differs = prepared.fingerprint.differences(other[0].get("fingerprint_parts") or {})
        return f"holds ANOTHER job's output ({', '.join(differs)} changed): run would refuse; use --fresh"
    written = sum(int(m.get("rows_written") or 0) for m in manifests)
    return f"resumable: {written} rows already written"


async def _check_endpoint(prepared: Prepared) -> list[str]:
    spec = prepared.job.spec
    lines = []
    for url in spec.endpoint.urls:
        lines.append(await _check_one(prepared, url))
    return lines


async def _check_one(prepared: Prepared, url: str) -> str:
    spec = prepared.job.spec
    shown = redact_url(url)
    client: Any = make_client(spec.endpoint, read_token(spec.endpoint), url)
    async with client:
        try:
            with anyio.fail_after(INFO_TIMEOUT_S):
                info = await client.info()
        except (TGIError, TimeoutError) as exc:
            return (
                f"server:      {shown}: /info did not answer ({type(exc).__name__}: {exc}); parameters not checked "
                "against the server's limits"
            )
    limits = Limits.from_info(info)
    try:
        check_best_of(spec.parameters, limits)
        check_parameters(spec.parameters, limits)
    except ValidationError as exc:
        fail(f"parameters: the endpoint {shown} ({info.model_id}) would refuse them: {exc.message}")
    return (
        f"server:      {shown}: {info.model_id} (TGI {info.version}), max_input_tokens={info.max_input_tokens}, "
        f"max_total_tokens={info.max_total_tokens}, max_concurrent_requests={info.max_concurrent_requests}"
    )
