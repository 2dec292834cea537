"""What a running job shows: a tqdm bar on a terminal, log lines otherwise; the logging set-up and the event
loop options of the job commands."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable

from tqdm import tqdm

from tgbatch.output.shards import CommittedFile
from tgbatch.runner import ProgressSink

log = logging.getLogger("tgbatch.cli")


def _draws_a_bar() -> bool:
    """A terminal that can show a bar: some report 0 columns (a CI pseudo-terminal, a detached pane), and a bar
    there shows nothing at all, so those get the log lines instead."""
    if not sys.stderr.isatty():
        return False
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns > 0
    except OSError:
        return False


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )
    # httpx logs every request at INFO: far too much for a batch job
    for noisy in ("httpx", "httpcore", "aiohttp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # these print through handlers of their own: passed on to ours too, every warning would show twice
    for own_handler in ("datasets", "huggingface_hub"):
        logging.getLogger(own_handler).propagate = False




class CliProgress(ProgressSink):
    """A tqdm bar on a terminal; periodic log lines otherwise. Counts this run's rows apart from the rows
    earlier runs already wrote, so rates stay honest after a resume."""

    def __init__(
        self, *, tty: bool | None = None, log_every_s: float = 10.0, clock: Callable[[], float] = time.monotonic
    ):
        self.tty = _draws_a_bar() if tty is None else tty
        self.log_every_s = log_every_s
        self.clock = clock
        self.bar: tqdm | None = None
        self.total: int | None = None
        self.done = self.failed = self.retries = self.tokens = 0
        self.started = clock()
        self.last_log = self.started
        self.before = ""

    def start(self, *, total: int | None, already_done: int, already_failed: int) -> None:
        self.started = self.last_log = self.clock()
        if already_done or already_failed:
            self.before = f"resuming: {already_done} rows already written, {already_failed} already failed"
            log.info(self.before)
        if self.tty:
            self.bar = tqdm(total=total, unit="row", dynamic_ncols=True, file=sys.stderr, smoothing=0.1)

    def set_total(self, total: int) -> None:
        self.total = total
        if self.bar is not None:
            self.bar.total = total
            self.bar.refresh()

    def _postfix(self) -> dict[str, str]:
        elapsed = max(1e-9, self.clock() - self.started)
        return {"tok/s": f"{self.tokens / elapsed:.0f}", "failed": str(self.failed), "retries": str(self.retries)}

    def advance(self, *, ok: bool, tokens: int) -> None:
        self.done += 1
        self.tokens += tokens
        if not ok:
            self.failed += 1
        if self.bar is not None:
            self.bar.update(1)
            if self.done % 16 == 0 or not ok:
                self.bar.set_postfix(self._postfix(), refresh=False)
        else:
            self._maybe_log()

    def retry(self, error: BaseException) -> None:
        self.retries += 1
        if self.bar is None:
            self._maybe_log()

    def _maybe_log(self) -> None:
        now = self.clock()
        if now - self.last_log >= self.log_every_s:
            self.last_log = now
            self.log_line()

    def log_line(self) -> None:
        elapsed = max(1e-9, self.clock() - self.started)
        total = f"/{self.total}" if self.total is not None else ""
        log.info(
            "%d%s rows this run (%.1f rows/s, %.0f generated tok/s), %d failed, %d retries",
            self.done,
            total,
            self.done / elapsed,
            self.tokens / elapsed,
            self.failed,
            self.retries,
        )

    def committed(self, files: list[CommittedFile]) -> None:
        for f in files:
            log.debug("committed %s (%d rows)", f.file, f.rows)

    def stopping(self, reason: str) -> None:
        message = f"stopping ({reason}): no new rows; finishing the requests in flight, then committing"
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            log.warning(message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix(self._postfix(), refresh=False)
            self.bar.close()
            self.bar = None
        elif self.done:
            self.log_line()


