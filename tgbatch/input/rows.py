"""Rows of an opened source, batch by batch: each with a stable id (the ``id_column``'s value, or its position)
and its 128-bit key, limited to the first N rows and to one ``--shard I/N``, with rows already done left out
before their values are converted; null and repeated ids are refused."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from tgbatch.errors import DatasetError
from tgbatch.input.keys import KeySet, in_shard, row_hashes, row_keys
from tgbatch.input.sources import Source


class RowBatch:
    """Selected rows of one input batch: their ids, 128-bit row keys (``ids.row_keys``) and column values.

    ``rows`` (one dict per row) is built on first use, so a batch whose rows are all done costs no conversion.
    ``selected`` counts the batch's rows in the shard, including those ``iter_rows(todo=...)`` left out.
    """

    __slots__ = ("_batch", "_rows", "keys", "row_ids", "selected")

    def __init__(
        self,
        row_ids: list[str],
        keys: np.ndarray,
        rows: list[dict[str, Any]] | pa.RecordBatch,
        selected: int | None = None,
    ) -> None:
        self.row_ids = row_ids
        self.keys = keys
        self.selected = len(row_ids) if selected is None else selected
        if isinstance(rows, pa.RecordBatch):
            self._batch: pa.RecordBatch | None = rows
            self._rows: list[dict[str, Any]] | None = None
        else:
            self._batch = None
            self._rows = rows

    @property
    def rows(self) -> list[dict[str, Any]]:
        if self._rows is None:
            assert self._batch is not None
            self._rows = self._batch.to_pylist()
            self._batch = None
        return self._rows

    def __len__(self) -> int:
        return len(self.row_ids)


def iter_rows(
    source: Source,
    *,
    columns: list[str] | None,
    id_column: str | None,
    limit: int | None = None,
    shard: tuple[int, int] = (0, 1),
    todo: Callable[[np.ndarray], np.ndarray] | None = None,
    check_unique: bool = True,
) -> Iterator[RowBatch]:
    """Yield the rows of ``source`` (first ``limit`` only) that fall in ``shard``, batch by batch.

    ``columns`` are the columns to read (``None``: all). ``todo``, given the row keys of a batch, returns the
    mask of the rows still to do (e.g. ``Checkpoint.any_pending``); the others are left out before their
    values are converted, and a batch with nothing to do is yielded empty (its ``selected`` still counts
    them). Raises ``DatasetError`` on a null id, and on a repeated one unless ``check_unique`` is off (every
    row is checked, done or not; ``check_ids`` does it ahead of a run).
    """
    position = 0
    seen = KeySet() if id_column is not None and check_unique else None
    sharded = shard[1] > 1
    for batch in source.batches(columns):
        if limit is not None and position >= limit:
            return
        if limit is not None and position + batch.num_rows > limit:
            batch = batch.slice(0, limit - position)
        n = batch.num_rows
        if id_column is not None:
            row_ids = _id_texts(batch.column(id_column), id_column, position)
        else:
            row_ids = [str(i) for i in range(position, position + n)]
        position += n
        keys = row_keys(row_ids)
        if seen is not None:
            _check_unique(id_column or "", row_ids, keys, seen)
        keep: np.ndarray | None = None
        if sharded:
            mask = in_shard(row_hashes(row_ids), *shard)
            if not mask.all():
                keep = mask
        selected = n if keep is None else int(np.count_nonzero(keep))
        if todo is not None and selected:
            wanted = todo(keys)
            if keep is not None:
                wanted &= keep
            if not wanted.all():
                keep = wanted
        if keep is not None:
            index = np.flatnonzero(keep)
            batch = batch.take(pa.array(index)) if len(index) else batch.slice(0, 0)
            row_ids = [row_ids[i] for i in index.tolist()]
            keys = keys[index]
        if selected:
            yield RowBatch(row_ids, keys, batch, selected)


def _id_texts(ids: pa.Array, id_column: str, position: int) -> list[str]:
    if ids.null_count:
        first = ids.is_null().to_pylist().index(True)
        raise DatasetError(
            f"dataset.id_column: {id_column!r} is empty (null) in the row at position {position + first}"
        )
    if pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type):
        return ids.to_pylist()
    if pa.types.is_integer(ids.type):
        return [str(v) for v in ids.to_pylist()]
    return [_id_text(v) for v in ids.to_pylist()]


def _id_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _check_unique(id_column: str, row_ids: list[str], keys: np.ndarray, seen: KeySet) -> None:
    again = np.flatnonzero(seen.add(keys))
    if len(again):
        _repeated(id_column, row_ids[int(again[0])])


def _repeated(id_column: str, row_id: str) -> None:
    raise DatasetError(
        f"dataset.id_column: {id_column!r} is not unique: {row_id!r} appears more than once (row ids must be "
        "unique so each row is written exactly once)"
    )




def check_ids(source: Source, id_column: str | None, limit: int | None = None) -> int:
    """Read only the id column of the first ``limit`` rows and raise ``DatasetError`` on a null or repeated id,
    before anything is sent (a repeat at the end of a large file would otherwise stop the job hours in).
    Returns the number of rows read."""
    if id_column is None:
        return 0
    return sum(batch.selected for batch in iter_rows(source, columns=[id_column], id_column=id_column, limit=limit))
