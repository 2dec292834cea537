"""Records waiting to be committed as one Parquet shard, and what a commit produced."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa


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


