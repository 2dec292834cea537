"""``tgbatch status DIR``: how far a job's output is (all shards summed)."""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tgbatch.cli import app
from tgbatch.cli._errors import exit_codes
from tgbatch.cli._format import format_duration, format_endpoint, format_latency, format_rate, format_retries

if TYPE_CHECKING:
    from tgbatch.job.location import Location


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


@app.command("status")
def status_command(
    output_dir: Annotated[str, typer.Argument(help="A job's output folder (or its s3:// URL).", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """Show a job's progress: rows done, failed and remaining, generated tokens and run time, per shard.

    While the job runs (DIR/progress.json, every shard's summed), also: rows in flight, rows/s and generated
    tokens/s, ETA, latency p50/p95, retries by cause and per-endpoint counts. Exit code 0, or 2 when DIR is not
    a tgbatch output folder.
    """
    from tgbatch.job.location import parse_location
    from tgbatch.status import collect_status

    with exit_codes():
        location = parse_location(output_dir, "output folder", absolute=False)
        status = collect_status(location)
    if as_json:
        typer.echo(json.dumps(status, indent=2))
        return
    total = status["total"]
    remaining = "unknown (a shard has not read all its input yet)" if total is None else str(status["remaining"])
    typer.echo(f"job:        {status['job']}  ({status['output_dir']})")
    live = status.get("live")
    if live is not None:
        _echo_live(live, total)
    else:
        typer.echo(f"state:      {'complete' if status['complete'] else 'incomplete'}")
        typer.echo(f"done:       {status['done']}" + (f" of {total}" if total is not None else ""))
        typer.echo(f"failed:     {status['failed']}")
        typer.echo(f"remaining:  {remaining}")
    typer.echo(
        f"tokens:     {status['generated_tokens']}"
        + (f" committed, {live['generated_tokens']} generated this run" if live is not None else "")
    )
    typer.echo(
        f"time:       {_duration(status['elapsed_s'])}"
        + (
            f" (longest shard; {_duration(status['elapsed_s_all_shards'])} summed over shards)"
            if len(status["shards"]) > 1
            else ""
        )
        + (" at the last commit" if live is not None else "")
    )
    if len(status["shards"]) > 1:
        for shard in status["shards"]:
            typer.echo(
                f"  shard {shard['shard']:>7}: {shard['rows_written']} written, {shard['rows_failed']} failed, "
                f"{'complete' if shard['complete'] else 'incomplete'}, {shard['runs']} run(s)"
            )
    if live is not None:
        _echo_latency(live)
        typer.echo(f"retries:    {format_retries(live)}")
        _echo_endpoints(live)
    elif status.get("last_run"):
        _echo_last_run(status["last_run"])
    for run in status.get("dead") or []:
        typer.echo(
            f"note:       shard {run['shard']}'s run (pid {run['pid']} on {run['hostname']}, last update "
            f"{run['updated_at']}) stopped without finishing (killed?); run the same command to resume"
        )
    _echo_scores(location)


def _echo_scores(location: Location) -> None:
    """The folder's scores.json (``tgbatch score``, or a run with a ``score:`` section), when it has one."""
    from tgbatch.output.store import open_store

    try:
        summary = json.loads(open_store(location).read_bytes("scores.json").decode("utf-8"))
    except (OSError, ValueError):
        return
    from tgbatch.cli.score import format_scores

    typer.echo("scores:")
    for line in format_scores(summary):
        typer.echo(f"  {line}")


def _echo_live(live: dict[str, Any], total: int | None) -> None:
    runs = live.get("runs") or []
    if len(runs) == 1:
        run = runs[0]
        where = f"pid {run['pid']} on {run['hostname']}, updated {run['age_s']:g}s ago"
    else:
        where = f"{len(runs)} shards: " + ", ".join(f"{r['shard']} (pid {r['pid']} on {r['hostname']})" for r in runs)
    typer.echo(f"state:      running ({where})")
    done = live["done"]
    committed = live.get("committed_done")
    typer.echo(
        f"done:       {done}"
        + (f" of {total}" if total is not None else "")
        + (f" ({committed} committed)" if committed is not None and committed != done else "")
    )
    typer.echo(f"failed:     {live['failed']}")
    typer.echo(f"in flight:  {live['in_flight']}")
    remaining = live.get("remaining")
    typer.echo(f"remaining:  {'unknown (the input is still being counted)' if remaining is None else remaining}")
    window = live.get("window_s")
    typer.echo(
        f"rate:       {format_rate(live.get('rows_per_s'), 'rows/s')}, "
        f"{format_rate(live.get('tokens_per_s'), 'generated tokens/s')}"
        + (f" (last {window:g}s)" if window else "")
        + f"; overall {format_rate(live.get('rows_per_s_overall'), 'rows/s')}, "
        f"{format_rate(live.get('tokens_per_s_overall'), 'tokens/s')}"
    )
    eta = live.get("eta_s")
    typer.echo(
        f"ETA:        {format_duration(eta)}" + (f" ({_clock_time(live['eta_at'])})" if live.get("eta_at") else "")
    )


def _clock_time(iso: str) -> str:
    try:
        return dt.datetime.fromisoformat(iso).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError):
        return str(iso)


def _echo_latency(snapshot: dict[str, Any]) -> None:
    latency = snapshot.get("latency_s") or {}
    if not latency.get("count"):
        return
    line = f"latency:    p50 {format_latency(latency.get('p50'))}, p95 {format_latency(latency.get('p95'))}"
    if snapshot.get("state") == "running" and latency.get("recent_p50") is not None:
        line += (
            f" (recent: p50 {format_latency(latency.get('recent_p50'))}, "
            f"p95 {format_latency(latency.get('recent_p95'))})"
        )
    typer.echo(line)


def _echo_endpoints(snapshot: dict[str, Any]) -> None:
    endpoints = snapshot.get("endpoints") or {}
    if endpoints:
        typer.echo("endpoints:")
        for url, figures in endpoints.items():
            typer.echo(f"  {format_endpoint(url, figures)}")


def _echo_last_run(last: dict[str, Any]) -> None:
    reason = last.get("reason")
    when = _clock_time(str(last.get("updated_at")))
    if last.get("state") == "finished" and not (last.get("done_this_run") or last.get("failed_this_run")):
        typer.echo(f"last run:   finished at {when}: nothing left to do (every row was already written)")
        return
    typer.echo(
        f"last run:   {last.get('state')}{f' ({reason})' if reason else ''} at {when}: "
        f"{last.get('done_this_run')} generated, {last.get('failed_this_run')} failed in "
        f"{format_duration(last.get('elapsed_s'))}, {format_rate(last.get('rows_per_s_overall'), 'rows/s')}, "
        f"{format_rate(last.get('tokens_per_s_overall'), 'generated tokens/s')}"
    )
    _echo_latency(last)
    typer.echo(f"retries:    {format_retries(last)}")
    _echo_endpoints(last)
