"""Reading local files as Arrow record batches, one format each, file by file in the order given (a row's
position, its default id, never depends on threads), with memory bounded by a batch, not by the file.

Each reader takes the schema from the first file and reads every file with it. They use pyarrow's file
readers (``parquet``, ``csv``, ``json``, ``ipc``), not ``pyarrow.dataset``, which brings in pandas: about
0.4 s of start-up for every ``tgbatch run``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from tgbatch.errors import DatasetError

BATCH_ROWS = 1024
JSON_CHUNK_BYTES = 4 * 1024 * 1024
COMPRESSION = (".gz", ".bz2", ".zst", ".lz4")
_ERRORS = (pa.ArrowInvalid, OSError)


class FormatReader(Protocol):
    def schema(self, path: Path) -> pa.Schema: ...

    def batches(self, path: Path, schema: pa.Schema, columns: list[str] | None) -> Iterator[pa.RecordBatch]: ...

    def count(self, path: Path, schema: pa.Schema) -> int: ...


def _selected(schema: pa.Schema, columns: list[str] | None) -> pa.Schema:
    return schema if columns is None else pa.schema([schema.field(c) for c in columns])


def _split(batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
    for start in range(0, batch.num_rows, BATCH_ROWS):
        yield batch.slice(start, BATCH_ROWS)


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """A batch of a later file in the first file's schema (a column typed otherwise there is cast)."""
    if batch.schema.equals(schema):
        return batch
    return pa.Table.from_batches([batch]).select(schema.names).cast(schema).combine_chunks().to_batches()[0]


class ParquetReader:
    def schema(self, path: Path) -> pa.Schema:
        import pyarrow.parquet as pq

        return pq.read_schema(path)

    def batches(self, path: Path, schema: pa.Schema, columns: list[str] | None) -> Iterator[pa.RecordBatch]:
        import pyarrow.parquet as pq

        target = _selected(schema, columns)
        for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=columns, use_threads=False):
            yield _conform(batch, target)

    def count(self, path: Path, schema: pa.Schema) -> int:
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)


class CsvReader:
    """CSV, streamed a block at a time. Every value keeps its text as written (an id ``0001`` or an answer
    ``007`` is not a number), unless ``infer_types``: then types are inferred from the first file's first
    block, except for ``text_columns`` (the id column), which stay text."""

    def __init__(self, *, infer_types: bool = False, text_columns: tuple[str, ...] = ()) -> None:
        self.infer_types = infer_types
        self.text_columns = text_columns

    def _open(self, path: Path, convert: Any = None) -> Any:
        import pyarrow.csv as pacsv

        return pacsv.open_csv(path, convert_options=convert)

    def schema(self, path: Path) -> pa.Schema:
        inferred = self._open(path).schema
        return pa.schema(
            [
                f if self.infer_types and f.name not in self.text_columns else f.with_type(pa.string())
                for f in inferred
            ]
        )

    def batches(self, path: Path, schema: pa.Schema, columns: list[str] | None) -> Iterator[pa.RecordBatch]:
        import pyarrow.csv as pacsv

        convert = pacsv.ConvertOptions(column_types=schema, include_columns=columns)
        target = _selected(schema, columns)
        for batch in self._open(path, convert):
            for part in _split(batch):
                yield _conform(part, target)

    def count(self, path: Path, schema: pa.Schema) -> int:
        import pyarrow.csv as pacsv

        first = schema.names[:1]  # parsing one column is enough to count records (quoted newlines included)
        convert = pacsv.ConvertOptions(column_types=schema, include_columns=first)
        return sum(batch.num_rows for batch in self._open(path, convert))


class JsonLinesReader:
    """JSON Lines, a few megabytes at a time: pyarrow's own JSON readers read the whole file ahead of a slow
    consumer, which holds memory in proportion to the input's size. Every chunk is parsed with the schema
    inferred from the first chunk of the first file."""

    def schema(self, path: Path) -> pa.Schema:
        _refuse_json_array(path)
        with pa.input_stream(str(path), compression="detect") as stream:
            for chunk in _line_chunks(stream, JSON_CHUNK_BYTES):
                return _read_json(chunk, None).schema
        return pa.schema([])

    def batches(self, path: Path, schema: pa.Schema, columns: list[str] | None) -> Iterator[pa.RecordBatch]:
        target = _selected(schema, columns)
        with pa.input_stream(str(path), compression="detect") as stream:
            for chunk in _line_chunks(stream, JSON_CHUNK_BYTES):
                table = _read_json(chunk, target)
                del chunk
                yield from table.to_batches(max_chunksize=BATCH_ROWS)

    def count(self, path: Path, schema: pa.Schema) -> int:
        if path.name.lower().endswith(COMPRESSION):
            return sum(batch.num_rows for batch in self.batches(path, schema, schema.names[:1] or None))
        # one object per non-blank line: counting lines is several times faster than parsing
        with open(path, "rb") as f:
            return sum(1 for line in f if not line.isspace())


