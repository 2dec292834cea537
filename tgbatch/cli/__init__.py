"""tgbatch's command line. The only place that prints, exits and sets up logging.

Each command lives in its own module and registers itself on ``app``.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="tgbatch",
    help="Run large prompt datasets through text-generation-inference (TGI) servers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # markdown: docstring paragraphs rewrap to the terminal (plain rich mode keeps their line breaks), and the
    # option panels (router limits, latency, faults) still show
    rich_markup_mode="markdown",
)


def _register() -> None:
    # imported for their side effect of adding commands to `app`
    from tgbatch.cli import (  # noqa: F401
        run,
        serve,
        status,
        validate,
    )


def main() -> None:
    _register()
    app()
