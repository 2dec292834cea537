"""One shard of a job on one event loop: reader -> renderer -> N workers (backend + retry) -> one writer, in
one anyio task group.

Stages are joined by bounded memory object streams, so a slow server holds the reader back (backpressure) and
memory stays flat however large the dataset: there are never more than the pool's limits of requests in flight
and never one task per row. The writer task alone owns the shard buffers, the commits, the manifest and the
progress file (``runner.writer``). A stop request (Ctrl-C, SIGTERM, a budget, a fatal answer) stops admitting
rows, gives in-flight requests ``drain_s`` to finish (a second signal cuts that short), commits what is done
and returns; the rows not done stay pending for the next run.
"""

from __future__ import annotations

import math
import os
import time

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from tgbatch.backends import Backend
from tgbatch.backends.tgi.client import AsyncClient
from tgbatch.errors import EndpointError, JobError, TemplateError
from tgbatch.input.rows import RowBatch, check_ids, iter_rows
from tgbatch.metrics.live import LiveStats
from tgbatch.output.layout import OutputDir
from tgbatch.output.progress import ProgressFile
from tgbatch.output.shards import warm_up_arrow
from tgbatch.runner.attempt import RowOutcome, RowRequester, Work, outage_error, unrenderable
from tgbatch.runner.connect import calibrate, endpoint_of, wrap_client
from tgbatch.runner.control import RunControl, RunOptions, RunResult, first_error
from tgbatch.runner.dispatch import EndpointPool
from tgbatch.runner.events import ProgressSink, RunEvents
from tgbatch.runner.plan import Prepared
from tgbatch.runner.queue_watch import watch_queues
from tgbatch.runner.resume import Opened, open_output
from tgbatch.runner.writer import ReadState, Writer


async def run_job(
    prepared: Prepared,
    client: EndpointPool | Backend | AsyncClient,
    *,
    options: RunOptions | None = None,
    progress: ProgressSink | None = None,
    control: RunControl | None = None,
) -> RunResult:
    """Run (or resume) the job into its output folder. ``client``: an ``EndpointPool`` (``make_pool``), one
    ``Backend``, or a ``tgbatch.client.AsyncClient`` (a pool of one). Raises ``ResumeError`` when the folder
    holds another job, ``EndpointError`` when the endpoint refuses every request; returns how it went
    otherwise."""
    options = options or RunOptions()
    spec = prepared.job.spec
    pool = _as_pool(prepared, client)
    out = OutputDir(prepared.job.output_dir, options.shard)
    limit = options.limit if options.limit is not None else spec.dataset.limit
    with out.locked():
        # the server first: a down endpoint is said within seconds, before the ids of a large input are read
        await calibrate(pool, spec.endpoint)
        await anyio.to_thread.run_sync(check_ids, prepared.source, spec.dataset.id_column, limit)
        await anyio.to_thread.run_sync(warm_up_arrow)
        opened = await anyio.to_thread.run_sync(open_output, prepared, out, options, limit)
        run = _Run(prepared, pool, out, opened, options, progress or ProgressSink(), control or RunControl(), limit)
        try:
            return await run.go()
        except BaseExceptionGroup as group:
            raise first_error(group) from None
        finally:
            run.events.close()


def _as_pool(prepared: Prepared, client: EndpointPool | Backend | AsyncClient) -> EndpointPool:
    if isinstance(client, EndpointPool):
        return client
    backend = client if isinstance(client, Backend) else wrap_client(client, prepared.job.spec)
    return EndpointPool([endpoint_of(prepared.job.spec.endpoint, backend)])


class _Drain:
    """The requests in flight, so a stop can let them finish for a while and then cancel them."""

    def __init__(self) -> None:
        self.scopes: set[anyio.CancelScope] = set()
        self.drained = anyio.Event()

    def cancel_all(self) -> None:
        for scope in list(self.scopes):
            scope.cancel()


