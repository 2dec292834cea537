"""Streaming input: the dataset is read in Arrow record batches, so memory does not grow with its size.

Local files (a file, a glob, a folder of files) are read by format (``input.files``); a ``datasets.save_to_disk``
folder and a Hub dataset id go through ``datasets`` (memory-mapped, iterated in Arrow format). Each row gets a
stable id: the ``id_column``'s value, or the row's position in the input. ``--shard I/N`` keeps the rows whose
id hashes to I.
"""

from __future__ import annotations

import glob as globlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from tgbatch.errors import DatasetError, SpecError
from tgbatch.input.files import (
    BATCH_ROWS,
    COMPRESSION,
    READERS,
    CsvReader,
    FormatReader,
    count_rows,
    read_batches,
    read_schema,
)
from tgbatch.job.location import check_url
from tgbatch.job.spec import DatasetSpec, LoadedJob

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
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def format_of(path: Path) -> str | None:
    name = path.name.lower()
    for suffix in COMPRESSION:
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
    """Local files of one format, read one after the other with the first file's schema."""

    kind = "files"

    def __init__(self, files: list[Path], fmt: str, identity: dict[str, Any], reader: FormatReader) -> None:
        self.files = files
        self.format = fmt
        self.identity = identity
        self._reader = reader
        self.schema = read_schema(self._reader, files[0], fmt)

    def count_rows(self) -> int:
        return count_rows(self._reader, self.files, self.schema)

    def batches(self, columns: list[str] | None) -> Iterator[pa.RecordBatch]:
        return read_batches(self._reader, self.files, self.schema, columns)


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


# -- opening --------------------------------------------------------------------------------------------------


def open_source(job: LoadedJob) -> Source:
    """Find and open the job's input. Raises ``DatasetError`` naming ``dataset.path`` when it cannot."""
    spec = job.spec.dataset
    if check_url(spec.path, "dataset.path") is not None:
        from tgbatch.input.remote import fetch

        files = fetch(spec.path, lambda name: format_of(Path(name)) is not None and not name.startswith("."))
        return _file_source(files, spec.format, {"kind": "files", "path": spec.path}, spec, job.spec.api)
    path = job.resolve_input(spec.path)
    if any(ch in spec.path for ch in "*?["):
        files = sorted(Path(p) for p in globlib.glob(str(path), recursive=True) if Path(p).is_file())
        if not files:
            raise DatasetError(f"dataset.path: the pattern {spec.path!r} matches no file (looked in {str(path)!r})")
        return _file_source(files, spec.format, {"kind": "files", "path": str(path)}, spec, job.spec.api)
    if path.is_file():
        return _file_source([path], spec.format, {"kind": "files", "path": str(path)}, spec, job.spec.api)
    if path.is_dir():
        if (
            (path / "dataset_info.json").exists()
            or (path / "dataset_dict.json").exists()
            or (path / "state.json").exists()
        ):
            return _saved_source(path, spec.split)
        files = sorted(p for p in path.rglob("*") if p.is_file() and format_of(p) and not p.name.startswith("."))
        if spec.format is not None:
            wanted = "jsonl" if spec.format == "openai_batch" else spec.format
            files = [p for p in files if format_of(p) == wanted]
        if not files:
            raise DatasetError(f"dataset.path: the folder {str(path)!r} holds no jsonl/json/csv/parquet/arrow file")
        return _file_source(files, spec.format, {"kind": "files", "path": str(path)}, spec, job.spec.api)
    if not spec.path.startswith((".", "/", "~")) and _HUB_ID.match(spec.path) and format_of(Path(spec.path)) is None:
        return _hub_source(spec.path, spec.config, spec.split)
    raise DatasetError(f"dataset.path: no such file or folder: {spec.path!r} (looked for {str(path)!r})")


def _file_source(
    files: list[Path], fmt: str | None, identity: dict[str, Any], spec: DatasetSpec, api: str = "generate"
) -> FileSource:
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
    if fmt == "openai_batch":
        from tgbatch.input.batch_lines import BatchLinesReader

        return FileSource(files, fmt, identity, BatchLinesReader(api))
    if fmt != "csv":
        return FileSource(files, fmt, identity, READERS[fmt])
    # how CSV values are typed changes row ids and prompts: it is part of the dataset's identity (an output
    # folder written when CSV types were always inferred is refused rather than resumed under other ids)
    identity["csv_values"] = "inferred" if spec.infer_types else "text"
    text_columns = (spec.id_column,) if spec.id_column else ()
    return FileSource(files, fmt, identity, CsvReader(infer_types=spec.infer_types, text_columns=text_columns))


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

    _check_on_hub(name)
    try:
        loaded = datasets.load_dataset(name, name=config, split=split)
    except Exception as exc:  # network, auth, missing repo, unknown split: all reported with the cause
        raise DatasetError(
            f"dataset.path: {name!r} is not a local file and could not be loaded as a Hub dataset "
            f"(config={config!r}, split={split!r}): {exc}"
        ) from exc
    identity = {"kind": "hub", "path": name, "config": config, "split": split}
    return DatasetsSource(loaded, "hub", identity)


def _check_on_hub(name: str) -> None:
    """One quick question to the Hub before ``datasets`` downloads: a mistyped id is said at once, instead of
    after ``datasets``' retries (about 25 s). Anything but "no such dataset" (offline, a slow Hub) leaves the
    answer to ``datasets``, which may still find the dataset in its cache."""
    if os.environ.get("HF_HUB_OFFLINE") or os.environ.get("HF_DATASETS_OFFLINE"):
        return
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    try:
        HfApi().dataset_info(name, timeout=10)
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status == 404:
            raise DatasetError(
                f"dataset.path: {name!r} is neither a local file or folder nor a dataset on the Hub; check the "
                "path (relative paths are looked up next to the job file, then in the current directory) or the "
                "Hub id (a private or gated dataset needs a token: HF_TOKEN)"
            ) from exc
    except Exception:  # offline, or the Hub unreachable: datasets decides, with its cache
        pass
