"""Streaming input: the dataset is read in Arrow record batches, so memory does not grow with its size.

Local files (a file, a glob, a folder of files) are read with ``pyarrow.dataset`` (``.arrow`` files, which
``datasets`` writes in the IPC *stream* format, with ``pyarrow.ipc``; JSON Lines a few megabytes at a time with
the dataset's schema, as pyarrow's JSON readers would read the whole file ahead); a ``datasets.save_to_disk``
folder and a Hub dataset id go through ``datasets`` (memory-mapped, iterated in Arrow format). Each row gets a
stable id: the ``id_column``'s value, or the row's position in the input. ``--shard I/N`` keeps the rows whose
id hashes to I.
"""

from __future__ import annotations

import glob as globlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.ipc as ipc
import pyarrow.json as pajson

from tgbatch.errors import DatasetError, SpecError
from tgbatch.job.spec import LoadedJob

_EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
}
_COMPRESSION = (".gz", ".bz2", ".zst", ".lz4")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
BATCH_ROWS = 1024
JSON_CHUNK_BYTES = 4 * 1024 * 1024


def format_of(path: Path) -> str | None:
    name = path.name.lower()
    for suffix in _COMPRESSION:
        name = name.removesuffix(suffix)
    return _EXTENSIONS.get(Path(name).suffix)


class Source:
    """An opened input: its schema, its row count (when cheap or counted) and its record batches, in a
    deterministic order."""

    kind: str
    identity: dict[str, Any]
    schema: pa.Schema

    def count_rows(self) -> int:
        raise NotImplementedError

    def batches(self, columns: list[str] | None) -> Iterator[pa.RecordBatch]:
        raise NotImplementedError


class FileSource(Source):
    kind = "files"

    def __init__(self, files: list[Path], fmt: str, identity: dict[str, Any]) -> None:
        self.files = files
        self.format = fmt
        self.identity = identity
        if fmt == "arrow":
            self._dataset = None
            self.schema = _ipc_schema(files[0])
        else:
            self._dataset = _pa_dataset(files, fmt)
            self.schema = self._dataset.schema

    def count_rows(self) -> int:
        if self._dataset is None:
            return sum(batch.num_rows for batch in self._ipc_batches(None))
        if self.format in ("jsonl", "json") and not any(f.name.lower().endswith(_COMPRESSION) for f in self.files):
            # JSON Lines: one object per non-blank line; counting lines is several times faster than parsing
            return sum(_count_lines(f) for f in self.files)
        return _wrap(self._dataset.count_rows)

    def batches(self, columns: list[str] | None) -> Iterator[pa.RecordBatch]:
        if self._dataset is None:
            yield from self._ipc_batches(columns)
            return
        if self.format in ("jsonl", "json"):
            yield from self._json_lines_batches(columns)
            return
        # fragment by fragment, in file order: a row's position (its default id) never depends on threads
        for fragment in self._dataset.get_fragments():
            iterator = fragment.to_batches(schema=self.schema, columns=columns, batch_size=BATCH_ROWS)
            yield from _wrap_iter(iterator)

    def _json_lines_batches(self, columns: list[str] | None) -> Iterator[pa.RecordBatch]:
        """JSON Lines, a few megabytes at a time: pyarrow's own JSON readers (dataset fragments, ``open_json``)
        read the whole file ahead of a slow consumer, which holds memory in proportion to the input's size.
        Every chunk is parsed with the dataset's schema (inferred from the first file), as the dataset would."""
        schema = self.schema if columns is None else pa.schema([self.schema.field(c) for c in columns])
        parse = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
        for path in self.files:
            try:
                with pa.input_stream(str(path), compression="detect") as stream:
                    for chunk in _line_chunks(stream, JSON_CHUNK_BYTES):
                        read = pajson.ReadOptions(use_threads=False, block_size=max(len(chunk), 1 << 20))
                        table = pajson.read_json(pa.BufferReader(chunk), read_options=read, parse_options=parse)
                        del chunk
                        yield from table.to_batches(max_chunksize=BATCH_ROWS)
            except (pa.ArrowInvalid, OSError) as exc:
                raise DatasetError(f"cannot read the input dataset: {str(path)!r}: {exc}") from exc

    def _ipc_batches(self, columns: list[str] | None) -> Iterator[pa.RecordBatch]:
        for path in self.files:
            try:
                with pa.memory_map(str(path)) as source:
                    reader: Any = _ipc_open(source)
                    for batch in _ipc_iter(reader):
                        if columns is not None:
                            batch = batch.select(columns)
                        yield from _split(batch)
            except (pa.ArrowInvalid, OSError) as exc:
                raise DatasetError(f"cannot read {str(path)!r} as Arrow: {exc}") from exc


class DatasetsSource(Source):
    """A ``datasets.Dataset`` (from ``load_from_disk`` or the Hub cache): memory-mapped, read in Arrow batches."""

    def __init__(self, dataset: Any, kind: str, identity: dict[str, Any]) -> None:
        self.kind = kind
        self._ds = dataset
        self.identity = identity
        self.schema = dataset.data.schema

    def count_rows(self) -> int:
        return len(self._ds)

    def batches(self, columns: list[str] | None) -> Iterator[pa.RecordBatch]:
        ds = self._ds.select_columns(columns) if columns is not None else self._ds
        for table in ds.with_format("arrow").iter(batch_size=BATCH_ROWS):
            yield from table.to_batches()


def _count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for line in f if not line.isspace())
    except OSError as exc:
        raise DatasetError(f"cannot read the input dataset: {exc}") from exc


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