class _Run:
    def __init__(
        self,
        prepared: Prepared,
        pool: EndpointPool,
        out: OutputDir,
        opened: Opened,
        options: RunOptions,
        progress: ProgressSink,
        control: RunControl,
        limit: int | None,
    ) -> None:
        self.p = prepared
        self.spec = prepared.job.spec
        self.pool = pool
        self.out = out
        self.checkpoint = opened.checkpoint
        self.options = options
        self.control = control
        self.limit = limit
        self.started = time.monotonic()
        self.read = ReadState()
        self.drain = _Drain()
        result = RunResult(
            output_dir=out.root, already_done=opened.already_done, already_failed=opened.already_failed
        )
        stats = LiveStats(
            already_done=result.already_done,
            already_failed=result.already_failed,
            job=prepared.job.name,
            shard=options.shard,
            in_flight=lambda: sum(e.in_flight for e in pool.endpoints),
            endpoints=pool.stats,
        )
        self.events = RunEvents(result, stats, progress)
        self.writer = Writer(
            out,
            opened.manifest,
            (prepared.data_schema, prepared.error_schema),
            rows_per_shard=self.spec.output.rows_per_shard,
            commit_interval_s=self.spec.output.commit_interval_s,
            events=self.events,
            progress_file=ProgressFile(stats, out.root, options.shard),
            control=control,
            options=options,
            read=self.read,
        )

    async def go(self) -> RunResult:
        # enough workers for every endpoint at its largest limit; the pool holds back those beyond the current one
        workers = sum(e.limit.max_limit for e in self.pool.endpoints)
        self.events.start()
        batches_send, batches_recv = anyio.create_memory_object_stream[RowBatch](2)
        work_send, work_recv = anyio.create_memory_object_stream[Work](workers * 2)
        results_send, results_recv = anyio.create_memory_object_stream[RowOutcome](workers * 2)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._count_total)
            tg.start_soon(self._watch_stop)
            if self.options.max_runtime_s is not None:
                tg.start_soon(self._runtime_budget, self.options.max_runtime_s)
            tg.start_soon(self.pool.probe_forever)
            tg.start_soon(watch_queues, self.pool)
            tg.start_soon(self._watch_outage, self.spec.retry.max_outage_s)
            async with anyio.create_task_group() as stages:
                stages.start_soon(self._read, batches_send)
                stages.start_soon(self._render, batches_recv, work_send, results_send.clone())
                for _ in range(workers):
                    stages.start_soon(self._work, work_recv.clone(), results_send.clone())
                work_recv.close()
                results_send.close()
                stages.start_soon(self.writer.run, results_recv)
            tg.cancel_scope.cancel()
        return self._result()

    def _result(self) -> RunResult:
        fatal = self.control.fatal
        if isinstance(fatal, JobError):  # the run's own verdict (e.g. the same refusal for row after row)
            raise fatal
        if fatal is not None:
            raise _endpoint_error(fatal, self.spec.endpoint.token_env) from fatal
        result = self.events.tally()
        result.interrupted = self.control.stopping
        result.stop_kind = self.control.kind
        result.stop_reason = self.control.reason
        result.files = list(self.writer.manifest.files)
        result.elapsed_s = time.monotonic() - self.started
        return result

    # -- the stages ---------------------------------------------------------------------------------------------

    async def _read(self, send: MemoryObjectSendStream[RowBatch]) -> None:
        samples, retry_failed = self.spec.samples, self.options.retry_failed
        rows = iter_rows(
            self.p.source,
            columns=self.p.read_columns,
            id_column=self.spec.dataset.id_column,
            limit=self.limit,
            shard=self.options.shard,
            # rows every sample of which is already written are dropped before their values are converted
            todo=lambda keys: self.checkpoint.any_pending(keys, samples, retry_failed=retry_failed),
            check_unique=False,  # check_ids read every id before the run: no second set of keys held meanwhile
        )
        async with send:
            while not self.control.stopping:
                batch = await anyio.to_thread.run_sync(next, rows, None)
                if batch is None:
                    self.read.done = True
                    return
                self.read.rows_selected += batch.selected
                if not len(batch):
                    continue  # every row of this batch is done
                try:
                    await send.send(batch)
                except anyio.BrokenResourceError:
                    return  # the renderer stopped admitting rows

    async def _render(
        self,
        recv: MemoryObjectReceiveStream[RowBatch],
        send: MemoryObjectSendStream[Work],
        results: MemoryObjectSendStream[RowOutcome],
    ) -> None:
        samples, retry_failed = self.spec.samples, self.options.retry_failed
        seeds, renderer, records = self.p.seeds, self.p.renderer, self.p.records
        async with recv, send, results:
            async for batch in recv:
                pending = [self.checkpoint.pending(batch.keys, s, retry_failed=retry_failed) for s in range(samples)]
                for i, (row_id, row) in enumerate(zip(batch.row_ids, batch.rows, strict=True)):
                    todo = [s for s in range(samples) if pending[s][i]]
                    if not todo:
                        continue
                    if self.control.stopping:
                        return
                    try:
                        rendered = renderer.render(row, row_id)
                    except TemplateError as exc:  # this row's failure, not the job's: recorded, the job goes on
                        for s in todo:
                            await results.send(unrenderable(row_id, s, row, exc, records))
                        continue
                    for s in todo:
                        await send.send(Work(row_id, s, rendered, row, seeds.seed_for(row_id, s)))

    async def _work(self, recv: MemoryObjectReceiveStream[Work], send: MemoryObjectSendStream[RowOutcome]) -> None:
        requester = RowRequester(self.spec, self.pool, self.control, self.p.records, self.events.retry)
        async with recv, send:
            async for work in recv:
                if self.control.stopping:
                    continue  # drain without starting new requests; the row stays pending
                outcome = None
                with anyio.CancelScope() as scope:
                    self.drain.scopes.add(scope)
                    try:
                        outcome = await requester.run(work)
                    finally:
                        self.drain.scopes.discard(scope)
                        if self.control.stopping and not self.drain.scopes:
                            self.drain.drained.set()
                if outcome is not None:
                    await send.send(outcome)

    # -- watchers -----------------------------------------------------------------------------------------------

    async def _count_total(self) -> None:
        try:
            rows = await anyio.to_thread.run_sync(self.p.source.count_rows, abandon_on_cancel=True)
        except JobError:
            return  # the reader reports unreadable input itself
        if self.limit is not None:
            rows = min(rows, self.limit)
        self.read.input_rows = rows
        shards = self.options.shard[1]
        per_shard = rows if shards == 1 else math.ceil(rows / shards)
        result = self.events.result
        self.events.total(max(0, per_shard * self.spec.samples - result.already_done - result.already_failed))

    async def _watch_stop(self) -> None:
        await self.control.event.wait()
        self.events.stopping(self.control.reason or "stopping")
        with anyio.move_on_after(self.options.drain_s):
            async with anyio.create_task_group() as tg:

                async def until(event: anyio.Event) -> None:
                    await event.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(until, self.drain.drained)
                tg.start_soon(until, self.control.now)
                if not self.drain.scopes:
                    self.drain.drained.set()
        self.drain.cancel_all()

    async def _watch_outage(self, limit_s: float) -> None:
        """Every endpoint down for ``limit_s``: stop (exit 2), every row still pending, resumable."""
        while True:
            since = self.pool.outage_since()
            if since is not None and time.monotonic() - since >= limit_s:
                self.control.fail(outage_error(self.pool, limit_s))
                return
            await anyio.sleep(1.0 if since is None else min(1.0, max(0.05, since + limit_s - time.monotonic())))

    async def _runtime_budget(self, seconds: float) -> None:
        await anyio.sleep(seconds)
        self.control.request_stop(f"--max-runtime reached ({seconds:g}s)", kind="budget")


def _endpoint_error(error: BaseException, token_env: str) -> EndpointError:
    """What the user must fix, for an answer that refuses every request: which token mistake it was."""
    status = getattr(error, "status_code", None)
    message = getattr(error, "message", error)
    resume = "Nothing was marked failed; fix it and run the same command again to resume"
    if status in (401, 403) and not os.environ.get(token_env):
        return EndpointError(
            f"the endpoint wants a token (HTTP {status}: {message}) and endpoint.token_env: {token_env} is not set: "
            f"export {token_env}=... (or set endpoint.token_env to the variable that holds it). {resume}"
        )
    if status == 401:
        return EndpointError(
            f"a token from {token_env} was sent and refused (HTTP 401: {message}): it is wrong or expired. {resume}"
        )
    if status == 403:
        return EndpointError(
            f"a token from {token_env} was sent and the endpoint refused it access (HTTP 403: {message}): the "
            f"token lacks permission for this endpoint. {resume}"
        )
    return EndpointError(
        f"the endpoint answered HTTP {status} (not found): {message}. Check endpoint.url. Nothing was marked "
        "failed; fix it and run the same command again to resume"
    )
