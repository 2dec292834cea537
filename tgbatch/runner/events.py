"""The run's events, counted once: the pipeline reports each one here, and ``RunEvents`` counts it in the live
statistics (what ``progress.json`` shows, and what the run's result is read from at the end) and passes it to
the listener (the CLI's bar or log lines), so no stage counts anything by hand."""

from __future__ import annotations

from dataclasses import dataclass

from tgbatch.metrics.live import LiveStats
from tgbatch.output.shards import CommittedFile
from tgbatch.runner.control import RunResult


class ProgressSink:
    """What a run reports while it goes (the CLI draws it). Every method is a no-op here: subclass and
    override what you need."""

    def start(self, *, total: int | None, already_done: int, already_failed: int) -> None: ...

    def set_total(self, total: int) -> None: ...

    def advance(self, *, ok: bool, tokens: int) -> None: ...

    def retry(self, error: BaseException) -> None: ...

    def committed(self, files: list[CommittedFile]) -> None: ...

    def stopping(self, reason: str) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class RowDone:
    """A row (one sample) finished for good: generated (``ok``) or failed."""

    ok: bool
    tokens: int
    latency_s: float
    endpoint: str | None
    attempts: int


class RunEvents:
    """The one sink of a run's events."""

    def __init__(self, result: RunResult, stats: LiveStats, listener: ProgressSink) -> None:
        self.result = result
        self.stats = stats
        self.listener = listener

    def start(self) -> None:
        self.listener.start(
            total=None, already_done=self.result.already_done, already_failed=self.result.already_failed
        )

    def total(self, rows: int) -> None:
        """This run's rows (times samples) are known: counted in the background while the run goes."""
        self.stats.set_total(rows)
        self.listener.set_total(rows)

    def row_done(self, row: RowDone) -> None:
        self.stats.row_done(row.ok, row.tokens, row.latency_s, row.endpoint, row.attempts)
        self.listener.advance(ok=row.ok, tokens=row.tokens)

    def retry(self, error: BaseException, endpoint: str | None) -> None:
        self.stats.retry(error, endpoint)
        self.listener.retry(error)

    def committed(self, files: list[CommittedFile]) -> None:
        self.listener.committed(files)

    def stopping(self, reason: str) -> None:
        self.listener.stopping(reason)

    def close(self) -> None:
        self.listener.close()

    def tally(self) -> RunResult:
        """The result, with this run's counts as the statistics have them."""
        self.result.ok, self.result.failed = self.stats.ok, self.stats.failed
        self.result.retries, self.result.generated_tokens = self.stats.retries, self.stats.tokens
        return self.result
