"""The batch pipeline: reader -> renderer -> N workers (client + retry) -> one writer, in one anyio task group.

Stages are joined by bounded memory object streams, so a slow server holds the reader back (backpressure) and
memory stays flat however large the dataset: there are never more than ``concurrency`` requests in flight and
never one task per row. The writer task alone owns the shard buffers, the commits, the manifest and the progress
counts. A stop request (Ctrl-C, SIGTERM, a budget, a 401) stops admitting rows, gives in-flight requests
``drain_s`` to finish (a second signal cuts that short), commits what is done and returns; the rows not done stay
pending for the next run.

``prepare()`` does everything that can fail before a request is sent (open the dataset, compile the template,
render the first rows, compute the fingerprint); ``run_job()`` checks the output folder and runs.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anyio
import pyarrow as pa
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from tgbatch import __version__
from tgbatch.backends.tgi.rules import Parameters
from tgbatch.errors import (
    AuthenticationError,
    EndpointError,
    JobError,
    OutputError,
    ResumeError,
    SpecError,
    TemplateError,
    TGBatchError,
    TGIError,
    TransportError,
)
from tgbatch.input.rows import RowBatch, iter_rows
from tgbatch.input.sources import Source, open_source
from tgbatch.job.fingerprint import Fingerprint
from tgbatch.job.seeds import SeedPolicy
from tgbatch.job.spec import EndpointSpec, LoadedJob, redact_url
from tgbatch.job.template import PromptTemplate
from tgbatch.metrics.live import LiveStats
from tgbatch.output.atomic import commit_table
from tgbatch.output.checkpoint import Checkpoint
from tgbatch.output.layout import OutputDir
from tgbatch.output.progress import ProgressFile
from tgbatch.output.schema import RESERVED_NAMES, output_schemas
from tgbatch.output.shards import CommittedFile, ShardBuffer
from tgbatch.runner.concurrency import AIMDLimit
from tgbatch.runner.dispatch import Endpoint, EndpointPool, NoEndpointAvailable
from tgbatch.runner.retry import GaveUp, RetryPolicy, Stopped

log = logging.getLogger("tgbatch.job")

MAX_BUFFER_BYTES = 256 * 1024 * 1024
PREVIEW_ROWS = 3
#: concurrency: auto starts here when a server does not report max_concurrent_requests
AUTO_START = 32
INFO_TIMEOUT_S = 15.0


# -- preparation ----------------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """A job ready to run: everything checked that can be checked without sending a request."""

    job: LoadedJob
    source: Source
    template: PromptTemplate
    read_columns: list[str] | None
    carried: list[tuple[str, str]]  # (input column, output column)
    data_schema: pa.Schema
    error_schema: pa.Schema
    fingerprint: Fingerprint
    seeds: SeedPolicy
    parameters: Parameters
    preview: list[tuple[str, str]]  # (row_id, prompt) of the first rows
    notes: list[str] = field(default_factory=list)


def prepare(job: LoadedJob, *, preview_rows: int = PREVIEW_ROWS) -> Prepared:
    """Open the dataset, compile and check the template against its columns, render the first rows and compute
    the fingerprint. Raises ``SpecError``/``TemplateError``/``DatasetError`` naming what is wrong."""
    spec = job.spec
    template = PromptTemplate(job.template_text)
    source = open_source(job)
    names = list(source.schema.names)
    if spec.dataset.id_column is not None and spec.dataset.id_column not in names:
        raise SpecError(
            f"dataset.id_column: {spec.dataset.id_column!r} is not a column of the dataset; columns: {', '.join(names)}"
        )
    template.check_columns(names)
    carried, notes = _carried_columns(spec.dataset.columns, names)
    if template.uses_whole_row:
        read_columns = None
    else:
        wanted = template.columns_used() | {src for src, _ in carried}
        if spec.dataset.id_column is not None:
            wanted.add(spec.dataset.id_column)
        read_columns = [n for n in names if n in wanted]
    data_schema, error_schema = output_schemas([source.schema.field(src).with_name(dst) for src, dst in carried])
    preview = []
    for batch in iter_rows(source, columns=read_columns, id_column=spec.dataset.id_column, limit=preview_rows):
        for row_id, row in zip(batch.row_ids, batch.rows, strict=True):
            preview.append((row_id, template.render(row, row_id)))
    policy = spec.seed_policy
    fingerprint = Fingerprint.of(
        dataset={**source.identity, "id_column": spec.dataset.id_column, "columns": carried},
        template=job.template_text,
        parameters={k: v for k, v in spec.parameters.to_wire().items() if k != "details"},
        seed={"policy": policy, "value": spec.seed.value if policy in ("fixed", "per_row") else None},
        samples=spec.samples,
    )
    return Prepared(
        job=job,
        source=source,
        template=template,
        read_columns=read_columns,
        carried=carried,
        data_schema=data_schema,
        error_schema=error_schema,
        fingerprint=fingerprint,
        seeds=SeedPolicy(policy, spec.seed.value),
        parameters=spec.parameters.model_copy(update={"details": True}),
        preview=preview,
        notes=notes,
    )


def _carried_columns(wanted: list[str] | None, names: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    notes = []
    if wanted is not None:
        unknown = [c for c in wanted if c not in names]
        if unknown:
            raise SpecError(
                f"dataset.columns: {unknown[0]!r} is not a column of the dataset; columns: {', '.join(names)}"
            )
        clash = [c for c in wanted if c in RESERVED_NAMES]
        if clash:
            raise SpecError(
                f"dataset.columns: {clash[0]!r} clashes with the output column of that name; leave it out of "
                f"dataset.columns (output columns: {', '.join(sorted(RESERVED_NAMES))})"
            )
        return [(c, c) for c in dict.fromkeys(wanted)], notes
    carried = []
    taken = set(names) | RESERVED_NAMES
    for name in names:
        if name in RESERVED_NAMES:
            new = f"input_{name}"
            while new in taken:
                new = f"input_{new}"
            taken.add(new)
            notes.append(f"input column {name!r} is carried as {new!r} ({name!r} is an output column)")
            carried.append((name, new))
        else:
            carried.append((name, name))
    return carried, notes


def make_client(endpoint: EndpointSpec, token: str | None, url: str | None = None) -> Any:
    """The TGI client for one of the job's endpoints (``url``, default the first; ``token``: read from
    ``endpoint.token_env`` by the caller)."""
    from tgbatch.client import AsyncClient

    url = url if url is not None else endpoint.urls[0]
    try:
        return AsyncClient(
            url,
            headers=dict(endpoint.headers) or None,
            timeout=endpoint.timeout_s,
            token=token,
            use_cache=endpoint.use_cache,
            wait_for_model=endpoint.wait_for_model,
        )
    except SpecError as exc:  # a sim:// URL with an unknown or invalid option
        raise SpecError(f"endpoint.url: {exc}") from None


def make_pool(endpoint: EndpointSpec, token: str | None) -> EndpointPool:
    """An endpoint pool over every URL of the job (its limits are set from /info by ``run_job``)."""
    return EndpointPool([_endpoint(endpoint, url, make_client(endpoint, token, url)) for url in endpoint.urls])


def _endpoint(spec: EndpointSpec, url: str, client: Any) -> Endpoint:
    if spec.concurrency == "auto":
        limit = AIMDLimit(initial=min(AUTO_START, spec.max_concurrency), max_limit=spec.max_concurrency)
    else:
        limit = AIMDLimit(initial=spec.concurrency, min_limit=spec.concurrency, max_limit=spec.concurrency)
    return Endpoint(url=redact_url(url), client=client, limit=limit)


async def calibrate(pool: EndpointPool, spec: EndpointSpec) -> None:
    """With ``concurrency: auto``, start each endpoint at the server's ``max_concurrent_requests`` (beyond it
    TGI answers 429) and never exceed it. A server without /info keeps the default start and adapts."""
    if spec.concurrency != "auto":
        return

    async def one(endpoint: Endpoint) -> None:
        try:
            with anyio.fail_after(INFO_TIMEOUT_S):
                info = await endpoint.client.info()
        except (TGIError, TimeoutError) as exc:
            log.info("%s: /info did not answer (%s); concurrency starts at %d", endpoint.url, exc, endpoint.limit.limit)
            return
        if info.max_concurrent_requests:
            cap = max(1, min(spec.max_concurrency, info.max_concurrent_requests))
            endpoint.limit.max_limit = cap
            endpoint.limit.limit = cap
        log.info("%s: %s, concurrency starts at %d", endpoint.url, info.model_id, endpoint.limit.limit)

    async with anyio.create_task_group() as tg:
        for endpoint in pool.endpoints:
            tg.start_soon(one, endpoint)


def read_token(endpoint: EndpointSpec) -> str | None:
    return os.environ.get(endpoint.token_env) or None


# -- running --------------------------------------------------------------------------------------------------


class Generator(Protocol):
    async def generate(self, prompt: str, *, parameters: Parameters) -> Any: ...


class ProgressSink:
    """What the pipeline reports while it runs (the CLI draws it). Every method is a no-op here."""

    def start(self, *, total: int | None, already_done: int, already_failed: int) -> None: ...

    def set_total(self, total: int) -> None: ...

    def advance(self, *, ok: bool, tokens: int) -> None: ...

    def retry(self, error: BaseException) -> None: ...

    def committed(self, files: list[CommittedFile]) -> None: ...

    def stopping(self, reason: str) -> None: ...

    def close(self) -> None: ...


@dataclass
class RunOptions:
    shard: tuple[int, int] = (0, 1)
    limit: int | None = None  # overrides dataset.limit when set
    fresh: bool = False
    retry_failed: bool = False
    drain_s: float = 30.0
    max_runtime_s: float | None = None
    max_new_tokens_total: int | None = None


class RunControl:
    """Lets the caller (the CLI's signal handler), a budget or a fatal answer stop a running job.

    ``request_stop`` stops admitting rows and lets in-flight requests drain; ``now=True`` (a second signal)
    cancels them at once. Either way the writer commits what is done, so the output stays valid and resumable.
    """

    def __init__(self) -> None:
        self._event: anyio.Event | None = None
        self._now: anyio.Event | None = None
        self.reason: str | None = None
        self.kind: str | None = None  # "signal" | "budget" | "fatal"
        self.fatal: BaseException | None = None

    @property
    def event(self) -> anyio.Event:
        if self._event is None:
            self._event = anyio.Event()
        return self._event

    @property
    def now(self) -> anyio.Event:
        if self._now is None:
            self._now = anyio.Event()
        return self._now

    @property
    def stopping(self) -> bool:
        return self._event is not None and self._event.is_set()

    def request_stop(self, reason: str = "interrupted", *, kind: str = "signal", now: bool = False) -> None:
        if self.reason is None:
            self.reason, self.kind = reason, kind
        self.event.set()
        if now:
            self.now.set()

    def fail(self, error: BaseException) -> None:
        if self.fatal is None:
            self.fatal = error
        self.request_stop("the endpoint refused the request", kind="fatal", now=True)


@dataclass
class RunResult:
    output_dir: Path
    ok: int = 0
    failed: int = 0
    already_done: int = 0
    already_failed: int = 0
    retries: int = 0
    generated_tokens: int = 0
    elapsed_s: float = 0.0
    interrupted: bool = False
    #: why the run stopped before the end: "signal" or "budget" (None when it ran to the end)
    stop_kind: str | None = None
    stop_reason: str | None = None
    complete: bool = False
    rows_selected: int | None = None
    #: the final live-stats snapshot (what summary.json holds)
    summary: dict[str, Any] | None = None
    files: list[CommittedFile] = field(default_factory=list)

    @property
    def failed_total(self) -> int:
        """Failed rows in this shard's output, this run's and earlier runs'."""
        return self.failed + self.already_failed


@dataclass
class _Attempt:
    """What one row's attempts learned: where it last failed (retried elsewhere), who answered, how fast."""

    failed_on: Endpoint | None = None
    endpoint: str | None = None
    latency: float = 0.0

    def reset(self) -> None:
        self.failed_on, self.endpoint, self.latency = None, None, 0.0


@dataclass
class _Work:
    row_id: str
    sample: int
    prompt: str
    row: dict[str, Any]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _unwrap(group: BaseExceptionGroup) -> BaseException:
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for exc in leaves:
        if isinstance(exc, JobError):
            return exc
    return leaves[0]


async def run_job(
    prepared: Prepared,
    client: EndpointPool | Generator,
    *,
    options: RunOptions | None = None,
    progress: ProgressSink | None = None,
    control: RunControl | None = None,
) -> RunResult:
    """Run (or resume) the job into its output folder. Raises ``ResumeError`` when the folder holds another
    job, ``EndpointError`` when the endpoint refuses every request; returns how it went otherwise."""
    options = options or RunOptions()
    progress = progress or ProgressSink()
    control = control or RunControl()
    spec = prepared.job.spec.endpoint
    if isinstance(client, EndpointPool):
        pool = client
    else:  # one caller-made client (tests, embedding): a pool of one
        pool = EndpointPool([_endpoint(spec, getattr(client, "base_url", spec.urls[0]), client)])
    out = OutputDir(prepared.job.output_dir, options.shard)
    with out.locked():
        await calibrate(pool, spec)
        runner = _Runner(prepared, pool, out, options, progress, control)
        await anyio.to_thread.run_sync(runner.open_output)
        try:
            return await runner.run()
        except BaseExceptionGroup as group:
            raise _unwrap(group) from None
        finally:
            progress.close()


class _Runner:
    def __init__(
        self,
        prepared: Prepared,
        pool: EndpointPool,
        out: OutputDir,
        options: RunOptions,
        progress: ProgressSink,
        control: RunControl,
    ) -> None:
        self.p = prepared
        self.spec = prepared.job.spec
        self.pool = pool
        self.out = out
        self.options = options
        self.progress = progress
        self.control = control
        self.result = RunResult(output_dir=out.root)
        self.limit = options.limit if options.limit is not None else self.spec.dataset.limit
        self.checkpoint = Checkpoint.empty()
        self.files: list[CommittedFile] = []
        self.manifest_base: dict[str, Any] = {}
        self.started = time.monotonic()
        self.reader_done = False
        self.rows_selected = 0
        self.inflight: set[anyio.CancelScope] = set()
        self._drained = anyio.Event()

    # -- the output folder (in a worker thread) ---------------------------------------------------------------

    def open_output(self) -> None:
        out, fp = self.out, self.p.fingerprint
        foreign = out.foreign_entries()
        if foreign:
            raise ResumeError(
                f"{str(out.root)!r} is not a tgbatch output folder (it holds {', '.join(foreign[:5])}); choose "
                "another output.dir / --output"
            )
        if self.options.fresh:
            out.clear()
        manifests = out.manifests()
        for path, manifest in manifests:
            if manifest.get("fingerprint") != fp.digest:
                differs = fp.differences(manifest.get("fingerprint_parts") or {}) or ["the job"]
                raise ResumeError(
                    f"{str(out.root)!r} holds the output of a different job ({path.name} has fingerprint "
                    f"{manifest.get('fingerprint')}, this job is {fp.digest}): {', '.join(differs)} changed. "
                    "Resuming would mix results. Run with --fresh to start over (deleting that output), or "
                    "choose another --output"
                )
        if not manifests and (out.committed("data") or out.committed("errors")):
            raise ResumeError(
                f"{str(out.root)!r} holds result files but no manifest, so their job is unknown; run with "
                "--fresh to start over, or choose another --output"
            )
        for path in out.discard_temp_files():
            log.info("discarded a half-written file from an interrupted run: %s", path.name)
        if self.options.retry_failed:
            moved = out.retire_errors()
            if moved:
                log.info("--retry-failed: moved %d error shard(s) to retired/; their rows will be retried", moved)
        out.create()
        own = [m for path, m in manifests if path == out.manifest_path]
        previous = own[0] if own else {}
        self.files = out.own_files()
        self.manifest_base = {
            "created_at": previous.get("created_at", _now()),
            "elapsed_s": float(previous.get("elapsed_s", 0.0)),
            "runs": int(previous.get("runs", 0)) + 1,
        }
        out.write_job_yaml(self.p.job.resolved_dict())
        self.write_manifest(complete=False)
        self.checkpoint = Checkpoint.load(out, self.options.shard)
        self.result.already_done = self.checkpoint.done_in_shard
        self.result.already_failed = 0 if self.options.retry_failed else self.checkpoint.failed_in_shard

    def write_manifest(self, *, complete: bool) -> None:
        i, n = self.options.shard
        data_rows = sum(f.rows for f in self.files if f.file.startswith("data/"))
        error_rows = sum(f.rows for f in self.files if f.file.startswith("errors/"))
        manifest = {
            "format": "tgbatch-output/1",
            "tgbatch_version": __version__,
            "job": self.p.job.name,
            "fingerprint": self.p.fingerprint.digest,
            "fingerprint_parts": self.p.fingerprint.parts,
            "shard": {"index": i, "count": n},
            "samples": self.spec.samples,
            "limit": self.limit,
            "complete": complete,
            "rows_selected": self.rows_selected if self.reader_done else None,
            "rows_written": data_rows,
            "rows_failed": error_rows,
            "created_at": self.manifest_base["created_at"],
            "updated_at": _now(),
            "elapsed_s": round(self.manifest_base["elapsed_s"] + time.monotonic() - self.started, 3),
            "runs": self.manifest_base["runs"],
            "files": [{"file": f.file, "rows": f.rows} for f in self.files],
        }
        self.out.write_manifest(manifest)

    # -- the task group -------------------------------------------------------------------------------------

    async def run(self) -> RunResult:
        # enough workers for every endpoint at its largest limit; the pool holds back those beyond the current one
        concurrency = sum(e.limit.max_limit for e in self.pool.endpoints)
        self.stats = LiveStats(
            already_done=self.result.already_done,
            already_failed=self.result.already_failed,
            job=self.p.job.name,
            shard=self.options.shard,
            in_flight=lambda: sum(e.in_flight for e in self.pool.endpoints),
            endpoints=self.pool.stats,
        )
        self.progress_file = ProgressFile(self.stats, self.out.root, self.options.shard)
        self.progress.start(
            total=None, already_done=self.result.already_done, already_failed=self.result.already_failed
        )
        batches_send, batches_recv = anyio.create_memory_object_stream[RowBatch](2)
        work_send, work_recv = anyio.create_memory_object_stream[_Work](concurrency * 2)
        results_send, results_recv = anyio.create_memory_object_stream[tuple[bool, dict[str, Any], int]](
            concurrency * 2
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._count_total)
            tg.start_soon(self._watch_stop)
            if self.options.max_runtime_s is not None:
                tg.start_soon(self._runtime_budget, self.options.max_runtime_s)
            if len(self.pool.endpoints) > 1:
                tg.start_soon(self.pool.probe_forever)
            async with anyio.create_task_group() as stages:
                stages.start_soon(self._read, batches_send)
                stages.start_soon(self._render, batches_recv, work_send, results_send.clone())
                for _ in range(concurrency):
                    stages.start_soon(self._work, work_recv.clone(), results_send.clone())
                work_recv.close()
                results_send.close()
                stages.start_soon(self._write, results_recv)
            tg.cancel_scope.cancel()
        if self.control.fatal is not None:
            raise _endpoint_error(self.control.fatal) from self.control.fatal
        self.result.interrupted = self.control.stopping
        self.result.stop_kind = self.control.kind
        self.result.stop_reason = self.control.reason
        self.result.files = list(self.files)
        self.result.elapsed_s = time.monotonic() - self.started
        return self.result

    async def _count_total(self) -> None:
        try:
            rows = await anyio.to_thread.run_sync(self.p.source.count_rows, abandon_on_cancel=True)
        except JobError:
            return  # the reader reports unreadable input itself
        if self.limit is not None:
            rows = min(rows, self.limit)
        shards = self.options.shard[1]
        per_shard = rows if shards == 1 else math.ceil(rows / shards)
        prior = self.result.already_done + self.result.already_failed
        total = max(0, per_shard * self.spec.samples - prior)
        self.progress.set_total(total)
        self.stats.set_total(total)

    async def _watch_stop(self) -> None:
        await self.control.event.wait()
        self.progress.stopping(self.control.reason or "stopping")
        with anyio.move_on_after(self.options.drain_s):
            async with anyio.create_task_group() as tg:

                async def until(event: anyio.Event) -> None:
                    await event.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(until, self._drained)
                tg.start_soon(until, self.control.now)
                if not self.inflight:
                    self._drained.set()
        for cancel in list(self.inflight):
            cancel.cancel()

    async def _runtime_budget(self, seconds: float) -> None:
        await anyio.sleep(seconds)
        self.control.request_stop(f"--max-runtime reached ({seconds:g}s)", kind="budget")

    async def _read(self, send: MemoryObjectSendStream[RowBatch]) -> None:
        rows = iter_rows(
            self.p.source,
            columns=self.p.read_columns,
            id_column=self.spec.dataset.id_column,
            limit=self.limit,
            shard=self.options.shard,
            # rows every sample of which is already written are dropped before their values are converted
            todo=lambda keys: self.checkpoint.any_pending(
                keys, self.spec.samples, retry_failed=self.options.retry_failed
            ),
        )
        async with send:
            while not self.control.stopping:
                batch = await anyio.to_thread.run_sync(next, rows, None)
                if batch is None:
                    self.reader_done = True
                    return
                self.rows_selected += batch.selected
                if not len(batch):
                    continue  # every row of this batch is done
                try:
                    await send.send(batch)
                except anyio.BrokenResourceError:
                    return  # the renderer stopped admitting rows

    async def _render(
        self,
        recv: MemoryObjectReceiveStream[RowBatch],
        send: MemoryObjectSendStream[_Work],
        results: MemoryObjectSendStream[tuple[bool, dict[str, Any], int]],
    ) -> None:
        samples = self.spec.samples
        async with recv, send, results:
            async for batch in recv:
                pending = [
                    self.checkpoint.pending(batch.keys, s, retry_failed=self.options.retry_failed)
                    for s in range(samples)
                ]
                for i, (row_id, row) in enumerate(zip(batch.row_ids, batch.rows, strict=True)):
                    todo = [s for s in range(samples) if pending[s][i]]
                    if not todo:
                        continue
                    if self.control.stopping:
                        return
                    try:
                        prompt = self.p.template.render(row, row_id)
                    except TemplateError as exc:
                        for s in todo:
                            await results.send((False, self._error_record(row_id, s, None, row, exc, 0, 0.0), 0))
                        continue
                    for s in todo:
                        await send.send(_Work(row_id, s, prompt, row))

    async def _work(
        self,
        recv: MemoryObjectReceiveStream[_Work],
        send: MemoryObjectSendStream[tuple[bool, dict[str, Any], int]],
    ) -> None:
        current = _Attempt()  # the row this worker is on: its retries are counted against its endpoint

        def on_retry(error: BaseException) -> None:
            self._on_retry(error, current.failed_on)

        policy = RetryPolicy(self.spec.retry, on_retry=on_retry, stop=self.control.event, pooled=True)
        async with recv, send:
            async for item in recv:
                if self.control.stopping:
                    continue  # drain without starting new requests; the row stays pending
                outcome = None
                with anyio.CancelScope() as scope:
                    self.inflight.add(scope)
                    try:
                        outcome = await self._process(item, policy, current)
                    finally:
                        self.inflight.discard(scope)
                        if self.control.stopping and not self.inflight:
                            self._drained.set()
                if outcome is not None:
                    await send.send(outcome)

    def _on_retry(self, error: BaseException, endpoint: Endpoint | None) -> None:
        self.result.retries += 1
        self.progress.retry(error)
        self.stats.retry(error, endpoint.url if endpoint is not None else None)

    async def _process(
        self, item: _Work, policy: RetryPolicy, state: _Attempt
    ) -> tuple[bool, dict[str, Any], int] | None:
        seed = self.p.seeds.seed_for(item.row_id, item.sample)
        params = self.p.parameters.model_copy(update={"seed": seed})
        deadline = time.monotonic() + self.spec.retry.max_elapsed_s
        state.reset()

        async def attempt() -> Any:
            try:
                endpoint = await self.pool.acquire(avoid=state.failed_on, deadline=deadline)
            except NoEndpointAvailable as exc:
                raise TransportError(f"no endpoint could take the request in time: {exc}", retryable=False) from exc
            state.endpoint = endpoint.url
            t0 = time.perf_counter()
            try:
                response = await endpoint.client.generate(item.prompt, parameters=params)
            except TGIError as exc:
                state.latency = time.perf_counter() - t0
                self.pool.release_failure(endpoint, exc)
                # the retry goes elsewhere when it can; an overloaded endpoint is paused by the pool anyway
                state.failed_on = endpoint
                raise
            except BaseException:
                self.pool.release_cancelled(endpoint)
                raise
            state.latency = time.perf_counter() - t0
            self.pool.release_success(endpoint, state.latency, _tokens(response))
            return response

        try:
            response, attempts = await policy.call(attempt)
        except Stopped:
            return None
        except TGBatchError as exc:
            if not exc.fatal:
                raise
            self.control.fail(exc)
            return None
        except GaveUp as gave_up:
            record = self._error_record(
                item.row_id,
                item.sample,
                item.prompt,
                item.row,
                gave_up.error,
                gave_up.attempts,
                state.latency,
                seed,
                state.endpoint,
            )
            return False, record, 0
        record = self._data_record(item, response, attempts, state.latency, seed, state.endpoint)
        return True, record, _tokens(response)

    def _data_record(
        self, item: _Work, response: Any, attempts: int, latency: float, seed: int | None, endpoint: str | None
    ) -> dict:
        details = response.details
        level = self.spec.output.details
        record: dict[str, Any] = {
            "row_id": item.row_id,
            "sample": item.sample,
            "prompt": item.prompt,
            "generated_text": response.generated_text,
            "seed": seed if seed is not None else (details.seed if details is not None else None),
            "attempts": attempts,
            "latency_s": latency,
            "endpoint": endpoint,
        }
        if details is not None and level != "none":
            record["finish_reason"] = details.finish_reason.value
            record["generated_tokens"] = details.generated_tokens
        if details is not None and level == "full":
            record["details"] = details.model_dump(mode="json")
        for src, dst in self.p.carried:
            record[dst] = item.row.get(src)
        return record

    def _error_record(
        self,
        row_id: str,
        sample: int,
        prompt: str | None,
        row: dict[str, Any],
        error: BaseException,
        attempts: int,
        latency: float,
        seed: int | None = None,
        endpoint: str | None = None,
    ) -> dict[str, Any]:
        record: dict[str, Any] = {
            "row_id": row_id,
            "sample": sample,
            "prompt": prompt,
            "error_type": type(error).__name__,
            "server_error_type": getattr(error, "error_type", None),
            "http_status": getattr(error, "status_code", None),
            "message": getattr(error, "message", None) or str(error),
            "attempts": attempts,
            "latency_s": latency,
            "endpoint": endpoint,
            "seed": seed,
        }
        for src, dst in self.p.carried:
            record[dst] = row.get(src)
        return record

    async def _write(self, recv: MemoryObjectReceiveStream[tuple[bool, dict[str, Any], int]]) -> None:
        data = ShardBuffer(self.p.data_schema)
        errors = ShardBuffer(self.p.error_schema)
        seq = self.out.next_seq()
        interval = self.spec.output.commit_interval_s
        per_shard = self.spec.output.rows_per_shard
        first_pending: float | None = None

        async def commit() -> None:
            nonlocal seq, first_pending
            tables = [("data", data.take()), ("errors", errors.take())]
            first_pending = None
            if all(t is None for _, t in tables):
                return
            committed = await anyio.to_thread.run_sync(self._commit, tables, seq)
            seq += 1
            self.progress.committed(committed)

        # wake at least every progress interval, so progress.json stays fresh while rows are slow to come
        tick = min(interval, self.progress_file.interval_s)
        try:
            await self.progress_file.maybe_write_async()
            async with recv:
                while True:
                    item = None
                    with anyio.move_on_after(tick):
                        try:
                            item = await recv.receive()
                        except anyio.EndOfStream:
                            break
                    if item is not None:
                        ok, record, tokens = item
                        self.stats.row_done(ok, tokens, record["latency_s"], record["endpoint"], record["attempts"])
                        size = len(record.get("generated_text") or "") + len(record.get("prompt") or "") + 64
                        if ok:
                            data.add(record, size)
                            self.result.ok += 1
                            self.result.generated_tokens += tokens
                            self._check_token_budget()
                        else:
                            errors.add(record, size)
                            self.result.failed += 1
                        self.progress.advance(ok=ok, tokens=tokens)
                        if first_pending is None:
                            first_pending = time.monotonic()
                    rows = len(data.records) + len(errors.records)
                    full = rows >= per_shard or data.bytes + errors.bytes >= MAX_BUFFER_BYTES
                    stale = first_pending is not None and time.monotonic() - first_pending >= interval
                    if full or stale:
                        await commit()
                    await self.progress_file.maybe_write_async()
        finally:
            # an error already on its way out (a failed commit) must not be masked by the same failure here
            failing = sys.exc_info()[1] is not None
            with anyio.CancelScope(shield=True):
                try:
                    await commit()
                    complete = self.reader_done and not self.control.stopping
                    self.result.complete = complete
                    self.result.rows_selected = self.rows_selected if self.reader_done else None
                    await anyio.to_thread.run_sync(self._final_manifest, complete)
                except OutputError:
                    if not failing:
                        raise
                    complete = False
                state, reason = self._final_state(complete)
                self.result.summary = await self.progress_file.write_final_async(state, reason)

    def _final_manifest(self, complete: bool) -> None:
        try:
            self.write_manifest(complete=complete)
        except OSError as exc:
            raise OutputError(
                f"cannot write the manifest in {str(self.out.root)!r}: {exc.strerror or exc}. The committed shards "
                "are intact: fix the cause and run the same command again to resume"
            ) from exc

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

    def _check_token_budget(self) -> None:
        budget = self.options.max_new_tokens_total
        if budget is not None and self.result.generated_tokens >= budget and not self.control.stopping:
            self.control.request_stop(f"--max-new-tokens-total reached ({budget} tokens)", kind="budget")

    def _commit(self, tables: list[tuple[str, pa.Table | None]], seq: int) -> list[CommittedFile]:
        committed = []
        try:
            for kind, table in tables:
                if table is None:
                    continue
                path = self.out.shard_path(kind, seq)
                commit_table(table, path)
                committed.append(CommittedFile(f"{kind}/{path.name}", table.num_rows))
            # data before manifest: the shards are committed, then the manifest lists them
            self.files.extend(committed)
            self.write_manifest(complete=False)
        except OSError as exc:
            raise OutputError(
                f"cannot write to {str(self.out.root)!r}: {exc.strerror or exc} ({exc.filename or 'output'}). "
                "Everything committed before is intact: fix the cause (free space, permissions) and run the "
                "same command again to resume"
            ) from exc
        return committed


def _tokens(response: Any) -> int:
    details = getattr(response, "details", None)
    return int(details.generated_tokens) if details is not None else 0


def _endpoint_error(error: BaseException) -> EndpointError:
    status = getattr(error, "status_code", None)
    if isinstance(error, AuthenticationError):
        return EndpointError(
            f"the endpoint refused the token (HTTP {status}): {getattr(error, 'message', error)}. Check that the "
            "token environment variable (endpoint.token_env) holds a valid token with access to this endpoint. "
            "Nothing was marked failed; fix it and run the same command again to resume"
        )
    return EndpointError(
        f"the endpoint answered HTTP {status} (not found): {getattr(error, 'message', error)}. Check "
        "endpoint.url. Nothing was marked failed; fix it and run the same command again to resume"
    )


__all__ = [
    "Prepared",
    "ProgressSink",
    "RunControl",
    "RunOptions",
    "RunResult",
    "make_client",
    "prepare",
    "read_token",
    "run_job",
]
