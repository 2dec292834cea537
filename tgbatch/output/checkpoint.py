"""Resume state, rebuilt from the committed shards (they are the checkpoint; nothing else is trusted).

Each committed (row_id, sample) is recorded as the row's 128-bit key (``ids.row_keys``) in a compact ``KeySet``
per sample index: 16 bytes a row (~160 MB for ten million rows, where a set of Python strings would take about
a gigabyte). Two different row ids share a key with probability about n²/2¹²⁹ (10⁻²⁵ at ten million rows), so
a pending row is never mistaken for a written one. Only the ``row_id`` and ``sample`` columns are read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tgbatch.errors import ResumeError
from tgbatch.input.keys import KeySet, in_shard, row_hashes, row_keys
from tgbatch.output.layout import OutputDir
from tgbatch.output.store import Store


class SampleKeys:
    """The (row key, sample) pairs of one kind of output (data or errors): one ``KeySet`` per sample index."""

    def __init__(self, by_sample: dict[int, KeySet] | None = None) -> None:
        self.by_sample: dict[int, KeySet] = by_sample or {}

    def __len__(self) -> int:
        return sum(len(keys) for keys in self.by_sample.values())

    @property
    def nbytes(self) -> int:
        return sum(keys.nbytes for keys in self.by_sample.values())

    def contains(self, keys: np.ndarray, sample: int) -> np.ndarray:
        """Mask of the rows (``row_keys``) whose ``sample`` is in the set."""
        found = self.by_sample.get(sample)
        return found.contains(keys) if found is not None else np.zeros(len(keys), dtype=bool)

    def add(self, keys: np.ndarray, sample: int) -> None:
        self.by_sample.setdefault(sample, KeySet()).add(keys)


@dataclass
class Checkpoint:
    """Which (row, sample) pairs are already written, as data (``done``) or as errors (``failed``)."""

    done: SampleKeys = field(default_factory=SampleKeys)
    failed: SampleKeys = field(default_factory=SampleKeys)
    done_in_shard: int = 0
    failed_in_shard: int = 0

    @classmethod
    def empty(cls) -> Checkpoint:
        return cls()

    @classmethod
    def load(cls, out: OutputDir, shard: tuple[int, int] = (0, 1)) -> Checkpoint:
        """Read the row ids of every committed shard in the folder (all shard tags: a run may resume rows a
        different ``--shard`` split already wrote)."""
        done, done_n = _load(out.store, out.committed_names("data"), shard)
        failed, failed_n = _load(out.store, out.committed_names("errors"), shard)
        return cls(done, failed, done_n, failed_n)

    def pending(self, keys: np.ndarray, sample: int, *, retry_failed: bool = False) -> np.ndarray:
        """Mask of the rows (their ``row_keys``, e.g. ``RowBatch.keys``) whose ``sample`` is still to do."""
        written = self.done.contains(keys, sample)
        if not retry_failed:
            written |= self.failed.contains(keys, sample)
        return ~written

    def any_pending(self, keys: np.ndarray, samples: int, *, retry_failed: bool = False) -> np.ndarray:
        """Mask of the rows with at least one of samples ``0 .. samples-1`` still to do (for
        ``iter_rows(todo=...)``, which then skips the other rows without converting them)."""
        todo = np.zeros(len(keys), dtype=bool)
        for sample in range(samples):
            todo |= self.pending(keys, sample, retry_failed=retry_failed)
            if todo.all():
                break
        return todo


def _load(store: Store, files: list[str], shard: tuple[int, int]) -> tuple[SampleKeys, int]:
    chunks: dict[int, list[np.ndarray]] = {}
    in_this_shard = 0
    for ids, samples in _id_columns(store, files):
        keys = row_keys(ids)
        for sample in np.unique(samples).tolist():
            chunks.setdefault(int(sample), []).append(keys[samples == sample])
        if shard[1] == 1:
            in_this_shard += len(ids)
        else:
            in_this_shard += int(np.count_nonzero(in_shard(row_hashes(ids), *shard)))
    by_sample = {}
    for sample in sorted(chunks):
        parts = chunks.pop(sample)  # freed as soon as they are concatenated: peak ~40 bytes a key, briefly
        keys = np.concatenate(parts) if len(parts) > 1 else parts[0]
        del parts
        by_sample[sample] = KeySet(keys)
        del keys
    return SampleKeys(by_sample), in_this_shard


def _id_columns(store: Store, files: list[str]) -> Iterator[tuple[list[str], np.ndarray]]:
    """The ``row_id`` (as Python strings) and ``sample`` columns of each committed file, one file at a time."""
    for name in files:
        try:
            with store.open_input(name) as source:
                table = pq.ParquetFile(source).read(columns=["row_id", "sample"], use_threads=False)
                ids = table.column("row_id").to_pylist()
                samples = table.column("sample").to_numpy().copy()
            del table
        except (OSError, pa.ArrowException, KeyError) as exc:
            raise ResumeError(
                f"committed shard {store.describe(name)!r} is unreadable ({exc}); move it away to redo its rows"
            ) from exc
        yield ids, samples
