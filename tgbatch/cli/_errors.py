"""Exit codes and the CLI's one exception boundary: every command (run, validate, status, serve) runs inside
``exit_codes()``, so an ordinary mistake is a message naming the field and the fix, never a traceback."""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer

from tgbatch.errors import JobError, TGBatchError

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_FAILED_ROWS = 3
EXIT_BUDGET = 4
EXIT_INTERRUPTED = 130



def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def exit_codes() -> Iterator[None]:
    """Map exceptions to exit codes: bad spec/input/folder/token -> 2 (no traceback), Ctrl-C -> 130,
    anything else -> 1 with the traceback (a bug to report)."""
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except TGBatchError as exc:
        if isinstance(exc, JobError) or exc.fatal:
            fail(str(exc))
        fail(f"{type(exc).__name__}: {exc}")
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception:
        typer.echo("internal error (please report it, with this traceback):", err=True)
        typer.echo(traceback.format_exc(), err=True)
        raise typer.Exit(EXIT_INTERNAL) from None


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, flag: str) -> float:
    """``90``, ``90s``, ``30m``, ``8h``, ``1d`` -> seconds."""
    value = text.strip().lower()
    unit = _UNITS.get(value[-1:])
    number = value[:-1] if unit is not None else value
    try:
        seconds = float(number) * (unit or 1.0)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        fail(f"{flag} {text!r}: expected a positive duration such as 3600, 90m, 8h or 1d")
    return seconds


def parse_shard(text: str | None) -> tuple[int, int]:
    if text is None:
        return (0, 1)
    index, sep, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i, n = -1, 0
    if not sep or n < 1 or not 0 <= i < n:
        fail(f"--shard {text!r}: expected I/N with 0 <= I < N, e.g. --shard 0/4")
    return i, n



