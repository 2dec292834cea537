"""Human-readable figures for the CLI: durations, rates, latencies, retries, endpoints and the run summary."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# -- human-readable ---------------------------------------------------------------------------------------------


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def format_latency(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.2f}s"


def format_rate(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f} {unit}" if value < 100 else f"{value:,.0f} {unit}"


def format_retries(snapshot: Mapping[str, Any]) -> str:
    retries = int(snapshot.get("retries") or 0)
    causes = snapshot.get("retries_by_cause") or {}
    if not retries:
        return "0"
    return f"{retries} (" + ", ".join(f"{cause} {n}" for cause, n in causes.items()) + ")"


def format_endpoint(url: str, figures: Mapping[str, Any]) -> str:
    parts = [f"{int(figures.get('ok') or 0)} ok", f"{int(figures.get('failed') or 0)} failed"]
    parts.append(f"{int(figures.get('retries') or 0)} retries")
    if figures.get("in_flight") is not None:
        limit = figures.get("limit")
        parts.append(f"{figures['in_flight']}{f'/{limit}' if limit is not None else ''} in flight")
    elif figures.get("limit") is not None:
        parts.append(f"limit {figures['limit']}")
    if figures.get("ejected"):
        parts.append("EJECTED")
    return f"{url}: " + ", ".join(parts)


def format_summary(snapshot: Mapping[str, Any]) -> str:
    """The final summary a run prints: rows, throughput, tokens/s, latency, retries, endpoints."""
    state = snapshot.get("state") or "finished"
    reason = snapshot.get("reason")
    ok, failed = int(snapshot.get("done_this_run") or 0), int(snapshot.get("failed_this_run") or 0)
    lines = [
        f"{state}{f' ({reason})' if reason else ''}: {ok} rows generated, {failed} failed in "
        f"{format_duration(snapshot.get('elapsed_s'))}"
        + (
            f"; {int(snapshot.get('already_done') or 0)} rows were already written"
            if snapshot.get("already_done")
            else ""
        ),
    ]
    if not (ok or failed) and state == "finished":
        lines.append("  nothing left to do: every row was already written")
        return "\n".join(lines)
    lines.append(
        f"  throughput: {format_rate(snapshot.get('rows_per_s_overall'), 'rows/s')}, "
        f"{format_rate(snapshot.get('tokens_per_s_overall'), 'generated tokens/s')} "
        f"({int(snapshot.get('generated_tokens') or 0)} tokens)"
    )
    latency = snapshot.get("latency_s") or {}
    if latency.get("count"):
        lines.append(
            f"  latency:    p50 {format_latency(latency.get('p50'))}, p95 {format_latency(latency.get('p95'))}, "
            f"max {format_latency(latency.get('max'))}"
        )
    lines.append(f"  retries:    {format_retries(snapshot)}")
    endpoints = snapshot.get("endpoints") or {}
    for url, figures in endpoints.items():
        lines.append(f"  endpoint    {format_endpoint(url, figures)}")
    return "\n".join(lines)
