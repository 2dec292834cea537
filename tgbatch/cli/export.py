"""``tgbatch export DIR --format F -o PATH``: a job's rows as training data or plain files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tgbatch.cli import app
from tgbatch.cli._errors import exit_codes


@app.command("export")
def export_command(
    output_dir: Annotated[str, typer.Argument(help="A job's output folder (or its s3:// URL).", show_default=False)],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="jsonl | parquet (the rows) | sft-messages | sft-prompt-completion | dpo | dpo-axolotl | "
            "openai-batch (OpenAI's batch output: one line per row, failed rows with their error).",
            show_default=False,
        ),
    ],
    path: Annotated[Path, typer.Option("--output", "-o", help="The file to write.", show_default=False)],
    where: Annotated[
        list[str] | None,
        typer.Option("--where", help="Keep rows whose COLUMN=VALUE (repeatable), e.g. finish_reason=stop."),
    ] = None,
    columns: Annotated[
        str | None,
        typer.Option(
            "--columns", help="a,b: the columns of jsonl/parquet; with a training format, columns carried along."
        ),
    ] = None,
    reasoning_as: Annotated[
        str,
        typer.Option(
            "--reasoning-as",
            help="Where an answer's reasoning goes in the assistant message: none (left out), reasoning_content "
            "(Qwen3 / DeepSeek chat templates) or thinking (gpt-oss).",
        ),
    ] = "none",
    rank_by: Annotated[
        str | None,
        typer.Option(
            "--rank-by",
            help="dpo / dpo-axolotl: mean_logprob (the samples' logprobs) or a metric of DIR/scores "
            "(e.g. exact_match): best sample chosen, worst rejected, ties skipped.",
        ),
    ] = None,
    min_score: Annotated[
        list[str] | None,
        typer.Option(
            "--min-score",
            help="Keep the samples scoring at least X by METRIC (DIR/scores/ from `tgbatch score`), e.g. "
            "exact_match=1 for the correct answers only (repeatable).",
        ),
    ] = None,
    push_to_hub: Annotated[
        str | None,
        typer.Option("--push-to-hub", help="Also upload the file as a Hub dataset REPO (token in HF_TOKEN)."),
    ] = None,
) -> None:
    """Export a job's rows: plain JSON Lines or Parquet, or TRL / axolotl SFT and DPO data.

    Only the rows in DIR/data are exported (failed rows never; openai-batch writes them with their error). The
    file is written atomically and loads with `datasets.load_dataset("json", data_files=PATH)`. Exit code 0, or
    2 when the format does not fit the job (sft-messages on a /generate job), a column does not exist, or a
    ranking has nothing to rank by.
    """
    from tgbatch.export import export_folder
    from tgbatch.export.write import hub_token
    from tgbatch.export.write import push_to_hub as push
    from tgbatch.job.location import parse_location

    with exit_codes():
        token = hub_token() if push_to_hub else None
        count = export_folder(
            parse_location(output_dir, "output folder", absolute=False),
            fmt,
            path,
            where=where or (),
            min_score=min_score or (),
            columns=[c.strip() for c in columns.split(",") if c.strip()] if columns else None,
            reasoning_as=reasoning_as,
            rank_by=rank_by,
        )
        typer.echo(f"wrote {count} record(s) to {path} ({fmt})")
        if push_to_hub and token:
            push(path, push_to_hub, token)
            typer.echo(f"pushed to https://huggingface.co/datasets/{push_to_hub}")
