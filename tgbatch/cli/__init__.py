"""tgbatch's command line. The only place that prints, exits and sets up logging.

Each command lives in its own module and registers itself on ``app``. ``main()`` imports only the module of
the command being run: the others are listed by light stand-ins carrying their one-line help, so ``tgbatch
--help`` and ``tgbatch status DIR`` start without the simulator's settings, the runner or Arrow.
"""

from __future__ import annotations

import importlib
import sys

import typer

app = typer.Typer(
    name="tgbatch",
    help="Run large prompt datasets through text-generation servers, resumably, without losing a row.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # markdown: docstring paragraphs rewrap to the terminal (plain rich mode keeps their line breaks), and the
    # option panels (router limits, latency, faults) still show
    rich_markup_mode="markdown",
)

#: every command: its module and the first paragraph of its help (test_cli_help checks they match)
COMMANDS = {
    "run": "Run a job: read the dataset, render each row's prompt, generate, write Parquet shards.",
    "validate": "Check a job: load the spec, read and render the first rows and show them, check the output "
    "folder as `tgbatch run` would (new, or resumable by this very job), and ask the endpoint's /info whether "
    "it accepts the parameters. Sends no generate request.",
    "status": "Show a job's progress: rows done, failed and remaining, generated tokens and run time, per shard.",
    "export": "Export a job's output to another tool's format.",
    "serve": "Run a TGI-compatible simulated server (no GPU, no weights): TGI's protocol, a deterministic model, "
    "a latency model and fault injection.",
}


def _version(value: bool) -> None:
    if value:
        from tgbatch._version import __version__

        typer.echo(f"tgbatch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    pass


def _register(only: str | None = None) -> None:
    """Add the commands to ``app``: all of them, or ``only`` that one for real and stand-ins for the rest."""
    for name, summary in COMMANDS.items():
        if only is None or name == only:
            importlib.import_module(f"tgbatch.cli.{name}")  # registers itself on `app`
        else:
            app.command(name, help=summary, context_settings={"ignore_unknown_options": True})(_stand_in)


def _stand_in() -> None:  # pragma: no cover - never invoked: only the command being run is registered for real
    raise typer.Exit(1)


def main() -> None:
    command = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), None)
    _register(only=command if command in COMMANDS else "")
    app()
