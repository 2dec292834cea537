"""``tgbatch status DIR``: how far a job's output is (all shards summed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..job.status import collect_status
from . import app
from ._jobs import exit_codes


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


@app.command("status")
def status_command(
    output_dir: Annotated[Path, typer.Argument(help="A job's output folder.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """Show a job's progress: rows done, failed and remaining, generated tokens and run time, per shard.

    Exit code 0, or 2 when DIR is not a tgbatch output folder.
    """
    with exit_codes():
        status = collect_status(output_dir)
    if as_json:
        typer.echo(json.dumps(status, indent=2))
        return
    total = status["total"]
    remaining = "unknown (a shard has not read all its input yet)" if total is None else str(status["remaining"])
    typer.echo(f"job:        {status['job']}  ({status['output_dir']})")
    typer.echo(f"state:      {'complete' if status['complete'] else 'incomplete'}")
    typer.echo(f"done:       {status['done']}" + (f" of {total}" if total is not None else ""))
    typer.echo(f"failed:     {status['failed']}")
    typer.echo(f"remaining:  {remaining}")
    typer.echo(f"tokens:     {status['generated_tokens']}")
    typer.echo(
        f"time:       {_duration(status['elapsed_s'])}"
        + (
            f" (longest shard; {_duration(status['elapsed_s_all_shards'])} summed over shards)"
            if len(status["shards"]) > 1
            else ""
        )
    )
    if len(status["shards"]) > 1:
        for shard in status["shards"]:
            typer.echo(
                f"  shard {shard['shard']:>7}: {shard['rows_written']} written, {shard['rows_failed']} failed, "
                f"{'complete' if shard['complete'] else 'incomplete'}, {shard['runs']} run(s)"
            )
