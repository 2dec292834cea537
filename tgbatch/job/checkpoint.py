"""Resume state, rebuilt from the committed shards (they are the checkpoint; nothing else is trusted).

Each committed (row_id, sample) becomes a 64-bit key in a compact ``KeySet`` (8 bytes a key: ~80 MB for ten
million rows, where a set of Python strings would take about a gigabyte). A 64-bit collision, which would skip a
pending row, has a probability around n²/2⁶⁵ (3·10⁻⁶ at ten million rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ResumeError
from .ids import KeySet, in_shard, key_hashes, row_hashes
from .layout import OutputDir


@dataclass
class Checkpoint:
    """Which (row, sample) pairs are already written, as data (``done``) or as errors (``failed``)."""

    done: KeySet
    failed: KeySet
    done_in_shard: int = 0
    failed_in_shard: int = 0

    @classmethod
    def empty(cls) -> Checkpoint:
        return cls(KeySet(), KeySet())

    @classmethod
    def load(cls, out: OutputDir, shard: tuple[int, int] = (0, 1)) -> Checkpoint:
        """Read the row ids of every committed shard in the folder (all shard tags: a run may resume rows a
        different ``--shard`` split already wrote)."""
        done_keys, done_n = _keys(out.committed("data"), shard)
        failed_keys, failed_n = _keys(out.committed("errors"), shard)
        return cls(KeySet(done_keys), KeySet(failed_keys), done_n, failed_n)

    def pending(self, row_h: np.ndarray, sample: int, *, retry_failed: bool = False) -> np.ndarray:
        """Mask of the rows whose ``sample`` is still to do."""
        keys = key_hashes(row_h, np.full(len(row_h), sample, dtype=np.uint64))
        written = self.done.contains(keys)
        if not retry_failed:
            written |= self.failed.contains(keys)
        return ~written


def _keys(files: list[Path], shard: tuple[int, int]) -> tuple[np.ndarray, int]:
    chunks = []
    in_this_shard = 0
    for path in files:
        try:
            table = pq.read_table(path, columns=["row_id", "sample"])
        except (OSError, pa.ArrowException) as exc:
            raise ResumeError(
                f"committed shard {str(path)!r} is unreadable ({exc}); move it away to redo its rows"
            ) from exc
        row_h = row_hashes(table.column("row_id").to_pylist())
        samples = table.column("sample").to_numpy()
        chunks.append(key_hashes(row_h, samples))
        in_this_shard += int(np.count_nonzero(in_shard(row_h, *shard)))
    keys = np.concatenate(chunks) if chunks else np.empty(0, dtype=np.uint64)
    return keys, in_this_shard
