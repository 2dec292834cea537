"""``tgbatch serve``: run the TGI-compatible simulator over HTTP. Flags carry TGI launcher names and defaults."""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer

from tgbatch.cli import app
from tgbatch.errors import SpecError
from tgbatch.sim.config import SimConfig, config_from_mapping

_D = SimConfig.model_fields


def _help(name: str) -> str:
    return _D[name].description or ""


def _default(name: str) -> Any:
    return _D[name].default


_SERVER = "Server flavour"
_ROUTER = "Router limits (TGI)"
_MODEL = "Simulated model"
_LATENCY = "Latency model"
_FAULTS = "Fault injection"


@app.command("serve")
def serve_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8080,
    flavor: Annotated[str, typer.Option(help=_help("flavor"), rich_help_panel=_SERVER)] = _default("flavor"),
    max_queued_requests: Annotated[
        int | None, typer.Option(help=_help("max_queued_requests"), rich_help_panel=_SERVER)
    ] = None,
    reasoning: Annotated[bool, typer.Option(help=_help("reasoning"), rich_help_panel=_MODEL)] = _default("reasoning"),
    model_id: Annotated[str, typer.Option(help=_help("model_id"), rich_help_panel=_ROUTER)] = _default("model_id"),
    max_concurrent_requests: Annotated[
        int, typer.Option(help=_help("max_concurrent_requests"), rich_help_panel=_ROUTER)
    ] = _default("max_concurrent_requests"),
    max_best_of: Annotated[int, typer.Option(help=_help("max_best_of"), rich_help_panel=_ROUTER)] = _default(
        "max_best_of"
    ),
    max_stop_sequences: Annotated[
        int, typer.Option(help=_help("max_stop_sequences"), rich_help_panel=_ROUTER)
    ] = _default("max_stop_sequences"),
    max_top_n_tokens: Annotated[int, typer.Option(help=_help("max_top_n_tokens"), rich_help_panel=_ROUTER)] = _default(
        "max_top_n_tokens"
    ),
    max_input_tokens: Annotated[int, typer.Option(help=_help("max_input_tokens"), rich_help_panel=_ROUTER)] = _default(
        "max_input_tokens"
    ),
    max_total_tokens: Annotated[int, typer.Option(help=_help("max_total_tokens"), rich_help_panel=_ROUTER)] = _default(
        "max_total_tokens"
    ),
    max_client_batch_size: Annotated[
        int, typer.Option(help=_help("max_client_batch_size"), rich_help_panel=_ROUTER)
    ] = _default("max_client_batch_size"),
    payload_limit: Annotated[int, typer.Option(help=_help("payload_limit"), rich_help_panel=_ROUTER)] = _default(
        "payload_limit"
    ),
    api_key: Annotated[
        str | None, typer.Option(help=_help("api_key"), envvar="API_KEY", rich_help_panel=_ROUTER)
    ] = None,
    min_output_tokens: Annotated[int, typer.Option(help=_help("min_output_tokens"), rich_help_panel=_MODEL)] = _default(
        "min_output_tokens"
    ),
    max_output_tokens: Annotated[int, typer.Option(help=_help("max_output_tokens"), rich_help_panel=_MODEL)] = _default(
        "max_output_tokens"
    ),
    prefill_ms_per_token: Annotated[
        float, typer.Option(help=_help("prefill_ms_per_token"), rich_help_panel=_LATENCY)
    ] = _default("prefill_ms_per_token"),
    decode_ms_per_token: Annotated[
        float, typer.Option(help=_help("decode_ms_per_token"), rich_help_panel=_LATENCY)
    ] = _default("decode_ms_per_token"),
    max_batch_size: Annotated[int, typer.Option(help=_help("max_batch_size"), rich_help_panel=_LATENCY)] = _default(
        "max_batch_size"
    ),
    fault_seed: Annotated[int, typer.Option(help=_help("fault_seed"), rich_help_panel=_FAULTS)] = _default(
        "fault_seed"
    ),
    overload_rate: Annotated[float, typer.Option(help=_help("overload_rate"), rich_help_panel=_FAULTS)] = _default(
        "overload_rate"
    ),
    rate_limit: Annotated[float | None, typer.Option(help=_help("rate_limit"), rich_help_panel=_FAULTS)] = None,
    unavailable_rate: Annotated[
        float, typer.Option(help=_help("unavailable_rate"), rich_help_panel=_FAULTS)
    ] = _default("unavailable_rate"),
    error_rate: Annotated[float, typer.Option(help=_help("error_rate"), rich_help_panel=_FAULTS)] = _default(
        "error_rate"
    ),
    drop_rate: Annotated[float, typer.Option(help=_help("drop_rate"), rich_help_panel=_FAULTS)] = _default("drop_rate"),
    stall_rate: Annotated[float, typer.Option(help=_help("stall_rate"), rich_help_panel=_FAULTS)] = _default(
        "stall_rate"
    ),
    stall_s: Annotated[float, typer.Option(help=_help("stall_s"), rich_help_panel=_FAULTS)] = _default("stall_s"),
    loading_s: Annotated[float, typer.Option(help=_help("loading_s"), rich_help_panel=_FAULTS)] = _default("loading_s"),
    keepalive_s: Annotated[float, typer.Option(help=_help("keepalive_s"), rich_help_panel=_FAULTS)] = _default(
        "keepalive_s"
    ),
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
) -> None:
    """Run a TGI-compatible simulated server (no GPU, no weights): TGI's protocol, a deterministic model,
    a latency model and fault injection.

    With --flavor vllm or sglang it plays that server's OpenAI API instead (its queue, errors and fields)."""
    from tgbatch.sim.run import bind, serve

    options = {
        name: value
        for name, value in locals().items()
        if name in SimConfig.model_fields and not (value is None and _default(name) is None)
    }
    try:
        config = config_from_mapping(options, source="tgbatch serve")
    except SpecError as exc:
        message, flags = _as_flags(str(exc).removeprefix("tgbatch serve: "))
        raise typer.BadParameter(message, param_hint=flags or None) from exc
    try:
        sock = bind(host, port)
    except OSError as exc:
        typer.echo(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port", err=True)
        raise typer.Exit(2) from None
    name = {"tgi": "TGI", "vllm": "vLLM", "sglang": "SGLang"}[config.flavor]
    typer.echo(f"tgbatch serve: simulated {name} '{config.model_id}' on http://{host}:{port}", err=True)
    serve(config, host, port, log_level=log_level, access_log=access_log, sock=sock)


def _as_flags(message: str) -> tuple[str, list[str]]:
    """Config errors name SimConfig fields; the user typed flags. Returns the message in flag names and the
    flags it mentions."""
    flags = []
    for name in sorted(SimConfig.model_fields, key=len, reverse=True):
        pattern = re.compile(rf"'?\b{name}\b'?")
        if pattern.search(message):
            flag = "--" + name.replace("_", "-")
            flags.append(flag)
            message = pattern.sub(flag, message)
    return message, flags
