"""The batch pipeline: reader -> renderer -> N workers (client + retry) -> one writer, in one anyio task group.

Stages are joined by bounded memory object streams, so a slow server holds the reader back (backpressure) and
memory stays flat however large the dataset: there are never more than ``concurrency`` requests in flight and
never one task per row. The writer task alone owns the shard buffers, the commits, the manifest and the progress
counts. A stop request (Ctrl-C, SIGTERM, a 401) stops admitting rows, gives in-flight requests ``grace_s`` to
finish, commits what is done and returns; the rows not done stay pending for the next run.

``prepare()`` does everything that can fail before a request is sent (open the dataset, compile the template,
render the first rows, compute the fingerprint); ``run_job()`` checks the output folder and runs.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anyio
import pyarrow as pa
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from . import __version__
from .errors import (
    AuthenticationError,
    EndpointError,
    JobError,
    NotFoundError,
    ResumeError,
    SpecError,
    TemplateError,
)
from .job.checkpoint import Checkpoint
from .job.fingerprint import Fingerprint
from .job.layout import OutputDir
from .job.reader import RowBatch, Source, iter_rows, open_source
from .job.retry import GaveUp, RetryPolicy, Stopped
from .job.seeds import SeedPolicy
from .job.spec import EndpointSpec, LoadedJob, redact_url
from .job.template import PromptTemplate
from .job.writer import RESERVED_NAMES, CommittedFile, ShardBuffer, commit_table, output_schemas
from .validation import Parameters

log = logging.getLogger("tgbatch.job")

MAX_BUFFER_BYTES = 256 * 1024 * 1024
PREVIEW_ROWS = 3


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


def make_client(endpoint: EndpointSpec, token: str | None) -> Any:
    """The TGI client for the job's endpoint (``token``: read from ``endpoint.token_env`` by the caller)."""
    from .client import AsyncClient

    try:
        return AsyncClient(
            endpoint.url,
            headers=dict(endpoint.headers) or None,
            timeout=endpoint.timeout_s,
            token=token,
            use_cache=endpoint.use_cache,
            wait_for_model=endpoint.wait_for_model,
        )
    except SpecError as exc:  # a sim:// URL with an unknown or invalid option
        raise SpecError(f"endpoint.url: {exc}") from None


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
    grace_s: float = 30.0


