"""``tgbatch export DIR --format F -o PATH``: a job's output in another tool's format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tgbatch.cli import app
from tgbatch.cli._errors import exit_codes

FORMATS = ("openai-batch",)


@app.command("export")
def export_command(
    output_dir: Annotated[Path, typer.Argument(help="A job's output folder.", show_default=False)],
    fmt: Annotated[str, typer.Option("--format", help="openai-batch: OpenAI's batch output JSONL.")],
    out: Annotated[Path, typer.Option("-o", "--output", help="The file to write.", show_default=False)],
) -> None:
    """Export a job's output to another tool's format.

    openai-batch: one line per row in OpenAI's batch output format (id, custom_id, response, error), the body
    a complete chat.completion or text_completion object. Exit code 0, or 2 when DIR is not a chat or
    completions job's output folder.
    """
    from tgbatch.errors import SpecError

    with exit_codes():
        if fmt not in FORMATS:
            raise SpecError(f"--format: {fmt!r} is not a format; formats: {', '.join(FORMATS)}")
        if not (output_dir / "job.yaml").is_file():
            raise SpecError(f"{str(output_dir)!r} is not a tgbatch output folder (it has no job.yaml)")
        from tgbatch.export.openai_batch import write_openai_batch

        count = write_openai_batch(output_dir, out)
    typer.echo(f"wrote {count} lines to {out}")
