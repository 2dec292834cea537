"""The writer task: the one owner of the shard buffers, the commits, the manifest and the progress file.

Rows arrive as ``RowOutcome``s. A shard is committed when it is full (``rows_per_shard``, or 256 MB of
buffered text) or stale (``commit_interval_s`` after its first row), and once more at the end, whatever ended
the run: data before manifest, each file atomically, so the folder is always valid and resumable.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import anyio
import pyarrow as pa
from anyio.streams.memory import MemoryObjectReceiveStream

from tgbatch.errors import OutputError
from tgbatch.output.layout import OutputDir
from tgbatch.output.manifest import Manifest
from tgbatch.output.progress import ProgressFile
from tgbatch.output.shards import CommittedFile, ShardBuffer
from tgbatch.runner.attempt import RowOutcome
from tgbatch.runner.control import RunControl, RunOptions, RunResult
from tgbatch.runner.events import RunEvents
from tgbatch.runner.refusals import RefusalWatch

MAX_BUFFER_BYTES = 256 * 1024 * 1024


@dataclass
class ReadState:
    """What the reader has seen, for the manifest: rows selected so far, and whether the input is exhausted."""

    rows_selected: int = 0
    #: the input's rows after the limit, once counted (in the background)
    input_rows: int | None = None
    done: bool = False


class Writer:
    def __init__(
        self,
        out: OutputDir,
        manifest: Manifest,
        schemas: tuple[pa.Schema, pa.Schema],
        *,
        rows_per_shard: int,
        commit_interval_s: float,
        events: RunEvents,
        progress_file: ProgressFile,
        control: RunControl,
        options: RunOptions,
        read: ReadState,
    ) -> None:
        self.out = out
        self.manifest = manifest
        self.data = ShardBuffer(schemas[0])
        self.errors = ShardBuffer(schemas[1])
        self.rows_per_shard = rows_per_shard
        self.interval = commit_interval_s
        self.events = events
        self.progress_file = progress_file
        self.control = control
        self.options = options
        self.read = read
        self.seq = out.next_seq()
        self.refusals = RefusalWatch()
        self.first_pending: float | None = None

    @property
    def result(self) -> RunResult:
        return self.events.result

    async def run(self, recv: MemoryObjectReceiveStream[RowOutcome]) -> None:
        # wake at least every progress interval, so progress.json stays fresh while rows are slow to come
        tick = min(self.interval, self.progress_file.interval_s)
        try:
            await self.progress_file.maybe_write_async()
            async with recv:
                while True:
                    try:
                        outcome = await self._next(recv, tick)
                    except anyio.EndOfStream:
                        break
                    if outcome is not None:
                        self._add(outcome)
                    if self._due():
                        await self._commit()
                    await self.progress_file.maybe_write_async()
        finally:
            # an error already on its way out (a failed commit) must not be masked by the same failure here
            failing = sys.exc_info()[1] is not None
            with anyio.CancelScope(shield=True):
                await self._finish(failing)

    @staticmethod
    async def _next(recv: MemoryObjectReceiveStream[RowOutcome], tick: float) -> RowOutcome | None:
        """The next row, or ``None`` after ``tick`` seconds without one. A row already waiting is taken without
        a timeout scope: at thousands of rows a second, setting one up per row costs more than the row's write."""
        try:
            return recv.receive_nowait()
        except anyio.WouldBlock:
            pass
        with anyio.move_on_after(tick):
            return await recv.receive()
        return None

    def _add(self, outcome: RowOutcome) -> None:
        done, record = outcome.done, outcome.record
        self.events.row_done(done)
        size = len(record.get("generated_text") or "") + len(record.get("prompt") or "") + 64
        for message in record.get("messages") or ():  # a chat job's input, counted as its prompt is
            size += len(message.get("content") or "")
        (self.data if done.ok else self.errors).add(record, size)
        if done.ok:
            self._check_token_budget()
        refused = self.refusals.see(done.ok, record)
        if refused is not None:
            self.control.fail(refused)
        if self.first_pending is None:
            self.first_pending = time.monotonic()

    def _due(self) -> bool:
        rows = len(self.data.records) + len(self.errors.records)
        full = rows >= self.rows_per_shard or self.data.bytes + self.errors.bytes >= MAX_BUFFER_BYTES
        stale = self.first_pending is not None and time.monotonic() - self.first_pending >= self.interval
        return full or stale

    def _check_token_budget(self) -> None:
        budget = self.options.max_new_tokens_total
        if budget is not None and self.events.stats.tokens >= budget and not self.control.stopping:
            self.control.request_stop(f"--max-new-tokens-total reached ({budget} tokens)", kind="budget")

    async def _commit(self) -> None:
        # the data shard's tokens go into the manifest: tgbatch status sums a folder without opening Parquet
        tables = [("data", self.data.tokens, self.data.take()), ("errors", None, self.errors.take())]
        self.first_pending = None
        if all(table is None for _, _, table in tables):
            return
        committed = await anyio.to_thread.run_sync(self._commit_files, tables, self.seq)
        self.seq += 1
        self.events.committed(committed)

    def _commit_files(self, tables: list[tuple[str, int | None, pa.Table | None]], seq: int) -> list[CommittedFile]:
        committed = []
        try:
            for kind, tokens, table in tables:
                if table is None:
                    continue
                name = self.out.commit_table(kind, seq, table)
                committed.append(CommittedFile(name, table.num_rows, tokens))
            # data before manifest: the shards are committed, then the commit log lists them
            self.manifest.commit(committed, rows_selected=self._rows_selected(), input_rows=self.read.input_rows)
        except OSError as exc:
            raise OutputError(
                f"cannot write to {self.out.describe()!r}: {exc.strerror or exc} ({exc.filename or 'output'}). "
                "Everything committed before is intact: fix the cause (free space, permissions) and run the "
                "same command again to resume"
            ) from exc
        return committed

    async def _finish(self, failing: bool) -> None:
        complete = False
        try:
            await self._commit()
            complete = self.read.done and not self.control.stopping
            self.result.complete = complete
            self.result.rows_selected = self._rows_selected()
            await anyio.to_thread.run_sync(self._final_manifest, complete)
        except OutputError:
            if not failing:
                raise
            complete = False
        state, reason = self._final_state(complete)
        self.result.summary = await self.progress_file.write_final_async(state, reason)

    def _final_manifest(self, complete: bool) -> None:
        try:
            self.manifest.write(complete=complete, rows_selected=self._rows_selected(), input_rows=self.read.input_rows)
        except OSError as exc:
            raise OutputError(
                f"cannot write the manifest in {self.out.describe()!r}: {exc.strerror or exc}. The committed shards "
                "are intact: fix the cause and run the same command again to resume"
            ) from exc

    def _rows_selected(self) -> int | None:
        return self.read.rows_selected if self.read.done else None

    def _final_state(self, complete: bool) -> tuple[str, str | None]:
        control = self.control
        if control.fatal is not None:
            return "failed", control.reason
        if control.kind == "budget":
            return "budget", control.reason
        if control.stopping:
            return "interrupted", control.reason
        if complete:
            return "finished", None
        return "failed", "the run ended before its input did"
