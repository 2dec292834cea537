"""Resume state and reading at scale: exact 128-bit keys, compact key sets, skipping done rows without
converting them. No server involved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tgbatch.errors import DatasetError, ResumeError
from tgbatch.input.keys import KeySet, row_hashes, row_keys
from tgbatch.input.rows import RowBatch, iter_rows
from tgbatch.input.sources import open_source
from tgbatch.job.load import load_job_data
from tgbatch.output.atomic import commit_table
from tgbatch.output.checkpoint import Checkpoint
from tgbatch.output.layout import OutputDir
from tgbatch.output.schema import output_schemas

from .runner_util import prompts, write_jsonl


def _keys(pairs: list[tuple[int, int]]) -> np.ndarray:
    return np.array(pairs, dtype=np.uint64).reshape(-1, 2)


# -- keys ---------------------------------------------------------------------------------------------------------


def test_keys_sharing_64_bits_are_told_apart() -> None:
    # what a 64-bit key could not do: keys with the same high word, in several runs and within one run
    ks = KeySet(_keys([(5, 1), (5, 3), (7, 0), (5, 9)]))
    ks.add(_keys([(5, 2), (1, 1)]))
    assert len(ks) == 6
    query = _keys([(5, 1), (5, 2), (5, 3), (5, 9), (5, 4), (5, 0), (7, 0), (7, 1), (1, 1), (0, 5), (2**64 - 1, 9)])
    assert ks.contains(query).tolist() == [True, True, True, True, False, False, True, False, True, False, False]


def test_keyset_drops_repeats_and_stays_compact() -> None:
    rng = np.random.default_rng(1)
    ks = KeySet()
    base = rng.integers(0, 2**64 - 1, size=(20_000, 2), dtype=np.uint64)
    for start in range(0, len(base), 1000):
        ks.add(base[start : start + 1000])
        ks.add(base[start : start + 10])  # repeats
    assert len(ks) == 20_000
    assert ks.nbytes == 16 * 20_000  # two uint64 words a key, no Python object per key
    assert len(ks._runs) <= 15
    assert ks.contains(base).all()
    # a key equal to a member in one word only is not a member
    shifted = base.copy()
    shifted[:, 1] ^= np.uint64(1)
    assert not ks.contains(shifted).any()
    assert not ks.contains(np.empty((0, 2), dtype=np.uint64)).any()
    assert not KeySet().contains(base[:3]).any()


def test_keyset_matches_a_python_set_under_heavy_ties() -> None:
    # high words from a tiny range: nearly every key shares its high word with others
    rng = np.random.default_rng(7)
    ks, reference = KeySet(), set()
    for _ in range(60):
        batch = np.stack([rng.integers(0, 4, 40), rng.integers(0, 60, 40)], axis=1).astype(np.uint64)
        expected = []
        for hi, lo in batch.tolist():
            expected.append((hi, lo) in reference)
            reference.add((hi, lo))
        assert ks.add(batch).tolist() == expected
        assert len(ks) == len(reference)
    everything = np.array([(h, lo) for h in range(5) for lo in range(62)], dtype=np.uint64)
    assert ks.contains(everything).tolist() == [tuple(k) in reference for k in everything.tolist()]


def test_keyset_add_reports_what_was_there() -> None:
    ks = KeySet(_keys([(1, 1), (2, 2)]))
    again = ks.add(_keys([(3, 3), (1, 1), (4, 4), (3, 3), (4, 5), (3, 3)]))
    assert again.tolist() == [False, True, False, True, False, True]
    assert len(ks) == 5
    assert ks.add(_keys([(9, 9), (9, 9)])).tolist() == [False, True]


def test_keyset_refuses_64_bit_keys() -> None:
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        KeySet().add(np.arange(4, dtype=np.uint64))


def test_row_keys_have_no_collision_where_64_bit_hashes_would_be_tight() -> None:
    ids = [f"row-{i}" for i in range(200_000)]
    keys = row_keys(ids)
    assert len(KeySet(keys)) == len(ids)
    # the key is not the shard hash widened: blake2b of another size and personalisation
    assert not (keys[:1000, 0] == row_hashes(ids[:1000])).any()


# -- checkpoint ---------------------------------------------------------------------------------------------------


def _commit(out: OutputDir, kind: str, seq: int, records: list[dict[str, Any]]) -> None:
    data_schema, error_schema = output_schemas([])
    table = pa.Table.from_pylist(records, schema=data_schema if kind == "data" else error_schema)
    commit_table(table, out.shard_path(kind, seq))


def test_checkpoint_is_exact_per_sample_and_shard(tmp_path: Path) -> None:
    out = OutputDir(tmp_path / "out", (1, 2))
    out.create()
    ids = [f"r{i}" for i in range(3000)]
    _commit(out, "data", 0, [{"row_id": r, "sample": 0} for r in ids[:2000]])
    _commit(out, "data", 1, [{"row_id": r, "sample": 1} for r in ids[:500]])
    _commit(out, "errors", 2, [{"row_id": r, "sample": 1, "error_type": "X"} for r in ids[500:600]])
    cp = Checkpoint.load(out, (1, 2))
    keys = row_keys(ids)
    assert np.flatnonzero(cp.pending(keys, 0)).tolist() == list(range(2000, 3000))
    assert np.flatnonzero(~cp.pending(keys, 1)).tolist() == list(range(600))
    assert np.flatnonzero(~cp.pending(keys, 1, retry_failed=True)).tolist() == list(range(500))
    assert cp.pending(keys, 2).all()
    todo = cp.any_pending(keys, 2)
    assert np.flatnonzero(~todo).tolist() == list(range(600))
    assert np.flatnonzero(~cp.any_pending(keys, 2, retry_failed=True)).tolist() == list(range(500))
    in_shard_1 = row_hashes(ids) % np.uint64(2) == 1
    assert cp.done_in_shard == int(in_shard_1[:2000].sum() + in_shard_1[:500].sum())
    assert cp.failed_in_shard == int(in_shard_1[500:600].sum())
    assert cp.done.nbytes == 16 * 2500


def test_checkpoint_reports_an_unreadable_shard(tmp_path: Path) -> None:
    out = OutputDir(tmp_path / "out")
    out.create()
    out.shard_path("data", 0).write_bytes(b"PAR1 not really")
    with pytest.raises(ResumeError, match="unreadable"):
        Checkpoint.load(out)
    out.shard_path("data", 0).unlink()
    pq.write_table(pa.table({"other": [1]}), out.shard_path("data", 0))
    with pytest.raises(ResumeError, match="unreadable"):
        Checkpoint.load(out)


# -- reading ------------------------------------------------------------------------------------------------------


def _source(tmp_path: Path, n: int, **dataset: Any) -> Any:
    path = write_jsonl(tmp_path / "in.jsonl", prompts(n))
    job = load_job_data(
        {"dataset": {"path": str(path), **dataset}, "template": "{{ question }}", "endpoint": {"url": "sim://"}}
    )
    return open_source(job)


def test_done_rows_are_skipped_without_conversion(tmp_path: Path) -> None:
    source = _source(tmp_path, 5000, id_column="id")
    done = KeySet(row_keys([f"r{i:05d}" for i in range(4000)]))
    batches = list(iter_rows(source, columns=None, id_column="id", todo=lambda k: ~done.contains(k)))
    assert sum(b.selected for b in batches) == 5000  # every row is counted as selected
    assert [rid for b in batches for rid in b.row_ids] == [f"r{i:05d}" for i in range(4000, 5000)]
    empty = [b for b in batches if not len(b)]
    assert empty and all(b._batch is not None and b._batch.num_rows == 0 for b in empty)
    partial = next(b for b in batches if len(b))
    assert partial._rows is None  # not converted until asked
    assert partial.rows[0] == {"id": "r04000", "question": "What is 4000 plus 4000?", "topic": "t3"}
    assert (partial.keys == row_keys(partial.row_ids)).all()


def test_skipping_with_shards_and_positions(tmp_path: Path) -> None:
    source = _source(tmp_path, 3000)
    everything = [b for s in range(3) for b in iter_rows(source, columns=None, id_column=None, shard=(s, 3))]
    assert sum(b.selected for b in everything) == 3000
    assert sorted(int(r) for b in everything for r in b.row_ids) == list(range(3000))
    done = KeySet(row_keys([str(i) for i in range(0, 3000, 2)]))
    shard0 = list(iter_rows(source, columns=None, id_column=None, shard=(0, 3), todo=lambda k: ~done.contains(k)))
    all0 = [r for b in iter_rows(source, columns=None, id_column=None, shard=(0, 3)) for r in b.row_ids]
    assert sum(b.selected for b in shard0) == len(all0)
    assert [r for b in shard0 for r in b.row_ids] == [r for r in all0 if int(r) % 2]
    assert all(len(b.rows) == len(b.row_ids) for b in shard0)


def test_repeated_ids_are_found_even_in_done_rows(tmp_path: Path) -> None:
    rows = prompts(3000)
    rows[2500]["id"] = rows[10]["id"]  # across batches
    path = write_jsonl(tmp_path / "dup.jsonl", rows)
    job = load_job_data(
        {"dataset": {"path": str(path), "id_column": "id"}, "template": "x", "endpoint": {"url": "sim://"}}
    )
    source = open_source(job)
    with pytest.raises(DatasetError, match="'r00010' appears more than once"):
        list(iter_rows(source, columns=None, id_column="id", todo=lambda k: np.zeros(len(k), dtype=bool)))
    rows = prompts(100)
    rows[70]["id"] = rows[3]["id"]  # within a batch
    write_jsonl(path, rows)
    with pytest.raises(DatasetError, match="'r00003' appears more than once"):
        list(iter_rows(open_source(job), columns=None, id_column="id"))


def test_integer_and_float_ids_keep_their_text(tmp_path: Path) -> None:
    path = tmp_path / "ints.parquet"
    pq.write_table(pa.table({"i": pa.array([3, -1, 2**62]), "f": [1.0, 2.5, 3.0], "q": ["a", "b", "c"]}), path)
    job = load_job_data({"dataset": {"path": str(path)}, "template": "{{ q }}", "endpoint": {"url": "sim://"}})
    source = open_source(job)
    assert [r for b in iter_rows(source, columns=None, id_column="i") for r in b.row_ids] == ["3", "-1", str(2**62)]
    assert [r for b in iter_rows(source, columns=None, id_column="f") for r in b.row_ids] == ["1", "2.5", "3"]


def test_row_batch_from_dicts() -> None:
    batch = RowBatch(["a"], row_keys(["a"]), [{"x": 1}])
    assert batch.rows == [{"x": 1}] and batch.selected == 1 and len(batch) == 1


def test_json_lines_are_counted_without_parsing(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"question": "a"}\n\n  \n{"question": "b"}\n{"question": "c"}', encoding="utf-8")
    job = load_job_data({"dataset": {"path": str(path)}, "template": "{{ question }}", "endpoint": {"url": "sim://"}})
    source = open_source(job)
    assert source.count_rows() == 3 == sum(b.selected for b in iter_rows(source, columns=None, id_column=None))


def test_json_lines_are_read_in_bounded_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip

    import tgbatch.input.files as reader

    monkeypatch.setattr(reader, "JSON_CHUNK_BYTES", 64 * 1024)
    rows = prompts(60_000)  # ~5 MB of JSON: many chunks, lines cut at chunk edges
    rows[40_000]["extra"] = "late"  # not in the schema, which comes from the first block: left out
    path = write_jsonl(tmp_path / "big.jsonl", rows)
    path.write_bytes(path.read_bytes().replace(b"\n", b"\n\n", 100))  # a few blank lines
    job = load_job_data({"dataset": {"path": str(path)}, "template": "{{ question }}", "endpoint": {"url": "sim://"}})
    source = open_source(job)
    peak = 0
    got = []
    for batch in iter_rows(source, columns=["id", "question"], id_column="id"):
        peak = max(peak, pa.total_allocated_bytes())
        got.extend(batch.rows)
    assert len(got) == 60_000 and got[59_999] == {"id": "r59999", "question": "What is 59999 plus 59999?"}
    assert peak < 2_000_000  # a chunk or two in memory, never the whole file
    everything = [r for b in iter_rows(source, columns=None, id_column=None) for r in b.rows]
    assert everything[40_000] == {k: v for k, v in rows[40_000].items() if k != "extra"} and len(everything) == 60_000

    gz = tmp_path / "small.jsonl.gz"
    gz.write_bytes(gzip.compress(b'{"question": "a"}\n{"question": "b"}\n{"question": "c"}'))
    job = load_job_data({"dataset": {"path": str(gz)}, "template": "{{ question }}", "endpoint": {"url": "sim://"}})
    assert [r["question"] for b in iter_rows(open_source(job), columns=None, id_column=None) for r in b.rows] == [
        "a",
        "b",
        "c",
    ]


def test_a_bad_json_line_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "a"}\n{"question": "b"\n', encoding="utf-8")
    job = load_job_data({"dataset": {"path": str(path)}, "template": "{{ question }}", "endpoint": {"url": "sim://"}})
    with pytest.raises(DatasetError, match=r"bad\.jsonl"):
        list(iter_rows(open_source(job), columns=None, id_column=None))
