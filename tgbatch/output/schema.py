"""Parquet shards: the output's explicit Arrow schemas and the atomic commit of each shard.

A shard is written to a hidden temp file, fsynced, renamed into place and the folder fsynced, so a file named
``part-*.parquet`` is always complete: the committed shards are the checkpoint. Row groups are bounded by
rows and bytes.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP_BYTES = 64 * 1024 * 1024
ROW_GROUP_ROWS = 100_000

PREFILL_TOKEN = pa.struct([("id", pa.uint32()), ("text", pa.string()), ("logprob", pa.float32())])
TOKEN = pa.struct([("id", pa.uint32()), ("text", pa.string()), ("logprob", pa.float32()), ("special", pa.bool_())])
BEST_OF_SEQUENCE = pa.struct(
    [
        ("generated_text", pa.string()),
        ("finish_reason", pa.string()),
        ("generated_tokens", pa.int32()),
        ("seed", pa.uint64()),
        ("prefill", pa.list_(PREFILL_TOKEN)),
        ("tokens", pa.list_(TOKEN)),
        ("top_tokens", pa.list_(pa.list_(TOKEN))),
    ]
)
DETAILS = pa.struct(
    [
        ("prefill", pa.list_(PREFILL_TOKEN)),
        ("tokens", pa.list_(TOKEN)),
        ("top_tokens", pa.list_(pa.list_(TOKEN))),
        ("best_of_sequences", pa.list_(BEST_OF_SEQUENCE)),
    ]
)

#: the columns of DIR/data/*.parquet before the carried input columns
DATA_FIELDS: list[pa.Field] = [
    pa.field("row_id", pa.string(), nullable=False),
    pa.field("sample", pa.int32(), nullable=False),
    pa.field("prompt", pa.string()),
    pa.field("generated_text", pa.string()),
    pa.field("finish_reason", pa.string()),
    pa.field("generated_tokens", pa.int32()),
    pa.field("seed", pa.uint64()),
    pa.field("details", DETAILS),
    pa.field("attempts", pa.int32()),
    pa.field("latency_s", pa.float64()),
    pa.field("endpoint", pa.string()),
]
#: the columns of DIR/errors/*.parquet before the carried input columns
ERROR_FIELDS: list[pa.Field] = [
    pa.field("row_id", pa.string(), nullable=False),
    pa.field("sample", pa.int32(), nullable=False),
    pa.field("prompt", pa.string()),
    pa.field("error_type", pa.string()),
    pa.field("server_error_type", pa.string()),
    pa.field("http_status", pa.int32()),
    pa.field("message", pa.string()),
    pa.field("attempts", pa.int32()),
    pa.field("latency_s", pa.float64()),
    pa.field("endpoint", pa.string()),
    pa.field("seed", pa.uint64()),
]
RESERVED_NAMES = frozenset(f.name for f in DATA_FIELDS) | frozenset(f.name for f in ERROR_FIELDS)


def output_schemas(carried: list[pa.Field]) -> tuple[pa.Schema, pa.Schema]:
    """The data and error schemas for the given carried input columns (already renamed off clashes)."""
    carried = [f.with_nullable(True) for f in carried]
    return pa.schema(DATA_FIELDS + carried), pa.schema(ERROR_FIELDS + carried)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path(path: Path) -> Path:
    """A temp file next to ``path``, named ``.{name}.{pid}.{token}.tmp``: unique per call and per process.

    Shard processes started together all write the shared ``job.yaml``; with one temp name for all of them,
    one process's rename took the file another was still writing, and the other's rename then failed. The
    name still starts with ``.{name}.`` and ends with ``.tmp``, which is how the layout recognises (and
    discards) temp files."""
    return path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def write_atomic(path: Path, payload: bytes) -> None:
    """Write a small file (manifest, job.yaml) atomically: temp file, fsync, rename, fsync the folder."""
    tmp = temp_path(path)
    with open(tmp, "wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def commit_table(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` atomically, with row groups bounded by rows and bytes."""
    tmp = temp_path(path)
    per_row = max(1, table.nbytes // max(1, table.num_rows))
    group = max(1, min(ROW_GROUP_ROWS, ROW_GROUP_BYTES // per_row))
    pq.write_table(table, tmp, row_group_size=group, compression="zstd")
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


@dataclass(frozen=True)
class CommittedFile:
    """A committed shard: its path relative to the output folder and its row count."""

    file: str
    rows: int


class ShardBuffer:
    """Records waiting to be committed to one kind of shard (data or errors)."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.records: list[dict[str, Any]] = []
        self.bytes = 0

    def add(self, record: dict[str, Any], size: int) -> None:
        self.records.append(record)
        self.bytes += size

    def take(self) -> pa.Table | None:
        if not self.records:
            return None
        table = pa.Table.from_pylist(self.records, schema=self.schema)
        self.records = []
        self.bytes = 0
        return table
