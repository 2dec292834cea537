"""``tgbatch score DIR``: (re)score a job's output folder by its ``score:`` section or ``--spec FILE``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from tgbatch.cli import app
from tgbatch.cli._errors import exit_codes


@app.command("score")
def score_command(
    output_dir: Annotated[str, typer.Argument(help="A job's output folder (or its s3:// URL).", show_default=False)],
    spec: Annotated[
        Path | None,
        typer.Option("--spec", help="A YAML file holding a score section (instead of the job's `score:`)."),
    ] = None,
    failed_as_wrong: Annotated[
        bool, typer.Option("--failed-as-wrong", help="Count rows that failed to generate as wrong, not unscored.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print scores.json instead of the table.")] = False,
) -> None:
    """Score a job's output (finished or partial) by its `score:` section or --spec FILE, sending no request.

    Writes DIR/scores/*.parquet (row_id, sample, extracted, one column per metric) and DIR/scores.json (per
    metric and per pass@K / maj@K: mean, stderr, ci95, n scored, unscored); data/ is never changed. Reasoning
    (the reasoning column, <think>...</think>) is never scored. Rows that failed to generate are unscored and
    counted apart unless --failed-as-wrong. Exit code 0, or 2 on a bad spec or folder.
    """
    from tgbatch.job.location import join, parse_location
    from tgbatch.score.folder import resolve_spec, score_folder

    with exit_codes():
        root = parse_location(output_dir, "output folder", absolute=False)
        score_spec, _ = resolve_spec(root, spec)
        summary = score_folder(root, score_spec, failed_as_wrong=failed_as_wrong)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    for line in format_scores(summary):
        typer.echo(line)
    typer.echo(f"per sample: {join(root, 'scores')}/*.parquet; summary: {join(root, 'scores.json')}")


def format_scores(summary: dict[str, dict[str, Any]]) -> list[str]:
    """scores.json as a table: metric, mean, stderr, 95% interval, scored and unscored counts."""
    lines = [f"{'metric':<16} {'mean':>8} {'stderr':>8}  {'95% CI':<17} {'n':>8} {'unscored':>9}"]
    for name, entry in summary.items():
        mean, stderr, ci = entry.get("mean"), entry.get("stderr"), entry.get("ci95")
        shown_ci = f"[{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "-"
        lines.append(
            f"{name:<16} {_num(mean):>8} {_num(stderr):>8}  {shown_ci:<17} {entry.get('n', 0):>8} "
            f"{entry.get('unscored', 0):>9}"
        )
    return lines


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
