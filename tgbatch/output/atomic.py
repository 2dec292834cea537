"""Crash-safe writes: a file is written to a hidden temp file, fsynced, renamed into place and its folder
fsynced, so a file under its final name is always complete (a shard, a manifest, ``job.yaml``, progress)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

ROW_GROUP_BYTES = 64 * 1024 * 1024
ROW_GROUP_ROWS = 100_000


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


def table_row_group(table: pa.Table) -> int:
    """Rows per row group: bounded by rows and by bytes."""
    per_row = max(1, table.nbytes // max(1, table.num_rows))
    return max(1, min(ROW_GROUP_ROWS, ROW_GROUP_BYTES // per_row))


def commit_table(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` atomically, with row groups bounded by rows and bytes."""
    tmp = temp_path(path)
    import pyarrow.parquet as pq  # here, not at the top: tgbatch status and --help start without Arrow

    pq.write_table(table, tmp, row_group_size=table_row_group(table), compression="zstd")
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)



