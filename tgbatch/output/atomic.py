"""Crash-safe writes: a file is written to a hidden temp file, fsynced, renamed into place and its folder
fsynced, so a file under its final name is always complete (a shard, a manifest, ``job.yaml``, progress)."""

from __future__ import annotations

import os
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


def write_atomic(path: Path, payload: bytes) -> None:
    """Write a small file (manifest, job.yaml) atomically: temp file, fsync, rename, fsync the folder."""
    tmp = path.parent / f".{path.name}.tmp"
    with open(tmp, "wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def commit_table(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` atomically, with row groups bounded by rows and bytes."""
    tmp = path.parent / f".{path.name}.tmp"
    per_row = max(1, table.nbytes // max(1, table.num_rows))
    group = max(1, min(ROW_GROUP_ROWS, ROW_GROUP_BYTES // per_row))
    import pyarrow.parquet as pq  # here, not at the top: tgbatch status and --help start without Arrow

    pq.write_table(table, tmp, row_group_size=group, compression="zstd")
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)



