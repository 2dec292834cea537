"""Records waiting to be committed as one Parquet shard, and what a commit produced."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class CommittedFile:
    """A committed shard: its path relative to the output folder, its row count and (data shards) the tokens
    its rows generated, so ``tgbatch status`` can sum a folder from its manifests without opening Parquet."""

    file: str
    rows: int
    tokens: int | None = None

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"file": self.file, "rows": self.rows}
        if self.tokens is not None:
            entry["tokens"] = self.tokens
        return entry


class ShardBuffer:
    """Records waiting to be committed to one kind of shard (data or errors)."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.records: list[dict[str, Any]] = []
        self.bytes = 0
        self.tokens = 0

    def add(self, record: dict[str, Any], size: int) -> None:
        self.records.append(record)
        self.bytes += size
        self.tokens += record.get("generated_tokens") or 0

    def take(self) -> pa.Table | None:
        if not self.records:
            return None
        import pyarrow as pa  # only when a shard is made: status reads CommittedFile without Arrow

        table = pa.Table.from_pylist(self.records, schema=self.schema)
        self.records = []
        self.bytes = self.tokens = 0
        return table


def warm_up_arrow() -> None:
    """pyarrow imports pandas the first time it converts Python values (0.3-1 s): done before any request is in
    flight, so that the first commit does not stall the event loop, which the adaptive concurrency would read
    as the server slowing down."""
    import pyarrow as pa

    pa.array([0])