class RunControl:
    """Lets the caller (the CLI's signal handler) stop a running job gracefully."""

    def __init__(self) -> None:
        self._event: anyio.Event | None = None
        self.reason: str | None = None
        self.grace_s: float | None = None
        self.fatal: BaseException | None = None

    @property
    def event(self) -> anyio.Event:
        if self._event is None:
            self._event = anyio.Event()
        return self._event

    @property
    def stopping(self) -> bool:
        return self._event is not None and self._event.is_set()

    def request_stop(self, reason: str = "interrupted", grace_s: float | None = None) -> None:
        if self.reason is None:
            self.reason = reason
        if grace_s is not None:
            self.grace_s = grace_s if self.grace_s is None else min(self.grace_s, grace_s)
        self.event.set()

    def fail(self, error: BaseException) -> None:
        if self.fatal is None:
            self.fatal = error
        self.request_stop("the endpoint refused the request", grace_s=0)


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
    complete: bool = False
    rows_selected: int | None = None
    files: list[CommittedFile] = field(default_factory=list)

    @property
    def failed_total(self) -> int:
        """Failed rows in this shard's output, this run's and earlier runs'."""
        return self.failed + self.already_failed


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
    client: Generator,
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
    out = OutputDir(prepared.job.output_dir, options.shard)
    with out.locked():
        runner = _Runner(prepared, client, out, options, progress, control)
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
        client: Generator,
        out: OutputDir,
        options: RunOptions,
        progress: ProgressSink,
        control: RunControl,
    ) -> None:
        self.p = prepared
        self.spec = prepared.job.spec
        self.client = client
        self.out = out
        self.options = options
        self.progress = progress
        self.control = control
        self.result = RunResult(output_dir=out.root)
        self.endpoint = redact_url(self.spec.endpoint.url)
        self.limit = options.limit if options.limit is not None else self.spec.dataset.limit
        self.checkpoint = Checkpoint.empty()
        self.files: list[CommittedFile] = []
        self.manifest_base: dict[str, Any] = {}
        self.started = time.monotonic()
        self.reader_done = False
        self.rows_selected = 0
        self.inflight: set[anyio.CancelScope] = set()

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
        spec = self.spec
        concurrency = spec.endpoint.concurrency
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
            tg.start_soon(self._watch_stop, tg.cancel_scope)
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
        self.progress.set_total(max(0, per_shard * self.spec.samples - prior))

    async def _watch_stop(self, scope: anyio.CancelScope) -> None:
        await self.control.event.wait()
        self.progress.stopping(self.control.reason or "stopping")
        grace = self.control.grace_s if self.control.grace_s is not None else self.options.grace_s
        with anyio.move_on_after(grace):
            while self.inflight:
                await anyio.sleep(0.05)
        for cancel in list(self.inflight):
            cancel.cancel()
        # a later, shorter grace (a second Ctrl-C) cuts the wait short
        while True:
            await anyio.sleep(0.05)
            if self.control.grace_s == 0:
                for cancel in list(self.inflight):
                    cancel.cancel()

    async def _read(self, send: MemoryObjectSendStream[RowBatch]) -> None:
        rows = iter_rows(
            self.p.source,
            columns=self.p.read_columns,
            id_column=self.spec.dataset.id_column,
            limit=self.limit,
            shard=self.options.shard,
        )
        async with send:
            while not self.control.stopping:
                batch = await anyio.to_thread.run_sync(next, rows, None)
                if batch is None:
                    self.reader_done = True
                    return
                self.rows_selected += len(batch.row_ids)
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
                    self.checkpoint.pending(batch.row_h, s, retry_failed=self.options.retry_failed)
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
        policy = RetryPolicy(self.spec.retry, on_retry=self._on_retry, stop=self.control.event)
        async with recv, send:
            async for item in recv:
                if self.control.stopping:
                    continue  # drain without starting new requests; the row stays pending
                outcome = None
                with anyio.CancelScope() as scope:
                    self.inflight.add(scope)
                    try:
                        outcome = await self._process(item, policy)
                    finally:
                        self.inflight.discard(scope)
                if outcome is not None:
                    await send.send(outcome)

    def _on_retry(self, error: BaseException) -> None:
        self.result.retries += 1
        self.progress.retry(error)

    async def _process(self, item: _Work, policy: RetryPolicy) -> tuple[bool, dict[str, Any], int] | None:
        seed = self.p.seeds.seed_for(item.row_id, item.sample)
        params = self.p.parameters.model_copy(update={"seed": seed})
        last = [0.0]

        async def attempt() -> Any:
            t0 = time.perf_counter()
            try:
                return await self.client.generate(item.prompt, parameters=params)
            finally:
                last[0] = time.perf_counter() - t0

        try:
            response, attempts = await policy.call(attempt)
        except Stopped:
            return None
        except (AuthenticationError, NotFoundError) as exc:
            self.control.fail(exc)
            return None
        except GaveUp as gave_up:
            if isinstance(gave_up.error, AuthenticationError | NotFoundError):
                self.control.fail(gave_up.error)
                return None
            record = self._error_record(
                item.row_id, item.sample, item.prompt, item.row, gave_up.error, gave_up.attempts, last[0], seed
            )
            return False, record, 0
        return True, self._data_record(item, response, attempts, last[0], seed), _tokens(response)

    def _data_record(self, item: _Work, response: Any, attempts: int, latency: float, seed: int | None) -> dict:
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
            "endpoint": self.endpoint,
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
            "endpoint": self.endpoint,
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

        try:
            async with recv:
                while True:
                    item = None
                    with anyio.move_on_after(interval):
                        try:
                            item = await recv.receive()
                        except anyio.EndOfStream:
                            break
                    if item is not None:
                        ok, record, tokens = item
                        size = len(record.get("generated_text") or "") + len(record.get("prompt") or "") + 64
                        if ok:
                            data.add(record, size)
                            self.result.ok += 1
                            self.result.generated_tokens += tokens
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
        finally:
            with anyio.CancelScope(shield=True):
                await commit()
                complete = self.reader_done and not self.control.stopping
                self.result.complete = complete
                self.result.rows_selected = self.rows_selected if self.reader_done else None
                await anyio.to_thread.run_sync(lambda: self.write_manifest(complete=complete))

    def _commit(self, tables: list[tuple[str, pa.Table | None]], seq: int) -> list[CommittedFile]:
        committed = []
        for kind, table in tables:
            if table is None:
                continue
            path = self.out.shard_path(kind, seq)
            commit_table(table, path)
            committed.append(CommittedFile(f"{kind}/{path.name}", table.num_rows))
        # data before manifest: the shards are committed, then the manifest lists them
        self.files.extend(committed)
        self.write_manifest(complete=False)
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