class ArrowReader:
    """Arrow IPC files and streams (``datasets`` writes ``.arrow`` files in the stream format), memory-mapped."""

    def schema(self, path: Path) -> pa.Schema:
        with pa.memory_map(str(path)) as source:
            return _ipc_open(source).schema

    def batches(self, path: Path, schema: pa.Schema, columns: list[str] | None) -> Iterator[pa.RecordBatch]:
        import pyarrow.ipc as ipc

        with pa.memory_map(str(path)) as source:
            reader = _ipc_open(source)
            if isinstance(reader, ipc.RecordBatchFileReader):
                batches: Iterator[pa.RecordBatch] = (reader.get_batch(i) for i in range(reader.num_record_batches))
            else:
                batches = iter(reader)
            for batch in batches:
                yield from _split(batch.select(columns) if columns is not None else batch)

    def count(self, path: Path, schema: pa.Schema) -> int:
        return sum(batch.num_rows for batch in self.batches(path, schema, []))


READERS: dict[str, FormatReader] = {
    "parquet": ParquetReader(),
    "jsonl": JsonLinesReader(),
    "json": JsonLinesReader(),
    "arrow": ArrowReader(),
}


def read_schema(reader: FormatReader, path: Path, fmt: str) -> pa.Schema:
    try:
        return reader.schema(path)
    except _ERRORS as exc:
        raise DatasetError(f"dataset.path: cannot read {str(path)!r} as {fmt}: {exc}") from exc


def read_batches(
    reader: FormatReader, files: list[Path], schema: pa.Schema, columns: list[str] | None
) -> Iterator[pa.RecordBatch]:
    for path in files:
        try:
            yield from reader.batches(path, schema, columns)
        except _ERRORS as exc:
            raise DatasetError(f"cannot read the input dataset: {str(path)!r}: {exc}") from exc


def count_rows(reader: FormatReader, files: list[Path], schema: pa.Schema) -> int:
    try:
        return sum(reader.count(path, schema) for path in files)
    except _ERRORS as exc:
        raise DatasetError(f"cannot read the input dataset: {exc}") from exc


def _read_json(chunk: bytes, schema: pa.Schema | None) -> pa.Table:
    import pyarrow.json as pajson

    read = pajson.ReadOptions(use_threads=False, block_size=max(len(chunk), 1 << 20))
    parse = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore" if schema else "infer")
    return pajson.read_json(pa.BufferReader(chunk), read_options=read, parse_options=parse)


def _line_chunks(stream: Any, size: int) -> Iterator[bytes]:
    """The stream's bytes in chunks of about ``size`` that end at a line end (a longer line makes a longer
    chunk); blank chunks are left out."""
    rest = b""
    while True:
        block = stream.read(size)
        if not block:
            break
        data = rest + block if rest else block
        cut = data.rfind(b"\n")
        if cut < 0:
            rest = data
            continue
        rest = data[cut + 1 :]
        if not data[: cut + 1].isspace():
            yield data[: cut + 1]
    if rest and not rest.isspace():
        yield rest


def _ipc_open(source: Any) -> Any:
    import pyarrow.ipc as ipc

    try:
        return ipc.open_file(source)
    except pa.ArrowInvalid:
        source.seek(0)
        return ipc.open_stream(source)


def _refuse_json_array(path: Path) -> None:
    if path.name.lower().endswith(COMPRESSION):
        return
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
    if head.startswith(b"["):
        raise DatasetError(
            f"dataset.path: {str(path)!r} holds one JSON array; tgbatch streams JSON Lines (one object per "
            f"line). Convert it, e.g. `jq -c '.[]' {path.name} > {path.stem}.jsonl`"
        )