def _split(batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
    for start in range(0, batch.num_rows, BATCH_ROWS):
        yield batch.slice(start, BATCH_ROWS)


def _ipc_open(source: Any) -> Any:
    try:
        return ipc.open_file(source)
    except pa.ArrowInvalid:
        source.seek(0)
        return ipc.open_stream(source)


def _ipc_iter(reader: Any) -> Iterator[pa.RecordBatch]:
    if isinstance(reader, ipc.RecordBatchFileReader):
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)
    else:
        yield from reader


def _ipc_schema(path: Path) -> pa.Schema:
    try:
        with pa.memory_map(str(path)) as source:
            return _ipc_open(source).schema
    except (pa.ArrowInvalid, OSError) as exc:
        raise DatasetError(f"dataset.path: cannot read {str(path)!r} as Arrow: {exc}") from exc


def _pa_dataset(files: list[Path], fmt: str) -> pads.Dataset:
    if fmt == "json":
        for path in files:
            _refuse_json_array(path)
    file_format: Any = {"jsonl": pads.JsonFileFormat(), "json": pads.JsonFileFormat()}.get(fmt, fmt)
    try:
        return pads.dataset([str(f) for f in files], format=file_format)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DatasetError(f"dataset.path: cannot read the input as {fmt}: {exc}") from exc


def _refuse_json_array(path: Path) -> None:
    if path.name.lower().endswith(_COMPRESSION):
        return
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
    if head.startswith(b"["):
        raise DatasetError(
            f"dataset.path: {str(path)!r} holds one JSON array; tgbatch streams JSON Lines (one object per "
            f"line). Convert it, e.g. `jq -c '.[]' {path.name} > {path.stem}.jsonl`"
        )


def _wrap(fn: Any) -> Any:
    try:
        return fn()
    except (pa.ArrowInvalid, OSError) as exc:
        raise DatasetError(f"cannot read the input dataset: {exc}") from exc


def _wrap_iter(iterator: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    try:
        yield from iterator
    except (pa.ArrowInvalid, OSError) as exc:
        raise DatasetError(f"cannot read the input dataset: {exc}") from exc


# -- opening --------------------------------------------------------------------------------------------------


def open_source(job: LoadedJob) -> Source:
    """Find and open the job's input. Raises ``DatasetError`` naming ``dataset.path`` when it cannot."""
    spec = job.spec.dataset
    path = job.resolve_input(spec.path)
    if any(ch in spec.path for ch in "*?["):
        files = sorted(Path(p) for p in globlib.glob(str(path), recursive=True) if Path(p).is_file())
        if not files:
            raise DatasetError(f"dataset.path: the pattern {spec.path!r} matches no file (looked in {str(path)!r})")
        return _file_source(files, spec.format, {"kind": "files", "path": str(path)})
    if path.is_file():
        return _file_source([path], spec.format, {"kind": "files", "path": str(path)})
    if path.is_dir():
        if (
            (path / "dataset_info.json").exists()
            or (path / "dataset_dict.json").exists()
            or (path / "state.json").exists()
        ):
            return _saved_source(path, spec.split)
        files = sorted(p for p in path.rglob("*") if p.is_file() and format_of(p) and not p.name.startswith("."))
        if spec.format is not None:
            files = [p for p in files if format_of(p) == spec.format]
        if not files:
            raise DatasetError(f"dataset.path: the folder {str(path)!r} holds no jsonl/json/csv/parquet/arrow file")
        return _file_source(files, spec.format, {"kind": "files", "path": str(path)})
    if not spec.path.startswith((".", "/", "~")) and _HUB_ID.match(spec.path) and format_of(Path(spec.path)) is None:
        return _hub_source(spec.path, spec.config, spec.split)
    raise DatasetError(f"dataset.path: no such file or folder: {spec.path!r} (looked for {str(path)!r})")


def _file_source(files: list[Path], fmt: str | None, identity: dict[str, Any]) -> FileSource:
    if fmt is None:
        found = {format_of(f) for f in files}
        if None in found or len(found) != 1:
            names = ", ".join(f.name for f in files[:5])
            raise SpecError(
                f"dataset.format: cannot tell the format of {names} from the extension; set dataset.format to "
                "one of jsonl, json, csv, parquet, arrow"
            )
        fmt = found.pop()
    assert fmt is not None
    identity = {**identity, "format": "jsonl" if fmt == "json" else fmt}
    return FileSource(files, fmt, identity)


def _saved_source(path: Path, split: str) -> DatasetsSource:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:  # a foreign library's many error types: reported, not classified
        raise DatasetError(f"dataset.path: cannot load the saved dataset {str(path)!r}: {exc}") from exc
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise SpecError(f"dataset.split: {split!r} is not a split of {str(path)!r}; splits: {', '.join(loaded)}")
        loaded = loaded[split]
    return DatasetsSource(loaded, "saved", {"kind": "saved", "path": str(path), "split": split})


def _hub_source(name: str, config: str | None, split: str) -> DatasetsSource:
    import datasets

    try:
        loaded = datasets.load_dataset(name, name=config, split=split)
    except Exception as exc:  # network, auth, missing repo, unknown split: all reported with the cause
        raise DatasetError(
            f"dataset.path: {name!r} is not a local file and could not be loaded as a Hub dataset "
            f"(config={config!r}, split={split!r}): {exc}"
        ) from exc
    identity = {"kind": "hub", "path": name, "config": config, "split": split}
    return DatasetsSource(loaded, "hub", identity)
